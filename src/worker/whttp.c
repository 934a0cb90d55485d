/* The worker's HTTP client on libcurl's multi socket interface (see whttp.h). */
#include "worker/whttp.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cbuf.h"
#include "core/curlx.h"
#include "core/err.h"
#include "core/list.h"

#define DEF_MAX_BODY (1u << 20)

struct sockctx {
	uv_poll_t poll; /* first: the handle's address is the context's */
	curl_socket_t fd;
	whttp *h;
	struct sockctx *next, **pprev;
};

struct whttp_req {
	whttp *h;
	CURL *c;
	struct curl_slist *hdrs;
	cbuf body;
	whttp_done_fn done;
	whttp_data_fn on_data;
	void (*on_head)(void *ud, long status);
	void *ud;
	bool too_big, head_seen;
	long status;
	char ebuf[CURL_ERROR_SIZE];
	struct whttp_req *next, **pprev;
};

struct whttp {
	uv_loop_t *loop;
	CURLM *m;
	uv_timer_t timer;
	struct sockctx *socks;
	struct whttp_req *reqs;
	size_t nreqs;
	int open_handles;
	bool freeing;
};

static void handle_closed(uv_handle_t *hd)
{
	whttp *h;
	if (hd->type == UV_POLL) {
		struct sockctx *s = (struct sockctx *)hd;
		h = s->h;
		free(s);
	} else {
		h = hd->data;
	}
	if (--h->open_handles == 0 && h->freeing)
		free(h);
}

static void sock_close(struct sockctx *s)
{
	LIST_UNLINK(s, next, pprev);
	uv_poll_stop(&s->poll);
	uv_close((uv_handle_t *)&s->poll, handle_closed);
}

static void req_free(struct whttp_req *r)
{
	LIST_UNLINK(r, next, pprev);
	r->h->nreqs--;
	curl_multi_remove_handle(r->h->m, r->c);
	curl_easy_cleanup(r->c);
	curl_slist_free_all(r->hdrs);
	cbuf_free(&r->body);
	free(r);
}

static void check_done(whttp *h)
{
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(h->m, &left))) {
		struct whttp_req *r = NULL;
		whttp_result res = { 0 };
		char why[CURL_ERROR_SIZE + 64];
		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		if (!r)
			continue;
		why[0] = 0;
		if (msg->data.result == CURLE_OK) {
			curl_easy_getinfo(r->c, CURLINFO_RESPONSE_CODE, &res.status);
		} else if (r->too_big) {
			snprintf(why, sizeof why, "answer too large (over %zu bytes)", r->body.max);
		} else {
			snprintf(why, sizeof why, "%s", r->ebuf[0] ? r->ebuf : curl_easy_strerror(msg->data.result));
		}
		res.body = cbuf_str(&r->body);
		res.len = r->body.len;
		res.err = why;
		whttp_done_fn done = r->done;
		void *ud = r->ud;
		/* Out of curl before the callback: it may start new requests or free the client. */
		{
			cbuf keep = r->body;
			r->body = (cbuf)CBUF_INIT(0, 0);
			req_free(r);
			res.body = cbuf_str(&keep);
			done(ud, &res);
			cbuf_free(&keep);
		}
	}
}

static void on_poll(uv_poll_t *p, int status, int events)
{
	struct sockctx *s = (struct sockctx *)p;
	int flags = 0, running;
	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	whttp *h = s->h;
	curl_multi_socket_action(h->m, s->fd, flags, &running);
	check_done(h);
}

static int sock_cb(CURL *e, curl_socket_t fd, int what, void *userp, void *socketp)
{
	whttp *h = userp;
	struct sockctx *s = socketp;
	int ev = 0;
	(void)e;
	if (what == CURL_POLL_REMOVE) {
		if (s) {
			sock_close(s);
			curl_multi_assign(h->m, fd, NULL);
		}
		return 0;
	}
	if (!s) {
		s = calloc(1, sizeof *s);
		if (!s)
			return -1; /* -1: libcurl's failure value */
		s->fd = fd;
		s->h = h;
		if (uv_poll_init_socket(h->loop, &s->poll, fd) < 0) {
			free(s);
			return -1; /* -1: libcurl's failure value */
		}
		h->open_handles++;
		LIST_PUSH(h->socks, s, next, pprev);
		curl_multi_assign(h->m, fd, s);
	}
	if (what & CURL_POLL_IN)
		ev |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		ev |= UV_WRITABLE;
	uv_poll_start(&s->poll, ev, on_poll);
	return 0;
}

static void on_timer(uv_timer_t *t)
{
	whttp *h = t->data;
	int running;
	curl_multi_socket_action(h->m, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(h);
}

static int timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	whttp *h = userp;
	(void)m;
	if (timeout_ms < 0)
		uv_timer_stop(&h->timer);
	else
		uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0);
	return 0;
}

