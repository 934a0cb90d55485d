/* guard/auth: a route's auth: config (passthrough, bearer with a tokens_file, jwt with a jwks_file or a
 * jwks_url), config errors with file:line, tokens_file errors with their line, the Authorization check (good,
 * unknown, missing, malformed, scopes), JWT good / expired / wrong audience through the route, the
 * WWW-Authenticate value and the RFC 9728 metadata. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

#include "guard/auth.h"
#include "jwt_testkeys.h"

#define NOW 1700000000LL
#define RES "https://files.example.com/"
#define META "https://files.example.com/.well-known/oauth-protected-resource"
#define TOK_A "alice-token-0123456789abcdef"
#define TOK_B "bob-token-0123456789abcdef+/=="

static char dir[64], tokens[128], jwks[128];
static EVP_PKEY *rsa, *ec;

static void write_file(const char *path, const char *text, mode_t mode)
{
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	assert_int_equal(chmod(path, mode), 0);
}

static int setup(void **st)
{
	char a[600], b[600], err[200], *js;
	(void)st;
	snprintf(dir, sizeof dir, "/tmp/test_auth.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(tokens, sizeof tokens, "%s/tokens", dir);
	snprintf(jwks, sizeof jwks, "%s/jwks.json", dir);
	if (auth_token_line("alice", TOK_A, strlen(TOK_A), "files:read,files:write", a, sizeof a, err, sizeof err) < 0 ||
	    auth_token_line("bob@example.com", TOK_B, strlen(TOK_B), NULL, b, sizeof b, err, sizeof err) < 0)
		return -1;
	{
		char text[1400];
		snprintf(text, sizeof text, "# route files\n\n  %s\t%s", a, b);
		write_file(tokens, text, 0600);
	}
	rsa = tk_rsa(2048);
	ec = tk_p256();
	js = tk_jwks(tk_jwk(rsa, "r1", NULL), tk_jwk(ec, "e1", NULL), NULL);
	write_file(jwks, js, 0644);
	free(js);
	return 0;
}

static int teardown(void **st)
{
	(void)st;
	unlink(tokens);
	unlink(jwks);
	rmdir(dir);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ec);
	return 0;
}

/* Parses "auth: ..." YAML into an auth (NULL on error, message in err). */
static auth *load(const char *yaml, char *err, size_t errlen, size_t *warnings)
{
	char e[300];
	cfg_doc *d = cfg_load_string("route.yaml", yaml, strlen(yaml), e, sizeof e);
	auth *a = NULL;
	assert_non_null(d);
	if (auth_from_cfg(d, cfg_get(cfg_root(d), "auth"), &a) < 0) {
		snprintf(err, errlen, "%s", cfg_error(d));
		a = NULL;
	} else if (err) {
		snprintf(err, errlen, "%s", cfg_warning_count(d) ? cfg_warning(d, 0) : "");
	}
	if (warnings)
		*warnings = cfg_warning_count(d);
	cfg_free(d);
	return a;
}

static auth *bearer(const char *extra)
{
	char y[600], err[400];
	auth *a;
	snprintf(y, sizeof y, "auth:\n  bearer:\n    tokens_file: %s\n%s", tokens, extra ? extra : "");
	a = load(y, err, sizeof err, NULL);
	if (!a)
		fail_msg("%s", err);
	return a;
}

static auth *jwtroute(const char *extra)
{
	char y[800], err[400];
	auth *a;
	snprintf(y, sizeof y, "auth:\n  jwt:\n    issuer: https://idp.example.com/\n    jwks_file: %s\n%s", jwks,
		 extra ? extra : "");
	a = load(y, err, sizeof err, NULL);
	if (!a)
		fail_msg("%s", err);
	return a;
}

static void cfg_fails(const char *yaml, const char *want)
{
	char err[500] = "";
	auth *a = load(yaml, err, sizeof err, NULL);
	if (a || !strstr(err, want))
		fail_msg("want an error with \"%s\", got \"%s\"", want, a ? "(accepted)" : err);
}

