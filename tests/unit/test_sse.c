#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <cmocka.h>

#include "core/sse.h"

static const char *enc(cbuf *b, const char *id, const char *type, const char *data, long retry)
{
	sse_event ev = { .id = id, .event = type, .data = data, .data_len = data ? strlen(data) : 0, .retry = retry };
	cbuf_free(b);
	assert_int_equal(sse_encode(b, &ev), 0);
	assert_int_equal(b->len, sse_encoded_len(&ev));
	return cbuf_str(b);
}

static void test_encode(void **st)
{
	cbuf b = CBUF_INIT(64, 4096);
	(void)st;
	assert_string_equal(enc(&b, "0-1", NULL, "{\"a\":1}", -1), "id: 0-1\ndata: {\"a\":1}\n\n");
	assert_string_equal(enc(&b, NULL, "message", "x", -1), "event: message\ndata: x\n\n");
	/* every kind of line end starts a data line; a trailing one leaves an empty last line */
	assert_string_equal(enc(&b, NULL, NULL, "a\nb\r\nc\rd\n", -1), "data: a\ndata: b\ndata: c\ndata: d\ndata: \n\n");
	assert_string_equal(enc(&b, NULL, NULL, "", -1), "data: \n\n");
	assert_string_equal(enc(&b, "7", NULL, NULL, 1500), "id: 7\nretry: 1500\n\n");
	cbuf_free(&b);
	assert_int_equal(sse_comment(&b, "keep-alive"), 0);
	assert_string_equal(cbuf_str(&b), ": keep-alive\n\n");
	cbuf_free(&b);
	assert_int_equal(sse_comment(&b, NULL), 0);
	assert_string_equal(cbuf_str(&b), ":\n\n");
	cbuf_free(&b);
}

static void test_encode_refuses(void **st)
{
	cbuf b = CBUF_INIT(16, 32);
	char longid[SSE_ID_MAX + 2];
	sse_event ev = { .id = "a\nb", .data = "x", .data_len = 1, .retry = -1 };
	(void)st;
	assert_int_equal(sse_encode(&b, &ev), -EINVAL);
	ev.id = NULL;
	ev.event = "t\r";
	assert_int_equal(sse_encode(&b, &ev), -EINVAL);
	memset(longid, 'i', sizeof longid - 1);
	longid[sizeof longid - 1] = 0;
	ev.event = NULL;
	ev.id = longid;
	assert_int_equal(sse_encode(&b, &ev), -EINVAL);
	assert_int_equal(sse_comment(&b, "a\nb"), -EINVAL);
	/* over the buffer's cap: nothing at all is appended */
	ev.id = "1";
	ev.data = "0123456789012345678901234567890123456789";
	ev.data_len = strlen(ev.data);
	assert_int_equal(sse_encode(&b, &ev), -ENOBUFS);
	assert_int_equal(b.len, 0);
	ev.data_len = 5;
	assert_int_equal(sse_encode(&b, &ev), 0);
	assert_string_equal(cbuf_str(&b), "id: 1\ndata: 01234\n\n");
	cbuf_free(&b);
}

typedef struct got {
	int n;
	char id[8][64], type[8][64], data[8][256];
	long retry[8];
	bool has_data[8];
} got;

/* Feeds s in pieces of step bytes (0 = all at once); returns the last return code. */
static int feed(sse_dec *d, const char *s, size_t len, size_t step, got *g)
{
	size_t off = 0;
	memset(g, 0, sizeof *g);
	while (off < len) {
		size_t n = step && len - off > step ? step : len - off, used;
		const uint8_t *p = (const uint8_t *)s + off;
		for (;;) {
			sse_event ev;
			char err[96];
			int r = sse_dec_next(d, p, n, &used, &ev, err, sizeof err);
			if (r < 0)
				return r;
			assert_true(used <= n);
			p += used;
			n -= used;
			off += used;
			if (r == 0)
				break;
			assert_true(g->n < 8);
			snprintf(g->id[g->n], 64, "%s", ev.id ? ev.id : "(none)");
			snprintf(g->type[g->n], 64, "%s", ev.event ? ev.event : "(none)");
			assert_true(ev.data_len < 256);
			if (ev.data)
				memcpy(g->data[g->n], ev.data, ev.data_len);
			g->retry[g->n] = ev.retry;
			g->has_data[g->n] = ev.has_data;
			g->n++;
		}
	}
	return 0;
}

