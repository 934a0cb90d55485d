#include "tunnel/connector_int.h"
/* ------------------------------------------------------------------ config */

const char *const ctr_config_keys[] = {
	"token_file", "edges", "edge_ca_file", "edge_server_name", "connections", "metrics_listen",
	"ping_interval", "ping_timeout", "shutdown_timeout", NULL,
};

int ctr_config_init(ctr_config *c)
{
	memset(c, 0, sizeof *c);
	c->connections = 4;
	c->ping_interval_ms = 5000;
	c->ping_timeout_ms = 10000;
	c->shutdown_timeout_ms = 30000;
	c->backoff_base_ms = BO_DEFAULT_BASE_MS;
	c->backoff_cap_ms = BO_DEFAULT_CAP_MS;
	c->dial_timeout_ms = 10000;
	c->stream_window = 256 * 1024;
	c->conn_window = 32 * 1024 * 1024;
	c->max_streams = 1000;
	c->stream_high_water = 256 * 1024;
	c->stream_low_water = 64 * 1024;
	if (!(c->metrics_listen = strdup("127.0.0.1:20251")))
		return -ENOMEM;
	return 0;
}

void ctr_config_free(ctr_config *c)
{
	if (!c)
		return;
	free(c->token_file);
	cfg_strv_free(c->edges);
	free(c->edge_ca_file);
	free(c->edge_server_name);
	free(c->metrics_listen);
	free(c);
}

/* Reads and trims the token. 0, or -errno / -ENODATA (empty) / -EFBIG. */
int ctri_read_token_file(const char *path, char **out, char *err, size_t errlen, char *warn, size_t warnlen)
{
	sfile f;
	size_t n, a = 0;
	int rc = sfile_read(path, TOKEN_FILE_MAX, SFILE_SHARED_OK, &f, err, errlen);
	if (warnlen)
		warn[0] = 0;
	if (rc < 0)
		return rc;
	sfile_exposure(&f, path, warn, warnlen);
	n = f.len;
	while (n > 0 && (f.data[n - 1] == '\n' || f.data[n - 1] == '\r' || f.data[n - 1] == ' ' || f.data[n - 1] == '\t'))
		n--;
	while (a < n && (f.data[a] == ' ' || f.data[a] == '\t' || f.data[a] == '\n' || f.data[a] == '\r'))
		a++;
	if (a == n)
		rc = err_set(err, errlen, -ENODATA, "%s is empty: it should hold the tunnel token", path);
	else if (memchr(f.data + a, '\n', n - a))
		rc = err_set(err, errlen, -EINVAL, "%s holds more than one line: it should hold the tunnel token only", path);
	else if (!(*out = strndup(f.data + a, n - a)))
		rc = err_set(err, errlen, -ENOMEM, "out of memory");
	sfile_free(&f);
	return rc;
}

