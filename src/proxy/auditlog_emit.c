/* `postern audit emit -c FILE`: writes synthetic records through the sinks of the config's audit: mapping,
 * for tests and for an operator checking that a SIEM receives what the file holds. Its own output (an
 * "ack SEQ" line per record with --acks, and a JSON summary) goes to stderr: stdout may be a sink. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "proxy/auditlog.h"

struct emit {
	alog *l;
	const alog_config *c;
	uv_loop_t *loop;
	uv_timer_t timer;
	uv_idle_t idle;
	uint64_t count, done, kill_after, batch, max_write_ns, errors;
	size_t args_bytes;
	uint32_t drain_ms;
	bool acks;
	int rc;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: postern audit emit -c FILE [--count N] [--interval-ms MS] [--batch N] [--args-bytes N]\n"
		   "                          [--drain-ms MS] [--acks] [--kill-after N]\n\n"
		   "A test and operations tool: writes N synthetic records (tool echo, every 5th denied) through\n"
		   "the sinks of FILE's audit: mapping, BATCH records every MS milliseconds (0: as fast as the loop\n"
		   "turns), then waits up to --drain-ms (default 5000) for the queues and prints a JSON summary\n"
		   "(written, sent, dropped, max_write_us) on stderr. --acks: \"ack SEQ\" on stderr after each\n"
		   "record is in the file. --kill-after N: SIGKILL itself right after record N is acknowledged\n"
		   "(the durability test).\n");
}

static void emit_one(struct emit *e)
{
	char id[32], text[64], *pad = NULL;
	json_t *args = NULL, *red = NULL;
	uint64_t t0, ns, i = e->done;
	int rc;

	snprintf(id, sizeof id, "%" PRIu64, i + 1);
	snprintf(text, sizeof text, "record %" PRIu64, i + 1);
	if (e->args_bytes && (pad = malloc(e->args_bytes + 1))) {
		memset(pad, 'x', e->args_bytes);
		pad[e->args_bytes] = 0;
	}
	args = json_pack("{s:s,s:s,s:s}", "text", text, "password", "hunter2", "pad", pad ? pad : "");
	if (args && alog_config_log_arguments(e->c))
		redact_apply(alog_config_redact(e->c), args, &red, NULL);
	aud_rec r = { .dir = "in", .route = "emit", .client = "emit", .client_addr = "127.0.0.1:1",
		      .method = "tools/call", .id = id, .tool = "echo", .decision = i % 5 == 4 ? "deny" : "allow",
		      .rule = "default", .args = red, .status = i % 5 == 4 ? "denied" : "ok", .latency_us = 100,
		      .bytes_in = 100, .bytes_out = 200 };
	uv_timeval64_t tv;
	if (uv_gettimeofday(&tv) == 0)
		r.ts_us = tv.tv_sec * 1000000 + tv.tv_usec;
	t0 = uv_hrtime();
	rc = alog_write(e->l, &r);
	ns = uv_hrtime() - t0;
	if (ns > e->max_write_ns)
		e->max_write_ns = ns;
	e->done++;
	if (rc < 0)
		e->errors++;
	if (e->acks && rc == 0)
		fprintf(stderr, "ack %" PRIu64 "\n", e->done);
	if (e->kill_after && e->done == e->kill_after)
		raise(SIGKILL);
	json_decref(args);
	json_decref(red);
	free(pad);
}

static void drained(alog *l, void *ud)
{
	struct emit *e = ud;
	alog_stats st;
	alog_get_stats(l, &st);
	fprintf(stderr,
		"{\"emit\":\"done\",\"count\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"written\":%" PRIu64
		",\"file_errors\":%" PRIu64 ",\"rotations\":%" PRIu64 ",\"syslog_sent\":%" PRIu64
		",\"syslog_dropped\":%" PRIu64 ",\"syslog_queued\":%" PRIu64 ",\"syslog_truncated\":%" PRIu64 ",\"syslog_connects\":%" PRIu64
		",\"stdout_written\":%" PRIu64 ",\"stdout_dropped\":%" PRIu64 ",\"stdout_queued\":%" PRIu64 ",\"next_seq\":%" PRIu64
		",\"max_write_us\":%" PRIu64 "}\n",
		e->done, e->errors, st.written, st.file_errors, st.rotations, st.syslog_sent, st.syslog_dropped,
		st.syslog_queued, st.syslog_truncated, st.syslog_connects, st.stdout_written, st.stdout_dropped, st.stdout_queued, st.next_seq,
		e->max_write_ns / 1000);
	alog_free(l);
	e->l = NULL;
}

static void tick(struct emit *e)
{
	for (uint64_t k = 0; k < e->batch && e->done < e->count; k++)
		emit_one(e);
	if (e->done >= e->count) {
		uv_timer_stop(&e->timer);
		uv_idle_stop(&e->idle);
		uv_close((uv_handle_t *)&e->timer, NULL);
		uv_close((uv_handle_t *)&e->idle, NULL);
		alog_drain(e->l, e->drain_ms, drained, e);
	}
}

static void timer_cb(uv_timer_t *t) { tick(t->data); }
static void idle_cb(uv_idle_t *t) { tick(t->data); }

static bool num(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	if (!s || !*s)
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

int alog_emit_main(int argc, char **argv)
{
	struct emit e = { .count = 10, .batch = 1, .drain_ms = 5000, .rc = 0 };
	const char *path = NULL;
	uint64_t interval = 0, v;
	char err[512];
	cfg_doc *d = NULL;
	alog_config *c = NULL;
	uv_loop_t loop;
	int rc = 2;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			return 0;
		}
		if (!strcmp(a, "--acks")) {
			e.acks = true;
			continue;
		}
		if ((!strcmp(a, "-c") || !strcmp(a, "--config")) && val)
			path = val;
		else if (!strcmp(a, "--count") && num(val, &e.count))
			;
		else if (!strcmp(a, "--interval-ms") && num(val, &interval) && interval <= 60000)
			;
		else if (!strcmp(a, "--batch") && num(val, &e.batch) && e.batch >= 1)
			;
		else if (!strcmp(a, "--args-bytes") && num(val, &v) && v <= AUD_MAX_LINE)
			e.args_bytes = (size_t)v;
		else if (!strcmp(a, "--drain-ms") && num(val, &v) && v <= 600000)
			e.drain_ms = (uint32_t)v;
		else if (!strcmp(a, "--kill-after") && num(val, &e.kill_after))
			;
		else {
			fprintf(stderr, "postern audit emit: bad or incomplete option '%s'\n", a);
			usage(stderr);
			return 2;
		}
		i++;
	}
	if (!path) {
		fprintf(stderr, "postern audit emit: -c FILE is required (a config with an audit: mapping)\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (!(d = cfg_load(path, err, sizeof err))) {
		fprintf(stderr, "postern audit emit: %s\n", err);
		return 2;
	}
	if (!cfg_get(cfg_root(d), "audit")) {
		fprintf(stderr, "postern audit emit: %s: no audit: mapping\n", path);
		goto out;
	}
	if (alog_config_from_cfg(d, cfg_get(cfg_root(d), "audit"), &c) < 0) {
		fprintf(stderr, "postern audit emit: %s\n", cfg_error(d));
		goto out;
	}
	uv_loop_init(&loop);
	e.loop = &loop;
	e.c = c;
	if (!(e.l = alog_new(&loop, c, err, sizeof err))) {
		fprintf(stderr, "postern audit emit: %s\n", err);
		uv_run(&loop, UV_RUN_DEFAULT);
		uv_loop_close(&loop);
		goto out;
	}
	uv_timer_init(&loop, &e.timer);
	uv_idle_init(&loop, &e.idle);
	e.timer.data = e.idle.data = &e;
	if (e.count == 0)
		tick(&e);
	else if (interval)
		uv_timer_start(&e.timer, timer_cb, interval, interval);
	else
		uv_idle_start(&e.idle, idle_cb);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	rc = e.errors ? 1 : 0;
out:
	alog_config_free(c);
	cfg_free(d);
	return rc;
}
