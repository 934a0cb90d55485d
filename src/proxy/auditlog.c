/* The audit log: its config, the file sink with rotation and chain resume, the bounded queues and drop
 * accounting of the async sinks, and the lifecycle (see auditlog.h). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/dirs.h"
#include "core/err.h"
#include "core/log.h"
#include "proxy/auditlog_int.h"

#define TAIL_MAX (2u * AUD_MAX_LINE + 2) /* holds the last whole line and a torn one after it */
#define ROTATE_RETRY_MS 10000

struct alog {
	uv_loop_t *loop;
	aud_chain *chain;
	/* the file sink */
	char *path;
	int fd, dfd; /* the file (read and append), and its directory (for fsync after a rotation) */
	uint64_t size, rotate_bytes, rot_retry_ms;
	unsigned keep;
	bool fsync, cut_pending; /* cut_pending: a failed write left bytes past size */
	alogi_line *last;        /* the last line of the chain (rolled back to when a write fails) */
	/* the async sinks */
	alogi_stdout *so;
	alogi_syslog *sl;
	int facility;
	/* lifecycle */
	int handles;
	bool closing, timers_closing;
	uv_timer_t drain_timer, close_timer;
	void (*drain_cb)(alog *l, void *ud);
	void *drain_ud;
	alog_stats st;
	adm_metric *m_records, *m_errors, *m_rotations;
};

/* ---- lines and queues ---- */

void alogi_line_unref(alogi_line *ln)
{
	if (ln && --ln->refs == 0)
		free(ln);
}

void alogi_q_init(alogi_q *q, size_t max, uint64_t max_bytes)
{
	memset(q, 0, sizeof *q);
	q->max = max;
	q->max_bytes = max_bytes;
}

bool alogi_q_fits(const alogi_q *q, const alogi_line *ln)
{
	return q->n < q->max && q->bytes + ln->len <= q->max_bytes;
}

int alogi_q_push(alogi_q *q, alogi_line *ln)
{
	if (!alogi_q_fits(q, ln))
		return -ENOBUFS;
	if (q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 64;
		alogi_line **v;
		if (cap > q->max)
			cap = q->max;
		if (!(v = malloc(cap * sizeof *v)))
			return -ENOMEM;
		for (size_t i = 0; i < q->n; i++) /* unwrap the ring into the new array */
			v[i] = q->v[(q->head + i) % q->cap];
		free(q->v);
		q->v = v;
		q->cap = cap;
		q->head = 0;
	}
	q->v[(q->head + q->n) % q->cap] = ln;
	q->n++;
	q->bytes += ln->len;
	ln->refs++;
	return 0;
}

alogi_line *alogi_q_peek(const alogi_q *q)
{
	return q->n ? q->v[q->head] : NULL;
}

alogi_line *alogi_q_pop(alogi_q *q)
{
	alogi_line *ln;
	if (!q->n)
		return NULL;
	ln = q->v[q->head];
	q->head = (q->head + 1) % q->cap;
	q->n--;
	q->bytes -= ln->len;
	if (!q->n) { /* an idle queue holds no memory */
		free(q->v);
		q->v = NULL;
		q->cap = q->head = 0;
	}
	return ln;
}

void alogi_q_free(alogi_q *q)
{
	alogi_line *ln;
	while ((ln = alogi_q_pop(q)))
		alogi_line_unref(ln);
	free(q->v);
	q->v = NULL;
	q->cap = q->head = 0;
}

/* ---- drop accounting ---- */

static void drops_log(alogi_drops *d)
{
	if (!d->pend_n)
		return;
	log_warn("msg=\"audit records dropped\" sink=%s count=%" PRIu64 " seq_first=%" PRIu64 " seq_last=%" PRIu64
		 " reason=%s dropped_total=%" PRIu64,
		 d->sink, d->pend_n, d->pend_first, d->pend_last, d->reason ? d->reason : "?", d->total);
	d->pend_n = 0;
	d->last_log_ms = uv_now(d->l->loop);
}

static void drops_timer_cb(uv_timer_t *t)
{
	alogi_drops *d = t->data;
	d->timer_on = false;
	drops_log(d);
}

static void handle_closed_cb(uv_handle_t *h)
{
	alogi_handle_closed(h->data);
}

