/* The MCP guard on what comes back: each JSON-RPC message of a response (a JSON body, or each event of an SSE
 * stream, from an http upstream or the stdio bridge) is recorded in the audit before it is released to the
 * client, and a tools/list, prompts/list or resources/list result is cut to what the client may call (policy,
 * and tools whose definition changed since they were pinned). What needs no change goes out byte for byte. */
#include "proxy/proxy_int.h"

#include "guard/audit.h"
#include "guard/jrpc.h"
#include "guard/pins.h"
#include "guard/policy.h"

enum { RM_NONE = 0, RM_PASS, RM_JSON, RM_SSE, RM_SWALLOW };

static pxg_req *find_req(pxg *g, const char *id)
{
	for (size_t i = 0; id && i < g->nreqs; i++)
		if (!g->reqs[i].done && !strcmp(g->reqs[i].id, id))
			return &g->reqs[i];
	return NULL;
}

/* ---- list filtering ------------------------------------------------------------------------------------ */

struct keep_ctx {
	px_conn *c;
	pol_kind kind;
	bool templates; /* resourceTemplates: entries are named by uriTemplate */
	bool pins_changed;
};

static void audit_pin_change(px_conn *c, const char *tool, const char *hex, const char *pinned)
{
	char q[300];
	aud_rec r = { .dir = "out", .method = "tools/list", .tool = tool, .tool_hash = hex, .decision = "deny",
		      .rule = "pin", .status = "pin_changed", .http_status = (int)c->status };
	log_warn("msg=\"tool definition changed since it was pinned: hidden and its calls refused until accepted\" "
		 "route=%s tool=%s pinned=%.16s now=%.16s hint=\"postern pins accept %s TOOL\"",
		 c->rt->name, log_quote(tool, q, sizeof q), pinned ? pinned : "-", hex, c->rt->name);
	pxi_audit(c, &r);
}

static bool keep_item(void *ctx, json_t *item)
{
	struct keep_ctx *k = ctx;
	px_conn *c = k->c;
	const px_route_guard *rg = pxi_route_guard(c);
	const char *key = k->templates ? "uriTemplate" : k->kind == POL_RESOURCE ? "uri" : "name";
	const char *name = json_string_value(json_object_get(item, key));
	char hex[PIN_HEX_LEN + 1];
	pin_verdict pv;

	if (!name)
		return k->kind != POL_TOOL; /* a tool without a name cannot be pinned or policed: hidden */
	if (k->kind == POL_TOOL) {
		if (pin_tool_hash(item, hex) < 0 || pin_check(c->px->pins, c->rt->name, name, hex, &pv) < 0)
			return false;
		if (pv == PIN_NEW)
			k->pins_changed = true;
		if (pv == PIN_CHANGED) {
			const char *pinned = NULL, *pending = NULL;
			pin_get(c->px->pins, c->rt->name, name, &pinned, &pending);
			k->pins_changed = true; /* the pending hash is kept for `pins accept` */
			audit_pin_change(c, name, hex, pinned);
			return false;
		}
	}
	return !rg->policy || pol_visible(rg->policy, k->kind, name, c->g->client_id) == 1;
}

static void save_pins(px *p)
{
	char err[300];
	if (p->pins_file && pin_save(p->pins, p->pins_file, err, sizeof err) < 0)
		log_error("msg=\"cannot save the tool pins\" file=%s err=\"%s\"", p->pins_file, err);
}

/* Filters one response (compact text of one message) of list shape: result.tools, result.prompts and
 * result.resources are each cut to what the client may call. By shape, not by the request it answers: a client
 * may match an id the guard would not ("1" for 1), so no answer escapes the filter by its id. *out NULL: unchanged. */
