#include "tunnel/connector.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/admin.h"
#include "core/backoff.h"
#include "core/log.h"
#include "core/netaddr.h"
#include "core/tconn.h"
#include "core/tlsio.h"
#include "tunnel/reg.h"

#define TOKEN_FILE_MAX 4096
#define PROBE_MIN_MS 500u  /* return-home checks while the home edge refuses TCP: 0.5 .. 1.5 s */
#define PROBE_SPAN_MS 1000u
#define CLOSE_LINGER_MS 1000u /* after our close_notify, how long we wait for the edge's */
#define START_STAGGER_MS 250u

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
	if (!(c->metrics_listen = strdup("127.0.0.1:20242")))
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
static int read_token_file(const char *path, char **out)
{
	char buf[TOKEN_FILE_MAX + 1];
	size_t n = 0, a = 0;
	FILE *f = fopen(path, "r");
	int rc = 0;
	if (!f)
		return -errno;
	n = fread(buf, 1, sizeof buf, f);
	if (ferror(f))
		rc = -EIO;
	fclose(f);
	if (rc == 0 && n > TOKEN_FILE_MAX)
		rc = -EFBIG;
	if (rc == 0) {
		while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
			n--;
		while (a < n && (buf[a] == ' ' || buf[a] == '\t' || buf[a] == '\n' || buf[a] == '\r'))
			a++;
		if (a == n)
			rc = -ENODATA;
		else if (memchr(buf + a, '\n', n - a))
			rc = -EINVAL; /* one token, one line */
	}
	if (rc == 0) {
		if (!(*out = malloc(n - a + 1)))
			rc = -ENOMEM;
		else {
			memcpy(*out, buf + a, n - a);
			(*out)[n - a] = 0;
		}
	}
	OPENSSL_cleanse(buf, sizeof buf);
	return rc;
}

