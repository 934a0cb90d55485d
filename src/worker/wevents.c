/* A session's event handling (see wevents.h). */
#include "worker/wevents.h"

#include <stdlib.h>
#include <string.h>

struct wev {
	json_t *seen, *answered, *verdicts, *held; /* objects used as sets / maps keyed by event id */
	json_t *queue;                             /* array of tool_use events to run, in order */
	json_t *hist;                              /* history: tool_use events not yet decided */
	int64_t max_idle_ms;
	uint64_t idle_at;                          /* 0 = countdown not armed */
	bool idle_pending;                         /* an end_turn idle waits for the held calls */
};

static const char *const owned[] = { "bash", "read", "write", "edit", "glob", "grep", NULL };

bool wev_owns_tool(const char *name)
{
	for (size_t i = 0; name && owned[i]; i++)
		if (!strcmp(owned[i], name))
			return true;
	return false;
}

wev *wev_new(int64_t max_idle_ms)
{
	wev *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	s->seen = json_object();
	s->answered = json_object();
	s->verdicts = json_object();
	s->held = json_object();
	s->queue = json_array();
	s->hist = json_array();
	s->max_idle_ms = max_idle_ms;
	if (!s->seen || !s->answered || !s->verdicts || !s->held || !s->queue || !s->hist) {
		wev_free(s);
		return NULL;
	}
	return s;
}

void wev_free(wev *s)
{
	if (!s)
		return;
	json_decref(s->seen);
	json_decref(s->answered);
	json_decref(s->verdicts);
	json_decref(s->held);
	json_decref(s->queue);
	json_decref(s->hist);
	free(s);
}

/* Adds id to set; past the cap the set is emptied first (jansson objects keep no order to drop by age,
 * and a replay of something that old is rare and harmless: results are idempotent server-side). */
static void set_add(json_t *set, const char *id, json_t *v)
{
	if (json_object_size(set) >= WEV_MAX_IDS)
		json_object_clear(set);
	json_object_set_new(set, id, v ? v : json_true());
}

static bool has(json_t *set, const char *id)
{
	return id && json_object_get(set, id) != NULL;
}

static const char *str(json_t *ev, const char *key)
{
	return json_string_value(json_object_get(ev, key));
}

static void drop_queued(wev *s, const char *id)
{
	size_t i;
	json_t *v;
	json_array_foreach(s->queue, i, v) {
		if (!strcmp(str(v, "id"), id)) {
			json_array_remove(s->queue, i);
			return;
		}
	}
}

static void enqueue(wev *s, json_t *ev)
{
	if (json_array_size(s->queue) < WEV_MAX_QUEUE)
		json_array_append(s->queue, ev);
}

static void arm_if_clear(wev *s, uint64_t now_ms)
{
	if (json_object_size(s->held) || json_array_size(s->queue)) {
		s->idle_pending = true;
		s->idle_at = 0;
		return;
	}
	s->idle_pending = false;
	s->idle_at = s->max_idle_ms > 0 ? now_ms + (uint64_t)s->max_idle_ms : 0;
}

/* A tool call whose verdict (if any) is known: queue, hold, or never run. */
static enum wev_res route(wev *s, json_t *ev, const char **why)
{
	const char *id = str(ev, "id"), *perm = str(ev, "evaluated_permission"), *verdict;
	json_t *pv = json_object_get(ev, "evaluated_permission");

	if (strcmp(str(ev, "type"), "agent.tool_use") || !wev_owns_tool(str(ev, "name"))) {
		*why = "a tool the worker does not own: left pending for its owner";
		return WEV_NOT_OURS;
	}
	/* absent or null is "no policy" (allow); any other non-string (["deny"], {}, 0) is unknown, not absent */
	if (pv && !json_is_null(pv) && !perm)
		perm = "";
	if (perm && !strcmp(perm, "deny")) {
		*why = "denied by the server's permission policy: not run";
		return WEV_NOT_RUN;
	}
	if (!perm || !strcmp(perm, "allow")) {
		enqueue(s, ev);
		return WEV_OK;
	}
	if (strcmp(perm, "ask")) {
		*why = "unknown evaluated_permission: not run (fails closed)";
		return WEV_NOT_RUN;
	}
	verdict = str(s->verdicts, id);
	if (!verdict) {
		set_add(s->held, id, json_incref(ev));
		*why = "awaiting user.tool_confirmation";
		return WEV_HELD;
	}
	if (!strcmp(verdict, "allow")) {
		enqueue(s, ev);
		return WEV_OK;
	}
	*why = "denied by user.tool_confirmation: not run";
	return WEV_NOT_RUN;
}

static enum wev_res confirm(wev *s, json_t *ev, const char **why)
{
	const char *id = str(ev, "tool_use_id"), *res = str(ev, "result");
	json_t *held;
	if (!id || !res) {
		*why = "user.tool_confirmation without tool_use_id or result";
		return WEV_MALFORMED;
	}
	if (has(s->answered, id))
		return WEV_OK;
	set_add(s->verdicts, id, json_string(res));
	held = json_object_get(s->held, id);
	if (!held)
		return WEV_OK;
	json_incref(held);
	json_object_del(s->held, id);
	if (!strcmp(res, "allow"))
		enqueue(s, held);
	else
		*why = "denied by user.tool_confirmation: not run";
	json_decref(held);
	if (s->idle_pending && !json_object_size(s->held))
		s->idle_pending = false; /* re-armed by the caller's next idle check */
	return strcmp(res, "allow") ? WEV_NOT_RUN : WEV_OK;
}

static bool is_call(const char *type)
{
	return !strcmp(type, "agent.tool_use") || !strcmp(type, "agent.custom_tool_use");
}

