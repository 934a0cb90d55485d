/* libFuzzer: a route's policy: mapping read by pol_from_cfg, then a few evaluations. The bytes choose a
 * document from a small grammar (keys right or misspelt, actions, globs, nesting kinds), always well-formed
 * YAML: libfyaml 0.7.12 itself hangs (fy_scan_directive), leaks and crashes (fy_indent_vacuum_internal) on
 * some raw inputs, which is a libfyaml matter and would hide what this harness is for. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "guard/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const keys[] = { "tool", "prompt", "resource", "client", "tols", "name", "match", "action" };
static const char *const vals[] = { "allow", "deny", "approve", "block", "write_*", "*", "[a-", "ops-?",
				    "file:///etc/*", "", "\\\\*", "x" };
static const char *const tops[] = { "default", "approval_timeout", "rules", "defualt" };
static const char *const durs[] = { "5m", "10ms", "1s", "25h", "x", "90" };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char yaml[8192], err[400];
	size_t o = 0, i = 0;
	cfg_doc *d;
	pol *p = NULL;
	pol_verdict v;

#define NEXT() (i < size ? data[i++] : 0)
#define PUT(...) (o += (size_t)snprintf(yaml + o, o < sizeof yaml ? sizeof yaml - o : 0, __VA_ARGS__))
	PUT("policy:\n");
	for (int t = NEXT() % 4; t >= 0 && o < sizeof yaml - 512; t--) {
		unsigned top = NEXT() % 4;
		if (top == 2) {
			PUT("  rules:\n");
			for (int r = NEXT() % 6; r >= 0 && o < sizeof yaml - 512; r--) {
				unsigned shape = NEXT();
				if (shape % 7 == 0) {
					const char *val = vals[NEXT() % 12];
					PUT("    - '%s'\n", val);
					continue;
				}
				PUT("    - {");
				if (shape & 8)
					PUT("match: {");
				for (int m = NEXT() % 3; m >= 0; m--) {
					const char *k = keys[NEXT() % 8], *val = vals[NEXT() % 12];
					PUT("%s: '%s'%s", k, val, m ? ", " : "");
				}
				if (shape & 8)
					PUT("}");
				if (shape & 16) {
					const char *a = vals[NEXT() % 4];
					PUT(", action: '%s'", a);
				}
				if (shape & 32) {
					const char *n = vals[NEXT() % 12];
					PUT(", name: '%s'", n);
				}
				PUT("}\n");
			}
		} else if (top == 1) {
			const char *du = durs[NEXT() % 6];
			PUT("  approval_timeout: '%s'\n", du);
		} else {
			const char *val = vals[NEXT() % 12];
			PUT("  %s: '%s'\n", tops[top], val);
		}
	}
	if (o >= sizeof yaml)
		return 0;
	if (!(d = cfg_load_string("fuzz.yaml", yaml, o, err, sizeof err)))
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
