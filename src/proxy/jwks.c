/* The jwks_url fetcher: a one-shot uv timer starts a libcurl fetch on the threadpool; the result is parsed
 * into the route's auth on the loop thread (auth_jwks_set keeps the old set on error). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/cbuf.h"
#include "core/curlx.h"
#include "core/err.h"
#include "core/log.h"
#include "proxy/jwks.h"

#define JWKS_ERR_LEN (CURL_ERROR_SIZE + 64)

struct jwks {
	uv_loop_t *loop;
	auth *a;                 /* NULL once jwks_free ran */
	uv_timer_t timer;
	uv_work_t work;
	char *url, *ca_file;
	bool http_ok;            /* the URL is http:// (loopback, checked by auth_from_cfg) */
	jwks_opts o;
	bool busy, kick_pending, closing, timer_closed, failing;
	atomic_bool stop;        /* read by the fetch thread's progress callback */
	uint64_t last_start;     /* uv_now of the last fetch's start */
	int64_t retry;           /* the next delay after a failure */
	/* one fetch's result, written on the thread, read in after_work */
	cbuf body;
	bool too_big;
	int jrc;
	char jerr[JWKS_ERR_LEN];
	char last_err[JWKS_ERR_LEN]; /* the last failure; logged when it differs from the one before */
	jwks_stats st;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
	struct jwks *j = ud;
	if (cbuf_append(&j->body, p, size * n) < 0) {
		j->too_big = true;
		return 0; /* aborts the transfer (CURLE_WRITE_ERROR) */
	}
	return size * n;
}

static int on_progress(void *ud, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
	struct jwks *j = ud;
	(void)a, (void)b, (void)c, (void)d;
	return atomic_load(&j->stop) ? 1 : 0; /* non-zero aborts: jwks_free need not wait out the timeout */
}

/* On the threadpool: touches only the job fields and the immutable url/ca_file/o. */
static void do_fetch(uv_work_t *w)
{
	struct jwks *j = w->data;
	char ebuf[CURL_ERROR_SIZE] = "";
	CURL *c = curl_easy_init();
	CURLcode rc;
	long status = 0;

	j->jrc = 0;
	j->too_big = false;
	j->jerr[0] = 0;
	if (!c) {
		j->jrc = err_set(j->jerr, sizeof j->jerr, -ENOMEM, "cannot start libcurl");
		return;
	}
	curl_easy_setopt(c, CURLOPT_URL, j->url);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, j->http_ok ? "http" : "https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_NOPROXY, "127.0.0.1,localhost,::1"); /* an env proxy cannot reach our loopback */
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for DNS timeouts */
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)j->o.connect_timeout_ms);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)j->o.total_timeout_ms);
	curl_easy_setopt(c, CURLOPT_MAXFILESIZE, (long)JWT_MAX_JWKS);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, j);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(c, CURLOPT_XFERINFODATA, j);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "postern/" POSTERN_VERSION);
	curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, ""); /* what libcurl can decode; the cap is on decoded bytes */
	if (j->ca_file)
		curl_easy_setopt(c, CURLOPT_CAINFO, j->ca_file);
	rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	if (j->too_big)
		j->jrc = err_set(j->jerr, sizeof j->jerr, -EFBIG, "the JWKS is over %u bytes", JWT_MAX_JWKS);
	else if (rc == CURLE_FILESIZE_EXCEEDED)
		j->jrc = err_set(j->jerr, sizeof j->jerr, -EFBIG, "the JWKS is over %u bytes (Content-Length)", JWT_MAX_JWKS);
	else if (rc != CURLE_OK)
		j->jrc = err_set(j->jerr, sizeof j->jerr, -EIO, "%s", *ebuf ? ebuf : curl_easy_strerror(rc));
	else if (status != 200)
		j->jrc = err_set(j->jerr, sizeof j->jerr, -EPROTO, "HTTP status %ld (200 expected; redirects are not followed)",
				 status);
	curl_easy_cleanup(c);
}

static void maybe_release(struct jwks *j)
{
	if (!j->closing || j->busy || !j->timer_closed)
		return;
	cbuf_free(&j->body);
	free(j->url);
	free(j->ca_file);
	free(j);
}

static void on_timer(uv_timer_t *t);

static void schedule(struct jwks *j, uint64_t ms)
{
	uv_timer_start(&j->timer, on_timer, ms, 0);
}

