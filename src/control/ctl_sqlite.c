/* The SQLite store: objects as JSON text plus the columns the queue and the lists index. Every call runs in
 * one transaction (BEGIN IMMEDIATE for writes), so a failure changes nothing; WAL with synchronous=FULL makes
 * a committed call survive a crash (kill -9, power loss on a disk that honours fsync). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <sqlite3.h>

#include "control/ctl_sqlite.h"
#include "control/ctl_sqlite_int.h"
#include "core/dirs.h"
#include "core/err.h"

#define SCHEMA_VERSION 1
#define BUSY_MS 5000


static const char schema[] =
	"CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS keys(id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL, env_id TEXT,"
	" hash BLOB NOT NULL UNIQUE, revoked INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS envs(n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, obj TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS work(n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
	" env_id TEXT NOT NULL, state TEXT NOT NULL, acked INTEGER NOT NULL DEFAULT 0,"
	" delivered_ms INTEGER NOT NULL DEFAULT 0, worker TEXT, hb_ms INTEGER NOT NULL DEFAULT 0,"
	" ttl INTEGER NOT NULL DEFAULT 0, last_hb TEXT NOT NULL DEFAULT '', secret TEXT, created_at TEXT NOT NULL,"
	" obj TEXT NOT NULL);"
	"CREATE INDEX IF NOT EXISTS work_queue ON work(env_id, acked, state, n);"
	/* a delivery revokes the earlier tokens of its item (the key's name is the work id) */
	"CREATE INDEX IF NOT EXISTS keys_name ON keys(name, kind);"
	"CREATE TABLE IF NOT EXISTS pollers(env_id TEXT NOT NULL, worker TEXT NOT NULL, at_ms INTEGER NOT NULL,"
	" PRIMARY KEY(env_id, worker));"
	"CREATE TABLE IF NOT EXISTS sessions(n INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,"
	" obj TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS events(session_id TEXT NOT NULL, seq INTEGER NOT NULL, obj TEXT NOT NULL,"
	" PRIMARY KEY(session_id, seq));"
	/* event_tool's lookups: a tool use by its id, its result by the id it answers (built on an older file too) */
	"CREATE INDEX IF NOT EXISTS events_id ON events(session_id, json_extract(obj, '$.id'));"
	"CREATE INDEX IF NOT EXISTS events_answers ON events(session_id, json_extract(obj, '$.tool_use_id'), seq);"
	"CREATE INDEX IF NOT EXISTS events_custom_answers ON events(session_id, json_extract(obj, '$.custom_tool_use_id'), seq);";

int64_t ctl_sq_now_ms(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);
	return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

int ctl_sq_fail(struct sq *q, char *err, size_t errlen, const char *what)
{
	return err_set(err, errlen, -EIO, "sqlite store %s: %s: %s", q->path, what, sqlite3_errmsg(q->db));
}

int ctl_sq_exec(struct sq *q, const char *sql, char *err, size_t errlen)
{
	char *m = NULL;
	if (sqlite3_exec(q->db, sql, NULL, NULL, &m) != SQLITE_OK) {
		int rc = err_set(err, errlen, -EIO, "sqlite store %s: %s", q->path, m ? m : sqlite3_errmsg(q->db));
		sqlite3_free(m);
		return rc;
	}
	return 0;
}

int ctl_sq_begin(struct sq *q, char *err, size_t errlen) { return ctl_sq_exec(q, "BEGIN IMMEDIATE", err, errlen); }
int ctl_sq_commit(struct sq *q, char *err, size_t errlen) { return ctl_sq_exec(q, "COMMIT", err, errlen); }
void ctl_sq_rollback(struct sq *q)
{
	if (!sqlite3_get_autocommit(q->db))
		sqlite3_exec(q->db, "ROLLBACK", NULL, NULL, NULL);
}

/* Prepares sql and binds text arguments ("t"), int64 ("i") and blobs ("b": pointer, then length) from fmt. */
sqlite3_stmt *ctl_sq_prep(struct sq *q, const char *sql, const char *fmt, ...)
{
	sqlite3_stmt *st = NULL;
	va_list ap;
	if (sqlite3_prepare_v2(q->db, sql, -1, &st, NULL) != SQLITE_OK)
		return NULL;
	va_start(ap, fmt);
	for (int i = 1; fmt && *fmt; fmt++, i++) {
		if (*fmt == 't') {
			const char *t = va_arg(ap, const char *);
			if (t)
				sqlite3_bind_text(st, i, t, -1, SQLITE_TRANSIENT);
			else
				sqlite3_bind_null(st, i);
		} else if (*fmt == 'i')
			sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
		else if (*fmt == 'b') {
			const void *p = va_arg(ap, const void *);
			int n = va_arg(ap, int);
			sqlite3_bind_blob(st, i, p, n, SQLITE_TRANSIENT);
		}
	}
	va_end(ap);
	return st;
}

