#include "guard/jparse.h"
#include "core/utf8.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct jp {
	const unsigned char *p, *end;
	char *scratch; /* decoded strings: never longer than the text */
	unsigned max_depth;
	int rc;        /* -EAGAIN (declined) or -ENOMEM once something failed */
} jp;

static json_t *value(jp *s, unsigned depth);

static json_t *decline(jp *s, int rc)
{
	if (!s->rc)
		s->rc = rc;
	return NULL;
}

static void skip_ws(jp *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
		s->p++;
}

/* The string at s->p (after its quote) decoded into scratch; *n its length. NULL: declined. */
static const char *string(jp *s, size_t *n)
{
	char *o = s->scratch;
	while (s->p < s->end) {
		unsigned char c = *s->p;
		if (c == '"') {
			s->p++;
			*n = (size_t)(o - s->scratch);
			return s->scratch;
		}
		if (c == '\\') {
			const char *named;
			if (s->end - s->p < 2 || !(named = memchr("\"\\/bfnrt", s->p[1], 8)))
				return NULL; /* \u and anything else: jansson's */
			*o++ = "\"\\/\b\f\n\r\t"[named - "\"\\/bfnrt"];
			s->p += 2;
		} else if (c < 0x20) {
			return NULL;
		} else if (c < 0x80) {
			*o++ = (char)c;
			s->p++;
		} else {
			size_t k = utf8_seq_len(s->p, (size_t)(s->end - s->p));
			if (!k)
				return NULL;
			memcpy(o, s->p, k);
			o += k;
			s->p += k;
		}
	}
	return NULL;
}

static json_t *number(jp *s)
{
	const unsigned char *q = s->p;
	bool neg = *q == '-';
	int64_t v = 0;
	size_t nd = 0;
	if (neg)
		q++;
	while (q < s->end && *q >= '0' && *q <= '9' && nd <= 18)
		v = v * 10 + (*q++ - '0'), nd++;
	/* a leading zero with more digits, a fraction, an exponent, past 18 digits: jansson's */
	if (nd == 0 || nd > 18 || (nd > 1 && s->p[neg] == '0') ||
	    (q < s->end && (*q == '.' || *q == 'e' || *q == 'E' || (*q >= '0' && *q <= '9'))))
		return decline(s, -EAGAIN);
	s->p = q;
	{
		json_t *j = json_integer(neg ? -v : v);
		return j ? j : decline(s, -ENOMEM);
	}
}

static json_t *literal(jp *s, const char *word, json_t *v)
{
	size_t n = strlen(word);
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n))
		return decline(s, -EAGAIN);
	s->p += n;
	return v;
}

static json_t *object(jp *s, unsigned depth)
{
	json_t *o = json_object();
	if (!o)
		return decline(s, -ENOMEM);
	s->p++;
	skip_ws(s);
	if (s->p < s->end && *s->p == '}') {
		s->p++;
		return o;
	}
	for (;;) {
		const char *k;
		size_t kn;
		json_t *v;
		skip_ws(s);
		if (s->p >= s->end || *s->p != '"')
			goto fail;
		s->p++;
		if (!(k = string(s, &kn)))
			goto fail;
		/* the key stays in scratch only until the value reuses it: a copy on the stack, or jansson */
		char kb[64];
		if (kn >= sizeof kb)
			goto fail;
		memcpy(kb, k, kn);
		kb[kn] = 0;
		skip_ws(s);
		if (s->p >= s->end || *s->p != ':')
			goto fail;
		s->p++;
		if (json_object_getn(o, kb, kn)) /* a duplicate: jansson refuses it and says so */
			goto fail;
		if (!(v = value(s, depth + 1)))
			goto out;
		if (json_object_setn_new_nocheck(o, kb, kn, v) < 0) {
			decline(s, -ENOMEM);
			goto out;
		}
		skip_ws(s);
		if (s->p < s->end && *s->p == ',') {
			s->p++;
			continue;
		}
		if (s->p < s->end && *s->p == '}') {
			s->p++;
			return o;
		}
		goto fail;
	}
fail:
	decline(s, -EAGAIN);
out:
	json_decref(o);
	return NULL;
}

static json_t *array(jp *s, unsigned depth)
{
	json_t *a = json_array();
	if (!a)
		return decline(s, -ENOMEM);
	s->p++;
	skip_ws(s);
	if (s->p < s->end && *s->p == ']') {
		s->p++;
		return a;
	}
	for (;;) {
		json_t *v = value(s, depth + 1);
		if (!v)
			goto out;
		if (json_array_append_new(a, v) < 0) {
			decline(s, -ENOMEM);
			goto out;
		}
		skip_ws(s);
		if (s->p < s->end && *s->p == ',') {
			s->p++;
			continue;
		}
		if (s->p < s->end && *s->p == ']') {
			s->p++;
			return a;
		}
		decline(s, -EAGAIN);
		goto out;
	}
out:
	json_decref(a);
	return NULL;
}

static json_t *value(jp *s, unsigned depth)
{
	const char *str;
	size_t n;
	json_t *v;
	skip_ws(s);
	if (s->p >= s->end || ((*s->p == '{' || *s->p == '[') && depth > s->max_depth))
		return decline(s, -EAGAIN); /* depth counts arrays and objects, as jrpc's cap does */
	switch (*s->p) {
	case '{':
		return object(s, depth);
	case '[':
		return array(s, depth);
	case '"':
		s->p++;
		if (!(str = string(s, &n)))
			return decline(s, -EAGAIN);
		/* no NUL can be in it (no \u0000) and it is checked UTF-8 */
		return (v = json_stringn_nocheck(str, n)) ? v : decline(s, -ENOMEM);
	case 't':
		return literal(s, "true", json_true());
	case 'f':
		return literal(s, "false", json_false());
	case 'n':
		return literal(s, "null", json_null());
	default:
		if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
			return number(s);
		return decline(s, -EAGAIN);
	}
}

int jp_parse(const char *buf, size_t len, unsigned max_depth, json_t **out)
{
	jp s = { .p = (const unsigned char *)buf, .end = (const unsigned char *)buf + len, .max_depth = max_depth };
	json_t *v = NULL;
	int rc;

	*out = NULL;
	if (!(s.scratch = malloc(len + 1)))
		return -ENOMEM;
	v = value(&s, 1);
	skip_ws(&s);
	if (v && s.p != s.end)
		decline(&s, -EAGAIN); /* bytes after the value */
	rc = s.rc;
	if (rc == 0) {
		*out = v;
		v = NULL;
	}
	json_decref(v);
	free(s.scratch);
	return rc;
}
