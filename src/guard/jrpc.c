/* JSON-RPC inspector: parse under caps, classify, decide the era, check mirrored headers, build errors. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard/jrpc.h"

struct jrpc_body {
	json_t *root;
	bool batch;
	size_t n;
	jrpc_msg *msgs;
};

static void set_err(char *err, size_t errlen, const char *fmt, const char *detail)
{
	if (err && errlen)
		snprintf(err, errlen, fmt, detail ? detail : "");
}

static void limits_of(const jrpc_limits *lim, size_t *body, unsigned *batch, unsigned *depth)
{
	*body = lim && lim->max_body ? lim->max_body : JRPC_MAX_BODY_DEFAULT;
	*batch = lim && lim->max_batch ? lim->max_batch : JRPC_MAX_BATCH_DEFAULT;
	*depth = lim && lim->max_depth ? lim->max_depth : JRPC_MAX_DEPTH_DEFAULT;
	if (*depth > JRPC_MAX_DEPTH_LIMIT)
		*depth = JRPC_MAX_DEPTH_LIMIT;
}

/* One pass over the bytes before jansson: the nesting depth outside strings and, for a top-level array,
 * the number of its elements. Malformed JSON may pass here; jansson then refuses it. */
static int prescan(const unsigned char *p, size_t n, unsigned max_depth, unsigned max_batch, char *err,
		   size_t errlen)
{
	unsigned depth = 0;
	size_t elems = 0;
	bool in_str = false, esc = false, top_array = false, seen_value = false;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = p[i];
		if (in_str) {
			if (esc)
				esc = false;
			else if (c == '\\')
				esc = true;
			else if (c == '"')
				in_str = false;
			continue;
		}
		switch (c) {
		case '"':
			in_str = true;
			if (depth == 1 && top_array && !seen_value)
				seen_value = true, elems++;
			break;
		case '[':
		case '{':
			if (depth == 0 && c == '[')
				top_array = true;
			else if (depth == 1 && top_array && !seen_value)
				seen_value = true, elems++;
			if (++depth > max_depth) {
				if (err && errlen)
					snprintf(err, errlen, "JSON nested deeper than %u levels", max_depth);
				return -ELOOP;
			}
			break;
		case ']':
		case '}':
			if (depth)
				depth--;
			break;
		case ',':
			if (depth == 1 && top_array)
				seen_value = false;
			break;
		case ' ': case '\t': case '\r': case '\n':
			break;
		default:
			if (depth == 1 && top_array && !seen_value)
				seen_value = true, elems++;
			break;
		}
		if (top_array && elems > max_batch) {
			if (err && errlen)
				snprintf(err, errlen, "batch of more than %u messages", max_batch);
			return -E2BIG;
		}
	}
	return 0;
}

static int parse_json(const void *buf, size_t len, const jrpc_limits *lim, json_t **out, char *err,
		      size_t errlen)
{
	size_t max_body;
	unsigned max_batch, max_depth;
	json_error_t je;
	int rc;

	limits_of(lim, &max_body, &max_batch, &max_depth);
	*out = NULL;
	if (len > max_body) {
		if (err && errlen)
			snprintf(err, errlen, "body of %zu bytes is over the %zu byte limit", len, max_body);
		return -EMSGSIZE;
	}
	if ((rc = prescan(buf, len, max_depth, max_batch, err, errlen)) < 0)
		return rc;
	/* Duplicate keys would let the guard and the upstream read different names out of one body. */
	*out = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
	if (!*out) {
		if (json_error_code(&je) == json_error_out_of_memory)
			return -ENOMEM;
		if (err && errlen)
			snprintf(err, errlen, "malformed JSON at byte %d: %s", je.position, je.text);
		return -EBADMSG;
	}
	return 0;
}

static bool is_id(const json_t *id)
{
	return json_is_string(id) || json_is_integer(id);
}

