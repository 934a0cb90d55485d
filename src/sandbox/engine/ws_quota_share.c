/* Workspace disk caps: choosing one, and the total caps of a shared host directory (btrfs qgroups, ext4/XFS
 * project quotas). See ws_quota.h. */
#include "sandbox/engine/ws_quota.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/btrfs.h>
#include <linux/btrfs_tree.h>
#include <linux/dqblk_xfs.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <linux/quota.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/log.h"

#ifndef SYS_quotactl_fd
#define SYS_quotactl_fd 443 /* the same number on every architecture */
#endif
#ifndef XFS_SUPER_MAGIC
#define XFS_SUPER_MAGIC 0x58465342
#endif
/* QCMD shifts a signed int past its top bit (undefined): the same command word, unsigned. */
#define QCMD_U(cmd, type) ((((unsigned)(cmd)) << SUBCMDSHIFT) | ((unsigned)(type) & SUBCMDMASK))
#define BTRFS_NO_LIMIT UINT64_MAX   /* a qgroup limit of -1 clears it */
#define PROJECT_ID_BASE 0x50000000u /* project ids this engine picks: out of the small ones people use */

const char *ws_quota_kind_name(enum ws_quota_kind k)
{
	static const char *const names[] = { "ext4-image",   "tmpfs",	    "tmpfs-shared",
					     "btrfs-qgroup", "project-quota", "file-size-only" };
	return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "unknown";
}

const char *ws_quota_fs_name(unsigned long t, char *buf, size_t buflen)
{
	static const struct { unsigned long magic; const char *name; } fs[] = {
		{ EXT4_SUPER_MAGIC, "ext4" },	  { XFS_SUPER_MAGIC, "xfs" },	     { BTRFS_SUPER_MAGIC, "btrfs" },
		{ TMPFS_MAGIC, "tmpfs" },	  { OVERLAYFS_SUPER_MAGIC, "overlay" }, { NFS_SUPER_MAGIC, "nfs" },
		{ 0x65735546UL, "fuse" },	  { 0x2fc12fc1UL, "zfs" },	     { 0xf15f083dUL, "9p" },
		{ 0x01021997UL, "v9fs" },
	};
	for (size_t i = 0; i < sizeof fs / sizeof fs[0]; i++)
		if (fs[i].magic == t)
			return fs[i].name;
	snprintf(buf, buflen, "0x%lx", t);
	return buf;
}

uint64_t ws_quota_tmpfs_bytes(uint64_t disk, uint64_t memory, uint64_t tmp)
{
	uint64_t room = memory > tmp ? memory - tmp : 0;
	uint64_t n = disk < room ? disk : room;
	return n < WS_QUOTA_MIN_BYTES ? WS_QUOTA_MIN_BYTES : n;
}

enum ws_quota_kind ws_quota_choose(const struct ws_quota_host *h, bool has_workspace, bool scratch, char *why,
				   size_t whylen)
{
	char b[24];
	why[0] = 0;
	if (!has_workspace)
		return WSQ_TMPFS_SHARED;
	if (scratch)
		return h->root ? WSQ_EXT4_IMAGE : WSQ_TMPFS;
	bool btrfs = h->fs_type == BTRFS_SUPER_MAGIC;
	if (h->root && btrfs && h->subvol_root && h->btrfs_quota)
		return WSQ_BTRFS_QGROUP;
	if (h->root && !btrfs && h->prjquota)
		return WSQ_PROJECT;
	if (!h->root)
		snprintf(why, whylen, "a quota on a shared directory needs root");
	else if (btrfs && !h->subvol_root)
		snprintf(why, whylen, "it is not a btrfs subvolume of its own (btrfs subvolume create makes one)");
	else if (btrfs)
		snprintf(why, whylen, "btrfs quotas are off on it (btrfs quota enable MOUNTPOINT)");
	else if (h->fs_type == EXT4_SUPER_MAGIC || h->fs_type == XFS_SUPER_MAGIC)
		snprintf(why, whylen, "%s is mounted without project quotas (prjquota)",
			 ws_quota_fs_name(h->fs_type, b, sizeof b));
	else
		snprintf(why, whylen, "%s offers neither project quotas nor btrfs qgroups",
			 ws_quota_fs_name(h->fs_type, b, sizeof b));
	return WSQ_FILE_SIZE;
}