/* Runs a statement that returns no rows. 0, -EEXIST on a constraint, -EIO. */
int ctl_sq_run(struct sq *q, sqlite3_stmt *st, char *err, size_t errlen)
{
	int r;
	if (!st)
		return ctl_sq_fail(q, err, errlen, "prepare");
	r = sqlite3_step(st);
	sqlite3_finalize(st);
	if (r == SQLITE_DONE || r == SQLITE_ROW)
		return 0;
	if (r == SQLITE_CONSTRAINT)
		return err_set(err, errlen, -EEXIST, "already exists");
	return ctl_sq_fail(q, err, errlen, "write");
}

char *ctl_sq_dump(json_t *o) { return json_dumps(o, JSON_COMPACT); }

json_t *ctl_sq_load_text(const unsigned char *t)
{
	return t ? json_loads((const char *)t, 0, NULL) : NULL;
}

static void sq_close(ctl_store *s)
{
	struct sq *q = (struct sq *)s;
	sqlite3_close(q->db);
	free(q);
}

/* ---- keys ---- */
static int sq_key_add(ctl_store *s, const char *kind, const char *id, const char *name, const char *env_id,
		      const uint8_t hash[32], char *err, size_t errlen)
{
	struct sq *q = (struct sq *)s;
	char now[40];
	int rc = ctl_sq_run(q, ctl_sq_prep(q, "INSERT INTO keys(id, kind, name, env_id, hash, created_at) VALUES(?,?,?,?,?,?)",
			     "ttttbt", id, kind, name, env_id, hash, 32, ctl_now(now, sizeof now)),
		     err, errlen);
	if (rc == -EEXIST)
		return err_set(err, errlen, rc, "key %s already exists", id);
	return rc;
}

static int sq_key_check(ctl_store *s, const char *kind, const uint8_t hash[32], char *id, size_t idlen,
			char *env_id, size_t envlen, char *name, size_t namelen)
{
	struct sq *q = (struct sq *)s;
	sqlite3_stmt *st = ctl_sq_prep(q, "SELECT id, env_id, hash, revoked, name FROM keys WHERE hash = ? AND kind = ?", "bt",
				hash, 32, kind);
	int rc = -ENOENT;
	if (!st)
		return -EIO;
	if (sqlite3_step(st) == SQLITE_ROW) {
		const void *h = sqlite3_column_blob(st, 2);
		/* The index found the row; the compare that decides is constant-time. */
		if (h && sqlite3_column_bytes(st, 2) == 32 && CRYPTO_memcmp(h, hash, 32) == 0) {
			const unsigned char *i = sqlite3_column_text(st, 0), *e = sqlite3_column_text(st, 1);
			snprintf(id, idlen, "%s", i ? (const char *)i : "");
			if (env_id)
				snprintf(env_id, envlen, "%s", e ? (const char *)e : "");
			if (name) {
				const unsigned char *nm = sqlite3_column_text(st, 4);
				snprintf(name, namelen, "%s", nm ? (const char *)nm : "");
			}
			rc = sqlite3_column_int(st, 3) ? -EKEYREVOKED : 0;
		}
	}
	sqlite3_finalize(st);
	return rc;
}

static int sq_key_revoke(ctl_store *s, const char *id, char *err, size_t errlen)
{
	struct sq *q = (struct sq *)s;
	int rc = ctl_sq_run(q, ctl_sq_prep(q, "UPDATE keys SET revoked = 1 WHERE id = ?", "t", id), err, errlen);
	if (rc == 0 && sqlite3_changes(q->db) == 0)
		return err_set(err, errlen, -ENOENT, "no key %s", id);
	return rc;
}

/* ---- generic objects (environments, sessions) ---- */
static int obj_put(struct sq *q, const char *table, const char *id, json_t *obj, char *err, size_t errlen)
{
	char sql[160];
	char *t = ctl_sq_dump(obj);
	int rc;
	if (!t)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	snprintf(sql, sizeof sql, "INSERT INTO %s(id, obj) VALUES(?, ?) ON CONFLICT(id) DO UPDATE SET obj = excluded.obj",
		 table);
	rc = ctl_sq_run(q, ctl_sq_prep(q, sql, "tt", id, t), err, errlen);
	free(t);
	return rc;
}

