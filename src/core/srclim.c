#include "core/srclim.h"

#include <errno.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/netaddr.h"

#define PROBE 8        /* slots a source may live in: lookups and evictions stay O(1) */
#define MILLI 1000ull  /* the bucket counts thousandths of a failure, so refill needs no floating point */

struct ent {
	na_cidr key;            /* family 0: empty slot */
	uint64_t seen, upd;     /* last touched; last refill */
	uint64_t blocked_until;
	uint64_t report_at;     /* end of the open interval; 0: none (the next failure is logged in full) */
	uint64_t tokens;        /* milli-failures left */
	uint32_t failures, refused; /* in the open interval, after the first failure */
};

struct srl {
	srl_config cfg;
	struct ent *v;
	size_t mask, n;
	uint64_t evictions;
	uint64_t seed[2]; /* keys the hash: an attacker cannot aim its sources at one probe run */
};

void srl_config_default(srl_config *c)
{
	c->burst = SRL_BURST_DEFAULT;
	c->window_ms = SRL_WINDOW_DEFAULT_MS;
	c->block_ms = SRL_BLOCK_DEFAULT_MS;
	c->slots = SRL_SLOTS_DEFAULT;
}

int srl_new(const srl_config *cfg, srl **out)
{
	srl *l;
	size_t slots = 16;
	*out = NULL;
	if (!cfg->window_ms || cfg->slots > SRL_SLOTS_MAX)
		return -EINVAL;
	while (slots < cfg->slots)
		slots *= 2;
	if (!(l = calloc(1, sizeof *l)))
		return -ENOMEM;
	if (!(l->v = calloc(slots, sizeof *l->v))) {
		free(l);
		return -ENOMEM;
	}
	l->cfg = *cfg;
	l->mask = slots - 1;
	if (RAND_bytes((unsigned char *)l->seed, sizeof l->seed) != 1) {
		l->seed[0] = (uint64_t)(uintptr_t)l ^ 0x9e3779b97f4a7c15ull;
		l->seed[1] = (uint64_t)(uintptr_t)l->v;
	}
	*out = l;
	return 0;
}

void srl_free(srl *l)
{
	if (!l)
		return;
	free(l->v);
	free(l);
}

static bool key_of(const struct sockaddr *sa, na_cidr *k)
{
	memset(k, 0, sizeof *k);
	if (sa->sa_family == AF_INET) {
		k->family = AF_INET;
		k->bits = 32;
		memcpy(k->addr, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a)) {
			k->family = AF_INET;
			k->bits = 32;
			memcpy(k->addr, a->s6_addr + 12, 4);
		} else {
			k->family = AF_INET6;
			k->bits = 64;
			memcpy(k->addr, a->s6_addr, 8);
		}
		return true;
	}
	return false;
}

static uint64_t hash(const srl *l, const na_cidr *k)
{
	uint64_t h = l->seed[0] ^ k->family;
	for (size_t i = 0; i < sizeof k->addr; i++)
		h = (h ^ k->addr[i]) * 0x100000001b3ull;
	h ^= l->seed[1];
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	return h ^ (h >> 33);
}

static bool same(const na_cidr *a, const na_cidr *b)
{
	return a->family == b->family && !memcmp(a->addr, b->addr, sizeof a->addr);
}

static void refill(const srl *l, struct ent *e, uint64_t now)
{
	uint64_t cap = (uint64_t)l->cfg.burst * MILLI, dt = now > e->upd ? now - e->upd : 0;
	if (dt >= l->cfg.window_ms)
		e->tokens = cap;
	else
		e->tokens += dt * cap / l->cfg.window_ms;
	if (e->tokens > cap)
		e->tokens = cap;
	e->upd = now;
}

/* An entry that remembers nothing worth keeping: no open interval, no block, a full bucket. */
static bool idle(const srl *l, struct ent *e, uint64_t now)
{
	if (e->report_at || now < e->blocked_until)
		return false;
	refill(l, e, now);
	return e->tokens >= (uint64_t)l->cfg.burst * MILLI;
}

