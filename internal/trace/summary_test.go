package trace

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func loadSample(t *testing.T) []Event {
	t.Helper()
	f, err := os.Open("testdata/sample.jsonl")
	require.NoError(t, err)
	defer f.Close()
	evs, errs := Decode(f)
	require.Empty(t, errs)
	return evs
}

// parse decodes a handwritten trace whose lines leave out v, ts_ns, ppid
// and errno 0, and name pid and tid as "p" (tid defaults to pid).
func parse(t *testing.T, lines ...string) []Event {
	t.Helper()
	var b strings.Builder
	for i, l := range lines {
		l = strings.TrimPrefix(l, "{")
		head := `{"v":1,"ts_ns":` + strconv.Itoa(1000+i) + `,"ppid":1,`
		if !strings.Contains(l, `"errno"`) {
			head += `"errno":0,`
		}
		if !strings.Contains(l, `"tid"`) {
			pid := l[strings.Index(l, `"pid":`)+6:]
			pid = pid[:strings.IndexAny(pid, ",}")]
			head += `"tid":` + pid + `,`
		}
		b.WriteString(head + l + "\n")
	}
	evs, errs := Decode(strings.NewReader(b.String()))
	require.Empty(t, errs)
	require.Len(t, evs, len(lines))
	return evs
}

const sampleText = `events: 15 from 9 processes over 1.1s
processes created: 8
  posix_spawn   3
  system        1
  popen         1
  fork          3
spawn latency: p50 240 us, p99 350 us, max 350 us (5 spawns)
fork latency: p50 95 us, p99 1450 us, max 1450 us (3 forks)
spawn failures: 1
  pid 4000 posix_spawnp nosuch-tool: ENOENT (no such file or directory)
exec failures: 1
  pid 4004 /usr/local/bin/cc: ENOENT (no such file or directory)
forks in multi-threaded processes: 1
  pid 4006 fork with 4 threads, child 4007
descriptors strict mode kept from children: 5

process tree:
4000 (program not in the trace)
  4001 [posix_spawn] /bin/sh -c 'cc -c a.c' => /usr/bin/cc -c a.c
    4003 [posix_spawn] /usr/lib/gcc/x86_64-linux-gnu/12/cc1 -quiet a.c -o /tmp/ccA1b2.s
  4002 [posix_spawn] /bin/sh -c 'cc -c b.c | tee b.log'
    4004 [fork] /bin/sh -c 'cc -c b.c | tee b.log' => /usr/bin/cc -c b.c
    4005 [fork] /bin/sh -c 'cc -c b.c | tee b.log' => /usr/bin/tee b.log
  4006 [system] /bin/sh -c 'python3 gen.py > gen.h' => /usr/bin/python3 gen.py
    4007 [fork] /usr/bin/python3 gen.py
    4008 [popen] /bin/sh -c 'git describe --tags'
`

func TestSampleText(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, NewReport(loadSample(t), nil, true).WriteText(&out))
	assert.Equal(t, sampleText, out.String())

	// Without the tree: the summary alone.
	out.Reset()
	require.NoError(t, NewReport(loadSample(t), nil, false).WriteText(&out))
	assert.Equal(t, sampleText[:strings.Index(sampleText, "\nprocess tree:")], out.String())
}

func TestSampleJSON(t *testing.T) {
	var out bytes.Buffer
	r := NewReport(loadSample(t), nil, false)
	require.NoError(t, r.WriteJSON(&out))
	assert.JSONEq(t, `{"summary": {
		"events": 15, "processes": 9, "span_ns": 1100000000,
		"created": {"fork": 3, "popen": 1, "posix_spawn": 3, "system": 1},
		"created_total": 8,
		"spawn_latency_us": {"n": 5, "p50": 240, "p99": 350, "max": 350},
		"fork_latency_us": {"n": 3, "p50": 95, "p99": 1450, "max": 1450},
		"spawn_failures": [{"pid": 4000, "via": "posix_spawnp", "path": "nosuch-tool", "errno": 2, "error": "ENOENT (no such file or directory)"}],
		"exec_failures": [{"pid": 4004, "via": "exec", "path": "/usr/local/bin/cc", "errno": 2, "error": "ENOENT (no such file or directory)"}],
		"threaded_forks": [{"pid": 4006, "via": "fork", "child": 4007, "threads": 4}],
		"strict_closed": 5, "vfork_fallbacks": {}}}`, out.String())

	out.Reset()
	r = NewReport(loadSample(t)[:1], []error{&LineError{2, assert.AnError}}, true)
	require.NoError(t, r.WriteJSON(&out))
	assert.JSONEq(t, `{"summary": {
		"events": 1, "processes": 2, "span_ns": 0,
		"created": {"posix_spawn": 1}, "created_total": 1,
		"spawn_latency_us": {"n": 1, "p50": 180, "p99": 180, "max": 180},
		"fork_latency_us": {"n": 0, "p50": 0, "p99": 0, "max": 0},
		"spawn_failures": [], "exec_failures": [], "threaded_forks": [], "strict_closed": 0, "vfork_fallbacks": {}},
		"tree": [{"pid": 4000, "children": [{"pid": 4001, "via": "posix_spawn",
			"programs": [{"path": "/bin/sh", "argv": ["/bin/sh", "-c", "cc -c a.c"]}]}]}],
		"errors": ["line 2: assert.AnError general error for testing"]}`, out.String())
}

