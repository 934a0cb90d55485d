/* Held calls: one timer per hold (timeout, progress ticks, and the deferred callback once decided). */
#include "proxy/approvals.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/admin.h"
#include "core/err.h"
#include "core/list.h"
#include "core/log.h"
#include "core/utf8.h"

#define DEFAULT_MAX_PENDING 1000

enum hstate { H_WAITING, H_DECIDED };

struct hold {
	struct hold *next, **pprev;
	apv *a; /* NULL once apv_free dropped it (its timer is closing) */
	uv_timer_t timer;
	enum hstate st;
	char id[APV_ID_LEN + 1];
	apv_info info;	  /* owned copies */
	char *strs[9];	  /* what info points at, freed together */
	uint64_t t0, deadline; /* loop ms */
	uint32_t timeout_ms, every_ms;
	struct timespec since;
	apv_cb cb;
	apv_progress_cb pcb;
	void *ud;
	bool args_cut; /* args_redacted_json was over APV_MAX_ARGS */
	apv_outcome outcome;
	char by[APV_MAX_BY + 1];
};

struct apv {
	uv_loop_t *loop;
	size_t max_pending, waiting;
	struct hold *holds; /* newest first */
};

static const char *outcome_name(apv_outcome o)
{
	return o == APV_APPROVED ? "approved" : o == APV_DENIED ? "denied" : "timed_out";
}

static void count(const char *outcome)
{
	char lb[64];
	adm_counter_add("postern_approvals_total", adm_label(lb, sizeof lb, "outcome", outcome), 1);
}

static void gauge(const apv *a)
{
	adm_gauge_set("postern_approvals_pending", NULL, (int64_t)a->waiting);
}

/* A copy of s cut to max bytes on a UTF-8 boundary (an invalid byte ends it). */
static char *cut_dup(const char *s, size_t max)
{
	size_t n = 0, len = strlen(s), k;
	char *d;
	while (n < len && n < max && (k = utf8_seq_len((const unsigned char *)s + n, len - n)) && n + k <= max)
		n += k;
	if (!(d = malloc(n + 1)))
		return NULL;
	memcpy(d, s, n);
	d[n] = 0;
	return d;
}

static void hold_closed(uv_handle_t *h)
{
	struct hold *ho = h->data;
	for (size_t i = 0; i < sizeof ho->strs / sizeof ho->strs[0]; i++)
		free(ho->strs[i]);
	free(ho);
}

/* Off the registry, timer closing: nothing of it fires again. */
static void hold_drop(struct hold *h)
{
	if (h->a && h->st == H_WAITING) {
		h->a->waiting--;
		gauge(h->a);
	}
	LIST_UNLINK(h, next, pprev);
	h->a = NULL;
	uv_close((uv_handle_t *)&h->timer, hold_closed);
}

static void hold_fire(uv_timer_t *t);

/* The next wake-up: the deadline, or the next progress tick before it. */
static void arm(struct hold *h)
{
	uint64_t now = uv_now(h->a->loop), at = h->deadline;
	if (h->pcb && h->every_ms) {
		uint64_t ticks = (now - h->t0) / h->every_ms + 1, tick = h->t0 + ticks * h->every_ms;
		if (tick < at)
			at = tick;
	}
	uv_timer_start(&h->timer, hold_fire, at > now ? at - now : 0, 0);
}

static void hold_fire(uv_timer_t *t)
{
	struct hold *h = t->data;
	apv *a = h->a;
	uint64_t now = uv_now(a->loop);
	char q[200];
	apv_cb cb;
	void *ud;
	if (h->st == H_WAITING && now < h->deadline) {
		if (h->pcb)
			h->pcb(h->ud, now - h->t0, h->timeout_ms);
		/* the progress callback may have cancelled the hold */
		if (h->a && h->st == H_WAITING)
			arm(h);
		return;
	}
	if (h->st == H_WAITING) {
		h->outcome = APV_TIMED_OUT;
		snprintf(h->by, sizeof h->by, "timeout");
		a->waiting--;
		gauge(a);
		log_info("msg=\"held call decided\" id=%s outcome=timed_out waited_ms=%llu tool=%s", h->id,
			 (unsigned long long)(now - h->t0), log_quote(h->info.tool ? h->info.tool : "", q, sizeof q));
	}
	count(outcome_name(h->outcome));
	cb = h->cb;
	ud = h->ud;
	h->st = H_DECIDED; /* not counted as waiting by hold_drop */
	{
		char by[APV_MAX_BY + 1];
		apv_outcome o = h->outcome;
		memcpy(by, h->by, sizeof by);
		hold_drop(h);
		cb(ud, o, by);
	}
}

