/* `postern sandbox serve --stdio`: an MCP server (mcp_server) exposing the sandbox tools (tools) with one
 * sandbox (engine) per MCP session, created at the first tool call and torn down at session end (stdin
 * EOF, SIGTERM) or after the idle timeout; the egress proxy (egress_proxy) when domains are allowed; a cap
 * on concurrent sandboxes across processes (slot.c). */
#ifndef POSTERN_SANDBOX_SERVE_H
#define POSTERN_SANDBOX_SERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "sandbox/mcp/sandbox_serve_opts.h"

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

int ssv_main(int argc, char **argv);

#endif
