/* stress: process creation from the main thread of a multithreaded
 * program while other threads churn descriptors and run popen/pclose.
 *
 *   stress -r REPORT [-n CREATIONS] [-w CHURNERS] [-p POPENERS] [-d DIR]
 *
 * CREATIONS (default 10000) is the total number of processes made by the
 * main thread and the popen threads together; the main thread goes on
 * until the total is reached. Each runs REPORT (a static program listing
 * its descriptors); the main thread cycles through posix_spawn,
 * posix_spawnp, system, popen "r", popen "w", fork+execv and vfork+execv.
 * CHURNERS threads open, duplicate and close descriptors in a loop; every
 * descriptor they make close-on-exec is made so atomically and is
 * recognisable by its target: files and FIFOs named "cstress-cloexec-*",
 * memfds of that name, eventfds and epoll instances (only ever
 * close-on-exec here). They also make anonymous close-on-exec pipes
 * (pipe2), and open "cstress-inherit-*" files without close-on-exec,
 * which children may inherit. POPENERS threads run popen/pclose of REPORT
 * in a loop, in both modes, without "e": their streams are inheritable
 * (POSIX; glibc clears FD_CLOEXEC on the parent's end).
 *
 * Every report is checked:
 *  - it must list 0, 1 and 2, and the pipe the parent made for it must be
 *    its stdout (stdin for popen "w");
 *  - cloexec leak: any descriptor with a close-on-exec target, or at
 *    fd >= 3 the pipe the parent made for this very child;
 *  - popen leak: in a popen child, any pipe at fd >= 3: POSIX requires
 *    popen children to have other popen calls' streams closed, and every
 *    other pipe in this program is close-on-exec;
 *  - in other children, pipes at fd >= 3 can be the popen threads'
 *    inheritable streams: allowed, counted as inherited_pipes.
 * Descriptors the program was started with (inheritable, >= 3) are
 * ignored. At the end the program's descriptor count must be what it was
 * before the threads started, and no child may be left unreaped. The last
 * line of stdout is a summary of key=value counts; the exit status is 0
 * only when every count of problems is zero. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static const char *report;
static const char *dir;
static atomic_int stop;

static atomic_long n_main, n_popen, n_churn_ops;
static atomic_long failures, cloexec_leaks, popen_leaks, inherited_pipes;
static atomic_int messages;

/* Descriptors inherited at start-up, ignored in reports. */
static int ambient[64], nambient;

enum method { M_SPAWN, M_SPAWNP, M_SYSTEM, M_POPEN_R, M_POPEN_W, M_FORK, M_VFORK, M_COUNT };
static const char *const method_names[] = {"posix_spawn", "posix_spawnp", "system", "popen-r",
					   "popen-w",     "fork+exec",    "vfork+exec"};

/* note prints one of the first 30 problems to stderr. */
__attribute__((format(printf, 1, 2))) static void note(const char *fmt, ...)
{
	if (atomic_fetch_add(&messages, 1) >= 30)
		return;
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	fprintf(stderr, "cstress: %s\n", buf);
}

#define FAILURE(...)                              \
	do {                                      \
		atomic_fetch_add(&failures, 1);   \
		note(__VA_ARGS__);                \
	} while (0)

/* Streams of popen calls, to explain a leak: the inode of each stream is
 * recorded when popen returns, marked before pclose and kept in a ring of
 * the last ones closed. Diagnostics only; no check depends on it. */
#define NSTREAMS 256
static struct {
	unsigned long ino;
	int state; /* 1 open, 2 in pclose, 3 closed */
} streams[NSTREAMS];
static int next_stream;
static pthread_mutex_t streams_lock = PTHREAD_MUTEX_INITIALIZER;

static void stream_state(unsigned long ino, int state)
{
	pthread_mutex_lock(&streams_lock);
	int i;
	for (i = 0; i < NSTREAMS; i++)
		if (streams[i].ino == ino && streams[i].state != 3)
			break;
	if (i == NSTREAMS) {
		i = next_stream;
		next_stream = (next_stream + 1) % NSTREAMS;
		streams[i].ino = ino;
	}
	streams[i].state = state;
	pthread_mutex_unlock(&streams_lock);
}

