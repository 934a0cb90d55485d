/* The stdio bridge's API: HTTP requests to sessions (POST, GET, DELETE), the session table with its cap and
 * reclaim of idle sessions, metrics, and inspection of JSON-RPC messages (pure). The child processes are
 * in mcpbridge_proc.c, the routing of their messages and the SSE streams in mcpbridge_stream.c, the
 * 2026-07-28 era in mcpbridge_modern.c. */
#include "proxy/mcpbridge_int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "guard/jrpc.h"

/* ---- classification ------------------------------------------------------------------------------------ */

/* The canonical key of a JSON-RPC id or progress token: "n:5", "s:abc"; -EINVAL when it is neither or too long. */
static int id_key(json_t *id, char *out, size_t len)
{
	if (json_is_integer(id))
		snprintf(out, len, "n:%lld", (long long)json_integer_value(id));
	else if (json_is_string(id) && json_string_length(id) < len - 3)
		snprintf(out, len, "s:%s", json_string_value(id));
	else
		return -EINVAL;
	return 0;
}

static mbr_kind classify_json(json_t *m, char *idkey, size_t idlen, char *method, size_t mlen, char *why,
			      size_t whylen)
{
	json_t *id, *meth, *ver;
	if (!json_is_object(m)) {
		snprintf(why, whylen, json_is_array(m) ? "JSON-RPC batches are not supported" : "message is not a JSON object");
		return MBR_INVALID;
	}
	ver = json_object_get(m, "jsonrpc");
	if (!json_is_string(ver) || strcmp(json_string_value(ver), "2.0") != 0) {
		snprintf(why, whylen, "jsonrpc must be \"2.0\"");
		return MBR_INVALID;
	}
	id = json_object_get(m, "id");
	meth = json_object_get(m, "method");
	if (id && id_key(id, idkey, idlen) < 0) {
		snprintf(why, whylen, "id must be a string (under %zu bytes) or an integer", idlen - 3);
		return MBR_INVALID;
	}
	if (meth) {
		if (!json_is_string(meth) || json_string_length(meth) == 0 || json_string_length(meth) >= mlen) {
			snprintf(why, whylen, "method must be a non-empty string");
			return MBR_INVALID;
		}
		snprintf(method, mlen, "%s", json_string_value(meth));
		return id ? MBR_REQUEST : MBR_NOTIFICATION;
	}
	if (id && (json_object_get(m, "result") || json_object_get(m, "error")))
		return MBR_RESPONSE;
	snprintf(why, whylen, "neither a request, a notification nor a response");
	return MBR_INVALID;
}

static json_t *parse(const char *s, size_t n, char *why, size_t whylen)
{
	json_error_t e;
	json_t *j = json_loadb(s, n, JSON_REJECT_DUPLICATES, &e);
	if (!j)
		snprintf(why, whylen, "invalid JSON at byte %d: %s", e.position, e.text);
	return j;
}

mbr_kind mbr_classify(const char *json, size_t n, char *idkey, size_t idlen, char *method, size_t mlen,
		      char *why, size_t whylen)
{
	json_t *j = parse(json, n, why, whylen);
	mbr_kind k;
	if (!j)
		return MBR_INVALID;
	k = classify_json(j, idkey, idlen, method, mlen, why, whylen);
	json_decref(j);
	return k;
}

/* The routing keys of a classified message. */
static void route_keys(json_t *j, mbr_msg *m)
{
	json_t *params = json_object_get(j, "params"), *meta, *v;
	m->progress[0] = m->related[0] = 0;
	if (!json_is_object(params))
		return;
	if (m->kind == MBR_REQUEST && json_is_object(meta = json_object_get(params, "_meta")) &&
	    (v = json_object_get(meta, "progressToken")) && id_key(v, m->progress, sizeof m->progress) < 0)
		m->progress[0] = 0;
	if (m->kind != MBR_NOTIFICATION)
		return;
	if (!strcmp(m->method, "notifications/progress") && (v = json_object_get(params, "progressToken")) &&
	    id_key(v, m->progress, sizeof m->progress) < 0)
		m->progress[0] = 0;
	if (!strcmp(m->method, "notifications/cancelled") && (v = json_object_get(params, "requestId")) &&
	    id_key(v, m->related, sizeof m->related) < 0)
		m->related[0] = 0;
}

