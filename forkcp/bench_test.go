package forkcp

import (
	"fmt"
	"os"
	"testing"

	"github.com/forkless/forkless/spawn"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// benchMap returns a map of n handles at numbers 0..n-1. While n fits
// under the descriptor limit they are real descriptors (duplicates of one
// pipe); beyond it (100,000 here, where the hard RLIMIT_NOFILE is 20,000
// and cannot be raised) they are numbers above the hard limit, which can
// never be open. Snapshot and Release make no system call, so their cost
// is the same either way; such a map is never closed.
func benchMap(b *testing.B, n int) *HandleMap {
	b.Helper()
	var lim unix.Rlimit
	require.NoError(b, unix.Getrlimit(unix.RLIMIT_NOFILE, &lim))
	m := NewHandleMap()
	if uint64(n)*2+64 > lim.Cur {
		for i := range n {
			// A description as long as the real ones' ("ino=dev:inode").
			h, err := NewHandle(int(lim.Max)+1+i, KindPipe, Flags(i%2), fmt.Sprintf("ino=15:%08d", i))
			require.NoError(b, err)
			require.NoError(b, m.InstallAt(i, h))
		}
		return m
	}
	fillMap(b, m, 0, n)
	b.Cleanup(func() { m.CloseAll() })
	return m
}

func perHandle(b *testing.B, n int) {
	if n > 0 {
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/handle")
	}
}

func BenchmarkSnapshotRelease(b *testing.B) {
	for _, n := range []int{10, 1000, 100_000} {
		b.Run(fmt.Sprintf("handles=%d", n), func(b *testing.B) {
			m := benchMap(b, n)
			b.ReportAllocs()
			for b.Loop() {
				m.Snapshot().Release()
			}
			perHandle(b, n)
		})
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, n := range []int{10, 1000, 100_000} {
		b.Run(fmt.Sprintf("handles=%d", n), func(b *testing.B) {
			s := benchMap(b, n).Snapshot()
			defer s.Release()
			hdr := &Header{Pid: 1, Cwd: "/work"}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := EncodeSnapshot(s, hdr, nil); err != nil {
					b.Fatal(err)
				}
			}
			perHandle(b, n)
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, n := range []int{10, 1000, 100_000} {
		b.Run(fmt.Sprintf("handles=%d", n), func(b *testing.B) {
			s := benchMap(b, n).Snapshot()
			stream, err := EncodeSnapshot(s, &Header{Pid: 1, Cwd: "/work"}, nil)
			require.NoError(b, err)
			s.Release()
			b.SetBytes(int64(len(stream)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(stream, nil); err != nil {
					b.Fatal(err)
				}
			}
			perHandle(b, n)
		})
	}
}

// BenchmarkSendReceive: snapshot, encode, send with SCM_RIGHTS, receive
// into a new map, close it, release. Sender and receiver are one process,
// which therefore holds 2n descriptors: 9,000 is the largest round size
// under the hard limit of 20,000.
func BenchmarkSendReceive(b *testing.B) {
	for _, n := range []int{10, 1000, 9000} {
		b.Run(fmt.Sprintf("handles=%d", n), func(b *testing.B) {
			a, c := socketPair(b)
			m := NewHandleMap()
			fillMap(b, m, 0, n)
			defer m.CloseAll()
			b.ReportAllocs()
			for b.Loop() {
				s := m.Snapshot()
				done := sendAsync(a, s, nil, nil)
				r, err := Receive(c, nil)
				if err != nil {
					b.Fatal(err)
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				r.Map.CloseAll()
				s.Release()
			}
			perHandle(b, n)
		})
	}
}

// BenchmarkFork forks this test binary, whose child restores the map and
// exits, and waits for it. BenchmarkSpawnPlain is the same binary spawned
// without forkcp, exiting at the same point (before any test runs).
func BenchmarkFork(b *testing.B) {
	for _, bc := range []struct {
		n     int
		route Route
	}{{0, RouteFileActions}, {1000, RouteFileActions}, {1000, RouteSocket}} {
		b.Run(fmt.Sprintf("handles=%d/route=%s", bc.n, bc.route), func(b *testing.B) {
			m := NewHandleMap()
			fillMap(b, m, 3, bc.n)
			defer m.CloseAll()
			opts := &ForkOptions{Route: bc.route, Env: roleEnvFor("restore-exit")}
			for b.Loop() {
				p, err := Fork(m, opts)
				if err != nil {
					b.Fatal(err)
				}
				st, err := p.Wait()
				if err != nil || !st.Success() {
					b.Fatal(st, err)
				}
			}
		})
	}
}

func BenchmarkSpawnPlain(b *testing.B) {
	exe, err := os.Executable()
	require.NoError(b, err)
	env := roleEnvFor("exit")
	for b.Loop() {
		p, err := spawn.Spawn(exe, nil, nil, []string{exe}, env)
		if err != nil {
			b.Fatal(err)
		}
		st, err := p.Wait()
		if err != nil || !st.Success() {
			b.Fatal(st, err)
		}
	}
}
