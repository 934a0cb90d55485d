/* Tunnel records and their tokens, in SQLite at <state_dir>/tunnels.db (WAL, busy timeout), shared by every
 * edge process that uses the same state_dir and by `postern tunnel`.
 *
 * Token format: "pt1_<tunnel id>_<64 hex: 256 random bits>". The tunnel id in clear makes lookup by id;
 * only SHA-256 of the secret part is stored, and hashes are compared with CRYPTO_memcmp. Tunnel ids are
 * random lower-case DNS labels; a tunnel's domain is "<id>.<edge domain>". Deleted tunnels keep their row,
 * so an id or domain is never handed out again. Names are unique among live tunnels.
 * Rotation adds a token and lets the older ones expire after a grace period; verification happens only
 * when a connector registers, so connections already open are never dropped by rotation. */
#ifndef POSTERN_TOKSTORE_H
#define POSTERN_TOKSTORE_H

#include <stdint.h>
#include <stddef.h>

typedef struct tok_store tok_store;

#define TOK_ID_LEN 16                    /* characters of a tunnel id */
#define TOK_NAME_MAX 64                  /* name buffer: 1..63 of [A-Za-z0-9._-] */
#define TOK_DOMAIN_MAX 256
#define TOK_TOKEN_MAX 96                 /* token buffer, NUL included */
#define TOK_DEFAULT_GRACE_MS (10 * 60 * 1000)

typedef struct tok_tunnel {
	char id[TOK_ID_LEN + 1];
	char name[TOK_NAME_MAX];
	char domain[TOK_DOMAIN_MAX];
	int64_t created_ms;
	int64_t deleted_ms; /* 0 when live */
	int tokens;         /* tokens valid now */
} tok_tunnel;

/* Opens (creating state_dir 0700 and the database 0600 when missing). edge_domain is used for the
 * domain of tunnels created through this handle (may be NULL for a verify-only handle). */
int tok_open(const char *state_dir, const char *edge_domain, tok_store **out, char *err, size_t errlen);
void tok_close(tok_store *s);
/* Replaces the wall clock (milliseconds since the epoch), for tests. */
void tok_set_clock(tok_store *s, int64_t (*now_ms)(void *ud), void *ud);

/* Each returns 0 or: -EINVAL bad name, -EEXIST live name taken, -ENOENT no live tunnel of that name,
 * -EBUSY database locked by another process past the busy timeout (5 s), -EIO database failure
 * (tok_errstr tells for both). token receives the new token (TOK_TOKEN_MAX bytes). */
int tok_create(tok_store *s, const char *name, tok_tunnel *t, char *token);
int tok_rotate(tok_store *s, const char *name, int64_t grace_ms, tok_tunnel *t, char *token);
int tok_delete(tok_store *s, const char *name);
int tok_get(tok_store *s, const char *name, tok_tunnel *t);
/* The two calls an edge makes on its event loop wait at most this long for a database lock. */
#define TOK_LOOP_BUSY_MS 150
/* The same by tunnel id: 0, -ENOENT when deleted or unknown, -EBUSY (after TOK_LOOP_BUSY_MS) or -EIO on a
 * database error. */
int tok_get_by_id(tok_store *s, const char *id, tok_tunnel *t);
/* Live tunnels by name; fn returning non-zero stops the walk (and is returned). */
int tok_list(tok_store *s, int (*fn)(const tok_tunnel *t, void *ud), void *ud);

/* A token as `postern tunnel info` shows it: never the token, only the first 8 bytes of the SHA-256 the store
 * keeps of its secret part (sha256sum of the 64 hex characters after the second '_' starts with them). */
typedef struct tok_token_info {
	char fingerprint[24]; /* "sha256:" and 16 hex digits */
	int64_t created_ms;
	int64_t expires_ms;   /* 0: until a rotation ends it */
} tok_token_info;
/* The tokens of live tunnel id that are valid now, newest first; fn returning non-zero stops the walk (and
 * is returned). 0 for an unknown or deleted id (no tokens), -EBUSY or -EIO on a database error. */
int tok_tokens(tok_store *s, const char *id, int (*fn)(const tok_token_info *k, void *ud), void *ud);

/* 0 and t filled when token is valid now; -EACCES when unknown, wrong, expired or its tunnel deleted;
 * -EINVAL when it does not have the token format; -EBUSY when the database stayed locked for
 * TOK_LOOP_BUSY_MS (the token is neither accepted nor refused: ask again later); -EIO on database failure. */
int tok_verify(tok_store *s, const char *token, tok_tunnel *t);
/* The tunnel id part of a token (not secret; safe to log) into id (TOK_ID_LEN + 1), or -EINVAL. */
int tok_token_tunnel_id(const char *token, char *id);

const char *tok_errstr(const tok_store *s);

#endif
