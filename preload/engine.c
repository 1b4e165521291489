/* The C spawn engine: posix_spawn semantics at the cost of a vfork-style
 * clone3, with the same child-operation order as glibc and as spawn/ in Go.
 *
 * Parent: block every signal, clone3(CLONE_VM|CLONE_VFORK|
 * CLONE_CLEAR_SIGHAND) on a reused per-thread stack, wait for the exec,
 * restore the mask. Child: raw system calls only, on its own stack; on
 * failure it stores the errno in memory shared with the parent and exits
 * with 127, and the parent reaps it. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "forkless.h"

long fl_clone3_raw(struct clone_args *ca, size_t size) FL_HIDDEN;
long fl_clone_raw(unsigned long flags, void *sp, int *parent_tid) FL_HIDDEN;

#define DEFAULT_PATH "/bin:/usr/bin" /* confstr(_CS_PATH) */
#define STACK_SIZE (64 * 1024)
#define GUARD_SIZE 4096
#define FULL_MASK (~0UL)

/* What the child needs, in the parent's memory. */
struct child_args {
	const struct fl_spawn *req;
	const struct fl_attr *attr;
	uint64_t oldmask;      /* the caller's mask, restored in the child */
	int clear_sighand;     /* the kernel reset the handlers */
	const char *search;    /* PATH for FL_SEARCH */
	int adopt;             /* ask the host for adoption before the exec */
	const int *keep;       /* strict: sorted descriptors to keep */
	int nkeep;
	int argc;
	volatile int err;      /* set by a failing child */
};

/* ---- child side: raw system calls only ---- */

static int child_sigaction(int sig, unsigned long handler)
{
	/* struct kernel_sigaction: handler, flags, restorer, mask */
	unsigned long act[4] = {handler, 0, 0, 0};
	return (int)fl_sys4(SYS_rt_sigaction, sig, act, 0, 8);
}

static int has_sig(uint64_t set, int sig) { return (set >> (sig - 1)) & 1; }

static void child_dispositions(const struct child_args *a)
{
	const struct fl_attr *at = a->attr;
	uint64_t sd = (at->flags & FL_SETSIGDEF) ? at->sigdefault : 0;
	if (!a->clear_sighand) {
		/* No CLONE_CLEAR_SIGHAND: reset every caught signal by hand. */
		for (int sig = 1; sig <= 64; sig++) {
			unsigned long old[4];
			if (sig == SIGKILL || sig == SIGSTOP)
				continue;
			if (fl_sys4(SYS_rt_sigaction, sig, 0, old, 8) == 0 && old[0] > 1)
				child_sigaction(sig, 0);
		}
	}
	/* glibc's internal signals (SIGCANCEL, SIGSETXID) end up ignored
	 * unless SETSIGDEF names them, as in glibc. */
	for (int sig = 32; sig <= 33; sig++)
		if (!has_sig(sd, sig))
			child_sigaction(sig, 1);
	for (int sig = 1; sig <= 64; sig++)
		if (has_sig(sd, sig))
			child_sigaction(sig, 0); /* SIGKILL/SIGSTOP fail: ignored */
	if (at->flags & FL_X_SIGIGN)
		for (int sig = 1; sig <= 64; sig++)
			if (has_sig(at->sigignore, sig))
				child_sigaction(sig, 1);
}

/* child_close_range closes [lo, hi], with a loop where close_range is
 * missing. */
static void child_close_range(unsigned lo, unsigned hi, unsigned limit)
{
	if (lo > hi)
		return;
	if (fl_sys3(SYS_close_range, lo, hi, 0) != -ENOSYS)
		return;
	if (hi > limit)
		hi = limit;
	for (unsigned fd = lo; fd <= hi && fd < limit; fd++)
		fl_sys1(SYS_close, fd);
}

static unsigned child_nofile(void)
{
	struct { unsigned long cur, max; } lim;
	if (fl_sys4(SYS_prlimit64, 0, RLIMIT_NOFILE, 0, &lim) != 0)
		return 1u << 20;
	return lim.cur > INT_MAX ? INT_MAX : (unsigned)lim.cur;
}

