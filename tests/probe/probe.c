/*
 * forkless-probe: the observer of the differential spawn tests.
 *
 * It records what a freshly spawned child can observe about itself and
 * writes it as one JSON object (schema: tests/difftest/observation.go).
 * It must not disturb what it observes, so the descriptor table is read
 * first, before anything is opened, and only read-only queries are made.
 *
 * Output goes to stdout, or to the absolute path in FORKLESS_PROBE_OUT
 * (opened after the descriptor scan). "probe --exit N" exits with status N
 * after writing. Exit status 3: writing failed; 4: the output buffer or the
 * descriptor list overflowed.
 *
 * Build: gcc -O2 -Wall -Wextra -Werror -static \
 *            -o bin/forkless-probe tests/probe/probe.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* The kernel's O_LARGEFILE (glibc defines O_LARGEFILE as 0 on 64-bit). */
#define KERNEL_O_LARGEFILE 0100000

#define MAX_FDS 16384		/* descriptors recorded at most */
#define FALLBACK_SCAN 65536	/* fds probed when /proc is missing */
#define NSIG_KERNEL 64		/* signals 1..64 */

/* ---------- JSON output buffer ---------- */

static char out[16 << 20];	/* bss: costs only the pages used */
static size_t outlen;
static int overflow;

static void put(const char *s, size_t n)
{
	if (overflow || n > sizeof out - outlen) {
		overflow = 1;
		return;
	}
	memcpy(out + outlen, s, n);
	outlen += n;
}

static void puts_raw(const char *s)
{
	put(s, strlen(s));
}

/*
 * Separators: each nesting level remembers whether it has had a member
 * yet; after a key the next value needs no comma.
 */
static int first[16] = {1};
static int depth;
static int after_key;

static void sep(void)
{
	if (after_key) {
		after_key = 0;
		return;
	}
	if (!first[depth])
		put(",", 1);
	first[depth] = 0;
}

static void begin(char c)
{
	sep();
	put(&c, 1);
	if (depth + 1 < (int)(sizeof first / sizeof first[0]))
		depth++;
	first[depth] = 1;
}

static void end(char c)
{
	put(&c, 1);
	if (depth > 0)
		depth--;
}

