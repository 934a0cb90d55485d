/* Per-route client authentication: config, tokens_file, the Authorization check, WWW-Authenticate and the
 * RFC 9728 metadata. The only I/O is the load of tokens_file and jwks_file that auth_from_cfg asks for. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/err.h"
#include "core/hex.h"
#include "core/secfile.h"
#include "guard/auth.h"

struct tok {
	unsigned char hash[32];
	char *subject;
	char **scopes;       /* NULL-terminated (cfg_strv_free), NULL when none */
	size_t nscopes;
	int line;
};

struct auth {
	auth_mode mode;
	char **scopes;       /* required; NULL-terminated or NULL */
	size_t nscopes;
	char **as;           /* authorization_servers */
	size_t nas;
	struct tok *tok;     /* bearer */
	size_t ntok;
	char *issuer, *audience, *jwks_url, *ca_file; /* jwt */
	int64_t leeway_s, refresh_ms;
	jwt_keys *keys;
};

static void toks_free(struct tok *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].subject);
		cfg_strv_free(v[i].scopes);
	}
	free(v);
}

void auth_free(auth *a)
{
	if (!a)
		return;
	cfg_strv_free(a->scopes);
	cfg_strv_free(a->as);
	toks_free(a->tok, a->ntok);
	free(a->issuer);
	free(a->audience);
	free(a->jwks_url);
	free(a->ca_file);
	jwt_keys_free(a->keys);
	free(a);
}

auth_mode auth_mode_of(const auth *a)
{
	return a ? a->mode : AUTH_PASSTHROUGH;
}

const char *auth_mode_name(auth_mode m)
{
	return m == AUTH_BEARER ? "bearer" : m == AUTH_JWT ? "jwt" : "passthrough";
}

/* ---- small grammars ----------------------------------------------------------------------------- */

/* RFC 6749 scope-token: 1*( %x21 / %x23-5B / %x5D-7E ); we also refuse ',' (our list separator). */
static bool scope_ok(const char *s, size_t n)
{
	if (!n || n > AUTH_MAX_SCOPE)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x21 || c > 0x7e || c == '"' || c == '\\' || c == ',')
			return false;
	}
	return true;
}

