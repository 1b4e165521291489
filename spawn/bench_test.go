package spawn

import (
	"testing"

	"github.com/forkless/forkless/internal/testbin"
)

// The cross-mechanism comparison lives in internal/bench and `forkless
// bench`; these measure the engine alone, serial and from many goroutines.

func benchSpawn(b *testing.B, path string) {
	for i := 0; i < b.N; i++ {
		p, err := Spawn(path, nil, nil, []string{"t"}, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Wait(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSpawnTiny(b *testing.B) { benchSpawn(b, testbin.MustBuild(b, testbin.Tiny)) }

func BenchmarkSpawnTrue(b *testing.B) { benchSpawn(b, "/bin/true") }

// BenchmarkSpawnTinyParallel shows that concurrent spawns do not serialize.
func BenchmarkSpawnTinyParallel(b *testing.B) {
	tiny := testbin.MustBuild(b, testbin.Tiny)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p, err := Spawn(tiny, nil, nil, []string{"t"}, nil)
			if err != nil {
				b.Error(err)
				return
			}
			if _, err := p.Wait(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkSpawnFileActions adds a typical action list (stdio redirection
// and a closefrom) to measure the interpreter's share.
func BenchmarkSpawnFileActions(b *testing.B) {
	tiny := testbin.MustBuild(b, testbin.Tiny)
	var fa FileActions
	_ = fa.AddOpen(0, "/dev/null", 0, 0)
	_ = fa.AddDup2(2, 1)
	_ = fa.AddClosefrom(3)
	for i := 0; i < b.N; i++ {
		p, err := Spawn(tiny, &fa, nil, []string{"t"}, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Wait(); err != nil {
			b.Fatal(err)
		}
	}
}
