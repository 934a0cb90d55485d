/* agent/atty: the transcript's terminal guard. Peer text with control sequences, C1 controls, bidi marks and
 * malformed UTF-8 comes out escaped, well-formed text unchanged, also when a sequence is split between two
 * writes of the stream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "agent/atty.h"

static void expect_escape(const char *in, size_t n, const char *want)
{
	char out[256];
	assert_string_equal(atty_escape(in, n, out, sizeof out), want);
}

static void test_escape(void **st)
{
	(void)st;
	expect_escape("plain text\n\twith tab", 20, "plain text\n\twith tab");
	expect_escape("a\x1b[2Jb\r\a", 8, "a\\x1b[2Jb\\x0d\\x07");
	expect_escape("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
	expect_escape("x\xc2\x9b" "31m", 6, "x\\u009b31m");              /* C1 CSI */
	expect_escape("ok\xe2\x80\xae" "gnp.exe", 12, "ok\\u202egnp.exe");  /* right-to-left override */
	expect_escape("\xe2\x81\xa6" "a", 4, "\\u2066a");                 /* left-to-right isolate */
	expect_escape("\xe2\x80\xa8", 3, "\\u2028");                      /* line separator */
	expect_escape("\xff\xfe", 2, "\\xff\\xfe");
	expect_escape("\xc0\xaf", 2, "\\xc0\\xaf");                       /* overlong '/' */
	expect_escape("\xed\xa0\x80", 3, "\\xed\\xa0\\x80");              /* surrogate */
	expect_escape("end\xe2\x80", 5, "end\\xe2\\x80");                 /* cut short */
	expect_escape("nul\0x", 5, "nul\\x00x");
	expect_escape("\x7f", 1, "\\x7f");
	char small[8];
	assert_string_equal(atty_escape("\x1b\x1b\x1b", 3, small, sizeof small), "\\x1b\\x1");
}

static char *through_stream(const char *const *writes, size_t nw)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);
	assert_non_null(mem);
	FILE *f = atty_open(mem);
	assert_non_null(f);
	for (size_t i = 0; i < nw; i++) {
		fputs(writes[i], f);
		fflush(f); /* each piece is its own write to the guard */
	}
	fclose(f);
	fclose(mem);
	return buf;
}

static void test_stream_split(void **st)
{
	(void)st;
	const char *a[] = { "x\xe2", "\x80", ("\xae" "y\n") };
	char *s = through_stream(a, 3);
	assert_string_equal(s, "x\\u202ey\n");
	free(s);
	const char *b[] = { "caf\xc3", "\xa9!" };
	s = through_stream(b, 2);
	assert_string_equal(s, "caf\xc3\xa9!");
	free(s);
	const char *c[] = { "\xe2", "a\x1b" };
	s = through_stream(c, 2);
	assert_string_equal(s, "\\xe2a\\x1b");
	free(s);
	const char *d[] = { "tail\xf0\x9f" };
	s = through_stream(d, 1);
	assert_string_equal(s, "tail\\xf0\\x9f"); /* left incomplete at close */
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_stream_split),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
