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

#include "vfork_trampoline.inc"

	fl_vfork_trampoline vfork, fl_vfork_entry@PLT

	.section .note.GNU-stack,"",@progbits
