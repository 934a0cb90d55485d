#include "core/cfg.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <libfyaml.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/utf8.h"

struct cfg_doc {
	struct fy_document *fyd;
	char *path;
	char err[512];
	/* Warnings: things that may be intended (postern check prints them, daemons log them). Capped: the
	 * ones past CFG_WARN_MAX are counted, not kept. */
	char *warn[CFG_WARN_MAX];
	size_t nwarn, warn_dropped;
};

static cfg_doc *load(const char *name, const char *path, const char *yaml, size_t len, char *err, size_t errlen)
{
	struct fy_diag_cfg dcfg;
	struct fy_diag *diag = NULL;
	struct fy_parse_cfg pcfg;
	cfg_doc *d = NULL;
	void *it = NULL;
	struct fy_diag_error *de;

	fy_diag_cfg_default(&dcfg);
	dcfg.fp = NULL;
	dcfg.colorize = false;
	diag = fy_diag_create(&dcfg);
	if (!diag) {
		snprintf(err, errlen, "%s: out of memory", name);
		goto out;
	}
	fy_diag_set_collect_errors(diag, true);
	memset(&pcfg, 0, sizeof pcfg);
	pcfg.flags = FYPCF_QUIET | FYPCF_COLLECT_DIAG;
	pcfg.diag = diag;
	d = calloc(1, sizeof *d);
	if (!d || !(d->path = strdup(name))) {
		snprintf(err, errlen, "%s: out of memory", name);
		goto fail;
	}
	if (path)
		d->fyd = fy_document_build_from_file(&pcfg, path);
	else
		d->fyd = fy_document_build_from_string(&pcfg, yaml, len);
	/* (fy_document_get_diag would take a reference we would have to drop: not needed here.) */
	if (!d->fyd || !fy_document_root(d->fyd)) {
		de = fy_diag_errors_iterate(diag, &it);
		if (de)
			snprintf(err, errlen, "%s:%d:%d: %s", name, de->line + 1, de->column + 1, de->msg);
		else
			/* No parse error and no document: nothing but blanks or comments (cfg_load has opened the
			 * file and checked it is a regular file, so errno here is stale and says nothing). */
			snprintf(err, errlen, "%s: the file is empty: a config is a mapping of keys", name);
		goto fail;
	}
	goto out;
fail:
	if (d) {
		if (d->fyd)
			fy_document_destroy(d->fyd);
		free(d->path);
		free(d);
		d = NULL;
	}
out:
	if (diag)
		fy_diag_destroy(diag); /* unlike unref, also frees the collected errors */
	return d;
}

/* What a postern config may hold, checked before libfyaml sees it: postern's configs are a small subset of
 * YAML (mappings, sequences, scalars, comments), and libfyaml 0.7.12 crashes on some explicit-key ("? ")
 * inputs, loops on a directive line holding a NUL and leaks on invalid UTF-8 in a quoted scalar (found by
 * fuzzing). So: at most CFG_MAX_BYTES, UTF-8, no NUL or other control byte but tab/CR/LF, no "%" directive
 * lines, no "? " explicit keys. Each refusal names the line. */
#define CFG_MAX_BYTES (1u << 20)

static int subset_check(const char *name, const char *s, size_t n, char *err, size_t errlen)
{
	size_t line = 1, ls = 0; /* ls: where the current line starts */
	bool lead = true;          /* only blanks so far on this line */
	if (n > CFG_MAX_BYTES) {
		snprintf(err, errlen, "%s: larger than %u bytes: not a postern config", name, CFG_MAX_BYTES);
		return -EFBIG;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\n') {
			line++;
			ls = i + 1;
			lead = true;
			continue;
		}
		if (c == 0 || (c < 0x20 && c != '\t' && c != '\r') || c == 0x7f) {
			snprintf(err, errlen, "%s:%zu: a control byte (0x%02x): a config is UTF-8 text", name, line, c);
			return -EINVAL;
		}
		if (c >= 0x80) {
			size_t len = utf8_seq_len((const unsigned char *)s + i, n - i);
			if (!len) {
				snprintf(err, errlen, "%s:%zu: bytes that are not UTF-8: a config is UTF-8 text", name, line);
				return -EINVAL;
			}
			i += len - 1;
			lead = false;
			continue;
		}
		if (c == '%' && i == ls) {
			snprintf(err, errlen, "%s:%zu: YAML directives (%%YAML, %%TAG) are not used in postern configs", name, line);
			return -EINVAL;
		}
		if (lead && c == '?' && (i + 1 == n || s[i + 1] == ' ' || s[i + 1] == '\t' || s[i + 1] == '\n' ||
					 s[i + 1] == '\r')) {
			snprintf(err, errlen, "%s:%zu: explicit '? ' keys are not used in postern configs: write key: value",
				 name, line);
			return -EINVAL;
		}
		if (c != ' ' && c != '\t' && c != '-')
			lead = false;
	}
	return 0;
}

