package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/forkless/forkless/libos/ptrace"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeGlibc makes a folder shaped like a glibcpatch build of version.
func fakeGlibc(t *testing.T, version string) string {
	t.Helper()
	dir := t.TempDir()
	lib := filepath.Join(dir, "root", "lib64")
	require.NoError(t, os.MkdirAll(lib, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(lib, "ld-linux-x86-64.so.2"), []byte{}, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "KEY"), []byte(version+"-0123456789abcdef\n"), 0o644))
	return dir
}

func TestOnPatchedGlibcDynamic(t *testing.T) {
	sh, err := exec.LookPath("sh")
	require.NoError(t, err)
	sh, err = filepath.EvalSymlinks(sh)
	require.NoError(t, err)
	if systemGlibcVersion() == "" {
		t.Skip("getconf GNU_LIBC_VERSION does not answer")
	}
	for _, v := range []string{systemGlibcVersion(), "9.99"} {
		dir := fakeGlibc(t, v)
		cmd := &ptrace.Spec{Path: sh, Argv: []string{"sh", "-c", "true"}, Env: []string{"A=1", "LD_LIBRARY_PATH=/x"}}
		require.NoError(t, onPatchedGlibc(cmd, dir))
		ldso := filepath.Join(dir, "root", "lib64", "ld-linux-x86-64.so.2")
		libdir := filepath.Join(dir, "root", "lib64")
		assert.Equal(t, ldso, cmd.Path)
		assert.Equal(t, []string{ldso, "--library-path", libdir, "--argv0", "sh", sh, "-c", "true"}, cmd.Argv)
		if v == systemGlibcVersion() {
			assert.Equal(t, []string{"A=1", "LD_LIBRARY_PATH=" + libdir + ":/x"}, cmd.Env, "same version: children get it too")
		} else {
			assert.Equal(t, []string{"A=1", "LD_LIBRARY_PATH=/x"}, cmd.Env, "another version: children keep the system libc")
		}
	}
}

func TestOnPatchedGlibcErrors(t *testing.T) {
	cmd := &ptrace.Spec{Path: "/bin/true", Argv: []string{"true"}}
	assert.NoError(t, onPatchedGlibc(cmd, ""), "no --glibc")
	assert.Equal(t, "/bin/true", cmd.Path)
	assert.ErrorContains(t, onPatchedGlibc(cmd, t.TempDir()), "not a patched glibc build")

	script := filepath.Join(t.TempDir(), "s")
	require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\ntrue\n"), 0o755))
	cmd = &ptrace.Spec{Path: script, Argv: []string{script}}
	assert.ErrorContains(t, onPatchedGlibc(cmd, fakeGlibc(t, "2.36")), "is a script")
}

func TestHasForklessHooks(t *testing.T) {
	self, err := os.Executable()
	require.NoError(t, err)
	assert.False(t, hasForklessHooks(self))
	assert.False(t, hasForklessHooks("/nonexistent"))
	lib := filepath.Join("..", "..", "lib", "libforkless.so")
	if _, err := os.Stat(lib); err == nil {
		assert.True(t, hasForklessHooks(lib), "libforkless.so carries the mark")
	}
}

func TestPrependPathVar(t *testing.T) {
	assert.Equal(t, []string{"B=2", "P=/d"}, prependPathVar([]string{"B=2"}, "P", "/d"))
	assert.Equal(t, []string{"B=2", "P=/d"}, prependPathVar([]string{"P=", "B=2"}, "P", "/d"))
	assert.Equal(t, []string{"P=/d:/a:/b"}, prependPathVar([]string{"P=/a:/b"}, "P", "/d"))
}
