#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/certs.h"

#define DAY (24 * 3600)

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

static int setup(void **st)
{
	char *d = strdup("/tmp/postern-certs-XXXXXX");
	if (!d || !mkdtemp(d))
		return -1;
	*st = d;
	return 0;
}

static int teardown(void **st)
{
	nftw(*st, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	free(*st);
	return 0;
}

static void path(char *buf, size_t len, const char *dir, const char *name)
{
	snprintf(buf, len, "%s/%s", dir, name);
}

static X509 *read_cert(const char *dir, const char *name)
{
	char p[512];
	FILE *f;
	X509 *x;
	path(p, sizeof p, dir, name);
	f = fopen(p, "r");
	assert_non_null(f);
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(x);
	return x;
}

static char *slurp(const char *dir, const char *name)
{
	char p[512];
	FILE *f;
	char *buf = calloc(1, 16384);
	path(p, sizeof p, dir, name);
	f = fopen(p, "r");
	assert_non_null(f);
	assert_non_null(buf);
	assert_true(fread(buf, 1, 16383, f) > 0);
	fclose(f);
	return buf;
}

static int mode_of(const char *dir, const char *name)
{
	char p[512];
	struct stat st;
	path(p, sizeof p, dir, name);
	assert_int_equal(stat(p, &st), 0);
	return st.st_mode & 07777;
}

static bool ext_critical(X509 *x, int nid)
{
	int i = X509_get_ext_by_NID(x, nid, -1);
	assert_true(i >= 0);
	return X509_EXTENSION_get_critical(X509_get_ext(x, i)) == 1;
}

static int verify(X509 *ca, X509 *leaf, const char *host)
{
	X509_STORE *store = X509_STORE_new();
	X509_STORE_CTX *ctx = X509_STORE_CTX_new();
	int ok;
	X509_STORE_add_cert(store, ca);
	X509_STORE_CTX_init(ctx, store, leaf, NULL);
	X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
	if (host)
		X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(ctx), host, 0);
	ok = X509_verify_cert(ctx);
	X509_STORE_CTX_free(ctx);
	X509_STORE_free(store);
	return ok;
}

static double days_left(X509 *x)
{
	int d = 0, s = 0;
	ASN1_TIME_diff(&d, &s, NULL, X509_get0_notAfter(x));
	return d + s / 86400.0;
}

static void test_init_creates_valid_chain(void **st)
{
	const char *dir = *st;
	char err[512];
	certs_result r;
	X509 *ca, *srv;
	EVP_PKEY *pk;
	const ASN1_OCTET_STRING *ski, *aki;

	assert_int_equal(certs_init(dir, "Abc123.Tunnel.Example.com", time(NULL), &r, err, sizeof err), 0);
	assert_true(r.ca_created);
	assert_true(r.server_created);
	assert_string_equal(r.domain, "abc123.tunnel.example.com");

	ca = read_cert(dir, CERTS_CA_CERT);
	srv = read_cert(dir, CERTS_SERVER_CERT);
	/* CA: P-256, CA:TRUE critical, keyCertSign critical, SKI, ~5 years. */
	pk = X509_get0_pubkey(ca);
	assert_true(EVP_PKEY_is_a(pk, "EC"));
	assert_int_equal(EVP_PKEY_get_bits(pk), 256);
	assert_int_equal(X509_check_ca(ca), 1);
	assert_true(ext_critical(ca, NID_basic_constraints));
	assert_true(ext_critical(ca, NID_key_usage));
	assert_true(X509_get_key_usage(ca) & KU_KEY_CERT_SIGN);
	assert_true(X509_get_key_usage(ca) & KU_CRL_SIGN);
	ski = X509_get0_subject_key_id(ca);
	assert_non_null(ski);
	assert_true(days_left(ca) > 5 * 365 - 1 && days_left(ca) < 5 * 365 + 2);
	assert_int_equal(X509_get_signature_nid(ca), NID_ecdsa_with_SHA256);

	/* Server: signed directly by the CA, AKI = CA SKI, serverAuth, wildcard SAN, 90 days. */
	assert_int_equal(X509_check_issued(ca, srv), X509_V_OK);
	aki = X509_get0_authority_key_id(srv);
	assert_non_null(aki);
	assert_int_equal(ASN1_OCTET_STRING_cmp(aki, ski), 0);
	assert_true(X509_get_extended_key_usage(srv) & XKU_SSL_SERVER);
	assert_int_equal(X509_check_ca(srv), 0);
	assert_true(days_left(srv) > 89.9 && days_left(srv) < 90.1);
	assert_int_equal(verify(ca, srv, "route.abc123.tunnel.example.com"), 1);
	assert_int_equal(verify(ca, srv, "abc123.tunnel.example.com"), 1);
	assert_int_equal(verify(ca, srv, "route.other.example.com"), 0);
	assert_int_equal(verify(ca, srv, "a.b.abc123.tunnel.example.com"), 0); /* one label only */

	/* Modes: keys private, certificates readable; no temp files left. */
	assert_int_equal(mode_of(dir, CERTS_CA_KEY), 0600);
	assert_int_equal(mode_of(dir, CERTS_SERVER_KEY), 0600);
	assert_int_equal(mode_of(dir, CERTS_CA_CERT), 0644);
	assert_int_equal(mode_of(dir, CERTS_SERVER_CERT), 0644);
	{
		char cmd[600];
		snprintf(cmd, sizeof cmd, "test $(ls -A %s | wc -l) -eq 4", dir);
		assert_int_equal(system(cmd), 0);
	}
	X509_free(ca);
	X509_free(srv);
}

