package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/forkless/forkless/internal/trace"
	"github.com/forkless/forkless/libos"
	"github.com/forkless/forkless/libos/ptrace"
	"golang.org/x/sys/unix"
)

const runUsage = `Usage: forkless run [flags] [--] CMD [ARGS...]

Runs CMD as a tree under the forkless host, which keeps the process table
of the whole tree, one event stream (--trace, --summary; docs/trace.md)
and one policy (--fds, --exec-allow, --exec-deny, --max-procs). Each
program runs on one of two platforms:

  preload  dynamically linked glibc programs load lib/libforkless.so
           (LD_PRELOAD): posix_spawn, system, popen, the exec family, fork
           and vfork go through forkless and report to the host.
  ptrace   static programs, programs of another libc and Go programs (Go
           creates processes with raw system calls) are traced: a seccomp
           filter stops only clone, fork, vfork and exec for the host;
           every other system call runs natively. What they start stays on
           this platform.

--platform auto (the default) picks per program, also for every exec in
the tree; preload or ptrace forces the root's platform.

Standard input, output and error pass through. SIGINT, SIGTERM, SIGHUP and
SIGQUIT sent to forkless are forwarded to CMD; SIGINT and SIGQUIT typed at
the terminal already reach CMD, which shares forkless's process group, and
are not sent twice. forkless exits with CMD's status, or 128+N when signal
N killed CMD.

Descriptors: posix lets children inherit every descriptor without
close-on-exec, as POSIX says; strict gives them only 0, 1, 2, what a
spawn's file actions set up for them, and the --keep-fds list.
Exec patterns: a pattern with a '/' matches the whole path of the program,
one without its name; '*', '?' and [...] as in the shell, '*' not
crossing '/'. A denied exec fails with EACCES; a creation beyond
--max-procs live processes fails with EAGAIN. Both are traced.

The tree lives as long as the host: when CMD ends, forkless ends what is
left of its tree, and if forkless is killed, the tree dies with it.

Exit status: CMD's; 125 when forkless itself failed (library missing,
trace file not writable); 126 when CMD cannot be executed; 127 when CMD
is not found; 2 for bad flags.

Flags:
`

const runExamples = `
Environment: an existing LD_PRELOAD is kept after the library;
FORKLESS_DISABLE=1 makes the library pass every call to libc.

Examples:
  forkless run -- make -j8
  forkless run --summary -- make -j8          # summary on stderr at the end
  forkless run --trace build.jsonl -- make -j8 && forkless trace build.jsonl
  forkless run --fds strict --keep-fds 5,6 -- ./server
  forkless run --exec-deny 'curl' --exec-deny '/tmp/*' --max-procs 64 -- ./build.sh
  forkless run --procs procs.json -- busybox sh -c 'ls | wc -l'   # a static CMD: ptrace
  forkless run --lib /opt/forkless/lib/libforkless.so -- ./configure
`

// Exit statuses of forkless run besides CMD's own, as env(1) and the
// shells use them.
const (
	exitRunFailed   = 125
	exitCannotExec  = 126
	exitNotFound    = 127
	exitSignalShift = 128
)

// Platforms of --platform.
const (
	platformAuto    = "auto"
	platformPreload = "preload"
	platformPtrace  = "ptrace"
)

// runFlags are the parsed flags of forkless run.
type runFlags struct {
	trace    string       // --trace FILE
	summary  bool         // --summary
	json     bool         // --json
	procs    string       // --procs FILE
	policy   libos.Policy // --fds, --keep-fds, --exec-allow, --exec-deny, --max-procs
	lib      string       // --lib
	platform string       // --platform
	glibc    string       // --glibc (runglibc.go)
	argv     []string     // CMD and its arguments
}

// patterns is a repeatable flag collecting exec patterns.
type patterns []string

func (p *patterns) String() string { return strings.Join(*p, " ") }
func (p *patterns) Set(v string) error {
	if err := libos.CheckPattern(v); err != nil {
		return err
	}
	*p = append(*p, v)
	return nil
}

