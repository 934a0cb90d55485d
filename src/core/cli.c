#include "core/cli.h"

#include <string.h>

int cli_config_path(int argc, char **argv, const char *prog, void (*usage)(FILE *f), const char **path)
{
	*path = NULL;
	for (int i = 1; i < argc; i++) {
		if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc) {
			*path = argv[++i];
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return CLI_EXIT_HELP;
		} else {
			fprintf(stderr, "%s: unexpected argument '%s' (see %s --help)\n", prog, argv[i], prog);
			return CLI_EXIT_USAGE;
		}
	}
	if (!*path) {
		fprintf(stderr, "%s: -c FILE is required (see %s --help)\n", prog, prog);
		return CLI_EXIT_USAGE;
	}
	return 0;
}
