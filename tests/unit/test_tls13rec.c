/* The TLS 1.3 record layer that takes over after OpenSSL's handshake: against a real OpenSSL client (every
 * suite, KeyUpdate both ways, padding, close_notify, tampering, TLS 1.2 staying with OpenSSL) and on its own
 * (framing limits, post-handshake messages a client must not send). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tls13rec.h"
#include "core/tlsio.h"
#include "selfsigned.h"

static SSL_CTX *server_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	EVP_PKEY *k = NULL;
	X509 *x = NULL;
	assert_non_null(ctx);
	assert_int_equal(selfsigned_make("srv.test", 3600, &x, &k), 0);
	assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(ctx, k), 1);
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	tio_enable_handoff(ctx);
	X509_free(x);
	EVP_PKEY_free(k);
	return ctx;
}

struct pair {
	SSL_CTX *sctx, *cctx;
	tio *srv, *cli;
};

/* Moves ciphertext both ways until neither side has any left. */
static void pump(struct pair *p)
{
	for (int i = 0; i < 100; i++) {
		uint8_t buf[65536];
		size_t n, moved = 0;
		while ((n = tio_out_take(p->cli, buf, sizeof buf)) > 0) {
			assert_int_equal(tio_feed(p->srv, buf, n), 0);
			moved += n;
		}
		if (!tio_handshake_done(p->srv))
			tio_handshake(p->srv);
		while ((n = tio_out_take(p->srv, buf, sizeof buf)) > 0) {
			assert_int_equal(tio_feed(p->cli, buf, n), 0);
			moved += n;
		}
		if (!tio_handshake_done(p->cli))
			tio_handshake(p->cli);
		if (!moved)
			return;
	}
	fail_msg("pump did not settle");
}

static void pair_open(struct pair *p, const char *suite, int max_version, size_t padding)
{
	memset(p, 0, sizeof *p);
	p->sctx = server_ctx();
	p->cctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(p->cctx);
	SSL_CTX_set_verify(p->cctx, SSL_VERIFY_NONE, NULL);
	if (suite)
		assert_int_equal(SSL_CTX_set_ciphersuites(p->cctx, suite), 1);
	if (max_version)
		SSL_CTX_set_max_proto_version(p->cctx, max_version);
	if (padding)
		assert_int_equal(SSL_CTX_set_block_padding(p->cctx, padding), 1);
	p->srv = tio_new(p->sctx, true, NULL);
	p->cli = tio_new(p->cctx, false, "srv.test");
	assert_non_null(p->srv);
	assert_non_null(p->cli);
	tio_handshake(p->cli);
	pump(p);
	assert_true(tio_handshake_done(p->srv));
	assert_true(tio_handshake_done(p->cli));
}

static void pair_close(struct pair *p)
{
	tio_free(p->srv);
	tio_free(p->cli);
	SSL_CTX_free(p->sctx);
	SSL_CTX_free(p->cctx);
}

/* Reads exactly n bytes from t (pumping in between) and compares them with want; cap is the read size. */
static void expect(struct pair *p, tio *t, const uint8_t *want, size_t n, size_t cap)
{
	uint8_t *got = malloc(n + 1), buf[65536];
	size_t have = 0;
	assert_non_null(got);
	assert_true(cap <= sizeof buf);
	for (int i = 0; have < n && i < 100000; i++) {
		int r = tio_read(t, buf, cap);
		assert_true(r >= 0);
		if (r == 0) {
			pump(p);
			continue;
		}
		assert_true(have + (size_t)r <= n);
		memcpy(got + have, buf, (size_t)r);
		have += (size_t)r;
	}
	assert_int_equal(have, n);
	assert_memory_equal(got, want, n);
	free(got);
}

static uint8_t *pattern(size_t n, unsigned seed)
{
	uint8_t *b = malloc(n);
	assert_non_null(b);
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(i * 31 + seed + (i >> 8));
	return b;
}

static void exchange(struct pair *p, size_t up, size_t down, size_t cap)
{
	uint8_t *a = pattern(up, 1), *b = pattern(down, 2);
	assert_int_equal(tio_write(p->cli, a, up), 0);
	pump(p);
	expect(p, p->srv, a, up, cap);
	assert_int_equal(tio_write(p->srv, b, down), 0);
	pump(p);
	expect(p, p->cli, b, down, sizeof(uint8_t[65536]));
	free(a);
	free(b);
}

static void test_every_suite_hands_off_and_carries_data(void **st)
{
	static const char *suites[] = { "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384",
					"TLS_CHACHA20_POLY1305_SHA256" };
	(void)st;
	for (size_t i = 0; i < 3; i++) {
		struct pair p;
		pair_open(&p, suites[i], 0, 0);
		assert_true(tio_handed_off(p.srv));
		assert_null(tio_ssl(p.srv));
		assert_string_equal(tio_servername(p.srv), "srv.test");
		assert_string_equal(SSL_get_cipher_name(tio_ssl(p.cli)), suites[i]);
		exchange(&p, 5, 5, 16384);
		/* Several full records, a partial one, and exactly one full record. */
		exchange(&p, 100000, 70001, 16384);
		exchange(&p, 16384, 16384, 16384);
		/* A read size smaller than a record: the rest waits in the spill buffer. */
		exchange(&p, 40000, 10, 7);
		assert_int_equal(tio_plain_pending(p.srv), 0);
		pair_close(&p);
	}
}

