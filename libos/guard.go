package libos

import (
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// GuardArg is the hidden first argument that makes the forkless
// executable run GuardMain.
const GuardArg = "__guard"

// The guard is a small process the host starts (the host's executable
// with GuardArg) so that the tree dies with the host, even by SIGKILL.
// It holds the read end of a pipe whose only write end is the host's
// (close-on-exec, so no program of the tree has it); when the read end
// reports EOF the host is gone, and the guard ends the tree:
//   - with a cgroup: cgroup.kill on the tree's cgroup, then removes it;
//   - without one: it has been watching /proc, remembering every
//     descendant of the host (pid and start time, so a reused pid is not
//     mistaken for one), and kills those and their descendants until none
//     is left.
//
// The guard is in its own process group (a Ctrl-C for the tree does not
// end it first) and ignores SIGINT, SIGQUIT, SIGHUP and SIGPIPE; it
// exits when it has done its job.
type guard struct {
	cmd *exec.Cmd
	w   *os.File
}

func startGuard(exe string, hostPID int, cgPath string) (*guard, error) {
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	r, w, err := os.Pipe() // both close-on-exec
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, GuardArg, strconv.Itoa(hostPID), cgPath)
	cmd.ExtraFiles = []*os.File{r} // fd 3 in the guard
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = append(os.Environ(), "FORKLESS_DISABLE=1")
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		return nil, err
	}
	r.Close()
	return &guard{cmd: cmd, w: w}, nil
}

// stop closes the host's end (the guard then ends what is left, which is
// nothing after Close) and waits for the guard.
func (g *guard) stop() error {
	g.w.Close()
	done := make(chan error, 1)
	go func() { done <- g.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		g.cmd.Process.Kill()
		return errors.New("guard did not exit")
	}
}

// GuardMain is the guard: args are [GuardArg] hostPID cgroupPath (the
// cgroup path may be empty), fd 3 is the pipe from the host. It returns
// the exit code.
func GuardMain(args []string) int {
	if len(args) > 0 && args[0] == GuardArg {
		args = args[1:]
	}
	if len(args) < 1 {
		return 2
	}
	hostPID, err := strconv.Atoi(args[0])
	if err != nil || hostPID <= 0 {
		return 2
	}
	cg := ""
	if len(args) > 1 {
		cg = args[1]
	}
	signal.Ignore(syscall.SIGINT, syscall.SIGQUIT, syscall.SIGHUP, syscall.SIGPIPE)
	eof := make(chan struct{})
	go func() {
		var b [64]byte
		for {
			n, err := unix.Read(3, b[:])
			if err == unix.EINTR {
				continue
			}
			if n <= 0 {
				close(eof)
				return
			}
		}
	}()
	if cg != "" {
		<-eof
		cgroupKill(cg)
		cgroupRemove(cg)
		return 0
	}
	known := map[int]uint64{} // pid -> start time
	self := os.Getpid()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		scanTree(hostPID, self, known)
		select {
		case <-eof:
			killTree(self, known)
			return 0
		case <-tick.C:
		}
	}
}

// procStat is what the guard needs of /proc/PID/stat.
type procStat struct {
	ppid  int
	state byte
	start uint64
}

func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(s[i+1:])
	// f[0] state (field 3), f[1] ppid (4), f[19] starttime (22)
	if len(f) < 20 {
		return procStat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return procStat{ppid: ppid, state: f[0][0], start: start}, true
}

func allPIDs() []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// scanTree adds to known every process whose parent is the host or a
// known process (repeated until nothing is added), and forgets pids that
// are gone or reused.
func scanTree(hostPID, self int, known map[int]uint64) {
	stats := map[int]procStat{}
	for _, pid := range allPIDs() {
		if st, ok := readStat(pid); ok {
			stats[pid] = st
		}
	}
	for pid, start := range known {
		if st, ok := stats[pid]; !ok || st.start != start {
			delete(known, pid)
		}
	}
	for added := true; added; {
		added = false
		for pid, st := range stats {
			if pid == self || pid == hostPID {
				continue
			}
			if _, ok := known[pid]; ok {
				continue
			}
			if _, parentKnown := known[st.ppid]; st.ppid == hostPID || parentKnown {
				known[pid] = st.start
				added = true
			}
		}
	}
}

// killTree kills the known processes and whatever descends from them,
// until a pass finds none alive.
func killTree(self int, known map[int]uint64) {
	for range 100 {
		alive := 0
		for _, pid := range allPIDs() {
			st, ok := readStat(pid)
			if !ok || pid == self {
				continue
			}
			start, isKnown := known[pid]
			_, parentKnown := known[st.ppid]
			if isKnown && start != st.start {
				isKnown = false
			}
			if !isKnown && !parentKnown {
				continue
			}
			known[pid] = st.start
			if st.state == 'Z' || st.state == 'X' {
				continue
			}
			alive++
			unix.Kill(pid, unix.SIGKILL)
		}
		if alive == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
