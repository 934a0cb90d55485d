/* The SQLite store's work queue, leases and event log. The work row's columns drive the queue (acked,
 * delivered_ms, state, the lease's hb_ms, ttl and last_hb); obj is the API object, kept in step with them in
 * the same transaction. The secret lives in its own column, is written by each delivery (with its key) and
 * only poll hands it out. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/ctl_sqlite_int.h"
#include "core/err.h"

#define POLLERS_WINDOW_MS 30000
#define POLLER_REFRESH_MS 5000 /* a polling worker's time is written at most this often while it finds nothing */

/* The work row of env_id/work_id: obj (new reference), state, lease columns. */
struct wrow {
	json_t *obj;
	char state[16];
	char last_hb[40];
	int acked;
	int64_t hb_ms, ttl;
};

static int get_row(struct sq *q, const char *env_id, const char *work_id, struct wrow *w, char *err, size_t errlen)
{
	sqlite3_stmt *st = ctl_sq_prep(q, "SELECT obj, state, acked, last_hb, hb_ms, ttl FROM work WHERE id = ? AND env_id = ?",
				     "tt", work_id, env_id);
	int r;
	memset(w, 0, sizeof *w);
	if (!st)
		return ctl_sq_fail(q, err, errlen, "prepare");
	r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		w->obj = ctl_sq_load_text(sqlite3_column_text(st, 0));
		snprintf(w->state, sizeof w->state, "%s", (const char *)sqlite3_column_text(st, 1));
		w->acked = sqlite3_column_int(st, 2);
		snprintf(w->last_hb, sizeof w->last_hb, "%s", (const char *)sqlite3_column_text(st, 3));
		w->hb_ms = sqlite3_column_int64(st, 4);
		w->ttl = sqlite3_column_int64(st, 5);
	}
	sqlite3_finalize(st);
	if (r == SQLITE_DONE)
		return err_set(err, errlen, -ENOENT, "no work item %s in environment %s", work_id, env_id);
	if (r != SQLITE_ROW || !w->obj)
		return ctl_sq_fail(q, err, errlen, "read work");
	return 0;
}

/* Writes the row's columns and obj back (obj's state set from w->state). */
static int put_row(struct sq *q, const char *work_id, struct wrow *w, int64_t delivered_ms, bool reset_delivery,
		   char *err, size_t errlen)
{
	char *t;
	int rc;
	json_object_set_new(w->obj, "state", json_string(w->state));
	json_object_set_new(w->obj, "secret", json_null());
	if (!(t = ctl_sq_dump(w->obj)))
		return err_set(err, errlen, -ENOMEM, "out of memory");
	if (reset_delivery)
		rc = ctl_sq_run(q, ctl_sq_prep(q, "UPDATE work SET state = ?, acked = ?, last_hb = ?, hb_ms = ?, ttl = ?, obj = ?, "
					      "delivered_ms = ?, worker = NULL WHERE id = ?",
					   "titiitit", w->state, (int64_t)w->acked, w->last_hb, w->hb_ms, w->ttl, t,
					   delivered_ms, work_id),
			      err, errlen);
	else
		rc = ctl_sq_run(q, ctl_sq_prep(q, "UPDATE work SET state = ?, acked = ?, last_hb = ?, hb_ms = ?, ttl = ?, obj = ? "
					      "WHERE id = ?",
					   "titiitt", w->state, (int64_t)w->acked, w->last_hb, w->hb_ms, w->ttl, t, work_id),
			      err, errlen);
	free(t);
	return rc;
}

static void set_ts(json_t *o, const char *key, const char *ts)
{
	json_object_set_new(o, key, ts ? json_string(ts) : json_null());
}

