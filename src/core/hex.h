/* Hex: the one encoder for digests and random ids (snprintf per byte cost more than the SHA-256 it printed,
 * on every audit line) and the one digit decoder for percent-escapes and hex digests read from text. */
#ifndef POSTERN_CORE_HEX_H
#define POSTERN_CORE_HEX_H
#include <stddef.h>

/* Writes 2n lowercase hex digits and a NUL to out (2n + 1 bytes). */
void hex_encode(const void *p, size_t n, char *out);

/* The value (0-15) of the hex digit c, either case; -1 when c is not one. */
int hex_val(int c);

#endif
