/* vf: vfork patterns for the lazy vfork tests. The same program runs with
 * glibc's vfork (no preload), with lazy vfork (the library's default) and
 * with FORKLESS_VFORK=real; the test compares what each prints. The vfork
 * child shares our memory, so it reports the return values of its calls
 * through the shared array `res`, which the parent prints afterwards.
 * $LZPROBE is the probe program (lzprobe.c).
 *
 *   shell DIR      redirections from and to files, dup2(1, 2), chdir, a
 *                  custom mask, umask, an ignored signal, then a relative
 *                  exec of the probe (DIR/probe links to it)
 *   pipe           a pipe into the child and one out of it (tr a-z A-Z)
 *   retvals DIR    return values of recorded calls, then the probe's fds
 *   random SEED N  N random sequences of descriptor calls (valid and bad
 *                  descriptors, overlapping dup2, close of earlier
 *                  targets) from SEED, each child ends in the probe's fds
 *   execfail       exec failures reported through a pipe, then _exit(127)
 *   exit           _exit without exec; then setpgid(0, 0) and _exit
 *   sequence N     N vfork+execve in a row
 *   getpid         the child asks for its pid and its parent's
 *   write          the child writes to a descriptor it remapped
 *   kill           the child kills itself
 *   rawsyscall     getpid by syscall() and by a bare syscall instruction
 *   sigdisp        the child changes dispositions; ours stay
 *   signals        a signal sent to us while the child runs is handled
 *                  after the vfork returned, not before
 *   threads N M    N threads, M vfork+exec each, at once
 *   nested         vfork inside the child
 *   lock DIR       we hold a POSIX lock on a file; the child opens it and
 *                  dup2s our descriptor of it: our lock must survive
 *                  (closing any descriptor of the file would drop it) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *probe(void)
{
	const char *p = getenv("LZPROBE");
	if (!p) {
		fprintf(stderr, "LZPROBE unset\n");
		exit(2);
	}
	return p;
}

/* Results the child leaves in our memory: return value and errno. */
static struct {
	long ret;
	int err;
} res[512];
static int nres;

#define REC(expr)                                \
	do {                                     \
		errno = 0;                       \
		long r_ = (long)(expr);          \
		res[nres].ret = r_;              \
		res[nres].err = r_ < 0 ? errno : 0; \
		nres++;                          \
	} while (0)

static void print_res(const char *label)
{
	for (int i = 0; i < nres; i++)
		printf("%s %d: %ld %s\n", label, i, res[i].ret, res[i].err ? strerror(res[i].err) : "ok");
	nres = 0;
}