static int filter_one(px_conn *c, const json_t *result, const char *buf, size_t len, char **out, size_t *outlen)
{
	static const struct { const char *list; pol_kind kind; } lists[] = {
		{ "tools", POL_TOOL }, { "prompts", POL_PROMPT }, { "resources", POL_RESOURCE },
		{ "resourceTemplates", POL_RESOURCE }, /* a template under a denied scheme is hidden too */
	};
	jrpc_limits lim = { pxi_cfg(c)->max_body, pxi_cfg(c)->max_batch, pxi_cfg(c)->max_depth };
	char err[160], *cur = NULL;
	size_t curlen = 0;
	int rc = 0;

	*out = NULL;
	for (size_t i = 0; i < sizeof lists / sizeof lists[0] && rc == 0; i++) {
		struct keep_ctx k = { c, lists[i].kind, !strcmp(lists[i].list, "resourceTemplates"), false };
		char *next = NULL;
		size_t nlen = 0;
		if (!json_is_array(json_object_get(result, lists[i].list)))
			continue;
		rc = jrpc_filter_list(cur ? cur : buf, cur ? curlen : len, &lim, lists[i].list, keep_item, &k, &next,
				      &nlen, NULL, err, sizeof err);
		if (k.pins_changed)
			save_pins(c->px);
		if (next) {
			free(cur);
			cur = next;
			curlen = nlen;
		}
	}
	if (rc < 0) {
		free(cur);
		return rc;
	}
	*out = cur;
	*outlen = curlen;
	return 0;
}

/* ---- one payload: a message or a batch ----------------------------------------------------------------- */

static void audit_out(px_conn *c, const jrpc_msg *m, pxg_req *q, size_t bytes)
{
	aud_rec r = { .dir = "out", .method = m->method, .id = m->id, .status = "ok", .http_status = (int)c->status,
		      .bytes_out = bytes, .latency_us = -1 };
	if (m->kind == JRPC_RESULT || m->kind == JRPC_ERROR) {
		r.method = q ? q->method : "response";
		if (m->kind == JRPC_ERROR) {
			r.status = "error";
			r.has_rpc_code = true;
			r.rpc_code = m->error_code;
		}
	}
	if (q) {
		r.tool = q->tool;
		r.tool_hash = q->hash[0] ? q->hash : NULL;
		r.latency_us = (int64_t)((uv_hrtime() - q->t0) / 1000);
		q->done = true;
	}
	if (pxi_audit(c, &r) < 0)
		c->g->audit_failed = true;
}

/* Audits every message of a payload and filters list results. 0 with *out NULL (forward the original bytes)
 * or malloc'd replacement text; <0 when the payload is not JSON-RPC (the caller decides). */
int pxi_guard_payload(px_conn *c, const char *buf, size_t len, char **out, size_t *outlen)
{
	jrpc_limits lim = { pxi_cfg(c)->max_body, pxi_cfg(c)->max_batch, pxi_cfg(c)->max_depth };
	jrpc_body *b = NULL;
	char err[160];
	bool changed = false;
	int rc;

	*out = NULL;
	*outlen = 0;
	if ((rc = jrpc_new(buf, len, &lim, &b, err, sizeof err)) < 0) {
		char q[200];
		log_warn("msg=\"upstream sent a message the guard cannot read\" route=%s err=%s", c->rt->name,
			 log_quote(err, q, sizeof q));
		return rc;
	}
	for (size_t i = 0; i < jrpc_count(b); i++) {
		const jrpc_msg *m = jrpc_at(b, i);
		pxg_req *q = (m->kind == JRPC_RESULT || m->kind == JRPC_ERROR) ? find_req(c->g, m->id) : NULL;
		char *one = NULL, *rep = NULL;
		size_t rlen = 0;
		if (m->kind == JRPC_RESULT && json_is_object(m->result)) {
			if (!jrpc_is_batch(b)) {
				rc = filter_one(c, m->result, buf, len, &rep, &rlen);
			} else if ((one = json_dumps(json_array_get(jrpc_json(b), i), JSON_COMPACT))) {
				rc = filter_one(c, m->result, one, strlen(one), &rep, &rlen);
				if (rc == 0 && rep) {
					json_t *nv = json_loads(rep, 0, NULL);
					free(rep);
					rep = NULL;
					if (!nv || json_array_set_new(jrpc_json(b), i, nv) < 0)
						rc = -ENOMEM;
					changed = true;
				}
			} else {
				rc = -ENOMEM;
			}
			free(one);
			if (rc < 0)
				goto done;
			if (rep) {
				*out = rep;
				*outlen = rlen;
			}
		}
		audit_out(c, m, q, len);
	}
	if (changed) {
		free(*out);
		if (!(*out = json_dumps(jrpc_json(b), JSON_COMPACT)))
			rc = -ENOMEM;
		else
			*outlen = strlen(*out);
	}
	rc = c->g->audit_failed ? -EIO : rc;
done:
	jrpc_free(b);
	if (rc < 0) {
		free(*out);
		*out = NULL;
	}
	return rc;
}

