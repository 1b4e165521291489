/* sighandler_reset: a SIGCHLD handler installed with SA_RESETHAND runs
 * once for the first child's exit and is then SIG_DFL; a fork child
 * inherits the handler and its flags.
 *
 *   SIGCHLD blocked; handler installed with SA_RESETHAND; first child
 *   checks it inherited handler and flag, exits 0; parent sigsuspends
 *   until the handler ran, finds SIGCHLD at SIG_DFL; a second child's
 *   exit must not run the handler again. */
#define PROG "sighandler_reset"
#include "common.h"

static volatile sig_atomic_t count;
static void on_sigchld(int sig)
{
	(void)sig;
	count++;
}

int main(void)
{
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGCHLD);
	SYS(sigprocmask(SIG_BLOCK, &block, &old));
	struct sigaction sa = {0};
	sa.sa_handler = on_sigchld;
	sa.sa_flags = SA_RESETHAND;
	sigemptyset(&sa.sa_mask);
	SYS(sigaction(SIGCHLD, &sa, NULL));

	fflush(stdout);
	pid_t pid = SYS(fork());
	if (pid == 0) {
		struct sigaction cur;
		SYS(sigaction(SIGCHLD, NULL, &cur));
		if (cur.sa_handler != on_sigchld)
			_exit(10);
		if (!(cur.sa_flags & SA_RESETHAND))
			_exit(11);
		_exit(0);
	}
	sigset_t wait_mask = old;
	sigdelset(&wait_mask, SIGCHLD);
	while (count == 0)
		sigsuspend(&wait_mask);
	wait_exit(pid, 0, "first child (10: handler not inherited, 11: SA_RESETHAND lost)");
	CHECK(count == 1, "handler ran %d times for one child", (int)count);
	struct sigaction cur;
	SYS(sigaction(SIGCHLD, NULL, &cur));
	CHECK(cur.sa_handler == SIG_DFL, "SIGCHLD not reset to SIG_DFL after the handler ran");

	pid = SYS(fork());
	if (pid == 0)
		_exit(0);
	wait_exit(pid, 0, "second child");
	/* The second SIGCHLD is pending while blocked; unblocking delivers it
	 * with the default action (ignore). */
	SYS(sigprocmask(SIG_SETMASK, &old, NULL));
	CHECK(count == 1, "handler ran again after SA_RESETHAND (%d times)", (int)count);
	ok();
	return 0;
}
