/* Shared by the parts of `postern agent`: agent.c (options, session, plan run, signals, transcript),
 * agent_tools.c (one tool call: a sandbox tool through the session's events, an MCP tool through an edge,
 * permissions), agent_model.c (the Messages API loop). */
#ifndef POSTERN_AGENT_AGENT_INT_H
#define POSTERN_AGENT_AGENT_INT_H
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "agent/actl.h"
#include "agent/amcp.h"

#define AGI_MAX_MCP 16
#define AGI_MAX_PERMS 64

typedef struct agi_perm {
	char tool[128];
	bool ask;
} agi_perm;

typedef struct agi {
	actl *ctl;
	amcp *mcp[AGI_MAX_MCP];
	json_t *mcp_tools[AGI_MAX_MCP]; /* each server's tools/list */
	size_t nmcp;
	agi_perm perms[AGI_MAX_PERMS];
	size_t nperms;
	long tool_timeout_ms;
	bool json;
	FILE *tr;         /* the transcript: stdout, or stderr with --json */
	const char *model;
	const char *task;
	long started_ms;
	/* counts for the summary line */
	unsigned steps, mcp_calls, sandbox_calls, tool_errors;
	double mcp_ms, sandbox_ms;
} agi;

/* The outcome of one tool call. */
typedef struct agi_result {
	json_t *content;   /* content blocks (array) */
	bool is_error;
	bool denied;       /* a person said no at an `ask` prompt */
	double ms;
} agi_result;

long agi_now_ms(void);
/* One call: server NULL = a sandbox tool (bash, read, write, edit, glob, grep). 0 with *r (a tool's own error
 * is r->is_error), or -errno with err for what ends the run: a timeout, an interrupt, a transport failure. */
int agi_tool(agi *a, const char *server, const char *tool, json_t *input, agi_result *r, char *err, size_t errlen);
/* The text of content blocks, joined (malloc'd). */
char *agi_text(json_t *content);
/* Prints a result excerpt under a transcript line: at most lines lines of at most 160 bytes. */
void agi_excerpt(agi *a, const char *text, int lines);
/* The index of MCP server name, or -1. */
int agi_mcp_find(agi *a, const char *name);
/* The model loop (ANTHROPIC_API_KEY): 0 at end_turn, -errno with err. */
int agi_model_run(agi *a, const char *api_key, char *err, size_t errlen);

#endif
