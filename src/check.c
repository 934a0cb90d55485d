/* postern check -c FILE: loads a config with the same loader the daemon uses and reports the first error. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "core/cfg.h"
#include "control/control.h"
#include "core/cli.h"
#include "gateway/gateway.h"
#include "proxy/proxy.h"
#include "tunnel/edge.h"
#include "worker/worker.h"

static void print_warning(void *ud, const char *w)
{
	(void)ud;
	fprintf(stderr, "postern check: warning: %s\n", w);
}

static void print_warnings(const cfg_doc *d)
{
	for (size_t i = 0; i < cfg_warning_count(d); i++)
		fprintf(stderr, "postern check: warning: %s\n", cfg_warning(d, i));
	if (cfg_warnings_dropped(d))
		fprintf(stderr, "postern check: warning: %zu more warnings not shown\n", cfg_warnings_dropped(d));
}

/* The end of a check of doc d: its error, or its warnings and "ok (kind)". Frees d; the exit status. */
static int finish(cfg_doc *d, bool ok, const char *path, const char *kind)
{
	int rc = ok ? 0 : 1;
	if (!ok)
		fprintf(stderr, "postern check: %s\n", cfg_error(d) ? cfg_error(d) : "invalid config");
	else {
		print_warnings(d);
		printf("%s: ok (%s)\n", path, kind);
	}
	cfg_free(d);
	return rc;
}

/* A file that is none of the kinds: name its first key, which is the likeliest typo or wrong file. */
static int not_a_config(cfg_doc *d)
{
	void *it = NULL;
	const char *k = NULL;
	cfg_node *v;
	if (!cfg_is_map(cfg_root(d)))
		cfg_fail(d, cfg_root(d), NULL, "the config must be a mapping of keys");
	else if (cfg_map_next(cfg_root(d), &it, &k, &v) == 1)
		cfg_fail(d, cfg_root(d), k, "unknown key: this is not an edge config (state_dir, connector_listen, ...), a "
			 "gateway config (edges, token_file, routes, tls, ...), a proxy config (listen_addr, routes, tls), a control config "
			 "(store, listen_addr, state_dir, ...) or a worker config (base_url, environment_id, ...)");
	else
		cfg_fail(d, cfg_root(d), NULL, "the config has no keys");
	fprintf(stderr, "postern check: %s\n", cfg_error(d));
	return 1;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: postern check -c FILE\n\n"
		   "Validates an edge, gateway, proxy, control or worker config with the loader the daemon uses and exits 0\n"
		   "when it is valid; otherwise prints the first error with file, line and key and exits 1. Beyond the keys it\n"
		   "checks what the daemon will need: certificate and key files load and cover the routes, stdio commands\n"
		   "exist, directories are usable, the token file reads; what may be intended is printed as a warning.\n");
}

int check_main(int argc, char **argv)
{
	const char *path = NULL;
	char err[512];
	cfg_doc *d;

	{
		cli_args ca;
		int a = cli_parse(argc, argv, "postern check", usage, false, &ca);
		if (a)
			return a == CLI_EXIT_HELP ? 0 : 2;
		path = ca.path;
	}
	d = cfg_load(path, err, sizeof err);
	if (!d) {
		fprintf(stderr, "postern check: %s\n", err);
		return 1;
	}
	/* A control config (its store: key; it has a state_dir too, so before the edge): the daemon's loader. */
	if (control_config_is(d)) {
		control_config cc;
		bool ok = control_config_read(d, &cc) == 0;
		control_config_free(&cc);
		return finish(d, ok, path, "control");
	}
	/* An edge config: the edge's own loader. */
	if (cfg_key_line(cfg_root(d), "connector_listen") || cfg_key_line(cfg_root(d), "state_dir")) {
		edge_config ec;
		cfg_free(d);
		memset(&ec, 0, sizeof ec);
		if (edge_config_load(path, &ec, err, sizeof err) < 0 ||
		    edge_config_preflight(&ec, print_warning, NULL, err, sizeof err) < 0) {
			fprintf(stderr, "postern check: %s\n", err);
			edge_config_free(&ec);
			return 1;
		}
		edge_config_free(&ec);
		printf("%s: ok (edge)\n", path);
		return 0;
	}
	/* A worker config: the worker's own loader (also the key file's mode). */
	if (wk_config_is_worker(d))
		return finish(d, wk_config_check(d) == 0, path, "worker");
	/* A gateway config (a connector part or a gateway-only key): the gateway's own loader (both key lists,
	 * token, edges, the control keys). */
	if (gw_config_is_gateway(d)) {
		px_config *pc = NULL;
		ctr_config *cc = NULL;
		bool ok = gw_config_load(d, &pc, &cc) == 0;
		px_config_free(pc);
		ctr_config_free(cc);
		return finish(d, ok, path, "gateway");
	}
	/* A gateway or proxy config (it has routes): the proxy keys are checked with the proxy's own loader.
	 * Without connector keys it is proxy-only, so unknown top-level keys are errors here too. */
	if (cfg_get(cfg_root(d), "routes") || cfg_key_line(cfg_root(d), "routes")) {
		px_config *pc = NULL;
		bool proxy_only = !cfg_key_line(cfg_root(d), "edges") && !cfg_key_line(cfg_root(d), "token_file");
		bool ok = !(proxy_only && cfg_check_keys(d, cfg_root(d), "the proxy config", px_config_keys) < 0) &&
			  px_config_load(d, cfg_root(d), &pc) == 0 && px_config_preflight(d, cfg_root(d), pc) == 0;
		px_config_free(pc);
		return finish(d, ok, path, "proxy");
	}
	{
		int rc = not_a_config(d);
		cfg_free(d);
		return rc;
	}
}
