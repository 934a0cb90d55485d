/* The Messages API loop of `postern agent` (see agent_int.h): streaming (SSE) requests with the sandbox tools
 * and the MCP servers' tools (named SERVER__TOOL), each tool_use run through agi_tool, until end_turn. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent_int.h"
#include "agent/ahttp.h"
#include "core/cbuf.h"
#include "core/sse.h"

#define AGM_MAX_TURNS 50
#define AGM_RAW_CAP (64u * 1024)

/* The sandbox tools the worker runs (agent_toolset inputs). */
static json_t *sandbox_tools(void)
{
	return json_pack(
		"[{s:s,s:s,s:{s:s,s:{s:{s:s}},s:[s]}},"
		"{s:s,s:s,s:{s:s,s:{s:{s:s}},s:[s]}},"
		"{s:s,s:s,s:{s:s,s:{s:{s:s},s:{s:s}},s:[s,s]}},"
		"{s:s,s:s,s:{s:s,s:{s:{s:s},s:{s:s},s:{s:s}},s:[s,s,s]}},"
		"{s:s,s:s,s:{s:s,s:{s:{s:s},s:{s:s}},s:[s]}},"
		"{s:s,s:s,s:{s:s,s:{s:{s:s},s:{s:s}},s:[s]}}]",
		"name", "bash", "description", "Run a shell command in the sandbox (/workspace is the working directory)",
		"input_schema", "type", "object", "properties", "command", "type", "string", "required", "command",
		"name", "read", "description", "Read a file in the sandbox", "input_schema", "type", "object", "properties",
		"file_path", "type", "string", "required", "file_path",
		"name", "write", "description", "Write a file in the sandbox", "input_schema", "type", "object", "properties",
		"file_path", "type", "string", "content", "type", "string", "required", "file_path", "content",
		"name", "edit", "description", "Replace a string in a file in the sandbox", "input_schema", "type", "object",
		"properties", "file_path", "type", "string", "old_string", "type", "string", "new_string", "type", "string",
		"required", "file_path", "old_string", "new_string",
		"name", "glob", "description", "Find files by pattern in the sandbox", "input_schema", "type", "object",
		"properties", "pattern", "type", "string", "path", "type", "string", "required", "pattern",
		"name", "grep", "description", "Search file contents in the sandbox", "input_schema", "type", "object",
		"properties", "pattern", "type", "string", "path", "type", "string", "required", "pattern");
}

static bool sandbox_tool(const char *name)
{
	static const char *const names[] = { "bash", "read", "write", "edit", "glob", "grep" };
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
		if (!strcmp(names[i], name))
			return true;
	return false;
}

static json_t *all_tools(agi *a)
{
	json_t *t = sandbox_tools();
	for (size_t i = 0; i < a->nmcp; i++) {
		size_t k;
		json_t *d;
		json_array_foreach(a->mcp_tools[i], k, d) {
			const char *n = json_string_value(json_object_get(d, "name"));
			json_t *schema = json_object_get(d, "inputSchema");
			if (!n)
				continue;
			json_t *sch = json_is_object(schema) ? json_incref(schema) : json_pack("{s:s}", "type", "object");
			json_t *e = json_pack("{s:s,s:o}", "description", json_string_value(json_object_get(d, "description")) ?: n,
					      "input_schema", sch);
			json_object_set_new(e, "name", json_sprintf("%s__%s", amcp_name(a->mcp[i]), n));
			json_array_append_new(t, e);
		}
	}
	return t;
}

/* One streamed answer, assembled. The stream comes from a network peer and its content from a model that
 * tool output can steer, so every count is capped: block indexes, and the bytes of text and tool input,
 * which are appended (not re-copied per delta) and turned into strings when the stream ends. */
#define AGM_MAX_BLOCKS 64
#define AGM_TURN_CAP (8u << 20)

struct turn {
	sse_dec dec;
	json_t *blocks;                 /* content blocks by index */
	cbuf acc[AGM_MAX_BLOCKS];       /* per block: text_delta text or input_json_delta partial JSON */
	size_t total;                   /* bytes in acc[], at most AGM_TURN_CAP */
	char stop[64];
	char error[512];
	char raw[AGM_RAW_CAP];
	size_t rawlen;
	int got_stop;
};

