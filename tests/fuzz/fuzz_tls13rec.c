/* libFuzzer harness for the TLS 1.3 record layer. Even first byte: the rest is ciphertext from a peer that
 * does not know the keys (framing, limits, authentication). Odd: the rest is a script of (type, length,
 * content) records a keyed peer seals, which must open to exactly what was sealed and be handled (alerts,
 * KeyUpdate with the reply followed by the peer) without losing step. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/tls13rec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t rec[TREC_MAX_PLAIN + TREC_OVERHEAD], out[TREC_MAX_CIPHER], reply[TREC_OVERHEAD + 5], scratch[TREC_OVERHEAD + 5];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t s1[48], s2[48];
	trec *us = NULL, *peer = NULL;
	uint16_t suite;

	if (size < 2)
		return 0;
	suite = (uint16_t)(0x1301 + data[1] % 3);
	for (size_t i = 0; i < sizeof s1; i++) {
		s1[i] = (uint8_t)(i * 7);
		s2[i] = (uint8_t)(i * 13 + 1);
	}
	if (trec_new(&us, suite, s1, s2, suite == 0x1302 ? 48 : 32) < 0 ||
	    trec_new(&peer, suite, s2, s1, suite == 0x1302 ? 48 : 32) < 0)
		abort();
	if (!(data[0] & 1)) {
		const uint8_t *p = data + 2;
		size_t n = size - 2;
		for (;;) {
			size_t olen, rl;
			uint8_t type;
			int alert;
			ssize_t k = trec_record_len(p, n);
			if (k <= 0)
				break;
			if ((size_t)k > n || (size_t)k > TREC_HEADER + TREC_MAX_CIPHER)
				abort();
			if (trec_open(us, p, (size_t)k, out, &olen, &type) < 0)
				break;
			if (olen > TREC_MAX_PLAIN)
				abort();
			if (type != TREC_DATA && trec_control(us, type, out, olen, reply, &rl, &alert) != TREC_CTL_NONE)
				break;
			p += k;
			n -= (size_t)k;
		}
		goto out;
	}
	for (size_t o = 2; o + 3 <= size;) {
		uint8_t type = data[o], otype;
		size_t len = ((size_t)data[o + 1] << 8 | data[o + 2]) % (TREC_MAX_PLAIN + 1), olen, rl, rl2;
		int alert, r;
		ssize_t k;
		o += 3;
		if (len > size - o)
			len = size - o;
		if (type == 0) /* a record with no content type cannot be sealed meaningfully */
			type = TREC_DATA;
		if ((k = trec_seal(peer, type, data + o, len, rec)) != (ssize_t)(len + TREC_OVERHEAD))
			abort();
		o += len;
		if (trec_record_len(rec, (size_t)k) != k || trec_open(us, rec, (size_t)k, out, &olen, &otype) != 0)
			abort();
		/* The type byte ends the content, so zeros at its end survive the padding strip. */
		if (otype != type || olen != len || memcmp(out, data + o - len, olen) != 0)
			abort();
		if (otype == TREC_DATA)
			continue;
		r = trec_control(us, otype, out, olen, reply, &rl, &alert);
		if (r != TREC_CTL_NONE)
			break;
		if (otype == TREC_HANDSHAKE) {
			/* A KeyUpdate moved our read keys: the peer's next records use its next keys too. */
			if (trec_key_update(peer, false, scratch) < 0)
				abort();
			if (rl) {
				if (trec_open(peer, reply, rl, out, &olen, &otype) != 0 || otype != TREC_HANDSHAKE ||
				    trec_control(peer, otype, out, olen, scratch, &rl2, &alert) != TREC_CTL_NONE || rl2)
					abort();
			}
		}
	}
out:
	trec_free(us);
	trec_free(peer);
	return 0;
}
