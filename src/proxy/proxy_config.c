/* The proxy's YAML keys, in the shape of Anthropic's MCP-tunnel proxy config (listen_addr, tunnel_domain,
 * tls.cert_file/key_file, routes, upstream.allowed_ips, ...). */
#include <errno.h>
#include <libfyaml.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/optmap.h"
#include "core/tlsio.h"
#include "proxy/proxy_int.h"
#include "guard/jrpc.h"
#include "proxy/auditlog.h"
#include "guard/auth.h"

const char *const px_config_keys[] = { "listen_addr", "log_level", "log_format", "shutdown_timeout", "tunnel_domain",
				       "tls",         "routes",    "upstream",         "audit",
				       "pins_file",   "mcp_limits", NULL };

int px_config_init(px_config *c)
{
	memset(c, 0, sizeof *c);
	route_table_init(&c->routes);
	na_cidrs_init(&c->allowed_ips);
	c->shutdown_timeout_ms = 30000;
	c->log_level = -1;
	c->log_format = -1;
	c->connect_timeout_ms = 30000;
	c->handshake_timeout_ms = 10000;
	c->head_timeout_ms = 30000;
	c->idle_timeout_ms = 120000;
	c->max_head_bytes = 64 * 1024;
	c->reload_interval_ms = 2000;
	c->max_body = JRPC_MAX_BODY_DEFAULT;
	c->max_batch = JRPC_MAX_BATCH_DEFAULT;
	c->max_depth = JRPC_MAX_DEPTH_DEFAULT;
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
	pxi_config_guard_free(c);
	for (size_t i = 0; c->route_src && i < c->routes.n; i++)
		free(c->route_src[i]);
	free(c->route_src);
	free(c->audit_src);
	route_table_free(&c->routes);
	na_cidrs_free(&c->allowed_ips);
	free(c);
}

/* `name: {sandbox: {...}}` (options the sandbox checks, carried unparsed) or
 * `name: {stdio: [cmd, args...], max_sessions: N, idle_timeout: D, reclaim_idle: D}`. */
static int load_mcp_route(cfg_doc *d, cfg_node *routes, const char *name, cfg_node *val, route *r)
{
	static const char *const top[] = { "stdio", "sandbox", "url", "max_sessions", "idle_timeout", "reclaim_idle",
					   "policy", "auth", "audit", NULL };
	cfg_node *sb = NULL, *st = cfg_get(val, "stdio");
	char **list = NULL, err[384], why[160];
	size_t n = 0;
	optmap opts = { 0 };
	const optmap_ent *ws, *at = NULL;
	optmap_check_fn check;
	int64_t v, ms;
	int rc, forms = !!cfg_key_line(val, "stdio") + !!cfg_key_line(val, "sandbox") + !!cfg_key_line(val, "url");

	if (forms == 0)
		return cfg_fail(d, routes, name, "invalid upstream (must be scheme://host:port); a mapping must hold "
				"url: scheme://host:port, sandbox: {...} or stdio: [cmd, ...]");
	if (forms > 1)
		return cfg_fail(d, routes, name, "a route is one of url, stdio or sandbox, not several");
	if ((rc = cfg_check_keys(d, val, name, top)) < 0)
		return rc;
	if (cfg_key_line(val, "url")) {
		const char *s = cfg_scalar(cfg_get(val, "url"));
		if (!s)
			return cfg_fail(d, val, "url", "must be scheme://host:port");
		if (cfg_key_line(val, "max_sessions") || cfg_key_line(val, "idle_timeout") || cfg_key_line(val, "reclaim_idle"))
			return cfg_fail(d, routes, name, "max_sessions, idle_timeout and reclaim_idle are for stdio and sandbox routes");
		rc = route_parse_value(s, r, why, sizeof why);
		if (rc < 0 && rc != -ENOMEM)
			return cfg_fail(d, val, "url", "invalid upstream (must be scheme://host:port): '%s': %s", s, why);
		if (rc == 0 && route_is_mcp(r))
			return cfg_fail(d, val, "url", "must be scheme://host:port; a stdio or sandbox route uses its own key");
		return rc;
	}
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
		if (rc == 0)
			rc = pxi_config_route_guard(d, cfg_is_map(val) ? val : NULL, c, c->routes.n - 1);
		if (rc == -EEXIST)
			return cfg_fail(d, routes, name, "duplicate route name (names are case-insensitive)");
		if (rc < 0)
			return rc;
	}
	if (c->routes.n == 0)
		return cfg_fail(d, root, "routes", "is empty: add at least one route (name: scheme://host:port)");
	/* What a reload compares: each route's value as one line (keys come in table order, one route each). */
	if (!(c->route_src = calloc(c->routes.n, sizeof *c->route_src)))
		return -ENOMEM;
	it = NULL;
	for (size_t i = 0; i < c->routes.n && cfg_map_next(routes, &it, &name, &val); i++)
		if (!(c->route_src[i] = cfg_node_text(val)))
			return -ENOMEM;
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
	if ((rc = log_config_read(d, root, &c->log_level, &c->log_format)) < 0)
		goto out;
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
	if ((rc = pxi_config_guard_load(d, root, c)) < 0)
		goto out;
	rc = 0;
