/* postern approvals list|approve ID|deny ID and postern pins list|accept ROUTE TOOL: the gateway's control
 * API (gateway/gwadmin.h) over its admin socket. Exit 0 done, 1 refused or unreachable, 2 usage. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "core/admin.h"
#include "core/cfg.h"
#include "gateway/gateway.h"

#define TIMEOUT_MS 10000u
#define MAX_RESP (16u << 20)
#define RC_USAGE 2
#define RC_HELP 3 /* help printed: exit 0 */

struct opts {
	const char *prog, *config, *sock, *reason;
	bool json;
	char *sock_owned;
	int first; /* argv index of the first positional argument (the subcommand) */
};

static void approvals_usage(FILE *f)
{
	fprintf(f, "usage: postern approvals list [OPTIONS]\n"
		   "       postern approvals approve ID [--reason TEXT] [OPTIONS]\n"
		   "       postern approvals deny ID [--reason TEXT] [OPTIONS]\n\n"
		   "Calls a policy rule holds (action: approve) wait in the gateway until a person approves or denies\n"
		   "them here, or their approval_timeout (default 5m) denies them. The decision records who you are\n"
		   "(your uid, from the socket).\n\n"
		   "options:\n"
		   "  -c, --config FILE   the gateway's config: its admin_socket is used\n"
		   "  --socket PATH       the admin socket (default " GW_ADMIN_SOCKET_DEFAULT ")\n"
		   "  --output table|json (default table)\n");
}

static void pins_usage(FILE *f)
{
	fprintf(f, "usage: postern pins list [OPTIONS]\n"
		   "       postern pins accept ROUTE TOOL [OPTIONS]\n\n"
		   "Tool definitions are pinned on first sight. A tool whose definition changed is hidden and its\n"
		   "calls refused until its new definition is accepted here (and saved to the pins_file).\n\n"
		   "options:\n"
		   "  -c, --config FILE   the gateway's config: its admin_socket is used\n"
		   "  --socket PATH       the admin socket (default " GW_ADMIN_SOCKET_DEFAULT ")\n"
		   "  --output table|json (default table)\n");
}

/* Options anywhere among the arguments; positional ones are moved to argv[first..]. */
static int parse(int argc, char **argv, struct opts *o, bool reason_ok, void (*usage)(FILE *))
{
	static const struct option lo[] = {
		{ "config", required_argument, NULL, 'c' }, { "socket", required_argument, NULL, 's' },
		{ "output", required_argument, NULL, 'o' }, { "reason", required_argument, NULL, 'r' },
		{ "help", no_argument, NULL, 'h' },	    { 0, 0, 0, 0 },
	};
	int c;
	optind = 1;
	opterr = 0;
	while ((c = getopt_long(argc, argv, "+c:h", lo, NULL)) != -1 || optind < argc) {
		if (c == -1) {
			/* a positional argument: keep it and go on after it */
			argv[o->first++] = argv[optind++];
			continue;
		}
		switch (c) {
		case 'c': o->config = optarg; break;
		case 's': o->sock = optarg; break;
		case 'o':
			if (strcmp(optarg, "json") && strcmp(optarg, "table")) {
				fprintf(stderr, "%s: --output: want table or json, not '%s'\n", o->prog, optarg);
				return RC_USAGE;
			}
			o->json = !strcmp(optarg, "json");
			break;
		case 'r':
			if (!reason_ok) {
				fprintf(stderr, "%s: --reason goes with approve or deny\n", o->prog);
				return RC_USAGE;
			}
			o->reason = optarg;
			break;
		case 'h': usage(stdout); return RC_HELP;
		default:
			fprintf(stderr, "%s: unknown or incomplete option '%s' (see --help)\n", o->prog, argv[optind - 1]);
			return RC_USAGE;
		}
	}
	return 0;
}

/* --socket, else the config's admin_socket, else the default. */
static int resolve_socket(struct opts *o)
{
	char err[512];
	cfg_doc *d;
	bool http;
	if (o->sock)
		return 0;
	if (!o->config) {
		o->sock = GW_ADMIN_SOCKET_DEFAULT;
		return 0;
	}
	if (!(d = cfg_load(o->config, err, sizeof err))) {
		fprintf(stderr, "%s: %s\n", o->prog, err);
		return -EINVAL;
	}
	if (gw_config_admin(d, &o->sock_owned, &http) < 0) {
		fprintf(stderr, "%s: %s\n", o->prog, cfg_error(d));
		cfg_free(d);
		return -EINVAL;
	}
	cfg_free(d);
	if (o->sock_owned && !*o->sock_owned) {
		fprintf(stderr, "%s: %s turns the admin socket off (admin_socket: \"\")\n", o->prog, o->config);
		return -EINVAL;
	}
	o->sock = o->sock_owned ? o->sock_owned : GW_ADMIN_SOCKET_DEFAULT;
	return 0;
}