void alogi_drops_init(alogi_drops *d, alog *l, const char *sink)
{
	char lab[64];
	memset(d, 0, sizeof *d);
	d->sink = sink;
	d->l = l;
	d->m = adm_counter("postern_audit_dropped_total", "Audit records dropped by a sink (queue full, send failed, "
			   "shutdown); each drop is also logged", adm_label(lab, sizeof lab, "sink", sink));
	uv_timer_init(l->loop, &d->timer);
	d->timer.data = d;
	alogi_handle_opened(l);
}

void alogi_drop(alogi_drops *d, uint64_t seq, const char *reason)
{
	uint64_t now = uv_now(d->l->loop);
	d->total++;
	adm_add(d->m, 1);
	if (!d->pend_n)
		d->pend_first = seq;
	d->pend_last = seq;
	d->pend_n++;
	d->reason = reason;
	if (d->timer.data != d) { /* closed (a send cancelled at shutdown): log at once */
		drops_log(d);
		return;
	}
	if (now >= d->last_log_ms + 1000 || !d->last_log_ms)
		drops_log(d);
	else if (!d->timer_on) {
		d->timer_on = true;
		uv_timer_start(&d->timer, drops_timer_cb, d->last_log_ms + 1000 - now, 0);
	}
}

void alogi_drops_close(alogi_drops *d)
{
	drops_log(d);
	if (d->timer.data != d)
		return;
	d->timer.data = d->l;
	uv_close((uv_handle_t *)&d->timer, handle_closed_cb);
}

/* ---- the file ---- */

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		if (w == 0)
			return -EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static alogi_line *line_new(const char *p, size_t n, uint64_t seq)
{
	alogi_line *ln = malloc(sizeof *ln + n + 1);
	if (!ln)
		return NULL;
	ln->refs = 1;
	ln->seq = seq;
	ln->ts_us = 0;
	ln->sev = 6;
	ln->len = n;
	memcpy(ln->data, p, n);
	ln->data[n] = 0;
	return ln;
}

/* Reads the last bytes of fd (size bytes long) into *buf (malloc'd). */
static int read_tail(int fd, uint64_t size, char **buf, size_t *len)
{
	size_t n = size > TAIL_MAX ? TAIL_MAX : (size_t)size, got = 0;
	char *b = malloc(n + 1);
	if (!b)
		return -ENOMEM;
	while (got < n) {
		ssize_t r = pread(fd, b + got, n - got, (off_t)(size - n + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			free(b);
			return r < 0 ? -errno : -EIO;
		}
		got += (size_t)r;
	}
	*buf = b;
	*len = n;
	return 0;
}

/* Continues the chain from the tail of path (fd open on it, size bytes). cut: truncate a torn last line.
 * *empty: no whole line in the file. */
static int resume_from(alog *l, const char *path, int fd, uint64_t size, bool cut, bool *empty, char *err,
		       size_t errlen)
{
	char *tail = NULL;
	size_t len = 0, keep = 0, start;
	int rc;

	*empty = true;
	if (size == 0)
		return 0;
	if ((rc = read_tail(fd, size, &tail, &len)) < 0)
		return err_set(err, errlen, rc, "%s: cannot read its last line: %s", path, strerror(-rc));
	if ((rc = aud_chain_resume(l->chain, tail, len, &keep)) < 0) {
		rc = err_set(err, errlen, rc, "%s: the last line is not an audit record; the chain cannot continue "
			     "from it (move the file away, or restore it)", path);
		goto out;
	}
	if (keep < len && cut) {
		log_warn("msg=\"audit file: truncated a torn last line (cut by a crash, never acknowledged)\" file=%s "
			 "bytes=%zu",
			 path, len - keep);
		if (ftruncate(fd, (off_t)(size - (len - keep))) < 0) {
			rc = err_set(err, errlen, -errno, "%s: cannot truncate its torn last line: %s", path,
				     strerror(errno));
			goto out;
		}
		l->size = size - (len - keep);
	}
	if (keep > 0) {
		start = keep - 1;
		while (start > 0 && tail[start - 1] != '\n')
			start--;
		alogi_line_unref(l->last);
		if (!(l->last = line_new(tail + start, keep - start, aud_chain_seq(l->chain) - 1))) {
			rc = -ENOMEM;
			goto out;
		}
		*empty = false;
	}
	rc = 0;
out:
	free(tail);
	return rc;
}

static void rot_name(char *out, size_t len, const char *base, unsigned i)
{
	if (i == 0)
		snprintf(out, len, "%s", base);
	else
		snprintf(out, len, "%s.%u", base, i);
}

static int open_file(const char *path, int *fdp, char *err, size_t errlen)
{
	int fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600); /* read: the tail */
	if (fd < 0)
		return err_set(err, errlen, -errno, "%s: cannot open: %s", path, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		close(fd);
		return err_set(err, errlen, -e, "%s: %s", path,
			       e == EWOULDBLOCK ? "in use by another process (one writer per audit chain)" : strerror(e));
	}
	*fdp = fd;
	return 0;
}

