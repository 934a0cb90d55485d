/* Histograms of the metrics registry (core/admin.h): fixed buckets per family, one observation lands in the
 * first bucket whose bound holds it, and the text format's cumulative _bucket/_sum/_count lines. */
#include "core/admin.h"
#include "core/admin_int.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Histogram bounds: finite, strictly ascending, at most ADM_HIST_MAX_BUCKETS of them. */
static bool bounds_ok(const double *bounds, size_t nb)
{
	if (!bounds || nb == 0 || nb > ADM_HIST_MAX_BUCKETS)
		return false;
	for (size_t i = 0; i < nb; i++)
		if (!isfinite(bounds[i]) || (i && !(bounds[i] > bounds[i - 1])))
			return false;
	return true;
}

adm_metric *adm_histogram(const char *name, const char *help, const char *labels, const double *bounds, size_t nb)
{
	struct family *f;
	if (!bounds_ok(bounds, nb) || !(f = admi_family_get(name, help, M_HISTOGRAM)))
		return NULL;
	/* The family's first call fixes its buckets: every series of a family has the same ones. */
	if (!f->bounds) {
		if (!(f->bounds = malloc(nb * sizeof *f->bounds)))
			return NULL;
		memcpy(f->bounds, bounds, nb * sizeof *f->bounds);
		f->nb = nb;
	}
	return admi_series_get(name, help, labels, M_HISTOGRAM);
}

void adm_observe(adm_metric *m, double v)
{
	struct family *f;
	if (!m || m->fam->type != M_HISTOGRAM || isnan(v))
		return;
	f = m->fam;
	m->v++;
	m->sum += v;
	/* Each observation lands in the first bucket whose bound holds it; none: only in +Inf (the count). */
	for (size_t i = 0; i < f->nb; i++)
		if (v <= f->bounds[i]) {
			m->hb[i]++;
			break;
		}
}

double adm_hist_sum(const adm_metric *m) { return m && m->fam->type == M_HISTOGRAM ? m->sum : 0; }

/* The shortest of %.15g and %.17g that reads back as v: 0.005 stays "0.005", a sum keeps every bit. */
const char *admi_fmt_double(char *buf, size_t len, double v)
{
	snprintf(buf, len, "%.15g", v);
	if (strtod(buf, NULL) != v)
		snprintf(buf, len, "%.17g", v);
	return buf;
}

/* One histogram series: cumulative _bucket lines with le (the series' labels first), +Inf, _sum, _count. */
int admi_render_histogram(cbuf *b, const struct family *f, const adm_metric *m)
{
	const char *sep = m->labels[0] ? "," : "";
	char num[40];
	uint64_t cum = 0;
	int rc = 0;
	for (size_t i = 0; i < f->nb && rc == 0; i++) {
		cum += m->hb[i];
		rc = cbuf_printf(b, "%s_bucket{%s%sle=\"%s\"} %llu\n", f->name, m->labels, sep,
				 admi_fmt_double(num, sizeof num, f->bounds[i]), (unsigned long long)cum);
	}
	if (rc == 0)
		rc = cbuf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %lld\n", f->name, m->labels, sep, (long long)m->v);
	admi_fmt_double(num, sizeof num, m->sum);
	if (rc == 0)
		rc = m->labels[0] ? cbuf_printf(b, "%s_sum{%s} %s\n%s_count{%s} %lld\n", f->name, m->labels, num, f->name,
						m->labels, (long long)m->v)
				  : cbuf_printf(b, "%s_sum %s\n%s_count %lld\n", f->name, num, f->name, (long long)m->v);
	return rc;
}
