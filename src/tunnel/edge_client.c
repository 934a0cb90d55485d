/* The edge's client entries: the SNI listener (route by the ClientHello's server name) and the optional
 * outer mTLS listener (route by an HTTP CONNECT head after a client-certificate handshake). */
#include "tunnel/edge_int.h"

#include <openssl/x509v3.h>
/* ------------------------------------------------------------------ client connections */

static void sni_on_data(struct relay *r, const uint8_t *p, size_t n)
{
	struct edge *e = r->e;
	char hb[300];
	size_t cap;
	int res;
	/* Many clients holding partial hellos must not add up to more than the budget: the one whose bytes would
	 * cross it is closed (the budget held by the others drains within cfg.client_hello_timeout). */
	if (r->in.len + n <= HELLO_HOLD && (cap = cbuf_cap_after(&r->in, n)) > r->charge &&
	    e->hello_bytes - r->charge + cap > e->cfg.client_hello_budget) {
		edgi_log_shed(e, &e->shed_budget, "sni", "ClientHello buffer budget exhausted", r->peer);
		edgi_reject_metric("sni", "hello_budget");
		edgi_relay_abort(r);
		return;
	}
	r->in.max = HELLO_HOLD;
	if (cbuf_append(&r->in, p, n) < 0) {
		log_info("msg=\"client rejected\" entry=sni reason=\"ClientHello too large\" peer=%s", r->peer);
		edgi_reject_metric("sni", "too_large");
		edgi_relay_abort(r);
		return;
	}
	edgi_hello_charge(r, r->in.cap);
	res = sni_parse(cbuf_data(&r->in), r->in.len, r->host, sizeof r->host);
	switch (res) {
	case SNI_NEED_MORE:
		return;
	case SNI_FOUND:
		uv_timer_stop(&r->timer);
		edgi_relay_route(r);
		return;
	case SNI_NONE:
		log_info("msg=\"client rejected\" entry=sni reason=\"no server name in ClientHello\" peer=%s", r->peer);
		edgi_reject_metric("sni", "no_sni");
		edgi_sni_refuse(r, SNI_ALERT_UNRECOGNIZED_NAME);
		return;
	default:
		log_info("msg=\"client rejected\" entry=sni reason=%s peer=%s", q(sni_result_str(res), hb, sizeof hb),
			 r->peer);
		edgi_reject_metric("sni", res == SNI_TOO_LARGE ? "too_large" : "malformed");
		edgi_relay_abort(r);
	}
}

