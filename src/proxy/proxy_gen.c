/* Generations of the proxy (proxy_int.h, "pxgen") and live reload: what a config builds (the https upstream
 * context, the MCP bridges of stdio:/sandbox: routes, the jwks_url fetchers), what a reload carries over from
 * the running generation, and when an old generation's parts go.
 *
 * Lifetimes: an exchange holds the generation it began on; the px holds the newest; a retired generation
 * holds the newer one. A bridge or fetcher a reload carries over belongs to the newest generation that has
 * it, which so outlives every older one still using it. A retired generation's own bridges (routes removed or
 * changed) go as soon as no exchange of that generation is on their route, the generation itself once nothing
 * holds it: both from the loop (gtimer), never from inside a bridge's callback that led there. */
#include "proxy/proxy_int.h"
#include "core/dirs.h"
#include "core/err.h"
#include "guard/auth.h"
#include "proxy/auditlog.h"
#include "proxy/jwks.h"

static bool any_https(const px_config *cfg)
{
	for (size_t i = 0; i < cfg->routes.n; i++)
		if (cfg->routes.v[i].kind == ROUTE_HTTPS)
			return true;
	return false;
}

/* stdio: routes run their command; sandbox: routes run this binary's `sandbox serve --stdio`. */
static mbr *make_bridge(px *p, const route *r, char *err, size_t errlen)
{
	const char *argv[80];
	char exe[4096], idle[32], q[600];
	size_t na = 0;
	ssize_t n;
	mbr_opts o;
	mbr *b;

	memset(&o, 0, sizeof o);
	if (r->kind == ROUTE_SANDBOX) {
		n = readlink("/proc/self/exe", exe, sizeof exe - 1);
		if (n <= 0) {
			snprintf(err, errlen, "route %s: cannot find the postern binary: %s", r->name, strerror(errno));
			return NULL;
		}
		exe[n] = 0;
		argv[na++] = exe;
		argv[na++] = "sandbox";
		argv[na++] = "serve";
		argv[na++] = "--stdio";
		/* The bridge ends idle sessions; the server's own idle timer must not fire first. */
		snprintf(idle, sizeof idle, "%ums", (r->idle_timeout_ms ? r->idle_timeout_ms : 30u * 60 * 1000) + 60000u);
		argv[na++] = "--idle-timeout";
		argv[na++] = idle;
	}
	for (size_t k = 0; r->argv && r->argv[k] && na < 78; k++)
		argv[na++] = r->argv[k];
	argv[na] = NULL;
	o.name = r->name;
	o.argv = argv;
	o.workspace_root = r->workspace_root;
	if (r->workspace_root) {
		bool made = false;
		if (dirs_make(r->workspace_root, 0700, &made, err, errlen) < 0)
			return NULL;
		if (made)
			log_info("msg=\"created the workspace root\" route=%s dir=%s mode=0700", r->name,
				 log_quote(r->workspace_root, q, sizeof q));
	}
	o.max_sessions = r->max_sessions;
	o.idle_timeout_ms = r->idle_timeout_ms;
	o.reclaim_idle_ms = r->reclaim_idle_ms;
	if (!(b = mbr_new(p->loop, &o, err, errlen)))
		return NULL;
	log_info("msg=\"mcp route ready\" route=%s kind=%s command=%s", r->name, route_kind_name(r->kind), argv[0]);
	return b;
}

/* Bridges of one route name share metric series: the last one alive of a name drops them. Older generations
 * that handed b on forget it too. */
static void free_bridge(px *p, mbr *b, const char *name)
{
	bool shared = false;
	for (pxgen *g = p->gens; g; g = g->next)
		for (size_t i = 0; i < g->cfg->routes.n; i++) {
			if (g->r[i].bridge == b)
				g->r[i].bridge = NULL;
			else if (g->r[i].bridge && !strcmp(g->cfg->routes.v[i].name, name))
				shared = true;
		}
	if (shared)
		mbr_forget_metrics(b);
	mbr_free(b);
}

static void gen_free(pxgen *g)
{
	for (size_t i = 0; g->r && i < g->cfg->routes.n; i++) {
		if (g->r[i].own_bridge)
			free_bridge(g->px, g->r[i].bridge, g->cfg->routes.v[i].name);
		if (g->r[i].own_jwks)
			jwks_free(g->r[i].jwks); /* before its auth goes with the config */
	}
	free(g->r);
	SSL_CTX_free(g->uctx);
	px_config_free(g->owned);
	free(g);
}

