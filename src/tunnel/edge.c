/* `postern edge`. One libuv loop; three listeners (connector, SNI client, optional outer mTLS) and the admin
 * server. Protocol: docs/internals.md, "Connector link".
 *
 * Objects and lifetimes:
 *  - tunnel: in-memory record of a tunnel id seen at registration, with its live connector connections.
 *    Kept until exit (it carries the tunnel's metrics).
 *  - cconn: one connector connection. Registration line first, then an nghttp2 CLIENT session.
 *    Freed when its tconn has closed and its timer handle is closed.
 *  - relay: one client connection (SNI or mTLS entry) and, once routed, one HTTP/2 stream. A relay
 *    stays allocated while its stream exists (the stream's user data points at it), so nghttp2 never
 *    holds a dangling pointer: freed when its tconn closed, its timer closed and its stream is gone. */
#include "tunnel/edge_int.h"

/* ------------------------------------------------------------------ tunnels and metrics */

void edgi_reject_metric(const char *entry, const char *reason)
{
	char l[128];
	snprintf(l, sizeof l, "entry=\"%s\",reason=\"%s\"", entry, reason);
	adm_add(adm_counter("postern_edge_client_rejects_total", "Client connections refused, by entry and reason", l), 1);
}

/* Load shedding comes in bursts: at most one line a second per cause; suppressed= counts the rejections of
 * that cause not logged since the previous line. */
void edgi_log_shed(struct edge *e, struct shed_log *sl, const char *entry, const char *reason, const char *peer)
{
	uint64_t now = uv_now(e->loop);
	if (sl->any && now - sl->last < 1000) {
		sl->skipped++;
		return;
	}
	log_warn("msg=\"client rejected\" entry=%s reason=\"%s\" peer=%s suppressed=%u", entry, reason, peer, sl->skipped);
	sl->any = true;
	sl->last = now;
	sl->skipped = 0;
}

struct tunnel *edgi_tunnel_find(struct edge *e, const char *id)
{
	for (struct tunnel *t = e->tunnels; t; t = t->next)
		if (!strcmp(t->id, id))
			return t;
	return NULL;
}

struct tunnel *edgi_tunnel_get(struct edge *e, const tok_tunnel *tt)
{
	struct tunnel *t = edgi_tunnel_find(e, tt->id);
	char l[64];
	if (t)
		return t;
	if (!(t = calloc(1, sizeof *t)))
		return NULL;
	snprintf(t->id, sizeof t->id, "%s", tt->id);
	snprintf(t->domain, sizeof t->domain, "%s", tt->domain);
	snprintf(t->name, sizeof t->name, "%s", tt->name);
	t->bind = -1;
	for (size_t i = 0; i < e->cfg.n_mtls_binds; i++)
		if (!strcmp(e->cfg.mtls_binds[i].tunnel, t->name))
			t->bind = (int)i;
	adm_label(l, sizeof l, "tunnel", t->id);
	t->m_conns = adm_gauge("postern_edge_connector_connections", "Registered connector connections", l);
	t->m_streams = adm_counter("postern_edge_streams_total", "Streams opened to connectors", l);
	t->m_active = adm_gauge("postern_edge_streams_active", "Streams open now", l);
	{
		char l2[96];
		snprintf(l2, sizeof l2, "%s,direction=\"to_connector\"", l);
		t->m_up = adm_counter("postern_edge_bytes_total", "Relayed bytes (ciphertext), by direction", l2);
		snprintf(l2, sizeof l2, "%s,direction=\"to_client\"", l);
		t->m_down = adm_counter("postern_edge_bytes_total", NULL, l2);
	}
	t->next = e->tunnels;
	e->tunnels = t;
	return t;
}

/* The live connection of t with the fewest active streams. */
struct cconn *edgi_tunnel_pick(struct tunnel *t)
{
	struct cconn *best = NULL;
	if (!t)
		return NULL;
	for (struct cconn *cc = t->conns; cc; cc = cc->next)
		if (cc->registered && !cc->goaway && !cc->closing && (!best || cc->nstreams < best->nstreams))
			best = cc;
	return best;
}

