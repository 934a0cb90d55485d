/* SIGHUP for `postern edge` (edge_reload): a config loaded again is applied to the running edge, all of it or
 * nothing. Live: the TLS certificates and keys (connector_tls, mtls_tls, client_ca_file, mtls_tunnels), the
 * client caps (client_allowed_ips, client_hello_budget, client_pending_*, client_hello_timeout*), the
 * registration limit and edge_id. The listeners, state_dir and domain keep their running values until a
 * restart. Tokens need no reload: they are read from the database at every registration; the reload also
 * closes the links of tunnels deleted since, at once rather than at the next periodic check. */
#include "tunnel/edge_int.h"

static bool same(const char *a, const char *b) { return a == b || (a && b && !strcmp(a, b)); }

static void swap_str(char **a, char **b)
{
	char *t = *a;
	*a = *b;
	*b = t;
}

static void note(char *out, size_t len, const char *key)
{
	size_t n = strlen(out);
	if (n + strlen(key) + 2 < len)
		snprintf(out + n, len - n, "%s%s", n ? "," : "", key);
}

/* The keys a reload cannot change live (listeners, the tunnel database and its domain). */
enum { K_STATE_DIR, K_DOMAIN, K_CONNECTOR_LISTEN, K_CLIENT_LISTEN, K_METRICS_LISTEN, K_MTLS_LISTEN, K_MTLS_ENTRY, K_N };

static char **fixed_field(edge_config *c, int k)
{
	switch (k) {
	case K_STATE_DIR: return &c->state_dir;
	case K_DOMAIN: return &c->domain;
	case K_CONNECTOR_LISTEN: return &c->connector_listen;
	case K_CLIENT_LISTEN: return &c->client_listen;
	case K_METRICS_LISTEN: return &c->metrics_listen;
	default: return &c->mtls_listen;
	}
}

static const char *const fixed_names[K_MTLS_ENTRY] = { "state_dir", "domain", "connector_listen", "client_listen",
						       "metrics_listen", "mtls_listen" };

/* Which of them changed, named in restart. mtls_listen appearing or going away (K_MTLS_ENTRY) takes the keys
 * that configure the entry with it, so that the running entry stays as consistent as it started. */
static unsigned changed_fixed(edge_config *run, edge_config *nc, char *restart, size_t rlen)
{
	unsigned m = 0;
	for (int k = 0; k < K_MTLS_ENTRY; k++)
		if (!same(*fixed_field(run, k), *fixed_field(nc, k))) {
			m |= 1u << k;
			note(restart, rlen, fixed_names[k]);
		}
	if (!run->mtls_listen != !nc->mtls_listen)
		m |= 1u << K_MTLS_ENTRY;
	return m;
}

/* Exchanges the fields of mask between run and nc: once to give nc the running values, once more to undo. */
static void exchange(edge_config *run, edge_config *nc, unsigned mask)
{
	for (int k = 0; k < K_MTLS_ENTRY; k++)
		if (mask & (1u << k))
			swap_str(fixed_field(run, k), fixed_field(nc, k));
	if (mask & (1u << K_MTLS_ENTRY)) {
		edge_mtls_bind *b = run->mtls_binds;
		size_t nb = run->n_mtls_binds;
		swap_str(&run->mtls_cert, &nc->mtls_cert);
		swap_str(&run->mtls_key, &nc->mtls_key);
		swap_str(&run->client_ca_file, &nc->client_ca_file);
		run->mtls_binds = nc->mtls_binds;
		run->n_mtls_binds = nc->n_mtls_binds;
		nc->mtls_binds = b;
		nc->n_mtls_binds = nb;
	}
}

static bool reglim_same(const edge_config *a, const edge_config *b)
{
	return a->reg_failures == b->reg_failures && a->reg_window_ms == b->reg_window_ms &&
	       a->reg_block_ms == b->reg_block_ms;
}

int edge_reload(edge *e, edge_config *nc, char *restart, size_t restartlen, char *err, size_t errlen)
{
	edge_config old;
	struct edge_tls nt;
	srl *nsrl = NULL;
	size_t old_binds = e->cfg.n_mtls_binds, rebound = 0;
	unsigned mask = 0;
	bool new_reglim;
	int rc;

	memset(&nt, 0, sizeof nt);
	restart[0] = 0;
	if (e->stopping) {
		snprintf(err, errlen, "%s: not reloaded: the edge is stopping", nc->path);
		rc = -EBUSY;
		goto fail;
	}
	/* nc gets the running values of the keys a reload cannot change (e->cfg holds the new ones until the
	 * commit or the undo; nothing on the loop runs in between). */
	mask = changed_fixed(&e->cfg, nc, restart, restartlen);
	exchange(&e->cfg, nc, mask);
	/* Everything that can fail, into temporaries: a certificate that does not load, a key that does not
	 * match, a CA file gone. */
	if ((rc = edgi_tls_make(nc, &nt, err, errlen)) < 0)
		goto undo;
	new_reglim = !reglim_same(&e->cfg, nc);
	if (new_reglim && (rc = edgi_reglim_new(nc, &nsrl, err, errlen)) < 0)
		goto undo;
	/* Commit: nothing below fails. */
	edgi_tls_free(&e->tls, old_binds);
	e->tls = nt;
	if (new_reglim) {
		srl_free(e->reglim); /* counts start again under the new limit */
		e->reglim = nsrl;
	}
	old = e->cfg;
	e->cfg = *nc;
	memset(nc, 0, sizeof *nc);
	edge_config_free(&old);
	if (new_reglim)
		edgi_reglim_start(e);
	for (struct tunnel *t = e->tunnels; t; t = t->next) {
		int b = -1;
		for (size_t i = 0; i < e->cfg.n_mtls_binds; i++)
			if (!strcmp(e->cfg.mtls_binds[i].tunnel, t->name))
				b = (int)i;
		rebound += b != t->bind;
		t->bind = b;
	}
	log_info("msg=\"edge config applied\" connector_cert=%s mtls=%s mtls_tunnels=%zu rebound=%zu "
		 "client_pending_max=%lld client_hello_budget=%llu registration_limit=%s",
		 e->cfg.connector_cert, e->cfg.mtls_listen ? "on" : "off", e->cfg.n_mtls_binds, rebound,
		 (long long)e->cfg.client_pending_max, (unsigned long long)e->cfg.client_hello_budget,
		 new_reglim ? "changed" : "unchanged");
	/* Connections already open keep the certificate and the mTLS binding they were accepted with. */
	edgi_recheck(e);
	return 0;
undo:
	edgi_tls_free(&nt, nc->n_mtls_binds); /* nt was made from nc as exchanged */
	exchange(&e->cfg, nc, mask);
fail:
	edgi_tls_free(&nt, nc->n_mtls_binds);
	srl_free(nsrl);
	edge_config_free(nc);
	return rc;
}
