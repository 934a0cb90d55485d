#include "core/tls13rec.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define TAG_LEN 16
#define IV_LEN 12
#define UPDATE_AFTER (1ull << 23)

struct trec_dir {
	uint8_t secret[TREC_SECRET_MAX];
	uint8_t key[32];
	uint8_t iv[IV_LEN];
	uint64_t seq;
	uint64_t kid; /* names this key for the context cache; never 0, never reused */
};

struct trec {
	const EVP_CIPHER *cipher;
	const char *md;
	size_t hlen, klen;
	struct trec_dir rd, wr;
	bool client; /* this end is the TLS client: the server may send NewSessionTicket */
};

/* Fetched once: a fetch per record would cost more than sealing a small one. Never freed (process-wide). */
static EVP_CIPHER *ciphers[3];
static EVP_KDF *hkdf;
static pthread_once_t fetch_once = PTHREAD_ONCE_INIT;

static void fetch_all(void)
{
	ciphers[0] = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
	ciphers[1] = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
	ciphers[2] = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
	hkdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
}

bool trec_suite_supported(uint16_t suite) { return suite >= 0x1301 && suite <= 0x1303; }

/* HKDF-Expand-Label(secret, label, "", len) of RFC 8446 7.1. */
static int expand_label(const trec *r, const uint8_t *secret, const char *label, uint8_t *out, size_t len)
{
	uint8_t info[2 + 1 + 6 + 32 + 1];
	size_t ll = strlen(label), o = 0;
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY, rc = -1;
	EVP_KDF_CTX *k = NULL;
	OSSL_PARAM params[5];

	if (ll > 32 || !hkdf)
		goto out;
	info[o++] = (uint8_t)(len >> 8);
	info[o++] = (uint8_t)len;
	info[o++] = (uint8_t)(6 + ll);
	memcpy(info + o, "tls13 ", 6);
	o += 6;
	memcpy(info + o, label, ll);
	o += ll;
	info[o++] = 0; /* empty context */
	params[0] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)r->md, 0);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, r->hlen);
	params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, o);
	params[4] = OSSL_PARAM_construct_end();
	if (!(k = EVP_KDF_CTX_new(hkdf)) || EVP_KDF_derive(k, out, len, params) != 1)
		goto out;
	rc = 0;
out:
	EVP_KDF_CTX_free(k);
	OPENSSL_cleanse(info, sizeof info);
	return rc;
}

/* ---- cipher contexts ------------------------------------------------------------------------------- */

/* One context per thread for sealing and one for opening, keyed only when the key changes: a context per
 * record (allocation, AES key schedule, GHASH table, and their wiping) cost as much as sealing a 1 KiB
 * record, and consecutive records mostly share a key. Between records of one key only the nonce is set, as
 * OpenSSL's own record layer does. A connection's key leaves the cache with the connection (trec_free). */
struct ctx_cache {
	EVP_CIPHER_CTX *x;
	uint64_t kid; /* key loaded in x; 0: none */
};
struct ctx_caches {
	struct ctx_cache seal, open;
};
static _Thread_local struct ctx_caches caches;
static _Atomic uint64_t next_kid = 1;
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_drop(struct ctx_cache *c)
{
	EVP_CIPHER_CTX_free(c->x); /* wipes the key schedule */
	c->x = NULL;
	c->kid = 0;
}

static void caches_free(void *p)
{
	struct ctx_caches *cs = p;
	cache_drop(&cs->seal);
	cache_drop(&cs->open);
}

static void cache_key_init(void) { (void)pthread_key_create(&cache_key, caches_free); }

/* x ready for one record of key d with nonce iv, or NULL. */
static EVP_CIPHER_CTX *keyed(struct ctx_cache *c, const trec *r, const struct trec_dir *d, const uint8_t *iv, int enc)
{
	if (!c->x) {
		/* The thread's destructor frees the contexts of a thread that ends (the loop's never does). */
		pthread_once(&cache_once, cache_key_init);
		(void)pthread_setspecific(cache_key, &caches);
		if (!(c->x = EVP_CIPHER_CTX_new()))
			return NULL;
	}
	if (c->kid == d->kid ? EVP_CipherInit_ex2(c->x, NULL, NULL, iv, enc, NULL) == 1
			     : EVP_CipherInit_ex2(c->x, r->cipher, d->key, iv, enc, NULL) == 1) {
		c->kid = d->kid;
		return c->x;
	}
	c->kid = 0;
	return NULL;
}

/* The key of d is gone (freed or replaced): no cache holds it any longer. */
static void cache_forget(const struct trec_dir *d)
{
	if (caches.seal.kid == d->kid)
		cache_drop(&caches.seal);
	if (caches.open.kid == d->kid)
		cache_drop(&caches.open);
}