apv *apv_new(uv_loop_t *loop, size_t max_pending)
{
	apv *a = calloc(1, sizeof *a);
	if (!a)
		return NULL;
	a->loop = loop;
	a->max_pending = max_pending ? max_pending : DEFAULT_MAX_PENDING;
	gauge(a);
	return a;
}

void apv_free(apv *a)
{
	if (!a)
		return;
	while (a->holds) {
		if (a->holds->st == H_WAITING)
			count("cancelled");
		hold_drop(a->holds);
	}
	free(a);
}

static int new_id(const apv *a, char id[APV_ID_LEN + 1])
{
	static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
	for (int tries = 0; tries < 8; tries++) {
		unsigned char r[APV_ID_LEN];
		bool dup = false;
		if (RAND_bytes(r, sizeof r) != 1)
			return -EIO;
		for (int i = 0; i < APV_ID_LEN; i++)
			id[i] = b32[r[i] & 31];
		id[APV_ID_LEN] = 0;
		for (const struct hold *h = a->holds; h && !dup; h = h->next)
			dup = !strcmp(h->id, id);
		if (!dup)
			return 0;
	}
	return -EIO; /* 60 random bits colliding eight times: the generator is broken */
}

static struct hold *find(const apv *a, const char *id)
{
	if (!id || strlen(id) != APV_ID_LEN)
		return NULL;
	for (struct hold *h = a->holds; h; h = h->next)
		if (CRYPTO_memcmp(h->id, id, APV_ID_LEN) == 0)
			return h;
	return NULL;
}

int apv_hold(apv *a, const apv_info *info, uint32_t timeout_ms, apv_cb cb, void *ud, char id[APV_ID_LEN + 1])
{
	const char *src[9] = { info->route, info->client, info->client_addr, info->session, info->method,
			       info->tool, info->rule, info->args_redacted_json, info->trace_id };
	const char **dst[9];
	struct hold *h;
	char q1[300], q2[300], q3[300];
	int rc;

	if (!cb || timeout_ms > APV_MAX_TIMEOUT_MS)
		return -EINVAL;
	if (a->waiting >= a->max_pending)
		return -EBUSY;
	if (!(h = calloc(1, sizeof *h)))
		return -ENOMEM;
	dst[0] = &h->info.route, dst[1] = &h->info.client, dst[2] = &h->info.client_addr, dst[3] = &h->info.session;
	dst[4] = &h->info.method, dst[5] = &h->info.tool, dst[6] = &h->info.rule;
	dst[7] = &h->info.args_redacted_json, dst[8] = &h->info.trace_id;
	for (int i = 0; i < 9; i++) {
		if (!src[i])
			continue;
		/* args are cut at a larger cap (and then listed as a preview, not as JSON) */
		if (i == 7)
			h->args_cut = strlen(src[i]) > APV_MAX_ARGS;
		if (!(h->strs[i] = cut_dup(src[i], i == 7 ? APV_MAX_ARGS : APV_MAX_FIELD)))
			goto nomem;
		*dst[i] = h->strs[i];
	}
	if ((rc = new_id(a, h->id)) < 0)
		goto fail;
	if (!timeout_ms)
		timeout_ms = APV_DEFAULT_TIMEOUT_MS;
	uv_timer_init(a->loop, &h->timer);
	h->timer.data = h;
	h->a = a;
	h->cb = cb;
	h->ud = ud;
	h->timeout_ms = timeout_ms;
	h->t0 = uv_now(a->loop);
	h->deadline = h->t0 + timeout_ms;
	clock_gettime(CLOCK_REALTIME, &h->since);
	LIST_PUSH(a->holds, h, next, pprev);
	a->waiting++;
	gauge(a);
	arm(h);
	memcpy(id, h->id, APV_ID_LEN + 1);
	log_info("msg=\"call held for approval\" id=%s route=%s tool=%s client=%s rule=%s timeout_ms=%u", h->id,
		 log_quote(h->info.route ? h->info.route : "", q1, sizeof q1),
		 log_quote(h->info.tool ? h->info.tool : "", q2, sizeof q2),
		 log_quote(h->info.client ? h->info.client : "", q3, sizeof q3), h->info.rule ? h->info.rule : "-",
		 timeout_ms);
	return 0;
nomem:
	rc = -ENOMEM;
fail:
	for (int i = 0; i < 9; i++)
		free(h->strs[i]);
	free(h);
	return rc;
}

