/* The edge config file (edge_config_load): shared by `postern edge` and `postern tunnel`. */
#include "tunnel/edge.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/cfg.h"
#include "core/log.h"
#include "core/tlsio.h"
#include "core/srclim.h"
#include "tunnel/tokstore.h"

static const char *const top_keys[] = { "state_dir", "domain", "edge_id", "connector_listen", "connector_tls",
					"client_listen", "client_allowed_ips", "metrics_listen", "mtls_listen",
					"client_ca_file", "mtls_tls", "log_level", "log_format", "client_hello_budget",
					"client_pending_max", "registration_limit", "client_pending_per_ip", "client_pending_per_net",
					"client_hello_timeout", "client_hello_timeout_busy", "mtls_tunnels", NULL };
static const char *const bind_keys[] = { "client_ca_file", "client_cn", "client_uri", NULL };
static const char *const tls_keys[] = { "cert_file", "key_file", NULL };
static const char *const reglim_keys[] = { "failures", "window", "block", NULL };

/* registration_limit: {failures: 10, window: 1m, block: 1m}; every key optional. */
static int get_reglim(cfg_doc *d, cfg_node *root, edge_config *c)
{
	cfg_node *m = NULL;
	int r = cfg_get_map(d, root, "registration_limit", &m);
	if (r)
		return r < 0 ? r : 0;
	if (cfg_check_keys(d, m, "registration_limit", reglim_keys) < 0 ||
	    cfg_get_int(d, m, "failures", 0, 100000, &c->reg_failures) < 0 ||
	    cfg_get_duration_ms(d, m, "window", &c->reg_window_ms) < 0 ||
	    cfg_get_duration_ms(d, m, "block", &c->reg_block_ms) < 0)
		return -EINVAL;
	if (c->reg_window_ms < 100 || c->reg_window_ms > EDGE_REG_WINDOW_MAX_MS)
		return cfg_fail(d, m, "window", "must be between 100ms and 24h (failures are counted over it)");
	if (c->reg_block_ms < 0 || c->reg_block_ms > EDGE_REG_WINDOW_MAX_MS)
		return cfg_fail(d, m, "block", "must be between 0 and 24h");
	return 0;
}

static bool valid_domain(const char *s)
{
	size_t n = strlen(s), label = 0;
	if (n == 0 || n > 200 || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
			return false;
		if (++label > 63)
			return false;
	}
	return true;
}

/* A tunnel name as tok_create accepts it: 1..63 of [A-Za-z0-9._-]. */
static bool valid_tunnel_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n >= TOK_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		      s[i] == '.' || s[i] == '_' || s[i] == '-'))
			return false;
	return true;
}

/* mtls_tunnels: { <tunnel name>: { client_ca_file, client_cn: [..], client_uri: [..] } } */
static int get_binds(cfg_doc *d, cfg_node *root, edge_config *c)
{
	cfg_node *m = NULL, *v;
	void *it = NULL;
	const char *name;
	size_t n = 0;
	int r = cfg_get_map(d, root, "mtls_tunnels", &m);
	if (r)
		return r < 0 ? r : 0;
	while (cfg_map_next(m, &it, &name, &v))
		n++;
	if (!c->mtls_listen)
		return cfg_fail(d, root, "mtls_tunnels", "needs mtls_listen (the mTLS entry it configures)");
	if (n && !(c->mtls_binds = calloc(n, sizeof *c->mtls_binds)))
		return -ENOMEM;
	it = NULL;
	while (cfg_map_next(m, &it, &name, &v)) {
		edge_mtls_bind *b = &c->mtls_binds[c->n_mtls_binds++];
		if (!valid_tunnel_name(name))
			return cfg_fail(d, m, name, "'%s' is not a tunnel name (1..63 of letters, digits, '.', '_', '-')", name);
		for (size_t i = 0; i + 1 < c->n_mtls_binds; i++)
			if (!strcmp(c->mtls_binds[i].tunnel, name))
				return cfg_fail(d, m, name, "tunnel '%s' is listed twice", name);
		if (!(b->tunnel = strdup(name)))
			return -ENOMEM;
		if (!cfg_is_map(v))
			return cfg_fail(d, m, name, "expected a mapping (client_ca_file, client_cn, client_uri)");
		if (cfg_check_keys(d, v, name, bind_keys) < 0 || cfg_get_str(d, v, "client_ca_file", &b->ca_file) < 0 ||
		    cfg_get_strlist(d, v, "client_cn", &b->cns, &b->ncns) < 0 ||
		    cfg_get_strlist(d, v, "client_uri", &b->uris, &b->nuris) < 0)
			return -EINVAL;
		if (!b->ca_file && !b->ncns && !b->nuris)
			return cfg_fail(d, m, name, "names no client: give client_ca_file, client_cn or client_uri");
		for (size_t i = 0; i < b->ncns; i++)
			if (!*b->cns[i])
				return cfg_fail(d, v, "client_cn", "an empty name matches no certificate");
		for (size_t i = 0; i < b->nuris; i++)
			if (!*b->uris[i])
				return cfg_fail(d, v, "client_uri", "an empty URI matches no certificate");
	}
	return 0;
}

