/* `postern tunnel create|rotate|list|info|delete NAME -c edge.yaml`: provisioning on the edge's state_dir.
 * create, rotate and delete print JSON on stdout (the only place a token ever appears); list and info print a
 * table, or JSON with --output json, and add what the running edge knows (its connector connections, from
 * the loopback /tunnels answer on its metrics_listen). Errors are one line on stderr. */
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/admin.h"
#include "core/cfg.h"
#include "core/netaddr.h"
#include "tunnel/edge.h"
#include "tunnel/tokstore.h"

#define LIVE_TIMEOUT_MS 3000   /* the whole exchange with the edge's metrics listener */
#define LIVE_MAX (8u << 20)    /* its /tunnels answer */

static void usage(FILE *f)
{
	fprintf(f, "usage: postern tunnel create NAME -c edge.yaml\n"
		   "       postern tunnel rotate NAME -c edge.yaml [--grace 10m]\n"
		   "       postern tunnel list -c edge.yaml [--output table|json]\n"
		   "       postern tunnel info NAME|ID -c edge.yaml [--output table|json]\n"
		   "       postern tunnel delete NAME -c edge.yaml\n\n"
		   "Tunnel records and tokens live in the edge's state_dir (SQLite). create and rotate print\n"
		   "{\"id\",\"name\",\"domain\",\"token\"} as JSON on stdout; the token is shown only then.\n"
		   "rotate issues a new token; older ones stay valid for --grace (default 10m, 0 ends them now).\n"
		   "Connections already registered are never dropped by a rotation.\n"
		   "list and info add the live connector connections of the edge running with this config (asked\n"
		   "on its metrics_listen, which must be a loopback address); info names tokens by fingerprint only.\n");
}

static json_t *tunnel_json(const tok_tunnel *t)
{
	return json_pack("{s:s,s:s,s:s,s:I,s:i}", "id", t->id, "name", t->name, "domain", t->domain, "created_ms",
			 (json_int_t)t->created_ms, "tokens", t->tokens);
}

static int print_json(json_t *o)
{
	char *s = o ? json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
	if (!s) {
		fprintf(stderr, "postern tunnel: out of memory\n");
		return 1;
	}
	printf("%s\n", s);
	fflush(stdout);
	OPENSSL_cleanse(s, strlen(s));
	free(s);
	return 0;
}

/* ---------------------------------------------------------------- the running edge's live state */

/* metrics_listen as an address to dial ("ip:port" for adm_client_request): all interfaces is asked on loopback. */
static int admin_target(const char *listen, char *out, size_t len)
{
	struct sockaddr_storage ss;
	int rc = na_parse_sockaddr(listen, false, &ss);
	if (rc < 0)
		return rc;
	if (ss.ss_family == AF_INET && ((struct sockaddr_in *)&ss)->sin_addr.s_addr == htonl(INADDR_ANY))
		((struct sockaddr_in *)&ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else if (ss.ss_family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)&ss)->sin6_addr))
		((struct sockaddr_in6 *)&ss)->sin6_addr = in6addr_loopback;
	na_format((struct sockaddr *)&ss, out, len);
	return 0;
}

/* The edge's /tunnels answer, or NULL with the reason in why (the caller shows the store alone then). */
static json_t *fetch_live(const edge_config *cfg, char *why, size_t whylen)
{
	char target[NA_FMT_MAX], e[300], *body = NULL;
	size_t blen = 0;
	int status = 0;
	json_t *doc = NULL, *msg;
	if (!cfg->metrics_listen || !cfg->metrics_listen[0] || admin_target(cfg->metrics_listen, target, sizeof target) < 0) {
		snprintf(why, whylen, "metrics_listen '%s' is not an address to ask", cfg->metrics_listen ? cfg->metrics_listen : "");
		return NULL;
	}
	if (adm_client_request(target, "GET", "/tunnels", NULL, 0, LIVE_TIMEOUT_MS, LIVE_MAX, &status, &body, &blen, e,
			       sizeof e) < 0) {
		snprintf(why, whylen, "the edge on metrics_listen %s did not answer (%s): is it running?", cfg->metrics_listen, e);
		return NULL;
	}
	doc = json_loadb(body, blen, 0, NULL);
	free(body);
	if (status != 200 || !json_is_array(json_object_get(doc, "tunnels"))) {
		msg = json_object_get(doc, "error");
		snprintf(why, whylen, "the edge on metrics_listen %s answered /tunnels with %d%s%s", cfg->metrics_listen, status,
			 json_is_string(msg) ? ": " : "", json_is_string(msg) ? json_string_value(msg) : "");
		json_decref(doc);
		return NULL;
	}
	return doc;
}

