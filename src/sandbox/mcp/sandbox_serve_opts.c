/* The options of `postern sandbox serve` (see sandbox_serve_opts.h). */
#include "sandbox/mcp/sandbox_serve_opts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cfg.h"
#include "core/log.h"
#include "sandbox/egress/egress_policy.h"
#include "sandbox/engine/slot.h"
#include "sandbox/engine/sbxopt.h"
#include "sandbox/engine/ws_quota.h"

/* The keys of a route's sandbox: mapping and the flag each one is. */
enum rkind { RK_PATH, RK_SIZE, RK_DISK, RK_DURATION, RK_VALUE, RK_LIST, RK_BOOL };
static const struct route_key {
	const char *key, *flag;
	enum rkind kind;
} route_keys[] = {
	{ "image", "--image", RK_PATH },
	{ "memory", "--memory", RK_SIZE },
	{ "pids", "--pids", RK_VALUE },
	{ "cpus", "--cpus", RK_VALUE },
	{ "tmp", "--tmp", RK_SIZE },
	{ "disk", "--disk", RK_DISK },
	{ "timeout", "--timeout", RK_DURATION },
	{ "allow_domains", "--allow-domain", RK_LIST },
	{ "deny_domains", "--deny-domain", RK_LIST },
	{ "no_cgroup", "--no-cgroup", RK_BOOL },
};
#define N_ROUTE_KEYS (sizeof route_keys / sizeof route_keys[0])

static const struct route_key *route_key(const char *key, size_t n)
{
	for (size_t i = 0; i < N_ROUTE_KEYS; i++)
		if (strlen(route_keys[i].key) == n && !strncmp(route_keys[i].key, key, n))
			return &route_keys[i];
	return NULL;
}

static int apply(struct ssv_opts *o, const char *a, const char *v, char *err, size_t errlen);

/* --option KEY=VALUE: one value of a route key, as its flag. */
static int route_option(struct ssv_opts *o, const char *kv, char *err, size_t errlen)
{
	const char *eq = strchr(kv, '=');
	const struct route_key *k = eq ? route_key(kv, (size_t)(eq - kv)) : NULL;
	bool on;

	if (!k) {
		snprintf(err, errlen, "--option %s: expected KEY=VALUE with a key of a route's sandbox: options", kv);
		return -EINVAL;
	}
	if (k->kind != RK_BOOL)
		return apply(o, k->flag, eq + 1, err, errlen);
	/* no_cgroup, the one boolean key */
	if (cfg_parse_bool(eq + 1, &on) < 0) {
		snprintf(err, errlen, "--option %s: '%s' is not a boolean (true or false)", kv, eq + 1);
		return -EINVAL;
	}
	o->no_cgroup = on;
	return 0;
}

/* One flag with its value v. */
static int apply(struct ssv_opts *o, const char *a, const char *v, char *err, size_t errlen)
{
	int64_t ms;
	uint64_t sz;

	int placed;

	if (!strcmp(a, "--option"))
		return route_option(o, v, err, errlen);
	placed = sbxopt_place(a, v, &o->workspace, &o->scratch, &o->disk_bytes, &o->image, err, errlen);
	if (placed)
		return placed < 0 ? -EINVAL : 0;
	if (!strcmp(a, "--slots-dir")) {
		o->slots_dir = v;
	} else if (!strcmp(a, "--allow-domain") || !strcmp(a, "--deny-domain")) {
		bool allow = a[2] == 'a';
		size_t *n = allow ? &o->n_allow : &o->n_deny;
		egp_policy *p = egp_new();
		char e[160];
		int rc = p ? (allow ? egp_allow(p, v, e, sizeof e) : egp_deny(p, v, e, sizeof e)) : -ENOMEM;
		egp_free(p);
		if (rc < 0) {
			snprintf(err, errlen, "%s: %s", a, rc == -ENOMEM ? "out of memory" : e);
			return -EINVAL;
		}
		if (*n >= SSV_MAX_LIST) {
			snprintf(err, errlen, "%s: more than %d", a, SSV_MAX_LIST);
			return -EINVAL;
		}
		(allow ? o->allow : o->deny)[(*n)++] = v;
	} else if (!strcmp(a, "--memory") || !strcmp(a, "--tmp")) {
		if (cfg_parse_size(v, &sz) < 0 || sz < (1u << 20) || sz > (1ull << 42)) {
			snprintf(err, errlen, "%s %s: expected a size like 512M or 2G", a, v);
			return -EINVAL;
		}
		*(a[2] == 'm' ? &o->memory_bytes : &o->tmp_bytes) = sz;
	} else if (!strcmp(a, "--pids") || !strcmp(a, "--max-sandboxes")) {
		if (sbxopt_count(a, v, a[2] == 'p' ? 1000000 : SLOT_MAX,
					    a[2] == 'p' ? &o->pids : &o->max_sandboxes, err, errlen) < 0)
			return -EINVAL;
	} else if (!strcmp(a, "--cpus")) {
		if (sbxopt_cpus(v, &o->cpu_millis, err, errlen) < 0)
			return -EINVAL;
	} else if (!strcmp(a, "--timeout") || !strcmp(a, "--idle-timeout")) {
		if (cfg_parse_duration_ms(v, &ms) < 0 || ms < 1 || ms > 7ll * 24 * 3600 * 1000 ||
		    (a[2] == 't' && ms > 3600000)) {
			snprintf(err, errlen, "%s %s: expected a duration like 500ms, 30s, 5m%s", a, v,
				 a[2] == 't' ? " (at most 1h)" : "");
			return -EINVAL;
		}
		if (a[2] == 't')
			o->timeout_ms = (unsigned)ms;
		else
			o->idle_ms = (uint64_t)ms;
	} else if (!strcmp(a, "--log-level")) {
		int l = log_level_parse(v);
		if (l < 0) {
			snprintf(err, errlen, "--log-level %s: expected debug, info, warn or error", v);
			return -EINVAL;
		}
		log_set_level((enum log_level)l);
	} else {
		snprintf(err, errlen, "unknown option %s", a);
		return -EINVAL;
	}
	return 0;
}

