package bench

import (
	"fmt"
	"os/exec"
	"syscall"
	"time"

	"github.com/forkless/forkless/internal/glibc"
	"github.com/forkless/forkless/spawn"
	"golang.org/x/sys/unix"
)

// Every child gets argv {target} and the target's environment (empty but
// for true+preload), from every mechanism and host, so they all do the
// same exec.
var emptyEnv = []string{}

// childEnv returns t's environment, never nil: a nil Env would make os/exec
// pass this process's environment on.
func childEnv(t Target) []string {
	if t.Env == nil {
		return emptyEnv
	}
	return t.Env
}

// goOp creates one child running path with argv and env, waits for it, and
// fails unless it exited 0.
type goOp func(path string, argv, env []string) error

// goOps are the Go-host mechanisms, by engine.
var goOps = map[string]goOp{
	EngineForklessGo:      forklessGo,
	EngineOsExec:          osExec,
	EngineSyscallForkExec: syscallForkExec,
	EngineGlibcSpawn:      glibcSpawn,
}

func forklessGo(path string, argv, env []string) error {
	p, err := spawn.Spawn(path, nil, nil, argv, env)
	if err != nil {
		return err
	}
	st, err := p.Wait()
	if err != nil {
		return err
	}
	if !st.Success() {
		return fmt.Errorf("%s: exit code %d", path, st.ExitCode())
	}
	return nil
}

func osExec(path string, _, env []string) error {
	cmd := exec.Command(path)
	cmd.Env = env
	return cmd.Run()
}

// stdioFiles gives syscall.ForkExec's child fds 0-2, as posix_spawn's
// children inherit them; without Files they would be closed.
var stdioFiles = []uintptr{0, 1, 2}

func syscallForkExec(path string, argv, env []string) error {
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{Env: env, Files: stdioFiles})
	if err != nil {
		return err
	}
	return reap(path, pid)
}

func glibcSpawn(path string, argv, env []string) error {
	pid, _, errno := glibc.Spawn(path, nil, nil, argv, env, glibc.Options{})
	if errno != 0 {
		return fmt.Errorf("glibc posix_spawn %s: %w", path, errno)
	}
	return reap(path, pid)
}

// reap waits for pid and fails unless it exited 0.
func reap(path string, pid int) error {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("wait4 %d: %w", pid, err)
		}
		break
	}
	if !ws.Exited() || ws.ExitStatus() != 0 {
		return fmt.Errorf("%s: wait status 0x%x", path, uint32(ws))
	}
	return nil
}

// goBatcher times op: the clock runs around create+reap only.
func goBatcher(op goOp) Batcher {
	return func(target Target, n int) ([]time.Duration, error) {
		argv := []string{target.Path}
		env := childEnv(target)
		out := make([]time.Duration, 0, n)
		for range n {
			t0 := time.Now()
			err := op(target.Path, argv, env)
			d := time.Since(t0)
			if err != nil {
				return nil, err
			}
			out = append(out, d)
		}
		return out, nil
	}
}

// goMechanism returns the Go-host mechanism of an engine.
func goMechanism(engine string) (Mechanism, error) {
	op, ok := goOps[engine]
	if !ok {
		return Mechanism{}, fmt.Errorf("engine %s does not run on the Go host", engine)
	}
	if engine == EngineGlibcSpawn {
		if err := glibc.Load(); err != nil {
			return Mechanism{}, err
		}
	}
	return Mechanism{Spec: Spec{engine, HostGo}, Batch: goBatcher(op)}, nil
}
