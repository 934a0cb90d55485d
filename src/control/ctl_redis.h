/* The Redis store (ctl_store.h): the work queue as a Stream with a consumer group, the event log as a Stream
 * per session. This branch carries a stub; the redis store's own branch replaces both files. */
#ifndef POSTERN_CTL_REDIS_H
#define POSTERN_CTL_REDIS_H

#include <stddef.h>

#include "control/ctl_store.h"

/* spec "redis://host:port[/db]". 0 with *out, or -errno with err. */
int ctl_redis_open(const char *spec, ctl_store **out, char *err, size_t errlen);

#endif
