package trace

import (
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// line is a valid spawn line to build test traces from.
const line = `{"v":1,"ts_ns":1700000000000000000,"pid":4000,"ppid":3990,"tid":4000,"event":"spawn","via":"posix_spawn","errno":0,"child":4001,"path":"/bin/sh","argv":["/bin/sh","-c","cc -c a.c"],"fds":[{"fd":0,"target":"/dev/pts/3"}],"dur_us":180}`

func TestParseLineAllFields(t *testing.T) {
	ev, err := ParseLine([]byte(`{"v":1,"ts_ns":5,"pid":10,"ppid":1,"tid":11,"event":"fork","via":"vfork","errno":0,` +
		`"child":12,"path":"/p","argv":["a","b"],"argv_truncated":true,"fds":[{"fd":0,"target":"/dev/null"},{"fd":7,"target":"pipe:[1]"}],` +
		`"fds_truncated":true,"dur_us":99,"threads":3,"strict_closed":4}`))
	require.NoError(t, err)
	assert.Equal(t, Event{
		V: 1, TsNs: 5, PID: 10, PPID: 1, TID: 11, Event: EventFork, Via: ViaVfork,
		Child: 12, Path: "/p", Argv: []string{"a", "b"}, ArgvTruncated: true,
		FDs:          []FD{{FD: 0, Target: "/dev/null"}, {FD: 7, Target: "pipe:[1]"}},
		FDsTruncated: true, DurUS: 99, Threads: 3, StrictClosed: 4,
	}, ev)
}

func TestParseLineMinimal(t *testing.T) {
	ev, err := ParseLine([]byte(` {"errno":2,"via":"exec","event":"exec","tid":3,"ppid":0,"pid":3,"ts_ns":0,"v":1,"argv":[],"fds":[]} `))
	require.NoError(t, err)
	assert.Equal(t, Event{V: 1, PID: 3, TID: 3, Event: EventExec, Via: ViaExec, Errno: 2}, ev)
	assert.Nil(t, ev.Argv, "an empty array decodes as nil, as Marshal omits it")
}

func TestParseLineErrors(t *testing.T) {
	base := `"v":1,"ts_ns":1,"pid":2,"ppid":1,"tid":2,"event":"spawn","via":"posix_spawn","errno":0`
	obj := func(extra string) string { return "{" + base + extra + "}" }
	for _, c := range []struct{ line, want string }{
		{``, "unexpected end of line"},
		{`{`, "unexpected end of line"},
		{`[1]`, "want a JSON object"},
		{`"x"`, "want a JSON object"},
		{`{"v":1,}`, "invalid JSON"},
		{obj(`} {`), "data after the object"},
		{obj(``) + `x`, "data after the object"},
		{obj(`,"bogus":1`), `unknown field "bogus"`},
		{obj(`,"PID":1`), `unknown field "PID"`},
		{obj(`,"pid":3`), `duplicate field "pid"`},
		{`{"v":1}`, `missing field "ts_ns", "pid", "ppid", "tid", "event", "via", "errno"`},
		{strings.Replace(obj(``), `"pid":2`, `"pid":"2"`, 1), `field "pid": want an integer, got "\"2\""`},
		{strings.Replace(obj(``), `"pid":2`, `"pid":2.5`, 1), `field "pid": want an integer`},
		{strings.Replace(obj(``), `"pid":2`, `"pid":null`, 1), `field "pid": want an integer, got "null"`},
		{strings.Replace(obj(``), `"pid":2`, `"pid":1e3`, 1), `field "pid": want an integer`},
		{strings.Replace(obj(``), `"ts_ns":1`, `"ts_ns":99999999999999999999`, 1), `field "ts_ns": want an integer`},
		{strings.Replace(obj(``), `"via":"posix_spawn"`, `"via":7`, 1), `field "via": want a string`},
		{obj(`,"argv":"ls"`), `field "argv": want an array`},
		{obj(`,"argv":["ls",null]`), `field "argv": entry 1: want a string, got "null"`},
		{obj(`,"argv_truncated":1`), `field "argv_truncated": want true or false`},
		{obj(`,"fds":[1]`), `field "fds": entry 0: want an object`},
		{obj(`,"fds":[{"fd":1}]`), `field "fds": entry 0: missing field "target"`},
		{obj(`,"fds":[{"target":"x"}]`), `field "fds": entry 0: missing field "fd"`},
		{obj(`,"fds":[{"fd":1,"target":"x","mode":2}]`), `field "fds": entry 0: unknown field "mode"`},
		{obj(`,"fds":[{"fd":1,"fd":2,"target":"x"}]`), `field "fds": entry 0: duplicate field "fd"`},
		{strings.Replace(obj(``), `"v":1`, `"v":2`, 1), "v is 2, want 1"},
		{strings.Replace(obj(``), `"spawn"`, `"clone"`, 1), `unknown event "clone"`},
		{strings.Replace(obj(``), `"posix_spawn"`, `"spawn"`, 1), `unknown via "spawn"`},
		{strings.Replace(obj(``), `"posix_spawn"`, `"exec"`, 1), `via "exec" does not start processes`},
		{strings.Replace(strings.Replace(obj(``), `"spawn"`, `"fork"`, 1), `"posix_spawn"`, `"system"`, 1), `fork event with via "system"`},
		{strings.Replace(obj(`,"child":5`), `"spawn"`, `"exec"`, 1), `exec event with via "posix_spawn", want "exec"; exec event with a child`},
		{strings.Replace(obj(``), `"pid":2`, `"pid":0`, 1), "pid 0 is not positive"},
		{strings.Replace(obj(``), `"tid":2`, `"tid":-1`, 1), "tid -1 is not positive"},
		{strings.Replace(obj(``), `"errno":0`, `"errno":-2`, 1), "errno -2 is negative"},
		{obj(`,"dur_us":-1`), "dur_us -1 is negative"},
		{obj(`,"argv":[` + strings.Repeat(`"a",`, 32) + `"a"]`), "argv has 33 entries, at most 32 allowed"},
		{obj(`,"argv":["` + strings.Repeat("a", 257) + `"]`), "argv[0] has 257 characters, at most 256 allowed"},
		{obj(`,"fds":[` + strings.Repeat(`{"fd":1,"target":""},`, 64) + `{"fd":1,"target":""}]`), "fds has 65 entries, at most 64 allowed"},
		{obj(`,"fds":[{"fd":-1,"target":""}]`), "fds[0].fd -1 is negative"},
	} {
		_, err := ParseLine([]byte(c.line))
		if assert.Error(t, err, c.line) {
			assert.Contains(t, err.Error(), c.want, c.line)
		}
	}
	// The boundaries themselves are fine: 32 entries of 256 characters,
	// invalid UTF-8 bytes counting one each.
	_, err := ParseLine([]byte(obj(`,"argv":[` + strings.Repeat(`"`+strings.Repeat("\xff", 256)+`",`, 31) + `"a"]`)))
	assert.NoError(t, err)
}

func TestDecodeGoesOnAfterBadLines(t *testing.T) {
	long := `{"v":1,"path":"` + strings.Repeat("x", MaxLine) + `"}`
	input := strings.Join([]string{
		line,                    // 1
		`{"v":1,"bogus":1}`,     // 2
		"",                      // 3: blank, skipped
		"   \t",                 // 4: blank, skipped
		long,                    // 5: too long
		line,                    // 6
		`not json`,              // 7
		line + "\r",             // 8: CRLF is fine
		strings.TrimSpace(line), // 9, without a final newline
	}, "\n")
	evs, errs := Decode(strings.NewReader(input))
	assert.Len(t, evs, 4)
	require.Len(t, errs, 3)
	var lines []int
	for _, err := range errs {
		var le *LineError
		require.True(t, errors.As(err, &le), "%v", err)
		lines = append(lines, le.Line)
	}
	assert.Equal(t, []int{2, 5, 7}, lines)
	assert.Equal(t, `line 2: unknown field "bogus"`, errs[0].Error())
	assert.Equal(t, "line 5: line longer than 65536 bytes", errs[1].Error())
	assert.Contains(t, errs[2].Error(), "line 7: invalid JSON")
}

func TestReaderLineLimit(t *testing.T) {
	// A line of exactly MaxLine bytes is read; one byte more is not.
	pad := func(n int) string {
		l := `{"v":1,"ts_ns":1,"pid":2,"ppid":1,"tid":2,"event":"exec","via":"exec","errno":0,"path":""}`
		return strings.Replace(l, `"path":""`, `"path":"`+strings.Repeat("p", n-len(l))+`"`, 1)
	}
	exact, over := pad(MaxLine), pad(MaxLine+1)
	require.Len(t, exact, MaxLine)
	for _, final := range []string{"\n", ""} {
		evs, errs := Decode(strings.NewReader(exact + "\n" + over + final))
		assert.Len(t, evs, 1)
		require.Len(t, errs, 1)
		assert.Equal(t, "line 2: line longer than 65536 bytes", errs[0].Error())
	}
}

func TestReaderReadError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader(line+"\n"), iotest.ErrReader(boom))
	evs, errs := Decode(r)
	assert.Len(t, evs, 1)
	require.Len(t, errs, 1)
	assert.ErrorIs(t, errs[0], boom)

	rd := NewReader(strings.NewReader(line + "\n"))
	_, err := rd.Next()
	require.NoError(t, err)
	assert.Equal(t, 1, rd.Line())
	_, err = rd.Next()
	assert.Equal(t, io.EOF, err)
	_, err = rd.Next()
	assert.Equal(t, io.EOF, err, "the end is sticky")
}