out:
	if (rc < 0) {
		px_config_free(c);
		c = NULL;
	}
	*out = c;
	return rc < 0 ? rc : 0;
}

/* ---- reload plan ------------------------------------------------------------------------------------- */

static bool src_same(const char *a, const char *b) { return a && b && !strcmp(a, b); }

void px_reload_plan(const px_config *old, const px_config *nw, px_route_carry *out, size_t *removed)
{
	size_t kept = 0;
	for (size_t i = 0; i < nw->routes.n; i++) {
		const route *r = &nw->routes.v[i], *o;
		const struct auth *na, *oa;
		px_route_carry *k = &out[i];

		memset(k, 0, sizeof *k);
		k->old = -1;
		for (size_t j = 0; j < old->routes.n && k->old < 0; j++)
			if (!strcmp(old->routes.v[j].name, r->name))
				k->old = (long)j;
		if (k->old < 0)
			continue;
		o = &old->routes.v[k->old];
		k->same = old->route_src && nw->route_src && src_same(old->route_src[k->old], nw->route_src[i]);
		/* A policy or auth change alone keeps the sessions: the guard applies the new rules per message. */
		k->keep_bridge = route_same_process(o, r);
		na = (size_t)i < nw->nguards ? nw->guards[i].auth : NULL;
		oa = (size_t)k->old < old->nguards ? old->guards[k->old].auth : NULL;
		/* Only a fetched key set is worth carrying: other auth (tokens files, a jwks file) is read afresh. */
		k->keep_auth = k->same && na && oa && auth_jwks_url(na) && auth_jwks_url(oa);
		kept += k->same;
	}
	if (removed)
		*removed = old->routes.n - kept;
}

/* ---- preflight: what the daemon will need, checked before it starts -------------------------------------- */

int px_cert_check_domain(const px_config *c, SSL_CTX *ctx, char *err, size_t errlen)
{
	X509 *x = SSL_CTX_get0_certificate(ctx);
	char host[ROUTE_NAME_MAX + ROUTE_HOST_MAX + 2];

	if (!c->tunnel_domain || !x)
		return 0;
	/* Each route named by a label is reached as <label>.<tunnel_domain>: the certificate must cover it, or
	 * every client of that route fails its TLS check. Names with a dot are checked by px_config_preflight. */
	for (size_t i = 0; i < c->routes.n; i++) {
		const char *name = c->routes.v[i].name;
		if (strchr(name, '.'))
			continue;
		snprintf(host, sizeof host, "%s.%s", name, c->tunnel_domain);
		if (X509_check_host(x, host, 0, 0, NULL) != 1) {
			snprintf(err, errlen, "%s: the certificate does not cover %s (route '%s' under tunnel_domain %s): "
				 "issue it for *.%s (postern certs init --domain %s)", c->cert_file, host, name,
				 c->tunnel_domain, c->tunnel_domain, c->tunnel_domain);
			return -EINVAL;
		}
	}
	return 0;
}

