/* The guard's JSON-RPC inspector (no I/O): a Streamable HTTP POST body (one message, or a 2025-03-26 batch)
 * is parsed under a size, a batch-count and a nesting-depth cap, each message is classified, the wire era
 * is decided, the 2026-07-28 request-metadata headers are checked against the body (-32020 HeaderMismatch),
 * and JSON-RPC error bodies and filtered list results are built.
 *
 * Decisions come from the parsed body, never from headers (mcp-spec.md 1.2, "Intermediaries"). Duplicate
 * object keys and NUL in strings are rejected, so that the guard and the upstream cannot read two
 * different tool names out of one body. Pointers in jrpc_msg borrow from the body until jrpc_free. */
#ifndef POSTERN_GUARD_JRPC_H
#define POSTERN_GUARD_JRPC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Caps. jansson's own parser stops at depth 2048 (JSON_PARSER_MAX_DEPTH, built into the library): it does
 * not crash on deeper input, but recursing 2048 frames per message is not what a relay should pay. Our
 * cap is checked by a byte scan before jansson sees the body. */
#define JRPC_MAX_BODY_DEFAULT  (4u << 20) /* bytes; past it: 413 */
#define JRPC_MAX_BATCH_DEFAULT 64         /* messages in one batch */
#define JRPC_MAX_DEPTH_DEFAULT 64         /* nested arrays/objects, the top level counting 1 */
#define JRPC_MAX_DEPTH_LIMIT   1024       /* the largest depth a caller may ask for */

/* JSON-RPC and MCP error codes the guard answers with. */
#define JRPC_E_PARSE           (-32700)
#define JRPC_E_INVALID_REQUEST (-32600)
#define JRPC_E_METHOD          (-32601)
#define JRPC_E_INVALID_PARAMS  (-32602)
#define JRPC_E_INTERNAL        (-32603)
#define JRPC_E_HEADER_MISMATCH (-32020)
#define JRPC_E_UNSUPPORTED_VER (-32022)

/* The first revision of the stateless wire (no initialize, per-request _meta, mirrored headers). */
#define JRPC_MODERN_VERSION "2026-07-28"
#define JRPC_META_VERSION   "io.modelcontextprotocol/protocolVersion"

typedef struct jrpc_limits {
	size_t max_body;    /* 0 = JRPC_MAX_BODY_DEFAULT */
	unsigned max_batch; /* 0 = JRPC_MAX_BATCH_DEFAULT */
	unsigned max_depth; /* 0 = JRPC_MAX_DEPTH_DEFAULT; capped at JRPC_MAX_DEPTH_LIMIT */
} jrpc_limits;

typedef enum jrpc_kind {
	JRPC_INVALID = 0,  /* not a JSON-RPC 2.0 message: why says what; answer -32600 (or -32602) */
	JRPC_REQUEST,      /* method and id */
	JRPC_NOTIFICATION, /* method, no id */
	JRPC_RESULT,       /* id and result */
	JRPC_ERROR,        /* error (id may be absent) */
} jrpc_kind;

typedef enum jrpc_era { JRPC_ERA_LEGACY = 1, JRPC_ERA_MODERN } jrpc_era;

typedef struct jrpc_msg {
	jrpc_kind kind;
	const char *why;         /* JRPC_INVALID: the reason (static text) */
	int invalid_code;        /* JRPC_INVALID: -32600, or -32602 for a tools/call etc. without its name */
	const char *method;      /* requests and notifications */
	char *id;                /* the id as compact JSON text ("7", "\"a\""), NULL when absent */
	const char *name;        /* tools/call, prompts/get: params.name; resources/read, resources/subscribe: params.uri */
	json_t *params;          /* borrowed; NULL when absent */
	json_t *arguments;       /* tools/call, prompts/get: params.arguments; borrowed */
	json_t *progress_token;  /* params._meta.progressToken (string or integer); borrowed */
	const char *traceparent; /* params._meta.traceparent, unchecked (trace.h parses it) */
	const char *meta_version;/* params._meta["io.modelcontextprotocol/protocolVersion"] */
	json_t *result;          /* JRPC_RESULT; borrowed */
	json_t *error;           /* JRPC_ERROR; borrowed */
	long long error_code;    /* JRPC_ERROR: error.code */
} jrpc_msg;

typedef struct jrpc_body jrpc_body;

/* Parses and classifies a POST body. A body that is not JSON, too large, too deep, an empty batch or a
 * batch over the cap is refused as a whole: -EMSGSIZE (over max_body), -ELOOP (over max_depth), -E2BIG
 * (batch over max_batch), -EBADMSG (not JSON), -EPROTO (neither object nor non-empty array), -ENOMEM;
 * err says what. A message of a batch that is not JSON-RPC is JRPC_INVALID in its place; so is a tools/call,
 * prompts/get or resources/read without an id (a notification would escape the policy). */
