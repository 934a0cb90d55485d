/* MCP server protocol face (see mcp_server.h). */
#include "sandbox/mcp/mcp_server.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cbuf.h"
#include "core/jsonid.h"

enum {
	RPC_PARSE = -32700,
	RPC_INVALID_REQUEST = -32600,
	RPC_METHOD_NOT_FOUND = -32601,
	RPC_INVALID_PARAMS = -32602,
	RPC_INTERNAL = -32603,
};

static const char *const versions[] = { "2025-11-25", "2025-06-18", "2025-03-26" };

struct mcps {
	struct mcps_config c;
	cbuf in, out; /* a line being gathered (up to max_message), answers not yet taken */
	bool discarding; /* dropping the rest of an over-long line */
	jid_scan big;    /* its head and tail, for its id */
	bool initialized, ready;
	char version[16];
	char *client_name;
};

mcps *mcps_new(const struct mcps_config *c)
{
	mcps *m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	m->c = *c;
	if (!m->c.max_message)
		m->c.max_message = MCPS_DEFAULT_MAX_MESSAGE;
	/* feed() checks both caps itself (an over-long line gets an answer, too much output -ENOBUFS). */
	cbuf_init(&m->in, 4096, m->c.max_message);
	cbuf_init(&m->out, 4096, SIZE_MAX / 2);
	if (!m->c.server_name)
		m->c.server_name = "postern-sandbox";
	if (!m->c.server_version)
		m->c.server_version = "0";
	return m;
}

void mcps_free(mcps *m)
{
	if (!m)
		return;
	cbuf_free(&m->in);
	cbuf_free(&m->out);
	free(m->client_name);
	free(m);
}

bool mcps_initialized(const mcps *m)
{
	return m->initialized;
}

const char *mcps_protocol_version(const mcps *m)
{
	return m->version[0] ? m->version : NULL;
}

const char *mcps_client_name(const mcps *m)
{
	return m->client_name;
}

const char *mcps_output(const mcps *m, size_t *len)
{
	*len = m->out.len;
	return cbuf_str(&m->out);
}

void mcps_consume(mcps *m, size_t n)
{
	cbuf_consume(&m->out, n);
}

json_t *mcps_text_result(const char *text, size_t len, bool is_error)
{
	json_t *t = json_stringn(text, len);
	if (!t)
		return NULL;
	return json_pack("{s:[{s:s,s:o}],s:b}", "content", "type", "text", "text", t, "isError", is_error);
}

/* ---- responses ---------------------------------------------------------------------------------- */

static json_t *mk_error(json_t *id, int code, const char *msg, json_t *data)
{
	json_t *err = json_pack("{s:i,s:s}", "code", code, "message", msg);
	if (err && data)
		json_object_set_new(err, "data", data);
	else if (data)
		json_decref(data);
	return json_pack("{s:s,s:O,s:o}", "jsonrpc", "2.0", "id", id ? id : json_null(), "error", err);
}

static json_t *mk_result(json_t *id, json_t *result)
{
	return json_pack("{s:s,s:O,s:o}", "jsonrpc", "2.0", "id", id, "result", result);
}

static int emit(mcps *m, json_t *resp)
{
	char *s;
	int rc;

	if (!resp)
		return -ENOMEM;
	/* Compact output never holds a raw newline: one message, one line. */
	s = json_dumps(resp, JSON_COMPACT);
	json_decref(resp);
	if (!s)
		return -ENOMEM;
	rc = cbuf_append(&m->out, s, strlen(s));
	if (rc == 0)
		rc = cbuf_append(&m->out, "\n", 1);
	free(s);
	return rc;
}

/* The answer to a line over max_message, sent when the line ends: with the request's own id (its head and
 * tail hold it, jsonid.h), so that the client's call fails at once instead of waiting for its timeout. */
static int too_long(mcps *m)
{
	char msg[400];
	size_t cap = m->c.max_message;
	json_t *id = jid_recover(&m->big);
	snprintf(msg, sizeof msg,
		 "message exceeds the size limit: %llu bytes, over this server's limit of %zu bytes (%zu KiB) for one "
		 "JSON-RPC message; nothing of it was run. Split a large write into parts under the limit: write the "
		 "first part, then append the rest in further calls (for example bash with cat >> FILE)",
		 m->big.total, cap, cap >> 10);
	int rc = emit(m, mk_error(id, RPC_INVALID_REQUEST, msg,
				  json_pack("{s:I,s:I}", "size", (json_int_t)m->big.total, "limit", (json_int_t)cap)));
	json_decref(id);
	jid_reset(&m->big);
	return rc;
}

/* ---- methods ------------------------------------------------------------------------------------ */

