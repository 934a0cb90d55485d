/* Tool-definition pinning (the "rug pull" check): a tool's definition is hashed, pinned per (route, tool) on
 * first sight or from a pins_file, and a later definition with another hash is "changed" until accepted.
 *
 * The hash is SHA-256 (hex) of a canonical JSON of {name, description, inputSchema, outputSchema} (members
 * absent in the tool stay absent; title, icons, annotations and _meta are not part of it): jansson with
 * JSON_SORT_KEYS | JSON_COMPACT, i.e. RFC 8785-like: object keys sorted (by UTF-8 bytes, where RFC 8785
 * sorts by UTF-16 units: the two differ only between U+E000..U+FFFF and astral characters), no insignificant
 * whitespace, strings as UTF-8 with jansson's escapes. Numbers differ from RFC 8785: integers are exact, but
 * a real is printed with 17 significant digits ("%.17g"), not the shortest round-trip form; the hash is
 * stable for a given definition and jansson, and tool schemas rarely hold reals.
 *
 * pins_file: JSON {"version":1,"pins":[{"route":R,"tool":T,"sha256":H[,"pending":H2]}...]} sorted by route
 * and tool, written 0600 and atomically (temp file in the same directory, fsync, rename, fsync of the
 * directory), so a crash leaves the old file or the new one. */
#ifndef POSTERN_GUARD_PINS_H
#define POSTERN_GUARD_PINS_H

#include <jansson.h>
#include <stddef.h>

#define PIN_HEX_LEN   64
#define PIN_MAX_NAME  256            /* route and tool names */
#define PIN_MAX_PINS  100000
#define PIN_MAX_FILE  (32u << 20)    /* pins_file bytes */

typedef struct pin_table pin_table;

typedef enum pin_verdict {
	PIN_NEW = 0, /* first sight: now pinned */
	PIN_SAME,    /* matches the pin */
	PIN_CHANGED, /* differs from the pin: hide the tool, refuse its calls, warn; kept as pending */
} pin_verdict;

/* hex gets 64 hex digits and a NUL. 0, -EINVAL (tool is not an object with a string name), -ENOMEM. */
int pin_tool_hash(const json_t *tool, char hex[PIN_HEX_LEN + 1]);

int pin_new(pin_table **out);
void pin_free(pin_table *t);
/* Compares a tool's hash with its pin; pins it when unknown. A changed hash is remembered as pending (for
 * pin_accept) and the pin stays. 0, -EINVAL (a name empty or over PIN_MAX_NAME, hex not 64 hex digits),
 * -ENOSPC (PIN_MAX_PINS), -ENOMEM. */
int pin_check(pin_table *t, const char *route, const char *tool, const char *hex, pin_verdict *v);
/* Accepts the pending definition (re-approval): the pin becomes it. 0, -ENOENT (no pin), -EALREADY (none
 * pending). */
int pin_accept(pin_table *t, const char *route, const char *tool);
/* Forgets a pin: the next sight pins again. 0 or -ENOENT. */
int pin_remove(pin_table *t, const char *route, const char *tool);
/* The pin and pending hash (NULL when none; valid until the table changes). 0 or -ENOENT. */
int pin_get(const pin_table *t, const char *route, const char *tool, const char **hex, const char **pending);
size_t pin_count(const pin_table *t);
/* The i-th pin in (route, tool) order, for `postern pins list`. 0 or -ENOENT. */
int pin_at(const pin_table *t, size_t i, const char **route, const char **tool, const char **hex,
	   const char **pending);

/* Replaces the table's contents from pins_file text. 0, -EINVAL (err says what), -ENOMEM. */
int pin_load_buf(pin_table *t, const char *buf, size_t len, char *err, size_t errlen);
/* The pins_file text; *out is malloc'd. */
int pin_dump(const pin_table *t, char **out, size_t *len);
/* pin_load_buf on a file; a missing file is an empty table (0). Otherwise 0 or a negative errno. */
int pin_load(pin_table *t, const char *path, char *err, size_t errlen);
/* Writes the pins_file atomically with mode 0600. 0 or a negative errno with err saying what. */
int pin_save(const pin_table *t, const char *path, char *err, size_t errlen);

#endif