static void mtls_on_data(struct relay *r, const uint8_t *p, size_t n)
{
	struct mtls_head *h = r->head;
	char hb[600], *colon, *end;
	size_t used, lf;
	long port;
	h1_ev ev;

	ev = h1_parse(&h->req, p, n, &used);
	if (ev == H1_MORE)
		return;
	if (ev == H1_ERR) {
		if (h->req.err == H1_E_HEAD_TOO_LARGE) {
			edgi_reject_metric("mtls", "too_large");
			edgi_mtls_error(r, 431, "Request Header Fields Too Large", "CONNECT request head too large");
			return;
		}
		log_info("msg=\"client rejected\" entry=mtls reason=\"bad CONNECT request: %s\" peer=%s",
			 h->req.errstr, r->peer);
		edgi_reject_metric("mtls", "bad_request");
		edgi_mtls_error(r, 400, "Bad Request", "malformed HTTP request");
		return;
	}
	/* H1_HEAD leaves the head's last LF (it is there: it ended the head); after a CONNECT head what follows
	 * it is the tunnel. */
	if (h1_parse(&h->req, p + used, 1, &lf) != H1_ERR)
		used += lf;
	uv_timer_stop(&r->timer);
	if (h->req.method != HTTP_CONNECT) {
		log_info("msg=\"client rejected\" entry=mtls reason=\"method %s, not CONNECT\" peer=%s",
			 h1_method_name(&h->req), r->peer);
		edgi_reject_metric("mtls", "bad_request");
		edgi_mtls_error(r, 405, "Method Not Allowed", "only CONNECT <route>.<tunnel domain>:443 is served here");
		return;
	}
	if (h->req.target_long || !(colon = strrchr(h->url, ':')) || colon == h->url ||
	    (size_t)(colon - h->url) >= sizeof r->host) {
		log_info("msg=\"client rejected\" entry=mtls reason=\"bad CONNECT target\" target=%s peer=%s",
			 q(h->url, hb, sizeof hb), r->peer);
		edgi_reject_metric("mtls", "bad_request");
		edgi_mtls_error(r, 400, "Bad Request", "CONNECT target must be host:443");
		return;
	}
	/* The host is held to the rule an SNI name is held to: what reaches the connector as :authority is a
	 * plain DNS name whichever entry it came through (no userinfo, brackets, escapes or trailing dot). */
	if (!sni_valid_host(h->url, (size_t)(colon - h->url))) {
		log_info("msg=\"client rejected\" entry=mtls reason=\"bad CONNECT host\" target=%s peer=%s",
			 q(h->url, hb, sizeof hb), r->peer);
		edgi_reject_metric("mtls", "bad_request");
		edgi_mtls_error(r, 400, "Bad Request", "CONNECT host must be a DNS name (letters, digits, '-', '_', '.')");
		return;
	}
	/* 1 to 5 digits, 1..65535: strtol alone would take signs, blanks and overflow. */
	port = 0;
	for (end = colon + 1; *end >= '0' && *end <= '9' && end - colon <= 5; end++)
		port = port * 10 + (*end - '0');
	if (*end || end == colon + 1 || port < 1 || port > 65535) {
		log_info("msg=\"client rejected\" entry=mtls reason=\"bad CONNECT port\" target=%s peer=%s",
			 q(h->url, hb, sizeof hb), r->peer);
		edgi_reject_metric("mtls", "bad_request");
		edgi_mtls_error(r, 400, "Bad Request", "CONNECT port must be a number (443)");
		return;
	}
	memcpy(r->host, h->url, (size_t)(colon - h->url));
	r->host[colon - h->url] = 0;
	for (char *c = r->host; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c + 32);
	if (port != 443) {
		log_info("msg=\"client rejected\" entry=mtls reason=\"port is not 443\" target=%s peer=%s",
			 q(h->url, hb, sizeof hb), r->peer);
		edgi_reject_metric("mtls", "forbidden");
		edgi_mtls_error(r, 403, "Forbidden", "only port 443 is relayed");
		return;
	}
	/* Bytes after the head already belong to the tunnel (a client may send its ClientHello at once). */
	r->in.max = UP_CAP;
	if (used < n && cbuf_append(&r->in, p + used, n - used) < 0) {
		edgi_relay_abort(r);
		return;
	}
	free(r->head);
	r->head = NULL;
	edgi_relay_route(r);
}

/* ------------------------------------------------------------------ mTLS: client certificate to tunnel */

/* The subject's common name as UTF-8 into out; false when there is not exactly one, or it holds a NUL. */
static bool cert_cn(X509 *x, char *out, size_t outlen)
{
	X509_NAME *n = X509_get_subject_name(x);
	int i = X509_NAME_get_index_by_NID(n, NID_commonName, -1), len;
	unsigned char *u = NULL;
	bool ok = false;
	if (i < 0 || X509_NAME_get_index_by_NID(n, NID_commonName, i) >= 0)
		return false;
	len = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i)));
	if (len >= 0 && (size_t)len < outlen && !memchr(u, 0, (size_t)len)) {
		memcpy(out, u, (size_t)len);
		out[len] = 0;
		ok = true;
	}
	OPENSSL_free(u);
	return ok;
}

