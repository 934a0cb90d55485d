/* Options one part carries for another unparsed: the mapping under a config key (a proxy route's
 * `sandbox:`) kept as key -> values with each key's line, so that only the part that owns the keys
 * validates them (through the checker it registers here) and gets them as `KEY=VALUE` arguments. */
#ifndef POSTERN_OPTMAP_H
#define POSTERN_OPTMAP_H

#include <stdbool.h>
#include <stddef.h>

#include "core/cfg.h"

typedef struct optmap_ent {
	char *key;
	char **vals; /* NULL-terminated; a scalar is one value */
	size_t n;
	bool list;   /* written as a list ([a, b]) */
	bool map;    /* written as a mapping: no values, kept so that the owner names the key */
	int line;    /* of the key; 0 = unknown */
} optmap_ent;

typedef struct optmap {
	optmap_ent *v;
	size_t n;
} optmap;

/* The values of map's keys: scalars or lists of scalars ("key:" with nothing after it is absent; a
 * mapping is an entry with map set). A list of non-scalars is an error recorded in d, as is a map that is
 * not a mapping (where names it in messages). 0, -EINVAL or -ENOMEM. */
int optmap_from_cfg(cfg_doc *d, cfg_node *map, const char *where, optmap *out);
/* Appends one value; a second value of a key makes it a list. 0 or -ENOMEM. */
int optmap_add(optmap *m, const char *key, const char *val, int line);
const optmap_ent *optmap_get(const optmap *m, const char *key);
/* Removes key (when present). */
void optmap_del(optmap *m, const char *key);
size_t optmap_count_values(const optmap *m);
/* {flag, "KEY=VALUE", flag, "KEY=VALUE2", ...}: NULL-terminated, every string malloc'd; NULL = ENOMEM. */
char **optmap_to_argv(const optmap *m, const char *flag);
void optmap_free(optmap *m);

/* The owner's validation: 0, or -EINVAL with the whole message in err and *at the entry it is about (its
 * line goes in front; NULL when it is about the map). */
typedef int (*optmap_check_fn)(const optmap *m, const optmap_ent **at, char *err, size_t errlen);
/* Registers the checker of owner's options ("sandbox"), replacing an earlier one. Set by main.c: the
 * part that carries the options includes nothing of the part that owns them. */
void optmap_set_checker(const char *owner, optmap_check_fn fn);
/* NULL when none is registered (then only the owner checks them, when it gets them). */
optmap_check_fn optmap_checker(const char *owner);

#endif
