/* Pure parts of the sandbox engine: the seccomp allowlist table, cgroup detection parsers, and the
 * `postern sandbox run` option parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <fcntl.h>
#include <linux/filter.h>
#include <seccomp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/engine/cgroup.h"
#include "sandbox/engine/nsbudget.h"
#include "sandbox/engine/seccomp_policy.h"
#include "sandbox/engine/sbxopt.h"
#include "sandbox/engine/ws_quota.h"
#include "sandbox/sandbox_cli.h"
#include "sandbox/tools/tool_worker.h"

static bool in_list(const char *const *l, const char *name)
{
	for (; *l; l++)
		if (!strcmp(*l, name))
			return true;
	return false;
}

static void test_seccomp_tables_disjoint(void **st)
{
	(void)st;
	for (const char *const *f = secpol_forbidden(); *f; f++)
		assert_false(in_list(secpol_allowed(), *f));
	/* issue 4's list, spelled out */
	static const char *const must_block[] = { "ptrace", "mount", "unshare", "setns", "keyctl", "bpf",
		"perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
		"open_by_handle_at", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
		"socketcall", "clone3", NULL };
	for (const char *const *m = must_block; *m; m++) {
		assert_false(in_list(secpol_allowed(), *m));
		assert_true(in_list(secpol_forbidden(), *m));
	}
}

static void test_seccomp_names_resolve(void **st)
{
	(void)st;
	/* Every allowed name but a handful of very new ones must be known to libseccomp: a typo would
	 * silently deny a call the tools need. */
	int unknown = 0;
	for (const char *const *a = secpol_allowed(); *a; a++)
		if (seccomp_syscall_resolve_name(*a) == __NR_SCMP_ERROR)
			unknown++;
	assert_true(unknown <= 4);
	assert_true(in_list(secpol_allowed(), "execve"));
	assert_true(in_list(secpol_allowed(), "openat"));
	assert_false(in_list(secpol_allowed(), "openat2")); /* ENOSYS: its mode is out of the filter's reach */
}

static void test_seccomp_program_builds(void **st)
{
	char err[256] = "";
	(void)st;
	const struct sock_fprog *p = secpol_program(err, sizeof err);
	assert_non_null(p);
	assert_true(secpol_program(err, sizeof err) == p); /* built once */
	/* The build-time program is exactly what libseccomp produces now from the same table. */
	const struct sock_fprog *rt = secpol_program_runtime(err, sizeof err);
	assert_non_null(rt);
	assert_true(secpol_prebuilt());
	assert_int_equal(p->len, rt->len);
	assert_memory_equal(p->filter, rt->filter, rt->len * sizeof rt->filter[0]);
}

/* The argument checks, decided by the kernel itself: a child installs both filters and makes each call
 * on a path that does not exist, so a call the filter lets through fails with ENOENT (or EBADF), and a
 * refused one with EPERM/ENOSYS before the path is looked at. */
struct sc_case {
	const char *what;
	long nr, a0, a1, a2, a3;
	int want; /* errno the filter returns, 0 = passes */
};

#define NOPATH ((long)(uintptr_t)"/nonexistent-postern/x")

