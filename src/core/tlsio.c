#include "core/tlsio.h"
#include "core/cbuf.h"
#include "core/tls13rec.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A byte queue (core/buf: it frees its memory whenever it runs empty, so an idle connection holds no buffer,
 * where a memory BIO keeps the largest size it ever grew to) that also counts the bytes ever appended. The
 * owner (tconn) bounds it with its high-water marks. */
struct tq {
	cbuf b;
	uint64_t total;
};
#define TQ_FIRST 4096
#define TQ_MAX (SIZE_MAX / 4)
/* Bytes a record adds to its content, at most: header, type, tag (TLS 1.3), explicit nonce (TLS 1.2). */
#define OUT_RECORD_ROOM 64

/* Traffic secrets seen during the handshake, until the record layer takes them (tio_enable_handoff). */
struct tio_hs {
	uint8_t csec[TREC_SECRET_MAX], ssec[TREC_SECRET_MAX];
	size_t clen, slen;
	uint64_t out_at_key; /* bytes sent when the server's application key came into use */
	bool marked;
};

struct tio {
	SSL *ssl; /* NULL once the record layer took over (rl) */
	trec *rl;
	struct tio_hs *hs;
	char *sni; /* the name the client asked for, kept after the handoff */
	uint8_t alpn[16]; /* the protocol ALPN selected, kept after the handoff (longer: no handoff) */
	uint8_t alpn_len;
	BIO *in;   /* network -> SSL */
	BIO *out;  /* SSL -> network */
	struct tq ib, ob, pb; /* pb: opened plaintext the caller has not taken yet (record layer only) */
	bool server, done, eof, shut;
	bool wrote_early; /* data written before the handshake was done: no handoff (records of unknown count) */
	bool failed; /* the record layer hit a fatal error (ours or the peer's alert): it seals nothing more */
	char err[256];
};

static int tq_append(struct tq *q, const void *p, size_t n)
{
	int rc = cbuf_append(&q->b, p, n);
	if (rc == 0)
		q->total += n;
	return rc;
}

static int qbio_write(BIO *b, const char *p, int n)
{
	BIO_clear_retry_flags(b);
	if (n <= 0)
		return 0;
	return tq_append(BIO_get_data(b), p, (size_t)n) < 0 ? -1 : n;
}

static int qbio_read(BIO *b, char *p, int n)
{
	struct tq *q = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	if (!q->b.len) {
		BIO_set_retry_read(b);
		return -1; /* -1: BIO "retry", more input may come: never a hard EOF */
	}
	return (int)cbuf_take(&q->b, p, (size_t)n);
}

static long qbio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct tq *q = BIO_get_data(b);
	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_PENDING:
		return (long)q->b.len;
	case BIO_CTRL_WPENDING:
		return 0;
	case BIO_CTRL_FLUSH:
	case BIO_CTRL_DUP:
		return 1;
	case BIO_CTRL_EOF:
		return q->b.len == 0;
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

static BIO *qbio_new(struct tq *q)
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

/* ---- hand-off of the record layer after the handshake ------------------------------------------------ */

static int tio_ex_index = -1;
static pthread_once_t ex_once = PTHREAD_ONCE_INIT;

static void ex_init(void) { tio_ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL); }

/* OpenSSL 3.0 tells the traffic secrets only through the key log (nginx's QUIC layer for OpenSSL takes
 * them the same way). They go into the tio, never into a log or a file. */
static void keylog_cb(const SSL *ssl, const char *line)
{
	tio *t = tio_ex_index >= 0 ? SSL_get_ex_data(ssl, tio_ex_index) : NULL;
	struct tio_hs *hs = t ? t->hs : NULL;
	const char *sp;
	bool client;

	if (!hs)
		return;
	if (!strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24))
		client = true;
	else if (!strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24))
		client = false;
	else
		return;
	if (!(sp = strchr(line + 24, ' ')))
		return;
	if (OPENSSL_hexstr2buf_ex(client ? hs->csec : hs->ssec, TREC_SECRET_MAX, client ? &hs->clen : &hs->slen, sp + 1,
				  '\0') != 1) {
		hs->clen = hs->slen = 0; /* never hand off on a secret we could not read */
		return;
	}
	if (!client) {
		/* Every record from here on uses the server's application key: the hand-off proves how many
		 * left before it (count_records) and numbers its own after them. */
		hs->out_at_key = t->ob.total;
		hs->marked = true;
	}
}

