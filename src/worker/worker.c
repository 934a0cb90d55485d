/* `postern worker -c worker.yaml` (docs/worker.md): config, the daemon, the poll loop and the work items.
 * A session's I/O is worker_sess.c, the warm pool worker_pool.c. */
#include "worker/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "core/err.h"
#include "core/log.h"
#include "core/secfile.h"
#include "worker/worker_int.h"

static const char *const keys[] = { "base_url", "environment_id", "environment_key_file", "worker_id", "beta_header",
				    "max_sessions", "pool_size", "workspace_root", "sandbox", "metrics_listen",
				    "max_idle", "tool_timeout", "ca_file", "on_work", "postern_bin", "reclaim_older_than",
				    "log_level", "log_format", NULL };

static void usage(FILE *f)
{
	fprintf(f, "usage: postern worker -c worker.yaml [--on-work CMD] [--log-level L] [--log-format F]\n\n"
		   "Takes work from a self-hosted environment's queue (Anthropic's environments API or `postern control`)\n"
		   "and runs each session's tool calls in a `postern sandbox serve` child. Keys: docs/worker.md.\n"
		   "  --on-work CMD   run CMD per claimed item (ANTHROPIC_WORK_ID, ANTHROPIC_ENVIRONMENT_ID,\n"
		   "                  ANTHROPIC_SESSION_ID in its environment, the work JSON on stdin)\n");
}

/* ---- config ------------------------------------------------------------------------------------------ */