static int get_addr(cfg_doc *d, cfg_node *root, const char *key, const char *def, char **out)
{
	struct sockaddr_storage ss;
	int r = cfg_get_str(d, root, key, out);
	if (r < 0)
		return r;
	if (r == 1) {
		if (!def)
			return 0;
		if (!(*out = strdup(def)))
			return -ENOMEM;
	}
	if (na_parse_sockaddr(*out, true, &ss) < 0)
		return cfg_fail(d, root, key, "'%s' is not a listen address (ip:port, [v6]:port or :port)", *out);
	return 0;
}

/* A tls mapping with cert_file and key_file, both required when the mapping is there. */
static int get_tls(cfg_doc *d, cfg_node *root, const char *key, char **cert, char **keyf)
{
	cfg_node *m = NULL;
	int r = cfg_get_map(d, root, key, &m);
	if (r)
		return r;
	if (cfg_check_keys(d, m, key, tls_keys) < 0)
		return -EINVAL;
	if ((r = cfg_get_str(d, m, "cert_file", cert)) < 0 || (r == 1 && cfg_fail(d, root, key, "cert_file is required") < 0))
		return -EINVAL;
	if ((r = cfg_get_str(d, m, "key_file", keyf)) < 0 || (r == 1 && cfg_fail(d, root, key, "key_file is required") < 0))
		return -EINVAL;
	return 0;
}

