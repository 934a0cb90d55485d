/* The stdio bridge's 2026-07-28 era: stateless requests of modern clients served by a few shared children
 * of the route, which speak the legacy protocol.
 *
 * The bridge is the one legacy client of each shared child: it sends initialize (MBR_LEGACY_VERSION,
 * capabilities {}: no sampling, roots or elicitation, which modern clients cannot answer) and
 * notifications/initialized, and keeps the initialize result for server/discover. A modern request is
 * written with its id and progress token replaced by a bridge-unique integer (mcpbridge_wire.c), so that two
 * clients using the same id cannot meet on one child; the answers are mapped back. A response with nothing
 * before it goes out as application/json; progress (and, see below, log messages) before it turn the
 * answer into an SSE stream scoped to that request. Nothing else of the child reaches a modern client:
 * server requests are answered by the bridge (ping: {}, others -32601), other notifications dropped.
 * Closing the stream (or the connection) cancels the request: notifications/cancelled goes to the child.
 * Routing of notifications/message: a pipe carries no request association, so a log message goes to the
 * one request in flight on that child when there is exactly one and it asked for logs (_meta logLevel);
 * otherwise it is dropped rather than shown to a client it may not belong to. */
#include "proxy/mcpbridge_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "guard/jrpc.h"
#include "core/sse.h"

#ifndef POSTERN_VERSION
#define POSTERN_VERSION "dev"
#endif

#define META_LOGLEVEL "io.modelcontextprotocol/logLevel"

/* ---- whole answers ------------------------------------------------------------------------------------- */

static const char oom_body[] = "{\"jsonrpc\":\"2.0\",\"error\":{\"code\":-32603,\"message\":\"out of memory\"}}";

/* A JSON-RPC error for id (JSON text; NULL: none) as the whole answer. */
static void reply_error(const mbr_sink *k, void *ud, int status, const char *id, int code, const char *msg,
			const json_t *data)
{
	char *body = NULL;
	if (jrpc_error_body(id, code, msg, data, &body, NULL) < 0)
		body = NULL;
	mbri_reply(k, ud, body ? status : 500, NULL, "application/json", body ? body : oom_body);
	free(body);
}

static void reply_unsupported(const mbr_sink *k, void *ud, const char *id, const char *v)
{
	char msg[160];
	json_t *data = json_pack("{s:[s], s:s}", "supported", MBR_MODERN_VERSION, "requested", v ? v : "");
	snprintf(msg, sizeof msg, "Unsupported protocol version: this server speaks %s (or 2025-x with initialize)",
		 MBR_MODERN_VERSION);
	reply_error(k, ud, 400, id, JRPC_E_UNSUPPORTED_VER, msg, data);
	json_decref(data);
}

/* ---- requests in flight -------------------------------------------------------------------------------- */

static void mp_free(mbri_mp *mp)
{
	mbr *b = mp->q.b;
	sess *s = mp->s;
	for (mbri_mp **pp = &s->mreqs; *pp; pp = &(*pp)->next)
		if (*pp == mp) {
			*pp = mp->next;
			s->nmreqs--;
			break;
		}
	if (mp->q.streaming)
		b->st.post_streams--;
	while (mp->qhead) {
		mbri_mq *e = mp->qhead;
		mp->qhead = e->next;
		free(e);
	}
	free(mp->cid);
	free(mp->ctoken);
	free(mp->line);
	free(mp);
	s->last_active = mbri_now(b);
	mbri_metrics(b);
}

/* The child stops working on mp: it had the request, and its answer is no longer wanted. */
static void cancel_on_child(mbri_mp *mp, const char *reason)
{
	mbr *b = mp->q.b;
	char line[200];
	if (mp->line || mp->discover || mp->s->ending)
		return; /* never written, or the child is gone */
	snprintf(line, sizeof line,
		 "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":%lld,\"reason\":\"%s\"}}",
		 mp->bid, reason);
	if (mbri_write_text(mp->s, line, strlen(line)) < 0)
		return;
	b->st.modern_cancelled++;
	adm_add(b->m_modern_cancelled, 1);
	log_info("msg=\"mcp request cancelled\" route=%s child=%.8s era=2026-07-28 id=%lld method=%s reason=\"%s\"",
		 b->name, mp->s->id, mp->bid, mp->method, reason);
}

