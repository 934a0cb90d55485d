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

/* True when the file looks like a gateway config with a connector part (edges or token_file present). */
bool gw_config_has_connector(cfg_doc *d);

#endif
