package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/forkless/forkless/forkcp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The workers Fork starts are this test binary: TestMain runs them.
func TestMain(m *testing.M) {
	if forkcp.Forked() {
		os.Exit(runWorker())
	}
	// Children built with -race would otherwise sleep a second at exit.
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	os.Exit(m.Run())
}

// get makes one HTTP/1.0 request on a new connection and closes it before
// returning, so nothing stays open behind the test's back.
func get(addr string) (string, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\nHost: prefork\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s", resp.Status)
	}
	return string(body), nil
}

// fds lists this process's descriptors.
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

func TestPreforkAnswersEveryRequest(t *testing.T) {
	const (
		workers  = 3
		clients  = 4
		requests = 100 // per client
	)
	base := fds(t)
	m, err := startMaster("127.0.0.1:0", workers)
	require.NoError(t, err)
	pids := m.Pids()
	require.Len(t, pids, workers)

	var mu sync.Mutex
	served := map[string]int{} // pid -> requests
	var failures []error
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for range requests {
				body, err := get(m.Addr())
				var id, pid int
				if err == nil {
					_, err = fmt.Sscanf(body, "worker %d pid %d\n", &id, &pid)
				}
				mu.Lock()
				if err != nil {
					failures = append(failures, err)
				} else {
					served[strconv.Itoa(pid)]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.NoError(t, m.Stop())

	assert.Empty(t, failures, "every request is answered")
	total := 0
	for pid, n := range served {
		p, _ := strconv.Atoi(pid)
		assert.Contains(t, pids, p, "answered by a worker")
		total += n
	}
	assert.Equal(t, clients*requests, total)
	t.Logf("requests per worker pid: %v", served)
	assert.Equal(t, base, fds(t), "no descriptor leaked")
	_, err = get(m.Addr())
	assert.Error(t, err, "nobody listens after Stop")
}

func TestWorkerNotForked(t *testing.T) {
	_, _, err := restoreWorker()
	assert.ErrorIs(t, err, forkcp.ErrNotForked)
}
