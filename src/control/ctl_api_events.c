/* A session's event log: POST (validated, appended atomically, with the status events it causes), the paged
 * list, and the SSE stream (re-read from the store every STREAM_TICK_MS and at once after an append in this
 * process; `id:` is the event's sequence number, so Last-Event-ID resumes exactly after it; a keep-alive
 * comment every KEEPALIVE_MS; paused while the connection's write queue is over its high-water mark). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/ctl_api_int.h"
#include "core/err.h"
#include "core/list.h"
#include "core/log.h"

#define STREAM_TICK_MS 250
#define KEEPALIVE_MS 15000
#define STALL_MS 60000 /* a stream whose reader takes nothing for this long is ended */
#define STREAM_BATCH 16 /* events read at a time for a stream (they may be large tool results) */
#define LIST_BATCH 50
#define MAX_TYPES 64
#define LIST_BYTES (8u * 1024 * 1024) /* a page of the list stops after this many bytes of events */
#define MAX_EVENTS_PER_POST 1000
#define ID_MAX 128

/* Every event type of the SDK's session event unions. An unknown one is refused rather than stored: a
 * worker or client that cannot parse it would stall the session (the SDK drops what it cannot type). */
static const char *const known[] = {
	"user.message", "user.interrupt", "user.tool_confirmation", "user.custom_tool_result", "user.define_outcome",
	"user.tool_result", "system.message", "agent.custom_tool_use", "agent.message", "agent.thinking",
	"agent.mcp_tool_use", "agent.mcp_tool_result", "agent.tool_use", "agent.tool_result",
	"agent.thread_message_received", "agent.thread_message_sent", "agent.thread_context_compacted",
	"session.error", "session.status_rescheduled", "session.status_running", "session.status_idle",
	"span.outcome_evaluation_start", "span.outcome_evaluation_end", "span.model_request_start",
	"span.model_request_end", "span.outcome_evaluation_ongoing",
	/* written by the server only */
	"session.status_terminated", "session.thread_created", "session.deleted", "session.thread_status_running",
	"session.thread_status_idle", "session.thread_status_terminated", "session.thread_status_rescheduled",
	"session.updated", "session.usage", "event_start", "event_delta", "workflow_run.created", "workflow_run.error",
	"workflow_run.phase_ended", "workflow_run.phase_started", "workflow_run.status_ended",
	"workflow_run.status_idle", "workflow_run.status_running", NULL,
};
#define SERVER_ONLY_FROM 26 /* index of the first type only the server writes */

static int type_index(const char *t)
{
	for (int i = 0; known[i]; i++)
		if (!strcmp(known[i], t))
			return i;
	return -1; /* -1: not a known type */
}

/* What a worker (environment key, sessions token) may post: results only. Not user.tool_confirmation: that is
 * the user's verdict on an "ask" call, and a worker that could post it would approve its own calls (and those
 * the platform runs, such as MCP tools). */
static bool worker_type(const char *t)
{
	return !strcmp(t, "user.tool_result") || !strcmp(t, "user.custom_tool_result");
}

static bool user_input(const char *t)
{
	return !strcmp(t, "user.message") || !strcmp(t, "user.interrupt") || !strcmp(t, "user.define_outcome");
}

static int bad(char *why, size_t whylen, size_t i, const char *fmt, const char *field, const char *extra)
{
	char m[256];
	snprintf(m, sizeof m, fmt, field, extra ? extra : "");
	return err_set(why, whylen, -EINVAL, "[%zu].%s", i, m);
}

static int need_id(json_t *e, size_t i, const char *k, char *why, size_t whylen)
{
	json_t *v = json_object_get(e, k);
	if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > ID_MAX)
		return bad(why, whylen, i, "%s: required, a string of 1 to 128 bytes%s", k, NULL);
	return 0;
}

