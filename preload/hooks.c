/* The hook side of a patched glibc (glibcpatch/, ABI in forkless_hook.h).
 *
 * A patched libc asks these functions first when it creates a process,
 * including from places no preload sees (system, popen and wordexp call a
 * hidden __posix_spawn; daemon and forkpty call __fork). They run the
 * same engine and trace as the interposers, with the entry point as via.
 *
 * Two ways in, one code:
 *  - dynamic: libforkless.so preloaded defines the hooks; the patched
 *    libc.so's weak references bind to them at load. The interposers still
 *    run first for the calls they see; when one of them passes a call on
 *    to libc (fork, _Fork, a real vfork), it sets fl_hook_skip so the hook
 *    does not handle the same call twice.
 *  - static: lib/libforkless.a, linked into a program with the patched
 *    libc.a, carries these hooks with the interposers made local (the
 *    Makefile rule); the program's own calls reach libc, then the hooks. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>

#include "forkless.h"
#include "forkless_hook.h"

#define EXPORT __attribute__((visibility("default")))

/* A mark that tools read to recognise a program linked with the hooks
 * (forkless run: cmd/forkless/runglibc.go). */
__attribute__((section(".forkless.hooks"), used)) static const char hooks_mark[] =
	"forkless glibc hooks abi 1";

__thread int fl_hook_skip __attribute__((tls_model("initial-exec")));

/* The vfork that __vfork would have run, learned from the first hooked
 * call (the same address every time). */
void *fl_vfork_unhooked;

static int take_skip(void)
{
	if (__builtin_expect(fl_hook_skip, 0)) {
		fl_hook_skip = 0;
		return 1;
	}
	return 0;
}

/* ---- spawn ---- */

#define STACK_ACTIONS 32

static int convert_actions(const struct forkless_spawn_call *c, struct fl_action *out)
{
	for (int i = 0; i < c->nactions; i++) {
		const struct forkless_spawn_action *a = &c->actions[i];
		struct fl_action *f = &out[i];
		f->fd = a->fd, f->newfd = a->newfd, f->oflag = a->oflag;
		f->mode = (mode_t)a->mode, f->path = a->path;
		switch (a->tag) {
		case FORKLESS_ACTION_CLOSE: f->tag = FL_CLOSE; break;
		case FORKLESS_ACTION_DUP2: f->tag = FL_DUP2; break;
		case FORKLESS_ACTION_OPEN: f->tag = FL_OPEN; break;
		case FORKLESS_ACTION_CHDIR: f->tag = FL_CHDIR; break;
		case FORKLESS_ACTION_FCHDIR: f->tag = FL_FCHDIR; break;
		case FORKLESS_ACTION_CLOSEFROM: f->tag = FL_CLOSEFROM; break;
		case FORKLESS_ACTION_TCSETPGRP: f->tag = FL_TCSETPGRP; break;
		default: return -1;
		}
	}
	return 0;
}

static enum fl_via via_of(const struct forkless_spawn_call *c)
{
	switch (c->caller) {
	case FORKLESS_CALLER_SYSTEM: return FL_VIA_SYSTEM;
	case FORKLESS_CALLER_POPEN: return FL_VIA_POPEN;
	case FORKLESS_CALLER_WORDEXP: return FL_VIA_WORDEXP;
	}
	if (c->xflags & FORKLESS_SPAWN_RET_PIDFD)
		return FL_VIA_PIDFD_SPAWN;
	return (c->xflags & FORKLESS_SPAWN_USE_PATH) ? FL_VIA_POSIX_SPAWNP : FL_VIA_POSIX_SPAWN;
}

