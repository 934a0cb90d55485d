/* Internal to the admin module's metrics, shared by admin.c (registry, text format, server), admin_hist.c
 * (histograms) and admin_proc.c (render-time collectors, the process_* series and postern_build_info).
 * Nothing outside src/core/admin*.c includes it. */
#ifndef POSTERN_ADMIN_INT_H
#define POSTERN_ADMIN_INT_H

#include <stddef.h>
#include <stdint.h>

#include "core/admin.h"
#include "core/cbuf.h"

enum mtype { M_COUNTER, M_GAUGE, M_HISTOGRAM };

struct family;

struct adm_metric {
	struct adm_metric *next;
	struct family *fam;
	char *labels;
	int64_t v;      /* counters and gauges; a histogram's observation count */
	uint64_t *hb;   /* histogram: observations per bucket (not cumulative), fam->nb of them */
	double sum;     /* histogram: sum of the observations */
};

struct family {
	struct family *next;
	char *name, *help;
	enum mtype type;
	double *bounds; /* histogram: ascending upper bounds (the +Inf bucket is implicit) */
	size_t nb;
	struct adm_metric *series, **tail;
};

/* Get-or-create (admin.c): NULL when out of memory or when name is a family of another type. */
struct family *admi_family_get(const char *name, const char *help, enum mtype type);
adm_metric *admi_series_get(const char *name, const char *help, const char *labels, enum mtype type);
/* One histogram series in the text format (admin_hist.c). 0 or the cbuf's error. */
int admi_render_histogram(cbuf *b, const struct family *f, const adm_metric *m);

/* Appends the process_* series when adm_process_metrics() turned them on; else appends nothing. 0 or the
 * cbuf's error. */
int admi_process_render(cbuf *b);
void admi_process_off(void); /* and removes every collector */
/* Runs the collectors (adm_collector_add), before a render. */
void admi_collect(void);
/* v as the text format writes a float: the shorter of %.15g and %.17g that reads back exactly. */
const char *admi_fmt_double(char *buf, size_t len, double v);

#endif
