/* The options of `postern sandbox serve`: its flags, and the keys of a proxy route's `sandbox:` mapping,
 * which the proxy carries unparsed (core/optmap.h) and passes as `--option KEY=VALUE`. Both go through the
 * same code, so only the sandbox knows and validates its keys. */
#ifndef POSTERN_SANDBOX_SERVE_OPTS_H
#define POSTERN_SANDBOX_SERVE_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/optmap.h"

#define SSV_MAX_LIST 64
#define SSV_DEFAULT_IDLE_MS (30u * 60u * 1000u)

struct ssv_opts {
	bool stdio;
	const char *workspace, *image, *slots_dir;
	const char *allow[SSV_MAX_LIST + 1], *deny[SSV_MAX_LIST + 1]; /* NULL-terminated */
	size_t n_allow, n_deny;
	uint64_t memory_bytes, tmp_bytes, disk_bytes;
	bool scratch; /* --scratch-workspace */
	bool prestart; /* --prestart: the sandbox is made before the first message is read */
	unsigned pids, cpu_millis, timeout_ms, max_sandboxes;
	uint64_t idle_ms;
	bool no_cgroup;
};

/* Pure but for --log-level: parses serve options (argv[0] is "serve"); 0 or -EINVAL with a message. The
 * values point into argv. */
int ssv_opts_parse(int argc, char **argv, struct ssv_opts *o, char *err, size_t errlen);

/* optmap_check_fn for a route's sandbox: options, registered by main.c: the messages name the key, as the
 * config's own do ("disk: '1M' is not a size from 16M to 16T (e.g. 10G)"). */
int ssv_opts_check(const optmap *m, const optmap_ent **at, char *err, size_t errlen);
/* optmap_check_fn "sandbox-shared": sandbox options (checked above) plus workspace_root, the directory a
 * worker makes each session's shared workspace in. A disk cap asked for (disk: SIZE, not none) must be
 * possible there (project quotas; a btrfs qgroup needs a subvolume per session), else -EINVAL naming why. */
int ssv_opts_check_shared(const optmap *m, const optmap_ent **at, char *err, size_t errlen);

#endif
