/* Argument redaction: key patterns, PCRE2 value patterns, then a size cap. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <fnmatch.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard/redact.h"

struct redact {
	char **keys;
	size_t nkeys;
	bool *is_glob;
	pcre2_code *pat[REDACT_MAX_PATTERNS];
	size_t npat;
	pcre2_match_context *mc;
	size_t max_bytes;
};

static const char *const default_keys[] = { "password", "passwd",      "token",  "secret",     "authorization",
					    "api_key",  "apikey",      "cookie", "credential", "private_key",
					    NULL };

/* Built-in value patterns; see redact.h for what each is for. */
static const char *const builtin[] = {
	"(?i)\\b(?:bearer|basic)\\s+[A-Za-z0-9._~+/=-]{8,}",
	"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----(?s:.*?)(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\\z)",
	"\\beyJ[A-Za-z0-9_-]{5,}\\.[A-Za-z0-9_-]{5,}\\.[A-Za-z0-9_-]*",
	"\\b(?:AKIA|ASIA)[0-9A-Z]{16}\\b",
	("(?<![A-Za-z0-9+/_-])(?=[A-Za-z0-9+/_-]*[0-9])(?=[A-Za-z0-9+/_-]*[A-Z])(?=[A-Za-z0-9+/_-]*[a-z])"
	 "[A-Za-z0-9+/_-]{40,}={0,2}"),
};

void redact_free(redact *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nkeys; i++)
		free(r->keys[i]);
	free(r->keys);
	free(r->is_glob);
	for (size_t i = 0; i < r->npat; i++)
		pcre2_code_free(r->pat[i]);
	pcre2_match_context_free(r->mc);
	free(r);
}

int redact_add_value_pattern(redact *r, const char *pcre, char *err, size_t errlen)
{
	int ec;
	PCRE2_SIZE off;
	pcre2_code *c;

	if (r->npat >= REDACT_MAX_PATTERNS) {
		snprintf(err, errlen, "more than %d value patterns", REDACT_MAX_PATTERNS);
		return -EINVAL;
	}
	if (!(c = pcre2_compile((PCRE2_SPTR)pcre, PCRE2_ZERO_TERMINATED, 0, &ec, &off, NULL))) {
		PCRE2_UCHAR msg[160];
		pcre2_get_error_message(ec, msg, sizeof msg);
		snprintf(err, errlen, "value pattern at offset %zu: %s", (size_t)off, (char *)msg);
		return -EINVAL;
	}
	(void)pcre2_jit_compile(c, PCRE2_JIT_COMPLETE); /* faster when available; the interpreter otherwise */
	r->pat[r->npat++] = c;
	return 0;
}

int redact_new(const char *const *keys, size_t max_bytes, redact **out, char *err, size_t errlen)
{
	redact *r = calloc(1, sizeof *r);
	size_t n = 0;
	int rc = -ENOMEM;

	*out = NULL;
	if (!r)
		goto done;
	if (!keys)
		keys = default_keys;
	while (keys[n])
		n++;
	if (n > REDACT_MAX_KEYS || (max_bytes && max_bytes < REDACT_MIN_BYTES)) {
		snprintf(err, errlen, n > REDACT_MAX_KEYS ? "more than %d key patterns" : "size cap under %d bytes",
			 n > REDACT_MAX_KEYS ? REDACT_MAX_KEYS : REDACT_MIN_BYTES);
		rc = -EINVAL;
		goto done;
	}
	r->max_bytes = max_bytes ? max_bytes : REDACT_MAX_BYTES_DEFAULT;
	if (!(r->keys = calloc(n + 1, sizeof *r->keys)) || !(r->is_glob = calloc(n + 1, sizeof *r->is_glob)))
		goto done;
	for (; r->nkeys < n; r->nkeys++) {
		if (!*keys[r->nkeys]) {
			snprintf(err, errlen, "empty key pattern");
			rc = -EINVAL;
			goto done;
		}
		if (!(r->keys[r->nkeys] = strdup(keys[r->nkeys])))
			goto done;
		r->is_glob[r->nkeys] = strpbrk(keys[r->nkeys], "*?[") != NULL;
	}
	if (!(r->mc = pcre2_match_context_create(NULL)))
		goto done;
	pcre2_set_match_limit(r->mc, REDACT_MATCH_LIMIT);
	pcre2_set_depth_limit(r->mc, 1000);
	for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++)
		if ((rc = redact_add_value_pattern(r, builtin[i], err, errlen)) < 0)
			goto done;
	*out = r;
	r = NULL;
	rc = 0;
