/* The SQLite store behind the seam (ctl_store.h): keys by hash, the queue's re-offer and ack, the lease (first
 * beat, stale beat, expiry back to the queue), stop, metadata, pages, the event log's sequence, all-or-nothing
 * batches, the file mode and reopening. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "control/ctl_store.h"

struct fx {
	char dir[64];
	ctl_store *s;
};

static int setup(void **st)
{
	struct fx *f = calloc(1, sizeof *f);
	char err[256];
	strcpy(f->dir, "/tmp/postern-ctlsq-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	strcat(f->dir, "/state");
	assert_int_equal(ctl_store_open("sqlite", f->dir, NULL, &f->s, err, sizeof err), 0);
	*st = f;
	return 0;
}

static int teardown(void **st)
{
	struct fx *f = *st;
	char cmd[160];
	ctl_store_close(f->s);
	snprintf(cmd, sizeof cmd, "rm -rf '%.*s'", (int)(strlen(f->dir) - 6), f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static json_t *work(const char *id, const char *sid)
{
	char now[40];
	return json_pack("{s:s,s:s,s:{s:s,s:s},s:s,s:s,s:s,s:{}}", "id", id, "type", "work", "data", "type", "session", "id",
			 sid, "state", "queued", "secret", "c2VjcmV0", "created_at", ctl_now(now, sizeof now), "metadata");
}

static void test_open_mode_and_ids(void **st)
{
	struct fx *f = *st;
	char p[128], id[40], now[40];
	struct stat sb;
	snprintf(p, sizeof p, "%s/control.db", f->dir);
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(stat(f->dir, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);
	assert_string_equal(f->s->ops->name, "sqlite");
	assert_int_equal(ctl_new_id("env", id, sizeof id), 0);
	assert_int_equal(strlen(id), 4 + 26);
	assert_memory_equal(id, "env_", 4);
	assert_int_equal(ctl_new_id("env", id, 20), -ENOSPC);
	ctl_now(now, sizeof now);
	assert_int_equal(strlen(now), 27); /* 2026-12-07T15:04:05.123456Z */
	assert_int_equal(now[26], 'Z');
	{
		ctl_store *x;
		char err[256];
		assert_int_equal(ctl_store_open("mongo://x", f->dir, NULL, &x, err, sizeof err), -EINVAL);
		assert_non_null(strstr(err, "not a store"));
	}
}

static void test_keys(void **st)
{
	struct fx *f = *st;
	ctl_store *s = f->s;
	uint8_t h[32], other[32];
	char id[64], env[64], err[256];
	memset(h, 7, sizeof h);
	memset(other, 8, sizeof other);
	assert_int_equal(s->ops->key_add(s, "env", "key_1", "n", "env_1", h, err, sizeof err), 0);
	assert_int_equal(s->ops->key_add(s, "env", "key_1", "n", "env_1", other, err, sizeof err), -EEXIST);
	assert_int_equal(s->ops->key_check(s, "env", h, id, sizeof id, env, sizeof env, NULL, 0), 0);
	assert_string_equal(id, "key_1");
	assert_string_equal(env, "env_1");
	assert_int_equal(s->ops->key_check(s, "api", h, id, sizeof id, NULL, 0, NULL, 0), -ENOENT); /* kinds apart */
	assert_int_equal(s->ops->key_check(s, "env", other, id, sizeof id, env, sizeof env, NULL, 0), -ENOENT);
	assert_int_equal(s->ops->key_revoke(s, "key_1", err, sizeof err), 0);
	assert_int_not_equal(s->ops->key_check(s, "env", h, id, sizeof id, env, sizeof env, NULL, 0), 0);
	assert_int_equal(s->ops->key_revoke(s, "key_nope", err, sizeof err), -ENOENT);
}

