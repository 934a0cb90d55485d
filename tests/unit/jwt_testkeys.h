/* Test helpers for JWT: RSA and P-256 keys made by OpenSSL, their public JWKs, and signed compact tokens.
 * Header-only (static), shared by test_jwt.c, test_auth.c and test_jwks.c. */
#ifndef POSTERN_TEST_JWT_TESTKEYS_H
#define POSTERN_TEST_JWT_TESTKEYS_H

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard/jwt.h"

static EVP_PKEY *tk_rsa(unsigned bits)
{
	EVP_PKEY *k = EVP_RSA_gen(bits);
	assert_non_null(k);
	return k;
}

static EVP_PKEY *tk_p256(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	assert_non_null(k);
	return k;
}

static void tk_bn_b64(EVP_PKEY *k, const char *param, int pad, char *out)
{
	BIGNUM *bn = NULL;
	unsigned char buf[1100];
	int n;
	assert_int_equal(EVP_PKEY_get_bn_param(k, param, &bn), 1);
	n = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
	assert_true(n > 0);
	jwt_b64url_encode(buf, (size_t)n, out);
	BN_free(bn);
}

/* The public JWK of k as a JSON object text (malloc'd); extra: more members ("\"use\":\"sig\"") or NULL. */
static char *tk_jwk(EVP_PKEY *k, const char *kid, const char *extra)
{
	char a[1500], b[1500], kidm[300] = "", *out = malloc(4096);
	assert_non_null(out);
	if (kid)
		snprintf(kidm, sizeof kidm, ",\"kid\":\"%s\"", kid);
	if (EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA) {
		tk_bn_b64(k, OSSL_PKEY_PARAM_RSA_N, 0, a);
		tk_bn_b64(k, OSSL_PKEY_PARAM_RSA_E, 0, b);
		snprintf(out, 4096, "{\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"%s%s%s}", a, b, kidm, extra ? "," : "",
			 extra ? extra : "");
	} else {
		tk_bn_b64(k, OSSL_PKEY_PARAM_EC_PUB_X, 32, a);
		tk_bn_b64(k, OSSL_PKEY_PARAM_EC_PUB_Y, 32, b);
		snprintf(out, 4096, "{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"%s%s%s}", a, b, kidm,
			 extra ? "," : "", extra ? extra : "");
	}
	return out;
}

/* {"keys":[j1, j2, ...]} from NULL-terminated JWK texts (freed). */
static char *tk_jwks(char *first, ...)
{
	char *out = malloc(65536), *j;
	size_t o = 0;
	va_list ap;
	assert_non_null(out);
	o += (size_t)snprintf(out, 65536, "{\"keys\":[");
	va_start(ap, first);
	for (j = first; j; j = va_arg(ap, char *)) {
		o += (size_t)snprintf(out + o, 65536 - o, "%s%s", j == first ? "" : ",", j);
		free(j);
	}
	va_end(ap);
	snprintf(out + o, 65536 - o, "]}");
	return out;
}

static char *tk_b64s(const char *s)
{
	char *out = malloc(strlen(s) * 4 / 3 + 8);
	assert_non_null(out);
	jwt_b64url_encode((const unsigned char *)s, strlen(s), out);
	return out;
}

/* header.payload signed with k (RS256 for RSA, ES256 for EC, as the key's type demands; the header says
 * whatever the test wants). hmac_key non-NULL: HS256 over the input with that secret instead. */
static char *tk_sign_raw(EVP_PKEY *k, const char *header, const char *payload, const char *hmac_key)
{
	char *h = tk_b64s(header), *p = tk_b64s(payload), *out;
	size_t inlen = strlen(h) + 1 + strlen(p), siglen = 0;
	unsigned char sig[1100], raw[64];
	char *input = malloc(inlen + 1), sigb[1500];

	assert_non_null(input);
	snprintf(input, inlen + 1, "%s.%s", h, p);
	if (hmac_key) {
		unsigned int l = 0;
		assert_non_null(HMAC(EVP_sha256(), hmac_key, (int)strlen(hmac_key), (unsigned char *)input, inlen, sig, &l));
		siglen = l;
	} else {
		EVP_MD_CTX *md = EVP_MD_CTX_new();
		siglen = sizeof sig;
		assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k), 1);
		assert_int_equal(EVP_DigestSign(md, sig, &siglen, (unsigned char *)input, inlen), 1);
		EVP_MD_CTX_free(md);
		if (EVP_PKEY_get_base_id(k) == EVP_PKEY_EC) {
			const unsigned char *q = sig;
			ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long)siglen);
			assert_non_null(es);
			BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32);
			BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32);
			ECDSA_SIG_free(es);
			memcpy(sig, raw, 64);
			siglen = 64;
		}
	}
	jwt_b64url_encode(sig, siglen, sigb);
	out = malloc(inlen + strlen(sigb) + 2);
	assert_non_null(out);
	sprintf(out, "%s.%s", input, sigb);
	free(h);
	free(p);
	free(input);
	return out;
}

static char *tk_sign(EVP_PKEY *k, const char *header, const char *payload)
{
	return tk_sign_raw(k, header, payload, NULL);
}

#endif
