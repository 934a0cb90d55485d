/* The MCP guard on a route's requests: the POST body is read whole (under mcp_limits), parsed by the
 * JSON-RPC inspector, checked (the 2026-07-28 headers against the body, policy at call time, tool pins), each
 * message recorded in the audit, and then forwarded unchanged, or answered here with a JSON-RPC error that
 * names what refused it. The response side is proxy_guard_resp.c. */
#include "proxy/proxy_int.h"

#include <ctype.h>
#include <time.h>

#include "core/arr.h"

#include "guard/audit.h"
#include "guard/auth.h"
#include "guard/jrpc.h"
#include "guard/pins.h"
#include "guard/policy.h"
#include "guard/redact.h"
#include "proxy/approvals.h"
#include "proxy/jwks.h"

const px_route_guard *pxi_route_guard(const px_conn *c)
{
	const px_config *cfg = pxi_cfg(c);
	if (!c->rt || !cfg->guards)
		return NULL;
	return &cfg->guards[c->rt - cfg->routes.v];
}

bool pxi_guarded(const px_conn *c)
{
	const px_route_guard *g = pxi_route_guard(c);
	return g && (g->policy || g->auth || (g->audit && c->px->audit_fn));
}

void px_set_audit(px *p, px_audit_fn fn, void *ud, const struct redact *r, bool log_arguments)
{
	p->audit_fn = fn;
	p->audit_ud = ud;
	p->redact = r;
	p->log_args = log_arguments;
}

struct pin_table *px_pins(px *p) { return p->pins; }
void px_set_approvals(px *p, struct apv *a) { p->apv = a; }

void pxi_guard_free(px_conn *c)
{
	pxg *g = c->g;
	if (!g)
		return;
	if (g->held && c->px->apv)
		apv_cancel(c->px->apv, g->hold_id); /* the client went away: nobody to answer */
	c->px->held_bytes -= g->hold_bytes;
	for (size_t i = 0; i < g->nreqs; i++) {
		free(g->reqs[i].id);
		free(g->reqs[i].tool);
	}
	free(g->reqs);
	free(g->ptoken);
	free(g->tool_src);
	free(g->tool_red);
	cbuf_free(&g->rhead);
	cbuf_free(&g->rbody);
	cbuf_free(&g->sse_in);
	sse_dec_free(&g->dec);
	free(g);
	c->g = NULL;
}

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A tool name or resource URI is the client's text too: a key in a URI's query is redacted like an argument
 * would be. The result is kept for the exchange: the "out" line names the same tool as the "in" line. A name
 * that cannot be redacted (no memory) is left as it is, as before. */
static const char *redact_tool(px *p, pxg *g, const char *tool)
{
	json_t *ts, *tr = NULL;
	char *src = NULL, *red = NULL;
	if (g->tool_src && !strcmp(g->tool_src, tool))
		return g->tool_red;
	if (!(ts = json_string(tool)))
		return tool;
	if (redact_apply(p->redact, ts, &tr, NULL) == 0 && json_is_string(tr) && (src = strdup(tool)) &&
	    (red = strdup(json_string_value(tr)))) {
		free(g->tool_src);
		free(g->tool_red);
		g->tool_src = src;
		g->tool_red = red;
		src = NULL;
		tool = red;
	}
	free(src);
	json_decref(ts);
	json_decref(tr);
	return tool;
}

/* Fills what every line of this exchange shares and hands the record to the sink. */
int pxi_audit(px_conn *c, aud_rec *r)
{
	px *p = c->px;
	pxg *g = c->g;
	const px_route_guard *rg = pxi_route_guard(c);
	int rc;
	if (!p->audit_fn || !rg || !rg->audit || !g)
		return 0;
	r->ts_us = now_us();
	r->trace_id = g->trace.trace_id;
	r->span_id = g->trace.span_id;
	r->parent_span_id = g->parent_span[0] ? g->parent_span : NULL;
	r->route = c->rt->name;
	r->client = g->client_id[0] ? g->client_id : NULL;
	r->client_addr = c->client_raw[0] ? c->client_raw : NULL;
	r->session = g->session[0] ? g->session : NULL;
	r->protocol = g->protocol[0] ? g->protocol : NULL;
	if (rg->policy && !r->policy_rev)
		r->policy_rev = pol_revision(rg->policy);
	if (r->tool && p->redact)
		r->tool = redact_tool(p, g, r->tool);
	rc = p->audit_fn(p->audit_ud, r);
	if (rc < 0) {
		p->st.audit_failures++;
		g->audit_failed = true;
	}
	return rc;
}

/* ---- answers made by the guard ------------------------------------------------------------------------- */

