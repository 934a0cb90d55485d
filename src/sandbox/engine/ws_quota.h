/* Workspace disk caps.
 *
 * A session's disk is capped in one of three ways, chosen at sbx_new() and stated in the limits line:
 *   disk=ext4-image   a scratch workspace (sbx_config.flags SBX_F_SCRATCH, a root caller): an ext4 file
 *                     system of exactly the cap, in an unlinked sparse file inside the workspace directory,
 *                     on a loop device, handed to the init as a detached mount. Filling it gives ENOSPC
 *                     inside; the host file system holds at most the cap. Nothing is attached in the host's
 *                     mount namespace, so when the session's mount namespace dies the loop device detaches
 *                     itself (autoclear) and the file's blocks are freed, even after a SIGKILL of postern.
 *   disk=tmpfs-shared the default tmpfs workspace: one tmpfs with /tmp and /dev/shm (sbxinit), capped there.
 *   disk=file-size    a host directory the session shares with the host (--workspace): there is no total
 *                     cap without project quotas, which this engine does not set yet; each file is capped at
 *                     the disk size (RLIMIT_FSIZE, EFBIG / SIGXFSZ) and a warning says so.
 * The loop device and mke2fs need root on the host; an unprivileged caller's scratch workspace falls
 * back to file-size with a warning naming why. */
#ifndef POSTERN_WS_QUOTA_H
#define POSTERN_WS_QUOTA_H

#include <stdint.h>
#include <sys/types.h>

#define WS_QUOTA_DEFAULT_BYTES (10ull << 30)
#define WS_QUOTA_MIN_BYTES (16ull << 20) /* smaller ext4 file systems waste most of themselves on metadata */
#define WS_QUOTA_MKFS_TIMEOUT_MS 20000

/* An empty ext4 of `bytes` whose root directory is owned by uid:gid with mode (& 0777), kept in an
 * O_TMPFILE of dirfd on a loop device. Returns a detached mount fd (nosuid, nodev; not yet attached
 * anywhere, so it can still be idmapped) or -errno with a reason in err. Needs root. */
int ws_quota_image_mount(int dirfd, uint64_t bytes, uid_t uid, gid_t gid, mode_t mode, char *err, size_t errlen);

#endif
