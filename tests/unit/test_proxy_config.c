#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/cfg.h"
#include "core/log.h"
#include "core/optmap.h"
#include "proxy/proxy.h"
#include "proxy/route.h"
#include "sandbox/mcp/sandbox_serve_opts.h"

static void test_route_values(void **st)
{
	route r;
	char why[160];
	(void)st;
	memset(&r, 0, sizeof r);
	assert_int_equal(route_parse_value("http://docs-mcp.internal:8080", &r, why, sizeof why), 0);
	assert_int_equal(r.kind, ROUTE_HTTP);
	assert_string_equal(r.host, "docs-mcp.internal");
	assert_int_equal(r.port, 8080);
	free(r.host);
	free(r.value);
	assert_int_equal(route_parse_value("https://10.0.0.5:443", &r, why, sizeof why), 0);
	assert_int_equal(r.kind, ROUTE_HTTPS);
	assert_string_equal(r.host, "10.0.0.5");
	free(r.host);
	free(r.value);

	static const char *const bad[] = {
		"http://host:8080/mcp", "http://host:8080/", "http://host", "http://host:", "http://host:0",
		"http://host:65536", "http://host:80?x", "http://u@host:80", "ftp://host:21", "host:80",
		"http://:80", "http://[::1]:80", "http://ho st:80", "http://host:8o", "", "stdio:",
		"stdio:relative/cmd", "sandbox:memory=1G", "http://host..x:80",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		memset(&r, 0, sizeof r);
		assert_int_equal(route_parse_value(bad[i], &r, why, sizeof why), -EINVAL);
		assert_null(r.host);
		assert_null(r.argv);
	}

	/* stdio: splits the command on blanks; sandbox: alone means all defaults */
	memset(&r, 0, sizeof r);
	assert_int_equal(route_parse_value("stdio:/usr/bin/srv  --port 0", &r, why, sizeof why), 0);
	assert_int_equal(r.kind, ROUTE_STDIO);
	assert_string_equal(r.argv[0], "/usr/bin/srv");
	assert_string_equal(r.argv[1], "--port");
	assert_string_equal(r.argv[2], "0");
	assert_null(r.argv[3]);
	assert_true(route_is_mcp(&r));
	route_free_fields(&r);
	memset(&r, 0, sizeof r);
	assert_int_equal(route_parse_value("sandbox:", &r, why, sizeof why), 0);
	assert_int_equal(r.kind, ROUTE_SANDBOX);
	assert_null(r.argv);
	route_free_fields(&r);
}

static void test_host_normalize(void **st)
{
	char out[256];
	(void)st;
	assert_int_equal(route_host_normalize("Docs.Example.COM", 16, out, sizeof out), 0);
	assert_string_equal(out, "docs.example.com");
	assert_int_equal(route_host_normalize("docs.example.com.:443", 21, out, sizeof out), 0);
	assert_string_equal(out, "docs.example.com");
	assert_int_equal(route_host_normalize(" a:1 ", 5, out, sizeof out), 0);
	assert_string_equal(out, "a");
	assert_int_equal(route_host_normalize("[::1]:443", 9, out, sizeof out), 0);
	assert_string_equal(out, "::1");
	assert_int_equal(route_host_normalize("", 0, out, sizeof out), -EINVAL);
	assert_int_equal(route_host_normalize("a:", 2, out, sizeof out), -EINVAL);
	assert_int_equal(route_host_normalize("a:b", 3, out, sizeof out), -EINVAL);
	assert_int_equal(route_host_normalize("a/b", 3, out, sizeof out), -EINVAL);
	assert_int_equal(route_host_normalize("a b", 3, out, sizeof out), -EINVAL);
	assert_int_equal(route_host_normalize("[::1", 4, out, sizeof out), -EINVAL);
	assert_int_equal(route_host_normalize("abcdef", 6, out, 4), -EINVAL);
}

