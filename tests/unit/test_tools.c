/* The tools against a temporary directory as the "sandbox root": a local bash, and the real tool worker
 * in a forked child chrooted there (in a user namespace when not root). The engine's isolation is tested
 * end to end; here the tools' own behaviour, the worker protocol, and paths seen from a root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "sandbox/tools/tool_worker.h"
#include "sandbox/tools/tools.h"

static char top[256], root[300], outside[300];

struct lproc {
	pid_t pid;
	int in, out;
};

/* Forks a child with stdin and stdout (and stderr) on pipes; child_fn never returns. */
static int lproc_start(void (*child_fn)(void), void **proc, int *in_fd, int *out_fd)
{
	int pin[2], pout[2];
	struct lproc *p = calloc(1, sizeof *p);
	if (!p || pipe2(pin, O_CLOEXEC) < 0 || pipe2(pout, O_CLOEXEC) < 0)
		return -errno;
	p->pid = fork();
	if (p->pid == 0) {
		setsid();
		dup2(pin[0], 0);
		dup2(pout[1], 1);
		dup2(pout[1], 2);
		child_fn();
	}
	close(pin[0]);
	close(pout[1]);
	fcntl(pout[0], F_SETFL, O_NONBLOCK);
	p->in = *in_fd = pin[1];
	p->out = *out_fd = pout[0];
	*proc = p;
	return 0;
}

static void bash_child(void)
{
	char *env[] = { "PS1=", "TERM=dumb", "PATH=/usr/bin:/bin", NULL };
	if (chdir(root) < 0)
		_exit(126);
	execle("/bin/bash", "bash", "--noprofile", "--norc", (char *)NULL, env);
	_exit(127);
}

static int l_spawn(void *ud, void **proc, int *in_fd, int *out_fd)
{
	(void)ud;
	return lproc_start(bash_child, proc, in_fd, out_fd);
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, text, strlen(text)) < 0)
		_exit(124);
	close(fd);
}

/* The worker as the sandbox runs it, with this root as "/" (no procfs in it). */
static void worker_child(void)
{
	uid_t uid = geteuid();
	gid_t gid = getegid();
	char map[64];
	if (uid != 0) {
		if (unshare(CLONE_NEWUSER) < 0)
			_exit(123);
		write_file("/proc/self/setgroups", "deny");
		snprintf(map, sizeof map, "0 %u 1", (unsigned)uid);
		write_file("/proc/self/uid_map", map);
		snprintf(map, sizeof map, "0 %u 1", (unsigned)gid);
		write_file("/proc/self/gid_map", map);
	}
	if (chroot(root) < 0 || chdir("/") < 0)
		_exit(125);
	_exit(tworker_serve(0, 1) < 0 ? 1 : 0);
}

static int l_worker(void *ud, void **proc, int *in_fd, int *out_fd)
{
	(void)ud;
	return lproc_start(worker_child, proc, in_fd, out_fd);
}

static void l_kill(void *ud, void *proc)
{
	(void)ud;
	if (((struct lproc *)proc)->pid > 0)
		kill(-((struct lproc *)proc)->pid, SIGKILL);
}

static int l_wait(void *ud, void *proc, int timeout_ms, int *ws)
{
	struct lproc *p = proc;
	(void)ud;
	for (int i = 0; i <= timeout_ms / 10; i++) {
		pid_t r = waitpid(p->pid, ws, WNOHANG);
		if (r == p->pid) {
			p->pid = 0;
			return 1;
		}
		usleep(10000);
	}
	return 0;
}

static void l_free(void *ud, void *proc)
{
	struct lproc *p = proc;
	int ws;
	(void)ud;
	if (p->pid) {
		kill(-p->pid, SIGKILL);
		waitpid(p->pid, &ws, 0);
	}
	close(p->in);
	close(p->out);
	free(p);
}

static tool_session *mk(void)
{
	struct tool_backend b = { .cwd = "/", .shell_spawn = l_spawn, .shell_kill = l_kill, .shell_wait = l_wait,
				  .shell_free = l_free, .worker_spawn = l_worker, .file_timeout_ms = 5000 };
	return tool_session_new(&b);
}

/* Calls a tool with args given as JSON text; returns the text and sets *err. */
static char *call(tool_session *t, const char *tool, const char *json, bool *err)
{
	json_error_t e;
	json_t *a = json_loadb(json, strlen(json), JSON_ALLOW_NUL, &e), *r = NULL;
	char *s;
	assert_non_null(a);
	assert_int_equal(tool_call(t, tool, a, &r), 0);
	json_decref(a);
	assert_non_null(r);
	*err = json_is_true(json_object_get(r, "isError"));
	s = strdup(json_string_value(json_object_get(json_array_get(json_object_get(r, "content"), 0), "text")));
	json_decref(r);
	return s;
}

