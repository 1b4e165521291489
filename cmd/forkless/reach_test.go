package main

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/forkless/forkless/internal/testbin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gcc compiles src (C) in dir with args and returns the output path.
func gcc(t *testing.T, dir, name, src string, args ...string) string {
	t.Helper()
	c := filepath.Join(dir, name+".c")
	require.NoError(t, os.WriteFile(c, []byte(src), 0o644))
	out := filepath.Join(dir, name)
	msg, err := exec.Command("gcc", append(args, "-o", out, c)...).CombinedOutput()
	require.NoError(t, err, "gcc: %s", msg)
	return out
}

func writeScript(t *testing.T, path, text string) string {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(text), 0o755))
	return path
}

func TestPreloadBlockerRealFiles(t *testing.T) {
	dir := t.TempDir()
	tiny := testbin.MustBuild(t, testbin.Tiny)
	const hello = "int main(void) { return 0; }\n"
	static := gcc(t, dir, "static", hello, "-static")
	staticPIE := gcc(t, dir, "static-pie", hello, "-static-pie", "-fPIE")
	dynamic := gcc(t, dir, "dynamic", hello)
	musl := gcc(t, dir, "musl", hello, "-Wl,--dynamic-linker=/lib/ld-musl-x86_64.so.1")
	object := gcc(t, dir, "object.o", hello, "-c")
	self, err := os.Executable() // this test: a Go program
	require.NoError(t, err)

	script := writeScript(t, filepath.Join(dir, "script"), "#!/bin/sh\nexit 0\n")
	staticScript := writeScript(t, filepath.Join(dir, "static-script"), "#!  "+tiny+"  -x\n")
	nested := writeScript(t, filepath.Join(dir, "nested"), "#!"+staticScript+"\n")
	goScript := writeScript(t, filepath.Join(dir, "go-script"), "#!"+self+"\n")
	loop := filepath.Join(dir, "loop")
	writeScript(t, loop, "#!"+loop+"\n")
	text := writeScript(t, filepath.Join(dir, "text"), "echo no interpreter line\n")
	empty := writeScript(t, filepath.Join(dir, "empty"), "")
	bang := writeScript(t, filepath.Join(dir, "bang"), "#!\n")

	for _, c := range []struct{ path, want string }{
		{tiny, "is statically linked"},
		{static, "is statically linked"},
		{staticPIE, "is statically linked"},
		{self, "is a Go program (Go creates processes with raw system calls)"},
		{"/bin/true", ""},
		{dynamic, ""},
		{musl, "uses the dynamic loader /lib/ld-musl-x86_64.so.1, not glibc's"},
		{object, ""},
		{script, ""},
		{staticScript, "is a script for " + tiny + ", which is statically linked"},
		{nested, "is a script for " + staticScript + ", which is a script for " + tiny + ", which is statically linked"},
		{goScript, "is a script for " + self + ", which is a Go program (Go creates processes with raw system calls)"},
		{loop, ""},
		{text, ""},
		{empty, ""},
		{bang, ""},
		{filepath.Join(dir, "missing"), ""},
	} {
		assert.Equal(t, c.want, preloadBlocker(c.path), c.path)
	}
}

func TestHasGoNote(t *testing.T) {
	note := func(name string, typ uint32, desc string) []byte {
		bo := binary.LittleEndian
		b := bo.AppendUint32(nil, uint32(len(name)+1))
		b = bo.AppendUint32(b, uint32(len(desc)))
		b = bo.AppendUint32(b, typ)
		b = append(b, name...)
		b = append(b, 0)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		b = append(b, desc...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	gnu := note("GNU", 3, "0123456789abcdef0123")
	goID := note("Go", 4, "abc/def")
	le := binary.LittleEndian
	assert.True(t, hasGoNote(append(gnu, goID...), le))
	assert.False(t, hasGoNote(gnu, le))
	assert.False(t, hasGoNote(note("Go", 1, "x"), le), "only the build ID type")
	assert.False(t, hasGoNote(goID[:len(goID)-4], le), "cut short")
	assert.False(t, hasGoNote(nil, le))
	huge := le.AppendUint32(le.AppendUint32(le.AppendUint32(nil, 0xffffffff), 0xffffffff), 4)
	assert.False(t, hasGoNote(huge, le))
}

func TestSecureExec(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to give a file to another user")
	}
	p := filepath.Join(t.TempDir(), "prog")
	require.NoError(t, os.WriteFile(p, nil, 0o755))
	assert.Equal(t, "", secureExec(p))
	require.NoError(t, os.Chmod(p, 0o755|os.ModeSetuid))
	assert.Equal(t, "", secureExec(p), "set-user-ID to ourselves")
	require.NoError(t, os.Chown(p, 65534, 65534))
	require.NoError(t, os.Chmod(p, 0o755|os.ModeSetuid))
	assert.Equal(t, "is set-user-ID", secureExec(p))
	require.NoError(t, os.Chmod(p, 0o755|os.ModeSetgid))
	assert.Equal(t, "is set-group-ID", secureExec(p))
}

func TestGlibcLoader(t *testing.T) {
	assert.True(t, glibcLoader("/lib64/ld-linux-x86-64.so.2"))
	assert.True(t, glibcLoader("/lib/ld-linux-aarch64.so.1"))
	assert.True(t, glibcLoader("/opt/glibc/elf/ld.so"))
	assert.False(t, glibcLoader("/lib/ld-musl-x86_64.so.1"))
	assert.False(t, glibcLoader("/system/bin/linker64"))
}
