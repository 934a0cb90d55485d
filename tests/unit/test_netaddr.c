#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>

#include "core/netaddr.h"

static void test_hostport(void **st)
{
	char h[NA_HOST_MAX];
	uint16_t p = 0;
	(void)st;
	assert_int_equal(na_split_hostport("example.com:443", false, h, sizeof h, &p), 0);
	assert_string_equal(h, "example.com");
	assert_int_equal(p, 443);
	assert_int_equal(na_split_hostport(":7844", false, h, sizeof h, &p), 0);
	assert_string_equal(h, "");
	assert_int_equal(p, 7844);
	assert_int_equal(na_split_hostport("[::1]:8080", false, h, sizeof h, &p), 0);
	assert_string_equal(h, "::1");
	assert_int_equal(p, 8080);
	assert_int_equal(na_split_hostport("10.0.0.1:65535", false, h, sizeof h, &p), 0);
	assert_int_equal(p, 65535);
	assert_int_equal(na_split_hostport("127.0.0.1:0", true, h, sizeof h, &p), 0);
	assert_int_equal(p, 0);

	assert_int_equal(na_split_hostport("127.0.0.1:0", false, h, sizeof h, &p), -EINVAL);
	assert_int_equal(na_split_hostport("host", false, h, sizeof h, &p), -EINVAL);
	assert_int_equal(na_split_hostport("host:", false, h, sizeof h, &p), -EINVAL);
	assert_int_equal(na_split_hostport("host:65536", false, h, sizeof h, &p), -EINVAL);
	assert_int_equal(na_split_hostport("host:80a", false, h, sizeof h, &p), -EINVAL);
	assert_int_equal(na_split_hostport("host:-1", false, h, sizeof h, &p), -EINVAL);
	assert_int_equal(na_split_hostport("::1:80", false, h, sizeof h, &p), -EINVAL);
	assert_int_equal(na_split_hostport("[::1]80", false, h, sizeof h, &p), -EINVAL);
	assert_int_equal(na_split_hostport("[]:80", false, h, sizeof h, &p), -EINVAL);
	assert_int_equal(na_split_hostport("a b:80", false, h, sizeof h, &p), -EINVAL);
	assert_int_equal(na_split_hostport("a/b:80", false, h, sizeof h, &p), -EINVAL);
	/* too long for the caller's buffer */
	assert_int_equal(na_split_hostport("abcdefgh:80", false, h, 4, &p), -EINVAL);
}

static void test_sockaddr(void **st)
{
	struct sockaddr_storage ss;
	char buf[NA_FMT_MAX];
	(void)st;
	assert_int_equal(na_parse_sockaddr(":8080", false, &ss), 0);
	assert_string_equal(na_format((struct sockaddr *)&ss, buf, sizeof buf), "0.0.0.0:8080");
	assert_int_equal(na_parse_sockaddr("127.0.0.1:0", true, &ss), 0);
	assert_string_equal(na_format((struct sockaddr *)&ss, buf, sizeof buf), "127.0.0.1:0");
	assert_int_equal(na_parse_sockaddr("[fe80::1]:443", false, &ss), 0);
	assert_int_equal(ss.ss_family, AF_INET6);
	assert_string_equal(na_format((struct sockaddr *)&ss, buf, sizeof buf), "[fe80::1]:443");
	assert_string_equal(na_format_ip((struct sockaddr *)&ss, buf, sizeof buf), "fe80::1");
	assert_int_equal(na_parse_sockaddr("[::ffff:10.1.2.3]:443", false, &ss), 0);
	assert_string_equal(na_format((struct sockaddr *)&ss, buf, sizeof buf), "10.1.2.3:443");
	assert_int_equal(na_parse_sockaddr("localhost:80", false, &ss), -EINVAL);
	assert_int_equal(na_parse_sockaddr("1.2.3.4.5:80", false, &ss), -EINVAL);
}

static void test_cidr_parse(void **st)
{
	na_cidr c;
	char buf[80];
	(void)st;
	assert_int_equal(na_cidr_parse("10.0.0.0/8", &c), 0);
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.bits, 8);
	assert_string_equal(na_cidr_format(&c, buf, sizeof buf), "10.0.0.0/8");
	/* host bits cleared */
	assert_int_equal(na_cidr_parse("172.31.9.9/12", &c), 0);
	assert_string_equal(na_cidr_format(&c, buf, sizeof buf), "172.16.0.0/12");
	assert_int_equal(na_cidr_parse("192.168.1.7", &c), 0);
	assert_string_equal(na_cidr_format(&c, buf, sizeof buf), "192.168.1.7/32");
	assert_int_equal(na_cidr_parse("fd00::1/8", &c), 0);
	assert_string_equal(na_cidr_format(&c, buf, sizeof buf), "fd00::/8");
	assert_int_equal(na_cidr_parse("::1", &c), 0);
	assert_string_equal(na_cidr_format(&c, buf, sizeof buf), "::1/128");
	/* an IPv4-mapped CIDR becomes the IPv4 one */
	assert_int_equal(na_cidr_parse("::ffff:10.0.0.0/104", &c), 0);
	assert_string_equal(na_cidr_format(&c, buf, sizeof buf), "10.0.0.0/8");
	assert_int_equal(na_cidr_parse("0.0.0.0/0", &c), 0);
	assert_int_equal(c.bits, 0);

	assert_int_equal(na_cidr_parse("10.0.0.0/33", &c), -EINVAL);
	assert_int_equal(na_cidr_parse("::/129", &c), -EINVAL);
	assert_int_equal(na_cidr_parse("10.0.0.0/", &c), -EINVAL);
	assert_int_equal(na_cidr_parse("10.0.0.0/x", &c), -EINVAL);
	assert_int_equal(na_cidr_parse("10.0.0/8", &c), -EINVAL);
	assert_int_equal(na_cidr_parse("example.com/8", &c), -EINVAL);
	assert_int_equal(na_cidr_parse("", &c), -EINVAL);
	assert_int_equal(na_cidr_parse("10.0.0.0/8/8", &c), -EINVAL);
}

