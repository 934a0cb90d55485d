/* The sandbox tools with the shapes of Anthropic's worker toolset: bash, read, write, edit, glob, grep.
 *
 * bash runs one persistent `/bin/bash --noprofile --norc` per session through the backend (inside the
 * sandbox). The file tools run in the tool worker (tool_worker.h), a second process of the session
 * started on first use and kept: it is one of the session's own processes, so a file tool can do
 * exactly what a command could (same mounts, ids, no capabilities, seccomp, Landlock, cgroup), never
 * more. Here each call becomes one request frame; the reply is read within the file timeout and taken
 * as untrusted text (capped, UTF-8 cleaned). A timeout or a cancel kills the worker; the next call
 * starts a new one.
 *
 * Tool results are CallToolResult objects (content + isError), see tool_call(): the JSON shape is the
 * seam, so the tools know no MCP server and any face (MCP, a test) can carry them. */
#ifndef POSTERN_TOOLS_H
#define POSTERN_TOOLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

#include "sandbox/tools/tool_files.h"

typedef struct tool_session tool_session;

#define TOOL_BASH_OUTPUT_CAP (100u * 1024u)
#define TOOL_BASH_DEFAULT_TIMEOUT_MS 120000u
#define TOOL_BASH_MAX_TIMEOUT_MS 3600000u
#define TOOL_BASH_MAX_TIMEOUT_TEXT "3600000" /* the same, for bash's JSON schema */
#define TOOL_BASH_MAX_COMMAND (1u << 20)

/* Where the tools act. The shell functions start and stop the persistent shell inside the sandbox. */
struct tool_backend {
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
	 * process group or the file tool worker is killed, as on a timeout). The caller clears it. */
	const int *cancel_fd;
	/* Starts the tool worker (`postern sandbox tool-worker`) as a process of the sandbox, with
	 * *in_fd its stdin and *out_fd its stdout (O_NONBLOCK), like shell_spawn; the shell functions
	 * above stop, wait for and free it. NULL = no file tools. */
	int (*worker_spawn)(void *ud, void **proc, int *in_fd, int *out_fd);
	void *ud;
};

/* The one table of tools: tools/list, tool_call and the worker's dispatch all read it. */
#define TOOL_F_WORKER 1u /* runs in the tool worker inside the sandbox (a file tool), else on the host side */
struct tool_def {
	const char *name;
	const char *description;
	const char *input_schema; /* JSON text: the tool's inputSchema as tools/list sends it */
	unsigned flags;
	/* The call on the host side: the result text (malloc'd, NULL when out of memory) and *is_error. */
	char *(*call)(tool_session *t, const struct tool_def *d, json_t *args, bool *is_error);
	tfile_fn worker; /* TOOL_F_WORKER: the tool inside the worker (tool_files.h) */
};
extern const struct tool_def tool_table[]; /* ends with a NULL name */
/* The tool called name, or NULL. */
const struct tool_def *tool_find(const char *name);

tool_session *tool_session_new(const struct tool_backend *b);
/* Kills the shell (if any) and frees. NULL is fine. */
void tool_session_free(tool_session *t);

/* A CallToolResult {"content":[{"type":"text","text":text}],"isError":is_error}; text valid UTF-8 (NULL when
 * not, or out of memory). */
json_t *tool_result(const char *text, size_t len, bool is_error);

/* The shape of the MCP server's call callback: runs tool `name` with args; 0 with *result, -ENOENT for an unknown tool.
 * Invalid arguments are isError results (so that a model can correct itself). */
int tool_call(void *session, const char *name, json_t *args, json_t **result);

/* The tools/list array from tool_table: name, description, inputSchema per tool (new reference). */
json_t *tool_list_json(void);

/* Single tools, returning the result text (malloc'd, valid UTF-8) and setting *is_error. Exposed for
 * tests and for callers that are not MCP (the worker). */
char *tool_bash(tool_session *t, const char *cmd, size_t cmdlen, bool restart, unsigned timeout_ms, bool *is_error);

#endif
