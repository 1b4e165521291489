package difftest

import (
	"strings"

	"golang.org/x/sys/unix"
)

// sigs returns the signal set bits of sigs.
func sigs(ss ...unix.Signal) uint64 {
	var m uint64
	for _, s := range ss {
		m |= 1 << (uint(s) - 1)
	}
	return m
}

func ints(v int) *int      { return &v }
func str(s string) *string { return &s }
func ids(ss ...unix.Signal) []int {
	out := make([]int, len(ss))
	for i, s := range ss {
		out[i] = int(s)
	}
	return out
}

// Flag values (glibc's POSIX_SPAWN_*).
const (
	fResetIDs   = 0x01
	fSetPgroup  = 0x02
	fSetSigDef  = 0x04
	fSetSigMask = 0x08
	fSchedParam = 0x10
	fScheduler  = 0x20
	fUseVfork   = 0x40
	fSetSid     = 0x80
	fSetCgroup  = 0x100
)

// mixedFDs is a parent table with every kind of descriptor, some
// close-on-exec and some not.
var mixedFDs = []SetupFD{
	{FD: 20, Kind: "file", Path: "$TMP/data", Flags: unix.O_RDWR, Offset: 3},
	{FD: 21, Kind: "pipe-r", CloExec: true},
	{FD: 22, Kind: "pipe-w"},
	{FD: 23, Kind: "socket", CloExec: true},
	{FD: 24, Kind: "devnull"},
	{FD: 25, Kind: "file", Path: "$TMP/data", Flags: unix.O_RDONLY, CloExec: true},
}

var dataFile = File{Path: "data", Content: "0123456789", Mode: 0o644}