static void test_key_update_both_ways(void **st)
{
	struct pair p;
	(void)st;
	pair_open(&p, NULL, 0, 0);
	assert_true(tio_handed_off(p.srv));
	for (int round = 0; round < 3; round++) {
		/* The client asks us to update too: our reply moves our write keys, which the client follows. */
		assert_int_equal(SSL_key_update(tio_ssl(p.cli), SSL_KEY_UPDATE_REQUESTED), 1);
		exchange(&p, 1000 + (size_t)round, 2000, 16384);
		assert_int_equal(SSL_key_update(tio_ssl(p.cli), SSL_KEY_UPDATE_NOT_REQUESTED), 1);
		exchange(&p, 3000, 4000 + (size_t)round, 16384);
	}
	pair_close(&p);
}

static void test_padding_is_removed(void **st)
{
	struct pair p;
	(void)st;
	pair_open(&p, NULL, 0, 4096);
	assert_true(tio_handed_off(p.srv));
	exchange(&p, 1, 1, 16384);
	exchange(&p, 20000, 3, 16384);
	pair_close(&p);
}

static void test_close_notify_both_ways(void **st)
{
	struct pair p;
	uint8_t buf[64];
	(void)st;
	pair_open(&p, NULL, 0, 0);
	assert_true(tio_handed_off(p.srv));
	exchange(&p, 10, 10, 16384);
	assert_int_equal(tio_shutdown(p.cli), 0);
	pump(&p);
	assert_int_equal(tio_read(p.srv, buf, sizeof buf), TIO_EOF);
	assert_int_equal(tio_read(p.srv, buf, sizeof buf), TIO_EOF);
	/* Half-closed: we may still answer, then close ours. */
	assert_int_equal(tio_write(p.srv, (const uint8_t *)"bye", 3), 0);
	assert_int_equal(tio_shutdown(p.srv), 0);
	assert_true(tio_write(p.srv, (const uint8_t *)"x", 1) < 0);
	pump(&p);
	expect(&p, p.cli, (const uint8_t *)"bye", 3, 64);
	assert_int_equal(tio_read(p.cli, buf, sizeof buf), TIO_EOF);
	pair_close(&p);
}

static void test_tampered_record_fails_with_alert(void **st)
{
	struct pair p;
	uint8_t buf[4096];
	size_t n;
	int r;
	(void)st;
	pair_open(&p, NULL, 0, 0);
	assert_true(tio_handed_off(p.srv));
	assert_int_equal(tio_write(p.cli, (const uint8_t *)"secret request", 14), 0);
	n = tio_out_take(p.cli, buf, sizeof buf);
	assert_true(n > 20);
	buf[n - 3] ^= 0x40; /* inside the tag */
	assert_int_equal(tio_feed(p.srv, buf, n), 0);
	r = tio_read(p.srv, buf, sizeof buf);
	assert_true(r < 0 && r != TIO_EOF);
	assert_non_null(strstr(tio_errstr(p.srv), "bad_record_mac"));
	/* It stays failed, and the client is told why. */
	assert_true(tio_read(p.srv, buf, sizeof buf) < 0);
	assert_true(tio_write(p.srv, (const uint8_t *)"x", 1) < 0);
	assert_true(tio_out_pending(p.srv) > 0);
	pump(&p);
	r = tio_read(p.cli, buf, sizeof buf);
	assert_true(r < 0 && r != TIO_EOF);
	assert_non_null(strstr(tio_errstr(p.cli), "bad record mac"));
	pair_close(&p);
}

static void test_garbage_after_handshake(void **st)
{
	struct pair p;
	static const uint8_t junk[] = { 0x16, 3, 3, 0, 40, 1, 2, 3 };
	uint8_t buf[64];
	(void)st;
	pair_open(&p, NULL, 0, 0);
	assert_true(tio_handed_off(p.srv));
	assert_int_equal(tio_feed(p.srv, junk, sizeof junk), 0);
	assert_true(tio_read(p.srv, buf, sizeof buf) < 0);
	assert_string_equal(tio_errstr(p.srv), "unexpected TLS message after the handshake");
	pump(&p);
	assert_true(tio_read(p.cli, buf, sizeof buf) < 0);
	assert_non_null(strstr(tio_errstr(p.cli), "unexpected message"));
	pair_close(&p);
	/* A length over 2^14 + 256: record_overflow, told to the client as such. */
	pair_open(&p, NULL, 0, 0);
	assert_int_equal(tio_feed(p.srv, (const uint8_t *)"\x17\x03\x03\x50\x00", 5), 0);
	assert_true(tio_read(p.srv, buf, sizeof buf) < 0);
	assert_string_equal(tio_errstr(p.srv), "TLS record too large (record_overflow)");
	pump(&p);
	assert_true(tio_read(p.cli, buf, sizeof buf) < 0);
	assert_non_null(strstr(tio_errstr(p.cli), "record overflow"));
	pair_close(&p);
}