static void test_queue_and_lease(void **st)
{
	struct fx *f = *st;
	ctl_store *s = f->s;
	json_t *w = work("work_1", "sesn_1"), *got = NULL;
	char err[256], last[40];
	ctl_lease l;
	ctl_stats stt;
	assert_int_equal(s->ops->work_enqueue(s, "env_1", w, err, sizeof err), 0);
	assert_int_equal(s->ops->work_enqueue(s, "env_1", w, err, sizeof err), -EEXIST);
	json_decref(w);
	assert_int_equal(s->ops->work_stats(s, "env_1", &stt, err, sizeof err), 0);
	assert_int_equal(stt.depth, 1);
	assert_int_equal(stt.pending, 0);
	ctl_token tok = { .secret = "c2VjcmV0", .key_id = "key_sq1", .hash = { 1, 2, 3 } };
	assert_int_equal(s->ops->work_poll(s, "env_1", "w-a", 5000, &tok, &got, err, sizeof err), 0);
	assert_non_null(got);
	assert_string_equal(json_string_value(json_object_get(got, "secret")), "c2VjcmV0"); /* the poll's token */
	json_decref(got);
	/* delivered, not acked: not offered again within reclaim, offered after it */
	assert_int_equal(s->ops->work_poll(s, "env_1", "w-b", 5000, NULL, &got, err, sizeof err), 0);
	assert_null(got);
	assert_int_equal(s->ops->work_poll(s, "env_2", "w-b", 0, NULL, &got, err, sizeof err), 0);
	assert_null(got); /* another environment's queue */
	usleep(20000);
	assert_int_equal(s->ops->work_poll(s, "env_1", "w-b", 10, NULL, &got, err, sizeof err), 0);
	assert_non_null(got);
	json_decref(got);
	assert_int_equal(s->ops->work_stats(s, "env_1", &stt, err, sizeof err), 0);
	assert_int_equal(stt.pending, 1);
	assert_int_equal(stt.workers_polling, 2);
	assert_true(stt.oldest_queued_at[0] != 0);
	/* the lease */
	assert_int_equal(s->ops->work_heartbeat(s, "env_1", "work_1", "NO_HEARTBEAT", 90, &l, err, sizeof err), -ESTALE);
	assert_string_equal(l.state, "queued"); /* not acked yet */
	assert_int_equal(s->ops->work_ack(s, "env_1", "work_1", err, sizeof err), 0);
	assert_int_equal(s->ops->work_ack(s, "env_1", "work_1", err, sizeof err), -EINVAL);
	assert_int_equal(s->ops->work_poll(s, "env_1", "w-c", 0, NULL, &got, err, sizeof err), 0);
	assert_null(got); /* out of the queue */
	assert_int_equal(s->ops->work_heartbeat(s, "env_1", "work_1", "NO_HEARTBEAT", 90, &l, err, sizeof err), 0);
	assert_string_equal(l.state, "active");
	assert_true(l.lease_extended);
	assert_int_equal(l.ttl_seconds, 90);
	snprintf(last, sizeof last, "%s", l.last_heartbeat);
	assert_int_equal(s->ops->work_heartbeat(s, "env_1", "work_1", "NO_HEARTBEAT", 90, &l, err, sizeof err), -ESTALE);
	assert_string_equal(l.last_heartbeat, last);
	assert_int_equal(s->ops->work_heartbeat(s, "env_1", "work_1", last, 1, &l, err, sizeof err), 0);
	assert_string_not_equal(l.last_heartbeat, last);
	assert_int_equal(s->ops->work_get(s, "env_1", "work_1", &got, err, sizeof err), 0);
	assert_true(json_is_null(json_object_get(got, "secret")));
	assert_string_equal(json_string_value(json_object_get(got, "state")), "active");
	assert_string_equal(json_string_value(json_object_get(got, "latest_heartbeat_at")), l.last_heartbeat);
	json_decref(got);
	/* expiry: a 1 s lease runs out, the item is queued again with no lease */
	assert_int_equal(s->ops->work_expire(s, 90, err, sizeof err), 0);
	sleep(1);
	usleep(100000);
	assert_int_equal(s->ops->work_expire(s, 90, err, sizeof err), 1);
	assert_int_equal(s->ops->work_poll(s, "env_1", "w-d", 5000, NULL, &got, err, sizeof err), 0);
	assert_non_null(got);
	assert_string_equal(json_string_value(json_object_get(got, "state")), "queued");
	assert_true(json_is_null(json_object_get(got, "acknowledged_at")));
	json_decref(got);
	assert_int_equal(s->ops->work_ack(s, "env_1", "work_1", err, sizeof err), 0);
	assert_int_equal(s->ops->work_heartbeat(s, "env_1", "work_1", "NO_HEARTBEAT", 90, &l, err, sizeof err), 0);
	/* stop: graceful, seen on the next beat; then forced; then already stopped */
	assert_int_equal(s->ops->work_stop(s, "env_1", "work_1", false, err, sizeof err), 0);
	snprintf(last, sizeof last, "%s", l.last_heartbeat);
	assert_int_equal(s->ops->work_heartbeat(s, "env_1", "work_1", last, 90, &l, err, sizeof err), 0);
	assert_string_equal(l.state, "stopping");
	assert_false(l.lease_extended);
	assert_int_equal(s->ops->work_stop(s, "env_1", "work_1", true, err, sizeof err), 0);
	assert_int_equal(s->ops->work_stop(s, "env_1", "work_1", true, err, sizeof err), -EALREADY);
	assert_int_equal(s->ops->work_get(s, "env_1", "work_nope", &got, err, sizeof err), -ENOENT);
	assert_non_null(strstr(err, "work_nope"));
}

