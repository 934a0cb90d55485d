/* Shared by the parts of the Redis store: ctl_redis.c (connection, scripts, keys, environments, sessions),
 * ctl_redis_events.c (event logs) and ctl_redis_work.c (the work queue and leases). */
#ifndef POSTERN_CTL_REDIS_INT_H
#define POSTERN_CTL_REDIS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "control/ctl_store.h"

#define CTL_REDIS_PREFIX "postern:"
#define CTL_REDIS_GROUP "workers"

typedef struct ctl_redis {
	ctl_store base;
	redisContext *c; /* NULL after a lost connection: the next call connects again */
	char host[256];
	int port;
	unsigned db;
	char addr[300]; /* "host:port/db", for errors */
	char user[128];  /* the ACL user of AUTH ("" without one) */
	char *password;  /* AUTH's password (NULL: no AUTH); wiped at close */
	uint64_t swept_ms; /* the last sweep of idle consumers by this process (ctl_redis_work.c) */
} ctl_redis;

/* A Lua script run by EVALSHA (its SHA-1 computed once), EVAL when the server does not have it yet. */
typedef struct ctl_redis_script {
	const char *src;
	char sha[41];
} ctl_redis_script;

/* Runs one command (argv of argc strings, lengths from strlen unless lens). 0 with *reply (freeReplyObject
 * it), or -EIO with err naming the address: no connection, a timeout, or an error reply. */
int ctl_redis_cmd(ctl_redis *r, int argc, const char **argv, const size_t *lens, redisReply **reply, char *err,
		  size_t errlen);
/* EVALSHA/EVAL of sc with nkeys keys then the rest as ARGV (argv holds keys then args). */
int ctl_redis_eval(ctl_redis *r, ctl_redis_script *sc, int nkeys, int argc, const char **argv,
		   const size_t *lens, redisReply **reply, char *err, size_t errlen);
/* The store's answer of a script: element 0 of an array reply is "OK" or an errno name; maps it (ENOENT,
 * EEXIST, ESTALE, EALREADY, EINVAL) to -errno with err saying what (what names the object). */
int ctl_redis_status(const redisReply *rep, const char *what, char *err, size_t errlen);
/* The string at rep->element[i] or NULL (nil, out of range, not a string). */
const char *ctl_redis_str(const redisReply *rep, size_t i);

/* Wall clock in ms since the epoch (lease expiry and stream ages), and ctl_now()'s string of the same instant. */
uint64_t ctl_redis_now(char *ts, size_t tslen);
/* A page out of a script's ids (limit + 1 asked: more means a next page). */
int ctl_redis_page_ids(ctl_redis *r, const char *zset, const char *after, unsigned limit, redisReply **ids,
		       bool *more, char *err, size_t errlen);

/* The JSON string at objpfx+id: -ENOENT when there is none. */
int ctl_redis_get_json(ctl_redis *r, const char *objpfx, const char *id, json_t **obj, char *err, size_t errlen);

/* ctl_redis_events.c: the event log ops of ctl_store.h. */
int ctl_redis_event_append(ctl_store *s, const char *session_id, json_t *events, uint64_t *seq_out, char *err,
			   size_t errlen);
int ctl_redis_event_read(ctl_store *s, const char *session_id, uint64_t after_seq, unsigned limit, json_t **events,
			 uint64_t *last_seq, char *err, size_t errlen);
int ctl_redis_event_tool(ctl_store *s, const char *session_id, const char *use_id, bool custom, json_t **use,
			 json_t **result, char *err, size_t errlen);
int ctl_redis_event_last(ctl_store *s, const char *session_id, uint64_t *seq, char *err, size_t errlen);

/* ctl_redis_work.c */
int ctl_redis_work_enqueue(ctl_store *s, const char *env_id, json_t *work, char *err, size_t errlen);
int ctl_redis_work_poll(ctl_store *s, const char *env_id, const char *worker_id, uint64_t reclaim_older_than_ms,
			const ctl_token *tok, json_t **work, char *err, size_t errlen);
int ctl_redis_work_ack(ctl_store *s, const char *env_id, const char *work_id, char *err, size_t errlen);
int ctl_redis_work_heartbeat(ctl_store *s, const char *env_id, const char *work_id, const char *expected,
			     unsigned ttl_seconds, ctl_lease *lease, char *err, size_t errlen);
int ctl_redis_work_stop(ctl_store *s, const char *env_id, const char *work_id, bool force, char *err,
			size_t errlen);
int ctl_redis_work_expire(ctl_store *s, unsigned lease_ttl_seconds, char *err, size_t errlen);
int ctl_redis_work_get(ctl_store *s, const char *env_id, const char *work_id, json_t **work, char *err,
		       size_t errlen);
int ctl_redis_work_update_metadata(ctl_store *s, const char *env_id, const char *work_id, json_t *patch,
				   json_t **work, char *err, size_t errlen);
int ctl_redis_work_list(ctl_store *s, const char *env_id, const char *after, unsigned limit, ctl_page *out,
			char *err, size_t errlen);
int ctl_redis_work_stats(ctl_store *s, const char *env_id, ctl_stats *st, char *err, size_t errlen);

#endif