static int wait_status(pid_t p)
{
	int st;
	while (waitpid(p, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return st;
}

static void print_status(const char *label, int st)
{
	if (WIFEXITED(st))
		printf("%s exit %d\n", label, WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		printf("%s signal %d\n", label, WTERMSIG(st));
	else
		printf("%s status %#x\n", label, st);
}

static void cat_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[512];
	while (f && fgets(line, sizeof line, f))
		printf("| %s", line);
	if (f)
		fclose(f);
}

/* ---- shell ---- */

static int mode_shell(const char *dir)
{
	char in[4096], out[4096], sub[4096], link[4096];
	snprintf(in, sizeof in, "%s/in.txt", dir);
	snprintf(out, sizeof out, "%s/out.txt", dir);
	snprintf(sub, sizeof sub, "%s/sub", dir);
	snprintf(link, sizeof link, "%s/probe", dir);
	mkdir(sub, 0755);
	unlink(link);
	if (symlink(probe(), link) != 0)
		return 1;
	FILE *f = fopen(in, "w");
	fputs("first line of input\n", f);
	fclose(f);
	fflush(stdout);
	pid_t p = vfork();
	if (p == 0) {
		int fd;
		REC(fd = open(in, O_RDONLY));
		REC(dup2(fd, 0));
		REC(close(fd));
		REC(fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0640));
		REC(dup2(fd, 1));
		REC(dup2(1, 2));
		REC(close(fd));
		REC(chdir(sub));
		sigset_t m;
		sigemptyset(&m);
		sigaddset(&m, SIGUSR1);
		sigaddset(&m, SIGHUP);
		REC(sigprocmask(SIG_BLOCK, &m, 0));
		REC(umask(027));
		REC(signal(SIGQUIT, SIG_IGN) == SIG_ERR ? -1 : 0);
		char *argv[] = {"probe", "all", 0};
		execv("../probe", argv);
		_exit(127);
	}
	print_status("shell", wait_status(p));
	print_res("shell");
	cat_file(out);
	struct stat sb;
	stat(out, &sb);
	printf("out.txt mode %o\n", sb.st_mode & 0777);
	return 0;
}

/* ---- pipe ---- */

static int mode_pipe(void)
{
	int in[2], out[2];
	if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC))
		return 1;
	pid_t p = vfork();
	if (p == 0) {
		dup2(in[0], 0);
		dup2(out[1], 1);
		execlp("tr", "tr", "a-z", "A-Z", (char *)0);
		_exit(127);
	}
	close(in[0]);
	close(out[1]);
	const char msg[] = "hello through pipes\n";
	if (write(in[1], msg, sizeof msg - 1) != (ssize_t)sizeof msg - 1)
		return 1;
	close(in[1]);
	char buf[256];
	ssize_t n, got = 0;
	while ((n = read(out[0], buf + got, sizeof buf - 1 - (size_t)got)) > 0)
		got += n;
	buf[got] = 0;
	printf("pipe read: %s", buf);
	print_status("pipe", wait_status(p));
	return 0;
}

/* ---- retvals ---- */

static void noop(int sig) { (void)sig; }

