/* Internal to the admin module, shared by admin.c (registry, text format, server) and admin_proc.c (the
 * process_* series and postern_build_info). Nothing outside src/core/admin*.c includes it. */
#ifndef POSTERN_ADMIN_INT_H
#define POSTERN_ADMIN_INT_H

#include <stddef.h>

#include "core/cbuf.h"

/* Appends the process_* series when adm_process_metrics() turned them on; else appends nothing. 0 or the
 * cbuf's error. */
int admi_process_render(cbuf *b);
void admi_process_off(void); /* and removes every collector */
/* Runs the collectors (adm_collector_add), before a render. */
void admi_collect(void);
/* v as the text format writes a float: the shorter of %.15g and %.17g that reads back exactly. */
const char *admi_fmt_double(char *buf, size_t len, double v);

#endif