static const struct sc_case sc_cases[] = {
	{ "chmod 0755", SYS_chmod, NOPATH, 0755, 0, 0, 0 },
	{ "chmod 04755", SYS_chmod, NOPATH, 04755, 0, 0, EPERM },
	{ "chmod 02755", SYS_chmod, NOPATH, 02755, 0, 0, EPERM },
	{ "chmod 01777 (sticky)", SYS_chmod, NOPATH, 01777, 0, 0, 0 },
	{ "chmod high bits + 04755", SYS_chmod, NOPATH, (long)((1ul << 32) | 04755), 0, 0, EPERM },
	{ "fchmod 04755", SYS_fchmod, -1, 04755, 0, 0, EPERM },
	{ "fchmod 0644", SYS_fchmod, -1, 0644, 0, 0, 0 },
	{ "fchmodat 06755", SYS_fchmodat, AT_FDCWD, NOPATH, 06755, 0, EPERM },
	{ "fchmodat2 04755", 452, AT_FDCWD, NOPATH, 04755, 0, EPERM },
	{ "creat 04700", SYS_creat, NOPATH, 04700, 0, 0, EPERM },
	{ "creat 0700", SYS_creat, NOPATH, 0700, 0, 0, 0 },
	{ "open O_CREAT 02755", SYS_open, NOPATH, O_CREAT | O_WRONLY, 02755, 0, EPERM },
	{ "open O_RDONLY, stray mode", SYS_open, NOPATH, O_RDONLY, 04755, 0, 0 },
	{ "open O_TMPFILE 04755", SYS_open, NOPATH, O_TMPFILE | O_WRONLY, 04755, 0, EPERM },
	{ "openat O_CREAT 04755", SYS_openat, AT_FDCWD, NOPATH, O_CREAT | O_WRONLY, 04755, EPERM },
	{ "openat O_CREAT 0644", SYS_openat, AT_FDCWD, NOPATH, O_CREAT | O_WRONLY, 0644, 0 },
	{ "openat2", SYS_openat2, AT_FDCWD, NOPATH, 0, 24, ENOSYS },
	{ "mknod S_IFREG 04755", SYS_mknod, NOPATH, S_IFREG | 04755, 0, 0, EPERM },
	{ "mknod S_IFREG", SYS_mknod, NOPATH, S_IFREG | 0644, 0, 0, 0 },
	{ "mknod S_IFCHR", SYS_mknod, NOPATH, S_IFCHR | 0644, 0, 0, EPERM },
	{ "mknodat S_IFBLK", SYS_mknodat, AT_FDCWD, NOPATH, S_IFBLK | 0644, 0, EPERM },
	/* the second filter (no Landlock): no FIFO or socket node */
	{ "mknod S_IFIFO", SYS_mknod, NOPATH, S_IFIFO | 0644, 0, 0, EPERM },
	{ "mknodat S_IFSOCK", SYS_mknodat, AT_FDCWD, NOPATH, S_IFSOCK | 0644, 0, EPERM },
	{ "mknodat type 0", SYS_mknodat, AT_FDCWD, NOPATH, 0644, 0, 0 },
	{ "socketpair unix dgram", SYS_socketpair, AF_UNIX, SOCK_DGRAM, 0, 0, EPERM },
	{ "socketpair unix dgram|cloexec", SYS_socketpair, AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, 0, EPERM },
	{ "socketpair unix raw", SYS_socketpair, AF_UNIX, SOCK_RAW, 0, 0, EPERM },
	{ "socketpair unix stream|nonblock", SYS_socketpair, AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, 0, 0 },
	{ "socketpair unix seqpacket high bits", SYS_socketpair, AF_UNIX, (long)((1ul << 32) | SOCK_SEQPACKET), 0, 0, 0 },
	{ "socketpair unix dgram high bits", SYS_socketpair, AF_UNIX, (long)((1ul << 32) | SOCK_DGRAM), 0, 0, EPERM },
};

static void test_seccomp_argument_checks(void **st)
{
	char err[256] = "";
	(void)st;
	const struct sock_fprog *p = secpol_program(err, sizeof err);
	assert_non_null(p);
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || secpol_install(p) < 0 ||
		    secpol_install(secpol_mknod_program()) < 0)
			_exit(2);
		for (size_t i = 0; i < sizeof sc_cases / sizeof sc_cases[0]; i++) {
			const struct sc_case *c = &sc_cases[i];
			long r = syscall(c->nr, c->a0, c->a1, c->a2, c->a3, 0, 0);
			int e = r < 0 ? errno : 0;
			/* socketpair writes its fds to a2 = NULL: EFAULT when allowed */
			int got = (e == EPERM || e == ENOSYS) ? e : 0;
			if (write(fds[1], &got, sizeof got) != sizeof got)
				_exit(3);
		}
		_exit(0);
	}
	close(fds[1]);
	for (size_t i = 0; i < sizeof sc_cases / sizeof sc_cases[0]; i++) {
		int got = -1;
		assert_int_equal(read(fds[0], &got, sizeof got), sizeof got);
		if (got != sc_cases[i].want)
			fail_msg("%s: got errno %d, want %d", sc_cases[i].what, got, sc_cases[i].want);
	}
	close(fds[0]);
	int status = 0;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static const char *mountinfo =
	"22 28 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n"
	"30 22 0:25 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n"
	"31 30 0:26 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n"
	"33 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct\n"
	"34 30 0:29 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory\n"
	"35 30 0:30 /docker/abc /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids\n"
	"36 30 0:31 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n";

