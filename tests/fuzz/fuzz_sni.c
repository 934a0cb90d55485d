/* libFuzzer harness for the ClientHello SNI parser: any bytes, every prefix decision consistent. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tunnel/sni.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char name[SNI_NAME_MAX], name2[SNI_NAME_MAX];
	int r = sni_parse(data, size, name, sizeof name);
	if (r == SNI_FOUND) {
		size_t n = strlen(name);
		if (n == 0 || n > 253)
			abort();
		for (size_t i = 0; i < n; i++)
			if (name[i] >= 'A' && name[i] <= 'Z')
				abort();
	}
	/* A decision never changes when more bytes arrive (the parser is fed growing prefixes). */
	if (r != SNI_NEED_MORE && size > 0) {
		uint8_t *more = malloc(size + 1);
		if (!more)
			return 0;
		memcpy(more, data, size);
		more[size] = 0x16;
		if (sni_parse(more, size + 1, name2, sizeof name2) != r)
			abort();
		if (r == SNI_FOUND && strcmp(name, name2))
			abort();
		free(more);
	}
	sni_split(name, "edge.example", NULL, 0, NULL, 0);
	return 0;
}
