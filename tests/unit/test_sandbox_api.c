/* The engine API as the tools module uses it: run with tail cap and timeout, a persistent process with
 * stdin, process-group kill, kill_all of setsid daemons, the proxy socket inside the net namespace, and
 * our own program run inside (the file tools' worker). Needs user namespaces. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/openat2.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "sandbox/engine/sandbox.h"

static char wsdir[] = "/tmp/sbx-api-XXXXXX";

static sbx *mk(void)
{
	char err[512] = "";
	sbx_config c;
	sbx_config_init(&c);
	c.workspace = wsdir;
	c.flags = SBX_F_QUIET;
	c.timeout_ms = 10000;
	sbx *s = sbx_new(&c, err, sizeof err);
	if (!s)
		fprintf(stderr, "sbx_new: %s\n", err);
	assert_non_null(s);
	return s;
}

static int run(sbx *s, const char *script, size_t cap, unsigned tmo, sbx_result *r)
{
	const char *av[] = { "/bin/sh", "-c", script, NULL };
	sbx_cmd cmd = { .argv = av, .output_cap = cap, .timeout_ms = tmo };
	return sbx_run(s, &cmd, r);
}

static void test_run_tail_and_status(void **st)
{
	(void)st;
	sbx *s = mk();
	sbx_result r;
	assert_int_equal(run(s, "printf 0123456789abcdef; exit 3", 10, 0, &r), 0);
	assert_string_equal(r.output, "6789abcdef");
	assert_true(r.truncated);
	assert_int_equal(r.output_total, 16);
	assert_int_equal(r.exit_code, 3);
	assert_int_equal(sbx_result_status(&r), 3);
	sbx_result_free(&r);
	assert_int_equal(run(s, "sleep 5", 0, 200, &r), 0);
	assert_true(r.timed_out);
	assert_int_equal(sbx_result_status(&r), 124);
	assert_true(r.duration_us < 3000000);
	sbx_result_free(&r);
	pid_t init = sbx_init_pid(s);
	assert_non_null(strstr(sbx_limits_describe(s), "seccomp=on"));
	sbx_free(s);
	assert_int_equal(kill(init, 0), -1);
	assert_int_equal(errno, ESRCH);
}

static size_t read_until(int fd, char *buf, size_t cap, const char *needle)
{
	size_t len = 0;
	buf[0] = 0;
	for (int i = 0; i < 100 && !strstr(buf, needle); i++) {
		struct pollfd pf = { fd, POLLIN, 0 };
		if (poll(&pf, 1, 100) <= 0)
			continue;
		ssize_t n = read(fd, buf + len, cap - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = 0;
	}
	return len;
}

static void test_spawn_persistent_and_kill(void **st)
{
	(void)st;
	sbx *s = mk();
	const char *av[] = { "/bin/sh", NULL };
	sbx_cmd cmd = { .argv = av, .stdin_pipe = true };
	sbx_proc *p = NULL;
	assert_int_equal(sbx_spawn(s, &cmd, &p), 0);
	assert_true(sbx_proc_pid(p) > 1);
	const char *in = "cd /tmp; X=42\necho dir=$PWD x=$X\n";
	assert_int_equal(write(sbx_proc_stdin_fd(p), in, strlen(in)), (ssize_t)strlen(in));
	char buf[4096];
	read_until(sbx_proc_output_fd(p), buf, sizeof buf, "x=42");
	assert_non_null(strstr(buf, "dir=/tmp x=42"));
	/* a background job in the same process group goes with it */
	const char *bg = "sleep 1000 & echo started\n";
	assert_int_equal(write(sbx_proc_stdin_fd(p), bg, strlen(bg)), (ssize_t)strlen(bg));
	read_until(sbx_proc_output_fd(p), buf, sizeof buf, "started");
	assert_int_equal(sbx_nprocs(s), 2);
	int ws = 0;
	assert_int_equal(sbx_proc_wait(p, 0, &ws), 0);
	assert_int_equal(sbx_proc_kill(p, SIGKILL), 0);
	assert_int_equal(sbx_proc_wait(p, 5000, &ws), 1);
	assert_true(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL);
	sbx_proc_free(p);
	for (int i = 0; i < 50 && sbx_nprocs(s) > 0; i++)
		usleep(20000);
	assert_int_equal(sbx_nprocs(s), 0);
	sbx_free(s);
}

