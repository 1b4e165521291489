/*
 * forkless-cbench: the C host of `forkless bench`.
 *
 * Usage: forkless-cbench RSS_MIB
 *
 * Makes RSS_MIB MiB of this process resident (anonymous memory, every page
 * written, no transparent huge pages), then reads commands from stdin, one
 * per line:
 *
 *	MECH TARGET N [ENV=VALUE]
 *
 * MECH is posix_spawn, vfork or fork; TARGET is a path (it may hold
 * spaces: it runs from the first space to the space before N). N times it
 * creates a child that execs TARGET with argv {TARGET} and an environment
 * that is empty, or holds the one entry ENV=VALUE when the line ends with
 * it (a last word holding '=', which N never does; it cannot hold spaces),
 * and reaps the child with waitpid, timing create+reap with
 * CLOCK_MONOTONIC. It then
 * prints one line of N nanosecond counts separated by spaces, or one line
 * "error MESSAGE" if a command is malformed, a creation fails or a child
 * does not exit 0 (a failed exec exits 127). EOF on stdin exits 0.
 *
 * `forkless bench` runs this host with LD_PRELOAD=lib/libforkless.so for its
 * forkless-c engine: posix_spawn then goes through the library.
 *
 * Build: gcc -O2 -Wall -Wextra -Werror -o bin/forkless-cbench tests/cbench/cbench.c
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum mech { MECH_SPAWN, MECH_VFORK, MECH_FORK };

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Makes mib MiB resident: one write to every page. */
static int make_resident(long mib)
{
	size_t size = (size_t)mib << 20;
	long page = sysconf(_SC_PAGESIZE);
	volatile char *p;
	size_t off;

	if (size == 0)
		return 0;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	/* 4 KiB pages, as most of a real heap has: the cost of fork
	 * follows the number of page table entries. */
	madvise((void *)p, size, MADV_NOHUGEPAGE);
	for (off = 0; off < size; off += (size_t)page)
		p[off] = 1;
	return 0;
}

/* vfork in a function of its own, so no caller variable lives across it. */
static __attribute__((noinline)) pid_t vfork_exec(const char *target,
						  char *const argv[],
						  char *const envp[])
{
	pid_t pid = vfork();

	if (pid == 0) {
		execve(target, argv, envp);
		_exit(127);
	}
	return pid;
}

static pid_t fork_exec(const char *target, char *const argv[],
		       char *const envp[])
{
	pid_t pid = fork();

	if (pid == 0) {
		execve(target, argv, envp);
		_exit(127);
	}
	return pid;
}

/*
 * Creates one child with environment envp and reaps it. Returns 0 and the
 * elapsed nanoseconds in *ns, or -1 with a message in msg.
 */
static int run_once(enum mech m, const char *target, char *const envp[],
		    long long *ns, char *msg, size_t msglen)
{
	char *argv[] = { (char *)target, NULL };
	long long t0, t1;
	pid_t pid;
	int status, rc;

	t0 = now_ns();
	switch (m) {
	case MECH_SPAWN:
		rc = posix_spawn(&pid, target, NULL, NULL, argv, envp);
		if (rc != 0) {
			snprintf(msg, msglen, "posix_spawn %s: %s", target,
				 strerror(rc));
			return -1;
		}
		break;
	case MECH_VFORK:
		pid = vfork_exec(target, argv, envp);
		break;
	default:
		pid = fork_exec(target, argv, envp);
		break;
	}
	if (pid < 0) {
		snprintf(msg, msglen, "%s: %s",
			 m == MECH_VFORK ? "vfork" : "fork", strerror(errno));
		return -1;
	}
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			snprintf(msg, msglen, "waitpid: %s", strerror(errno));
			return -1;
		}
	}
	t1 = now_ns();
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
		snprintf(msg, msglen, "exec %s failed (child exit 127)",
			 target);
		return -1;
	}
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(msg, msglen, "%s: child status 0x%x", target, status);
		return -1;
	}
	*ns = t1 - t0;
	return 0;
}

/*
 * Parses "MECH TARGET N [ENV=VALUE]" in place; *env is NULL without an
 * environment entry. Returns 0, or -1 with a message.
 */
static int parse(char *line, enum mech *m, char **target, long *n,
		 char **env, char *msg, size_t msglen)
{
	char *first = strchr(line, ' ');
	char *last = strrchr(line, ' ');
	char *end;

	*env = NULL;
	if (last != NULL && strchr(last + 1, '=') != NULL) {
		*env = last + 1;
		*last = '\0';
		last = strrchr(line, ' ');
		if (**env == '=') {
			snprintf(msg, msglen, "environment entry without a name");
			return -1;
		}
	}
	if (first == NULL || last == NULL || first >= last) {
		snprintf(msg, msglen, "want \"MECH TARGET N [ENV=VALUE]\"");
		return -1;
	}
	*first = '\0';
	*last = '\0';
	if (strcmp(line, "posix_spawn") == 0)
		*m = MECH_SPAWN;
	else if (strcmp(line, "vfork") == 0)
		*m = MECH_VFORK;
	else if (strcmp(line, "fork") == 0)
		*m = MECH_FORK;
	else {
		snprintf(msg, msglen, "unknown mechanism %.64s", line);
		return -1;
	}
	*target = first + 1;
	errno = 0;
	*n = strtol(last + 1, &end, 10);
	if (errno != 0 || end == last + 1 || *end != '\0' || *n <= 0 ||
	    *n > 100000000L || **target == '\0') {
		snprintf(msg, msglen, "bad count or target");
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	char msg[512];
	char *end;
	long mib;

	if (argc != 2) {
		fprintf(stderr, "usage: forkless-cbench RSS_MIB\n");
		return 2;
	}
	errno = 0;
	mib = strtol(argv[1], &end, 10);
	if (errno != 0 || *end != '\0' || end == argv[1] || mib < 0) {
		fprintf(stderr, "forkless-cbench: bad RSS_MIB %s\n", argv[1]);
		return 2;
	}
	if (make_resident(mib) < 0) {
		fprintf(stderr, "forkless-cbench: mmap %ld MiB: %s\n", mib,
			strerror(errno));
		return 1;
	}

	while ((len = getline(&line, &cap, stdin)) > 0) {
		enum mech m = MECH_SPAWN;
		char *target = NULL;
		char *envp[2] = { NULL, NULL };
		long long *samples;
		long n = 0, i;
		int failed = 0;

		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
			line[--len] = '\0';
		if (len == 0)
			continue;
		if (parse(line, &m, &target, &n, &envp[0], msg,
			  sizeof msg) < 0) {
			printf("error %s\n", msg);
			fflush(stdout);
			continue;
		}
		samples = malloc((size_t)n * sizeof *samples);
		if (samples == NULL) {
			printf("error out of memory for %ld samples\n", n);
			fflush(stdout);
			continue;
		}
		for (i = 0; i < n; i++) {
			if (run_once(m, target, envp, &samples[i], msg,
				     sizeof msg) < 0) {
				failed = 1;
				break;
			}
		}
		if (failed) {
			printf("error %s\n", msg);
		} else {
			for (i = 0; i < n; i++)
				printf(i ? " %lld" : "%lld", samples[i]);
			putchar('\n');
		}
		fflush(stdout);
		free(samples);
	}
	free(line);
	return 0;
}