static const char *stream_desc(const char *target)
{
	unsigned long ino = strtoul(target + 6, NULL, 10); /* "pipe:[" */
	int state = 0;
	pthread_mutex_lock(&streams_lock);
	for (int i = 0; i < NSTREAMS; i++)
		if (streams[i].ino == ino && streams[i].state > state)
			state = streams[i].state;
	pthread_mutex_unlock(&streams_lock);
	static const char *const desc[] = {
		"not a popen stream: a close-on-exec pipe", "another popen call's open stream",
		"another popen call's stream, pclose in progress", "another popen call's stream, since pclosed"};
	return desc[state];
}

static int is_ambient(int fd)
{
	for (int i = 0; i < nambient; i++)
		if (ambient[i] == fd)
			return 1;
	return 0;
}

static int cloexec_target(const char *t)
{
	return strstr(t, "cstress-cloexec") != NULL || strcmp(t, "anon_inode:[eventfd]") == 0 ||
	       strcmp(t, "anon_inode:[eventpoll]") == 0;
}

/* check_report checks one child's descriptor list. io_fd is the standard
 * descriptor that must be the pipe whose inode is ino (ino 0: no check). */
static void check_report(enum method m, const char *buf, int io_fd, unsigned long ino)
{
	int seen[3] = {0, 0, 0}, io_ok = ino == 0;
	char want[64];
	snprintf(want, sizeof want, "pipe:[%lu]", ino);
	for (const char *p = buf; *p;) {
		const char *end = strchr(p, '\n');
		if (!end) {
			FAILURE("%s: report line without newline: %s", method_names[m], p);
			return;
		}
		char target[PATH_MAX];
		int fd;
		size_t len = (size_t)(end - p);
		char line[PATH_MAX + 32];
		if (len >= sizeof line) {
			FAILURE("%s: report line too long", method_names[m]);
			return;
		}
		memcpy(line, p, len);
		line[len] = 0;
		p = end + 1;
		if (sscanf(line, "%d %4095[^\n]", &fd, target) != 2) {
			FAILURE("%s: bad report line: %s", method_names[m], line);
			return;
		}
		if (fd >= 0 && fd <= 2)
			seen[fd] = 1;
		if (fd == io_fd && strcmp(target, want) == 0)
			io_ok = 1;
		if (fd <= 2 || is_ambient(fd))
			continue;
		if (cloexec_target(target) || (ino && strcmp(target, want) == 0)) {
			atomic_fetch_add(&cloexec_leaks, 1);
			note("%s: close-on-exec descriptor reached the child: %d -> %s", method_names[m], fd,
			     target);
		} else if (strncmp(target, "pipe:", 5) == 0) {
			if (m == M_POPEN_R || m == M_POPEN_W) {
				atomic_fetch_add(&popen_leaks, 1);
				note("%s: popen child holds another pipe: %d -> %s (%s)", method_names[m], fd, target,
				     stream_desc(target));
			} else {
				atomic_fetch_add(&inherited_pipes, 1);
			}
		}
	}
	if (!seen[0] || !seen[1] || !seen[2])
		FAILURE("%s: report lacks a standard descriptor:\n%s", method_names[m], buf);
	else if (!io_ok)
		FAILURE("%s: fd %d of the child is not the parent's pipe %s:\n%s", method_names[m], io_fd, want,
			buf);
}

static unsigned long inode_of(int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 ? (unsigned long)st.st_ino : 0;
}