static void answer(px_conn *c, unsigned status, char *body, size_t len)
{
	mbr_response r = { .status = (int)status, .content_type = "application/json", .body = body, .body_len = len };
	pxi_respond_whole(c, &r);
	free(body);
}

/* The whole POST refused before any message is looked at (not JSON, over a cap, a bad header). */
static void refuse_body(px_conn *c, unsigned status, int code, const char *msg, const char *reason)
{
	char *body = NULL;
	size_t len = 0;
	aud_rec r = { .dir = "in", .method = c->x->method, .decision = "deny", .status = reason, .has_rpc_code = true,
		      .rpc_code = code, .http_status = (int)status, .bytes_in = c->mbody.len };
	pxi_audit(c, &r);
	if (jrpc_error_body(NULL, code, msg, NULL, &body, &len) < 0) {
		pxi_respond(c, 500, "Internal Server Error", "out of memory");
		return;
	}
	answer(c, status, body, len);
}

static pol_kind call_kind(const char *method, bool *policed)
{
	*policed = true;
	if (!strcmp(method, "tools/call"))
		return POL_TOOL;
	if (!strcmp(method, "prompts/get"))
		return POL_PROMPT;
	if (!strcmp(method, "resources/read") || !strcmp(method, "resources/subscribe"))
		return POL_RESOURCE; /* a subscription to a denied resource would still tell when it changes */
	*policed = false;
	return POL_TOOL;
}

/* One message's verdict. refused: a JSON-RPC error answers it (code, message); why: the audit status. */
struct verdict {
	bool refused, approve;
	int code;
	char message[512];
	const char *decision, *rule, *why;
	char hash[PIN_HEX_LEN + 1];
};

/* Refused by the guard (policy, a changed tool definition, a refused batch). Outside -32768..-32000, which
 * JSON-RPC and MCP reserve (mcp-spec 2026-07-28: application codes SHOULD be outside it). */
#define PXG_E_DENIED (-31001)
#define PXG_HELD_BYTES_MAX ((size_t)64 << 20) /* request bodies of all held calls together */

static void decide(px_conn *c, const jrpc_msg *m, struct verdict *v)
{
	const px_route_guard *rg = pxi_route_guard(c);
	const char *hex = NULL, *pending = NULL, *bad = NULL;
	bool policed;
	pol_kind k;
	pol_verdict pv;

	memset(v, 0, sizeof *v);
	v->decision = "allow";
	v->why = "forwarded";
	if (m->kind == JRPC_INVALID) {
		v->refused = true;
		v->code = m->invalid_code ? m->invalid_code : JRPC_E_INVALID_REQUEST;
		snprintf(v->message, sizeof v->message, "invalid JSON-RPC message: %s", m->why ? m->why : "malformed");
		v->decision = "deny";
		v->why = "invalid";
		return;
	}
	if (m->kind != JRPC_REQUEST)
		return;
	k = call_kind(m->method, &policed);
	if (!policed)
		return;
	if (k == POL_TOOL && m->name && pin_get(c->px->pins, c->rt->name, m->name, &hex, &pending) == 0) {
		snprintf(v->hash, sizeof v->hash, "%s", hex);
		if (pending) {
			v->refused = true;
			v->code = PXG_E_DENIED;
			snprintf(v->message, sizeof v->message,
				 "tool \"%.100s\" changed its definition since it was pinned: refused until re-approved "
				 "(postern pins accept %.100s %.100s)", m->name, c->rt->name, m->name);
			v->decision = "deny";
			v->rule = "pin";
			v->why = "pin_changed";
			return;
		}
	}
	if (!rg->policy)
		return;
	pol_eval(rg->policy, k, m->name ? m->name : "", c->g->client_id, &pv);
	v->rule = pv.name;
	if (k == POL_RESOURCE && pv.rule != POL_RULE_UNPOLICED && m->name && pol_uri_check(m->name, &bad) < 0) {
		v->refused = true;
		v->code = PXG_E_DENIED;
		v->decision = "deny";
		v->rule = "uri";
		v->why = "denied";
		snprintf(v->message, sizeof v->message, "resource \"%.200s\" is refused on route %s: %s, which the "
			 "policy's globs cannot be trusted to match", m->name, c->rt->name, bad);
		return;
	}
	if (pv.action == POL_ALLOW)
		return;
	v->refused = true;
	v->code = PXG_E_DENIED;
	if (pv.action == POL_DENY) {
		v->decision = "deny";
		v->why = "denied";
		snprintf(v->message, sizeof v->message, "%s \"%.200s\" is denied by policy rule %s of route %s",
			 k == POL_TOOL ? "tool" : k == POL_PROMPT ? "prompt" : "resource", m->name ? m->name : "",
			 pv.name, c->rt->name);
	} else {
		/* approve: held for a person when the approval channel is there (px_set_approvals), else refused */
		v->decision = "approve";
		v->approve = true;
		v->why = "approval_unavailable";
		snprintf(v->message, sizeof v->message,
			 "%s \"%.200s\" needs approval (policy rule %s of route %s) and this gateway has no approval "
			 "channel", k == POL_TOOL ? "tool" : k == POL_PROMPT ? "prompt" : "resource", m->name ? m->name : "",
			 pv.name, c->rt->name);
	}
}

