/* The proxy's YAML keys, in the shape of Anthropic's MCP-tunnel proxy config (listen_addr, tunnel_domain,
 * tls.cert_file/key_file, routes, upstream.allowed_ips, ...). */
#include <errno.h>
#include <libfyaml.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/optmap.h"
#include "proxy/proxy.h"

const char *const px_config_keys[] = { "listen_addr", "log_level", "shutdown_timeout", "tunnel_domain",
				       "tls",         "routes",    "upstream",         NULL };

int px_config_init(px_config *c)
{
	memset(c, 0, sizeof *c);
	route_table_init(&c->routes);
	na_cidrs_init(&c->allowed_ips);
	c->shutdown_timeout_ms = 30000;
	c->log_level = -1;
	c->connect_timeout_ms = 30000;
	c->handshake_timeout_ms = 10000;
	c->head_timeout_ms = 30000;
	c->idle_timeout_ms = 120000;
	c->max_head_bytes = 64 * 1024;
	c->reload_interval_ms = 2000;
	return na_cidrs_add_rfc1918(&c->allowed_ips);
}

void px_config_free(px_config *c)
{
	if (!c)
		return;
	free(c->listen_addr);
	free(c->tunnel_domain);
	free(c->cert_file);
	free(c->key_file);
	free(c->upstream_ca_file);
	route_table_free(&c->routes);
	na_cidrs_free(&c->allowed_ips);
	free(c);
}

/* `name: {sandbox: {...}}` (options the sandbox checks, carried unparsed) or
 * `name: {stdio: [cmd, args...], max_sessions: N, idle_timeout: D, reclaim_idle: D}`. */
static int load_mcp_route(cfg_doc *d, cfg_node *routes, const char *name, cfg_node *val, route *r)
{
	static const char *const top[] = { "stdio", "sandbox", "max_sessions", "idle_timeout", "reclaim_idle", NULL };
	cfg_node *sb = NULL, *st = cfg_get(val, "stdio");
	char **list = NULL, err[384];
	size_t n = 0;
	optmap opts = { 0 };
	const optmap_ent *ws, *at = NULL;
	optmap_check_fn check;
	int64_t v, ms;
	int rc;

	if (!cfg_key_line(val, "stdio") && !cfg_key_line(val, "sandbox"))
		return cfg_fail(d, routes, name, "invalid upstream (must be scheme://host:port); a mapping must hold "
				"sandbox: {...} or stdio: [cmd, ...]");
	if ((rc = cfg_check_keys(d, val, name, top)) < 0)
		return rc;
	if ((rc = cfg_get_int(d, val, "max_sessions", 1, 4096, &v)) < 0)
		return rc;
	if (rc == 0)
		r->max_sessions = (unsigned)v;
	if ((rc = cfg_get_duration_ms(d, val, "idle_timeout", &ms)) < 0)
		return rc;
	if (rc == 0) {
		if (ms < 1000 || ms > 7 * 86400000LL)
			return cfg_fail(d, val, "idle_timeout", "must be between 1s and 168h");
		r->idle_timeout_ms = (uint32_t)ms;
	}
	if ((rc = cfg_get_duration_ms(d, val, "reclaim_idle", &ms)) < 0)
		return rc;
	if (rc == 0) {
		if (ms < 1000 || ms > 7 * 86400000LL)
			return cfg_fail(d, val, "reclaim_idle", "must be between 1s and 168h");
		r->reclaim_idle_ms = (uint32_t)ms;
	}
	if (st) {
		if (cfg_get(val, "sandbox"))
			return cfg_fail(d, routes, name, "a route is either stdio or sandbox, not both");
		if ((rc = cfg_get_strlist(d, val, "stdio", &list, &n)) < 0)
			return rc;
		if (n == 0 || list[0][0] != '/') {
			cfg_strv_free(list);
			return cfg_fail(d, val, "stdio", "must be a list starting with the absolute path of the command");
		}
		r->kind = ROUTE_STDIO;
		r->argv = list;
		r->value = strdup("stdio:");
		return r->value ? 0 : -ENOMEM;
	}
	sb = cfg_get(val, "sandbox");
	if (sb && !cfg_is_map(sb)) {
		const char *sv = cfg_scalar(sb);
		if (!sv || *sv)
			return cfg_fail(d, val, "sandbox", "expects a mapping of options (image, workspace_root, memory, ...)");
		sb = NULL; /* `sandbox:` with nothing after it: all defaults */
	}
	r->kind = ROUTE_SANDBOX;
	if (!(r->value = strdup("sandbox:")))
		return -ENOMEM;
	if (!sb)
		return 0;
	if ((rc = optmap_from_cfg(d, sb, "sandbox", &opts)) < 0)
		return rc;
	/* workspace_root is the bridge's own key (a directory per session under it); the rest is the
	 * sandbox's, checked by the sandbox alone and passed to `sandbox serve` as --option KEY=VALUE. */
	if ((ws = optmap_get(&opts, "workspace_root"))) {
		if (ws->list || ws->map || ws->n != 1)
			rc = cfg_fail(d, sb, "workspace_root", "expected a single value, not a list or mapping");
		else if (ws->vals[0][0] != '/')
			rc = cfg_fail(d, sb, "workspace_root", "must be an absolute directory path");
		else if (!(r->workspace_root = strdup(ws->vals[0])))
			rc = -ENOMEM;
		if (rc < 0)
			goto out;
		optmap_del(&opts, "workspace_root");
	}
	if ((check = optmap_checker("sandbox")) && check(&opts, &at, err, sizeof err) < 0) {
		rc = cfg_fail_line(d, at ? at->line : cfg_key_line(val, "sandbox"), "%s", err);
		goto out;
	}
	if (optmap_count_values(&opts) > 31) { /* two arguments each, within the bridge's command line */
		rc = cfg_fail(d, sb, NULL, "too many sandbox options");
		goto out;
	}
	if (opts.n && !(r->argv = optmap_to_argv(&opts, "--option")))
		rc = -ENOMEM;
out:
	optmap_free(&opts);
	return rc;
}

