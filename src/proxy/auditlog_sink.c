/* The audit log's async sinks: stdout through a writer thread (a blocking stdout, a full pipe or a slow
 * terminal, then stalls that thread, never the loop, and fd 1 is not made non-blocking under whoever shares
 * it), and syslog RFC 5424 over TCP or TLS (octet counting, RFC 6587 / RFC 5425) or UDP (one message per
 * datagram, RFC 5426), reconnecting with jittered backoff. */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/backoff.h"
#include "core/err.h"
#include "core/log.h"
#include "core/tconn.h"
#include "core/tlsio.h"
#include "proxy/auditlog_int.h"

#define BATCH 64
#define UDP_INFLIGHT 64
#define CONNECT_TIMEOUT_MS 5000
#define HELD_MS 10000 /* a connection up this long resets the backoff */

static void closed_cb(uv_handle_t *h)
{
	alogi_handle_closed(h->data);
}

/* ---- stdout ---- */

/* Lines the thread is done with, handed back to the loop (which alone touches reference counts). */
typedef struct vec {
	alogi_line **v;
	size_t n, cap;
} vec;

static int vec_push(vec *v, alogi_line *ln)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : BATCH;
		alogi_line **nv = realloc(v->v, cap * sizeof *nv);
		if (!nv)
			return -ENOMEM;
		v->v = nv;
		v->cap = cap;
	}
	v->v[v->n++] = ln;
	return 0;
}

