/* core/srclim: the bucket per source (/32, /64), the block, aggregation of log counts, the bounded table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "core/srclim.h"

static struct sockaddr_storage addr(const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	if (strchr(ip, ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		assert_int_equal(inet_pton(AF_INET6, ip, &a->sin6_addr), 1);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		assert_int_equal(inet_pton(AF_INET, ip, &a->sin_addr), 1);
	}
	return ss;
}
#define SA(ss) ((const struct sockaddr *)&(ss))

static srl_report reps[16];
static int nreps;
static void collect(const srl_report *r, void *ud)
{
	(void)ud;
	assert_true(nreps < 16);
	reps[nreps++] = *r;
}

static srl *mk(uint32_t burst, uint32_t window, uint32_t block, uint32_t slots)
{
	srl_config c;
	srl *l;
	srl_config_default(&c);
	c.burst = burst;
	c.window_ms = window;
	c.block_ms = block;
	c.slots = slots;
	assert_int_equal(srl_new(&c, &l), 0);
	return l;
}

static void test_bucket_block_and_refill(void **st)
{
	srl *l = mk(10, 60000, 60000, 64);
	struct sockaddr_storage a = addr("192.0.2.7", 1000), a2 = addr("192.0.2.7", 2000), b = addr("192.0.2.8", 1);
	(void)st;
	/* Ten failures a minute: the tenth empties the bucket and starts the block. */
	assert_int_equal(srl_fail(l, SA(a), 1000), SRL_LOG);
	for (int i = 2; i <= 9; i++)
		assert_int_equal(srl_fail(l, SA(a), 1000 + (uint64_t)i), 0);
	assert_false(srl_refused(l, SA(a), 1010));
	assert_int_equal(srl_fail(l, SA(a), 1010), SRL_BLOCKED);
	/* Refused whatever the port; another address is not. */
	assert_true(srl_refused(l, SA(a), 1011));
	assert_true(srl_refused(l, SA(a2), 1012));
	assert_false(srl_refused(l, SA(b), 1013));
	assert_true(srl_refused(l, SA(a), 1010 + 59999));
	/* The block ends; the bucket refilled meanwhile: ten more before the next block. */
	assert_false(srl_refused(l, SA(a), 1010 + 60000));
	for (int i = 0; i < 9; i++)
		assert_int_equal(srl_fail(l, SA(a), 61010) & SRL_BLOCKED, 0);
	assert_true(srl_fail(l, SA(a), 61010) & SRL_BLOCKED);
	srl_free(l);
	/* Slow failures never block: one every 6 s is exactly the refill. */
	l = mk(10, 60000, 60000, 64);
	for (uint64_t t = 0; t < 600000; t += 6000) {
		assert_int_equal(srl_fail(l, SA(a), t) & SRL_BLOCKED, 0);
		assert_false(srl_refused(l, SA(a), t + 1));
	}
	srl_free(l);
	/* burst 0: never refused. */
	l = mk(0, 60000, 60000, 64);
	for (int i = 0; i < 100; i++)
		assert_int_equal(srl_fail(l, SA(a), 5) & SRL_BLOCKED, 0);
	assert_false(srl_refused(l, SA(a), 6));
	srl_free(l);
}

static void test_sources(void **st)
{
	srl *l = mk(2, 60000, 60000, 64);
	struct sockaddr_storage v6a = addr("2001:db8:1:2::1", 1), v6b = addr("2001:db8:1:2:ffff::9", 1),
				v6c = addr("2001:db8:1:3::1", 1), mapped = addr("::ffff:198.51.100.4", 1),
				v4 = addr("198.51.100.4", 1);
	struct sockaddr un = { .sa_family = AF_UNIX };
	char buf[SRL_SOURCE_MAX];
	(void)st;
	assert_string_equal(srl_source(SA(v6a), buf, sizeof buf), "2001:db8:1:2::/64");
	assert_string_equal(srl_source(SA(mapped), buf, sizeof buf), "198.51.100.4/32");
	assert_string_equal(srl_source(&un, buf, sizeof buf), "-");
	/* One /64 is one source; the next /64 is another. */
	srl_fail(l, SA(v6a), 0);
	assert_true(srl_fail(l, SA(v6b), 0) & SRL_BLOCKED);
	assert_true(srl_refused(l, SA(v6a), 1));
	assert_false(srl_refused(l, SA(v6c), 1));
	/* IPv4-mapped is the IPv4 address. */
	srl_fail(l, SA(mapped), 0);
	srl_fail(l, SA(v4), 0);
	assert_true(srl_refused(l, SA(v4), 1));
	assert_true(srl_refused(l, SA(mapped), 1));
	assert_int_equal(srl_fail(l, &un, 0), SRL_LOG);
	assert_false(srl_refused(l, &un, 1));
	srl_free(l);
}

