/* Workspace doors: the sweep below the top (new repositories moved aside whole, changed doors of older ones,
 * no symlink followed, the depth cap) and the door-keeper's end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "sandbox/engine/ws_doors.h"

static char root[64];

static void put(const char *rel, const char *text)
{
	char p[512];
	snprintf(p, sizeof p, "%s/%s", root, rel);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void md(const char *rel)
{
	char p[512];
	snprintf(p, sizeof p, "%s/%s", root, rel);
	assert_int_equal(mkdir(p, 0755), 0);
}

static int there(const char *rel)
{
	char p[512];
	struct stat st;
	snprintf(p, sizeof p, "%s/%s", root, rel);
	return lstat(p, &st) == 0;
}

/* t0 after what the host had, then the session's changes. */
static struct timespec start_session(void)
{
	struct timespec t0, d = { 0, 30 * 1000 * 1000 };
	nanosleep(&d, NULL);
	clock_gettime(CLOCK_REALTIME_COARSE, &t0);
	nanosleep(&d, NULL);
	return t0;
}

static void test_sweep(void **st)
{
	(void)st;
	snprintf(root, sizeof root, "/tmp/postern-doors-XXXXXX");
	assert_non_null(mkdtemp(root));
	/* The host's: an older nested repository (two), an outside directory reached by a link. */
	md("old"), md("old/.git"), md("old/.git/hooks"), put("old/.git/config", "[core]\n"), put("old/.git/HEAD", "ref: refs/heads/main\n");
	md("keep"), md("keep/.git"), put("keep/.git/config", "[core]\n");
	char p[512], q[512], out[] = "/tmp/postern-doors-out-XXXXXX";
	assert_non_null(mkdtemp(out));
	snprintf(q, sizeof q, "%s/lnk", root);
	assert_int_equal(symlink(out, q), 0);
	struct timespec t0 = start_session();
	/* The session's. */
	put("old/.git/config", "[core]\n\tfsmonitor = evil\n");
	put("old/.git/hooks/pre-commit", "evil\n");
	put("old/.git/index", "x"); /* its own git work: not a door */
	md("new"), md("new/.git"), put("new/.git/config", "x");
	md("deep"), md("deep/er"), put("deep/er/.git", "gitdir: /elsewhere\n");
	md("bare"), md("bare/objects"), md("bare/refs"), put("bare/HEAD", "ref: refs/heads/main\n");
	md("lnk/.git"); /* through the link: outside the walk */
	int ws = open(root, O_PATH | O_DIRECTORY);
	assert_true(ws >= 0);
	int moved = ws_doors_sweep(ws, ws_doors_default, &t0, root);
	assert_int_equal(moved, 5);
	assert_true(there("old/.git/config.postern-quarantine-1") && !there("old/.git/config"));
	assert_true(there("old/.git/hooks.postern-quarantine-1") && !there("old/.git/hooks"));
	assert_true(there("old/.git/index") && there("old/.git/HEAD"));
	assert_true(there("keep/.git/config"));
	assert_true(there(".postern-quarantine/new%.git-1/config") && !there("new/.git"));
	assert_true(there(".postern-quarantine/deep%er%.git-1"));
	assert_true(there("bare/HEAD.postern-quarantine-1") && there("bare/objects"));
	snprintf(p, sizeof p, "%s/.git", out);
	struct stat ost;
	assert_int_equal(lstat(p, &ost), 0); /* not followed */
	/* A second sweep finds nothing more (what it moved is not looked into again). */
	assert_int_equal(ws_doors_sweep(ws, ws_doors_default, &t0, root), 0);
	close(ws);
	snprintf(p, sizeof p, "rm -rf %s %s", root, out);
	assert_int_equal(system(p), 0);
}

static void test_depth_cap(void **st)
{
	(void)st;
	snprintf(root, sizeof root, "/tmp/postern-doors-XXXXXX");
	assert_non_null(mkdtemp(root));
	struct timespec t0 = start_session();
	char rel[512] = "";
	for (int i = 0; i < WS_DOORS_SWEEP_MAX_DEPTH + 2; i++) {
		strcat(rel, i ? "/d" : "d");
		md(rel);
		if (i == 2) {
			char g[600];
			snprintf(g, sizeof g, "%s/.git", rel);
			md(g);
		}
	}
	strcat(rel, "/.git");
	md(rel);
	int ws = open(root, O_PATH | O_DIRECTORY);
	/* The one in reach is moved; the directory beyond the cap, unchecked, goes to the quarantine whole with
	 * what it holds (and the sweep says it stopped). */
	assert_int_equal(ws_doors_sweep(ws, ws_doors_default, &t0, root), 2);
	assert_true(there(".postern-quarantine/d%d%d%.git-1"));
	assert_false(there(rel));
	close(ws);
	char p[600];
	snprintf(p, sizeof p, "rm -rf %s", root);
	assert_int_equal(system(p), 0);
}

