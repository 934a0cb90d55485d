/* `postern control -c control.yaml`: the config, the daemon on core/daemon (the API server, the lease expiry
 * timer, metrics), and the dispatch to the admin commands (control_cli.c). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "commands.h"
#include "control/control_int.h"
#include "control/ctl_api.h"
#include "control/ctl_store.h"
#include "core/admin.h"
#include "core/daemon.h"
#include "core/err.h"
#include "core/hsrv.h"
#include "core/log.h"
#include "core/netaddr.h"
#include "core/secfile.h"
#include "core/tlsio.h"

static const char *const keys[] = { "listen_addr", "tls", "state_dir", "store", "lease_ttl", "reclaim_after",
				    "metrics_listen", "max_body", "max_connections", "idle_timeout", "request_timeout",
				    "api_base_url", "redis_password_file", "log_level", "log_format", NULL };
static const char *const tls_keys[] = { "cert_file", "key_file", NULL };

bool control_config_is(cfg_doc *d) { return cfg_key_line(cfg_root(d), "store") > 0; }

static bool loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
	if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
		return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

static int get_dur(cfg_doc *d, cfg_node *root, const char *k, int64_t min, int64_t max, int64_t *v)
{
	int r = cfg_get_duration_ms(d, root, k, v);
	if (r < 0)
		return r;
	if (r == 0 && (*v < min || *v > max))
		return cfg_fail(d, root, k, "must be from %lldms to %llds", (long long)min, (long long)max / 1000);
	return 0;
}

/* The Redis password file: a regular file of mode 0600 or stricter, one line of 1..512 visible characters. */
static int read_password(cfg_doc *d, cfg_node *root, const char *path, char **out)
{
	char why[600];
	sfile f;
	size_t len;
	bool visible;
	int rc = sfile_read(path, 514, 0, &f, why, sizeof why);
	if (rc < 0)
		return cfg_fail(d, root, "redis_password_file", "%s", why);
	len = sfile_first_line(&f);
	visible = len > 0 && len <= 512;
	for (size_t i = 0; i < len && visible; i++)
		visible = f.data[i] > 0x20 && f.data[i] < 0x7f;
	if (!visible)
		rc = cfg_fail(d, root, "redis_password_file", "%s: expected one line with the password (1 to 512 "
			      "visible characters)", path);
	else if (!(*out = strdup(f.data)))
		rc = cfg_fail(d, root, "redis_password_file", "out of memory");
	sfile_free(&f);
	return rc;
}

