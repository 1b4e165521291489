/* posix_spawn and posix_spawnp, both symbol versions, on the engine.
 *
 * The default versions (GLIBC_2.15) return ENOEXEC for a file the kernel
 * cannot execute; the compat versions (GLIBC_2.2.5), which old binaries
 * bind to, run it with /bin/sh as glibc's do. */
#define _GNU_SOURCE
#include <errno.h>
#include <spawn.h>
#include <stdlib.h>

#include "forkless.h"

typedef int (*spawn_fn)(pid_t *, const char *, const void *, const void *, char *const[], char *const[]);

#define STACK_ACTIONS 32

int fl_spawn_policed(struct fl_spawn *req, enum fl_via via, pid_t *child, int *pidfd)
{
	req->nkeep = -1;
	if (fl_cfg.strict)
		req->keep = fl_cfg.keep, req->nkeep = fl_cfg.nkeep;
	struct fl_fdlist fds;
	int closed = 0, tracing = fl_tracing();
	uint64_t t0 = 0;
	if (tracing) {
		fds.n = 0, fds.truncated = 0;
		req->fdlist = &fds;
		if (fl_cfg.strict)
			req->strict_closed = &closed;
		t0 = fl_now_ns();
	}
	int denied = 0, rc;
	req->denied = &denied;
	int admitted = fl_admit(); /* the host's process limit */
	if (admitted == 0)
		rc = EAGAIN;
	else
		rc = fl_spawn(child, pidfd, req);
	if (tracing) {
		struct fl_trace_rec r = {
			.event = FL_EV_SPAWN, .via = via, .child = rc == 0 ? *child : 0,
			.path = req->path, .argv = req->argv, .fds = rc == 0 ? &fds : 0,
			.dur_ns = fl_now_ns() - t0, .err = rc, .strict_closed = closed,
			.policy = admitted == 0 ? FL_POL_MAX_PROCS : denied && rc ? FL_POL_EXEC_DENY : FL_POL_NONE,
		};
		fl_trace(&r);
	}
	if (admitted == 1)
		fl_settle();
	return rc;
}

static int spawn_common(enum fl_via via, int flags, spawn_fn *realp, pid_t *pid, const char *path,
			const void *fa, const void *at, char *const argv[], char *const envp[])
{
	spawn_fn real;
	fl_ensure_init();
	if (fl_cfg.disabled) {
		fl_ensure_real();
		real = *realp;
		return real ? real(pid, path, fa, at, argv, envp) : ENOSYS;
	}
	struct fl_action buf[STACK_ACTIONS], *acts = buf;
	struct fl_attr attr;
	int needed = 0;
	int n = fl_decode(fa, at, buf, STACK_ACTIONS, &needed, &attr);
	if (n == -2) {
		acts = malloc((size_t)needed * sizeof *acts);
		if (!acts)
			return ENOMEM;
		n = fl_decode(fa, at, acts, needed, &needed, &attr);
	}
	if (n < 0) {
		/* Unknown layout or action: glibc does it, exactly as always. */
		if (acts != buf)
			free(acts);
		fl_ensure_real();
		real = *realp;
		return real ? real(pid, path, fa, at, argv, envp) : ENOSYS;
	}
	/* Children keep the preload even when the program rewrites envp. */
	struct fl_envbuf envbuf;
	envp = fl_sticky_env(envp, &envbuf);

	struct fl_spawn req = {
		.path = path, .argv = argv, .envp = envp, .actions = acts, .nactions = n,
		.attr = &attr, .flags = flags,
	};
	pid_t child = 0;
	int rc = fl_spawn_policed(&req, via, &child, 0);
	if (rc == 0 && pid)
		*pid = child;
	if (acts != buf)
		free(acts);
	return rc;
}

#define EXPORT __attribute__((visibility("default")))

EXPORT int fl_posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
			  const posix_spawnattr_t *at, char *const argv[], char *const envp[])
{
	return spawn_common(FL_VIA_POSIX_SPAWN, 0, &fl_real.posix_spawn, pid, path, fa, at, argv, envp);
}

EXPORT int fl_posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
			   const posix_spawnattr_t *at, char *const argv[], char *const envp[])
{
	return spawn_common(FL_VIA_POSIX_SPAWNP, FL_SEARCH, &fl_real.posix_spawnp, pid, file, fa, at,
			    argv, envp);
}

EXPORT int fl_posix_spawn_compat(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
				 const posix_spawnattr_t *at, char *const argv[], char *const envp[])
{
	return spawn_common(FL_VIA_POSIX_SPAWN, FL_COMPAT_SH, &fl_real.posix_spawn_compat, pid, path,
			    fa, at, argv, envp);
}

EXPORT int fl_posix_spawnp_compat(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
				  const posix_spawnattr_t *at, char *const argv[], char *const envp[])
{
	return spawn_common(FL_VIA_POSIX_SPAWNP, FL_SEARCH | FL_COMPAT_SH, &fl_real.posix_spawnp_compat,
			    pid, file, fa, at, argv, envp);
}

__asm__(".symver fl_posix_spawn, posix_spawn@@GLIBC_2.15");
__asm__(".symver fl_posix_spawnp, posix_spawnp@@GLIBC_2.15");
__asm__(".symver fl_posix_spawn_compat, posix_spawn@GLIBC_2.2.5");
__asm__(".symver fl_posix_spawnp_compat, posix_spawnp@GLIBC_2.2.5");
