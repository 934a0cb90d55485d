#include "proxy/route.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/arr.h"

const char *route_kind_name(route_kind k)
{
	switch (k) {
	case ROUTE_HTTP: return "http";
	case ROUTE_HTTPS: return "https";
	case ROUTE_STDIO: return "stdio";
	case ROUTE_SANDBOX: return "sandbox";
	}
	return "?";
}

static bool host_char(char ch)
{
	return isalnum((unsigned char)ch) || ch == '-' || ch == '.' || ch == '_';
}

/* Letters, digits, '-', '_' and dots between non-empty labels. */
static bool hostname_valid(const char *s, size_t n)
{
	if (n == 0 || n > ROUTE_HOST_MAX || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!host_char(s[i]))
			return false;
		if (s[i] == '.' && s[i + 1] == '.')
			return false;
	}
	return true;
}

bool route_name_valid(const char *name)
{
	return name && hostname_valid(name, strlen(name));
}

static char **strv_dup(char *const *v)
{
	size_t n = 0;
	char **o;
	while (v && v[n])
		n++;
	if (!(o = calloc(n + 1, sizeof *o)))
		return NULL;
	for (size_t i = 0; i < n; i++)
		if (!(o[i] = strdup(v[i]))) {
			for (size_t j = 0; j < i; j++)
				free(o[j]);
			free(o);
			return NULL;
		}
	return o;
}

static void strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

static int parse_stdio(const char *value, route *out, char *why, size_t whylen)
{
	const char *p = value + 6;
	size_t n = 0, cap = 8;
	char **v = calloc(cap + 1, sizeof *v);
	if (!v)
		goto nomem;
	while (*p) {
		size_t len;
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			break;
		len = strcspn(p, " \t");
		if (n == cap) {
			char **nv = realloc(v, (cap * 2 + 1) * sizeof *v);
			if (!nv)
				goto nomem;
			v = nv;
			cap *= 2;
		}
		if (!(v[n++] = strndup(p, len)))
			goto nomem;
		v[n] = NULL;
		p += len;
	}
	if (n == 0 || v[0][0] != '/') {
		snprintf(why, whylen, "stdio: needs the absolute path of the command, e.g. stdio:/usr/bin/my-mcp-server --flag");
		strv_free(v);
		return -EINVAL;
	}
	out->kind = ROUTE_STDIO;
	out->argv = v;
	if (!(out->value = strdup(value)))
		goto nomem2;
	return 0;
nomem:
	strv_free(v);
	snprintf(why, whylen, "out of memory");
	return -ENOMEM;
nomem2:
	strv_free(out->argv);
	out->argv = NULL;
	snprintf(why, whylen, "out of memory");
	return -ENOMEM;
}

bool route_is_mcp(const route *r) { return r->kind == ROUTE_STDIO || r->kind == ROUTE_SANDBOX; }

void route_free_fields(route *r)
{
	free(r->host);
	free(r->value);
	strv_free(r->argv);
	free(r->workspace_root);
	r->host = r->value = r->workspace_root = NULL;
	r->argv = NULL;
}

