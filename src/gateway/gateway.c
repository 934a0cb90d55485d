/* postern gateway -c FILE: the connector (dials the edges, serves their streams) and the proxy (terminates the
 * inner TLS, routes to upstreams) in one process, plus /metrics, /healthz and /ready on metrics_listen. */
#include "gateway/gateway.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "commands.h"
#include "core/admin.h"
#include "core/cli.h"
#include "core/log.h"

/* ------------------------------------------------------------------ config */

const char *const *gw_config_keys(void)
{
	static const char *keys[64];
	size_t n = 0;
	if (keys[0])
		return keys;
	for (size_t i = 0; px_config_keys[i] && n < 62; i++)
		keys[n++] = px_config_keys[i];
	for (size_t i = 0; ctr_config_keys[i] && n < 62; i++) {
		bool dup = false;
		for (size_t j = 0; j < n; j++)
			dup |= !strcmp(keys[j], ctr_config_keys[i]);
		if (!dup)
			keys[n++] = ctr_config_keys[i];
	}
	keys[n] = NULL;
	return keys;
}

bool gw_config_has_connector(cfg_doc *d)
{
	cfg_node *r = cfg_root(d);
	return cfg_key_line(r, "edges") || cfg_key_line(r, "token_file") || cfg_key_line(r, "edge_ca_file");
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
	return 0;
fail:
	px_config_free(*pc);
	ctr_config_free(*cc);
	*pc = NULL;
	*cc = NULL;
	return rc < 0 ? rc : -EINVAL;
}

/* ------------------------------------------------------------------ process */

struct gw {
	uv_loop_t *loop;
	px_config *pcfg;
	ctr_config *ccfg;
	stream_backend be;
	px *p;
	ctr *c;
	adm_server *adm;
	uv_signal_t sigterm, sigint;
	int signals;
	bool px_done, ctr_done, stopped;
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
	uv_close((uv_handle_t *)&g->sigterm, NULL);
	uv_close((uv_handle_t *)&g->sigint, NULL);
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

static void on_signal(uv_signal_t *s, int signum)
{
	struct gw *g = s->data;
	if (++g->signals > 1) {
		log_warn("msg=\"second signal: exiting now\" signal=%d", signum);
		_exit(1);
	}
	log_info("msg=\"shutting down: no new streams, waiting for those in flight\" signal=%d timeout_ms=%lld",
		 signum, (long long)g->ccfg->shutdown_timeout_ms);
	if (g->c)
		ctr_begin_shutdown(g->c, on_ctr_done, g);
	if (g->p)
		px_begin_shutdown(g->p, on_px_drained, g);
	maybe_stop(g);
}

static void ready_handler(const char *method, const char *path, adm_resp *r, void *ud)
{
	struct gw *g = ud;
	char body[256];
	int reg = 0, rdy = 0, n;
	bool ok;
	(void)method;
	(void)path;
	if (g->c) {
		ctr_counts(g->c, &reg, &rdy);
		ok = rdy > 0 && !g->signals;
		n = snprintf(body, sizeof body,
			     "{\"status\":\"%s\",\"ready_connections\":%d,\"registered_connections\":%d,\"connector_id\":\"%s\"}\n",
			     ok ? "ready" : "not ready", rdy, reg, ctr_connector_id(g->c));
	} else {
		ok = g->p && !px_draining(g->p);
		n = snprintf(body, sizeof body, "{\"status\":\"%s\",\"mode\":\"proxy-only\"}\n", ok ? "ready" : "not ready");
	}
	adm_reply(r, ok ? 200 : 503, "application/json", body, (size_t)n);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: postern gateway -c FILE\n\n"
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
		   "  metrics_listen    /metrics, /healthz, /ready (default 127.0.0.1:20242; \"\" disables)\n"
		   "proxy keys:\n"
		   "  tunnel_domain, tls.cert_file, tls.key_file, routes, upstream.allowed_ips,\n"
		   "  upstream.disable_ip_validation, upstream.tls.ca_file, listen_addr, shutdown_timeout (30s), log_level\n\n"
		   "SIGTERM/SIGINT: GOAWAY to the edges, in-flight streams finish within shutdown_timeout, exit 0.\n"
		   "A second signal exits at once. `postern check -c FILE` validates the file without starting.\n");
}

