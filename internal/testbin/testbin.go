// Package testbin finds the project's small C helper programs (the probe,
// the tiny static target, the C bench host) for tests, building them with
// gcc when bin/ lacks them or they are older than their source. Tests can
// then run with plain `go test` as well as under `make test`.
package testbin

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Program describes how one helper is built from tests/<Dir>/<Dir>.c.
type Program struct {
	Dir   string   // folder under tests/ holding <Dir>.c
	Out   string   // file name under bin/
	Flags []string // gcc flags besides -O2 -Wall -Wextra -Werror
}

// The helpers. The Makefile builds the same files with the same flags.
var (
	Probe  = Program{Dir: "probe", Out: "forkless-probe", Flags: []string{"-static"}}
	Tiny   = Program{Dir: "tiny", Out: "forkless-tiny", Flags: []string{"-static", "-nostdlib", "-fno-stack-protector"}}
	CBench = Program{Dir: "cbench", Out: "forkless-cbench"}
)

var mu sync.Mutex

// Root returns the repository root: the nearest parent of the working
// directory holding go.mod.
func Root() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("testbin: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Build returns the path of p's binary under bin/, compiling it first when
// it is missing or older than its source.
func Build(p Program) (string, error) {
	mu.Lock()
	defer mu.Unlock()
	root, err := Root()
	if err != nil {
		return "", err
	}
	src := filepath.Join(root, "tests", p.Dir, p.Dir+".c")
	out := filepath.Join(root, "bin", p.Out)
	si, err := os.Stat(src)
	if err != nil {
		return "", fmt.Errorf("testbin: %w", err)
	}
	if oi, err := os.Stat(out); err == nil && !oi.ModTime().Before(si.ModTime()) {
		return out, nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return "", err
	}
	// A unique temporary name: test binaries of several packages may
	// build the same helper at once.
	tf, err := os.CreateTemp(filepath.Dir(out), p.Out+".*.tmp")
	if err != nil {
		return "", err
	}
	tmp := tf.Name()
	tf.Close()
	defer os.Remove(tmp)
	args := append([]string{"-O2", "-Wall", "-Wextra", "-Werror"}, p.Flags...)
	args = append(args, "-o", tmp, src)
	if msg, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("testbin: gcc %s: %v\n%s", p.Dir, err, msg)
	}
	return out, os.Rename(tmp, out)
}

// TB is the part of testing.TB that MustBuild needs.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// MustBuild is Build for tests: it fails the test on error.
func MustBuild(t TB, p Program) string {
	t.Helper()
	path, err := Build(p)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return path
}

// Lib returns the path of lib/libforkless.so, running `make` for it first
// (make decides whether it is stale).
func Lib() (string, error) {
	mu.Lock()
	defer mu.Unlock()
	root, err := Root()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("make", "-s", "lib/libforkless.so")
	cmd.Dir = root
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("testbin: make lib/libforkless.so: %v\n%s", err, msg)
	}
	return filepath.Join(root, "lib", "libforkless.so"), nil
}

// MustLib is Lib for tests.
func MustLib(t TB) string {
	t.Helper()
	path, err := Lib()
	if err != nil {
		t.Fatalf("%v", err)
	}
	return path
}

// Preload returns what tests put in LD_PRELOAD for the library:
// FORKLESS_TEST_LIB when set (e.g. the sanitizer runtime followed by the
// ASan build), else lib/libforkless.so built by make.
func Preload(t TB) string {
	t.Helper()
	if v := os.Getenv("FORKLESS_TEST_LIB"); v != "" {
		return v
	}
	return MustLib(t)
}

// MustRoot is Root for tests.
func MustRoot(t TB) string {
	t.Helper()
	root, err := Root()
	if err != nil {
		t.Fatalf("%v", err)
	}
	return root
}

// SkipTB is a TB that can also skip (testing.TB).
type SkipTB interface {
	TB
	Skipf(format string, args ...any)
}

// EnvRequire, when set (make test sets it; .ci/run installs the programs),
// turns a missing program from a skip into a failure, so that a test
// meant to run cannot pass by not running.
const EnvRequire = "FORKLESS_TEST_REQUIRE"

// Need returns the path of the program name, or skips the test when it is
// not installed (fails it when EnvRequire is set).
func Need(t SkipTB, name, install string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv(EnvRequire) != "" {
		t.Fatalf("%s is not installed (%s), and %s is set", name, install, EnvRequire)
	}
	t.Skipf("%s is not installed (%s)", name, install)
	return ""
}

// Alive reports whether pid exists and is not a zombie. A stat file that
// exists but cannot be read or parsed counts as alive: tests use this to
// wait for processes to end, and must not take such a one for gone.
func Alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the name may hold anything
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