static void test_reports_aggregate(void **st)
{
	srl *l = mk(5, 1000, 3000, 64);
	struct sockaddr_storage a = addr("203.0.113.9", 1), b = addr("203.0.113.10", 1);
	(void)st;
	nreps = 0;
	assert_int_equal(srl_fail(l, SA(a), 0), SRL_LOG);
	assert_int_equal(srl_fail(l, SA(b), 10), SRL_LOG);
	for (int i = 0; i < 6; i++) {
		int r = srl_fail(l, SA(a), 100);
		assert_int_equal(r & SRL_LOG, 0);
		(void)srl_refused(l, SA(a), 100);
	}
	srl_report_due(l, 999, collect, NULL);
	assert_int_equal(nreps, 0); /* the interval is still open */
	srl_report_due(l, 1010, collect, NULL);
	/* a: one line with the counts; b had only its first failure, logged in full already: nothing. */
	assert_int_equal(nreps, 1);
	assert_string_equal(reps[0].source, "203.0.113.9/32");
	assert_int_equal(reps[0].failures, 6);
	assert_int_equal(reps[0].refused, 3); /* the fourth of those six empties the bucket: three checks refused */
	assert_int_equal(reps[0].interval_ms, 1000);
	assert_true(reps[0].blocked);
	/* Activity goes on: still one line per interval, no line in full. */
	assert_true(srl_refused(l, SA(a), 1500));
	assert_true(srl_refused(l, SA(a), 1600));
	srl_report_due(l, 2100, collect, NULL);
	assert_int_equal(nreps, 2);
	assert_int_equal(reps[1].failures, 0);
	assert_int_equal(reps[1].refused, 2);
	/* A quiet interval closes it: the next failure is logged in full again. */
	srl_report_due(l, 3200, collect, NULL);
	assert_int_equal(nreps, 2);
	assert_int_equal(srl_fail(l, SA(a), 4000) & SRL_LOG, SRL_LOG);
	srl_free(l);
}

static void test_table_is_bounded(void **st)
{
	srl *l = mk(3, 60000, 60000, 16);
	struct sockaddr_storage bad = addr("10.9.9.9", 1);
	char ip[32];
	(void)st;
	/* A blocked source survives a flood of others that only fail once (evicted first: the oldest unblocked). */
	for (int i = 0; i < 3; i++)
		srl_fail(l, SA(bad), 0);
	assert_true(srl_refused(l, SA(bad), 1));
	for (int i = 0; i < 5000; i++) {
		struct sockaddr_storage o;
		snprintf(ip, sizeof ip, "10.0.%d.%d", i / 250, i % 250 + 1);
		o = addr(ip, 1);
		srl_fail(l, SA(o), 2 + (uint64_t)i);
		assert_true(srl_count(l) <= 16);
	}
	assert_true(srl_evictions(l) > 4000);
	assert_true(srl_refused(l, SA(bad), 6000));
	srl_free(l);
	{
		srl_config c;
		srl *x = (srl *)1;
		srl_config_default(&c);
		c.window_ms = 0;
		assert_int_equal(srl_new(&c, &x), -EINVAL);
		assert_null(x);
		srl_config_default(&c);
		c.slots = SRL_SLOTS_MAX + 1;
		assert_int_equal(srl_new(&c, &x), -EINVAL);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bucket_block_and_refill),
		cmocka_unit_test(test_sources),
		cmocka_unit_test(test_reports_aggregate),
		cmocka_unit_test(test_table_is_bounded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
