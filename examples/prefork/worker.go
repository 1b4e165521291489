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
	"syscall"
	"time"

	"github.com/forkless/forkless/forkcp"
)

// runWorker is main in a forked worker: it restores the listener and
// serves on it until SIGTERM, then stops accepting and answers every
// connection it accepted.
func runWorker() int {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	ln, cfg, err := restoreWorker()
	if err != nil {
		log.Printf("prefork worker: %v", err)
		return 1
	}
	cs := httpdrain.NewConns()
	srv := &http.Server{
		Handler:           workerHandler(cfg.ID),
		ConnState:         cs.Track,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       30 * time.Second,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err = <-done:
		log.Printf("prefork worker %d: %v", cfg.ID, err)
		return 1
	case <-sig:
		httpdrain.Drain(srv, ln, cs, done)
		return 0
	}
}

// restoreWorker turns the restored map into a net.Listener.
func restoreWorker() (net.Listener, workerConfig, error) {
	var cfg workerConfig
	r, err := forkcp.Restore()
	if err != nil {
		return nil, cfg, err
	}
	defer r.Map.CloseAll() // the listener below holds its own descriptor
	if err := json.Unmarshal(r.Payload, &cfg); err != nil {
		return nil, cfg, fmt.Errorf("payload: %w", err)
	}
	h, err := r.Map.Lookup(listenerNumber)
	if err != nil {
		return nil, cfg, err
	}
	defer h.Release()
	f, err := h.File()
	if err != nil {
		return nil, cfg, err
	}
	defer f.Close()
	ln, err := net.FileListener(f)
	return ln, cfg, err
}

// workerHandler answers every request with the worker's id and pid.
func workerHandler(id int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "worker %d pid %d\n", id, os.Getpid())
	})
}
