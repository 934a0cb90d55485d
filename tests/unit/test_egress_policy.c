#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "sandbox/egress/egress_policy.h"

static egp_policy *mk(const char *const *allow, const char *const *deny)
{
	egp_policy *p = egp_new();
	char err[128];
	assert_non_null(p);
	for (; allow && *allow; allow++)
		assert_int_equal(egp_allow(p, *allow, err, sizeof err), 0);
	for (; deny && *deny; deny++)
		assert_int_equal(egp_deny(p, *deny, err, sizeof err), 0);
	return p;
}

static struct egp_decision host(const egp_policy *p, const char *h, uint16_t port)
{
	struct egp_decision d;
	struct egp_addr ip;
	char norm[EGP_MAX_HOST + 1];
	assert_int_equal(egp_check_host(p, h, strlen(h), port, norm, sizeof norm, &ip, &d), 0);
	assert_int_equal(d.stage, EGP_STAGE_NAME);
	return d;
}

static struct egp_decision addr(const egp_policy *p, const char *a, uint16_t port)
{
	struct egp_decision d;
	struct egp_addr ip;
	assert_int_equal(egp_parse_ip(a, strlen(a), &ip), 0);
	assert_int_equal(egp_check_addr(p, "x", &ip, port, &d), 0);
	assert_int_equal(d.stage, EGP_STAGE_ADDR);
	return d;
}

static void test_empty_allowlist_is_no_network(void **st)
{
	egp_policy *p = mk(NULL, NULL);
	struct egp_decision d = host(p, "example.com", 443);
	(void)st;
	assert_false(d.allow);
	assert_string_equal(d.reason, "no-network");
	assert_non_null(strstr(d.rule, "empty allowlist"));
	egp_free(p);
}

static void test_exact_and_case_and_trailing_dot(void **st)
{
	static const char *const allow[] = { "Example.COM", NULL };
	egp_policy *p = mk(allow, NULL);
	struct egp_decision d;
	(void)st;
	d = host(p, "example.com", 443);
	assert_true(d.allow);
	assert_string_equal(d.rule, "allow Example.COM");
	assert_true(host(p, "EXAMPLE.com.", 443).allow);
	assert_false(host(p, "example.com..", 443).allow);
	d = host(p, "example.com.evil", 443);
	assert_false(d.allow);
	assert_string_equal(d.reason, "blocked-by-allowlist");
	assert_false(host(p, "www.example.com", 443).allow);
	assert_false(host(p, "notexample.com", 443).allow);
	assert_false(host(p, "xexample.com", 443).allow);
	egp_free(p);
}

static void test_wildcard_excludes_apex(void **st)
{
	static const char *const allow[] = { "*.example.com", NULL };
	egp_policy *p = mk(allow, NULL);
	(void)st;
	assert_true(host(p, "a.example.com", 80).allow);
	assert_true(host(p, "a.b.EXAMPLE.com.", 80).allow);
	assert_false(host(p, "example.com", 80).allow);
	assert_false(host(p, ".example.com", 80).allow);
	assert_false(host(p, "aexample.com", 80).allow);
	assert_false(host(p, "a.example.com.evil", 80).allow);
	assert_false(host(p, "example.com.a.example.org", 80).allow);
	egp_free(p);
}

static void test_deny_first(void **st)
{
	static const char *const allow[] = { "*.example.com", "*", NULL };
	static const char *const deny[] = { "bad.example.com", "*.evil.org", NULL };
	egp_policy *p = mk(allow, deny);
	struct egp_decision d;
	(void)st;
	d = host(p, "bad.example.com", 443);
	assert_false(d.allow);
	assert_string_equal(d.reason, "blocked-by-denylist");
	assert_string_equal(d.rule, "deny bad.example.com");
	d = host(p, "x.evil.org", 443);
	assert_string_equal(d.rule, "deny *.evil.org");
	d = host(p, "evil.org", 443);
	assert_true(d.allow);
	assert_string_equal(d.rule, "allow *");
	egp_free(p);
}

static void test_ports(void **st)
{
	static const char *const allow[] = { "example.com:443", "[::1]:8080", "10.0.0.0/8:22", NULL };
	egp_policy *p = mk(allow, NULL);
	(void)st;
	assert_true(host(p, "example.com", 443).allow);
	assert_false(host(p, "example.com", 80).allow);
	assert_true(host(p, "[::1]", 8080).allow);
	assert_false(host(p, "::1", 8081).allow);
	assert_true(host(p, "10.1.2.3", 22).allow);
	assert_false(host(p, "10.1.2.3", 23).allow);
	assert_true(addr(p, "10.9.9.9", 22).allow);
	assert_false(addr(p, "10.9.9.9", 80).allow);
	egp_free(p);
}