static bool subject_ok(const char *s, size_t n)
{
	if (!n || n > 255 || s[0] == '#')
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

/* RFC 6750 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" */
static bool b64token_ok(const char *s, size_t n)
{
	size_t i = 0;
	while (i < n && (((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'z') || (s[i] >= '0' && s[i] <= '9') ||
			 strchr("-._~+/", s[i])) && s[i])
		i++;
	if (i == 0)
		return false;
	while (i < n && s[i] == '=')
		i++;
	return i == n;
}

static void sha256(const char *s, size_t n, unsigned char md[32])
{
	unsigned len = 32;
	if (!EVP_Digest(s, n, md, &len, EVP_sha256(), NULL))
		memset(md, 0, 32); /* cannot happen with the default provider; matches no entry (no hash is zero) */
}

/* ---- tokens_file -------------------------------------------------------------------------------- */

static int hash_cmp(const void *x, const void *y)
{
	return memcmp(((const struct tok *)x)->hash, ((const struct tok *)y)->hash, 32);
}

/* Splits "a,b,c" into a NULL-terminated vector. */
static int split_scopes(const char *s, size_t n, char ***out, size_t *count)
{
	char **v = calloc(AUTH_MAX_SCOPES + 1, sizeof *v);
	size_t c = 0, i = 0;

	if (!v)
		return -ENOMEM;
	while (i <= n) {
		size_t j = i;
		while (j < n && s[j] != ',')
			j++;
		int rc = c == AUTH_MAX_SCOPES ? -E2BIG : !scope_ok(s + i, j - i) ? -EINVAL : 0;
		if (!rc && !(v[c] = strndup(s + i, j - i)))
			rc = -ENOMEM;
		if (rc < 0) {
			cfg_strv_free(v);
			return rc;
		}
		c++;
		i = j + 1;
	}
	*out = v;
	*count = c;
	return 0;
}

/* One non-comment line: SUBJECT sha256:HEX [SCOPES]. */
static int token_line(const char *l, size_t n, struct tok *t, char *why, size_t whylen)
{
	const char *f[4];
	size_t fl[4], nf = 0, i = 0;
	int rc;

	while (i < n && nf < 4) {
		while (i < n && (l[i] == ' ' || l[i] == '\t'))
			i++;
		if (i == n)
			break;
		f[nf] = l + i;
		while (i < n && l[i] != ' ' && l[i] != '\t')
			i++;
		fl[nf] = (size_t)(l + i - f[nf]);
		nf++;
	}
	if (nf < 2 || nf > 3)
		return err_set(why, whylen, -EINVAL, "expected SUBJECT sha256:HEX [SCOPE,SCOPE...] (%zu field%s)", nf,
			       nf == 1 ? "" : "s");
	if (!subject_ok(f[0], fl[0]))
		return err_set(why, whylen, -EINVAL, "subject must be 1..255 printable ASCII bytes without spaces");
	if (fl[1] != 7 + 64 || memcmp(f[1], "sha256:", 7))
		return err_set(why, whylen, -EINVAL, "second field must be sha256: and 64 lower-case hex digits "
			       "(postern auth hash-token SUBJECT prints the line)");
	for (int k = 0; k < 32; k++) {
		char a = f[1][7 + 2 * k], b = f[1][8 + 2 * k];
		int hi = hex_val(a), lo = hex_val(b);
		/* lower case only: the file holds what `hash-token` prints, one spelling per hash */
		if (hi < 0 || lo < 0 || (a >= 'A' && a <= 'F') || (b >= 'A' && b <= 'F'))
			return err_set(why, whylen, -EINVAL, "second field must be sha256: and 64 lower-case hex digits");
		t->hash[k] = (unsigned char)(hi << 4 | lo);
	}
	if (nf == 3 && (rc = split_scopes(f[2], fl[2], &t->scopes, &t->nscopes)) < 0)
		return err_set(why, whylen, rc, rc == -ENOMEM ? "out of memory" : rc == -E2BIG ?
			       "more than %d scopes" : "scopes must be SCOPE,SCOPE... (RFC 6749 scope-tokens, no spaces)",
			       AUTH_MAX_SCOPES);
	if (!(t->subject = strndup(f[0], fl[0])))
		return err_set(why, whylen, -ENOMEM, "out of memory");
	return 0;
}

int auth_tokens_parse(auth *a, const char *name, const char *buf, size_t len, char *err, size_t errlen)
{
	struct tok *v = NULL;
	size_t n = 0, cap = 0;
	const char *p = buf, *end = buf + len;
	char why[200];
	int line = 0, rc;

	if (a->mode != AUTH_BEARER)
		return err_set(err, errlen, -EINVAL, "%s: not a bearer route", name);
	if (len > AUTH_MAX_FILE)
		return err_set(err, errlen, -EINVAL, "%s: over %u bytes", name, AUTH_MAX_FILE);
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p)), *s = p;
		size_t l = eol ? (size_t)(eol - p) : (size_t)(end - p);
		p += l + 1;
		line++;
		if (l && s[l - 1] == '\r')
			l--;
		if (memchr(s, 0, l)) {
			rc = err_set(err, errlen, -EINVAL, "%s:%d: a NUL byte", name, line);
			goto done;
		}
		while (l && (*s == ' ' || *s == '\t'))
			s++, l--;
		if (!l || *s == '#')
			continue;
		if (n == AUTH_MAX_TOKENS) {
			rc = err_set(err, errlen, -EINVAL, "%s:%d: more than %d tokens", name, line, AUTH_MAX_TOKENS);
			goto done;
		}
		if (n == cap) {
			struct tok *nv = realloc(v, (cap ? cap * 2 : 16) * sizeof *v);
			if (!nv) {
				rc = err_set(err, errlen, -ENOMEM, "out of memory");
				goto done;
			}
			v = nv;
			cap = cap ? cap * 2 : 16;
		}
		memset(&v[n], 0, sizeof v[n]);
		v[n].line = line;
		rc = token_line(s, l, &v[n], why, sizeof why);
		n++; /* counted even when half filled: freed with the rest */
		if (rc < 0) {
			rc = err_set(err, errlen, rc, "%s:%d: %s", name, line, why);
			goto done;
		}
	}
	if (!n) {
		rc = err_set(err, errlen, -EINVAL, "%s: no token lines (add one with postern auth hash-token SUBJECT)", name);
		goto done;
	}
	qsort(v, n, sizeof *v, hash_cmp);
	for (size_t i = 1; i < n; i++)
		if (!memcmp(v[i - 1].hash, v[i].hash, 32)) {
			int l1 = v[i - 1].line < v[i].line ? v[i - 1].line : v[i].line;
			int l2 = v[i - 1].line < v[i].line ? v[i].line : v[i - 1].line;
			rc = err_set(err, errlen, -EINVAL, "%s:%d: the same token as line %d (one token, one subject)", name,
				     l2, l1);
			goto done;
		}
	toks_free(a->tok, a->ntok);
	a->tok = v;
	a->ntok = n;
	v = NULL;
	n = 0;
	rc = 0;