// parseRunFlags parses and checks args. Help (-h) goes to stdout and
// returns flag.ErrHelp; other errors are for the caller to print.
func parseRunFlags(args []string, stdout io.Writer) (*runFlags, error) {
	f := &runFlags{}
	fs := flag.NewFlagSet("forkless run", flag.ContinueOnError)
	var msgs strings.Builder
	fs.SetOutput(&msgs)
	var allow, deny patterns
	fs.StringVar(&f.trace, "trace", "", "record the tree's events in `FILE` (truncated first)")
	fs.BoolVar(&f.summary, "summary", false, "print a summary of the trace on stderr when CMD ends")
	fs.BoolVar(&f.json, "json", false, "print the summary as JSON (with --summary)")
	fs.StringVar(&f.procs, "procs", "", "write the process table of the tree as JSON to `FILE` when CMD ends")
	fs.StringVar(&f.policy.FDs, "fds", "", "descriptor `POLICY` for new programs: posix or strict (default posix)")
	keep := fs.String("keep-fds", "", "comma-separated `LIST` of descriptors strict mode keeps besides 0, 1 and 2")
	fs.Var(&allow, "exec-allow", "allow only programs matching `PATTERN` (repeatable)")
	fs.Var(&deny, "exec-deny", "deny programs matching `PATTERN` (repeatable; wins over --exec-allow)")
	fs.IntVar(&f.policy.MaxProcs, "max-procs", 0, "at most `N` live processes in the tree; 0: no limit")
	fs.StringVar(&f.lib, "lib", "", "preload library `PATH` (default: lib/libforkless.so next to this program's bin/)")
	fs.StringVar(&f.platform, "platform", platformAuto, "run CMD on `PLATFORM`: auto (by its kind), preload or ptrace")
	fs.StringVar(&f.glibc, "glibc", "", "run CMD on the patched glibc build in `DIR` (make glibc: build/glibc-2.36)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), runUsage)
		printFlags(fs.Output(), fs)
		fmt.Fprint(fs.Output(), runExamples)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			io.WriteString(stdout, msgs.String())
		}
		return nil, err
	}
	f.argv = fs.Args()
	if len(f.argv) == 0 {
		return nil, errors.New("no command given: forkless run [flags] -- CMD [ARGS...]")
	}
	switch f.policy.FDs {
	case "", libos.FDsPOSIX, libos.FDsStrict:
	default:
		return nil, fmt.Errorf("--fds: %q is not a policy: want posix or strict", f.policy.FDs)
	}
	if *keep != "" {
		if f.policy.FDs != libos.FDsStrict {
			return nil, errors.New("--keep-fds applies to --fds strict")
		}
		for _, part := range strings.Split(*keep, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(part))
			if err != nil || n < 0 {
				return nil, fmt.Errorf("--keep-fds: %q is not a descriptor number", part)
			}
			f.policy.KeepFDs = append(f.policy.KeepFDs, n)
		}
		if len(f.policy.KeepFDs) > libos.MaxKeepFDs {
			return nil, fmt.Errorf("--keep-fds: %d descriptors, at most %d", len(f.policy.KeepFDs), libos.MaxKeepFDs)
		}
	}
	if f.policy.MaxProcs < 0 {
		return nil, fmt.Errorf("--max-procs: %d is negative", f.policy.MaxProcs)
	}
	f.policy.ExecAllow, f.policy.ExecDeny = allow, deny
	switch f.platform {
	case platformAuto, platformPreload, platformPtrace:
	default:
		return nil, fmt.Errorf("--platform: %q: want auto, preload or ptrace", f.platform)
	}
	if f.json && !f.summary {
		return nil, errors.New("--json applies to --summary")
	}
	if f.trace == "-" {
		return nil, errors.New("--trace: give a file name (every process of the tree may append to it)")
	}
	return f, nil
}

func runRun(args []string) int {
	f, err := parseRunFlags(args, os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "forkless run: %v\nRun 'forkless run -h' for usage.\n", err)
		return exitUsage
	}
	return doRun(f, runIO{os.Stdin, os.Stdout, os.Stderr})
}

// runIO is where CMD's standard streams go, and forkless's messages
// (stderr).
type runIO struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

