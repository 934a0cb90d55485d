/* guard/audit and guard/trace: line fields, the chain across rotated files, resume after a crash, the
 * verifier naming the first removed, inserted or edited line, `postern audit verify` exit codes; W3C
 * traceparent parse and generate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "guard/audit.h"
#include "guard/trace.h"

#define NLINES 8

static char *lines[NLINES];
static size_t lens[NLINES];

static void make_lines(void)
{
	aud_chain *c;
	json_t *args = json_pack("{s:s}", "path", "/srv/a");
	assert_int_equal(aud_chain_new(&c), 0);
	assert_string_equal(aud_chain_prev(c), AUD_GENESIS);
	for (int i = 0; i < NLINES; i++) {
		aud_rec r = { .ts_us = 1767225600123456LL + i, .dir = "in", .route = "files", .method = "tools/call",
			      .id = i % 2 ? "\"x\"" : "7", .tool = "read_file", .decision = "allow", .rule = "default",
			      .args = args, .status = "ok", .latency_us = -1, .bytes_in = 10, .bytes_out = 20 };
		assert_int_equal(aud_line(c, &r, &lines[i], &lens[i]), 0);
		assert_int_equal(aud_chain_seq(c), (uint64_t)i + 1);
	}
	aud_chain_free(c);
	json_decref(args);
}

static void free_lines(void)
{
	for (int i = 0; i < NLINES; i++)
		free(lines[i]);
}

static void test_line_fields(void **st)
{
	aud_chain *c;
	char *l;
	size_t n;
	aud_rec r = { .ts_us = 1767225600123456LL, .dir = "out", .trace_id = "0af7651916cd43dd8448eb211c80319c",
		      .span_id = "00f067aa0ba902b7", .route = "files", .client = "ops-1", .client_addr = "10.0.0.9:5",
		      .session = "s1", .protocol = "2025-11-25", .method = "tools/call", .id = "\"q\"",
		      .tool = "move_file", .tool_hash = "ab", .decision = "approve", .rule = "rules[1]",
		      .approval = "approved", .approver = "alice", .status = "error", .has_rpc_code = true,
		      .rpc_code = -32001, .http_status = 200, .latency_us = 1500, .bytes_in = 1, .bytes_out = 2 };
	(void)st;
	assert_int_equal(aud_chain_new(&c), 0);
	assert_int_equal(aud_line(c, &r, &l, &n), 0);
	assert_int_equal(n, strlen(l));
	assert_string_equal(l, "{\"prev\":\"" AUD_GENESIS "\",\"seq\":0,\"ts\":\"2026-01-01T00:00:00.123456Z\","
			       "\"dir\":\"out\",\"trace_id\":\"0af7651916cd43dd8448eb211c80319c\",\"span_id\":"
			       "\"00f067aa0ba902b7\",\"route\":\"files\",\"client\":\"ops-1\",\"client_addr\":"
			       "\"10.0.0.9:5\",\"session\":\"s1\",\"protocol\":\"2025-11-25\",\"method\":\"tools/call\","
			       "\"id\":\"q\",\"tool\":\"move_file\",\"tool_hash\":\"ab\",\"decision\":\"approve\","
			       "\"rule\":\"rules[1]\",\"approval\":\"approved\",\"approver\":\"alice\",\"status\":\"error\","
			       "\"rpc_code\":-32001,\"http_status\":200,\"latency_us\":1500,\"bytes_in\":1,\"bytes_out\":2}\n");
	free(l);
	r.id = "1,2";
	assert_int_equal(aud_line(c, &r, &l, &n), -EINVAL);
	assert_int_equal(aud_chain_seq(c), 1);
	aud_chain_free(c);
}

/* The line writer writes what jansson's json_dumps(JSON_COMPACT) of the same object wrote before it (lines
 * from older versions and new ones read alike): every control character, quotes, backslash, slash, DEL,
 * UTF-8 of 2, 3 and 4 bytes, nested arguments, negative and large numbers; text that is not UTF-8 is refused
 * as the object builder refused it, and the chain does not advance. */