pxgen *pxi_gen_build(px *p, const px_config *cfg, const pxgen *old, const px_route_carry *plan, char *err,
		     size_t errlen)
{
	pxgen *g = calloc(1, sizeof *g);
	char buf[200], m[300];

	if (!g || !(g->r = calloc(cfg->routes.n ? cfg->routes.n : 1, sizeof *g->r))) {
		free(g);
		err_set(err, errlen, -ENOMEM, "out of memory");
		return NULL;
	}
	g->px = p;
	g->cfg = cfg;
	if (any_https(cfg)) {
		if (!(g->uctx = tio_client_ctx(cfg->upstream_ca_file, NULL, NULL, false, err, errlen)))
			goto fail;
		if (cfg->upstream_ca_file && cfg->include_system_cas && SSL_CTX_set_default_verify_paths(g->uctx) != 1) {
			snprintf(err, errlen, "cannot load the system CA store: %s", tio_ssl_errors(buf, sizeof buf));
			goto fail;
		}
		SSL_CTX_set_alpn_protos(g->uctx, (const unsigned char *)"\x08http/1.1", 9);
	}
	for (size_t i = 0; i < cfg->routes.n; i++) {
		const route *r = &cfg->routes.v[i];
		const px_route_carry *k = old && plan ? &plan[i] : NULL;
		auth *a = i < cfg->nguards ? cfg->guards[i].auth : NULL;

		if (k && k->keep_bridge) {
			g->r[i].bridge = old->r[k->old].bridge; /* handed over at commit */
		} else if (route_is_mcp(r)) {
			if (!(g->r[i].bridge = make_bridge(p, r, err, errlen)))
				goto fail;
			g->r[i].own_bridge = true;
		}
		/* jwt routes with jwks_url: their key sets are fetched (and kept fresh) from the start. */
		if (k && k->keep_auth) {
			g->r[i].jwks = old->r[k->old].jwks;
		} else if (a && auth_jwks_url(a)) {
			if (jwks_new(p->loop, a, NULL, &g->r[i].jwks, m, sizeof m) < 0) {
				err_set(err, errlen, -EINVAL, "route %s: %s", r->name, m);
				goto fail;
			}
			g->r[i].own_jwks = true;
		}
	}
	return g;
fail:
	gen_free(g);
	return NULL;
}

void pxi_gen_discard(pxgen *g)
{
	if (g)
		gen_free(g);
}

/* An exchange of any generation (an older one may have handed b on) is on b's route. */
static bool bridge_busy(const px *p, const mbr *b)
{
	for (const pxgen *g = p->gens; g; g = g->next)
		for (size_t i = 0; i < g->cfg->routes.n; i++)
			if (g->r[i].bridge == b && g->r[i].busy)
				return true;
	return false;
}

/* Frees what retired generations no longer need; loops since a freed generation lets go of the newer. */
static void sweep(px *p)
{
	char q[300];
	bool again = true;
	while (again) {
		again = false;
		for (pxgen *g = p->gens, *next; g; g = next) {
			next = g->next;
			if (!g->retired)
				continue;
			for (size_t i = 0; i < g->cfg->routes.n; i++) {
				pxgen_route *r = &g->r[i];
				if (!r->own_bridge || !r->bridge || bridge_busy(p, r->bridge))
					continue;
				log_info("msg=\"mcp route retired by a reload: its sessions end\" route=%s generation=%u sessions=%u",
					 log_quote(g->cfg->routes.v[i].name, q, sizeof q), g->id, mbr_sessions(r->bridge));
				free_bridge(p, r->bridge, g->cfg->routes.v[i].name);
				r->bridge = NULL;
				r->own_bridge = false;
			}
			if (g->refs == 0) {
				pxgen *nw = g->newer;
				LIST_UNLINK(g, next, pprev);
				gen_free(g);
				if (nw && --nw->refs == 0)
					again = true;
			}
		}
	}
}

static void on_sweep(uv_timer_t *t) { sweep(t->data); }

static void sweep_soon(px *p)
{
	/* Once px_free ran, its own teardown frees the bridges, and px_final_free what is left. */
	if (!p->freeing)
		uv_timer_start(&p->gtimer, on_sweep, 0, 0);
}

static void gen_unref(pxgen *g)
{
	if (--g->refs == 0)
		sweep_soon(g->px);
}

