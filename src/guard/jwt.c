/* JWT access tokens: strict compact JWS parse, JWKS keys, RS256/ES256 verification, claims. No I/O. */
#include <errno.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"
#include "guard/jwt.h"

struct jwt {
	json_t *header, *claims;
	jwt_alg alg;
	const char *kid;           /* in header */
	unsigned char *sig;
	size_t siglen;
	char *input;               /* header.payload, the signing input */
	size_t inputlen;
};

struct jwk {
	char *kid;                 /* NULL when the key has none */
	jwt_alg alg;               /* the only alg it serves: RS256 for RSA, ES256 for EC P-256 */
	EVP_PKEY *pkey;
};

struct jwt_keys {
	struct jwk v[JWT_MAX_KEYS];
	size_t n;
};

/* ---- base64url ---------------------------------------------------------------------------------- */

static int b64v(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -EINVAL;
}

int jwt_b64url_decode(const char *in, size_t len, unsigned char *out, size_t outcap, size_t *outlen)
{
	size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0), o = 0;
	uint32_t acc = 0;
	int bits = 0;

	if (len % 4 == 1)
		return -EINVAL; /* 6 bits cannot end a byte */
	if (need > outcap)
		return -ENOBUFS;
	for (size_t i = 0; i < len; i++) {
		int v = b64v((unsigned char)in[i]);
		if (v < 0)
			return -EINVAL;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc)
		return -EINVAL; /* non-canonical: the unused low bits must be zero */
	*outlen = o;
	return 0;
}

size_t jwt_b64url_encode(const unsigned char *in, size_t len, char *out)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t o = 0, i = 0;

	for (; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = a[v >> 18];
		out[o++] = a[(v >> 12) & 63];
		out[o++] = a[(v >> 6) & 63];
		out[o++] = a[v & 63];
	}
	if (len - i == 1) {
		out[o++] = a[in[i] >> 2];
		out[o++] = a[(in[i] & 3) << 4];
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)in[i] << 8 | in[i + 1];
		out[o++] = a[v >> 10];
		out[o++] = a[(v >> 4) & 63];
		out[o++] = a[(v & 15) << 2];
	}
	out[o] = 0;
	return o;
}

/* Decodes a base64url part into a fresh buffer (NUL-terminated for JSON). */
static int part(const char *in, size_t len, unsigned char **out, size_t *outlen)
{
	unsigned char *b = malloc(len / 4 * 3 + 3);
	int rc;
	if (!b)
		return -ENOMEM;
	if ((rc = jwt_b64url_decode(in, len, b, len / 4 * 3 + 2, outlen)) < 0) {
		free(b);
		return rc;
	}
	b[*outlen] = 0;
	*out = b;
	return 0;
}

/* A JSON object with no duplicate keys, from decoded bytes. */
static json_t *object_of(const unsigned char *b, size_t len)
{
	json_t *j = json_loadb((const char *)b, len, JSON_REJECT_DUPLICATES, NULL);
	if (j && !json_is_object(j)) {
		json_decref(j);
		return NULL;
	}
	return j;
}

/* ---- compact JWS -------------------------------------------------------------------------------- */

void jwt_free(jwt *t)
{
	if (!t)
		return;
	json_decref(t->header);
	json_decref(t->claims);
	free(t->sig);
	free(t->input);
	free(t);
}

jwt_alg jwt_alg_of(const jwt *t)
{
	return t->alg;
}

const char *jwt_kid(const jwt *t)
{
	return t->kid;
}

static int check_header(jwt *t, char *err, size_t errlen)
{
	json_t *alg = json_object_get(t->header, "alg"), *typ = json_object_get(t->header, "typ");
	json_t *kid = json_object_get(t->header, "kid");
	const char *a = json_string_value(alg);

	if (!a)
		return err_set(err, errlen, -EINVAL, "token header has no alg");
	if (!strcasecmp(a, "none"))
		return err_set(err, errlen, -EINVAL, "alg none is not accepted: the token must be signed");
	if (!strcmp(a, "RS256"))
		t->alg = JWT_RS256;
	else if (!strcmp(a, "ES256"))
		t->alg = JWT_ES256;
	else
		return err_set(err, errlen, -EINVAL, "token alg is not accepted (RS256 or ES256 only)");
	if (json_object_get(t->header, "crit"))
		return err_set(err, errlen, -EINVAL, "token header has crit: no JWS extension is supported");
	if (typ) {
		const char *s = json_string_value(typ);
		if (!s || (strcasecmp(s, "JWT") && strcasecmp(s, "at+jwt") && strcasecmp(s, "application/at+jwt")))
			return err_set(err, errlen, -EINVAL, "token typ is not JWT or at+jwt");
	}
	if (kid) {
		const char *s = json_string_value(kid);
		if (!s || !*s || strlen(s) > JWT_MAX_KID)
			return err_set(err, errlen, -EINVAL, "token kid is not a string of 1..%d bytes", JWT_MAX_KID);
		t->kid = s;
	}
	return 0;
}

