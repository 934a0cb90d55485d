/* A TCP connection on libuv with optional TLS (tlsio), bounded write queue and read backpressure.
 * Callbacks deliver plaintext. Lifetime: after tconn_close() (or a fatal error) on_close fires once, from the
 * loop; the handle is freed right after on_close returns. No callback fires after on_close. */
#ifndef POSTERN_TCONN_H
#define POSTERN_TCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>
#include <uv.h>

typedef struct tconn tconn;

typedef struct tconn_cbs {
	/* TCP connected and (with TLS) handshake done; status < 0 means failed (on_close follows). */
	void (*on_open)(tconn *c, int status, void *ud);
	void (*on_data)(tconn *c, const uint8_t *p, size_t n, void *ud);
	/* Peer finished sending (FIN or TLS close_notify). Writing may go on. */
	void (*on_eof)(tconn *c, void *ud);
	/* Write queue fell to the low-water mark after having crossed the high-water mark. */
	void (*on_drain)(tconn *c, void *ud);
	/* err: 0 for a normal close, else negative code; tconn_errstr tells more. */
	void (*on_close)(tconn *c, int err, void *ud);
} tconn_cbs;

#define TCONN_HIGH_WATER (256u * 1024)
#define TCONN_LOW_WATER (64u * 1024)
/* Writes beyond this many queued bytes fail with -ENOBUFS: a caller that ignores backpressure is a bug. */
#define TCONN_HARD_CAP (8u * 1024 * 1024)

/* The three constructors below return 0 with *out set, or a negative error with *out NULL: then no callback
 * ever fires and the socket is closed, so nothing is left for the caller to release. */
/* Accepts one pending connection from server. tls NULL = plain TCP. */
int tconn_accept(uv_stream_t *server, SSL_CTX *tls, const tconn_cbs *cbs, void *ud, tconn **out);
/* Connects to addr; with tls, verifies the peer as sni. handshake_ms bounds connect + handshake. */
int tconn_connect(uv_loop_t *loop, const struct sockaddr *addr, SSL_CTX *tls, const char *sni,
		  uint32_t timeout_ms, const tconn_cbs *cbs, void *ud, tconn **out);
/* Wraps an already connected fd (takes ownership, also when it fails). */
int tconn_adopt(uv_loop_t *loop, int fd, SSL_CTX *tls, bool server, const char *sni, const tconn_cbs *cbs,
		void *ud, tconn **out);

int tconn_write(tconn *c, const uint8_t *p, size_t n);
size_t tconn_queued(const tconn *c);
bool tconn_over_high_water(const tconn *c);
/* Marks of this connection instead of TCONN_HIGH_WATER / TCONN_LOW_WATER (high under TCONN_HARD_CAP). */
void tconn_set_water(tconn *c, size_t high, size_t low);
void tconn_pause(tconn *c);
void tconn_resume(tconn *c);
/* Half-close after the queue flushes (TLS: close_notify first). */
int tconn_shutdown(tconn *c);
/* Closes now; queued data is dropped. Safe to call more than once. */
void tconn_close(tconn *c);
/* Closes once the queue (and a pending tconn_shutdown) is written out. A peer that never reads keeps it
 * open: pair it with a deadline of your own that calls tconn_close. */
void tconn_close_after_flush(tconn *c);
/* Starts TLS on a plain connection already open (e.g. after reading a preamble). */
int tconn_start_tls(tconn *c, SSL_CTX *tls, bool server, const char *sni);

void tconn_set_userdata(tconn *c, void *ud);
/* NULL for plain TCP and once the TLS record layer took over (tio_enable_handoff). */
SSL *tconn_ssl(tconn *c);
/* The protocol ALPN selected (*p NULL, *len 0 for none or plain TCP), also after the hand-off. */
void tconn_alpn(tconn *c, const uint8_t **p, unsigned *len);
uv_loop_t *tconn_loop(tconn *c);
const char *tconn_peer(const tconn *c); /* "ip:port" */
/* The peer's address (family AF_UNSPEC when unknown). */
const struct sockaddr *tconn_peer_addr(const tconn *c);
const char *tconn_errstr(const tconn *c);
uint64_t tconn_bytes_in(const tconn *c);
uint64_t tconn_bytes_out(const tconn *c);

#endif
