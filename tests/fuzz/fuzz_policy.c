/* libFuzzer: a route's policy: mapping from YAML (the whole input is the document), then a few evaluations. */
#include <stddef.h>
#include <stdint.h>

#include "guard/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[400];
	cfg_doc *d = cfg_load_string("fuzz.yaml", (const char *)data, size, err, sizeof err);
	pol *p = NULL;
	pol_verdict v;

	if (!d)
		return 0;
	if (pol_from_cfg(d, cfg_get(cfg_root(d), "policy"), &p) == 0) {
		(void)pol_eval(p, POL_TOOL, "write_file", "ops-1", &v);
		(void)pol_eval(p, POL_PROMPT, "p", NULL, &v);
		(void)pol_eval(p, POL_RESOURCE, "file:///etc/passwd", "", &v);
		(void)pol_revision(p);
		pol_free(p);
	}
	cfg_free(d);
	return 0;
}