static void test_lookup(void **st)
{
	route_table t;
	route r = { .kind = ROUTE_HTTP, .host = "h", .port = 80, .value = "http://h:80" };
	(void)st;
	route_table_init(&t);
	assert_int_equal(route_table_add(&t, "docs", &r), 0);
	assert_int_equal(route_table_add(&t, "Wiki.Corp.Example", &r), 0);
	assert_int_equal(route_table_add(&t, "DOCS", &r), -EEXIST);
	assert_int_equal(route_table_add(&t, "bad name", &r), -EINVAL);
	assert_int_equal(route_table_add(&t, "a.b", &r), 0);

	assert_ptr_equal(route_lookup(&t, "abcd.tunnel.example", "docs.abcd.tunnel.example"), &t.v[0]);
	assert_ptr_equal(route_lookup(&t, "abcd.tunnel.example", "docs"), &t.v[0]);
	/* exact full host name first */
	assert_ptr_equal(route_lookup(&t, "abcd.tunnel.example", "wiki.corp.example"), &t.v[1]);
	/* the remaining subdomain may have dots when a route is named so */
	assert_ptr_equal(route_lookup(&t, "abcd.tunnel.example", "a.b.abcd.tunnel.example"), &t.v[2]);
	assert_null(route_lookup(&t, "abcd.tunnel.example", "x.docs.abcd.tunnel.example"));
	assert_null(route_lookup(&t, "abcd.tunnel.example", "docs.other.example"));
	assert_null(route_lookup(&t, "abcd.tunnel.example", "docsabcd.tunnel.example"));
	assert_null(route_lookup(&t, "abcd.tunnel.example", "abcd.tunnel.example"));
	assert_null(route_lookup(&t, NULL, "docs.abcd.tunnel.example"));
	assert_null(route_lookup(&t, "abcd.tunnel.example", ".abcd.tunnel.example"));
	route_table_free(&t);
}

static int load(const char *yaml, px_config **out, char *err, size_t errlen)
{
	char lerr[256];
	cfg_doc *d = cfg_load_string("gw.yaml", yaml, strlen(yaml), lerr, sizeof lerr);
	int rc;
	assert_non_null(d);
	rc = cfg_check_keys(d, cfg_root(d), "the proxy config", px_config_keys);
	if (rc == 0)
		rc = px_config_load(d, cfg_root(d), out);
	snprintf(err, errlen, "%s", cfg_error(d) ? cfg_error(d) : "");
	cfg_free(d);
	return rc;
}

static void test_config_ok(void **st)
{
	px_config *c = NULL;
	char err[512];
	const char *y = "listen_addr: \":8080\"\n"
			"log_level: debug\n"
			"shutdown_timeout: 5s\n"
			"tunnel_domain: ABCD.tunnel.example\n"
			"tls:\n  cert_file: /data/tls.crt\n  key_file: /data/tls.key\n"
			"routes:\n  docs: http://docs-mcp.internal:8080\n  wiki: https://wiki:443\n"
			"upstream:\n  allowed_ips: [10.0.0.0/8, 127.0.0.1/32]\n  tls:\n    ca_file: /ca.pem\n";
	(void)st;
	assert_int_equal(load(y, &c, err, sizeof err), 0);
	assert_non_null(c);
	assert_string_equal(c->listen_addr, ":8080");
	assert_int_equal(c->log_level, LOG_DEBUG);
	assert_int_equal(c->shutdown_timeout_ms, 5000);
	assert_string_equal(c->tunnel_domain, "abcd.tunnel.example");
	assert_string_equal(c->cert_file, "/data/tls.crt");
	assert_int_equal(c->routes.n, 2);
	assert_int_equal(c->routes.v[1].kind, ROUTE_HTTPS);
	assert_string_equal(c->upstream_ca_file, "/ca.pem");
	/* allowed_ips replaces the RFC 1918 default */
	assert_true(na_cidrs_match_str(&c->allowed_ips, "127.0.0.1"));
	assert_false(na_cidrs_match_str(&c->allowed_ips, "192.168.1.1"));
	px_config_free(c);

	/* defaults */
	assert_int_equal(load("tls: {cert_file: a, key_file: b}\nroutes: {x: \"http://x:1\"}\n", &c, err, sizeof err), 0);
	assert_int_equal(c->shutdown_timeout_ms, 30000);
	assert_int_equal(c->log_level, -1);
	assert_null(c->listen_addr);
	assert_true(na_cidrs_match_str(&c->allowed_ips, "172.20.0.1"));
	assert_false(na_cidrs_match_str(&c->allowed_ips, "127.0.0.1"));
	assert_false(c->disable_ip_validation);
	px_config_free(c);
}