void pxi_gen_commit(px *p, pxgen *g, px_config *owned, const px_route_carry *plan)
{
	pxgen *old = p->gen;

	g->owned = owned;
	g->id = ++p->ngen;
	if (old && plan) {
		/* The configs' const is the px's promise to its owner (px_new): what moves here are equal objects. */
		px_config *oc = (px_config *)old->cfg, *nc = (px_config *)g->cfg;
		for (size_t i = 0; i < nc->routes.n; i++) {
			const px_route_carry *k = &plan[i];
			if (k->keep_bridge) {
				old->r[k->old].own_bridge = false;
				g->r[i].own_bridge = true;
			}
			if (k->keep_auth) {
				/* The fetcher feeds the running auth: it moves to the new config, which frees it; the old
				 * config gets the new (equal) one for its exchanges still in flight. */
				auth *a = oc->guards[k->old].auth;
				oc->guards[k->old].auth = nc->guards[i].auth;
				nc->guards[i].auth = a;
				old->r[k->old].own_jwks = false;
				g->r[i].own_jwks = true;
			}
		}
	}
	LIST_PUSH(p->gens, g, next, pprev);
	g->refs++; /* the px's */
	p->gen = g;
	p->cfg = g->cfg;
	if (!old)
		return;
	old->retired = true;
	old->newer = g;
	g->refs++;
	/* The old generation's own bridges serve routes that are gone or changed: their GET streams end now (a
	 * client reconnecting reaches the new config), POSTs in flight get their answers, then sweep ends them. */
	for (size_t i = 0; i < old->cfg->routes.n; i++)
		if (old->r[i].own_bridge && old->r[i].bridge)
			mbr_drain(old->r[i].bridge);
	gen_unref(old);
	sweep_soon(p);
}

void pxi_gen_enter(px_conn *c)
{
	pxi_gen_leave(c);
	c->gen = c->px->gen;
	c->gen->refs++;
}

void pxi_gen_route(px_conn *c) { pxi_rstate(c)->busy++; }

void pxi_gen_leave(px_conn *c)
{
	pxgen *g = c->gen;
	if (!g)
		return;
	if (c->rt) {
		pxgen_route *r = pxi_rstate(c);
		if (--r->busy == 0 && g->retired && r->bridge)
			sweep_soon(c->px);
	}
	c->rt = NULL;
	c->gen = NULL;
	gen_unref(g);
}

void pxi_gen_drain(px *p)
{
	for (pxgen *g = p->gens; g; g = g->next)
		for (size_t i = 0; i < g->cfg->routes.n; i++)
			if (g->r[i].own_bridge && g->r[i].bridge)
				mbr_drain(g->r[i].bridge);
}

void pxi_gen_free_all(px *p)
{
	for (pxgen *g = p->gens; g; g = g->next)
		for (size_t i = 0; i < g->cfg->routes.n; i++) {
			pxgen_route *r = &g->r[i];
			if (r->own_bridge)
				mbr_free(r->bridge);
			if (r->own_jwks)
				jwks_free(r->jwks);
			r->bridge = NULL;
			r->jwks = NULL;
			r->own_bridge = r->own_jwks = false;
		}
}

void pxi_gen_release(px *p)
{
	/* No connection is left: every generation goes, oldest first (each lets go of the newer). */
	for (pxgen *g = p->gens; g; g = g->next)
		g->retired = true;
	if (p->gen)
		p->gen->refs--;
	p->gen = NULL;
	sweep(p);
}

/* ---- reload ------------------------------------------------------------------------------------------- */

static bool str_same(const char *a, const char *b) { return a == b || (a && b && !strcmp(a, b)); }

/* A changed audit block: the running sinks close first (the file is locked, one writer per chain) and the new
 * ones open; the chain resumes from the file's tail as after a restart. When the new ones fail to open the
 * running ones are opened again and the reload fails; when even that fails no sink is left and the guard
 * refuses the calls it should record (audit_sink) until a reload that works. */
static int reopen_audit(px *p, const px_config *cfg, char *err, size_t errlen)
{
	char m[300], m2[300], q[700];
	alog_free(p->alog);
	p->alog = NULL;
	if (!cfg->audit) {
		pxi_audit_use(p, cfg);
		return 0;
	}
	if ((p->alog = alog_new(p->loop, cfg->audit, m, sizeof m))) {
		pxi_audit_use(p, cfg);
		return 0;
	}
	if (p->cfg->audit && !(p->alog = alog_new(p->loop, p->cfg->audit, m2, sizeof m2))) {
		log_error("msg=\"audit sinks lost: the running ones could not be opened again; guarded calls are refused "
			  "until a reload that works\" err=%s", log_quote(m2, q, sizeof q));
		pxi_audit_use(p, p->cfg);
	}
	return err_set(err, errlen, -EINVAL, "audit: %s (the running audit sinks stay)", m);
}

