// Command prefork is an HTTP server that forks worker processes sharing
// its listening socket through forkcp, the way prefork servers (Apache,
// Unicorn, gunicorn) do with fork(2), which a Go program cannot call.
//
// The master listens, puts the listener in a forkcp.HandleMap at number 3
// and calls forkcp.Fork once per worker; each worker is this program
// again, whose main finds itself forked, restores the map and serves on
// the inherited listener. SIGINT or SIGTERM stops the workers, then the
// master.
//
//	prefork -addr 127.0.0.1:8080 -workers 4
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/forkless/forkless/forkcp"
)

func main() {
	if forkcp.Forked() {
		os.Exit(runWorker())
	}
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	workers := flag.Int("workers", 4, "number of worker processes")
	flag.Parse()

	m, err := startMaster(*addr, *workers)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("prefork: listening on http://%s with %d workers (pids %v)\n", m.Addr(), *workers, m.Pids())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	if err := m.Stop(); err != nil {
		log.Fatal(err)
	}
}