static void put_u64_raw(unsigned long long v)
{
	char buf[24];
	int i = sizeof buf;

	do {
		buf[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	put(buf + i, sizeof buf - i);
}

static void val_u64(unsigned long long v)
{
	sep();
	put_u64_raw(v);
}

static void val_i64(long long v)
{
	sep();
	if (v < 0) {
		put("-", 1);
		put_u64_raw(-(unsigned long long)v);
	} else {
		put_u64_raw((unsigned long long)v);
	}
}

static void val_bool(int b)
{
	sep();
	puts_raw(b ? "true" : "false");
}

static void val_null(void)
{
	sep();
	puts_raw("null");
}

/* A JSON string: quotes, backslashes and control bytes are escaped;
 * bytes >= 0x80 pass through unchanged. */
static void val_str(const char *s)
{
	static const char hex[] = "0123456789abcdef";

	sep();
	put("\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char esc[6] = {'\\', 'u', '0', '0', 0, 0};

		if (*p == '"' || *p == '\\') {
			esc[1] = (char)*p;
			put(esc, 2);
		} else if (*p < 0x20 || *p == 0x7f) {
			esc[4] = hex[*p >> 4];
			esc[5] = hex[*p & 15];
			put(esc, 6);
		} else {
			put((const char *)p, 1);
		}
	}
	put("\"", 1);
}

static void key(const char *k)
{
	val_str(k);
	put(":", 1);
	after_key = 1;
}

/* ---------- descriptor table ---------- */

static int fds[MAX_FDS];
static int nfds;

/* The fd of /proc/self/fd during the scan, or -1 if /proc was missing. */
static int scan_fd = -1;

struct linux_dirent64 {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

static int add_fd(int fd)
{
	if (nfds == MAX_FDS)
		return -1;
	fds[nfds++] = fd;
	return 0;
}

/* Parses a decimal fd name; returns -1 for "." and "..". */
static int parse_fd(const char *s)
{
	long v = 0;

	if (!*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9' || v > INT_MAX / 10)
			return -1;
		v = v * 10 + (*s - '0');
	}
	return v <= INT_MAX ? (int)v : -1;
}

/* Lists the open fds from /proc/self/fd, leaving out the directory's own. */
static int list_fds_proc(void)
{
	static char buf[32768] __attribute__((aligned(8)));
	long n;

	scan_fd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (scan_fd < 0)
		return -1;
	while ((n = syscall(SYS_getdents64, scan_fd, buf, sizeof buf)) > 0) {
		for (long off = 0; off < n;) {
			struct linux_dirent64 *d = (void *)(buf + off);
			int fd = parse_fd(d->d_name);

			off += d->d_reclen;
			if (fd >= 0 && fd != scan_fd && add_fd(fd) < 0) {
				close(scan_fd);
				scan_fd = -1;
				return -2;
			}
		}
	}
	if (n < 0) {
		close(scan_fd);
		scan_fd = -1;
		nfds = 0;
		return -1;
	}
	return 0;
}

/* Without /proc: asks fcntl about each fd below the soft limit. */
static int list_fds_fallback(void)
{
	struct rlimit rl;
	long limit = FALLBACK_SCAN;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)limit)
		limit = (long)rl.rlim_cur;
	for (long fd = 0; fd < limit; fd++)
		if (fcntl((int)fd, F_GETFD) >= 0 && add_fd((int)fd) < 0)
			return -2;
	return 0;
}

static void sort_fds(void)
{
	for (int i = 1; i < nfds; i++) {
		int v = fds[i], j = i;

		for (; j > 0 && fds[j - 1] > v; j--)
			fds[j] = fds[j - 1];
		fds[j] = v;
	}
}

/* Formats "/proc/self/fd/N" into buf (at least 32 bytes), without stdio. */
static void fd_path(char *buf, int fd)
{
	char num[16];
	int i = sizeof num;
	unsigned v = (unsigned)fd;

	num[--i] = 0;
	do {
		num[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	strcpy(buf, "/proc/self/fd/");
	strcat(buf, num + i);
}

/* Emits one fd's object; every query here is read-only. */
static void emit_fd(int fd)
{
	char path[64], target[PATH_MAX + 1];
	int fdflags = fcntl(fd, F_GETFD);
	int flflags = fcntl(fd, F_GETFL);
	off_t pos = lseek(fd, 0, SEEK_CUR);
	ssize_t tn;

	begin('{');
	key("fd");
	val_i64(fd);
	key("cloexec");
	val_bool(fdflags >= 0 && (fdflags & FD_CLOEXEC));
	key("flags");
	val_i64(flflags < 0 ? -1 : (flflags & ~KERNEL_O_LARGEFILE));
	key("pos");
	val_i64(pos < 0 ? -1 : (long long)pos);

	key("target");
	fd_path(path, fd);
	tn = readlink(path, target, sizeof target - 1);
	if (tn >= 0) {
		target[tn] = 0;
		val_str(target);
	} else {
		val_null();
	}

	/* null: not a terminal; -1: a terminal that is not our controlling one. */
	key("tty_pgrp");
	if (isatty(fd))
		val_i64(tcgetpgrp(fd));
	else
		val_null();
	end('}');
}

/* Scans the table and emits "scan_fd" and "fds". Call before opening anything. */
static int emit_fds(void)
{
	int rc = list_fds_proc();

	if (rc == -1)
		rc = list_fds_fallback();
	if (rc < 0)
		return rc;
	sort_fds();
	key("scan_fd");
	val_i64(scan_fd);
	key("fds");
	begin('[');
	for (int i = 0; i < nfds; i++)
		emit_fd(fds[i]);
	end(']');
	if (scan_fd >= 0)
		close(scan_fd);
	return 0;
}

/* ---------- signals ---------- */

/* The kernel's struct sigaction, with room to spare; only the handler,
 * which comes first on every architecture, is read. */
struct ksigaction {
	unsigned long handler;
	unsigned long rest[8];
};

/* The kernel's SIG_DFL and SIG_IGN handler values. */
#define KSIG_DFL 0UL
#define KSIG_IGN 1UL

/* Emits the signals 1..64 set in a kernel (64-bit) sigset. */
static void emit_sigset(uint64_t set)
{
	begin('[');
	for (int sig = 1; sig <= NSIG_KERNEL; sig++)
		if (set & (1ULL << (sig - 1)))
			val_i64(sig);
	end(']');
}

static void emit_signals(void)
{
	uint64_t mask = 0, ignored = 0, caught = 0;

	/* Raw syscalls with the kernel's 8-byte sigset: glibc's wrappers hide
	 * or refuse its internal signals 32 and 33. */
	if (syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &mask, 8) < 0)
		mask = 0;
	for (int sig = 1; sig <= NSIG_KERNEL; sig++) {
		struct ksigaction sa;

		memset(&sa, 0, sizeof sa);
		if (syscall(SYS_rt_sigaction, sig, NULL, &sa, 8) < 0)
			continue;
		if (sa.handler == KSIG_IGN)
			ignored |= 1ULL << (sig - 1);
		else if (sa.handler != KSIG_DFL)
			caught |= 1ULL << (sig - 1);
	}
	key("sigmask");
	emit_sigset(mask);
	key("ignored");
	emit_sigset(ignored);
	key("caught");
	emit_sigset(caught);
}

/* ---------- identity, scheduling, limits ---------- */

static void emit_ids(void)
{
	uid_t ruid = 0, euid = 0, suid = 0;
	gid_t rgid = 0, egid = 0, sgid = 0;

	getresuid(&ruid, &euid, &suid);
	getresgid(&rgid, &egid, &sgid);
	key("pid");
	val_i64(getpid());
	key("ppid");
	val_i64(getppid());
	key("pgid");
	val_i64(getpgid(0));
	key("sid");
	val_i64(getsid(0));
	key("uid");
	val_u64(ruid);
	key("euid");
	val_u64(euid);
	key("suid");
	val_u64(suid);
	key("gid");
	val_u64(rgid);
	key("egid");
	val_u64(egid);
	key("sgid");
	val_u64(sgid);
}

static void emit_sched(void)
{
	struct sched_param sp = {0};

	key("sched");
	begin('{');
	key("policy");
	val_i64(sched_getscheduler(0));
	key("priority");
	val_i64(sched_getparam(0, &sp) == 0 ? sp.sched_priority : -1);
	end('}');
}

static void emit_nofile(void)
{
	struct rlimit rl = {0, 0};

	getrlimit(RLIMIT_NOFILE, &rl);
	key("nofile");
	begin('[');
	val_u64(rl.rlim_cur);
	val_u64(rl.rlim_max);
	end(']');
}

/* ---------- cwd, umask, cgroup ---------- */

static void emit_cwd_umask(void)
{
	char cwd[PATH_MAX + 1];
	mode_t mask = umask(0);

	umask(mask);
	key("cwd");
	if (getcwd(cwd, sizeof cwd))
		val_str(cwd);
	else
		val_null();
	key("umask");
	val_u64(mask);
}

/* Emits /proc/self/cgroup as a list of lines without their newlines. */
static void emit_cgroup(void)
{
	static char buf[65536];
	size_t len = 0;
	ssize_t n;
	int fd = open("/proc/self/cgroup", O_RDONLY | O_CLOEXEC);

	key("cgroup");
	begin('[');
	if (fd >= 0) {
		while (len < sizeof buf - 1 &&
		       ((n = read(fd, buf + len, sizeof buf - 1 - len)) > 0 ||
			(n < 0 && errno == EINTR)))
			if (n > 0)
				len += (size_t)n;
		close(fd);
	}
	buf[len] = 0;
	for (char *line = buf; *line;) {
		char *nl = strchr(line, '\n');

		if (nl)
			*nl = 0;
		val_str(line);
		if (!nl)
			break;
		line = nl + 1;
	}
	end(']');
}

static void emit_strings(const char *name, char **list)
{
	key(name);
	begin('[');
	for (; list && *list; list++)
		val_str(*list);
	end(']');
}

/* ---------- writing ---------- */

/* Writes all of buf, waiting when fd is a full non-blocking pipe. */
static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);

		if (n < 0 && errno == EAGAIN) {
			struct pollfd p = {.fd = fd, .events = POLLOUT};

			poll(&p, 1, -1);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int write_output(void)
{
	const char *path = getenv("FORKLESS_PROBE_OUT");
	int fd = 1, rc;

	if (path) {
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			return -1;
	}
	rc = write_all(fd, out, outlen);
	if (path && close(fd) < 0)
		rc = -1;
	return rc;
}

/* "--exit N": returns N (0..255), or 0 when absent or not a number. */
static int exit_status(int argc, char **argv)
{
	int v = 0;

	if (argc < 3 || strcmp(argv[1], "--exit") != 0 || !argv[2][0])
		return 0;
	for (const char *s = argv[2]; *s; s++) {
		if (*s < '0' || *s > '9' || v > 255)
			return 0;
		v = v * 10 + (*s - '0');
	}
	return v <= 255 ? v : 0;
}

int main(int argc, char **argv, char **envp)
{
	begin('{');
	/* First of all, before any open: the descriptor table. */
	if (emit_fds() == -2)
		overflow = 1;
	emit_cwd_umask();
	emit_signals();
	emit_ids();
	emit_sched();
	emit_nofile();
	emit_cgroup();
	emit_strings("argv", argv);
	emit_strings("env", envp);
	end('}');
	put("\n", 1);

	if (overflow) {
		static const char msg[] = "forkless-probe: output overflow\n";

		(void)!write(2, msg, sizeof msg - 1);
		return 4;
	}
	if (write_output() < 0)
		return 3;
	return exit_status(argc, argv);
}