static void test_ip_literals_refused_unless_allowed(void **st)
{
	static const char *const allow[] = { "*", "*.example.com", NULL };
	static const char *const lits[] = { "127.0.0.1", "2130706433", "0x7f000001", "0177.0.0.1", "0x7f.1",
					    "127.1", "::1", "[::1]", "::ffff:127.0.0.1", "[::ffff:7f00:1]",
					    "169.254.169.254", "[fd00:ec2::254]", "1.2.3.4", "017700000001", NULL };
	egp_policy *p = mk(allow, NULL);
	(void)st;
	for (const char *const *l = lits; *l; l++) {
		struct egp_decision d = host(p, *l, 80);
		if (d.allow)
			fail_msg("IP literal %s allowed by %s", *l, d.rule);
		assert_string_equal(d.reason, "ip-literal-not-allowed");
	}
	egp_free(p);
}

static void test_ip_literal_normalised(void **st)
{
	static const char *const allow[] = { "127.0.0.1", NULL };
	egp_policy *p = mk(allow, NULL);
	struct egp_decision d;
	struct egp_addr ip;
	char norm[EGP_MAX_HOST + 1];
	(void)st;
	assert_int_equal(egp_check_host(p, "2130706433", 10, 80, norm, sizeof norm, &ip, &d), 0);
	assert_true(d.allow);
	assert_string_equal(norm, "127.0.0.1");
	assert_int_equal(ip.family, AF_INET);
	assert_int_equal(egp_check_host(p, "[::ffff:127.0.0.1]", 18, 80, norm, sizeof norm, &ip, &d), 0);
	assert_true(d.allow);
	assert_string_equal(norm, "127.0.0.1");
	assert_true(addr(p, "127.0.0.1", 80).allow);
	assert_false(addr(p, "127.0.0.2", 80).allow);
	egp_free(p);
}

static void test_invalid_hosts(void **st)
{
	static const char *const allow[] = { "*", NULL };
	static const char *const bad[] = { "", ".", "a..b", "-a.com", "a-.com", "a b.com", "a/b", "a%2e.com",
					   "1.2.3.4.5", "1.2.3.099", "256.0.0.1", "1.2.3.08", "[1.2.3.4]", "host:80",
					   "fe80::1%eth0", "é.com", "4294967296", "[::1", NULL };
	egp_policy *p = mk(allow, NULL);
	char longname[300];
	(void)st;
	for (const char *const *b = bad; *b; b++) {
		struct egp_decision d = host(p, *b, 80);
		if (d.allow)
			fail_msg("invalid host '%s' allowed", *b);
		if (strcmp(d.reason, "invalid-host") != 0)
			fail_msg("host '%s': reason %s", *b, d.reason);
	}
	memset(longname, 'a', sizeof longname - 1);
	longname[sizeof longname - 1] = 0;
	assert_string_equal(host(p, longname, 80).reason, "invalid-host");
	/* NUL inside the requested name must not truncate it to an allowed one. */
	{
		struct egp_decision d;
		struct egp_addr ip;
		char norm[EGP_MAX_HOST + 1];
		assert_int_equal(egp_check_host(p, "ok.com\0evil", 11, 80, norm, sizeof norm, &ip, &d), 0);
		assert_false(d.allow);
	}
	egp_free(p);
}

static void test_reserved_invalid_tld(void **st)
{
	static const char *const allow[] = { "*", NULL };
	egp_policy *p = mk(allow, NULL);
	struct egp_decision d = host(p, "foo.INVALID.", 443);
	(void)st;
	assert_false(d.allow);
	assert_string_equal(d.reason, "reserved-name");
	egp_free(p);
}