// defaultRunLib is <dir of this executable>/../lib/libforkless.so: the
// repository's lib/ when this is <repo>/bin/forkless.
func defaultRunLib() string {
	dir := "bin"
	if exe, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(exe); err == nil {
			exe = real
		}
		dir = filepath.Dir(exe)
	}
	return filepath.Join(dir, "..", "lib", "libforkless.so")
}

// checkRunLib returns the absolute path of the library, or an error that
// says how to get one.
func checkRunLib(path string, given bool) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(abs)
	switch {
	case err != nil && errors.Is(err, fs.ErrNotExist):
		if given {
			return "", fmt.Errorf("library %s not found", abs)
		}
		return "", fmt.Errorf("library %s not found: run `make` in the forkless repository to build it, or pass --lib PATH", abs)
	case err != nil:
		return "", fmt.Errorf("library: %w", err)
	case !st.Mode().IsRegular():
		return "", fmt.Errorf("library %s is not a regular file", abs)
	}
	// ld.so splits LD_PRELOAD at colons and spaces.
	if strings.ContainsAny(abs, ": \t") {
		return "", fmt.Errorf("library path %q holds a colon or a space, which LD_PRELOAD cannot express", abs)
	}
	return abs, nil
}

// runEnv returns base with the variables of the tree set: LD_PRELOAD (the
// library first, any previous list after it), FORKLESS_TRACE (where a
// process that cannot reach the host writes its lines) and extra (the
// host's address and the policy). Other entries, including FORKLESS_*
// variables none of these set, stay as they are.
func runEnv(base []string, lib, tracePath string, extra []string) []string {
	set := map[string]string{}
	var order []string
	put := func(k, v string) {
		if _, ok := set[k]; !ok {
			order = append(order, k)
		}
		set[k] = v
	}
	var old []string
	for _, kv := range base {
		if v, ok := strings.CutPrefix(kv, "LD_PRELOAD="); ok {
			old = strings.FieldsFunc(v, func(r rune) bool { return r == ':' || r == ' ' })
		}
	}
	preload := []string{lib}
	for _, o := range old {
		if o != lib {
			preload = append(preload, o)
		}
	}
	put("LD_PRELOAD", strings.Join(preload, ":"))
	if tracePath != "" {
		put("FORKLESS_TRACE", tracePath)
	}
	for _, kv := range extra {
		k, v, _ := strings.Cut(kv, "=")
		put(k, v)
	}
	var env []string
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := set[k]; !ok {
			env = append(env, kv)
		}
	}
	for _, k := range order {
		env = append(env, k+"="+set[k])
	}
	return env
}

