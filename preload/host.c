/* The libos host: the connection the library reports on, the policy the
 * host set in the environment (exec allow/deny, the process limit), and
 * adoption onto the ptrace platform. Protocol: docs/design.md, "Host
 * protocol". Everything here uses raw system calls and stack buffers: it
 * runs in vfork children, in the engine's CLONE_VM child and in signal
 * handlers (an exit report from waitpid). */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "forkless.h"

/* ---- the connection ---- */

#define HOST_FD_MIN 1000 /* with the trace's: numbers programs rarely use */

#define MSG_MAGIC 0x31484c46u /* "FLH1": the 1 is the protocol version */
#define MSG_ADMIT 1
#define MSG_SETTLE 2
#define MSG_ADOPT 3
#define MSG_ADMIT_REPLY 0x81
#define MSG_ADOPT_REPLY 0x83

struct msg {
	uint32_t magic;
	uint16_t type;
	uint16_t flags;
	int32_t pid;
	int32_t arg;
};

/* The connection of process owner (a fork child inherits the number but
 * must not share the socket), identified by its inode: the program may
 * close it behind our back (a raw close_range) and reuse the number. */
int fl_hfd = -1;
static int howner;
static unsigned long hino;

static unsigned long inode_of(long fd)
{
	struct stat st;
	if (fl_sys2(SYS_fstat, fd, &st) != 0)
		return 0;
	return st.st_ino;
}

/* host_connect opens a new connection, at a high number; -1 on failure
 * (host gone: silence). */
