package spawn

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Cmd is an os/exec-like command built on Spawn: switching from os/exec
// is a matter of calling spawn.Command instead of exec.Command.
type Cmd struct {
	Path       string    // the program; relative paths are taken from Dir
	Args       []string  // argv, including the program name
	Env        []string  // nil means os.Environ()
	Dir        string    // the child's working directory; empty: the caller's
	Stdin      io.Reader // nil means /dev/null
	Stdout     io.Writer // nil means /dev/null
	Stderr     io.Writer // nil means /dev/null
	ExtraFiles []*os.File
	Attr       *Attr // process attributes (process group, session, masks, ...)

	Process      *Process
	ProcessState *State
	Err          error // a lookup error from Command

	closeAfterStart []io.Closer
	closeAfterWait  []io.Closer
	copiers         sync.WaitGroup
	copyErrs        chan error
}

// Command returns a Cmd for name with args. A name without a slash is
// looked up in PATH as exec.LookPath does.
func Command(name string, arg ...string) *Cmd {
	c := &Cmd{Path: name, Args: append([]string{name}, arg...)}
	if filepath.Base(name) == name {
		lp, err := exec.LookPath(name)
		if lp != "" {
			c.Path = lp
		}
		c.Err = err
	}
	return c
}

// String returns the command line, for messages.
func (c *Cmd) String() string {
	return strings.Join(append([]string{c.Path}, c.Args[min(1, len(c.Args)):]...), " ")
}

// ExitError is returned by Wait and Run when the command did not succeed.
type ExitError struct {
	*State
	Stderr []byte // set by Output when Stderr was not redirected
}

func (e *ExitError) Error() string { return e.State.String() }

// Start starts the command without waiting for it.
func (c *Cmd) Start() error {
	if c.Err != nil {
		return c.Err
	}
	if c.Process != nil {
		return errors.New("spawn: already started")
	}
	c.copyErrs = make(chan error, 3)
	fa, err := c.fileActions()
	if err != nil {
		c.closeAll(c.closeAfterStart)
		c.closeAll(c.closeAfterWait)
		return err
	}
	env := c.Env
	if env == nil {
		env = os.Environ()
	}
	p, err := Spawn(c.Path, fa, c.Attr, c.Args, env)
	c.closeAll(c.closeAfterStart)
	if err != nil {
		c.closeAll(c.closeAfterWait)
		return err
	}
	c.Process = p
	return nil
}

// fileActions maps stdin, stdout, stderr and ExtraFiles onto 0, 1, 2, 3...
func (c *Cmd) fileActions() (*FileActions, error) {
	n := 3 + len(c.ExtraFiles)
	src := make([]*os.File, 0, n)
	for i, std := range []any{c.Stdin, c.Stdout, c.Stderr} {
		if i == 2 && sameWriter(c.Stdout, c.Stderr) {
			src = append(src, src[1]) // one pipe keeps the two streams in order
			continue
		}
		f, err := c.stdFile(i, std)
		if err != nil {
			return nil, err
		}
		src = append(src, f)
	}
	src = append(src, c.ExtraFiles...)

	fa := &FileActions{}
	if c.Dir != "" {
		if err := fa.AddChdir(c.Dir); err != nil {
			return nil, err
		}
	}
	for target, f := range src {
		if f == nil {
			if err := fa.AddClose(target); err != nil {
				return nil, err
			}
			continue
		}
		fd := int(f.Fd())
		// A source below n that is not its own target could be
		// overwritten by an earlier dup2: move it out of the way first,
		// in the parent, close-on-exec.
		if fd < n && fd != target {
			nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, n)
			if err != nil {
				return nil, fmt.Errorf("spawn: dup %d: %w", fd, err)
			}
			moved := os.NewFile(uintptr(nfd), f.Name())
			c.closeAfterStart = append(c.closeAfterStart, moved)
			fd = nfd
		}
		if err := fa.AddDup2(fd, target); err != nil {
			return nil, err
		}
	}
	return fa, nil
}

