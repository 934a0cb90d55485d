/* proxy/auditlog: the chain continues across rotation and across a reopen (also right after a rotation),
 * a torn last line is cut on open, the keep count, the rotated set verifies oldest first and an edit or a
 * removal in a rotated file is named, a failed write leaves no partial line and no gap, one writer per file,
 * queue overflow drops counted exactly (counter, metric, log), config errors with file:line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/admin.h"
#include "proxy/auditlog.h"

static char dir[64], path[128];
static uv_loop_t lp;

static int setup(void **st)
{
	(void)st;
	snprintf(dir, sizeof dir, "/tmp/alogtest.XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/sub/audit.jsonl", dir);
	assert_int_equal(uv_loop_init(&lp), 0);
	return 0;
}

static int teardown(void **st)
{
	char cmd[160];
	(void)st;
	assert_int_equal(uv_loop_close(&lp), 0); /* every handle closed */
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
	adm_metrics_reset();
	return 0;
}

static alog_config *config(const char *extra)
{
	char yaml[1024];
	cfg_doc *d;
	alog_config *c = NULL;
	char err[256];
	snprintf(yaml, sizeof yaml, "audit:\n  file: %s\n%s", path, extra ? extra : "");
	assert_non_null(d = cfg_load_string("t.yaml", yaml, strlen(yaml), err, sizeof err));
	if (alog_config_from_cfg(d, cfg_get(cfg_root(d), "audit"), &c) < 0)
		fail_msg("config: %s", cfg_error(d));
	cfg_free(d);
	return c;
}

static alog *open_log(alog_config *c)
{
	char err[512];
	alog *l = alog_new(&lp, c, err, sizeof err);
	if (!l)
		fail_msg("alog_new: %s", err);
	return l;
}

static void close_log(alog *l)
{
	alog_free(l);
	uv_run(&lp, UV_RUN_DEFAULT);
}

static void write_n(alog *l, int n, int from)
{
	for (int i = 0; i < n; i++) {
		char id[16];
		snprintf(id, sizeof id, "%d", from + i);
		aud_rec r = { .ts_us = 1767225600000000LL + from + i, .dir = "in", .route = "r", .method = "tools/call",
			      .id = id, .tool = "t", .decision = (from + i) % 3 ? "allow" : "deny", .status = "ok",
			      .latency_us = -1 };
		assert_int_equal(alog_write(l, &r), 0);
	}
}

static char *name(int i)
{
	static char b[8][160];
	static int k;
	char *o = b[k++ % 8];
	if (i)
		snprintf(o, 160, "%s.%d", path, i);
	else
		snprintf(o, 160, "%s", path);
	return o;
}

/* Verifies FILE.keep..FILE.1 FILE (those that exist), oldest first. */
static void verify(bool partial, aud_report *rep)
{
	aud_verify *v;
	char err[256];
	assert_int_equal(aud_verify_new(partial, &v), 0);
	for (int i = 20; i >= 0; i--)
		if (access(name(i), F_OK) == 0)
			assert_int_equal(aud_verify_file(v, name(i), err, sizeof err), 0);
	aud_verify_report(v, rep);
	aud_verify_free(v);
}

static int count_files(void)
{
	int n = 0;
	for (int i = 0; i <= 20; i++)
		n += access(name(i), F_OK) == 0;
	return n;
}

static off_t fsize(const char *p)
{
	struct stat sb;
	return stat(p, &sb) == 0 ? sb.st_size : -1;
}

