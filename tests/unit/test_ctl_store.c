/* One battery of store-level cases (ctl_store.h) run against every store this build has: SQLite in a temp
 * dir, and Redis on a redis-server this test starts on a free loopback port (appendonly, appendfsync always,
 * in a temp dir) and stops. Then the Redis store's own cases: a dead or hung server, reconnect after a
 * restart with the data kept, two handles (two control replicas) on one queue. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "control/ctl_redis.h"
#include "control/ctl_store.h"

/* ---- a redis-server of our own ----------------------------------------------------------------------------- */

static struct {
	pid_t pid;
	int port;
	char dir[64];
	char url[64];
} rs;

static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM, 0), port = -ENOENT;
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &l) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

static void msleep(unsigned ms)
{
	struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&t, &t) && errno == EINTR)
		;
}

static int redis_ping(void)
{
	struct timeval tv = {0, 200000};
	redisContext *c = redisConnectWithTimeout("127.0.0.1", rs.port, tv);
	int ok = 0;
	if (c && !c->err) {
		redisReply *r = redisCommand(c, "PING");
		ok = r && r->type == REDIS_REPLY_STATUS;
		if (r)
			freeReplyObject(r);
	}
	if (c)
		redisFree(c);
	return ok;
}

static int redis_start(void)
{
	char port[16], log[128];
	snprintf(port, sizeof port, "%d", rs.port);
	snprintf(log, sizeof log, "%s/redis.log", rs.dir);
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
		       "--appendonly", "yes", "--appendfsync", "always", "--dir", rs.dir, "--daemonize", "no",
		       (char *)NULL);
		_exit(127);
	}
	rs.pid = pid;
	for (int i = 0; i < 100; i++) { /* up to 5 s */
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			rs.pid = 0;
			return WIFEXITED(st) && WEXITSTATUS(st) == 127 ? -ENOENT : -EIO;
		}
		if (redis_ping())
			return 0;
		msleep(50);
	}
	return -ETIMEDOUT;
}

static void redis_stop(int sig)
{
	if (rs.pid > 0) {
		kill(rs.pid, SIGCONT);
		kill(rs.pid, sig);
		waitpid(rs.pid, NULL, 0);
	}
	rs.pid = 0;
}

static int redis_group_setup(void **st)
{
	(void)st;
	rs.port = free_port();
	snprintf(rs.dir, sizeof rs.dir, "/tmp/postern-ctl-redis-XXXXXX");
	if (rs.port < 0 || !mkdtemp(rs.dir))
		return -1;
	snprintf(rs.url, sizeof rs.url, "redis://127.0.0.1:%d", rs.port);
	int rc = redis_start();
	if (rc == -ENOENT)
		fprintf(stderr, "test_ctl_store: redis-server is not installed: install the Debian package redis-server "
				"(scripts/deps.sh does)\n");
	else if (rc)
		fprintf(stderr, "test_ctl_store: redis-server on port %d did not start (%s; see %s/redis.log)\n", rs.port,
			strerror(-rc), rs.dir);
	return rc ? -1 : 0;
}

static void rm_rf(const char *dir)
{
	char cmd[200];
	if (dir[0] == '/' && !strncmp(dir, "/tmp/postern-ctl-", 17)) {
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "test_ctl_store: could not remove %s\n", dir);
	}
}

static int redis_group_teardown(void **st)
{
	(void)st;
	redis_stop(SIGTERM);
	rm_rf(rs.dir);
	return 0;
}

static void redis_flush(void)
{
	redisContext *c = redisConnect("127.0.0.1", rs.port);
	assert_true(c && !c->err);
	redisReply *r = redisCommand(c, "FLUSHALL");
	assert_non_null(r);
	freeReplyObject(r);
	redisFree(c);
}

/* ---- the store under test ----------------------------------------------------------------------------------- */

typedef struct fx {
	ctl_store *s;
	char dir[64];
	char env[40];
	char err[512];
} fx;

static const char *kind; /* "sqlite" or "redis" */

static int fx_teardown(void **state);

static int fx_setup(void **state)
{
	fx *f = calloc(1, sizeof *f);
	int rc = -1;
	if (!f)
		return -1;
	*state = f;
	snprintf(f->dir, sizeof f->dir, "/tmp/postern-ctl-store-XXXXXX");
	if (!mkdtemp(f->dir)) {
		f->dir[0] = 0;
		goto out;
	}
	if (!strcmp(kind, "redis"))
		redis_flush();
	rc = ctl_store_open(!strcmp(kind, "redis") ? rs.url : "sqlite", f->dir, &f->s, f->err, sizeof f->err);
	if (rc) {
		fprintf(stderr, "test_ctl_store: open %s: %s\n", kind, f->err);
		goto out;
	}
	ctl_new_id("env", f->env, sizeof f->env);
	json_t *e = json_pack("{s:s, s:s, s:s}", "id", f->env, "type", "environment", "name", "battery");
	rc = f->s->ops->env_put(f->s, f->env, e, f->err, sizeof f->err);
	json_decref(e);
out:
	if (rc) {
		fx_teardown(state);
		return -1;
	}
	return 0;
}

