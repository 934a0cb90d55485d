/* The gateway's control API on an admin server: held calls (proxy/approvals) and tool pins (guard/pins).
 *
 *   GET  /approvals               200 [ {id, route, client, ..., expires_in_ms} ]   (apv_list_json)
 *   POST /approvals/ID/approve    body optional {"reason": "..."}  200 {"id","outcome":"approved","by"}
 *   POST /approvals/ID/deny       the same, "denied"; 404 for an id unknown, decided or timed out
 *   GET  /pins                    200 [ {route, tool, sha256, pending (null or the changed hash)} ]
 *   POST /pins/accept             body {"route","tool"}  200 {"route","tool","sha256","saved"}; 404 no such
 *                                 pin, 409 nothing pending; then pins_file is written (atomically, 0600)
 * Errors are JSON {"error": "..."} with a 4xx (400 bad body, 404, 405, 409) or 500 (save failed).
 *
 * Who decided (the `by` of the callback and the logs): on the unix socket the peer's kernel credentials,
 * "uid 1000 (alice)"; on TCP "http 127.0.0.1:5555" (TCP has no identity: register there only when the
 * operator asked, admin_http). A reason, when given, follows: "uid 1000 (alice): looks fine". */
#ifndef POSTERN_GATEWAY_GWADMIN_H
#define POSTERN_GATEWAY_GWADMIN_H

#include <stddef.h>

#include "core/admin.h"
#include "guard/pins.h"
#include "proxy/approvals.h"

#define GWA_MAX_REASON 200

typedef struct gwa gwa;

/* Called after a pin was accepted (and saved when there is a pins_file): the audit line's place. */
typedef void (*gwa_accept_cb)(void *ud, const char *route, const char *tool, const char *sha256, const char *by);

/* a, pins and pins_file may be NULL (none yet: the lists are empty, decisions 404); all are borrowed and must
 * outlive every adm_server the gwa is registered on. pins_file is copied. NULL when out of memory. */
gwa *gwa_new(apv *a, pin_table *pins, const char *pins_file);
void gwa_on_accept(gwa *g, gwa_accept_cb cb, void *ud);
/* Registers the endpoints above on s (GET and POST). 0 or -errno with err. */
int gwa_register(adm_server *s, gwa *g, char *err, size_t errlen);
/* After adm_free of every server it is registered on (no handler runs after adm_free). NULL is a no-op. */
void gwa_free(gwa *g);

/* "uid 1000 (alice)" (or "uid 1000" without a passwd entry) for a unix peer, "http ADDR" otherwise. */
void gwa_who(const adm_req *q, char *out, size_t len);

#endif