static int mode_retvals(const char *dir)
{
	char file[4096];
	snprintf(file, sizeof file, "%s/rv.txt", dir);
	int keep = open("/dev/null", O_RDONLY); /* 3 */
	int ce = open("/dev/null", O_RDONLY | O_CLOEXEC); /* 4 */
	struct sigaction sa = {.sa_handler = noop};
	sigaction(SIGUSR2, &sa, 0);
	fflush(stdout);
	pid_t p = vfork();
	if (p == 0) {
		REC(dup(0));                         /* lowest free: 5 */
		REC(close(77));                      /* EBADF */
		REC(close(-1));                      /* EBADF */
		REC(dup2(99, 10));                   /* EBADF */
		REC(dup2(keep, keep));               /* keep */
		REC(dup2(77, 77));                   /* EBADF */
		REC(dup3(keep, keep, 0));            /* EINVAL */
		REC(dup3(keep, 12, 12345));          /* EINVAL */
		REC(dup2(keep, 1 << 30));            /* EBADF: beyond the limit */
		REC(close(keep));                    /* 0 */
		REC(close(keep));                    /* EBADF now */
		REC(dup(0));                         /* 3 again */
		REC(fcntl(0, F_DUPFD, 20));          /* 20 */
		REC(fcntl(0, F_DUPFD, 20));          /* 21 */
		REC(fcntl(0, F_DUPFD_CLOEXEC, 20));  /* 22 */
		REC(fcntl(22, F_GETFD));             /* 1 */
		REC(fcntl(22, F_SETFD, 0));          /* 0 */
		REC(fcntl(22, F_GETFD));             /* 0 */
		REC(fcntl(ce, F_GETFD));             /* 1 */
		REC(fcntl(ce, F_SETFD, 0));          /* keep it over the exec */
		REC(fcntl(55, F_GETFD));             /* EBADF */
		REC(fcntl(0, F_DUPFD, -1));          /* EINVAL */
		REC(ioctl(21, FIOCLEX));             /* 21 goes at exec */
		REC(close_range(20, 20, 0));         /* 0 */
		REC(close_range(30, 10, 0));         /* EINVAL */
		REC(dup(0));                         /* 5 is taken: 6 */
		REC(close_range(6, 6, 0));
		int fd;
		REC(fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600)); /* 6 */
		REC(open("/nonexistent/dir/file", O_RDONLY));                           /* ENOENT */
		REC(open(dir, O_WRONLY));                                               /* EISDIR */
		REC(openat(AT_FDCWD, "/dev/null", O_RDONLY | O_CLOEXEC));               /* 7 */
		REC(creat(file, 0600));                                                 /* 8 */
		REC(chdir("/nonexistent"));          /* ENOENT */
		REC(chdir("/etc/passwd"));           /* ENOTDIR */
		REC(fchdir(0));                      /* ENOTDIR */
		REC(fchdir(99));                     /* EBADF */
		REC(chdir("/"));                     /* 0 */
		REC(umask(077));                     /* the parent's: 022 */
		REC(umask(022));                     /* 077 */
		struct sigaction old;
		REC(sigaction(SIGUSR2, 0, &old));
		REC(old.sa_handler == noop);         /* 1: inherited */
		REC(sigaction(SIGUSR2, &(struct sigaction){.sa_handler = SIG_IGN}, &old));
		REC(sigaction(SIGUSR2, 0, &old));
		REC(old.sa_handler == SIG_IGN);      /* 1 */
		REC(sigaction(SIGKILL, &(struct sigaction){.sa_handler = SIG_IGN}, 0)); /* EINVAL */
		REC(sigaction(32, 0, &old));         /* EINVAL (glibc's own) */
		REC(sigaction(65, 0, &old));         /* EINVAL */
		sigset_t s, o;
		sigemptyset(&s);
		sigaddset(&s, SIGTERM);
		REC(sigprocmask(SIG_BLOCK, &s, &o));
		REC(sigismember(&o, SIGTERM));       /* 0 */
		REC(pthread_sigmask(SIG_SETMASK, 0, &o));
		REC(sigismember(&o, SIGTERM));       /* 1 */
		REC(sigprocmask(99, &s, 0));         /* EINVAL */
		REC(getppid() == getpgrp() || 1);
		REC(setpgid(0, getpgrp()));          /* 0: the same group */
		REC(getuid() == geteuid());
		REC(write(fd, "appended\n", 9));     /* a real child from here */
		REC(dup(0));                         /* natively now: 9 */
		char *argv[] = {"lzprobe", "fds", 0};
		execv(probe(), argv);
		_exit(127);
	}
	print_status("retvals", wait_status(p));
	print_res("retvals");
	cat_file(file);
	struct sigaction now;
	sigaction(SIGUSR2, 0, &now);
	printf("parent SIGUSR2 still ours %d\n", now.sa_handler == noop);
	printf("parent umask %o\n", umask(022));
	char cwd[4096];
	printf("parent cwd unchanged %d\n", getcwd(cwd, sizeof cwd) && strcmp(cwd, "/") != 0);
	printf("parent 3 closed %d, 4 cloexec %d\n", fcntl(3, F_GETFD) == -1, fcntl(4, F_GETFD) == FD_CLOEXEC);
	return 0;
}

/* ---- random: the property test ---- */

static unsigned long long rng;

static unsigned rnd(unsigned n)
{
	rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
	return (unsigned)((rng >> 33) % n);
}

static int pick_fd(void)
{
	static const int odd[] = {-1, 0, 1, 2, 999, 4096, 1 << 20, 64, 65, 100};
	if (rnd(5) == 0)
		return odd[rnd(sizeof odd / sizeof odd[0])];
	return 3 + (int)rnd(12);
}

/* pick_target never names 0, 1 or 2: the probe reports on stdout. */
static int pick_target(void)
{
	int fd;
	do
		fd = pick_fd();
	while (fd >= 0 && fd <= 2);
	return fd;
}

