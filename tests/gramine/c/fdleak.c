/* fdleak: nested fork+exec under a low RLIMIT_NOFILE, many times, leaks
 * no descriptor: not in the parent, not into the exec'd processes.
 *
 *   top: RLIMIT_NOFILE = 16; per iteration opens a close-on-exec file
 *   ("fdleak-cloexec-*") and a close-on-exec pipe, forks; the child execs
 *   "middle", which opens a close-on-exec file of its own, forks and execs
 *   "leaf". The leaf lists its descriptors: only 0, 1, 2 and at most one
 *   descriptor on the trace file named by FORKLESS_TRACE (the preload
 *   library's own) may be open; it exits with the number it found. The
 *   top checks every iteration reports the same number and that its own
 *   descriptor count is back to its starting value after each iteration.
 *   A leak of one descriptor per iteration exhausts the limit within a
 *   dozen iterations. argv[1] = iterations (default 300). Inheritable
 *   descriptors the top was started with are listed in FDLEAK_AMBIENT
 *   and allowed in the leaf too. */
#define PROG "fdleak"
#include "common.h"
#include <sys/resource.h>

#define LIMIT 16

static const char *trace_file(char *buf, size_t size)
{
	const char *t = getenv("FORKLESS_TRACE");
	if (!t || !*t)
		return NULL;
	if (!realpath(t, buf))
		snprintf(buf, size, "%s", t);
	return buf;
}

static int ambient(int fd)
{
	const char *s = getenv("FDLEAK_AMBIENT");
	char want[16];
	snprintf(want, sizeof want, ",%d,", fd);
	return s && strstr(s, want) != NULL;
}

/* set_ambient lists the inheritable descriptors this process started
 * with, except any on the trace file (the leaf accounts for that). */
static void set_ambient(void)
{
	char list[512] = ",", tbuf[PATH_MAX], tgt[PATH_MAX];
	const char *trace = trace_file(tbuf, sizeof tbuf);
	size_t len = 1;
	for (int fd = 3; fd < 256; fd++) {
		int fl = fcntl(fd, F_GETFD);
		if (fl < 0 || (fl & FD_CLOEXEC))
			continue;
		if (trace && fd_target(fd, tgt, sizeof tgt) == 0 && strcmp(tgt, trace) == 0)
			continue;
		if (len + 16 < sizeof list)
			len += (size_t)snprintf(list + len, sizeof list - len, "%d,", fd);
	}
	SYS(setenv("FDLEAK_AMBIENT", list, 1));
}

static int leaf_main(void)
{
	char tbuf[PATH_MAX];
	const char *trace = trace_file(tbuf, sizeof tbuf);
	int n = 0, ntrace = 0;
	for (int fd = 0; fd < LIMIT * 4; fd++) {
		char tgt[PATH_MAX];
		if (fd_target(fd, tgt, sizeof tgt) < 0)
			continue;
		n++;
		if (fd <= 2 || ambient(fd))
			continue;
		if (trace && strcmp(tgt, trace) == 0 && ntrace++ == 0)
			continue;
		fail("leaf has fd %d -> %s", fd, tgt);
	}
	return n;
}

static int middle_main(void)
{
	char path[PATH_MAX];
	const char *dir = getenv("TMPDIR");
	snprintf(path, sizeof path, "%s/fdleak-cloexec-middle", dir && *dir ? dir : "/tmp");
	int fd = SYS(open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600));
	fflush(stdout);
	pid_t pid = SYS(fork());
	if (pid == 0) {
		char *args[] = {(char *)self_path(), "leaf", NULL};
		execv(args[0], args);
		fail("execv leaf: %s", strerror(errno));
	}
	int status;
	SYS(waitpid(pid, &status, 0));
	SYS(close(fd));
	if (!WIFEXITED(status))
		fail("leaf ended with %s", describe(status));
	return WEXITSTATUS(status);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "leaf") == 0)
		return leaf_main();
	if (argc > 1 && strcmp(argv[1], "middle") == 0)
		return middle_main();

	int iters = argc > 1 ? atoi(argv[1]) : 300;
	CHECK(iters > 0, "bad iteration count %s", argv[1]);
	set_ambient();
	struct rlimit rl = {LIMIT, LIMIT};
	SYS(getrlimit(RLIMIT_NOFILE, &rl));
	rl.rlim_cur = LIMIT;
	SYS(setrlimit(RLIMIT_NOFILE, &rl));

	char path[PATH_MAX];
	const char *dir = getenv("TMPDIR");
	snprintf(path, sizeof path, "%s/fdleak-cloexec-top", dir && *dir ? dir : "/tmp");
	int base = count_fds(), want = -1;
	for (int i = 0; i < iters; i++) {
		int fd = SYS(open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600));
		int p[2];
		SYS(pipe2(p, O_CLOEXEC));
		fflush(stdout);
		pid_t pid = SYS(fork());
		if (pid == 0) {
			char *args[] = {(char *)self_path(), "middle", NULL};
			execv(args[0], args);
			fail("execv middle: %s", strerror(errno));
		}
		int status;
		SYS(waitpid(pid, &status, 0));
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) != 1,
		      "iteration %d: middle ended with %s", i, describe(status));
		int got = WEXITSTATUS(status);
		if (want < 0)
			want = got;
		CHECK(got == want, "iteration %d: leaf saw %d descriptors, the first iteration %d", i, got, want);
		SYS(close(fd));
		SYS(close(p[0]));
		SYS(close(p[1]));
		int now = count_fds();
		CHECK(now == base, "iteration %d: %d descriptors open, %d before the loop", i, now, base);
	}
	ok();
	return 0;
}