struct strict_count {
	const struct child_args *a;
	int n;
};

static void count_unkept(void *arg, int fd, int dirfd, const char *name)
{
	struct strict_count *c = arg;
	(void)dirfd, (void)name;
	for (int k = 0; k < c->a->nkeep; k++)
		if (c->a->keep[k] == fd)
			return;
	c->n++;
}

/* child_strict closes every descriptor but the sorted keep set. */
static void child_strict(const struct child_args *a)
{
	unsigned next = 0, limit = child_nofile();
	if (a->req->strict_closed) {
		/* Count what strict mode takes away, for the trace. */
		struct strict_count c = {a, 0};
		fl_each_inheritable_fd(count_unkept, &c);
		*a->req->strict_closed = c.n;
	}
	for (int k = 0; k < a->nkeep; k++) {
		if (a->keep[k] < 0 || (unsigned)a->keep[k] < next)
			continue;
		if ((unsigned)a->keep[k] > next)
			child_close_range(next, (unsigned)a->keep[k] - 1, limit);
		next = (unsigned)a->keep[k] + 1;
	}
	child_close_range(next, ~0U, limit);
}

static long child_action(const struct fl_action *x, const struct fl_attr *at)
{
	long r;
	switch (x->tag) {
	case FL_CLOSE:
		r = fl_sys1(SYS_close, x->fd);
		/* Errors count only for descriptors beyond the limit. */
		if (r < 0 && x->fd >= 0 && (unsigned)x->fd < child_nofile())
			r = 0;
		return r;
	case FL_OPEN: {
		fl_sys1(SYS_close, x->fd); /* the target is closed first */
		r = fl_sys4(SYS_openat, AT_FDCWD, x->path, x->oflag | O_LARGEFILE, x->mode);
		if (r < 0 || r == x->fd)
			return r < 0 ? r : 0;
		long d = fl_sys2(SYS_dup2, r, x->fd);
		if (d < 0)
			return d;
		return fl_sys1(SYS_close, r);
	}
	case FL_DUP2:
		if (x->fd == x->newfd) {
			/* dup2(fd, fd) passes fd on: clear FD_CLOEXEC. */
			r = fl_sys2(SYS_fcntl, x->fd, F_GETFD);
			if (r < 0)
				return r;
			return fl_sys3(SYS_fcntl, x->fd, F_SETFD, r & ~FD_CLOEXEC);
		}
		r = fl_sys2(SYS_dup2, x->fd, x->newfd);
		return r < 0 ? r : 0;
	case FL_CHDIR:
		return fl_sys1(SYS_chdir, x->path);
	case FL_FCHDIR:
		return fl_sys1(SYS_fchdir, x->fd);
	case FL_CLOSERANGE:
		if (x->fd < 0 || x->newfd < x->fd)
			return -EINVAL;
		child_close_range((unsigned)x->fd, (unsigned)x->newfd, child_nofile());
		return 0;
	case FL_CLOSEFROM: {
		r = fl_sys3(SYS_close_range, x->fd, ~0U, 0);
		if (r == -ENOSYS) {
			child_close_range((unsigned)x->fd, ~0U, child_nofile());
			r = 0;
		}
		return r;
	}
	case FL_TCSETPGRP: {
		int pgrp;
		if ((at->flags & FL_SETPGROUP) && at->pgrp != 0) {
			pgrp = at->pgrp;
		} else {
			r = fl_sys1(SYS_getpgid, 0);
			if (r < 0)
				return r;
			pgrp = (int)r;
		}
		return fl_sys3(SYS_ioctl, x->fd, TIOCSPGRP, &pgrp);
	}
	}
	return -EINVAL;
}

static size_t child_strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

/* child_exec_sh runs file with /bin/sh (the compat ENOEXEC fallback). */
static long child_exec_sh(const struct child_args *a, const char *file)
{
	char *argv[a->argc + 2];
	argv[0] = (char *)"/bin/sh";
	argv[1] = (char *)file;
	for (int i = 1; i < a->argc; i++) /* argv[1..] and its NULL */
		argv[i + 1] = a->req->argv[i];
	if (a->argc <= 1)
		argv[2] = 0;
	return fl_sys3(SYS_execve, "/bin/sh", argv, a->req->envp);
}

