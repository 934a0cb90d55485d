/* One tool call of `postern agent` (see agent_int.h): the session records every call, whoever runs it. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent_int.h"
#include "agent/ahttp.h"
#include "agent/atty.h"

long agi_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static double now_fms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

int agi_mcp_find(agi *a, const char *name)
{
	for (size_t i = 0; i < a->nmcp; i++)
		if (!strcmp(amcp_name(a->mcp[i]), name))
			return (int)i;
	return -1; /* -1: no such server */
}

char *agi_text(json_t *content)
{
	size_t i, len = 0;
	json_t *b;
	json_array_foreach(content, i, b) {
		const char *t = json_string_value(json_object_get(b, "text"));
		len += t ? strlen(t) + 1 : 0;
	}
	char *out = malloc(len + 1), *p = out;
	if (!out)
		return NULL;
	json_array_foreach(content, i, b) {
		const char *t = json_string_value(json_object_get(b, "text"));
		if (!t)
			continue;
		if (p != out)
			*p++ = '\n';
		memcpy(p, t, strlen(t));
		p += strlen(t);
	}
	*p = 0;
	return out;
}

void agi_excerpt(agi *a, const char *text, int lines)
{
	const char *p = text;
	int n = 0;
	while (*p && n < lines) {
		size_t l = strcspn(p, "\n");
		fprintf(a->tr, "      | %.*s%s\n", (int)(l > 160 ? 160 : l), p, l > 160 ? "…" : "");
		p += l + (p[l] == '\n');
		n++;
	}
	if (*p) {
		size_t more = 0;
		for (const char *q = p; *q; q++)
			more += *q == '\n';
		fprintf(a->tr, "      | … (%zu more lines)\n", more + 1);
	}
	fflush(a->tr);
}

static bool asks(agi *a, const char *tool)
{
	for (size_t i = 0; i < a->nperms; i++)
		if (!strcmp(a->perms[i].tool, tool) || !strcmp(a->perms[i].tool, "*"))
			return a->perms[i].ask;
	return false;
}

/* `ask`: a yes on the terminal (not stdin: the task may come from a pipe). No terminal: no. The person sees
 * the whole call, escaped (atty): an input too long to show is denied rather than shown in part, since what
 * scrolls away or is cut is what a hostile input would hide. */
#define AGI_ASK_SHOW_MAX (16u * 1024)

static bool confirm(agi *a, const char *server, const char *tool, json_t *input)
{
	char *in = json_dumps(input, JSON_COMPACT | JSON_ENSURE_ASCII);
	FILE *tty = fopen("/dev/tty", "r+");
	FILE *out = tty ? atty_open(tty) : NULL;
	bool yes = false;
	if (!tty || !out) {
		fprintf(a->tr, "      permission ask for %s: no terminal to ask on, so denied\n", tool);
	} else if (!in || strlen(in) > AGI_ASK_SHOW_MAX) {
		fprintf(a->tr, "      permission ask for %s: its input is %zu bytes, more than the %u a prompt shows, so "
			"denied\n", tool, in ? strlen(in) : 0, AGI_ASK_SHOW_MAX);
	} else {
		char line[32];
		fprintf(out, "\n      allow %s%s%s %s? [y/N] ", server ? server : "", server ? "." : "", tool, in);
		fflush(out);
		if (fgets(line, sizeof line, tty))
			yes = line[0] == 'y' || line[0] == 'Y';
	}
	if (out)
		fclose(out);
	if (tty)
		fclose(tty);
	free(in);
	return yes;
}