static int fx_teardown(void **state)
{
	fx *f = *state;
	ctl_store_close(f->s);
	if (f->dir[0])
		rm_rf(f->dir);
	free(f);
	*state = NULL;
	return 0;
}

#define OPS(f) ((f)->s->ops)

/* A work item in the API's shape; its id in id (40 bytes). */
static void enqueue(fx *f, const char *env, char *id, json_t *metadata)
{
	char ts[40], sid[40];
	ctl_new_id("work", id, 40);
	ctl_new_id("sesn", sid, sizeof sid);
	json_t *w = json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s}, s:o, s:s, s:s, s:n, s:n, s:n, s:n, s:n}", "id", id,
			      "type", "work", "environment_id", env, "created_at", ctl_now(ts, sizeof ts), "data",
			      "type", "session", "id", sid, "metadata", metadata ? metadata : json_object(), "secret",
			      "c2VjcmV0LW9mLXRoZS1pdGVt", "state", "queued", "acknowledged_at", "latest_heartbeat_at",
			      "started_at", "stop_requested_at", "stopped_at");
	assert_non_null(w);
	int rc = OPS(f)->work_enqueue(f->s, env, w, f->err, sizeof f->err);
	json_decref(w);
	assert_int_equal(rc, 0);
}

static const char *jstr(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

/* Polls once; the work id into id ("" for none). */
static void poll1(fx *f, const char *worker, uint64_t reclaim_ms, char *id)
{
	json_t *w = NULL;
	assert_int_equal(OPS(f)->work_poll(f->s, f->env, worker, reclaim_ms, &w, f->err, sizeof f->err), 0);
	id[0] = 0;
	if (w) {
		snprintf(id, 40, "%s", jstr(w, "id"));
		assert_string_equal(jstr(w, "secret"), "c2VjcmV0LW9mLXRoZS1pdGVt");
		assert_string_equal(jstr(w, "state"), "queued");
	}
	json_decref(w);
}

static void work_state(fx *f, const char *id, const char *want)
{
	json_t *w = NULL;
	assert_int_equal(OPS(f)->work_get(f->s, f->env, id, &w, f->err, sizeof f->err), 0);
	assert_string_equal(jstr(w, "state"), want);
	assert_true(json_is_null(json_object_get(w, "secret"))); /* only poll hands it out */
	json_decref(w);
}

static void test_enqueue_poll_ack(void **state)
{
	fx *f = *state;
	char a[40], b[40], c[40], got[40];
	enqueue(f, f->env, a, NULL);
	enqueue(f, f->env, b, NULL);
	enqueue(f, f->env, c, NULL);
	poll1(f, "w1", 60000, got);
	assert_string_equal(got, a); /* oldest first */
	poll1(f, "w1", 60000, got);
	assert_string_equal(got, b); /* a is delivered and not old enough to be re-offered */
	assert_int_equal(OPS(f)->work_ack(f->s, f->env, a, f->err, sizeof f->err), 0);
	work_state(f, a, "starting");
	assert_int_equal(OPS(f)->work_ack(f->s, f->env, a, f->err, sizeof f->err), -EINVAL);
	/* an undelivered item can be acknowledged too (the poll answer was lost on the way) */
	assert_int_equal(OPS(f)->work_ack(f->s, f->env, c, f->err, sizeof f->err), 0);
	poll1(f, "w1", 60000, got);
	assert_string_equal(got, ""); /* a and c acknowledged, b delivered */
	json_t *w = NULL;
	assert_int_equal(OPS(f)->work_get(f->s, f->env, a, &w, f->err, sizeof f->err), 0);
	assert_non_null(jstr(w, "acknowledged_at"));
	assert_string_equal(jstr(w, "environment_id"), f->env);
	assert_string_equal(jstr(json_object_get(w, "data"), "type"), "session");
	json_decref(w);
	/* another environment's id, an unknown id */
	assert_int_equal(OPS(f)->work_get(f->s, "env_nosuch", a, &w, f->err, sizeof f->err), -ENOENT);
	assert_int_equal(OPS(f)->work_ack(f->s, f->env, "work_nosuch", f->err, sizeof f->err), -ENOENT);
	assert_int_equal(OPS(f)->work_poll(f->s, "env_nosuch", "w1", 0, &w, f->err, sizeof f->err), 0);
	assert_null(w);
}

static void test_reoffer_after_reclaim(void **state)
{
	fx *f = *state;
	char a[40], got[40];
	enqueue(f, f->env, a, NULL);
	poll1(f, "w1", 5000, got);
	assert_string_equal(got, a);
	poll1(f, "w2", 5000, got);
	assert_string_equal(got, ""); /* delivered 0 s ago: not yet */
	msleep(300);
	poll1(f, "w2", 200, got);
	assert_string_equal(got, a); /* the ack never came: offered again */
	poll1(f, "w3", 5000, got);
	assert_string_equal(got, ""); /* and delivered to w2 now */
	assert_int_equal(OPS(f)->work_ack(f->s, f->env, a, f->err, sizeof f->err), 0);
	msleep(300);
	poll1(f, "w3", 200, got);
	assert_string_equal(got, ""); /* acknowledged: never again */
}

static void test_no_double_delivery(void **state)
{
	fx *f = *state;
	enum { N = 24 };
	char ids[N][40], got[40];
	int seen[N] = {0}, polls = 0;
	for (int i = 0; i < N; i++)
		enqueue(f, f->env, ids[i], NULL);
	for (int i = 0; i < 4 * N; i++) {
		poll1(f, i % 2 ? "wa" : "wb", 60000, got);
		if (!got[0])
			break;
		polls++;
		int k = -1;
		for (int j = 0; j < N; j++)
			if (!strcmp(ids[j], got))
				k = j;
		assert_true(k >= 0);
		seen[k]++;
		assert_int_equal(OPS(f)->work_ack(f->s, f->env, got, f->err, sizeof f->err), 0);
	}
	assert_int_equal(polls, N);
	for (int j = 0; j < N; j++)
		assert_int_equal(seen[j], 1);
}

static void claim(fx *f, char *id)
{
	char got[40];
	enqueue(f, f->env, id, NULL);
	poll1(f, "w1", 60000, got);
	assert_string_equal(got, id);
	assert_int_equal(OPS(f)->work_ack(f->s, f->env, id, f->err, sizeof f->err), 0);
}

static void test_heartbeat(void **state)
{
	fx *f = *state;
	char a[40], q[40], got[40], first[40];
	ctl_lease l;
	enqueue(f, f->env, q, NULL);
	/* not acknowledged: no lease to take */
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, q, "NO_HEARTBEAT", 30, &l, f->err, sizeof f->err), -ESTALE);
	assert_string_equal(l.state, "queued");
	poll1(f, "w1", 60000, got);
	assert_string_equal(got, q);
	assert_int_equal(OPS(f)->work_ack(f->s, f->env, q, f->err, sizeof f->err), 0);
	snprintf(a, sizeof a, "%s", q);
	/* a heartbeat that was never given */
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, a, "2026-01-01T00:00:00.000000Z", 30, &l, f->err,
						sizeof f->err),
			 -ESTALE);
	assert_string_equal(l.state, "starting");
	assert_string_equal(l.last_heartbeat, "");
	assert_false(l.lease_extended);
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, a, "NO_HEARTBEAT", 30, &l, f->err, sizeof f->err), 0);
	assert_string_equal(l.state, "active");
	assert_true(l.lease_extended);
	assert_int_equal(l.ttl_seconds, 30);
	assert_int_equal(strlen(l.last_heartbeat), 27); /* 2026-12-07T15:04:05.123456Z */
	snprintf(first, sizeof first, "%s", l.last_heartbeat);
	/* a second first beat: someone else holds it now; 412 with the lease as it is */
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, a, "NO_HEARTBEAT", 60, &l, f->err, sizeof f->err), -ESTALE);
	assert_string_equal(l.state, "active");
	assert_string_equal(l.last_heartbeat, first);
	assert_int_equal(l.ttl_seconds, 30);
	assert_false(l.lease_extended);
	/* echo: extended, a new value; the old one is stale from now on */
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, a, first, 45, &l, f->err, sizeof f->err), 0);
	assert_true(l.lease_extended);
	assert_int_equal(l.ttl_seconds, 45);
	assert_string_not_equal(l.last_heartbeat, first);
	char second[40];
	snprintf(second, sizeof second, "%s", l.last_heartbeat);
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, a, first, 45, &l, f->err, sizeof f->err), -ESTALE);
	assert_string_equal(l.last_heartbeat, second);
	json_t *w = NULL;
	assert_int_equal(OPS(f)->work_get(f->s, f->env, a, &w, f->err, sizeof f->err), 0);
	assert_string_equal(jstr(w, "state"), "active");
	assert_string_equal(jstr(w, "latest_heartbeat_at"), second);
	assert_non_null(jstr(w, "started_at"));
	json_decref(w);
	assert_int_equal(OPS(f)->work_heartbeat(f->s, "env_nosuch", a, second, 45, &l, f->err, sizeof f->err), -ENOENT);
}