/* read_all reads fd to EOF into buf (NUL-terminated). */
static int read_all(int fd, char *buf, size_t size)
{
	size_t n = 0;
	for (;;) {
		if (n == size - 1) {
			buf[n] = 0;
			return -1;
		}
		ssize_t r = read(fd, buf + n, size - 1 - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = 0;
	return 0;
}

static int read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int r = read_all(fd, buf, size);
	close(fd);
	return r;
}

static const char *status_str(int st, char *buf, size_t size)
{
	if (st == -1)
		snprintf(buf, size, "error %s", strerror(errno));
	else if (WIFEXITED(st))
		snprintf(buf, size, "exit %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(buf, size, "signal %d", WTERMSIG(st));
	else
		snprintf(buf, size, "status 0x%x", st);
	return buf;
}

static int wait_child(pid_t pid, enum method m)
{
	int st;
	pid_t r;
	do
		r = waitpid(pid, &st, 0);
	while (r < 0 && errno == EINTR);
	char sb[64];
	if (r != pid) {
		FAILURE("%s: waitpid: %s", method_names[m], strerror(errno));
		return -1;
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		FAILURE("%s: child ended with %s", method_names[m], status_str(st, sb, sizeof sb));
		return -1;
	}
	return 0;
}

/* ---- creating one process ---- */

static char buf_main[1 << 16];

/* via_pipe: the child's stdout is a fresh close-on-exec pipe's write end
 * (dup2 onto 1 clears the flag); the report comes back through it. */
static void via_pipe(enum method m)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0) {
		FAILURE("%s: pipe2: %s", method_names[m], strerror(errno));
		return;
	}
	unsigned long ino = inode_of(p[0]);
	char *argv[] = {(char *)report, NULL};
	pid_t pid = -1;
	int err = 0;
	if (m == M_SPAWN || m == M_SPAWNP) {
		posix_spawn_file_actions_t fa;
		posix_spawn_file_actions_init(&fa);
		posix_spawn_file_actions_adddup2(&fa, p[1], 1);
		err = m == M_SPAWN ? posix_spawn(&pid, report, &fa, NULL, argv, environ)
				   : posix_spawnp(&pid, report, &fa, NULL, argv, environ);
		posix_spawn_file_actions_destroy(&fa);
	} else if (m == M_FORK) {
		pid = fork();
		if (pid == 0) {
			if (dup2(p[1], 1) < 0)
				_exit(120);
			execv(report, argv);
			_exit(127);
		}
		err = pid < 0 ? errno : 0;
	} else {
		pid = vfork();
		if (pid == 0) {
			if (dup2(p[1], 1) < 0)
				_exit(120);
			execv(report, argv);
			_exit(127);
		}
		err = pid < 0 ? errno : 0;
	}
	close(p[1]);
	if (err) {
		FAILURE("%s: %s", method_names[m], strerror(err));
		close(p[0]);
		return;
	}
	int r = read_all(p[0], buf_main, sizeof buf_main);
	close(p[0]);
	if (wait_child(pid, m) == 0) {
		if (r < 0)
			FAILURE("%s: reading the report failed", method_names[m]);
		else
			check_report(m, buf_main, 1, ino);
	}
}

static void via_system(void)
{
	char out[PATH_MAX], cmd[2 * PATH_MAX + 8];
	snprintf(out, sizeof out, "%s/out-system", dir);
	snprintf(cmd, sizeof cmd, "%s %s", report, out);
	unlink(out);
	int st = system(cmd);
	char sb[64];
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		FAILURE("system(%s): %s", cmd, status_str(st, sb, sizeof sb));
		return;
	}
	if (read_file(out, buf_main, sizeof buf_main) < 0) {
		FAILURE("system: cannot read %s", out);
		return;
	}
	check_report(M_SYSTEM, buf_main, 1, 0);
}

/* via_popen runs one popen/pclose of the report in mode "r" (report on
 * the stream) or "w" (report in out, the child's stdin is the stream). */
static void via_popen(enum method m, const char *out, char *buf, size_t size)
{
	char cmd[2 * PATH_MAX + 8];
	if (m == M_POPEN_R) {
		snprintf(cmd, sizeof cmd, "%s", report);
	} else {
		snprintf(cmd, sizeof cmd, "%s %s", report, out);
		unlink(out);
	}
	FILE *f = popen(cmd, m == M_POPEN_R ? "r" : "w");
	if (!f) {
		FAILURE("popen(%s): %s", cmd, strerror(errno));
		return;
	}
	unsigned long ino = inode_of(fileno(f));
	stream_state(ino, 1);
	int r = 0;
	if (m == M_POPEN_R) {
		size_t n = fread(buf, 1, size - 1, f);
		buf[n] = 0;
		r = ferror(f) || n == size - 1 ? -1 : 0;
	}
	stream_state(ino, 2);
	int st = pclose(f);
	stream_state(ino, 3);
	char sb[64];
	if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		FAILURE("pclose(%s): %s", cmd, status_str(st, sb, sizeof sb));
		return;
	}
	if (m == M_POPEN_W && read_file(out, buf, size) < 0) {
		FAILURE("popen-w: cannot read %s", out);
		return;
	}
	if (r < 0) {
		FAILURE("popen-r: reading the stream failed");
		return;
	}
	check_report(m, buf, m == M_POPEN_R ? 1 : 0, ino);
}

