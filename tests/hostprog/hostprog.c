/* The program the libos host tests (tests/host) run under lib/libforkless.so: one mode
 * per test (argv[1]); it prints what the test checks. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int spawn_wait(const char *path, char *const argv[])
{
	pid_t pid;
	int rc = posix_spawn(&pid, path, 0, 0, argv, environ);
	if (rc != 0)
		return -rc;
	int st;
	if (waitpid(pid, &st, 0) != pid)
		return -1000;
	return st;
}

/* listfds prints this process's descriptors and what they are. */
static int listfds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return 1;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || atoi(e->d_name) == dirfd(d))
			continue;
		char link[300], target[256];
		snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
		ssize_t n = readlink(link, target, sizeof target - 1);
		target[n > 0 ? n : 0] = 0;
		printf("fd %s %s\n", e->d_name, target);
	}
	closedir(d);
	return 0;
}

static void *spawner(void *arg)
{
	(void)arg;
	char *a[] = {"true", 0};
	for (int i = 0; i < 20; i++)
		if (spawn_wait("/bin/true", a) != 0)
			printf("failed\n");
	return 0;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	char *true_argv[] = {"true", 0};
	if (!strcmp(mode, "threads")) { /* 8 threads connect and spawn at once */
		pthread_t t[8];
		for (int i = 0; i < 8; i++)
			pthread_create(&t[i], 0, spawner, 0);
		for (int i = 0; i < 8; i++)
			pthread_join(t[i], 0);
		return 0;
	}
	if (!strcmp(mode, "listfds"))
		return listfds();
	if (!strcmp(mode, "exit")) /* exit with argv[2] */
		return atoi(argv[2]);
	if (!strcmp(mode, "spawn")) {
		/* A spawn, a fork that exits 3 (reaped with waitpid), one killed
		 * by a signal (reaped with waitid), one reaped by wait4. */
		printf("spawn %d\n", spawn_wait("/bin/true", true_argv));
		pid_t p = fork();
		if (p == 0)
			_exit(3);
		int st;
		waitpid(p, &st, 0);
		printf("fork %d %d\n", p, st);
		p = fork();
		if (p == 0) {
			pause();
			_exit(0);
		}
		kill(p, SIGKILL);
		siginfo_t si;
		waitid(P_PID, p, &si, WEXITED);
		printf("killed %d\n", p);
		p = fork();
		if (p == 0)
			_exit(5);
		wait4(p, &st, 0, 0);
		printf("wait4 %d %d\n", p, st);
		return 0;
	}
	if (!strcmp(mode, "inherit")) {
		/* A child made by each path lists its descriptors: the host's
		 * connection must not be among them. */
		spawn_wait("/bin/true", true_argv); /* connected by now */
		char *a[] = {argv[0], "listfds", 0};
		fflush(stdout);
		spawn_wait(argv[0], a);
		fflush(stdout);
		pid_t p = fork();
		if (p == 0) {
			execv(argv[0], a);
			_exit(127);
		}
		waitpid(p, 0, 0);
		fflush(stdout);
		/* Through a shell (which has its own connection: it forks). */
		char cmd[4200];
		snprintf(cmd, sizeof cmd, "%s listfds | sed 's/^/sh /'", argv[0]);
		system(cmd);
		return 0;
	}
	if (!strcmp(mode, "clobber")) {
		/* The program closes and dups over everything it can; reports
		 * still reach the host. */
		spawn_wait("/bin/true", true_argv);
		int errs = 0;
		for (int fd = 3; fd < 1100; fd++)
			if (close(fd) == 0)
				printf("closed %d\n", fd);
		for (int fd = 3; fd < 1100; fd++)
			if (dup2(1, fd) < 0)
				errs++;
		printf("dup2 errors %d\n", errs);
		char *a[] = {"exit", "exit", "7", 0};
		printf("after dup2 %d\n", spawn_wait(argv[0], a) >> 8);
		for (int fd = 3; fd < 1100; fd++)
			if (dup3(1, fd, O_CLOEXEC) < 0)
				errs++;
		printf("after dup3 %d\n", spawn_wait(argv[0], (char *[]){"exit", "exit", "8", 0}) >> 8);
		if (close_range(3, ~0U, 0) != 0)
			perror("close_range");
		printf("after close_range %d\n", spawn_wait(argv[0], (char *[]){"exit", "exit", "9", 0}) >> 8);
		/* closefrom is close_range inside glibc: not seen by the
		 * library; the connection is reopened. */
		closefrom(3);
		printf("after closefrom %d\n", spawn_wait(argv[0], (char *[]){"exit", "exit", "10", 0}) >> 8);
		return 0;
	}
	if (!strcmp(mode, "forkexec")) {
		/* A fork child reports on its own connection; an exec'd image
		 * connects anew. */
		spawn_wait("/bin/true", true_argv);
		pid_t p = fork();
		if (p == 0) {
			char *a[] = {"exit", "exit", "11", 0};
			int st = spawn_wait(argv[0], a);
			printf("child %d spawned %d\n", getpid(), st >> 8);
			fflush(stdout);
			char *b[] = {argv[0], "spawn1", 0};
			execv(argv[0], b);
			_exit(127);
		}
		int st;
		waitpid(p, &st, 0);
		printf("forked %d %d\n", p, st >> 8);
		return 0;
	}
	if (!strcmp(mode, "spawn1")) {
		char *a[] = {"exit", "exit", "12", 0};
		return spawn_wait(argv[0], a) >> 8;
	}
	if (!strcmp(mode, "deny")) {
		/* argv[2] is denied: every path reports EACCES. */
		char *a[] = {argv[2], 0};
		pid_t pid;
		printf("posix_spawn %d\n", posix_spawn(&pid, argv[2], 0, 0, a, environ));
		printf("posix_spawnp %d\n", posix_spawnp(&pid, "true", 0, 0, a, environ));
		printf("system %d\n", system("true"));
		pid_t p = fork();
		if (p == 0) {
			execv(argv[2], a);
			printf("execv errno %d\n", errno);
			fflush(stdout);
			_exit(0);
		}
		waitpid(p, 0, 0);
		p = vfork();
		if (p == 0) {
			execv(argv[2], a);
			_exit(errno);
		}
		int st;
		waitpid(p, &st, 0);
		printf("vfork exec errno %d\n", WEXITSTATUS(st));
		char *ok[] = {"exit", "exit", "4", 0};
		printf("allowed %d\n", spawn_wait(argv[0], ok) >> 8);
		return 0;
	}
	if (!strcmp(mode, "maxprocs")) {
		/* Children that wait on a pipe, until the limit says no. */
		char go;
		if (read(0, &go, 1) != 1) /* the host knows the root now */
			return 1;
		int pfd[2];
		if (pipe(pfd) != 0)
			return 1;
		int made = 0, again = 0;
		pid_t kids[64];
		for (int i = 0; i < 10; i++) {
			pid_t p = fork();
			if (p == 0) {
				char c;
				close(pfd[1]);
				read(pfd[0], &c, 1);
				_exit(0);
			}
			if (p < 0) {
				if (errno == EAGAIN)
					again++;
				continue;
			}
			kids[made++] = p;
		}
		char *a[] = {"true", 0};
		pid_t pid;
		int rc = posix_spawn(&pid, "/bin/true", 0, 0, a, environ);
		printf("maxprocs %d %d %d\n", made, again, rc);
		/* A vfork that execs (lazy vfork: a spawn) fails at the vfork. */
		pid_t v = vfork();
		if (v == 0) {
			execv("/bin/true", a);
			_exit(127);
		}
		int verr = v < 0 ? errno : 0;
		if (v > 0)
			waitpid(v, 0, 0);
		printf("vfork %d\n", verr);
		close(pfd[1]);
		for (int i = 0; i < made; i++)
			waitpid(kids[i], 0, 0);
		/* Room again once they are gone. */
		printf("after %d\n", spawn_wait("/bin/true", a));
		return 0;
	}
	if (!strcmp(mode, "spawnexec")) { /* spawn argv[2] with argv[3..], then exec it */
		printf("spawned %d\n", spawn_wait(argv[2], argv + 2));
		fflush(stdout);
		execv(argv[2], argv + 2);
		printf("exec errno %d\n", errno);
		return 1;
	}
	if (!strcmp(mode, "vforkexec")) { /* vfork, exec argv[2] in the child */
		pid_t p = vfork();
		if (p == 0) {
			execv(argv[2], argv + 2);
			_exit(127);
		}
		int st = -1;
		waitpid(p, &st, 0);
		printf("vforked %d %d\n", p, st);
		return 0;
	}
	if (!strcmp(mode, "exec")) { /* exec argv[2] with argv[3..] */
		execv(argv[2], argv + 2);
		printf("exec errno %d\n", errno);
		return 1;
	}
	if (!strcmp(mode, "strict")) {
		/* FORKLESS_FDS=strict: an inheritable descriptor stays behind. */
		int fd = open("/dev/null", O_RDONLY);
		dup2(fd, 9);
		char *a[] = {argv[0], "listfds", 0};
		fflush(stdout);
		spawn_wait(argv[0], a);
		return 0;
	}
	fprintf(stderr, "unknown mode %s\n", mode);
	return 2;
}