static int file_open(alog *l, char *err, size_t errlen)
{
	char dir[4096], prev[4200];
	struct stat sb;
	bool empty;
	int rc, pfd;

	snprintf(dir, sizeof dir, "%s", l->path);
	if ((rc = dirs_make(dirname(dir), 0700, NULL, err, errlen)) < 0)
		return rc;
	snprintf(dir, sizeof dir, "%s", l->path);
	l->dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if ((rc = open_file(l->path, &l->fd, err, errlen)) < 0)
		return rc;
	if (fstat(l->fd, &sb) < 0)
		return err_set(err, errlen, -errno, "%s: %s", l->path, strerror(errno));
	if (!S_ISREG(sb.st_mode))
		return err_set(err, errlen, -EINVAL, "%s: not a regular file", l->path);
	l->size = (uint64_t)sb.st_size;
	if ((rc = resume_from(l, l->path, l->fd, l->size, true, &empty, err, errlen)) < 0)
		return rc;
	if (empty) { /* a restart right after a rotation (or a crash inside one): the chain is in FILE.1 */
		rot_name(prev, sizeof prev, l->path, 1);
		if ((pfd = open(prev, O_RDONLY | O_CLOEXEC)) >= 0) {
			if (fstat(pfd, &sb) == 0)
				rc = resume_from(l, prev, pfd, (uint64_t)sb.st_size, false, &empty, err, errlen);
			close(pfd);
			if (rc < 0)
				return rc;
		}
	}
	log_info("msg=\"audit log open\" file=%s bytes=%" PRIu64 " next_seq=%" PRIu64, l->path, l->size,
		 aud_chain_seq(l->chain));
	return 0;
}

/* FILE.(keep-1) -> FILE.keep, ..., FILE -> FILE.1, a new FILE. Each step is one atomic rename, so a crash
 * anywhere leaves every line under exactly one name (the oldest replaced) and the restart resumes from FILE,
 * or from FILE.1 when FILE is gone or empty. */
static int rotate(alog *l)
{
	char from[4200], to[4200], err[512];
	int fd = -1, rc;

	if (l->fsync && fdatasync(l->fd) < 0)
		log_warn("msg=\"audit file: fdatasync before rotation failed\" file=%s err=\"%s\"", l->path,
			 strerror(errno));
	for (unsigned i = l->keep; i >= 1; i--) {
		rot_name(from, sizeof from, l->path, i - 1);
		rot_name(to, sizeof to, l->path, i);
		if (rename(from, to) < 0 && (errno != ENOENT || i == 1)) {
			rc = -errno;
			log_error("msg=\"audit file: rotation failed; writing on to the current file\" from=%s to=%s "
				  "err=\"%s\" retry_in=10s",
				  from, to, strerror(errno));
			goto fail;
		}
	}
	/* FILE is FILE.1 now; our fd still writes to it, so a failed open loses nothing */
	if ((rc = open_file(l->path, &fd, err, sizeof err)) < 0) {
		log_error("msg=\"audit file: cannot open a new file after rotation; writing on to the rotated one\" "
			  "err=\"%s\" retry_in=10s",
			  err);
		goto fail;
	}
	close(l->fd);
	l->fd = fd;
	l->size = 0;
	if (l->fsync && l->dfd >= 0)
		fsync(l->dfd);
	l->st.rotations++;
	adm_add(l->m_rotations, 1);
	log_info("msg=\"audit file rotated\" file=%s keep=%u next_seq=%" PRIu64, l->path, l->keep,
		 aud_chain_seq(l->chain));
	return 0;
fail:
	l->rot_retry_ms = uv_now(l->loop) + ROTATE_RETRY_MS;
	return rc;
}