static void test_stop(void **state)
{
	fx *f = *state;
	char a[40], b[40];
	ctl_lease l;
	claim(f, a);
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, a, "NO_HEARTBEAT", 30, &l, f->err, sizeof f->err), 0);
	assert_int_equal(OPS(f)->work_stop(f->s, f->env, a, false, f->err, sizeof f->err), 0);
	work_state(f, a, "stopping");
	/* the worker learns it on its next beat: not extended */
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, a, l.last_heartbeat, 30, &l, f->err, sizeof f->err), 0);
	assert_string_equal(l.state, "stopping");
	assert_false(l.lease_extended);
	assert_int_equal(OPS(f)->work_stop(f->s, f->env, a, true, f->err, sizeof f->err), 0);
	work_state(f, a, "stopped");
	assert_int_equal(OPS(f)->work_stop(f->s, f->env, a, true, f->err, sizeof f->err), -EALREADY);
	assert_int_equal(OPS(f)->work_stop(f->s, f->env, a, false, f->err, sizeof f->err), -EALREADY);
	json_t *w = NULL;
	assert_int_equal(OPS(f)->work_get(f->s, f->env, a, &w, f->err, sizeof f->err), 0);
	assert_non_null(jstr(w, "stop_requested_at"));
	assert_non_null(jstr(w, "stopped_at"));
	json_decref(w);
	/* a queued item has nobody to stop gracefully: stopped, and out of the queue */
	enqueue(f, f->env, b, NULL);
	assert_int_equal(OPS(f)->work_stop(f->s, f->env, b, false, f->err, sizeof f->err), 0);
	work_state(f, b, "stopped");
	char got[40];
	poll1(f, "w1", 0, got);
	assert_string_equal(got, "");
	assert_int_equal(OPS(f)->work_stop(f->s, f->env, "work_nosuch", true, f->err, sizeof f->err), -ENOENT);
}