int jwt_parse(const char *token, size_t len, jwt **out, char *err, size_t errlen)
{
	const char *d1, *d2;
	unsigned char *hb = NULL, *pb = NULL;
	size_t hl, pl;
	jwt *t = NULL;
	int rc;

	*out = NULL;
	if (len == 0)
		return err_set(err, errlen, -EINVAL, "empty token");
	if (len > JWT_MAX_TOKEN)
		return err_set(err, errlen, -EINVAL, "token is over %d bytes", JWT_MAX_TOKEN);
	if (!(d1 = memchr(token, '.', len)) || !(d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token))) ||
	    memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
		return err_set(err, errlen, -EINVAL, "not a compact JWS (header.payload.signature)");
	if (d1 == token || d2 == d1 + 1 || d2 + 1 == token + len)
		return err_set(err, errlen, -EINVAL, "token has an empty part");
	if (!(t = calloc(1, sizeof *t)))
		return err_set(err, errlen, -ENOMEM, "out of memory");
	if ((rc = part(token, (size_t)(d1 - token), &hb, &hl)) < 0) {
		rc = err_set(err, errlen, rc, rc == -ENOMEM ? "out of memory" : "token header is not base64url");
		goto done;
	}
	if (!(t->header = object_of(hb, hl))) {
		rc = err_set(err, errlen, -EINVAL, "token header is not a JSON object (or repeats a key)");
		goto done;
	}
	if ((rc = check_header(t, err, errlen)) < 0)
		goto done;
	if ((rc = part(d1 + 1, (size_t)(d2 - d1 - 1), &pb, &pl)) < 0) {
		rc = err_set(err, errlen, rc, rc == -ENOMEM ? "out of memory" : "token payload is not base64url");
		goto done;
	}
	if (!(t->claims = object_of(pb, pl))) {
		rc = err_set(err, errlen, -EINVAL, "token payload is not a JSON object (or repeats a key)");
		goto done;
	}
	if ((rc = part(d2 + 1, len - (size_t)(d2 + 1 - token), &t->sig, &t->siglen)) < 0) {
		rc = err_set(err, errlen, rc, rc == -ENOMEM ? "out of memory" : "token signature is not base64url");
		goto done;
	}
	if (t->alg == JWT_ES256 && t->siglen != 64) {
		rc = err_set(err, errlen, -EINVAL, "ES256 signature is not 64 bytes (r||s)");
		goto done;
	}
	t->inputlen = (size_t)(d2 - token);
	if (!(t->input = malloc(t->inputlen))) {
		rc = err_set(err, errlen, -ENOMEM, "out of memory");
		goto done;
	}
	memcpy(t->input, token, t->inputlen);
	*out = t;
	t = NULL;
	rc = 0;
done:
	free(hb);
	free(pb);
	jwt_free(t);
	return rc;
}

/* ---- JWKS --------------------------------------------------------------------------------------- */

void jwt_keys_free(jwt_keys *k)
{
	if (!k)
		return;
	for (size_t i = 0; i < k->n; i++) {
		free(k->v[i].kid);
		EVP_PKEY_free(k->v[i].pkey);
	}
	free(k);
}

size_t jwt_keys_count(const jwt_keys *k)
{
	return k ? k->n : 0;
}

bool jwt_keys_has_kid(const jwt_keys *k, const char *kid)
{
	for (size_t i = 0; k && kid && i < k->n; i++)
		if (k->v[i].kid && !strcmp(k->v[i].kid, kid))
			return true;
	return false;
}