static mbr_kind inspect_json(json_t *j, mbr_msg *m, char *why, size_t whylen)
{
	m->idkey[0] = m->method[0] = 0;
	m->kind = classify_json(j, m->idkey, sizeof m->idkey, m->method, sizeof m->method, why, whylen);
	if (m->kind != MBR_INVALID)
		route_keys(j, m);
	return m->kind;
}

mbr_kind mbr_inspect(const char *json, size_t n, mbr_msg *m, char *why, size_t whylen)
{
	json_t *j = parse(json, n, why, whylen);
	memset(m, 0, sizeof *m);
	if (!j)
		return MBR_INVALID;
	inspect_json(j, m, why, whylen);
	json_decref(j);
	return m->kind;
}

/* ---- responses ----------------------------------------------------------------------------------------- */

void mbri_reply(const mbr_sink *k, void *ud, int status, const char *sid, const char *ctype, const char *body)
{
	mbr_response r = { .status = status, .session_id = sid, .content_type = ctype, .body = body,
			   .body_len = body ? strlen(body) : 0 };
	k->respond(ud, &r);
}

static json_t *id_value(const char *idkey)
{
	if (idkey[0] == 'n' && idkey[1] == ':')
		return json_integer(strtoll(idkey + 2, NULL, 10));
	if (idkey[0] == 's' && idkey[1] == ':')
		return json_string(idkey + 2);
	return json_null();
}

char *mbri_error_line(const char *idkey, int code, const char *msg)
{
	json_t *e = json_pack("{s:s, s:o, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", idkey ? id_value(idkey) : json_null(),
			      "error", "code", code, "message", msg);
	char *s = e ? json_dumps(e, JSON_COMPACT) : NULL;
	json_decref(e);
	return s;
}

/* A JSON-RPC error as the HTTP body (the MCP SDKs read these). */
void mbri_reply_rpc_error(const mbr_sink *k, void *ud, int status, int code, const char *msg)
{
	char *s = mbri_error_line(NULL, code, msg);
	mbri_reply(k, ud, status, NULL, "application/json", s ? s : "{}");
	free(s);
}

/* ---- sessions ------------------------------------------------------------------------------------------ */

/* Ending sessions do not count: their child is on its way out (SIGKILL at most 5 s later). Shared children
 * of 2026-07-28 clients are no sessions. */
static unsigned live_sessions(const mbr *b)
{
	unsigned n = 0;
	for (const sess *s = b->sessions; s; s = s->next)
		n += !s->ending && !s->modern;
	return n;
}

static sess *sess_find(mbr *b, const char *id)
{
	for (sess *s = b->sessions; s; s = s->next)
		if (!s->ending && !s->modern && !strcmp(s->id, id))
			return s;
	return NULL;
}

void mbri_metrics(mbr *b)
{
	unsigned mc = 0, mi = 0;
	for (const sess *s = b->sessions; s; s = s->next)
		if (s->modern) {
			mc += !s->ending;
			mi += s->nmreqs;
		}
	b->st.sessions = live_sessions(b);
	b->st.modern_children = mc;
	b->st.modern_inflight = mi;
	adm_set(b->m_sessions, b->st.sessions);
	adm_set(b->m_streams_get, b->st.get_streams);
	adm_set(b->m_streams_post, b->st.post_streams);
	adm_set(b->m_modern_children, mc);
	adm_set(b->m_modern_inflight, mi);
}

/* Idle: no stream open, no request in flight, and no request for reclaim_idle. */
static bool reclaimable(const sess *s, uint64_t now)
{
	return !s->ending && !s->modern && !s->pending && !s->conns && now - s->last_active >= s->b->reclaim_ms;
}

void mbri_reclaim(mbr *b, bool force)
{
	uint64_t now = mbri_now(b);
	unsigned mark = MBR_RECLAIM_MARK(b->max_sessions), live;
	if (b->freeing || (!force && now - b->last_reclaim_check < MBR_TICK_MS))
		return;
	b->last_reclaim_check = now;
	while ((live = live_sessions(b)) > 0 && (force ? live >= b->max_sessions : live > mark)) {
		sess *old = NULL;
		for (sess *s = b->sessions; s; s = s->next)
			if (reclaimable(s, now) && (!old || s->last_active < old->last_active))
				old = s;
		if (!old)
			return;
		b->st.reclaimed++;
		adm_add(b->m_reclaimed, 1);
		log_info("msg=\"mcp session reclaimed\" route=%s session=%.8s idle_ms=%llu sessions=%u max=%u mark=%u "
			 "reason=\"%s\"",
			 b->name, old->id, (unsigned long long)(now - old->last_active), live, b->max_sessions, mark,
			 force ? "a new session at the cap" : "above the high-water mark");
		mbri_end(old, "reclaimed: idle while the route is near its session cap");
		if (force)
			return;
	}
}