static bool cert_has_uri(X509 *x, char **uris)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	bool found = false;
	for (int i = 0; gens && !found && i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		const unsigned char *d;
		size_t len;
		if (g->type != GEN_URI)
			continue;
		d = ASN1_STRING_get0_data(g->d.uniformResourceIdentifier);
		len = (size_t)ASN1_STRING_length(g->d.uniformResourceIdentifier);
		for (char **u = uris; *u && !found; u++)
			found = strlen(*u) == len && !memcmp(*u, d, len);
	}
	GENERAL_NAMES_free(gens);
	return found;
}

/* The handshake verified the chain against client_ca_file; a per-tunnel CA narrows it to one issuer. */
static bool cert_from_ca(X509_STORE *ca, SSL *ssl, X509 *x)
{
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	bool ok = ctx && X509_STORE_CTX_init(ctx, ca, x, SSL_get_peer_cert_chain(ssl)) == 1 &&
		  X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT) == 1 && X509_verify_cert(ctx) == 1;
	X509_STORE_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

bool edgi_mtls_bound(struct relay *r, struct tunnel *t)
{
	struct edge *e = r->e;
	SSL *ssl = r->tc ? tconn_ssl(r->tc) : NULL;
	X509 *x = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
	const edge_mtls_bind *b = t->bind >= 0 ? &e->cfg.mtls_binds[t->bind] : NULL;
	char cn[256] = "", hb[300], cb[300];
	bool have_cn = x && cert_cn(x, cn, sizeof cn), ok;
	if (!b) {
		log_info("msg=\"client rejected\" entry=mtls reason=\"tunnel has no mtls_tunnels entry\" tunnel=%s "
			 "tunnel_name=%s host=%s peer=%s", t->id, q(t->name, cb, sizeof cb), q(r->host, hb, sizeof hb), r->peer);
		edgi_reject_metric("mtls", "tunnel_not_bound");
		edgi_mtls_error(r, 403, "Forbidden", "this tunnel is not served through the mTLS entry");
		return false;
	}
	ok = x != NULL;
	if (ok && b->ca_file)
		ok = cert_from_ca(e->tls.bind_ca[t->bind], ssl, x);
	if (ok && (b->ncns || b->nuris)) {
		bool named = false;
		for (size_t i = 0; have_cn && i < b->ncns && !named; i++)
			named = !strcmp(b->cns[i], cn);
		ok = named || (b->nuris && cert_has_uri(x, b->uris));
	}
	if (!ok) {
		char cq[300];
		log_warn("msg=\"client rejected\" entry=mtls reason=\"client certificate not allowed for this tunnel\" "
			 "tunnel=%s tunnel_name=%s cert_cn=%s host=%s peer=%s", t->id, q(t->name, cb, sizeof cb),
			 q(have_cn ? cn : "-", cq, sizeof cq), q(r->host, hb, sizeof hb), r->peer);
		edgi_reject_metric("mtls", "cert_not_allowed");
		edgi_mtls_error(r, 403, "Forbidden", "client certificate is not allowed for this tunnel");
	}
	return ok;
}

static void relay_on_data(tconn *c, const uint8_t *p, size_t n, void *ud)
{
	struct relay *r = ud;
	switch (r->st) {
	case RS_HELLO:
		sni_on_data(r, p, n);
		return;
	case RS_HEAD:
		mtls_on_data(r, p, n);
		return;
	case RS_OPENING:
	case RS_OPEN:
		r->in.max = UP_CAP + 64 * 1024;
		if (cbuf_append(&r->in, p, n) < 0) {
			edgi_relay_abort(r); /* reads pause at UP_CAP: more than a read past it is a bug */
			return;
		}
		if (r->in.len >= UP_CAP && !r->paused) {
			r->paused = true;
			tconn_pause(c);
		}
		edgi_relay_kick(r);
		return;
	default:
		return; /* answered already; input is ignored */
	}
}