/* One request; prints what went wrong and returns NULL unless the gateway answered 2xx with JSON. */
static json_t *call(struct opts *o, const char *method, const char *path, json_t *body)
{
	char err[512], *b = body ? json_dumps(body, JSON_COMPACT) : NULL, *resp = NULL;
	size_t len = 0;
	int status = 0, rc;
	json_t *j = NULL;

	rc = adm_client_request(o->sock, method, path, b, b ? strlen(b) : 0, TIMEOUT_MS, MAX_RESP, &status, &resp, &len,
				err, sizeof err);
	free(b);
	if (rc == -ENOENT || rc == -ECONNREFUSED) {
		fprintf(stderr, "%s: cannot reach the gateway: %s (is the gateway running? admin_socket=%s)\n", o->prog,
			err, o->sock);
		return NULL;
	}
	if (rc == -EACCES || rc == -EPERM) {
		fprintf(stderr, "%s: permission denied on the admin socket %s (run as the gateway's user or root)\n",
			o->prog, o->sock);
		return NULL;
	}
	if (rc < 0) {
		fprintf(stderr, "%s: %s\n", o->prog, err);
		return NULL;
	}
	j = json_loadb(resp, len, 0, NULL);
	if (status / 100 != 2) {
		const char *e = json_string_value(json_object_get(j, "error"));
		fprintf(stderr, "%s: the gateway refused (HTTP %d): %s\n", o->prog, status, e ? e : resp);
		json_decref(j);
		j = NULL;
	} else if (!j) {
		fprintf(stderr, "%s: the gateway's answer is not JSON: %.200s\n", o->prog, resp);
	}
	free(resp);
	return j;
}

static void print_json(json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_ENCODE_ANY);
	if (s)
		printf("%s\n", s);
	free(s);
}

static const char *str(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));
	return s ? s : "-";
}

/* Text cut to n display bytes with an ellipsis, never inside a UTF-8 character. */
static void cut(const char *s, char *out, size_t n)
{
	size_t len = strlen(s), k = len;
	if (len <= n) {
		memcpy(out, s, len + 1);
		return;
	}
	k = n - 3;
	while (k && ((unsigned char)s[k] & 0xC0) == 0x80)
		k--;
	memcpy(out, s, k);
	memcpy(out + k, "...", 4);
}

static void approvals_table(json_t *arr)
{
	size_t i;
	json_t *e;
	if (!json_array_size(arr)) {
		printf("no calls waiting for approval\n");
		return;
	}
	printf("%-12s  %-16s  %-20s  %-16s  %-14s  %7s  %7s  %s\n", "ID", "ROUTE", "TOOL", "CLIENT", "RULE", "WAITED",
	       "EXPIRES", "ARGS");
	json_array_foreach (arr, i, e) {
		json_t *args = json_object_get(e, "args");
		char *as = args && !json_is_null(args) ? json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
		char a[64], r[20], t[24], c[20], ru[18];
		cut(as ? as : json_string_value(json_object_get(e, "args_preview")) ? str(e, "args_preview") : "-", a, 60);
		cut(str(e, "route"), r, 16);
		cut(str(e, "tool"), t, 20);
		cut(str(e, "client"), c, 16);
		cut(str(e, "rule"), ru, 14);
		printf("%-12s  %-16s  %-20s  %-16s  %-14s  %6llds  %6llds  %s\n", str(e, "id"), r, t, c, ru,
		       (long long)json_integer_value(json_object_get(e, "waited_ms")) / 1000,
		       (long long)json_integer_value(json_object_get(e, "expires_in_ms")) / 1000, a);
		free(as);
	}
}

