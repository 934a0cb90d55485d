/* core/cbuf: growth, the cap, compaction, freeing when empty, text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "core/cbuf.h"

static void test_grow_and_cap(void **st)
{
	cbuf b = CBUF_INIT(4, 10);
	uint8_t *at;
	(void)st;
	assert_string_equal(cbuf_str(&b), "");
	assert_int_equal(cbuf_append(&b, "abc", 3), 0);
	assert_int_equal(b.cap, 4);
	assert_int_equal(cbuf_cap_after(&b, 2), 8);
	assert_int_equal(cbuf_append(&b, "defgh", 5), 0);
	assert_int_equal(b.cap, 8);
	assert_string_equal(cbuf_str(&b), "abcdefgh");
	assert_int_equal(cbuf_append(&b, "ijk", 3), -ENOBUFS); /* 11 > max 10: nothing appended */
	assert_int_equal(b.len, 8);
	assert_int_equal(cbuf_append(&b, "ij", 2), 0);
	assert_int_equal(b.len, 10);
	assert_int_equal(cbuf_reserve(&b, 1, &at), -ENOBUFS);
	assert_int_equal(cbuf_reserve(&b, SIZE_MAX, &at), -ENOBUFS);
	assert_memory_equal(cbuf_data(&b), "abcdefghij", 10);
	cbuf_free(&b);
	assert_null(b.p);
	assert_int_equal(b.max, 10);
}

static void test_consume_compacts_and_frees(void **st)
{
	cbuf b;
	char out[8];
	(void)st;
	cbuf_init(&b, 8, 64);
	assert_int_equal(cbuf_append(&b, "01234567", 8), 0);
	cbuf_consume(&b, 5);
	assert_int_equal(b.off, 5);
	assert_string_equal(cbuf_str(&b), "567");
	/* Room at the front is reused before the buffer grows. */
	assert_int_equal(cbuf_append(&b, "89abc", 5), 0);
	assert_int_equal(b.cap, 8);
	assert_int_equal(b.off, 0);
	assert_string_equal(cbuf_str(&b), "56789abc");
	assert_int_equal(cbuf_take(&b, out, 3), 3);
	assert_memory_equal(out, "567", 3);
	assert_int_equal(cbuf_take(&b, out, sizeof out), 5);
	assert_memory_equal(out, "89abc", 5);
	assert_null(b.p); /* empty: memory returned */
	assert_int_equal(cbuf_take(&b, out, sizeof out), 0);
	cbuf_consume(&b, 1);
	assert_int_equal(b.len, 0);
}

static void test_printf(void **st)
{
	cbuf b = CBUF_INIT(4, 20);
	(void)st;
	assert_int_equal(cbuf_printf(&b, "%s=%d", "key", 42), 0);
	assert_string_equal(cbuf_str(&b), "key=42");
	assert_int_equal(cbuf_printf(&b, "%s", ""), 0);
	assert_int_equal(cbuf_printf(&b, " %s", "and more"), 0);
	assert_string_equal(cbuf_str(&b), "key=42 and more");
	assert_int_equal(cbuf_printf(&b, "%s", "toolong"), -ENOBUFS);
	assert_string_equal(cbuf_str(&b), "key=42 and more");
	assert_int_equal(cbuf_printf(&b, "%s", "12345"), 0); /* exactly max */
	assert_int_equal(b.len, 20);
	assert_string_equal(cbuf_str(&b), "key=42 and more12345");
	cbuf_free(&b);
}

static void test_reserve_commit(void **st)
{
	cbuf b = CBUF_INIT(16, 1 << 20);
	uint8_t *at;
	(void)st;
	assert_int_equal(cbuf_reserve(&b, 100, &at), 0);
	assert_true(b.cap >= 100);
	memset(at, 'x', 60);
	cbuf_commit(&b, 60);
	assert_int_equal(b.len, 60);
	assert_int_equal(cbuf_str(&b)[60], 0);
	cbuf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grow_and_cap),
		cmocka_unit_test(test_consume_compacts_and_frees),
		cmocka_unit_test(test_printf),
		cmocka_unit_test(test_reserve_commit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
