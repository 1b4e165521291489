package spawn

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestCmdOutput(t *testing.T) {
	out, err := Command("echo", "hello", "world").Output()
	require.NoError(t, err)
	assert.Equal(t, "hello world\n", string(out))
}

func TestCmdStdinPipeAndEnvDir(t *testing.T) {
	dir := t.TempDir()
	c := Command("sh", "-c", `cat; echo "$FOO"; pwd`)
	c.Stdin = strings.NewReader("from stdin\n")
	c.Env = []string{"FOO=bar"}
	c.Dir = dir
	out, err := c.Output()
	require.NoError(t, err)
	assert.Equal(t, "from stdin\nbar\n"+dir+"\n", string(out))
}

func TestCmdExitErrorCarriesStderr(t *testing.T) {
	_, err := Command("sh", "-c", "echo oops >&2; exit 3").Output()
	var ee *ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 3, ee.ExitCode())
	assert.Equal(t, "oops\n", string(ee.Stderr))
	assert.Equal(t, "exit status 3", err.Error())
}

func TestCmdCombinedOutputKeepsOrder(t *testing.T) {
	out, err := Command("sh", "-c", "echo 1; echo 2 >&2; echo 3").CombinedOutput()
	require.NoError(t, err)
	assert.Equal(t, "1\n2\n3\n", string(out))
}

func TestCmdExtraFilesAndOverlap(t *testing.T) {
	// ExtraFiles whose descriptors fall on each other's targets must still
	// arrive at 3, 4, 5 in order.
	r1, w1, err := os.Pipe()
	require.NoError(t, err)
	defer r1.Close()
	f, err := os.CreateTemp(t.TempDir(), "x")
	require.NoError(t, err)
	defer f.Close()
	c := Command("sh", "-c", `echo one >&3; echo two >&4; test -e /proc/self/fd/5 && echo five-open || echo five-closed`)
	c.ExtraFiles = []*os.File{w1, f, nil}
	var out bytes.Buffer
	c.Stdout = &out
	require.NoError(t, c.Run())
	w1.Close()
	got, err := readAll(r1)
	require.NoError(t, err)
	assert.Equal(t, "one\n", got)
	data, err := os.ReadFile(f.Name())
	require.NoError(t, err)
	assert.Equal(t, "two\n", string(data))
	assert.Equal(t, "five-closed\n", out.String())
}

func readAll(f *os.File) (string, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(f)
	return b.String(), err
}

func TestCmdStdoutIsFile(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	require.NoError(t, err)
	defer f.Close()
	c := Command("echo", "direct")
	c.Stdout = f
	require.NoError(t, c.Run())
	data, err := os.ReadFile(f.Name())
	require.NoError(t, err)
	assert.Equal(t, "direct\n", string(data))
	assert.True(t, c.ProcessState.Success())
}

func TestCmdErrors(t *testing.T) {
	err := Command("forkless-no-such-program").Run()
	assert.Error(t, err)
	c := Command("/nonexistent/prog")
	err = c.Run()
	assert.ErrorIs(t, err, unix.ENOENT)
	assert.Nil(t, c.Process)
	c = Command("true")
	require.NoError(t, c.Start())
	assert.Error(t, c.Start())
	require.NoError(t, c.Wait())
	assert.Error(t, c.Wait())
	assert.Error(t, Command("true").Wait())
	c = Command("true")
	c.Stdout = os.Stdout
	_, err = c.Output()
	assert.Error(t, err)
	assert.Equal(t, "/bin/true x", strings.Replace(Command("true", "x").String(), "/usr/bin/true", "/bin/true", 1))
}

func TestCmdAttr(t *testing.T) {
	var a Attr
	require.NoError(t, a.SetFlags(FlagSetPgroup))
	c := Command("sh", "-c", `ps -o pgid= -p $$ 2>/dev/null || cut -d' ' -f5 /proc/$$/stat`)
	c.Attr = &a
	out, err := c.Output()
	require.NoError(t, err)
	assert.Equal(t, c.Process.Pid(), atoi(t, strings.TrimSpace(string(out))))
}

func atoi(t *testing.T, s string) int {
	n := 0
	for _, ch := range s {
		if ch < '0' || ch > '9' {
			t.Fatalf("not a number: %q", s)
		}
		n = n*10 + int(ch-'0')
	}
	return n
}

var _ = errors.New