int approvals_main(int argc, char **argv)
{
	struct opts o = { .prog = "postern approvals", .first = 1 };
	const char *sub;
	json_t *j = NULL, *body = NULL;
	int rc = RC_USAGE, n;

	if ((n = parse(argc, argv, &o, true, approvals_usage)) != 0)
		return n == RC_HELP ? 0 : n;
	n = o.first - 1; /* positional arguments */
	sub = n ? argv[1] : NULL;
	if (!sub || (strcmp(sub, "list") && strcmp(sub, "approve") && strcmp(sub, "deny"))) {
		fprintf(stderr, "%s: %s%s%s (want list, approve ID or deny ID; see --help)\n", o.prog,
			sub ? "unknown subcommand '" : "no subcommand", sub ? sub : "", sub ? "'" : "");
		return RC_USAGE;
	}
	if ((!strcmp(sub, "list") && n != 1) || (strcmp(sub, "list") && n != 2)) {
		fprintf(stderr, "%s %s: %s\n", o.prog, sub, !strcmp(sub, "list") ? "takes no argument" : "wants one ID");
		return RC_USAGE;
	}
	if (o.reason && !strcmp(sub, "list")) {
		fprintf(stderr, "%s: --reason goes with approve or deny\n", o.prog);
		return RC_USAGE;
	}
	if (resolve_socket(&o) < 0)
		return 1;
	rc = 1;
	if (!strcmp(sub, "list")) {
		if (!(j = call(&o, "GET", "/approvals", NULL)))
			goto done;
		if (o.json)
			print_json(j);
		else
			approvals_table(j);
	} else {
		char path[200];
		const char *id = argv[2];
		if (strlen(id) > 64 || strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789") != strlen(id) || !*id) {
			fprintf(stderr, "%s: '%s' is not an approval id (see postern approvals list)\n", o.prog, id);
			goto done;
		}
		snprintf(path, sizeof path, "/approvals/%s/%s", id, sub);
		if (o.reason && !(body = json_pack("{s:s}", "reason", o.reason))) {
			fprintf(stderr, "%s: --reason: not UTF-8 text\n", o.prog);
			goto done;
		}
		if (!(j = call(&o, "POST", path, body)))
			goto done;
		if (o.json)
			print_json(j);
		else
			printf("%s: %s by %s\n", str(j, "id"), str(j, "outcome"), str(j, "by"));
	}
	rc = 0;
done:
	json_decref(j);
	json_decref(body);
	free(o.sock_owned);
	return rc;
}

int pins_main(int argc, char **argv)
{
	struct opts o = { .prog = "postern pins", .first = 1 };
	const char *sub;
	json_t *j = NULL, *body = NULL;
	int rc, n;

	if ((n = parse(argc, argv, &o, false, pins_usage)) != 0)
		return n == RC_HELP ? 0 : n;
	n = o.first - 1;
	sub = n ? argv[1] : NULL;
	if (!sub || (strcmp(sub, "list") && strcmp(sub, "accept"))) {
		fprintf(stderr, "%s: %s%s%s (want list or accept ROUTE TOOL; see --help)\n", o.prog,
			sub ? "unknown subcommand '" : "no subcommand", sub ? sub : "", sub ? "'" : "");
		return RC_USAGE;
	}
	if ((!strcmp(sub, "list") && n != 1) || (!strcmp(sub, "accept") && n != 3)) {
		fprintf(stderr, "%s %s: %s\n", o.prog, sub, !strcmp(sub, "list") ? "takes no argument" : "wants ROUTE TOOL");
		return RC_USAGE;
	}
	if (resolve_socket(&o) < 0)
		return 1;
	rc = 1;
	if (!strcmp(sub, "list")) {
		size_t i;
		json_t *e;
		if (!(j = call(&o, "GET", "/pins", NULL)))
			goto done;
		if (o.json) {
			print_json(j);
		} else if (!json_array_size(j)) {
			printf("no tools pinned yet\n");
		} else {
			printf("%-20s  %-24s  %-16s  %s\n", "ROUTE", "TOOL", "SHA256", "STATUS");
			json_array_foreach (j, i, e) {
				const char *pend = json_string_value(json_object_get(e, "pending"));
				printf("%-20s  %-24s  %.16s  %s%.16s%s\n", str(e, "route"), str(e, "tool"), str(e, "sha256"),
				       pend ? "CHANGED to " : "pinned", pend ? pend : "",
				       pend ? ": hidden until `postern pins accept ROUTE TOOL`" : "");
			}
		}
	} else {
		if (!(body = json_pack("{s:s,s:s}", "route", argv[2], "tool", argv[3]))) {
			fprintf(stderr, "%s: ROUTE and TOOL must be UTF-8 text\n", o.prog);
			goto done;
		}
		if (!(j = call(&o, "POST", "/pins/accept", body)))
			goto done;
		if (o.json)
			print_json(j);
		else
			printf("accepted %s/%s: pinned to %.16s%s\n", str(j, "route"), str(j, "tool"), str(j, "sha256"),
			       json_is_true(json_object_get(j, "saved")) ? " (saved to the pins_file)"
									  : " (in memory: the gateway has no pins_file)");
	}
	rc = 0;
done:
	json_decref(j);
	json_decref(body);
	free(o.sock_owned);
	return rc;
}