func TestMarshalRoundTrip(t *testing.T) {
	f, err := os.Open("testdata/sample.jsonl")
	require.NoError(t, err)
	defer f.Close()
	evs, errs := Decode(f)
	require.Empty(t, errs)
	require.NotEmpty(t, evs)
	for _, ev := range evs {
		b, err := Marshal(ev)
		require.NoError(t, err)
		back, err := ParseLine(b)
		require.NoError(t, err, "%s", b)
		assert.Equal(t, ev, back)
	}
	b, err := Marshal(Event{V: 1, PID: 1, TID: 1, Event: EventExec, Via: ViaExec, Path: "a<b>&c"})
	require.NoError(t, err)
	assert.Equal(t, `{"v":1,"ts_ns":0,"pid":1,"ppid":0,"tid":1,"event":"exec","via":"exec","errno":0,"path":"a<b>&c"}`, string(b))
}

func TestParseLineHostFields(t *testing.T) {
	ev, err := ParseLine([]byte(`{"v":1,"ts_ns":5,"pid":10,"ppid":1,"tid":10,"event":"exit","via":"exit","errno":0,"status":0,"platform":"ptrace"}`))
	require.NoError(t, err)
	require.NotNil(t, ev.Status)
	assert.Equal(t, 0, *ev.Status)
	assert.Equal(t, PlatformPtrace, ev.Platform)

	ev, err = ParseLine([]byte(`{"v":1,"ts_ns":5,"pid":10,"ppid":1,"tid":10,"event":"fork","via":"clone","errno":0,"child":11,"fds":[{"fd":3,"target":"pipe:[9]","flags":524289}]}`))
	require.NoError(t, err)
	assert.Equal(t, []FD{{FD: 3, Target: "pipe:[9]", Flags: 524289}}, ev.FDs)

	ev, err = ParseLine([]byte(`{"v":1,"ts_ns":5,"pid":10,"ppid":1,"tid":10,"event":"exec","via":"exec","errno":13,"path":"/bin/x","policy":"exec-deny"}`))
	require.NoError(t, err)
	assert.Equal(t, PolicyExecDeny, ev.Policy)

	for _, bad := range []string{
		`{"v":1,"ts_ns":5,"pid":10,"ppid":1,"tid":10,"event":"exit","via":"exit","errno":0}`,                      // no status
		`{"v":1,"ts_ns":5,"pid":10,"ppid":1,"tid":10,"event":"exit","via":"fork","errno":0,"status":0}`,           // wrong via
		`{"v":1,"ts_ns":5,"pid":10,"ppid":1,"tid":10,"event":"spawn","via":"exit","errno":0}`,                     // exit via elsewhere
		`{"v":1,"ts_ns":5,"pid":10,"ppid":1,"tid":10,"event":"fork","via":"fork","errno":0,"status":1}`,           // status elsewhere
		`{"v":1,"ts_ns":5,"pid":10,"ppid":1,"tid":10,"event":"fork","via":"fork","errno":0,"platform":"x"}`,       // unknown platform
		`{"v":1,"ts_ns":5,"pid":10,"ppid":1,"tid":10,"event":"exec","via":"exec","errno":0,"policy":"exec-deny"}`, // policy on success
		`{"v":1,"ts_ns":5,"pid":10,"ppid":1,"tid":10,"event":"exec","via":"exec","errno":1,"policy":"nope"}`,      // unknown policy
		`{"v":1,"ts_ns":5,"pid":10,"ppid":1,"tid":10,"event":"fork","via":"fork","errno":0,"fds":[{"fd":1,"target":"x","flags":-1}]}`,
	} {
		_, err := ParseLine([]byte(bad))
		assert.Error(t, err, bad)
	}
}