static void random_ops(int n)
{
	for (int i = 0; i < n; i++) {
		int s = pick_fd(), t = pick_target();
		switch (rnd(14)) {
		case 0:
			REC(close(t));
			break;
		case 1:
			REC(dup(s));
			break;
		case 2:
			REC(dup2(s, t));
			break;
		case 3:
			REC(dup3(s, t, rnd(4) == 0 ? 7 : rnd(2) ? O_CLOEXEC : 0));
			break;
		case 4:
			REC(fcntl(s, F_DUPFD, 3 + (int)rnd(20)));
			break;
		case 5:
			REC(fcntl(s, F_DUPFD_CLOEXEC, 3 + (int)rnd(20)));
			break;
		case 6:
			REC(fcntl(t, F_SETFD, (int)rnd(2)));
			break;
		case 7: {
			unsigned lo = 3 + rnd(14), hi = rnd(4) == 0 ? ~0U : lo - 1 + rnd(8);
			REC(close_range(lo, hi, 0));
			break;
		}
		case 8:
			REC(open("/dev/null", rnd(2) ? O_RDONLY : O_WRONLY | O_CLOEXEC));
			break;
		case 9:
			REC(fcntl(s, F_GETFD));
			break;
		case 10:
			REC(ioctl(t, rnd(2) ? FIOCLEX : FIONCLEX));
			break;
		case 11:
			REC(syscall(SYS_close, t));
			break;
		case 12:
			REC(syscall(SYS_dup2, s, t));
			break;
		case 13:
			REC(syscall(SYS_dup, s));
			break;
		}
	}
}

static int mode_random(const char *dir, unsigned long long seed, int count)
{
	char x[4096], y[4096];
	snprintf(x, sizeof x, "%s/x", dir);
	snprintf(y, sizeof y, "%s/y", dir);
	for (int c = 0; c < count; c++) {
		/* The same table for every sequence: 3 pipe (r), 4 /dev/null,
		 * 5 x, 6 pipe (w), 8 y (close-on-exec). */
		int p[2];
		if (pipe(p) != 0)
			return 1;
		dup2(p[0], 3);
		dup2(p[1], 6);
		if (p[0] != 3 && p[0] != 6)
			close(p[0]);
		if (p[1] != 3 && p[1] != 6)
			close(p[1]);
		int fd = open("/dev/null", O_RDWR);
		dup2(fd, 4);
		close(fd);
		fd = open(x, O_RDWR | O_CREAT, 0600);
		dup2(fd, 5);
		close(fd);
		fd = open(y, O_RDONLY | O_CREAT | O_CLOEXEC, 0600);
		dup3(fd, 8, O_CLOEXEC);
		close(fd);
		closefrom(9);
		rng = seed * 1000003ULL + (unsigned long long)c;
		int n = 1 + (int)rnd(24);
		printf("sequence %d (%d calls)\n", c, n);
		fflush(stdout);
		pid_t pid = vfork();
		if (pid == 0) {
			random_ops(n);
			char *argv[] = {"lzprobe", "fds", 0};
			execv(probe(), argv);
			_exit(127);
		}
		print_status("random", wait_status(pid));
		print_res("op");
		fflush(stdout);
	}
	return 0;
}

/* ---- exec failures ---- */

/* Each vfork in a function of its own: no caller variable lives across it. */
static __attribute__((noinline)) pid_t try_exec(const char *prog, int search, int errfd)
{
	pid_t p = vfork();
	if (p == 0) {
		char *argv[] = {(char *)prog, 0};
		if (search)
			execvp(prog, argv);
		else
			execv(prog, argv);
		int e = errno;
		if (write(errfd, &e, sizeof e) != sizeof e)
			_exit(126);
		_exit(127);
	}
	return p;
}

