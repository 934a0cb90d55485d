#include "core/tlsio.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A byte queue that frees its memory whenever it runs empty: an idle connection holds no buffer (a memory
 * BIO keeps the largest size it ever grew to), and the owner can write straight from it. */
struct tbuf {
	uint8_t *p;
	size_t off, len, cap;
};

struct tio {
	SSL *ssl;
	BIO *in;  /* network -> SSL */
	BIO *out; /* SSL -> network */
	struct tbuf ib, ob;
	bool done;
	char err[256];
};

static void tbuf_clear(struct tbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}

static int tbuf_append(struct tbuf *b, const uint8_t *p, size_t n)
{
	if (b->off + b->len + n > b->cap) {
		if (b->off && b->len + n <= b->cap) {
			memmove(b->p, b->p + b->off, b->len);
			b->off = 0;
		} else {
			size_t cap = b->cap ? b->cap : 4096;
			uint8_t *q;
			while (cap < b->len + n)
				cap *= 2;
			if (b->off) {
				memmove(b->p, b->p + b->off, b->len);
				b->off = 0;
			}
			if (!(q = realloc(b->p, cap)))
				return -ENOMEM;
			b->p = q;
			b->cap = cap;
		}
	}
	memcpy(b->p + b->off + b->len, p, n);
	b->len += n;
	return 0;
}

static void tbuf_consume(struct tbuf *b, size_t n)
{
	if (n >= b->len) {
		tbuf_clear(b);
		return;
	}
	b->off += n;
	b->len -= n;
}

static int qbio_write(BIO *b, const char *p, int n)
{
	BIO_clear_retry_flags(b);
	if (n <= 0)
		return 0;
	return tbuf_append(BIO_get_data(b), (const uint8_t *)p, (size_t)n) < 0 ? -1 : n;
}

static int qbio_read(BIO *b, char *p, int n)
{
	struct tbuf *q = BIO_get_data(b);
	size_t k;
	BIO_clear_retry_flags(b);
	if (!q->len) {
		BIO_set_retry_read(b); /* more input may come: never a hard EOF */
		return -1;
	}
	k = (size_t)n < q->len ? (size_t)n : q->len;
	memcpy(p, q->p + q->off, k);
	tbuf_consume(q, k);
	return (int)k;
}

static long qbio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct tbuf *q = BIO_get_data(b);
	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_PENDING:
		return (long)q->len;
	case BIO_CTRL_WPENDING:
		return 0;
	case BIO_CTRL_FLUSH:
	case BIO_CTRL_DUP:
		return 1;
	case BIO_CTRL_EOF:
		return q->len == 0;
	default:
		return 0;
	}
}

static int qbio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static BIO_METHOD *qbio_method;
static pthread_once_t qbio_once = PTHREAD_ONCE_INIT;

static void qbio_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "postern tio queue");
	if (!m)
		return;
	BIO_meth_set_write(m, qbio_write);
	BIO_meth_set_read(m, qbio_read);
	BIO_meth_set_ctrl(m, qbio_ctrl);
	BIO_meth_set_create(m, qbio_create);
	qbio_method = m;
}

static BIO *qbio_new(struct tbuf *q)
{
	BIO *b;
	pthread_once(&qbio_once, qbio_init);
	if (!qbio_method || !(b = BIO_new(qbio_method)))
		return NULL;
	BIO_set_data(b, q);
	return b;
}

const char *tio_ssl_errors(char *buf, size_t len)
{
	unsigned long e;
	size_t o = 0;
	buf[0] = 0;
	while ((e = ERR_get_error()) != 0) {
		const char *r = ERR_reason_error_string(e);
		int n = snprintf(buf + o, len - o, "%s%s", o ? "; " : "", r ? r : "unknown TLS error");
		if (n < 0 || (size_t)n >= len - o)
			break;
		o += (size_t)n;
	}
	if (!buf[0])
		snprintf(buf, len, "TLS failure");
	return buf;
}

static bool is_ip_literal(const char *s)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

tio *tio_new(SSL_CTX *ctx, bool server, const char *sni)
{
	tio *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->ssl = SSL_new(ctx);
	t->in = qbio_new(&t->ib);
	t->out = qbio_new(&t->ob);
	if (!t->ssl || !t->in || !t->out)
		goto fail;
	SSL_set_bio(t->ssl, t->in, t->out); /* SSL owns the BIOs from here */
	if (server) {
		SSL_set_accept_state(t->ssl);
	} else {
		SSL_set_connect_state(t->ssl);
		if (sni && is_ip_literal(sni)) {
			/* RFC 6066 forbids IP literals in SNI, and X509_check_host never matches an iPAddress SAN:
			 * verify the address against the certificate's IP SANs instead. */
			if (SSL_get_verify_mode(t->ssl) != SSL_VERIFY_NONE &&
			    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), sni) != 1)
				goto fail;
		} else if (sni) {
			/* A failure here would silently turn host name checking off: refuse instead. */
			if (SSL_set_tlsext_host_name(t->ssl, sni) != 1 ||
			    (SSL_get_verify_mode(t->ssl) != SSL_VERIFY_NONE && SSL_set1_host(t->ssl, sni) != 1))
				goto fail;
		}
	}
	return t;
fail:
	if (t->ssl)
		SSL_free(t->ssl);
	else {
		BIO_free(t->in);
		BIO_free(t->out);
	}
	free(t);
	return NULL;
}

