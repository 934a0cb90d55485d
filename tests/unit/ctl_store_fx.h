/* Shared by test_ctl_store.c (the battery every store passes) and test_ctl_redis.c (the Redis store's own
 * cases): a redis-server of the test's own on a free loopback port (appendonly, appendfsync always, in a temp
 * dir; missing redis-server fails naming the Debian package), and the fixture: a fresh store with one
 * environment per case, and helpers that enqueue, poll and claim work items. */
#ifndef POSTERN_TEST_CTL_STORE_FX_H
#define POSTERN_TEST_CTL_STORE_FX_H
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

#define FX_FN static __attribute__((unused))

/* ---- a redis-server of our own ----------------------------------------------------------------------------- */

static struct {
	pid_t pid;
	int port;
	char dir[64];
	char url[64];
} rs;

FX_FN int free_port(void)
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

FX_FN void msleep(unsigned ms)
{
	struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
	while (nanosleep(&t, &t) && errno == EINTR)
		;
}

FX_FN int redis_ping(void)
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

FX_FN int redis_start(void)
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

FX_FN void redis_stop(int sig)
{
	if (rs.pid > 0) {
		kill(rs.pid, SIGCONT);
		kill(rs.pid, sig);
		waitpid(rs.pid, NULL, 0);
	}
	rs.pid = 0;
}

FX_FN void rm_rf(const char *dir)
{
	char cmd[200];
	if (dir[0] == '/' && !strncmp(dir, "/tmp/postern-ctl-", 17)) {
		snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "test_ctl_store: could not remove %s\n", dir);
	}
}

FX_FN int redis_group_setup(void **st)
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
	else if (rc) {
		char log[128], line[512];
		snprintf(log, sizeof log, "%s/redis.log", rs.dir);
		fprintf(stderr, "test_ctl_store: redis-server on port %d did not start (%s); its log:\n", rs.port,
			strerror(-rc));
		FILE *fp = fopen(log, "r");
		while (fp && fgets(line, sizeof line, fp))
			fputs(line, stderr);
		if (fp)
			fclose(fp);
	}
	if (rc) {
		rm_rf(rs.dir);
		return -1;
	}
	return 0;
}

FX_FN int redis_group_teardown(void **st)
{
	(void)st;
	redis_stop(SIGTERM);
	rm_rf(rs.dir);
	return 0;
}

FX_FN void redis_flush(void)
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

FX_FN int fx_teardown(void **state);

FX_FN int fx_setup(void **state)
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
	rc = ctl_store_open(!strcmp(kind, "redis") ? rs.url : "sqlite", f->dir, NULL, &f->s, f->err, sizeof f->err);
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

FX_FN int fx_teardown(void **state)
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
FX_FN void enqueue(fx *f, const char *env, char *id, json_t *metadata)
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

FX_FN const char *jstr(json_t *o, const char *k) { return json_string_value(json_object_get(o, k)); }

/* A token for one poll: kid (40 bytes) a fresh key id, the hash random, the secret the fixed test one. */
FX_FN void fx_token(ctl_token *t, char *kid)
{
	char r[40];
	ctl_new_id("key", kid, 40);
	ctl_new_id("rnd", r, sizeof r);
	memset(t, 0, sizeof *t);
	memcpy(t->hash, r + 4, 26); /* 26 random base32 characters: unique enough for a test */
	t->secret = "c2VjcmV0LW9mLXRoZS1pdGVt";
	t->key_id = kid;
}

/* Polls once; the work id into id ("" for none). A delivered item carries the poll's token, live. */
FX_FN void poll1(fx *f, const char *worker, uint64_t reclaim_ms, char *id)
{
	json_t *w = NULL;
	ctl_token t;
	char kid[40], name[64];
	fx_token(&t, kid);
	assert_int_equal(OPS(f)->work_poll(f->s, f->env, worker, reclaim_ms, &t, &w, f->err, sizeof f->err), 0);
	id[0] = 0;
	if (w) {
		snprintf(id, 40, "%s", jstr(w, "id"));
		assert_string_equal(jstr(w, "secret"), "c2VjcmV0LW9mLXRoZS1pdGVt");
		assert_string_equal(jstr(w, "state"), "queued");
		assert_int_equal(OPS(f)->key_check(f->s, "session", t.hash, NULL, 0, NULL, 0, name, sizeof name), 0);
		assert_string_equal(name, id);
	}
	json_decref(w);
}

FX_FN void work_state(fx *f, const char *id, const char *want)
{
	json_t *w = NULL;
	assert_int_equal(OPS(f)->work_get(f->s, f->env, id, &w, f->err, sizeof f->err), 0);
	assert_string_equal(jstr(w, "state"), want);
	assert_true(json_is_null(json_object_get(w, "secret"))); /* only poll hands it out */
	json_decref(w);
}

FX_FN void claim(fx *f, char *id)
{
	char got[40];
	enqueue(f, f->env, id, NULL);
	poll1(f, "w1", 60000, got);
	assert_string_equal(got, id);
	assert_int_equal(OPS(f)->work_ack(f->s, f->env, id, f->err, sizeof f->err), 0);
}

#endif
