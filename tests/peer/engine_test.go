package peer

import (
	"errors"
	"fmt"

	"github.com/forkless/forkless/internal/glibc"
	"github.com/forkless/forkless/spawn"
	"github.com/forkless/forkless/tests/difftest"
	"golang.org/x/sys/unix"
)

// The engines every check runs against. forkless-clone is the forkless
// engine in a process started with FORKLESS_NO_CLONE3=1, which spawn reads
// once at package init: the test binary re-executes itself for it (see
// forEachEngine in main_test.go).
const (
	engGlibc         = "glibc"
	engForkless      = "forkless"
	engForklessClone = "forkless-clone"
)

var engineNames = []string{engGlibc, engForkless, engForklessClone}

// FileActions is the file-action list both engines build, with the
// signatures of package spawn. Destroy frees what the engine allocated.
type FileActions interface {
	difftest.FileActionAdder
	Destroy()
}

// Attr is the attribute object both engines build. Flags are glibc's
// POSIX_SPAWN_* values, which spawn.Flag shares.
type Attr interface {
	SetFlags(f spawn.Flag) error
	SetPgroup(pgid int) error
	SetSigDefault(s spawn.SignalSet) error
	SetSigMask(s spawn.SignalSet) error
	Destroy()
}

// Engine is one posix_spawn implementation. fa and attr may be nil; they
// must come from the same engine.
type Engine interface {
	Name() string
	NewFileActions() (FileActions, error)
	NewAttr() (Attr, error)
	// Spawn is posix_spawn, SpawnP is posix_spawnp. On failure the error
	// carries the errno (errors.As to unix.Errno) and no child exists.
	Spawn(path string, fa FileActions, attr Attr, argv, envv []string) (*Child, error)
	SpawnP(file string, fa FileActions, attr Attr, argv, envv []string) (*Child, error)
}

// compatEngine is an engine that also has glibc's GLIBC_2.2.5 entry
// points, which run an ENOEXEC file with /bin/sh. forkless has no such
// mode.
type compatEngine interface {
	SpawnCompat(path string, fa FileActions, attr Attr, argv, envv []string, search bool) (*Child, error)
}

// Child is a spawned process that has to be waited for exactly once.
type Child struct {
	Pid    int
	wait   func() (unix.WaitStatus, error)
	waited bool
}

// Wait reaps the child and returns its wait status.
func (c *Child) Wait() (unix.WaitStatus, error) {
	if c.waited {
		return 0, errors.New("peer: child already waited for")
	}
	c.waited = true
	return c.wait()
}

// reap kills and reaps a child a failed test left behind.
func (c *Child) reap() {
	if c.waited {
		return
	}
	_ = unix.Kill(c.Pid, unix.SIGKILL)
	_, _ = c.Wait()
}

// wait4Pid reaps pid with wait4, retrying on EINTR.
func wait4Pid(pid int) (unix.WaitStatus, error) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		return ws, err
	}
}

func engineByName(name string) (Engine, error) {
	switch name {
	case engGlibc:
		if err := glibc.Load(); err != nil {
			return nil, err
		}
		return glibcEngine{}, nil
	case engForkless, engForklessClone:
		return forklessEngine{name: name}, nil
	}
	return nil, fmt.Errorf("peer: unknown engine %q", name)
}

// ---------- forkless ----------

type forklessEngine struct{ name string }

type forklessActions struct{ spawn.FileActions }

func (*forklessActions) Destroy() {}

type forklessAttr struct{ a spawn.Attr }

func (f *forklessAttr) SetFlags(fl spawn.Flag) error { return f.a.SetFlags(fl) }
func (f *forklessAttr) SetPgroup(pgid int) error     { return f.a.SetPgroup(pgid) }
func (f *forklessAttr) SetSigDefault(s spawn.SignalSet) error {
	f.a.SetSigDefault(s)
	return nil
}
func (f *forklessAttr) SetSigMask(s spawn.SignalSet) error {
	f.a.SetSigMask(s)
	return nil
}
func (f *forklessAttr) Destroy() {}

func (e forklessEngine) Name() string                       { return e.name }
func (forklessEngine) NewFileActions() (FileActions, error) { return &forklessActions{}, nil }
func (forklessEngine) NewAttr() (Attr, error)               { return &forklessAttr{}, nil }

func (e forklessEngine) Spawn(path string, fa FileActions, attr Attr, argv, envv []string) (*Child, error) {
	return e.start(spawn.Spawn, path, fa, attr, argv, envv)
}

func (e forklessEngine) SpawnP(file string, fa FileActions, attr Attr, argv, envv []string) (*Child, error) {
	return e.start(spawn.SpawnP, file, fa, attr, argv, envv)
}

type forklessStart func(string, *spawn.FileActions, *spawn.Attr, []string, []string) (*spawn.Process, error)