done:
	toks_free(v, n);
	return rc;
}

size_t auth_tokens_count(const auth *a)
{
	return a ? a->ntok : 0;
}

int auth_token_line(const char *subject, const char *token, size_t len, const char *scopes, char *out, size_t outlen,
		    char *err, size_t errlen)
{
	unsigned char md[32];
	char hex[65], **v = NULL;
	size_t nv = 0;
	int n, rc;

	if (!subject || !subject_ok(subject, strlen(subject)))
		return err_set(err, errlen, -EINVAL, "SUBJECT must be 1..255 printable ASCII bytes without spaces, not "
			       "starting with #");
	if (len > AUTH_MAX_TOKEN || !b64token_ok(token, len))
		return err_set(err, errlen, -EINVAL, "the token must be an RFC 6750 b64token (letters, digits, - . _ ~ + /, "
			       "then = only at the end) of at most %d bytes", AUTH_MAX_TOKEN);
	if (scopes && (rc = split_scopes(scopes, strlen(scopes), &v, &nv)) < 0)
		return err_set(err, errlen, rc, rc == -ENOMEM ? "out of memory" : "scopes must be SCOPE,SCOPE... (at most %d)",
			       AUTH_MAX_SCOPES);
	cfg_strv_free(v);
	sha256(token, len, md);
	hex_encode(md, 32, hex);
	n = snprintf(out, outlen, "%s sha256:%s%s%s\n", subject, hex, scopes ? " " : "", scopes ? scopes : "");
	if (n < 0 || (size_t)n >= outlen)
		return err_set(err, errlen, -ENOBUFS, "line too long");
	return 0;
}

/* ---- files -------------------------------------------------------------------------------------- */

static int read_small(const char *path, char **buf, size_t *len, mode_t *mode, char *err, size_t errlen)
{
	struct stat st;
	char *b = NULL;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY), rc;

	if (fd < 0)
		return err_set(err, errlen, -errno, "cannot open %s: %s", path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		rc = err_set(err, errlen, -EINVAL, "%s is not a regular file", path);
		goto done;
	}
	if ((uint64_t)st.st_size > AUTH_MAX_FILE) {
		rc = err_set(err, errlen, -EFBIG, "%s is over %u bytes", path, AUTH_MAX_FILE);
		goto done;
	}
	if (!(b = malloc((size_t)st.st_size + 1))) {
		rc = err_set(err, errlen, -ENOMEM, "out of memory");
		goto done;
	}
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, b + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			rc = err_set(err, errlen, r < 0 ? -errno : -EIO, "cannot read %s: %s", path, r < 0 ? strerror(errno) : "short read");
			goto done;
		}
		got += (size_t)r;
	}
	b[got] = 0;
	*buf = b;
	*len = got;
	*mode = st.st_mode;
	b = NULL;
	rc = 0;
