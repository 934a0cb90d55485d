#include "core/sse.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- encoder ------------------------------------------------------------------------------------------- */

static bool field_ok(const char *s, size_t max)
{
	size_t n;
	if (!s)
		return true;
	n = strcspn(s, "\r\n");
	return s[n] == 0 && n <= max;
}

/* Lines of data: each ends at CRLF, LF or CR; a trailing line end does not start another line, except that
 * data ending in a line end keeps it (one more, empty, data line). */
static size_t data_lines_len(const char *p, size_t n)
{
	size_t total = 0, i = 0, start = 0;
	if (!p)
		return 0;
	for (;;) {
		while (i < n && p[i] != '\n' && p[i] != '\r')
			i++;
		total += 6 + (i - start) + 1; /* "data: " line "\n" */
		if (i >= n)
			break;
		if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
			i++;
		start = ++i;
	}
	return total;
}

size_t sse_encoded_len(const sse_event *ev)
{
	size_t n = 1; /* the blank line */
	char r[32];
	if (!field_ok(ev->id, SSE_ID_MAX) || !field_ok(ev->event, SSE_TYPE_MAX))
		return 0;
	if (ev->id)
		n += 4 + strlen(ev->id) + 1;
	if (ev->event)
		n += 7 + strlen(ev->event) + 1;
	if (ev->retry >= 0)
		n += (size_t)snprintf(r, sizeof r, "retry: %ld\n", ev->retry);
	if (ev->data)
		n += data_lines_len(ev->data, ev->data_len);
	return n;
}

static char *put(char *w, const char *s, size_t n)
{
	memcpy(w, s, n);
	return w + n;
}

int sse_encode(cbuf *out, const sse_event *ev)
{
	size_t need = sse_encoded_len(ev), i = 0, start = 0;
	uint8_t *at;
	char *w;
	int r;
	if (!need)
		return -EINVAL;
	if ((r = cbuf_reserve(out, need, &at)) < 0)
		return r;
	w = (char *)at;
	if (ev->id) {
		w = put(w, "id: ", 4);
		w = put(w, ev->id, strlen(ev->id));
		*w++ = '\n';
	}
	if (ev->event) {
		w = put(w, "event: ", 7);
		w = put(w, ev->event, strlen(ev->event));
		*w++ = '\n';
	}
	if (ev->retry >= 0) {
		char rb[32];
		int k = snprintf(rb, sizeof rb, "retry: %ld\n", ev->retry);
		w = put(w, rb, (size_t)k);
	}
	if (ev->data) {
		const char *p = ev->data;
		size_t n = ev->data_len;
		for (;;) {
			while (i < n && p[i] != '\n' && p[i] != '\r')
				i++;
			w = put(w, "data: ", 6);
			w = put(w, p + start, i - start);
			*w++ = '\n';
			if (i >= n)
				break;
			if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
				i++;
			start = ++i;
		}
	}
	*w++ = '\n';
	cbuf_commit(out, (size_t)(w - (char *)at));
	return 0;
}

int sse_comment(cbuf *out, const char *text)
{
	if (text && !field_ok(text, SIZE_MAX))
		return -EINVAL;
	return cbuf_printf(out, ":%s%s\n\n", text ? " " : "", text ? text : "");
}

/* ---- decoder ------------------------------------------------------------------------------------------- */

void sse_dec_init(sse_dec *d, size_t max_line, size_t max_event)
{
	memset(d, 0, sizeof *d);
	d->max_line = max_line ? max_line : SSE_DEF_MAX_LINE;
	d->max_event = max_event ? max_event : SSE_DEF_MAX_EVENT;
	cbuf_init(&d->line, 256, d->max_line);
	cbuf_init(&d->data, 256, d->max_event + 1);
	d->retry = -1;
}

void sse_dec_free(sse_dec *d)
{
	cbuf_free(&d->line);
	cbuf_free(&d->data);
}

static int fail(sse_dec *d, int rc, const char *why, char *err, size_t errlen)
{
	if (!d->failed) {
		d->failed = true;
		snprintf(d->err, sizeof d->err, "%s", why);
	}
	snprintf(err, errlen, "%s", d->err);
	return rc;
}

