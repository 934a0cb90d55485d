#include "tunnel/tokstore.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define TOKEN_PREFIX "pt1_"
#define SECRET_BYTES 32
#define BUSY_TIMEOUT_MS 5000

struct tok_store {
	sqlite3 *db;
	char *path;   /* <state_dir>/tunnels.db, for the reopen after a failure */
	bool broken;  /* the last call failed with -EIO: the next one reopens the connection first */
	char *domain;
	int64_t (*now)(void *);
	void *now_ud;
	char err[256];
};

static const char schema[] =
	"BEGIN IMMEDIATE;"
	"CREATE TABLE IF NOT EXISTS tunnels("
	" id TEXT PRIMARY KEY, name TEXT NOT NULL, domain TEXT NOT NULL UNIQUE,"
	" created_ms INTEGER NOT NULL, deleted_ms INTEGER);"
	"CREATE UNIQUE INDEX IF NOT EXISTS tunnels_live_name ON tunnels(name) WHERE deleted_ms IS NULL;"
	"CREATE TABLE IF NOT EXISTS tokens("
	" tunnel_id TEXT NOT NULL REFERENCES tunnels(id), hash BLOB NOT NULL,"
	" created_ms INTEGER NOT NULL, expires_ms INTEGER);"
	"CREATE INDEX IF NOT EXISTS tokens_tunnel ON tokens(tunnel_id);"
	"PRAGMA user_version=1;"
	"COMMIT;";

/* Two processes opening a fresh state_dir at once race on the WAL switch and the schema: SQLite reports
 * SQLITE_BUSY there without calling the busy handler, so retry for up to the busy timeout. */
static int exec_retry(sqlite3 *db, const char *sql, char **emsg)
{
	int rc = SQLITE_BUSY;
	for (int i = 0; i < BUSY_TIMEOUT_MS / 20; i++) {
		sqlite3_free(*emsg);
		*emsg = NULL;
		rc = sqlite3_exec(db, sql, NULL, NULL, emsg);
		if ((rc & 0xff) != SQLITE_BUSY && (rc & 0xff) != SQLITE_LOCKED)
			break;
		sqlite3_exec(db, "ROLLBACK;", NULL, NULL, NULL);
		usleep(20000);
	}
	return rc;
}

static int64_t wall_ms(void *ud)
{
	struct timespec ts;
	(void)ud;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now(tok_store *s) { return s->now(s->now_ud); }

static int dberr(tok_store *s, const char *what)
{
	int code = sqlite3_errcode(s->db);
	snprintf(s->err, sizeof s->err, "%s: %s", what, sqlite3_errmsg(s->db));
	/* Still locked by another connection when the busy timeout ran out: passes, unlike a broken store. */
	if (code == SQLITE_BUSY || code == SQLITE_LOCKED)
		return -EBUSY;
	s->broken = true;
	return -EIO;
}

/* The end of a failed write transaction. Not through exec: its own error ("no transaction is active" when
 * SQLite already rolled back) would replace the one that made the call fail. */
static void rollback(tok_store *s) { sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL); }

/* A connection that saw a broken database file (overwritten, truncated, an I/O error) can stay failed after
 * the file is whole again: SQLite keeps the error. After a -EIO the next call opens a new connection. The
 * file must exist (no CREATE: an empty database would refuse every token) and hold the schema. */
static int reopen(tok_store *s)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int rc = -EIO;
	if (sqlite3_open_v2(s->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
		snprintf(s->err, sizeof s->err, "reopen %s: %s", s->path, db ? sqlite3_errmsg(db) : "cannot open");
		goto out;
	}
	/* Called on the edge's loop too: a lock held elsewhere fails this attempt fast; the next call retries. */
	sqlite3_busy_timeout(db, TOK_LOOP_BUSY_MS);
	if (sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;", NULL, NULL,
			 NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT 1 FROM tunnels, tokens LIMIT 0", -1, &st, NULL) != SQLITE_OK) {
		snprintf(s->err, sizeof s->err, "reopen %s: %s", s->path, sqlite3_errmsg(db));
		goto out;
	}
	sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS);
	sqlite3_close(s->db);
	s->db = db;
	db = NULL;
	s->broken = false;
	rc = 0;