int control_config_read(cfg_doc *d, control_config *c)
{
	cfg_node *root = cfg_root(d), *tls = NULL;
	struct sockaddr_storage ss;
	int r;
	memset(c, 0, sizeof *c);
	c->log_level = c->log_format = -1;
	c->lease_ttl_ms = 90000;
	c->reclaim_ms = 5000;
	c->idle_timeout_ms = 60000;
	c->request_timeout_ms = 30000;
	c->max_connections = 4096;
	c->max_body = 16u * 1024 * 1024;
	if (!cfg_is_map(root))
		return cfg_fail(d, root, NULL, "the config must be a mapping of keys");
	if (cfg_check_keys(d, root, "the control config", keys) < 0)
		return -EINVAL;
	if ((r = cfg_get_str(d, root, "listen_addr", &c->listen_addr)) < 0 ||
	    (r == 1 && cfg_fail(d, root, "listen_addr", "required: the API's address, e.g. 127.0.0.1:8300") < 0))
		return -EINVAL;
	if (na_parse_sockaddr(c->listen_addr, true, &ss) < 0)
		return cfg_fail(d, root, "listen_addr", "'%s' is not a numeric address (ip:port, [v6]:port)", c->listen_addr);
	if ((r = cfg_get_map(d, root, "tls", &tls)) < 0)
		return -EINVAL;
	if (r == 0) {
		if (cfg_check_keys(d, tls, "tls", tls_keys) < 0 || cfg_get_str(d, tls, "cert_file", &c->cert_file) < 0 ||
		    cfg_get_str(d, tls, "key_file", &c->key_file) < 0)
			return -EINVAL;
		if (!c->cert_file || !c->key_file)
			return cfg_fail(d, root, "tls", "cert_file and key_file are both required");
	}
	if (c->cert_file) { /* what the daemon will load at start, checked now (postern check too) */
		char e[512];
		SSL_CTX *ctx = tio_server_ctx(c->cert_file, c->key_file, false, e, sizeof e);
		if (!ctx)
			return cfg_fail(d, root, "tls", "%s", e);
		SSL_CTX_free(ctx);
	}
	if (!c->cert_file && !loopback(&ss))
		return cfg_fail(d, root, "listen_addr", "%s is not a loopback address and there is no tls: plain HTTP would "
				"carry the API keys in the clear; add tls: {cert_file, key_file} or listen on 127.0.0.1",
				c->listen_addr);
	if ((r = cfg_get_str(d, root, "state_dir", &c->state_dir)) < 0 ||
	    (r == 1 && cfg_fail(d, root, "state_dir", "required: where the store keeps control.db") < 0))
		return -EINVAL;
	if ((r = cfg_get_str(d, root, "store", &c->store)) < 0)
		return -EINVAL;
	if (r == 1 || (strcmp(c->store, "sqlite") && strncmp(c->store, "redis://", 8)))
		return cfg_fail(d, root, "store", "required: \"sqlite\" or \"redis://host:port[/db]\"");
	if (cfg_get_str(d, root, "redis_password_file", &c->redis_password_file) < 0)
		return -EINVAL;
	if (c->redis_password_file) {
		if (strncmp(c->store, "redis://", 8))
			return cfg_fail(d, root, "redis_password_file", "only for a redis:// store");
		if (read_password(d, root, c->redis_password_file, &c->redis_password) < 0)
			return -EINVAL;
	}
	if (get_dur(d, root, "lease_ttl", 1000, 3600000, &c->lease_ttl_ms) < 0 ||
	    get_dur(d, root, "reclaim_after", 0, 86400000, &c->reclaim_ms) < 0 ||
	    get_dur(d, root, "idle_timeout", 1000, 3600000, &c->idle_timeout_ms) < 0 ||
	    get_dur(d, root, "request_timeout", 1000, 3600000, &c->request_timeout_ms) < 0 ||
	    cfg_get_int(d, root, "max_connections", 1, 1000000, &c->max_connections) < 0 ||
	    cfg_get_str(d, root, "metrics_listen", &c->metrics_listen) < 0 ||
	    cfg_get_str(d, root, "api_base_url", &c->api_base_url) < 0)
		return -EINVAL;
	if ((r = cfg_get_size(d, root, "max_body", &c->max_body)) < 0)
		return -EINVAL;
	if (c->max_body < 1024 || c->max_body > 1024ull * 1024 * 1024)
		return cfg_fail(d, root, "max_body", "must be from 1K to 1G");
	if (c->api_base_url && strncmp(c->api_base_url, "https://", 8) && strncmp(c->api_base_url, "http://", 7))
		return cfg_fail(d, root, "api_base_url", "must be an http:// or https:// URL");
	if (log_config_read(d, root, &c->log_level, &c->log_format) < 0)
		return -EINVAL;
	return 0;
}

void control_config_free(control_config *c)
{
	free(c->listen_addr);
	free(c->cert_file);
	free(c->key_file);
	free(c->state_dir);
	free(c->store);
	free(c->metrics_listen);
	free(c->api_base_url);
	free(c->redis_password_file);
	if (c->redis_password) {
		OPENSSL_cleanse(c->redis_password, strlen(c->redis_password));
		free(c->redis_password);
	}
	memset(c, 0, sizeof *c);
}

int control_config_load(const char *path, control_config *c, char *err, size_t errlen)
{
	cfg_doc *d = cfg_load(path, err, errlen);
	int rc;
	memset(c, 0, sizeof *c);
	if (!d)
		return -EINVAL;
	if ((rc = control_config_read(d, c)) < 0) {
		snprintf(err, errlen, "%s", cfg_error(d) ? cfg_error(d) : "invalid config");
		control_config_free(c);
	}
	cfg_free(d);
	return rc;
}

/* ---- the daemon ---- */
struct cd {
	control_config cfg;
	uv_loop_t *loop;
	ctl_store *store;
	capi *api;
	hsrv *srv;
	adm_server *adm;
	SSL_CTX *tls;
	uv_timer_t expire, drain_t;
	bool timers, draining;
	int drain_ticks;
	dmn *dm;
};

static void on_expire(uv_timer_t *t)
{
	struct cd *d = t->data;
	char err[256], q[300];
	int n = d->store->ops->work_expire(d->store, (unsigned)(d->cfg.lease_ttl_ms / 1000), err, sizeof err);
	if (n < 0)
		log_error("msg=\"lease expiry failed\" err=%s", log_quote(err, q, sizeof q));
	else if (n > 0)
		log_info("msg=\"leases expired: work back in the queue\" count=%d", n);
}

