#include "core/log.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/cfg.h"
#include "core/utf8.h"

static enum log_level g_level = LOG_INFO;
static const char *g_comp = "postern";
static enum log_format g_format = LOG_FMT_LOGFMT;

int log_level_parse(const char *s)
{
	static const char *names[] = { "debug", "info", "warn", "error", "off" };
	for (int i = 0; i < 5; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	if (strcmp(s, "warning") == 0)
		return LOG_WARN;
	return -EINVAL;
}

int log_format_parse(const char *s)
{
	if (strcmp(s, "logfmt") == 0)
		return LOG_FMT_LOGFMT;
	if (strcmp(s, "json") == 0)
		return LOG_FMT_JSON;
	return -EINVAL;
}

void log_set_format(enum log_format f) { g_format = f; }

int log_config_read(cfg_doc *d, struct fy_node *root, int *level, int *format)
{
	char *v = NULL;
	int rc, x;
	if ((rc = cfg_get_str(d, root, "log_level", &v)) < 0)
		return rc;
	if (v && (x = log_level_parse(v)) < 0)
		rc = cfg_fail(d, root, "log_level", "'%s' is not one of debug, info, warn, error, off", v);
	else if (v)
		*level = x;
	free(v);
	v = NULL;
	if (rc < 0 || (rc = cfg_get_str(d, root, "log_format", &v)) < 0)
		return rc;
	if (v && (x = log_format_parse(v)) < 0)
		rc = cfg_fail(d, root, "log_format", "'%s' is not one of logfmt, json", v);
	else if (v)
		*format = x;
	free(v);
	return rc < 0 ? rc : 0;
}

void log_set_level(enum log_level lvl) { g_level = lvl; }
enum log_level log_get_level(void) { return g_level; }
void log_set_component(const char *comp) { g_comp = comp; }

/* ---- JSON lines, derived from the logfmt fragment ------------------------------------------------------ */

/* A JSON string of v; bytes that are not UTF-8 (a peer's bytes can be anything) become \xNN text. */
static json_t *jstr(const char *v, size_t n)
{
	json_t *j = json_stringn(v, n);
	char *t;
	size_t o = 0;
	if (j || !(t = malloc(n * 4 + 1)))
		return j;
	for (size_t i = 0; i < n;) {
		size_t l = utf8_seq_len((const unsigned char *)v + i, n - i);
		if (l) {
			memcpy(t + o, v + i, l);
			o += l;
			i += l;
		} else
			o += (size_t)snprintf(t + o, 5, "\\x%02x", (unsigned char)v[i++]);
	}
	j = json_stringn(t, o);
	free(t);
	return j;
}

/* A bare value that is a plain decimal number is a JSON number; everything else a string. */
static json_t *jbare(const char *v, size_t n)
{
	char num[64], *end;
	bool digits = n > 0 && n < sizeof num;
	for (size_t i = 0; digits && i < n; i++)
		digits = (v[i] >= '0' && v[i] <= '9') || v[i] == '.' || (v[i] == '-' && i == 0);
	if (digits) {
		memcpy(num, v, n);
		num[n] = 0;
		if (!strchr(num, '.')) {
			long long x = strtoll(num, &end, 10);
			if (*end == 0 && end != num)
				return json_integer(x);
		} else {
			double x = strtod(num, &end);
			if (*end == 0 && end != num && isfinite(x))
				return json_real(x);
		}
	}
	return jstr(v, n);
}

/* Parses our own logfmt fragment (key=bare or key="quoted with \\ \" \xNN") into o. false when the
 * fragment is not well formed, which only a caller that did not quote a value can cause. */
static bool frag_to_json(const char *p, json_t *o)
{
	char *val = malloc(strlen(p) + 1);
	bool ok = val != NULL;
	while (ok && *p) {
		const char *k = p;
		size_t kn, vn = 0;
		char key[64];
		json_t *j;
		if (*p == ' ') {
			p++;
			continue;
		}
		while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
		       *p == '.' || *p == '-')
			p++;
		kn = (size_t)(p - k);
		if (kn == 0 || kn >= sizeof key || *p != '=') {
			ok = false;
			break;
		}
		memcpy(key, k, kn);
		key[kn] = 0;
		p++;
		if (*p == '"') {
			for (p++; *p && *p != '"'; p++) {
				unsigned x;
				if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
					val[vn++] = *++p;
				else if (*p == '\\' && p[1] == 'x' && sscanf(p + 2, "%2x", &x) == 1) {
					val[vn++] = (char)x;
					p += 3;
				} else
					val[vn++] = *p;
			}
			if (*p != '"') {
				ok = false;
				break;
			}
			p++;
			j = jstr(val, vn);
		} else {
			const char *v = p;
			/* A bare value is a token: a quote, an '=' or a control byte in it means an unquoted value. */
			while (*p && *p != ' ' && *p != '"' && *p != '=' && (unsigned char)*p >= 0x20)
				p++;
			j = jbare(v, (size_t)(p - v));
		}
		if (*p && *p != ' ') {
			json_decref(j);
			ok = false;
			break;
		}
		if (!j || json_object_set_new(o, key, j) < 0)
			ok = false;
	}
	free(val);
	return ok;
}

