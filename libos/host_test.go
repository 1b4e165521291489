package libos

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/forkless/forkless/internal/testbin"
	"github.com/forkless/forkless/internal/trace"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestMain dispatches to the guard (the test binary is the guard's
// executable) and to the helper that hosts a tree for the lifetime test.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == GuardArg {
		os.Exit(GuardMain(os.Args[1:]))
	}
	if os.Getenv("LIBOS_TEST_HOSTPROC") != "" {
		os.Exit(hostProc(os.Getenv("LIBOS_TEST_HOSTPROC") == "nocgroup"))
	}
	os.Exit(m.Run())
}

// events decodes out, which must hold only good lines.
func events(t *testing.T, out *trace.Buffer) []trace.Event {
	t.Helper()
	evs, errs := out.Decode()
	require.Empty(t, errs)
	return evs
}

func newTestHost(t *testing.T, p Policy, w *trace.Buffer) *Host {
	t.Helper()
	cfg := Config{Policy: p, NoGuard: true, NoCgroup: true, Dir: t.TempDir()}
	if w != nil {
		cfg.Trace = w
	}
	h, err := NewHost(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { h.Close() })
	return h
}

func st(v int) *int { return &v }

func TestTableFromEvents(t *testing.T) {
	var out trace.Buffer
	h := newTestHost(t, Policy{}, &out)
	// Real, live processes so that the watcher has something to watch
	// (not this one: Close kills the tree).
	sleeper := func() int {
		cmd := exec.Command("sleep", "30")
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd.Process.Pid
	}
	self, child := sleeper(), sleeper()

	h.Root(self, "/bin/root", []string{"root"}, "")
	fds := []trace.FD{{FD: 0, Target: "/dev/null", Flags: 0100000}, {FD: 5, Target: "pipe:[1]", Flags: 02000001}}
	h.Record(trace.Event{V: 1, TsNs: 10, PID: self, PPID: 1, TID: self, Event: trace.EventFork, Via: trace.ViaFork, Child: child, FDs: fds})
	h.Record(trace.Event{V: 1, TsNs: 20, PID: child, PPID: self, TID: child, Event: trace.EventExec, Via: trace.ViaExec, Path: "/bin/sleep", Argv: []string{"sleep", "30"}, FDs: fds[:1]})
	h.Record(trace.Event{V: 1, TsNs: 21, PID: child, PPID: self, TID: child, Event: trace.EventExec, Via: trace.ViaExec, Path: "/bin/nope", Argv: []string{"nope"}})
	h.Record(trace.Event{V: 1, TsNs: 22, PID: child, PPID: self, TID: child, Event: trace.EventExec, Via: trace.ViaExec, Path: "/bin/nope", Errno: 2})
	h.Record(trace.Event{V: 1, TsNs: 30, PID: self, PPID: 1, TID: self, Event: trace.EventSpawn, Via: trace.ViaPosixSpawn, Errno: 1, Path: "/x"})

	tab := h.Table()
	require.Len(t, tab, 2)
	assert.Equal(t, ViaRoot, tab[0].Via)
	assert.Equal(t, trace.PlatformPreload, tab[0].Platform)
	c := tab[1]
	assert.Equal(t, child, c.PID)
	assert.Equal(t, self, c.PPID)
	assert.Equal(t, trace.ViaFork, c.Via)
	assert.Equal(t, fds, c.ForkFDs)
	assert.Equal(t, "/bin/sleep", c.Path, "the failed exec was taken back")
	require.Len(t, c.Execs, 1)
	assert.Equal(t, []string{"sleep", "30"}, c.Execs[0].Argv)
	assert.Nil(t, c.Status)
	assert.Contains(t, h.Live(), child)

	// The exit status arrives from the reaper.
	h.Record(trace.Event{V: 1, TsNs: 40, PID: child, PPID: self, TID: self, Event: trace.EventExit, Via: trace.ViaExit, Status: st(9)})
	tab = h.Table()
	require.NotNil(t, tab[1].Status)
	assert.Equal(t, 9, *tab[1].Status)
	assert.Equal(t, int64(40), tab[1].ExitNs)
	assert.NotContains(t, h.Live(), child)

	// Every event went to the trace, in order, as valid lines.
	evs := events(t, &out)
	require.Len(t, evs, 6)
	assert.Equal(t, trace.EventExit, evs[5].Event)

	var tj struct {
		V         int       `json:"v"`
		HostPID   int       `json:"host_pid"`
		Processes []Process `json:"processes"`
	}
	var b bytes.Buffer
	require.NoError(t, h.WriteTable(&b))
	require.NoError(t, json.Unmarshal(b.Bytes(), &tj))
	assert.Equal(t, 1, tj.V)
	assert.Equal(t, os.Getpid(), tj.HostPID)
	assert.Len(t, tj.Processes, 2)
}