done:
	if (rc == -ENOMEM)
		snprintf(err, errlen, "out of memory");
	redact_free(r);
	return rc;
}

static bool key_matches(const redact *r, const char *k)
{
	for (size_t i = 0; i < r->nkeys; i++)
		if (r->is_glob[i] ? fnmatch(r->keys[i], k, FNM_CASEFOLD) == 0 : strcasestr(k, r->keys[i]) != NULL)
			return true;
	return false;
}

/* Applies every value pattern to s; *out is a new string, or NULL with *changed false when nothing matched. */
static int redact_string(const redact *r, pcre2_match_data *md, const char *s, size_t n, json_t **out,
			 redact_stats *st)
{
	char *cur = NULL, *buf = NULL;
	const char *in = s;
	size_t inlen = n;
	int rc = 0;

	*out = NULL;
	for (size_t i = 0; i < r->npat; i++) {
		int m = pcre2_match(r->pat[i], (PCRE2_SPTR)in, inlen, 0, 0, md, r->mc);
		PCRE2_SIZE olen;
		if (m == PCRE2_ERROR_NOMATCH)
			continue;
		if (m < 0) { /* a limit: keep nothing of a string we could not scan */
			free(cur);
			*out = json_string(REDACT_MASK);
			st->values++;
			return *out ? 0 : -ENOMEM;
		}
		olen = inlen + 64;
		for (int tries = 0; tries < 2; tries++) {
			free(buf);
			if (!(buf = malloc(olen + 1))) {
				rc = -ENOMEM;
				goto done;
			}
			m = pcre2_substitute(r->pat[i], (PCRE2_SPTR)in, inlen, 0,
					     PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH, md, r->mc,
					     (PCRE2_SPTR)REDACT_MASK, PCRE2_ZERO_TERMINATED, (PCRE2_UCHAR *)buf, &olen);
			if (m != PCRE2_ERROR_NOMEMORY)
				break;
		}
		if (m < 0) {
			free(cur);
			cur = NULL;
			free(buf);
			buf = NULL;
			*out = json_string(REDACT_MASK);
			st->values++;
			return *out ? 0 : -ENOMEM;
		}
		free(cur);
		cur = buf;
		buf = NULL;
		in = cur;
		inlen = olen;
	}
	if (cur) {
		st->values++;
		/* Replacing ASCII runs keeps UTF-8 valid; jansson checks it anyway. */
		if (!(*out = json_stringn(cur, inlen)) && !(*out = json_string(REDACT_MASK)))
			rc = -ENOMEM;
	}
done:
	free(cur);
	free(buf);
	return rc;
}

static int walk(const redact *r, pcre2_match_data *md, const json_t *v, unsigned depth, json_t **out, redact_stats *st)
{
	json_t *c = NULL, *x;
	const char *k;
	size_t i;
	int rc = 0;

	*out = NULL;
	if (depth > REDACT_MAX_DEPTH) {
		*out = json_string(REDACT_MASK);
		return *out ? 0 : -ENOMEM;
	}
	if (json_is_object(v)) {
		if (!(c = json_object()))
			return -ENOMEM;
		json_object_foreach ((json_t *)v, k, x) {
			json_t *nv = NULL;
			if (key_matches(r, k)) {
				st->keys++;
				nv = json_string(REDACT_MASK);
			} else if ((rc = walk(r, md, x, depth + 1, &nv, st)) < 0)
				goto done;
			if (!nv || json_object_set_new(c, k, nv) < 0) {
				rc = -ENOMEM;
				goto done;
			}
		}
	} else if (json_is_array(v)) {
		if (!(c = json_array()))
			return -ENOMEM;
		json_array_foreach (v, i, x) {
			json_t *nv = NULL;
			if ((rc = walk(r, md, x, depth + 1, &nv, st)) < 0)
				goto done;
			if (json_array_append_new(c, nv) < 0) {
				rc = -ENOMEM;
				goto done;
			}
		}
	} else if (json_is_string(v)) {
		if ((rc = redact_string(r, md, json_string_value(v), json_string_length(v), &c, st)) < 0)
			goto done;
		if (!c)
			c = json_incref((json_t *)v);
	} else {
		c = json_incref((json_t *)v); /* numbers, booleans and null carry no secret text */
	}
	*out = c;
	c = NULL;
done:
	json_decref(c);
	return rc;
}