static void test_idempotent_and_domain_change(void **st)
{
	const char *dir = *st;
	char err[512];
	certs_result r;
	char *ca1, *srv1, *key1, *ca2, *srv2, *key2, *srv3;

	assert_int_equal(certs_init(dir, "t1.example.net", time(NULL), &r, err, sizeof err), 0);
	ca1 = slurp(dir, CERTS_CA_CERT);
	key1 = slurp(dir, CERTS_CA_KEY);
	srv1 = slurp(dir, CERTS_SERVER_CERT);

	/* Same domain: nothing changes. */
	assert_int_equal(certs_init(dir, "t1.example.net", time(NULL), &r, err, sizeof err), 0);
	assert_false(r.ca_created);
	assert_false(r.server_created);
	ca2 = slurp(dir, CERTS_CA_CERT);
	key2 = slurp(dir, CERTS_CA_KEY);
	srv2 = slurp(dir, CERTS_SERVER_CERT);
	assert_string_equal(ca1, ca2);
	assert_string_equal(key1, key2);
	assert_string_equal(srv1, srv2);

	/* Another domain: CA kept, server certificate reissued for the new domain. */
	assert_int_equal(certs_init(dir, "t2.example.net", time(NULL), &r, err, sizeof err), 0);
	assert_false(r.ca_created);
	assert_true(r.server_created);
	assert_non_null(strstr(r.reason, "another domain"));
	free(ca2);
	ca2 = slurp(dir, CERTS_CA_CERT);
	srv3 = slurp(dir, CERTS_SERVER_CERT);
	assert_string_equal(ca1, ca2);
	assert_string_not_equal(srv1, srv3);
	{
		X509 *ca = read_cert(dir, CERTS_CA_CERT), *srv = read_cert(dir, CERTS_SERVER_CERT);
		assert_int_equal(verify(ca, srv, "x.t2.example.net"), 1);
		assert_int_equal(verify(ca, srv, "x.t1.example.net"), 0);
		X509_free(ca);
		X509_free(srv);
	}
	/* A server key that does not match its certificate (a crash between the two writes) is repaired. */
	{
		char p[512];
		path(p, sizeof p, dir, CERTS_SERVER_KEY);
		FILE *f = fopen(p, "w");
		assert_non_null(f);
		fputs(key1, f); /* the CA key: valid PEM, wrong key */
		fclose(f);
	}
	assert_int_equal(certs_init(dir, "t2.example.net", time(NULL), &r, err, sizeof err), 0);
	assert_true(r.server_created);
	free(ca1), free(srv1), free(key1), free(ca2), free(srv2), free(key2), free(srv3);
}