/* The edge's record of tunnel id: NULL when it has none (no connector registered since it started). */
static json_t *live_tunnel(json_t *live, const char *id)
{
	size_t i;
	json_t *t;
	json_array_foreach(json_object_get(live, "tunnels"), i, t)
		if (json_is_string(json_object_get(t, "id")) && !strcmp(json_string_value(json_object_get(t, "id")), id))
			return t;
	return NULL;
}

/* ---------------------------------------------------------------- human times */

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "45s", "5m 3s", "2h 5m", "1 day 3h", "3 days" */
static const char *dur_text(int64_t ms, char *buf, size_t len)
{
	long long s = ms < 0 ? 0 : ms / 1000;
	if (s < 60)
		snprintf(buf, len, "%llds", s);
	else if (s < 3600)
		snprintf(buf, len, "%lldm %llds", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, len, "%lldh %lldm", s / 3600, s % 3600 / 60);
	else if (s < 2 * 86400)
		snprintf(buf, len, "1 day %lldh", s % 86400 / 3600);
	else
		snprintf(buf, len, "%lld days", s / 86400);
	return buf;
}

static const char *utc_text(int64_t ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	if (!gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm))
		snprintf(buf, len, "-");
	return buf;
}

/* ---------------------------------------------------------------- tables */

/* rows: an array of arrays of strings, the first the header; columns padded to their widest cell. */
static void print_table(json_t *rows, const char *indent)
{
	size_t w[16] = { 0 }, i, j;
	json_t *r, *c;
	json_array_foreach(rows, i, r)
		json_array_foreach(r, j, c)
			if (j < 16 && strlen(json_string_value(c)) > w[j])
				w[j] = strlen(json_string_value(c));
	json_array_foreach(rows, i, r) {
		fputs(indent, stdout);
		json_array_foreach(r, j, c) {
			bool last = j + 1 == json_array_size(r);
			printf("%-*s%s", last ? 0 : (int)w[j < 16 ? j : 15], json_string_value(c), last ? "\n" : "  ");
		}
	}
}

/* Cells go to a terminal: whatever the edge's answer holds, a control byte becomes '?' (the edge already
 * refuses such ids and versions at registration; JSON output escapes them) and a cell ends at 200 bytes. */