/* A base64url member of a JWK decoded into buf. */
static int member(json_t *o, const char *name, unsigned char *buf, size_t cap, size_t *len)
{
	const char *s = json_string_value(json_object_get(o, name));
	if (!s)
		return -ENOENT;
	return jwt_b64url_decode(s, strlen(s), buf, cap, len) < 0 ? -EINVAL : 0;
}

static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	EVP_PKEY *pk = NULL;

	if (params && ctx && EVP_PKEY_fromdata_init(ctx) > 0 &&
	    EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) <= 0)
		pk = NULL;
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	return pk;
}

static int rsa_key(json_t *o, size_t idx, EVP_PKEY **out, char *err, size_t errlen)
{
	unsigned char n[JWT_RSA_MAX_BITS / 8 + 8], e[16];
	size_t nl, el;
	BIGNUM *bn = NULL, *be = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	int rc;

	if ((rc = member(o, "n", n, sizeof n, &nl)) < 0 || (rc = member(o, "e", e, sizeof e, &el)) < 0) {
		rc = err_set(err, errlen, -EINVAL, "keys[%zu]: RSA n and e must be base64url (n up to %d bits)", idx,
			     JWT_RSA_MAX_BITS);
		goto done;
	}
	if (!(bn = BN_bin2bn(n, (int)nl, NULL)) || !(be = BN_bin2bn(e, (int)el, NULL)) || !(bld = OSSL_PARAM_BLD_new())) {
		rc = err_set(err, errlen, -ENOMEM, "out of memory");
		goto done;
	}
	if (BN_num_bits(bn) < JWT_RSA_MIN_BITS || BN_num_bits(bn) > JWT_RSA_MAX_BITS) {
		rc = err_set(err, errlen, -EINVAL, "keys[%zu]: RSA modulus has %d bits (%d..%d accepted)", idx,
			     BN_num_bits(bn), JWT_RSA_MIN_BITS, JWT_RSA_MAX_BITS);
		goto done;
	}
	if (!BN_is_odd(be) || BN_num_bits(be) < 2 || BN_num_bits(be) > 64) {
		rc = err_set(err, errlen, -EINVAL, "keys[%zu]: RSA exponent must be odd, at least 3 and at most 64 bits", idx);
		goto done;
	}
	if (!OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) ||
	    !(*out = from_params("RSA", bld))) {
		rc = err_set(err, errlen, -EINVAL, "keys[%zu]: OpenSSL refused the RSA key", idx);
		goto done;
	}
	rc = 0;
done:
	BN_free(bn);
	BN_free(be);
	OSSL_PARAM_BLD_free(bld);
	return rc;
}

static int ec_key(json_t *o, size_t idx, EVP_PKEY **out, char *err, size_t errlen)
{
	unsigned char pt[65], x[33], y[33];
	size_t xl, yl;
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY_CTX *chk = NULL;
	int rc;

	if (member(o, "x", x, sizeof x, &xl) < 0 || member(o, "y", y, sizeof y, &yl) < 0 || xl != 32 || yl != 32)
		return err_set(err, errlen, -EINVAL, "keys[%zu]: EC x and y must be base64url of 32 bytes each", idx);
	pt[0] = 4; /* uncompressed point */
	memcpy(pt + 1, x, 32);
	memcpy(pt + 33, y, 32);
	if (!(bld = OSSL_PARAM_BLD_new()))
		return err_set(err, errlen, -ENOMEM, "out of memory");
	if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof pt) ||
	    !(*out = from_params("EC", bld)) || !(chk = EVP_PKEY_CTX_new_from_pkey(NULL, *out, NULL)) ||
	    EVP_PKEY_public_check(chk) <= 0) {
		EVP_PKEY_free(*out);
		*out = NULL;
		rc = err_set(err, errlen, -EINVAL, "keys[%zu]: EC point is not on P-256", idx);
		goto done;
	}
	rc = 0;
done:
	EVP_PKEY_CTX_free(chk);
	OSSL_PARAM_BLD_free(bld);
	return rc;
}

static bool has_op(json_t *ops, const char *op)
{
	size_t i;
	json_t *v;
	json_array_foreach(ops, i, v)
		if (json_is_string(v) && !strcmp(json_string_value(v), op))
			return true;
	return false;
}