static int handle_get(mbr *b, const mbr_http *h, const mbr_sink *k, void *ud, mbr_req **out)
{
	sess *s;
	if (!h->session_id) {
		mbri_reply_rpc_error(k, ud, 400, -32000, "Bad Request: Mcp-Session-Id header is required");
		return 0;
	}
	if (!(s = sess_find(b, h->session_id))) {
		mbri_reply_rpc_error(k, ud, 404, -32001, "Session not found");
		return 0;
	}
	if (!h->accept_sse) {
		mbri_reply_rpc_error(k, ud, 406, -32000, "Not Acceptable: the client must accept text/event-stream");
		return 0;
	}
	s->last_active = mbri_now(b);
	return mbri_open_get(s, k, ud, h->last_event_id, out);
}

int mbr_handle(mbr *b, const mbr_http *h, const mbr_sink *k, void *ud, mbr_req **out)
{
	char why[200] = "";
	json_t *msg = NULL;
	mbr_msg m;
	sess *s = NULL;
	mbri_pend *p = NULL;
	mbr_req *q = NULL, *dummy;
	int rc = 0;

	if (!out)
		out = &dummy;
	*out = NULL;
	if (!h->session_id && jrpc_version_is_modern(h->protocol_version) &&
	    (!strcmp(h->method, "GET") || !strcmp(h->method, "DELETE"))) {
		/* 2026-07-28 has no GET stream and no session to delete (streamable-http: SHOULD 405). */
		mbr_response resp = { .status = 405, .allow = "POST", .content_type = "text/plain",
				      .body = "a 2026-07-28 client only POSTs to this MCP route (no GET stream, no session to DELETE)\n" };
		resp.body_len = strlen(resp.body);
		k->respond(ud, &resp);
		goto out;
	}
	if (!strcmp(h->method, "DELETE")) {
		if (!h->session_id || !(s = sess_find(b, h->session_id)))
			mbri_reply(k, ud, 404, NULL, "text/plain", "unknown MCP session\n");
		else {
			mbri_end(s, "client ended the session");
			mbri_reply(k, ud, 200, NULL, NULL, NULL);
		}
		goto out;
	}
	if (!strcmp(h->method, "GET")) {
		rc = handle_get(b, h, k, ud, out);
		goto out;
	}
	if (strcmp(h->method, "POST") != 0) {
		mbr_response resp = { .status = 405, .allow = "GET, POST, DELETE", .content_type = "text/plain",
				      .body = "this MCP route accepts GET, POST and DELETE\n" };
		resp.body_len = strlen(resp.body);
		k->respond(ud, &resp);
		goto out;
	}
	if (h->body_len > b->max_msg) {
		mbri_reply_rpc_error(k, ud, 413, -32600, "message too large");
		goto out;
	}
	/* A modern client ignores session ids (it may still send a stale one); a legacy one with an unknown session
	 * carries no _meta version and still gets its 404 below. */
	if ((!h->session_id || !sess_find(b, h->session_id)) && (rc = mbri_modern_post(b, h, k, ud, out)) != 0) {
		rc = rc > 0 ? 0 : rc;
		goto out;
	}
	msg = parse((const char *)h->body, h->body_len, why, sizeof why);
	if (!msg) {
		mbri_reply_rpc_error(k, ud, 400, -32700, why);
		goto out;
	}
	if (inspect_json(msg, &m, why, sizeof why) == MBR_INVALID) {
		mbri_reply_rpc_error(k, ud, 400, -32600, why);
		goto out;
	}
	if (!h->session_id) {
		if (m.kind != MBR_REQUEST || strcmp(m.method, "initialize") != 0) {
			mbri_reply_rpc_error(k, ud, 400, -32000, "Bad Request: no valid session ID provided (initialize first)");
			goto out;
		}
		if (live_sessions(b) >= b->max_sessions)
			mbri_reclaim(b, true);
		if (live_sessions(b) >= b->max_sessions) {
			char t[160];
			snprintf(t, sizeof t, "too many concurrent MCP sessions on route %s (max %u, all busy)", b->name,
				 b->max_sessions);
			b->st.refused++;
			adm_add(b->m_refused, 1);
			log_warn("msg=\"session cap reached, every session busy\" route=%s max=%u", b->name, b->max_sessions);
			mbri_reply_rpc_error(k, ud, 503, -32000, t);
			goto out;
		}
		if ((rc = mbri_spawn(b, false, &s, why, sizeof why)) < 0) {
			log_error("msg=\"cannot start MCP server\" route=%s reason=\"%s\"", b->name, why);
			mbri_reply_rpc_error(k, ud, 502, -32603, why);
			rc = 0;
			goto out;
		}
	} else if (!(s = sess_find(b, h->session_id))) {
		mbri_reply_rpc_error(k, ud, 404, -32001, "Session not found");
		goto out;
	}
	if (m.kind == MBR_REQUEST) {
		if (s->npending >= MBR_MAX_PENDING) {
			mbri_reply_rpc_error(k, ud, 429, -32000, "too many requests in flight on this session");
			goto out;
		}
		for (mbri_pend *o = s->pending; o; o = o->next)
			if (!strcmp(o->idkey, m.idkey)) {
				mbri_reply_rpc_error(k, ud, 400, -32600, "a request with this id is already in flight");
				goto out;
			}
		/* Both before the write: once the child has the request, its answer must have somewhere to go. */
		if (!(p = calloc(1, sizeof *p)) || !(q = mbri_conn_new(s, k, ud))) {
			rc = -ENOMEM;
			goto out;
		}
	}
	if ((rc = mbri_write(s, msg)) < 0) {
		rc = 0;
		if (q) {
			mbr_req_cancel(q);
			q = NULL;
		}
		mbri_reply_rpc_error(k, ud, 502, -32603, "cannot write to the MCP server");
		goto out;
	}
	s->last_active = mbri_now(b);
	if (m.kind != MBR_REQUEST) {
		/* A notification, or the client's answer to a server request (its id is the child's own). */
		mbri_reply(k, ud, 202, NULL, NULL, NULL);
		goto out;
	}
	snprintf(p->idkey, sizeof p->idkey, "%s", m.idkey);
	snprintf(p->progress, sizeof p->progress, "%s", m.progress);
	p->init = !h->session_id;
	p->deadline = mbri_now(b) + b->req_ms;
	p->stream = h->accept_sse ? ++s->next_stream : 0;
	p->conn = q;
	{
		mbri_pend **tail = &s->pending;
		while (*tail)
			tail = &(*tail)->next;
		*tail = p;
		s->npending++;
	}
	q->p = p;
	q->sse = h->accept_sse;
	q->stream = p->stream;
	q->cursor = s->next_seq;
	*out = q;
	p = NULL;
	q = NULL;
out:
	free(p);
	if (q)
		mbr_req_cancel(q);
	json_decref(msg);
	return rc;
}

