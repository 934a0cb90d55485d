/* A sandbox serve child of the worker (see wchild.h). */
#include "worker/wchild.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cbuf.h"
#include "core/err.h"
#include "core/log.h"

enum st { ST_STARTING, ST_READY, ST_DRAINING, ST_GONE };

struct wch {
	uv_loop_t *loop;
	uv_process_t proc;
	uv_pipe_t in, out;
	uv_timer_t timer;      /* call timeout, cancel grace, kill grace */
	int open_handles;
	enum st st;
	bool freed, exited, overflow, killed;
	wch_cbs cbs;
	void *ud;
	cbuf line;
	int64_t next_id, call_id, drain_id;
	wch_result_fn cb;
	void *cb_ud;
	char why[128];
};

char **wch_child_env(char **env)
{
	size_t n = 0, k = 0;
	char **out;
	while (env && env[n])
		n++;
	out = calloc(n + 1, sizeof *out);
	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (strncmp(env[i], "ANTHROPIC_", 10))
			out[k++] = env[i];
	return out;
}

static void closed(uv_handle_t *h)
{
	wch *c = h->data;
	if (--c->open_handles == 0) {
		cbuf_free(&c->line);
		free(c);
	}
}

static void close_all(wch *c)
{
	uv_handle_t *hs[] = { (uv_handle_t *)&c->in, (uv_handle_t *)&c->out, (uv_handle_t *)&c->timer,
			      (uv_handle_t *)&c->proc };
	for (size_t i = 0; i < 4; i++)
		if (!uv_is_closing(hs[i]))
			uv_close(hs[i], closed);
}

/* The running call ends (its callback fires once). */
static void finish_call(wch *c, json_t *content, bool is_error, const char *why)
{
	wch_result_fn cb = c->cb;
	void *ud = c->cb_ud;
	c->cb = NULL;
	c->call_id = 0;
	uv_timer_stop(&c->timer);
	if (cb)
		cb(ud, content, is_error, why);
}

static void gone(wch *c, const char *why)
{
	if (c->st == ST_GONE)
		return;
	c->st = ST_GONE;
	snprintf(c->why, sizeof c->why, "%s", why);
	if (c->cb)
		finish_call(c, NULL, true, why);
	if (!c->freed && c->cbs.on_exit)
		c->cbs.on_exit(c->ud, c, c->why);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
	wch *c = p->data;
	char why[96];
	c->exited = true;
	if (sig)
		snprintf(why, sizeof why, "sandbox child killed by signal %d", sig);
	else
		snprintf(why, sizeof why, "sandbox child exited with status %lld", (long long)status);
	if (c->freed) {
		close_all(c);
		return;
	}
	gone(c, why);
	if (c->freed)
		close_all(c);
}

static void on_timer(uv_timer_t *t)
{
	wch *c = t->data;
	char why[96];
	if (c->freed || c->st == ST_DRAINING) {
		/* No answer to the cancel in time, or no exit after SIGTERM: kill. */
		if (!c->exited)
			uv_process_kill(&c->proc, SIGKILL);
		c->killed = true;
		if (!c->freed)
			gone(c, "sandbox child did not answer a cancelled call: killed");
		return;
	}
	if (c->cb) {
		snprintf(why, sizeof why, "tool call timed out");
		wch_cancel(c, why);
	}
}

static void send_line(wch *c, json_t *msg);