/* child_search is glibc's execvpe without the script fallback. */
static long child_search(const struct child_args *a)
{
	const char *file = a->req->path;
	char *const *argv = a->req->argv, *const *envp = a->req->envp;
	if (*file == 0)
		return -ENOENT;
	size_t flen = child_strlen(file) + 1;
	size_t plen = child_strlen(a->search) + 1;
	if (plen > PATH_MAX)
		plen = PATH_MAX;
	char buf[PATH_MAX + NAME_MAX + 2];
	int eacces = 0;
	long r = -ENOENT;
	for (const char *p = a->search;;) {
		const char *end = p;
		while (*end && *end != ':')
			end++;
		size_t dlen = (size_t)(end - p);
		/* An entry as long as the (capped) PATH is skipped. */
		if (dlen < plen && dlen + 1 + flen <= sizeof buf) {
			size_t off = 0;
			for (size_t i = 0; i < dlen; i++)
				buf[off++] = p[i];
			if (dlen) /* an empty entry is the working directory */
				buf[off++] = '/';
			for (size_t i = 0; i < flen; i++)
				buf[off++] = file[i];
			r = fl_sys3(SYS_execve, buf, argv, envp);
			if (r == -ENOEXEC && (a->req->flags & FL_EXEC_SH))
				r = child_exec_sh(a, buf); /* glibc's execvpe */
			switch (-r) {
			case EACCES:
				eacces = 1;
				break;
			case ENOENT:
			case ESTALE:
			case ENOTDIR:
			case ENODEV:
			case ETIMEDOUT:
				break;
			default:
				return r;
			}
		}
		if (*end == 0)
			break;
		p = end + 1;
	}
	return eacces ? -EACCES : r;
}

static int child_main(void *p)
{
	struct child_args *a = p;
	const struct fl_spawn *req = a->req;
	const struct fl_attr *at = a->attr;
	long r = 0;

	/* 1. signal dispositions */
	child_dispositions(a);

	/* 2. scheduling */
	if (at->flags & FL_SETSCHEDULER) {
		int prio = at->priority;
		r = fl_sys3(SYS_sched_setscheduler, 0, at->policy, &prio);
	} else if (at->flags & FL_SETSCHEDPARAM) {
		int prio = at->priority;
		r = fl_sys2(SYS_sched_setparam, 0, &prio);
	}
	if (r < 0)
		goto fail;

	/* 3, 4. session and process group */
	if ((at->flags & FL_SETSID) && (r = fl_sys0(SYS_setsid)) < 0)
		goto fail;
	if ((at->flags & FL_SETPGROUP) && (r = fl_sys2(SYS_setpgid, 0, at->pgrp)) < 0)
		goto fail;

	/* 5. effective ids := real ids */
	if (at->flags & FL_RESETIDS) {
		if ((r = fl_sys3(SYS_setresuid, -1, fl_sys0(SYS_getuid), -1)) < 0 ||
		    (r = fl_sys3(SYS_setresgid, -1, fl_sys0(SYS_getgid), -1)) < 0)
			goto fail;
	}
	if (at->flags & FL_X_SETUMASK)
		fl_sys1(SYS_umask, at->umask);

	/* 6. file actions, then the strict policy */
	for (int i = 0; i < req->nactions; i++)
		if ((r = child_action(&req->actions[i], at)) < 0)
			goto fail;
	if (a->nkeep >= 0)
		child_strict(a);
	if (req->fdlist)
		fl_list_fds(req->fdlist);

	/* 7. the signal mask */
	uint64_t mask = (at->flags & FL_SETSIGMASK) ? at->sigmask : a->oldmask;
	fl_sys4(SYS_rt_sigprocmask, SIG_SETMASK, &mask, 0, 8);

	/* 8. exec: adoption first, when the parent found it needed */
	int searched = (req->flags & FL_SEARCH) && !__builtin_strchr(req->path, '/');
	if (a->adopt)
		fl_adopt_request();
	if (searched)
		r = child_search(a);
	else
		r = fl_sys3(SYS_execve, req->path, req->argv, req->envp);
	if (r == -ENOEXEC && ((req->flags & FL_COMPAT_SH) || ((req->flags & FL_EXEC_SH) && !searched)))
		r = child_exec_sh(a, req->path);
fail:
	a->err = r < 0 ? (int)-r : ECHILD;
	return 127;
}

