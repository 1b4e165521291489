package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forkless/forkless/internal/bench"
	"github.com/forkless/forkless/internal/testbin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var forklessC = bench.Spec{Engine: bench.EngineForklessC, Host: bench.HostC}

func TestParseBenchFlagsLib(t *testing.T) {
	var out bytes.Buffer
	f, err := parseBenchFlags(nil, &out)
	require.NoError(t, err)
	assert.Empty(t, f.lib)
	assert.False(t, f.namedForklessC)
	assert.Contains(t, f.engines, forklessC, "all includes forkless-c")
	assert.Equal(t, bench.DefaultTargets, f.targets)

	f, err = parseBenchFlags(strings.Fields("--lib /x/libforkless.so --engines forkless-c --targets true,true+preload"), &out)
	require.NoError(t, err)
	assert.Equal(t, "/x/libforkless.so", f.lib)
	assert.True(t, f.namedForklessC)
	assert.Equal(t, []bench.Spec{forklessC}, f.engines)
	assert.Equal(t, []string{"true", "true+preload"}, f.targets)

	f, err = parseBenchFlags(strings.Fields("--engines glibc-posix_spawn,forkless-c/c"), &out)
	require.NoError(t, err)
	assert.True(t, f.namedForklessC)

	out.Reset()
	_, err = parseBenchFlags([]string{"-h"}, &out)
	require.ErrorIs(t, err, flag.ErrHelp)
	help := out.String()
	assert.Contains(t, help, "--lib PATH")
	assert.Contains(t, help, "true+preload")
	assert.Contains(t, help, "forkless-c")
}

// libLayout makes DIR/bin (the helpers) and, when withLib, DIR/lib/libforkless.so.
func libLayout(t *testing.T, withLib bool) (helpers, lib string) {
	root := t.TempDir()
	helpers = filepath.Join(root, "bin")
	require.NoError(t, os.MkdirAll(helpers, 0o755))
	lib = filepath.Join(root, "lib", "libforkless.so")
	if withLib {
		require.NoError(t, os.MkdirAll(filepath.Dir(lib), 0o755))
		require.NoError(t, os.WriteFile(lib, []byte("x"), 0o644))
	}
	return helpers, lib
}

func TestResolveLib(t *testing.T) {
	parse := func(args string) *benchFlags {
		f, err := parseBenchFlags(strings.Fields(args), &bytes.Buffer{})
		require.NoError(t, err)
		return f
	}

	t.Run("found next to the helpers", func(t *testing.T) {
		helpers, want := libLayout(t, true)
		var stderr bytes.Buffer
		lib, specs, err := resolveLib(parse(""), helpers, &stderr)
		require.NoError(t, err)
		assert.Equal(t, want, lib)
		assert.Equal(t, bench.Catalog, specs)
		assert.Empty(t, stderr.String())
	})

	t.Run("missing, all: skipped with a note", func(t *testing.T) {
		helpers, _ := libLayout(t, false)
		for _, args := range []string{"", "--engines all"} {
			var stderr bytes.Buffer
			lib, specs, err := resolveLib(parse(args), helpers, &stderr)
			require.NoError(t, err, args)
			assert.Empty(t, lib)
			assert.NotContains(t, specs, forklessC)
			assert.Len(t, specs, len(bench.Catalog)-1)
			assert.Equal(t, 1, strings.Count(stderr.String(), "\n"), "one note: %s", stderr.String())
			assert.Contains(t, stderr.String(), "skipping forkless-c")
			assert.Contains(t, stderr.String(), "make")
		}
	})

	t.Run("missing, asked for: an error naming make", func(t *testing.T) {
		helpers, _ := libLayout(t, false)
		for _, args := range []string{
			"--engines forkless-c",
			"--engines vfork+exec,forkless-c/c",
			"--engines all --targets true+preload",
			"--engines forkless-go --targets true,true+preload",
			"--lib /nonexistent/libforkless.so",
		} {
			var stderr bytes.Buffer
			_, _, err := resolveLib(parse(args), helpers, &stderr)
			require.Error(t, err, args)
			assert.Contains(t, err.Error(), "run `make`", args)
			assert.Empty(t, stderr.String(), args)
		}
	})

	t.Run("not needed", func(t *testing.T) {
		helpers, _ := libLayout(t, false)
		var stderr bytes.Buffer
		lib, specs, err := resolveLib(parse("--engines forkless-go,fork+exec --lib /nonexistent/x.so"), helpers, &stderr)
		require.NoError(t, err)
		assert.Empty(t, lib)
		assert.Len(t, specs, 2)
		assert.Empty(t, stderr.String())
	})

	t.Run("--lib wins", func(t *testing.T) {
		helpers, _ := libLayout(t, false)
		_, other := libLayout(t, true)
		var stderr bytes.Buffer
		lib, specs, err := resolveLib(parse("--engines forkless-c --lib "+other), helpers, &stderr)
		require.NoError(t, err)
		assert.Equal(t, other, lib)
		assert.Equal(t, []bench.Spec{forklessC}, specs)
	})
}

// TestBenchCommandWithLibrary runs `forkless bench` in-process, small,
// with forkless-c and true+preload, when the preload library is available.
func TestBenchCommandWithLibrary(t *testing.T) {
	lib, err := testbin.Lib()
	if env := os.Getenv("FORKLESS_TEST_LIB"); env != "" {
		lib, err = bench.CheckLib(env)
	}
	if err != nil {
		first, _, _ := strings.Cut(err.Error(), "\n")
		t.Skipf("preload library not available (build it with `make lib/libforkless.so` or set FORKLESS_TEST_LIB): %s", first)
	}
	helpers := filepath.Dir(testbin.MustBuild(t, testbin.CBench))
	testbin.MustBuild(t, testbin.Tiny)
	args := fmt.Sprintf("--n 3 --rounds 1 --rss 0 --targets true,true+preload --engines glibc-posix_spawn,forkless-c --helpers %s --lib %s --quiet", helpers, lib)

	f, err := parseBenchFlags(strings.Fields(args+" --json"), &bytes.Buffer{})
	require.NoError(t, err)
	var stdout, stderr bytes.Buffer
	require.NoError(t, doBench(f, &stdout, &stderr), stderr.String())
	var cells []struct {
		Engine, Host, Target string
		N                    int
		P50                  float64 `json:"p50_us"`
	}
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &cells))
	got := map[string]int{}
	for _, c := range cells {
		got[c.Engine+"/"+c.Host+" "+c.Target] = c.N
		assert.Greater(t, c.P50, 0.0)
	}
	assert.Equal(t, map[string]int{
		"glibc-posix_spawn/go true": 3, "glibc-posix_spawn/go true+preload": 3,
		"glibc-posix_spawn/c true": 3, "glibc-posix_spawn/c true+preload": 3,
		"forkless-c/c true": 3, "forkless-c/c true+preload": 3,
	}, got)

	f, err = parseBenchFlags(strings.Fields(args), &bytes.Buffer{})
	require.NoError(t, err)
	stdout.Reset()
	require.NoError(t, doBench(f, &stdout, &stderr), stderr.String())
	assert.Contains(t, stdout.String(), "(median, glibc-posix_spawn/go)")
	assert.Contains(t, stdout.String(), "(median, glibc-posix_spawn/c)")
	assert.Empty(t, stderr.String())
}
