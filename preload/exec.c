/* The exec family: trace, the strict descriptor policy, stickiness, then
 * the real call. Async-signal-safe like the functions it replaces, and
 * usable in a vfork child: no allocation, no lock, raw system calls; errno
 * is only what the real exec set, as the caller expects. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "forkless.h"

#define EXPORT __attribute__((visibility("default")))

enum kind { K_EXECVE, K_EXECVPE, K_FEXECVE, K_EXECVEAT };

struct call {
	enum kind kind;
	const char *path;
	char *const *argv;
	char *const *envp;
	int fd;    /* fexecve, execveat */
	int flags; /* execveat */
};

/* ---- strict policy ---- */

#define STRICT_MAX 1024

struct strict {
	int n;              /* descriptors marked close-on-exec by us */
	int fds[STRICT_MAX]; /* which, to undo if the exec returns */
};

static int kept(const int *keep, int nkeep, long fd)
{
	for (int i = 0; i < nkeep; i++)
		if (keep[i] == fd)
			return 1;
	return 0;
}

struct mark {
	struct strict *s;
	const int *keep;
	int nkeep;
	int over;
};

/* mark_one records an inheritable descriptor strict mode must take away. */
static void mark_one(void *arg, int fd, int dirfd, const char *name)
{
	struct mark *m = arg;
	(void)dirfd, (void)name;
	if (kept(m->keep, m->nkeep, fd))
		return;
	if (m->s->n == STRICT_MAX)
		m->over = 1;
	else
		m->s->fds[m->s->n++] = fd;
}

/* strict_prepare marks every descriptor but 0, 1, 2, the keep list and
 * extra close-on-exec, remembering which were not. It returns -1, having
 * changed nothing, when it cannot do that exactly (no /proc, too many). */
static int strict_prepare(struct strict *s, int extra)
{
	int keep[3 + 32 + 1], nkeep = 0;
	/* sorted: 0, 1, 2, then fl_cfg.keep (sorted at init) with extra in place */
	keep[nkeep++] = 0, keep[nkeep++] = 1, keep[nkeep++] = 2;
	int placed = extra < 3;
	for (int i = 0; i < fl_cfg.nkeep; i++) {
		if (!placed && extra <= fl_cfg.keep[i]) {
			if (extra < fl_cfg.keep[i])
				keep[nkeep++] = extra;
			placed = 1;
		}
		if (fl_cfg.keep[i] > 2)
			keep[nkeep++] = fl_cfg.keep[i];
	}
	if (!placed)
		keep[nkeep++] = extra;

	s->n = 0;
	struct mark m = {s, keep, nkeep, 0};
	if (fl_each_inheritable_fd(mark_one, &m) < 0)
		return -1;
	if (m.over) {
		s->n = 0;
		return -1;
	}
	if (s->n == 0)
		return 0;
	/* One close_range per gap between kept descriptors. */
	long lo = 0;
	int ok = 1;
	for (int i = 0; i <= nkeep && ok; i++) {
		long hi = i < nkeep ? keep[i] - 1L : (long)~0U;
		if (hi >= lo && fl_sys3(SYS_close_range, lo, hi, CLOSE_RANGE_CLOEXEC) != 0)
			ok = 0;
		if (i < nkeep)
			lo = keep[i] + 1L;
	}
	if (!ok) /* no CLOSE_RANGE_CLOEXEC (Linux < 5.11): one by one */
		for (int i = 0; i < s->n; i++)
			fl_sys3(SYS_fcntl, s->fds[i], F_SETFD, FD_CLOEXEC);
	return 0;
}

static void strict_undo(const struct strict *s)
{
	for (int i = 0; i < s->n; i++) {
		long fl = fl_sys2(SYS_fcntl, s->fds[i], F_GETFD);
		if (fl >= 0)
			fl_sys3(SYS_fcntl, s->fds[i], F_SETFD, fl & ~FD_CLOEXEC);
	}
}

/* ---- trace ---- */