static void test_kill_all_daemons(void **st)
{
	(void)st;
	sbx *s = mk();
	sbx_result r;
	assert_int_equal(run(s, "setsid sh -c 'sleep 1000 &' ; (setsid sleep 1001 &) ; echo bye", 0, 0, &r), 0);
	assert_string_equal(r.output, "bye\n");
	sbx_result_free(&r);
	assert_int_equal(sbx_nprocs(s), 2);
	assert_true(sbx_kill_all(s) >= 2);
	assert_int_equal(sbx_nprocs(s), 0);
	/* still usable */
	assert_int_equal(run(s, "echo again", 0, 0, &r), 0);
	assert_string_equal(r.output, "again\n");
	sbx_result_free(&r);
	sbx_free(s);
}

static void test_netns_listen(void **st)
{
	(void)st;
	sbx *s = mk();
	int lfd = -1;
	assert_int_equal(sbx_netns_listen(s, "127.0.0.1", 3128, &lfd), 0);
	assert_true(lfd >= 0);
	int l2 = -1;
	assert_int_equal(sbx_netns_listen(s, "127.0.0.1", 3128, &l2), -EADDRINUSE);
	assert_int_equal(sbx_netns_listen(s, "not-an-address", 1, &l2), -EINVAL);
	const char *av[] = { "/bin/bash", "-c", "echo ping-from-inside >/dev/tcp/127.0.0.1/3128", NULL };
	sbx_cmd cmd = { .argv = av };
	sbx_proc *p = NULL;
	assert_int_equal(sbx_spawn(s, &cmd, &p), 0);
	struct pollfd pf = { lfd, POLLIN, 0 };
	assert_int_equal(poll(&pf, 1, 5000), 1);
	int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	assert_true(c >= 0);
	char buf[256];
	size_t n = read_until(c, buf, sizeof buf, "\n");
	assert_true(n > 0);
	assert_string_equal(buf, "ping-from-inside\n");
	int ws;
	assert_int_equal(sbx_proc_wait(p, 5000, &ws), 1);
	assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
	sbx_proc_free(p);
	close(c);
	close(lfd);
	sbx_free(s);
}

