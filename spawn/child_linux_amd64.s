#include "textflag.h"

// The spawn child. It runs on its own stack, shares the parent's memory,
// and never executes Go code: only the op interpreter below and raw system
// calls. R12 holds the *childState throughout; see program.go for layouts.

// childState offsets
#define ST_OPS 0
#define ST_NOPS 8
#define ST_ERRNO 16
#define ST_STEP 24
#define ST_R 32
#define ST_EACCES 40
#define ST_LASTERR 48
#define ST_BLOCKALL 56
#define ST_OLDMASK 64

// op offsets
#define OP_KIND 0
#define OP_NR 8
#define OP_A0 16
#define OP_A1 24
#define OP_A2 32
#define OP_A3 40
#define OP_A4 48
#define OP_A5 56
#define OP_CTL 64
#define OP_STEP 72
#define OP_SIZE 80

#define SYS_close 3
#define SYS_rt_sigaction 13
#define SYS_rt_sigprocmask 14
#define SYS_execve 59
#define SYS_exit_group 231
#define SYS_close_range 436

// func rawSpawn(st *childState, nr, a0, a1, a2 uintptr) (pid uintptr, errno uintptr)
//
// Blocks every signal on this thread (saving the mask in st.oldmask),
// makes the clone3 or clone system call nr(a0, a1, a2, 0, 0), restores the
// mask in the parent, and returns. The child jumps to the interpreter.
TEXT ·rawSpawn(SB),NOSPLIT|NOFRAME,$0-56
	MOVQ	st+0(FP), R12
	MOVQ	$SYS_rt_sigprocmask, AX
	MOVQ	$2, DI			// SIG_SETMASK
	LEAQ	ST_BLOCKALL(R12), SI
	LEAQ	ST_OLDMASK(R12), DX
	MOVQ	$8, R10
	SYSCALL

	MOVQ	nr+8(FP), AX
	MOVQ	a0+16(FP), DI
	MOVQ	a1+24(FP), SI
	MOVQ	a2+32(FP), DX
	XORQ	R10, R10
	XORQ	R8, R8
	SYSCALL
	CMPQ	AX, $0
	JEQ	child

	MOVQ	AX, R13
	MOVQ	$SYS_rt_sigprocmask, AX
	MOVQ	$2, DI
	LEAQ	ST_OLDMASK(R12), SI
	XORQ	DX, DX
	MOVQ	$8, R10
	SYSCALL

	CMPQ	R13, $-4095
	JCC	failed
	MOVQ	R13, pid+40(FP)
	MOVQ	$0, errno+48(FP)
	RET
failed:
	NEGQ	R13
	MOVQ	$-1, pid+40(FP)
	MOVQ	R13, errno+48(FP)
	RET

child:
	// New stack, shared memory, all signals blocked.
	MOVQ	ST_OPS(R12), R13	// current op
	MOVQ	ST_NOPS(R12), BX	// ops left
loop:
	TESTQ	BX, BX
	JEQ	done
	MOVQ	OP_KIND(R13), AX
	CMPQ	AX, $1
	JEQ	dosys
	CMPQ	AX, $2
	JEQ	doskip
	CMPQ	AX, $3
	JEQ	dofail
	CMPQ	AX, $4
	JEQ	doexec
	CMPQ	AX, $5
	JEQ	dosearchend
	CMPQ	AX, $6
	JEQ	doresetsig
	CMPQ	AX, $7
	JEQ	doclosrange
	MOVQ	$22, AX			// EINVAL: unknown op
	JMP	fail
next:
	ADDQ	$OP_SIZE, R13
	DECQ	BX
	JMP	loop
done:
	// Unreachable: every program ends in an exec or fail op.
	MOVQ	$10, ST_ERRNO(R12)	// ECHILD
	MOVQ	$127, DI
	MOVQ	$SYS_exit_group, AX
	SYSCALL
	JMP	done

// opSys: syscall with arguments, some replaced by r.
dosys:
	MOVQ	OP_CTL(R13), R15
	MOVQ	ST_R(R12), R14
	MOVQ	OP_A0(R13), DI
	TESTQ	$1, R15
	JEQ	2(PC)
	MOVQ	R14, DI
	MOVQ	OP_A1(R13), SI
	TESTQ	$2, R15
	JEQ	2(PC)
	MOVQ	R14, SI
	MOVQ	OP_A2(R13), DX
	TESTQ	$4, R15
	JEQ	2(PC)
	MOVQ	R14, DX
	MOVQ	OP_A3(R13), R10
	TESTQ	$8, R15
	JEQ	2(PC)
	MOVQ	R14, R10
	MOVQ	OP_A4(R13), R8
	TESTQ	$16, R15
	JEQ	2(PC)
	MOVQ	R14, R8
	MOVQ	OP_A5(R13), R9
	TESTQ	$32, R15
	JEQ	2(PC)
	MOVQ	R14, R9
	MOVQ	OP_NR(R13), AX
	SYSCALL
	MOVQ	OP_CTL(R13), R15
	CMPQ	AX, $-4095
	JCC	syserr
	TESTQ	$512, R15		// ctlSave
	JEQ	next
	MOVQ	AX, ST_R(R12)
	JMP	next
