/* guard/jwt: strict base64url, compact JWS parse, JWKS parse, RS256/ES256 verification and the claims, with
 * keys made by OpenSSL in the test: the good tokens pass, and each attack class or broken claim fails with
 * its reason (alg none, HS256 key confusion, kid unknown, tampering, padding, duplicates, crit, leeway). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <openssl/pem.h>

#include "guard/jwt.h"
#include "jwt_testkeys.h"

#define NOW 1700000000LL
#define ISS "https://idp.example.com/"
#define AUD "https://files.example.com/"

static EVP_PKEY *rsa, *ec, *rsa_other;
static jwt_keys *keys;

static int setup(void **st)
{
	char err[300], *js;
	(void)st;
	rsa = tk_rsa(2048);
	ec = tk_p256();
	rsa_other = tk_rsa(2048);
	js = tk_jwks(tk_jwk(rsa, "r1", "\"use\":\"sig\",\"alg\":\"RS256\""), tk_jwk(ec, "e1", NULL), NULL);
	if (jwt_keys_parse(js, strlen(js), &keys, NULL, err, sizeof err) < 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	free(js);
	return 0;
}

static int teardown(void **st)
{
	(void)st;
	jwt_keys_free(keys);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(rsa_other);
	return 0;
}

static const char *const auds[] = { AUD };

static jwt_expect expect(void)
{
	jwt_expect e = { .issuer = ISS, .audiences = auds, .naudiences = 1, .now_s = NOW,
			 .leeway_s = JWT_LEEWAY_DEFAULT_S };
	return e;
}

/* Claims with defaults; extra replaces nothing, it is appended (so tests write their own when needed). */
static char *claims(const char *extra)
{
	char *s = malloc(2048);
	snprintf(s, 2048, "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"alice\",\"exp\":%lld,\"iat\":%lld%s%s}", ISS, AUD,
		 NOW + 300, NOW - 10, extra ? "," : "", extra ? extra : "");
	return s;
}

/* Checks token and returns rc; reason copied for asserts. */
static int check_e(const char *tok, const jwt_expect *e, jwt_result *r)
{
	return jwt_check(tok, strlen(tok), keys, e, r);
}

static int check(const char *tok, jwt_result *r)
{
	jwt_expect e = expect();
	return check_e(tok, &e, r);
}

static void signed_check(EVP_PKEY *k, const char *hdr, const char *payload, int want, const char *reason)
{
	char *t = tk_sign(k, hdr, payload);
	jwt_result r;
	int rc = check(t, &r);
	if (rc != want || (reason && !strstr(r.reason, reason)))
		fail_msg("want %d \"%s\", got %d \"%s\" for %s / %s", want, reason ? reason : "", rc, r.reason, hdr, payload);
	free(t);
}