/* ------------------------------------------------------------------ setup and main */

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
		       unsigned int inlen, void *arg)
{
	const unsigned char *want = arg;
	(void)ssl;
	if (SSL_select_next_proto((unsigned char **)out, outlen, want, want[0] + 1u, in, inlen) == OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_OK;
	/* The connector link speaks only postern/1; the mTLS entry continues without ALPN. */
	return want[1] == 'p' ? SSL_TLSEXT_ERR_ALERT_FATAL : SSL_TLSEXT_ERR_NOACK;
}

static unsigned char alpn_postern[] = "\x09postern/1";
static unsigned char alpn_http11[] = "\x08http/1.1";

void edgi_tls_free(struct edge_tls *t, size_t nbinds)
{
	for (size_t i = 0; t->bind_ca && i < nbinds; i++)
		X509_STORE_free(t->bind_ca[i]);
	free(t->bind_ca);
	SSL_CTX_free(t->cctx);
	SSL_CTX_free(t->mctx);
	memset(t, 0, sizeof *t);
}

/* The TLS contexts and the per-tunnel client CAs cfg names, into t (freed with edgi_tls_free on error). */
int edgi_tls_make(const edge_config *cfg, struct edge_tls *t, char *err, size_t errlen)
{
	const char *mc = cfg->mtls_cert ? cfg->mtls_cert : cfg->connector_cert;
	const char *mk = cfg->mtls_key ? cfg->mtls_key : cfg->connector_key;
	char buf[200];
	STACK_OF(X509_NAME) *names;
	memset(t, 0, sizeof *t);
	if (!(t->cctx = tio_server_ctx(cfg->connector_cert, cfg->connector_key, true, err, errlen)))
		return -EINVAL;
	/* After the handshake the links' records are opened and sealed by core/tls13rec straight between our
	 * queues and the caller's buffer: OpenSSL's record layer copied each record twice more (BIO to its read
	 * buffer, that to ours), ~10% of the edge's CPU in a bulk download. */
	tio_enable_handoff(t->cctx);
	SSL_CTX_set_alpn_select_cb(t->cctx, alpn_select, alpn_postern);
	if (!cfg->mtls_listen)
		return 0;
	if (!(t->mctx = tio_server_ctx(mc, mk, false, err, errlen)))
		return -EINVAL;
	SSL_CTX_set_alpn_select_cb(t->mctx, alpn_select, alpn_http11);
	ERR_clear_error();
	if (SSL_CTX_load_verify_locations(t->mctx, cfg->client_ca_file, NULL) != 1 ||
	    !(names = SSL_load_client_CA_file(cfg->client_ca_file))) {
		snprintf(err, errlen, "%s: cannot load client_ca_file: %s", cfg->client_ca_file, tio_ssl_errors(buf, sizeof buf));
		return -EINVAL;
	}
	SSL_CTX_set_client_CA_list(t->mctx, names);
	/* No certificate, or one the CA did not sign: the handshake fails. */
	SSL_CTX_set_verify(t->mctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_verify_depth(t->mctx, 4);
	SSL_CTX_set_session_id_context(t->mctx, (const unsigned char *)"postern-mtls", 12);
	if (cfg->n_mtls_binds && !(t->bind_ca = calloc(cfg->n_mtls_binds, sizeof *t->bind_ca))) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	for (size_t i = 0; i < cfg->n_mtls_binds; i++) {
		const char *f = cfg->mtls_binds[i].ca_file;
		if (!f)
			continue;
		ERR_clear_error();
		if (!(t->bind_ca[i] = X509_STORE_new()) || X509_STORE_load_file(t->bind_ca[i], f) != 1) {
			snprintf(err, errlen, "%s: cannot load mtls_tunnels.%s.client_ca_file: %s", f,
				 cfg->mtls_binds[i].tunnel, tio_ssl_errors(buf, sizeof buf));
			return -EINVAL;
		}
	}
	return 0;
}

static int listen_on(uv_tcp_t *h, const char *addr, uv_connection_cb cb, char *bound, size_t blen, char *err,
		     size_t errlen)
{
	struct sockaddr_storage ss;
	int len = sizeof ss, rc;
	if ((rc = na_parse_sockaddr(addr, true, &ss)) < 0) {
		snprintf(err, errlen, "'%s' is not a listen address", addr);
		return rc;
	}
	if ((rc = uv_tcp_bind(h, (struct sockaddr *)&ss, 0)) < 0 || (rc = uv_listen((uv_stream_t *)h, 1024, cb)) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", addr, uv_strerror(rc));
		return rc;
	}
	if (uv_tcp_getsockname(h, (struct sockaddr *)&ss, &len) == 0)
		na_format((struct sockaddr *)&ss, bound, blen);
	return 0;
}

/* Tokens are checked only at registration (rotation must not cut open links), but a deleted tunnel (the
 * answer to a leaked token) must stop carrying traffic: its links are closed within RECHECK_MS. */
#define RECHECK_MS 15000
void edgi_recheck(struct edge *e)
{
	for (struct tunnel *tun = e->tunnels; tun; tun = tun->next) {
		if (!tun->conns || tok_get_by_id(e->tok, tun->id, NULL) != -ENOENT)
			continue;
		log_warn("msg=\"tunnel deleted: closing its connector links\" tunnel=%s", tun->id);
		for (struct cconn *cc = tun->conns, *next; cc; cc = next) {
			next = cc->next;
			edgi_cconn_close(cc, "tunnel deleted");
		}
	}
}

static void on_recheck(uv_timer_t *t) { edgi_recheck(t->data); }

int edgi_reglim_new(const edge_config *cfg, srl **out, char *err, size_t errlen)
{
	srl_config c;
	int rc;
	srl_config_default(&c);
	c.burst = (uint32_t)cfg->reg_failures;
	c.window_ms = (uint32_t)cfg->reg_window_ms;
	c.block_ms = (uint32_t)cfg->reg_block_ms;
	if ((rc = srl_new(&c, out)) < 0)
		snprintf(err, errlen, "registration_limit: %s", rc == -ENOMEM ? "out of memory" : "bad values");
	return rc;
}

void edgi_reglim_start(struct edge *e)
{
	/* A summary line is at most a quarter window (or 5 s) late. */
	uint64_t tick = (uint64_t)e->cfg.reg_window_ms / 4;
	tick = tick < 50 ? 50 : tick > 5000 ? 5000 : tick;
	uv_timer_start(&e->reglim_tick, edgi_reglim_tick, tick, tick);
}

/* Everything the edge owns besides its handles, relays and links (all gone by now). */
static void edge_release(struct edge *e)
{
	bool started = e->addr_conn[0] != 0;
	while (e->tunnels) {
		struct tunnel *t = e->tunnels;
		e->tunnels = t->next;
		free(t);
	}
	edgi_src_free(e);
	edgi_tls_free(&e->tls, e->cfg.n_mtls_binds);
	tok_close(e->tok);
	srl_free(e->reglim);
	edge_config_free(&e->cfg);
	free(e);
	if (started)
		log_info("msg=\"edge stopped\"");
}

void edgi_unref(struct edge *e)
{
	if (--e->refs == 0 && e->stopping)
		edge_release(e);
}

static void handle_closed(uv_handle_t *h) { edgi_unref(h->data); }

static void handle_init(struct edge *e, uv_handle_t *h)
{
	h->data = e;
	e->refs++; /* released in handle_closed */
}

int edge_new(uv_loop_t *loop, edge_config *cfg, edge **out, char *err, size_t errlen)
{
	struct edge *e = calloc(1, sizeof *e);
	int rc;
	*out = NULL;
	if (!e) {
		edge_config_free(cfg);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	e->loop = loop;
	e->cfg = *cfg;
	memset(cfg, 0, sizeof *cfg);
	snprintf(e->addr_mtls, sizeof e->addr_mtls, "-");
	if ((rc = tok_open(e->cfg.state_dir, e->cfg.domain, &e->tok, err, errlen)) < 0 ||
	    (rc = edgi_tls_make(&e->cfg, &e->tls, err, errlen)) < 0 || (rc = edgi_reglim_new(&e->cfg, &e->reglim, err, errlen)) < 0 ||
	    (rc = edgi_src_init(e, err, errlen)) < 0) {
		edge_release(e);
		return rc;
	}
	e->m_reg_ok = adm_counter("postern_edge_registrations_total", "Connector registrations, by result", "result=\"ok\"");
	e->m_reg_rej = adm_counter("postern_edge_registrations_total", NULL, "result=\"rejected\"");
	e->m_reg_limited = adm_counter("postern_edge_registrations_total", NULL, "result=\"rate_limited\"");
	e->m_clients_sni = adm_gauge("postern_edge_client_connections", "Client connections open now, by entry", "entry=\"sni\"");
	e->m_clients_mtls = adm_gauge("postern_edge_client_connections", NULL, "entry=\"mtls\"");
	e->m_pending = adm_gauge("postern_edge_clients_pending",
				"Client connections not routed yet (at most client_pending_max)", NULL);
	e->m_hello_bytes = adm_gauge("postern_edge_client_hello_bytes",
				    "Bytes buffered for client connections not routed yet (at most client_hello_budget)", NULL);
	e->m_tunnels = adm_gauge("postern_edge_tunnels_connected", "Tunnels with at least one registered connector connection", NULL);
	/* Every handle is initialised first so that edge_free() can close them all whatever failed. */
	uv_tcp_init(loop, &e->lsn_conn);
	handle_init(e, (uv_handle_t *)&e->lsn_conn);
	uv_tcp_init(loop, &e->lsn_cli);
	handle_init(e, (uv_handle_t *)&e->lsn_cli);
	if ((e->have_mtls = e->cfg.mtls_listen != NULL)) {
		uv_tcp_init(loop, &e->lsn_mtls);
		handle_init(e, (uv_handle_t *)&e->lsn_mtls);
	}
	uv_timer_init(loop, &e->recheck);
	handle_init(e, (uv_handle_t *)&e->recheck);
	uv_timer_init(loop, &e->reglim_tick);
	handle_init(e, (uv_handle_t *)&e->reglim_tick);
	if ((rc = listen_on(&e->lsn_conn, e->cfg.connector_listen, edgi_on_connector, e->addr_conn, sizeof e->addr_conn,
			    err, errlen)) < 0 ||
	    (rc = listen_on(&e->lsn_cli, e->cfg.client_listen, edgi_on_client, e->addr_cli, sizeof e->addr_cli, err,
			    errlen)) < 0 ||
	    (e->have_mtls && (rc = listen_on(&e->lsn_mtls, e->cfg.mtls_listen, edgi_on_client, e->addr_mtls,
					     sizeof e->addr_mtls, err, errlen)) < 0))
		goto fail;
	if (!(e->adm = adm_new(loop)) || edgi_admin_routes(e) < 0) {
		snprintf(err, errlen, "metrics_listen: out of memory");
		rc = -ENOMEM;
		goto fail;
	}
	if ((rc = adm_listen(e->adm, e->cfg.metrics_listen, err, errlen)) < 0) {
		char m[400];
		snprintf(m, sizeof m, "metrics_listen: %s", err);
		snprintf(err, errlen, "%s", m);
		goto fail;
	}
	uv_timer_start(&e->recheck, on_recheck, RECHECK_MS, RECHECK_MS);
	edgi_reglim_start(e);
	if (e->have_mtls && !e->cfg.n_mtls_binds)
		log_warn("msg=\"mtls_listen without mtls_tunnels: every mTLS client will be refused\" "
			 "hint=\"name the certificates each tunnel takes under mtls_tunnels.<tunnel name>\"");
	log_info("msg=\"edge listening\" edge_id=%s domain=%s connector=%s client=%s mtls=%s metrics=127.0.0.1:%d",
		 e->cfg.edge_id, e->cfg.domain, e->addr_conn, e->addr_cli, e->addr_mtls, adm_port(e->adm));
	*out = e;
	return 0;
fail:
	e->addr_conn[0] = 0; /* never started: no "edge stopped" line */
	edge_free(e);
	return rc;
}

void edge_free(edge *e)
{
	if (!e || e->stopping)
		return;
	e->stopping = true;
	if (e->addr_conn[0] && e->adm)
		log_info("msg=\"edge stopping\"");
	uv_close((uv_handle_t *)&e->recheck, handle_closed);
	uv_close((uv_handle_t *)&e->reglim_tick, handle_closed);
	uv_close((uv_handle_t *)&e->lsn_conn, handle_closed);
	uv_close((uv_handle_t *)&e->lsn_cli, handle_closed);
	if (e->have_mtls)
		uv_close((uv_handle_t *)&e->lsn_mtls, handle_closed);
	adm_free(e->adm);
	e->adm = NULL;
	for (struct relay *r = e->relays; r; r = r->next)
		if (r->tc)
			tconn_close(r->tc);
	for (struct cconn *cc = e->pending; cc; cc = cc->next)
		tconn_close(cc->tc);
	for (struct tunnel *t = e->tunnels; t; t = t->next)
		for (struct cconn *cc = t->conns; cc; cc = cc->next) {
			if (cc->h2 && !cc->closing) {
				nghttp2_submit_goaway(cc->h2, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(cc->h2),
						      NGHTTP2_NO_ERROR, NULL, 0);
				edgi_cconn_flush(cc);
			}
			edgi_cconn_close(cc, "edge stopping");
		}
}

int edge_port(const edge *e, enum edge_addr which)
{
	const uv_tcp_t *h = which == EDGE_ADDR_CONNECTOR ? &e->lsn_conn
			    : which == EDGE_ADDR_CLIENT  ? &e->lsn_cli
			    : which == EDGE_ADDR_MTLS && e->have_mtls ? &e->lsn_mtls
								      : NULL;
	struct sockaddr_storage ss;
	int len = sizeof ss;
	if (which == EDGE_ADDR_METRICS)
		return e->adm ? adm_port(e->adm) : 0;
	if (!h || uv_tcp_getsockname(h, (struct sockaddr *)&ss, &len) < 0)
		return 0;
	return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
					       : ((struct sockaddr_in *)&ss)->sin_port);
}

/* ------------------------------------------------------------------ main */

#define ED_WARN_MAX 8
struct edge_daemon {
	edge_config cfg;
	edge *e;
	char warn[ED_WARN_MAX][512]; /* preflight warnings of the load, logged once the log format is set */
	int nwarn;
};

static void ed_keep_warning(void *ud, const char *w)
{
	struct edge_daemon *d = ud;
	if (d->nwarn < ED_WARN_MAX)
		snprintf(d->warn[d->nwarn++], sizeof d->warn[0], "%s", w);
}

static void ed_log_warning(void *ud, const char *w)
{
	char q[700];
	(void)ud;
	log_warn("msg=\"config warning\" detail=%s", log_quote(w, q, sizeof q));
}

static int ed_load(void *ud, const char *path, int *log_level, int *log_format, char *err, size_t errlen)
{
	struct edge_daemon *d = ud;
	int rc = edge_config_load(path, &d->cfg, err, errlen);
	if (rc == 0)
		rc = edge_config_preflight(&d->cfg, ed_keep_warning, d, err, errlen);
	*log_level = d->cfg.log_level;
	*log_format = d->cfg.log_format;
	return rc;
}

static int ed_start(void *ud, uv_loop_t *loop, char *err, size_t errlen)
{
	struct edge_daemon *d = ud;
	for (int i = 0; i < d->nwarn; i++)
		ed_log_warning(d, d->warn[i]);
	adm_build_info(POSTERN_VERSION, NULL);
	adm_process_metrics();
	return edge_new(loop, &d->cfg, &d->e, err, errlen);
}

static void ed_drain(void *ud, dmn *dm, int signum)
{
	struct edge_daemon *d = ud;
	(void)signum;
	edge_free(d->e); /* the edge releases itself on the loop once its connections are closed */
	d->e = NULL;
	dmn_drained(dm);
}

static void ed_cleanup(void *ud)
{
	struct edge_daemon *d = ud;
	edge_config_free(&d->cfg);
	adm_metrics_reset();
}

/* SIGHUP: the file is loaded and checked again the way ed_load does, then applied (edge_reload). */
static int ed_reload(void *ud, const char *path, int *log_level, int *log_format, char *restart, size_t restartlen,
		     char *err, size_t errlen)
{
	struct edge_daemon *d = ud;
	edge_config c;
	int rc;
	restart[0] = 0;
	if (!d->e) {
		snprintf(err, errlen, "%s: not reloaded: the edge is stopping", path);
		return -EBUSY;
	}
	if ((rc = edge_config_load(path, &c, err, errlen)) < 0)
		return rc;
	/* A certificate that does not load or match its key is refused here: the running one stays. */
	if ((rc = edge_config_preflight(&c, ed_log_warning, d, err, errlen)) < 0) {
		edge_config_free(&c);
		return rc;
	}
	*log_level = c.log_level;
	*log_format = c.log_format;
	return edge_reload(d->e, &c, restart, restartlen, err, errlen);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: postern edge -c edge.yaml [--log-level LEVEL] [--log-format logfmt|json]\n\n"
		   "The public relay: connectors register on connector_listen (TLS 1.3, tunnel token), MCP clients\n"
		   "connect to client_listen with TLS SNI <route>.<tunnel id>.<domain> (relayed, never decrypted),\n"
		   "or through the outer mTLS entry (mtls_listen: HTTP CONNECT with a client certificate).\n\n"
		   "config keys: state_dir, domain, edge_id, connector_listen (:7844), connector_tls.cert_file/key_file,\n"
		   "  client_listen (:443), client_allowed_ips, metrics_listen (127.0.0.1:20250), mtls_listen,\n"
		   "  client_ca_file, mtls_tls.cert_file/key_file (default: connector_tls), client_hello_budget (64M),\n"
		   "  client_pending_max (16384), client_pending_per_ip (256), client_pending_per_net (1024: IPv4 /24,\n"
		   "  IPv6 /64), client_hello_timeout (10s), client_hello_timeout_busy (2s), log_level,\n"
		   "  log_format (logfmt|json)\n\n"
		   "metrics_listen serves /metrics, /healthz, /ready (200 while the listeners are up and the token store\n"
		   "answers) and, on a loopback address, /tunnels (live connections, for postern tunnel list|info).\n\n"
		   "SIGHUP reloads the file live: certificates and keys (for new connections), mtls_tunnels, client caps\n"
		   "and timeouts, client_allowed_ips, registration_limit, edge_id, log keys; the listeners, state_dir and\n"
		   "domain need a restart (named in restart_needed_for=). A file that fails keeps the running config.\n");
}

int edge_main(int argc, char **argv)
{
	static const dmn_ops ops = { "postern edge", usage, ed_load, ed_start, ed_drain, ed_cleanup, NULL, ed_reload };
	struct edge_daemon d;
	memset(&d, 0, sizeof d);
	return dmn_run(&ops, &d, argc, argv);
}