syserr:
	TESTQ	$256, R15		// ctlIgnErr
	JNE	next
	NEGQ	AX
	JMP	fail

// opSkipEq: if r == a0, skip a1 ops.
doskip:
	MOVQ	ST_R(R12), AX
	CMPQ	AX, OP_A0(R13)
	JNE	next
	MOVQ	OP_A1(R13), CX
	SUBQ	CX, BX
	IMULQ	$OP_SIZE, CX
	ADDQ	CX, R13
	JMP	next

dofail:
	MOVQ	OP_A0(R13), AX
	JMP	fail

// opExec: execve returns only on error.
doexec:
	MOVQ	$SYS_execve, AX
	MOVQ	OP_A0(R13), DI
	MOVQ	OP_A1(R13), SI
	MOVQ	OP_A2(R13), DX
	SYSCALL
	NEGQ	AX
	MOVQ	OP_CTL(R13), R15
	TESTQ	$1024, R15		// ctlSearch
	JEQ	fail
	// glibc's execvp: remember EACCES, skip ENOENT, ESTALE, ENOTDIR,
	// ENODEV and ETIMEDOUT, stop at anything else.
	MOVQ	AX, ST_LASTERR(R12)
	CMPQ	AX, $13
	JNE	3(PC)
	MOVQ	$1, ST_EACCES(R12)
	JMP	next
	CMPQ	AX, $2
	JEQ	next
	CMPQ	AX, $116
	JEQ	next
	CMPQ	AX, $20
	JEQ	next
	CMPQ	AX, $19
	JEQ	next
	CMPQ	AX, $110
	JEQ	next
	JMP	fail

dosearchend:
	MOVQ	ST_LASTERR(R12), AX
	CMPQ	ST_EACCES(R12), $0
	JEQ	2(PC)
	MOVQ	$13, AX
	TESTQ	AX, AX
	JNE	fail
	MOVQ	$2, AX			// ENOENT: nothing was tried
	JMP	fail

// opResetSig: for each signal with a handler, set SIG_DFL. a0 is a 32-byte
// buffer for the old action, a1 a SIG_DFL action.
doresetsig:
	MOVQ	$1, R14
rsloop:
	CMPQ	R14, $65
	JEQ	next
	CMPQ	R14, $9
	JEQ	rsnext
	CMPQ	R14, $19
	JEQ	rsnext
	MOVQ	$SYS_rt_sigaction, AX
	MOVQ	R14, DI
	XORQ	SI, SI
	MOVQ	OP_A0(R13), DX
	MOVQ	$8, R10
	SYSCALL
	TESTQ	AX, AX
	JNE	rsnext
	MOVQ	OP_A0(R13), DX
	MOVQ	0(DX), AX		// old sa_handler
	CMPQ	AX, $1			// SIG_DFL or SIG_IGN: keep
	JLS	rsnext
	MOVQ	$SYS_rt_sigaction, AX
	MOVQ	R14, DI
	MOVQ	OP_A1(R13), SI
	XORQ	DX, DX
	MOVQ	$8, R10
	SYSCALL
rsnext:
	INCQ	R14
	JMP	rsloop

// opCloseRange: close_range(a0, ~0U, 0); without it close a0..a1-1.
doclosrange:
	MOVQ	$SYS_close_range, AX
	MOVQ	OP_A0(R13), DI
	MOVL	$0xffffffff, SI
	XORQ	DX, DX
	SYSCALL
	CMPQ	AX, $-38		// ENOSYS
	JEQ	crloop0
	CMPQ	AX, $-4095
	JCS	next
	NEGQ	AX
	JMP	fail
crloop0:
	MOVQ	OP_A0(R13), R14
crloop:
	CMPQ	R14, OP_A1(R13)
	JCC	next
	MOVQ	$SYS_close, AX
	MOVQ	R14, DI
	SYSCALL
	INCQ	R14
	JMP	crloop

// fail: AX holds the errno; R13 the failing op.
fail:
	MOVQ	AX, ST_ERRNO(R12)
	MOVQ	OP_STEP(R13), CX
	MOVQ	CX, ST_STEP(R12)
	MOVQ	$127, DI
	MOVQ	$SYS_exit_group, AX
	SYSCALL
	JMP	fail
