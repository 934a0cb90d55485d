/* One work item of `postern worker`: the lease, the session's event stream and history, its tool calls in
 * the session's sandbox child, the results posted, the end (docs/worker.md). */
#include "worker/worker_int.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/err.h"
#include "core/list.h"
#include "core/log.h"

#define TICK_MS 250

static void pump(wks *s);
static void post_next(wks *s);
static void on_kick(uv_timer_t *t);
static void stream_open(wks *s);
static void start_stop(wks *s);

static const char *bearer(wks *s)
{
	return s->token ? s->token : s->w->c.key;
}

static int start(wks *s, const char *method, const char *path, const char *extra, const char *body,
		 long timeout_ms, size_t max_body, whttp_done_fn done, whttp_req **req)
{
	whttp_opts o = { 0 };
	o.method = method;
	o.bearer = bearer(s);
	o.body = body;
	o.body_len = body ? strlen(body) : 0;
	o.timeout_ms = timeout_ms;
	o.max_body = max_body;
	return wki_start(s->w, &o, path, extra, false, NULL, done, s, req, method);
}

/* ---- the end -------------------------------------------------------------------------------------------- */

static void closed(uv_handle_t *h)
{
	wks *s = h->data;
	wk *w = s->w;
	if (--s->open_handles > 0)
		return;
	LIST_UNLINK(s, next, pprev);
	w->nsessions--;
	log_info("msg=\"item done\" work=%s session=%s reason=\"%s\"", s->work_id, s->session_id ? s->session_id : "-",
		 s->end_why);
	free(s->work_id);
	free(s->session_id);
	if (s->token) {
		OPENSSL_cleanse(s->token, strlen(s->token));
		free(s->token);
	}
	json_decref(s->work);
	json_decref(s->running);
	json_decref(s->posts);
	json_decref(s->buffered);
	json_decref(s->inbox);
	free(s->cursor);
	free(s->workspace);
	wev_free(s->ev);
	sse_dec_free(&s->dec);
	bo_free(s->stream_bo);
	bo_free(s->post_bo);
	free(s);
	wki_session_gone(w, NULL);
}

static void cancel_req(whttp_req **r)
{
	whttp_cancel(*r);
	*r = NULL;
}

static void destroy(wks *s)
{
	if (s->done)
		return;
	s->done = true;
	cancel_req(&s->hb_req);
	cancel_req(&s->stream_req);
	cancel_req(&s->list_req);
	cancel_req(&s->post_req);
	cancel_req(&s->stop_req);
	if (s->child) {
		wch_free(s->child);
		s->child = NULL;
	}
	if (s->workspace)
		wki_workspace_remove(s->workspace);
	uv_close((uv_handle_t *)&s->hb_timer, closed);
	uv_close((uv_handle_t *)&s->tick, closed);
	uv_close((uv_handle_t *)&s->kick, closed);
}

static void on_stop(void *ud, const whttp_result *r)
{
	wks *s = ud;
	char etext[200];
	s->stop_req = NULL;
	if ((r->status < 200 || r->status > 299) && r->status != 409) {
		wpr_error_text(r->body, r->len, etext, sizeof etext);
		log_warn("msg=\"stop failed\" work=%s status=%ld error=\"%s\"", s->work_id, r->status, *r->err ? r->err : etext);
	}
	s->stopped = true;
	destroy(s);
}

static void start_stop(wks *s)
{
	char path[300];
	if (s->stop_req || s->done)
		return;
	cancel_req(&s->hb_req);
	uv_timer_stop(&s->hb_timer);
	if (s->released || s->lost) {
		destroy(s); /* another worker may hold it now: leave the item alone */
		return;
	}
	snprintf(path, sizeof path, "/v1/environments/%s/work/%s/stop", s->w->c.environment_id, s->work_id);
	if (start(s, "POST", path, NULL, "{\"force\":true}", s->w->draining ? 5000 : 10000, 0, on_stop, &s->stop_req) < 0)
		destroy(s);
}