static char *dump_id(const json_t *id)
{
	return json_dumps(id, JSON_ENCODE_ANY | JSON_COMPACT);
}

static const char *str_member(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static void invalid(jrpc_msg *m, int code, const char *why)
{
	m->kind = JRPC_INVALID;
	m->invalid_code = code;
	m->why = why;
}

static void read_params(jrpc_msg *m)
{
	json_t *meta = json_object_get(m->params, "_meta");
	json_t *pt;

	if (json_is_object(meta)) {
		pt = json_object_get(meta, "progressToken");
		if (is_id(pt))
			m->progress_token = pt;
		m->traceparent = str_member(meta, "traceparent");
		m->meta_version = str_member(meta, JRPC_META_VERSION);
	}
	if (m->kind == JRPC_NOTIFICATION && (!strcmp(m->method, "tools/call") || !strcmp(m->method, "prompts/get") ||
					     !strcmp(m->method, "resources/read"))) {
		/* Without an id it would escape the policy (only requests are decided), and a lenient server may
		 * still act on it. */
		invalid(m, JRPC_E_INVALID_REQUEST, "a tools/call, prompts/get or resources/read needs an id");
		return;
	}
	if (m->kind != JRPC_REQUEST)
		return;
	if (!strcmp(m->method, "tools/call") || !strcmp(m->method, "prompts/get")) {
		m->name = str_member(m->params, "name");
		m->arguments = json_object_get(m->params, "arguments");
		if (!m->name)
			invalid(m, JRPC_E_INVALID_PARAMS, "params.name missing or not a string");
		else if (m->arguments && !json_is_object(m->arguments))
			invalid(m, JRPC_E_INVALID_PARAMS, "params.arguments is not an object");
	} else if (!strcmp(m->method, "resources/read") || !strcmp(m->method, "resources/subscribe")) {
		m->name = str_member(m->params, "uri");
		if (!m->name)
			invalid(m, JRPC_E_INVALID_PARAMS, "params.uri missing or not a string");
	}
}

static int classify(json_t *o, jrpc_msg *m)
{
	json_t *id, *method, *result, *error, *code;

	memset(m, 0, sizeof *m);
	if (!json_is_object(o)) {
		invalid(m, JRPC_E_INVALID_REQUEST, "message is not an object");
		return 0;
	}
	if (!str_member(o, "jsonrpc") || strcmp(str_member(o, "jsonrpc"), "2.0")) {
		invalid(m, JRPC_E_INVALID_REQUEST, "jsonrpc is not \"2.0\"");
		return 0;
	}
	id = json_object_get(o, "id");
	method = json_object_get(o, "method");
	result = json_object_get(o, "result");
	error = json_object_get(o, "error");
	if (id && !json_is_null(id)) {
		if (!is_id(id)) {
			invalid(m, JRPC_E_INVALID_REQUEST, "id is neither a string nor an integer");
			return 0;
		}
		if (!(m->id = dump_id(id)))
			return -ENOMEM;
	}
	if (method) {
		if (!json_is_string(method) || result || error) {
			invalid(m, JRPC_E_INVALID_REQUEST, "method is not a string, or comes with result/error");
			return 0;
		}
		if (id && json_is_null(id)) {
			invalid(m, JRPC_E_INVALID_REQUEST, "request id is null");
			return 0;
		}
		m->method = json_string_value(method);
		m->kind = m->id ? JRPC_REQUEST : JRPC_NOTIFICATION;
		m->params = json_object_get(o, "params");
		if (m->params && !json_is_object(m->params)) {
			invalid(m, JRPC_E_INVALID_PARAMS, "params is not an object");
			return 0;
		}
		read_params(m);
		return 0;
	}
	if (result && !error) {
		if (!m->id) {
			invalid(m, JRPC_E_INVALID_REQUEST, "result without an id");
			return 0;
		}
		m->kind = JRPC_RESULT;
		m->result = result;
		return 0;
	}
	code = json_object_get(error, "code");
	if (error && !result && json_is_object(error) && json_is_integer(code)) {
		m->kind = JRPC_ERROR;
		m->error = error;
		m->error_code = json_integer_value(code);
		return 0;
	}
	invalid(m, JRPC_E_INVALID_REQUEST, "neither method, result nor error");
	return 0;
}

int jrpc_new(const void *buf, size_t len, const jrpc_limits *lim, jrpc_body **out, char *err, size_t errlen)
{
	jrpc_body *b = NULL;
	json_t *root = NULL;
	int rc;

	*out = NULL;
	if ((rc = parse_json(buf, len, lim, &root, err, errlen)) < 0)
		goto done;
	if (json_is_array(root) && json_array_size(root) == 0) {
		set_err(err, errlen, "empty batch%s", NULL);
		rc = -EPROTO;
		goto done;
	}
	if (!json_is_array(root) && !json_is_object(root)) {
		set_err(err, errlen, "body is neither an object nor an array%s", NULL);
		rc = -EPROTO;
		goto done;
	}
	if (!(b = calloc(1, sizeof *b))) {
		rc = -ENOMEM;
		goto done;
	}
	b->batch = json_is_array(root);
	b->n = b->batch ? json_array_size(root) : 1;
	if (!(b->msgs = calloc(b->n, sizeof *b->msgs))) {
		rc = -ENOMEM;
		goto done;
	}
	b->root = root;
	root = NULL;
	for (size_t i = 0; i < b->n; i++)
		if ((rc = classify(b->batch ? json_array_get(b->root, i) : b->root, &b->msgs[i])) < 0)
			goto done;
	*out = b;
	b = NULL;
	rc = 0;
done:
	if (rc == -ENOMEM)
		set_err(err, errlen, "out of memory%s", NULL);
	json_decref(root);
	jrpc_free(b);
	return rc;
}

void jrpc_free(jrpc_body *b)
{
	if (!b)
		return;
	for (size_t i = 0; b->msgs && i < b->n; i++)
		free(b->msgs[i].id);
	free(b->msgs);
	json_decref(b->root);
	free(b);
}

int jrpc_refusal_code(int rc)
{
	return rc == -EBADMSG || rc == -ELOOP ? JRPC_E_PARSE : rc == -ENOMEM ? JRPC_E_INTERNAL
										 : JRPC_E_INVALID_REQUEST;
}

int jrpc_refusal_status(int rc)
{
	return rc == -EMSGSIZE ? 413 : rc == -ENOMEM ? 503 : 400;
}

bool jrpc_is_batch(const jrpc_body *b) { return b->batch; }
size_t jrpc_count(const jrpc_body *b) { return b->n; }
const jrpc_msg *jrpc_at(const jrpc_body *b, size_t i) { return i < b->n ? &b->msgs[i] : NULL; }
json_t *jrpc_json(const jrpc_body *b) { return b->root; }

bool jrpc_version_is_modern(const char *v)
{
	static const char shape[] = "dddd-dd-dd";
	if (!v || strlen(v) != sizeof shape - 1)
		return false;
	for (size_t i = 0; shape[i]; i++)
		if (shape[i] == 'd' ? (v[i] < '0' || v[i] > '9') : v[i] != shape[i])
			return false;
	return strcmp(v, JRPC_MODERN_VERSION) >= 0; /* same-shape dates sort as strings */
}

jrpc_era jrpc_era_of(const jrpc_body *b, const char *hdr_version)
{
	const jrpc_msg *m = &b->msgs[0];

	if (b->batch) /* batches exist only on 2025-03-26 */
		return JRPC_ERA_LEGACY;
	if (m->method && !strcmp(m->method, "initialize"))
		return JRPC_ERA_LEGACY;
	if (m->kind == JRPC_REQUEST && m->meta_version)
		return JRPC_ERA_MODERN;
	return jrpc_version_is_modern(hdr_version) ? JRPC_ERA_MODERN : JRPC_ERA_LEGACY;
}

/* ---- request-metadata headers (2026-07-28, SEP-2243) ---- */

#define SENTINEL_HEAD "=?base64?"
#define SENTINEL_TAIL "?="
#define HDR_VALUE_MAX 8192 /* decoded header value; longer is malformed */

static int b64_val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}