int edge_config_load(const char *path, edge_config *c, char *err, size_t errlen)
{
	cfg_doc *d;
	cfg_node *root;
	char **ips = NULL;
	size_t nips = 0;
	int r = -EINVAL;

	memset(c, 0, sizeof *c);
	na_cidrs_init(&c->client_allowed);
	c->log_level = LOG_INFO;
	c->log_format = -1;
	c->client_hello_budget = EDGE_HELLO_BUDGET_DEFAULT;
	c->client_pending_max = EDGE_PENDING_DEFAULT;
	c->reg_failures = SRL_BURST_DEFAULT;
	c->reg_window_ms = SRL_WINDOW_DEFAULT_MS;
	c->reg_block_ms = SRL_BLOCK_DEFAULT_MS;
	c->client_pending_per_ip = EDGE_PENDING_PER_IP_DEFAULT;
	c->client_pending_per_net = EDGE_PENDING_PER_NET_DEFAULT;
	c->client_hello_timeout_ms = EDGE_HELLO_TIMEOUT_DEFAULT_MS;
	c->client_hello_timeout_busy_ms = EDGE_HELLO_TIMEOUT_BUSY_DEFAULT_MS;
	if (!(d = cfg_load(path, err, errlen)))
		return -EINVAL;
	root = cfg_root(d);
	if (!(c->path = strdup(path)))
		goto nomem;
	if (cfg_check_keys(d, root, "the edge config", top_keys) < 0)
		goto out;
	if ((r = cfg_get_str(d, root, "state_dir", &c->state_dir)) != 0) {
		if (r == 1)
			cfg_fail(d, root, NULL, "state_dir is required (a directory for the tunnel database)");
		goto out;
	}
	if ((r = cfg_get_str(d, root, "domain", &c->domain)) != 0) {
		if (r == 1)
			cfg_fail(d, root, NULL, "domain is required (tunnels get <id>.<domain>)");
		goto out;
	}
	for (char *p = c->domain; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p + 32);
	if (!valid_domain(c->domain)) {
		cfg_fail(d, root, "domain", "'%s' is not a DNS domain name", c->domain);
		goto out;
	}
	if (cfg_get_str(d, root, "edge_id", &c->edge_id) < 0)
		goto out;
	if (!c->edge_id) {
		char host[256] = "edge";
		gethostname(host, sizeof host - 1);
		if (!(c->edge_id = strdup(host)))
			goto nomem;
	}
	if (get_addr(d, root, "connector_listen", ":7844", &c->connector_listen) < 0 ||
	    get_addr(d, root, "client_listen", ":443", &c->client_listen) < 0 ||
	    get_addr(d, root, "metrics_listen", "127.0.0.1:20250", &c->metrics_listen) < 0 ||
	    get_addr(d, root, "mtls_listen", NULL, &c->mtls_listen) < 0)
		goto out;
	if ((r = get_tls(d, root, "connector_tls", &c->connector_cert, &c->connector_key)) != 0) {
		if (r == 1)
			cfg_fail(d, root, NULL, "connector_tls (cert_file, key_file) is required");
		goto out;
	}
	if (get_tls(d, root, "mtls_tls", &c->mtls_cert, &c->mtls_key) < 0)
		goto out;
	if (cfg_get_str(d, root, "client_ca_file", &c->client_ca_file) < 0)
		goto out;
	if (c->mtls_listen && !c->client_ca_file) {
		cfg_fail(d, root, "mtls_listen", "needs client_ca_file (the CA that signs agent platform certificates)");
		goto out;
	}
	if ((r = get_binds(d, root, c)) == -ENOMEM)
		goto nomem;
	if (r < 0)
		goto out;
	if ((r = cfg_get_strlist(d, root, "client_allowed_ips", &ips, &nips)) < 0)
		goto out;
	for (size_t i = 0; i < nips; i++)
		if (na_cidrs_add(&c->client_allowed, ips[i]) < 0) {
			cfg_fail(d, root, "client_allowed_ips", "'%s' is not a CIDR or address", ips[i]);
			goto out;
		}
	c->have_allowed = r == 0;
	if (c->have_allowed && nips == 0) {
		cfg_fail(d, root, "client_allowed_ips", "an empty list would refuse every client; remove the key to allow all");
		goto out;
	}
	if ((r = cfg_get_size(d, root, "client_hello_budget", &c->client_hello_budget)) < 0)
		goto out;
	if (c->client_hello_budget < EDGE_HELLO_BUDGET_MIN || c->client_hello_budget > EDGE_HELLO_BUDGET_MAX) {
		cfg_fail(d, root, "client_hello_budget", "must be between 128K and 64G");
		goto out;
	}
	if ((r = cfg_get_int(d, root, "client_pending_max", 1, EDGE_PENDING_MAX, &c->client_pending_max)) < 0)
		goto out;
	if ((r = get_reglim(d, root, c)) < 0)
		goto out;
	if ((r = cfg_get_int(d, root, "client_pending_per_ip", 1, EDGE_PENDING_MAX, &c->client_pending_per_ip)) < 0 ||
	    (r = cfg_get_int(d, root, "client_pending_per_net", 1, EDGE_PENDING_MAX, &c->client_pending_per_net)) < 0)
		goto out;
	if (c->client_pending_per_ip > c->client_pending_per_net) {
		cfg_fail(d, root, "client_pending_per_ip", "%lld is more than client_pending_per_net (%lld): an address is in its network",
			 (long long)c->client_pending_per_ip, (long long)c->client_pending_per_net);
		goto out;
	}
	if ((r = cfg_get_duration_ms(d, root, "client_hello_timeout", &c->client_hello_timeout_ms)) < 0 ||
	    (r = cfg_get_duration_ms(d, root, "client_hello_timeout_busy", &c->client_hello_timeout_busy_ms)) < 0)
		goto out;
	if (c->client_hello_timeout_ms < 1000 || c->client_hello_timeout_ms > 120000) {
		cfg_fail(d, root, "client_hello_timeout", "must be between 1s and 120s");
		goto out;
	}
	if (c->client_hello_timeout_busy_ms < 100 || c->client_hello_timeout_busy_ms > c->client_hello_timeout_ms) {
		cfg_fail(d, root, "client_hello_timeout_busy", "must be between 100ms and client_hello_timeout");
		goto out;
	}
	if ((r = log_config_read(d, root, &c->log_level, &c->log_format)) < 0)
		goto out;
	r = 0;
	goto out;
nomem:
	snprintf(err, errlen, "out of memory");
	r = -ENOMEM;
out:
	/* Any recorded config error fails the load, whatever path reached here. */
	if (cfg_error(d) && r >= 0)
		r = -EINVAL;
	if (r < 0 && cfg_error(d)) {
		snprintf(err, errlen, "%s", cfg_error(d));
		r = -EINVAL;
	} else if (r < 0 && r != -ENOMEM) {
		snprintf(err, errlen, "%s: invalid config", path);
		r = -EINVAL;
	}
	cfg_strv_free(ips);
	cfg_free(d);
	if (r < 0)
		edge_config_free(c);
	return r;
}

