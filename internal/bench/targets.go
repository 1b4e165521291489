package bench

import (
	"fmt"
	"os"
	"path/filepath"
)

// The helper programs `make` builds into bin/.
const (
	TinyBinary   = "forkless-tiny"   // static, exits 0 at once
	CBenchBinary = "forkless-cbench" // the C host
)

// Target names.
const (
	TargetTiny = "tiny" // bin/forkless-tiny: measures the spawner, not the child
	TargetTrue = "true" // /bin/true: a typical small dynamic program
)

// TargetNames lists the known targets in report order.
var TargetNames = []string{TargetTiny, TargetTrue}

// Target is a program the children exec.
type Target struct {
	Name string
	Path string
}

// ResolveTargets returns the targets named, finding forkless-tiny in the
// helpers directory. An empty list means all.
func ResolveTargets(names []string, helpers string) ([]Target, error) {
	if len(names) == 0 {
		names = TargetNames
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
			out = append(out, Target{TargetTiny, p})
		case TargetTrue:
			p := "/bin/true"
			if err := checkExecutable(p); err != nil {
				return nil, fmt.Errorf("target true: %w", err)
			}
			out = append(out, Target{TargetTrue, p})
		default:
			return nil, fmt.Errorf("unknown target %q (known: tiny, true)", name)
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
