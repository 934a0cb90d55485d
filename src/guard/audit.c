/* Audit lines and their hash chain; the verifier that names the first removed, inserted or edited line. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cbuf.h"
#include "core/hex.h"
#include "core/utf8.h"
#include "guard/audit.h"

struct aud_chain {
	char prev[AUD_HEX_LEN + 1];
	uint64_t seq;
};

/* SHA-256 is fetched once: EVP_sha256() in EVP_Digest looks the algorithm up again on every line, and that
 * lookup cost more than hashing a line. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;
static void sha256_fetch(void) { sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL); }

static void sha256_hex(const char *p, size_t n, char out[AUD_HEX_LEN + 1])
{
	unsigned char md[32];
	unsigned len = 0;
	pthread_once(&sha256_once, sha256_fetch);
	EVP_Digest(p, n, md, &len, sha256_md ? sha256_md : EVP_sha256(), NULL);
	hex_encode(md, sizeof md, out);
}

static bool hex64(const char *h)
{
	size_t i;
	for (i = 0; h && i < AUD_HEX_LEN; i++)
		if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
			return false;
	return h && !h[i];
}

int aud_chain_new(aud_chain **out)
{
	aud_chain *c = calloc(1, sizeof *c);
	*out = c;
	if (!c)
		return -ENOMEM;
	memcpy(c->prev, AUD_GENESIS, sizeof c->prev);
	return 0;
}

void aud_chain_free(aud_chain *c) { free(c); }
const char *aud_chain_prev(const aud_chain *c) { return c->prev; }
uint64_t aud_chain_seq(const aud_chain *c) { return c->seq; }

/* prev and seq of one line; 0 or -EINVAL. */
static int line_fields(const char *p, size_t n, char prev[AUD_HEX_LEN + 1], uint64_t *seq)
{
	json_t *o = json_loadb(p, n, JSON_REJECT_DUPLICATES, NULL);
	const char *h = json_string_value(json_object_get(o, "prev"));
	json_t *s = json_object_get(o, "seq");
	int rc = -EINVAL;

	if (json_is_object(o) && hex64(h) && json_is_integer(s) && json_integer_value(s) >= 0) {
		memcpy(prev, h, AUD_HEX_LEN + 1);
		*seq = (uint64_t)json_integer_value(s);
		rc = 0;
	}
	json_decref(o);
	return rc;
}

int aud_chain_resume(aud_chain *c, const char *tail, size_t len, size_t *keep)
{
	size_t end = len, start;
	char prev[AUD_HEX_LEN + 1];
	uint64_t seq;

	while (end > 0 && tail[end - 1] != '\n')
		end--;
	*keep = end; /* what follows the last newline was cut by a crash */
	if (end == 0)
		return 0;
	start = end - 1;
	while (start > 0 && tail[start - 1] != '\n')
		start--;
	if (line_fields(tail + start, end - 1 - start, prev, &seq) < 0)
		return -EINVAL;
	sha256_hex(tail + start, end - 1 - start, c->prev);
	c->seq = seq + 1;
	return 0;
}

/* The days since 1970-01-01 as a proleptic Gregorian date (Howard Hinnant's days_from_civil, inverted). */
static void civil(int64_t days, int64_t *y, unsigned *m, unsigned *d)
{
	int64_t z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
	*d = doy - (153 * mp + 2) / 5 + 1;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static char *digits(char *o, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--, v /= 10)
		o[i] = (char)('0' + v % 10);
	return o + n;
}

/* YYYY-MM-DDTHH:MM:SS.uuuuuuZ by hand: gmtime_r, strftime and snprintf took ~3k instructions a line. The unit
 * test compares it with strftime. Years past 9999 do not occur (int64 microseconds end in 294247). */
static void fmt_ts(int64_t us, char out[40])
{
	int64_t s, y;
	unsigned m, d, sod;
	char *o = out;
	if (us < 0)
		us = 0;
	s = us / 1000000;
	sod = (unsigned)(s % 86400);
	civil(s / 86400, &y, &m, &d);
	if (y > 9999) {
		snprintf(out, 40, "%" PRId64 "-%02u-%02uT%02u:%02u:%02u.%06" PRId64 "Z", y, m, d, sod / 3600,
			 sod / 60 % 60, sod % 60, us % 1000000);
		return;
	}
	o = digits(o, (uint64_t)y, 4);
	*o++ = '-';
	o = digits(o, m, 2);
	*o++ = '-';
	o = digits(o, d, 2);
	*o++ = 'T';
	o = digits(o, sod / 3600, 2);
	*o++ = ':';
	o = digits(o, sod / 60 % 60, 2);
	*o++ = ':';
	o = digits(o, sod % 60, 2);
	*o++ = '.';
	o = digits(o, (uint64_t)(us % 1000000), 6);
	*o++ = 'Z';
	*o = 0;
}