void wki_session_end(wks *s, const char *why)
{
	uint64_t now = wki_now(s->w);
	if (s->ending) {
		if (s->w->draining && s->end_deadline > now + WK_DRAIN_MS)
			s->end_deadline = now + WK_DRAIN_MS;
		return;
	}
	s->ending = true;
	snprintf(s->end_why, sizeof s->end_why, "%s", why);
	s->end_deadline = now + (s->w->draining ? WK_DRAIN_MS : 30000);
	log_info("msg=\"ending session\" work=%s session=%s reason=\"%s\"", s->work_id,
		 s->session_id ? s->session_id : "-", why);
	cancel_req(&s->stream_req);
	cancel_req(&s->list_req);
	if (s->running && s->call_started && s->child)
		wch_cancel(s->child, s->w->draining ? "the worker is shutting down: the tool call was cancelled"
						     : "the session ended: the tool call was cancelled");
	if (s->released || s->lost) {
		json_array_clear(s->posts);
		cancel_req(&s->post_req);
	}
	if (!json_array_size(s->posts) && !s->post_req)
		start_stop(s);
}

/* ---- lease ------------------------------------------------------------------------------------------------ */

static void beat(uv_timer_t *t);

static void on_beat(void *ud, const whttp_result *r)
{
	wks *s = ud;
	enum wpr_lease_act a;
	uint64_t now = wki_now(s->w);
	s->hb_req = NULL;
	a = wpr_lease_answer(&s->lease, r->status, r->body, r->len, now);
	switch (a) {
	case WPR_LEASE_KEEP:
		uv_timer_start(&s->hb_timer, beat, (uint64_t)s->lease.interval_ms, 0);
		break;
	case WPR_LEASE_RETRY:
		log_warn("msg=\"heartbeat failed: retrying\" work=%s reason=\"%s\" detail=\"%s\"", s->work_id, s->lease.reason,
			 r->err);
		uv_timer_start(&s->hb_timer, beat, 1000, 0);
		break;
	case WPR_LEASE_RELEASE:
		s->released = true;
		log_warn("msg=\"lease released without stop\" work=%s reason=\"%s\"", s->work_id, s->lease.reason);
		wki_session_end(s, "lease lost (412): released without stop");
		break;
	case WPR_LEASE_STOP:
		log_info("msg=\"lease ended\" work=%s reason=\"%s\"", s->work_id, s->lease.reason);
		wki_session_end(s, "the lease ended");
		break;
	}
}

static void beat(uv_timer_t *t)
{
	wks *s = t->data;
	char path[300], extra[200], esc[160];
	if (s->hb_req || s->done || s->stop_req)
		return;
	snprintf(path, sizeof path, "/v1/environments/%s/work/%s/heartbeat", s->w->c.environment_id, s->work_id);
	if (wki_escape(s->lease.last, esc, sizeof esc) < 0)
		snprintf(esc, sizeof esc, "%s", WPR_NO_HEARTBEAT);
	snprintf(extra, sizeof extra, "&expected_last_heartbeat=%s", esc);
	/* Each beat is cut off after one interval: a hung call cannot outlive the lease. */
	if (start(s, "POST", path, extra, NULL, s->lease.interval_ms, 0, on_beat, &s->hb_req) < 0)
		uv_timer_start(&s->hb_timer, beat, 1000, 0);
}

/* ---- tool calls ------------------------------------------------------------------------------------------- */

static int tool_index(const char *name)
{
	static const char *const t[] = { "bash", "read", "write", "edit", "glob", "grep" };
	for (int i = 0; i < 6; i++)
		if (name && !strcmp(t[i], name))
			return i;
	return -1; /* -1: not a tool of the worker */
}

