/* The error convention (docs/internals.md, "Errors"): a function that can fail returns 0 (or a count, or a
 * handle) or a negative errno, and says why in one `char *err, size_t errlen` pair. err_set writes the why and
 * hands back the code, so a failure is reported and returned in one statement. */
#ifndef POSTERN_ERR_H
#define POSTERN_ERR_H

#include <stddef.h>

/* Formats the message into err (cut to errlen; nothing when errlen is 0) and returns rc, a negative errno. */
int err_set(char *err, size_t errlen, int rc, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