static void turn_error(struct turn *t, const char *msg)
{
	if (!t->error[0])
		snprintf(t->error, sizeof t->error, "%s", msg);
}

static void on_event(struct turn *t, const char *type, json_t *d)
{
	json_t *ji = json_object_get(d, "index");
	json_int_t ii = json_integer_value(ji);
	bool indexed = !strcmp(type, "content_block_start") || !strcmp(type, "content_block_delta");
	if (indexed && (!json_is_integer(ji) || ii < 0 || ii >= AGM_MAX_BLOCKS)) {
		turn_error(t, "the model's stream: a content block index that is not 0-63");
		return;
	}
	size_t idx = (size_t)ii;
	if (!strcmp(type, "content_block_start")) {
		json_t *b = json_deep_copy(json_object_get(d, "content_block"));
		while (json_array_size(t->blocks) <= idx)
			json_array_append_new(t->blocks, json_null());
		json_array_set_new(t->blocks, idx, json_is_object(b) ? b : json_object());
		if (b && !json_is_object(b))
			json_decref(b);
	} else if (!strcmp(type, "content_block_delta")) {
		json_t *delta = json_object_get(d, "delta"), *b = json_array_get(t->blocks, idx);
		const char *dt = json_string_value(json_object_get(delta, "type"));
		const char *piece = NULL;
		if (!json_is_object(b) || !dt)
			return;
		if (!strcmp(dt, "text_delta"))
			piece = json_string_value(json_object_get(delta, "text"));
		else if (!strcmp(dt, "input_json_delta"))
			piece = json_string_value(json_object_get(delta, "partial_json"));
		if (!piece)
			return;
		size_t n = strlen(piece);
		if (n > AGM_TURN_CAP - t->total || cbuf_append(&t->acc[idx], piece, n)) {
			turn_error(t, "the model's answer is over 8 MiB of text and tool input");
			return;
		}
		t->total += n;
	} else if (!strcmp(type, "message_delta")) {
		const char *sr = json_string_value(json_object_get(json_object_get(d, "delta"), "stop_reason"));
		if (sr)
			snprintf(t->stop, sizeof t->stop, "%s", sr);
	} else if (!strcmp(type, "message_stop")) {
		t->got_stop = 1;
	} else if (!strcmp(type, "error")) {
		json_t *e = json_object_get(d, "error");
		snprintf(t->error, sizeof t->error, "%s: %s", json_string_value(json_object_get(e, "type")) ?: "error",
			 json_string_value(json_object_get(e, "message")) ?: "(no message)");
	}
}

/* The deltas become the blocks' text and input. */
static void turn_finish(struct turn *t)
{
	size_t i;
	json_t *b;
	json_array_foreach(t->blocks, i, b) {
		const char *type = json_string_value(json_object_get(b, "type")) ?: "";
		cbuf *acc = &t->acc[i];
		if (!acc->len)
			continue;
		if (!strcmp(type, "text")) {
			const char *old = json_string_value(json_object_get(b, "text")) ?: "";
			json_object_set_new(b, "text", json_sprintf("%s%s", old, cbuf_str(acc)));
		} else if (!strcmp(type, "tool_use")) {
			json_t *in = json_loadb((const char *)cbuf_data(acc), acc->len, 0, NULL);
			if (json_is_object(in)) {
				json_object_set_new(b, "input", in);
			} else {
				json_decref(in);
				snprintf(t->error, sizeof t->error, "the model's tool input is not a JSON object: %.200s", cbuf_str(acc));
			}
		}
	}
}

static void turn_free(struct turn *t)
{
	sse_dec_free(&t->dec);
	for (size_t i = 0; i < AGM_MAX_BLOCKS; i++)
		cbuf_free(&t->acc[i]);
	json_decref(t->blocks);
	free(t);
}

static int on_bytes(void *arg, const char *p, size_t n)
{
	struct turn *t = arg;
	size_t keep = n < sizeof t->raw - 1 - t->rawlen ? n : sizeof t->raw - 1 - t->rawlen;
	memcpy(t->raw + t->rawlen, p, keep); /* for an error answer that is not a stream */
	t->rawlen += keep;
	t->raw[t->rawlen] = 0;
	while (n) {
		sse_event ev;
		size_t used;
		char e[96];
		int r = sse_dec_next(&t->dec, (const uint8_t *)p, n, &used, &ev, e, sizeof e);
		p += used, n -= used;
		if (r < 0) {
			snprintf(t->error, sizeof t->error, "the model's stream: %s", e);
			return -EPROTO;
		}
		if (!r)
			break;
		if (!ev.has_data)
			continue;
		json_t *d = json_loadb(ev.data, ev.data_len, 0, NULL);
		const char *type = ev.event ? ev.event : json_string_value(json_object_get(d, "type"));
		if (d && type)
			on_event(t, type, d);
		json_decref(d);
	}
	return 0;
}

