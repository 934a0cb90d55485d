/* libFuzzer harness for a TLS connection after the record-layer hand-off (tlsio + tls13rec): a real OpenSSL
 * client and our server finish a handshake, then the input is a script of what the client and the network do:
 * application data, KeyUpdates, close_notify, bytes flipped or cut, raw bytes, data from our side, all read
 * through read buffers of varying size (the spill path). Whatever the server hands out must be exactly a prefix
 * of what the client sent, in order; anything else is a crash. */
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/tlsio.h"
#include "../unit/selfsigned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static SSL_CTX *sctx, *cctx;

static void init(void)
{
	EVP_PKEY *k = NULL;
	X509 *x = NULL;
	sctx = SSL_CTX_new(TLS_server_method());
	cctx = SSL_CTX_new(TLS_client_method());
	if (!sctx || !cctx || selfsigned_make("fuzz.test", 86400, &x, &k) < 0 ||
	    SSL_CTX_use_certificate(sctx, x) != 1 || SSL_CTX_use_PrivateKey(sctx, k) != 1)
		abort();
	SSL_CTX_set_mode(sctx, SSL_MODE_RELEASE_BUFFERS);
	tio_enable_handoff(sctx);
	SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
	X509_free(x);
	EVP_PKEY_free(k);
}

static uint8_t net[1 << 18];

/* Client to server, optionally damaged: flip one byte or drop the tail. */
static void to_server(tio *cli, tio *srv, int damage, size_t at)
{
	size_t n = tio_out_take(cli, net, sizeof net);
	if (!n)
		return;
	if (damage == 1)
		net[at % n] ^= 0x20;
	else if (damage == 2)
		n = at % n;
	tio_feed(srv, net, n);
}

static void to_client(tio *srv, tio *cli)
{
	size_t n;
	while ((n = tio_out_take(srv, net, sizeof net)) > 0)
		tio_feed(cli, net, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	static uint8_t sent[1 << 17], got[1 << 17], buf[1 << 15];
	size_t nsent = 0, ngot = 0;
	bool dead = false;
	tio *srv, *cli;

	if (!ready) {
		init();
		ready = true;
	}
	srv = tio_new(sctx, true, NULL);
	cli = tio_new(cctx, false, "fuzz.test");
	if (!srv || !cli)
		abort();
	tio_handshake(cli);
	for (int i = 0; i < 8 && !(tio_handshake_done(srv) && tio_handshake_done(cli)); i++) {
		to_server(cli, srv, 0, 0);
		tio_handshake(srv);
		to_client(srv, cli);
		tio_handshake(cli);
	}
	if (!tio_handed_off(srv))
		abort(); /* a TLS 1.3 client with default suites is always handed off */
	to_server(cli, srv, 0, 0); /* the client's Finished tail, if any */

	for (size_t o = 0; o + 2 <= size && !dead;) {
		uint8_t op = data[o] & 7, arg = data[o + 1];
		size_t cap = 1 + (size_t)(data[o] >> 3) * 1000, len;
		int r;
		o += 2;
		switch (op) {
		case 0: /* the client sends data */
			len = (size_t)arg * 97;
			if (len > size - o)
				len = size - o;
			if (nsent + len > sizeof sent)
				len = sizeof sent - nsent;
			memcpy(sent + nsent, data + o, len);
			if (len && tio_write(cli, data + o, len) == 0)
				nsent += len;
			o += len;
			to_server(cli, srv, 0, 0);
			break;
		case 1: /* KeyUpdate, requested or not */
			SSL_key_update(tio_ssl(cli), arg & 1 ? SSL_KEY_UPDATE_REQUESTED : SSL_KEY_UPDATE_NOT_REQUESTED);
			tio_handshake(cli);
			SSL_do_handshake(tio_ssl(cli));
			to_server(cli, srv, 0, 0);
			break;
		case 2: /* a damaged record: from here on the server must fail, never hand out bytes */
			if (tio_write(cli, (const uint8_t *)"xyz", 3) == 0)
				to_server(cli, srv, 1 + (arg & 1), (size_t)arg * 3);
			dead = true;
			break;
		case 3: /* raw bytes from the network */
			len = arg % 64;
			if (len > size - o)
				len = size - o;
			tio_feed(srv, data + o, len);
			o += len;
			dead = true;
			break;
		case 4: /* the client closes */
			tio_shutdown(cli);
			to_server(cli, srv, 0, 0);
			break;
		case 5: /* our side sends data and may close */
			tio_write(srv, data, (size_t)arg < size ? (size_t)arg : size); /* never past the input */
			if (arg & 1)
				tio_shutdown(srv);
			break;
		default:
			break;
		}
		while ((r = tio_read(srv, buf, cap < sizeof buf ? cap : sizeof buf)) > 0) {
			if (ngot + (size_t)r > nsent || memcmp(sent + ngot, buf, (size_t)r) != 0)
				abort();
			memcpy(got + ngot, buf, (size_t)r);
			ngot += (size_t)r;
		}
		to_client(srv, cli);
		/* The client reads what we sent; a client that breaks here is not our failure. */
		while (tio_read(cli, buf, sizeof buf) > 0)
			;
		to_server(cli, srv, 0, 0);
	}
	/* Everything handed out is exactly what the client sent, in order. */
	if (ngot > nsent || memcmp(got, sent, ngot) != 0)
		abort();
	tio_free(srv);
	tio_free(cli);
	return 0;
}
