#include <fcntl.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/cfg.h"
#include "core/dirs.h"

static cfg_doc *doc(const char *y)
{
	char err[256];
	cfg_doc *d = cfg_load_string("t.yaml", y, strlen(y), err, sizeof err);
	assert_non_null(d);
	return d;
}

static void test_scalars(void **st)
{
	cfg_doc *d = doc("a: hello\nn: 42\nb: true\nt: 1h30m\nsz: 2G\nl: [x, y]\n");
	char *s = NULL, **l = NULL;
	int64_t n = 0, ms = 0;
	bool b = false;
	uint64_t sz = 0;
	size_t cnt = 0;
	(void)st;
	assert_int_equal(cfg_get_str(d, cfg_root(d), "a", &s), 0);
	assert_string_equal(s, "hello");
	assert_int_equal(cfg_get_int(d, cfg_root(d), "n", 0, 100, &n), 0);
	assert_int_equal(n, 42);
	assert_int_equal(cfg_get_bool(d, cfg_root(d), "b", &b), 0);
	assert_true(b);
	assert_int_equal(cfg_get_duration_ms(d, cfg_root(d), "t", &ms), 0);
	assert_int_equal(ms, 5400000);
	assert_int_equal(cfg_get_size(d, cfg_root(d), "sz", &sz), 0);
	assert_int_equal(sz, 2ull << 30);
	assert_int_equal(cfg_get_strlist(d, cfg_root(d), "l", &l, &cnt), 0);
	assert_int_equal(cnt, 2);
	assert_string_equal(l[1], "y");
	assert_int_equal(cfg_get_str(d, cfg_root(d), "missing", &s), 1);
	free(s);
	cfg_strv_free(l);
	cfg_free(d);
}

static void test_errors_name_line_and_key(void **st)
{
	cfg_doc *d = doc("a: 1\nport: banana\nnested:\n  x: 1\n");
	int64_t n;
	static const char *const allowed[] = { "a", "port", NULL };
	(void)st;
	assert_int_equal(cfg_get_int(d, cfg_root(d), "port", 0, 65535, &n), -EINVAL);
	assert_string_equal(cfg_error(d), "t.yaml:2: port: 'banana' is not an integer");
	cfg_free(d);
	d = doc("a: 1\nport: 2\nnested:\n  x: 1\n");
	assert_int_equal(cfg_check_keys(d, cfg_root(d), "top level", allowed), -EINVAL);
	assert_non_null(strstr(cfg_error(d), "t.yaml:3:"));
	assert_non_null(strstr(cfg_error(d), "unknown key 'nested'"));
	cfg_free(d);
}

static void test_syntax_error(void **st)
{
	char err[256];
	const char *y = "a: [1, 2\nb: c\n";
	(void)st;
	assert_null(cfg_load_string("bad.yaml", y, strlen(y), err, sizeof err));
	assert_non_null(strstr(err, "bad.yaml:"));
}

/* Warnings are kept in order with file, line and key; past CFG_WARN_MAX they are counted, not kept, and
 * they never turn into an error. */
static void test_warnings(void **st)
{
	cfg_doc *d = doc("a: 1\nb: 2\n");
	(void)st;
	assert_int_equal(cfg_warning_count(d), 0);
	assert_null(cfg_warning(d, 0));
	assert_int_equal(cfg_warn(d, cfg_root(d), "b", "looks %s", "odd"), 0);
	assert_int_equal(cfg_warn(d, cfg_root(d), NULL, "whole file"), 0);
	assert_int_equal(cfg_warning_count(d), 2);
	assert_string_equal(cfg_warning(d, 0), "t.yaml:2: b: looks odd");
	assert_string_equal(cfg_warning(d, 1), "t.yaml: whole file");
	for (int i = 0; i < CFG_WARN_MAX + 5; i++)
		cfg_warn(d, cfg_root(d), "a", "n%d", i);
	assert_int_equal(cfg_warning_count(d), CFG_WARN_MAX);
	assert_int_equal(cfg_warnings_dropped(d), 7);
	assert_null(cfg_error(d));
	cfg_free(d);
}

/* An empty file or one of comments only is named as such (it once said "Bad file descriptor"), and so is a
 * directory given as the config. */
static void test_empty_and_not_a_file(void **st)
{
	char err[256], path[] = "/tmp/postern-cfg-XXXXXX";
	int fd = mkstemp(path);
	(void)st;
	assert_true(fd >= 0);
	assert_null(cfg_load(path, err, sizeof err));
	assert_non_null(strstr(err, ": the file is empty: a config is a mapping of keys"));
	assert_int_equal(write(fd, "# only a comment\n\n", 18), 18);
	assert_null(cfg_load(path, err, sizeof err));
	assert_non_null(strstr(err, ": the file is empty"));
	close(fd);
	unlink(path);
	assert_null(cfg_load("/tmp", err, sizeof err));
	assert_string_equal(err, "/tmp: not a regular file (a directory)");
	assert_null(cfg_load("/nonexistent/x.yaml", err, sizeof err));
	assert_string_equal(err, "/nonexistent/x.yaml: No such file or directory");
}

