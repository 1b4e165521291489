package peer

// After glibc's posix/tst-posix_spawn-setsid.c: without POSIX_SPAWN_SETSID
// the child stays in the caller's session; with it the child leads a new
// session (and a new group), for posix_spawn and posix_spawnp.

import (
	"path/filepath"
	"testing"

	"github.com/forkless/forkless/spawn"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestSpawnSetsid(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e Engine) {
		sid, err := unix.Getsid(0)
		require.NoError(t, err)
		pgid := unix.Getpgrp()

		for _, search := range []bool{false, true} {
			run := probeRun{}
			name := "spawn"
			if search {
				name = "spawnp"
				run = probeRun{path: filepath.Base(probePath), search: true}
			}
			t.Run(name+"/without", func(t *testing.T) {
				if search {
					t.Setenv("PATH", filepath.Dir(probePath))
				}
				obs, pid := runProbeWith(t, e, nil, newAttr(t, e, 0), run)
				require.Equal(t, sid, obs.SID, "the child left the session")
				require.Equal(t, pgid, obs.PGID)
				require.NotEqual(t, pid, obs.SID)
			})
			t.Run(name+"/with", func(t *testing.T) {
				if search {
					t.Setenv("PATH", filepath.Dir(probePath))
				}
				obs, pid := runProbeWith(t, e, nil, newAttr(t, e, spawn.FlagSetSid), run)
				require.Equal(t, pid, obs.SID, "the child does not lead a session")
				require.Equal(t, pid, obs.PGID, "the session leader leads no group")
				require.NotEqual(t, sid, obs.SID)
			})
		}

		// The parent sees the same: the session of its (zombie) child.
		t.Run("getsid-from-parent", func(t *testing.T) {
			c, err := spawnT(t, e, false, "/bin/true", nil, newAttr(t, e, spawn.FlagSetSid), []string{"true"}, []string{})
			require.NoError(t, err)
			got, err := unix.Getsid(c.Pid)
			require.NoError(t, err)
			require.Equal(t, c.Pid, got)
			waitExit(t, c, 0)

			c, err = spawnT(t, e, false, "/bin/true", nil, newAttr(t, e, 0), []string{"true"}, []string{})
			require.NoError(t, err)
			got, err = unix.Getsid(c.Pid)
			require.NoError(t, err)
			require.Equal(t, sid, got)
			waitExit(t, c, 0)
		})

		// A session leader cannot move to another group: SETSID runs
		// before SETPGROUP, which then fails.
		t.Run("with-setpgroup", func(t *testing.T) {
			c, err := spawnT(t, e, false, probePath, nil, newAttr(t, e, spawn.FlagSetSid|spawn.FlagSetPgroup),
				[]string{"forkless-probe"}, []string{})
			require.Nil(t, c)
			requireErrno(t, unix.EPERM, err)
			requireNoChild(t)
		})
	})
}
