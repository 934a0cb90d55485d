/* postern boundary: reads a gateway config into the boundary model (boundary_int.h) and derives the findings;
 * the command. The output is boundary_out.c. */
#include "gateway/boundary.h"

#include <errno.h>
#include <libfyaml.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"
#include "core/arr.h"
#include "core/cfg.h"
#include "core/err.h"
#include "gateway/boundary_int.h"
#include "guard/policy.h"

/* ------------------------------------------------------------------ findings */

static int finding(bnd_model *m, bnd_severity sev, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int finding(bnd_model *m, bnd_severity sev, const char *key, const char *fmt, ...)
{
	va_list ap;
	char buf[1024];
	bndi_finding *f;
	if (ARR_RESERVE(m->findings, m->n_findings, m->cap_findings, 8) < 0)
		return -ENOMEM;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	f = &m->findings[m->n_findings];
	f->sev = sev;
	f->key = strdup(key);
	f->text = strdup(buf);
	if (!f->key || !f->text) {
		free(f->key);
		free(f->text);
		return -ENOMEM;
	}
	m->n_findings++;
	return 0;
}

size_t bnd_finding_count(const bnd_model *m)
{
	return m->n_findings;
}

int bnd_finding(const bnd_model *m, size_t i, bnd_severity *sev, const char **key, const char **text)
{
	if (i >= m->n_findings)
		return -ENOENT;
	*sev = m->findings[i].sev;
	*key = m->findings[i].key;
	*text = m->findings[i].text;
	return 0;
}

const char *bndi_syslog_scheme(const char *url)
{
	static const char *const schemes[] = { "tcp", "udp", "tls" };
	for (size_t i = 0; url && i < 3; i++) {
		size_t n = strlen(schemes[i]);
		if (!strncmp(url, schemes[i], n) && !strncmp(url + n, "://", 3))
			return schemes[i];
	}
	return NULL;
}

/* A secret file the gateway reads: one the group or others may read is a finding. A file that is not here
 * (the review may run on another host) is not. */
static int check_secret_file(bnd_model *m, const char *key, const char *path, const char *what)
{
	struct stat st;
	if (!path || stat(path, &st) < 0 || !(st.st_mode & 077))
		return 0;
	return finding(m, (st.st_mode & 007) ? BND_HIGH : BND_MEDIUM, key, "%s %s is readable by %s (mode %04o): chmod 600",
		       what, path, (st.st_mode & 007) ? "all users" : "its group", (unsigned)(st.st_mode & 07777));
}

static bool is_loopback_addr(const char *a)
{
	return !strncmp(a, "127.", 4) || !strncmp(a, "[::1]", 5) || !strncmp(a, "localhost:", 10);
}

static int derive_findings(bnd_model *m)
{
	char key[256];
	int rc = 0;
	for (size_t i = 0; i < m->n_routes && rc == 0; i++) {
		bndi_route *r = &m->routes[i];
		bool pass = r->auth == BNDI_AUTH_DEFAULT || r->auth == BNDI_AUTH_PASSTHROUGH;
		snprintf(key, sizeof key, "routes.%s", r->name);
		if (pass && !r->has_policy)
			rc = r->kind == BNDI_HTTP
				     ? finding(m, BND_MEDIUM, key, "auth passthrough and no policy: every client that reaches the "
								   "route may call every tool; only the upstream's own auth stands "
								   "in the way (add auth: or policy:)")
				     : finding(m, BND_HIGH, key, "auth passthrough and no policy on a %s route: it has no auth "
								 "of its own, so every client that reaches the route may call "
								 "every tool (add auth: bearer or jwt, and policy:)",
					       r->kind == BNDI_STDIO ? "stdio" : "sandbox");
		if (rc == 0 && r->kind == BNDI_HTTP && !strncmp(r->target, "http://", 7))
			rc = finding(m, BND_LOW, key, "the upstream is plain http: the network between the gateway and %s "
						      "carries this route's plaintext", r->target + 7);
		if (rc == 0 && r->auth == BNDI_AUTH_JWT && r->jwks && !strncmp(r->jwks, "http://", 7))
			rc = finding(m, BND_HIGH, key, "jwks_url %s is plain http: whoever can change it on the way can mint "
						       "accepted tokens", r->jwks);
		if (rc == 0 && r->auth == BNDI_AUTH_BEARER)
			rc = check_secret_file(m, key, r->tokens_file, "the tokens file");
		for (size_t j = 0; rc == 0 && j < r->n_allow; j++)
			if (!strcmp(r->allow_domains[j], "*"))
				rc = finding(m, BND_MEDIUM, key, "the sandbox's egress allowlist is \"*\": sandboxed commands "
								 "reach any host (exfiltration path)");
	}
	if (rc == 0 && m->disable_ip_validation)
		rc = finding(m, BND_HIGH, "upstream.disable_ip_validation",
			     "upstream address checks are off: a route whose host name resolves to loopback, link-local or "
			     "cloud metadata addresses is followed there");
	if (rc == 0)
		rc = check_secret_file(m, "token_file", m->token_file, "the tunnel token file");
	if (rc == 0)
		rc = check_secret_file(m, "tls.key_file", m->key_file, "the TLS private key");
	if (rc == 0 && m->metrics_listen && m->metrics_listen[0] && !is_loopback_addr(m->metrics_listen))
		rc = finding(m, BND_LOW, "metrics_listen", "metrics on %s, not loopback: route names and traffic counters "
							   "are visible to the network", m->metrics_listen);
	if (rc == 0 && m->listen_addr && !is_loopback_addr(m->listen_addr))
		rc = finding(m, BND_LOW, "listen_addr", "the local listener %s is reachable from the network without the "
							"edge: clients there reach the routes directly", m->listen_addr);
	if (rc == 0 && !m->has_audit)
		rc = finding(m, BND_LOW, "audit", "no audit sink: tool calls leave no record at the boundary");
	if (rc == 0 && m->audit_syslog && strcmp(bndi_syslog_scheme(m->audit_syslog), "tls"))
		rc = finding(m, BND_HIGH, "audit.syslog", "%s sends audit records (client identities, tool names, "
							  "arguments) in plaintext over %s: use tls://", m->audit_syslog,
			     bndi_syslog_scheme(m->audit_syslog));
	if (rc == 0 && m->has_audit && m->log_arguments && !m->has_redact_keys)
		rc = finding(m, BND_MEDIUM, "audit.log_arguments", "arguments are logged and redact_keys is not set: only "
								   "the built-in patterns redact (set redact_keys, or "
								   "log_arguments: false)");
	return rc;
}

/* ------------------------------------------------------------------ reading the config */

static int get_str(cfg_doc *d, cfg_node *map, const char *key, char **out)
{
	int rc = map ? cfg_get_str(d, map, key, out) : 1;
	return rc < 0 ? rc : 0;
}

static int read_auth(cfg_doc *d, cfg_node *rv, bndi_route *r)
{
	cfg_node *a = cfg_get(rv, "auth"), *b;
	const char *s = a ? cfg_scalar(a) : NULL;
	if (!a)
		return 0;
	if (s) {
		if (strcmp(s, "passthrough"))
			return cfg_fail(d, rv, "auth", "must be passthrough, {bearer: {tokens_file}} or {jwt: {issuer, "
						       "audience, jwks_file | jwks_url}}, not \"%s\"", s);
		r->auth = BNDI_AUTH_PASSTHROUGH;
		return 0;
	}
	if (!cfg_is_map(a))
		return cfg_fail(d, rv, "auth", "must be passthrough or a mapping with bearer: or jwt:");
	if ((b = cfg_get(a, "bearer"))) {
		static const char *const keys[] = { "tokens_file", NULL };
		int rc;
		if (cfg_get(a, "jwt"))
			return cfg_fail(d, a, "jwt", "a route has one auth: bearer or jwt, not both");
		if (!cfg_is_map(b) || (rc = cfg_check_keys(d, b, "auth.bearer", keys)) < 0)
			return cfg_is_map(b) ? -EINVAL : cfg_fail(d, a, "bearer", "must be a mapping {tokens_file: PATH}");
		r->auth = BNDI_AUTH_BEARER;
		if ((rc = get_str(d, b, "tokens_file", &r->tokens_file)) < 0)
			return rc;
		return r->tokens_file ? 0 : cfg_fail(d, a, "bearer", "needs tokens_file");
	}
	if ((b = cfg_get(a, "jwt"))) {
		/* the keys of guard/auth.c's jwt reader */
		static const char *const keys[] = { "issuer", "audience", "jwks_file", "jwks_url", "ca_file", "jwks_refresh",
						    "leeway", "scopes", "authorization_servers", NULL };
		char *file = NULL, *url = NULL;
		int rc;
		if (!cfg_is_map(b))
			return cfg_fail(d, a, "jwt", "must be a mapping {issuer, audience, jwks_file | jwks_url}");
		if ((rc = cfg_check_keys(d, b, "auth.jwt", keys)) < 0)
			return rc;
		r->auth = BNDI_AUTH_JWT;
		if ((rc = get_str(d, b, "issuer", &r->jwt_issuer)) < 0 || (rc = get_str(d, b, "audience", &r->jwt_audience)) < 0 ||
		    (rc = get_str(d, b, "jwks_file", &file)) < 0 || (rc = get_str(d, b, "jwks_url", &url)) < 0) {
			free(file);
			free(url);
			return rc;
		}
		if (!file == !url) {
			free(file);
			free(url);
			return cfg_fail(d, a, "jwt", "needs exactly one of jwks_file and jwks_url");
		}
		r->jwks = file ? file : url;
		if (!r->jwt_issuer)
			return cfg_fail(d, a, "jwt", "needs issuer");
		return 0;
	}
	return cfg_fail(d, rv, "auth", "must be passthrough, {bearer: {...}} or {jwt: {...}}");
}

static int add_rule(bndi_route *r, cfg_node *item)
{
	static const char *const kinds[] = { "tool", "prompt", "resource", "client" };
	cfg_node *match = cfg_get(item, "match");
	const char *action = cfg_scalar(cfg_get(item, "action")), *name = cfg_scalar(cfg_get(item, "name"));
	char buf[1024];
	size_t off = 0;
	if (ARR_RESERVE(r->rules, r->n_rules, r->cap_rules, 4) < 0)
		return -ENOMEM;
	if (name)
		off += (size_t)snprintf(buf + off, sizeof buf - off, "%s: ", name);
	for (size_t k = 0; k < 4 && off < sizeof buf; k++) {
		const char *g = match ? cfg_scalar(cfg_get(match, kinds[k])) : NULL;
		if (g)
			off += (size_t)snprintf(buf + off, sizeof buf - off, "%s %s ", kinds[k], g);
	}
	if (off < sizeof buf)
		snprintf(buf + off, sizeof buf - off, "%s-> %s", off ? "" : "any ", action ? action : "?");
	if (!(r->rules[r->n_rules].text = strdup(buf)))
		return -ENOMEM;
	r->rules[r->n_rules++].approve = action && !strcmp(action, "approve");
	return 0;
}

static int read_policy(cfg_doc *d, cfg_node *rv, bndi_route *r)
{
	cfg_node *p = cfg_get(rv, "policy"), *rules, *item;
	void *it = NULL;
	pol *checked = NULL;
	int rc;
	if (!p)
		return 0;
	if (!cfg_is_map(p))
		return cfg_fail(d, rv, "policy", "must be a mapping {default: allow|deny|approve, rules: [...]}");
	/* the guard's own reader says what is wrong with a policy, with its line */
	if ((rc = pol_from_cfg(d, p, &checked)) < 0)
		return rc;
	pol_free(checked);
	r->has_policy = true;
	if ((rc = get_str(d, p, "default", &r->policy_default)) < 0)
		return rc;
	rules = cfg_get(p, "rules");
	while (rules && (item = fy_node_sequence_iterate(rules, &it)))
		if ((rc = add_rule(r, item)) < 0)
			return rc;
	return 0;
}

static int read_route(cfg_doc *d, cfg_node *routes, const char *name, cfg_node *rv, bndi_route *r)
{
	const char *s = cfg_scalar(rv);
	cfg_node *sb;
	int rc, forms;
	r->line = cfg_key_line(routes, name);
	if (!(r->name = strdup(name)))
		return -ENOMEM;
	if (s) {
		r->kind = BNDI_HTTP;
		return (r->target = strdup(s)) ? 0 : -ENOMEM;
	}
	if (!cfg_is_map(rv))
		return cfg_fail(d, routes, name, "must be scheme://host:port or a mapping (url:, stdio: or sandbox:)");
	forms = !!cfg_get(rv, "url") + !!cfg_get(rv, "stdio") + !!cfg_get(rv, "sandbox");
	if (forms != 1)
		return cfg_fail(d, routes, name, "needs exactly one of url:, stdio: and sandbox:");
	if (cfg_get(rv, "url")) {
		r->kind = BNDI_HTTP;
		if (!cfg_scalar(cfg_get(rv, "url")))
			return cfg_fail(d, rv, "url", "must be scheme://host:port");
		if ((rc = get_str(d, rv, "url", &r->target)) < 0)
			return rc;
	} else if (cfg_get(rv, "stdio")) {
		char **argv = NULL;
		size_t n = 0, len = 1;
		r->kind = BNDI_STDIO;
		if ((rc = cfg_get_strlist(d, rv, "stdio", &argv, &n)) < 0)
			return rc;
		for (size_t i = 0; i < n; i++)
			len += strlen(argv[i]) + 1;
		if (n == 0 || !(r->target = calloc(1, len))) {
			cfg_strv_free(argv);
			return n == 0 ? cfg_fail(d, rv, "stdio", "must be a list starting with the command") : -ENOMEM;
		}
		for (size_t i = 0; i < n; i++)
			strcat(strcat(r->target, i ? " " : ""), argv[i]);
		cfg_strv_free(argv);
	} else {
		r->kind = BNDI_SANDBOX;
		sb = cfg_get(rv, "sandbox");
		if (!cfg_is_map(sb))
			return cfg_fail(d, rv, "sandbox", "expects a mapping of options (workspace_root, allow_domains, ...)");
		if (!(r->target = strdup("postern sandbox serve")))
			return -ENOMEM;
		if ((rc = get_str(d, sb, "workspace_root", &r->workspace_root)) < 0)
			return rc;
		if ((rc = cfg_get_strlist(d, sb, "allow_domains", &r->allow_domains, &r->n_allow)) < 0)
			return rc;
	}
	if ((rc = read_auth(d, rv, r)) < 0 || (rc = read_policy(d, rv, r)) < 0)
		return rc;
	if (cfg_get(rv, "audit")) {
		const char *a = cfg_scalar(cfg_get(rv, "audit"));
		if (!(r->route_audit = strdup(a ? a : "(its own settings)")))
			return -ENOMEM;
	}
	return 0;
}

static int read_audit(cfg_doc *d, cfg_node *root, bnd_model *m)
{
	cfg_node *a = cfg_get(root, "audit");
	int rc;
	m->log_arguments = true;
	if (!a)
		return 0;
	if (!cfg_is_map(a))
		return cfg_fail(d, root, "audit", "must be a mapping (file:, syslog:, stdout:, log_arguments:, redact_keys:)");
	m->has_audit = true;
	if ((rc = get_str(d, a, "file", &m->audit_file)) < 0 || (rc = get_str(d, a, "syslog", &m->audit_syslog)) < 0)
		return rc;
	if ((rc = cfg_get_bool(d, a, "stdout", &m->audit_stdout)) < 0 || (rc = cfg_get_bool(d, a, "log_arguments", &m->log_arguments)) < 0)
		return rc;
	if ((rc = cfg_get_strlist(d, a, "redact_keys", &m->redact_keys, &m->n_redact)) < 0)
		return rc;
	m->has_redact_keys = rc == 0;
	if (m->audit_syslog && !bndi_syslog_scheme(m->audit_syslog))
		return cfg_fail(d, a, "syslog", "'%s' must be tcp://, udp:// or tls://HOST:PORT", m->audit_syslog);
	if (!m->audit_file && !m->audit_syslog && !m->audit_stdout)
		m->has_audit = false;
	return 0;
}

static int read_model(cfg_doc *d, bnd_model *m)
{
	cfg_node *root = cfg_root(d), *routes, *tls, *up, *val;
	void *it = NULL;
	const char *name;
	int rc;
	if (!cfg_is_map(root))
		return cfg_fail_line(d, 1, "the file is not a mapping of keys (a gateway config: edges, tls, routes, ...)");
	if ((rc = cfg_get_strlist(d, root, "edges", &m->edges, &m->n_edges)) < 0)
		return rc;
	tls = cfg_get(root, "tls");
	up = cfg_get(root, "upstream");
	if ((rc = get_str(d, root, "listen_addr", &m->listen_addr)) < 0 || (rc = get_str(d, root, "tunnel_domain", &m->tunnel_domain)) < 0 ||
	    (rc = get_str(d, root, "token_file", &m->token_file)) < 0 || (rc = get_str(d, root, "edge_ca_file", &m->edge_ca_file)) < 0 ||
	    (rc = get_str(d, root, "pins_file", &m->pins_file)) < 0 || (rc = get_str(d, cfg_is_map(tls) ? tls : NULL, "cert_file", &m->cert_file)) < 0 ||
	    (rc = get_str(d, cfg_is_map(tls) ? tls : NULL, "key_file", &m->key_file)) < 0)
		return rc;
	if ((rc = get_str(d, root, "metrics_listen", &m->metrics_listen)) < 0)
		return rc;
	if (!m->metrics_listen && m->n_edges && !(m->metrics_listen = strdup("127.0.0.1:20251")))
		return -ENOMEM;
	if (cfg_is_map(up) && (rc = cfg_get_bool(d, up, "disable_ip_validation", &m->disable_ip_validation)) < 0)
		return rc;
	routes = cfg_get(root, "routes");
	if (!routes || !cfg_is_map(routes))
		return cfg_fail(d, root, "routes", routes ? "must be a mapping of route name to upstream"
							  : "is missing: a gateway config has routes (name: upstream)");
	while (cfg_map_next(routes, &it, &name, &val) == 1) {
		if (ARR_RESERVE(m->routes, m->n_routes, m->cap_routes, 8) < 0)
			return -ENOMEM;
		memset(&m->routes[m->n_routes], 0, sizeof m->routes[0]);
		rc = read_route(d, routes, name, val, &m->routes[m->n_routes]);
		m->n_routes++;
		if (rc < 0)
			return rc;
	}
	if (!m->n_routes)
		return cfg_fail(d, root, "routes", "is empty: nothing to report");
	return read_audit(d, root, m);
}

bnd_model *bnd_load(const char *path, char *err, size_t errlen)
{
	cfg_doc *d = cfg_load(path, err, errlen);
	bnd_model *m = NULL;
	int rc;
	if (!d)
		return NULL;
	if (!(m = calloc(1, sizeof *m)) || !(m->path = strdup(path))) {
		err_set(err, errlen, -ENOMEM, "%s: out of memory", path);
		goto fail;
	}
	if ((rc = read_model(d, m)) < 0 || (rc = derive_findings(m)) < 0) {
		if (rc == -ENOMEM)
			err_set(err, errlen, rc, "%s: out of memory", path);
		else
			err_set(err, errlen, rc, "%s", cfg_error(d) ? cfg_error(d) : "invalid config");
		goto fail;
	}
	cfg_free(d);
	return m;
fail:
	bnd_free(m);
	cfg_free(d);
	return NULL;
}

void bnd_free(bnd_model *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n_routes; i++) {
		bndi_route *r = &m->routes[i];
		free(r->name);
		free(r->target);
		free(r->tokens_file);
		free(r->jwt_issuer);
		free(r->jwt_audience);
		free(r->jwks);
		free(r->policy_default);
		for (size_t j = 0; j < r->n_rules; j++)
			free(r->rules[j].text);
		free(r->rules);
		free(r->workspace_root);
		cfg_strv_free(r->allow_domains);
		free(r->route_audit);
	}
	for (size_t i = 0; i < m->n_findings; i++) {
		free(m->findings[i].key);
		free(m->findings[i].text);
	}
	free(m->findings);
	free(m->routes);
	cfg_strv_free(m->edges);
	cfg_strv_free(m->redact_keys);
	free(m->path);
	free(m->listen_addr);
	free(m->metrics_listen);
	free(m->tunnel_domain);
	free(m->cert_file);
	free(m->key_file);
	free(m->token_file);
	free(m->edge_ca_file);
	free(m->pins_file);
	free(m->audit_file);
	free(m->audit_syslog);
	free(m);
}

