#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <sqlite3.h>

#include "tunnel/tokstore.h"

struct fx {
	char dir[64];
	tok_store *s;
	int64_t now;
};

static int64_t fake_now(void *ud) { return *(int64_t *)ud; }

static int setup(void **st)
{
	struct fx *f = calloc(1, sizeof *f);
	char err[256];
	strcpy(f->dir, "/tmp/postern-tok-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	strcat(f->dir, "/state"); /* created by tok_open */
	assert_int_equal(tok_open(f->dir, "edge.example", &f->s, err, sizeof err), 0);
	f->now = 1700000000000;
	tok_set_clock(f->s, fake_now, &f->now);
	*st = f;
	return 0;
}

static int teardown(void **st)
{
	struct fx *f = *st;
	char cmd[200];
	tok_close(f->s);
	*strrchr(f->dir, '/') = 0;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static void test_create_verify(void **st)
{
	struct fx *f = *st;
	tok_tunnel t, v;
	char tok[TOK_TOKEN_MAX], id[TOK_ID_LEN + 1], path[128];
	struct stat sb;

	assert_int_equal(tok_create(f->s, "prod-mcp", &t, tok), 0);
	assert_int_equal(strlen(t.id), TOK_ID_LEN);
	assert_string_equal(t.name, "prod-mcp");
	snprintf(path, sizeof path, "%s.edge.example", t.id);
	assert_string_equal(t.domain, path);
	assert_int_equal(t.tokens, 1);
	/* pt1_<id>_<64 hex> */
	assert_int_equal(strlen(tok), 4 + TOK_ID_LEN + 1 + 64);
	assert_int_equal(tok_token_tunnel_id(tok, id), 0);
	assert_string_equal(id, t.id);

	assert_int_equal(tok_verify(f->s, tok, &v), 0);
	assert_string_equal(v.id, t.id);
	assert_string_equal(v.domain, t.domain);

	/* One flipped secret character, a cut, a swapped id: refused. */
	tok[strlen(tok) - 1] = tok[strlen(tok) - 1] == '0' ? '1' : '0';
	assert_int_equal(tok_verify(f->s, tok, &v), -EACCES);
	tok[strlen(tok) - 1] = 0;
	assert_int_equal(tok_verify(f->s, tok, &v), -EINVAL);
	assert_int_equal(tok_verify(f->s, "", &v), -EINVAL);
	assert_int_equal(tok_verify(f->s, "pt1_aaaaaaaaaaaaaaaa_0000000000000000000000000000000000000000000000000000000000000000", &v),
			 -EACCES);

	assert_int_equal(tok_create(f->s, "prod-mcp", &t, tok), -EEXIST);
	assert_int_equal(tok_create(f->s, "bad name", &t, tok), -EINVAL);
	assert_int_equal(tok_create(f->s, "", &t, tok), -EINVAL);

	/* The database is private to the edge's user. */
	snprintf(path, sizeof path, "%s/tunnels.db", f->dir);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 077, 0);
	assert_int_equal(stat(f->dir, &sb), 0);
	assert_int_equal(sb.st_mode & 077, 0);
}

static void test_rotate_grace(void **st)
{
	struct fx *f = *st;
	tok_tunnel t, v;
	char t1[TOK_TOKEN_MAX], t2[TOK_TOKEN_MAX], t3[TOK_TOKEN_MAX];

	assert_int_equal(tok_create(f->s, "a", &t, t1), 0);
	f->now += 1000;
	assert_int_equal(tok_rotate(f->s, "a", 10 * 60 * 1000, &v, t2), 0);
	assert_string_equal(v.id, t.id); /* same tunnel, same domain */
	assert_string_equal(v.domain, t.domain);
	assert_string_not_equal(t1, t2);
	assert_int_equal(v.tokens, 2);
	assert_int_equal(tok_verify(f->s, t1, &v), 0); /* in grace */
	assert_int_equal(tok_verify(f->s, t2, &v), 0);
	f->now += 10 * 60 * 1000 - 1;
	assert_int_equal(tok_verify(f->s, t1, &v), 0);
	f->now += 1;
	assert_int_equal(tok_verify(f->s, t1, &v), -EACCES); /* grace over */
	assert_int_equal(tok_verify(f->s, t2, &v), 0);
	assert_int_equal(tok_get(f->s, "a", &v), 0);
	assert_int_equal(v.tokens, 1);

	/* A second rotation never extends an older token's grace. */
	assert_int_equal(tok_rotate(f->s, "a", 60000, &v, t3), 0);
	assert_int_equal(tok_rotate(f->s, "a", 3600000, &v, t1), 0);
	f->now += 60000;
	assert_int_equal(tok_verify(f->s, t2, &v), -EACCES);
	assert_int_equal(tok_verify(f->s, t3, &v), 0);
	assert_int_equal(tok_verify(f->s, t1, &v), 0);

	/* Grace 0: the old token stops at once. */
	assert_int_equal(tok_rotate(f->s, "a", 0, &v, t2), 0);
	assert_int_equal(tok_verify(f->s, t1, &v), -EACCES);
	assert_int_equal(tok_verify(f->s, t3, &v), -EACCES);
	assert_int_equal(tok_verify(f->s, t2, &v), 0);

	assert_int_equal(tok_rotate(f->s, "nope", 0, &v, t2), -ENOENT);
}

struct tokens_seen {
	int n;
	tok_token_info k[4];
};

static int collect_tokens(const tok_token_info *k, void *ud)
{
	struct tokens_seen *ts = ud;
	if (ts->n < 4)
		ts->k[ts->n] = *k;
	ts->n++;
	return 0;
}

/* The fingerprint a holder of the token can compute: sha256 of its secret part, first 8 bytes in hex. */
static void expected_fp(const char *tok, char out[24])
{
	const char *secret = strrchr(tok, '_') + 1;
	char cmd[200];
	FILE *p;
	snprintf(cmd, sizeof cmd, "printf %%s '%s' | sha256sum", secret);
	p = popen(cmd, "r");
	assert_non_null(p);
	memcpy(out, "sha256:", 7);
	assert_non_null(fgets(out + 7, 17, p));
	pclose(p);
}

static void test_token_fingerprints(void **st)
{
	struct fx *f = *st;
	struct tokens_seen ts = { 0 };
	tok_tunnel t, v;
	char t1[TOK_TOKEN_MAX], t2[TOK_TOKEN_MAX], fp[24];

	assert_int_equal(tok_create(f->s, "a", &t, t1), 0);
	f->now += 1000;
	assert_int_equal(tok_rotate(f->s, "a", 60000, &v, t2), 0);
	assert_int_equal(tok_tokens(f->s, t.id, collect_tokens, &ts), 0);
	assert_int_equal(ts.n, 2);
	/* Newest first; the older one ends with its grace. */
	expected_fp(t2, fp);
	assert_string_equal(ts.k[0].fingerprint, fp);
	assert_int_equal(ts.k[0].created_ms, f->now);
	assert_int_equal(ts.k[0].expires_ms, 0);
	expected_fp(t1, fp);
	assert_string_equal(ts.k[1].fingerprint, fp);
	assert_int_equal(ts.k[1].expires_ms, f->now + 60000);
	assert_null(strstr(ts.k[0].fingerprint, strrchr(t2, '_') + 1)); /* never the secret */
	/* Past the grace only the new one is listed; a deleted tunnel has none. */
	f->now += 60000;
	ts.n = 0;
	assert_int_equal(tok_tokens(f->s, t.id, collect_tokens, &ts), 0);
	assert_int_equal(ts.n, 1);
	assert_int_equal(tok_delete(f->s, "a"), 0);
	ts.n = 0;
	assert_int_equal(tok_tokens(f->s, t.id, collect_tokens, &ts), 0);
	assert_int_equal(ts.n, 0);
	assert_int_equal(tok_tokens(f->s, "nosuchtunnel", collect_tokens, &ts), 0);
	assert_int_equal(ts.n, 0);
}

static int collect(const tok_tunnel *t, void *ud)
{
	char *out = ud;
	strcat(out, t->name);
	strcat(out, ",");
	return 0;
}

static void test_delete_never_reuses(void **st)
{
	struct fx *f = *st;
	tok_tunnel t, t2, v;
	char tok[TOK_TOKEN_MAX], tok2[TOK_TOKEN_MAX], names[256] = "";
	char cmd[512];
	sqlite3 *db;

	assert_int_equal(tok_create(f->s, "b", &t, tok), 0);
	assert_int_equal(tok_create(f->s, "a", &v, tok2), 0);
	assert_int_equal(tok_list(f->s, collect, names), 0);
	assert_string_equal(names, "a,b,");
	assert_int_equal(tok_delete(f->s, "b"), 0);
	assert_int_equal(tok_delete(f->s, "b"), -ENOENT);
	assert_int_equal(tok_verify(f->s, tok, &v), -EACCES);
	assert_int_equal(tok_get(f->s, "b", &v), -ENOENT);
	names[0] = 0;
	assert_int_equal(tok_list(f->s, collect, names), 0);
	assert_string_equal(names, "a,");

	/* The name is free again, but the new tunnel gets a new id and domain. */
	assert_int_equal(tok_create(f->s, "b", &t2, tok2), 0);
	assert_string_not_equal(t2.id, t.id);
	assert_string_not_equal(t2.domain, t.domain);
	assert_int_equal(tok_verify(f->s, tok, &v), -EACCES);

	/* The database refuses a reused id or domain outright, even one from a deleted tunnel. */
	snprintf(cmd, sizeof cmd, "%s/tunnels.db", f->dir);
	assert_int_equal(sqlite3_open(cmd, &db), SQLITE_OK);
	snprintf(cmd, sizeof cmd, "INSERT INTO tunnels(id,name,domain,created_ms) VALUES('%s','c','x',1)", t.id);
	assert_int_equal(sqlite3_exec(db, cmd, NULL, NULL, NULL), SQLITE_CONSTRAINT);
	snprintf(cmd, sizeof cmd, "INSERT INTO tunnels(id,name,domain,created_ms) VALUES('zz','c','%s',1)", t.domain);
	assert_int_equal(sqlite3_exec(db, cmd, NULL, NULL, NULL), SQLITE_CONSTRAINT);
	sqlite3_close(db);
}

static void test_two_handles_share_state(void **st)
{
	struct fx *f = *st;
	tok_store *other;
	tok_tunnel t, v;
	char tok[TOK_TOKEN_MAX], err[256];

	/* A second edge process opens the same state_dir (verify-only handle, no domain). */
	assert_int_equal(tok_open(f->dir, NULL, &other, err, sizeof err), 0);
	assert_int_equal(tok_create(other, "x", &t, tok), -EINVAL);
	assert_int_equal(tok_create(f->s, "x", &t, tok), 0);
	assert_int_equal(tok_verify(other, tok, &v), 0);
	assert_string_equal(v.name, "x");
	tok_close(other);
	assert_int_equal(tok_open("/proc/nonexistent/dir", NULL, &other, err, sizeof err) < 0, 1);
	assert_non_null(strstr(err, "/proc/nonexistent/dir"));
}

/* The default VFS without shared memory: SQLite then cannot use WAL and keeps a rollback journal, as on a
 * file system without shared-memory support. Readers can then be locked out by a writer. */
static sqlite3_vfs *unix_vfs, nowal_vfs;
static struct {
	const sqlite3_io_methods *orig;
	sqlite3_io_methods copy;
} nowal_io[8]; /* one copy per method table the unix VFS uses (database, journal, ...) */

static int nowal_open(sqlite3_vfs *v, sqlite3_filename name, sqlite3_file *f, int flags, int *oflags)
{
	int rc = unix_vfs->xOpen(unix_vfs, name, f, flags, oflags);
	size_t i;
	(void)v;
	if (rc != SQLITE_OK || !f->pMethods)
		return rc;
	for (i = 0; i < sizeof nowal_io / sizeof nowal_io[0]; i++) {
		if (!nowal_io[i].orig) {
			nowal_io[i].orig = f->pMethods;
			nowal_io[i].copy = *f->pMethods;
			nowal_io[i].copy.iVersion = 1; /* no xShm* methods */
		}
		if (nowal_io[i].orig == f->pMethods) {
			f->pMethods = &nowal_io[i].copy;
			return rc;
		}
	}
	fail_msg("more io method tables than expected");
	return rc;
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int text_cb(void *ud, int n, char **v, char **names)
{
	(void)names;
	if (n > 0 && v[0])
		snprintf(ud, 32, "%s", v[0]);
	return 0;
}

/* Another process holding the database locked must not stall the edge's loop for the 5 s busy timeout:
 * tok_verify and tok_get_by_id give up after TOK_LOOP_BUSY_MS with -EBUSY (not -EIO, not -EACCES), and
 * work again once the lock is gone. */
static void test_verify_locked_fails_fast(void **st)
{
	char dir[64], path[128], err[256], tok[TOK_TOKEN_MAX], mode[32] = "", cmd[200];
	tok_store *s;
	tok_tunnel t, v;
	sqlite3 *holder;
	int64_t t0, ms;
	int rc;
	(void)st;

	unix_vfs = sqlite3_vfs_find("unix");
	assert_non_null(unix_vfs);
	nowal_vfs = *unix_vfs;
	nowal_vfs.zName = "test-nowal";
	nowal_vfs.xOpen = nowal_open;
	assert_int_equal(sqlite3_vfs_register(&nowal_vfs, 1), SQLITE_OK);

	strcpy(dir, "/tmp/postern-tokbusy-XXXXXX");
	assert_non_null(mkdtemp(dir));
	strcat(dir, "/state");
	assert_int_equal(tok_open(dir, "edge.example", &s, err, sizeof err), 0);
	assert_int_equal(tok_create(s, "busy", &t, tok), 0);
	assert_int_equal(tok_verify(s, tok, &v), 0);

	snprintf(path, sizeof path, "%s/tunnels.db", dir);
	assert_int_equal(sqlite3_open_v2(path, &holder, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_exec(holder, "PRAGMA journal_mode", text_cb, mode, NULL), SQLITE_OK);
	assert_string_equal(mode, "delete"); /* the premise: no WAL here */
	/* A writer in the middle of its commit: nobody may read. */
	assert_int_equal(sqlite3_exec(holder, "BEGIN EXCLUSIVE; UPDATE tunnels SET created_ms = created_ms;", NULL, NULL, NULL),
			 SQLITE_OK);

	t0 = mono_ms();
	rc = tok_verify(s, tok, &v);
	ms = mono_ms() - t0;
	assert_int_equal(rc, -EBUSY);
	assert_true(ms >= TOK_LOOP_BUSY_MS / 2);
	assert_true(ms < 1000);
	assert_non_null(strstr(tok_errstr(s), "locked"));

	t0 = mono_ms();
	assert_int_equal(tok_get_by_id(s, t.id, NULL), -EBUSY);
	assert_true(mono_ms() - t0 < 1000);

	assert_int_equal(sqlite3_exec(holder, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(holder);
	assert_int_equal(tok_verify(s, tok, &v), 0);
	assert_string_equal(v.id, t.id);
	assert_int_equal(tok_get_by_id(s, t.id, NULL), 0);

	tok_close(s);
	assert_int_equal(sqlite3_vfs_unregister(&nowal_vfs), SQLITE_OK);
	assert_int_equal(sqlite3_vfs_register(unix_vfs, 1), SQLITE_OK);
	*strrchr(dir, '/') = 0;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* A disk that fails and then comes back: the default VFS with every read, write, sync and shared-memory map
 * failing with SQLITE_IOERR while fault_on is set. The store must report -EIO then, and work again, with no
 * reopen by its user, once the disk is fine. */
static int fault_on;
static struct {
	const sqlite3_io_methods *orig;
	sqlite3_io_methods copy;
} fault_io[8];

static const sqlite3_io_methods *fault_orig(sqlite3_file *f)
{
	for (size_t i = 0; i < sizeof fault_io / sizeof fault_io[0]; i++)
		if (fault_io[i].orig && f->pMethods == &fault_io[i].copy)
			return fault_io[i].orig;
	fail_msg("unknown io methods");
	return NULL;
}

static int fault_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off)
{
	return fault_on ? SQLITE_IOERR_READ : fault_orig(f)->xRead(f, p, n, off);
}

static int fault_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
	return fault_on ? SQLITE_IOERR_WRITE : fault_orig(f)->xWrite(f, p, n, off);
}

static int fault_sync(sqlite3_file *f, int flags)
{
	return fault_on ? SQLITE_IOERR_FSYNC : fault_orig(f)->xSync(f, flags);
}

static int fault_shm_map(sqlite3_file *f, int pg, int sz, int extend, void volatile **pp)
{
	return fault_on ? SQLITE_IOERR_SHMMAP : fault_orig(f)->xShmMap(f, pg, sz, extend, pp);
}

static sqlite3_vfs fault_vfs;

static int fault_open(sqlite3_vfs *v, sqlite3_filename name, sqlite3_file *f, int flags, int *oflags)
{
	int rc = unix_vfs->xOpen(unix_vfs, name, f, flags, oflags);
	(void)v;
	if (rc != SQLITE_OK || !f->pMethods)
		return rc;
	for (size_t i = 0; i < sizeof fault_io / sizeof fault_io[0]; i++) {
		if (!fault_io[i].orig) {
			fault_io[i].orig = f->pMethods;
			fault_io[i].copy = *f->pMethods;
			fault_io[i].copy.xRead = fault_read;
			fault_io[i].copy.xWrite = fault_write;
			fault_io[i].copy.xSync = fault_sync;
			if (f->pMethods->iVersion >= 2 && f->pMethods->xShmMap)
				fault_io[i].copy.xShmMap = fault_shm_map;
		}
		if (fault_io[i].orig == f->pMethods) {
			f->pMethods = &fault_io[i].copy;
			return rc;
		}
	}
	fail_msg("more io method tables than expected");
	return rc;
}

static void test_recovers_after_io_error(void **st)
{
	char dir[64], err[256], tok[TOK_TOKEN_MAX], tok2[TOK_TOKEN_MAX], cmd[200];
	tok_store *s;
	tok_tunnel t, v;
	(void)st;

	unix_vfs = sqlite3_vfs_find("unix");
	assert_non_null(unix_vfs);
	fault_vfs = *unix_vfs;
	fault_vfs.zName = "test-fault";
	fault_vfs.xOpen = fault_open;
	assert_int_equal(sqlite3_vfs_register(&fault_vfs, 1), SQLITE_OK);
	strcpy(dir, "/tmp/postern-tokeio-XXXXXX");
	assert_non_null(mkdtemp(dir));
	strcat(dir, "/state");
	assert_int_equal(tok_open(dir, "edge.example", &s, err, sizeof err), 0);
	assert_int_equal(tok_create(s, "a", &t, tok), 0);
	assert_int_equal(tok_verify(s, tok, &v), 0);
	assert_string_equal(tok_errstr(s), "no error");

	/* The disk fails: each call says so (not "wrong token", not "no such tunnel"). */
	fault_on = 1;
	assert_int_equal(tok_create(s, "b", &t, tok2), -EIO);
	assert_int_equal(tok_verify(s, tok, &v), -EIO);
	assert_int_equal(tok_get_by_id(s, t.id, NULL), -EIO);
	assert_int_equal(tok_rotate(s, "a", 0, &t, tok2), -EIO);
	assert_non_null(strstr(tok_errstr(s), "I/O")); /* the failure itself, not the ROLLBACK after it */

	/* It comes back: the same handle answers again, reads and writes, and the last error is gone. */
	fault_on = 0;
	assert_int_equal(tok_verify(s, tok, &v), 0);
	assert_string_equal(v.name, "a");
	assert_string_equal(tok_errstr(s), "no error");
	assert_int_equal(tok_get_by_id(s, v.id, NULL), 0);
	assert_int_equal(tok_get(s, "b", &t), -ENOENT); /* the failed create left nothing */
	assert_int_equal(tok_create(s, "b", &t, tok2), 0);
	assert_int_equal(tok_verify(s, tok2, &v), 0);
	assert_string_equal(v.name, "b");

	/* A failure in the middle of a commit, then recovery, once more. */
	fault_on = 1;
	assert_int_equal(tok_delete(s, "b"), -EIO);
	fault_on = 0;
	assert_int_equal(tok_verify(s, tok2, &v), 0); /* the delete did not happen */
	assert_int_equal(tok_delete(s, "b"), 0);
	assert_int_equal(tok_verify(s, tok2, &v), -EACCES);

	tok_close(s);
	assert_int_equal(sqlite3_vfs_unregister(&fault_vfs), SQLITE_OK);
	assert_int_equal(sqlite3_vfs_register(unix_vfs, 1), SQLITE_OK);
	*strrchr(dir, '/') = 0;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* The database file overwritten under an open handle (what the /ready test of tests/e2e/metrics.test.mjs does)
 * and then restored: the handle's calls fail while it is garbage and answer again once it is whole. SQLite
 * keeps a connection that saw a broken file failed, so the store reopens it. */
static void test_recovers_after_file_restored(void **st)
{
	struct fx *f = *st;
	char path[128], tok[TOK_TOKEN_MAX];
	tok_tunnel t, v;
	sqlite3 *h;
	FILE *fp;
	long n;
	char *saved, *junk;

	assert_int_equal(tok_create(f->s, "a", &t, tok), 0);
	snprintf(path, sizeof path, "%s/tunnels.db", f->dir);
	assert_int_equal(sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_exec(h, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(h);
	assert_non_null(fp = fopen(path, "r+b"));
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	assert_true(n > 0);
	saved = malloc((size_t)n);
	junk = malloc((size_t)n);
	memset(junk, 0x55, (size_t)n);
	rewind(fp);
	assert_int_equal(fread(saved, 1, (size_t)n, fp), (size_t)n);
	rewind(fp);
	assert_int_equal(fwrite(junk, 1, (size_t)n, fp), (size_t)n);
	fflush(fp);

	assert_int_equal(tok_verify(f->s, tok, &v), -EIO);
	assert_int_equal(tok_get_by_id(f->s, t.id, NULL), -EIO);

	rewind(fp);
	assert_int_equal(fwrite(saved, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	assert_int_equal(tok_verify(f->s, tok, &v), 0);
	assert_string_equal(v.id, t.id);
	assert_int_equal(tok_get_by_id(f->s, t.id, NULL), 0);
	assert_int_equal(tok_get_by_id(f->s, "0readyprobe0", NULL), -ENOENT);
	assert_string_equal(tok_errstr(f->s), "no error");
	free(saved);
	free(junk);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_verify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rotate_grace, setup, teardown),
		cmocka_unit_test_setup_teardown(test_token_fingerprints, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_never_reuses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_handles_share_state, setup, teardown),
		cmocka_unit_test(test_verify_locked_fails_fast),
		cmocka_unit_test(test_recovers_after_io_error),
		cmocka_unit_test_setup_teardown(test_recovers_after_file_restored, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
