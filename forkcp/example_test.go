package forkcp_test

import (
	"log"
	"net"
	"os"

	"github.com/forkless/forkless/forkcp"
)

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// A program forks a copy of itself that inherits its listener at
// number 3, as fork(2) would let a C program do.
func ExampleFork() {
	if forkcp.Forked() { // in the copy, early in main
		r, err := forkcp.Restore()
		check(err)
		defer r.Map.CloseAll()
		h, err := r.Map.Lookup(3)
		check(err)
		defer h.Release()
		f, err := h.File()
		check(err)
		defer f.Close()
		ln, err := net.FileListener(f)
		check(err)
		log.Printf("copy %d serves on %s with state %q", os.Getpid(), ln.Addr(), r.Payload)
		return
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	m := forkcp.NewHandleMap()
	defer m.CloseAll()
	h, err := forkcp.HandleOf(ln.(*net.TCPListener), forkcp.FlagCloexec, "listener")
	check(err)
	check(m.InstallAt(3, h))
	p, err := forkcp.Fork(m, &forkcp.ForkOptions{Payload: []byte("state")})
	check(err)
	_, err = p.Wait()
	check(err)
}

// A checkpoint goes to another process over a Unix socket while other
// goroutines keep changing the map.
func ExampleSend() {
	var conn *net.UnixConn // connected to the receiving process
	m := forkcp.NewHandleMap()

	s := m.Snapshot() // under the map lock: numbers, flags, a reference on each handle
	defer s.Release()
	hdr, err := forkcp.CaptureHeader(false, false)
	check(err)
	check(forkcp.Send(conn, s, &hdr, []byte("payload")))

	// In the receiving process:
	r, err := forkcp.Receive(conn, nil) // on error nothing received stays open
	check(err)
	defer r.Map.CloseAll()
}