/* One complete line (without its end). Returns 1 when it ends an event, 0 otherwise, <0 on a cap. */
static int take_line(sse_dec *d, const char *l, size_t n, char *err, size_t errlen)
{
	size_t nlen, vlen;
	const char *colon, *v;

	if (n == 0)
		return d->any_field ? 1 : 0;
	if (l[0] == ':')
		return 0; /* comment */
	colon = memchr(l, ':', n);
	nlen = colon ? (size_t)(colon - l) : n;
	v = colon ? colon + 1 : l + n;
	vlen = (size_t)(l + n - v);
	if (vlen && v[0] == ' ') {
		v++;
		vlen--;
	}
	if (nlen == 4 && !memcmp(l, "data", 4)) {
		if (d->data.len + vlen + 1 > d->max_event + 1)
			return fail(d, -E2BIG, "event data over the cap", err, errlen);
		if (cbuf_append(&d->data, v, vlen) < 0 || cbuf_append(&d->data, "\n", 1) < 0)
			return fail(d, -ENOMEM, "out of memory", err, errlen);
		d->any_field = true;
	} else if (nlen == 5 && !memcmp(l, "event", 5)) {
		if (vlen > SSE_TYPE_MAX)
			return fail(d, -E2BIG, "event type too long", err, errlen);
		memcpy(d->type, v, vlen);
		d->type[vlen] = 0;
		d->any_field = true;
	} else if (nlen == 2 && !memcmp(l, "id", 2)) {
		if (!memchr(v, 0, vlen)) {
			if (vlen > SSE_ID_MAX)
				return fail(d, -E2BIG, "event id too long", err, errlen);
			memcpy(d->id, v, vlen);
			d->id[vlen] = 0;
			d->have_id = true;
		}
		d->any_field = true;
	} else if (nlen == 5 && !memcmp(l, "retry", 5)) {
		long r = 0;
		size_t i;
		for (i = 0; i < vlen && v[i] >= '0' && v[i] <= '9'; i++)
			r = r > 100000000L ? r : r * 10 + (v[i] - '0');
		if (vlen && i == vlen)
			d->retry = r;
		d->any_field = true;
	}
	return 0;
}

static void emit(sse_dec *d, sse_event *ev)
{
	d->emitted = true;
	ev->id = d->have_id ? d->id : NULL;
	ev->event = d->type[0] ? d->type : NULL;
	ev->retry = d->retry;
	ev->has_data = d->data.len > 0;
	if (ev->has_data) {
		d->data.len--; /* the last line's "\n" */
		d->data.p[d->data.off + d->data.len] = 0;
		ev->data = cbuf_str(&d->data);
		ev->data_len = d->data.len;
	} else {
		ev->data = NULL;
		ev->data_len = 0;
	}
}

/* Clears what the previous event left (the id stays: it is the stream's last event id). */
static void reset_event(sse_dec *d)
{
	if (d->emitted) {
		d->emitted = false;
		cbuf_free(&d->data);
		d->type[0] = 0;
		d->retry = -1;
		d->any_field = false;
	}
}

int sse_dec_next(sse_dec *d, const uint8_t *p, size_t n, size_t *used, sse_event *ev, char *err, size_t errlen)
{
	size_t i = 0;
	*used = 0;
	if (d->failed)
		return fail(d, -EINVAL, d->err, err, errlen);
	reset_event(d);
	if (!d->started && n) {
		/* A UTF-8 BOM may open the stream; it can arrive split, so wait for 3 bytes unless they differ. */
		static const uint8_t bom[3] = { 0xEF, 0xBB, 0xBF };
		size_t k = d->line.len, m = 0;
		while (m < n && k + m < 3 && p[m] == bom[k + m])
			m++;
		if (k + m == 3) {
			cbuf_free(&d->line);
			i = m;
			d->started = true;
		} else if (m == n && k + m < 3) {
			if (cbuf_append(&d->line, p, n) < 0)
				return fail(d, -ENOMEM, "out of memory", err, errlen);
			*used = n;
			return 0;
		} else {
			d->started = true; /* not a BOM: the held bytes are the start of the first line */
		}
	}
	while (i < n) {
		int r;
		if (d->cr) {
			d->cr = false;
			if (p[i] == '\n') {
				i++;
				continue;
			}
		}
		const uint8_t *e = p + i;
		size_t k = 0;
		while (i + k < n && e[k] != '\n' && e[k] != '\r')
			k++;
		if (d->line.len + k > d->max_line)
			return fail(d, -E2BIG, "line over the cap", err, errlen);
		if (i + k == n) {
			/* The line goes on in a later feed. */
			if (cbuf_append(&d->line, e, k) < 0)
				return fail(d, -ENOMEM, "out of memory", err, errlen);
			i = n;
			break;
		}
		d->cr = e[k] == '\r';
		i += k + 1;
		if (d->line.len == 0) {
			r = take_line(d, (const char *)e, k, err, errlen); /* a whole line in this feed: no copy */
		} else {
			if (cbuf_append(&d->line, e, k) < 0)
				return fail(d, -ENOMEM, "out of memory", err, errlen);
			r = take_line(d, cbuf_str(&d->line), d->line.len, err, errlen);
			cbuf_free(&d->line);
		}
		if (r < 0)
			return r;
		if (r == 1) {
			emit(d, ev);
			*used = i;
			return 1;
		}
	}
	*used = n;
	return 0;
}