static void test_tls12_stays_with_openssl(void **st)
{
	struct pair p;
	(void)st;
	pair_open(&p, NULL, TLS1_2_VERSION, 0);
	assert_false(tio_handed_off(p.srv));
	assert_non_null(tio_ssl(p.srv));
	assert_string_equal(tio_servername(p.srv), "srv.test");
	exchange(&p, 30000, 30000, 16384);
	pair_close(&p);
}

/* ---- the hand-off's edges: what arrives with the client Finished, what OpenSSL may do first ----------- */

/* The client's traffic secrets, from its own key log: a stand-in client (a trec with the same keys) can then
 * send records an OpenSSL client never would. */
static uint8_t cli_sec[2][48];
static size_t cli_seclen[2];

static void cli_keylog(const SSL *ssl, const char *line)
{
	int w = !strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24) ? 0 : !strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) ? 1 : -1;
	const char *h;
	size_t n = 0;
	(void)ssl;
	if (w < 0 || !(h = strchr(line + 24, ' ')))
		return;
	for (h++; h[0] && h[1] && n < 48; h += 2) {
		unsigned v;
		assert_int_equal(sscanf(h, "%2x", &v), 1);
		cli_sec[w][n++] = (uint8_t)v;
	}
	cli_seclen[w] = n;
}

/* Runs the handshake up to the client's Finished, which stays in the client's output: the caller may add
 * more client records behind it before the server sees any of them (one TCP segment). */
