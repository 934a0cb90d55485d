/* guard/redact: a password key and a bearer token inside a longer string never survive; PEM, JWT, AWS,
 * long base64; what is not secret survives; globs, custom patterns, the size cap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "guard/redact.h"

static char *run_redact(const redact *r, const char *js, redact_stats *st)
{
	json_t *v = json_loads(js, JSON_DECODE_ANY, NULL);
	char *out = NULL;
	assert_non_null(v);
	assert_int_equal(redact_apply_text(r, v, &out, NULL, st), 0);
	json_decref(v);
	return out;
}

static void test_secrets_never_survive(void **st)
{
	redact *r;
	redact_stats s;
	char err[200], *out;
	const char *in = "{\"user\":\"alice\",\"password\":\"hunter2-very-secret\",\"Auth\":{\"X-Api-Token\":42},"
			 "\"note\":\"call it with Authorization: Bearer abcDEF123.xyz-789_ok please\","
			 "\"list\":[\"x\",{\"client_secret\":[\"a\",\"b\"]},\"basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\"],"
			 "\"n\":3,\"ok\":true,\"path\":\"/srv/docs/readme.md\"}";
	(void)st;
	assert_int_equal(redact_new(NULL, 0, &r, err, sizeof err), 0);
	out = run_redact(r, in, &s);
	assert_null(strstr(out, "hunter2"));
	assert_null(strstr(out, "abcDEF123"));
	assert_null(strstr(out, "QWxhZGRpbjpvcGVuIHNlc2FtZQ"));
	assert_non_null(strstr(out, "\"password\":\"[REDACTED]\""));
	assert_non_null(strstr(out, "\"X-Api-Token\":\"[REDACTED]\""));
	assert_non_null(strstr(out, "\"client_secret\":\"[REDACTED]\""));
	assert_non_null(strstr(out, "\"note\":\"call it with Authorization: [REDACTED] please\""));
	assert_non_null(strstr(out, "\"user\":\"alice\""));
	assert_non_null(strstr(out, "\"path\":\"/srv/docs/readme.md\""));
	assert_non_null(strstr(out, "\"n\":3"));
	assert_int_equal(s.keys, 3);
	assert_int_equal(s.values, 2);
	assert_false(s.truncated);
	free(out);
	redact_free(r);
}

static void test_value_patterns(void **st)
{
	redact *r;
	char err[200], *out;
	const char *in = "[\"-----BEGIN RSA PRIVATE KEY-----\\nMIIEpAIBAAKCAQEA\\n-----END RSA PRIVATE KEY-----\\ntail\","
			 "\"k: -----BEGIN PRIVATE KEY-----\\nMIIEvQ cut off\","
			 "\"jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U x\","
			 "\"AKIAIOSFODNN7EXAMPLE\","
			 "\"blob dGhpcyBpcyBhIHZlcnkgbG9uZyBzZWNyZXQgdmFsdWUgMTIzNDU2Nzg5MA== end\","
			 "\"sha 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\","
			 "\"the bearer of this\",\"caf\\u00e9 Bearer tok_ABCDEFGH1234 \\u00e9\"]";
	(void)st;
	assert_int_equal(redact_new(NULL, 0, &r, err, sizeof err), 0);
	out = run_redact(r, in, NULL);
	assert_null(strstr(out, "MIIE"));
	assert_non_null(strstr(out, "[REDACTED]\\ntail"));
	assert_non_null(strstr(out, "\"k: [REDACTED]\""));
	assert_null(strstr(out, "eyJhbGci"));
	assert_null(strstr(out, "AKIAIOSFODNN7"));
	assert_null(strstr(out, "dGhpcyBp"));
	assert_non_null(strstr(out, "\"blob [REDACTED] end\""));
	assert_non_null(strstr(out, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")); /* hex survives */
	assert_non_null(strstr(out, "\"the bearer of this\""));
	assert_non_null(strstr(out, "\"caf\xc3\xa9 [REDACTED] \xc3\xa9\""));
	free(out);
	redact_free(r);
}

