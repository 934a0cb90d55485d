/* What is gathered when the metrics are rendered: the collectors callers register, the standard process_*
 * series (the names and meanings of the Prometheus client libraries) and postern_build_info. Linux only:
 * /proc/self/stat, /proc/self/fd, /proc/stat. */
#include "core/admin.h"
#include "core/admin_int.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static bool g_process;
static struct collector {
	void (*fn)(void *ud);
	void *ud;
} g_coll[ADM_MAX_COLLECTORS];
static size_t g_ncoll;

void adm_process_metrics(void) { g_process = true; }

void admi_process_off(void)
{
	g_process = false;
	g_ncoll = 0;
}

int adm_collector_add(void (*fn)(void *ud), void *ud)
{
	if (g_ncoll == ADM_MAX_COLLECTORS)
		return -ENOSPC;
	g_coll[g_ncoll++] = (struct collector){ fn, ud };
	return 0;
}

void adm_collector_remove(void (*fn)(void *ud), void *ud)
{
	for (size_t i = 0; i < g_ncoll; i++)
		if (g_coll[i].fn == fn && g_coll[i].ud == ud) {
			memmove(&g_coll[i], &g_coll[i + 1], (g_ncoll - i - 1) * sizeof g_coll[0]);
			g_ncoll--;
			return;
		}
}

void admi_collect(void)
{
	for (size_t i = 0; i < g_ncoll; i++)
		g_coll[i].fn(g_coll[i].ud);
}

void adm_build_info(const char *version, const char *commit)
{
	char l[256], v[128], c[128];
	adm_label(v, sizeof v, "version", version);
	if (commit && commit[0])
		snprintf(l, sizeof l, "%s,%s", v, adm_label(c, sizeof c, "commit", commit));
	else
		snprintf(l, sizeof l, "%s", v);
	adm_set(adm_gauge("postern_build_info", "A metric with a constant 1 labelled by the version of postern", l), 1);
}

/* Fields of /proc/self/stat after the command name (which may hold spaces and parentheses: the last ')'
 * ends it). field[k] is field number k + 3 of proc(5). */
#define STAT_FIELDS 22
static int read_stat(unsigned long long field[STAT_FIELDS])
{
	char buf[1024], *p, *end;
	size_t n;
	FILE *f = fopen("/proc/self/stat", "re");
	if (!f)
		return -errno; /* the series is left out */
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	if (!(p = strrchr(buf, ')')))
		return -EIO;
	p += 2; /* ") " then the state letter */
	if (!*p)
		return -EIO;
	p++;
	for (int i = 1; i < STAT_FIELDS; i++) {
		field[i] = strtoull(p, &end, 10);
		if (end == p)
			return -EIO;
		p = end;
	}
	return 0;
}

static double boot_time(void)
{
	char line[256];
	double bt = 0;
	FILE *f = fopen("/proc/stat", "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, "btime ", 6)) {
			bt = strtod(line + 6, NULL);
			break;
		}
	fclose(f);
	return bt;
}

static long open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	long n = 0;
	if (!d)
		return -errno;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory being read is one of them */
}

static int line(cbuf *b, const char *name, const char *type, const char *help, double v)
{
	char num[40];
	return cbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %s\n", name, help, name, type, name,
			   admi_fmt_double(num, sizeof num, v));
}

int admi_process_render(cbuf *b)
{
	unsigned long long st[STAT_FIELDS] = { 0 };
	bool have_stat;
	struct rusage ru;
	struct rlimit rl;
	long fds, page = sysconf(_SC_PAGESIZE), tck = sysconf(_SC_CLK_TCK);
	double bt;
	int rc = 0;
	if (!g_process)
		return 0;
	have_stat = read_stat(st) == 0;
	/* getrusage counts microseconds; /proc/self/stat only clock ticks. */
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		rc = line(b, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
			  (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
				  ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6);
	if (rc == 0 && (fds = open_fds()) >= 0)
		rc = line(b, "process_open_fds", "gauge", "Number of open file descriptors.", (double)fds);
	if (rc == 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0)
		rc = line(b, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
			  rl.rlim_cur == RLIM_INFINITY ? 1.8446744073709552e19 : (double)rl.rlim_cur);
	/* field numbers of proc(5): 22 starttime (ticks after boot), 23 vsize (bytes), 24 rss (pages) */
	if (rc == 0 && have_stat)
		rc = line(b, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", (double)st[23 - 3]);
	if (rc == 0 && have_stat && page > 0)
		rc = line(b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
			  (double)st[24 - 3] * (double)page);
	if (rc == 0 && have_stat && tck > 0 && (bt = boot_time()) > 0)
		rc = line(b, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
			  bt + (double)st[22 - 3] / (double)tck);
	return rc;
}