static void after_fetch(uv_work_t *w, int status)
{
	struct jwks *j = w->data;
	char qurl[512], qerr[400], perr[300];

	j->busy = false;
	if (j->closing) {
		maybe_release(j);
		return;
	}
	if (status < 0 && !j->jrc) /* UV_ECANCELED: not run */
		j->jrc = err_set(j->jerr, sizeof j->jerr, status, "fetch not run: %s", uv_strerror(status));
	if (!j->jrc && auth_jwks_set(j->a, cbuf_str(&j->body), j->body.len, perr, sizeof perr) < 0)
		j->jrc = err_set(j->jerr, sizeof j->jerr, -EINVAL, "%s", perr);
	cbuf_free(&j->body);
	log_quote(j->url, qurl, sizeof qurl);
	if (!j->jrc) {
		j->st.ok++;
		if (j->failing)
			log_info("msg=\"JWKS fetched again\" url=%s keys=%zu", qurl, auth_jwks_count(j->a));
		else
			log_debug("msg=\"JWKS fetched\" url=%s keys=%zu", qurl, auth_jwks_count(j->a));
		j->failing = false;
		j->last_err[0] = 0;
		j->retry = j->o.retry_ms;
		schedule(j, (uint64_t)j->o.refresh_ms);
	} else {
		j->st.failed++;
		if (!j->failing || strcmp(j->last_err, j->jerr))
			log_warn("msg=\"cannot fetch the JWKS; the last good key set stays in use\" url=%s error=%s keys=%zu "
				 "retry_ms=%lld", qurl, log_quote(j->jerr, qerr, sizeof qerr), auth_jwks_count(j->a),
				 (long long)j->retry);
		snprintf(j->last_err, sizeof j->last_err, "%s", j->jerr);
		j->failing = true;
		schedule(j, (uint64_t)j->retry);
		j->retry = j->retry * 2 < j->o.refresh_ms ? j->retry * 2 : j->o.refresh_ms;
	}
	if (j->kick_pending) {
		j->kick_pending = false;
		jwks_kick(j);
	}
}

static void on_timer(uv_timer_t *t)
{
	struct jwks *j = t->data;
	int rc;

	if (j->closing || j->busy)
		return;
	j->busy = true;
	j->last_start = uv_now(j->loop);
	j->st.fetches++;
	cbuf_init(&j->body, 4096, JWT_MAX_JWKS);
	j->jrc = 0;
	j->work.data = j;
	if ((rc = uv_queue_work(j->loop, &j->work, do_fetch, after_fetch)) < 0) {
		j->jrc = err_set(j->jerr, sizeof j->jerr, rc, "cannot queue the fetch: %s", uv_strerror(rc));
		after_fetch(&j->work, 0);
	}
}

int jwks_new(uv_loop_t *loop, auth *a, const jwks_opts *o, jwks **out, char *err, size_t errlen)
{
	const char *url = auth_jwks_url(a), *ca = auth_jwks_ca_file(a);
	struct jwks *j;
	char ce[160];
	int rc;

	*out = NULL;
	if (!url)
		return err_set(err, errlen, -EINVAL, "the route has no jwks_url");
	if (!curlx_load(ce, sizeof ce))
		return err_set(err, errlen, -ENOSYS, "jwks_url: %s", ce);
	if (!(j = calloc(1, sizeof *j)))
		return err_set(err, errlen, -ENOMEM, "out of memory");
	j->loop = loop;
	j->a = a;
	j->http_ok = !strncasecmp(url, "http://", 7);
	j->o = o ? *o : (jwks_opts){ 0 };
	if (!j->o.refresh_ms)
		j->o.refresh_ms = auth_jwks_refresh_ms(a) > 0 ? auth_jwks_refresh_ms(a) : AUTH_JWKS_REFRESH_DEFAULT_MS;
	if (!j->o.min_refetch_ms)
		j->o.min_refetch_ms = JWKS_MIN_REFETCH_MS;
	if (!j->o.retry_ms)
		j->o.retry_ms = JWKS_RETRY_MS;
	if (!j->o.connect_timeout_ms)
		j->o.connect_timeout_ms = JWKS_CONNECT_TIMEOUT_MS;
	if (!j->o.total_timeout_ms)
		j->o.total_timeout_ms = JWKS_TOTAL_TIMEOUT_MS;
	j->retry = j->o.retry_ms;
	atomic_init(&j->stop, false);
	if (!(j->url = strdup(url)) || (ca && !(j->ca_file = strdup(ca)))) {
		free(j->url);
		free(j);
		return err_set(err, errlen, -ENOMEM, "out of memory");
	}
	if ((rc = uv_timer_init(loop, &j->timer)) < 0) {
		free(j->url);
		free(j->ca_file);
		free(j);
		return err_set(err, errlen, rc, "cannot start a timer: %s", uv_strerror(rc));
	}
	j->timer.data = j;
	schedule(j, 0); /* the first fetch at once, so the first request likely finds keys */
	*out = j;
	return 0;
}

static void on_timer_closed(uv_handle_t *h)
{
	struct jwks *j = h->data;
	j->timer_closed = true;
	maybe_release(j);
}

void jwks_free(jwks *j)
{
	if (!j || j->closing)
		return;
	j->closing = true;
	j->a = NULL;
	atomic_store(&j->stop, true);
	uv_close((uv_handle_t *)&j->timer, on_timer_closed);
}

void jwks_kick(jwks *j)
{
	uint64_t now, due, delay;

	if (!j || j->closing)
		return;
	if (j->busy) {
		j->kick_pending = true;
		return;
	}
	now = uv_now(j->loop);
	due = j->st.fetches ? j->last_start + (uint64_t)j->o.min_refetch_ms : now;
	delay = due > now ? due - now : 0;
	if (uv_is_active((uv_handle_t *)&j->timer) && uv_timer_get_due_in(&j->timer) <= delay)
		return; /* already due as soon */
	schedule(j, delay);
}

void jwks_get_stats(const jwks *j, jwks_stats *st)
{
	*st = j->st;
	st->busy = j->busy;
	st->last_error = j->failing ? j->last_err : NULL;
}
