package forkcp

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The test binary doubles as the child of the fork and transport tests:
// FORKCP_TEST_ROLE selects what it does instead of running tests.
const roleEnv = "FORKCP_TEST_ROLE"

// inheritedEnv lists descriptors the verifying child inherits from outside
// forkcp (see inherited).
const inheritedEnv = "FORKCP_TEST_INHERITED"

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	// Children built with -race would otherwise sleep a second at exit.
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	os.Exit(m.Run())
}

// roleEnvFor returns the environment of a child playing role.
func roleEnvFor(role string) []string {
	return append(os.Environ(), roleEnv+"="+role)
}

func runRole(role string) int {
	var err error
	switch role {
	case "exit":
	case "restore-exit":
		var r *Restored
		if r, err = Restore(); err == nil {
			err = r.Map.CloseAll()
		}
	case "verify":
		err = roleVerify()
	case "restore-twice":
		err = roleRestoreTwice()
	case "receiver":
		err = roleReceiver()
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "forkcp test child (%s): %v\n", role, err)
		return 1
	}
	return 0
}

// roleVerify restores a Fork whose payload is the JSON list of the entries
// the parent's snapshot held, and checks that the process holds exactly
// them: at their numbers, on the recorded files, close-on-exec as
// recorded, and nothing else besides stdio and the Go runtime's own.
func roleVerify() error {
	r, err := Restore()
	if err != nil {
		return err
	}
	defer r.Map.CloseAll()
	var want []Entry
	if err := json.Unmarshal(r.Payload, &want); err != nil {
		return fmt.Errorf("payload: %w", err)
	}
	var problems []string
	report := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if r.Header.Pid != os.Getppid() {
		report("header pid %d, parent %d", r.Header.Pid, os.Getppid())
	}
	if r.Map.Len() != len(want) {
		report("map holds %d handles, the parent's snapshot %d", r.Map.Len(), len(want))
	}
	numbers := make(map[int]bool)
	for _, e := range want {
		numbers[e.Number] = true
		h, err := r.Map.Lookup(e.Number)
		if err != nil {
			report("%v", err)
			continue
		}
		got := Entry{Number: e.Number, Flags: h.Flags(), Kind: h.Kind(), Description: h.Description()}
		if got != e {
			report("entry %+v, want %+v", got, e)
		}
		if h.FD() != e.Number {
			report("number %d is at OS descriptor %d", e.Number, h.FD())
		}
		if err := checkIdentity(e.Number, e.Description); err != nil {
			report("%v", err)
		}
		v, err := unix.FcntlInt(uintptr(e.Number), unix.F_GETFD, 0)
		if err != nil || (v&unix.FD_CLOEXEC != 0) != (e.Flags&FlagCloexec != 0) {
			report("descriptor %d: F_GETFD %d, %v; recorded flags %#x", e.Number, v, err, e.Flags)
		}
		h.Release()
	}
	for _, n := range strings.Split(os.Getenv(inheritedEnv), ",") {
		if n, err := strconv.Atoi(n); err == nil && !numbers[n] {
			numbers[n] = true
		}
	}
	tab, err := fdTable()
	if err != nil {
		return err
	}
	for n, target := range tab {
		// Besides stdio: the runtime's poller and cgroup CPU limit files.
		runtime := strings.HasPrefix(target, "anon_inode:") || strings.HasPrefix(target, "/sys/fs/cgroup/")
		if n > 2 && !numbers[n] && !runtime {
			report("unexpected descriptor %d -> %s", n, target)
		}
	}
	if _, ok := os.LookupEnv(EnvCheckpoint); ok {
		report("%s still set after Restore", EnvCheckpoint)
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return nil
}

func roleRestoreTwice() error {
	r, err := Restore()
	if err != nil {
		return err
	}
	r.Map.CloseAll()
	if _, err := Restore(); !errors.Is(err, ErrRestored) {
		return fmt.Errorf("second Restore: %v, want ErrRestored", err)
	}
	if Forked() {
		return errors.New("Forked() after Restore")
	}
	return nil
}

// roleReceiver receives checkpoints on descriptor 3 until the parent
// closes it. For each it checks every descriptor against the identity its
// description records and that it arrived close-on-exec, and replies with
// two little-endian uint64: the handle count and the number of wrong
// ones. At the end its descriptor table must be as it was at the start.
func roleReceiver() error {
	f := os.NewFile(3, "receiver socket")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return err
	}
	defer c.Close()
	base, err := fdTable()
	if err != nil {
		return err
	}
	var reply [16]byte
	for {
		r, err := Receive(c.(*net.UnixConn), nil)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		bad := 0
		for _, h := range r.Map.table[:r.Map.top] {
			if h == nil {
				continue
			}
			if err := checkIdentity(h.fd, h.desc); err != nil {
				fmt.Fprintln(os.Stderr, "receiver: wrong file:", err)
				bad++
			}
			if v, err := unix.FcntlInt(uintptr(h.fd), unix.F_GETFD, 0); err != nil || v&unix.FD_CLOEXEC == 0 {
				fmt.Fprintln(os.Stderr, "receiver: descriptor not close-on-exec:", h.fd, err)
				bad++
			}
		}
		le.PutUint64(reply[0:], uint64(r.Map.Len()))
		le.PutUint64(reply[8:], uint64(bad))
		if err := r.Map.CloseAll(); err != nil {
			return err
		}
		if _, err := c.Write(reply[:]); err != nil {
			return err
		}
	}
	now, err := fdTable()
	if err != nil {
		return err
	}
	if len(now) != len(base) {
		return fmt.Errorf("descriptor table changed: %v, was %v", now, base)
	}
	for n, target := range base {
		if now[n] != target {
			return fmt.Errorf("descriptor %d: %s, was %s", n, now[n], target)
		}
	}
	return nil
}