static int mode_execfail(void)
{
	const char *progs[] = {"/nonexistent/prog", "no-such-program-lazyvfork", "/etc", "/etc/passwd"};
	for (int i = 0; i < 4; i++) {
		int ep[2];
		if (pipe2(ep, O_CLOEXEC) != 0)
			return 1;
		fflush(stdout);
		pid_t p = try_exec(progs[i], i == 1, ep[1]);
		close(ep[1]);
		int e = 0;
		ssize_t n = read(ep[0], &e, sizeof e);
		close(ep[0]);
		printf("%s: read %zd errno %s\n", progs[i], n, n == sizeof e ? strerror(e) : "-");
		print_status("execfail", wait_status(p));
	}
	return 0;
}

/* ---- exit ---- */

static int mode_exit(void)
{
	pid_t p = vfork();
	if (p == 0)
		_exit(7);
	print_status("exit", wait_status(p));
	p = vfork();
	if (p == 0) {
		setpgid(0, 0);
		_exit(5);
	}
	int st;
	pid_t w = waitpid(-p, &st, 0); /* its own process group */
	printf("waitpid(-pid) found it %d\n", w == p);
	print_status("exit-pgrp", st);
	return 0;
}

/* ---- sequence ---- */

static __attribute__((noinline)) pid_t run_exit0(void)
{
	static char *argv[] = {"lzprobe", "exit", "0", 0};
	static char *envp[] = {"A=1", 0};
	pid_t p = vfork();
	if (p == 0) {
		execve(probe(), argv, envp);
		_exit(127);
	}
	return p;
}

static int mode_sequence(int n)
{
	int ok = 0;
	for (int i = 0; i < n; i++) {
		pid_t p = run_exit0();
		int st = wait_status(p);
		ok += p > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
	}
	printf("sequence ok %d of %d\n", ok, n);
	return 0;
}

/* ---- the inexpressible: a real child ---- */

static volatile long shared[4];

static int mode_getpid(void)
{
	pid_t me = getpid();
	pid_t p = vfork();
	if (p == 0) {
		shared[0] = getpid();
		shared[1] = getppid();
		shared[2] = syscall(SYS_gettid);
		_exit(3);
	}
	int st = wait_status(p);
	printf("child saw its own pid %d\n", shared[0] == p);
	printf("child saw us as parent %d\n", shared[1] == me);
	printf("child's tid is its pid %d\n", shared[2] == p);
	print_status("getpid", st);
	return 0;
}

static int mode_write(void)
{
	int q[2];
	if (pipe(q) != 0)
		return 1;
	pid_t p = vfork();
	if (p == 0) {
		close(q[0]);
		dup2(q[1], 1);
		close(q[1]);
		if (write(1, "written by the child\n", 21) != 21)
			_exit(126);
		execl(probe(), "lzprobe", "echo", "then", "exec'd", (char *)0);
		_exit(127);
	}
	close(q[1]);
	char buf[256];
	ssize_t n, got = 0;
	while ((n = read(q[0], buf + got, sizeof buf - 1 - (size_t)got)) > 0)
		got += n;
	buf[got] = 0;
	close(q[0]);
	printf("read:\n%s", buf);
	print_status("write", wait_status(p));
	return 0;
}

static int mode_kill(void)
{
	pid_t p = vfork();
	if (p == 0) {
		kill(getpid(), SIGTERM);
		_exit(1);
	}
	print_status("kill", wait_status(p));
	return 0;
}

static int mode_rawsyscall(void)
{
	pid_t p = vfork();
	if (p == 0) {
		shared[0] = syscall(SYS_getpid);
		long r;
		__asm__ volatile("syscall" : "=a"(r) : "a"((long)SYS_getpid) : "rcx", "r11", "memory");
		shared[1] = r;
		_exit(0);
	}
	int st = wait_status(p);
	printf("syscall() gave the child's pid %d\n", shared[0] == p);
	printf("a bare syscall gave the child's pid %d\n", shared[1] == p);
	print_status("rawsyscall", st);
	return 0;
}

/* ---- signals ---- */