static json_t *row(const char *const *cells, size_t n)
{
	json_t *r = json_array();
	for (size_t i = 0; i < n && r; i++) {
		char c[201];
		size_t k = 0;
		for (const char *p = cells[i] ? cells[i] : "-"; *p && k < sizeof c - 1; p++)
			c[k++] = (unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p;
		c[k] = 0;
		json_array_append_new(r, json_string(c[0] ? c : "-"));
	}
	return r;
}

/* Connectors (distinct connector ids), connections, streams and the oldest connection of a live record. */
struct live_sum {
	int connectors, conns, streams;
	int64_t oldest_ms;
};

static struct live_sum summarize(json_t *conns)
{
	struct live_sum ls = { 0 };
	size_t i, j;
	json_t *c, *d;
	json_array_foreach(conns, i, c) {
		const char *id = json_string_value(json_object_get(c, "connector_id"));
		bool seen = false;
		int64_t since = json_integer_value(json_object_get(c, "since_ms"));
		for (j = 0; j < i && (d = json_array_get(conns, j)); j++)
			seen |= id && json_string_value(json_object_get(d, "connector_id")) &&
				!strcmp(id, json_string_value(json_object_get(d, "connector_id")));
		ls.connectors += !seen;
		ls.conns++;
		ls.streams += (int)json_integer_value(json_object_get(c, "streams"));
		if (since && (!ls.oldest_ms || since < ls.oldest_ms))
			ls.oldest_ms = since;
	}
	return ls;
}

/* ---------------------------------------------------------------- list and info */

struct list_ctx {
	json_t *out;
	json_t *live; /* NULL: the edge did not answer */
};

/* A tunnel of the store with what the edge knows: connections (null when unknown) and stream counts. */
static json_t *tunnel_live_json(const tok_tunnel *t, json_t *live)
{
	json_t *o = tunnel_json(t), *lt = live ? live_tunnel(live, t->id) : NULL;
	if (!o)
		return NULL;
	json_object_set_new(o, "connections", !live ? json_null() : lt ? json_deep_copy(json_object_get(lt, "connections")) : json_array());
	json_object_set_new(o, "connectors", live ? json_integer(summarize(json_object_get(o, "connections")).connectors) : json_null());
	json_object_set_new(o, "streams_active", lt ? json_deep_copy(json_object_get(lt, "streams_active")) : live ? json_integer(0) : json_null());
	return o;
}

static int list_live_one(const tok_tunnel *t, void *ud)
{
	struct list_ctx *lc = ud;
	return json_array_append_new(lc->out, tunnel_live_json(t, lc->live)) ? -ENOMEM : 0;
}

static void print_list_table(json_t *arr, bool live, int64_t now_edge)
{
	const char *hdr[] = { "NAME", "ID", "CREATED", "TOKENS", "CONNECTORS", "CONNECTIONS", "STREAMS", "CONNECTED" };
	json_t *rows = json_array(), *t;
	size_t i;
	if (!json_array_size(arr)) {
		printf("no tunnels (create one with: postern tunnel create NAME -c edge.yaml)\n");
		json_decref(rows);
		return;
	}
	json_array_append_new(rows, row(hdr, 8));
	json_array_foreach(arr, i, t) {
		struct live_sum ls = summarize(json_object_get(t, "connections"));
		char created[64], ago[32], tokens[16], cors[16], conns[16], streams[16], since[48], d[32];
		snprintf(created, sizeof created, "%s ago", dur_text(wall_ms() - json_integer_value(json_object_get(t, "created_ms")), ago, sizeof ago));
		snprintf(tokens, sizeof tokens, "%lld", (long long)json_integer_value(json_object_get(t, "tokens")));
		snprintf(cors, sizeof cors, "%d", ls.connectors);
		snprintf(conns, sizeof conns, "%d", ls.conns);
		snprintf(streams, sizeof streams, "%d", ls.streams);
		if (ls.oldest_ms)
			snprintf(since, sizeof since, "since %s", dur_text(now_edge - ls.oldest_ms, d, sizeof d));
		else
			snprintf(since, sizeof since, "%s", live ? "not connected" : "?");
		{
			const char *cells[] = { json_string_value(json_object_get(t, "name")), json_string_value(json_object_get(t, "id")),
						created, tokens, live ? cors : "?", live ? conns : "?", live ? streams : "?", since };
			json_array_append_new(rows, row(cells, 8));
		}
	}
	print_table(rows, "");
	json_decref(rows);
}

static int tokens_one(const tok_token_info *k, void *ud)
{
	json_t *o = json_pack("{s:s,s:I}", "fingerprint", k->fingerprint, "created_ms", (json_int_t)k->created_ms);
	if (o)
		json_object_set_new(o, "expires_ms", k->expires_ms ? json_integer((json_int_t)k->expires_ms) : json_null());
	return json_array_append_new(ud, o) ? -ENOMEM : 0;
}

static void print_info_table(json_t *o, bool live, int64_t now_edge)
{
	json_t *conns = json_object_get(o, "connections"), *k, *c, *rows;
	struct live_sum ls = summarize(conns);
	char a[64], b[64];
	size_t i;
	int64_t now = wall_ms();
	printf("Tunnel:       %s\n", json_string_value(json_object_get(o, "name")));
	printf("ID:           %s\n", json_string_value(json_object_get(o, "id")));
	printf("Domain:       %s\n", json_string_value(json_object_get(o, "domain")));
	printf("Created:      %s (%s ago)\n", utc_text(json_integer_value(json_object_get(o, "created_ms")), a, sizeof a),
	       dur_text(now - json_integer_value(json_object_get(o, "created_ms")), b, sizeof b));
	printf("Tokens:       %zu valid\n", json_array_size(json_object_get(o, "valid_tokens")));
	json_array_foreach(json_object_get(o, "valid_tokens"), i, k) {
		int64_t exp = json_integer_value(json_object_get(k, "expires_ms"));
		char e[64];
		if (exp)
			snprintf(e, sizeof e, "expires in %s", dur_text(exp - now, b, sizeof b));
		else
			snprintf(e, sizeof e, "no expiry");
		printf("  %s  created %s ago, %s\n", json_string_value(json_object_get(k, "fingerprint")),
		       dur_text(now - json_integer_value(json_object_get(k, "created_ms")), a, sizeof a), e);
	}
	if (!live) {
		printf("Connections:  unknown (the edge did not answer)\n");
		return;
	}
	printf("Streams:      %lld active, %lld total\n", (long long)json_integer_value(json_object_get(o, "streams_active")),
	       (long long)json_integer_value(json_object_get(o, "streams_total")));
	if (!ls.conns) {
		printf("Connections:  none (no connector is registered on this edge)\n");
		return;
	}
	printf("Connections:  %d from %d connector%s\n", ls.conns, ls.connectors, ls.connectors == 1 ? "" : "s");
	{
		const char *hdr[] = { "CONNECTOR", "SLOT", "REMOTE", "SINCE", "STREAMS", "VERSION", "STATE", "PROTOCOL" };
		rows = json_array();
		json_array_append_new(rows, row(hdr, 8));
	}
	json_array_foreach(conns, i, c) {
		char slot[16], since[96], streams[16], d[32], u[40];
		int64_t s = json_integer_value(json_object_get(c, "since_ms"));
		snprintf(slot, sizeof slot, "%lld", (long long)json_integer_value(json_object_get(c, "slot")));
		snprintf(since, sizeof since, "%s (%s)", dur_text(now_edge - s, d, sizeof d), utc_text(s, u, sizeof u));
		snprintf(streams, sizeof streams, "%lld", (long long)json_integer_value(json_object_get(c, "streams")));
		{
			const char *cells[] = { json_string_value(json_object_get(c, "connector_id")), slot,
						json_string_value(json_object_get(c, "remote")), since, streams,
						json_string_value(json_object_get(c, "version")),
						json_string_value(json_object_get(c, "state")),
						json_string_value(json_object_get(c, "protocol")) };
			json_array_append_new(rows, row(cells, 8));
		}
	}
	print_table(rows, "  ");
	json_decref(rows);
}

/* info: the store's record, its tokens by fingerprint and the edge's live record. */
static json_t *info_json(tok_store *s, const tok_tunnel *t, json_t *live, const char *why, int *rc)
{
	json_t *o = tunnel_live_json(t, live), *toks = json_array(), *lt = live ? live_tunnel(live, t->id) : NULL;
	*rc = 0;
	if (!o || !toks || (*rc = tok_tokens(s, t->id, tokens_one, toks)) != 0) {
		json_decref(o);
		json_decref(toks);
		return NULL;
	}
	json_object_set_new(o, "valid_tokens", toks);
	json_object_set_new(o, "streams_total", lt ? json_deep_copy(json_object_get(lt, "streams_total")) : live ? json_integer(0) : json_null());
	json_object_set_new(o, "bytes_to_connector", lt ? json_deep_copy(json_object_get(lt, "bytes_to_connector")) : live ? json_integer(0) : json_null());
	json_object_set_new(o, "bytes_to_client", lt ? json_deep_copy(json_object_get(lt, "bytes_to_client")) : live ? json_integer(0) : json_null());
	json_object_set_new(o, "edge_id", live ? json_deep_copy(json_object_get(live, "edge_id")) : json_null());
	if (!live)
		json_object_set_new(o, "live_error", json_string(why));
	return o;
}

static int fail(const char *name, int r, tok_store *s)
{
	switch (r) {
	case -EINVAL:
		fprintf(stderr, "postern tunnel: '%s' is not a valid tunnel name (1-63 of A-Z a-z 0-9 . _ -)\n", name);
		break;
	case -EEXIST:
		fprintf(stderr, "postern tunnel: a tunnel named '%s' already exists\n", name);
		break;
	case -ENOENT:
		fprintf(stderr, "postern tunnel: no tunnel named '%s'\n", name);
		break;
	default:
		fprintf(stderr, "postern tunnel: %s\n", tok_errstr(s));
	}
	return 1;
}

static int do_list(tok_store *s, const edge_config *cfg, bool json)
{
	struct list_ctx lc = { json_array(), NULL };
	char why[512] = "";
	int rc, r;
	lc.live = fetch_live(cfg, why, sizeof why);
	if (!lc.out || (r = tok_list(s, list_live_one, &lc)) != 0) {
		rc = fail("", -EIO, s);
		goto out;
	}
	if (!lc.live)
		fprintf(stderr, "postern tunnel: live connections unknown: %s\n", why);
	if (json) {
		rc = print_json(lc.out);
		goto out;
	}
	print_list_table(lc.out, lc.live != NULL, lc.live ? json_integer_value(json_object_get(lc.live, "now_ms")) : wall_ms());
	rc = 0;
out:
	json_decref(lc.out);
	json_decref(lc.live);
	return rc;
}

static int do_info(tok_store *s, const edge_config *cfg, const char *which, bool json)
{
	char why[512] = "";
	json_t *live = NULL, *o = NULL;
	tok_tunnel t;
	int rc, r;
	/* A name first, then an id (ids are 16 lower-case letters and digits: a name may look like one). */
	if ((r = tok_get(s, which, &t)) == -ENOENT || r == -EINVAL)
		r = tok_get_by_id(s, which, &t);
	if (r < 0) {
		if (r == -ENOENT)
			fprintf(stderr, "postern tunnel info: no tunnel named or with the id '%s' (see postern tunnel list)\n", which);
		else
			fprintf(stderr, "postern tunnel: %s\n", tok_errstr(s));
		return 1;
	}
	live = fetch_live(cfg, why, sizeof why);
	if (!(o = info_json(s, &t, live, why, &r))) {
		rc = fail(which, r < 0 ? r : -EIO, s);
		goto out;
	}
	if (!live)
		fprintf(stderr, "postern tunnel: live connections unknown: %s\n", why);
	if (json) {
		rc = print_json(o);
		goto out;
	}
	print_info_table(o, live != NULL, live ? json_integer_value(json_object_get(live, "now_ms")) : wall_ms());
	rc = 0;
out:
	json_decref(o);
	json_decref(live);
	return rc;
}

static bool verb_is(const char *v, const char *const *set)
{
	for (; *set; set++)
		if (!strcmp(v, *set))
			return true;
	return false;
}

int tunnel_main(int argc, char **argv)
{
	static const char *const verbs[] = { "create", "rotate", "list", "info", "delete", NULL };
	static const char *const named[] = { "create", "rotate", "info", "delete", NULL };
	static const char *const shown[] = { "list", "info", NULL };
	const char *verb = NULL, *name = NULL, *path = NULL, *grace_s = NULL, *output = NULL;
	char err[512], token[TOK_TOKEN_MAX];
	int64_t grace = TOK_DEFAULT_GRACE_MS;
	edge_config cfg;
	tok_store *s = NULL;
	tok_tunnel t;
	json_t *o;
	int r, rc = 1;
	bool have_cfg = false;

	memset(token, 0, sizeof token);
	for (int i = 1; i < argc; i++) {
		if ((!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) && i + 1 < argc) {
			path = argv[++i];
		} else if (!strcmp(argv[i], "--grace") && i + 1 < argc) {
			grace_s = argv[++i];
		} else if ((!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) && i + 1 < argc) {
			output = argv[++i];
		} else if (!strncmp(argv[i], "--output=", 9)) {
			output = argv[i] + 9;
		} else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			usage(stdout);
			return 0;
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "postern tunnel: unknown option '%s' (see postern tunnel --help)\n", argv[i]);
			return 2;
		} else if (!verb) {
			verb = argv[i];
		} else if (!name) {
			name = argv[i];
		} else {
			fprintf(stderr, "postern tunnel: unexpected argument '%s'\n", argv[i]);
			return 2;
		}
	}
	if (!verb || !verb_is(verb, verbs)) {
		fprintf(stderr, verb ? "postern tunnel: unknown action '%s'\n" : "postern tunnel: an action is required%s\n",
			verb ? verb : "");
		usage(stderr);
		return 2;
	}
	if (verb_is(verb, named) && !name) {
		fprintf(stderr, "postern tunnel %s: %s is required\n", verb, strcmp(verb, "info") ? "NAME" : "NAME or ID");
		return 2;
	}
	if (!verb_is(verb, named) && name) {
		fprintf(stderr, "postern tunnel %s: unexpected argument '%s'\n", verb, name);
		return 2;
	}
	if (grace_s && (strcmp(verb, "rotate") || cfg_parse_duration_ms(grace_s, &grace) < 0 || grace < 0)) {
		fprintf(stderr, strcmp(verb, "rotate") ? "postern tunnel: --grace only applies to rotate\n"
						       : "postern tunnel: --grace: '%s' is not a duration (e.g. 30s, 10m, 1h)\n",
			grace_s);
		return 2;
	}
	if (output && (!verb_is(verb, shown) || (strcmp(output, "table") && strcmp(output, "json")))) {
		if (!verb_is(verb, shown))
			fprintf(stderr, "postern tunnel %s: --output applies to list and info (%s always prints JSON)\n", verb, verb);
		else
			fprintf(stderr, "postern tunnel %s: --output: '%s' is not table or json\n", verb, output);
		return 2;
	}
	if (!path) {
		fprintf(stderr, "postern tunnel: -c edge.yaml is required\n");
		return 2;
	}
	if (edge_config_load(path, &cfg, err, sizeof err) < 0) {
		fprintf(stderr, "postern tunnel: %s\n", err);
		return 1;
	}
	have_cfg = true;
	if (tok_open(cfg.state_dir, cfg.domain, &s, err, sizeof err) < 0) {
		fprintf(stderr, "postern tunnel: %s\n", err);
		goto out;
	}
	if (!strcmp(verb, "list")) {
		rc = do_list(s, &cfg, output && !strcmp(output, "json"));
		goto out;
	}
	if (!strcmp(verb, "info")) {
		rc = do_info(s, &cfg, name, output && !strcmp(output, "json"));
		goto out;
	}
	if (!strcmp(verb, "delete")) {
		if ((r = tok_get(s, name, &t)) < 0 || (r = tok_delete(s, name)) < 0) {
			rc = fail(name, r, s);
			goto out;
		}
		o = json_pack("{s:s,s:s,s:s,s:b}", "id", t.id, "name", t.name, "domain", t.domain, "deleted", 1);
		rc = print_json(o);
		json_decref(o);
		goto out;
	}
	r = !strcmp(verb, "create") ? tok_create(s, name, &t, token) : tok_rotate(s, name, grace, &t, token);
	if (r < 0) {
		rc = fail(name, r, s);
		goto out;
	}
	o = json_pack("{s:s,s:s,s:s,s:s}", "id", t.id, "name", t.name, "domain", t.domain, "token", token);
	if (o && !strcmp(verb, "rotate"))
		json_object_set_new(o, "previous_tokens_expire_in_ms", json_integer((json_int_t)grace));
	rc = print_json(o);
	json_decref(o);
out:
	OPENSSL_cleanse(token, sizeof token);
	tok_close(s);
	if (have_cfg)
		edge_config_free(&cfg);
	return rc;
}