static int obj_get(struct sq *q, const char *table, const char *what, const char *id, json_t **obj, char *err,
		   size_t errlen)
{
	char sql[96];
	sqlite3_stmt *st;
	int r;
	*obj = NULL;
	snprintf(sql, sizeof sql, "SELECT obj FROM %s WHERE id = ?", table);
	if (!(st = ctl_sq_prep(q, sql, "t", id)))
		return ctl_sq_fail(q, err, errlen, "prepare");
	r = sqlite3_step(st);
	if (r == SQLITE_ROW)
		*obj = ctl_sq_load_text(sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	if (r == SQLITE_DONE)
		return err_set(err, errlen, -ENOENT, "no %s %s", what, id);
	if (r != SQLITE_ROW || !*obj)
		return ctl_sq_fail(q, err, errlen, "read");
	return 0;
}

/* A cursor is the row number of the last item given, in decimal. */
static int parse_cursor(const char *after, int64_t *n, char *err, size_t errlen)
{
	char *end;
	*n = 0;
	if (!after || !*after)
		return 0;
	*n = strtoll(after, &end, 10);
	if (*end || *n < 0)
		return err_set(err, errlen, -EINVAL, "page: not a cursor this server gave");
	return 0;
}

int ctl_sq_list_rows(struct sq *q, const char *sql_fmt, const char *env_id, const char *after, unsigned limit,
		     ctl_page *out, char *err, size_t errlen)
{
	sqlite3_stmt *st;
	int64_t n, last = 0;
	int r, rc;
	unsigned got = 0;
	bool more = false;
	out->data = json_array();
	out->next_page = NULL;
	if ((rc = parse_cursor(after, &n, err, errlen)) < 0)
		goto out;
	st = env_id ? ctl_sq_prep(q, sql_fmt, "tii", env_id, n, (int64_t)limit + 1) : ctl_sq_prep(q, sql_fmt, "ii", n, (int64_t)limit + 1);
	if (!st) {
		rc = ctl_sq_fail(q, err, errlen, "prepare");
		goto out;
	}
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		if (got == limit) {
			more = true;
			break;
		}
		json_t *o = ctl_sq_load_text(sqlite3_column_text(st, 1));
		if (o) {
			json_t *sec = json_object_get(o, "secret");
			if (sec && !json_is_null(sec))
				json_object_set_new(o, "secret", json_null());
			json_array_append_new(out->data, o);
		}
		last = sqlite3_column_int64(st, 0);
		got++;
	}
	sqlite3_finalize(st);
	if (r != SQLITE_ROW && r != SQLITE_DONE) {
		rc = ctl_sq_fail(q, err, errlen, "list");
		goto out;
	}
	if (more) {
		char c[32];
		snprintf(c, sizeof c, "%" PRId64, last);
		out->next_page = strdup(c);
	}
	rc = 0;
out:
	if (rc < 0)
		ctl_page_free(out);
	return rc;
}

static int sq_env_put(ctl_store *s, const char *id, json_t *obj, char *err, size_t errlen)
{
	return obj_put((struct sq *)s, "envs", id, obj, err, errlen);
}
static int sq_env_get(ctl_store *s, const char *id, json_t **obj, char *err, size_t errlen)
{
	return obj_get((struct sq *)s, "envs", "environment", id, obj, err, errlen);
}
static int sq_env_list(ctl_store *s, const char *after, unsigned limit, ctl_page *out, char *err, size_t errlen)
{
	return ctl_sq_list_rows((struct sq *)s, "SELECT n, obj FROM envs WHERE n > ? ORDER BY n LIMIT ?", NULL, after, limit,
			 out, err, errlen);
}
static int sq_session_put(ctl_store *s, const char *id, json_t *obj, char *err, size_t errlen)
{
	return obj_put((struct sq *)s, "sessions", id, obj, err, errlen);
}
static int sq_session_get(ctl_store *s, const char *id, json_t **obj, char *err, size_t errlen)
{
	return obj_get((struct sq *)s, "sessions", "session", id, obj, err, errlen);
}
static int sq_session_list(ctl_store *s, const char *after, unsigned limit, ctl_page *out, char *err, size_t errlen)
{
	return ctl_sq_list_rows((struct sq *)s, "SELECT n, obj FROM sessions WHERE n > ? ORDER BY n LIMIT ?", NULL, after,
			 limit, out, err, errlen);
}

