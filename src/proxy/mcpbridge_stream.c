/* The stdio bridge's streams: where each message from the child goes, the per-session replay buffer of SSE
 * events, and writing them to the exchanges (POST SSE responses, the GET stream, resumed streams).
 *
 * Routing (a stdio child gives no request association, so it is inferred):
 *  - a response goes to its request (as application/json when nothing was streamed for it yet);
 *  - notifications/progress to the request whose params._meta.progressToken it names, and
 *    notifications/cancelled to the request it names, when that request streams (its client accepts SSE);
 *  - anything else (other notifications, server requests, progress for a JSON-only request) to the GET
 *    stream when one is open, else to the oldest request in flight that streams, else it is held (stream 0)
 *    for the next GET stream. */
#include "proxy/mcpbridge_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/sse.h"

/* ---- exchanges ----------------------------------------------------------------------------------------- */

mbr_req *mbri_conn_new(sess *s, const mbr_sink *k, void *ud)
{
	mbr_req *q = calloc(1, sizeof *q);
	if (!q)
		return NULL;
	q->b = s->b;
	q->s = s;
	q->sink = k;
	q->ud = ud;
	q->last_write = mbri_now(s->b);
	q->next = s->conns;
	s->conns = q;
	return q;
}

/* Detaches q from its session (no callback). */
static void conn_unlink(mbr_req *q)
{
	sess *s = q->s;
	mbr_req **pp;
	if (!s)
		return;
	for (pp = &s->conns; *pp; pp = &(*pp)->next)
		if (*pp == q) {
			*pp = q->next;
			break;
		}
	if (q->get || q->streaming)
		log_info("msg=\"mcp stream closed\" route=%s session=%.8s stream=%" PRIu32 " kind=%s", s->b->name, s->id,
			 q->stream, q->get ? "get" : "post");
	if (s->get == q) {
		s->get = NULL;
		s->b->st.get_streams--;
	} else if (q->streaming && !q->get) {
		s->b->st.post_streams--;
	}
	if (q->p && q->p->conn == q)
		q->p->conn = NULL;
	q->p = NULL;
	q->s = NULL;
	s->last_active = mbri_now(s->b);
	mbri_metrics(s->b);
}

void mbri_pend_free(sess *s, mbri_pend *p)
{
	mbri_pend **pp;
	for (pp = &s->pending; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			s->npending--;
			break;
		}
	if (p->conn)
		p->conn->p = NULL;
	free(p);
}

void mbr_req_cancel(mbr_req *q)
{
	sess *s;
	if (!q)
		return;
	if (q->modern) {
		mbri_modern_cancel(q);
		return;
	}
	s = q->s;
	if (s && q->p && !q->streaming && !q->get)
		mbri_pend_free(s, q->p); /* nothing of it reached the client: its response will be dropped */
	conn_unlink(q);
	free(q);
	if (s)
		mbri_flow(s);
}

/* The client is gone (a write failed): forget q without a callback. */
static void conn_lost(mbr_req *q)
{
	sess *s = q->s;
	conn_unlink(q);
	free(q);
	if (s)
		mbri_flow(s);
}

/* Ends q's SSE stream: the last callback. */
static void conn_end(mbr_req *q)
{
	const mbr_sink *k = q->sink;
	void *ud = q->ud;
	sess *s = q->s;
	conn_unlink(q);
	free(q);
	if (s)
		mbri_flow(s);
	k->stream_end(ud);
}

static int conn_start(mbr_req *q)
{
	sess *s = q->s;
	if (q->streaming)
		return 0;
	q->streaming = true;
	if (!q->get)
		s->b->st.post_streams++;
	mbri_metrics(s->b);
	if (q->sink->stream_head(q->ud, 200, q->p && q->p->init ? s->id : NULL) < 0) {
		conn_lost(q);
		return -EPIPE;
	}
	return 0;
}

/* ---- the replay buffer --------------------------------------------------------------------------------- */

static mbri_ev *ring_at(sess *s, unsigned i) { return &s->ring[(s->ring_head + i) % MBR_REPLAY_MAX_EVENTS]; }

void mbri_ring_free(sess *s)
{
	for (unsigned i = 0; s->ring && i < s->ring_n; i++)
		cbuf_free(&ring_at(s, i)->bytes);
	free(s->ring);
	s->ring = NULL;
	s->ring_n = 0;
	s->ring_bytes = 0;
}