/* Content blocks: an array of objects with a string type; text blocks carry a string text. */
static int content_ok(json_t *e, size_t i, bool required, char *why, size_t whylen)
{
	json_t *v = json_object_get(e, "content"), *b;
	size_t j;
	if (!v || json_is_null(v))
		return required ? bad(why, whylen, i, "%s: required, an array of content blocks%s", "content", NULL) : 0;
	if (!json_is_array(v) || (required && !json_array_size(v)))
		return bad(why, whylen, i, "%s: must be a%s array of content blocks", "content", required ? " non-empty" : "n");
	json_array_foreach(v, j, b) {
		const char *bt = json_string_value(json_object_get(b, "type"));
		char f[48];
		snprintf(f, sizeof f, "content[%zu]", j);
		if (!json_is_object(b) || !bt)
			return bad(why, whylen, i, "%s: a content block needs a string type%s", f, NULL);
		if (!strcmp(bt, "text") && !json_is_string(json_object_get(b, "text")))
			return bad(why, whylen, i, "%s.text: required string in a text block%s", f, NULL);
	}
	return 0;
}

static int validate(json_t *e, size_t i, enum cai_cred cred, char *why, size_t whylen)
{
	const char *t = json_string_value(json_object_get(e, "type"));
	json_t *v;
	int k, rc;
	if (!json_is_object(e))
		return err_set(why, whylen, -EINVAL, "[%zu]: an event must be an object", i);
	if (!t)
		return bad(why, whylen, i, "%s: required string%s", "type", NULL);
	if ((k = type_index(t)) < 0)
		return err_set(why, whylen, -EINVAL, "[%zu].type: unknown event type \"%.64s\"", i, t);
	if (k >= SERVER_ONLY_FROM)
		return err_set(why, whylen, -EINVAL, "[%zu].type: %s events are written by the server, not posted", i, t);
	if (cred != CAI_API && !worker_type(t))
		return err_set(why, whylen, -EACCES, "[%zu].type: a worker credential may post only user.tool_result "
			       "and user.custom_tool_result, not %s (a confirmation takes an API key)", i, t);
	if (!strcmp(t, "user.message") || !strcmp(t, "agent.message"))
		return content_ok(e, i, true, why, whylen);
	if (!strcmp(t, "user.tool_result") || !strcmp(t, "user.custom_tool_result")) {
		const char *idk = t[5] == 't' ? "tool_use_id" : "custom_tool_use_id";
		if ((rc = need_id(e, i, idk, why, whylen)) < 0 || (rc = content_ok(e, i, false, why, whylen)) < 0)
			return rc;
		v = json_object_get(e, "is_error");
		if (v && !json_is_boolean(v) && !json_is_null(v))
			return bad(why, whylen, i, "%s: must be true, false or null%s", "is_error", NULL);
		return 0;
	}
	if (!strcmp(t, "user.tool_confirmation")) {
		const char *r = json_string_value(json_object_get(e, "result"));
		if ((rc = need_id(e, i, "tool_use_id", why, whylen)) < 0)
			return rc;
		if (!r || (strcmp(r, "allow") && strcmp(r, "deny")))
			return bad(why, whylen, i, "%s: required, \"allow\" or \"deny\"%s", "result", NULL);
		v = json_object_get(e, "deny_message");
		if (v && !json_is_null(v) && (!json_is_string(v) || json_string_length(v) > 4096))
			return bad(why, whylen, i, "%s: must be a string of at most 4096 bytes or null%s", "deny_message", NULL);
		return 0;
	}
	if (!strcmp(t, "user.define_outcome")) {
		if (!json_is_string(json_object_get(e, "description")))
			return bad(why, whylen, i, "%s: required string%s", "description", NULL);
		if (!json_is_object(json_object_get(e, "rubric")))
			return bad(why, whylen, i, "%s: required object%s", "rubric", NULL);
		return 0;
	}
	if (!strcmp(t, "agent.tool_use") || !strcmp(t, "agent.custom_tool_use") || !strcmp(t, "agent.mcp_tool_use")) {
		v = json_object_get(e, "name");
		if (!json_is_string(v) || !json_string_length(v) || json_string_length(v) > 256)
			return bad(why, whylen, i, "%s: required, a string of 1 to 256 bytes%s", "name", NULL);
		if (!json_is_object(json_object_get(e, "input")))
			return bad(why, whylen, i, "%s: required object%s", "input", NULL);
		v = json_object_get(e, "evaluated_permission");
		if (v && !json_is_null(v) && !json_is_string(v))
			return bad(why, whylen, i, "%s: must be \"allow\", \"ask\" or \"deny\"%s", "evaluated_permission", NULL);
		return 0;
	}
	if (!strcmp(t, "session.status_idle")) {
		v = json_object_get(e, "stop_reason");
		if (!json_is_object(v) || !json_is_string(json_object_get(v, "type")))
			return bad(why, whylen, i, "%s: required, an object with a string type (end_turn, requires_action, "
				   "...)%s", "stop_reason", NULL);
		if (!json_object_get(e, "stop_details"))
			json_object_set_new(e, "stop_details", json_null());
	}
	return 0;
}