static void test_decode(void **st)
{
	static const char in[] =
		"\xEF\xBB\xBF: a comment\r\n"
		"id: 1\r\n"
		"event: message\r\n"
		"data: {\"x\":1}\r\n"
		"\r\n"
		"data:no space\n"
		"data:  two spaces\n"
		"unknown: field\n"
		"data\n"
		"\n"
		"id\r"
		"retry: 3000\r"
		"\r"
		"id: a\0b\n"
		"retry: 12x\n"
		"data: z\n"
		"\n"
		"data: unterminated";
	(void)st;
	for (size_t step = 0; step < 8; step++) {
		sse_dec d;
		got g;
		sse_dec_init(&d, 0, 0);
		assert_int_equal(feed(&d, in, sizeof in - 1, step, &g), 0);
		assert_int_equal(g.n, 4);
		assert_string_equal(g.id[0], "1");
		assert_string_equal(g.type[0], "message");
		assert_string_equal(g.data[0], "{\"x\":1}");
		assert_true(g.has_data[0]);
		assert_int_equal(g.retry[0], -1);
		/* the id carries over; one leading space is dropped; a field name alone is an empty value */
		assert_string_equal(g.id[1], "1");
		assert_string_equal(g.type[1], "(none)");
		assert_string_equal(g.data[1], "no space\n two spaces\n");
		/* an empty id clears it; an event with no data is still handed out */
		assert_string_equal(g.id[2], "");
		assert_false(g.has_data[2]);
		assert_int_equal(g.retry[2], 3000);
		/* an id holding a NUL is ignored, a retry that is not all digits too */
		assert_string_equal(g.id[3], "");
		assert_int_equal(g.retry[3], -1);
		assert_string_equal(g.data[3], "z");
		sse_dec_free(&d);
	}
}

static void test_decode_caps(void **st)
{
	sse_dec d;
	got g;
	char big[200];
	(void)st;
	memset(big, 'x', sizeof big);
	memcpy(big, "data: ", 6);
	sse_dec_init(&d, 64, 100);
	assert_int_equal(feed(&d, big, sizeof big, 0, &g), -E2BIG);
	/* it stays failed */
	assert_true(feed(&d, "data: a\n\n", 9, 0, &g) < 0);
	sse_dec_free(&d);

	sse_dec_init(&d, 64, 100);
	{
		char ev[400];
		size_t n = 0;
		for (int i = 0; i < 5; i++)
			n += (size_t)snprintf(ev + n, sizeof ev - n, "data: %030d\n", i);
		assert_int_equal(feed(&d, ev, n, 3, &g), -E2BIG);
	}
	sse_dec_free(&d);
}

static void test_round_trip(void **st)
{
	(void)st;
	srand(7);
	for (int t = 0; t < 200; t++) {
		char data[120], want[120];
		size_t n = (size_t)(rand() % 100), w = 0;
		cbuf b = CBUF_INIT(64, 1 << 16);
		sse_event ev = { .id = "s-1", .data = data, .data_len = n, .retry = -1 };
		sse_dec d;
		got g;
		for (size_t i = 0; i < n; i++) {
			int r = rand() % 10;
			data[i] = r == 0 ? '\n' : r == 1 ? '\r' : (char)('a' + r);
		}
		/* what comes out: every line end as LF */
		for (size_t i = 0; i < n; i++) {
			if (data[i] == '\r' && i + 1 < n && data[i + 1] == '\n')
				continue;
			want[w++] = data[i] == '\r' ? '\n' : data[i];
		}
		want[w] = 0;
		assert_int_equal(sse_encode(&b, &ev), 0);
		sse_dec_init(&d, 0, 0);
		assert_int_equal(feed(&d, cbuf_str(&b), b.len, (size_t)(t % 5), &g), 0);
		assert_int_equal(g.n, 1);
		assert_string_equal(g.id[0], "s-1");
		assert_string_equal(g.data[0], want);
		sse_dec_free(&d);
		cbuf_free(&b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encode),
		cmocka_unit_test(test_encode_refuses),
		cmocka_unit_test(test_decode),
		cmocka_unit_test(test_decode_caps),
		cmocka_unit_test(test_round_trip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