static int sandbox_call(agi *a, const char *tool, json_t *input, bool ask, agi_result *r, char *err, size_t errlen)
{
	json_t *stored = NULL, *res = NULL;
	json_t *ev = json_pack("{s:s,s:s,s:O,s:s}", "type", "agent.tool_use", "name", tool, "input", input,
			       "evaluated_permission", ask ? "ask" : "allow");
	int rc = actl_post(a->ctl, ev, &stored, err, errlen);
	json_decref(ev);
	if (rc)
		return rc;
	const char *id = json_string_value(json_object_get(stored, "id"));
	if (!id) {
		snprintf(err, errlen, "control plane: the stored agent.tool_use has no id");
		rc = -EPROTO;
		goto out;
	}
	if (ask) {
		bool yes = confirm(a, NULL, tool, input);
		json_t *c = json_pack("{s:s,s:s,s:s}", "type", "user.tool_confirmation", "tool_use_id", id, "result",
				      yes ? "allow" : "deny");
		rc = actl_post(a->ctl, c, NULL, err, errlen);
		json_decref(c);
		if (rc || !yes) {
			r->denied = !yes;
			r->is_error = true;
			r->content = json_pack("[{s:s,s:s}]", "type", "text", "text", "denied at the permission prompt");
			goto out;
		}
	}
	if ((rc = actl_wait_result(a->ctl, id, a->tool_timeout_ms, &res, err, errlen)))
		goto out;
	json_t *content = json_object_get(res, "content");
	r->content = json_is_array(content) ? json_incref(content) : json_array();
	r->is_error = json_is_true(json_object_get(res, "is_error"));
out:
	json_decref(res);
	json_decref(stored);
	return rc;
}

static int mcp_call(agi *a, int si, const char *tool, json_t *input, bool ask, agi_result *r, char *err, size_t errlen)
{
	json_t *stored = NULL, *res = NULL;
	const char *server = amcp_name(a->mcp[si]);
	json_t *ev = json_pack("{s:s,s:s,s:O,s:s,s:s}", "type", "agent.mcp_tool_use", "name", tool, "input", input,
			       "mcp_server_name", server, "evaluated_permission", ask ? "ask" : "allow");
	int rc = actl_post(a->ctl, ev, &stored, err, errlen);
	json_decref(ev);
	if (rc)
		return rc;
	if (ask && !confirm(a, server, tool, input)) {
		r->denied = true;
		r->is_error = true;
		r->content = json_pack("[{s:s,s:s}]", "type", "text", "text", "denied at the permission prompt");
	} else {
		if ((rc = amcp_call(a->mcp[si], tool, input, a->tool_timeout_ms, &res, err, errlen)))
			goto out;
		json_t *content = json_object_get(res, "content");
		r->content = json_is_array(content) ? json_incref(content) : json_array();
		r->is_error = json_is_true(json_object_get(res, "isError"));
	}
	/* The result goes in the session's log as the platform's own MCP calls do. */
	json_t *done = json_pack("{s:s,s:s,s:O,s:b}", "type", "agent.mcp_tool_result", "mcp_tool_use_id",
				 json_string_value(json_object_get(stored, "id")) ?: "", "content", r->content, "is_error",
				 r->is_error);
	rc = actl_post(a->ctl, done, NULL, err, errlen);
	json_decref(done);
out:
	json_decref(res);
	json_decref(stored);
	return rc;
}

int agi_tool(agi *a, const char *server, const char *tool, json_t *input, agi_result *r, char *err, size_t errlen)
{
	int rc;
	memset(r, 0, sizeof *r);
	double t0 = now_fms();
	bool ask = asks(a, tool);
	if (server) {
		int si = agi_mcp_find(a, server);
		if (si < 0) {
			snprintf(err, errlen, "no MCP server named %s (give it with --mcp %s=URL)", server, server);
			return -ENOENT;
		}
		rc = mcp_call(a, si, tool, input, ask, r, err, errlen);
	} else {
		rc = sandbox_call(a, tool, input, ask, r, err, errlen);
	}
	r->ms = now_fms() - t0;
	if (server)
		a->mcp_calls++, a->mcp_ms += r->ms;
	else
		a->sandbox_calls++, a->sandbox_ms += r->ms;
	if (rc) {
		json_decref(r->content);
		r->content = NULL;
	}
	return rc;
}