struct alogi_stdout {
	alog *l;
	int fd;
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* under mu */
	alogi_q q;
	vec ok, failed;
	int last_err;
	bool busy, stop, exited, abandoned;
	/* loop side */
	uv_async_t async;
	bool async_closed, joined;
	uint64_t written;
	alogi_drops drops;
	adm_metric *m_sent;
};

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return w < 0 ? -errno : -EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void *so_thread(void *arg)
{
	alogi_stdout *s = arg;
	alogi_line *batch[BATCH];
	int rcs[BATCH];
	size_t nb;

	pthread_mutex_lock(&s->mu);
	for (;;) {
		while (!s->q.n && !s->stop)
			pthread_cond_wait(&s->cv, &s->mu);
		if (!s->q.n)
			break;
		for (nb = 0; nb < BATCH && s->q.n; nb++)
			batch[nb] = alogi_q_pop(&s->q);
		s->busy = true;
		pthread_mutex_unlock(&s->mu);
		for (size_t i = 0; i < nb; i++)
			rcs[i] = write_all(s->fd, batch[i]->data, batch[i]->len);
		pthread_mutex_lock(&s->mu);
		s->busy = false;
		for (size_t i = 0; i < nb; i++) {
			if (rcs[i] < 0)
				s->last_err = rcs[i];
			/* out of memory here: the line is lost to this sink and not counted; it stays referenced */
			(void)vec_push(rcs[i] < 0 ? &s->failed : &s->ok, batch[i]);
		}
		if (!s->abandoned)
			uv_async_send(&s->async);
	}
	s->exited = true;
	if (!s->abandoned)
		uv_async_send(&s->async);
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

static void so_collect(alogi_stdout *s)
{
	vec ok, failed;
	int err;
	bool exited;

	pthread_mutex_lock(&s->mu);
	ok = s->ok;
	failed = s->failed;
	memset(&s->ok, 0, sizeof s->ok);
	memset(&s->failed, 0, sizeof s->failed);
	err = s->last_err;
	exited = s->exited;
	pthread_mutex_unlock(&s->mu);
	s->written += ok.n;
	adm_add(s->m_sent, (int64_t)ok.n);
	for (size_t i = 0; i < ok.n; i++)
		alogi_line_unref(ok.v[i]);
	if (failed.n)
		log_debug("msg=\"audit stdout write failed\" err=\"%s\"", strerror(-err));
	for (size_t i = 0; i < failed.n; i++) {
		alogi_drop(&s->drops, failed.v[i]->seq, "write-failed");
		alogi_line_unref(failed.v[i]);
	}
	free(ok.v);
	free(failed.v);
	if (exited && !s->joined) {
		pthread_join(s->th, NULL);
		s->joined = true;
	}
}

static void so_async_cb(uv_async_t *a)
{
	alogi_stdout *s = a->data;
	so_collect(s);
	if (s->joined && !s->async_closed) {
		s->async_closed = true;
		a->data = s->l;
		uv_close((uv_handle_t *)a, closed_cb);
		alogi_drops_close(&s->drops);
	}
	alogi_progress(s->l);
}

alogi_stdout *alogi_stdout_new(alog *l, const alog_config *c, int fd, char *err, size_t errlen)
{
	alogi_stdout *s = calloc(1, sizeof *s);
	if (!s) {
		err_set(err, errlen, -ENOMEM, "out of memory");
		return NULL;
	}
	s->l = l;
	s->fd = fd;
	alogi_q_init(&s->q, c->queue, c->queue_bytes);
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	s->m_sent = adm_counter("postern_audit_sent_total", "Audit records a sink sent", "sink=\"stdout\"");
	if (uv_async_init(alogi_loop(l), &s->async, so_async_cb) < 0 ||
	    pthread_create(&s->th, NULL, so_thread, s) != 0) {
		err_set(err, errlen, -EAGAIN, "audit stdout: cannot start the writer thread");
		pthread_mutex_destroy(&s->mu);
		pthread_cond_destroy(&s->cv);
		free(s); /* uv_async_init fails only without memory; a failed pthread_create after it leaks it */
		return NULL;
	}
	s->async.data = s;
	alogi_handle_opened(l);
	alogi_drops_init(&s->drops, l, "stdout");
	return s;
}

void alogi_stdout_push(alogi_stdout *s, alogi_line *ln)
{
	int rc;
	pthread_mutex_lock(&s->mu);
	rc = s->stop ? -ESHUTDOWN : alogi_q_push(&s->q, ln);
	if (rc == 0)
		pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	if (rc < 0)
		alogi_drop(&s->drops, ln->seq, rc == -ENOMEM ? "out-of-memory" : "queue-full");
}

bool alogi_stdout_idle(const alogi_stdout *s)
{
	bool idle;
	pthread_mutex_lock((pthread_mutex_t *)&s->mu);
	idle = !s->q.n && !s->busy && !s->ok.n && !s->failed.n;
	pthread_mutex_unlock((pthread_mutex_t *)&s->mu);
	return idle;
}

void alogi_stdout_stats(const alogi_stdout *s, alog_stats *st)
{
	st->stdout_written = s->written;
	st->stdout_dropped = s->drops.total;
	pthread_mutex_lock((pthread_mutex_t *)&s->mu);
	st->stdout_queued = s->q.n;
	pthread_mutex_unlock((pthread_mutex_t *)&s->mu);
}

void alogi_stdout_close(alogi_stdout *s, bool deadline)
{
	alogi_line *ln;
	if (s->async_closed)
		return;
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	if (deadline)
		while ((ln = alogi_q_pop(&s->q))) {
			alogi_drop(&s->drops, ln->seq, "shutdown");
			alogi_line_unref(ln);
		}
	pthread_cond_signal(&s->cv);
	if (deadline && !s->exited) {
		/* stuck in write(2): the thread is left to the end of the process, with this struct */
		s->abandoned = true;
		pthread_detach(s->th);
		s->joined = true;
		log_warn("msg=\"audit stdout is blocked; its writer is abandoned at shutdown\"");
	}
	pthread_mutex_unlock(&s->mu);
	if (s->joined) {
		so_collect(s);
		s->async_closed = true;
		s->async.data = s->l;
		uv_close((uv_handle_t *)&s->async, closed_cb);
		alogi_drops_close(&s->drops);
	}
}

void alogi_stdout_free(alogi_stdout *s)
{
	if (!s || s->abandoned)
		return;
	so_collect(s);
	alogi_q_free(&s->q);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
	free(s);
}

/* ---- syslog ---- */

enum sstate { S_WAIT, S_RESOLVE, S_CONNECT, S_UP, S_CLOSED };

struct alogi_syslog {
	alog *l;
	uv_loop_t *loop;
	enum alogi_proto proto;
	char host[NA_HOST_MAX];
	uint16_t port;
	int facility;
	char hostname[256], procid[16];
	size_t udp_max;
	SSL_CTX *tls;
	alogi_q q;
	alogi_drops drops;
	bo *bo;
	enum sstate st;
	uv_timer_t timer;
	uv_getaddrinfo_t gai;
	bool gai_pending;
	tconn *tc;
	uv_udp_t udp;
	bool udp_open;
	unsigned udp_inflight;
	uint64_t up_ms, sent, truncated, connects, last_seq;
	bool any_sent, closing, closed;
	adm_metric *m_sent;
};

struct udp_req {
	uv_udp_send_t req;
	alogi_syslog *s;
	uint64_t seq;
	char data[];
};

static void sl_pump(alogi_syslog *s);
static void sl_connect(alogi_syslog *s);

/* "<PRI>1 TIMESTAMP HOSTNAME postern PROCID mcp - MSG" (RFC 5424; MSG is the JSON line, no BOM). */
static char *sl_message(const alogi_syslog *s, const alogi_line *ln, bool framed, size_t *len)
{
	char ts[40], day[24], head[400], pre[24];
	int64_t us = ln->ts_us > 0 ? ln->ts_us : 0;
	time_t sec = (time_t)(us / 1000000);
	struct tm tm;
	size_t body = ln->len - 1, hl, pl = 0;
	char *m;

	gmtime_r(&sec, &tm);
	strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts, sizeof ts, "%s.%06" PRId64 "Z", day, us % 1000000);
	hl = (size_t)snprintf(head, sizeof head, "<%d>1 %s %s postern %s mcp - ", s->facility * 8 + ln->sev, ts,
			      s->hostname, s->procid);
	if (framed)
		pl = (size_t)snprintf(pre, sizeof pre, "%zu ", hl + body);
	if (!(m = malloc(pl + hl + body)))
		return NULL;
	memcpy(m, pre, pl);
	memcpy(m + pl, head, hl);
	memcpy(m + pl + hl, ln->data, body);
	*len = pl + hl + body;
	return m;
}