/* Requests of the exchange that got no JSON-RPC answer (an HTTP error, a 202, a stream that ended first). */
void pxi_guard_flush(px_conn *c, const char *why)
{
	pxg *g = c->g;
	if (!g)
		return;
	for (size_t i = 0; i < g->nreqs; i++) {
		pxg_req *q = &g->reqs[i];
		aud_rec r = { .dir = "out", .method = q->method, .id = q->id, .tool = q->tool, .http_status = (int)c->status,
			      .status = why ? why : (c->status >= 400 ? "http_error" : "no_response") };
		if (q->done)
			continue;
		r.tool_hash = q->hash[0] ? q->hash : NULL;
		r.latency_us = (int64_t)((uv_hrtime() - q->t0) / 1000);
		q->done = true;
		pxi_audit(c, &r);
	}
}

/* ---- SSE: event by event -------------------------------------------------------------------------------- */

/* Bytes of an SSE body (an upstream's, or the bridge's events): every complete event is audited and goes out
 * as its original bytes, or re-encoded when its list result was filtered. <0: the client is gone or the
 * stream broke a cap (the caller ends the exchange). */
int pxi_guard_sse_feed(px_conn *c, const uint8_t *p, size_t n)
{
	pxg *g = c->g;
	char err[120];
	if (!g->dec_on) {
		sse_dec_init(&g->dec, pxi_cfg(c)->max_body, pxi_cfg(c)->max_body); /* one line may be a whole message */
		g->dec_on = true;
	}
	while (n > 0) {
		sse_event ev;
		size_t used = 0;
		int r = sse_dec_next(&g->dec, p, n, &used, &ev, err, sizeof err);
		if (r < 0) {
			log_warn("msg=\"upstream SSE stream refused\" route=%s err=\"%s\"", c->rt->name, err);
			return r;
		}
		if (r == 0) {
			if (cbuf_append(&g->sse_in, p, n) < 0)
				return -ENOBUFS;
			return 0;
		}
		if (cbuf_append(&g->sse_in, p, used) < 0)
			return -ENOBUFS;
		p += used;
		n -= used;
		if (ev.has_data && ev.data_len) {
			char *rep = NULL;
			size_t rlen = 0;
			int rc = pxi_guard_payload(c, ev.data, ev.data_len, &rep, &rlen);
			if (rc == -EIO)
				return rc; /* the audit cannot be written: nothing more is released */
			if (rc < 0) {
				/* Not JSON-RPC to the guard (not JSON, a duplicate key, over a cap): a client might still read
				 * it, and read it differently, so it is not released. */
				c->px->st.guard_dropped++;
				cbuf_free(&g->sse_in);
				continue;
			}
			if (rep) {
				cbuf enc;
				sse_event ne = ev;
				ne.data = rep;
				ne.data_len = rlen;
				cbuf_init(&enc, 1024, rlen + 1024);
				rc = sse_encode(&enc, &ne);
				free(rep);
				if (rc == 0)
					rc = pxi_write_chunk(c, cbuf_data(&enc), enc.len);
				cbuf_free(&enc);
				cbuf_free(&g->sse_in);
				if (rc < 0)
					return rc;
				continue;
			}
		}
		if (pxi_write_chunk(c, cbuf_data(&g->sse_in), g->sse_in.len) < 0)
			return -EPIPE;
		cbuf_free(&g->sse_in);
	}
	return 0;
}