static void test_resolved_addresses(void **st)
{
	static const char *const allow[] = { "*", NULL };
	static const struct {
		const char *a, *what;
	} blocked[] = {
		{ "127.0.0.1", "loopback" },	{ "127.255.0.9", "loopback" },	 { "::1", "loopback" },
		{ "::ffff:127.0.0.1", "loopback" }, { "0.0.0.0", "unspecified" }, { "::", "unspecified" },
		{ "169.254.169.254", "metadata" }, { "fd00:ec2::254", "metadata" }, { "169.254.1.1", "link-local" },
		{ "fe80::1", "link-local" },	{ "10.1.1.1", "private" },	 { "172.16.0.1", "private" },
		{ "172.31.255.255", "private" }, { "192.168.1.1", "private" },	 { "100.64.0.1", "private" },
		{ "fd12::1", "private" },	{ "224.0.0.1", "multicast" },	 { "ff02::1", "multicast" },
		{ "255.255.255.255", "reserved" }, { "64:ff9b::7f00:1", "loopback" }, { "2002:a9fe:a9fe::1", "metadata" },
	};
	egp_policy *p = mk(allow, NULL);
	(void)st;
	for (size_t i = 0; i < sizeof blocked / sizeof blocked[0]; i++) {
		struct egp_decision d = addr(p, blocked[i].a, 443);
		if (d.allow)
			fail_msg("%s allowed", blocked[i].a);
		assert_string_equal(d.reason, "blocked-resolved-address");
		if (!strstr(d.rule, blocked[i].what))
			fail_msg("%s: rule '%s' does not name %s", blocked[i].a, d.rule, blocked[i].what);
	}
	assert_true(addr(p, "93.184.216.34", 443).allow);
	assert_true(addr(p, "172.32.0.1", 443).allow);
	assert_true(addr(p, "2606:4700::1", 443).allow);
	egp_free(p);
}

static void test_explicit_addr_allow_and_deny(void **st)
{
	static const char *const allow[] = { "*", "127.0.0.0/8", "fd00::/8", NULL };
	static const char *const deny[] = { "93.184.216.0/24", NULL };
	egp_policy *p = mk(allow, deny);
	struct egp_decision d;
	(void)st;
	d = addr(p, "127.0.0.1", 80);
	assert_true(d.allow);
	assert_non_null(strstr(d.rule, "allow 127.0.0.0/8"));
	assert_true(addr(p, "::ffff:127.0.0.5", 80).allow);
	assert_true(addr(p, "fd00:ec2::254", 80).allow);
	assert_false(addr(p, "::1", 80).allow);
	d = addr(p, "93.184.216.34", 80);
	assert_false(d.allow);
	assert_string_equal(d.reason, "blocked-by-denylist");
	egp_free(p);
}

static void test_own_interface(void **st)
{
	static const char *const allow[] = { "*", NULL };
	egp_policy *p = mk(allow, NULL);
	struct egp_addr a;
	struct egp_decision d;
	(void)st;
	assert_int_equal(egp_parse_ip("203.0.113.7", 11, &a), 0);
	assert_int_equal(egp_add_local_addr(p, &a), 0);
	d = addr(p, "203.0.113.7", 80);
	assert_false(d.allow);
	assert_non_null(strstr(d.rule, "own-interface"));
	assert_true(addr(p, "203.0.113.8", 80).allow);
	egp_free(p);
}

static void test_bad_patterns(void **st)
{
	static const char *const bad[] = { "", "http://example.com", "a.*.com", "*example.com", "*.", "ex ample.com",
					   "example.com:0", "example.com:99999", "example.com:x", "10.0.0.0/33",
					   "[::1", "[::1]x", "[1.2.3.4]", "::1/129", NULL };
	egp_policy *p = egp_new();
	char err[128];
	(void)st;
	for (const char *const *b = bad; *b; b++) {
		err[0] = 0;
		if (egp_allow(p, *b, err, sizeof err) != -EINVAL)
			fail_msg("pattern '%s' accepted", *b);
		assert_true(err[0] != 0);
	}
	assert_int_equal(egp_allow_count(p), 0);
	egp_free(p);
}

static void test_sockaddr_fold(void **st)
{
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6 };
	struct egp_addr a;
	char buf[64];
	(void)st;
	inet_pton(AF_INET6, "::ffff:10.0.0.1", &s6.sin6_addr);
	assert_int_equal(egp_addr_from_sockaddr((struct sockaddr *)&s6, &a), 0);
	assert_int_equal(a.family, AF_INET);
	assert_string_equal(egp_addr_str(&a, buf, sizeof buf), "10.0.0.1");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty_allowlist_is_no_network),
		cmocka_unit_test(test_exact_and_case_and_trailing_dot),
		cmocka_unit_test(test_wildcard_excludes_apex),
		cmocka_unit_test(test_deny_first),
		cmocka_unit_test(test_ports),
		cmocka_unit_test(test_ip_literals_refused_unless_allowed),
		cmocka_unit_test(test_ip_literal_normalised),
		cmocka_unit_test(test_invalid_hosts),
		cmocka_unit_test(test_reserved_invalid_tld),
		cmocka_unit_test(test_resolved_addresses),
		cmocka_unit_test(test_explicit_addr_allow_and_deny),
		cmocka_unit_test(test_own_interface),
		cmocka_unit_test(test_bad_patterns),
		cmocka_unit_test(test_sockaddr_fold),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