static void test_match(void **st)
{
	na_cidrs l;
	(void)st;
	na_cidrs_init(&l);
	assert_int_equal(na_cidrs_add_rfc1918(&l), 0);
	assert_true(na_cidrs_match_str(&l, "10.1.2.3"));
	assert_true(na_cidrs_match_str(&l, "172.16.0.1"));
	assert_true(na_cidrs_match_str(&l, "172.31.255.255"));
	assert_false(na_cidrs_match_str(&l, "172.32.0.1"));
	assert_false(na_cidrs_match_str(&l, "172.15.255.255"));
	assert_true(na_cidrs_match_str(&l, "192.168.200.1"));
	assert_false(na_cidrs_match_str(&l, "192.169.0.1"));
	assert_false(na_cidrs_match_str(&l, "127.0.0.1"));
	assert_false(na_cidrs_match_str(&l, "169.254.169.254"));
	assert_false(na_cidrs_match_str(&l, "8.8.8.8"));
	/* mapped IPv6 is judged as the IPv4 address */
	assert_true(na_cidrs_match_str(&l, "::ffff:10.9.9.9"));
	assert_false(na_cidrs_match_str(&l, "::ffff:127.0.0.1"));
	assert_false(na_cidrs_match_str(&l, "::1"));
	assert_false(na_cidrs_match_str(&l, "not-an-ip"));
	na_cidrs_free(&l);

	na_cidrs_init(&l);
	assert_int_equal(na_cidrs_add(&l, "::/0"), 0);
	assert_true(na_cidrs_match_str(&l, "2001:db8::1"));
	/* families are kept apart */
	assert_false(na_cidrs_match_str(&l, "10.0.0.1"));
	assert_false(na_cidrs_match_str(&l, "::ffff:10.0.0.1"));
	assert_int_equal(na_cidrs_add(&l, "127.0.0.1"), 0);
	assert_true(na_cidrs_match_str(&l, "127.0.0.1"));
	assert_false(na_cidrs_match_str(&l, "127.0.0.2"));
	assert_int_equal(na_cidrs_add(&l, "fe80::/10"), 0);
	assert_true(na_cidrs_match_str(&l, "febf::1"));
	assert_int_equal(na_cidrs_add(&l, "bogus"), -EINVAL);
	assert_int_equal(l.n, 3);
	na_cidrs_free(&l);

	na_cidrs_init(&l);
	assert_int_equal(na_cidrs_add(&l, "10.128.0.0/9"), 0);
	assert_true(na_cidrs_match_str(&l, "10.200.0.1"));
	assert_false(na_cidrs_match_str(&l, "10.127.0.1"));
	assert_int_equal(na_cidrs_add(&l, "0.0.0.0/0"), 0);
	assert_true(na_cidrs_match_str(&l, "1.1.1.1"));
	assert_false(na_cidrs_match_str(&l, "::2"));
	na_cidrs_free(&l);
}

static void test_sockaddr_match(void **st)
{
	na_cidrs l;
	struct sockaddr_in6 s6;
	(void)st;
	na_cidrs_init(&l);
	assert_int_equal(na_cidrs_add(&l, "192.168.0.0/16"), 0);
	memset(&s6, 0, sizeof s6);
	s6.sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, "::ffff:192.168.4.4", &s6.sin6_addr), 1);
	assert_true(na_cidrs_match(&l, (struct sockaddr *)&s6));
	assert_true(na_cidr_match(&l.v[0], (struct sockaddr *)&s6));
	assert_false(na_cidrs_match(&l, NULL));
	assert_false(na_cidrs_match(NULL, (struct sockaddr *)&s6));
	na_cidrs_free(&l);
}

static void test_cap(void **st)
{
	na_cidrs l;
	(void)st;
	na_cidrs_init(&l);
	for (size_t i = 0; i < NA_CIDRS_MAX; i++)
		assert_int_equal(na_cidrs_add(&l, "10.0.0.0/8"), 0);
	assert_int_equal(na_cidrs_add(&l, "10.0.0.0/8"), -E2BIG);
	na_cidrs_free(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hostport),     cmocka_unit_test(test_sockaddr),
		cmocka_unit_test(test_cidr_parse),   cmocka_unit_test(test_match),
		cmocka_unit_test(test_sockaddr_match), cmocka_unit_test(test_cap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