int ctl_sq_work_enqueue(ctl_store *s, const char *env_id, json_t *work, char *err, size_t errlen)
{
	struct sq *q = (struct sq *)s;
	const char *id = json_string_value(json_object_get(work, "id"));
	const char *created = json_string_value(json_object_get(work, "created_at"));
	json_t *copy = json_deep_copy(work);
	char *t = NULL;
	int rc;
	if (!id || !created || !copy) {
		json_decref(copy);
		return err_set(err, errlen, -EINVAL, "work item without id or created_at");
	}
	json_object_set_new(copy, "secret", json_null());
	json_object_set_new(copy, "state", json_string("queued"));
	if (!(t = ctl_sq_dump(copy))) {
		rc = err_set(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	/* no secret yet: each delivery mints its own (deliver) */
	rc = ctl_sq_run(q, ctl_sq_prep(q, "INSERT INTO work(id, env_id, state, created_at, obj) VALUES(?,?,'queued',?,?)",
				   "tttt", id, env_id, created, t),
		      err, errlen);
	if (rc == -EEXIST)
		rc = err_set(err, errlen, rc, "work item %s already exists", id);
out:
	free(t);
	json_decref(copy);
	return rc;
}

/* Ends every token of work_id (its keys are named by the work id): a delivery or a requeue makes the item
 * another holder's. The secret goes with them; the next delivery writes its own. */
static int revoke_tokens(struct sq *q, const char *work_id, char *err, size_t errlen)
{
	int rc = ctl_sq_run(q, ctl_sq_prep(q, "UPDATE keys SET revoked = 1 WHERE name = ? AND kind = 'session' AND revoked = 0",
					   "t", work_id),
			    err, errlen);
	if (rc < 0)
		return rc;
	return ctl_sq_run(q, ctl_sq_prep(q, "UPDATE work SET secret = NULL WHERE id = ?", "t", work_id), err, errlen);
}

/* The delivery of work (work_id, in the open transaction) to worker_id with tok as its one live token. */
static int deliver(struct sq *q, const char *work_id, json_t *work, const char *worker_id, const ctl_token *tok,
		   int64_t now, char *err, size_t errlen)
{
	const char *sid = json_string_value(json_object_get(json_object_get(work, "data"), "id"));
	char ts[40];
	int rc;
	if ((rc = revoke_tokens(q, work_id, err, errlen)) < 0)
		return rc;
	json_object_set_new(work, "secret", tok ? json_string(tok->secret) : json_null());
	if (tok && (rc = ctl_sq_run(q, ctl_sq_prep(q, "INSERT INTO keys(id, kind, name, env_id, hash, created_at) "
						   "VALUES(?,'session',?,?,?,?)",
						"tttbt", tok->key_id, work_id, sid ? sid : "", tok->hash, 32,
						ctl_now(ts, sizeof ts)),
				    err, errlen)) < 0)
		return rc;
	return ctl_sq_run(q, ctl_sq_prep(q, "UPDATE work SET delivered_ms = ?, worker = ?, secret = ? WHERE id = ?", "ittt",
				      now, worker_id, tok ? tok->secret : NULL, work_id),
			  err, errlen);
}

int ctl_sq_work_poll(ctl_store *s, const char *env_id, const char *worker_id, uint64_t reclaim_older_than_ms,
		     const ctl_token *tok, json_t **work, char *err, size_t errlen)
{
	struct sq *q = (struct sq *)s;
	int64_t now = ctl_sq_now_ms();
	sqlite3_stmt *st;
	int rc, r;
	char id[64] = "";
	*work = NULL;
	/* A long poll asks every 20 ms: when nothing is claimable and the worker was seen lately, answer from a
	 * read alone, without the write transaction's fsync. */
	st = ctl_sq_prep(q, "SELECT (SELECT count(*) FROM work WHERE env_id = ?1 AND acked = 0 AND state = 'queued' AND "
			    "(delivered_ms = 0 OR delivered_ms <= ?2)), (SELECT coalesce(max(at_ms), 0) FROM pollers WHERE "
			    "env_id = ?1 AND worker = ?3)",
			 "tit", env_id, now - (int64_t)reclaim_older_than_ms, worker_id ? worker_id : "");
	if (st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 0 &&
	    (!worker_id || !*worker_id || sqlite3_column_int64(st, 1) > now - POLLER_REFRESH_MS)) {
		sqlite3_finalize(st);
		return 0;
	}
	sqlite3_finalize(st);
	if ((rc = ctl_sq_begin(q, err, errlen)) < 0)
		return rc;
	if (worker_id && *worker_id &&
	    (rc = ctl_sq_run(q, ctl_sq_prep(q, "INSERT INTO pollers(env_id, worker, at_ms) VALUES(?,?,?) "
					   "ON CONFLICT(env_id, worker) DO UPDATE SET at_ms = excluded.at_ms",
					"tti", env_id, worker_id, now),
			   err, errlen)) < 0)
		goto out;
	st = ctl_sq_prep(q, "SELECT id, obj FROM work WHERE env_id = ? AND acked = 0 AND state = 'queued' AND "
			  "(delivered_ms = 0 OR delivered_ms <= ?) ORDER BY n LIMIT 1",
		       "ti", env_id, now - (int64_t)reclaim_older_than_ms);
	if (!st) {
		rc = ctl_sq_fail(q, err, errlen, "prepare");
		goto out;
	}
	r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		snprintf(id, sizeof id, "%s", (const char *)sqlite3_column_text(st, 0));
		*work = ctl_sq_load_text(sqlite3_column_text(st, 1));
	}
	sqlite3_finalize(st);
	if (r != SQLITE_ROW && r != SQLITE_DONE) {
		rc = ctl_sq_fail(q, err, errlen, "poll");
		goto out;
	}
	if (r == SQLITE_ROW && !*work) {
		rc = ctl_sq_fail(q, err, errlen, "read work");
		goto out;
	}
	if (*work && (rc = deliver(q, id, *work, worker_id, tok, now, err, errlen)) < 0)
		goto out;
	rc = ctl_sq_commit(q, err, errlen);
out:
	if (rc < 0) {
		ctl_sq_rollback(q);
		json_decref(*work);
		*work = NULL;
	}
	return rc;
}

/* One transaction on one work row: fn changes w (0: write it back; 1: leave it; <0: fail, nothing changes). */
static int change_row(struct sq *q, const char *env_id, const char *work_id,
		      int (*fn)(struct wrow *w, void *ud, char *err, size_t errlen), void *ud, json_t **obj, char *err,
		      size_t errlen)
{
	struct wrow w;
	int rc;
	if ((rc = ctl_sq_begin(q, err, errlen)) < 0)
		return rc;
	if ((rc = get_row(q, env_id, work_id, &w, err, errlen)) < 0 || (rc = fn(&w, ud, err, errlen)) < 0)
		goto out;
	if (rc == 0 && (rc = put_row(q, work_id, &w, 0, false, err, errlen)) < 0)
		goto out;
	if ((rc = ctl_sq_commit(q, err, errlen)) < 0)
		goto out;
	if (obj)
		*obj = json_incref(w.obj);
out:
	if (rc < 0)
		ctl_sq_rollback(q);
	json_decref(w.obj);
	return rc < 0 ? rc : 0;
}

static int do_ack(struct wrow *w, void *ud, char *err, size_t errlen)
{
	char now[40];
	const char *work_id = ud;
	if (w->acked || strcmp(w->state, "queued"))
		return err_set(err, errlen, -EINVAL, "work item %s is %s, not queued: it was acknowledged already", work_id,
			       w->state);
	snprintf(w->state, sizeof w->state, "starting");
	w->acked = 1;
	w->hb_ms = ctl_sq_now_ms(); /* the lease clock runs from the ack until the first beat */
	w->ttl = 0;
	w->last_hb[0] = 0;
	set_ts(w->obj, "acknowledged_at", ctl_now(now, sizeof now));
	return 0;
}

int ctl_sq_work_ack(ctl_store *s, const char *env_id, const char *work_id, char *err, size_t errlen)
{
	return change_row((struct sq *)s, env_id, work_id, do_ack, (void *)work_id, NULL, err, errlen);
}

static void lease_of(const struct wrow *w, bool extended, ctl_lease *l)
{
	memset(l, 0, sizeof *l);
	snprintf(l->state, sizeof l->state, "%s", w->state);
	snprintf(l->last_heartbeat, sizeof l->last_heartbeat, "%s", w->last_hb);
	l->ttl_seconds = (unsigned)w->ttl;
	l->lease_extended = extended;
}

struct beat {
	const char *expected;
	unsigned ttl;
	ctl_lease *lease;
};

static int do_beat(struct wrow *w, void *ud, char *err, size_t errlen)
{
	struct beat *b = ud;
	char now[40];
	bool match = !strcmp(b->expected, "NO_HEARTBEAT") ? w->last_hb[0] == 0 : !strcmp(b->expected, w->last_hb);
	if (!match || !w->acked) {
		lease_of(w, false, b->lease);
		return err_set(err, errlen, -ESTALE, "expected_last_heartbeat does not match the lease (state %s): another "
			       "worker may hold it", w->state);
	}
	if (!strcmp(w->state, "stopped")) {
		lease_of(w, false, b->lease);
		return 1;
	}
	if (!strcmp(w->state, "starting")) {
		snprintf(w->state, sizeof w->state, "active");
		set_ts(w->obj, "started_at", ctl_now(now, sizeof now));
	}
	ctl_now(now, sizeof now);
	if (!strcmp(now, w->last_hb)) /* the same microsecond: the next beat must tell them apart */
		now[strlen(now) - 2] = (char)(now[strlen(now) - 2] == '9' ? '8' : now[strlen(now) - 2] + 1);
	snprintf(w->last_hb, sizeof w->last_hb, "%s", now);
	set_ts(w->obj, "latest_heartbeat_at", now);
	w->hb_ms = ctl_sq_now_ms();
	w->ttl = b->ttl;
	lease_of(w, strcmp(w->state, "stopping") != 0, b->lease);
	return 0;
}

int ctl_sq_work_heartbeat(ctl_store *s, const char *env_id, const char *work_id, const char *expected,
			  unsigned ttl_seconds, ctl_lease *lease, char *err, size_t errlen)
{
	struct beat b = { expected, ttl_seconds, lease };
	int rc;
	memset(lease, 0, sizeof *lease);
	rc = change_row((struct sq *)s, env_id, work_id, do_beat, &b, NULL, err, errlen);
	if (rc < 0 && rc != -ESTALE)
		memset(lease, 0, sizeof *lease); /* not committed: no lease to report */
	return rc;
}

struct stop {
	const char *work_id;
	bool force;
};

static int do_stop(struct wrow *w, void *ud, char *err, size_t errlen)
{
	struct stop *st = ud;
	char now[40];
	if (!strcmp(w->state, "stopped"))
		return err_set(err, errlen, -EALREADY, "work item %s is stopped already", st->work_id);
	ctl_now(now, sizeof now);
	if (json_is_null(json_object_get(w->obj, "stop_requested_at")) || !json_object_get(w->obj, "stop_requested_at"))
		set_ts(w->obj, "stop_requested_at", now);
	/* An item no worker holds has nobody to notice a graceful stop: it stops at once. */
	if (st->force || !w->acked) {
		snprintf(w->state, sizeof w->state, "stopped");
		set_ts(w->obj, "stopped_at", now);
		w->acked = 1;
	} else
		snprintf(w->state, sizeof w->state, "stopping");
	return 0;
}

int ctl_sq_work_stop(ctl_store *s, const char *env_id, const char *work_id, bool force, char *err, size_t errlen)
{
	struct stop st = { work_id, force };
	return change_row((struct sq *)s, env_id, work_id, do_stop, &st, NULL, err, errlen);
}

int ctl_sq_work_expire(ctl_store *s, unsigned lease_ttl_seconds, char *err, size_t errlen)
{
	struct sq *q = (struct sq *)s;
	int64_t now = ctl_sq_now_ms();
	sqlite3_stmt *st;
	int rc, r, n = 0;
	json_t *ids = json_array();
	if ((rc = ctl_sq_begin(q, err, errlen)) < 0)
		goto out;
	st = ctl_sq_prep(q, "SELECT id, env_id, hb_ms, ttl FROM work WHERE acked = 1 AND state IN ('starting', 'active', "
			  "'stopping')", NULL);
	if (!st) {
		rc = ctl_sq_fail(q, err, errlen, "prepare");
		goto out;
	}
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t ttl = sqlite3_column_int64(st, 3);
		if (ttl <= 0)
			ttl = lease_ttl_seconds;
		if (sqlite3_column_int64(st, 2) + ttl * 1000 < now)
			json_array_append_new(ids, json_pack("[ss]", (const char *)sqlite3_column_text(st, 0),
							     (const char *)sqlite3_column_text(st, 1)));
	}
	sqlite3_finalize(st);
	if (r != SQLITE_DONE) {
		rc = ctl_sq_fail(q, err, errlen, "expire");
		goto out;
	}
	for (size_t i = 0; i < json_array_size(ids); i++) {
		const char *id = json_string_value(json_array_get(json_array_get(ids, i), 0));
		const char *env = json_string_value(json_array_get(json_array_get(ids, i), 1));
		struct wrow w;
		char ts[40];
		if ((rc = get_row(q, env, id, &w, err, errlen)) < 0)
			goto out;
		if (!strcmp(w.state, "stopping")) { /* asked to stop and gone: stopped */
			snprintf(w.state, sizeof w.state, "stopped");
			set_ts(w.obj, "stopped_at", ctl_now(ts, sizeof ts));
			rc = put_row(q, id, &w, 0, false, err, errlen);
		} else { /* back to the queue: another worker takes the session */
			snprintf(w.state, sizeof w.state, "queued");
			w.acked = 0;
			w.last_hb[0] = 0;
			w.hb_ms = 0;
			w.ttl = 0;
			set_ts(w.obj, "acknowledged_at", NULL);
			set_ts(w.obj, "started_at", NULL);
			set_ts(w.obj, "latest_heartbeat_at", NULL);
			rc = put_row(q, id, &w, 0, true, err, errlen);
			if (rc == 0) /* the holder that lost the lease is 401 from now on */
				rc = revoke_tokens(q, id, err, errlen);
		}
		json_decref(w.obj);
		if (rc < 0)
			goto out;
		n++;
	}
	if ((rc = ctl_sq_commit(q, err, errlen)) < 0)
		goto out;
	rc = n;
out:
	if (rc < 0)
		ctl_sq_rollback(q);
	json_decref(ids);
	return rc;
}