// stdFile returns the file for standard descriptor i, making a pipe and a
// copier goroutine for a reader or writer that is not a file.
func (c *Cmd) stdFile(i int, std any) (*os.File, error) {
	if f, ok := std.(*os.File); ok && f != nil {
		return f, nil
	}
	if std == nil || isNilPointer(std) {
		return c.devNull(i)
	}
	if i == 0 {
		v := std.(io.Reader)
		pr, pw, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		c.closeAfterStart = append(c.closeAfterStart, pr)
		c.closeAfterWait = append(c.closeAfterWait, pw)
		c.copiers.Add(1)
		go func() {
			defer c.copiers.Done()
			_, err := io.Copy(pw, v)
			if cerr := pw.Close(); err == nil && !errors.Is(cerr, os.ErrClosed) {
				err = cerr
			}
			c.copyErr(ignorePipeErr(err))
		}()
		return pr, nil
	}
	v := std.(io.Writer)
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	c.closeAfterStart = append(c.closeAfterStart, pw)
	c.closeAfterWait = append(c.closeAfterWait, pr)
	c.copiers.Add(1)
	go func() {
		defer c.copiers.Done()
		_, err := io.Copy(v, pr)
		pr.Close()
		c.copyErr(err)
	}()
	return pw, nil
}

// isNilPointer reports whether v holds a typed nil pointer, such as a nil
// *os.File or *bytes.Buffer stored in an interface.
func isNilPointer(v any) bool {
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

func (c *Cmd) devNull(i int) (*os.File, error) {
	flag := os.O_RDONLY
	if i > 0 {
		flag = os.O_WRONLY
	}
	f, err := os.OpenFile(os.DevNull, flag, 0)
	if err != nil {
		return nil, err
	}
	c.closeAfterStart = append(c.closeAfterStart, f)
	return f, nil
}

func (c *Cmd) copyErr(err error) {
	if err != nil {
		select {
		case c.copyErrs <- err:
		default:
		}
	}
}

// ignorePipeErr drops the error of writing stdin to a child that exited.
func ignorePipeErr(err error) error {
	if errors.Is(err, unix.EPIPE) || errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}

func (c *Cmd) closeAll(cs []io.Closer) {
	for _, cl := range cs {
		cl.Close()
	}
}

// Wait waits for the command to exit and for its I/O copying to finish.
func (c *Cmd) Wait() error {
	if c.Process == nil {
		return errors.New("spawn: not started")
	}
	if c.ProcessState != nil {
		return errors.New("spawn: Wait was already called")
	}
	st, err := c.Process.Wait()
	if err != nil {
		return err
	}
	c.ProcessState = st
	// The copiers end when the child's ends of the pipes close.
	c.copiers.Wait()
	c.closeAll(c.closeAfterWait)
	var copyErr error
	select {
	case copyErr = <-c.copyErrs:
	default:
	}
	if !st.Success() {
		return &ExitError{State: st}
	}
	return copyErr
}

// Run starts the command and waits for it.
func (c *Cmd) Run() error {
	if err := c.Start(); err != nil {
		return err
	}
	return c.Wait()
}

// Output runs the command and returns its standard output. If Stderr is
// nil, a failed command's ExitError carries its standard error.
func (c *Cmd) Output() ([]byte, error) {
	if c.Stdout != nil {
		return nil, errors.New("spawn: Stdout already set")
	}
	var out, errb bytes.Buffer
	c.Stdout = &out
	captureErr := c.Stderr == nil
	if captureErr {
		c.Stderr = &errb
	}
	err := c.Run()
	var ee *ExitError
	if captureErr && errors.As(err, &ee) {
		ee.Stderr = errb.Bytes()
	}
	return out.Bytes(), err
}

// CombinedOutput runs the command and returns its standard output and
// standard error together.
func (c *Cmd) CombinedOutput() ([]byte, error) {
	if c.Stdout != nil || c.Stderr != nil {
		return nil, errors.New("spawn: Stdout or Stderr already set")
	}
	var b syncBuffer
	c.Stdout = &b
	c.Stderr = &b
	err := c.Run()
	return b.Bytes(), err
}

// syncBuffer lets two copier goroutines write one buffer.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Bytes()
}

// sameWriter reports whether stdout and stderr are the same comparable writer.
func sameWriter(a, b io.Writer) (same bool) {
	if a == nil || b == nil {
		return false
	}
	defer func() {
		if recover() != nil {
			same = false // incomparable dynamic types
		}
	}()
	return a == b
}
