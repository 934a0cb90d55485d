/* The small core helpers: core/arr (growth by doubling, overflow), core/list.h (push, unlink anywhere,
 * an element on two lists), core/err (message and code), core/jsonid (the id of an over-long line). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/arr.h"
#include "core/err.h"
#include "core/jsonid.h"
#include "core/list.h"

struct pt {
	int x, y;
};

static void test_arr_grows(void **st)
{
	struct pt *v = NULL;
	size_t n = 0, cap = 0;
	(void)st;
	for (int i = 0; i < 100; i++) {
		assert_int_equal(ARR_RESERVE(v, n, cap, 4), 0);
		assert_true(n < cap);
		v[n++] = (struct pt){ i, -i };
	}
	assert_int_equal(cap, 128); /* 4, 8, ..., 128 */
	for (int i = 0; i < 100; i++)
		assert_int_equal(v[i].x + v[i].y, 0);
	/* Room already there: nothing moves. */
	struct pt *before = v;
	assert_int_equal(ARR_RESERVE(v, 127, cap, 4), 0);
	assert_ptr_equal(v, before);
	/* A capacity whose bytes would overflow is refused and the array kept. */
	size_t huge = SIZE_MAX / sizeof *v;
	assert_int_equal(arr_reserve(&v, huge, &huge, 4, sizeof *v), -ENOMEM);
	assert_ptr_equal(v, before);
	free(v);
}

struct node {
	int id;
	struct node *next, **pprev;
	struct node *onext, **opprev;
};

static int ids(struct node *h, int *out)
{
	int n = 0;
	for (; h; h = h->next)
		out[n++] = h->id;
	return n;
}

static void test_list(void **st)
{
	struct node a = { .id = 1 }, b = { .id = 2 }, c = { .id = 3 };
	struct node *head = NULL, *other = NULL;
	int got[4];
	(void)st;
	LIST_UNLINK(&a, next, pprev); /* on no list: nothing */
	LIST_PUSH(head, &a, next, pprev);
	LIST_PUSH(head, &b, next, pprev);
	LIST_PUSH(head, &c, next, pprev);
	LIST_PUSH(other, &b, onext, opprev);
	assert_int_equal(ids(head, got), 3);
	assert_int_equal(got[0], 3);
	assert_int_equal(got[2], 1);
	LIST_UNLINK(&b, next, pprev); /* the middle */
	assert_int_equal(ids(head, got), 2);
	assert_int_equal(got[0] * 10 + got[1], 31);
	assert_null(b.pprev);
	assert_ptr_equal(other, &b); /* still on its other list */
	LIST_UNLINK(&c, next, pprev); /* the head */
	assert_ptr_equal(head, &a);
	assert_ptr_equal(a.pprev, &head);
	LIST_UNLINK(&a, next, pprev); /* the last */
	assert_null(head);
	LIST_UNLINK(&b, onext, opprev);
	assert_null(other);
}

static void test_err(void **st)
{
	char e[8] = "x";
	(void)st;
	assert_int_equal(err_set(e, sizeof e, -EINVAL, "bad %d", 42), -EINVAL);
	assert_string_equal(e, "bad 42");
	assert_int_equal(err_set(e, sizeof e, -ENOENT, "%s", "a long message"), -ENOENT);
	assert_string_equal(e, "a long ");
	assert_int_equal(err_set(NULL, 0, -EIO, "nowhere"), -EIO);
}

/* Feeds line in pieces of `step` bytes, the middle stretched by `pad` bytes of a string's content. */
static json_t *jid_of(const char *pre, size_t pad, const char *post, size_t step)
{
	static jid_scan s;
	jid_reset(&s);
	char *line = malloc(strlen(pre) + pad + strlen(post) + 1);
	assert_non_null(line);
	strcpy(line, pre);
	memset(line + strlen(pre), 'x', pad);
	strcpy(line + strlen(pre) + pad, post);
	size_t n = strlen(line);
	for (size_t off = 0; off < n; off += step)
		jid_feed(&s, line + off, n - off < step ? n - off : step);
	assert_int_equal(s.total, n);
	free(line);
	return jid_recover(&s);
}

static void test_jsonid(void **st)
{
	(void)st;
	/* The id first (Python SDK) or last (TypeScript SDK), a string or an integer, with the middle far
	 * past both kept ends. */
	json_t *id = jid_of("{\"jsonrpc\":\"2.0\", \"id\" : 17,\"method\":\"tools/call\",\"params\":{\"c\":\"", 100000,
			    "\"}}", 65536);
	assert_true(json_is_integer(id) && json_integer_value(id) == 17);
	json_decref(id);
	id = jid_of("{\"method\":\"tools/call\",\"params\":{\"arguments\":{\"id\":5,\"content\":\"", 100000,
		    "\"}},\"jsonrpc\":\"2.0\",\"id\":\"c-9\"}\r", 7);
	assert_string_equal(json_string_value(id), "c-9");
	json_decref(id);
	/* A nested "id" at the end is not the request's; nor is one inside a string (escaped quotes). */
	id = jid_of("{\"method\":\"x\",\"params\":{\"c\":\"", 10000, "\",\"id\":3}}", 4096);
	assert_null(id);
	id = jid_of("{\"method\":\"x\",\"params\":{\"c\":\"", 10000, "\\\",\\\"id\\\":3}\"}", 100);
	assert_null(id);
	/* An id the head cuts is not read short; a long string id is refused; no object, no id. */
	id = jid_of("{\"id\":123", 0, "", 1);
	assert_null(id);
	id = jid_of("{\"jsonrpc\":\"2.0\",\"id\":\"", 300, "\",\"method\":\"ping\"}", 1000);
	assert_null(id);
	id = jid_of("[{\"id\":1}]", 0, "", 3);
	assert_null(id);
	id = jid_of("", 9000, "", 4096);
	assert_null(id);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_arr_grows),
		cmocka_unit_test(test_list),
		cmocka_unit_test(test_err),
		cmocka_unit_test(test_jsonid),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
