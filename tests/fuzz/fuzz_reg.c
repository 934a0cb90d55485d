/* libFuzzer harness for the registration line (the edge parses it from anyone who completes TLS): the line
 * reader in arbitrary chunks, then both parsers; a parsed request re-encodes and parses back the same. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tunnel/reg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static reg_linebuf lb;
	reg_request rq, back;
	reg_response rs;
	char err[128], line[REG_MAX_LINE + 2];
	size_t off = 0, chunk = size ? (size_t)data[0] % 7 + 1 : 1;
	int n;

	memset(&lb, 0, sizeof lb);
	while (off < size && !lb.done) {
		size_t take = size - off < chunk ? size - off : chunk;
		ssize_t used = reg_line_feed(&lb, data + off, take);
		if (used < 0)
			return 0;
		if ((size_t)used > take || lb.len > REG_MAX_LINE)
			abort();
		off += (size_t)used;
	}
	if (!lb.done)
		return 0;
	reg_response_parse(lb.buf, &rs, err, sizeof err);
	if (reg_request_parse(lb.buf, &rq, err, sizeof err) == 0) {
		if (!rq.token[0] || !rq.connector_id[0] || rq.slot > 1023)
			abort();
		n = reg_request_encode(&rq, line, sizeof line);
		if (n > 0) {
			line[n - 1] = 0;
			if (reg_request_parse(line, &back, err, sizeof err) != 0 || strcmp(back.token, rq.token) ||
			    strcmp(back.connector_id, rq.connector_id) || back.slot != rq.slot)
				abort();
			reg_request_wipe(&back);
		}
		reg_request_wipe(&rq);
	}
	return 0;
}
