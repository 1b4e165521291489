/* popen() and pclose() under the preload; each mode prints key=value lines.
 *   rw       read and write streams and their statuses
 *   modes    the e flag (close-on-exec on our end) and invalid modes
 *   others   streams of earlier popen calls are closed in a new child
 *            (the child lists its descriptors with $SHOW)
 *   order    pclose waits for its own child only
 *   unknown  pclose of a stream popen did not open */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cloexec(FILE *f) { return (fcntl(fileno(f), F_GETFD) & FD_CLOEXEC) != 0; }

static int mode_rw(const char *file)
{
	char line[256] = "";
	FILE *r = popen("echo hello; exit 7", "r");
	if (!r || !fgets(line, sizeof line, r))
		return 1;
	line[strcspn(line, "\n")] = 0;
	printf("read=%s\n", line);
	printf("read-status=%d\n", pclose(r));

	char cmd[512];
	snprintf(cmd, sizeof cmd, "cat > '%s'", file);
	FILE *w = popen(cmd, "w");
	if (!w)
		return 1;
	fputs("written through popen\n", w);
	printf("write-status=%d\n", pclose(w));
	FILE *f = fopen(file, "r");
	if (!f || !fgets(line, sizeof line, f))
		return 1;
	fclose(f);
	line[strcspn(line, "\n")] = 0;
	printf("file=%s\n", line);

	/* The child's end is its stdin/stdout even when 0 or 1 were closed. */
	close(0);
	r = popen("echo via-fd0", "r");
	if (!r || !fgets(line, sizeof line, r))
		return 1;
	line[strcspn(line, "\n")] = 0;
	printf("closed0=%s status=%d\n", line, pclose(r));
	/* Now the pipe's read end is 0 itself: it must still reach cat's
	 * stdin without close-on-exec. */
	w = popen("cat", "w");
	if (!w)
		return 1;
	fputs("w-end-was-fd0\n", w);
	printf("closed0-w status=%d\n", pclose(w));
	return 0;
}

static int mode_modes(void)
{
	FILE *a = popen("true", "r"), *b = popen("true", "re"), *c = popen("cat", "we"), *d = popen("cat", "ew");
	printf("r=%d re=%d we=%d ew=%d\n", cloexec(a), cloexec(b), cloexec(c), cloexec(d));
	printf("close=%d %d %d %d\n", pclose(a), pclose(b), pclose(c), pclose(d));
	const char *bad[] = {"rw", "x", "", "re+", "wr"};
	for (int i = 0; i < 5; i++) {
		errno = 0;
		FILE *f = popen("true", bad[i]);
		printf("mode[%s]=%s errno=%d\n", bad[i], f ? "ok" : "null", errno);
	}
	return 0;
}

static int mode_others(void)
{
	const char *show = getenv("SHOW");
	FILE *a = popen("cat >/dev/null", "w"); /* our end not close-on-exec */
	FILE *b = popen("cat >/dev/null", "we");
	FILE *c = popen("exit 0", "r");
	if (!a || !b || !c)
		return 1;
	printf("a=%d b=%d c=%d\n", fileno(a), fileno(b), fileno(c));
	char cmd[512], line[512];
	snprintf(cmd, sizeof cmd, "exec %s fds", show);
	FILE *l = popen(cmd, "r");
	while (l && fgets(line, sizeof line, l))
		printf("child-fd %s", line);
	int sl = pclose(l), sa = pclose(a), sb = pclose(b), sc = pclose(c);
	printf("status=%d %d %d %d\n", sl, sa, sb, sc);
	return 0;
}

static int mode_order(void)
{
	FILE *slow = popen("sleep 2; exit 1", "r");
	FILE *fast = popen("exit 2", "r");
	pid_t other = fork();
	if (other == 0)
		_exit(9);
	usleep(100 * 1000);
	double t0 = now();
	printf("fast=%d\n", pclose(fast));
	printf("fast-did-not-wait-for-slow=%d\n", now() - t0 < 1.5);
	int st = 0;
	pid_t w = waitpid(other, &st, WNOHANG);
	printf("other-still-ours=%d status=%d\n", w == other, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	printf("slow=%d\n", pclose(slow));
	return 0;
}

static int mode_unknown(void)
{
	/* Through a pointer: gcc rightly warns about pclose(fopen(...)). */
	int (*volatile closer)(FILE *) = pclose;
	FILE *f = fopen("/dev/null", "r");
	errno = 0;
	int r = closer(f);
	printf("unknown=%d errno=%d\n", r, errno);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, 0, _IOLBF, 0);
	if (argc < 2)
		return 2;
	if (!strcmp(argv[1], "rw") && argc > 2)
		return mode_rw(argv[2]);
	if (!strcmp(argv[1], "modes"))
		return mode_modes();
	if (!strcmp(argv[1], "others"))
		return mode_others();
	if (!strcmp(argv[1], "order"))
		return mode_order();
	if (!strcmp(argv[1], "unknown"))
		return mode_unknown();
	return 2;
}