static void test_passthrough(void **st)
{
	auth *a;
	auth_result r;
	char *js = NULL;
	size_t len;
	(void)st;
	a = load("auth: passthrough\n", NULL, 0, NULL);
	assert_non_null(a);
	assert_int_equal(auth_mode_of(a), AUTH_PASSTHROUGH);
	assert_int_equal(auth_check(a, "Basic Zm9vOmJhcg==", RES, NOW, &r), 0);
	assert_int_equal(r.status, 0);
	assert_int_equal(auth_check(a, NULL, RES, NOW, &r), 0);
	assert_int_equal(auth_metadata_json(a, RES, &js, &len), -ENOENT);
	assert_null(auth_jwks_url(a));
	auth_free(a);
	assert_int_equal(auth_from_cfg(NULL, NULL, &a), 0); /* no auth: key */
	assert_int_equal(auth_mode_of(a), AUTH_PASSTHROUGH);
	auth_free(a);
	assert_int_equal(auth_mode_of(NULL), AUTH_PASSTHROUGH);
	assert_string_equal(auth_mode_name(AUTH_JWT), "jwt");
}

static void test_bearer(void **st)
{
	auth *a = bearer(NULL), *s = bearer("    scopes: [files:read]\n");
	auth_result r;
	(void)st;
	assert_int_equal(auth_mode_of(a), AUTH_BEARER);
	assert_int_equal(auth_tokens_count(a), 2);
	assert_int_equal(auth_check(a, "Bearer " TOK_A, RES, NOW, &r), 0);
	assert_int_equal(r.status, 0);
	assert_string_equal(r.subject, "alice");
	assert_int_equal(auth_check(a, "bearer   " TOK_B "  ", RES, NOW, &r), 0); /* scheme case, spaces */
	assert_string_equal(r.subject, "bob@example.com");
	assert_int_equal(auth_check(a, "Bearer " TOK_A "x", RES, NOW, &r), -EACCES);
	assert_int_equal(r.status, 401);
	assert_string_equal(r.error, "invalid_token");
	assert_string_equal(r.reason, "unknown token");
	assert_string_equal(r.subject, "");
	assert_int_equal(auth_check(a, NULL, RES, NOW, &r), -EACCES);
	assert_int_equal(r.status, 401);
	assert_null(r.error); /* RFC 6750 3.1: no error code without credentials */
	assert_non_null(strstr(r.reason, "no Authorization header"));
	/* malformed headers */
	static const char *const bad[] = { "Basic Zm9vOmJhcg==", "Bearer", "Bearer ", "Bearer\t" TOK_A,
					   "Bearertoken", "Bearer a b", "Bearer to=ken", "Bearer tok\"en", "", "Token " TOK_A };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(auth_check(a, bad[i], RES, NOW, &r), -EACCES);
		assert_int_equal(r.status, 401);
		if (!r.error || strcmp(r.error, "invalid_request"))
			fail_msg("\"%s\": error %s", bad[i], r.error ? r.error : "NULL");
		assert_null(strstr(r.reason, TOK_A)); /* the token is not echoed */
	}
	{
		char *huge = malloc(AUTH_MAX_TOKEN + 20);
		memcpy(huge, "Bearer ", 7);
		memset(huge + 7, 'a', AUTH_MAX_TOKEN + 1);
		huge[AUTH_MAX_TOKEN + 8] = 0;
		assert_int_equal(auth_check(a, huge, RES, NOW, &r), -EACCES);
		assert_string_equal(r.reason, "token is too long");
		free(huge);
	}
	/* scopes: alice has files:read, bob has none */
	assert_int_equal(auth_check(s, "Bearer " TOK_A, RES, NOW, &r), 0);
	assert_int_equal(auth_check(s, "Bearer " TOK_B, RES, NOW, &r), -EPERM);
	assert_int_equal(r.status, 403);
	assert_string_equal(r.error, "insufficient_scope");
	assert_string_equal(r.subject, "bob@example.com");
	assert_string_equal(r.reason, "token lacks the scope \"files:read\"");
	auth_free(a);
	auth_free(s);
}

