/* The boundary model shared by boundary.c (reading the config, findings) and boundary_out.c (text, Mermaid). */
#ifndef POSTERN_GATEWAY_BOUNDARY_INT_H
#define POSTERN_GATEWAY_BOUNDARY_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "gateway/boundary.h"

typedef enum bndi_kind { BNDI_HTTP = 0, BNDI_STDIO, BNDI_SANDBOX } bndi_kind;
typedef enum bndi_auth { BNDI_AUTH_DEFAULT = 0, BNDI_AUTH_PASSTHROUGH, BNDI_AUTH_BEARER, BNDI_AUTH_JWT } bndi_auth;

typedef struct bndi_rule {
	char *text; /* "tool write_* client ops-* -> approve" */
	bool approve;
} bndi_rule;

typedef struct bndi_route {
	char *name;
	int line;
	bndi_kind kind;
	char *target;        /* the URL, or the command line of a stdio route */
	bndi_auth auth;
	char *tokens_file;   /* bearer */
	char *jwt_issuer, *jwt_audience, *jwks; /* jwt; jwks is the file or the URL */
	bool has_policy;
	char *policy_default;
	bndi_rule *rules;
	size_t n_rules, cap_rules;
	char *workspace_root; /* sandbox */
	char **allow_domains; /* sandbox egress allowlist (NULL: no network) */
	size_t n_allow;
	char *route_audit;    /* a route's own audit: value as written, NULL when absent */
} bndi_route;

typedef struct bndi_finding {
	bnd_severity sev;
	char *key;
	char *text;
} bndi_finding;

struct bnd_model {
	char *path;
	char **edges;
	size_t n_edges;
	char *listen_addr, *metrics_listen, *tunnel_domain, *cert_file, *key_file, *token_file, *edge_ca_file;
	char *pins_file;
	bool disable_ip_validation;
	bndi_route *routes;
	size_t n_routes, cap_routes;
	bool has_audit;
	char *audit_file, *audit_syslog;
	bool audit_stdout, log_arguments, has_redact_keys;
	char **redact_keys;
	size_t n_redact;
	bndi_finding *findings;
	size_t n_findings, cap_findings;
};

/* The syslog transport of a URL: "tcp", "udp" or "tls" (NULL when none of these). */
const char *bndi_syslog_scheme(const char *url);

#endif
