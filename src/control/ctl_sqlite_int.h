/* Shared by the SQLite store's parts: ctl_sqlite.c (open, schema, keys, environments, sessions, pages) and
 * ctl_sqlite_work.c (the work queue, leases and the event log). */
#ifndef POSTERN_CTL_SQLITE_INT_H
#define POSTERN_CTL_SQLITE_INT_H

#include <stdint.h>

#include <sqlite3.h>

#include "control/ctl_store.h"

struct sq {
	ctl_store base;
	sqlite3 *db;
	char path[4096];
};

int64_t ctl_sq_now_ms(void);
/* -EIO with "sqlite store PATH: what: sqlite's message". */
int ctl_sq_fail(struct sq *q, char *err, size_t errlen, const char *what);
int ctl_sq_exec(struct sq *q, const char *sql, char *err, size_t errlen);
int ctl_sq_begin(struct sq *q, char *err, size_t errlen); /* BEGIN IMMEDIATE: the write lock up front */
int ctl_sq_commit(struct sq *q, char *err, size_t errlen);
void ctl_sq_rollback(struct sq *q); /* only when a transaction is open */
/* Prepares sql and binds from fmt: 't' text (NULL binds NULL), 'i' int64_t, 'b' blob (pointer, int length). */
sqlite3_stmt *ctl_sq_prep(struct sq *q, const char *sql, const char *fmt, ...);
/* Steps a statement that returns no rows and finalizes it: 0, -EEXIST (constraint), -EIO. */
int ctl_sq_run(struct sq *q, sqlite3_stmt *st, char *err, size_t errlen);
char *ctl_sq_dump(json_t *o);
json_t *ctl_sq_load_text(const unsigned char *t);
/* A page of (n, obj) rows from sql ("... WHERE [env_id = ? AND] n > ? ORDER BY n LIMIT ?"); secrets nulled. */
int ctl_sq_list_rows(struct sq *q, const char *sql, const char *env_id, const char *after, unsigned limit,
		   ctl_page *out, char *err, size_t errlen);

int ctl_sq_work_enqueue(ctl_store *s, const char *env_id, json_t *work, char *err, size_t errlen);
int ctl_sq_work_poll(ctl_store *s, const char *env_id, const char *worker_id, uint64_t reclaim_older_than_ms,
		     const ctl_token *tok, json_t **work, char *err, size_t errlen);
int ctl_sq_work_ack(ctl_store *s, const char *env_id, const char *work_id, char *err, size_t errlen);
int ctl_sq_work_heartbeat(ctl_store *s, const char *env_id, const char *work_id, const char *expected,
			unsigned ttl_seconds, ctl_lease *lease, char *err, size_t errlen);
int ctl_sq_work_stop(ctl_store *s, const char *env_id, const char *work_id, bool force, char *err, size_t errlen);
int ctl_sq_work_expire(ctl_store *s, unsigned lease_ttl_seconds, char *err, size_t errlen);
int ctl_sq_work_get(ctl_store *s, const char *env_id, const char *work_id, json_t **work, char *err, size_t errlen);
int ctl_sq_work_update_metadata(ctl_store *s, const char *env_id, const char *work_id, json_t *patch, json_t **work,
			      char *err, size_t errlen);
int ctl_sq_work_list(ctl_store *s, const char *env_id, const char *after, unsigned limit, ctl_page *out, char *err,
		   size_t errlen);
int ctl_sq_work_stats(ctl_store *s, const char *env_id, ctl_stats *st, char *err, size_t errlen);
int ctl_sq_event_append(ctl_store *s, const char *session_id, json_t *events, uint64_t *seq_out, char *err,
		      size_t errlen);
int ctl_sq_event_read(ctl_store *s, const char *session_id, uint64_t after_seq, unsigned limit, json_t **events,
		    uint64_t *last_seq, char *err, size_t errlen);
int ctl_sq_event_tool(ctl_store *s, const char *session_id, const char *use_id, bool custom, json_t **use,
		      json_t **result, char *err, size_t errlen);
int ctl_sq_event_last(ctl_store *s, const char *session_id, uint64_t *seq, char *err, size_t errlen);

#endif
