#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "tunnel/sni.h"
#include "sni_samples.h"

static int parse(const uint8_t *p, size_t n, char *name)
{
	return sni_parse(p, n, name, SNI_NAME_MAX);
}

static void test_real_hellos(void **st)
{
	char name[SNI_NAME_MAX];
	(void)st;
	assert_int_equal(parse(hello_openssl13, hello_openssl13_len, name), SNI_FOUND);
	assert_string_equal(name, "mcp.abc123.edge.example");
	assert_int_equal(parse(hello_openssl12, hello_openssl12_len, name), SNI_FOUND);
	assert_string_equal(name, "mcp.abc123.edge.example");
	assert_int_equal(parse(hello_curl, hello_curl_len, name), SNI_FOUND);
	assert_string_equal(name, "route.tun42.edge.example"); /* lower-cased */
	assert_int_equal(parse(hello_node, hello_node_len, name), SNI_FOUND);
	assert_string_equal(name, "r.t.example.org");
	assert_int_equal(parse(hello_openssl_nosni, hello_openssl_nosni_len, name), SNI_NONE);
	assert_string_equal(name, "");
}

/* Every prefix of a real hello is "need more", never an error or a false answer. */
static void test_every_prefix_needs_more(void **st)
{
	char name[SNI_NAME_MAX];
	(void)st;
	for (size_t i = 0; i < hello_curl_len; i++)
		assert_int_equal(parse(hello_curl, i, name), SNI_NEED_MORE);
	for (size_t i = 0; i < hello_openssl_nosni_len; i++)
		assert_int_equal(parse(hello_openssl_nosni, i, name), SNI_NEED_MORE);
}

/* Re-frames the handshake message of a one-record hello into records of at most chunk bytes. */
static uint8_t *reframe(const uint8_t *h, size_t hlen, size_t chunk, size_t *outlen)
{
	const uint8_t *msg = h + 5;
	size_t mlen = hlen - 5, o = 0;
	uint8_t *out = malloc(mlen + (mlen / chunk + 1) * 5);
	for (size_t off = 0; off < mlen; off += chunk) {
		size_t k = mlen - off < chunk ? mlen - off : chunk;
		out[o++] = 22;
		out[o++] = 3;
		out[o++] = 1;
		out[o++] = (uint8_t)(k >> 8);
		out[o++] = (uint8_t)k;
		memcpy(out + o, msg + off, k);
		o += k;
	}
	*outlen = o;
	return out;
}

static void test_split_records(void **st)
{
	char name[SNI_NAME_MAX];
	size_t sizes[] = { 1, 2, 3, 4, 7, 100, 200 };
	(void)st;
	for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
		size_t n;
		uint8_t *b = reframe(hello_openssl13, hello_openssl13_len, sizes[s], &n);
		for (size_t i = 0; i < n; i++)
			assert_int_equal(parse(b, i, name), SNI_NEED_MORE);
		assert_int_equal(parse(b, n, name), SNI_FOUND);
		assert_string_equal(name, "mcp.abc123.edge.example");
		free(b);
	}
}

static void test_trailing_bytes_ignored(void **st)
{
	char name[SNI_NAME_MAX];
	uint8_t b[2048];
	(void)st;
	/* A client may pipeline a CCS or early data after the hello: the hello alone decides. */
	memcpy(b, hello_curl, hello_curl_len);
	memcpy(b + hello_curl_len, "\x14\x03\x03\x00\x01\x01", 6);
	assert_int_equal(parse(b, hello_curl_len + 6, name), SNI_FOUND);
}

static void test_garbage(void **st)
{
	char name[SNI_NAME_MAX];
	uint8_t b[1024];
	(void)st;
	assert_int_equal(parse((const uint8_t *)"GET / HTTP/1.1\r\n", 16, name), SNI_MALFORMED);
	assert_int_equal(parse((const uint8_t *)"\x16", 1, name), SNI_NEED_MORE);
	assert_int_equal(parse((const uint8_t *)"\x16\x02", 2, name), SNI_MALFORMED); /* not TLS 1.x */
	assert_int_equal(parse((const uint8_t *)"\x16\x03\x01\x00\x00", 5, name), SNI_MALFORMED); /* empty record */
	assert_int_equal(parse((const uint8_t *)"\x16\x03\x01\x40\x01", 5, name), SNI_MALFORMED); /* > 2^14 */
	assert_int_equal(parse((const uint8_t *)"\x16\x03\x01\x00\x04\x02\x00\x00\x00", 9, name), SNI_MALFORMED);
	assert_int_equal(parse((const uint8_t *)"\x16\x03\x01\x00\x01\x02", 6, name), SNI_MALFORMED);
	/* An alert record, then SSLv2-style hello */
	assert_int_equal(parse((const uint8_t *)"\x15\x03\x03\x00\x02\x02\x28", 7, name), SNI_MALFORMED);
	assert_int_equal(parse((const uint8_t *)"\x80\x2e\x01\x03\x01", 5, name), SNI_MALFORMED);

	/* Bogus inner lengths: each length field of a real hello, bumped. */
	memcpy(b, hello_openssl13, hello_openssl13_len);
	b[43] = 33; /* session id longer than 32 */
	assert_int_equal(parse(b, hello_openssl13_len, name), SNI_MALFORMED);
	memcpy(b, hello_openssl13, hello_openssl13_len);
	b[4] -= 1; /* record one byte shorter than the message: the last byte reads as a record header */
	assert_true(parse(b, hello_openssl13_len, name) != SNI_FOUND);
	memcpy(b, hello_openssl13, hello_openssl13_len);
	b[8] += 1; /* handshake length one more than the extensions hold */
	b[4] += 1;
	b[hello_openssl13_len] = 0;
	assert_int_equal(parse(b, hello_openssl13_len + 1, name), SNI_MALFORMED);
}

