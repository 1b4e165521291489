/* double_fork: a forked child forks again; each process sees the right
 * parent, and exit statuses travel up the chain.
 *
 *   P forks C; C forks G; G checks getppid() == C, writes "grandchild" to
 *   a pipe and exits 3; C reaps G (exit 3) and exits 5; P reaps C (exit 5)
 *   and reads "grandchild" from the pipe. */
#define PROG "double_fork"
#include "common.h"

int main(void)
{
	int p[2];
	SYS(pipe(p));
	pid_t top = getpid();
	fflush(stdout);
	pid_t c = SYS(fork());
	if (c == 0) {
		SYS(close(p[0]));
		CHECK(getppid() == top, "child's parent is %d, want %d", (int)getppid(), (int)top);
		pid_t me = getpid();
		pid_t g = SYS(fork());
		if (g == 0) {
			CHECK(getppid() == me, "grandchild's parent is %d, want %d", (int)getppid(), (int)me);
			CHECK(getpid() != me && getpid() != top, "grandchild has an old pid");
			SYS(write(p[1], "grandchild", 10));
			_exit(3);
		}
		SYS(close(p[1]));
		wait_exit(g, 3, "grandchild");
		_exit(5);
	}
	SYS(close(p[1]));
	wait_exit(c, 5, "child");
	char buf[32] = {0};
	ssize_t n, got = 0;
	while ((n = SYS(read(p[0], buf + got, sizeof buf - 1 - got))) > 0)
		got += n;
	CHECK(got == 10 && strcmp(buf, "grandchild") == 0, "pipe carried \"%s\", want \"grandchild\"", buf);
	ok();
	return 0;
}
