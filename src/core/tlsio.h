/* TLS as a byte transform (OpenSSL with memory BIOs): ciphertext in, plaintext out and the reverse.
 * No I/O of its own, so the same engine serves TCP connections (tconn) and tunnelled HTTP/2 streams (proxy). */
#ifndef POSTERN_TLSIO_H
#define POSTERN_TLSIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <openssl/ssl.h>

typedef struct tio tio;

#define TIO_EOF (-1000) /* peer sent close_notify */

/* server: accept side. sni: for clients, the name sent and verified (may be NULL). */
tio *tio_new(SSL_CTX *ctx, bool server, const char *sni);
void tio_free(tio *t);
/* NULL once the record layer took over (tio_enable_handoff). */
SSL *tio_ssl(tio *t);

/* Server or client contexts: once a TLS 1.3 handshake is done, the connection's records are sealed and opened
 * by our record layer (core/tls13rec) with the traffic secrets, and the SSL object (~13 KiB) is freed.
 * Session tickets stay on. A server's OpenSSL seals its tickets under the new key in the call that ends the
 * handshake: the hand-off opens them from our queue to prove how many went out and numbers its own records
 * after them. A client has sealed nothing under its application key by then; the server's tickets arrive
 * later and the record layer drops them (a client here never resumes). A connection whose state is not
 * certain (TLS 1.2, an unknown suite, data read ahead or written before the handshake ended, an ALPN over 16
 * bytes) simply stays with OpenSSL. */
void tio_enable_handoff(SSL_CTX *ctx);
bool tio_handed_off(const tio *t);
/* The protocol ALPN selected (*p NULL, *len 0 when none), also after the hand-off. */
void tio_alpn(tio *t, const uint8_t **p, unsigned *len);
/* The SNI the client sent (NULL when none), also after the hand-off. */
const char *tio_servername(tio *t);
/* Plaintext already opened and waiting for tio_read. */
size_t tio_plain_pending(tio *t);

/* Ciphertext received from the peer. Bounded by the caller's read size; BIO memory grows only by what is fed. */
int tio_feed(tio *t, const uint8_t *p, size_t n);
/* Drives the handshake: 1 done, 0 needs more input (send tio_out first), <0 failure (tio_errstr). */
int tio_handshake(tio *t);
bool tio_handshake_done(const tio *t);
/* Plaintext out: >0 bytes, 0 when more input is needed, TIO_EOF, or <0 on failure. */
int tio_read(tio *t, uint8_t *buf, size_t cap);
/* Plaintext in: encrypts all of it into the output buffer. 0 or <0. */
int tio_write(tio *t, const uint8_t *p, size_t n);
/* Queues close_notify. */
int tio_shutdown(tio *t);
/* Ciphertext waiting to go to the peer. */
size_t tio_out_pending(tio *t);
/* Takes up to cap bytes of it; returns the count. */
size_t tio_out_take(tio *t, uint8_t *buf, size_t cap);
/* Zero-copy access: *p points at all pending ciphertext (valid until the next tio call); consume drops n. */
size_t tio_out_peek(tio *t, const uint8_t **p);
void tio_out_consume(tio *t, size_t n);
/* Hands all pending ciphertext over in one malloc'd block the caller frees (NULL when none). */
uint8_t *tio_out_detach(tio *t, size_t *len);
/* Ciphertext fed but not yet taken by TLS. */
size_t tio_in_pending(const tio *t);
/* Last failure, e.g. "certificate verify failed"; never contains key material. */
const char *tio_errstr(const tio *t);

/* Loads cert chain + key into a new server context (TLS 1.2+ unless min13). err gets a clear reason. */
SSL_CTX *tio_server_ctx(const char *cert_file, const char *key_file, bool min13, char *err, size_t errlen);
/* Client context verifying peers against ca_file (NULL: system CAs); optional client cert/key for mTLS. */
SSL_CTX *tio_client_ctx(const char *ca_file, const char *cert_file, const char *key_file, bool min13,
			char *err, size_t errlen);
/* Formats the OpenSSL error queue (and clears it) into buf. */
const char *tio_ssl_errors(char *buf, size_t len);

#endif
