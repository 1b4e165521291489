/* __forkless_vfork_hook_v1: a patched glibc's __vfork tail-jumps here with
 * the unhooked vfork in %rdi and its caller's return address on top of the
 * stack (forkless_hook.h). The same shape as vfork in vfork_x86_64.S: a C
 * function decides and returns, then the stack is exactly as at entry.
 * fl_vfork_hook_entry (hooks.c) takes %rdi as its argument and returns
 * {st, jump} in rax:rdx: st == NULL tail-jumps to jump (the unhooked vfork
 * or glibc's, with the caller recorded); otherwise lazy vfork, saved and
 * resumed as vfork_x86_64.S describes. */

	.text
	.globl	__forkless_vfork_hook_v1
	.type	__forkless_vfork_hook_v1, @function
__forkless_vfork_hook_v1:
	.cfi_startproc
	subq	$8, %rsp		/* 16-byte alignment for the call */
	.cfi_adjust_cfa_offset 8
	call	fl_vfork_hook_entry
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
	.size	__forkless_vfork_hook_v1, .-__forkless_vfork_hook_v1

	.section .note.GNU-stack,"",@progbits
