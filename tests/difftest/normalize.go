package difftest

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// View is a Result with everything that legitimately differs between two
// runs taken out: pids become roles, scratch paths become $TMP, pipe and
// socket inodes become the label of the runner descriptor they belong to.
type View struct {
	AddStep    string
	AddErrno   string
	Errno      string
	PidWritten bool
	Exit       string
	LeakedFDs  []string
	Zombies    int
	Obs        *Observation
}

// Roles replacing ids in an observation.
const (
	roleChild      = -1000001
	roleRunner     = -1000002
	roleRunnerPGID = -1000003
	roleRunnerSID  = -1000004
)

func errnoName(e int) string {
	if e == 0 {
		return ""
	}
	if n := unix.ErrnoName(unix.Errno(e)); n != "" {
		return n
	}
	return fmt.Sprintf("errno %d", e)
}

func exitString(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exit %d", ws.ExitStatus())
	case ws.Signaled():
		return fmt.Sprintf("signal %d", ws.Signal())
	}
	return fmt.Sprintf("status %#x", int(ws))
}

// Normalize returns the comparable view of r, whose scratch folder was tmp.
func Normalize(r *Result, tmp string) View {
	v := View{
		AddStep:    r.AddStep,
		AddErrno:   errnoName(r.AddErrno),
		Errno:      errnoName(r.Errno),
		PidWritten: r.PidWritten,
		LeakedFDs:  r.LeakedFDs,
		Zombies:    r.Zombies,
	}
	if r.ChildPID > 0 {
		v.Exit = exitString(unix.WaitStatus(r.Exit))
	}
	if r.Obs == nil {
		return v
	}
	o := *r.Obs
	paths := strings.NewReplacer(tmp, "$TMP")
	role := func(id int) int {
		switch id {
		case r.ChildPID:
			return roleChild
		case r.RunnerPID:
			return roleRunner
		case r.RunnerPGID:
			return roleRunnerPGID
		case r.RunnerSID:
			return roleRunnerSID
		}
		return id
	}
	o.PID = role(o.PID)
	o.PPID = role(o.PPID)
	o.PGID = role(o.PGID)
	o.SID = role(o.SID)
	o.Cwd = paths.Replace(o.Cwd)
	o.FDs = append([]FD(nil), o.FDs...)
	for i := range o.FDs {
		fd := &o.FDs[i]
		if l, ok := r.Labels[fd.Target]; ok {
			fd.Target = l
		} else {
			fd.Target = paths.Replace(fd.Target)
		}
		if fd.TTYPgrp != nil && *fd.TTYPgrp > 0 {
			p := role(*fd.TTYPgrp)
			fd.TTYPgrp = &p
		}
	}
	o.Argv = replaceAll(paths, o.Argv)
	var env []string
	for _, e := range o.Env {
		// The probe's output path differs per run; the preload the library
		// keeps in its children is its documented stickiness.
		if !strings.HasPrefix(e, probeOut+"=") && (r.Preload == "" || e != "LD_PRELOAD="+r.Preload) {
			env = append(env, paths.Replace(e))
		}
	}
	o.Env = env
	v.Obs = &o
	return v
}

func replaceAll(r *strings.Replacer, ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = r.Replace(s)
	}
	return out
}
