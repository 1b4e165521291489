package ptrace

import (
	"os"
	"os/exec"
	"strconv"
	"testing"

	"github.com/forkless/forkless/internal/testbin"
	"github.com/forkless/forkless/libos"
	"github.com/stretchr/testify/require"
)

// The overhead benchmarks run one static program per iteration, natively
// and on the ptrace platform; compare the two sub-benchmarks of one run
// (docs/performance.md has the command lines and figures).
//
//	go test -run '^$' -bench . -count 6 ./libos/ptrace
const (
	benchSpawns   = 200    // posix_spawn + wait of the tiny static program per iteration
	benchSyscalls = 200000 // getppid + 1-byte read per iteration
)

func BenchmarkSpawn(b *testing.B) {
	static := testbin.MustBuild(b, staticProg)
	tiny := testbin.MustBuild(b, testbin.Tiny)
	benchPair(b, static, "spawnloop", strconv.Itoa(benchSpawns), tiny)
}

func BenchmarkFork(b *testing.B) {
	static := testbin.MustBuild(b, staticProg)
	tiny := testbin.MustBuild(b, testbin.Tiny)
	benchPair(b, static, "forkloop", strconv.Itoa(benchSpawns), tiny)
}

func BenchmarkSyscalls(b *testing.B) {
	static := testbin.MustBuild(b, staticProg)
	benchPair(b, static, "syscalls", strconv.Itoa(benchSyscalls))
}

func benchPair(b *testing.B, argv ...string) {
	b.Run("native", func(b *testing.B) {
		for range b.N {
			cmd := exec.Command(argv[0], argv[1:]...)
			require.NoError(b, cmd.Run())
		}
	})
	b.Run("ptrace", func(b *testing.B) {
		exe, err := os.Executable()
		require.NoError(b, err)
		for range b.N {
			rec := newRecorder()
			tr := New(rec, libos.Policy{})
			ws, err := tr.Run(Spec{Path: argv[0], Argv: argv, Traced: true, Stub: exe})
			require.NoError(b, err)
			require.NoError(b, tr.Close())
			require.Zero(b, int(ws))
		}
	})
}
