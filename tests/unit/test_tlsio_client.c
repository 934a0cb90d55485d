/* The record-layer hand-off on the TLS client side (the gateway's connector links): against a real OpenSSL
 * server that hands off too or keeps its records, with the tickets it sends after the handshake, KeyUpdate
 * from it, ALPN kept, and the cases that must stay with OpenSSL. Also the record layer's client mode on its
 * own: NewSessionTicket accepted only there, whole, and never as an empty record. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

#include "core/tls13rec.h"
#include "core/tlsio.h"
#include "selfsigned.h"

static const unsigned char want_alpn[] = "\x0bpostern-tst";

static int alpn_select(SSL *s, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
		       unsigned inlen, void *arg)
{
	(void)s;
	(void)arg;
	/* Whatever the client offers first. */
	if (!inlen || in[0] + 1u > inlen)
		return SSL_TLSEXT_ERR_NOACK;
	*out = in + 1;
	*outlen = in[0];
	return SSL_TLSEXT_ERR_OK;
}

/* handoff: the server hands off too (the edge), else it keeps OpenSSL's records (any other TLS 1.3 server). */
static SSL_CTX *server_ctx(bool handoff, size_t tickets)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	EVP_PKEY *k = NULL;
	X509 *x = NULL;
	assert_non_null(ctx);
	assert_int_equal(selfsigned_make("srv.test", 3600, &x, &k), 0);
	assert_int_equal(SSL_CTX_use_certificate(ctx, x), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(ctx, k), 1);
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	assert_int_equal(SSL_CTX_set_num_tickets(ctx, tickets), 1);
	if (handoff)
		tio_enable_handoff(ctx);
	X509_free(x);
	EVP_PKEY_free(k);
	return ctx;
}

struct pair {
	SSL_CTX *sctx, *cctx;
	tio *srv, *cli;
};

static void move(tio *from, tio *to)
{
	uint8_t buf[65536];
	size_t n;
	while ((n = tio_out_take(from, buf, sizeof buf)) > 0)
		assert_int_equal(tio_feed(to, buf, n), 0);
}

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

static void pair_new(struct pair *p, bool srv_handoff, size_t tickets, const char *alpn, size_t alpn_len,
		     int max_version)
{
	memset(p, 0, sizeof *p);
	p->sctx = server_ctx(srv_handoff, tickets);
	p->cctx = SSL_CTX_new(TLS_client_method());
	assert_non_null(p->cctx);
	SSL_CTX_set_verify(p->cctx, SSL_VERIFY_NONE, NULL);
	if (max_version)
		SSL_CTX_set_max_proto_version(p->cctx, max_version);
	if (alpn)
		assert_int_equal(SSL_CTX_set_alpn_protos(p->cctx, (const unsigned char *)alpn, (unsigned)alpn_len), 0);
	tio_enable_handoff(p->cctx);
	p->srv = tio_new(p->sctx, true, NULL);
	p->cli = tio_new(p->cctx, false, "srv.test");
	assert_non_null(p->srv);
	assert_non_null(p->cli);
}

