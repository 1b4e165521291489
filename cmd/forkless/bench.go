package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/forkless/forkless/internal/bench"
)

const benchUsage = `Usage: forkless bench [flags]

Measures process creation (create a child, exec a target, reap it) for
several mechanisms side by side, from a Go host (this process) and from
C hosts (forkless-cbench), with every host holding the same amount of
resident memory. Mechanisms are interleaved in rounds. Results: one row
per engine, host, target and resident size, with the median, p10, p90 and
minimum, and the median relative to glibc's posix_spawn on the same host.

Engines:
  Go host: forkless-go (spawn.Spawn), os/exec, syscall.ForkExec,
           glibc-posix_spawn (glibc called through purego)
  C host:  glibc-posix_spawn, forkless-c, vfork+exec, fork+exec
  forkless-c is glibc's posix_spawn called from a second C host that runs
  with LD_PRELOAD=lib/libforkless.so (--lib), so the library's engine does
  the spawn; its VS GLIBC divides by glibc-posix_spawn/c. Without the
  library, "all" skips it with a note; naming it is then an error.
  Name an engine alone for every host that has it, or as ENGINE/HOST
  (e.g. glibc-posix_spawn/c).
Targets: tiny (bin/forkless-tiny, a static program that exits at once),
         true (/bin/true), true+preload (/bin/true with
         LD_PRELOAD=lib/libforkless.so in its environment: what the
         library costs every program it is loaded into; the text output
         then adds a "preload cost" line per host).

Flags:
`

const benchExamples = `
Examples:
  forkless bench --n 100
  forkless bench --rss 16,1024,4096 --svg bench.svg
  forkless bench --engines forkless-go,glibc-posix_spawn --targets tiny --json
  forkless bench --targets tiny,true,true+preload --engines glibc-posix_spawn/c,forkless-c,vfork+exec
`

// benchFlags are the parsed flags of forkless bench.
type benchFlags struct {
	rss     []int
	n       int
	rounds  int
	targets []string
	engines []bench.Spec
	json    bool
	svg     string
	helpers string
	lib     string
	quiet   bool
	// namedForklessC is set when --engines names forkless-c itself (not
	// through "all"): then a missing library is an error, not a note.
	namedForklessC bool
}

// parseBenchFlags parses and checks args. Help (-h) goes to stdout and
// returns flag.ErrHelp; other errors are for the caller to print.
func parseBenchFlags(args []string, stdout io.Writer) (*benchFlags, error) {
	f := &benchFlags{}
	fs := flag.NewFlagSet("forkless bench", flag.ContinueOnError)
	var msgs strings.Builder
	fs.SetOutput(&msgs)
	rss := fs.String("rss", "16", "`LIST` of resident memory sizes of both hosts, in MiB (e.g. 16,1024,4096)")
	fs.IntVar(&f.n, "n", 300, "`N` timed iterations per cell (engine, host, target, rss)")
	fs.IntVar(&f.rounds, "rounds", 10, "spread each cell's iterations over `R` interleaved rounds")
	targets := fs.String("targets", strings.Join(bench.DefaultTargets, ","), "`LIST` of targets: "+strings.Join(bench.TargetNames, ", "))
	engines := fs.String("engines", "all", "`LIST` of engines (ENGINE or ENGINE/HOST), or all")
	fs.BoolVar(&f.json, "json", false, "print a JSON array of cells instead of the table")
	fs.StringVar(&f.svg, "svg", "", "also draw an SVG chart of the medians into `FILE`")
	fs.StringVar(&f.helpers, "helpers", "", "`DIR` holding forkless-tiny and forkless-cbench (default: the directory of this program)")
	fs.StringVar(&f.lib, "lib", "", "preload library `PATH` for forkless-c and true+preload (default: DIR/../lib/libforkless.so, DIR as for --helpers)")
	fs.BoolVar(&f.quiet, "quiet", false, "print no progress on stderr")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), benchUsage)
		printFlags(fs.Output(), fs)
		fmt.Fprint(fs.Output(), benchExamples)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			io.WriteString(stdout, msgs.String())
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if f.rss, err = parseSizes(*rss); err != nil {
		return nil, err
	}
	if f.n <= 0 {
		return nil, errors.New("--n must be positive")
	}
	if f.rounds <= 0 {
		return nil, errors.New("--rounds must be positive")
	}
	f.targets = splitList(*targets)
	for _, t := range f.targets {
		if !slices.Contains(bench.TargetNames, t) {
			return nil, fmt.Errorf("--targets: unknown target %q (known: %s)", t, strings.Join(bench.TargetNames, ", "))
		}
	}
	engineNames := splitList(*engines)
	if f.engines, err = bench.SelectEngines(engineNames); err != nil {
		return nil, fmt.Errorf("--engines: %w", err)
	}
	for _, name := range engineNames {
		if name == bench.EngineForklessC || strings.HasPrefix(name, bench.EngineForklessC+"/") {
			f.namedForklessC = true
		}
	}
	return f, nil
}