int ctl_sq_work_get(ctl_store *s, const char *env_id, const char *work_id, json_t **work, char *err, size_t errlen)
{
	struct wrow w;
	int rc = get_row((struct sq *)s, env_id, work_id, &w, err, errlen);
	*work = rc < 0 ? NULL : w.obj;
	if (*work)
		json_object_set_new(*work, "secret", json_null());
	return rc;
}

static int do_metadata(struct wrow *w, void *ud, char *err, size_t errlen)
{
	json_t *md = json_object_get(w->obj, "metadata");
	(void)err;
	(void)errlen;
	if (!json_is_object(md)) {
		md = json_object();
		json_object_set_new(w->obj, "metadata", md);
	}
	ctl_merge_patch(md, ud);
	return 0;
}

int ctl_sq_work_update_metadata(ctl_store *s, const char *env_id, const char *work_id, json_t *patch, json_t **work,
				char *err, size_t errlen)
{
	*work = NULL;
	return change_row((struct sq *)s, env_id, work_id, do_metadata, patch, work, err, errlen);
}

int ctl_sq_work_list(ctl_store *s, const char *env_id, const char *after, unsigned limit, ctl_page *out, char *err,
		   size_t errlen)
{
	return ctl_sq_list_rows((struct sq *)s, "SELECT n, obj FROM work WHERE env_id = ? AND n > ? ORDER BY n LIMIT ?", env_id,
			      after, limit, out, err, errlen);
}

