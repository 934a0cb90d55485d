#include "proxy/mcpbridge.h"

#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/log.h"

#define MBR_MAX_PENDING 32
#define MBR_KILL_GRACE_MS 5000

typedef struct sess sess;

struct mbr_req {
	mbr *b;
	sess *s;
	char idkey[160];
	mbr_done_cb cb;
	void *ud;
	uint64_t deadline;
	bool init;
	mbr_req *next;
};

struct sess {
	mbr *b;
	char id[33];
	uv_process_t proc;
	uv_pipe_t in, out;
	uv_timer_t tick;
	int open_handles;
	bool exited, ending, initialized;
	int64_t exit_status;
	uint64_t last_active, kill_at;
	char *line;
	size_t line_len;
	bool line_overflow;
	mbr_req *pending;
	unsigned npending;
	char *workspace;
	sess *next;
};

struct mbr {
	uv_loop_t *loop;
	char *name;
	char **argv;
	size_t argc;
	char *workspace_root;
	unsigned max_sessions, nsessions;
	uint32_t idle_ms, req_ms;
	size_t max_msg;
	sess *sessions;
	bool freeing;
};

/* ---- classification ------------------------------------------------------------------------------------ */

static mbr_kind classify_json(json_t *m, char *idkey, size_t idlen, char *method, size_t mlen, char *why,
			      size_t whylen)
{
	json_t *id, *meth, *ver;
	if (!json_is_object(m)) {
		snprintf(why, whylen, json_is_array(m) ? "JSON-RPC batches are not supported" : "message is not a JSON object");
		return MBR_INVALID;
	}
	ver = json_object_get(m, "jsonrpc");
	if (!json_is_string(ver) || strcmp(json_string_value(ver), "2.0") != 0) {
		snprintf(why, whylen, "jsonrpc must be \"2.0\"");
		return MBR_INVALID;
	}
	id = json_object_get(m, "id");
	meth = json_object_get(m, "method");
	if (id) {
		if (json_is_integer(id))
			snprintf(idkey, idlen, "n:%lld", (long long)json_integer_value(id));
		else if (json_is_string(id) && json_string_length(id) < idlen - 3)
			snprintf(idkey, idlen, "s:%s", json_string_value(id));
		else {
			snprintf(why, whylen, "id must be a string (under %zu bytes) or an integer", idlen - 3);
			return MBR_INVALID;
		}
	}
	if (meth) {
		if (!json_is_string(meth) || json_string_length(meth) == 0 || json_string_length(meth) >= mlen) {
			snprintf(why, whylen, "method must be a non-empty string");
			return MBR_INVALID;
		}
		snprintf(method, mlen, "%s", json_string_value(meth));
		return id ? MBR_REQUEST : MBR_NOTIFICATION;
	}
	if (id && (json_object_get(m, "result") || json_object_get(m, "error")))
		return MBR_RESPONSE;
	snprintf(why, whylen, "neither a request, a notification nor a response");
	return MBR_INVALID;
}

static json_t *parse(const char *s, size_t n, char *why, size_t whylen)
{
	json_error_t e;
	json_t *j = json_loadb(s, n, JSON_REJECT_DUPLICATES, &e);
	if (!j)
		snprintf(why, whylen, "invalid JSON at byte %d: %s", e.position, e.text);
	return j;
}

mbr_kind mbr_classify(const char *json, size_t n, char *idkey, size_t idlen, char *method, size_t mlen,
		      char *why, size_t whylen)
{
	json_t *j = parse(json, n, why, whylen);
	mbr_kind k;
	if (!j)
		return MBR_INVALID;
	k = classify_json(j, idkey, idlen, method, mlen, why, whylen);
	json_decref(j);
	return k;
}

/* ---- responses ----------------------------------------------------------------------------------------- */

static void reply(mbr_done_cb cb, void *ud, int status, const char *sid, const char *ctype, const char *body)
{
	mbr_response r = { .status = status, .session_id = sid, .content_type = ctype, .body = body,
			   .body_len = body ? strlen(body) : 0 };
	cb(ud, &r);
}

/* A JSON-RPC error as the HTTP body (the MCP SDKs read these). */
static void reply_rpc_error(mbr_done_cb cb, void *ud, int status, int code, const char *msg)
{
	json_t *e = json_pack("{s:s, s:n, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", "error", "code", code, "message", msg);
	char *s = e ? json_dumps(e, JSON_COMPACT) : NULL;
	reply(cb, ud, status, NULL, "application/json", s ? s : "{}");
	free(s);
	json_decref(e);
}