int apv_progress(apv *a, const char *id, uint32_t every_ms, apv_progress_cb pcb)
{
	struct hold *h = find(a, id);
	if (!every_ms || !pcb)
		return -EINVAL;
	if (!h || h->st != H_WAITING)
		return -ENOENT;
	h->every_ms = every_ms;
	h->pcb = pcb;
	arm(h);
	return 0;
}

void apv_cancel(apv *a, const char *id)
{
	struct hold *h = find(a, id);
	if (!h)
		return;
	if (h->st == H_WAITING)
		count("cancelled");
	log_info("msg=\"held call cancelled\" id=%s reason=\"the client went away\"", h->id);
	hold_drop(h);
}

int apv_decide(apv *a, const char *id, bool approve, const char *by, char *err, size_t errlen)
{
	struct hold *h = find(a, id);
	char q[300], qb[300];
	if (!h || h->st != H_WAITING)
		return err_set(err, errlen, -ENOENT, "no held call with id %.*s: unknown, already decided or timed out",
			       APV_ID_LEN + 8, id ? id : "");
	h->st = H_DECIDED;
	h->outcome = approve ? APV_APPROVED : APV_DENIED;
	snprintf(h->by, sizeof h->by, "%s", by && *by ? by : "unknown");
	a->waiting--;
	gauge(a);
	log_info("msg=\"held call decided\" id=%s outcome=%s by=%s waited_ms=%llu tool=%s", h->id,
		 outcome_name(h->outcome), log_quote(h->by, qb, sizeof qb),
		 (unsigned long long)(uv_now(a->loop) - h->t0), log_quote(h->info.tool ? h->info.tool : "", q, sizeof q));
	/* Deferred: the holder's callback never runs inside the decider's stack. */
	uv_timer_start(&h->timer, hold_fire, 0, 0);
	return 0;
}

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *hold_json(const struct hold *h, uint64_t now)
{
	char since[64], sec[32];
	struct tm tm;
	json_t *o, *args = NULL;
	gmtime_r(&h->since.tv_sec, &tm);
	strftime(sec, sizeof sec, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(since, sizeof since, "%s.%03dZ", sec, (int)(h->since.tv_nsec / 1000000) % 1000);
	o = json_pack("{s:s,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:s,s:I,s:I,s:I,s:o}", "id", h->id, "route",
		      str_or_null(h->info.route), "client", str_or_null(h->info.client), "client_addr",
		      str_or_null(h->info.client_addr), "session", str_or_null(h->info.session), "method",
		      str_or_null(h->info.method), "tool", str_or_null(h->info.tool), "rule", str_or_null(h->info.rule),
		      "since", since, "waited_ms", (json_int_t)(now - h->t0), "timeout_ms", (json_int_t)h->timeout_ms,
		      "expires_in_ms", (json_int_t)(h->deadline > now ? h->deadline - now : 0), "trace_id",
		      str_or_null(h->info.trace_id));
	if (!o)
		return NULL;
	if (h->info.args_redacted_json && !h->args_cut)
		args = json_loads(h->info.args_redacted_json, JSON_DECODE_ANY, NULL);
	if (args) {
		if (json_object_set_new(o, "args", args) < 0)
			goto fail;
	} else if (h->info.args_redacted_json) {
		/* Not JSON, or over the cap: shown as text, so the person sees that it is cut. */
		if (json_object_set_new(o, "args_preview", json_string(h->info.args_redacted_json)) < 0 ||
		    json_object_set_new(o, "args_truncated", json_boolean(h->args_cut)) < 0 ||
		    json_object_set_new(o, "args", json_null()) < 0)
			goto fail;
	} else if (json_object_set_new(o, "args", json_null()) < 0) {
		goto fail;
	}
	return o;
fail:
	json_decref(o);
	return NULL;
}

int apv_list_json(const apv *a, char **out, size_t *len)
{
	json_t *arr = json_array();
	uint64_t now = uv_now(a->loop);
	int rc = -ENOMEM;
	*out = NULL;
	if (!arr)
		return -ENOMEM;
	for (const struct hold *h = a->holds; h; h = h->next) {
		json_t *o;
		if (h->st != H_WAITING)
			continue;
		/* newest first on the list: inserting at 0 lists the oldest first */
		if (!(o = hold_json(h, now)) || json_array_insert_new(arr, 0, o) < 0)
			goto done;
	}
	if (!(*out = json_dumps(arr, JSON_COMPACT)))
		goto done;
	if (len)
		*len = strlen(*out);
	rc = 0;
done:
	json_decref(arr);
	return rc;
}

size_t apv_pending(const apv *a) { return a ? a->waiting : 0; }