int gateway_main(int argc, char **argv)
{
	const char *path = NULL;
	char err[512];
	cfg_doc *d = NULL;
	struct gw g;
	int rc = 1;

	memset(&g, 0, sizeof g);
	{
		int a = cli_config_path(argc, argv, "postern gateway", usage, &path);
		if (a)
			return a == CLI_EXIT_HELP ? 0 : 2;
	}
	if (!(d = cfg_load(path, err, sizeof err))) {
		fprintf(stderr, "postern gateway: %s\n", err);
		goto out;
	}
	if (gw_config_load(d, &g.pcfg, &g.ccfg) < 0) {
		fprintf(stderr, "postern gateway: %s\n", cfg_error(d) ? cfg_error(d) : "invalid config");
		goto out;
	}
	if (g.pcfg->log_level >= 0)
		log_set_level((enum log_level)g.pcfg->log_level);
	signal(SIGPIPE, SIG_IGN);
	g.loop = uv_default_loop();

	if (!(g.p = px_new(g.loop, g.pcfg, err, sizeof err))) {
		log_error("msg=\"cannot start the proxy\" err=\"%s\"", err);
		goto fail_run;
	}
	if (g.pcfg->listen_addr && px_listen(g.p, err, sizeof err) < 0) {
		log_error("msg=\"cannot start the proxy listener\" err=\"%s\"", err);
		goto fail_run;
	}
	if (g.ccfg->n_edges > 0) {
		px_stream_backend(g.p, &g.be);
		if (!(g.c = ctr_new(g.loop, g.ccfg, &g.be, err, sizeof err))) {
			log_error("msg=\"cannot start the connector\" err=\"%s\"", err);
			goto fail_run;
		}
	}
	if (g.ccfg->metrics_listen[0]) {
		if (!(g.adm = adm_new(g.loop)) || adm_handle(g.adm, "/ready", ready_handler, &g) < 0 ||
		    adm_listen(g.adm, g.ccfg->metrics_listen, err, sizeof err) < 0) {
			log_error("msg=\"cannot start the metrics listener\" addr=%s err=\"%s\"", g.ccfg->metrics_listen,
				  g.adm ? err : "out of memory");
			goto fail_run;
		}
	}
	uv_signal_init(g.loop, &g.sigterm);
	uv_signal_init(g.loop, &g.sigint);
	g.sigterm.data = g.sigint.data = &g;
	uv_signal_start(&g.sigterm, on_signal, SIGTERM);
	uv_signal_start(&g.sigint, on_signal, SIGINT);
	if (g.c)
		ctr_start(g.c);
	log_info("msg=\"gateway started\" mode=%s connections=%u edges=%zu listen=%s metrics_port=%d",
		 g.c ? (g.pcfg->listen_addr ? "tunnel+listener" : "tunnel") : "proxy-only",
		 g.c ? g.ccfg->connections : 0, g.ccfg->n_edges,
		 g.pcfg->listen_addr ? px_listen_addr(g.p) : "-", g.adm ? adm_port(g.adm) : 0);
	uv_run(g.loop, UV_RUN_DEFAULT);
	log_info("msg=\"gateway stopped\"");
	rc = 0;
	goto out_loop;
fail_run:
	/* Startup failed after handles were made: close them and let the loop release them. */
	ctr_free(g.c);
	g.c = NULL;
	if (g.p)
		px_free(g.p);
	adm_free(g.adm);
	uv_run(g.loop, UV_RUN_DEFAULT);
out_loop:
	uv_loop_close(g.loop);
out:
	ctr_config_free(g.ccfg);
	px_config_free(g.pcfg);
	cfg_free(d);
	adm_metrics_reset();
	return rc;
}
