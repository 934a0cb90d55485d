/* The stdio bridge's child processes: spawn, one JSON-RPC line per message on stdin, lines from stdout,
 * exit, SIGTERM then SIGKILL, the per-session tick. */
#include "core/hex.h"
#include "proxy/mcpbridge_int.h"

#include <errno.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/dirs.h"
#include "core/jsonid.h"
#include "core/lineio.h"
#include "core/log.h"

void mbri_handle_closed(uv_handle_t *h)
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
		dirs_remove_tree(s->workspace);
		free(s->workspace);
	}
	while (s->pending)
		mbri_pend_free(s, s->pending);
	mbri_ring_free(s);
	free(s->line);
	free(s->big);
	free(s);
	if (b->freeing && !b->sessions) {
		free(b->name);
		free(b);
	}
}

void mbri_end(sess *s, const char *why)
{
	if (s->ending)
		return;
	s->ending = true;
	if (s->modern)
		log_info("msg=\"mcp shared child ended\" route=%s child=%.8s reason=\"%s\"", s->b->name, s->id, why);
	else
		log_info("msg=\"mcp session ended\" route=%s session=%.8s reason=\"%s\"", s->b->name, s->id, why);
	if (s->modern)
		mbri_modern_end(s, why);
	mbri_end_conns(s, why);
	while (s->pending)
		mbri_pend_free(s, s->pending);
	if (!uv_is_closing((uv_handle_t *)&s->in))
		uv_close((uv_handle_t *)&s->in, mbri_handle_closed);
	if (!s->exited) {
		uv_process_kill(&s->proc, SIGTERM);
		s->kill_at = mbri_now(s->b) + MBR_KILL_GRACE_MS;
	}
	mbri_metrics(s->b);
}

void mbri_close_all(sess *s)
{
	if (!uv_is_closing((uv_handle_t *)&s->in))
		uv_close((uv_handle_t *)&s->in, mbri_handle_closed);
	if (!uv_is_closing((uv_handle_t *)&s->out))
		uv_close((uv_handle_t *)&s->out, mbri_handle_closed);
	if (!uv_is_closing((uv_handle_t *)&s->tick))
		uv_close((uv_handle_t *)&s->tick, mbri_handle_closed);
	if (!uv_is_closing((uv_handle_t *)&s->proc))
		uv_close((uv_handle_t *)&s->proc, mbri_handle_closed);
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
	mbri_end(s, why);
	/* Keep reading: the child may have written its last response just before exiting. */
	if (s->out_closed || s->b->freeing)
		mbri_close_all(s);
}

static void line_done(sess *s)
{
	size_t n = s->line_len;
	if (n && s->line[n - 1] == '\r')
		n--; /* CRLF line ends */
	s->line[n] = 0;
	mbri_deliver(s, s->line, n);
}

/* A line over max_msg is dropped as it streams by, but its ends are kept (from its first byte past the
 * cap) so that the request it answers gets an error with its id, not silence until the client's timeout. */
static void big_feed(sess *s, const char *p, size_t n)
{
	if (!s->big) {
		if (!(s->big = malloc(sizeof *s->big)))
			return; /* then dropped without an answer, as a line with no id is */
		jid_reset(s->big);
		jid_feed(s->big, s->line, s->line_len);
	}
	jid_feed(s->big, p, n);
}

static void big_done(sess *s)
{
	json_t *id = s->big ? jid_recover(s->big) : NULL;
	unsigned long long size = s->big ? s->big->total : 0;
	log_warn("msg=\"dropped oversized message from MCP server\" route=%s cap=%zu size=%llu answered=%s", s->b->name,
		 s->b->max_msg, size, id ? "yes" : "no");
	free(s->big);
	s->big = NULL;
	if (!id)
		return;
	char msg[300];
	snprintf(msg, sizeof msg,
		 "the MCP server's answer (%llu bytes) was over this route's cap of %zu bytes for one message and was "
		 "dropped; ask for less at a time",
		 size, s->b->max_msg);
	json_t *e = json_pack("{s:s,s:O,s:{s:i,s:s}}", "jsonrpc", "2.0", "id", id, "error", "code", -32603, "message", msg);
	char *text = e ? json_dumps(e, JSON_COMPACT) : NULL;
	if (text)
		mbri_deliver(s, text, strlen(text));
	free(text);
	json_decref(e);
	json_decref(id);
}