static void tokens_fail_n(const char *text, size_t len, const char *want)
{
	auth *a = bearer(NULL);
	char err[300] = "";
	int rc = auth_tokens_parse(a, "tokens", text, len, err, sizeof err);
	if (rc != -EINVAL || strcmp(err, want))
		fail_msg("want \"%s\", got %d \"%s\"", want, rc, err);
	assert_int_equal(auth_tokens_count(a), 2); /* the old set stays */
	auth_free(a);
}

static void tokens_fail(const char *text, const char *want)
{
	tokens_fail_n(text, strlen(text), want);
}

static void test_tokens_file(void **st)
{
	static const char *const H = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	static const char *const H2 = "sha256:1123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
	char t[800], y[300], err[400], line[300];
	size_t w = 9;
	auth *a;
	(void)st;
	snprintf(t, sizeof t, "# c\nalice %s\n\nbob\n", H);
	tokens_fail(t, "tokens:4: expected SUBJECT sha256:HEX [SCOPE,SCOPE...] (1 field)");
	snprintf(t, sizeof t, "alice %s a,b extra\n", H);
	tokens_fail(t, "tokens:1: expected SUBJECT sha256:HEX [SCOPE,SCOPE...] (4 fields)");
	tokens_fail("alice sha256:0123\n",
		    "tokens:1: second field must be sha256: and 64 lower-case hex digits (postern auth hash-token SUBJECT "
		    "prints the line)");
	tokens_fail("alice sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef\n",
		    "tokens:1: second field must be sha256: and 64 lower-case hex digits");
	tokens_fail("alice 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456\n",
		    "tokens:1: second field must be sha256: and 64 lower-case hex digits (postern auth hash-token SUBJECT "
		    "prints the line)");
	snprintf(t, sizeof t, "alice %s a,,b\n", H);
	tokens_fail(t, "tokens:1: scopes must be SCOPE,SCOPE... (RFC 6749 scope-tokens, no spaces)");
	snprintf(t, sizeof t, "alice %s\n#x\nbob %s\r\ncarol %s\n", H, H2, H);
	tokens_fail(t, "tokens:4: the same token as line 1 (one token, one subject)");
	tokens_fail("# only comments\n\n", "tokens: no token lines (add one with postern auth hash-token SUBJECT)");
	snprintf(t, sizeof t, "al\x01ice %s\n", H);
	tokens_fail(t, "tokens:1: subject must be 1..255 printable ASCII bytes without spaces");
	tokens_fail_n("# x\na\0b", 6, "tokens:2: a NUL byte");
	/* in a config: the error names the config line and the file line */
	write_file(tokens, "alice sha256:zz\n", 0600);
	snprintf(y, sizeof y, "routes:\n  - x\nauth:\n  bearer:\n    tokens_file: %s\n", tokens);
	assert_null(load(y, err, sizeof err, NULL));
	snprintf(line, sizeof line, "route.yaml:5: tokens_file: %s:1: second field", tokens);
	if (!strstr(err, line))
		fail_msg("%s", err);
	/* a group-readable file works and warns */
	snprintf(t, sizeof t, "alice %s\n", H);
	write_file(tokens, t, 0640);
	a = load(y, err, sizeof err, &w);
	assert_non_null(a);
	assert_int_equal(w, 1);
	assert_non_null(strstr(err, "route.yaml:5: tokens_file:"));
	assert_non_null(strstr(err, "is readable by its group (mode 0640): it holds a secret; run chmod 600 "));
	auth_free(a);
	write_file(tokens, t, 0600);
	a = load(y, err, sizeof err, &w);
	assert_int_equal(w, 0);
	auth_free(a);
	/* a missing file */
	snprintf(y, sizeof y, "auth:\n  bearer:\n    tokens_file: %s/nope\n", dir);
	assert_null(load(y, err, sizeof err, NULL));
	assert_non_null(strstr(err, "route.yaml:3: tokens_file: cannot open"));
	assert_non_null(strstr(err, "No such file"));
	/* the file setup wrote is restored for the other tests */
	{
		char a1[300], b1[300];
		assert_int_equal(auth_token_line("alice", TOK_A, strlen(TOK_A), "files:read,files:write", a1, sizeof a1, err,
						 sizeof err), 0);
		assert_int_equal(auth_token_line("bob@example.com", TOK_B, strlen(TOK_B), NULL, b1, sizeof b1, err, sizeof err), 0);
		snprintf(t, sizeof t, "%s%s", a1, b1);
		write_file(tokens, t, 0600);
	}
}

