/* fork and _Fork under the preload; each mode prints key=value lines.
 *   threads  fork in a process with 4 threads
 *   nested   fork children call fork, popen and system again while
 *            another thread keeps using popen (the library lock)
 *   _Fork    _Fork's child exits; the parent reaps it */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int gate[2];

static void *blocked(void *p)
{
	char c;
	(void)p;
	read(gate[0], &c, 1);
	return 0;
}

static int mode_threads(void)
{
	pthread_t t[3];
	pipe(gate);
	for (int i = 0; i < 3; i++)
		pthread_create(&t[i], 0, blocked, 0);
	usleep(50 * 1000);
	pid_t p = fork();
	if (p == 0)
		_exit(3);
	int st;
	waitpid(p, &st, 0);
	printf("child=%d status=%d\n", p, WEXITSTATUS(st));
	close(gate[1]);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], 0);
	return 0;
}

static volatile int stop;

static void *popen_loop(void *p)
{
	long *n = p;
	while (!stop) {
		FILE *f = popen("true", "r");
		if (f) {
			pclose(f);
			(*n)++;
		}
	}
	return 0;
}

/* in_child exercises the library in a fork child; 0 when all worked. */
static int in_child(void)
{
	alarm(20); /* a deadlock ends as SIGALRM, not as a hang */
	pid_t g = fork();
	if (g == 0)
		_exit(5);
	int st;
	if (g < 0 || waitpid(g, &st, 0) != g || WEXITSTATUS(st) != 5)
		return 1;
	FILE *f = popen("echo x", "r");
	char line[16] = "";
	if (!f || !fgets(line, sizeof line, f) || strcmp(line, "x\n") || pclose(f) != 0)
		return 2;
	if (system("exit 3") != 3 << 8)
		return 3;
	return 0;
}

static int mode_nested(void)
{
	long spins = 0;
	pthread_t t;
	pthread_create(&t, 0, popen_loop, &spins);
	int bad = 0;
	for (int i = 0; i < 20; i++) {
		pid_t p = fork();
		if (p == 0)
			_exit(in_child());
		int st;
		waitpid(p, &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			printf("child %d: %s %d\n", i, WIFEXITED(st) ? "exit" : "signal",
			       WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
			bad++;
		}
	}
	stop = 1;
	pthread_join(t, 0);
	printf("nested-bad=%d popen-loop-ran=%d\n", bad, spins > 0);
	return 0;
}

static int mode__Fork(void)
{
	pid_t p = _Fork();
	if (p == 0)
		_exit(4);
	int st;
	waitpid(p, &st, 0);
	printf("child=%d status=%d\n", p, WEXITSTATUS(st));
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, 0, _IOLBF, 0);
	if (argc < 2)
		return 2;
	if (!strcmp(argv[1], "threads"))
		return mode_threads();
	if (!strcmp(argv[1], "nested"))
		return mode_nested();
	if (!strcmp(argv[1], "_Fork"))
		return mode__Fork();
	return 2;
}