static void pair_open_until_finished(struct pair *p)
{
	uint8_t buf[65536];
	size_t n;
	memset(p, 0, sizeof *p);
	p->sctx = server_ctx();
	p->cctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(p->cctx);
	SSL_CTX_set_verify(p->cctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_keylog_callback(p->cctx, cli_keylog);
	cli_seclen[0] = cli_seclen[1] = 0;
	p->srv = tio_new(p->sctx, true, NULL);
	p->cli = tio_new(p->cctx, false, "srv.test");
	assert_non_null(p->srv);
	assert_non_null(p->cli);
	assert_int_equal(tio_handshake(p->cli), 0);
	while ((n = tio_out_take(p->cli, buf, sizeof buf)) > 0)
		assert_int_equal(tio_feed(p->srv, buf, n), 0);
	assert_int_equal(tio_handshake(p->srv), 0);
	while ((n = tio_out_take(p->srv, buf, sizeof buf)) > 0)
		assert_int_equal(tio_feed(p->cli, buf, n), 0);
	assert_int_equal(tio_handshake(p->cli), 1);
	assert_false(tio_handshake_done(p->srv));
}

static void feed_client_output(struct pair *p)
{
	uint8_t *all = NULL;
	size_t len = 0;
	all = tio_out_detach(p->cli, &len);
	assert_non_null(all);
	assert_int_equal(tio_feed(p->srv, all, len), 0);
	free(all);
}

static void test_data_and_key_update_behind_the_finished(void **st)
{
	struct pair p;
	uint8_t *a = pattern(30000, 7);
	(void)st;
	pair_open_until_finished(&p);
	/* Finished, data, a KeyUpdate asking for ours, more data: all in one piece. */
	assert_int_equal(tio_write(p.cli, a, 10000), 0);
	assert_int_equal(SSL_key_update(tio_ssl(p.cli), SSL_KEY_UPDATE_REQUESTED), 1);
	assert_int_equal(tio_write(p.cli, a + 10000, 20000), 0);
	feed_client_output(&p);
	expect(&p, p.srv, a, 30000, 16384);
	assert_true(tio_handed_off(p.srv));
	exchange(&p, 100, 20000, 16384);
	free(a);
	pair_close(&p);
}

static void test_read_ahead_keeps_openssl(void **st)
{
	struct pair p;
	uint8_t *a = pattern(5000, 9);
	(void)st;
	pair_open_until_finished(&p);
	/* Records behind the Finished already inside OpenSSL: their sequence numbers are OpenSSL's. */
	SSL_set_read_ahead(tio_ssl(p.srv), 1);
	assert_int_equal(tio_write(p.cli, a, 5000), 0);
	feed_client_output(&p);
	expect(&p, p.srv, a, 5000, 16384);
	assert_false(tio_handed_off(p.srv));
	exchange(&p, 3000, 3000, 16384);
	free(a);
	pair_close(&p);
}

static void test_tickets_before_the_hand_off(void **st)
{
	(void)st;
	for (size_t tickets = 0; tickets <= 3; tickets++) {
		struct pair p;
		pair_open_until_finished(&p);
		/* Tickets are sealed under the server's application key before the hand-off: our records follow
		 * them in sequence, which the client checks on every record it opens. */
		SSL_set_num_tickets(tio_ssl(p.srv), tickets);
		feed_client_output(&p);
		assert_int_equal(tio_handshake(p.srv), 1);
		assert_true(tio_handed_off(p.srv));
		exchange(&p, 3000, 3000, 16384);
		assert_int_equal(SSL_SESSION_is_resumable(SSL_get0_session(tio_ssl(p.cli))), tickets > 0);
		pair_close(&p);
	}
}

/* Our tickets resume: a second connection with the first one's session needs no full handshake and is handed
 * off too. */
static void test_resumed_session_hands_off(void **st)
{
	struct pair p;
	SSL_CTX *sctx = server_ctx(), *cctx = SSL_CTX_new(TLS_client_method());
	SSL_SESSION *sess = NULL;
	(void)st;
	assert_non_null(cctx);
	SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
	for (int round = 0; round < 2; round++) {
		memset(&p, 0, sizeof p);
		p.sctx = sctx;
		p.cctx = cctx;
		SSL_CTX_up_ref(sctx);
		SSL_CTX_up_ref(cctx);
		p.srv = tio_new(sctx, true, NULL);
		p.cli = tio_new(cctx, false, "srv.test");
		assert_non_null(p.srv);
		assert_non_null(p.cli);
		if (round == 1)
			assert_int_equal(SSL_set_session(tio_ssl(p.cli), sess), 1);
		tio_handshake(p.cli);
		pump(&p);
		assert_true(tio_handed_off(p.srv));
		exchange(&p, 2000, 2000, 16384); /* the client reads the tickets on the way */
		assert_int_equal(SSL_session_reused(tio_ssl(p.cli)), round);
		if (round == 0) {
			sess = SSL_get1_session(tio_ssl(p.cli));
			assert_non_null(sess);
			assert_true(SSL_SESSION_is_resumable(sess));
		}
		/* A clean close: OpenSSL marks the session of a connection freed without one as not resumable. */
		assert_int_equal(tio_shutdown(p.cli), 0);
		pump(&p);
		pair_close(&p);
	}
	SSL_SESSION_free(sess);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
}

/* A stand-in for the client after its Finished: it writes with the client's key, reads with the server's. */
static trec *fake_client(struct pair *p)
{
	trec *f = NULL;
	uint16_t suite = SSL_CIPHER_get_protocol_id(SSL_get_current_cipher(tio_ssl(p->cli)));
	assert_true(cli_seclen[0] > 0 && cli_seclen[0] == cli_seclen[1]);
	assert_int_equal(trec_new(&f, suite, cli_sec[1], cli_sec[0], cli_seclen[0]), 0);
	return f;
}

/* A handed-off server and a stand-in for its client that can send records OpenSSL never would. */
static trec *open_with_fake_client(struct pair *p)
{
	pair_open_until_finished(p);
	/* The stand-in reads our records from sequence 0: no tickets ahead of them. */
	SSL_set_num_tickets(tio_ssl(p->srv), 0);
	feed_client_output(p);
	assert_int_equal(tio_handshake(p->srv), 1);
	assert_true(tio_handed_off(p->srv));
	return fake_client(p);
}

static void feed_sealed(tio *t, trec *f, uint8_t type, const uint8_t *msg, size_t n)
{
	uint8_t rec[TREC_MAX_PLAIN + TREC_OVERHEAD];
	ssize_t k = trec_seal(f, type, msg, n, rec);
	assert_true(k > 0);
	assert_int_equal(tio_feed(t, rec, (size_t)k), 0);
}

static void feed_key_update(tio *t, trec *f)
{
	uint8_t rec[TREC_OVERHEAD + 5];
	ssize_t k = trec_key_update(f, true, rec); /* moves the stand-in's write keys on */
	assert_int_equal(k, TREC_OVERHEAD + 5);
	assert_int_equal(tio_feed(t, rec, (size_t)k), 0);
}

static void test_no_records_after_a_fatal_alert(void **st)
{
	struct pair p;
	trec *f;
	uint8_t buf[64];
	(void)st;
	f = open_with_fake_client(&p);
	feed_sealed(p.srv, f, TREC_DATA, (const uint8_t *)"hi", 2);
	assert_int_equal(tio_read(p.srv, buf, sizeof buf), 2);
	feed_sealed(p.srv, f, TREC_ALERT, (const uint8_t *)"\x02\x28", 2);
	assert_true(tio_read(p.srv, buf, sizeof buf) < 0);
	assert_string_equal(tio_errstr(p.srv), "peer sent TLS alert 40");
	/* RFC 8446 6.2: the connection is closed at once; nothing more is sealed. */
	assert_true(tio_write(p.srv, (const uint8_t *)"x", 1) < 0);
	assert_true(tio_shutdown(p.srv) < 0 || tio_out_pending(p.srv) == 0);
	assert_int_equal(tio_out_pending(p.srv), 0);
	trec_free(f);
	pair_close(&p);
}

static void test_nothing_after_our_close_notify(void **st)
{
	struct pair p;
	trec *f;
	uint8_t buf[64], out[64], type;
	size_t before, olen;
	const uint8_t *q;
	(void)st;
	f = open_with_fake_client(&p);
	assert_int_equal(tio_shutdown(p.srv), 0);
	before = tio_out_pending(p.srv);
	assert_int_equal(before, TREC_OVERHEAD + 2);
	/* The client asks for a KeyUpdate after we closed: our close_notify stays the last record we send. */
	feed_key_update(p.srv, f);
	feed_sealed(p.srv, f, TREC_DATA, (const uint8_t *)"late", 4);
	assert_int_equal(tio_read(p.srv, buf, sizeof buf), 4);
	assert_int_equal(tio_out_pending(p.srv), before);
	assert_int_equal(tio_out_peek(p.srv, &q), before);
	assert_int_equal(trec_open(f, q, before, out, &olen, &type), 0);
	assert_int_equal(type, TREC_ALERT);
	assert_int_equal(olen, 2);
	assert_memory_equal(out, "\x01\x00", 2);
	trec_free(f);
	pair_close(&p);
}

/* A control record read through the spill buffer (read size smaller than the record). */
static void test_key_update_with_a_tiny_read_buffer(void **st)
{
	struct pair p;
	trec *f;
	uint8_t buf[1], out[64], type;
	size_t olen, n;
	const uint8_t *q;
	(void)st;
	f = open_with_fake_client(&p);
	feed_key_update(p.srv, f);
	feed_sealed(p.srv, f, TREC_DATA, (const uint8_t *)"ab", 2);
	assert_int_equal(tio_read(p.srv, buf, 1), 1);
	assert_int_equal(buf[0], 'a');
	assert_int_equal(tio_plain_pending(p.srv), 1);
	assert_int_equal(tio_read(p.srv, buf, 1), 1);
	assert_int_equal(buf[0], 'b');
	/* The reply is under our old key; the client then follows. */
	n = tio_out_peek(p.srv, &q);
	assert_int_equal(n, TREC_OVERHEAD + 5);
	assert_int_equal(trec_open(f, q, n, out, &olen, &type), 0);
	assert_int_equal(type, TREC_HANDSHAKE);
	assert_memory_equal(out, "\x18\x00\x00\x01\x00", 5);
	tio_out_consume(p.srv, n);
	trec_free(f);
	pair_close(&p);
}

/* ---- the record layer on its own: two mirrored halves ------------------------------------------------ */

static void mirror(trec **a, trec **b, uint16_t suite)
{
	uint8_t s1[48], s2[48];
	size_t len = suite == 0x1302 ? 48 : 32;
	for (size_t i = 0; i < sizeof s1; i++) {
		s1[i] = (uint8_t)i;
		s2[i] = (uint8_t)(200 - i);
	}
	assert_int_equal(trec_new(a, suite, s1, s2, len), 0);
	assert_int_equal(trec_new(b, suite, s2, s1, len), 0);
}

static int send_recv(trec *from, trec *to, uint8_t type, const uint8_t *msg, size_t n, uint8_t *reply, size_t *replylen,
		     int *alert)
{
	uint8_t rec[TREC_MAX_PLAIN + TREC_OVERHEAD], out[TREC_MAX_CIPHER];
	size_t olen = 0;
	uint8_t otype = 0;
	ssize_t k = trec_seal(from, type, msg, n, rec);
	assert_true(k == (ssize_t)(n + TREC_OVERHEAD));
	assert_int_equal(trec_record_len(rec, (size_t)k), k);
	assert_int_equal(trec_record_len(rec, (size_t)k - 1), 0);
	assert_int_equal(trec_open(to, rec, (size_t)k, out, &olen, &otype), 0);
	assert_int_equal(otype, type);
	assert_int_equal(olen, n);
	assert_memory_equal(out, msg, n);
	if (type == TREC_DATA)
		return 0;
	return trec_control(to, type, out, olen, reply, replylen, alert);
}

/* A record sealed by hand (AES-128-GCM, SHA-256), with as much zero padding as asked: trec_seal sends none,
 * and a peer that pads past 2^14 + 1 bytes of TLSInnerPlaintext is what the record layer must refuse. */
static void expand_label(const uint8_t *secret, const char *label, uint8_t *out, size_t len)
{
	uint8_t info[64];
	size_t ll = strlen(label), o = 0;
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *k = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	OSSL_PARAM params[5];
	assert_non_null(k);
	info[o++] = 0;
	info[o++] = (uint8_t)len;
	info[o++] = (uint8_t)(6 + ll);
	memcpy(info + o, "tls13 ", 6);
	o += 6;
	memcpy(info + o, label, ll);
	o += ll;
	info[o++] = 0;
	params[0] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, 32);
	params[3] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, o);
	params[4] = OSSL_PARAM_construct_end();
	assert_int_equal(EVP_KDF_derive(k, out, len, params), 1);
	EVP_KDF_CTX_free(k);
	EVP_KDF_free(kdf);
}

