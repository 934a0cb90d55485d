/* postern: one binary, subcommands. Each subcommand lives in its module as <prefix>_main(argc, argv). */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "core/log.h"
#include "core/optmap.h"
#include "guard/auditcmd.h"
#include "proxy/auditlog.h"
#include "sandbox/mcp/sandbox_serve_opts.h"

struct command {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	POSTERN_COMMANDS
};

static void usage(FILE *f)
{
	fprintf(f, "postern %s: MCP tunnel and self-hosted sandboxes for AI agents\n\n"
		   "usage: postern COMMAND [options]\n       postern COMMAND --help\n\ncommands:\n",
		POSTERN_VERSION);
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n  --version  print the version\n  --help     this text\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
		printf("postern %s\n", POSTERN_VERSION);
		return 0;
	}
	/* Options one part carries for another unparsed are checked by their owner: a proxy route's sandbox:. */
	optmap_set_checker("sandbox", ssv_opts_check);
	optmap_set_checker("sandbox-shared", ssv_opts_check_shared); /* a worker's workspaces: can disk hold there */
	/* `postern audit emit` lives with the sinks (proxy), above the verify command (guard). */
	auditcmd_set_emit(alog_emit_main);
	for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (!strcmp(argv[1], commands[i].name)) {
			log_set_component(commands[i].name);
			return commands[i].run(argc - 1, argv + 1);
		}
	fprintf(stderr, "postern: unknown command '%s' (see postern --help)\n", argv[1]);
	return 2;
}
