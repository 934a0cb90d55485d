/* Stub of the Redis store until its branch is merged: says so instead of failing to link. */
#include <errno.h>

#include "control/ctl_redis.h"
#include "core/err.h"

int ctl_redis_open(const char *spec, ctl_store **out, char *err, size_t errlen)
{
	(void)spec;
	*out = NULL;
	return err_set(err, errlen, -ENOTSUP, "store %s: this build's Redis store is not merged yet (use store: sqlite)",
		       "redis");
}
