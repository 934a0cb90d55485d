/* `postern worker -c worker.yaml` (docs/worker.md): the customer side of Anthropic's self-hosted sandbox
 * environments. The command's entry point is worker_main (src/commands.h); its parts share worker_int.h. */
#ifndef POSTERN_WORKER_H
#define POSTERN_WORKER_H

#endif