func TestWatcherLearnsExits(t *testing.T) {
	h := newTestHost(t, Policy{}, nil)
	cmd := exec.Command("sleep", "30")
	require.NoError(t, cmd.Start())
	pid := cmd.Process.Pid
	h.Record(trace.Event{V: 1, TsNs: 1, PID: os.Getpid(), PPID: 1, TID: os.Getpid(), Event: trace.EventSpawn, Via: trace.ViaPosixSpawn, Child: pid, Path: "/bin/sleep"})
	assert.Contains(t, h.Live(), pid)
	cmd.Process.Kill()
	cmd.Wait() // reaped here: nobody reports the status
	require.Eventually(t, func() bool { return !contains(h.Live(), pid) }, 10*time.Second, 5*time.Millisecond)
	tab := h.Table()
	assert.NotZero(t, tab[len(tab)-1].ExitNs)
	assert.Nil(t, tab[len(tab)-1].Status)
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestAdmitSettle(t *testing.T) {
	h := newTestHost(t, Policy{MaxProcs: 3}, nil)
	cmd := exec.Command("sleep", "30")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	h.Root(cmd.Process.Pid, "/bin/sleep", nil, "")
	assert.True(t, h.Admit(1))
	assert.True(t, h.Admit(1))
	assert.False(t, h.Admit(2), "1 live + 2 reserved")
	h.Settle(1)
	assert.True(t, h.Admit(2))
	h.Settle(7) // no reservation: no effect
	assert.False(t, h.Admit(2))
	h.Settle(1)
	h.Settle(2)
	h.Settle(2) // once too often: ignored
	assert.True(t, h.Admit(3))
	assert.True(t, h.Admit(3))
	assert.False(t, h.Admit(3))
}

func TestAdmitConcurrent(t *testing.T) {
	const limit = 5
	h := newTestHost(t, Policy{MaxProcs: limit}, nil)
	var mu sync.Mutex
	held, peak := 0, 0
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				if !h.Admit(g + 1) {
					continue
				}
				mu.Lock()
				held++
				peak = max(peak, held)
				mu.Unlock()
				mu.Lock()
				held--
				mu.Unlock()
				h.Settle(g + 1)
			}
		}()
	}
	wg.Wait()
	assert.LessOrEqual(t, peak, limit)
	assert.Greater(t, peak, 0)
	// Everything was released: the whole limit is free again.
	for range limit {
		assert.True(t, h.Admit(99))
	}
	assert.False(t, h.Admit(99))
}

func dial(t *testing.T, h *Host) *net.UnixConn {
	t.Helper()
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: h.Socket(), Net: "unixpacket"})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func request(t *testing.T, c *net.UnixConn, typ uint16, pid int) header {
	t.Helper()
	_, err := c.Write(header{Magic: ProtoMagic, Type: typ, PID: int32(pid)}.bytes(nil))
	require.NoError(t, err)
	buf := make([]byte, maxPacket)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(buf)
	require.NoError(t, err)
	m, ok := parseHeader(buf[:n])
	require.True(t, ok)
	return m
}

func TestSocketClient(t *testing.T) {
	var out trace.Buffer
	h := newTestHost(t, Policy{MaxProcs: 2}, &out)
	assert.Contains(t, h.Env(), EnvHost+"="+h.Socket())
	assert.Contains(t, h.Env(), "FORKLESS_MAX_PROCS=2")
	c := dial(t, h)
	me := os.Getpid()
	good := fmt.Sprintf(`{"v":1,"ts_ns":5,"pid":%d,"ppid":1,"tid":%d,"event":"exec","via":"exec","errno":0,"path":"/bin/x","fds":[{"fd":1,"target":"/dev/null","flags":32769}]}`+"\n", me, me)
	for _, bad := range []string{
		`{"v":2}`, `{not json`, `{"v":1,"ts_ns":5,"pid":-1,"ppid":1,"tid":1,"event":"exec","via":"exec","errno":0}`,
		"\x01\x02", "FLH1xxxxxxxxxxxxxxxxxxxxxx",
	} {
		_, err := c.Write([]byte(bad))
		require.NoError(t, err)
	}
	_, err := c.Write([]byte(good))
	require.NoError(t, err)

	// Requests are answered in order, so by the reply everything before
	// was handled.
	m := request(t, c, MsgAdmit, me)
	assert.Equal(t, uint16(MsgAdmitReply), m.Type)
	assert.Equal(t, int32(1), m.Arg)
	assert.Equal(t, int64(5), h.BadLines())
	evs := events(t, &out)
	require.Len(t, evs, 1)
	assert.Equal(t, "/bin/x", evs[0].Path)
	assert.Equal(t, 32769, evs[0].FDs[0].Flags)

	assert.Equal(t, int32(1), request(t, c, MsgAdmit, me).Arg)
	assert.Equal(t, int32(0), request(t, c, MsgAdmit, me).Arg, "at the limit")

	// A second client is refused until the first's reservations go: its
	// connection closing releases them.
	c2 := dial(t, h)
	assert.Equal(t, int32(0), request(t, c2, MsgAdmit, me).Arg)
	c.Close()
	require.Eventually(t, func() bool { return request(t, c2, MsgAdmit, me).Arg == 1 }, 10*time.Second, 10*time.Millisecond)
	_, err = c2.Write(header{Magic: ProtoMagic, Type: MsgSettle, PID: int32(me)}.bytes(nil))
	require.NoError(t, err)
}

