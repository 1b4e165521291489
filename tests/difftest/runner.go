package difftest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Runner environment: a test starts its own binary with these set, and
// TestMain hands control to RunnerMain.
const (
	envRunner   = "FORKLESS_DIFFTEST_RUNNER" // engine name
	envScenario = "FORKLESS_DIFFTEST_SCENARIO"
	envTmp      = "FORKLESS_DIFFTEST_TMP"
	envProbe    = "FORKLESS_DIFFTEST_PROBE"
	envResult   = "FORKLESS_DIFFTEST_RESULT"
	probeOut    = "FORKLESS_PROBE_OUT"
)

// IsRunner reports whether this process was started as a runner.
func IsRunner() bool { return os.Getenv(envRunner) != "" }

// RunnerMain performs one scenario with one engine and writes the Result.
func RunnerMain() {
	res := &Result{Engine: os.Getenv(envRunner)}
	if err := runScenario(res); err != nil {
		res.Fatal = err.Error()
	}
	data, _ := json.Marshal(res)
	if err := os.WriteFile(os.Getenv(envResult), data, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "runner:", err)
		os.Exit(2)
	}
	os.Exit(0)
}

// expander replaces $TMP and $PROBE.
func expander(*Scenario) func(string) string {
	r := strings.NewReplacer("$TMP", os.Getenv(envTmp), "$PROBE", os.Getenv(envProbe))
	return r.Replace
}

func runScenario(res *Result) error {
	// Masks and credentials are per thread: do everything on this one.
	runtime.LockOSThread()
	eng, ok := engineByName(res.Engine)
	if !ok {
		return fmt.Errorf("unknown engine %q", res.Engine)
	}
	data, err := os.ReadFile(os.Getenv(envScenario))
	if err != nil {
		return err
	}
	var sc Scenario
	if err := json.Unmarshal(data, &sc); err != nil {
		return err
	}
	tmp := os.Getenv(envTmp)
	expand := expander(&sc)
	res.RunnerPID = os.Getpid()
	res.Preload = os.Getenv("LD_PRELOAD")
	res.RunnerPGID, _ = unix.Getpgid(0)
	res.RunnerSID, _ = unix.Getsid(0)

	labels, err := setup(&sc.Setup, tmp, expand)
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	// Descriptors the runner inherited (pipes of the test harness, say)
	// are named by number too.
	table := fdTable()
	fds := make([]int, 0, len(table))
	for fd := range table {
		fds = append(fds, fd)
	}
	sort.Ints(fds) // the lowest descriptor names a shared target
	for _, fd := range fds {
		target := table[fd]
		if _, ok := labels[target]; !ok && !strings.HasPrefix(target, "/") {
			labels[target] = fmt.Sprintf("runner fd %d", fd)
		}
	}
	res.Labels = labels

	path := "$PROBE"
	if sc.Path != "" {
		path = sc.Path
	}
	argv := []string{"probe"}
	if sc.Argv != nil {
		argv = sc.Argv
	}
	for i := range argv {
		argv[i] = expand(argv[i])
	}
	env := []string{}
	for _, e := range sc.Env {
		env = append(env, expand(e))
	}
	out := filepath.Join(tmp, "probe-out.json")
	env = append(env, probeOut+"="+out)

	if a := sc.Attr; a != nil && a.PgroupRun {
		a.Pgroup = res.RunnerPGID
	}
	before := fdTable()
	var filled []int
	if sc.Setup.Fill {
		filled = fillTable()
	}
	pid := eng.Spawn(&sc, expand(path), argv, env, res)
	for _, fd := range filled {
		unix.Close(fd)
	}
	if res.Fatal != "" {
		return nil
	}
	if pid > 0 {
		res.ChildPID = pid
		var ws unix.WaitStatus
		for {
			_, err = unix.Wait4(pid, &ws, 0, nil)
			if err != unix.EINTR {
				break
			}
		}
		if err != nil {
			return fmt.Errorf("wait4 %d: %w", pid, err)
		}
		res.Exit = int(ws)
	}
	for {
		var ws unix.WaitStatus
		p, err := unix.Wait4(-1, &ws, unix.WNOHANG|unix.WALL, nil)
		if p <= 0 || err != nil {
			break
		}
		res.Zombies++
	}
	after := fdTable()
	for fd, target := range after {
		if before[fd] != target {
			res.LeakedFDs = append(res.LeakedFDs, fmt.Sprintf("%d -> %s", fd, target))
		}
	}
	sort.Strings(res.LeakedFDs)
	if data, err := os.ReadFile(out); err == nil {
		obs, err := ParseObservation(data)
		if err != nil {
			return fmt.Errorf("probe output: %w", err)
		}
		res.Obs = obs
	}
	return nil
}

// fillTable opens /dev/null, close-on-exec, until the table is full.
func fillTable() []int {
	var fds []int
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fds
		}
		fds = append(fds, fd)
	}
}

// fdTable maps this process's descriptors to their targets.
func fdTable() map[int]string {
	m := map[int]string{}
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		var fd int
		fmt.Sscan(e.Name(), &fd)
		t, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil {
			m[fd] = t
		}
	}
	return m
}

