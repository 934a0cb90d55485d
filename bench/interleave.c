/* bench/interleave.c: runs commands in turn (A B C A B C ...), N rounds after 10 warm-up rounds, and prints
 * per command the median, p25, p75 and min wall time and the median CPU of its waited-for children.
 * Interleaving keeps the load of a shared machine the same for every command, which sequential hyperfine
 * runs do not (BENCHMARKS.md, issue 8). Build and run:
 *   cc -O2 -o build/bench/interleave bench/interleave.c
 *   build/bench/interleave 300 "/path/postern sandbox run -q -- /bin/true" "/usr/bin/bwrap ..."
 * Commands are split on spaces (no quoting) and run with execv (absolute paths); stdout/stderr go to
 * /dev/null; a command that exits non-zero is reported. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_ROUNDS 100000
#define MAX_ARGS 63

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

int main(int argc, char **argv)
{
	int n = argc > 2 ? atoi(argv[1]) : 0, nc = argc - 2;
	if (n < 1 || n > MAX_ROUNDS) {
		fprintf(stderr, "usage: interleave ROUNDS(1-%d) CMD...\n", MAX_ROUNDS);
		return 2;
	}
	char ***cv = calloc((size_t)nc, sizeof *cv);
	double *w = calloc((size_t)n * (size_t)nc, sizeof *w), *u = calloc((size_t)n * (size_t)nc, sizeof *u);
	int devnull = open("/dev/null", O_WRONLY);
	if (!cv || !w || !u || devnull < 0)
		return 1;
	for (int c = 0; c < nc; c++) {
		char *s = strdup(argv[c + 2]), *save = NULL;
		int k = 0;
		if (!s || !(cv[c] = calloc(MAX_ARGS + 1, sizeof(char *))))
			return 1;
		for (char *t = strtok_r(s, " ", &save); t && k < MAX_ARGS; t = strtok_r(NULL, " ", &save))
			cv[c][k++] = t;
	}
	for (int i = -10; i < n; i++)
		for (int c = 0; c < nc; c++) {
			double t0 = now_ms();
			pid_t p = fork();
			if (p == 0) {
				dup2(devnull, 1);
				dup2(devnull, 2);
				execv(cv[c][0], cv[c]);
				_exit(127);
			}
			int st = 0;
			struct rusage ru;
			if (p < 0 || wait4(p, &st, 0, &ru) < 0)
				return 1;
			double t1 = now_ms();
			if (!WIFEXITED(st) || WEXITSTATUS(st))
				fprintf(stderr, "command %d failed: status %d\n", c, st);
			if (i >= 0) {
				w[c * n + i] = t1 - t0;
				u[c * n + i] = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
					       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
			}
		}
	for (int c = 0; c < nc; c++) {
		double *wc = w + c * n, *uc = u + c * n;
		qsort(wc, (size_t)n, sizeof *wc, cmp);
		qsort(uc, (size_t)n, sizeof *uc, cmp);
		printf("wall med %6.2f p25 %6.2f p75 %6.2f min %6.2f | cpu med %5.2f | %.70s\n", wc[n / 2], wc[n / 4],
		       wc[3 * n / 4], wc[0], uc[n / 2], argv[c + 2]);
	}
	return 0;
}
