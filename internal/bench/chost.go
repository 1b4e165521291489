package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// cCommands maps the C-host engines to forkless-cbench's mechanism words.
var cCommands = map[string]string{
	EngineGlibcSpawn: "posix_spawn",
	EngineVforkExec:  "vfork",
	EngineForkExec:   "fork",
}

// CHost is a running forkless-cbench, driven over its stdin and stdout.
type CHost struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	stderr *tailBuffer
}

// StartCHost starts the forkless-cbench at path with rssMiB MiB resident.
// The host makes its memory resident before it answers its first command.
func StartCHost(path string, rssMiB int) (*CHost, error) {
	cmd := exec.Command(path, strconv.Itoa(rssMiB))
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	h := &CHost{cmd: cmd, in: in, out: bufio.NewReaderSize(out, 1<<16), stderr: &tailBuffer{max: 4096}}
	cmd.Stderr = h.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	return h, nil
}

// Batch asks the host for n iterations of engine on target.
func (h *CHost) Batch(engine, target string, n int) ([]time.Duration, error) {
	word, ok := cCommands[engine]
	if !ok {
		return nil, fmt.Errorf("engine %s does not run on the C host", engine)
	}
	if strings.ContainsAny(target, "\n\r") {
		return nil, fmt.Errorf("target %q: newline in path", target)
	}
	if _, err := fmt.Fprintf(h.in, "%s %s %d\n", word, target, n); err != nil {
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
	return out, nil
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
		Batch: func(target string, n int) ([]time.Duration, error) {
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