static const char *proc_cgroup = "9:name=systemd:/\n"
				 "8:pids:/docker/abc/x\n"
				 "4:memory:/process_api/e20\n"
				 "1:cpu,cpuacct:/\n"
				 "0::/user.slice\n";

static void test_cgroup_parse(void **st)
{
	struct cgr_mounts m;
	(void)st;
	assert_int_equal(cgr_parse_mountinfo(mountinfo, &m), 0);
	assert_int_equal(cgr_parse_proc_cgroup(proc_cgroup, &m), 0);
	assert_string_equal(m.v2_mount, "/sys/fs/cgroup/unified");
	assert_string_equal(m.v2_path, "/user.slice");
	assert_string_equal(m.v1_mount[CGR_MEMORY], "/sys/fs/cgroup/memory");
	assert_string_equal(m.v1_path[CGR_MEMORY], "/process_api/e20");
	assert_string_equal(m.v1_mount[CGR_CPU], "/sys/fs/cgroup/cpu,cpuacct");
	assert_string_equal(m.v1_path[CGR_CPU], "/");
	/* a mount whose root is not / (container): the path is relative to it */
	assert_string_equal(m.v1_mount[CGR_PIDS], "/sys/fs/cgroup/pids");
	assert_string_equal(m.v1_path[CGR_PIDS], "/x");
}

static void test_cgroup_parse_v2_only(void **st)
{
	struct cgr_mounts m;
	(void)st;
	cgr_parse_mountinfo("25 1 0:22 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n", &m);
	cgr_parse_proc_cgroup("0::/\n", &m);
	assert_string_equal(m.v2_mount, "/sys/fs/cgroup");
	assert_string_equal(m.v2_path, "/");
	for (int c = 0; c < CGR_NCTRL; c++)
		assert_string_equal(m.v1_mount[c], "");
	/* garbage does not crash or invent mounts */
	cgr_parse_mountinfo("garbage\n - \n1 2 3\n", &m);
	assert_string_equal(m.v2_mount, "");
}

