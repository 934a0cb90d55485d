/* UTF-8 well-formedness, for text a peer or an operator handed us (logs, configs). */
#ifndef POSTERN_CORE_UTF8_H
#define POSTERN_CORE_UTF8_H

#include <stddef.h>

/* Length (1-4) of the well-formed UTF-8 sequence at s[0..n), RFC 3629: no overlongs, no surrogates, nothing
 * above U+10FFFF; 0 when it is not one (or n is 0). */
size_t utf8_seq_len(const unsigned char *s, size_t n);

#endif
