// Package bench measures process creation (create, exec, reap) side by
// side for several mechanisms, from a Go host process and from a C host
// process (forkless-cbench), at several sizes of the host's resident memory.
//
// Mechanisms are interleaved in time: each round runs a batch of every
// mechanism and target, so slow drifts of the machine spread over all of
// them instead of favouring the ones measured first.
package bench

import (
	"fmt"
	"strings"
	"time"
)

// Engine names.
const (
	EngineForklessGo      = "forkless-go"       // spawn.Spawn + Wait
	EngineOsExec          = "os/exec"           // exec.Command(target).Run()
	EngineSyscallForkExec = "syscall.ForkExec"  // syscall.ForkExec + Wait4
	EngineGlibcSpawn      = "glibc-posix_spawn" // glibc's posix_spawn + wait
	EngineVforkExec       = "vfork+exec"        // C: vfork, execve, _exit(127)
	EngineForkExec        = "fork+exec"         // C: fork, execve
	EngineForklessC       = "forkless-c"        // glibc's posix_spawn through lib/libforkless.so
)

// Host names: the language of the process that creates the children.
const (
	HostGo = "go"
	HostC  = "c"
)

// Spec names one mechanism: an engine run from a host.
type Spec struct {
	Engine string
	Host   string
}

// String returns "engine/host".
func (s Spec) String() string { return s.Engine + "/" + s.Host }

// Catalog lists every mechanism that can run, in report order.
var Catalog = []Spec{
	{EngineForklessGo, HostGo},
	{EngineOsExec, HostGo},
	{EngineSyscallForkExec, HostGo},
	{EngineGlibcSpawn, HostGo},
	{EngineGlibcSpawn, HostC},
	{EngineForklessC, HostC},
	{EngineVforkExec, HostC},
	{EngineForkExec, HostC},
}

// reserved lists engine names that exist in the design but cannot run
// yet, with the reason.
var reserved = map[string]string{}

// NeedsLib reports whether s runs with the preload library
// (lib/libforkless.so): forkless-c is glibc's posix_spawn called from a C
// host that has the library in LD_PRELOAD.
func (s Spec) NeedsLib() bool { return s.Engine == EngineForklessC }

// Baseline is the mechanism a row's ratio divides by: glibc's posix_spawn
// run from the row's own host. For forkless-c that is glibc-posix_spawn/c,
// the same call from the same kind of host holding the same memory, only
// without the library.
func Baseline(host string) Spec { return Spec{EngineGlibcSpawn, host} }

// order returns s's index in Catalog, or len(Catalog).
func (s Spec) order() int {
	for i, c := range Catalog {
		if c == s {
			return i
		}
	}
	return len(Catalog)
}

// SelectEngines turns a list of names into mechanisms, in Catalog order.
// A name is an engine ("vfork+exec": every host that has it), an engine
// and a host ("glibc-posix_spawn/c"), or "all". An empty list means all.
func SelectEngines(names []string) ([]Spec, error) {
	chosen := map[Spec]bool{}
	for _, name := range names {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if name == "all" {
			for _, s := range Catalog {
				chosen[s] = true
			}
			continue
		}
		if why, ok := reserved[name]; ok {
			return nil, fmt.Errorf("engine %s: %s", name, why)
		}
		found := false
		for _, s := range Catalog {
			if s.Engine == name || s.String() == name {
				chosen[s] = true
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown engine %q (known: %s)", name, EngineNames())
		}
	}
	var out []Spec
	for _, s := range Catalog {
		if len(chosen) == 0 || chosen[s] {
			out = append(out, s)
		}
	}
	return out, nil
}

// EngineNames lists the names SelectEngines accepts, for usage texts.
func EngineNames() string {
	var names []string
	seen := map[string]bool{}
	for _, s := range Catalog {
		if !seen[s.Engine] {
			seen[s.Engine] = true
			names = append(names, s.Engine)
		}
	}
	return strings.Join(names, ", ")
}

// Batcher runs n create+exec+reap iterations of target and returns the
// duration of each.
type Batcher func(target Target, n int) ([]time.Duration, error)

// Mechanism is a Spec ready to run.
type Mechanism struct {
	Spec
	Batch Batcher
}