out:
	sqlite3_finalize(st);
	sqlite3_close(db);
	return rc;
}

/* The start of every call: the last error is forgotten, and a connection a failure left broken replaced. */
static int call_begin(tok_store *s)
{
	s->err[0] = 0;
	return s->broken ? reopen(s) : 0;
}

/* tok_verify and tok_get_by_id run on the edge's event loop, where waiting for a lock stalls every client
 * and connector: they wait TOK_LOOP_BUSY_MS at most, then fail with -EBUSY. */
static void loop_query_begin(tok_store *s) { sqlite3_busy_timeout(s->db, TOK_LOOP_BUSY_MS); }
static void loop_query_end(tok_store *s) { sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS); }

const char *tok_errstr(const tok_store *s) { return s->err[0] ? s->err : "no error"; }

void tok_set_clock(tok_store *s, int64_t (*fn)(void *ud), void *ud)
{
	s->now = fn ? fn : wall_ms;
	s->now_ud = ud;
}

int tok_open(const char *state_dir, const char *edge_domain, tok_store **out, char *err, size_t errlen)
{
	tok_store *s = NULL;
	char path[4096];
	char *emsg = NULL;
	int fd, rc = -EIO;

	*out = NULL;
	if (mkdir(state_dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: cannot create state_dir: %s", state_dir, strerror(errno));
		return -errno;
	}
	if ((size_t)snprintf(path, sizeof path, "%s/tunnels.db", state_dir) >= sizeof path) {
		snprintf(err, errlen, "%s: path too long", state_dir);
		return -ENAMETOOLONG;
	}
	/* Created here so that it is 0600 from the start; SQLite gives -wal/-shm the same mode. */
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -errno;
	}
	close(fd);
	s = calloc(1, sizeof *s);
	if (!s || (edge_domain && !(s->domain = strdup(edge_domain)))) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto fail;
	}
	s->now = wall_ms;
	if (!(s->path = strdup(path))) {
		snprintf(err, errlen, "out of memory");
		rc = -ENOMEM;
		goto fail;
	}
	if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path, s->db ? sqlite3_errmsg(s->db) : "cannot open");
		goto fail;
	}
	sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
	/* WAL lets edges read while `postern tunnel` writes: a reader never waits for a writer.
	 * Durability with synchronous=NORMAL (safe with WAL; FULL would fsync the WAL at every commit): a commit
	 * is fsynced at the next checkpoint, not at COMMIT. A process crash loses nothing and no crash or power
	 * loss corrupts the database, but a power loss or OS crash may roll back the last commits not yet
	 * checkpointed: a tunnel just created or rotated (its printed token is then refused) or just deleted
	 * (it is live again). Only the CLI writes, and rarely; edges only read, for which the setting is moot. */
	if (exec_retry(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
		       &emsg) != SQLITE_OK ||
	    exec_retry(s->db, schema, &emsg) != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path, emsg ? emsg : sqlite3_errmsg(s->db));
		sqlite3_free(emsg);
		goto fail;
	}
	*out = s;
	return 0;
fail:
	tok_close(s);
	return rc;
}

void tok_close(tok_store *s)
{
	if (!s)
		return;
	sqlite3_close(s->db);
	free(s->path);
	free(s->domain);
	free(s);
}

static bool valid_name(const char *n)
{
	size_t l = strlen(n);
	if (l == 0 || l >= TOK_NAME_MAX)
		return false;
	for (size_t i = 0; i < l; i++) {
		char c = n[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		      c == '.'))
			return false;
	}
	return true;
}

static int sha256(const uint8_t *p, size_t n, uint8_t out[32])
{
	unsigned len = 32;
	return EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) == 1 ? 0 : -EIO;
}

