/* TLS ClientHello SNI extraction, for routing a TLS connection without terminating it. Pure: bytes in,
 * result out, no state between calls and no I/O, so it is unit-tested and fuzzed on its own.
 *
 * Call sni_parse() with everything received on the connection so far (from its first byte) each time more
 * arrives. The ClientHello may be split across several TLS records and any number of reads. */
#ifndef POSTERN_SNI_H
#define POSTERN_SNI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sni_result {
	SNI_NEED_MORE = 0,  /* so far so good; call again with more bytes */
	SNI_FOUND = 1,      /* name holds the host name, lower-cased */
	SNI_NONE = 2,       /* a complete ClientHello without a server_name host name */
	SNI_MALFORMED = -1, /* not TLS, not a ClientHello, or inconsistent lengths */
	SNI_TOO_LARGE = -2, /* ClientHello over SNI_MAX_HELLO (or its records over SNI_MAX_INPUT) */
};

#define SNI_MAX_HELLO (16u * 1024)  /* handshake message, header included */
#define SNI_MAX_INPUT (24u * 1024)  /* bytes of records allowed to carry it (5-byte headers each) */
#define SNI_NAME_MAX 256            /* buffer for a DNS name (253) and its NUL */

/* name gets the host name (namelen >= SNI_NAME_MAX recommended; a longer name is SNI_MALFORMED). */
int sni_parse(const uint8_t *p, size_t n, char *name, size_t namelen);
const char *sni_result_str(int r);

/* The host name rule for a routed name, whichever entry it came from (ClientHello SNI, mTLS CONNECT): the n
 * bytes at host (no NUL needed) are 1..253 of [A-Za-z0-9._-] in dot-separated labels of 1..63 bytes (no
 * empty label: no leading, trailing or doubled '.'). */
bool sni_valid_host(const char *host, size_t n);

/* TLS alert record (fatal) in out; returns its length, SNI_ALERT_LEN. */
#define SNI_ALERT_LEN 7
#define SNI_ALERT_HANDSHAKE_FAILURE 40
#define SNI_ALERT_INTERNAL_ERROR 80
#define SNI_ALERT_UNRECOGNIZED_NAME 112
size_t sni_alert(uint8_t out[SNI_ALERT_LEN], uint8_t description);

/* Splits "<route>.<tunnel-id>.<edge domain>" (case-insensitive on the domain): the tunnel id is the label
 * just left of edge_domain; route is the non-empty rest left of it. Returns 0, or -EINVAL when host is not
 * of that shape. Outputs may be NULL. */
int sni_split(const char *host, const char *edge_domain, char *route, size_t routelen, char *tunnel_id,
	      size_t idlen);

#endif
