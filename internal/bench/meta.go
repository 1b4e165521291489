package bench

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/forkless/forkless/internal/glibc"
	"golang.org/x/sys/unix"
)

// Meta describes the machine and the run, for report headers.
type Meta struct {
	N, Rounds int
	OS, Arch  string
	Kernel    string
	Glibc     string
	CPUs      int
	CPU       string
}

// CollectMeta reads the machine's description; parts it cannot read stay
// empty.
func CollectMeta(n, rounds int) Meta {
	m := Meta{N: n, Rounds: rounds, OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	m.Glibc = glibc.Version()
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.Join(strings.Fields(v), " ")
				break
			}
		}
	}
	return m
}

// String is a one-line summary.
func (m Meta) String() string {
	parts := []string{fmt.Sprintf("%s/%s", m.OS, m.Arch)}
	if m.Kernel != "" {
		parts = append(parts, "Linux "+m.Kernel)
	}
	if m.Glibc != "" {
		parts = append(parts, "glibc "+m.Glibc)
	}
	cpu := fmt.Sprintf("%d CPUs", m.CPUs)
	if m.CPU != "" {
		cpu += " (" + m.CPU + ")"
	}
	parts = append(parts, cpu)
	return strings.Join(parts, ", ")
}
