/* Hex digits: one decoder for percent-escapes (HTTP targets, egress rules) and digests (token files). */
#include "hex.h"

int hex_val(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1; /* -1: not a hex digit */
}