/* The line is written straight into one buffer rather than built as a jansson object and dumped: that took
 * two thirds of the guard's instructions per call. The bytes are the ones json_dumps(JSON_COMPACT) wrote
 * (the unit test compares the two): keys in this order, strings escaped as jansson escapes them. */
typedef struct lw {
	cbuf b;
	int rc;
} lw;

static void put(lw *w, const void *p, size_t n)
{
	if (w->rc == 0)
		w->rc = cbuf_append(&w->b, p, n);
}

/* jansson's compact escaping: \" \\ \b \f \n \r \t, other controls as \u00XX (upper-case hex), everything else
 * (UTF-8 too, and '/') as it is. Text that is not UTF-8 is refused, as json_string() refused it. Written in
 * place into room for the worst case (6 bytes a byte), or, when that room would pass the line's cap, run by
 * run. Returns the bytes written to o, or -1 (not UTF-8). */
static long escape(const unsigned char *p, size_t n, char *o, lw *w)
{
	static const char xd[] = "0123456789ABCDEF";
	size_t i = 0, run = 0, k = 0;

	while (i < n) {
		unsigned char c = p[i];
		size_t sl = 1;
		char esc[7] = "\\u00";
		const char *named;
		if (c >= 0x80) {
			if (!(sl = utf8_seq_len(p + i, n - i)))
				return -1; /* -1: not UTF-8 */
		} else if (c != '"' && c != '\\' && c >= 0x20) {
			;
		} else {
			if (c == '"' || c == '\\')
				esc[1] = (char)c, esc[2] = 0;
			else if ((named = strchr("\b\f\n\r\t", c)))
				esc[1] = "bfnrt"[named - "\b\f\n\r\t"], esc[2] = 0;
			else
				esc[4] = xd[c >> 4], esc[5] = xd[c & 15], esc[6] = 0;
			if (o) {
				memcpy(o + k, p + i - run, run);
				k += run;
				memcpy(o + k, esc, strlen(esc));
				k += strlen(esc);
			} else {
				put(w, p + i - run, run);
				put(w, esc, strlen(esc));
			}
			run = 0;
			i++;
			continue;
		}
		i += sl, run += sl;
	}
	if (o) {
		memcpy(o + k, p + i - run, run);
		k += run;
	} else {
		put(w, p + i - run, run);
	}
	return (long)k;
}

static void put_str(lw *w, const char *s)
{
	size_t n = strlen(s);
	uint8_t *at;
	long k;

	if (w->rc)
		return;
	if (cbuf_reserve(&w->b, 6 * n + 2, &at) == 0) {
		at[0] = '"';
		if ((k = escape((const unsigned char *)s, n, (char *)at + 1, w)) < 0) {
			w->rc = -EINVAL;
			return;
		}
		at[k + 1] = '"';
		cbuf_commit(&w->b, (size_t)k + 2);
		return;
	}
	put(w, "\"", 1);
	if (escape((const unsigned char *)s, n, NULL, w) < 0 && w->rc == 0)
		w->rc = -EINVAL;
	put(w, "\"", 1);
}

static void put_key(lw *w, const char *k)
{
	char b[40];
	size_t n = strlen(k);
	b[0] = ',', b[1] = '"';
	memcpy(b + 2, k, n); /* the keys are this file's own, all short */
	b[n + 2] = '"', b[n + 3] = ':';
	put(w, b, n + 4);
}

static void put_field(lw *w, const char *k, const char *v)
{
	if (!v)
		return;
	put_key(w, k);
	put_str(w, v);
}

static void put_int(lw *w, const char *k, int64_t v)
{
	char d[24], *q = d + sizeof d;
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
	do
		*--q = (char)('0' + u % 10);
	while (u /= 10);
	if (v < 0)
		*--q = '-';
	put_key(w, k);
	put(w, q, (size_t)(d + sizeof d - q));
}

static int dump_cb(const char *buf, size_t size, void *data)
{
	lw *w = data;
	put(w, buf, size);
	return w->rc;
}

static void put_json(lw *w, const char *k, const json_t *v)
{
	put_key(w, k);
	if (w->rc == 0 && json_dump_callback(v, dump_cb, w, JSON_COMPACT | JSON_ENCODE_ANY) < 0 && w->rc == 0)
		w->rc = -EINVAL; /* jansson refused it (a string that is not UTF-8) */
}

/* An id that is a JSON integer in the form jansson writes it (no sign but '-', no leading zero, at most 18
 * digits: inside int64) goes into the line as it is, without a parse and a dump. */
