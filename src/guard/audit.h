/* The audit record (no I/O but the verifier's file reader): one JSON line per MCP message, hash-chained.
 *
 * A line is {"prev":H,"seq":N,"ts":...,<fields>} and "\n". prev is the SHA-256 (lowercase hex) of the bytes of
 * the previous line without its "\n"; the first line of a chain (seq 0) has prev = AUD_GENESIS. seq counts
 * from 0 and, like prev, continues across rotated files: the chain is one sequence of lines over the files
 * in order. The hash covers the bytes as written, so the verifier never re-serialises.
 *
 * What the chain proves: a line removed, inserted or edited in the middle breaks it, and the verifier names
 * the first such place. It is not a signature: whoever can rewrite the file can recompute every hash after
 * an edit, and dropping the last lines (or, with --partial, the first files) leaves no trace; an external
 * copy (the syslog sink) or a kept last hash is what catches those. */
#ifndef POSTERN_GUARD_AUDIT_H
#define POSTERN_GUARD_AUDIT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUD_GENESIS  "0000000000000000000000000000000000000000000000000000000000000000"
#define AUD_HEX_LEN  64
#define AUD_MAX_LINE (1u << 20) /* a longer line is refused by the writer and the verifier */

/* One MCP message crossing the boundary. NULL strings, a negative latency, http_status 0 and has_rpc_code
 * false are left out of the line. */
typedef struct aud_rec {
	int64_t ts_us;              /* wall clock, microseconds since the epoch (UTC) */
	const char *dir;            /* "in" (client to upstream) or "out" (upstream to client) */
	const char *trace_id, *span_id, *parent_span_id;
	const char *route;
	const char *client;         /* identity: token subject, JWT sub; never the credential */
	const char *client_addr;
	const char *session;        /* Mcp-Session-Id (legacy era) */
	const char *protocol;       /* protocol version or era */
	const char *method;
	const char *id;             /* the JSON-RPC id as JSON text ("7", "\"a\"") */
	const char *tool;           /* tool, prompt name or resource URI */
	const char *tool_hash;      /* pins.h hash of the tool's definition */
	const char *decision;       /* allow, deny, approve */
	const char *rule;           /* the deciding rule ("rules[2]", a name, "default") */
	const char *policy_rev;
	const char *approval;       /* none, pending, approved, denied, timed_out */
	const char *approver;
	const json_t *args;         /* arguments after redaction (redact.h); NULL: not logged */
	const char *status;         /* ok, error, denied, ... */
	bool has_rpc_code;
	int64_t rpc_code;           /* JSON-RPC error code */
	int http_status;
	int64_t latency_us;
	uint64_t bytes_in, bytes_out;
} aud_rec;

typedef struct aud_chain aud_chain;

/* A chain at its genesis. 0 or -ENOMEM. */
int aud_chain_new(aud_chain **out);
void aud_chain_free(aud_chain *c);
/* Continues the chain of an existing file from its tail (its last bytes, at least the last whole line):
 * prev becomes the hash of the last complete line and seq follows its seq. *keep is how many bytes of tail
 * to keep: bytes after the last "\n" are a line cut by a crash, never acknowledged, to be truncated by the
 * writer. An empty tail (or one without a line) leaves the chain as it is. 0, or -EINVAL when the last line
 * is not an audit record. */
int aud_chain_resume(aud_chain *c, const char *tail, size_t len, size_t *keep);
/* The hash and seq the next line will carry. */
const char *aud_chain_prev(const aud_chain *c);
uint64_t aud_chain_seq(const aud_chain *c);
/* Builds the next line (with "\n"; *line malloc'd) and advances the chain. 0, -EMSGSIZE (over AUD_MAX_LINE:
 * the chain does not advance), -EINVAL (id is not JSON), -ENOMEM. */
int aud_line(aud_chain *c, const aud_rec *r, char **line, size_t *len);

/* ---- verification ---- */
typedef struct aud_verify aud_verify;

typedef struct aud_report {
	bool ok;
	uint64_t lines;          /* lines checked (up to and including a break) */
	uint64_t first_seq, last_seq;
	bool from_genesis;       /* the first line is seq 0 */
	char file[256];          /* the first break: where */
	unsigned long line;
	char what[320];          /* removed / inserted / edited / incomplete: what */
} aud_report;

/* partial: the first line need not be the genesis (older rotated files were removed). */
int aud_verify_new(bool partial, aud_verify **out);
void aud_verify_free(aud_verify *v);
/* Feeds the bytes of file (in order, any chunking); then aud_verify_end_file. After a break the rest is
 * ignored. 0 or -ENOMEM. */
int aud_verify_feed(aud_verify *v, const char *file, const char *buf, size_t len);
int aud_verify_end_file(aud_verify *v);
/* Reads path and feeds it. 0, or a negative errno with err saying what. */
int aud_verify_file(aud_verify *v, const char *path, char *err, size_t errlen);
/* The verdict so far. */
void aud_verify_report(const aud_verify *v, aud_report *r);

#endif
