package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forkless/forkless/internal/trace"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseTraceFlags(t *testing.T) {
	var out bytes.Buffer
	for args, want := range map[string]traceFlags{
		"t.jsonl":          {file: "t.jsonl"},
		"--json t.jsonl":   {json: true, file: "t.jsonl"},
		"t.jsonl --json":   {json: true, file: "t.jsonl"},
		"-json=true -":     {json: true, file: "-"},
		"-- --odd-name":    {file: "--odd-name"},
		"--json -- -":      {json: true, file: "-"},
		"--json=false x.j": {file: "x.j"},
	} {
		f, err := parseTraceFlags(strings.Fields(args), &out)
		require.NoError(t, err, args)
		assert.Equal(t, want, *f, args)
	}
	for args, want := range map[string]string{
		"":          "no trace file given",
		"--json":    "no trace file given",
		"a b":       "one trace file at a time, got 2",
		"--bogus a": "flag provided but not defined: -bogus",
	} {
		_, err := parseTraceFlags(strings.Fields(args), &out)
		if assert.Error(t, err, args) {
			assert.Contains(t, err.Error(), want, args)
		}
	}
	out.Reset()
	_, err := parseTraceFlags([]string{"-h"}, &out)
	assert.True(t, errors.Is(err, flag.ErrHelp))
	assert.Contains(t, out.String(), "Usage: forkless trace [--json] FILE")
	assert.Contains(t, out.String(), "Examples:")
}

func traceCmd(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	f, err := parseTraceFlags(args, nil)
	require.NoError(t, err)
	var stdout, stderr bytes.Buffer
	status := doTrace(f, strings.NewReader(stdin), &stdout, &stderr)
	return status, stdout.String(), stderr.String()
}

func TestTraceSample(t *testing.T) {
	sample := sampleTrace(t)
	var want bytes.Buffer
	require.NoError(t, sampleReport(t, true).WriteText(&want))
	require.Contains(t, want.String(), "\nprocess tree:\n4000 (program not in the trace)\n")

	status, stdout, stderr := traceCmd(t, "", sample)
	assert.Equal(t, exitOK, status)
	assert.Equal(t, want.String(), stdout)
	assert.Empty(t, stderr)

	data, err := os.ReadFile(sample)
	require.NoError(t, err)
	status, stdout, _ = traceCmd(t, string(data), "-")
	assert.Equal(t, exitOK, status)
	assert.Equal(t, want.String(), stdout)

	status, stdout, stderr = traceCmd(t, "", "--json", sample)
	assert.Equal(t, exitOK, status)
	assert.Empty(t, stderr)
	var r trace.Report
	require.NoError(t, json.Unmarshal([]byte(stdout), &r))
	assert.Equal(t, sampleReport(t, true), &r)
}

func TestTraceBadLines(t *testing.T) {
	good := `{"v":1,"ts_ns":1,"pid":10,"ppid":1,"tid":10,"event":"fork","via":"fork","errno":0,"child":11,"dur_us":5,"threads":1}`
	p := filepath.Join(t.TempDir(), "t.jsonl")
	require.NoError(t, os.WriteFile(p, []byte(good+"\n{\"v\":2}\n"+good+"x\n"), 0o644))

	status, stdout, stderr := traceCmd(t, "", p)
	assert.Equal(t, exitFail, status)
	assert.Equal(t, "forkless trace: "+p+`: line 2: missing field "ts_ns", "pid", "ppid", "tid", "event", "via", "errno"`+"\n"+
		"forkless trace: "+p+": line 3: invalid JSON: data after the object\n", stderr)
	assert.True(t, strings.HasPrefix(stdout, "events: 1 from 2 processes over 0s\n"), stdout)
	assert.True(t, strings.HasSuffix(stdout, "process tree:\n10 (program not in the trace)\n  11 [fork] (program not in the trace)\n"), stdout)

	status, stdout, _ = traceCmd(t, "", "--json", p)
	assert.Equal(t, exitFail, status)
	var r trace.Report
	require.NoError(t, json.Unmarshal([]byte(stdout), &r))
	assert.Len(t, r.Errors, 2)

	status, stdout, stderr = traceCmd(t, "", filepath.Join(t.TempDir(), "none.jsonl"))
	assert.Equal(t, exitFail, status)
	assert.Empty(t, stdout)
	assert.Contains(t, stderr, "forkless trace: open ")
	assert.Contains(t, stderr, "no such file or directory\n")
}