int ctr_config_load(cfg_doc *d, cfg_node *root, ctr_config **out)
{
	ctr_config *c = calloc(1, sizeof *c);
	int64_t v;
	int rc;

	if (!c || ctr_config_init(c) < 0) {
		ctr_config_free(c);
		return -ENOMEM;
	}
	if ((rc = cfg_get_strlist(d, root, "edges", &c->edges, &c->n_edges)) < 0)
		goto fail;
	for (size_t i = 0; i < c->n_edges; i++) {
		char host[NA_HOST_MAX];
		uint16_t port;
		if (na_split_hostport(c->edges[i], false, host, sizeof host, &port) < 0 || !host[0]) {
			rc = cfg_fail(d, root, "edges", "'%s' is not host:port (e.g. edge.example.com:7844)", c->edges[i]);
			goto fail;
		}
		for (size_t j = 0; j < i; j++)
			if (!strcmp(c->edges[i], c->edges[j])) {
				rc = cfg_fail(d, root, "edges", "'%s' is listed twice", c->edges[i]);
				goto fail;
			}
	}
	if ((rc = cfg_get_str(d, root, "token_file", &c->token_file)) < 0 ||
	    (rc = cfg_get_str(d, root, "edge_ca_file", &c->edge_ca_file)) < 0 ||
	    (rc = cfg_get_str(d, root, "edge_server_name", &c->edge_server_name)) < 0 ||
	    (rc = cfg_get_str(d, root, "metrics_listen", &c->metrics_listen)) < 0)
		goto fail;
	v = c->connections;
	if ((rc = cfg_get_int(d, root, "connections", 1, 64, &v)) < 0)
		goto fail;
	c->connections = (uint32_t)v;
	if ((rc = cfg_get_duration_ms(d, root, "ping_interval", &c->ping_interval_ms)) < 0 ||
	    (rc = cfg_get_duration_ms(d, root, "ping_timeout", &c->ping_timeout_ms)) < 0 ||
	    (rc = cfg_get_duration_ms(d, root, "shutdown_timeout", &c->shutdown_timeout_ms)) < 0)
		goto fail;
	if (c->ping_interval_ms < 100 || c->ping_interval_ms > 3600000) {
		rc = cfg_fail(d, root, "ping_interval", "must be between 100ms and 1h");
		goto fail;
	}
	if (c->ping_timeout_ms < 100 || c->ping_timeout_ms > 3600000) {
		rc = cfg_fail(d, root, "ping_timeout", "must be between 100ms and 1h");
		goto fail;
	}
	if (c->shutdown_timeout_ms > 3600000) {
		rc = cfg_fail(d, root, "shutdown_timeout", "must be at most 1h");
		goto fail;
	}
	if (c->edge_server_name && !c->edge_server_name[0]) {
		rc = cfg_fail(d, root, "edge_server_name", "must not be empty");
		goto fail;
	}
	if (c->metrics_listen[0]) {
		struct sockaddr_storage ss;
		if (na_parse_sockaddr(c->metrics_listen, true, &ss) < 0) {
			rc = cfg_fail(d, root, "metrics_listen", "'%s' is not IP:PORT (e.g. 127.0.0.1:20251)",
				      c->metrics_listen);
			goto fail;
		}
	}
	if (c->edge_ca_file && access(c->edge_ca_file, R_OK) < 0) {
		rc = cfg_fail(d, root, "edge_ca_file", "%s: %s", c->edge_ca_file, strerror(errno));
		goto fail;
	}
	if (c->n_edges > 0) {
		if (c->token_file) {
			char *tok = NULL, terr[600], warn[600];
			int t = ctri_read_token_file(c->token_file, &tok, terr, sizeof terr, warn, sizeof warn);
			if (tok) {
				OPENSSL_cleanse(tok, strlen(tok));
				free(tok);
			}
			if (t < 0) {
				rc = cfg_fail(d, root, "token_file", "%s", terr);
				goto fail;
			}
			/* A warning, not an error: secret volumes (Kubernetes' default 0644) are often like this on
			 * purpose, and the directory may be what protects it. */
			if (warn[0])
				cfg_warn(d, root, "token_file", "%s (or defaultMode: 0400 for a Kubernetes secret)", warn);
		} else if (!getenv("POSTERN_TOKEN") || !getenv("POSTERN_TOKEN")[0]) {
			rc = cfg_fail(d, root, "edges", "no tunnel token: set token_file or the POSTERN_TOKEN environment variable");
			goto fail;
		}
	}
	*out = c;
	return 0;
fail:
	ctr_config_free(c);
	return rc < 0 ? rc : -EINVAL;
}

/* ------------------------------------------------------------------ metrics */