static int remember(pxg *g, const jrpc_msg *m, const char *hash, uint64_t t0)
{
	pxg_req *q;
	if (ARR_RESERVE(g->reqs, g->nreqs, g->capreqs, 4) < 0)
		return -ENOMEM;
	q = &g->reqs[g->nreqs];
	memset(q, 0, sizeof *q);
	if (!(q->id = strdup(m->id)) || (m->name && !(q->tool = strdup(m->name)))) {
		free(q->id);
		return -ENOMEM;
	}
	snprintf(q->method, sizeof q->method, "%s", m->method);
	snprintf(q->hash, sizeof q->hash, "%s", hash ? hash : "");
	q->t0 = t0;
	q->list = !strcmp(m->method, "tools/list") || !strcmp(m->method, "prompts/list") ||
		  !strcmp(m->method, "resources/list");
	g->nreqs++;
	return 0;
}

static void audit_in(px_conn *c, const jrpc_msg *m, const struct verdict *v, size_t bytes)
{
	px *p = c->px;
	json_t *args = NULL;
	aud_rec r = { .dir = "in", .method = m->method, .id = m->id, .tool = m->name, .decision = v->decision,
		      .rule = v->rule, .approval = strcmp(v->decision, "approve") ? "none" : "denied",
		      .status = v->why, .bytes_in = bytes };
	if (m->kind == JRPC_RESULT || m->kind == JRPC_ERROR)
		r.method = "response";
	if (v->hash[0])
		r.tool_hash = v->hash;
	if (v->refused) {
		r.has_rpc_code = true;
		r.rpc_code = v->code;
	}
	if (p->log_args && m->arguments && p->redact && redact_apply(p->redact, m->arguments, &args, NULL) == 0)
		r.args = args;
	pxi_audit(c, &r);
	json_decref(args);
}

static void trace_begin(px_conn *c, const jrpc_body *b)
{
	pxg *g = c->g;
	char tp[TRC_HEADER_LEN + 8];
	trc_ctx parent;
	int r;
	bool have = h1_head_value(cbuf_data(&c->head), c->head.len, "traceparent", tp, sizeof tp) > 0 &&
		    trc_parse(tp, &parent) == 0;
	for (size_t i = 0; !have && b && i < jrpc_count(b); i++) {
		const jrpc_msg *m = jrpc_at(b, i);
		have = m->traceparent && trc_parse(m->traceparent, &parent) == 0;
	}
	if (have) {
		memcpy(g->parent_span, parent.span_id, sizeof g->parent_span);
		r = trc_child(&parent, &g->trace);
	} else {
		r = trc_new(&g->trace);
	}
	if (r < 0) /* no randomness: the line still says which exchange it was */
		memset(&g->trace, 0, sizeof g->trace);
}

static int guard_new(px_conn *c)
{
	pxg *g = calloc(1, sizeof *g);
	int r;
	if (!g)
		return -ENOMEM;
	cbuf_init(&g->rhead, 1024, (size_t)pxi_cfg(c)->max_head_bytes + 1024);
	cbuf_init(&g->rbody, 4096, pxi_cfg(c)->max_body);
	cbuf_init(&g->sse_in, 4096, pxi_cfg(c)->max_body + 4096);
	c->g = g;
	r = h1_head_value(cbuf_data(&c->head), c->head.len, "Mcp-Session-Id", g->session, sizeof g->session);
	if (r < 0)
		g->session[0] = 0;
	{
		char accept[1024];
		/* An Accept longer than the buffer is read as not listing SSE, as the bridge reads it. */
		g->accept_sse = h1_head_value(cbuf_data(&c->head), c->head.len, "Accept", accept, sizeof accept) >= 0 &&
				strcasestr(accept, "text/event-stream");
	}
	r = h1_head_value(cbuf_data(&c->head), c->head.len, "MCP-Protocol-Version", g->protocol, sizeof g->protocol);
	if (r < 0)
		g->protocol[0] = 0;
	return 0;
}

/* ---- at the head: the guard's state, and the route's auth ------------------------------------------------- */

#define PXG_METADATA_PATH "/.well-known/oauth-protected-resource"

