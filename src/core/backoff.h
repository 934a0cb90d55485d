/* Exponential backoff with full jitter: the n-th retry waits a uniformly random time in
 * [floor, min(cap, base * 2^n)]. Full jitter spreads a fleet of clients that failed together (an edge
 * restart) over the whole window instead of letting them retry in lockstep. The RNG is injectable so that
 * tests are deterministic. Pure computation: no timers, no I/O. */
#ifndef POSTERN_BACKOFF_H
#define POSTERN_BACKOFF_H

#include <stdint.h>

typedef struct bo bo;

/* Returns a uniformly distributed 32-bit value. */
typedef uint32_t (*bo_rng_fn)(void *ud);

#define BO_DEFAULT_BASE_MS 1000u
#define BO_DEFAULT_CAP_MS 30000u

/* base_ms > 0, cap_ms >= base_ms, floor_ms <= base_ms. rng NULL: a CSPRNG-seeded generator. NULL on bad
 * arguments or out of memory. */
bo *bo_new(uint32_t base_ms, uint32_t cap_ms, uint32_t floor_ms, bo_rng_fn rng, void *rng_ud);
void bo_free(bo *b);

/* The delay before the next attempt; each call counts one more failure. */
uint32_t bo_next(bo *b);
/* The upper bound bo_next would draw from now (for logs: "retrying in up to 4s"). */
uint32_t bo_ceiling(const bo *b);
/* Failures counted since the last reset. */
uint32_t bo_attempts(const bo *b);
/* Call after a success that held (not merely a connect that failed right after). */
void bo_reset(bo *b);

#endif