int ctl_sq_work_stats(ctl_store *s, const char *env_id, ctl_stats *out, char *err, size_t errlen)
{
	struct sq *q = (struct sq *)s;
	sqlite3_stmt *st;
	int r;
	memset(out, 0, sizeof *out);
	st = ctl_sq_prep(q, "SELECT count(*), sum(delivered_ms > 0), min(created_at) FROM work WHERE env_id = ? AND acked = 0 "
			  "AND state = 'queued'", "t", env_id);
	if (!st)
		return ctl_sq_fail(q, err, errlen, "prepare");
	if ((r = sqlite3_step(st)) == SQLITE_ROW) {
		out->depth = (uint64_t)sqlite3_column_int64(st, 0);
		out->pending = (uint64_t)sqlite3_column_int64(st, 1);
		if (sqlite3_column_text(st, 2))
			snprintf(out->oldest_queued_at, sizeof out->oldest_queued_at, "%s",
				 (const char *)sqlite3_column_text(st, 2));
	}
	sqlite3_finalize(st);
	if (r != SQLITE_ROW)
		return ctl_sq_fail(q, err, errlen, "stats");
	st = ctl_sq_prep(q, "SELECT count(*) FROM pollers WHERE env_id = ? AND at_ms >= ?", "ti", env_id,
		       ctl_sq_now_ms() - POLLERS_WINDOW_MS);
	if (!st)
		return ctl_sq_fail(q, err, errlen, "prepare");
	if ((r = sqlite3_step(st)) == SQLITE_ROW)
		out->workers_polling = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return r == SQLITE_ROW ? 0 : ctl_sq_fail(q, err, errlen, "stats");
}