static bool is_known(const char *t)
{
	static const char *const prefixes[] = { "agent.", "user.", "session.", "span.", "system.", "event_", NULL };
	for (size_t i = 0; prefixes[i]; i++)
		if (!strncmp(t, prefixes[i], strlen(prefixes[i])))
			return true;
	return false;
}

/* Checks the shape and answers the result/answered kinds common to both paths; 1 = handled. */
static int common(wev *s, json_t *ev, const char **type, enum wev_res *res, const char **why)
{
	const char *t = json_is_object(ev) ? str(ev, "type") : NULL;
	*type = t;
	*res = WEV_OK;
	if (!t) {
		*why = "not an event object with a type";
		*res = WEV_MALFORMED;
		return 1;
	}
	if (is_call(t) && (!str(ev, "id") || !str(ev, "name") || strlen(str(ev, "id")) > 256)) {
		*why = "a tool call without a string id and name";
		*res = WEV_MALFORMED;
		return 1;
	}
	if (!strcmp(t, "user.tool_result") || !strcmp(t, "user.custom_tool_result")) {
		const char *id = str(ev, t[5] == 't' ? "tool_use_id" : "custom_tool_use_id");
		if (id) {
			set_add(s->answered, id, NULL);
			drop_queued(s, id);
			json_object_del(s->held, id);
		}
		return 1;
	}
	if (!is_known(t)) {
		*why = "unknown event type";
		*res = WEV_UNKNOWN;
		return 1;
	}
	return 0;
}

enum wev_res wev_event(wev *s, json_t *ev, uint64_t now_ms, const char **why)
{
	const char *t;
	enum wev_res res;

	*why = "";
	if (common(s, ev, &t, &res, why))
		goto idle;
	if (is_call(t)) {
		const char *id = str(ev, "id");
		if (has(s->seen, id) || has(s->answered, id))
			goto idle;
		set_add(s->seen, id, NULL);
		res = route(s, ev, why);
	} else if (!strcmp(t, "user.tool_confirmation")) {
		return confirm(s, ev, why); /* neutral for the idle countdown */
	} else if (!strcmp(t, "session.status_terminated") || !strcmp(t, "session.deleted")) {
		*why = t;
		return WEV_END;
	} else if (!strcmp(t, "session.status_idle")) {
		const char *stop = str(json_object_get(ev, "stop_reason"), "type");
		if (!stop || strcmp(stop, "requires_action"))
			arm_if_clear(s, now_ms);
		return WEV_OK;
	} else if (!strcmp(t, "session.thread_status_terminated")) {
		return WEV_OK;
	}
idle:
	if (res != WEV_MALFORMED && res != WEV_UNKNOWN) {
		s->idle_at = 0;
		s->idle_pending = false;
	}
	return res;
}

void wev_history_begin(wev *s)
{
	json_array_clear(s->hist);
}

enum wev_res wev_history_event(wev *s, json_t *ev, const char **why)
{
	const char *t;
	enum wev_res res;

	*why = "";
	if (common(s, ev, &t, &res, why))
		return res;
	if (is_call(t)) {
		set_add(s->seen, str(ev, "id"), NULL);
		json_array_append(s->hist, ev);
	} else if (!strcmp(t, "user.tool_confirmation")) {
		const char *id = str(ev, "tool_use_id"), *r = str(ev, "result");
		if (id && r && !has(s->answered, id))
			set_add(s->verdicts, id, json_string(r));
	}
	/* the last event decides the idle countdown */
	if (!strcmp(t, "session.status_idle")) {
		const char *stop = str(json_object_get(ev, "stop_reason"), "type");
		s->idle_pending = !stop || strcmp(stop, "requires_action");
	} else if (strcmp(t, "user.tool_confirmation") && strcmp(t, "session.thread_status_terminated")) {
		s->idle_pending = false;
	}
	if (!strcmp(t, "session.status_terminated") || !strcmp(t, "session.deleted")) {
		*why = t;
		return WEV_END;
	}
	return WEV_OK;
}

void wev_history_end(wev *s, uint64_t now_ms)
{
	size_t i;
	json_t *ev;
	const char *why;
	bool ended_turn = s->idle_pending;

	json_array_foreach(s->hist, i, ev) {
		const char *id = str(ev, "id");
		bool queued = false;
		size_t k;
		json_t *q;
		if (has(s->answered, id) || has(s->held, id))
			continue;
		json_array_foreach(s->queue, k, q)
			queued = queued || !strcmp(str(q, "id"), id);
		if (!queued)
			route(s, ev, &why);
	}
	json_array_clear(s->hist);
	if (ended_turn)
		arm_if_clear(s, now_ms);
	else {
		s->idle_at = 0;
		s->idle_pending = false;
	}
}

json_t *wev_take(wev *s)
{
	json_t *ev = json_array_get(s->queue, 0);
	if (!ev)
		return NULL;
	json_incref(ev);
	json_array_remove(s->queue, 0);
	/* Taken is as good as answered: its result is posted until the lease ends, never run twice. */
	set_add(s->answered, str(ev, "id"), NULL);
	return ev;
}

void wev_answered(wev *s, const char *id)
{
	if (id)
		set_add(s->answered, id, NULL);
}

size_t wev_outstanding(const wev *s)
{
	return json_array_size(s->queue) + json_object_size(s->held);
}

bool wev_idle_due(const wev *s, bool busy, uint64_t now_ms)
{
	return !busy && s->idle_at && now_ms >= s->idle_at;
}

uint64_t wev_idle_deadline(const wev *s)
{
	return s->idle_at;
}
