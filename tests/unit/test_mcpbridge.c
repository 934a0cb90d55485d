#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/admin.h"
#include "proxy/mcpbridge.h"

static mbr_kind cls(const char *j, char *id, char *m, char *why)
{
	return mbr_classify(j, strlen(j), id, 64, m, 64, why, 128);
}

static void test_kinds(void **st)
{
	char id[64], m[64], why[128];
	(void)st;
	assert_int_equal(cls("{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/list\"}", id, m, why), MBR_REQUEST);
	assert_string_equal(id, "n:7");
	assert_string_equal(m, "tools/list");
	assert_int_equal(cls("{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":{}}", id, m, why), MBR_RESPONSE);
	assert_string_equal(id, "s:a");
	assert_int_equal(cls("{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"error\":{\"code\":1,\"message\":\"x\"}}", id, m, why), MBR_RESPONSE);
	assert_int_equal(cls("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}", id, m, why), MBR_NOTIFICATION);
}

static void test_invalid(void **st)
{
	char id[64], m[64], why[128];
	(void)st;
	assert_int_equal(cls("{", id, m, why), MBR_INVALID);
	assert_non_null(strstr(why, "invalid JSON"));
	assert_int_equal(cls("[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\"}]", id, m, why), MBR_INVALID);
	assert_non_null(strstr(why, "batches"));
	assert_int_equal(cls("{\"id\":1,\"method\":\"x\"}", id, m, why), MBR_INVALID);
	assert_non_null(strstr(why, "2.0"));
	assert_int_equal(cls("{\"jsonrpc\":\"2.0\",\"id\":1.5,\"method\":\"x\"}", id, m, why), MBR_INVALID);
	assert_int_equal(cls("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\"}", id, m, why), MBR_INVALID);
	assert_int_equal(cls("{\"jsonrpc\":\"2.0\",\"id\":1}", id, m, why), MBR_INVALID);
	assert_int_equal(cls("{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"method\":\"x\"}", id, m, why), MBR_INVALID);
	/* an id too long for the key buffer is refused rather than truncated (two ids must never collide) */
	assert_int_equal(cls("{\"jsonrpc\":\"2.0\",\"id\":\"0123456789012345678901234567890123456789012345678901234567890123456789\",\"method\":\"x\"}", id, m, why), MBR_INVALID);
}

static void test_inspect(void **st)
{
	mbr_msg m;
	char why[128];
	(void)st;
#define INS(j) mbr_inspect(j, strlen(j), &m, why, sizeof why)
	assert_int_equal(INS("{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":\"x\",\"_meta\":{\"progressToken\":\"tok\"}}}"), MBR_REQUEST);
	assert_string_equal(m.idkey, "n:3");
	assert_string_equal(m.progress, "s:tok");
	assert_int_equal(INS("{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"method\":\"tools/call\",\"params\":{\"_meta\":{\"progressToken\":9}}}"), MBR_REQUEST);
	assert_string_equal(m.progress, "n:9");
	/* a token that is neither string nor integer is no token */
	assert_int_equal(INS("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{\"_meta\":{\"progressToken\":1.5}}}"), MBR_REQUEST);
	assert_string_equal(m.progress, "");
	assert_int_equal(INS("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":9,\"progress\":1}}"), MBR_NOTIFICATION);
	assert_string_equal(m.progress, "n:9");
	assert_string_equal(m.idkey, "");
	assert_int_equal(INS("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":\"r1\"}}"), MBR_NOTIFICATION);
	assert_string_equal(m.related, "s:r1");
	/* a server request: its id is the child's own */
	assert_int_equal(INS("{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"sampling/createMessage\",\"params\":{}}"), MBR_REQUEST);
	assert_string_equal(m.method, "sampling/createMessage");
	assert_string_equal(m.idkey, "n:0");
	assert_int_equal(INS("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":7}"), MBR_NOTIFICATION);
	assert_string_equal(m.progress, "");
#undef INS
}

/* ---- 2026-07-28: the pure rewrites ---- */

static void test_modern_to_child(void **st)
{
	char *out, *cid, *ctok, why[160];
	(void)st;
#define TC(j, bid) mbr_modern_to_child(j, strlen(j), bid, &out, &cid, &ctok, why, sizeof why)
	assert_int_equal(TC("{\"jsonrpc\":\"2.0\",\"id\":\"a\\\"b\",\"method\":\"tools/call\",\"params\":{\"name\":\"echo\","
			    "\"_meta\":{\"progressToken\":\"tok\",\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\"}}}", 41), 0);
	assert_string_equal(out, "{\"jsonrpc\":\"2.0\",\"id\":41,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\","
				 "\"_meta\":{\"progressToken\":41,\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\"}}}");
	assert_string_equal(cid, "\"a\\\"b\"");
	assert_string_equal(ctok, "\"tok\"");
	free(out), free(cid), free(ctok);
	/* no token: none made up; an integer id */
	assert_int_equal(TC("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{\"_meta\":{}}}", 2), 0);
	assert_string_equal(out, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\",\"params\":{\"_meta\":{}}}");
	assert_string_equal(cid, "1");
	assert_null(ctok);
	free(out), free(cid);
	/* an integer token, no params at all */
	assert_int_equal(TC("{\"jsonrpc\":\"2.0\",\"id\":-3,\"method\":\"x\",\"params\":{\"_meta\":{\"progressToken\":9}}}", 5), 0);
	assert_string_equal(ctok, "9");
	assert_non_null(strstr(out, "\"progressToken\":5"));
	free(out), free(cid), free(ctok);
	assert_int_equal(TC("{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"x\"}", 6), 0);
	assert_string_equal(out, "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"x\"}");
	free(out), free(cid);
	/* refused: a float token, a notification, not JSON, not an object */
	assert_int_equal(TC("{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{\"_meta\":{\"progressToken\":1.5}}}", 1), -EINVAL);
	assert_non_null(strstr(why, "progressToken"));
	assert_null(out), assert_null(cid), assert_null(ctok);
	assert_int_equal(TC("{\"jsonrpc\":\"2.0\",\"method\":\"x\"}", 1), -EINVAL);
	assert_non_null(strstr(why, "not a request"));
	assert_int_equal(TC("{\"id\":", 1), -EINVAL);
	assert_non_null(strstr(why, "invalid JSON"));
	assert_int_equal(TC("[1]", 1), -EINVAL);
#undef TC
}

static void test_modern_from_child(void **st)
{
	char *out, why[160];
	int code;
	(void)st;
#define FC(j, m, cid, tok) mbr_modern_from_child(j, strlen(j), m, cid, tok, &out, &code, why, sizeof why)
	/* a result: the client's id back, resultType added */
	assert_int_equal(FC("{\"jsonrpc\":\"2.0\",\"id\":41,\"result\":{\"content\":[]}}", "tools/call", "\"a\"", NULL), 0);
	assert_string_equal(out, "{\"jsonrpc\":\"2.0\",\"id\":\"a\",\"result\":{\"content\":[],\"resultType\":\"complete\"}}");
	assert_int_equal(code, 0);
	free(out);
	/* a resultType of its own is kept; a cacheable list gets the hints it lacks, keeps those it has */
	assert_int_equal(FC("{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"resultType\":\"complete\",\"tools\":[],\"ttlMs\":5}}", "tools/list", "7", NULL), 0);
	assert_string_equal(out, "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"resultType\":\"complete\",\"tools\":[],\"ttlMs\":5,\"cacheScope\":\"private\"}}");
	free(out);
	assert_int_equal(FC("{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}", "resources/read", "7", NULL), 0);
	assert_string_equal(out, "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"resultType\":\"complete\",\"ttlMs\":0,\"cacheScope\":\"private\"}}");
	free(out);
	/* an error: id back, its code told */
	assert_int_equal(FC("{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{\"code\":-32601,\"message\":\"no\"}}", "x/y", "1", "\"t\""), 0);
	assert_string_equal(out, "{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32601,\"message\":\"no\"}}");
	assert_int_equal(code, -32601);
	free(out);
	/* progress: the client's token back */
	assert_int_equal(FC("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":41,\"progress\":1,\"total\":4}}", "tools/call", "1", "\"tok\""), 0);
	assert_string_equal(out, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"tok\",\"progress\":1,\"total\":4}}");
	free(out);
	/* anything else comes back as it was */
	assert_int_equal(FC("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"data\":\"x\"}}", "tools/call", "1", "2"), 0);
	assert_string_equal(out, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"data\":\"x\"}}");
	free(out);
	assert_int_equal(FC("nope", "x", "1", NULL), -EINVAL);
	assert_null(out);
#undef FC
}

static void test_modern_discover(void **st)
{
	const char *init = "{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{\"tools\":{\"listChanged\":true},"
			   "\"resources\":{\"subscribe\":true,\"listChanged\":true},\"logging\":{},\"tasks\":{\"list\":{}}},"
			   "\"serverInfo\":{\"name\":\"kid\",\"version\":\"1.2\"},\"instructions\":\"be nice\"}";
	char *out, why[160];
	(void)st;
	assert_int_equal(mbr_modern_discover(init, strlen(init), "\"d\"", &out, why, sizeof why), 0);
	assert_string_equal(out, "{\"jsonrpc\":\"2.0\",\"id\":\"d\",\"result\":{\"resultType\":\"complete\","
				 "\"supportedVersions\":[\"2026-07-28\"],\"capabilities\":{\"tools\":{},\"resources\":{},\"logging\":{}},"
				 "\"instructions\":\"be nice\",\"_meta\":{\"io.modelcontextprotocol/serverInfo\":{\"name\":\"kid\",\"version\":\"1.2\"}},"
				 "\"ttlMs\":300000,\"cacheScope\":\"public\"}}");
	free(out);
	/* a bare result: capabilities {}, no instructions, no _meta */
	assert_int_equal(mbr_modern_discover("{}", 2, "4", &out, why, sizeof why), 0);
	assert_string_equal(out, "{\"jsonrpc\":\"2.0\",\"id\":4,\"result\":{\"resultType\":\"complete\",\"supportedVersions\":[\"2026-07-28\"],"
				 "\"capabilities\":{},\"ttlMs\":300000,\"cacheScope\":\"public\"}}");
	free(out);
	assert_int_equal(mbr_modern_discover("[]", 2, "4", &out, why, sizeof why), -EINVAL);
}

/* ---- the engine against a scripted stdio child ---- */

typedef struct rec {
	int status, responds, heads, ends;
	char body[2048], sid[64], data[8192];
	size_t dlen;
	bool full;
	mbr_req *q;
} rec;

static void r_respond(void *ud, const mbr_response *r)
{
	rec *x = ud;
	x->responds++;
	x->status = r->status;
	snprintf(x->body, sizeof x->body, "%.*s", (int)r->body_len, r->body ? r->body : "");
	snprintf(x->sid, sizeof x->sid, "%s", r->session_id ? r->session_id : "");
	x->q = NULL;
}
static int r_head(void *ud, int status, const char *sid)
{
	rec *x = ud;
	x->heads++;
	x->status = status;
	if (sid)
		snprintf(x->sid, sizeof x->sid, "%s", sid);
	return 0;
}
static int r_data(void *ud, const char *p, size_t n)
{
	rec *x = ud;
	assert_true(x->dlen + n < sizeof x->data);
	memcpy(x->data + x->dlen, p, n);
	x->dlen += n;
	x->data[x->dlen] = 0;
	return 0;
}
static void r_end(void *ud)
{
	rec *x = ud;
	x->ends++;
	x->q = NULL;
}
static bool r_full(void *ud) { return ((rec *)ud)->full; }
static const mbr_sink sink = { r_respond, r_head, r_data, r_end, r_full };

static uv_loop_t loop;

static void run_until(bool (*cond)(void *), void *arg, int ms)
{
	uint64_t end = uv_now(&loop) + (uint64_t)ms;
	while (!cond(arg) && uv_now(&loop) < end)
		uv_run(&loop, UV_RUN_NOWAIT), uv_sleep(2), uv_update_time(&loop);
	assert_true(cond(arg));
}
static bool answered(void *a) { return ((rec *)a)->responds > 0 || ((rec *)a)->ends > 0; }
static bool has_data(void *a) { return ((rec *)a)->dlen > 0; }
static bool has_roots(void *a) { return strstr(((rec *)a)->data, "roots/list") != NULL; }
static bool no_sessions(void *a) { return mbr_sessions(a) == 0; }

/* Answers initialize; then for the tools/call: progress (its token), a log message, a server request; waits
 * for the client's answer to it and answers the call with what it got. */
static const char *const child[] = { "/bin/sh", "-c",
	"read l; echo '{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{}}}';"
	"read l; echo '{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"p\",\"progress\":1}}';"
	"echo '{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"hi\"}}';"
	"echo '{\"jsonrpc\":\"2.0\",\"id\":\"srv-1\",\"method\":\"roots/list\"}';"
	"read l; case \"$l\" in *srv-1*granted*) echo '{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"answer\":\"granted\"}}';; esac;"
	"read l; echo '{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"data\":\"later\"}}'; sleep 30", NULL };

static int post(mbr *b, rec *x, const char *sid, bool sse, const char *body)
{
	mbr_http h = { .method = "POST", .session_id = sid, .accept_sse = sse, .body = (const uint8_t *)body,
		       .body_len = strlen(body) };
	memset(x, 0, sizeof *x);
	return mbr_handle(b, &h, &sink, x, &x->q);
}

static int get(mbr *b, rec *x, const char *sid, const char *last)
{
	mbr_http h = { .method = "GET", .session_id = sid, .last_event_id = last, .accept_sse = true };
	memset(x, 0, sizeof *x);
	return mbr_handle(b, &h, &sink, x, &x->q);
}

static void test_streams(void **st)
{
	mbr_opts o = { .name = "t", .argv = child };
	char err[200], sid[64];
	rec a, c, g, g2;
	mbr_stats ms;
	mbr *b;
	(void)st;
	uv_loop_init(&loop);
	assert_non_null(b = mbr_new(&loop, &o, err, sizeof err));
	/* initialize: the response is the first thing the child sends for it: plain JSON */
	assert_int_equal(post(b, &a, NULL, true, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{}}"), 0);
	run_until(answered, &a, 5000);
	assert_int_equal(a.status, 200);
	assert_int_equal(a.heads, 0);
	assert_non_null(strstr(a.body, "protocolVersion"));
	snprintf(sid, sizeof sid, "%s", a.sid);
	assert_int_equal(strlen(sid), 32);
	/* a call that streams: progress, the unassociated log message and server request (no GET stream open:
	 * they go to the oldest streaming request), then, after the client's answer, the response */
	assert_int_equal(post(b, &c, sid, true, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"_meta\":{\"progressToken\":\"p\"}}}"), 0);
	assert_non_null(c.q);
	run_until(has_data, &c, 5000);
	run_until(has_roots, &c, 5000);
	assert_int_equal(c.heads, 1);
	assert_string_equal(c.data,
		"id: 2-1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"p\",\"progress\":1}}\n\n"
		"id: 2-2\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"hi\"}}\n\n"
		"id: 2-3\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"srv-1\",\"method\":\"roots/list\"}\n\n");
	/* the client's answer to the server request: 202, and the child gets it as it was (its own id) */
	assert_int_equal(post(b, &a, sid, true, "{\"jsonrpc\":\"2.0\",\"id\":\"srv-1\",\"result\":{\"roots\":\"granted\"}}"), 0);
	assert_int_equal(a.status, 202);
	run_until(answered, &c, 5000);
	assert_int_equal(c.ends, 1);
	assert_non_null(strstr(c.data, "id: 2-4\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"answer\":\"granted\"}}\n\n"));
	/* (stream 1 was the initialize, answered as JSON) resume that POST's stream after its second event: the rest, then it ends (the request is over) */
	assert_int_equal(get(b, &g, sid, "2-2"), 0);
	assert_int_equal(g.heads, 1);
	assert_int_equal(g.ends, 1);
	assert_non_null(strstr(g.data, "id: 2-3\n"));
	assert_non_null(strstr(g.data, "id: 2-4\n"));
	assert_null(strstr(g.data, "id: 2-2\n"));
	/* the GET stream: one per session */
	assert_int_equal(get(b, &g, sid, NULL), 0);
	assert_int_equal(g.heads, 1);
	assert_int_equal(g.ends, 0);
	assert_non_null(g.q);
	assert_int_equal(get(b, &g2, sid, NULL), 0);
	assert_int_equal(g2.status, 409);
	assert_int_equal(get(b, &g2, sid, "x-1"), 0);
	assert_int_equal(g2.status, 400);
	/* a server message with no request: to the GET stream, held while the caller is full, then written */
	g.full = true;
	assert_int_equal(post(b, &a, sid, false, "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}"), 0);
	assert_int_equal(a.status, 202);
	for (int i = 0; i < 50; i++)
		uv_run(&loop, UV_RUN_NOWAIT), uv_sleep(2);
	assert_int_equal(g.dlen, 0);
	g.full = false;
	mbr_req_resume(g.q);
	run_until(has_data, &g, 5000);
	assert_non_null(strstr(g.data, "id: 0-5\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"data\":\"later\"}}\n\n"));
	mbr_get_stats(b, &ms);
	assert_int_equal(ms.sessions, 1);
	assert_int_equal(ms.get_streams, 1);
	assert_int_equal(ms.events, 5);
	assert_int_equal(ms.events_dropped, 0);
	mbr_req_cancel(g.q);
	mbr_get_stats(b, &ms);
	assert_int_equal(ms.get_streams, 0);
	/* DELETE ends it */
	{
		mbr_http h = { .method = "DELETE", .session_id = sid };
		memset(&a, 0, sizeof a);
		assert_int_equal(mbr_handle(b, &h, &sink, &a, NULL), 0);
		assert_int_equal(a.status, 200);
	}
	run_until(no_sessions, b, 5000);
	mbr_free(b);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	adm_metrics_reset();
}

/* A child whose answer to a call is over the bridge's cap (its id last, as the TypeScript SDK writes it),
 * then answers the next call normally. */
static const char *const big_child[] = { "/bin/sh", "-c",
	"read l; echo '{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"protocolVersion\":\"2025-06-18\",\"capabilities\":{}}}';"
	"read l; printf '{\"result\":{\"content\":\"'; head -c 3000 /dev/zero | tr '\\0' x; echo '\"},\"jsonrpc\":\"2.0\",\"id\":7}';"
	"read l; echo '{\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{\"small\":true}}'; sleep 30", NULL };

static void test_oversized_answer(void **st)
{
	mbr_opts o = { .name = "t", .argv = big_child, .max_message = 1024 };
	char err[200], sid[64];
	rec a;
	mbr *b;
	(void)st;
	uv_loop_init(&loop);
	assert_non_null(b = mbr_new(&loop, &o, err, sizeof err));
	assert_int_equal(post(b, &a, NULL, false, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{}}"), 0);
	run_until(answered, &a, 5000);
	snprintf(sid, sizeof sid, "%s", a.sid);
	/* the over-cap answer: an error with the call's own id at once, not silence until a timeout */
	assert_int_equal(post(b, &a, sid, false, "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"tools/call\",\"params\":{}}"), 0);
	run_until(answered, &a, 5000);
	assert_int_equal(a.status, 200);
	assert_non_null(strstr(a.body, "\"id\":7"));
	assert_non_null(strstr(a.body, "over this route's cap of 1024 bytes"));
	/* and the next line from the child is read as usual */
	assert_int_equal(post(b, &a, sid, false, "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/call\",\"params\":{}}"), 0);
	run_until(answered, &a, 5000);
	assert_non_null(strstr(a.body, "\"small\":true"));
	{
		mbr_http h = { .method = "DELETE", .session_id = sid };
		memset(&a, 0, sizeof a);
		assert_int_equal(mbr_handle(b, &h, &sink, &a, NULL), 0);
	}
	run_until(no_sessions, b, 5000);
	mbr_free(b);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	adm_metrics_reset();
}

static const char *const idle_child[] = { "/bin/sh", "-c",
	"while read l; do case \"$l\" in *initialize*) echo '{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}';; esac; done", NULL };

static void test_reclaim(void **st)
{
	mbr_opts o = { .name = "r", .argv = idle_child, .max_sessions = 2, .reclaim_idle_ms = 50 };
	const char *init = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{}}";
	char err[200], sid[2][64];
	rec a, g[2];
	mbr_stats ms;
	mbr *b;
	(void)st;
	uv_loop_init(&loop);
	assert_non_null(b = mbr_new(&loop, &o, err, sizeof err));
	for (int i = 0; i < 2; i++) {
		assert_int_equal(post(b, &a, NULL, true, init), 0);
		run_until(answered, &a, 5000);
		assert_int_equal(a.status, 200);
		snprintf(sid[i], sizeof sid[i], "%s", a.sid);
		assert_int_equal(get(b, &g[i], sid[i], NULL), 0); /* busy: a stream open */
	}
	uv_sleep(80);
	uv_update_time(&loop);
	/* every session busy: 503 */
	assert_int_equal(post(b, &a, NULL, true, init), 0);
	assert_int_equal(a.status, 503);
	assert_non_null(strstr(a.body, "all busy"));
	/* the first client goes away; once idle for reclaim_idle, a new session takes its place */
	mbr_req_cancel(g[0].q);
	uv_sleep(80);
	uv_update_time(&loop);
	assert_int_equal(post(b, &a, NULL, true, init), 0);
	run_until(answered, &a, 5000);
	assert_int_equal(a.status, 200);
	mbr_get_stats(b, &ms);
	assert_int_equal(ms.sessions, 2);
	assert_int_equal(ms.reclaimed, 1);
	assert_int_equal(ms.refused, 1);
	assert_int_equal(ms.started, 3);
	/* the reclaimed one is gone, the busy one is not */
	assert_int_equal(get(b, &a, sid[0], NULL), 0);
	assert_int_equal(a.status, 404);
	mbr_req_cancel(g[1].q);
	mbr_free(b);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	adm_metrics_reset();
}

/* ---- 2026-07-28 against a scripted legacy child ---- */

/* Answers the bridge's initialize, asks it for roots once (the bridge must refuse), then answers each request
 * with its argument x under the bridge's id: a progress first when the request has a token; x "slow" is never
 * answered, x "die" ends the child. A notifications/cancelled is acknowledged as a log line. */
static const char *const mchild[] = { "/bin/sh", "-c",
	"read -r l; case \"$l\" in *'\"id\":\"postern-init\"'*'\"capabilities\":{}'*) ;; *) exit 3;; esac;"
	"echo '{\"jsonrpc\":\"2.0\",\"id\":\"postern-init\",\"result\":{\"protocolVersion\":\"2025-11-25\",\"capabilities\":{\"tools\":{\"listChanged\":true}},"
	"\"serverInfo\":{\"name\":\"kid\",\"version\":\"1\"},\"instructions\":\"be nice\"}}';"
	"read -r l; echo '{\"jsonrpc\":\"2.0\",\"id\":\"srv-1\",\"method\":\"roots/list\"}';"
	"while read -r l; do "
	"  case \"$l\" in *srv-1*) continue;; *notifications/cancelled*) echo '{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"data\":\"saw cancel\"}}'; continue;; esac;"
	"  id=$(printf '%s' \"$l\" | sed -n 's/^{\"jsonrpc\":\"2.0\",\"id\":\\([0-9]*\\),.*/\\1/p');"
	"  x=$(printf '%s' \"$l\" | sed -n 's/.*\"x\":\"\\([a-z]*\\)\".*/\\1/p');"
	"  case \"$l\" in *progressToken*) echo \"{\\\"jsonrpc\\\":\\\"2.0\\\",\\\"method\\\":\\\"notifications/progress\\\",\\\"params\\\":{\\\"progressToken\\\":$id,\\\"progress\\\":1}}\";; esac;"
	"  case \"$x\" in slow) continue;; die) exit 0;; esac;"
	"  echo \"{\\\"jsonrpc\\\":\\\"2.0\\\",\\\"id\\\":$id,\\\"result\\\":{\\\"x\\\":\\\"$x\\\"}}\";"
	"done", NULL };

#define MV "\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\"}"
#define MVX "\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"2026-07-28\"%s}"

static int mpost(mbr *b, rec *x, bool sse, const char *ver, const char *meth, const char *name, const char *body)
{
	mbr_http h = { .method = "POST", .accept_sse = sse, .protocol_version = ver, .mcp_method = meth, .mcp_name = name,
		       .body = (const uint8_t *)body, .body_len = strlen(body) };
	memset(x, 0, sizeof *x);
	return mbr_handle(b, &h, &sink, x, &x->q);
}

/* A tools/call of the modern wire with argument x, client id id, and a token when tok. */
static int mcall(mbr *b, rec *r, const char *id, const char *x, const char *tok)
{
	char body[600], meta[100] = "";
	if (tok)
		snprintf(meta, sizeof meta, ",\"progressToken\":%s", tok);
	snprintf(body, sizeof body, "{\"jsonrpc\":\"2.0\",\"id\":%s,\"method\":\"tools/call\",\"params\":{\"name\":\"t\","
		 "\"arguments\":{\"x\":\"%s\"}," MVX "}}", id, x, meta);
	return mpost(b, r, true, "2026-07-28", "tools/call", "t", body);
}

static bool has_cancel_log(void *a) { mbr_stats st; mbr_get_stats(a, &st); return st.modern_cancelled >= 1; }
static bool modern_idle(void *a) { mbr_stats st; mbr_get_stats(a, &st); return st.modern_inflight == 0; }

static void test_modern(void **st)
{
	mbr_opts o = { .name = "m", .argv = mchild };
	char err[200];
	rec a, c, d, e;
	mbr_stats ms;
	mbr *b;
	(void)st;
	uv_loop_init(&loop);
	assert_non_null(b = mbr_new(&loop, &o, err, sizeof err));
	/* two clients, the same id 7, while the shared child starts: each gets its own answer, one with progress
	 * (its token back) on SSE, the other plain JSON */
	assert_int_equal(mcall(b, &a, "7", "aaa", "\"tok\""), 0);
	assert_non_null(a.q);
	assert_int_equal(mcall(b, &c, "7", "bbb", NULL), 0);
	assert_non_null(c.q);
	run_until(answered, &a, 5000);
	run_until(answered, &c, 5000);
	assert_int_equal(a.heads, 1);
	assert_int_equal(a.ends, 1);
	assert_string_equal(a.data,
		"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"tok\",\"progress\":1}}\n\n"
		"data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"x\":\"aaa\",\"resultType\":\"complete\"}}\n\n");
	assert_int_equal(c.heads, 0);
	assert_int_equal(c.status, 200);
	assert_string_equal(c.body, "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"x\":\"bbb\",\"resultType\":\"complete\"}}");
	assert_string_equal(c.sid, ""); /* no session id, ever */
	/* server/discover from the cached initialize result */
	assert_int_equal(mpost(b, &d, true, "2026-07-28", "server/discover", NULL,
			       "{\"jsonrpc\":\"2.0\",\"id\":\"d\",\"method\":\"server/discover\",\"params\":{" MV "}}"), 0);
	assert_int_equal(d.status, 200);
	assert_null(d.q);
	assert_non_null(strstr(d.body, "\"supportedVersions\":[\"2026-07-28\"],\"capabilities\":{\"tools\":{}},\"instructions\":\"be nice\","
				       "\"_meta\":{\"io.modelcontextprotocol/serverInfo\":{\"name\":\"kid\",\"version\":\"1\"}}"));
	/* the bridge refused the child's roots/list */
	mbr_get_stats(b, &ms);
	assert_int_equal(ms.modern_server_requests, 1);
	assert_int_equal(ms.modern_children, 1);
	assert_int_equal(ms.sessions, 0);
	assert_int_equal(ms.modern_requests, 3);
	/* refusals: an unknown version (-32022 naming what is supported), a header that does not match the body
	 * (-32020), no _meta version (-32602), a batch, a method 2026-07-28 removed (404), GET and DELETE (405) */
	assert_int_equal(mpost(b, &d, true, "2027-01-01", "tools/list", NULL,
			       "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"2027-01-01\"}}}"), 0);
	assert_int_equal(d.status, 400);
	assert_non_null(strstr(d.body, "\"id\":1,\"error\":{\"code\":-32022,"));
	assert_non_null(strstr(d.body, "\"data\":{\"supported\":[\"2026-07-28\"],\"requested\":\"2027-01-01\"}"));
	assert_int_equal(mpost(b, &d, true, "2026-07-28", "tools/list", NULL,
			       "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"garbage\"}}}"), 0);
	assert_int_equal(d.status, 400);
	assert_non_null(strstr(d.body, "\"requested\":\"garbage\""));
	assert_int_equal(mpost(b, &d, true, "2026-07-28", "tools/call", "other",
			       "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"t\"," MV "}}"), 0);
	assert_int_equal(d.status, 400);
	assert_non_null(strstr(d.body, "-32020"));
	assert_int_equal(mpost(b, &d, true, "2026-07-28", "tools/list", NULL, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}"), 0);
	assert_int_equal(d.status, 400);
	assert_non_null(strstr(d.body, "-32602"));
	assert_int_equal(mpost(b, &d, true, "2026-07-28", "tools/list", NULL,
			       "[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\",\"params\":{" MV "}}]"), 0);
	assert_int_equal(d.status, 400);
	assert_int_equal(mpost(b, &d, true, "2026-07-28", "ping", NULL, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{" MV "}}"), 0);
	assert_int_equal(d.status, 404);
	assert_non_null(strstr(d.body, "-32601"));
	{
		mbr_http h = { .method = "GET", .accept_sse = true, .protocol_version = "2026-07-28" };
		memset(&d, 0, sizeof d);
		assert_int_equal(mbr_handle(b, &h, &sink, &d, NULL), 0);
		assert_int_equal(d.status, 405);
		h.method = "DELETE";
		assert_int_equal(mbr_handle(b, &h, &sink, &d, NULL), 0);
		assert_int_equal(d.status, 405);
	}
	/* a stale session id on a modern request is ignored */
	{
		const char *body = "{\"jsonrpc\":\"2.0\",\"id\":\"d2\",\"method\":\"server/discover\",\"params\":{" MV "}}";
		mbr_http h = { .method = "POST", .session_id = "0123", .accept_sse = true, .protocol_version = "2026-07-28",
			       .mcp_method = "server/discover", .body = (const uint8_t *)body, .body_len = strlen(body) };
		memset(&d, 0, sizeof d);
		assert_int_equal(mbr_handle(b, &h, &sink, &d, NULL), 0);
		assert_int_equal(d.status, 200);
		assert_non_null(strstr(d.body, "\"id\":\"d2\""));
		/* a legacy request with that stale id: 404 as before */
		body = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}";
		h.body = (const uint8_t *)body;
		h.body_len = strlen(body);
		h.protocol_version = "2025-11-25";
		assert_int_equal(mbr_handle(b, &h, &sink, &d, NULL), 0);
		assert_int_equal(d.status, 404);
	}
	/* the client closes the stream of a call in flight: the child is told (notifications/cancelled) */
	assert_int_equal(mcall(b, &a, "8", "slow", "1"), 0);
	run_until(has_data, &a, 5000); /* its progress: it reached the child */
	mbr_req_cancel(a.q);
	run_until(has_cancel_log, b, 5000);
	mbr_get_stats(b, &ms);
	assert_int_equal(ms.modern_inflight, 0);
	/* notifications/cancelled of the client for its request 9: 202, and the request ends */
	assert_int_equal(mcall(b, &a, "9", "slow", "2"), 0);
	run_until(has_data, &a, 5000);
	assert_int_equal(mpost(b, &d, true, "2026-07-28", "notifications/cancelled", NULL,
			       "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/cancelled\",\"params\":{\"requestId\":9}}"), 0);
	assert_int_equal(d.status, 202);
	assert_int_equal(a.ends, 1);
	assert_non_null(strstr(a.data, "\"id\":9,\"error\":{\"code\":-32603,\"message\":\"request cancelled by the client"));
	mbr_get_stats(b, &ms);
	assert_int_equal(ms.modern_cancelled, 2);
	/* the child dies with a request in flight: its error; the next request gets a fresh child */
	assert_int_equal(mcall(b, &e, "\"w\"", "slow", NULL), 0);
	assert_int_equal(mcall(b, &a, "10", "die", NULL), 0);
	run_until(answered, &a, 5000);
	run_until(answered, &e, 5000);
	assert_non_null(strstr(a.body, "\"id\":10,\"error\":{\"code\":-32603,\"message\":\"server process exited\""));
	assert_non_null(strstr(e.body, "\"id\":\"w\",\"error\":{\"code\":-32603,\"message\":\"server process exited\""));
	assert_int_equal(mcall(b, &a, "11", "again", NULL), 0);
	run_until(answered, &a, 5000);
	assert_string_equal(a.body, "{\"jsonrpc\":\"2.0\",\"id\":11,\"result\":{\"x\":\"again\",\"resultType\":\"complete\"}}");
	run_until(modern_idle, b, 1000);
	mbr_get_stats(b, &ms);
	assert_int_equal(ms.modern_children, 1);
	assert_int_equal(ms.modern_server_requests, 2); /* the new child asked too */
	/* an SSE client that is full: progress waits, the response goes anyway and ends the stream */
	assert_int_equal(mcall(b, &a, "12", "full", "3"), 0);
	a.full = true;
	run_until(answered, &a, 5000);
	assert_int_equal(a.ends, 1);
	assert_non_null(strstr(a.data, "\"progressToken\":3"));
	assert_non_null(strstr(a.data, "\"id\":12,\"result\""));
	mbr_free(b);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&loop), 0);
	adm_metrics_reset();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kinds),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_inspect),
		cmocka_unit_test(test_modern_to_child),
		cmocka_unit_test(test_modern_from_child),
		cmocka_unit_test(test_modern_discover),
		cmocka_unit_test(test_streams),
		cmocka_unit_test(test_oversized_answer),
		cmocka_unit_test(test_reclaim),
		cmocka_unit_test(test_modern),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