/* Finds the server_name extension in a one-record hello and returns the offset of its host name. */
static size_t find_name(const uint8_t *h, size_t n, const char *host)
{
	size_t hl = strlen(host);
	for (size_t i = 0; i + hl <= n; i++)
		if (!memcmp(h + i, host, hl))
			return i;
	fail();
	return 0;
}

static void test_bad_names(void **st)
{
	char name[SNI_NAME_MAX];
	uint8_t b[1024];
	size_t at;
	(void)st;
	memcpy(b, hello_openssl13, hello_openssl13_len);
	at = find_name(b, hello_openssl13_len, "mcp.abc123");
	b[at + 3] = '/';
	assert_int_equal(parse(b, hello_openssl13_len, name), SNI_MALFORMED);
	b[at + 3] = 0;
	assert_int_equal(parse(b, hello_openssl13_len, name), SNI_MALFORMED);
	b[at + 3] = '.';
	b[at] = '.';
	assert_int_equal(parse(b, hello_openssl13_len, name), SNI_MALFORMED);
	/* Too small an output buffer is refused, not truncated. */
	memcpy(b, hello_openssl13, hello_openssl13_len);
	assert_int_equal(sni_parse(b, hello_openssl13_len, name, 10), SNI_MALFORMED);
	/* The name length pointing past its list. */
	b[at - 1] += 1;
	assert_int_equal(parse(b, hello_openssl13_len, name), SNI_MALFORMED);
}

/* A hello made large with a padding extension (type 21), split into records of at most 16 KiB. */
/* The rule shared with the mTLS CONNECT entry. */
static void test_valid_host(void **st)
{
	char long_name[300];
	(void)st;
	assert_true(sni_valid_host("mcp.abc123.edge.example", 23));
	assert_true(sni_valid_host("MCP_x-1.Abc.example", 19));
	assert_true(sni_valid_host("mcp.abc:443", 7)); /* only the n bytes count */
	assert_false(sni_valid_host("", 0));
	assert_false(sni_valid_host(".mcp.abc", 8));
	assert_false(sni_valid_host("mcp.abc.", 8));
	assert_false(sni_valid_host("user@mcp.abc", 12));
	assert_false(sni_valid_host("mcp!.abc", 8));
	assert_false(sni_valid_host("[::1]", 5));
	/* Empty labels and over-long labels (issue 11, hardening 4). */
	assert_false(sni_valid_host("a..tun.example", 14));
	assert_false(sni_valid_host("mcp.abc..example", 16));
	assert_false(sni_valid_host("..", 2));
	assert_false(sni_valid_host(".", 1));
	{
		char l[80];
		memset(l, 'a', 64);
		memcpy(l + 64, ".x", 3);
		assert_false(sni_valid_host(l, 66));
		assert_true(sni_valid_host(l + 1, 65)); /* 63 bytes is the longest label */
	}
	assert_false(sni_valid_host("mcp%2e.abc", 10));
	assert_false(sni_valid_host("mcp abc", 7));
	assert_false(sni_valid_host("mcp\0abc", 7));
	memset(long_name, 'a', sizeof long_name);
	for (size_t i = 60; i < sizeof long_name; i += 61)
		long_name[i] = '.'; /* labels of 60 */
	assert_true(sni_valid_host(long_name, 253));
	assert_false(sni_valid_host(long_name, 254));
}

