/* The TLS 1.3 record layer (RFC 8446 section 5) for a connection whose handshake OpenSSL completed.
 * tlsio hands the traffic secrets over and frees the SSL object, which holds ~13 KiB per connection even
 * when idle (the same split as kernel TLS: the library does the handshake, the record layer only seals and
 * opens records with the keys it was given). Crypto is OpenSSL's EVP; this module frames records, derives
 * keys, keeps sequence numbers and handles what may follow a handshake: alerts and KeyUpdate.
 * Pure: bytes in, bytes out, no I/O. */
#ifndef POSTERN_TLS13REC_H
#define POSTERN_TLS13REC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TREC_MAX_PLAIN 16384                       /* 2^14: the most data one record carries */
#define TREC_MAX_CIPHER (TREC_MAX_PLAIN + 256)      /* record body cap (RFC 8446 5.2) */
#define TREC_HEADER 5
#define TREC_OVERHEAD (TREC_HEADER + 1 + 16)        /* header, inner content type, AEAD tag; no padding sent */
#define TREC_SECRET_MAX 48

enum trec_type { TREC_ALERT = 21, TREC_HANDSHAKE = 22, TREC_DATA = 23 };

/* Errors, negative: a malformed record header, a record that fails authentication, a protocol violation. */
#define TREC_E_FORMAT (-1)  /* not a TLS 1.3 protected record */
#define TREC_E_AUTH (-2)    /* bad_record_mac */
#define TREC_E_PROTO (-3)   /* unexpected message or alert */
#define TREC_E_NOMEM (-4)
#define TREC_E_LIMIT (-5)   /* sequence number exhausted */
#define TREC_E_OVERFLOW (-6) /* record_overflow: a record or its content over the limits of RFC 8446 5.2 */

typedef struct trec trec;

/* suite: the IANA id (0x1301 AES_128_GCM_SHA256, 0x1302 AES_256_GCM_SHA384, 0x1303 CHACHA20_POLY1305_SHA256).
 * Secrets are the application traffic secrets of each direction; they are copied and wiped on free. */
bool trec_suite_supported(uint16_t suite);
int trec_new(trec **out, uint16_t suite, const uint8_t *read_secret, const uint8_t *write_secret, size_t len);
void trec_free(trec *r);
/* This end is the TLS client: NewSessionTicket messages from the server are accepted and dropped. */
void trec_set_client(trec *r);
/* n records were already sealed with the initial write keys (by OpenSSL, before the hand-off): the next record
 * of ours takes sequence number n. Only before the first trec_seal. */
void trec_skip_written(trec *r, uint64_t n);

/* Length of the whole record starting at p (header included) once n covers it; 0 while more is needed;
 * TREC_E_PROTO for an outer type other than application_data (nothing else is allowed after the handshake),
 * TREC_E_OVERFLOW for a length over 2^14 + 256, TREC_E_FORMAT for any other header no peer sends. */
ssize_t trec_record_len(const uint8_t *p, size_t n);
/* Opens one whole record (trec_record_len bytes) into out, which needs reclen - TREC_HEADER - 16 bytes.
 * *type gets the inner content type, *outlen the content length (padding removed). TREC_E_OVERFLOW, before
 * anything is decrypted, for a TLSInnerPlaintext over 2^14 + 1 bytes (padding counts). out is wiped on error. */
int trec_open(trec *r, const uint8_t *rec, size_t reclen, uint8_t *out, size_t *outlen, uint8_t *type);
/* Seals n <= TREC_MAX_PLAIN bytes into out (n + TREC_OVERHEAD bytes); returns the record length or an error. */
ssize_t trec_seal(trec *r, uint8_t type, const uint8_t *p, size_t n, uint8_t *out);

/* What a non-data record asks of the connection. */
typedef enum trec_ctl {
	TREC_CTL_NONE = 0, /* handled (a KeyUpdate): a reply may have been sealed into reply */
	TREC_CTL_EOF,      /* close_notify */
} trec_ctl;
/* Handles the content of an alert or handshake record opened by trec_open. A KeyUpdate moves the read keys
 * on; when it requests an update, a KeyUpdate record of ours is sealed into reply (TREC_OVERHEAD + 5 bytes)
 * and the write keys move on; *replylen tells. A client's (trec_set_client) NewSessionTicket messages, whole
 * within the record, are dropped. Any other message or alert is TREC_E_PROTO, with *alert set to
 * the alert the peer sent (or 256 + ours for unexpected content). */
int trec_control(trec *r, uint8_t type, const uint8_t *p, size_t n, uint8_t *reply, size_t *replylen, int *alert);

/* A KeyUpdate of our own is due (keys used for 2^23 records: well inside the AES-GCM limit of RFC 8446
 * 5.5); trec_key_update seals it into out (TREC_OVERHEAD + 5 bytes) and moves the write keys on. */
bool trec_write_update_due(const trec *r);
ssize_t trec_key_update(trec *r, bool request_peer, uint8_t *out);

#endif
