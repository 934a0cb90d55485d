/* postern certs: the customer CA and the inner-TLS server certificate of a tunnel.
 *   init:  DIR/ca.pem + ca.key (ECDSA P-256, 5 years; kept when present) and DIR/server.pem + server.key
 *          (ECDSA P-256, 90 days, SAN *.DOMAIN and DOMAIN, signed directly by the CA).
 *   renew: reissues server.pem/server.key when they expire within the window. No network.
 * Keys are written 0600, certificates 0644, every file atomically (temp file, fsync, rename). */
#ifndef POSTERN_CERTS_H
#define POSTERN_CERTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define CERTS_CA_CERT "ca.pem"
#define CERTS_CA_KEY "ca.key"
#define CERTS_SERVER_CERT "server.pem"
#define CERTS_SERVER_KEY "server.key"
#define CERTS_CA_DAYS (5 * 365 + 1)
#define CERTS_SERVER_DAYS 90
#define CERTS_DEFAULT_RENEW_BEFORE_S (720 * 3600)

typedef struct certs_result {
	bool ca_created;
	bool server_created;
	char domain[256];          /* the tunnel domain the server certificate is for */
	char reason[160];          /* why the server certificate was (re)issued or kept */
	time_t ca_not_after, server_not_after;
} certs_result;

/* Validates and lowercases a DNS name (no wildcard, no trailing dot) into out. 0 or -EINVAL. */
int certs_check_domain(const char *domain, char *out, size_t outlen);

/* now: the issue time (tests pass a past time). err gets one clear sentence on failure. 0 or -errno. */
int certs_init(const char *dir, const char *domain, time_t now, certs_result *res, char *err, size_t errlen);
int certs_renew(const char *dir, int64_t renew_before_s, time_t now, certs_result *res, char *err, size_t errlen);

#endif