/* Writes one JSON line for a formatted logfmt line (time= level= comp= then the fragment). */
static void emit_json(const char *when, const char *level, const char *frag)
{
	json_t *o = json_object();
	char *s = NULL;
	size_t n;
	if (!o)
		return;
	json_object_set_new(o, "time", json_string(when));
	json_object_set_new(o, "level", json_string(level));
	json_object_set_new(o, "comp", json_string(g_comp));
	if (!frag_to_json(frag, o)) {
		/* Keep the event rather than lose it; the raw text says which caller forgot to quote. */
		json_t *r = json_object();
		if (r) {
			json_object_set(r, "time", json_object_get(o, "time"));
			json_object_set(r, "level", json_object_get(o, "level"));
			json_object_set(r, "comp", json_object_get(o, "comp"));
			json_object_set_new(r, "msg", json_string("log line not in key=value form"));
			json_object_set_new(r, "raw", jstr(frag, strlen(frag)));
		}
		json_decref(o);
		o = r;
	}
	/* 10 significant digits: duration_ms=15.8 stays 15.8, not 15.800000000000001 */
	if (o && (s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10))) != NULL) {
		n = strlen(s);
		s[n] = '\n'; /* json_dumps's NUL becomes the newline: one write per event */
		if (write(STDERR_FILENO, s, n + 1) < 0) {
			/* nothing to do: stderr is gone */
		}
	}
	free(s);
	json_decref(o);
}

void log_emit(enum log_level lvl, const char *fmt, ...)
{
	static const char *names[] = { "debug", "info", "warn", "error" };
	char line[2048];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	int n, m, head;

	if (lvl < g_level || lvl >= LOG_OFF)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = snprintf(line, sizeof line, "time=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s comp=%s ",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		     ts.tv_nsec / 1000000, names[lvl], g_comp);
	head = n;
	va_start(ap, fmt);
	m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	va_end(ap);
	/* One event is one line: a too-long line is cut, never split. */
	if (m < 0)
		m = 0;
	n += m;
	if ((size_t)n > sizeof line - 2)
		n = sizeof line - 2;
	for (int i = 0; i < n; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	if (g_format == LOG_FMT_JSON) {
		char when[32];
		/* the timestamp as the logfmt head wrote it: "time=" then 24 characters */
		memcpy(when, line + 5, 24);
		when[24] = 0;
		line[n] = 0;
		emit_json(when, names[lvl], line + (head < n ? head : n));
		return;
	}
	line[n++] = '\n';
	/* A single write keeps lines from concurrent processes whole. */
	if (write(STDERR_FILENO, line, (size_t)n) < 0)
		return;
}

const char *log_quote(const char *s, char *out, size_t outlen)
{
	size_t o = 0;
	if (outlen < 8) {
		if (outlen)
			out[0] = 0;
		return out;
	}
	out[o++] = '"';
	for (; s && *s && o + 6 < outlen; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
		} else {
			out[o++] = (char)c;
		}
	}
	out[o++] = '"';
	out[o] = 0;
	return out;
}