static void test_keeper(void **st)
{
	(void)st;
	snprintf(root, sizeof root, "/tmp/postern-doors-XXXXXX");
	assert_non_null(mkdtemp(root));
	int ws = open(root, O_PATH | O_DIRECTORY);
	struct ws_doors_end e = { .wsfd = ws, .doors = ws_doors_default, .ws_name = root };
	e.before = ws_doors_snapshot(ws, ws_doors_default);
	e.t0 = start_session();
	pid_t init = fork(); /* stands in for the session's init */
	if (init == 0) {
		pause();
		_exit(0);
	}
	e.init_pidfd = pidfd_open(init, 0);
	assert_true(e.init_pidfd >= 0);
	ws_doors_keeper k;
	char err[256];
	assert_int_equal(ws_doors_keeper_start(&k, &e, err, sizeof err), 0);
	md(".git"), put(".git/config", "x"), put(".bashrc", "x"), md("sub"), md("sub/.git");
	kill(init, SIGKILL);
	waitpid(init, NULL, 0);
	assert_int_equal(ws_doors_keeper_finish(&k, root), 0);
	assert_int_equal(k.pid, 0);
	assert_true(there(".git.postern-quarantine-1/config") && there(".bashrc.postern-quarantine-1"));
	assert_true(there(".postern-quarantine/sub%.git-1"));
	assert_int_equal(ws_doors_keeper_finish(&k, root), 0); /* twice: nothing */
	close(e.init_pidfd);
	close(ws);
	char p[600];
	snprintf(p, sizeof p, "rm -rf %s", root);
	assert_int_equal(system(p), 0);
}

/* A keeper that died before the end: finish says so, for the caller to do the end itself. */
static void test_keeper_killed(void **st)
{
	(void)st;
	snprintf(root, sizeof root, "/tmp/postern-doors-XXXXXX");
	assert_non_null(mkdtemp(root));
	int ws = open(root, O_PATH | O_DIRECTORY);
	struct ws_doors_end e = { .wsfd = ws, .doors = ws_doors_default, .ws_name = root };
	pid_t init = fork();
	if (init == 0) {
		pause();
		_exit(0);
	}
	e.init_pidfd = pidfd_open(init, 0);
	ws_doors_keeper k;
	char err[256];
	assert_int_equal(ws_doors_keeper_start(&k, &e, err, sizeof err), 0);
	kill(k.pid, SIGKILL);
	kill(init, SIGKILL);
	waitpid(init, NULL, 0);
	assert_int_equal(ws_doors_keeper_finish(&k, root), -ECHILD);
	close(e.init_pidfd);
	close(ws);
	rmdir(root);
}

/* Names the session took beforehand (every .postern-quarantine-<n> it could guess), a name too long for the
 * suffix, and a symlink on the way to a door: each door is still moved aside. Fails on the code before. */
static void test_end_hostile_names(void **st)
{
	(void)st;
	char p[300];
	snprintf(root, sizeof root, "/tmp/postern-doors-XXXXXX");
	assert_non_null(mkdtemp(root));
	int ws = open(root, O_PATH | O_DIRECTORY);
	uint64_t before = ws_doors_snapshot(ws, ws_doors_default);
	struct timespec t0 = start_session();
	md(".git");
	put(".git/config", "[core]\n\tfsmonitor = evil\n");
	put(".profile", "evil\n");
	for (int i = 1; i < 100; i++) {
		snprintf(p, sizeof p, ".git.postern-quarantine-%d", i);
		md(p);
		snprintf(p, sizeof p, ".profile.postern-quarantine-%d", i);
		put(p, "x");
	}
	put(".bash_aliases", "evil\n");
	md("cfg");
	md("cfg/git");
	put("cfg/git/config", "[core]\n\tfsmonitor = evil\n");
	snprintf(p, sizeof p, "%s/.config", root);
	assert_int_equal(symlink("cfg", p), 0);
	/* A long-named repository below the top: its quarantine name must be cut, not refused. */
	char lng[256];
	memset(lng, 'L', 250);
	lng[250] = 0;
	md(lng);
	snprintf(p, sizeof p, "%s/HEAD", lng);
	put(p, "ref: refs/heads/main\n");
	snprintf(p, sizeof p, "%s/objects", lng);
	md(p);
	snprintf(p, sizeof p, "%s/refs", lng);
	md(p);
	int moved = ws_doors_end(ws, ws_doors_default, before, &t0, root);
	assert_false(there(".git"));
	assert_false(there(".profile"));
	assert_false(there(".bash_aliases"));
	assert_false(there(".config"));
	assert_true(there("cfg/git/config")); /* the link is moved, not what it pointed to */
	snprintf(p, sizeof p, "%s/HEAD", lng);
	assert_false(there(p));
	assert_int_equal(moved, 5);
	close(ws);
	snprintf(p, sizeof p, "rm -rf %s", root);
	assert_int_equal(system(p), 0);
}

/* Beyond an older link that stays inside the workspace: the door it reaches is moved when it changed. */
static void test_end_old_link(void **st)
{
	(void)st;
	char p[300];
	snprintf(root, sizeof root, "/tmp/postern-doors-XXXXXX");
	assert_non_null(mkdtemp(root));
	md("dots");
	snprintf(p, sizeof p, "%s/.config", root);
	assert_int_equal(symlink("dots", p), 0);
	int ws = open(root, O_PATH | O_DIRECTORY);
	uint64_t before = ws_doors_snapshot(ws, ws_doors_default);
	struct timespec t0 = start_session();
	md("dots/git");
	put("dots/git/config", "[core]\n\tfsmonitor = evil\n");
	assert_int_equal(ws_doors_end(ws, ws_doors_default, before, &t0, root), 1);
	assert_true(there(".config"));
	assert_false(there("dots/git"));
	assert_true(there("dots/git.postern-quarantine-1/config"));
	close(ws);
	snprintf(p, sizeof p, "rm -rf %s", root);
	assert_int_equal(system(p), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sweep),
		cmocka_unit_test(test_depth_cap),
		cmocka_unit_test(test_keeper),
		cmocka_unit_test(test_keeper_killed),
		cmocka_unit_test(test_end_hostile_names),
		cmocka_unit_test(test_end_old_link),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