static void hex(const uint8_t *p, size_t n, char *out)
{
	static const char d[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = d[p[i] >> 4];
		out[2 * i + 1] = d[p[i] & 15];
	}
	out[2 * n] = 0;
}

static int unhex(const char *s, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < 2 * n; i++) {
		char c = s[i];
		int v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (v < 0)
			return -EINVAL;
		if (i % 2)
			out[i / 2] = (uint8_t)(out[i / 2] << 4 | v);
		else
			out[i / 2] = (uint8_t)v;
	}
	return s[2 * n] ? -EINVAL : 0;
}

static int new_id(char id[TOK_ID_LEN + 1])
{
	static const char a[] = "abcdefghijklmnopqrstuvwxyz234567";
	uint8_t r[TOK_ID_LEN];
	if (RAND_bytes(r, sizeof r) != 1)
		return -EIO;
	/* A letter first keeps the label from looking like a number to anyone. */
	id[0] = a[r[0] % 26];
	for (int i = 1; i < TOK_ID_LEN; i++)
		id[i] = a[r[i] & 31];
	id[TOK_ID_LEN] = 0;
	return 0;
}

/* Adds a fresh token to tunnel id; the token text goes to out. */
static int add_token(tok_store *s, const char *id, char *out)
{
	uint8_t secret[SECRET_BYTES], h[32];
	char sh[2 * SECRET_BYTES + 1];
	sqlite3_stmt *st = NULL;
	int rc = -EIO;
	if (RAND_bytes(secret, sizeof secret) != 1) {
		snprintf(s->err, sizeof s->err, "no randomness");
		goto out;
	}
	hex(secret, sizeof secret, sh);
	if (sha256((const uint8_t *)sh, strlen(sh), h) < 0)
		goto out;
	if (sqlite3_prepare_v2(s->db, "INSERT INTO tokens(tunnel_id, hash, created_ms) VALUES(?,?,?)", -1, &st,
			       NULL) != SQLITE_OK) {
		rc = dberr(s, "insert token");
		goto out;
	}
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_blob(st, 2, h, sizeof h, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, now(s));
	if (sqlite3_step(st) != SQLITE_DONE) {
		rc = dberr(s, "insert token");
		goto out;
	}
	snprintf(out, TOK_TOKEN_MAX, TOKEN_PREFIX "%s_%s", id, sh);
	rc = 0;
out:
	sqlite3_finalize(st);
	OPENSSL_cleanse(secret, sizeof secret);
	OPENSSL_cleanse(sh, sizeof sh);
	return rc;
}

static int exec(tok_store *s, const char *sql)
{
	return sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : dberr(s, sql);
}

static void fill(tok_store *s, sqlite3_stmt *st, tok_tunnel *t)
{
	memset(t, 0, sizeof *t);
	snprintf(t->id, sizeof t->id, "%s", (const char *)sqlite3_column_text(st, 0));
	snprintf(t->name, sizeof t->name, "%s", (const char *)sqlite3_column_text(st, 1));
	snprintf(t->domain, sizeof t->domain, "%s", (const char *)sqlite3_column_text(st, 2));
	t->created_ms = sqlite3_column_int64(st, 3);
	t->deleted_ms = sqlite3_column_int64(st, 4);
	t->tokens = sqlite3_column_int(st, 5);
	(void)s;
}

#define SELECT_TUNNEL                                                                                    \
	"SELECT id, name, domain, created_ms, COALESCE(deleted_ms, 0),"                                  \
	" (SELECT COUNT(*) FROM tokens k WHERE k.tunnel_id = t.id AND (k.expires_ms IS NULL OR k.expires_ms > ?1))" \
	" FROM tunnels t "