static void handler(int sig) { (void)sig; }

static int mode_sigdisp(void)
{
	struct sigaction sa = {.sa_handler = handler};
	sigaction(SIGUSR1, &sa, 0);
	signal(SIGUSR2, SIG_IGN);
	fflush(stdout);
	pid_t p = vfork();
	if (p == 0) {
		signal(SIGUSR1, SIG_IGN);
		signal(SIGUSR2, SIG_DFL);
		sigaction(SIGTERM, &sa, 0);
		signal(SIGPIPE, SIG_IGN);
		signal(SIGSYS, SIG_IGN);
		execl(probe(), "lzprobe", "all", (char *)0);
		_exit(127);
	}
	print_status("sigdisp", wait_status(p));
	struct sigaction now;
	sigaction(SIGUSR1, 0, &now);
	printf("parent SIGUSR1 handler kept %d\n", now.sa_handler == handler);
	sigaction(SIGUSR2, 0, &now);
	printf("parent SIGUSR2 still ignored %d\n", now.sa_handler == SIG_IGN);
	sigaction(SIGTERM, 0, &now);
	printf("parent SIGTERM default %d\n", now.sa_handler == SIG_DFL);
	sigaction(SIGPIPE, 0, &now);
	printf("parent SIGPIPE default %d\n", now.sa_handler == SIG_DFL);
	sigaction(SIGSYS, 0, &now);
	printf("parent SIGSYS default %d\n", now.sa_handler == SIG_DFL);
	return 0;
}

static volatile int handled, in_child, sent, during = -1;
static pthread_t main_thread;

static void count(int sig)
{
	(void)sig;
	handled++;
}

static void *sender(void *arg)
{
	(void)arg;
	while (!in_child)
		usleep(100);
	pthread_kill(main_thread, SIGUSR1);
	usleep(20000);
	sent = 1;
	return 0;
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts); /* the vDSO: no system call */
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

static int mode_signals(void)
{
	struct sigaction sa = {.sa_handler = count};
	sigaction(SIGUSR1, &sa, 0);
	main_thread = pthread_self();
	pthread_t t;
	pthread_create(&t, 0, sender, 0);
	pid_t p = vfork();
	if (p == 0) {
		in_child = 1;
		long end = now_ms() + 5000;
		while (!sent && now_ms() < end)
			;
		during = handled;
		execl(probe(), "lzprobe", "exit", "0", (char *)0);
		_exit(127);
	}
	int after = handled;
	pthread_join(t, 0);
	printf("sent %d, handled during the child %d, right after the vfork %d\n", sent, during, after);
	print_status("signals", wait_status(p));
	return 0;
}

/* ---- threads ---- */

static int per_thread;
static volatile int bad, total;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static __attribute__((noinline)) pid_t echo_into(int fd, const char *word)
{
	pid_t p = vfork();
	if (p == 0) {
		dup2(fd, 1);
		execl(probe(), "lzprobe", "echo", word, (char *)0);
		_exit(127);
	}
	return p;
}

static void *worker(void *arg)
{
	long id = (long)arg;
	for (int i = 0; i < per_thread; i++) {
		int q[2];
		if (pipe2(q, O_CLOEXEC) != 0)
			break;
		char word[32];
		snprintf(word, sizeof word, "t%ld-%d", id, i);
		pid_t p = echo_into(q[1], word);
		close(q[1]);
		char buf[64];
		ssize_t n, got = 0;
		while ((n = read(q[0], buf + got, sizeof buf - 1 - (size_t)got)) > 0)
			got += n;
		buf[got] = 0;
		close(q[0]);
		int st = wait_status(p);
		size_t wl = strlen(word);
		int ok = p > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 && (size_t)got == wl + 1 &&
			 !strncmp(buf, word, wl);
		pthread_mutex_lock(&mu);
		bad += !ok;
		total++;
		pthread_mutex_unlock(&mu);
	}
	return 0;
}