static void on_line(wch *c, const char *p, size_t n)
{
	json_t *j = json_loadb(p, n, 0, NULL), *id, *res;
	int64_t rid;
	if (!j) {
		log_warn("msg=\"sandbox child wrote a line that is not JSON: skipped\" pid=%d len=%zu", c->proc.pid, n);
		return;
	}
	id = json_object_get(j, "id");
	rid = json_is_integer(id) ? json_integer_value(id) : -1;
	if (rid == 1 && c->st == ST_STARTING) {
		json_t *note = json_pack("{s:s,s:s}", "jsonrpc", "2.0", "method", "notifications/initialized");
		send_line(c, note);
		json_decref(note);
		c->st = ST_READY;
		if (c->cbs.on_ready)
			c->cbs.on_ready(c->ud, c);
	} else if (c->st == ST_DRAINING && rid == c->drain_id) {
		c->st = ST_READY; /* the cancelled call's answer: dropped, the child is free again */
		c->drain_id = 0;
		uv_timer_stop(&c->timer);
	} else if (c->cb && rid == c->call_id) {
		res = json_object_get(j, "result");
		if (json_is_object(res) && json_is_array(json_object_get(res, "content"))) {
			finish_call(c, json_object_get(res, "content"), json_is_true(json_object_get(res, "isError")), "");
		} else {
			char msg[300];
			const char *em = json_string_value(json_object_get(json_object_get(j, "error"), "message"));
			snprintf(msg, sizeof msg, "the sandbox refused the call: %.200s", em ? em : "no result");
			finish_call(c, NULL, true, msg);
		}
	}
	json_decref(j);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	static char rbuf[64 * 1024];
	(void)h;
	(void)hint;
	buf->base = rbuf;
	buf->len = sizeof rbuf;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	wch *c = s->data;
	size_t start = 0;
	if (nread < 0) {
		uv_read_stop(s);
		gone(c, "sandbox child closed its output");
		return;
	}
	for (size_t i = 0; i < (size_t)nread && !c->freed; i++) {
		if (buf->base[i] != '\n')
			continue;
		if (!c->overflow && cbuf_append(&c->line, buf->base + start, i - start) < 0)
			c->overflow = true;
		if (c->overflow) {
			log_warn("msg=\"sandbox child answer over the cap: dropped\" pid=%d cap=%zu", c->proc.pid, c->line.max);
			if (c->cb)
				finish_call(c, NULL, true, "the tool result was larger than the worker's cap and was dropped");
			if (c->st == ST_DRAINING) {
				c->st = ST_READY;
				uv_timer_stop(&c->timer);
			}
		} else {
			on_line(c, cbuf_str(&c->line), c->line.len);
		}
		cbuf_consume(&c->line, SIZE_MAX);
		c->overflow = false;
		start = i + 1;
	}
	if (start < (size_t)nread && !c->overflow && cbuf_append(&c->line, buf->base + start, (size_t)nread - start) < 0) {
		c->overflow = true;
		cbuf_consume(&c->line, SIZE_MAX);
	}
}

static void write_done(uv_write_t *w, int status)
{
	(void)status;
	free(w);
}

static void send_line(wch *c, json_t *msg)
{
	char *txt = json_dumps(msg, JSON_COMPACT);
	size_t n = txt ? strlen(txt) : 0;
	uv_write_t *w = txt ? malloc(sizeof *w + n + 1) : NULL;
	uv_buf_t b;
	if (w && !uv_is_closing((uv_handle_t *)&c->in)) {
		memcpy(w + 1, txt, n);
		((char *)(w + 1))[n] = '\n';
		b = uv_buf_init((char *)(w + 1), (unsigned)(n + 1));
		if (uv_write(w, (uv_stream_t *)&c->in, &b, 1, write_done) < 0)
			free(w);
	} else {
		free(w);
	}
	free(txt);
}

