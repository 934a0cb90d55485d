/* A self-signed P-256 certificate and its key for in-process TLS in tests and fuzz harnesses (no files).
 * Returns 0 with *cert and *key set (the caller frees both), or -1. */
#ifndef POSTERN_TEST_SELFSIGNED_H
#define POSTERN_TEST_SELFSIGNED_H

#include <openssl/evp.h>
#include <openssl/x509.h>

static inline int selfsigned_make(const char *cn, long valid_s, X509 **cert, EVP_PKEY **key)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *n;
	int rc = -1;

	if (!k || !x)
		goto out;
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), valid_s);
	n = X509_get_subject_name(x);
	if (X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0) != 1 ||
	    X509_set_issuer_name(x, n) != 1 || X509_set_pubkey(x, k) != 1 || X509_sign(x, k, EVP_sha256()) <= 0)
		goto out;
	*cert = x;
	*key = k;
	x = NULL;
	k = NULL;
	rc = 0;
out:
	X509_free(x);
	EVP_PKEY_free(k);
	return rc;
}

#endif