done:
	free(b);
	close(fd);
	return rc;
}

/* ---- config ------------------------------------------------------------------------------------- */

/* https://HOST..., or http:// to 127.0.0.1, [::1] or localhost (tests, a local IdP); no userinfo. */
static bool jwks_url_ok(const char *u)
{
	const char *h, *e;
	size_t hl;
	bool https = !strncasecmp(u, "https://", 8);

	if (!https && strncasecmp(u, "http://", 7))
		return false;
	for (const char *p = u; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return false;
	h = u + (https ? 8 : 7);
	e = h + strcspn(h, "/?#");
	if (e == h || memchr(h, '@', (size_t)(e - h)))
		return false;
	if (https)
		return true;
	hl = (size_t)(e - h);
	if (*h == '[') {
		const char *rb = memchr(h, ']', hl);
		hl = rb ? (size_t)(rb + 1 - h) : hl;
	} else if (memchr(h, ':', hl)) {
		hl = (size_t)((const char *)memchr(h, ':', hl) - h);
	}
	if (h + hl != e && h[hl] != ':')
		return false;
	return (hl == 9 && !strncmp(h, "127.0.0.1", 9)) || (hl == 9 && !strncasecmp(h, "localhost", 9)) ||
	       (hl == 5 && !strncmp(h, "[::1]", 5));
}

static int get_scopes(cfg_doc *d, cfg_node *m, auth *a)
{
	int rc = cfg_get_strlist(d, m, "scopes", &a->scopes, &a->nscopes);
	if (rc != 0)
		return rc > 0 ? 0 : rc;
	if (a->nscopes > AUTH_MAX_SCOPES)
		return cfg_fail(d, m, "scopes", "at most %d scopes", AUTH_MAX_SCOPES);
	for (size_t i = 0; i < a->nscopes; i++)
		if (!scope_ok(a->scopes[i], strlen(a->scopes[i])))
			return cfg_fail(d, m, "scopes", "\"%s\" is not a scope (RFC 6749 scope-token: printable ASCII, no "
					"space, quote, backslash or comma; at most %d bytes)", a->scopes[i], AUTH_MAX_SCOPE);
	return 0;
}

static int get_as(cfg_doc *d, cfg_node *m, auth *a)
{
	int rc = cfg_get_strlist(d, m, "authorization_servers", &a->as, &a->nas);
	if (rc != 0)
		return rc > 0 ? 0 : rc;
	for (size_t i = 0; i < a->nas; i++)
		if (strncmp(a->as[i], "https://", 8) && strncmp(a->as[i], "http://", 7))
			return cfg_fail(d, m, "authorization_servers", "\"%s\" is not an http(s) URL (the issuer identifier "
					"of an authorization server, RFC 8414)", a->as[i]);
	return 0;
}

static int bearer_cfg(cfg_doc *d, cfg_node *m, int line, auth *a)
{
	static const char *const keys[] = { "tokens_file", "scopes", "authorization_servers", NULL };
	char *path = NULL, err[600];
	sfile f = { 0 };
	int rc;

	if ((rc = cfg_check_keys(d, m, "auth.bearer", keys)) < 0 || (rc = get_scopes(d, m, a)) < 0 ||
	    (rc = get_as(d, m, a)) < 0 || (rc = cfg_get_str(d, m, "tokens_file", &path)) < 0)
		goto done;
	if (rc > 0) {
		rc = cfg_fail_line(d, line, "auth.bearer: tokens_file: missing: the file of hashed tokens (postern auth "
			      "hash-token SUBJECT prints a line)");
		goto done;
	}
	/* Hashes, not tokens, but who can edit the file can let anyone in: warn, like a shared secret volume. */
	if ((rc = sfile_read(path, AUTH_MAX_FILE, SFILE_SHARED_OK, &f, err, sizeof err)) < 0) {
		rc = cfg_fail(d, m, "tokens_file", "%s", err);
		goto done;
	}
	if (sfile_exposure(&f, path, err, sizeof err))
		cfg_warn(d, m, "tokens_file", "%s", err);
	if ((rc = auth_tokens_parse(a, path, f.data, f.len, err, sizeof err)) < 0)
		rc = cfg_fail(d, m, "tokens_file", "%s", err);
done:
	free(path);
	sfile_free(&f);
	return rc;
}

static int jwt_cfg(cfg_doc *d, cfg_node *m, int line, auth *a)
{
	static const char *const keys[] = { "issuer", "audience", "jwks_file", "jwks_url", "ca_file", "jwks_refresh",
					    "leeway", "scopes", "authorization_servers", NULL };
	char *file = NULL, *buf = NULL, err[400];
	size_t len = 0;
	mode_t mode;
	int64_t ms;
	int rc;

	if ((rc = cfg_check_keys(d, m, "auth.jwt", keys)) < 0 || (rc = get_scopes(d, m, a)) < 0 ||
	    (rc = get_as(d, m, a)) < 0 || (rc = cfg_get_str(d, m, "issuer", &a->issuer)) < 0 ||
	    (rc = cfg_get_str(d, m, "audience", &a->audience)) < 0 || (rc = cfg_get_str(d, m, "jwks_file", &file)) < 0 ||
	    (rc = cfg_get_str(d, m, "jwks_url", &a->jwks_url)) < 0 || (rc = cfg_get_str(d, m, "ca_file", &a->ca_file)) < 0)
		goto done;
	if (!a->issuer || !*a->issuer) {
		rc = cfg_fail_line(d, line, "auth.jwt: issuer: missing: the iss every token must carry");
		goto done;
	}
	if (a->audience && !*a->audience) {
		rc = cfg_fail(d, m, "audience", "must not be empty (leave it out to use the route's resource URL)");
		goto done;
	}
	if (!file == !a->jwks_url) {
		rc = cfg_fail_line(d, line, "auth.jwt: set exactly one of jwks_file and jwks_url");
		goto done;
	}
	if (a->jwks_url && !jwks_url_ok(a->jwks_url)) {
		rc = cfg_fail(d, m, "jwks_url", "must be https:// (http:// only to 127.0.0.1, [::1] or localhost), "
			      "without user info or spaces");
		goto done;
	}
	if (a->ca_file && !a->jwks_url) {
		rc = cfg_fail(d, m, "ca_file", "only with jwks_url (the CA of the IdP's server)");
		goto done;
	}
	a->leeway_s = JWT_LEEWAY_DEFAULT_S;
	if ((rc = cfg_get_duration_ms(d, m, "leeway", &ms)) < 0)
		goto done;
	if (rc == 0 && (ms < 0 || ms > 600000)) {
		rc = cfg_fail(d, m, "leeway", "must be between 0s and 10m");
		goto done;
	}
	if (rc == 0)
		a->leeway_s = ms / 1000;
	a->refresh_ms = a->jwks_url ? AUTH_JWKS_REFRESH_DEFAULT_MS : 0;
	if ((rc = cfg_get_duration_ms(d, m, "jwks_refresh", &ms)) < 0)
		goto done;
	if (rc == 0 && (!a->jwks_url || ms < 60000 || ms > 86400000)) {
		rc = cfg_fail(d, m, "jwks_refresh", a->jwks_url ? "must be between 1m and 24h" : "only with jwks_url");
		goto done;
	}
	if (rc == 0)
		a->refresh_ms = ms;
	if (!a->as) {
		if (!(a->as = calloc(2, sizeof *a->as)) || !(a->as[0] = strdup(a->issuer))) {
			rc = -ENOMEM;
			goto done;
		}
		a->nas = 1;
	}
	rc = 0;
	if (file) {
		if ((rc = read_small(file, &buf, &len, &mode, err, sizeof err)) < 0 ||
		    (rc = auth_jwks_set(a, buf, len, err, sizeof err)) < 0)
			rc = cfg_fail(d, m, "jwks_file", "%s", err);
	}
done:
	free(file);
	free(buf);
	return rc;
}

int auth_from_cfg(cfg_doc *d, cfg_node *node, auth **out)
{
	static const char *const keys[] = { "bearer", "jwt", NULL };
	auth *a = calloc(1, sizeof *a);
	cfg_node *m;
	const char *s;
	int rc, line;

	*out = NULL;
	if (!a)
		return -ENOMEM;
	if (!node)
		goto ok;
	if ((s = cfg_scalar(node))) {
		if (strcmp(s, "passthrough")) {
			rc = cfg_fail(d, node, NULL, "auth: must be passthrough, {bearer: {tokens_file: ...}} or {jwt: "
				      "{issuer: ..., jwks_file|jwks_url: ...}}, not \"%s\"", s);
			goto done;
		}
		goto ok;
	}
	if ((rc = cfg_check_keys(d, node, "auth", keys)) < 0)
		goto done;
	if (!!cfg_get(node, "bearer") + !!cfg_get(node, "jwt") != 1) {
		const char *k = NULL;
		cfg_node *v;
		void *it = NULL;
		rc = cfg_fail_line(d, cfg_map_next(node, &it, &k, &v) > 0 ? cfg_key_line(node, k) : 0,
				   "auth: give exactly one of bearer and jwt");
		goto done;
	}
	a->mode = cfg_get(node, "bearer") ? AUTH_BEARER : AUTH_JWT;
	if ((rc = cfg_get_map(d, node, a->mode == AUTH_BEARER ? "bearer" : "jwt", &m)) < 0)
		goto done;
	line = cfg_key_line(node, a->mode == AUTH_BEARER ? "bearer" : "jwt");
	if ((rc = (a->mode == AUTH_BEARER ? bearer_cfg : jwt_cfg)(d, m, line, a)) < 0)
		goto done;
ok:
	*out = a;
	a = NULL;
	rc = 0;
done:
	auth_free(a);
	return rc;
}

/* ---- the check ---------------------------------------------------------------------------------- */

__attribute__((format(printf, 4, 5))) static int deny(auth_result *r, int status, const char *error, const char *fmt, ...)
{
	va_list ap;
	r->status = status;
	r->error = error;
	va_start(ap, fmt);
	vsnprintf(r->reason, sizeof r->reason, fmt, ap);
	va_end(ap);
	return status == 403 ? -EPERM : -EACCES;
}

/* The b64token of "Bearer <token>", or a denial. */
static int bearer_of(const char *h, const char **tok, size_t *len, auth_result *r)
{
	size_t n;

	if (!h)
		return deny(r, 401, NULL, "no Authorization header (Bearer token required)");
	while (*h == ' ' || *h == '\t')
		h++;
	n = strlen(h);
	while (n && (h[n - 1] == ' ' || h[n - 1] == '\t'))
		n--;
	if (n < 6 || strncasecmp(h, "Bearer", 6) || (n > 6 && h[6] != ' '))
		return deny(r, 401, "invalid_request", "Authorization scheme is not Bearer");
	h += 6, n -= 6;
	while (n && *h == ' ')
		h++, n--;
	if (!n)
		return deny(r, 401, "invalid_request", "Bearer with no token");
	if (n > AUTH_MAX_TOKEN)
		return deny(r, 401, "invalid_request", "token is too long");
	if (!b64token_ok(h, n))
		return deny(r, 401, "invalid_request", "token has characters RFC 6750 does not allow (b64token)");
	*tok = h;
	*len = n;
	return 0;
}

static bool has_scope(char **v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i], s))
			return true;
	return false;
}

