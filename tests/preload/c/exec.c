/* The exec family under the preload. Each mode ends in an exec (whose
 * output the test reads) or prints key=value lines.
 *   execvp FILE ARG...   execvp (PATH search, ENOEXEC -> /bin/sh)
 *   execl | execle | execlp | execv | fexecve | execveat | execveat-empty
 *   fexecve-script FILE  fexecve of a #! script through a descriptor
 *   fail                 failed execs leave the program as it was
 *   strict               fd 5 plain, fd 6 plain, fd 7 close-on-exec; one
 *                        failed exec, then exec $SHOW fds
 *   emptyenv             re-exec self with an empty environment ("sticky")
 *   sticky               (the re-exec'd program) show env, then system()
 *   vfork                vfork + exec, the parent's frame intact
 *   closefrom VICTIM     closefrom(3) and reuse of the trace descriptor */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *show(void) { return getenv("SHOW"); }

static int fdflags(int fd) { return fcntl(fd, F_GETFD); }

static int mode_fail(void)
{
	int fd = open("/dev/null", O_RDONLY);
	dup2(fd, 5);
	close(fd);
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	dup3(fd, 6, O_CLOEXEC);
	close(fd);
	char *argv[] = {"x", 0};
	errno = 0;
	int r = execve("/nonexistent/x", argv, environ);
	printf("execve=%d errno=%d\n", r, errno);
	errno = 0;
	r = execvp("no-such-program-forkless", argv);
	printf("execvp=%d errno=%d\n", r, errno);
	errno = 0;
	r = execl("/etc/passwd", "passwd", (char *)0);
	printf("execl=%d errno=%d\n", r, errno);
	printf("flags 5=%d 6=%d\n", fdflags(5), fdflags(6));
	printf("survived=1\n");
	return 0;
}

static int mode_strict(void)
{
	int fd = open("/dev/null", O_RDONLY);
	dup2(fd, 5);
	dup2(fd, 6);
	dup3(fd, 7, O_CLOEXEC);
	close(fd);
	char *argv[] = {"show", "fds", 0};
	errno = 0;
	int r = execve("/nonexistent/x", argv, environ);
	printf("failed=%d errno=%d flags 5=%d 6=%d 7=%d\n", r, errno, fdflags(5), fdflags(6), fdflags(7));
	fflush(stdout);
	execv(show(), argv);
	perror("execv");
	return 1;
}

/* scribble uses a lot of stack below its caller. */
static __attribute__((noinline)) int scribble(int depth)
{
	volatile char pad[512];
	for (unsigned i = 0; i < sizeof pad; i++)
		pad[i] = (char)(0xa5 ^ depth);
	return depth ? scribble(depth - 1) + pad[7] : pad[3];
}

/* spawn_with_vfork: the child scribbles over the stack below this frame,
 * then execs; the parent must find its frame and return path intact. */
static __attribute__((noinline)) pid_t spawn_with_vfork(const char *path, int *intact)
{
	volatile long canary[8];
	for (int i = 0; i < 8; i++)
		canary[i] = 0x5eed0000 + i;
	pid_t pid = vfork();
	if (pid == 0) {
		scribble(16);
		execl(path, path, (char *)0);
		_exit(42);
	}
	int ok = pid > 0;
	for (int i = 0; i < 8; i++)
		ok &= canary[i] == 0x5eed0000 + i;
	*intact = ok;
	return pid;
}

static int mode_vfork(void)
{
	int intact = 0, st = 0;
	pid_t p = spawn_with_vfork("/bin/true", &intact);
	waitpid(p, &st, 0);
	printf("true pid=%d intact=%d status=%d\n", p, intact, WEXITSTATUS(st));
	p = spawn_with_vfork("/nonexistent/prog", &intact);
	waitpid(p, &st, 0);
	printf("missing pid=%d intact=%d status=%d\n", p, intact, WEXITSTATUS(st));
	/* A child that leaves without exec. */
	p = vfork();
	if (p == 0)
		_exit(7);
	waitpid(p, &st, 0);
	printf("exit status=%d\n", WEXITSTATUS(st));
	printf("self=%d\n", getpid());
	return 0;
}

