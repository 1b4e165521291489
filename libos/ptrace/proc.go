package ptrace

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/forkless/forkless/internal/trace"
	"golang.org/x/sys/unix"
)

const pageSize = 4096

// readMem reads up to n bytes of pid's memory at addr, page by page, and
// returns what could be read before the first fault.
func readMem(pid int, addr uint64, n int) []byte {
	out := make([]byte, 0, n)
	for len(out) < n {
		chunk := pageSize - int(addr%pageSize)
		if chunk > n-len(out) {
			chunk = n - len(out)
		}
		buf := make([]byte, chunk)
		got, err := unix.ProcessVMReadv(pid,
			[]unix.Iovec{{Base: &buf[0], Len: uint64(chunk)}},
			[]unix.RemoteIovec{{Base: uintptr(addr), Len: chunk}}, 0)
		if err != nil || got <= 0 {
			break
		}
		out = append(out, buf[:got]...)
		if got < chunk {
			break
		}
		addr += uint64(got)
	}
	return out
}

// readString reads a NUL-terminated string of at most max bytes; cut
// reports that it was longer (or unreadable past max).
func readString(pid int, addr uint64, max int) (s []byte, cut bool, ok bool) {
	if addr == 0 {
		return nil, false, false
	}
	for len(s) <= max {
		chunk := pageSize - int(addr%pageSize)
		b := readMem(pid, addr, chunk)
		if len(b) == 0 {
			return s, false, len(s) > 0
		}
		if i := bytes.IndexByte(b, 0); i >= 0 {
			s = append(s, b[:i]...)
			break
		}
		s = append(s, b...)
		addr += uint64(len(b))
	}
	if len(s) > max {
		return s[:max], true, true
	}
	return s, false, true
}

// readU64 reads one 64-bit word.
func readU64(pid int, addr uint64) (uint64, bool) {
	b := readMem(pid, addr, 8)
	if len(b) != 8 {
		return 0, false
	}
	return binary.NativeEndian.Uint64(b), true
}

// utf8Bytes turns b into UTF-8 with each invalid byte as one U+FFFD, as
// the library writes arguments.
func utf8Bytes(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 {
			sb.WriteRune(utf8.RuneError)
			b = b[1:]
			continue
		}
		sb.Write(b[:n])
		b = b[n:]
	}
	return sb.String()
}

// readArgv reads an argv array (at most trace.MaxArgv entries of at most
// trace.MaxArgLen bytes each).
func readArgv(pid int, addr uint64) (argv []string, truncated bool) {
	if addr == 0 {
		return nil, false
	}
	for i := 0; ; i++ {
		p, ok := readU64(pid, addr+uint64(8*i))
		if !ok || p == 0 {
			return argv, truncated
		}
		if i == trace.MaxArgv {
			return argv, true
		}
		s, cut, _ := readString(pid, p, trace.MaxArgLen)
		truncated = truncated || cut
		argv = append(argv, utf8Bytes(s))
	}
}

// fdInfo is one open descriptor of a process.
type fdInfo struct {
	fd     int
	target string
	flags  int // open flags from fdinfo, O_CLOEXEC included
}

func (f fdInfo) cloexec() bool { return f.flags&unix.O_CLOEXEC != 0 }

// listFDs reads pid's descriptor table from /proc: targets and flags,
// sorted by number. It uses raw system calls: it runs at every exec and
// fork, on the tracer thread, while the tracee waits.
func listFDs(pid int) []fdInfo {
	dir := "/proc/" + strconv.Itoa(pid)
	fdDir, err := unix.Open(dir+"/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(fdDir)
	infoDir, err := unix.Open(dir+"/fdinfo", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(infoDir)
	var names []string
	buf := make([]byte, 4096)
	for {
		n, err := unix.Getdents(fdDir, buf)
		if err != nil || n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
	out := make([]fdInfo, 0, len(names))
	link := make([]byte, 4096)
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		n, err := unix.Readlinkat(fdDir, name, link)
		if err != nil {
			continue // closed meanwhile
		}
		flags, _ := readFDFlags(infoDir, name, buf) // 0 when unreadable
		out = append(out, fdInfo{fd: fd, target: string(link[:n]), flags: flags})
	}
	slices.SortFunc(out, func(a, b fdInfo) int { return a.fd - b.fd })
	return out
}

// fdFlagsOf returns the open flags of pid's descriptor fd.
func fdFlagsOf(pid, fd int) (int, bool) {
	return readFDFlags(unix.AT_FDCWD, "/proc/"+strconv.Itoa(pid)+"/fdinfo/"+strconv.Itoa(fd), make([]byte, 4096))
}

// readFDFlags parses the "flags:" line (octal) of the fdinfo file name
// (relative to dir).
func readFDFlags(dir int, name string, buf []byte) (int, bool) {
	f, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, false
	}
	n, _ := unix.Read(f, buf)
	unix.Close(f)
	if n <= 0 {
		return 0, false
	}
	for line := range strings.SplitSeq(string(buf[:n]), "\n") {
		if v, ok := strings.CutPrefix(line, "flags:"); ok {
			flags, err := strconv.ParseInt(strings.TrimSpace(v), 8, 64)
			if err == nil && flags >= 0 {
				return int(flags), true
			}
		}
	}
	return 0, false
}

// traceFDs converts a table to event entries (at most trace.MaxFDs).
func traceFDs(fds []fdInfo) (out []trace.FD, truncated bool) {
	for _, f := range fds {
		if len(out) == trace.MaxFDs {
			return out, true
		}
		out = append(out, trace.FD{FD: f.fd, Target: f.target, Flags: f.flags})
	}
	return out, false
}

// tasks lists the thread ids of pid.
func tasks(pid int) []int {
	d, err := os.Open("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		return nil
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	var out []int
	for _, n := range names {
		if tid, err := strconv.Atoi(n); err == nil {
			out = append(out, tid)
		}
	}
	return out
}

// statusField returns a numeric field of /proc/PID/status ("PPid",
// "TracerPid", "Tgid"), or -1.
func statusField(pid int, name string) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// comm returns the command name of pid.
func comm(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}

// resolve makes an exec path absolute the way the kernel resolves it:
// relative to dirfd (AT_FDCWD: the process's working directory).
func resolve(pid int, dirfd int, path string) string {
	if strings.HasPrefix(path, "/") {
		return filepath.Clean(path)
	}
	var base string
	var err error
	if dirfd == unix.AT_FDCWD {
		base, err = os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
	} else {
		base, err = os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + strconv.Itoa(dirfd))
	}
	if err != nil {
		return path
	}
	if path == "" {
		return base
	}
	return filepath.Join(base, path)
}