static void create(enum method m)
{
	char out[PATH_MAX];
	switch (m) {
	case M_SYSTEM:
		via_system();
		break;
	case M_POPEN_R:
	case M_POPEN_W:
		snprintf(out, sizeof out, "%s/out-popen-main", dir);
		via_popen(m, out, buf_main, sizeof buf_main);
		break;
	default:
		via_pipe(m);
	}
}

/* ---- the other threads ---- */

static void *popener(void *arg)
{
	int id = (int)(long)arg;
	static __thread char buf[1 << 16];
	char out[PATH_MAX];
	snprintf(out, sizeof out, "%s/out-popen-%d", dir, id);
	for (long i = 0; !atomic_load(&stop); i++) {
		via_popen(i % 2 ? M_POPEN_W : M_POPEN_R, out, buf, sizeof buf);
		atomic_fetch_add(&n_popen, 1);
	}
	return NULL;
}

#define CHURN_FAIL(what)                                                      \
	do {                                                                  \
		FAILURE("churner %d: %s: %s", id, what, strerror(errno));     \
		goto out;                                                     \
	} while (0)

static void *churner(void *arg)
{
	int id = (int)(long)arg;
	for (long i = 0; !atomic_load(&stop); i++) {
		int fds[16], n = 0;
		char cx[PATH_MAX], in[PATH_MAX], name[PATH_MAX];
		snprintf(cx, sizeof cx, "%s/cstress-cloexec-%d-%ld", dir, id, i % 4);
		snprintf(in, sizeof in, "%s/cstress-inherit-%d-%ld", dir, id, i % 4);
		int fd = open(cx, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		if (fd < 0)
			CHURN_FAIL("open O_CLOEXEC");
		fds[n++] = fd;
		int d = fcntl(fd, F_DUPFD_CLOEXEC, 0);
		if (d < 0)
			CHURN_FAIL("F_DUPFD_CLOEXEC");
		fds[n++] = d;
		int inh = open(in, O_RDWR | O_CREAT, 0600);
		if (inh < 0)
			CHURN_FAIL("open inheritable");
		fds[n++] = inh;
		int inh2 = dup(inh);
		if (inh2 < 0)
			CHURN_FAIL("dup");
		fds[n++] = inh2;
		/* An inheritable descriptor atomically becomes a close-on-exec
		 * one on the cloexec file. */
		if (dup3(fd, inh2, O_CLOEXEC) < 0)
			CHURN_FAIL("dup3");
		int p[2];
		if (pipe2(p, O_CLOEXEC) < 0)
			CHURN_FAIL("pipe2");
		fds[n++] = p[0];
		fds[n++] = p[1];
		snprintf(name, sizeof name, "%s/cstress-cloexec-fifo-%d", dir, id);
		int fifo = open(name, O_RDWR | O_CLOEXEC);
		if (fifo < 0)
			CHURN_FAIL("open FIFO");
		fds[n++] = fifo;
		snprintf(name, sizeof name, "cstress-cloexec-memfd-%d", id);
		int m = memfd_create(name, MFD_CLOEXEC);
		if (m < 0)
			CHURN_FAIL("memfd_create");
		fds[n++] = m;
		int ev = eventfd(0, EFD_CLOEXEC);
		if (ev < 0)
			CHURN_FAIL("eventfd");
		fds[n++] = ev;
		int ep = epoll_create1(EPOLL_CLOEXEC);
		if (ep < 0)
			CHURN_FAIL("epoll_create1");
		fds[n++] = ep;
		/* Close in a rotating order so numbers are reused differently. */
	out:
		for (int k = 0; k < n; k++)
			close(fds[(k + i) % n]);
		atomic_fetch_add(&n_churn_ops, 1);
		if (n < 10)
			return NULL; /* failed above */
	}
	return NULL;
}

/* ---- accounting ---- */

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int n = 0, self = dirfd(d);
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] >= '0' && e->d_name[0] <= '9' && atoi(e->d_name) != self)
			n++;
	closedir(d);
	return n;
}

