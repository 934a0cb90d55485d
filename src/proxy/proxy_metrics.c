/* Per-route request metrics of the proxy: counted once per exchange where it is logged (pxi_log_request), and
 * the requests in flight, counted from the live connections when the metrics are rendered.
 * Labels: route is a configured route's name ("-" when the request matched none), code the status class:
 * both finite, whatever the client sends. Names and meanings: docs/metrics.md. */
#include "proxy/proxy_int.h"

#include "core/admin.h"

/* MCP requests run from a few milliseconds (a tools/list on loopback) to a minute (a tool call, an SSE
 * stream); an exchange longer than the last bound counts only in +Inf. */
static const double duration_bounds[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60 };

static const char *status_class(unsigned status)
{
	static const char *const cls[] = { "1xx", "2xx", "3xx", "4xx", "5xx" };
	/* 0: the exchange ended before any status went out (the client went away, the connection broke). */
	return status >= 100 && status < 600 ? cls[status / 100 - 1] : "none";
}

void pxi_metrics_request(const px_conn *c)
{
	char rl[300], l[340];
	adm_label(rl, sizeof rl, "route", c->rt ? c->rt->name : "-");
	snprintf(l, sizeof l, "%s,code=\"%s\"", rl, status_class(c->status));
	adm_add(adm_counter("postern_proxy_requests_total", "Requests by route and status class", l), 1);
	adm_observe(adm_histogram("postern_proxy_request_duration_seconds",
				  "Time from a request's first byte to the end of its response, by route", rl,
				  duration_bounds, sizeof duration_bounds / sizeof duration_bounds[0]),
		    pxi_ms_since(c->t0) / 1000.0);
	adm_add(adm_counter("postern_proxy_request_bytes_total", "Request bytes (head and body) from clients, by route",
			    rl),
		(int64_t)c->req_bytes);
	adm_add(adm_counter("postern_proxy_response_bytes_total", "Response bytes (head and body) to clients, by route",
			    rl),
		(int64_t)c->resp_bytes);
}

/* Requests whose route is known and whose exchange is not logged yet, per route; an SSE stream is one for its
 * whole life. */
static void collect_active(void *ud)
{
	const px *p = ud;
	const route_table *rt = &p->cfg->routes;
	char l[300];
	for (size_t i = 0; i < rt->n; i++) {
		int64_t n = 0;
		/* By name: an exchange begun before a reload points into its own generation's table. */
		for (const px_conn *c = p->conns; c; c = c->next)
			n += c->in_exchange && !c->logged && c->rt && !strcmp(c->rt->name, rt->v[i].name);
		adm_set(adm_gauge("postern_proxy_requests_active", "Requests in flight (an SSE stream counts for its whole life), by route",
				  adm_label(l, sizeof l, "route", rt->v[i].name)),
			n);
	}
}

void pxi_metrics_start(px *p)
{
	/* Without a collector slot the gauge is missing, nothing else: not worth failing the proxy for. */
	if (adm_collector_add(collect_active, p) < 0)
		log_warn("msg=\"postern_proxy_requests_active not collected: too many collectors\"");
}

void pxi_metrics_stop(px *p) { adm_collector_remove(collect_active, p); }
