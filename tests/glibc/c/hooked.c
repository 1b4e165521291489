/* hooked: creates processes through every libc entry point a patched glibc
 * routes through forkless, and checks each result. Prints key=value lines
 * (the pids tests/glibc looks for in the trace) and "ok" at the end; exits
 * 1 on the first wrong result. */
#define _GNU_SOURCE
#include <errno.h>
#include <pty.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <wordexp.h>

extern char **environ;

static void fail(const char *what)
{
	fprintf(stderr, "hooked: %s (errno %d)\n", what, errno);
	exit(1);
}

static int wait_status(pid_t p)
{
	int st;
	if (waitpid(p, &st, 0) != p)
		fail("waitpid");
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : "/tmp";
	setvbuf(stdout, NULL, _IONBF, 0);

	/* system */
	int r = system("exit 7");
	if (!WIFEXITED(r) || WEXITSTATUS(r) != 7)
		fail("system");

	/* popen */
	FILE *f = popen("echo popen-out", "r");
	char line[64] = {0};
	if (!f || !fgets(line, sizeof line, f) || strcmp(line, "popen-out\n") != 0)
		fail("popen");
	if (pclose(f) != 0)
		fail("pclose");

	/* wordexp with a command substitution */
	wordexp_t w;
	if (wordexp("$(echo wordexp-out)", &w, 0) != 0 || w.we_wordc != 1 || strcmp(w.we_wordv[0], "wordexp-out") != 0)
		fail("wordexp");
	wordfree(&w);

	/* posix_spawnp */
	pid_t p;
	char *sargv[] = {"sh", "-c", "exit 5", NULL};
	if (posix_spawnp(&p, "sh", NULL, NULL, sargv, environ) != 0 || wait_status(p) != 5)
		fail("posix_spawnp");

	/* fork */
	p = fork();
	if (p < 0)
		fail("fork");
	if (p == 0)
		_exit(3);
	if (wait_status(p) != 3)
		fail("fork status");

	/* daemon, in a child that does nothing else: its fork is the child's
	 * only one. The daemon writes a file and exits. */
	char done[4096];
	snprintf(done, sizeof done, "%s/daemon-done", dir);
	p = fork();
	if (p < 0)
		fail("fork for daemon");
	if (p == 0) {
		if (daemon(1, 1) != 0)
			_exit(2);
		FILE *d = fopen(done, "w");
		if (d)
			fputs("done\n", d), fclose(d);
		_exit(0);
	}
	printf("daemon_caller=%d\n", (int)p);
	if (wait_status(p) != 0)
		fail("daemon caller");
	for (int i = 0; i < 500 && access(done, F_OK) != 0; i++)
		usleep(10000);
	if (access(done, F_OK) != 0)
		fail("the daemon did not run");

	/* forkpty, likewise in a child of its own */
	p = fork();
	if (p < 0)
		fail("fork for forkpty");
	if (p == 0) {
		int m;
		pid_t c = forkpty(&m, NULL, NULL, NULL);
		if (c < 0)
			_exit(2);
		if (c == 0)
			_exit(4);
		_exit(wait_status(c) == 4 ? 0 : 1);
	}
	printf("forkpty_caller=%d\n", (int)p);
	if (wait_status(p) != 0)
		fail("forkpty");

	/* vfork + exec */
	p = vfork();
	if (p < 0)
		fail("vfork");
	if (p == 0) {
		char *targv[] = {"sh", "-c", "exit 6", NULL};
		execve("/bin/sh", targv, environ);
		_exit(127);
	}
	if (wait_status(p) != 6)
		fail("vfork status");

	printf("pid=%d\nok\n", (int)getpid());
	return 0;
}