static void test_token_line(void **st)
{
	char out[300], err[200];
	(void)st;
	/* SHA-256("abc") */
	assert_int_equal(auth_token_line("ci", "abc", 3, NULL, out, sizeof out, err, sizeof err), 0);
	assert_string_equal(out, "ci sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n");
	assert_int_equal(auth_token_line("ci", "abc", 3, "a,b", out, sizeof out, err, sizeof err), 0);
	assert_non_null(strstr(out, "15ad a,b\n"));
	assert_int_equal(auth_token_line("c i", "abc", 3, NULL, out, sizeof out, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "SUBJECT"));
	assert_int_equal(auth_token_line("#ci", "abc", 3, NULL, out, sizeof out, err, sizeof err), -EINVAL);
	assert_int_equal(auth_token_line("ci", "a c", 3, NULL, out, sizeof out, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "b64token"));
	assert_int_equal(auth_token_line("ci", "abc", 3, "a b", out, sizeof out, err, sizeof err), -EINVAL);
	assert_int_equal(auth_token_line("ci", "abc", 3, NULL, out, 20, err, sizeof err), -ENOBUFS);
}

static char *jwt_for(EVP_PKEY *k, const char *kid, const char *aud, long long exp, const char *extra)
{
	char h[100], c[600];
	snprintf(h, sizeof h, "{\"alg\":\"%s\",\"kid\":\"%s\"}", EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA ? "RS256" : "ES256",
		 kid);
	snprintf(c, sizeof c, "{\"iss\":\"https://idp.example.com/\",\"aud\":%s,\"sub\":\"dana\",\"exp\":%lld%s}", aud, exp,
		 extra ? extra : "");
	return tk_sign(k, h, c);
}

static int check_jwt(const auth *a, const char *tok, auth_result *r)
{
	char h[4096];
	snprintf(h, sizeof h, "Bearer %s", tok);
	return auth_check(a, h, RES, NOW, r);
}