static size_t seal_padded(const uint8_t secret[32], uint64_t seq, uint8_t type, const uint8_t *p, size_t n, size_t pad,
			  uint8_t *out)
{
	uint8_t key[16], iv[12], *inner = calloc(1, n + 1 + pad);
	size_t len = n + 1 + pad + 16;
	int l;
	EVP_CIPHER_CTX *x = EVP_CIPHER_CTX_new();
	assert_non_null(inner);
	assert_non_null(x);
	assert_true(len <= 0xffff);
	expand_label(secret, "key", key, sizeof key);
	expand_label(secret, "iv", iv, sizeof iv);
	for (int i = 0; i < 8; i++)
		iv[11 - i] ^= (uint8_t)(seq >> (8 * i));
	memcpy(inner, p, n);
	inner[n] = type;
	out[0] = TREC_DATA;
	out[1] = out[2] = 3;
	out[3] = (uint8_t)(len >> 8);
	out[4] = (uint8_t)len;
	assert_int_equal(EVP_EncryptInit_ex2(x, EVP_aes_128_gcm(), key, iv, NULL), 1);
	assert_int_equal(EVP_EncryptUpdate(x, NULL, &l, out, TREC_HEADER), 1);
	assert_int_equal(EVP_EncryptUpdate(x, out + TREC_HEADER, &l, inner, (int)(n + 1 + pad)), 1);
	assert_int_equal(EVP_EncryptFinal_ex(x, out + TREC_HEADER + n + 1 + pad, &l), 1);
	assert_int_equal(EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_AEAD_GET_TAG, 16, out + TREC_HEADER + n + 1 + pad), 1);
	EVP_CIPHER_CTX_free(x);
	free(inner);
	return TREC_HEADER + len;
}