type fakeAdopter struct {
	mu   sync.Mutex
	pids []int
}

func (f *fakeAdopter) Adopt(pid int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pids = append(f.pids, pid)
	return nil
}

func (f *fakeAdopter) Filter() []byte { return make([]byte, 8) }

func TestAdoptRequest(t *testing.T) {
	h := newTestHost(t, Policy{}, nil)
	c := dial(t, h)
	me := os.Getpid()
	assert.Equal(t, int32(0), request(t, c, MsgAdopt, me).Arg, "no adopter")
	a := &fakeAdopter{}
	h.SetAdopter(a)
	assert.Equal(t, int32(0), request(t, c, MsgAdopt, me+1).Arg, "not the sender's pid")
	_, err := c.Write(header{Magic: ProtoMagic, Type: MsgAdopt, PID: int32(me)}.bytes(nil))
	require.NoError(t, err)
	buf := make([]byte, maxPacket)
	n, err := c.Read(buf)
	require.NoError(t, err)
	m, ok := parseHeader(buf[:n])
	require.True(t, ok)
	assert.Equal(t, int32(1), m.Arg)
	assert.Equal(t, ProtoHeader+8, n, "the filter follows the header")
	assert.Equal(t, []int{me}, a.pids)
}

func TestCloseRemovesSocket(t *testing.T) {
	h, err := NewHost(Config{NoGuard: true, NoCgroup: true})
	require.NoError(t, err)
	sock := h.Socket()
	assert.FileExists(t, sock)
	require.NoError(t, h.Close())
	assert.NoFileExists(t, sock)
	require.NoError(t, h.Close())
}

// hostProc is the process the lifetime test kills: it hosts a tree of
// sh and two sleeps (one in its own session, as a daemon would), prints
// their pids, and waits to be killed.
func hostProc(noCgroup bool) int {
	h, err := NewHost(Config{NoCgroup: noCgroup, GuardExe: os.Args[0]})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	cmd := exec.Command("sh", "-c", `setsid sleep 300 & echo $!; sleep 300 & echo $!; echo $$; wait`)
	cmd.Stdout = os.Stdout
	if fd := h.CgroupFD(); fd >= 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	}
	if err := cmd.Start(); err != nil {
		fmt.Println("error", err)
		return 1
	}
	h.Root(cmd.Process.Pid, "/bin/sh", cmd.Args, "")
	fmt.Println("cgroup", h.CgroupPath())
	select {}
}

func testLifetime(t *testing.T, mode string) {
	if os.Geteuid() != 0 && mode == "cgroup" {
		t.Skip("the cgroup needs root")
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "LIBOS_TEST_HOSTPROC="+mode)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	sc := bufio.NewScanner(out)
	var pids []int
	cg := ""
	for len(pids) < 3 || cg == "" {
		require.True(t, sc.Scan(), "the host process ended early")
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "cgroup"); ok {
			cg = strings.TrimSpace(rest)
			if cg == "" {
				cg = "none"
			}
			continue
		}
		pid, err := strconv.Atoi(line)
		require.NoError(t, err, line)
		pids = append(pids, pid)
	}
	if cg == "none" {
		cg = ""
	}
	require.Len(t, pids, 3)
	if mode == "cgroup" {
		require.NotEmpty(t, cg, "a cgroup was made")
	}
	for _, pid := range pids {
		require.True(t, testbin.Alive(pid), "pid %d", pid)
	}
	if mode == "nocgroup" {
		// The guard learns the tree by polling /proc.
		time.Sleep(500 * time.Millisecond)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	cmd.Wait()
	for _, pid := range pids {
		assert.Eventually(t, func() bool { return !testbin.Alive(pid) }, 20*time.Second, 10*time.Millisecond, "pid %d survived the host", pid)
	}
	if cg != "" {
		assert.Eventually(t, func() bool { _, err := os.Stat(cg); return os.IsNotExist(err) }, 20*time.Second, 10*time.Millisecond, "cgroup removed")
	}
}

