/* libFuzzer: the JWT parser and verifier, the JWKS parser, and the route check around them. The first byte
 * picks the mode:
 *   0  the rest is a compact JWS, checked against a fixed JWKS (keys below; the seeds are signed by them);
 *   1  the rest is a JWKS document;
 *   2  the rest is HEADER\nCLAIMS JSON: the harness signs it (ES256 or RS256 as the header's alg says, with
 *      the fixed keys) so the claims checks run on fuzzed claims behind a valid signature;
 *   3  the rest is an Authorization header value for a bearer route and a jwt route, and a tokens_file.
 * Invariants that abort: an accepted token has a subject without control characters; a reason never
 * contains the whole token (modes 0 and 2); WWW-Authenticate is built for every result. Test keys only: not secrets. */
#include <errno.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "guard/auth.h"
#include "guard/jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char RSA_PEM[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDgY9jImGZ556qI\n"
	"Vf2Fsy9EHsjSpoHqH3A0QILDW5Z6WqZr3zLcrxRKvYd/XHpRDW0F1xbpY06asZYX\n"
	"AB97oH6s0TWdfnze9mOdBVqpVuHosyeb13MLMXDAAoTF4Iw6N4Omyz8RWq3tQ9zZ\n"
	"JUMcq23FhhHFh0vRTslDxlb3/aHw07v4BE3QxuXF5sZYUQ7igBxFmN38udpxgt7H\n"
	"ZAEpi3wErjFNcfKO907SSroxJGq4E4wz2LOcX1AbINEwblZEWuK2e/ap/sajC3z/\n"
	"EPhuXnr3Um5k+IO18y7navVdrGEJH73xFfmPuHNscclUAZYHVAuBIvy5QsjR+lK/\n"
	"XFrulpYNAgMBAAECggEAAIZTPzLWCIJxbGSxFVM0MNdWlmGDy8GbkE+3TpAkA7C7\n"
	"E2T/+DKjnEIhsztK4O4kW19joxOTnzp7lJ2wNSiMq0hI9Q+S6K2QUZFt4xf8KsBi\n"
	"fxOLphLNRfGrkE/kXA19rhHrGZYJ8pRWS56x77r55HyaBYl5tKlXwKQR134dFxRS\n"
	"jNuvJZkmzra3gtTyiXIeI2TTQt6vXRHq5ntQIkcEH7HhpmrKtrXdC8o0dOpx2iBd\n"
	"CwoTcepR/f4TY+ZRYyM/p1CDRAc/kMo+3nPsS4iEEue+aHyhOLVuFcXLQtORWhJO\n"
	"Ah3RiBpFEgfMjxOB4fNNRboXDLLWl2CGjhEfAZJBiQKBgQD3RVz6Hw2fh5bpRY8s\n"
	"J9EL2Wktl0dKVp8qvqLLFmjacVPO4TabwN61LhRGmp/kd6tvByNrLxsSavyCi5ZA\n"
	"PLopuVVJD8+0wUrFQMx8DYimScdZoCLHPOkalRVXAT2p/dzN947aJ0q6zKbPY9FK\n"
	"1zhjsSmUtvhkNh4Z7HwGxpXR6QKBgQDoT7RDxUVVgKwzBXaEG7sI4tnRetX715nV\n"
	"nKcgNSEgLdzwv9o7p/bDJaw5wUeFtxFiPneAZvoPOkKSVtHClI5HSozcTpJOX1qN\n"
	"pmSlYLvCbzSHOoo3hbt+ecrpv7GnXASUOvc27SUvJNBBjzDHtXAPVWyf58AYPh5R\n"
	"ufFUQJ9IhQKBgQCG35PGble883VSSfm9KP6yiuT+1CwzlSn+Y7tiMRgCRpxjFJ73\n"
	"t+0CQF8Y39BlCw08Y1Vjam9GzYpsHn1XDoiwp4God3Jg8qm5DA49gBhQM6AD9//g\n"
	"Uw4GzNi1+1xKM8lTozuNLK9rUqOOLbEENH5yijjXADJeXtJua3p/K6SeuQKBgAzP\n"
	"iGNMV5x1cgmGPZjfZpsA134jxfUTWJpc/yJZi7AYl1x3V/N+Oa9dPngY3nbTN5Qx\n"
	"WamtBBEe51jmjL6sLoRj6gykEJFd1MKG8HnmMbRxKXZjlgelykcZNEVbmtJd0qrR\n"
	"7ZwLy8cjwpA68zewG7PcxBa1UvSDSGy9Uj+RKLd5AoGBAMMSwjk5oaFXJQiFI4hA\n"
	"bGMxGGXBYGPDOl2DR9mCLw1N2W4e8cJ6tmpYigO4B3ybeQWuDygFFt2cG09Udx8u\n"
	"fhNWwFLGQBDhfE6TqC3hY3sJiqr6lYfxr33ikAl386QAeqhtqNYnF+rf5whNiGkM\n"
	"wp/DUW8Yz0z+TK/Y27X0Hx+d\n"
	"-----END PRIVATE KEY-----\n";
