/* `postern sandbox ...`: the CLI face of the engine, and the hooks other sandbox modules fill in.
 * The hooks are weak references so the engine links before those modules exist; without one the subcommand
 * or option reports that it is not available. A weak reference does not pull an archive member into the
 * link: the module that implements a hook removes `SANDBOX_HOOK` from its declaration below. */
#ifndef POSTERN_SANDBOX_CLI_H
#define POSTERN_SANDBOX_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sandbox/sandbox.h"

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

/* Option values shared by `run` and `serve`. 0, or -EINVAL with "OPT VALUE: expected ..." in err. */
int sandbox_cli_parse_cpus(const char *v, unsigned *millis, char *err, size_t errlen);
/* --disk SIZE: 16M to 16T. */
int sandbox_cli_parse_disk(const char *v, uint64_t *out, char *err, size_t errlen);
int sandbox_cli_parse_count(const char *opt, const char *v, long max, unsigned *out, char *err, size_t errlen);

/* Pure: parses `run` options (argv[0] is "run"). 0, or -EINVAL with a message in err. */
int sandbox_cli_parse_run(int argc, char **argv, struct sandbox_run_opts *o, char *err, size_t errlen);

/* `postern sandbox serve ...` (the MCP server face): implemented by the tools module. */
#define SANDBOX_HOOK __attribute__((weak))
int sandbox_serve_main(int argc, char **argv); /* implemented: src/sandbox/sandbox_serve.c */

/* Egress proxy for `run --allow-domain`: implemented by the egress proxy module. It serves HTTP CONNECT
 * and plain HTTP on listen_fd (a socket inside the sandbox's net namespace, owned by the proxy from
 * then on) in a background thread, allowing the NULL-terminated domain patterns. NULL on error. */
struct sandbox_egress;
/* implemented: src/sandbox/egress_proxy.c */
struct sandbox_egress *sandbox_egress_start(int listen_fd, const char *const *allow, char *err, size_t errlen);
void sandbox_egress_stop(struct sandbox_egress *e);

#endif