// Scenarios is the conformance table: every row of the posix_spawn
// checklist (docs/design.md), success and error cases alike.
func Scenarios() []Scenario {
	base := Setup{Files: []File{dataFile}, FDs: mixedFDs}
	with := func(s Setup, f func(*Setup)) Setup { f(&s); return s }
	scs := []Scenario{
		// Inheritance with no actions and no attributes.
		{Name: "inherit/plain", Setup: base},
		{Name: "inherit/argv-env", Setup: base,
			Argv: []string{"probe", "", "two words", "quote\"back\\slash", "new\nline", "ünï"},
			Env:  []string{"A=1", "EMPTY=", "NOEQUALS", "PATH=/envp/path"}},
		{Name: "inherit/umask", Setup: with(base, func(s *Setup) { s.Umask = ints(0o027) })},
		{Name: "inherit/nofile", Setup: with(base, func(s *Setup) { s.NoFile = 200 })},
		{Name: "inherit/ignored-and-caught-signals", Setup: with(base, func(s *Setup) {
			s.Ignore = ids(unix.SIGUSR2, unix.SIGPIPE, unix.Signal(40))
			s.Catch = ids(unix.SIGUSR1, unix.SIGINT, unix.Signal(50))
		})},
		{Name: "inherit/thread-mask", Setup: with(base, func(s *Setup) {
			s.Block = ids(unix.SIGHUP, unix.SIGUSR2, unix.Signal(45))
		})},
		{Name: "inherit/flag-usevfork", Setup: base, Attr: &AttrSpec{Flags: fUseVfork}},

		// addclose
		{Name: "close/open-fds", Setup: base, Actions: []Action{{Op: "close", FD: 20}, {Op: "close", FD: 22}}},
		{Name: "close/not-open-ignored", Setup: base, Actions: []Action{{Op: "close", FD: 40}}},
		{Name: "close/stdio", Setup: base, Actions: []Action{{Op: "close", FD: 0}, {Op: "close", FD: 1}, {Op: "close", FD: 2}}},
		{Name: "close/negative-ebadf", Setup: base, Actions: []Action{{Op: "close", FD: -1}}},
		{Name: "close/over-limit-ebadf", Setup: with(base, func(s *Setup) { s.NoFile = 100 }), Actions: []Action{{Op: "close", FD: 100}}},

		// addopen
		{Name: "open/new-fd", Setup: base, Actions: []Action{
			{Op: "open", FD: 30, Path: "$TMP/new", Flags: unix.O_WRONLY | unix.O_CREAT | unix.O_TRUNC, Mode: 0o640}}},
		{Name: "open/replaces-existing", Setup: base, Actions: []Action{
			{Op: "open", FD: 20, Path: "$TMP/data", Flags: unix.O_RDONLY}}},
		{Name: "open/lowest-free-is-target", Setup: base, Actions: []Action{
			{Op: "open", FD: 0, Path: "$TMP/data", Flags: unix.O_RDONLY}}},
		{Name: "open/flags-kept", Setup: base, Actions: []Action{
			{Op: "open", FD: 31, Path: "$TMP/data", Flags: unix.O_RDWR | unix.O_APPEND | unix.O_NONBLOCK},
			{Op: "open", FD: 32, Path: "$TMP/data", Flags: unix.O_RDONLY | unix.O_CLOEXEC}}},
		{Name: "open/umask-applies", Setup: with(base, func(s *Setup) { s.Umask = ints(0o077) }), Actions: []Action{
			{Op: "open", FD: 30, Path: "$TMP/masked", Flags: unix.O_WRONLY | unix.O_CREAT, Mode: 0o666}}},
		{Name: "open/enoent", Setup: base, Actions: []Action{
			{Op: "close", FD: 20},
			{Op: "open", FD: 30, Path: "$TMP/missing/file", Flags: unix.O_RDONLY}}},
		{Name: "open/eacces", Setup: with(base, func(s *Setup) {
			s.Files = append(s.Files, File{Path: "secret", Content: "x", Mode: 0o000})
			s.EUID = ints(65534)
		}), Actions: []Action{{Op: "open", FD: 30, Path: "$TMP/secret", Flags: unix.O_RDONLY}}},
		{Name: "open/eisdir", Setup: base, Actions: []Action{
			{Op: "open", FD: 30, Path: "$TMP", Flags: unix.O_WRONLY}}},
		{Name: "open/negative-ebadf", Setup: base, Actions: []Action{{Op: "open", FD: -2, Path: "/x"}}},
		{Name: "open/emfile-target-closed-first", Setup: with(base, func(s *Setup) { s.NoFile = 64; s.Fill = true }),
			Actions: []Action{{Op: "open", FD: 20, Path: "$TMP/data", Flags: unix.O_RDONLY}}},
		{Name: "open/emfile-no-free-slot", Setup: with(base, func(s *Setup) { s.NoFile = 64; s.Fill = true }),
			Actions: []Action{{Op: "open", FD: 63, Path: "$TMP/data", Flags: unix.O_RDONLY}}},

		// adddup2
		{Name: "dup2/onto-new", Setup: base, Actions: []Action{{Op: "dup2", FD: 20, NewFD: 40}, {Op: "dup2", FD: 21, NewFD: 41}}},
		{Name: "dup2/onto-stdio", Setup: base, Actions: []Action{{Op: "dup2", FD: 22, NewFD: 1}, {Op: "dup2", FD: 24, NewFD: 0}}},
		{Name: "dup2/same-fd-clears-cloexec", Setup: base, Actions: []Action{{Op: "dup2", FD: 21, NewFD: 21}, {Op: "dup2", FD: 25, NewFD: 25}}},
		{Name: "dup2/same-fd-not-open", Setup: base, Actions: []Action{{Op: "dup2", FD: 44, NewFD: 44}}},
		{Name: "dup2/source-not-open", Setup: base, Actions: []Action{{Op: "dup2", FD: 44, NewFD: 3}}},
		{Name: "dup2/chain-order", Setup: base, Actions: []Action{
			{Op: "dup2", FD: 20, NewFD: 30}, {Op: "close", FD: 20}, {Op: "dup2", FD: 30, NewFD: 20}}},
		{Name: "dup2/bad-target-ebadf", Setup: base, Actions: []Action{{Op: "dup2", FD: 20, NewFD: -1}}},

		// addchdir / addfchdir
		{Name: "chdir/then-relative-open", Setup: with(base, func(s *Setup) {
			s.Files = append(s.Files, File{Path: "sub", Dir: true, Mode: 0o755}, File{Path: "sub/f", Content: "abc", Mode: 0o644})
		}), Actions: []Action{{Op: "chdir", Path: "$TMP/sub"}, {Op: "open", FD: 30, Path: "f", Flags: unix.O_RDONLY}}},
		{Name: "chdir/relative-exec-path", Setup: with(base, func(s *Setup) {
			s.Files = append(s.Files, File{Path: "bin", Dir: true, Mode: 0o755}, File{Path: "bin/p", Link: "$PROBE"})
		}), Actions: []Action{{Op: "chdir", Path: "bin"}}, Path: "./p"},
		{Name: "chdir/enoent", Setup: base, Actions: []Action{{Op: "chdir", Path: "$TMP/nope"}}},
		{Name: "chdir/enotdir", Setup: base, Actions: []Action{{Op: "chdir", Path: "$TMP/data"}}},
		{Name: "fchdir/dir", Setup: with(base, func(s *Setup) {
			s.Files = append(s.Files, File{Path: "d", Dir: true, Mode: 0o755})
			s.FDs = append(append([]SetupFD{}, s.FDs...), SetupFD{FD: 26, Kind: "dir", Path: "$TMP/d", CloExec: true})
		}), Actions: []Action{{Op: "fchdir", FD: 26}}},
		{Name: "fchdir/enotdir", Setup: base, Actions: []Action{{Op: "fchdir", FD: 20}}},
		{Name: "fchdir/ebadf", Setup: base, Actions: []Action{{Op: "fchdir", FD: 45}}},
		{Name: "fchdir/negative", Setup: base, Actions: []Action{{Op: "fchdir", FD: -1}}},
		{Name: "fchdir/over-limit", Setup: with(base, func(s *Setup) { s.NoFile = 100 }), Actions: []Action{{Op: "fchdir", FD: 100}}},
		{Name: "tcsetpgrp/negative-ebadf", Setup: base, Actions: []Action{{Op: "tcsetpgrp", FD: -1}}},
		{Name: "tcsetpgrp/over-limit-ebadf", Setup: with(base, func(s *Setup) { s.NoFile = 100 }), Actions: []Action{{Op: "tcsetpgrp", FD: 100}}},
		{Name: "dup2/over-limit-ebadf", Setup: with(base, func(s *Setup) { s.NoFile = 100 }), Actions: []Action{{Op: "dup2", FD: 20, NewFD: 100}}},
		{Name: "open/over-limit-ebadf", Setup: with(base, func(s *Setup) { s.NoFile = 100 }), Actions: []Action{{Op: "open", FD: 100, Path: "/x"}}},
		{Name: "closefrom/over-limit-ebadf", Setup: with(base, func(s *Setup) { s.NoFile = 100 }), Actions: []Action{{Op: "closefrom", FD: 100}}},

		// addclosefrom_np
		{Name: "closefrom/with-gaps", Setup: with(base, func(s *Setup) {
			s.FDs = append(append([]SetupFD{}, s.FDs...), SetupFD{FD: 50, Kind: "devnull"}, SetupFD{FD: 70, Kind: "devnull"})
		}), Actions: []Action{{Op: "closefrom", FD: 22}}},
		{Name: "closefrom/3", Setup: base, Actions: []Action{{Op: "closefrom", FD: 3}}},
		{Name: "closefrom/then-open", Setup: base, Actions: []Action{
			{Op: "closefrom", FD: 3}, {Op: "open", FD: 5, Path: "$TMP/data", Flags: unix.O_RDONLY}}},
		{Name: "closefrom/negative-ebadf", Setup: base, Actions: []Action{{Op: "closefrom", FD: -1}}},

		// addtcsetpgrp_np
		{Name: "tcsetpgrp/new-group-foreground", Setup: withPty(base),
			Attr: &AttrSpec{Flags: fSetPgroup}, Actions: []Action{{Op: "tcsetpgrp", FD: 27}}},
		{Name: "tcsetpgrp/own-group", Setup: withPty(base), Actions: []Action{{Op: "tcsetpgrp", FD: 27}}},
		{Name: "tcsetpgrp/after-setsid-enotty", Setup: withPty(base),
			Attr: &AttrSpec{Flags: fSetSid}, Actions: []Action{{Op: "tcsetpgrp", FD: 27}}},
		{Name: "tcsetpgrp/not-a-tty", Setup: base, Actions: []Action{{Op: "tcsetpgrp", FD: 24}}},

		// Process group and session.
		{Name: "pgroup/new", Setup: base, Attr: &AttrSpec{Flags: fSetPgroup}},
		{Name: "pgroup/join-runner", Setup: with(base, func(s *Setup) { s.Session = true }),
			Attr: &AttrSpec{Flags: fSetPgroup, PgroupRun: true}},
		{Name: "pgroup/missing-eperm", Setup: base, Attr: &AttrSpec{Flags: fSetPgroup, Pgroup: 4000000}},
		{Name: "pgroup/negative-einval", Setup: base, Attr: &AttrSpec{Flags: fSetPgroup, Pgroup: -5}},
		{Name: "pgroup/value-without-flag", Setup: base, Attr: &AttrSpec{Pgroup: 4000000}},
		{Name: "setsid/new-session", Setup: base, Attr: &AttrSpec{Flags: fSetSid}},
		{Name: "setsid/from-session-leader", Setup: with(base, func(s *Setup) { s.Session = true }), Attr: &AttrSpec{Flags: fSetSid}},
		{Name: "setsid/then-setpgroup-eperm", Setup: base, Attr: &AttrSpec{Flags: fSetSid | fSetPgroup}},

		// Signals.
		{Name: "sigmask/set", Setup: with(base, func(s *Setup) { s.Block = ids(unix.SIGHUP) }),
			Attr: &AttrSpec{Flags: fSetSigMask, SigMask: sigs(unix.SIGUSR1, unix.SIGTERM, unix.Signal(40), unix.Signal(64))}},
		{Name: "sigmask/value-without-flag", Setup: with(base, func(s *Setup) { s.Block = ids(unix.SIGHUP) }),
			Attr: &AttrSpec{SigMask: sigs(unix.SIGUSR1)}},
		{Name: "sigmask/empty", Setup: with(base, func(s *Setup) { s.Block = ids(unix.SIGHUP, unix.SIGINT) }),
			Attr: &AttrSpec{Flags: fSetSigMask}},
		{Name: "sigdef/resets-ignored", Setup: with(base, func(s *Setup) {
			s.Ignore = ids(unix.SIGUSR1, unix.SIGUSR2, unix.SIGTERM, unix.Signal(41))
		}), Attr: &AttrSpec{Flags: fSetSigDef, SigDefault: sigs(unix.SIGUSR1, unix.Signal(41), unix.SIGKILL)}},
		{Name: "sigdef/internal-signals", Setup: base,
			Attr: &AttrSpec{Flags: fSetSigDef, SigDefault: sigs(unix.Signal(32), unix.Signal(33))}},
		{Name: "sigdef/value-without-flag", Setup: with(base, func(s *Setup) { s.Ignore = ids(unix.SIGUSR1) }),
			Attr: &AttrSpec{SigDefault: sigs(unix.SIGUSR1)}},
		{Name: "sigdef/all", Setup: with(base, func(s *Setup) { s.Ignore = ids(unix.SIGUSR1, unix.SIGPIPE) }),
			Attr: &AttrSpec{Flags: fSetSigDef, SigDefault: ^uint64(0)}},

		// Scheduling (as root; the engines must agree either way).
		{Name: "sched/param-other", Setup: base, Attr: &AttrSpec{Flags: fSchedParam}},
		{Name: "sched/param-other-bad-priority", Setup: base, Attr: &AttrSpec{Flags: fSchedParam, Priority: 5}},
		{Name: "sched/scheduler-fifo", Setup: base, Attr: &AttrSpec{Flags: fScheduler, Policy: unix.SCHED_FIFO, Priority: 10}},
		{Name: "sched/scheduler-rr-with-param", Setup: base, Attr: &AttrSpec{Flags: fScheduler | fSchedParam, Policy: unix.SCHED_RR, Priority: 3}},
		{Name: "sched/scheduler-bad-priority", Setup: base, Attr: &AttrSpec{Flags: fScheduler, Policy: unix.SCHED_RR, Priority: 200}},
		{Name: "sched/policy-batch-refused", Setup: base, Attr: &AttrSpec{Flags: fScheduler, Policy: unix.SCHED_BATCH}},
		{Name: "sched/unprivileged-eperm", Setup: with(base, func(s *Setup) { s.EUID = ints(65534) }),
			Attr: &AttrSpec{Flags: fScheduler, Policy: unix.SCHED_FIFO, Priority: 1}},

		// RESETIDS
		{Name: "resetids/restores-euid-egid", Setup: with(base, func(s *Setup) { s.EGID = ints(65534); s.EUID = ints(65534) }),
			Attr: &AttrSpec{Flags: fResetIDs}},
		{Name: "resetids/without-flag", Setup: with(base, func(s *Setup) { s.EGID = ints(65534); s.EUID = ints(65534) })},

		// Flags.
		{Name: "flags/unknown-einval", Setup: base, Attr: &AttrSpec{Flags: 0x400}},

		// Exec errors (posix_spawn).
		{Name: "exec/enoent", Setup: base, Path: "$TMP/missing"},
		{Name: "exec/empty-path", Setup: base, Path: ""},
		{Name: "exec/directory-eacces", Setup: base, Path: "$TMP"},
		{Name: "exec/not-executable-eacces", Setup: base, Path: "$TMP/data"},
		{Name: "exec/noexec-format-enoexec", Setup: with(base, func(s *Setup) {
			s.Files = append(s.Files, File{Path: "script", Content: "echo hi\n", Mode: 0o755})
		}), Path: "$TMP/script"},
		{Name: "exec/enotdir", Setup: base, Path: "$TMP/data/x"},
		{Name: "exec/enametoolong", Setup: base, Path: "/" + strings.Repeat("n", 5000)},
		{Name: "exec/e2big", Setup: base, Argv: []string{"probe", strings.Repeat("x", 200<<10)}},
		{Name: "exec/shebang-script", Setup: with(base, func(s *Setup) {
			s.Files = append(s.Files, File{Path: "run", Content: "#!$PROBE\n", Mode: 0o755})
		}), Path: "$TMP/run"},
		{Name: "exec/error-after-actions", Setup: base, Path: "$TMP/missing", Attr: &AttrSpec{Flags: fSetSid | fSetPgroup},
			Actions: []Action{{Op: "close", FD: 20}}},

		// posix_spawnp
		{Name: "spawnp/found-in-caller-path", Setup: withPath(base, "$TMP/empty:$TMP/bin"), Search: true, Path: "p",
			Env: []string{"PATH=/envp/is/ignored"}},
		{Name: "spawnp/envp-path-ignored", Setup: withPath(base, "$TMP/empty"), Search: true, Path: "p",
			Env: []string{"PATH=$TMP/bin"}},
		{Name: "spawnp/path-unset-default", Setup: withPath(base, "-"), Search: true, Path: "true", Argv: []string{"true"}},
		{Name: "spawnp/eacces-remembered", Setup: withPath(base, "$TMP/noexec:$TMP/empty"), Search: true, Path: "p"},
		{Name: "spawnp/eacces-then-found", Setup: withPath(base, "$TMP/noexec:$TMP/bin"), Search: true, Path: "p"},
		{Name: "spawnp/enotdir-skipped", Setup: withPath(base, "$TMP/data:$TMP/bin"), Search: true, Path: "p"},
		{Name: "spawnp/enotdir-last", Setup: withPath(base, "$TMP/empty:$TMP/data"), Search: true, Path: "p"},
		{Name: "spawnp/enoexec-stops", Setup: withPath(base, "$TMP/script:$TMP/bin"), Search: true, Path: "p"},
		{Name: "spawnp/empty-entry-is-cwd", Setup: withPath(base, "$TMP/empty::/usr/bin"), Search: true, Path: "p",
			Actions: []Action{{Op: "chdir", Path: "$TMP/bin"}}},
		{Name: "spawnp/slash-is-direct", Setup: withPath(base, "$TMP/empty"), Search: true, Path: "bin/p"},
		{Name: "spawnp/empty-file-enoent", Setup: withPath(base, "$TMP/bin"), Search: true, Path: ""},
		{Name: "spawnp/long-name", Setup: withPath(base, "$TMP/bin"), Search: true, Path: strings.Repeat("p", 256)},
		{Name: "spawnp/long-path", Setup: withPath(base, "$TMP/bin:"+strings.Repeat("/x", 2100)), Search: true, Path: "p"},

		// Everything at once, in glibc's order.
		{Name: "combined/order", Setup: with(withPty(base), func(s *Setup) {
			s.Ignore = ids(unix.SIGUSR1, unix.SIGUSR2)
			s.Block = ids(unix.SIGHUP)
			s.Umask = ints(0o022)
		}), Attr: &AttrSpec{Flags: fSetPgroup | fSetSigDef | fSetSigMask | fSchedParam,
			SigDefault: sigs(unix.SIGUSR1), SigMask: sigs(unix.SIGTERM)},
			Actions: []Action{
				{Op: "tcsetpgrp", FD: 27},
				{Op: "dup2", FD: 20, NewFD: 1},
				{Op: "open", FD: 2, Path: "$TMP/err", Flags: unix.O_WRONLY | unix.O_CREAT, Mode: 0o600},
				{Op: "chdir", Path: "/"},
				{Op: "close", FD: 22},
				{Op: "closefrom", FD: 25},
			}},

		// SETCGROUP: glibc 2.36 has none, so the engines are checked alone.
		{Name: "cgroup/into-v2", Setup: base, NoOracle: true, Only: []string{"forkless-go", "forkless-go/clone"},
			Attr: &AttrSpec{Flags: fSetCgroup, Cgroup: cgroupDir},
			// Without clone3 there is no CLONE_INTO_CGROUP: the spawn fails.
			Want: &Want{CGroup: "0::" + strings.TrimPrefix(cgroupDir, cgroupRoot),
				Errnos: map[string]int{"forkless-go/clone": int(unix.EOPNOTSUPP)}}},
	}
	return scs
}

