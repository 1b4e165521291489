/* Process-wide state: the configuration read from the environment at load,
 * the real libc functions, the library lock, and stickiness (children keep
 * the preload even when the program rewrites its environment). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/syscall.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "forkless.h"

struct fl_config fl_cfg = {.trace_fd = -1};
struct fl_real fl_real;
int fl_initialized;

/* Recursive: fork may be called from a signal handler that interrupted
 * this thread inside popen; it must not deadlock on itself. */
static pthread_mutex_t lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;

void fl_lock(void) { pthread_mutex_lock(&lock); }
void fl_unlock(void) { pthread_mutex_unlock(&lock); }

void fl_after_fork_child(void)
{
	/* The lock belongs to the parent's thread, which does not exist here.
	 * Plain stores only: _Fork's child calls this too. */
	static const pthread_mutex_t fresh = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
	memcpy(&lock, &fresh, sizeof lock);
	fl_vfork_forget();
	fl_host_after_fork();
}

/* ---- the FORKLESS_* variables, kept for stickiness ---- */

#define MAX_VARS 16
static char var_store[24576];
static char *vars[MAX_VARS]; /* "FORKLESS_X=value", in var_store */
static int nvars;
static size_t var_used;
static char loaded_name[1024]; /* this library's name as the loader saw it */
static char own_preload[2048]; /* our LD_PRELOAD, when it names us; else "" */

static void keep_var(const char *name, const char *value)
{
	size_t nl = strlen(name), vl = strlen(value);
	if (nvars == MAX_VARS || var_used + nl + vl + 2 > sizeof var_store)
		return;
	char *s = var_store + var_used;
	memcpy(s, name, nl);
	s[nl] = '=';
	memcpy(s + nl + 1, value, vl + 1);
	var_used += nl + vl + 2;
	vars[nvars++] = s;
}

/* Exec patterns: ':'-separated, each at most 255 bytes, in a table. */
static char pat_store[16384];
static size_t pat_used;

static int parse_patterns(const char *v, const char **tab, int max)
{
	int n = 0;
	while (*v && n < max) {
		const char *end = strchr(v, ':');
		size_t len = end ? (size_t)(end - v) : strlen(v);
		if (len && len <= 255 && pat_used + len + 1 <= sizeof pat_store) {
			char *d = pat_store + pat_used;
			memcpy(d, v, len);
			d[len] = 0;
			pat_used += len + 1;
			tab[n++] = d;
		}
		if (!end)
			break;
		v = end + 1;
	}
	return n;
}

/* traced_by reports whether this process is traced by process pid
 * (TracerPid in /proc/self/status): then it is on the ptrace platform. */
static int traced_by(int pid)
{
	char buf[2048];
	if (fl_read_small("/proc/self/status", buf, sizeof buf) <= 0)
		return 0;
	const char *p = strstr(buf, "\nTracerPid:");
	if (!p)
		return 0;
	/* TracerPid is the tracing thread's id: the host's, or one of its
	 * threads (the ptrace platform traces from a locked thread). */
	int tracer = atoi(p + 11);
	if (tracer <= 0)
		return 0;
	if (tracer == pid)
		return 1;
	char task[64];
	snprintf(task, sizeof task, "/proc/%d/task/%d", pid, tracer);
	struct stat st;
	return fl_sys2(SYS_stat, task, &st) == 0;
}

static int cmp_int(const void *x, const void *y)
{
	int a = *(const int *)x, b = *(const int *)y;
	return (a > b) - (a < b);
}

/* FORKLESS_KEEP_FDS=3,7: sorted, without duplicates or bad entries. */
static void parse_keep(const char *s)
{
	int n = 0;
	while (*s) {
		char *end;
		errno = 0;
		long v = strtol(s, &end, 10);
		if (end != s && errno == 0 && v >= 0 && v <= INT_MAX && (*end == ',' || *end == 0) &&
		    n < (int)(sizeof fl_cfg.keep / sizeof fl_cfg.keep[0]))
			fl_cfg.keep[n++] = (int)v;
		while (*end && *end != ',')
			end++;
		s = *end ? end + 1 : end;
	}
	qsort(fl_cfg.keep, (size_t)n, sizeof fl_cfg.keep[0], cmp_int);
	int k = 0;
	for (int i = 0; i < n; i++)
		if (k == 0 || fl_cfg.keep[k - 1] != fl_cfg.keep[i])
			fl_cfg.keep[k++] = fl_cfg.keep[i];
	fl_cfg.nkeep = k;
}

