/* Lazy vfork: the pieces that cannot be C (see lazyvfork.c).
 *
 * struct lz begins with the saved vfork context (offsets used below and in
 * vfork_x86_64.S): rbx 0, rbp 8, r12 16, r13 24, r14 32, r15 40, rsp 48,
 * rip 56, mxcsr 64, x87 control word 68; the dispatch selector byte at 72.
 *
 * void fl_lz_resume(struct lz *st, long rax)
 *   Returns from the vfork call that entered child mode, a second time,
 *   with rax: the longjmp half. Never returns.
 * long fl_lz_clone(struct lz *st)
 *   A real vfork made at this moment: clone(CLONE_VM|CLONE_VFORK|SIGCHLD)
 *   on the same stack. The child returns 0 through this frame (intact: the
 *   parent is suspended). The parent, once the child has exec'd or exited,
 *   must not touch the stack the child ran on: it switches to the stack of
 *   the vfork caller (everything below the saved rsp is dead now) and calls
 *   fl_lz_parent(st, pid or -errno), which never returns.
 * long fl_lz_exit_child(int status, int setpgrp)
 *   A real vfork child that only exits with status (after setpgid(0, 0)
 *   when setpgrp is set). Returns its pid or -errno; the child touches no
 *   memory at all.
 * fl_lz_restorer .. fl_lz_restorer_end
 *   The SIGSYS handler's sa_restorer: the one range of code from which
 *   Syscall User Dispatch lets a system call through while the selector
 *   blocks (rt_sigreturn back into the program's code). */

	.text

	.globl	fl_lz_resume
	.hidden	fl_lz_resume
	.type	fl_lz_resume, @function
fl_lz_resume:
	.cfi_startproc
	movq	%rsi, %rax
	ldmxcsr	64(%rdi)
	fldcw	68(%rdi)
	movq	0(%rdi), %rbx
	movq	8(%rdi), %rbp
	movq	16(%rdi), %r12
	movq	24(%rdi), %r13
	movq	32(%rdi), %r14
	movq	40(%rdi), %r15
	movq	48(%rdi), %rsp
	jmpq	*56(%rdi)
	.cfi_endproc
	.size	fl_lz_resume, .-fl_lz_resume

	.globl	fl_lz_clone
	.hidden	fl_lz_clone
	.type	fl_lz_clone, @function
fl_lz_clone:
	.cfi_startproc
	movq	%rdi, %r9		/* st: r9 is no clone argument */
	movl	$0x4111, %edi		/* CLONE_VM | CLONE_VFORK | SIGCHLD */
	xorl	%esi, %esi		/* same stack */
	xorl	%edx, %edx
	xorl	%r10d, %r10d
	xorl	%r8d, %r8d
	movl	$56, %eax		/* clone */
	syscall
	testq	%rax, %rax
	jnz	1f
	ret				/* the child */
1:
	movq	48(%r9), %rsp		/* the vfork caller's stack */
	subq	$128, %rsp
	andq	$-16, %rsp
	movq	%r9, %rdi
	movq	%rax, %rsi
	call	fl_lz_parent
	ud2
	.cfi_endproc
	.size	fl_lz_clone, .-fl_lz_clone

	.globl	fl_lz_exit_child
	.hidden	fl_lz_exit_child
	.type	fl_lz_exit_child, @function
fl_lz_exit_child:
	.cfi_startproc
	pushq	%r12
	.cfi_adjust_cfa_offset 8
	.cfi_offset r12, -16
	movl	%esi, %r12d
	movl	%edi, %r9d
	movl	$0x4111, %edi		/* CLONE_VM | CLONE_VFORK | SIGCHLD */
	xorl	%esi, %esi
	xorl	%edx, %edx
	xorl	%r10d, %r10d
	xorl	%r8d, %r8d
	movl	$56, %eax
	syscall
	testq	%rax, %rax
	jnz	2f
	testl	%r12d, %r12d		/* the child: registers only */
	jz	1f
	xorl	%edi, %edi
	xorl	%esi, %esi
	movl	$109, %eax		/* setpgid(0, 0) */
	syscall
1:
	movl	%r9d, %edi
	movl	$231, %eax		/* exit_group */
	syscall
	hlt
2:
	popq	%r12
	.cfi_adjust_cfa_offset -8
	.cfi_restore r12
	ret
	.cfi_endproc
	.size	fl_lz_exit_child, .-fl_lz_exit_child

	.globl	fl_lz_restorer
	.hidden	fl_lz_restorer
	.globl	fl_lz_restorer_end
	.hidden	fl_lz_restorer_end
	.type	fl_lz_restorer, @function
	.align	16
fl_lz_restorer:
	movq	$15, %rax		/* rt_sigreturn */
	syscall
	hlt
	/* The kernel checks the address after the syscall instruction: the
	 * range ends past it. */
fl_lz_restorer_end:
	.size	fl_lz_restorer, .-fl_lz_restorer

	.section .note.GNU-stack,"",@progbits