static int check_bearer(const auth *a, const char *tok, size_t len, auth_result *r)
{
	unsigned char md[32];
	size_t hit = 0, found = 0;

	sha256(tok, len, md);
	/* every entry compared, no early exit: which entry matched, and whether one did, does not show in time */
	for (size_t i = 0; i < a->ntok; i++) {
		size_t eq = (size_t)(CRYPTO_memcmp(md, a->tok[i].hash, 32) == 0), mask = (size_t)0 - eq;
		hit = (hit & ~mask) | (i & mask);
		found |= eq;
	}
	if (!found)
		return deny(r, 401, "invalid_token", "unknown token");
	snprintf(r->subject, sizeof r->subject, "%s", a->tok[hit].subject);
	for (size_t i = 0; i < a->nscopes; i++)
		if (!has_scope(a->tok[hit].scopes, a->tok[hit].nscopes, a->scopes[i]))
			return deny(r, 403, "insufficient_scope", "token lacks the scope \"%s\"", a->scopes[i]);
	return 0;
}

static int check_jwt(const auth *a, const char *tok, size_t len, const char *resource, int64_t now_s, auth_result *r)
{
	const char *aud[2];
	char alt[1024];
	jwt_result jr;
	jwt_expect e = { .issuer = a->issuer, .audiences = aud, .naudiences = 1,
			 .scopes = (const char *const *)a->scopes, .nscopes = a->nscopes, .now_s = now_s,
			 .leeway_s = a->leeway_s };
	int rc;

	aud[0] = a->audience ? a->audience : resource;
	if (!aud[0]) {
		r->status = 500;
		snprintf(r->reason, sizeof r->reason, "no audience: the route has no resource URL");
		return -EINVAL;
	}
	if (!a->audience) {
		/* "https://host/" and "https://host" are one URL (RFC 3986 6.2.3); MCP clients send either */
		const char *au = strstr(resource, "://");
		size_t rl = strlen(resource);
		if (au && rl < sizeof alt && rl > 1 && resource[rl - 1] == '/' && strchr(au + 3, '/') == resource + rl - 1) {
			memcpy(alt, resource, rl - 1);
			alt[rl - 1] = 0;
			aud[1] = alt;
			e.naudiences = 2;
		}
	}
	rc = jwt_check(tok, len, a->keys, &e, &jr);
	snprintf(r->subject, sizeof r->subject, "%s", jr.subject);
	snprintf(r->reason, sizeof r->reason, "%s", jr.reason);
	r->refetch_keys = jr.unknown_kid || !jwt_keys_count(a->keys);
	if (rc == -EPERM) {
		r->status = 403;
		r->error = "insufficient_scope";
	} else if (rc == -EACCES) {
		r->status = 401;
		r->error = "invalid_token";
		r->subject[0] = 0;
	} else if (rc < 0) {
		r->status = 500;
		r->subject[0] = 0;
		snprintf(r->reason, sizeof r->reason, "out of memory");
	}
	return rc;
}

