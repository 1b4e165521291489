/* Raw x86-64 system calls that return -errno and never touch errno: safe
 * in a CLONE_VM child, which shares the parent thread's TLS. */
#ifndef FL_SYSCALL_H
#define FL_SYSCALL_H

#if !defined(__x86_64__)
#error "libforkless supports x86-64 only"
#endif

static inline long fl_sys6(long n, long a, long b, long c, long d, long e, long f)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}

#define fl_sys0(n) fl_sys6((n), 0, 0, 0, 0, 0, 0)
#define fl_sys1(n, a) fl_sys6((n), (long)(a), 0, 0, 0, 0, 0)
#define fl_sys2(n, a, b) fl_sys6((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define fl_sys3(n, a, b, c) fl_sys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define fl_sys4(n, a, b, c, d) fl_sys6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define fl_sys5(n, a, b, c, d, e) fl_sys6((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)

static inline int fl_is_err(long r) { return (unsigned long)r > -4096UL; }

#endif
