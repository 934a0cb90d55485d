/* One `postern sandbox serve --stdio` child of the worker: spawned with the worker's sandbox options, its
 * environment without ANTHROPIC_* variables (keys and tokens never reach a sandbox), one JSON-RPC line per
 * message on stdin, lines from stdout capped at max_line (a longer answer becomes an error result that says
 * so). Ready once it answered initialize (with --prestart: the sandbox exists). One tool call at a time:
 * a timeout or wch_cancel sends notifications/cancelled, answers the call's callback with an error at once,
 * and gives the child WCH_CANCEL_GRACE_MS to answer the cancelled call; a child that does not is killed
 * (its owner sees on_exit and starts another on the same workspace). wch_free: stdin closed, SIGTERM, then
 * SIGKILL after WCH_KILL_GRACE_MS; no callback follows it. */
#ifndef POSTERN_WORKER_WCHILD_H
#define POSTERN_WORKER_WCHILD_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define WCH_CANCEL_GRACE_MS 5000
#define WCH_KILL_GRACE_MS 3000
#define WCH_DEFAULT_MAX_LINE (8u << 20)

typedef struct wch wch;

typedef struct wch_cbs {
	void (*on_ready)(void *ud, wch *c);                   /* initialize answered */
	void (*on_exit)(void *ud, wch *c, const char *why);   /* the child is gone (wch_free it) */
} wch_cbs;

/* A call's outcome: content is the CallToolResult's content array (borrowed), is_error its isError; on a
 * failure of the child itself (timeout, cancel, exit, oversized answer) content is NULL and why says it. */
typedef void (*wch_result_fn)(void *ud, json_t *content, bool is_error, const char *why);

typedef struct wch_opts {
	const char *const *argv; /* the command: postern sandbox serve --stdio ... (NULL-terminated) */
	size_t max_line;         /* 0: WCH_DEFAULT_MAX_LINE */
} wch_opts;

int wch_spawn(uv_loop_t *loop, const wch_opts *o, const wch_cbs *cbs, void *ud, wch **out, char *err,
	      size_t errlen);
/* Hands the child to another owner (a pooled child taken by a session). */
void wch_set_owner(wch *c, const wch_cbs *cbs, void *ud);
bool wch_is_ready(const wch *c);
bool wch_is_busy(const wch *c);
int wch_pid(const wch *c);
/* Starts a tool call (args borrowed). 0, -EBUSY (a call runs), -EPIPE (the child is gone), -ENOMEM. */
int wch_call(wch *c, const char *tool, json_t *args, int64_t timeout_ms, wch_result_fn cb, void *ud);
/* Cancels the running call (if any): its callback fires now with content NULL and why. */
void wch_cancel(wch *c, const char *why);
void wch_free(wch *c);

/* The environment a child gets: environ without ANTHROPIC_* (NULL-terminated, malloc'd array of borrowed
 * strings; free the array only). NULL on ENOMEM. */
char **wch_child_env(char **environ_);

#endif