static int load_routes(cfg_doc *d, cfg_node *root, px_config *c)
{
	cfg_node *routes = cfg_get(root, "routes"), *val;
	void *it = NULL;
	const char *name;
	char why[160];
	int rc;

	if (!routes) {
		if (cfg_key_line(root, "routes"))
			return cfg_fail(d, root, "routes", "is empty: add at least one route (name: scheme://host:port)");
		return cfg_fail(d, root, NULL, "routes: missing: add at least one route (name: scheme://host:port)");
	}
	if (fy_node_get_type(routes) == FYNT_SEQUENCE)
		return cfg_fail(d, root, "routes",
				"must be a mapping of route name to scheme://host:port (for example 'docs: "
				"http://docs-mcp:8080'), not a list");
	if (!cfg_is_map(routes))
		return cfg_fail(d, root, "routes", "must be a mapping of route name to scheme://host:port");
	while (cfg_map_next(routes, &it, &name, &val)) {
		route r;
		const char *s = cfg_scalar(val);

		memset(&r, 0, sizeof r);
		if (!route_name_valid(name))
			return cfg_fail(d, routes, name,
					"invalid route name (letters, digits, '-', '.', '_'; it is the host or the label "
					"left of tunnel_domain)");
		if (!s && cfg_is_map(val)) {
			rc = load_mcp_route(d, routes, name, val, &r);
		} else if (!s) {
			return cfg_fail(d, routes, name, "invalid upstream (must be scheme://host:port)");
		} else {
			rc = route_parse_value(s, &r, why, sizeof why);
			if (rc < 0 && rc != -ENOMEM)
				return cfg_fail(d, routes, name, "invalid upstream (must be scheme://host:port): '%s': %s", s,
						why);
		}
		if (rc == 0)
			rc = route_table_add(&c->routes, name, &r);
		route_free_fields(&r);
		if (rc == -EEXIST)
			return cfg_fail(d, routes, name, "duplicate route name (names are case-insensitive)");
		if (rc < 0)
			return rc;
	}
	if (c->routes.n == 0)
		return cfg_fail(d, root, "routes", "is empty: add at least one route (name: scheme://host:port)");
	return 0;
}

static int load_allowed_ips(cfg_doc *d, cfg_node *up, px_config *c)
{
	cfg_node *seq = cfg_get(up, "allowed_ips"), *item;
	void *it = NULL;
	size_t i = 0;
	int rc;

	if (!seq)
		return cfg_key_line(up, "allowed_ips") ? cfg_fail(d, up, "allowed_ips", "is empty: list CIDRs or remove the key") : 0;
	if (fy_node_get_type(seq) != FYNT_SEQUENCE)
		return cfg_fail(d, up, "allowed_ips", "must be a list of CIDRs, e.g. [10.0.0.0/8, 192.168.0.0/16]");
	/* Set: it replaces the RFC 1918 default. */
	na_cidrs_free(&c->allowed_ips);
	while ((item = fy_node_sequence_iterate(seq, &it))) {
		const char *s = cfg_scalar(item);
		i++;
		if (!s)
			return cfg_fail(d, up, "allowed_ips", "item %zu is not a single value", i);
		rc = na_cidrs_add(&c->allowed_ips, s);
		if (rc == -EINVAL)
			return cfg_fail(d, item, NULL, "upstream.allowed_ips: '%s' is not a CIDR (e.g. 10.0.0.0/8) or IP address", s);
		if (rc == -E2BIG)
			return cfg_fail(d, item, NULL, "upstream.allowed_ips: more than %d entries", NA_CIDRS_MAX);
		if (rc < 0)
			return rc;
	}
	if (i == 0)
		return cfg_fail(d, up, "allowed_ips", "is empty: list CIDRs or remove the key");
	return 0;
}

