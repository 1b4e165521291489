package forkcp

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

var restoreOnce struct {
	sync.Mutex
	done bool
}

// Forked reports whether Fork started this process and Restore has not
// been called yet.
func Forked() bool {
	_, ok := os.LookupEnv(EnvCheckpoint)
	return ok
}

// Restore returns what Fork handed this process: the parent's header, the
// payload, and a map whose every number is the OS descriptor of that
// number, on the parent's open file, close-on-exec as recorded. Call it
// early in main, once. It returns ErrNotForked in a process Fork did not
// start, and ErrRestored when called again.
//
// Restore removes EnvCheckpoint from the environment, so programs this one
// starts do not see it. On failure no map is returned and every
// descriptor the checkpoint named is closed.
func Restore() (*Restored, error) { return RestoreLimits(nil) }

// RestoreLimits is Restore with decoding limits (nil: DefaultLimits).
func RestoreLimits(lim *Limits) (*Restored, error) {
	restoreOnce.Lock()
	defer restoreOnce.Unlock()
	if restoreOnce.done {
		return nil, ErrRestored
	}
	v, ok := os.LookupEnv(EnvCheckpoint)
	if !ok {
		return nil, ErrNotForked
	}
	restoreOnce.done = true
	_ = os.Unsetenv(EnvCheckpoint)
	route, fd, err := parseCheckpointEnv(v)
	if err != nil {
		return nil, err
	}
	if route == RouteSocket {
		return restoreSocket(fd, lim)
	}
	return restoreFiles(fd, lim)
}

// parseCheckpointEnv parses "files:N" or "socket:N".
func parseCheckpointEnv(v string) (Route, int, error) {
	bad := fmt.Errorf("forkcp: restore: malformed %s=%q (want files:N or socket:N)", EnvCheckpoint, v)
	name, num, ok := strings.Cut(v, ":")
	if !ok {
		return 0, 0, bad
	}
	fd, err := strconv.Atoi(num)
	if err != nil || fd < 0 || fd > MaxNumber || strconv.Itoa(fd) != num {
		return 0, 0, bad
	}
	switch name {
	case "files":
		return RouteFileActions, fd, nil
	case "socket":
		return RouteSocket, fd, nil
	}
	return 0, 0, bad
}

// restoreFiles reads the stream from the memfd at fd; the spawn already
// placed every descriptor at its number.
func restoreFiles(fd int, lim *Limits) (*Restored, error) {
	f := os.NewFile(uintptr(fd), "forkcp checkpoint")
	// The parent's write left the shared file offset at the end: read
	// from offset 0.
	b, err := ReadStream(io.NewSectionReader(f, 0, math.MaxInt64), lim)
	if err == io.EOF {
		err = errors.New("empty")
	}
	var size int64
	if err == nil {
		var st os.FileInfo
		if st, err = f.Stat(); err == nil {
			size = st.Size()
		}
	}
	f.Close()
	if err == nil && size != int64(len(b)) {
		err = fmt.Errorf("%d bytes hold a stream of %d", size, len(b))
	}
	if err != nil {
		return nil, fmt.Errorf("forkcp: restore: checkpoint at descriptor %d: %w", fd, err)
	}
	cp, err := Decode(b, lim)
	if err != nil {
		return nil, fmt.Errorf("forkcp: restore: %w", err)
	}
	m := &HandleMap{}
	for i, e := range cp.Entries {
		// One system call per handle both checks the descriptor is there
		// and sets FD_CLOEXEC as recorded (the spawn's dup2 cleared it).
		if err := setCloexec(e.Number, e.Flags&FlagCloexec != 0); err != nil {
			for _, e := range cp.Entries {
				unix.Close(e.Number)
			}
			return nil, fmt.Errorf("forkcp: restore: handle %d (number %d, %s %q) is not in place: %w",
				i, e.Number, e.Kind, e.Description, err)
		}
		m.set(e.Number, restoredHandle(e))
	}
	return &Restored{Header: cp.Header, Payload: cp.Payload, Map: m}, nil
}

// restoreSocket receives the checkpoint on the socket at fd and moves each
// descriptor onto its number, replacing the placeholder the spawn left
// there.
func restoreSocket(fd int, lim *Limits) (*Restored, error) {
	f := os.NewFile(uintptr(fd), "forkcp socket")
	r, err := Receive(f, lim)
	f.Close()
	if err == io.EOF {
		err = errors.New("the parent closed the socket before sending a checkpoint")
	}
	if err != nil {
		return nil, fmt.Errorf("forkcp: restore: %w", err)
	}
	m, err := placeReceived(r.Map)
	if err != nil {
		return nil, err
	}
	return &Restored{Header: r.Header, Payload: r.Payload, Map: m}, nil
}

// placeReceived moves every descriptor of src (received at numbers of the
// kernel's choosing) onto its own number with dup3, which replaces the
// placeholder there atomically, and returns the map of the placed
// descriptors. The received copies are closed. On failure every number is
// closed.
func placeReceived(src *HandleMap) (*HandleMap, error) {
	m := &HandleMap{}
	var failed error
	for n, h := range src.table[:src.top] {
		if h == nil {
			continue
		}
		if failed == nil {
			flags := 0
			if h.Flags()&FlagCloexec != 0 {
				flags = unix.O_CLOEXEC
			}
			if err := unix.Dup3(h.fd, n, flags); err != nil {
				failed = fmt.Errorf("forkcp: restore: handle at number %d (%s %q): dup3 %d onto it: %w", n, h.kind, h.desc, h.fd, err)
			} else {
				m.set(n, restoredHandle(Entry{Number: n, Flags: h.Flags(), Kind: h.kind, Description: h.desc}))
			}
		}
		unix.Close(h.fd)
	}
	if failed != nil {
		for n, h := range src.table[:src.top] {
			if h != nil {
				unix.Close(n) // placed, or still the placeholder
			}
		}
		return nil, failed
	}
	return m, nil
}

// restoredHandle is the handle of an entry placed at its own number.
func restoredHandle(e Entry) *Handle {
	h := newHandle(e.Number, e.Kind, e.Flags, e.Description)
	h.osCloexec = e.Flags&FlagCloexec != 0
	return h
}

func setCloexec(fd int, on bool) error {
	v := 0
	if on {
		v = unix.FD_CLOEXEC
	}
	_, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, v)
	return err
}
