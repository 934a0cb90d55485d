/* Tool-definition pins: canonical hash, a sorted (route, tool) table, the pins_file written atomically. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/hex.h"
#include "guard/pins.h"

struct pin {
	char *route, *tool;
	char hex[PIN_HEX_LEN + 1];
	char pending[PIN_HEX_LEN + 1]; /* "" when none */
};

struct pin_table {
	struct pin *v;
	size_t n, cap;
};

int pin_tool_hash(const json_t *tool, char hex[PIN_HEX_LEN + 1])
{
	static const char *const keys[] = { "name", "description", "inputSchema", "outputSchema" };
	json_t *c = NULL;
	char *s = NULL;
	unsigned char md[32];
	unsigned mdlen = 0;
	int rc = -ENOMEM;

	if (!json_is_object(tool) || !json_is_string(json_object_get(tool, "name")))
		return -EINVAL;
	if (!(c = json_object()))
		goto done;
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		json_t *v = json_object_get(tool, keys[i]);
		if (v && json_object_set(c, keys[i], v) < 0)
			goto done;
	}
	if (!(s = json_dumps(c, JSON_SORT_KEYS | JSON_COMPACT)))
		goto done;
	if (!EVP_Digest(s, strlen(s), md, &mdlen, EVP_sha256(), NULL))
		goto done;
	hex_encode(md, mdlen, hex);
	rc = 0;
done:
	free(s);
	json_decref(c);
	return rc;
}

int pin_new(pin_table **out)
{
	*out = calloc(1, sizeof **out);
	return *out ? 0 : -ENOMEM;
}

static void clear(pin_table *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->v[i].route);
		free(t->v[i].tool);
	}
	free(t->v);
	t->v = NULL;
	t->n = t->cap = 0;
}

void pin_free(pin_table *t)
{
	if (!t)
		return;
	clear(t);
	free(t);
}

static int cmp(const char *r1, const char *t1, const char *r2, const char *t2)
{
	int c = strcmp(r1, r2);
	return c ? c : strcmp(t1, t2);
}

/* Index of (route, tool), or the index it would be inserted at with *found false. */
static size_t find(const pin_table *t, const char *route, const char *tool, bool *found)
{
	size_t lo = 0, hi = t->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = cmp(t->v[mid].route, t->v[mid].tool, route, tool);
		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static bool hex_ok(const char *h)
{
	size_t i;
	for (i = 0; h && i < PIN_HEX_LEN; i++)
		if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
			return false;
	return h && h[i] == 0;
}

static bool name_ok(const char *s)
{
	return s && *s && strlen(s) <= PIN_MAX_NAME;
}

static int insert(pin_table *t, size_t at, const char *route, const char *tool, const char *hex)
{
	struct pin *p;
	if (t->n >= PIN_MAX_PINS)
		return -ENOSPC;
	if (t->n == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 16;
		if (!(p = realloc(t->v, cap * sizeof *p)))
			return -ENOMEM;
		t->v = p;
		t->cap = cap;
	}
	memmove(&t->v[at + 1], &t->v[at], (t->n - at) * sizeof *t->v);
	p = &t->v[at];
	memset(p, 0, sizeof *p);
	p->route = strdup(route);
	p->tool = strdup(tool);
	if (!p->route || !p->tool) {
		free(p->route);
		free(p->tool);
		memmove(&t->v[at], &t->v[at + 1], (t->n - at) * sizeof *t->v);
		return -ENOMEM;
	}
	memcpy(p->hex, hex, PIN_HEX_LEN + 1);
	t->n++;
	return 0;
}

int pin_check(pin_table *t, const char *route, const char *tool, const char *hex, pin_verdict *v)
{
	bool found;
	size_t i;
	int rc;

	if (!name_ok(route) || !name_ok(tool) || !hex_ok(hex))
		return -EINVAL;
	i = find(t, route, tool, &found);
	if (!found) {
		if ((rc = insert(t, i, route, tool, hex)) < 0)
			return rc;
		*v = PIN_NEW;
		return 0;
	}
	if (CRYPTO_memcmp(t->v[i].hex, hex, PIN_HEX_LEN) == 0) {
		*v = PIN_SAME;
		return 0;
	}
	memcpy(t->v[i].pending, hex, PIN_HEX_LEN + 1);
	*v = PIN_CHANGED;
	return 0;
}

int pin_accept(pin_table *t, const char *route, const char *tool)
{
	bool found;
	size_t i = find(t, route, tool, &found);
	if (!found)
		return -ENOENT;
	if (!t->v[i].pending[0])
		return -EALREADY;
	memcpy(t->v[i].hex, t->v[i].pending, PIN_HEX_LEN + 1);
	t->v[i].pending[0] = 0;
	return 0;
}

int pin_remove(pin_table *t, const char *route, const char *tool)
{
	bool found;
	size_t i = find(t, route, tool, &found);
	if (!found)
		return -ENOENT;
	free(t->v[i].route);
	free(t->v[i].tool);
	memmove(&t->v[i], &t->v[i + 1], (t->n - i - 1) * sizeof *t->v);
	t->n--;
	return 0;
}

int pin_at(const pin_table *t, size_t i, const char **route, const char **tool, const char **hex,
	   const char **pending)
{
	if (i >= t->n)
		return -ENOENT;
	if (route)
		*route = t->v[i].route;
	if (tool)
		*tool = t->v[i].tool;
	if (hex)
		*hex = t->v[i].hex;
	if (pending)
		*pending = t->v[i].pending[0] ? t->v[i].pending : NULL;
	return 0;
}

int pin_get(const pin_table *t, const char *route, const char *tool, const char **hex, const char **pending)
{
	bool found;
	size_t i = find(t, route, tool, &found);
	return found ? pin_at(t, i, NULL, NULL, hex, pending) : -ENOENT;
}

size_t pin_count(const pin_table *t) { return t->n; }

int pin_load_buf(pin_table *t, const char *buf, size_t len, char *err, size_t errlen)
{
	pin_table nt = { 0 };
	json_error_t je;
	json_t *root = NULL, *pins, *e;
	size_t i;
	int rc = -EINVAL;

	if (len > PIN_MAX_FILE) {
		snprintf(err, errlen, "pins file over %u bytes", PIN_MAX_FILE);
		goto done;
	}
	if (!(root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je))) {
		snprintf(err, errlen, "line %d: %s", je.line, je.text);
		goto done;
	}
	pins = json_object_get(root, "pins");
	if (json_integer_value(json_object_get(root, "version")) != 1 || !json_is_array(pins)) {
		snprintf(err, errlen, "not a pins file (want {\"version\":1,\"pins\":[...]})");
		goto done;
	}
	json_array_foreach (pins, i, e) {
		const char *r = json_string_value(json_object_get(e, "route"));
		const char *tl = json_string_value(json_object_get(e, "tool"));
		const char *h = json_string_value(json_object_get(e, "sha256"));
		json_t *pj = json_object_get(e, "pending");
		const char *pd = json_string_value(pj);
		bool found;
		size_t at;
		if (!name_ok(r) || !name_ok(tl) || !hex_ok(h) || (pj && !hex_ok(pd))) {
			snprintf(err, errlen, "pins[%zu]: want route, tool (1..%d bytes), sha256 (64 hex digits)", i,
				 PIN_MAX_NAME);
			goto done;
		}
		at = find(&nt, r, tl, &found);
		if (found) {
			snprintf(err, errlen, "pins[%zu]: %s/%s pinned twice", i, r, tl);
			goto done;
		}
		if ((rc = insert(&nt, at, r, tl, h)) < 0) {
			snprintf(err, errlen, "pins[%zu]: %s", i, rc == -ENOSPC ? "too many pins" : "out of memory");
			goto done;
		}
		rc = -EINVAL;
		if (pd)
			memcpy(nt.v[at].pending, pd, PIN_HEX_LEN + 1);
	}
	clear(t);
	*t = nt;
	nt = (pin_table){ 0 };
	rc = 0;
done:
	clear(&nt);
	json_decref(root);
	return rc;
}