static void test_expire(void **state)
{
	fx *f = *state;
	char a[40], b[40], c[40], d[40], got[40], hb[40];
	ctl_lease l;
	claim(f, a); /* beaten with a 1 s lease */
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, a, "NO_HEARTBEAT", 1, &l, f->err, sizeof f->err), 0);
	snprintf(hb, sizeof hb, "%s", l.last_heartbeat);
	claim(f, b); /* acknowledged, never beaten */
	claim(f, c); /* beaten with a long lease */
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, c, "NO_HEARTBEAT", 600, &l, f->err, sizeof f->err), 0);
	claim(f, d); /* asked to stop, then gone */
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, d, "NO_HEARTBEAT", 1, &l, f->err, sizeof f->err), 0);
	assert_int_equal(OPS(f)->work_stop(f->s, f->env, d, false, f->err, sizeof f->err), 0);
	assert_int_equal(OPS(f)->work_expire(f->s, 600, f->err, sizeof f->err), 0);
	msleep(2100);
	/* lease_ttl 2 s for the never-beaten one */
	assert_int_equal(OPS(f)->work_expire(f->s, 2, f->err, sizeof f->err), 3);
	assert_int_equal(OPS(f)->work_expire(f->s, 2, f->err, sizeof f->err), 0); /* a second replica's timer */
	work_state(f, a, "queued");
	work_state(f, b, "queued");
	work_state(f, c, "active");
	work_state(f, d, "stopped");
	json_t *w = NULL;
	assert_int_equal(OPS(f)->work_get(f->s, f->env, a, &w, f->err, sizeof f->err), 0);
	assert_true(json_is_null(json_object_get(w, "latest_heartbeat_at")));
	assert_true(json_is_null(json_object_get(w, "acknowledged_at")));
	json_decref(w);
	/* the old holder's next beat is stale; another worker takes both */
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, a, hb, 1, &l, f->err, sizeof f->err), -ESTALE);
	assert_string_equal(l.state, "queued");
	poll1(f, "w2", 60000, got);
	assert_string_equal(got, a);
	poll1(f, "w2", 60000, got);
	assert_string_equal(got, b);
	assert_int_equal(OPS(f)->work_ack(f->s, f->env, a, f->err, sizeof f->err), 0);
	assert_int_equal(OPS(f)->work_heartbeat(f->s, f->env, a, "NO_HEARTBEAT", 30, &l, f->err, sizeof f->err), 0);
}

static void test_metadata(void **state)
{
	fx *f = *state;
	char a[40];
	json_t *w = NULL;
	enqueue(f, f->env, a, json_pack("{s:s, s:s}", "team", "infra", "tier", "1"));
	json_t *patch = json_pack("{s:s, s:n, s:s}", "team", "core", "tier", "new", "x");
	assert_int_equal(OPS(f)->work_update_metadata(f->s, f->env, a, patch, &w, f->err, sizeof f->err), 0);
	json_t *want = json_pack("{s:s, s:s}", "team", "core", "new", "x");
	assert_true(json_equal(json_object_get(w, "metadata"), want));
	json_decref(w);
	assert_int_equal(OPS(f)->work_get(f->s, f->env, a, &w, f->err, sizeof f->err), 0);
	assert_true(json_equal(json_object_get(w, "metadata"), want));
	json_decref(w);
	json_decref(patch);
	/* every key deleted: an empty object, not an array */
	patch = json_pack("{s:n, s:n}", "team", "new");
	assert_int_equal(OPS(f)->work_update_metadata(f->s, f->env, a, patch, &w, f->err, sizeof f->err), 0);
	assert_true(json_is_object(json_object_get(w, "metadata")));
	assert_int_equal(json_object_size(json_object_get(w, "metadata")), 0);
	json_decref(w);
	assert_int_equal(OPS(f)->work_update_metadata(f->s, f->env, "work_nosuch", patch, &w, f->err, sizeof f->err),
			 -ENOENT);
	json_decref(patch);
	json_decref(want);
}

