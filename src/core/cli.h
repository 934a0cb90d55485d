/* Command-line handling shared by the daemons and `postern check`. */
#ifndef POSTERN_CLI_H
#define POSTERN_CLI_H

#include <stdbool.h>
#include <stdio.h>

/* What a config-driven command is given: -c/--config FILE, and for a daemon --log-level LEVEL and
 * --log-format logfmt|json, which override the config's log_level / log_format. */
typedef struct cli_args {
	const char *path;
	int log_level;  /* enum log_level, or -1 when not given */
	int log_format; /* enum log_format, or -1 when not given */
} cli_args;

/* Parses argv (or -h/--help). daemon allows the logging flags. Returns 0 with *a filled; CLI_EXIT_HELP after
 * printing usage to stdout; CLI_EXIT_USAGE after printing what was wrong to stderr. prog is e.g.
 * "postern edge". */
#define CLI_EXIT_HELP 1
#define CLI_EXIT_USAGE 2
int cli_parse(int argc, char **argv, const char *prog, void (*usage)(FILE *f), bool daemon, cli_args *a);

#endif
