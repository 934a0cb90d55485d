/* postern boundary's output: the text report (a section per party, then findings) and the Mermaid flowchart. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "gateway/boundary_int.h"

static const char *const sev_names[] = { "low", "medium", "high" };

static const char *kind_text(const bndi_route *r)
{
	switch (r->kind) {
	case BNDI_STDIO:
		return "stdio: a child process on the gateway host, one per MCP session";
	case BNDI_SANDBOX:
		return "sandbox: a sandbox on the gateway host, one per MCP session";
	default:
		return "http upstream";
	}
}

static void auth_text(FILE *f, const bndi_route *r)
{
	switch (r->auth) {
	case BNDI_AUTH_BEARER:
		fprintf(f, "  auth: bearer tokens checked by the gateway (tokens_file %s); the credential is not forwarded, "
			   "the token's subject goes to policy and audit\n", r->tokens_file);
		break;
	case BNDI_AUTH_JWT:
		fprintf(f, "  auth: JWT checked by the gateway (issuer %s, audience %s, keys %s); the token is not "
			   "forwarded, its sub goes to policy and audit\n", r->jwt_issuer, r->jwt_audience ? r->jwt_audience : "the route's resource URL", r->jwks);
		break;
	default:
		if (r->kind == BNDI_HTTP)
			fprintf(f, "  auth: passthrough%s: the client's Authorization header reaches the upstream, which "
				   "does its own auth (or none)\n", r->auth == BNDI_AUTH_DEFAULT ? " (the default)" : "");
		else
			fprintf(f, "  auth: passthrough%s: no HTTP reaches the child, so no credential is checked anywhere\n",
				r->auth == BNDI_AUTH_DEFAULT ? " (the default)" : "");
	}
}

static void route_text(FILE *f, const bnd_model *m, const bndi_route *r)
{
	fprintf(f, "\n== route %s (line %d): %s\n", r->name, r->line, kind_text(r));
	if (m->tunnel_domain)
		fprintf(f, "  reached as: https://%s.%s/ (SNI %s.%s)\n", r->name, m->tunnel_domain, r->name, m->tunnel_domain);
	fprintf(f, "  %s: %s\n", r->kind == BNDI_HTTP ? "upstream" : "runs", r->target);
	fprintf(f, "  sees: the plaintext of this route's own MCP traffic only (requests, tool arguments, results); "
		   "no other route's\n");
	auth_text(f, r);
	if (!r->has_policy) {
		fprintf(f, "  policy: none: every tool, prompt and resource the upstream offers is callable\n");
	} else {
		fprintf(f, "  policy: default %s; %zu rule%s, first match decides (enforced at call time; lists filtered)\n",
			r->policy_default ? r->policy_default : "allow", r->n_rules, r->n_rules == 1 ? "" : "s");
		for (size_t i = 0; i < r->n_rules; i++)
			fprintf(f, "    %zu. %s%s\n", i + 1, r->rules[i].text,
				r->rules[i].approve ? " (held until approved on the gateway's admin socket /run/postern)" : "");
	}
	if (r->kind == BNDI_HTTP)
		fprintf(f, "  network: %s between the gateway and the upstream\n",
			!strncmp(r->target, "https://", 8) ? "TLS" : "plaintext HTTP");
	if (r->kind == BNDI_SANDBOX) {
		fprintf(f, "  boundary: user, pid, mount, net, ipc, uts and cgroup namespaces, seccomp, cgroup limits; "
			   "commands see a read-only host view and their workspace%s%s\n",
			r->workspace_root ? " under " : "", r->workspace_root ? r->workspace_root : "");
		if (!r->n_allow) {
			fprintf(f, "  egress: none (loopback only)\n");
		} else {
			fprintf(f, "  egress: through the gateway's egress proxy, allowlist:");
			for (size_t i = 0; i < r->n_allow; i++)
				fprintf(f, " %s", r->allow_domains[i]);
			fprintf(f, " (those hosts see what sandboxed commands send them)\n");
		}
	}
	if (r->route_audit)
		fprintf(f, "  audit: %s\n", r->route_audit);
}

static void audit_text(FILE *f, const bnd_model *m)
{
	const char *args;
	if (!m->has_audit) {
		fprintf(f, "\n== audit: no sink configured: no record of tool calls is kept at the boundary\n");
		return;
	}
	args = !m->log_arguments ? "dropped (log_arguments: false)" : "logged after redaction";
	if (m->audit_file)
		fprintf(f, "\n== audit file %s\n  readable by: whoever can read the file on the gateway host (root, the "
			   "user postern)\n", m->audit_file);
	if (m->audit_stdout)
		fprintf(f, "\n== audit stdout\n  readable by: whoever reads the gateway's output (the journal)\n");
	if (m->audit_syslog)
		fprintf(f, "\n== audit syslog %s (RFC 5424 over %s%s)\n  readable by: the SIEM%s\n", m->audit_syslog,
			bndi_syslog_scheme(m->audit_syslog),
			strcmp(bndi_syslog_scheme(m->audit_syslog), "tls") ? ", PLAINTEXT" : "",
			strcmp(bndi_syslog_scheme(m->audit_syslog), "tls") ? " and anyone on the network path" : "");
	fprintf(f, "\n== what each audit sink receives\n  fields: time, trace and span id, route, client identity "
		   "and address, session id, JSON-RPC method and id, tool name and definition hash, decision and "
		   "deciding rule, approval state, result status, latency, bytes; each line chained to the previous "
		   "by SHA-256\n  arguments: %s", args);
	if (m->log_arguments) {
		fprintf(f, ", by key patterns ");
		if (m->has_redact_keys)
			for (size_t i = 0; i < m->n_redact; i++)
				fprintf(f, "%s%s", i ? ", " : "", m->redact_keys[i]);
		else
			fprintf(f, "(the built-in ones: redact_keys is not set)");
		fprintf(f, " and value patterns (bearer tokens, private keys, long base64), cut to a size cap");
	}
	fprintf(f, "\n");
}

int bnd_write_text(const bnd_model *m, FILE *f)
{
	fprintf(f, "postern boundary: %s: %zu route%s, %zu edge%s%s\n", m->path, m->n_routes, m->n_routes == 1 ? "" : "s",
		m->n_edges, m->n_edges == 1 ? "" : "s", m->listen_addr ? ", a local listener" : "");
	fprintf(f, "Who can see what, read from this config alone (nothing is contacted). Findings at the end.\n");
	for (size_t i = 0; i < m->n_edges; i++) {
		fprintf(f, "\n== edge %s (the public relay; outside your network)\n", m->edges[i]);
		fprintf(f, "  sees: the SNI host names of client connections (");
		for (size_t j = 0; j < m->n_routes; j++)
			fprintf(f, "%s%s.%s", j ? ", " : "", m->routes[j].name, m->tunnel_domain ? m->tunnel_domain : "<tunnel domain>");
		fprintf(f, "), client IP addresses and ports, the tunnel id, byte counts and timing of every connection, "
			   "and the tunnel token when the connector registers (it stores a hash)\n");
		fprintf(f, "  cannot see: MCP plaintext: the inner TLS runs end to end from the client to this gateway, "
			   "whose key (%s) never leaves the gateway host\n", m->key_file ? m->key_file : "tls.key_file");
		fprintf(f, "  link: TLS 1.3 dialled by the gateway; the edge's certificate is checked against %s\n",
			m->edge_ca_file ? m->edge_ca_file : "the system CAs");
	}
	if (m->listen_addr)
		fprintf(f, "\n== local listener %s (no edge: clients connect to the gateway directly)\n  sees: what any TLS "
			   "client sees: its own session\n", m->listen_addr);
	fprintf(f, "\n== gateway (this host; terminates the inner TLS)\n  sees: the plaintext of every route:");
	for (size_t i = 0; i < m->n_routes; i++)
		fprintf(f, " %s", m->routes[i].name);
	fprintf(f, "\n  holds: the TLS key %s", m->key_file ? m->key_file : "(tls.key_file not set)");
	if (m->token_file)
		fprintf(f, ", the tunnel token %s", m->token_file);
	for (size_t i = 0; i < m->n_routes; i++) {
		if (m->routes[i].auth == BNDI_AUTH_BEARER)
			fprintf(f, ", route %s's tokens %s", m->routes[i].name, m->routes[i].tokens_file);
		if (m->routes[i].auth == BNDI_AUTH_JWT)
			fprintf(f, ", route %s's JWKS %s", m->routes[i].name, m->routes[i].jwks);
	}
	if (m->pins_file)
		fprintf(f, ", tool pins %s", m->pins_file);
	if (m->audit_file)
		fprintf(f, ", the audit log %s", m->audit_file);
	fprintf(f, "\n  exposes: %s%s\n", m->metrics_listen ? "metrics (route names, counters) on " : "no metrics listener",
		m->metrics_listen ? m->metrics_listen : "");
	fprintf(f, "  upstream address checks: %s\n", m->disable_ip_validation ? "OFF (disable_ip_validation)" : "on");
	for (size_t i = 0; i < m->n_routes; i++)
		route_text(f, m, &m->routes[i]);
	audit_text(f, m);
	fprintf(f, "\nfindings (%zu):\n", m->n_findings);
	if (!m->n_findings)
		fprintf(f, "  none\n");
	for (size_t i = 0; i < m->n_findings; i++)
		fprintf(f, "  [%s] %s: %s\n", sev_names[m->findings[i].sev], m->findings[i].key, m->findings[i].text);
	return ferror(f) ? -EIO : 0;
}

/* ------------------------------------------------------------------ Mermaid */