// The cgroup v2 hierarchy here; tests/difftest/cgroup_test.go prepares
// the folder and skips the scenario where v2 is missing.
const (
	cgroupRoot = "/sys/fs/cgroup/unified"
	cgroupDir  = cgroupRoot + "/forkless-difftest"
)

// withPty adds a pseudo-terminal at fd 27 that becomes the runner's
// controlling terminal (the runner leads its own session).
func withPty(s Setup) Setup {
	s.Session = true
	s.FDs = append(append([]SetupFD{}, s.FDs...), SetupFD{FD: 27, Kind: "pty"})
	return s
}

// withPath gives the runner a PATH and the folders the search scenarios
// use: bin/p (the probe), noexec/p (not executable), script/p (ENOEXEC),
// empty/.
func withPath(s Setup, path string) Setup {
	s.PATH = str(path)
	s.Files = append(append([]File{}, s.Files...),
		File{Path: "bin", Dir: true, Mode: 0o755}, File{Path: "bin/p", Link: "$PROBE"},
		File{Path: "noexec", Dir: true, Mode: 0o755}, File{Path: "noexec/p", Content: "x", Mode: 0o644},
		File{Path: "script", Dir: true, Mode: 0o755}, File{Path: "script/p", Content: "echo\n", Mode: 0o755},
		File{Path: "empty", Dir: true, Mode: 0o755})
	return s
}
