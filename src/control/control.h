/* `postern control`: the control plane daemon (the environments API on core/hsrv over the store seam) and
 * its admin commands (env, apikey, key, session), which open the store from the config directly. */
#ifndef POSTERN_CONTROL_H
#define POSTERN_CONTROL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/cfg.h"

typedef struct control_config {
	char *listen_addr, *cert_file, *key_file, *state_dir, *store, *metrics_listen, *api_base_url;
	char *redis_password_file, *redis_password; /* the secret read from the file at load; wiped at free */
	int64_t lease_ttl_ms, reclaim_ms, idle_timeout_ms, request_timeout_ms, max_connections;
	uint64_t max_body;
	int log_level, log_format;
} control_config;

/* A control config is told from the other kinds by its store: key (postern check). */
bool control_config_is(cfg_doc *d);
/* Reads and checks the keys of an open document (errors in cfg_error(d)). 0 or -EINVAL. */
int control_config_read(cfg_doc *d, control_config *c);
int control_config_load(const char *path, control_config *c, char *err, size_t errlen);
void control_config_free(control_config *c);

#endif
