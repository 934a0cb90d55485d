/* libFuzzer harness for the sandbox's cgroup detection parsers (mountinfo, /proc/self/cgroup, controller
 * lists, keyed files): any text, no crash, every output NUL-terminated and within its field. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sandbox/engine/cgroup.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = 0;
	/* A form feed splits the input: mountinfo before it, /proc/self/cgroup after. */
	char *split = memchr(text, '\f', size);
	const char *pc = split ? split + 1 : text;
	if (split)
		*split = 0;
	struct cgr_mounts m;
	cgr_parse_mountinfo(text, &m);
	cgr_parse_proc_cgroup(pc, &m);
	if (strnlen(m.v2_mount, CGR_PATH_MAX) == CGR_PATH_MAX || strnlen(m.v2_path, CGR_PATH_MAX) == CGR_PATH_MAX)
		abort();
	for (int c = 0; c < CGR_NCTRL; c++)
		if (strnlen(m.v1_mount[c], CGR_PATH_MAX) == CGR_PATH_MAX || strnlen(m.v1_path[c], CGR_PATH_MAX) == CGR_PATH_MAX)
			abort();
	if (cgr_parse_controllers(text) & ~7u)
		abort();
	(void)cgr_parse_keyed(text, "oom_kill");
	(void)cgr_parse_keyed(pc, "max");
	free(text);
	return 0;
}
