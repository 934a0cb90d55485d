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

#define TRL_MAX_PLAIN 16384                       /* 2^14: the most data one record carries */
#define TRL_MAX_CIPHER (TRL_MAX_PLAIN + 256)      /* record body cap (RFC 8446 5.2) */
#define TRL_HEADER 5
#define TRL_OVERHEAD (TRL_HEADER + 1 + 16)        /* header, inner content type, AEAD tag; no padding sent */
#define TRL_SECRET_MAX 48

enum trl_type { TRL_ALERT = 21, TRL_HANDSHAKE = 22, TRL_DATA = 23 };

/* Errors, negative: a malformed record header, a record that fails authentication, a protocol violation. */
#define TRL_E_FORMAT (-1)  /* not a TLS 1.3 protected record */
#define TRL_E_AUTH (-2)    /* bad_record_mac */
#define TRL_E_PROTO (-3)   /* unexpected message or alert */
#define TRL_E_NOMEM (-4)
#define TRL_E_LIMIT (-5)   /* sequence number exhausted */
#define TRL_E_OVERFLOW (-6) /* record_overflow: a record or its content over the limits of RFC 8446 5.2 */

typedef struct trl trl;

/* suite: the IANA id (0x1301 AES_128_GCM_SHA256, 0x1302 AES_256_GCM_SHA384, 0x1303 CHACHA20_POLY1305_SHA256).
 * Secrets are the application traffic secrets of each direction; they are copied and wiped on free. */
bool trl_suite_supported(uint16_t suite);
int trl_new(trl **out, uint16_t suite, const uint8_t *read_secret, const uint8_t *write_secret, size_t len);
void trl_free(trl *r);
/* n records were already sealed with the initial write keys (by OpenSSL, before the hand-off): the next record
 * of ours takes sequence number n. Only before the first trl_seal. */
void trl_skip_written(trl *r, uint64_t n);

/* Length of the whole record starting at p (header included) once n covers it; 0 while more is needed;
 * TRL_E_PROTO for an outer type other than application_data (nothing else is allowed after the handshake),
 * TRL_E_OVERFLOW for a length over 2^14 + 256, TRL_E_FORMAT for any other header no peer sends. */
ssize_t trl_record_len(const uint8_t *p, size_t n);
/* Opens one whole record (trl_record_len bytes) into out, which needs reclen - TRL_HEADER - 16 bytes.
 * *type gets the inner content type, *outlen the content length (padding removed). */
int trl_open(trl *r, const uint8_t *rec, size_t reclen, uint8_t *out, size_t *outlen, uint8_t *type);
/* Seals n <= TRL_MAX_PLAIN bytes into out (n + TRL_OVERHEAD bytes); returns the record length or an error. */
ssize_t trl_seal(trl *r, uint8_t type, const uint8_t *p, size_t n, uint8_t *out);

/* What a non-data record asks of the connection. */
typedef enum trl_ctl {
	TRL_CTL_NONE = 0, /* handled (a KeyUpdate): a reply may have been sealed into reply */
	TRL_CTL_EOF,      /* close_notify */
} trl_ctl;
/* Handles the content of an alert or handshake record opened by trl_open. A KeyUpdate moves the read keys
 * on; when it requests an update, a KeyUpdate record of ours is sealed into reply (TRL_OVERHEAD + 5 bytes)
 * and the write keys move on; *replylen tells. Any other message or alert is TRL_E_PROTO, with *alert set to
 * the alert the peer sent (or 256 + ours for unexpected content). */
int trl_control(trl *r, uint8_t type, const uint8_t *p, size_t n, uint8_t *reply, size_t *replylen, int *alert);

/* A KeyUpdate of our own is due (keys used for 2^23 records: well inside the AES-GCM limit of RFC 8446
 * 5.5); trl_key_update seals it into out (TRL_OVERHEAD + 5 bytes) and moves the write keys on. */
bool trl_write_update_due(const trl *r);
ssize_t trl_key_update(trl *r, bool request_peer, uint8_t *out);

#endif
