/* exec: descriptors without FD_CLOEXEC survive execve with their offset;
 * close-on-exec ones (O_CLOEXEC, or FD_CLOEXEC set afterwards) do not.
 *
 *   first image: writes "inherited-data" to a scratch file, leaves the
 *   offset at 9, opens two close-on-exec descriptors on the same file, and
 *   execs itself with the three descriptor numbers;
 *   second image: reads "-data" from the inherited descriptor, finds the
 *   two others closed, removes the file and prints OK. */
#define PROG "exec"
#include "common.h"

static int second_main(int argc, char **argv)
{
	CHECK(argc == 6, "second image got %d arguments, want 6", argc);
	int fd = atoi(argv[2]), c1 = atoi(argv[3]), c2 = atoi(argv[4]);
	const char *path = argv[5];

	int flags = fcntl(fd, F_GETFD);
	CHECK(flags >= 0, "inherited fd %d is not open after exec: %s", fd, strerror(errno));
	CHECK(!(flags & FD_CLOEXEC), "inherited fd %d has FD_CLOEXEC", fd);
	char tgt[PATH_MAX];
	CHECK(fd_target(fd, tgt, sizeof tgt) == 0 && strcmp(tgt, path) == 0,
	      "inherited fd %d refers to %s, want %s", fd, tgt, path);
	off_t off = lseek(fd, 0, SEEK_CUR);
	CHECK(off == 9, "inherited fd offset is %lld after exec, want 9", (long long)off);
	char buf[32] = {0};
	ssize_t n = SYS(read(fd, buf, sizeof buf - 1));
	CHECK(n == 5 && memcmp(buf, "-data", 5) == 0, "read %zd bytes \"%s\" from inherited fd, want \"-data\"", n, buf);

	CHECK(fcntl(c1, F_GETFD) < 0 && errno == EBADF, "O_CLOEXEC fd %d survived exec", c1);
	CHECK(fcntl(c2, F_GETFD) < 0 && errno == EBADF, "FD_CLOEXEC fd %d survived exec", c2);
	SYS(unlink(path));
	ok();
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "second") == 0)
		return second_main(argc, argv);

	const char *dir = getenv("TMPDIR");
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/exec-inherited-XXXXXX", dir && *dir ? dir : "/tmp");
	int fd = SYS(mkstemp(path));
	SYS(write(fd, "inherited-data", 14));
	SYS(lseek(fd, 9, SEEK_SET));
	int c1 = SYS(open(path, O_RDONLY | O_CLOEXEC));
	int c2 = SYS(open(path, O_RDONLY));
	SYS(fcntl(c2, F_SETFD, FD_CLOEXEC));

	char a[16], b[16], c[16];
	snprintf(a, sizeof a, "%d", fd);
	snprintf(b, sizeof b, "%d", c1);
	snprintf(c, sizeof c, "%d", c2);
	char *args[] = {(char *)self_path(), "second", a, b, c, path, NULL};
	fflush(stdout);
	execv(args[0], args);
	fail("execv %s: %s", args[0], strerror(errno));
}
