package libos

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Descriptor inheritance policies.
const (
	FDsPOSIX  = "posix"  // every descriptor without close-on-exec is inherited
	FDsStrict = "strict" // only 0, 1, 2, file-action targets and KeepFDs
)

// MaxKeepFDs is how many descriptors KeepFDs may name (the library's
// table).
const MaxKeepFDs = 32

// Policy is what the host enforces on the whole tree, identically on both
// platforms.
type Policy struct {
	FDs     string // FDsPOSIX (also "") or FDsStrict
	KeepFDs []int  // strict: descriptors kept besides 0, 1 and 2

	// ExecAllow, when not empty, lists the programs that may be executed;
	// ExecDeny lists programs that may not. Deny wins. See MatchExec for
	// the patterns. A denied exec fails with EACCES.
	ExecAllow []string
	ExecDeny  []string

	// MaxProcs limits the live processes of the tree (threads do not
	// count; 0: no limit). A creation beyond it fails with EAGAIN.
	MaxProcs int
}

// Environment variables that carry the policy to lib/libforkless.so.
const (
	EnvFDs       = "FORKLESS_FDS"
	EnvKeepFDs   = "FORKLESS_KEEP_FDS"
	EnvExecAllow = "FORKLESS_EXEC_ALLOW"
	EnvExecDeny  = "FORKLESS_EXEC_DENY"
	EnvMaxProcs  = "FORKLESS_MAX_PROCS"
)

// Validate reports what is wrong with p.
func (p *Policy) Validate() error {
	switch p.FDs {
	case "", FDsPOSIX, FDsStrict:
	default:
		return fmt.Errorf("descriptor policy %q: want %s or %s", p.FDs, FDsPOSIX, FDsStrict)
	}
	if len(p.KeepFDs) > 0 && p.FDs != FDsStrict {
		return errors.New("kept descriptors apply to the strict policy")
	}
	if len(p.KeepFDs) > MaxKeepFDs {
		return fmt.Errorf("%d kept descriptors, at most %d", len(p.KeepFDs), MaxKeepFDs)
	}
	for _, fd := range p.KeepFDs {
		if fd < 0 {
			return fmt.Errorf("kept descriptor %d is negative", fd)
		}
	}
	for _, pat := range slices.Concat(p.ExecAllow, p.ExecDeny) {
		if err := CheckPattern(pat); err != nil {
			return err
		}
	}
	if p.MaxProcs < 0 {
		return fmt.Errorf("process limit %d is negative", p.MaxProcs)
	}
	return nil
}

// Strict reports whether descriptors are inherited strictly.
func (p *Policy) Strict() bool { return p.FDs == FDsStrict }

// Kept reports whether the strict policy lets a new program inherit fd
// (targets of file actions aside, which only the preload platform sees).
func (p *Policy) Kept(fd int) bool {
	return fd <= 2 || slices.Contains(p.KeepFDs, fd)
}

// ExecAllowed reports whether the program at path (absolute, as exec
// resolved it) may be executed.
func (p *Policy) ExecAllowed(path string) bool {
	for _, pat := range p.ExecDeny {
		if MatchExec(pat, path) {
			return false
		}
	}
	if len(p.ExecAllow) == 0 {
		return true
	}
	for _, pat := range p.ExecAllow {
		if MatchExec(pat, path) {
			return true
		}
	}
	return false
}

// Env returns the environment entries that give lib/libforkless.so this
// policy. Patterns are joined with ':', which CheckPattern refuses inside
// one.
func (p *Policy) Env() []string {
	var env []string
	if p.FDs != "" {
		env = append(env, EnvFDs+"="+p.FDs)
	}
	if len(p.KeepFDs) > 0 {
		s := make([]string, len(p.KeepFDs))
		for i, fd := range p.KeepFDs {
			s[i] = strconv.Itoa(fd)
		}
		env = append(env, EnvKeepFDs+"="+strings.Join(s, ","))
	}
	if len(p.ExecAllow) > 0 {
		env = append(env, EnvExecAllow+"="+strings.Join(p.ExecAllow, ":"))
	}
	if len(p.ExecDeny) > 0 {
		env = append(env, EnvExecDeny+"="+strings.Join(p.ExecDeny, ":"))
	}
	if p.MaxProcs > 0 {
		env = append(env, EnvMaxProcs+"="+strconv.Itoa(p.MaxProcs))
	}
	return env
}

// maxPattern bounds one pattern (the library copies patterns into a fixed
// table).
const maxPattern = 255

// CheckPattern reports whether pat is a valid exec pattern.
func CheckPattern(pat string) error {
	switch {
	case pat == "":
		return errors.New("empty exec pattern")
	case len(pat) > maxPattern:
		return fmt.Errorf("exec pattern %.20q...: longer than %d bytes", pat, maxPattern)
	case strings.ContainsAny(pat, ":\x00"):
		return fmt.Errorf("exec pattern %q: holds ':' or NUL", pat)
	case strings.Contains(pat, `\`):
		return fmt.Errorf(`exec pattern %q: backslash escapes are not supported`, pat)
	}
	if _, err := path.Match(pat, ""); err != nil {
		return fmt.Errorf("exec pattern %q: %v", pat, err)
	}
	// Classes where fnmatch and path.Match disagree: fnmatch never lets a
	// class match '/' under FNM_PATHNAME, and reads a ']' right after '['
	// as a member.
	for i := 0; i < len(pat); i++ {
		if pat[i] != '[' {
			continue
		}
		end := strings.IndexByte(pat[i:], ']')
		class := pat[i+1 : i+end]
		if strings.HasPrefix(class, "!") || strings.HasPrefix(class, "^") {
			class = class[1:]
		}
		switch {
		case class == "":
			return fmt.Errorf("exec pattern %q: an empty class, or one that starts with ']', is not supported", pat)
		case strings.ContainsRune(class, '/'):
			return fmt.Errorf("exec pattern %q: a class cannot hold '/'", pat)
		}
		i += end
	}
	return nil
}

// MatchExec reports whether the exec pattern pat matches the program at
// the absolute path prog. A pattern with a '/' is matched against the
// whole path, one without against its last element. '*' matches any run
// of characters other than '/', '?' one such character, and [...] a class
// ([!...] or [^...] negated, ranges with '-'; never '/', which a negated
// class does not match either): fnmatch(3) with FNM_PATHNAME and
// FNM_NOESCAPE, which the library uses.
func MatchExec(pat, prog string) bool {
	name := prog
	if !strings.Contains(pat, "/") {
		name = path.Base(prog)
	}
	// path.Match spells negation '^'; fnmatch accepts '!' as well.
	pat = strings.ReplaceAll(pat, "[!", "[^")
	ok, err := path.Match(pat, name)
	if err != nil || !ok {
		return false
	}
	// path.Match lets a negated class match '/'; fnmatch does not.
	return !strings.Contains(pat, "[^") || matchNoSlashClass(pat, name)
}

// matchNoSlashClass matches like path.Match, with every negated class
// also excluding '/'.
func matchNoSlashClass(pat, name string) bool {
	ok, err := path.Match(strings.ReplaceAll(pat, "[^", "[^/"), name)
	return err == nil && ok
}