static const char EC_PEM[] =
	"-----BEGIN PRIVATE KEY-----\n"
	"MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgCsLPq/zdGWy2N1I+\n"
	"vKCV+9McQtBm9f0RlSvmgNfs3syhRANCAASqXjKv4+q6ryJQz/23ilRlQPaV9ZzJ\n"
	"wrB5ZInfcno2WxL0RO3Bq1fqTg3eoAsv3Ykwo9j8n92sAaWfMXTcNPs0\n"
	"-----END PRIVATE KEY-----\n";

#define NOW 1700000000LL
#define ISS "https://idp.example.com/"
#define AUD "https://files.example.com/"

static EVP_PKEY *rsa, *ec;
static jwt_keys *keys;
static auth *bearer, *bearer2, *jwtr; /* bearer2: its tokens are replaced by the fuzzed tokens_file */
static const char *const auds[] = { AUD };
static const char *const scopes[] = { "mcp" };

static EVP_PKEY *pem_key(const char *pem)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	if (!k)
		abort();
	return k;
}

static void bn_b64(EVP_PKEY *k, const char *param, int pad, char *out)
{
	BIGNUM *bn = NULL;
	unsigned char buf[600];
	int n;
	if (EVP_PKEY_get_bn_param(k, param, &bn) != 1)
		abort();
	n = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
	jwt_b64url_encode(buf, (size_t)n, out);
	BN_free(bn);
}

static auth *route(const char *yaml)
{
	char err[300];
	cfg_doc *d = cfg_load_string("fuzz.yaml", yaml, strlen(yaml), err, sizeof err);
	auth *a = NULL;
	if (!d || auth_from_cfg(d, cfg_get(cfg_root(d), "auth"), &a) < 0)
		abort();
	cfg_free(d);
	return a;
}

static void init(void)
{
	char n[400], e[16], x[64], y[64], js[1400], path[] = "/tmp/fuzz_jwt_tokens.XXXXXX", line[200], yaml[300];
	int fd;

	rsa = pem_key(RSA_PEM);
	ec = pem_key(EC_PEM);
	bn_b64(rsa, OSSL_PKEY_PARAM_RSA_N, 0, n);
	bn_b64(rsa, OSSL_PKEY_PARAM_RSA_E, 0, e);
	bn_b64(ec, OSSL_PKEY_PARAM_EC_PUB_X, 32, x);
	bn_b64(ec, OSSL_PKEY_PARAM_EC_PUB_Y, 32, y);
	snprintf(js, sizeof js, "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"r1\",\"n\":\"%s\",\"e\":\"%s\"},"
		 "{\"kty\":\"EC\",\"kid\":\"e1\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"}]}", n, e, x, y);
	if (jwt_keys_parse(js, strlen(js), &keys, NULL, line, sizeof line) < 0)
		abort();
	if ((fd = mkstemp(path)) < 0 || auth_token_line("ci", "fuzz-token-0123456789", 21, "mcp", line, sizeof line, NULL, 0) < 0 ||
	    write(fd, line, strlen(line)) < 0)
		abort();
	close(fd);
	snprintf(yaml, sizeof yaml, "auth:\n  bearer:\n    tokens_file: %s\n    scopes: [mcp]\n", path);
	bearer = route(yaml);
	bearer2 = route(yaml);
	unlink(path);
	jwtr = route("auth:\n  jwt:\n    issuer: " ISS "\n    jwks_url: https://idp.example.com/jwks\n    scopes: [mcp]\n");
	if (auth_jwks_set(jwtr, js, strlen(js), line, sizeof line) < 0)
		abort();
}

