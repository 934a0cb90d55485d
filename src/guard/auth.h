/* Per-route client authentication (no I/O but the explicit load of tokens_file and jwks_file): a route's
 * auth: config, the check of a request's Authorization header, the WWW-Authenticate value and the RFC 9728
 * protected resource metadata. docs/proxy.md, "Client authentication", is the user's side of this.
 *
 * Route config (YAML, the value of a route's auth: key):
 *   auth: passthrough                    # default: the client's Authorization goes upstream untouched
 *   auth:
 *     bearer:
 *       tokens_file: /etc/postern/tokens # see below
 *       scopes: [mcp]                    # optional: every request needs all of these
 *       authorization_servers: [...]     # optional: advertised in the metadata
 *   auth:
 *     jwt:
 *       issuer: https://idp.example.com/ # required: iss must equal it
 *       audience: https://mcp.example.com/  # optional: default the route's resource URL (RFC 8707)
 *       jwks_file: /etc/postern/jwks.json   # one of jwks_file, jwks_url
 *       jwks_url: https://idp.example.com/jwks.json   # https://, or http:// on 127.0.0.1/localhost only
 *       ca_file: /etc/ssl/idp-ca.pem     # optional, jwks_url only: CA for the IdP (else the system's)
 *       jwks_refresh: 10m                # optional, jwks_url only: 1m..24h
 *       leeway: 60s                      # optional: exp/nbf/iat tolerance, 0s..10m
 *       scopes: [mcp:tools]              # optional: required scopes (scope or scp claim)
 *       authorization_servers: [...]     # optional: default [issuer]
 *
 * tokens_file: one token a line, `SUBJECT sha256:HEX [SCOPE,SCOPE...]`; blank lines and lines whose first
 * non-blank is '#' are ignored. SUBJECT is 1..255 printable ASCII bytes without spaces, not starting with
 * '#'; HEX is the SHA-256 of the token, 64 lower-case hex digits (`postern auth hash-token SUBJECT` prints
 * the line); SCOPE is an RFC 6749 scope-token. A subject may have several tokens (rotation); a hash may not
 * repeat. At most AUTH_MAX_TOKENS lines with a token, AUTH_MAX_FILE bytes. A file readable or writable by
 * group or others gets a warning (cfg_warn). Tokens are never stored: only their hashes; a presented token is
 * hashed and compared with every entry by CRYPTO_memcmp with no early exit.
 *
 * Only `Authorization: Bearer <b64token>` (RFC 6750 2.1: scheme case-insensitive, one or more spaces) is
 * read; anything else is 401 invalid_request. No header at all is 401 with no error code (RFC 6750 3.1). */
#ifndef POSTERN_GUARD_AUTH_H
#define POSTERN_GUARD_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/cfg.h"
#include "guard/jwt.h"

#define AUTH_MAX_TOKEN   JWT_MAX_TOKEN  /* bytes of a presented token */
#define AUTH_MAX_TOKENS  10000          /* entries of a tokens_file */
#define AUTH_MAX_FILE    (4u << 20)     /* bytes of a tokens_file or jwks_file */
#define AUTH_MAX_SCOPES  32             /* required scopes; scopes of one tokens_file entry */
#define AUTH_MAX_SCOPE   128            /* bytes of one scope */
#define AUTH_JWKS_REFRESH_DEFAULT_MS (10 * 60 * 1000)

typedef enum auth_mode { AUTH_PASSTHROUGH = 0, AUTH_BEARER, AUTH_JWT } auth_mode;
typedef struct auth auth;

/* Reads a route's auth: value (node NULL: passthrough) and loads tokens_file or jwks_file. *out is always
 * set on success (also for passthrough). Errors go to the document (cfg_error: "FILE:LINE: key: why");
 * returns 0, -EINVAL or -ENOMEM. */
int auth_from_cfg(cfg_doc *d, cfg_node *node, auth **out);
void auth_free(auth *a);
/* AUTH_PASSTHROUGH for NULL. */
auth_mode auth_mode_of(const auth *a);
/* "passthrough", "bearer", "jwt". */
const char *auth_mode_name(auth_mode m);

typedef struct auth_result {
	int status;          /* 0 allowed, 401, 403; 500 only with -ENOMEM */
	char subject[256];   /* the client identity when allowed (token subject, JWT sub); "" for passthrough */
	const char *error;   /* RFC 6750 code: NULL (no credentials, or allowed), "invalid_request",
			      * "invalid_token", "insufficient_scope" */
	char reason[160];    /* short, never the token: for error_description and the log */
	bool refetch_keys;   /* jwt: an unknown kid or no keys yet: a jwks_url fetcher may refetch */
} auth_result;

/* Checks a request. authorization: the Authorization header value or NULL; resource: the route's resource
 * URL (https://host/) used as the expected audience when the config has none ("https://host/" also accepts
 * "https://host", the same URL, RFC 3986 6.2.3); now_s: wall clock. Returns 0 allowed (r->status 0),
 * -EACCES (401), -EPERM (403), -ENOMEM (500); r is filled in every case. Passthrough allows everything:
 * the proxy forwards the header untouched. */
int auth_check(const auth *a, const char *authorization, const char *resource, int64_t now_s, auth_result *r);

/* The WWW-Authenticate value for a 401/403: Bearer resource_metadata="<url>"[, error="…",
 * error_description="…"][, scope="…"] (scope: the route's required scopes). The description is the reason
 * with characters RFC 6750 forbids there replaced. Returns the length, -EINVAL (metadata_url has a quote,
 * a backslash or a control character) or -ENOBUFS. */
int auth_www_authenticate(const auth *a, const auth_result *r, const char *metadata_url, char *out, size_t outlen);

/* RFC 9728 protected resource metadata for resource: {"resource", "authorization_servers" (from config,
 * else [issuer] for jwt; absent for bearer without it), "bearer_methods_supported":["header"],
 * "scopes_supported" (the required scopes, absent when none)}. *out malloc'd, NUL-terminated. 0, -ENOENT
 * (passthrough: the upstream answers for itself), -EINVAL (resource NULL), -ENOMEM. */
int auth_metadata_json(const auth *a, const char *resource, char **out, size_t *len);

/* jwt: replaces the key set with a parsed JWKS; on error the old set stays. 0 or a negative errno with err. */
int auth_jwks_set(auth *a, const char *json, size_t len, char *err, size_t errlen);
/* jwt with jwks_url: the URL, the optional ca_file (else NULL) and the refresh interval; NULL/0 otherwise. */
const char *auth_jwks_url(const auth *a);
const char *auth_jwks_ca_file(const auth *a);
int64_t auth_jwks_refresh_ms(const auth *a);
bool auth_jwks_has_kid(const auth *a, const char *kid);
/* Usable keys in the current set (0 before the first fetch of a jwks_url). */
size_t auth_jwks_count(const auth *a);

/* A tokens_file line for token (len bytes, an RFC 6750 b64token) and subject, scopes NULL or "a,b":
 * "SUBJECT sha256:HEX[ SCOPES]\n". 0, -EINVAL (err says which part is bad), -ENOBUFS. */
int auth_token_line(const char *subject, const char *token, size_t len, const char *scopes, char *out, size_t outlen,
		    char *err, size_t errlen);
/* Parses tokens_file text (name for messages) into a; for tests and the loader. 0, -EINVAL (err: "NAME:LINE:
 * why"), -ENOMEM. The set replaces a's entries only on success. a must be bearer. */
int auth_tokens_parse(auth *a, const char *name, const char *buf, size_t len, char *err, size_t errlen);
size_t auth_tokens_count(const auth *a);

#endif