int jrpc_new(const void *buf, size_t len, const jrpc_limits *lim, jrpc_body **out, char *err, size_t errlen);
void jrpc_free(jrpc_body *b);
/* The JSON-RPC error code and HTTP status that answer a jrpc_new failure. */
int jrpc_refusal_code(int rc);
int jrpc_refusal_status(int rc);

bool jrpc_is_batch(const jrpc_body *b);
size_t jrpc_count(const jrpc_body *b);
const jrpc_msg *jrpc_at(const jrpc_body *b, size_t i);
json_t *jrpc_json(const jrpc_body *b); /* the parsed body, borrowed */

/* The wire era of a client POST. Modern when a request carries _meta protocolVersion, or when the
 * MCP-Protocol-Version header (hdr_version, NULL when absent) names 2026-07-28 or later and the body is
 * no initialize; legacy otherwise (a batch, initialize, or neither sign). */
jrpc_era jrpc_era_of(const jrpc_body *b, const char *hdr_version);
/* "YYYY-MM-DD" at or after JRPC_MODERN_VERSION; false for anything not of that shape. */
bool jrpc_version_is_modern(const char *v);

/* The request-metadata headers of a modern POST, as the HTTP parser gives them (NUL-terminated, NULL when
 * absent); values may use the =?base64?...?= sentinel. params are Mcp-Param-{Name} headers paired with
 * the argument the tool's inputSchema marks with x-mcp-header: {Name} */
typedef struct jrpc_param_hdr {
	const char *arg;   /* argument name in params.arguments */
	const char *value; /* header value */
} jrpc_param_hdr;
typedef struct jrpc_headers {
	const char *protocol_version; /* MCP-Protocol-Version */
	const char *method;           /* Mcp-Method */
	const char *name;             /* Mcp-Name */
	const jrpc_param_hdr *params;
	size_t nparams;
} jrpc_headers;

/* What jrpc_check_headers found wrong: the header and a message fit for the -32020 error. */
typedef struct jrpc_mismatch {
	const char *header;
	char message[200];
} jrpc_mismatch;

/* Checks a modern request's headers against its body: MCP-Protocol-Version required and equal to _meta's;
 * Mcp-Method required for requests (checked when present on notifications); Mcp-Name required for
 * tools/call, resources/read, prompts/get; each Mcp-Param value equal to its argument (an integer
 * compared as a number, a boolean as true/false, a string byte for byte). Base64 values are decoded
 * first; a value that is not visible ASCII, or has leading or trailing space, must have been encoded.
 * Returns 0, or -EPROTO with *mm filled (answer 400 with jrpc_mismatch_body). */
int jrpc_check_headers(const jrpc_msg *m, const jrpc_headers *h, jrpc_mismatch *mm);
/* Decodes a header value: the sentinel =?base64?B64?= (standard alphabet, padding required, the result must
 * be UTF-8 without NUL) or a literal of visible ASCII and inner spaces. Writes NUL-terminated text into out.
 * Returns its length, -EINVAL when malformed, -ENOBUFS when out is too small. */
int jrpc_hdr_decode(const char *v, char *out, size_t outlen);
/* Encodes a value for a header: literal when it may go as is, otherwise the sentinel. Same returns. */
int jrpc_hdr_encode(const char *v, size_t len, char *out, size_t outlen);

/* {"jsonrpc":"2.0","id":ID,"error":{"code":C,"message":M[,"data":D]}} with id echoed byte for byte (id NULL:
 * no id member, as MCP allows when the id could not be read). *out is malloc'd and NUL-terminated. 0 or
 * -ENOMEM / -EINVAL (id not JSON). */
int jrpc_error_body(const char *id, int code, const char *message, const json_t *data, char **out,
		    size_t *outlen);
/* The -32020 error for m: data is {"header": mm->header}. */
int jrpc_mismatch_body(const jrpc_msg *m, const jrpc_mismatch *mm, char **out, size_t *outlen);

/* Keeps an entry of a list result (a tools/list, prompts/list or resources/list response)? item is the
 * entry object; return false to remove it. */
typedef bool (*jrpc_keep_fn)(void *ctx, json_t *item);
/* Filters result.<list> (list: "tools", "prompts", "resources", "resourceTemplates") of one JSON-RPC response: a JSON body or the
 * data payload of one SSE event (data lines joined with \n). When nothing is removed (or the message is no
 * such result) *out is NULL and the caller forwards the original bytes; otherwise *out (malloc'd) is the
 * compact re-serialisation, one line (an SSE writer can send it as a single data: line). *removed counts
 * the entries dropped. Same caps as jrpc_new; returns 0 or its negative errno. */
int jrpc_filter_list(const void *buf, size_t len, const jrpc_limits *lim, const char *list, jrpc_keep_fn keep,
		     void *ctx, char **out, size_t *outlen, size_t *removed, char *err, size_t errlen);

#endif