/* The file is back at its last whole line and the chain at that line. */
static int roll_back(alog *l)
{
	size_t keep;
	aud_chain *c;
	int rc;
	if ((rc = aud_chain_new(&c)) < 0)
		return rc;
	if (l->last && (rc = aud_chain_resume(c, l->last->data, l->last->len, &keep)) < 0) {
		aud_chain_free(c);
		return rc;
	}
	aud_chain_free(l->chain);
	l->chain = c;
	return 0;
}

static int file_write(alog *l, alogi_line *ln)
{
	int rc;
	if (l->cut_pending) { /* a failed write left a partial line: cut it before the next */
		if (ftruncate(l->fd, (off_t)l->size) < 0)
			return -errno;
		l->cut_pending = false;
	}
	if (l->rotate_bytes && l->size > 0 && l->size + ln->len > l->rotate_bytes && uv_now(l->loop) >= l->rot_retry_ms)
		rotate(l);
	if ((rc = write_all(l->fd, ln->data, ln->len)) < 0) {
		l->cut_pending = ftruncate(l->fd, (off_t)l->size) < 0;
		return rc;
	}
	if (l->fsync && fdatasync(l->fd) < 0)
		return -errno; /* the line is in the file; power loss may still take it */
	l->size += ln->len;
	return 0;
}

/* ---- lifecycle ---- */

uv_loop_t *alogi_loop(alog *l) { return l->loop; }
void alogi_handle_opened(alog *l) { l->handles++; }

static void release(alog *l)
{
	alogi_stdout_free(l->so);
	alogi_syslog_free(l->sl);
	alogi_line_unref(l->last);
	aud_chain_free(l->chain);
	free(l->path);
	free(l);
}

/* After alog_free: once the sinks' handles are closed, our two timers go, then the memory. */
void alogi_handle_closed(alog *l)
{
	l->handles--;
	if (!l->closing)
		return;
	if (l->handles == 2 && !l->timers_closing) {
		l->timers_closing = true;
		uv_close((uv_handle_t *)&l->drain_timer, handle_closed_cb);
		uv_close((uv_handle_t *)&l->close_timer, handle_closed_cb);
	} else if (l->handles == 0) {
		release(l);
	}
}

static bool all_idle(const alog *l)
{
	return (!l->so || alogi_stdout_idle(l->so)) && (!l->sl || alogi_syslog_idle(l->sl));
}

static void close_sinks(alog *l, bool deadline)
{
	if (l->so)
		alogi_stdout_close(l->so, deadline);
	if (l->sl)
		alogi_syslog_close(l->sl, deadline);
}

static void drain_timer_cb(uv_timer_t *t)
{
	alog *l = t->data;
	void (*cb)(alog *, void *) = l->drain_cb;
	l->drain_cb = NULL;
	if (cb)
		cb(l, l->drain_ud);
}

void alogi_progress(alog *l)
{
	if (l->drain_cb && all_idle(l)) {
		uv_timer_stop(&l->drain_timer);
		uv_timer_start(&l->drain_timer, drain_timer_cb, 0, 0); /* from the loop, not inside a sink */
	}
	if (l->closing && all_idle(l))
		close_sinks(l, false);
}

void alog_drain(alog *l, uint32_t timeout_ms, void (*cb)(alog *l, void *ud), void *ud)
{
	l->drain_cb = cb;
	l->drain_ud = ud;
	uv_timer_stop(&l->drain_timer);
	uv_timer_start(&l->drain_timer, drain_timer_cb, all_idle(l) ? 0 : timeout_ms, 0);
}