/* ---- the event log ---- */
/* -EEXIST when e (events[i]) is a result for a call the log already has a result of: one result per call. Asked
 * inside the append's write transaction (BEGIN IMMEDIATE), so of two connections racing two results for one call
 * the second sees the first; the SQL names the events_answers / events_custom_answers index expressions. */
static int answered(struct sq *q, const char *session_id, json_t *e, size_t i, char *err, size_t errlen)
{
	const char *t = json_string_value(json_object_get(e, "type")), *id;
	bool custom;
	sqlite3_stmt *st;
	int r;
	if (!t || (strcmp(t, "user.tool_result") && strcmp(t, "user.custom_tool_result")))
		return 0;
	custom = t[5] == 'c';
	if (!(id = json_string_value(json_object_get(e, custom ? "custom_tool_use_id" : "tool_use_id"))))
		return 0;
	st = ctl_sq_prep(q, custom ? "SELECT 1 FROM events WHERE session_id = ? AND json_extract(obj, '$.custom_tool_use_id') = ? "
				     "AND json_extract(obj, '$.type') = 'user.custom_tool_result' LIMIT 1"
				   : "SELECT 1 FROM events WHERE session_id = ? AND json_extract(obj, '$.tool_use_id') = ? "
				     "AND json_extract(obj, '$.type') = 'user.tool_result' LIMIT 1",
			 "tt", session_id, id);
	if (!st)
		return ctl_sq_fail(q, err, errlen, "prepare");
	r = sqlite3_step(st);
	sqlite3_finalize(st);
	if (r == SQLITE_ROW)
		return err_set(err, errlen, -EEXIST, "events[%zu].%s: %s is already answered", i,
			       custom ? "custom_tool_use_id" : "tool_use_id", id);
	return r == SQLITE_DONE ? 0 : ctl_sq_fail(q, err, errlen, "read events");
}