static void relay_on_eof(tconn *c, void *ud)
{
	struct relay *r = ud;
	(void)c;
	if (r->st == RS_OPENING || r->st == RS_OPEN) {
		r->cli_eof = true;
		edgi_relay_kick(r);
		return;
	}
	if (r->st == RS_HELLO || r->st == RS_HEAD) {
		log_info("msg=\"client rejected\" entry=%s reason=\"closed before %s\" peer=%s",
			 r->entry == ENTRY_SNI ? "sni" : "mtls", r->st == RS_HELLO ? "a complete ClientHello" : "a CONNECT request",
			 r->peer);
		edgi_reject_metric(r->entry == ENTRY_SNI ? "sni" : "mtls", "incomplete");
		edgi_relay_abort(r);
	}
}

static void relay_on_drain(tconn *c, void *ud)
{
	struct relay *r = ud;
	(void)c;
	if (r->cc && r->unconsumed && r->sid > 0) {
		nghttp2_session_consume(r->cc->h2, r->sid, r->unconsumed);
		r->unconsumed = 0;
		edgi_cconn_flush(r->cc);
	}
}

static void relay_on_open(tconn *c, int status, void *ud)
{
	struct relay *r = ud;
	if (status < 0) {
		/* Only the mTLS entry has a handshake: a missing or untrusted client certificate ends here. */
		log_info("msg=\"client rejected\" entry=mtls reason=\"TLS handshake failed: %s\" peer=%s", tconn_errstr(c),
			 r->peer);
		edgi_reject_metric("mtls", "handshake");
		return;
	}
	if (r->entry == ENTRY_MTLS && r->st == RS_HEAD)
		uv_timer_start(&r->timer, edgi_relay_timeout, r->hello_ms, 0);
}

static const tconn_cbs relay_cbs = {
	.on_open = relay_on_open,
	.on_data = relay_on_data,
	.on_eof = relay_on_eof,
	.on_drain = relay_on_drain,
	.on_close = edgi_relay_on_close,
};

static void refused_closed(uv_handle_t *h)
{
	struct edge *e = h->data;
	free(h);
	edgi_unref(e);
}

/* Takes the pending connection off the listener and closes it: returning without uv_accept would leave it
 * queued and libuv would stop reading this listener. */
void edgi_accept_and_drop(struct edge *e, uv_stream_t *lsn)
{
	uv_tcp_t *t = malloc(sizeof *t);
	if (!t || uv_tcp_init(e->loop, t) < 0) {
		free(t);
		return;
	}
	t->data = e;
	e->refs++;
	uv_accept(lsn, (uv_stream_t *)t);
	uv_close((uv_handle_t *)t, refused_closed);
}

/* Closes the oldest client not routed yet (it no longer counts as pending once this returns). */
static void pend_evict_oldest(struct edge *e)
{
	struct relay *old = e->pend_first;
	const char *ename;
	if (!old)
		return;
	ename = old->entry == ENTRY_SNI ? "sni" : "mtls";
	edgi_log_shed(e, &e->shed_pending, ename, "too many clients not routed yet: oldest closed", old->peer);
	edgi_reject_metric(ename, "evicted");
	edgi_relay_drop_unrouted(old);
	old->st = RS_DONE;
	edgi_relay_abort(old);
}

