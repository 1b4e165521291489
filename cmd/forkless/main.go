// Command forkless is the project's command-line tool. Each subcommand is
// one entry in the commands table; its run function gets the arguments
// after the subcommand's name and returns the exit status.
package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/forkless/forkless/libos"
	"github.com/forkless/forkless/libos/ptrace"
)

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1 // the command ran and failed
	exitUsage = 2 // the command line was wrong
)

// command is one subcommand.
type command struct {
	name    string
	summary string                  // one line for the overview
	run     func(args []string) int // args exclude the subcommand's name
}

// commands lists the subcommands in the order the usage shows them. To add
// one, add an entry here and write its run function in a file of its own.
var commands []command

func init() {
	commands = []command{
		{"bench", "measure process creation: forkless vs os/exec, syscall.ForkExec, glibc, vfork, fork", runBench},
		{"run", "run a program with lib/libforkless.so preloaded, optionally tracing its process creation", runRun},
		{"trace", "summarize a trace of forkless run: mechanisms, latency, failures, process tree", runTrace},
		{"help", "show this help, or a command's help: forkless help bench", runHelp},
	}
}

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stderr))
}

// hidden are the helper processes forkless run starts from its own
// executable; they are not commands for people.
var hidden = map[string]func(args []string) int{
	libos.GuardArg: libos.GuardMain,                                              // ends the tree if the host dies
	ptrace.StubArg: func(args []string) int { return ptrace.StubMain(args[1:]) }, // a traced root's first steps
}

// dispatch runs the subcommand args names.
func dispatch(args []string, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help":
		usage(os.Stdout)
		return exitOK
	}
	if c := lookup(args[0]); c != nil {
		return c.run(args[1:])
	}
	if run, ok := hidden[args[0]]; ok {
		return run(args)
	}
	fmt.Fprintf(stderr, "forkless: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}

func lookup(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

// usage writes the overview.
func usage(w io.Writer) {
	var b strings.Builder
	b.WriteString(`forkless: posix_spawn-exact process creation for Go, at the cost of vfork.

Usage:
  forkless COMMAND [flags]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-8s %s\n", c.name, c.summary)
	}
	b.WriteString(`
Examples:
  forkless bench                          # all mechanisms at 16 MiB resident
  forkless bench --rss 16,1024,4096 --svg bench.svg
  forkless run --summary -- make -j8      # make's process creation through forkless
  forkless run --trace t.jsonl -- make -j8 && forkless trace t.jsonl
  forkless help bench

Run "forkless help COMMAND" or "forkless COMMAND -h" for a command's flags.
`)
	io.WriteString(w, b.String())
}

// runHelp prints the overview, or a command's own help.
func runHelp(args []string) int {
	if len(args) == 0 {
		usage(os.Stdout)
		return exitOK
	}
	if c := lookup(args[0]); c != nil && c.name != "help" {
		return c.run([]string{"-h"})
	}
	fmt.Fprintf(os.Stderr, "forkless help: unknown command %q\n\n", args[0])
	usage(os.Stderr)
	return exitUsage
}