static void test_line_matches_jansson(void **st)
{
	char ctl[64], tool[128];
	json_t *args = json_pack("{s:s,s:[i,f,b,n],s:{s:s}}", "path", "/srv/\"a\"\\b", "v", -3, 2.5, 1, "o", "k",
				 "\xe2\x82\xac \xf0\x9f\x98\x80 \x7f \x01");
	aud_chain *c;
	(void)st;
	for (int i = 1; i < 32; i++)
		ctl[i - 1] = (char)i;
	ctl[31] = 0;
	snprintf(tool, sizeof tool, "t\"o\\o/l \xc3\xa9 %s end", ctl);
	assert_int_equal(aud_chain_new(&c), 0);
	for (int round = 0; round < 2; round++) {
		aud_rec r = { .ts_us = 1767225600000001LL, .dir = "in", .trace_id = ctl, .route = "r/\x7f",
			      .client = "\xe2\x82\xac", .method = "tools/call", .id = round ? "\"a\\u0001b\"" : "-9",
			      .tool = tool, .rule = "rules[0]", .args = round ? args : NULL, .status = "ok",
			      .has_rpc_code = round, .rpc_code = INT64_MIN, .http_status = 502,
			      .latency_us = round ? 0 : -1, .bytes_in = UINT64_MAX / 2, .bytes_out = 0 };
		char prev[AUD_HEX_LEN + 1], *l, *want;
		size_t n;
		json_t *o = json_object();
		snprintf(prev, sizeof prev, "%s", aud_chain_prev(c));
		json_object_set_new(o, "prev", json_string(prev));
		json_object_set_new(o, "seq", json_integer((json_int_t)aud_chain_seq(c)));
		json_object_set_new(o, "ts", json_string("2026-01-01T00:00:00.000001Z"));
		json_object_set_new(o, "dir", json_string(r.dir));
		json_object_set_new(o, "trace_id", json_string(r.trace_id));
		json_object_set_new(o, "route", json_string(r.route));
		json_object_set_new(o, "client", json_string(r.client));
		json_object_set_new(o, "method", json_string(r.method));
		json_object_set_new(o, "id", json_loads(r.id, JSON_DECODE_ANY, NULL));
		json_object_set_new(o, "tool", json_string(r.tool));
		json_object_set_new(o, "rule", json_string(r.rule));
		if (round)
			json_object_set(o, "args", args);
		json_object_set_new(o, "status", json_string(r.status));
		if (round)
			json_object_set_new(o, "rpc_code", json_integer(INT64_MIN));
		json_object_set_new(o, "http_status", json_integer(502));
		if (round)
			json_object_set_new(o, "latency_us", json_integer(0));
		json_object_set_new(o, "bytes_in", json_integer((json_int_t)(UINT64_MAX / 2)));
		json_object_set_new(o, "bytes_out", json_integer(0));
		assert_non_null(want = json_dumps(o, JSON_COMPACT));
		assert_int_equal(aud_line(c, &r, &l, &n), 0);
		assert_int_equal(n, strlen(want) + 1);
		assert_memory_equal(l, want, n - 1);
		assert_int_equal(l[n - 1], '\n');
		free(l);
		free(want);
		json_decref(o);
	}
	{
		/* a string whose worst-case escaping would pass the line's cap is written run by run */
		size_t big = AUD_MAX_LINE / 4;
		char *t = malloc(big + 1), *l, *want;
		size_t n;
		aud_rec r = { .ts_us = 1767225600000001LL, .dir = "in", .latency_us = -1 };
		json_t *o = json_object();
		memset(t, 'a', big);
		t[7] = '"', t[big - 3] = '\n', t[big] = 0;
		r.tool = t;
		json_object_set_new(o, "prev", json_string(aud_chain_prev(c)));
		json_object_set_new(o, "seq", json_integer((json_int_t)aud_chain_seq(c)));
		json_object_set_new(o, "ts", json_string("2026-01-01T00:00:00.000001Z"));
		json_object_set_new(o, "dir", json_string("in"));
		json_object_set_new(o, "tool", json_string(t));
		json_object_set_new(o, "bytes_in", json_integer(0));
		json_object_set_new(o, "bytes_out", json_integer(0));
		assert_non_null(want = json_dumps(o, JSON_COMPACT));
		assert_int_equal(aud_line(c, &r, &l, &n), 0);
		assert_int_equal(n, strlen(want) + 1);
		assert_memory_equal(l, want, n - 1);
		free(l);
		free(want);
		free(t);
		json_decref(o);
	}
	{
		aud_rec r = { .dir = "in", .tool = "bad \xc3 utf-8", .latency_us = -1 };
		char *l;
		uint64_t seq = aud_chain_seq(c);
		assert_int_equal(aud_line(c, &r, &l, NULL), -ENOMEM);
		assert_null(l);
		r.tool = "overlong \xc0\xaf";
		assert_int_equal(aud_line(c, &r, &l, NULL), -ENOMEM);
		assert_int_equal(aud_chain_seq(c), seq);
	}
	aud_chain_free(c);
	json_decref(args);
}