static int dir_keys(const trec *r, struct trec_dir *d)
{
	if (d->kid)
		cache_forget(d);
	if (expand_label(r, d->secret, "key", d->key, r->klen) < 0 || expand_label(r, d->secret, "iv", d->iv, IV_LEN) < 0)
		return TREC_E_NOMEM;
	d->seq = 0;
	d->kid = next_kid++;
	return 0;
}

static int dir_update(const trec *r, struct trec_dir *d)
{
	uint8_t next[TREC_SECRET_MAX];
	int rc = TREC_E_NOMEM;
	if (expand_label(r, d->secret, "traffic upd", next, r->hlen) < 0)
		goto out;
	memcpy(d->secret, next, r->hlen);
	rc = dir_keys(r, d);
out:
	OPENSSL_cleanse(next, sizeof next);
	return rc;
}

void trec_set_client(trec *r) { r->client = true; }

int trec_new(trec **out, uint16_t suite, const uint8_t *read_secret, const uint8_t *write_secret, size_t len)
{
	trec *r = NULL;
	int rc = TREC_E_NOMEM;

	*out = NULL;
	pthread_once(&fetch_once, fetch_all);
	if (!trec_suite_supported(suite)) {
		rc = TREC_E_FORMAT;
		goto out;
	}
	if (!(r = OPENSSL_zalloc(sizeof *r)))
		goto out;
	r->cipher = ciphers[suite - 0x1301];
	r->md = suite == 0x1302 ? "SHA384" : "SHA256";
	r->hlen = suite == 0x1302 ? 48 : 32;
	r->klen = suite == 0x1301 ? 16 : 32;
	if (!r->cipher || len != r->hlen) {
		rc = TREC_E_FORMAT;
		goto out;
	}
	memcpy(r->rd.secret, read_secret, len);
	memcpy(r->wr.secret, write_secret, len);
	if ((rc = dir_keys(r, &r->rd)) < 0 || (rc = dir_keys(r, &r->wr)) < 0)
		goto out;
	*out = r;
	r = NULL;
	rc = 0;
out:
	trec_free(r);
	return rc;
}

void trec_free(trec *r)
{
	if (!r)
		return;
	cache_forget(&r->rd);
	cache_forget(&r->wr);
	OPENSSL_clear_free(r, sizeof *r); /* keys and secrets do not outlive the connection */
}

void trec_skip_written(trec *r, uint64_t n) { r->wr.seq = n; }

ssize_t trec_record_len(const uint8_t *p, size_t n)
{
	size_t len;
	if (n < TREC_HEADER)
		return 0;
	/* After the handshake only protected records remain: opaque_type application_data, version 3.x. */
	if (p[0] != TREC_DATA)
		return TREC_E_PROTO;
	if (p[1] != 3)
		return TREC_E_FORMAT;
	len = ((size_t)p[3] << 8) | p[4];
	if (len > TREC_MAX_CIPHER)
		return TREC_E_OVERFLOW;
	if (len < TAG_LEN + 1)
		return TREC_E_FORMAT;
	return n >= TREC_HEADER + len ? (ssize_t)(TREC_HEADER + len) : 0;
}

static void nonce(const struct trec_dir *d, uint8_t out[IV_LEN])
{
	memcpy(out, d->iv, IV_LEN);
	for (int i = 0; i < 8; i++)
		out[IV_LEN - 1 - i] ^= (uint8_t)(d->seq >> (8 * i));
}

int trec_open(trec *r, const uint8_t *rec, size_t reclen, uint8_t *out, size_t *outlen, uint8_t *type)
{
	uint8_t iv[IV_LEN];
	size_t clen;
	int l, rc = TREC_E_AUTH;
	EVP_CIPHER_CTX *x = NULL;

	if (trec_record_len(rec, reclen) != (ssize_t)reclen)
		return TREC_E_FORMAT;
	if (r->rd.seq == UINT64_MAX)
		return TREC_E_LIMIT;
	clen = reclen - TREC_HEADER - TAG_LEN;
	/* RFC 8446 5.4: the TLSInnerPlaintext (content, type, padding) is at most 2^14 + 1 bytes. Checked before
	 * the padding goes: a peer may not hide an oversized record in zeros (the outer cap allows 2^14 + 240). */
	if (clen > TREC_MAX_PLAIN + 1)
		return TREC_E_OVERFLOW;
	nonce(&r->rd, iv);
	if (!(x = keyed(&caches.open, r, &r->rd, iv, 0))) {
		rc = TREC_E_NOMEM;
		goto out;
	}
	if (EVP_DecryptUpdate(x, NULL, &l, rec, TREC_HEADER) != 1 ||
	    EVP_DecryptUpdate(x, out, &l, rec + TREC_HEADER, (int)clen) != 1 ||
	    EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_SET_TAG, TAG_LEN, (void *)(rec + reclen - TAG_LEN)) != 1 ||
	    EVP_DecryptFinal_ex(x, out + l, &l) != 1) {
		OPENSSL_cleanse(out, clen); /* nothing unauthenticated leaves */
		caches.open.kid = 0; /* keyed afresh next time: nothing of a failed record carries over */
		goto out;
	}
	r->rd.seq++;
	/* TLSInnerPlaintext: content, the real type, then zero padding. */
	while (clen > 0 && out[clen - 1] == 0)
		clen--;
	if (clen == 0) {
		rc = TREC_E_PROTO;
		goto out;
	}
	*type = out[clen - 1];
	*outlen = clen - 1;
	rc = 0;