void edgi_on_client(uv_stream_t *lsn, int status)
{
	struct edge *e = lsn->data;
	enum entry entry = lsn == (uv_stream_t *)&e->lsn_mtls ? ENTRY_MTLS : ENTRY_SNI;
	const char *ename = entry == ENTRY_SNI ? "sni" : "mtls";
	struct relay *r;
	const char *why;
	int rc;
	if (status < 0) {
		log_warn("msg=\"accept failed\" entry=%s err=\"%s\"", ename, uv_strerror(status));
		return;
	}
	if (e->stopping)
		return;
	if (!(r = calloc(1, sizeof *r))) {
		edgi_accept_and_drop(e, lsn);
		return;
	}
	r->e = e;
	e->refs++; /* released in relay_maybe_free */
	r->entry = entry;
	cbuf_init(&r->in, 4096, HELLO_HOLD);
	r->st = entry == ENTRY_SNI ? RS_HELLO : RS_HEAD;
	r->sid = -1;
	r->t0 = uv_now(e->loop);
	uv_timer_init(e->loop, &r->timer);
	r->timer.data = r;
	if (entry == ENTRY_MTLS) {
		if (!(r->head = calloc(1, sizeof *r->head))) {
			r->tc_closed = true;
			uv_close((uv_handle_t *)&r->timer, edgi_relay_timer_closed);
			return;
		}
		/* HEAD_MAX counts the head's last LF, h1's cap does not. Routing is on the target, not Host. */
		h1_init(&r->head->req, true, HEAD_MAX - 1);
		h1_any_host(&r->head->req);
		h1_keep_target(&r->head->req, r->head->url, sizeof r->head->url);
	}
	if ((rc = tconn_accept(lsn, entry == ENTRY_MTLS ? e->tls.mctx : NULL, &relay_cbs, r, &r->tc)) < 0) {
		log_warn("msg=\"accept failed\" entry=%s err=\"%s\"", ename, uv_strerror(rc));
		r->tc = NULL;
		r->tc_closed = true;
		uv_close((uv_handle_t *)&r->timer, edgi_relay_timer_closed);
		return;
	}
	na_format(tconn_peer_addr(r->tc), r->peer, sizeof r->peer);
	LIST_PUSH(e->relays, r, next, pprev);
	e->nrelays++;
	adm_add(entry == ENTRY_SNI ? e->m_clients_sni : e->m_clients_mtls, 1);
	if (e->cfg.have_allowed && !na_cidrs_match(&e->cfg.client_allowed, tconn_peer_addr(r->tc))) {
		log_info("msg=\"client rejected\" entry=%s reason=\"address not in client_allowed_ips\" peer=%s", ename,
			 r->peer);
		edgi_reject_metric(ename, "ip_not_allowed");
		r->st = RS_DONE;
		tconn_close(r->tc);
		return;
	}
	if (e->nrelays > MAX_CLIENTS) {
		edgi_log_shed(e, &e->shed_clients, ename, "too many clients", r->peer);
		edgi_reject_metric(ename, "overload");
		r->st = RS_DONE;
		tconn_close(r->tc);
		return;
	}
	/* Clients that have not said where they go cost a deadline, a buffer and (mTLS) a TLS session each.
	 * One source past its share is refused; a full edge makes room by closing the oldest, so that a flood
	 * cannot keep newcomers out by merely holding its connections open (issue 11). */
	if ((rc = edgi_pend_add(r, &why)) < 0) {
		if (why) {
			char reason[96];
			snprintf(reason, sizeof reason, "too many clients not routed yet from this %s",
				 !strcmp(why, "per_address") ? "address" : "network");
			edgi_log_shed(e, &e->shed_src, ename, reason, r->peer);
			edgi_reject_metric(ename, why);
		} else {
			edgi_log_shed(e, &e->shed_pending, ename, "out of memory", r->peer);
			edgi_reject_metric(ename, "pending");
		}
		r->st = RS_DONE;
		tconn_close(r->tc);
		return;
	}
	/* A loop, not one eviction: a reload may have lowered the cap below what is pending. */
	while (e->npending > e->cfg.client_pending_max)
		pend_evict_oldest(e); /* never r: it is the newest of at least two */
	/* Under pressure a client gets less time to say where it goes. */
	r->hello_ms = (uint32_t)(e->npending * 2 > e->cfg.client_pending_max ? e->cfg.client_hello_timeout_busy_ms
									     : e->cfg.client_hello_timeout_ms);
	/* SNI: the ClientHello deadline starts now. mTLS: tconn bounds the handshake, then on_open arms it. */
	if (entry == ENTRY_SNI)
		uv_timer_start(&r->timer, edgi_relay_timeout, r->hello_ms, 0);
}
