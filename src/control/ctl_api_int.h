/* Shared by the API's parts: ctl_api.c (routing, credentials, answers, errors, metrics), ctl_api_env.c
 * (environments), ctl_api_work.c (the work queue and its long poll), ctl_api_sess.c (sessions),
 * ctl_api_events.c (the event log: validation, append, pages, SSE). */
#ifndef POSTERN_CTL_API_INT_H
#define POSTERN_CTL_API_INT_H

#include <stdarg.h>

#include "control/ctl_api.h"

struct cai_poll;
struct cai_stream;

struct capi {
	capi_opts o;
	struct cai_poll *polls;
	struct cai_stream *streams;
	unsigned npolls, nstreams;
	bool draining;
};

/* Who is calling. */
enum cai_cred { CAI_NONE = 0, CAI_API = 1, CAI_ENV = 2, CAI_SESSION = 4 };

typedef struct cai_ctx {
	capi *a;
	hsrv_req *r;
	const char *endpoint; /* "work.poll": the metrics label */
	char caps[HSRV_MAX_CAPS][HSRV_CAP_MAX];
	unsigned ncaps;
	enum cai_cred cred;
	bool stale_token; /* CAI_NONE because the sessions token's work item is stopped */
	bool superseded;  /* the token's item was handed out again (its key revoked): 401, but for the heartbeat
			   * of that item, which answers the 412 of a lost lease (cai_work_heartbeat) */
	char token_work[64]; /* the work item a sessions token (live or not) belongs to */
	char key_id[64];
	char scope[64]; /* CAI_ENV: its environment; CAI_SESSION: its session */
	char request_id[40];
} cai_ctx;

/* Counts an answer in postern_control_requests_total{endpoint,status} (cai_reply does it itself). */
void cai_count(cai_ctx *c, int status);
/* Answers (each completes the request and counts it). body is stolen. */
void cai_reply(cai_ctx *c, int status, json_t *body);
/* An Anthropic error body: {"type":"error","error":{"type":kind,"message":...[,"details":details]}}. */
void cai_error(cai_ctx *c, int status, json_t *details, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* A store failure: -ENOENT 404, -EEXIST/-EALREADY 409, -EINVAL 400, -ESTALE 412, else 503 (logged). */
void cai_store_error(cai_ctx *c, int rc, const char *err);
const char *cai_error_kind(int status);
/* Stores obj (an environment, or a session when session) under id and answers it, or the store's error. */
void cai_save_reply(cai_ctx *c, bool session, const char *id, json_t *obj);
/* The JSON body, parsed (an object), or an answered 400 and NULL. */
json_t *cai_body(cai_ctx *c);
/* A query parameter as an unsigned number within [min, max]: 1 absent (*v untouched), 0 read, -EINVAL answered 400. */
int cai_query_uint(cai_ctx *c, const char *name, uint64_t min, uint64_t max, uint64_t *v);
/* limit (1..max, default def) and page (the cursor) of a list; -EINVAL when answered 400. */
int cai_page_params(cai_ctx *c, unsigned def, unsigned max, unsigned *limit, char *page, size_t pagelen);
/* {"data": [...], "next_page": ..., [prev_page: null]} from a page (taken). */
json_t *cai_page_json(ctl_page *p, bool prev);
/* GET /v1/environments or /v1/sessions: a page (limit up to max) without deleted ones, nor archived ones
 * unless include_archived=true. */
void cai_list(cai_ctx *c, bool sessions, unsigned max);
/* The body's metadata patch (if any) checked and merged into obj's metadata; false when answered 400. */
bool cai_patch_metadata(cai_ctx *c, json_t *obj, json_t *body);
/* The caller may act on environment env_id (an API key, or that environment's key): else answered, false. */
bool cai_may_env(cai_ctx *c, const char *env_id, unsigned creds);
/* The caller may act on session obj (API key, the session's token, or its environment's key). */
bool cai_may_session(cai_ctx *c, json_t *session, unsigned creds);
/* A metadata object: string values (or null when patch), keys 1..64 bytes, values up to 512, 16 keys. */
bool cai_metadata_ok(cai_ctx *c, json_t *md, bool patch, const char *field);

/* Endpoints. */
void cai_env_create(cai_ctx *c);
void cai_env_retrieve(cai_ctx *c);
void cai_env_update(cai_ctx *c);
void cai_env_list(cai_ctx *c);
void cai_env_delete(cai_ctx *c);
void cai_env_archive(cai_ctx *c);
void cai_work_poll(cai_ctx *c);
void cai_work_ack(cai_ctx *c);
void cai_work_heartbeat(cai_ctx *c);
void cai_work_stop(cai_ctx *c);
void cai_work_retrieve(cai_ctx *c);
void cai_work_update(cai_ctx *c);
void cai_work_list(cai_ctx *c);
void cai_work_stats(cai_ctx *c);
void cai_sess_create(cai_ctx *c);
void cai_sess_retrieve(cai_ctx *c);
void cai_sess_update(cai_ctx *c);
void cai_sess_list(cai_ctx *c);
void cai_sess_delete(cai_ctx *c);
void cai_sess_archive(cai_ctx *c);
void cai_events_post(cai_ctx *c);
void cai_events_list(cai_ctx *c);
void cai_events_stream(cai_ctx *c);

/* A new work item for session_id in env_id with a fresh sessions token; wakes this process's long polls. */
int cai_enqueue_session(capi *a, const char *env_id, const char *session_id, char *err, size_t errlen);
/* The session's work items that are not stopped: fn (may be NULL) on each; how many, or -errno. */
int cai_live_work(ctl_store *s, const char *env_id, const char *session_id,
		  int (*fn)(ctl_store *s, const char *env_id, const char *work_id, void *ud), void *ud, char *err,
		  size_t errlen);
/* The session of caps[0] when the caller may act on it with one of creds, else answered and NULL. */
json_t *cai_session_get(cai_ctx *c, unsigned creds);
/* Validates events (a JSON array, changed in place) posted by a caller of kind cred to session sid, appends
 * them with the status events they cause (user input: session.status_running; the platform's
 * session.status_idle), updates *session (the stored session, replaced) and enqueues a work item when user
 * input reaches a session with no live one. 0; -EINVAL with why = "[i].field: reason" (or ": reason");
 * -EACCES (a worker posting a type only the platform may); -ENOENT; -EIO. */
int cai_post_events(capi *a, const char *sid, json_t *events, enum cai_cred cred, json_t **session, char *why,
		    size_t whylen);
/* Appends server events (status changes) to a session's log and wakes its streams. 0 or -errno. */
int cai_append(capi *a, const char *session_id, json_t *events, char *err, size_t errlen);
/* Wakes the long polls of env_id / the streams of session_id at once. */
void cai_wake_polls(capi *a, const char *env_id);
void cai_wake_streams(capi *a, const char *session_id);
void cai_polls_end(capi *a);
void cai_streams_end(capi *a);

#endif