static void test_inner_plaintext_over_the_limit(void **st)
{
	static uint8_t rec[TREC_HEADER + TREC_MAX_CIPHER], out[TREC_MAX_CIPHER], data[TREC_MAX_PLAIN];
	uint8_t s1[48], s2[48], type;
	size_t olen, n;
	trec *b;
	(void)st;
	for (size_t i = 0; i < sizeof s1; i++) {
		s1[i] = (uint8_t)i;
		s2[i] = (uint8_t)(200 - i);
	}
	memset(data, 'd', sizeof data);
	assert_int_equal(trec_new(&b, 0x1301, s2, s1, 32), 0);
	/* The hand-made sealer agrees with trec: a padded record opens, padding removed. */
	n = seal_padded(s2, 0, TREC_DATA, data, 100, 200, rec);
	assert_int_equal(trec_open(b, rec, n, out, &olen, &type), 0);
	assert_int_equal(olen, 100);
	assert_int_equal(type, TREC_DATA);
	/* 2^14 + 1 bytes of TLSInnerPlaintext: the most there may be, with padding or without. */
	n = seal_padded(s2, 1, TREC_DATA, data, TREC_MAX_PLAIN, 0, rec);
	assert_int_equal(trec_open(b, rec, n, out, &olen, &type), 0);
	assert_int_equal(olen, TREC_MAX_PLAIN);
	n = seal_padded(s2, 2, TREC_DATA, data, 1000, TREC_MAX_PLAIN - 1000, rec);
	assert_int_equal(trec_open(b, rec, n, out, &olen, &type), 0);
	assert_int_equal(olen, 1000);
	/* One byte more, though the content fits once the padding goes, and though the outer length is within
	 * 2^14 + 256: record_overflow. */
	n = seal_padded(s2, 3, TREC_DATA, data, TREC_MAX_PLAIN, 1, rec);
	assert_int_equal(trec_record_len(rec, n), (ssize_t)n);
	assert_int_equal(trec_open(b, rec, n, out, &olen, &type), TREC_E_OVERFLOW);
	n = seal_padded(s2, 3, TREC_DATA, data, 10, TREC_MAX_PLAIN + 200, rec);
	assert_int_equal(trec_open(b, rec, n, out, &olen, &type), TREC_E_OVERFLOW);
	trec_free(b);
}

/* Connections sealed and opened in turn on one thread (what an event loop does): every record uses its own
 * connection's key and nonce although the cipher contexts are shared; a record that fails to open leaves
 * nothing behind for the next; a freed connection's key is not used again. The hand-made sealer (OpenSSL
 * EVP with a fresh context) is the reference. */
static void test_interleaved_connections_use_their_own_keys(void **st)
{
	static uint8_t rec[TREC_HEADER + TREC_MAX_CIPHER], ref[TREC_HEADER + TREC_MAX_CIPHER], out[TREC_MAX_CIPHER];
	uint8_t sec[3][2][32], data[3][300], type;
	trec *w[3], *r[3];
	size_t olen;
	ssize_t n;
	(void)st;
	for (int c = 0; c < 3; c++) {
		for (size_t i = 0; i < 32; i++) {
			sec[c][0][i] = (uint8_t)(i + 10 * c);
			sec[c][1][i] = (uint8_t)(250 - i - 7 * c);
		}
		memset(data[c], 'a' + c, sizeof data[c]);
		/* w writes with sec[c][1]; r reads what w wrote. */
		assert_int_equal(trec_new(&w[c], 0x1301, sec[c][0], sec[c][1], 32), 0);
		assert_int_equal(trec_new(&r[c], 0x1301, sec[c][1], sec[c][0], 32), 0);
	}
	for (uint64_t seq = 0; seq < 4; seq++) {
		for (int c = 0; c < 3; c++) {
			size_t len = 100 + 50 * (size_t)c + (size_t)seq;
			n = trec_seal(w[c], TREC_DATA, data[c], len, rec);
			assert_true(n > 0);
			assert_int_equal((size_t)n, seal_padded(sec[c][1], seq, TREC_DATA, data[c], len, 0, ref));
			assert_memory_equal(rec, ref, (size_t)n);
			/* Opened by another connection first: fails, and must not spoil the right one's open. */
			assert_int_equal(trec_open(r[(c + 1) % 3], rec, (size_t)n, out, &olen, &type), TREC_E_AUTH);
			assert_int_equal(trec_open(r[c], rec, (size_t)n, out, &olen, &type), 0);
			assert_int_equal(olen, len);
			assert_memory_equal(out, data[c], len);
		}
	}
	/* A connection freed and another made in its place with other secrets: its records are its own. */
	trec_free(w[0]);
	trec_free(r[0]);
	assert_int_equal(trec_new(&w[0], 0x1301, sec[2][0], sec[1][1], 32), 0);
	n = trec_seal(w[0], TREC_DATA, data[0], 10, rec);
	assert_int_equal((size_t)n, seal_padded(sec[1][1], 0, TREC_DATA, data[0], 10, 0, ref));
	assert_memory_equal(rec, ref, (size_t)n);
	trec_free(w[0]);
	for (int c = 1; c < 3; c++) {
		trec_free(w[c]);
		trec_free(r[c]);
	}
}