/* Out of line: its buffers cost stack only when tracing. */
__attribute__((noinline)) static void trace_exec(const struct call *c, int vchild, int err,
						 int strict_closed, enum fl_policy policy)
{
	struct fl_fdlist fds;
	char target[512];
	const char *path = c->path;
	if (c->kind == K_FEXECVE || (c->kind == K_EXECVEAT && path && !*path && (c->flags & AT_EMPTY_PATH)))
		path = fl_fd_link(c->fd, target, sizeof target) < 0 ? 0 : target;
	struct fl_trace_rec r = {
		.event = vchild ? FL_EV_SPAWN : FL_EV_EXEC,
		.via = vchild ? FL_VIA_VFORK : FL_VIA_EXEC,
		.path = path,
		.argv = c->argv,
		.err = err,
		.strict_closed = strict_closed,
		.policy = policy,
	};
	if (err == 0) {
		/* Before the exec: what the new program will inherit. */
		fl_list_fds(&fds);
		r.fds = &fds;
	}
	if (vchild) {
		const struct fl_vfork_rec *v = fl_vfork_child();
		if (v && v->t0)
			r.dur_ns = fl_now_ns() - v->t0;
		if ((r.fallback = fl_lazy_reason()) != 0)
			fl_lazy_note_exec();
	}
	fl_trace(&r);
}

static int real_exec(const struct call *c, char *const *envp)
{
	switch (c->kind) {
	case K_EXECVE:
		if (fl_real.execve)
			return fl_real.execve(c->path, c->argv, envp);
		break;
	case K_EXECVPE:
		fl_ensure_real();
		if (fl_real.execvpe)
			return fl_real.execvpe(c->path, c->argv, envp);
		break;
	case K_FEXECVE:
		if (fl_real.fexecve)
			return fl_real.fexecve(c->fd, c->argv, envp);
		break;
	case K_EXECVEAT:
		if (fl_real.execveat)
			return fl_real.execveat(c->fd, c->path, c->argv, envp, c->flags);
		break;
	}
	errno = ENOSYS;
	return -1;
}

/* prepare runs fl_exec_prepare for c. */
static int prepare(const struct call *c, int what)
{
	const char *path = c->path;
	int dirfd = AT_FDCWD;
	if (c->kind == K_FEXECVE)
		path = "", dirfd = c->fd;
	else if (c->kind == K_EXECVEAT) {
		dirfd = c->fd;
		if (path && !*path && !(c->flags & AT_EMPTY_PATH))
			return 0; /* ENOENT from the kernel */
	}
	return fl_exec_prepare(path, c->kind == K_EXECVPE, 0, dirfd, what);
}

static int do_exec(const struct call *c)
{
	fl_ensure_init();
	if (fl_cfg.disabled)
		return real_exec(c, c->envp);
	if (__builtin_expect(fl_cfg.nallow || fl_cfg.ndeny, 0) && prepare(c, FL_PREP_POLICY) < 0) {
		/* The host's exec policy: EACCES, as the kernel would say. */
		if (fl_tracing())
			trace_exec(c, fl_vfork_child() != 0, EACCES, 0, FL_POL_EXEC_DENY);
		errno = EACCES;
		return -1;
	}
	if (fl_lazy_child()) {
		/* Lazy vfork: the exec becomes a spawn, unless it made us a
		 * real vfork child, which goes on below. */
		int err, kind = c->kind == K_EXECVE ? 0 : c->kind == K_EXECVPE ? 1 : 2;
		if (fl_lazy_exec(kind, c->path, c->argv, c->envp, &err)) {
			errno = err;
			return -1;
		}
	}

	struct fl_envbuf eb;
	char *const *envp = fl_sticky_env(c->envp, &eb);
	int vchild = fl_vfork_child() != 0;

	/* The descriptor that is the program must survive: a script run
	 * through it needs /dev/fd/N. */
	int extra = -1;
	if (c->kind == K_FEXECVE || (c->kind == K_EXECVEAT && (c->flags & AT_EMPTY_PATH)))
		extra = c->fd;
	struct strict st;
	int strict = fl_cfg.strict && strict_prepare(&st, extra) == 0;
	int closed = strict ? st.n : 0;

	if (fl_tracing())
		trace_exec(c, vchild, 0, closed, FL_POL_NONE);
	if (fl_hosted())
		prepare(c, FL_PREP_ADOPT); /* last, right before the exec */
	int r = real_exec(c, envp);
	/* Only reached when the exec failed: undo, report, keep errno. */
	int err = errno;
	if (strict)
		strict_undo(&st);
	if (fl_tracing())
		trace_exec(c, vchild, err, closed, FL_POL_NONE);
	errno = err;
	return r;
}