static void test_cgroup_keyed_and_controllers(void **st)
{
	(void)st;
	assert_int_equal(cgr_parse_controllers("cpuset cpu io memory hugetlb pids rdma\n"),
			 (1u << CGR_MEMORY) | (1u << CGR_PIDS) | (1u << CGR_CPU));
	assert_int_equal(cgr_parse_controllers("hugetlb\n"), 0);
	assert_int_equal(cgr_parse_controllers("cpuset cpuacct\n"), 0);
	assert_int_equal(cgr_parse_keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n", "oom_kill"), 3);
	assert_int_equal(cgr_parse_keyed("max 17\n", "max"), 17);
	assert_int_equal(cgr_parse_keyed("maximum 5\n", "max"), 0);
}

static int parse(struct sandbox_run_opts *o, char *err, const char *const *args)
{
	char *argv[64];
	int argc = 0;
	for (; args[argc]; argc++)
		argv[argc] = (char *)args[argc];
	argv[argc] = NULL;
	return sandbox_cli_parse_run(argc, argv, o, err, 256);
}

static void test_cli_parse(void **st)
{
	struct sandbox_run_opts o;
	char err[256];
	(void)st;
	const char *a1[] = { "run", "--workspace", "/w", "--memory", "512M", "--pids", "64", "--timeout", "1500ms",
			     "--allow-domain", "example.com", "--allow-domain", "*.pypi.org", "--cpus", "1.5",
			     "--env", "A=b", "--json", "--", "ls", "-l", NULL };
	assert_int_equal(parse(&o, err, a1), 0);
	assert_string_equal(o.workspace, "/w");
	assert_int_equal(o.memory_bytes, 512ull << 20);
	assert_int_equal(o.pids, 64);
	assert_int_equal(o.timeout_ms, 1500);
	assert_int_equal(o.n_allow, 2);
	assert_string_equal(o.allow_domains[1], "*.pypi.org");
	assert_null(o.allow_domains[2]);
	assert_int_equal(o.cpu_millis, 1500);
	assert_string_equal(o.env[0], "A=b");
	assert_true(o.json);
	assert_string_equal(o.argv[0], "ls");
	assert_string_equal(o.argv[1], "-l");

	const char *a2[] = { "run", "echo", "--memory", NULL }; /* options end at the command */
	assert_int_equal(parse(&o, err, a2), 0);
	assert_string_equal(o.argv[0], "echo");
	assert_string_equal(o.argv[1], "--memory");

	const char *bad[][6] = {
		{ "run", "--memory", "lots", "--", "x", NULL }, { "run", "--pids", "0", "x", NULL },
		{ "run", "--timeout", "soon", "x", NULL },	 { "run", "--bogus", "x", NULL },
		{ "run", "--env", "NOEQUALS", "x", NULL },	 { "run", "--", NULL },
		{ "run", "--workspace", NULL },			 { "run", "--cpus", "-1", "x", NULL },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = 0;
		assert_int_equal(parse(&o, err, bad[i]), -EINVAL);
		assert_true(err[0] != 0);
	}
}

/* Which disk cap a workspace gets (ws_quota_choose): every branch, with the reason a person reads. */
static void test_ws_quota_choose(void **st)
{
	enum { EXT4 = 0xEF53, XFS = 0x58465342, BTRFS = 0x9123683E, TMPFS = 0x01021994 };
	static const struct {
		struct ws_quota_host h;
		bool ws, scratch;
		enum ws_quota_kind want;
		const char *why; /* a part of the reason, or NULL for none */
	} c[] = {
		{ { .fs_type = EXT4, .root = true }, false, false, WSQ_TMPFS_SHARED, NULL },
		{ { .fs_type = EXT4, .root = true }, true, true, WSQ_EXT4_IMAGE, NULL },
		{ { .fs_type = EXT4, .root = false }, true, true, WSQ_TMPFS, NULL },
		{ { .fs_type = BTRFS, .root = true, .subvol_root = true, .btrfs_quota = true }, true, false,
		  WSQ_BTRFS_QGROUP, NULL },
		{ { .fs_type = BTRFS, .root = true, .subvol_root = true }, true, false, WSQ_FILE_SIZE, "quota enable" },
		{ { .fs_type = BTRFS, .root = true, .btrfs_quota = true }, true, false, WSQ_FILE_SIZE,
		  "not a btrfs subvolume" },
		{ { .fs_type = BTRFS, .root = true, .subvol_root = true, .prjquota = true }, true, false, WSQ_FILE_SIZE,
		  "quota enable" },
		{ { .fs_type = BTRFS, .subvol_root = true, .btrfs_quota = true }, true, false, WSQ_FILE_SIZE, "needs root" },
		{ { .fs_type = EXT4, .root = true, .prjquota = true }, true, false, WSQ_PROJECT, NULL },
		{ { .fs_type = XFS, .root = true, .prjquota = true }, true, false, WSQ_PROJECT, NULL },
		{ { .fs_type = EXT4, .root = true }, true, false, WSQ_FILE_SIZE, "ext4 is mounted without project quotas" },
		{ { .fs_type = XFS, .root = true }, true, false, WSQ_FILE_SIZE, "xfs is mounted without project quotas" },
		{ { .fs_type = EXT4, .prjquota = true }, true, false, WSQ_FILE_SIZE, "needs root" },
		{ { .fs_type = TMPFS, .root = true }, true, false, WSQ_FILE_SIZE, "tmpfs offers neither" },
		{ { .fs_type = 0x1234, .root = true }, true, false, WSQ_FILE_SIZE, "0x1234 offers neither" },
	};
	char why[200];
	(void)st;
	for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
		strcpy(why, "stale");
		enum ws_quota_kind k = ws_quota_choose(&c[i].h, c[i].ws, c[i].scratch, why, sizeof why);
		if (k != c[i].want)
			fail_msg("case %zu: %s, not %s", i, ws_quota_kind_name(k), ws_quota_kind_name(c[i].want));
		if (c[i].why ? !strstr(why, c[i].why) : why[0] != 0)
			fail_msg("case %zu: reason \"%s\"", i, why);
	}
	assert_string_equal(ws_quota_kind_name(WSQ_FILE_SIZE), "file-size-only");
	assert_string_equal(ws_quota_kind_name(WSQ_BTRFS_QGROUP), "btrfs-qgroup");
	assert_string_equal(ws_quota_kind_name(WSQ_PROJECT), "project-quota");
	assert_string_equal(ws_quota_kind_name(WSQ_TMPFS), "tmpfs");
}