static long host_connect(void)
{
	long fd = fl_sys3(SYS_socket, AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t n = 0;
	while (fl_cfg.host_path[n] && n < sizeof sa.sun_path - 1) {
		sa.sun_path[n] = fl_cfg.host_path[n];
		n++;
	}
	long r;
	do
		r = fl_sys3(SYS_connect, fd, &sa, offsetof(struct sockaddr_un, sun_path) + n + 1);
	while (r == -EINTR);
	if (r < 0) {
		fl_sys1(SYS_close, fd);
		return -1;
	}
	long hi = fl_sys3(SYS_fcntl, fd, F_DUPFD_CLOEXEC, HOST_FD_MIN);
	if (hi >= 0) {
		fl_sys1(SYS_close, fd);
		fd = hi;
	}
	return fd;
}

/* host_get returns the descriptor to send on; *temp is set when it is a
 * connection of its own, to close after use (a vfork child, which shares
 * our memory but not our descriptor table, must not change our state). */
static long host_get(int *temp)
{
	*temp = 0;
	int pid = (int)fl_sys0(SYS_getpid);
	int fd = __atomic_load_n(&fl_hfd, __ATOMIC_ACQUIRE); /* -2: being connected */
	/* Another process sharing our memory (a vfork child, the engine's
	 * CLONE_VM child) or a fork the library did not see: never change
	 * the state, use the inherited copy only in a vfork child. */
	int shared = fd >= 0 && __atomic_load_n(&howner, __ATOMIC_RELAXED) != pid;
	if (shared) {
		if (fl_vfork_child() && inode_of(fd) == hino)
			return fd;
		fd = -1;
	} else if (fd >= 0 && inode_of(fd) != hino) {
		/* Closed behind our back: the number is not ours any more. */
		int expect = fd;
		__atomic_compare_exchange_n(&fl_hfd, &expect, -1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
		fd = -1;
	}
	if (!shared && fl_vfork_child())
		shared = 1;
	if (fd >= 0)
		return fd;
	long nfd = host_connect();
	if (nfd < 0)
		return -1;
	if (shared) {
		*temp = 1;
		return nfd;
	}
	/* Publish it: claim the slot (-1 -> -2: connecting), set its
	 * identity, then the number. A thread that finds the slot claimed
	 * or taken uses its connection once. */
	int expect = -1;
	if (!__atomic_compare_exchange_n(&fl_hfd, &expect, -2, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		*temp = 1;
		return nfd;
	}
	__atomic_store_n(&hino, inode_of(nfd), __ATOMIC_RELAXED);
	__atomic_store_n(&howner, pid, __ATOMIC_RELAXED);
	__atomic_store_n(&fl_hfd, (int)nfd, __ATOMIC_RELEASE);
	return nfd;
}

static void host_put(long fd, int temp)
{
	if (temp)
		fl_sys1(SYS_close, fd);
}

static long send_msg(long fd, const void *buf, size_t n)
{
	long r;
	do
		r = fl_sys6(SYS_sendto, fd, (long)buf, (long)n, MSG_NOSIGNAL, 0, 0);
	while (r == -EINTR);
	return r;
}

static long recv_msg(long fd, void *buf, size_t n)
{
	long r;
	do
		r = fl_sys6(SYS_recvfrom, fd, (long)buf, (long)n, 0, 0, 0);
	while (r == -EINTR);
	return r;
}

void fl_host_send(const char *buf, size_t n)
{
	int temp;
	long fd = host_get(&temp);
	if (fd < 0)
		return;
	send_msg(fd, buf, n);
	host_put(fd, temp);
}

int fl_host_fd(void)
{
	int fd = __atomic_load_n(&fl_hfd, __ATOMIC_ACQUIRE);
	if (fd < 0 || __atomic_load_n(&howner, __ATOMIC_RELAXED) != (int)fl_sys0(SYS_getpid))
		return -1;
	return fd;
}

void fl_host_after_fork(void)
{
	int fd = fl_hfd; /* -2 (another thread was connecting): nothing here */
	if (fd >= 0 && inode_of(fd) == hino)
		fl_sys1(SYS_close, fd);
	fl_hfd = -1;
	howner = 0;
}

void fl_host_vacate(int fd)
{
	if (fd < 0 || fd != fl_host_fd())
		return;
	long nfd = fl_sys3(SYS_fcntl, fd, F_DUPFD_CLOEXEC, HOST_FD_MIN);
	if (nfd < 0) {
		/* Nowhere to go: give it up, the next report reconnects. */
		__atomic_store_n(&fl_hfd, -1, __ATOMIC_RELEASE);
		return;
	}
	int expect = fd;
	if (__atomic_compare_exchange_n(&fl_hfd, &expect, (int)nfd, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		fl_sys1(SYS_close, fd);
	else
		fl_sys1(SYS_close, nfd);
}

/* ---- the process limit ---- */

int fl_admit(void)
{
	if (!fl_hosted() || fl_cfg.max_procs <= 0)
		return -1;
	int temp;
	long fd = host_get(&temp);
	if (fd < 0)
		return -1;
	struct msg m = {.magic = MSG_MAGIC, .type = MSG_ADMIT, .pid = (int32_t)fl_sys0(SYS_getpid)};
	int ret = -1;
	if (send_msg(fd, &m, sizeof m) == (long)sizeof m) {
		/* Replies to concurrent threads may cross: they are about the
		 * same pid, and the host counts reservations per pid. */
		struct msg r;
		if (recv_msg(fd, &r, sizeof r) == (long)sizeof r && r.magic == MSG_MAGIC &&
		    r.type == MSG_ADMIT_REPLY)
			ret = r.arg == 1;
	}
	host_put(fd, temp);
	if (ret == 1 && temp) {
		/* The reservation belongs to a connection we are closing:
		 * the host released it. Nothing to settle. */
		ret = -1;
	}
	return ret;
}

void fl_settle(void)
{
	int temp;
	long fd = host_get(&temp);
	if (fd < 0)
		return;
	struct msg m = {.magic = MSG_MAGIC, .type = MSG_SETTLE, .pid = (int32_t)fl_sys0(SYS_getpid)};
	send_msg(fd, &m, sizeof m);
	host_put(fd, temp);
}

/* ---- resolving the program an exec runs ---- */

static size_t slen(const char *s)
{
	size_t n = 0;
	while (s[n])
		n++;
	return n;
}

/* cat appends s to out[*n..size), 0 when it does not fit. */
static int cat(char *out, size_t *n, size_t size, const char *s, size_t len)
{
	if (*n + len + 1 > size)
		return 0;
	for (size_t i = 0; i < len; i++)
		out[(*n)++] = s[i];
	out[*n] = 0;
	return 1;
}

/* absolute makes path absolute against the working directory (dirfd
 * AT_FDCWD) or the directory dirfd, lexically: "." entries are dropped. */
static const char *absolute(int dirfd, const char *path, char *out, size_t size)
{
	size_t n = 0;
	if (path[0] != '/') {
		long r;
		if (dirfd == AT_FDCWD) {
			r = fl_sys2(SYS_getcwd, out, size);
			if (r < 0)
				return 0;
		} else {
			if (fl_fd_link(dirfd, out, size) < 0)
				return 0;
		}
		n = slen(out);
		if (n > 1 && !cat(out, &n, size, "/", 1)) /* the root ends with '/' */
			return 0;
	}
	while (path[0] == '.' && path[1] == '/')
		path += 2;
	if (!cat(out, &n, size, path, slen(path)))
		return 0;
	return out;
}

/* env_path returns PATH from the environment, or glibc's default. */
static const char *env_path(void)
{
	for (char **e = environ; e && *e; e++) {
		const char *s = *e;
		if (s[0] == 'P' && s[1] == 'A' && s[2] == 'T' && s[3] == 'H' && s[4] == '=')
			return s + 5;
	}
	return "/bin:/usr/bin";
}

/* fl_resolve finds the program: path (relative to dirfd) when it has a
 * '/' or no search is asked for, else the first executable entry of
 * search (a PATH list; NULL: this process's PATH) as execvp does. NULL
 * when none is found. */
static const char *fl_resolve(const char *path, int search, const char *list, int dirfd, char *out,
			      size_t size)
{
	if (!path)
		return 0;
	if (!*path && dirfd >= 0) {
		/* fexecve, execveat(AT_EMPTY_PATH): the descriptor's file */
		if (fl_fd_link(dirfd, out, size) < 0)
			return 0;
		return out[0] == '/' ? out : 0;
	}
	if (!search || __builtin_strchr(path, '/') || !*path)
		return *path ? absolute(dirfd, path, out, size) : 0;
	if (!list)
		list = env_path();
	char buf[PATH_MAX];
	size_t flen = slen(path);
	for (const char *p = list;;) {
		const char *end = p;
		while (*end && *end != ':')
			end++;
		size_t n = 0, dlen = (size_t)(end - p);
		if ((!dlen || cat(buf, &n, sizeof buf, p, dlen)) && (!dlen || cat(buf, &n, sizeof buf, "/", 1)) &&
		    cat(buf, &n, sizeof buf, path, flen) &&
		    fl_sys4(SYS_faccessat, AT_FDCWD, buf, X_OK, 0) == 0) {
			struct stat st;
			if (fl_sys2(SYS_stat, buf, &st) == 0 && S_ISREG(st.st_mode))
				return absolute(AT_FDCWD, buf, out, size);
		}
		if (!*end)
			return 0;
		p = end + 1;
	}
}

/* ---- exec policy ---- */

static const char *base(const char *p)
{
	const char *b = p;
	for (; *p; p++)
		if (*p == '/')
			b = p + 1;
	return b;
}

static int matches(const char *pat, const char *prog)
{
	return fl_match(pat, __builtin_strchr(pat, '/') ? prog : base(prog));
}

static int denied_path(const char *prog)
{
	for (int i = 0; i < fl_cfg.ndeny; i++)
		if (matches(fl_cfg.deny[i], prog))
			return 1;
	if (!fl_cfg.nallow)
		return 0;
	for (int i = 0; i < fl_cfg.nallow; i++)
		if (matches(fl_cfg.allow[i], prog))
			return 0;
	return 1;
}

/* ---- adoption onto the ptrace platform ---- */

static int elf_unreachable(long fd, const Elf64_Ehdr *eh, long n)
{
	if (n < (long)sizeof(Elf64_Ehdr) || eh->e_ident[0] != 0x7f || eh->e_ident[1] != 'E' ||
	    eh->e_ident[2] != 'L' || eh->e_ident[3] != 'F' || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
	    eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum > 64)
		return 0;
	Elf64_Phdr ph[64];
	size_t sz = (size_t)eh->e_phnum * sizeof(Elf64_Phdr);
	if (fl_sys4(SYS_pread64, fd, ph, sz, eh->e_phoff) != (long)sz)
		return 0;
	for (int i = 0; i < eh->e_phnum; i++)
		if (ph[i].p_type == PT_INTERP)
			goto dynamic;
	return 1; /* static */
dynamic:
	for (int i = 0; i < eh->e_phnum; i++) {
		if (ph[i].p_type != PT_NOTE || ph[i].p_filesz > 4096)
			continue;
		char notes[4096] __attribute__((aligned(4)));
		long got = fl_sys4(SYS_pread64, fd, notes, ph[i].p_filesz, ph[i].p_offset);
		for (long off = 0; off + 12 <= got;) {
			const Elf64_Nhdr *nh = (const Elf64_Nhdr *)(notes + off);
			long name = off + 12, desc = name + (long)((nh->n_namesz + 3) & ~3u);
			/* Go's linker writes the name "Go" padded: namesz 4. */
			if ((nh->n_namesz == 3 || nh->n_namesz == 4) && name + 3 <= got && notes[name] == 'G' &&
			    notes[name + 1] == 'o' && notes[name + 2] == 0 && nh->n_type == 4)
				return 1; /* Go */
			off = desc + (long)((nh->n_descsz + 3) & ~3u);
		}
	}
	return 0;
}

/* unreachable reports whether the program at path is one LD_PRELOAD
 * cannot reach: a static ELF (no PT_INTERP) or a Go binary (a PT_NOTE
 * with owner "Go", type 4). A #! script is judged by its interpreter (at
 * most 4 levels). */
static int unreachable(const char *path)
{
	char interp[256];
	for (int depth = 0; depth < 5; depth++) {
		long fd = fl_sys4(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
		if (fd < 0)
			return 0;
		union {
			Elf64_Ehdr eh;
			char raw[256];
		} h;
		long n = fl_sys4(SYS_pread64, fd, &h, sizeof h, 0);
		if (n >= 2 && h.raw[0] == '#' && h.raw[1] == '!') {
			long i = 2, k = 0;
			while (i < n && (h.raw[i] == ' ' || h.raw[i] == '\t'))
				i++;
			while (i < n && h.raw[i] != ' ' && h.raw[i] != '\t' && h.raw[i] != '\n' && k < 255)
				interp[k++] = h.raw[i++];
			interp[k] = 0;
			fl_sys1(SYS_close, fd);
			if (k == 0 || interp[0] != '/')
				return 0;
			path = interp;
			continue;
		}
		int ret = elf_unreachable(fd, &h.eh, n);
		fl_sys1(SYS_close, fd);
		return ret;
	}
	return 0;
}

#define FILTER_MAX 1024 /* instructions the reply may carry */

void fl_adopt_request(void)
{
	if (!fl_hosted())
		return;
	long fd = host_connect(); /* our own: the reply is ours alone */
	if (fd < 0)
		return;
	struct msg m = {.magic = MSG_MAGIC, .type = MSG_ADOPT, .pid = (int32_t)fl_sys0(SYS_getpid)};
	struct {
		struct msg h;
		struct sock_filter f[FILTER_MAX];
	} r;
	long n = -1;
	if (send_msg(fd, &m, sizeof m) == (long)sizeof m)
		n = recv_msg(fd, &r, sizeof r);
	fl_sys1(SYS_close, fd);
	if (n < (long)sizeof r.h || r.h.magic != MSG_MAGIC || r.h.type != MSG_ADOPT_REPLY || r.h.arg != 1)
		return; /* refused or gone: exec untraced */
	long nins = (n - (long)sizeof r.h) / (long)sizeof(struct sock_filter);
	if (nins <= 0)
		return; /* traced, nothing to filter */
	struct sock_fprog prog_ = {.len = (unsigned short)nins, .filter = r.f};
	/* SPEC_ALLOW: do not turn on a speculation mitigation the program
	 * would not have natively (as libos/ptrace's stub); EINVAL before 4.17. */
	long flags = SECCOMP_FILTER_FLAG_SPEC_ALLOW;
	long rc = fl_sys3(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog_);
	if (rc == -EINVAL) {
		flags = 0;
		rc = fl_sys3(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog_);
	}
	if (rc == -EACCES) {
		/* Not privileged: no_new_privs first, as the kernel asks. */
		fl_sys5(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
		fl_sys3(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog_);
	}
}

/* fl_exec_prepare: see forkless.h. */
int fl_exec_prepare(const char *path, int search, const char *list, int dirfd, int what)
{
	if (!(fl_cfg.nallow || fl_cfg.ndeny))
		what &= ~FL_PREP_POLICY;
	if (!fl_hosted())
		what &= ~FL_PREP_ADOPT;
	if (!what)
		return 0;
	char buf[PATH_MAX];
	const char *prog = fl_resolve(path, search, list, dirfd, buf, sizeof buf);
	if (!prog)
		return 0;
	if ((what & FL_PREP_POLICY) && denied_path(prog))
		return -EACCES;
	if ((what & FL_PREP_ADOPT) && unreachable(prog)) {
		if (what & FL_PREP_DEFER)
			return 1;
		fl_adopt_request();
	}
	return 0;
}