int pxi_guard_sse_event(px_conn *c, const char *json, size_t len)
{
	sse_event ev = { .data = json, .data_len = len, .retry = -1 };
	cbuf enc;
	int rc;
	cbuf_init(&enc, 256, len + 256);
	rc = sse_encode(&enc, &ev);
	if (rc == 0)
		rc = pxi_write_chunk(c, cbuf_data(&enc), enc.len);
	cbuf_free(&enc);
	return rc;
}

/* ---- an http(s) upstream's response -------------------------------------------------------------------- */

static void json_body_cb(void *ud, const char *at, size_t n)
{
	px_conn *c = ud;
	if (!c->g->over && cbuf_append(&c->g->rbody, at, n) < 0)
		c->g->over = true;
}

static void sse_body_cb(void *ud, const char *at, size_t n)
{
	px_conn *c = ud;
	if (!c->g->over && pxi_guard_sse_feed(c, (const uint8_t *)at, n) < 0)
		c->g->over = true;
}

/* later: the head is held to go out with the bytes that follow it (the first event, the JSON body), one TLS
 * record and one socket write for both; the caller sends it before it returns to the loop. */
static int write_head(px_conn *c, const char *add, bool later)
{
	static const char *const drop[] = { "Content-Length", "Transfer-Encoding", NULL };
	cbuf out;
	int rc;
	cbuf_init(&out, 1024, c->g->rhead.max + 256);
	rc = h1_head_rewrite(cbuf_data(&c->g->rhead), c->g->rhead.len, drop, add, &out);
	if (rc == 0)
		rc = later ? pxi_cwrite_later(c, cbuf_data(&out), out.len) : pxi_cwrite(c, cbuf_data(&out), out.len);
	if (rc == 0) {
		c->resp_started = true;
		c->resp_bytes += out.len;
	}
	cbuf_free(&out);
	cbuf_free(&c->g->rhead);
	return rc;
}

static int start_mode(px_conn *c)
{
	pxg *g = c->g;
	char ct[200], ce[64];
	unsigned s = c->x->resp.status;
	bool sse, json;
	int rc = 0;

	if (h1_head_value(cbuf_data(&g->rhead), g->rhead.len, "Content-Type", ct, sizeof ct) < 0)
		ct[0] = 0;
	sse = !strncasecmp(ct, "text/event-stream", 17);
	/* A successful GET that asked for a stream is one: a client reads its body as SSE whatever its type says
	 * (the SDK's does). A GET that asked for something else (the upstream's own OAuth metadata under auth:
	 * passthrough) passes as it came. */
	if (!sse && c->x->req.method == HTTP_GET && s / 100 == 2 && g->accept_sse)
		sse = true;
	/* Any other answer to a POST is read as JSON, whatever its type says: a client that parses a text/plain
	 * body would otherwise get an unfiltered list. A 2xx must be JSON-RPC; an error or a 202 whose body is
	 * not passes as it came, one that is is audited and filtered like any other. */
	json = !sse && c->x->req.method == HTTP_POST;
	g->lenient = json && (s / 100 != 2 || s == 202);
	if (!c->head_req && s != 204 && s != 304 && (sse || json) &&
	    h1_head_value(cbuf_data(&g->rhead), g->rhead.len, "Content-Encoding", ce, sizeof ce) != -ENOENT &&
	    strcasecmp(ce, "identity")) {
		/* Not asked for (Accept-Encoding is dropped): what the guard cannot read is not released. */
		log_warn("msg=\"upstream answer is compressed; the guard reads only identity bodies\" route=%s", c->rt->name);
		return -EPROTO;
	}
	if (g->sse_started) {
		/* The client's SSE answer is open (a held call's progress): the upstream's answer joins it. */
		cbuf_free(&g->rhead);
		g->rmode = sse ? RM_SSE : json ? RM_JSON : RM_SWALLOW;
		c->x->resp.body_cb = sse ? sse_body_cb : json ? json_body_cb : NULL;
		c->x->resp.body_ud = c;
		return 0;
	}
	if (c->head_req || s == 204 || s == 304 || (!sse && !json)) {
		g->rmode = RM_PASS;
		pxi_guard_flush(c, NULL); /* recorded before the answer is released */
		rc = pxi_cwrite(c, cbuf_data(&g->rhead), g->rhead.len);
		c->resp_started = true;
		c->resp_bytes += g->rhead.len;
		cbuf_free(&g->rhead);
		return rc;
	}
	if (json) {
		g->rmode = RM_JSON;
		c->x->resp.body_cb = json_body_cb;
		c->x->resp.body_ud = c;
		return 0;
	}
	g->rmode = RM_SSE;
	c->mchunked = c->x->req.http_minor >= 1;
	c->x->resp.body_cb = sse_body_cb;
	c->x->resp.body_ud = c;
	return write_head(c, c->mchunked ? "Transfer-Encoding: chunked\r\n" : "Connection: close\r\n", true);
}

