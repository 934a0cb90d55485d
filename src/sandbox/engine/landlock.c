/* Landlock for special files (see landlock.h). Only the MAKE_* rights for FIFOs, sockets and devices
 * are handled, so every other access stays as the mounts and permissions make it. */
#include "sandbox/engine/landlock.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SPECIAL                                                                                          \
	(LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_CHAR |    \
	 LANDLOCK_ACCESS_FS_MAKE_BLOCK)
#define SCRATCH_OK (LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_SOCK)

int landlock_abi(void)
{
	long v = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
	return v < 0 ? 0 : (int)v;
}

int landlock_restrict(const char *const *paths, const char **what)
{
	struct landlock_ruleset_attr attr = { .handled_access_fs = SPECIAL };
	int rc = 0, dir = -1;
	int rs = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
	if (rs < 0) {
		*what = "landlock_create_ruleset";
		return -errno;
	}
	for (; *paths; paths++) {
		dir = open(*paths, O_PATH | O_DIRECTORY | O_CLOEXEC);
		struct landlock_path_beneath_attr pb = { .allowed_access = SCRATCH_OK, .parent_fd = dir };
		if (dir < 0 || syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) < 0) {
			rc = -errno;
			*what = *paths;
			goto out;
		}
		close(dir);
		dir = -1;
	}
	if (syscall(SYS_landlock_restrict_self, rs, 0) < 0) {
		rc = -errno;
		*what = "landlock_restrict_self";
	}
out:
	if (dir >= 0)
		close(dir);
	close(rs);
	return rc;
}