/* One JWK: 1 skipped, 0 added, <0 fails the set. */
static int one_key(json_t *o, size_t idx, jwt_keys *k, char *err, size_t errlen)
{
	const char *kty = json_string_value(json_object_get(o, "kty")), *alg, *use, *crv, *kid = NULL;
	json_t *ops = json_object_get(o, "key_ops"), *jkid = json_object_get(o, "kid");
	struct jwk *w = &k->v[k->n];
	int rc;

	if (!json_is_object(o))
		return err_set(err, errlen, -EINVAL, "keys[%zu] is not an object", idx);
	if (!kty)
		return err_set(err, errlen, -EINVAL, "keys[%zu] has no kty", idx);
	use = json_string_value(json_object_get(o, "use"));
	alg = json_string_value(json_object_get(o, "alg"));
	if ((json_object_get(o, "use") && (!use || strcmp(use, "sig"))) || (ops && (!json_is_array(ops) || !has_op(ops, "verify"))))
		return 1; /* an encryption key */
	if (json_object_get(o, "alg") && !alg)
		return err_set(err, errlen, -EINVAL, "keys[%zu]: alg is not a string", idx);
	if (jkid && (!(kid = json_string_value(jkid)) || !*kid || strlen(kid) > JWT_MAX_KID))
		return err_set(err, errlen, -EINVAL, "keys[%zu]: kid is not a string of 1..%d bytes", idx, JWT_MAX_KID);
	if (!strcmp(kty, "RSA")) {
		if (alg && strcmp(alg, "RS256"))
			return 1;
		w->alg = JWT_RS256;
		rc = rsa_key(o, idx, &w->pkey, err, errlen);
	} else if (!strcmp(kty, "EC")) {
		crv = json_string_value(json_object_get(o, "crv"));
		if ((alg && strcmp(alg, "ES256")) || !crv || strcmp(crv, "P-256"))
			return 1;
		w->alg = JWT_ES256;
		rc = ec_key(o, idx, &w->pkey, err, errlen);
	} else {
		return 1; /* oct (HMAC secrets: never), OKP, ... */
	}
	if (rc < 0)
		return rc;
	if (kid && !(w->kid = strdup(kid))) {
		EVP_PKEY_free(w->pkey);
		w->pkey = NULL;
		return err_set(err, errlen, -ENOMEM, "out of memory");
	}
	k->n++;
	return 0;
}

int jwt_keys_parse(const char *json, size_t len, jwt_keys **out, size_t *skipped, char *err, size_t errlen)
{
	json_t *root = NULL, *keys, *o;
	jwt_keys *k = NULL;
	size_t i, skip = 0;
	json_error_t je;
	int rc;

	*out = NULL;
	if (len > JWT_MAX_JWKS)
		return err_set(err, errlen, -EINVAL, "JWKS is over %u bytes", JWT_MAX_JWKS);
	if (!(root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je))) {
		rc = err_set(err, errlen, -EINVAL, "JWKS is not JSON (line %d: %s)", je.line, je.text);
		goto done;
	}
	if (!json_is_object(root) || !json_is_array(keys = json_object_get(root, "keys"))) {
		rc = err_set(err, errlen, -EINVAL, "JWKS is not an object with a \"keys\" array");
		goto done;
	}
	if (json_array_size(keys) > JWT_MAX_KEYS) {
		rc = err_set(err, errlen, -EINVAL, "JWKS has %zu keys (at most %d)", json_array_size(keys), JWT_MAX_KEYS);
		goto done;
	}
	if (!(k = calloc(1, sizeof *k))) {
		rc = err_set(err, errlen, -ENOMEM, "out of memory");
		goto done;
	}
	json_array_foreach(keys, i, o) {
		if ((rc = one_key(o, i, k, err, errlen)) < 0)
			goto done;
		skip += (size_t)rc;
	}
	if (!k->n) {
		rc = err_set(err, errlen, -EINVAL, "JWKS has no usable signing key (RSA >= %d bits for RS256, EC P-256 for ES256; "
			     "%zu skipped)", JWT_RSA_MIN_BITS, skip);
		goto done;
	}
	if (skipped)
		*skipped = skip;
	*out = k;
	k = NULL;
	rc = 0;
done:
	ERR_clear_error();
	jwt_keys_free(k);
	json_decref(root);
	return rc;
}

/* ---- signature ---------------------------------------------------------------------------------- */