/* The timestamp is formatted by hand and an integer id is copied as it is: both must give the bytes
 * strftime and jansson gave. */
static char *field_of(const char *line, const char *key)
{
	json_t *o = json_loads(line, 0, NULL), *v;
	char *out;
	assert_non_null(o);
	v = json_object_get(o, key);
	out = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	json_decref(o);
	return out;
}

static void test_line_ts_and_id(void **st)
{
	static const int64_t fixed[] = { 0, 1, 68169599999999LL /* 1972-02-28T23:59:59, before a leap day */, 951782400000000LL,
					 951868799999999LL, 4107542400000000LL /* 2100-03-01 */, 1767225600123456LL,
					 253402300799999999LL /* 9999-12-31T23:59:59.999999 */ };
	static const char *const ids[] = { "0", "7", "-9", "123456789012345678", "-123456789012345678",
					   "1234567890123456789", "9223372036854775807", "-0", "1.5", "1e3",
					   "\"a\"", "\"\\u00e9\"", "null" };
	aud_chain *c;
	uint64_t x = 88172645463325252ULL;
	(void)st;
	assert_int_equal(aud_chain_new(&c), 0);
	for (int i = 0; i < 2000; i++) {
		int64_t us;
		char want[64], day[32], *l, *got;
		time_t s;
		struct tm tm;
		aud_rec r = { .dir = "in", .latency_us = -1 };
		if (i < (int)(sizeof fixed / sizeof fixed[0])) {
			us = fixed[i];
		} else {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			us = (int64_t)(x % 253402300800000000ULL);
		}
		r.ts_us = us;
		s = (time_t)(us / 1000000);
		assert_non_null(gmtime_r(&s, &tm));
		strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
		snprintf(want, sizeof want, "\"%s.%06lldZ\"", day, (long long)(us % 1000000));
		assert_int_equal(aud_line(c, &r, &l, NULL), 0);
		got = field_of(l, "ts");
		assert_string_equal(got, want);
		free(got);
		free(l);
	}
	for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
		aud_rec r = { .dir = "in", .id = ids[i], .latency_us = -1 };
		json_t *v = json_loads(ids[i], JSON_DECODE_ANY, NULL);
		char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY), *l, *got, *at;
		assert_int_equal(aud_line(c, &r, &l, NULL), 0);
		got = field_of(l, "id");
		assert_string_equal(got, want);
		/* and byte for byte in the line */
		assert_non_null(at = strstr(l, "\"id\":"));
		assert_memory_equal(at + 5, want, strlen(want));
		free(got);
		free(want);
		free(l);
		json_decref(v);
	}
	{
		aud_rec r = { .dir = "in", .id = "007", .latency_us = -1 };
		char *l;
		assert_int_equal(aud_line(c, &r, &l, NULL), -EINVAL);
		r.id = "-";
		assert_int_equal(aud_line(c, &r, &l, NULL), -EINVAL);
		r.id = "9999999999999999999"; /* past int64: jansson refuses it, so must the copy */
		assert_int_equal(aud_line(c, &r, &l, NULL), -EINVAL);
		r.id = "";
		assert_int_equal(aud_line(c, &r, &l, NULL), -EINVAL);
	}
	aud_chain_free(c);
}