/* The client is gone (a write failed): forget mp without a callback. */
static void mp_lost(mbri_mp *mp, bool answered)
{
	if (!answered)
		cancel_on_child(mp, "the client closed the stream");
	mp_free(mp);
}

/* Writes what mp's client can take. Once the response is queued everything goes, over the high-water mark
 * too (it ends the exchange, and the queue before it is capped). Returns 1 when mp is gone. */
static int mp_flush(mbri_mp *mp)
{
	const mbr_sink *k = mp->q.sink;
	void *ud = mp->q.ud;
	while (mp->qhead) {
		mbri_mq *e = mp->qhead;
		bool final;
		int r;
		if (!mp->answered && k->full(ud)) {
			mp->q.blocked = true;
			return 0;
		}
		if (!mp->q.streaming) {
			mp->q.streaming = true;
			mp->q.b->st.post_streams++;
			mbri_metrics(mp->q.b);
			if (k->stream_head(ud, 200, NULL) < 0) {
				mp_lost(mp, false);
				return 1;
			}
		}
		mp->qhead = e->next;
		if (!mp->qhead)
			mp->qtail = &mp->qhead;
		mp->nq--;
		mp->qbytes -= e->len;
		final = e->final;
		r = k->stream_data(ud, e->data, e->len);
		free(e);
		if (r < 0) {
			mp_lost(mp, final);
			return 1;
		}
		mp->q.last_write = mbri_now(mp->q.b);
		if (final) {
			mp_free(mp); /* before the callback: the caller may start its next exchange from it */
			k->stream_end(ud);
			return 1;
		}
	}
	mp->q.blocked = false;
	return 0;
}

/* One message for mp's client: the response (final; mp is gone after) or a notification before it. */
static void mp_push(mbri_mp *mp, const char *json, size_t n, bool final, int status)
{
	sse_event ev = { .data = json, .data_len = n, .retry = -1 };
	size_t need;
	mbri_mq *e;
	cbuf c;

	if (final && !mp->q.streaming && !mp->qhead) {
		/* Nothing before it: plain JSON. */
		const mbr_sink *k = mp->q.sink;
		void *ud = mp->q.ud;
		mp_free(mp);
		mbri_reply(k, ud, status, NULL, "application/json", json);
		return;
	}
	if (!final && !mp->q.sse)
		return; /* a client that takes JSON only gets the response alone */
	need = sse_encoded_len(&ev);
	if (!final && (mp->nq >= MBR_MODERN_QUEUE_EVENTS || mp->qbytes + need > MBR_MODERN_QUEUE_BYTES)) {
		log_warn("msg=\"mcp event dropped: the client reads too slowly\" route=%s era=2026-07-28 id=%lld "
			 "queued=%u cap_events=%u cap_bytes=%u",
			 mp->q.b->name, mp->bid, mp->nq, MBR_MODERN_QUEUE_EVENTS, MBR_MODERN_QUEUE_BYTES);
		mp->q.b->st.events_dropped++;
		adm_add(mp->q.b->m_dropped, 1);
		return;
	}
	cbuf_init(&c, need, need);
	if (sse_encode(&c, &ev) < 0 || !(e = malloc(sizeof *e + c.len))) {
		cbuf_free(&c);
		if (final) { /* the exchange must still end */
			const mbr_sink *k = mp->q.sink;
			void *ud = mp->q.ud;
			bool streaming = mp->q.streaming;
			mp_free(mp);
			if (streaming)
				k->stream_end(ud);
			else
				mbri_reply(k, ud, 500, NULL, "application/json", oom_body);
		}
		return;
	}
	memcpy(e->data, cbuf_str(&c), c.len);
	e->len = c.len;
	e->final = final;
	e->next = NULL;
	cbuf_free(&c);
	*mp->qtail = e;
	mp->qtail = &e->next;
	mp->nq++;
	mp->qbytes += e->len;
	mp->q.b->st.events++;
	adm_add(mp->q.b->m_events, 1);
	if (final)
		mp->answered = true;
	mp_flush(mp);
}