static void metrics_init(ctr *c)
{
	static const char *states[] = { "state=\"connecting\"", "state=\"registering\"", "state=\"live\"",
					 "state=\"draining\"" };
	for (int i = 0; i < 4; i++)
		c->m.conns[i] = adm_gauge("postern_connector_connections", "Connections to the edge by state", states[i]);
	c->m.ready = adm_gauge("postern_connector_ready", "1 while at least one connection is registered and answers pings", NULL);
	c->m.streams_active = adm_gauge("postern_connector_streams_active", "Streams open now", NULL);
	c->m.streams_total = adm_counter("postern_connector_streams_total", "Streams the edge opened", NULL);
	c->m.streams_refused = adm_counter("postern_connector_streams_refused_total", "Streams answered 503 (draining or backend refused)", NULL);
	c->m.bytes_in = adm_counter("postern_connector_stream_bytes_total", "Stream payload bytes", "direction=\"from_edge\"");
	c->m.bytes_out = adm_counter("postern_connector_stream_bytes_total", "Stream payload bytes", "direction=\"to_edge\"");
	c->m.dials = adm_counter("postern_connector_dials_total", "Connection attempts to an edge", NULL);
	c->m.reconnects = adm_counter("postern_connector_reconnects_total", "Connection attempts after a slot's first", NULL);
	c->m.reg_ok = adm_counter("postern_connector_registrations_total", "Registration outcomes", "result=\"ok\"");
	c->m.reg_rejected = adm_counter("postern_connector_registrations_total", "Registration outcomes", "result=\"rejected\"");
	c->m.reg_failed = adm_counter("postern_connector_registrations_total", "Registration outcomes", "result=\"failed\"");
	c->m.pings_ok = adm_counter("postern_connector_pings_total", "PINGs by outcome", "result=\"ok\"");
	c->m.pings_timeout = adm_counter("postern_connector_pings_total", "PINGs by outcome", "result=\"timeout\"");
	c->m.stream_aborts_queue = adm_counter("postern_connector_stream_aborts_total",
					       "Streams the connector's per-stream backstop aborted, by reason",
					       "reason=\"queue_overflow\"");
	c->m.rtt = adm_gauge("postern_connector_ping_rtt_ms", "Round trip of the last answered PING", NULL);
}

static bool link_ready(const struct link *l, uint64_t now)
{
	if (l->closing || l->st != L_LIVE || !l->acked_once)
		return false;
	return !(l->ping_out && now - l->ping_sent_at >= (uint64_t)l->c->cfg->ping_timeout_ms);
}

void ctri_metrics_refresh(ctr *c)
{
	int64_t n[4] = { 0 };
	int reg, rdy;
	for (struct link *l = c->links; l; l = l->next) {
		if (l->closing)
			continue;
		switch (l->st) {
		case L_RESOLVING:
		case L_CONNECTING: n[0]++; break;
		case L_REGISTERING: n[1]++; break;
		case L_LIVE: n[2]++; break;
		case L_DRAINING: n[3]++; break;
		}
	}
	for (int i = 0; i < 4; i++)
		adm_set(c->m.conns[i], n[i]);
	ctr_counts(c, &reg, &rdy);
	adm_set(c->m.ready, rdy > 0);
	adm_set(c->m.streams_active, (int64_t)c->st.streams_active);
}

/* ------------------------------------------------------------------ public queries */

void ctr_counts(const ctr *c, int *registered, int *ready)
{
	uint64_t now = uv_now(c->loop);
	*registered = *ready = 0;
	for (struct link *l = c->links; l; l = l->next) {
		if (!l->closing && (l->st == L_LIVE || l->st == L_DRAINING))
			(*registered)++;
		if (link_ready(l, now))
			(*ready)++;
	}
}

bool ctr_ready(const ctr *c)
{
	int reg, rdy;
	ctr_counts(c, &reg, &rdy);
	return rdy > 0;
}

const char *ctr_connector_id(const ctr *c) { return c->id; }
void ctr_get_stats(const ctr *c, ctr_stats *out) { *out = c->st; }

/* ------------------------------------------------------------------ slots */


static void dial(ctr *c, struct slot *s, int edge, bool probe)
{
	struct link *l = calloc(1, sizeof *l);
	struct edge_addr *e = &c->edges[edge];
	struct sockaddr_storage ss;
	char lit[NA_HOST_MAX + 8];

	if (!l) {
		/* Try again later as if the dial had failed. */
		if (probe)
			s->probe_at = now_ms(c) + bo_next(s->probe_bo);
		else
			s->retry_at = now_ms(c) + bo_next(s->bo);
		return;
	}
	l->c = c;
	l->s = s;
	l->edge = edge;
	l->probe = probe;
	l->st = L_RESOLVING;
	l->started_at = now_ms(c);
	LIST_PUSH(c->links, l, next, pprev);
	c->st.dials++;
	adm_add(c->m.dials, 1);
	if (s->dialed_before)
		adm_add(c->m.reconnects, 1);
	s->dialed_before = true;
	if (probe)
		s->pr = l;
	else
		s->link = l;

	/* IP literals skip DNS (and keep working when no resolver is reachable). */
	snprintf(lit, sizeof lit, strchr(e->host, ':') ? "[%s]:%u" : "%s:%u", e->host, e->port);
	if (na_parse_sockaddr(lit, false, &ss) == 0) {
		ctri_link_connect(l, (struct sockaddr *)&ss);
	} else {
		struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
		char port[8];
		struct dns *d = calloc(1, sizeof *d);
		int r;
		snprintf(port, sizeof port, "%u", e->port);
		if (!d) {
			ctri_link_close(l, "out of memory");
			return;
		}
		d->l = l;
		d->c = c;
		r = uv_getaddrinfo(c->loop, &d->req, ctri_on_resolved, e->host, port, &hints);
		if (r < 0) {
			free(d);
			l->failed_open = true;
			snprintf(l->err, sizeof l->err, "cannot resolve %s: %s", e->host, uv_strerror(r));
			ctri_link_close(l, NULL);
			return;
		}
		l->dns = d;
		c->refs++;
	}
	ctri_metrics_refresh(c);
}