cfg_doc *cfg_load(const char *path, char *err, size_t errlen)
{
	struct stat st;
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	/* fopen("r") succeeds on a directory or a FIFO; name the problem instead of a read error. */
	if (fstat(fileno(f), &st) == 0 && !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file (%s)", path, S_ISDIR(st.st_mode) ? "a directory" : "a special file");
		fclose(f);
		return NULL;
	}
	{
		char *text = malloc(CFG_MAX_BYTES + 1);
		size_t n = text ? fread(text, 1, CFG_MAX_BYTES + 1, f) : 0;
		int bad = !text ? -ENOMEM : ferror(f) ? -EIO : subset_check(path, text, n, err, errlen);
		free(text);
		fclose(f);
		if (bad == -ENOMEM || bad == -EIO) {
			snprintf(err, errlen, "%s: %s", path, bad == -EIO ? "read error" : "out of memory");
			return NULL;
		}
		if (bad < 0)
			return NULL;
	}
	return load(path, path, NULL, 0, err, errlen);
}

cfg_doc *cfg_load_string(const char *name, const char *yaml, size_t len, char *err, size_t errlen)
{
	if (subset_check(name, yaml, len, err, errlen) < 0)
		return NULL;
	return load(name, NULL, yaml, len, err, errlen);
}

void cfg_free(cfg_doc *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->nwarn; i++)
		free(d->warn[i]);
	fy_document_destroy(d->fyd);
	free(d->path);
	free(d);
}

cfg_node *cfg_root(cfg_doc *d) { return fy_document_root(d->fyd); }
const char *cfg_path(const cfg_doc *d) { return d->path; }
const char *cfg_error(const cfg_doc *d) { return d->err[0] ? d->err : NULL; }
bool cfg_is_map(cfg_node *n) { return n && fy_node_get_type(n) == FYNT_MAPPING; }

int cfg_node_line(cfg_node *n)
{
	struct fy_token *t;
	const struct fy_mark *m;
	if (!n || fy_node_get_type(n) != FYNT_SCALAR)
		return 0;
	t = fy_node_get_scalar_token(n);
	m = t ? fy_token_start_mark(t) : NULL;
	return m ? m->line + 1 : 0;
}

static struct fy_node_pair *find_pair(cfg_node *map, const char *key)
{
	void *it = NULL;
	struct fy_node_pair *p;
	if (!cfg_is_map(map))
		return NULL;
	while ((p = fy_node_mapping_iterate(map, &it))) {
		const char *k = fy_node_get_scalar0(fy_node_pair_key(p));
		if (k && strcmp(k, key) == 0)
			return p;
	}
	return NULL;
}

int cfg_key_line(cfg_node *map, const char *key)
{
	struct fy_node_pair *p = find_pair(map, key);
	return p ? cfg_node_line(fy_node_pair_key(p)) : 0;
}

int cfg_fail(cfg_doc *d, cfg_node *map, const char *key, const char *fmt, ...)
{
	char msg[384];
	va_list ap;
	int line = key ? cfg_key_line(map, key) : cfg_node_line(map);

	if (d->err[0])
		return -EINVAL; /* keep the first error: later ones are often consequences */
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (line && key)
		snprintf(d->err, sizeof d->err, "%s:%d: %s: %s", d->path, line, key, msg);
	else if (line)
		snprintf(d->err, sizeof d->err, "%s:%d: %s", d->path, line, msg);
	else if (key)
		snprintf(d->err, sizeof d->err, "%s: %s: %s", d->path, key, msg);
	else
		snprintf(d->err, sizeof d->err, "%s: %s", d->path, msg);
	return -EINVAL;
}