int wch_spawn(uv_loop_t *loop, const wch_opts *o, const wch_cbs *cbs, void *ud, wch **out, char *err,
	      size_t errlen)
{
	extern char **environ;
	wch *c = calloc(1, sizeof *c);
	uv_process_options_t po;
	uv_stdio_container_t stdio[3];
	char **env = NULL;
	json_t *init;
	int r;

	*out = NULL;
	if (!c || !(env = wch_child_env(environ))) {
		free(c);
		return err_set(err, errlen, -ENOMEM, "out of memory");
	}
	c->loop = loop;
	c->cbs = *cbs;
	c->ud = ud;
	c->next_id = 2;
	cbuf_init(&c->line, 4096, o->max_line ? o->max_line : WCH_DEFAULT_MAX_LINE);
	uv_pipe_init(loop, &c->in, 0);
	uv_pipe_init(loop, &c->out, 0);
	uv_timer_init(loop, &c->timer);
	c->in.data = c->out.data = c->timer.data = c->proc.data = c;
	c->open_handles = 4;
	stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
	stdio[0].data.stream = (uv_stream_t *)&c->in;
	stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[1].data.stream = (uv_stream_t *)&c->out;
	stdio[2].flags = UV_INHERIT_FD;
	stdio[2].data.fd = 2;
	memset(&po, 0, sizeof po);
	po.file = o->argv[0];
	po.args = (char **)o->argv;
	po.env = env;
	po.exit_cb = on_exit_cb;
	po.stdio = stdio;
	po.stdio_count = 3;
	r = uv_spawn(loop, &c->proc, &po);
	free(env);
	if (r < 0) {
		c->exited = true;
		c->freed = true;
		close_all(c);
		return err_set(err, errlen, r, "cannot start %s: %s", o->argv[0], uv_strerror(r));
	}
	uv_read_start((uv_stream_t *)&c->out, on_alloc, on_read);
	init = json_pack("{s:s,s:i,s:s,s:{s:s,s:{},s:{s:s,s:s}}}", "jsonrpc", "2.0", "id", 1, "method", "initialize",
			 "params", "protocolVersion", "2025-06-18", "capabilities", "clientInfo", "name",
			 "postern-worker", "version", POSTERN_VERSION);
	send_line(c, init);
	json_decref(init);
	*out = c;
	return 0;
}

void wch_set_owner(wch *c, const wch_cbs *cbs, void *ud)
{
	c->cbs = *cbs;
	c->ud = ud;
}

bool wch_is_ready(const wch *c)
{
	return c->st == ST_READY;
}

bool wch_is_busy(const wch *c)
{
	return c->cb != NULL || c->st == ST_DRAINING;
}

int wch_pid(const wch *c)
{
	return c->proc.pid;
}

int wch_call(wch *c, const char *tool, json_t *args, int64_t timeout_ms, wch_result_fn cb, void *ud)
{
	json_t *msg;
	if (c->st == ST_GONE || c->freed)
		return -EPIPE;
	if (c->st != ST_READY || c->cb)
		return -EBUSY;
	c->call_id = c->next_id++;
	msg = json_pack("{s:s,s:I,s:s,s:{s:s,s:O}}", "jsonrpc", "2.0", "id", (json_int_t)c->call_id, "method",
			"tools/call", "params", "name", tool, "arguments", json_is_object(args) ? args : json_object());
	if (!msg)
		return -ENOMEM;
	c->cb = cb;
	c->cb_ud = ud;
	send_line(c, msg);
	json_decref(msg);
	uv_timer_start(&c->timer, on_timer, (uint64_t)(timeout_ms > 0 ? timeout_ms : 120000), 0);
	return 0;
}

void wch_cancel(wch *c, const char *why)
{
	json_t *note;
	int64_t id = c->call_id;
	if (!c->cb)
		return;
	note = json_pack("{s:s,s:s,s:{s:I,s:s}}", "jsonrpc", "2.0", "method", "notifications/cancelled", "params",
			 "requestId", (json_int_t)id, "reason", why);
	if (note)
		send_line(c, note);
	json_decref(note);
	finish_call(c, NULL, true, why);
	c->st = ST_DRAINING;
	c->drain_id = id;
	uv_timer_start(&c->timer, on_timer, WCH_CANCEL_GRACE_MS, 0);
}

void wch_free(wch *c)
{
	if (!c || c->freed)
		return;
	c->freed = true;
	c->cb = NULL;
	if (!uv_is_closing((uv_handle_t *)&c->in))
		uv_close((uv_handle_t *)&c->in, closed);
	if (c->exited) {
		close_all(c);
		return;
	}
	uv_process_kill(&c->proc, SIGTERM);
	uv_timer_start(&c->timer, on_timer, WCH_KILL_GRACE_MS, 0);
}
