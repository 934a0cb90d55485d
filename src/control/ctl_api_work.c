/* The work queue: poll (a long poll of up to block_ms: the store is asked again every POLL_TICK_MS, and at once
 * when this process enqueues), ack, heartbeat (412 with the lease on a stale expected_last_heartbeat), stop,
 * retrieve, update, list, stats; the sessions token each delivery hands out; and the enqueue of a session's
 * work item. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "control/ctl_api_int.h"
#include "core/list.h"
#include "core/log.h"

#define POLL_TICK_MS 20
#define WORKER_ID_MAX 256

/* The sessions token a poll request hands out with the item it gets: minted once per request (not per tick),
 * bound by the store to that delivery only, so every delivery of an item has a token of its own. */
struct cai_tok {
	ctl_token t;
	char kid[40];
	char *secret; /* base64url of {"sessions_token", "api_base_url"?}; wiped and freed by tok_wipe */
};

struct cai_poll {
	struct cai_poll *next, **pprev;
	capi *a;
	cai_ctx c;
	uv_timer_t t;
	uint64_t deadline, reclaim;
	char worker[WORKER_ID_MAX];
	struct cai_tok tok;
	bool done;
};

static char *b64url(const unsigned char *p, size_t n);

static void tok_wipe(struct cai_tok *k)
{
	if (k->secret) {
		OPENSSL_cleanse(k->secret, strlen(k->secret));
		free(k->secret);
	}
	OPENSSL_cleanse(k, sizeof *k);
}

static int tok_mint(capi *a, struct cai_tok *k)
{
	char tok[96], *sj = NULL;
	json_t *sec = NULL;
	int rc;
	memset(k, 0, sizeof *k);
	if ((rc = ctl_new_id("key", k->kid, sizeof k->kid)) < 0 || (rc = capi_key_new("sess", tok, sizeof tok, k->t.hash)) < 0)
		goto out;
	rc = -ENOMEM;
	if (!(sec = json_pack("{s:s}", "sessions_token", tok)))
		goto out;
	if (a->o.api_base_url)
		json_object_set_new(sec, "api_base_url", json_string(a->o.api_base_url));
	if (!(sj = json_dumps(sec, JSON_COMPACT)) || !(k->secret = b64url((unsigned char *)sj, strlen(sj))))
		goto out;
	k->t.secret = k->secret;
	k->t.key_id = k->kid;
	rc = 0;
out:
	OPENSSL_cleanse(tok, sizeof tok);
	if (sj)
		OPENSSL_cleanse(sj, strlen(sj));
	free(sj);
	json_decref(sec);
	if (rc < 0)
		tok_wipe(k);
	return rc;
}

static void poll_closed(uv_handle_t *h) { free(h->data); }

static void poll_finish(struct cai_poll *p)
{
	if (p->done)
		return;
	p->done = true;
	tok_wipe(&p->tok);
	LIST_UNLINK(p, next, pprev);
	p->a->npolls--;
	uv_timer_stop(&p->t);
	uv_close((uv_handle_t *)&p->t, poll_closed);
}

/* One ask of the store: 1 answered (work or an error), 0 nothing yet. */
static int poll_once(cai_ctx *c, const char *worker, uint64_t reclaim, const struct cai_tok *tok, bool final)
{
	ctl_store *s = c->a->o.store;
	json_t *w = NULL;
	char err[256];
	int rc = s->ops->work_poll(s, c->caps[0], worker, reclaim, &tok->t, &w, err, sizeof err);
	if (rc < 0) {
		cai_store_error(c, rc, err);
		return 1;
	}
	if (w || final) {
		cai_reply(c, 200, w ? w : json_null());
		return 1;
	}
	return 0;
}

static void poll_tick(uv_timer_t *t)
{
	struct cai_poll *p = t->data;
	bool final = uv_now(t->loop) >= p->deadline || p->a->draining;
	if (poll_once(&p->c, p->worker, p->reclaim, &p->tok, final))
		poll_finish(p);
}

static void poll_gone(hsrv_req *r, void *ud)
{
	(void)r;
	poll_finish(ud);
}

void cai_wake_polls(capi *a, const char *env_id)
{
	for (struct cai_poll *p = a->polls, *nx; p; p = nx) {
		nx = p->next;
		if (!strcmp(p->c.caps[0], env_id) && poll_once(&p->c, p->worker, p->reclaim, &p->tok, false))
			poll_finish(p);
	}
}

