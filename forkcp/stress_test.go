package forkcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/forkless/forkless/spawn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The race stress: goroutines install, close, dup and reuse numbers on a
// shared map while others snapshot it and send each snapshot to a child
// process that checks every descriptor it receives against the identity
// (device and inode) recorded in its description when the handle was
// created. A snapshot that did not hold its references would send a
// descriptor closed by a concurrent Close (EBADF) or, once the kernel
// reused the number, a different file.

const stressNumbers = 48 // numbers used by the mutators: small, so they are reused all the time

// handleLog remembers every handle the stress creates, to check at the
// end that each one was closed exactly once (reference count zero).
type handleLog struct {
	mu sync.Mutex
	hs []*Handle
}

func (l *handleLog) add(h *Handle) {
	l.mu.Lock()
	l.hs = append(l.hs, h)
	l.mu.Unlock()
}

// mutator performs ops random operations on m. It returns the first
// unexpected error; ErrBadNumber and ErrMapFull are expected.
func mutator(m *HandleMap, log *handleLog, rng *rand.Rand, ops int, count *atomic.Int64) error {
	num := func() int { return rng.IntN(stressNumbers) }
	newHandle := func() (*Handle, error) {
		h, err := newPipeHandle(Flags(rng.IntN(2)))
		if err == nil {
			log.add(h)
		}
		return h, err
	}
	for range ops {
		count.Add(1)
		var err error
		switch op := rng.IntN(12); {
		case op < 3: // open: lowest free number
			if m.Len() >= stressNumbers {
				err = m.Close(num())
				break
			}
			var h *Handle
			if h, err = newHandle(); err == nil {
				if _, err = m.Install(h); err != nil {
					h.Release()
				}
			}
		case op < 5: // reuse a number, replacing what is there
			var h *Handle
			if h, err = newHandle(); err == nil {
				err = m.InstallAt(num(), h)
			}
		case op < 8:
			err = m.Close(num())
		case op < 10:
			err = m.Dup2(num(), num())
		case op < 11:
			err = m.SetFlags(num(), Flags(rng.IntN(2)))
		default: // a Lookup holder sees its file until it releases it
			var h *Handle
			if h, err = m.Lookup(num()); err == nil {
				err = checkIdentity(h.FD(), h.Description())
				h.Release()
			}
		}
		if err != nil && !errors.Is(err, ErrBadNumber) && !errors.Is(err, ErrMapFull) {
			return err
		}
	}
	return nil
}

// startReceiver spawns this test binary as a receiver child (see
// roleReceiver) and returns the parent's end of its socket.
func startReceiver(t *testing.T) (*net.UnixConn, *spawn.Process) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	var fa spawn.FileActions
	require.NoError(t, fa.AddDup2(fds[1], 3))
	exe, err := os.Executable()
	require.NoError(t, err)
	p, err := spawn.Spawn(exe, &fa, nil, []string{exe}, roleEnvFor("receiver"))
	unix.Close(fds[1])
	require.NoError(t, err)
	f := os.NewFile(uintptr(fds[0]), "receiver")
	c, err := net.FileConn(f)
	f.Close()
	require.NoError(t, err)
	return c.(*net.UnixConn), p
}

// sender snapshots m, checks the snapshot locally, sends it to the
// receiver on c and checks its reply, until stop is set.
func sender(m *HandleMap, c *net.UnixConn, stop *atomic.Bool, snaps, entries, count *atomic.Int64) error {
	var reply [16]byte
	for !stop.Load() {
		count.Add(1)
		s := m.Snapshot()
		err := func() error {
			defer s.Release()
			for i := range s.Len() {
				if err := checkIdentity(s.Handle(i).FD(), s.Entry(i).Description); err != nil {
					return fmt.Errorf("snapshot entry %d before send: %w", s.Entry(i).Number, err)
				}
			}
			if err := Send(c, s, nil, []byte("stress")); err != nil {
				return err
			}
			if _, err := io.ReadFull(c, reply[:]); err != nil {
				return fmt.Errorf("receiver reply: %w", err)
			}
			if n, bad := le.Uint64(reply[0:]), le.Uint64(reply[8:]); n != uint64(s.Len()) || bad != 0 {
				return fmt.Errorf("receiver got %d handles (%d wrong), sent %d", n, bad, s.Len())
			}
			return nil
		}()
		if err != nil {
			return err
		}
		snaps.Add(1)
		entries.Add(int64(s.Len()))
	}
	return nil
}