static void pair_open(struct pair *p, bool srv_handoff, size_t tickets)
{
	pair_new(p, srv_handoff, tickets, (const char *)want_alpn, sizeof want_alpn - 1, 0);
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

static uint8_t *pattern(size_t n, unsigned seed)
{
	uint8_t *b = malloc(n);
	assert_non_null(b);
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(i * 31 + seed + (i >> 8));
	return b;
}

static void expect(struct pair *p, tio *t, const uint8_t *want, size_t n)
{
	uint8_t *got = malloc(n + 1), buf[65536];
	size_t have = 0;
	assert_non_null(got);
	for (int i = 0; have < n && i < 100000; i++) {
		int r = tio_read(t, buf, sizeof buf);
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

static void exchange(struct pair *p, size_t up, size_t down)
{
	uint8_t *a = pattern(up, 1), *b = pattern(down, 2);
	assert_int_equal(tio_write(p->cli, a, up), 0);
	pump(p);
	expect(p, p->srv, a, up);
	assert_int_equal(tio_write(p->srv, b, down), 0);
	pump(p);
	expect(p, p->cli, b, down);
	free(a);
	free(b);
}

static void assert_alpn(tio *t)
{
	const uint8_t *a = NULL;
	unsigned n = 0;
	tio_alpn(t, &a, &n);
	assert_int_equal(n, sizeof want_alpn - 2);
	assert_memory_equal(a, want_alpn + 1, n);
}

static void test_client_hands_off_with_tickets_behind(void **st)
{
	(void)st;
	for (int srv_handoff = 0; srv_handoff <= 1; srv_handoff++) {
		for (size_t tickets = 0; tickets <= 3; tickets++) {
			struct pair p;
			pair_open(&p, srv_handoff, tickets);
			assert_true(tio_handed_off(p.cli));
			assert_null(tio_ssl(p.cli));
			assert_int_equal(tio_handed_off(p.srv), srv_handoff);
			/* The ALPN and the lack of an SNI survive the SSL object. */
			assert_alpn(p.cli);
			assert_null(tio_servername(p.cli));
			/* The tickets come first, then data: the client drops them and reads on. */
			exchange(&p, 5, 5);
			exchange(&p, 100000, 70001);
			exchange(&p, 16384, 16384);
			pair_close(&p);
		}
	}
}

/* Tickets an OpenSSL server sends later (SSL_new_session_ticket), and its KeyUpdates, requested or not. */
static void test_client_follows_tickets_and_key_updates_later(void **st)
{
	struct pair p;
	(void)st;
	pair_open(&p, false, 2);
	assert_true(tio_handed_off(p.cli));
	exchange(&p, 100, 100);
	for (int round = 0; round < 3; round++) {
		/* The ticket goes out with the server's next write. */
		assert_int_equal(SSL_new_session_ticket(tio_ssl(p.srv)), 1);
		exchange(&p, 10, 1000 + (size_t)round);
		assert_int_equal(SSL_key_update(tio_ssl(p.srv), SSL_KEY_UPDATE_REQUESTED), 1);
		exchange(&p, 2000 + (size_t)round, 3000);
		assert_int_equal(SSL_key_update(tio_ssl(p.srv), SSL_KEY_UPDATE_NOT_REQUESTED), 1);
		exchange(&p, 4000, 5000 + (size_t)round);
	}
	/* close_notify both ways. */
	assert_int_equal(tio_shutdown(p.cli), 0);
	pump(&p);
	{
		uint8_t buf[16];
		assert_int_equal(tio_read(p.srv, buf, sizeof buf), TIO_EOF);
		assert_int_equal(tio_shutdown(p.srv), 0);
		pump(&p);
		assert_int_equal(tio_read(p.cli, buf, sizeof buf), TIO_EOF);
	}
	pair_close(&p);
}

static void test_client_cases_that_keep_openssl(void **st)
{
	struct pair p;
	static const char long_alpn[] = "\x14postern-longer-alpn1";
	(void)st;
	/* TLS 1.2. */
	pair_new(&p, true, 2, (const char *)want_alpn, sizeof want_alpn - 1, TLS1_2_VERSION);
	tio_handshake(p.cli);
	pump(&p);
	assert_true(tio_handshake_done(p.cli));
	assert_false(tio_handed_off(p.cli));
	assert_alpn(p.cli);
	exchange(&p, 3000, 3000);
	pair_close(&p);
	/* An ALPN longer than the copy kept. */
	pair_new(&p, true, 2, long_alpn, sizeof long_alpn - 1, 0);
	tio_handshake(p.cli);
	pump(&p);
	assert_true(tio_handshake_done(p.cli));
	assert_false(tio_handed_off(p.cli));
	{
		const uint8_t *a;
		unsigned n;
		tio_alpn(p.cli, &a, &n);
		assert_int_equal(n, sizeof long_alpn - 2);
		assert_memory_equal(a, long_alpn + 1, n);
	}
	exchange(&p, 3000, 3000);
	pair_close(&p);
	/* Data written while the server's flight waits unread: SSL_write ends the handshake and seals it under
	 * the application key, so OpenSSL numbered records we never saw (a hand-off would reuse a nonce). */
	pair_new(&p, true, 2, (const char *)want_alpn, sizeof want_alpn - 1, 0);
	assert_int_equal(tio_handshake(p.cli), 0);
	move(p.cli, p.srv);
	assert_int_equal(tio_handshake(p.srv), 0);
	move(p.srv, p.cli);
	assert_int_equal(tio_write(p.cli, (const uint8_t *)"early", 5), 0);
	assert_int_equal(tio_handshake(p.cli), 1);
	assert_false(tio_handed_off(p.cli));
	pump(&p);
	expect(&p, p.srv, (const uint8_t *)"early", 5);
	exchange(&p, 3000, 3000);
	pair_close(&p);
}

/* ---- the record layer's client mode on its own ------------------------------------------------------- */

static void mirror(trec **a, trec **b)
{
	uint8_t s1[32], s2[32];
	for (size_t i = 0; i < sizeof s1; i++) {
		s1[i] = (uint8_t)i;
		s2[i] = (uint8_t)(200 - i);
	}
	assert_int_equal(trec_new(a, 0x1301, s1, s2, 32), 0);
	assert_int_equal(trec_new(b, 0x1301, s2, s1, 32), 0);
}

static int control(trec *from, trec *to, const uint8_t *msg, size_t n, size_t *replylen)
{
	uint8_t rec[TREC_MAX_PLAIN + TREC_OVERHEAD], out[TREC_MAX_CIPHER], reply[TREC_OVERHEAD + 5], type = 0;
	size_t olen = 0;
	int alert;
	ssize_t k = trec_seal(from, TREC_HANDSHAKE, msg, n, rec);
	assert_true(k == (ssize_t)(n + TREC_OVERHEAD));
	assert_int_equal(trec_open(to, rec, (size_t)k, out, &olen, &type), 0);
	assert_int_equal(type, TREC_HANDSHAKE);
	return trec_control(to, type, out, olen, reply, replylen, &alert);
}

static void test_client_mode_takes_only_whole_tickets(void **st)
{
	/* Two tickets (lengths 3 and 0), then a KeyUpdate that asks for ours, all in one record. */
	static const uint8_t two_then_update[] = { 4, 0, 0, 3, 'a', 'b', 'c', 4, 0, 0, 0, 24, 0, 0, 1, 1 };
	static const uint8_t ticket[] = { 4, 0, 0, 2, 'x', 'y' };
	static const uint8_t split[] = { 4, 0, 0, 9, 'x', 'y' };
	static const uint8_t update_then_ticket[] = { 24, 0, 0, 1, 0, 4, 0, 0, 0 };
	trec *srv, *cli;
	size_t rl;
	(void)st;
	mirror(&srv, &cli);
	/* A server end refuses tickets (a client never sends them); it stays as it was. */
	assert_int_equal(control(cli, srv, ticket, sizeof ticket, &rl), TREC_E_PROTO);
	trec_set_client(cli);
	assert_int_equal(control(srv, cli, ticket, sizeof ticket, &rl), TREC_CTL_NONE);
	assert_int_equal(rl, 0);
	assert_int_equal(control(srv, cli, two_then_update, sizeof two_then_update, &rl), TREC_CTL_NONE);
	assert_int_equal(rl, TREC_OVERHEAD + 5); /* our KeyUpdate reply was sealed */
	/* Split across records, a key change not at the end of its record, an empty handshake record (fresh
	 * pairs: the hand-made KeyUpdate above moved only the client's read keys). */
	trec_free(srv);
	trec_free(cli);
	mirror(&srv, &cli);
	trec_set_client(cli);
	assert_int_equal(control(srv, cli, split, sizeof split, &rl), TREC_E_PROTO);
	trec_free(srv);
	trec_free(cli);
	mirror(&srv, &cli);
	trec_set_client(cli);
	assert_int_equal(control(srv, cli, update_then_ticket, sizeof update_then_ticket, &rl), TREC_E_PROTO);
	trec_free(srv);
	trec_free(cli);
	mirror(&srv, &cli);
	trec_set_client(cli);
	assert_int_equal(control(srv, cli, (const uint8_t *)"", 0, &rl), TREC_E_PROTO);
	trec_free(srv);
	trec_free(cli);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_client_hands_off_with_tickets_behind),
		cmocka_unit_test(test_client_follows_tickets_and_key_updates_later),
		cmocka_unit_test(test_client_cases_that_keep_openssl),
		cmocka_unit_test(test_client_mode_takes_only_whole_tickets),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