static int load_upstream(cfg_doc *d, cfg_node *root, px_config *c)
{
	static const char *const up_keys[] = { "allowed_ips", "disable_ip_validation", "tls", NULL };
	static const char *const tls_keys[] = { "ca_file", "include_system_cas", NULL };
	cfg_node *up = NULL, *tls = NULL;
	int rc;

	rc = cfg_get_map(d, root, "upstream", &up);
	if (rc)
		return rc < 0 ? rc : 0;
	if ((rc = cfg_check_keys(d, up, "upstream", up_keys)) < 0)
		return rc;
	if ((rc = load_allowed_ips(d, up, c)) < 0)
		return rc;
	if ((rc = cfg_get_bool(d, up, "disable_ip_validation", &c->disable_ip_validation)) < 0)
		return rc;
	if (c->disable_ip_validation && cfg_get(up, "allowed_ips"))
		return cfg_fail(d, up, "disable_ip_validation",
				"cannot be used together with allowed_ips (choose one)");
	rc = cfg_get_map(d, up, "tls", &tls);
	if (rc < 0)
		return rc;
	if (rc == 0) {
		if ((rc = cfg_check_keys(d, tls, "upstream.tls", tls_keys)) < 0)
			return rc;
		if ((rc = cfg_get_str(d, tls, "ca_file", &c->upstream_ca_file)) < 0)
			return rc;
		if ((rc = cfg_get_bool(d, tls, "include_system_cas", &c->include_system_cas)) < 0)
			return rc;
	}
	return 0;
}

int px_config_load(cfg_doc *d, cfg_node *root, px_config **out)
{
	static const char *const tls_keys[] = { "cert_file", "key_file", NULL };
	px_config *c = calloc(1, sizeof *c);
	cfg_node *tls = NULL;
	char *lvl = NULL;
	int rc;

	if (!c)
		return -ENOMEM;
	if ((rc = px_config_init(c)) < 0)
		goto out;
	if (!cfg_is_map(root)) {
		rc = cfg_fail(d, root, NULL, "the config must be a mapping of keys");
		goto out;
	}
	if ((rc = cfg_get_str(d, root, "listen_addr", &c->listen_addr)) < 0)
		goto out;
	if (c->listen_addr) {
		struct sockaddr_storage ss;
		if (na_parse_sockaddr(c->listen_addr, true, &ss) < 0) {
			rc = cfg_fail(d, root, "listen_addr", "'%s' is not an address (IP:PORT, :PORT or [IPv6]:PORT)",
				      c->listen_addr);
			goto out;
		}
	}
	if ((rc = cfg_get_str(d, root, "log_level", &lvl)) < 0)
		goto out;
	if (lvl && (c->log_level = log_level_parse(lvl)) < 0) {
		rc = cfg_fail(d, root, "log_level", "'%s' is not one of debug, info, warn, error", lvl);
		goto out;
	}
	if ((rc = cfg_get_duration_ms(d, root, "shutdown_timeout", &c->shutdown_timeout_ms)) < 0)
		goto out;
	if ((rc = cfg_get_str(d, root, "tunnel_domain", &c->tunnel_domain)) < 0)
		goto out;
	if (c->tunnel_domain) {
		char norm[ROUTE_HOST_MAX + 1];
		if (route_host_normalize(c->tunnel_domain, strlen(c->tunnel_domain), norm, sizeof norm) < 0 ||
		    strchr(c->tunnel_domain, ':')) {
			rc = cfg_fail(d, root, "tunnel_domain", "'%s' is not a domain name", c->tunnel_domain);
			goto out;
		}
		strcpy(c->tunnel_domain, norm); /* norm is never longer */
	}
	rc = cfg_get_map(d, root, "tls", &tls);
	if (rc < 0)
		goto out;
	if (rc == 1) {
		rc = cfg_fail(d, root, NULL, "tls: missing: set tls.cert_file and tls.key_file (the customer certificate)");
		goto out;
	}
	if ((rc = cfg_check_keys(d, tls, "tls", tls_keys)) < 0)
		goto out;
	if ((rc = cfg_get_str(d, tls, "cert_file", &c->cert_file)) < 0 ||
	    (rc = cfg_get_str(d, tls, "key_file", &c->key_file)) < 0)
		goto out;
	if (!c->cert_file || !c->key_file) {
		rc = cfg_fail(d, root, "tls", "needs both cert_file and key_file");
		goto out;
	}
	if ((rc = load_routes(d, root, c)) < 0)
		goto out;
	if ((rc = load_upstream(d, root, c)) < 0)
		goto out;
	rc = 0;
out:
	free(lvl);
	if (rc < 0) {
		px_config_free(c);
		c = NULL;
	}
	*out = c;
	return rc < 0 ? rc : 0;
}