/* ---- the bridge ---------------------------------------------------------------------------------------- */

mbr *mbr_new(uv_loop_t *loop, const mbr_opts *o, char *err, size_t errlen)
{
	mbr *b = calloc(1, sizeof *b);
	char l[300], l2[340];
	size_t n = 0;
	if (!b)
		goto nomem;
	while (o->argv && o->argv[n])
		n++;
	if (n == 0) {
		snprintf(err, errlen, "route %s: no command to run", o->name ? o->name : "?");
		free(b);
		return NULL;
	}
	b->loop = loop;
	b->argc = n;
	b->argv = calloc(n + 1, sizeof *b->argv);
	b->name = strdup(o->name ? o->name : "mcp");
	if (!b->argv || !b->name)
		goto nomem;
	for (size_t i = 0; i < n; i++)
		if (!(b->argv[i] = strdup(o->argv[i])))
			goto nomem;
	if (o->workspace_root && !(b->workspace_root = strdup(o->workspace_root)))
		goto nomem;
	b->max_sessions = o->max_sessions ? o->max_sessions : 16;
	b->idle_ms = o->idle_timeout_ms ? o->idle_timeout_ms : 30u * 60 * 1000;
	b->reclaim_ms = o->reclaim_idle_ms ? o->reclaim_idle_ms : 60u * 1000;
	if (b->reclaim_ms > b->idle_ms)
		b->reclaim_ms = b->idle_ms;
	b->req_ms = o->request_timeout_ms ? o->request_timeout_ms : 15u * 60 * 1000;
	b->max_msg = o->max_message ? o->max_message : 4u << 20;
	b->modern_children = o->modern_children ? o->modern_children : 2;
	b->max_modern = o->max_modern ? o->max_modern : 64;
	b->st.max_sessions = b->max_sessions;
	adm_label(l, sizeof l, "route", b->name);
	b->m_sessions = adm_gauge("postern_mcp_sessions", "MCP sessions open on a stdio: or sandbox: route", l);
	b->m_max = adm_gauge("postern_mcp_sessions_max", "Session cap of a stdio: or sandbox: route", l);
	b->m_started = adm_counter("postern_mcp_sessions_started_total", "MCP sessions started (child processes)", l);
	b->m_reclaimed = adm_counter("postern_mcp_sessions_reclaimed_total",
				     "Idle MCP sessions ended because the route neared its session cap", l);
	b->m_refused = adm_counter("postern_mcp_sessions_refused_total", "New MCP sessions refused (503): every session busy", l);
	b->m_dropped = adm_counter("postern_mcp_events_dropped_total",
				   "SSE events that fell out of a session's replay buffer before any client received them", l);
	b->m_events = adm_counter("postern_mcp_events_total", "SSE events made from the server's messages", l);
	snprintf(l2, sizeof l2, "%s,kind=\"get\"", l);
	b->m_streams_get = adm_gauge("postern_mcp_streams", "SSE streams open (get: standalone GET streams; post: POST responses)", l2);
	snprintf(l2, sizeof l2, "%s,kind=\"post\"", l);
	b->m_streams_post = adm_gauge("postern_mcp_streams", "SSE streams open (get: standalone GET streams; post: POST responses)", l2);
	b->m_modern_requests = adm_counter("postern_mcp_modern_requests_total",
					   "2026-07-28 requests served on a stdio: or sandbox: route (shared children)", l);
	b->m_modern_refused = adm_counter("postern_mcp_modern_refused_total",
					  "2026-07-28 requests refused (429): the route's in-flight cap was reached", l);
	b->m_modern_cancelled = adm_counter("postern_mcp_modern_cancelled_total",
					    "2026-07-28 requests cancelled (stream closed, notifications/cancelled, timeout)", l);
	b->m_modern_children = adm_gauge("postern_mcp_modern_children", "Shared children serving 2026-07-28 clients", l);
	b->m_modern_inflight = adm_gauge("postern_mcp_modern_inflight", "2026-07-28 requests in flight", l);
	adm_set(b->m_max, b->max_sessions);
	mbri_metrics(b);
	return b;
nomem:
	snprintf(err, errlen, "out of memory");
	mbr_free(b);
	return NULL;
}