static void ring_evict(sess *s)
{
	mbri_ev *e = ring_at(s, 0);
	if (!e->delivered) {
		s->b->st.events_dropped++;
		adm_add(s->b->m_dropped, 1);
		log_warn("msg=\"mcp event dropped from the replay buffer before delivery\" route=%s session=%.8s "
			 "stream=%" PRIu32 " seq=%" PRIu64 " cap_events=%u cap_bytes=%u dropped_total=%" PRIu64,
			 s->b->name, s->id, e->stream, e->seq, MBR_REPLAY_MAX_EVENTS, MBR_REPLAY_MAX_BYTES,
			 s->b->st.events_dropped);
	}
	s->ring_bytes -= e->bytes.len;
	cbuf_free(&e->bytes);
	s->ring_head = (s->ring_head + 1) % MBR_REPLAY_MAX_EVENTS;
	s->ring_n--;
}

static int ring_add(sess *s, uint32_t stream, bool final, const char *json, size_t n)
{
	char id[48];
	sse_event ev = { .id = id, .data = json, .data_len = n, .retry = -1 };
	mbri_ev *e;
	size_t need;
	int r;

	if (!s->ring && !(s->ring = calloc(MBR_REPLAY_MAX_EVENTS, sizeof *s->ring)))
		return -ENOMEM;
	snprintf(id, sizeof id, "%" PRIu32 "-%" PRIu64, stream, s->next_seq + 1);
	need = sse_encoded_len(&ev);
	while (s->ring_n && (s->ring_n == MBR_REPLAY_MAX_EVENTS || s->ring_bytes + need > MBR_REPLAY_MAX_BYTES))
		ring_evict(s);
	e = ring_at(s, s->ring_n);
	cbuf_init(&e->bytes, need, need);
	if ((r = sse_encode(&e->bytes, &ev)) < 0)
		return r;
	e->seq = ++s->next_seq;
	e->stream = stream;
	e->final = final;
	e->delivered = false;
	s->ring_n++;
	s->ring_bytes += e->bytes.len;
	s->b->st.events++;
	adm_add(s->b->m_events, 1);
	return 0;
}

static bool stream_has_events(sess *s, uint32_t stream)
{
	for (unsigned i = 0; i < s->ring_n; i++)
		if (ring_at(s, i)->stream == stream)
			return true;
	return false;
}

/* Writes the events of q's stream after its cursor. Returns 1 when q is gone (ended or lost), else 0. */
static int conn_flush(mbr_req *q)
{
	sess *s = q->s;
	for (unsigned i = 0; i < s->ring_n; i++) {
		mbri_ev *e = ring_at(s, i);
		if (e->stream != q->stream || e->seq <= q->cursor)
			continue;
		if (q->sink->full(q->ud)) {
			q->blocked = true;
			mbri_flow(s);
			return 0;
		}
		if (conn_start(q) < 0)
			return 1;
		if (q->sink->stream_data(q->ud, cbuf_str(&e->bytes), e->bytes.len) < 0) {
			conn_lost(q);
			return 1;
		}
		e->delivered = true;
		q->cursor = e->seq;
		q->last_write = mbri_now(s->b);
		if (e->final) {
			conn_end(q);
			return 1;
		}
	}
	if (q->blocked) {
		q->blocked = false;
		mbri_flow(s);
	}
	return 0;
}

static bool conn_behind(mbr_req *q)
{
	sess *s = q->s;
	for (unsigned i = s->ring_n; i-- > 0;) {
		mbri_ev *e = ring_at(s, i);
		if (e->seq <= q->cursor)
			return false;
		if (e->stream == q->stream)
			return true;
	}
	return false;
}

void mbri_flush_stream(sess *s, uint32_t stream)
{
	/* A callback may end other exchanges or add some: start over after each one that wrote. */
	for (int guard = 0; guard < 1000; guard++) {
		mbr_req *q;
		for (q = s->conns; q; q = q->next)
			if (q->stream == stream && (q->get || q->sse) && !q->blocked && conn_behind(q))
				break;
		if (!q)
			return;
		conn_flush(q);
	}
}

void mbr_req_resume(mbr_req *q)
{
	sess *s;
	if (q && q->modern) {
		mbri_modern_resume(q);
		return;
	}
	if (!q || !q->s || !q->blocked)
		return;
	s = q->s;
	q->blocked = false;
	if (!conn_flush(q))
		mbri_flow(s);
}

/* ---- routing ------------------------------------------------------------------------------------------- */