static void test_rotation_and_reopen(void **st)
{
	alog_config *c = config("  rotate_bytes: 1K\n  keep: 3\n");
	alog_stats s;
	aud_report rep;
	alog *l;
	(void)st;

	l = open_log(c);
	write_n(l, 10, 0);
	alog_get_stats(l, &s);
	assert_int_equal(s.written, 10);
	assert_true(s.rotations >= 1);
	close_log(l);
	verify(false, &rep);
	assert_true(rep.ok);
	assert_int_equal(rep.lines, 10);
	assert_int_equal(rep.last_seq, 9);
	/* reopen: the chain goes on */
	l = open_log(c);
	alog_get_stats(l, &s);
	assert_int_equal(s.next_seq, 10);
	write_n(l, 40, 10);
	alog_get_stats(l, &s);
	assert_int_equal(s.next_seq, 50);
	close_log(l);
	/* keep: FILE and FILE.1..FILE.3, no more */
	assert_int_equal(count_files(), 4);
	assert_int_equal(access(name(4), F_OK), -1);
	for (int i = 0; i <= 3; i++)
		assert_true(fsize(name(i)) <= 1024);
	verify(false, &rep);
	assert_false(rep.ok); /* the oldest were deleted */
	assert_non_null(strstr(rep.what, "--partial"));
	verify(true, &rep);
	assert_true(rep.ok);
	assert_int_equal(rep.last_seq, 49);
	assert_int_equal(rep.lines, 50 - rep.first_seq);
	/* mode 0600, directory made */
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	alog_config_free(c);
}

/* A crash after FILE -> FILE.1 and before the new FILE: the restart resumes from FILE.1. */
static void test_restart_after_rotation(void **st)
{
	alog_config *c = config("  rotate_bytes: 0\n");
	aud_report rep;
	alog_stats s;
	alog *l;
	(void)st;

	l = open_log(c);
	write_n(l, 5, 0);
	close_log(l);
	assert_int_equal(rename(name(0), name(1)), 0);
	l = open_log(c);
	alog_get_stats(l, &s);
	assert_int_equal(s.next_seq, 5);
	write_n(l, 3, 5);
	close_log(l);
	verify(false, &rep);
	assert_true(rep.ok);
	assert_int_equal(rep.lines, 8);
	/* and with an empty FILE left by the crash */
	assert_int_equal(rename(name(1), name(2)), 0);
	assert_int_equal(rename(name(0), name(1)), 0);
	close(open(name(0), O_CREAT | O_WRONLY, 0600));
	l = open_log(c);
	alog_get_stats(l, &s);
	assert_int_equal(s.next_seq, 8);
	write_n(l, 2, 8);
	close_log(l);
	verify(false, &rep);
	assert_true(rep.ok);
	assert_int_equal(rep.lines, 10);
	alog_config_free(c);
}

static void test_torn_line(void **st)
{
	alog_config *c = config(NULL);
	aud_report rep;
	alog_stats s;
	alog *l;
	off_t before;
	int fd;
	(void)st;

	l = open_log(c);
	write_n(l, 4, 0);
	close_log(l);
	before = fsize(path);
	assert_true((fd = open(path, O_WRONLY | O_APPEND)) >= 0);
	assert_int_equal(write(fd, "{\"prev\":\"00", 11), 11);
	close(fd);
	verify(false, &rep);
	assert_false(rep.ok);
	assert_non_null(strstr(rep.what, "incomplete"));
	l = open_log(c);
	assert_int_equal(fsize(path), before); /* cut */
	alog_get_stats(l, &s);
	assert_int_equal(s.next_seq, 4);
	write_n(l, 1, 4);
	close_log(l);
	verify(false, &rep);
	assert_true(rep.ok);
	assert_int_equal(rep.lines, 5);
	/* a last line that is not an audit record: refused, the file is left alone */
	assert_true((fd = open(path, O_WRONLY | O_APPEND)) >= 0);
	assert_int_equal(write(fd, "hello\n", 6), 6);
	close(fd);
	char err[512];
	assert_null(alog_new(&lp, c, err, sizeof err));
	uv_run(&lp, UV_RUN_DEFAULT);
	assert_non_null(strstr(err, "not an audit record"));
	alog_config_free(c);
}

static void edit_file(const char *p, int line, const char *from, const char *to)
{
	FILE *f = fopen(p, "r");
	char buf[65536], *s, *at;
	size_t n;
	int k = 1;
	assert_non_null(f);
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	for (s = buf; k < line; k++)
		s = strchr(s, '\n') + 1;
	if (to) {
		assert_non_null(at = strstr(s, from));
		assert_int_equal(strlen(from), strlen(to));
		memcpy(at, to, strlen(to));
	} else { /* remove the line */
		char *e = strchr(s, '\n') + 1;
		memmove(s, e, strlen(e) + 1);
		n = strlen(buf);
	}
	assert_non_null(f = fopen(p, "w"));
	fwrite(buf, 1, n, f);
	fclose(f);
}

