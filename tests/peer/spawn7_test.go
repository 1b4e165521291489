package peer

// After glibc's posix/tst-spawn7.c: the child starts with every caught
// signal reset to SIG_DFL, every ignored one still ignored, and the
// signals of a SETSIGDEF set at SIG_DFL even when ignored. glibc's
// internal signals 32 and 33 are set to SIG_IGN unless SETSIGDEF names
// them. Dispositions belong to the whole process, so a helper process
// changes them.

import (
	"os/signal"
	"testing"
	"unsafe"

	"github.com/forkless/forkless/spawn"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func init() { helpers["spawn7/dispositions"] = spawn7Dispositions }

func TestSpawnSignalDispositions(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e Engine) {
		runHelper(t, e, "spawn7/dispositions", helperOpts{})
	})
}

// dispositions reads this process's handlers of signals 1..64 with the
// raw system call (glibc's wrapper hides 32 and 33) and returns the
// ignored and the caught signals.
func dispositions(t TB) (ignored, caught []int) {
	t.Helper()
	for sig := 1; sig <= 64; sig++ {
		var act [4]uint64 // struct kernel_sigaction; the handler comes first
		_, _, errno := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), 0,
			uintptr(unsafe.Pointer(&act[0])), 8, 0, 0)
		require.Zero(t, errno, "rt_sigaction(%d)", sig)
		switch act[0] {
		case 0: // SIG_DFL
		case 1: // SIG_IGN
			ignored = append(ignored, sig)
		default:
			caught = append(caught, sig)
		}
	}
	return ignored, caught
}

// threadMask returns the calling thread's signal mask.
func threadMask(t TB) []int {
	t.Helper()
	var set uint64
	_, _, errno := unix.RawSyscall6(unix.SYS_RT_SIGPROCMASK, unix.SIG_BLOCK, 0,
		uintptr(unsafe.Pointer(&set)), 8, 0, 0)
	require.Zero(t, errno)
	sigs := []int{}
	for sig := 1; sig <= 64; sig++ {
		if set&(1<<(sig-1)) != 0 {
			sigs = append(sigs, sig)
		}
	}
	return sigs
}

func spawn7Dispositions(h *H, e Engine) {
	const (
		usr1 = int(unix.SIGUSR1)
		usr2 = int(unix.SIGUSR2)
	)
	internal := []int{32, 33}
	ignored, caught := dispositions(h)
	// The Go runtime catches SIGUSR1 and SIGUSR2 (and most others): the
	// reset has something to do.
	require.Contains(h, caught, usr1)
	require.Contains(h, caught, usr2)
	// Whatever the helper itself ignores, the child keeps ignoring.
	base := intSet(ignored, internal)

	// child returns the probe's ignored and caught signals and its mask.
	child := func(attr Attr) (ign, cau, mask []int) {
		obs, _ := runProbe(h, e, nil, attr)
		return obs.Ignored, obs.Caught, obs.SigMask
	}
	noSigs := []int{}

	// Handlers (the runtime's) are reset, 32 and 33 ignored.
	ign, cau, _ := child(nil)
	require.Equal(h, intSet(base, nil, internal...), ign, "ignored in the child")
	require.Equal(h, noSigs, emptyIfNil(cau), "caught in the child")

	// SIG_IGN is kept.
	signal.Ignore(unix.SIGUSR1, unix.SIGUSR2)
	ignNow, _ := dispositions(h)
	require.Equal(h, intSet(ignored, nil, usr1, usr2), ignNow)
	ign, cau, _ = child(nil)
	require.Equal(h, intSet(base, nil, usr1, usr2, 32, 33), ign)
	require.Equal(h, noSigs, emptyIfNil(cau))

	// The SETSIGDEF set is reset to SIG_DFL, ignored or not.
	attr := newAttr(h, e, spawn.FlagSetSigDefault)
	require.NoError(h, attr.SetSigDefault(spawn.NewSignalSet(unix.SIGUSR1, unix.SIGUSR2)))
	ign, cau, _ = child(attr)
	require.Equal(h, intSet(base, nil, internal...), ign)
	require.Equal(h, noSigs, emptyIfNil(cau))

	// SETSIGDEF naming glibc's internal signals leaves them at SIG_DFL.
	attr = newAttr(h, e, spawn.FlagSetSigDefault)
	require.NoError(h, attr.SetSigDefault(spawn.NewSignalSet(32, 33)))
	ign, _, _ = child(attr)
	require.Equal(h, intSet(base, nil, usr1, usr2), ign)

	// A sigdefault set without the flag does nothing.
	attr = newAttr(h, e, 0)
	require.NoError(h, attr.SetSigDefault(spawn.NewSignalSet(unix.SIGUSR1, unix.SIGUSR2)))
	ign, _, _ = child(attr)
	require.Equal(h, intSet(base, nil, usr1, usr2, 32, 33), ign)

	// The mask: the spawning thread's, or SETSIGMASK's.
	_, _, mask := child(nil)
	require.Equal(h, threadMask(h), emptyIfNil(mask))
	attr = newAttr(h, e, spawn.FlagSetSigMask)
	require.NoError(h, attr.SetSigMask(spawn.NewSignalSet(unix.SIGTERM, unix.SIGHUP)))
	_, _, mask = child(attr)
	require.Equal(h, []int{int(unix.SIGHUP), int(unix.SIGTERM)}, mask)

	signal.Reset(unix.SIGUSR1, unix.SIGUSR2)
}

func emptyIfNil(s []int) []int {
	if s == nil {
		return []int{}
	}
	return s
}
