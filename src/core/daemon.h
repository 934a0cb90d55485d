/* The life of a postern daemon process, one copy for the edge, the gateway (and its proxy-only mode) and the
 * coming control plane and worker: `-c FILE [--log-level L] [--log-format F]`, config load and check, log level, SIGPIPE ignored, the
 * descriptor limit raised, one libuv loop, start, SIGTERM/SIGINT -> drain (a second signal exits at once
 * with status 1), SIGHUP -> the config is loaded again: with a reload hook the daemon applies what it can
 * live (the gateway and the proxy: routes, policy, upstream settings, audit; the edge: certificates, caps) and the skeleton logs the keys
 * that changed but need a restart; with only recheck it is checked and its log level and format
 * applied. Either way a config that fails is logged (file, line, key) and the running one stays whole. Then
 * run until every handle is closed, clean up.
 *
 * Exit status: 0 after a drain, 1 when the config or the start failed (the reason on stderr, or logged once
 * logging is set up), 2 for a usage error. */
#ifndef POSTERN_CORE_DAEMON_H
#define POSTERN_CORE_DAEMON_H

#include <stdio.h>
#include <uv.h>

typedef struct dmn dmn;

typedef struct dmn_ops {
	const char *prog; /* "postern edge": prefixes usage and config errors */
	void (*usage)(FILE *f);
	/* Loads and checks the config at path (unknown keys, bad values: "FILE:LINE: key: reason" in err).
	 * *log_level (enum log_level) and *log_format (enum log_format) may be set from the config; they start
	 * at -1, which keeps the default. --log-level / --log-format on the command line win over both. Config
	 * warnings are best logged from start, once the format is in force. */
	int (*load)(void *ud, const char *path, int *log_level, int *log_format, char *err, size_t errlen);
	/* Starts the daemon on loop. On error err says what failed and the daemon has closed (or is closing on
	 * the loop) everything it made; the skeleton then runs the loop until those are released. */
	int (*start)(void *ud, uv_loop_t *loop, char *err, size_t errlen);
	/* The first SIGTERM/SIGINT: stop taking work and let what is in flight finish. Call dmn_drained(d) once
	 * the daemon needs no more signals (its own handles may still be closing). */
	void (*drain)(void *ud, dmn *d, int signum);
	/* After the loop has ended (always, whatever failed): frees the config and state. */
	void (*cleanup)(void *ud);
	/* SIGHUP: loads the config at path again the way load does (keys and preflight) but into temporaries,
	 * changing nothing, and reports its log_level / log_format. 0 or <0 with err. May be NULL. */
	int (*recheck)(void *ud, const char *path, int *log_level, int *log_format, char *err, size_t errlen);
	/* SIGHUP, taking over from recheck when set: loads the config at path the way load does and applies it
	 * live, all of it or nothing (<0 with err, "FILE:LINE: key: reason", and the running config unchanged).
	 * Reports log_level / log_format like load; restart gets the keys that changed but keep their running
	 * value until a restart, comma-separated ("" when none). May be NULL. */
	int (*reload)(void *ud, const char *path, int *log_level, int *log_format, char *restart, size_t restartlen,
		      char *err, size_t errlen);
} dmn_ops;

int dmn_run(const dmn_ops *ops, void *ud, int argc, char **argv);
/* Closes the signal handlers: with nothing else left open the loop, and dmn_run, return. Idempotent. */
void dmn_drained(dmn *d);

#endif