// doRun runs CMD and returns the exit status of forkless run.
func doRun(f *runFlags, rio runIO) int {
	errorf := func(format string, args ...any) {
		fmt.Fprintf(rio.stderr, "forkless run: "+format+"\n", args...)
	}
	libPath, given := f.lib, f.lib != ""
	if !given {
		libPath = defaultRunLib()
	}
	lib, err := checkRunLib(libPath, given)
	if err != nil {
		errorf("%v", err)
		return exitRunFailed
	}

	path, err := exec.LookPath(f.argv[0])
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrPermission):
			errorf("%s: permission denied", f.argv[0])
			return exitCannotExec
		case errors.Is(err, exec.ErrDot):
			errorf("%s: found in the current directory through PATH; run it as ./%s", f.argv[0], f.argv[0])
		default:
			errorf("%s: command not found", f.argv[0])
		}
		return exitNotFound
	}
	traced := f.platform == platformPtrace
	why := preloadBlocker(path)
	if why != "" && hasForklessHooks(path) {
		why = "" // linked with lib/libforkless.a on a patched libc.a: it reports itself
	}
	switch {
	case f.platform == platformAuto:
		traced = why != ""
	case f.platform == platformPreload && why != "":
		errorf("warning: %s %s: with --platform preload, the processes it creates itself are not seen", path, why)
	}
	if why := secureExec(path); why != "" && !traced {
		errorf("warning: %s %s: the dynamic loader ignores LD_PRELOAD for it and removes it from the environment of what it starts", path, why)
	}
	if !f.policy.ExecAllowed(path) {
		errorf("%s: denied by the exec policy", path)
		return exitCannotExec
	}

	if f.policy.Strict() {
		// CMD is a new program too: what forkless inherited reaches it
		// only through the keep list.
		strictInherit(&f.policy)
	}

	tracePath := ""
	switch {
	case f.trace != "":
		if tracePath, err = filepath.Abs(f.trace); err != nil {
			errorf("--trace: %v", err)
			return exitRunFailed
		}
	case f.summary:
		tf, err := os.CreateTemp("", "forkless-trace-*.jsonl")
		if err != nil {
			errorf("temporary trace file: %v", err)
			return exitRunFailed
		}
		tf.Close()
		tracePath = tf.Name()
		defer os.Remove(tracePath)
	}
	var traceFile *os.File
	if tracePath != "" {
		// O_APPEND: processes that cannot reach the host append their
		// own lines to the same file.
		traceFile, err = os.OpenFile(tracePath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
		if err != nil {
			errorf("--trace: %v", err)
			return exitRunFailed
		}
		defer traceFile.Close()
	}

	self, err := os.Executable()
	if err != nil {
		errorf("%v", err)
		return exitRunFailed
	}
	// The guard and the stub are this executable (see hidden).
	cfg := libos.Config{Policy: f.policy, GuardExe: self}
	if traceFile != nil {
		cfg.Trace = traceFile
	}
	host, err := libos.NewHost(cfg)
	if err != nil {
		errorf("host: %v", err)
		return exitRunFailed
	}
	defer host.Close()
	tracer := ptrace.New(host, f.policy)
	host.SetAdopter(tracer)
	stdio, closeStdio, err := stdioFiles(rio)
	if err != nil {
		errorf("%v", err)
		return exitRunFailed
	}
	spec := ptrace.Spec{
		Path:   path,
		Argv:   f.argv,
		Env:    runEnv(os.Environ(), lib, tracePath, host.Env()),
		Stdin:  stdio[0],
		Stdout: stdio[1],
		Stderr: stdio[2],
		Traced: traced,
		Stub:   self,
		Started: func(pid int) {
			platform := trace.PlatformPreload
			if traced {
				platform = trace.PlatformPtrace
			}
			host.Root(pid, path, f.argv, platform)
		},
	}
	if err := onPatchedGlibc(&spec, f.glibc); err != nil {
		errorf("%v", err)
		return exitRunFailed
	}
	if fd := host.CgroupFD(); fd >= 0 {
		spec.UseCgroupFD, spec.CgroupFD = true, fd
	}
	status, err := runForwarding(tracer, spec)
	tracer.Close()
	host.Close()
	closeStdio()
	if err != nil {
		errorf("%v", err)
		return status
	}
	if f.procs != "" {
		if err := writeProcs(f.procs, host); err != nil {
			errorf("--procs: %v", err)
			return exitRunFailed
		}
	}
	if f.summary {
		printRunSummary(rio.stderr, tracePath, f)
	}
	return status
}