/* ES256 signatures are raw r||s (RFC 7518 3.4); OpenSSL verifies DER. */
static int es256_der(const unsigned char *rs, unsigned char **der, int *derlen)
{
	ECDSA_SIG *s = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(rs, 32, NULL), *ss = BN_bin2bn(rs + 32, 32, NULL);
	int rc = -ENOMEM;

	if (!s || !r || !ss || !ECDSA_SIG_set0(s, r, ss))
		goto done;
	r = ss = NULL; /* owned by s */
	*der = NULL;
	if ((*derlen = i2d_ECDSA_SIG(s, der)) <= 0)
		goto done;
	rc = 0;
done:
	BN_free(r);
	BN_free(ss);
	ECDSA_SIG_free(s);
	return rc;
}

static bool verify_with(const jwt *t, const struct jwk *w)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	unsigned char *der = NULL;
	int derlen = 0;
	bool ok = false;

	if (!md)
		return false;
	if (t->alg == JWT_ES256) {
		if (es256_der(t->sig, &der, &derlen) < 0)
			goto done;
	} else if (t->siglen != (size_t)EVP_PKEY_get_size(w->pkey)) {
		goto done; /* RFC 7518 3.3: as long as the modulus */
	}
	if (EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, w->pkey) <= 0)
		goto done;
	ok = t->alg == JWT_ES256 ? EVP_DigestVerify(md, der, (size_t)derlen, (const unsigned char *)t->input, t->inputlen) == 1
				 : EVP_DigestVerify(md, t->sig, t->siglen, (const unsigned char *)t->input, t->inputlen) == 1;
done:
	OPENSSL_free(der);
	EVP_MD_CTX_free(md);
	ERR_clear_error();
	return ok;
}

/* ---- claims ------------------------------------------------------------------------------------- */

#define FAIL(code, ...) (snprintf(r->reason, sizeof r->reason, __VA_ARGS__), (code))

/* A NumericDate: 1 absent, 0 read, -EINVAL not a number in range. */
static int numdate(json_t *c, const char *key, int64_t *out)
{
	json_t *v = json_object_get(c, key);
	double d;
	if (!v)
		return 1;
	if (!json_is_number(v))
		return -EINVAL;
	d = json_number_value(v);
	if (!(d >= 0 && d < 1e13))
		return -EINVAL;
	*out = (int64_t)d;
	return 0;
}

static bool aud_ok(json_t *aud, const jwt_expect *e)
{
	size_t i;
	json_t *v;
	if (json_is_string(aud)) {
		for (size_t k = 0; k < e->naudiences; k++)
			if (!strcmp(json_string_value(aud), e->audiences[k]))
				return true;
		return false;
	}
	json_array_foreach(aud, i, v) {
		if (i >= JWT_MAX_AUD)
			break;
		if (json_is_string(v) && aud_ok(v, e))
			return true;
	}
	return false;
}

/* Is scope s among the space-separated words of str? */
static bool in_words(const char *str, const char *s, size_t *count)
{
	size_t sl = strlen(s);
	for (const char *p = str; *p;) {
		size_t n;
		while (*p == ' ')
			p++;
		n = strcspn(p, " ");
		if (n && ++*count <= JWT_MAX_SCOPES && n == sl && !memcmp(p, s, n))
			return true;
		p += n;
	}
	return false;
}

/* 1 granted, 0 not, -EINVAL a malformed or oversized scope claim. */
static int granted(json_t *c, const char *s)
{
	json_t *scope = json_object_get(c, "scope"), *scp = json_object_get(c, "scp"), *v;
	size_t count = 0, i;
	bool hit = false;

	if ((scope && !json_is_string(scope)) || (scp && !json_is_string(scp) && !json_is_array(scp)))
		return -EINVAL;
	if (scope)
		hit = in_words(json_string_value(scope), s, &count);
	if (!hit && json_is_string(scp))
		hit = in_words(json_string_value(scp), s, &count);
	if (!hit && json_is_array(scp))
		json_array_foreach(scp, i, v) {
			if (!json_is_string(v))
				return -EINVAL;
			if (++count <= JWT_MAX_SCOPES && !strcmp(json_string_value(v), s)) {
				hit = true;
				break;
			}
		}
	if (!hit && count > JWT_MAX_SCOPES)
		return -EINVAL;
	return hit;
}

