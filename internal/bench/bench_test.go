package bench

import (
	"testing"

	"github.com/forkless/forkless/internal/testbin"
)

// benchmarkGo runs one Go-host mechanism against forkless-tiny:
// go test -run '^$' -bench . ./internal/bench
func benchmarkGo(b *testing.B, engine string) {
	tiny := testbin.MustBuild(b, testbin.Tiny)
	m, err := goMechanism(engine)
	if err != nil {
		b.Fatal(err)
	}
	op := goOps[m.Engine]
	argv := []string{tiny}
	for b.Loop() {
		if err := op(tiny, argv, emptyEnv); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkForklessGo(b *testing.B)      { benchmarkGo(b, EngineForklessGo) }
func BenchmarkOsExec(b *testing.B)          { benchmarkGo(b, EngineOsExec) }
func BenchmarkSyscallForkExec(b *testing.B) { benchmarkGo(b, EngineSyscallForkExec) }
func BenchmarkGlibcPosixSpawn(b *testing.B) { benchmarkGo(b, EngineGlibcSpawn) }