/* The text blocks of content cut to WK_MAX_TOOL_TEXT in all (said so in the text). */
static json_t *cap_content(json_t *content, const char *why)
{
	json_t *out = json_array(), *b;
	size_t i, total = 0;
	bool cut = false;
	if (!out)
		return NULL;
	if (!content) {
		json_array_append_new(out, json_pack("{s:s,s:s}", "type", "text", "text", why));
		return out;
	}
	json_array_foreach(content, i, b) {
		const char *text = json_string_value(json_object_get(b, "text"));
		size_t n = text ? strlen(text) : 0;
		if (cut)
			break;
		if (text && total + n > WK_MAX_TOOL_TEXT) {
			size_t keep = WK_MAX_TOOL_TEXT - total;
			while (keep && ((unsigned char)text[keep] & 0xc0) == 0x80)
				keep--; /* a UTF-8 boundary */
			char note[96];
			int nl = snprintf(note, sizeof note, "\n[output truncated by the worker: over %u bytes]", WK_MAX_TOOL_TEXT);
			char *t = malloc(keep + (size_t)nl + 1);
			if (!t)
				break;
			memcpy(t, text, keep);
			memcpy(t + keep, note, (size_t)nl + 1);
			json_array_append_new(out, json_pack("{s:s,s:s%}", "type", "text", "text", t, keep + (size_t)nl));
			free(t);
			cut = true;
			continue;
		}
		total += n;
		json_array_append(out, b);
	}
	return out;
}

static void on_result(void *ud, json_t *content, bool is_error, const char *why)
{
	wks *s = ud;
	json_t *call = s->running, *ev;
	const char *id = json_string_value(json_object_get(call, "id"));
	const char *name = json_string_value(json_object_get(call, "name"));
	int ti = tool_index(name);
	int outcome = content ? (is_error ? 1 : 0) : (strstr(why, "timed out") ? 2 : 1);
	char qwhy[200];

	if (ti >= 0 && s->w->m_calls[ti][outcome])
		adm_add(s->w->m_calls[ti][outcome], 1);
	log_info("msg=\"tool call done\" work=%s tool=%s tool_use_id=%s is_error=%s%s%s", s->work_id, name, id,
		 is_error || !content ? "true" : "false", content ? "" : " reason=", content ? "" : log_quote(why, qwhy, sizeof qwhy));
	ev = json_pack("{s:s,s:s,s:o,s:b}", "type", "user.tool_result", "tool_use_id", id, "content",
		       cap_content(content, why), "is_error", is_error || !content);
	s->running = NULL;
	s->call_started = false;
	if (ev && !s->released && !s->lost) {
		json_t *batch = json_pack("{s:[o]}", "events", ev);
		if (batch)
			json_array_append_new(s->posts, batch);
	} else {
		json_decref(ev);
	}
	if (id)
		wev_answered(s->ev, id);
	json_decref(call); /* id points into it */
	post_next(s);
	pump(s);
}

static void child_ready(void *ud, wch *c)
{
	wks *s = ud;
	(void)c;
	s->child_pending = false;
	pump(s);
}

static void child_exit(void *ud, wch *c, const char *why)
{
	wks *s = ud;
	log_warn("msg=\"sandbox child ended\" work=%s pid=%d reason=\"%s\"", s->work_id, wch_pid(c), why);
	if (s->child == c) {
		wch_free(c);
		s->child = NULL;
		s->child_pending = false;
	}
	if (s->healthcheck)
		wki_session_end(s, "healthcheck failed: the sandbox child ended");
}

static const wch_cbs sess_cbs = { child_ready, child_exit };

static void ensure_child(wks *s)
{
	char err[300];
	if (s->child || s->child_pending)
		return;
	if (wki_child_spawn(s->w, s->workspace, &sess_cbs, s, &s->child, err, sizeof err) < 0) {
		log_error("msg=\"cannot start a sandbox child\" work=%s reason=\"%s\"", s->work_id, err);
		return;
	}
	s->child_pending = true;
}

static void pump(wks *s)
{
	int rc;
	if (s->ending || s->done)
		return;
	if (!s->running && !(s->running = wev_take(s->ev)))
		return;
	if (s->call_started)
		return;
	if (!s->child) {
		ensure_child(s);
		return;
	}
	if (!wch_is_ready(s->child) || wch_is_busy(s->child))
		return; /* child_ready, or the tick once a cancelled call drained */
	rc = wch_call(s->child, json_string_value(json_object_get(s->running, "name")),
		      json_object_get(s->running, "input"), s->w->c.tool_timeout_ms, on_result, s);
	if (rc == 0) {
		s->call_started = true;
		log_info("msg=\"tool call started\" work=%s tool=%s tool_use_id=%s", s->work_id,
			 json_string_value(json_object_get(s->running, "name")),
			 json_string_value(json_object_get(s->running, "id")));
	} else if (rc == -EPIPE) {
		wch_free(s->child);
		s->child = NULL;
		ensure_child(s);
	}
}