/* A label inside "...": Mermaid takes entity codes; quotes and angle brackets would end or open markup. */
static void label(FILE *f, const char *s)
{
	for (; *s; s++) {
		if (*s == '"')
			fputs("#quot;", f);
		else if (*s == '<')
			fputs("#lt;", f);
		else if (*s == '>')
			fputs("#gt;", f);
		else if (*s == '#')
			fputs("#35;", f);
		else if ((unsigned char)*s >= 0x20)
			fputc(*s, f);
	}
}

/* Node ids are [A-Za-z0-9_] and numbered, so route names with dots or dashes cannot collide or break syntax. */
static void route_id(char *buf, size_t n, size_t i, const char *name)
{
	size_t o = (size_t)snprintf(buf, n, "route%zu_", i);
	for (; *name && o + 1 < n && o < 40; name++)
		buf[o++] = isalnum((unsigned char)*name) ? *name : '_';
	buf[o] = 0;
}

int bnd_write_mermaid(const bnd_model *m, FILE *f)
{
	char id[64];
	fprintf(f, "flowchart LR\n  clients[\"MCP clients\"]\n");
	if (m->n_edges) {
		fprintf(f, "  subgraph public[\"outside your network\"]\n");
		for (size_t i = 0; i < m->n_edges; i++) {
			fprintf(f, "    edge%zu[\"edge ", i);
			label(f, m->edges[i]);
			fprintf(f, "<br/>sees SNI, client addresses, sizes, timing<br/>no plaintext\"]\n");
		}
		fprintf(f, "  end\n");
	}
	fprintf(f, "  subgraph customer[\"your network\"]\n    gateway[\"gateway<br/>plaintext of all %zu routes<br/>holds the TLS key",
		m->n_routes);
	if (m->token_file)
		fprintf(f, ", tunnel token");
	fprintf(f, "\"]\n");
	for (size_t i = 0; i < m->n_routes; i++) {
		const bndi_route *r = &m->routes[i];
		route_id(id, sizeof id, i, r->name);
		fprintf(f, "    %s[\"%s ", id, r->kind == BNDI_SANDBOX ? "sandbox" : r->kind == BNDI_STDIO ? "stdio" : "upstream");
		label(f, r->name);
		fprintf(f, ": ");
		label(f, r->target);
		fprintf(f, "<br/>its own traffic only%s%s\"]\n", r->has_policy ? "<br/>policy enforced" : "<br/>no policy",
			r->auth == BNDI_AUTH_BEARER || r->auth == BNDI_AUTH_JWT ? ", auth at gateway" : "");
		if (r->kind == BNDI_SANDBOX && r->n_allow) {
			fprintf(f, "    egress%zu[\"egress allowlist:", i);
			for (size_t j = 0; j < r->n_allow; j++) {
				fputc(' ', f);
				label(f, r->allow_domains[j]);
			}
			fprintf(f, "\"]\n");
		}
	}
	if (m->audit_file) {
		fprintf(f, "    audit_file[(\"audit file ");
		label(f, m->audit_file);
		fprintf(f, "\")]\n");
	}
	if (m->audit_stdout)
		fprintf(f, "    audit_stdout[\"audit on stdout\"]\n");
	fprintf(f, "  end\n");
	if (m->audit_syslog) {
		fprintf(f, "  audit_syslog[\"SIEM ");
		label(f, m->audit_syslog);
		fprintf(f, "%s\"]\n", strcmp(bndi_syslog_scheme(m->audit_syslog), "tls") ? "<br/>PLAINTEXT transport" : "");
	}
	for (size_t i = 0; i < m->n_edges; i++)
		fprintf(f, "  clients -- \"inner TLS, SNI visible\" --> edge%zu\n  edge%zu -- \"ciphertext in TLS 1.3 + HTTP/2\" --> gateway\n",
			i, i);
	if (m->listen_addr || !m->n_edges)
		fprintf(f, "  clients -- \"TLS, direct\" --> gateway\n");
	for (size_t i = 0; i < m->n_routes; i++) {
		const bndi_route *r = &m->routes[i];
		bool pass = r->auth == BNDI_AUTH_DEFAULT || r->auth == BNDI_AUTH_PASSTHROUGH;
		route_id(id, sizeof id, i, r->name);
		fprintf(f, "  gateway -- \"%s%s\" --> %s\n",
			r->kind != BNDI_HTTP ? "stdin/stdout" : !strncmp(r->target, "https://", 8) ? "TLS" : "plaintext HTTP",
			r->kind == BNDI_HTTP && pass ? ", client Authorization forwarded" : "", id);
		if (r->kind == BNDI_SANDBOX && r->n_allow)
			fprintf(f, "  %s -- \"allowed hosts only\" --> egress%zu\n", id, i);
	}
	if (m->audit_file)
		fprintf(f, "  gateway -- \"%s\" --> audit_file\n", m->log_arguments ? "records, arguments redacted" : "records, no arguments");
	if (m->audit_stdout)
		fprintf(f, "  gateway -- \"%s\" --> audit_stdout\n", m->log_arguments ? "records, arguments redacted" : "records, no arguments");
	if (m->audit_syslog)
		fprintf(f, "  gateway -- \"%s over %s\" --> audit_syslog\n",
			m->log_arguments ? "records, arguments redacted" : "records, no arguments", bndi_syslog_scheme(m->audit_syslog));
	return ferror(f) ? -EIO : 0;
}