struct bad_case {
	const char *yaml, *want;
};

static void test_config_errors(void **st)
{
	static const char *const base = "tls:\n  cert_file: a\n  key_file: b\n";
	static const struct bad_case cases[] = {
		{ "routes:\n  docs: http://docs:8080/mcp\n", "gw.yaml:5: docs: invalid upstream (must be scheme://host:port)" },
		{ "routes:\n  ok: http://a:1\n  docs: docs:8080\n", "gw.yaml:6: docs: invalid upstream (must be scheme://host:port)" },
		{ "routes:\n  - docs: http://docs:8080\n", "gw.yaml:4: routes: must be a mapping of route name to scheme://host:port" },
		{ "routes:\n  docs: {url: x}\n", "gw.yaml:5: url: invalid upstream (must be scheme://host:port): 'x': scheme must be http or https" },
		{ "routes: {}\n", "gw.yaml:4: routes: is empty" },
		{ "", "routes: missing" },
		{ "routes: {a: \"http://a:1\"}\nrouts: {}\n", "gw.yaml:5: unknown key 'routs'" },
		{ "routes: {a: \"http://a:1\"}\nupstream:\n  allowed_ips: [10.0.0.0/8, banana]\n",
		  "gw.yaml:6: upstream.allowed_ips: 'banana' is not a CIDR" },
		{ "routes: {a: \"http://a:1\"}\nupstream:\n  allowed_ips: 10.0.0.0/8\n", "gw.yaml:6: allowed_ips: must be a list" },
		{ "routes: {a: \"http://a:1\"}\nupstream:\n  allowed_ips: [10.0.0.0/8]\n  disable_ip_validation: true\n",
		  "gw.yaml:7: disable_ip_validation: cannot be used together with allowed_ips" },
		{ "routes: {a: \"http://a:1\"}\nupstream:\n  tls: {ca: x}\n", "unknown key 'ca' in upstream.tls" },
		{ "routes: {a: \"http://a:1\"}\nupstream:\n  bogus: 1\n", "gw.yaml:6: unknown key 'bogus' in upstream" },
		{ "routes: {a: \"http://a:1\"}\nlog_level: loud\n", "gw.yaml:5: log_level: 'loud' is not one of" },
		{ "routes: {a: \"http://a:1\"}\nshutdown_timeout: soon\n", "gw.yaml:5: shutdown_timeout: 'soon' is not a duration" },
		{ "routes: {a: \"http://a:1\"}\nlisten_addr: localhost:80\n", "gw.yaml:5: listen_addr: 'localhost:80' is not an address" },
		{ "routes: {\"bad name\": \"http://a:1\"}\n", "gw.yaml:4: bad name: invalid route name" },
		{ "routes: {a: \"http://a:1\", A: \"http://b:1\"}\n", "gw.yaml:4: A: duplicate route name" },
		{ "routes: {a: \"stdio:\"}\n", "gw.yaml:4: a: invalid upstream (must be scheme://host:port): 'stdio:': stdio: needs the absolute path" },
	};
	char y[1024], err[512];
	px_config *c = NULL;
	(void)st;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(y, sizeof y, "%s%s", base, cases[i].yaml);
		assert_int_equal(load(y, &c, err, sizeof err), -EINVAL);
		assert_null(c);
		if (!strstr(err, cases[i].want)) {
			fprintf(stderr, "case %zu: got '%s', want '%s'\n", i, err, cases[i].want);
			fail();
		}
	}
	assert_int_equal(load("routes: {a: \"http://a:1\"}\n", &c, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "tls: missing"));
	assert_int_equal(load("tls: {cert_file: a}\nroutes: {a: \"http://a:1\"}\n", &c, err, sizeof err), -EINVAL);
	assert_non_null(strstr(err, "gw.yaml:1: tls: needs both cert_file and key_file"));
}