int cfg_warn(cfg_doc *d, cfg_node *map, const char *key, const char *fmt, ...)
{
	char msg[384], line_s[640];
	va_list ap;
	int line = key ? cfg_key_line(map, key) : cfg_node_line(map);

	if (d->nwarn == CFG_WARN_MAX) {
		d->warn_dropped++;
		return 0;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (line && key)
		snprintf(line_s, sizeof line_s, "%s:%d: %s: %s", d->path, line, key, msg);
	else if (line)
		snprintf(line_s, sizeof line_s, "%s:%d: %s", d->path, line, msg);
	else if (key)
		snprintf(line_s, sizeof line_s, "%s: %s: %s", d->path, key, msg);
	else
		snprintf(line_s, sizeof line_s, "%s: %s", d->path, msg);
	if (!(d->warn[d->nwarn] = strdup(line_s))) {
		d->warn_dropped++;
		return 0;
	}
	d->nwarn++;
	return 0;
}

size_t cfg_warning_count(const cfg_doc *d) { return d->nwarn; }
const char *cfg_warning(const cfg_doc *d, size_t i) { return i < d->nwarn ? d->warn[i] : NULL; }
size_t cfg_warnings_dropped(const cfg_doc *d) { return d->warn_dropped; }

int cfg_fail_line(cfg_doc *d, int line, const char *fmt, ...)
{
	char msg[384];
	va_list ap;

	if (d->err[0])
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (line)
		snprintf(d->err, sizeof d->err, "%s:%d: %s", d->path, line, msg);
	else
		snprintf(d->err, sizeof d->err, "%s: %s", d->path, msg);
	return -EINVAL;
}

int cfg_check_keys(cfg_doc *d, cfg_node *map, const char *where, const char *const *allowed)
{
	void *it = NULL;
	struct fy_node_pair *p;
	if (!cfg_is_map(map))
		return cfg_fail(d, map, NULL, "%s must be a mapping", where);
	while ((p = fy_node_mapping_iterate(map, &it))) {
		const char *k = fy_node_get_scalar0(fy_node_pair_key(p));
		bool ok = false;
		for (size_t i = 0; k && allowed[i]; i++)
			if (strcmp(k, allowed[i]) == 0)
				ok = true;
		if (!ok)
			return cfg_fail(d, fy_node_pair_key(p), NULL, "unknown key '%s' in %s", k ? k : "?", where);
	}
	return 0;
}

cfg_node *cfg_get(cfg_node *map, const char *key)
{
	struct fy_node_pair *p = find_pair(map, key);
	return p ? fy_node_pair_value(p) : NULL;
}

const char *cfg_scalar(cfg_node *n)
{
	if (!n || fy_node_get_type(n) != FYNT_SCALAR)
		return NULL;
	return fy_node_get_scalar0(n);
}

int cfg_map_next(cfg_node *map, void **iter, const char **key, cfg_node **val)
{
	struct fy_node_pair *p = cfg_is_map(map) ? fy_node_mapping_iterate(map, iter) : NULL;
	if (!p)
		return 0;
	*key = fy_node_get_scalar0(fy_node_pair_key(p));
	if (!*key)
		*key = "";
	*val = fy_node_pair_value(p);
	return 1;
}

static int get_scalar(cfg_doc *d, cfg_node *map, const char *key, const char **s)
{
	cfg_node *n;
	if (!find_pair(map, key))
		return 1;
	n = cfg_get(map, key);
	/* "key:" with nothing after it is null: treat as absent. */
	if (!n)
		return 1;
	*s = cfg_scalar(n);
	if (!*s)
		return cfg_fail(d, map, key, "expected a single value, not a list or mapping");
	return 0;
}

int cfg_get_map(cfg_doc *d, cfg_node *map, const char *key, cfg_node **out)
{
	cfg_node *n = cfg_get(map, key);
	if (!n)
		return 1;
	if (!cfg_is_map(n))
		return cfg_fail(d, map, key, "expected a mapping");
	*out = n;
	return 0;
}

int cfg_get_str(cfg_doc *d, cfg_node *map, const char *key, char **out)
{
	const char *s;
	int rc = get_scalar(d, map, key, &s);
	char *c;
	if (rc)
		return rc;
	c = strdup(s);
	if (!c)
		return -ENOMEM;
	free(*out);
	*out = c;
	return 0;
}

int cfg_get_int(cfg_doc *d, cfg_node *map, const char *key, int64_t min, int64_t max, int64_t *out)
{
	const char *s;
	char *end;
	long long v;
	int rc = get_scalar(d, map, key, &s);
	if (rc)
		return rc;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s || *end)
		return cfg_fail(d, map, key, "'%s' is not an integer", s);
	if (v < min || v > max)
		return cfg_fail(d, map, key, "%lld is out of range [%lld, %lld]", v, (long long)min, (long long)max);
	*out = v;
	return 0;
}

