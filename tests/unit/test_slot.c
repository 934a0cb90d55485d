#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "sandbox/engine/slot.h"

static void test_cap_and_release(void **st)
{
	char dir[] = "/tmp/postern-slots-XXXXXX", err[256];
	int a, b, c;
	pid_t pid;
	int ws;
	(void)st;
	assert_non_null(mkdtemp(dir));
	a = slot_acquire(dir, 2, err, sizeof err);
	b = slot_acquire(dir, 2, err, sizeof err);
	assert_true(a >= 0 && b >= 0);
	c = slot_acquire(dir, 2, err, sizeof err);
	assert_int_equal(c, -EBUSY);
	assert_non_null(strstr(err, "sandbox limit reached: 2"));
	/* Another process sees the same cap. */
	pid = fork();
	if (pid == 0)
		_exit(slot_acquire(dir, 2, err, sizeof err) == -EBUSY ? 0 : 1);
	waitpid(pid, &ws, 0);
	assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
	slot_release(a);
	c = slot_acquire(dir, 2, err, sizeof err);
	assert_true(c >= 0);
	slot_release(b);
	slot_release(c);
	/* A group-writable directory is refused. */
	chmod(dir, 0777);
	assert_int_equal(slot_acquire(dir, 2, err, sizeof err), -EPERM);
	assert_int_equal(slot_acquire(dir, 0, err, sizeof err), -EINVAL);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_cap_and_release) };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
