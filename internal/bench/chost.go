package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// cCommands maps the C-host engines to forkless-cbench's mechanism words.
// forkless-c is the host's posix_spawn too, in a host started with the
// preload library, which replaces glibc's posix_spawn.
var cCommands = map[string]string{
	EngineGlibcSpawn: "posix_spawn",
	EngineForklessC:  "posix_spawn",
	EngineVforkExec:  "vfork",
	EngineForkExec:   "fork",
}

// CHost is a running forkless-cbench, driven over its stdin and stdout.
type CHost struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	stderr *tailBuffer
	lib    string // the preloaded library, or ""
	loaded bool   // lib was seen mapped in the host
}

// cHostEnv is the environment of a C host: this process's, without
// LD_PRELOAD (the plain host must run glibc's functions, whatever the
// caller preloads), plus LD_PRELOAD=lib when lib is not empty.
func cHostEnv(lib string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LD_PRELOAD=") {
			env = append(env, kv)
		}
	}
	if lib != "" {
		env = append(env, "LD_PRELOAD="+lib)
	}
	return env
}

// StartCHost starts the forkless-cbench at path with rssMiB MiB resident.
// With lib not empty the host runs with that library in LD_PRELOAD, for
// forkless-c; otherwise it runs glibc's own functions. The host makes its
// memory resident before it answers its first command.
func StartCHost(path string, rssMiB int, lib string) (*CHost, error) {
	if lib != "" {
		var err error
		if lib, err = CheckLib(lib); err != nil {
			return nil, err
		}
	}
	cmd := exec.Command(path, strconv.Itoa(rssMiB))
	cmd.Env = cHostEnv(lib)
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	h := &CHost{cmd: cmd, in: in, out: bufio.NewReaderSize(out, 1<<16), stderr: &tailBuffer{max: 4096}, lib: lib}
	cmd.Stderr = h.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	return h, nil
}

// command returns the host's command line for n iterations of engine on
// target: "MECH TARGET N", or "MECH TARGET N ENV=VALUE" for a target with
// an environment entry.
func command(engine string, target Target, n int) (string, error) {
	word, ok := cCommands[engine]
	if !ok {
		return "", fmt.Errorf("engine %s does not run on the C host", engine)
	}
	if strings.ContainsAny(target.Path, "\n\r") {
		return "", fmt.Errorf("target %q: newline in path", target.Path)
	}
	line := fmt.Sprintf("%s %s %d", word, target.Path, n)
	switch len(target.Env) {
	case 0:
	case 1:
		kv := target.Env[0]
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" || strings.ContainsAny(kv, " \t\n\r") {
			return "", fmt.Errorf("target %s: environment entry %q: the C host takes NAME=VALUE without white space", target.Name, kv)
		}
		line += " " + kv
	default:
		return "", fmt.Errorf("target %s: the C host takes one environment entry, not %d", target.Name, len(target.Env))
	}
	return line + "\n", nil
}

// Batch asks the host for n iterations of engine on target. forkless-c
// runs only on a host started with the library, the other engines only on
// one started without it.
func (h *CHost) Batch(engine string, target Target, n int) ([]time.Duration, error) {
	if want := engine == EngineForklessC; want != (h.lib != "") {
		if want {
			return nil, fmt.Errorf("engine %s needs a C host started with the preload library", engine)
		}
		return nil, fmt.Errorf("engine %s needs a C host started without the preload library", engine)
	}
	cmd, err := command(engine, target, n)
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(h.in, cmd); err != nil {
		return nil, h.failure(err)
	}
	line, err := h.out.ReadString('\n')
	if err != nil {
		return nil, h.failure(err)
	}
	line = strings.TrimSpace(line)
	if msg, ok := strings.CutPrefix(line, "error"); ok {
		return nil, fmt.Errorf("forkless-cbench %s: %s", engine, strings.TrimSpace(msg))
	}
	fields := strings.Fields(line)
	if len(fields) != n {
		return nil, fmt.Errorf("forkless-cbench: %d samples for %d iterations", len(fields), n)
	}
	out := make([]time.Duration, n)
	for i, f := range fields {
		ns, err := strconv.ParseInt(f, 10, 64)
		if err != nil || ns < 0 {
			return nil, fmt.Errorf("forkless-cbench: bad sample %q", f)
		}
		out[i] = time.Duration(ns)
	}
	if err := h.checkLoaded(); err != nil {
		return nil, err
	}
	return out, nil
}

// checkLoaded makes sure, once, that the library of a preloading host is
// mapped in it: the dynamic loader ignores an LD_PRELOAD entry it cannot
// load (wrong architecture, say) with a mere warning, and the host would
// then measure glibc under forkless-c's name. The host has answered a
// command, so the loader is done with it.
func (h *CHost) checkLoaded() error {
	if h.lib == "" || h.loaded {
		return nil
	}
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", h.cmd.Process.Pid))
	if err != nil {
		return fmt.Errorf("forkless-cbench: checking that %s is loaded: %w", h.lib, err)
	}
	want := h.lib
	if real, err := filepath.EvalSymlinks(want); err == nil {
		want = real
	}
	for _, l := range strings.Split(string(maps), "\n") {
		if strings.HasSuffix(l, " "+want) {
			h.loaded = true
			return nil
		}
	}
	msg := strings.TrimSpace(h.stderr.String())
	if msg == "" {
		msg = "no message"
	}
	return fmt.Errorf("forkless-cbench: LD_PRELOAD=%s did not load the library (%s)", h.lib, msg)
}

// failure explains a broken pipe to the host with what it said on stderr.
func (h *CHost) failure(err error) error {
	if errors.Is(err, io.EOF) {
		err = errors.New("exited early")
	}
	if msg := strings.TrimSpace(h.stderr.String()); msg != "" {
		return fmt.Errorf("forkless-cbench: %v: %s", err, msg)
	}
	return fmt.Errorf("forkless-cbench: %v", err)
}

// Close ends the host (EOF on its stdin) and waits for it.
func (h *CHost) Close() error {
	h.in.Close()
	err := h.cmd.Wait()
	if err != nil {
		return h.failure(err)
	}
	return nil
}

// cMechanism returns the mechanism of a C-host engine, run by h.
func cMechanism(engine string, h *CHost) (Mechanism, error) {
	if _, ok := cCommands[engine]; !ok {
		return Mechanism{}, fmt.Errorf("engine %s does not run on the C host", engine)
	}
	return Mechanism{
		Spec: Spec{engine, HostC},
		Batch: func(target Target, n int) ([]time.Duration, error) {
			return h.Batch(engine, target, n)
		},
	}, nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