/* A route's sandbox: options reach `sandbox serve` unparsed as --option KEY=VALUE; the sandbox's checker
 * (registered as main.c does) alone knows the keys and names file, line and key. */
static void test_sandbox_route_options(void **st)
{
	static const char *const base = "tls: {cert_file: a, key_file: b}\nroutes:\n  box:\n    sandbox:\n";
	static const struct bad_case cases[] = {
		{ "      disk: 1M\n", "gw.yaml:5: disk: '1M' is not a size from 16M to 16T (e.g. 10G)" },
		{ "      memory: 1G\n      memroy: 1G\n", "gw.yaml:6: unknown key 'memroy' in sandbox" },
		{ "      allow_domains: a.com\n", "gw.yaml:5: allow_domains: expected a list" },
		{ "      memory: {a: 1}\n", "gw.yaml:5: memory: expected a single value, not a list or mapping" },
		{ "      pids: 0\n", "gw.yaml:5: pids: --pids 0: expected 1..1000000" },
		{ "      workspace_root: rel\n", "gw.yaml:5: workspace_root: must be an absolute directory path" },
	};
	const char *y = "tls: {cert_file: a, key_file: b}\nroutes:\n  box:\n    sandbox:\n      memory: 512M\n"
			"      workspace_root: /tmp\n      allow_domains: [a.com, \"*.b.com\"]\n      no_cgroup: true\n";
	static const char *const want[] = { "--option", "memory=512M", "--option", "allow_domains=a.com",
					    "--option", "allow_domains=*.b.com", "--option", "no_cgroup=true", NULL };
	char yy[512], err[512], *argv[16] = { "serve", "--stdio" };
	px_config *c = NULL;
	struct ssv_opts o;
	size_t n = 2;
	(void)st;
	optmap_set_checker("sandbox", ssv_opts_check);
	assert_int_equal(load(y, &c, err, sizeof err), 0);
	assert_string_equal(c->routes.v[0].workspace_root, "/tmp");
	for (size_t i = 0; want[i]; i++) {
		assert_non_null(c->routes.v[0].argv[i]);
		assert_string_equal(c->routes.v[0].argv[i], want[i]);
		argv[n++] = c->routes.v[0].argv[i];
	}
	assert_null(c->routes.v[0].argv[8]);
	assert_int_equal(ssv_opts_parse((int)n, argv, &o, err, sizeof err), 0);
	assert_int_equal(o.memory_bytes, 512u << 20);
	assert_int_equal(o.n_allow, 2);
	assert_true(o.no_cgroup);
	px_config_free(c);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(yy, sizeof yy, "%s%s", base, cases[i].yaml);
		c = NULL;
		assert_int_equal(load(yy, &c, err, sizeof err), -EINVAL);
		if (!strstr(err, cases[i].want)) {
			fprintf(stderr, "case %zu: got '%s', want '%s'\n", i, err, cases[i].want);
			fail();
		}
	}
	optmap_set_checker("sandbox", NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_route_values), cmocka_unit_test(test_host_normalize),
		cmocka_unit_test(test_lookup),       cmocka_unit_test(test_config_ok),
		cmocka_unit_test(test_config_errors), cmocka_unit_test(test_sandbox_route_options),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