static bool utf8_ok(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned char c = s[i];
		size_t k;
		uint32_t cp;
		if (c == 0)
			return false;
		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xE0) == 0xC0)
			k = 1, cp = c & 0x1F;
		else if ((c & 0xF0) == 0xE0)
			k = 2, cp = c & 0x0F;
		else if ((c & 0xF8) == 0xF0)
			k = 3, cp = c & 0x07;
		else
			return false;
		for (size_t j = 1; j <= k; j++) {
			if (i + j >= n || (s[i + j] & 0xC0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + j] & 0x3F);
		}
		/* overlong forms, surrogates and values past U+10FFFF are not UTF-8 */
		if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10FFFF ||
		    (cp >= 0xD800 && cp <= 0xDFFF))
			return false;
		i += k + 1;
	}
	return true;
}

static bool literal_ok(const char *v, size_t n)
{
	if (n && (v[0] == ' ' || v[n - 1] == ' '))
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] > 0x7E)
			return false;
	return true;
}

static bool looks_like_sentinel(const char *v, size_t n)
{
	size_t h = sizeof SENTINEL_HEAD - 1, t = sizeof SENTINEL_TAIL - 1;
	return n >= h + t && !memcmp(v, SENTINEL_HEAD, h) && !memcmp(v + n - t, SENTINEL_TAIL, t);
}

