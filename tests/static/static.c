/*
 * forkless-static: a statically linked program that creates processes in
 * every way, for the libos ptrace platform's tests and benchmarks
 * (libos/ptrace). Each mode checks its own results, prints one line
 * "MODE: ..." and exits 0 on success, 1 on a failure.
 *
 *   forkexec PROG          fork, exec PROG in the child, wait
 *   vforkexec PROG         vfork, exec PROG in the child, wait
 *   vforkexit              vfork, _exit(3) in the child, wait
 *   spawn PROG             posix_spawn PROG, wait
 *   system CMD             system(CMD)
 *   popen CMD              popen(CMD, "r"), print what it wrote
 *   spawnloop N PROG       posix_spawn + wait, N times
 *   vforkloop N PROG       vfork + exec + wait, N times
 *   forkloop N PROG        fork + exec + wait, N times
 *   syscalls N [allow-all] N getppid calls and N 1-byte reads of /dev/zero;
 *                          allow-all: under a seccomp filter allowing everything
 *   exit CODE              exit with CODE
 *   kill SIG               raise SIG with its default action
 *   core SIG               the same with RLIMIT_CORE at 64 MiB (a core file in the working directory)
 *   stopcont               a child stops itself; check WIFSTOPPED, SIGCONT, WIFCONTINUED, exit 7
 *   waitsig                wait for SIGUSR1 (printed) then exit 0
 *   waitfork PROG          print the pid, wait for SIGUSR1, then as forkexec
 *   threadexec PROG ARGS.. a second thread execs PROG ARGS
 *   adoptexec FILE PROG..  print the pid, wait for SIGUSR1, install the seccomp
 *                          filter in FILE, exec PROG ARGS (an adopted process)
 *   ptrace                 PTRACE_TRACEME must fail with EPERM
 *   fds                    print the open descriptors, one per line
 *   keepfd FD PROG ARGS..  make FD (open on /dev/null) inheritable, exec PROG ARGS
 *   dupspawn FD PROG ARGS.. the same, but posix_spawn PROG ARGS and exit with its status
 *   actspawn FD PROG ARGS.. posix_spawn PROG ARGS with file actions, exit
 *                          with its status: FD (close-on-exec in the parent)
 *                          and FD+3 (absent there) get dups of an inheritable
 *                          FD+1, and FD+2 (close-on-exec) has it cleared by
 *                          adddup2(FD+2, FD+2); all four reach PROG natively,
 *                          FD+1 only as a leak
 *   tree N                 start N children that sleep, print their pids, sleep
 *   race KIND N DIR        N forks while a thread runs KIND (close, mmap,
 *                          mprotect, thread, sbrk) in a loop; each child
 *                          writes its descriptors to DIR/PID
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sched.h>
#include <unistd.h>

extern char **environ;

static int fail(const char *mode, const char *what)
{
	printf("%s: FAIL %s (%s)\n", mode, what, strerror(errno));
	return 1;
}

static int waitok(pid_t pid, int want)
{
	int st;
	if (waitpid(pid, &st, 0) != pid)
		return 0;
	return WIFEXITED(st) && WEXITSTATUS(st) == want;
}

/* listfds writes the descriptors of this process (minus the one used to
 * list them, skip1 and skip2) to fd out, one number per line. */
static int listfds(int out, int skip1, int skip2)
{
	char buf[8192];
	size_t n = 0;
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int self = dirfd(d);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		int fd = atoi(e->d_name);
		if (fd == self || fd == skip1 || fd == skip2)
			continue;
		if (n + 16 < sizeof buf)
			n += snprintf(buf + n, sizeof buf - n, "%d\n", fd);
	}
	closedir(d);
	return write(out, buf, n) == (ssize_t)n ? 0 : -1;
}

static volatile int stop_racer;
static pthread_mutex_t brk_lock = PTHREAD_MUTEX_INITIALIZER;

static void *idle(void *arg)
{
	return arg;
}

