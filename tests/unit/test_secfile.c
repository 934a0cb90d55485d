/* core/secfile: the one reader of secret files. Each refusal names the file and the fix; the shared mode
 * reads but says what is exposed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/secfile.h"

static char dir[] = "/tmp/sfile-XXXXXX";

static char *put(const char *name, const char *text, mode_t mode)
{
	static char path[256];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
	return path;
}

static void test_reads_a_private_file(void **st)
{
	char err[700] = "", *p = put("ok", "s3cret\nsecond line\n", 0600);
	sfile f;
	(void)st;
	assert_int_equal(sfile_read(p, 64, 0, &f, err, sizeof err), 0);
	assert_int_equal(f.len, 19);
	assert_string_equal(f.data, "s3cret\nsecond line\n");
	assert_int_equal(f.mode, 0600);
	assert_int_equal(sfile_exposure(&f, p, err, sizeof err), 0);
	assert_string_equal(err, "");
	assert_int_equal(sfile_first_line(&f), 6);
	assert_string_equal(f.data, "s3cret");
	/* the rest is wiped, not only cut */
	assert_int_equal(f.data[7], 0);
	assert_int_equal(f.data[12], 0);
	sfile_free(&f);
	assert_null(f.data);
	sfile_free(&f); /* twice is fine */
	/* 0400 is stricter: fine */
	p = put("ro", "k", 0400);
	assert_int_equal(sfile_read(p, 64, 0, &f, err, sizeof err), 0);
	assert_string_equal(f.data, "k");
	sfile_free(&f);
	/* an empty file reads as empty: the caller says what it expected */
	p = put("empty", "", 0600);
	assert_int_equal(sfile_read(p, 64, 0, &f, err, sizeof err), 0);
	assert_int_equal(f.len, 0);
	assert_string_equal(f.data, "");
	assert_int_equal(sfile_first_line(&f), 0);
	sfile_free(&f);
}

static void test_refuses_open_modes(void **st)
{
	char err[700], want[700], *p;
	sfile f;
	(void)st;
	p = put("group", "s", 0640);
	assert_int_equal(sfile_read(p, 64, 0, &f, err, sizeof err), -EPERM);
	assert_null(f.data);
	snprintf(want, sizeof want, "%s is readable by its group (mode 0640): it holds a secret; run chmod 600 %s", p, p);
	assert_string_equal(err, want);
	p = put("world", "s", 0644);
	assert_int_equal(sfile_read(p, 64, 0, &f, err, sizeof err), -EPERM);
	snprintf(want, sizeof want, "%s is readable by all users (mode 0644): it holds a secret; run chmod 600 %s", p, p);
	assert_string_equal(err, want);
	/* write bits alone are refused too: whoever can write it can swap the secret */
	p = put("gw", "s", 0620);
	assert_int_equal(sfile_read(p, 64, 0, &f, err, sizeof err), -EPERM);
	assert_non_null(strstr(err, "is writable by its group (mode 0620)"));
	/* shared mode reads it and says the same words through sfile_exposure */
	p = put("world", "tok\n", 0644);
	assert_int_equal(sfile_read(p, 64, SFILE_SHARED_OK, &f, err, sizeof err), 0);
	assert_string_equal(f.data, "tok\n");
	assert_int_equal(f.mode, 0644);
	assert_int_equal(sfile_exposure(&f, p, err, sizeof err), 1);
	snprintf(want, sizeof want, "%s is readable by all users (mode 0644): it holds a secret; run chmod 600 %s", p, p);
	assert_string_equal(err, want);
	sfile_free(&f);
}

static void test_refuses_links_dirs_fifos_big(void **st)
{
	char err[700], link[300], sub[300], fifo[300], *p;
	sfile f;
	(void)st;
	p = put("target", "s", 0600);
	snprintf(link, sizeof link, "%s/link", dir);
	unlink(link);
	assert_int_equal(symlink(p, link), 0);
	assert_int_equal(sfile_read(link, 64, 0, &f, err, sizeof err), -ELOOP);
	assert_non_null(strstr(err, link));
	assert_non_null(strstr(err, "is a symbolic link"));
	/* also in shared mode: a link is never followed */
	assert_int_equal(sfile_read(link, 64, SFILE_SHARED_OK, &f, err, sizeof err), -ELOOP);
	snprintf(sub, sizeof sub, "%s/sub", dir);
	mkdir(sub, 0700);
	assert_int_equal(sfile_read(sub, 64, 0, &f, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "is not a regular file"));
	/* a FIFO is opened without blocking and refused */
	snprintf(fifo, sizeof fifo, "%s/fifo", dir);
	unlink(fifo);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	assert_int_equal(sfile_read(fifo, 64, 0, &f, err, sizeof err), -EINVAL);
	/* the cap: exactly cap bytes read, one more refused */
	p = put("big", "0123456789", 0600);
	assert_int_equal(sfile_read(p, 10, 0, &f, err, sizeof err), 0);
	sfile_free(&f);
	assert_int_equal(sfile_read(p, 9, 0, &f, err, sizeof err), -EFBIG);
	assert_non_null(strstr(err, "is over 9 bytes"));
	/* missing: the errno and the path */
	snprintf(sub, sizeof sub, "%s/nope", dir);
	assert_int_equal(sfile_read(sub, 64, 0, &f, err, sizeof err), -ENOENT);
	assert_non_null(strstr(err, sub));
	assert_null(f.data);
}

static void test_owner(void **st)
{
	char err[700], *p;
	sfile f;
	(void)st;
	p = put("own", "s", 0600);
	if (geteuid() != 0) {
		/* files this user makes are its own: fine; another owner cannot be made without root */
		assert_int_equal(sfile_read(p, 64, 0, &f, err, sizeof err), 0);
		sfile_free(&f);
		return;
	}
	/* root: a file owned by another user (nobody) is refused, root's own accepted */
	assert_int_equal(chown(p, 65534, 65534), 0);
	assert_int_equal(sfile_read(p, 64, 0, &f, err, sizeof err), -EPERM);
	assert_non_null(strstr(err, "is owned by uid 65534, not by the user running postern (uid 0)"));
	assert_non_null(strstr(err, "chown 0 "));
	assert_int_equal(sfile_read(p, 64, SFILE_SHARED_OK, &f, err, sizeof err), 0);
	assert_int_equal(f.uid, 65534);
	assert_int_equal(sfile_exposure(&f, p, err, sizeof err), 1);
	sfile_free(&f);
	assert_int_equal(chown(p, 0, 0), 0);
	assert_int_equal(sfile_read(p, 64, 0, &f, err, sizeof err), 0);
	sfile_free(&f);
}

static int setup(void **st)
{
	(void)st;
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **st)
{
	char cmd[300];
	(void)st;
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reads_a_private_file),
		cmocka_unit_test(test_refuses_open_modes),
		cmocka_unit_test(test_refuses_links_dirs_fifos_big),
		cmocka_unit_test(test_owner),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
