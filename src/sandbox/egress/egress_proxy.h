/* Host-side egress proxy for a sandbox: HTTP CONNECT and plain absolute-URI HTTP, served on a listening
 * socket that the engine created inside the sandbox's network namespace (sbx_netns_listen). The sandbox
 * has no other route out, so this is its only way to the network.
 *
 * For every request: the requested name is checked against the egress policy BEFORE any lookup
 * (egp_check_host), the proxy resolves the name itself (getaddrinfo on libuv's thread pool, with a
 * timeout), checks each address (egp_check_addr, with the host's own interface addresses added) and
 * connects only to an allowed one. A refusal is `403` with `X-Proxy-Error: <reason>` and one log line
 * naming the rule; other failures are 400/408/431/502/503/504 with X-Proxy-Error too.
 * Plain HTTP carries one request per client connection (Host is rewritten to the URL's authority,
 * hop-by-hop and Proxy-* headers are dropped, the upstream gets `Connection: close`), so a pipelined second
 * request can never ride an allowed connection to another host.
 *
 * Every wait has a timeout (headers, DNS, connect, idle tunnel); headers are capped; the number of
 * connections is capped; relaying has backpressure (a side stops reading while the other's write queue is
 * over a high-water mark). The proxy runs its own libuv loop in its own thread. */
#ifndef POSTERN_EGRESS_PROXY_H
#define POSTERN_EGRESS_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "sandbox/egress/egress_policy.h"

typedef struct egx egx;
struct sbx;

#define EGX_PROXY_ADDR "127.0.0.1"
#define EGX_PROXY_PORT 3128
#define EGX_PROXY_URL "http://127.0.0.1:3128"

struct egx_config {
	egp_policy *policy;	      /* taken over by egx_start (freed by egx_stop, or on failure) */
	int listen_fd;		      /* listening TCP socket; taken over likewise */
	unsigned header_timeout_ms;   /* default 10000 */
	unsigned dns_timeout_ms;      /* default 5000 */
	unsigned connect_timeout_ms;  /* default 10000 */
	unsigned idle_timeout_ms;     /* relayed connection without traffic; default 300000 */
	size_t max_header;	      /* request head bytes; default 16384 */
	size_t max_conns;	      /* concurrent client connections; default 256 */
	int skip_local_addrs;	      /* do not add the host's interface addresses (tests) */
};

/* Starts the proxy thread. NULL with a reason in err on failure (policy and fd are released then). */
egx *egx_start(const struct egx_config *c, char *err, size_t errlen);
/* Stops the thread, closes every connection and frees. NULL is fine. */
void egx_stop(egx *x);

/* Creates the listening socket inside s's network namespace at EGX_PROXY_ADDR:EGX_PROXY_PORT and starts a
 * proxy with policy (taken over). The sandbox's commands must get egx_proxy_env() in their environment
 * (sbx_config.env_set, decided before sbx_new). */
int egx_start_for_sandbox(struct sbx *s, egp_policy *policy, egx **out, char *err, size_t errlen);
/* NULL-terminated "K=V" list: HTTP_PROXY, HTTPS_PROXY (both cases), ALL_PROXY-free, NO_PROXY. */
const char *const *egx_proxy_env(void);

/* Counters (read from any thread; approximate). */
struct egx_stats {
	uint64_t accepted, allowed, refused, failed;
};
void egx_get_stats(const egx *x, struct egx_stats *st);

/* Egress for `postern sandbox run --allow-domain`: serves HTTP CONNECT and plain HTTP on listen_fd (a socket
 * inside the sandbox's net namespace, owned by the proxy from then on) in a background thread, allowing the
 * NULL-terminated domain patterns. NULL with a reason in err. */
struct egx_run;
struct egx_run *egx_run_start(int listen_fd, const char *const *allow, char *err, size_t errlen);
void egx_run_stop(struct egx_run *e);

#endif
