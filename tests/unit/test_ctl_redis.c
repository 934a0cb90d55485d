/* The Redis store's own cases: bad URLs, a dead server, a hung one (the command timeout), a killed and
 * restarted one (reconnect, AOF keeps what was acknowledged, scripts loaded again), two handles as two
 * control replicas on one queue, and four processes racing for one queue and one lease. */
#include "ctl_store_fx.h"

#include "control/ctl_redis.h"

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
				    "redis://h:1/x", "redis://[::1", "redis://h:12x", "redis://@h:1", "redis://u@h:1?x"};
	char err[256];
	ctl_store *s = NULL;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(ctl_redis_open(bad[i], NULL, &s, err, sizeof err), -EINVAL);
		assert_null(s);
		assert_non_null(strstr(err, bad[i])); /* the message names what was wrong */
	}
	/* a password in the URL: refused, and the message does not repeat it */
	assert_int_equal(ctl_redis_open("redis://u:s3cretpw@h:1", NULL, &s, err, sizeof err), -EINVAL);
	assert_null(strstr(err, "s3cretpw"));
	assert_non_null(strstr(err, "redis_password_file"));
	assert_int_equal(ctl_redis_open("redis://:s3cretpw@h:1", NULL, &s, err, sizeof err), -EINVAL);
	assert_null(strstr(err, "s3cretpw"));
	/* a user needs a password */
	assert_int_equal(ctl_redis_open("redis://postern@h:1", NULL, &s, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "redis_password_file"));
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
	assert_int_equal(ctl_redis_open(url, NULL, &s, err, sizeof err), -EIO);
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
	assert_int_equal(ctl_redis_open(rs.url, NULL, &b, err, sizeof err), 0);
	h[0] = f->s, h[1] = b;
	for (int i = 0; i < N; i++)
		enqueue(f, f->env, ids[i], NULL);
	for (int i = 0; i < 3 * N && got < N; i++) {
		json_t *w = NULL;
		ctl_store *p = h[i % 2], *o = h[(i + 1) % 2];
		assert_int_equal(p->ops->work_poll(p, f->env, i % 3 ? "wa" : "wb", 60000, NULL, &w, err, sizeof err), 0);
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

/* Real races: four processes, each its own connection (a replica), poll one queue at once, then all four
 * send the first beat of one item at once. Every item goes to exactly one of them; one beat wins. */
static void test_redis_racing_processes(void **state)
{
	fx *f = *state;
	enum { N = 40, K = 4 };
	char ids[N][40], lead[40];
	int fds[K], seen[N] = {0}, wins = 0, got = 0;
	pid_t kids[K];
	claim(f, lead); /* acknowledged, never beaten: the beat race */
	for (int i = 0; i < N; i++)
		enqueue(f, f->env, ids[i], NULL);
	for (int k = 0; k < K; k++) {
		int p[2];
		assert_int_equal(pipe(p), 0);
		kids[k] = fork();
		assert_true(kids[k] >= 0);
		if (kids[k] == 0) {
			char err[256], worker[16], line[64];
			ctl_store *s = NULL;
			close(p[0]);
			snprintf(worker, sizeof worker, "racer%d", k);
			if (ctl_redis_open(rs.url, NULL, &s, err, sizeof err))
				_exit(2);
			for (int i = 0; i < 2 * N; i++) {
				json_t *w = NULL;
				if (s->ops->work_poll(s, f->env, worker, 60000, NULL, &w, err, sizeof err))
					_exit(3);
				if (!w)
					break;
				int n = snprintf(line, sizeof line, "%s\n", jstr(w, "id"));
				if (write(p[1], line, (size_t)n) != n)
					_exit(4);
				json_decref(w);
			}
			ctl_lease l;
			int rc = s->ops->work_heartbeat(s, f->env, lead, "NO_HEARTBEAT", 30, &l, err, sizeof err);
			if (write(p[1], rc == 0 ? "WIN\n" : rc == -ESTALE ? "LOST\n" : "ERR\n", rc == 0 ? 4 : 5) < 0)
				_exit(5);
			ctl_store_close(s);
			_exit(0);
		}
		close(p[1]);
		fds[k] = p[0];
	}
	for (int k = 0; k < K; k++) {
		char buf[8192];
		size_t len = 0;
		ssize_t n;
		while (len < sizeof buf - 1 && (n = read(fds[k], buf + len, sizeof buf - 1 - len)) > 0)
			len += (size_t)n;
		buf[len] = 0;
		close(fds[k]);
		int st;
		assert_int_equal(waitpid(kids[k], &st, 0), kids[k]);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
			if (!strcmp(line, "WIN")) {
				wins++;
				continue;
			}
			assert_string_not_equal(line, "ERR");
			if (!strcmp(line, "LOST"))
				continue;
			for (int j = 0; j < N; j++)
				if (!strcmp(ids[j], line))
					seen[j]++, got++;
		}
	}
	assert_int_equal(got, N);
	for (int j = 0; j < N; j++)
		assert_int_equal(seen[j], 1);
	assert_int_equal(wins, 1);
}

/* The server's count of changes since the last save (its dirty counter: what goes to the AOF). */
static long long redis_dirty(void)
{
	redisContext *c = redisConnect("127.0.0.1", rs.port);
	long long n = -1;
	assert_true(c && !c->err);
	redisReply *r = redisCommand(c, "INFO persistence");
	const char *p = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "rdb_changes_since_last_save:") : NULL;
	if (p)
		n = atoll(p + strlen("rdb_changes_since_last_save:"));
	if (r)
		freeReplyObject(r);
	redisFree(c);
	return n;
}

/* A long poll asks the store again every few ms: an empty poll by a worker seen a moment ago writes nothing
 * (with appendfsync always, a write would be an fsync per tick). */
static void test_redis_empty_poll_writes_nothing(void **state)
{
	fx *f = *state;
	char a[40], got[40];
	claim(f, a); /* the queue exists, and w1 has polled */
	long long before = redis_dirty();
	assert_true(before >= 0);
	for (int i = 0; i < 5; i++) {
		poll1(f, "w1", 60000, got);
		assert_string_equal(got, "");
	}
	assert_int_equal(redis_dirty(), before);
	poll1(f, "w-new", 60000, got); /* a worker not seen yet is recorded */
	assert_true(redis_dirty() > before);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	kind = "redis";
	const struct CMUnitTest t[] = {
		cmocka_unit_test(test_redis_bad_url),
		cmocka_unit_test(test_redis_dead),
		cmocka_unit_test_setup_teardown(test_redis_hang_restart, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_redis_two_replicas, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_redis_racing_processes, fx_setup, fx_teardown),
		cmocka_unit_test_setup_teardown(test_redis_empty_poll_writes_nothing, fx_setup, fx_teardown),
	};
	return cmocka_run_group_tests_name("ctl_redis", t, redis_group_setup, redis_group_teardown);
}