static void wake(capi *a, const char *session_id, bool check_gone);

static bool same_result(json_t *a, json_t *b)
{
	json_t *ca = json_object_get(a, "content"), *cb = json_object_get(b, "content");
	bool ea = json_is_null(ca) || (json_is_array(ca) && !json_array_size(ca));
	bool eb = json_is_null(cb) || (json_is_array(cb) && !json_array_size(cb));
	if (json_is_true(json_object_get(a, "is_error")) != json_is_true(json_object_get(b, "is_error")))
		return false;
	return (ea && eb) || (ca && cb && json_equal(ca, cb));
}

/* Results must answer a tool use of this session, once: a result for an id the log has no tool use of (of the
 * matching kind) is -EINVAL naming it; a second one with the same content is the retry of a post whose answer
 * was lost (the worker retries until its lease ends): not stored again, events[i] replaced by the stored one
 * and dup[i] set; with other content -EINVAL (a call takes one result; 400, so no worker retries it). */
static int check_results(ctl_store *s, const char *sid, json_t *events, size_t n, bool *dup, char *why,
			 size_t whylen)
{
	size_t i, j;
	int rc = 0;
	for (i = 0; i < n; i++) {
		json_t *e = json_array_get(events, i), *use = NULL, *res = NULL;
		const char *t = json_string_value(json_object_get(e, "type"));
		bool custom;
		const char *k, *id, *ut, *ut_got;
		dup[i] = false;
		if (strcmp(t, "user.tool_result") && strcmp(t, "user.custom_tool_result"))
			continue;
		custom = t[5] == 'c';
		k = custom ? "custom_tool_use_id" : "tool_use_id";
		ut = custom ? "agent.custom_tool_use" : "agent.tool_use";
		id = json_string_value(json_object_get(e, k));
		for (j = 0; j < i; j++) {
			json_t *o = json_array_get(events, j);
			if (!strcmp(json_string_value(json_object_get(o, "type")), t) &&
			    !strcmp(json_string_value(json_object_get(o, k)), id))
				return err_set(why, whylen, -EINVAL, "[%zu].%s: %s is answered twice in this batch", i, k, id);
		}
		if ((rc = s->ops->event_tool(s, sid, id, custom, &use, &res, why, whylen)) < 0)
			return rc;
		ut_got = json_string_value(json_object_get(use, "type"));
		if (!use || !ut_got || strcmp(ut_got, ut))
			rc = err_set(why, whylen, -EINVAL, "[%zu].%s: %s is not an %s of session %s", i, k, id, ut, sid);
		else if (res && !same_result(res, e))
			rc = err_set(why, whylen, -EINVAL, "[%zu].%s: %s is already answered (by %s, with other content)", i, k,
				     id, json_string_value(json_object_get(res, "id")) ? json_string_value(json_object_get(res, "id")) : "?");
		else if (res) {
			dup[i] = true;
			json_array_set(events, i, res);
		}
		json_decref(use);
		json_decref(res);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int cai_post_events(capi *a, const char *sid, json_t *events, enum cai_cred cred, json_t **session, char *why,
		    size_t whylen)
{
	ctl_store *s = a->o.store;
	const char *status, *env, *new_status = NULL;
	bool input = false, dup[MAX_EVENTS_PER_POST];
	size_t i, n, ndup = 0;
	json_t *e, *fresh;
	char now[40];
	int rc;
	if (!json_is_array(events) || !(n = json_array_size(events)) || n > MAX_EVENTS_PER_POST)
		return err_set(why, whylen, -EINVAL, ": must be an array of 1 to %d events", MAX_EVENTS_PER_POST);
	status = json_string_value(json_object_get(*session, "status"));
	env = json_string_value(json_object_get(*session, "environment_id"));
	if (status && !strcmp(status, "terminated"))
		return err_set(why, whylen, -EINVAL, ": session %s is terminated: it takes no more events", sid);
	json_array_foreach(events, i, e) {
		if ((rc = validate(e, i, cred, why, whylen)) < 0)
			return rc;
		json_object_del(e, "id"); /* the server names and times events */
		json_object_del(e, "processed_at");
		json_object_del(e, "_seq");
	}
	json_array_foreach(events, i, e) {
		const char *t = json_string_value(json_object_get(e, "type"));
		if (user_input(t)) {
			input = true;
			new_status = "running";
		} else if (!strcmp(t, "session.status_idle"))
			new_status = "idle";
		else if (!strcmp(t, "session.status_running"))
			new_status = "running";
	}
	if (input && strcmp(status ? status : "", "running"))
		json_array_append_new(events, json_pack("{s:s}", "type", "session.status_running"));
	/* The check reads, the append writes: a result another replica (or connection) stored in between makes the
	 * store refuse the append (-EEXIST, one result per call, atomic in the store); asked again, the check
	 * sees it and answers as for any second result (the same one: a retry, 200; another: 400). */
	for (int attempt = 0;; attempt++) {
		if ((rc = check_results(s, sid, events, n, dup, why, whylen)) < 0)
			return rc;
		for (i = 0, ndup = 0; i < n; i++)
			ndup += dup[i];
		if (ndup == n)
			return 0; /* only retries of results already stored: nothing to append, nothing changes */
		/* the new ones only; the answer shows the stored retries in their places */
		if (!(fresh = json_array()))
			return err_set(why, whylen, -ENOMEM, ": out of memory");
		json_array_foreach(events, i, e)
			if (i >= n || !dup[i])
				json_array_append(fresh, e);
		rc = s->ops->event_append(s, sid, fresh, NULL, why, whylen);
		json_decref(fresh);
		if (rc != -EEXIST)
			break;
		log_debug("msg=\"a result lost a race for its call: checked again\" session=%s attempt=%d", sid, attempt + 1);
		if (attempt == 2) { /* bounded; the store's why reads "events[i].tool_use_id: ... is already answered" */
			if (!strncmp(why, "events", 6))
				memmove(why, why + 6, strlen(why + 6) + 1);
			return -EINVAL;
		}
	}
	if (rc < 0)
		return rc;
	if (new_status && strcmp(new_status, status ? status : "")) {
		json_object_set_new(*session, "status", json_string(new_status));
		json_object_set_new(*session, "updated_at", json_string(ctl_now(now, sizeof now)));
		if ((rc = s->ops->session_put(s, sid, *session, why, whylen)) < 0)
			return rc;
	}
	wake(a, sid, false); /* the session was just read: it exists */
	/* A session that went idle and gets user input needs a worker again. */
	if (input && env) {
		if ((rc = cai_live_work(s, env, sid, NULL, NULL, why, whylen)) < 0)
			return rc;
		if (rc == 0 && (rc = cai_enqueue_session(a, env, sid, why, whylen)) < 0)
			return rc;
	}
	return 0;
}

void cai_events_post(cai_ctx *c)
{
	json_t *b, *o, *ev;
	char why[512];
	int rc;
	if (!(o = cai_session_get(c, CAI_API | CAI_ENV | CAI_SESSION)))
		return;
	if (!(b = cai_body(c))) {
		json_decref(o);
		return;
	}
	ev = json_object_get(b, "events");
	rc = cai_post_events(c->a, c->caps[0], ev, c->cred, &o, why, sizeof why);
	if (rc == -EINVAL)
		cai_error(c, 400, NULL, "events%s", why);
	else if (rc == -EACCES)
		cai_error(c, 403, NULL, "events%s", why);
	else if (rc < 0)
		cai_store_error(c, rc, why);
	else
		cai_reply(c, 200, json_pack("{s:O}", "data", ev));
	json_decref(b);
	json_decref(o);
}

static void strip_seq(json_t *events)
{
	size_t i;
	json_t *e;
	json_array_foreach(events, i, e)
		json_object_del(e, "_seq");
}

/* An event sequence number as the API gives it (a Last-Event-ID, a page cursor): 1 to 19 decimal digits, at most
 * INT64_MAX (the stores keep it signed: a larger one would wrap to "from the start"); no sign, no spaces. */
static int parse_seq(const char *s, uint64_t *v)
{
	size_t n = strspn(s, "0123456789");
	uint64_t x = 0;
	if (!n || n > 19 || s[n])
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		x = x * 10 + (uint64_t)(s[i] - '0');
	if (x > INT64_MAX)
		return -EINVAL;
	*v = x;
	return 0;
}

void cai_events_list(cai_ctx *c)
{
	ctl_store *s = c->a->o.store;
	json_t *o, *evs = NULL;
	char page[64], err[256], order[8];
	unsigned limit;
	uint64_t after = 0, last;
	int rc;
	if (!(o = cai_session_get(c, CAI_API | CAI_ENV | CAI_SESSION)))
		return;
	json_decref(o);
	if (cai_page_params(c, 100, 1000, &limit, page, sizeof page) < 0)
		return;
	if (hsrv_query_get(hsrv_query(c->r), "order", order, sizeof order) > 0 && strcmp(order, "asc")) {
		cai_error(c, 400, NULL, "order: only \"asc\" is served here (oldest first)");
		return;
	}
	if (page[0]) {
		if (parse_seq(page, &after) < 0) {
			cai_error(c, 400, NULL, "page: not a cursor this server gave");
			return;
		}
	}
	/* types[]=...: only those types (a page may then read past many others; the cursor follows the reads) */
	char types[MAX_TYPES][64];
	unsigned ntypes = 0;
	{
		size_t pos = 0;
		char k[16], v[64];
		int r;
		while ((r = hsrv_query_next(hsrv_query(c->r), &pos, k, sizeof k, v, sizeof v)) != 0) {
			if (r < 0 || (strcmp(k, "types[]") && strcmp(k, "types")))
				continue;
			if (type_index(v) < 0 || ntypes == MAX_TYPES) {
				cai_error(c, 400, NULL, "types: %s", ntypes == MAX_TYPES ? "at most 64 types" : "unknown event type");
				return;
			}
			snprintf(types[ntypes++], sizeof types[0], "%s", v);
		}
	}
	/* Read in batches and stop at limit or at LIST_BYTES of events: a page of large tool results stays a
	 * bounded answer, and the cursor goes on from the last one read. */
	json_t *data = json_array(), *next = json_null();
	size_t bytes = 0;
	bool more = false;
	while (!more) {
		size_t i, got;
		json_t *e;
		if ((rc = s->ops->event_read(s, c->caps[0], after, LIST_BATCH, &evs, &last, err, sizeof err)) < 0) {
			json_decref(data);
			cai_store_error(c, rc, err);
			return;
		}
		got = json_array_size(evs);
		json_array_foreach(evs, i, e) {
			if (json_array_size(data) == limit || (bytes >= LIST_BYTES && json_array_size(data))) {
				more = true;
				break;
			}
			after = (uint64_t)json_integer_value(json_object_get(e, "_seq"));
			if (ntypes) {
				const char *t = json_string_value(json_object_get(e, "type"));
				unsigned k = 0;
				while (k < ntypes && (!t || strcmp(t, types[k])))
					k++;
				if (k == ntypes)
					continue;
			}
			bytes += json_dumpb(e, NULL, 0, JSON_COMPACT);
			json_array_append(data, e);
		}
		json_decref(evs);
		if (got < LIST_BATCH)
			break;
	}
	if (more) {
		char cur[32];
		snprintf(cur, sizeof cur, "%" PRIu64, after);
		json_decref(next);
		next = json_string(cur);
	}
	evs = data;
	strip_seq(evs);
	cai_reply(c, 200, json_pack("{s:o,s:o}", "data", evs, "next_page", next));
}

/* ---- SSE ---- */
struct cai_stream {
	struct cai_stream *next, **pprev;
	capi *a;
	cai_ctx c;
	uv_timer_t t;
	uint64_t seq, last_write, congested_since;
	bool done;
};

static void stream_closed(uv_handle_t *h) { free(h->data); }

static void stream_finish(struct cai_stream *st, bool end)
{
	if (st->done)
		return;
	st->done = true;
	if (end)
		hsrv_stream_end(st->c.r);
	LIST_UNLINK(st, next, pprev);
	st->a->nstreams--;
	uv_timer_stop(&st->t);
	uv_close((uv_handle_t *)&st->t, stream_closed);
}

static int write_event(struct cai_stream *st, json_t *e, uint64_t seq)
{
	const char *t = json_string_value(json_object_get(e, "type"));
	char *d = json_dumps(e, JSON_COMPACT), head[128], tail[48];
	int rc, hn, tn;
	if (!d)
		return -ENOMEM;
	hn = snprintf(head, sizeof head, "event: %.64s\ndata: ", t ? t : "message");
	tn = snprintf(tail, sizeof tail, "\nid: %" PRIu64 "\n\n", seq);
	/* one chunk per event: a reader never sees half of one */
	size_t dl = strlen(d), n = (size_t)hn + dl + (size_t)tn;
	char *buf = malloc(n);
	if (!buf) {
		free(d);
		return -ENOMEM;
	}
	memcpy(buf, head, (size_t)hn);
	memcpy(buf + hn, d, dl);
	memcpy(buf + hn + dl, tail, (size_t)tn);
	rc = hsrv_stream_write(st->c.r, buf, n);
	free(buf);
	free(d);
	st->last_write = uv_now(st->a->o.loop);
	return rc;
}

/* Writes what the store has after st->seq until the connection is congested. check_gone: once caught up, ask
 * the store whether the session still exists (false when the caller has just read it: one store call fewer per
 * stream on every append; the tick checks within STREAM_TICK_MS). */
static void stream_pump(struct cai_stream *st, bool check_gone)
{
	ctl_store *s = st->a->o.store;
	char err[256];
	for (int rounds = 0; rounds < 100 && !st->done && !hsrv_stream_congested(st->c.r); rounds++) {
		json_t *evs = NULL, *e, *so = NULL;
		uint64_t last;
		size_t i;
		int rc = s->ops->event_read(s, st->c.caps[0], st->seq, STREAM_BATCH, &evs, &last, err, sizeof err);
		if (rc < 0) {
			stream_finish(st, true);
			return;
		}
		json_array_foreach(evs, i, e) {
			uint64_t sq = (uint64_t)json_integer_value(json_object_get(e, "_seq"));
			json_object_del(e, "_seq");
			if (write_event(st, e, sq) < 0) {
				json_decref(evs);
				stream_finish(st, true);
				return;
			}
			st->seq = sq;
		}
		size_t got = json_array_size(evs);
		json_decref(evs);
		if (got < STREAM_BATCH) {
			/* Caught up: a session deleted meanwhile (maybe by another replica) ends the stream. */
			if (check_gone && s->ops->session_get(s, st->c.caps[0], &so, err, sizeof err) == -ENOENT) {
				json_t *d = json_pack("{s:s}", "type", "session.deleted");
				write_event(st, d, st->seq + 1);
				json_decref(d);
				stream_finish(st, true);
			}
			json_decref(so);
			return;
		}
	}
}

static void stream_tick(uv_timer_t *t)
{
	struct cai_stream *st = t->data;
	if (st->a->draining) {
		stream_finish(st, true);
		return;
	}
	if (hsrv_stream_congested(st->c.r)) { /* a reader that stopped reading does not hold a stream forever */
		if (!st->congested_since)
			st->congested_since = uv_now(t->loop);
		else if (uv_now(t->loop) - st->congested_since >= STALL_MS) {
			stream_finish(st, true);
			return;
		}
	} else
		st->congested_since = 0;
	stream_pump(st, true);
	if (!st->done && uv_now(t->loop) - st->last_write >= KEEPALIVE_MS && !hsrv_stream_congested(st->c.r)) {
		hsrv_stream_write(st->c.r, ": keepalive\n\n", 13);
		st->last_write = uv_now(t->loop);
	}
}

static void stream_gone(hsrv_req *r, void *ud)
{
	(void)r;
	stream_finish(ud, false);
}

static void stream_drain(hsrv_req *r, void *ud)
{
	(void)r;
	stream_pump(ud, true);
}

static void wake(capi *a, const char *session_id, bool check_gone)
{
	for (struct cai_stream *st = a->streams, *nx; st; st = nx) {
		nx = st->next;
		if (!strcmp(st->c.caps[0], session_id))
			stream_pump(st, check_gone);
	}
}

void cai_wake_streams(capi *a, const char *session_id) { wake(a, session_id, true); }

void cai_streams_end(capi *a)
{
	while (a->streams)
		stream_finish(a->streams, true);
}

void cai_events_stream(cai_ctx *c)
{
	ctl_store *s = c->a->o.store;
	const char *lei = hsrv_header(c->r, "last-event-id");
	struct cai_stream *st;
	json_t *o;
	uint64_t start = 0, last = 0;
	char err[256], hdr[96];
	int rc;
	if (!(o = cai_session_get(c, CAI_API | CAI_ENV | CAI_SESSION)))
		return;
	json_decref(o);
	if (lei && *lei) {
		if (parse_seq(lei, &start) < 0) {
			cai_error(c, 400, NULL, "Last-Event-ID: not an event id this server gave (a decimal number)");
			return;
		}
	}
	if ((rc = s->ops->event_last(s, c->caps[0], &last, err, sizeof err)) < 0) {
		cai_store_error(c, rc, err);
		return;
	}
	if (lei && *lei && start > last) {
		/* An id past the log's end would wait for ids that never come (and hide what does): refuse it. */
		cai_error(c, 400, NULL, "Last-Event-ID: %" PRIu64 " is past the session's last event: resume from an id "
			  "this stream gave, or open the stream without one", start);
		return;
	}
	if (!lei || !*lei)
		start = last; /* no resume point: new events only (the SDK reads the history with the list) */
	if (!(st = calloc(1, sizeof *st))) {
		cai_error(c, 503, NULL, "out of memory");
		return;
	}
	snprintf(hdr, sizeof hdr, "request-id: %s\r\n", c->request_id);
	if (hsrv_stream_begin(c->r, 200, "text/event-stream", hdr) < 0) {
		free(st);
		return;
	}
	cai_count(c, 200);
	st->a = c->a;
	st->c = *c;
	st->seq = start;
	uv_timer_init(c->a->o.loop, &st->t);
	st->t.data = st;
	st->last_write = uv_now(c->a->o.loop);
	LIST_PUSH(c->a->streams, st, next, pprev);
	c->a->nstreams++;
	hsrv_on_gone(c->r, stream_gone, st);
	hsrv_on_drain(c->r, stream_drain);
	uv_timer_start(&st->t, stream_tick, STREAM_TICK_MS, STREAM_TICK_MS);
	stream_pump(st, true);
}
