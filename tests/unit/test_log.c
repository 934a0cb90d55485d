/* core/log: logfmt lines, quoting of peer values, and JSON lines derived from the same fragments. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "core/cfg.h"
#include "core/log.h"

/* Runs fn with stderr sent to a file; returns what was written (malloc'd). */
static char *capture(void (*fn)(void))
{
	char path[] = "/tmp/postern-log-XXXXXX";
	int fd = mkstemp(path), saved = dup(STDERR_FILENO);
	char *text = calloc(1, 65536);
	ssize_t n;
	assert_true(fd >= 0 && saved >= 0 && text);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	fn();
	dup2(saved, STDERR_FILENO);
	close(saved);
	n = pread(fd, text, 65535, 0);
	close(fd);
	unlink(path);
	assert_true(n >= 0);
	return text;
}

static void emit_sample(void)
{
	char q[256];
	log_info("msg=\"request\" route=docs status=200 ms=3.5 neg=-4 client=%s",
		 log_quote("1.2.3.4:5 evil=1 \"x\"\n", q, sizeof q));
	log_warn("msg=\"bytes\" host=%s", log_quote("caf\xc3\xa9 \xff\xfe", q, sizeof q));
	log_error("msg=\"a caller forgot to quote\" host=a b");
	log_debug("msg=\"not shown at info\"");
}

static void test_logfmt_line(void **st)
{
	char *t;
	(void)st;
	log_set_format(LOG_FMT_LOGFMT);
	log_set_level(LOG_INFO);
	log_set_component("unit");
	t = capture(emit_sample);
	assert_non_null(strstr(t, " level=info comp=unit msg=\"request\" route=docs status=200 ms=3.5 neg=-4 "
				  "client=\"1.2.3.4:5 evil=1 \\\"x\\\"\\x0a\"\n"));
	assert_null(strstr(t, "not shown"));
	/* three events, three lines */
	{
		int lines = 0;
		for (char *p = t; *p; p++)
			lines += *p == '\n';
		assert_int_equal(lines, 3);
	}
	free(t);
}

static void test_json_lines(void **st)
{
	char *t, *line, *save = NULL;
	json_t *o[3];
	int n = 0;
	(void)st;
	log_set_format(LOG_FMT_JSON);
	log_set_level(LOG_INFO);
	log_set_component("unit");
	t = capture(emit_sample);
	log_set_format(LOG_FMT_LOGFMT);
	for (line = strtok_r(t, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_error_t e;
		assert_true(n < 3);
		o[n] = json_loads(line, 0, &e);
		if (!o[n])
			fail_msg("not JSON: %s (%s)", line, e.text);
		n++;
	}
	assert_int_equal(n, 3);
	assert_string_equal(json_string_value(json_object_get(o[0], "level")), "info");
	assert_string_equal(json_string_value(json_object_get(o[0], "comp")), "unit");
	assert_int_equal(strlen(json_string_value(json_object_get(o[0], "time"))), 24);
	assert_string_equal(json_string_value(json_object_get(o[0], "msg")), "request");
	assert_string_equal(json_string_value(json_object_get(o[0], "route")), "docs");
	assert_int_equal(json_integer_value(json_object_get(o[0], "status")), 200);
	assert_int_equal(json_integer_value(json_object_get(o[0], "neg")), -4);
	assert_true(json_real_value(json_object_get(o[0], "ms")) == 3.5);
	/* the peer's value is one string, decoded: its "evil=1" is not a key */
	assert_string_equal(json_string_value(json_object_get(o[0], "client")), "1.2.3.4:5 evil=1 \"x\"\n");
	assert_null(json_object_get(o[0], "evil"));
	/* valid UTF-8 stays, other bytes become \xNN text */
	assert_string_equal(json_string_value(json_object_get(o[1], "host")), "caf\xc3\xa9 \\xff\\xfe");
	/* an unquoted value is kept as raw text and says so */
	assert_string_equal(json_string_value(json_object_get(o[2], "msg")), "log line not in key=value form");
	assert_non_null(strstr(json_string_value(json_object_get(o[2], "raw")), "host=a b"));
	assert_string_equal(json_string_value(json_object_get(o[2], "level")), "error");
	for (int i = 0; i < n; i++)
		json_decref(o[i]);
	free(t);
}

static void test_config_keys(void **st)
{
	char err[256];
	int lvl = -1, fmt = -1;
	const char *y = "log_level: warn\nlog_format: json\n";
	cfg_doc *d = cfg_load_string("t.yaml", y, strlen(y), err, sizeof err);
	(void)st;
	assert_non_null(d);
	assert_int_equal(log_config_read(d, cfg_root(d), &lvl, &fmt), 0);
	assert_int_equal(lvl, LOG_WARN);
	assert_int_equal(fmt, LOG_FMT_JSON);
	cfg_free(d);
	y = "log_format: xml\n";
	d = cfg_load_string("t.yaml", y, strlen(y), err, sizeof err);
	assert_int_equal(log_config_read(d, cfg_root(d), &lvl, &fmt), -EINVAL);
	assert_string_equal(cfg_error(d), "t.yaml:1: log_format: 'xml' is not one of logfmt, json");
	cfg_free(d);
	y = "log_level: loud\n";
	d = cfg_load_string("t.yaml", y, strlen(y), err, sizeof err);
	assert_int_equal(log_config_read(d, cfg_root(d), &lvl, &fmt), -EINVAL);
	assert_non_null(strstr(cfg_error(d), "t.yaml:1: log_level: 'loud' is not one of"));
	cfg_free(d);
	assert_int_equal(log_format_parse("logfmt"), LOG_FMT_LOGFMT);
	assert_int_equal(log_format_parse("JSON"), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_logfmt_line),
		cmocka_unit_test(test_json_lines),
		cmocka_unit_test(test_config_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