static void test_resume(void **st)
{
	aud_chain *c;
	char tail[4096];
	size_t keep, len;
	(void)st;
	make_lines();
	len = (size_t)snprintf(tail, sizeof tail, "%s%s{\"prev\":\"cut", lines[0], lines[1]);
	assert_int_equal(aud_chain_new(&c), 0);
	assert_int_equal(aud_chain_resume(c, tail, len, &keep), 0);
	assert_int_equal(keep, lens[0] + lens[1]);
	assert_int_equal(aud_chain_seq(c), 2);
	/* the resumed chain writes what the unbroken one wrote */
	{
		aud_chain *d;
		char *l;
		json_t *args = json_pack("{s:s}", "path", "/srv/a");
		aud_rec r = { .ts_us = 1767225600123456LL + 2, .dir = "in", .route = "files", .method = "tools/call",
			      .id = "7", .tool = "read_file", .decision = "allow", .rule = "default",
			      .args = args, .status = "ok", .latency_us = -1, .bytes_in = 10, .bytes_out = 20 };
		assert_int_equal(aud_line(c, &r, &l, NULL), 0);
		assert_string_equal(l, lines[2]);
		free(l);
		json_decref(args);
		assert_int_equal(aud_chain_new(&d), 0);
		assert_int_equal(aud_chain_resume(d, "", 0, &keep), 0);
		assert_string_equal(aud_chain_prev(d), AUD_GENESIS);
		assert_int_equal(aud_chain_resume(d, "junk\n", 5, &keep), -EINVAL);
		aud_chain_free(d);
	}
	aud_chain_free(c);
	free_lines();
}

/* Verifies the lines given by index (-1 ends; -2 starts the next "file"); returns the report. */
static aud_report verify(const int *idx, bool partial, const char *edit_from, const char *edit_to)
{
	aud_verify *v;
	aud_report r;
	char name[16] = "a.jsonl";
	assert_int_equal(aud_verify_new(partial, &v), 0);
	for (; *idx != -1; idx++) {
		if (*idx == -2) {
			aud_verify_end_file(v);
			name[0]++;
			continue;
		}
		if (edit_from && strstr(lines[*idx], edit_from) && *idx == 3) {
			char buf[2048], *at;
			snprintf(buf, sizeof buf, "%s", lines[*idx]);
			at = strstr(buf, edit_from);
			memcpy(at, edit_to, strlen(edit_to));
			assert_int_equal(aud_verify_feed(v, name, buf, strlen(buf)), 0);
		} else {
			/* byte by byte for one line: chunking must not matter */
			if (*idx == 1)
				for (size_t k = 0; k < lens[1]; k++)
					assert_int_equal(aud_verify_feed(v, name, lines[1] + k, 1), 0);
			else
				assert_int_equal(aud_verify_feed(v, name, lines[*idx], lens[*idx]), 0);
		}
	}
	aud_verify_end_file(v);
	aud_verify_report(v, &r);
	aud_verify_free(v);
	return r;
}