/* dirs_make: parents 0755, the last component with the mode asked (whatever the umask), an existing
 * directory left alone, a file in the way named. */
static void test_dirs_make(void **st)
{
	char base[] = "/tmp/postern-dirs-XXXXXX", p[256], err[256];
	struct stat sb;
	bool made = false;
	mode_t old = umask(077);
	(void)st;
	assert_non_null(mkdtemp(base));
	snprintf(p, sizeof p, "%s/a/b/c/", base);
	assert_int_equal(dirs_make(p, 0700, &made, err, sizeof err), 0);
	assert_true(made);
	snprintf(p, sizeof p, "%s/a/b", base);
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0755);
	snprintf(p, sizeof p, "%s/a/b/c", base);
	assert_int_equal(stat(p, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);
	assert_int_equal(dirs_make(p, 0700, &made, err, sizeof err), 0);
	assert_false(made);
	snprintf(p, sizeof p, "%s/f", base);
	close(open(p, O_CREAT | O_WRONLY, 0600));
	snprintf(p, sizeof p, "%s/f/g", base);
	assert_int_equal(dirs_make(p, 0700, &made, err, sizeof err), -ENOTDIR);
	assert_non_null(strstr(err, "/f: exists and is not a directory"));
	assert_int_equal(dirs_make("", 0700, NULL, err, sizeof err), -EINVAL);
	umask(old);
	snprintf(p, sizeof p, "rm -rf %s", base);
	assert_int_equal(system(p), 0);
}

/* Inputs that crash, hang or leak inside libfyaml 0.7.12 (found by fuzz_policy) never reach it: configs are
 * a subset of YAML, checked first, and each refusal names the line. */
static void test_outside_the_subset(void **st)
{
	static const struct {
		const char *y;
		size_t n;
		const char *want;
	} cases[] = {
		{ "poientlcyy:\n?   K}:\n?    -\n?    -p:-\n?    -p:\t?  {mae}", 53, "t.yaml:2: explicit '? ' keys" },
		{ "podicy:\n% 2eful: \317deYy\n \0\0plt: allow\n", 39, "t.yaml:2: YAML directives" },
		{ "a: 1\n%YAML 1.2\n", 15, "t.yaml:2: YAML directives" },
		{ "a: 1\nb: \"x\0y\"\n", 14, "t.yaml:2: a control byte (0x00)" },
		{ "a: \"\xc3\x28\"\n", 8, "t.yaml:1: bytes that are not UTF-8" },
		{ "a: \"\xed\xa0\x80\"\n", 9, "t.yaml:1: bytes that are not UTF-8" },
		{ "a: \x1b[31m\n", 10, "t.yaml:1: a control byte (0x1b)" },
	};
	char err[256];
	(void)st;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		assert_null(cfg_load_string("t.yaml", cases[i].y, cases[i].n, err, sizeof err));
		if (!strstr(err, cases[i].want))
			fail_msg("case %zu: got '%s', want '%s'", i, err, cases[i].want);
	}
	/* what configs do use still loads: UTF-8, tabs in values, comments, flow and block forms, "? " in a value */
	{
		const char *y = "name: caf\xc3\xa9 # comment\nlist: [a, b]\nm:\n  - x: \"?  not a key\"\nv: a\tb\n";
		cfg_doc *d = cfg_load_string("t.yaml", y, strlen(y), err, sizeof err);
		if (!d)
			fail_msg("%s", err);
		cfg_free(d);
	}
}

static void test_durations(void **st)
{
	int64_t ms;
	uint64_t b;
	(void)st;
	assert_int_equal(cfg_parse_duration_ms("250ms", &ms), 0);
	assert_int_equal(ms, 250);
	assert_int_equal(cfg_parse_duration_ms("10", &ms), 0);
	assert_int_equal(ms, 10000);
	assert_int_equal(cfg_parse_duration_ms("720h", &ms), 0);
	assert_int_equal(ms, 720ll * 3600000);
	/* Every unit, combined; "ms" is not read as minutes then "s". */
	assert_int_equal(cfg_parse_duration_ms("1d2h3m4s5ms", &ms), 0);
	assert_int_equal(ms, 86400000 + 2 * 3600000 + 3 * 60000 + 4 * 1000 + 5);
	assert_int_equal(cfg_parse_duration_ms("1.5m", &ms), 0);
	assert_int_equal(ms, 90000);
	assert_int_equal(cfg_parse_duration_ms("5", &ms), 0);
	assert_int_equal(cfg_parse_duration_ms("5s3", &ms), -EINVAL);
	assert_int_equal(cfg_parse_duration_ms("10x", &ms), -EINVAL);
	assert_int_equal(cfg_parse_duration_ms("-1s", &ms), -EINVAL);
	assert_int_equal(cfg_parse_duration_ms("", &ms), -EINVAL);
	assert_int_equal(cfg_parse_size("512M", &b), 0);
	assert_int_equal(b, 512ull << 20);
	assert_int_equal(cfg_parse_size("1GiB", &b), 0);
	assert_int_equal(b, 1ull << 30);
	assert_int_equal(cfg_parse_size("1Q", &b), -EINVAL);
}