static uint8_t *big_hello(size_t pad, size_t *outlen)
{
	/* Body: version, random, empty session id, one suite, null compression, extensions. */
	size_t sn = strlen("a.b.example");
	size_t extlen = 4 + 2 + 1 + 2 + sn + 4 + pad;
	size_t body = 2 + 32 + 1 + 2 + 2 + 2 + 2 + extlen, mlen = 4 + body, o = 0, n;
	uint8_t *msg = calloc(1, mlen), *out;
	msg[o++] = 1;
	msg[o++] = (uint8_t)(body >> 16);
	msg[o++] = (uint8_t)(body >> 8);
	msg[o++] = (uint8_t)body;
	msg[o++] = 3;
	msg[o++] = 3;
	o += 32;
	msg[o++] = 0;
	msg[o++] = 0;
	msg[o++] = 2;
	msg[o++] = 0x13;
	msg[o++] = 0x01;
	msg[o++] = 1;
	msg[o++] = 0;
	msg[o++] = (uint8_t)(extlen >> 8);
	msg[o++] = (uint8_t)extlen;
	msg[o++] = 0; /* server_name */
	msg[o++] = 0;
	msg[o++] = (uint8_t)((5 + sn) >> 8);
	msg[o++] = (uint8_t)(5 + sn);
	msg[o++] = (uint8_t)((3 + sn) >> 8);
	msg[o++] = (uint8_t)(3 + sn);
	msg[o++] = 0;
	msg[o++] = (uint8_t)(sn >> 8);
	msg[o++] = (uint8_t)sn;
	memcpy(msg + o, "a.b.example", sn);
	o += sn;
	msg[o++] = 0; /* padding */
	msg[o++] = 21;
	msg[o++] = (uint8_t)(pad >> 8);
	msg[o++] = (uint8_t)pad;
	o += pad;
	assert_int_equal(o, mlen);
	out = malloc(mlen + (mlen / 16384 + 1) * 5);
	o = 0;
	for (size_t off = 0; off < mlen; off += n) {
		n = mlen - off < 16384 ? mlen - off : 16384;
		out[o++] = 22;
		out[o++] = 3;
		out[o++] = 1;
		out[o++] = (uint8_t)(n >> 8);
		out[o++] = (uint8_t)n;
		memcpy(out + o, msg + off, n);
		o += n;
	}
	free(msg);
	*outlen = o;
	return out;
}

static void test_sizes(void **st)
{
	char name[SNI_NAME_MAX];
	size_t n, base;
	uint8_t *b;
	(void)st;
	/* Exactly 16 KiB of handshake message is allowed. */
	b = big_hello(0, &n);
	base = n - 5;
	free(b);
	b = big_hello(SNI_MAX_HELLO - base, &n);
	assert_int_equal(parse(b, n, name), SNI_FOUND);
	assert_string_equal(name, "a.b.example");
	free(b);
	/* One byte more is too large, known from the header alone. */
	b = big_hello(SNI_MAX_HELLO - base + 1, &n);
	assert_int_equal(parse(b, 9, name), SNI_TOO_LARGE);
	assert_int_equal(parse(b, n, name), SNI_TOO_LARGE);
	free(b);
	/* A legal hello dribbled in 1-byte records runs past the input cap. */
	b = big_hello(8000, &n);
	{
		size_t m;
		uint8_t *r = reframe(b, n > 16389 ? 16389 : n, 1, &m);
		assert_int_equal(parse(r, m, name), SNI_TOO_LARGE);
		assert_int_equal(parse(r, SNI_MAX_INPUT - 1, name), SNI_NEED_MORE);
		free(r);
	}
	free(b);
}

static void test_alert(void **st)
{
	uint8_t a[SNI_ALERT_LEN];
	(void)st;
	assert_int_equal(sni_alert(a, SNI_ALERT_UNRECOGNIZED_NAME), 7);
	assert_memory_equal(a, "\x15\x03\x03\x00\x02\x02\x70", 7);
}

static void test_split(void **st)
{
	char route[64], id[64];
	(void)st;
	assert_int_equal(sni_split("mcp.abc123.edge.example", "edge.example", route, sizeof route, id, sizeof id), 0);
	assert_string_equal(route, "mcp");
	assert_string_equal(id, "abc123");
	assert_int_equal(sni_split("a.b.mcp.abc.EDGE.example", "edge.example", route, sizeof route, id, sizeof id), 0);
	assert_string_equal(route, "a.b.mcp");
	assert_string_equal(id, "abc");
	assert_int_equal(sni_split("abc.edge.example", "edge.example", route, sizeof route, id, sizeof id), -EINVAL);
	assert_int_equal(sni_split(".abc.edge.example", "edge.example", route, sizeof route, id, sizeof id), -EINVAL);
	assert_int_equal(sni_split("x..edge.example", "edge.example", route, sizeof route, id, sizeof id), -EINVAL);
	assert_int_equal(sni_split("x.abc.xedge.example", "edge.example", NULL, 0, NULL, 0), -EINVAL);
	assert_int_equal(sni_split("x.abc.other.example", "edge.example", NULL, 0, NULL, 0), -EINVAL);
	assert_int_equal(sni_split("edge.example", "edge.example", NULL, 0, NULL, 0), -EINVAL);
	assert_int_equal(sni_split("x.abcdef.edge.example", "edge.example", route, sizeof route, id, 4), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_real_hellos),
		cmocka_unit_test(test_every_prefix_needs_more),
		cmocka_unit_test(test_split_records),
		cmocka_unit_test(test_trailing_bytes_ignored),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_bad_names),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_alert),
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_valid_host),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