static void test_verify(void **st)
{
	aud_report r;
	(void)st;
	make_lines();
	r = verify((int[]){ 0, 1, 2, 3, -2, 4, 5, 6, 7, -1 }, false, NULL, NULL); /* rotated: one chain */
	assert_true(r.ok);
	assert_int_equal(r.lines, 8);
	assert_true(r.from_genesis);
	assert_int_equal(r.last_seq, 7);
	r = verify((int[]){ 0, 1, 2, 4, 5, -1 }, false, NULL, NULL);
	assert_false(r.ok);
	assert_string_equal(r.file, "a.jsonl");
	assert_int_equal(r.line, 4);
	assert_string_equal(r.what, "removed: 1 record(s) missing before this line (seq 2 to 4)");
	r = verify((int[]){ 0, 1, 2, 3, -2, 5, 6, -1 }, false, NULL, NULL); /* the first line of a rotated file */
	assert_false(r.ok);
	assert_string_equal(r.file, "b.jsonl");
	assert_int_equal(r.line, 1);
	r = verify((int[]){ 0, 1, 2, 6, 3, 4, -1 }, false, NULL, NULL); /* a line from elsewhere inserted */
	assert_false(r.ok);
	assert_int_equal(r.line, 4);
	assert_non_null(strstr(r.what, "removed")); /* seq jumps 2 -> 6: what it looks like at that line */
	r = verify((int[]){ 0, 1, 2, 2, 3, 4, -1 }, false, NULL, NULL); /* a duplicated line */
	assert_false(r.ok);
	assert_int_equal(r.line, 3); /* line 4 follows line 2: line 3 is the extra one */
	assert_non_null(strstr(r.what, "inserted: this line is not in the chain (the next line, a.jsonl:4"));
	r = verify((int[]){ 0, 1, 2, 3, 4, 5, -1 }, false, "read_file", "READ_FILE");
	assert_false(r.ok);
	assert_int_equal(r.line, 4); /* the edited line, named from the next one */
	assert_non_null(strstr(r.what, "edited: this line does not hash to the prev of the next line (a.jsonl:5)"));
	r = verify((int[]){ 0, 1, 2, 3, -1 }, false, "read_file", "READ_FILE"); /* the last line: undetectable */
	assert_true(r.ok);
	r = verify((int[]){ 2, 3, 4, -1 }, false, NULL, NULL);
	assert_false(r.ok);
	assert_non_null(strstr(r.what, "starts at seq 2"));
	r = verify((int[]){ 2, 3, 4, -1 }, true, NULL, NULL);
	assert_true(r.ok);
	assert_false(r.from_genesis);
	assert_int_equal(r.first_seq, 2);
	r = verify((int[]){ 1, 2, -1 }, false, "\"seq\":1", "\"seq\":0");
	assert_false(r.ok);
	free_lines();
}

static void test_verify_forged_insert(void **st)
{
	aud_verify *v;
	aud_report r;
	char forged[512];
	(void)st;
	make_lines();
	/* a forged line that links to line 1 (prev = hash of line 1), inserted between lines 1 and 2 */
	{
		aud_chain *c;
		size_t keep;
		char *l;
		aud_rec rec = { .ts_us = 0, .dir = "in", .method = "tools/call", .tool = "evil", .latency_us = -1 };
		assert_int_equal(aud_chain_new(&c), 0);
		assert_int_equal(aud_chain_resume(c, lines[1], lens[1], &keep), 0);
		assert_int_equal(aud_line(c, &rec, &l, NULL), 0);
		snprintf(forged, sizeof forged, "%s", l);
		free(l);
		aud_chain_free(c);
	}
	assert_int_equal(aud_verify_new(false, &v), 0);
	aud_verify_feed(v, "f", lines[0], lens[0]);
	aud_verify_feed(v, "f", lines[1], lens[1]);
	aud_verify_feed(v, "f", forged, strlen(forged));
	aud_verify_feed(v, "f", lines[2], lens[2]);
	aud_verify_end_file(v);
	aud_verify_report(v, &r);
	assert_false(r.ok);
	assert_int_equal(r.line, 3);
	assert_non_null(strstr(r.what, "inserted: this line is not in the chain (the next line, f:4"));
	aud_verify_free(v);
	/* a cut last line */
	assert_int_equal(aud_verify_new(false, &v), 0);
	aud_verify_feed(v, "f", lines[0], lens[0]);
	aud_verify_feed(v, "f", lines[1], lens[1] - 5);
	aud_verify_end_file(v);
	aud_verify_report(v, &r);
	assert_false(r.ok);
	assert_int_equal(r.line, 2);
	assert_non_null(strstr(r.what, "incomplete"));
	aud_verify_free(v);
	free_lines();
}