static void respond_auth(px_conn *c, unsigned status, const char *www, const char *error, const char *reason)
{
	json_t *o = json_pack("{s:s, s:s}", "error", error ? error : "unauthorized", "error_description", reason);
	char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
	char extra[1400];
	mbr_response r = { .status = (int)status, .content_type = "application/json", .body = body,
			   .body_len = body ? strlen(body) : 0 };
	json_decref(o);
	if (www && snprintf(extra, sizeof extra, "WWW-Authenticate: %s\r\n", www) < (int)sizeof extra)
		r.extra = extra;
	pxi_respond_whole(c, &r);
	free(body);
}

int pxi_guard_begin(px_conn *c)
{
	const px_route_guard *rg = pxi_route_guard(c);
	char host[ROUTE_HOST_MAX + 8], resource[ROUTE_HOST_MAX + 24], meta[ROUTE_HOST_MAX + 80], www[1024];
	char *authz = NULL, *doc = NULL;
	const uint8_t *hd = cbuf_data(&c->head);
	size_t hl = c->head.len, dl = 0, plen;
	auth_result ar;
	int rc, ret = 1;

	if (guard_new(c) < 0) {
		pxi_respond(c, 500, "Internal Server Error", "out of memory");
		return 1;
	}
	if (!rg->auth)
		return 0;
	/* The resource is the URL the client used: https://<Host>/ (RFC 8707, RFC 9728). */
	snprintf(host, sizeof host, "%.*s", (int)c->x->req.host_len, c->x->req.host);
	for (char *h = host; *h; h++)
		*h = (char)tolower((unsigned char)*h);
	snprintf(resource, sizeof resource, "https://%s/", host);
	snprintf(meta, sizeof meta, "https://%s%s", host, PXG_METADATA_PATH);
	plen = strcspn(c->x->path, "?");
	if (plen >= sizeof PXG_METADATA_PATH - 1 && !strncmp(c->x->path, PXG_METADATA_PATH, sizeof PXG_METADATA_PATH - 1) &&
	    (plen == sizeof PXG_METADATA_PATH - 1 || c->x->path[sizeof PXG_METADATA_PATH - 1] == '/')) {
		/* The protected resource metadata is public: it says where to get a token. */
		if (c->x->req.method != HTTP_GET && c->x->req.method != HTTP_HEAD) {
			pxi_respond(c, 405, "Method Not Allowed", "the resource metadata is read with GET");
		} else if (auth_metadata_json(rg->auth, resource, &doc, &dl) < 0) {
			pxi_respond(c, 500, "Internal Server Error", "out of memory");
		} else {
			mbr_response r = { .status = 200, .content_type = "application/json", .body = doc, .body_len = dl };
			pxi_respond_whole(c, &r);
		}
		goto out;
	}
	if (h1_head_count(hd, hl, "Authorization") > 1) {
		respond_auth(c, 400, NULL, "invalid_request", "more than one Authorization header");
		goto out;
	}
	if (!(authz = malloc(17 * 1024))) {
		pxi_respond(c, 500, "Internal Server Error", "out of memory");
		goto out;
	}
	rc = h1_head_value(hd, hl, "Authorization", authz, 17 * 1024);
	if (rc == -E2BIG)
		snprintf(authz, 17 * 1024, "Bearer %s", "!"); /* over any token's cap: refused as malformed */
	rc = auth_check(rg->auth, rc == -ENOENT ? NULL : authz, resource, (int64_t)time(NULL), &ar);
	if (ar.refetch_keys && pxi_rstate(c)->jwks)
		jwks_kick(pxi_rstate(c)->jwks);
	if (rc == 0) {
		snprintf(c->g->client_id, sizeof c->g->client_id, "%s", ar.subject);
		c->g->authed = true;
		ret = 0;
		goto out;
	}
	if (rc == -ENOMEM || ar.status == 500) {
		pxi_respond(c, 500, "Internal Server Error", "out of memory");
		goto out;
	}
	{
		aud_rec r = { .dir = "in", .method = c->x->method, .decision = "deny", .rule = "auth",
			      .status = ar.status == 403 ? "insufficient_scope" : "unauthenticated",
			      .http_status = ar.status };
		trace_begin(c, NULL);
		if (ar.status == 403)
			snprintf(c->g->client_id, sizeof c->g->client_id, "%s", ar.subject);
		pxi_audit(c, &r);
	}
	if (auth_www_authenticate(rg->auth, &ar, meta, www, sizeof www) < 0)
		snprintf(www, sizeof www, "Bearer resource_metadata=\"%s\"", meta);
	respond_auth(c, (unsigned)ar.status, www, ar.error, ar.reason[0] ? ar.reason : "a bearer token is required");
out:
	free(authz);
	free(doc);
	return ret;
}