static int mode_threads(int n, int m)
{
	pthread_t t[64];
	per_thread = m;
	if (n > 64)
		n = 64;
	for (long i = 0; i < n; i++)
		pthread_create(&t[i], 0, worker, (void *)i);
	for (int i = 0; i < n; i++)
		pthread_join(t[i], 0);
	printf("threads total %d bad %d\n", total, bad);
	return 0;
}

/* ---- nested ---- */

static int mode_nested(void)
{
	pid_t p = vfork();
	if (p == 0) {
		pid_t g = vfork();
		if (g == 0) {
			execl(probe(), "lzprobe", "exit", "3", (char *)0);
			_exit(127);
		}
		int st = wait_status(g);
		_exit(g > 0 && WIFEXITED(st) ? 10 + WEXITSTATUS(st) : 99);
	}
	print_status("nested", wait_status(p));
	return 0;
}

/* ---- POSIX locks ---- */

/* lock_held asks another process whether the lock on path is ours. */
static int lock_held(const char *path)
{
	pid_t me = getpid();
	pid_t p = fork();
	if (p == 0) {
		int fd = open(path, O_RDWR);
		struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
		if (fd < 0 || fcntl(fd, F_GETLK, &fl) != 0)
			_exit(2);
		_exit(fl.l_type != F_UNLCK && fl.l_pid == me ? 0 : 1);
	}
	int st = wait_status(p);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static __attribute__((noinline)) pid_t open_locked(const char *path, int how, int lfd)
{
	pid_t p = vfork();
	if (p == 0) {
		if (how == 0) {
			int fd = open(path, O_RDONLY);
			dup2(fd, 0);
			close(fd);
		} else {
			dup2(lfd, 0);
		}
		execl(probe(), "lzprobe", "exit", "0", (char *)0);
		_exit(127);
	}
	return p;
}

static int mode_lock(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof path, "%s/locked", dir);
	int fd = open(path, O_RDWR | O_CREAT, 0600);
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	if (fd < 0 || fcntl(fd, F_SETLK, &fl) != 0)
		return 1;
	printf("held before %d\n", lock_held(path));
	for (int how = 0; how < 2; how++) {
		print_status(how ? "dup2 of ours" : "open", wait_status(open_locked(path, how, fd)));
		printf("held after %d\n", lock_held(path));
	}
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, 0, _IOLBF, 0);
	if (argc < 2)
		return 2;
	const char *m = argv[1];
	if (!strcmp(m, "shell") && argc > 2)
		return mode_shell(argv[2]);
	if (!strcmp(m, "pipe"))
		return mode_pipe();
	if (!strcmp(m, "retvals") && argc > 2)
		return mode_retvals(argv[2]);
	if (!strcmp(m, "random") && argc > 4)
		return mode_random(argv[2], strtoull(argv[3], 0, 10), atoi(argv[4]));
	if (!strcmp(m, "execfail"))
		return mode_execfail();
	if (!strcmp(m, "exit"))
		return mode_exit();
	if (!strcmp(m, "sequence") && argc > 2)
		return mode_sequence(atoi(argv[2]));
	if (!strcmp(m, "getpid"))
		return mode_getpid();
	if (!strcmp(m, "write"))
		return mode_write();
	if (!strcmp(m, "kill"))
		return mode_kill();
	if (!strcmp(m, "rawsyscall"))
		return mode_rawsyscall();
	if (!strcmp(m, "sigdisp"))
		return mode_sigdisp();
	if (!strcmp(m, "signals"))
		return mode_signals();
	if (!strcmp(m, "threads") && argc > 3)
		return mode_threads(atoi(argv[2]), atoi(argv[3]));
	if (!strcmp(m, "nested"))
		return mode_nested();
	if (!strcmp(m, "lock") && argc > 2)
		return mode_lock(argv[2]);
	fprintf(stderr, "vf: unknown mode %s\n", m);
	return 2;
}