static mbri_pend *pend_by(sess *s, const char *key, bool progress)
{
	if (!key[0])
		return NULL;
	for (mbri_pend *p = s->pending; p; p = p->next)
		if (!strcmp(progress ? p->progress : p->idkey, key))
			return p;
	return NULL;
}

/* The stream of a message with no request of its own. */
static uint32_t unassociated_stream(sess *s)
{
	if (s->get)
		return 0;
	for (mbri_pend *p = s->pending; p; p = p->next)
		if (p->stream && p->conn)
			return p->stream;
	return 0;
}

static void respond_json(sess *s, mbri_pend *p, int status, const char *line)
{
	mbr_req *q = p->conn;
	const mbr_sink *k = q->sink;
	void *ud = q->ud;
	const char *sid = p->init ? s->id : NULL;
	mbri_pend_free(s, p);
	conn_unlink(q);
	free(q);
	mbri_reply(k, ud, status, sid, "application/json", line);
}

/* The response (or an error in its place) to p. */
static void finish(sess *s, mbri_pend *p, int status, char *line, size_t n)
{
	uint32_t stream = p->stream;
	if (p->init)
		s->initialized = true;
	s->last_active = mbri_now(s->b);
	if (p->conn && !p->conn->streaming && !(stream && stream_has_events(s, stream))) {
		respond_json(s, p, status, line);
		return;
	}
	mbri_pend_free(s, p);
	if (!stream)
		return; /* a JSON-only request whose client went away */
	if (ring_add(s, stream, true, line, n) < 0) {
		log_warn("msg=\"cannot hold an mcp event\" route=%s session=%.8s", s->b->name, s->id);
		return;
	}
	mbri_flush_stream(s, stream);
}

void mbri_deliver(sess *s, char *line, size_t n)
{
	char why[160];
	mbr_msg m;
	mbri_pend *p = NULL;
	uint32_t stream;

	if (n == 0 || s->ending)
		return;
	if (s->modern) {
		mbri_modern_deliver(s, line, n);
		return;
	}
	if (mbr_inspect(line, n, &m, why, sizeof why) == MBR_INVALID) {
		log_debug("msg=\"dropped invalid message from MCP server\" route=%s reason=\"%s\"", s->b->name, why);
		return;
	}
	if (m.kind == MBR_RESPONSE) {
		if (!(p = pend_by(s, m.idkey, false))) {
			log_debug("msg=\"response for no pending request\" route=%s", s->b->name);
			return;
		}
		finish(s, p, 200, line, n);
		return;
	}
	if (m.kind == MBR_NOTIFICATION && !strcmp(m.method, "notifications/progress"))
		p = pend_by(s, m.progress, true);
	else if (m.kind == MBR_NOTIFICATION && !strcmp(m.method, "notifications/cancelled"))
		p = pend_by(s, m.related, false);
	/* A request that streams keeps its own messages, also while its client is away (for a resume). */
	stream = p && p->stream ? p->stream : unassociated_stream(s);
	if (ring_add(s, stream, false, line, n) < 0) {
		log_warn("msg=\"cannot hold an mcp event\" route=%s session=%.8s", s->b->name, s->id);
		return;
	}
	log_debug("msg=\"mcp server message\" route=%s session=%.8s method=%s stream=%" PRIu32, s->b->name, s->id,
		  m.method, stream);
	mbri_flush_stream(s, stream);
}

/* ---- GET streams --------------------------------------------------------------------------------------- */

static int parse_event_id(const char *s, uint32_t *stream, uint64_t *seq)
{
	char *end;
	unsigned long long a, b;
	if (!s || !*s || *s == '-' || *s == '+' || *s == ' ')
		return -EINVAL;
	errno = 0;
	a = strtoull(s, &end, 10);
	if (errno || *end != '-' || a > UINT32_MAX || end[1] == '-' || end[1] == '+' || end[1] == ' ' || !end[1])
		return -EINVAL;
	b = strtoull(end + 1, &end, 10);
	if (errno || *end)
		return -EINVAL;
	*stream = (uint32_t)a;
	*seq = b;
	return 0;
}