int route_parse_value(const char *value, route *out, char *why, size_t whylen)
{
	const char *rest, *colon;
	route_kind kind;
	size_t hn;
	unsigned long port = 0;

	if (!value || !*value) {
		snprintf(why, whylen, "empty value");
		return -EINVAL;
	}
	if (!strncmp(value, "http://", 7)) {
		kind = ROUTE_HTTP;
		rest = value + 7;
	} else if (!strncmp(value, "https://", 8)) {
		kind = ROUTE_HTTPS;
		rest = value + 8;
	} else if (!strncmp(value, "stdio:", 6)) {
		return parse_stdio(value, out, why, whylen);
	} else if (!strncmp(value, "sandbox:", 8)) {
		if (value[8]) {
			snprintf(why, whylen, "write options in the mapping form (name: {sandbox: {memory: 1G, ...}})");
			return -EINVAL;
		}
		out->kind = ROUTE_SANDBOX;
		if (!(out->value = strdup(value))) {
			snprintf(why, whylen, "out of memory");
			return -ENOMEM;
		}
		return 0;
	} else {
		snprintf(why, whylen, "scheme must be http or https");
		return -EINVAL;
	}
	if (strpbrk(rest, "/?#")) {
		snprintf(why, whylen, "a path, query or fragment is not allowed (paths are forwarded from the request)");
		return -EINVAL;
	}
	if (strchr(rest, '@')) {
		snprintf(why, whylen, "user info is not allowed");
		return -EINVAL;
	}
	if (rest[0] == '[') {
		snprintf(why, whylen, "IPv6 upstreams are not supported (IPv4 only)");
		return -EINVAL;
	}
	colon = strchr(rest, ':');
	if (!colon) {
		snprintf(why, whylen, "the port is missing");
		return -EINVAL;
	}
	hn = (size_t)(colon - rest);
	if (!hostname_valid(rest, hn)) {
		snprintf(why, whylen, "bad host");
		return -EINVAL;
	}
	if (!colon[1] || strlen(colon + 1) > 5) {
		snprintf(why, whylen, "bad port");
		return -EINVAL;
	}
	for (const char *p = colon + 1; *p; p++) {
		if (!isdigit((unsigned char)*p)) {
			snprintf(why, whylen, "bad port");
			return -EINVAL;
		}
		port = port * 10 + (unsigned long)(*p - '0');
	}
	if (port == 0 || port > 65535) {
		snprintf(why, whylen, "port out of range");
		return -EINVAL;
	}
	out->kind = kind;
	out->port = (uint16_t)port;
	out->host = strndup(rest, hn);
	out->value = strdup(value);
	if (!out->host || !out->value) {
		free(out->host);
		free(out->value);
		out->host = out->value = NULL;
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

int route_host_normalize(const char *host, size_t n, char *out, size_t outlen)
{
	const char *end;
	size_t hn;

	while (n && (host[0] == ' ' || host[0] == '\t')) {
		host++;
		n--;
	}
	while (n && (host[n - 1] == ' ' || host[n - 1] == '\t'))
		n--;
	if (n == 0)
		return -EINVAL;
	if (host[0] == '[') {
		/* [v6]:port: keep the literal without brackets so an exact route name can match it. */
		const char *close = memchr(host, ']', n);
		if (!close)
			return -EINVAL;
		end = close + 1;
		if (end != host + n && (*end != ':' || end + 1 == host + n))
			return -EINVAL;
		host++;
		hn = (size_t)(close - host);
		if (hn == 0 || hn >= outlen)
			return -EINVAL;
		for (size_t i = 0; i < hn; i++) {
			if (!isxdigit((unsigned char)host[i]) && host[i] != ':' && host[i] != '.')
				return -EINVAL;
			out[i] = (char)tolower((unsigned char)host[i]);
		}
		out[hn] = 0;
		return 0;
	}
	end = memchr(host, ':', n);
	hn = end ? (size_t)(end - host) : n;
	if (end) {
		/* The port must be digits; its value does not matter for routing. */
		if (end + 1 == host + n)
			return -EINVAL;
		for (const char *p = end + 1; p < host + n; p++)
			if (!isdigit((unsigned char)*p))
				return -EINVAL;
	}
	if (hn && host[hn - 1] == '.')
		hn--;
	if (hn == 0 || hn >= outlen || !hostname_valid(host, hn))
		return -EINVAL;
	for (size_t i = 0; i < hn; i++)
		out[i] = (char)tolower((unsigned char)host[i]);
	out[hn] = 0;
	return 0;
}

static const route *find(const route_table *t, const char *name, size_t n)
{
	for (size_t i = 0; i < t->n; i++)
		if (strlen(t->v[i].name) == n && !strncmp(t->v[i].name, name, n))
			return &t->v[i];
	return NULL;
}

const route *route_lookup(const route_table *t, const char *tunnel_domain, const char *host)
{
	const route *r;
	size_t hn, dn;

	if (!t || !host)
		return NULL;
	hn = strlen(host);
	if ((r = find(t, host, hn)))
		return r;
	if (!tunnel_domain || !*tunnel_domain)
		return NULL;
	dn = strlen(tunnel_domain);
	if (hn < dn + 2 || host[hn - dn - 1] != '.' || strcasecmp(host + hn - dn, tunnel_domain) != 0)
		return NULL;
	return find(t, host, hn - dn - 1);
}

void route_table_init(route_table *t) { memset(t, 0, sizeof *t); }

int route_table_add(route_table *t, const char *name, const route *r)
{
	route nr;
	size_t n;

	if (!route_name_valid(name))
		return -EINVAL;
	n = strlen(name);
	for (size_t i = 0; i < t->n; i++)
		if (strlen(t->v[i].name) == n && !strcasecmp(t->v[i].name, name))
			return -EEXIST;
	if (ARR_RESERVE(t->v, t->n, t->cap, 8) < 0)
		return -ENOMEM;
	memset(&nr, 0, sizeof nr);
	nr.kind = r->kind;
	nr.port = r->port;
	nr.name = strdup(name);
	nr.host = r->host ? strdup(r->host) : NULL;
	nr.value = r->value ? strdup(r->value) : NULL;
	nr.argv = r->argv ? strv_dup(r->argv) : NULL;
	nr.workspace_root = r->workspace_root ? strdup(r->workspace_root) : NULL;
	nr.max_sessions = r->max_sessions;
	nr.idle_timeout_ms = r->idle_timeout_ms;
	nr.reclaim_idle_ms = r->reclaim_idle_ms;
	if (!nr.name || (r->host && !nr.host) || (r->value && !nr.value) || (r->argv && !nr.argv) ||
	    (r->workspace_root && !nr.workspace_root)) {
		free(nr.name);
		route_free_fields(&nr);
		return -ENOMEM;
	}
	for (char *p = nr.name; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	t->v[t->n++] = nr;
	return 0;
}

void route_table_free(route_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++) {
		free(t->v[i].name);
		route_free_fields(&t->v[i]);
	}
	free(t->v);
	memset(t, 0, sizeof *t);
}

static bool same_str(const char *a, const char *b) { return a == b || (a && b && !strcmp(a, b)); }

bool route_same_process(const route *a, const route *b)
{
	size_t i = 0;
	if (a->kind != b->kind || !route_is_mcp(a) || !same_str(a->workspace_root, b->workspace_root) ||
	    a->max_sessions != b->max_sessions || a->idle_timeout_ms != b->idle_timeout_ms ||
	    a->reclaim_idle_ms != b->reclaim_idle_ms)
		return false;
	for (; a->argv && b->argv && a->argv[i] && b->argv[i]; i++)
		if (strcmp(a->argv[i], b->argv[i]))
			return false;
	/* Both lists end at once (or are both absent, or one is absent and the other empty). */
	return !(a->argv && a->argv[i]) && !(b->argv && b->argv[i]);
}
