/* postern check -c FILE: loads a config with the same loader the daemon uses and reports the first error. */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "core/cfg.h"
#include "gateway/gateway.h"
#include "proxy/proxy.h"

int check_main(int argc, char **argv)
{
	const char *path = NULL;
	char err[512];
	cfg_doc *d;

	for (int i = 1; i < argc; i++) {
		if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc)
			path = argv[++i];
		else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			printf("usage: postern check -c FILE\n\nValidates an edge, gateway or worker config and exits 0 when it is valid.\n");
			return 0;
		} else {
			fprintf(stderr, "postern check: unexpected argument '%s'\n", argv[i]);
			return 2;
		}
	}
	if (!path) {
		fprintf(stderr, "postern check: -c FILE is required\n");
		return 2;
	}
	d = cfg_load(path, err, sizeof err);
	if (!d) {
		fprintf(stderr, "postern check: %s\n", err);
		return 1;
	}
	/* A gateway config with a connector part: the gateway's own loader (both key lists, token, edges). */
	if (gw_config_has_connector(d)) {
		px_config *pc = NULL;
		ctr_config *cc = NULL;
		if (gw_config_load(d, &pc, &cc) < 0) {
			fprintf(stderr, "postern check: %s\n", cfg_error(d) ? cfg_error(d) : "invalid gateway config");
			cfg_free(d);
			return 1;
		}
		px_config_free(pc);
		ctr_config_free(cc);
		cfg_free(d);
		printf("%s: ok (gateway)\n", path);
		return 0;
	}
	/* A gateway or proxy config (it has routes): the proxy keys are checked with the proxy's own loader.
	 * Without connector keys it is proxy-only, so unknown top-level keys are errors here too. */
	if (cfg_get(cfg_root(d), "routes") || cfg_key_line(cfg_root(d), "routes")) {
		px_config *pc = NULL;
		bool proxy_only = !cfg_key_line(cfg_root(d), "edges") && !cfg_key_line(cfg_root(d), "token_file");
		if ((proxy_only && cfg_check_keys(d, cfg_root(d), "the proxy config", px_config_keys) < 0) ||
		    px_config_load(d, cfg_root(d), &pc) < 0) {
			fprintf(stderr, "postern check: %s\n", cfg_error(d) ? cfg_error(d) : "invalid proxy config");
			cfg_free(d);
			return 1;
		}
		px_config_free(pc);
	}
	cfg_free(d);
	printf("%s: ok\n", path);
	return 0;
}