/* Walks a list in pages of 2 and checks every id comes once, in the order made. */
typedef int (*list_fn)(fx *f, const char *after, ctl_page *p);
static void walk(fx *f, list_fn fn, char ids[][40], int n)
{
	char after[64] = "";
	int got = 0;
	for (int page = 0; page < n + 2; page++) {
		ctl_page p = {0};
		assert_int_equal(fn(f, after[0] ? after : NULL, &p), 0);
		for (size_t i = 0; i < json_array_size(p.data); i++) {
			assert_true(got < n);
			assert_string_equal(jstr(json_array_get(p.data, i), "id"), ids[got]);
			got++;
		}
		bool last = !p.next_page;
		if (p.next_page)
			snprintf(after, sizeof after, "%s", p.next_page);
		assert_true(json_array_size(p.data) == 2 || last);
		ctl_page_free(&p);
		if (last)
			break;
	}
	assert_int_equal(got, n);
}
static int list_envs(fx *f, const char *after, ctl_page *p)
{
	return OPS(f)->env_list(f->s, after, 2, p, f->err, sizeof f->err);
}
static int list_sessions(fx *f, const char *after, ctl_page *p)
{
	return OPS(f)->session_list(f->s, after, 2, p, f->err, sizeof f->err);
}
static int list_work(fx *f, const char *after, ctl_page *p)
{
	return OPS(f)->work_list(f->s, f->env, after, 2, p, f->err, sizeof f->err);
}

static void test_lists_paged(void **state)
{
	fx *f = *state;
	char envs[5][40], sess[5][40], work[5][40];
	snprintf(envs[0], 40, "%s", f->env);
	for (int i = 0; i < 5; i++) {
		if (i) {
			ctl_new_id("env", envs[i], 40);
			json_t *e = json_pack("{s:s, s:s, s:i}", "id", envs[i], "type", "environment", "n", i);
			assert_int_equal(OPS(f)->env_put(f->s, envs[i], e, f->err, sizeof f->err), 0);
			json_decref(e);
		}
		ctl_new_id("sesn", sess[i], 40);
		json_t *s = json_pack("{s:s, s:s, s:s}", "id", sess[i], "type", "session", "status", "idle");
		assert_int_equal(OPS(f)->session_put(f->s, sess[i], s, f->err, sizeof f->err), 0);
		json_decref(s);
		enqueue(f, f->env, work[i], NULL);
	}
	/* a replace keeps its place */
	json_t *e = json_pack("{s:s, s:s, s:s}", "id", envs[0], "type", "environment", "name", "renamed");
	assert_int_equal(OPS(f)->env_put(f->s, envs[0], e, f->err, sizeof f->err), 0);
	json_decref(e);
	walk(f, list_envs, envs, 5);
	walk(f, list_sessions, sess, 5);
	walk(f, list_work, work, 5);
	assert_int_equal(OPS(f)->env_get(f->s, envs[0], &e, f->err, sizeof f->err), 0);
	assert_string_equal(jstr(e, "name"), "renamed");
	json_decref(e);
	ctl_page p = {0};
	assert_int_equal(OPS(f)->env_list(f->s, "env_notacursor", 2, &p, f->err, sizeof f->err), -EINVAL);
	assert_int_equal(OPS(f)->env_get(f->s, "env_nosuch", &e, f->err, sizeof f->err), -ENOENT);
	/* sessions: get, delete */
	json_t *s = NULL;
	assert_int_equal(OPS(f)->session_get(f->s, sess[2], &s, f->err, sizeof f->err), 0);
	assert_string_equal(jstr(s, "status"), "idle");
	json_decref(s);
	assert_int_equal(OPS(f)->session_delete(f->s, sess[2], f->err, sizeof f->err), 0);
	assert_int_equal(OPS(f)->session_get(f->s, sess[2], &s, f->err, sizeof f->err), -ENOENT);
	assert_int_equal(OPS(f)->session_delete(f->s, sess[2], f->err, sizeof f->err), -ENOENT);
	memmove(sess[2], sess[3], 2 * 40);
	walk(f, list_sessions, sess, 4);
}

