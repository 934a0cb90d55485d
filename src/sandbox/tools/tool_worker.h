/* The tool worker: `postern sandbox tool-worker`, started by the sandbox's init as one of the session's
 * own processes (same mounts, ids, seccomp filter, Landlock domain and cgroup as a command) and kept for
 * the session. It reads request frames (tool_wire.h) on fd 0, runs each file tool in its own view
 * (tool_files.h) and writes one reply frame per request on fd 1. Internal: not for people. */
#ifndef POSTERN_TOOL_WORKER_H
#define POSTERN_TOOL_WORKER_H

/* Serves until EOF on in_fd (0) or a broken stream (<0). */
int tworker_serve(int in_fd, int out_fd);
int tworker_main(int argc, char **argv);

#endif
