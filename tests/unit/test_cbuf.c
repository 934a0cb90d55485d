/* core/cbuf: growth, the cap, compaction, freeing when empty, text, secret buffers that leave no copy behind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <openssl/crypto.h>
#include <stdlib.h>
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

/* OpenSSL's allocator, watched: every block handed back is checked for a byte left unwiped. A secret cbuf
 * takes its memory from there, and nothing else in this binary does. */
static size_t freed, freed_dirty;

static void *hook_malloc(size_t n, const char *file, int line)
{
	size_t *h = malloc(sizeof(size_t) * 2 + n);
	(void)file;
	(void)line;
	if (!h)
		return NULL;
	h[0] = n;
	return h + 2;
}

static void hook_free(void *p, const char *file, int line)
{
	size_t *h = p ? (size_t *)p - 2 : NULL;
	(void)file;
	(void)line;
	if (!h)
		return;
	freed++;
	for (size_t i = 0; i < h[0]; i++)
		if (((uint8_t *)p)[i]) {
			freed_dirty++;
			break;
		}
	free(h);
}

static void *hook_realloc(void *p, size_t n, const char *file, int line)
{
	(void)p;
	(void)n;
	(void)file;
	(void)line;
	fail_msg("a secret buffer must never realloc");
	return NULL;
}

static void test_secret_leaves_no_copy(void **st)
{
	cbuf b = CBUF_INIT(8, 1024), plain = CBUF_INIT(8, 1024);
	char out[64];
	(void)st;
	freed = freed_dirty = 0;
	assert_int_equal(cbuf_set_secret(&b), 0);
	assert_int_equal(cbuf_append(&b, "SECRET01", 8), 0);
	assert_int_equal(cbuf_append(&plain, "x", 1), 0);
	assert_int_equal(cbuf_set_secret(&plain), -EBUSY);
	cbuf_free(&plain);
	assert_int_equal(freed, 0); /* a plain buffer stays with libc */
	/* Consumed bytes are wiped in place. */
	cbuf_consume(&b, 5);
	assert_memory_equal(b.p, "\0\0\0\0\0", 5);
	/* Compaction: the bytes the data moved away from are wiped (p[6] and p[7] held "01"). */
	assert_int_equal(cbuf_append(&b, "ab", 2), 0);
	assert_int_equal(b.off, 0);
	assert_int_equal(b.cap, 8);
	assert_memory_equal(b.p, "T01ab", 5);
	assert_int_equal(b.p[5], 0);
	assert_int_equal(b.p[6], 0);
	assert_int_equal(b.p[7], 0);
	assert_int_equal(freed, 0);
	/* Growth: a new block each time, the old one wiped before it goes back. */
	assert_int_equal(cbuf_append(&b, "SECRET02SECRET03", 16), 0);
	assert_int_equal(freed, 1);
	assert_int_equal(cbuf_append(&b, "SECRET04SECRET05SECRET06", 24), 0);
	assert_int_equal(freed, 2);
	assert_int_equal(b.len, 45);
	assert_memory_equal(cbuf_data(&b), "T01abSECRET02", 13);
	assert_int_equal(cbuf_take(&b, out, 10), 10);
	assert_memory_equal(b.p, "\0\0\0\0\0\0\0\0\0\0", 10);
	/* Running empty or freed: the whole block is wiped. */
	assert_int_equal(cbuf_take(&b, out, sizeof out), 35);
	assert_null(b.p);
	assert_int_equal(freed, 3);
	assert_int_equal(cbuf_append(&b, "SECRET07", 8), 0);
	cbuf_free(&b);
	assert_int_equal(freed, 4);
	assert_int_equal(freed_dirty, 0);
	assert_true(b.secret); /* cbuf_free keeps the mode, like first and max */
}

int main(void)
{
	/* Before anything allocates through OpenSSL. */
	if (!CRYPTO_set_mem_functions(hook_malloc, hook_realloc, hook_free))
		return 1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grow_and_cap),
		cmocka_unit_test(test_consume_compacts_and_frees),
		cmocka_unit_test(test_printf),
		cmocka_unit_test(test_reserve_commit),
		cmocka_unit_test(test_secret_leaves_no_copy),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