/* ------------------------------------------------------------------ the command */

static void usage(FILE *f)
{
	fprintf(f, "usage: postern boundary -c gateway.yaml [--format text|mermaid|both] [--strict]\n\n"
		   "Prints, from the config alone, who can see what: each edge (SNI names, client addresses, sizes and\n"
		   "timing; never plaintext), this gateway (the plaintext of every route; the keys, tokens and pins it\n"
		   "holds), each upstream (its own traffic; whether the client's Authorization reaches it), sandbox\n"
		   "routes (their boundary and egress) and the audit sinks (fields; arguments redacted or dropped;\n"
		   "plaintext transports), then findings for risky settings. --format mermaid prints a flowchart for\n"
		   "a review document; both prints the text, then the diagram in a ```mermaid block.\n"
		   "--strict exits 1 when there is a finding of medium or high severity.\n");
}

int boundary_main(int argc, char **argv)
{
	const char *path = NULL, *format = "text";
	bool strict = false;
	char err[1024];
	bnd_model *m;
	int rc = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc) {
			path = argv[++i];
		} else if (!strcmp(argv[i], "--format") && i + 1 < argc) {
			format = argv[++i];
		} else if (!strcmp(argv[i], "--strict")) {
			strict = true;
		} else {
			fprintf(stderr, "postern boundary: unexpected argument '%s' (see postern boundary --help)\n", argv[i]);
			return 2;
		}
	}
	if (!path || (strcmp(format, "text") && strcmp(format, "mermaid") && strcmp(format, "both"))) {
		fprintf(stderr, "postern boundary: %s (see postern boundary --help)\n",
			!path ? "-c FILE is required" : "--format must be text, mermaid or both");
		return 2;
	}
	if (!(m = bnd_load(path, err, sizeof err))) {
		fprintf(stderr, "postern boundary: %s\n", err);
		return 1;
	}
	if (strcmp(format, "mermaid"))
		rc = bnd_write_text(m, stdout);
	if (rc == 0 && !strcmp(format, "both"))
		rc = fputs("\n```mermaid\n", stdout) < 0 ? -EIO : 0;
	if (rc == 0 && strcmp(format, "text"))
		rc = bnd_write_mermaid(m, stdout);
	if (rc == 0 && !strcmp(format, "both"))
		rc = fputs("```\n", stdout) < 0 ? -EIO : 0;
	if (rc == 0 && fflush(stdout) != 0)
		rc = -EIO;
	if (rc < 0) {
		fprintf(stderr, "postern boundary: cannot write the report: %s\n", strerror(-rc));
		bnd_free(m);
		return 1;
	}
	for (size_t i = 0; strict && i < m->n_findings; i++)
		if (m->findings[i].sev >= BND_MEDIUM)
			rc = 1;
	bnd_free(m);
	return rc;
}