int auth_check(const auth *a, const char *authorization, const char *resource, int64_t now_s, auth_result *r)
{
	const char *tok = NULL;
	size_t len = 0;
	int rc;

	memset(r, 0, sizeof *r);
	if (auth_mode_of(a) == AUTH_PASSTHROUGH)
		return 0;
	if ((rc = bearer_of(authorization, &tok, &len, r)) < 0)
		return rc;
	return a->mode == AUTH_BEARER ? check_bearer(a, tok, len, r) : check_jwt(a, tok, len, resource, now_s, r);
}

/* ---- answers ------------------------------------------------------------------------------------ */

int auth_www_authenticate(const auth *a, const auth_result *r, const char *metadata_url, char *out, size_t outlen)
{
	size_t o = 0;
	int n;

	for (const char *p = metadata_url; p && *p; p++)
		if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
			return -EINVAL;
	n = snprintf(out, outlen, "Bearer resource_metadata=\"%s\"", metadata_url ? metadata_url : "");
	if (n < 0 || (size_t)n >= outlen)
		return -ENOBUFS;
	o = (size_t)n;
	if (r && r->error) {
		char desc[sizeof r->reason];
		size_t i = 0;
		/* error_description allows %x20-21 / %x23-5B / %x5D-7E */
		for (; r->reason[i] && i < sizeof desc - 1; i++) {
			unsigned char c = (unsigned char)r->reason[i];
			desc[i] = c == '"' ? '\'' : c == '\\' ? '/' : (c < 0x20 || c > 0x7e) ? '?' : (char)c;
		}
		desc[i] = 0;
		n = snprintf(out + o, outlen - o, ", error=\"%s\", error_description=\"%s\"", r->error, desc);
		if (n < 0 || (size_t)n >= outlen - o)
			return -ENOBUFS;
		o += (size_t)n;
	}
	for (size_t i = 0; a && i < a->nscopes; i++) {
		n = snprintf(out + o, outlen - o, "%s%s%s", i ? " " : ", scope=\"", a->scopes[i], i + 1 == a->nscopes ? "\"" : "");
		if (n < 0 || (size_t)n >= outlen - o)
			return -ENOBUFS;
		o += (size_t)n;
	}
	return (int)o;
}

