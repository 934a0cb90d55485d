/* Hex digits, for the few places that read percent-escapes or hex digests from text. */
#ifndef POSTERN_CORE_HEX_H
#define POSTERN_CORE_HEX_H

/* The value (0-15) of the hex digit c, either case; -1 when c is not one. */
int hex_val(int c);

#endif