/* by: "name" or "id"; only live tunnels. */
static int lookup(tok_store *s, const char *by, const char *v, tok_tunnel *t)
{
	char sql[512];
	sqlite3_stmt *st = NULL;
	int rc;
	snprintf(sql, sizeof sql, SELECT_TUNNEL "WHERE %s = ?2 AND deleted_ms IS NULL", by);
	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
		return dberr(s, "lookup");
	sqlite3_bind_int64(st, 1, now(s));
	sqlite3_bind_text(st, 2, v, -1, SQLITE_STATIC);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		if (t)
			fill(s, st, t);
		rc = 0;
	} else if (rc == SQLITE_DONE) {
		rc = -ENOENT;
	} else {
		rc = dberr(s, "lookup");
	}
	sqlite3_finalize(st);
	return rc;
}

/* A write transaction (*in_tx once it is open) on the live tunnel called name: its row in *cur (cur NULL:
 * whether it exists), -ENOENT when there is none. */
static int begin_on(tok_store *s, const char *name, tok_tunnel *cur, bool *in_tx)
{
	int rc = exec(s, "BEGIN IMMEDIATE");
	if (rc < 0)
		return rc;
	*in_tx = true;
	return lookup(s, "name", name, cur);
}

int tok_get(tok_store *s, const char *name, tok_tunnel *t)
{
	int rc;
	if (!valid_name(name))
		return -EINVAL;
	if ((rc = call_begin(s)) < 0)
		return rc;
	return lookup(s, "name", name, t);
}

int tok_get_by_id(tok_store *s, const char *id, tok_tunnel *t)
{
	int rc;
	if ((rc = call_begin(s)) < 0)
		return rc;
	loop_query_begin(s);
	rc = lookup(s, "id", id, t);
	loop_query_end(s);
	return rc;
}

int tok_create(tok_store *s, const char *name, tok_tunnel *t, char *token)
{
	sqlite3_stmt *st = NULL;
	char id[TOK_ID_LEN + 1], domain[TOK_DOMAIN_MAX];
	int rc;
	bool in_tx = false;

	if (!valid_name(name))
		return -EINVAL;
	if (!s->domain) {
		snprintf(s->err, sizeof s->err, "no edge domain configured");
		return -EINVAL;
	}
	if ((rc = call_begin(s)) < 0)
		return rc;
	if ((rc = begin_on(s, name, NULL, &in_tx)) != -ENOENT) {
		rc = rc == 0 ? -EEXIST : rc;
		goto out;
	}
	if (sqlite3_prepare_v2(s->db, "INSERT INTO tunnels(id, name, domain, created_ms) VALUES(?,?,?,?)", -1, &st,
			       NULL) != SQLITE_OK) {
		rc = dberr(s, "create tunnel");
		goto out;
	}
	/* Ids are 80 random bits; the PRIMARY KEY and UNIQUE domain make a repeat impossible, not just unlikely. */
	for (int tries = 0;; tries++) {
		if ((rc = new_id(id)) < 0)
			goto out;
		snprintf(domain, sizeof domain, "%s.%s", id, s->domain);
		sqlite3_reset(st);
		sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, domain, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 4, now(s));
		rc = sqlite3_step(st);
		if (rc == SQLITE_DONE)
			break;
		if (rc != SQLITE_CONSTRAINT || tries >= 5) {
			rc = dberr(s, "create tunnel");
			goto out;
		}
	}
	if ((rc = add_token(s, id, token)) < 0)
		goto out;
	if ((rc = exec(s, "COMMIT")) < 0)
		goto out;
	in_tx = false;
	rc = lookup(s, "id", id, t);
out:
	sqlite3_finalize(st);
	if (in_tx)
		rollback(s);
	return rc;
}