/* The trace path is made absolute: the program may chdir before the
 * descriptor has to be reopened, and children get it in their env. */
static void set_trace_path(const char *p)
{
	size_t len = strlen(p);
	char *dst = fl_cfg.trace_path;
	size_t cap = sizeof fl_cfg.trace_path;
	if (len == 0)
		return;
	if (p[0] != '/') {
		if (!getcwd(dst, cap))
			return;
		size_t cl = strlen(dst);
		if (cl + 1 + len + 1 > cap) {
			dst[0] = 0;
			return;
		}
		dst[cl] = '/';
		memcpy(dst + cl + 1, p, len + 1);
	} else {
		if (len + 1 > cap)
			return;
		memcpy(dst, p, len + 1);
	}
}

static void find_self(void)
{
	Dl_info info;
	char buf[PATH_MAX];
	if (!dladdr((void *)&fl_init, &info) || !info.dli_fname)
		return;
	size_t n = strlen(info.dli_fname);
	if (n < sizeof loaded_name)
		memcpy(loaded_name, info.dli_fname, n + 1);
	if (realpath(info.dli_fname, buf) && strlen(buf) < sizeof fl_cfg.lib_path)
		strcpy(fl_cfg.lib_path, buf);
}

/* The real functions. Those every program may call without warning, in a
 * signal handler or a vfork child (fork, vfork, execve, fexecve,
 * execveat), need no lookup: libc's public aliases or the system calls
 * themselves. The rest are looked up on first use, not at load: the
 * constructor of a library preloaded into every process must cost
 * nothing (docs/performance.md). */
extern pid_t __fork(void);
extern pid_t __vfork(void);

static int raw_execve(const char *path, char *const argv[], char *const envp[])
{
	long r = fl_sys3(SYS_execve, path, argv, envp);
	errno = (int)-r;
	return -1;
}

static int raw_execveat(int fd, const char *path, char *const argv[], char *const envp[], int flags)
{
	long r = fl_sys5(SYS_execveat, fd, path, argv, envp, flags);
	errno = (int)-r;
	return -1;
}

/* fexecve as glibc does it: execveat(fd, "", AT_EMPTY_PATH), then
 * /proc/self/fd/N on kernels without execveat. */
