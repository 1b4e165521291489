/* libforkless: the in-process runtime loaded with LD_PRELOAD.
 *
 * Internal interfaces shared by the library's files. Nothing here is
 * exported: the library exports only the interposed libc symbols (see
 * libforkless.map). Rules for everything in this folder:
 *  - no threads, and no allocation on child paths (a CLONE_VM child or a
 *    vfork child shares the parent's memory and heap locks);
 *  - child paths use raw system calls (fl_sys*), never errno;
 *  - an unknown situation falls back to the real libc function. */
#ifndef FORKLESS_H
#define FORKLESS_H

#include <signal.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/wait.h>
struct rusage;

#define FL_HIDDEN __attribute__((visibility("hidden")))

/* ---- raw system calls (syscall.h is header-only) ---- */
#include "syscall.h"

/* ---- the spawn engine (engine.c) ---- */

/* File action tags, in the order glibc added them. */
enum fl_action_tag {
	FL_CLOSE = 1,
	FL_DUP2,
	FL_OPEN,
	FL_CHDIR,
	FL_FCHDIR,
	FL_CLOSEFROM,
	FL_TCSETPGRP,
	FL_CLOSERANGE, /* close [fd, newfd]; no glibc equivalent (lazy vfork) */
};

struct fl_action {
	int tag;
	int fd;    /* close, dup2 source, open target, fchdir, closefrom, tcsetpgrp */
	int newfd; /* dup2 target */
	int oflag; /* open */
	mode_t mode;
	const char *path; /* open, chdir */
};

/* posix_spawnattr flags (glibc's values). */
#define FL_RESETIDS 0x01
#define FL_SETPGROUP 0x02
#define FL_SETSIGDEF 0x04
#define FL_SETSIGMASK 0x08
#define FL_SETSCHEDPARAM 0x10
#define FL_SETSCHEDULER 0x20
#define FL_USEVFORK 0x40
#define FL_SETSID 0x80
#define FL_SETCGROUP 0x100
/* Extensions for lazy vfork, never set by fl_decode: above glibc's short. */
#define FL_X_SETUMASK 0x10000 /* umask(attr->umask) after RESETIDS */
#define FL_X_SIGIGN 0x20000   /* attr->sigignore set to SIG_IGN after SETSIGDEF */

struct fl_attr {
	int flags;
	pid_t pgrp;
	uint64_t sigdefault; /* bit n-1 = signal n */
	uint64_t sigmask;
	int policy;
	int priority;
	int cgroup; /* a cgroup v2 directory fd, for FL_SETCGROUP */
	mode_t umask;        /* FL_X_SETUMASK */
	uint64_t sigignore;  /* FL_X_SIGIGN: bit n-1 = signal n */
};

/* Request flags. */
#define FL_SEARCH 0x1   /* posix_spawnp: search the caller's PATH */
#define FL_COMPAT_SH 0x2 /* compat symbols: ENOEXEC runs /bin/sh */
#define FL_PIDFD 0x4    /* also return a pidfd (pidfd_spawn) */
#define FL_EXEC_SH 0x8  /* execvpe: ENOEXEC runs /bin/sh, per PATH entry too */

/* Descriptors a traced child reports before exec (shared memory). */
#define FL_FDLIST_MAX 64
struct fl_fd {
	int fd;
	int flags; /* open flags from /proc/self/fdinfo (host mode), -1 unknown */
	char target[120];
};
struct fl_fdlist {
	int n;         /* entries filled */
	int truncated; /* more descriptors than FL_FDLIST_MAX */
	struct fl_fd fds[FL_FDLIST_MAX];
};