/* Ends mp with a JSON-RPC error of the bridge's. */
static void mp_fail(mbri_mp *mp, int code, const char *msg, const json_t *data)
{
	char *body = NULL;
	if (jrpc_error_body(mp->cid, code, msg, data, &body, NULL) < 0)
		body = NULL;
	mp_push(mp, body ? body : oom_body, body ? strlen(body) : strlen(oom_body), true, 200);
	free(body);
}

static void answer_discover(mbri_mp *mp)
{
	mbr *b = mp->q.b;
	char *out = NULL, why[160];
	if (!b->init_result || mbr_modern_discover(b->init_result, strlen(b->init_result), mp->cid, &out, why, sizeof why) < 0) {
		mp_fail(mp, JRPC_E_INTERNAL, "the MCP server's initialize result could not be read", NULL);
		return;
	}
	mp_push(mp, out, strlen(out), true, 200);
	free(out);
}

/* ---- the shared children ------------------------------------------------------------------------------- */

int mbri_modern_start(sess *s)
{
	char line[400];
	uint32_t wait = s->b->req_ms < MBR_MODERN_INIT_MS ? s->b->req_ms : MBR_MODERN_INIT_MS;
	snprintf(line, sizeof line,
		 "{\"jsonrpc\":\"2.0\",\"id\":\"%s\",\"method\":\"initialize\",\"params\":{\"protocolVersion\":\"%s\","
		 "\"capabilities\":{},\"clientInfo\":{\"name\":\"postern\",\"version\":\"%s\"}}}",
		 MBR_INIT_ID, MBR_LEGACY_VERSION, POSTERN_VERSION);
	s->init_deadline = mbri_now(s->b) + wait;
	return mbri_write_text(s, line, strlen(line));
}

/* The least-loaded shared child; a new one when every one has MBR_MODERN_SPAWN_LOAD requests and the route
 * has fewer than modern_children. NULL (why says why) when there is none and none starts. */
static sess *pick(mbr *b, char *why, size_t whylen)
{
	sess *best = NULL, *s;
	unsigned n = 0;
	for (s = b->sessions; s; s = s->next) {
		if (!s->modern || s->ending)
			continue;
		n++;
		if (!best || s->nmreqs < best->nmreqs)
			best = s;
	}
	if (best && (best->nmreqs < MBR_MODERN_SPAWN_LOAD || n >= b->modern_children))
		return best;
	if (mbri_spawn(b, true, &s, why, whylen) < 0) {
		log_error("msg=\"cannot start MCP server\" route=%s era=2026-07-28 reason=\"%s\"", b->name, why);
		return best;
	}
	if (mbri_modern_start(s) < 0) {
		snprintf(why, whylen, "cannot write to the MCP server");
		mbri_end(s, why);
		return best;
	}
	return s;
}

