/* The trace: one JSON line per event (schema v1, docs/trace.md), written
 * with one write(2) to a descriptor this library owns. Everything here
 * uses raw system calls and stack buffers: it runs in vfork children, in
 * the engine's CLONE_VM child (fl_list_fds) and in async-signal context. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>

#include "forkless.h"

/* Identity of the trace file: a program may close our descriptor (e.g.
 * closefrom(3)) and reuse its number; we never write into one that is
 * not ours. */
static unsigned long trace_dev, trace_ino;

#define TRACE_FD_MIN 1000 /* programs rarely use numbers this high */

static long open_trace(void)
{
	return fl_sys4(SYS_openat, AT_FDCWD, fl_cfg.trace_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
		       0644);
}

/* move_high moves fd to TRACE_FD_MIN or above when it can. */
static long move_high(long fd)
{
	long hi = fl_sys3(SYS_fcntl, fd, F_DUPFD_CLOEXEC, TRACE_FD_MIN);
	if (hi < 0)
		return fd;
	fl_sys1(SYS_close, fd);
	return hi;
}

static int identify(long fd, unsigned long *dev, unsigned long *ino)
{
	struct stat st;
	if (fl_sys2(SYS_fstat, fd, &st) != 0)
		return -1;
	*dev = st.st_dev, *ino = st.st_ino;
	return 0;
}

void fl_trace_open(void)
{
	long fd = open_trace();
	if (fd < 0)
		return;
	fd = move_high(fd);
	if (identify(fd, &trace_dev, &trace_ino) != 0) {
		fl_sys1(SYS_close, fd);
		return;
	}
	__atomic_store_n(&fl_cfg.trace_fd, (int)fd, __ATOMIC_RELEASE);
}

/* ours: fd is still our trace file, opened for appending. */
static int ours(long fd)
{
	unsigned long dev, ino;
	if (identify(fd, &dev, &ino) != 0 || dev != __atomic_load_n(&trace_dev, __ATOMIC_RELAXED) ||
	    ino != __atomic_load_n(&trace_ino, __ATOMIC_RELAXED))
		return 0;
	long fl = fl_sys2(SYS_fcntl, fd, F_GETFL);
	return fl >= 0 && (fl & O_APPEND);
}

static void write_all(long fd, const char *buf, size_t n)
{
	long r;
	/* One write: O_APPEND keeps lines of concurrent writers whole. */
	do
		r = fl_sys3(SYS_write, fd, buf, n);
	while (r == -EINTR);
}

static void emit(const char *buf, size_t n)
{
	if (fl_hosted()) {
		fl_host_send(buf, n);
		return;
	}
	long fd = __atomic_load_n(&fl_cfg.trace_fd, __ATOMIC_ACQUIRE);
	if (fd < 0)
		return;
	if (ours(fd)) {
		write_all(fd, buf, n);
		return;
	}
	/* Ours was closed or replaced: reopen by path. */
	long nfd = open_trace();
	if (nfd < 0)
		return;
	if (fl_vfork_child()) {
		/* Shared memory with the parent, separate descriptor table:
		 * the parent must not learn about this descriptor. */
		write_all(nfd, buf, n);
		fl_sys1(SYS_close, nfd);
		return;
	}
	nfd = move_high(nfd);
	unsigned long dev, ino;
	if (identify(nfd, &dev, &ino) != 0) {
		fl_sys1(SYS_close, nfd);
		return;
	}
	__atomic_store_n(&trace_dev, dev, __ATOMIC_RELAXED);
	__atomic_store_n(&trace_ino, ino, __ATOMIC_RELAXED);
	int expect = (int)fd;
	if (!__atomic_compare_exchange_n(&fl_cfg.trace_fd, &expect, (int)nfd, 0, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE)) {
		/* Another thread reopened first: use its descriptor. */
		write_all(nfd, buf, n);
		fl_sys1(SYS_close, nfd);
		return;
	}
	write_all(nfd, buf, n);
}

/* ---- a bounded JSON writer ---- */

struct jw {
	char *b;
	size_t n, limit;
	int full; /* something did not fit */
};

static void put(struct jw *w, const char *s, size_t len)
{
	if (w->full || w->n + len > w->limit) {
		w->full = 1;
		return;
	}
	for (size_t i = 0; i < len; i++)
		w->b[w->n + i] = s[i];
	w->n += len;
}

static void puts_(struct jw *w, const char *s) { put(w, s, strlen(s)); }

