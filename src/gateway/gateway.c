/* postern gateway -c FILE: the connector (dials the edges, serves their streams) and the proxy (terminates the
 * inner TLS, routes to upstreams) in one process, plus /metrics, /healthz and /ready on metrics_listen. */
#include "gateway/gateway.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "commands.h"
#include "core/admin.h"
#include "core/daemon.h"
#include "core/err.h"
#include "core/log.h"
#include "core/netaddr.h"
#include "gateway/gwadmin.h"
#include "proxy/approvals.h"

/* ------------------------------------------------------------------ config */

const char *const *gw_config_keys(void)
{
	static const char *keys[64];
	size_t n = 0;
	if (keys[0])
		return keys;
	for (size_t i = 0; px_config_keys[i] && n < 62; i++)
		keys[n++] = px_config_keys[i];
	for (size_t i = 0; ctr_config_keys[i] && n < 60; i++) {
		bool dup = false;
		for (size_t j = 0; j < n; j++)
			dup |= !strcmp(keys[j], ctr_config_keys[i]);
		if (!dup)
			keys[n++] = ctr_config_keys[i];
	}
	keys[n++] = "admin_socket";
	keys[n++] = "admin_http";
	keys[n] = NULL;
	return keys;
}

int gw_config_admin(cfg_doc *d, char **sock, bool *http)
{
	cfg_node *root = cfg_root(d);
	int rc;
	*sock = NULL;
	*http = false;
	if ((rc = cfg_get_str(d, root, "admin_socket", sock)) < 0 || (rc = cfg_get_bool(d, root, "admin_http", http)) < 0)
		goto fail;
	if (*sock && **sock && (**sock != '/' || strlen(*sock) > ADM_UNIX_PATH_MAX)) {
		rc = cfg_fail(d, root, "admin_socket", "want an absolute path of at most %d bytes (or \"\" to turn the "
						       "control socket off)", ADM_UNIX_PATH_MAX);
		goto fail;
	}
	return 0;
fail:
	free(*sock);
	*sock = NULL;
	return rc < 0 ? rc : -EINVAL;
}

/* admin_http serves decisions with no authentication: only where the host's own users reach it. */
static int check_admin_http(cfg_doc *d, const ctr_config *cc)
{
	struct sockaddr_storage ss;
	char *sock = NULL;
	bool http = false;
	int rc = gw_config_admin(d, &sock, &http);
	free(sock);
	if (rc < 0 || !http)
		return rc;
	memset(&ss, 0, sizeof ss);
	if (!cc->metrics_listen || !cc->metrics_listen[0] || na_parse_sockaddr(cc->metrics_listen, true, &ss) < 0 ||
	    !((ss.ss_family == AF_INET && (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127) ||
	      (ss.ss_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr))))
		return cfg_fail(d, cfg_root(d), "admin_http",
				"needs metrics_listen on a loopback address (it is \"%s\"): the approvals and pins API "
				"has no authentication on TCP; use admin_socket instead",
				cc->metrics_listen ? cc->metrics_listen : "");
	return 0;
}

bool gw_config_has_connector(cfg_doc *d)
{
	cfg_node *r = cfg_root(d);
	return cfg_key_line(r, "edges") || cfg_key_line(r, "token_file") || cfg_key_line(r, "edge_ca_file");
}

bool gw_config_is_gateway(cfg_doc *d)
{
	cfg_node *r = cfg_root(d);
	return gw_config_has_connector(d) || cfg_key_line(r, "metrics_listen") || cfg_key_line(r, "admin_socket") ||
	       cfg_key_line(r, "admin_http");
}

int gw_config_load(cfg_doc *d, px_config **pc, ctr_config **cc)
{
	cfg_node *root = cfg_root(d);
	int rc;
	*pc = NULL;
	*cc = NULL;
	if ((rc = cfg_check_keys(d, root, "the gateway config", gw_config_keys())) < 0)
		return rc;
	if ((rc = ctr_config_load(d, root, cc)) < 0)
		return rc;
	if ((rc = px_config_load(d, root, pc)) < 0)
		goto fail;
	if ((*cc)->n_edges == 0 && !(*pc)->listen_addr) {
		rc = cfg_fail(d, root, NULL, "nothing to serve: set edges (tunnel through an edge) or listen_addr "
					     "(plain local listener), or both");
		goto fail;
	}
	if ((*cc)->n_edges > 0 && !(*pc)->cert_file) {
		rc = cfg_fail(d, root, "tls", "tls.cert_file and tls.key_file are required: the gateway terminates "
					      "the inner TLS (see postern certs init)");
		goto fail;
	}
	if ((rc = check_admin_http(d, *cc)) < 0)
		goto fail;
	if ((rc = px_config_preflight(d, root, *pc)) < 0)
		goto fail;
	return 0;
fail:
	px_config_free(*pc);
	ctr_config_free(*cc);
	*pc = NULL;
	*cc = NULL;
	return rc < 0 ? rc : -EINVAL;
}

