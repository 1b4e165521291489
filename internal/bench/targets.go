package bench

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The helper programs `make` builds into bin/.
const (
	TinyBinary   = "forkless-tiny"   // static, exits 0 at once
	CBenchBinary = "forkless-cbench" // the C host
)

// Target names.
const (
	TargetTiny        = "tiny"         // bin/forkless-tiny: measures the spawner, not the child
	TargetTrue        = "true"         // /bin/true: a typical small dynamic program
	TargetTruePreload = "true+preload" // /bin/true with LD_PRELOAD=lib/libforkless.so
)

// TargetNames lists the known targets in report order.
var TargetNames = []string{TargetTiny, TargetTrue, TargetTruePreload}

// DefaultTargets are the targets run when none is named.
var DefaultTargets = []string{TargetTiny, TargetTrue}

// Target is a program the children exec.
type Target struct {
	Name string
	Path string
	// Env is the child's environment: empty for every target but
	// true+preload, whose one entry is LD_PRELOAD=<library>. The C host
	// takes at most one entry, without white space.
	Env []string
}

// NeedsLib reports whether the target runs with the preload library.
func (t Target) NeedsLib() bool { return t.Name == TargetTruePreload }

// CheckLib checks that path is a preload library LD_PRELOAD can name (a
// regular file whose path has no space or colon, which separate the
// entries of LD_PRELOAD) and returns its absolute path.
func CheckLib(path string) (string, error) {
	if path == "" {
		return "", errors.New("no preload library given")
	}
	p, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if strings.ContainsAny(p, " \t\n\r:") {
		return "", fmt.Errorf("preload library %q: LD_PRELOAD cannot name a path with a space or colon", p)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("preload library: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("preload library %s is not a regular file", p)
	}
	return p, nil
}

// ResolveTargets returns the targets named, finding forkless-tiny in the
// helpers directory; true+preload needs the preload library lib. An empty
// list means DefaultTargets.
func ResolveTargets(names []string, helpers, lib string) ([]Target, error) {
	if len(names) == 0 {
		names = DefaultTargets
	}
	var out []Target
	seen := map[string]bool{}
	for _, name := range names {
		if seen[name] {
			continue
		}
		seen[name] = true
		switch name {
		case TargetTiny:
			p, err := HelperPath(helpers, TinyBinary)
			if err != nil {
				return nil, err
			}
			out = append(out, Target{Name: TargetTiny, Path: p})
		case TargetTrue, TargetTruePreload:
			t := Target{Name: name, Path: "/bin/true"}
			if err := checkExecutable(t.Path); err != nil {
				return nil, fmt.Errorf("target %s: %w", name, err)
			}
			if name == TargetTruePreload {
				p, err := CheckLib(lib)
				if err != nil {
					return nil, fmt.Errorf("target %s: %w", name, err)
				}
				t.Env = []string{"LD_PRELOAD=" + p}
			}
			out = append(out, t)
		default:
			return nil, fmt.Errorf("unknown target %q (known: %s)", name, strings.Join(TargetNames, ", "))
		}
	}
	return out, nil
}

// HelperPath returns the absolute path of helper binary name in dir, or an
// error saying how to build it.
func HelperPath(dir, name string) (string, error) {
	p, err := filepath.Abs(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	if err := checkExecutable(p); err != nil {
		return "", fmt.Errorf("helper %s: %w\n(run `make` in the forkless repository to build bin/%s, or point --helpers at the directory that holds it)", name, err, name)
	}
	return p, nil
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}
