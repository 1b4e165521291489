// Package libsym checks what lib/libforkless.so exports: exactly the libc
// entry points it interposes, each under glibc's symbol version, both
// versions of posix_spawn and posix_spawnp, and the hooks a patched glibc
// calls (version node FORKLESS_HOOK_1, glibcpatch/).
package libsym

import (
	"os/exec"
	"sort"
	"strings"
	"testing"

	"github.com/forkless/forkless/internal/testbin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// want is the export table: name@version, @@ marking the default version.
// close, close_range, dup*, sigaction, sigprocmask and pthread_sigmask are
// lazy vfork's fast paths (libc's own outside a vfork child); the wait
// family reports exit statuses to the libos host.
var want = []string{
	"_Fork@@GLIBC_2.34",
	"__forkless_fork_hook_v1@@FORKLESS_HOOK_1",
	"__forkless_spawn_hook_v1@@FORKLESS_HOOK_1",
	"__forkless_vfork_hook_v1@@FORKLESS_HOOK_1",
	"close@@GLIBC_2.2.5",
	"close_range@@GLIBC_2.34",
	"dup2@@GLIBC_2.2.5",
	"dup3@@GLIBC_2.9",
	"dup@@GLIBC_2.2.5",
	"execl@@GLIBC_2.2.5",
	"execle@@GLIBC_2.2.5",
	"execlp@@GLIBC_2.2.5",
	"execv@@GLIBC_2.2.5",
	"execve@@GLIBC_2.2.5",
	"execveat@@GLIBC_2.34",
	"execvp@@GLIBC_2.2.5",
	"execvpe@@GLIBC_2.11",
	"fexecve@@GLIBC_2.2.5",
	"fork@@GLIBC_2.2.5",
	"pclose@@GLIBC_2.2.5",
	"popen@@GLIBC_2.2.5",
	"posix_spawn@@GLIBC_2.15",
	"posix_spawn@GLIBC_2.2.5",
	"posix_spawnp@@GLIBC_2.15",
	"posix_spawnp@GLIBC_2.2.5",
	"pthread_sigmask@@GLIBC_2.32",
	"pthread_sigmask@GLIBC_2.2.5",
	"sigaction@@GLIBC_2.2.5",
	"sigprocmask@@GLIBC_2.2.5",
	"system@@GLIBC_2.2.5",
	"vfork@@GLIBC_2.2.5",
	"wait3@@GLIBC_2.2.5",
	"wait4@@GLIBC_2.2.5",
	"wait@@GLIBC_2.2.5",
	"waitid@@GLIBC_2.2.5",
	"waitpid@@GLIBC_2.2.5",
}

// exported lists the defined global symbols readelf shows.
func exported(t *testing.T, lib string) []string {
	out, err := exec.Command("readelf", "--dyn-syms", "-W", lib).Output()
	require.NoError(t, err, "readelf")
	var syms []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		// Num: Value Size Type Bind Vis Ndx Name
		if len(f) < 8 || f[6] == "UND" || f[4] == "LOCAL" {
			continue
		}
		if f[3] == "FUNC" || f[3] == "OBJECT" || f[3] == "NOTYPE" {
			syms = append(syms, f[7])
		}
	}
	sort.Strings(syms)
	return syms
}

func TestExports(t *testing.T) {
	if _, err := exec.LookPath("readelf"); err != nil {
		t.Skip("readelf (binutils) not installed")
	}
	lib := testbin.MustLib(t)
	got := exported(t, lib)
	// The version nodes themselves appear as absolute symbols.
	var funcs []string
	for _, s := range got {
		if !strings.HasPrefix(s, "GLIBC_") && s != "FORKLESS_HOOK_1" {
			funcs = append(funcs, s)
		}
	}
	assert.Equal(t, want, funcs)
}