func TestEmptyTrace(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, NewReport(nil, nil, true).WriteText(&out))
	assert.Equal(t, `events: 0 from 0 processes over 0s
processes created: 0
spawn latency: no samples
spawn failures: 0
exec failures: 0
forks in multi-threaded processes: 0
descriptors strict mode kept from children: 0
`, out.String())
}

func TestLatencyNearestRank(t *testing.T) {
	assert.Equal(t, Latency{}, latency(nil))
	assert.Equal(t, Latency{N: 1, P50: 7, P99: 7, Max: 7}, latency([]int64{7}))
	assert.Equal(t, Latency{N: 2, P50: 1, P99: 2, Max: 2}, latency([]int64{2, 1}))
	var d []int64
	for i := 200; i >= 1; i-- {
		d = append(d, int64(i))
	}
	assert.Equal(t, Latency{N: 200, P50: 100, P99: 198, Max: 200}, latency(d))
}

func treeText(t *testing.T, evs []Event) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, WriteTree(&b, Tree(evs)))
	return b.String()
}

func TestTreeExecOutcome(t *testing.T) {
	evs := parse(t,
		`"pid":10,"event":"spawn","via":"posix_spawn","child":11,"path":"/bin/sh","argv":["sh","-c","x"]}`,
		// 11 tries two paths: the first fails, the second works.
		`"pid":11,"event":"exec","via":"exec","path":"/a/x","argv":["x"]}`,
		`"pid":11,"event":"exec","via":"exec","errno":2,"path":"/a/x"}`,
		`"pid":11,"event":"exec","via":"exec","path":"/b/x","argv":["x"]}`,
		// x runs and execs once more; nothing follows, so it worked.
		`"pid":11,"event":"exec","via":"exec","path":"/bin/y","argv":["y","1"]}`,
		// 12: an attempt answered by a failure at the end of the trace.
		`"pid":10,"event":"spawn","via":"posix_spawnp","child":12,"path":"/bin/z"}`,
		`"pid":12,"event":"exec","via":"exec","path":"/bin/nope"}`,
		`"pid":12,"event":"exec","via":"exec","errno":13,"path":"/bin/nope"}`,
	)
	assert.Equal(t, `10 (program not in the trace)
  11 [posix_spawn] /bin/sh -c x => /b/x => /bin/y 1
  12 [posix_spawnp] /bin/z
`, treeText(t, evs))
	s := Summarize(evs)
	assert.Equal(t, []Failure{
		{PID: 11, Via: "exec", Path: "/a/x", Errno: 2, Error: "ENOENT (no such file or directory)"},
		{PID: 12, Via: "exec", Path: "/bin/nope", Errno: 13, Error: "EACCES (permission denied)"},
	}, s.ExecFailures)
}

func TestTreeExecFailureMatchesThread(t *testing.T) {
	// Thread 21 of 20 attempts an exec; thread 20 writes a line in
	// between; the failure answers thread 21's attempt.
	evs := parse(t,
		`"pid":20,"tid":21,"event":"exec","via":"exec","path":"/bin/a"}`,
		`"pid":20,"event":"fork","via":"fork","child":22,"threads":2}`,
		`"pid":20,"tid":21,"event":"exec","via":"exec","errno":8,"path":"/bin/a"}`,
		`"pid":20,"event":"exec","via":"exec","path":"/bin/b"}`,
		`"pid":20,"tid":21,"event":"exec","via":"exec","errno":2,"path":"/bin/c"}`,
	)
	// /bin/b stands: the last failure is thread 21's, which had no attempt pending.
	assert.Equal(t, "20 /bin/b\n  22 [fork] (program not in the trace)\n", treeText(t, evs))
}