/* ------------------------------------------------------------------ process */

#define GW_FIXED_MAX 16

struct gw {
	bool proxy_mode; /* `postern proxy`: the proxy keys only, listen_addr required, no connector or metrics */
	cfg_doc *doc;
	px_config *pcfg;
	ctr_config *ccfg;
	stream_backend be;
	px *p;
	ctr *c;
	adm_server *adm;
	char *admin_socket; /* NULL: the default */
	bool admin_http;
	apv *apv;	    /* held calls; the proxy's once it takes them (see proxy/approvals.h) */
	gwa *gwa;
	adm_server *ctl;    /* the control API on admin_socket */
	dmn *dm;
	bool draining, px_done, ctr_done, stopped;
	char *fixed[GW_FIXED_MAX]; /* text of each of fixed_keys at load (NULL: absent) */
};

static void stop_all(struct gw *g)
{
	if (g->stopped)
		return;
	g->stopped = true;
	/* The connector first: it may still hold streams whose px_conn it must abort while the proxy exists. */
	ctr_free(g->c);
	g->c = NULL;
	px_free(g->p);
	g->p = NULL;
	adm_free(g->adm);
	g->adm = NULL;
	adm_free(g->ctl);
	g->ctl = NULL;
	gwa_free(g->gwa); /* no handler runs after adm_free */
	g->gwa = NULL;
	apv_free(g->apv); /* after the proxy, whose calls may still cancel their holds */
	g->apv = NULL;
	if (g->dm)
		dmn_drained(g->dm);
}

static void maybe_stop(struct gw *g)
{
	if ((g->px_done || !g->p) && (g->ctr_done || !g->c))
		stop_all(g);
}

static void on_px_drained(px *p, void *ud)
{
	struct gw *g = ud;
	(void)p;
	g->px_done = true;
	maybe_stop(g);
}

static void on_ctr_done(ctr *c, void *ud)
{
	struct gw *g = ud;
	(void)c;
	g->ctr_done = true;
	maybe_stop(g);
}

static void gw_drain(void *ud, dmn *dm, int signum)
{
	struct gw *g = ud;
	g->dm = dm;
	g->draining = true;
	if (g->c)
		log_info("msg=\"shutting down: no new streams, waiting for those in flight\" signal=%d timeout_ms=%lld",
			 signum, (long long)g->ccfg->shutdown_timeout_ms);
	else
		log_info("msg=\"shutting down\" signal=%d", signum);
	if (g->c)
		ctr_begin_shutdown(g->c, on_ctr_done, g);
	if (g->p)
		px_begin_shutdown(g->p, on_px_drained, g);
	maybe_stop(g);
}

static void ready_handler(const char *method, const char *path, adm_resp *r, void *ud)
{
	struct gw *g = ud;
	char body[384];
	int reg = 0, rdy = 0, n;
	bool ok;
	(void)method;
	(void)path;
	if (g->c) {
		ctr_counts(g->c, &reg, &rdy);
		ok = rdy > 0 && !g->draining;
		/* readyConnections and connectorId: the names of cloudflared's /ready, for probes written for it. */
		n = snprintf(body, sizeof body,
			     "{\"status\":\"%s\",\"ready_connections\":%d,\"registered_connections\":%d,\"connector_id\":\"%s\","
			     "\"readyConnections\":%d,\"connectorId\":\"%s\"}\n",
			     ok ? "ready" : "not ready", rdy, reg, ctr_connector_id(g->c), rdy, ctr_connector_id(g->c));
	} else {
		ok = g->p && !px_draining(g->p);
		n = snprintf(body, sizeof body, "{\"status\":\"%s\",\"mode\":\"proxy-only\"}\n", ok ? "ready" : "not ready");
	}
	adm_reply(r, ok ? 200 : 503, "application/json", body, (size_t)n);
}