alog *alog_new(uv_loop_t *loop, const alog_config *c, char *err, size_t errlen)
{
	alog *l = calloc(1, sizeof *l);
	int rc;

	if (!l) {
		err_set(err, errlen, -ENOMEM, "out of memory");
		return NULL;
	}
	l->loop = loop;
	l->fd = l->dfd = -1;
	l->keep = c->keep;
	l->rotate_bytes = c->rotate_bytes;
	l->fsync = c->fsync;
	l->facility = c->facility;
	l->m_records = adm_counter("postern_audit_records_total", "Audit records written", NULL);
	l->m_errors = adm_counter("postern_audit_file_errors_total", "Audit records the file write failed for", NULL);
	l->m_rotations = adm_counter("postern_audit_rotations_total", "Audit file rotations", NULL);
	if (aud_chain_new(&l->chain) < 0) {
		err_set(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	if (c->file && (!(l->path = strdup(c->file)) || file_open(l, err, errlen) < 0)) {
		if (!l->path)
			err_set(err, errlen, -ENOMEM, "out of memory");
		goto fail;
	}
	uv_timer_init(loop, &l->drain_timer);
	uv_timer_init(loop, &l->close_timer);
	l->drain_timer.data = l->close_timer.data = l; /* handle_closed_cb finds the alog in data */
	l->handles = 2;
	if (c->to_stdout && !(l->so = alogi_stdout_new(l, c, STDOUT_FILENO, err, errlen)))
		goto fail_handles;
	if (c->syslog && !(l->sl = alogi_syslog_new(l, c, err, errlen)))
		goto fail_handles;
	l->st.next_seq = aud_chain_seq(l->chain);
	return l;
fail_handles:
	(void)rc;
	alog_free(l);
	return NULL;
fail:
	if (l->fd >= 0)
		close(l->fd);
	if (l->dfd >= 0)
		close(l->dfd);
	release(l);
	return NULL;
}

int alog_write(alog *l, const aud_rec *r)
{
	char *s = NULL;
	size_t n;
	alogi_line *ln;
	int rc;

	if (l->closing)
		return -ESHUTDOWN;
	if ((rc = aud_line(l->chain, r, &s, &n)) < 0) {
		l->st.file_errors++;
		adm_add(l->m_errors, 1);
		log_error("msg=\"audit record not written: the line cannot be built\" seq=%" PRIu64 " err=\"%s\"",
			  aud_chain_seq(l->chain), strerror(-rc));
		return rc;
	}
	ln = line_new(s, n, aud_chain_seq(l->chain) - 1);
	free(s);
	if (!ln) {
		roll_back(l);
		return -ENOMEM;
	}
	ln->ts_us = r->ts_us;
	ln->sev = alogi_severity(r);
	if (l->fd >= 0 && (rc = file_write(l, ln)) < 0) {
		l->st.file_errors++;
		adm_add(l->m_errors, 1);
		log_error("msg=\"audit file write failed; the record is not in the log\" file=%s seq=%" PRIu64
			  " err=\"%s\"",
			  l->path, ln->seq, strerror(-rc));
		alogi_line_unref(ln);
		if (roll_back(l) < 0)
			return -ENOMEM;
		return rc;
	}
	alogi_line_unref(l->last);
	l->last = ln; /* our reference */
	l->st.written++;
	l->st.next_seq = aud_chain_seq(l->chain);
	adm_add(l->m_records, 1);
	if (l->so)
		alogi_stdout_push(l->so, ln);
	if (l->sl)
		alogi_syslog_push(l->sl, ln);
	return 0;
}

static void close_timer_cb(uv_timer_t *t)
{
	close_sinks(t->data, true);
}

void alog_free(alog *l)
{
	if (!l || l->closing)
		return;
	l->closing = true;
	if (l->fd >= 0) {
		if (l->fsync)
			fdatasync(l->fd);
		close(l->fd);
		l->fd = -1;
	}
	if (l->dfd >= 0)
		close(l->dfd);
	l->dfd = -1;
	l->drain_cb = NULL;
	uv_timer_start(&l->close_timer, close_timer_cb, ALOG_FLUSH_MS, 0);
	close_sinks(l, false);
	l->handles++; /* a sink-free alog closes its timers through the same path */
	alogi_handle_closed(l);
}

void alog_get_stats(const alog *l, alog_stats *st)
{
	*st = l->st;
	if (l->so)
		alogi_stdout_stats(l->so, st);
	if (l->sl)
		alogi_syslog_stats(l->sl, st);
}