static void test_metadata_and_pages(void **st)
{
	struct fx *f = *st;
	ctl_store *s = f->s;
	char err[256], id[16];
	json_t *got = NULL, *patch;
	ctl_page p = { 0 };
	for (int i = 0; i < 5; i++) {
		json_t *w;
		snprintf(id, sizeof id, "work_%d", i);
		w = work(id, "sesn_x");
		assert_int_equal(s->ops->work_enqueue(s, "env_p", w, err, sizeof err), 0);
		json_decref(w);
	}
	patch = json_pack("{s:s,s:s}", "a", "1", "b", "2");
	assert_int_equal(s->ops->work_update_metadata(s, "env_p", "work_0", patch, &got, err, sizeof err), 0);
	json_decref(got);
	json_decref(patch);
	patch = json_pack("{s:n}", "a");
	assert_int_equal(s->ops->work_update_metadata(s, "env_p", "work_0", patch, &got, err, sizeof err), 0);
	json_decref(patch);
	assert_null(json_object_get(json_object_get(got, "metadata"), "a"));
	assert_string_equal(json_string_value(json_object_get(json_object_get(got, "metadata"), "b")), "2");
	json_decref(got);
	assert_int_equal(s->ops->work_list(s, "env_p", NULL, 2, &p, err, sizeof err), 0);
	assert_int_equal(json_array_size(p.data), 2);
	assert_non_null(p.next_page);
	assert_true(json_is_null(json_object_get(json_array_get(p.data, 0), "secret")));
	{
		char cur[32];
		snprintf(cur, sizeof cur, "%s", p.next_page);
		ctl_page_free(&p);
		assert_int_equal(s->ops->work_list(s, "env_p", cur, 10, &p, err, sizeof err), 0);
		assert_int_equal(json_array_size(p.data), 3);
		assert_null(p.next_page);
		assert_string_equal(json_string_value(json_object_get(json_array_get(p.data, 0), "id")), "work_2");
		ctl_page_free(&p);
	}
	assert_int_equal(s->ops->work_list(s, "env_p", "garbage", 10, &p, err, sizeof err), -EINVAL);
}

static void test_events(void **st)
{
	struct fx *f = *st;
	ctl_store *s = f->s;
	char err[256];
	uint64_t seq = 0, last = 0;
	json_t *sess = json_pack("{s:s,s:s}", "id", "sesn_e", "status", "idle"), *evs, *out = NULL;
	assert_int_equal(s->ops->session_put(s, "sesn_e", sess, err, sizeof err), 0);
	json_decref(sess);
	evs = json_pack("[{s:s},{s:s}]", "type", "user.message", "type", "agent.message");
	assert_int_equal(s->ops->event_append(s, "sesn_nope", evs, &seq, err, sizeof err), -ENOENT);
	assert_int_equal(s->ops->event_append(s, "sesn_e", evs, &seq, err, sizeof err), 0);
	assert_int_equal(seq, 2);
	assert_memory_equal(json_string_value(json_object_get(json_array_get(evs, 0), "id")), "sevt_", 5);
	assert_non_null(json_object_get(json_array_get(evs, 1), "processed_at"));
	json_decref(evs);
	evs = json_pack("[{s:s}]", "type", "user.interrupt");
	assert_int_equal(s->ops->event_append(s, "sesn_e", evs, &seq, err, sizeof err), 0);
	assert_int_equal(seq, 3);
	json_decref(evs);
	assert_int_equal(s->ops->event_read(s, "sesn_e", 1, 10, &out, &last, err, sizeof err), 0);
	assert_int_equal(json_array_size(out), 2);
	assert_int_equal(last, 3);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(out, 0), "_seq")), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(out, 1), "type")), "user.interrupt");
	json_decref(out);
	assert_int_equal(s->ops->event_read(s, "sesn_e", 3, 10, &out, &last, err, sizeof err), 0);
	assert_int_equal(json_array_size(out), 0);
	assert_int_equal(last, 3);
	json_decref(out);
	/* sessions: list, delete takes the log with it */
	{
		ctl_page p = { 0 };
		assert_int_equal(s->ops->session_list(s, NULL, 10, &p, err, sizeof err), 0);
		assert_int_equal(json_array_size(p.data), 1);
		ctl_page_free(&p);
	}
	assert_int_equal(s->ops->session_delete(s, "sesn_e", err, sizeof err), 0);
	assert_int_equal(s->ops->session_delete(s, "sesn_e", err, sizeof err), -ENOENT);
	assert_int_equal(s->ops->event_read(s, "sesn_e", 0, 10, &out, &last, err, sizeof err), 0);
	assert_int_equal(json_array_size(out), 0);
	json_decref(out);
}

static void test_reopen_keeps_everything(void **st)
{
	struct fx *f = *st;
	char err[256];
	json_t *e = json_pack("{s:s,s:s}", "id", "env_r", "name", "r"), *got = NULL;
	assert_int_equal(f->s->ops->env_put(f->s, "env_r", e, err, sizeof err), 0);
	json_decref(e);
	ctl_store_close(f->s);
	assert_int_equal(ctl_store_open("sqlite", f->dir, NULL, &f->s, err, sizeof err), 0);
	assert_int_equal(f->s->ops->env_get(f->s, "env_r", &got, err, sizeof err), 0);
	assert_string_equal(json_string_value(json_object_get(got, "name")), "r");
	json_decref(got);
	assert_int_equal(f->s->ops->env_get(f->s, "env_nope", &got, err, sizeof err), -ENOENT);
	{
		ctl_store *r;
		assert_int_equal(ctl_store_open("redis://127.0.0.1:1", f->dir, NULL, &r, err, sizeof err) < 0, 1);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_mode_and_ids, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_and_lease, setup, teardown),
		cmocka_unit_test_setup_teardown(test_metadata_and_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_events, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_keeps_everything, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
