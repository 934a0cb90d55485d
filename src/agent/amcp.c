/* See amcp.h. */
#include "agent/amcp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/ahttp.h"
#include "core/sse.h"

#define AMCP_PROTO "2025-06-18"

struct amcp {
	char *name, *url, *ca_file;
	char connect_to[600];
	char session[256];
	long next_id;
	void *conn; /* one kept-alive connection (and TLS session) per server */
};

amcp *amcp_new(const char *name, const char *url, const char *ca_file, const char *connect_addr, char *err, size_t errlen)
{
	const char *hs;
	int tls = !strncmp(url, "https://", 8);
	if (!tls && strncmp(url, "http://", 7)) {
		snprintf(err, errlen, "MCP server %s: %s is not an http:// or https:// URL", name, url);
		return NULL;
	}
	hs = url + (tls ? 8 : 7);
	size_t hl = strcspn(hs, ":/");
	if (!hl || hl > 253) {
		snprintf(err, errlen, "MCP server %s: no host in %s", name, url);
		return NULL;
	}
	amcp *m = calloc(1, sizeof *m);
	if (!m || !(m->name = strdup(name)) || !(m->url = strdup(url)) || (ca_file && !(m->ca_file = strdup(ca_file)))) {
		amcp_free(m);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (connect_addr && *connect_addr) {
		/* HOST:PORT:ADDR:PORT keeps the name for SNI and the certificate check, the address for TCP. */
		long port = tls ? 443 : 80;
		if (hs[hl] == ':')
			port = strtol(hs + hl + 1, NULL, 10);
		snprintf(m->connect_to, sizeof m->connect_to, "%.*s:%ld:%s:%ld", (int)hl, hs, port, connect_addr, port);
	}
	m->next_id = 1;
	return m;
}

void amcp_free(amcp *m)
{
	if (!m)
		return;
	ahttp_conn_free(m->conn);
	free(m->name);
	free(m->url);
	free(m->ca_file);
	free(m);
}

const char *amcp_name(const amcp *m)
{
	return m->name;
}

/* The JSON-RPC answer with id in an SSE body (the server may send notifications first). */
static json_t *from_sse(const char *body, size_t len, long id)
{
	sse_dec d;
	sse_event ev;
	size_t used;
	char e[96];
	json_t *found = NULL;
	sse_dec_init(&d, 0, 0);
	const uint8_t *p = (const uint8_t *)body;
	/* A final blank line flushes an event the server ended without one. */
	for (int pass = 0; pass < 2 && !found; pass++) {
		const uint8_t *q = pass ? (const uint8_t *)"\n\n" : p;
		size_t n = pass ? 2 : len;
		while (n && !found) {
			int r = sse_dec_next(&d, q, n, &used, &ev, e, sizeof e);
			q += used, n -= used;
			if (r <= 0)
				break;
			if (!ev.has_data)
				continue;
			json_t *j = json_loadb(ev.data, ev.data_len, 0, NULL);
			json_t *jid = json_object_get(j, "id");
			if (json_is_integer(jid) && json_integer_value(jid) == id)
				found = j;
			else
				json_decref(j);
		}
	}
	sse_dec_free(&d);
	return found;
}

/* One JSON-RPC request (id > 0) or notification (id 0). *answer: the whole response object. */
static int rpc(amcp *m, const char *method, json_t *params, long id, long timeout_ms, json_t **answer, char *err, size_t errlen)
{
	int rc = 0;
	char sh[300], ph[64];
	const char *hdrs[5] = { "Accept: application/json, text/event-stream", NULL, NULL, NULL, NULL };
	size_t nh = 1;
	ahttp_resp resp;
	json_t *msg = json_pack("{s:s,s:s}", "jsonrpc", "2.0", "method", method);
	if (params)
		json_object_set(msg, "params", params);
	if (id)
		json_object_set_new(msg, "id", json_integer(id));
	char *body = json_dumps(msg, JSON_COMPACT);
	json_decref(msg);
	if (!body) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (m->session[0]) {
		snprintf(sh, sizeof sh, "Mcp-Session-Id: %s", m->session);
		hdrs[nh++] = sh;
		snprintf(ph, sizeof ph, "MCP-Protocol-Version: %s", AMCP_PROTO);
		hdrs[nh++] = ph;
	}
	ahttp_req r = { .method = "POST", .url = m->url, .headers = hdrs, .body = body, .timeout_ms = timeout_ms,
			.ca_file = m->ca_file, .connect_to = m->connect_to[0] ? m->connect_to : NULL, .conn = &m->conn };
	char e[256];
	if ((rc = ahttp_do(&r, &resp, e, sizeof e))) {
		snprintf(err, errlen, "MCP server %s: %s %s", m->name, method, e);
		goto out;
	}
	if (resp.session[0] && !m->session[0])
		snprintf(m->session, sizeof m->session, "%s", resp.session);
	if (!id) {
		if (resp.status >= 300) {
			snprintf(err, errlen, "MCP server %s: %s answered HTTP %ld", m->name, method, resp.status);
			rc = -EPROTO;
		}
		goto out_resp;
	}
	json_t *a = NULL;
	if (strstr(resp.ctype, "text/event-stream"))
		a = from_sse(resp.body, resp.len, id);
	else
		a = json_loadb(resp.body, resp.len, 0, NULL);
	if (!json_is_object(a)) {
		json_decref(a);
		snprintf(err, errlen, "MCP server %s: %s answered HTTP %ld with no JSON-RPC answer: %.200s", m->name, method,
			 resp.status, resp.body);
		rc = -EPROTO;
		goto out_resp;
	}
	*answer = a;
out_resp:
	ahttp_resp_free(&resp);
out:
	free(body);
	return rc;
}

static int rpc_result(amcp *m, const char *method, json_t *params, long timeout_ms, json_t **result, char *err, size_t errlen)
{
	json_t *a = NULL;
	int rc = rpc(m, method, params, m->next_id++, timeout_ms, &a, err, errlen);
	if (rc)
		return rc;
	json_t *res = json_object_get(a, "result");
	if (!res) {
		json_t *e = json_object_get(a, "error");
		snprintf(err, errlen, "MCP server %s: %s: error %lld: %s", m->name, method,
			 (long long)json_integer_value(json_object_get(e, "code")),
			 json_string_value(json_object_get(e, "message")) ?: "(no message)");
		json_decref(a);
		return -EREMOTEIO;
	}
	*result = json_incref(res);
	json_decref(a);
	return 0;
}

int amcp_open(amcp *m, long timeout_ms, char *err, size_t errlen)
{
	json_t *res = NULL;
	json_t *p = json_pack("{s:s,s:{},s:{s:s,s:s}}", "protocolVersion", AMCP_PROTO, "capabilities", "clientInfo",
			      "name", "postern-agent", "version", POSTERN_VERSION);
	int rc = rpc_result(m, "initialize", p, timeout_ms, &res, err, errlen);
	json_decref(p);
	json_decref(res);
	if (!rc)
		rc = rpc(m, "notifications/initialized", NULL, 0, timeout_ms, NULL, err, errlen);
	return rc;
}

int amcp_list(amcp *m, long timeout_ms, json_t **tools, char *err, size_t errlen)
{
	json_t *res = NULL;
	int rc = rpc_result(m, "tools/list", NULL, timeout_ms, &res, err, errlen);
	if (rc)
		return rc;
	json_t *t = json_object_get(res, "tools");
	*tools = json_is_array(t) ? json_incref(t) : json_array();
	json_decref(res);
	return 0;
}

int amcp_call(amcp *m, const char *tool, json_t *args, long timeout_ms, json_t **result, char *err, size_t errlen)
{
	json_t *a = NULL;
	json_t *p = json_pack("{s:s,s:O}", "name", tool, "arguments", args ? args : json_object());
	int rc = rpc(m, "tools/call", p, m->next_id++, timeout_ms, &a, err, errlen);
	json_decref(p);
	if (rc)
		return rc;
	json_t *res = json_object_get(a, "result");
	if (res) {
		*result = json_incref(res);
	} else {
		json_t *e = json_object_get(a, "error");
		char t[1200];
		snprintf(t, sizeof t, "JSON-RPC error %lld: %s%s%s", (long long)json_integer_value(json_object_get(e, "code")),
			 json_string_value(json_object_get(e, "message")) ?: "(no message)",
			 json_object_get(e, "data") ? " " : "", "");
		char *data = json_object_get(e, "data") ? json_dumps(json_object_get(e, "data"), JSON_COMPACT) : NULL;
		json_t *txt = json_sprintf("%s%s%.800s", t, data ? "data=" : "", data ? data : "");
		free(data);
		*result = json_pack("{s:b,s:[{s:s,s:o}]}", "isError", 1, "content", "type", "text", "text", txt);
	}
	json_decref(a);
	return 0;
}