static const char *token_err(int rc)
{
	switch (rc) {
	case -ENODATA: return "the file is empty";
	case -EFBIG: return "the file is too large to be a token";
	case -EINVAL: return "the file holds more than one line";
	default: return strerror(-rc);
	}
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
			rc = cfg_fail(d, root, "metrics_listen", "'%s' is not IP:PORT (e.g. 127.0.0.1:20242)",
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
			char *tok = NULL;
			int t = read_token_file(c->token_file, &tok);
			if (tok) {
				OPENSSL_cleanse(tok, strlen(tok));
				free(tok);
			}
			if (t < 0) {
				rc = cfg_fail(d, root, "token_file", "%s: %s", c->token_file, token_err(t));
				goto fail;
			}
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

/* ------------------------------------------------------------------ types */

enum lstate { L_RESOLVING, L_CONNECTING, L_REGISTERING, L_LIVE, L_DRAINING };

struct link;
struct slot;

struct stream {
	struct stream *next, *prev;
	struct link *l;
	int32_t id;
	stream_conn *sc;
	uint8_t *q;
	size_t qoff, qlen, qcap;
	size_t unconsumed;  /* fed to the backend, not yet reported consumed: returned to the window on abort */
	bool out_eof;       /* backend shut its sending side */
	bool eof_sent;      /* END_STREAM went out */
	bool deferred;      /* the data provider is waiting for bytes */
	bool high, want_drained;
	bool h2_closed;
	bool accepted;
	char method[16];
	char authority[256];
	char client_addr[80];
};

struct dns {
	uv_getaddrinfo_t req;
	struct link *l; /* NULL once the link gave up on it */
	ctr *c;
};

struct link {
	struct link *next, *prev;
	ctr *c;
	struct slot *s;
	int edge;
	enum lstate st;
	bool probe;         /* a return-home dial for a slot served by another edge */
	bool retired;       /* replaced by a newer link of its slot; drains and closes */
	bool closing;       /* tconn_close called (or about to be): no more I/O */
	bool failed_open, refused, rejected;
	tconn *tc;
	struct dns *dns;
	reg_linebuf *lb;
	nghttp2_session *h2;
	bool flushing, flush_pending, paused, eof;
	uint64_t started_at, registered_at, reg_deadline, close_deadline;
	uint64_t next_ping_at, ping_sent_at, goaway_deadline;
	bool ping_out, acked_once;
	int goaway; /* 0 none, 1 notice sent, 2 final GOAWAY sent */
	struct stream *streams;
	uint32_t nstreams;
	char tunnel_id[128], edge_id[128];
	char err[512];
};

struct slot {
	int idx, home, cur;
	bo *bo, *probe_bo;
	uint64_t retry_at, probe_at;
	bool dialed_before, probe_logged;
	struct link *link;  /* the slot's connection, or its dial in progress */
	struct link *pr;    /* return-home dial in progress */
};

struct edge_addr {
	char host[NA_HOST_MAX];
	uint16_t port;
	const char *name; /* TLS name to verify */
	const char *text; /* as configured, for logs */
	unsigned rr;      /* next resolved address to use: a name with several spreads dials over them */
};

struct ctr {
	uv_loop_t *loop;
	const ctr_config *cfg;
	stream_backend be;
	SSL_CTX *tls;
	char *token;
	char id[40];
	struct edge_addr *edges;
	struct slot *slots;
	int nslots;
	struct link *links;
	uv_timer_t timer;
	int refs;           /* the timer, every tconn and DNS request still open */
	bool started, shutting, done_fired, freeing;
	uint64_t shutdown_deadline;
	ctr_done_cb done_cb;
	void *done_ud;
	ctr_stats st;
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;
	struct {
		adm_metric *conns[4], *ready, *streams_active, *streams_total, *streams_refused, *bytes_in,
			*bytes_out, *dials, *reconnects, *reg_ok, *reg_rejected, *reg_failed, *pings_ok,
			*pings_timeout, *rtt;
	} m;
};

static void link_close(struct link *l, const char *why);
static void link_flush(struct link *l);
static void schedule(ctr *c);
static void slot_retry_later(struct slot *s, struct link *l, bool probe);
static void stream_maybe_free(struct stream *s);

static uint64_t now_ms(ctr *c) { return uv_now(c->loop); }

static uint32_t jitter(uint32_t base, uint32_t span)
{
	uint32_t r = 0;
	if (RAND_bytes((unsigned char *)&r, sizeof r) != 1)
		r = (uint32_t)rand();
	return base + r % (span + 1);
}

static void ctr_unref(ctr *c)
{
	if (--c->refs == 0 && c->freeing) {
		nghttp2_session_callbacks_del(c->cbs);
		nghttp2_option_del(c->opt);
		SSL_CTX_free(c->tls);
		for (int i = 0; i < c->nslots; i++) {
			bo_free(c->slots[i].bo);
			bo_free(c->slots[i].probe_bo);
		}
		free(c->slots);
		free(c->edges);
		if (c->token) {
			OPENSSL_cleanse(c->token, strlen(c->token));
			free(c->token);
		}
		free(c);
	}
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
	c->m.rtt = adm_gauge("postern_connector_ping_rtt_ms", "Round trip of the last answered PING", NULL);
}

static bool link_ready(const struct link *l, uint64_t now)
{
	if (l->closing || l->st != L_LIVE || !l->acked_once)
		return false;
	return !(l->ping_out && now - l->ping_sent_at >= (uint64_t)l->c->cfg->ping_timeout_ms);
}

static void metrics_refresh(ctr *c)
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

/* ------------------------------------------------------------------ streams */

static void stream_unlink_free(struct stream *s)
{
	struct link *l = s->l;
	if (s->prev)
		s->prev->next = s->next;
	else
		l->streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	l->nstreams--;
	if (s->accepted && l->c->st.streams_active > 0)
		l->c->st.streams_active--;
	free(s->q);
	free(s);
}

/* A stream is freed once both HTTP/2 and the backend are done with it. */
static void stream_maybe_free(struct stream *s)
{
	struct link *l = s->l;
	if (!s->h2_closed || s->sc)
		return;
	stream_unlink_free(s);
	metrics_refresh(l->c);
	/* The last stream of a draining connection: link_flush ends it. */
	if (l->goaway == 2 && !l->nstreams)
		link_flush(l);
}

static bool ops_over_high_water(void *ctx)
{
	struct stream *s = ctx;
	return s->qlen > s->l->c->cfg->stream_high_water;
}

static int ops_write(void *ctx, const uint8_t *p, size_t n)
{
	struct stream *s = ctx;
	struct link *l = s->l;
	const ctr_config *cfg = l->c->cfg;
	if (l->closing || s->h2_closed || s->out_eof)
		return -EPIPE;
	if (!n)
		return 0;
	/* The backend must stop at high water; this cap only catches one that does not. */
	if (s->qlen + n > 4 * (size_t)cfg->stream_high_water + 64 * 1024)
		return -ENOBUFS;
	if (s->qoff + s->qlen + n > s->qcap) {
		if (s->qoff) {
			memmove(s->q, s->q + s->qoff, s->qlen);
			s->qoff = 0;
		}
		if (s->qlen + n > s->qcap) {
			size_t cap = s->qcap ? s->qcap : 16 * 1024;
			uint8_t *q;
			while (cap < s->qlen + n)
				cap *= 2;
			if (!(q = realloc(s->q, cap)))
				return -ENOMEM;
			s->q = q;
			s->qcap = cap;
		}
	}
	memcpy(s->q + s->qoff + s->qlen, p, n);
	s->qlen += n;
	if (s->qlen > cfg->stream_high_water)
		s->high = true;
	if (s->deferred) {
		s->deferred = false;
		nghttp2_session_resume_data(l->h2, s->id);
	}
	link_flush(l);
	return 0;
}

static int ops_shutdown(void *ctx)
{
	struct stream *s = ctx;
	struct link *l = s->l;
	if (l->closing || s->h2_closed)
		return -EPIPE;
	s->out_eof = true;
	if (s->deferred) {
		s->deferred = false;
		nghttp2_session_resume_data(l->h2, s->id);
	}
	link_flush(l);
	return 0;
}

static void ops_consumed(void *ctx, size_t n)
{
	struct stream *s = ctx;
	struct link *l = s->l;
	if (n > s->unconsumed)
		n = s->unconsumed;
	s->unconsumed -= n;
	if (l->closing || !n)
		return;
	nghttp2_session_consume(l->h2, s->id, n);
	link_flush(l);
}

static void ops_close(void *ctx)
{
	struct stream *s = ctx;
	struct link *l = s->l;
	s->sc = NULL;
	if (!l->closing && !s->h2_closed) {
		/* Bytes the backend will never report: give the window back. */
		if (s->unconsumed) {
			nghttp2_session_consume(l->h2, s->id, s->unconsumed);
			s->unconsumed = 0;
		}
		if (!s->out_eof) {
			nghttp2_submit_rst_stream(l->h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
		} else if (s->eof_sent && !nghttp2_session_get_stream_remote_close(l->h2, s->id)) {
			/* Our side is complete and nobody reads what the edge would still send. */
			nghttp2_submit_rst_stream(l->h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
		}
		/* Sending the reset closes the stream and frees s from on_stream_close: s is not used after. */
		link_flush(l);
		return;
	}
	stream_maybe_free(s);
}

static const stream_ops strm_ops = {
	.write = ops_write,
	.shutdown = ops_shutdown,
	.close = ops_close,
	.consumed = ops_consumed,
	.over_high_water = ops_over_high_water,
};

static ssize_t read_cb(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
		       nghttp2_data_source *src, void *ud)
{
	struct stream *s = src->ptr;
	struct link *l = ud;
	size_t n;
	(void)h2;
	(void)id;
	if (s->qlen == 0) {
		if (s->out_eof) {
			*flags |= NGHTTP2_DATA_FLAG_EOF;
			s->eof_sent = true;
			return 0;
		}
		s->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	n = s->qlen < len ? s->qlen : len;
	memcpy(buf, s->q + s->qoff, n);
	s->qoff += n;
	s->qlen -= n;
	if (!s->qlen) {
		/* An idle stream keeps no queue buffer: memory per idle client stays small. */
		free(s->q);
		s->q = NULL;
		s->qoff = s->qcap = 0;
	}
	l->c->st.bytes_out += n;
	adm_add(l->c->m.bytes_out, (int64_t)n);
	if (s->qlen == 0 && s->out_eof) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		s->eof_sent = true;
	}
	if (s->high && s->qlen <= l->c->cfg->stream_low_water) {
		/* Told after the send loop: the backend may write again from its drained call. */
		s->high = false;
		s->want_drained = true;
	}
	return (ssize_t)n;
}

/* ------------------------------------------------------------------ HTTP/2 callbacks */

static int on_begin_headers(nghttp2_session *h2, const nghttp2_frame *f, void *ud)
{
	struct link *l = ud;
	struct stream *s;
	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if (!(s = calloc(1, sizeof *s)))
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* nghttp2 resets the stream */
	s->l = l;
	s->id = f->hd.stream_id;
	s->next = l->streams;
	if (l->streams)
		l->streams->prev = s;
	l->streams = s;
	l->nstreams++;
	nghttp2_session_set_stream_user_data(h2, s->id, s);
	return 0;
}

static void copy_capped(char *dst, size_t cap, const uint8_t *v, size_t n)
{
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, v, n);
	dst[n] = 0;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
		     const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
	struct stream *s = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
	(void)flags;
	(void)ud;
	if (!s || f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if (namelen == 7 && !memcmp(name, ":method", 7))
		copy_capped(s->method, sizeof s->method, value, valuelen);
	else if (namelen == 10 && !memcmp(name, ":authority", 10))
		copy_capped(s->authority, sizeof s->authority, value, valuelen);
	else if (namelen == 19 && !memcmp(name, "postern-client-addr", 19))
		copy_capped(s->client_addr, sizeof s->client_addr, value, valuelen);
	return 0;
}

static void refuse(struct link *l, struct stream *s, const char *status)
{
	nghttp2_nv nv = { (uint8_t *)":status", (uint8_t *)status, 7, strlen(status), NGHTTP2_NV_FLAG_NONE };
	l->c->st.streams_refused++;
	adm_add(l->c->m.streams_refused, 1);
	nghttp2_submit_response(l->h2, s->id, &nv, 1, NULL);
}

static void accept_stream(struct link *l, struct stream *s, bool end_stream)
{
	ctr *c = l->c;
	nghttp2_nv nv = { (uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE };
	nghttp2_data_provider dp = { .source.ptr = s, .read_callback = read_cb };

	c->st.streams_total++;
	adm_add(c->m.streams_total, 1);
	if (strcmp(s->method, "CONNECT") != 0) {
		refuse(l, s, "405");
		return;
	}
	/* A draining link still serves what the edge sent before it saw the notice: until the final GOAWAY
	 * (goaway 2) names the last stream, such a stream is in flight, not new. */
	if ((l->st != L_LIVE && !(l->st == L_DRAINING && l->goaway == 1)) || c->shutting) {
		refuse(l, s, "503");
		return;
	}
	s->sc = c->be.open(c->be.ud, &strm_ops, s, s->client_addr[0] ? s->client_addr : NULL);
	if (!s->sc) {
		refuse(l, s, "503");
		return;
	}
	s->accepted = true;
	c->st.streams_active++;
	metrics_refresh(c);
	log_debug("msg=\"stream opened\" slot=%d stream=%d authority=%s client=%s", l->s->idx, s->id,
		  s->authority[0] ? s->authority : "-", s->client_addr[0] ? s->client_addr : "-");
	nghttp2_submit_response(l->h2, s->id, &nv, 1, &dp);
	if (end_stream)
		c->be.eof(s->sc);
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *f, void *ud)
{
	struct link *l = ud;
	ctr *c = l->c;
	struct stream *s = f->hd.stream_id ? nghttp2_session_get_stream_user_data(h2, f->hd.stream_id) : NULL;

	switch (f->hd.type) {
	case NGHTTP2_HEADERS:
		if (s && f->headers.cat == NGHTTP2_HCAT_REQUEST)
			accept_stream(l, s, f->hd.flags & NGHTTP2_FLAG_END_STREAM);
		break;
	case NGHTTP2_DATA:
		if (s && s->sc && (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
			c->be.eof(s->sc);
		break;
	case NGHTTP2_PING:
		if ((f->hd.flags & NGHTTP2_FLAG_ACK) && l->ping_out) {
			uint64_t now = now_ms(c), rtt = now - l->ping_sent_at;
			l->ping_out = false;
			if (!l->acked_once)
				log_info("msg=\"edge connection ready\" slot=%d edge=%s rtt_ms=%llu", l->s->idx,
					 c->edges[l->edge].text, (unsigned long long)rtt);
			l->acked_once = true;
			l->next_ping_at = now + (uint64_t)c->cfg->ping_interval_ms;
			c->st.pings_ok++;
			adm_add(c->m.pings_ok, 1);
			adm_set(c->m.rtt, (int64_t)rtt);
			if (l->goaway == 1) {
				nghttp2_submit_goaway(h2, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h2),
						      NGHTTP2_NO_ERROR, NULL, 0);
				l->goaway = 2;
			}
			metrics_refresh(c);
		}
		break;
	case NGHTTP2_GOAWAY:
		/* The edge is going away: stop using this connection for new streams and redial. */
		log_info("msg=\"edge sent GOAWAY\" slot=%d edge=%s code=%u", l->s->idx, c->edges[l->edge].text,
			 f->goaway.error_code);
		if (l->st == L_LIVE) {
			l->st = L_DRAINING;
			if (l->goaway == 0) {
				nghttp2_submit_goaway(h2, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h2),
						      NGHTTP2_NO_ERROR, NULL, 0);
				l->goaway = 2;
			}
		}
		/* Let the streams finish here, and dial the slot's replacement now rather than when they are done. */
		if (!l->retired && l->s->link == l && !c->shutting) {
			struct slot *sl = l->s;
			int n = (int)c->cfg->n_edges;
			l->retired = true;
			sl->link = NULL;
			if (n > 1)
				sl->cur = (l->edge + 1) % n;
			snprintf(l->err, sizeof l->err, "edge sent GOAWAY");
			if (!sl->pr)
				slot_retry_later(sl, l, false);
		}
		break;
	default:
		break;
	}
	return 0;
}

static int on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *ud)
{
	struct link *l = ud;
	struct stream *s = nghttp2_session_get_stream_user_data(h2, id);
	(void)flags;
	l->c->st.bytes_in += len;
	adm_add(l->c->m.bytes_in, (int64_t)len);
	if (!s || !s->sc) {
		/* Nobody will read it: return the window at once. */
		nghttp2_session_consume(h2, id, len);
		return 0;
	}
	s->unconsumed += len;
	l->c->be.feed(s->sc, data, len);
	return 0;
}

static int on_stream_close(nghttp2_session *h2, int32_t id, uint32_t code, void *ud)
{
	struct link *l = ud;
	struct stream *s = nghttp2_session_get_stream_user_data(h2, id);
	(void)l;
	if (!s)
		return 0;
	s->h2_closed = true;
	if (s->sc) {
		/* A clean end after the backend finished its side: let the backend close on its own. */
		if (!(code == NGHTTP2_NO_ERROR && s->out_eof && s->eof_sent)) {
			stream_conn *sc = s->sc;
			s->sc = NULL;
			l->c->be.abort(sc);
		}
	}
	if (s->unconsumed) {
		nghttp2_session_consume_connection(h2, s->unconsumed);
		s->unconsumed = 0;
	}
	stream_maybe_free(s);
	return 0;
}

/* ------------------------------------------------------------------ link I/O */

static void link_send_ping(struct link *l)
{
	uint8_t opaque[8];
	uint64_t now = now_ms(l->c);
	memcpy(opaque, &now, sizeof opaque);
	if (nghttp2_submit_ping(l->h2, NGHTTP2_FLAG_NONE, opaque) == 0) {
		l->ping_out = true;
		l->ping_sent_at = now;
	}
}

/* Graceful end of the connection once nothing is left on it. */
static void link_maybe_finish(struct link *l)
{
	if (l->closing || l->goaway != 2 || l->nstreams || l->close_deadline)
		return;
	if (nghttp2_session_want_write(l->h2))
		return;
	tconn_shutdown(l->tc);
	l->close_deadline = now_ms(l->c) + CLOSE_LINGER_MS;
	schedule(l->c);
}

static void link_flush(struct link *l)
{
	bool fatal = false;
	if (l->closing || !l->h2)
		return;
	if (l->flushing) {
		l->flush_pending = true;
		return;
	}
	l->flushing = true;
	do {
		l->flush_pending = false;
		while (!tconn_over_high_water(l->tc)) {
			const uint8_t *d;
			ssize_t n = nghttp2_session_mem_send(l->h2, &d);
			if (n < 0) {
				snprintf(l->err, sizeof l->err, "HTTP/2: %s", nghttp2_strerror((int)n));
				fatal = true;
				break;
			}
			if (n == 0)
				break;
			if (tconn_write(l->tc, d, (size_t)n) < 0) {
				snprintf(l->err, sizeof l->err, "write failed");
				fatal = true;
				break;
			}
		}
		if (fatal)
			break;
		for (struct stream *s = l->streams; s; s = s->next)
			if (s->want_drained) {
				s->want_drained = false;
				if (s->sc)
					l->c->be.drained(s->sc);
			}
	} while (l->flush_pending && !l->closing);
	l->flushing = false;
	if (fatal) {
		link_close(l, l->err);
		return;
	}
	if (l->closing)
		return;
	/* Reading more would only queue more frames (acks, window updates) we cannot send yet. */
	if (tconn_over_high_water(l->tc) && !l->paused) {
		l->paused = true;
		tconn_pause(l->tc);
	}
	if (!nghttp2_session_want_read(l->h2) && !nghttp2_session_want_write(l->h2)) {
		/* HTTP/2 is done, but a backend may still be finishing a stream the edge has closed. */
		if (l->nstreams)
			return;
		if (l->goaway != 2) {
			link_close(l, "HTTP/2 session ended");
			return;
		}
	}
	link_maybe_finish(l);
}

static int h2_start(struct link *l, const uint8_t *rest, size_t n)
{
	ctr *c = l->c;
	nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, c->cfg->max_streams },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, c->cfg->stream_window },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 16 * 1024 },
	};
	if (nghttp2_session_server_new2(&l->h2, c->cbs, l, c->opt) != 0)
		return -ENOMEM;
	if (nghttp2_submit_settings(l->h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) != 0 ||
	    nghttp2_session_set_local_window_size(l->h2, NGHTTP2_FLAG_NONE, 0, (int32_t)c->cfg->conn_window) != 0)
		return -ENOMEM;
	link_send_ping(l);
	if (n) {
		ssize_t r;
		l->flushing = true;
		r = nghttp2_session_mem_recv(l->h2, rest, n);
		l->flushing = false;
		if (r < 0) {
			snprintf(l->err, sizeof l->err, "HTTP/2: %s", nghttp2_strerror((int)r));
			return -EPROTO;
		}
	}
	link_flush(l);
	return 0;
}