static void find_ambient(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return;
	int self = dirfd(d);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		int fd = atoi(e->d_name);
		int fl = fcntl(fd, F_GETFD);
		if (fd > 2 && fd != self && fl >= 0 && !(fl & FD_CLOEXEC) &&
		    nambient < (int)(sizeof ambient / sizeof ambient[0]))
			ambient[nambient++] = fd;
	}
	closedir(d);
}

static void usage(void)
{
	fprintf(stderr, "usage: stress -r REPORT [-n CREATIONS] [-w CHURNERS] [-p POPENERS] [-d DIR]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	long creations = 10000;
	int churners = 4, popeners = 2, opt;
	dir = getenv("TMPDIR");
	while ((opt = getopt(argc, argv, "r:n:w:p:d:")) != -1) {
		switch (opt) {
		case 'r':
			report = optarg;
			break;
		case 'n':
			creations = atol(optarg);
			break;
		case 'w':
			churners = atoi(optarg);
			break;
		case 'p':
			popeners = atoi(optarg);
			break;
		case 'd':
			dir = optarg;
			break;
		default:
			usage();
		}
	}
	if (!report || creations < 0 || churners < 0 || popeners < 0 || churners + popeners > 64)
		usage();
	if (!dir || !*dir)
		dir = "/tmp";

	find_ambient();
	int fds_before = count_fds();
	pthread_t th[64];
	int nth = 0;
	for (int i = 0; i < churners; i++) {
		char fifo[PATH_MAX];
		snprintf(fifo, sizeof fifo, "%s/cstress-cloexec-fifo-%d", dir, i);
		if (mkfifo(fifo, 0600) < 0 && errno != EEXIST)
			FAILURE("mkfifo %s: %s", fifo, strerror(errno));
	}
	for (int i = 0; i < churners; i++)
		if (pthread_create(&th[nth], NULL, churner, (void *)(long)i) == 0)
			nth++;
		else
			FAILURE("pthread_create: cannot start a churner");
	for (int i = 0; i < popeners; i++)
		if (pthread_create(&th[nth], NULL, popener, (void *)(long)i) == 0)
			nth++;
		else
			FAILURE("pthread_create: cannot start a popener");

	for (long i = 0; atomic_load(&n_main) + atomic_load(&n_popen) < creations; i++) {
		create((enum method)(i % M_COUNT));
		atomic_fetch_add(&n_main, 1);
	}
	atomic_store(&stop, 1);
	for (int i = 0; i < nth; i++)
		pthread_join(th[i], NULL);

	int fds_after = count_fds();
	siginfo_t si = {0};
	int unreaped = waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == 0;
	if (unreaped)
		note("a child was left unreaped: pid %d", (int)si.si_pid);
	if (fds_before < 0 || fds_after != fds_before)
		note("descriptors: %d before the threads started, %d at the end", fds_before, fds_after);

	long total = atomic_load(&n_main) + atomic_load(&n_popen);
	printf("cstress: creations=%ld main=%ld popen_threads=%ld churn_rounds=%ld failures=%ld "
	       "cloexec_leaks=%ld popen_leaks=%ld inherited_pipes=%ld parent_fds_before=%d parent_fds_after=%d "
	       "unreaped=%d\n",
	       total, atomic_load(&n_main), atomic_load(&n_popen), atomic_load(&n_churn_ops),
	       atomic_load(&failures), atomic_load(&cloexec_leaks), atomic_load(&popen_leaks),
	       atomic_load(&inherited_pipes), fds_before, fds_after, unreaped);
	int bad = atomic_load(&failures) || atomic_load(&cloexec_leaks) || atomic_load(&popen_leaks) ||
		  fds_after != fds_before || unreaped;
	return bad ? 1 : 0;
}