/* The key file: a regular file, mode 0600 or stricter, one line. */
static int read_key(cfg_doc *d, cfg_node *root, const char *path, char **out)
{
	char why[600];
	sfile f;
	size_t len;
	int rc = sfile_read(path, 4096, 0, &f, why, sizeof why);
	if (rc < 0)
		return cfg_fail(d, root, "environment_key_file", "%s", why);
	len = sfile_first_line(&f);
	if (!len || strspn(f.data, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~+/=") != len)
		rc = cfg_fail(d, root, "environment_key_file",
			      "%s: expected one line with the environment key (no spaces or control characters)", path);
	else if (!(*out = strdup(f.data)))
		rc = -ENOMEM;
	sfile_free(&f);
	return rc;
}

static int default_worker_id(char **out)
{
	char host[256] = "worker";
	unsigned char r[16];
	if (gethostname(host, sizeof host - 1) < 0)
		snprintf(host, sizeof host, "worker");
	host[sizeof host - 1] = 0;
	if (RAND_bytes(r, sizeof r) != 1)
		return -EIO;
	r[6] = (r[6] & 0x0f) | 0x40;
	r[8] = (r[8] & 0x3f) | 0x80;
	if (asprintf(out, "%s-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", host, r[0], r[1],
		     r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]) < 0)
		return -ENOMEM;
	return 0;
}

/* http://HOST[:port][/...] with HOST exactly a loopback name (not http://127.0.0.1.example.com). */
static bool loopback_http(const char *u)
{
	static const char *const hosts[] = { "127.0.0.1", "localhost", "[::1]", NULL };
	if (strncmp(u, "http://", 7))
		return false;
	u += 7;
	for (size_t i = 0; hosts[i]; i++) {
		size_t n = strlen(hosts[i]);
		if (!strncmp(u, hosts[i], n) && (u[n] == 0 || u[n] == ':' || u[n] == '/'))
			return true;
	}
	return false;
}

static int load_cfg(cfg_doc *d, wk_cfg *c)
{
	cfg_node *root = cfg_root(d), *sb;
	optmap_check_fn check;
	const optmap_ent *at = NULL;
	char err[300];
	struct stat st;
	int rc;

	c->max_sessions = 4;
	c->pool_size = 2;
	c->max_idle_ms = 60000;
	c->tool_timeout_ms = 120000;
	c->reclaim_ms = 5000;
	c->log_level = c->log_format = -1;
	if (!cfg_is_map(root))
		return cfg_fail(d, NULL, NULL, "the worker config is a mapping of keys (base_url, environment_id, ...)");
	if (cfg_check_keys(d, root, "the worker config", keys) < 0 || log_config_read(d, root, &c->log_level, &c->log_format) < 0 ||
	    cfg_get_str(d, root, "base_url", &c->base_url) < 0 || cfg_get_str(d, root, "environment_id", &c->environment_id) < 0 ||
	    cfg_get_str(d, root, "environment_key_file", &c->key_file) < 0 ||
	    cfg_get_str(d, root, "worker_id", &c->worker_id) < 0 || cfg_get_str(d, root, "beta_header", &c->beta_header) < 0 ||
	    cfg_get_str(d, root, "workspace_root", &c->workspace_root) < 0 ||
	    cfg_get_str(d, root, "metrics_listen", &c->metrics_listen) < 0 || cfg_get_str(d, root, "ca_file", &c->ca_file) < 0 ||
	    cfg_get_str(d, root, "on_work", &c->on_work) < 0 || cfg_get_str(d, root, "postern_bin", &c->postern_bin) < 0 ||
	    cfg_get_int(d, root, "max_sessions", 1, 1024, &c->max_sessions) < 0 ||
	    cfg_get_int(d, root, "pool_size", 0, 1024, &c->pool_size) < 0 ||
	    cfg_get_duration_ms(d, root, "max_idle", &c->max_idle_ms) < 0 ||
	    cfg_get_duration_ms(d, root, "tool_timeout", &c->tool_timeout_ms) < 0 ||
	    cfg_get_duration_ms(d, root, "reclaim_older_than", &c->reclaim_ms) < 0)
		return -EINVAL;
	if (!c->base_url)
		return cfg_fail(d, root, NULL, "base_url: missing (e.g. https://api.anthropic.com)");
	if (strncmp(c->base_url, "https://", 8) && !loopback_http(c->base_url))
		return cfg_fail(d, root, "base_url", "must be https:// (plain http:// only to 127.0.0.1, localhost or [::1])");
	while (strlen(c->base_url) > 8 && c->base_url[strlen(c->base_url) - 1] == '/')
		c->base_url[strlen(c->base_url) - 1] = 0;
	if (!c->environment_id || !*c->environment_id || strspn(c->environment_id, "abcdefghijklmnopqrstuvwxyz"
		"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != strlen(c->environment_id))
		return cfg_fail(d, root, c->environment_id ? "environment_id" : NULL,
				"environment_id: %s", c->environment_id ? "letters, digits, _ and - only" : "missing (env_...)");
	if (!c->key_file)
		return cfg_fail(d, root, NULL, "environment_key_file: missing (a 0600 file with the environment key)");
	if (!c->workspace_root)
		return cfg_fail(d, root, NULL, "workspace_root: missing (a directory for the sessions' workspaces)");
	if (c->workspace_root[0] != '/' || stat(c->workspace_root, &st) < 0 || !S_ISDIR(st.st_mode))
		return cfg_fail(d, root, "workspace_root", "%s must be an existing absolute directory", c->workspace_root);
	if (c->max_idle_ms < 0 || c->tool_timeout_ms < 100 || c->tool_timeout_ms > 3600000)
		return cfg_fail(d, root, c->max_idle_ms < 0 ? "max_idle" : "tool_timeout",
				"out of range (max_idle >= 0; tool_timeout from 100ms to 1h)");
	if (c->pool_size > c->max_sessions)
		return cfg_fail(d, root, "pool_size", "is more than max_sessions (%lld): the pool never exceeds it",
				(long long)c->max_sessions);
	if (!c->beta_header && !(c->beta_header = strdup("managed-agents-2026-04-01")))
		return -ENOMEM;
	if (!c->worker_id && (rc = default_worker_id(&c->worker_id)) < 0)
		return rc;
	if (strlen(c->worker_id) > 200 || strpbrk(c->worker_id, "\r\n"))
		return cfg_fail(d, root, "worker_id", "at most 200 characters on one line");
	sb = cfg_get(root, "sandbox");
	if (sb && !cfg_is_map(sb)) {
		if (cfg_scalar(sb) && *cfg_scalar(sb))
			return cfg_fail(d, root, "sandbox", "expects a mapping of options (image, memory, pids, ...)");
		sb = NULL;
	}
	if (sb && (rc = optmap_from_cfg(d, sb, "sandbox", &c->sandbox)) < 0)
		return rc;
	/* workspace_root is the worker's: each child gets its own directory under it. */
	if (optmap_get(&c->sandbox, "workspace_root"))
		return cfg_fail(d, sb, "workspace_root", "is a worker key (top level), not a sandbox option");
	if ((check = optmap_checker("sandbox")) && check(&c->sandbox, &at, err, sizeof err) < 0)
		return cfg_fail_line(d, at ? at->line : cfg_key_line(root, "sandbox"), "%s", err);
	/* Each session's workspace is a host directory shared with the host (--workspace): a disk cap asked
	 * for must be possible there, or every session would be refused at its start. */
	if ((check = optmap_checker("sandbox-shared"))) {
		if ((rc = optmap_add(&c->sandbox, "workspace_root", c->workspace_root, 0)) < 0)
			return rc;
		rc = check(&c->sandbox, &at, err, sizeof err);
		optmap_del(&c->sandbox, "workspace_root");
		if (rc < 0)
			return cfg_fail_line(d, at ? at->line : cfg_key_line(root, "sandbox"), "%s", err);
	}
	return read_key(d, root, c->key_file, &c->key);
}

static void free_cfg(wk_cfg *c)
{
	free(c->base_url);
	free(c->environment_id);
	free(c->key_file);
	free(c->worker_id);
	free(c->beta_header);
	free(c->workspace_root);
	free(c->metrics_listen);
	free(c->ca_file);
	free(c->on_work);
	free(c->postern_bin);
	if (c->key) {
		OPENSSL_cleanse(c->key, strlen(c->key));
		free(c->key);
	}
	optmap_free(&c->sandbox);
	memset(c, 0, sizeof *c);
}

bool wk_config_is_worker(cfg_doc *d)
{
	return cfg_key_line(cfg_root(d), "environment_id") || cfg_key_line(cfg_root(d), "environment_key_file");
}

int wk_config_check(cfg_doc *d)
{
	wk_cfg c = { 0 };
	int rc = load_cfg(d, &c);
	free_cfg(&c);
	return rc < 0 ? -EINVAL : 0;
}

/* ---- helpers the parts share ------------------------------------------------------------------------- */

uint64_t wki_now(wk *w)
{
	uv_update_time(w->loop);
	return uv_now(w->loop);
}

int wki_escape(const char *s, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		bool plain = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
			     ch == '-' || ch == '_' || ch == '.' || ch == '~';
		if (o + (plain ? 1 : 3) >= cap)
			return -ENOBUFS;
		if (plain) {
			out[o++] = (char)ch;
		} else {
			out[o++] = '%';
			out[o++] = hex[ch >> 4];
			out[o++] = hex[ch & 15];
		}
	}
	out[o] = 0;
	return 0;
}

char *wki_url(wk *w, const char *path, const char *extra)
{
	char *u;
	if (asprintf(&u, "%s%s?beta=true%s", w->c.base_url, path, extra ? extra : "") < 0)
		return NULL;
	return u;
}

int wki_start(wk *w, whttp_opts *o, const char *path, const char *extra, bool worker_id, const char *const *more,
	      whttp_done_fn done, void *ud, whttp_req **req, const char *what)
{
	char beta[160], wid[260], err[200];
	const char *hdrs[6];
	size_t n = 0;
	int rc = -ENOMEM;

	snprintf(beta, sizeof beta, "anthropic-beta: %s", w->c.beta_header);
	hdrs[n++] = beta;
	if (worker_id) {
		snprintf(wid, sizeof wid, "Anthropic-Worker-ID: %s", w->c.worker_id);
		hdrs[n++] = wid;
	}
	for (size_t i = 0; more && more[i] && n < 5; i++)
		hdrs[n++] = more[i];
	hdrs[n] = NULL;
	o->headers = hdrs; /* libcurl copies them */
	o->ca_file = w->c.ca_file;
	o->url = wki_url(w, path, extra);
	if (o->url)
		rc = whttp_start(w->http, o, done, ud, req, err, sizeof err);
	if (rc < 0)
		log_error("msg=\"cannot start a request\" request=\"%s\" reason=\"%s\"", what, o->url ? err : "out of memory");
	free((char *)o->url);
	o->url = NULL;
	o->headers = NULL;
	return rc;
}

void wki_metrics(wk *w)
{
	adm_set(w->m_active, (int64_t)w->nsessions);
	adm_set(w->m_pool, (int64_t)w->npool);
}

/* ---- poll loop --------------------------------------------------------------------------------------- */

static void poll_now(wk *w);

static void poll_tick(uv_timer_t *t)
{
	wk *w = t->data;
	wki_pool_fill(w); /* a pool child that died is replaced here at the latest */
	poll_now(w);
}

static void poll_later(wk *w, uint64_t ms)
{
	if (!w->draining && !w->fatal)
		uv_timer_start(&w->poll_timer, poll_tick, ms, 0);
}

void wki_maybe_poll(wk *w)
{
	if (!w->poll_req && !w->ack_req && !uv_is_active((uv_handle_t *)&w->poll_timer))
		poll_later(w, 0);
}

static void poll_failed(wk *w, long status, const char *body, size_t len, const char *terr)
{
	char etext[300];
	uint32_t delay;
	adm_add(w->m_poll_err, 1);
	wpr_error_text(body, len, etext, sizeof etext);
	if (wpr_fatal_status(status)) {
		w->fatal = true;
		log_error("msg=\"poll refused: the worker stops polling\" status=%ld error=\"%s\" hint=\"%s\"", status, etext,
			  status == 401 ? "the environment key is wrong or revoked: check environment_key_file"
			  : status == 404 ? "no such environment: check environment_id and base_url"
					  : "fix the config and restart");
		return;
	}
	delay = bo_next(w->poll_bo);
	log_warn("msg=\"poll failed: retrying\" status=%ld error=\"%s\" retry_ms=%u", status, *terr ? terr : etext, delay);
	poll_later(w, delay);
}

static void run_on_work(wk *w, json_t *work);

static void on_ack(void *ud, const whttp_result *r)
{
	wk *w = ud;
	json_t *work = w->acking;
	char err[300], etext[300], qt[64];
	const char *type;
	w->ack_req = NULL;
	w->acking = NULL;
	if (r->status < 200 || r->status > 299) {
		wpr_error_text(r->body, r->len, etext, sizeof etext);
		log_warn("msg=\"ack failed: item skipped (it is offered again)\" work=%s status=%ld error=\"%s\"",
			 json_string_value(json_object_get(work, "id")), r->status, *r->err ? r->err : etext);
		json_decref(work);
		poll_later(w, 0);
		return;
	}
	adm_add(w->m_items, 1);
	type = json_string_value(json_object_get(json_object_get(work, "data"), "type"));
	if (w->on_work)
		run_on_work(w, work);
	if (wki_session_start(w, work, err, sizeof err) < 0)
		log_error("msg=\"cannot start the item\" work=%s type=%s reason=\"%s\"",
			  json_string_value(json_object_get(work, "id")), log_quote(type ? type : "?", qt, sizeof qt), err);
	json_decref(work);
	if (w->nsessions < (size_t)w->c.max_sessions)
		poll_later(w, 0);
}

static bool valid_id(const char *s)
{
	return s && *s && strlen(s) < 128 &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == strlen(s);
}

static void on_poll(void *ud, const whttp_result *r)
{
	wk *w = ud;
	json_t *j;
	const char *id;
	char path[256];
	whttp_opts o = { 0 };
	uint64_t now = wki_now(w);

	w->poll_req = NULL;
	if (w->draining)
		return;
	if (r->status < 200 || r->status > 299) {
		poll_failed(w, r->status, r->body, r->len, r->err);
		return;
	}
	j = json_loadb(r->body, r->len, JSON_DECODE_ANY, NULL);
	if (!j) {
		log_warn("msg=\"poll answer is not JSON: retrying\" len=%zu", r->len);
		poll_failed(w, 0, NULL, 0, "malformed poll answer");
		return;
	}
	bo_reset(w->poll_bo);
	if (json_is_null(j)) {
		json_decref(j);
		if (!w->empty_polls++ || now - w->last_idle_log >= 300000) {
			log_info("msg=\"no work: polling\" environment=%s empty_polls=%llu", w->c.environment_id,
				 (unsigned long long)w->empty_polls);
			w->last_idle_log = now;
		} else {
			log_debug("msg=\"no work\"");
		}
		unsigned char rb[2];
		RAND_bytes(rb, 2);
		poll_later(w, 1000 + ((unsigned)rb[0] << 8 | rb[1]) % 2000);
		return;
	}
	id = json_string_value(json_object_get(j, "id"));
	if (!json_is_object(j) || !valid_id(id)) {
		log_warn("msg=\"poll answer is not a work item: skipped\"");
		json_decref(j);
		poll_later(w, 1000);
		return;
	}
	w->empty_polls = 0;
	snprintf(path, sizeof path, "/v1/environments/%s/work/%s/ack", w->c.environment_id, id);
	o.method = "POST";
	o.bearer = w->c.key;
	o.timeout_ms = WK_REQ_TIMEOUT_MS;
	w->acking = j;
	if (wki_start(w, &o, path, NULL, false, NULL, on_ack, w, &w->ack_req, "ack") < 0) {
		w->acking = NULL;
		json_decref(j);
		poll_later(w, 1000);
	}
}

static void poll_now(wk *w)
{
	char path[256], extra[64];
	whttp_opts o = { 0 };
	if (w->draining || w->fatal || w->poll_req || w->ack_req)
		return;
	if (w->nsessions >= (size_t)w->c.max_sessions)
		return; /* a session's end polls again */
	snprintf(path, sizeof path, "/v1/environments/%s/work/poll", w->c.environment_id);
	snprintf(extra, sizeof extra, "&block_ms=%d&reclaim_older_than_ms=%lld", WK_POLL_BLOCK_MS, (long long)w->c.reclaim_ms);
	o.method = "GET";
	o.bearer = w->c.key;
	o.timeout_ms = WK_REQ_TIMEOUT_MS;
	if (wki_start(w, &o, path, extra, true, NULL, on_poll, w, &w->poll_req, "poll") < 0)
		poll_later(w, 1000);
}

/* ---- --on-work ---------------------------------------------------------------------------------------- */

struct onwork {
	uv_process_t p;
	uv_pipe_t in;
	uv_write_t wr;
	char *json;
	int open;
};

static void ow_closed(uv_handle_t *h)
{
	struct onwork *o = h->data;
	if (--o->open == 0) {
		free(o->json);
		free(o);
	}
}

static void ow_exit(uv_process_t *p, int64_t status, int sig)
{
	log_info("msg=\"on-work program ended\" pid=%d status=%lld signal=%d", p->pid, (long long)status, sig);
	uv_close((uv_handle_t *)p, ow_closed);
}

static void ow_written(uv_write_t *wr, int status)
{
	struct onwork *o = wr->data;
	(void)status;
	uv_close((uv_handle_t *)&o->in, ow_closed);
}

static void run_on_work(wk *w, json_t *work)
{
	extern char **environ;
	struct onwork *o = calloc(1, sizeof *o);
	char **env = wch_child_env(environ);
	char *vars[3] = { NULL, NULL, NULL };
	size_t n = 0;
	const char *sid = json_string_value(json_object_get(json_object_get(work, "data"), "id"));
	uv_process_options_t po = { 0 };
	uv_stdio_container_t st[3];
	const char *argv[] = { "/bin/sh", "-c", w->on_work, NULL };
	uv_buf_t b;
	int r;

	if (!o || !env)
		goto fail;
	while (env[n])
		n++;
	char **full = realloc(env, (n + 4) * sizeof *env);
	if (!full)
		goto fail;
	env = full;
	if (asprintf(&vars[0], "ANTHROPIC_WORK_ID=%s", json_string_value(json_object_get(work, "id"))) < 0 ||
	    asprintf(&vars[1], "ANTHROPIC_ENVIRONMENT_ID=%s", w->c.environment_id) < 0 ||
	    asprintf(&vars[2], "ANTHROPIC_SESSION_ID=%s", sid ? sid : "") < 0)
		goto fail;
	env[n] = vars[0];
	env[n + 1] = vars[1];
	env[n + 2] = vars[2];
	env[n + 3] = NULL;
	o->json = json_dumps(work, JSON_COMPACT);
	if (!o->json)
		goto fail;
	uv_pipe_init(w->loop, &o->in, 0);
	o->in.data = o->p.data = o->wr.data = o;
	o->open = 2;
	st[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
	st[0].data.stream = (uv_stream_t *)&o->in;
	st[1].flags = UV_INHERIT_FD; /* its stdout folded into the worker's stderr, as the CLI does */
	st[1].data.fd = 2;
	st[2].flags = UV_INHERIT_FD;
	st[2].data.fd = 2;
	po.file = argv[0];
	po.args = (char **)argv;
	po.env = env;
	po.stdio = st;
	po.stdio_count = 3;
	po.exit_cb = ow_exit;
	r = uv_spawn(w->loop, &o->p, &po);
	if (r < 0) {
		log_error("msg=\"cannot run the on-work program\" reason=\"%s\"", uv_strerror(r));
		o->open = 2;
		uv_close((uv_handle_t *)&o->in, ow_closed);
		uv_close((uv_handle_t *)&o->p, ow_closed);
		o = NULL;
		goto fail;
	}
	log_info("msg=\"on-work program started\" pid=%d work=%s", o->p.pid, json_string_value(json_object_get(work, "id")));
	b = uv_buf_init(o->json, (unsigned)strlen(o->json));
	if (uv_write(&o->wr, (uv_stream_t *)&o->in, &b, 1, ow_written) < 0)
		uv_close((uv_handle_t *)&o->in, ow_closed);
	o = NULL;
fail:
	if (o) {
		free(o->json);
		free(o);
	}
	for (int i = 0; i < 3; i++)
		free(vars[i]);
	free(env);
}

/* ---- daemon -------------------------------------------------------------------------------------------- */

static void closed(uv_handle_t *h)
{
	(void)h;
}

static void maybe_done(wk *w)
{
	if (!w->draining || w->sessions || w->closing)
		return;
	w->closing = true;
	whttp_free(w->http);
	w->http = NULL;
	wki_pool_free(w);
	uv_close((uv_handle_t *)&w->poll_timer, closed);
	adm_free(w->adm);
	w->adm = NULL;
	log_info("msg=\"worker stopped\"");
	dmn_drained(w->d);
}

void wki_session_gone(wk *w, wks *s)
{
	(void)s;
	wki_metrics(w);
	if (w->draining)
		maybe_done(w);
	else {
		wki_pool_fill(w);
		wki_maybe_poll(w);
	}
}

static int wk_load(void *ud, const char *path, int *log_level, int *log_format, char *err, size_t errlen)
{
	wk *w = ud;
	if (!(w->doc = cfg_load(path, err, errlen)))
		return -EINVAL;
	if (load_cfg(w->doc, &w->c) < 0) {
		snprintf(err, errlen, "%s", cfg_error(w->doc) ? cfg_error(w->doc) : "invalid config (out of memory)");
		return -EINVAL;
	}
	*log_level = w->c.log_level;
	*log_format = w->c.log_format;
	return 0;
}

static int wk_recheck(void *ud, const char *path, int *log_level, int *log_format, char *err, size_t errlen)
{
	wk_cfg c = { 0 };
	cfg_doc *d = cfg_load(path, err, errlen);
	int rc = -EINVAL;
	(void)ud;
	if (!d)
		return -EINVAL;
	if (load_cfg(d, &c) == 0) {
		*log_level = c.log_level;
		*log_format = c.log_format;
		rc = 0;
	} else {
		snprintf(err, errlen, "%s", cfg_error(d) ? cfg_error(d) : "invalid config");
	}
	free_cfg(&c);
	cfg_free(d);
	return rc;
}

static int build_child_argv(wk *w)
{
	char **opts = optmap_to_argv(&w->c.sandbox, "--option");
	size_t n = 0, k = 0;
	static char self[4096];
	const char *bin = w->c.postern_bin;
	if (!opts)
		return -ENOMEM;
	while (opts[n])
		n++;
	if (!bin) {
		ssize_t l = readlink("/proc/self/exe", self, sizeof self - 1);
		if (l <= 0) {
			cfg_strv_free(opts);
			return -errno;
		}
		self[l] = 0;
		bin = self;
	}
	/* bin sandbox serve --stdio --prestart OPTS --workspace DIR NULL */
	w->child_argv = calloc(n + 9, sizeof *w->child_argv);
	if (!w->child_argv) {
		cfg_strv_free(opts);
		return -ENOMEM;
	}
	w->child_argv[k++] = strdup(bin);
	w->child_argv[k++] = strdup("sandbox");
	w->child_argv[k++] = strdup("serve");
	w->child_argv[k++] = strdup("--stdio");
	w->child_argv[k++] = strdup("--prestart");
	w->child_argv[k++] = strdup("--idle-timeout");
	w->child_argv[k++] = strdup("7d"); /* the worker ends its children */
	for (size_t i = 0; i < n; i++)
		w->child_argv[k++] = opts[i];
	free(opts);
	w->child_argc = k;
	for (size_t i = 0; i < k; i++)
		if (!w->child_argv[i])
			return -ENOMEM;
	return 0;
}

static int wk_start(void *ud, uv_loop_t *loop, char *err, size_t errlen)
{
	wk *w = ud;
	int rc;
	w->loop = loop;
	log_set_component("worker");
	uv_timer_init(loop, &w->poll_timer);
	w->poll_timer.data = w;
	if (!w->on_work)
		w->on_work = w->c.on_work;
	if (!(w->http = whttp_new(loop, err, errlen)))
		return -EIO;
	if (!(w->poll_bo = bo_new(1000, 60000, 750, NULL, NULL)))
		return err_set(err, errlen, -ENOMEM, "out of memory");
	if ((rc = build_child_argv(w)) < 0)
		return err_set(err, errlen, rc, "cannot build the sandbox command");
	w->m_active = adm_gauge("postern_worker_sessions_active", "Sessions this worker runs.", NULL);
	w->m_pool = adm_gauge("postern_worker_pool_size", "Ready sandbox children in the warm pool.", NULL);
	w->m_poll_err = adm_counter("postern_worker_poll_errors_total", "Failed polls.", NULL);
	w->m_items = adm_counter("postern_worker_items_total", "Work items acknowledged.", NULL);
	{
		static const char *const tools[6] = { "bash", "read", "write", "edit", "glob", "grep" };
		static const char *const outcomes[3] = { "ok", "error", "timeout" };
		char lab[96];
		for (int i = 0; i < 6; i++)
			for (int k = 0; k < 3; k++) {
				snprintf(lab, sizeof lab, "tool=\"%s\",outcome=\"%s\"", tools[i], outcomes[k]);
				w->m_calls[i][k] = adm_counter("postern_worker_tool_calls_total",
							       "Tool calls run, by tool and outcome (error: an error result; "
							       "timeout: cut off by tool_timeout).", lab);
			}
	}
	adm_process_metrics();
	adm_build_info(POSTERN_VERSION, NULL);
	if (w->c.metrics_listen) {
		w->adm = adm_new(loop);
		if (!w->adm || adm_listen(w->adm, w->c.metrics_listen, err, errlen) < 0)
			return -EIO;
	}
	log_info("msg=\"worker started\" environment=%s worker_id=%s base_url=%s max_sessions=%lld pool_size=%lld",
		 w->c.environment_id, w->c.worker_id, w->c.base_url, (long long)w->c.max_sessions, (long long)w->c.pool_size);
	w->started = true;
	wki_pool_fill(w);
	poll_later(w, 0);
	return 0;
}

static void wk_drain(void *ud, dmn *d, int signum)
{
	wk *w = ud;
	w->d = d;
	if (w->draining)
		return;
	w->draining = true;
	log_info("msg=\"worker draining\" signal=%d sessions=%zu", signum, w->nsessions);
	uv_timer_stop(&w->poll_timer);
	if (w->poll_req) {
		whttp_cancel(w->poll_req);
		w->poll_req = NULL;
	}
	if (w->ack_req) {
		whttp_cancel(w->ack_req);
		w->ack_req = NULL;
		json_decref(w->acking);
		w->acking = NULL;
	}
	if (!w->started) {
		dmn_drained(d);
		return;
	}
	for (wks *s = w->sessions, *nx; s; s = nx) {
		nx = s->next;
		wki_session_end(s, "the worker is shutting down");
	}
	maybe_done(w);
}

static void wk_cleanup(void *ud)
{
	wk *w = ud;
	for (size_t i = 0; w->child_argv && w->child_argv[i]; i++)
		free(w->child_argv[i]);
	free(w->child_argv);
	bo_free(w->poll_bo);
	free_cfg(&w->c);
	cfg_free(w->doc);
}

int worker_main(int argc, char **argv)
{
	static const dmn_ops ops = { "postern worker", usage, wk_load, wk_start, wk_drain, wk_cleanup, wk_recheck, NULL };
	wk w = { 0 };
	char **args = calloc((size_t)argc + 1, sizeof *args);
	int n = 0, rc;
	if (!args)
		return 1;
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--on-work") && i + 1 < argc) {
			w.on_work = argv[++i];
			continue;
		}
		args[n++] = argv[i];
	}
	rc = dmn_run(&ops, &w, n, args);
	free(args);
	return rc;
}