static int finish_mode(px_conn *c)
{
	pxg *g = c->g;
	char *rep = NULL, add[64];
	size_t rlen = 0;
	int rc;

	if (g->over)
		return -ENOBUFS;
	if (g->rmode == RM_SSE) {
		/* Bytes after the last complete event: an event the stream's end cut off is discarded by a client
		 * that follows the SSE rules, and could be read by one that does not; it was never audited. */
		if (g->dec_on && g->dec.data.len && !g->dec.emitted)
			c->px->st.guard_dropped++;
		cbuf_free(&g->sse_in);
		rc = 0;
		if (c->mchunked && (rc = pxi_cwrite(c, (const uint8_t *)"0\r\n\r\n", 5)) == 0)
			c->resp_bytes += 5;
		if (!c->mchunked)
			c->x->resp.keep_alive = false;
		return rc;
	}
	if (g->rmode == RM_SWALLOW) {
		char msg[120], *eb = NULL;
		size_t el = 0;
		pxg_req *q = g->nreqs ? &g->reqs[g->nreqs - 1] : NULL;
		snprintf(msg, sizeof msg, "the upstream answered HTTP %u", c->status);
		pxi_guard_flush(c, NULL);
		rc = jrpc_error_body(q ? q->id : NULL, JRPC_E_INTERNAL, msg, NULL, &eb, &el);
		if (rc == 0)
			rc = pxi_guard_sse_event(c, eb, el);
		free(eb);
		if (rc == 0 && (rc = pxi_cwrite(c, (const uint8_t *)"0\r\n\r\n", 5)) == 0)
			c->resp_bytes += 5;
		return rc;
	}
	if (g->rmode != RM_JSON)
		return 0;
	rc = g->rbody.len ? pxi_guard_payload(c, (const char *)cbuf_data(&g->rbody), g->rbody.len, &rep, &rlen) : 0;
	if (rc < 0 && rc != -EIO && g->lenient && g->sse_started) {
		g->rmode = RM_SWALLOW; /* not JSON-RPC, and the stream wants an event: an error event says what came */
		return finish_mode(c);
	}
	if (rc < 0 && rc != -EIO && g->lenient)
		rc = 0; /* an HTTP error's own body, not JSON-RPC: it goes as sent */
	if (rc < 0)
		return rc;
	if (g->sse_started) {
		pxi_guard_flush(c, NULL);
		rc = pxi_guard_sse_event(c, rep ? rep : (const char *)cbuf_data(&g->rbody), rep ? rlen : g->rbody.len);
		if (rc == 0 && (rc = pxi_cwrite(c, (const uint8_t *)"0\r\n\r\n", 5)) == 0)
			c->resp_bytes += 5;
		free(rep);
		cbuf_free(&g->rbody);
		return rc;
	}
	pxi_guard_flush(c, NULL);
	snprintf(add, sizeof add, "Content-Length: %zu\r\n", rep ? rlen : g->rbody.len);
	rc = write_head(c, add, (rep ? rlen : g->rbody.len) > 0);
	if (rc == 0 && (rep ? rlen : g->rbody.len))
		rc = pxi_cwrite(c, rep ? (const uint8_t *)rep : cbuf_data(&g->rbody), rep ? rlen : g->rbody.len);
	if (rc == 0)
		c->resp_bytes += rep ? rlen : g->rbody.len;
	free(rep);
	cbuf_free(&g->rbody);
	return rc;
}