static void init_done(sess *s, const char *line, size_t n)
{
	mbr *b = s->b;
	json_t *j = json_loadb(line, n, 0, NULL), *res = json_object_get(j, "result"), *v;
	char why[300], q1[64], q2[140], *txt;
	const char *note = "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}";

	if (!json_is_object(res) || !(txt = json_dumps(res, JSON_COMPACT))) {
		v = json_object_get(json_object_get(j, "error"), "message");
		snprintf(why, sizeof why, "the MCP server refused the bridge's initialize: %s",
			 json_is_string(v) ? json_string_value(v) : "no result");
		json_decref(j);
		mbri_end(s, why);
		return;
	}
	free(b->init_result);
	b->init_result = txt;
	s->initialized = true;
	s->init_deadline = 0;
	v = json_object_get(res, "protocolVersion");
	log_info("msg=\"mcp shared child initialized\" route=%s child=%.8s protocol=%s server=%s", b->name, s->id,
		 log_quote(json_is_string(v) ? json_string_value(v) : "", q1, sizeof q1),
		 log_quote(json_string_value(json_object_get(json_object_get(res, "serverInfo"), "name")), q2, sizeof q2));
	json_decref(j);
	if (mbri_write_text(s, note, strlen(note)) < 0) {
		mbri_end(s, "cannot write to the MCP server");
		return;
	}
	/* What waited for it; an answer's callback may add requests (they are written at once) or end s. */
	for (int guard = 0; guard < 100000 && !s->ending; guard++) {
		mbri_mp *mp = s->mreqs;
		while (mp && !mp->line && !mp->discover)
			mp = mp->next;
		if (!mp)
			break;
		if (mp->discover) {
			answer_discover(mp);
		} else if (mbri_write_text(s, mp->line, strlen(mp->line)) < 0) {
			free(mp->line);
			mp->line = NULL;
			mp_fail(mp, JRPC_E_INTERNAL, "cannot write to the MCP server", NULL);
		} else {
			free(mp->line);
			mp->line = NULL;
		}
	}
}

static mbri_mp *by_key(sess *s, const char *key)
{
	long long bid;
	char *end;
	if (key[0] != 'n' || key[1] != ':')
		return NULL;
	bid = strtoll(key + 2, &end, 10);
	if (*end)
		return NULL;
	for (mbri_mp *mp = s->mreqs; mp; mp = mp->next)
		if (mp->bid == bid && !mp->line && !mp->discover)
			return mp;
	return NULL;
}

/* A request of the child: no modern client may get it (2026-07-28 servers send none). */
static void server_request(sess *s, const mbr_msg *m, const char *line, size_t n)
{
	mbr *b = s->b;
	char *out = NULL, q[160];
	if (!strcmp(m->method, "ping")) {
		json_t *j = json_loadb(line, n, 0, NULL);
		json_t *r = j ? json_pack("{s:s, s:O, s:{}}", "jsonrpc", "2.0", "id", json_object_get(j, "id"), "result") : NULL;
		out = r ? json_dumps(r, JSON_COMPACT) : NULL;
		json_decref(r);
		json_decref(j);
	} else {
		b->st.modern_server_requests++;
		log_warn("msg=\"server request refused on a shared child\" route=%s child=%.8s method=%s "
			 "reason=\"2026-07-28 clients take no server requests\"",
			 b->name, s->id, log_quote(m->method, q, sizeof q));
		out = mbri_error_line(m->idkey, JRPC_E_METHOD,
				      "Method not found: this client (postern's stdio bridge for 2026-07-28 clients) takes no "
				      "server requests");
	}
	if (out)
		mbri_write_text(s, out, strlen(out));
	free(out);
}

/* The client's view of a message of the child for mp. */
static void to_client(mbri_mp *mp, const char *line, size_t n, bool final)
{
	char *out = NULL, why[160];
	int code = 0;
	if (mbr_modern_from_child(line, n, mp->method, mp->cid, mp->ctoken, &out, &code, why, sizeof why) < 0) {
		log_warn("msg=\"mcp message not rewritten\" route=%s era=2026-07-28 id=%lld reason=\"%s\"", mp->q.b->name,
			 mp->bid, why);
		if (final)
			mp_fail(mp, JRPC_E_INTERNAL, "the MCP server's response could not be read", NULL);
		return;
	}
	/* Method not found is 404 on the modern wire (the body tells it apart from a legacy 404). */
	mp_push(mp, out, strlen(out), final, final && code == JRPC_E_METHOD ? 404 : 200);
	free(out);
}

