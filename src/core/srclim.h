/* Failures per source address, for a listener that must not let one host hammer an expensive check (the
 * edge's connector registration: a token lookup in SQLite on the event loop, and a log line each).
 * A source is an IPv4 address (/32) or an IPv6 /64 (one host usually holds a whole /64); IPv4-mapped IPv6 is
 * IPv4. Each source has a token bucket of `burst` failures that refills over `window_ms`; the failure that
 * empties it refuses the source for `block_ms` (srl_refused then says so without any other work).
 * Log lines are aggregated: the first failure of a source's interval is for the caller to log in full, the
 * rest of the interval (failures and refusals) comes back once from srl_report as counts; an interval
 * with activity is followed by another, so a sustained attack gives one line per source per window_ms.
 * The table is bounded (`slots` sources, open addressing with a keyed hash): a new source evicts the
 * least recently seen one of its probe run, preferring one that is not blocked. Time comes in as now_ms
 * (any monotonic clock). Pure: no I/O, no clock, not thread-safe. */
#ifndef POSTERN_CORE_SRCLIM_H
#define POSTERN_CORE_SRCLIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define SRL_BURST_DEFAULT 10u        /* failures a source may have in a window... */
#define SRL_WINDOW_DEFAULT_MS 60000u /* ...which refill over a minute: 10 failures/min */
#define SRL_BLOCK_DEFAULT_MS 60000u  /* then it is refused for a minute */
#define SRL_SLOTS_DEFAULT 4096u      /* sources tracked at once */
#define SRL_SLOTS_MAX (1u << 20)
#define SRL_SOURCE_MAX 64            /* "v6/64" */

typedef struct srl_config {
	uint32_t burst;     /* 0: no limit (srl_refused is always false; reports still aggregate) */
	uint32_t window_ms; /* >0 */
	uint32_t block_ms;
	uint32_t slots;     /* rounded up to a power of two, at least 16 */
} srl_config;

void srl_config_default(srl_config *c);

typedef struct srl srl;
/* 0, -EINVAL (window_ms 0, slots over SRL_SLOTS_MAX), -ENOMEM. */
int srl_new(const srl_config *cfg, srl **out);
void srl_free(srl *l);

/* True while sa's source is refused (the refusal is counted for srl_report). Sources of an unknown family
 * (AF_UNIX) are never refused. */
bool srl_refused(srl *l, const struct sockaddr *sa, uint64_t now_ms);

#define SRL_LOG 1     /* the first failure of the source's interval: log it in full */
#define SRL_BLOCKED 2 /* this failure emptied the bucket: the source is refused from now on */
/* One failure from sa: a mask of SRL_LOG and SRL_BLOCKED. */
int srl_fail(srl *l, const struct sockaddr *sa, uint64_t now_ms);

typedef struct srl_report {
	char source[SRL_SOURCE_MAX]; /* "192.0.2.7/32", "2001:db8:1:2::/64" */
	uint32_t failures;           /* after the one logged in full */
	uint32_t refused;
	uint32_t interval_ms;
	bool blocked; /* refused now */
} srl_report;
/* Calls fn for every source whose interval ended by now_ms with something counted, once. */
void srl_report_due(srl *l, uint64_t now_ms, void (*fn)(const srl_report *r, void *ud), void *ud);

/* The source sa counts as, formatted (SRL_SOURCE_MAX); "-" for an unknown family. */
const char *srl_source(const struct sockaddr *sa, char *buf, size_t len);
/* Sources tracked now; sources evicted to make room since srl_new. */
size_t srl_count(const srl *l);
uint64_t srl_evictions(const srl *l);

#endif
