/* fork_and_exec: fork, exec this program in the child, collect its exit
 * status in the parent.
 *
 *   parent: fork(); child: execv(self, {self, "child", <parent pid>})
 *   exec'd child: checks argv and that its parent is still the forker,
 *   prints a line, exits 42; parent: waitpid must report exit 42. */
#define PROG "fork_and_exec"
#include "common.h"

static int child_main(int argc, char **argv)
{
	CHECK(argc == 4, "exec'd child got %d arguments, want 4", argc);
	CHECK(strcmp(argv[3], "last-arg") == 0, "argv[3] is %s", argv[3]);
	pid_t parent = (pid_t)atoi(argv[2]);
	CHECK(getppid() == parent, "exec'd child's parent is %d, want %d", (int)getppid(), (int)parent);
	printf("%s: exec'd child running\n", PROG);
	fflush(stdout);
	return 42;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "child") == 0)
		return child_main(argc, argv);

	char pidbuf[32];
	snprintf(pidbuf, sizeof pidbuf, "%d", (int)getpid());
	fflush(stdout);
	pid_t pid = SYS(fork());
	if (pid == 0) {
		char *args[] = {(char *)self_path(), "child", pidbuf, "last-arg", NULL};
		execv(args[0], args);
		fprintf(stderr, "%s: FAIL: execv %s: %s\n", PROG, args[0], strerror(errno));
		_exit(1);
	}
	wait_exit(pid, 42, "fork+exec child");
	ok();
	return 0;
}
