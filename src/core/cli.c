#include "core/cli.h"

#include <string.h>

#include "core/log.h"

int cli_parse(int argc, char **argv, const char *prog, void (*usage)(FILE *f), bool daemon, cli_args *a)
{
	a->path = NULL;
	a->log_level = a->log_format = -1;
	for (int i = 1; i < argc; i++) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if ((!strcmp(o, "-c") || !strcmp(o, "--config")) && v) {
			a->path = v;
			i++;
		} else if (daemon && !strcmp(o, "--log-level") && v) {
			if ((a->log_level = log_level_parse(v)) < 0) {
				fprintf(stderr, "%s: --log-level: '%s' is not one of debug, info, warn, error, off\n", prog, v);
				return CLI_EXIT_USAGE;
			}
			i++;
		} else if (daemon && !strcmp(o, "--log-format") && v) {
			if ((a->log_format = log_format_parse(v)) < 0) {
				fprintf(stderr, "%s: --log-format: '%s' is not one of logfmt, json\n", prog, v);
				return CLI_EXIT_USAGE;
			}
			i++;
		} else if (!strcmp(o, "--help") || !strcmp(o, "-h")) {
			usage(stdout);
			return CLI_EXIT_HELP;
		} else {
			fprintf(stderr, "%s: %s '%s' (see %s --help)\n", prog,
				v || o[0] != '-' ? "unexpected argument" : "missing value after", o, prog);
			return CLI_EXIT_USAGE;
		}
	}
	if (!a->path) {
		fprintf(stderr, "%s: -c FILE is required (see %s --help)\n", prog, prog);
		return CLI_EXIT_USAGE;
	}
	return 0;
}