static json_t *strv_json(char **v, size_t n)
{
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < n; i++)
		if (json_array_append_new(arr, json_string(v[i])) < 0) {
			json_decref(arr);
			return NULL;
		}
	return arr;
}

int auth_metadata_json(const auth *a, const char *resource, char **out, size_t *len)
{
	json_t *o = NULL, *m = NULL;
	int rc = -ENOMEM;

	*out = NULL;
	if (auth_mode_of(a) == AUTH_PASSTHROUGH)
		return -ENOENT;
	if (!resource)
		return -EINVAL;
	if (!(o = json_object()) || json_object_set_new(o, "resource", json_string(resource)) < 0)
		goto done;
	if (a->nas && (!(m = strv_json(a->as, a->nas)) || json_object_set_new(o, "authorization_servers", m) < 0))
		goto done;
	if (!(m = json_pack("[s]", "header")) || json_object_set_new(o, "bearer_methods_supported", m) < 0)
		goto done;
	if (a->nscopes && (!(m = strv_json(a->scopes, a->nscopes)) || json_object_set_new(o, "scopes_supported", m) < 0))
		goto done;
	if (!(*out = json_dumps(o, JSON_COMPACT)))
		goto done;
	*len = strlen(*out);
	rc = 0;
done:
	json_decref(o);
	return rc;
}

