/* The warm pool of `postern worker`: sandbox children started with --prestart before any session needs one,
 * so a session takes a ready sandbox (a list pop: well under 1 ms) and the pool refills in the background
 * (from a timer WK_POOL_REFILL_MS later, never inside the take). Pool children plus sessions never exceed
 * max_sessions. */
#include "worker/worker_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/dirs.h"
#include "core/err.h"
#include "core/log.h"

struct wkp {
	wk *w;
	wch *c;
	char *workspace;
	bool ready;
	struct wkp *next;
};

void wki_workspace_remove(const char *dir)
{
	dirs_remove_tree(dir);
}

char *wki_workspace_new(wk *w, char *err, size_t errlen)
{
	char *dir;
	if (asprintf(&dir, "%s/ws-XXXXXX", w->c.workspace_root) < 0) {
		err_set(err, errlen, -ENOMEM, "out of memory");
		return NULL;
	}
	if (!mkdtemp(dir)) {
		err_set(err, errlen, -errno, "cannot create a workspace under %s: %s", w->c.workspace_root, strerror(errno));
		free(dir);
		return NULL;
	}
	return dir;
}

int wki_child_spawn(wk *w, const char *workspace, const wch_cbs *cbs, void *ud, wch **out, char *err, size_t errlen)
{
	const char **argv = calloc(w->child_argc + 3, sizeof *argv);
	wch_opts o = { 0 };
	int rc;
	if (!argv)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	for (size_t i = 0; i < w->child_argc; i++)
		argv[i] = w->child_argv[i];
	argv[w->child_argc] = "--workspace";
	argv[w->child_argc + 1] = workspace;
	o.argv = argv;
	rc = wch_spawn(w->loop, &o, cbs, ud, out, err, errlen);
	free(argv);
	return rc;
}

static void unlink_entry(wk *w, struct wkp *p)
{
	for (struct wkp **pp = &w->pool; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	if (p->ready)
		w->npool--;
	else
		w->pool_starting--;
}

static void pool_ready(void *ud, wch *c)
{
	struct wkp *p = ud;
	(void)c;
	p->ready = true;
	p->w->pool_starting--;
	p->w->npool++;
	log_debug("msg=\"pool child ready\" pid=%d pool=%zu", wch_pid(c), p->w->npool);
	wki_metrics(p->w);
}

static void pool_exit(void *ud, wch *c, const char *why)
{
	struct wkp *p = ud;
	wk *w = p->w;
	log_warn("msg=\"pool child ended\" pid=%d reason=\"%s\"", wch_pid(c), why);
	unlink_entry(w, p);
	wch_free(c);
	wki_workspace_remove(p->workspace);
	free(p->workspace);
	free(p);
	w->pool_fail_at = wki_now(w);
	wki_metrics(w);
}

static const wch_cbs pool_cbs = { pool_ready, pool_exit };

static void fill_now(uv_timer_t *t)
{
	wk *w = t->data;
	char err[300];
	size_t room, have;
	if (w->draining)
		return;
	/* A child that died at once (bad sandbox options) is not respawned in a loop: at most once a second. */
	if (w->pool_fail_at && wki_now(w) < w->pool_fail_at + 1000) {
		uv_timer_start(&w->pool_timer, fill_now, 1000, 0);
		return;
	}
	room = (size_t)w->c.max_sessions > w->nsessions ? (size_t)w->c.max_sessions - w->nsessions : 0;
	if (room > (size_t)w->c.pool_size)
		room = (size_t)w->c.pool_size;
	have = w->npool + w->pool_starting;
	while (have < room) {
		struct wkp *p = calloc(1, sizeof *p);
		if (!p)
			return;
		p->w = w;
		if (!(p->workspace = wki_workspace_new(w, err, sizeof err)) ||
		    wki_child_spawn(w, p->workspace, &pool_cbs, p, &p->c, err, sizeof err) < 0) {
			log_error("msg=\"cannot start a pool child\" reason=\"%s\"", err);
			wki_workspace_remove(p->workspace);
			free(p->workspace);
			free(p);
			w->pool_fail_at = wki_now(w);
			uv_timer_start(&w->pool_timer, fill_now, 1000, 0);
			return;
		}
		p->next = w->pool;
		w->pool = p;
		w->pool_starting++;
		have++;
	}
}

void wki_pool_fill(wk *w)
{
	if (!w->pool_timer.data) {
		uv_timer_init(w->loop, &w->pool_timer);
		w->pool_timer.data = w;
	}
	if (!w->draining && !uv_is_active((uv_handle_t *)&w->pool_timer))
		uv_timer_start(&w->pool_timer, fill_now, WK_POOL_REFILL_MS, 0);
}

wch *wki_pool_take(wk *w, char **workspace)
{
	for (struct wkp *p = w->pool; p; p = p->next) {
		wch *c;
		if (!p->ready)
			continue;
		unlink_entry(w, p);
		c = p->c;
		*workspace = p->workspace;
		free(p);
		wki_pool_fill(w);
		wki_metrics(w);
		return c;
	}
	return NULL;
}

static void timer_closed(uv_handle_t *h)
{
	(void)h;
}

void wki_pool_free(wk *w)
{
	while (w->pool) {
		struct wkp *p = w->pool;
		w->pool = p->next;
		wch_free(p->c);
		wki_workspace_remove(p->workspace);
		free(p->workspace);
		free(p);
	}
	w->npool = w->pool_starting = 0;
	if (w->pool_timer.data && !uv_is_closing((uv_handle_t *)&w->pool_timer))
		uv_close((uv_handle_t *)&w->pool_timer, timer_closed);
}