static void putu(struct jw *w, unsigned long long v)
{
	char d[24];
	int i = sizeof d;
	do
		d[--i] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	put(w, d + i, sizeof d - (size_t)i);
}

static void puti(struct jw *w, long long v)
{
	if (v < 0) {
		put(w, "-", 1);
		putu(w, 0ULL - (unsigned long long)v);
	} else {
		putu(w, (unsigned long long)v);
	}
}

/* utf8_len returns the length of the valid UTF-8 sequence at s[0..n), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];
	size_t len;
	unsigned char lo = 0x80, hi = 0xBF;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2;
	else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		if (c == 0xE0)
			lo = 0xA0;
		if (c == 0xED)
			hi = 0x9F; /* no surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		if (c == 0xF0)
			lo = 0x90;
		if (c == 0xF4)
			hi = 0x8F;
	} else
		return 0;
	if (len > n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	return len;
}

/* putstr writes s (at most max bytes of it) as a JSON string. Bytes that
 * are not UTF-8 become U+FFFD, so every line is valid JSON. It returns 0
 * when the whole string fit, 1 when only a prefix fit (the string is
 * still closed), -1 when nothing was written. */
static int putstr(struct jw *w, const char *s, size_t max)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strnlen(s, max);
	if (w->full || w->n + 2 > w->limit) {
		w->full = 1;
		return -1;
	}
	w->limit--; /* room for the closing quote */
	put(w, "\"", 1);
	for (size_t i = 0; i < n && !w->full;) {
		unsigned char c = p[i];
		size_t before = w->n;
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};
			put(w, e, 2);
			i++;
		} else if (c == '\n') {
			put(w, "\\n", 2), i++;
		} else if (c == '\t') {
			put(w, "\\t", 2), i++;
		} else if (c == '\r') {
			put(w, "\\r", 2), i++;
		} else if (c < 0x20) {
			char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
			put(w, e, 6);
			i++;
		} else if (c < 0x80) {
			put(w, (const char *)p + i, 1);
			i++;
		} else {
			size_t len = utf8_len(p + i, n - i);
			if (len) {
				put(w, (const char *)p + i, len);
				i += len;
			} else {
				put(w, "\\ufffd", 6);
				i++;
			}
		}
		if (w->full)
			w->n = before; /* no half escape */
	}
	int cut = w->full;
	w->full = 0;
	w->limit++;
	put(w, "\"", 1);
	return cut;
}

/* ---- events ---- */

static const char *const event_names[] = {"spawn", "exec", "fork", "exit"};
static const char *const via_names[] = {"posix_spawn", "posix_spawnp", "pidfd_spawn", "system", "popen",
					"exec",        "vfork",        "fork",        "exit",   "wordexp"};
static const char *const policy_names[] = {"", "exec-deny", "max-procs"};

#define LINE_MAX_BYTES 8192
#define ARGV_MAX 32
#define ARG_BYTES 256
#define PATH_BYTES 2048
#define PATH_END 2048 /* the path ends by here */
#define FDS_END 5120  /* the fd list ends by here; argv has the rest */
#define TAIL 64       /* closing brackets, the truncation flags, newline */