static void slot_registered(struct link *l);

static void handle_registration(struct link *l, const uint8_t *p, size_t n)
{
	ctr *c = l->c;
	reg_response r;
	char err[128], q[300];
	ssize_t used = reg_line_feed(l->lb, p, n);

	if (used < 0) {
		link_close(l, "edge answered the registration with an over-long line");
		return;
	}
	if (!l->lb->done)
		return;
	if (reg_response_parse(l->lb->buf, &r, err, sizeof err) < 0) {
		snprintf(l->err, sizeof l->err, "edge answered the registration with garbage: %s", err);
		link_close(l, l->err);
		return;
	}
	free(l->lb);
	l->lb = NULL;
	if (!r.ok) {
		l->rejected = true;
		c->st.rejections++;
		adm_add(c->m.reg_rejected, 1);
		log_quote(r.error, q, sizeof q);
		snprintf(l->err, sizeof l->err, "registration rejected: %s", r.error);
		/* The most likely operator mistake gets the clearest line; the token itself never appears. An edge
		 * that could not check the token has not refused it: a passing condition, retried on backoff. */
		if (!strcmp(r.error, REG_ERR_STORE_UNAVAILABLE))
			log_warn("msg=\"edge could not check the tunnel token now; will retry\" edge=%s slot=%d reason=%s",
				 c->edges[l->edge].text, l->s->idx, q);
		else if (strstr(r.error, "token"))
			log_error("msg=\"edge rejected the tunnel token\" edge=%s slot=%d reason=%s", c->edges[l->edge].text,
				  l->s->idx, q);
		else
			log_error("msg=\"edge rejected the registration\" edge=%s slot=%d reason=%s",
				  c->edges[l->edge].text, l->s->idx, q);
		link_close(l, NULL);
		return;
	}
	snprintf(l->tunnel_id, sizeof l->tunnel_id, "%s", r.tunnel_id);
	snprintf(l->edge_id, sizeof l->edge_id, "%s", r.edge_id);
	l->st = L_LIVE;
	l->registered_at = now_ms(c);
	c->st.registrations++;
	adm_add(c->m.reg_ok, 1);
	log_info("msg=\"registered with edge\" slot=%d edge=%s edge_id=%s tunnel=%s domain=%s", l->s->idx,
		 c->edges[l->edge].text, r.edge_id[0] ? r.edge_id : "-", r.tunnel_id[0] ? r.tunnel_id : "-",
		 r.domain[0] ? r.domain : "-");
	slot_registered(l);
	if (h2_start(l, p + used, n - (size_t)used) < 0) {
		link_close(l, l->err[0] ? l->err : "cannot start HTTP/2");
		return;
	}
	schedule(c);
}

