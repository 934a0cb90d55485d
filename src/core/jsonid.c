/* The id of an over-long JSON-RPC line (see jsonid.h). */
#include "core/jsonid.h"

#include <stdbool.h>
#include <string.h>

void jid_reset(jid_scan *s)
{
	s->hlen = s->tlen = 0;
	s->total = 0;
}

void jid_feed(jid_scan *s, const void *p, size_t n)
{
	const char *c = p;
	if (!n)
		return;
	size_t h = n < JID_KEEP - s->hlen ? n : JID_KEEP - s->hlen;
	memcpy(s->head + s->hlen, c, h);
	s->hlen += h;
	s->total += n;
	if (n >= JID_KEEP) {
		memcpy(s->tail, c + n - JID_KEEP, JID_KEEP);
		s->tlen = JID_KEEP;
		return;
	}
	if (s->tlen + n > JID_KEEP) {
		size_t drop = s->tlen + n - JID_KEEP;
		memmove(s->tail, s->tail + drop, s->tlen - drop);
		s->tlen -= drop;
	}
	memcpy(s->tail + s->tlen, c, n);
	s->tlen += n;
}

static bool ws(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* One JSON value at p[0..n) through jansson; *used is how many bytes it took. The value must end before n:
 * a number cut by the end of the buffer would read as a shorter one. */
static json_t *value_at(const char *p, size_t n, size_t *used)
{
	json_error_t e;
	json_t *v = json_loadb(p, n, JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, &e);
	if (v && (e.position <= 0 || (size_t)e.position >= n)) {
		json_decref(v);
		v = NULL;
	}
	if (v)
		*used = (size_t)e.position;
	return v;
}

static json_t *usable(json_t *id)
{
	if (json_is_integer(id) || (json_is_string(id) && json_string_length(id) <= 256))
		return id;
	json_decref(id);
	return NULL;
}

/* `{ "k": v, ...` from the start: each key and value decoded until the id or a value the head cuts. */
static json_t *from_head(const char *p, size_t n)
{
	size_t i = 0, used;
	while (i < n && ws(p[i]))
		i++;
	if (i >= n || p[i++] != '{')
		return NULL;
	for (int members = 0; members < 64; members++) {
		while (i < n && ws(p[i]))
			i++;
		if (i >= n || p[i] != '"')
			return NULL;
		json_t *k = value_at(p + i, n - i, &used);
		if (!json_is_string(k)) {
			json_decref(k);
			return NULL;
		}
		bool is_id = !strcmp(json_string_value(k), "id");
		json_decref(k);
		i += used;
		while (i < n && ws(p[i]))
			i++;
		if (i >= n || p[i++] != ':')
			return NULL;
		while (i < n && ws(p[i]))
			i++;
		json_t *v = i < n ? value_at(p + i, n - i, &used) : NULL;
		if (!v)
			return NULL; /* the member the line was too long for */
		if (is_id)
			return usable(v);
		json_decref(v);
		i += used;
		while (i < n && ws(p[i]))
			i++;
		if (i >= n || p[i++] != ',')
			return NULL;
	}
	return NULL;
}

/* `..., "id": v }` at the very end: the last member of the top-level object. A raw `"` inside a string is
 * always escaped, so a `"id"` after `,` or `{` is a key, and exactly one `}` after its value puts it at the
 * top level. */
static json_t *from_tail(const char *p, size_t n)
{
	for (size_t at = n; at-- > 0;) {
		if (at + 4 > n || memcmp(p + at, "\"id\"", 4))
			continue;
		size_t b = at;
		while (b > 0 && ws(p[b - 1]))
			b--;
		if (b == 0 || (p[b - 1] != ',' && p[b - 1] != '{'))
			continue;
		size_t i = at + 4, used;
		while (i < n && ws(p[i]))
			i++;
		if (i >= n || p[i++] != ':')
			continue;
		while (i < n && ws(p[i]))
			i++;
		/* The value is followed by at least the closing brace, so value_at's end check holds. */
		json_t *v = i < n ? value_at(p + i, n - i, &used) : NULL;
		if (!v)
			continue;
		i += used;
		while (i < n && ws(p[i]))
			i++;
		if (i < n && p[i] == '}') {
			i++;
			while (i < n && ws(p[i]))
				i++;
			if (i == n)
				return usable(v);
		}
		json_decref(v);
	}
	return NULL;
}

json_t *jid_recover(const jid_scan *s)
{
	json_t *id = from_head(s->head, s->hlen);
	return id ? id : from_tail(s->tail, s->tlen);
}
