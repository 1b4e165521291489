// Package stress runs spawns concurrently with descriptor churn and checks
// that no close-on-exec descriptor ever reaches a child, no spawn fails,
// and nothing leaks. Run it with -race.
package stress

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/forkless/forkless/internal/testbin"
	"github.com/forkless/forkless/spawn"
	"github.com/forkless/forkless/tests/difftest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

const (
	spawners        = 32
	spawnsPerWorker = 12
	churners        = 6
)

func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

// churn opens, duplicates and closes descriptors until stop is closed.
// Files named "cloexec-*" are only ever reachable through close-on-exec
// descriptors, made atomically (O_CLOEXEC, F_DUPFD_CLOEXEC, dup3) or in
// two steps under syscall.ForkLock's read side as the contract requires.
// Files named "inherit-*" are deliberately inheritable.
func churn(dir string, id int, stop <-chan struct{}, ops *atomic.Int64) error {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return nil
		default:
		}
		cx := filepath.Join(dir, fmt.Sprintf("cloexec-%d-%d", id, i%4))
		in := filepath.Join(dir, fmt.Sprintf("inherit-%d-%d", id, i%4))
		var fds []int
		fd, err := unix.Open(cx, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return err
		}
		fds = append(fds, fd)
		d, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return err
		}
		fds = append(fds, d)
		// Two-step creation is safe only under the read lock.
		syscall.ForkLock.RLock()
		d2, err := unix.Dup(fd)
		if err == nil {
			syscall.CloseOnExec(d2)
		}
		syscall.ForkLock.RUnlock()
		if err != nil {
			return err
		}
		fds = append(fds, d2)
		if d3, err := unix.Open(in, unix.O_RDWR|unix.O_CREAT, 0o644); err == nil {
			fds = append(fds, d3)
			// dup3 onto a descriptor that is inheritable right now: the
			// swap to close-on-exec is atomic.
			if err := unix.Dup3(fd, d3, unix.O_CLOEXEC); err != nil {
				return err
			}
		}
		if p, err := pipe(); err == nil {
			fds = append(fds, p...)
		}
		for _, f := range fds {
			unix.Close(f)
		}
		ops.Add(1)
	}
}

// inheritableFDs maps the descriptors this process holds without
// FD_CLOEXEC (its standard streams, whatever the harness passed down) to
// their targets: the only ones a child may see besides "inherit-*" files.
func inheritableFDs(t *testing.T) map[int]string {
	m := map[int]string{}
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	for _, e := range ents {
		var fd int
		fmt.Sscan(e.Name(), &fd)
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil || flags&unix.FD_CLOEXEC != 0 {
			continue
		}
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
			m[fd] = target
		}
	}
	return m
}

func pipe() ([]int, error) {
	var p [2]int
	err := unix.Pipe2(p[:], unix.O_CLOEXEC)
	return p[:], err
}

func TestSpawnRaceStress(t *testing.T) {
	probe := testbin.MustBuild(t, testbin.Probe)
	dir := t.TempDir()
	baseline := countFDs(t)
	inheritable := inheritableFDs(t)

	stop := make(chan struct{})
	var churnOps atomic.Int64
	var churnWG sync.WaitGroup
	churnErrs := make(chan error, churners)
	for c := 0; c < churners; c++ {
		churnWG.Add(1)
		go func(id int) {
			defer churnWG.Done()
			if err := churn(dir, id, stop, &churnOps); err != nil {
				churnErrs <- err
			}
		}(c)
	}

	var failures, spawned atomic.Int64
	var mu sync.Mutex
	var leaks []string
	var wg sync.WaitGroup
	for w := 0; w < spawners; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < spawnsPerWorker; i++ {
				out := filepath.Join(dir, fmt.Sprintf("obs-%d-%d.json", w, i))
				p, err := spawn.Spawn(probe, nil, nil, []string{"probe"}, []string{"FORKLESS_PROBE_OUT=" + out})
				if err != nil {
					failures.Add(1)
					t.Errorf("spawn: %v", err)
					continue
				}
				st, err := p.Wait()
				if err != nil || !st.Success() {
					failures.Add(1)
					t.Errorf("wait: %v %v", st, err)
					continue
				}
				spawned.Add(1)
				obs, err := difftest.ReadObservation(out)
				if err != nil {
					t.Errorf("observation: %v", err)
					continue
				}
				for _, fd := range obs.FDs {
					if inheritable[fd.FD] != fd.Target && !strings.Contains(fd.Target, "/inherit-") {
						mu.Lock()
						leaks = append(leaks, fmt.Sprintf("child %d saw fd %d -> %s", obs.PID, fd.FD, fd.Target))
						mu.Unlock()
					}
				}
				os.Remove(out)
			}
		}(w)
	}
	wg.Wait()
	close(stop)
	churnWG.Wait()
	close(churnErrs)
	for err := range churnErrs {
		t.Errorf("churn: %v", err)
	}

	assert.Zero(t, failures.Load(), "spawn failures")
	assert.EqualValues(t, spawners*spawnsPerWorker, spawned.Load())
	assert.Empty(t, leaks, "close-on-exec descriptors reached children")
	assert.Positive(t, churnOps.Load(), "the churners ran")
	assert.Equal(t, baseline, countFDs(t), "descriptor count back to baseline")
	var ws unix.WaitStatus
	_, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
	assert.Equal(t, unix.ECHILD, err, "no child left behind")
	t.Logf("%d spawns, %d churn rounds", spawned.Load(), churnOps.Load())
}