static void on_data(tconn *tc, const uint8_t *p, size_t n, void *ud)
{
	struct link *l = ud;
	ssize_t r;
	(void)tc;
	if (l->closing)
		return;
	if (l->st == L_REGISTERING) {
		handle_registration(l, p, n);
		return;
	}
	if (!l->h2)
		return;
	l->flushing = true;
	r = nghttp2_session_mem_recv(l->h2, p, n);
	l->flushing = false;
	if (r < 0) {
		snprintf(l->err, sizeof l->err, "HTTP/2 protocol error from edge: %s", nghttp2_strerror((int)r));
		link_close(l, l->err);
		return;
	}
	link_flush(l);
}

static void on_eof(tconn *tc, void *ud)
{
	struct link *l = ud;
	(void)tc;
	l->eof = true;
	if (l->closing)
		return;
	if (l->st == L_REGISTERING)
		link_close(l, "edge closed the connection before answering the registration");
	else if (l->goaway == 2 && l->nstreams == 0)
		link_close(l, NULL);
	else
		link_close(l, "edge closed the connection");
}

static void on_drain(tconn *tc, void *ud)
{
	struct link *l = ud;
	if (l->closing)
		return;
	if (l->paused) {
		l->paused = false;
		tconn_resume(tc);
	}
	link_flush(l);
}