static void collect(void *ud)
{
	struct cd *d = ud;
	ctl_page p = { 0 };
	char err[128], cursor[64] = "";
	int64_t depth = 0, pending = 0, sessions = 0;
	adm_gauge_set("postern_control_sse_streams", NULL, d->api ? capi_streams(d->api) : 0);
	adm_gauge_set("postern_control_long_polls", NULL, d->api ? capi_polls(d->api) : 0);
	for (int pages = 0; pages < 100; pages++) {
		size_t i;
		json_t *e;
		if (d->store->ops->env_list(d->store, cursor, 100, &p, err, sizeof err) < 0)
			break;
		json_array_foreach(p.data, i, e) {
			ctl_stats st;
			const char *id = json_string_value(json_object_get(e, "id"));
			if (id && d->store->ops->work_stats(d->store, id, &st, err, sizeof err) == 0) {
				depth += (int64_t)st.depth;
				pending += (int64_t)st.pending;
			}
		}
		if (!ctl_page_next(&p, cursor, sizeof cursor))
			break;
	}
	cursor[0] = 0;
	for (int pages = 0; pages < 100; pages++) {
		if (d->store->ops->session_list(d->store, cursor, 1000, &p, err, sizeof err) < 0)
			break;
		sessions += (int64_t)json_array_size(p.data);
		if (!ctl_page_next(&p, cursor, sizeof cursor))
			break;
	}
	adm_gauge_set("postern_control_queue_depth", NULL, depth);
	adm_gauge_set("postern_control_queue_pending", NULL, pending);
	adm_gauge_set("postern_control_sessions", NULL, sessions);
}

static int cd_load(void *ud, const char *path, int *log_level, int *log_format, char *err, size_t errlen)
{
	struct cd *d = ud;
	int rc = control_config_load(path, &d->cfg, err, errlen);
	*log_level = d->cfg.log_level;
	*log_format = d->cfg.log_format;
	return rc;
}

static int cd_recheck(void *ud, const char *path, int *log_level, int *log_format, char *err, size_t errlen)
{
	control_config c;
	int rc = control_config_load(path, &c, err, errlen);
	(void)ud;
	*log_level = c.log_level;
	*log_format = c.log_format;
	control_config_free(&c);
	return rc;
}

static void close_all(struct cd *d)
{
	if (d->timers) {
		uv_close((uv_handle_t *)&d->expire, NULL);
		uv_close((uv_handle_t *)&d->drain_t, NULL);
		d->timers = false;
	}
	if (d->adm) {
		adm_collector_remove(collect, d);
		adm_free(d->adm);
		d->adm = NULL;
	}
	if (d->api)
		capi_drain(d->api);
	hsrv_free(d->srv);
	d->srv = NULL;
}

