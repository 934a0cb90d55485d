#include "core/backoff.h"

#include <openssl/rand.h>
#include <stdlib.h>
#include <time.h>

struct bo {
	uint32_t base, cap, floor;
	uint32_t attempts;
	bo_rng_fn rng;
	void *rng_ud;
	uint64_t state; /* default generator */
};

/* splitmix64: enough for jitter; seeded from the OS so that processes started together differ. */
static uint32_t default_rng(void *ud)
{
	bo *b = ud;
	uint64_t z = (b->state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return (uint32_t)((z ^ (z >> 31)) >> 32);
}

bo *bo_new(uint32_t base_ms, uint32_t cap_ms, uint32_t floor_ms, bo_rng_fn rng, void *rng_ud)
{
	bo *b;
	if (!base_ms || cap_ms < base_ms || floor_ms > base_ms)
		return NULL;
	b = calloc(1, sizeof *b);
	if (!b)
		return NULL;
	b->base = base_ms;
	b->cap = cap_ms;
	b->floor = floor_ms;
	if (rng) {
		b->rng = rng;
		b->rng_ud = rng_ud;
	} else {
		b->rng = default_rng;
		b->rng_ud = b;
		if (RAND_bytes((unsigned char *)&b->state, sizeof b->state) != 1)
			b->state = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)b;
	}
	return b;
}

void bo_free(bo *b) { free(b); }

uint32_t bo_ceiling(const bo *b)
{
	uint64_t c = b->base;
	/* Stop doubling once past the cap: avoids shifting into overflow after many failures. */
	for (uint32_t i = 0; i < b->attempts && c < b->cap; i++)
		c <<= 1;
	return c > b->cap ? b->cap : (uint32_t)c;
}

uint32_t bo_next(bo *b)
{
	uint32_t ceil = bo_ceiling(b), span;
	if (b->attempts < UINT32_MAX)
		b->attempts++;
	span = ceil - b->floor;
	/* Modulo bias is at most span/2^32: irrelevant for millisecond delays. */
	return b->floor + (uint32_t)((uint64_t)b->rng(b->rng_ud) % ((uint64_t)span + 1));
}

uint32_t bo_attempts(const bo *b) { return b->attempts; }
void bo_reset(bo *b) { b->attempts = 0; }
