package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"unsafe"

	"github.com/forkless/forkless/forkcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// Every generation is this test binary forked by forkcp: TestMain runs it.
func TestMain(m *testing.M) {
	if forkcp.Forked() {
		os.Exit(runForked())
	}
	// Children built with -race would otherwise sleep a second at exit.
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	os.Exit(m.Run())
}

type reply struct {
	gen, pid int
	served   int64
}

// get makes one HTTP/1.0 request on a new connection, closed before it
// returns.
func get(addr string) (reply, error) {
	var r reply
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return r, err
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\nHost: restart\r\n\r\n"); err != nil {
		return r, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return r, fmt.Errorf("%s: read response: %w", c.LocalAddr(), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return r, err
	}
	if resp.StatusCode != http.StatusOK {
		return r, fmt.Errorf("status %s", resp.Status)
	}
	_, err = fmt.Sscanf(string(body), "generation %d pid %d served %d\n", &r.gen, &r.pid, &r.served)
	return r, err
}

// stopAndReap sends sig to pid and waits for it to exit, reaping it: every
// generation is a child of the test process, directly or, once its parent
// has exited, as an orphan of this subreaper. It returns the exit status.
func stopAndReap(t *testing.T, pid int, sig unix.Signal) int {
	t.Helper()
	pidfd, err := unix.PidfdOpen(pid, 0)
	require.NoError(t, err)
	defer unix.Close(pidfd)
	require.NoError(t, unix.PidfdSendSignal(pidfd, sig, nil, 0))
	var info unix.Siginfo
	require.NoError(t, unix.Waitid(unix.P_PIDFD, pidfd, &info, unix.WEXITED, nil))
	require.EqualValues(t, 1, info.Code, "CLD_EXITED, not killed")
	return int(*(*int32)(unsafe.Add(unsafe.Pointer(&info), 24))) // si_status
}

func fds(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
			out = append(out, e.Name()+"->"+target)
		}
	}
	slices.Sort(out)
	return out
}

// TestZeroDowntimeRestart hammers the server from several clients while it
// replaces itself three times, and requires that no request fails, that
// every generation took over from the previous one with its state, and
// that every generation exited cleanly.
func TestZeroDowntimeRestart(t *testing.T) {
	const (
		upgrades  = 5
		clients   = 4
		perGenMin = 100       // requests each generation answers before it is replaced
		maxPerCli = 1_000_000 // the loops stop by themselves even if stop is never set
	)
	require.NoError(t, unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
	t.Cleanup(func() { unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) })
	base := fds(t)

	// The test plays generation 0: it listens and hands over to 1.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	first, err := handOver(ln, state{Generation: 1})
	require.NoError(t, err)
	ln.Close()
	require.NoError(t, first.Release()) // reaped by pid below

	var stop atomic.Bool
	var mu sync.Mutex
	var failures []error
	perGen := map[int]int{}
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for i := 0; i < maxPerCli && !stop.Load(); i++ {
				r, err := get(addr)
				mu.Lock()
				if err != nil {
					failures = append(failures, err)
				} else {
					perGen[r.gen]++
				}
				mu.Unlock()
			}
		})
	}

	var last reply
	for g := 1; g <= upgrades+1; g++ {
		// The previous generation has exited: whoever answers is the next.
		r, err := get(addr)
		require.NoError(t, err)
		require.Equal(t, g, r.gen)
		assert.Greater(t, r.served, last.served, "the count carries over")
		last = r
		// Let the clients hammer this generation for a while, so that
		// requests are in flight at the handover.
		for i := 0; i < maxPerCli; i++ {
			mu.Lock()
			n := perGen[g]
			mu.Unlock()
			if n >= perGenMin {
				break
			}
			if _, err := get(addr); err != nil {
				mu.Lock()
				failures = append(failures, err)
				mu.Unlock()
			}
		}
		if g <= upgrades {
			assert.Equal(t, 0, stopAndReap(t, r.pid, unix.SIGHUP), "generation %d exit status", g)
		}
	}
	stop.Store(true)
	wg.Wait()
	assert.Equal(t, 0, stopAndReap(t, last.pid, unix.SIGTERM))

	assert.Empty(t, failures, "no request may fail")
	t.Logf("requests answered per generation: %v", perGen)
	total := 0
	for _, n := range perGen {
		total += n
	}
	assert.Greater(t, total, 0)
	assert.Equal(t, base, fds(t), "no descriptor leaked")
	_, err = get(addr)
	assert.Error(t, err, "nobody listens after the last generation")
}

// TestHandOverRollback: a copy that fails to start (here its payload is
// not valid) leaves the listener with the caller, which keeps serving.
func TestHandOverRollback(t *testing.T) {
	base := fds(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p, err := forkWith(ln, []byte("not json"))
	assert.Nil(t, p)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ended (exit status 1) before serving")

	s := newServer(ln, state{Generation: 7, Served: 41})
	go s.http.Serve(ln)
	r, err := get(ln.Addr().String())
	require.NoError(t, err)
	assert.Equal(t, reply{gen: 7, pid: os.Getpid(), served: 42}, r)
	require.NoError(t, s.http.Close())
	assert.Equal(t, base, fds(t))
}
