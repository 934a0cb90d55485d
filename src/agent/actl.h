/* The agent's client of a control plane (postern control or Anthropic's API): a session, its events, and
 * the wait for a tool's result on the session's SSE stream (resumed by Last-Event-ID, so a result posted
 * before the stream opened is still read). */
#ifndef POSTERN_AGENT_ACTL_H
#define POSTERN_AGENT_ACTL_H
#include <jansson.h>
#include <stddef.h>

typedef struct actl actl;

/* ca_file (may be NULL: the system's) is the CA an https:// base_url's certificate is checked against. */
actl *actl_new(const char *base_url, const char *api_key, const char *ca_file, char *err, size_t errlen);
void actl_free(actl *c);
/* Every event read from the stream goes here too (--json). */
void actl_set_tap(actl *c, void (*tap)(void *arg, json_t *ev), void *arg);
int actl_session_create(actl *c, const char *env_id, const char *title, char *err, size_t errlen);
const char *actl_session(const actl *c);
/* Posts one event; *stored (may be NULL): the event as stored (with its id). */
int actl_post(actl *c, json_t *ev, json_t **stored, char *err, size_t errlen);
/* Waits for the user.tool_result of tool_use_id: 0 with *result, -ETIMEDOUT, -ECANCELED, or -EPIPE when
 * the session was terminated or deleted meanwhile. */
int actl_wait_result(actl *c, const char *tool_use_id, long timeout_ms, json_t **result, char *err, size_t errlen);
/* Archives the session (terminated: its work item is asked to stop, the worker removes the sandbox). */
int actl_terminate(actl *c, char *err, size_t errlen);

#endif
