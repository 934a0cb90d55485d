/* Doors in a workspace: files the session can write that would change what the host's git or a shell does
 * when a person later runs them there (git's repository layout and config: config, hooks, commondir,
 * worktree config, modules, worktrees, info; shell start-up files).
 *
 * Those that exist when the session starts are bound read-only inside (sbxroot's protect_paths; their
 * parent directories become mount points, so `.git` cannot be renamed away either). Nothing is created
 * for the others (no litter: `git init` works in a fresh workspace). A door the session made is moved
 * aside when the session ends: `<name>.postern-quarantine-<n>`, nothing deleted, a warning logged. A
 * `.git` the workspace did not have is a door as a whole (a repository the session made carries its own
 * config and hooks).
 *
 * Below the top, a bounded sweep at the end finds repositories: a `.git` (any type) or a directory git
 * takes for a bare repository (HEAD with objects and refs, or commondir). One changed since the session
 * started (inode change time, which no process can set back) is moved aside whole; in an older one, each
 * door changed since then is. The sweep never follows a symlink and never looks inside a git directory.
 *
 * The end runs in a door-keeper: a process forked before the session starts, outside the sandbox, holding
 * the workspace and the init's pidfd. It acts when the host closes its pipe (sbx_free) or dies (SIGKILL):
 * it waits for the init (so for every process of the session) to be gone, then moves the doors. */
#ifndef POSTERN_WS_DOORS_H
#define POSTERN_WS_DOORS_H

#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define WS_DOORS_MAX 62
#define WS_DOORS_QDIR ".postern-quarantine" /* at the top: whole repositories from below it */
#define WS_DOORS_SWEEP_MAX_ENTRIES 500000 /* about 0.5 s here; beyond it the sweep says it stopped */
#define WS_DOORS_SWEEP_MAX_DEPTH 64
#define WS_DOORS_KEEPER_MAX_S 120 /* the keeper's whole end (wait for the init, sweep), then it is killed */

/* NULL-terminated, relative to the workspace; a trailing '/' marks a directory. */
extern const char *const ws_doors_default[];

/* Which doors (bit i for doors[i]) and whether .git (bit 63) exist, not following symlinks. */
uint64_t ws_doors_snapshot(int wsfd, const char *const *doors);
/* Moves aside every door that is there now but was not in `before`; returns how many it moved. Logs each,
 * and each it could not move. ws_name is for the log. */
int ws_doors_quarantine(int wsfd, const char *const *doors, uint64_t before, const char *ws_name);
/* The sweep below the top (see above), for what changed since t0 (CLOCK_REALTIME_COARSE read before the
 * session started). Returns how many it moved; logs each, and a warning if a cap stopped it early. */
int ws_doors_sweep(int wsfd, const char *const *doors, const struct timespec *t0, const char *ws_name);

/* The whole end: a quarantine directory the session made moved aside, the sweep, then the top's doors. */
int ws_doors_end(int wsfd, const char *const *doors, uint64_t before, const struct timespec *t0,
		 const char *ws_name);

/* The door-keeper of one session. */
typedef struct {
	pid_t pid;
	int pidfd, pipe_w; /* -1 when none */
} ws_doors_keeper;

struct ws_doors_end {
	int wsfd, init_pidfd;
	const char *const *doors;
	uint64_t before;
	struct timespec t0;
	const char *ws_name;
};

/* Forks the keeper for e (the fds are duplicated; e's strings must stay valid in this process only until
 * it returns). 0 or -errno with err filled. */
int ws_doors_keeper_start(ws_doors_keeper *k, const struct ws_doors_end *e, char *err, size_t errlen);
/* Tells the keeper to do the end now (call it once every process of the session is gone) and waits for it,
 * at most WS_DOORS_KEEPER_MAX_S + 10 s. 0 when it did the end (or never started); -ETIMEDOUT (killed) or
 * -ECHILD (it had died) when the caller must do the end itself. */
int ws_doors_keeper_finish(ws_doors_keeper *k, const char *ws_name);

#endif
