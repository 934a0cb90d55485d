#include "gateway/certs.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "core/cfg.h"
#include "core/dirs.h"
#include "core/err.h"
#include "core/tlsio.h"

#define CA_CN "postern customer CA"

int certs_check_domain(const char *domain, char *out, size_t outlen)
{
	size_t n = domain ? strlen(domain) : 0, label = 0;
	if (n == 0 || n > 253 || n + 1 > outlen)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)domain[i];
		if (c == '.') {
			/* empty label, or a label ending in '-' */
			if (label == 0 || domain[i - 1] == '-')
				return -EINVAL;
			label = 0;
		} else if (isalnum(c) || (c == '-' && label > 0)) {
			if (++label > 63)
				return -EINVAL;
		} else {
			return -EINVAL;
		}
		out[i] = (char)tolower(c);
	}
	if (label == 0 || domain[n - 1] == '-')
		return -EINVAL;
	out[n] = 0;
	return 0;
}

static void path_join(char *buf, size_t len, const char *dir, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

/* Write to a temp file in the same directory, fsync, rename over the target, fsync the directory: a reader
 * (the proxy's hot reload) sees the old file or the new one, never a torn one. */
static int write_atomic(const char *dir, const char *name, const void *data, size_t len, mode_t mode, char *err,
			size_t errlen)
{
	char tmp[4096], dst[4096];
	int fd = -1, rc = 0, dfd;
	const char *p = data;
	size_t left = len;

	path_join(dst, sizeof dst, dir, name);
	snprintf(tmp, sizeof tmp, "%s/.%s.tmpXXXXXX", dir, name);
	fd = mkstemp(tmp);
	if (fd < 0)
		return err_set(err, errlen, -errno, "%s: cannot create a file: %s", dir, strerror(errno));
	if (fchmod(fd, mode) < 0) {
		rc = err_set(err, errlen, -errno, "%s: chmod: %s", tmp, strerror(errno));
		goto out;
	}
	while (left > 0) {
		ssize_t w = write(fd, p, left);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			rc = err_set(err, errlen, -errno, "%s: write: %s", tmp, strerror(errno));
			goto out;
		}
		p += w;
		left -= (size_t)w;
	}
	if (fsync(fd) < 0) {
		rc = err_set(err, errlen, -errno, "%s: fsync: %s", tmp, strerror(errno));
		goto out;
	}
	if (close(fd) < 0) {
		fd = -1;
		rc = err_set(err, errlen, -errno, "%s: close: %s", tmp, strerror(errno));
		goto out;
	}
	fd = -1;
	if (rename(tmp, dst) < 0) {
		rc = err_set(err, errlen, -errno, "%s: rename: %s", dst, strerror(errno));
		goto out;
	}
	dfd = open(dir, O_RDONLY | O_DIRECTORY);
	if (dfd >= 0) {
		fsync(dfd); /* best effort: makes the rename durable */
		close(dfd);
	}
out:
	if (fd >= 0)
		close(fd);
	if (rc < 0)
		unlink(tmp);
	return rc;
}

static bool file_exists(const char *dir, const char *name)
{
	char p[4096];
	struct stat st;
	path_join(p, sizeof p, dir, name);
	return stat(p, &st) == 0;
}

/* One PEM object of dir/name: a private key (key) or a certificate. NULL with err set. */
static void *load_pem(const char *dir, const char *name, bool key, char *err, size_t errlen)
{
	char p[4096], ebuf[200];
	FILE *f;
	void *obj;
	path_join(p, sizeof p, dir, name);
	f = fopen(p, "r");
	if (!f) {
		err_set(err, errlen, -errno, "%s: %s", p, strerror(errno));
		return NULL;
	}
	ERR_clear_error();
	obj = key ? (void *)PEM_read_PrivateKey(f, NULL, NULL, NULL) : (void *)PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	if (!obj)
		err_set(err, errlen, -EINVAL, "%s: not a PEM %s: %s", p, key ? "private key" : "certificate",
		       tio_ssl_errors(ebuf, sizeof ebuf));
	return obj;
}

static X509 *load_cert(const char *dir, const char *name, char *err, size_t errlen)
{
	return load_pem(dir, name, false, err, errlen);
}