static void sl_sent(alogi_syslog *s, uint64_t seq)
{
	s->sent++;
	s->last_seq = seq;
	s->any_sent = true;
	adm_add(s->m_sent, 1);
}

static void sl_retry_cb(uv_timer_t *t)
{
	sl_connect(t->data);
}

static void sl_schedule(alogi_syslog *s)
{
	uint32_t ms = bo_next(s->bo);
	s->st = S_WAIT;
	if (!s->closed)
		uv_timer_start(&s->timer, sl_retry_cb, ms, 0);
}

static void tc_open(tconn *c, int status, void *ud)
{
	alogi_syslog *s = ud;
	if (status < 0)
		return; /* on_close follows and says why */
	s->st = S_UP;
	s->up_ms = uv_now(s->loop);
	s->connects++;
	log_info("msg=\"audit syslog connected\" peer=%s proto=%s queued=%zu", tconn_peer(c),
		 s->proto == ALOGI_TLS ? "tls" : "tcp", s->q.n);
	sl_pump(s);
}

static void tc_data(tconn *c, const uint8_t *p, size_t n, void *ud)
{
	(void)c, (void)p, (void)n, (void)ud; /* a syslog receiver says nothing */
}

static void tc_eof(tconn *c, void *ud)
{
	(void)ud;
	tconn_close(c); /* the receiver went away: what we write now would be lost */
}

static void tc_drain(tconn *c, void *ud)
{
	(void)c;
	sl_pump(ud);
}

static void tc_closed(tconn *c, int err, void *ud)
{
	alogi_syslog *s = ud;
	bool was_up = s->st == S_UP;
	char q[256];

	s->tc = NULL;
	if (!s->closed) { /* also while closing: the records queued get until the deadline */
		log_quote(tconn_errstr(c), q, sizeof q);
		if (was_up)
			log_warn("msg=\"audit syslog connection lost; records still in flight on it may be lost\" "
				 "host=%s port=%u err=%s last_seq_sent=%" PRIu64 " queued=%zu",
				 s->host, s->port, q, s->last_seq, s->q.n);
		else
			log_warn("msg=\"audit syslog connect failed\" host=%s port=%u err=%s queued=%zu retry_in_max=%ums",
				 s->host, s->port, q, s->q.n, bo_ceiling(s->bo));
		if (was_up && uv_now(s->loop) - s->up_ms >= HELD_MS)
			bo_reset(s->bo);
		sl_schedule(s);
	} else {
		s->st = S_CLOSED;
	}
	(void)err;
	alogi_handle_closed(s->l);
	alogi_progress(s->l);
}

static const tconn_cbs sl_cbs = { tc_open, tc_data, tc_eof, tc_drain, tc_closed };

static void udp_sent(uv_udp_send_t *req, int status)
{
	struct udp_req *r = (struct udp_req *)req;
	alogi_syslog *s = r->s;
	s->udp_inflight--;
	if (status < 0)
		alogi_drop(&s->drops, r->seq, status == UV_ECANCELED ? "shutdown" : "send-failed");
	else
		sl_sent(s, r->seq);
	free(r);
	sl_pump(s);
	alogi_progress(s->l);
}

