/* The store seam's shared pieces: which store a config names, timestamps, ids, pages. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <openssl/rand.h>

#include "control/ctl_store.h"
#include "core/err.h"

int ctl_store_open(const char *spec, const char *state_dir, const char *redis_password, ctl_store **out, char *err,
		   size_t errlen)
{
	*out = NULL;
	if (!spec || !strcmp(spec, "sqlite"))
		return ctl_sqlite_open(state_dir, out, err, errlen);
	if (!strncmp(spec, "redis://", 8))
		return ctl_redis_open(spec, redis_password, out, err, errlen);
	return err_set(err, errlen, -EINVAL, "store '%s': not a store (use \"sqlite\" or \"redis://host:port[/db]\")",
		       spec);
}

void ctl_store_close(ctl_store *s)
{
	if (s)
		s->ops->close(s);
}

void ctl_page_free(ctl_page *p)
{
	if (!p)
		return;
	json_decref(p->data);
	free(p->next_page);
	p->data = NULL;
	p->next_page = NULL;
}

bool ctl_page_next(ctl_page *p, char *cursor, size_t cap)
{
	bool more = p->next_page != NULL;
	if (more)
		snprintf(cursor, cap, "%s", p->next_page);
	ctl_page_free(p);
	return more;
}

void ctl_merge_patch(json_t *obj, json_t *patch)
{
	const char *k;
	json_t *v;
	json_object_foreach(patch, k, v) {
		if (json_is_null(v))
			json_object_del(obj, k);
		else
			json_object_set(obj, k, v);
	}
}

const char *ctl_now(char *buf, size_t len)
{
	struct timeval tv;
	struct tm tm;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		 tm.tm_hour, tm.tm_min, tm.tm_sec, (long)tv.tv_usec);
	return buf;
}

int ctl_new_id(const char *prefix, char *buf, size_t len)
{
	static const char b32[] = "0123456789abcdefghjkmnpqrstvwxyz"; /* Crockford, lower case */
	unsigned char r[26];
	size_t pl = strlen(prefix);
	if (len < pl + 1 + 26 + 1)
		return -ENOSPC;
	if (RAND_bytes(r, sizeof r) != 1)
		return -EIO;
	memcpy(buf, prefix, pl);
	buf[pl] = '_';
	for (size_t i = 0; i < 26; i++)
		buf[pl + 1 + i] = b32[r[i] & 31];
	buf[pl + 27] = 0;
	return 0;
}