static int ask_model(agi *a, const char *url, const char *keyhdr, json_t *tools, json_t *messages, struct turn *t,
		     char *err, size_t errlen)
{
	const char *hdrs[] = { keyhdr, "anthropic-version: 2023-06-01", "Accept: text/event-stream", NULL };
	json_t *body = json_pack("{s:s,s:i,s:b,s:O,s:O}", "model", a->model, "max_tokens", 4096, "stream", 1, "tools", tools,
				 "messages", messages);
	char *b = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	ahttp_resp resp;
	char e[256];
	ahttp_req r = { .method = "POST", .url = url, .headers = hdrs, .body = b, .timeout_ms = 600000, .sink = on_bytes, .arg = t };
	int rc = ahttp_do(&r, &resp, e, sizeof e);
	free(b);
	if (rc) {
		snprintf(err, errlen, "model error: %s", t->error[0] ? t->error : e);
		return rc;
	}
	long status = resp.status;
	ahttp_resp_free(&resp);
	if (status != 200) {
		json_t *j = json_loads(t->raw, 0, NULL);
		json_t *eo = json_object_get(j, "error");
		snprintf(err, errlen, "model error: HTTP %ld %s: %s", status, json_string_value(json_object_get(eo, "type")) ?: "",
			 json_string_value(json_object_get(eo, "message")) ?: t->raw);
		json_decref(j);
		return -EREMOTEIO;
	}
	turn_finish(t);
	if (t->error[0]) {
		snprintf(err, errlen, "model error: %s", t->error);
		return -EREMOTEIO;
	}
	if (!t->got_stop || !t->stop[0]) {
		snprintf(err, errlen, "model error: the stream ended before message_stop (no stop_reason)");
		return -EPROTO;
	}
	return 0;
}

/* Runs the turn's tool_use blocks; *results the user message's tool_result blocks. */
static int run_tools(agi *a, json_t *blocks, json_t *results, char *err, size_t errlen)
{
	size_t i;
	json_t *b;
	json_array_foreach(blocks, i, b) {
		if (strcmp(json_string_value(json_object_get(b, "type")) ?: "", "tool_use"))
			continue;
		const char *id = json_string_value(json_object_get(b, "id")) ?: "";
		const char *name = json_string_value(json_object_get(b, "name")) ?: "";
		json_t *in = json_object_get(b, "input");
		char server[64] = "";
		const char *tool = name, *sep = strstr(name, "__");
		if (sep && (size_t)(sep - name) < sizeof server) {
			snprintf(server, sizeof server, "%.*s", (int)(sep - name), name);
			tool = sep + 2;
		}
		agi_result r;
		int rc;
		a->steps++;
		fprintf(a->tr, "[%u] %s.%s ... ", a->steps, server[0] ? server : "sandbox", tool);
		fflush(a->tr);
		if (!server[0] && !sandbox_tool(tool)) {
			/* never posted: the worker would leave a tool it does not own pending until the timeout */
			memset(&r, 0, sizeof r);
			snprintf(err, errlen, "no tool named %s (the sandbox tools are bash, read, write, edit, glob, grep; an MCP "
				 "tool is SERVER__TOOL)", name);
			rc = -ENOENT;
		} else
			rc = agi_tool(a, server[0] ? server : NULL, tool, json_is_object(in) ? in : json_object(), &r, err, errlen);
		if (rc == -ENOENT) { /* a tool or server that is not there: the model's mistake, told to it */
			r.is_error = true;
			r.content = json_pack("[{s:s,s:s}]", "type", "text", "text", err);
		} else if (rc) {
			fprintf(a->tr, "%s after %.0f ms: %s\n", rc == -ETIMEDOUT ? "TIMED OUT" : rc == -ECANCELED ? "INTERRUPTED" : "FAILED", r.ms, err);
			return rc;
		}
		/* A tool's own error goes back to the model as an is_error tool_result (the Messages API way): the model
		 * decides what to do next. Only a model error, a timeout, an interrupt or a transport failure ends the run. */
		char *text = agi_text(r.content);
		fprintf(a->tr, "%s (%.1f ms)\n", r.is_error ? "TOOL ERROR (sent to the model)" : "ok", r.ms);
		agi_excerpt(a, text ? text : "", 6);
		json_array_append_new(results, json_pack("{s:s,s:s,s:O,s:b}", "type", "tool_result", "tool_use_id", id, "content",
							 r.content, "is_error", r.is_error));
		a->tool_errors += r.is_error;
		free(text);
		json_decref(r.content);
	}
	err[0] = 0;
	return 0;
}

