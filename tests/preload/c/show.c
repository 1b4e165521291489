/* show: what a child observes, for the preload tests.
 *   show fds          one line per open descriptor: "fd target"
 *   show env NAME...  "NAME=value" or "NAME unset"
 *   show sigs         the SigBlk, SigIgn and SigCgt lines of /proc/self/status */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d) {
		perror("opendir");
		exit(1);
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		int fd = atoi(e->d_name);
		if (fd == dirfd(d))
			continue;
		char path[64], target[512];
		snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
		ssize_t n = readlink(path, target, sizeof target - 1);
		target[n > 0 ? n : 0] = 0;
		printf("%d %s\n", fd, target);
	}
	closedir(d);
}

static void sigs(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	while (f && fgets(line, sizeof line, f))
		if (!strncmp(line, "SigBlk", 6) || !strncmp(line, "SigIgn", 6) || !strncmp(line, "SigCgt", 6))
			fputs(line, stdout);
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "fds"))
		fds();
	else if (argc >= 2 && !strcmp(argv[1], "sigs"))
		sigs();
	else if (argc >= 2 && !strcmp(argv[1], "env"))
		for (int i = 2; i < argc; i++) {
			const char *v = getenv(argv[i]);
			if (v)
				printf("%s=%s\n", argv[i], v);
			else
				printf("%s unset\n", argv[i]);
		}
	else {
		fprintf(stderr, "usage: show fds|sigs|env NAME...\n");
		return 2;
	}
	return 0;
}
