/* One level of a mixed process tree for the libos tests, built twice:
 * dynamically linked (preload platform) and static (ptrace platform).
 *
 *   mixedtree LABEL DENIED [spawn|fork|vfork CHILD-ARGV...]
 *
 * It prints the descriptors it inherited, tries to posix_spawn DENIED (which
 * the tests' policy forbids), opens /dev/null as descriptor 5 without
 * close-on-exec (strict inheritance must keep it from the next level), then
 * starts the next level the way it was told and waits for it. Each line
 * starts with LABEL; the next level's lines come before this level's last. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void say(const char *label, const char *what)
{
	char line[512];
	int n = snprintf(line, sizeof line, "%s %s\n", label, what);
	if (write(1, line, (size_t)n) != n)
		_exit(111);
}

static void list_fds(const char *label)
{
	char buf[256] = "fds=";
	DIR *d = opendir("/proc/self/fd");
	if (!d) {
		perror("opendir");
		exit(112);
	}
	int self = dirfd(d), first = 1;
	for (struct dirent *e; (e = readdir(d));) {
		if (e->d_name[0] == '.' || atoi(e->d_name) == self)
			continue;
		size_t l = strlen(buf);
		if (l + strlen(e->d_name) + 2 > sizeof buf)
			break;
		if (!first)
			buf[l++] = ',';
		strcpy(buf + l, e->d_name);
		first = 0;
	}
	closedir(d);
	say(label, buf);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: mixedtree LABEL DENIED [spawn|fork|vfork CHILD-ARGV...]\n");
		return 2;
	}
	const char *label = argv[1];
	list_fds(label);

	char *dargv[] = {argv[2], NULL};
	pid_t pid;
	int err = posix_spawn(&pid, argv[2], NULL, NULL, dargv, environ);
	char what[64];
	snprintf(what, sizeof what, "deny=%s", err ? strerrorname_np(err) : "none");
	say(label, what);
	if (!err)
		waitpid(pid, NULL, 0);

	int fd = open("/dev/null", O_RDONLY);
	if (fd < 0 || dup2(fd, 5) != 5)
		return 113;
	close(fd);

	if (argc < 5)
		return 0;
	const char *how = argv[3];
	char **cargv = argv + 4;
	if (!strcmp(how, "spawn")) {
		err = posix_spawn(&pid, cargv[0], NULL, NULL, cargv, environ);
		if (err) {
			snprintf(what, sizeof what, "spawn=%s", strerrorname_np(err));
			say(label, what);
			return 1;
		}
	} else if (!strcmp(how, "fork") || !strcmp(how, "vfork")) {
		pid = !strcmp(how, "fork") ? fork() : vfork();
		if (pid == 0) {
			execv(cargv[0], cargv);
			_exit(127);
		}
		if (pid < 0)
			return 114;
	} else {
		fprintf(stderr, "mixedtree: unknown way %s\n", how);
		return 2;
	}
	int status;
	if (waitpid(pid, &status, 0) != pid)
		return 115;
	snprintf(what, sizeof what, "child=%d", WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	say(label, what);
	return 0;
}