/* ---- parent side ---- */

static int clone3_refused; /* clone3 said ENOSYS/EPERM/EINVAL once */
static pthread_once_t clone3_once = PTHREAD_ONCE_INIT;

/* FORKLESS_NO_CLONE3=1 forces the clone fallback, for tests. */
static void read_clone3_knob(void)
{
	const char *v = getenv("FORKLESS_NO_CLONE3");
	if (v && v[0] == '1' && v[1] == 0)
		clone3_refused = 1;
}

/* Per-thread stacks are reused; a key destructor unmaps them at thread exit. */
static __thread char *tls_stack;
static pthread_key_t stack_key;
static pthread_once_t stack_once = PTHREAD_ONCE_INIT;

static void free_stack(void *s) { munmap((char *)s - GUARD_SIZE, GUARD_SIZE + STACK_SIZE); }
static void make_key(void) { pthread_key_create(&stack_key, free_stack); }

static char *map_stack(size_t size)
{
	char *m = mmap(0, GUARD_SIZE + size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
	if (m == MAP_FAILED)
		return 0;
	mprotect(m, GUARD_SIZE, PROT_NONE);
	return m + GUARD_SIZE;
}

static char *thread_stack(void)
{
	if (!tls_stack) {
		pthread_once(&stack_once, make_key);
		tls_stack = map_stack(STACK_SIZE);
		if (tls_stack)
			pthread_setspecific(stack_key, tls_stack);
	}
	return tls_stack;
}

static int cmp_int(const void *x, const void *y)
{
	int a = *(const int *)x, b = *(const int *)y;
	return (a > b) - (a < b);
}

int fl_spawn(pid_t *pid, int *pidfd, const struct fl_spawn *req)
{
	static const struct fl_attr no_attr;
	struct child_args a = {.req = req, .attr = req->attr ? req->attr : &no_attr, .nkeep = -1};
	const struct fl_attr *at = a.attr;
	pthread_once(&clone3_once, read_clone3_knob);

	/* argv as glibc bounds it (the compat shell adds one entry) */
	while (req->argv[a.argc] != 0)
		if (++a.argc == INT_MAX - 1)
			return E2BIG;
	a.argc++;

	if ((req->flags & FL_SEARCH) && !strchr(req->path, '/')) {
		a.search = getenv("PATH");
		if (!a.search)
			a.search = DEFAULT_PATH;
	}

	/* The host's exec policy and the check for adoption (static or Go
	 * programs), here before the clone: the child only asks. */
	if (__builtin_expect(fl_cfg.nallow || fl_cfg.ndeny || fl_hosted(), 0)) {
		int r = fl_exec_prepare(req->path, a.search != 0, a.search, AT_FDCWD,
					FL_PREP_POLICY | FL_PREP_ADOPT | FL_PREP_DEFER);
		if (r < 0) {
			if (req->denied)
				*req->denied = 1;
			return -r;
		}
		a.adopt = r == 1;
	}

	/* Strict policy: the kept set, sorted, built here where allocation
	 * is allowed. */
	int keepbuf[64], *keep = keepbuf;
	if (req->nkeep >= 0) {
		size_t n = 3 + (size_t)req->nkeep + 2 * (size_t)req->nactions;
		if (n > sizeof keepbuf / sizeof keepbuf[0] && !(keep = malloc(n * sizeof *keep))) {
			if (req->clone_failed)
				*req->clone_failed = 1;
			return ENOMEM;
		}
		int k = 0;
		keep[k++] = 0, keep[k++] = 1, keep[k++] = 2;
		for (int i = 0; i < req->nkeep; i++)
			keep[k++] = req->keep[i];
		for (int i = 0; i < req->nactions; i++) {
			if (req->actions[i].tag == FL_OPEN)
				keep[k++] = req->actions[i].fd;
			if (req->actions[i].tag == FL_DUP2)
				keep[k++] = req->actions[i].newfd;
		}
		qsort(keep, (size_t)k, sizeof *keep, cmp_int);
		a.keep = keep, a.nkeep = k;
	}

	/* The child's stack: the thread's reused one, or a bigger one for a
	 * huge argv (the compat shell copies argv onto it). */
	size_t need = 16384 + ((size_t)a.argc + 2) * sizeof(char *);
	char *stack = need <= STACK_SIZE / 2 ? thread_stack() : 0;
	size_t size = STACK_SIZE;
	int own = 0;
	if (!stack) {
		size = (need * 2 + 4095) & ~(size_t)4095;
		stack = map_stack(size);
		own = 1;
	}
	if (!stack) {
		if (keep != keepbuf)
			free(keep);
		if (req->clone_failed)
			*req->clone_failed = 1;
		return ENOMEM;
	}
	uintptr_t *top = (uintptr_t *)(stack + size) - 2;
	top[0] = (uintptr_t)&a, top[1] = (uintptr_t)child_main;

	int cancel;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
	uint64_t all = FULL_MASK;
	fl_sys4(SYS_rt_sigprocmask, SIG_SETMASK, &all, &a.oldmask, 8);

	int want_pidfd = (req->flags & FL_PIDFD) != 0, cgroup = (at->flags & FL_SETCGROUP) != 0;
	int pfd = -1;
	long r = -ENOSYS;
	if (cgroup && __atomic_load_n(&clone3_refused, __ATOMIC_RELAXED))
		r = -ENOTSUP; /* no CLONE_INTO_CGROUP without clone3 */
	else if (!__atomic_load_n(&clone3_refused, __ATOMIC_RELAXED)) {
		struct clone_args ca;
		memset(&ca, 0, sizeof ca);
		ca.flags = CLONE_VM | CLONE_VFORK | CLONE_CLEAR_SIGHAND;
		if (want_pidfd)
			ca.flags |= CLONE_PIDFD, ca.pidfd = (uintptr_t)&pfd;
		if (cgroup)
			ca.flags |= CLONE_INTO_CGROUP, ca.cgroup = (uint64_t)at->cgroup;
		ca.exit_signal = SIGCHLD;
		ca.stack = (uintptr_t)stack;
		ca.stack_size = (uintptr_t)top - (uintptr_t)stack;
		a.clear_sighand = 1;
		r = fl_clone3_raw(&ca, sizeof ca);
		if (!cgroup && (r == -ENOSYS || r == -EPERM || r == -EINVAL))
			__atomic_store_n(&clone3_refused, 1, __ATOMIC_RELAXED);
		else if (cgroup && (r == -ENOSYS || r == -EPERM))
			r = -ENOTSUP; /* no CLONE_INTO_CGROUP without clone3 */
	}
	if (__atomic_load_n(&clone3_refused, __ATOMIC_RELAXED) && r < 0 && !cgroup) {
		a.clear_sighand = 0;
		unsigned long flags = CLONE_VM | CLONE_VFORK | SIGCHLD;
		if (want_pidfd)
			flags |= CLONE_PIDFD;
		r = fl_clone_raw(flags, top, &pfd);
	}

	int ec;
	if (r > 0) {
		ec = a.err;
		if (ec) {
			/* Failed before exec: reap it, with signals still blocked. */
			while (fl_sys4(SYS_wait4, r, 0, __WALL, 0) == -EINTR)
				;
			if (pfd >= 0)
				fl_sys1(SYS_close, pfd);
		}
	} else {
		ec = (int)-r;
		if (req->clone_failed)
			*req->clone_failed = 1;
	}

	fl_sys4(SYS_rt_sigprocmask, SIG_SETMASK, &a.oldmask, 0, 8);
	pthread_setcancelstate(cancel, 0);
	if (own)
		munmap(stack - GUARD_SIZE, GUARD_SIZE + size);
	if (keep != keepbuf)
		free(keep);
	if (ec == 0) {
		if (pid)
			*pid = (pid_t)r;
		if (want_pidfd && pidfd)
			*pidfd = pfd;
	}
	return ec;
}