/* The keys a running gateway cannot change: the listeners, the pin table's file and the connector's dialing.
 * Their text is kept from each load (the document may map the file, which an editor rewrites in place). */
static const char *const fixed_keys[] = { "listen_addr", "pins_file", "admin_socket", "admin_http",
					  "token_file", "edges", "edge_ca_file", "edge_server_name", "connections",
					  "metrics_listen", "ping_interval", "ping_timeout", "shutdown_timeout", NULL };

static int keep_fixed(struct gw *g)
{
	for (size_t i = 0; fixed_keys[i] && i < GW_FIXED_MAX; i++) {
		cfg_node *r = cfg_root(g->doc);
		if (cfg_key_line(r, fixed_keys[i]) && !(g->fixed[i] = cfg_key_text(r, fixed_keys[i])))
			return -ENOMEM;
	}
	return 0;
}

static void free_fixed(struct gw *g)
{
	for (size_t i = 0; i < GW_FIXED_MAX; i++) {
		free(g->fixed[i]);
		g->fixed[i] = NULL;
	}
}

/* Compared with the file the daemon started from: they never apply live, so that is what runs. */
static void restart_keys(const struct gw *g, const struct gw *t, char *out, size_t len)
{
	out[0] = 0;
	for (size_t i = 0; fixed_keys[i] && i < GW_FIXED_MAX; i++) {
		const char *k = fixed_keys[i], *a = g->fixed[i], *b = t->fixed[i];
		/* shutdown_timeout is the proxy's too, which takes it live; the connector's needs a restart. */
		if (!strcmp(k, "shutdown_timeout") && !g->c)
			continue;
		if (!(a == b || (a && b && !strcmp(a, b))) && strlen(out) + strlen(k) + 2 < len)
			snprintf(out + strlen(out), len - strlen(out), "%s%s", out[0] ? "," : "", k);
	}
}

static int gw_load(void *ud, const char *path, int *log_level, int *log_format, char *err, size_t errlen)
{
	struct gw *g = ud;
	if (!(g->doc = cfg_load(path, err, errlen)))
		return -EINVAL;
	if (g->proxy_mode) {
		if (cfg_check_keys(g->doc, cfg_root(g->doc), "the proxy config", px_config_keys) < 0 ||
		    px_config_load(g->doc, cfg_root(g->doc), &g->pcfg) < 0 ||
		    px_config_preflight(g->doc, cfg_root(g->doc), g->pcfg) < 0)
			goto bad;
		if (!g->pcfg->listen_addr) {
			snprintf(err, errlen, "%s: listen_addr: missing (e.g. listen_addr: \":8443\")", path);
			return -EINVAL;
		}
	} else if (gw_config_load(g->doc, &g->pcfg, &g->ccfg) < 0 ||
		   gw_config_admin(g->doc, &g->admin_socket, &g->admin_http) < 0) {
		goto bad;
	}
	if (keep_fixed(g) < 0) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -ENOMEM;
	}
	*log_level = g->pcfg->log_level;
	*log_format = g->pcfg->log_format;
	return 0;
bad:
	snprintf(err, errlen, "%s", cfg_error(g->doc) ? cfg_error(g->doc) : "invalid config");
	return -EINVAL;
}

/* The control API on admin_socket. The default path failing (no /run/postern for this user, another
 * gateway there) is a warning: approvals then wait for their timeout. */
static int start_control(struct gw *g, uv_loop_t *loop, char *err, size_t errlen)
{
	const char *path = g->admin_socket ? g->admin_socket : GW_ADMIN_SOCKET_DEFAULT;
	char m[512], q[700];
	int rc;
	if (!(g->apv = apv_new(loop, 0)) || !(g->gwa = gwa_new(g->apv, px_pins(g->p), g->pcfg->pins_file)) ||
	    !(g->ctl = adm_new(loop)))
		return err_set(err, errlen, -ENOMEM, "admin_socket: out of memory");
	px_set_approvals(g->p, g->apv);
	if (!*path) {
		log_info("msg=\"admin socket off (admin_socket is empty): held calls can only time out\"");
		adm_free(g->ctl);
		g->ctl = NULL;
		return 0;
	}
	if ((rc = gwa_register(g->ctl, g->gwa, m, sizeof m)) < 0 || (rc = adm_listen_unix(g->ctl, path, 0600, m, sizeof m)) < 0) {
		adm_free(g->ctl);
		g->ctl = NULL;
		if (g->admin_socket)
			return err_set(err, errlen, rc, "admin_socket %s: %s", path, m);
		log_warn("msg=\"no admin socket: held calls can only time out (set admin_socket)\" detail=%s",
			 log_quote(m, q, sizeof q));
		return 0;
	}
	log_info("msg=\"admin socket listening\" path=%s", log_quote(path, q, sizeof q));
	return 0;
}

