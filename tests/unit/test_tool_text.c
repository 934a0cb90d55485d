#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "sandbox/tools/tool_text.h"

static void test_ansi(void **st)
{
	struct ttext_ansi a = { 0 };
	char b1[] = "\x1b[1;31mred\x1b[0m plain \x1b]0;title\x07ok\x1b(Bx\x1b" "7y";
	size_t n = ttext_ansi_strip(&a, b1, strlen(b1));
	(void)st;
	b1[n] = 0;
	assert_string_equal(b1, "red plain okxy");
	/* A sequence split across two chunks. */
	memset(&a, 0, sizeof a);
	char c1[] = "ab\x1b[3", c2[] = "2mcd\n";
	n = ttext_ansi_strip(&a, c1, strlen(c1));
	c1[n] = 0;
	assert_string_equal(c1, "ab");
	n = ttext_ansi_strip(&a, c2, strlen(c2));
	c2[n] = 0;
	assert_string_equal(c2, "cd\n");
	/* An OSC terminated by ST, and an unterminated CSI does not eat a newline. */
	memset(&a, 0, sizeof a);
	char c3[] = "x\x1b]8;;http://a\x1b\\link\x1b[12\nz";
	n = ttext_ansi_strip(&a, c3, strlen(c3));
	c3[n] = 0;
	assert_string_equal(c3, "xlink\nz");
	/* UTF-8 passes untouched. */
	memset(&a, 0, sizeof a);
	char c4[] = "h\xc3\xa9llo \xe2\x9c\x93";
	n = ttext_ansi_strip(&a, c4, strlen(c4));
	assert_int_equal(n, strlen("h\xc3\xa9llo \xe2\x9c\x93"));
}

static void test_tail(void **st)
{
	struct ttext_tail t;
	size_t len;
	bool tr;
	char *s;
	(void)st;
	assert_int_equal(ttext_tail_init(&t, 8), 0);
	ttext_tail_push(&t, "abc", 3);
	s = ttext_tail_take(&t, &len, &tr);
	assert_string_equal(s, "abc");
	assert_false(tr);
	free(s);
	ttext_tail_push(&t, "defgh", 5);
	ttext_tail_push(&t, "ijk", 3);
	s = ttext_tail_take(&t, &len, &tr);
	assert_string_equal(s, "defghijk");
	assert_true(tr);
	assert_int_equal(t.total, 11);
	free(s);
	ttext_tail_push(&t, "0123456789XYZ", 13);
	s = ttext_tail_take(&t, &len, &tr);
	assert_string_equal(s, "56789XYZ");
	free(s);
	ttext_tail_free(&t);
	/* Cut inside a multi-byte character: the copy starts at the next character. */
	assert_int_equal(ttext_tail_init(&t, 4), 0);
	ttext_tail_push(&t, "x\xe2\x9c\x93y\xc3\xa9", 7);
	s = ttext_tail_take(&t, &len, &tr);
	assert_string_equal(s, "y\xc3\xa9");
	free(s);
	ttext_tail_free(&t);
}

struct sink {
	char buf[4096];
	size_t n;
};

static void sink_emit(void *ud, const char *d, size_t n)
{
	struct sink *s = ud;
	assert_true(s->n + n < sizeof s->buf);
	memcpy(s->buf + s->n, d, n);
	s->n += n;
	s->buf[s->n] = 0;
}

#define NONCE "0123456789abcdef0123456789abcdef"

static void feed_split(const char *in, size_t chunk, struct sink *s, struct ttext_frame *f)
{
	size_t len = strlen(in);
	memset(s, 0, sizeof *s);
	ttext_frame_init(f, NONCE);
	for (size_t i = 0; i < len; i += chunk) {
		size_t n = len - i < chunk ? len - i : chunk;
		if (ttext_frame_feed(f, in + i, n, sink_emit, s))
			break;
	}
}