static void on_out(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	sess *s = st->data;
	size_t i, start = 0;
	if (nread < 0) {
		s->out_closed = true;
		uv_close((uv_handle_t *)&s->out, mbri_handle_closed);
		mbri_end(s, "server closed its output");
		if (s->exited)
			mbri_close_all(s);
		return;
	}
	for (i = 0; i < (size_t)nread; i++) {
		if (buf->base[i] != '\n')
			continue;
		size_t part = i - start;
		if (!s->line_overflow && s->line_len + part <= s->b->max_msg) {
			memcpy(s->line + s->line_len, buf->base + start, part);
			s->line_len += part;
			line_done(s);
		} else {
			big_feed(s, buf->base + start, part);
			big_done(s);
		}
		s->line_len = 0;
		s->line_overflow = false;
		start = i + 1;
		if (s->out_closed)
			return;
	}
	if (start < (size_t)nread) {
		size_t part = (size_t)nread - start;
		if (s->line_overflow || s->line_len + part > s->b->max_msg) {
			big_feed(s, buf->base + start, part);
			s->line_overflow = true;
		} else {
			memcpy(s->line + s->line_len, buf->base + start, part);
			s->line_len += part;
		}
	}
}

void mbri_flow(sess *s)
{
	bool blocked = false;
	if (s->out_closed || uv_is_closing((uv_handle_t *)&s->out))
		return;
	for (mbr_req *q = s->conns; q && !blocked; q = q->next)
		blocked = q->blocked;
	if (blocked && !s->out_paused) {
		uv_read_stop((uv_stream_t *)&s->out);
		s->out_paused = true;
	} else if (!blocked && s->out_paused) {
		uv_read_start((uv_stream_t *)&s->out, lio_alloc, on_out);
		s->out_paused = false;
	}
}

static void on_tick(uv_timer_t *t)
{
	sess *s = t->data;
	uint64_t now = mbri_now(s->b);
	if (s->ending) {
		if (!s->exited && s->kill_at && now >= s->kill_at) {
			uv_process_kill(&s->proc, SIGKILL);
			s->kill_at = 0;
		}
		return;
	}
	if (s->modern)
		mbri_modern_tick(s, now);
	else
		mbri_stream_tick(s, now);
	if (!s->ending && !s->pending && !s->conns && !s->mreqs && now - s->last_active >= s->b->idle_ms)
		mbri_end(s, "idle timeout");
	mbri_reclaim(s->b, false);
}

int mbri_write(sess *s, json_t *msg)
{
	char *txt = json_dumps(msg, JSON_COMPACT);
	int r;
	if (!txt)
		return -ENOMEM;
	r = mbri_write_text(s, txt, strlen(txt));
	free(txt);
	return r;
}

int mbri_write_text(sess *s, const char *txt, size_t n)
{
	if (s->ending || uv_is_closing((uv_handle_t *)&s->in))
		return -EPIPE;
	return lio_write_line((uv_stream_t *)&s->in, txt, n);
}

static int make_id(char out[33])
{
	unsigned char raw[16];
	if (RAND_bytes(raw, sizeof raw) != 1)
		return -EIO;
	hex_encode(raw, 16, out);
	return 0;
}

int mbri_spawn(mbr *b, bool modern, sess **out, char *why, size_t whylen)
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
	s->modern = modern;
	if ((r = make_id(s->id)) < 0)
		goto fail;
	r = -ENOMEM;
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
	s->next = b->sessions;
	b->sessions = s;
	b->nsessions++;
	if (r < 0) {
		snprintf(why, whylen, "cannot start %s: %s", b->argv[0], uv_strerror(r));
		s->exited = true;
		s->ending = true;
		mbri_close_all(s);
		return r;
	}
	uv_read_start((uv_stream_t *)&s->out, lio_alloc, on_out);
	uv_timer_start(&s->tick, on_tick, MBR_TICK_MS, MBR_TICK_MS);
	s->last_active = mbri_now(b);
	if (modern) {
		log_info("msg=\"mcp shared child started\" route=%s child=%.8s pid=%d era=2026-07-28", b->name, s->id,
			 s->proc.pid);
	} else {
		b->st.started++;
		adm_add(b->m_started, 1);
		log_info("msg=\"mcp session started\" route=%s session=%.8s pid=%d", b->name, s->id, s->proc.pid);
	}
	mbri_metrics(b);
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