// setup puts the runner into the scenario's state and returns labels for
// the targets of the descriptors it opened.
func setup(s *Setup, tmp string, expand func(string) string) (map[string]string, error) {
	if err := os.Chdir(tmp); err != nil {
		return nil, err
	}
	for _, f := range s.Files {
		p := filepath.Join(tmp, f.Path)
		var err error
		switch {
		case f.Link != "":
			err = os.Symlink(expand(f.Link), p)
		case f.Dir:
			err = os.MkdirAll(p, os.FileMode(f.Mode))
		default:
			err = os.WriteFile(p, []byte(f.Content), os.FileMode(f.Mode))
		}
		if err == nil && f.Link == "" {
			err = os.Chmod(p, os.FileMode(f.Mode))
		}
		if err != nil {
			return nil, err
		}
	}
	labels := map[string]string{}
	for _, sfd := range s.FDs {
		fd, err := openSetupFD(sfd, expand)
		if err != nil {
			return nil, fmt.Errorf("fd %d (%s): %w", sfd.FD, sfd.Kind, err)
		}
		flags := 0
		if sfd.CloExec {
			flags = unix.O_CLOEXEC
		}
		if fd != sfd.FD {
			if err := unix.Dup3(fd, sfd.FD, flags); err != nil {
				return nil, err
			}
			unix.Close(fd)
		} else if !sfd.CloExec {
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0); err != nil {
				return nil, err
			}
		}
		if sfd.Offset != 0 {
			if _, err := unix.Seek(sfd.FD, sfd.Offset, 0); err != nil {
				return nil, err
			}
		}
		if t, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", sfd.FD)); err == nil && !strings.HasPrefix(t, "/") {
			labels[t] = fmt.Sprintf("setup fd %d (%s)", sfd.FD, sfd.Kind)
		} else if sfd.Kind == "pty" {
			labels[t] = "pty"
		}
	}
	if s.Umask != nil {
		unix.Umask(*s.Umask)
	}
	if s.NoFile != 0 {
		var lim unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			return nil, err
		}
		lim.Cur = s.NoFile
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			return nil, err
		}
	}
	for _, sig := range s.Ignore {
		act := make([]byte, 32)
		act[0] = 1 // SIG_IGN
		if _, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&act[0])), 0, 8, 0, 0); e != 0 {
			return nil, fmt.Errorf("ignore %d: %w", sig, e)
		}
	}
	for _, sig := range s.Catch {
		signal.Notify(make(chan os.Signal, 1), unix.Signal(sig))
	}
	if len(s.Block) > 0 {
		var set unix.Sigset_t
		for _, sig := range s.Block {
			set.Val[(sig-1)/64] |= 1 << (uint(sig-1) % 64)
		}
		if err := unix.PthreadSigmask(unix.SIG_BLOCK, &set, nil); err != nil {
			return nil, err
		}
	}
	// Credentials last: the runner may lose the right to do the rest.
	// Raw system calls change only this (locked) thread, which spawns.
	if s.EGID != nil {
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, ^uintptr(0), uintptr(*s.EGID), ^uintptr(0)); e != 0 {
			return nil, fmt.Errorf("setresgid: %w", e)
		}
	}
	if s.EUID != nil {
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, ^uintptr(0), uintptr(*s.EUID), ^uintptr(0)); e != 0 {
			return nil, fmt.Errorf("setresuid: %w", e)
		}
	}
	return labels, nil
}

func openSetupFD(s SetupFD, expand func(string) string) (int, error) {
	switch s.Kind {
	case "file":
		return unix.Open(expand(s.Path), s.Flags|unix.O_CLOEXEC, 0o644)
	case "dir":
		return unix.Open(expand(s.Path), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	case "devnull":
		return unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
	case "pipe-r", "pipe-w":
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return -1, err
		}
		// Keep the other end open too, high up, so the pipe stays whole.
		keep := p[1]
		use := p[0]
		if s.Kind == "pipe-w" {
			keep, use = p[0], p[1]
		}
		if _, err := unix.FcntlInt(uintptr(keep), unix.F_DUPFD_CLOEXEC, 900); err != nil {
			return -1, err
		}
		unix.Close(keep)
		return use, nil
	case "socket":
		return unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	case "pty":
		m, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, err
		}
		if err := unix.IoctlSetPointerInt(m, unix.TIOCSPTLCK, 0); err != nil {
			return -1, err
		}
		n, err := unix.IoctlGetInt(m, unix.TIOCGPTN)
		if err != nil {
			return -1, err
		}
		if _, err := unix.FcntlInt(uintptr(m), unix.F_DUPFD_CLOEXEC, 901); err != nil {
			return -1, err
		}
		unix.Close(m)
		// Without O_NOCTTY: a session leader gains it as controlling tty.
		return unix.Open(fmt.Sprintf("/dev/pts/%d", n), unix.O_RDWR|unix.O_CLOEXEC, 0)
	}
	return -1, fmt.Errorf("unknown kind %q", s.Kind)
}
