/* The parts of `postern worker` (worker.c: config keys, daemon, poll loop, items; worker_sess.c: one
 * session; worker_pool.c: the warm pool of sandbox children) share these, with wki_ names. */
#ifndef POSTERN_WORKER_INT_H
#define POSTERN_WORKER_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/admin.h"
#include "core/backoff.h"
#include "core/cfg.h"
#include "core/daemon.h"
#include "core/optmap.h"
#include "core/sse.h"
#include "worker/wchild.h"
#include "worker/wevents.h"
#include "worker/whttp.h"
#include "worker/wproto.h"

#define WK_POLL_BLOCK_MS 999
#define WK_REQ_TIMEOUT_MS 30000
#define WK_STREAM_TIMEOUT_MS (10 * 60 * 1000) /* a stream is reopened (from Last-Event-ID) at least this often */
#define WK_MAX_EVENT (8u << 20)               /* one SSE event / one event JSON */
#define WK_MAX_PAGE (32u << 20)               /* one page of GET .../events */
#define WK_MAX_TOOL_TEXT (4u << 20)           /* text of one tool result posted (more: cut, and said so) */
#define WK_DRAIN_MS 22000                     /* SIGTERM: results posted within this, then stop (5 s) */
#define WK_MAX_BUFFERED 4096                  /* stream events held while the history is read */
#define WK_POOL_REFILL_MS 100                 /* a refill waits this long: a new child's sandbox set-up would
                                                compete with the session just started for the CPU */

typedef struct wk_cfg {
	char *path;
	char *base_url, *environment_id, *key_file, *worker_id, *beta_header, *workspace_root, *metrics_listen;
	char *ca_file, *on_work, *postern_bin;
	char *key; /* the environment key (secret) */
	int64_t max_sessions, pool_size, max_idle_ms, tool_timeout_ms, reclaim_ms;
	optmap sandbox;
	int log_level, log_format;
} wk_cfg;

typedef struct wks wks;
typedef struct wk wk;

struct wk {
	wk_cfg c;
	cfg_doc *doc;
	const char *on_work; /* --on-work CMD (wins over the config's on_work) */
	uv_loop_t *loop;
	whttp *http;
	dmn *d;
	uv_timer_t poll_timer;
	whttp_req *poll_req, *ack_req;
	bo *poll_bo;
	bool draining, fatal, started, closing;
	int open_handles;
	wks *sessions;
	size_t nsessions;
	uint64_t empty_polls, last_idle_log;
	json_t *acking; /* the work item being acknowledged */
	/* pool */
	struct wkp *pool;
	uv_timer_t pool_timer;
	uint64_t pool_fail_at;
	size_t npool, pool_starting;
	adm_server *adm;
	adm_metric *m_active, *m_pool, *m_poll_err, *m_items;
	adm_metric *m_calls[6][3]; /* by tool (wev order) and outcome: ok, error, timeout */
	char **child_argv; /* the sandbox serve command, + --workspace DIR appended per child */
	size_t child_argc;
};

struct wks {
	wk *w;
	char *work_id, *session_id, *token; /* token: the item's sessions token, NULL = the environment key */
	json_t *work;
	wpr_lease lease;
	uv_timer_t hb_timer, tick, kick;
	whttp_req *hb_req, *stream_req, *list_req, *post_req, *stop_req;
	sse_dec dec;
	char last_event_id[SSE_ID_MAX + 1];
	bo *stream_bo, *post_bo;
	uint64_t stream_retry_at, post_retry_at;
	bool stream_open, reconciling, history_done;
	json_t *buffered;   /* stream events held during the reconcile */
	json_t *inbox;      /* stream events parsed in libcurl's callback, handled by kick */
	bool want_history;
	char *cursor;       /* next_page of the reconcile */
	wev *ev;
	wch *child;
	char *workspace;
	json_t *running;    /* the tool_use being run */
	bool call_started;
	json_t *posts;      /* events to post, in order */
	bool ending, released, lost, stopped, done, child_pending, healthcheck;
	char end_why[160];
	uint64_t end_deadline;
	int open_handles;
	wks *next, **pprev;
};

/* worker.c */
uint64_t wki_now(wk *w);
/* URL of base_url + path (already escaped) + "?beta=true" + extra ("&k=v" or ""); malloc'd. */
char *wki_url(wk *w, const char *path, const char *extra);
/* Starts o (method, bearer, body, timeout, caps, callbacks set by the caller) to base_url + path +
 * "?beta=true" + extra with the beta header, the worker id header when worker_id, and up to 3 more lines.
 * 0, or <0 logged with what (no callback then). */
int wki_start(wk *w, whttp_opts *o, const char *path, const char *extra, bool worker_id, const char *const *more,
	      whttp_done_fn done, void *ud, whttp_req **req, const char *what);
int wki_escape(const char *s, char *out, size_t cap); /* URL-escapes s; -ENOBUFS */
void wki_metrics(wk *w);
void wki_session_gone(wk *w, wks *s); /* the session freed itself */
void wki_maybe_poll(wk *w);           /* room for another item: poll again soon */

/* worker_sess.c */
int wki_session_start(wk *w, json_t *work, char *err, size_t errlen);
void wki_session_end(wks *s, const char *why); /* graceful: cancel, post, stop */

/* worker_pool.c */
void wki_pool_fill(wk *w);
/* A ready child for a session whose workspace becomes *workspace (malloc'd). NULL: none ready (the caller
 * spawns one with wki_child_spawn). */
wch *wki_pool_take(wk *w, char **workspace);
int wki_child_spawn(wk *w, const char *workspace, const wch_cbs *cbs, void *ud, wch **out, char *err, size_t errlen);
/* Makes a fresh workspace directory under workspace_root: malloc'd path or NULL with err. */
char *wki_workspace_new(wk *w, char *err, size_t errlen);
void wki_workspace_remove(const char *dir);
void wki_pool_free(wk *w);

#endif