static void test_jwt_route(void **st)
{
	auth *a = jwtroute(NULL), *s = jwtroute("    scopes: [mcp]\n    leeway: 0s\n"), *x;
	auth_result r;
	char *t;
	(void)st;
	assert_int_equal(auth_mode_of(a), AUTH_JWT);
	assert_int_equal(auth_jwks_count(a), 2);
	assert_true(auth_jwks_has_kid(a, "e1"));
	assert_null(auth_jwks_url(a));
	/* good: RS256 and ES256, aud the resource with or without its slash */
	t = jwt_for(rsa, "r1", "\"" RES "\"", NOW + 60, NULL);
	assert_int_equal(check_jwt(a, t, &r), 0);
	assert_string_equal(r.subject, "dana");
	assert_int_equal(check_jwt(s, t, &r), -EPERM); /* no mcp scope */
	assert_int_equal(r.status, 403);
	assert_string_equal(r.error, "insufficient_scope");
	free(t);
	t = jwt_for(ec, "e1", "\"https://files.example.com\"", NOW + 60, ",\"scope\":\"mcp\"");
	assert_int_equal(check_jwt(a, t, &r), 0);
	assert_int_equal(check_jwt(s, t, &r), 0);
	assert_string_equal(r.subject, "dana");
	free(t);
	/* expired */
	t = jwt_for(ec, "e1", "\"" RES "\"", NOW - 61, NULL);
	assert_int_equal(check_jwt(a, t, &r), -EACCES);
	assert_int_equal(r.status, 401);
	assert_string_equal(r.error, "invalid_token");
	assert_string_equal(r.reason, "token expired 61 s ago");
	assert_string_equal(r.subject, "");
	free(t);
	t = jwt_for(ec, "e1", "\"" RES "\"", NOW - 30, ",\"scope\":\"mcp\"");
	assert_int_equal(check_jwt(a, t, &r), 0);       /* within 60 s */
	assert_int_equal(check_jwt(s, t, &r), -EACCES); /* leeway 0s */
	free(t);
	/* wrong audience: another route's resource, a path below ours */
	t = jwt_for(rsa, "r1", "\"https://other.example.com/\"", NOW + 60, NULL);
	assert_int_equal(check_jwt(a, t, &r), -EACCES);
	assert_string_equal(r.reason, "token aud does not name this resource (" RES ")");
	free(t);
	t = jwt_for(rsa, "r1", "[\"https://files.example.com/mcp\"]", NOW + 60, NULL);
	assert_int_equal(check_jwt(a, t, &r), -EACCES);
	free(t);
	/* unknown kid asks for a refetch */
	t = jwt_for(rsa, "r2", "\"" RES "\"", NOW + 60, NULL);
	assert_int_equal(check_jwt(a, t, &r), -EACCES);
	assert_true(r.refetch_keys);
	free(t);
	/* an explicit audience replaces the resource */
	x = jwtroute("    audience: urn:files\n");
	t = jwt_for(rsa, "r1", "\"urn:files\"", NOW + 60, NULL);
	assert_int_equal(check_jwt(x, t, &r), 0);
	assert_int_equal(check_jwt(a, t, &r), -EACCES);
	free(t);
	t = jwt_for(rsa, "r1", "\"" RES "\"", NOW + 60, NULL);
	assert_int_equal(check_jwt(x, t, &r), -EACCES);
	free(t);
	auth_free(x);
	/* a malformed JWT is invalid_token; a bad header invalid_request */
	assert_int_equal(auth_check(a, "Bearer abc.def", RES, NOW, &r), -EACCES);
	assert_string_equal(r.error, "invalid_token");
	assert_int_equal(auth_check(a, "Bearer abc.d=f.x", RES, NOW, &r), -EACCES);
	assert_string_equal(r.error, "invalid_request");
	auth_free(a);
	auth_free(s);
}

static void test_jwks_url(void **st)
{
	char y[300], err[300], *js;
	auth *a;
	auth_result r;
	char *t = jwt_for(ec, "e1", "\"" RES "\"", NOW + 60, NULL);
	(void)st;
	snprintf(y, sizeof y, "auth:\n  jwt:\n    issuer: https://idp.example.com/\n    jwks_url: http://127.0.0.1:8/k\n"
		 "    jwks_refresh: 2m\n");
	assert_non_null(a = load(y, err, sizeof err, NULL));
	assert_string_equal(auth_jwks_url(a), "http://127.0.0.1:8/k");
	assert_null(auth_jwks_ca_file(a));
	assert_int_equal(auth_jwks_refresh_ms(a), 120000);
	assert_int_equal(auth_jwks_count(a), 0);
	/* before the first fetch */
	assert_int_equal(check_jwt(a, t, &r), -EACCES);
	assert_string_equal(r.reason, "signing keys not loaded yet");
	assert_true(r.refetch_keys);
	js = tk_jwks(tk_jwk(ec, "e1", NULL), NULL);
	assert_int_equal(auth_jwks_set(a, js, strlen(js), err, sizeof err), 0);
	assert_int_equal(check_jwt(a, t, &r), 0);
	assert_false(r.refetch_keys);
	/* a bad document keeps the old set */
	assert_int_equal(auth_jwks_set(a, "{\"keys\":[]}", 11, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "no usable signing key"));
	assert_int_equal(check_jwt(a, t, &r), 0);
	free(js);
	auth_free(a);
	free(t);
	a = load("auth:\n  jwt:\n    issuer: i\n    jwks_url: https://idp.example.com/jwks\n    ca_file: /x.pem\n", err,
		 sizeof err, NULL);
	assert_non_null(a);
	assert_string_equal(auth_jwks_ca_file(a), "/x.pem");
	assert_int_equal(auth_jwks_refresh_ms(a), AUTH_JWKS_REFRESH_DEFAULT_MS);
	auth_free(a);
}

