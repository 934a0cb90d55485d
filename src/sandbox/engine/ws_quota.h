/* Workspace disk caps.
 *
 * A session's disk is capped in one of these ways, chosen at sbx_new() (ws_quota_choose) and stated in the
 * limits line as disk=KIND:BYTES:
 *   ext4-image     a scratch workspace (sbx_config.flags SBX_F_SCRATCH) of a root caller: an ext4 file
 *                  system of exactly the cap, in an unlinked sparse file inside the workspace directory, on
 *                  a loop device, handed to the init as a detached mount. Filling it gives ENOSPC inside;
 *                  the host file system holds at most the cap. Nothing is attached in the host's mount
 *                  namespace, so when the session's mount namespace dies the loop device detaches itself
 *                  (autoclear) and the file's blocks are freed, even after a SIGKILL of postern.
 *   tmpfs          a scratch workspace of an unprivileged caller (or of root when the image failed): a
 *                  tmpfs the init mounts in its own user namespace. It is memory, so its size is the cap
 *                  lowered to what the memory limit leaves after /tmp (ws_quota_tmpfs_bytes): the files of
 *                  a session never hold more memory than it was granted, cgroup or not.
 *   tmpfs-shared   no workspace: one tmpfs with /tmp and /dev/shm (sbxroot), capped there.
 *   btrfs-qgroup   a shared --workspace that is a btrfs subvolume with quotas on (root): the subvolume's
 *                  qgroup gets a referenced-bytes limit of the cap (never raising a smaller one) for the
 *                  session, restored at its end. Past it writes fail with EDQUOT.
 *   project-quota  a shared --workspace on ext4/XFS mounted with project quotas (root): the directory
 *                  gets a project id (kept if it has one) inheriting to what is made in it, and that
 *                  project a block hard limit of the cap, restored at the end. Files that were there
 *                  before keep their project and are not counted.
 *   file-size-only a shared --workspace where none of that is possible: each file is capped at the disk
 *                  size (RLIMIT_FSIZE, EFBIG / SIGXFSZ), with a warning. When the cap was asked for
 *                  (--disk, route or worker option disk) sbx_new() refuses instead, unless it was
 *                  `--disk none` (WS_QUOTA_NONE: no total cap wanted).
 * RLIMIT_FSIZE of the cap applies to every command in every case. */
#ifndef POSTERN_WS_QUOTA_H
#define POSTERN_WS_QUOTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define WS_QUOTA_DEFAULT_BYTES (10ull << 30)
#define WS_QUOTA_MIN_BYTES (16ull << 20) /* smaller ext4 file systems waste most of themselves on metadata */
#define WS_QUOTA_MKFS_TIMEOUT_MS 20000
#define WS_QUOTA_NONE UINT64_MAX /* sbx_config.disk_bytes of `--disk none`: no total cap wanted */
#define WS_QUOTA_TMPFS_INODE_BYTES 16384 /* a tmpfs disk has an inode per 16K of cap, as mke2fs's ext4 */

enum ws_quota_kind { WSQ_EXT4_IMAGE, WSQ_TMPFS, WSQ_TMPFS_SHARED, WSQ_BTRFS_QGROUP, WSQ_PROJECT, WSQ_FILE_SIZE };

/* What a workspace's file system offers (ws_quota_probe). */
struct ws_quota_host {
	unsigned long fs_type; /* statfs f_type */
	bool root;             /* the caller is root (quotas, loop devices) */
	bool subvol_root;      /* btrfs: the directory is a subvolume's root (inode 256) */
	bool btrfs_quota;      /* btrfs: quotas are on */
	bool prjquota;         /* project quotas are counted and enforced (ext4 prjquota, XFS pquota) */
	uint64_t subvol_id;    /* btrfs: the subvolume's id (its level-0 qgroup) */
};

/* What was changed to cap a shared workspace, to be put back at the end. */
struct ws_quota_undo {
	enum ws_quota_kind kind; /* WSQ_BTRFS_QGROUP or WSQ_PROJECT; anything else (0 too): nothing to undo */
	int fd;                  /* the workspace directory (not O_PATH), while kind says there is something */
	uint64_t id;             /* qgroup id or project id */
	bool had_limit;
	uint64_t prev_limit;     /* bytes (btrfs max_rfer) or 1K blocks (project bhardlimit; 0 = none) */
	uint64_t prev_soft;      /* project: the soft limit, kept as it was */
};

/* Pure: which cap a workspace gets. A scratch workspace: ext4-image for root, else tmpfs (no workspace:
 * tmpfs-shared). A shared one: btrfs-qgroup or project-quota when h offers it, else file-size-only with the
 * reason (and what would make a cap possible) in why. */
enum ws_quota_kind ws_quota_choose(const struct ws_quota_host *h, bool has_workspace, bool scratch, char *why,
				   size_t whylen);
/* "ext4-image", "tmpfs", ... as in the limits line. */
const char *ws_quota_kind_name(enum ws_quota_kind k);
/* A file system type's name for messages ("ext4", "btrfs", "0x1234" for unknown ones; buf holds that). */
const char *ws_quota_fs_name(unsigned long fs_type, char *buf, size_t buflen);
/* Pure: a tmpfs disk's size: the cap, within what the memory limit leaves after the /tmp tmpfs. */
uint64_t ws_quota_tmpfs_bytes(uint64_t disk, uint64_t memory, uint64_t tmp);

/* Fills h for the directory dirfd (an fd opened O_RDONLY, not O_PATH). Quota state is read as root only. */
int ws_quota_probe(int dirfd, struct ws_quota_host *h);
/* Caps the shared workspace dirfd at bytes by kind (btrfs-qgroup or project-quota, as chosen for h);
 * fills u (u->fd is a dup of dirfd) for ws_quota_restore. 0 or -errno with a reason in err. */
int ws_quota_apply(int dirfd, const struct ws_quota_host *h, enum ws_quota_kind kind, uint64_t bytes,
		   struct ws_quota_undo *u, char *err, size_t errlen);
/* Puts back the limit ws_quota_apply changed and closes u->fd. A zeroed u is fine. */
void ws_quota_restore(struct ws_quota_undo *u);

/* Whether new directories made under dir (a worker's workspace_root: one per session, shared with the
 * host) can each get a total cap: 0 when they can (project quotas, root), else -EPERM with the reason and
 * what to do in err. */
int ws_quota_check_parent(const char *dir, char *err, size_t errlen);

/* A detached tmpfs mount (nosuid, nodev) of bytes with a root directory of mode (& 0777), owned by the
 * caller's fs ids, for the init to attach. No malloc, no stdio: safe in the cloned init. fd or -errno. */
int ws_quota_tmpfs(uint64_t bytes, mode_t mode);

/* An empty ext4 of `bytes` whose root directory is owned by uid:gid with mode (& 0777), kept in an
 * O_TMPFILE of dirfd on a loop device. Returns a detached mount fd (nosuid, nodev; not yet attached
 * anywhere, so it can still be idmapped) or -errno with a reason in err. Needs root. */
int ws_quota_image_mount(int dirfd, uint64_t bytes, uid_t uid, gid_t gid, mode_t mode, char *err, size_t errlen);

#endif