static EVP_PKEY *load_key(const char *dir, const char *name, char *err, size_t errlen)
{
	return load_pem(dir, name, true, err, errlen);
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;
	int ok;
	X509V3_set_ctx(&ctx, issuer ? issuer : cert, cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	if (!ext)
		return -EINVAL;
	ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok ? 0 : -ENOMEM;
}

static int random_serial(X509 *x)
{
	unsigned char b[16];
	BIGNUM *bn;
	int ok;
	if (RAND_bytes(b, sizeof b) != 1)
		return -EIO;
	b[0] &= 0x7f; /* positive, at most 127 bits: within RFC 5280's 20 octets */
	b[0] |= 0x40; /* and never shortened by leading zeros */
	bn = BN_bin2bn(b, sizeof b, NULL);
	if (!bn)
		return -ENOMEM;
	ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
	BN_free(bn);
	return ok ? 0 : -ENOMEM;
}

/* Issues a certificate for key. issuer NULL: self-signed CA. */
static X509 *issue(EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, const char *cn, const char *domain,
		   time_t now, int days)
{
	X509 *x = X509_new();
	X509_NAME *name = NULL;
	char san[600];
	bool ok = false;

	if (!x || X509_set_version(x, 2) != 1 || random_serial(x) < 0)
		goto out;
	/* A minute of slack for clocks slightly behind ours. */
	if (!X509_time_adj_ex(X509_getm_notBefore(x), 0, -60, &now) ||
	    !X509_time_adj_ex(X509_getm_notAfter(x), days, 0, &now))
		goto out;
	if (!(name = X509_NAME_new()) ||
	    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) ||
	    !X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, (const unsigned char *)"postern", -1, -1, 0))
		goto out;
	if (X509_set_subject_name(x, name) != 1 ||
	    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : name) != 1 || X509_set_pubkey(x, key) != 1)
		goto out;
	if (!issuer) {
		if (add_ext(x, NULL, NID_basic_constraints, "critical,CA:TRUE") < 0 ||
		    add_ext(x, NULL, NID_key_usage, "critical,keyCertSign,cRLSign") < 0 ||
		    add_ext(x, NULL, NID_subject_key_identifier, "hash") < 0)
			goto out;
	} else {
		snprintf(san, sizeof san, "DNS:*.%s,DNS:%s", domain, domain);
		if (add_ext(x, issuer, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
		    add_ext(x, issuer, NID_key_usage, "critical,digitalSignature") < 0 ||
		    add_ext(x, issuer, NID_ext_key_usage, "serverAuth") < 0 ||
		    add_ext(x, issuer, NID_subject_alt_name, san) < 0 ||
		    add_ext(x, issuer, NID_subject_key_identifier, "hash") < 0 ||
		    add_ext(x, issuer, NID_authority_key_identifier, "keyid:always") < 0)
			goto out;
	}
	if (X509_sign(x, issuer_key ? issuer_key : key, EVP_sha256()) <= 0)
		goto out;
	ok = true;
out:
	X509_NAME_free(name);
	if (!ok) {
		X509_free(x);
		x = NULL;
	}
	return x;
}

static int pem_of(X509 *cert, EVP_PKEY *key, char **out, size_t *len)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p;
	long n;
	int rc = -ENOMEM;
	if (!b)
		return -ENOMEM;
	if (cert ? PEM_write_bio_X509(b, cert) != 1 : PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) != 1)
		goto out;
	n = BIO_get_mem_data(b, &p);
	if (n <= 0 || !(*out = malloc((size_t)n)))
		goto out;
	memcpy(*out, p, (size_t)n);
	*len = (size_t)n;
	rc = 0;
out:
	BIO_free(b);
	return rc;
}

/* Key first, then certificate: a crash in between leaves a pair that does not match, which init detects and
 * repairs for the server certificate (and refuses to guess about for the CA). */
static int save_pair(const char *dir, const char *cert_name, const char *key_name, X509 *cert, EVP_PKEY *key,
		     char *err, size_t errlen)
{
	char *kp = NULL, *cp = NULL;
	size_t kl = 0, cl = 0;
	int rc;
	if ((rc = pem_of(NULL, key, &kp, &kl)) < 0 || (rc = pem_of(cert, NULL, &cp, &cl)) < 0) {
		err_set(err, errlen, rc, "cannot encode PEM");
		goto out;
	}
	if ((rc = write_atomic(dir, key_name, kp, kl, 0600, err, errlen)) < 0)
		goto out;
	rc = write_atomic(dir, cert_name, cp, cl, 0644, err, errlen);
out:
	if (kp)
		OPENSSL_cleanse(kp, kl);
	free(kp);
	free(cp);
	return rc;
}

static time_t not_after(X509 *x)
{
	struct tm tm;
	if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1)
		return 0;
	return timegm(&tm);
}

