/* Clients not routed yet, by source: one address (IPv4, or IPv6 /128) and its network (IPv4 /24, IPv6 /64)
 * may hold at most cfg.client_pending_per_ip and cfg.client_pending_per_net of them, so that one host (or
 * one customer's /64) cannot fill cfg.client_pending_max for everyone. The pending relays are also kept
 * oldest first, so that a full edge evicts the oldest instead of refusing the newest (edge_client.c). */
#include "tunnel/edge_int.h"

#include <openssl/rand.h>

enum { SRC_V4 = 1, SRC_V4NET, SRC_V6, SRC_V6NET };

struct edge_src {
	struct edge_src *next;
	uint8_t key[17]; /* kind, then the address bytes the kind covers, zero padded */
	uint32_t n;
};

int edgi_src_init(struct edge *e, char *err, size_t errlen)
{
	size_t nb = 64;
	/* Distinct sources are at most two per pending client: chains stay short at the cap. */
	while (nb < (size_t)e->cfg.client_pending_max && nb < (1u << 17))
		nb <<= 1;
	if (!(e->srcs = calloc(nb, sizeof *e->srcs))) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	e->nsrcs = nb;
	/* Sources are the client's choice (any address in its /64): a secret seed keeps chains from being
	 * aimed at one bucket. */
	if (RAND_bytes((unsigned char *)e->src_seed, sizeof e->src_seed) != 1) {
		snprintf(err, errlen, "RAND_bytes failed");
		return -EIO;
	}
	return 0;
}

void edgi_src_free(struct edge *e)
{
	for (size_t i = 0; e->srcs && i < e->nsrcs; i++)
		while (e->srcs[i]) {
			struct edge_src *s = e->srcs[i];
			e->srcs[i] = s->next;
			free(s);
		}
	free(e->srcs);
	e->srcs = NULL;
}

/* The two keys of sa; false when it is neither IPv4 nor IPv6 (nothing to count it under). */
static bool src_keys(const struct sockaddr *sa, uint8_t ip[17], uint8_t net[17])
{
	const uint8_t *a;
	memset(ip, 0, 17);
	memset(net, 0, 17);
	if (sa->sa_family == AF_INET6) {
		a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		if (!IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)a)) {
			ip[0] = SRC_V6, memcpy(ip + 1, a, 16);
			net[0] = SRC_V6NET, memcpy(net + 1, a, 8);
			return true;
		}
		a += 12; /* ::ffff:a.b.c.d counts as a.b.c.d */
	} else if (sa->sa_family == AF_INET) {
		a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr.s_addr;
	} else {
		return false;
	}
	ip[0] = SRC_V4, memcpy(ip + 1, a, 4);
	net[0] = SRC_V4NET, memcpy(net + 1, a, 3);
	return true;
}

static size_t src_bucket(const struct edge *e, const uint8_t key[17])
{
	uint64_t h = e->src_seed[0], w[3] = { 0, 0, 0 };
	memcpy(w, key, 17);
	for (int i = 0; i < 3; i++) {
		h ^= w[i] + e->src_seed[1];
		h *= 0x9e3779b97f4a7c15ull;
		h ^= h >> 31;
		h *= 0xbf58476d1ce4e5b9ull;
		h ^= h >> 29;
	}
	return (size_t)(h & (e->nsrcs - 1));
}

static struct edge_src *src_find(struct edge *e, const uint8_t key[17], bool create)
{
	size_t b = src_bucket(e, key);
	struct edge_src *s;
	for (s = e->srcs[b]; s; s = s->next)
		if (!memcmp(s->key, key, 17))
			return s;
	if (!create || !(s = calloc(1, sizeof *s)))
		return NULL;
	memcpy(s->key, key, 17);
	s->next = e->srcs[b];
	e->srcs[b] = s;
	return s;
}

static void src_put(struct edge *e, struct edge_src *s)
{
	struct edge_src **pp;
	if (!s || --s->n)
		return;
	for (pp = &e->srcs[src_bucket(e, s->key)]; *pp && *pp != s; pp = &(*pp)->next)
		;
	if (*pp)
		*pp = s->next;
	free(s);
}

int edgi_pend_add(struct relay *r, const char **why)
{
	struct edge *e = r->e;
	uint8_t kip[17], knet[17];
	struct edge_src *sip = NULL, *snet = NULL;
	*why = NULL;
	if (src_keys(tconn_peer_addr(r->tc), kip, knet)) {
		sip = src_find(e, kip, false);
		snet = src_find(e, knet, false);
		if (sip && sip->n >= (uint64_t)e->cfg.client_pending_per_ip) {
			*why = "per_address";
			return -EAGAIN;
		}
		if (snet && snet->n >= (uint64_t)e->cfg.client_pending_per_net) {
			*why = "per_network";
			return -EAGAIN;
		}
		if ((!sip && !(sip = src_find(e, kip, true))) || (!snet && !(snet = src_find(e, knet, true)))) {
			if (sip && !sip->n)
				sip->n = 1, src_put(e, sip);
			return -ENOMEM;
		}
		sip->n++;
		snet->n++;
	}
	r->src_ip = sip;
	r->src_net = snet;
	r->pending = true;
	e->npending++;
	adm_add(e->m_pending, 1);
	r->pend_prev = e->pend_last;
	r->pend_next = NULL;
	if (e->pend_last)
		e->pend_last->pend_next = r;
	else
		e->pend_first = r;
	e->pend_last = r;
	return 0;
}

void edgi_pend_del(struct relay *r)
{
	struct edge *e = r->e;
	if (!r->pending)
		return;
	r->pending = false;
	e->npending--;
	adm_add(e->m_pending, -1);
	src_put(e, r->src_ip);
	src_put(e, r->src_net);
	r->src_ip = r->src_net = NULL;
	if (r->pend_prev)
		r->pend_prev->pend_next = r->pend_next;
	else
		e->pend_first = r->pend_next;
	if (r->pend_next)
		r->pend_next->pend_prev = r->pend_prev;
	else
		e->pend_last = r->pend_prev;
	r->pend_prev = r->pend_next = NULL;
}
