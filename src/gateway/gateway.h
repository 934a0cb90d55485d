/* postern gateway: the connector and the proxy in one process, from one YAML file. */
#ifndef POSTERN_GATEWAY_H
#define POSTERN_GATEWAY_H

#include "core/cfg.h"
#include "proxy/proxy.h"
#include "tunnel/connector.h"

/* Every top-level key a gateway file may have: the proxy's and the connector's (NULL-terminated). */
extern const char *const *gw_config_keys(void);

/* Loads both parts from d's root and rejects unknown keys. A file without edges is proxy-only and then needs
 * listen_addr. 0 or -EINVAL with cfg_error(d) naming file, line and key. */
int gw_config_load(cfg_doc *d, px_config **pc, ctr_config **cc);

/* The control API's keys (docs/proxy.md, "Approvals and pins"): admin_socket, a unix socket path ("" turns it
 * off; absent: GW_ADMIN_SOCKET_DEFAULT, where a failure to listen is a warning, not an error), and
 * admin_http, which also serves that API on metrics_listen (a loopback address only). *sock is malloc'd or
 * NULL when the key is absent. 0 or -EINVAL with cfg_error(d). */
#define GW_ADMIN_SOCKET_DEFAULT "/run/postern/gateway.sock"
int gw_config_admin(cfg_doc *d, char **sock, bool *http);

/* True when the file looks like a gateway config with a connector part (edges or token_file present). */
bool gw_config_has_connector(cfg_doc *d);
/* True when the file has a key only `postern gateway` takes (a connector key, metrics_listen, admin_socket,
 * admin_http): a proxy-only gateway file is checked as a gateway's, not as `postern proxy`'s. */
bool gw_config_is_gateway(cfg_doc *d);

#endif
