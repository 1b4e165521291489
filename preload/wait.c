/* The wait family: with a host, a reaped child's wait status is reported
 * as an "exit" line (pid: the child that ended, ppid: the reaper). Without
 * a host each call is libc's after one branch. waitpid is glibc's exported
 * __waitpid (a cancellation point as ever), and wait is waitpid(-1); wait3,
 * wait4 and waitid are looked up with dlsym on first use (at load under a
 * host, so that a signal handler never runs the loader).
 *
 * Stopped and continued children are not exits and are not reported; nor
 * is a waitid with WNOWAIT (the child is still there to reap). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "forkless.h"

#define EXPORT __attribute__((visibility("default")))

extern pid_t __waitpid(pid_t, int *, int);

static inline int hosted(void)
{
	return __atomic_load_n(&fl_initialized, __ATOMIC_ACQUIRE) && !fl_cfg.disabled && fl_hosted();
}

static void report(pid_t pid, int status)
{
	if (!WIFEXITED(status) && !WIFSIGNALED(status))
		return;
	int saved = errno;
	struct fl_trace_rec r = {
		.event = FL_EV_EXIT,
		.via = FL_VIA_EXIT,
		.child = pid,
		.status = status,
	};
	fl_trace(&r);
	errno = saved;
}

/* reaped gives the caller the status of what wait call r reaped, and
 * reports it. */
static pid_t reaped(pid_t r, int st, int *status)
{
	if (r > 0) {
		if (status)
			*status = st;
		report(r, st);
	}
	return r;
}

EXPORT pid_t waitpid(pid_t pid, int *status, int options)
{
	if (__builtin_expect(!hosted(), 1))
		return __waitpid(pid, status, options);
	int st = 0;
	pid_t r = __waitpid(pid, &st, options);
	return reaped(r, st, status);
}

EXPORT pid_t wait(int *status) { return waitpid(-1, status, 0); }

EXPORT pid_t wait4(pid_t pid, int *status, int options, struct rusage *ru)
{
	fl_ensure_real();
	if (!fl_real.wait4) {
		errno = ENOSYS;
		return -1;
	}
	if (__builtin_expect(!hosted(), 1))
		return fl_real.wait4(pid, status, options, ru);
	int st = 0;
	pid_t r = fl_real.wait4(pid, &st, options, ru);
	return reaped(r, st, status);
}

EXPORT pid_t wait3(int *status, int options, struct rusage *ru) { return wait4(-1, status, options, ru); }

EXPORT int waitid(idtype_t idtype, id_t id, siginfo_t *info, int options)
{
	fl_ensure_real();
	if (!fl_real.waitid) {
		errno = ENOSYS;
		return -1;
	}
	int r = fl_real.waitid(idtype, id, info, options);
	if (__builtin_expect(!hosted(), 1) || r != 0 || !info || info->si_pid <= 0 || (options & WNOWAIT))
		return r;
	switch (info->si_code) {
	case CLD_EXITED:
		report(info->si_pid, (info->si_status & 0xff) << 8);
		break;
	case CLD_KILLED:
		report(info->si_pid, info->si_status & 0x7f);
		break;
	case CLD_DUMPED:
		report(info->si_pid, (info->si_status & 0x7f) | 0x80);
		break;
	}
	return r;
}