static struct ent *find(srl *l, const na_cidr *k, uint64_t now, bool create)
{
	size_t i = (size_t)hash(l, k);
	struct ent *free_e = NULL, *stale = NULL, *old = NULL, *old_unblocked = NULL;
	for (size_t p = 0; p < PROBE; p++) {
		struct ent *e = &l->v[(i + p) & l->mask];
		if (!e->key.family) {
			if (!free_e)
				free_e = e;
			continue;
		}
		if (same(&e->key, k))
			return e;
		if (!create)
			continue;
		if (!stale && idle(l, e, now))
			stale = e;
		if (!old || e->seen < old->seen)
			old = e;
		if (now >= e->blocked_until && (!old_unblocked || e->seen < old_unblocked->seen))
			old_unblocked = e;
	}
	if (!create)
		return NULL;
	if (free_e) {
		l->n++;
	} else if (stale) {
		free_e = stale;
	} else {
		free_e = old_unblocked ? old_unblocked : old;
		l->evictions++;
	}
	memset(free_e, 0, sizeof *free_e);
	free_e->key = *k;
	free_e->tokens = (uint64_t)l->cfg.burst * MILLI;
	free_e->upd = free_e->seen = now;
	return free_e;
}

bool srl_refused(srl *l, const struct sockaddr *sa, uint64_t now_ms)
{
	na_cidr k;
	struct ent *e;
	if (!l->cfg.burst || !key_of(sa, &k) || !(e = find(l, &k, now_ms, false)) || now_ms >= e->blocked_until)
		return false;
	e->seen = now_ms;
	e->refused++;
	if (!e->report_at)
		e->report_at = now_ms + l->cfg.window_ms;
	return true;
}

int srl_fail(srl *l, const struct sockaddr *sa, uint64_t now_ms)
{
	na_cidr k;
	struct ent *e;
	int rc = 0;
	if (!key_of(sa, &k) || !(e = find(l, &k, now_ms, true)))
		return SRL_LOG;
	e->seen = now_ms;
	if (!e->report_at) {
		e->report_at = now_ms + l->cfg.window_ms;
		rc |= SRL_LOG;
	} else {
		e->failures++;
	}
	if (!l->cfg.burst)
		return rc;
	refill(l, e, now_ms);
	if (e->tokens >= MILLI)
		e->tokens -= MILLI;
	if (e->tokens < MILLI && now_ms >= e->blocked_until) {
		e->blocked_until = now_ms + l->cfg.block_ms;
		rc |= SRL_BLOCKED;
	}
	return rc;
}

void srl_report_due(srl *l, uint64_t now_ms, void (*fn)(const srl_report *r, void *ud), void *ud)
{
	for (size_t i = 0; i <= l->mask; i++) {
		struct ent *e = &l->v[i];
		srl_report r;
		if (!e->key.family || !e->report_at || now_ms < e->report_at)
			continue;
		if (!e->failures && !e->refused) {
			e->report_at = 0; /* a quiet interval: the next failure is news again */
			continue;
		}
		na_cidr_format(&e->key, r.source, sizeof r.source);
		r.failures = e->failures;
		r.refused = e->refused;
		r.interval_ms = l->cfg.window_ms;
		r.blocked = now_ms < e->blocked_until;
		e->failures = e->refused = 0;
		e->report_at = now_ms + l->cfg.window_ms;
		fn(&r, ud);
	}
}

const char *srl_source(const struct sockaddr *sa, char *buf, size_t len)
{
	na_cidr k;
	if (!key_of(sa, &k)) {
		snprintf(buf, len, "-");
		return buf;
	}
	return na_cidr_format(&k, buf, len);
}

size_t srl_count(const srl *l) { return l->n; }
uint64_t srl_evictions(const srl *l) { return l->evictions; }