int ctl_sq_event_append(ctl_store *s, const char *session_id, json_t *events, uint64_t *seq_out, char *err,
		      size_t errlen)
{
	struct sq *q = (struct sq *)s;
	sqlite3_stmt *st;
	int64_t seq = 0;
	int rc, r;
	char now[40];
	if ((rc = ctl_sq_begin(q, err, errlen)) < 0)
		return rc;
	st = ctl_sq_prep(q, "SELECT (SELECT count(*) FROM sessions WHERE id = ?), "
			  "(SELECT coalesce(max(seq), 0) FROM events WHERE session_id = ?)", "tt", session_id, session_id);
	if (!st) {
		rc = ctl_sq_fail(q, err, errlen, "prepare");
		goto out;
	}
	r = sqlite3_step(st);
	if (r == SQLITE_ROW && sqlite3_column_int(st, 0) == 0) {
		sqlite3_finalize(st);
		rc = err_set(err, errlen, -ENOENT, "no session %s", session_id);
		goto out;
	}
	if (r == SQLITE_ROW)
		seq = sqlite3_column_int64(st, 1);
	sqlite3_finalize(st);
	if (r != SQLITE_ROW) {
		rc = ctl_sq_fail(q, err, errlen, "read events");
		goto out;
	}
	ctl_now(now, sizeof now);
	for (size_t i = 0; i < json_array_size(events); i++) {
		json_t *e = json_array_get(events, i);
		char id[40], *t;
		if ((rc = ctl_new_id("sevt", id, sizeof id)) < 0) {
			rc = err_set(err, errlen, rc, "no random bytes for an event id");
			goto out;
		}
		json_object_set_new(e, "id", json_string(id));
		json_object_set_new(e, "processed_at", json_string(now));
		if (!(t = ctl_sq_dump(e))) {
			rc = err_set(err, errlen, -ENOMEM, "out of memory");
			goto out;
		}
		seq++;
		rc = answered(q, session_id, e, i, err, errlen);
		if (rc == 0)
			rc = ctl_sq_run(q, ctl_sq_prep(q, "INSERT INTO events(session_id, seq, obj) VALUES(?,?,?)", "tit", session_id,
						       seq, t),
					err, errlen);
		free(t);
		if (rc < 0)
			goto out;
	}
	if ((rc = ctl_sq_commit(q, err, errlen)) < 0)
		goto out;
	if (seq_out)
		*seq_out = (uint64_t)seq;
out:
	if (rc < 0)
		ctl_sq_rollback(q);
	return rc;
}