static int gw_start(void *ud, uv_loop_t *loop, char *err, size_t errlen)
{
	struct gw *g = ud;
	bool tunnel = g->ccfg && g->ccfg->n_edges > 0;
	char m[512];
	int rc = -EINVAL;
	/* Logged here, not at load: the config's log_format is in force now. */
	for (size_t i = 0; i < cfg_warning_count(g->doc); i++) {
		char q[700];
		log_warn("msg=\"config warning\" detail=%s", log_quote(cfg_warning(g->doc, i), q, sizeof q));
	}
	if (!(g->p = px_new(loop, g->pcfg, m, sizeof m))) {
		snprintf(err, errlen, "the proxy: %s", m);
		goto fail;
	}
	if (g->pcfg->listen_addr && (rc = px_listen(g->p, m, sizeof m)) < 0) {
		snprintf(err, errlen, "the proxy listener: %s", m);
		goto fail;
	}
	if (tunnel) {
		px_stream_backend(g->p, &g->be);
		if (!(g->c = ctr_new(loop, g->ccfg, &g->be, m, sizeof m))) {
			snprintf(err, errlen, "the connector: %s", m);
			rc = -EINVAL;
			goto fail;
		}
	}
	if (!g->proxy_mode && (rc = start_control(g, loop, err, errlen)) < 0)
		goto fail;
	if (g->ccfg && g->ccfg->metrics_listen[0]) {
		adm_build_info(POSTERN_VERSION, NULL);
		adm_process_metrics();
		if (!(g->adm = adm_new(loop)) || (rc = adm_handle(g->adm, "/ready", ready_handler, g)) < 0 ||
		    (g->admin_http && (rc = gwa_register(g->adm, g->gwa, m, sizeof m)) < 0) ||
		    (rc = adm_listen(g->adm, g->ccfg->metrics_listen, m, sizeof m)) < 0) {
			snprintf(err, errlen, "metrics_listen %s: %s", g->ccfg->metrics_listen, g->adm ? m : "out of memory");
			rc = rc < 0 ? rc : -ENOMEM;
			goto fail;
		}
	}
	if (g->c)
		ctr_start(g->c);
	if (g->proxy_mode)
		log_info("msg=\"proxy started\" listen=%s", px_listen_addr(g->p));
	else
		log_info("msg=\"gateway started\" mode=%s connections=%u edges=%zu listen=%s metrics_port=%d",
			 g->c ? (g->pcfg->listen_addr ? "tunnel+listener" : "tunnel") : "proxy-only",
			 g->c ? g->ccfg->connections : 0, g->ccfg->n_edges,
			 g->pcfg->listen_addr ? px_listen_addr(g->p) : "-", g->adm ? adm_port(g->adm) : 0);
	return 0;
fail:
	/* Handles made so far close on the loop, which dmn_run then runs until they are released. */
	stop_all(g);
	return rc;
}

static void gw_cleanup(void *ud)
{
	struct gw *g = ud;
	if (g->stopped && !g->proxy_mode && g->draining)
		log_info("msg=\"gateway stopped\"");
	else if (g->stopped && g->draining)
		log_info("msg=\"stopped\"");
	ctr_config_free(g->ccfg);
	px_config_free(g->pcfg);
	cfg_free(g->doc);
	free(g->admin_socket);
	free_fixed(g);
	adm_metrics_reset();
}

/* SIGHUP: the whole file is loaded and checked again (gw_load: keys, preflight), then the proxy swaps in
 * what it builds from it (px_reload). Either step failing leaves the running config as it was. */