/* A route's node for error lines: its mapping when it has one, else the routes mapping at its key. */
static int route_fail(cfg_doc *d, cfg_node *routes, const char *name, const char *key, const char *msg)
{
	cfg_node *n = cfg_get(routes, name);
	if (cfg_is_map(n))
		return cfg_fail(d, n, key, "route '%s': %s", name, msg);
	return cfg_fail(d, routes, name, "%s", msg);
}

/* Where execvp (and uv_spawn) would find cmd: a name with a slash as it is, else the first executable
 * regular file of that name on PATH. 0 with the path in found, or -ENOENT / -EACCES. */
static int find_command(const char *cmd, char *found, size_t len)
{
	const char *path = getenv("PATH"), *p, *e;
	struct stat st;
	int rc = -ENOENT;

	if (strchr(cmd, '/')) {
		snprintf(found, len, "%s", cmd);
		if (stat(cmd, &st) != 0)
			return -errno;
		return S_ISREG(st.st_mode) && access(cmd, X_OK) == 0 ? 0 : -EACCES;
	}
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin"; /* glibc's execvp default, less the current directory */
	for (p = path;; p = e + 1) {
		size_t n;
		e = strchr(p, ':');
		n = e ? (size_t)(e - p) : strlen(p);
		snprintf(found, len, "%.*s/%s", (int)n, n ? p : ".", cmd);
		if (stat(found, &st) == 0 && S_ISREG(st.st_mode)) {
			if (access(found, X_OK) == 0)
				return 0;
			rc = -EACCES;
		}
		if (!e)
			break;
	}
	return rc;
}

static int check_readable(cfg_doc *d, cfg_node *map, const char *key, const char *file)
{
	FILE *f = fopen(file, "r");
	if (!f)
		return cfg_fail(d, map, key, "%s: %s", file, strerror(errno));
	fclose(f);
	return 0;
}