static bool plain_int(const char *id)
{
	size_t i = id[0] == '-', n;
	for (n = 0; id[i + n] >= '0' && id[i + n] <= '9'; n++)
		;
	return n >= 1 && n <= 18 && !id[i + n] && (id[i] != '0' || n == 1) && strcmp(id, "-0");
}

int aud_line(aud_chain *c, const aud_rec *r, char **line, size_t *len)
{
	json_t *id = NULL;
	char ts[40], *l = NULL;
	lw w = { .b = CBUF_INIT(1024, AUD_MAX_LINE) };
	size_t n;
	int rc = -ENOMEM;

	*line = NULL;
	if (r->id && !plain_int(r->id) && !(id = json_loads(r->id, JSON_DECODE_ANY, NULL))) {
		rc = -EINVAL;
		goto done;
	}
	fmt_ts(r->ts_us, ts);
	/* A fixed order, so that lines diff and grep well; prev and seq first. */
	put(&w, "{\"prev\":\"", 9);
	put(&w, c->prev, AUD_HEX_LEN);
	put(&w, "\"", 1);
	put_int(&w, "seq", (int64_t)c->seq);
	put_field(&w, "ts", ts);
	put_field(&w, "dir", r->dir);
	put_field(&w, "trace_id", r->trace_id);
	put_field(&w, "span_id", r->span_id);
	put_field(&w, "parent_span_id", r->parent_span_id);
	put_field(&w, "route", r->route);
	put_field(&w, "client", r->client);
	put_field(&w, "client_addr", r->client_addr);
	put_field(&w, "session", r->session);
	put_field(&w, "protocol", r->protocol);
	put_field(&w, "method", r->method);
	if (id) {
		put_json(&w, "id", id);
	} else if (r->id) {
		put_key(&w, "id");
		put(&w, r->id, strlen(r->id));
	}
	put_field(&w, "tool", r->tool);
	put_field(&w, "tool_hash", r->tool_hash);
	put_field(&w, "decision", r->decision);
	put_field(&w, "rule", r->rule);
	put_field(&w, "policy_rev", r->policy_rev);
	put_field(&w, "approval", r->approval);
	put_field(&w, "approver", r->approver);
	if (r->args)
		put_json(&w, "args", r->args);
	put_field(&w, "status", r->status);
	if (r->has_rpc_code)
		put_int(&w, "rpc_code", r->rpc_code);
	if (r->http_status)
		put_int(&w, "http_status", r->http_status);
	if (r->latency_us >= 0)
		put_int(&w, "latency_us", r->latency_us);
	put_int(&w, "bytes_in", (int64_t)r->bytes_in);
	put_int(&w, "bytes_out", (int64_t)r->bytes_out);
	put(&w, "}", 1);
	/* over the cap: -EMSGSIZE; text jansson would not take (not UTF-8): -ENOMEM, what the object builder
	 * returned for it */
	if (w.rc < 0) {
		rc = w.rc == -ENOBUFS ? -EMSGSIZE : w.rc == -EINVAL ? -ENOMEM : w.rc;
		goto done;
	}
	n = w.b.len;
	if (n >= AUD_MAX_LINE) {
		rc = -EMSGSIZE;
		goto done;
	}
	if (!(l = malloc(n + 2)))
		goto done;
	memcpy(l, cbuf_data(&w.b), n);
	l[n] = '\n';
	l[n + 1] = 0;
	sha256_hex(l, n, c->prev);
	c->seq++;
	*line = l;
	if (len)
		*len = n + 1;
	l = NULL;
	rc = 0;
done:
	free(l);
	cbuf_free(&w.b);
	json_decref(id);
	return rc;
}

/* ---- verifier ---- */

struct aud_verify {
	bool partial;
	aud_report rep;
	char *buf; /* the current partial line */
	size_t len, cap;
	char file[256];
	unsigned long lineno;
	/* the two previous lines: their hashes, seq and place */
	uint64_t n;
	char h1[AUD_HEX_LEN + 1], h2[AUD_HEX_LEN + 1];
	uint64_t seq1;
	char file1[256];
	unsigned long line1;
};

int aud_verify_new(bool partial, aud_verify **out)
{
	aud_verify *v = calloc(1, sizeof *v);
	*out = v;
	if (!v)
		return -ENOMEM;
	v->partial = partial;
	v->rep.ok = true;
	return 0;
}

void aud_verify_free(aud_verify *v)
{
	if (!v)
		return;
	free(v->buf);
	free(v);
}

