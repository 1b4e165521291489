package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/forkless/forkless/forkcp"
	"github.com/forkless/forkless/spawn"
)

// listenerNumber is where the listener sits in the map, and so in every
// worker's descriptor table.
const listenerNumber = 3

// workerConfig is the payload each worker receives.
type workerConfig struct {
	ID int `json:"id"`
}

// master owns the listener (inside its handle map) and the workers.
type master struct {
	addr    string
	handles *forkcp.HandleMap
	workers []*spawn.Process
}

// startMaster listens on addr and forks n workers sharing the listener.
func startMaster(addr string, n int) (*master, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	m := &master{addr: ln.Addr().String(), handles: forkcp.NewHandleMap()}
	// The map keeps its own descriptor of the socket; the master does
	// not accept, so it closes its listener. FlagCloexec: the workers'
	// listener must not leak into programs they might run.
	h, err := forkcp.HandleOf(ln.(*net.TCPListener), forkcp.FlagCloexec, "listener "+m.addr)
	ln.Close()
	if err != nil {
		return nil, err
	}
	if err := m.handles.InstallAt(listenerNumber, h); err != nil {
		h.Release()
		return nil, err
	}
	for id := range n {
		if err := m.fork(id); err != nil {
			return nil, errors.Join(err, m.Stop())
		}
	}
	return m, nil
}

// fork starts worker id.
func (m *master) fork(id int) error {
	payload, err := json.Marshal(workerConfig{ID: id})
	if err != nil {
		return err
	}
	p, err := forkcp.Fork(m.handles, &forkcp.ForkOptions{Payload: payload})
	if err != nil {
		return fmt.Errorf("prefork: worker %d: %w", id, err)
	}
	m.workers = append(m.workers, p)
	return nil
}

// Addr returns the address the workers serve.
func (m *master) Addr() string { return m.addr }

// Pids returns the workers' process ids.
func (m *master) Pids() []int {
	pids := make([]int, len(m.workers))
	for i, p := range m.workers {
		pids[i] = p.Pid()
	}
	return pids
}

// Stop asks every worker to finish (SIGTERM: they stop accepting and
// complete the requests in progress), waits for them and closes the
// listener. A worker that ended any other way is an error.
func (m *master) Stop() error {
	var errs []error
	for _, p := range m.workers {
		if err := p.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, spawn.ErrFinished) {
			errs = append(errs, err)
		}
	}
	for i, p := range m.workers {
		st, err := p.Wait()
		switch {
		case err != nil:
			errs = append(errs, err)
		case st.Success():
		case st.Signaled() && st.Signal() == syscall.SIGTERM:
			// Stopped before it installed its handler: nothing was in
			// progress.
		default:
			errs = append(errs, fmt.Errorf("prefork: worker %d (pid %d): %v", i, p.Pid(), st))
		}
	}
	m.workers = nil
	return errors.Join(append(errs, m.handles.CloseAll())...)
}