static void expect(tool_session *t, const char *tool, const char *json, bool want_err, const char *needle)
{
	bool err;
	char *s = call(t, tool, json, &err);
	if (err != want_err || (needle && !strstr(s, needle)))
		fail_msg("%s %s: isError=%d, want %d with '%s'; got: %.600s", tool, json, err, want_err, needle ? needle : "",
			 s);
	free(s);
}

static void put(const char *rel, const char *content)
{
	char p[600];
	FILE *f;
	snprintf(p, sizeof p, "%s/%s", root, rel);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
}

static char *get(const char *rel)
{
	char p[600], *b = calloc(1, 1 << 20);
	FILE *f;
	snprintf(p, sizeof p, "%s/%s", root, rel);
	f = fopen(p, "r");
	if (!f) {
		free(b);
		return NULL;
	}
	size_t n = fread(b, 1, (1 << 20) - 1, f);
	b[n] = 0;
	fclose(f);
	return b;
}

static int setup(void **st)
{
	(void)st;
	snprintf(top, sizeof top, "/tmp/postern-tools-XXXXXX");
	assert_non_null(mkdtemp(top));
	snprintf(root, sizeof root, "%s/root", top);
	snprintf(outside, sizeof outside, "%s/secret", top);
	assert_int_equal(mkdir(root, 0755), 0);
	FILE *f = fopen(outside, "w");
	fputs("TOP-SECRET\n", f);
	fclose(f);
	return 0;
}

static int teardown(void **st)
{
	char cmd[400];
	(void)st;
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", top);
	return system(cmd) == 0 ? 0 : -1;
}

static void test_bash_state_and_exit(void **st)
{
	tool_session *t = mk();
	(void)st;
	expect(t, "bash", "{\"command\":\"mkdir -p d && cd d && X=42 && echo ok\"}", false, "ok");
	expect(t, "bash", "{\"command\":\"pwd; echo x=$X\"}", false, "/d\nx=42");
	expect(t, "bash", "{\"command\":\"echo out; echo err >&2; false\"}", true, "out\nerr\n[exit code 1]");
	expect(t, "bash", "{\"command\":\"printf '\\\\033[31mred\\\\033[0m'\"}", false, "red");
	{
		bool err;
		char *s = call(t, "bash", "{\"command\":\"printf '\\\\033[31mred\\\\033[0m'\"}", &err);
		assert_string_equal(s, "red");
		free(s);
	}
	expect(t, "bash", "{\"command\":\"cat; echo after\"}", false, "after"); /* stdin is /dev/null */
	expect(t, "bash", "{\"command\":\"echo \\\"unterminated\"}", true, "unexpected EOF");
	expect(t, "bash", "{\"command\":\"echo still $X\"}", false, "still 42");
	expect(t, "bash", "{\"command\":\"exit 3\"}", true, "shell exited with code 3");
	expect(t, "bash", "{\"command\":\"echo fresh:$X:\"}", false, "fresh::");
	expect(t, "bash", "{}", true, "'command' is required");
	expect(t, "bash", "{\"command\":\"a\\u0000b\"}", true, "NUL");
	expect(t, "bash", "{\"command\":\"x\",\"timeout_ms\":0}", true, "timeout_ms");
	tool_session_free(t);
}

static void test_bash_cap_timeout_restart(void **st)
{
	tool_session *t = mk();
	bool err;
	char *s;
	(void)st;
	/* 5 MB without newlines: capped, tail kept, no deadlock. */
	s = call(t, "bash", "{\"command\":\"head -c 5000000 /dev/zero | tr '\\\\0' a; echo END\"}", &err);
	assert_false(err);
	assert_true(strlen(s) <= 100 * 1024 + 64);
	assert_true(strncmp(s, "[output truncated]\n", 19) == 0);
	assert_non_null(strstr(s, "aaaaEND"));
	free(s);
	expect(t, "bash", "{\"command\":\"export K=1; echo set\"}", false, "set");
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	expect(t, "bash", "{\"command\":\"echo before; sleep 30\",\"timeout_ms\":300}", true, "before\n[command timed out");
	clock_gettime(CLOCK_MONOTONIC, &b);
	assert_true(b.tv_sec - a.tv_sec < 5);
	expect(t, "bash", "{\"command\":\"echo k=$K\"}", false, "k=\n");
	expect(t, "bash", "{\"command\":\"export K=2\"}", false, NULL);
	expect(t, "bash", "{\"restart\":true}", false, "restarted");
	expect(t, "bash", "{\"command\":\"echo k=$K\"}", false, "k=\n");
	tool_session_free(t);
}