struct fl_spawn {
	const char *path;
	char *const *argv;
	char *const *envp;
	const struct fl_action *actions;
	int nactions;
	const struct fl_attr *attr; /* NULL: no attributes */
	int flags;                  /* FL_SEARCH | FL_COMPAT_SH | FL_PIDFD */
	/* Strict descriptor policy: when nkeep >= 0, the child closes every
	 * descriptor except 0, 1, 2, the targets of the file actions and
	 * keep[0..nkeep-1], after the file actions. nkeep < 0: POSIX. */
	const int *keep;
	int nkeep;
	struct fl_fdlist *fdlist; /* non-NULL: the child lists its fds before exec */
	int *strict_closed;       /* non-NULL: how many fds strict mode closed */
	int *clone_failed;        /* non-NULL: set to 1 when no child was made */
	int *denied;              /* non-NULL: set to 1 when the exec policy refused the program */
};

/* fl_spawn creates a process as posix_spawn does. It returns 0 and sets
 * *pid (and *pidfd with FL_PIDFD), or returns an errno and touches
 * neither; a child that failed before exec has been reaped. */
FL_HIDDEN int fl_spawn(pid_t *pid, int *pidfd, const struct fl_spawn *req);

/* ---- glibc's private structures (decode.c) ---- */

/* fl_decode translates glibc's posix_spawn_file_actions_t and
 * posix_spawnattr_t (either may be NULL) into actions and attr. It returns
 * the number of actions, or -1 when the layout or a tag is unknown: the
 * caller must then use the real glibc function. actions has room for max
 * entries; a larger list returns -2 and sets *needed. */
FL_HIDDEN int fl_decode(const void *file_actions, const void *attrp, struct fl_action *actions,
			int max, int *needed, struct fl_attr *attr);

/* fl_glibc_ok reports whether the running glibc's layouts are known. */
FL_HIDDEN int fl_glibc_ok(void);

/* ---- process-wide state (init.c) ---- */

struct fl_config {
	int disabled;      /* FORKLESS_DISABLE=1: pass everything to libc */
	int strict;        /* FORKLESS_FDS=strict */
	int keep[32];      /* FORKLESS_KEEP_FDS */
	int nkeep;
	int trace_fd;      /* -1: tracing off */
	char trace_path[512];
	int real_vfork;    /* FORKLESS_VFORK=real: vfork is glibc's (traced), not lazy */
	char lib_path[1024]; /* this library, absolute (stickiness); "" if unknown */
	/* The libos host (host.c): reports go over its socket, not to
	 * trace_path; host_path[0] == 0 means no host. */
	char host_path[108];
	int host_pid;      /* FORKLESS_HOST_PID */
	int max_procs;     /* FORKLESS_MAX_PROCS: ask the host before creating a process */
	int nallow, ndeny; /* FORKLESS_EXEC_ALLOW / FORKLESS_EXEC_DENY patterns */
	const char *allow[64], *deny[64];
};
FL_HIDDEN extern struct fl_config fl_cfg;

/* The library lock guards the popen handle table and the trace
 * descriptor. fork takes it so a child never sees a half-updated table. */
FL_HIDDEN void fl_lock(void);
FL_HIDDEN void fl_unlock(void);
/* fl_after_fork_child re-initialises per-process state in a fork child
 * (the lock, cached pid). */
FL_HIDDEN void fl_after_fork_child(void);

/* The real libc functions, resolved once at load. */
struct fl_real {
	int (*posix_spawn)(pid_t *, const char *, const void *, const void *, char *const[], char *const[]);
	int (*posix_spawnp)(pid_t *, const char *, const void *, const void *, char *const[], char *const[]);
	int (*posix_spawn_compat)(pid_t *, const char *, const void *, const void *, char *const[], char *const[]);
	int (*posix_spawnp_compat)(pid_t *, const char *, const void *, const void *, char *const[], char *const[]);
	int (*pidfd_spawn)(int *, const char *, const void *, const void *, char *const[], char *const[]);
	int (*pidfd_spawnp)(int *, const char *, const void *, const void *, char *const[], char *const[]);
	pid_t (*fork)(void);
	pid_t (*_Fork)(void);
	pid_t (*vfork)(void);
	int (*execve)(const char *, char *const[], char *const[]);
	int (*execvpe)(const char *, char *const[], char *const[]);
	int (*fexecve)(int, char *const[], char *const[]);
	int (*execveat)(int, const char *, char *const[], char *const[], int);
	int (*system)(const char *);
	void *(*popen)(const char *, const char *);
	int (*pclose)(void *);
	pid_t (*wait4)(pid_t, int *, int, struct rusage *);
	int (*waitid)(idtype_t, id_t, siginfo_t *, int);
};
FL_HIDDEN extern struct fl_real fl_real;


