package libos

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestMatchExec(t *testing.T) {
	for _, c := range []struct {
		pat, prog string
		want      bool
	}{
		{"sh", "/bin/sh", true},
		{"sh", "/bin/bash", false},
		{"*sh", "/bin/bash", true},
		{"/bin/*", "/bin/sh", true},
		{"/bin/*", "/usr/bin/sh", false},
		{"/usr/*/sh", "/usr/bin/sh", true},
		{"/usr/*", "/usr/bin/sh", false}, // '*' stops at '/'
		{"py?hon3", "/usr/bin/python3", true},
		{"[bd]ash", "/bin/dash", true},
		{"[!bd]ash", "/bin/dash", false},
		{"[!bd]ash", "/bin/rash", true},
		{"[^bd]ash", "/bin/rash", true},
		{"[a-c]at", "/bin/cat", true},
		{"/usr[!a]bin/x", "/usr/bin/x", false}, // a class never matches '/'
		{"/usr/b[!a]n/x", "/usr/bin/x", true},
	} {
		assert.Equal(t, c.want, MatchExec(c.pat, c.prog), "%q vs %q", c.pat, c.prog)
	}
}

func TestExecAllowed(t *testing.T) {
	p := Policy{}
	assert.True(t, p.ExecAllowed("/bin/sh"))
	p.ExecDeny = []string{"curl", "/tmp/*"}
	assert.False(t, p.ExecAllowed("/usr/bin/curl"))
	assert.False(t, p.ExecAllowed("/tmp/x"))
	assert.True(t, p.ExecAllowed("/bin/sh"))
	p.ExecAllow = []string{"/bin/*", "/tmp/*"}
	assert.True(t, p.ExecAllowed("/bin/sh"))
	assert.False(t, p.ExecAllowed("/tmp/x"), "deny wins")
	assert.False(t, p.ExecAllowed("/usr/bin/env"), "not in the allow list")
}

func TestPolicyValidateAndEnv(t *testing.T) {
	assert.NoError(t, (&Policy{}).Validate())
	for _, p := range []Policy{
		{FDs: "lax"},
		{KeepFDs: []int{3}},
		{FDs: FDsStrict, KeepFDs: []int{-1}},
		{ExecDeny: []string{""}},
		{ExecDeny: []string{"a:b"}},
		{ExecDeny: []string{"[ab"}},
		{ExecDeny: []string{`\*`}},
		{ExecDeny: []string{"[]]x"}},
		{ExecDeny: []string{"a[/]b"}},
		{ExecDeny: []string{"a[!/]b"}},
		{MaxProcs: -1},
	} {
		assert.Error(t, p.Validate(), "%+v", p)
	}
	p := Policy{FDs: FDsStrict, KeepFDs: []int{5, 7}, ExecAllow: []string{"/bin/*"}, ExecDeny: []string{"curl", "wget"}, MaxProcs: 9}
	assert.NoError(t, p.Validate())
	assert.Equal(t, []string{
		"FORKLESS_FDS=strict", "FORKLESS_KEEP_FDS=5,7", "FORKLESS_EXEC_ALLOW=/bin/*",
		"FORKLESS_EXEC_DENY=curl:wget", "FORKLESS_MAX_PROCS=9",
	}, p.Env())
	assert.True(t, p.Kept(2))
	assert.True(t, p.Kept(7))
	assert.False(t, p.Kept(6))
}