uint64_t fl_now_ns(void)
{
	/* The vDSO: no system call, never touches errno for a valid clock. */
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void fl_trace(const struct fl_trace_rec *r)
{
	if (!fl_tracing())
		return;
	char buf[LINE_MAX_BYTES];
	struct jw w = {.b = buf, .limit = PATH_END};
	long pid = fl_sys0(SYS_getpid), ppid = fl_sys0(SYS_getppid), tid = fl_sys0(SYS_gettid);
	long child = r->child;
	if (r->via == FL_VIA_VFORK) {
		/* The vfork child reports for its parent: the caller of vfork
		 * started a process, which is this one. */
		const struct fl_vfork_rec *v = fl_vfork_child();
		if (v) {
			child = pid;
			pid = v->pid, tid = v->tid ? v->tid : v->pid, ppid = v->ppid;
		}
	}
	if (r->event == FL_EV_EXIT) {
		/* The reaper reports for the process that ended. */
		ppid = pid;
		pid = r->child;
		child = 0;
	}
	puts_(&w, "{\"v\":1,\"ts_ns\":");
	putu(&w, realtime_ns());
	puts_(&w, ",\"pid\":");
	puti(&w, pid);
	puts_(&w, ",\"ppid\":");
	puti(&w, ppid);
	puts_(&w, ",\"tid\":");
	puti(&w, tid);
	puts_(&w, ",\"event\":\"");
	puts_(&w, (unsigned)r->event < sizeof event_names / sizeof event_names[0] ? event_names[r->event] : "spawn");
	puts_(&w, "\",\"via\":\"");
	puts_(&w, (unsigned)r->via < sizeof via_names / sizeof via_names[0] ? via_names[r->via] : "exec");
	puts_(&w, "\",\"errno\":");
	puti(&w, r->err);
	if (child > 0) {
		puts_(&w, ",\"child\":");
		puti(&w, child);
	}
	if (r->event == FL_EV_EXIT) {
		puts_(&w, ",\"status\":");
		puti(&w, r->status);
	}
	if ((unsigned)r->policy < sizeof policy_names / sizeof policy_names[0] && r->policy != FL_POL_NONE) {
		puts_(&w, ",\"policy\":\"");
		puts_(&w, policy_names[r->policy]);
		puts_(&w, "\"");
	}
	if ((r->event == FL_EV_SPAWN || r->event == FL_EV_FORK) || r->dur_ns) {
		puts_(&w, ",\"dur_us\":");
		putu(&w, r->dur_ns / 1000);
	}
	if (r->event == FL_EV_FORK && r->threads > 0) {
		puts_(&w, ",\"threads\":");
		puti(&w, r->threads);
	}
	if (r->strict_closed > 0) {
		puts_(&w, ",\"strict_closed\":");
		puti(&w, r->strict_closed);
	}
	if (r->fallback) {
		puts_(&w, ",\"fallback\":");
		putstr(&w, r->fallback, 64);
	}
	if (r->path) {
		/* A path too long for its share is cut (rare: it takes 2 KiB
		 * of escapes); the schema has no flag for it. */
		size_t mark = w.n;
		puts_(&w, ",\"path\":");
		if (w.full || putstr(&w, r->path, PATH_BYTES) < 0)
			w.n = mark;
		w.full = 0;
	}

	if (r->fds) {
		w.limit = FDS_END;
		int cut = r->fds->truncated;
		puts_(&w, ",\"fds\":[");
		int n = r->fds->n < FL_FDLIST_MAX ? r->fds->n : FL_FDLIST_MAX;
		for (int i = 0; i < n; i++) {
			size_t mark = w.n;
			if (i)
				put(&w, ",", 1);
			puts_(&w, "{\"fd\":");
			puti(&w, r->fds->fds[i].fd);
			puts_(&w, ",\"target\":");
			if (putstr(&w, r->fds->fds[i].target, sizeof r->fds->fds[i].target) != 0)
				w.full = 1;
			if (r->fds->fds[i].flags > 0) {
				puts_(&w, ",\"flags\":");
				puti(&w, r->fds->fds[i].flags);
			}
			put(&w, "}", 1);
			if (w.full) {
				w.n = mark, w.full = 0, cut = 1;
				break;
			}
		}
		w.limit = sizeof buf - TAIL;
		put(&w, "]", 1);
		if (cut)
			puts_(&w, ",\"fds_truncated\":true");
	}

	if (r->argv) {
		w.limit = sizeof buf - TAIL;
		int cut = 0;
		puts_(&w, ",\"argv\":[");
		for (int i = 0; r->argv[i]; i++) {
			if (i == ARGV_MAX) {
				cut = 1;
				break;
			}
			size_t mark = w.n;
			if (i)
				put(&w, ",", 1);
			size_t len = strnlen(r->argv[i], ARG_BYTES + 1);
			if (len > ARG_BYTES)
				cut = 1;
			if (putstr(&w, r->argv[i], ARG_BYTES) != 0 || w.full) {
				w.n = mark, w.full = 0, cut = 1;
				break;
			}
		}
		w.limit = sizeof buf;
		put(&w, "]", 1);
		if (cut)
			puts_(&w, ",\"argv_truncated\":true");
	}
	w.limit = sizeof buf;
	put(&w, "}\n", 2);
	emit(buf, w.n);
}

/* ---- descriptors ---- */

struct dirent64_k {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

static int each_fd(int all, void (*fn)(void *arg, int fd, int dirfd, const char *name), void *arg)
{
	long dfd = fl_sys4(SYS_openat, AT_FDCWD, "/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (dfd < 0)
		return -1;
	int tfd = fl_cfg.trace_fd, hostfd = fl_host_fd();
	char buf[2048] __attribute__((aligned(8)));
	for (;;) {
		long got = fl_sys3(SYS_getdents64, dfd, buf, sizeof buf);
		if (got <= 0)
			break;
		for (long off = 0; off < got;) {
			struct dirent64_k *d = (struct dirent64_k *)(buf + off);
			off += d->d_reclen;
			const char *s = d->d_name;
			if (*s < '0' || *s > '9')
				continue;
			long fd = 0;
			for (; *s >= '0' && *s <= '9'; s++)
				fd = fd * 10 + (*s - '0');
			if (fd == dfd || fd == tfd || fd == hostfd)
				continue;
			long fl = fl_sys2(SYS_fcntl, fd, F_GETFD);
			if (fl < 0 || (!all && (fl & FD_CLOEXEC)))
				continue;
			fn(arg, (int)fd, (int)dfd, d->d_name);
		}
	}
	fl_sys1(SYS_close, dfd);
	return 0;
}

int fl_each_inheritable_fd(void (*fn)(void *arg, int fd, int dirfd, const char *name), void *arg)
{
	return each_fd(0, fn, arg);
}

long fl_read_small(const char *path, char *buf, size_t size)
{
	long fd = fl_sys4(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	long n = fl_sys3(SYS_read, fd, buf, size - 1);
	fl_sys1(SYS_close, fd);
	if (n < 0)
		return -1;
	buf[n] = 0;
	return n;
}

/* fl_fd_link: see forkless.h. */
long fl_fd_link(int fd, char *out, size_t size)
{
	char link[32] = "/proc/self/fd/";
	char d[12];
	int i = sizeof d, k = 14;
	unsigned v = (unsigned)fd;
	do
		d[--i] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	while (i < (int)sizeof d)
		link[k++] = d[i++];
	link[k] = 0;
	long r = fl_sys4(SYS_readlinkat, AT_FDCWD, link, out, size - 1);
	if (r <= 0)
		return -1;
	out[r] = 0;
	return r;
}

/* fl_read_octal: see forkless.h. */
long fl_read_octal(const char *path, const char *key)
{
	char buf[512];
	if (fl_read_small(path, buf, sizeof buf) <= 0)
		return -1;
	size_t k = strlen(key);
	for (char *p = buf; *p; p++) {
		if ((p == buf || p[-1] == '\n') && !__builtin_strncmp(p, key, k)) {
			p += k;
			while (*p == ' ' || *p == '\t')
				p++;
			long v = 0;
			while (*p >= '0' && *p <= '7')
				v = v * 8 + (*p++ - '0');
			return v;
		}
	}
	return -1;
}

/* fd_flags reads the open flags of fd from /proc/self/fdinfo (octal). */
static int fd_flags(const char *name)
{
	char path[40] = "/proc/self/fdinfo/";
	int n = 18;
	for (int i = 0; name[i] && n < (int)sizeof path - 1; i++)
		path[n++] = name[i];
	path[n] = 0;
	return (int)fl_read_octal(path, "flags:");
}

static void list_one(void *arg, int fd, int dirfd, const char *name)
{
	struct fl_fdlist *l = arg;
	if (l->n == FL_FDLIST_MAX) {
		l->truncated = 1;
		return;
	}
	struct fl_fd *e = &l->fds[l->n++];
	e->fd = fd;
	long n = fl_sys4(SYS_readlinkat, dirfd, name, e->target, sizeof e->target - 1);
	e->target[n > 0 ? n : 0] = 0;
	e->flags = fl_hosted() ? fd_flags(name) : -1;
}

void fl_list_fds(struct fl_fdlist *l)
{
	l->n = 0;
	l->truncated = 0;
	each_fd(0, list_one, l);
}

void fl_list_all_fds(struct fl_fdlist *l)
{
	l->n = 0;
	l->truncated = 0;
	each_fd(1, list_one, l);
}

int fl_count_threads(void)
{
	char buf[1024];
	long n = fl_read_small("/proc/self/stat", buf, sizeof buf);
	if (n <= 0)
		return 0;
	/* The name (field 2) may hold spaces and parentheses: count fields
	 * from its last ')'. num_threads is field 20. */
	char *p = 0;
	for (long i = 0; i < n; i++)
		if (buf[i] == ')')
			p = buf + i;
	if (!p)
		return 0;
	int field = 2;
	for (p++; *p && field < 20; p++)
		if (*p == ' ')
			field++;
	int v = 0;
	while (*p >= '0' && *p <= '9')
		v = v * 10 + (*p++ - '0');
	return v;
}
