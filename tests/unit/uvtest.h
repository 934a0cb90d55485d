/* The libuv loop harness of the loop-driven unit tests (test_edge, test_connector). It owns `loop` (the
 * default loop) and a tick timer so that uv_run(UV_RUN_ONCE) comes back to check a condition. A failed cmocka
 * assertion leaves the test's handles on the loop, where the group teardown would wait on them forever; so
 * each UVT_TEST gets a teardown that ends the binary with a message when handles are left (but the ones
 * uvt_keep names), and a watchdog that does the same when one test runs over UVTEST_WATCHDOG_S seconds
 * (default 60), instead of hanging until the 600 s unit timeout.
 * Include after cmocka.h. */
#ifndef POSTERN_TESTS_UVTEST_H
#define POSTERN_TESTS_UVTEST_H

#include <ftw.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

static uv_loop_t *loop;
static uv_timer_t uvt_tick;
static uv_handle_t *uvt_kept[8];
static int uvt_nkept;
static const char *uvt_current = "?";
static int uvt_left; /* handles the last test left open */
static const char *uvt_dir; /* the group's scratch directory, removed however the binary ends */

static inline void uvt_tick_cb(uv_timer_t *t) { (void)t; }

/* Runs the loop until cond(ud) or timeout_ms; returns cond's last value. */
static inline bool run_until(bool (*cond)(void *), void *ud, int timeout_ms)
{
	uint64_t end = uv_now(loop) + (uint64_t)timeout_ms;
	uv_timer_start(&uvt_tick, uvt_tick_cb, 5, 5);
	while (!cond(ud) && uv_now(loop) < end)
		uv_run(loop, UV_RUN_ONCE);
	uv_timer_stop(&uvt_tick);
	return cond(ud);
}

static inline bool never(void *ud) { (void)ud; return false; }
static inline void run_for(int ms) { run_until(never, NULL, ms); }

/* A handle that outlives single tests (a group's own timer): teardowns leave it alone. */
static inline void uvt_keep(void *h)
{
	if (uvt_nkept < (int)(sizeof uvt_kept / sizeof uvt_kept[0]))
		uvt_kept[uvt_nkept++] = h;
}

static inline bool uvt_is_kept(const uv_handle_t *h)
{
	if (h == (const uv_handle_t *)&uvt_tick)
		return true;
	for (int i = 0; i < uvt_nkept; i++)
		if (uvt_kept[i] == h)
			return true;
	return false;
}

static inline void uvt_count_left(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h) && !uvt_is_kept(h))
		++*(int *)arg;
}

static inline int uvt_rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	return remove(p);
}

static inline void uvt_rm_dir(void)
{
	if (uvt_dir && *uvt_dir)
		nftw(uvt_dir, uvt_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* After a test that left handles: cmocka has printed why it failed (after its teardown), so end here. */
static inline void uvt_stop_if_left(void)
{
	if (!uvt_left)
		return;
	fflush(stdout);
	fprintf(stderr, "uvtest: %s left %d handle(s) on the loop; stopping the binary here\n", uvt_current,
		uvt_left);
	uvt_rm_dir();
	_exit(1);
}

static inline void uvt_watchdog(int sig)
{
	static const char a[] = "uvtest: ", b[] = " ran over its watchdog (UVTEST_WATCHDOG_S); failing now\n";
	(void)sig;
	if (write(2, a, sizeof a - 1) >= 0 && write(2, uvt_current, strlen(uvt_current)) >= 0)
		(void)!write(2, b, sizeof b - 1);
	_exit(1);
}

/* The group setup's first step: the loop, the tick, the watchdog's handler; dir (the group's scratch
 * directory, filled in later) is removed however the binary ends. */
static inline void uvt_init(const char *dir)
{
	loop = uv_default_loop();
	uv_timer_init(loop, &uvt_tick);
	uvt_dir = dir;
	signal(SIGALRM, uvt_watchdog);
}

static inline int uvt_test_setup(void **st)
{
	const char *s = getenv("UVTEST_WATCHDOG_S");
	int secs = s && atoi(s) > 0 ? atoi(s) : 60;
	uvt_stop_if_left();
	uvt_current = *st ? *st : "?";
	alarm((unsigned)secs);
	return 0;
}

/* Handles left open mean the test stopped half-way (a failed assertion skips its cleanup). Closing them
 * behind their owners' backs is no way out: their callbacks then run on freed or closing state (libuv aborts
 * on the second uv_close), and the group teardown's uv_run would wait on them forever. So the binary stops
 * at the next setup or the group teardown (uvt_stop_if_left). */
static inline int uvt_test_teardown(void **st)
{
	(void)st;
	alarm(0);
	uvt_left = 0;
	uv_walk(loop, uvt_count_left, &uvt_left);
	return 0;
}

/* A test on the loop: named for the watchdog, and the binary ends right after it when it leaves handles behind. */
#define UVT_TEST(f) cmocka_unit_test_prestate_setup_teardown(f, uvt_test_setup, uvt_test_teardown, (void *)#f)

static inline void uvt_close_one(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* The group teardown's last step: only the kept handles are left (every test checked); they close, the
 * loop goes, then the scratch directory. */
static inline void uvt_fini(void)
{
	alarm(0);
	uvt_stop_if_left();
	uv_walk(loop, uvt_close_one, NULL);
	uv_run(loop, UV_RUN_DEFAULT);
	uv_loop_close(loop);
	uvt_rm_dir();
}

/* The group teardown both loop-driven test binaries use: nothing of their own is left to free. */
static inline int uvt_group_teardown(void **st)
{
	(void)st;
	uvt_fini();
	return 0;
}

#endif
