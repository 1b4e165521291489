package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"

	"github.com/forkless/forkless/internal/bench"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDispatchUnknownCommand(t *testing.T) {
	var stderr bytes.Buffer
	assert.Equal(t, exitUsage, dispatch([]string{"frobnicate"}, &stderr))
	assert.Contains(t, stderr.String(), `unknown command "frobnicate"`)
	assert.Contains(t, stderr.String(), "Commands:")

	stderr.Reset()
	assert.Equal(t, exitUsage, dispatch(nil, &stderr))
	assert.Contains(t, stderr.String(), "Usage:")
}

func TestCommandsTable(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range commands {
		assert.False(t, seen[c.name], "duplicate command %s", c.name)
		seen[c.name] = true
		assert.NotEmpty(t, c.summary)
		assert.NotNil(t, c.run)
	}
	assert.True(t, seen["bench"])
	assert.True(t, seen["help"])
}

func TestParseBenchFlags(t *testing.T) {
	var out bytes.Buffer
	f, err := parseBenchFlags(nil, &out)
	require.NoError(t, err)
	assert.Equal(t, []int{16}, f.rss)
	assert.Equal(t, 300, f.n)
	assert.Equal(t, 10, f.rounds)
	assert.Equal(t, []string{"tiny", "true"}, f.targets)
	assert.Equal(t, bench.Catalog, f.engines)

	f, err = parseBenchFlags(strings.Fields("--rss 16,1024,4096 --n 50 --rounds 5 --targets tiny --engines forkless-go,fork+exec --json --svg x.svg --helpers /h --quiet"), &out)
	require.NoError(t, err)
	assert.Equal(t, []int{16, 1024, 4096}, f.rss)
	assert.Equal(t, 50, f.n)
	assert.Equal(t, 5, f.rounds)
	assert.Equal(t, []string{"tiny"}, f.targets)
	assert.Equal(t, []bench.Spec{{Engine: bench.EngineForklessGo, Host: bench.HostGo}, {Engine: bench.EngineForkExec, Host: bench.HostC}}, f.engines)
	assert.True(t, f.json)
	assert.True(t, f.quiet)
	assert.Equal(t, "x.svg", f.svg)
	assert.Equal(t, "/h", f.helpers)

	for _, bad := range []string{"--rss 1x", "--rss ,", "--n 0", "--rounds -1", "--targets sleep", "--engines nope", "--bogus", "extra"} {
		_, err := parseBenchFlags(strings.Fields(bad), &out)
		assert.Error(t, err, bad)
	}

	out.Reset()
	_, err = parseBenchFlags([]string{"-h"}, &out)
	assert.True(t, errors.Is(err, flag.ErrHelp))
	assert.Contains(t, out.String(), "--rss LIST")
	assert.Contains(t, out.String(), "Examples:")
}