void cai_polls_end(capi *a)
{
	while (a->polls) {
		struct cai_poll *p = a->polls;
		cai_reply(&p->c, 200, json_null());
		poll_finish(p);
	}
}

void cai_work_poll(cai_ctx *c)
{
	uint64_t block = 0, reclaim = c->a->o.reclaim_ms;
	const char *wid = hsrv_header(c->r, "anthropic-worker-id");
	struct cai_poll *p;
	struct cai_tok tok;
	if (!cai_may_env(c, c->caps[0], CAI_ENV))
		return;
	if (cai_query_uint(c, "block_ms", 1, 999, &block) < 0 ||
	    cai_query_uint(c, "reclaim_older_than_ms", 0, 86400000, &reclaim) < 0)
		return;
	if (wid && strlen(wid) >= WORKER_ID_MAX) {
		cai_error(c, 400, NULL, "Anthropic-Worker-ID: at most %d bytes", WORKER_ID_MAX - 1);
		return;
	}
	if (tok_mint(c->a, &tok) < 0) {
		cai_store_error(c, -EIO, "no random bytes for a sessions token");
		return;
	}
	if (poll_once(c, wid, reclaim, &tok, block == 0)) {
		tok_wipe(&tok);
		return;
	}
	if (!(p = calloc(1, sizeof *p))) {
		tok_wipe(&tok);
		cai_reply(c, 200, json_null());
		return;
	}
	p->a = c->a;
	p->c = *c;
	p->tok = tok; /* p owns the secret now; its ctl_token points at p's copy */
	p->tok.t.secret = p->tok.secret;
	p->tok.t.key_id = p->tok.kid;
	p->reclaim = reclaim;
	snprintf(p->worker, sizeof p->worker, "%s", wid ? wid : "");
	uv_timer_init(c->a->o.loop, &p->t);
	p->t.data = p;
	p->deadline = uv_now(c->a->o.loop) + block;
	LIST_PUSH(c->a->polls, p, next, pprev);
	c->a->npolls++;
	hsrv_on_gone(c->r, poll_gone, p);
	uv_timer_start(&p->t, poll_tick, block < POLL_TICK_MS ? block : POLL_TICK_MS, POLL_TICK_MS);
}

/* The work item of caps[0]/caps[1], when the caller may act on it (a sessions token: only its session's). */
static json_t *get_work(cai_ctx *c, unsigned creds)
{
	ctl_store *s = c->a->o.store;
	json_t *w = NULL;
	char err[256];
	int rc;
	if (c->cred != CAI_SESSION && !cai_may_env(c, c->caps[0], creds))
		return NULL;
	if ((rc = s->ops->work_get(s, c->caps[0], c->caps[1], &w, err, sizeof err)) < 0) {
		cai_store_error(c, rc, err);
		return NULL;
	}
	if (c->cred == CAI_SESSION) {
		const char *sid = json_string_value(json_object_get(json_object_get(w, "data"), "id"));
		if (!(creds & CAI_SESSION) || !sid || strcmp(sid, c->scope)) {
			json_decref(w);
			cai_error(c, 403, NULL, "this sessions token belongs to another work item");
			return NULL;
		}
	}
	return w;
}

static void reply_work(cai_ctx *c)
{
	json_t *w = get_work(c, CAI_API | CAI_ENV | CAI_SESSION);
	if (w)
		cai_reply(c, 200, w);
}

void cai_work_ack(cai_ctx *c)
{
	ctl_store *s = c->a->o.store;
	json_t *w = get_work(c, CAI_ENV | CAI_SESSION);
	char err[256];
	int rc;
	if (!w)
		return;
	json_decref(w);
	if ((rc = s->ops->work_ack(s, c->caps[0], c->caps[1], err, sizeof err)) < 0)
		cai_store_error(c, rc == -EINVAL ? -EEXIST : rc, err);
	else
		reply_work(c);
}