/* cfg_node_text (what a reload compares) on a plan like the demo's: flow and block mappings, sequences, quoted
 * and plain scalars, a long string, an empty value. The JSON is checked; run under ASan (FLAVOUR=asan, LSan on)
 * any allocation the emitter left behind fails the binary at exit. 200 rounds make a per-call leak large. */
static void test_node_text(void **st)
{
	static const char y[] =
		"steps:\n"
		"  - name: list_records\n"
		"    mcp: records\n"
		"    tool: list_directory\n"
		"    args: {path: \"/tmp/postern-demo-x/records\"}\n"
		"  - name: try_write\n"
		"    tool: write_file\n"
		"    args: {path: \"/tmp/r/orders.csv\", content: \"tampered\"}\n"
		"    expect: error\n"
		"  - name: note\n"
		"    args: {message: 'summarising the orders', n: 3, ok: true, none: null, list: [a, \"b c\", 1.5]}\n"
		"long: \"" "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
		"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"\n"
		"empty:\n"
		"quoted: \"tab\\there \\\"q\\\" \\u00e9\"\n";
	(void)st;
	for (int round = 0; round < 200; round++) {
		cfg_doc *d = doc(y);
		cfg_node *root = cfg_root(d);
		char *all = cfg_node_text(root), *steps = cfg_key_text(root, "steps"), *empty = cfg_key_text(root, "empty");
		char *q = cfg_key_text(root, "quoted"), *none = cfg_key_text(root, "absent");
		assert_non_null(all);
		assert_non_null(strstr(all, "\"expect\": \"error\"") ? strstr(all, "\"expect\": \"error\"") : strstr(all, "\"expect\":\"error\""));
		assert_non_null(strstr(all, "0123456789abcdef0123456789abcdef0123456789abcdef"));
		assert_null(strchr(all, '\n')); /* one line */
		assert_non_null(steps);
		assert_true(steps[0] == '[');
		assert_non_null(strstr(steps, "summarising the orders"));
		assert_non_null(strstr(steps, "tampered"));
		assert_string_equal(empty, "null");
		assert_non_null(q);
		assert_non_null(strstr(q, "tab"));
		assert_null(none);
		free(all);
		free(steps);
		free(empty);
		free(q);
		cfg_free(d);
	}
	/* The exact text: plain numbers, booleans and null typed, quoted ones strings, order kept. */
	{
		cfg_doc *d = doc("a: 1\nb: \"x y\"\nc: [true, null, 2x, -1.5]\nd: \"1\"\ne: {k: v}\n");
		char *t = cfg_node_text(cfg_root(d));
		assert_string_equal(t, "{\"a\":1,\"b\":\"x y\",\"c\":[true,null,\"2x\",-1.5],\"d\":\"1\",\"e\":{\"k\":\"v\"}}");
		free(t);
		cfg_free(d);
	}
	/* What libfyaml 0.7.12's JSON emitter leaked on (its buffer, 2 KiB here): a long double-quoted scalar
	 * with escapes, like the script the demo's plan writes. */
	{
		char big[4200], *p = big;
		p += sprintf(p, "args:\n  content: \"");
		for (int i = 0; i < 1000; i++)
			p += sprintf(p, i % 40 == 39 ? "\\n" : "a");
		sprintf(p, "\"\n");
		for (int round = 0; round < 20; round++) {
			cfg_doc *d = doc(big);
			char *t = cfg_key_text(cfg_root(d), "args");
			assert_non_null(t);
			assert_int_equal(strncmp(t, "{\"content\":\"aaaa", 16), 0);
			assert_non_null(strstr(t, "a\\na"));
			free(t);
			cfg_free(d);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scalars),
		cmocka_unit_test(test_node_text),
		cmocka_unit_test(test_errors_name_line_and_key),
		cmocka_unit_test(test_syntax_error),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_warnings),
		cmocka_unit_test(test_outside_the_subset),
		cmocka_unit_test(test_empty_and_not_a_file),
		cmocka_unit_test(test_dirs_make),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