int tok_rotate(tok_store *s, const char *name, int64_t grace_ms, tok_tunnel *t, char *token)
{
	sqlite3_stmt *st = NULL;
	tok_tunnel cur;
	int rc;
	bool in_tx = false;

	if (!valid_name(name) || grace_ms < 0)
		return -EINVAL;
	if ((rc = call_begin(s)) < 0)
		return rc;
	if ((rc = begin_on(s, name, &cur, &in_tx)) < 0)
		goto out;
	/* Older tokens end at now + grace, or earlier if a previous rotation already set that. */
	if (sqlite3_prepare_v2(s->db,
			       "UPDATE tokens SET expires_ms = MIN(COALESCE(expires_ms, ?2), ?2) WHERE tunnel_id = ?1",
			       -1, &st, NULL) != SQLITE_OK) {
		rc = dberr(s, "rotate");
		goto out;
	}
	sqlite3_bind_text(st, 1, cur.id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now(s) + grace_ms);
	if (sqlite3_step(st) != SQLITE_DONE) {
		rc = dberr(s, "rotate");
		goto out;
	}
	if ((rc = add_token(s, cur.id, token)) < 0)
		goto out;
	/* Tokens long past their grace are of no use; keep the table small. */
	{
		char sql[128];
		snprintf(sql, sizeof sql, "DELETE FROM tokens WHERE expires_ms < %lld", (long long)(now(s) - 86400000));
		if ((rc = exec(s, sql)) < 0)
			goto out;
	}
	if ((rc = exec(s, "COMMIT")) < 0)
		goto out;
	in_tx = false;
	rc = lookup(s, "id", cur.id, t);
out:
	sqlite3_finalize(st);
	if (in_tx)
		rollback(s);
	return rc;
}

int tok_delete(tok_store *s, const char *name)
{
	sqlite3_stmt *st = NULL;
	tok_tunnel cur;
	int rc;
	bool in_tx = false;

	if (!valid_name(name))
		return -EINVAL;
	if ((rc = call_begin(s)) < 0)
		return rc;
	if ((rc = begin_on(s, name, &cur, &in_tx)) < 0)
		goto out;
	/* The row stays (id and domain are never reused); its tokens go. */
	if (sqlite3_prepare_v2(s->db, "UPDATE tunnels SET deleted_ms = ?2 WHERE id = ?1", -1, &st, NULL) != SQLITE_OK) {
		rc = dberr(s, "delete");
		goto out;
	}
	sqlite3_bind_text(st, 1, cur.id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now(s));
	if (sqlite3_step(st) != SQLITE_DONE) {
		rc = dberr(s, "delete");
		goto out;
	}
	sqlite3_finalize(st);
	st = NULL;
	if (sqlite3_prepare_v2(s->db, "DELETE FROM tokens WHERE tunnel_id = ?1", -1, &st, NULL) != SQLITE_OK) {
		rc = dberr(s, "delete");
		goto out;
	}
	sqlite3_bind_text(st, 1, cur.id, -1, SQLITE_STATIC);
	if (sqlite3_step(st) != SQLITE_DONE) {
		rc = dberr(s, "delete");
		goto out;
	}
	rc = exec(s, "COMMIT");
	in_tx = rc < 0;
out:
	sqlite3_finalize(st);
	if (in_tx)
		rollback(s);
	return rc;
}

int tok_list(tok_store *s, int (*fn)(const tok_tunnel *t, void *ud), void *ud)
{
	sqlite3_stmt *st = NULL;
	tok_tunnel t;
	int rc;
	if ((rc = call_begin(s)) < 0)
		return rc;
	if (sqlite3_prepare_v2(s->db, SELECT_TUNNEL "WHERE deleted_ms IS NULL ORDER BY name", -1, &st, NULL) != SQLITE_OK)
		return dberr(s, "list");
	sqlite3_bind_int64(st, 1, now(s));
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		fill(s, st, &t);
		if ((rc = fn(&t, ud)) != 0)
			goto out;
	}
	rc = rc == SQLITE_DONE ? 0 : dberr(s, "list");
out:
	sqlite3_finalize(st);
	return rc;
}

