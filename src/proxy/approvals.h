/* Held calls waiting for a person (a policy rule with action: approve), on a libuv loop.
 *
 * The proxy holds a call with apv_hold and answers its client from the callback; a person decides through
 * the gateway's admin API (gateway/gwadmin: GET /approvals, POST /approvals/ID/approve|deny) or the
 * timeout denies. The callback is always deferred to the loop (a zero timer): it never runs inside
 * apv_decide's or apv_hold's caller, so a decider may be anywhere. It fires at most once, and never after
 * apv_cancel(id) or apv_free: the holder that goes away first cancels.
 *
 * An id is APV_ID_LEN characters of lowercase base32 from RAND_bytes (60 bits): unguessable, so an id seen
 * in a log does not let anyone without the admin socket decide.
 *
 * Metrics: postern_approvals_pending (gauge: calls waiting), postern_approvals_total{outcome=approved|
 * denied|timed_out|cancelled}. Logs: msg="call held for approval", msg="held call decided". */
#ifndef POSTERN_PROXY_APPROVALS_H
#define POSTERN_PROXY_APPROVALS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define APV_ID_LEN 12
#define APV_DEFAULT_TIMEOUT_MS (5u * 60 * 1000)
#define APV_MAX_TIMEOUT_MS (24u * 3600 * 1000)
#define APV_MAX_FIELD 1024          /* each apv_info string is cut (on a UTF-8 boundary) to this many bytes */
#define APV_MAX_ARGS (16u * 1024)   /* args_redacted_json beyond this is listed as a cut preview */
#define APV_MAX_BY 320            /* the decider and an optional reason */

typedef struct apv apv;

typedef enum apv_outcome { APV_APPROVED = 1, APV_DENIED, APV_TIMED_OUT } apv_outcome;

/* by: who decided, as given to apv_decide ("uid 1000 (alice)", "http 127.0.0.1:5555"), or "timeout". Valid
 * during the call only. */
typedef void (*apv_cb)(void *ud, apv_outcome o, const char *by);
/* Progress while waiting (apv_progress): ms waited so far and the hold's timeout. */
typedef void (*apv_progress_cb)(void *ud, uint64_t waited_ms, uint64_t timeout_ms);

/* What the person is shown. Every field may be NULL; all are copied. args_redacted_json: the call's
 * arguments after redaction, as JSON text (listed as JSON when it parses and fits APV_MAX_ARGS). */
typedef struct apv_info {
	const char *route, *client, *client_addr, *session, *method, *tool, *rule, *args_redacted_json, *trace_id;
} apv_info;

/* max_pending: holds waiting at once (0: 1000); beyond it apv_hold fails with -EBUSY. NULL when out of
 * memory. */
apv *apv_new(uv_loop_t *loop, size_t max_pending);
/* Drops every hold without a callback (counted as cancelled): the holder is going away with the loop's
 * other handles (the proxy frees its connections, whose calls then get no answer). Memory is released as
 * the loop runs the timers' close callbacks. NULL is a no-op. */
void apv_free(apv *a);

/* Holds a call: cb fires once, from the loop, when it is decided or after timeout_ms (0: the default
 * APV_DEFAULT_TIMEOUT_MS). id gets the hold's id. 0, -EBUSY (max_pending waiting), -EINVAL (timeout over
 * APV_MAX_TIMEOUT_MS, cb NULL), -ENOMEM, -EIO (no random bytes). An error means no callback. */
int apv_hold(apv *a, const apv_info *info, uint32_t timeout_ms, apv_cb cb, void *ud, char id[APV_ID_LEN + 1]);
/* Calls pcb(ud, waited, timeout) every every_ms while the hold waits (MCP progress notifications for a
 * client that asked with a progressToken). 0, -ENOENT (no such hold waiting), -EINVAL (every_ms 0). */
int apv_progress(apv *a, const char *id, uint32_t every_ms, apv_progress_cb pcb);
/* The holder went away (its client disconnected): no callback, whether decided yet or not. Unknown ids are
 * ignored. */
void apv_cancel(apv *a, const char *id);
/* Decides a waiting hold; the callback follows from the loop. by is recorded (cut to APV_MAX_BY). 0, or
 * -ENOENT with err ("no held call with id X: unknown, already decided or timed out"). */
int apv_decide(apv *a, const char *id, bool approve, const char *by, char *err, size_t errlen);
/* The waiting holds as a JSON array, oldest first: [{"id","route","client","client_addr","session","method",
 * "tool","rule","args" (JSON, or "args_preview" text with "args_truncated":true),"since" (RFC 3339 UTC),
 * "waited_ms","expires_in_ms","trace_id"}]; absent fields are null. *out malloc'd (NUL-terminated). 0 or
 * -ENOMEM. */
int apv_list_json(const apv *a, char **out, size_t *len);
/* Holds waiting (decided ones whose callback is still to run are not counted). */
size_t apv_pending(const apv *a);

#endif