int mbri_open_get(sess *s, const mbr_sink *k, void *ud, const char *last, mbr_req **out)
{
	uint32_t stream = 0;
	uint64_t seq = 0;
	mbri_pend *p = NULL;
	mbr_req *q;

	*out = NULL;
	if (last && parse_event_id(last, &stream, &seq) < 0) {
		mbri_reply_rpc_error(k, ud, 400, -32000, "Bad Request: Last-Event-ID is not an event id of this server");
		return 0;
	}
	if (stream) {
		for (p = s->pending; p && p->stream != stream; p = p->next)
			;
		if (p && p->conn) {
			mbri_reply_rpc_error(k, ud, 409, -32000, "Conflict: that stream already has a connection");
			return 0;
		}
	} else if (s->get) {
		mbri_reply_rpc_error(k, ud, 409, -32000, "Conflict: Only one SSE stream is allowed per session");
		return 0;
	}
	if (!(q = mbri_conn_new(s, k, ud)))
		return -ENOMEM;
	q->get = q->sse = true;
	q->stream = stream;
	if (stream == 0 && !last) {
		/* A fresh GET stream: what no stream received yet, then what comes. */
		for (unsigned i = 0; i < s->ring_n; i++) {
			mbri_ev *e = ring_at(s, i);
			if (e->stream == 0 && e->delivered)
				q->cursor = e->seq;
		}
	} else {
		q->cursor = seq;
	}
	if (stream == 0) {
		q->standalone = true;
		s->get = q;
		s->b->st.get_streams++;
	} else if (p) {
		p->conn = q;
		q->p = p;
	}
	log_info("msg=\"mcp stream opened\" route=%s session=%.8s stream=%" PRIu32 " resume=%s", s->b->name, s->id,
		 stream, last ? "yes" : "no");
	*out = q;
	if (conn_start(q) < 0) {
		*out = NULL;
		return 0;
	}
	if (conn_flush(q)) {
		*out = NULL;
		return 0;
	}
	if (stream && !p) {
		/* A POST stream that is over (its response fell out of the buffer, or was sent): nothing more comes. */
		*out = NULL;
		conn_end(q);
		return 0;
	}
	mbri_flow(s);
	return 0;
}

/* ---- session end, deadlines, keep-alives --------------------------------------------------------------- */

void mbri_end_conns(sess *s, const char *why)
{
	char msg[200];
	snprintf(msg, sizeof msg, "MCP server session ended: %s", why);
	while (s->conns) {
		mbr_req *q = s->conns;
		if (!q->streaming) {
			const mbr_sink *k = q->sink;
			void *ud = q->ud;
			conn_unlink(q);
			free(q);
			mbri_reply_rpc_error(k, ud, 502, -32603, msg);
			continue;
		}
		if (q->p) {
			/* The request's error as its last event, written even over the high-water mark: it is one line. */
			char *line = mbri_error_line(q->p->idkey, -32603, msg);
			int r = line ? ring_add(s, q->stream, true, line, strlen(line)) : -ENOMEM;
			free(line);
			if (r == 0) {
				mbri_ev *e = ring_at(s, s->ring_n - 1);
				e->delivered = true;
				if (q->sink->stream_data(q->ud, cbuf_str(&e->bytes), e->bytes.len) < 0) {
					conn_lost(q);
					continue;
				}
			}
		}
		conn_end(q);
	}
	mbri_flow(s);
}

void mbri_stream_tick(sess *s, uint64_t now)
{
	bool again = true;
	for (int guard = 0; again && guard < 1000; guard++) {
		again = false;
		for (mbri_pend *p = s->pending; p; p = p->next) {
			if (now < p->deadline)
				continue;
			char *line = mbri_error_line(p->idkey, -32603, "MCP server did not answer in time");
			if (!line) {
				mbri_pend_free(s, p);
			} else {
				finish(s, p, 504, line, strlen(line));
				free(line);
			}
			again = true; /* the list changed */
			break;
		}
	}
	for (mbr_req *q = s->conns; q; q = q->next) {
		cbuf ka = CBUF_INIT(32, 64);
		int r;
		if (!q->streaming || q->blocked || now - q->last_write < MBR_KEEPALIVE_MS || q->sink->full(q->ud))
			continue;
		q->last_write = now;
		if (sse_comment(&ka, "keep-alive") < 0)
			continue;
		r = q->sink->stream_data(q->ud, cbuf_str(&ka), ka.len);
		cbuf_free(&ka);
		if (r < 0) {
			conn_lost(q);
			return; /* the list changed; the rest get theirs next tick */
		}
	}
}

void mbr_drain(mbr *b)
{
	for (sess *s = b->sessions; s; s = s->next)
		for (int guard = 0; guard < 1000; guard++) {
			mbr_req *q = s->conns;
			while (q && !(q->get && !q->p))
				q = q->next;
			if (!q)
				break;
			conn_end(q);
		}
}
