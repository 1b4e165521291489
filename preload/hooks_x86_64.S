/* __forkless_vfork_hook_v1: a patched glibc's __vfork tail-jumps here with
 * the unhooked vfork in %rdi and its caller's return address on top of the
 * stack (forkless_hook.h). The same shape as vfork in vfork_x86_64.S: a C
 * function decides and returns, then the stack is exactly as at entry.
 * fl_vfork_hook_entry (hooks.c) takes %rdi as its argument and returns
 * {st, jump} in rax:rdx: st == NULL tail-jumps to jump (the unhooked vfork
 * or glibc's, with the caller recorded); otherwise lazy vfork, saved and
 * resumed as vfork_x86_64.S describes. */

#include "vfork_trampoline.inc"

	fl_vfork_trampoline __forkless_vfork_hook_v1, fl_vfork_hook_entry

	.section .note.GNU-stack,"",@progbits