EXPORT int __forkless_spawn_hook_v1(const struct forkless_spawn_call *c, pid_t *pid, int *result)
{
	if (!c || c->abi != FORKLESS_HOOK_ABI || c->size < sizeof *c || c->nactions < 0 ||
	    (c->nactions && !c->actions) ||
	    (c->xflags & ~(FORKLESS_SPAWN_USE_PATH | FORKLESS_SPAWN_TRY_SHELL | FORKLESS_SPAWN_RET_PIDFD)))
		return FORKLESS_HOOK_PASS;
	fl_ensure_init();
	if (fl_cfg.disabled)
		return FORKLESS_HOOK_PASS;

	struct fl_action buf[STACK_ACTIONS], *acts = buf;
	if (c->nactions > STACK_ACTIONS) {
		acts = malloc((size_t)c->nactions * sizeof *acts);
		if (!acts)
			return FORKLESS_HOOK_PASS; /* glibc does it */
	}
	if (convert_actions(c, acts) != 0) {
		if (acts != buf)
			free(acts);
		return FORKLESS_HOOK_PASS;
	}
	struct fl_attr attr = {.cgroup = -1};
	if (c->attr) {
		attr.flags = (int)c->attr->flags;
		attr.pgrp = c->attr->pgrp;
		attr.sigdefault = c->attr->sigdefault;
		attr.sigmask = c->attr->sigmask;
		attr.policy = c->attr->policy;
		attr.priority = c->attr->priority;
		attr.cgroup = c->attr->cgroup;
	}

	struct fl_envbuf envbuf;
	struct fl_spawn req = {
		.path = c->file, .argv = c->argv, .envp = fl_sticky_env(c->envp, &envbuf),
		.actions = acts, .nactions = c->nactions, .attr = &attr,
		.flags = ((c->xflags & FORKLESS_SPAWN_USE_PATH) ? FL_SEARCH : 0) |
			 ((c->xflags & FORKLESS_SPAWN_TRY_SHELL) ? FL_COMPAT_SH : 0) |
			 ((c->xflags & FORKLESS_SPAWN_RET_PIDFD) ? FL_PIDFD : 0),
	};
	pid_t child = 0;
	int pidfd = -1;
	int rc = fl_spawn_policed(&req, via_of(c), &child, &pidfd);
	if (rc == 0 && pid)
		*pid = (c->xflags & FORKLESS_SPAWN_RET_PIDFD) ? pidfd : child;
	if (acts != buf)
		free(acts);
	*result = rc;
	return FORKLESS_HOOK_DONE;
}

/* ---- fork ---- */

EXPORT int __forkless_fork_hook_v1(unsigned int abi, int kind, pid_t (*unhooked)(void), pid_t *result)
{
	if (abi != FORKLESS_HOOK_ABI || !unhooked ||
	    (kind != FORKLESS_FORK_FORK && kind != FORKLESS_FORK__FORK))
		return FORKLESS_HOOK_PASS;
	if (take_skip()) /* an interposer already handles this call */
		return FORKLESS_HOOK_PASS;
	fl_ensure_init();
	if (fl_lazy_child()) /* a lazy vfork child: become a real one first */
		fl_lazy_force("fork");
	if (fl_cfg.disabled)
		return FORKLESS_HOOK_PASS;
	/* The unhooked function does not come back to the hook. */
	pid_t p = fl_fork(unhooked, kind == FORKLESS_FORK_FORK, 0);
	*result = p;
	return FORKLESS_HOOK_DONE;
}

/* ---- vfork ---- */

/* What vfork_x86_64.S's fl_vfork_entry returns: {st, jump}. */
struct lz_entry {
	void *st;
	void *jump;
};
FL_HIDDEN struct lz_entry fl_vfork_entry(void);
FL_HIDDEN struct lz_entry fl_vfork_hook_entry(void *unhooked);

/* Called by __forkless_vfork_hook_v1 (hooks_x86_64.S) with the unhooked
 * vfork; the rest is the interposed vfork's decision (lazy or real). */
struct lz_entry fl_vfork_hook_entry(void *unhooked)
{
	struct lz_entry e = {0, unhooked};
	__atomic_store_n(&fl_vfork_unhooked, unhooked, __ATOMIC_RELAXED);
	if (take_skip())
		return e;
	fl_ensure_init();
	if (fl_cfg.disabled)
		return e;
	return fl_vfork_entry();
}