void ctri_slot_retry_later(struct slot *s, struct link *l, bool probe)
{
	ctr *c = l->c;
	uint64_t now = now_ms(c);
	if (probe) {
		/* While the home edge refuses TCP a check costs one SYN: keep it frequent, so the slot is home within
		 * about a second of the edge coming back. Anything that got further backs off. */
		uint32_t d = l->refused ? jitter(PROBE_MIN_MS, PROBE_SPAN_MS) : bo_next(s->probe_bo);
		s->probe_at = now + d;
		if (!l->refused || !s->probe_logged)
			log_info("msg=\"home edge not available; staying on the stand-in edge\" slot=%d edge=%s err=\"%s\" "
				 "retry_in_ms=%u", s->idx, c->edges[l->edge].text, l->err, d);
		s->probe_logged = true;
		return;
	}
	{
		uint32_t d = bo_next(s->bo);
		s->retry_at = now + d;
		if (l->rejected)
			log_warn("msg=\"will retry registration\" slot=%d edge=%s retry_in_ms=%u attempt=%u", s->idx,
				 c->edges[l->edge].text, d, bo_attempts(s->bo));
		else
			log_warn("msg=\"edge connection %s\" slot=%d edge=%s err=\"%s\" retry_in_ms=%u attempt=%u",
				 l->registered_at ? "lost" : "failed", s->idx, c->edges[l->edge].text,
				 l->err[0] ? l->err : "closed", d, bo_attempts(s->bo));
	}
}

void ctri_slot_link_closed(struct link *l)
{
	ctr *c = l->c;
	struct slot *s = l->s;
	uint64_t now = now_ms(c);
	int n = c->cfg->n_edges > 0 ? (int)c->cfg->n_edges : 1;

	if (l->failed_open) {
		c->st.dial_failures++;
	} else if (!l->registered_at && !l->rejected && l->st == L_REGISTERING) {
		adm_add(c->m.reg_failed, 1);
	} else if (l->registered_at) {
		c->st.connections_lost++;
	}
	if (l == s->pr) {
		s->pr = NULL;
		if (c->shutting)
			return;
		if (!s->link) {
			/* The stand-in went away while we were checking home: this is now the slot's dial. */
			ctri_slot_retry_later(s, l, false);
			return;
		}
		ctri_slot_retry_later(s, l, true);
		return;
	}
	if (l != s->link)
		return; /* a retired stand-in finished draining */
	s->link = NULL;
	if (c->shutting)
		return;
	/* Held long enough to call the edge healthy: the next failure starts the ctri_schedule over. */
	if (l->registered_at && now - l->registered_at >= 2 * (uint64_t)c->cfg->ping_interval_ms && l->acked_once)
		bo_reset(s->bo);
	/* A dial that failed moves the slot on to the next edge. */
	if (!l->registered_at && n > 1 && (l->failed_open || l->rejected))
		s->cur = (l->edge + 1) % n;
	if (s->pr)
		return; /* the home check in flight decides */
	ctri_slot_retry_later(s, l, false);
}

