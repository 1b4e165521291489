// Command restart is an HTTP server that replaces itself with a new copy
// without failing a single request: the tableflip / go-daemon problem,
// solved on a forkcp snapshot.
//
// On SIGHUP the server puts its listener and a "ready" pipe in a
// forkcp.HandleMap and forks a new copy of itself (forkcp.Fork), handing
// it the in-flight state (generation, requests served) as the payload.
// The copy restores them, starts serving on the same listening socket and
// writes to the pipe. Only then does the old process stop accepting,
// finish the requests in progress and exit; connections that arrive
// meanwhile wait in the socket's queue for the new copy. If the copy fails
// to start, the old process keeps serving. SIGINT or SIGTERM stops it.
//
//	restart -addr 127.0.0.1:8080 &
//	kill -HUP $!    # a new process now serves, the same port, no request lost
package main

import (
	"flag"
	"log"
	"net"
	"os"

	"github.com/forkless/forkless/forkcp"
)

func main() {
	if forkcp.Forked() {
		os.Exit(runForked())
	}
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("restart: generation 1 (pid %d) serving http://%s", os.Getpid(), ln.Addr())
	os.Exit(run(newServer(ln, state{Generation: 1}), nil))
}