static void test_stats(void **state)
{
	fx *f = *state;
	char a[40], b[40], c[40], got[40];
	ctl_stats st;
	assert_int_equal(OPS(f)->work_stats(f->s, f->env, &st, f->err, sizeof f->err), 0);
	assert_int_equal(st.depth, 0);
	assert_int_equal(st.pending, 0);
	assert_string_equal(st.oldest_queued_at, "");
	enqueue(f, f->env, a, NULL);
	enqueue(f, f->env, b, NULL);
	enqueue(f, f->env, c, NULL);
	poll1(f, "w1", 60000, got);
	poll1(f, "w2", 60000, got);
	poll1(f, "w2", 60000, got);
	poll1(f, "", 60000, got); /* no worker id: counts for nobody */
	assert_int_equal(OPS(f)->work_stats(f->s, f->env, &st, f->err, sizeof f->err), 0);
	assert_int_equal(st.depth, 3);
	assert_int_equal(st.pending, 3);
	assert_int_equal(st.workers_polling, 2);
	json_t *w = NULL;
	assert_int_equal(OPS(f)->work_get(f->s, f->env, a, &w, f->err, sizeof f->err), 0);
	assert_string_equal(st.oldest_queued_at, jstr(w, "created_at"));
	json_decref(w);
	assert_int_equal(OPS(f)->work_ack(f->s, f->env, a, f->err, sizeof f->err), 0);
	assert_int_equal(OPS(f)->work_stats(f->s, f->env, &st, f->err, sizeof f->err), 0);
	assert_int_equal(st.depth, 2);
	assert_int_equal(st.pending, 2);
	assert_int_equal(OPS(f)->work_get(f->s, f->env, b, &w, f->err, sizeof f->err), 0);
	assert_string_equal(st.oldest_queued_at, jstr(w, "created_at"));
	json_decref(w);
	assert_int_equal(OPS(f)->work_stats(f->s, "env_other", &st, f->err, sizeof f->err), 0);
	assert_int_equal(st.depth, 0);
	assert_int_equal(st.workers_polling, 0);
}

static void test_events(void **state)
{
	fx *f = *state;
	char sid[40];
	uint64_t seq = 0, last = 0;
	ctl_new_id("sesn", sid, sizeof sid);
	json_t *s = json_pack("{s:s, s:s}", "id", sid, "type", "session");
	assert_int_equal(OPS(f)->session_put(f->s, sid, s, f->err, sizeof f->err), 0);
	json_decref(s);
	json_t *b1 = json_pack("[{s:s, s:i}, {s:s, s:i}, {s:s, s:i}]", "type", "user.message", "n", 1, "type",
			       "agent.message", "n", 2, "type", "agent.tool_use", "n", 3);
	assert_int_equal(OPS(f)->event_append(f->s, sid, b1, &seq, f->err, sizeof f->err), 0);
	assert_int_equal(seq, 3);
	assert_non_null(jstr(json_array_get(b1, 0), "processed_at")); /* set in the caller's objects */
	assert_int_equal(strncmp(jstr(json_array_get(b1, 2), "id"), "sevt_", 5), 0);
	json_t *b2 = json_pack("[{s:s, s:i}, {s:s, s:i}]", "type", "user.tool_result", "n", 4, "type",
			       "session.status_idle", "n", 5);
	assert_int_equal(OPS(f)->event_append(f->s, sid, b2, &seq, f->err, sizeof f->err), 0);
	assert_int_equal(seq, 5);
	/* a batch with a bad member: none of it */
	json_t *bad = json_pack("[{s:s}, i]", "type", "user.message", 7);
	assert_int_equal(OPS(f)->event_append(f->s, sid, bad, &seq, f->err, sizeof f->err), -EINVAL);
	json_decref(bad);
	json_t *ev = NULL;
	assert_int_equal(OPS(f)->event_read(f->s, sid, 0, 100, &ev, &last, f->err, sizeof f->err), 0);
	assert_int_equal(json_array_size(ev), 5);
	assert_int_equal(last, 5);
	for (size_t i = 0; i < 5; i++) {
		json_t *e = json_array_get(ev, i);
		assert_int_equal(json_integer_value(json_object_get(e, "n")), (json_int_t)i + 1);
		assert_int_equal(json_integer_value(json_object_get(e, "_seq")), (json_int_t)i + 1);
		assert_int_equal(strncmp(jstr(e, "id"), "sevt_", 5), 0);
	}
	assert_string_equal(jstr(json_array_get(ev, 3), "id"), jstr(json_array_get(b2, 0), "id"));
	json_decref(ev);
	/* resume after 3 (Last-Event-ID), with a limit */
	assert_int_equal(OPS(f)->event_read(f->s, sid, 3, 1, &ev, &last, f->err, sizeof f->err), 0);
	assert_int_equal(json_array_size(ev), 1);
	assert_int_equal(last, 4);
	assert_string_equal(jstr(json_array_get(ev, 0), "type"), "user.tool_result");
	json_decref(ev);
	assert_int_equal(OPS(f)->event_read(f->s, sid, 5, 100, &ev, &last, f->err, sizeof f->err), 0);
	assert_int_equal(json_array_size(ev), 0);
	assert_int_equal(last, 5);
	json_decref(ev);
	assert_int_equal(OPS(f)->event_append(f->s, "sesn_nosuch", b2, &seq, f->err, sizeof f->err), -ENOENT);
	json_decref(b1);
	json_decref(b2);
	/* a deleted session takes its log along */
	assert_int_equal(OPS(f)->session_delete(f->s, sid, f->err, sizeof f->err), 0);
	ev = NULL;
	int rc = OPS(f)->event_read(f->s, sid, 0, 100, &ev, &last, f->err, sizeof f->err);
	assert_true(rc == -ENOENT || (rc == 0 && json_array_size(ev) == 0));
	json_decref(ev);
}