static void invariants(int rc, const char *subject, const char *reason, const char *input, size_t len)
{
	if (rc == 0) {
		if (!*subject)
			abort();
		for (const unsigned char *p = (const unsigned char *)subject; *p; p++)
			if (*p < 0x20 || *p == 0x7f)
				abort();
	}
	if (len >= 24 && strlen(input) == len && strstr(reason, input))
		abort(); /* a reason never echoes the token */
}

/* Signs HEADER.CLAIMS with the key the header's alg names (RS256 when it says so, else ES256). */
static char *sign(const char *h, size_t hl, const char *c, size_t cl)
{
	size_t cap = (hl + cl) * 4 / 3 + 400, o, siglen = 256;
	char *t = malloc(cap), *tmp = malloc(hl + cl + 1);
	unsigned char sig[256], raw[64];
	EVP_PKEY *k = memmem(h, hl, "RS256", 5) ? rsa : ec;
	EVP_MD_CTX *md = EVP_MD_CTX_new();

	if (!t || !tmp || !md)
		abort();
	memcpy(tmp, h, hl);
	o = jwt_b64url_encode((const unsigned char *)tmp, hl, t);
	t[o++] = '.';
	memcpy(tmp, c, cl);
	o += jwt_b64url_encode((const unsigned char *)tmp, cl, t + o);
	if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, k) != 1 ||
	    EVP_DigestSign(md, sig, &siglen, (unsigned char *)t, o) != 1)
		abort();
	if (k == ec) {
		const unsigned char *q = sig;
		ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &q, (long)siglen);
		if (!es)
			abort();
		BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, 32);
		BN_bn2binpad(ECDSA_SIG_get0_s(es), raw + 32, 32);
		ECDSA_SIG_free(es);
		memcpy(sig, raw, 64);
		siglen = 64;
	}
	t[o++] = '.';
	jwt_b64url_encode(sig, siglen, t + o);
	EVP_MD_CTX_free(md);
	free(tmp);
	return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int inited;
	jwt_expect e = { .issuer = ISS, .audiences = auds, .naudiences = 1, .scopes = scopes, .nscopes = 1,
			 .now_s = NOW, .leeway_s = 60 };
	jwt_result r;
	char *s, err[300], www[800];
	const char *nl;
	jwt_keys *k;
	auth_result ar;
	int rc;

	if (!inited) {
		init();
		inited = 1;
	}
	if (size < 1 || size > 40000)
		return 0;
	if (!(s = malloc(size)))
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = 0;
	switch (data[0] % 4) {
	case 0:
		rc = jwt_check(s, size - 1, keys, &e, &r);
		invariants(rc, r.subject, r.reason, s, size - 1);
		break;
	case 1:
		if (jwt_keys_parse(s, size - 1, &k, NULL, err, sizeof err) == 0) {
			if (!jwt_keys_count(k))
				abort();
			jwt_keys_free(k);
		}
		break;
	case 2:
		if ((nl = memchr(s, '\n', size - 1))) {
			char *t = sign(s, (size_t)(nl - s), nl + 1, size - 1 - (size_t)(nl + 1 - s));
			rc = jwt_check(t, strlen(t), keys, &e, &r);
			invariants(rc, r.subject, r.reason, t, strlen(t));
			free(t);
		}
		break;
	default:
		if (strlen(s) == size - 1) {
			rc = auth_check(bearer, s, AUD, NOW, &ar);
			invariants(rc, ar.subject, "", s, 0); /* reasons are fixed texts: a header may spell one */
			if (rc < 0 && auth_www_authenticate(bearer, &ar, "https://files.example.com/.well-known/x", www, sizeof www) < 0)
				abort();
			rc = auth_check(jwtr, s, AUD, NOW, &ar);
			invariants(rc, ar.subject, "", s, 0);
			if (rc < 0 && auth_www_authenticate(jwtr, &ar, "https://files.example.com/.well-known/x", www, sizeof www) < 0)
				abort();
		}
		(void)auth_tokens_parse(bearer2, "fuzz", s, size - 1, err, sizeof err);
		break;
	}
	free(s);
	return 0;
}