whttp *whttp_new(uv_loop_t *loop, char *err, size_t errlen)
{
	whttp *h;
	if (!curlx_load(err, errlen))
		return NULL;
	h = calloc(1, sizeof *h);
	if (!h) {
		err_set(err, errlen, -ENOMEM, "out of memory");
		return NULL;
	}
	h->loop = loop;
	h->m = curl_multi_init();
	if (!h->m) {
		free(h);
		err_set(err, errlen, -ENOMEM, "cannot start libcurl's multi interface");
		return NULL;
	}
	curl_multi_setopt(h->m, CURLMOPT_SOCKETFUNCTION, sock_cb);
	curl_multi_setopt(h->m, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->m, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(h->m, CURLMOPT_TIMERDATA, h);
	uv_timer_init(loop, &h->timer);
	h->timer.data = h;
	h->open_handles = 1;
	return h;
}

void whttp_free(whttp *h)
{
	if (!h)
		return;
	while (h->reqs)
		req_free(h->reqs);
	while (h->socks)
		sock_close(h->socks);
	curl_multi_cleanup(h->m);
	h->freeing = true;
	uv_close((uv_handle_t *)&h->timer, handle_closed);
}

static size_t on_write(char *p, size_t size, size_t n, void *ud)
{
	struct whttp_req *r = ud;
	size_t len = size * n;
	if (r->on_data && r->status >= 200 && r->status < 300) /* an error answer is buffered: its message */
		return r->on_data(r->ud, p, len) ? len : 0;
	if (cbuf_append(&r->body, p, len) < 0) {
		r->too_big = true;
		return 0; /* aborts the transfer */
	}
	return len;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
	struct whttp_req *r = ud;
	size_t len = size * n;
	long status = 0;
	/* The blank line that ends the head (a 1xx head is followed by another). */
	if (len <= 2 && (p[0] == '\r' || p[0] == '\n') && !r->head_seen) {
		curl_easy_getinfo(r->c, CURLINFO_RESPONSE_CODE, &status);
		if (status >= 200) {
			r->head_seen = true;
			r->status = status;
			if (r->on_head)
				r->on_head(r->ud, status);
		}
	}
	return len;
}

int whttp_start(whttp *h, const whttp_opts *o, whttp_done_fn done, void *ud, whttp_req **out, char *err,
		size_t errlen)
{
	struct whttp_req *r;
	int rc = -ENOMEM;

	if (out)
		*out = NULL;
	if (h->freeing || o->timeout_ms <= 0 || !o->url || !o->method)
		return err_set(err, errlen, -EINVAL, "bad request options");
	r = calloc(1, sizeof *r);
	if (!r)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	r->h = h;
	r->done = done;
	r->on_data = o->on_data;
	r->on_head = o->on_head;
	r->ud = ud;
	cbuf_init(&r->body, 4096, o->max_body ? o->max_body : DEF_MAX_BODY);
	r->c = curl_easy_init();
	if (!r->c)
		goto fail;
	if (o->bearer) {
		size_t n = strlen(o->bearer) + 32;
		char *line = malloc(n);
		if (!line)
			goto fail;
		snprintf(line, n, "Authorization: Bearer %s", o->bearer);
		r->hdrs = curl_slist_append(r->hdrs, line);
		OPENSSL_cleanse(line, n);
		free(line);
		if (!r->hdrs)
			goto fail;
	}
	for (size_t i = 0; o->headers && o->headers[i]; i++) {
		struct curl_slist *l = curl_slist_append(r->hdrs, o->headers[i]);
		if (!l)
			goto fail;
		r->hdrs = l;
	}
	if (o->body) {
		struct curl_slist *l = curl_slist_append(r->hdrs, "Content-Type: application/json");
		if (!l)
			goto fail;
		r->hdrs = l;
		curl_easy_setopt(r->c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
		curl_easy_setopt(r->c, CURLOPT_COPYPOSTFIELDS, o->body);
	} else if (!strcmp(o->method, "POST")) {
		curl_easy_setopt(r->c, CURLOPT_POSTFIELDSIZE, 0L);
		curl_easy_setopt(r->c, CURLOPT_COPYPOSTFIELDS, "");
	}
	if (strcmp(o->method, "GET") && strcmp(o->method, "POST"))
		curl_easy_setopt(r->c, CURLOPT_CUSTOMREQUEST, o->method);
	curl_easy_setopt(r->c, CURLOPT_URL, o->url);
	curl_easy_setopt(r->c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(r->c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(r->c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->c, CURLOPT_CONNECTTIMEOUT_MS, o->timeout_ms < 10000 ? o->timeout_ms : 10000L);
	curl_easy_setopt(r->c, CURLOPT_TIMEOUT_MS, o->timeout_ms);
	curl_easy_setopt(r->c, CURLOPT_HTTPHEADER, r->hdrs);
	curl_easy_setopt(r->c, CURLOPT_ERRORBUFFER, r->ebuf);
	curl_easy_setopt(r->c, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(r->c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(r->c, CURLOPT_PRIVATE, r);
	curl_easy_setopt(r->c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(r->c, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(r->c, CURLOPT_USERAGENT, "postern-worker/" POSTERN_VERSION);
	curl_easy_setopt(r->c, CURLOPT_NOPROXY, "127.0.0.1,localhost,::1");
	if (o->ca_file)
		curl_easy_setopt(r->c, CURLOPT_CAINFO, o->ca_file);
	if (curl_multi_add_handle(h->m, r->c) != CURLM_OK) {
		rc = -EIO;
		goto fail;
	}
	LIST_PUSH(h->reqs, r, next, pprev);
	h->nreqs++;
	if (out)
		*out = r;
	return 0;
fail:
	if (r->c)
		curl_easy_cleanup(r->c);
	curl_slist_free_all(r->hdrs);
	free(r);
	return err_set(err, errlen, rc, rc == -EIO ? "libcurl refused the request" : "out of memory");
}

void whttp_cancel(whttp_req *r)
{
	if (r)
		req_free(r);
}

size_t whttp_active(const whttp *h)
{
	return h->nreqs;
}
