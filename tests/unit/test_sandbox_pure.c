/* Pure parts of the sandbox engine: the seccomp allowlist table, cgroup detection parsers, and the
 * `postern sandbox run` option parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <linux/filter.h>
#include <seccomp.h>

#include "sandbox/cgroup.h"
#include "sandbox/sandbox_cli.h"
#include "sandbox/seccomp_policy.h"

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
	for (const char *const *f = sbxsc_forbidden(); *f; f++)
		assert_false(in_list(sbxsc_allowed(), *f));
	/* issue 4's list, spelled out */
	static const char *const must_block[] = { "ptrace", "mount", "unshare", "setns", "keyctl", "bpf",
		"perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
		"open_by_handle_at", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
		"socketcall", "clone3", NULL };
	for (const char *const *m = must_block; *m; m++) {
		assert_false(in_list(sbxsc_allowed(), *m));
		assert_true(in_list(sbxsc_forbidden(), *m));
	}
}

static void test_seccomp_names_resolve(void **st)
{
	(void)st;
	/* Every allowed name but a handful of very new ones must be known to libseccomp: a typo would
	 * silently deny a call the tools need. */
	int unknown = 0;
	for (const char *const *a = sbxsc_allowed(); *a; a++)
		if (seccomp_syscall_resolve_name(*a) == __NR_SCMP_ERROR)
			unknown++;
	assert_true(unknown <= 4);
	assert_true(in_list(sbxsc_allowed(), "execve"));
	assert_true(in_list(sbxsc_allowed(), "openat2"));
}

static void test_seccomp_program_builds(void **st)
{
	char err[256] = "";
	(void)st;
	const struct sock_fprog *p = sbxsc_program(err, sizeof err);
	assert_non_null(p);
	assert_true(sbxsc_program(err, sizeof err) == p); /* built once */
	/* The build-time program is exactly what libseccomp produces now from the same table. */
	const struct sock_fprog *rt = sbxsc_program_runtime(err, sizeof err);
	assert_non_null(rt);
	assert_true(sbxsc_prebuilt());
	assert_int_equal(p->len, rt->len);
	assert_memory_equal(p->filter, rt->filter, rt->len * sizeof rt->filter[0]);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seccomp_tables_disjoint), cmocka_unit_test(test_seccomp_names_resolve),
		cmocka_unit_test(test_seccomp_program_builds),	cmocka_unit_test(test_cgroup_parse),
		cmocka_unit_test(test_cgroup_parse_v2_only),	cmocka_unit_test(test_cgroup_keyed_and_controllers),
		cmocka_unit_test(test_cli_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