void tio_free(tio *t)
{
	if (!t)
		return;
	SSL_free(t->ssl);
	tbuf_clear(&t->ib);
	tbuf_clear(&t->ob);
	free(t);
}

SSL *tio_ssl(tio *t) { return t->ssl; }
bool tio_handshake_done(const tio *t) { return t->done; }
const char *tio_errstr(const tio *t) { return t->err[0] ? t->err : "TLS failure"; }

int tio_feed(tio *t, const uint8_t *p, size_t n)
{
	return n ? tbuf_append(&t->ib, p, n) : 0;
}

static int fail(tio *t, int r)
{
	int e = SSL_get_error(t->ssl, r);
	char buf[200];
	if (e == SSL_ERROR_SSL) {
		long v = SSL_get_verify_result(t->ssl);
		tio_ssl_errors(buf, sizeof buf);
		if (v != X509_V_OK)
			snprintf(t->err, sizeof t->err, "%s (%s)", buf, X509_verify_cert_error_string(v));
		else
			snprintf(t->err, sizeof t->err, "%s", buf);
	} else if (e == SSL_ERROR_SYSCALL) {
		snprintf(t->err, sizeof t->err, "unexpected end of TLS stream");
	} else {
		snprintf(t->err, sizeof t->err, "TLS error %d", e);
	}
	return -EPROTO;
}

int tio_handshake(tio *t)
{
	int r;
	if (t->done)
		return 1;
	ERR_clear_error();
	r = SSL_do_handshake(t->ssl);
	if (r == 1) {
		t->done = true;
		return 1;
	}
	switch (SSL_get_error(t->ssl, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return 0;
	default:
		return fail(t, r);
	}
}

int tio_read(tio *t, uint8_t *buf, size_t cap)
{
	int r;
	if (!t->done) {
		r = tio_handshake(t);
		if (r <= 0)
			return r;
	}
	ERR_clear_error();
	r = SSL_read(t->ssl, buf, (int)(cap > 0x7fffffff ? 0x7fffffff : cap));
	if (r > 0)
		return r;
	switch (SSL_get_error(t->ssl, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return 0;
	case SSL_ERROR_ZERO_RETURN:
		return TIO_EOF;
	default:
		return fail(t, r);
	}
}

int tio_write(tio *t, const uint8_t *p, size_t n)
{
	while (n > 0) {
		int chunk = n > 65536 ? 65536 : (int)n, r;
		ERR_clear_error();
		r = SSL_write(t->ssl, p, chunk);
		if (r <= 0)
			return fail(t, r);
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

int tio_shutdown(tio *t)
{
	ERR_clear_error();
	if (SSL_shutdown(t->ssl) < 0)
		return fail(t, -1);
	return 0;
}

size_t tio_out_pending(tio *t) { return t->ob.len; }
size_t tio_in_pending(const tio *t) { return t->ib.len; }

size_t tio_out_take(tio *t, uint8_t *buf, size_t cap)
{
	size_t k = cap < t->ob.len ? cap : t->ob.len;
	if (!k)
		return 0;
	memcpy(buf, t->ob.p + t->ob.off, k);
	tbuf_consume(&t->ob, k);
	return k;
}

size_t tio_out_peek(tio *t, const uint8_t **p)
{
	*p = t->ob.len ? t->ob.p + t->ob.off : NULL;
	return t->ob.len;
}

void tio_out_consume(tio *t, size_t n) { tbuf_consume(&t->ob, n); }

uint8_t *tio_out_detach(tio *t, size_t *len)
{
	uint8_t *p = t->ob.p;
	if (!t->ob.len) {
		*len = 0;
		return NULL;
	}
	if (t->ob.off)
		memmove(p, p + t->ob.off, t->ob.len);
	*len = t->ob.len;
	memset(&t->ob, 0, sizeof t->ob);
	return p;
}

SSL_CTX *tio_server_ctx(const char *cert_file, const char *key_file, bool min13, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char buf[200];
	if (!ctx) {
		snprintf(err, errlen, "cannot create TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, min13 ? TLS1_3_VERSION : TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	ERR_clear_error();
	if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		snprintf(err, errlen, "%s: cannot load certificate: %s", cert_file, tio_ssl_errors(buf, sizeof buf));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		snprintf(err, errlen, "%s: cannot load private key: %s", key_file, tio_ssl_errors(buf, sizeof buf));
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "%s: private key does not match certificate %s", key_file, cert_file);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *tio_client_ctx(const char *ca_file, const char *cert_file, const char *key_file, bool min13,
			char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	char buf[200];
	if (!ctx) {
		snprintf(err, errlen, "cannot create TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, min13 ? TLS1_3_VERSION : TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	ERR_clear_error();
	if (ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1
		    : SSL_CTX_set_default_verify_paths(ctx) != 1) {
		snprintf(err, errlen, "%s: cannot load CA certificates: %s", ca_file ? ca_file : "system CA store",
			 tio_ssl_errors(buf, sizeof buf));
		goto fail;
	}
	if (cert_file && SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
		snprintf(err, errlen, "%s: cannot load client certificate: %s", cert_file, tio_ssl_errors(buf, sizeof buf));
		goto fail;
	}
	if (key_file && SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
		snprintf(err, errlen, "%s: cannot load client key: %s", key_file, tio_ssl_errors(buf, sizeof buf));
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}