void tio_enable_handoff(SSL_CTX *ctx)
{
	pthread_once(&ex_once, ex_init);
	SSL_CTX_set_keylog_callback(ctx, keylog_cb);
}

/* The records in p[0..n): their count, or a negative errno unless they are exactly whole records that open,
 * in order from sequence 0, with the server's application key (so the count is proven, not inferred: a wrong
 * count could only ever mean a nonce used twice). */
static int64_t count_records(uint16_t suite, const struct tio_hs *hs, const uint8_t *p, size_t n)
{
	int64_t k = 0;
	trec *chk = NULL;
	uint8_t *tmp = NULL;
	int rc;

	if (n && (rc = trec_new(&chk, suite, hs->ssec, hs->csec, hs->slen)) < 0)
		return rc;
	while (n > 0) {
		ssize_t l = trec_record_len(p, n);
		size_t olen;
		uint8_t type;
		if (l <= 0 || !(tmp = malloc((size_t)l))) {
			k = l <= 0 ? -EBADMSG : -ENOMEM;
			break;
		}
		if ((rc = trec_open(chk, p, (size_t)l, tmp, &olen, &type)) < 0) {
			k = rc;
			break;
		}
		OPENSSL_clear_free(tmp, (size_t)l);
		tmp = NULL;
		p += l;
		n -= (size_t)l;
		k++;
	}
	if (tmp)
		free(tmp); /* trec_open wiped what it wrote on failure */
	trec_free(chk);
	return k;
}

/* Called once the handshake is done: moves to the record layer when it is certain of the state (TLS 1.3, a
 * suite it knows, both secrets, every record sent under the new key still in our queue, nothing read ahead);
 * else OpenSSL stays. */
static void try_handoff(tio *t)
{
	struct tio_hs *hs = t->hs;
	const unsigned char *alpn = NULL;
	unsigned alpn_len = 0;
	const char *sn;
	uint16_t suite;
	uint64_t since;
	int64_t sent = -1;

	t->hs = NULL;
	if (SSL_version(t->ssl) != TLS1_3_VERSION || !hs->clen || hs->clen != hs->slen || t->wrote_early ||
	    SSL_has_pending(t->ssl) || SSL_pending(t->ssl))
		goto out;
	suite = SSL_CIPHER_get_protocol_id(SSL_get_current_cipher(t->ssl));
	SSL_get0_alpn_selected(t->ssl, &alpn, &alpn_len);
	if (!trec_suite_supported(suite) || alpn_len > sizeof t->alpn)
		goto out;
	if (t->server) {
		/* OpenSSL's session tickets went out under the server's application key, within the call that
		 * finished the handshake: they are the last bytes queued. Our first record follows them in
		 * sequence; if they are not exactly whole records still in the queue, the count is unknown and
		 * OpenSSL keeps the connection. */
		if (!hs->marked || (since = t->ob.total - hs->out_at_key) > t->ob.b.len)
			goto out;
		sent = since ? count_records(suite, hs, cbuf_data(&t->ob.b) + t->ob.b.len - since, (size_t)since) : 0;
	} else {
		/* A client's handshake ends with its Finished, under the handshake key: its application key has
		 * sealed nothing yet (no data was written before, no early data is offered). What the server sends
		 * from here (tickets, data) is still unread in our queue: OpenSSL read exactly up to its Finished. */
		sent = 0;
	}
	if (sent < 0)
		goto out;
	sn = t->server ? SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name) : NULL;
	if (sn && !(t->sni = strdup(sn)))
		goto out;
	if (trec_new(&t->rl, suite, t->server ? hs->csec : hs->ssec, t->server ? hs->ssec : hs->csec, hs->clen) < 0) {
		free(t->sni);
		t->sni = NULL;
		goto out;
	}
	if (!t->server)
		trec_set_client(t->rl);
	trec_skip_written(t->rl, (uint64_t)sent);
	if (alpn_len)
		memcpy(t->alpn, alpn, alpn_len);
	t->alpn_len = (uint8_t)alpn_len;
	SSL_free(t->ssl); /* frees the BIOs; the queues are ours */
	t->ssl = NULL;
	t->in = t->out = NULL;