func TestTreeForkInheritsProgramAtTheFork(t *testing.T) {
	evs := parse(t,
		`"pid":30,"event":"exec","via":"exec","path":"/bin/one"}`,
		`"pid":30,"event":"fork","via":"fork","child":31}`,
		`"pid":30,"event":"exec","via":"exec","path":"/bin/two"}`,
		`"pid":30,"event":"fork","via":"vfork","child":32}`,
		`"pid":31,"event":"fork","via":"fork","child":33}`,
		`"pid":32,"event":"exec","via":"exec","path":"/bin/three","argv":["three","it's"]}`,
	)
	assert.Equal(t, `30 /bin/one => /bin/two
  31 [fork] /bin/one
    33 [fork] /bin/one
  32 [vfork] /bin/two => /bin/three 'it'\''s'
`, treeText(t, evs))
}

func TestTreeChildBeforeParentLine(t *testing.T) {
	// The child writes before its parent reports creating it.
	evs := parse(t,
		`"pid":41,"event":"spawn","via":"system","child":42,"path":"/bin/sh"}`,
		`"pid":40,"event":"spawn","via":"posix_spawn","child":41,"path":"/bin/make"}`,
	)
	assert.Equal(t, "40 (program not in the trace)\n  41 [posix_spawn] /bin/make\n    42 [system] /bin/sh\n", treeText(t, evs))
}

func TestTreeDamagedTraces(t *testing.T) {
	// A cycle (50 creates 51, 51 creates 50), a pid created twice, a
	// process creating itself and failed creations: every pid shows once.
	evs := parse(t,
		`"pid":50,"event":"spawn","via":"posix_spawn","child":51,"path":"/a"}`,
		`"pid":51,"event":"spawn","via":"posix_spawn","child":50,"path":"/b"}`,
		`"pid":52,"event":"fork","via":"fork","child":51}`,
		`"pid":53,"event":"fork","via":"fork","child":53}`,
		`"pid":53,"event":"spawn","via":"popen","errno":24,"path":"/c"}`,
		`"pid":53,"event":"fork","via":"fork","errno":11}`,
	)
	assert.Equal(t, `50 (program not in the trace)
  51 [posix_spawn] /a
52 (program not in the trace)
53 (program not in the trace)
`, treeText(t, evs))
	s := Summarize(evs)
	assert.Equal(t, 4, s.Processes)
	assert.Equal(t, map[string]int{"posix_spawn": 2, "fork": 2}, s.Created)
	assert.Len(t, s.SpawnFailures, 1, "a failed fork is not a spawn failure")
}

func TestProgramString(t *testing.T) {
	for _, c := range []struct {
		p    Program
		want string
	}{
		{Program{}, "?"},
		{Program{Argv: []string{"ls", "-l"}}, "ls -l"},
		{Program{Path: "/bin/ls", Argv: []string{"ls", "", "a b", "$HOME", "x=1,y@z%+:/._-"}}, "/bin/ls '' 'a b' '$HOME' x=1,y@z%+:/._-"},
		{Program{Path: "/bin/echo", Argv: []string{"echo", "tab\there", "é"}}, `/bin/echo "tab\there" 'é'`},
		{Program{Path: "/p", Argv: []string{"p", "a"}, ArgvTruncated: true}, "/p a ..."},
	} {
		assert.Equal(t, c.want, c.p.String())
	}
}