static void test_keys(void **state)
{
	fx *f = *state;
	uint8_t h1[32], h2[32];
	char id[40], env[40];
	for (int i = 0; i < 32; i++)
		h1[i] = (uint8_t)i, h2[i] = (uint8_t)(200 - i);
	assert_int_equal(OPS(f)->key_add(f->s, "env", "key_one", "workers", f->env, h1, f->err, sizeof f->err), 0);
	assert_int_equal(OPS(f)->key_add(f->s, "api", "key_two", "platform", NULL, h2, f->err, sizeof f->err), 0);
	assert_int_equal(OPS(f)->key_add(f->s, "api", "key_one", "again", NULL, h2, f->err, sizeof f->err), -EEXIST);
	assert_int_equal(OPS(f)->key_check(f->s, "env", h1, id, sizeof id, env, sizeof env), 0);
	assert_string_equal(id, "key_one");
	assert_string_equal(env, f->env);
	assert_int_equal(OPS(f)->key_check(f->s, "api", h2, id, sizeof id, env, sizeof env), 0);
	assert_string_equal(id, "key_two");
	/* a key of the other kind, an unknown hash */
	assert_int_equal(OPS(f)->key_check(f->s, "api", h1, id, sizeof id, env, sizeof env), -ENOENT);
	h2[31] ^= 1;
	assert_int_equal(OPS(f)->key_check(f->s, "api", h2, id, sizeof id, env, sizeof env), -ENOENT);
	assert_int_equal(OPS(f)->key_revoke(f->s, "key_one", f->err, sizeof f->err), 0);
	id[0] = 0;
	assert_int_equal(OPS(f)->key_check(f->s, "env", h1, id, sizeof id, env, sizeof env), -EKEYREVOKED);
	assert_string_equal(id, "key_one"); /* which key it was, for the log */
	assert_int_equal(OPS(f)->key_revoke(f->s, "key_nosuch", f->err, sizeof f->err), -ENOENT);
}

/* ---- the Redis store's own cases ------------------------------------------------------------------------------ */

static double mono(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void test_redis_bad_url(void **state)
{
	(void)state;
	static const char *bad[] = {"redis:/x", "redis://", "redis://:6379", "redis://h:0", "redis://h:70000",
				    "redis://h:1/x", "redis://u:pw@h:1", "redis://[::1", "redis://h:12x"};
	char err[256];
	ctl_store *s = NULL;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(ctl_redis_open(bad[i], &s, err, sizeof err), -EINVAL);
		assert_null(s);
		assert_non_null(strstr(err, bad[i])); /* the message names what was wrong */
	}
}

static void test_redis_dead(void **state)
{
	(void)state;
	char url[64], err[256], addr[32];
	ctl_store *s = NULL;
	int port = free_port();
	snprintf(url, sizeof url, "redis://127.0.0.1:%d/3", port);
	snprintf(addr, sizeof addr, "127.0.0.1:%d/3", port);
	double t0 = mono();
	assert_int_equal(ctl_redis_open(url, &s, err, sizeof err), -EIO);
	assert_true(mono() - t0 < 3);
	assert_non_null(strstr(err, addr));
}

/* A hung server (SIGSTOP) costs one call its 2 s timeout, not a hang; a killed one (-9) comes back with what it
 * had acknowledged (appendfsync always), and the store reconnects by itself on the next call. */