static void test_custom(void **st)
{
	const char *keys[] = { "*_pin", "ssn", NULL }, *none[] = { NULL };
	redact *r;
	char err[200], *out;
	(void)st;
	assert_int_equal(redact_new(keys, 0, &r, err, sizeof err), 0);
	assert_int_equal(redact_add_value_pattern(r, "\\b\\d{3}-\\d{2}-\\d{4}\\b", err, sizeof err), 0);
	out = run_redact(r, "{\"CARD_PIN\":1234,\"pin\":5,\"my_ssn_no\":\"x\",\"password\":\"p\",\"t\":\"id 123-45-6789.\"}", NULL);
	assert_string_equal(out, "{\"CARD_PIN\":\"[REDACTED]\",\"pin\":5,\"my_ssn_no\":\"[REDACTED]\",\"password\":\"p\","
				 "\"t\":\"id [REDACTED].\"}");
	free(out);
	assert_int_equal(redact_add_value_pattern(r, "(", err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "value pattern at offset 1"));
	redact_free(r);
	assert_int_equal(redact_new(none, 0, &r, err, sizeof err), 0);
	out = run_redact(r, "{\"password\":\"p\"}", NULL);
	assert_string_equal(out, "{\"password\":\"p\"}");
	free(out);
	redact_free(r);
	assert_int_equal(redact_new(NULL, 10, &r, err, sizeof err), -EINVAL);
	assert_null(r);
}

static void test_cap(void **st)
{
	redact *r;
	redact_stats s;
	char err[200], *out, *big = malloc(20001);
	json_t *v, *back;
	(void)st;
	assert_int_equal(redact_new(NULL, 200, &r, err, sizeof err), 0);
	/* escapes (\" and \u00e9 as UTF-8) and a secret near the head: still valid JSON within the cap */
	strcpy(big, "{\"password\":\"hunter2\",\"x\":\"");
	for (size_t i = strlen(big); i < 19000; i += 2)
		memcpy(big + i, "\xc3\xa9", 2), big[i + 2] = 0;
	strcat(big, "\"}");
	v = json_loads(big, 0, NULL);
	assert_non_null(v);
	assert_int_equal(redact_apply_text(r, v, &out, NULL, &s), 0);
	assert_true(s.truncated);
	assert_true(strlen(out) <= 200);
	assert_null(strstr(out, "hunter2"));
	back = json_loads(out, 0, NULL);
	assert_non_null(back);
	assert_true(json_is_true(json_object_get(back, "truncated")));
	assert_int_equal(json_integer_value(json_object_get(back, "bytes")), s.bytes);
	json_decref(back);
	free(out);
	json_decref(v);
	/* depth past the cap is replaced whole, no recursion past it */
	{
		size_t n = 1000;
		memset(big, '[', n);
		memset(big + n, ']', n);
		big[2 * n] = 0;
		v = json_loads(big, 0, NULL); /* jansson's own limit is 2048 */
		assert_non_null(v);
		assert_int_equal(redact_apply_text(r, v, &out, NULL, &s), 0);
		assert_non_null(strstr(out, "\"[REDACTED]\""));
		free(out);
		json_decref(v);
	}
	/* Without stats the size is bounded first and only dumped when the bound passes the cap: the cap must
	 * cut the same values either way. Sizes around 200 bytes: a string of n 'a's is n + 2 bytes, one of
	 * n control bytes 6n + 2. */
	{
		static const struct { size_t n; char fill; } cases[] = { { 150, 'a' }, { 198, 'a' }, { 199, 'a' },
									  { 30, 1 }, { 33, 1 }, { 40, 1 } };
		for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
			json_t *with, *without, *num = json_real(-1.2345678901234567e-300);
			char *a, *b;
			memset(big, cases[i].fill, cases[i].n);
			big[cases[i].n] = 0;
			v = json_pack("[s,o]", big, num);
			assert_int_equal(redact_apply(r, json_array_get(v, 0), &with, &s), 0);
			assert_int_equal(redact_apply(r, json_array_get(v, 0), &without, NULL), 0);
			assert_non_null(a = json_dumps(with, JSON_COMPACT | JSON_ENCODE_ANY));
			assert_non_null(b = json_dumps(without, JSON_COMPACT | JSON_ENCODE_ANY));
			assert_string_equal(a, b);
			assert_int_equal(json_is_object(without), s.bytes > 200); /* truncated exactly when over */
			free(a);
			free(b);
			json_decref(with);
			json_decref(without);
			assert_int_equal(redact_apply(r, v, &without, NULL), 0);
			assert_int_equal(redact_apply(r, v, &with, &s), 0);
			assert_int_equal(json_is_object(without), s.bytes > 200);
			assert_int_equal(json_is_object(with), s.bytes > 200);
			json_decref(with);
			json_decref(without);
			json_decref(v);
		}
	}
	free(big);
	redact_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_secrets_never_survive),
		cmocka_unit_test(test_value_patterns),
		cmocka_unit_test(test_custom),
		cmocka_unit_test(test_cap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