static void test_frame(void **st)
{
	struct sink s;
	struct ttext_frame f;
	(void)st;
	for (size_t chunk = 1; chunk <= 80; chunk++) {
		feed_split("hello\nworld\n\n" NONCE "0\nignored", chunk, &s, &f);
		assert_true(f.done);
		assert_int_equal(f.code, 0);
		assert_string_equal(s.buf, "hello\nworld\n");
		feed_split("no newline\n" NONCE "127\n", chunk, &s, &f);
		assert_true(f.done);
		assert_int_equal(f.code, 127);
		assert_string_equal(s.buf, "no newline");
		/* Lookalikes are output: a wrong nonce, a marker without digits, a marker followed by text. */
		feed_split("a\n0123456789abcdef0123456789abcdeX\n\n" NONCE "x\n\n" NONCE "12z\n\n" NONCE "3\n", chunk,
			   &s, &f);
		assert_true(f.done);
		assert_int_equal(f.code, 3);
		assert_string_equal(s.buf, "a\n0123456789abcdef0123456789abcdeX\n\n" NONCE "x\n\n" NONCE "12z\n");
	}
	/* EOF before the sentinel: held bytes come back. */
	feed_split("partial\n01234", 3, &s, &f);
	assert_false(f.done);
	ttext_frame_flush(&f, sink_emit, &s);
	assert_string_equal(s.buf, "partial\n01234");
}

static void test_bash_wrap(void **st)
{
	char *w;
	size_t n;
	(void)st;
	assert_int_equal(ttext_bash_wrap("echo hi", 7, NONCE, &w, &n), 0);
	assert_non_null(strstr(w, "\necho hi\n__POSTERN_" NONCE "\n"));
	assert_non_null(strstr(w, "printf '\\n" NONCE "%d\\n'"));
	assert_int_equal(strlen(w), n);
	free(w);
	assert_int_equal(ttext_bash_wrap("a\0b", 3, NONCE, &w, &n), -EINVAL);
	assert_int_equal(ttext_bash_wrap("echo " NONCE, 5 + 32, NONCE, &w, &n), -EAGAIN);
}

/* The framing runs in every shell a session may have: bash, dash (a Debian image's /bin/sh, no `read -d`) and
 * busybox ash, each run when the host has it. The command comes back byte for byte (spaces, backslashes,
 * quotes, parentheses, a line like the sentinel's prefix), shell functions named read or printf do not steer
 * it, and its status follows the sentinel. */
static void test_bash_wrap_shells(void **st)
{
	static const char *const shells[][2] = { { "/bin/bash", "bash" }, { "/bin/dash", "dash" },
						 { "/bin/busybox", "busybox sh" } };
	static const char cmd[] = "read() { echo HIJACKED; }; printf() { echo HIJACKED; }\n"
				  "  command printf '%s|%s|%s\\n' '  lead' 'a\\b' \"x) $(echo sub)\"\n"
				  "echo 'unbalanced ( and ` in quotes'\n"
				  "cat <<'EOF'\n__POSTERN_not_it\nEOF\n"
				  "(exit 7)";
	static const char want[] = "  lead|a\\b|x) sub\nunbalanced ( and ` in quotes\n__POSTERN_not_it\n\n" NONCE "7\n";
	unsigned ran = 0;
	(void)st;
	for (size_t i = 0; i < sizeof shells / sizeof shells[0]; i++) {
		if (access(shells[i][0], X_OK) != 0)
			continue;
		char *w, out[4096] = "", tmpl[] = "/tmp/test-bash-wrap-XXXXXX", line[400];
		size_t n;
		int fd = mkstemp(tmpl);
		assert_true(fd >= 0);
		close(fd);
		snprintf(line, sizeof line, "%s > %s 2>/dev/null", shells[i][1], tmpl);
		FILE *p = popen(line, "w");
		assert_non_null(p);
		/* a command that does not parse first: the same shell must frame the next one (bash once did not) */
		assert_int_equal(ttext_bash_wrap("echo \"unterminated", 18, NONCE, &w, &n), 0);
		assert_int_equal(fwrite(w, 1, n, p), n);
		free(w);
		assert_int_equal(ttext_bash_wrap(cmd, sizeof cmd - 1, NONCE, &w, &n), 0);
		assert_int_equal(fwrite(w, 1, n, p), n);
		free(w);
		pclose(p);
		FILE *f = fopen(tmpl, "r");
		assert_non_null(f);
		size_t got = fread(out, 1, sizeof out - 1, f);
		out[got] = 0;
		fclose(f);
		unlink(tmpl);
		/* the first call's output is the shell's own parse error, then its frame with status 2 */
		const char *first = strstr(out, "\n" NONCE "2\n"), *rest = first ? first + 2 + strlen(NONCE) + 1 : NULL;
		if (!rest || strcmp(rest, want))
			fail_msg("%s: got \"%s\"", shells[i][1], out);
		ran++;
	}
	assert_true(ran >= 1); /* a Debian host has at least dash */
}