void edge_config_free(edge_config *c)
{
	free(c->path);
	free(c->state_dir);
	free(c->domain);
	free(c->edge_id);
	free(c->connector_listen);
	free(c->client_listen);
	free(c->metrics_listen);
	free(c->mtls_listen);
	free(c->connector_cert);
	free(c->connector_key);
	free(c->mtls_cert);
	free(c->mtls_key);
	free(c->client_ca_file);
	for (size_t i = 0; i < c->n_mtls_binds; i++) {
		free(c->mtls_binds[i].tunnel);
		free(c->mtls_binds[i].ca_file);
		cfg_strv_free(c->mtls_binds[i].cns);
		cfg_strv_free(c->mtls_binds[i].uris);
	}
	free(c->mtls_binds);
	na_cidrs_free(&c->client_allowed);
	memset(c, 0, sizeof *c);
}

/* ---- preflight: what the edge will need from the files the config names --------------------------------- */

static int pf_readable(cfg_doc *d, cfg_node *map, const char *key, const char *file)
{
	FILE *f = fopen(file, "r");
	if (!f)
		return cfg_fail(d, map, key, "%s: %s", file, strerror(errno));
	fclose(f);
	return 0;
}

/* One certificate and key pair (connector_tls or mtls_tls, under the mapping tkey): both readable, loading,
 * the key matching the certificate (errors); the certificate expired or not valid yet, without a DNS or IP
 * name, or its key readable by others (warnings). */
