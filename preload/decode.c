/* Decoding glibc's private posix_spawn structures.
 *
 * posix_spawn_file_actions_t and posix_spawnattr_t are opaque; their
 * layouts come from glibc's posix/spawn_int.h and spawn.h and are stable
 * from 2.34 to 2.42 on x86-64. Two guards keep a guess from ever
 * happening: the glibc version must be one whose layout is known, and at
 * first use the layout is proven by building real structures with glibc's
 * own functions and decoding them back. Any mismatch, and any unknown
 * action tag later, sends the call to the real glibc function. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <gnu/libc-version.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "forkless.h"

/* glibc's struct __spawn_action (posix/spawn_int.h). */
enum glibc_tag {
	G_CLOSE,
	G_DUP2,
	G_OPEN,
	G_CHDIR,
	G_FCHDIR,
	G_CLOSEFROM, /* 2.34 */
	G_TCSETPGRP, /* 2.35 */
};

struct glibc_action {
	int tag;
	union {
		struct { int fd; } close_action;
		struct { int fd, newfd; } dup2_action;
		struct { int fd; char *path; int oflag; mode_t mode; } open_action;
		struct { char *path; } chdir_action;
		struct { int fd; } fchdir_action;
		struct { int from; } closefrom_action;
		struct { int fd; } setpgrp_action;
	} action;
};

struct glibc_file_actions {
	int allocated;
	int used;
	struct glibc_action *actions;
	int pad[16];
};

struct glibc_attr {
	short flags;
	pid_t pgrp;
	sigset_t sd;
	sigset_t ss;
	struct sched_param sp;
	int policy;
	int pad[16];
};

_Static_assert(sizeof(struct glibc_file_actions) == sizeof(posix_spawn_file_actions_t), "file actions size");
_Static_assert(sizeof(struct glibc_attr) == sizeof(posix_spawnattr_t), "attr size");
_Static_assert(sizeof(struct glibc_action) == 32, "action size");

static uint64_t sigset_bits(const sigset_t *s)
{
	uint64_t bits;
	memcpy(&bits, s, sizeof bits); /* signals 1..64 are the first word */
	return bits;
}

/* The flags glibc 2.34-2.38 accepts; 2.39 adds SETCGROUP, whose
 * attribute field this decoder does not read, so such calls fall back. */
#define KNOWN_FLAGS (FL_RESETIDS | FL_SETPGROUP | FL_SETSIGDEF | FL_SETSIGMASK | \
		     FL_SETSCHEDPARAM | FL_SETSCHEDULER | FL_USEVFORK | FL_SETSID)

static int decode_raw(const void *file_actions, const void *attrp, struct fl_action *out, int max,
		      int *needed, struct fl_attr *attr)
{
	memset(attr, 0, sizeof *attr);
	if (attrp) {
		const struct glibc_attr *a = attrp;
		if (a->flags & ~KNOWN_FLAGS)
			return -1;
		attr->flags = a->flags;
		attr->pgrp = a->pgrp;
		attr->sigdefault = sigset_bits(&a->sd);
		attr->sigmask = sigset_bits(&a->ss);
		attr->policy = a->policy;
		attr->priority = a->sp.sched_priority;
	}
	if (!file_actions)
		return 0;
	const struct glibc_file_actions *fa = file_actions;
	if (fa->used < 0 || fa->used > fa->allocated || (fa->used > 0 && !fa->actions))
		return -1;
	if (fa->used > max) {
		*needed = fa->used;
		return -2;
	}
	for (int i = 0; i < fa->used; i++) {
		const struct glibc_action *g = &fa->actions[i];
		struct fl_action *x = &out[i];
		memset(x, 0, sizeof *x);
		switch (g->tag) {
		case G_CLOSE:
			x->tag = FL_CLOSE, x->fd = g->action.close_action.fd;
			break;
		case G_DUP2:
			x->tag = FL_DUP2, x->fd = g->action.dup2_action.fd;
			x->newfd = g->action.dup2_action.newfd;
			break;
		case G_OPEN:
			x->tag = FL_OPEN, x->fd = g->action.open_action.fd;
			x->path = g->action.open_action.path;
			x->oflag = g->action.open_action.oflag;
			x->mode = g->action.open_action.mode;
			break;
		case G_CHDIR:
			x->tag = FL_CHDIR, x->path = g->action.chdir_action.path;
			break;
		case G_FCHDIR:
			x->tag = FL_FCHDIR, x->fd = g->action.fchdir_action.fd;
			break;
		case G_CLOSEFROM:
			x->tag = FL_CLOSEFROM, x->fd = g->action.closefrom_action.from;
			break;
		case G_TCSETPGRP:
			x->tag = FL_TCSETPGRP, x->fd = g->action.setpgrp_action.fd;
			break;
		default:
			return -1; /* a tag from a newer glibc: never guess */
		}
	}
	return fa->used;
}

