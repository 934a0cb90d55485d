/* Lowercase hex of bytes: the one encoder for digests and random ids (snprintf per byte cost more than the
 * SHA-256 it printed, on every audit line). */
#ifndef POSTERN_CORE_HEX_H
#define POSTERN_CORE_HEX_H
#include <stddef.h>
/* Writes 2n lowercase hex digits and a NUL to out (2n + 1 bytes). */
void hex_encode(const void *p, size_t n, char *out);
#endif