// printFlags lists the flags GNU-style, as --name ARG.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	type line struct{ name, usage string }
	var lines []line
	width := 18
	fs.VisitAll(func(fl *flag.Flag) {
		arg, usage := flag.UnquoteUsage(fl)
		if _, isBool := fl.Value.(interface{ IsBoolFlag() bool }); isBool {
			arg = ""
		}
		name := "--" + fl.Name
		if arg != "" {
			name += " " + arg
		}
		if fl.DefValue != "" && fl.DefValue != "false" {
			usage += " (default " + fl.DefValue + ")"
		}
		lines = append(lines, line{name, usage})
		width = max(width, len(name))
	})
	for _, l := range lines {
		fmt.Fprintf(w, "  %-*s %s\n", width, l.name, l.usage)
	}
}

// parseSizes parses "16,1024,4096".
func parseSizes(s string) ([]int, error) {
	var out []int
	for _, part := range splitList(s) {
		v, err := strconv.Atoi(strings.TrimSuffix(part, "MiB"))
		if err != nil || v < 0 {
			return nil, fmt.Errorf("--rss: %q is not a size in MiB", part)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, errors.New("--rss: empty list")
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// defaultHelpers is the directory of this executable, where `make` puts
// the helpers next to bin/forkless.
func defaultHelpers() string {
	exe, err := os.Executable()
	if err != nil {
		return "bin"
	}
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	return filepath.Dir(exe)
}

func runBench(args []string) int {
	f, err := parseBenchFlags(args, os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "forkless bench: %v\nRun 'forkless bench -h' for usage.\n", err)
		return exitUsage
	}
	if err := doBench(f, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "forkless bench: %v\n", err)
		return exitFail
	}
	return exitOK
}

// resolveLib returns the preload library the run needs ("" when it needs
// none) and the engines to run. When the library is missing and only
// --engines all asked for it, forkless-c is left out with a note on
// stderr; when it was asked for by name (forkless-c, true+preload or
// --lib), that is an error.
func resolveLib(f *benchFlags, helpers string, stderr io.Writer) (string, []bench.Spec, error) {
	specs := f.engines
	need := slices.Contains(f.targets, bench.TargetTruePreload)
	for _, s := range specs {
		need = need || s.NeedsLib()
	}
	if !need {
		return "", specs, nil
	}
	lib := f.lib
	if lib == "" {
		lib = filepath.Join(helpers, "..", "lib", "libforkless.so")
	}
	abs, err := bench.CheckLib(lib)
	if err == nil {
		return abs, specs, nil
	}
	if f.lib != "" || f.namedForklessC || slices.Contains(f.targets, bench.TargetTruePreload) {
		return "", nil, fmt.Errorf("%w\n(run `make` in the forkless repository to build lib/libforkless.so, or point --lib at it)", err)
	}
	specs = slices.DeleteFunc(slices.Clone(specs), bench.Spec.NeedsLib)
	fmt.Fprintf(stderr, "forkless bench: note: skipping forkless-c: %v (run `make` to build lib/libforkless.so)\n", err)
	return "", specs, nil
}

// doBench runs the bench f describes: results on stdout, progress and
// notes on stderr.
func doBench(f *benchFlags, stdout, stderr io.Writer) error {
	helpers := f.helpers
	if helpers == "" {
		helpers = defaultHelpers()
	}
	lib, specs, err := resolveLib(f, helpers, stderr)
	if err != nil {
		return err
	}
	targets, err := bench.ResolveTargets(f.targets, helpers, lib)
	if err != nil {
		return err
	}
	cfg := bench.Config{
		RSS: f.rss, N: f.n, Rounds: f.rounds, Warmup: 3,
		Targets: targets, Engines: specs, Lib: lib,
	}
	for _, s := range specs {
		if s.Host == bench.HostC {
			if cfg.CBench, err = bench.HelperPath(helpers, bench.CBenchBinary); err != nil {
				return err
			}
			break
		}
	}
	if !f.quiet {
		cfg.Progress = stderr
	}
	// Create the chart's file before the run, so a bad path fails at once.
	var svgFile *os.File
	if f.svg != "" {
		if svgFile, err = os.Create(f.svg); err != nil {
			return err
		}
		defer svgFile.Close()
	}

	rows, err := bench.Run(cfg)
	if err != nil {
		if svgFile != nil {
			os.Remove(f.svg)
		}
		return err
	}
	meta := bench.CollectMeta(f.n, min(f.rounds, f.n))
	if f.json {
		err = bench.WriteJSON(stdout, rows)
	} else {
		err = bench.WriteTable(stdout, rows, meta)
	}
	if err != nil {
		return err
	}
	if svgFile != nil {
		if err := bench.WriteSVG(svgFile, rows, meta); err != nil {
			return err
		}
		if err := svgFile.Close(); err != nil {
			return err
		}
		if !f.quiet {
			fmt.Fprintf(stderr, "forkless bench: wrote %s\n", f.svg)
		}
	}
	return nil
}