static void *racer(void *arg)
{
	const char *kind = arg;
	long page = sysconf(_SC_PAGESIZE);
	char *region = NULL; /* mprotect: this thread's own */
	while (!stop_racer) {
		if (!strcmp(kind, "close")) {
			int fds[4];
			for (int i = 0; i < 4; i++)
				fds[i] = open("/dev/null", O_RDONLY);
			for (int i = 0; i < 4; i++)
				close(fds[i]);
		} else if (!strcmp(kind, "mmap")) {
			void *p = mmap(NULL, 16 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (p != MAP_FAILED) {
				memset(p, 1, 16 * page);
				munmap(p, 16 * page);
			}
		} else if (!strcmp(kind, "mprotect")) {
			if (!region)
				region = mmap(NULL, 8 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			mprotect(region, 8 * page, PROT_READ);
			mprotect(region, 8 * page, PROT_READ | PROT_WRITE);
			region[0]++;
		} else if (!strcmp(kind, "thread")) {
			pthread_t t;
			if (pthread_create(&t, NULL, idle, NULL) == 0)
				pthread_join(t, NULL);
		} else if (!strcmp(kind, "sbrk")) {
			/* The break is per process: one racer at a time moves it. */
			pthread_mutex_lock(&brk_lock);
			void *p = sbrk(4 * page);
			if (p != (void *)-1) {
				memset(p, 1, 4 * page);
				sbrk(-4 * page);
			}
			pthread_mutex_unlock(&brk_lock);
		} else {
			return NULL;
		}
	}
	return NULL;
}

static int race(const char *kind, int n, const char *dir)
{
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		if (pthread_create(&t[i], NULL, racer, (void *)kind) != 0)
			return fail("race", "pthread_create");
	int bad = 0;
	for (int i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid < 0) {
			bad++;
			continue;
		}
		if (pid == 0) {
			char path[4096];
			snprintf(path, sizeof path, "%s/%d", dir, (int)getpid());
			/* List first: opening the file adds a descriptor. */
			int p[2];
			if (pipe(p) < 0)
				_exit(2);
			char buf[8192];
			if (listfds(p[1], p[1], p[0]) < 0)
				_exit(3);
			ssize_t got = read(p[0], buf, sizeof buf);
			int out = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (out < 0 || got < 0 || write(out, buf, got) != got)
				_exit(4);
			_exit(0);
		}
		if (!waitok(pid, 0))
			bad++;
	}
	stop_racer = 1;
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	printf("race %s: %s %d forks, %d failures\n", kind, bad ? "FAIL" : "OK", n, bad);
	return bad != 0;
}

static void *execer(void *arg)
{
	char **av = arg;
	execv(av[0], av);
	_exit(127);
}

static void onusr1(int sig)
{
	(void)sig;
}

/* fork_exec starts path in a forked child. */
static pid_t fork_exec(const char *path, char *const av[])
{
	pid_t pid = fork();
	if (pid == 0) {
		execv(path, av);
		_exit(127);
	}
	return pid;
}

/* vfork_exec starts path in a vfork child; a function of its own, so
 * that the caller's variables are not the child's to clobber. */
static __attribute__((noinline)) pid_t vfork_exec(const char *path, char *const av[])
{
	pid_t pid = vfork();
	if (pid == 0) {
		execv(path, av);
		_exit(127);
	}
	return pid;
}

/* spawn_wait posix_spawns argv[0] with fa and returns its exit status
 * (1 for a death by signal). */
static int spawn_wait(const char *mode, char **argv, const posix_spawn_file_actions_t *fa)
{
	pid_t pid;
	int err = posix_spawn(&pid, argv[0], fa, NULL, argv, environ);
	if (err) {
		errno = err;
		return fail(mode, "posix_spawn");
	}
	int st;
	if (waitpid(pid, &st, 0) != pid)
		return fail(mode, "waitpid");
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc < 2) {
		fprintf(stderr, "usage: forkless-static MODE ...\n");
		return 2;
	}
	const char *mode = argv[1];
	if ((!strcmp(mode, "forkexec") || !strcmp(mode, "vforkexec")) && argc == 3) {
		char *av[] = {argv[2], NULL};
		pid_t pid = mode[0] == 'v' ? vfork_exec(argv[2], av) : fork_exec(argv[2], av);
		if (pid < 0)
			return fail(mode, mode[0] == 'v' ? "vfork" : "fork");
		if (!waitok(pid, 0))
			return fail(mode, "status");
		printf("%s: OK\n", mode);
		return 0;
	}
	if (!strcmp(mode, "vforkexit")) {
		pid_t pid = vfork();
		if (pid < 0)
			return fail(mode, "vfork");
		if (pid == 0)
			_exit(3);
		if (!waitok(pid, 3))
			return fail(mode, "status");
		printf("vforkexit: OK\n");
		return 0;
	}
	if (!strcmp(mode, "spawn") && argc == 3) {
		pid_t pid;
		char *av[] = {argv[2], NULL};
		int err = posix_spawn(&pid, argv[2], NULL, NULL, av, environ);
		if (err) {
			printf("spawn: errno %d\n", err);
			return 1;
		}
		if (!waitok(pid, 0))
			return fail(mode, "status");
		printf("spawn: OK\n");
		return 0;
	}
	if (!strcmp(mode, "system") && argc == 3) {
		int st = system(argv[2]);
		printf("system: status %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		return 0;
	}
	if (!strcmp(mode, "popen") && argc == 3) {
		FILE *f = popen(argv[2], "r");
		if (!f)
			return fail(mode, "popen");
		char line[256];
		while (fgets(line, sizeof line, f))
			printf("popen: %s", line);
		int st = pclose(f);
		printf("popen: status %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
		return 0;
	}
	if ((!strcmp(mode, "spawnloop") || !strcmp(mode, "forkloop") || !strcmp(mode, "vforkloop")) && argc == 4) {
		int n = atoi(argv[2]);
		char *av[] = {argv[3], NULL};
		for (int i = 0; i < n; i++) {
			pid_t pid;
			if (mode[0] == 's') {
				if (posix_spawn(&pid, argv[3], NULL, NULL, av, environ) != 0)
					return fail(mode, "posix_spawn");
			} else if (mode[0] == 'v') {
				if ((pid = vfork_exec(argv[3], av)) < 0)
					return fail(mode, "vfork");
			} else if ((pid = fork_exec(argv[3], av)) < 0) {
				return fail(mode, "fork");
			}
			if (!waitok(pid, 0))
				return fail(mode, "status");
		}
		return 0;
	}
	if (!strcmp(mode, "syscalls") && (argc == 3 || (argc == 4 && !strcmp(argv[3], "allow-all")))) {
		int n = atoi(argv[2]);
		if (argc == 4) {
			/* The cost of seccomp itself: a filter that allows everything. */
			struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
			struct sock_fprog prog = {.len = 1, .filter = &allow};
			if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
			    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
				return fail(mode, "seccomp");
		}
		int fd = open("/dev/zero", O_RDONLY);
		char c;
		long sum = 0;
		for (int i = 0; i < n; i++) {
			sum += getppid();
			if (read(fd, &c, 1) != 1)
				return fail(mode, "read");
		}
		return sum == 0;
	}
	if (!strcmp(mode, "exit") && argc == 3)
		return atoi(argv[2]);
	if (!strcmp(mode, "kill") && argc == 3) {
		signal(atoi(argv[2]), SIG_DFL);
		raise(atoi(argv[2]));
		return 1;
	}
	if (!strcmp(mode, "core") && argc == 3) {
		/* Dump core (into the working directory, as core_pattern says). */
		struct rlimit rl = {.rlim_cur = 64 << 20, .rlim_max = 64 << 20};
		getrlimit(RLIMIT_CORE, &rl);
		if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (64 << 20))
			return fail(mode, "hard RLIMIT_CORE");
		rl.rlim_cur = 64 << 20;
		if (setrlimit(RLIMIT_CORE, &rl) < 0)
			return fail(mode, "setrlimit");
		signal(atoi(argv[2]), SIG_DFL);
		raise(atoi(argv[2]));
		return 1;
	}
	if (!strcmp(mode, "stopcont")) {
		pid_t pid = fork();
		if (pid < 0)
			return fail(mode, "fork");
		if (pid == 0) {
			raise(SIGSTOP);
			_exit(7);
		}
		int st;
		if (waitpid(pid, &st, WUNTRACED) != pid || !WIFSTOPPED(st) || WSTOPSIG(st) != SIGSTOP)
			return fail(mode, "WIFSTOPPED");
		kill(pid, SIGCONT);
		if (waitpid(pid, &st, WCONTINUED) != pid || !WIFCONTINUED(st))
			return fail(mode, "WIFCONTINUED");
		if (!waitok(pid, 7))
			return fail(mode, "exit status");
		printf("stopcont: OK\n");
		return 0;
	}
	if (!strcmp(mode, "waitsig")) {
		sigset_t set;
		sigemptyset(&set);
		sigaddset(&set, SIGUSR1);
		signal(SIGUSR1, onusr1);
		sigprocmask(SIG_BLOCK, &set, NULL);
		printf("waitsig: ready\n");
		int sig;
		sigwait(&set, &sig);
		printf("waitsig: got %d\n", sig);
		return 0;
	}
	if (!strcmp(mode, "waitfork") && argc == 3) {
		sigset_t set;
		sigemptyset(&set);
		sigaddset(&set, SIGUSR1);
		sigprocmask(SIG_BLOCK, &set, NULL);
		printf("waitfork: %d ready\n", (int)getpid());
		int sig;
		sigwait(&set, &sig);
		pid_t pid = fork();
		if (pid < 0)
			return fail(mode, "fork");
		if (pid == 0) {
			execl(argv[2], argv[2], (char *)NULL);
			_exit(127);
		}
		if (!waitok(pid, 0))
			return fail(mode, "status");
		printf("waitfork: OK\n");
		return 0;
	}
	if (!strcmp(mode, "threadexec") && argc >= 3) {
		/* A thread other than the leader execs; the leader keeps running. */
		pthread_t t;
		if (pthread_create(&t, NULL, execer, argv + 2) != 0)
			return fail(mode, "pthread_create");
		for (;;)
			sched_yield();
	}
	if (!strcmp(mode, "adoptexec") && argc >= 4) {
		/* What lib/libforkless.so does once the host adopted it: install
		 * the filter the host gave (struct sock_filter entries, here in
		 * the file argv[2]) and exec. */
		sigset_t set;
		sigemptyset(&set);
		sigaddset(&set, SIGUSR1);
		sigprocmask(SIG_BLOCK, &set, NULL);
		printf("adoptexec: %d ready\n", (int)getpid());
		int sig;
		sigwait(&set, &sig);
		sigprocmask(SIG_UNBLOCK, &set, NULL);
		static struct sock_filter insns[4096];
		int fd = open(argv[2], O_RDONLY);
		ssize_t n = fd < 0 ? -1 : read(fd, insns, sizeof insns);
		if (n <= 0 || n % sizeof insns[0])
			return fail(mode, "filter file");
		struct sock_fprog prog = {.len = n / sizeof insns[0], .filter = insns};
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
		    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
			return fail(mode, "seccomp");
		execv(argv[3], argv + 3);
		return fail(mode, "execv");
	}
	if (!strcmp(mode, "ptrace")) {
		errno = 0;
		long r = ptrace(PTRACE_TRACEME, 0, NULL, NULL);
		printf("ptrace: %ld %s\n", r, errno == EPERM ? "EPERM" : strerror(errno));
		return !(r == -1 && errno == EPERM);
	}
	if (!strcmp(mode, "fds"))
		return listfds(1, -1, -1) < 0;
	if (!strcmp(mode, "keepfd") && argc >= 4) {
		int fd = atoi(argv[2]);
		int nul = open("/dev/null", O_RDONLY);
		if (nul < 0 || dup2(nul, fd) < 0)
			return fail(mode, "dup2");
		execv(argv[3], argv + 3);
		return fail(mode, "execv");
	}
	if (!strcmp(mode, "dupspawn") && argc >= 4) {
		int fd = atoi(argv[2]);
		int nul = open("/dev/null", O_RDONLY);
		if (nul < 0 || dup2(nul, fd) < 0)
			return fail(mode, "dup2");
		return spawn_wait(mode, argv + 3, NULL);
	}
	if (!strcmp(mode, "actspawn") && argc >= 4) {
		int fd = atoi(argv[2]);
		int leak = open("/dev/null", O_RDONLY);
		int zero = open("/dev/zero", O_RDONLY | O_CLOEXEC);
		int keep = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (leak < 0 || zero < 0 || keep < 0 || dup2(leak, fd + 1) < 0 || dup3(zero, fd, O_CLOEXEC) < 0 ||
		    dup3(keep, fd + 2, O_CLOEXEC) < 0)
			return fail(mode, "dup");
		close(leak);
		close(zero);
		close(keep);
		posix_spawn_file_actions_t fa;
		if (posix_spawn_file_actions_init(&fa) || posix_spawn_file_actions_adddup2(&fa, fd + 1, fd) ||
		    posix_spawn_file_actions_adddup2(&fa, fd + 1, fd + 3) ||
		    posix_spawn_file_actions_adddup2(&fa, fd + 2, fd + 2))
			return fail(mode, "file actions");
		return spawn_wait(mode, argv + 3, &fa);
	}
	if (!strcmp(mode, "tree") && argc == 3) {
		int n = atoi(argv[2]);
		for (int i = 0; i < n; i++) {
			pid_t pid = fork();
			if (pid == 0) {
				for (;;)
					pause();
			}
			printf("%d\n", (int)pid);
		}
		printf("%d\n", (int)getpid());
		fflush(stdout);
		for (;;)
			pause();
	}
	if (!strcmp(mode, "race") && argc == 5)
		return race(argv[2], atoi(argv[3]), argv[4]);
	fprintf(stderr, "forkless-static: bad mode %s\n", mode);
	return 2;
}