static int preflight_tls(cfg_doc *d, cfg_node *root, const px_config *c)
{
	cfg_node *tls = cfg_get(root, "tls");
	char err[512], host[ROUTE_NAME_MAX + ROUTE_HOST_MAX + 2];
	SSL_CTX *ctx;
	X509 *x;
	int rc;

	if (!c->cert_file)
		return 0;
	if ((rc = check_readable(d, tls, "cert_file", c->cert_file)) < 0 ||
	    (rc = check_readable(d, tls, "key_file", c->key_file)) < 0)
		return rc;
	if (!(ctx = tio_server_ctx(c->cert_file, c->key_file, false, err, sizeof err)))
		return cfg_fail(d, root, "tls", "%s", err);
	if ((rc = px_cert_check_domain(c, ctx, err, sizeof err)) < 0) {
		rc = cfg_fail(d, tls, "cert_file", "%s", err);
		goto out;
	}
	x = SSL_CTX_get0_certificate(ctx);
	if (x && X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
		cfg_warn(d, tls, "cert_file", "%s: the certificate has expired: clients will refuse it", c->cert_file);
	/* A route named by a full host name is reached by that name (or, with tunnel_domain, under it). One the
	 * certificate covers neither way is reachable only by clients that skip verification: say so. */
	for (size_t i = 0; x && i < c->routes.n; i++) {
		const char *name = c->routes.v[i].name;
		bool dotted = strchr(name, '.') != NULL;
		if (!dotted && c->tunnel_domain)
			continue; /* px_cert_check_domain did it */
		if (X509_check_host(x, name, 0, 0, NULL) == 1)
			continue;
		if (c->tunnel_domain) {
			snprintf(host, sizeof host, "%s.%s", name, c->tunnel_domain);
			if (X509_check_host(x, host, 0, 0, NULL) == 1)
				continue;
		}
		if (c->tunnel_domain)
			cfg_warn(d, cfg_get(root, "routes"), name,
				 "the certificate %s covers neither %s nor %s: clients that verify it cannot reach this "
				 "route%s", c->cert_file, name, host,
				 dotted ? " (a wildcard covers one label: name routes under tunnel_domain with one label)" : "");
		else
			cfg_warn(d, cfg_get(root, "routes"), name,
				 "the certificate %s does not cover %s: clients that verify it cannot reach this route",
				 c->cert_file, name);
	}
	rc = 0;
out:
	SSL_CTX_free(ctx);
	return rc;
}

static int preflight_routes(cfg_doc *d, cfg_node *root, const px_config *c)
{
	cfg_node *routes = cfg_get(root, "routes");
	char found[4096], msg[4400];
	struct stat st;

	for (size_t i = 0; i < c->routes.n; i++) {
		const route *r = &c->routes.v[i];
		if (r->kind == ROUTE_STDIO && r->argv && r->argv[0]) {
			int rc = find_command(r->argv[0], found, sizeof found);
			if (rc == -EACCES)
				snprintf(msg, sizeof msg, "command '%s' (%s) is not an executable file", r->argv[0], found);
			else if (rc < 0 && strchr(r->argv[0], '/'))
				snprintf(msg, sizeof msg, "command '%s': %s", r->argv[0], strerror(-rc));
			else if (rc < 0)
				snprintf(msg, sizeof msg, "command '%s' not found on PATH (%s): install it or give its full path",
					 r->argv[0], getenv("PATH") ? getenv("PATH") : "unset");
			if (rc < 0)
				return route_fail(d, routes, r->name, "stdio", msg);
		}
		/* An upstream given as an address the allowlist refuses would answer every request 502: the usual
		 * case is an MCP server on the gateway's own host (127.0.0.1) with the default RFC 1918 list. */
		if ((r->kind == ROUTE_HTTP || r->kind == ROUTE_HTTPS) && r->host && !c->disable_ip_validation) {
			const char *ip = !strcmp(r->host, "localhost") ? "127.0.0.1" : r->host;
			struct in_addr a4;
			struct in6_addr a6;
			bool literal = inet_pton(AF_INET, ip, &a4) == 1 || inet_pton(AF_INET6, ip, &a6) == 1;
			if (literal && !na_cidrs_match_str(&c->allowed_ips, ip))
				cfg_warn(d, routes, r->name,
					 "upstream %s is outside upstream.allowed_ips: every request will get 502; add it "
					 "(upstream: {allowed_ips: [%s/32]}), which replaces the default RFC 1918 list",
					 r->host, ip);
		}
		if (r->kind == ROUTE_SANDBOX && r->workspace_root) {
			cfg_node *n = cfg_get(routes, r->name);
			cfg_node *sb = cfg_is_map(n) ? cfg_get(n, "sandbox") : NULL;
			cfg_node *at = sb ? sb : routes;
			const char *key = sb ? "workspace_root" : r->name, *ws = r->workspace_root;
			int e = stat(ws, &st) == 0 ? 0 : errno;
			if (e == ENOENT)
				cfg_warn(d, at, key, "%s does not exist: the gateway creates it (mode 0700) when it starts", ws);
			else if (e)
				return cfg_fail(d, at, key, "%s: %s", ws, strerror(e));
			else if (!S_ISDIR(st.st_mode))
				return cfg_fail(d, at, key, "%s: not a directory", ws);
			else if (access(ws, W_OK | X_OK) != 0)
				return cfg_fail(d, at, key, "%s: not writable: %s", ws, strerror(errno));
		}
	}
	return 0;
}

int px_config_preflight(cfg_doc *d, cfg_node *root, const px_config *c)
{
	int rc;
	if ((rc = preflight_tls(d, root, c)) < 0)
		return rc;
	if ((rc = preflight_routes(d, root, c)) < 0)
		return rc;
	if (c->audit && (rc = alog_config_preflight(c->audit, d)) < 0)
		return rc;
	if (c->upstream_ca_file && (rc = check_readable(d, cfg_get(cfg_get(root, "upstream"), "tls") ?
									cfg_get(cfg_get(root, "upstream"), "tls") : root,
							 "ca_file", c->upstream_ca_file)) < 0)
		return rc;
	return 0;
}
