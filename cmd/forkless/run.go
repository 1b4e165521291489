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
	"strconv"
	"strings"
	"syscall"

	"github.com/forkless/forkless/internal/trace"
	"golang.org/x/sys/unix"
)

const runUsage = `Usage: forkless run [flags] [--] CMD [ARGS...]

Runs CMD with lib/libforkless.so preloaded (LD_PRELOAD), so that process
creation in CMD and in every dynamically linked program it starts goes
through forkless: posix_spawn, posix_spawnp, pidfd_spawn, system, popen,
the exec family, fork and vfork. With --trace or --summary the library
records one JSON line per event (docs/trace.md).

Standard input, output and error pass through. SIGINT, SIGTERM, SIGHUP and
SIGQUIT sent to forkless are forwarded to CMD; SIGINT and SIGQUIT typed at
the terminal already reach CMD, which shares forkless's process group, and
are not sent twice. forkless exits with CMD's status, or 128+N when signal
N killed CMD.

Descriptors: posix lets children inherit every descriptor without
close-on-exec, as POSIX says; strict gives them only 0, 1, 2, the targets
of their file actions and the --keep-fds list.

LD_PRELOAD cannot reach statically linked programs, nor Go programs (Go
creates processes with raw system calls). forkless refuses to start such a
CMD, or a script whose interpreter is one, unless --untraced is given.

Exit status: CMD's; 125 when forkless itself failed (library missing,
CMD unreachable, trace file not writable); 126 when CMD cannot be
executed; 127 when CMD is not found; 2 for bad flags.

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

// maxKeepFDs is how many descriptors FORKLESS_KEEP_FDS may name (the
// library's table).
const maxKeepFDs = 32

// runFlags are the parsed flags of forkless run.
type runFlags struct {
	trace    string   // --trace FILE
	summary  bool     // --summary
	json     bool     // --json
	fds      string   // --fds: "", "posix" or "strict"
	keepFDs  []int    // --keep-fds
	lib      string   // --lib
	untraced bool     // --untraced
	glibc    string   // --glibc (runglibc.go)
	argv     []string // CMD and its arguments
}

// parseRunFlags parses and checks args. Help (-h) goes to stdout and
// returns flag.ErrHelp; other errors are for the caller to print.
func parseRunFlags(args []string, stdout io.Writer) (*runFlags, error) {
	f := &runFlags{}
	fs := flag.NewFlagSet("forkless run", flag.ContinueOnError)
	var msgs strings.Builder
	fs.SetOutput(&msgs)
	fs.StringVar(&f.trace, "trace", "", "record the library's events in `FILE` (truncated first)")
	fs.BoolVar(&f.summary, "summary", false, "print a summary of the trace on stderr when CMD ends")
	fs.BoolVar(&f.json, "json", false, "print the summary as JSON (with --summary)")
	fs.StringVar(&f.fds, "fds", "", "descriptor `POLICY` for spawned children: posix or strict (default: the library's, posix)")
	keep := fs.String("keep-fds", "", "comma-separated `LIST` of descriptors strict mode keeps besides 0, 1 and 2")
	fs.StringVar(&f.lib, "lib", "", "preload library `PATH` (default: lib/libforkless.so next to this program's bin/)")
	fs.BoolVar(&f.untraced, "untraced", false, "run a CMD that LD_PRELOAD cannot reach anyway, with a warning")
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
	switch f.fds {
	case "", "posix", "strict":
	default:
		return nil, fmt.Errorf("--fds: %q is not a policy: want posix or strict", f.fds)
	}
	if *keep != "" {
		if f.fds != "strict" {
			return nil, errors.New("--keep-fds applies to --fds strict")
		}
		for _, part := range strings.Split(*keep, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(part))
			if err != nil || n < 0 {
				return nil, fmt.Errorf("--keep-fds: %q is not a descriptor number", part)
			}
			f.keepFDs = append(f.keepFDs, n)
		}
		if len(f.keepFDs) > maxKeepFDs {
			return nil, fmt.Errorf("--keep-fds: %d descriptors, at most %d", len(f.keepFDs), maxKeepFDs)
		}
	}
	if f.json && !f.summary {
		return nil, errors.New("--json applies to --summary")
	}
	if f.trace == "-" {
		return nil, errors.New("--trace: give a file name (the library appends to it from every process)")
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

// runEnv returns base with the variables of forkless run set: LD_PRELOAD
// (the library first, any previous list after it), FORKLESS_TRACE,
// FORKLESS_FDS and FORKLESS_KEEP_FDS when given. Other entries, including
// FORKLESS_* variables the flags do not set, stay as they are.
func runEnv(base []string, lib, tracePath string, f *runFlags) []string {
	set := map[string]string{}
	var order []string
	put := func(k, v string) {
		set[k] = v
		order = append(order, k)
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
	if f.fds != "" {
		put("FORKLESS_FDS", f.fds)
	}
	if len(f.keepFDs) > 0 {
		var s []string
		for _, n := range f.keepFDs {
			s = append(s, strconv.Itoa(n))
		}
		put("FORKLESS_KEEP_FDS", strings.Join(s, ","))
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
	if why := preloadBlocker(path); why != "" && !hasForklessHooks(path) {
		if !f.untraced {
			errorf("%s %s: LD_PRELOAD cannot reach it; the libos launcher (not built yet) will", path, why)
			errorf("--untraced runs it anyway, without tracing the processes it creates itself")
			return exitRunFailed
		}
		errorf("warning: %s %s: running it untraced (--untraced); dynamically linked programs it starts still load the library", path, why)
	}
	if why := secureExec(path); why != "" {
		errorf("warning: %s %s: the dynamic loader ignores LD_PRELOAD for it and removes it from the environment of what it starts", path, why)
	}

	tracePath := ""
	switch {
	case f.trace != "":
		if tracePath, err = filepath.Abs(f.trace); err != nil {
			errorf("--trace: %v", err)
			return exitRunFailed
		}
		tf, err := os.OpenFile(tracePath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			errorf("--trace: %v", err)
			return exitRunFailed
		}
		tf.Close()
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

	cmd := &exec.Cmd{
		Path:   path,
		Args:   f.argv,
		Env:    runEnv(os.Environ(), lib, tracePath, f),
		Stdin:  rio.stdin,
		Stdout: rio.stdout,
		Stderr: rio.stderr,
	}
	if err := onPatchedGlibc(cmd, f.glibc); err != nil {
		errorf("%v", err)
		return exitRunFailed
	}
	status, err := runForwarding(cmd)
	if err != nil {
		errorf("%v", err)
		return status
	}
	if f.summary {
		printRunSummary(rio.stderr, tracePath, f)
	}
	return status
}

// forwarded are the signals forkless run passes on to CMD.
var forwarded = []os.Signal{unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT}

// runForwarding starts cmd, forwards signals to it until it ends and
// returns its exit status (128+N for a death by signal N). An error means
// cmd did not start; the status then says why (126 or 127).
func runForwarding(cmd *exec.Cmd) (int, error) {
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
	if err := cmd.Start(); err != nil {
		status := exitCannotExec
		if errors.Is(err, fs.ErrNotExist) {
			status = exitNotFound // e.g. a missing #! interpreter
		}
		return status, err
	}
	done := make(chan struct{})
	forwarder := make(chan struct{})
	go func() {
		defer close(forwarder)
		for {
			select {
			case s := <-sigs:
				if !terminalSentToGroup(s) {
					cmd.Process.Signal(s) // fails only once CMD is gone
				}
			case <-done:
				return
			}
		}
	}()
	cmd.Wait() // errors beyond the exit status only concern copying output
	close(done)
	<-forwarder
	return exitStatus(cmd.ProcessState), nil
}

// exitStatus is the status a shell would report for ps.
func exitStatus(ps *os.ProcessState) int {
	if ps == nil {
		return exitRunFailed // Wait itself failed: no status to pass on
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return exitSignalShift + int(ws.Signal())
	}
	return ps.ExitCode()
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
	if len(evs) == 0 {
		fmt.Fprintln(w, "(no events: CMD created no processes, or the library was not loaded)")
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
