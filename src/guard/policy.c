/* Per-route tool policy: ordered glob rules and a default; config from YAML with file:line errors. */
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <libfyaml.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hex.h"
#include "guard/policy.h"

struct rule {
	char *name; /* "rules[i]" when the config gave none */
	pol_kind kind;
	char *target; /* NULL: any kind */
	char *client; /* NULL: any client */
	pol_action action;
	int line;
};

struct pol {
	pol_action dflt;
	uint32_t approval_timeout_ms;
	struct rule *rules;
	size_t n, cap;
	bool named[POL_NKINDS]; /* some rule names this kind */
	char rev[17];
};

static const char *const action_names[] = { "allow", "deny", "approve" };
static const char *const kind_keys[] = { "tool", "prompt", "resource" };

const char *pol_action_name(pol_action a)
{
	return (unsigned)a < 3 ? action_names[a] : "?";
}

int pol_action_parse(const char *s, pol_action *a)
{
	for (int i = 0; s && i < 3; i++)
		if (!strcmp(s, action_names[i])) {
			*a = (pol_action)i;
			return 0;
		}
	return -EINVAL;
}

int pol_new(pol_action dflt, pol **out)
{
	pol *p = calloc(1, sizeof *p);
	*out = NULL;
	if (!p)
		return -ENOMEM;
	p->dflt = dflt;
	p->approval_timeout_ms = POL_APPROVAL_TIMEOUT_DEFAULT_MS;
	p->rev[0] = 0;
	*out = p;
	return 0;
}

void pol_free(pol *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++) {
		free(p->rules[i].name);
		free(p->rules[i].target);
		free(p->rules[i].client);
	}
	free(p->rules);
	free(p);
}

static int glob_ok(const char *g, const char *what, char *err, size_t errlen)
{
	size_t n = g ? strlen(g) : 0;
	if (g && (n == 0 || n > POL_MAX_GLOB)) {
		snprintf(err, errlen, "%s glob must be 1..%d bytes", what, POL_MAX_GLOB);
		return -EINVAL;
	}
	return 0;
}

int pol_add(pol *p, const pol_rule_spec *r, char *err, size_t errlen)
{
	struct rule *nr;
	char defname[32];
	int rc;

	if (p->n >= POL_MAX_RULES) {
		snprintf(err, errlen, "more than %d rules", POL_MAX_RULES);
		return -EINVAL;
	}
	if ((unsigned)r->action > POL_APPROVE || (r->target && (unsigned)r->kind >= POL_NKINDS)) {
		snprintf(err, errlen, "invalid action or kind");
		return -EINVAL;
	}
	if ((rc = glob_ok(r->target, r->target ? kind_keys[r->kind] : "target", err, errlen)) < 0 ||
	    (rc = glob_ok(r->client, "client", err, errlen)) < 0)
		return rc;
	if (r->name && (!*r->name || strlen(r->name) > POL_MAX_NAME)) {
		snprintf(err, errlen, "rule name must be 1..%d bytes", POL_MAX_NAME);
		return -EINVAL;
	}
	if (p->n == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 8;
		if (!(nr = realloc(p->rules, cap * sizeof *nr)))
			return -ENOMEM;
		p->rules = nr;
		p->cap = cap;
	}
	nr = &p->rules[p->n];
	memset(nr, 0, sizeof *nr);
	snprintf(defname, sizeof defname, "rules[%zu]", p->n);
	nr->name = strdup(r->name ? r->name : defname);
	nr->target = r->target ? strdup(r->target) : NULL;
	nr->client = r->client ? strdup(r->client) : NULL;
	if (!nr->name || (r->target && !nr->target) || (r->client && !nr->client)) {
		free(nr->name);
		free(nr->target);
		free(nr->client);
		return -ENOMEM;
	}
	nr->kind = r->target ? r->kind : POL_TOOL;
	nr->action = r->action;
	nr->line = r->line;
	if (r->target)
		p->named[r->kind] = true;
	p->n++;
	p->rev[0] = 0; /* recomputed on demand */
	return 0;
}

static bool rule_matches(const struct rule *r, pol_kind kind, const char *target, const char *client)
{
	if (r->target && (r->kind != kind || fnmatch(r->target, target ? target : "", 0) != 0))
		return false;
	return !r->client || fnmatch(r->client, client ? client : "", 0) == 0;
}

