package libos

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// cgroup is the tree's cgroup v2 directory: a child of the host's own v2
// cgroup. Everything the root starts stays in it (a process cannot leave
// a cgroup without write access to another), so cgroup.kill ends the whole
// tree, daemons and reparented orphans included.
type cgroup struct {
	path string
	fd   int // O_DIRECTORY, for CLONE_INTO_CGROUP
}

var cgroupSeq atomic.Int64

// cgroup2Mount returns where cgroup v2 is mounted, "" if nowhere.
func cgroup2Mount() string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent maj:min root mountpoint opts... - fstype source superopts
		fields := strings.Fields(sc.Text())
		for i, fl := range fields {
			if fl == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 {
				return fields[4]
			}
		}
	}
	return ""
}

// ownCgroup2 returns this process's cgroup v2 path ("0::/x").
func ownCgroup2() string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return p
		}
	}
	return ""
}

// newCgroup makes the tree's cgroup, or returns nil when it cannot (no
// cgroup v2, no permission, no cgroup.kill).
func newCgroup(hostPID int) *cgroup {
	mnt := cgroup2Mount()
	own := ownCgroup2()
	if mnt == "" || own == "" {
		return nil
	}
	parent := filepath.Join(mnt, own)
	sweepStaleCgroups(parent)
	var dir string
	for tries := 0; ; tries++ {
		dir = filepath.Join(parent, fmt.Sprintf("forkless-%d-%d", hostPID, cgroupSeq.Add(1)))
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			break
		}
		// EEXIST: a host that had our pid left one behind with processes
		// in it (the sweep removed the empty ones); take the next name.
		if !errors.Is(err, fs.ErrExist) || tries == 16 {
			return nil
		}
	}
	// (The root cgroup has no cgroup.kill; its children do, from 5.14.)
	if _, err := os.Stat(filepath.Join(dir, "cgroup.kill")); err != nil {
		unix.Rmdir(dir)
		return nil
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		os.Remove(dir)
		return nil
	}
	return &cgroup{path: dir, fd: fd}
}

// sweepStaleCgroups removes the empty tree cgroups under parent whose host
// no longer runs: a host killed before its guard could remove its cgroup
// leaves it behind, and a later host with the same pid would collide with
// its name. Only empty directories can be removed (rmdir fails on a
// populated cgroup), and only those of pids that do not exist.
func sweepStaleCgroups(parent string) {
	ents, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range ents {
		var pid, seq int
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "forkless-") {
			continue
		}
		if n, _ := fmt.Sscanf(e.Name(), "forkless-%d-%d", &pid, &seq); n != 2 || pid <= 0 {
			continue
		}
		if unix.Kill(pid, 0) == unix.ESRCH {
			rmdirTree(filepath.Join(parent, e.Name()))
		}
	}
}

// add moves pid into the cgroup.
func (c *cgroup) add(pid int) error {
	return os.WriteFile(filepath.Join(c.path, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
}

// kill ends every process in the cgroup.
func (c *cgroup) kill() error { return cgroupKill(c.path) }

func cgroupKill(dir string) error {
	return os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
}

// cgroupEmpty reports whether no process is left in dir (or below it).
func cgroupEmpty(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		return true
	}
	return strings.Contains(string(b), "populated 0")
}

// cgroupRemove waits (a bounded time) for dir to empty, then removes it.
func cgroupRemove(dir string) error {
	deadline := time.Now().Add(5 * time.Second)
	for !cgroupEmpty(dir) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	var err error
	for {
		err = rmdirTree(dir)
		if err == nil || err == syscall.ENOENT || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err == syscall.ENOENT {
		err = nil
	}
	return err
}

// rmdirTree removes the cgroup dir and the cgroups below it, deepest
// first: a host run inside the tree (forkless run within forkless run)
// made its own cgroup there, and when cgroup.kill ended it before it
// could remove that cgroup, the empty child keeps dir from being removed.
func rmdirTree(dir string) error {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.IsDir() {
			rmdirTree(filepath.Join(dir, e.Name()))
		}
	}
	return unix.Rmdir(dir)
}

func (c *cgroup) remove() error {
	err := cgroupRemove(c.path)
	unix.Close(c.fd)
	return err
}