static void test_command(void **st)
{
	char dir[] = "/tmp/test_audit.XXXXXX", a[64], b[64];
	FILE *f;
	(void)st;
	make_lines();
	assert_non_null(mkdtemp(dir));
	snprintf(a, sizeof a, "%s/audit.jsonl.1", dir);
	snprintf(b, sizeof b, "%s/audit.jsonl", dir);
	f = fopen(a, "w");
	for (int i = 0; i < 4; i++)
		fputs(lines[i], f);
	fclose(f);
	f = fopen(b, "w");
	for (int i = 4; i < NLINES; i++)
		if (i != 6)
			fputs(lines[i], f);
	fclose(f);
	assert_int_equal(audit_main(4, (char *[]){ "audit", "verify", a, b, NULL }), 1);
	assert_int_equal(audit_main(3, (char *[]){ "audit", "verify", a, NULL }), 0);
	assert_int_equal(audit_main(3, (char *[]){ "audit", "verify", b, NULL }), 1);
	assert_int_equal(audit_main(4, (char *[]){ "audit", "verify", "--partial", b, NULL }), 1); /* 6 missing */
	assert_int_equal(audit_main(3, (char *[]){ "audit", "verify", "/nonexistent/x", NULL }), 2);
	assert_int_equal(audit_main(2, (char *[]){ "audit", "verify", NULL }), 2);
	assert_int_equal(audit_main(2, (char *[]){ "audit", "check", NULL }), 2);
	unlink(a);
	unlink(b);
	rmdir(dir);
	free_lines();
}

static void test_traceparent(void **st)
{
	trc_ctx c, d;
	char s[TRC_HEADER_LEN + 1];
	(void)st;
	assert_int_equal(trc_parse("00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01", &c), 0);
	assert_string_equal(c.trace_id, "0af7651916cd43dd8448eb211c80319c");
	assert_string_equal(c.span_id, "00f067aa0ba902b7");
	assert_int_equal(c.flags, 1);
	trc_format(&c, s);
	assert_string_equal(s, "00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01");
	assert_int_equal(trc_parse("00-0AF7651916CD43DD8448EB211C80319C-00f067aa0ba902b7-01", &d), -EINVAL);
	assert_int_equal(trc_parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01", &d), -EINVAL);
	assert_int_equal(trc_parse("00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", &d), -EINVAL);
	assert_int_equal(trc_parse("ff-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01", &d), -EINVAL);
	assert_int_equal(trc_parse("00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01-x", &d), -EINVAL);
	assert_int_equal(trc_parse("01-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01-future", &d), 0);
	assert_int_equal(trc_parse("01-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01x", &d), -EINVAL);
	assert_int_equal(trc_parse("00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7", &d), -EINVAL);
	assert_int_equal(trc_parse(NULL, &d), -EINVAL);
	assert_int_equal(trc_child(&c, &d), 0);
	assert_string_equal(d.trace_id, c.trace_id);
	assert_string_not_equal(d.span_id, c.span_id);
	assert_int_equal(trc_new(&d), 0);
	trc_format(&d, s);
	assert_int_equal(trc_parse(s, &c), 0);
	assert_string_equal(c.trace_id, d.trace_id);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_line_fields), cmocka_unit_test(test_line_matches_jansson),
		cmocka_unit_test(test_line_ts_and_id),
		cmocka_unit_test(test_resume),
		cmocka_unit_test(test_verify),      cmocka_unit_test(test_verify_forged_insert),
		cmocka_unit_test(test_command),     cmocka_unit_test(test_traceparent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
