/* libFuzzer: the pins_file parser, then a dump and a re-load of what it accepted (which must succeed), and the
 * canonical hash of the input as a tool definition. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "guard/pins.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	pin_table *t = NULL, *u = NULL;
	char err[200], hex[PIN_HEX_LEN + 1], *text = NULL;
	size_t len;
	json_t *tool;

	if (pin_new(&t) || pin_new(&u))
		goto done;
	if (pin_load_buf(t, (const char *)data, size, err, sizeof err) == 0 && pin_dump(t, &text, &len) == 0 &&
	    (pin_load_buf(u, text, len, err, sizeof err) != 0 || pin_count(u) != pin_count(t)))
		abort(); /* what we wrote must read back */
	if ((tool = json_loadb((const char *)data, size, 0, NULL))) {
		(void)pin_tool_hash(tool, hex);
		json_decref(tool);
	}
done:
	free(text);
	pin_free(t);
	pin_free(u);
	return 0;
}