static void test_read(void **st)
{
	tool_session *t = mk();
	char *big;
	(void)st;
	put("r.txt", "l1\nl2\nl3\nl4\n");
	expect(t, "read", "{\"file_path\":\"/r.txt\"}", false, "l1\nl2\nl3\nl4\n");
	expect(t, "read", "{\"file_path\":\"r.txt\",\"view_range\":[2,3]}", false, "l2\nl3\n");
	expect(t, "read", "{\"file_path\":\"r.txt\",\"view_range\":[3,-1]}", false, "l3\nl4\n");
	expect(t, "read", "{\"file_path\":\"r.txt\",\"view_range\":[9,10]}", true, "has 4 lines");
	expect(t, "read", "{\"file_path\":\"r.txt\",\"view_range\":[0,1]}", true, "view_range");
	expect(t, "read", "{\"file_path\":\"r.txt\",\"view_range\":[1]}", true, "view_range");
	expect(t, "read", "{\"file_path\":\"nope\"}", true, "No such file");
	expect(t, "read", "{\"file_path\":\"/\"}", true, "a directory");
	expect(t, "read", "{}", true, "file_path");
	/* Over the cap: an error unless a range is given. */
	big = malloc(400 * 1024 + 1);
	for (size_t i = 0; i < 400 * 1024; i++)
		big[i] = (i % 100 == 99) ? '\n' : 'x';
	big[400 * 1024] = 0;
	memcpy(big + 99 * 100, "MARKER", 6);
	put("big.txt", big);
	free(big);
	expect(t, "read", "{\"file_path\":\"big.txt\"}", true, "over the 256 KiB read limit");
	expect(t, "read", "{\"file_path\":\"big.txt\",\"view_range\":[100,100]}", false, "MARKER");
	expect(t, "read", "{\"file_path\":\"big.txt\",\"view_range\":[1,0]}", true, "fewer lines");
	tool_session_free(t);
}

static void test_special_files(void **st)
{
	tool_session *t = mk();
	char p[600];
	struct timespec a, b;
	(void)st;
	snprintf(p, sizeof p, "%s/fifo", root);
	assert_int_equal(mkfifo(p, 0644), 0);
	clock_gettime(CLOCK_MONOTONIC, &a);
	expect(t, "read", "{\"file_path\":\"fifo\"}", true, "a FIFO");
	expect(t, "grep", "{\"pattern\":\"x\",\"path\":\"fifo\"}", true, "a FIFO");
	expect(t, "write", "{\"file_path\":\"fifo\",\"content\":\"x\"}", true, "a FIFO");
	expect(t, "edit", "{\"file_path\":\"fifo\",\"old_string\":\"a\",\"new_string\":\"b\"}", true, "FIFO");
	clock_gettime(CLOCK_MONOTONIC, &b);
	assert_true(b.tv_sec - a.tv_sec < 3);
	snprintf(p, sizeof p, "%s/dev", root);
	mkdir(p, 0755);
	snprintf(p, sizeof p, "%s/dev/zero", root);
	if (mknod(p, S_IFCHR | 0666, makedev(1, 5)) == 0) {
		expect(t, "read", "{\"file_path\":\"/dev/zero\"}", true, "a character device");
	} else {
		print_message("note: not root, /dev/zero node not created (%s); FIFO case covers the type check\n",
			      strerror(errno));
	}
	/* A glob over a tree with a FIFO does not hang either. */
	expect(t, "grep", "{\"pattern\":\"zzz\"}", false, NULL);
	tool_session_free(t);
}

