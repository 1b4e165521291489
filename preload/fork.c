/* fork, _Fork, and the record of a real vfork's caller (vfork_x86_64.S
 * jumps to the real vfork after fl_vfork_prehook returns; lazy vfork is
 * lazyvfork.c). */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "forkless.h"

#define EXPORT __attribute__((visibility("default")))

/* ---- vfork ---- */

/* The vfork child runs on the parent's thread memory, TLS included, so it
 * sees the record its parent wrote. initial-exec: no __tls_get_addr on
 * these paths (the library is loaded at startup). */
static __thread struct fl_vfork_rec vrec __attribute__((tls_model("initial-exec")));

/* fl_vfork_note records the caller of a vfork about to happen (a real one,
 * or the real child a lazy vfork may make later). */
void fl_vfork_note(void)
{
	vrec.pid = (pid_t)fl_sys0(SYS_getpid);
	vrec.tid = 0, vrec.ppid = 0, vrec.t0 = 0;
	if (fl_tracing()) {
		vrec.tid = (pid_t)fl_sys0(SYS_gettid);
		vrec.ppid = (pid_t)fl_sys0(SYS_getppid);
		vrec.t0 = fl_now_ns();
	}
}

/* fl_vfork_prehook runs in the caller of a real vfork, before the tail
 * jump (vfork_x86_64.S, through fl_vfork_entry); it returns the function
 * to jump to. */
void *fl_vfork_prehook(void)
{
	fl_ensure_init();
	/* Look up execvp's real function now, in the parent: the child
	 * must not need the loader. */
	fl_ensure_real();
	if (!fl_cfg.disabled)
		fl_vfork_note();
	/* A patched libc: its unhooked vfork, or its vfork once with the
	 * hook told to let it through. */
	void *unhooked = __atomic_load_n(&fl_vfork_unhooked, __ATOMIC_RELAXED);
	if (unhooked)
		return unhooked;
	fl_hook_skip = 1;
	/* fork is a valid vfork should the symbol be missing. */
	return fl_real.vfork ? (void *)fl_real.vfork : (void *)fl_real.fork;
}

const struct fl_vfork_rec *fl_vfork_child(void)
{
	pid_t p = vrec.pid;
	if (p == 0)
		return 0;
	/* A vfork child has another pid and the recorder as its parent (a
	 * nested vfork overwrites the record; its parent, once resumed, then
	 * fails the second test). */
	if (fl_sys0(SYS_getpid) == p || fl_sys0(SYS_getppid) != p)
		return 0;
	return &vrec;
}

void fl_vfork_forget(void) { vrec.pid = 0; }

/* ---- fork ---- */

static void trace_fork(pid_t pid, int err, int threads, uint64_t t0, const struct fl_fdlist *fds,
		       enum fl_policy policy)
{
	struct fl_trace_rec r = {
		.event = FL_EV_FORK,
		.via = FL_VIA_FORK,
		.child = pid > 0 ? pid : 0,
		.dur_ns = fl_now_ns() - t0,
		.err = err,
		.threads = threads,
		.fds = pid > 0 && fl_hosted() ? fds : 0, /* listed only for the host */
		.policy = policy,
	};
	fl_trace(&r);
}

/* fork_prepare asks the host for room (-1: no limit) and, with a host,
 * lists the descriptors the child will hold. 0: refused (EAGAIN). */
static int fork_prepare(struct fl_fdlist *fds, int threads, uint64_t t0)
{
	fds->n = 0, fds->truncated = 0;
	if (!fl_hosted())
		return -1;
	int admitted = fl_admit();
	if (admitted == 0) {
		trace_fork(-1, EAGAIN, threads, t0, 0, FL_POL_MAX_PROCS);
		return 0;
	}
	fl_list_all_fds(fds);
	return admitted;
}

/* fl_fork runs real (libc's fork or _Fork) the library's way: the host's
 * process limit, the descriptor snapshot, the trace line and the child's
 * reset. locked holds the library lock across real (fork: the child never
 * sees the popen table or the trace state half-updated); _Fork must stay
 * async-signal-safe, so another thread may have held the lock and it is
 * not taken. skip_hook: real is a patched libc's hooked function, whose
 * hook must let this call through. */
pid_t fl_fork(pid_t (*real)(void), int locked, int skip_hook)
{
	int tracing = fl_tracing();
	int threads = tracing ? fl_count_threads() : 0;
	uint64_t t0 = tracing ? fl_now_ns() : 0;
	struct fl_fdlist fds;
	int admitted = fork_prepare(&fds, threads, t0);
	if (admitted == 0) {
		errno = EAGAIN;
		return -1;
	}
	if (locked)
		fl_lock();
	if (skip_hook)
		fl_hook_skip = 1;
	pid_t pid = real();
	if (pid == 0) {
		fl_after_fork_child();
		fl_lazy_after_fork();
		return 0;
	}
	int err = pid < 0 ? errno : 0;
	if (locked)
		fl_unlock();
	if (tracing)
		trace_fork(pid, err, threads, t0, &fds, FL_POL_NONE);
	if (admitted == 1)
		fl_settle();
	if (pid < 0)
		errno = err;
	return pid;
}

EXPORT pid_t fork(void)
{
	fl_ensure_init();
	if (fl_lazy_child()) /* a lazy vfork child: become a real one first */
		fl_lazy_force("fork");
	if (!fl_real.fork) {
		errno = ENOSYS;
		return -1;
	}
	if (fl_cfg.disabled)
		return fl_real.fork();
	return fl_fork(fl_real.fork, 1, 1);
}

EXPORT pid_t _Fork(void)
{
	fl_ensure_init();
	if (fl_lazy_child())
		fl_lazy_force("fork");
	fl_ensure_real(); /* a dlsym on the first call only */
	if (!fl_real._Fork) {
		errno = ENOSYS;
		return -1;
	}
	if (fl_cfg.disabled)
		return fl_real._Fork();
	return fl_fork(fl_real._Fork, 0, 1);
}
