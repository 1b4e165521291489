/* spawnzoo: a multi-threaded program that creates processes in every way
 * glibc offers. `make demo` runs it under `forkless run --summary`.
 *
 * Two worker threads run popen/pclose and system while the main thread
 * uses posix_spawn, posix_spawnp, system, popen, fork+exec, vfork+exec,
 * and makes one spawn and one exec fail on purpose. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static int failures;

static void check(int ok, const char *what)
{
	printf("  %-44s %s\n", what, ok ? "ok" : "FAILED");
	if (!ok)
		failures++;
}

static int reap(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void *worker(void *arg)
{
	long id = (long)arg;
	for (int i = 0; i < 3; i++) {
		char cmd[64], line[64] = "";
		snprintf(cmd, sizeof cmd, "echo worker-%ld-%d", id, i);
		FILE *f = popen(cmd, "r");
		if (!f || !fgets(line, sizeof line, f) || pclose(f) != 0)
			__atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);
		if (system("true") != 0)
			__atomic_add_fetch(&failures, 1, __ATOMIC_RELAXED);
	}
	return 0;
}

int main(void)
{
	pthread_t t[2];
	pid_t pid;
	char *echo[] = {"echo", "  spawned by posix_spawn", 0};
	char *tru[] = {"true", 0};

	setvbuf(stdout, 0, _IOLBF, 0); /* lines in order with the children's */
	printf("spawnzoo: creating processes in every way, from 3 threads\n");
	for (long i = 0; i < 2; i++)
		pthread_create(&t[i], 0, worker, (void *)i);

	check(posix_spawn(&pid, "/bin/echo", 0, 0, echo, environ) == 0 && reap(pid) == 0,
	      "posix_spawn /bin/echo");

	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	check(posix_spawnp(&pid, "true", &fa, 0, tru, environ) == 0 && reap(pid) == 0,
	      "posix_spawnp true, stdout to /dev/null");
	posix_spawn_file_actions_destroy(&fa);

	check(posix_spawnp(&pid, "no-such-program-here", 0, 0, tru, environ) == ENOENT,
	      "posix_spawnp of a missing program: ENOENT");

	check(system("exit 3") == 3 << 8, "system(\"exit 3\")");

	char line[64] = "";
	FILE *f = popen("echo from-popen", "r");
	check(f && fgets(line, sizeof line, f) && strcmp(line, "from-popen\n") == 0 && pclose(f) == 0,
	      "popen/pclose");

	pid = fork();
	if (pid == 0) {
		execl("/bin/true", "true", (char *)0);
		_exit(127);
	}
	check(pid > 0 && reap(pid) == 0, "fork + execl");

	pid = vfork();
	if (pid == 0) {
		execlp("true", "true", (char *)0);
		_exit(127);
	}
	check(pid > 0 && reap(pid) == 0, "vfork + execlp");

	pid = fork();
	if (pid == 0) {
		execl("/no/such/program", "x", (char *)0); /* fails: traced with ENOENT */
		_exit(errno == ENOENT ? 0 : 1);
	}
	check(pid > 0 && reap(pid) == 0, "fork + a failing exec");

	for (int i = 0; i < 2; i++)
		pthread_join(t[i], 0);
	check(failures == 0, "workers: 6 popen and 6 system calls");
	printf("spawnzoo: %s\n", failures ? "FAILED" : "all done");
	return failures != 0;
}
