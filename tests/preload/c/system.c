/* system() under the preload; each mode prints key=value lines.
 *   status   exit statuses, system(NULL), a missing program, a signal
 *   signals  SIGINT/SIGQUIT ignored in the caller during the call, default
 *            in the shell; the caller's mask in the shell, SIGCHLD blocked
 *            in the caller; dispositions and mask restored afterwards
 *   threads  concurrent calls: dispositions restored only by the last
 *   cancel   a cancelled system() kills and reaps its shell */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
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

static void *handler_of(int sig)
{
	struct sigaction sa;
	sigaction(sig, 0, &sa);
	return (void *)sa.sa_handler;
}

static int mode_status(void)
{
	printf("null=%d\n", system(NULL));
	printf("exit3=%d\n", system("exit 3"));
	int s = system("kill -TERM $$");
	printf("term=%d\n", WIFSIGNALED(s) ? WTERMSIG(s) : -1);
	printf("missing=%d\n", system("exec /nonexistent/prog 2>/dev/null"));
	printf("output=");
	fflush(stdout);
	system("echo shell-says-hi");
	return 0;
}

static int mode_signals(void)
{
	char cmd[512];
	const char *show = getenv("SHOW");
	signal(SIGINT, SIG_DFL);
	signal(SIGQUIT, SIG_DFL);
	signal(SIGTERM, SIG_IGN);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, 0);

	/* The shell signals us: ignored while we wait. */
	printf("int-parent=%d\n", system("kill -INT $PPID; kill -QUIT $PPID; exit 5"));
	/* The shell at default SIGINT dies of it. */
	int s = system("kill -INT $$; exit 0");
	printf("int-child=%d\n", WIFSIGNALED(s) ? WTERMSIG(s) : -1);
	/* What the shell's program inherits. */
	fflush(stdout);
	snprintf(cmd, sizeof cmd, "exec %s sigs", show);
	system(cmd);
	/* The caller during the call: SIGCHLD blocked, INT/QUIT ignored. */
	fflush(stdout);
	/* Until the caller has left the spawn (all signals blocked there):
	 * the shell may run before its parent is scheduled again. */
	system("for i in $(seq 100); do b=$(grep SigBlk /proc/$PPID/status); "
	       "case \"$b\" in *ffffffffff*) sleep 0.02;; *) break;; esac; done; "
	       "echo \"parent-$b\"; grep SigIgn /proc/$PPID/status | sed 's/^/parent-/'");
	printf("int-restored=%d\n", handler_of(SIGINT) == (void *)SIG_DFL);
	printf("quit-restored=%d\n", handler_of(SIGQUIT) == (void *)SIG_DFL);
	sigset_t cur;
	sigprocmask(SIG_BLOCK, 0, &cur);
	printf("mask-restored=%d\n", sigismember(&cur, SIGUSR1) && !sigismember(&cur, SIGCHLD));
	return 0;
}

static volatile sig_atomic_t got_int;
static void on_int(int sig) { (void)sig, got_int++; }

struct job {
	const char *cmd;
	int status;
};

static void *run(void *p)
{
	struct job *j = p;
	j->status = system(j->cmd);
	return 0;
}

static int mode_threads(void)
{
	signal(SIGINT, on_int);
	/* The short call ends first; the long one then signals us. With the
	 * dispositions restored by the first to finish, the handler would run. */
	struct job jobs[2] = {{"sleep 0.2; exit 1", 0}, {"sleep 0.8; kill -INT $PPID; sleep 0.2; exit 2", 0}};
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], 0, run, &jobs[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], 0);
	printf("short=%d long=%d\n", jobs[0].status, jobs[1].status);
	printf("handled-during=%d\n", (int)got_int);
	printf("handler-restored=%d\n", handler_of(SIGINT) == (void *)on_int);
	raise(SIGINT);
	printf("handled-after=%d\n", (int)got_int);

	/* Many at once, each with its own status. */
	enum { N = 16 };
	struct job many[N];
	char cmds[N][32];
	pthread_t mt[N];
	for (int i = 0; i < N; i++) {
		snprintf(cmds[i], sizeof cmds[i], "sleep 0.0%d; exit %d", i % 10, i + 10);
		many[i].cmd = cmds[i];
		pthread_create(&mt[i], 0, run, &many[i]);
	}
	int bad = 0;
	for (int i = 0; i < N; i++) {
		pthread_join(mt[i], 0);
		if (!WIFEXITED(many[i].status) || WEXITSTATUS(many[i].status) != i + 10)
			bad++;
	}
	printf("many-bad=%d\n", bad);
	return 0;
}

static void *run_long(void *p)
{
	(void)p;
	system("exec sleep 5"); /* no grandchild left holding stdout */
	return 0;
}

static int mode_cancel(void)
{
	pthread_t t;
	double t0 = now();
	pthread_create(&t, 0, run_long, 0);
	usleep(300 * 1000);
	pthread_cancel(t);
	void *res;
	pthread_join(t, &res);
	printf("cancelled=%d\n", res == PTHREAD_CANCELED);
	printf("fast=%d\n", now() - t0 < 3);
	errno = 0;
	pid_t w = waitpid(-1, 0, WNOHANG);
	printf("no-child=%d\n", w < 0 && errno == ECHILD);
	printf("int-restored=%d\n", handler_of(SIGINT) == (void *)SIG_DFL);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, 0, _IOLBF, 0);
	signal(SIGINT, SIG_DFL);
	signal(SIGQUIT, SIG_DFL);
	if (argc < 2)
		return 2;
	if (!strcmp(argv[1], "status"))
		return mode_status();
	if (!strcmp(argv[1], "signals"))
		return mode_signals();
	if (!strcmp(argv[1], "threads"))
		return mode_threads();
	if (!strcmp(argv[1], "cancel"))
		return mode_cancel();
	return 2;
}