/* ---- posting results ------------------------------------------------------------------------------------ */

static void on_posted(void *ud, const whttp_result *r)
{
	wks *s = ud;
	char etext[200];
	s->post_req = NULL;
	if (r->status >= 200 && r->status <= 299) {
		json_array_remove(s->posts, 0);
		bo_reset(s->post_bo);
	} else if (wpr_fatal_status(r->status)) {
		wpr_error_text(r->body, r->len, etext, sizeof etext);
		log_error("msg=\"result refused: dropped\" work=%s status=%ld error=\"%s\"", s->work_id, r->status, etext);
		json_array_remove(s->posts, 0);
	} else {
		uint32_t d = bo_next(s->post_bo);
		wpr_error_text(r->body, r->len, etext, sizeof etext);
		log_warn("msg=\"posting a result failed: retrying\" work=%s status=%ld error=\"%s\" retry_ms=%u", s->work_id,
			 r->status, *r->err ? r->err : etext, d);
		s->post_retry_at = wki_now(s->w) + d;
		return;
	}
	post_next(s);
	if (s->ending && !json_array_size(s->posts) && !s->post_req)
		start_stop(s);
}

static void post_next(wks *s)
{
	char path[300], *body;
	if (s->post_req || s->done || !json_array_size(s->posts) || wki_now(s->w) < s->post_retry_at)
		return;
	body = json_dumps(json_array_get(s->posts, 0), JSON_COMPACT);
	if (!body)
		return;
	snprintf(path, sizeof path, "/v1/sessions/%s/events", s->session_id);
	if (start(s, "POST", path, NULL, body, WK_REQ_TIMEOUT_MS, 0, on_posted, &s->post_req) < 0)
		s->post_retry_at = wki_now(s->w) + 1000;
	free(body);
}

/* ---- events --------------------------------------------------------------------------------------------- */

static void handle_event(wks *s, json_t *ev, bool history)
{
	const char *why = "", *type = json_string_value(json_object_get(ev, "type"));
	char qt[80];
	enum wev_res r = history ? wev_history_event(s->ev, ev, &why) : wev_event(s->ev, ev, wki_now(s->w), &why);
	const char *id = json_string_value(json_object_get(ev, "id"));
	switch (r) {
	case WEV_OK:
		break;
	case WEV_END:
		if (!history || !s->ending)
			wki_session_end(s, why);
		break;
	case WEV_UNKNOWN:
		log_info("msg=\"event skipped: unknown type\" work=%s type=%s", s->work_id, log_quote(type, qt, sizeof qt));
		break;
	case WEV_MALFORMED:
		log_warn("msg=\"event skipped: malformed\" work=%s reason=\"%s\"", s->work_id, why);
		break;
	case WEV_NOT_OURS:
	case WEV_NOT_RUN:
	case WEV_HELD:
		log_info("msg=\"tool call not run\" work=%s tool_use_id=%s tool=%s reason=\"%s\"", s->work_id,
			 log_quote(id, qt, sizeof qt), json_string_value(json_object_get(ev, "name")), why);
		break;
	}
}

/* Inside libcurl's write callback no request may start or stop (libcurl refuses recursive calls): events go
 * to the inbox and the kick timer handles them on the next loop turn. */
static void live_event(wks *s, const sse_event *e)
{
	json_t *ev;
	char qt[80];
	if (e->id && *e->id)
		snprintf(s->last_event_id, sizeof s->last_event_id, "%s", e->id);
	if (!e->has_data)
		return;
	ev = json_loadb(e->data, e->data_len, 0, NULL);
	if (!ev) {
		log_warn("msg=\"event skipped: malformed JSON\" work=%s sse_event=%s len=%zu", s->work_id,
			 log_quote(e->event ? e->event : "message", qt, sizeof qt), e->data_len);
		return;
	}
	if (json_array_size(s->inbox) + json_array_size(s->buffered) < WK_MAX_BUFFERED)
		json_array_append(s->inbox, ev);
	else
		log_warn("msg=\"event dropped: too many waiting\" work=%s", s->work_id);
	json_decref(ev);
	uv_timer_start(&s->kick, on_kick, 0, 0);
}

