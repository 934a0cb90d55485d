/* See aplan.h. */
#include "agent/aplan.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libfyaml.h>

#include "core/cfg.h"

#define APLAN_MAX_STEPS 1000
#define APLAN_MAX_TEXT (16u << 20)

static const char *const step_keys[] = { "name", "mcp", "tool", "args", "expect", NULL };

void aplan_free(aplan *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++) {
		free(p->steps[i].name);
		free(p->steps[i].mcp);
		free(p->steps[i].tool);
		json_decref(p->steps[i].args);
	}
	free(p->steps);
	free(p);
}

static int load_step(cfg_doc *d, cfg_node *n, size_t i, aplan_step *s)
{
	int rc;
	char *expect = NULL;
	s->line = cfg_node_line(n);
	if (!cfg_is_map(n))
		return cfg_fail_line(d, s->line, "steps[%zu]: must be a mapping with tool: and args:", i);
	if ((rc = cfg_check_keys(d, n, "a plan step", step_keys)) < 0)
		return rc;
	if ((rc = cfg_get_str(d, n, "name", &s->name)) < 0 || (rc = cfg_get_str(d, n, "mcp", &s->mcp)) < 0 ||
	    (rc = cfg_get_str(d, n, "tool", &s->tool)) < 0 || (rc = cfg_get_str(d, n, "expect", &expect)) < 0)
		return rc;
	if (!s->tool)
		return cfg_fail_line(d, s->line, "steps[%zu]: tool: required (an MCP tool with mcp: SERVER, or bash, read, "
						 "write, edit, glob, grep)", i);
	if (expect) {
		int ok = !strcmp(expect, "error");
		free(expect);
		if (!ok)
			return cfg_fail(d, n, "expect", "the only value is error (the step must fail, e.g. a denied call)");
		s->expect_error = true;
	}
	if (!s->name) {
		char b[32];
		snprintf(b, sizeof b, "step%zu", i + 1);
		if (!(s->name = strdup(b)))
			return -ENOMEM;
	}
	cfg_node *a = cfg_get(n, "args");
	if (!a) {
		s->args = json_object();
		return 0;
	}
	if (!cfg_is_map(a))
		return cfg_fail(d, n, "args", "must be a mapping of the tool's arguments");
	s->args = cfg_node_json(a);
	if (!json_is_object(s->args))
		return cfg_fail(d, n, "args", "cannot be read as JSON");
	return 0;
}

static int load_doc(cfg_doc *d, aplan **out)
{
	int rc = 0;
	cfg_node *root = cfg_root(d);
	static const char *const top[] = { "steps", NULL };
	if (!cfg_is_map(root))
		return cfg_fail_line(d, 1, "a plan is a mapping with steps: (a list)");
	if ((rc = cfg_check_keys(d, root, "the plan", top)) < 0)
		return rc;
	cfg_node *seq = cfg_get(root, "steps");
	if (!seq || !fy_node_is_sequence(seq) || !fy_node_sequence_item_count(seq))
		return cfg_fail(d, root, seq ? "steps" : NULL, "steps: required, a non-empty list of steps");
	int cnt = fy_node_sequence_item_count(seq);
	if (cnt > APLAN_MAX_STEPS)
		return cfg_fail(d, root, "steps", "at most %d steps", APLAN_MAX_STEPS);
	aplan *p = calloc(1, sizeof *p);
	if (!p || !(p->steps = calloc((size_t)cnt, sizeof *p->steps))) {
		free(p);
		return -ENOMEM;
	}
	void *it = NULL;
	struct fy_node *n;
	while ((n = fy_node_sequence_iterate(seq, &it))) {
		aplan_step *s = &p->steps[p->n++];
		if ((rc = load_step(d, n, p->n - 1, s)) < 0)
			goto fail;
		for (size_t j = 0; j + 1 < p->n; j++)
			if (!strcmp(p->steps[j].name, s->name)) {
				rc = cfg_fail(d, n, "name", "%s: a second step of that name (line %d has it)", s->name,
					      p->steps[j].line);
				goto fail;
			}
	}
	*out = p;
	return 0;
fail:
	aplan_free(p);
	return rc;
}