void ctri_slot_registered(struct link *l)
{
	ctr *c = l->c;
	struct slot *s = l->s;
	uint64_t now = now_ms(c);
	if (l->probe) {
		struct link *old = s->link;
		s->pr = NULL;
		s->link = l;
		l->probe = false;
		bo_reset(s->probe_bo);
		s->probe_logged = false;
		s->retry_at = 0;
		if (old) {
			log_info("msg=\"slot back on its home edge; draining the stand-in connection\" slot=%d edge=%s from=%s",
				 s->idx, c->edges[l->edge].text, c->edges[old->edge].text);
			old->retired = true;
			if (old->st == L_LIVE) {
				old->st = L_DRAINING;
				nghttp2_submit_shutdown_notice(old->h2);
				if (!old->ping_out)
					ctri_link_send_ping(old);
				old->goaway = 1;
				old->goaway_deadline = now + (uint64_t)c->cfg->ping_timeout_ms;
				ctri_link_flush(old);
			} else {
				ctri_link_close(old, NULL);
			}
		}
	}
	s->cur = l->edge;
	s->probe_at = (l->edge != s->home) ? now + jitter(PROBE_MIN_MS, PROBE_SPAN_MS) : 0;
}

/* ------------------------------------------------------------------ timer */

static bool slot_due_retry(const struct slot *s) { return !s->link && !s->pr && s->retry_at; }

static bool slot_due_probe(const struct slot *s)
{
	return s->link && !s->pr && s->probe_at && !s->link->closing && s->link->st == L_LIVE &&
	       s->link->edge != s->home;
}

static void fire_done(ctr *c)
{
	if (c->done_fired)
		return;
	c->done_fired = true;
	log_info("msg=\"connector stopped\"");
	if (c->done_cb)
		c->done_cb(c, c->done_ud);
}

static void link_start_drain(struct link *l, uint64_t now)
{
	if (l->closing)
		return;
	if (l->st != L_LIVE && l->st != L_DRAINING) {
		ctri_link_close(l, NULL);
		return;
	}
	if (l->goaway == 0) {
		l->st = L_DRAINING;
		nghttp2_submit_shutdown_notice(l->h2);
		if (!l->ping_out)
			ctri_link_send_ping(l);
		l->goaway = 1;
		l->goaway_deadline = now + (uint64_t)l->c->cfg->ping_timeout_ms;
	}
	ctri_link_flush(l);
}

static void on_tick(uv_timer_t *t)
{
	ctr *c = t->data;
	uint64_t now = now_ms(c);
	struct link *l, *next;

	for (l = c->links; l; l = next) {
		next = l->next;
		if (l->closing)
			continue;
		if (l->close_deadline && now >= l->close_deadline) {
			ctri_link_close(l, NULL);
			continue;
		}
		if ((l->st == L_RESOLVING) && now - l->started_at >= c->cfg->dial_timeout_ms) {
			l->failed_open = true;
			ctri_link_close(l, "DNS resolution timed out");
			continue;
		}
		if (l->st == L_REGISTERING && now >= l->reg_deadline) {
			ctri_link_close(l, "edge did not answer the registration in time");
			continue;
		}
		if (l->st != L_LIVE && l->st != L_DRAINING)
			continue;
		if (l->ping_out && now - l->ping_sent_at >= (uint64_t)c->cfg->ping_timeout_ms) {
			c->st.ping_timeouts++;
			adm_add(c->m.pings_timeout, 1);
			log_warn("msg=\"edge did not answer PING in time; closing the connection\" slot=%d edge=%s timeout_ms=%lld",
				 l->s->idx, c->edges[l->edge].text, (long long)c->cfg->ping_timeout_ms);
			ctri_link_close(l, "PING timeout");
			continue;
		}
		if (l->goaway == 1 && now >= l->goaway_deadline) {
			nghttp2_submit_goaway(l->h2, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(l->h2),
					      NGHTTP2_NO_ERROR, NULL, 0);
			l->goaway = 2;
		}
		if (!l->ping_out && l->next_ping_at && now >= l->next_ping_at)
			ctri_link_send_ping(l);
		ctri_link_flush(l);
	}
	if (c->shutting) {
		if (now >= c->shutdown_deadline) {
			for (l = c->links; l; l = next) {
				next = l->next;
				if (!l->closing)
					ctri_link_close(l, "shutdown timeout");
			}
		}
		if (!c->links)
			fire_done(c);
	} else {
		for (int i = 0; i < c->nslots; i++) {
			struct slot *s = &c->slots[i];
			if (slot_due_retry(s) && now >= s->retry_at) {
				s->retry_at = 0;
				dial(c, s, s->cur, false);
			}
			if (slot_due_probe(s) && now >= s->probe_at) {
				s->probe_at = 0;
				dial(c, s, s->home, true);
			}
		}
	}
	ctri_metrics_refresh(c);
	ctri_schedule(c);
}