static int sq_session_delete(ctl_store *s, const char *id, char *err, size_t errlen)
{
	struct sq *q = (struct sq *)s;
	int rc;
	if ((rc = ctl_sq_begin(q, err, errlen)) < 0)
		return rc;
	if ((rc = ctl_sq_run(q, ctl_sq_prep(q, "DELETE FROM sessions WHERE id = ?", "t", id), err, errlen)) < 0)
		goto out;
	if (sqlite3_changes(q->db) == 0) {
		rc = err_set(err, errlen, -ENOENT, "no session %s", id);
		goto out;
	}
	if ((rc = ctl_sq_run(q, ctl_sq_prep(q, "DELETE FROM events WHERE session_id = ?", "t", id), err, errlen)) < 0)
		goto out;
	rc = ctl_sq_commit(q, err, errlen);
out:
	if (rc < 0)
		ctl_sq_rollback(q);
	return rc;
}

static const struct ctl_store_ops sq_ops = {
	.name = "sqlite",
	.close = sq_close,
	.key_add = sq_key_add,
	.key_check = sq_key_check,
	.key_revoke = sq_key_revoke,
	.env_put = sq_env_put,
	.env_get = sq_env_get,
	.env_list = sq_env_list,
	.work_enqueue = ctl_sq_work_enqueue,
	.work_poll = ctl_sq_work_poll,
	.work_ack = ctl_sq_work_ack,
	.work_heartbeat = ctl_sq_work_heartbeat,
	.work_stop = ctl_sq_work_stop,
	.work_expire = ctl_sq_work_expire,
	.work_get = ctl_sq_work_get,
	.work_update_metadata = ctl_sq_work_update_metadata,
	.work_list = ctl_sq_work_list,
	.work_stats = ctl_sq_work_stats,
	.session_put = sq_session_put,
	.session_get = sq_session_get,
	.session_list = sq_session_list,
	.session_delete = sq_session_delete,
	.event_append = ctl_sq_event_append,
	.event_read = ctl_sq_event_read,
	.event_tool = ctl_sq_event_tool,
	.event_last = ctl_sq_event_last,
};

int ctl_sqlite_open(const char *state_dir, ctl_store **out, char *err, size_t errlen)
{
	struct sq *q;
	int rc, fd;
	*out = NULL;
	if (!state_dir || !*state_dir)
		return err_set(err, errlen, -EINVAL, "sqlite store: state_dir is required");
	if ((rc = dirs_make(state_dir, 0700, NULL, err, errlen)) < 0)
		return rc;
	if (!(q = calloc(1, sizeof *q)))
		return err_set(err, errlen, -ENOMEM, "out of memory");
	q->base.ops = &sq_ops;
	snprintf(q->path, sizeof q->path, "%s/control.db", state_dir);
	/* Made 0600 before SQLite opens it, so the keys' hashes and the work secrets are never wider. */
	if ((fd = open(q->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		rc = err_set(err, errlen, -errno, "sqlite store %s: %s", q->path, strerror(errno));
		free(q);
		return rc;
	}
	close(fd);
	if (sqlite3_open_v2(q->path, &q->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
		rc = ctl_sq_fail(q, err, errlen, "open");
		goto bad;
	}
	sqlite3_busy_timeout(q->db, BUSY_MS);
	if ((rc = ctl_sq_exec(q, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", err, errlen)) < 0 ||
	    (rc = ctl_sq_begin(q, err, errlen)) < 0 || (rc = ctl_sq_exec(q, schema, err, errlen)) < 0 ||
	    (rc = ctl_sq_exec(q, "INSERT OR IGNORE INTO meta(k, v) VALUES('schema_version', '1')", err, errlen)) < 0)
		goto bad;
	{
		sqlite3_stmt *st = ctl_sq_prep(q, "SELECT v FROM meta WHERE k = 'schema_version'", NULL);
		int v = -1;
		if (st && sqlite3_step(st) == SQLITE_ROW)
			v = sqlite3_column_int(st, 0);
		sqlite3_finalize(st);
		if (v != SCHEMA_VERSION) {
			rc = err_set(err, errlen, -EPROTO,
				     "sqlite store %s: schema version %d, this build reads version %d (use the matching "
				     "postern, or move the file aside)", q->path, v, SCHEMA_VERSION);
			goto bad;
		}
	}
	if ((rc = ctl_sq_commit(q, err, errlen)) < 0)
		goto bad;
	chmod(q->path, 0600);
	*out = &q->base;
	return 0;
bad:
	ctl_sq_rollback(q);
	sqlite3_close(q->db);
	free(q);
	return rc;
}
