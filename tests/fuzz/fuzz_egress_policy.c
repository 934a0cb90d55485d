/* Fuzzes the egress policy: the first line is a list of patterns (space separated, "!" = deny),
 * the rest is a requested host; the host is checked and, when it is an IP literal, the address too. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox/egress/egress_policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t plen = nl ? (size_t)(nl - data) : 0;
	const char *host = nl ? (const char *)nl + 1 : (const char *)data;
	size_t hlen = nl ? size - plen - 1 : size;
	egp_policy *p = egp_new();
	char *pats = malloc(plen + 1), err[128], norm[EGP_MAX_HOST + 1];
	struct egp_decision d;
	struct egp_addr ip;

	if (!p || !pats)
		goto out;
	memcpy(pats, data, plen);
	pats[plen] = 0;
	for (char *save = NULL, *t = strtok_r(pats, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
		if (t[0] == '!')
			egp_deny(p, t + 1, err, sizeof err);
		else
			egp_allow(p, t, err, sizeof err);
	}
	if (egp_check_host(p, host, hlen, 443, norm, sizeof norm, &ip, &d) != 0 || !d.reason || !d.rule[0])
		abort();
	if (strlen(norm) > EGP_MAX_HOST)
		abort();
	if (ip.family) {
		if (egp_check_addr(p, norm, &ip, 443, &d) != 0 || !d.reason)
			abort();
	} else if (egp_parse_ip(host, hlen, &ip) == 0) {
		egp_check_addr(p, norm, &ip, 80, &d);
	}
out:
	free(pats);
	egp_free(p);
	return 0;
}