/* ---- the exported functions ---- */

EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	struct call c = {.kind = K_EXECVE, .path = path, .argv = argv, .envp = envp, .fd = -1};
	return do_exec(&c);
}

EXPORT int execv(const char *path, char *const argv[])
{
	struct call c = {.kind = K_EXECVE, .path = path, .argv = argv, .envp = environ, .fd = -1};
	return do_exec(&c);
}

/* execvp and execvpe go to glibc's execvpe with the adjusted envp: its PATH
 * rules (the caller's PATH) and its ENOEXEC fallback to /bin/sh exactly. */
EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	struct call c = {.kind = K_EXECVPE, .path = file, .argv = argv, .envp = envp, .fd = -1};
	return do_exec(&c);
}

EXPORT int execvp(const char *file, char *const argv[])
{
	struct call c = {.kind = K_EXECVPE, .path = file, .argv = argv, .envp = environ, .fd = -1};
	return do_exec(&c);
}

EXPORT int fexecve(int fd, char *const argv[], char *const envp[])
{
	struct call c = {.kind = K_FEXECVE, .argv = argv, .envp = envp, .fd = fd};
	return do_exec(&c);
}

EXPORT int execveat(int dirfd, const char *path, char *const argv[], char *const envp[], int flags)
{
	struct call c = {.kind = K_EXECVEAT, .path = path, .argv = argv, .envp = envp, .fd = dirfd,
			 .flags = flags};
	return do_exec(&c);
}

/* The execl family builds argv on the stack, sized by the argument count
 * as glibc does; too many arguments is E2BIG. */
#define COUNT_ARGS(first, argc)                                       \
	do {                                                          \
		va_list ap_;                                          \
		va_start(ap_, first);                                 \
		for (argc = 1; va_arg(ap_, const char *); argc++)     \
			if (argc == INT_MAX) {                        \
				va_end(ap_);                          \
				errno = E2BIG;                        \
				return -1;                            \
			}                                             \
		va_end(ap_);                                          \
	} while (0)

/* execl_va builds argv (argc entries after arg, then NULL) on its own stack
 * from ap, and for execle takes envp after the NULL. */
static int execl_va(int kind, const char *path, const char *arg, ptrdiff_t argc, va_list ap,
		    int with_envp)
{
	char *argv[argc + 1];
	argv[0] = (char *)arg;
	for (ptrdiff_t i = 1; i <= argc; i++)
		argv[i] = va_arg(ap, char *);
	char *const *envp = with_envp ? va_arg(ap, char *const *) : environ;
	struct call c = {.kind = kind, .path = path, .argv = argv, .envp = envp, .fd = -1};
	return do_exec(&c);
}

#define EXECL(kind, path, arg, with_envp)                                  \
	do {                                                               \
		ptrdiff_t argc;                                            \
		COUNT_ARGS(arg, argc);                                     \
		va_list ap;                                                \
		va_start(ap, arg);                                         \
		int r = execl_va(kind, path, arg, argc, ap, with_envp);    \
		va_end(ap);                                                \
		return r;                                                  \
	} while (0)

EXPORT int execl(const char *path, const char *arg, ...) { EXECL(K_EXECVE, path, arg, 0); }

EXPORT int execle(const char *path, const char *arg, ...) { EXECL(K_EXECVE, path, arg, 1); }

EXPORT int execlp(const char *file, const char *arg, ...) { EXECL(K_EXECVPE, file, arg, 0); }