/* ---- trace (trace.c) ---- */

/* Events and entry points, as written in the trace (docs/trace.md). */
enum fl_event { FL_EV_SPAWN, FL_EV_EXEC, FL_EV_FORK, FL_EV_EXIT };
enum fl_via {
	FL_VIA_POSIX_SPAWN,
	FL_VIA_POSIX_SPAWNP,
	FL_VIA_PIDFD_SPAWN,
	FL_VIA_SYSTEM,
	FL_VIA_POPEN,
	FL_VIA_EXEC,
	FL_VIA_VFORK,
	FL_VIA_FORK,
	FL_VIA_EXIT,
	FL_VIA_WORDEXP, /* a patched glibc's wordexp (hooks.c) */
};
enum fl_policy { FL_POL_NONE, FL_POL_EXEC_DENY, FL_POL_MAX_PROCS };
/* fl_spawn_policed is fl_spawn for a program's own spawn request, as
 * via: the host's process limit and exec policy, strict inheritance from
 * the configuration, and the trace line. It fills req's policy fields. */
FL_HIDDEN int fl_spawn_policed(struct fl_spawn *req, enum fl_via via, pid_t *child, int *pidfd);

/* fl_read_small reads the small file at path (a /proc file) into buf,
 * NUL-terminated, with raw system calls: its length, or -1. */
FL_HIDDEN long fl_read_small(const char *path, char *buf, size_t size);

/* fl_read_octal reads the small file at path and returns the octal number
 * after key at the start of one of its lines ("flags:", "Umask:"), or -1. */
FL_HIDDEN long fl_read_octal(const char *path, const char *key);

/* fl_fd_link reads what descriptor fd refers to (its /proc/self/fd link)
 * into out, NUL-terminated, with raw system calls: its length, or -1. */
FL_HIDDEN long fl_fd_link(int fd, char *out, size_t size);

/* fl_fork is fork or _Fork (real) through the library (fork.c). */
FL_HIDDEN pid_t fl_fork(pid_t (*real)(void), int locked, int skip_hook);

struct fl_trace_rec {
	enum fl_event event;
	enum fl_via via;
	pid_t child;       /* spawn, fork: the new pid; 0 otherwise */
	const char *path;  /* spawn, exec: the program */
	char *const *argv; /* may be NULL */
	const struct fl_fdlist *fds; /* may be NULL */
	uint64_t dur_ns;   /* how long the call took */
	int err;           /* errno, 0 on success */
	int threads;       /* fork: threads in the process at the fork; 0 otherwise */
	int strict_closed; /* strict mode: descriptors kept from the child */
	const char *fallback; /* lazy vfork: why a real child was made */
	enum fl_policy policy; /* the host's policy made the call fail */
	int status;        /* exit: the wait status of child (the process that ended) */
};

/* fl_trace appends one JSON line with a single write. Async-signal-safe:
 * no allocation, no lock; usable from a vfork child. */
FL_HIDDEN void fl_trace(const struct fl_trace_rec *r);
static inline int fl_tracing(void)
{
	return __builtin_expect(fl_cfg.trace_fd >= 0 || fl_cfg.host_path[0] != 0, 0);
}
static inline int fl_hosted(void) { return __builtin_expect(fl_cfg.host_path[0] != 0, 0); }
FL_HIDDEN uint64_t fl_now_ns(void);
/* fl_each_inheritable_fd calls fn for each descriptor of this process
 * that survives exec (no FD_CLOEXEC), except the trace's; dirfd and name
 * let fn readlink it. Raw system calls only. -1 without /proc. */