static int raw_fexecve(int fd, char *const argv[], char *const envp[])
{
	if (fd < 0 || !argv || !envp) {
		errno = EINVAL;
		return -1;
	}
	long r = fl_sys5(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
	if (r == -ENOSYS) {
		char path[32] = "/proc/self/fd/";
		char digits[12];
		int n = 0, i = 14;
		unsigned v = (unsigned)fd;
		do
			digits[n++] = (char)('0' + v % 10), v /= 10;
		while (v);
		while (n)
			path[i++] = digits[--n];
		path[i] = 0;
		r = fl_sys3(SYS_execve, path, argv, envp);
	}
	errno = (int)-r;
	return -1;
}

static void resolve_direct(void)
{
	fl_real.fork = __fork;
	fl_real.vfork = __vfork;
	fl_real.execve = raw_execve;
	fl_real.execveat = raw_execveat;
	fl_real.fexecve = raw_fexecve;
}

#define RESOLVE(name) fl_real.name = (__typeof__(fl_real.name))dlsym(RTLD_NEXT, #name)
#define RESOLVE_V(field, name, ver) fl_real.field = (__typeof__(fl_real.field))dlvsym(RTLD_NEXT, name, ver)

static void resolve_lookup(void)
{
	int saved = errno;
	RESOLVE_V(posix_spawn, "posix_spawn", "GLIBC_2.15");
	RESOLVE_V(posix_spawnp, "posix_spawnp", "GLIBC_2.15");
	RESOLVE_V(posix_spawn_compat, "posix_spawn", "GLIBC_2.2.5");
	RESOLVE_V(posix_spawnp_compat, "posix_spawnp", "GLIBC_2.2.5");
	RESOLVE(pidfd_spawn); /* glibc 2.39+: NULL before */
	RESOLVE(pidfd_spawnp);
	RESOLVE(_Fork);
	RESOLVE(execvpe);
	RESOLVE(system);
	RESOLVE(popen);
	RESOLVE(pclose);
	RESOLVE(wait4);
	RESOLVE(waitid);
	if (!fl_cfg.lib_path[0])
		find_self();
	errno = saved;
}

static pthread_once_t real_once = PTHREAD_ONCE_INIT;

void fl_ensure_real(void) { pthread_once(&real_once, resolve_lookup); }

/* self_from_preload finds this library in LD_PRELOAD without a system
 * call: an absolute entry named libforkless*. Otherwise the first lookup
 * asks the loader (dladdr). */
static void self_from_preload(void)
{
	const char *v = getenv("LD_PRELOAD");
	while (v && *v) {
		while (*v == ':' || *v == ' ')
			v++;
		const char *end = v, *base = v;
		while (*end && *end != ':' && *end != ' ') {
			if (*end == '/')
				base = end + 1;
			end++;
		}
		size_t n = (size_t)(end - v);
		if (n && v[0] == '/' && strncmp(base, "libforkless", 11) == 0 && n < sizeof fl_cfg.lib_path &&
		    n < sizeof loaded_name) {
			memcpy(fl_cfg.lib_path, v, n);
			fl_cfg.lib_path[n] = 0;
			memcpy(loaded_name, v, n);
			loaded_name[n] = 0;
			return;
		}
		v = end;
	}
}

static int names_lib(const char *v);

/* A child whose envp lacks LD_PRELOAD gets ours whole: the sanitizer
 * runtime of a test build, for one, must stay first. */
static void keep_own_preload(void)
{
	const char *v = getenv("LD_PRELOAD");
	if (v && names_lib(v) && strlen(v) < sizeof own_preload)
		strcpy(own_preload, v);
}

static void init_once(void)
{
	int saved = errno;
	const char *disable = 0, *trace = 0, *fds = 0, *keep = 0, *vfork = 0;
	const char *host = 0, *host_pid = 0, *allow = 0, *deny = 0, *max_procs = 0;
	for (char **e = environ; e && *e; e++) {
		const char *s = *e;
		if (strncmp(s, "FORKLESS_", 9) != 0)
			continue;
		const char *eq = strchr(s, '=');
		if (!eq)
			continue;
		size_t nl = (size_t)(eq - s);
		char name[64];
		if (nl >= sizeof name)
			continue;
		memcpy(name, s, nl);
		name[nl] = 0;
		const char *v = eq + 1;
		if (!strcmp(name, "FORKLESS_DISABLE"))
			disable = v;
		else if (!strcmp(name, "FORKLESS_TRACE"))
			trace = v; /* kept below, made absolute */
		else if (!strcmp(name, "FORKLESS_FDS"))
			fds = v;
		else if (!strcmp(name, "FORKLESS_KEEP_FDS"))
			keep = v;
		else if (!strcmp(name, "FORKLESS_VFORK"))
			vfork = v;
		else if (!strcmp(name, "FORKLESS_HOST"))
			host = v;
		else if (!strcmp(name, "FORKLESS_HOST_PID"))
			host_pid = v;
		else if (!strcmp(name, "FORKLESS_EXEC_ALLOW"))
			allow = v;
		else if (!strcmp(name, "FORKLESS_EXEC_DENY"))
			deny = v;
		else if (!strcmp(name, "FORKLESS_MAX_PROCS"))
			max_procs = v;
		/* Only the library's own settings follow the children. */
		if (!strcmp(name, "FORKLESS_DISABLE") || !strcmp(name, "FORKLESS_FDS") ||
		    !strcmp(name, "FORKLESS_KEEP_FDS") || !strcmp(name, "FORKLESS_VFORK") ||
		    !strcmp(name, "FORKLESS_HOST") || !strcmp(name, "FORKLESS_HOST_PID") ||
		    !strcmp(name, "FORKLESS_EXEC_ALLOW") || !strcmp(name, "FORKLESS_EXEC_DENY") ||
		    !strcmp(name, "FORKLESS_MAX_PROCS"))
			keep_var(name, v);
	}
	resolve_direct();
	fl_cfg.disabled = disable && !strcmp(disable, "1");
	if (host_pid)
		fl_cfg.host_pid = atoi(host_pid);
	/* On the ptrace platform (traced by the host) the tracer reports and
	 * enforces: the library stands aside entirely. */
	if (!fl_cfg.disabled && fl_cfg.host_pid > 0 && traced_by(fl_cfg.host_pid))
		fl_cfg.disabled = 1;
	if (!fl_cfg.disabled) {
		if (allow)
			fl_cfg.nallow = parse_patterns(allow, fl_cfg.allow, 64);
		if (deny)
			fl_cfg.ndeny = parse_patterns(deny, fl_cfg.deny, 64);
		if (max_procs)
			fl_cfg.max_procs = atoi(max_procs);
		if (host && host[0] && strlen(host) < sizeof fl_cfg.host_path) {
			strcpy(fl_cfg.host_path, host);
			trace = 0; /* reports go to the host */
		}
		fl_cfg.strict = fds && !strcmp(fds, "strict");
		fl_cfg.real_vfork = vfork && !strcmp(vfork, "real");
		if (keep)
			parse_keep(keep);
		self_from_preload();
		keep_own_preload();
		if (trace) {
			set_trace_path(trace);
			if (fl_cfg.trace_path[0]) {
				keep_var("FORKLESS_TRACE", fl_cfg.trace_path);
				fl_trace_open();
			}
		}
	}
	__atomic_store_n(&fl_initialized, 1, __ATOMIC_RELEASE);
	/* Under a host the wait family reports: its real functions must not
	 * need the loader later, in a signal handler. */
	if (fl_cfg.host_path[0])
		fl_ensure_real();
	errno = saved;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;

void fl_init(void) { pthread_once(&once, init_once); }

/* Early, so that other libraries' constructors mostly find us ready. */
__attribute__((constructor(101))) static void fl_ctor(void) { fl_init(); }

/* ---- stickiness: no allocation, no lock, no errno (vfork child) ---- */

static size_t fl_strlen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

/* same_name: whether "A=x" and "B=y" have the same name. */
static int same_name(const char *a, const char *b)
{
	while (*a && *a == *b && *a != '=')
		a++, b++;
	return *a == '=' && *b == '=';
}

static int has_prefix(const char *s, const char *p)
{
	while (*p)
		if (*s++ != *p++)
			return 0;
	return 1;
}

/* names_lib: whether the LD_PRELOAD list v (':' or ' ' separated) holds
 * this library. */
static int names_lib(const char *v)
{
	while (*v) {
		while (*v == ':' || *v == ' ')
			v++;
		const char *end = v;
		while (*end && *end != ':' && *end != ' ')
			end++;
		size_t n = (size_t)(end - v);
		if (n) {
			const char *names[2] = {fl_cfg.lib_path, loaded_name};
			for (int i = 0; i < 2; i++)
				if (names[i][0] && fl_strlen(names[i]) == n && !__builtin_memcmp(names[i], v, n))
					return 1;
		}
		v = end;
	}
	return 0;
}

static char *append(char *p, char *end, const char *s)
{
	while (p && *s) {
		if (p == end)
			return 0;
		*p++ = *s++;
	}
	return p;
}

char *const *fl_sticky_env(char *const *envp, struct fl_envbuf *b)
{
	static char *const empty[1];
	if (fl_cfg.disabled || !fl_cfg.lib_path[0])
		return envp;
	char *const *e = envp ? envp : empty;
	int n = 0, preload = -1;
	unsigned have = 0;
	for (; e[n]; n++) {
		if (has_prefix(e[n], "LD_PRELOAD="))
			preload = n; /* ld.so obeys the last one */
		else if (has_prefix(e[n], "FORKLESS_"))
			for (int i = 0; i < nvars; i++)
				if (same_name(e[n], vars[i]))
					have |= 1u << i;
	}
	int fix_preload = preload < 0 || !names_lib(e[preload] + 11);
	if (!fix_preload && have == (1u << nvars) - 1)
		return envp;
	if (n + 2 + nvars > FL_ENV_MAX)
		return envp;

	int k = 0;
	for (int i = 0; i < n; i++)
		if (i != preload || !fix_preload)
			b->vec[k++] = e[i];
	if (fix_preload) {
		/* Ours last: a preload the program chose keeps precedence. */
		char *p = b->preload, *end = b->preload + sizeof b->preload - 1;
		p = append(p, end, "LD_PRELOAD=");
		if (preload >= 0 && e[preload][11]) {
			p = append(p, end, e[preload] + 11);
			p = append(p, end, ":");
			p = append(p, end, fl_cfg.lib_path);
		} else {
			p = append(p, end, own_preload[0] ? own_preload : fl_cfg.lib_path);
		}
		if (!p)
			return envp;
		*p = 0;
		b->vec[k++] = b->preload;
	}
	for (int i = 0; i < nvars; i++)
		if (!(have & (1u << i)))
			b->vec[k++] = vars[i];
	b->vec[k] = 0;
	return b->vec;
}