static void test_escapes(void **st)
{
	tool_session *t = mk();
	char p[600], q[600];
	char *s;
	(void)st;
	/* ../ and absolute paths stay in the root. */
	expect(t, "read", "{\"file_path\":\"../secret\"}", true, "No such file");
	expect(t, "read", "{\"file_path\":\"/../../secret\"}", true, "No such file");
	/* Symlinks: absolute and relative targets are resolved inside the root. */
	snprintf(p, sizeof p, "%s/abs", root);
	assert_int_equal(symlink(outside, p), 0);
	snprintf(p, sizeof p, "%s/rel", root);
	assert_int_equal(symlink("../secret", p), 0);
	snprintf(p, sizeof p, "%s/loop1", root);
	assert_int_equal(symlink("loop2", p), 0);
	snprintf(p, sizeof p, "%s/loop2", root);
	assert_int_equal(symlink("loop1", p), 0);
	snprintf(p, sizeof p, "%s/procroot", root);
	assert_int_equal(symlink("/proc/self/root/etc/hostname", p), 0);
	snprintf(p, sizeof p, "%s/updir", root);
	assert_int_equal(symlink("..", p), 0);
	expect(t, "read", "{\"file_path\":\"abs\"}", true, "No such file");
	expect(t, "read", "{\"file_path\":\"rel\"}", true, "No such file");
	expect(t, "read", "{\"file_path\":\"updir/secret\"}", true, "No such file");
	expect(t, "read", "{\"file_path\":\"loop1\"}", true, "symbolic links");
	expect(t, "read", "{\"file_path\":\"procroot\"}", true, NULL);
	expect(t, "read", "{\"file_path\":\"/proc/self/root/etc/hostname\"}", true, NULL);
	expect(t, "read", "{\"file_path\":\"a\\u0000b\"}", true, "NUL");
	/* Writes through the links land inside the root, never on the outside file. */
	expect(t, "write", "{\"file_path\":\"abs\",\"content\":\"pwned\"}", false, NULL);
	expect(t, "write", "{\"file_path\":\"rel\",\"content\":\"pwned\"}", false, NULL);
	expect(t, "write", "{\"file_path\":\"updir/secret\",\"content\":\"pwned2\"}", false, NULL);
	expect(t, "write", "{\"file_path\":\"loop1\",\"content\":\"x\"}", true, "symbolic links");
	/* No procfs in this fake root: the path is just directories inside it (the e2e tests use real /proc). */
	expect(t, "write", "{\"file_path\":\"/proc/self/root/x\",\"content\":\"x\"}", false, NULL);
	s = get("proc/self/root/x");
	assert_string_equal(s, "x");
	free(s);
	expect(t, "edit", "{\"file_path\":\"../secret\",\"old_string\":\"pwned2\",\"new_string\":\"X\"}", false, NULL);
	s = get("../secret");
	assert_string_equal(s, "TOP-SECRET\n");
	free(s);
	s = get(outside);
	assert_string_equal(s, "pwned");
	free(s);
	/* A hard link to an outside file: write and edit replace the link, the outside inode is unchanged. */
	snprintf(p, sizeof p, "%s/hard", root);
	assert_int_equal(link(outside, p), 0);
	expect(t, "edit", "{\"file_path\":\"hard\",\"old_string\":\"TOP\",\"new_string\":\"X\"}", false, "replaced 1");
	expect(t, "write", "{\"file_path\":\"hard\",\"content\":\"new\"}", false, NULL);
	snprintf(q, sizeof q, "%s", outside);
	FILE *f = fopen(q, "r");
	char buf[64] = { 0 };
	assert_non_null(fgets(buf, sizeof buf, f));
	fclose(f);
	assert_string_equal(buf, "TOP-SECRET\n");
	/* Globs refuse absolute and .. patterns. */
	expect(t, "glob", "{\"pattern\":\"/etc/*\"}", true, "absolute");
	expect(t, "glob", "{\"pattern\":\"../*\"}", true, "'..'");
	expect(t, "glob", "{\"pattern\":\"*\",\"path\":\"updir\"}", false, "/updir/"); /* the root itself */
	tool_session_free(t);
}