/* Cuts at a UTF-8 character boundary at or before n. */
static size_t utf8_cut(const char *s, size_t n)
{
	while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
		n--;
	return n;
}

/* Takes an upper bound of v's compact JSON size from *left; false once it runs out. Strings count 6 bytes a
 * byte (\u00XX) plus quotes, a number 40 (jansson writes a real with %.17g and may add ".0"). Lets
 * truncate_to skip dumping a value that fits for sure: the audit dumps it again anyway. */
static bool fits(const json_t *v, unsigned depth, size_t *left)
{
	size_t need = 5, i;
	const char *k;
	json_t *x;

	if (depth > REDACT_MAX_DEPTH + 1)
		return false;
	if (json_is_string(v))
		need = 6 * json_string_length(v) + 2;
	else if (json_is_number(v))
		need = 40;
	else if (json_is_object(v) || json_is_array(v))
		need = 2;
	if (need > *left)
		return false;
	*left -= need;
	if (json_is_object(v)) {
		json_object_foreach ((json_t *)v, k, x) {
			size_t kn = 6 * strlen(k) + 4; /* "key": and a comma */
			if (kn > *left)
				return false;
			*left -= kn;
			if (!fits(x, depth + 1, left))
				return false;
		}
	} else if (json_is_array(v)) {
		json_array_foreach (v, i, x) {
			if (*left < 1 || (*left -= 1, !fits(x, depth + 1, left)))
				return false;
		}
	}
	return true;
}

static int truncate_to(const redact *r, json_t **v, redact_stats *st, bool want_bytes)
{
	char *s, *w = NULL;
	size_t n, head, left = r->max_bytes;
	json_t *wrap = NULL;
	int rc = -ENOMEM;

	if (!want_bytes && fits(*v, 0, &left))
		return 0;
	if (!(s = json_dumps(*v, JSON_COMPACT | JSON_ENCODE_ANY)))
		return -ENOMEM;
	n = strlen(s);
	st->bytes = n;
	if (n <= r->max_bytes) {
		rc = 0;
		goto done;
	}
	/* The head is JSON text inside a JSON string: its escapes grow it, so shrink until the wrapper fits. */
	head = r->max_bytes > 80 ? r->max_bytes - 80 : 0;
	for (;;) {
		head = utf8_cut(s, head);
		json_decref(wrap);
		free(w);
		w = NULL;
		if (!(wrap = json_pack("{s:b,s:I,s:s%}", "truncated", 1, "bytes", (json_int_t)n, "head", s, head)) ||
		    !(w = json_dumps(wrap, JSON_COMPACT)))
			goto done;
		if (strlen(w) <= r->max_bytes || head == 0)
			break;
		head -= (strlen(w) - r->max_bytes < head) ? strlen(w) - r->max_bytes : head;
	}
	json_decref(*v);
	*v = wrap;
	wrap = NULL;
	st->truncated = 1;
	rc = 0;
done:
	json_decref(wrap);
	free(w);
	free(s);
	return rc;
}

int redact_apply(const redact *r, const json_t *v, json_t **out, redact_stats *st)
{
	redact_stats local;
	pcre2_match_data *md = pcre2_match_data_create(8, NULL);
	json_t *c = NULL;
	bool want_bytes = st != NULL; /* st->bytes needs the exact size: the value is dumped */
	int rc = -ENOMEM;

	if (!st)
		st = &local;
	memset(st, 0, sizeof *st);
	*out = NULL;
	if (!md)
		goto done;
	if ((rc = walk(r, md, v, 0, &c, st)) < 0 || (rc = truncate_to(r, &c, st, want_bytes)) < 0)
		goto done;
	*out = c;
	c = NULL;
done:
	json_decref(c);
	pcre2_match_data_free(md);
	return rc;
}

int redact_apply_text(const redact *r, const json_t *v, char **out, size_t *len, redact_stats *st)
{
	json_t *c;
	int rc = redact_apply(r, v, &c, st);

	*out = NULL;
	if (rc < 0)
		return rc;
	*out = json_dumps(c, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(c);
	if (!*out)
		return -ENOMEM;
	if (len)
		*len = strlen(*out);
	return 0;
}