func TestStressSnapshotSend(t *testing.T) {
	const (
		mutators = 3
		senders  = 2
		goal     = 100_000   // operations: map changes, lookups and snapshots
		minSnaps = 1_000     // snapshots sent while the map changes
		limit    = 2_000_000 // stop anyway (only reached if sending stalls)
	)
	fdBaseline(t)
	m := NewHandleMap()
	log := &handleLog{}
	var stop, failed atomic.Bool
	var ops, snaps, entries atomic.Int64
	errs := make(chan error, mutators+senders)

	type recv struct {
		c *net.UnixConn
		p *spawn.Process
	}
	var receivers []recv
	for range senders {
		c, p := startReceiver(t)
		receivers = append(receivers, recv{c, p})
	}

	var mwg, swg sync.WaitGroup
	for i := range mutators {
		mwg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 42))
			for (ops.Load() < goal || snaps.Load() < minSnaps) && ops.Load() < limit && !failed.Load() {
				if err := mutator(m, log, rng, 100, &ops); err != nil {
					failed.Store(true)
					errs <- err
					return
				}
			}
		})
	}
	for _, r := range receivers {
		swg.Go(func() {
			if err := sender(m, r.c, &stop, &snaps, &entries, &ops); err != nil {
				failed.Store(true)
				errs <- err
			}
		})
	}
	mwg.Wait()
	stop.Store(true)
	swg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}

	for _, r := range receivers {
		r.c.Close() // the receiver checks its own descriptor table and exits
		st, err := r.p.Wait()
		require.NoError(t, err)
		assert.True(t, st.Success(), "receiver: %v", st)
	}
	require.NoError(t, m.CloseAll())
	for _, h := range log.hs {
		require.EqualValues(t, 0, h.refs.Load(), "handle %v: every reference dropped", h)
	}
	assert.GreaterOrEqual(t, ops.Load(), int64(goal))
	assert.GreaterOrEqual(t, snaps.Load(), int64(minSnaps))
	t.Logf("%d operations, %d handles created, %d snapshots sent with %d descriptors, all checked",
		ops.Load(), len(log.hs), snaps.Load(), entries.Load())
}

// TestStressFork forks children while the map changes under the
// snapshots; each child checks it holds exactly its snapshot.
func TestStressFork(t *testing.T) {
	const forks = 12
	fdBaseline(t)
	m := NewHandleMap()
	log := &handleLog{}
	fillMap(t, m, 0, stressNumbers/2)
	var stop atomic.Bool
	var ops atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i := range 1 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			for !stop.Load() && ops.Load() < 300_000 {
				if err := mutator(m, log, rng, 100, &ops); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for i := range forks {
		s := m.Snapshot()
		payload, err := json.Marshal(s.Entries())
		require.NoError(t, err)
		route := routes[i%2]
		env := append(roleEnvFor("verify"), inheritedEnv+"="+inherited(t, s))
		p, err := ForkSnapshot(s, &ForkOptions{Payload: payload, Route: route, Env: env})
		require.NoError(t, s.Release())
		require.NoError(t, err)
		st, err := p.Wait()
		require.NoError(t, err)
		assert.True(t, st.Success(), "fork %d (%s): %v", i, route, st)
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	require.NoError(t, m.CloseAll())
	for _, h := range log.hs {
		require.EqualValues(t, 0, h.refs.Load())
	}
	t.Logf("%d forks during %d map operations", forks, ops.Load())
}
