/* Command-line handling shared by the daemons and `postern check`. */
#ifndef POSTERN_CLI_H
#define POSTERN_CLI_H

#include <stdio.h>

/* Parses the one option a config-driven command takes: -c/--config FILE (or -h/--help).
 * Returns 0 with *path set; CLI_EXIT_HELP after printing usage to stdout; CLI_EXIT_USAGE after printing
 * what was wrong to stderr. prog is e.g. "postern edge". */
#define CLI_EXIT_HELP 1
#define CLI_EXIT_USAGE 2
int cli_config_path(int argc, char **argv, const char *prog, void (*usage)(FILE *f), const char **path);

#endif