/* A header that does not match the body: recorded, and answered 400 -32020 naming the header. Returns 1. */
static int refuse_mismatch(px_conn *c, const jrpc_msg *m, const jrpc_mismatch *mm)
{
	aud_rec r = { .dir = "in", .method = m->method, .id = m->id, .tool = m->name, .decision = "deny",
		      .status = "header_mismatch", .has_rpc_code = true, .rpc_code = JRPC_E_HEADER_MISMATCH,
		      .http_status = 400, .bytes_in = c->mbody.len };
	char *body = NULL;
	size_t len = 0;
	pxi_audit(c, &r);
	if (jrpc_mismatch_body(m, mm, &body, &len) < 0)
		pxi_respond(c, 500, "Internal Server Error", "out of memory");
	else
		answer(c, 400, body, len);
	return 1;
}

/* The modern era's request-metadata headers, read from the head; the Mcp-Param-* ones are not mirrored by
 * the guard (it cannot see the tool's schema at call time) and are left to the server. */
static int check_modern(px_conn *c, const jrpc_body *b)
{
	char ver[64], meth[128], name[1024];
	jrpc_headers h = { 0 };
	jrpc_mismatch mm;
	const uint8_t *hd = cbuf_data(&c->head);
	size_t hl = c->head.len;

	h.protocol_version = h1_head_value(hd, hl, "MCP-Protocol-Version", ver, sizeof ver) >= 0 ? ver : NULL;
	h.method = h1_head_value(hd, hl, "Mcp-Method", meth, sizeof meth) >= 0 ? meth : NULL;
	h.name = h1_head_value(hd, hl, "Mcp-Name", name, sizeof name) >= 0 ? name : NULL;
	for (size_t i = 0; i < jrpc_count(b); i++) {
		const jrpc_msg *m = jrpc_at(b, i);
		if (m->kind != JRPC_REQUEST && m->kind != JRPC_NOTIFICATION)
			continue;
		if (jrpc_check_headers(m, &h, &mm) == 0)
			continue;
		return refuse_mismatch(c, m, &mm);
	}
	return 0;
}

/* Before the 2026-07-28 era nothing requires Mcp-Method or Mcp-Name, but a server that routes on them would
 * act on a name the guard never decided: when present they must match every message as in the modern era. */
static int check_legacy(px_conn *c, const jrpc_body *b)
{
	char meth[128], name[1024], dec[1024];
	const uint8_t *hd = cbuf_data(&c->head);
	size_t hl = c->head.len;
	int rm = h1_head_value(hd, hl, "Mcp-Method", meth, sizeof meth);
	int rn = h1_head_value(hd, hl, "Mcp-Name", name, sizeof name);
	bool hm = rm != -ENOENT, hn = rn != -ENOENT;

	if (rm < 0)
		meth[0] = 0; /* over the buffer: matches no method */
	if (rn < 0)
		name[0] = 0;

	if (!hm && !hn)
		return 0;
	for (size_t i = 0; i < jrpc_count(b); i++) {
		const jrpc_msg *m = jrpc_at(b, i);
		jrpc_mismatch mm = { 0 };
		if (!m->method)
			continue;
		if (hm && (jrpc_hdr_decode(meth, dec, sizeof dec) < 0 || strcmp(dec, m->method))) {
			mm.header = "Mcp-Method";
			snprintf(mm.message, sizeof mm.message, "Mcp-Method header does not match method %.100s", m->method);
		} else if (hn && m->name && (jrpc_hdr_decode(name, dec, sizeof dec) < 0 || strcmp(dec, m->name))) {
			mm.header = "Mcp-Name";
			snprintf(mm.message, sizeof mm.message, "Mcp-Name header does not match params.%s",
				 strncmp(m->method, "resources/", 10) ? "name" : "uri");
		} else {
			continue;
		}
		return refuse_mismatch(c, m, &mm);
	}
	return 0;
}

/* Refuses the POST with one error per request: the refused ones say why, the others that they were not
 * sent because another message of the same batch was refused (a batch goes upstream whole or not at all). */
static void refuse_messages(px_conn *c, const jrpc_body *b, const struct verdict *vs)
{
	json_t *arr = json_array();
	char *body = NULL, *one;
	size_t len = 0;

	for (size_t i = 0; arr && i < jrpc_count(b); i++) {
		const jrpc_msg *m = jrpc_at(b, i);
		json_t *e;
		if (!vs[i].refused || (m->kind != JRPC_REQUEST && m->kind != JRPC_INVALID))
			continue; /* notifications and responses get no answer */
		if (jrpc_error_body(m->kind == JRPC_REQUEST ? m->id : NULL, vs[i].code, vs[i].message, NULL, &one, &len) < 0)
			continue;
		if ((e = json_loads(one, 0, NULL)))
			json_array_append_new(arr, e);
		free(one);
	}
	if (!arr) {
		pxi_respond(c, 500, "Internal Server Error", "out of memory");
		return;
	}
	if (!jrpc_is_batch(b) && json_array_size(arr) == 1)
		body = json_dumps(json_array_get(arr, 0), JSON_COMPACT);
	else if (json_array_size(arr) > 0)
		body = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	if (!body) { /* only notifications were refused: nothing to answer them with */
		mbr_response r = { .status = 202 };
		pxi_respond_whole(c, &r);
		return;
	}
	answer(c, 200, body, strlen(body));
}