static uint64_t now_ms(mbr *b) { return uv_now(b->loop); }

static void req_unlink(mbr_req *r)
{
	mbr_req **pp;
	if (!r->s)
		return;
	for (pp = &r->s->pending; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			r->s->npending--;
			break;
		}
	r->s = NULL;
}

static void req_finish(mbr_req *r, int status, const char *sid, const char *ctype, const char *body)
{
	mbr_done_cb cb = r->cb;
	void *ud = r->ud;
	req_unlink(r);
	free(r);
	reply(cb, ud, status, sid, ctype, body);
}

void mbr_req_cancel(mbr_req *r)
{
	if (!r)
		return;
	req_unlink(r);
	free(r);
}

/* ---- sessions ------------------------------------------------------------------------------------------ */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void sess_handle_closed(uv_handle_t *h)
{
	sess *s = h->data;
	mbr *b = s->b;
	sess **pp;
	if (--s->open_handles > 0)
		return;
	for (pp = &b->sessions; *pp; pp = &(*pp)->next)
		if (*pp == s) {
			*pp = s->next;
			b->nsessions--;
			break;
		}
	if (s->workspace) {
		nftw(s->workspace, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		free(s->workspace);
	}
	free(s->line);
	free(s);
	if (b->freeing && !b->sessions) {
		free(b->name);
		free(b);
	}
}

static void sess_fail_pending(sess *s, const char *why)
{
	char msg[200];
	snprintf(msg, sizeof msg, "MCP server session ended: %s", why);
	while (s->pending) {
		mbr_req *r = s->pending;
		mbr_done_cb cb = r->cb;
		void *ud = r->ud;
		req_unlink(r);
		free(r);
		reply_rpc_error(cb, ud, 502, -32603, msg);
	}
}

/* Starts the end of a session: pending requests fail, the child gets SIGTERM, then SIGKILL. */
static void sess_end(sess *s, const char *why)
{
	if (s->ending)
		return;
	s->ending = true;
	log_info("msg=\"mcp session ended\" route=%s session=%.8s reason=\"%s\"", s->b->name, s->id, why);
	sess_fail_pending(s, why);
	if (!uv_is_closing((uv_handle_t *)&s->in))
		uv_close((uv_handle_t *)&s->in, sess_handle_closed);
	if (!s->exited) {
		uv_process_kill(&s->proc, SIGTERM);
		s->kill_at = now_ms(s->b) + MBR_KILL_GRACE_MS;
	}
}

static void sess_close_all(sess *s)
{
	if (!uv_is_closing((uv_handle_t *)&s->in))
		uv_close((uv_handle_t *)&s->in, sess_handle_closed);
	if (!uv_is_closing((uv_handle_t *)&s->out))
		uv_close((uv_handle_t *)&s->out, sess_handle_closed);
	if (!uv_is_closing((uv_handle_t *)&s->tick))
		uv_close((uv_handle_t *)&s->tick, sess_handle_closed);
	if (!uv_is_closing((uv_handle_t *)&s->proc))
		uv_close((uv_handle_t *)&s->proc, sess_handle_closed);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
	sess *s = p->data;
	char why[64];
	s->exited = true;
	s->exit_status = status;
	if (sig)
		snprintf(why, sizeof why, "server process killed by signal %d", sig);
	else
		snprintf(why, sizeof why, "server process exited with status %lld", (long long)status);
	sess_end(s, why);
	/* Keep reading: the child may have written its last response just before exiting. */
	if (uv_is_closing((uv_handle_t *)&s->out) || s->b->freeing)
		sess_close_all(s);
}

static void deliver_line(sess *s, char *line, size_t n)
{
	char idkey[160] = "", method[128], why[160];
	mbr_kind k;
	mbr_req *r;

	if (n == 0)
		return;
	k = mbr_classify(line, n, idkey, sizeof idkey, method, sizeof method, why, sizeof why);
	if (k != MBR_RESPONSE) {
		/* Server-initiated messages need the GET stream, which this bridge does not offer. */
		log_debug("msg=\"dropped server message\" route=%s kind=%d", s->b->name, (int)k);
		return;
	}
	for (r = s->pending; r; r = r->next)
		if (!strcmp(r->idkey, idkey))
			break;
	if (!r) {
		log_debug("msg=\"response for no pending request\" route=%s", s->b->name);
		return;
	}
	line[n] = 0;
	if (r->init)
		s->initialized = true;
	s->last_active = now_ms(s->b);
	req_finish(r, 200, r->init ? s->id : NULL, "application/json", line);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	static char rbuf[64 * 1024];
	(void)h;
	(void)hint;
	buf->base = rbuf;
	buf->len = sizeof rbuf;
}

static void on_out(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	sess *s = st->data;
	size_t i, start = 0;
	if (nread < 0) {
		uv_close((uv_handle_t *)&s->out, sess_handle_closed);
		sess_end(s, "server closed its output");
		if (s->exited)
			sess_close_all(s);
		return;
	}
	for (i = 0; i < (size_t)nread; i++) {
		if (buf->base[i] != '\n')
			continue;
		size_t part = i - start;
		if (!s->line_overflow && s->line_len + part <= s->b->max_msg) {
			memcpy(s->line + s->line_len, buf->base + start, part);
			s->line_len += part;
			deliver_line(s, s->line, s->line_len);
		} else {
			log_warn("msg=\"dropped oversized message from MCP server\" route=%s cap=%zu", s->b->name, s->b->max_msg);
		}
		s->line_len = 0;
		s->line_overflow = false;
		start = i + 1;
	}
	if (start < (size_t)nread) {
		size_t part = (size_t)nread - start;
		if (s->line_len + part > s->b->max_msg)
			s->line_overflow = true;
		else {
			memcpy(s->line + s->line_len, buf->base + start, part);
			s->line_len += part;
		}
	}
}

static void on_tick(uv_timer_t *t)
{
	sess *s = t->data;
	uint64_t now = now_ms(s->b);
	mbr_req *r, *next;
	if (s->ending) {
		if (!s->exited && s->kill_at && now >= s->kill_at) {
			uv_process_kill(&s->proc, SIGKILL);
			s->kill_at = 0;
		}
		return;
	}
	for (r = s->pending; r; r = next) {
		next = r->next;
		if (now >= r->deadline) {
			mbr_done_cb cb = r->cb;
			void *ud = r->ud;
			req_unlink(r);
			free(r);
			reply_rpc_error(cb, ud, 504, -32603, "MCP server did not answer in time");
		}
	}
	if (!s->pending && now - s->last_active >= s->b->idle_ms)
		sess_end(s, "idle timeout");
}

static void write_done(uv_write_t *w, int status)
{
	(void)status;
	free(w);
}

static int sess_write(sess *s, json_t *msg)
{
	char *txt = json_dumps(msg, JSON_COMPACT);
	size_t n;
	uv_write_t *w;
	uv_buf_t buf;
	int r;
	if (!txt)
		return -ENOMEM;
	n = strlen(txt);
	w = malloc(sizeof *w + n + 1);
	if (!w) {
		free(txt);
		return -ENOMEM;
	}
	memcpy((char *)(w + 1), txt, n);
	((char *)(w + 1))[n] = '\n';
	free(txt);
	buf = uv_buf_init((char *)(w + 1), (unsigned)(n + 1));
	r = uv_write(w, (uv_stream_t *)&s->in, &buf, 1, write_done);
	if (r < 0)
		free(w);
	return r;
}

static int make_id(char out[33])
{
	unsigned char raw[16];
	if (RAND_bytes(raw, sizeof raw) != 1)
		return -EIO;
	for (int i = 0; i < 16; i++)
		snprintf(out + 2 * i, 3, "%02x", raw[i]);
	return 0;
}

/* Ending sessions do not count: their child is on its way out (SIGKILL at most 5 s later). */
static unsigned live_sessions(const mbr *b)
{
	unsigned n = 0;
	for (const sess *s = b->sessions; s; s = s->next)
		n += !s->ending;
	return n;
}

static sess *sess_find(mbr *b, const char *id)
{
	for (sess *s = b->sessions; s; s = s->next)
		if (!s->ending && !strcmp(s->id, id))
			return s;
	return NULL;
}

static int sess_spawn(mbr *b, sess **out, char *why, size_t whylen)
{
	sess *s = calloc(1, sizeof *s);
	uv_process_options_t po;
	uv_stdio_container_t stdio[3];
	char **args = NULL;
	size_t na = 0;
	int r = -ENOMEM;

	if (!s || !(s->line = malloc(b->max_msg + 1)))
		goto fail;
	s->b = b;
	if ((r = make_id(s->id)) < 0)
		goto fail;
	args = calloc(b->argc + 3, sizeof *args);
	if (!args)
		goto fail;
	for (size_t i = 0; i < b->argc; i++)
		args[na++] = b->argv[i];
	if (b->workspace_root) {
		if (asprintf(&s->workspace, "%s/%s", b->workspace_root, s->id) < 0) {
			s->workspace = NULL;
			goto fail;
		}
		if (mkdir(s->workspace, 0700) < 0) {
			r = -errno;
			snprintf(why, whylen, "cannot create session workspace %s: %s", s->workspace, strerror(errno));
			free(s->workspace);
			s->workspace = NULL;
			goto fail;
		}
		/* The session's own, removed at its end: the engine may keep it on a capped disk of its own. */
		args[na++] = "--scratch-workspace";
		args[na++] = s->workspace;
	}
	uv_pipe_init(b->loop, &s->in, 0);
	uv_pipe_init(b->loop, &s->out, 0);
	uv_timer_init(b->loop, &s->tick);
	s->in.data = s->out.data = s->tick.data = s->proc.data = s;
	stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
	stdio[0].data.stream = (uv_stream_t *)&s->in;
	stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
	stdio[1].data.stream = (uv_stream_t *)&s->out;
	stdio[2].flags = UV_INHERIT_FD;
	stdio[2].data.fd = 2;
	memset(&po, 0, sizeof po);
	po.file = args[0];
	po.args = args;
	po.exit_cb = on_exit_cb;
	po.stdio = stdio;
	po.stdio_count = 3;
	r = uv_spawn(b->loop, &s->proc, &po);
	free(args);
	args = NULL;
	s->open_handles = 4;
	if (r < 0) {
		snprintf(why, whylen, "cannot start %s: %s", b->argv[0], uv_strerror(r));
		s->exited = true;
		s->ending = true;
		s->next = b->sessions;
		b->sessions = s;
		b->nsessions++;
		sess_close_all(s);
		return r;
	}
	uv_read_start((uv_stream_t *)&s->out, on_alloc, on_out);
	uv_timer_start(&s->tick, on_tick, 1000, 1000);
	s->last_active = now_ms(b);
	s->next = b->sessions;
	b->sessions = s;
	b->nsessions++;
	log_info("msg=\"mcp session started\" route=%s session=%.8s pid=%d", b->name, s->id, s->proc.pid);
	*out = s;
	return 0;
fail:
	if (s && !why[0])
		snprintf(why, whylen, "out of memory");
	free(args);
	if (s) {
		free(s->line);
		free(s);
	}
	return r;
}

int mbr_handle(mbr *b, const char *method, const char *session_id, const uint8_t *body, size_t n,
	       mbr_done_cb cb, void *ud, mbr_req **out)
{
	char idkey[160] = "", meth[128] = "", why[200] = "";
	json_t *msg = NULL;
	mbr_kind k;
	sess *s = NULL;
	mbr_req *r;
	int rc = 0;

	if (out)
		*out = NULL;
	if (!strcmp(method, "DELETE")) {
		if (!session_id || !(s = sess_find(b, session_id)))
			reply(cb, ud, 404, NULL, "text/plain", "unknown MCP session\n");
		else {
			sess_end(s, "client ended the session");
			reply(cb, ud, 200, NULL, NULL, NULL);
		}
		goto out;
	}
	if (strcmp(method, "POST") != 0) {
		mbr_response resp = { .status = 405, .allow = "POST, DELETE", .content_type = "text/plain",
				      .body = "this MCP route accepts POST and DELETE\n" };
		resp.body_len = strlen(resp.body);
		cb(ud, &resp);
		goto out;
	}
	if (n > b->max_msg) {
		reply_rpc_error(cb, ud, 413, -32600, "message too large");
		goto out;
	}
	msg = parse((const char *)body, n, why, sizeof why);
	if (!msg) {
		reply_rpc_error(cb, ud, 400, -32700, why);
		goto out;
	}
	k = classify_json(msg, idkey, sizeof idkey, meth, sizeof meth, why, sizeof why);
	if (k == MBR_INVALID) {
		reply_rpc_error(cb, ud, 400, -32600, why);
		goto out;
	}
	if (!session_id) {
		if (k != MBR_REQUEST || strcmp(meth, "initialize") != 0) {
			reply_rpc_error(cb, ud, 400, -32000, "Bad Request: no valid session ID provided (initialize first)");
			goto out;
		}
		if (live_sessions(b) >= b->max_sessions) {
			char m[120];
			snprintf(m, sizeof m, "too many concurrent MCP sessions on route %s (max %u)", b->name, b->max_sessions);
			log_warn("msg=\"session cap reached\" route=%s max=%u", b->name, b->max_sessions);
			reply_rpc_error(cb, ud, 503, -32000, m);
			goto out;
		}
		if ((rc = sess_spawn(b, &s, why, sizeof why)) < 0) {
			log_error("msg=\"cannot start MCP server\" route=%s reason=\"%s\"", b->name, why);
			reply_rpc_error(cb, ud, 502, -32603, why);
			rc = 0;
			goto out;
		}
	} else if (!(s = sess_find(b, session_id))) {
		reply_rpc_error(cb, ud, 404, -32001, "Session not found");
		goto out;
	}
	if (k == MBR_REQUEST && s->npending >= MBR_MAX_PENDING) {
		reply_rpc_error(cb, ud, 429, -32000, "too many requests in flight on this session");
		goto out;
	}
	if (k == MBR_REQUEST) {
		for (mbr_req *p = s->pending; p; p = p->next)
			if (!strcmp(p->idkey, idkey)) {
				reply_rpc_error(cb, ud, 400, -32600, "a request with this id is already in flight");
				goto out;
			}
	}
	if ((rc = sess_write(s, msg)) < 0) {
		rc = 0;
		reply_rpc_error(cb, ud, 502, -32603, "cannot write to the MCP server");
		goto out;
	}
	s->last_active = now_ms(b);
	if (k != MBR_REQUEST) {
		reply(cb, ud, 202, NULL, NULL, NULL);
		goto out;
	}
	r = calloc(1, sizeof *r);
	if (!r) {
		rc = -ENOMEM;
		goto out;
	}
	r->b = b;
	r->s = s;
	snprintf(r->idkey, sizeof r->idkey, "%s", idkey);
	r->cb = cb;
	r->ud = ud;
	r->init = !session_id;
	r->deadline = now_ms(b) + b->req_ms;
	r->next = s->pending;
	s->pending = r;
	s->npending++;
	if (out)
		*out = r;
out:
	json_decref(msg);
	return rc;
}

mbr *mbr_new(uv_loop_t *loop, const mbr_opts *o, char *err, size_t errlen)
{
	mbr *b = calloc(1, sizeof *b);
	size_t n = 0;
	if (!b)
		goto nomem;
	while (o->argv && o->argv[n])
		n++;
	if (n == 0) {
		snprintf(err, errlen, "route %s: no command to run", o->name ? o->name : "?");
		free(b);
		return NULL;
	}
	b->loop = loop;
	b->argc = n;
	b->argv = calloc(n + 1, sizeof *b->argv);
	b->name = strdup(o->name ? o->name : "mcp");
	if (!b->argv || !b->name)
		goto nomem;
	for (size_t i = 0; i < n; i++)
		if (!(b->argv[i] = strdup(o->argv[i])))
			goto nomem;
	if (o->workspace_root && !(b->workspace_root = strdup(o->workspace_root)))
		goto nomem;
	b->max_sessions = o->max_sessions ? o->max_sessions : 16;
	b->idle_ms = o->idle_timeout_ms ? o->idle_timeout_ms : 30u * 60 * 1000;
	b->req_ms = o->request_timeout_ms ? o->request_timeout_ms : 15u * 60 * 1000;
	b->max_msg = o->max_message ? o->max_message : 4u << 20;
	return b;
nomem:
	snprintf(err, errlen, "out of memory");
	mbr_free(b);
	return NULL;
}

void mbr_free(mbr *b)
{
	if (!b)
		return;
	b->freeing = true;
	for (sess *s = b->sessions, *next; s; s = next) {
		next = s->next;
		/* s may be freed by sess_close_all's callbacks only later, from the loop. */
		sess_end(s, "gateway shutting down");
		if (!s->exited)
			uv_process_kill(&s->proc, SIGKILL);
		sess_close_all(s);
	}
	/* Closing sessions still point at b: the last one to close frees it (callers run the loop after). */
	for (size_t i = 0; b->argv && i < b->argc; i++)
		free(b->argv[i]);
	free(b->argv);
	b->argv = NULL;
	free(b->workspace_root);
	b->workspace_root = NULL;
	if (!b->sessions) {
		free(b->name);
		free(b);
	}
}

unsigned mbr_sessions(const mbr *b) { return live_sessions(b); }