static int current_token(ctr *c)
{
	char *t = NULL;
	int rc;
	if (!c->cfg->token_file)
		return c->token ? 0 : -ENOENT;
	rc = read_token_file(c->cfg->token_file, &t);
	if (rc < 0) {
		/* Keep the last good token: a rotation in progress may have the file briefly missing. */
		log_warn("msg=\"cannot read the token file; using the last token read\" file=%s err=\"%s\"",
			 c->cfg->token_file, token_err(rc));
		return c->token ? 0 : rc;
	}
	if (c->token) {
		OPENSSL_cleanse(c->token, strlen(c->token));
		free(c->token);
	}
	c->token = t;
	return 0;
}

static void on_open(tconn *tc, int status, void *ud)
{
	struct link *l = ud;
	ctr *c = l->c;
	reg_request rq;
	char line[REG_MAX_LINE + 2];
	const unsigned char *alpn = NULL;
	unsigned int alpn_len = 0;
	int n;

	if (status < 0) {
		l->failed_open = true;
		l->refused = status == UV_ECONNREFUSED;
		snprintf(l->err, sizeof l->err, "%s", tconn_errstr(tc));
		return; /* on_close follows */
	}
	SSL_get0_alpn_selected(tconn_ssl(tc), &alpn, &alpn_len);
	if (alpn_len && (alpn_len != strlen(REG_ALPN) || memcmp(alpn, REG_ALPN, alpn_len))) {
		l->failed_open = true;
		link_close(l, "edge selected another application protocol (ALPN)");
		return;
	}
	if (current_token(c) < 0) {
		link_close(l, "no tunnel token");
		return;
	}
	memset(&rq, 0, sizeof rq);
	rq.v = REG_PROTO_VERSION;
	snprintf(rq.token, sizeof rq.token, "%s", c->token);
	snprintf(rq.connector_id, sizeof rq.connector_id, "%s", c->id);
	rq.slot = (uint32_t)l->s->idx;
	snprintf(rq.version, sizeof rq.version, "%s", POSTERN_VERSION);
	n = reg_request_encode(&rq, line, sizeof line);
	reg_request_wipe(&rq);
	if (n < 0 || !(l->lb = calloc(1, sizeof *l->lb))) {
		OPENSSL_cleanse(line, sizeof line);
		link_close(l, "cannot encode the registration");
		return;
	}
	if (tconn_write(tc, (const uint8_t *)line, (size_t)n) < 0) {
		OPENSSL_cleanse(line, sizeof line);
		link_close(l, "write failed");
		return;
	}
	OPENSSL_cleanse(line, sizeof line);
	l->st = L_REGISTERING;
	l->reg_deadline = now_ms(c) + REG_TIMEOUT_MS;
	metrics_refresh(c);
	schedule(c);
}