/* ---- JWKS --------------------------------------------------------------------------------------- */

int auth_jwks_set(auth *a, const char *json, size_t len, char *err, size_t errlen)
{
	jwt_keys *k;
	int rc;

	if (auth_mode_of(a) != AUTH_JWT)
		return err_set(err, errlen, -EINVAL, "not a jwt route");
	if ((rc = jwt_keys_parse(json, len, &k, NULL, err, errlen)) < 0)
		return rc;
	jwt_keys_free(a->keys);
	a->keys = k;
	return 0;
}

const char *auth_jwks_url(const auth *a)
{
	return auth_mode_of(a) == AUTH_JWT ? a->jwks_url : NULL;
}

const char *auth_jwks_ca_file(const auth *a)
{
	return auth_mode_of(a) == AUTH_JWT ? a->ca_file : NULL;
}

int64_t auth_jwks_refresh_ms(const auth *a)
{
	return auth_mode_of(a) == AUTH_JWT ? a->refresh_ms : 0;
}

bool auth_jwks_has_kid(const auth *a, const char *kid)
{
	return auth_mode_of(a) == AUTH_JWT && jwt_keys_has_kid(a->keys, kid);
}

size_t auth_jwks_count(const auth *a)
{
	return auth_mode_of(a) == AUTH_JWT ? jwt_keys_count(a->keys) : 0;
}
