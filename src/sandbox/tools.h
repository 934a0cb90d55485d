/* The sandbox tools with the shapes of Anthropic's worker toolset: bash, read, write, edit, glob, grep.
 *
 * bash runs one persistent `/bin/bash --noprofile --norc` per session through the backend (inside the
 * sandbox). The file tools run on the host side, each in a short-lived forked child that drops every
 * capability (so it has no more file access than the sandbox's own processes) and resolves every path
 * with openat2(root_fd, path, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS): "..", absolute symlinks and a
 * directory swapped for a symlink stay inside the sandbox's view. FIFOs and devices are refused after an
 * O_PATH open + fstat (no open side effects, no hang); sizes are capped; the child has a deadline.
 *
 * Tool results are MCP CallToolResult objects (content + isError), see tool_call(). */
#ifndef POSTERN_TOOLS_H
#define POSTERN_TOOLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

typedef struct tool_session tool_session;

#define TOOL_BASH_OUTPUT_CAP (100u * 1024u)
#define TOOL_BASH_DEFAULT_TIMEOUT_MS 120000u
#define TOOL_BASH_MAX_TIMEOUT_MS 3600000u
#define TOOL_BASH_MAX_COMMAND (1u << 20)
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

/* Where the tools act. The shell functions start and stop the persistent shell inside the sandbox. */
struct tool_backend {
	int root_fd;			/* O_PATH directory fd of the sandbox root (borrowed) */
	const char *cwd;		/* sandbox path that relative paths start from, e.g. "/workspace" */
	unsigned default_timeout_ms;	/* bash; 0 = TOOL_BASH_DEFAULT_TIMEOUT_MS */
	unsigned file_timeout_ms;	/* file tools; 0 = TOOL_FILE_TIMEOUT_MS */
	/* Starts `/bin/bash --noprofile --norc` (own process group, env PS1= TERM=dumb, cwd = cwd):
	 * *in_fd is its stdin (we write), *out_fd its merged stdout+stderr (O_NONBLOCK, we read); both
	 * stay owned by *proc. */
	int (*shell_spawn)(void *ud, void **proc, int *in_fd, int *out_fd);
	/* SIGKILLs the shell's whole process group. */
	void (*shell_kill)(void *ud, void *proc);
	/* 1 with *wstatus when the shell ended, 0 when still running after timeout_ms, <0 on error. */
	int (*shell_wait)(void *ud, void *proc, int timeout_ms, int *wstatus);
	void (*shell_free)(void *ud, void *proc);
	/* Optional: kill every process of the sandbox (bash "restart"). */
	int (*kill_all)(void *ud);
	/* Optional: an fd that becomes readable when the client cancels the running call (the command's
	 * process group or the file tool's worker is killed, as on a timeout). The caller clears it. */
	const int *cancel_fd;
	/* The host identity of the sandbox's processes: a root worker's file-tool child switches to it
	 * (setgroups(0), setresgid, setresuid) so it has exactly their access and creates files with their
	 * owner. false = keep ours (an unprivileged worker already is that user). Capabilities are dropped
	 * either way. */
	bool set_ids;
	uid_t uid;
	gid_t gid;
	void *ud;
};

tool_session *tool_session_new(const struct tool_backend *b);
/* Kills the shell (if any) and frees. NULL is fine. */
void tool_session_free(tool_session *t);

/* mcps_call_fn-compatible: runs tool `name` with args; 0 with *result, -ENOENT for an unknown tool.
 * Invalid arguments are isError results (so that a model can correct itself). */
int tool_call(void *session, const char *name, json_t *args, json_t **result);

/* The tools/list array with the six tools' JSON schemas (new reference). */
json_t *tool_list_json(void);

/* Single tools, returning the result text (malloc'd, valid UTF-8) and setting *is_error. Exposed for
 * tests and for callers that are not MCP (the worker). */
char *tool_bash(tool_session *t, const char *cmd, size_t cmdlen, bool restart, unsigned timeout_ms, bool *is_error);

#endif
