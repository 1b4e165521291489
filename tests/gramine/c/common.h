/* Helpers shared by the Gramine-style regression programs.
 *
 * Each program defines PROG before including this header. A program
 * prints "PROG: OK" on success and exits 0; on failure it prints
 * "PROG: FAIL: <why>" to stderr and exits 1. Output is deterministic (no
 * pids, no timings) so that a native run and a run under the preload
 * library can be compared byte for byte. */
#ifndef GRAMINE_COMMON_H
#define GRAMINE_COMMON_H

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PROG
#error "define PROG before including common.h"
#endif

__attribute__((format(printf, 1, 2), noreturn)) static void fail(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s[%d]: FAIL: %s\n", PROG, (int)getpid(), buf);
	fflush(stderr);
	_exit(1);
}

/* SYS evaluates a system call and fails the program when it returns < 0. */
#define SYS(call)                                                                    \
	({                                                                           \
		long sys_r_ = (long)(call);                                          \
		if (sys_r_ < 0)                                                      \
			fail("%s:%d: %s: %s", __FILE__, __LINE__, #call, strerror(errno)); \
		sys_r_;                                                              \
	})

#define CHECK(cond, ...)                       \
	do {                                   \
		if (!(cond))                   \
			fail(__VA_ARGS__);     \
	} while (0)

/* self_path returns the absolute path of this program's executable. */
__attribute__((unused)) static const char *self_path(void)
{
	static char path[PATH_MAX];
	if (!path[0]) {
		ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
		if (n <= 0)
			fail("readlink /proc/self/exe: %s", strerror(errno));
		path[n] = 0;
	}
	return path;
}

/* describe formats a wait status. */
__attribute__((unused)) static const char *describe(int status)
{
	static char buf[64];
	if (WIFEXITED(status))
		snprintf(buf, sizeof buf, "exit %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, sizeof buf, "signal %d", WTERMSIG(status));
	else
		snprintf(buf, sizeof buf, "status 0x%x", status);
	return buf;
}

/* wait_exit waits for pid and fails unless it exited with code want. */
__attribute__((unused)) static void wait_exit(pid_t pid, int want, const char *what)
{
	int status;
	pid_t r;
	do
		r = waitpid(pid, &status, 0);
	while (r < 0 && errno == EINTR);
	if (r != pid)
		fail("waitpid %s: %s", what, strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != want)
		fail("%s ended with %s, want exit %d", what, describe(status), want);
}

/* fd_target reads the /proc/self/fd link of fd into buf. */
__attribute__((unused)) static int fd_target(int fd, char *buf, size_t size)
{
	char link[64];
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(link, buf, size - 1);
	if (n < 0)
		return -1;
	buf[n] = 0;
	return 0;
}

/* count_fds counts this process's open descriptors. */
__attribute__((unused)) static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		fail("opendir /proc/self/fd: %s", strerror(errno));
	int n = 0, self = dirfd(d);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (atoi(e->d_name) != self)
			n++;
	}
	closedir(d);
	return n;
}

__attribute__((unused)) static void ok(void)
{
	printf("%s: OK\n", PROG);
	fflush(stdout);
}

#endif