static void test_edit_in_rotated_file(void **st)
{
	alog_config *c = config("  rotate_bytes: 1K\n  keep: 20\n");
	aud_report rep;
	alog *l;
	(void)st;

	l = open_log(c);
	write_n(l, 20, 0);
	close_log(l);
	assert_true(count_files() >= 4);
	verify(false, &rep);
	assert_true(rep.ok);
	edit_file(name(2), 2, "\"route\":\"r\"", "\"route\":\"x\"");
	verify(false, &rep);
	assert_false(rep.ok);
	assert_string_equal(rep.file, name(2));
	assert_int_equal(rep.line, 2);
	assert_non_null(strstr(rep.what, "edited"));
	edit_file(name(2), 2, "\"route\":\"x\"", "\"route\":\"r\"");
	verify(false, &rep);
	assert_true(rep.ok);
	edit_file(name(3), 2, NULL, NULL);
	verify(false, &rep);
	assert_false(rep.ok);
	assert_string_equal(rep.file, name(3));
	assert_int_equal(rep.line, 2);
	assert_non_null(strstr(rep.what, "removed"));
	alog_config_free(c);
}

/* A write that fails half way (RLIMIT_FSIZE: EFBIG) is cut back; the record is in no sink and the chain
 * stays, so the next record takes its seq and the file verifies. */
static void test_failed_write(void **st)
{
	alog_config *c = config(NULL);
	struct rlimit old, lim;
	aud_report rep;
	alog_stats s;
	alog *l;
	off_t before;
	(void)st;

	l = open_log(c);
	write_n(l, 3, 0);
	before = fsize(path);
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = (rlim_t)before + 20; /* part of the next line fits */
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	aud_rec r = { .ts_us = 1, .dir = "in", .method = "tools/call", .status = "ok", .latency_us = -1 };
	assert_int_equal(alog_write(l, &r), -EFBIG);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	assert_int_equal(fsize(path), before);
	alog_get_stats(l, &s);
	assert_int_equal(s.file_errors, 1);
	assert_int_equal(s.written, 3);
	assert_int_equal(s.next_seq, 3);
	write_n(l, 2, 3);
	close_log(l);
	verify(false, &rep);
	assert_true(rep.ok);
	assert_int_equal(rep.lines, 5);
	alog_config_free(c);
}

static void test_one_writer(void **st)
{
	alog_config *c = config(NULL);
	alog *l, *l2;
	char err[512];
	(void)st;
	l = open_log(c);
	assert_null(l2 = alog_new(&lp, c, err, sizeof err));
	assert_non_null(strstr(err, "in use by another process"));
	close_log(l);
	alog_config_free(c);
}

/* A syslog receiver that refuses (nothing listens): the queue holds `queue` records, every further record is
 * dropped and counted; at shutdown the queued ones are dropped and counted too. */
static void test_queue_overflow(void **st)
{
	char extra[200];
	alog_config *c;
	alog_stats s;
	alog *l;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof sa;
	(void)st;

	/* a port that was free a moment ago */
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	close(fd);
	snprintf(extra, sizeof extra, "  syslog: tcp://127.0.0.1:%u\n  queue: 10\n", ntohs(sa.sin_port));
	c = config(extra);
	l = open_log(c);
	write_n(l, 25, 0);
	uv_run(&lp, UV_RUN_NOWAIT);
	alog_get_stats(l, &s);
	assert_int_equal(s.written, 25);
	assert_int_equal(s.syslog_sent, 0);
	assert_int_equal(s.syslog_queued, 10);
	assert_int_equal(s.syslog_dropped, 15);
	assert_int_equal(adm_value(adm_counter("postern_audit_dropped_total", "", "sink=\"syslog\"")), 15);
	assert_int_equal(adm_value(adm_counter("postern_audit_records_total", "", NULL)), 25);
	close_log(l); /* drops the 10 queued after ALOG_FLUSH_MS */
	assert_int_equal(adm_value(adm_counter("postern_audit_dropped_total", "", "sink=\"syslog\"")), 25);
	alog_config_free(c);
}

