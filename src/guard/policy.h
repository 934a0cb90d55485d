/* Per-route tool policy (no I/O): ordered rules {match: {tool|prompt|resource: glob, client: glob}, action:
 * allow|deny|approve} and a default, evaluated on what the JSON-RPC inspector read from the body.
 *
 * Route config (YAML, under a route's mapping):
 *   policy:
 *     default: allow              # allow | deny | approve; default allow
 *     approval_timeout: 5m        # how long an approve hold waits before it denies; default 5m
 *     rules:
 *       - {match: {tool: "write_*"}, action: deny}
 *       - {name: ops-moves, match: {tool: "move_file", client: "ops-*"}, action: approve}
 *       - {match: {resource: "vault:*"}, action: deny}
 *
 * Matching: the first rule that matches decides. A rule names at most one target (tool, prompt or resource)
 * and then matches only that kind of call (tools/call, prompts/get, resources/read); a rule with only
 * client matches every kind. No rule matching: the default decides tools, and decides prompts or resources
 * only when some rule names that kind; a kind no rule names is not policed (allowed, rule -2).
 * Globs are fnmatch(3) with flags 0: '*', '?', '[...]' and backslash escapes; case-sensitive; '*' also
 * matches '/' (a resource glob ending in "srv/" and a star covers every path below). A call without a client
 * identity matches client globs as the empty string (so "*" matches it, "ops-*" does not). */
#ifndef POSTERN_GUARD_POLICY_H
#define POSTERN_GUARD_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "core/cfg.h"

#define POL_MAX_RULES   1024
#define POL_MAX_GLOB    512
#define POL_MAX_NAME    64
#define POL_APPROVAL_TIMEOUT_DEFAULT_MS (5 * 60 * 1000)

typedef enum pol_action { POL_ALLOW = 0, POL_DENY, POL_APPROVE } pol_action;
typedef enum pol_kind { POL_TOOL = 0, POL_PROMPT, POL_RESOURCE, POL_NKINDS } pol_kind;

#define POL_RULE_DEFAULT   (-1) /* the default decided */
#define POL_RULE_UNPOLICED (-2) /* no rule names this kind: allowed */

typedef struct pol pol;

typedef struct pol_rule_spec {
	const char *name;   /* optional; shown as the deciding rule (else "rules[i]") */
	pol_kind kind;      /* which target the glob is for; ignored when target is NULL */
	const char *target; /* glob on the tool name, prompt name or resource URI; NULL: any kind */
	const char *client; /* glob on the client identity; NULL: any client */
	pol_action action;
	int line;           /* config line, 0 when not from a file */
} pol_rule_spec;

typedef struct pol_verdict {
	pol_action action;
	int rule;          /* index of the deciding rule, POL_RULE_DEFAULT or POL_RULE_UNPOLICED */
	int line;          /* its config line (0 for the default or when unknown) */
	const char *name;  /* "rules[3]", the rule's name, "default" or "unpoliced"; owned by the policy */
} pol_verdict;

int pol_new(pol_action dflt, pol **out);
void pol_free(pol *p);
/* Appends a rule. 0, -EINVAL (err says why: an empty or long glob or name, too many rules) or -ENOMEM. */
int pol_add(pol *p, const pol_rule_spec *r, char *err, size_t errlen);
/* Reads a route's policy: mapping from YAML. Errors go to the document (cfg_error: "FILE:LINE: key: why"). */
int pol_from_cfg(cfg_doc *d, cfg_node *policy, pol **out);

int pol_eval(const pol *p, pol_kind kind, const char *target, const char *client, pol_verdict *v);
/* The tools/list filter: is the tool shown to this client? (deny hides it; approve shows it.) */
int pol_visible(const pol *p, pol_kind kind, const char *target, const char *client);

/* A resource URI a glob can be trusted to match: one a server could resolve to another resource than the text
 * says is refused, since '*' matches any bytes ("file:///srv/" and a star would cover "file:///srv/../etc"):
 * a dot segment ("." or ".." between '/' or '\\'), a backslash, %2E, %2F, %5C or %00 (any case), or a
 * scheme with upper-case letters (schemes are case-insensitive, RFC 3986 3.1, globs are not). 0, or -EINVAL
 * with why (static text). */
int pol_uri_check(const char *uri, const char **why);

size_t pol_rule_count(const pol *p);
uint32_t pol_approval_timeout_ms(const pol *p);
/* 16 hex digits of SHA-256 over the rules and the default: which policy revision decided, for the audit. */
const char *pol_revision(const pol *p);
const char *pol_action_name(pol_action a);
/* "allow" / "deny" / "approve" -> 0, else -EINVAL. */
int pol_action_parse(const char *s, pol_action *a);

#endif
