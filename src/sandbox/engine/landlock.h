/* Where a session may create special files: a Landlock domain (ABI 1 and later) that refuses FIFOs,
 * socket files and device nodes everywhere but in the session's own scratch tmpfs (/tmp, /dev/shm, and a
 * tmpfs workspace), so that a workspace shared with the host never holds one. Used by the in-sandbox
 * init: no malloc, no stdio. */
#ifndef POSTERN_LANDLOCK_H
#define POSTERN_LANDLOCK_H

/* The Landlock ABI version the kernel offers, 0 when it has none (not built, not enabled in lsm=). */
int landlock_abi(void);

/* Restricts the calling thread (and what it starts later) as above. paths: absolute, NULL-terminated;
 * the directories beneath which FIFOs and sockets may be made. no_new_privs must be set.
 * 0, or -errno with the failing step in *what. */
int landlock_restrict(const char *const *paths, const char **what);

#endif
