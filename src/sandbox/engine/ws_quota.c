/* Workspace disk caps: the engine's own size-capped file system for scratch workspaces. See ws_quota.h. */
#include "sandbox/engine/ws_quota.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define LOOP_TRIES 16

static const char *mke2fs_path(void)
{
	static const char *const cand[] = { "/usr/sbin/mke2fs", "/sbin/mke2fs", NULL };
	for (int i = 0; cand[i]; i++)
		if (access(cand[i], X_OK) == 0)
			return cand[i];
	return NULL;
}

/* Formats the image (fd 3 in the child) with the host's mke2fs: no journal (the disk dies with the session),
 * no reserved blocks, inode tables left for later (the mount says noinit_itable, so never written). */
static int mkfs(int img, uid_t uid, gid_t gid, char *err, size_t errlen)
{
	const char *bin = mke2fs_path();
	char ext[96];
	int out = -1, hi = -1, pfd = -1, rc = 0, st = 0;
	pid_t pid = -1;
	posix_spawn_file_actions_t fa;
	char *const envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", NULL };

	if (!bin) {
		snprintf(err, errlen, "mke2fs not found in /usr/sbin or /sbin (Debian package e2fsprogs)");
		return -ENOENT;
	}
	snprintf(ext, sizeof ext, "nodiscard,lazy_itable_init=1,lazy_journal_init=1,root_owner=%u:%u", (unsigned)uid,
		 (unsigned)gid);
	char *const argv[] = { (char *)bin, "-q", "-F", "-t", "ext4", "-O", "^has_journal", "-b", "4096", "-m", "0", "-E", ext,
			       "-L", "postern-ws", "/proc/self/fd/3", NULL };
	if ((out = memfd_create("mke2fs-out", MFD_CLOEXEC)) < 0 || (hi = fcntl(img, F_DUPFD_CLOEXEC, 10)) < 0) {
		rc = -errno;
		snprintf(err, errlen, "mke2fs: %s", strerror(-rc));
		goto out;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, out, 1);
	posix_spawn_file_actions_adddup2(&fa, out, 2);
	posix_spawn_file_actions_adddup2(&fa, hi, 3);
	rc = -posix_spawn(&pid, bin, &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	if (rc < 0) {
		snprintf(err, errlen, "mke2fs: cannot start %s: %s", bin, strerror(-rc));
		goto out;
	}
	/* Bounded wait: a stuck mke2fs is killed, not waited for. */
	if ((pfd = pidfd_open(pid, 0)) >= 0) {
		struct pollfd p = { pfd, POLLIN, 0 };
		if (poll(&p, 1, WS_QUOTA_MKFS_TIMEOUT_MS) <= 0) {
			kill(pid, SIGKILL);
			rc = -ETIMEDOUT;
		}
	}
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (rc == 0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
		char msg[200] = "";
		ssize_t n = pread(out, msg, sizeof msg - 1, 0);
		msg[n > 0 ? n : 0] = 0;
		for (char *c = msg; *c; c++)
			if (*c == '\n' || *c == '"')
				*c = ' ';
		rc = -EIO;
		snprintf(err, errlen, "mke2fs failed (%s %d): %s", WIFEXITED(st) ? "exit" : "signal",
			 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), msg);
	} else if (rc == -ETIMEDOUT) {
		snprintf(err, errlen, "mke2fs ran over %d ms", WS_QUOTA_MKFS_TIMEOUT_MS);
	}
out:
	if (pfd >= 0)
		close(pfd);
	if (out >= 0)
		close(out);
	if (hi >= 0)
		close(hi);
	return rc;
}

/* Binds the image to a free loop device that detaches itself when its last user (the mount) goes.
 * Returns the device's fd and its path in dev. */