/* known_version accepts the glibc releases whose layouts are the above. */
static int known_version(void)
{
	int major = 0, minor = 0;
	if (sscanf(gnu_get_libc_version(), "%d.%d", &major, &minor) != 2)
		return 0;
	return major == 2 && minor >= 34 && minor <= 42;
}

/* prove_layout builds every action kind and attribute with glibc's own
 * functions and checks that decoding gives them back. */
static int prove_layout(void)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	struct fl_action got[8];
	struct fl_attr attr;
	sigset_t sd, ss;
	struct sched_param sp = {.sched_priority = 7};
	int needed, ok = 0;

	if (posix_spawn_file_actions_init(&fa) != 0)
		return 0;
	if (posix_spawnattr_init(&at) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		return 0;
	}
	sigemptyset(&sd), sigaddset(&sd, SIGUSR1), sigaddset(&sd, 40);
	sigemptyset(&ss), sigaddset(&ss, SIGTERM), sigaddset(&ss, 64);
	if (posix_spawn_file_actions_addclose(&fa, 3) ||
	    posix_spawn_file_actions_adddup2(&fa, 4, 5) ||
	    posix_spawn_file_actions_addopen(&fa, 6, "/probe", O_RDWR | O_CREAT, 0640) ||
	    posix_spawn_file_actions_addchdir_np(&fa, "/dir") ||
	    posix_spawn_file_actions_addfchdir_np(&fa, 7) ||
	    posix_spawn_file_actions_addclosefrom_np(&fa, 8) ||
	    posix_spawn_file_actions_addtcsetpgrp_np(&fa, 9) ||
	    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF |
						 POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSCHEDULER) ||
	    posix_spawnattr_setpgroup(&at, 1234) || posix_spawnattr_setsigdefault(&at, &sd) ||
	    posix_spawnattr_setsigmask(&at, &ss) || posix_spawnattr_setschedparam(&at, &sp) ||
	    posix_spawnattr_setschedpolicy(&at, SCHED_RR))
		goto out;
	if (decode_raw(&fa, &at, got, 8, &needed, &attr) != 7)
		goto out;
	ok = got[0].tag == FL_CLOSE && got[0].fd == 3 &&
	     got[1].tag == FL_DUP2 && got[1].fd == 4 && got[1].newfd == 5 &&
	     got[2].tag == FL_OPEN && got[2].fd == 6 && got[2].path && strcmp(got[2].path, "/probe") == 0 &&
	     got[2].oflag == (O_RDWR | O_CREAT) && got[2].mode == 0640 &&
	     got[3].tag == FL_CHDIR && got[3].path && strcmp(got[3].path, "/dir") == 0 &&
	     got[4].tag == FL_FCHDIR && got[4].fd == 7 &&
	     got[5].tag == FL_CLOSEFROM && got[5].fd == 8 &&
	     got[6].tag == FL_TCSETPGRP && got[6].fd == 9 &&
	     attr.flags == (FL_SETPGROUP | FL_SETSIGDEF | FL_SETSIGMASK | FL_SETSCHEDULER) &&
	     attr.pgrp == 1234 && attr.sigdefault == ((1ULL << (SIGUSR1 - 1)) | (1ULL << 39)) &&
	     attr.sigmask == ((1ULL << (SIGTERM - 1)) | (1ULL << 63)) &&
	     attr.priority == 7 && attr.policy == SCHED_RR;
out:
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	return ok;
}

static int layout_ok;
static pthread_once_t layout_once = PTHREAD_ONCE_INIT;
static void check_layout(void) { layout_ok = known_version() && prove_layout(); }

int fl_glibc_ok(void)
{
	pthread_once(&layout_once, check_layout);
	return layout_ok;
}

int fl_decode(const void *file_actions, const void *attrp, struct fl_action *actions, int max,
	      int *needed, struct fl_attr *attr)
{
	if (!fl_glibc_ok())
		return -1;
	return decode_raw(file_actions, attrp, actions, max, needed, attr);
}