static void brk(aud_verify *v, const char *file, unsigned long line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void brk(aud_verify *v, const char *file, unsigned long line, const char *fmt, ...)
{
	va_list ap;
	v->rep.ok = false;
	snprintf(v->rep.file, sizeof v->rep.file, "%s", file);
	v->rep.line = line;
	va_start(ap, fmt);
	vsnprintf(v->rep.what, sizeof v->rep.what, fmt, ap);
	va_end(ap);
}

static void check_line(aud_verify *v, const char *p, size_t n)
{
	char prev[AUD_HEX_LEN + 1], h[AUD_HEX_LEN + 1];
	uint64_t seq;
	const char *f = v->file;
	unsigned long ln = v->lineno;

	v->rep.lines++;
	if (line_fields(p, n, prev, &seq) < 0) {
		brk(v, f, ln, "edited: not an audit record (not JSON, or no prev and seq)");
		return;
	}
	sha256_hex(p, n, h);
	if (v->n == 0) {
		v->rep.first_seq = seq;
		v->rep.from_genesis = seq == 0;
		if (seq == 0 && CRYPTO_memcmp(prev, AUD_GENESIS, AUD_HEX_LEN))
			brk(v, f, ln, "edited: the first record (seq 0) does not start from the genesis value");
		else if (seq != 0 && !v->partial)
			brk(v, f, ln, "removed: the chain starts at seq %" PRIu64 ", not 0: %" PRIu64
				      " earlier record(s) missing (--partial if older files were rotated away)",
			    seq, seq);
	} else if (!CRYPTO_memcmp(prev, v->h1, AUD_HEX_LEN)) {
		if (seq != v->seq1 + 1)
			brk(v, f, ln, "edited: seq %" PRIu64 " after %" PRIu64 " although prev matches", seq, v->seq1);
	} else if (v->n >= 2 && !CRYPTO_memcmp(prev, v->h2, AUD_HEX_LEN)) {
		brk(v, v->file1, v->line1, "inserted: this line is not in the chain (the next line, %s:%lu, follows "
			  "the line before it)", f, ln);
	} else if (seq > v->seq1 + 1) {
		brk(v, f, ln, "removed: %" PRIu64 " record(s) missing before this line (seq %" PRIu64 " to %" PRIu64 ")",
		    seq - v->seq1 - 1, v->seq1, seq);
	} else if (seq == v->seq1 + 1) {
		brk(v, v->file1, v->line1, "edited: this line does not hash to the prev of the next line (%s:%lu)", f,
		    ln);
	} else {
		brk(v, f, ln, "inserted: seq %" PRIu64 " does not follow %" PRIu64 " and prev matches no line before",
		    seq, v->seq1);
	}
	v->rep.last_seq = seq;
	memcpy(v->h2, v->h1, sizeof v->h2);
	memcpy(v->h1, h, sizeof v->h1);
	v->seq1 = seq;
	snprintf(v->file1, sizeof v->file1, "%s", f);
	v->line1 = ln;
	v->n++;
}

int aud_verify_feed(aud_verify *v, const char *file, const char *buf, size_t len)
{
	if (strcmp(v->file, file)) {
		snprintf(v->file, sizeof v->file, "%s", file);
		v->lineno = 0;
		v->len = 0;
	}
	while (len && v->rep.ok) {
		const char *nl = memchr(buf, '\n', len);
		size_t take = nl ? (size_t)(nl - buf) : len;
		if (v->len + take >= AUD_MAX_LINE) {
			brk(v, v->file, v->lineno + 1, "edited: line over %u bytes", AUD_MAX_LINE);
			break;
		}
		if (v->len + take > v->cap) {
			size_t cap = v->cap ? v->cap : 4096;
			char *nb;
			while (cap < v->len + take)
				cap *= 2;
			if (!(nb = realloc(v->buf, cap)))
				return -ENOMEM;
			v->buf = nb;
			v->cap = cap;
		}
		if (take) /* an empty line: nothing to keep (and v->buf may still be NULL) */
			memcpy(v->buf + v->len, buf, take);
		v->len += take;
		if (!nl)
			break;
		v->lineno++;
		check_line(v, v->buf, v->len);
		v->len = 0;
		buf = nl + 1;
		len -= take + 1;
	}
	return 0;
}

int aud_verify_end_file(aud_verify *v)
{
	if (v->rep.ok && v->len)
		brk(v, v->file, v->lineno + 1, "incomplete: the last line has no newline (cut by a crash?)");
	v->len = 0;
	v->file[0] = 0;
	return 0;
}

int aud_verify_file(aud_verify *v, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char buf[65536];
	size_t n;
	int rc = 0;

	if (!f) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		return rc;
	}
	while (rc == 0 && (n = fread(buf, 1, sizeof buf, f)) > 0)
		rc = aud_verify_feed(v, path, buf, n);
	if (rc == 0 && ferror(f))
		rc = -EIO;
	if (rc < 0)
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
	else
		aud_verify_end_file(v);
	fclose(f);
	return rc;
}

void aud_verify_report(const aud_verify *v, aud_report *r)
{
	*r = v->rep;
}