func (forklessEngine) start(fn forklessStart, path string, fa FileActions, attr Attr, argv, envv []string) (*Child, error) {
	var sfa *spawn.FileActions
	if fa != nil {
		f, ok := fa.(*forklessActions)
		if !ok {
			return nil, fmt.Errorf("peer: %T is not a forkless FileActions", fa)
		}
		sfa = &f.FileActions
	}
	var sattr *spawn.Attr
	if attr != nil {
		a, ok := attr.(*forklessAttr)
		if !ok {
			return nil, fmt.Errorf("peer: %T is not a forkless Attr", attr)
		}
		sattr = &a.a
	}
	p, err := fn(path, sfa, sattr, argv, envv)
	if err != nil {
		// The documented error type; anything else is reported without
		// its errno so that errno assertions fail.
		var se *spawn.Error
		if !errors.As(err, &se) {
			return nil, fmt.Errorf("peer: forkless returned %T, not *spawn.Error: %v", err, err)
		}
		if p != nil {
			return nil, fmt.Errorf("peer: forkless returned process %d with error %v", p.Pid(), err)
		}
		return nil, err
	}
	return &Child{Pid: p.Pid(), wait: func() (unix.WaitStatus, error) {
		st, err := p.Wait()
		if err != nil {
			return 0, err
		}
		return st.Status, nil
	}}, nil
}

// ---------- glibc ----------

type glibcEngine struct{}

type glibcActions struct{ fa *glibc.FileActions }

func (g *glibcActions) AddOpen(fd int, path string, flags int, mode uint32) error {
	return g.fa.AddOpen(fd, path, flags, mode)
}
func (g *glibcActions) AddClose(fd int) error       { return g.fa.AddClose(fd) }
func (g *glibcActions) AddDup2(fd, newfd int) error { return g.fa.AddDup2(fd, newfd) }
func (g *glibcActions) AddChdir(path string) error  { return g.fa.AddChdir(path) }
func (g *glibcActions) AddFchdir(fd int) error      { return g.fa.AddFchdir(fd) }
func (g *glibcActions) AddClosefrom(from int) error { return g.fa.AddClosefrom(from) }
func (g *glibcActions) AddTcsetpgrp(fd int) error   { return g.fa.AddTcsetpgrp(fd) }
func (g *glibcActions) Destroy()                    { g.fa.Destroy() }

type glibcAttr struct{ a *glibc.Attr }

func (g *glibcAttr) SetFlags(f spawn.Flag) error           { return g.a.SetFlags(int16(f)) }
func (g *glibcAttr) SetPgroup(pgid int) error              { return g.a.SetPgroup(pgid) }
func (g *glibcAttr) SetSigDefault(s spawn.SignalSet) error { return g.a.SetSigDefault(uint64(s)) }
func (g *glibcAttr) SetSigMask(s spawn.SignalSet) error    { return g.a.SetSigMask(uint64(s)) }
func (g *glibcAttr) Destroy()                              { g.a.Destroy() }

func (glibcEngine) Name() string { return engGlibc }

func (glibcEngine) NewFileActions() (FileActions, error) {
	fa, err := glibc.NewFileActions()
	if err != nil {
		return nil, err
	}
	return &glibcActions{fa: fa}, nil
}

func (glibcEngine) NewAttr() (Attr, error) {
	a, err := glibc.NewAttr()
	if err != nil {
		return nil, err
	}
	return &glibcAttr{a: a}, nil
}

func (e glibcEngine) Spawn(path string, fa FileActions, attr Attr, argv, envv []string) (*Child, error) {
	return e.start(path, fa, attr, argv, envv, glibc.Options{})
}

func (e glibcEngine) SpawnP(file string, fa FileActions, attr Attr, argv, envv []string) (*Child, error) {
	return e.start(file, fa, attr, argv, envv, glibc.Options{Search: true})
}

func (e glibcEngine) SpawnCompat(path string, fa FileActions, attr Attr, argv, envv []string, search bool) (*Child, error) {
	return e.start(path, fa, attr, argv, envv, glibc.Options{Search: search, Compat: true})
}

func (glibcEngine) start(path string, fa FileActions, attr Attr, argv, envv []string, opt glibc.Options) (*Child, error) {
	var gfa *glibc.FileActions
	if fa != nil {
		f, ok := fa.(*glibcActions)
		if !ok {
			return nil, fmt.Errorf("peer: %T is not a glibc FileActions", fa)
		}
		gfa = f.fa
	}
	var gattr *glibc.Attr
	if attr != nil {
		a, ok := attr.(*glibcAttr)
		if !ok {
			return nil, fmt.Errorf("peer: %T is not a glibc Attr", attr)
		}
		gattr = a.a
	}
	if argv == nil {
		argv = []string{}
	}
	pid, written, errno := glibc.Spawn(path, gfa, gattr, argv, envv, opt)
	if errno != 0 {
		// glibc stores the pid only on success (tst-spawn2); a stored pid
		// is reported without the errno so that errno assertions fail.
		if written {
			return nil, fmt.Errorf("peer: glibc stored pid %d although it failed with %v", pid, errno)
		}
		return nil, errno
	}
	if !written || pid <= 0 {
		return nil, fmt.Errorf("peer: glibc succeeded but stored pid %d (written %v)", pid, written)
	}
	return &Child{Pid: pid, wait: func() (unix.WaitStatus, error) { return wait4Pid(pid) }}, nil
}
