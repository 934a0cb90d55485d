/* A session's event handling with no I/O (docs/worker.md, "Session events"): which tool calls to run, in
 * which order, and when the session ends. Events come from the live stream (wev_event) or from a history
 * reconcile (wev_history_*); both de-duplicate through the seen and answered sets.
 *
 * - agent.tool_use of a tool the worker owns (bash, read, write, edit, glob, grep): queued when its
 *   evaluated_permission is absent or "allow"; "ask" is held until a user.tool_confirmation: "allow"
 *   queues it, anything else drops it; "deny" and any other value never run (nothing is posted: the server
 *   resolves a denial). A tool the worker does not own, and every agent.custom_tool_use (the worker owns no
 *   custom tools), stays pending with no reply: another client may own it.
 * - user.tool_result / user.custom_tool_result mark their call answered (a queued copy is dropped).
 * - session.status_terminated, session.deleted: the session ends.
 * - session.status_idle whose stop_reason is not requires_action arms the idle countdown (max_idle) while
 *   nothing is held or queued; any other event but a confirmation disarms it.
 * Every set is capped (WEV_MAX_IDS); past the cap the oldest half is forgotten (a replay that old is
 * answered by the server's own dedupe of results). */
#ifndef POSTERN_WORKER_WEVENTS_H
#define POSTERN_WORKER_WEVENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WEV_MAX_IDS 65536
#define WEV_MAX_QUEUE 1024

typedef struct wev wev;

enum wev_res {
	WEV_OK = 0,      /* taken (maybe nothing to do) */
	WEV_END,         /* the session ended: stop it */
	WEV_UNKNOWN,     /* an event type the worker does not know: skipped (log it) */
	WEV_MALFORMED,   /* not an event (no type, a tool_use without id or name): skipped (log why) */
	WEV_NOT_OURS,    /* a tool call the worker does not own: left pending */
	WEV_NOT_RUN,     /* a tool call denied, or with an unknown permission: never run */
	WEV_HELD,        /* an "ask" call waiting for its confirmation */
};

wev *wev_new(int64_t max_idle_ms);
void wev_free(wev *s);

/* One event of the live stream (borrowed). why: a short static reason for the log. */
enum wev_res wev_event(wev *s, json_t *ev, uint64_t now_ms, const char **why);

/* A reconcile: begin, every listed event in order (as wev_event would see them, but a call is decided only
 * at the end, once every result and confirmation of the history is known), end. */
void wev_history_begin(wev *s);
enum wev_res wev_history_event(wev *s, json_t *ev, const char **why);
void wev_history_end(wev *s, uint64_t now_ms);

/* The next call to run (a new reference the caller releases), or NULL. Calls run one at a time. */
json_t *wev_take(wev *s);
/* Its result was posted: never run it again. */
void wev_answered(wev *s, const char *tool_use_id);
/* Calls queued or held. */
size_t wev_outstanding(const wev *s);
/* The idle countdown ran out (never while a call runs: the caller tells with busy). */
bool wev_idle_due(const wev *s, bool busy, uint64_t now_ms);
/* When the idle countdown runs out (0 = not armed). */
uint64_t wev_idle_deadline(const wev *s);

/* The tools the worker runs (the sandbox's tool table): true for bash, read, write, edit, glob, grep. */
bool wev_owns_tool(const char *name);

#endif