static json_t *do_initialize(mcps *m, json_t *id, json_t *params)
{
	json_t *pv = json_object_get(params, "protocolVersion");
	json_t *ci = json_object_get(params, "clientInfo");
	const char *want, *use = versions[0];
	json_t *res;

	if (m->initialized)
		return mk_error(id, RPC_INVALID_REQUEST, "already initialized", NULL);
	if (!json_is_string(pv))
		return mk_error(id, RPC_INVALID_PARAMS, "initialize: params.protocolVersion must be a string", NULL);
	want = json_string_value(pv);
	for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++)
		if (strcmp(want, versions[i]) == 0)
			use = versions[i];
	snprintf(m->version, sizeof m->version, "%s", use);
	if (json_is_object(ci) && json_is_string(json_object_get(ci, "name"))) {
		free(m->client_name);
		m->client_name = strndup(json_string_value(json_object_get(ci, "name")), 128);
	}
	m->initialized = true;
	res = json_pack("{s:s,s:{s:{s:b}},s:{s:s,s:s}}", "protocolVersion", use, "capabilities", "tools", "listChanged",
			0, "serverInfo", "name", m->c.server_name, "version", m->c.server_version);
	if (res && m->c.instructions)
		json_object_set_new(res, "instructions", json_string(m->c.instructions));
	return res ? mk_result(id, res) : NULL;
}

static json_t *call_response(json_t *id, json_t *name, int rc, json_t *res)
{
	if (rc == -ENOENT) {
		char msg[200];
		json_decref(res);
		snprintf(msg, sizeof msg, "Unknown tool: %.128s", name ? json_string_value(name) : "?");
		return mk_error(id, RPC_INVALID_PARAMS, msg, NULL);
	}
	if (rc < 0 || !json_is_object(res)) {
		json_decref(res);
		return mk_error(id, RPC_INTERNAL, "tool failed to produce a result", NULL);
	}
	return mk_result(id, res);
}

static json_t *do_tools_call(mcps *m, json_t *id, json_t *params)
{
	json_t *name = json_object_get(params, "name");
	json_t *args = json_object_get(params, "arguments");
	json_t *res = NULL, *own = NULL;
	int rc;

	if (!json_is_string(name))
		return mk_error(id, RPC_INVALID_PARAMS, "tools/call: params.name must be a string", NULL);
	if (args && !json_is_object(args) && !json_is_null(args))
		return mk_error(id, RPC_INVALID_PARAMS, "tools/call: params.arguments must be an object", NULL);
	if (!args || json_is_null(args))
		args = own = json_object();
	if (m->c.start) {
		json_incref(id);
		if (!own)
			json_incref(args);
		rc = m->c.start(m->c.ud, id, json_string_value(name), args);
		if (rc == 0)
			return NULL;
		/* Refused: the references stay ours. */
		json_decref(args);
		json_decref(id);
		if (rc == -ENOENT)
			return call_response(id, name, rc, NULL);
		return mk_error(id, RPC_INTERNAL, "too many tool calls pending; retry later", NULL);
	}
	if (!m->c.call)
		rc = -ENOENT;
	else
		rc = m->c.call(m->c.ud, json_string_value(name), args, &res);
	json_decref(own);
	return call_response(id, name, rc, res);
}

int mcps_complete(mcps *m, json_t *id, int rc, json_t *result)
{
	return emit(m, call_response(id, NULL, rc, result));
}

/* Handles one parsed message; returns the response (NULL for notifications and responses). */
static json_t *dispatch(mcps *m, json_t *msg, bool *err)
{
	json_t *id, *method, *params, *jv;
	const char *meth;

	*err = false;
	if (!json_is_object(msg))
		return mk_error(NULL, RPC_INVALID_REQUEST, "a JSON-RPC message must be an object", NULL);
	jv = json_object_get(msg, "jsonrpc");
	id = json_object_get(msg, "id");
	if (id && !json_is_string(id) && !json_is_integer(id))
		return mk_error(NULL, RPC_INVALID_REQUEST, "id must be a string or an integer", NULL);
	if (!json_is_string(jv) || strcmp(json_string_value(jv), "2.0") != 0)
		return mk_error(id, RPC_INVALID_REQUEST, "jsonrpc must be \"2.0\"", NULL);
	method = json_object_get(msg, "method");
	if (!method) {
		/* A response from the client: we never send requests, so there is nothing to match. */
		if (id && (json_object_get(msg, "result") || json_object_get(msg, "error")))
			return NULL;
		return mk_error(id, RPC_INVALID_REQUEST, "method is missing", NULL);
	}
	if (!json_is_string(method))
		return mk_error(id, RPC_INVALID_REQUEST, "method must be a string", NULL);
	meth = json_string_value(method);
	params = json_object_get(msg, "params");
	if (params && !json_is_object(params) && !json_is_array(params))
		return mk_error(id, RPC_INVALID_REQUEST, "params must be an object or an array", NULL);

	if (!id) {
		if (strcmp(meth, "notifications/initialized") == 0)
			m->ready = true;
		if (strcmp(meth, "notifications/cancelled") == 0 && m->c.cancel && json_is_object(params)) {
			json_t *rid = json_object_get(params, "requestId");
			if (json_is_string(rid) || json_is_integer(rid))
				m->c.cancel(m->c.ud, rid);
		}
		return NULL;
	}
	*err = true;
	if (params && !json_is_object(params) && strcmp(meth, "ping") != 0)
		return mk_error(id, RPC_INVALID_PARAMS, "params must be an object", NULL);
	if (strcmp(meth, "initialize") == 0)
		return do_initialize(m, id, params);
	if (strcmp(meth, "ping") == 0) {
		*err = false;
		return mk_result(id, json_object());
	}
	if (strcmp(meth, "tools/list") == 0 || strcmp(meth, "tools/call") == 0) {
		if (!m->initialized)
			return mk_error(id, RPC_INVALID_REQUEST, "server not initialized: send initialize first", NULL);
		*err = false;
		if (meth[6] == 'l') {
			json_t *cursor = json_object_get(params, "cursor");
			if (cursor && !json_is_string(cursor) && !json_is_null(cursor)) {
				*err = true;
				return mk_error(id, RPC_INVALID_PARAMS, "cursor must be a string", NULL);
			}
			return mk_result(id, json_pack("{s:O}", "tools", m->c.tools ? m->c.tools : json_array()));
		}
		return do_tools_call(m, id, params);
	}
	{
		char msgtxt[200];
		snprintf(msgtxt, sizeof msgtxt, "Method not found: %.128s", meth);
		return mk_error(id, RPC_METHOD_NOT_FOUND, msgtxt, NULL);
	}
}

