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

struct edge E;
/* ------------------------------------------------------------------ tunnels and metrics */

void edgi_reject_metric(const char *entry, const char *reason)
{
	char l[128];
	snprintf(l, sizeof l, "entry=\"%s\",reason=\"%s\"", entry, reason);
	adm_add(adm_counter("postern_edge_client_rejects_total", "Client connections refused, by entry and reason", l), 1);
}

/* Load shedding comes in bursts: at most one line a second per cause; suppressed= counts the rejections of
 * that cause not logged since the previous line. */
void edgi_log_shed(struct shed_log *sl, const char *entry, const char *reason, const char *peer)
{
	uint64_t now = uv_now(E.loop);
	if (sl->any && now - sl->last < 1000) {
		sl->skipped++;
		return;
	}
	log_warn("msg=\"client rejected\" entry=%s reason=\"%s\" peer=%s suppressed=%u", entry, reason, peer, sl->skipped);
	sl->any = true;
	sl->last = now;
	sl->skipped = 0;
}

struct tunnel *edgi_tunnel_find(const char *id)
{
	for (struct tunnel *t = E.tunnels; t; t = t->next)
		if (!strcmp(t->id, id))
			return t;
	return NULL;
}

struct tunnel *edgi_tunnel_get(const tok_tunnel *tt)
{
	struct tunnel *t = edgi_tunnel_find(tt->id);
	char l[64];
	if (t)
		return t;
	if (!(t = calloc(1, sizeof *t)))
		return NULL;
	snprintf(t->id, sizeof t->id, "%s", tt->id);
	snprintf(t->domain, sizeof t->domain, "%s", tt->domain);
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
	t->next = E.tunnels;
	E.tunnels = t;
	return t;
}

void edgi_list_unlink_cc(struct cconn *cc)
{
	if (!cc->pprev)
		return;
	*cc->pprev = cc->next;
	if (cc->next)
		cc->next->pprev = cc->pprev;
	cc->pprev = NULL;
	cc->next = NULL;
}

