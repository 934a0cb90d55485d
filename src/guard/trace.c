/* W3C traceparent: parse, generate, child spans. */
#include <errno.h>
#include <stdint.h>
#include <unistd.h>
#include <pthread.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/hex.h"
#include "guard/trace.h"

static bool lowhex(const char *s, size_t n, bool nonzero)
{
	bool any = false;
	for (size_t i = 0; i < n; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
		any |= s[i] != '0';
	}
	return any || !nonzero;
}

int trc_parse(const char *s, trc_ctx *out)
{
	size_t n = s ? strlen(s) : 0;
	unsigned flags;

	if (n < TRC_HEADER_LEN || !lowhex(s, 2, false) || !memcmp(s, "ff", 2) || s[2] != '-' || s[35] != '-' ||
	    s[52] != '-')
		return -EINVAL;
	/* Version 00 is exactly 55 characters; a later one may carry more after a '-'. */
	if (!memcmp(s, "00", 2) ? n != TRC_HEADER_LEN : (n > TRC_HEADER_LEN && s[TRC_HEADER_LEN] != '-'))
		return -EINVAL;
	if (!lowhex(s + 3, 32, true) || !lowhex(s + 36, 16, true) || !lowhex(s + 53, 2, false))
		return -EINVAL;
	memcpy(out->trace_id, s + 3, 32);
	out->trace_id[32] = 0;
	memcpy(out->span_id, s + 36, 16);
	out->span_id[16] = 0;
	sscanf(s + 53, "%2x", &flags);
	out->flags = (uint8_t)flags;
	return 0;
}

/* Trace and span ids need to be unique, not secret (W3C Trace Context: random, no confidentiality). OpenSSL's
 * RAND_bytes asks the kernel for the pid on every call (fork detection), a syscall per id that cost more than
 * the rest of the guard on a virtual machine; so ids come from xoshiro256** seeded once from RAND_bytes, and
 * reseeded in a forked child. */
static uint64_t prng_s[4];
static pid_t prng_pid;
static bool prng_ready;

static void prng_forked(void) { prng_ready = false; }

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static int prng_bytes(unsigned char *b, size_t n)
{
	if (!prng_ready) {
		if (RAND_bytes((unsigned char *)prng_s, sizeof prng_s) != 1)
			return -EIO;
		if (!prng_pid)
			pthread_atfork(NULL, NULL, prng_forked);
		prng_pid = getpid();
		prng_ready = true;
	}
	for (size_t i = 0; i < n; i += 8) {
		uint64_t r = rotl(prng_s[1] * 5, 7) * 9, t = prng_s[1] << 17;
		prng_s[2] ^= prng_s[0];
		prng_s[3] ^= prng_s[1];
		prng_s[1] ^= prng_s[2];
		prng_s[0] ^= prng_s[3];
		prng_s[2] ^= t;
		prng_s[3] = rotl(prng_s[3], 45);
		memcpy(b + i, &r, n - i < 8 ? n - i : 8);
	}
	return 0;
}

/* n random bytes as 2n hex digits, never all zero (the spec calls all-zero invalid). */
static int random_hex(char *out, size_t n)
{
	unsigned char b[16];
	bool any = false;
	do {
		if (prng_bytes(b, n) < 0)
			return -EIO;
		for (size_t i = 0; i < n; i++)
			any |= b[i] != 0;
	} while (!any);
	hex_encode(b, n, out);
	return 0;
}

int trc_new(trc_ctx *out)
{
	int rc;
	if ((rc = random_hex(out->trace_id, 16)) < 0 || (rc = random_hex(out->span_id, 8)) < 0)
		return rc;
	out->flags = 1;
	return 0;
}

int trc_child(const trc_ctx *parent, trc_ctx *out)
{
	trc_ctx c = *parent;
	int rc = random_hex(c.span_id, 8);
	if (rc == 0)
		*out = c;
	return rc;
}

void trc_format(const trc_ctx *c, char out[TRC_HEADER_LEN + 1])
{
	snprintf(out, TRC_HEADER_LEN + 1, "00-%s-%s-%02x", c->trace_id, c->span_id, c->flags);
}
