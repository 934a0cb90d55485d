/* The in-sandbox init's root (sbxroot.c): the new root built inside the fresh namespaces, and the
 * hardening of the init after its cgroup joins. Used by sbxinit.c only; same rules as the init: no
 * malloc, no stdio, a failure is reported over the control socket and ends the init. */
#ifndef POSTERN_SBXROOT_H
#define POSTERN_SBXROOT_H

#include <stdbool.h>

#include "sandbox/engine/sbx_proto.h"

struct sbxr_state {
	int scratch_fd;  /* the detached tmpfs of /tmp and /dev/shm: closed by the caller once a command runs */
	bool sys_empty;  /* /sys is an empty tmpfs (the kernel refused a sysfs) */
	bool landlocked; /* special files are held by Landlock, not by the mknod filter */
};

/* Reports "text" to the host as SBXP_FAIL with err and ends the init. Valid once sbxr_build has begun. */
void __attribute__((noreturn, format(printf, 2, 3))) sbxr_fail(int err, const char *fmt, ...);
/* Builds the root and enters it (cwd: the workspace mount point). msgbuf (SBXP_MAX_PAYLOAD bytes)
 * receives SBXP_MAPS from a root host. p and st must outlive the init. Fails through sbxr_fail. */
void sbxr_build(const struct sbxi_params *p, struct sbxr_state *st, char *msgbuf);
/* After SBXP_GO and the cgroup joins: cgroup namespace, argument area scrubbed, capabilities dropped,
 * special files restricted, not dumpable. Fails through sbxr_fail. */
void sbxr_harden(void);

#endif