static void test_b64url(void **st)
{
	unsigned char b[64];
	size_t n;
	char enc[64];
	(void)st;
	assert_int_equal(jwt_b64url_decode("QQ", 2, b, sizeof b, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(b[0], 'A');
	assert_int_equal(jwt_b64url_decode("QUJD", 4, b, sizeof b, &n), 0);
	assert_memory_equal(b, "ABC", 3);
	assert_int_equal(jwt_b64url_decode("-_8", 3, b, sizeof b, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(b[0], 0xfb);
	assert_int_equal(b[1], 0xff);
	assert_int_equal(jwt_b64url_decode("QQ==", 4, b, sizeof b, &n), -EINVAL);   /* padding */
	assert_int_equal(jwt_b64url_decode("Q+/A", 4, b, sizeof b, &n), -EINVAL);   /* base64, not base64url */
	assert_int_equal(jwt_b64url_decode("QUJDR", 5, b, sizeof b, &n), -EINVAL);  /* 4k+1 */
	assert_int_equal(jwt_b64url_decode("QR", 2, b, sizeof b, &n), -EINVAL);     /* unused bits set */
	assert_int_equal(jwt_b64url_decode("Q Q", 3, b, sizeof b, &n), -EINVAL);
	assert_int_equal(jwt_b64url_decode("QUJD", 4, b, 2, &n), -ENOBUFS);
	assert_int_equal(jwt_b64url_encode((const unsigned char *)"\xfb\xff", 2, enc), 3);
	assert_string_equal(enc, "-_8");
	assert_int_equal(jwt_b64url_encode((const unsigned char *)"ABCD", 4, enc), 6);
	assert_string_equal(enc, "QUJDRA");
}

static void test_good(void **st)
{
	char *c = claims(NULL), *t;
	jwt_result r;
	jwt *j;
	char err[200];
	(void)st;
	t = tk_sign(rsa, "{\"alg\":\"RS256\",\"kid\":\"r1\",\"typ\":\"JWT\"}", c);
	assert_int_equal(check(t, &r), 0);
	assert_string_equal(r.subject, "alice");
	assert_int_equal(jwt_parse(t, strlen(t), &j, err, sizeof err), 0);
	assert_int_equal(jwt_alg_of(j), JWT_RS256);
	assert_string_equal(jwt_kid(j), "r1");
	jwt_free(j);
	free(t);
	t = tk_sign(ec, "{\"alg\":\"ES256\",\"kid\":\"e1\",\"typ\":\"at+jwt\"}", c);
	assert_int_equal(check(t, &r), 0);
	assert_string_equal(r.subject, "alice");
	free(t);
	/* no kid: every key of the type is tried */
	signed_check(rsa, "{\"alg\":\"RS256\"}", c, 0, NULL);
	signed_check(ec, "{\"alg\":\"ES256\"}", c, 0, NULL);
	free(c);
	/* aud as an array holding ours */
	c = malloc(512);
	snprintf(c, 512, "{\"iss\":\"%s\",\"aud\":[\"other\",\"%s\"],\"sub\":\"bob\",\"exp\":%lld}", ISS, AUD, NOW + 5);
	signed_check(rsa, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", c, 0, NULL);
	free(c);
}

static void test_times(void **st)
{
	char c[512];
	const char *h = "{\"alg\":\"ES256\",\"kid\":\"e1\"}";
	(void)st;
	snprintf(c, sizeof c, "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"a\",\"exp\":%lld}", ISS, AUD, NOW - 61);
	signed_check(ec, h, c, -EACCES, "expired 61 s ago");
	snprintf(c, sizeof c, "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"a\",\"exp\":%lld}", ISS, AUD, NOW - 60);
	signed_check(ec, h, c, -EACCES, "expired");
	snprintf(c, sizeof c, "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"a\",\"exp\":%lld}", ISS, AUD, NOW - 30);
	signed_check(ec, h, c, 0, NULL); /* within the leeway */
	snprintf(c, sizeof c, "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"a\",\"exp\":%lld.5}", ISS, AUD, NOW + 30);
	signed_check(ec, h, c, 0, NULL); /* a NumericDate may be a real */
	snprintf(c, sizeof c, "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"a\"}", ISS, AUD);
	signed_check(ec, h, c, -EACCES, "no exp");
	snprintf(c, sizeof c, "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"a\",\"exp\":\"%lld\"}", ISS, AUD, NOW + 30);
	signed_check(ec, h, c, -EACCES, "exp is not a NumericDate");
	snprintf(c, sizeof c, "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"a\",\"exp\":%lld,\"nbf\":%lld}", ISS, AUD,
		 NOW + 900, NOW + 120);
	signed_check(ec, h, c, -EACCES, "not valid for another 120 s");
	snprintf(c, sizeof c, "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"a\",\"exp\":%lld,\"nbf\":%lld}", ISS, AUD,
		 NOW + 900, NOW + 30);
	signed_check(ec, h, c, 0, NULL);
	snprintf(c, sizeof c, "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"a\",\"exp\":%lld,\"iat\":%lld}", ISS, AUD,
		 NOW + 900, NOW + 600);
	signed_check(ec, h, c, -EACCES, "iat is in the future");
	/* leeway 0: 30 s past exp fails */
	{
		char *t;
		jwt_result r;
		jwt_expect e = expect();
		e.leeway_s = 0;
		snprintf(c, sizeof c, "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"a\",\"exp\":%lld}", ISS, AUD, NOW - 30);
		t = tk_sign(ec, h, c);
		assert_int_equal(check_e(t, &e, &r), -EACCES);
		free(t);
	}
}

static void test_claims(void **st)
{
	char c[700];
	const char *h = "{\"alg\":\"RS256\",\"kid\":\"r1\"}";
	(void)st;
	snprintf(c, sizeof c, "{\"iss\":\"%s\",\"aud\":\"https://other.example.com/\",\"sub\":\"a\",\"exp\":%lld}", ISS,
		 NOW + 60);
	signed_check(rsa, h, c, -EACCES, "aud does not name this resource (" AUD ")");
	snprintf(c, sizeof c, "{\"iss\":\"%s\",\"aud\":[\"x\",\"y\"],\"sub\":\"a\",\"exp\":%lld}", ISS, NOW + 60);
	signed_check(rsa, h, c, -EACCES, "aud does not name");
	snprintf(c, sizeof c, "{\"iss\":\"%s\",\"sub\":\"a\",\"exp\":%lld}", ISS, NOW + 60);
	signed_check(rsa, h, c, -EACCES, "no aud");
	snprintf(c, sizeof c, "{\"iss\":\"%s\",\"aud\":7,\"sub\":\"a\",\"exp\":%lld}", ISS, NOW + 60);
	signed_check(rsa, h, c, -EACCES, "aud is not a string");
	snprintf(c, sizeof c, "{\"iss\":\"https://evil.example.com/\",\"aud\":\"%s\",\"sub\":\"a\",\"exp\":%lld}", AUD,
		 NOW + 60);
	signed_check(rsa, h, c, -EACCES, "iss is not the expected issuer");
	snprintf(c, sizeof c, "{\"iss\":\"https://idp.example.com\",\"aud\":\"%s\",\"sub\":\"a\",\"exp\":%lld}", AUD,
		 NOW + 60);
	signed_check(rsa, h, c, -EACCES, "iss is not the expected issuer"); /* exact: no slash games */
	snprintf(c, sizeof c, "{\"aud\":\"%s\",\"sub\":\"a\",\"exp\":%lld}", AUD, NOW + 60);
	signed_check(rsa, h, c, -EACCES, "no iss");
	snprintf(c, sizeof c, "{\"iss\":\"%s\",\"aud\":\"%s\",\"exp\":%lld}", ISS, AUD, NOW + 60);
	signed_check(rsa, h, c, -EACCES, "no sub");
	snprintf(c, sizeof c, "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"\",\"exp\":%lld}", ISS, AUD, NOW + 60);
	signed_check(rsa, h, c, -EACCES, "sub is empty");
	snprintf(c, sizeof c, "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"a\\nb\",\"exp\":%lld}", ISS, AUD, NOW + 60);
	signed_check(rsa, h, c, -EACCES, "control character");
	snprintf(c, sizeof c, "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"%0300d\",\"exp\":%lld}", ISS, AUD, 7, NOW + 60);
	signed_check(rsa, h, c, -EACCES, "over 255 bytes");
}

static void test_scopes(void **st)
{
	static const char *const need[] = { "files:read", "files:write" };
	char c[600], *t;
	const char *h = "{\"alg\":\"ES256\",\"kid\":\"e1\"}";
	jwt_expect e = expect();
	jwt_result r;
	(void)st;
	e.scopes = need;
	e.nscopes = 2;
#define TRY(extra, want, why)                                                                                  \
	do {                                                                                                   \
		snprintf(c, sizeof c, "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"carol\",\"exp\":%lld%s}", ISS, AUD,   \
			 NOW + 60, extra);                                                                     \
		t = tk_sign(ec, h, c);                                                                         \
		assert_int_equal(check_e(t, &e, &r), want);                                                    \
		if (*why)                                                                                      \
			assert_non_null(strstr(r.reason, why));                                                 \
		free(t);                                                                                       \
	} while (0)
	TRY(",\"scope\":\"openid files:read  files:write\"", 0, "");
	TRY(",\"scp\":[\"files:write\",\"files:read\"]", 0, "");
	TRY(",\"scp\":\"files:write files:read\"", 0, "");
	TRY(",\"scope\":\"files:read\",\"scp\":[\"files:write\"]", 0, "");
	TRY(",\"scope\":\"files:read\"", -EPERM, "lacks the scope \"files:write\"");
	assert_string_equal(r.subject, "carol"); /* known, for the audit of the 403 */
	TRY("", -EPERM, "lacks the scope \"files:read\"");
	TRY(",\"scope\":\"files:readx files:writex\"", -EPERM, "files:read");
	TRY(",\"scope\":[\"files:read\"]", -EACCES, "malformed");
	TRY(",\"scp\":[1]", -EACCES, "malformed");
#undef TRY
}

static void test_alg_attacks(void **st)
{
	char *c = claims(NULL), *t, *h, *p, buf[4096], *pem = NULL;
	jwt_result r;
	BIO *bio;
	long pemlen;
	(void)st;
	/* alg none, signature empty or not */
	h = tk_b64s("{\"alg\":\"none\"}");
	p = tk_b64s(c);
	snprintf(buf, sizeof buf, "%s.%s.", h, p);
	assert_int_equal(check(buf, &r), -EACCES);
	assert_non_null(strstr(r.reason, "empty part"));
	snprintf(buf, sizeof buf, "%s.%s.AAAA", h, p);
	assert_int_equal(check(buf, &r), -EACCES);
	assert_non_null(strstr(r.reason, "alg none"));
	free(h);
	h = tk_b64s("{\"alg\":\"None\"}");
	snprintf(buf, sizeof buf, "%s.%s.AAAA", h, p);
	assert_int_equal(check(buf, &r), -EACCES);
	assert_non_null(strstr(r.reason, "alg none"));
	free(h);
	free(p);
	/* HS256 with the RSA public key (PEM) as the HMAC secret: the classic key confusion */
	assert_non_null(bio = BIO_new(BIO_s_mem()));
	assert_int_equal(PEM_write_bio_PUBKEY(bio, rsa), 1);
	pemlen = BIO_get_mem_data(bio, &pem);
	assert_true(pemlen > 0);
	memcpy(buf, pem, (size_t)pemlen);
	buf[pemlen] = 0;
	BIO_free(bio);
	t = tk_sign_raw(NULL, "{\"alg\":\"HS256\",\"kid\":\"r1\"}", c, buf);
	assert_int_equal(check(t, &r), -EACCES);
	assert_non_null(strstr(r.reason, "RS256 or ES256 only"));
	free(t);
	signed_check(rsa, "{\"alg\":\"PS256\",\"kid\":\"r1\"}", c, -EACCES, "RS256 or ES256 only");
	signed_check(rsa, "{\"alg\":\"rs256\",\"kid\":\"r1\"}", c, -EACCES, "RS256 or ES256 only");
	signed_check(rsa, "{\"kid\":\"r1\"}", c, -EACCES, "no alg");
	/* alg and key type must fit: an RS256 header naming the EC key's kid finds no key */
	signed_check(rsa, "{\"alg\":\"RS256\",\"kid\":\"e1\"}", c, -EACCES, "no signing key with the token's kid");
	/* an ES256 token signed by an unknown EC key, no kid: tried against e1, fails */
	{
		EVP_PKEY *other = tk_p256();
		signed_check(other, "{\"alg\":\"ES256\"}", c, -EACCES, "does not verify");
		EVP_PKEY_free(other);
	}
	/* kid unknown: flagged so the fetcher can refetch */
	t = tk_sign(rsa_other, "{\"alg\":\"RS256\",\"kid\":\"../../etc/passwd\"}", c);
	assert_int_equal(check(t, &r), -EACCES);
	assert_true(r.unknown_kid);
	assert_null(strstr(r.reason, "passwd")); /* a kid is not echoed */
	free(t);
	/* right kid, wrong key */
	signed_check(rsa_other, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", c, -EACCES, "does not verify");
	/* crit, typ, kid types, duplicates */
	signed_check(rsa, "{\"alg\":\"RS256\",\"kid\":\"r1\",\"crit\":[\"b64\"],\"b64\":false}", c, -EACCES, "crit");
	signed_check(rsa, "{\"alg\":\"RS256\",\"kid\":\"r1\",\"typ\":\"dpop+jwt\"}", c, -EACCES, "typ");
	signed_check(rsa, "{\"alg\":\"RS256\",\"kid\":7}", c, -EACCES, "kid is not a string");
	signed_check(rsa, "{\"alg\":\"RS256\",\"alg\":\"none\",\"kid\":\"r1\"}", c, -EACCES, "repeats a key");
	signed_check(rsa, "{\"alg\":\"RS256\",\"kid\":\"r1\"}",
		     "{\"sub\":\"alice\",\"sub\":\"admin\",\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"exp\":1800000000}",
		     -EACCES, "payload is not a JSON object (or repeats a key)");
	signed_check(rsa, "[\"RS256\"]", c, -EACCES, "header is not a JSON object");
	/* header keys we never use are ignored, never trusted: an embedded jwk does not help a forger */
	signed_check(rsa_other, "{\"alg\":\"RS256\",\"jku\":\"https://evil/\",\"jwk\":{\"kty\":\"RSA\"}}", c, -EACCES,
		     "does not verify");
	free(c);
}

static void test_tamper(void **st)
{
	char *c = claims(NULL), *t, *t2, *p2, *dot;
	jwt_result r;
	size_t n;
	(void)st;
	t = tk_sign(rsa, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", c);
	/* tampered payload: sub admin, old signature */
	p2 = tk_b64s("{\"iss\":\"" ISS "\",\"aud\":\"" AUD "\",\"sub\":\"admin\",\"exp\":1800000000}");
	t2 = malloc(strlen(t) + strlen(p2) + 8);
	dot = strchr(t, '.');
	sprintf(t2, "%.*s.%s%s", (int)(dot - t), t, p2, strrchr(t, '.'));
	assert_int_equal(check(t2, &r), -EACCES);
	assert_string_equal(r.reason, "token signature does not verify");
	assert_string_equal(r.subject, "");
	free(t2);
	free(p2);
	/* tampered signature: one character changed */
	t2 = strdup(t);
	n = strlen(t2);
	t2[n - 3] = t2[n - 3] == 'A' ? 'B' : 'A';
	assert_int_equal(check(t2, &r), -EACCES);
	assert_non_null(strstr(r.reason, "does not verify"));
	/* a signature one byte short */
	t2[n - 3] = 0;
	assert_int_equal(check(t2, &r), -EACCES);
	free(t2);
	/* padding, bad characters, dots */
	t2 = malloc(strlen(t) + 8);
	sprintf(t2, "%s==", t);
	assert_int_equal(check(t2, &r), -EACCES);
	assert_non_null(strstr(r.reason, "signature is not base64url"));
	sprintf(t2, "%s.x", t);
	assert_int_equal(check(t2, &r), -EACCES);
	assert_non_null(strstr(r.reason, "not a compact JWS"));
	strcpy(t2, t);
	*strchr(t2, '.') = '*';
	assert_int_equal(check(t2, &r), -EACCES);
	assert_non_null(strstr(r.reason, "not a compact JWS"));
	strcpy(t2, t);
	t2[1] = '+';
	assert_int_equal(check(t2, &r), -EACCES);
	assert_non_null(strstr(r.reason, "header is not base64url"));
	strcpy(t2, t);
	strchr(t2, '.')[2] = '/';
	assert_int_equal(check(t2, &r), -EACCES);
	assert_non_null(strstr(r.reason, "payload is not base64url"));
	free(t2);
	assert_int_equal(check("..", &r), -EACCES);
	assert_int_equal(check("", &r), -EACCES);
	free(t);
	/* ES256: the signature must be 64 bytes */
	t = tk_sign(ec, "{\"alg\":\"ES256\",\"kid\":\"e1\"}", c);
	t2 = malloc(strlen(t) + 8);
	sprintf(t2, "%sAA", t); /* 64 bytes -> 66 */
	assert_int_equal(check(t2, &r), -EACCES);
	assert_non_null(strstr(r.reason, "not 64 bytes"));
	free(t2);
	free(t);
	free(c);
}

static void test_huge(void **st)
{
	char *big = malloc(JWT_MAX_TOKEN + 200), *c = malloc(JWT_MAX_TOKEN), *t;
	jwt_result r;
	(void)st;
	memset(big, 'A', JWT_MAX_TOKEN + 199);
	big[JWT_MAX_TOKEN + 199] = 0;
	big[10] = big[20] = '.';
	assert_int_equal(check(big, &r), -EACCES);
	assert_non_null(strstr(r.reason, "over 16384 bytes"));
	/* a signed token just over the cap also fails before any crypto */
	snprintf(c, JWT_MAX_TOKEN, "{\"iss\":\"%s\",\"aud\":\"%s\",\"sub\":\"a\",\"exp\":%lld,\"pad\":\"%0*d\"}", ISS, AUD,
		 NOW + 60, 12100, 0);
	t = tk_sign(rsa, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", c);
	assert_true(strlen(t) > JWT_MAX_TOKEN);
	assert_int_equal(check(t, &r), -EACCES);
	assert_non_null(strstr(r.reason, "over"));
	free(t);
	free(big);
	free(c);
}

static void keys_fail(const char *js, const char *why)
{
	jwt_keys *k = NULL;
	char err[300] = "";
	int rc = jwt_keys_parse(js, strlen(js), &k, NULL, err, sizeof err);
	if (rc != -EINVAL || !strstr(err, why))
		fail_msg("want -EINVAL \"%s\", got %d \"%s\"", why, rc, err);
	assert_null(k);
}

static void test_jwks(void **st)
{
	EVP_PKEY *small = tk_rsa(1024);
	jwt_keys *k;
	char err[300], *js, big[20000];
	size_t skipped = 9, o;
	(void)st;
	/* skipped kinds: enc keys, other algs, oct secrets, other curves; a usable one stays */
	js = tk_jwks(tk_jwk(rsa, "enc", "\"use\":\"enc\""), tk_jwk(rsa, "ps", "\"alg\":\"PS256\""),
		     strdup("{\"kty\":\"oct\",\"k\":\"c2VjcmV0\",\"kid\":\"h\"}"),
		     strdup("{\"kty\":\"EC\",\"crv\":\"P-384\",\"x\":\"AA\",\"y\":\"AA\"}"),
		     tk_jwk(rsa, "wrap", "\"key_ops\":[\"wrapKey\"]"), tk_jwk(ec, "ok", "\"key_ops\":[\"verify\"]"), NULL);
	assert_int_equal(jwt_keys_parse(js, strlen(js), &k, &skipped, err, sizeof err), 0);
	assert_int_equal(jwt_keys_count(k), 1);
	assert_int_equal(skipped, 5);
	assert_true(jwt_keys_has_kid(k, "ok"));
	assert_false(jwt_keys_has_kid(k, "h"));
	assert_false(jwt_keys_has_kid(k, "enc"));
	jwt_keys_free(k);
	free(js);
	/* only an HMAC secret: nothing usable */
	keys_fail("{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}", "no usable signing key");
	keys_fail("{\"keys\":[]}", "no usable signing key");
	js = tk_jwks(tk_jwk(small, "s", NULL), NULL);
	keys_fail(js, "1024 bits");
	free(js);
	keys_fail("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\","
		  "\"y\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAE\"}]}",
		  "not on P-256");
	keys_fail("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"AA\",\"y\":\"AA\"}]}", "32 bytes");
	keys_fail("{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB==\",\"e\":\"AQAB\"}]}", "base64url");
	keys_fail("{\"keys\":[{\"kty\":\"RSA\"}]}", "base64url");
	keys_fail("{\"keys\":[7]}", "not an object");
	keys_fail("{\"keys\":[{\"n\":\"x\"}]}", "no kty");
	keys_fail("{\"keys\":[], \"keys\":[]}", "not JSON");
	keys_fail("[1]", "\"keys\" array");
	keys_fail("{\"keys\":{}}", "\"keys\" array");
	keys_fail("nope", "not JSON");
	js = tk_jwks(tk_jwk(rsa, "x", "\"e\":\"AQAB\""), NULL); /* a repeated member inside a key */
	keys_fail(js, "not JSON");
	free(js);
	{
		/* even exponent */
		char *j = tk_jwk(rsa, "even", NULL), *e = strstr(j, "\"e\":\"AQAB\"");
		assert_non_null(e);
		memcpy(e, "\"e\":\"AQAC\"", 10);
		js = tk_jwks(j, NULL);
		keys_fail(js, "exponent");
		free(js);
	}
	/* too many keys */
	o = (size_t)snprintf(big, sizeof big, "{\"keys\":[");
	for (int i = 0; i <= JWT_MAX_KEYS; i++)
		o += (size_t)snprintf(big + o, sizeof big - o, "%s{\"kty\":\"oct\"}", i ? "," : "");
	snprintf(big + o, sizeof big - o, "]}");
	keys_fail(big, "at most 64");
	/* no keys loaded */
	{
		char *c = claims(NULL), *t = tk_sign(rsa, "{\"alg\":\"RS256\",\"kid\":\"r1\"}", c);
		jwt_result r;
		jwt_expect e = expect();
		assert_int_equal(jwt_check(t, strlen(t), NULL, &e, &r), -EACCES);
		assert_string_equal(r.reason, "signing keys not loaded yet");
		free(t);
		free(c);
	}
	EVP_PKEY_free(small);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_b64url),   cmocka_unit_test(test_good),        cmocka_unit_test(test_times),
		cmocka_unit_test(test_claims),   cmocka_unit_test(test_scopes),      cmocka_unit_test(test_alg_attacks),
		cmocka_unit_test(test_tamper),   cmocka_unit_test(test_huge),        cmocka_unit_test(test_jwks),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
