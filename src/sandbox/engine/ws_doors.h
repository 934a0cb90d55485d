/* Doors in a workspace: files the session can write that would change what the host's git or a shell does
 * when a person later runs them there (git's repository layout and config: config, hooks, commondir,
 * worktree config, modules, worktrees, info; shell start-up files).
 *
 * Those that exist when the session starts are bound read-only inside (sbxinit's protect_paths; their
 * parent directories become mount points, so `.git` cannot be renamed away either). Nothing is created
 * for the others (no litter: `git init` works in a fresh workspace). A door the session made is moved
 * aside when the session ends: `<name>.postern-quarantine-<n>`, nothing deleted, a warning logged. A
 * `.git` the workspace did not have is a door as a whole (a repository the session made carries its own
 * config and hooks). */
#ifndef POSTERN_WS_DOORS_H
#define POSTERN_WS_DOORS_H

#include <stdint.h>

#define WS_DOORS_MAX 62

/* NULL-terminated, relative to the workspace; a trailing '/' marks a directory. */
extern const char *const ws_doors_default[];

/* Which doors (bit i for doors[i]) and whether .git (bit 63) exist, not following symlinks. */
uint64_t ws_doors_snapshot(int wsfd, const char *const *doors);
/* Moves aside every door that is there now but was not in `before`; returns how many it moved. Logs each,
 * and each it could not move. ws_name is for the log. */
int ws_doors_quarantine(int wsfd, const char *const *doors, uint64_t before, const char *ws_name);

#endif