static bool on_stream_data(void *ud, const char *p, size_t n)
{
	wks *s = ud;
	size_t used;
	sse_event e;
	char err[120];
	while (n && !s->ending) {
		int r = sse_dec_next(&s->dec, (const uint8_t *)p, n, &used, &e, err, sizeof err);
		if (r < 0) {
			log_warn("msg=\"event stream refused: reconnecting\" work=%s reason=\"%s\"", s->work_id, err);
			return false;
		}
		p += used;
		n -= used;
		if (r == 1)
			live_event(s, &e);
	}
	return !s->ending;
}

static void list_page(wks *s);
static void on_kick(uv_timer_t *t);

static void history_done(wks *s)
{
	size_t i;
	json_t *ev;
	wev_history_end(s->ev, wki_now(s->w));
	s->reconciling = false;
	s->history_done = true;
	json_array_foreach(s->buffered, i, ev) {
		if (s->ending)
			break;
		handle_event(s, ev, false);
	}
	json_array_clear(s->buffered);
	pump(s);
}

static void on_list(void *ud, const whttp_result *r)
{
	wks *s = ud;
	json_t *j, *data, *ev;
	const char *next;
	size_t i;
	char etext[200];
	s->list_req = NULL;
	if (r->status < 200 || r->status > 299) {
		wpr_error_text(r->body, r->len, etext, sizeof etext);
		log_warn("msg=\"reading the session's history failed\" work=%s status=%ld error=\"%s\"", s->work_id, r->status,
			 *r->err ? r->err : etext);
		if (wpr_fatal_status(r->status)) {
			wki_session_end(s, "the session's events cannot be read (fatal 4xx)");
			return;
		}
		wev_history_begin(s->ev);
		history_done(s); /* what the stream brings still runs; the next reconnect reads it again */
		return;
	}
	j = json_loadb(r->body, r->len, 0, NULL);
	data = json_object_get(j, "data");
	if (!json_is_array(data)) {
		log_warn("msg=\"session history page is malformed: skipped\" work=%s", s->work_id);
		json_decref(j);
		history_done(s);
		return;
	}
	json_array_foreach(data, i, ev)
		handle_event(s, ev, true);
	next = json_string_value(json_object_get(j, "next_page"));
	free(s->cursor);
	s->cursor = next && *next && strlen(next) < 512 ? strdup(next) : NULL;
	json_decref(j);
	if (s->ending)
		return;
	if (s->cursor)
		list_page(s);
	else
		history_done(s);
}

static void list_page(wks *s)
{
	char path[300], extra[700], esc[600] = "";
	snprintf(path, sizeof path, "/v1/sessions/%s/events", s->session_id);
	if (s->cursor && wki_escape(s->cursor, esc, sizeof esc) < 0)
		esc[0] = 0;
	snprintf(extra, sizeof extra, "&limit=1000%s%s", *esc ? "&page=" : "", esc);
	if (start(s, "GET", path, extra, NULL, WK_REQ_TIMEOUT_MS, WK_MAX_PAGE, on_list, &s->list_req) < 0)
		history_done(s);
}

static void on_stream_head(void *ud, long status)
{
	wks *s = ud;
	if (status < 200 || status > 299)
		return;
	s->stream_open = true;
	s->want_history = true;
	uv_timer_start(&s->kick, on_kick, 0, 0);
}

static void on_kick(uv_timer_t *t)
{
	wks *s = t->data;
	json_t *ev;
	size_t i;
	if (s->done)
		return;
	json_array_foreach(s->inbox, i, ev) {
		if (s->reconciling)
			json_array_append(s->buffered, ev);
		else if (!s->ending)
			handle_event(s, ev, false);
	}
	json_array_clear(s->inbox);
	/* The stream is open: now the history, so nothing between the two is lost. */
	if (s->want_history && !s->ending && !s->reconciling && !s->list_req) {
		s->want_history = false;
		s->reconciling = true;
		free(s->cursor);
		s->cursor = NULL;
		wev_history_begin(s->ev);
		list_page(s);
	}
	pump(s);
}

