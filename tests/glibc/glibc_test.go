// Package glibc tests the patched glibc builds of glibcpatch/ (make glibc):
//
//   - without a hook, the patched libc behaves as the system's: the
//     differential scenarios (glibc's posix_spawn through purego, as
//     tests/difftest runs them) and CPython's test_subprocess and
//     test_posix give the same results on both;
//   - with libforkless.so preloaded, system, popen, wordexp, daemon and
//     forkpty appear in the trace, and the race stress of tests/cstress
//     passes on the patched libc;
//   - a static program linked with the patched libc.a and lib/libforkless.a
//     takes the forkless path and forkless run does not refuse it.
//
// It needs the builds, so it runs only from make test-glibc
// (FORKLESS_GLIBC_TEST=1, versions in FORKLESS_GLIBC_VERSIONS).
package glibc

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forkless/forkless/internal/testbin"
	"github.com/forkless/forkless/tests/difftest"
	"github.com/stretchr/testify/require"
)

// envShowLibc makes the test binary print which libc.so.6 it runs on and
// exit (a check that the patched loader is really used).
const envShowLibc = "FORKLESS_GLIBC_TEST_SHOW_LIBC"

func TestMain(m *testing.M) {
	if difftest.IsRunner() {
		difftest.RunnerMain()
	}
	if os.Getenv(envShowLibc) != "" {
		fmt.Println(mappedLibc())
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// mappedLibc returns the path of the libc.so.6 mapped in this process.
func mappedLibc() string {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return "?"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 6 && filepath.Base(fields[5]) == "libc.so.6" {
			return fields[5]
		}
	}
	return "none"
}

// build is one patched glibc build.
type build struct {
	version string
	dir     string // build/glibc-VERSION
	libdir  string // its lib64: libc.so.6, ld.so
	ldso    string
	usr     string // its usr: include, lib64 with libc.a and crt files
}

func versions(t *testing.T) []string {
	t.Helper()
	if os.Getenv("FORKLESS_GLIBC_TEST") != "1" {
		t.Skip("patched glibc tests run from make test-glibc (FORKLESS_GLIBC_TEST=1)")
	}
	v := strings.Fields(os.Getenv("FORKLESS_GLIBC_VERSIONS"))
	if len(v) == 0 {
		v = []string{"2.36"}
	}
	return v
}

func getBuild(t *testing.T, version string) build {
	t.Helper()
	root := testbin.MustRoot(t)
	dir := filepath.Join(root, "build", "glibc-"+version)
	key, err := os.ReadFile(filepath.Join(dir, "KEY"))
	require.NoError(t, err, "no build of glibc %s: run make glibc", version)
	require.True(t, strings.HasPrefix(string(key), version+"-"), "KEY %q is not for %s", key, version)
	b := build{
		version: version, dir: dir,
		libdir: filepath.Join(dir, "root", "lib64"),
		ldso:   filepath.Join(dir, "root", "lib64", "ld-linux-x86-64.so.2"),
		usr:    filepath.Join(dir, "root", "usr"),
	}
	require.FileExists(t, b.ldso)
	return b
}

// forEach runs fn as a subtest for each version under test.
func forEach(t *testing.T, fn func(t *testing.T, b build)) {
	for _, v := range versions(t) {
		t.Run(v, func(t *testing.T) { fn(t, getBuild(t, v)) })
	}
}

// systemVersion is the system glibc's version ("2.36").
func systemVersion(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("getconf", "GNU_LIBC_VERSION").Output()
	require.NoError(t, err)
	_, v, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	return v
}

// onPatched returns the argv that runs prog with args on b's loader and
// libc (no preload).
func onPatched(b build, prog string, args ...string) []string {
	return append([]string{b.ldso, "--library-path", b.libdir, prog}, args...)
}

func root(t *testing.T) string { return testbin.MustRoot(t) }

// forklessBin is bin/forkless, built by make.
func forklessBin(t *testing.T) string {
	t.Helper()
	p := filepath.Join(root(t), "bin", "forkless")
	require.FileExists(t, p, "run make first")
	return p
}

// cleanEnv is the environment without the library's variables.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if name == "LD_PRELOAD" || name == "LD_LIBRARY_PATH" || strings.HasPrefix(name, "FORKLESS_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}