/* ---- approve: the call waits for a person --------------------------------------------------------------- */

static void on_decided(void *ud, apv_outcome o, const char *by)
{
	px_conn *c = ud;
	pxg *g = c->g;
	pxg_req *q = g && g->nreqs ? &g->reqs[g->nreqs - 1] : NULL;
	const char *state = o == APV_APPROVED ? "approved" : o == APV_DENIED ? "denied" : "timed_out";
	char msg[700], *body = NULL;
	size_t len = 0;

	if (!g || !q)
		return;
	pxi_enter(c);
	g->held = false;
	c->px->held_bytes -= g->hold_bytes;
	g->hold_bytes = 0;
	{
		aud_rec r = { .dir = "in", .method = q->method, .id = q->id, .tool = q->tool, .decision = "approve",
			      .rule = g->hold_rule, .approval = state, .approver = by,
			      .status = o == APV_APPROVED ? "forwarded" : "denied", .bytes_in = c->mbody.len };
		if (o != APV_APPROVED) {
			r.has_rpc_code = true;
			r.rpc_code = PXG_E_DENIED;
		}
		pxi_audit(c, &r);
	}
	if (o == APV_APPROVED && !g->audit_failed) {
		pxi_forward_request(c);
		goto done;
	}
	if (o == APV_APPROVED)
		snprintf(msg, sizeof msg, "the audit log cannot be written: the approved call was not sent");
	else if (o == APV_DENIED)
		snprintf(msg, sizeof msg, "tool \"%.200s\" was denied by %.300s (policy rule %s of route %s)", q->tool ? q->tool : "",
			 by ? by : "a person", g->hold_rule, c->rt->name);
	else
		snprintf(msg, sizeof msg, "tool \"%.200s\" was not approved in time (policy rule %s of route %s): denied",
			 q->tool ? q->tool : "", g->hold_rule, c->rt->name);
	q->done = true;
	{
		aud_rec r = { .dir = "out", .method = q->method, .id = q->id, .tool = q->tool, .status = "denied",
			      .has_rpc_code = true, .rpc_code = PXG_E_DENIED, .http_status = 200,
			      .latency_us = (int64_t)((uv_hrtime() - q->t0) / 1000) };
		pxi_audit(c, &r);
	}
	if (jrpc_error_body(q->id, PXG_E_DENIED, msg, NULL, &body, &len) < 0) {
		pxi_respond(c, 500, "Internal Server Error", "out of memory");
	} else if (g->sse_started) {
		if (pxi_guard_sse_event(c, body, len) == 0)
			pxi_stream_end(c);
		else
			pxi_conn_finish(c, false);
		free(body);
	} else {
		answer(c, 200, body, len);
	}
done:
	pxi_leave(c);
}

#define PXG_PROGRESS_EVERY_MS 5000 /* while held: well inside the SDK client's 60 s request timeout */

static void on_progress(void *ud, uint64_t waited_ms, uint64_t timeout_ms)
{
	px_conn *c = ud;
	char body[512];
	int n;
	if (!c->g || !c->g->sse_started || !c->g->ptoken)
		return;
	n = snprintf(body, sizeof body,
		     "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":%s,"
		     "\"progress\":%llu,\"total\":%llu,\"message\":\"waiting for approval (policy rule %s)\"}}",
		     c->g->ptoken, (unsigned long long)(waited_ms / 1000), (unsigned long long)(timeout_ms / 1000),
		     c->g->hold_rule);
	pxi_enter(c);
	if (n > 0 && (size_t)n < sizeof body && pxi_guard_sse_event(c, body, (size_t)n) < 0)
		pxi_conn_finish(c, false);
	pxi_leave(c);
}

/* A client that asked for progress (and takes SSE) hears every few seconds that its call waits for a person:
 * its answer becomes an SSE stream now, which the upstream's answer joins once the call is approved. */