static void slot_link_closed(struct link *l);

/* The one place a link ends: tconn's on_close, or a dial that never got a tconn. */
static void link_finished(struct link *l)
{
	ctr *c = l->c;
	struct stream *s;

	while ((s = l->streams)) {
		if (s->sc) {
			stream_conn *sc = s->sc;
			s->sc = NULL;
			c->be.abort(sc);
		}
		stream_unlink_free(s);
	}
	if (l->h2)
		nghttp2_session_del(l->h2);
	l->h2 = NULL;
	free(l->lb);
	l->lb = NULL;
	if (l->prev)
		l->prev->next = l->next;
	else
		c->links = l->next;
	if (l->next)
		l->next->prev = l->prev;
	if (!c->freeing)
		slot_link_closed(l);
	free(l);
	if (!c->freeing) {
		metrics_refresh(c);
		schedule(c);
	}
}

static void on_close(tconn *tc, int err, void *ud)
{
	struct link *l = ud;
	ctr *c = l->c;
	(void)tc;
	(void)err;
	l->tc = NULL;
	l->closing = true;
	link_finished(l);
	ctr_unref(c);
}

static void link_close(struct link *l, const char *why)
{
	if (l->closing)
		return;
	if (why && why != l->err)
		snprintf(l->err, sizeof l->err, "%s", why);
	l->closing = true;
	if (l->dns) {
		l->dns->l = NULL;
		uv_cancel((uv_req_t *)&l->dns->req);
		l->dns = NULL;
	}
	if (l->tc)
		tconn_close(l->tc); /* link_finished runs from on_close */
	else
		link_finished(l);
}