static void test_renew_window(void **st)
{
	const char *dir = *st;
	char err[512];
	certs_result r;
	time_t now = time(NULL);
	char *ca1, *srv1, *srv2;
	X509 *srv;

	/* Issued 70 days ago: 20 days left, inside the default 30-day window. */
	assert_int_equal(certs_init(dir, "renew.example.org", now - 70 * DAY, &r, err, sizeof err), 0);
	ca1 = slurp(dir, CERTS_CA_CERT);
	srv1 = slurp(dir, CERTS_SERVER_CERT);

	/* A 10-day window: not due yet. */
	assert_int_equal(certs_renew(dir, 10 * DAY, now, &r, err, sizeof err), 0);
	assert_false(r.server_created);
	srv2 = slurp(dir, CERTS_SERVER_CERT);
	assert_string_equal(srv1, srv2);
	free(srv2);

	assert_int_equal(certs_renew(dir, CERTS_DEFAULT_RENEW_BEFORE_S, now, &r, err, sizeof err), 0);
	assert_true(r.server_created);
	assert_string_equal(r.domain, "renew.example.org");
	srv2 = slurp(dir, CERTS_SERVER_CERT);
	assert_string_not_equal(srv1, srv2);
	srv = read_cert(dir, CERTS_SERVER_CERT);
	assert_true(days_left(srv) > 89.9);
	{
		X509 *ca = read_cert(dir, CERTS_CA_CERT);
		char *ca2 = slurp(dir, CERTS_CA_CERT);
		assert_int_equal(verify(ca, srv, "a.renew.example.org"), 1);
		assert_string_equal(ca1, ca2);
		free(ca2);
		X509_free(ca);
	}
	assert_int_equal(mode_of(dir, CERTS_SERVER_KEY), 0600);
	X509_free(srv);

	/* Renewed: a second run does nothing. */
	assert_int_equal(certs_renew(dir, CERTS_DEFAULT_RENEW_BEFORE_S, now, &r, err, sizeof err), 0);
	assert_false(r.server_created);
	free(ca1), free(srv1), free(srv2);
}

static void test_errors(void **st)
{
	const char *dir = *st;
	char err[512], p[512];
	certs_result r;
	static const char *bad[] = { "", "*.example.com", "exa mple.com", "-a.example.com", "a-.example.com",
				     "a..example.com", ".example.com", "example.com.", "ex_ample.com", NULL };
	for (int i = 0; bad[i]; i++)
		assert_int_equal(certs_init(dir, bad[i], time(NULL), &r, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "not a valid domain"));

	/* renew without init */
	assert_true(certs_renew(dir, DAY, time(NULL), &r, err, sizeof err) < 0);
	assert_non_null(strstr(err, "certs init"));

	/* --out is a file */
	path(p, sizeof p, dir, "afile");
	fclose(fopen(p, "w"));
	assert_int_equal(certs_init(p, "ok.example.com", time(NULL), &r, err, sizeof err), -ENOTDIR);
	assert_non_null(strstr(err, "not a directory"));

	/* parents missing (a fresh host has no /etc/postern): made like mkdir -p, parents 0755, the key
	 * directory 0700 (issue 11; this used to be refused) */
	path(p, sizeof p, dir, "no/such/dir");
	assert_int_equal(certs_init(p, "ok.example.com", time(NULL), &r, err, sizeof err), 0);
	{
		struct stat sb;
		assert_int_equal(stat(p, &sb), 0);
		assert_int_equal(sb.st_mode & 0777, 0700);
		path(p, sizeof p, dir, "no/such");
		assert_int_equal(stat(p, &sb), 0);
		assert_int_equal(sb.st_mode & 0777, 0755);
	}
	/* a parent that is a file is named */
	path(p, sizeof p, dir, "afile/sub");
	assert_int_equal(certs_init(p, "ok.example.com", time(NULL), &r, err, sizeof err), -ENOTDIR);
	assert_non_null(strstr(err, "afile: exists and is not a directory"));

	/* half a CA is never replaced */
	path(p, sizeof p, dir, "half");
	assert_int_equal(certs_init(p, "ok.example.com", time(NULL), &r, err, sizeof err), 0);
	{
		char q[600];
		snprintf(q, sizeof q, "%s/%s", p, CERTS_CA_CERT);
		assert_int_equal(unlink(q), 0);
	}
	assert_int_equal(certs_init(p, "ok.example.com", time(NULL), &r, err, sizeof err), -EEXIST);
	assert_non_null(strstr(err, "exists without"));
	ERR_clear_error();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_init_creates_valid_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idempotent_and_domain_change, setup, teardown),
		cmocka_unit_test_setup_teardown(test_renew_window, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