// strictInherit marks every descriptor from 3 up that the strict policy
// does not keep close-on-exec in this process, so that CMD does not
// inherit it.
func strictInherit(p *libos.Policy) {
	lo := 3
	for _, k := range slices.Sorted(slices.Values(p.KeepFDs)) {
		if k < lo {
			continue
		}
		if k > lo {
			unix.CloseRange(uint(lo), uint(k-1), unix.CLOSE_RANGE_CLOEXEC)
		}
		lo = k + 1
	}
	unix.CloseRange(uint(lo), ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
}

// writeProcs writes the host's process table to path.
func writeProcs(path string, host *libos.Host) error {
	pf, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := host.WriteTable(pf); err != nil {
		pf.Close()
		return err
	}
	return pf.Close()
}

// stdioFiles returns files for CMD's standard streams: rio's own when they
// are files, else pipes copied by goroutines. done closes our ends and
// waits for the copying.
func stdioFiles(rio runIO) (files [3]*os.File, done func(), err error) {
	var closers []*os.File
	var wg sync.WaitGroup
	fail := func(e error) ([3]*os.File, func(), error) {
		for _, c := range closers {
			c.Close()
		}
		return files, nil, e
	}
	if f, ok := rio.stdin.(*os.File); ok {
		files[0] = f
	} else {
		r, w, err := os.Pipe()
		if err != nil {
			return fail(err)
		}
		files[0] = r
		closers = append(closers, r)
		go func() {
			io.Copy(w, rio.stdin)
			w.Close()
		}()
	}
	for i, out := range []io.Writer{rio.stdout, rio.stderr} {
		if f, ok := out.(*os.File); ok {
			files[i+1] = f
			continue
		}
		r, w, err := os.Pipe()
		if err != nil {
			return fail(err)
		}
		files[i+1] = w
		closers = append(closers, w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			io.Copy(out, r)
			r.Close()
		}()
	}
	return files, func() {
		for _, c := range closers {
			c.Close()
		}
		wg.Wait()
	}, nil
}

// forwarded are the signals forkless run passes on to CMD.
var forwarded = []os.Signal{unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT}

// runForwarding runs root under the tracer, forwarding signals to it until
// it ends, and returns its exit status (128+N for a death by signal N).
// An error means root did not start; the status then says why (126 or
// 127).
func runForwarding(tracer *ptrace.Tracer, root ptrace.Spec) (int, error) {
	// A signal ignored by whoever started us stays ignored for CMD too
	// (nohup): Notify would install a handler, and CMD would then start
	// with the default action instead.
	var watch []os.Signal
	for _, s := range forwarded {
		if !signal.Ignored(s) {
			watch = append(watch, s)
		}
	}
	sigs := make(chan os.Signal, 8)
	if len(watch) > 0 {
		signal.Notify(sigs, watch...)
		defer signal.Stop(sigs)
	}
	done := make(chan struct{})
	forwarder := make(chan struct{})
	go func() {
		defer close(forwarder)
		for {
			select {
			case s := <-sigs:
				if !terminalSentToGroup(s) {
					tracer.Signal(s.(unix.Signal)) // fails only once CMD is gone
				}
			case <-done:
				return
			}
		}
	}()
	ws, err := tracer.Run(root)
	close(done)
	<-forwarder
	if err != nil {
		status := exitCannotExec
		if errors.Is(err, fs.ErrNotExist) {
			status = exitNotFound // e.g. a missing #! interpreter
		}
		return status, err
	}
	return exitStatus(ws), nil
}

// exitStatus is the status a shell would report for ws.
func exitStatus(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return exitSignalShift + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// terminalSentToGroup guesses whether the terminal generated s for the
// whole foreground process group, which CMD belongs to: then CMD has it
// already. It holds for SIGINT and SIGQUIT when our process group is the
// foreground group of our controlling terminal. (A kill(1) of forkless
// alone looks the same and is then not forwarded; the siginfo that would
// tell them apart is not available to Go programs.)
func terminalSentToGroup(s os.Signal) bool {
	if s != unix.SIGINT && s != unix.SIGQUIT {
		return false
	}
	fd, err := unix.Open("/dev/tty", unix.O_RDONLY|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false // no controlling terminal
	}
	defer unix.Close(fd)
	fg, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP)
	return err == nil && fg == unix.Getpgrp()
}

// printRunSummary prints the summary of the trace at path on w.
func printRunSummary(w io.Writer, path string, f *runFlags) {
	tf, err := os.Open(path)
	if err != nil {
		fmt.Fprintf(w, "forkless run: summary: %v\n", err)
		return
	}
	defer tf.Close()
	evs, errs := trace.Decode(tf)
	printDecodeErrors(w, "forkless run: trace", errs)
	r := trace.NewReport(evs, errs, false)
	if f.json {
		r.WriteJSON(w)
		return
	}
	fmt.Fprintln(w, "forkless run: summary")
	r.WriteText(w)
	if r.Summary.CreatedTotal == 0 {
		fmt.Fprintln(w, "(no processes created: CMD created none, or the library was not loaded)")
	}
	if f.trace != "" {
		fmt.Fprintf(w, "process tree: forkless trace %s\n", f.trace)
	}
}

// printDecodeErrors prints decode errors, at most trace.MaxListed of them.
func printDecodeErrors(w io.Writer, prefix string, errs []error) {
	for i, err := range errs {
		if i == trace.MaxListed {
			fmt.Fprintf(w, "%s: ... and %d more bad lines\n", prefix, len(errs)-i)
			return
		}
		fmt.Fprintf(w, "%s: %v\n", prefix, err)
	}
}