out:
	return rc;
}

ssize_t trec_seal(trec *r, uint8_t type, const uint8_t *p, size_t n, uint8_t *out)
{
	uint8_t iv[IV_LEN];
	size_t len = n + 1 + TAG_LEN;
	int l;
	ssize_t rc = TREC_E_NOMEM;
	EVP_CIPHER_CTX *x = NULL;

	if (n > TREC_MAX_PLAIN)
		return TREC_E_FORMAT;
	if (r->wr.seq == UINT64_MAX)
		return TREC_E_LIMIT;
	out[0] = TREC_DATA;
	out[1] = 3;
	out[2] = 3;
	out[3] = (uint8_t)(len >> 8);
	out[4] = (uint8_t)len;
	nonce(&r->wr, iv);
	if (!(x = keyed(&caches.seal, r, &r->wr, iv, 1)))
		goto out;
	if (EVP_EncryptUpdate(x, NULL, &l, out, TREC_HEADER) != 1 ||
	    (n && EVP_EncryptUpdate(x, out + TREC_HEADER, &l, p, (int)n) != 1) ||
	    EVP_EncryptUpdate(x, out + TREC_HEADER + n, &l, &type, 1) != 1 ||
	    EVP_EncryptFinal_ex(x, out + TREC_HEADER + n + 1, &l) != 1 ||
	    EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, out + TREC_HEADER + n + 1) != 1) {
		caches.seal.kid = 0;
		goto out;
	}
	/* The sequence number moves on only for a record that exists: a nonce is never used twice. */
	r->wr.seq++;
	rc = (ssize_t)(TREC_HEADER + len);
out:
	return rc;
}

bool trec_write_update_due(const trec *r) { return r->wr.seq >= UPDATE_AFTER; }

ssize_t trec_key_update(trec *r, bool request_peer, uint8_t *out)
{
	const uint8_t msg[5] = { 24, 0, 0, 1, request_peer ? 1 : 0 };
	ssize_t n = trec_seal(r, TREC_HANDSHAKE, msg, sizeof msg, out);
	if (n < 0)
		return n;
	return dir_update(r, &r->wr) < 0 ? TREC_E_NOMEM : n;
}

int trec_control(trec *r, uint8_t type, const uint8_t *p, size_t n, uint8_t *reply, size_t *replylen, int *alert)
{
	*replylen = 0;
	*alert = 0;
	if (type == TREC_ALERT) {
		if (n != 2) {
			*alert = 256 + 50; /* decode_error */
			return TREC_E_PROTO;
		}
		if (p[1] == 0)
			return TREC_CTL_EOF;
		if (p[1] == 90) /* user_canceled: a close_notify follows */
			return TREC_CTL_NONE;
		*alert = p[1];
		return TREC_E_PROTO;
	}
	if (type != TREC_HANDSHAKE) {
		*alert = 256 + 10; /* unexpected_message */
		return TREC_E_PROTO;
	}
	/* A client may send only KeyUpdate after its Finished (no post-handshake authentication is offered); a
	 * server may also send NewSessionTicket, which a client of ours drops (it never resumes). Messages come
	 * whole within the record, and a key change must end its record. */
	bool tickets = false;
	while (r->client && n >= 4 && p[0] == 4) {
		size_t mlen = ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | p[3];
		if (mlen > n - 4) {
			*alert = 256 + 10; /* split across records: legal, but no common TLS stack does it */
			return TREC_E_PROTO;
		}
		p += 4 + mlen;
		n -= 4 + mlen;
		tickets = true;
	}
	if (tickets && n == 0) /* an empty handshake record is not allowed (RFC 8446 5.1) */
		return TREC_CTL_NONE;
	if (n != 5 || p[0] != 24 || p[1] || p[2] || p[3] != 1) {
		*alert = 256 + 10;
		return TREC_E_PROTO;
	}
	if (p[4] > 1) {
		*alert = 256 + 47; /* illegal_parameter */
		return TREC_E_PROTO;
	}
	if (dir_update(r, &r->rd) < 0)
		return TREC_E_NOMEM;
	if (p[4] == 1) {
		ssize_t k = trec_key_update(r, false, reply);
		if (k < 0)
			return (int)k;
		*replylen = (size_t)k;
	}
	return TREC_CTL_NONE;
}
