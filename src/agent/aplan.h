/* The plan file of a scripted `postern agent` run (no model): a YAML list of steps, each an MCP call or a
 * sandbox tool call with its arguments, and `${STEP.output}` in any string of the arguments for the text
 * an earlier step returned. No I/O beyond loading the file; unit-tested. */
#ifndef POSTERN_AGENT_APLAN_H
#define POSTERN_AGENT_APLAN_H
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct aplan_step {
	char *name;       /* unique; defaults to "stepN" */
	char *mcp;        /* MCP server name (--mcp NAME=URL), NULL = a sandbox tool */
	char *tool;
	json_t *args;     /* an object */
	bool expect_error; /* `expect: error`: the step must fail (a guard's deny) and the run goes on */
	int line;
} aplan_step;

typedef struct aplan {
	aplan_step *steps;
	size_t n;
} aplan;

/* Loads FILE; errors name the file, line and key. The document is `steps: [...]`. */
int aplan_load(const char *path, aplan **out, char *err, size_t errlen);
int aplan_load_string(const char *name, const char *yaml, aplan **out, char *err, size_t errlen);
void aplan_free(aplan *p);
/* A copy of args with ${NAME.output} replaced by outputs[NAME] (an object of strings). An unknown step name
 * is an error naming it. */
json_t *aplan_resolve(const json_t *args, const json_t *outputs, char *err, size_t errlen);

#endif
