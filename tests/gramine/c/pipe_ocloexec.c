/* pipe_ocloexec: an exec'd child must not hold a pipe end the parent made
 * with O_CLOEXEC, so the parent sees EOF once it closes its own copy.
 *
 *   parent: pipe2(watch, O_CLOEXEC); pipes ready and hold (inheritable);
 *   fork; child execs itself with the ready/hold descriptors and the watch
 *   pipe's inode. The exec'd child checks it has no descriptor on the
 *   watch pipe, writes one byte to ready and blocks reading hold.
 *   parent: after the ready byte (the child has exec'd) closes its watch
 *   write end: poll with a zero timeout must report POLLHUP on the watch
 *   read end, i.e. no process holds the write end any more. Then it
 *   closes hold so the child exits. No timing is involved: the check
 *   happens after the child's exec and before its exit. */
#define PROG "pipe_ocloexec"
#include "common.h"
#include <poll.h>

static int child_main(int argc, char **argv)
{
	CHECK(argc == 5, "exec'd child got %d arguments, want 5", argc);
	int ready = atoi(argv[2]), hold = atoi(argv[3]);
	unsigned long long ino = strtoull(argv[4], NULL, 10);
	for (int fd = 0; fd < 1024; fd++) {
		struct stat st;
		if (fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode) && (unsigned long long)st.st_ino == ino)
			fail("exec'd child holds fd %d on the O_CLOEXEC pipe", fd);
	}
	SYS(write(ready, "r", 1));
	SYS(close(ready));
	char c;
	while (SYS(read(hold, &c, 1)) > 0)
		;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "child") == 0)
		return child_main(argc, argv);

	int watch[2], ready[2], hold[2];
	SYS(pipe2(watch, O_CLOEXEC));
	SYS(pipe(ready));
	SYS(pipe(hold));
	struct stat st;
	SYS(fstat(watch[0], &st));
	char a[16], b[16], c[32];
	snprintf(a, sizeof a, "%d", ready[1]);
	snprintf(b, sizeof b, "%d", hold[0]);
	snprintf(c, sizeof c, "%llu", (unsigned long long)st.st_ino);

	fflush(stdout);
	pid_t pid = SYS(fork());
	if (pid == 0) {
		close(ready[0]);
		close(hold[1]);
		char *args[] = {(char *)self_path(), "child", a, b, c, NULL};
		execv(args[0], args);
		fail("execv %s: %s", args[0], strerror(errno));
	}
	SYS(close(ready[1]));
	SYS(close(hold[0]));
	char r;
	ssize_t n = SYS(read(ready[0], &r, 1));
	CHECK(n == 1, "child ended before reporting (read %zd)", n);

	SYS(close(watch[1]));
	struct pollfd pfd = {.fd = watch[0], .events = POLLIN};
	int k = SYS(poll(&pfd, 1, 0));
	CHECK(k == 1 && (pfd.revents & POLLHUP),
	      "no EOF on the O_CLOEXEC pipe after the child's exec (poll %d, revents 0x%x): a writer survived", k,
	      pfd.revents);
	CHECK(SYS(read(watch[0], &r, 1)) == 0, "read on the O_CLOEXEC pipe did not return EOF");

	SYS(close(hold[1]));
	wait_exit(pid, 0, "exec'd child");
	ok();
	return 0;
}