static void test_utf8(void **st)
{
	size_t n;
	char *s;
	(void)st;
	s = ttext_utf8_clean("ok\xc3\xa9", 4, &n);
	assert_string_equal(s, "ok\xc3\xa9");
	free(s);
	s = ttext_utf8_clean("a\xff" "b\xc0\xaf" "c\xed\xa0\x80" "d\xe2\x9c", 13, &n);
	assert_string_equal(s, "a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd" "c\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
			       "d\xef\xbf\xbd\xef\xbf\xbd");
	free(s);
	assert_int_equal(ttext_utf8_prefix("ab\xe2\x9c", 4), 2);
	assert_int_equal(ttext_utf8_prefix("ab\xe2\x9c\x93", 5), 5);
	assert_int_equal(ttext_utf8_prefix("ab\xc3", 3), 2);
	assert_int_equal(ttext_utf8_prefix("abc", 3), 3);
}

static void test_line_range(void **st)
{
	const char *t = "one\ntwo\nthree\nfour";
	size_t off, n;
	(void)st;
	assert_int_equal(ttext_line_range(t, strlen(t), 2, 3, &off, &n), 0);
	assert_int_equal(n, 10);
	assert_memory_equal(t + off, "two\nthree\n", 10);
	assert_int_equal(ttext_line_range(t, strlen(t), 3, 0, &off, &n), 0);
	assert_memory_equal(t + off, "three\nfour", n);
	assert_int_equal(ttext_line_range(t, strlen(t), 4, 99, &off, &n), 0);
	assert_memory_equal(t + off, "four", n);
	assert_int_equal(ttext_line_range(t, strlen(t), 5, 0, &off, &n), -ERANGE);
	assert_int_equal(ttext_line_range(t, strlen(t), 0, 2, &off, &n), -ERANGE);
	assert_int_equal(ttext_line_range(t, strlen(t), 3, 2, &off, &n), -ERANGE);
	assert_int_equal(ttext_line_range("a\n", 2, 2, 0, &off, &n), -ERANGE);
	assert_int_equal(ttext_line_range("", 0, 1, 0, &off, &n), 0);
	assert_int_equal(n, 0);
}

static void test_edit(void **st)
{
	char *o;
	size_t n, c;
	const char *t = "foo bar foo baz";
	(void)st;
	assert_int_equal(ttext_edit(t, strlen(t), "bar", 3, "BAR!", 4, false, 1 << 20, &o, &n, &c), 0);
	assert_string_equal(o, "foo BAR! foo baz");
	assert_int_equal(c, 1);
	free(o);
	assert_int_equal(ttext_edit(t, strlen(t), "foo", 3, "x", 1, false, 1 << 20, &o, &n, &c), -EEXIST);
	assert_int_equal(c, 2);
	assert_int_equal(ttext_edit(t, strlen(t), "foo", 3, "", 0, true, 1 << 20, &o, &n, &c), 0);
	assert_string_equal(o, " bar  baz");
	assert_int_equal(c, 2);
	free(o);
	assert_int_equal(ttext_edit(t, strlen(t), "nope", 4, "x", 1, false, 1 << 20, &o, &n, &c), -ENOENT);
	assert_int_equal(ttext_edit(t, strlen(t), "", 0, "x", 1, false, 1 << 20, &o, &n, &c), -EINVAL);
	assert_int_equal(ttext_edit(t, strlen(t), "foo", 3, "0123456789", 10, true, 20, &o, &n, &c), -EFBIG);
	/* Overlapping candidates count without overlap: "aa" in "aaa" occurs once. */
	assert_int_equal(ttext_edit("aaa", 3, "aa", 2, "b", 1, false, 100, &o, &n, &c), 0);
	assert_string_equal(o, "ba");
	free(o);
}

