/* `postern sandbox serve --stdio`: an MCP server (mcp_server) exposing the sandbox tools (tools) with one
 * sandbox (engine) per MCP session, created at the first tool call and torn down at session end (stdin
 * EOF, SIGTERM) or after the idle timeout; the egress proxy (egress_proxy) when domains are allowed; a cap
 * on concurrent sandboxes across processes (sandbox_slots). */
#ifndef POSTERN_SANDBOX_SERVE_H
#define POSTERN_SANDBOX_SERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define SSV_MAX_LIST 64
#define SSV_DEFAULT_IDLE_MS (30u * 60u * 1000u)

struct ssv_opts {
	bool stdio;
	const char *workspace, *image, *slots_dir;
	const char *allow[SSV_MAX_LIST + 1], *deny[SSV_MAX_LIST + 1]; /* NULL-terminated */
	size_t n_allow, n_deny;
	uint64_t memory_bytes, tmp_bytes, disk_bytes;
	bool scratch; /* --scratch-workspace */
	unsigned pids, cpu_millis, timeout_ms, max_sandboxes;
	uint64_t idle_ms;
	bool no_cgroup;
};

/* Pure: parses serve options (argv[0] is "serve"); 0 or -EINVAL with a message. */
int ssv_parse(int argc, char **argv, struct ssv_opts *o, char *err, size_t errlen);

/* One MCP session bound to (at most) one sandbox. */
typedef struct ssv_session ssv_session;
ssv_session *ssv_session_new(const struct ssv_opts *o, char *err, size_t errlen);
/* An fd (eventfd) that turns readable to cancel the running tool call; set before the first call. */
void ssv_set_cancel_fd(ssv_session *s, int fd);
/* Kills the sandbox (if any), the proxy, frees the slot. NULL is fine. */
void ssv_session_free(ssv_session *s);
/* mcps_call_fn for this session: creates the sandbox on first use. */
int ssv_call(void *session, const char *tool, json_t *args, json_t **result);
/* Control fd of the sandbox to poll (-1 when none) and its pump. */
int ssv_poll_fd(const ssv_session *s);
void ssv_pump(ssv_session *s);

int sandbox_serve_main(int argc, char **argv);

#endif