/* Names into buf, comma-separated, cut with "..." when they do not fit. */
static void add_name(char *buf, size_t len, const char *name)
{
	size_t n = strlen(buf);
	if (n + strlen(name) + 5 >= len) {
		if (n + 4 < len && (n < 3 || strcmp(buf + n - 3, "...")))
			snprintf(buf + n, len - n, "%s...", n ? "," : "");
		return;
	}
	snprintf(buf + n, len - n, "%s%s", n ? "," : "", name);
}

int px_reload(px *p, px_config *cfg, char *err, size_t errlen)
{
	const px_config *old = p->cfg;
	px_route_carry *plan = NULL;
	pxgen *g = NULL;
	SSL_CTX *sctx = NULL;
	char m[512], added[300] = "", changed[300] = "", removed[300] = "", kept[300] = "", sum[400];
	char qa[400], qc[400], qr[400], qk[400];
	bool same_audit = str_same(old->audit_src, cfg->audit_src);
	int rc;

	if (p->draining || p->freeing)
		return err_set(err, errlen, -EBUSY, "the proxy is shutting down");
	if (!(plan = calloc(cfg->routes.n ? cfg->routes.n : 1, sizeof *plan)))
		return err_set(err, errlen, -ENOMEM, "out of memory");
	px_reload_plan(old, cfg, plan, NULL);
	/* The pair as it is now, held to the new routes and tunnel_domain like a hot-reloaded one. */
	if (!(sctx = pxi_load_server_ctx(cfg, m, sizeof m)) || px_cert_check_domain(cfg, sctx, m, sizeof m) < 0) {
		rc = err_set(err, errlen, -EINVAL, "tls: %s", m);
		goto out;
	}
	if (!(g = pxi_gen_build(p, cfg, p->gen, plan, m, sizeof m))) {
		rc = err_set(err, errlen, -EINVAL, "%s", m);
		goto out;
	}
	if (!same_audit && (rc = reopen_audit(p, cfg, err, errlen)) < 0)
		goto out;

	/* Nothing fails from here on. */
	if (same_audit) {
		/* The running sinks carry on (their hash chain too); their config moves to the new one. */
		struct alog_config *a = ((px_config *)old)->audit;
		((px_config *)old)->audit = cfg->audit;
		cfg->audit = a;
	}
	for (size_t i = 0; i < cfg->routes.n; i++) {
		const char *name = cfg->routes.v[i].name;
		add_name(plan[i].old < 0 ? added : plan[i].same ? kept : changed, sizeof added, name);
	}
	for (size_t j = 0; j < old->routes.n; j++) {
		bool there = false;
		for (size_t i = 0; i < cfg->routes.n && !there; i++)
			there = plan[i].old == (long)j;
		if (!there)
			add_name(removed, sizeof removed, old->routes.v[j].name);
	}
	pxi_gen_commit(p, g, cfg, plan);
	g = NULL;
	SSL_CTX_free(p->sctx);
	p->sctx = sctx;
	sctx = NULL;
	pxi_file_id_get(cfg->cert_file, &p->cert_id);
	pxi_file_id_get(cfg->key_file, &p->key_id);
	/* An idle keep-alive connection keeps its client; its upstream was dialled for the old route. */
	for (px_conn *c = p->conns; c; c = c->next)
		if (!c->gen && c->up) {
			pxi_enter(c);
			pxi_up_detach(c);
			pxi_leave(c);
		}
	pxi_cert_summary(p->sctx, sum, sizeof sum);
	log_info("msg=\"proxy config reloaded\" generation=%u routes=%zu added=%s changed=%s removed=%s unchanged=%s "
		 "audit=%s %s", p->ngen, cfg->routes.n, log_quote(added[0] ? added : "-", qa, sizeof qa),
		 log_quote(changed[0] ? changed : "-", qc, sizeof qc), log_quote(removed[0] ? removed : "-", qr, sizeof qr),
		 log_quote(kept[0] ? kept : "-", qk, sizeof qk), !cfg->audit ? "off" : same_audit ? "kept" : "reopened", sum);
	rc = 0;
out:
	pxi_gen_discard(g);
	SSL_CTX_free(sctx);
	free(plan);
	return rc;
}
