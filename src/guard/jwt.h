/* JWT access tokens (RFC 7519, compact JWS RFC 7515) checked against a JWKS (RFC 7517), no I/O.
 *
 * Strict on purpose (RFC 8725): the three parts are base64url without padding, canonical (unused bits zero);
 * the header and the claims are JSON objects with no duplicate keys; alg is RS256 or ES256 only ("none",
 * HS*, PS*, anything else is refused before any key is looked at), and only a key of the matching type (RSA
 * for RS256, EC P-256 for ES256) is ever tried, so an RSA public key can never serve as an HMAC secret; a
 * header with `crit` is refused (we implement no extension); `typ`, when present, is JWT, at+jwt or
 * application/at+jwt; jwk, jku, x5u and x5c in the header are never used (keys come only from the JWKS).
 * The kid is only compared with the kids of the set (never a path or a lookup key elsewhere).
 *
 * Claims: iss equal to the expected issuer; aud (a string or an array) containing one of the expected
 * audiences; exp required; nbf and iat optional; all three with a leeway (default 60 s); sub required, a
 * string of 1..JWT_MAX_SUB bytes without control characters; scopes from "scope" (space-separated string, RFC
 * 8693/9068) or "scp" (an array of strings, or a string): every required scope must be granted.
 *
 * A reason never holds the token or any part of it. */
#ifndef POSTERN_GUARD_JWT_H
#define POSTERN_GUARD_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JWT_MAX_TOKEN     16384        /* bytes of a compact JWS */
#define JWT_MAX_JWKS      (1u << 20)   /* bytes of a JWKS document */
#define JWT_MAX_KEYS      64           /* entries of a JWKS "keys" array */
#define JWT_MAX_KID       256
#define JWT_MAX_SUB       255
#define JWT_MAX_AUD       64           /* entries of an aud array */
#define JWT_MAX_SCOPES    128          /* granted scopes looked at */
#define JWT_RSA_MIN_BITS  2048
#define JWT_RSA_MAX_BITS  8192
#define JWT_LEEWAY_DEFAULT_S 60

typedef enum jwt_alg { JWT_RS256 = 1, JWT_ES256 } jwt_alg;

/* A parsed compact JWS: header and claims JSON, signature bytes, the signing input. */
typedef struct jwt jwt;
/* A parsed key set: the usable signing keys of a JWKS. */
typedef struct jwt_keys jwt_keys;

/* Parses token (len bytes, not NUL-terminated). 0, -EINVAL (err says what; never quotes the token),
 * -ENOMEM. */
int jwt_parse(const char *token, size_t len, jwt **out, char *err, size_t errlen);
void jwt_free(jwt *t);
jwt_alg jwt_alg_of(const jwt *t);
/* The header's kid or NULL. */
const char *jwt_kid(const jwt *t);

/* Parses a JWKS {"keys":[...]}. Keys are skipped (and counted in *skipped when not NULL) when their kty is
 * not RSA or EC, use is not "sig", key_ops lacks "verify", alg is not RS256/ES256 or does not fit the kty,
 * crv is not P-256. A key of a usable kind with a bad value (RSA under 2048 or over 8192 bits, an even or
 * tiny exponent, an EC point not on the curve, bad base64url, a kid over JWT_MAX_KID) fails the whole set:
 * a broken IdP document must be noticed, not half used. No usable key at all is an error too.
 * 0, -EINVAL (err says what), -ENOMEM. */
int jwt_keys_parse(const char *json, size_t len, jwt_keys **out, size_t *skipped, char *err, size_t errlen);
void jwt_keys_free(jwt_keys *k);
size_t jwt_keys_count(const jwt_keys *k);
bool jwt_keys_has_kid(const jwt_keys *k, const char *kid);

/* What the claims must say. */
typedef struct jwt_expect {
	const char *issuer;                 /* exact; required */
	const char *const *audiences;       /* aud must contain one of these (exact compare) */
	size_t naudiences;                  /* at least 1 */
	const char *const *scopes;          /* all required; may be NULL with nscopes 0 */
	size_t nscopes;
	int64_t now_s;                      /* wall clock, seconds since the epoch */
	int64_t leeway_s;                   /* for exp, nbf and iat */
} jwt_expect;

typedef struct jwt_result {
	char subject[JWT_MAX_SUB + 1];      /* sub when valid (also set for insufficient scope) */
	char reason[160];                   /* why not, short, for the client and the log */
	bool unknown_kid;                   /* the kid is not in the set: a refetch of the JWKS may help */
} jwt_result;

/* Verifies the signature with keys (NULL: none loaded) and checks the claims. 0 valid; -EACCES invalid
 * (RFC 6750 invalid_token: signature, key, claims); -EPERM valid but a required scope is missing
 * (insufficient_scope); -ENOMEM. r->reason says why on -EACCES/-EPERM. */
int jwt_verify(const jwt *t, const jwt_keys *keys, const jwt_expect *e, jwt_result *r);
/* jwt_parse + jwt_verify; a parse failure is -EACCES with the parse reason. */
int jwt_check(const char *token, size_t len, const jwt_keys *keys, const jwt_expect *e, jwt_result *r);

/* Strict base64url without padding: 0 and *outlen, or -EINVAL (a bad character, '=', a length of 4k+1,
 * non-zero unused bits) or -ENOBUFS (out too small; needs len*3/4 bytes). */
int jwt_b64url_decode(const char *in, size_t len, unsigned char *out, size_t outcap, size_t *outlen);
/* base64url without padding, NUL-terminated; out needs 4*ceil(len/3)+1 bytes. Returns the length. */
size_t jwt_b64url_encode(const unsigned char *in, size_t len, char *out);

#endif