int jrpc_hdr_decode(const char *v, char *out, size_t outlen)
{
	size_t n = strlen(v), h = sizeof SENTINEL_HEAD - 1, t = sizeof SENTINEL_TAIL - 1, o = 0, b;
	const char *p;

	if (!looks_like_sentinel(v, n)) {
		if (!literal_ok(v, n))
			return -EINVAL;
		if (n >= outlen)
			return -ENOBUFS;
		memcpy(out, v, n + 1);
		return (int)n;
	}
	p = v + h;
	b = n - h - t;
	if (b % 4)
		return -EINVAL;
	for (size_t i = 0; i < b; i += 4) {
		int q[4];
		size_t pad = 0;
		for (int j = 0; j < 4; j++) {
			unsigned char c = (unsigned char)p[i + j];
			if (c == '=' && i + 4 == b && j >= 2 && (j == 3 || p[i + 3] == '=')) {
				q[j] = 0, pad++;
				continue;
			}
			if ((q[j] = b64_val(c)) < 0)
				return -EINVAL;
		}
		if (o + 3 - pad >= outlen)
			return -ENOBUFS;
		out[o++] = (char)(q[0] << 2 | q[1] >> 4);
		if (pad < 2)
			out[o++] = (char)((q[1] & 0xF) << 4 | q[2] >> 2);
		if (pad < 1)
			out[o++] = (char)((q[2] & 0x3) << 6 | q[3]);
	}
	out[o] = 0;
	return utf8_ok((const unsigned char *)out, o) ? (int)o : -EINVAL;
}

