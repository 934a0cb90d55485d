/* The tool worker: a static program embedded in postern (tool_worker_image.c; also reachable as
 * `postern sandbox tool-worker`), started by the sandbox's init from a sealed memfd as one of the session's
 * own processes (same mounts, ids, seccomp filter, Landlock domain and cgroup as a command) and kept for the
 * session. It reads request frames (tool_wire.h) on fd 0, runs each file tool in its own view
 * (tool_files.h) and writes one reply frame per request on fd 1. Internal: not for people. */
#ifndef POSTERN_TOOL_WORKER_H
#define POSTERN_TOOL_WORKER_H

#include <stddef.h>

/* The worker's program (static, embedded: tool_worker_image.c), as a sealed read-only memfd made once per
 * process on first use and kept: an fd above 2 for sbx_cmd.exec_fd (not to be closed), or -errno. */
int tworker_image_fd(char *err, size_t errlen);
size_t tworker_image_size(void);

/* Serves until EOF on in_fd (0) or a broken stream (<0). */
int tworker_serve(int in_fd, int out_fd);
int tworker_main(int argc, char **argv);

#endif