int pol_eval(const pol *p, pol_kind kind, const char *target, const char *client, pol_verdict *v)
{
	if ((unsigned)kind >= POL_NKINDS)
		return -EINVAL;
	for (size_t i = 0; i < p->n; i++)
		if (rule_matches(&p->rules[i], kind, target, client)) {
			*v = (pol_verdict){ p->rules[i].action, (int)i, p->rules[i].line, p->rules[i].name };
			return 0;
		}
	if (kind != POL_TOOL && !p->named[kind])
		*v = (pol_verdict){ POL_ALLOW, POL_RULE_UNPOLICED, 0, "unpoliced" };
	else
		*v = (pol_verdict){ p->dflt, POL_RULE_DEFAULT, 0, "default" };
	return 0;
}

int pol_visible(const pol *p, pol_kind kind, const char *target, const char *client)
{
	pol_verdict v;
	int rc = pol_eval(p, kind, target, client, &v);
	return rc < 0 ? rc : v.action != POL_DENY;
}

int pol_uri_check(const char *uri, const char **why)
{
	size_t n = strlen(uri), sch = strcspn(uri, ":/?#"), seg;
	bool scheme = sch < n && uri[sch] == ':' && sch > 0 && isalpha((unsigned char)uri[0]);

	for (size_t i = 0; scheme && i < sch; i++) {
		unsigned char ch = (unsigned char)uri[i];
		if (!isalnum(ch) && ch != '+' && ch != '-' && ch != '.')
			scheme = false;
		else if (isupper(ch)) {
			*why = "its scheme is not in lower case";
			return -EINVAL;
		}
	}
	if (strchr(uri, '\\')) {
		*why = "it holds a backslash";
		return -EINVAL;
	}
	for (const char *p = strchr(uri, '%'); p; p = strchr(p + 1, '%'))
		if (p[1] && p[2] && ((p[1] == '2' && strchr("eEfF", p[2])) || (p[1] == '5' && strchr("cC", p[2])) ||
				     (p[1] == '0' && p[2] == '0'))) {
			*why = "it holds an encoded dot, slash, backslash or NUL";
			return -EINVAL;
		}
	/* segments from after the scheme to the query or fragment */
	for (size_t i = scheme ? sch + 1 : 0; i <= n; i += seg + 1) {
		seg = strcspn(uri + i, "/?#");
		if ((seg == 1 && uri[i] == '.') || (seg == 2 && uri[i] == '.' && uri[i + 1] == '.')) {
			*why = "it holds a dot segment (. or ..)";
			return -EINVAL;
		}
		if (uri[i + seg] != '/')
			break;
	}
	return 0;
}

size_t pol_rule_count(const pol *p) { return p->n; }
uint32_t pol_approval_timeout_ms(const pol *p) { return p->approval_timeout_ms; }

const char *pol_revision(const pol *p)
{
	pol *mp = (pol *)p; /* the cached digest is not part of the policy's value */
	unsigned char md[32];
	unsigned mdlen = 0;
	EVP_MD_CTX *c;

	if (p->rev[0])
		return p->rev;
	if (!(c = EVP_MD_CTX_new()))
		return "";
	/* Each field NUL-terminated so that no two policies hash the same text. */
	EVP_DigestInit_ex(c, EVP_sha256(), NULL);
	EVP_DigestUpdate(c, action_names[p->dflt], strlen(action_names[p->dflt]) + 1);
	for (size_t i = 0; i < p->n; i++) {
		const struct rule *r = &p->rules[i];
		const char *f[] = { r->target ? kind_keys[r->kind] : "-", r->target ? r->target : "",
				    r->client ? "client" : "-", r->client ? r->client : "", action_names[r->action] };
		for (size_t j = 0; j < sizeof f / sizeof f[0]; j++)
			EVP_DigestUpdate(c, f[j], strlen(f[j]) + 1);
	}
	EVP_DigestFinal_ex(c, md, &mdlen);
	EVP_MD_CTX_free(c);
	hex_encode(md, 8, mp->rev);
	return p->rev;
}

/* ---- config ---- */

/* The line of a sequence item: its own for a scalar, its first key's for a mapping. */
static int item_line(cfg_node *item)
{
	void *it = NULL;
	struct fy_node_pair *pr;
	if (!cfg_is_map(item))
		return cfg_node_line(item);
	pr = fy_node_mapping_iterate(item, &it);
	return pr ? cfg_node_line(fy_node_pair_key(pr)) : 0;
}

