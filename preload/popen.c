/* system, popen and pclose on the spawn engine. glibc's own versions call
 * its hidden __posix_spawn, which no preload sees, so they are replaced
 * whole, keeping glibc 2.36's guarantees:
 *  - system: SIGINT and SIGQUIT ignored and SIGCHLD blocked in the caller
 *    while it waits (dispositions restored by the last of concurrent
 *    calls); the shell gets them at default, unless they were ignored, and
 *    the caller's mask; spawn failure returns 127 << 8; system(NULL) says
 *    whether a shell runs; cancellation kills and reaps the shell.
 *  - popen: modes r/w plus e, the child's end on 0 or 1, streams of
 *    earlier popen calls closed in each new child; a failed spawn returns
 *    NULL with ENOMEM (2.36; 2.38 returns the spawn's error).
 *  - pclose: waits for its own child only; a stream this library did not
 *    open goes to glibc's pclose (which is fclose). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "forkless.h"

#define EXPORT __attribute__((visibility("default")))
#define SHELL_PATH "/bin/sh"

/* spawn_sh runs /bin/sh with argv (environ, made sticky), policed and
 * traced as any spawn. */
static int spawn_sh(enum fl_via via, pid_t *pid, char *const argv[], const struct fl_action *acts,
		    int nacts, const struct fl_attr *attr)
{
	struct fl_envbuf eb;
	struct fl_spawn req = {
		.path = SHELL_PATH,
		.argv = argv,
		.envp = fl_sticky_env(environ, &eb),
		.actions = acts,
		.nactions = nacts,
		.attr = attr,
	};
	return fl_spawn_policed(&req, via, pid, 0);
}

/* ---- system ---- */

/* Guarded by fl_lock. */
static int sys_refs;
static struct sigaction sys_intr, sys_quit;

static void sys_release(void)
{
	fl_lock();
	if (--sys_refs == 0) {
		sigaction(SIGINT, &sys_intr, 0);
		sigaction(SIGQUIT, &sys_quit, 0);
	}
	fl_unlock();
}

struct sys_cancel {
	pid_t pid;
	const sigset_t *omask;
};

/* Cancelled in waitpid: the shell must not outlive the call. */
static void sys_cancelled(void *p)
{
	const struct sys_cancel *c = p;
	int state;
	kill(c->pid, SIGKILL);
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &state);
	while (waitpid(c->pid, 0, 0) < 0 && errno == EINTR)
		;
	pthread_setcancelstate(state, 0);
	sys_release();
	sigprocmask(SIG_SETMASK, c->omask, 0);
}

static int do_system(const char *line)
{
	struct sigaction ign;
	memset(&ign, 0, sizeof ign);
	ign.sa_handler = SIG_IGN;
	sigemptyset(&ign.sa_mask);
	fl_lock();
	if (sys_refs++ == 0) {
		sigaction(SIGINT, &ign, &sys_intr);
		sigaction(SIGQUIT, &ign, &sys_quit);
	}
	fl_unlock();

	sigset_t chld, omask;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, &omask);

	struct fl_attr attr = {.flags = FL_SETSIGDEF | FL_SETSIGMASK};
	if (sys_intr.sa_handler != SIG_IGN)
		attr.sigdefault |= 1ULL << (SIGINT - 1);
	if (sys_quit.sa_handler != SIG_IGN)
		attr.sigdefault |= 1ULL << (SIGQUIT - 1);
	memcpy(&attr.sigmask, &omask, sizeof attr.sigmask); /* signals 1..64 */

	char *argv[] = {(char *)"sh", (char *)"-c", (char *)line, 0};
	pid_t pid = 0;
	int ret = spawn_sh(FL_VIA_SYSTEM, &pid, argv, 0, 0, &attr);
	int status = -1;
	if (ret == 0) {
		struct sys_cancel c = {pid, &omask};
		pthread_cleanup_push(sys_cancelled, &c);
		pid_t w;
		do
			w = waitpid(pid, &status, 0); /* a cancellation point */
		while (w < 0 && errno == EINTR);
		if (w != pid)
			status = -1;
		pthread_cleanup_pop(0);
	} else {
		/* POSIX: as if the shell had exited with 127. */
		status = 127 << 8;
	}
	sys_release();
	sigprocmask(SIG_SETMASK, &omask, 0);
	if (ret != 0)
		errno = ret;
	return status;
}

EXPORT int system(const char *line)
{
	fl_ensure_init();
	fl_ensure_real();
	if (fl_cfg.disabled)
		return fl_real.system ? fl_real.system(line) : -1;
	if (!line)
		return do_system("exit 0") == 0;
	return do_system(line);
}

/* ---- popen, pclose ---- */

