/* The control plane's Redis store (ctl_store.h's interface on hiredis, synchronous). Every key lives under
 * "postern:" (the layout: docs/control.md, "Redis store"). The work queue of an environment is a Stream with
 * the consumer group "workers"; an event log is a Stream per session whose entry ids are 0-<seq>. Needs Redis
 * >= 6.2 (XAUTOCLAIM, exclusive XRANGE); one connection per store, not for use from two threads at once. */
#ifndef POSTERN_CTL_REDIS_H
#define POSTERN_CTL_REDIS_H

#include <stddef.h>

#include "control/ctl_store.h"

/* url: "redis://[user@]host:port[/db]" (host a name, an IPv4 address or [IPv6]; port default 6379, db default
 * 0; a password in the URL is refused). password (may be NULL): sent with AUTH (AUTH user password when the
 * URL names a user) on every connect; kept for reconnects, wiped at close, never in an error or a log.
 * Connects (2 s timeout, every command 2 s too), checks the server's version, and returns the store. 0 with
 * *out, or -EINVAL (a bad URL) / -EIO (no connection, a refused AUTH, an old server) with err naming the address. */
int ctl_redis_open(const char *url, const char *password, ctl_store **out, char *err, size_t errlen);

#endif
