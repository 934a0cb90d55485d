/* postern audit verify [--partial] FILE...: checks the hash chain of audit files (rotated files in order,
 * oldest first: FILE.N ... FILE.1 FILE, as proxy/auditlog rotates them; a set given in another order gets a
 * hint) and names the first removed, inserted or edited line. Exit 0 intact, 1 broken, 2 usage or
 * I/O error. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "guard/audit.h"
#include "guard/auditcmd.h"

static int (*emit_fn)(int argc, char **argv);

void auditcmd_set_emit(int (*fn)(int argc, char **argv))
{
	emit_fn = fn;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: postern audit verify [--partial] FILE...\n"
		   "       postern audit emit -c FILE [options]   (a test and operations tool: --help)\n\n"
		   "Checks the hash chain of audit files given oldest first: a rotated set as FILE.N ... FILE.1 FILE\n"
		   "(the chain continues across them).\n"
		   "Exit 0 when intact; 1 naming FILE:LINE and what broke (removed, inserted, edited, incomplete);\n"
		   "2 on a usage or read error. --partial: the first file need not start the chain (older files\n"
		   "were rotated away). Dropped last lines leave no trace in the files: compare the last seq with\n"
		   "the syslog copy.\n");
}

/* The rotation number of path as a file of the set base (0 for base itself), or -1. */
static long rot_index(const char *path, const char *base)
{
	size_t n = strlen(base);
	char *end;
	long k;
	if (strncmp(path, base, n))
		return -1; /* -1: not a file of this set */
	if (!path[n])
		return 0;
	if (path[n] != '.' || !path[n + 1])
		return -1; /* -1: not a file of this set */
	k = strtol(path + n + 1, &end, 10);
	return *end || k <= 0 ? -1 : k;
}

/* A rotated set given newest first (a shell glob: FILE FILE.1 FILE.10 FILE.2): says the order to use. */
static void order_hint(int argc, char **argv, int first)
{
	for (int i = first; i < argc; i++)
		for (int j = i + 1; j < argc; j++) {
			long a = -1, b = -1;
			/* the shorter name that is a prefix of the other is the base */
			for (int k = first; k < argc && (a < 0 || b < 0); k++) {
				a = rot_index(argv[i], argv[k]);
				b = rot_index(argv[j], argv[k]);
			}
			if (a >= 0 && b >= 0 && b > a) {
				fprintf(stderr, "postern audit verify: hint: %s is older than %s but comes after it; give "
						"rotated files oldest first (FILE.N ... FILE.2 FILE.1 FILE)\n",
					argv[j], argv[i]);
				return;
			}
		}
}

int audit_main(int argc, char **argv)
{
	aud_verify *v = NULL;
	aud_report r;
	char err[512];
	bool partial = false;
	int first = 2, rc = 2;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "emit") && emit_fn)
		return emit_fn(argc - 1, argv + 1);
	if (strcmp(argv[1], "verify")) {
		fprintf(stderr, "postern audit: unknown subcommand '%s' (verify, emit)\n", argv[1]);
		return 2;
	}
	if (first < argc && !strcmp(argv[first], "--partial"))
		partial = true, first++;
	if (first >= argc) {
		fprintf(stderr, "postern audit verify: no FILE given\n");
		return 2;
	}
	if (aud_verify_new(partial, &v) < 0) {
		fprintf(stderr, "postern audit verify: out of memory\n");
		return 2;
	}
	for (int i = first; i < argc; i++) {
		if (aud_verify_file(v, argv[i], err, sizeof err) < 0) {
			fprintf(stderr, "postern audit verify: %s\n", err);
			goto done;
		}
		aud_verify_report(v, &r);
		if (!r.ok)
			break;
	}
	aud_verify_report(v, &r);
	if (!r.ok) {
		printf("audit: %s:%lu: %s\n", r.file, r.line, r.what);
		order_hint(argc, argv, first);
		rc = 1;
		goto done;
	}
	printf("audit: intact: %llu record(s) in %d file(s), seq %llu..%llu%s\n", (unsigned long long)r.lines,
	       argc - first, (unsigned long long)r.first_seq, (unsigned long long)r.last_seq,
	       r.lines == 0 ? " (empty)" : r.from_genesis ? " from the genesis" : " (a continued chain)");
	rc = 0;
done:
	aud_verify_free(v);
	return rc;
}