/* The handle table: streams this library opened. Guarded by fl_lock;
 * grown with realloc in the parent only. */
struct handle {
	FILE *fp;
	pid_t pid;
	int fd;
};
static struct handle *handles;
static int nhandles, caphandles;

#define STACK_ACTIONS 16

EXPORT FILE *popen(const char *command, const char *mode)
{
	fl_ensure_init();
	fl_ensure_real();
	if (fl_cfg.disabled)
		return fl_real.popen ? fl_real.popen(command, mode) : 0;

	int rd = 0, wr = 0, cloexec = 0;
	for (const char *m = mode; *m; m++) {
		switch (*m) {
		case 'r':
			rd = 1;
			break;
		case 'w':
			wr = 1;
			break;
		case 'e':
			cloexec = 1;
			break;
		default:
			errno = EINVAL;
			return 0;
		}
	}
	if (rd == wr) {
		errno = EINVAL;
		return 0;
	}

	/* Both ends close-on-exec until the spawn is done: a concurrent
	 * fork+exec elsewhere must not inherit them. */
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0)
		return 0;
	int parent_end = rd ? 0 : 1, child_end = rd ? 1 : 0, child_fd = rd ? 1 : 0;
	if (fds[child_end] == child_fd) {
		/* dup2 onto itself would leave it close-on-exec: move it. */
		int tmp = fcntl(child_fd, F_DUPFD_CLOEXEC, 0);
		if (tmp < 0) {
			close(fds[0]), close(fds[1]);
			return 0;
		}
		close(fds[child_end]);
		fds[child_end] = tmp;
	}
	FILE *fp = fdopen(fds[parent_end], rd ? "r" : "w");
	if (!fp) {
		int e = errno;
		close(fds[0]), close(fds[1]);
		errno = e;
		return 0;
	}

	struct fl_action stack_acts[STACK_ACTIONS], *acts = stack_acts;
	char *argv[] = {(char *)"sh", (char *)"-c", (char *)command, 0};
	pid_t pid = 0;
	int ok = 0, err = ENOMEM;

	fl_lock();
	if (nhandles == caphandles) {
		int cap = caphandles ? 2 * caphandles : 16;
		struct handle *h = realloc(handles, (size_t)cap * sizeof *h);
		if (!h)
			goto out;
		handles = h, caphandles = cap;
	}
	if (nhandles + 1 > STACK_ACTIONS) {
		acts = malloc((size_t)(nhandles + 1) * sizeof *acts);
		if (!acts)
			goto out;
	}
	int n = 0;
	acts[n++] = (struct fl_action){.tag = FL_DUP2, .fd = fds[child_end], .newfd = child_fd};
	/* Streams of earlier popen calls are closed in the new child. */
	for (int i = 0; i < nhandles; i++)
		if (handles[i].fd != child_fd)
			acts[n++] = (struct fl_action){.tag = FL_CLOSE, .fd = handles[i].fd};
	int rc = spawn_sh(FL_VIA_POPEN, &pid, argv, acts, n, 0);
	if (rc == EAGAIN || rc == EACCES)
		err = rc; /* the host's policy: said as it is */
	if (rc == 0) {
		if (!cloexec)
			fcntl(fds[parent_end], F_SETFD, 0);
		handles[nhandles++] = (struct handle){fp, pid, fds[parent_end]};
		ok = 1;
	}
out:
	fl_unlock();
	if (acts != stack_acts)
		free(acts);
	close(fds[child_end]);
	if (!ok) {
		fclose(fp);
		errno = err;
		return 0;
	}
	return fp;
}

EXPORT int pclose(FILE *fp)
{
	fl_ensure_init();
	fl_ensure_real();
	pid_t pid = -1;
	fl_lock();
	for (int i = 0; i < nhandles; i++) {
		if (handles[i].fp == fp) {
			pid = handles[i].pid;
			/* Once out of the table, later popen children no longer
			 * close it: until fclose below, close-on-exec keeps it
			 * from them. */
			fl_sys3(SYS_fcntl, handles[i].fd, F_SETFD, FD_CLOEXEC);
			handles[i] = handles[--nhandles];
			break;
		}
	}
	fl_unlock();
	if (pid < 0)
		return fl_real.pclose ? fl_real.pclose(fp) : -1;

	/* glibc's pclose is fclose with a close hook that waits: a failed
	 * flush shows only when the child's status is 0. */
	int flushed = fclose(fp);
	int status, state;
	pid_t w;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &state);
	do
		w = waitpid(pid, &status, 0);
	while (w < 0 && errno == EINTR);
	pthread_setcancelstate(state, 0);
	if (w < 0)
		return -1;
	return status != 0 ? status : (flushed != 0 ? -1 : 0);
}