/* The tunnel domain a server certificate was issued for: its SAN DNS name that is not a wildcard. */
static bool cert_domain(X509 *x, char *out, size_t len)
{
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	bool found = false;
	for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens) && !found; i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
		const unsigned char *s;
		int n;
		if (g->type != GEN_DNS)
			continue;
		s = ASN1_STRING_get0_data(g->d.dNSName);
		n = ASN1_STRING_length(g->d.dNSName);
		if (n <= 0 || (size_t)n >= len || s[0] == '*')
			continue;
		memcpy(out, s, (size_t)n);
		out[n] = 0;
		found = true;
	}
	GENERAL_NAMES_free(gens);
	return found;
}

/* Signed by ca (signature and AKI/SKI linkage), and key belongs to cert. */
static bool server_matches(X509 *cert, EVP_PKEY *key, X509 *ca)
{
	EVP_PKEY *capub = X509_get0_pubkey(ca);
	ERR_clear_error();
	if (!capub || X509_verify(cert, capub) != 1 || X509_check_issued(ca, cert) != X509_V_OK ||
	    X509_check_private_key(cert, key) != 1) {
		ERR_clear_error();
		return false;
	}
	return true;
}

static int ensure_dir(const char *dir, char *err, size_t errlen)
{
	struct stat st;
	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			return err_set(err, errlen, -ENOTDIR, "%s: exists and is not a directory", dir);
		if (access(dir, W_OK | X_OK) < 0)
			return err_set(err, errlen, -errno, "%s: not writable: %s", dir, strerror(errno));
		return 0;
	}
	if (errno != ENOENT && errno != ENOTDIR) /* ENOTDIR: dirs_make names the parent that is a file */
		return err_set(err, errlen, -errno, "%s: %s", dir, strerror(errno));
	/* The whole path, like mkdir -p (a fresh host has no /etc/postern): parents 0755, the key directory 0700.
	 * The command prints where it wrote, so a typo in a parent is visible. */
	return dirs_make(dir, 0700, NULL, err, errlen);
}

static int new_server(const char *dir, const char *domain, X509 *ca, EVP_PKEY *cakey, time_t now,
		      certs_result *res, char *err, size_t errlen)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *cert = NULL;
	char cn[300];
	int rc = -ENOMEM;
	snprintf(cn, sizeof cn, "*.%s", domain);
	if (!key || !(cert = issue(key, ca, cakey, cn, domain, now, CERTS_SERVER_DAYS))) {
		err_set(err, errlen, -EIO, "cannot create the server certificate");
		goto out;
	}
	if ((rc = save_pair(dir, CERTS_SERVER_CERT, CERTS_SERVER_KEY, cert, key, err, errlen)) < 0)
		goto out;
	res->server_created = true;
	res->server_not_after = not_after(cert);
out:
	X509_free(cert);
	EVP_PKEY_free(key);
	return rc;
}

/* Loads the CA pair; creates it when neither file exists (create false: a missing CA is an error). */
static int get_ca(const char *dir, bool create, time_t now, X509 **ca, EVP_PKEY **cakey, certs_result *res,
		  char *err, size_t errlen)
{
	bool hc = file_exists(dir, CERTS_CA_CERT), hk = file_exists(dir, CERTS_CA_KEY);
	int rc;
	if (!hc && !hk) {
		if (!create)
			return err_set(err, errlen, -ENOENT, "%s: no CA (%s, %s): run 'postern certs init' first", dir,
				      CERTS_CA_CERT, CERTS_CA_KEY);
		*cakey = EVP_EC_gen("P-256");
		if (!*cakey || !(*ca = issue(*cakey, NULL, NULL, CA_CN, NULL, now, CERTS_CA_DAYS)))
			return err_set(err, errlen, -EIO, "cannot create the CA certificate");
		if ((rc = save_pair(dir, CERTS_CA_CERT, CERTS_CA_KEY, *ca, *cakey, err, errlen)) < 0)
			return rc;
		res->ca_created = true;
		res->ca_not_after = not_after(*ca);
		return 0;
	}
	/* Never replace half a CA: the other half may be what the customer registered. */
	if (!hc || !hk)
		return err_set(err, errlen, -EEXIST, "%s: %s exists without %s: restore it or remove both to create a new CA",
			      dir, hc ? CERTS_CA_CERT : CERTS_CA_KEY, hc ? CERTS_CA_KEY : CERTS_CA_CERT);
	if (!(*ca = load_cert(dir, CERTS_CA_CERT, err, errlen)) || !(*cakey = load_key(dir, CERTS_CA_KEY, err, errlen)))
		return -EINVAL;
	if (X509_check_private_key(*ca, *cakey) != 1) {
		ERR_clear_error();
		return err_set(err, errlen, -EINVAL, "%s/%s does not match %s/%s", dir, CERTS_CA_KEY, dir, CERTS_CA_CERT);
	}
	if (X509_check_ca(*ca) == 0)
		return err_set(err, errlen, -EINVAL, "%s/%s is not a CA certificate", dir, CERTS_CA_CERT);
	res->ca_not_after = not_after(*ca);
	return 0;
}

