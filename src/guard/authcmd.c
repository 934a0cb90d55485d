/* postern auth hash-token SUBJECT [--scopes A,B]: reads a bearer token on stdin and prints its tokens_file
 * line (SUBJECT sha256:HEX [SCOPES]), so nobody writes a hash by hand and the token never sits in a file.
 * Exit 0 printed, 2 usage or a bad token. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "guard/auth.h"

#define AUTHCMD_MIN_TOKEN 16

static void usage(FILE *f)
{
	fprintf(f, "usage: postern auth hash-token SUBJECT [--scopes SCOPE,SCOPE...] < token\n\n"
		   "Reads one bearer token on stdin (a final newline is dropped) and prints the tokens_file line\n"
		   "for it: SUBJECT sha256:HEX [SCOPES]. Append it to the route's tokens_file (mode 0600).\n"
		   "Make tokens with e.g. `openssl rand -hex 32`; at least %d bytes are required.\n",
		AUTHCMD_MIN_TOKEN);
}

int auth_main(int argc, char **argv)
{
	char tok[AUTH_MAX_TOKEN + 3], line[AUTH_MAX_TOKEN + 512], err[300];
	const char *scopes = NULL;
	size_t n = 0;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (strcmp(argv[1], "hash-token")) {
		fprintf(stderr, "postern auth: unknown subcommand '%s' (hash-token)\n", argv[1]);
		return 2;
	}
	if (argc == 5 && !strcmp(argv[3], "--scopes"))
		scopes = argv[4];
	else if (argc != 3) {
		usage(stderr);
		return 2;
	}
	if (isatty(STDIN_FILENO))
		fprintf(stderr, "postern auth hash-token: reading the token on stdin (end with Enter, then Ctrl-D)\n");
	n = fread(tok, 1, sizeof tok - 1, stdin);
	if (ferror(stdin)) {
		fprintf(stderr, "postern auth hash-token: cannot read stdin\n");
		return 2;
	}
	if (n && tok[n - 1] == '\n')
		n--;
	if (n && tok[n - 1] == '\r')
		n--;
	if (n > AUTH_MAX_TOKEN || !feof(stdin)) {
		fprintf(stderr, "postern auth hash-token: the token is over %d bytes\n", AUTH_MAX_TOKEN);
		return 2;
	}
	if (n < AUTHCMD_MIN_TOKEN) {
		fprintf(stderr, "postern auth hash-token: the token is %zu bytes: use at least %d random bytes "
				"(openssl rand -hex 32)\n", n, AUTHCMD_MIN_TOKEN);
		return 2;
	}
	if (auth_token_line(argv[2], tok, n, scopes, line, sizeof line, err, sizeof err) < 0) {
		fprintf(stderr, "postern auth hash-token: %s\n", err);
		return 2;
	}
	fputs(line, stdout);
	return 0;
}