static int pf_pair(cfg_doc *d, cfg_node *root, const char *tkey, const char *cert, const char *key, const char *who)
{
	cfg_node *m = cfg_get(root, tkey);
	char err[512];
	SSL_CTX *ctx;
	X509 *x;
	GENERAL_NAMES *gens;
	struct stat st;
	bool named = false;
	int rc;

	if (!cfg_is_map(m))
		m = root;
	if ((rc = pf_readable(d, m, "cert_file", cert)) < 0 || (rc = pf_readable(d, m, "key_file", key)) < 0)
		return rc;
	if (!(ctx = tio_server_ctx(cert, key, false, err, sizeof err)))
		return cfg_fail(d, root, tkey, "%s", err);
	x = SSL_CTX_get0_certificate(ctx);
	if (x && X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
		cfg_warn(d, m, "cert_file", "%s: the certificate has expired: %s will refuse it", cert, who);
	else if (x && X509_cmp_current_time(X509_get0_notBefore(x)) > 0)
		cfg_warn(d, m, "cert_file", "%s: the certificate is not valid yet (check the clock): %s will refuse it", cert, who);
	if (x && (gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL))) {
		for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
			const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
			named |= g->type == GEN_DNS || g->type == GEN_IPADD;
		}
		GENERAL_NAMES_free(gens);
	}
	if (x && !named)
		cfg_warn(d, m, "cert_file", "%s: the certificate names no host (no DNS or IP subjectAltName): %s check the "
			 "edge's name against it (postern certs init --domain EDGE_HOST)", cert, who);
	if (stat(key, &st) == 0 && (st.st_mode & 077))
		cfg_warn(d, m, "key_file", "%s is readable by %s (mode %04o): chmod 600 %s", key,
			 st.st_mode & 007 ? "all users" : "its group", (unsigned)(st.st_mode & 07777), key);
	SSL_CTX_free(ctx);
	return 0;
}

/* A CA bundle with at least one certificate. */
static int pf_ca(cfg_doc *d, cfg_node *map, const char *key, const char *file)
{
	X509_STORE *s = X509_STORE_new();
	char buf[200];
	int rc = 0;
	if ((rc = pf_readable(d, map, key, file)) < 0)
		goto out;
	ERR_clear_error();
	if (!s || X509_STORE_load_file(s, file) != 1)
		rc = cfg_fail(d, map, key, "%s: not a CA bundle: %s", file, tio_ssl_errors(buf, sizeof buf));
out:
	X509_STORE_free(s);
	return rc;
}

static int pf_state_dir(cfg_doc *d, cfg_node *root, const char *dir)
{
	struct stat st;
	if (stat(dir, &st) != 0) {
		if (errno == ENOENT)
			return 0; /* tok_open creates it (0700), as `postern tunnel create` does */
		return cfg_fail(d, root, "state_dir", "%s: %s", dir, strerror(errno));
	}
	if (!S_ISDIR(st.st_mode))
		return cfg_fail(d, root, "state_dir", "%s: not a directory", dir);
	if (access(dir, W_OK | X_OK) != 0)
		return cfg_fail(d, root, "state_dir", "%s: not writable: %s (the tunnel database is kept there)", dir, strerror(errno));
	return 0;
}

int edge_config_preflight(const edge_config *c, void (*warn)(void *ud, const char *w), void *ud, char *err,
			  size_t errlen)
{
	cfg_doc *d = cfg_load(c->path, err, errlen);
	cfg_node *root;
	int rc;
	if (!d)
		return -EINVAL;
	root = cfg_root(d);
	if ((rc = pf_state_dir(d, root, c->state_dir)) < 0 ||
	    (rc = pf_pair(d, root, "connector_tls", c->connector_cert, c->connector_key, "connectors")) < 0)
		goto out;
	if (c->mtls_listen) {
		cfg_node *b = cfg_get(root, "mtls_tunnels");
		if (c->mtls_cert && (rc = pf_pair(d, root, "mtls_tls", c->mtls_cert, c->mtls_key, "mTLS clients")) < 0)
			goto out;
		if ((rc = pf_ca(d, root, "client_ca_file", c->client_ca_file)) < 0)
			goto out;
		for (size_t i = 0; i < c->n_mtls_binds; i++) {
			cfg_node *t = cfg_get(b, c->mtls_binds[i].tunnel);
			if (c->mtls_binds[i].ca_file && (rc = pf_ca(d, cfg_is_map(t) ? t : b, "client_ca_file", c->mtls_binds[i].ca_file)) < 0)
				goto out;
		}
	}
	rc = 0;
out:
	if (rc < 0)
		snprintf(err, errlen, "%s", cfg_error(d) ? cfg_error(d) : "invalid config");
	else
		for (size_t i = 0; warn && i < cfg_warning_count(d); i++)
			warn(ud, cfg_warning(d, i));
	cfg_free(d);
	return rc < 0 ? -EINVAL : 0;
}