static int loop_attach(int img, char *dev, size_t devlen, char *err, size_t errlen)
{
	int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC), rc = -EBUSY;
	if (ctl < 0) {
		rc = -errno;
		snprintf(err, errlen, "/dev/loop-control: %s", strerror(-rc));
		return rc;
	}
	for (int i = 0; i < LOOP_TRIES; i++) {
		int n = ioctl(ctl, LOOP_CTL_GET_FREE);
		if (n < 0) {
			rc = -errno;
			snprintf(err, errlen, "no free loop device: %s", strerror(-rc));
			break;
		}
		snprintf(dev, devlen, "/dev/loop%d", n);
		int fd = open(dev, O_RDWR | O_CLOEXEC);
		if (fd < 0) {
			rc = -errno;
			snprintf(err, errlen, "%s: %s", dev, strerror(-rc));
			break;
		}
		struct loop_config lc = { .fd = (uint32_t)img, .block_size = 4096 };
		lc.info.lo_flags = LO_FLAGS_AUTOCLEAR | LO_FLAGS_DIRECT_IO;
		if (ioctl(fd, LOOP_CONFIGURE, &lc) == 0) {
			close(ctl);
			return fd;
		}
		rc = -errno;
		close(fd);
		if (rc != -EBUSY) { /* EBUSY: another process took that device first; try the next */
			snprintf(err, errlen, "%s: LOOP_CONFIGURE: %s", dev, strerror(-rc));
			break;
		}
		snprintf(err, errlen, "every free loop device was taken by others %d times", LOOP_TRIES);
	}
	close(ctl);
	return rc;
}

int ws_quota_image_mount(int dirfd, uint64_t bytes, uid_t uid, gid_t gid, mode_t mode, char *err, size_t errlen)
{
	char dev[32];
	int img = -1, loop = -1, fs = -1, mnt = -1, root = -1, rc = 0;

	/* Unlinked from birth: no name for anyone to find, nothing to clean after a crash. */
	if ((img = openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600)) < 0) {
		rc = -errno;
		snprintf(err, errlen, "disk image in the workspace directory: %s", strerror(-rc));
		goto out;
	}
	if (ftruncate(img, (off_t)bytes) < 0) {
		rc = -errno;
		snprintf(err, errlen, "disk image of %llu bytes: %s", (unsigned long long)bytes, strerror(-rc));
		goto out;
	}
	if ((rc = mkfs(img, uid, gid, err, errlen)) < 0)
		goto out;
	if ((loop = loop_attach(img, dev, sizeof dev, err, errlen)) < 0) {
		rc = loop;
		goto out;
	}
	if ((fs = fsopen("ext4", FSOPEN_CLOEXEC)) < 0 || fsconfig(fs, FSCONFIG_SET_STRING, "source", dev, 0) < 0 ||
	    fsconfig(fs, FSCONFIG_SET_FLAG, "noinit_itable", NULL, 0) < 0 ||
	    fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0 ||
	    (mnt = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)) < 0) {
		rc = -errno;
		snprintf(err, errlen, "mount the disk image (%s): %s", dev, strerror(-rc));
		goto out;
	}
	if ((root = openat(mnt, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 || fchmod(root, mode & 0777) < 0 ||
	    (unlinkat(root, "lost+found", AT_REMOVEDIR) < 0 && errno != ENOENT)) {
		rc = -errno;
		snprintf(err, errlen, "prepare the disk image: %s", strerror(-rc));
		goto out;
	}
out:
	if (root >= 0)
		close(root);
	if (fs >= 0)
		close(fs);
	if (loop >= 0)
		close(loop); /* the mount holds the device now; without one, autoclear detaches it */
	if (img >= 0)
		close(img);
	if (rc < 0 && mnt >= 0) {
		close(mnt);
		mnt = -1;
	}
	return rc < 0 ? rc : mnt;
}

int ws_quota_tmpfs(uint64_t bytes, mode_t mode)
{
	char size[32], inodes[32], md[16];
	uint64_t n = bytes / WS_QUOTA_TMPFS_INODE_BYTES;
	int fs, mnt = -1, e = 0;

	snprintf(size, sizeof size, "%llu", (unsigned long long)bytes);
	/* Inodes cost memory outside the size cap: as many as an ext4 disk of that size would have. */
	snprintf(inodes, sizeof inodes, "%llu", (unsigned long long)(n < 1024 ? 1024 : n));
	snprintf(md, sizeof md, "%o", (unsigned)(mode & 0777));
	if ((fs = fsopen("tmpfs", FSOPEN_CLOEXEC)) < 0)
		return -errno;
	if (fsconfig(fs, FSCONFIG_SET_STRING, "size", size, 0) < 0 ||
	    fsconfig(fs, FSCONFIG_SET_STRING, "nr_inodes", inodes, 0) < 0 ||
	    fsconfig(fs, FSCONFIG_SET_STRING, "mode", md, 0) < 0 || fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0 ||
	    (mnt = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)) < 0)
		e = -errno;
	close(fs);
	return e < 0 ? e : mnt;
}
