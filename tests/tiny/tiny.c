/*
 * forkless-tiny: the smallest useful spawn target for benchmarks.
 *
 * A static program with no C library: _start calls exit_group(0) by raw
 * syscall and does nothing else, so a benchmark measures the spawner, not
 * the child's startup.
 *
 * Build: gcc -O2 -Wall -Wextra -Werror -static -nostdlib \
 *            -fno-stack-protector -o bin/forkless-tiny tests/tiny/tiny.c
 */

#if defined(__x86_64__)
__asm__(
	".text\n"
	".globl _start\n"
	".type _start, @function\n"
	"_start:\n"
	"	movl $231, %eax\n"	/* __NR_exit_group */
	"	xorl %edi, %edi\n"	/* status 0 */
	"	syscall\n"
	"	hlt\n"			/* not reached */
	".size _start, . - _start\n");
#elif defined(__aarch64__)
__asm__(
	".text\n"
	".globl _start\n"
	".type _start, %function\n"
	"_start:\n"
	"	mov x8, #94\n"		/* __NR_exit_group */
	"	mov x0, #0\n"		/* status 0 */
	"	svc #0\n"
	"	brk #0\n"		/* not reached */
	".size _start, . - _start\n");
#else
#error "forkless-tiny supports only x86_64 and aarch64"
#endif