/* One item of btrfs's quota tree by key (root only). 1 found (copied to out), 0 not there, -errno. */
static int btrfs_quota_item(int fd, uint32_t type, uint64_t offset, void *out, size_t outlen)
{
	struct btrfs_ioctl_search_args a;
	memset(&a, 0, sizeof a);
	a.key.tree_id = BTRFS_QUOTA_TREE_OBJECTID;
	a.key.min_type = a.key.max_type = type;
	a.key.min_offset = a.key.max_offset = offset;
	a.key.max_transid = UINT64_MAX;
	a.key.nr_items = 1;
	if (ioctl(fd, BTRFS_IOC_TREE_SEARCH, &a) < 0)
		return errno == ENOENT ? 0 : -errno; /* ENOENT: no quota tree, quotas were never on */
	if (a.key.nr_items < 1)
		return 0;
	struct btrfs_ioctl_search_header sh;
	memcpy(&sh, a.buf, sizeof sh);
	if (sh.type != type || sh.offset != offset || sh.len < outlen)
		return 0;
	memcpy(out, a.buf + sizeof sh, outlen);
	return 1;
}

int ws_quota_probe(int fd, struct ws_quota_host *h)
{
	struct statfs sf;
	struct stat st;
	int rc = 0;
	memset(h, 0, sizeof *h);
	h->root = geteuid() == 0;
	if (fstatfs(fd, &sf) < 0 || fstat(fd, &st) < 0)
		return -errno;
	h->fs_type = (unsigned long)sf.f_type;
	if (!h->root)
		return 0;
	if (h->fs_type == BTRFS_SUPER_MAGIC) {
		struct btrfs_ioctl_ino_lookup_args il;
		struct btrfs_qgroup_status_item qs;
		memset(&il, 0, sizeof il);
		il.objectid = BTRFS_FIRST_FREE_OBJECTID;
		h->subvol_root = st.st_ino == BTRFS_FIRST_FREE_OBJECTID;
		if (h->subvol_root && ioctl(fd, BTRFS_IOC_INO_LOOKUP, &il) == 0)
			h->subvol_id = il.treeid;
		rc = btrfs_quota_item(fd, BTRFS_QGROUP_STATUS_KEY, 0, &qs, sizeof qs);
		h->btrfs_quota = rc == 1 && (qs.flags & BTRFS_QGROUP_STATUS_FLAG_ON);
		h->subvol_root = h->subvol_root && h->subvol_id;
		return rc < 0 ? rc : 0;
	}
	/* Project quotas counted and enforced (XFS pqnoenforce, or ext4's quota feature without prjquota, only
	 * count). Q_XGETQSTAT answers for ext4 as for XFS. */
	fs_quota_stat_t qs;
	const unsigned on = FS_QUOTA_PDQ_ACCT | FS_QUOTA_PDQ_ENFD;
	memset(&qs, 0, sizeof qs);
	h->prjquota = syscall(SYS_quotactl_fd, fd, QCMD_U(Q_XGETQSTAT, PRJQUOTA), 0, &qs) == 0 && (qs.qs_flags & on) == on;
	return 0;
}

static int btrfs_limit(int fd, uint64_t id, uint64_t bytes)
{
	struct btrfs_ioctl_qgroup_limit_args la;
	memset(&la, 0, sizeof la);
	la.qgroupid = id;
	la.lim.flags = BTRFS_QGROUP_LIMIT_MAX_RFER; /* only that one is changed */
	la.lim.max_rfer = bytes;
	return ioctl(fd, BTRFS_IOC_QGROUP_LIMIT, &la) < 0 ? -errno : 0;
}

static int project_limit(int fd, uint32_t id, uint64_t soft, uint64_t blocks)
{
	struct if_dqblk q;
	memset(&q, 0, sizeof q);
	q.dqb_bsoftlimit = soft;
	q.dqb_bhardlimit = blocks; /* 0: no limit */
	q.dqb_valid = QIF_BLIMITS;
	return syscall(SYS_quotactl_fd, fd, QCMD_U(Q_SETQUOTA, PRJQUOTA), id, &q) < 0 ? -errno : 0;
}

static int apply_btrfs(int fd, const struct ws_quota_host *h, uint64_t bytes, struct ws_quota_undo *u, char *err,
		       size_t errlen)
{
	struct btrfs_qgroup_limit_item li;
	int rc = btrfs_quota_item(fd, BTRFS_QGROUP_LIMIT_KEY, h->subvol_id, &li, sizeof li);
	u->id = h->subvol_id;
	u->had_limit = rc == 1 && (li.flags & BTRFS_QGROUP_LIMIT_MAX_RFER);
	u->prev_limit = u->had_limit ? li.max_rfer : BTRFS_NO_LIMIT;
	if (rc < 0 || (rc = btrfs_limit(fd, u->id, u->prev_limit < bytes ? u->prev_limit : bytes)) < 0)
		snprintf(err, errlen, "btrfs qgroup 0/%llu limit: %s", (unsigned long long)u->id, strerror(-rc));
	return rc < 0 ? rc : 0;
}

