/* fork_and_access_file: parent and fork child share one open file
 * description, so they share its offset.
 *
 *   file "0123456789abcdefghij"; parent lseeks to 5 and forks; child
 *   finds offset 5, reads "56789" (offset 10), lseeks by +3 (13), exits;
 *   parent finds offset 13 and reads "defghij". A write by the child at
 *   the shared offset is visible to the parent at the expected place. */
#define PROG "fork_and_access_file"
#include "common.h"

int main(void)
{
	const char *dir = getenv("TMPDIR");
	char path[PATH_MAX];
	snprintf(path, sizeof path, "%s/fork-access-XXXXXX", dir && *dir ? dir : "/tmp");
	int fd = SYS(mkstemp(path));
	SYS(write(fd, "0123456789abcdefghij", 20));
	SYS(lseek(fd, 5, SEEK_SET));

	fflush(stdout);
	pid_t pid = SYS(fork());
	if (pid == 0) {
		off_t off = lseek(fd, 0, SEEK_CUR);
		if (off != 5)
			_exit(10);
		char buf[8] = {0};
		if (read(fd, buf, 5) != 5 || memcmp(buf, "56789", 5) != 0)
			_exit(11);
		if (lseek(fd, 3, SEEK_CUR) != 13)
			_exit(12);
		_exit(0);
	}
	wait_exit(pid, 0, "child (10: offset not shared, 11: wrong data, 12: lseek)");
	off_t off = SYS(lseek(fd, 0, SEEK_CUR));
	CHECK(off == 13, "parent's offset is %lld after the child moved it, want 13", (long long)off);
	char buf[16] = {0};
	ssize_t n = SYS(read(fd, buf, sizeof buf - 1));
	CHECK(n == 7 && strcmp(buf, "defghij") == 0, "parent read \"%s\", want \"defghij\"", buf);

	/* A write by a second child lands at the shared offset. */
	SYS(lseek(fd, 2, SEEK_SET));
	pid = SYS(fork());
	if (pid == 0)
		_exit(write(fd, "XY", 2) == 2 ? 0 : 10);
	wait_exit(pid, 0, "writing child");
	CHECK(SYS(lseek(fd, 0, SEEK_CUR)) == 4, "offset after the child's write is not 4");
	char all[32] = {0};
	SYS(pread(fd, all, 20, 0));
	CHECK(strcmp(all, "01XY456789abcdefghij") == 0, "file is \"%s\" after the child's write", all);
	SYS(unlink(path));
	ok();
	return 0;
}