int certs_init(const char *dir, const char *domain, time_t now, certs_result *res, char *err, size_t errlen)
{
	X509 *ca = NULL, *cert = NULL;
	EVP_PKEY *cakey = NULL, *key = NULL;
	char have[256], derr[256];
	int rc;

	memset(res, 0, sizeof *res);
	if (certs_check_domain(domain, res->domain, sizeof res->domain) < 0)
		return err_set(err, errlen, -EINVAL, "'%s' is not a valid domain name (e.g. abc123.tunnel.example.com)",
			      domain ? domain : "");
	if ((rc = ensure_dir(dir, err, errlen)) < 0)
		goto out;
	if ((rc = get_ca(dir, true, now, &ca, &cakey, res, err, errlen)) < 0)
		goto out;

	if (!file_exists(dir, CERTS_SERVER_CERT) || !file_exists(dir, CERTS_SERVER_KEY)) {
		snprintf(res->reason, sizeof res->reason, "none existed");
	} else if (!(cert = load_cert(dir, CERTS_SERVER_CERT, derr, sizeof derr)) ||
		   !(key = load_key(dir, CERTS_SERVER_KEY, derr, sizeof derr))) {
		snprintf(res->reason, sizeof res->reason, "the old one was unreadable");
	} else if (!cert_domain(cert, have, sizeof have) || strcmp(have, res->domain) != 0) {
		snprintf(res->reason, sizeof res->reason, "the old one was for another domain");
	} else if (!server_matches(cert, key, ca)) {
		snprintf(res->reason, sizeof res->reason, "the old one was not signed by this CA or its key did not match");
	} else if (not_after(cert) <= now) {
		snprintf(res->reason, sizeof res->reason, "the old one had expired");
	} else {
		snprintf(res->reason, sizeof res->reason, "kept: valid for this domain and CA");
		res->server_not_after = not_after(cert);
		rc = 0;
		goto out;
	}
	rc = new_server(dir, res->domain, ca, cakey, now, res, err, errlen);
out:
	X509_free(ca);
	X509_free(cert);
	EVP_PKEY_free(cakey);
	EVP_PKEY_free(key);
	return rc;
}

int certs_renew(const char *dir, int64_t renew_before_s, time_t now, certs_result *res, char *err, size_t errlen)
{
	X509 *ca = NULL, *cert = NULL;
	EVP_PKEY *cakey = NULL;
	time_t na;
	int rc;

	memset(res, 0, sizeof *res);
	if (renew_before_s < 0)
		return err_set(err, errlen, -EINVAL, "the renew window must not be negative");
	if ((rc = get_ca(dir, false, now, &ca, &cakey, res, err, errlen)) < 0)
		goto out;
	if (!(cert = load_cert(dir, CERTS_SERVER_CERT, err, errlen))) {
		rc = -ENOENT;
		goto out;
	}
	if (!cert_domain(cert, res->domain, sizeof res->domain)) {
		rc = err_set(err, errlen, -EINVAL, "%s/%s names no tunnel domain: run 'postern certs init --domain ...'",
			    dir, CERTS_SERVER_CERT);
		goto out;
	}
	na = not_after(cert);
	res->server_not_after = na;
	if ((int64_t)na - (int64_t)now > renew_before_s) {
		snprintf(res->reason, sizeof res->reason, "not due: expires in more than the renew window");
		rc = 0;
		goto out;
	}
	snprintf(res->reason, sizeof res->reason, na <= now ? "it had expired" : "it expired within the renew window");
	rc = new_server(dir, res->domain, ca, cakey, now, res, err, errlen);
out:
	X509_free(ca);
	X509_free(cert);
	EVP_PKEY_free(cakey);
	return rc;
}

/* ------------------------------------------------------------------ CLI */