static const tconn_cbs link_cbs = {
	.on_open = on_open,
	.on_data = on_data,
	.on_eof = on_eof,
	.on_drain = on_drain,
	.on_close = on_close,
};

static void link_connect(struct link *l, const struct sockaddr *sa)
{
	ctr *c = l->c;
	int r;
	l->st = L_CONNECTING;
	r = tconn_connect(c->loop, sa, c->tls, c->edges[l->edge].name, c->cfg->dial_timeout_ms, &link_cbs, l, &l->tc);
	if (r < 0) {
		l->tc = NULL;
		l->failed_open = true;
		l->refused = r == UV_ECONNREFUSED;
		snprintf(l->err, sizeof l->err, "connect: %s", uv_strerror(r));
		link_close(l, NULL);
		return;
	}
	c->refs++;
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct dns *d = (struct dns *)req;
	struct link *l = d->l;
	ctr *c = d->c;
	if (l) {
		l->dns = NULL;
		if (status < 0 || !res) {
			l->failed_open = true;
			snprintf(l->err, sizeof l->err, "cannot resolve %s: %s", c->edges[l->edge].host,
				 uv_strerror(status < 0 ? status : UV_EAI_NONAME));
			link_close(l, NULL);
		} else {
			struct addrinfo *ai = res;
			unsigned n = 0, pick;
			for (; ai; ai = ai->ai_next)
				n++;
			pick = c->edges[l->edge].rr++ % n;
			for (ai = res; pick--; ai = ai->ai_next)
				;
			link_connect(l, ai->ai_addr);
		}
	}
	uv_freeaddrinfo(res);
	free(d);
	ctr_unref(c);
}

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
	l->next = c->links;
	if (c->links)
		c->links->prev = l;
	c->links = l;
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
		link_connect(l, (struct sockaddr *)&ss);
	} else {
		struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
		char port[8];
		struct dns *d = calloc(1, sizeof *d);
		int r;
		snprintf(port, sizeof port, "%u", e->port);
		if (!d) {
			link_close(l, "out of memory");
			return;
		}
		d->l = l;
		d->c = c;
		r = uv_getaddrinfo(c->loop, &d->req, on_resolved, e->host, port, &hints);
		if (r < 0) {
			free(d);
			l->failed_open = true;
			snprintf(l->err, sizeof l->err, "cannot resolve %s: %s", e->host, uv_strerror(r));
			link_close(l, NULL);
			return;
		}
		l->dns = d;
		c->refs++;
	}
	metrics_refresh(c);
}