static void on_stream_end(void *ud, const whttp_result *r)
{
	wks *s = ud;
	char etext[200];
	uint32_t d;
	s->stream_req = NULL;
	s->stream_open = false;
	if (s->ending)
		return;
	if (wpr_fatal_status(r->status)) {
		wpr_error_text(r->body, r->len, etext, sizeof etext);
		log_error("msg=\"session event stream refused\" work=%s status=%ld error=\"%s\"", s->work_id, r->status, etext);
		wki_session_end(s, "the session's event stream was refused (fatal 4xx)");
		return;
	}
	d = bo_next(s->stream_bo);
	log_info("msg=\"event stream closed: reconnecting\" work=%s status=%ld reason=\"%s\" retry_ms=%u", s->work_id,
		 r->status, r->err, d);
	s->stream_retry_at = wki_now(s->w) + d;
}

static void stream_open(wks *s)
{
	char path[300], lei[SSE_ID_MAX + 32];
	const char *more[3] = { "Accept: text/event-stream", NULL, NULL };
	whttp_opts o = { 0 };
	if (s->stream_req || s->ending)
		return;
	if (*s->last_event_id) {
		snprintf(lei, sizeof lei, "Last-Event-ID: %s", s->last_event_id);
		more[1] = lei;
	}
	sse_dec_free(&s->dec);
	sse_dec_init(&s->dec, 64 * 1024, WK_MAX_EVENT);
	snprintf(path, sizeof path, "/v1/sessions/%s/events/stream", s->session_id);
	o.method = "GET";
	o.bearer = bearer(s);
	o.timeout_ms = WK_STREAM_TIMEOUT_MS;
	o.on_data = on_stream_data;
	o.on_head = on_stream_head;
	o.max_body = 64 * 1024; /* an error answer's body */
	if (wki_start(s->w, &o, path, NULL, false, more, on_stream_end, s, &s->stream_req, "event stream") < 0)
		s->stream_retry_at = wki_now(s->w) + 1000;
}

/* ---- the tick: retries, idle, lease lost, the end ------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
	wks *s = t->data;
	uint64_t now = wki_now(s->w);
	if (s->done)
		return;
	if (!s->released && !s->lost && !s->stop_req && wpr_lease_lost(&s->lease, now)) {
		s->lost = true;
		log_warn("msg=\"lease assumed lost: no heartbeat succeeded within the TTL\" work=%s ttl_ms=%lld", s->work_id,
			 (long long)s->lease.ttl_ms);
		json_array_clear(s->posts);
		cancel_req(&s->post_req);
		wki_session_end(s, "lease lost (no heartbeat within the TTL)");
	}
	if (s->ending) {
		if (s->stop_req)
			return;
		if (now >= s->end_deadline || (!json_array_size(s->posts) && !s->post_req)) {
			cancel_req(&s->post_req);
			start_stop(s);
		} else {
			post_next(s);
		}
		return;
	}
	if (s->healthcheck) {
		if (now > s->end_deadline)
			wki_session_end(s, "healthcheck failed: the sandbox child did not start within 60 s");
		return;
	}
	if (!s->stream_req && now >= s->stream_retry_at)
		stream_open(s);
	post_next(s);
	pump(s);
	if (wev_idle_due(s->ev, s->running != NULL, now))
		wki_session_end(s, "idle after end_turn (max_idle)");
}

/* ---- start ---------------------------------------------------------------------------------------------- */

static void hc_ready(void *ud, wch *c)
{
	wks *s = ud;
	log_info("msg=\"healthcheck passed\" work=%s sandbox_pid=%d workspace_root=writable", s->work_id, wch_pid(c));
	wki_session_end(s, "healthcheck answered");
}

static const wch_cbs hc_cbs = { hc_ready, child_exit };