static int apply_project(int fd, uint64_t bytes, struct ws_quota_undo *u, char *err, size_t errlen)
{
	struct fsxattr fx;
	struct stat st;
	struct if_dqblk q;
	uint64_t blocks = (bytes + 1023) / 1024;
	int rc = 0;
	if (ioctl(fd, FS_IOC_FSGETXATTR, &fx) < 0 || fstat(fd, &st) < 0) {
		rc = -errno;
		snprintf(err, errlen, "project id of the workspace: %s", strerror(-rc));
		return rc;
	}
	/* A project id the directory has already (set by its owner) is kept; else one of ours. */
	if (!fx.fsx_projid)
		fx.fsx_projid = PROJECT_ID_BASE + (uint32_t)(st.st_ino % 0x10000000u);
	fx.fsx_xflags |= FS_XFLAG_PROJINHERIT;
	u->id = fx.fsx_projid;
	if (syscall(SYS_quotactl_fd, fd, QCMD_U(Q_GETQUOTA, PRJQUOTA), (uint32_t)u->id, &q) == 0 &&
	    (q.dqb_valid & QIF_BLIMITS))
		u->had_limit = q.dqb_bhardlimit != 0, u->prev_limit = q.dqb_bhardlimit, u->prev_soft = q.dqb_bsoftlimit;
	if (ioctl(fd, FS_IOC_FSSETXATTR, &fx) < 0) {
		rc = -errno;
		snprintf(err, errlen, "set project id %u on the workspace: %s", fx.fsx_projid, strerror(-rc));
		return rc;
	}
	if (u->had_limit && u->prev_limit < blocks)
		blocks = u->prev_limit; /* never raise a smaller limit */
	if ((rc = project_limit(fd, (uint32_t)u->id, u->prev_soft, blocks)) < 0)
		snprintf(err, errlen, "project %u limit: %s", fx.fsx_projid, strerror(-rc));
	return rc;
}

int ws_quota_apply(int dirfd, const struct ws_quota_host *h, enum ws_quota_kind kind, uint64_t bytes,
		   struct ws_quota_undo *u, char *err, size_t errlen)
{
	int rc;
	memset(u, 0, sizeof *u);
	u->fd = -1;
	if (kind != WSQ_BTRFS_QGROUP && kind != WSQ_PROJECT)
		return 0;
	if ((u->fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3)) < 0) {
		rc = -errno;
		snprintf(err, errlen, "dup: %s", strerror(-rc));
		return rc;
	}
	rc = kind == WSQ_BTRFS_QGROUP ? apply_btrfs(u->fd, h, bytes, u, err, errlen)
				      : apply_project(u->fd, bytes, u, err, errlen);
	if (rc < 0) {
		close(u->fd);
		u->fd = -1;
		return rc;
	}
	u->kind = kind; /* only now is there something to put back */
	return 0;
}

void ws_quota_restore(struct ws_quota_undo *u)
{
	if (!u || (u->kind != WSQ_BTRFS_QGROUP && u->kind != WSQ_PROJECT))
		return; /* nothing applied (a zeroed u is fine) */
	int rc = 0;
	if (u->kind == WSQ_BTRFS_QGROUP)
		rc = btrfs_limit(u->fd, u->id, u->had_limit ? u->prev_limit : BTRFS_NO_LIMIT);
	else if (u->kind == WSQ_PROJECT)
		rc = project_limit(u->fd, (uint32_t)u->id, u->prev_soft, u->prev_limit);
	if (rc < 0)
		log_warn("msg=\"cannot put back the workspace's quota limit\" kind=%s id=%llu reason=\"%s\"",
			 ws_quota_kind_name(u->kind), (unsigned long long)u->id, strerror(-rc));
	close(u->fd);
	u->fd = -1;
	u->kind = WSQ_FILE_SIZE;
}

int ws_quota_check_parent(const char *dir, char *err, size_t errlen)
{
	struct ws_quota_host h;
	char why[300], fsn[24];
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", dir, strerror(-rc));
		return rc;
	}
	if ((rc = ws_quota_probe(fd, &h)) < 0 && !h.fs_type) {
		snprintf(err, errlen, "%s: %s", dir, strerror(-rc));
		close(fd);
		return rc;
	}
	close(fd);
	enum ws_quota_kind k = ws_quota_choose(&h, true, false, why, sizeof why);
	if (k == WSQ_PROJECT)
		return 0; /* each new directory gets a project of its own */
	if (k == WSQ_BTRFS_QGROUP)
		snprintf(why, sizeof why, "a new directory in a btrfs subvolume is not a subvolume of its own");
	snprintf(err, errlen,
		 "each session's workspace is a new directory under %s (%s), which can have no total disk cap: %s. "
		 "Mount it with project quotas (ext4 prjquota, XFS pquota), or set disk: none to accept a per-file cap only",
		 dir, ws_quota_fs_name(h.fs_type, fsn, sizeof fsn), why);
	return -EPERM;
}
