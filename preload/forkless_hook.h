/* forkless_hook.h: the hook ABI between a patched glibc and forkless.
 *
 * A glibc carrying the glibcpatch/ series asks forkless first whenever it
 * creates a process: at the top of __spawni (posix_spawn[p], both symbol
 * versions, pidfd_spawn[p], system, popen, wordexp), of __libc_fork (fork,
 * daemon, forkpty), of _Fork, and of __vfork. The hooks are weak undefined
 * symbols in libc: absent, they cost one test of a null address and glibc
 * runs unchanged. libforkless.so (preloaded) or lib/libforkless.a (linked
 * into a static program) defines them.
 *
 * This file is the whole contract and is self-contained: the glibc series
 * carries a byte-identical copy as include/forkless_hook.h, and the hooks
 * never see glibc's private layouts. ABI version 1. Rules:
 *  - a symbol's name ends with the ABI version; an incompatible change gets
 *    new names, so an old libc and a new forkless (or the reverse) simply
 *    do not find each other;
 *  - every call passes FORKLESS_HOOK_ABI; the spawn call also passes its
 *    size, so fields can be added at the end compatibly;
 *  - a hook returns FORKLESS_HOOK_PASS ("not handled": libc goes on exactly
 *    as unpatched) or FORKLESS_HOOK_DONE with the result stored. */
#ifndef FORKLESS_HOOK_H
#define FORKLESS_HOOK_H

#include <sys/types.h>

#define FORKLESS_HOOK_ABI 1

#define FORKLESS_HOOK_PASS 0
#define FORKLESS_HOOK_DONE 1

/* ---- spawn ---- */

/* Request flags (glibc's __spawni xflags, same values). */
#define FORKLESS_SPAWN_USE_PATH 0x1  /* posix_spawnp: search PATH */
#define FORKLESS_SPAWN_TRY_SHELL 0x2 /* compat symbols: ENOEXEC runs /bin/sh */
#define FORKLESS_SPAWN_RET_PIDFD 0x4 /* pidfd_spawn: *pid receives a pidfd */

/* Which libc entry point made the call. */
#define FORKLESS_CALLER_SPAWN 0 /* posix_spawn[p], pidfd_spawn[p] */
#define FORKLESS_CALLER_SYSTEM 1
#define FORKLESS_CALLER_POPEN 2
#define FORKLESS_CALLER_WORDEXP 3

/* File action tags. */
#define FORKLESS_ACTION_CLOSE 1
#define FORKLESS_ACTION_DUP2 2
#define FORKLESS_ACTION_OPEN 3
#define FORKLESS_ACTION_CHDIR 4
#define FORKLESS_ACTION_FCHDIR 5
#define FORKLESS_ACTION_CLOSEFROM 6
#define FORKLESS_ACTION_TCSETPGRP 7

struct forkless_spawn_action {
	int tag;
	int fd;           /* close, dup2 source, open target, fchdir, closefrom, tcsetpgrp */
	int newfd;        /* dup2 target */
	int oflag;        /* open */
	unsigned int mode; /* open */
	int reserved;
	const char *path; /* open, chdir */
};

/* Attribute flags (POSIX and glibc values). */
#define FORKLESS_ATTR_RESETIDS 0x01
#define FORKLESS_ATTR_SETPGROUP 0x02
#define FORKLESS_ATTR_SETSIGDEF 0x04
#define FORKLESS_ATTR_SETSIGMASK 0x08
#define FORKLESS_ATTR_SETSCHEDPARAM 0x10
#define FORKLESS_ATTR_SETSCHEDULER 0x20
#define FORKLESS_ATTR_USEVFORK 0x40
#define FORKLESS_ATTR_SETSID 0x80
#define FORKLESS_ATTR_SETCGROUP 0x100

struct forkless_spawn_attr {
	unsigned int flags;
	int pgrp;
	unsigned long long sigdefault; /* bit n-1: signal n (1..64) */
	unsigned long long sigmask;
	int policy;
	int priority;
	int cgroup; /* SETCGROUP: a cgroup v2 directory fd; -1 otherwise */
	int reserved;
};

struct forkless_spawn_call {
	unsigned int abi;  /* FORKLESS_HOOK_ABI */
	unsigned int size; /* sizeof (struct forkless_spawn_call) as the caller built it */
	int xflags;        /* FORKLESS_SPAWN_* */
	int caller;        /* FORKLESS_CALLER_* */
	const char *file;
	char *const *argv;
	char *const *envp;
	const struct forkless_spawn_action *actions;
	int nactions;
	int reserved;
	const struct forkless_spawn_attr *attr; /* NULL: no attributes */
};

/* The spawn hook. DONE: *result is posix_spawn's return value (0 or an
 * errno) and, on success, *pid (when pid is not NULL) the child, or its
 * pidfd with FORKLESS_SPAWN_RET_PIDFD. The child must be a real child of
 * the caller (system, pclose and wordexp wait for it). */
int __forkless_spawn_hook_v1(const struct forkless_spawn_call *call, pid_t *pid, int *result);

/* ---- fork ---- */

#define FORKLESS_FORK_FORK 1  /* __libc_fork: fork, daemon, forkpty (atfork handlers run) */
#define FORKLESS_FORK__FORK 2 /* _Fork: async-signal-safe, no handlers */

/* The fork hook. libc passes the fork it would have run (unhooked); a hook
 * that handles the call runs it at most once, stores its return value in
 * *result (errno is libc's) and returns DONE. For FORKLESS_FORK__FORK the
 * hook must be async-signal-safe. */
int __forkless_fork_hook_v1(unsigned int abi, int kind, pid_t (*unhooked)(void), pid_t *result);

/* ---- vfork ---- */

/* __vfork tail-jumps here (no call frame: the caller's return address is
 * on top of the stack) with the unhooked vfork's address in %rdi (x86_64).
 * The hook must return twice exactly like vfork; jumping to %rdi with the
 * stack untouched is always correct. Declared for the address only. */
void __forkless_vfork_hook_v1(void);

#endif