static void slot_retry_later(struct slot *s, struct link *l, bool probe)
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

static void slot_link_closed(struct link *l)
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
			slot_retry_later(s, l, false);
			return;
		}
		slot_retry_later(s, l, true);
		return;
	}
	if (l != s->link)
		return; /* a retired stand-in finished draining */
	s->link = NULL;
	if (c->shutting)
		return;
	/* Held long enough to call the edge healthy: the next failure starts the schedule over. */
	if (l->registered_at && now - l->registered_at >= 2 * (uint64_t)c->cfg->ping_interval_ms && l->acked_once)
		bo_reset(s->bo);
	/* A dial that failed moves the slot on to the next edge. */
	if (!l->registered_at && n > 1 && (l->failed_open || l->rejected))
		s->cur = (l->edge + 1) % n;
	if (s->pr)
		return; /* the home check in flight decides */
	slot_retry_later(s, l, false);
}

static void slot_registered(struct link *l)
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
					link_send_ping(old);
				old->goaway = 1;
				old->goaway_deadline = now + (uint64_t)c->cfg->ping_timeout_ms;
				link_flush(old);
			} else {
				link_close(old, NULL);
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
		link_close(l, NULL);
		return;
	}
	if (l->goaway == 0) {
		l->st = L_DRAINING;
		nghttp2_submit_shutdown_notice(l->h2);
		if (!l->ping_out)
			link_send_ping(l);
		l->goaway = 1;
		l->goaway_deadline = now + (uint64_t)l->c->cfg->ping_timeout_ms;
	}
	link_flush(l);
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
			link_close(l, NULL);
			continue;
		}
		if ((l->st == L_RESOLVING) && now - l->started_at >= c->cfg->dial_timeout_ms) {
			l->failed_open = true;
			link_close(l, "DNS resolution timed out");
			continue;
		}
		if (l->st == L_REGISTERING && now >= l->reg_deadline) {
			link_close(l, "edge did not answer the registration in time");
			continue;
		}
		if (l->st != L_LIVE && l->st != L_DRAINING)
			continue;
		if (l->ping_out && now - l->ping_sent_at >= (uint64_t)c->cfg->ping_timeout_ms) {
			c->st.ping_timeouts++;
			adm_add(c->m.pings_timeout, 1);
			log_warn("msg=\"edge did not answer PING in time; closing the connection\" slot=%d edge=%s timeout_ms=%lld",
				 l->s->idx, c->edges[l->edge].text, (long long)c->cfg->ping_timeout_ms);
			link_close(l, "PING timeout");
			continue;
		}
		if (l->goaway == 1 && now >= l->goaway_deadline) {
			nghttp2_submit_goaway(l->h2, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(l->h2),
					      NGHTTP2_NO_ERROR, NULL, 0);
			l->goaway = 2;
		}
		if (!l->ping_out && l->next_ping_at && now >= l->next_ping_at)
			link_send_ping(l);
		link_flush(l);
	}
	if (c->shutting) {
		if (now >= c->shutdown_deadline) {
			for (l = c->links; l; l = next) {
				next = l->next;
				if (!l->closing)
					link_close(l, "shutdown timeout");
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
	metrics_refresh(c);
	schedule(c);
}

static void consider(uint64_t *best, uint64_t t)
{
	if (t && (!*best || t < *best))
		*best = t;
}

static void schedule(ctr *c)
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
		int rc = read_token_file(cfg->token_file, &c->token);
		if (rc < 0) {
			snprintf(err, errlen, "%s: cannot read the tunnel token: %s", cfg->token_file, token_err(rc));
			goto fail;
		}
		{
			struct stat st;
			if (stat(cfg->token_file, &st) == 0 && (st.st_mode & 077))
				log_warn("msg=\"token file is readable by other users; chmod 600 it\" file=%s", cfg->token_file);
		}
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
	/* A handful of busy links: keeping TLS record buffers saves a malloc and free per record. */
	SSL_CTX_clear_mode(c->tls, SSL_MODE_RELEASE_BUFFERS);
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
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
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
	schedule(c);
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
	metrics_refresh(c);
	schedule(c);
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
		link_close(l, NULL);
	}
	uv_close((uv_handle_t *)&c->timer, timer_closed);
}
