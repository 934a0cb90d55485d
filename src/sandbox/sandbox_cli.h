/* `postern sandbox ...`: the CLI face of the engine (run, serve) and the option parsers `run` and `serve`
 * share. It sits above the engine, the egress proxy and the MCP server face; none of them includes it. */
#ifndef POSTERN_SANDBOX_CLI_H
#define POSTERN_SANDBOX_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sandbox/engine/sandbox.h"

#define SANDBOX_CLI_MAX_LIST 64

struct sandbox_run_opts {
	const char *workspace, *image, *cgroup_parent;
	const char *allow_domains[SANDBOX_CLI_MAX_LIST + 1]; /* NULL-terminated */
	size_t n_allow;
	const char *env[SANDBOX_CLI_MAX_LIST + 1];
	size_t n_env;
	uint64_t memory_bytes, tmp_bytes, output_cap, disk_bytes;
	bool scratch; /* --scratch-workspace */
	unsigned pids, cpu_millis, timeout_ms;
	bool no_cgroup, json, quiet;
	char **argv; /* the command (points into the caller's argv) */
};

/* The option values both share are parsed by sbxopt (sandbox/engine/sbxopt.h). */

/* Pure: parses `run` options (argv[0] is "run"). 0, or -EINVAL with a message in err. */
int sandbox_cli_parse_run(int argc, char **argv, struct sandbox_run_opts *o, char *err, size_t errlen);

/* `postern sandbox serve ...` (the MCP server face). */
int ssv_main(int argc, char **argv); /* implemented: src/sandbox/mcp/sandbox_serve.c */

/* The egress proxy for `run --allow-domain` is egx_run_start (sandbox/egress_proxy.h). */

#endif
