/* The sandbox init's network namespace (loopback only, up), made by a short-lived thread of the init while
 * its main thread builds the root: making one costs 0.3-0.6 ms here (sysctl tables, the loopback device),
 * which then overlaps the mounts instead of preceding them in the host's clone. Used by sbxroot.c only,
 * before anything of the session runs. */
#ifndef POSTERN_SBXNET_H
#define POSTERN_SBXNET_H

/* Starts the thread. Call once, in the init's user namespace, single-threaded. 0 or -errno. */
int sbxnet_start(void);
/* Waits (bounded) for the thread's end and moves the calling thread into the namespace it made.
 * 0 or -errno, with *what naming the step that failed. */
int sbxnet_join(const char **what);

#endif