enum kind { K_BOOL, K_DURATION, K_SIZE };

/* key's scalar through the parser of its kind into out; a value it refuses is reported at the key. */
static int get_kind(cfg_doc *d, cfg_node *map, const char *key, enum kind k, void *out)
{
	static const char *const what[] = {
		[K_BOOL] = "a boolean (true or false)",
		[K_DURATION] = "a duration (e.g. 500ms, 10s, 5m, 720h)",
		[K_SIZE] = "a size (e.g. 512M, 2G)",
	};
	const char *s;
	int rc = get_scalar(d, map, key, &s);
	if (rc)
		return rc;
	switch (k) {
	case K_BOOL: rc = cfg_parse_bool(s, out); break;
	case K_DURATION: rc = cfg_parse_duration_ms(s, out); break;
	default: rc = cfg_parse_size(s, out); break;
	}
	if (rc < 0)
		return cfg_fail(d, map, key, "'%s' is not %s", s, what[k]);
	return 0;
}

int cfg_get_bool(cfg_doc *d, cfg_node *map, const char *key, bool *out)
{
	return get_kind(d, map, key, K_BOOL, out);
}

int cfg_parse_bool(const char *s, bool *out)
{
	if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on"))
		*out = true;
	else if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off"))
		*out = false;
	else
		return -EINVAL;
	return 0;
}

struct unit {
	const char *name;
	int64_t ms;
};

int cfg_parse_duration_ms(const char *s, int64_t *ms)
{
	/* "ms" before "m": the first unit that prefixes the rest wins. */
	static const struct unit units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 }, { "d", 86400000 }, { NULL, 0 },
	};
	int64_t total = 0;
	const char *p = s;
	if (!s || !*s)
		return -EINVAL;
	/* A bare number is seconds. */
	{
		char *end;
		errno = 0;
		long long v = strtoll(s, &end, 10);
		if (!errno && end != s && !*end && v >= 0 && v < INT64_MAX / 1000) {
			*ms = v * 1000;
			return 0;
		}
	}
	while (*p) {
		char *end;
		int64_t mult;
		const struct unit *u;
		errno = 0;
		double v = strtod(p, &end);
		if (errno || end == p || v < 0 || !isdigit((unsigned char)*p))
			return -EINVAL;
		p = end;
		for (u = units; u->name && strncmp(p, u->name, strlen(u->name)); u++)
			;
		if (!u->name)
			return -EINVAL;
		mult = u->ms;
		p += strlen(u->name);
		if (v * (double)mult > 1e15)
			return -EINVAL;
		total += (int64_t)(v * (double)mult);
	}
	*ms = total;
	return 0;
}

int cfg_parse_size(const char *s, uint64_t *bytes)
{
	char *end;
	uint64_t mult = 1;
	double v;
	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || v < 0)
		return -EINVAL;
	switch (toupper((unsigned char)*end)) {
	case 0: break;
	case 'K': mult = 1ull << 10; end++; break;
	case 'M': mult = 1ull << 20; end++; break;
	case 'G': mult = 1ull << 30; end++; break;
	case 'T': mult = 1ull << 40; end++; break;
	default: return -EINVAL;
	}
	if (mult > 1 && (!strcmp(end, "iB") || !strcmp(end, "B") || !strcmp(end, "b")))
		end += strlen(end);
	else if (mult == 1 && (!strcmp(end, "B") || !strcmp(end, "b")))
		end++;
	if (*end || v * (double)mult > 1.8e19)
		return -EINVAL;
	*bytes = (uint64_t)(v * (double)mult);
	return 0;
}