int tok_tokens(tok_store *s, const char *id, int (*fn)(const tok_token_info *k, void *ud), void *ud)
{
	sqlite3_stmt *st = NULL;
	tok_token_info k;
	int rc;
	if ((rc = call_begin(s)) < 0)
		return rc;
	if (sqlite3_prepare_v2(s->db,
			       "SELECT k.hash, k.created_ms, k.expires_ms FROM tokens k JOIN tunnels t ON t.id = k.tunnel_id"
			       " WHERE k.tunnel_id = ?1 AND t.deleted_ms IS NULL AND (k.expires_ms IS NULL OR k.expires_ms > ?2)"
			       " ORDER BY k.created_ms DESC, k.rowid DESC",
			       -1, &st, NULL) != SQLITE_OK)
		return dberr(s, "tokens");
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now(s));
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const uint8_t *h = sqlite3_column_blob(st, 0);
		memset(&k, 0, sizeof k);
		if (!h || sqlite3_column_bytes(st, 0) != 32)
			continue;
		memcpy(k.fingerprint, "sha256:", 7);
		hex(h, 8, k.fingerprint + 7);
		k.created_ms = sqlite3_column_int64(st, 1);
		k.expires_ms = sqlite3_column_int64(st, 2);
		if ((rc = fn(&k, ud)) != 0)
			goto out;
	}
	rc = rc == SQLITE_DONE ? 0 : dberr(s, "tokens");
out:
	sqlite3_finalize(st);
	return rc;
}

int tok_token_tunnel_id(const char *token, char *id)
{
	const char *p;
	if (strncmp(token, TOKEN_PREFIX, strlen(TOKEN_PREFIX)))
		return -EINVAL;
	p = token + strlen(TOKEN_PREFIX);
	for (int i = 0; i < TOK_ID_LEN; i++) {
		char c = p[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '2' && c <= '7')))
			return -EINVAL;
	}
	if (p[TOK_ID_LEN] != '_')
		return -EINVAL;
	memcpy(id, p, TOK_ID_LEN);
	id[TOK_ID_LEN] = 0;
	return 0;
}

int tok_verify(tok_store *s, const char *token, tok_tunnel *t)
{
	char id[TOK_ID_LEN + 1];
	const char *secret;
	uint8_t raw[SECRET_BYTES], h[32];
	sqlite3_stmt *st = NULL;
	bool ok = false;
	int rc;

	if (tok_token_tunnel_id(token, id) < 0)
		return -EINVAL;
	secret = token + strlen(TOKEN_PREFIX) + TOK_ID_LEN + 1;
	if (strlen(secret) != 2 * SECRET_BYTES || unhex(secret, raw, sizeof raw) < 0)
		return -EINVAL;
	OPENSSL_cleanse(raw, sizeof raw);
	if (sha256((const uint8_t *)secret, 2 * SECRET_BYTES, h) < 0)
		return -EIO;
	if ((rc = call_begin(s)) < 0)
		return rc;
	loop_query_begin(s);
	if (sqlite3_prepare_v2(s->db,
			       "SELECT k.hash FROM tokens k JOIN tunnels t ON t.id = k.tunnel_id"
			       " WHERE k.tunnel_id = ?1 AND t.deleted_ms IS NULL"
			       " AND (k.expires_ms IS NULL OR k.expires_ms > ?2)",
			       -1, &st, NULL) != SQLITE_OK) {
		rc = dberr(s, "verify");
		goto out;
	}
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now(s));
	/* Every candidate is compared, in constant time, so timing says nothing about which one matched. */
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const void *b = sqlite3_column_blob(st, 0);
		if (b && sqlite3_column_bytes(st, 0) == 32 && CRYPTO_memcmp(b, h, 32) == 0)
			ok = true;
	}
	if (rc != SQLITE_DONE) {
		rc = dberr(s, "verify");
		goto out;
	}
	if (!ok) {
		rc = -EACCES;
		goto out;
	}
	rc = lookup(s, "id", id, t);
	if (rc == -ENOENT)
		rc = -EACCES;
out:
	sqlite3_finalize(st);
	loop_query_end(s);
	return rc;
}