static void test_cfg_errors(void **st)
{
	char y[400];
	(void)st;
	cfg_fails("auth: bearer\n", "route.yaml:1: auth: must be passthrough, {bearer:");
	cfg_fails("auth:\n  bearer: {}\n  jwt: {}\n", "route.yaml:2: auth: give exactly one of bearer and jwt");
	cfg_fails("auth:\n  jwk: {}\n", "jwk");
	cfg_fails("auth:\n  bearer: {}\n", "tokens_file: missing");
	cfg_fails("auth:\n  bearer:\n    tokens: x\n", "tokens");
	cfg_fails("auth:\n  jwt:\n    jwks_url: https://a/\n", "issuer: missing");
	cfg_fails("auth:\n  jwt:\n    issuer: i\n", "exactly one of jwks_file and jwks_url");
	cfg_fails("auth:\n  jwt:\n    issuer: i\n    jwks_url: http://idp.example.com/jwks\n",
		  "route.yaml:4: jwks_url: must be https://");
	cfg_fails("auth:\n  jwt:\n    issuer: i\n    jwks_url: http://127.0.0.1@evil.example.com/jwks\n", "must be https://");
	cfg_fails("auth:\n  jwt:\n    issuer: i\n    jwks_url: http://127.0.0.1.evil.example.com/jwks\n", "must be https://");
	cfg_fails("auth:\n  jwt:\n    issuer: i\n    jwks_url: https://a/\n    leeway: 1h\n", "route.yaml:5: leeway: must be");
	cfg_fails("auth:\n  jwt:\n    issuer: i\n    jwks_url: https://a/\n    jwks_refresh: 5s\n", "jwks_refresh: must be");
	cfg_fails("auth:\n  jwt:\n    issuer: i\n    jwks_url: https://a/\n    scopes: [\"a b\"]\n",
		  "scopes: \"a b\" is not a scope");
	cfg_fails("auth:\n  jwt:\n    issuer: i\n    jwks_url: https://a/\n    authorization_servers: [idp]\n",
		  "authorization_servers: \"idp\" is not an http(s) URL");
	snprintf(y, sizeof y, "auth:\n  jwt:\n    issuer: i\n    jwks_file: %s\n    ca_file: /x\n", jwks);
	cfg_fails(y, "ca_file: only with jwks_url");
	snprintf(y, sizeof y, "auth:\n  jwt:\n    issuer: i\n    jwks_file: %s\n", tokens);
	cfg_fails(y, "route.yaml:4: jwks_file: JWKS is not JSON");
	{
		/* http:// to loopback is fine */
		char err[300];
		auth *a = load("auth:\n  jwt:\n    issuer: i\n    jwks_url: http://localhost:9999/jwks\n", err, sizeof err, NULL);
		assert_non_null(a);
		auth_free(a);
		a = load("auth:\n  jwt:\n    issuer: i\n    jwks_url: http://[::1]/jwks\n", err, sizeof err, NULL);
		assert_non_null(a);
		auth_free(a);
	}
}