static void consider(uint64_t *best, uint64_t t)
{
	if (t && (!*best || t < *best))
		*best = t;
}

void ctri_schedule(ctr *c)
{
	uint64_t best = 0, now;
	if (c->freeing)
		return;
	now = now_ms(c);
	for (struct link *l = c->links; l; l = l->next) {
		if (l->closing)
			continue;
		consider(&best, l->close_deadline);
		if (l->st == L_RESOLVING)
			consider(&best, l->started_at + c->cfg->dial_timeout_ms);
		if (l->st == L_REGISTERING)
			consider(&best, l->reg_deadline);
		if (l->st == L_LIVE || l->st == L_DRAINING) {
			if (l->ping_out)
				consider(&best, l->ping_sent_at + (uint64_t)c->cfg->ping_timeout_ms);
			else
				consider(&best, l->next_ping_at);
			if (l->goaway == 1)
				consider(&best, l->goaway_deadline);
		}
	}
	if (c->shutting) {
		bool open = false;
		for (struct link *l = c->links; l; l = l->next)
			open |= !l->closing;
		/* Once every link is closing, their on_close (not a timer) finishes the shutdown. */
		if (open)
			consider(&best, c->shutdown_deadline);
		if (!c->links && !c->done_fired)
			best = now ? now : 1;
	} else if (c->started) {
		for (int i = 0; i < c->nslots; i++) {
			if (slot_due_retry(&c->slots[i]))
				consider(&best, c->slots[i].retry_at);
			if (slot_due_probe(&c->slots[i]))
				consider(&best, c->slots[i].probe_at);
		}
	}
	if (!best) {
		uv_timer_stop(&c->timer);
		return;
	}
	/* Never 0: libuv 1.44 runs a timer re-armed with 0 from its own callback again before polling, which
	 * would starve the close callbacks we may be waiting for. */
	uv_timer_start(&c->timer, on_tick, best > now ? best - now : 1, 0);
}

/* ------------------------------------------------------------------ lifecycle */

static void timer_closed(uv_handle_t *h)
{
	ctr_unref(h->data);
}

static int make_uuid(char *out, size_t len)
{
	unsigned char b[16];
	if (RAND_bytes(b, sizeof b) != 1)
		return -EIO;
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	snprintf(out, len, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2],
		 b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
	return 0;
}

