/* vfork, interposed. A C wrapper that calls the real vfork and returns is
 * wrong: the child would return through the wrapper's frame and the parent
 * would later resume on a clobbered one. Here a C function decides first
 * and returns; the stack is then exactly as at entry.
 *
 * fl_vfork_entry (lazyvfork.c) returns {st, jump} in rax:rdx:
 *  - st == NULL: jump to the real vfork (glibc's, after fl_vfork_prehook
 *    recorded the caller for the trace) with a tail jump, so that both
 *    processes return straight to our caller. vfork takes no arguments,
 *    so the registers the call clobbered do not matter.
 *  - st != NULL: lazy vfork. The thread is now in child mode (signals
 *    blocked, Syscall User Dispatch on with the selector at "allow"). The
 *    caller's context is saved in st like setjmp does (callee-saved
 *    registers, rsp after the return, the return address, MXCSR and the
 *    x87 control word), the selector is set to "block", and vfork returns
 *    0 without a child. fl_lz_resume returns from here a second time, with
 *    the child's pid. */

	.text
	.globl	vfork
	.type	vfork, @function
vfork:
	.cfi_startproc
	subq	$8, %rsp		/* 16-byte alignment for the call */
	.cfi_adjust_cfa_offset 8
	call	fl_vfork_entry@PLT
	addq	$8, %rsp
	.cfi_adjust_cfa_offset -8
	testq	%rax, %rax
	jz	1f
	.cfi_remember_state
	popq	%rcx			/* the return address */
	.cfi_adjust_cfa_offset -8
	.cfi_register rip, rcx
	movq	%rbx, 0(%rax)
	movq	%rbp, 8(%rax)
	movq	%r12, 16(%rax)
	movq	%r13, 24(%rax)
	movq	%r14, 32(%rax)
	movq	%r15, 40(%rax)
	movq	%rsp, 48(%rax)
	movq	%rcx, 56(%rax)
	stmxcsr	64(%rax)
	fnstcw	68(%rax)
	movb	$1, 72(%rax)		/* selector: block */
	xorl	%eax, %eax
	jmpq	*%rcx
1:
	.cfi_restore_state
	jmpq	*%rdx
	.cfi_endproc
	.size	vfork, .-vfork

	.section .note.GNU-stack,"",@progbits