static int load_rule(cfg_doc *d, cfg_node *item, size_t idx, pol *p)
{
	static const char *const keys[] = { "name", "match", "action", NULL };
	static const char *const mkeys[] = { "tool", "prompt", "resource", "client", NULL };
	pol_rule_spec s = { 0 };
	cfg_node *match = NULL;
	char *name = NULL, *action = NULL, *target = NULL, *client = NULL, where[48], err[200];
	int rc, ntargets = 0;

	snprintf(where, sizeof where, "rules[%zu]", idx);
	if (!cfg_is_map(item)) {
		rc = cfg_fail_line(d, item_line(item), "policy: %s: must be a mapping {match: {...}, action: ...}",
				   where);
		goto done;
	}
	if ((rc = cfg_check_keys(d, item, where, keys)) < 0)
		goto done;
	if ((rc = cfg_get_map(d, item, "match", &match)) != 0) {
		rc = rc < 0 ? rc : cfg_fail_line(d, item_line(item), "policy: %s: no match: {tool|prompt|resource|"
							       "client: glob}", where);
		goto done;
	}
	if ((rc = cfg_check_keys(d, match, "match", mkeys)) < 0)
		goto done;
	for (int k = 0; k < POL_NKINDS; k++) {
		char *g = NULL;
		if ((rc = cfg_get_str(d, match, kind_keys[k], &g)) < 0)
			goto done;
		if (rc == 0) {
			if (++ntargets > 1) {
				free(g);
				rc = cfg_fail(d, match, kind_keys[k], "a rule matches one of tool, prompt, resource");
				goto done;
			}
			target = g;
			s.kind = (pol_kind)k;
			s.target = target;
		}
	}
	if ((rc = cfg_get_str(d, match, "client", &client)) < 0)
		goto done;
	s.client = client;
	if (!s.target && !s.client) {
		rc = cfg_fail(d, item, "match", "must name tool, prompt, resource or client");
		goto done;
	}
	if ((rc = cfg_get_str(d, item, "action", &action)) != 0) {
		rc = rc < 0 ? rc : cfg_fail_line(d, item_line(item), "policy: %s: no action (allow, deny or approve)",
						 where);
		goto done;
	}
	if (pol_action_parse(action, &s.action) < 0) {
		rc = cfg_fail(d, item, "action", "must be allow, deny or approve, not \"%s\"", action);
		goto done;
	}
	if ((rc = cfg_get_str(d, item, "name", &name)) < 0)
		goto done;
	s.name = name;
	s.line = cfg_key_line(item, "action");
	if ((rc = pol_add(p, &s, err, sizeof err)) < 0)
		rc = cfg_fail_line(d, item_line(item), "policy: %s: %s", where, rc == -ENOMEM ? "out of memory" : err);
done:
	free(name);
	free(action);
	free(target);
	free(client);
	return rc < 0 ? rc : 0;
}

int pol_from_cfg(cfg_doc *d, cfg_node *policy, pol **out)
{
	static const char *const keys[] = { "default", "approval_timeout", "rules", NULL };
	pol *p = NULL;
	pol_action dflt = POL_ALLOW;
	cfg_node *rules, *item;
	char *s = NULL;
	void *it = NULL;
	int64_t ms;
	size_t idx = 0;
	int rc;

	*out = NULL;
	if ((rc = cfg_check_keys(d, policy, "policy", keys)) < 0)
		goto done;
	if ((rc = cfg_get_str(d, policy, "default", &s)) < 0)
		goto done;
	if (rc == 0 && pol_action_parse(s, &dflt) < 0) {
		rc = cfg_fail(d, policy, "default", "must be allow, deny or approve, not \"%s\"", s);
		goto done;
	}
	if ((rc = pol_new(dflt, &p)) < 0)
		goto done;
	if ((rc = cfg_get_duration_ms(d, policy, "approval_timeout", &ms)) < 0)
		goto done;
	if (rc == 0) {
		if (ms < 1000 || ms > 86400000) {
			rc = cfg_fail(d, policy, "approval_timeout", "must be between 1s and 24h");
			goto done;
		}
		p->approval_timeout_ms = (uint32_t)ms;
	}
	rules = cfg_get(policy, "rules");
	if (rules && fy_node_get_type(rules) != FYNT_SEQUENCE) {
		rc = cfg_fail(d, policy, "rules", "must be a list of {match: {...}, action: ...}");
		goto done;
	}
	while (rules && (item = fy_node_sequence_iterate(rules, &it)))
		if ((rc = load_rule(d, item, idx++, p)) < 0)
			goto done;
	*out = p;
	p = NULL;
	rc = 0;
done:
	free(s);
	pol_free(p);
	return rc;
}