/* Run as our own program inside the sandbox (SBXP_EXEC_FD): one line per file, "path errno". */
static int self_probe(void)
{
	static const char *const paths[] = { "/workspace/from-self.txt", "/usr/postern-x", "/workspace/.git/config",
					     NULL };
	setvbuf(stdout, NULL, _IONBF, 0);
	printf("ppid=%d uid=%d\n", (int)getppid(), (int)getuid());
	for (int i = 0; paths[i]; i++) {
		int fd = open(paths[i], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		printf("%s %d\n", paths[i], fd < 0 ? errno : 0);
		if (fd >= 0)
			close(fd);
	}
	/* A rename over a protected file fails as it does for any command (it is a mount point). */
	int fd = open("/workspace/.git/cfg.new", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	printf("rename %d\n", fd >= 0 && rename("/workspace/.git/cfg.new", "/workspace/.git/config") < 0 ? errno : 0);
	return 0;
}

/* What the file tools rely on: sbx_spawn with exec_fd runs the program of a host fd (here this very one)
 * as a process of the sandbox, whatever the image holds, with the sandbox's ids and mounts. */
static void test_self_exec(void **st)
{
	(void)st;
	char gp[160];
	snprintf(gp, sizeof gp, "%s/.git", wsdir);
	mkdir(gp, 0755); /* a repository's config: a door, bound read-only inside */
	snprintf(gp, sizeof gp, "%s/.git/config", wsdir);
	FILE *gf = fopen(gp, "w");
	assert_non_null(gf);
	fclose(gf);
	sbx *s = mk();
	static const char *const argv[] = { "self", "--self-probe", NULL };
	/* A sanitizer build's leak check at exit needs ptrace, which the sandbox refuses. */
	static const char *const env[] = { "ASAN_OPTIONS=detect_leaks=0", NULL };
	int exe = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	int hi = fcntl(exe, F_DUPFD_CLOEXEC, 3);
	assert_true(hi > 2);
	close(exe);
	sbx_cmd c = { .argv = argv, .env = env, .exec_fd = hi };
	sbx_proc *p;
	char out[1024] = "", want[256];
	size_t n = 0;
	int ws = 0;
	assert_int_equal(sbx_spawn(s, &c, &p), 0);
	for (int i = 0; i < 500 && n < sizeof out - 1; i++) {
		ssize_t k = read(sbx_proc_output_fd(p), out + n, sizeof out - 1 - n);
		if (k == 0)
			break;
		if (k > 0)
			n += (size_t)k;
		else
			usleep(10000);
	}
	out[n] = 0;
	assert_int_equal(sbx_proc_wait(p, 5000, &ws), 1);
	sbx_proc_free(p);
	snprintf(want, sizeof want, "ppid=1 uid=");
	if (!strstr(out, want) || !strstr(out, "/workspace/from-self.txt 0\n") ||
	    !strstr(out, "/usr/postern-x 30\n") || !strstr(out, "/workspace/.git/config 30\n") ||
	    !strstr(out, "rename 16\n"))
		fail_msg("self-exec probe printed: %s", out);
	struct stat hs;
	char hp[128];
	snprintf(hp, sizeof hp, "%s/from-self.txt", wsdir);
	assert_int_equal(stat(hp, &hs), 0);
	assert_int_equal(hs.st_uid, getuid()); /* on disk: the workspace owner's, via the idmapped mount */
	close(hi);
	sbx_free(s);
}

static void read_text(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	size_t n = fread(buf, 1, cap - 1, f);
	fclose(f);
	buf[n] = 0;
}

/* The session's cgroups hold the init (and so every command) as the host sees it: each controller the
 * start line calls cgroup-v1 or -v2 has the init in a postern-<our pid>-N cgroup. With v1 the init joins
 * them itself (cgroup.h): a join that silently failed would leave it in ours. Inside, the cgroup
 * namespace is rooted at the session. */
static void test_cgroups_joined(void **st)
{
	(void)st;
	sbx *s = mk();
	const char *lim = sbx_limits_describe(s);
	char path[64], buf[4096], want[64];
	snprintf(path, sizeof path, "/proc/%d/cgroup", (int)sbx_init_pid(s));
	snprintf(want, sizeof want, "/postern-%d-", (int)getpid());
	static const char *const ctrl[] = { "memory", "pids" };
	int checked = 0;
	for (int c = 0; c < 2; c++) {
		char kind[32];
		snprintf(kind, sizeof kind, "%s=cgroup-v", ctrl[c]);
		const char *k = strstr(lim, kind);
		if (!k) {
			fprintf(stderr, "# %s not limited by a cgroup here: %s\n", ctrl[c], lim);
			continue;
		}
		bool v2 = k[strlen(kind)] == '2', found = false;
		read_text(path, buf, sizeof buf);
		/* lines "N:memory:/path" (v1) or "0::/path" (v2) */
		for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
			char *c1 = strchr(l, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
			if (!c2)
				continue;
			*c2 = 0;
			bool mine = v2 ? c1[1] == 0 : strstr(c1 + 1, ctrl[c]) != NULL;
			if (mine && strstr(c2 + 1, want))
				found = true;
		}
		if (!found) {
			read_text(path, buf, sizeof buf);
			fail_msg("%s: the init is not in a %s cgroup: %s", ctrl[c], want, buf);
		}
		checked++;
	}
	sbx_result r;
	assert_int_equal(run(s, "grep -c -v ':/$' /proc/self/cgroup; true", 0, 0, &r), 0);
	assert_string_equal(r.output, "0\n");
	sbx_result_free(&r);
	fprintf(stderr, "# %d controller(s) checked: %s\n", checked, lim);
	sbx_free(s);
}

static int setup(void **st)
{
	(void)st;
	return mkdtemp(wsdir) ? 0 : -1;
}

static int teardown(void **st)
{
	(void)st;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", wsdir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--self-probe"))
		return self_probe();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_run_tail_and_status), cmocka_unit_test(test_spawn_persistent_and_kill),
		cmocka_unit_test(test_kill_all_daemons),    cmocka_unit_test(test_netns_listen),
		cmocka_unit_test(test_self_exec),           cmocka_unit_test(test_cgroups_joined),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