int wki_session_start(wk *w, json_t *work, char *err, size_t errlen)
{
	wks *s = calloc(1, sizeof *s);
	json_t *data = json_object_get(work, "data");
	const char *type = json_string_value(json_object_get(data, "type"));
	const char *sid = json_string_value(json_object_get(data, "id"));
	int rc;

	if (!s)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	s->w = w;
	s->work = json_incref(work);
	s->work_id = strdup(json_string_value(json_object_get(work, "id")));
	s->session_id = sid && strlen(sid) < 128 && strspn(sid, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == strlen(sid)
				? strdup(sid) : NULL;
	s->ev = wev_new(w->c.max_idle_ms);
	s->posts = json_array();
	s->buffered = json_array();
	s->inbox = json_array();
	s->stream_bo = bo_new(500, 10000, 250, NULL, NULL);
	s->post_bo = bo_new(1000, 30000, 500, NULL, NULL);
	sse_dec_init(&s->dec, 64 * 1024, WK_MAX_EVENT);
	if (!s->work_id || !s->ev || !s->posts || !s->buffered || !s->inbox || !s->stream_bo || !s->post_bo ||
	    (rc = wpr_secret_token(json_string_value(json_object_get(work, "secret")), &s->token)) < 0) {
		json_decref(s->work);
		free(s->work_id);
		free(s->session_id);
		wev_free(s->ev);
		json_decref(s->posts);
		json_decref(s->buffered);
		json_decref(s->inbox);
		bo_free(s->stream_bo);
		bo_free(s->post_bo);
		sse_dec_free(&s->dec);
		free(s);
		return err_set(err, errlen, -ENOMEM, "out of memory");
	}
	uv_timer_init(w->loop, &s->hb_timer);
	uv_timer_init(w->loop, &s->tick);
	uv_timer_init(w->loop, &s->kick);
	s->hb_timer.data = s->tick.data = s->kick.data = s;
	s->open_handles = 3;
	LIST_PUSH(w->sessions, s, next, pprev);
	w->nsessions++;
	wki_metrics(w);
	/* The lease first: nothing may outlast it unclaimed. */
	wpr_lease_init(&s->lease, wki_now(w));
	beat(&s->hb_timer);
	uv_timer_start(&s->tick, on_tick, TICK_MS, TICK_MS);
	log_info("msg=\"item claimed\" work=%s type=%s session=%s credential=%s", s->work_id, type ? type : "?",
		 s->session_id ? s->session_id : "-", s->token ? "sessions_token" : "environment_key");
	if (type && !strcmp(type, "healthcheck")) {
		s->healthcheck = true;
		s->end_deadline = wki_now(w) + 60000; /* the probe's limit (end_deadline is reset when it ends) */
		if (!(s->workspace = wki_workspace_new(w, err, errlen))) {
			log_error("msg=\"healthcheck failed\" work=%s reason=\"%s\"", s->work_id, err);
			wki_session_end(s, "healthcheck failed: workspace_root is not writable");
			return 0;
		}
		if (wki_child_spawn(w, s->workspace, &hc_cbs, s, &s->child, err, errlen) < 0) {
			log_error("msg=\"healthcheck failed\" work=%s reason=\"%s\"", s->work_id, err);
			wki_session_end(s, "healthcheck failed: cannot start a sandbox child");
		}
		return 0;
	}
	if (!type || strcmp(type, "session") || !s->session_id) {
		log_warn("msg=\"item skipped: not a session\" work=%s type=%s", s->work_id, type ? type : "?");
		wki_session_end(s, "not a session item");
		return 0;
	}
	uint64_t t0 = uv_hrtime();
	s->child = wki_pool_take(w, &s->workspace);
	if (s->child) {
		wch_set_owner(s->child, &sess_cbs, s);
		log_info("msg=\"sandbox taken from the warm pool\" work=%s pid=%d take_us=%.1f", s->work_id, wch_pid(s->child),
			 (double)(uv_hrtime() - t0) / 1000.0);
	} else if (!(s->workspace = wki_workspace_new(w, err, errlen))) {
		log_error("msg=\"cannot make the session's workspace\" work=%s reason=\"%s\"", s->work_id, err);
		wki_session_end(s, "no workspace");
		return 0;
	} else {
		ensure_child(s);
	}
	stream_open(s);
	return 0;
}
