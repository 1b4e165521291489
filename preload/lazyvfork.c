/* Lazy vfork: vfork+exec becomes a spawn.
 *
 * vfork (vfork_x86_64.S) saves the caller's context and returns 0 without
 * making a child: the thread is in child mode. The code that runs now is
 * the child's, on the parent's thread, exactly as a vfork child runs on
 * the parent's memory. Until it execs or exits:
 *
 *  - Every signal but SIGSYS and the synchronous faults is blocked (a vfork
 *    parent's thread runs no handler until the vfork returns); the
 *    caller's mask is restored when it does, and what arrived meanwhile is
 *    delivered then.
 *  - Syscall User Dispatch is on for the thread, with a selector byte in
 *    the thread's state: while the selector blocks, every system call made
 *    outside this library's sigreturn trampoline raises SIGSYS before it
 *    runs. So nothing the child's code does reaches the parent unseen.
 *    The library's own entry points set the selector to "allow" while they
 *    run and back to "block" before returning to the program.
 *  - Calls that a spawn can express are recorded in a model of the child
 *    and answered as the child's kernel would answer them: descriptors
 *    (close, dup, dup2, dup3, close_range, fcntl F_DUPFD*, F_GETFD,
 *    F_SETFD, ioctl FIOCLEX/FIONCLEX, open/openat/creat), chdir, fchdir,
 *    umask, setpgid(0, 0), the signal mask and dispositions, the id
 *    changes RESETIDS can express, and read-only questions whose answer
 *    is the same in the child (getuid..., getppid, getpgrp). Memory
 *    operations (mmap of anonymous memory, munmap, mprotect, brk, futex
 *    wait/wake) act on the shared address space exactly as a vfork child's
 *    would and run as they are. The fast paths are exported functions
 *    (close, dup*, close_range, sigaction, sigprocmask, pthread_sigmask:
 *    CPython's child makes ~70 such calls); everything else reaches the
 *    SIGSYS handler, which decodes the system call.
 *  - An exec builds a spawn from the model (fl_spawn) and, once the new
 *    program runs, returns from the vfork again with its pid. A failed
 *    exec returns -1 with errno, still in child mode.
 *  - _exit, and anything the model cannot express (getpid, write, kill, a
 *    raw syscall(), ...), makes the real child at that moment: a real
 *    CLONE_VM|CLONE_VFORK clone on the same stack, which applies the
 *    recorded state to itself and then makes the call natively and goes
 *    on with the program's code; the parent resumes at the vfork with that
 *    child's pid once it has exec'd or exited. _exit makes a child that
 *    only exits with the status.
 *
 * Descriptors the child names are captured when it names them: the model
 * holds a private close-on-exec duplicate ("pin") of each, at a high number
 * in the parent's table, so that another thread closing or reusing the
 * number cannot change what the child gets. Closing a descriptor would
 * drop the process's POSIX record locks on its file, so a file this
 * process holds such a lock on is never pinned: that makes the real child.
 * A file the child opens is opened by the parent (same credentials, the
 * child's directory), with O_NOCTTY, and only when the answer cannot
 * differ from the child's: no /proc magic links, no procfs, no recorded
 * umask with O_CREAT, no recorded id change; otherwise the real child.
 *
 * FORKLESS_VFORK=real turns all of this off: vfork is glibc's, traced.
 * FORKLESS_VFORK_LOG=FILE appends one line per lazy vfork: how it ended
 * (spawn, exit, fallback and the reason, error). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <ucontext.h>
#include <unistd.h>

#include "forkless.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

#define EXPORT __attribute__((visibility("default")))

#ifndef PR_SET_SYSCALL_USER_DISPATCH
#define PR_SET_SYSCALL_USER_DISPATCH 59
#define PR_SYS_DISPATCH_OFF 0
#define PR_SYS_DISPATCH_ON 1
#endif
#define SEL_ALLOW 0
#define SEL_BLOCK 1
#ifndef SYS_USER_DISPATCH
#define SYS_USER_DISPATCH 2 /* si_code of a dispatched system call */
#endif
#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000
#endif
#ifndef AT_EACCESS
#define AT_EACCESS 0x200
#endif

/* glibc's own entry points under their public aliases: the unprefixed
 * names are ours. */
extern int __close(int);
extern int __dup2(int, int);
extern int __sigaction(int, const struct sigaction *, struct sigaction *);

/* ---- assembly (lazyvfork_x86_64.S) ---- */

struct lz;
FL_HIDDEN __attribute__((noreturn)) void fl_lz_resume(struct lz *st, long rax);
FL_HIDDEN long fl_lz_clone(struct lz *st);
FL_HIDDEN long fl_lz_exit_child(int status, int setpgrp);
FL_HIDDEN void fl_lz_restorer(void);
FL_HIDDEN void fl_lz_restorer_end(void);
FL_HIDDEN __attribute__((noreturn)) void fl_lz_parent(struct lz *st, long pid);

/* ---- the per-thread state ---- */

enum { LZ_NONE, LZ_CHILD, LZ_REAL };

#define LZ_MAXOV 64     /* descriptors the child changed */
#define LZ_MAXRANGE 16  /* close_range calls, merged */
#define LZ_MAXPIN 96    /* our private duplicates */
#define LZ_MAXLOCK 32   /* files with our POSIX locks */
#define LZ_MAXATT 8     /* failed exec attempts kept for the trace */
#define LZ_ARENA 32768  /* their paths and argv */
#define LZ_PIN_MIN 64   /* pins sit at or above this, when the limit allows */
#define LZ_FORCE (-100000L) /* an operation's answer: make the real child */

struct lz_ctx {
	uint64_t rbx, rbp, r12, r13, r14, r15, rsp, rip;
	uint32_t mxcsr;
	uint16_t fpucw, pad;
};

/* struct kernel_sigaction as rt_sigaction takes it */
struct lz_ksa {
	unsigned long handler, flags, restorer;
	uint64_t mask;
};

struct lz_ov {
	int n;       /* the child's descriptor */
	int pin;     /* what it refers to (a pin), or -1: closed */
	int cloexec; /* its FD_CLOEXEC */
};

struct lz_att {
	int err;
	uint64_t dur;
	const char *path;
	char **argv;
	int nfd;        /* the descriptors the program would have got */
	int *fd;        /* in the arena */
	char **target;
};

struct lz {
	struct lz_ctx ctx;  /* 0: the vfork caller (the .S files) */
	volatile char sel;  /* 72: the dispatch selector */
	int mode;
	uint64_t callermask; /* the thread's mask at the vfork */
	uint64_t mask;       /* the child's mask */
	uint64_t t0;
	const char *reason;  /* why a real child was made */
	long reason_nr;      /* the system call, for reason "syscall" */
	int exec_traced;     /* the real child traced its exec */

	/* descriptors */
	int nov;
	struct lz_ov ov[LZ_MAXOV];
	int nrange;
	struct { int lo, hi; } range[LZ_MAXRANGE];
	int npin;
	int pin[LZ_MAXPIN];
	int cwd;    /* pin of the child's working directory, or -1 */
	int rootfd; /* "/" (O_PATH), for resolution, or -1 */
	long nofile;
	int locks_loaded, lock_unknown, nlock;
	struct { uint64_t dev, ino; } lock[LZ_MAXLOCK];

	/* process attributes */
	int umask; /* -1: the parent's */
	int pgrp;  /* setpgid(0, 0) recorded */
	int ids_loaded;
	unsigned uid[3], gid[3];   /* the parent's r, e, s */
	unsigned cuid[3], cgid[3]; /* the child's */
	uint64_t sigrec;           /* signals with a recorded action */
	struct lz_ksa sig[64];

	/* failed exec attempts, traced when the child's pid is known */
	int natt;
	struct lz_att att[LZ_MAXATT];
	size_t arena_used;

	int sigsys_pending; /* a SIGSYS not ours arrived in child mode */
	siginfo_t sigsys_info;
	char arena[LZ_ARENA];
};

_Static_assert(offsetof(struct lz, ctx) == 0, "ctx at 0");
_Static_assert(offsetof(struct lz_ctx, rsp) == 48, "rsp at 48");
_Static_assert(offsetof(struct lz_ctx, rip) == 56, "rip at 56");
_Static_assert(offsetof(struct lz_ctx, mxcsr) == 64, "mxcsr at 64");
_Static_assert(offsetof(struct lz_ctx, fpucw) == 68, "fpucw at 68");
_Static_assert(offsetof(struct lz, sel) == 72, "sel at 72");

static __thread struct lz *lz_tls __attribute__((tls_model("initial-exec")));

#define LZ_SIZE ((sizeof(struct lz) + 4095) & ~(size_t)4095)

static pthread_key_t lz_key;
static pthread_once_t lz_key_once = PTHREAD_ONCE_INIT;
/* At thread exit; later destructors may still call close() and the like. */
static void lz_free(void *p)
{
	lz_tls = 0;
	munmap(p, LZ_SIZE);
}
static void lz_make_key(void) { pthread_key_create(&lz_key, lz_free); }

