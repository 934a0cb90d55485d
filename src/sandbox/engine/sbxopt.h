/* Parsers of the engine's limit values as a person writes them (`--cpus 1.5`, `--disk 10G`, `--pids 64`),
 * shared by `postern sandbox run` and `postern sandbox serve` so that both accept and refuse the same. */
#ifndef POSTERN_SBXOPT_H
#define POSTERN_SBXOPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 0, or -EINVAL with "OPT VALUE: expected ..." in err. */
int sbxopt_cpus(const char *v, unsigned *millis, char *err, size_t errlen);
/* --disk SIZE: 16M to 16T, or none (WS_QUOTA_NONE). */
int sbxopt_disk(const char *v, uint64_t *out, char *err, size_t errlen);
/* Where the session lives, as run and serve both take it: --workspace DIR or --scratch-workspace DIR (one
 * of them), --disk SIZE, --image DIR. 1 when flag a is one of these (applied), 0 when it is not, -EINVAL. */
int sbxopt_place(const char *a, const char *v, const char **workspace, bool *scratch, uint64_t *disk_bytes,
		 const char **image, char *err, size_t errlen);
int sbxopt_count(const char *opt, const char *v, long max, unsigned *out, char *err, size_t errlen);

#endif
