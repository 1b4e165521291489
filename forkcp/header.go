package forkcp

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// CaptureHeader describes the calling process: pid, ppid, working
// directory, umask and the calling thread's signal mask; argv and the
// environment when asked.
//
// The umask is read from /proc/self/status: setting it to read it back
// would briefly change it for every thread of the process.
func CaptureHeader(withArgv, withEnv bool) (Header, error) {
	h := Header{Pid: os.Getpid(), Ppid: os.Getppid()}
	cwd, err := os.Getwd()
	if err != nil {
		return Header{}, fmt.Errorf("forkcp: capture header: %w", err)
	}
	h.Cwd = cwd
	if h.Umask, err = readUmask(); err != nil {
		return Header{}, err
	}
	var set unix.Sigset_t
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, nil, &set); err != nil {
		return Header{}, fmt.Errorf("forkcp: capture header: signal mask: %w", err)
	}
	h.SigMask = set.Val[0]
	if withArgv {
		h.Argv = append([]string{}, os.Args...)
	}
	if withEnv {
		h.Env = os.Environ()
	}
	return h, nil
}

// readUmask returns the process's umask from /proc/self/status.
func readUmask() (uint32, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("forkcp: capture header: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := bytes.CutPrefix(sc.Bytes(), []byte("Umask:")); ok {
			u, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 8, 32)
			if err != nil || u > maxUmask {
				return 0, fmt.Errorf("forkcp: capture header: bad Umask line %q", sc.Text())
			}
			return uint32(u), nil
		}
	}
	return 0, fmt.Errorf("forkcp: capture header: no Umask line in /proc/self/status")
}