int ssv_opts_parse(int argc, char **argv, struct ssv_opts *o, char *err, size_t errlen)
{
	memset(o, 0, sizeof *o);
	o->idle_ms = SSV_DEFAULT_IDLE_MS;
	o->max_sandboxes = SLOT_DEFAULT_MAX;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--stdio")) {
			o->stdio = true;
			continue;
		}
		if (!strcmp(a, "--no-cgroup")) {
			o->no_cgroup = true;
			continue;
		}
		if (!strcmp(a, "--prestart")) {
			o->prestart = true;
			continue;
		}
		if (i + 1 >= argc || strncmp(a, "--", 2) != 0) {
			snprintf(err, errlen, i + 1 >= argc && !strncmp(a, "--", 2) ? "%s needs a value" : "unexpected argument '%s'",
				 a);
			return -EINVAL;
		}
		if (apply(o, a, argv[++i], err, errlen) < 0)
			return -EINVAL;
	}
	if (!o->stdio) {
		snprintf(err, errlen, "--stdio is required (the only transport of this command)");
		return -EINVAL;
	}
	return 0;
}


/* The config's own wording first (what `postern check` said before the sandbox checked its keys), then the
 * flag's check through the same code as `sandbox serve`, so a route that loads also starts. */
static int check_value(struct ssv_opts *o, const struct route_key *k, const char *v, char *err, size_t errlen)
{
	char e[300];
	uint64_t sz;
	int64_t ms;
	bool on, ok = false;
	int rc;

	if (k->kind == RK_SIZE && cfg_parse_size(v, &sz) < 0)
		snprintf(err, errlen, "%s: '%s' is not a size (e.g. 512M, 2G)", k->key, v);
	else if (k->kind == RK_DISK && strcmp(v, "none") &&
		 (cfg_parse_size(v, &sz) < 0 || sz < (16ull << 20) || sz > (16ull << 40)))
		snprintf(err, errlen, "%s: '%s' is not a size from 16M to 16T (e.g. 10G) or none", k->key, v);
	else if (k->kind == RK_DURATION && cfg_parse_duration_ms(v, &ms) < 0)
		snprintf(err, errlen, "%s: '%s' is not a duration (e.g. 30s, 2m)", k->key, v);
	else if (k->kind == RK_PATH && v[0] != '/')
		snprintf(err, errlen, "%s: must be an absolute directory path", k->key);
	else if (k->kind == RK_BOOL && cfg_parse_bool(v, &on) < 0)
		snprintf(err, errlen, "%s: '%s' is not a boolean (true or false)", k->key, v);
	else
		ok = true;
	if (!ok)
		return -EINVAL;
	if (k->kind == RK_BOOL)
		return 0;
	rc = apply(o, k->flag, v, e, sizeof e); /* v lives in the optmap as long as o */
	if (rc < 0)
		snprintf(err, errlen, "%s: %s", k->key, e);
	return rc;
}

int ssv_opts_check(const optmap *m, const optmap_ent **at, char *err, size_t errlen)
{
	struct ssv_opts o;
	char *argv[] = { "serve", "--stdio", NULL };

	*at = NULL;
	if (ssv_opts_parse(2, argv, &o, err, errlen) < 0) /* the defaults */
		return -EINVAL;
	/* Every key first: a typo is the likeliest error and must not hide behind a value's. */
	for (size_t i = 0; i < m->n; i++)
		if (!route_key(m->v[i].key, strlen(m->v[i].key))) {
			*at = &m->v[i];
			snprintf(err, errlen, "unknown key '%s' in sandbox", m->v[i].key);
			return -EINVAL;
		}
	for (size_t i = 0; i < m->n; i++) {
		const optmap_ent *e = &m->v[i];
		const struct route_key *k = route_key(e->key, strlen(e->key));

		*at = e;
		if (k->kind == RK_LIST && !e->list) {
			snprintf(err, errlen, "%s: expected a list", e->key);
			return -EINVAL;
		}
		if (k->kind != RK_LIST && (e->list || e->map || e->n != 1)) {
			snprintf(err, errlen, "%s: expected a single value, not a list or mapping", e->key);
			return -EINVAL;
		}
		for (size_t j = 0; j < e->n; j++)
			if (check_value(&o, k, e->vals[j], err, errlen) < 0)
				return -EINVAL;
	}
	*at = NULL;
	return 0;
}

int ssv_opts_check_shared(const optmap *m, const optmap_ent **at, char *err, size_t errlen)
{
	const optmap_ent *d = optmap_get(m, "disk"), *r = optmap_get(m, "workspace_root");
	char e[700];

	*at = NULL;
	if (!d || d->n != 1 || !strcmp(d->vals[0], "none") || !r || r->n != 1)
		return 0; /* the default or none: per-file caps, with a warning at start where no more is possible */
	if (ws_quota_check_parent(r->vals[0], e, sizeof e) < 0) {
		*at = d;
		snprintf(err, errlen, "disk: %s", e);
		return -EINVAL;
	}
	return 0;
}