int ctl_sq_event_read(ctl_store *s, const char *session_id, uint64_t after_seq, unsigned limit, json_t **events,
		    uint64_t *last_seq, char *err, size_t errlen)
{
	struct sq *q = (struct sq *)s;
	sqlite3_stmt *st = ctl_sq_prep(q, "SELECT seq, obj FROM events WHERE session_id = ? AND seq > ? ORDER BY seq LIMIT ?",
				     "tii", session_id, (int64_t)after_seq, (int64_t)limit);
	int r;
	*events = json_array();
	*last_seq = after_seq;
	if (!st) {
		json_decref(*events);
		*events = NULL;
		return ctl_sq_fail(q, err, errlen, "prepare");
	}
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		json_t *e = ctl_sq_load_text(sqlite3_column_text(st, 1));
		uint64_t sq = (uint64_t)sqlite3_column_int64(st, 0);
		if (!e)
			continue;
		json_object_set_new(e, "_seq", json_integer((json_int_t)sq));
		json_array_append_new(*events, e);
		*last_seq = sq;
	}
	sqlite3_finalize(st);
	if (r != SQLITE_DONE) {
		json_decref(*events);
		*events = NULL;
		*last_seq = after_seq;
		return ctl_sq_fail(q, err, errlen, "read events");
	}
	return 0;
}

/* One event by an indexed expression (the SQL names the index's expression exactly, so SQLite uses it). */
static int event_one(struct sq *q, const char *sql, const char *session_id, const char *v, json_t **out, char *err,
		     size_t errlen)
{
	sqlite3_stmt *st = ctl_sq_prep(q, sql, "tt", session_id, v);
	int r;
	*out = NULL;
	if (!st)
		return ctl_sq_fail(q, err, errlen, "prepare");
	if ((r = sqlite3_step(st)) == SQLITE_ROW)
		*out = ctl_sq_load_text(sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return r == SQLITE_ROW || r == SQLITE_DONE ? 0 : ctl_sq_fail(q, err, errlen, "read events");
}

int ctl_sq_event_tool(ctl_store *s, const char *session_id, const char *use_id, bool custom, json_t **use,
		      json_t **result, char *err, size_t errlen)
{
	struct sq *q = (struct sq *)s;
	int rc;
	*result = NULL;
	if ((rc = event_one(q, "SELECT obj FROM events WHERE session_id = ? AND json_extract(obj, '$.id') = ? LIMIT 1",
			    session_id, use_id, use, err, errlen)) < 0)
		return rc;
	rc = event_one(q, custom ? "SELECT obj FROM events WHERE session_id = ? AND json_extract(obj, '$.custom_tool_use_id') = ? "
				   "AND json_extract(obj, '$.type') = 'user.custom_tool_result' ORDER BY seq LIMIT 1"
				 : "SELECT obj FROM events WHERE session_id = ? AND json_extract(obj, '$.tool_use_id') = ? "
				   "AND json_extract(obj, '$.type') = 'user.tool_result' ORDER BY seq LIMIT 1",
		       session_id, use_id, result, err, errlen);
	if (rc < 0) {
		json_decref(*use);
		*use = NULL;
	}
	return rc;
}

int ctl_sq_event_last(ctl_store *s, const char *session_id, uint64_t *seq, char *err, size_t errlen)
{
	struct sq *q = (struct sq *)s;
	/* max() over the primary key (session_id, seq): one index seek, not a scan */
	sqlite3_stmt *st = ctl_sq_prep(q, "SELECT coalesce(max(seq), 0) FROM events WHERE session_id = ?", "t", session_id);
	int r;
	*seq = 0;
	if (!st)
		return ctl_sq_fail(q, err, errlen, "prepare");
	if ((r = sqlite3_step(st)) == SQLITE_ROW)
		*seq = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return r == SQLITE_ROW ? 0 : ctl_sq_fail(q, err, errlen, "read events");
}
