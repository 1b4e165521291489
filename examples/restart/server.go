package main

import (
	"encoding/json"
	"fmt"
	"github.com/forkless/forkless/examples/internal/httpdrain"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/forkless/forkless/forkcp"
	"github.com/forkless/forkless/spawn"
)

// server is one generation.
type server struct {
	ln     net.Listener
	http   *http.Server
	conns  *httpdrain.Conns
	gen    int
	served atomic.Int64
}

func newServer(ln net.Listener, st state) *server {
	s := &server{ln: ln, gen: st.Generation, conns: httpdrain.NewConns()}
	s.served.Store(st.Served)
	s.http = &http.Server{
		Handler:   http.HandlerFunc(s.handle),
		ConnState: s.conns.Track,
		// A client that connects and never sends a request cannot hold
		// up a handover for long.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       30 * time.Second,
	}
	return s
}

// handle answers with the generation, the pid and the running count of
// requests served across generations.
func (s *server) handle(w http.ResponseWriter, _ *http.Request) {
	n := s.served.Add(1)
	w.Header().Set("X-Generation", strconv.Itoa(s.gen))
	w.Header().Set("X-Pid", strconv.Itoa(os.Getpid()))
	fmt.Fprintf(w, "generation %d pid %d served %d\n", s.gen, os.Getpid(), n)
}

// run serves until SIGTERM or SIGINT, or until a SIGHUP has handed the
// listener to a new copy; then it stops accepting and answers every
// connection it accepted (see drain). ready, if not nil, is told once the
// server accepts connections. It returns the exit status.
func run(s *server, ready *os.File) int {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.http.Serve(s.ln) }()
	if ready != nil {
		_, err := ready.Write([]byte{1})
		ready.Close()
		if err != nil {
			log.Printf("restart: generation %d: ready: %v", s.gen, err)
			return 1
		}
	}
	for {
		select {
		case err := <-done:
			log.Printf("restart: generation %d: %v", s.gen, err)
			return 1
		case sg := <-sig:
			if sg == syscall.SIGHUP {
				p, err := handOver(s.ln, state{Generation: s.gen + 1, Served: s.served.Load()})
				if err != nil {
					log.Printf("restart: generation %d keeps serving: %v", s.gen, err)
					continue
				}
				p.Release() // the new copy outlives this process
			}
			httpdrain.Drain(s.http, s.ln, s.conns, done)
			return 0
		}
	}
}

// handOver forks a new copy holding ln and st and returns once the copy
// accepts connections on ln. If the copy exits instead, it is reaped and
// the error returned: the caller still owns ln and keeps serving.
func handOver(ln net.Listener, st state) (*spawn.Process, error) {
	payload, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	p, err := forkWith(ln, payload)
	if err != nil {
		return nil, fmt.Errorf("restart: generation %d did not start: %w", st.Generation, err)
	}
	return p, nil
}

// forkWith forks the copy with payload and waits for it to be ready.
func forkWith(ln net.Listener, payload []byte) (*spawn.Process, error) {
	readyR, readyW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer readyR.Close()
	m := forkcp.NewHandleMap()
	defer m.CloseAll() // this process's copies: the child has its own
	for _, e := range []struct {
		number int
		conn   syscall.Conn
		desc   string
	}{{listenerNumber, ln.(*net.TCPListener), "listener " + ln.Addr().String()}, {readyNumber, readyW, "ready pipe"}} {
		h, err := forkcp.HandleOf(e.conn, forkcp.FlagCloexec, e.desc)
		if err != nil {
			readyW.Close()
			return nil, err
		}
		if err := m.InstallAt(e.number, h); err != nil {
			h.Release()
			readyW.Close()
			return nil, err
		}
	}
	readyW.Close()
	p, err := forkcp.Fork(m, &forkcp.ForkOptions{Payload: payload})
	if err != nil {
		return nil, err
	}
	m.CloseAll() // now: the write end must be the child's alone, for EOF
	var b [1]byte
	if n, _ := readyR.Read(b[:]); n != 1 {
		ps, err := p.Wait()
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("it ended (%v) before serving", ps)
	}
	return p, nil
}

// runForked is main in a new copy: restore the listener, the ready pipe
// and the state, then serve.
func runForked() int {
	r, err := forkcp.Restore()
	if err != nil {
		log.Printf("restart: %v", err)
		return 1
	}
	defer r.Map.CloseAll()
	var st state
	if err := json.Unmarshal(r.Payload, &st); err != nil {
		log.Printf("restart: payload: %v", err)
		return 1
	}
	ln, err := restoredListener(r.Map)
	if err != nil {
		log.Printf("restart: generation %d: %v", st.Generation, err)
		return 1
	}
	ready, err := restoredFile(r.Map, readyNumber)
	if err != nil {
		log.Printf("restart: generation %d: %v", st.Generation, err)
		return 1
	}
	r.Map.CloseAll() // the listener and the file hold their own descriptors
	return run(newServer(ln, st), ready)
}

func restoredFile(m *forkcp.HandleMap, n int) (*os.File, error) {
	h, err := m.Lookup(n)
	if err != nil {
		return nil, err
	}
	defer h.Release()
	return h.File()
}

func restoredListener(m *forkcp.HandleMap) (net.Listener, error) {
	f, err := restoredFile(m, listenerNumber)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return net.FileListener(f)
}