void mbri_modern_deliver(sess *s, const char *line, size_t n)
{
	char why[160];
	mbr_msg m;
	mbri_mp *mp = NULL;

	if (mbr_inspect(line, n, &m, why, sizeof why) == MBR_INVALID) {
		log_debug("msg=\"dropped invalid message from MCP server\" route=%s reason=\"%s\"", s->b->name, why);
		return;
	}
	s->last_active = mbri_now(s->b);
	if (m.kind == MBR_RESPONSE) {
		if (!strcmp(m.idkey, "s:" MBR_INIT_ID)) {
			if (!s->initialized)
				init_done(s, line, n);
		} else if ((mp = by_key(s, m.idkey))) {
			to_client(mp, line, n, true);
		} else {
			log_debug("msg=\"response for no request in flight (cancelled or timed out)\" route=%s child=%.8s",
				  s->b->name, s->id);
		}
		return;
	}
	if (m.kind == MBR_REQUEST) {
		server_request(s, &m, line, n);
		return;
	}
	if (!strcmp(m.method, "notifications/progress")) {
		if ((mp = by_key(s, m.progress)) && !mp->ctoken)
			mp = NULL;
	} else if (!strcmp(m.method, "notifications/message")) {
		unsigned live = 0;
		for (mbri_mp *o = s->mreqs; o; o = o->next)
			if (!o->line && !o->discover) {
				live++;
				mp = o;
			}
		if (live != 1 || !mp->loglevel)
			mp = NULL;
	}
	if (mp)
		to_client(mp, line, n, false);
	else
		log_debug("msg=\"mcp server message not for any 2026-07-28 request\" route=%s child=%.8s method=%s",
			  s->b->name, s->id, m.method);
}

void mbri_modern_end(sess *s, const char *why)
{
	/* Exited, or its output closed: the child is gone. Else the bridge ended it (initialize, shutdown). */
	bool exited = s->exited || s->out_closed;
	char msg[200];
	json_t *data = json_pack("{s:s}", "reason", why);
	snprintf(msg, sizeof msg, exited ? "server process exited" : "MCP server ended: %s", why);
	for (int guard = 0; s->mreqs && guard < 100000; guard++)
		mp_fail(s->mreqs, JRPC_E_INTERNAL, msg, data);
	json_decref(data);
	mbri_metrics(s->b);
}

void mbri_modern_tick(sess *s, uint64_t now)
{
	if (!s->initialized && s->init_deadline && now >= s->init_deadline) {
		mbri_end(s, "the MCP server did not answer the bridge's initialize in time");
		return;
	}
	for (int guard = 0; guard < 100000 && !s->ending; guard++) {
		mbri_mp *mp = s->mreqs;
		while (mp && now < mp->deadline)
			mp = mp->next;
		if (!mp)
			break;
		cancel_on_child(mp, "timeout");
		mp_fail(mp, JRPC_E_INTERNAL, "MCP server did not answer in time", NULL);
	}
	for (mbri_mp *mp = s->mreqs; mp; mp = mp->next) {
		cbuf ka = CBUF_INIT(32, 64);
		int r;
		if (!mp->q.streaming || mp->q.blocked || now - mp->q.last_write < MBR_KEEPALIVE_MS || mp->q.sink->full(mp->q.ud))
			continue;
		mp->q.last_write = now;
		if (sse_comment(&ka, "keep-alive") < 0)
			continue;
		r = mp->q.sink->stream_data(mp->q.ud, cbuf_str(&ka), ka.len);
		cbuf_free(&ka);
		if (r < 0) {
			mp_lost(mp, false);
			return; /* the list changed; the rest get theirs next tick */
		}
	}
}

void mbri_modern_cancel(mbr_req *q)
{
	mp_lost((mbri_mp *)q, false);
}

void mbri_modern_resume(mbr_req *q)
{
	mbri_mp *mp = (mbri_mp *)q;
	if (mp->q.blocked)
		mp_flush(mp);
}

/* ---- POSTs --------------------------------------------------------------------------------------------- */

static unsigned inflight(const mbr *b)
{
	unsigned n = 0;
	for (const sess *s = b->sessions; s; s = s->next)
		n += s->modern ? s->nmreqs : 0;
	return n;
}

/* notifications/cancelled names the client's id, which other clients may use too: it is forwarded only when
 * exactly one request in flight has it. Other notifications have no meaning for a shared child. */