func TestVforkAttempts(t *testing.T) {
	// The vfork child of 60 tries /a/x (fails), then /b/x; the one of 62
	// fails its only try. Both report under their parent's pid and tid.
	evs := parse(t,
		`"pid":60,"event":"spawn","via":"vfork","child":61,"path":"/a/x","dur_us":30}`,
		`"pid":60,"event":"spawn","via":"vfork","errno":2,"child":61,"path":"/a/x","dur_us":31}`,
		`"pid":60,"event":"spawn","via":"vfork","child":61,"path":"/b/x","argv":["x"],"dur_us":40}`,
		`"pid":61,"event":"fork","via":"fork","child":63}`,
		`"pid":60,"event":"spawn","via":"vfork","child":62,"path":"/c","dur_us":50}`,
		`"pid":60,"event":"spawn","via":"vfork","errno":13,"child":62,"path":"/c","dur_us":51}`,
	)
	s := Summarize(evs)
	assert.Equal(t, map[string]int{"vfork": 1, "fork": 1}, s.Created)
	assert.Equal(t, Latency{N: 1, P50: 40, P99: 40, Max: 40}, s.SpawnLatency)
	assert.Len(t, s.SpawnFailures, 2)
	assert.Equal(t, 3, s.Processes)
	assert.Equal(t, "60 (program not in the trace)\n  61 [vfork] /b/x\n    63 [fork] /b/x\n", treeText(t, evs))
}

func TestLongListsAreCut(t *testing.T) {
	var lines []string
	for i := 0; i < MaxListed+3; i++ {
		lines = append(lines, `"pid":70,"event":"exec","via":"exec","errno":2,"path":"/x"}`)
	}
	evs := parse(t, lines...)
	var out bytes.Buffer
	require.NoError(t, Summarize(evs).WriteText(&out))
	assert.Equal(t, MaxListed, strings.Count(out.String(), "pid 70 /x: ENOENT"))
	assert.Contains(t, out.String(), "exec failures: 23\n")
	assert.Contains(t, out.String(), "  ... and 3 more\n")
}

func TestSummaryCountsVforkFallbacks(t *testing.T) {
	lines := `{"v":1,"ts_ns":1,"pid":10,"ppid":1,"tid":10,"event":"fork","via":"vfork","errno":0,"child":11,"fallback":"exit"}
{"v":1,"ts_ns":2,"pid":10,"ppid":1,"tid":10,"event":"spawn","via":"vfork","errno":0,"child":12,"path":"/bin/true","fallback":"getpid"}
{"v":1,"ts_ns":3,"pid":10,"ppid":1,"tid":10,"event":"fork","via":"vfork","errno":0,"child":13,"fallback":"exit"}
`
	evs, errs := Decode(strings.NewReader(lines))
	require.Empty(t, errs)
	s := Summarize(evs)
	require.Equal(t, map[string]int{"exit": 2, "getpid": 1}, s.Fallbacks)
	var b strings.Builder
	require.NoError(t, s.WriteText(&b))
	require.Contains(t, b.String(), "lazy vfork real children: exit 2 getpid 1\n")

	_, errs = Decode(strings.NewReader(`{"v":1,"ts_ns":1,"pid":10,"ppid":1,"tid":10,"event":"fork","via":"fork","errno":0,"child":11,"fallback":"exit"}` + "\n"))
	require.NotEmpty(t, errs, "fallback only on via vfork")
}

func TestTreeShowsPlatformAndExit(t *testing.T) {
	st := func(n int) *int { return &n }
	evs := []Event{
		{V: 1, TsNs: 1, PID: 10, PPID: 1, TID: 10, Event: EventSpawn, Via: ViaPosixSpawn, Child: 11, Path: "/bin/static"},
		{V: 1, TsNs: 2, PID: 11, PPID: 10, TID: 11, Event: EventFork, Via: ViaFork, Child: 12, Platform: PlatformPtrace},
		{V: 1, TsNs: 3, PID: 12, PPID: 11, TID: 12, Event: EventExit, Via: ViaExit, Status: st(3 << 8), Platform: PlatformPtrace},
		{V: 1, TsNs: 4, PID: 11, PPID: 10, TID: 11, Event: EventExit, Via: ViaExit, Status: st(int(syscall.SIGSEGV) | 0x80), Platform: PlatformPtrace},
	}
	for i := range evs {
		require.NoError(t, evs[i].Validate())
	}
	var b strings.Builder
	require.NoError(t, WriteTree(&b, Tree(evs)))
	assert.Equal(t, "10 (program not in the trace)\n"+
		"  11 [posix_spawn] /bin/static (ptrace) killed by SIGSEGV (core dumped)\n"+
		"    12 [fork] /bin/static (ptrace) exit 3\n", b.String())
	s := Summarize(evs)
	assert.Equal(t, 2, s.CreatedTotal, "exit lines create nothing")
}
