/* A fast path for jansson's parser (no I/O): the guard parses every request and every answer, and
 * json_loadb cost ~100 instructions a byte (a reader that fetches byte by byte, a string buffer grown byte
 * by byte). jp_parse builds the same jansson tree for the common subset of JSON and declines everything
 * else, so that the caller hands that text to json_loadb and gets jansson's answer and its error text.
 *
 * The subset: objects, arrays, true, false, null, integers of at most 18 digits, strings of UTF-8 without
 * control characters whose escapes are \" \\ \/ \b \f \n \r \t. Declined: \u escapes, reals and longer
 * integers, duplicate keys, anything malformed, nesting past max_depth. What it accepts json_loadb
 * (JSON_REJECT_DUPLICATES | JSON_DECODE_ANY) accepts as the same tree; the unit test compares both on
 * generated and mutated texts. */
#ifndef POSTERN_GUARD_JPARSE_H
#define POSTERN_GUARD_JPARSE_H

#include <jansson.h>
#include <stddef.h>

/* 0 with *out (a new reference), -EAGAIN when the text is outside the subset (or not JSON: json_loadb says
 * which), -ENOMEM. */
int jp_parse(const char *buf, size_t len, unsigned max_depth, json_t **out);

#endif