out:
	OPENSSL_clear_free(hs, sizeof *hs);
}

/* ---- the connection ---------------------------------------------------------------------------------- */

tio *tio_new(SSL_CTX *ctx, bool server, const char *sni)
{
	tio *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->ssl = SSL_new(ctx);
	cbuf_init(&t->ib.b, TQ_FIRST, TQ_MAX);
	cbuf_init(&t->ob.b, TQ_FIRST, TQ_MAX);
	cbuf_init(&t->pb.b, TQ_FIRST, TQ_MAX);
	(void)cbuf_set_secret(&t->pb.b); /* decrypted plaintext: wiped as it is taken, moved or freed */
	t->in = qbio_new(&t->ib);
	t->out = qbio_new(&t->ob);
	if (!t->ssl || !t->in || !t->out)
		goto fail;
	SSL_set_bio(t->ssl, t->in, t->out); /* SSL owns the BIOs from here */
	t->server = server;
	if (SSL_CTX_get_keylog_callback(ctx) == keylog_cb && tio_ex_index >= 0) {
		if (!(t->hs = OPENSSL_zalloc(sizeof *t->hs)) || !SSL_set_ex_data(t->ssl, tio_ex_index, t))
			goto fail;
	}
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
	OPENSSL_clear_free(t->hs, sizeof *t->hs);
	free(t);
	return NULL;
}

void tio_free(tio *t)
{
	if (!t)
		return;
	SSL_free(t->ssl);
	trec_free(t->rl);
	if (t->hs)
		OPENSSL_clear_free(t->hs, sizeof *t->hs);
	free(t->sni);
	cbuf_free(&t->ib.b);
	cbuf_free(&t->ob.b);
	cbuf_free(&t->pb.b);
	free(t);
}

SSL *tio_ssl(tio *t) { return t->ssl; }
bool tio_handshake_done(const tio *t) { return t->done; }
bool tio_handed_off(const tio *t) { return t->rl != NULL; }
const char *tio_errstr(const tio *t) { return t->err[0] ? t->err : "TLS failure"; }

void tio_alpn(tio *t, const uint8_t **p, unsigned *len)
{
	if (t->ssl) {
		SSL_get0_alpn_selected(t->ssl, p, len);
		return;
	}
	*p = t->alpn_len ? t->alpn : NULL;
	*len = t->alpn_len;
}

const char *tio_servername(tio *t)
{
	return t->ssl ? SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name) : t->sni;
}

size_t tio_plain_pending(tio *t) { return t->ssl ? (size_t)SSL_pending(t->ssl) : t->pb.b.len; }