static void usage(FILE *f)
{
	fprintf(f, "usage: postern certs init --domain TUNNEL_DOMAIN --out DIR\n"
		   "       postern certs renew --out DIR [--renew-before 720h]\n\n"
		   "init   creates a customer CA (ECDSA P-256, 5 years) unless DIR already has one, and a server\n"
		   "       certificate for *.TUNNEL_DOMAIN signed by it (90 days). Safe to run again: the CA is kept,\n"
		   "       the server certificate is reissued only when missing, for another domain, or expired.\n"
		   "renew  reissues the server certificate when it expires within the window (default 720h). No\n"
		   "       network. Run it daily (cron); the gateway reloads the files by itself.\n\n"
		   "Files in DIR: %s (register it with the edge operator or agent platform), %s (keep secret),\n"
		   "%s and %s (the gateway's tls.cert_file and tls.key_file). Keys are written 0600.\n",
		CERTS_CA_CERT, CERTS_CA_KEY, CERTS_SERVER_CERT, CERTS_SERVER_KEY);
}

static const char *fmt_time(time_t t, char *buf, size_t len)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

int certs_main(int argc, char **argv)
{
	const char *domain = NULL, *dir = NULL, *before = NULL, *sub;
	char err[512], t1[32];
	certs_result res;
	int64_t before_ms = (int64_t)CERTS_DEFAULT_RENEW_BEFORE_S * 1000;
	time_t now = time(NULL);
	int rc;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	sub = argv[1];
	if (strcmp(sub, "init") && strcmp(sub, "renew")) {
		fprintf(stderr, "postern certs: unknown subcommand '%s' (init or renew)\n", sub);
		return 2;
	}
	for (int i = 2; i < argc; i++) {
		const char *a = argv[i];
		const char **dst = !strcmp(a, "--domain") ? &domain : !strcmp(a, "--out") ? &dir
				 : !strcmp(a, "--renew-before") ? &before : NULL;
		if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
			usage(stdout);
			return 0;
		}
		if (!dst) {
			fprintf(stderr, "postern certs %s: unexpected argument '%s' (see postern certs --help)\n", sub, a);
			return 2;
		}
		if (i + 1 >= argc) {
			fprintf(stderr, "postern certs %s: %s needs a value\n", sub, a);
			return 2;
		}
		*dst = argv[++i];
	}
	if (!dir) {
		fprintf(stderr, "postern certs %s: --out DIR is required\n", sub);
		return 2;
	}
	if (!strcmp(sub, "init")) {
		if (before) {
			fprintf(stderr, "postern certs init: --renew-before belongs to 'renew'\n");
			return 2;
		}
		if (!domain) {
			fprintf(stderr, "postern certs init: --domain TUNNEL_DOMAIN is required\n");
			return 2;
		}
		rc = certs_init(dir, domain, now, &res, err, sizeof err);
		if (rc < 0) {
			fprintf(stderr, "postern certs init: %s\n", err);
			return 1;
		}
		printf("CA: %s %s/%s (ECDSA P-256, expires %s)\n", res.ca_created ? "created" : "kept existing", dir,
		       CERTS_CA_CERT, fmt_time(res.ca_not_after, t1, sizeof t1));
		if (res.server_created)
			printf("server certificate: created %s/%s for *.%s (expires %s; %s)\n", dir, CERTS_SERVER_CERT,
			       res.domain, fmt_time(res.server_not_after, t1, sizeof t1), res.reason);
		else
			printf("server certificate: kept existing %s/%s for *.%s (expires %s)\n", dir, CERTS_SERVER_CERT,
			       res.domain, fmt_time(res.server_not_after, t1, sizeof t1));
		return 0;
	}
	if (domain) {
		fprintf(stderr, "postern certs renew: --domain belongs to 'init' (renew keeps the certificate's domain)\n");
		return 2;
	}
	if (before && (cfg_parse_duration_ms(before, &before_ms) < 0)) {
		fprintf(stderr, "postern certs renew: --renew-before '%s' is not a duration (e.g. 720h)\n", before);
		return 2;
	}
	rc = certs_renew(dir, before_ms / 1000, now, &res, err, sizeof err);
	if (rc < 0) {
		fprintf(stderr, "postern certs renew: %s\n", err);
		return 1;
	}
	if (res.server_created)
		printf("renewed %s/%s for *.%s: %s; new certificate expires %s\n", dir, CERTS_SERVER_CERT, res.domain,
		       res.reason, fmt_time(res.server_not_after, t1, sizeof t1));
	else
		printf("nothing to do: %s/%s for *.%s expires %s, more than %s from now\n", dir, CERTS_SERVER_CERT,
		       res.domain, fmt_time(res.server_not_after, t1, sizeof t1), before ? before : "720h");
	return 0;
}
