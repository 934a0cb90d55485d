/* The tool worker's frames (tool_wire.h): round trip, chunking, the cap, stray text, unknown flags. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sandbox/tools/tool_wire.h"

static size_t frame(char *out, uint8_t flags, const char *payload)
{
	uint8_t h[TWIRE_HDR];
	size_t n = strlen(payload);
	twire_header(h, flags, (uint32_t)n);
	memcpy(out, h, sizeof h);
	memcpy(out + sizeof h, payload, n);
	return sizeof h + n;
}

static void test_round_trip_bytewise(void **st)
{
	char buf[128];
	size_t n = frame(buf, TWIRE_F_ERROR, "no such file");
	n += frame(buf + n, 0, "");
	struct twire_dec d;
	int got = 0;
	(void)st;
	twire_dec_init(&d, 64);
	for (size_t i = 0; i < n; i++) {
		size_t used;
		int rc = twire_dec_feed(&d, buf + i, 1, &used);
		assert_int_equal(used, 1);
		assert_true(rc >= 0);
		if (rc == 1) {
			if (got++ == 0) {
				assert_int_equal(d.flags, TWIRE_F_ERROR);
				assert_string_equal(d.payload, "no such file");
			} else {
				assert_int_equal(d.flags, 0);
				assert_int_equal(d.len, 0);
				assert_string_equal(d.payload, "");
			}
			twire_dec_reset(&d);
		}
	}
	assert_int_equal(got, 2);
	twire_dec_reset(&d);
}

static void test_stops_at_frame_end(void **st)
{
	char buf[128];
	size_t n = frame(buf, 0, "one"), used;
	n += frame(buf + n, 0, "two");
	struct twire_dec d;
	(void)st;
	twire_dec_init(&d, 64);
	assert_int_equal(twire_dec_feed(&d, buf, n, &used), 1);
	assert_int_equal(used, TWIRE_HDR + 3); /* the next frame is left for the caller */
	assert_string_equal(d.payload, "one");
	twire_dec_reset(&d);
}

static void test_refusals(void **st)
{
	char buf[64];
	struct twire_dec d;
	size_t used;
	(void)st;
	twire_dec_init(&d, 4);
	assert_int_equal(twire_dec_feed(&d, "ld.so: error", 12, &used), -EBADMSG);
	assert_int_equal(used, 1); /* at the first wrong byte */
	twire_dec_reset(&d);
	size_t n = frame(buf, 0, "12345");
	assert_int_equal(twire_dec_feed(&d, buf, n, &used), -EMSGSIZE);
	twire_dec_reset(&d);
	n = frame(buf, 0x80, "x");
	assert_int_equal(twire_dec_feed(&d, buf, n, &used), -EBADMSG);
	twire_dec_reset(&d);
	n = frame(buf, 0, "1234");
	assert_int_equal(twire_dec_feed(&d, buf, n - 1, &used), 0); /* short: more needed */
	assert_int_equal(twire_dec_feed(&d, buf + n - 1, 1, &used), 1);
	twire_dec_reset(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_bytewise),
		cmocka_unit_test(test_stops_at_frame_end),
		cmocka_unit_test(test_refusals),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