static json_t *lease_json(const ctl_lease *l, bool response)
{
	json_t *o = json_pack("{s:s,s:b,s:i}", "state", l->state, "lease_extended", l->lease_extended, "ttl_seconds",
			      (json_int_t)l->ttl_seconds);
	if (response) {
		json_object_set_new(o, "type", json_string("work_heartbeat"));
		json_object_set_new(o, "last_heartbeat", json_string(l->last_heartbeat));
	} else
		json_object_set_new(o, "last_heartbeat", l->last_heartbeat[0] ? json_string(l->last_heartbeat) : json_null());
	return o;
}

void cai_work_heartbeat(cai_ctx *c)
{
	ctl_store *s = c->a->o.store;
	json_t *w = get_work(c, CAI_ENV | CAI_SESSION);
	char expected[64], err[256];
	uint64_t ttl = c->a->o.lease_ttl;
	ctl_lease l;
	int rc, n;
	if (!w)
		return;
	if (c->superseded) { /* the lease is another delivery's now: the 412 of a lost lease, nothing changed */
		const char *st = json_string_value(json_object_get(w, "state"));
		const char *hb = json_string_value(json_object_get(w, "latest_heartbeat_at"));
		memset(&l, 0, sizeof l);
		snprintf(l.state, sizeof l.state, "%s", st ? st : "queued");
		snprintf(l.last_heartbeat, sizeof l.last_heartbeat, "%s", hb ? hb : "");
		cai_error(c, 412, json_pack("{s:s,s:o}", "error_code", "heartbeat_precondition_failed", "current_state",
					    lease_json(&l, false)),
			  "this sessions token's delivery of the work item is over: the item was offered again and another "
			  "worker may hold it");
		json_decref(w);
		return;
	}
	json_decref(w);
	n = hsrv_query_get(hsrv_query(c->r), "expected_last_heartbeat", expected, sizeof expected);
	if (n <= 0) {
		cai_error(c, 400, NULL, "expected_last_heartbeat: required (NO_HEARTBEAT for the first beat, then the "
			  "last_heartbeat the previous beat returned)");
		return;
	}
	if (cai_query_uint(c, "desired_ttl_seconds", 1, c->a->o.max_ttl, &ttl) < 0)
		return;
	rc = s->ops->work_heartbeat(s, c->caps[0], c->caps[1], expected, (unsigned)ttl, &l, err, sizeof err);
	if (rc == -ESTALE)
		cai_error(c, 412, json_pack("{s:s,s:o}", "error_code", "heartbeat_precondition_failed", "current_state",
					    lease_json(&l, false)),
			  "%s", err);
	else if (rc < 0)
		cai_store_error(c, rc, err);
	else
		cai_reply(c, 200, lease_json(&l, true));
}

void cai_work_stop(cai_ctx *c)
{
	ctl_store *s = c->a->o.store;
	json_t *w = get_work(c, CAI_API | CAI_ENV | CAI_SESSION), *b = NULL, *f;
	size_t blen;
	char err[256];
	bool force = false;
	int rc;
	if (!w)
		return;
	json_decref(w);
	hsrv_body(c->r, &blen);
	if (blen) {
		if (!(b = cai_body(c)))
			return;
		f = json_object_get(b, "force");
		if (f && !json_is_boolean(f) && !json_is_null(f)) {
			json_decref(b);
			cai_error(c, 400, NULL, "force: must be true or false");
			return;
		}
		force = json_is_true(f);
		json_decref(b);
	}
	if ((rc = s->ops->work_stop(s, c->caps[0], c->caps[1], force, err, sizeof err)) < 0)
		cai_store_error(c, rc, err);
	else
		reply_work(c);
}

void cai_work_retrieve(cai_ctx *c) { reply_work(c); }

void cai_work_update(cai_ctx *c)
{
	ctl_store *s = c->a->o.store;
	json_t *b, *md, *w = get_work(c, CAI_API), *out = NULL;
	char err[256];
	int rc;
	if (!w)
		return;
	json_decref(w);
	if (!(b = cai_body(c)))
		return;
	md = json_object_get(b, "metadata");
	if (!md)
		cai_error(c, 400, NULL, "metadata: required (an object; a key set to null is removed)");
	else if (cai_metadata_ok(c, md, true, "metadata")) {
		if ((rc = s->ops->work_update_metadata(s, c->caps[0], c->caps[1], md, &out, err, sizeof err)) < 0)
			cai_store_error(c, rc, err);
		else
			cai_reply(c, 200, out);
	}
	json_decref(b);
}