int pin_dump(const pin_table *t, char **out, size_t *len)
{
	json_t *root = NULL, *arr = json_array();
	int rc = -ENOMEM;

	*out = NULL;
	if (!arr)
		goto done;
	for (size_t i = 0; i < t->n; i++) {
		const struct pin *p = &t->v[i];
		json_t *e = json_pack("{s:s,s:s,s:s}", "route", p->route, "tool", p->tool, "sha256", p->hex);
		if (!e || (p->pending[0] && json_object_set_new(e, "pending", json_string(p->pending)) < 0) ||
		    json_array_append_new(arr, e) < 0) {
			json_decref(e);
			goto done;
		}
	}
	if (!(root = json_pack("{s:i,s:O}", "version", 1, "pins", arr)))
		goto done;
	/* One pin per line: a diff of the file shows which tool changed. */
	if (!(*out = json_dumps(root, JSON_INDENT(1))))
		goto done;
	if (len)
		*len = strlen(*out);
	rc = 0;
done:
	json_decref(arr);
	json_decref(root);
	return rc;
}

int pin_load(pin_table *t, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL, e[200] = "";
	size_t n;
	int rc;

	if (!f) {
		if (errno == ENOENT) {
			clear(t);
			return 0;
		}
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		return rc;
	}
	if (!(buf = malloc(PIN_MAX_FILE + 1))) {
		rc = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory", path);
		goto done;
	}
	n = fread(buf, 1, PIN_MAX_FILE + 1, f);
	if (ferror(f)) {
		rc = -EIO;
		snprintf(err, errlen, "%s: read error", path);
		goto done;
	}
	if ((rc = pin_load_buf(t, buf, n, e, sizeof e)) < 0)
		snprintf(err, errlen, "%s: %s", path, e);
done:
	free(buf);
	fclose(f);
	return rc;
}

int pin_save(const pin_table *t, const char *path, char *err, size_t errlen)
{
	char *text = NULL, *tmp = NULL, *dirc = NULL;
	size_t len = 0, off = 0;
	int fd = -1, dfd = -1, rc;

	if ((rc = pin_dump(t, &text, &len)) < 0 || !(tmp = malloc(strlen(path) + 16)) || !(dirc = strdup(path))) {
		rc = -ENOMEM;
		snprintf(err, errlen, "%s: out of memory", path);
		goto done;
	}
	sprintf(tmp, "%s.tmp.XXXXXX", path);
	if ((fd = mkstemp(tmp)) < 0) { /* mkstemp creates it 0600 */
		rc = -errno;
		snprintf(err, errlen, "%s: %s", tmp, strerror(-rc));
		free(tmp);
		tmp = NULL;
		goto done;
	}
	if (fchmod(fd, 0600) < 0)
		goto fail;
	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			goto fail;
		off += (size_t)w;
	}
	if (write(fd, "\n", 1) != 1 || fsync(fd) < 0)
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0)
		goto fail;
	free(tmp);
	tmp = NULL;
	/* The rename is durable once the directory is on disk too. */
	if ((dfd = open(dirname(dirc), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0)
		(void)fsync(dfd);
	rc = 0;
	goto done;
fail:
	rc = errno ? -errno : -EIO;
	snprintf(err, errlen, "%s: %s", path, strerror(-rc));
done:
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	if (tmp)
		unlink(tmp);
	free(tmp);
	free(dirc);
	free(text);
	return rc;
}