static int finish(cfg_doc *d, aplan **out, char *err, size_t errlen)
{
	int rc = load_doc(d, out);
	if (rc < 0)
		snprintf(err, errlen, "%s", cfg_error(d) && *cfg_error(d) ? cfg_error(d) : "out of memory");
	cfg_free(d);
	return rc < 0 ? rc : 0;
}

int aplan_load(const char *path, aplan **out, char *err, size_t errlen)
{
	cfg_doc *d = cfg_load(path, err, errlen);
	return d ? finish(d, out, err, errlen) : -EINVAL;
}

int aplan_load_string(const char *name, const char *yaml, aplan **out, char *err, size_t errlen)
{
	cfg_doc *d = cfg_load_string(name, yaml, strlen(yaml), err, errlen);
	return d ? finish(d, out, err, errlen) : -EINVAL;
}

struct sbuf {
	char *b;
	size_t len, cap;
	int over;
};

static int sb_add(struct sbuf *sb, const char *p, size_t n)
{
	if (sb->len + n + 1 > APLAN_MAX_TEXT) {
		sb->over = 1;
		return -E2BIG;
	}
	if (sb->len + n + 1 > sb->cap) {
		size_t nc = (sb->len + n + 1) * 2;
		char *nb = realloc(sb->b, nc);
		if (!nb)
			return -ENOMEM;
		sb->b = nb, sb->cap = nc;
	}
	memcpy(sb->b + sb->len, p, n);
	sb->len += n;
	sb->b[sb->len] = 0;
	return 0;
}

/* s with every ${NAME.output} replaced; NULL with err on an unknown name or a result over the cap. */
static json_t *subst(const char *s, const json_t *outputs, char *err, size_t errlen)
{
	struct sbuf sb = { 0 };
	json_t *j = NULL;
	int rc = 0;
	if (!strstr(s, "${"))
		return json_string(s);
	while (*s && !rc) {
		const char *o = strstr(s, "${");
		const char *e = o ? strstr(o, ".output}") : NULL;
		if (!o || !e) { /* no (complete) reference: the rest is text */
			rc = sb_add(&sb, s, strlen(s));
			break;
		}
		char name[128];
		size_t nl = (size_t)(e - o - 2);
		if ((rc = sb_add(&sb, s, (size_t)(o - s))))
			break;
		snprintf(name, sizeof name, "%.*s", (int)(nl < sizeof name ? nl : sizeof name - 1), o + 2);
		const char *v = json_string_value(json_object_get(outputs, name));
		if (!v) {
			snprintf(err, errlen, "${%s.output}: no earlier step named %s", name, name);
			free(sb.b);
			return NULL;
		}
		rc = sb_add(&sb, v, strlen(v));
		s = e + strlen(".output}");
	}
	if (rc)
		snprintf(err, errlen, sb.over ? "an argument is over 16 MiB after ${...} substitution" : "out of memory");
	else
		j = json_stringn(sb.b ? sb.b : "", sb.len);
	free(sb.b);
	return j;
}

json_t *aplan_resolve(const json_t *args, const json_t *outputs, char *err, size_t errlen)
{
	if (json_is_string(args))
		return subst(json_string_value(args), outputs, err, errlen);
	if (json_is_object(args)) {
		json_t *o = json_object(), *v;
		const char *k;
		json_object_foreach((json_t *)args, k, v) {
			json_t *r = aplan_resolve(v, outputs, err, errlen);
			if (!r) {
				json_decref(o);
				return NULL;
			}
			json_object_set_new(o, k, r);
		}
		return o;
	}
	if (json_is_array(args)) {
		json_t *a = json_array(), *v;
		size_t i;
		json_array_foreach((json_t *)args, i, v) {
			json_t *r = aplan_resolve(v, outputs, err, errlen);
			if (!r) {
				json_decref(a);
				return NULL;
			}
			json_array_append_new(a, r);
		}
		return a;
	}
	return json_deep_copy(args);
}