void cai_work_list(cai_ctx *c)
{
	ctl_store *s = c->a->o.store;
	ctl_page p = { 0 };
	char page[64], err[256];
	unsigned limit;
	int rc;
	if (!cai_may_env(c, c->caps[0], CAI_ENV) || cai_page_params(c, 20, 1000, &limit, page, sizeof page) < 0)
		return;
	if ((rc = s->ops->work_list(s, c->caps[0], page, limit, &p, err, sizeof err)) < 0)
		cai_store_error(c, rc, err);
	else
		cai_reply(c, 200, cai_page_json(&p, false));
}

void cai_work_stats(cai_ctx *c)
{
	ctl_store *s = c->a->o.store;
	ctl_stats st;
	char err[256];
	int rc;
	if (!cai_may_env(c, c->caps[0], CAI_API | CAI_ENV))
		return;
	if ((rc = s->ops->work_stats(s, c->caps[0], &st, err, sizeof err)) < 0) {
		cai_store_error(c, rc, err);
		return;
	}
	cai_reply(c, 200, json_pack("{s:s,s:I,s:I,s:o,s:I}", "type", "work_queue_stats", "depth", (json_int_t)st.depth,
				    "pending", (json_int_t)st.pending, "oldest_queued_at",
				    st.oldest_queued_at[0] ? json_string(st.oldest_queued_at) : json_null(),
				    "workers_polling", (json_int_t)st.workers_polling));
}

/* base64url without padding of n bytes. */
static char *b64url(const unsigned char *p, size_t n)
{
	char *o = malloc(4 * ((n + 2) / 3) + 1);
	int k;
	if (!o)
		return NULL;
	k = EVP_EncodeBlock((unsigned char *)o, p, (int)n);
	while (k > 0 && o[k - 1] == '=')
		k--;
	o[k] = 0;
	for (int i = 0; i < k; i++)
		o[i] = o[i] == '+' ? '-' : o[i] == '/' ? '_' : o[i];
	return o;
}

/* The item has no secret yet: each poll that delivers it binds the token it minted (tok_mint). */
int cai_enqueue_session(capi *a, const char *env_id, const char *session_id, char *err, size_t errlen)
{
	ctl_store *s = a->o.store;
	char wid[40], now[40];
	json_t *w;
	int rc;
	if ((rc = ctl_new_id("work", wid, sizeof wid)) < 0) {
		snprintf(err, errlen, "no random bytes for a work item");
		return rc;
	}
	ctl_now(now, sizeof now);
	w = json_pack("{s:s,s:s,s:s,s:{s:s,s:s},s:s,s:n,s:s,s:n,s:n,s:n,s:n,s:n,s:{}}", "id", wid, "type", "work",
		      "environment_id", env_id, "data", "type", "session", "id", session_id, "state", "queued", "secret",
		      "created_at", now, "acknowledged_at", "started_at", "latest_heartbeat_at", "stop_requested_at",
		      "stopped_at", "metadata");
	if (!w) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if ((rc = s->ops->work_enqueue(s, env_id, w, err, errlen)) == 0)
		cai_wake_polls(a, env_id);
	json_decref(w);
	return rc;
}

int cai_live_work(ctl_store *s, const char *env_id, const char *session_id,
		  int (*fn)(ctl_store *s, const char *env_id, const char *work_id, void *ud), void *ud, char *err,
		  size_t errlen)
{
	char cursor[64] = "";
	int n = 0;
	for (int pages = 0; pages < 1000; pages++) {
		ctl_page p = { 0 };
		size_t i;
		json_t *w;
		int rc = s->ops->work_list(s, env_id, cursor, 1000, &p, err, errlen);
		if (rc < 0)
			return rc;
		json_array_foreach(p.data, i, w) {
			const char *sid = json_string_value(json_object_get(json_object_get(w, "data"), "id"));
			const char *st = json_string_value(json_object_get(w, "state"));
			const char *wid = json_string_value(json_object_get(w, "id"));
			if (!sid || !st || !wid || strcmp(sid, session_id) || !strcmp(st, "stopped"))
				continue;
			n++;
			if (fn)
				fn(s, env_id, wid, ud);
		}
		if (!ctl_page_next(&p, cursor, sizeof cursor))
			break;
	}
	return n;
}