int mcps_handle(mcps *m, const char *msg, size_t len)
{
	json_error_t jerr;
	json_t *root;
	bool err;
	int rc = 0;

	if (len > m->c.max_message) {
		jid_reset(&m->big);
		jid_feed(&m->big, msg, len);
		return too_long(m);
	}
	/* NUL inside strings is kept so that tools can refuse such paths by name. */
	root = json_loadb(msg, len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (!root)
		return emit(m, mk_error(NULL, RPC_PARSE, "Parse error", json_pack("{s:s}", "detail", jerr.text)));
	if (json_is_array(root)) {
		json_t *out;
		size_t i;
		json_t *el;
		if (json_array_size(root) == 0 || (m->initialized && strcmp(m->version, "2025-03-26") != 0)) {
			json_decref(root);
			return emit(m, mk_error(NULL, RPC_INVALID_REQUEST,
						json_array_size(root) ? "JSON-RPC batches are not supported in this protocol version"
								      : "empty batch",
						NULL));
		}
		out = json_array();
		json_array_foreach(root, i, el)
		{
			json_t *r = dispatch(m, el, &err);
			if (r)
				json_array_append_new(out, r);
		}
		json_decref(root);
		if (json_array_size(out) == 0) {
			json_decref(out);
			return 0;
		}
		return emit(m, out);
	}
	{
		json_t *r = dispatch(m, root, &err);
		json_decref(root);
		if (r)
			rc = emit(m, r);
	}
	return rc;
}

static int handle_line(mcps *m, const char *line, size_t len)
{
	while (len && (line[len - 1] == '\r'))
		len--;
	/* Blank lines between messages are tolerated. */
	size_t i = 0;
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	if (i == len)
		return 0;
	return mcps_handle(m, line, len);
}

int mcps_feed(mcps *m, const char *data, size_t len)
{
	int rc;

	while (len) {
		const char *nl = memchr(data, '\n', len);
		size_t n = nl ? (size_t)(nl - data) : len;

		if (m->out.len > MCPS_MAX_OUTPUT)
			return -ENOBUFS;
		if (!m->discarding && m->in.len + n > m->c.max_message) {
			/* Over the cap: drop the line as it streams by, keeping only its ends, and answer once at
			 * its newline (the id may come last); the next line is read as usual. */
			jid_reset(&m->big);
			jid_feed(&m->big, cbuf_str(&m->in), m->in.len);
			cbuf_consume(&m->in, m->in.len);
			m->discarding = true;
		}
		if (m->discarding) {
			jid_feed(&m->big, data, n);
			if (nl) {
				m->discarding = false;
				rc = too_long(m);
				if (rc < 0)
					return rc;
			}
		} else if (nl) {
			if (m->in.len) {
				rc = cbuf_append(&m->in, data, n);
				if (rc == 0)
					rc = handle_line(m, cbuf_str(&m->in), m->in.len);
				cbuf_consume(&m->in, m->in.len);
			} else {
				rc = handle_line(m, data, n);
			}
			if (rc < 0)
				return rc;
		} else {
			rc = cbuf_append(&m->in, data, n);
			if (rc < 0)
				return rc;
		}
		if (!nl)
			break;
		data += n + 1;
		len -= n + 1;
	}
	return 0;
}

int mcps_finish(mcps *m)
{
	int rc = 0;
	if (m->discarding)
		rc = too_long(m); /* EOF inside an over-long line: answered with what its head shows */
	else if (m->in.len)
		rc = handle_line(m, cbuf_str(&m->in), m->in.len);
	cbuf_consume(&m->in, m->in.len);
	m->discarding = false;
	return rc;
}
