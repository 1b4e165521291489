/* Clone trampolines for the spawn engine.
 *
 * Both take the child's function and argument from the top of the new
 * stack, where the caller stored them: [top-16] = arg, [top-8] = fn. The
 * child starts with rsp = top-16, pops both, calls fn(arg) on its own stack
 * and exits with fn's result; it never returns into the caller's frame,
 * which belongs to the suspended parent.
 *
 * long fl_clone3_raw(struct clone_args *ca, size_t size)
 *   ca->stack and ca->stack_size must describe [stack, top-16).
 * long fl_clone_raw(unsigned long flags, void *sp, int *parent_tid)
 *   sp = top-16.
 * Both return the child's pid or -errno in the parent. */

	.text

	.globl	fl_clone3_raw
	.hidden	fl_clone3_raw
	.type	fl_clone3_raw, @function
fl_clone3_raw:
	.cfi_startproc
	movl	$435, %eax		/* clone3 */
	syscall
	testq	%rax, %rax
	jz	.Lchild
	ret
	.cfi_endproc
	.size	fl_clone3_raw, .-fl_clone3_raw

	.globl	fl_clone_raw
	.hidden	fl_clone_raw
	.type	fl_clone_raw, @function
fl_clone_raw:
	.cfi_startproc
	xorl	%r10d, %r10d		/* child_tid */
	xorl	%r8d, %r8d		/* tls */
	movl	$56, %eax		/* clone */
	syscall
	testq	%rax, %rax
	jz	.Lchild
	ret
	.cfi_endproc
	.size	fl_clone_raw, .-fl_clone_raw

.Lchild:
	.cfi_startproc
	.cfi_undefined rip
	xorl	%ebp, %ebp		/* outermost frame */
	popq	%rdi			/* arg */
	popq	%rax			/* fn; rsp is now 16-byte aligned */
	call	*%rax
	movl	%eax, %edi
	movl	$231, %eax		/* exit_group */
	syscall
	hlt
	.cfi_endproc

	.section .note.GNU-stack,"",@progbits