static int gw_reload(void *ud, const char *path, int *log_level, int *log_format, char *restart, size_t restartlen,
		     char *err, size_t errlen)
{
	struct gw *g = ud, t;
	char m[512], q[700];
	int rc;

	memset(&t, 0, sizeof t);
	t.proxy_mode = g->proxy_mode;
	restart[0] = 0;
	if (!g->p || g->draining) {
		snprintf(err, errlen, "%s: not reloaded: the %s is shutting down", path, g->proxy_mode ? "proxy" : "gateway");
		return -EBUSY;
	}
	if ((rc = gw_load(&t, path, log_level, log_format, err, errlen)) < 0)
		goto out;
	restart_keys(g, &t, restart, restartlen);
	if ((rc = px_reload(g->p, t.pcfg, m, sizeof m)) < 0) {
		snprintf(err, errlen, "%s: %s", path, m);
		goto out;
	}
	t.pcfg = NULL; /* the proxy's now */
	for (size_t i = 0; i < cfg_warning_count(t.doc); i++)
		log_warn("msg=\"config warning\" detail=%s", log_quote(cfg_warning(t.doc, i), q, sizeof q));
out:
	free_fixed(&t);
	free(t.admin_socket);
	ctr_config_free(t.ccfg);
	px_config_free(t.pcfg);
	cfg_free(t.doc);
	return rc;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: postern gateway -c FILE [--log-level LEVEL] [--log-format logfmt|json]\n\n"
		   "Runs the customer side of a tunnel: the connector dials the edges listed in `edges` (outbound only)\n"
		   "and the proxy terminates the inner TLS of every client connection the edge relays, then routes it\n"
		   "by host name to an upstream MCP server. Without `edges` it is proxy-only on `listen_addr`.\n\n"
		   "connector keys:\n"
		   "  token_file        file holding the tunnel token (or set POSTERN_TOKEN); re-read at each dial\n"
		   "  edges             list of host:port; connections are spread across them\n"
		   "  edge_ca_file      CA bundle for the edge certificate (default: system CAs)\n"
		   "  edge_server_name  name to verify in the edge certificate (default: the edge host)\n"
		   "  connections       connections kept open (default 4)\n"
		   "  ping_interval     HTTP/2 PING period (default 5s)\n"
		   "  ping_timeout      PING answer deadline; a connection missing it is redialled (default 10s)\n"
		   "  metrics_listen    /metrics, /healthz, /ready (default 127.0.0.1:20251; \"\" disables)\n"
		   "control keys (postern approvals, postern pins):\n"
		   "  admin_socket      unix socket of the approvals and pins API, mode 0600 (default\n"
		   "                    " GW_ADMIN_SOCKET_DEFAULT "; \"\" disables)\n"
		   "  admin_http        also serve that API on metrics_listen, loopback only (default false)\n"
		   "proxy keys:\n"
		   "  tunnel_domain, tls.cert_file, tls.key_file, routes, upstream.allowed_ips,\n"
		   "  upstream.disable_ip_validation, upstream.tls.ca_file, listen_addr, shutdown_timeout (30s), log_level, log_format (logfmt|json)\n\n"
		   "SIGTERM/SIGINT: GOAWAY to the edges, in-flight streams finish within shutdown_timeout, exit 0.\n"
		   "SIGHUP: reloads the file live (routes, policy, upstream, audit; listeners and connector keys after a\n"
		   "restart); a file that fails keeps the running config.\n"
		   "A second signal exits at once. `postern check -c FILE` validates the file without starting.\n");
}

static void proxy_usage(FILE *f)
{
	fprintf(f, "usage: postern proxy -c FILE [--log-level LEVEL] [--log-format logfmt|json]\n\n"
		   "Runs the inner proxy alone (the gateway's proxy-only mode): terminates TLS with tls.cert_file/key_file\n"
		   "on listen_addr and routes each request by Host to routes (name: scheme://host:port). The same keys\n"
		   "work in the gateway; connector keys are refused here. SIGHUP reloads the file live (listen_addr and\n"
		   "pins_file after a restart).\n");
}

int gateway_main(int argc, char **argv)
{
	static const dmn_ops ops = { "postern gateway", usage, gw_load, gw_start, gw_drain, gw_cleanup, NULL, gw_reload };
	struct gw g;
	memset(&g, 0, sizeof g);
	return dmn_run(&ops, &g, argc, argv);
}

int proxy_main(int argc, char **argv)
{
	static const dmn_ops ops = { "postern proxy", proxy_usage, gw_load, gw_start, gw_drain, gw_cleanup, NULL, gw_reload };
	struct gw g;
	memset(&g, 0, sizeof g);
	g.proxy_mode = true;
	return dmn_run(&ops, &g, argc, argv);
}