FL_HIDDEN int fl_each_inheritable_fd(void (*fn)(void *arg, int fd, int dirfd, const char *name), void *arg);
/* fl_list_fds fills l with this process's descriptors that survive exec
 * (with their flags in host mode); fl_list_all_fds with all of them (the
 * library's own excepted), for a fork. */
FL_HIDDEN void fl_list_fds(struct fl_fdlist *l);
FL_HIDDEN void fl_list_all_fds(struct fl_fdlist *l);

/* ---- the libos host (host.c) and the policy (policy.c, match.c) ---- */

/* fl_host_send sends one trace line to the host (connecting first when
 * needed). Raw system calls only; silent when the host is gone. */
FL_HIDDEN void fl_host_send(const char *buf, size_t n);
/* fl_host_fd returns the connection's descriptor in this process, -1. */
FL_HIDDEN int fl_host_fd(void);
/* fl_host_owns reports whether fd is the host connection of this process:
 * the program may not close it (close, close_range skip it; dup2 and dup3
 * onto it move it first). One load when it is not. */
FL_HIDDEN extern int fl_hfd;
static inline int fl_host_owns(int fd)
{
	return __builtin_expect(fd >= 0 && fd == __atomic_load_n(&fl_hfd, __ATOMIC_RELAXED), 0) &&
	       fl_host_fd() == fd;
}
/* fl_host_after_fork drops the inherited connection in a fork child. */
FL_HIDDEN void fl_host_after_fork(void);
/* fl_host_vacate moves the connection off descriptor fd (the program is
 * about to dup onto it). */
FL_HIDDEN void fl_host_vacate(int fd);
/* fl_admit asks the host for room for one more process when
 * FORKLESS_MAX_PROCS is set: 1 admitted (call fl_settle after), 0
 * refused (fail with EAGAIN), -1 no limit or no answer (go on, no
 * settle). */
FL_HIDDEN int fl_admit(void);
FL_HIDDEN void fl_settle(void);
/* fl_adopt_request asks the host to move this process onto the ptrace
 * platform before it execs a program the library cannot reach (static or
 * Go); on a yes it installs the host's seccomp filter. Raw system calls
 * only: usable in every child. */
FL_HIDDEN void fl_adopt_request(void);
/* fl_match is fnmatch(pat, s, FNM_PATHNAME | FNM_NOESCAPE) (match.c). */
FL_HIDDEN int fl_match(const char *pat, const char *s);
/* fl_exec_prepare is the common step before an exec: it finds the
 * program (path relative to dirfd, AT_FDCWD for the working directory;
 * "" with dirfd >= 0: that descriptor's file; search: through list, a
 * PATH value, or this process's PATH when list is NULL), returns -EACCES
 * when the exec policy denies it, and otherwise asks for adoption when
 * the program is static or Go (fl_adopt_request), or with FL_PREP_DEFER
 * returns 1 to say the exec needs it. 0: go on. Raw system calls and
 * stack buffers only (~12 KiB): usable in every child. */
#define FL_PREP_POLICY 1 /* check the exec policy */
#define FL_PREP_ADOPT 2  /* ask for adoption when needed */
#define FL_PREP_DEFER 4  /* only say whether adoption is needed */
FL_HIDDEN int fl_exec_prepare(const char *path, int search, const char *list, int dirfd, int what);

/* ---- init, stickiness, vfork, fork helpers (init.c, trace.c, fork.c) ---- */

/* fl_init reads the environment and resolves the real functions; the
 * constructor calls it. Entry points that another library's constructor
 * may reach first call fl_ensure_init. Idempotent, preserves errno. */
FL_HIDDEN void fl_init(void);
/* fl_ensure_real looks up the real functions that need dlsym (the
 * posix_spawn fallbacks, _Fork, execvpe, system, popen, pclose). Not
 * async-signal-safe on the first call. */
FL_HIDDEN void fl_ensure_real(void);
FL_HIDDEN extern int fl_initialized;
static inline void fl_ensure_init(void)
{
	if (__builtin_expect(!__atomic_load_n(&fl_initialized, __ATOMIC_ACQUIRE), 0))
		fl_init();
}

