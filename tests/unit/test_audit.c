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
		cmocka_unit_test(test_line_fields), cmocka_unit_test(test_resume),
		cmocka_unit_test(test_verify),      cmocka_unit_test(test_verify_forged_insert),
		cmocka_unit_test(test_command),     cmocka_unit_test(test_traceparent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