int jrpc_hdr_encode(const char *v, size_t len, char *out, size_t outlen)
{
	static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o, need;

	if (literal_ok(v, len) && !looks_like_sentinel(v, len)) {
		if (len >= outlen)
			return -ENOBUFS;
		memcpy(out, v, len);
		out[len] = 0;
		return (int)len;
	}
	need = sizeof SENTINEL_HEAD - 1 + (len + 2) / 3 * 4 + sizeof SENTINEL_TAIL - 1;
	if (need >= outlen || need > INT32_MAX)
		return -ENOBUFS;
	o = sizeof SENTINEL_HEAD - 1;
	memcpy(out, SENTINEL_HEAD, o);
	for (size_t i = 0; i < len; i += 3) {
		uint32_t x = (uint32_t)(unsigned char)v[i] << 16;
		if (i + 1 < len)
			x |= (uint32_t)(unsigned char)v[i + 1] << 8;
		if (i + 2 < len)
			x |= (unsigned char)v[i + 2];
		out[o++] = al[x >> 18 & 63];
		out[o++] = al[x >> 12 & 63];
		out[o++] = i + 1 < len ? al[x >> 6 & 63] : '=';
		out[o++] = i + 2 < len ? al[x & 63] : '=';
	}
	memcpy(out + o, SENTINEL_TAIL, sizeof SENTINEL_TAIL);
	return (int)need;
}

static int mismatch(jrpc_mismatch *mm, const char *header, const char *fmt, const char *a)
{
	mm->header = header;
	snprintf(mm->message, sizeof mm->message, fmt, a ? a : "");
	return -EPROTO;
}

/* Decodes header value v into buf, or fills mm: missing (required) or malformed. 1 = absent, fine. */
static int decoded(const char *v, bool required, const char *header, char *buf, jrpc_mismatch *mm)
{
	if (!v)
		return required ? mismatch(mm, header, "%s header missing", header) : 1;
	if (jrpc_hdr_decode(v, buf, HDR_VALUE_MAX) < 0)
		return mismatch(mm, header, "%s header value malformed (not visible ASCII nor =?base64?...?=)",
				header);
	return 0;
}

/* A header value against a scalar argument: integers numerically, booleans as true/false, strings exactly. */
static bool value_matches(const json_t *arg, const char *s)
{
	char *end;
	if (json_is_string(arg))
		return !strcmp(json_string_value(arg), s);
	if (json_is_boolean(arg))
		return !strcmp(s, json_is_true(arg) ? "true" : "false");
	if (json_is_integer(arg)) {
		long long x;
		errno = 0;
		x = strtoll(s, &end, 10);
		return *s && !*end && !errno && x == json_integer_value(arg) && s[0] != ' ';
	}
	if (json_is_real(arg)) {
		double d = strtod(s, &end);
		return *s && !*end && s[0] != ' ' && d == json_real_value(arg);
	}
	return false;
}

int jrpc_check_headers(const jrpc_msg *m, const jrpc_headers *h, jrpc_mismatch *mm)
{
	char buf[HDR_VALUE_MAX];
	bool named;
	int rc;

	memset(mm, 0, sizeof *mm);
	if (m->kind != JRPC_REQUEST && m->kind != JRPC_NOTIFICATION)
		return 0;
	if ((rc = decoded(h->protocol_version, true, "MCP-Protocol-Version", buf, mm)))
		return rc < 0 ? rc : 0;
	if (m->meta_version && strcmp(buf, m->meta_version))
		return mismatch(mm, "MCP-Protocol-Version", "MCP-Protocol-Version header does not match "
				"_meta protocolVersion %s", m->meta_version);
	if ((rc = decoded(h->method, m->kind == JRPC_REQUEST, "Mcp-Method", buf, mm)) < 0)
		return rc;
	if (rc == 0 && strcmp(buf, m->method))
		return mismatch(mm, "Mcp-Method", "Mcp-Method header does not match method %s", m->method);
	named = m->kind == JRPC_REQUEST && (!strcmp(m->method, "tools/call") || !strcmp(m->method, "prompts/get") ||
					    !strcmp(m->method, "resources/read"));
	if (named) {
		if ((rc = decoded(h->name, true, "Mcp-Name", buf, mm)) < 0)
			return rc;
		if (!m->name || strcmp(buf, m->name))
			return mismatch(mm, "Mcp-Name", "Mcp-Name header does not match params.%s",
					strcmp(m->method, "resources/read") ? "name" : "uri");
	}
	for (size_t i = 0; i < h->nparams; i++) {
		const json_t *arg = json_object_get(m->arguments, h->params[i].arg);
		if (!arg && !h->params[i].value)
			continue;
		if (!arg)
			return mismatch(mm, "Mcp-Param", "Mcp-Param header for absent argument %s", h->params[i].arg);
		if ((rc = decoded(h->params[i].value, true, "Mcp-Param", buf, mm)) < 0)
			return rc;
		if (!value_matches(arg, buf))
			return mismatch(mm, "Mcp-Param", "Mcp-Param header does not match argument %s",
					h->params[i].arg);
	}
	return 0;
}