/* The client's application traffic secret, from OpenSSL's key log. */
static uint8_t cli_secret[32];
static bool cli_secret_seen;

static void keylog_capture(const SSL *ssl, const char *line)
{
	static const char tag[] = "CLIENT_TRAFFIC_SECRET_0 ";
	const char *hex;
	(void)ssl;
	if (strncmp(line, tag, sizeof tag - 1) || !(hex = strchr(line + sizeof tag - 1, ' ')))
		return;
	hex++;
	for (size_t i = 0; i < 32; i++) {
		unsigned v;
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
		cli_secret[i] = (uint8_t)v;
	}
	cli_secret_seen = true;
}

static void test_padded_overflow_gets_record_overflow(void **st)
{
	static uint8_t rec[TREC_HEADER + TREC_MAX_CIPHER], data[TREC_MAX_PLAIN];
	struct pair p;
	uint8_t buf[256];
	size_t n;
	int r;
	(void)st;
	memset(&p, 0, sizeof p);
	memset(data, 'e', sizeof data);
	cli_secret_seen = false;
	p.sctx = server_ctx();
	p.cctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(p.cctx);
	SSL_CTX_set_verify(p.cctx, SSL_VERIFY_NONE, NULL);
	assert_int_equal(SSL_CTX_set_ciphersuites(p.cctx, "TLS_AES_128_GCM_SHA256"), 1);
	SSL_CTX_set_keylog_callback(p.cctx, keylog_capture);
	p.srv = tio_new(p.sctx, true, NULL);
	p.cli = tio_new(p.cctx, false, "srv.test");
	assert_non_null(p.srv);
	assert_non_null(p.cli);
	tio_handshake(p.cli);
	pump(&p);
	assert_true(tio_handed_off(p.srv));
	assert_true(cli_secret_seen);
	/* The client's first application record: 2^14 bytes of data and one byte of padding. */
	n = seal_padded(cli_secret, 0, TREC_DATA, data, TREC_MAX_PLAIN, 1, rec);
	assert_int_equal(tio_feed(p.srv, rec, n), 0);
	r = tio_read(p.srv, buf, sizeof buf);
	assert_true(r < 0 && r != TIO_EOF);
	assert_string_equal(tio_errstr(p.srv), "TLS record too large (record_overflow)");
	assert_int_equal(tio_plain_pending(p.srv), 0); /* nothing of it was delivered */
	pump(&p);
	r = tio_read(p.cli, buf, sizeof buf);
	assert_true(r < 0 && r != TIO_EOF);
	assert_non_null(strstr(tio_errstr(p.cli), "record overflow"));
	pair_close(&p);
}

static void test_record_framing_limits(void **st)
{
	uint8_t h[TREC_HEADER];
	(void)st;
	assert_int_equal(trec_record_len((const uint8_t *)"\x17\x03", 2), 0);
	memcpy(h, "\x17\x03\x03\x00\x10", 5); /* 16: shorter than a tag and a type */
	assert_int_equal(trec_record_len(h, 5), TREC_E_FORMAT);
	memcpy(h, "\x17\x03\x03\x41\x01", 5); /* 2^14 + 257 */
	assert_int_equal(trec_record_len(h, 5), TREC_E_OVERFLOW);
	memcpy(h, "\x17\x03\x03\xff\xff", 5);
	assert_int_equal(trec_record_len(h, 5), TREC_E_OVERFLOW);
	memcpy(h, "\x17\x03\x03\x41\x00", 5); /* 2^14 + 256: allowed, waits for its body */
	assert_int_equal(trec_record_len(h, 5), 0);
	memcpy(h, "\x15\x03\x03\x00\x02", 5); /* a plaintext alert after the handshake */
	assert_int_equal(trec_record_len(h, 5), TREC_E_PROTO);
	memcpy(h, "\x14\x03\x03\x00\x01", 5); /* a stray ChangeCipherSpec */
	assert_int_equal(trec_record_len(h, 5), TREC_E_PROTO);
	memcpy(h, "\x17\x02\x03\x00\x20", 5);
	assert_int_equal(trec_record_len(h, 5), TREC_E_FORMAT);
	assert_false(trec_suite_supported(0x1304)); /* CCM is not offered */
}

