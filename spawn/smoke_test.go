package spawn

import (
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestChildStateLayout(t *testing.T) {
	var st childState
	require.EqualValues(t, 0, unsafe.Offsetof(st.ops))
	require.EqualValues(t, 8, unsafe.Offsetof(st.nops))
	require.EqualValues(t, 16, unsafe.Offsetof(st.errno))
	require.EqualValues(t, 24, unsafe.Offsetof(st.step))
	require.EqualValues(t, 32, unsafe.Offsetof(st.r))
	require.EqualValues(t, 40, unsafe.Offsetof(st.eacces))
	require.EqualValues(t, 48, unsafe.Offsetof(st.lasterr))
	require.EqualValues(t, 56, unsafe.Offsetof(st.blockall))
	require.EqualValues(t, 64, unsafe.Offsetof(st.oldmask))
	var o op
	require.EqualValues(t, 80, unsafe.Sizeof(o))
	require.EqualValues(t, 64, unsafe.Offsetof(o.ctl))
	require.EqualValues(t, 72, unsafe.Offsetof(o.step))
	var ca cloneArgs
	require.EqualValues(t, 88, unsafe.Sizeof(ca))
}

func TestSmoke(t *testing.T) {
	p, err := Spawn("/bin/true", nil, nil, []string{"true"}, nil)
	require.NoError(t, err)
	st, err := p.Wait()
	require.NoError(t, err)
	require.True(t, st.Success(), st.String())

	p, err = Spawn("/bin/sh", nil, nil, []string{"sh", "-c", "exit 7"}, nil)
	require.NoError(t, err)
	st, err = p.Wait()
	require.NoError(t, err)
	require.Equal(t, 7, st.ExitCode())

	_, err = Spawn("/nonexistent", nil, nil, []string{"x"}, nil)
	require.ErrorIs(t, err, unix.ENOENT)
	t.Log(err)

	var fa FileActions
	require.NoError(t, fa.AddOpen(1, "/nonexistent/dir/file", unix.O_RDONLY, 0))
	_, err = Spawn("/bin/true", &fa, nil, []string{"true"}, nil)
	require.ErrorIs(t, err, unix.ENOENT)
	t.Log(err)

	p, err = SpawnP("true", nil, nil, []string{"true"}, nil)
	require.NoError(t, err)
	st, err = p.Wait()
	require.NoError(t, err)
	require.True(t, st.Success())
}
