package difftest

// A Scenario is one posix_spawn call and the parent state around it. It is
// plain data (JSON) so that a runner process can execute it with any engine.
// Strings may use $TMP (the scenario's scratch folder) and $PROBE (the
// probe binary), expanded by the runner.
type Scenario struct {
	Name  string `json:"name"`
	Setup Setup  `json:"setup"`

	Actions []Action  `json:"actions,omitempty"`
	Attr    *AttrSpec `json:"attr,omitempty"`

	Path   string   `json:"path"`   // default $PROBE
	Search bool     `json:"search"` // posix_spawnp
	Argv   []string `json:"argv"`   // default ["probe"]
	Env    []string `json:"env"`    // the probe's output path is appended

	// NoOracle marks a capability glibc 2.36 lacks: each engine is then
	// checked against Want instead of against glibc.
	NoOracle bool `json:"no_oracle,omitempty"`
	// Only limits the scenario to these engines (a capability the others
	// cannot express, such as SETCGROUP through glibc 2.36's API).
	Only []string `json:"only,omitempty"`
	Want *Want    `json:"want,omitempty"`
}

// Setup is the runner's state before the spawn.
type Setup struct {
	Files   []File    `json:"files,omitempty"`
	FDs     []SetupFD `json:"fds,omitempty"`
	Umask   *int      `json:"umask,omitempty"`
	NoFile  uint64    `json:"nofile,omitempty"`  // RLIMIT_NOFILE soft limit
	Session bool      `json:"session,omitempty"` // the runner leads a new session
	EUID    *int      `json:"euid,omitempty"`    // setresuid(-1, euid, -1) before the spawn
	EGID    *int      `json:"egid,omitempty"`
	PATH    *string   `json:"path,omitempty"` // the runner's own PATH ("-" = unset)
	Fill    bool      `json:"fill,omitempty"` // fill the descriptor table up to the limit

	Ignore []int `json:"ignore,omitempty"` // SIG_IGN in the runner
	Catch  []int `json:"catch,omitempty"`  // a handler in the runner
	Block  []int `json:"block,omitempty"`  // blocked on the spawning thread
}

// File is created under $TMP before the spawn.
type File struct {
	Path    string `json:"path"`
	Content string `json:"content,omitempty"`
	Mode    uint32 `json:"mode"`
	Dir     bool   `json:"dir,omitempty"`
	Link    string `json:"link,omitempty"` // a symlink to this (expanded) target
}

// SetupFD opens a descriptor at a fixed number in the runner.
type SetupFD struct {
	FD      int    `json:"fd"`
	Kind    string `json:"kind"` // file, dir, pipe-r, pipe-w, devnull, pty, socket
	Path    string `json:"path,omitempty"`
	Flags   int    `json:"flags,omitempty"`
	Offset  int64  `json:"offset,omitempty"`
	CloExec bool   `json:"cloexec"`
}

// Action is one file action.
type Action struct {
	Op    string `json:"op"` // close, dup2, open, chdir, fchdir, closefrom, tcsetpgrp
	FD    int    `json:"fd"`
	NewFD int    `json:"newfd,omitempty"`
	Path  string `json:"path,omitempty"`
	Flags int    `json:"flags,omitempty"`
	Mode  uint32 `json:"mode,omitempty"`
}

// AttrSpec is a posix_spawnattr_t.
type AttrSpec struct {
	Flags      int    `json:"flags"`
	Pgroup     int    `json:"pgroup,omitempty"`
	PgroupRun  bool   `json:"pgroup_runner,omitempty"` // Pgroup := the runner's pgid
	SigMask    uint64 `json:"sigmask,omitempty"`
	SigDefault uint64 `json:"sigdefault,omitempty"`
	Policy     int    `json:"policy,omitempty"`
	Priority   int    `json:"priority,omitempty"`
	Cgroup     string `json:"cgroup,omitempty"` // a cgroup v2 folder to open for SETCGROUP
}

// Want is the expected outcome where glibc cannot be the oracle.
type Want struct {
	Errno  int    `json:"errno"`
	CGroup string `json:"cgroup,omitempty"` // a line the child's /proc/self/cgroup must hold
	// Errnos overrides Errno per engine.
	Errnos map[string]int `json:"errnos,omitempty"`
}

// Result is what a runner reports for one engine.
type Result struct {
	Engine     string            `json:"engine"`
	Errno      int               `json:"errno"`       // 0 on success
	AddErrno   int               `json:"add_errno"`   // an error from building actions/attributes
	AddStep    string            `json:"add_step"`    // which add failed
	PidWritten bool              `json:"pid_written"` // pid reported although the spawn failed
	Exit       int               `json:"exit"`        // the child's wait status
	LeakedFDs  []string          `json:"leaked_fds"`  // runner descriptors that appeared
	Zombies    int               `json:"zombies"`     // children left after the spawn
	RunnerPID  int               `json:"runner_pid"`
	RunnerPGID int               `json:"runner_pgid"`
	RunnerSID  int               `json:"runner_sid"`
	ChildPID   int               `json:"child_pid"`
	Labels     map[string]string `json:"labels"` // fd target -> setup label
	// Preload is the runner's LD_PRELOAD: the library adds it to a child
	// whose envp lacks it (stickiness), so Normalize takes it out again.
	Preload string       `json:"preload,omitempty"`
	Obs     *Observation `json:"obs,omitempty"`
	Fatal   string       `json:"fatal,omitempty"` // the runner could not do its job
}