static void test_post_handshake_messages(void **st)
{
	static const uint16_t suites[] = { 0x1301, 0x1302, 0x1303 };
	(void)st;
	for (size_t i = 0; i < 3; i++) {
		trec *a, *b;
		uint8_t reply[TREC_OVERHEAD + 5], rec[64], out[64], type;
		size_t rl, olen;
		int alert;
		mirror(&a, &b, suites[i]);
		assert_int_equal(send_recv(a, b, TREC_DATA, (const uint8_t *)"abc", 3, reply, &rl, &alert), 0);
		/* KeyUpdate not requested: b's read keys move, no reply; data still flows. */
		assert_int_equal(trec_key_update(a, false, rec), TREC_OVERHEAD + 5);
		assert_int_equal(trec_open(b, rec, TREC_OVERHEAD + 5, out, &olen, &type), 0);
		assert_int_equal(trec_control(b, type, out, olen, reply, &rl, &alert), TREC_CTL_NONE);
		assert_int_equal(rl, 0);
		assert_int_equal(send_recv(a, b, TREC_DATA, (const uint8_t *)"after", 5, reply, &rl, &alert), 0);
		/* Requested: b answers with its own, which a opens with its old read keys and then follows. */
		assert_int_equal(trec_key_update(a, true, rec), TREC_OVERHEAD + 5);
		assert_int_equal(trec_open(b, rec, TREC_OVERHEAD + 5, out, &olen, &type), 0);
		assert_int_equal(trec_control(b, type, out, olen, reply, &rl, &alert), TREC_CTL_NONE);
		assert_int_equal(rl, TREC_OVERHEAD + 5);
		assert_int_equal(trec_open(a, reply, rl, out, &olen, &type), 0);
		assert_int_equal(trec_control(a, type, out, olen, rec, &rl, &alert), TREC_CTL_NONE);
		assert_int_equal(rl, 0);
		assert_int_equal(send_recv(b, a, TREC_DATA, (const uint8_t *)"both", 4, reply, &rl, &alert), 0);
		assert_int_equal(send_recv(a, b, TREC_DATA, (const uint8_t *)"", 0, reply, &rl, &alert), 0);
		/* Alerts: close_notify ends, user_canceled is ignored, anything else fails naming it. */
		assert_int_equal(send_recv(a, b, TREC_ALERT, (const uint8_t *)"\x01\x5a", 2, reply, &rl, &alert), TREC_CTL_NONE);
		assert_int_equal(send_recv(a, b, TREC_ALERT, (const uint8_t *)"\x02\x28", 2, reply, &rl, &alert), TREC_E_PROTO);
		assert_int_equal(alert, 40);
		assert_int_equal(send_recv(a, b, TREC_ALERT, (const uint8_t *)"\x01\x00\x00", 3, reply, &rl, &alert), TREC_E_PROTO);
		assert_int_equal(alert, 256 + 50);
		assert_int_equal(send_recv(a, b, TREC_ALERT, (const uint8_t *)"\x01\x00", 2, reply, &rl, &alert), TREC_CTL_EOF);
		/* Handshake messages a client must not send here, a bad KeyUpdate value, two in one record. */
		assert_int_equal(send_recv(a, b, TREC_HANDSHAKE, (const uint8_t *)"\x04\x00\x00\x01\x00", 5, reply, &rl, &alert),
				 TREC_E_PROTO);
		assert_int_equal(alert, 256 + 10);
		assert_int_equal(send_recv(a, b, TREC_HANDSHAKE, (const uint8_t *)"\x18\x00\x00\x01\x02", 5, reply, &rl, &alert),
				 TREC_E_PROTO);
		assert_int_equal(alert, 256 + 47);
		assert_int_equal(send_recv(a, b, TREC_HANDSHAKE, (const uint8_t *)"\x18\x00\x00\x01\x00\x18\x00\x00\x01\x00", 10,
					   reply, &rl, &alert), TREC_E_PROTO);
		assert_int_equal(send_recv(a, b, 20, (const uint8_t *)"\x01", 1, reply, &rl, &alert), TREC_E_PROTO);
		/* A record sealed for the wrong sequence number does not open. */
		assert_true(trec_seal(a, TREC_DATA, (const uint8_t *)"x", 1, rec) > 0);
		assert_true(trec_seal(a, TREC_DATA, (const uint8_t *)"y", 1, rec) > 0);
		assert_int_equal(trec_open(b, rec, 1 + TREC_OVERHEAD, out, &olen, &type), TREC_E_AUTH);
		trec_free(a);
		trec_free(b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_suite_hands_off_and_carries_data),
		cmocka_unit_test(test_key_update_both_ways),
		cmocka_unit_test(test_padding_is_removed),
		cmocka_unit_test(test_close_notify_both_ways),
		cmocka_unit_test(test_tampered_record_fails_with_alert),
		cmocka_unit_test(test_garbage_after_handshake),
		cmocka_unit_test(test_tls12_stays_with_openssl),
		cmocka_unit_test(test_record_framing_limits),
		cmocka_unit_test(test_post_handshake_messages),
		cmocka_unit_test(test_data_and_key_update_behind_the_finished),
		cmocka_unit_test(test_read_ahead_keeps_openssl),
		cmocka_unit_test(test_tickets_before_the_hand_off),
		cmocka_unit_test(test_resumed_session_hands_off),
		cmocka_unit_test(test_no_records_after_a_fatal_alert),
		cmocka_unit_test(test_nothing_after_our_close_notify),
		cmocka_unit_test(test_key_update_with_a_tiny_read_buffer),
		cmocka_unit_test(test_inner_plaintext_over_the_limit),
		cmocka_unit_test(test_padded_overflow_gets_record_overflow),
		cmocka_unit_test(test_interleaved_connections_use_their_own_keys),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