static void test_www_authenticate(void **st)
{
	auth *b = bearer(NULL), *s = jwtroute("    scopes: [mcp, files:read]\n");
	auth_result r;
	char out[600];
	int n;
	(void)st;
	/* missing credentials: only the metadata URL (and scope when the route requires one) */
	auth_check(b, NULL, RES, NOW, &r);
	n = auth_www_authenticate(b, &r, META, out, sizeof out);
	assert_int_equal(n, (int)strlen(out));
	assert_string_equal(out, "Bearer resource_metadata=\"" META "\"");
	auth_check(b, "Bearer nope-nope", RES, NOW, &r);
	auth_www_authenticate(b, &r, META, out, sizeof out);
	assert_string_equal(out, "Bearer resource_metadata=\"" META "\", error=\"invalid_token\", "
				 "error_description=\"unknown token\"");
	auth_check(s, NULL, RES, NOW, &r);
	auth_www_authenticate(s, &r, META, out, sizeof out);
	assert_string_equal(out, "Bearer resource_metadata=\"" META "\", scope=\"mcp files:read\"");
	/* 403: quotes in the reason are replaced */
	{
		char *t = jwt_for(ec, "e1", "\"" RES "\"", NOW + 60, ",\"scope\":\"mcp\"");
		assert_int_equal(check_jwt(s, t, &r), -EPERM);
		free(t);
	}
	auth_www_authenticate(s, &r, META, out, sizeof out);
	assert_string_equal(out, "Bearer resource_metadata=\"" META "\", error=\"insufficient_scope\", "
				 "error_description=\"token lacks the scope 'files:read'\", scope=\"mcp files:read\"");
	assert_int_equal(auth_www_authenticate(s, &r, "https://x/\"evil", out, sizeof out), -EINVAL);
	assert_int_equal(auth_www_authenticate(s, &r, META, out, 40), -ENOBUFS);
	auth_free(b);
	auth_free(s);
}

static void test_metadata(void **st)
{
	auth *b = bearer(NULL), *j = jwtroute("    scopes: [mcp]\n"),
	     *k = jwtroute("    authorization_servers: [https://as1.example.com, https://as2.example.com]\n");
	char *js;
	size_t len;
	json_t *o;
	(void)st;
	assert_int_equal(auth_metadata_json(j, RES, &js, &len), 0);
	assert_int_equal(len, strlen(js));
	assert_string_equal(js, "{\"resource\":\"" RES "\",\"authorization_servers\":[\"https://idp.example.com/\"],"
				"\"bearer_methods_supported\":[\"header\"],\"scopes_supported\":[\"mcp\"]}");
	free(js);
	assert_int_equal(auth_metadata_json(b, RES, &js, &len), 0);
	assert_string_equal(js, "{\"resource\":\"" RES "\",\"bearer_methods_supported\":[\"header\"]}");
	free(js);
	assert_int_equal(auth_metadata_json(k, RES, &js, &len), 0);
	assert_non_null(o = json_loads(js, 0, NULL));
	assert_int_equal(json_array_size(json_object_get(o, "authorization_servers")), 2);
	assert_string_equal(json_string_value(json_array_get(json_object_get(o, "authorization_servers"), 1)),
			    "https://as2.example.com");
	assert_null(json_object_get(o, "scopes_supported"));
	json_decref(o);
	free(js);
	assert_int_equal(auth_metadata_json(k, NULL, &js, &len), -EINVAL);
	auth_free(b);
	auth_free(j);
	auth_free(k);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_passthrough), cmocka_unit_test(test_bearer),     cmocka_unit_test(test_tokens_file),
		cmocka_unit_test(test_token_line),  cmocka_unit_test(test_jwt_route),  cmocka_unit_test(test_jwks_url),
		cmocka_unit_test(test_cfg_errors),  cmocka_unit_test(test_www_authenticate), cmocka_unit_test(test_metadata),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