static void test_glob_match(void **st)
{
	(void)st;
	assert_true(ttext_glob_match("*.c", "a.c"));
	assert_false(ttext_glob_match("*.c", "src/a.c"));
	assert_true(ttext_glob_match("**/*.c", "a.c"));
	assert_true(ttext_glob_match("**/*.c", "src/x/a.c"));
	assert_true(ttext_glob_match("src/**", "src/x/a.c"));
	assert_true(ttext_glob_match("src/**/a.c", "src/a.c"));
	assert_true(ttext_glob_match("src/**/a.c", "src/x/y/a.c"));
	assert_false(ttext_glob_match("src/**/a.c", "lib/src/a.c"));
	assert_true(ttext_glob_match("a?c", "abc"));
	assert_false(ttext_glob_match("a?c", "a/c"));
	assert_true(ttext_glob_match("[a-c]x", "bx"));
	assert_false(ttext_glob_match("[!a-c]x", "bx"));
	assert_true(ttext_glob_match("[]]x", "]x"));
	assert_true(ttext_glob_match("\\*x", "*x"));
	assert_false(ttext_glob_match("\\*x", "ax"));
	assert_true(ttext_glob_match("a*b*c*d", "axxbyyczzd"));
	assert_false(ttext_glob_match("a*b*c*d", "axxbyyczz"));
	assert_true(ttext_glob_match("./a/*.txt", "a/b.txt"));
	assert_true(ttext_glob_match("[abc", "[abc"));
	/* No exponential blowup. */
	char path[300];
	memset(path, 'a', sizeof path - 1);
	path[sizeof path - 1] = 0;
	assert_false(ttext_glob_match("*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", path));
	assert_false(ttext_glob_match("**/**/**/**/**/**/**/**/x", "a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/a/y"));
}

static void test_glob_check_expand(void **st)
{
	char err[128];
	char **v;
	size_t n;
	(void)st;
	assert_int_equal(ttext_glob_check("**/*.{c,h}", 10, err, sizeof err), 0);
	assert_int_equal(ttext_glob_check("/etc/*", 6, err, sizeof err), -EINVAL);
	assert_int_equal(ttext_glob_check("../*", 4, err, sizeof err), -EINVAL);
	assert_int_equal(ttext_glob_check("a/../b", 6, err, sizeof err), -EINVAL);
	assert_int_equal(ttext_glob_check("{a,..}/x", 8, err, sizeof err), -EINVAL);
	assert_int_equal(ttext_glob_check("a\0b", 3, err, sizeof err), -EINVAL);
	assert_int_equal(ttext_glob_check("", 0, err, sizeof err), -EINVAL);
	assert_int_equal(ttext_glob_check("{a", 2, err, sizeof err), -EINVAL);
	assert_int_equal(ttext_glob_check("..a/x", 5, err, sizeof err), 0);
	assert_int_equal(ttext_glob_expand("x.{c,h,{cc,hh}}", &v, &n), 0);
	assert_int_equal(n, 4);
	assert_string_equal(v[0], "x.c");
	assert_string_equal(v[3], "x.hh");
	ttext_strv_free(v);
	assert_int_equal(ttext_glob_expand("{a,b}{c,d}{e,f}{g,h}{i,j}{k,l}{m,n}", &v, &n), -E2BIG);
}

static void test_path_norm(void **st)
{
	char out[64];
	(void)st;
	assert_int_equal(ttext_path_norm("/workspace", "a/b.txt", 7, out, sizeof out), 0);
	assert_string_equal(out, "/workspace/a/b.txt");
	assert_int_equal(ttext_path_norm("/workspace", "../../../etc/passwd", 19, out, sizeof out), 0);
	assert_string_equal(out, "/etc/passwd");
	assert_int_equal(ttext_path_norm("/workspace", "/x/./y//z/..", 12, out, sizeof out), 0);
	assert_string_equal(out, "/x/y");
	assert_int_equal(ttext_path_norm("/", "..", 2, out, sizeof out), 0);
	assert_string_equal(out, "/");
	assert_int_equal(ttext_path_norm("/w", "a\0b", 3, out, sizeof out), -EINVAL);
	assert_int_equal(ttext_path_norm("/w", "", 0, out, sizeof out), -EINVAL);
	assert_int_equal(ttext_path_norm("/w", "0123456789012345678901234567890123456789012345678901234567890123456789", 70,
				       out, sizeof out),
			 -ENAMETOOLONG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ansi),	   cmocka_unit_test(test_tail),
		cmocka_unit_test(test_frame),	   cmocka_unit_test(test_bash_wrap), cmocka_unit_test(test_bash_wrap_shells),
		cmocka_unit_test(test_utf8),	   cmocka_unit_test(test_line_range),
		cmocka_unit_test(test_edit),	   cmocka_unit_test(test_glob_match),
		cmocka_unit_test(test_glob_check_expand), cmocka_unit_test(test_path_norm),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