int cfg_get_duration_ms(cfg_doc *d, cfg_node *map, const char *key, int64_t *out)
{
	return get_kind(d, map, key, K_DURATION, out);
}

int cfg_get_size(cfg_doc *d, cfg_node *map, const char *key, uint64_t *out)
{
	return get_kind(d, map, key, K_SIZE, out);
}

void cfg_strv_free(char **v)
{
	if (!v)
		return;
	for (size_t i = 0; v[i]; i++)
		free(v[i]);
	free(v);
}

int cfg_get_strlist(cfg_doc *d, cfg_node *map, const char *key, char ***out, size_t *n)
{
	cfg_node *seq = cfg_get(map, key), *item;
	void *it = NULL;
	char **v = NULL;
	size_t cnt = 0;
	int rc = 0;

	if (!seq)
		return 1;
	if (fy_node_get_type(seq) != FYNT_SEQUENCE)
		return cfg_fail(d, map, key, "expected a list");
	v = calloc((size_t)fy_node_sequence_item_count(seq) + 1, sizeof *v);
	if (!v)
		return -ENOMEM;
	while ((item = fy_node_sequence_iterate(seq, &it))) {
		const char *s = cfg_scalar(item);
		if (!s) {
			rc = cfg_fail(d, map, key, "list item %zu is not a single value", cnt + 1);
			goto out;
		}
		if (!(v[cnt] = strdup(s))) {
			rc = -ENOMEM;
			goto out;
		}
		cnt++;
	}
	cfg_strv_free(*out);
	*out = v;
	v = NULL;
	if (n)
		*n = cnt;
out:
	cfg_strv_free(v);
	return rc;
}

/* A walk of the nodes, not libfyaml's JSON emitter: 0.7.12's leaks its buffer (512 B to 16 KiB per call,
 * seen with LSan) on a double-quoted scalar with escapes longer than about 150 bytes. */
static json_t *node_json(struct fy_node *n, int depth)
{
	size_t len;
	const char *s;
	if (!n || depth > 64)
		return n ? NULL : json_null();
	if (fy_node_is_mapping(n)) {
		json_t *o = json_object();
		void *it = NULL;
		struct fy_node_pair *p;
		while (o && (p = fy_node_mapping_iterate(n, &it))) {
			const char *k = fy_node_get_scalar0(fy_node_pair_key(p));
			json_t *v = node_json(fy_node_pair_value(p), depth + 1);
			if (!k || !v || json_object_set_new(o, k, v) < 0) {
				if (!k)
					json_decref(v); /* set_new takes v even when it fails */
				json_decref(o);
				return NULL;
			}
		}
		return o;
	}
	if (fy_node_is_sequence(n)) {
		json_t *a = json_array();
		void *it = NULL;
		struct fy_node *e;
		while (a && (e = fy_node_sequence_iterate(n, &it))) {
			json_t *v = node_json(e, depth + 1);
			if (!v || json_array_append_new(a, v) < 0) {
				json_decref(a);
				return NULL;
			}
		}
		return a;
	}
	if (!(s = fy_node_get_scalar(n, &len)))
		return NULL;
	if (fy_node_get_style(n) == FYNS_PLAIN) {
		json_t *j;
		if (len == 0 || (len == 1 && s[0] == '~'))
			return json_null(); /* `key:` and `key: ~` */
		j = json_loadb(s, len, JSON_DECODE_ANY, NULL);
		if (json_is_number(j) || json_is_boolean(j) || json_is_null(j))
			return j;
		json_decref(j);
	}
	return json_stringn(s, len);
}

json_t *cfg_node_json(cfg_node *n) { return node_json(n, 0); }

char *cfg_node_text(cfg_node *n)
{
	/* One line of JSON: layout, comments and quoting styles (plain or quoted: the same string) drop out. */
	json_t *j = n ? node_json(n, 0) : NULL;
	char *s = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER) : NULL;
	json_decref(j);
	return s;
}

char *cfg_key_text(cfg_node *map, const char *key)
{
	struct fy_node_pair *p = cfg_is_map(map) ? find_pair(map, key) : NULL;
	if (!p)
		return NULL;
	/* `key:` with nothing after it is present, unlike an absent key: "null" says so. */
	return fy_node_pair_value(p) ? cfg_node_text(fy_node_pair_value(p)) : strdup("null");
}