/* trace_fd finds the library's trace descriptor by its target. */
static int trace_fd(void)
{
	const char *trace = getenv("FORKLESS_TRACE");
	int tfd = -1;
	for (int fd = 3; fd < 4096 && trace; fd++) {
		char link[64], target[4096];
		snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
		ssize_t n = readlink(link, target, sizeof target - 1);
		if (n <= 0)
			continue;
		target[n] = 0;
		if (!strcmp(target, trace))
			tfd = fd;
	}
	return tfd;
}

static int mode_closefrom(const char *victim)
{
	const int tfd = trace_fd();
	printf("trace-fd-high=%d\n", tfd >= 1000);
	fflush(stdout);
	closefrom(3);
	int v = open(victim, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (v < 0 || tfd < 0 || dup2(v, tfd) != tfd)
		return 1;
	close(v);
	/* A vfork child first: it must not adopt a descriptor for us. */
	pid_t p = vfork();
	if (p == 0) {
		execl("/bin/true", "true", (char *)0);
		_exit(127);
	}
	waitpid(p, 0, 0);
	printf("system=%d\n", system("exit 0"));
	p = fork();
	if (p == 0)
		_exit(0);
	waitpid(p, 0, 0);
	printf("tfd-still-victim=%d\n", fcntl(tfd, F_GETFD) >= 0);
	fflush(stdout);
	execl("/bin/true", "true", (char *)0);
	return 1;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, 0, _IOLBF, 0);
	if (argc < 2)
		return 2;
	const char *m = argv[1];
	char *echo_argv[] = {"echo", (char *)m, "ok", 0};
	if (!strcmp(m, "execvp") && argc > 2)
		execvp(argv[2], argv + 2);
	else if (!strcmp(m, "execl"))
		execl("/bin/echo", "echo", "execl", "ok", (char *)0);
	else if (!strcmp(m, "execle")) {
		char *env[] = {"A=1", 0};
		execle(show(), "show", "env", "A", "LD_PRELOAD", "FORKLESS_TRACE", (char *)0, env);
	} else if (!strcmp(m, "execlp"))
		execlp("echo", "echo", "execlp", "ok", (char *)0);
	else if (!strcmp(m, "execv"))
		execv("/bin/echo", echo_argv);
	else if (!strcmp(m, "fexecve")) {
		int fd = open("/bin/echo", O_RDONLY | O_CLOEXEC);
		fexecve(fd, echo_argv, environ);
	} else if (!strcmp(m, "fexecve-script") && argc > 2) {
		int fd = open(argv[2], O_RDONLY); /* a script needs it inherited */
		fexecve(fd, echo_argv, environ);
	} else if (!strcmp(m, "execveat")) {
		int dfd = open("/bin", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		execveat(dfd, "echo", echo_argv, environ, 0);
	} else if (!strcmp(m, "execveat-empty")) {
		int fd = open("/bin/echo", O_PATH | O_CLOEXEC);
		execveat(fd, "", echo_argv, environ, AT_EMPTY_PATH);
	} else if (!strcmp(m, "fail"))
		return mode_fail();
	else if (!strcmp(m, "strict"))
		return mode_strict();
	else if (!strcmp(m, "emptyenv")) {
		char *nargv[] = {argv[0], "sticky", 0}, *nenv[] = {0};
		execve("/proc/self/exe", nargv, nenv);
	} else if (!strcmp(m, "sticky")) {
		printf("pid=%d\n", getpid());
		printf("LD_PRELOAD=%s\n", getenv("LD_PRELOAD") ? getenv("LD_PRELOAD") : "(unset)");
		printf("FORKLESS_TRACE=%s\n", getenv("FORKLESS_TRACE") ? getenv("FORKLESS_TRACE") : "(unset)");
		printf("system=%d\n", system("exit 4"));
		return 0;
	} else if (!strcmp(m, "vfork"))
		return mode_vfork();
	else if (!strcmp(m, "closefrom") && argc > 2)
		return mode_closefrom(argv[2]);
	else
		return 2;
	printf("exec failed: errno=%d\n", errno);
	return 1;
}
