package ptrace

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// System call numbers the filter sends to the tracer (x86_64).
const (
	sysClone    = unix.SYS_CLONE
	sysFork     = unix.SYS_FORK
	sysVfork    = unix.SYS_VFORK
	sysExecve   = unix.SYS_EXECVE
	sysExecveat = unix.SYS_EXECVEAT
	sysClone3   = unix.SYS_CLONE3
	sysPtrace   = unix.SYS_PTRACE
)

// x32Bit marks x32 system call numbers (same arch value as x86_64).
const x32Bit = 0x40000000

// x32 numbers of the calls that differ from x86_64 (execve, ptrace and
// execveat have x32-specific entries; clone, fork, vfork and clone3 share
// the x86_64 numbers with the bit set).
var x32Calls = []uint32{
	x32Bit | 56, x32Bit | 57, x32Bit | 58, x32Bit | 435,
	x32Bit | 520, x32Bit | 521, x32Bit | 545,
}

// i386 numbers of fork, execve, ptrace, clone, vfork, execveat and clone3.
var i386Calls = []uint32{2, 11, 26, 120, 190, 358, 435}

const auditArchI386 = 0x40000003

// Classic BPF opcodes.
const (
	bpfLdAbs  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
	bpfJeq    = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	bpfJge    = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
	bpfJset   = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
	bpfRet    = unix.BPF_RET | unix.BPF_K
	offNr     = 0
	offArch   = 4
	offArg0Lo = 16 // args[0], low 32 bits (little endian)
)

// insn is one instruction with symbolic jump targets ("" is the next
// instruction).
type insn struct {
	code   uint16
	k      uint32
	jt, jf string
	label  string // this instruction's own label
}

// assemble resolves labels into relative offsets.
func assemble(prog []insn) []unix.SockFilter {
	at := map[string]int{}
	for i, in := range prog {
		if in.label != "" {
			at[in.label] = i
		}
	}
	rel := func(i int, l string) uint8 {
		if l == "" {
			return 0
		}
		d := at[l] - (i + 1)
		if d < 0 || d > 255 {
			panic("ptrace: filter jump out of range: " + l)
		}
		return uint8(d)
	}
	out := make([]unix.SockFilter, len(prog))
	for i, in := range prog {
		out[i] = unix.SockFilter{Code: in.code, K: in.k, Jt: rel(i, in.jt), Jf: rel(i, in.jf)}
	}
	return out
}

// filterProgram is the seccomp filter:
//
//   - x86_64: clone without CLONE_THREAD, fork, vfork, clone3, execve,
//     execveat and ptrace return SECCOMP_RET_TRACE (a seccomp stop in the
//     tracer); everything else, thread-creating clone included, runs
//     natively.
//   - x32 (x86_64 arch value, numbers with bit 30) and i386 (int 0x80):
//     the same calls fail with ENOSYS, everything else runs. The tracer
//     only decodes the x86_64 calling convention; failing these calls
//     keeps a 32-bit program from creating processes the platform cannot
//     follow, while the rest of such a program still runs.
func filterProgram() []unix.SockFilter {
	const (
		allow = unix.SECCOMP_RET_ALLOW
		trace = unix.SECCOMP_RET_TRACE
		nosys = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	)
	p := []insn{
		{code: bpfLdAbs, k: offArch},
		{code: bpfJeq, k: unix.AUDIT_ARCH_X86_64, jf: "other"},
		{code: bpfLdAbs, k: offNr},
		{code: bpfJge, k: x32Bit, jt: "x32"},
		{code: bpfJeq, k: sysClone, jt: "clone"},
	}
	for _, nr := range []uint32{sysFork, sysVfork, sysClone3, sysExecve, sysExecveat, sysPtrace} {
		p = append(p, insn{code: bpfJeq, k: nr, jt: "trace"})
	}
	p = append(p,
		insn{code: bpfRet, k: allow},
		insn{code: bpfLdAbs, k: offArg0Lo, label: "clone"},
		insn{code: bpfJset, k: unix.CLONE_THREAD, jf: "trace"},
		insn{code: bpfRet, k: allow},
		insn{code: bpfRet, k: trace, label: "trace"},
		insn{code: bpfLdAbs, k: offNr, label: "x32"},
	)
	for _, nr := range x32Calls {
		p = append(p, insn{code: bpfJeq, k: nr, jt: "nosys"})
	}
	p = append(p,
		insn{code: bpfRet, k: allow},
		insn{code: bpfJeq, k: auditArchI386, jf: "allow2", label: "other"},
		insn{code: bpfLdAbs, k: offNr},
	)
	for _, nr := range i386Calls {
		p = append(p, insn{code: bpfJeq, k: nr, jt: "nosys"})
	}
	p = append(p,
		insn{code: bpfRet, k: allow, label: "allow2"},
		insn{code: bpfRet, k: nosys, label: "nosys"},
	)
	return assemble(p)
}

// filterBytes encodes the filter as struct sock_filter entries in native
// byte order.
func filterBytes() []byte {
	prog := filterProgram()
	b := make([]byte, 0, 8*len(prog))
	for _, f := range prog {
		b = binary.NativeEndian.AppendUint16(b, f.Code)
		b = append(b, f.Jt, f.Jf)
		b = binary.NativeEndian.AppendUint32(b, f.K)
	}
	return b
}