/* ---- answers ---- */

int jrpc_error_body(const char *id, int code, const char *message, const json_t *data, char **out,
		    size_t *outlen)
{
	json_t *err = NULL, *idv = NULL;
	char *e = NULL, *s = NULL;
	size_t n;
	int rc = -ENOMEM;

	*out = NULL;
	if (id && !(idv = json_loads(id, JSON_DECODE_ANY, NULL))) {
		rc = -EINVAL;
		goto done;
	}
	if (!(err = json_pack("{s:i,s:s}", "code", code, "message", message ? message : "")))
		goto done;
	if (data && json_object_set(err, "data", (json_t *)data) < 0)
		goto done;
	if (!(e = json_dumps(err, JSON_COMPACT)))
		goto done;
	/* The id goes out as the client wrote it (after jansson's compaction), not re-encoded. */
	n = strlen("{\"jsonrpc\":\"2.0\",\"id\":,\"error\":}") + (id ? strlen(id) : 0) + strlen(e);
	if (!(s = malloc(n + 1)))
		goto done;
	if (id)
		snprintf(s, n + 1, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"error\":%s}", id, e);
	else
		snprintf(s, n + 1, "{\"jsonrpc\":\"2.0\",\"error\":%s}", e);
	*out = s;
	if (outlen)
		*outlen = strlen(s);
	s = NULL;
	rc = 0;
done:
	free(s);
	free(e);
	json_decref(err);
	json_decref(idv);
	return rc;
}

int jrpc_mismatch_body(const jrpc_msg *m, const jrpc_mismatch *mm, char **out, size_t *outlen)
{
	json_t *data = json_pack("{s:s}", "header", mm->header ? mm->header : "");
	int rc = data ? jrpc_error_body(m->id, JRPC_E_HEADER_MISMATCH, mm->message, data, out, outlen) : -ENOMEM;
	json_decref(data);
	return rc;
}

int jrpc_filter_list(const void *buf, size_t len, const jrpc_limits *lim, const char *list, jrpc_keep_fn keep,
		     void *ctx, char **out, size_t *outlen, size_t *removed, char *err, size_t errlen)
{
	json_t *root = NULL, *arr;
	size_t dropped = 0;
	int rc;

	*out = NULL;
	if (outlen)
		*outlen = 0;
	if (removed)
		*removed = 0;
	if ((rc = parse_json(buf, len, lim, &root, err, errlen)) < 0)
		goto done;
	arr = json_object_get(json_object_get(root, "result"), list);
	if (!json_is_array(arr))
		goto done; /* an error, or not a list result: forwarded as is */
	for (size_t i = 0; i < json_array_size(arr);) {
		json_t *item = json_array_get(arr, i);
		if (keep(ctx, item)) {
			i++;
			continue;
		}
		json_array_remove(arr, i);
		dropped++;
	}
	if (!dropped)
		goto done;
	/* Compact output never holds a raw newline, so it is one SSE data: line as well. */
	if (!(*out = json_dumps(root, JSON_COMPACT))) {
		rc = -ENOMEM;
		goto done;
	}
	if (outlen)
		*outlen = strlen(*out);
	if (removed)
		*removed = dropped;
done:
	json_decref(root);
	return rc;
}