static void notification(mbr *b, const jrpc_msg *m)
{
	json_t *rid = json_object_get(m->params, "requestId");
	char *key;
	mbri_mp *hit = NULL;
	unsigned n = 0;

	if (strcmp(m->method, "notifications/cancelled") != 0 || !rid) {
		log_debug("msg=\"mcp notification not forwarded to a shared child\" route=%s method=%s", b->name, m->method);
		return;
	}
	if (!(key = json_dumps(rid, JSON_COMPACT | JSON_ENCODE_ANY)))
		return;
	for (sess *s = b->sessions; s; s = s->next)
		for (mbri_mp *mp = s->modern && !s->ending ? s->mreqs : NULL; mp; mp = mp->next)
			if (!strcmp(mp->cid, key)) {
				hit = mp;
				n++;
			}
	free(key);
	if (n != 1) {
		log_info("msg=\"notifications/cancelled not forwarded\" route=%s era=2026-07-28 matches=%u "
			 "reason=\"%s\"", b->name, n, n ? "more than one request in flight has that id" : "no request in flight has that id");
		return;
	}
	cancel_on_child(hit, "notifications/cancelled from the client");
	mp_fail(hit, JRPC_E_INTERNAL, "request cancelled by the client (notifications/cancelled)", NULL);
}

static bool is_removed(const char *method)
{
	static const char *const v[] = { "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe" };
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
		if (!strcmp(method, v[i]))
			return true;
	return false;
}

static int request(mbr *b, const mbr_http *h, const jrpc_msg *m, const mbr_sink *k, void *ud, mbr_req **out)
{
	char why[300], msg[200];
	json_t *meta;
	mbri_mp *mp;
	sess *s;
	int r;

	if (is_removed(m->method) || !strcmp(m->method, "subscriptions/listen")) {
		snprintf(msg, sizeof msg, is_removed(m->method) ? "Method not found: %s is not part of %s"
								 : "Method not found: %s is not offered by the stdio bridge (%s)",
			 m->method, is_removed(m->method) ? MBR_MODERN_VERSION : "its server is a 2025-x stdio server");
		reply_error(k, ud, 404, m->id, JRPC_E_METHOD, msg, NULL);
		return 1;
	}
	if (inflight(b) >= b->max_modern) {
		snprintf(msg, sizeof msg, "too many 2026-07-28 requests in flight on route %s (max %u)", b->name, b->max_modern);
		b->st.modern_refused++;
		adm_add(b->m_modern_refused, 1);
		log_warn("msg=\"modern request cap reached\" route=%s max=%u", b->name, b->max_modern);
		reply_error(k, ud, 429, m->id, -32000, msg, NULL);
		return 1;
	}
	b->st.modern_requests++;
	adm_add(b->m_modern_requests, 1);
	if (!strcmp(m->method, "server/discover") && b->init_result) {
		char *body = NULL;
		if (mbr_modern_discover(b->init_result, strlen(b->init_result), m->id, &body, why, sizeof why) < 0)
			reply_error(k, ud, 500, m->id, JRPC_E_INTERNAL, why, NULL);
		else
			mbri_reply(k, ud, 200, NULL, "application/json", body);
		free(body);
		return 1;
	}
	why[0] = 0;
	if (!(s = pick(b, why, sizeof why))) {
		reply_error(k, ud, 502, m->id, JRPC_E_INTERNAL, why[0] ? why : "cannot start the MCP server", NULL);
		return 1;
	}
	if (!(mp = calloc(1, sizeof *mp)))
		return -ENOMEM;
	mp->q.modern = true;
	mp->q.b = b;
	mp->q.sink = k;
	mp->q.ud = ud;
	mp->q.sse = h->accept_sse;
	mp->q.last_write = mbri_now(b);
	mp->qtail = &mp->qhead;
	mp->s = s;
	mp->bid = ++b->next_bid;
	mp->deadline = mbri_now(b) + b->req_ms;
	snprintf(mp->method, sizeof mp->method, "%s", m->method);
	meta = json_object_get(m->params, "_meta");
	mp->loglevel = json_is_string(json_object_get(meta, META_LOGLEVEL));
	if (!strcmp(m->method, "server/discover")) {
		mp->discover = true;
		r = (mp->cid = strdup(m->id)) ? 0 : -ENOMEM;
	} else {
		r = mbr_modern_to_child((const char *)h->body, h->body_len, mp->bid, &mp->line, &mp->cid, &mp->ctoken, why,
					sizeof why);
	}
	if (r < 0) {
		free(mp->cid);
		free(mp);
		if (r == -ENOMEM)
			return r;
		reply_error(k, ud, 400, m->id, JRPC_E_INVALID_REQUEST, why, NULL);
		return 1;
	}
	{
		mbri_mp **tail = &s->mreqs; /* oldest first: held requests are written in order */
		while (*tail)
			tail = &(*tail)->next;
		*tail = mp;
		s->nmreqs++;
	}
	s->last_active = mbri_now(b);
	mbri_metrics(b);
	if (s->initialized && !mp->discover) {
		r = mbri_write_text(s, mp->line, strlen(mp->line));
		free(mp->line);
		mp->line = NULL;
		if (r < 0) {
			mp_fail(mp, JRPC_E_INTERNAL, "cannot write to the MCP server", NULL);
			return 1;
		}
	}
	log_debug("msg=\"mcp request\" route=%s child=%.8s era=2026-07-28 id=%lld method=%s", b->name, s->id, mp->bid,
		  mp->method);
	*out = &mp->q;
	return 1;
}

