/* vfork_and_exec: a vfork child's execve passes a dup'd descriptor and
 * the environment (setenv in the parent) to the new program; a failed
 * execve in a vfork child returns to the child, which _exits.
 *
 *   parent: pipe, dup2 of the write end to fd 77, setenv; vfork; child
 *   execve(self, "child", environ); the exec'd child finds fd 77 and the
 *   variable and writes a report into fd 77; parent reads it.
 *   Then vfork + execve of a missing file: the child _exits 127 with the
 *   errno in a shared pipe, the parent sees 127 and ENOENT. */
#define PROG "vfork_and_exec"
#include "common.h"

#define VAR "FORKLESS_GRAMINE_VAR"
#define FD 77

extern char **environ;

static int child_main(void)
{
	const char *v = getenv(VAR);
	CHECK(v && strcmp(v, "vfork-value") == 0, "%s is %s in the exec'd child", VAR, v ? v : "(unset)");
	int flags = fcntl(FD, F_GETFD);
	CHECK(flags >= 0, "fd %d not inherited: %s", FD, strerror(errno));
	char msg[128];
	int n = snprintf(msg, sizeof msg, "child saw fd %d and %s=%s", FD, VAR, v);
	SYS(write(FD, msg, (size_t)n));
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "child") == 0)
		return child_main();

	int p[2];
	SYS(pipe(p));
	SYS(dup2(p[1], FD));
	SYS(close(p[1]));
	SYS(setenv(VAR, "vfork-value", 1));
	char *args[] = {(char *)self_path(), "child", NULL};
	fflush(stdout);
	pid_t pid = vfork();
	if (pid == 0) {
		execve(args[0], args, environ);
		_exit(126);
	}
	CHECK(pid > 0, "vfork: %s", strerror(errno));
	SYS(close(FD));
	char buf[256] = {0};
	ssize_t n, got = 0;
	while ((n = SYS(read(p[0], buf + got, sizeof buf - 1 - got))) > 0)
		got += n;
	wait_exit(pid, 0, "vfork+exec child");
	const char *want = "child saw fd 77 and " VAR "=vfork-value";
	CHECK(strcmp(buf, want) == 0, "read \"%s\", want \"%s\"", buf, want);
	SYS(close(p[0]));

	/* A failed execve returns in the vfork child. */
	int e[2];
	SYS(pipe2(e, O_CLOEXEC));
	char *bad[] = {"/nonexistent/forkless-gramine", NULL};
	pid = vfork();
	if (pid == 0) {
		execve(bad[0], bad, environ);
		int err = errno;
		if (write(e[1], &err, sizeof err) != (ssize_t)sizeof err)
			_exit(125);
		_exit(127);
	}
	CHECK(pid > 0, "vfork: %s", strerror(errno));
	SYS(close(e[1]));
	wait_exit(pid, 127, "vfork child with a failing execve");
	int err = 0;
	CHECK(SYS(read(e[0], &err, sizeof err)) == sizeof err, "no errno from the failing child");
	CHECK(err == ENOENT, "execve of a missing file failed with %s, want ENOENT", strerror(err));
	ok();
	return 0;
}