int tio_feed(tio *t, const uint8_t *p, size_t n)
{
	return n ? tq_append(&t->ib, p, n) : 0;
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
		if (t->hs)
			try_handoff(t);
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

/* Seals a record of ours straight into the output queue. */
static int rl_send(tio *t, uint8_t type, const uint8_t *p, size_t n)
{
	uint8_t *d;
	ssize_t k;
	if (trec_write_update_due(t->rl)) {
		if (cbuf_reserve(&t->ob.b, TREC_OVERHEAD + 5, &d) < 0 || (k = trec_key_update(t->rl, false, d)) < 0)
			return -ENOMEM;
		cbuf_commit(&t->ob.b, (size_t)k);
		t->ob.total += (size_t)k;
	}
	if (cbuf_reserve(&t->ob.b, n + TREC_OVERHEAD, &d) < 0 || (k = trec_seal(t->rl, type, p, n, d)) < 0)
		return -ENOMEM;
	cbuf_commit(&t->ob.b, (size_t)k);
	t->ob.total += (size_t)k;
	return 0;
}

static int rl_fail(tio *t, int e, int alert)
{
	static const uint8_t bad_mac[2] = { 2, 20 }, unexpected[2] = { 2, 10 }, decode[2] = { 2, 50 },
			     overflow[2] = { 2, 22 };
	const uint8_t *mine = NULL;
	switch (e) {
	case TREC_E_AUTH:
		snprintf(t->err, sizeof t->err, "TLS record failed authentication (bad_record_mac)");
		mine = bad_mac;
		break;
	case TREC_E_FORMAT:
		snprintf(t->err, sizeof t->err, "malformed TLS record");
		mine = decode;
		break;
	case TREC_E_OVERFLOW:
		snprintf(t->err, sizeof t->err, "TLS record too large (record_overflow)");
		mine = overflow;
		break;
	case TREC_E_PROTO:
		if (alert > 0 && alert < 256) {
			snprintf(t->err, sizeof t->err, "peer sent TLS alert %d", alert);
		} else {
			snprintf(t->err, sizeof t->err, "unexpected TLS message after the handshake");
			mine = alert == 256 + 50 ? decode : unexpected;
		}
		break;
	case TREC_E_LIMIT:
		snprintf(t->err, sizeof t->err, "TLS sequence numbers exhausted");
		break;
	default:
		snprintf(t->err, sizeof t->err, "out of memory in the TLS record layer");
		break;
	}
	/* A fatal alert of ours tells the peer why; the caller sends what is queued before it closes. */
	if (mine && !t->shut && !t->failed && rl_send(t, TREC_ALERT, mine, 2) == 0)
		t->shut = true;
	/* RFC 8446 6.2: after a fatal alert either way the connection is closed at once, and our write state
	 * may be half-updated after a failed seal: nothing is sealed from here on. */
	t->failed = true;
	t->eof = true;
	return -EPROTO;
}

static int rl_read(tio *t, uint8_t *buf, size_t cap)
{
	for (;;) {
		const uint8_t *rec;
		uint8_t *dst, *tmp = NULL, type = 0, reply[TREC_OVERHEAD + 5];
		size_t len = 0, replylen, body;
		ssize_t reclen;
		int r, alert;

		if (t->pb.b.len)
			return (int)cbuf_take(&t->pb.b, buf, cap);
		if (t->eof)
			return t->failed ? -EPROTO : TIO_EOF;
		if (!t->ib.b.len)
			return 0;
		rec = cbuf_data(&t->ib.b);
		if ((reclen = trec_record_len(rec, t->ib.b.len)) == 0)
			return 0;
		if (reclen < 0)
			return rl_fail(t, (int)reclen, 0);
		body = (size_t)reclen - TREC_HEADER - 16;
		/* Straight into the caller's buffer when the record fits, else through a spill buffer. */
		dst = body <= cap ? buf : (tmp = malloc(body));
		if (!dst)
			return rl_fail(t, TREC_E_NOMEM, 0);
		r = trec_open(t->rl, rec, (size_t)reclen, dst, &len, &type);
		cbuf_consume(&t->ib.b, (size_t)reclen);
		if (r < 0) {
			if (tmp)
				OPENSSL_clear_free(tmp, body);
			return rl_fail(t, r, 0);
		}
		if (type == TREC_DATA) {
			if (tmp) {
				size_t k = cap < len ? cap : len;
				memcpy(buf, tmp, k);
				r = tq_append(&t->pb, tmp + k, len - k);
				OPENSSL_clear_free(tmp, body);
				if (r < 0)
					return rl_fail(t, TREC_E_NOMEM, 0);
				len = k;
			}
			if (len)
				return (int)len;
			continue; /* an empty record is allowed and means nothing */
		}
		r = trec_control(t->rl, type, dst, len, reply, &replylen, &alert);
		if (tmp)
			OPENSSL_clear_free(tmp, body);
		if (r < 0)
			return rl_fail(t, r, alert);
		/* Nothing follows our close_notify (RFC 8446 6.1). */
		if (replylen && !t->shut && tq_append(&t->ob, reply, replylen) < 0)
			return rl_fail(t, TREC_E_NOMEM, 0);
		if (r == TREC_CTL_EOF) {
			t->eof = true;
			return TIO_EOF;
		}
	}
}

int tio_read(tio *t, uint8_t *buf, size_t cap)
{
	int r;
	if (t->rl)
		return rl_read(t, buf, cap);
	if (!t->done) {
		r = tio_handshake(t);
		if (r <= 0)
			return r;
		if (t->rl)
			return rl_read(t, buf, cap);
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

/* Room for the records of n bytes in one allocation: the queue would otherwise grow by doubling record by
 * record, and realloc copied what was already sealed (about one more copy of every bulk byte). A failure here
 * is not one: the seal below grows the queue itself and reports it. */
static void out_room(tio *t, size_t n)
{
	uint8_t *d;
	size_t recs = n / TREC_MAX_PLAIN + 1;
	(void)cbuf_reserve(&t->ob.b, n + recs * OUT_RECORD_ROOM, &d);
}

int tio_write(tio *t, const uint8_t *p, size_t n)
{
	if (!t->done && n)
		t->wrote_early = true;
	if (n > TREC_MAX_PLAIN)
		out_room(t, n);
	if (t->rl) {
		if (t->failed)
			return -EPROTO;
		if (t->shut) {
			snprintf(t->err, sizeof t->err, "write after TLS close");
			return -EPIPE;
		}
		for (; n > 0;) {
			size_t k = n > TREC_MAX_PLAIN ? TREC_MAX_PLAIN : n;
			if (rl_send(t, TREC_DATA, p, k) < 0)
				return rl_fail(t, TREC_E_NOMEM, 0);
			p += k;
			n -= k;
		}
		return 0;
	}
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
	if (t->rl) {
		static const uint8_t close_notify[2] = { 1, 0 };
		if (t->failed)
			return -EPROTO;
		if (t->shut)
			return 0;
		t->shut = true;
		return rl_send(t, TREC_ALERT, close_notify, 2) < 0 ? -ENOMEM : 0;
	}
	ERR_clear_error();
	if (SSL_shutdown(t->ssl) < 0)
		return fail(t, -1);
	return 0;
}

size_t tio_out_pending(tio *t) { return t->ob.b.len; }
size_t tio_in_pending(const tio *t) { return t->ib.b.len; }

size_t tio_out_take(tio *t, uint8_t *buf, size_t cap) { return cbuf_take(&t->ob.b, buf, cap); }

size_t tio_out_peek(tio *t, const uint8_t **p)
{
	*p = t->ob.b.len ? cbuf_data(&t->ob.b) : NULL;
	return t->ob.b.len;
}

void tio_out_consume(tio *t, size_t n) { cbuf_consume(&t->ob.b, n); }

uint8_t *tio_out_detach(tio *t, size_t *len)
{
	cbuf *b = &t->ob.b;
	uint8_t *p = b->p;
	if (!b->len) {
		*len = 0;
		return NULL;
	}
	if (b->off)
		memmove(p, p + b->off, b->len);
	*len = b->len;
	b->p = NULL; /* the caller frees it */
	b->off = b->len = b->cap = 0;
	return p;
}

/* What both sides set: the lowest version and no read buffers kept while idle. */
static SSL_CTX *new_ctx(const SSL_METHOD *m, bool min13, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(m);
	if (!ctx) {
		snprintf(err, errlen, "cannot create TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, min13 ? TLS1_3_VERSION : TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	ERR_clear_error();
	return ctx;
}

SSL_CTX *tio_server_ctx(const char *cert_file, const char *key_file, bool min13, char *err, size_t errlen)
{
	SSL_CTX *ctx = new_ctx(TLS_server_method(), min13, err, errlen);
	char buf[200];
	if (!ctx)
		return NULL;
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
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
	SSL_CTX *ctx = new_ctx(TLS_client_method(), min13, err, errlen);
	char buf[200];
	if (!ctx)
		return NULL;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
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