int agi_model_run(agi *a, const char *api_key, char *err, size_t errlen)
{
	char url[1024], keyhdr[600];
	const char *base = getenv("ANTHROPIC_BASE_URL");
	int rc = 0;
	if (!base || !*base)
		base = "https://api.anthropic.com";
	size_t bl = strlen(base);
	while (bl && base[bl - 1] == '/')
		bl--;
	snprintf(url, sizeof url, "%.*s/v1/messages", (int)bl, base);
	if (strlen(api_key) > 512 || strpbrk(api_key, "\r\n")) {
		snprintf(err, errlen, "ANTHROPIC_API_KEY is not one line of at most 512 bytes");
		return -EINVAL;
	}
	snprintf(keyhdr, sizeof keyhdr, "x-api-key: %s", api_key);
	json_t *tools = all_tools(a);
	json_t *messages = json_pack("[{s:s,s:[{s:s,s:s}]}]", "role", "user", "content", "type", "text", "text", a->task);
	for (int turn = 0; turn < AGM_MAX_TURNS; turn++) {
		struct turn *t = calloc(1, sizeof *t);
		if (!t) {
			rc = -ENOMEM;
			break;
		}
		t->blocks = json_array();
		for (size_t i = 0; i < AGM_MAX_BLOCKS; i++)
			cbuf_init(&t->acc[i], 256, AGM_TURN_CAP);
		sse_dec_init(&t->dec, 0, 0);
		long t0 = agi_now_ms();
		rc = ask_model(a, url, keyhdr, tools, messages, t, err, errlen);
		if (!rc) {
			size_t i;
			json_t *b;
			fprintf(a->tr, "model: %zu block(s), stop_reason %s (%ld ms)\n", json_array_size(t->blocks), t->stop, agi_now_ms() - t0);
			json_array_foreach(t->blocks, i, b)
				if (!strcmp(json_string_value(json_object_get(b, "type")) ?: "", "text")) {
					const char *txt = json_string_value(json_object_get(b, "text")) ?: "";
					agi_excerpt(a, txt, 20);
					json_t *ev = json_pack("{s:s,s:[{s:s,s:s}]}", "type", "agent.message", "content", "type", "text", "text", *txt ? txt : " ");
					char e2[256];
					if (actl_post(a->ctl, ev, NULL, e2, sizeof e2))
						fprintf(a->tr, "warning: %s\n", e2);
					json_decref(ev);
				}
			json_array_append_new(messages, json_pack("{s:s,s:O}", "role", "assistant", "content", t->blocks));
			if (!strcmp(t->stop, "tool_use")) {
				json_t *results = json_array();
				rc = run_tools(a, t->blocks, results, err, errlen);
				json_array_append_new(messages, json_pack("{s:s,s:o}", "role", "user", "content", results));
			} else if (strcmp(t->stop, "end_turn") && strcmp(t->stop, "stop_sequence")) {
				snprintf(err, errlen, "model error: the model stopped with stop_reason %s", t->stop);
				rc = -EREMOTEIO;
			} else {
				turn_free(t);
				goto out;
			}
		} else {
			fprintf(a->tr, "%s\n", err);
		}
		turn_free(t);
		if (rc)
			goto out;
	}
	if (!rc) {
		snprintf(err, errlen, "the model did not end its turn within %d requests", AGM_MAX_TURNS);
		rc = -ELOOP;
	}
out:
	explicit_bzero(keyhdr, sizeof keyhdr);
	json_decref(tools);
	json_decref(messages);
	return rc;
}