ctr *ctr_new(uv_loop_t *loop, const ctr_config *cfg, const stream_backend *backend, char *err, size_t errlen)
{
	ctr *c = calloc(1, sizeof *c);
	nghttp2_session_callbacks *cbs = NULL;
	int n = (int)cfg->n_edges;

	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->loop = loop;
	c->cfg = cfg;
	c->be = *backend;
	if (n < 1) {
		snprintf(err, errlen, "no edges configured");
		goto fail;
	}
	if (make_uuid(c->id, sizeof c->id) < 0) {
		snprintf(err, errlen, "no randomness for the connector id");
		goto fail;
	}
	if (cfg->token_file) {
		char warn[600];
		if (ctri_read_token_file(cfg->token_file, &c->token, err, errlen, warn, sizeof warn) < 0)
			goto fail;
		if (warn[0])
			log_warn("msg=\"token file exposed\" file=\"%s\" detail=\"%s\"", cfg->token_file, warn);
	} else {
		const char *e = getenv("POSTERN_TOKEN");
		if (!e || !*e || !(c->token = strdup(e))) {
			snprintf(err, errlen, "no tunnel token: set token_file or POSTERN_TOKEN");
			goto fail;
		}
	}
	c->tls = tio_client_ctx(cfg->edge_ca_file, NULL, NULL, true, err, errlen);
	if (!c->tls)
		goto fail;
	/* After the handshake the links' records go through postern's record layer (core/tls13rec), as the
	 * edge's side of them does: OpenSSL's copied every record twice more. */
	tio_enable_handoff(c->tls);
	/* SSL_CTX_set_alpn_protos returns 0 on success. */
	if (SSL_CTX_set_alpn_protos(c->tls, (const unsigned char *)"\x09" REG_ALPN, 1 + strlen(REG_ALPN)) != 0) {
		snprintf(err, errlen, "cannot set ALPN");
		goto fail;
	}
	if (!(c->edges = calloc((size_t)n, sizeof *c->edges))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (int i = 0; i < n; i++) {
		struct edge_addr *e = &c->edges[i];
		if (na_split_hostport(cfg->edges[i], false, e->host, sizeof e->host, &e->port) < 0 || !e->host[0]) {
			snprintf(err, errlen, "edge '%s' is not host:port", cfg->edges[i]);
			goto fail;
		}
		e->name = cfg->edge_server_name ? cfg->edge_server_name : e->host;
		e->text = cfg->edges[i];
	}
	c->nslots = (int)cfg->connections;
	if (!(c->slots = calloc((size_t)c->nslots, sizeof *c->slots))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (int i = 0; i < c->nslots; i++) {
		struct slot *s = &c->slots[i];
		s->idx = i;
		s->home = s->cur = i % n; /* round-robin: with 2+ edges, every edge gets connections */
		s->bo = bo_new(cfg->backoff_base_ms, cfg->backoff_cap_ms, 0, NULL, NULL);
		s->probe_bo = bo_new(cfg->backoff_base_ms, cfg->backoff_cap_ms, 0, NULL, NULL);
		if (!s->bo || !s->probe_bo) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	}
	if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&c->opt) != 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, ctri_on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, ctri_on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, ctri_on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, ctri_on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, ctri_on_stream_close);
	nghttp2_session_callbacks_set_send_data_callback(cbs, ctri_send_data);
	c->cbs = cbs;
	cbs = NULL;
	/* Window updates only once bytes left the process (internals.md, flow control). */
	nghttp2_option_set_no_auto_window_update(c->opt, 1);
	metrics_init(c);
	uv_timer_init(loop, &c->timer);
	c->timer.data = c;
	c->refs = 1;
	return c;
fail:
	nghttp2_session_callbacks_del(cbs);
	c->freeing = true;
	c->refs = 1;
	ctr_unref(c);
	return NULL;
}

int ctr_start(ctr *c)
{
	uint64_t now = now_ms(c);
	if (c->started)
		return -EALREADY;
	c->started = true;
	log_info("msg=\"connector starting\" connector_id=%s connections=%d edges=%zu", c->id, c->nslots,
		 c->cfg->n_edges);
	dial(c, &c->slots[0], c->slots[0].cur, false);
	for (int i = 1; i < c->nslots; i++)
		c->slots[i].retry_at = now + (uint64_t)i * START_STAGGER_MS;
	ctri_schedule(c);
	return 0;
}

void ctr_begin_shutdown(ctr *c, ctr_done_cb cb, void *ud)
{
	uint64_t now = now_ms(c);
	struct link *l, *next;
	if (c->shutting)
		return;
	c->shutting = true;
	c->done_cb = cb;
	c->done_ud = ud;
	c->shutdown_deadline = now + (uint64_t)c->cfg->shutdown_timeout_ms;
	if (!c->shutdown_deadline)
		c->shutdown_deadline = 1;
	log_info("msg=\"connector draining\" timeout_ms=%lld", (long long)c->cfg->shutdown_timeout_ms);
	for (int i = 0; i < c->nslots; i++)
		c->slots[i].retry_at = c->slots[i].probe_at = 0;
	for (l = c->links; l; l = next) {
		next = l->next;
		link_start_drain(l, now);
	}
	ctri_metrics_refresh(c);
	ctri_schedule(c);
}

void ctr_free(ctr *c)
{
	struct link *l, *next;
	if (!c)
		return;
	c->freeing = true;
	uv_timer_stop(&c->timer);
	for (l = c->links; l; l = next) {
		next = l->next;
		ctri_link_close(l, NULL);
	}
	uv_close((uv_handle_t *)&c->timer, timer_closed);
}