/* A tmpfs disk is memory: the cap, within what the memory limit leaves after /tmp, at least the minimum. */
static void test_ws_quota_tmpfs_bytes(void **st)
{
	(void)st;
	assert_int_equal(ws_quota_tmpfs_bytes(64ull << 20, 2ull << 30, 1ull << 30), 64ull << 20);
	assert_int_equal(ws_quota_tmpfs_bytes(10ull << 30, 2ull << 30, 1ull << 30), 1ull << 30);
	assert_int_equal(ws_quota_tmpfs_bytes(10ull << 30, 256ull << 20, 128ull << 20), 128ull << 20);
	assert_int_equal(ws_quota_tmpfs_bytes(10ull << 30, 16ull << 20, 16ull << 20), WS_QUOTA_MIN_BYTES);
}

/* --disk none is its own value; sizes keep their range. */
static void test_disk_option(void **st)
{
	uint64_t v = 0;
	char err[160];
	(void)st;
	assert_int_equal(sbxopt_disk("none", &v, err, sizeof err), 0);
	assert_true(v == WS_QUOTA_NONE);
	assert_int_equal(sbxopt_disk("64M", &v, err, sizeof err), 0);
	assert_int_equal(v, 64ull << 20);
	assert_int_equal(sbxopt_disk("1M", &v, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "from 16M to 16T, like 2G, or none"));
	assert_int_equal(sbxopt_disk("None", &v, err, sizeof err), -EINVAL);
}

