/* lzprobe: what a vfork child observes after its exec, for the lazy vfork
 * tests. Everything goes to stdout; the test normalizes pipe inodes.
 *   lzprobe fds        one line per descriptor: fd, access mode, append
 *                      flag, target ("pipe:[N]", a path, ...)
 *   lzprobe all        cwd, umask, signal masks and dispositions, process
 *                      group and session leadership, ids, the first line
 *                      of stdin when it is a file, then the descriptors
 *   lzprobe echo W...  the words
 *   lzprobe exit N     exits with N */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d) {
		perror("opendir");
		exit(1);
	}
	int list[4096], n = 0;
	struct dirent *e;
	while ((e = readdir(d)) && n < 4096) {
		if (e->d_name[0] == '.')
			continue;
		int fd = atoi(e->d_name);
		if (fd != dirfd(d))
			list[n++] = fd;
	}
	closedir(d);
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			if (list[j] < list[i]) {
				int t = list[i];
				list[i] = list[j];
				list[j] = t;
			}
	for (int i = 0; i < n; i++) {
		char path[64], target[512];
		snprintf(path, sizeof path, "/proc/self/fd/%d", list[i]);
		ssize_t k = readlink(path, target, sizeof target - 1);
		target[k > 0 ? k : 0] = 0;
		int fl = fcntl(list[i], F_GETFL);
		const char *acc = (fl & O_ACCMODE) == O_RDONLY ? "r" : (fl & O_ACCMODE) == O_WRONLY ? "w" : "rw";
		printf("fd %d %s%s %s\n", list[i], acc, (fl & O_APPEND) ? "+a" : "", target);
	}
}

static void status_lines(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "SigBlk", 6) || !strncmp(line, "SigIgn", 6) || !strncmp(line, "SigCgt", 6) ||
		    !strncmp(line, "Umask", 5))
			fputs(line, stdout);
	if (f)
		fclose(f);
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "fds")) {
		fds();
	} else if (argc >= 2 && !strcmp(argv[1], "all")) {
		char cwd[4096];
		printf("cwd %s\n", getcwd(cwd, sizeof cwd) ? cwd : "?");
		status_lines();
		printf("pgrp-leader %d session-leader %d\n", getpgrp() == getpid(), getsid(0) == getpid());
		printf("uid %d euid %d gid %d egid %d\n", (int)getuid(), (int)geteuid(), (int)getgid(), (int)getegid());
		struct stat sb;
		if (fstat(0, &sb) == 0 && S_ISREG(sb.st_mode)) {
			char line[256];
			if (fgets(line, sizeof line, stdin))
				printf("stdin %s", line);
		}
		fflush(stdout);
		fds();
	} else if (argc >= 2 && !strcmp(argv[1], "echo")) {
		for (int i = 2; i < argc; i++)
			printf("%s%s", argv[i], i + 1 < argc ? " " : "\n");
	} else if (argc >= 3 && !strcmp(argv[1], "exit")) {
		return atoi(argv[2]);
	} else {
		fprintf(stderr, "usage: lzprobe fds|all|echo W...|exit N\n");
		return 2;
	}
	return 0;
}