static int cd_start(void *ud, uv_loop_t *loop, char *err, size_t errlen)
{
	struct cd *d = ud;
	control_config *c = &d->cfg;
	capi_opts ao;
	hsrv_opts ho;
	int rc;
	char q[300];
	d->loop = loop;
	adm_build_info(POSTERN_VERSION, NULL);
	adm_process_metrics();
	if ((rc = ctl_store_open(c->store, c->state_dir, c->redis_password, &d->store, err, errlen)) < 0)
		return rc;
	memset(&ao, 0, sizeof ao);
	ao.loop = loop;
	ao.store = d->store;
	ao.lease_ttl = (unsigned)(c->lease_ttl_ms / 1000);
	ao.reclaim_ms = (uint64_t)c->reclaim_ms;
	ao.max_body = c->max_body;
	ao.api_base_url = c->api_base_url;
	if ((rc = capi_new(&ao, &d->api, err, errlen)) < 0)
		return rc;
	if (c->cert_file && !(d->tls = tio_server_ctx(c->cert_file, c->key_file, false, err, errlen)))
		return -EINVAL;
	memset(&ho, 0, sizeof ho);
	ho.max_body = c->max_body;
	ho.max_head = 16 * 1024;
	ho.idle_ms = (uint32_t)c->idle_timeout_ms;
	ho.head_ms = (uint32_t)c->request_timeout_ms;
	ho.max_conns = (unsigned)c->max_connections;
	ho.tls = d->tls;
	ho.error_body = capi_error_body;
	ho.error_headers = capi_error_headers;
	if ((rc = hsrv_new(loop, &ho, capi_handle, d->api, &d->srv, err, errlen)) < 0)
		return rc;
	if ((rc = hsrv_listen(d->srv, c->listen_addr, err, errlen)) < 0) {
		close_all(d);
		return rc;
	}
	if (c->metrics_listen) {
		if (!(d->adm = adm_new(loop))) {
			close_all(d);
			return err_set(err, errlen, -ENOMEM, "out of memory");
		}
		adm_collector_add(collect, d);
		if ((rc = adm_listen(d->adm, c->metrics_listen, err, errlen)) < 0) {
			close_all(d);
			return rc;
		}
	}
	uv_timer_init(loop, &d->expire);
	uv_timer_init(loop, &d->drain_t);
	d->expire.data = d->drain_t.data = d;
	d->timers = true;
	{
		uint64_t every = (uint64_t)c->lease_ttl_ms / 4;
		every = every < 100 ? 100 : every > 1000 ? 1000 : every;
		uv_timer_start(&d->expire, on_expire, every, every);
	}
	log_info("msg=\"control plane listening\" listen_addr=%s port=%d tls=%s store=%s state_dir=%s lease_ttl_s=%lld",
		 c->listen_addr, hsrv_port(d->srv), d->tls ? "on" : "off", d->store->ops->name,
		 log_quote(c->state_dir, q, sizeof q), (long long)(c->lease_ttl_ms / 1000));
	return 0;
}

/* Drain: no new connections, long polls answered null, streams ended, then what is left closed after 5 s. */
static void drain_tick(uv_timer_t *t)
{
	struct cd *d = t->data;
	if (hsrv_conns(d->srv) > 0 && ++d->drain_ticks < 50)
		return;
	close_all(d);
	dmn_drained(d->dm);
}

static void cd_drain(void *ud, dmn *dm, int signum)
{
	struct cd *d = ud;
	(void)signum;
	d->dm = dm;
	log_info("msg=\"draining\" connections=%u", d->srv ? hsrv_conns(d->srv) : 0);
	if (!d->srv || !d->timers) {
		close_all(d);
		dmn_drained(dm);
		return;
	}
	capi_drain(d->api);
	hsrv_stop_accepting(d->srv);
	uv_timer_stop(&d->expire);
	uv_timer_start(&d->drain_t, drain_tick, 0, 100);
}

static void cd_cleanup(void *ud)
{
	struct cd *d = ud;
	capi_free(d->api);
	ctl_store_close(d->store);
	if (d->tls)
		SSL_CTX_free(d->tls);
	control_config_free(&d->cfg);
	adm_metrics_reset();
}

static void usage(FILE *f)
{
	fprintf(f, "usage: postern control -c control.yaml [--log-level LEVEL] [--log-format logfmt|json]\n"
		   "       postern control env create NAME -c FILE | env list -c FILE\n"
		   "       postern control apikey create NAME -c FILE | key revoke ID -c FILE\n"
		   "       postern control session list -c FILE | session events ID -c FILE | session terminate ID -c FILE\n\n"
		   "The control plane of self-hosted sandboxes: Anthropic's environments API (environments, the work\n"
		   "queue, sessions and their event log) for `postern worker` and the Anthropic SDK's EnvironmentWorker.\n\n"
		   "config keys: listen_addr (required; plain HTTP only on loopback), tls.cert_file/key_file, state_dir\n"
		   "  (required), store (required: sqlite | redis://[user@]host:port[/db]), redis_password_file (0600),\n"
		   "  lease_ttl (90s), reclaim_after (5s),\n"
		   "  max_body (16M), max_connections (4096), idle_timeout (60s), request_timeout (30s), metrics_listen,\n"
		   "  api_base_url (put in work secrets), log_level, log_format\n\n"
		   "The admin commands open the store from the config directly (the daemon may be running) and print\n"
		   "JSON; a key is shown once, at create, and stored as its SHA-256 only. See docs/control.md.\n");
}

int control_main(int argc, char **argv)
{
	static const dmn_ops ops = { "postern control", usage, cd_load, cd_start, cd_drain, cd_cleanup, cd_recheck, NULL };
	struct cd d;
	if (cti_is_cli(argc, argv))
		return cti_cli(argc, argv);
	memset(&d, 0, sizeof d);
	return dmn_run(&ops, &d, argc, argv);
}
