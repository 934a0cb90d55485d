/* YAML config access on top of libfyaml. Every error names file, line and key; the first error is kept
 * in the document and returned by cfg_error(). Getters return 0 when the key was read, 1 when it is
 * absent (the output keeps its default), or -EINVAL when present but invalid. */
#ifndef POSTERN_CFG_H
#define POSTERN_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fy_node;
typedef struct cfg_doc cfg_doc;
typedef struct fy_node cfg_node;

/* Returns NULL on failure with a message "FILE:LINE:COL: reason" in err. */
cfg_doc *cfg_load(const char *path, char *err, size_t errlen);
/* The same from memory; name is used in messages. */
cfg_doc *cfg_load_string(const char *name, const char *yaml, size_t len, char *err, size_t errlen);
void cfg_free(cfg_doc *d);

cfg_node *cfg_root(cfg_doc *d);
const char *cfg_path(const cfg_doc *d);
const char *cfg_error(const cfg_doc *d);
/* Records an error at node n (or at key within map when n is NULL); returns -EINVAL. */
int cfg_fail(cfg_doc *d, cfg_node *map, const char *key, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Records a warning (something that may be intended) at key within map, or at node map when key is NULL,
 * formatted like an error ("FILE:LINE: key: reason"). Always returns 0. At most CFG_WARN_MAX are kept. */
#define CFG_WARN_MAX 32
int cfg_warn(cfg_doc *d, cfg_node *map, const char *key, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
size_t cfg_warning_count(const cfg_doc *d);
const char *cfg_warning(const cfg_doc *d, size_t i);
size_t cfg_warnings_dropped(const cfg_doc *d);
/* Records an error at a line (0 = unknown) with the message as given, for checks done elsewhere. */
int cfg_fail_line(cfg_doc *d, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Line (1-based) of key in map, or of a scalar node; 0 when unknown. */
int cfg_key_line(cfg_node *map, const char *key);
int cfg_node_line(cfg_node *n);

bool cfg_is_map(cfg_node *n);
/* Fails on a key not in the NULL-terminated list: typos must not be ignored. */
int cfg_check_keys(cfg_doc *d, cfg_node *map, const char *where, const char *const *allowed);

cfg_node *cfg_get(cfg_node *map, const char *key);
int cfg_get_map(cfg_doc *d, cfg_node *map, const char *key, cfg_node **out);
/* *out is a malloc'd copy; caller frees. */
int cfg_get_str(cfg_doc *d, cfg_node *map, const char *key, char **out);
int cfg_get_int(cfg_doc *d, cfg_node *map, const char *key, int64_t min, int64_t max, int64_t *out);
int cfg_get_bool(cfg_doc *d, cfg_node *map, const char *key, bool *out);
int cfg_get_duration_ms(cfg_doc *d, cfg_node *map, const char *key, int64_t *out);
int cfg_get_size(cfg_doc *d, cfg_node *map, const char *key, uint64_t *out);
/* A sequence of scalars; *out is a NULL-terminated malloc'd array of malloc'd strings (cfg_strv_free). */
int cfg_get_strlist(cfg_doc *d, cfg_node *map, const char *key, char ***out, size_t *n);
void cfg_strv_free(char **v);

/* Iterates a mapping: returns 1 with key/value set, 0 at the end. *iter starts NULL. */
int cfg_map_next(cfg_node *map, void **iter, const char **key, cfg_node **val);
/* Scalar text of a node (NUL-terminated, owned by the document) or NULL when not a scalar. */
const char *cfg_scalar(cfg_node *n);

/* A node as one line of JSON (layout, comments and quoting left out), for telling whether a key changed between
 * two loads; malloc'd, NULL when n is NULL or out of memory. cfg_key_text: the value of key in map (never NULL
 * when the key is there, even without a value), NULL when map has no such key. */
char *cfg_node_text(cfg_node *n);
/* A node as JSON (jansson; the caller's reference): a plain scalar that reads as a number, true, false or null is
 * that, every other scalar a string; NULL past 64 levels or out of memory. postern agent's plan arguments. */
struct json_t;
struct json_t *cfg_node_json(cfg_node *n);
char *cfg_key_text(cfg_node *map, const char *key);

/* "250ms", "10s", "5m", "2h", "720h", "1h30m"; a bare number is seconds. 0 or -EINVAL. */
int cfg_parse_duration_ms(const char *s, int64_t *ms);
/* true/yes/on, false/no/off; 0 or -EINVAL. */
int cfg_parse_bool(const char *s, bool *out);
/* "512", "64K", "2M", "1G", "2GiB"; 0 or -EINVAL. */
int cfg_parse_size(const char *s, uint64_t *bytes);

#endif