/* The answer's head when no event came after it in this read: it goes now. */
static int send_held(px_conn *c)
{
	return c->corked.len ? pxi_cwrite(c, NULL, 0) : 0;
}

/* up_on_data for a guarded exchange. */
void pxi_guard_up_data(px_conn *c, pxu *u, const uint8_t *p, size_t n)
{
	pxg *g = c->g;
	bool finished = false;

	while (n > 0 && !c->closing && !c->aborted) {
		size_t used = 0;
		h1_ev ev;
		int pr = pxi_up_parse(c, u, p, n, &used, &ev);
		if (pr > 0)
			break;
		if (pr < 0)
			return;
		if (g->rmode == RM_NONE) {
			if (cbuf_append(&g->rhead, p, used) < 0) {
				u->reusable = false;
				pxi_upstream_fail(c, 502, "Bad Gateway", "upstream response head too large");
				return;
			}
		} else if (g->rmode == RM_PASS && used) {
			c->resp_bytes += used;
			if (pxi_cwrite(c, p, used) < 0) {
				pxi_conn_finish(c, false);
				return;
			}
		}
		p += used;
		n -= used;
		if (g->over) {
			(void)send_held(c); /* what was released before the cap goes, as it went before */
			u->reusable = false;
			pxi_upstream_fail(c, 502, "Bad Gateway", "upstream message over the guard's limits");
			return;
		}
		if (ev == H1_HEAD && c->x->resp.status / 100 != 1) {
			c->status = c->x->resp.status;
			if (start_mode(c) < 0) {
				u->reusable = false;
				if (!c->resp_started)
					pxi_upstream_fail(c, 502, "Bad Gateway", "upstream answer refused by the guard");
				else
					pxi_conn_finish(c, false);
				return;
			}
		}
		if (ev == H1_DONE) {
			if (c->x->resp.status / 100 == 1) {
				/* Interim responses are not passed on: the guard read the whole request already. */
				cbuf_free(&g->rhead);
				h1_next(&c->x->resp);
				if (c->head_req)
					h1_skip_body(&c->x->resp);
				continue;
			}
			if (finish_mode(c) < 0) {
				(void)send_held(c);
				u->reusable = false;
				if (!c->resp_started)
					pxi_upstream_fail(c, 502, "Bad Gateway", "upstream message refused by the guard");
				else
					pxi_conn_finish(c, false);
				return;
			}
			c->resp_done = true;
			finished = true;
		}
	}
	if (c->aborted || c->closing) {
		cbuf_free(&c->corked);
	} else if (send_held(c) < 0) {
		pxi_conn_finish(c, false); /* as a failed head write did */
		return;
	}
	pxi_up_data_done(c, u, n, finished);
}

/* up_on_eof inside a guarded response: a body delimited by the close ends here. */
void pxi_guard_up_eof(px_conn *c)
{
	h1_ev ev = h1_eof(&c->x->resp);
	if (ev == H1_DONE && c->g->rmode != RM_NONE) {
		c->status = c->x->resp.status;
		if (finish_mode(c) < 0) {
			pxi_conn_finish(c, false);
			return;
		}
		c->resp_done = true;
		if (c->req_done)
			pxi_end_exchange(c);
		else
			pxi_conn_finish(c, true);
	} else if (!c->resp_started) {
		log_warn("msg=\"upstream closed the connection before responding\" route=%s", c->rt->name);
		pxi_upstream_fail(c, 502, "Bad Gateway", "upstream closed the connection");
	} else {
		pxi_conn_finish(c, false);
	}
}
