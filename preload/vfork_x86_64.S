/* vfork, interposed. A C wrapper that calls the real vfork and returns is
 * wrong: the child would return through the wrapper's frame and the parent
 * would later resume on a clobbered one. Here the pre-hook is called and
 * returns first; the stack is then exactly as at entry and the real vfork
 * is entered by a jump, so both processes return straight to our caller.
 *
 * fl_vfork_prehook (fork.c) records the caller for fl_vfork_child and
 * returns the real vfork. vfork takes no arguments, so the registers it
 * clobbers do not matter. */

	.text
	.globl	vfork
	.type	vfork, @function
vfork:
	.cfi_startproc
	subq	$8, %rsp		/* 16-byte alignment for the call */
	.cfi_adjust_cfa_offset 8
	call	fl_vfork_prehook@PLT
	addq	$8, %rsp
	.cfi_adjust_cfa_offset -8
	jmp	*%rax
	.cfi_endproc
	.size	vfork, .-vfork

	.section .note.GNU-stack,"",@progbits