static void start_progress(px_conn *c, const jrpc_msg *m)
{
	static const char head[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache, no-store\r\n"
				   "X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n";
	char accept[1024];
	pxg *g = c->g;
	if (!m->progress_token || c->x->req.http_minor < 1 ||
	    h1_head_value(cbuf_data(&c->head), c->head.len, "Accept", accept, sizeof accept) < 0 ||
	    !strcasestr(accept, "text/event-stream"))
		return;
	if (!(g->ptoken = json_dumps(m->progress_token, JSON_ENCODE_ANY | JSON_COMPACT)))
		return;
	if (pxi_cwrite(c, (const uint8_t *)head, sizeof head - 1) < 0)
		return;
	c->status = 200;
	c->resp_started = true;
	c->resp_bytes += sizeof head - 1;
	c->mchunked = true;
	g->sse_started = true;
	{
		/* Every 5 s, or more often when the whole wait is short, so that at least a few arrive. */
		uint32_t to = pol_approval_timeout_ms(pxi_route_guard(c)->policy), every = to / 3;
		every = every < 1000 ? 1000 : every > PXG_PROGRESS_EVERY_MS ? PXG_PROGRESS_EVERY_MS : every;
		apv_progress(c->px->apv, g->hold_id, every, on_progress);
	}
}

static int hold(px_conn *c, const jrpc_msg *m, struct verdict *v, uint64_t t0)
{
	px *p = c->px;
	const px_route_guard *rg = pxi_route_guard(c);
	char *args = NULL, err[160];
	json_t *red = NULL;
	apv_info info = { .route = c->rt->name, .client = c->g->client_id[0] ? c->g->client_id : NULL,
			  .client_addr = c->client_raw[0] ? c->client_raw : NULL,
			  .session = c->g->session[0] ? c->g->session : NULL, .method = m->method, .tool = m->name,
			  .rule = v->rule, .trace_id = c->g->trace.trace_id };
	int rc;

	if (remember(c->g, m, v->hash, t0) < 0) {
		pxi_respond(c, 500, "Internal Server Error", "out of memory");
		return 1;
	}
	/* The person sees the arguments redacted, as the audit does. */
	if (m->arguments && p->redact && redact_apply(p->redact, m->arguments, &red, NULL) == 0)
		args = json_dumps(red, JSON_COMPACT);
	info.args_redacted_json = args;
	snprintf(c->g->hold_rule, sizeof c->g->hold_rule, "%s", v->rule ? v->rule : "default");
	/* Each held call keeps its body (up to max_body) until it is decided: the count cap alone would let
	 * 1000 calls of max_body wait for minutes. */
	if (p->held_bytes + c->mbody.len > PXG_HELD_BYTES_MAX)
		rc = -ENOBUFS;
	else
		rc = apv_hold(p->apv, &info, pol_approval_timeout_ms(rg->policy), on_decided, c, c->g->hold_id);
	free(args);
	json_decref(red);
	if (rc < 0) {
		snprintf(err, sizeof err, "tool \"%.60s\" needs approval and %s", m->name ? m->name : "",
			 rc == -EBUSY ? "too many calls are waiting for one already"
			 : rc == -ENOBUFS ? "the calls waiting for one already hold too many bytes" : "it could not be held");
		v->why = "approval_unavailable";
		audit_in(c, m, v, c->mbody.len);
		c->g->reqs[c->g->nreqs - 1].done = true;
		refuse_body(c, 200, PXG_E_DENIED, err, "approval_unavailable");
		return 1;
	}
	c->g->held = true;
	c->g->hold_bytes = c->mbody.len;
	p->held_bytes += c->mbody.len;
	v->why = "held";
	start_progress(c, m);
	{
		json_t *a2 = NULL;
		aud_rec r = { .dir = "in", .method = m->method, .id = m->id, .tool = m->name, .decision = "approve",
			      .rule = v->rule, .approval = "pending", .status = "held", .bytes_in = c->mbody.len };
		if (v->hash[0])
			r.tool_hash = v->hash;
		if (p->log_args && m->arguments && p->redact && redact_apply(p->redact, m->arguments, &a2, NULL) == 0)
			r.args = a2;
		pxi_audit(c, &r);
		json_decref(a2);
	}
	log_info("msg=\"call held for approval\" route=%s id=%s rule=%s", c->rt->name, c->g->hold_id, c->g->hold_rule);
	return 1;
}

int pxi_guard_request(px_conn *c)
{
	px *p = c->px;
	jrpc_limits lim = { pxi_cfg(c)->max_body, pxi_cfg(c)->max_batch, pxi_cfg(c)->max_depth };
	jrpc_body *b = NULL;
	struct verdict *vs = NULL;
	char err[200];
	uint64_t t0 = uv_hrtime();
	bool refused;
	int rc, ret = 1, first = -1;

	if (c->x->req.method != HTTP_POST) {
		trace_begin(c, NULL);
		if (c->mbody.len || c->mbody_over) {
			/* A body on GET or DELETE would reach the server unread. */
			pxi_respond(c, 400, "Bad Request", "a body is only read on POST on a guarded MCP route");
			return 1;
		}
		return 0; /* GET streams and DELETE: nothing to inspect on the way in; a GET's events are (resp side) */
	}
	if (c->mbody_over) {
		snprintf(err, sizeof err, "MCP message too large (mcp_limits.max_body is %zu bytes)", pxi_cfg(c)->max_body);
		trace_begin(c, NULL);
		refuse_body(c, 413, JRPC_E_INVALID_REQUEST, err, "too_large");
		return 1;
	}
	rc = jrpc_new(cbuf_data(&c->mbody), c->mbody.len, &lim, &b, err, sizeof err);
	trace_begin(c, rc == 0 ? b : NULL);
	if (rc < 0) {
		refuse_body(c, (unsigned)jrpc_refusal_status(rc), jrpc_refusal_code(rc), err, "refused");
		goto out;
	}
	if (jrpc_era_of(b, c->g->protocol[0] ? c->g->protocol : NULL) == JRPC_ERA_MODERN) {
		c->g->modern = true;
		if (check_modern(c, b))
			goto out;
	} else if (check_legacy(c, b)) {
		goto out;
	}
	if (!(vs = calloc(jrpc_count(b), sizeof *vs))) {
		pxi_respond(c, 500, "Internal Server Error", "out of memory");
		goto out;
	}
	for (size_t i = 0; i < jrpc_count(b); i++) {
		decide(c, jrpc_at(b, i), &vs[i]);
		if (vs[i].refused && first < 0)
			first = (int)i;
	}
	refused = first >= 0;
	if (refused && jrpc_count(b) == 1 && vs[0].approve && p->apv) {
		ret = hold(c, jrpc_at(b, 0), &vs[0], t0);
		goto out;
	}
	for (size_t i = 0; i < jrpc_count(b); i++) {
		const jrpc_msg *m = jrpc_at(b, i);
		if (refused && !vs[i].refused && m->kind == JRPC_REQUEST) {
			vs[i].why = "batch_refused";
			vs[i].refused = true;
			vs[i].code = PXG_E_DENIED;
			snprintf(vs[i].message, sizeof vs[i].message,
				 "not sent: message %d of this batch was refused, and a batch goes upstream whole or not at all",
				 first);
		}
		audit_in(c, m, &vs[i], c->mbody.len);
		if (!refused && m->kind == JRPC_REQUEST && remember(c->g, m, vs[i].hash, t0) < 0) {
			pxi_respond(c, 500, "Internal Server Error", "out of memory");
			goto out;
		}
	}
	if (refused) {
		refuse_messages(c, b, vs);
		goto out;
	}
	if (p->audit_fn && pxi_route_guard(c)->audit && c->g->audit_failed) {
		refuse_body(c, 503, JRPC_E_INTERNAL, "the audit log cannot be written: the call was not sent", "audit_failed");
		goto out;
	}
	ret = 0;
out:
	free(vs);
	jrpc_free(b);
	return ret;
}

/* The request head for a guarded http(s) upstream: the body was read whole, so it goes with a Content-Length;
 * traceparent carries the guard's span. */
int pxi_guard_upstream_head(px_conn *c)
{
	/* Accept-Encoding: a compressed answer could not be read (audited, filtered), so none is asked for. */
	static const char *const drop[] = { "Content-Length", "Transfer-Encoding", "traceparent", "Expect",
					    "Accept-Encoding", NULL };
	static const char *const drop_auth[] = { "Content-Length", "Transfer-Encoding", "traceparent", "Expect",
						 "Accept-Encoding", "Authorization", NULL };
	char add[160], tp[TRC_HEADER_LEN + 1];
	cbuf out;
	int rc;

	cbuf_init(&out, 1024, (size_t)pxi_cfg(c)->max_head_bytes + 256);
	trc_format(&c->g->trace, tp);
	snprintf(add, sizeof add, "Content-Length: %zu\r\n%s%s%s", c->mbody.len, c->g->trace.trace_id[0] ? "traceparent: " : "",
		 c->g->trace.trace_id[0] ? tp : "", c->g->trace.trace_id[0] ? "\r\n" : "");
	/* A credential the guard validated is the gateway's business: it never reaches the server. */
	rc = h1_head_rewrite(cbuf_data(&c->head), c->head.len, c->g->authed ? drop_auth : drop, add, &out);
	if (rc < 0) {
		cbuf_free(&out);
		return rc;
	}
	cbuf_free(&c->head);
	c->head = out;
	c->g->forward_body = true;
	return 0;
}