static void test_redis_hang_restart(void **state)
{
	fx *f = *state;
	char a[40], sid[40];
	uint64_t seq;
	ctl_stats st;
	claim(f, a);
	ctl_new_id("sesn", sid, sizeof sid);
	json_t *s = json_pack("{s:s}", "id", sid);
	assert_int_equal(OPS(f)->session_put(f->s, sid, s, f->err, sizeof f->err), 0);
	json_decref(s);
	json_t *ev = json_pack("[{s:s}]", "type", "user.message");
	assert_int_equal(OPS(f)->event_append(f->s, sid, ev, &seq, f->err, sizeof f->err), 0);

	kill(rs.pid, SIGSTOP);
	double t0 = mono();
	assert_int_equal(OPS(f)->work_stats(f->s, f->env, &st, f->err, sizeof f->err), -EIO);
	assert_true(mono() - t0 < 4);
	assert_non_null(strstr(f->err, "no answer"));
	assert_non_null(strstr(f->err, rs.url + 8));
	kill(rs.pid, SIGCONT);
	assert_int_equal(OPS(f)->work_stats(f->s, f->env, &st, f->err, sizeof f->err), 0);

	redis_stop(SIGKILL);
	assert_int_equal(OPS(f)->work_stats(f->s, f->env, &st, f->err, sizeof f->err), -EIO);
	assert_non_null(strstr(f->err, rs.url + 8));
	assert_int_equal(redis_start(), 0);
	work_state(f, a, "starting");
	json_t *got = NULL;
	uint64_t last = 0;
	assert_int_equal(OPS(f)->event_read(f->s, sid, 0, 10, &got, &last, f->err, sizeof f->err), 0);
	assert_int_equal(json_array_size(got), 1);
	assert_int_equal(last, 1);
	json_decref(got);
	/* the scripts went with the old process: EVALSHA falls back to EVAL */
	assert_int_equal(OPS(f)->event_append(f->s, sid, ev, &seq, f->err, sizeof f->err), 0);
	assert_int_equal(seq, 2);
	json_decref(ev);
}

/* Two handles on one Redis are two control replicas: one queue, one lease. */
static void test_redis_two_replicas(void **state)
{
	fx *f = *state;
	enum { N = 16 };
	ctl_store *b = NULL;
	ctl_store *h[2];
	char ids[N][40], err[256];
	int seen[N] = {0}, got = 0;
	assert_int_equal(ctl_redis_open(rs.url, &b, err, sizeof err), 0);
	h[0] = f->s, h[1] = b;
	for (int i = 0; i < N; i++)
		enqueue(f, f->env, ids[i], NULL);
	for (int i = 0; i < 3 * N && got < N; i++) {
		json_t *w = NULL;
		ctl_store *p = h[i % 2], *o = h[(i + 1) % 2];
		assert_int_equal(p->ops->work_poll(p, f->env, i % 3 ? "wa" : "wb", 60000, &w, err, sizeof err), 0);
		if (!w)
			break;
		for (int j = 0; j < N; j++)
			if (!strcmp(ids[j], jstr(w, "id")))
				seen[j]++, got++;
		assert_int_equal(o->ops->work_ack(o, f->env, jstr(w, "id"), err, sizeof err), 0); /* through the other */
		json_decref(w);
	}
	assert_int_equal(got, N);
	for (int j = 0; j < N; j++)
		assert_int_equal(seen[j], 1);
	/* both replicas pass on one first beat: one wins */
	ctl_lease l0, l1;
	int r0 = h[0]->ops->work_heartbeat(h[0], f->env, ids[0], "NO_HEARTBEAT", 1, &l0, err, sizeof err);
	int r1 = h[1]->ops->work_heartbeat(h[1], f->env, ids[0], "NO_HEARTBEAT", 1, &l1, err, sizeof err);
	assert_true((r0 == 0 && r1 == -ESTALE) || (r0 == -ESTALE && r1 == 0));
	msleep(1100);
	int e0 = h[0]->ops->work_expire(h[0], 600, err, sizeof err);
	int e1 = h[1]->ops->work_expire(h[1], 600, err, sizeof err);
	assert_int_equal(e0 + e1, 1);
	work_state(f, ids[0], "queued");
	ctl_store_close(b);
}

static int redis_own_tests(void)
{
	const struct CMUnitTest t[] = {
		cmocka_unit_test(test_redis_bad_url),
		cmocka_unit_test(test_redis_dead),
		cmocka_unit_test_setup_teardown(test_redis_hang_restart, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_redis_two_replicas, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests_name("ctl_redis", t, redis_group_setup, redis_group_teardown);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

int main(void)
{
	const struct CMUnitTest battery[] = {
		T(test_enqueue_poll_ack), T(test_reoffer_after_reclaim), T(test_no_double_delivery), T(test_heartbeat),
		T(test_stop), T(test_expire), T(test_metadata), T(test_lists_paged), T(test_stats), T(test_events),
		T(test_keys),
	};
	int bad = 0;
	signal(SIGPIPE, SIG_IGN);
	/* a build without the SQLite store (a branch before it was merged) says so; every other open failure fails */
	char dir[] = "/tmp/postern-ctl-probe-XXXXXX", err[256];
	ctl_store *probe = NULL;
	int rc = mkdtemp(dir) ? ctl_store_open("sqlite", dir, &probe, err, sizeof err) : -errno;
	ctl_store_close(probe);
	rm_rf(dir);
	kind = "sqlite";
	if (rc == -ENOTSUP)
		fprintf(stderr, "test_ctl_store: this build has no SQLite store (%s): the battery runs on Redis only\n", err);
	else
		bad += cmocka_run_group_tests_name("ctl_store sqlite", battery, NULL, NULL);
	kind = "redis";
	bad += cmocka_run_group_tests_name("ctl_store redis", battery, redis_group_setup, redis_group_teardown);
	bad += redis_own_tests();
	return bad;
}
