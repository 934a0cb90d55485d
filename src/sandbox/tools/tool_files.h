/* The file tools (read, write, edit, glob, grep) with the shapes of Anthropic's worker toolset.
 *
 * They act in the calling process's own view of the file system with its own rights: they are run by
 * the tool worker (tool_worker.h), a process inside the sandbox with exactly the sandbox's mounts, ids,
 * capabilities (none), seccomp filter, Landlock domain and cgroup. Containment is the kernel's, as for
 * any command of the session: a protected file is a read-only mount point there, so a rename over it
 * fails; no host path is reachable. What is checked here is what makes a good tool: FIFOs and devices
 * are refused after an O_PATH open + fstat (no open side effects, no hang), every size is capped, walks
 * are bounded in entries, depth and time, and grep's regex engine has match, depth and heap limits. */
#ifndef POSTERN_TOOL_FILES_H
#define POSTERN_TOOL_FILES_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#define TOOL_READ_CAP (256u * 1024u)
#define TOOL_READ_SCAN_CAP (64u << 20) /* bytes scanned for a line range of a larger file */
#define TOOL_EDIT_CAP (8u << 20)
#define TOOL_WRITE_CAP (16u << 20)
#define TOOL_GLOB_RESULTS 200u
#define TOOL_WALK_ENTRIES 50000u
#define TOOL_WALK_DEPTH 40
#define TOOL_GREP_CAP (100u * 1024u)
#define TOOL_GREP_LINE 2000u
#define TOOL_GREP_FILE_CAP (16u << 20)
#define TOOL_FILE_TIMEOUT_MS 30000u
#define TFILE_RESULT_CAP ((2u << 20) - 1)
#define TFILE_GREP_PATTERN_MAX 4096u
#define TFILE_GREP_MATCH_LIMIT 1000000u /* PCRE2 match() calls per line */
#define TFILE_GREP_DEPTH_LIMIT 10000u	/* PCRE2 backtracking depth */
#define TFILE_GREP_HEAP_KIB 16384u	/* PCRE2 backtracking memory per line */

struct tfctx;
struct tfile_res;
/* One file tool as the worker runs it: the call's context, its arguments (an object), the result. The
 * tools table (tools.h) names them; tool_files.c has read, write and edit, tool_search.c glob and grep. */
typedef void (*tfile_fn)(const struct tfctx *c, json_t *args, struct tfile_res *r);
void tfile_read(const struct tfctx *c, json_t *args, struct tfile_res *r);
void tfile_write(const struct tfctx *c, json_t *args, struct tfile_res *r);
void tfile_edit(const struct tfctx *c, json_t *args, struct tfile_res *r);
void tsearch_glob(const struct tfctx *c, json_t *args, struct tfile_res *r);
void tsearch_grep(const struct tfctx *c, json_t *args, struct tfile_res *r);

/* Runs file tool fn (called name, for messages) with args; relative paths start at cwd (a sandbox path);
 * budget_ms bounds the walks of glob and grep (0 = TOOL_FILE_TIMEOUT_MS). 0 with *out (malloc'd text,
 * *len bytes, not necessarily valid UTF-8) and *is_error; -ENOMEM. Invalid arguments are error results,
 * so that a model can correct itself. */
int tfile_run(const char *name, tfile_fn fn, json_t *args, const char *cwd, unsigned budget_ms, char **out,
	      size_t *len, bool *is_error);

#endif