static void sl_pump(alogi_syslog *s)
{
	alogi_line *ln;
	size_t len;
	char *m;
	int rc;

	if (s->st != S_UP)
		return;
	if (s->proto == ALOGI_UDP) {
		while (s->udp_inflight < UDP_INFLIGHT && (ln = alogi_q_pop(&s->q))) {
			struct udp_req *r = NULL;
			uv_buf_t b;
			if ((m = sl_message(s, ln, false, &len))) {
				if (len > s->udp_max) {
					len = s->udp_max;
					s->truncated++;
				}
				if ((r = malloc(sizeof *r + len)))
					memcpy(r->data, m, len);
				free(m);
			}
			if (!r) {
				alogi_drop(&s->drops, ln->seq, "out-of-memory");
				alogi_line_unref(ln);
				continue;
			}
			r->s = s;
			r->seq = ln->seq;
			alogi_line_unref(ln);
			b = uv_buf_init(r->data, (unsigned)len);
			if ((rc = uv_udp_send(&r->req, &s->udp, &b, 1, NULL, udp_sent)) < 0) {
				alogi_drop(&s->drops, r->seq, "send-failed");
				free(r);
				continue;
			}
			s->udp_inflight++;
		}
		return;
	}
	while (s->tc && !tconn_over_high_water(s->tc) && (ln = alogi_q_pop(&s->q))) {
		m = sl_message(s, ln, true, &len);
		rc = m ? tconn_write(s->tc, (const uint8_t *)m, len) : -ENOMEM;
		free(m);
		if (rc < 0)
			alogi_drop(&s->drops, ln->seq, rc == -ENOMEM ? "out-of-memory" : "send-failed");
		else
			sl_sent(s, ln->seq);
		alogi_line_unref(ln);
		if (!s->q.n)
			alogi_progress(s->l);
	}
}

static void gai_cb(uv_getaddrinfo_t *g, int status, struct addrinfo *res)
{
	alogi_syslog *s = g->data;
	int rc;

	s->gai_pending = false;
	alogi_handle_closed(s->l);
	if (s->closed || status == UV_ECANCELED) {
		uv_freeaddrinfo(res);
		return;
	}
	if (status < 0 || !res) {
		log_warn("msg=\"audit syslog: cannot resolve the host\" host=%s err=\"%s\" queued=%zu", s->host,
			 uv_strerror(status), s->q.n);
		uv_freeaddrinfo(res);
		sl_schedule(s);
		return;
	}
	if (s->proto == ALOGI_UDP) {
		if (!s->udp_open) {
			uv_udp_init(s->loop, &s->udp);
			s->udp.data = s->l;
			s->udp_open = true;
			alogi_handle_opened(s->l);
		}
		rc = uv_udp_connect(&s->udp, res->ai_addr);
		uv_freeaddrinfo(res);
		if (rc < 0 && rc != UV_EISCONN) {
			log_warn("msg=\"audit syslog: udp connect failed\" host=%s err=\"%s\"", s->host, uv_strerror(rc));
			sl_schedule(s);
			return;
		}
		s->st = S_UP;
		s->connects++;
		sl_pump(s);
		return;
	}
	rc = tconn_connect(s->loop, res->ai_addr, s->tls, s->host, CONNECT_TIMEOUT_MS, &sl_cbs, s, &s->tc);
	uv_freeaddrinfo(res);
	if (rc < 0) {
		s->tc = NULL;
		log_warn("msg=\"audit syslog connect failed\" host=%s port=%u err=\"%s\"", s->host, s->port,
			 uv_strerror(rc));
		sl_schedule(s);
		return;
	}
	alogi_handle_opened(s->l);
	s->st = S_CONNECT;
}

static void sl_connect(alogi_syslog *s)
{
	struct addrinfo hints;
	char port[8];
	int rc;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = s->proto == ALOGI_UDP ? SOCK_DGRAM : SOCK_STREAM;
	snprintf(port, sizeof port, "%u", s->port);
	s->gai.data = s;
	if ((rc = uv_getaddrinfo(s->loop, &s->gai, gai_cb, s->host, port, &hints)) < 0) {
		log_warn("msg=\"audit syslog: cannot resolve the host\" host=%s err=\"%s\"", s->host, uv_strerror(rc));
		sl_schedule(s);
		return;
	}
	s->gai_pending = true;
	alogi_handle_opened(s->l);
	s->st = S_RESOLVE;
}

