/* The transcript's terminal guard: what `postern agent` prints comes largely from peers (tool output, MCP
 * servers' tool names and errors, the model's text), and a terminal obeys control sequences in it (clear the
 * screen, move the cursor, fake a permission prompt). Text written through an atty stream reaches the
 * terminal with every control character, C1 control, bidirectional override and malformed UTF-8 byte shown
 * as an escape (\x1b, \u202e); newlines and tabs pass. */
#ifndef POSTERN_AGENT_ATTY_H
#define POSTERN_AGENT_ATTY_H

#include <stddef.h>
#include <stdio.h>

/* A write-only stream on top of under (not closed with it); NULL with errno on failure. Line buffered. */
FILE *atty_open(FILE *under);
/* The escaped form of s[0..n) into out (cap outlen, always NUL-terminated); returns out. For unit tests and
 * for one-off strings. Incomplete sequences at the end are escaped. */
char *atty_escape(const char *s, size_t n, char *out, size_t outlen);

#endif
