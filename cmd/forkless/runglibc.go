package main

// forkless run on a patched glibc (glibcpatch/README.md):
//
//   - --glibc DIR starts CMD on the build in DIR (make glibc:
//     build/glibc-2.36): its own ld.so with --library-path, so that
//     libc.so.6 is the patched one and its hooks find the preloaded
//     library. Processes CMD execs go through the kernel and start on the
//     system's ld.so again; they get DIR's libc through LD_LIBRARY_PATH
//     only when DIR holds the same glibc version as the system (ld.so and
//     libc.so.6 must be of one version), otherwise they run on the system
//     libc, still with the preload (docs/compatibility.md).
//   - a statically linked program relinked with the patched libc.a and
//     lib/libforkless.a carries the hooks itself (section .forkless.hooks):
//     it is not refused, and runs with the same environment.

import (
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/forkless/forkless/libos/ptrace"
)

// hooksSection marks a program linked with lib/libforkless.a (preload/hooks.c).
const hooksSection = ".forkless.hooks"

// hasForklessHooks reports whether the ELF program at path carries the
// hooks a patched static libc calls.
func hasForklessHooks(path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	return f.Section(hooksSection) != nil
}

// patchedGlibc is a build made by glibcpatch/build.sh.
type patchedGlibc struct {
	dir     string // absolute
	version string // e.g. "2.36"
	ldso    string
	libdir  string
}

func openPatchedGlibc(dir string) (*patchedGlibc, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	key, err := os.ReadFile(filepath.Join(abs, "KEY"))
	if err != nil {
		return nil, fmt.Errorf("%s is not a patched glibc build (no KEY file; make glibc makes one)", dir)
	}
	version, _, _ := strings.Cut(strings.TrimSpace(string(key)), "-")
	g := &patchedGlibc{
		dir:     abs,
		version: version,
		ldso:    filepath.Join(abs, "root", "lib64", "ld-linux-x86-64.so.2"),
		libdir:  filepath.Join(abs, "root", "lib64"),
	}
	if _, err := os.Stat(g.ldso); err != nil {
		return nil, fmt.Errorf("%s: no dynamic loader: %w", dir, err)
	}
	if strings.ContainsAny(g.libdir, ": ") {
		return nil, fmt.Errorf("%s: a path with a colon or a space cannot be a library path", dir)
	}
	return g, nil
}

// systemGlibcVersion returns the version of the system's glibc ("2.36"),
// or "" if unknown.
func systemGlibcVersion() string {
	out, err := exec.Command("getconf", "GNU_LIBC_VERSION").Output()
	if err != nil {
		return ""
	}
	_, v, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	return v
}

// onPatchedGlibc rewrites root (CMD, resolved, with forkless
// run's environment) to start on the patched glibc in dir; dir "" leaves it
// alone. A static program keeps its own libc and is started as is.
func onPatchedGlibc(root *ptrace.Spec, dir string) error {
	if dir == "" {
		return nil
	}
	g, err := openPatchedGlibc(dir)
	if err != nil {
		return fmt.Errorf("--glibc: %w", err)
	}
	if f, err := elf.Open(root.Path); err == nil {
		static := true
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				static = false
			}
		}
		f.Close()
		if static {
			return nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		// A script: its interpreter is what the loader would run.
		if interp := scriptInterpreter(root.Path); interp != "" {
			return fmt.Errorf("--glibc: %s is a script; run its interpreter (%s) under --glibc instead", root.Path, interp)
		}
	}
	args := []string{g.ldso, "--library-path", g.libdir, "--argv0", root.Argv[0], root.Path}
	root.Argv = append(args, root.Argv[1:]...)
	root.Path = g.ldso
	if v := systemGlibcVersion(); v != "" && v == g.version {
		root.Env = prependPathVar(root.Env, "LD_LIBRARY_PATH", g.libdir)
	}
	return nil
}

// scriptInterpreter returns the #! interpreter of the file at path, if any.
func scriptInterpreter(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	head := make([]byte, 256)
	n, _ := f.Read(head)
	if n < 2 || string(head[:2]) != "#!" {
		return ""
	}
	return shebangInterpreter(head[:n])
}

// prependPathVar puts dir first in the colon list name of env.
func prependPathVar(env []string, name, dir string) []string {
	out := make([]string, 0, len(env)+1)
	val := dir
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			if v != "" {
				val = dir + ":" + v
			}
			continue
		}
		out = append(out, kv)
	}
	return append(out, name+"="+val)
}