void edgi_list_link_cc(struct cconn **head, struct cconn *cc)
{
	cc->next = *head;
	if (*head)
		(*head)->pprev = &cc->next;
	*head = cc;
	cc->pprev = head;
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

static int make_ctx(char *err, size_t errlen)
{
	const char *mc = E.cfg.mtls_cert ? E.cfg.mtls_cert : E.cfg.connector_cert;
	const char *mk = E.cfg.mtls_key ? E.cfg.mtls_key : E.cfg.connector_key;
	char buf[200];
	STACK_OF(X509_NAME) *names;
	if (!(E.cctx = tio_server_ctx(E.cfg.connector_cert, E.cfg.connector_key, true, err, errlen)))
		return -EINVAL;
	/* A handful of busy links: keeping TLS record buffers saves a malloc and free per record. */
	SSL_CTX_clear_mode(E.cctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_alpn_select_cb(E.cctx, alpn_select, alpn_postern);
	if (!E.cfg.mtls_listen)
		return 0;
	if (!(E.mctx = tio_server_ctx(mc, mk, false, err, errlen)))
		return -EINVAL;
	SSL_CTX_set_alpn_select_cb(E.mctx, alpn_select, alpn_http11);
	ERR_clear_error();
	if (SSL_CTX_load_verify_locations(E.mctx, E.cfg.client_ca_file, NULL) != 1 ||
	    !(names = SSL_load_client_CA_file(E.cfg.client_ca_file))) {
		snprintf(err, errlen, "%s: cannot load client_ca_file: %s", E.cfg.client_ca_file, tio_ssl_errors(buf, sizeof buf));
		return -EINVAL;
	}
	SSL_CTX_set_client_CA_list(E.mctx, names);
	/* No certificate, or one the CA did not sign: the handshake fails. */
	SSL_CTX_set_verify(E.mctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_verify_depth(E.mctx, 4);
	SSL_CTX_set_session_id_context(E.mctx, (const unsigned char *)"postern-mtls", 12);
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
 * answer to a leaked token) must edgi_stop carrying traffic: its links are closed within RECHECK_MS. */
#define RECHECK_MS 15000
static void on_recheck(uv_timer_t *t)
{
	(void)t;
	for (struct tunnel *tun = E.tunnels; tun; tun = tun->next) {
		if (!tun->conns || tok_get_by_id(E.tok, tun->id, NULL) != -ENOENT)
			continue;
		log_warn("msg=\"tunnel deleted: closing its connector links\" tunnel=%s", tun->id);
		for (struct cconn *cc = tun->conns, *next; cc; cc = next) {
			next = cc->next;
			edgi_cconn_close(cc, "tunnel deleted");
		}
	}
}

void edgi_stop(void)
{
	if (E.stopping)
		return;
	E.stopping = true;
	log_info("msg=\"edge stopping\"");
	uv_close((uv_handle_t *)&E.recheck, NULL);
	uv_close((uv_handle_t *)&E.lsn_conn, NULL);
	uv_close((uv_handle_t *)&E.lsn_cli, NULL);
	if (E.have_mtls)
		uv_close((uv_handle_t *)&E.lsn_mtls, NULL);
	uv_close((uv_handle_t *)&E.sigterm, NULL);
	uv_close((uv_handle_t *)&E.sigint, NULL);
	adm_free(E.adm);
	E.adm = NULL;
	for (struct relay *r = E.relays; r; r = r->next)
		if (r->tc)
			tconn_close(r->tc);
	for (struct cconn *cc = E.pending; cc; cc = cc->next)
		tconn_close(cc->tc);
	for (struct tunnel *t = E.tunnels; t; t = t->next)
		for (struct cconn *cc = t->conns; cc; cc = cc->next) {
			if (cc->h2 && !cc->closing) {
				nghttp2_submit_goaway(cc->h2, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(cc->h2),
						      NGHTTP2_NO_ERROR, NULL, 0);
				edgi_cconn_flush(cc);
			}
			edgi_cconn_close(cc, "edge stopping");
		}
}

static void on_signal(uv_signal_t *s, int sig)
{
	(void)s;
	(void)sig;
	edgi_stop();
}

static void usage(FILE *f)
{
	fprintf(f, "usage: postern edge -c edge.yaml\n\n"
		   "The public relay: connectors register on connector_listen (TLS 1.3, tunnel token), MCP clients\n"
		   "connect to client_listen with TLS SNI <route>.<tunnel id>.<domain> (relayed, never decrypted),\n"
		   "or through the outer mTLS entry (mtls_listen: HTTP CONNECT with a client certificate).\n\n"
		   "config keys: state_dir, domain, edge_id, connector_listen (:7844), connector_tls.cert_file/key_file,\n"
		   "  client_listen (:443), client_allowed_ips, metrics_listen (127.0.0.1:20241), mtls_listen,\n"
		   "  client_ca_file, mtls_tls.cert_file/key_file (default: connector_tls), client_hello_budget (64M),\n"
		   "  client_pending_max (16384), log_level\n");
}

int edge_main(int argc, char **argv)
{
	const char *path = NULL;
	char err[512], a1[NA_FMT_MAX] = "", a2[NA_FMT_MAX] = "", a3[NA_FMT_MAX] = "-";
	int rc = 1;

	{
		int a = cli_config_path(argc, argv, "postern edge", usage, &path);
		if (a)
			return a == CLI_EXIT_HELP ? 0 : 2;
	}
	memset(&E, 0, sizeof E);
	if (edge_config_load(path, &E.cfg, err, sizeof err) < 0) {
		fprintf(stderr, "postern edge: %s\n", err);
		return 1;
	}
	log_set_level((enum log_level)E.cfg.log_level);
	signal(SIGPIPE, SIG_IGN);
	{
		/* A relay holds two descriptors' worth of state per client: use all the descriptors allowed. */
		struct rlimit rl;
		if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_NOFILE, &rl);
		}
	}
	E.loop = uv_default_loop();
	if (tok_open(E.cfg.state_dir, E.cfg.domain, &E.tok, err, sizeof err) < 0 || make_ctx(err, sizeof err) < 0) {
		log_error("msg=\"cannot start\" err=\"%s\"", err);
		goto out;
	}
	E.m_reg_ok = adm_counter("postern_edge_registrations_total", "Connector registrations, by result", "result=\"ok\"");
	E.m_reg_rej = adm_counter("postern_edge_registrations_total", NULL, "result=\"rejected\"");
	E.m_clients_sni = adm_gauge("postern_edge_client_connections", "Client connections open now, by entry", "entry=\"sni\"");
	E.m_clients_mtls = adm_gauge("postern_edge_client_connections", NULL, "entry=\"mtls\"");
	E.m_pending = adm_gauge("postern_edge_clients_pending",
				"Client connections not routed yet (at most client_pending_max)", NULL);
	E.m_hello_bytes = adm_gauge("postern_edge_client_hello_bytes",
				    "Bytes buffered for client connections not routed yet (at most client_hello_budget)", NULL);
	/* Every handle is initialised first so that edgi_stop() can close them all whatever failed. */
	uv_tcp_init(E.loop, &E.lsn_conn);
	uv_tcp_init(E.loop, &E.lsn_cli);
	if ((E.have_mtls = E.cfg.mtls_listen != NULL))
		uv_tcp_init(E.loop, &E.lsn_mtls);
	uv_signal_init(E.loop, &E.sigterm);
	uv_signal_init(E.loop, &E.sigint);
	uv_timer_init(E.loop, &E.recheck);
	if (listen_on(&E.lsn_conn, E.cfg.connector_listen, edgi_on_connector, a1, sizeof a1, err, sizeof err) < 0 ||
	    listen_on(&E.lsn_cli, E.cfg.client_listen, edgi_on_client, a2, sizeof a2, err, sizeof err) < 0 ||
	    (E.have_mtls && listen_on(&E.lsn_mtls, E.cfg.mtls_listen, edgi_on_client, a3, sizeof a3, err, sizeof err) < 0)) {
		log_error("msg=\"cannot start\" err=\"%s\"", err);
		goto edgi_stop;
	}
	if (!(E.adm = adm_new(E.loop)) || adm_listen(E.adm, E.cfg.metrics_listen, err, sizeof err) < 0) {
		log_error("msg=\"cannot start\" err=\"metrics_listen: %s\"", E.adm ? err : "out of memory");
		goto edgi_stop;
	}
	uv_signal_start(&E.sigterm, on_signal, SIGTERM);
	uv_signal_start(&E.sigint, on_signal, SIGINT);
	uv_timer_start(&E.recheck, on_recheck, RECHECK_MS, RECHECK_MS);
	log_info("msg=\"edge listening\" edge_id=%s domain=%s connector=%s client=%s mtls=%s metrics=127.0.0.1:%d",
		 E.cfg.edge_id, E.cfg.domain, a1, a2, a3, adm_port(E.adm));
	rc = 0;
	uv_run(E.loop, UV_RUN_DEFAULT);
	goto done;
edgi_stop:
	rc = 1;
	edgi_stop();
	uv_run(E.loop, UV_RUN_DEFAULT);
done:
	while (E.tunnels) {
		struct tunnel *t = E.tunnels;
		E.tunnels = t->next;
		free(t);
	}
out:
	uv_loop_close(E.loop);
	SSL_CTX_free(E.cctx);
	SSL_CTX_free(E.mctx);
	tok_close(E.tok);
	edge_config_free(&E.cfg);
	adm_metrics_reset();
	if (rc == 0)
		log_info("msg=\"edge stopped\"");
	return rc;
}
