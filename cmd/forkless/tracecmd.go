package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/forkless/forkless/internal/trace"
)

const traceUsage = `Usage: forkless trace [--json] FILE

Reads a trace recorded by "forkless run --trace FILE" (or by any program
run with LD_PRELOAD=lib/libforkless.so and FORKLESS_TRACE=FILE) and prints:

  - processes created per mechanism (posix_spawn, system, popen, vfork,
    fork, ...), spawn and fork latency (p50, p99, max);
  - failed spawns and execs with their errno, forks in multi-threaded
    processes, descriptors strict mode kept from children;
  - the process tree: each process under the one that created it, with
    how it was created and the programs it ran ("=>" marks an exec).

FILE "-" reads standard input. Lines that cannot be decoded are reported
on stderr with their line numbers; the rest is still summarized, and the
exit status is then 1. The format is described in docs/trace.md.

Flags:
`

const traceExamples = `
Examples:
  forkless run --trace build.jsonl -- make -j8
  forkless trace build.jsonl
  forkless trace --json build.jsonl | jq .summary.created
`

// traceFlags are the parsed flags of forkless trace.
type traceFlags struct {
	json bool
	file string
}

// parseTraceFlags parses args; flags may come before or after FILE. Help
// (-h) goes to stdout and returns flag.ErrHelp.
func parseTraceFlags(args []string, stdout io.Writer) (*traceFlags, error) {
	f := &traceFlags{}
	fs := flag.NewFlagSet("forkless trace", flag.ContinueOnError)
	var msgs strings.Builder
	fs.SetOutput(&msgs)
	fs.BoolVar(&f.json, "json", false, "print the summary and the tree as one JSON object")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), traceUsage)
		printFlags(fs.Output(), fs)
		fmt.Fprint(fs.Output(), traceExamples)
	}
	var files []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				io.WriteString(stdout, msgs.String())
			}
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		files = append(files, fs.Arg(0))
		args = fs.Args()[1:]
	}
	switch len(files) {
	case 0:
		return nil, errors.New("no trace file given")
	case 1:
		f.file = files[0]
	default:
		return nil, fmt.Errorf("one trace file at a time, got %d", len(files))
	}
	return f, nil
}

func runTrace(args []string) int {
	f, err := parseTraceFlags(args, os.Stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "forkless trace: %v\nRun 'forkless trace -h' for usage.\n", err)
		return exitUsage
	}
	return doTrace(f, os.Stdin, os.Stdout, os.Stderr)
}

// doTrace prints the report of f.file and returns the exit status.
func doTrace(f *traceFlags, stdin io.Reader, stdout, stderr io.Writer) int {
	in := stdin
	if f.file != "-" {
		tf, err := os.Open(f.file)
		if err != nil {
			fmt.Fprintf(stderr, "forkless trace: %v\n", err)
			return exitFail
		}
		defer tf.Close()
		in = tf
	}
	evs, errs := trace.Decode(in)
	printDecodeErrors(stderr, "forkless trace: "+f.file, errs)
	r := trace.NewReport(evs, errs, true)
	var err error
	if f.json {
		err = r.WriteJSON(stdout)
	} else {
		err = r.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "forkless trace: %v\n", err)
		return exitFail
	}
	if len(errs) > 0 {
		return exitFail
	}
	return exitOK
}