/* The unprivileged caller's inotify budget: sizes from the limits, and tokens that never exceed it. */
static void test_nsbudget(void **st)
{
	struct nsb_size z;
	(void)st;
	nsb_sizes(128, 192540, 32, &z); /* the host defaults: a quarter kept, 96 shared 32 ways */
	assert_int_equal(z.reserve, 32);
	assert_int_equal(z.tokens, 96);
	assert_int_equal(z.share, 3);
	assert_int_equal(z.watches, (192540 - 48135) / 96 * 3);
	nsb_sizes(128, 1u << 20, 2, &z); /* few sessions: each at most 32 and 65536 */
	assert_int_equal(z.share, 32);
	assert_int_equal(z.watches, 65536);
	nsb_sizes(8, 8192, 32, &z); /* nothing left after the reserve */
	assert_int_equal(z.tokens, 0);

	char dir[] = "/tmp/test-nsbudget-XXXXXX", err[400];
	assert_non_null(mkdtemp(dir));
	static nsb_share sh[200];
	unsigned n = 0;
	int rc = 0;
	while (n < 200 && (rc = nsb_take(dir, 32, &sh[n], err, sizeof err)) == 0)
		n++;
	assert_int_equal(rc, -EDQUOT);
	assert_non_null(strstr(err, "inotify budget is spent"));
	assert_true(n >= 1);
	assert_true(n * sh[0].z.share <= sh[0].z.tokens);
	assert_true(sh[0].z.tokens - n * sh[0].z.share < sh[0].z.share); /* all that fits was handed out */
	nsb_release(&sh[0]); /* a session ends: the next one fits */
	assert_int_equal(nsb_take(dir, 32, &sh[0], err, sizeof err), 0);
	for (unsigned i = 0; i < n; i++)
		nsb_release(&sh[i]);
	char cmd[80];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

/* A budget directory another user made first, a symlink, a FIFO, a file, a mode others can write: each is
 * refused at once, nothing in it or behind it is created or followed. */
static void test_nsbudget_hostile_dir(void **st)
{
	(void)st;
	char base[] = "/tmp/test-nsbudget-XXXXXX", p[96], q[128], err[400];
	struct stat sb;
	nsb_share sh;
	assert_non_null(mkdtemp(base));
	/* /tmp itself: root's and world-writable (whoever runs this). */
	assert_int_equal(nsb_take("/tmp", 32, &sh, err, sizeof err), -EPERM);
	assert_non_null(strstr(err, "another user may have made it first"));
	assert_int_not_equal(stat("/tmp/claim.lock", &sb), 0);
	snprintf(p, sizeof p, "%s/open", base);
	assert_int_equal(mkdir(p, 0700), 0);
	assert_int_equal(chmod(p, 0777), 0);
	assert_int_equal(nsb_take(p, 32, &sh, err, sizeof err), -EPERM);
	snprintf(q, sizeof q, "%s/claim.lock", p);
	assert_int_not_equal(stat(q, &sb), 0);
	if (geteuid() == 0) { /* another user's: only root can make one to try */
		snprintf(p, sizeof p, "%s/theirs", base);
		assert_int_equal(mkdir(p, 0700), 0);
		assert_int_equal(chown(p, 65534, 65534), 0);
		assert_int_equal(nsb_take(p, 32, &sh, err, sizeof err), -EPERM);
		assert_non_null(strstr(err, "owned by uid 65534"));
		snprintf(q, sizeof q, "%s/claim.lock", p);
		assert_int_not_equal(stat(q, &sb), 0);
	}
	snprintf(p, sizeof p, "%s/target", base);
	assert_int_equal(mkdir(p, 0700), 0);
	snprintf(q, sizeof q, "%s/link", base);
	assert_int_equal(symlink(p, q), 0);
	int rc = nsb_take(q, 32, &sh, err, sizeof err);
	assert_true(rc == -ENOTDIR || rc == -ELOOP); /* O_NOFOLLOW with O_DIRECTORY: Linux says ENOTDIR */
	snprintf(q, sizeof q, "%s/claim.lock", p);
	assert_int_not_equal(stat(q, &sb), 0); /* not followed */
	snprintf(q, sizeof q, "%s/fifo", base);
	assert_int_equal(mkfifo(q, 0600), 0);
	assert_int_equal(nsb_take(q, 32, &sh, err, sizeof err), -ENOTDIR); /* and no open that waits */
	snprintf(q, sizeof q, "%s/file", base);
	int fd = open(q, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(nsb_take(q, 32, &sh, err, sizeof err), -ENOTDIR);
	snprintf(p, sizeof p, "rm -rf %s", base);
	assert_int_equal(system(p), 0);
}

/* The embedded worker's image: sealed and execute-only (so a worker is non-dumpable from its exec on), and it
 * still runs from the fd. */
static void test_worker_image(void **st)
{
	(void)st;
	char err[200];
	struct stat sb;
	int fd = tworker_image_fd(err, sizeof err);
	assert_true(fd > 2);
	assert_int_equal(fstat(fd, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0111);
	assert_int_equal(fcntl(fd, F_GET_SEALS) & (F_SEAL_WRITE | F_SEAL_SEAL), F_SEAL_WRITE | F_SEAL_SEAL);
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0), dup2(null, 1);
		char *argv[] = { "postern-tool-worker", NULL }, *envp[] = { NULL };
		syscall(SYS_execveat, fd, "", argv, envp, AT_EMPTY_PATH);
		_exit(127);
	}
	int ws = 0;
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	assert_true(WIFEXITED(ws));
	assert_int_equal(WEXITSTATUS(ws), 0); /* end of input at once: a clean exit, so it did run */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seccomp_tables_disjoint), cmocka_unit_test(test_seccomp_names_resolve),
		cmocka_unit_test(test_seccomp_program_builds),	cmocka_unit_test(test_seccomp_argument_checks),	cmocka_unit_test(test_cgroup_parse),
		cmocka_unit_test(test_cgroup_parse_v2_only),	cmocka_unit_test(test_cgroup_keyed_and_controllers),
		cmocka_unit_test(test_cli_parse),		cmocka_unit_test(test_ws_quota_choose),
		cmocka_unit_test(test_ws_quota_tmpfs_bytes),	cmocka_unit_test(test_disk_option),
		cmocka_unit_test(test_nsbudget),
		cmocka_unit_test(test_nsbudget_hostile_dir),
		cmocka_unit_test(test_worker_image),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
