/* `postern worker -c worker.yaml` (docs/worker.md): the customer side of Anthropic's self-hosted sandbox
 * environments. The command's entry point is worker_main (src/commands.h); its parts share worker_int.h. */
#ifndef POSTERN_WORKER_H
#define POSTERN_WORKER_H

#include <stdbool.h>

#include "core/cfg.h"

/* A worker config: it has environment_id or environment_key_file (for `postern check`). */
bool wk_config_is_worker(cfg_doc *d);
/* Loads and checks d as the worker does (keys, values, the key file and its mode, the sandbox options);
 * 0 or -EINVAL with the error in cfg_error(d). Nothing is kept. */
int wk_config_check(cfg_doc *d);

#endif
