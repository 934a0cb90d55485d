/* postern proxy -c FILE: the inner proxy alone on its plain listener (the gateway without a connector).
 * Same config keys as the gateway's proxy part; listen_addr is required here. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "commands.h"
#include "core/cfg.h"
#include "core/cli.h"
#include "core/log.h"
#include "proxy/proxy.h"

struct cli {
	uv_loop_t *loop;
	px *p;
	uv_signal_t sigterm, sigint;
	int signals;
};

static void on_drained(px *p, void *ud)
{
	struct cli *c = ud;
	(void)p;
	px_free(c->p);
	c->p = NULL;
	uv_close((uv_handle_t *)&c->sigterm, NULL);
	uv_close((uv_handle_t *)&c->sigint, NULL);
}

static void on_signal(uv_signal_t *s, int signum)
{
	struct cli *c = s->data;
	if (++c->signals > 1 || !c->p) {
		log_warn("msg=\"second signal: exiting now\" signal=%d", signum);
		_exit(1);
	}
	log_info("msg=\"shutting down\" signal=%d", signum);
	px_begin_shutdown(c->p, on_drained, c);
}

static void usage(FILE *f)
{
	fprintf(f, "usage: postern proxy -c FILE\n\n"
		   "Runs the inner proxy alone: terminates TLS with tls.cert_file/key_file on listen_addr and routes\n"
		   "each request by Host to routes (name: scheme://host:port). The same keys work in the gateway.\n");
}

int proxy_main(int argc, char **argv)
{
	const char *path = NULL;
	char err[512];
	cfg_doc *d = NULL;
	px_config *cfg = NULL;
	struct cli c;
	int rc = 1;

	memset(&c, 0, sizeof c);
	{
		int a = cli_config_path(argc, argv, "postern proxy", usage, &path);
		if (a)
			return a == CLI_EXIT_HELP ? 0 : 2;
	}
	if (!(d = cfg_load(path, err, sizeof err))) {
		fprintf(stderr, "postern proxy: %s\n", err);
		goto out;
	}
	if (cfg_check_keys(d, cfg_root(d), "the proxy config", px_config_keys) < 0 ||
	    px_config_load(d, cfg_root(d), &cfg) < 0) {
		fprintf(stderr, "postern proxy: %s\n", cfg_error(d) ? cfg_error(d) : "invalid config");
		goto out;
	}
	if (!cfg->listen_addr) {
		fprintf(stderr, "postern proxy: %s: listen_addr: missing (e.g. listen_addr: \":8443\")\n", path);
		goto out;
	}
	if (cfg->log_level >= 0)
		log_set_level((enum log_level)cfg->log_level);
	signal(SIGPIPE, SIG_IGN);
	c.loop = uv_default_loop();
	if (!(c.p = px_new(c.loop, cfg, err, sizeof err))) {
		log_error("msg=\"cannot start the proxy\" err=\"%s\"", err);
		goto out;
	}
	if (px_listen(c.p, err, sizeof err) < 0) {
		log_error("msg=\"cannot start the proxy\" err=\"%s\"", err);
		px_free(c.p);
		uv_run(c.loop, UV_RUN_DEFAULT);
		goto out;
	}
	uv_signal_init(c.loop, &c.sigterm);
	uv_signal_init(c.loop, &c.sigint);
	c.sigterm.data = c.sigint.data = &c;
	uv_signal_start(&c.sigterm, on_signal, SIGTERM);
	uv_signal_start(&c.sigint, on_signal, SIGINT);
	uv_run(c.loop, UV_RUN_DEFAULT);
	uv_loop_close(c.loop);
	log_info("msg=\"stopped\"");
	rc = 0;
out:
	px_config_free(cfg);
	cfg_free(d);
	return rc;
}
