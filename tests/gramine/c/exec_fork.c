/* exec_fork: a caught signal's handler is not kept across execve (it
 * would point into the old image), an ignored one is, and so is the
 * signal mask; the new image can then fork and reap a child.
 *
 *   first image: SIGCHLD caught, SIGUSR1 ignored, SIGUSR2 blocked; exec
 *   second image: SIGCHLD is SIG_DFL, SIGUSR1 SIG_IGN, SIGUSR2 blocked;
 *   fork a child exiting 7 and reap it. */
#define PROG "exec_fork"
#include "common.h"

static volatile sig_atomic_t caught;
static void on_sigchld(int sig)
{
	(void)sig;
	caught++;
}

static int second_main(void)
{
	struct sigaction sa;
	SYS(sigaction(SIGCHLD, NULL, &sa));
	CHECK(sa.sa_handler == SIG_DFL, "SIGCHLD handler survived exec (%p)", (void *)sa.sa_handler);
	SYS(sigaction(SIGUSR1, NULL, &sa));
	CHECK(sa.sa_handler == SIG_IGN, "SIGUSR1 is no longer ignored after exec");
	sigset_t cur;
	SYS(sigprocmask(SIG_BLOCK, NULL, &cur));
	CHECK(sigismember(&cur, SIGUSR2) == 1, "SIGUSR2 not blocked after exec");

	fflush(stdout);
	pid_t pid = SYS(fork());
	if (pid == 0)
		_exit(7);
	wait_exit(pid, 7, "forked child of the exec'd image");
	CHECK(caught == 0, "handler of the old image ran");
	ok();
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "second") == 0)
		return second_main();

	struct sigaction sa = {0};
	sa.sa_handler = on_sigchld;
	sigemptyset(&sa.sa_mask);
	SYS(sigaction(SIGCHLD, &sa, NULL));
	sa.sa_handler = SIG_IGN;
	SYS(sigaction(SIGUSR1, &sa, NULL));
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	SYS(sigprocmask(SIG_BLOCK, &set, NULL));

	char *args[] = {(char *)self_path(), "second", NULL};
	fflush(stdout);
	execv(args[0], args);
	fail("execv %s: %s", args[0], strerror(errno));
}
