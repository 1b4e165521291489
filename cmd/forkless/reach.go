package main

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// maxScriptDepth is how many #! interpreters Linux follows.
const maxScriptDepth = 4

// preloadBlocker returns why LD_PRELOAD cannot reach the program at path,
// or "" when it can, or when exec will report a problem with the file
// itself (not ELF, not a script, unreadable):
//
//   - an ELF file without PT_INTERP is statically linked: no dynamic
//     loader runs, so nothing is preloaded;
//   - a Go program (section .go.buildinfo or .note.go.buildid, or a Go
//     build ID note) creates processes with raw system calls, past libc;
//   - a #! script is reached when its interpreter is.
func preloadBlocker(path string) string {
	return blocker(path, 0)
}

func blocker(path string, depth int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	head := make([]byte, 256) // the kernel reads the #! line from the first 256 bytes
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte(elf.ELFMAG)):
		return elfBlocker(f)
	case bytes.HasPrefix(head, []byte("#!")):
		if depth >= maxScriptDepth {
			return ""
		}
		interp := shebangInterpreter(head)
		if interp == "" {
			return ""
		}
		if why := blocker(interp, depth+1); why != "" {
			return fmt.Sprintf("is a script for %s, which %s", interp, why)
		}
	}
	return ""
}

// shebangInterpreter returns the interpreter of a #! line: the first word
// after #!, as the kernel reads it.
func shebangInterpreter(head []byte) string {
	line, _, _ := bytes.Cut(head[2:], []byte{'\n'})
	fields := strings.Fields(string(line))
	if len(fields) == 0 {
		return ""
	}
	return fields[0]
}

func elfBlocker(r io.ReaderAt) string {
	ef, err := elf.NewFile(r)
	if err != nil {
		return "" // exec will say what is wrong
	}
	if ef.Type != elf.ET_EXEC && ef.Type != elf.ET_DYN {
		return ""
	}
	if isGoBinary(ef) {
		return "is a Go program (Go creates processes with raw system calls)"
	}
	for _, p := range ef.Progs {
		if p.Type != elf.PT_INTERP || p.Filesz > 4096 {
			continue
		}
		buf := make([]byte, p.Filesz)
		if _, err := p.ReadAt(buf, 0); err != nil {
			return ""
		}
		interp := string(bytes.TrimRight(buf, "\x00"))
		if !glibcLoader(interp) {
			return fmt.Sprintf("uses the dynamic loader %s, not glibc's", interp)
		}
		return ""
	}
	return "is statically linked"
}

// glibcLoader reports whether interp names glibc's dynamic loader
// (ld-linux-x86-64.so.2, ld-linux-aarch64.so.1, ld-linux.so.2, ld.so
// of a glibc build tree).
func glibcLoader(interp string) bool {
	base := filepath.Base(interp)
	return strings.HasPrefix(base, "ld-linux") || base == "ld.so" || strings.HasPrefix(base, "ld64.so")
}

// isGoBinary reports whether ef was built by the gc Go toolchain.
func isGoBinary(ef *elf.File) bool {
	if ef.Section(".go.buildinfo") != nil || ef.Section(".note.go.buildid") != nil {
		return true
	}
	// Without section headers (stripped with sstrip): the build ID note,
	// named "Go" with type 4, in a PT_NOTE segment.
	for _, p := range ef.Progs {
		if p.Type != elf.PT_NOTE || p.Filesz > 1<<16 {
			continue
		}
		data := make([]byte, p.Filesz)
		if _, err := p.ReadAt(data, 0); err != nil {
			continue
		}
		if hasGoNote(data, ef.ByteOrder) {
			return true
		}
	}
	return false
}

// hasGoNote walks the notes of a PT_NOTE segment.
func hasGoNote(data []byte, bo binary.ByteOrder) bool {
	align := func(n uint64) uint64 { return (n + 3) &^ 3 }
	for len(data) >= 12 {
		namesz, descsz, typ := uint64(bo.Uint32(data)), uint64(bo.Uint32(data[4:])), bo.Uint32(data[8:])
		size := 12 + align(namesz) + align(descsz)
		if size > uint64(len(data)) {
			return false
		}
		name := data[12 : 12+namesz]
		if string(bytes.TrimRight(name, "\x00")) == "Go" && typ == 4 {
			return true
		}
		data = data[size:]
	}
	return false
}

// secureExec returns why the dynamic loader runs the program at path in
// secure-execution mode (set-user-ID or set-group-ID to someone else),
// where it ignores LD_PRELOAD; "" otherwise.
func secureExec(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	switch {
	case fi.Mode()&os.ModeSetuid != 0 && int(st.Uid) != os.Getuid():
		return "is set-user-ID"
	case fi.Mode()&os.ModeSetgid != 0 && int(st.Gid) != os.Getgid():
		return "is set-group-ID"
	}
	return ""
}