static int claims(const jwt *t, const jwt_expect *e, jwt_result *r)
{
	json_t *c = t->claims, *aud = json_object_get(c, "aud");
	const char *iss = json_string_value(json_object_get(c, "iss")), *sub;
	int64_t exp = 0, nbf = 0, iat = 0;
	int rc;

	if (!iss)
		return FAIL(-EACCES, "token has no iss");
	if (!e->issuer || strcmp(iss, e->issuer))
		return FAIL(-EACCES, "token iss is not the expected issuer");
	if (!aud)
		return FAIL(-EACCES, "token has no aud");
	if (!json_is_string(aud) && !json_is_array(aud))
		return FAIL(-EACCES, "token aud is not a string or an array");
	if (!aud_ok(aud, e))
		return FAIL(-EACCES, "token aud does not name this resource (%s)", e->naudiences ? e->audiences[0] : "");
	if ((rc = numdate(c, "exp", &exp)) != 0)
		return FAIL(-EACCES, rc > 0 ? "token has no exp" : "token exp is not a NumericDate");
	if (e->now_s - e->leeway_s >= exp)
		return FAIL(-EACCES, "token expired %lld s ago", (long long)(e->now_s - exp));
	if ((rc = numdate(c, "nbf", &nbf)) < 0)
		return FAIL(-EACCES, "token nbf is not a NumericDate");
	if (rc == 0 && e->now_s + e->leeway_s < nbf)
		return FAIL(-EACCES, "token is not valid for another %lld s (nbf)", (long long)(nbf - e->now_s));
	if ((rc = numdate(c, "iat", &iat)) < 0)
		return FAIL(-EACCES, "token iat is not a NumericDate");
	if (rc == 0 && e->now_s + e->leeway_s < iat)
		return FAIL(-EACCES, "token iat is in the future");
	if (!(sub = json_string_value(json_object_get(c, "sub"))))
		return FAIL(-EACCES, "token has no sub");
	if (!*sub || strlen(sub) > JWT_MAX_SUB)
		return FAIL(-EACCES, "token sub is empty or over %d bytes", JWT_MAX_SUB);
	for (const unsigned char *p = (const unsigned char *)sub; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return FAIL(-EACCES, "token sub has a control character");
	snprintf(r->subject, sizeof r->subject, "%s", sub);
	for (size_t i = 0; i < e->nscopes; i++) {
		if ((rc = granted(c, e->scopes[i])) < 0)
			return FAIL(-EACCES, "token scope/scp is malformed or has over %d scopes", JWT_MAX_SCOPES);
		if (!rc)
			return FAIL(-EPERM, "token lacks the scope \"%s\"", e->scopes[i]);
	}
	return 0;
}

int jwt_verify(const jwt *t, const jwt_keys *keys, const jwt_expect *e, jwt_result *r)
{
	size_t tried = 0;

	memset(r, 0, sizeof *r);
	if (!keys || !keys->n)
		return FAIL(-EACCES, "signing keys not loaded yet");
	for (size_t i = 0; i < keys->n; i++) {
		const struct jwk *w = &keys->v[i];
		if (w->alg != t->alg || (t->kid && (!w->kid || strcmp(w->kid, t->kid))))
			continue;
		tried++;
		if (verify_with(t, w)) {
			int rc = claims(t, e, r);
			if (rc == -EACCES)
				r->subject[0] = 0; /* the subject stands only for a valid token */
			return rc;
		}
	}
	if (!tried && t->kid) {
		r->unknown_kid = true;
		return FAIL(-EACCES, "no signing key with the token's kid");
	}
	if (!tried)
		return FAIL(-EACCES, "no signing key for %s", t->alg == JWT_RS256 ? "RS256" : "ES256");
	return FAIL(-EACCES, "token signature does not verify");
}

int jwt_check(const char *token, size_t len, const jwt_keys *keys, const jwt_expect *e, jwt_result *r)
{
	jwt *t = NULL;
	int rc;

	memset(r, 0, sizeof *r);
	if ((rc = jwt_parse(token, len, &t, r->reason, sizeof r->reason)) < 0)
		return rc == -ENOMEM ? rc : -EACCES;
	rc = jwt_verify(t, keys, e, r);
	jwt_free(t);
	return rc;
}