int mbri_modern_post(mbr *b, const mbr_http *h, const mbr_sink *k, void *ud, mbr_req **out)
{
	jrpc_limits lim = { .max_body = b->max_msg };
	jrpc_headers hd = { .protocol_version = h->protocol_version, .method = h->mcp_method, .name = h->mcp_name };
	jrpc_body *jb = NULL;
	jrpc_mismatch mm;
	const jrpc_msg *m;
	const char *v;
	char err[200];
	int rc = 1;

	if (jrpc_new(h->body, h->body_len, &lim, &jb, err, sizeof err) < 0)
		return 0; /* not JSON, or over a cap: the legacy path says what */
	if (jrpc_era_of(jb, h->protocol_version) != JRPC_ERA_MODERN) {
		jrpc_free(jb);
		return 0;
	}
	m = jrpc_at(jb, 0);
	if (m->kind == JRPC_INVALID) {
		reply_error(k, ud, 400, m->id, m->invalid_code, m->why, NULL);
		goto out;
	}
	if (m->kind == JRPC_RESULT || m->kind == JRPC_ERROR) {
		reply_error(k, ud, 400, NULL, JRPC_E_INVALID_REQUEST,
			    "a 2026-07-28 client sends no responses (its server sends it no requests)", NULL);
		goto out;
	}
	v = m->kind == JRPC_REQUEST && m->meta_version ? m->meta_version : h->protocol_version;
	if (!v || strcmp(v, MBR_MODERN_VERSION) != 0) {
		reply_unsupported(k, ud, m->kind == JRPC_REQUEST ? m->id : NULL, v);
		goto out;
	}
	if (m->kind == JRPC_REQUEST && !m->meta_version) {
		reply_error(k, ud, 400, m->id, JRPC_E_INVALID_PARAMS,
			    "params._meta[\"" JRPC_META_VERSION "\"] is required on every 2026-07-28 request", NULL);
		goto out;
	}
	if (jrpc_check_headers(m, &hd, &mm) < 0) {
		char *body = NULL;
		if (jrpc_mismatch_body(m, &mm, &body, NULL) < 0)
			body = NULL;
		mbri_reply(k, ud, body ? 400 : 500, NULL, "application/json", body ? body : oom_body);
		free(body);
		goto out;
	}
	if (m->kind == JRPC_NOTIFICATION) {
		notification(b, m);
		mbri_reply(k, ud, 202, NULL, NULL, NULL);
		goto out;
	}
	rc = request(b, h, m, k, ud, out);
out:
	jrpc_free(jb);
	return rc;
}
