/* Options carried unparsed (see optmap.h). */
#include "core/optmap.h"

#include <errno.h>
#include <libfyaml.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static optmap_ent *find(const optmap *m, const char *key)
{
	for (size_t i = 0; i < m->n; i++)
		if (!strcmp(m->v[i].key, key))
			return &m->v[i];
	return NULL;
}

const optmap_ent *optmap_get(const optmap *m, const char *key)
{
	return find(m, key);
}

/* The entry of key, created with no values when absent. */
static optmap_ent *ent_get(optmap *m, const char *key, int line)
{
	optmap_ent *e = find(m, key), *v;

	if (e)
		return e;
	v = realloc(m->v, (m->n + 1) * sizeof *v);
	if (!v)
		return NULL;
	m->v = v;
	e = &v[m->n];
	memset(e, 0, sizeof *e);
	if (!(e->key = strdup(key)))
		return NULL;
	e->line = line;
	m->n++;
	return e;
}

int optmap_add(optmap *m, const char *key, const char *val, int line)
{
	optmap_ent *e = ent_get(m, key, line);
	char **nv = e ? realloc(e->vals, (e->n + 2) * sizeof *nv) : NULL;

	if (!nv)
		return -ENOMEM;
	e->vals = nv;
	if (!(nv[e->n] = strdup(val)))
		return -ENOMEM;
	nv[++e->n] = NULL;
	e->list |= e->n > 1;
	return 0;
}

static void ent_free(optmap_ent *e)
{
	free(e->key);
	cfg_strv_free(e->vals);
}

void optmap_del(optmap *m, const char *key)
{
	optmap_ent *e = find(m, key);
	if (!e)
		return;
	ent_free(e);
	memmove(e, e + 1, (size_t)(m->v + m->n - (e + 1)) * sizeof *e);
	m->n--;
}

size_t optmap_count_values(const optmap *m)
{
	size_t n = 0;
	for (size_t i = 0; i < m->n; i++)
		n += m->v[i].n;
	return n;
}

void optmap_free(optmap *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n; i++)
		ent_free(&m->v[i]);
	free(m->v);
	m->v = NULL;
	m->n = 0;
}

int optmap_from_cfg(cfg_doc *d, cfg_node *map, const char *where, optmap *out)
{
	void *it = NULL;
	const char *key;
	cfg_node *val;
	int rc = 0;

	memset(out, 0, sizeof *out);
	if (!cfg_is_map(map))
		return cfg_fail(d, map, NULL, "%s must be a mapping", where);
	while (rc == 0 && cfg_map_next(map, &it, &key, &val)) {
		int line = cfg_key_line(map, key);
		void *si = NULL;
		cfg_node *item;
		size_t k = 0;

		if (!val)
			continue; /* "key:" with nothing after it: absent */
		if (cfg_scalar(val)) {
			rc = optmap_add(out, key, cfg_scalar(val), line);
			continue;
		}
		optmap_ent *e = ent_get(out, key, line);
		if (!e) {
			rc = -ENOMEM;
			break;
		}
		if (fy_node_get_type(val) != FYNT_SEQUENCE) {
			e->map = true;
			continue;
		}
		e->list = true; /* an empty list stays a key with no values */
		while (rc == 0 && (item = fy_node_sequence_iterate(val, &si))) {
			k++;
			rc = cfg_scalar(item) ? optmap_add(out, key, cfg_scalar(item), line)
					      : cfg_fail(d, map, key, "list item %zu is not a single value", k);
		}
	}
	if (rc < 0)
		optmap_free(out);
	return rc;
}

char **optmap_to_argv(const optmap *m, const char *flag)
{
	size_t n = optmap_count_values(m), k = 0;
	char **v = calloc(2 * n + 1, sizeof *v);

	for (size_t i = 0; v && i < m->n; i++)
		for (size_t j = 0; j < m->v[i].n; j++) {
			if (!(v[k++] = strdup(flag)) || asprintf(&v[k], "%s=%s", m->v[i].key, m->v[i].vals[j]) < 0) {
				v[k] = NULL;
				cfg_strv_free(v);
				return NULL;
			}
			k++;
		}
	return v;
}

/* ---- checkers ---------------------------------------------------------------------------------- */

#define MAX_OWNERS 4

static struct {
	const char *owner;
	optmap_check_fn fn;
} checkers[MAX_OWNERS];

void optmap_set_checker(const char *owner, optmap_check_fn fn)
{
	for (size_t i = 0; i < MAX_OWNERS; i++)
		if (!checkers[i].owner || !strcmp(checkers[i].owner, owner)) {
			checkers[i].owner = owner;
			checkers[i].fn = fn;
			return;
		}
}

optmap_check_fn optmap_checker(const char *owner)
{
	for (size_t i = 0; i < MAX_OWNERS && checkers[i].owner; i++)
		if (!strcmp(checkers[i].owner, owner))
			return checkers[i].fn;
	return NULL;
}
