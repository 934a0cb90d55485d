/* postern boundary -c gateway.yaml: who can see what, read from a gateway (or proxy) config alone: the edges
 * (SNI names, sizes, timing), the gateway (plaintext of every route, the keys and credentials it holds), each
 * upstream (its own traffic; whether the client's Authorization reaches it), sandbox routes (their boundary and
 * egress), the audit sinks (which fields, arguments redacted or dropped, plaintext transports), and findings for
 * risky settings. Printed as text or as a Mermaid flowchart. The config is read as YAML with core/cfg (the guard
 * keys auth/policy/audit included), not with the daemon's loader: a review may run where the files it names are
 * absent, and the report must not depend on which guard keys this build's loader knows. */
#ifndef POSTERN_GATEWAY_BOUNDARY_H
#define POSTERN_GATEWAY_BOUNDARY_H

#include <stddef.h>
#include <stdio.h>

typedef struct bnd_model bnd_model;

typedef enum bnd_severity { BND_LOW = 0, BND_MEDIUM, BND_HIGH } bnd_severity;

/* Reads path. NULL on failure with "FILE:LINE: key: reason" in err. */
bnd_model *bnd_load(const char *path, char *err, size_t errlen);
void bnd_free(bnd_model *m);

size_t bnd_finding_count(const bnd_model *m);
/* The i-th finding: its severity, the config key it is about ("routes.files.auth") and the text. */
int bnd_finding(const bnd_model *m, size_t i, bnd_severity *sev, const char **key, const char **text);

/* The report as text (a section per party, then the findings), or as a Mermaid flowchart. 0 or -EIO. */
int bnd_write_text(const bnd_model *m, FILE *f);
int bnd_write_mermaid(const bnd_model *m, FILE *f);

#endif