static void test_write_edit(void **st)
{
	tool_session *t = mk();
	struct stat a, b;
	char p[600], *s;
	(void)st;
	expect(t, "write", "{\"file_path\":\"deep/er/f.txt\",\"content\":\"alpha beta alpha\"}", false,
	       "wrote 16 bytes to /deep/er/f.txt");
	s = get("deep/er/f.txt");
	assert_string_equal(s, "alpha beta alpha");
	free(s);
	snprintf(p, sizeof p, "%s/deep/er/f.txt", root);
	assert_int_equal(chmod(p, 0751), 0);
	int keep = open(p, O_RDONLY | O_CLOEXEC); /* pins the original inode (no number reuse) */
	assert_true(keep >= 0);
	assert_int_equal(fstat(keep, &a), 0);
	expect(t, "edit", "{\"file_path\":\"deep/er/f.txt\",\"old_string\":\"alpha\",\"new_string\":\"x\"}", true,
	       "occurs 2 times");
	expect(t, "edit", "{\"file_path\":\"deep/er/f.txt\",\"old_string\":\"gamma\",\"new_string\":\"x\"}", true,
	       "not found");
	expect(t, "edit", "{\"file_path\":\"deep/er/f.txt\",\"old_string\":\"beta\",\"new_string\":\"B\"}", false,
	       "replaced 1 occurrence in");
	expect(t, "edit",
	       "{\"file_path\":\"deep/er/f.txt\",\"old_string\":\"alpha\",\"new_string\":\"A\",\"replace_all\":true}", false,
	       "replaced 2 occurrences");
	s = get("deep/er/f.txt");
	assert_string_equal(s, "A B A");
	free(s);
	assert_int_equal(stat(p, &b), 0);
	assert_true(a.st_ino != b.st_ino); /* replaced by rename, not rewritten in place */
	{
		char old[32] = { 0 };
		assert_int_equal(pread(keep, old, sizeof old - 1, 0), 16);
		assert_string_equal(old, "alpha beta alpha");
		close(keep);
	}
	assert_int_equal(b.st_mode & 07777, 0751);
	expect(t, "edit", "{\"file_path\":\"missing\",\"old_string\":\"a\",\"new_string\":\"b\"}", true, "No such file");
	expect(t, "write", "{\"file_path\":\"deep\",\"content\":\"x\"}", true, "a directory");
	expect(t, "write", "{\"file_path\":\"x\"}", true, "content");
	/* No temporary files left behind. */
	expect(t, "bash", "{\"command\":\"ls -a deep/er\"}", false, NULL);
	{
		bool err;
		char *l = call(t, "bash", "{\"command\":\"ls -A deep/er | wc -l\"}", &err);
		assert_string_equal(l, "1\n");
		free(l);
	}
	tool_session_free(t);
}

static void test_glob_grep(void **st)
{
	tool_session *t = mk();
	char p[600];
	bool err;
	char *s;
	(void)st;
	expect(t, "bash",
	       "{\"command\":\"mkdir -p g/a/b g/.git g/node_modules && echo 'int main' > g/a/b/x.c && echo h > g/a/y.h && "
	       "echo hidden > g/.git/z.c && echo nm > g/node_modules/m.c && touch -d '2001-01-01' g/a/y.h && "
	       "touch -d '2002-01-01' g/a/b/x.c && echo 'int main2' > g/new.c\"}",
	       false, NULL);
	s = call(t, "glob", "{\"pattern\":\"**/*.{c,h}\",\"path\":\"g\"}", &err);
	assert_false(err);
	assert_string_equal(s, "/g/new.c\n/g/a/b/x.c\n/g/a/y.h\n");
	free(s);
	expect(t, "glob", "{\"pattern\":\"*.c\",\"path\":\"/g\"}", false, "/g/new.c\n");
	expect(t, "glob", "{\"pattern\":\"*.zz\",\"path\":\"/g\"}", false, "No files matched");
	expect(t, "glob", "{\"pattern\":\"*\",\"path\":\"/g/new.c\"}", true, "not a directory");
	expect(t, "bash", "{\"command\":\"mkdir -p many && for i in $(seq 1 250); do : > many/f$i; done\"}", false, NULL);
	s = call(t, "glob", "{\"pattern\":\"many/*\"}", &err);
	{
		int lines = 0;
		for (char *c = s; *c; c++)
			lines += *c == '\n';
		assert_int_equal(lines, 201);
		assert_non_null(strstr(s, "[50 more matches not shown"));
	}
	free(s);
	s = call(t, "grep", "{\"pattern\":\"int ma[i]n\",\"path\":\"g\"}", &err);
	assert_false(err);
	assert_non_null(strstr(s, "/g/a/b/x.c:1:int main\n"));
	assert_non_null(strstr(s, "/g/new.c:1:int main2\n"));
	assert_null(strstr(s, ".git"));
	free(s);
	expect(t, "grep", "{\"pattern\":\"main2\",\"path\":\"/g/new.c\"}", false, "/g/new.c:1:int main2");
	expect(t, "grep", "{\"pattern\":\"(\"}", true, "invalid regular expression");
	expect(t, "grep", "{\"pattern\":\"nomatchanywhere\",\"path\":\"g\"}", false, "No matches found");
	/* Output cap. */
	snprintf(p, sizeof p, "%s/lots.txt", root);
	FILE *f = fopen(p, "w");
	for (int i = 0; i < 20000; i++)
		fprintf(f, "match line %d with some padding text\n", i);
	fclose(f);
	s = call(t, "grep", "{\"pattern\":\"match\",\"path\":\"lots.txt\"}", &err);
	assert_false(err);
	assert_true(strlen(s) < 100 * 1024 + 100);
	assert_non_null(strstr(s, "[output truncated at 100 KiB]"));
	free(s);
	tool_session_free(t);
}

