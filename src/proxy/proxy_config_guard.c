/* The guard's keys of the proxy config: a route's policy, auth and audit (any mapping form of a route), and
 * the top-level pins_file, mcp_limits and audit (whose sinks the owner builds: px_set_audit). */
#include "proxy/proxy_int.h"

#include "guard/auth.h"
#include "guard/jrpc.h"
#include "guard/policy.h"
#include "proxy/auditlog.h"

void pxi_config_guard_free(px_config *c)
{
	if (c->guards) {
		for (size_t i = 0; i < c->nguards; i++) {
			pol_free(c->guards[i].policy);
			auth_free(c->guards[i].auth);
		}
		free(c->guards);
	}
	c->guards = NULL;
	c->nguards = 0;
	alog_config_free(c->audit);
	c->audit = NULL;
	free(c->pins_file);
	c->pins_file = NULL;
}

int pxi_config_route_guard(cfg_doc *d, cfg_node *val, px_config *c, size_t i)
{
	px_route_guard *g, *nv;
	cfg_node *pn;
	bool b;
	int rc;

	/* Grown with the route table, one entry per route, so an index into routes.v is one here. */
	if (!(nv = realloc(c->guards, (i + 1) * sizeof *nv)))
		return -ENOMEM;
	c->guards = nv;
	g = &c->guards[i];
	memset(g, 0, sizeof *g);
	c->nguards = i + 1;
	g->audit = true;
	if (!val)
		return 0;
	if ((rc = cfg_get_bool(d, val, "audit", &b)) < 0)
		return rc;
	if (rc == 0)
		g->audit = b;
	if ((pn = cfg_get(val, "auth")) || cfg_key_line(val, "auth")) {
		if (!pn)
			return cfg_fail(d, val, "auth", "is empty: passthrough, {bearer: {tokens_file: F}} or {jwt: {...}}");
		if ((rc = auth_from_cfg(d, pn, &g->auth)) < 0)
			return rc;
		if (auth_mode_of(g->auth) == AUTH_PASSTHROUGH) {
			auth_free(g->auth); /* passthrough is no auth at all: the route may stay unguarded */
			g->auth = NULL;
		}
	}
	if ((pn = cfg_get(val, "policy"))) {
		if (!cfg_is_map(pn))
			return cfg_fail(d, val, "policy", "must be a mapping: {default: allow|deny|approve, rules: [...]}");
		if ((rc = pol_from_cfg(d, pn, &g->policy)) < 0)
			return rc;
	} else if (cfg_key_line(val, "policy")) {
		return cfg_fail(d, val, "policy", "is empty: give default and rules, or remove the key");
	}
	return 0;
}

int pxi_config_guard_load(cfg_doc *d, cfg_node *root, px_config *c)
{
	static const char *const lim_keys[] = { "max_body", "max_batch", "max_depth", NULL };
	cfg_node *lim;
	uint64_t sz;
	int64_t v;
	int rc;

	c->max_body = JRPC_MAX_BODY_DEFAULT;
	c->max_batch = JRPC_MAX_BATCH_DEFAULT;
	c->max_depth = JRPC_MAX_DEPTH_DEFAULT;
	c->audit_configured = cfg_key_line(root, "audit") != 0;
	if (c->audit_configured && !cfg_is_map(cfg_get(root, "audit")))
		return cfg_fail(d, root, "audit", "must be a mapping with at least one sink: {file: PATH}, stdout: true or "
				"syslog: tcp://HOST:PORT");
	if ((rc = alog_config_from_cfg(d, cfg_get(root, "audit"), &c->audit)) < 0)
		return rc;
	if (c->audit_configured && !(c->audit_src = cfg_key_text(root, "audit")))
		return -ENOMEM;
	if ((rc = cfg_get_str(d, root, "pins_file", &c->pins_file)) < 0)
		return rc;
	if (c->pins_file && c->pins_file[0] != '/')
		return cfg_fail(d, root, "pins_file", "must be an absolute path");
	if ((rc = cfg_get_map(d, root, "mcp_limits", &lim)) < 0)
		return rc;
	if (rc == 1)
		return 0;
	if ((rc = cfg_check_keys(d, lim, "mcp_limits", lim_keys)) < 0)
		return rc;
	if ((rc = cfg_get_size(d, lim, "max_body", &sz)) < 0)
		return rc;
	if (rc == 0) {
		if (sz < 1024 || sz > (256u << 20))
			return cfg_fail(d, lim, "max_body", "must be between 1KiB and 256MiB");
		c->max_body = (size_t)sz;
	}
	if ((rc = cfg_get_int(d, lim, "max_batch", 1, 10000, &v)) < 0)
		return rc;
	if (rc == 0)
		c->max_batch = (unsigned)v;
	if ((rc = cfg_get_int(d, lim, "max_depth", 4, JRPC_MAX_DEPTH_LIMIT, &v)) < 0)
		return rc;
	if (rc == 0)
		c->max_depth = (unsigned)v;
	return 0;
}