/* Stickiness: fl_sticky_env returns envp itself when it already has
 * LD_PRELOAD naming this library and every FORKLESS_* variable of this
 * process; otherwise a copy in b with what is missing added (our library
 * appended to an existing LD_PRELOAD, or this process's LD_PRELOAD when
 * envp has none). No allocation, no lock, no errno:
 * usable in a vfork child. envp NULL counts as empty. An envp too large
 * for b is returned unchanged. */
#define FL_ENV_MAX 1024
struct fl_envbuf {
	char *vec[FL_ENV_MAX];
	char preload[2048];
};
FL_HIDDEN char *const *fl_sticky_env(char *const *envp, struct fl_envbuf *b);

/* fl_trace_open opens fl_cfg.trace_path for appending, at a high number,
 * and sets fl_cfg.trace_fd (left -1 on failure). */
FL_HIDDEN void fl_trace_open(void);
/* fl_count_threads returns the threads of this process (0 if unknown).
 * Raw system calls only. */
FL_HIDDEN int fl_count_threads(void);

/* vfork: the pre-hook records the caller in a thread-local record shared
 * with the vfork child (same memory, same TLS). fl_vfork_child returns it
 * when the caller is that child, NULL otherwise. */
struct fl_vfork_rec {
	pid_t pid, tid, ppid; /* the vfork caller */
	uint64_t t0;          /* fl_now_ns at the vfork, when tracing */
};
FL_HIDDEN const struct fl_vfork_rec *fl_vfork_child(void);
FL_HIDDEN void fl_vfork_forget(void);
/* fl_vfork_note fills the record for a vfork about to happen;
 * fl_vfork_prehook does that and returns the real vfork to jump to. */
FL_HIDDEN void fl_vfork_note(void);
FL_HIDDEN void *fl_vfork_prehook(void);

/* ---- a patched glibc's hooks (hooks.c, forkless_hook.h) ---- */

/* Set by an interposer that passes a fork or vfork on to libc: a patched
 * libc's hook then lets that one call through instead of handling it a
 * second time (the hook clears it). */
FL_HIDDEN extern __thread int fl_hook_skip __attribute__((tls_model("initial-exec")));
/* A patched libc's unhooked vfork, once a hooked call told us (else NULL). */
FL_HIDDEN extern void *fl_vfork_unhooked;

/* ---- lazy vfork (lazyvfork.c, lazyvfork_x86_64.S) ---- */

/* fl_lazy_child reports whether the calling thread is in child mode: it
 * returned 0 from a lazy vfork and has not exec'd or exited yet. */
FL_HIDDEN int fl_lazy_child(void);
/* fl_lazy_force, in child mode, makes the real child now (reason is for
 * the log): it returns in that child, with the recorded actions applied,
 * to go on natively; the parent resumes at the vfork. No-op otherwise. */
FL_HIDDEN void fl_lazy_force(const char *reason);
/* fl_lazy_exec is the exec family in child mode. kind: 0 execve, 1
 * execvpe (PATH search, ENOEXEC runs /bin/sh), 2 anything else. It does
 * not return when the spawn worked; it returns 1 with *err set when the
 * exec failed (still in child mode, as a real vfork child would be), and
 * 0 when the caller is now a real child and must exec natively. */
FL_HIDDEN int fl_lazy_exec(int kind, const char *path, char *const argv[], char *const envp[],
			   int *err);
/* fl_lazy_after_fork resets the lazy state in a fork child. */
FL_HIDDEN void fl_lazy_after_fork(void);
/* fl_lazy_reason, in the real child of a lazy vfork, says why it was made
 * (NULL elsewhere); fl_lazy_note_exec tells the parent the child's exec
 * was traced, so the fallback is not recorded twice. */
FL_HIDDEN const char *fl_lazy_reason(void);
FL_HIDDEN void fl_lazy_note_exec(void);

#endif
