/* Redaction of tool arguments before they reach an audit line (no I/O).
 *
 * Keys: an object member whose key matches a key pattern has its whole value replaced by "[REDACTED]".
 * A pattern with a glob character (* ? [) is an fnmatch(3) glob over the whole key with FNM_CASEFOLD;
 * otherwise it is a case-insensitive substring ("token" covers "access_token" and "X-Token-Id").
 * Defaults: password, passwd, token, secret, authorization, api_key, apikey, private_key, cookie, credential.
 * Values: every string (at any depth, object keys excluded) has each match of a value pattern replaced by
 * "[REDACTED]": bearer/basic credentials, PEM private keys (to their END line or the end of the string),
 * JWT-looking strings (eyJ...), AWS access key ids, and long base64/base64url runs (REDACT_B64_MIN characters
 * or more with a digit, an upper- and a lower-case letter, so that paths and words survive). Patterns are
 * PCRE2 with match and depth limits; a string on which a pattern hits its limit is replaced whole.
 * Then the compact JSON is cut to max_bytes: past it the value becomes
 * {"truncated":true,"bytes":N,"head":"<the first bytes of the redacted JSON>"}. */
#ifndef POSTERN_GUARD_REDACT_H
#define POSTERN_GUARD_REDACT_H

#include <jansson.h>
#include <stddef.h>

#define REDACT_MASK            "[REDACTED]"
#define REDACT_MAX_BYTES_DEFAULT 4096 /* redacted arguments kept per audit line */
#define REDACT_MIN_BYTES       128
#define REDACT_B64_MIN         40
#define REDACT_MAX_KEYS        256
#define REDACT_MAX_PATTERNS    64
#define REDACT_MAX_DEPTH       64     /* deeper values are replaced whole */
#define REDACT_MATCH_LIMIT     100000 /* PCRE2 match limit per string and pattern */

typedef struct redact redact;

/* keys: NULL-terminated key patterns, NULL for the defaults (an empty list: no key redaction);
 * max_bytes: 0 = REDACT_MAX_BYTES_DEFAULT, at least REDACT_MIN_BYTES. 0, -EINVAL (err says what), -ENOMEM. */
int redact_new(const char *const *keys, size_t max_bytes, redact **out, char *err, size_t errlen);
void redact_free(redact *r);
/* Adds a value pattern (PCRE2 syntax) to the built-in ones. 0 or -EINVAL with the PCRE2 message. */
int redact_add_value_pattern(redact *r, const char *pcre, char *err, size_t errlen);

typedef struct redact_stats {
	unsigned keys;      /* values dropped for their key */
	unsigned values;    /* strings in which a value pattern matched */
	size_t bytes;       /* compact size before truncation */
	int truncated;
} redact_stats;

/* Redacts a copy of v (v is left untouched). *out is a new reference. 0 or -ENOMEM. */
int redact_apply(const redact *r, const json_t *v, json_t **out, redact_stats *st);
/* The same, as compact JSON text (malloc'd, NUL-terminated, at most max_bytes plus the wrapper). */
int redact_apply_text(const redact *r, const json_t *v, char **out, size_t *len, redact_stats *st);

#endif
