package difftest

import (
	"fmt"
	"os"
	"syscall"

	"github.com/forkless/forkless/internal/glibc"
	"github.com/forkless/forkless/spawn"
	"golang.org/x/sys/unix"
)

// An Engine performs a scenario's spawn inside a runner process. Env is
// added to the runner's environment: that is how a variant of an engine
// (the clone fallback, later a preloaded library) is selected.
type Engine struct {
	Name string
	Env  []string
	// Spawn builds the actions and attributes, spawns, and returns the pid.
	// Errors building them go to res.AddErrno/AddStep; the spawn's error to
	// res.Errno.
	Spawn func(sc *Scenario, path string, argv, env []string, res *Result) int
}

// Glibc is the oracle: glibc's posix_spawn[p] called through purego.
var Glibc = Engine{Name: "glibc", Spawn: glibcSpawn}

// Engines are checked against the oracle. The C engine is reached the way
// programs reach it: glibc's posix_spawn symbols, looked up in the global
// scope where LD_PRELOAD puts lib/libforkless.so ($LIB) first.
var Engines = []Engine{
	{Name: "forkless-go", Spawn: forklessSpawn},
	{Name: "forkless-go/clone", Env: []string{"FORKLESS_NO_CLONE3=1"}, Spawn: forklessSpawn},
	{Name: "forkless-c", Env: []string{"LD_PRELOAD=$LIB", "FORKLESS_GLIBC_GLOBAL=1"}, Spawn: glibcSpawn},
	{Name: "forkless-c/clone", Env: []string{"LD_PRELOAD=$LIB", "FORKLESS_GLIBC_GLOBAL=1", "FORKLESS_NO_CLONE3=1"}, Spawn: glibcSpawn},
}

// engineByName finds an engine in a runner.
func engineByName(name string) (Engine, bool) {
	for _, e := range append([]Engine{Glibc}, Engines...) {
		if e.Name == name {
			return e, true
		}
	}
	return Engine{}, false
}

func errnoOf(err error) int {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if ok := asErrno(err, &e); ok {
		return int(e)
	}
	return -1
}

func asErrno(err error, e *syscall.Errno) bool {
	for err != nil {
		if x, ok := err.(syscall.Errno); ok {
			*e = x
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// addFailed records the first failing add call.
func addFailed(res *Result, step string, err error) bool {
	if err == nil {
		return false
	}
	res.AddErrno = errnoOf(err)
	res.AddStep = step
	return true
}

// FileActionAdder is what both engines' file-action builders offer, with
// package spawn's signatures.
type FileActionAdder interface {
	AddOpen(fd int, path string, flags int, mode uint32) error
	AddClose(fd int) error
	AddDup2(fd, newfd int) error
	AddChdir(path string) error
	AddFchdir(fd int) error
	AddClosefrom(from int) error
	AddTcsetpgrp(fd int) error
}

// addActions applies sc's actions; false if one was refused.
func addActions(fa FileActionAdder, sc *Scenario, expand func(string) string, res *Result) bool {
	for i, a := range sc.Actions {
		var err error
		switch a.Op {
		case "close":
			err = fa.AddClose(a.FD)
		case "dup2":
			err = fa.AddDup2(a.FD, a.NewFD)
		case "open":
			err = fa.AddOpen(a.FD, expand(a.Path), a.Flags, a.Mode)
		case "chdir":
			err = fa.AddChdir(expand(a.Path))
		case "fchdir":
			err = fa.AddFchdir(a.FD)
		case "closefrom":
			err = fa.AddClosefrom(a.FD)
		case "tcsetpgrp":
			err = fa.AddTcsetpgrp(a.FD)
		default:
			err = fmt.Errorf("unknown action %q", a.Op)
		}
		if addFailed(res, fmt.Sprintf("action %d (%s)", i, a.Op), err) {
			return false
		}
	}
	return true
}

func glibcSpawn(sc *Scenario, path string, argv, env []string, res *Result) int {
	if err := glibc.Load(); err != nil {
		res.Fatal = err.Error()
		return 0
	}
	var fa *glibc.FileActions
	if sc.Actions != nil {
		var err error
		if fa, err = glibc.NewFileActions(); err != nil {
			res.Fatal = err.Error()
			return 0
		}
		defer fa.Destroy()
		if !addActions(fa, sc, expander(sc), res) {
			return 0
		}
	}
	var attr *glibc.Attr
	if a := sc.Attr; a != nil {
		var err error
		if attr, err = glibc.NewAttr(); err != nil {
			res.Fatal = err.Error()
			return 0
		}
		defer attr.Destroy()
		if addFailed(res, "attr flags", attr.SetFlags(int16(a.Flags))) ||
			addFailed(res, "attr pgroup", attr.SetPgroup(a.Pgroup)) ||
			addFailed(res, "attr sigmask", attr.SetSigMask(a.SigMask)) ||
			addFailed(res, "attr sigdefault", attr.SetSigDefault(a.SigDefault)) ||
			addFailed(res, "attr policy", attr.SetSchedPolicy(a.Policy)) ||
			addFailed(res, "attr priority", attr.SetSchedParam(a.Priority)) {
			return 0
		}
		if a.Cgroup != "" {
			res.Fatal = "glibc 2.36 has no POSIX_SPAWN_SETCGROUP"
			return 0
		}
	}
	pid, written, errno := glibc.Spawn(path, fa, attr, argv, env, glibc.Options{Search: sc.Search})
	res.Errno = int(errno)
	if errno != 0 {
		res.PidWritten = written
		return 0
	}
	return pid
}

func forklessSpawn(sc *Scenario, path string, argv, env []string, res *Result) int {
	var fa *spawn.FileActions
	if sc.Actions != nil {
		fa = &spawn.FileActions{}
		if !addActions(fa, sc, expander(sc), res) {
			return 0
		}
	}
	var attr *spawn.Attr
	if a := sc.Attr; a != nil {
		attr = &spawn.Attr{}
		attr.SetSigMask(spawn.SignalSet(a.SigMask))
		attr.SetSigDefault(spawn.SignalSet(a.SigDefault))
		attr.SetSchedPriority(a.Priority)
		if addFailed(res, "attr flags", attr.SetFlags(spawn.Flag(a.Flags))) ||
			addFailed(res, "attr pgroup", attr.SetPgroup(a.Pgroup)) ||
			addFailed(res, "attr policy", attr.SetSchedPolicy(a.Policy)) {
			return 0
		}
		if a.Cgroup != "" {
			fd, err := unix.Open(a.Cgroup, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				res.Fatal = fmt.Sprintf("open cgroup %s: %v", a.Cgroup, err)
				return 0
			}
			defer unix.Close(fd)
			if addFailed(res, "attr cgroup", attr.SetCgroup(fd)) {
				return 0
			}
		}
	}
	var p *spawn.Process
	var err error
	if sc.Search {
		p, err = spawn.SpawnP(path, fa, attr, argv, env)
	} else {
		p, err = spawn.Spawn(path, fa, attr, argv, env)
	}
	if err != nil {
		res.Errno = errnoOf(err)
		return 0
	}
	pid := p.Pid()
	// The runner reaps by pid with wait4, as it does for glibc's children;
	// the pidfd is not needed.
	if err := p.Release(); err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
	}
	return pid
}