alogi_syslog *alogi_syslog_new(alog *l, const alog_config *c, char *err, size_t errlen)
{
	alogi_syslog *s = calloc(1, sizeof *s);
	if (!s) {
		err_set(err, errlen, -ENOMEM, "out of memory");
		return NULL;
	}
	s->l = l;
	s->loop = alogi_loop(l);
	s->proto = c->proto;
	snprintf(s->host, sizeof s->host, "%s", c->host);
	s->port = c->port;
	s->facility = c->facility;
	s->udp_max = c->udp_max;
	snprintf(s->procid, sizeof s->procid, "%ld", (long)getpid());
	if (c->hostname)
		snprintf(s->hostname, sizeof s->hostname, "%s", c->hostname);
	else if (gethostname(s->hostname, sizeof s->hostname - 1) < 0 || !s->hostname[0])
		snprintf(s->hostname, sizeof s->hostname, "-");
	for (char *p = s->hostname; *p; p++) /* HOSTNAME is PRINTUSASCII */
		if (*p <= 32 || *p >= 127)
			*p = '_';
	alogi_q_init(&s->q, c->queue, c->queue_bytes);
	if (c->proto == ALOGI_TLS && !(s->tls = tio_client_ctx(c->ca_file, NULL, NULL, false, err, errlen))) {
		free(s);
		return NULL;
	}
	if (!(s->bo = bo_new(500, 30000, 100, NULL, NULL))) {
		SSL_CTX_free(s->tls);
		free(s);
		err_set(err, errlen, -ENOMEM, "out of memory");
		return NULL;
	}
	s->m_sent = adm_counter("postern_audit_sent_total", "Audit records a sink sent", "sink=\"syslog\"");
	uv_timer_init(s->loop, &s->timer);
	s->timer.data = s;
	alogi_handle_opened(l);
	alogi_drops_init(&s->drops, l, "syslog");
	sl_connect(s);
	return s;
}

void alogi_syslog_push(alogi_syslog *s, alogi_line *ln)
{
	int rc = s->closed ? -ESHUTDOWN : alogi_q_push(&s->q, ln);
	if (rc < 0) {
		alogi_drop(&s->drops, ln->seq, rc == -ENOMEM ? "out-of-memory" : "queue-full");
		return;
	}
	sl_pump(s);
}

/* Bytes already in the connection's write queue are not waited for here: the close flushes them. */
bool alogi_syslog_idle(const alogi_syslog *s)
{
	return !s->q.n && !s->udp_inflight;
}

void alogi_syslog_stats(const alogi_syslog *s, alog_stats *st)
{
	st->syslog_sent = s->sent;
	st->syslog_dropped = s->drops.total;
	st->syslog_truncated = s->truncated;
	st->syslog_connects = s->connects;
	st->syslog_queued = s->q.n;
}

void alogi_syslog_close(alogi_syslog *s, bool deadline)
{
	alogi_line *ln;
	s->closing = true;
	if (s->closed) {
		if (deadline && s->tc)
			tconn_close(s->tc); /* a receiver that does not read: what it did not take is lost */
		return;
	}
	if (!deadline && !alogi_syslog_idle(s))
		return; /* still sending (or reconnecting) until the deadline */
	s->closed = true;
	while ((ln = alogi_q_pop(&s->q))) {
		alogi_drop(&s->drops, ln->seq, "shutdown");
		alogi_line_unref(ln);
	}
	uv_timer_stop(&s->timer);
	s->timer.data = s->l;
	uv_close((uv_handle_t *)&s->timer, closed_cb);
	if (s->gai_pending)
		uv_cancel((uv_req_t *)&s->gai);
	if (s->tc && deadline)
		tconn_close(s->tc);
	else if (s->tc && tconn_shutdown(s->tc) < 0) /* FIN (TLS: close_notify) after the queue; tc_eof closes */
		tconn_close_after_flush(s->tc);
	/* Not closed at once after the flush: the receiver may still send (its own close_notify), and data to a
	 * closed socket draws a RST, which makes the receiver's kernel drop what its program has not read yet.
	 * Its EOF says it has read everything; the deadline closes a receiver that never sends one. */
	if (s->udp_open)
		uv_close((uv_handle_t *)&s->udp, closed_cb); /* pending sends end as UV_ECANCELED: counted */
	alogi_drops_close(&s->drops);
}

void alogi_syslog_free(alogi_syslog *s)
{
	if (!s)
		return;
	alogi_q_free(&s->q);
	bo_free(s->bo);
	SSL_CTX_free(s->tls);
	free(s);
}