/* Lets go of the bridge's metric series, dropping them from the registry when drop is set. */
static void metrics_release(mbr *b, bool drop)
{
	adm_metric **ms[] = { &b->m_sessions, &b->m_max, &b->m_started, &b->m_reclaimed, &b->m_refused,
			      &b->m_dropped, &b->m_events, &b->m_streams_get, &b->m_streams_post,
			      &b->m_modern_requests, &b->m_modern_refused, &b->m_modern_cancelled,
			      &b->m_modern_children, &b->m_modern_inflight };
	for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
		if (drop)
			adm_metric_drop(*ms[i]);
		*ms[i] = NULL;
	}
}

void mbr_forget_metrics(mbr *b)
{
	if (b)
		metrics_release(b, false);
}

void mbr_free(mbr *b)
{
	if (!b)
		return;
	b->freeing = true;
	for (sess *s = b->sessions, *next; s; s = next) {
		next = s->next;
		/* s may be freed by mbri_close_all's callbacks only later, from the loop. */
		mbri_end(s, "gateway shutting down");
		if (!s->exited)
			uv_process_kill(&s->proc, SIGKILL);
		mbri_close_all(s);
	}
	metrics_release(b, true);
	/* Closing sessions still point at b: the last one to close frees it (callers run the loop after). */
	for (size_t i = 0; b->argv && i < b->argc; i++)
		free(b->argv[i]);
	free(b->argv);
	b->argv = NULL;
	free(b->workspace_root);
	b->workspace_root = NULL;
	free(b->init_result);
	b->init_result = NULL;
	if (!b->sessions) {
		free(b->name);
		free(b);
	}
}

unsigned mbr_sessions(const mbr *b) { return live_sessions(b); }

void mbr_get_stats(const mbr *b, mbr_stats *out)
{
	*out = b->st;
	out->sessions = live_sessions(b);
	out->modern_children = out->modern_inflight = 0;
	for (const sess *s = b->sessions; s; s = s->next)
		if (s->modern) {
			out->modern_children += !s->ending;
			out->modern_inflight += s->nmreqs;
		}
}