static struct lz *lz_get(void)
{
	if (lz_tls)
		return lz_tls;
	pthread_once(&lz_key_once, lz_make_key);
	void *m = mmap(0, LZ_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return 0;
	lz_tls = m;
	pthread_setspecific(lz_key, m);
	return m;
}

static inline struct lz *lz_active(void)
{
	struct lz *st = lz_tls;
	return __builtin_expect(st != 0 && st->mode == LZ_CHILD, 0) ? st : 0;
}

int fl_lazy_child(void) { return lz_active() != 0; }

const char *fl_lazy_reason(void)
{
	struct lz *st = lz_tls;
	return st ? st->reason : 0;
}

void fl_lazy_note_exec(void)
{
	struct lz *st = lz_tls;
	if (st)
		st->exec_traced = 1;
}

/* ---- process-wide state ---- */

static int lz_sud_broken; /* Syscall User Dispatch refused once */
static pthread_mutex_t lz_mu = PTHREAD_MUTEX_INITIALIZER;
static int lz_users;           /* threads in child mode (our SIGSYS handler is in) */
static struct lz_ksa lz_prog;  /* the program's SIGSYS action meanwhile */

void fl_lazy_after_fork(void)
{
	if (lz_tls)
		lz_tls->mode = LZ_NONE;
	/* Threads that were in child mode do not exist here: the program's
	 * SIGSYS action comes back. Plain stores: _Fork's child too. */
	static const pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
	memcpy(&lz_mu, &fresh, sizeof lz_mu);
	if (lz_users) {
		lz_users = 0;
		fl_sys4(SYS_rt_sigaction, SIGSYS, &lz_prog, 0, 8);
	}
}
static unsigned long lz_glibc_restorer;
static char lz_log_path[512];
static pthread_once_t lz_env_once = PTHREAD_ONCE_INIT;

static void lz_read_env(void)
{
	const char *v = getenv("FORKLESS_VFORK_LOG");
	if (v && v[0] == '/' && strlen(v) < sizeof lz_log_path)
		strcpy(lz_log_path, v);
}

static inline uint64_t sigbit(int sig) { return 1ULL << (sig - 1); }
#define SYNC_SIGS (sigbit(SIGSEGV) | sigbit(SIGBUS) | sigbit(SIGILL) | sigbit(SIGFPE) | sigbit(SIGTRAP))
#define UNBLOCKABLE (sigbit(SIGKILL) | sigbit(SIGSTOP))

/* ---- the log (FORKLESS_VFORK_LOG) ---- */

static char *put_s(char *p, char *end, const char *s)
{
	while (*s && p < end)
		*p++ = *s++;
	return p;
}

static char *put_l(char *p, char *end, long v)
{
	char d[24];
	int i = sizeof d;
	unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;
	do
		d[--i] = (char)('0' + u % 10);
	while ((u /= 10) != 0);
	if (v < 0)
		d[--i] = '-';
	while (i < (int)sizeof d && p < end)
		*p++ = d[i++];
	return p;
}

static void lz_log(struct lz *st, const char *result, long child)
{
	if (!lz_log_path[0])
		return;
	char buf[256], *p = buf, *end = buf + sizeof buf - 1;
	p = put_s(p, end, "pid=");
	p = put_l(p, end, fl_sys0(SYS_getpid));
	p = put_s(p, end, " tid=");
	p = put_l(p, end, fl_sys0(SYS_gettid));
	p = put_s(p, end, " result=");
	p = put_s(p, end, result);
	if (st->reason) {
		p = put_s(p, end, " reason=");
		p = put_s(p, end, st->reason);
		if (st->reason_nr >= 0) {
			p = put_s(p, end, ":");
			p = put_l(p, end, st->reason_nr);
		}
	}
	p = put_s(p, end, " child=");
	p = put_l(p, end, child);
	*p++ = '\n';
	long fd = fl_sys4(SYS_openat, AT_FDCWD, lz_log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	fl_sys3(SYS_write, fd, buf, p - buf);
	fl_sys1(SYS_close, fd);
}

/* ---- SIGSYS: ours while any thread is in child mode ---- */

static void lz_sigsys(int sig, siginfo_t *si, void *ucv);

static int lz_sigsys_get(void)
{
	int rc = 0;
	pthread_mutex_lock(&lz_mu);
	if (lz_users == 0) {
		struct lz_ksa prog;
		if (fl_sys4(SYS_rt_sigaction, SIGSYS, 0, &prog, 8) != 0) {
			rc = -1;
			goto out;
		}
		lz_prog = prog;
		if (!lz_glibc_restorer) {
			/* Learn glibc's sa_restorer (a hidden symbol): the
			 * child's sigaction calls must record what glibc
			 * would pass to the kernel. Our handler meanwhile,
			 * which passes a SIGSYS on to lz_prog. */
			struct sigaction sa;
			memset(&sa, 0, sizeof sa);
			sa.sa_sigaction = lz_sigsys;
			sa.sa_flags = SA_SIGINFO;
			struct lz_ksa k;
			if (__sigaction(SIGSYS, &sa, 0) == 0 && fl_sys4(SYS_rt_sigaction, SIGSYS, 0, &k, 8) == 0 &&
			    (k.flags & SA_RESTORER))
				lz_glibc_restorer = k.restorer;
		}
		struct lz_ksa ours = {(unsigned long)lz_sigsys, SA_SIGINFO | SA_RESTORER,
				      (unsigned long)fl_lz_restorer, 0};
		if (!lz_glibc_restorer || fl_sys4(SYS_rt_sigaction, SIGSYS, &ours, 0, 8) != 0) {
			fl_sys4(SYS_rt_sigaction, SIGSYS, &lz_prog, 0, 8);
			rc = -1;
			goto out;
		}
	}
	lz_users++;
out:
	pthread_mutex_unlock(&lz_mu);
	return rc;
}

static void lz_sigsys_put(void)
{
	pthread_mutex_lock(&lz_mu);
	if (--lz_users == 0)
		fl_sys4(SYS_rt_sigaction, SIGSYS, &lz_prog, 0, 8);
	pthread_mutex_unlock(&lz_mu);
}

/* A SIGSYS that is not a dispatched call of a thread in child mode goes
 * where the program wanted it (seccomp's SECCOMP_RET_TRAP, kill). */
static void lz_chain(struct lz *st, int sig, siginfo_t *si, void *uc)
{
	if (st && st->mode == LZ_CHILD) {
		/* The thread is a vfork parent: later, like any signal. */
		st->sigsys_pending = 1;
		st->sigsys_info = *si;
		return;
	}
	struct lz_ksa p = lz_prog;
	if (p.handler == (unsigned long)SIG_IGN)
		return;
	if (p.handler == (unsigned long)SIG_DFL) {
		/* The default action (a core dump): deliver it again with
		 * the program's disposition in place. */
		fl_sys4(SYS_rt_sigaction, SIGSYS, &p, 0, 8);
		fl_sys4(SYS_rt_tgsigqueueinfo, fl_sys0(SYS_getpid), fl_sys0(SYS_gettid), SIGSYS, si);
		return;
	}
	uint64_t old, add = p.mask;
	if (p.flags & SA_NODEFER)
		add &= ~sigbit(SIGSYS);
	fl_sys4(SYS_rt_sigprocmask, SIG_BLOCK, &add, &old, 8);
	if (p.flags & SA_RESETHAND)
		lz_prog.handler = (unsigned long)SIG_DFL;
	if (p.flags & SA_SIGINFO)
		((void (*)(int, siginfo_t *, void *))p.handler)(sig, si, uc);
	else
		((void (*)(int))p.handler)(sig);
	fl_sys4(SYS_rt_sigprocmask, SIG_SETMASK, &old, 0, 8);
}

/* ---- descriptors ---- */

static long lz_nofile(struct lz *st)
{
	if (!st->nofile) {
		struct { unsigned long cur, max; } lim;
		st->nofile = 1L << 20;
		if (fl_sys4(SYS_prlimit64, 0, RLIMIT_NOFILE, 0, &lim) == 0)
			st->nofile = lim.cur > INT_MAX ? INT_MAX : (long)lim.cur;
	}
	return st->nofile;
}

static struct lz_ov *lz_find(struct lz *st, int n)
{
	for (int i = 0; i < st->nov; i++)
		if (st->ov[i].n == n)
			return &st->ov[i];
	return 0;
}

static int lz_in_range(struct lz *st, int n)
{
	for (int i = 0; i < st->nrange; i++)
		if (n >= st->range[i].lo && n <= st->range[i].hi)
			return 1;
	return 0;
}

static int lz_is_pin(struct lz *st, int n)
{
	for (int i = 0; i < st->npin; i++)
		if (st->pin[i] == n)
			return 1;
	return 0;
}

/* lz_is_target: some override names n (pins must never sit there). */
static int lz_is_target(struct lz *st, int n) { return lz_find(st, n) != 0; }

/* lz_parent_fd resolves the child's descriptor n to a descriptor of this
 * process that refers to the same open file now, or -EBADF. */
static long lz_parent_fd(struct lz *st, int n)
{
	if (n < 0)
		return -EBADF;
	struct lz_ov *o = lz_find(st, n);
	if (o)
		return o->pin >= 0 ? o->pin : -EBADF;
	if (lz_in_range(st, n) || lz_is_pin(st, n))
		return -EBADF;
	return fl_sys2(SYS_fcntl, n, F_GETFD) >= 0 ? n : -EBADF;
}

static int lz_used(struct lz *st, int n) { return lz_parent_fd(st, n) >= 0; }

static long lz_lowest_free(struct lz *st, int min)
{
	long lim = lz_nofile(st);
	for (long n = min; n < lim; n++)
		if (!lz_used(st, (int)n))
			return n;
	return -EMFILE;
}

/* lz_load_locks reads which files this process holds POSIX locks on. */
static void lz_load_locks(struct lz *st)
{
	if (st->locks_loaded)
		return;
	st->locks_loaded = 1;
	long fd = fl_sys4(SYS_openat, AT_FDCWD, "/proc/locks", O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0) {
		st->lock_unknown = 1;
		return;
	}
	long me = fl_sys0(SYS_getpid);
	char buf[4096], line[256];
	size_t ll = 0;
	int over = 0;
	for (;;) {
		long got = fl_sys3(SYS_read, fd, buf, sizeof buf);
		if (got < 0) {
			st->lock_unknown = 1;
			break;
		}
		for (long i = 0; i <= got; i++) {
			if (i < got && buf[i] != '\n') {
				if (ll < sizeof line - 1)
					line[ll++] = buf[i];
				else
					over = 1;
				continue;
			}
			if (i == got && got > 0)
				break; /* a partial line: more to read */
			if (ll == 0)
				continue;
			line[ll] = 0;
			ll = 0;
			if (over) {
				over = 0;
				st->lock_unknown = 1;
				continue;
			}
			/* "1: POSIX  ADVISORY  WRITE 29856 fe:00:9986063 0 EOF";
			 * a waiter has "->" after the number. */
			char *tok[8];
			int nt = 0;
			for (char *p = line; *p && nt < 8;) {
				while (*p == ' ')
					p++;
				if (!*p)
					break;
				tok[nt++] = p;
				while (*p && *p != ' ')
					p++;
				if (*p)
					*p++ = 0;
			}
			if (nt < 6 || strcmp(tok[1], "POSIX") != 0)
				continue;
			if (strtol(tok[4], 0, 10) != me)
				continue;
			unsigned long maj, min;
			unsigned long long ino;
			char *e;
			maj = strtoul(tok[5], &e, 16);
			if (*e != ':')
				continue;
			min = strtoul(e + 1, &e, 16);
			if (*e != ':')
				continue;
			ino = strtoull(e + 1, &e, 10);
			if (st->nlock == LZ_MAXLOCK) {
				st->lock_unknown = 1;
				continue;
			}
			st->lock[st->nlock].dev = makedev(maj, min);
			st->lock[st->nlock].ino = ino;
			st->nlock++;
		}
		if (got == 0)
			break;
	}
	fl_sys1(SYS_close, fd);
}

/* lz_locked: closing a descriptor of this file could drop our POSIX
 * locks (or we cannot tell). */
static int lz_locked_stat(struct lz *st, const struct stat *sb)
{
	lz_load_locks(st);
	if (st->lock_unknown)
		return 1;
	for (int i = 0; i < st->nlock; i++)
		if (st->lock[i].dev == sb->st_dev && st->lock[i].ino == sb->st_ino)
			return 1;
	return 0;
}

static int lz_locked_fd(struct lz *st, long fd)
{
	struct stat sb;
	if (fl_sys2(SYS_fstat, fd, &sb) != 0)
		return 1;
	return lz_locked_stat(st, &sb);
}

static long lz_force(struct lz *st, const char *reason, long nr)
{
	st->reason = reason;
	st->reason_nr = nr;
	return LZ_FORCE;
}

/* lz_dup_high duplicates fd (close-on-exec) to a number no override
 * names, high when the limit allows. Only for files checked for locks. */
static long lz_dup_high(struct lz *st, long fd)
{
	long min = LZ_PIN_MIN < lz_nofile(st) ? LZ_PIN_MIN : 0;
	long p = fl_sys3(SYS_fcntl, fd, F_DUPFD_CLOEXEC, min);
	while (p >= 0 && lz_is_target(st, (int)p)) {
		long q = fl_sys3(SYS_fcntl, fd, F_DUPFD_CLOEXEC, p + 1);
		fl_sys1(SYS_close, p);
		p = q;
	}
	return p;
}

static long lz_add_pin(struct lz *st, long p)
{
	if (st->npin == LZ_MAXPIN) {
		fl_sys1(SYS_close, p);
		return lz_force(st, "descriptors", -1);
	}
	st->pin[st->npin++] = (int)p;
	return p;
}

/* lz_pin returns a pin for the child's descriptor n (which must be open in
 * the model): its current one, or a new duplicate of the parent's. */
static long lz_pin(struct lz *st, int n)
{
	struct lz_ov *o = lz_find(st, n);
	if (o)
		return o->pin >= 0 ? o->pin : -EBADF;
	long fd = lz_parent_fd(st, n);
	if (fd < 0)
		return fd;
	if (lz_locked_fd(st, fd))
		return lz_force(st, "lock", -1);
	long p = lz_dup_high(st, fd);
	if (p < 0)
		return lz_force(st, "descriptors", -1);
	return lz_add_pin(st, p);
}

/* lz_move_pin moves our pin at n away, n being named by an override now;
 * it returns the pin's new number. */
static long lz_move_pin(struct lz *st, int n)
{
	for (int i = 0; i < st->npin; i++) {
		if (st->pin[i] != n)
			continue;
		long p = lz_dup_high(st, n);
		while (p == n) /* impossible: n is in use */
			return lz_force(st, "descriptors", -1);
		if (p < 0)
			return lz_force(st, "descriptors", -1);
		st->pin[i] = (int)p;
		for (int k = 0; k < st->nov; k++)
			if (st->ov[k].pin == n)
				st->ov[k].pin = (int)p;
		if (st->cwd == n)
			st->cwd = (int)p;
		if (st->rootfd == n)
			st->rootfd = (int)p;
		fl_sys1(SYS_close, n); /* checked for locks when pinned */
		return p;
	}
	return n;
}

/* lz_set makes the child's n refer to pin (or closed: -1). */
static long lz_set(struct lz *st, int n, long pin, int cloexec)
{
	if (lz_is_pin(st, n)) {
		/* The override names n first, so the new place avoids it. */
		struct lz_ov *o = lz_find(st, n);
		if (!o && st->nov < LZ_MAXOV) {
			o = &st->ov[st->nov++];
			o->n = n, o->pin = -1, o->cloexec = 0;
		}
		long p = lz_move_pin(st, n);
		if (p < 0)
			return p;
		if (pin == n)
			pin = p;
	}
	struct lz_ov *o = lz_find(st, n);
	if (!o) {
		if (st->nov == LZ_MAXOV)
			return lz_force(st, "descriptors", -1);
		o = &st->ov[st->nov++];
		o->n = n;
	}
	o->pin = (int)pin;
	o->cloexec = pin >= 0 && cloexec;
	return 0;
}

static long lz_close(struct lz *st, int fd)
{
	if (!lz_used(st, fd))
		return -EBADF;
	long r = lz_set(st, fd, -1, 0);
	return r < 0 ? r : 0;
}

/* dup2/dup3 as the kernel checks them. */
static long lz_dup3(struct lz *st, unsigned oldfd, unsigned newfd, int flags, int is_dup2)
{
	if (is_dup2 && oldfd == newfd)
		return oldfd <= INT_MAX && lz_used(st, (int)oldfd) ? (long)oldfd : -EBADF;
	if (flags & ~O_CLOEXEC)
		return -EINVAL;
	if (oldfd == newfd)
		return -EINVAL;
	if (newfd >= (unsigned long)lz_nofile(st))
		return -EBADF;
	if (oldfd > INT_MAX)
		return -EBADF;
	long pin = lz_pin(st, (int)oldfd);
	if (pin < 0)
		return pin;
	long r = lz_set(st, (int)newfd, pin, (flags & O_CLOEXEC) != 0);
	return r < 0 ? r : (long)newfd;
}

static long lz_dupfd(struct lz *st, unsigned oldfd, unsigned long min, int cloexec, int is_fcntl)
{
	if (oldfd > INT_MAX || !lz_used(st, (int)oldfd))
		return -EBADF;
	if (is_fcntl && min >= (unsigned long)lz_nofile(st))
		return -EINVAL;
	long n = lz_lowest_free(st, (int)min);
	if (n < 0)
		return n;
	long pin = lz_pin(st, (int)oldfd);
	if (pin < 0)
		return pin;
	long r = lz_set(st, (int)n, pin, cloexec);
	return r < 0 ? r : n;
}

static long lz_setfd(struct lz *st, int fd, int cloexec)
{
	if (!lz_used(st, fd))
		return -EBADF;
	struct lz_ov *o = lz_find(st, fd);
	if (o) {
		o->cloexec = cloexec;
		return 0;
	}
	long pin = lz_pin(st, fd);
	if (pin < 0)
		return pin;
	long r = lz_set(st, fd, pin, cloexec);
	return r < 0 ? r : 0;
}

static long lz_close_range(struct lz *st, unsigned lo, unsigned hi, unsigned flags)
{
	if (flags & ~(CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC))
		return -EINVAL;
	if (lo > hi)
		return -EINVAL;
	if (flags & CLOSE_RANGE_CLOEXEC)
		return lz_force(st, "close_range", -1);
	if (lo > INT_MAX)
		return 0;
	int l = (int)lo, h = hi > INT_MAX ? INT_MAX : (int)hi;
	/* Overrides in the range are gone (their pins stay ours). */
	for (int i = 0; i < st->nov;) {
		if (st->ov[i].n >= l && st->ov[i].n <= h)
			st->ov[i] = st->ov[--st->nov];
		else
			i++;
	}
	/* Merge with the ranges it touches. */
	for (int i = 0; i < st->nrange;) {
		if (st->range[i].hi >= l - 1 && st->range[i].lo <= (h == INT_MAX ? h : h + 1)) {
			if (st->range[i].lo < l)
				l = st->range[i].lo;
			if (st->range[i].hi > h)
				h = st->range[i].hi;
			st->range[i] = st->range[--st->nrange];
		} else {
			i++;
		}
	}
	if (st->nrange == LZ_MAXRANGE)
		return lz_force(st, "descriptors", -1);
	st->range[st->nrange].lo = l;
	st->range[st->nrange].hi = h;
	st->nrange++;
	return 0;
}

static long lz_fcntl(struct lz *st, unsigned fd, unsigned cmd, unsigned long arg)
{
	if (fd > INT_MAX)
		return -EBADF;
	switch (cmd) {
	case F_DUPFD:
	case F_DUPFD_CLOEXEC:
		return lz_dupfd(st, fd, arg, cmd == F_DUPFD_CLOEXEC, 1);
	case F_GETFD: {
		long p = lz_parent_fd(st, (int)fd);
		if (p < 0)
			return p;
		struct lz_ov *o = lz_find(st, (int)fd);
		if (o)
			return o->cloexec ? FD_CLOEXEC : 0;
		return fl_sys2(SYS_fcntl, p, F_GETFD);
	}
	case F_SETFD:
		return lz_setfd(st, (int)fd, (arg & FD_CLOEXEC) != 0);
	case F_GETFL:
	case F_SETFL: {
		/* The open file description is shared with the parent: the
		 * same answer, the same effect as in a real vfork child. */
		long p = lz_parent_fd(st, (int)fd);
		if (p < 0)
			return p;
		return fl_sys3(SYS_fcntl, p, cmd, arg);
	}
	}
	return lz_force(st, "fcntl", (long)cmd);
}

/* ---- paths: the child's view from the parent ---- */

static int lz_ids_changed(struct lz *st)
{
	return st->ids_loaded && (memcmp(st->uid, st->cuid, sizeof st->uid) != 0 ||
				  memcmp(st->gid, st->cgid, sizeof st->gid) != 0);
}

static int lz_is_proc(long fd, const char *dot)
{
	struct statfs sf;
	long r = dot ? fl_sys2(SYS_statfs, dot, &sf) : fl_sys2(SYS_fstatfs, fd, &sf);
	return r != 0 || sf.f_type == PROC_SUPER_MAGIC;
}

/* lz_start gives the directory a path of the child starts from. */
static long lz_start(struct lz *st, int dirfd, const char *path)
{
	if (path[0] == '/') {
		if (st->rootfd < 0) {
			long r = fl_sys4(SYS_openat, AT_FDCWD, "/", O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
			if (r < 0)
				return lz_force(st, "path", -1);
			long p = r;
			if (r < LZ_PIN_MIN) {
				p = lz_dup_high(st, r);
				fl_sys1(SYS_close, r); /* O_PATH: no locks dropped */
				if (p < 0)
					return lz_force(st, "descriptors", -1);
			}
			if (lz_add_pin(st, p) < 0)
				return LZ_FORCE;
			st->rootfd = (int)p;
		}
		return st->rootfd;
	}
	long d;
	if (dirfd == AT_FDCWD)
		d = st->cwd >= 0 ? st->cwd : AT_FDCWD;
	else if ((d = lz_parent_fd(st, dirfd)) < 0)
		return d;
	/* Resolution never leaves the start's mount (RESOLVE_NO_XDEV); it
	 * must not be procfs, where "self" is the parent. */
	if (lz_is_proc(d, d == AT_FDCWD ? "." : 0))
		return lz_force(st, "path", -1);
	return d;
}

static long lz_openat2(long dir, const char *path, uint64_t flags, uint64_t mode, uint64_t resolve)
{
	struct open_how how = {.flags = flags, .mode = mode, .resolve = resolve};
	return fl_sys4(SYS_openat2, dir, path, &how, sizeof how);
}

/* lz_resolve opens path as the child would reach it: without crossing a
 * mount (so /proc/self and /dev/fd cannot be reached unseen) and without
 * magic links. A failure after a mount crossing cannot be trusted. */
static long lz_resolve(struct lz *st, long dir, const char *path, uint64_t flags, uint64_t mode)
{
	long r = lz_openat2(dir, path, flags, mode, RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS);
	if (r == -EXDEV) {
		r = lz_openat2(dir, path, flags, mode, RESOLVE_NO_MAGICLINKS);
		if (r < 0)
			return lz_force(st, "path", -1);
	}
	if (r >= 0) {
		if (lz_is_proc(r, 0)) {
			fl_sys1(SYS_close, r);
			return lz_force(st, "path", -1);
		}
		return r;
	}
	switch (-r) {
	case ENOENT:
	case ENOTDIR:
	case EACCES:
	case EEXIST:
	case EISDIR:
	case ENAMETOOLONG:
	case EROFS:
	case ETXTBSY:
	case ENXIO:
	case EPERM:
	case ENODEV:
	case EOPNOTSUPP:
		return r;
	}
	/* ELOOP (maybe a magic link), EINVAL (flags openat would ignore),
	 * ENOSYS, EAGAIN...: the real child does it. */
	return lz_force(st, "path", -1);
}

static long lz_open(struct lz *st, int dirfd, const char *path, int flags, unsigned mode)
{
	if (!path)
		return lz_force(st, "open", -1);
	int creates = (flags & O_CREAT) || (flags & __O_TMPFILE) == __O_TMPFILE;
	if (lz_ids_changed(st) || (creates && st->umask >= 0))
		return lz_force(st, "open", -1);
	long n = lz_lowest_free(st, 0);
	if (n < 0)
		return n;
	long dir = lz_start(st, dirfd, path);
	if (dir < 0 && dir != AT_FDCWD)
		return dir;
	/* A file we hold POSIX locks on must never be closed here. */
	struct stat sb;
	int at = (flags & O_NOFOLLOW) ? AT_SYMLINK_NOFOLLOW : 0;
	if (fl_sys4(SYS_newfstatat, dir, path, &sb, at) == 0 && lz_locked_stat(st, &sb))
		return lz_force(st, "lock", -1);
	long fd = lz_resolve(st, dir, path, (unsigned)flags | O_CLOEXEC | O_NOCTTY, creates ? mode & 07777 : 0);
	if (fd < 0)
		return fd;
	long p = fd;
	if (fd < LZ_PIN_MIN || lz_is_target(st, (int)fd) || fd == n) {
		p = lz_dup_high(st, fd);
		fl_sys1(SYS_close, fd);
		if (p < 0)
			return lz_force(st, "descriptors", -1);
	}
	if (lz_add_pin(st, p) < 0)
		return LZ_FORCE;
	long r = lz_set(st, (int)n, p, (flags & O_CLOEXEC) != 0);
	return r < 0 ? r : n;
}

static long lz_faccess_x(long fd)
{
	long r = fl_sys4(SYS_faccessat2, fd, "", X_OK, AT_EACCESS | AT_EMPTY_PATH);
	return r;
}

static long lz_chdir(struct lz *st, const char *path)
{
	if (!path || lz_ids_changed(st))
		return lz_force(st, "chdir", -1);
	long dir = lz_start(st, AT_FDCWD, path);
	if (dir < 0 && dir != AT_FDCWD)
		return dir;
	long fd = lz_resolve(st, dir, path, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
	if (fd < 0)
		return fd;
	long x = lz_faccess_x(fd);
	if (x == -EACCES) {
		fl_sys1(SYS_close, fd);
		return -EACCES;
	}
	if (x != 0) {
		fl_sys1(SYS_close, fd);
		return lz_force(st, "chdir", -1);
	}
	long p = fd;
	if (fd < LZ_PIN_MIN || lz_is_target(st, (int)fd)) {
		p = lz_dup_high(st, fd);
		fl_sys1(SYS_close, fd); /* O_PATH */
		if (p < 0)
			return lz_force(st, "descriptors", -1);
	}
	if (lz_add_pin(st, p) < 0)
		return LZ_FORCE;
	st->cwd = (int)p;
	return 0;
}

static long lz_fchdir(struct lz *st, int fd)
{
	if (lz_ids_changed(st))
		return lz_force(st, "chdir", -1);
	long p = lz_parent_fd(st, fd);
	if (p < 0)
		return p;
	struct stat sb;
	if (fl_sys2(SYS_fstat, p, &sb) != 0)
		return lz_force(st, "chdir", -1);
	if (!S_ISDIR(sb.st_mode))
		return -ENOTDIR;
	long x = lz_faccess_x(p);
	if (x == -EACCES)
		return -EACCES;
	if (x != 0)
		return lz_force(st, "chdir", -1);
	long pin = lz_pin(st, fd);
	if (pin < 0)
		return pin;
	st->cwd = (int)pin;
	return 0;
}

/* lz_parent_umask reads the umask without changing it (Linux 4.7+). */
static long lz_parent_umask(void) { return fl_read_octal("/proc/self/status", "Umask:"); }

static long lz_umask(struct lz *st, unsigned mask)
{
	long old = st->umask;
	if (old < 0 && (old = lz_parent_umask()) < 0)
		return lz_force(st, "umask", -1);
	st->umask = (int)(mask & 0777);
	return old;
}

/* ---- ids ---- */

static void lz_load_ids(struct lz *st)
{
	if (st->ids_loaded)
		return;
	fl_sys3(SYS_getresuid, &st->uid[0], &st->uid[1], &st->uid[2]);
	fl_sys3(SYS_getresgid, &st->gid[0], &st->gid[1], &st->gid[2]);
	memcpy(st->cuid, st->uid, sizeof st->uid);
	memcpy(st->cgid, st->gid, sizeof st->gid);
	st->ids_loaded = 1;
}

static int lz_one_of(const unsigned cur[3], unsigned v)
{
	return v == cur[0] || v == cur[1] || v == cur[2];
}

/* setresuid-like: each new id (-1 keeps it) must be one the child already
 * has (allowed without privilege, hence with it too); otherwise the real
 * child finds out what its privileges allow. */
static long lz_setres(struct lz *st, unsigned cur[3], unsigned r, unsigned e, unsigned s, long nr)
{
	unsigned v[3] = {r, e, s};
	for (int i = 0; i < 3; i++)
		if (v[i] != (unsigned)-1 && !lz_one_of(cur, v[i]))
			return lz_force(st, "ids", nr);
	for (int i = 0; i < 3; i++)
		if (v[i] != (unsigned)-1)
			cur[i] = v[i];
	return 0;
}

static long lz_setre(struct lz *st, unsigned cur[3], unsigned r, unsigned e, long nr)
{
	unsigned old_r = cur[0];
	if (r != (unsigned)-1 && r != cur[0] && r != cur[1])
		return lz_force(st, "ids", nr);
	if (e != (unsigned)-1 && !lz_one_of(cur, e))
		return lz_force(st, "ids", nr);
	if (r != (unsigned)-1)
		cur[0] = r;
	if (e != (unsigned)-1)
		cur[1] = e;
	if (r != (unsigned)-1 || (e != (unsigned)-1 && e != old_r))
		cur[2] = cur[1];
	return 0;
}

/* setuid(x): privileged and unprivileged callers differ, so only the
 * no-op is answered here. */
static long lz_set1(struct lz *st, unsigned cur[3], unsigned x, long nr)
{
	if (cur[0] == x && cur[1] == x && cur[2] == x)
		return 0;
	return lz_force(st, "ids", nr);
}

/* lz_resetids: the child's ids as a spawn can make them: 0 unchanged, 1
 * RESETIDS (effective := real, for uid and gid alike), -1 not at all. */
static int lz_resetids(struct lz *st)
{
	if (!lz_ids_changed(st))
		return 0;
	unsigned wu[3] = {st->uid[0], st->uid[0], st->uid[2]};
	unsigned wg[3] = {st->gid[0], st->gid[0], st->gid[2]};
	if (memcmp(st->cuid, wu, sizeof wu) == 0 && memcmp(st->cgid, wg, sizeof wg) == 0)
		return 1;
	return -1;
}

/* ---- signals ---- */

static void lz_query_parent(int sig, struct lz_ksa *k)
{
	if (sig == SIGSYS) {
		*k = lz_prog;
		return;
	}
	if (fl_sys4(SYS_rt_sigaction, sig, 0, k, 8) != 0)
		memset(k, 0, sizeof *k);
}

static long lz_rt_sigaction(struct lz *st, int sig, const struct lz_ksa *act, struct lz_ksa *oact,
			    unsigned long size)
{
	if (size != 8 || sig < 1 || sig > 64)
		return -EINVAL;
	if (act && (sig == SIGKILL || sig == SIGSTOP))
		return -EINVAL;
	struct lz_ksa old;
	if (st->sigrec & sigbit(sig))
		old = st->sig[sig - 1];
	else
		lz_query_parent(sig, &old);
	if (act) {
		st->sig[sig - 1] = *act;
		st->sig[sig - 1].mask &= ~UNBLOCKABLE;
		st->sigrec |= sigbit(sig);
	}
	if (oact)
		*oact = old;
	return 0;
}

static long lz_rt_sigprocmask(struct lz *st, int how, const uint64_t *set, uint64_t *old, unsigned long size)
{
	if (size != 8)
		return -EINVAL;
	uint64_t m = st->mask;
	if (set) {
		switch (how) {
		case SIG_BLOCK:
			m |= *set;
			break;
		case SIG_UNBLOCK:
			m &= ~*set;
			break;
		case SIG_SETMASK:
			m = *set;
			break;
		default:
			return -EINVAL;
		}
	}
	if (old)
		*old = st->mask;
	st->mask = m & ~UNBLOCKABLE;
	return 0;
}

/* ---- the real child ---- */

static int cmp_int(const void *x, const void *y)
{
	int a = *(const int *)x, b = *(const int *)y;
	return (a > b) - (a < b);
}

/* lz_kept fills t with the override targets that stay open, sorted
 * (close-on-exec ones too when cloexec is set). */
static int lz_kept(struct lz *st, int *t, int cloexec)
{
	int k = 0;
	for (int i = 0; i < st->nov; i++)
		if (st->ov[i].pin >= 0 && (cloexec || !st->ov[i].cloexec))
			t[k++] = st->ov[i].n;
	qsort(t, (size_t)k, sizeof *t, cmp_int);
	return k;
}

/* lz_pieces splits [lo, hi] around the sorted descriptors t. Ranges are
 * disjoint, so all the pieces of all ranges are at most nrange + nt. */
static int lz_pieces(long lo, long hi, const int *t, int nt, long (*out)[2])
{
	int k = 0;
	long cur = lo;
	for (int j = 0; j < nt; j++) {
		if (t[j] < cur || t[j] > hi)
			continue;
		if (t[j] - 1L >= cur)
			out[k][0] = cur, out[k][1] = t[j] - 1L, k++;
		cur = t[j] + 1L;
	}
	if (cur <= hi)
		out[k][0] = cur, out[k][1] = hi, k++;
	return k;
}

/* lz_replay applies the model to this process, the real child. */
static int lz_replay(struct lz *st)
{
	long r;
	if (st->cwd >= 0 && fl_sys1(SYS_fchdir, st->cwd) != 0)
		return -1;
	for (int i = 0; i < st->nov; i++) {
		struct lz_ov *o = &st->ov[i];
		if (o->pin < 0)
			fl_sys1(SYS_close, o->n);
		else if (fl_sys3(SYS_dup3, o->pin, o->n, o->cloexec ? O_CLOEXEC : 0) < 0)
			return -1;
	}
	int t[LZ_MAXOV];
	int nt = lz_kept(st, t, 1);
	long pc[LZ_MAXOV + 1][2];
	for (int i = 0; i < st->nrange; i++) {
		int np = lz_pieces(st->range[i].lo, st->range[i].hi, t, nt, pc);
		for (int k = 0; k < np; k++) {
			r = fl_sys3(SYS_close_range, pc[k][0], pc[k][1], 0);
			if (r == -ENOSYS)
				for (long fd = pc[k][0]; fd <= pc[k][1] && fd < lz_nofile(st); fd++)
					fl_sys1(SYS_close, fd);
		}
	}
	for (int i = 0; i < st->npin; i++)
		fl_sys1(SYS_close, st->pin[i]);
	if (st->umask >= 0)
		fl_sys1(SYS_umask, st->umask);
	if (st->pgrp && fl_sys2(SYS_setpgid, 0, 0) != 0)
		return -1;
	if (lz_ids_changed(st)) {
		if (fl_sys3(SYS_setresgid, st->cgid[0], st->cgid[1], st->cgid[2]) != 0 ||
		    fl_sys3(SYS_setresuid, st->cuid[0], st->cuid[1], st->cuid[2]) != 0)
			return -1;
	}
	/* Our SIGSYS handler is not the child's. */
	if (!(st->sigrec & sigbit(SIGSYS)))
		fl_sys4(SYS_rt_sigaction, SIGSYS, &lz_prog, 0, 8);
	for (int sig = 1; sig <= 64; sig++)
		if (st->sigrec & sigbit(sig))
			fl_sys4(SYS_rt_sigaction, sig, &st->sig[sig - 1], 0, 8);
	return 0;
}

static void lz_emit_attempts(struct lz *st, pid_t child);

/* lz_real makes the real child. It returns in that child (the state
 * applied, SUD off, the signal mask still the child-mode one); the parent
 * goes on in fl_lz_parent. */
static void lz_real(struct lz *st)
{
	st->sel = SEL_ALLOW;
	fl_lz_clone(st);
	/* The child: the parent thread is suspended until we exec or exit. */
	st->mode = LZ_REAL;
	fl_sys5(SYS_prctl, PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_OFF, 0, 0, 0);
	if (lz_replay(st) != 0) {
		/* The child's code believes in a state we could not make:
		 * stop here rather than go on wrong. */
		static const char msg[] = "libforkless: lazy vfork: cannot rebuild the child's state\n";
		fl_sys3(SYS_write, 2, msg, sizeof msg - 1);
		fl_sys1(SYS_exit_group, 127);
	}
	if (fl_tracing())
		lz_emit_attempts(st, 0);
}

void fl_lazy_force(const char *reason)
{
	struct lz *st = lz_active();
	if (!st)
		return;
	st->sel = SEL_ALLOW;
	st->reason = reason, st->reason_nr = -1;
	lz_real(st);
	fl_sys4(SYS_rt_sigprocmask, SIG_SETMASK, &st->mask, 0, 8);
}

/* ---- leaving child mode ---- */

static __attribute__((noreturn)) void lz_finish(struct lz *st, long result, const char *how)
{
	st->sel = SEL_ALLOW;
	fl_sys5(SYS_prctl, PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_OFF, 0, 0, 0);
	for (int i = 0; i < st->npin; i++)
		fl_sys1(SYS_close, st->pin[i]);
	st->npin = 0;
	lz_sigsys_put();
	st->mode = LZ_NONE;
	lz_log(st, how, result);
	/* A real child that did not exec (it exited, or went on without one)
	 * is recorded here, with why it had to be made. */
	if (result > 0 && st->reason && !st->exec_traced && fl_tracing()) {
		struct fl_trace_rec r = {
			.event = FL_EV_FORK, .via = FL_VIA_VFORK, .child = (pid_t)result,
			.dur_ns = fl_now_ns() - st->t0, .fallback = st->reason,
		};
		fl_trace(&r);
	}
	if (st->sigsys_pending)
		fl_sys4(SYS_rt_tgsigqueueinfo, fl_sys0(SYS_getpid), fl_sys0(SYS_gettid), SIGSYS,
			&st->sigsys_info);
	/* What arrived meanwhile is delivered now, as at a vfork's return. */
	fl_sys4(SYS_rt_sigprocmask, SIG_SETMASK, &st->callermask, 0, 8);
	long rax = result;
	if (result < 0) {
		errno = (int)-result;
		rax = -1;
	}
	fl_lz_resume(st, rax);
}

/* fl_lz_parent runs on the vfork caller's stack, below which the real
 * child ran: under AddressSanitizer its frames left poisoned shadow there,
 * where ours go now. */
__attribute__((no_sanitize("address"))) void fl_lz_parent(struct lz *st, long pid)
{
#if defined(__SANITIZE_ADDRESS__)
	const size_t dead = 512 << 10;
	__asan_unpoison_memory_region((char *)st->ctx.rsp - dead, dead);
#endif
	lz_finish(st, pid, pid > 0 ? "fallback" : "error");
}

/* ---- the trace of failed attempts ---- */

static char *lz_copy(struct lz *st, const char *s, size_t max)
{
	size_t n = strnlen(s, max);
	if (st->arena_used + n + 1 > LZ_ARENA)
		return 0;
	char *d = st->arena + st->arena_used;
	memcpy(d, s, n);
	d[n] = 0;
	st->arena_used += n + 1;
	return d;
}

static void *lz_alloc(struct lz *st, size_t need)
{
	size_t at = (st->arena_used + 7) & ~(size_t)7;
	if (at + need > LZ_ARENA)
		return 0;
	st->arena_used = at + need;
	return st->arena + at;
}

/* lz_child_fds lists the descriptors the child's exec would pass on, as
 * a real vfork child's trace lists them: ours, as the model has them. */
static void lz_child_fds(struct lz *st, struct lz_att *a)
{
	struct fl_fdlist l;
	fl_list_fds(&l); /* this process's, without close-on-exec ones (pins) */
	int fd[FL_FDLIST_MAX];
	const char *tg[FL_FDLIST_MAX];
	char buf[LZ_MAXOV][sizeof l.fds[0].target];
	int n = 0;
	for (int i = 0; i < l.n && n < FL_FDLIST_MAX; i++) {
		int d = l.fds[i].fd;
		if (!lz_find(st, d) && !lz_in_range(st, d))
			fd[n] = d, tg[n] = l.fds[i].target, n++;
	}
	for (int i = 0; i < st->nov && n < FL_FDLIST_MAX; i++) {
		struct lz_ov *o = &st->ov[i];
		if (o->pin < 0 || o->cloexec)
			continue;
		if (fl_fd_link(o->pin, buf[i], sizeof buf[i]) < 0)
			buf[i][0] = 0;
		fd[n] = o->n, tg[n] = buf[i], n++;
	}
	for (int i = 1; i < n; i++) /* by number, as /proc lists them */
		for (int j = i; j > 0 && fd[j] < fd[j - 1]; j--) {
			int t = fd[j];
			fd[j] = fd[j - 1], fd[j - 1] = t;
			const char *u = tg[j];
			tg[j] = tg[j - 1], tg[j - 1] = u;
		}
	a->nfd = 0;
	a->fd = lz_alloc(st, (size_t)n * sizeof(int));
	a->target = lz_alloc(st, (size_t)n * sizeof(char *));
	if (!a->fd || !a->target)
		return;
	for (int i = 0; i < n; i++) {
		a->fd[i] = fd[i];
		if (!(a->target[i] = lz_copy(st, tg[i], sizeof l.fds[0].target - 1)))
			return;
		a->nfd = i + 1;
	}
}

static void lz_note_attempt(struct lz *st, const char *path, char *const argv[], int err)
{
	if (!fl_tracing() || st->natt == LZ_MAXATT)
		return;
	struct lz_att *a = &st->att[st->natt];
	a->err = err;
	a->dur = fl_now_ns() - st->t0;
	a->nfd = 0;
	lz_child_fds(st, a);
	a->path = path ? lz_copy(st, path, 2048) : 0;
	a->argv = 0;
	if (argv) {
		/* One more entry and one more byte than the trace shows, so
		 * that it still sees what was cut. */
		int n = 0;
		while (argv[n] && n < 33)
			n++;
		size_t need = (size_t)(n + 1) * sizeof(char *);
		size_t at = (st->arena_used + 7) & ~(size_t)7;
		if (at + need <= LZ_ARENA) {
			char **v = (char **)(st->arena + at);
			st->arena_used = at + need;
			int k = 0;
			for (; k < n; k++)
				if (!(v[k] = lz_copy(st, argv[k], 257)))
					break;
			v[k] = 0;
			a->argv = v;
		}
	}
	st->natt++;
}

/* The lines a real vfork child would have written for its failed execs:
 * an attempt, then its failure. child 0: we are that child. */
static void lz_emit_attempts(struct lz *st, pid_t child)
{
	for (int i = 0; i < st->natt; i++) {
		struct lz_att *a = &st->att[i];
		struct fl_fdlist l;
		l.n = a->nfd, l.truncated = 0;
		for (int k = 0; k < a->nfd; k++) {
			l.fds[k].fd = a->fd[k];
			size_t len = strnlen(a->target[k], sizeof l.fds[k].target - 1);
			memcpy(l.fds[k].target, a->target[k], len);
			l.fds[k].target[len] = 0;
		}
		struct fl_trace_rec r = {
			.event = FL_EV_SPAWN,
			.via = FL_VIA_VFORK,
			.child = child,
			.path = a->path,
			.argv = a->argv,
			.fds = &l,
			.dur_ns = a->dur,
		};
		fl_trace(&r);
		r.err = a->err;
		r.fds = 0;
		/* The last failure line also says why the child was real; the
		 * pairs keep the shape a real vfork child's trace has. */
		if (i == st->natt - 1) {
			r.fallback = st->reason;
			st->exec_traced = 1;
		}
		fl_trace(&r);
	}
	st->natt = 0;
}

static __attribute__((noreturn)) void lz_exit(struct lz *st, int status)
{
	long pid = fl_lz_exit_child(status, st->pgrp);
	st->reason = "exit", st->reason_nr = -1;
	if (pid > 0 && fl_tracing())
		lz_emit_attempts(st, (pid_t)pid);
	lz_finish(st, pid, pid > 0 ? "exit" : "error");
}

/* ---- exec: the spawn ---- */

/* lz_precheck answers for the kernel when the program cannot be reached:
 * the same walk, from the child's directory, as the same user, within one
 * mount. 0: try it. */
static int lz_precheck(struct lz *st, const char *path)
{
	if (!*path)
		return ENOENT;
	/* An absolute path from the working directory: a walk from / that
	 * meets another mount than the directory's says EXDEV, no answer. */
	long dir = st->cwd >= 0 ? st->cwd : AT_FDCWD;
	if (path[0] != '/' && lz_is_proc(dir, dir == AT_FDCWD ? "." : 0))
		return 0;
	long r = lz_openat2(dir, path, O_PATH | O_CLOEXEC, 0, RESOLVE_NO_XDEV);
	if (r >= 0) {
		fl_sys1(SYS_close, r); /* O_PATH */
		return 0;
	}
	if (r == -ENOENT || r == -ENOTDIR || r == -EACCES)
		return (int)-r;
	return 0;
}

#define LZ_MAXACT (1 + LZ_MAXOV + LZ_MAXRANGE + LZ_MAXOV + 1)

static int lz_actions(struct lz *st, struct fl_action *acts)
{
	int k = 0;
	if (st->cwd >= 0)
		acts[k++] = (struct fl_action){.tag = FL_FCHDIR, .fd = st->cwd};
	for (int i = 0; i < st->nov; i++) {
		struct lz_ov *o = &st->ov[i];
		if (o->pin >= 0 && !o->cloexec)
			acts[k++] = (struct fl_action){.tag = FL_DUP2, .fd = o->pin, .newfd = o->n};
		else /* closed, or closed by the exec */
			acts[k++] = (struct fl_action){.tag = FL_CLOSE, .fd = o->n};
	}
	int t[LZ_MAXOV];
	int nt = lz_kept(st, t, 0);
	long pc[LZ_MAXOV + 1][2];
	for (int i = 0; i < st->nrange; i++) {
		int np = lz_pieces(st->range[i].lo, st->range[i].hi, t, nt, pc);
		for (int j = 0; j < np && k < LZ_MAXACT; j++)
			acts[k++] = (struct fl_action){.tag = FL_CLOSERANGE, .fd = (int)pc[j][0], .newfd = (int)pc[j][1]};
	}
	return k;
}

int fl_lazy_exec(int kind, const char *path, char *const argv[], char *const envp[], int *err)
{
	struct lz *st = lz_active();
	if (!st)
		return 0;
	st->sel = SEL_ALLOW;
	int search = kind == 1;
	if (kind == 2 || !path || !argv) {
		fl_lazy_force(kind == 2 ? "fexecve" : "exec");
		return 0;
	}
	int ids = lz_resetids(st);
	if (ids < 0) {
		fl_lazy_force("ids");
		return 0;
	}
	int has_slash = strchr(path, '/') != 0;
	int e = 0;
	if (search && !has_slash && *path && strnlen(path, NAME_MAX) + 1 > NAME_MAX)
		e = ENAMETOOLONG;
	else if ((!search || has_slash) && !ids)
		e = lz_precheck(st, path);
	if (e) {
		lz_note_attempt(st, path, argv, e);
		*err = e;
		st->sel = SEL_BLOCK;
		return 1;
	}

	struct fl_action acts[LZ_MAXACT];
	struct fl_attr attr;
	memset(&attr, 0, sizeof attr);
	attr.flags = FL_SETSIGMASK | FL_SETSIGDEF;
	attr.sigmask = st->mask;
	/* glibc's internal signals: after a real vfork+exec they are at
	 * default, unless this process ignores them (a program started with
	 * them ignored passes that on, as any ignored signal). */
	for (int sig = 32; sig <= 33; sig++) {
		unsigned long old[4];
		if (fl_sys4(SYS_rt_sigaction, sig, 0, old, 8) == 0 && old[0] == (unsigned long)SIG_IGN)
			attr.sigignore |= sigbit(sig);
		else
			attr.sigdefault |= sigbit(sig);
	}
	for (int sig = 1; sig <= 64; sig++) {
		if (!(st->sigrec & sigbit(sig)))
			continue;
		if (st->sig[sig - 1].handler == (unsigned long)SIG_IGN)
			attr.sigignore |= sigbit(sig);
		else
			attr.sigdefault |= sigbit(sig);
	}
	if (!(st->sigrec & sigbit(SIGSYS)) && lz_prog.handler == (unsigned long)SIG_IGN)
		attr.sigignore |= sigbit(SIGSYS);
	if (attr.sigignore)
		attr.flags |= FL_X_SIGIGN;
	if (st->umask >= 0)
		attr.flags |= FL_X_SETUMASK, attr.umask = (mode_t)st->umask;
	if (st->pgrp)
		attr.flags |= FL_SETPGROUP, attr.pgrp = 0;
	if (ids)
		attr.flags |= FL_RESETIDS;

	struct fl_envbuf eb;
	int clone_failed = 0, closed = 0;
	struct fl_fdlist fds;
	struct fl_spawn req = {
		.path = path,
		.argv = argv,
		.envp = fl_sticky_env(envp, &eb),
		.actions = acts,
		.nactions = lz_actions(st, acts),
		.attr = &attr,
		.flags = search ? FL_SEARCH | FL_EXEC_SH : (kind == 1 ? FL_EXEC_SH : 0),
		.nkeep = -1,
		.clone_failed = &clone_failed,
	};
	if (fl_cfg.strict)
		req.keep = fl_cfg.keep, req.nkeep = fl_cfg.nkeep;
	int tracing = fl_tracing();
	if (tracing) {
		fds.n = 0, fds.truncated = 0;
		req.fdlist = &fds;
		if (fl_cfg.strict)
			req.strict_closed = &closed;
	}
	pid_t pid = 0;
	/* The host's process limit: refused, the vfork itself fails with
	 * EAGAIN, as if no child could be made. */
	int admitted = fl_admit(), rc;
	if (admitted == 0) {
		rc = EAGAIN, clone_failed = 1;
		struct fl_trace_rec r = {
			.event = FL_EV_FORK, .via = FL_VIA_VFORK, .err = EAGAIN,
			.dur_ns = fl_now_ns() - st->t0, .policy = FL_POL_MAX_PROCS,
		};
		fl_trace(&r);
	} else {
		rc = fl_spawn(&pid, 0, &req);
	}
	if (rc == 0 && tracing) {
		lz_emit_attempts(st, pid);
		struct fl_trace_rec r = {
			.event = FL_EV_SPAWN, .via = FL_VIA_VFORK, .child = pid,
			.path = path, .argv = argv, .fds = &fds,
			.dur_ns = fl_now_ns() - st->t0, .strict_closed = closed,
		};
		fl_trace(&r);
	}
	if (admitted == 1)
		fl_settle();
	if (rc == 0)
		lz_finish(st, pid, "spawn"); /* does not return */
	if (clone_failed) {
		/* No process could be made: the vfork fails. */
		st->reason = "clone", st->reason_nr = -1;
		lz_finish(st, -rc, "error");
	}
	lz_note_attempt(st, path, argv, rc);
	*err = rc;
	st->sel = SEL_BLOCK;
	return 1;
}

/* ---- entering child mode ---- */

static int lz_begin(struct lz *st)
{
	uint64_t m = ~(sigbit(SIGSYS) | SYNC_SIGS);
	fl_sys4(SYS_rt_sigprocmask, SIG_SETMASK, &m, &st->callermask, 8);
	if (lz_sigsys_get() != 0)
		goto undo_mask;
	st->sel = SEL_ALLOW;
	long len = (long)((char *)fl_lz_restorer_end - (char *)fl_lz_restorer);
	if (fl_sys5(SYS_prctl, PR_SET_SYSCALL_USER_DISPATCH, PR_SYS_DISPATCH_ON, (long)fl_lz_restorer, len,
		    &st->sel) != 0) {
		__atomic_store_n(&lz_sud_broken, 1, __ATOMIC_RELAXED);
		lz_sigsys_put();
		goto undo_mask;
	}
	st->mask = st->callermask;
	st->t0 = fl_now_ns();
	st->reason = 0, st->reason_nr = -1, st->exec_traced = 0;
	st->nov = st->nrange = st->npin = 0;
	st->cwd = st->rootfd = -1;
	st->nofile = 0;
	st->locks_loaded = st->lock_unknown = st->nlock = 0;
	st->umask = -1;
	st->pgrp = 0;
	st->ids_loaded = 0;
	st->sigrec = 0;
	st->natt = 0;
	st->arena_used = 0;
	st->sigsys_pending = 0;
	fl_vfork_note(); /* for the real child's trace lines, if one is made */
	st->mode = LZ_CHILD;
	return 0;
undo_mask:
	fl_sys4(SYS_rt_sigprocmask, SIG_SETMASK, &st->callermask, 0, 8);
	return -1;
}

struct lz_entry {
	struct lz *st;
	void *jump;
};

FL_HIDDEN struct lz_entry fl_vfork_entry(void);

struct lz_entry fl_vfork_entry(void)
{
	struct lz_entry e = {0, 0};
	fl_ensure_init();
	if (fl_cfg.disabled) {
		e.jump = fl_real.vfork ? (void *)fl_real.vfork : (void *)fl_real.fork;
		return e;
	}
	struct lz *st = lz_tls;
	if (st && st->mode == LZ_CHILD) {
		/* vfork in a lazy child: the real child does a real vfork. */
		fl_lazy_force("vfork");
		e.jump = fl_vfork_prehook();
		return e;
	}
	if (fl_cfg.real_vfork || __atomic_load_n(&lz_sud_broken, __ATOMIC_RELAXED) || (st && st->mode == LZ_REAL)) {
		e.jump = fl_vfork_prehook();
		return e;
	}
	pthread_once(&lz_env_once, lz_read_env);
	fl_ensure_real(); /* nothing to look up in child mode */
	if (!(st = lz_get()) || lz_begin(st) != 0) {
		e.jump = fl_vfork_prehook();
		return e;
	}
	e.st = st;
	return e;
}

/* ---- Syscall User Dispatch: every other system call ---- */

static long lz_syscall(struct lz *st, long nr, const long *a)
{
	switch (nr) {
	case SYS_close:
		return lz_close(st, (int)a[0]);
	case SYS_dup:
		return lz_dupfd(st, (unsigned)a[0], 0, 0, 0);
	case SYS_dup2:
		return lz_dup3(st, (unsigned)a[0], (unsigned)a[1], 0, 1);
	case SYS_dup3:
		return lz_dup3(st, (unsigned)a[0], (unsigned)a[1], (int)a[2], 0);
	case SYS_close_range:
		return lz_close_range(st, (unsigned)a[0], (unsigned)a[1], (unsigned)a[2]);
	case SYS_fcntl:
		return lz_fcntl(st, (unsigned)a[0], (unsigned)a[1], (unsigned long)a[2]);
	case SYS_ioctl:
		if ((unsigned)a[1] == FIOCLEX || (unsigned)a[1] == FIONCLEX)
			return lz_setfd(st, (int)a[0], (unsigned)a[1] == FIOCLEX);
		return lz_force(st, "ioctl", nr);
	case SYS_open:
		return lz_open(st, AT_FDCWD, (const char *)a[0], (int)a[1], (unsigned)a[2]);
	case SYS_openat:
		return lz_open(st, (int)a[0], (const char *)a[1], (int)a[2], (unsigned)a[3]);
	case SYS_creat:
		return lz_open(st, AT_FDCWD, (const char *)a[0], O_CREAT | O_WRONLY | O_TRUNC, (unsigned)a[1]);
	case SYS_chdir:
		return lz_chdir(st, (const char *)a[0]);
	case SYS_fchdir:
		return lz_fchdir(st, (int)a[0]);
	case SYS_umask:
		return lz_umask(st, (unsigned)a[0]);
	case SYS_setpgid:
		if (a[0] != 0)
			return lz_force(st, "setpgid", nr);
		if ((int)a[1] < 0)
			return -EINVAL;
		if (a[1] == 0) {
			st->pgrp = 1;
			return 0;
		}
		if (a[1] == fl_sys1(SYS_getpgid, 0)) {
			st->pgrp = 0;
			return 0;
		}
		return lz_force(st, "setpgid", nr);
	case SYS_getpgrp:
		return st->pgrp ? lz_force(st, "getpgrp", nr) : fl_sys1(SYS_getpgid, 0);
	case SYS_getpgid:
		return a[0] == 0 && st->pgrp ? lz_force(st, "getpgrp", nr) : fl_sys1(SYS_getpgid, a[0]);
	case SYS_getsid:
		return fl_sys1(SYS_getsid, a[0]);
	case SYS_getppid:
		return fl_sys0(SYS_getpid);
	case SYS_rt_sigaction:
		return lz_rt_sigaction(st, (int)a[0], (const struct lz_ksa *)a[1], (struct lz_ksa *)a[2],
				       (unsigned long)a[3]);
	case SYS_rt_sigprocmask:
		return lz_rt_sigprocmask(st, (int)a[0], (const uint64_t *)a[1], (uint64_t *)a[2],
					 (unsigned long)a[3]);
	case SYS_getuid:
	case SYS_geteuid:
	case SYS_getgid:
	case SYS_getegid:
		lz_load_ids(st);
		return nr == SYS_getuid ? st->cuid[0] : nr == SYS_geteuid ? st->cuid[1]
			: nr == SYS_getgid ? st->cgid[0] : st->cgid[1];
	case SYS_getresuid:
	case SYS_getresgid: {
		lz_load_ids(st);
		unsigned *v = nr == SYS_getresuid ? st->cuid : st->cgid;
		for (int i = 0; i < 3; i++)
			*(unsigned *)a[i] = v[i];
		return 0;
	}
	case SYS_setresuid:
	case SYS_setresgid:
		lz_load_ids(st);
		return lz_setres(st, nr == SYS_setresuid ? st->cuid : st->cgid, (unsigned)a[0], (unsigned)a[1],
				 (unsigned)a[2], nr);
	case SYS_setreuid:
	case SYS_setregid:
		lz_load_ids(st);
		return lz_setre(st, nr == SYS_setreuid ? st->cuid : st->cgid, (unsigned)a[0], (unsigned)a[1], nr);
	case SYS_setuid:
	case SYS_setgid:
		lz_load_ids(st);
		return lz_set1(st, nr == SYS_setuid ? st->cuid : st->cgid, (unsigned)a[0], nr);
	case SYS_getgroups:
		return fl_sys2(nr, a[0], a[1]);
	case SYS_mmap:
		if (!(a[3] & MAP_ANONYMOUS))
			return lz_force(st, "mmap", nr);
		/* The shared address space, as in a vfork child. */
		__attribute__((fallthrough));
	case SYS_munmap:
	case SYS_mprotect:
	case SYS_madvise:
	case SYS_mremap:
	case SYS_brk:
	case SYS_clock_gettime:
	case SYS_gettimeofday:
	case SYS_time:
	case SYS_getrandom:
	case SYS_sched_yield:
	case SYS_uname:
		return fl_sys6(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
	case SYS_futex: {
		int op = (int)a[1] & FUTEX_CMD_MASK;
		if (op == FUTEX_WAIT || op == FUTEX_WAKE || op == FUTEX_WAIT_BITSET || op == FUTEX_WAKE_BITSET)
			return fl_sys6(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
		return lz_force(st, "futex", nr);
	}
	case SYS_getcwd:
		if (st->cwd < 0)
			return fl_sys2(nr, a[0], a[1]);
		return lz_force(st, "getcwd", nr);
	case SYS_getrlimit:
		return fl_sys2(nr, a[0], a[1]);
	case SYS_prlimit64:
		if (a[0] == 0 && a[2] == 0)
			return fl_sys4(nr, a[0], a[1], a[2], a[3]);
		return lz_force(st, "prlimit", nr);
	case SYS_getpid:
		return lz_force(st, "getpid", nr);
	case SYS_gettid:
		return lz_force(st, "gettid", nr);
	case SYS_write:
		return lz_force(st, "write", nr);
	case SYS_kill:
		return lz_force(st, "kill", nr);
	case SYS_setsid:
		return lz_force(st, "setsid", nr);
	case SYS_prctl:
		return lz_force(st, "prctl", nr);
	}
	return lz_force(st, "syscall", nr);
}

static void lz_sigsys(int sig, siginfo_t *si, void *ucv)
{
	struct lz *st = lz_tls;
	if (si->si_code != SYS_USER_DISPATCH || !st || st->mode != LZ_CHILD) {
		lz_chain(st, sig, si, ucv);
		return;
	}
	st->sel = SEL_ALLOW;
	int saved_errno = errno;
	ucontext_t *uc = ucv;
	greg_t *g = uc->uc_mcontext.gregs;
	long nr = g[REG_RAX];
	long a[6] = {g[REG_RDI], g[REG_RSI], g[REG_RDX], g[REG_R10], g[REG_R8], g[REG_R9]};
	long r;
	if (nr == SYS_exit || nr == SYS_exit_group)
		lz_exit(st, (int)a[0]);
	if (nr == SYS_execve) {
		int err;
		if (fl_lazy_exec(0, (const char *)a[0], (char *const *)a[1], (char *const *)a[2], &err))
			r = -err;
		else
			r = LZ_FORCE; /* now the real child: exec natively */
	} else if (nr == SYS_execveat || nr == SYS_vfork || nr == SYS_fork || nr == SYS_clone ||
		   nr == SYS_clone3) {
		st->reason = nr == SYS_execveat ? "fexecve" : "vfork", st->reason_nr = nr;
		lz_real(st);
		r = LZ_FORCE;
	} else {
		r = lz_syscall(st, nr, a);
		if (r == LZ_FORCE)
			lz_real(st);
	}
	errno = saved_errno;
	if (r == LZ_FORCE) {
		/* The real child: the system call again, natively, with the
		 * child's signal mask once the handler returns. */
		memcpy(&uc->uc_sigmask, &st->mask, sizeof st->mask);
		g[REG_RIP] -= 2;
		g[REG_RAX] = nr;
		return;
	}
	g[REG_RAX] = r;
	st->sel = SEL_BLOCK;
}

/* ---- the exported fast paths ---- */

/* In child mode each records (or makes the real child and does the call
 * natively there); otherwise each is the libc function. */

static inline long lz_errno(long r)
{
	if (fl_is_err(r)) {
		errno = (int)-r;
		return -1;
	}
	return r;
}

#define LZ_CALL(st, op, native)                          \
	do {                                             \
		(st)->sel = SEL_ALLOW;                   \
		long r_ = (op);                          \
		if (r_ == LZ_FORCE) {                    \
			lz_real(st);                     \
			fl_sys4(SYS_rt_sigprocmask, SIG_SETMASK, &(st)->mask, 0, 8); \
			return native;                   \
		}                                        \
		(st)->sel = SEL_BLOCK;                   \
		return lz_errno(r_);                     \
	} while (0)

/* The host connection (host.c) is the library's: close, dup, dup2 and
 * dup3 of its number fail with EBADF as if it were not open, dup2/dup3
 * onto it move it first, close_range skips it. Only outside child mode (a
 * lazy child's actions are for the new program, which never has it).
 * Raw system calls (glibc's closefrom, fcntl) are not seen: the library
 * notices the number is no longer its socket and reconnects. */
static int host_skip_range(unsigned lo, unsigned hi, int flags)
{
	int h = fl_hfd;
	if (h < 0 || (unsigned)h < lo || (unsigned)h > hi || !fl_host_owns(h))
		return 1;
	long r = 0;
	if ((unsigned)h > lo)
		r = fl_sys3(SYS_close_range, lo, (unsigned)h - 1, flags);
	if (r == 0 && (unsigned)h < hi)
		r = fl_sys3(SYS_close_range, (unsigned)h + 1, hi, flags);
	return (int)lz_errno(r) < 0 ? -1 : 0;
}

EXPORT int close(int fd)
{
	struct lz *st = lz_active();
	if (__builtin_expect(!st, 1)) {
		if (fl_host_owns(fd)) {
			errno = EBADF;
			return -1;
		}
		return __close(fd);
	}
	LZ_CALL(st, lz_close(st, fd), __close(fd));
}

EXPORT int dup(int fd)
{
	struct lz *st = lz_active();
	if (__builtin_expect(!st, 1)) {
		if (fl_host_owns(fd)) {
			errno = EBADF;
			return -1;
		}
		return (int)lz_errno(fl_sys1(SYS_dup, fd));
	}
	LZ_CALL(st, lz_dupfd(st, (unsigned)fd, 0, 0, 0), (int)lz_errno(fl_sys1(SYS_dup, fd)));
}

EXPORT int dup2(int fd, int fd2)
{
	struct lz *st = lz_active();
	if (__builtin_expect(!st, 1)) {
		if (fl_host_owns(fd)) { /* as if it were not open */
			errno = EBADF;
			return -1;
		}
		if (fl_host_owns(fd2))
			fl_host_vacate(fd2);
		return __dup2(fd, fd2);
	}
	LZ_CALL(st, lz_dup3(st, (unsigned)fd, (unsigned)fd2, 0, 1), __dup2(fd, fd2));
}

EXPORT int dup3(int fd, int fd2, int flags)
{
	struct lz *st = lz_active();
	if (__builtin_expect(!st, 1)) {
		if (fl_host_owns(fd)) {
			errno = EBADF;
			return -1;
		}
		if (fd != fd2 && fl_host_owns(fd2))
			fl_host_vacate(fd2);
		return (int)lz_errno(fl_sys3(SYS_dup3, fd, fd2, flags));
	}
	LZ_CALL(st, lz_dup3(st, (unsigned)fd, (unsigned)fd2, flags, 0),
		(int)lz_errno(fl_sys3(SYS_dup3, fd, fd2, flags)));
}

EXPORT int close_range(unsigned lo, unsigned hi, int flags)
{
	struct lz *st = lz_active();
	if (__builtin_expect(!st, 1)) {
		if (lo <= hi && !(flags & ~CLOSE_RANGE_CLOEXEC)) {
			int r = host_skip_range(lo, hi, flags);
			if (r <= 0)
				return r;
		}
		return (int)lz_errno(fl_sys3(SYS_close_range, lo, hi, flags));
	}
	LZ_CALL(st, lz_close_range(st, lo, hi, (unsigned)flags),
		(int)lz_errno(fl_sys3(SYS_close_range, lo, hi, flags)));
}

static int is_internal(int sig) { return sig == 32 || sig == 33; }

/* glibc's sigaction on our model: same checks, same kernel structure. */
static long lz_sigaction(struct lz *st, int sig, const struct sigaction *act, struct sigaction *oact)
{
	if (sig <= 0 || sig >= NSIG || is_internal(sig))
		return -EINVAL;
	struct lz_ksa k, ok;
	if (act) {
		k.handler = (unsigned long)act->sa_handler;
		memcpy(&k.mask, &act->sa_mask, sizeof k.mask);
		k.flags = (unsigned long)act->sa_flags | SA_RESTORER;
		k.restorer = lz_glibc_restorer;
	}
	long r = lz_rt_sigaction(st, sig, act ? &k : 0, oact ? &ok : 0, 8);
	if (r == 0 && oact) {
		memset(oact, 0, sizeof *oact);
		oact->sa_handler = (__sighandler_t)ok.handler;
		memcpy(&oact->sa_mask, &ok.mask, sizeof ok.mask);
		oact->sa_flags = (int)ok.flags;
		oact->sa_restorer = (void (*)(void))ok.restorer;
	}
	return r;
}

/* sigaction(SIGSYS) while our handler is in: the program's, kept aside. */
static int lz_sigsys_virtual(const struct sigaction *act, struct sigaction *oact, int *done)
{
	pthread_mutex_lock(&lz_mu);
	if (lz_users == 0) {
		pthread_mutex_unlock(&lz_mu);
		*done = 0;
		return 0;
	}
	*done = 1;
	struct lz_ksa old = lz_prog;
	if (act) {
		lz_prog.handler = (unsigned long)act->sa_handler;
		memcpy(&lz_prog.mask, &act->sa_mask, sizeof lz_prog.mask);
		lz_prog.mask &= ~UNBLOCKABLE;
		lz_prog.flags = (unsigned long)act->sa_flags | SA_RESTORER;
		lz_prog.restorer = lz_glibc_restorer;
	}
	pthread_mutex_unlock(&lz_mu);
	if (oact) {
		memset(oact, 0, sizeof *oact);
		oact->sa_handler = (__sighandler_t)old.handler;
		memcpy(&oact->sa_mask, &old.mask, sizeof old.mask);
		oact->sa_flags = (int)old.flags;
		oact->sa_restorer = (void (*)(void))old.restorer;
	}
	return 0;
}

EXPORT int sigaction(int sig, const struct sigaction *act, struct sigaction *oact)
{
	struct lz *st = lz_active();
	if (__builtin_expect(!st, 1)) {
		if (sig == SIGSYS && __atomic_load_n(&lz_users, __ATOMIC_RELAXED) > 0) {
			int done;
			int r = lz_sigsys_virtual(act, oact, &done);
			if (done)
				return r;
		}
		return __sigaction(sig, act, oact);
	}
	LZ_CALL(st, lz_sigaction(st, sig, act, oact), __sigaction(sig, act, oact));
}

/* glibc 2.36's pthread_sigmask: SIGCANCEL and SIGSETXID never blocked. */
static long lz_sigmask_raw(struct lz *st, int how, const sigset_t *set, sigset_t *old)
{
	uint64_t m;
	const void *p = set;
	if (set) {
		memcpy(&m, set, sizeof m);
		if (m & (sigbit(32) | sigbit(33))) {
			m &= ~(sigbit(32) | sigbit(33));
			p = &m;
		}
	}
	if (st)
		return lz_rt_sigprocmask(st, how, p, (uint64_t *)old, 8);
	return fl_sys4(SYS_rt_sigprocmask, how, p, old, 8);
}

static int lz_pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
	struct lz *st = lz_active();
	long r;
	if (__builtin_expect(!st, 1)) {
		r = lz_sigmask_raw(0, how, set, old);
		return r < 0 ? (int)-r : 0;
	}
	st->sel = SEL_ALLOW;
	r = lz_sigmask_raw(st, how, set, old);
	st->sel = SEL_BLOCK;
	return r < 0 ? (int)-r : 0;
}

EXPORT int fl_pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
	return lz_pthread_sigmask(how, set, old);
}

EXPORT int fl_pthread_sigmask_old(int how, const sigset_t *set, sigset_t *old)
{
	return lz_pthread_sigmask(how, set, old);
}

__asm__(".symver fl_pthread_sigmask, pthread_sigmask@@GLIBC_2.32");
__asm__(".symver fl_pthread_sigmask_old, pthread_sigmask@GLIBC_2.2.5");

EXPORT int sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
	int r = lz_pthread_sigmask(how, set, old);
	if (r) {
		errno = r;
		return -1;
	}
	return 0;
}