func TestLifetimeCgroup(t *testing.T)   { testLifetime(t, "cgroup") }
func TestLifetimeNoCgroup(t *testing.T) { testLifetime(t, "nocgroup") }

// Close ends what is left of the tree: with a cgroup, even a process the
// host never heard of (a daemon in its own session); without one, the
// processes it watches.
func TestCloseEndsTheTree(t *testing.T) {
	for _, withCgroup := range []bool{true, false} {
		t.Run(map[bool]string{true: "cgroup", false: "pidfds"}[withCgroup], func(t *testing.T) {
			if withCgroup && os.Geteuid() != 0 {
				t.Skip("the cgroup needs root")
			}
			h, err := NewHost(Config{NoGuard: true, NoCgroup: !withCgroup, Dir: t.TempDir()})
			require.NoError(t, err)
			if withCgroup {
				require.GreaterOrEqual(t, h.CgroupFD(), 0, "a cgroup was made")
				// As a host run inside the tree leaves it when killed.
				require.NoError(t, os.Mkdir(h.cg.path+"/forkless-1-1", 0o755))
			}
			cmd := exec.Command("sh", "-c", `setsid sleep 300 & echo $!; exec sleep 300`)
			out, err := cmd.StdoutPipe()
			require.NoError(t, err)
			if fd := h.CgroupFD(); fd >= 0 {
				cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
			}
			require.NoError(t, cmd.Start())
			h.Root(cmd.Process.Pid, "/bin/sh", cmd.Args, "")
			sc := bufio.NewScanner(out)
			require.True(t, sc.Scan())
			daemon, err := strconv.Atoi(sc.Text())
			require.NoError(t, err)
			require.True(t, testbin.Alive(daemon))
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()

			require.NoError(t, h.Close())
			<-done // the root was killed
			assert.False(t, testbin.Alive(cmd.Process.Pid))
			if withCgroup {
				assert.Eventually(t, func() bool { return !testbin.Alive(daemon) }, 20*time.Second, 10*time.Millisecond, "the daemon survived")
				_, err := os.Stat(h.cg.path)
				assert.True(t, os.IsNotExist(err), "the tree's cgroup is removed, with the one inside it")
			} else {
				unix.Kill(daemon, unix.SIGKILL) // unknown to the host: not its to end
			}
		})
	}
}

// TestCloseReadsWhatWasSent: lines a process sent just before it ended
// reach the trace even when the host closes at once, before it accepted
// or read the connections (a tree's last processes end right before
// forkless run closes its host).
func TestCloseReadsWhatWasSent(t *testing.T) {
	var out trace.Buffer
	h := newTestHost(t, Policy{}, &out)
	const n = 20
	for i := range n {
		c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: h.Socket(), Net: "unixpacket"})
		require.NoError(t, err)
		line := fmt.Sprintf(`{"v":1,"ts_ns":%d,"pid":%d,"ppid":1,"tid":%d,"event":"exit","via":"exit","errno":0,"status":0}`, i+1, 1000+i, 1000+i)
		_, err = c.Write([]byte(line))
		require.NoError(t, err)
		require.NoError(t, c.Close())
	}
	require.NoError(t, h.Close())
	assert.Len(t, events(t, &out), n, "every line sent before Close is in the trace")
}

// TestCgroupStaleNames: an empty cgroup left by a host that no longer runs
// is removed, and a name still taken is skipped, so a host whose pid was
// used by a killed host still gets its cgroup.
func TestCgroupStaleNames(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the cgroup needs root")
	}
	mnt, own := cgroup2Mount(), ownCgroup2()
	if mnt == "" || own == "" {
		t.Skip("no cgroup v2")
	}
	parent := mnt + own
	gone := exec.Command("true")
	require.NoError(t, gone.Run())
	stale := fmt.Sprintf("%s/forkless-%d-1", parent, gone.Process.Pid)
	require.NoError(t, os.Mkdir(stale, 0o755))
	nested := stale + "/forkless-1-1" // left by a host that ran inside it
	require.NoError(t, os.Mkdir(nested, 0o755))
	t.Cleanup(func() { unix.Rmdir(nested); unix.Rmdir(stale) })
	taken := fmt.Sprintf("%s/forkless-%d-%d", parent, os.Getpid(), cgroupSeq.Load()+1)
	require.NoError(t, os.Mkdir(taken, 0o755))
	t.Cleanup(func() { unix.Rmdir(taken) })

	c := newCgroup(os.Getpid())
	require.NotNil(t, c, "a cgroup despite the taken name")
	defer c.remove()
	assert.NotEqual(t, taken, c.path)
	_, err := os.Stat(stale)
	assert.True(t, os.IsNotExist(err), "the stale cgroup was removed")
	_, err = os.Stat(taken)
	assert.NoError(t, err, "a cgroup named for a live pid stays")
}
