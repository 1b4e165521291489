// Package difftest compares spawn implementations by what their children
// observe. The observer is tests/probe/probe.c (bin/forkless-probe): it
// writes one JSON object that this file decodes into an Observation.
package difftest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
)

// Observation is what the probe saw of itself right after being spawned.
// Its json tags are exactly the probe's field names; every field is
// required. The probe writes null for a cwd or fd target it could not
// read, which decodes as "".
type Observation struct {
	// ScanFD is the descriptor the probe used to read /proc/self/fd (the
	// lowest free one at startup), left out of FDs; -1 when /proc was
	// missing and the probe asked fcntl about each fd instead.
	ScanFD int  `json:"scan_fd"`
	FDs    []FD `json:"fds"` // open descriptors, ascending

	Cwd   string `json:"cwd"`
	Umask uint32 `json:"umask"`

	// Signal sets, as sorted signal numbers 1..64 (32 and 33 included).
	SigMask []int `json:"sigmask"` // blocked
	Ignored []int `json:"ignored"` // disposition SIG_IGN
	Caught  []int `json:"caught"`  // a handler (neither SIG_DFL nor SIG_IGN)

	PID  int `json:"pid"`
	PPID int `json:"ppid"`
	PGID int `json:"pgid"`
	SID  int `json:"sid"`

	UID  uint32 `json:"uid"`
	EUID uint32 `json:"euid"`
	SUID uint32 `json:"suid"`
	GID  uint32 `json:"gid"`
	EGID uint32 `json:"egid"`
	SGID uint32 `json:"sgid"`

	Sched  Sched     `json:"sched"`
	NoFile [2]uint64 `json:"nofile"` // RLIMIT_NOFILE soft, hard
	CGroup []string  `json:"cgroup"` // lines of /proc/self/cgroup

	Argv []string `json:"argv"`
	Env  []string `json:"env"`
}

// FD describes one open descriptor.
type FD struct {
	FD      int    `json:"fd"`
	CloExec bool   `json:"cloexec"` // FD_CLOEXEC set
	Flags   int    `json:"flags"`   // F_GETFL, kernel O_LARGEFILE masked off
	Pos     int64  `json:"pos"`     // lseek(fd, 0, SEEK_CUR), -1 if not seekable
	Target  string `json:"target"`  // readlink of /proc/self/fd/N
	// TTYPgrp is nil when the fd is not a terminal, else tcgetpgrp(fd):
	// -1 for a terminal that is not the probe's controlling one.
	TTYPgrp *int `json:"tty_pgrp"`
}

// Sched is the scheduling policy (sched_getscheduler, with any
// SCHED_RESET_ON_FORK flag kept) and the static priority.
type Sched struct {
	Policy   int `json:"policy"`
	Priority int `json:"priority"`
}

// ReadObservation reads and parses a probe output file.
func ReadObservation(path string) (*Observation, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	obs, err := ParseObservation(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return obs, nil
}

// ParseObservation parses the probe's output strictly: exactly one JSON
// object, with every field of Observation (and of each FD) and no others.
func ParseObservation(data []byte) (*Observation, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var obs Observation
	if err := dec.Decode(&obs); err != nil {
		return nil, fmt.Errorf("difftest: probe output: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("difftest: probe output: data after the object")
	}
	if err := checkFields(data); err != nil {
		return nil, fmt.Errorf("difftest: probe output: %w", err)
	}
	return &obs, nil
}

// checkFields reports a field of Observation or FD that the output lacks;
// encoding/json would otherwise leave it zero without a word.
func checkFields(data []byte) error {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return err
	}
	if err := hasFields(top, reflect.TypeFor[Observation](), "observation"); err != nil {
		return err
	}
	var fds []map[string]json.RawMessage
	if err := json.Unmarshal(top["fds"], &fds); err != nil {
		return err
	}
	for i, fd := range fds {
		if err := hasFields(fd, reflect.TypeFor[FD](), fmt.Sprintf("fds[%d]", i)); err != nil {
			return err
		}
	}
	var sched map[string]json.RawMessage
	if err := json.Unmarshal(top["sched"], &sched); err != nil {
		return err
	}
	return hasFields(sched, reflect.TypeFor[Sched](), "sched")
}

func hasFields(obj map[string]json.RawMessage, t reflect.Type, where string) error {
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if _, ok := obj[name]; !ok {
			return fmt.Errorf("%s: missing field %q", where, name)
		}
	}
	return nil
}