static void expect_error(const char *yaml, const char *want)
{
	char err[256];
	cfg_doc *d = cfg_load_string("t.yaml", yaml, strlen(yaml), err, sizeof err);
	alog_config *c = NULL;
	assert_non_null(d);
	assert_int_equal(alog_config_from_cfg(d, cfg_get(cfg_root(d), "audit"), &c), -EINVAL);
	assert_null(c);
	if (!strstr(cfg_error(d), want))
		fail_msg("error '%s' lacks '%s'", cfg_error(d), want);
	cfg_free(d);
}

static void test_config(void **st)
{
	char err[256];
	cfg_doc *d;
	alog_config *c = NULL;
	const char *ok = "audit:\n  file: /var/log/postern/audit.jsonl\n  log_arguments: false\n"
			 "  redact_keys: [password, token]\n  redact_values: ['sk-[a-z0-9]+']\n"
			 "  syslog: tcp://siem.internal:6514\n  syslog_facility: auth\n  rotate_bytes: 10M\n";
	(void)st;

	assert_non_null(d = cfg_load_string("t.yaml", ok, strlen(ok), err, sizeof err));
	assert_int_equal(alog_config_from_cfg(d, cfg_get(cfg_root(d), "audit"), &c), 0);
	assert_false(alog_config_log_arguments(c));
	json_t *args = json_pack("{s:s,s:s}", "password", "x", "q", "use sk-abc123 now"), *red = NULL;
	assert_int_equal(redact_apply(alog_config_redact(c), args, &red, NULL), 0);
	assert_string_equal(json_string_value(json_object_get(red, "password")), REDACT_MASK);
	assert_string_equal(json_string_value(json_object_get(red, "q")), "use [REDACTED] now");
	json_decref(args);
	json_decref(red);
	alog_config_free(c);
	cfg_free(d);
	/* no audit: no config */
	assert_non_null(d = cfg_load_string("t.yaml", "x: 1\n", 5, err, sizeof err));
	assert_int_equal(alog_config_from_cfg(d, cfg_get(cfg_root(d), "audit"), &c), 0);
	assert_null(c);
	cfg_free(d);

	expect_error("audit:\n  file: /a\n  rotate: 1\n", "t.yaml:3: unknown key 'rotate' in audit");
	expect_error("audit:\n  file: rel/a\n", "t.yaml:2: file: must be an absolute path");
	expect_error("audit:\n  file: /a\n  syslog: http://x:1\n", "t.yaml:3: syslog: 'http://x:1': must be tcp://");
	expect_error("audit:\n  file: /a\n  syslog: tcp://x:99999\n", "t.yaml:3: syslog:");
	expect_error("audit:\n  syslog: tcp://x:514\n  syslog_ca_file: /ca.pem\n", "t.yaml:3: syslog_ca_file: is only for");
	expect_error("audit:\n  file: /a\n  syslog: udp://x\n  syslog_facility: local9\n", "t.yaml:4: syslog_facility:");
	expect_error("audit:\n  file: /a\n  queue: 0\n", "t.yaml:3: queue:");
	expect_error("audit:\n  file: /a\n  keep: 0\n", "t.yaml:3: keep:");
	expect_error("audit:\n  file: /a\n  rotate_bytes: 10\n", "t.yaml:3: rotate_bytes: must be 0");
	expect_error("audit:\n  file: /a\n  redact_values: ['(']\n", "t.yaml:3: redact_values: pattern 1");
	expect_error("audit:\n  file: /a\n  max_argument_bytes: 10\n", "t.yaml:3: max_argument_bytes:");
	expect_error("audit:\n  log_arguments: true\n", "audit: no sink");
	/* preflight: the directory is under a regular file */
	char yaml[300];
	snprintf(yaml, sizeof yaml, "audit:\n  file: /etc/hostname/x/audit.jsonl\n");
	assert_non_null(d = cfg_load_string("t.yaml", yaml, strlen(yaml), err, sizeof err));
	assert_int_equal(alog_config_from_cfg(d, cfg_get(cfg_root(d), "audit"), &c), 0);
	assert_int_equal(alog_config_preflight(c, d), -EINVAL);
	assert_non_null(strstr(cfg_error(d), "t.yaml:2: audit.file: /etc/hostname: not a directory"));
	alog_config_free(c);
	cfg_free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_rotation_and_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_after_rotation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_edit_in_rotated_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_writer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_overflow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_config, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
