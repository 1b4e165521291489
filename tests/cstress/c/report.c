/* report: lists this process's open descriptors, one "FD TARGET" line
 * each (TARGET as readlink of /proc/self/fd/FD shows it), to stdout or,
 * with an argument, to the file it names (opened after the listing, so it
 * is not listed). Built static so no preload library runs inside it. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char out[1 << 16];

int main(int argc, char **argv)
{
	size_t n = 0;
	DIR *d = opendir("/proc/self/fd");
	if (!d) {
		fprintf(stderr, "report: opendir /proc/self/fd: %s\n", strerror(errno));
		return 2;
	}
	int self = dirfd(d);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		int fd = atoi(e->d_name);
		if (fd == self)
			continue;
		char link[64], target[PATH_MAX];
		snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
		ssize_t k = readlink(link, target, sizeof target - 1);
		if (k < 0)
			continue; /* closed meanwhile: cannot happen, we are alone */
		target[k] = 0;
		int w = snprintf(out + n, sizeof out - n, "%d %s\n", fd, target);
		if (w < 0 || (size_t)w >= sizeof out - n) {
			fprintf(stderr, "report: too many descriptors\n");
			return 2;
		}
		n += (size_t)w;
	}
	closedir(d);
	int ofd = 1;
	if (argc > 1) {
		ofd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (ofd < 0) {
			fprintf(stderr, "report: open %s: %s\n", argv[1], strerror(errno));
			return 2;
		}
	}
	for (size_t off = 0; off < n;) {
		ssize_t w = write(ofd, out + off, n - off);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return 3; /* EPIPE and friends: the reader will notice */
		}
		off += (size_t)w;
	}
	return 0;
}