/* grep's regex engine is bounded: exponential backtracking stops at the match limit with an error, fast;
 * PCRE2 syntax; an overlong pattern is refused. */
static void test_grep_limits(void **st)
{
	tool_session *t = mk();
	struct timespec a, b;
	char line[80], *pat;
	(void)st;
	memset(line, 'a', 40);
	strcpy(line + 40, "!\n");
	put("patho.txt", line);
	clock_gettime(CLOCK_MONOTONIC, &a);
	expect(t, "grep", "{\"pattern\":\"^(a+)+$\",\"path\":\"patho.txt\"}", true,
	       "grep stopped at /patho.txt:1: the pattern needs more work than grep allows");
	expect(t, "grep", "{\"pattern\":\"(a|aa)+$\",\"path\":\"patho.txt\"}", true, "simplify it");
	clock_gettime(CLOCK_MONOTONIC, &b);
	assert_true(b.tv_sec - a.tv_sec < 5);
	/* The worker is still there and answers the next call. */
	expect(t, "grep", "{\"pattern\":\"\\\\d*!$\",\"path\":\"patho.txt\"}", false, "/patho.txt:1:aaaa");
	expect(t, "grep", "{\"pattern\":\"(?<x>a)\\\\k<x>{40}\",\"path\":\"patho.txt\"}", false, "No matches");
	expect(t, "grep", "{\"pattern\":\"a{2,1}\"}", true, "invalid regular expression at offset");
	pat = malloc(TFILE_GREP_PATTERN_MAX + 64);
	strcpy(pat, "{\"pattern\":\"");
	memset(pat + 12, 'x', TFILE_GREP_PATTERN_MAX + 1);
	strcpy(pat + 12 + TFILE_GREP_PATTERN_MAX + 1, "\"}");
	expect(t, "grep", pat, true, "over the 4096-byte limit");
	free(pat);
	tool_session_free(t);
}

/* A worker that answers with stray text, or dies, gives a clear error; the next call starts a new one. */
static void junk_child(void)
{
	char b[16];
	if (read(0, b, sizeof b) > 0 && write(1, "loader: GLIBC_2.99 not found\n", 30) < 0)
		_exit(2);
	_exit(3);
}

static int junk_spawn(void *ud, void **proc, int *in_fd, int *out_fd)
{
	(void)ud;
	return lproc_start(junk_child, proc, in_fd, out_fd);
}

static void test_worker_failures(void **st)
{
	struct tool_backend b = { .cwd = "/", .shell_spawn = l_spawn, .shell_kill = l_kill, .shell_wait = l_wait,
				  .shell_free = l_free, .worker_spawn = junk_spawn, .file_timeout_ms = 3000 };
	tool_session *t = tool_session_new(&b);
	(void)st;
	for (int i = 0; i < 2; i++)
		expect(t, "read", "{\"file_path\":\"r.txt\"}", true,
		       "file tool failed: loader: GLIBC_2.99 not found");
	tool_session_free(t);
	b.worker_spawn = NULL;
	t = tool_session_new(&b);
	expect(t, "read", "{\"file_path\":\"r.txt\"}", true, "not available");
	tool_session_free(t);
}

static void test_unknown_and_list(void **st)
{
	tool_session *t = mk();
	json_t *r = NULL, *l = tool_list_json();
	(void)st;
	assert_int_equal(tool_call(t, "nope", NULL, &r), -ENOENT);
	assert_int_equal(json_array_size(l), 6);
	for (size_t i = 0; i < 6; i++) {
		json_t *tl = json_array_get(l, i);
		assert_string_equal(json_string_value(json_object_get(json_object_get(tl, "inputSchema"), "type")), "object");
	}
	json_decref(l);
	tool_session_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bash_state_and_exit),
		cmocka_unit_test(test_bash_cap_timeout_restart),
		cmocka_unit_test(test_read),
		cmocka_unit_test(test_special_files),
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_write_edit),
		cmocka_unit_test(test_glob_grep),
		cmocka_unit_test(test_grep_limits),
		cmocka_unit_test(test_worker_failures),
		cmocka_unit_test(test_unknown_and_list),
	};
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
