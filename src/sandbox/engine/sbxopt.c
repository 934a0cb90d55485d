/* Limit values for the sandbox CLIs (see sbxopt.h). */
#include "sandbox/engine/sbxopt.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cfg.h"
#include "sandbox/engine/ws_quota.h"

int sbxopt_cpus(const char *v, unsigned *millis, char *err, size_t errlen)
{
	char *end;
	double d = strtod(v, &end);
	if (*end || !(d >= 0.01 && d <= 1024)) {
		snprintf(err, errlen, "--cpus %s: expected a number of CPUs like 0.5 or 2", v);
		return -EINVAL;
	}
	*millis = (unsigned)(d * 1000 + 0.5);
	return 0;
}

int sbxopt_count(const char *opt, const char *v, long max, unsigned *out, char *err, size_t errlen)
{
	char *end;
	long n = strtol(v, &end, 10);
	if (*end || n < 1 || n > max) {
		snprintf(err, errlen, "%s %s: expected 1..%ld", opt, v, max);
		return -EINVAL;
	}
	*out = (unsigned)n;
	return 0;
}

int sbxopt_disk(const char *v, uint64_t *out, char *err, size_t errlen)
{
	uint64_t sz;
	if (!strcmp(v, "none")) { /* no total cap wanted: a shared workspace's files are capped one by one */
		*out = WS_QUOTA_NONE;
		return 0;
	}
	if (cfg_parse_size(v, &sz) < 0 || sz < WS_QUOTA_MIN_BYTES || sz > (16ull << 40)) {
		snprintf(err, errlen, "--disk %s: expected a size from 16M to 16T, like 2G, or none", v);
		return -EINVAL;
	}
	*out = sz;
	return 0;
}

int sbxopt_place(const char *a, const char *v, const char **workspace, bool *scratch, uint64_t *disk_bytes,
		 const char **image, char *err, size_t errlen)
{
	if (!strcmp(a, "--workspace") || !strcmp(a, "--scratch-workspace")) {
		if (*workspace) {
			snprintf(err, errlen, "%s: one workspace only (--workspace or --scratch-workspace)", a);
			return -EINVAL;
		}
		*workspace = v;
		*scratch = a[2] == 's';
		return 1;
	}
	if (!strcmp(a, "--disk"))
		return sbxopt_disk(v, disk_bytes, err, errlen) < 0 ? -EINVAL : 1;
	if (!strcmp(a, "--image")) {
		*image = v;
		return 1;
	}
	return 0;
}
