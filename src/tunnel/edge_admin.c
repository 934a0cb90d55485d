/* The edge's answers on its metrics listener besides /metrics and /healthz:
 *  - /ready: 200 while the edge can take connectors and clients (its listeners are bound, which edge_new
 *    made sure of, and its token store answers a query), else 503 with the reason. It does not wait for a
 *    connector: an edge nobody has registered with yet must still be offered to connectors.
 *  - /tunnels: the live connector connections of each tunnel, as JSON, for `postern tunnel list|info`.
 *    Connector addresses are not for the world: answered only when metrics_listen is a loopback address. */
#include "tunnel/edge_int.h"

#include <jansson.h>

int64_t edgi_wall_ms(void)
{
	uv_timeval64_t tv;
	if (uv_gettimeofday(&tv) < 0)
		return 0;
	return tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static bool is_loopback(const char *addr)
{
	struct sockaddr_storage ss;
	if (na_parse_sockaddr(addr, true, &ss) < 0)
		return false;
	if (ss.ss_family == AF_INET)
		return (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
	if (ss.ss_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr);
	return false;
}

static void reply_json(adm_resp *r, int status, json_t *o)
{
	char *s = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	if (!s)
		adm_reply(r, 500, NULL, "out of memory\n", 14);
	else
		adm_reply(r, status, "application/json", s, strlen(s));
	free(s);
	json_decref(o);
}

static void ready_handler(const char *method, const char *path, adm_resp *r, void *ud)
{
	struct edge *e = ud;
	char why[300] = "";
	int tunnels = 0, conns = 0, rc;
	json_t *o;
	(void)method;
	(void)path;
	/* Any id that is not a tunnel's: a working store answers -ENOENT (waiting TOK_LOOP_BUSY_MS at most). */
	if (e->stopping)
		snprintf(why, sizeof why, "the edge is stopping");
	else if ((rc = tok_get_by_id(e->tok, "0readyprobe0", NULL)) != -ENOENT && rc < 0)
		snprintf(why, sizeof why, "token store unavailable: %s", tok_errstr(e->tok));
	for (struct tunnel *t = e->tunnels; t; t = t->next) {
		int n = (int)adm_value(t->m_conns);
		tunnels += n > 0;
		conns += n;
	}
	o = json_pack("{s:s,s:s,s:i,s:i,s:{s:s,s:s,s:s?}}", "status", why[0] ? "not ready" : "ready", "edge_id",
		      e->cfg.edge_id, "tunnels_connected", tunnels, "connector_connections", conns, "listeners",
		      "connector", e->addr_conn, "client", e->addr_cli, "mtls", e->have_mtls ? e->addr_mtls : NULL);
	if (o && why[0])
		json_object_set_new(o, "reason", json_string(why));
	reply_json(r, why[0] ? 503 : 200, o);
}

static json_t *conn_json(const struct cconn *cc)
{
	return json_pack("{s:s,s:i,s:s,s:I,s:i,s:s,s:s,s:s}", "connector_id", cc->connector_id, "slot", (int)cc->slot,
			 "remote", cc->peer, "since_ms", (json_int_t)cc->since_ms, "streams", cc->nstreams, "protocol",
			 "postern/1 (TLS 1.3, HTTP/2)", "version", cc->version, "state", cc->goaway ? "draining" : "live");
}

/* json_object_set_new takes its value whatever happens, so a failed step leaks nothing. */
static json_t *tunnel_json(const struct tunnel *t)
{
	json_t *a = json_array(), *o = json_pack("{s:s,s:s,s:I,s:I,s:I,s:I}", "id", t->id, "domain", t->domain,
						 "streams_active", (json_int_t)adm_value(t->m_active), "streams_total",
						 (json_int_t)adm_value(t->m_streams), "bytes_to_connector",
						 (json_int_t)adm_value(t->m_up), "bytes_to_client", (json_int_t)adm_value(t->m_down));
	bool ok = a && o;
	for (const struct cconn *cc = t->conns; cc && ok; cc = cc->next)
		if (cc->registered && !cc->closing)
			ok = json_array_append_new(a, conn_json(cc)) == 0;
	if (ok && json_object_set_new(o, "connections", a) == 0)
		return o;
	if (!ok)
		json_decref(a);
	json_decref(o);
	return NULL;
}

static void tunnels_handler(const char *method, const char *path, adm_resp *r, void *ud)
{
	struct edge *e = ud;
	json_t *a, *o;
	(void)method;
	(void)path;
	if (!is_loopback(e->cfg.metrics_listen)) {
		reply_json(r, 403, json_pack("{s:s}", "error", "/tunnels is served only when metrics_listen is a loopback address"));
		return;
	}
	a = json_array();
	for (const struct tunnel *t = e->tunnels; t && a; t = t->next)
		if (json_array_append_new(a, tunnel_json(t)) < 0) {
			json_decref(a);
			a = NULL;
		}
	o = json_pack("{s:s,s:I}", "edge_id", e->cfg.edge_id, "now_ms", (json_int_t)edgi_wall_ms());
	if (!a || !o || json_object_set_new(o, "tunnels", a) < 0) {
		if (!o)
			json_decref(a);
		json_decref(o);
		o = NULL;
	}
	reply_json(r, 200, o);
}

int edgi_admin_routes(struct edge *e)
{
	int rc;
	if ((rc = adm_handle(e->adm, "/ready", ready_handler, e)) < 0 || (rc = adm_handle(e->adm, "/tunnels", tunnels_handler, e)) < 0)
		return rc;
	return 0;
}
