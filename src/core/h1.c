#include "core/h1.h"
#include "core/cbuf.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define H(p) ((h1 *)(p)->data)

static int on_message_begin(http_parser *p)
{
	(void)p;
	return 0;
}

/* Fails the parse from a callback: h1_parse reports h->err, not the callback error http-parser records. */
static int fail(h1 *h, h1_err err, const char *errstr)
{
	h->err = err;
	h->errstr = errstr;
	return 1;
}

static int on_url(http_parser *p, const char *at, size_t n)
{
	h1 *h = H(p);
	size_t room = h->target_cap - 1 - h->target_len;
	if (n > room) {
		h->target_long = true;
		n = room;
	}
	memcpy(h->target + h->target_len, at, n);
	h->target_len += n;
	h->target[h->target_len] = 0;
	return 0;
}

static int hdr_put(h1 *h, const char *at, size_t n)
{
	if (n == 0)
		return 0;
	if (memchr(at, 0, n) || memchr(at, '\r', n) || memchr(at, '\n', n))
		return fail(h, H1_E_SYNTAX, "CR, LF or NUL inside a header field");
	if (n > h->hdrs_cap - h->hdrs_len)
		return fail(h, H1_E_HEAD_TOO_LARGE, "header fields over the size limit");
	memcpy(h->hdrs + h->hdrs_len, at, n);
	h->hdrs_len += n;
	return 0;
}

static int hdr_end(h1 *h)
{
	if (h->hdrs_len >= h->hdrs_cap)
		return fail(h, H1_E_HEAD_TOO_LARGE, "header fields over the size limit");
	h->hdrs[h->hdrs_len++] = 0;
	return 0;
}

/* Ends the open name (with an empty value: http-parser may not report one) or value. */
static int hdr_close(h1 *h)
{
	int r = 0;
	if (h->hdr_state == 1)
		r = hdr_end(h) || hdr_end(h);
	else if (h->hdr_state == 2)
		r = hdr_end(h);
	h->hdr_state = 0;
	return r;
}

static int on_header_field(http_parser *p, const char *at, size_t n)
{
	h1 *h = H(p);
	if (h->in_value || h->field_len == (size_t)-1) {
		/* a new header starts */
		h->in_value = false;
		h->field_len = 0;
		if (h->hdrs) {
			if (hdr_close(h))
				return 1;
			if (++h->nheaders > h->hdrs_max)
				return fail(h, H1_E_HEAD_TOO_LARGE, "too many header fields");
			h->hdr_state = 1;
		}
	}
	if (h->hdrs && hdr_put(h, at, n))
		return 1;
	for (size_t i = 0; i < n; i++) {
		if (h->field_len < sizeof h->field)
			h->field[h->field_len] = at[i];
		h->field_len++;
	}
	return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n)
{
	h1 *h = H(p);
	if (!h->in_value) {
		h->in_value = true;
		h->field_is_host = h->request && h->field_len == 4 && !strncasecmp(h->field, "host", 4);
		if (h->field_is_host)
			h->host_count++;
		h->field_is_te = h->request && !h->head_done && h->field_len == 17 &&
				 !strncasecmp(h->field, "transfer-encoding", 17);
		if (h->field_is_te)
			h->te_count++;
		if (h->hdrs) {
			if (hdr_end(h))
				return 1;
			h->hdr_state = 2;
		}
	}
	if (h->hdrs && hdr_put(h, at, n))
		return 1;
	if (h->field_is_te && h->te_count == 1) {
		if (h->te_len + n >= sizeof h->te)
			h->te_long = true;
		else {
			memcpy(h->te + h->te_len, at, n);
			h->te_len += n;
		}
	}
	if (h->field_is_host && h->host_count == 1) {
		if (h->host_len + n > H1_HOST_KEEP) {
			h->host_too_long = true;
			return 0;
		}
		memcpy(h->host + h->host_len, at, n);
		h->host_len += n;
		h->host[h->host_len] = 0;
	}
	return 0;
}

/* A request's Transfer-Encoding is one header saying "chunked" on HTTP/1.1. http-parser takes more: a list
 * ending in chunked ("identity, chunked"), several headers, and chunked framing on HTTP/1.0. A server behind
 * a relay that reads those another way (an unknown coding, or no Transfer-Encoding on 1.0, means no body to
 * it) would take the body for the next request: refused here, before the head is relayed. */
static bool te_ok(const h1 *h)
{
	size_t n = h->te_len;
	while (n && (h->te[n - 1] == ' ' || h->te[n - 1] == '\t'))
		n--;
	return h->te_count == 1 && !h->te_long && h->p.http_major == 1 && h->p.http_minor >= 1 && n == 7 &&
	       !strncasecmp(h->te, "chunked", 7);
}

static int on_headers_complete(http_parser *p)
{
	h1 *h = H(p);
	h->head_done = true;
	h->method = p->method;
	h->status = p->status_code;
	h->http_minor = p->http_minor;
	h->upgrade = p->upgrade;
	h->ev = H1_HEAD;
	http_parser_pause(p, 1);
	if (h->hdrs && hdr_close(h))
		return 0; /* h->err is set; h1_parse reports it */
	if (h->request) {
		/* HTTP/0.9 ("GET /") and 2.x heads are no HTTP/1 requests: relayed, they would be read otherwise. */
		if (p->http_major != 1) {
			h->err = H1_E_SYNTAX;
			h->errstr = "HTTP version other than 1.0 and 1.1";
			return 0;
		}
		if (h->te_count && !te_ok(h)) {
			h->err = H1_E_SYNTAX;
			h->errstr = h->te_count > 1		     ? "more than one Transfer-Encoding header"
				    : h->p.http_major != 1 || !h->p.http_minor ? "Transfer-Encoding in an HTTP/1.0 request"
									 : "Transfer-Encoding other than chunked";
			return 0;
		}
		if (!h->any_host && (h->host_count > 1 || h->host_too_long)) {
			h->err = H1_E_HOST;
			h->errstr = h->host_too_long ? "Host header too long" : "more than one Host header";
		}
		return 0;
	}
	/* These never have a body, whatever Content-Length says. */
	if (h->skip_body || h->status / 100 == 1 || h->status == 204 || h->status == 304)
		return 1;
	return 0;
}

static int on_body(http_parser *p, const char *at, size_t n)
{
	h1 *h = H(p);
	if (h->body_cb)
		h->body_cb(h->body_ud, at, n);
	return 0;
}

static int on_message_complete(http_parser *p)
{
	h1 *h = H(p);
	h->done = true;
	h->keep_alive = http_should_keep_alive(p) != 0;
	h->upgrade = p->upgrade;
	h->ev = H1_DONE;
	http_parser_pause(p, 1);
	return 0;
}

static const http_parser_settings settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_field,
	.on_header_value = on_header_value,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

static void reset_fields(h1 *h)
{
	h->head_bytes = 0;
	h->head_done = h->done = h->skip_body = h->keep_alive = h->upgrade = false;
	h->ev = H1_MORE;
	h->method = h->status = h->http_minor = 0;
	h->target[0] = h->host[0] = 0;
	h->target_len = h->host_len = 0;
	h->target_long = false;
	h->hdrs_len = 0;
	h->nheaders = 0;
	h->hdr_state = 0;
	h->host_count = 0;
	h->host_too_long = false;
	h->field_len = (size_t)-1;
	h->field_is_host = h->field_is_te = h->in_value = false;
	h->te_len = 0;
	h->te_count = 0;
	h->te_long = false;
	memset(&h->scan, 0, sizeof h->scan);
	h->err = H1_E_NONE;
	h->errstr = NULL;
	h->body_cb = NULL;
	h->body_ud = NULL;
}

int h1_absolute_target(const char *url, size_t len, char *host, size_t hostcap, uint16_t *port, char *path,
		       size_t pathcap, char *err, size_t errlen)
{
	struct http_parser_url u;
	const char *why = NULL;
	size_t po, pe;

	http_parser_url_init(&u);
	if (len == 0 || url[0] == '/' || http_parser_parse_url(url, len, 0, &u) != 0 || !(u.field_set & (1 << UF_HOST)) ||
	    !(u.field_set & (1 << UF_SCHEMA))) {
		why = "a proxy request needs an absolute http:// URL";
		goto out;
	}
	if (u.field_data[UF_SCHEMA].len != 4 || strncasecmp(url + u.field_data[UF_SCHEMA].off, "http", 4)) {
		why = "only http:// URLs; use CONNECT for https";
		goto out;
	}
	if (u.field_data[UF_HOST].len >= hostcap) {
		why = "host too long";
		goto out;
	}
	memcpy(host, url + u.field_data[UF_HOST].off, u.field_data[UF_HOST].len);
	host[u.field_data[UF_HOST].len] = 0;
	*port = (u.field_set & (1 << UF_PORT)) ? u.port : 80;
	if (*port == 0) {
		why = "bad port";
		goto out;
	}
	/* The path runs to the end of the query; a fragment is not sent. */
	po = (u.field_set & (1 << UF_PATH)) ? u.field_data[UF_PATH].off : len;
	pe = (u.field_set & (1 << UF_QUERY)) ? (size_t)u.field_data[UF_QUERY].off + u.field_data[UF_QUERY].len
	     : (u.field_set & (1 << UF_PATH)) ? po + u.field_data[UF_PATH].len
					       : po;
	if (pe > po)
		snprintf(path, pathcap, "%.*s", (int)(pe - po), url + po);
	else
		snprintf(path, pathcap, "/");
	if (path[0] != '/')
		why = "bad path";
out:
	if (why)
		snprintf(err, errlen, "%s", why);
	return why ? -EINVAL : 0;
}

/* The index of the '\n' ending the line that starts at i, or len. memchr rather than a byte loop: the guard
 * looks up several headers per call, and the loop cost ~1.5k instructions a lookup. */
static size_t line_end(const uint8_t *head, size_t i, size_t len)
{
	const uint8_t *p = i < len ? memchr(head + i, '\n', len - i) : NULL;
	return p ? (size_t)(p - head) : len;
}

int h1_head_value(const uint8_t *head, size_t len, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name), i = line_end(head, 0, len);
	/* Skip the start line; then one header per line. Obsolete line folding is refused by http-parser. */
	while (++i < len) {
		size_t end = line_end(head, i, len), vs, ve;
		if (end - i > nl && head[i + nl] == ':' && !strncasecmp((const char *)head + i, name, nl)) {
			vs = i + nl + 1;
			ve = end;
			while (vs < ve && (head[vs] == ' ' || head[vs] == '\t'))
				vs++;
			while (ve > vs && (head[ve - 1] == '\r' || head[ve - 1] == ' ' || head[ve - 1] == '\t'))
				ve--;
			if (ve - vs >= outlen)
				return -E2BIG;
			memcpy(out, head + vs, ve - vs);
			out[ve - vs] = 0;
			return (int)(ve - vs);
		}
		i = end;
	}
	return -ENOENT;
}

static bool dropped(const uint8_t *line, size_t n, const char *const *drop)
{
	for (; drop && *drop; drop++) {
		size_t k = strlen(*drop);
		if (n > k && line[k] == ':' && !strncasecmp((const char *)line, *drop, k))
			return true;
	}
	return false;
}

int h1_head_count(const uint8_t *head, size_t len, const char *name)
{
	const char *const one[] = { name, NULL };
	size_t i = line_end(head, 0, len); /* the start line */
	int n = 0;
	while (++i < len) {
		size_t end = line_end(head, i, len);
		if (dropped(head + i, end - i, one))
			n++;
		i = end;
	}
	return n;
}

int h1_head_rewrite(const uint8_t *head, size_t len, const char *const *drop, const char *add, cbuf *out)
{
	size_t i = 0;
	bool first = true;
	int rc = 0;
	while (i < len && rc == 0) {
		size_t end = line_end(head, i, len), n = end - i;
		if (n && head[i + n - 1] == '\r')
			n--;
		if (n == 0)
			break; /* the blank line: the head's end */
		if (first || !dropped(head + i, n, drop)) {
			rc = cbuf_append(out, head + i, n);
			if (rc == 0)
				rc = cbuf_append(out, "\r\n", 2);
		}
		first = false;
		i = end + 1;
	}
	if (rc == 0 && add && *add)
		rc = cbuf_append(out, add, strlen(add));
	if (rc == 0)
		rc = cbuf_append(out, "\r\n", 2);
	return rc;
}

void h1_init(h1 *h, bool request, uint32_t max_head)
{
	memset(h, 0, sizeof *h);
	h->request = request;
	h->max_head = max_head;
	h->target = h->target_buf;
	h->target_cap = sizeof h->target_buf;
	http_parser_init(&h->p, request ? HTTP_REQUEST : HTTP_RESPONSE);
	h->p.data = h;
	reset_fields(h);
}

void h1_next(h1 *h)
{
	http_parser_init(&h->p, h->request ? HTTP_REQUEST : HTTP_RESPONSE);
	h->p.data = h;
	reset_fields(h);
}

void h1_keep_target(h1 *h, char *buf, size_t cap)
{
	h->target = buf;
	h->target_cap = cap;
	h->target[0] = 0;
	h->target_len = 0;
}

void h1_keep_headers(h1 *h, char *buf, size_t cap, unsigned max)
{
	h->hdrs = buf;
	h->hdrs_cap = cap;
	h->hdrs_max = max;
	h->hdrs_len = 0;
}

void h1_any_host(h1 *h) { h->any_host = true; }

int h1_header_next(const h1 *h, size_t *pos, const char **name, const char **value)
{
	size_t nl, vl;
	if (!h->hdrs || *pos >= h->hdrs_len)
		return 0;
	*name = h->hdrs + *pos;
	nl = strlen(*name);
	*value = *name + nl + 1;
	vl = strlen(*value);
	*pos += nl + 1 + vl + 1;
	return 1;
}

void h1_skip_body(h1 *h) { h->skip_body = true; }

bool h1_started(const h1 *h) { return h->head_bytes > 0 || h->head_done; }

const char *h1_method_name(const h1 *h) { return http_method_str((enum http_method)h->method); }

/* The request grammar check. http-parser is built without HTTP_PARSER_STRICT (Debian's and upstream's
 * library default), and then it takes any byte after a CR as the LF (so "\r\n\rX" ends a head and "abcXX"
 * ends a chunk of 3), bare LF line ends, obsolete line folding ("Transfer-Encoding:\r\n chunked" is chunked
 * to it), and whitespace before a header's colon ("Host : x" is not a Host to us, "Content-Length : 5" is a
 * Content-Length to it). The proxy relays a request's bytes unchanged, so each of those is a request that an
 * upstream can frame otherwise (request smuggling); the egress proxy and the edge read them from hostile
 * peers. So the bytes of a request are checked here against RFC 9112 before http-parser sees them: h1_parse
 * hands it only the bytes before the first one that breaks the grammar, and reports H1_E_SYNTAX when it gets
 * there. Control bytes in names and values are left to http-parser, which refuses them. */
enum {
	SC_START,      /* before the request line: empty lines (CRLF) are ignored (RFC 9112 2.2) */
	SC_START_LF,
	SC_LINE,       /* the request line */
	SC_LINE_LF,
	SC_FIELD,      /* the start of a header (or trailer) line */
	SC_NAME,
	SC_VALUE,
	SC_VALUE_LF,
	SC_END_LF,     /* the CR of the empty line that ends the head (or the trailers) was seen */
	SC_OPAQUE,     /* a Content-Length body, a tunnel, or past the end of the message: not ours to check */
	SC_CHUNK,      /* chunk-size = 1*HEXDIG */
	SC_CHUNK_SIZE,
	SC_CHUNK_BWS,  /* whitespace after the size: only before a chunk extension */
	SC_CHUNK_EXT,
	SC_CHUNK_LF,
	SC_CHUNK_DATA,
	SC_CHUNK_CR,   /* CRLF after a chunk's data */
	SC_CHUNK_DATA_LF,
};

static int hexdig(uint8_t c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Runs the check over n bytes from state sc; returns how many are valid (n when all are), with why set when
 * fewer. */
static size_t scan(const h1 *h, struct h1_scan *sc, const uint8_t *p, size_t n, const char **why)
{
	size_t i = 0;
	int d;
	while (i < n) {
		uint8_t c = p[i];
		switch (sc->st) {
		case SC_START:
			if (c == '\r') {
				sc->st = SC_START_LF;
				break;
			}
			if (c == '\n')
				goto bare_lf;
			sc->st = SC_LINE;
			continue;
		case SC_START_LF:
		case SC_LINE_LF:
		case SC_VALUE_LF:
			if (c != '\n')
				goto bare_cr;
			sc->st = sc->st == SC_START_LF ? SC_START : SC_FIELD;
			break;
		case SC_LINE:
			if (c == '\r') {
				sc->st = SC_LINE_LF;
				break;
			}
			if (c == '\n')
				goto bare_lf;
			if (c < 0x20 || c == 0x7f) {
				*why = "control character in the request line";
				return i;
			}
			if (c == ' ' && sc->sp) {
				*why = "more than one space between request line parts";
				return i;
			}
			sc->sp = c == ' ';
			break;
		case SC_FIELD:
			if (c == '\r') {
				sc->st = SC_END_LF;
				break;
			}
			if (c == '\n')
				goto bare_lf;
			if (c == ' ' || c == '\t') {
				*why = "header line starting with whitespace (obsolete line folding)";
				return i;
			}
			sc->st = SC_NAME;
			continue;
		case SC_NAME:
			if (c == ':')
				sc->st = SC_VALUE;
			else if (c == ' ' || c == '\t') {
				*why = "whitespace in or after a header field name";
				return i;
			} else if (c == '\r' || c == '\n') {
				*why = "header line without ':'";
				return i;
			}
			break;
		case SC_VALUE:
			if (c == '\r')
				sc->st = SC_VALUE_LF;
			else if (c == '\n')
				goto bare_lf;
			break;
		case SC_END_LF:
			if (c != '\n')
				goto bare_cr;
			/* The head's end: the framing http-parser chose is known once it reported the head (the
			 * check ahead of it, before that, cannot know and stops here). A CONNECT has no body. */
			sc->st = !sc->trailer && h->head_done && (h->p.flags & F_CHUNKED) && h->p.method != HTTP_CONNECT
					 ? SC_CHUNK
					 : SC_OPAQUE;
			break;
		case SC_OPAQUE:
			return n;
		case SC_CHUNK:
		case SC_CHUNK_SIZE:
			if ((d = hexdig(c)) >= 0) {
				if (++sc->digits > 16) {
					*why = "chunk size too large";
					return i;
				}
				sc->left = sc->left * 16 + (unsigned)d;
				sc->st = SC_CHUNK_SIZE;
				break;
			}
			if (sc->st == SC_CHUNK) {
				*why = "invalid chunk size";
				return i;
			}
			/* fall through */
		case SC_CHUNK_BWS:
			if (c == ' ' || c == '\t')
				sc->st = SC_CHUNK_BWS;
			else if (c == ';')
				sc->st = SC_CHUNK_EXT;
			else if (c == '\r' && sc->st == SC_CHUNK_SIZE)
				sc->st = SC_CHUNK_LF;
			else if (c == '\n')
				goto bare_lf;
			else {
				*why = "invalid chunk size line";
				return i;
			}
			break;
		case SC_CHUNK_EXT:
			if (c == '\r')
				sc->st = SC_CHUNK_LF;
			else if (c == '\n')
				goto bare_lf;
			else if ((c < 0x20 && c != '\t') || c == 0x7f) {
				*why = "control character in a chunk extension";
				return i;
			}
			break;
		case SC_CHUNK_LF:
			if (c != '\n')
				goto bare_cr;
			sc->digits = 0;
			if (sc->left == 0) {
				sc->trailer = true;
				sc->st = SC_FIELD;
			} else {
				sc->st = SC_CHUNK_DATA;
			}
			break;
		case SC_CHUNK_DATA: {
			size_t k = n - i < sc->left ? n - i : (size_t)sc->left;
			sc->left -= k;
			i += k;
			if (sc->left == 0)
				sc->st = SC_CHUNK_CR;
			continue;
		}
		case SC_CHUNK_CR:
			if (c != '\r') {
				*why = "chunk data not followed by CRLF";
				return i;
			}
			sc->st = SC_CHUNK_DATA_LF;
			break;
		case SC_CHUNK_DATA_LF:
			if (c != '\n')
				goto bare_cr;
			sc->st = SC_CHUNK;
			break;
		}
		i++;
	}
	return n;
bare_cr:
	*why = "CR not followed by LF";
	return i;
bare_lf:
	*why = "line ending in a bare LF";
	return i;
}

h1_ev h1_parse(h1 *h, const uint8_t *data, size_t n, size_t *used)
{
	size_t lim = n, got;
	bool in_head = !h->head_done;
	const char *bad = NULL;
	enum http_errno e;

	*used = 0;
	if (h->done || h->err)
		return h->err ? H1_ERR : H1_DONE;
	if (in_head && lim > (size_t)h->max_head + 1 - h->head_bytes)
		lim = (size_t)h->max_head + 1 - h->head_bytes;
	if (h->request) {
		/* http-parser gets only the bytes before the first one that breaks the grammar (scan). */
		struct h1_scan ahead = h->scan;
		lim = scan(h, &ahead, data, lim, &bad);
		if (bad && lim == 0) {
			/* never an empty execute: to http-parser that is the end of the stream */
			h->err = H1_E_SYNTAX;
			h->errstr = bad;
			return H1_ERR;
		}
	}
	h->ev = H1_MORE;
	http_parser_pause(&h->p, 0);
	got = http_parser_execute(&h->p, &settings, (const char *)data, lim);
	*used = got;
	if (h->request) {
		const char *none = NULL;
		scan(h, &h->scan, data, got, &none); /* the state after what it took */
	}
	if (in_head)
		h->head_bytes += (uint32_t)got;
	e = HTTP_PARSER_ERRNO(&h->p);
	if (h->err)
		return H1_ERR;
	if (e != HPE_OK && e != HPE_PAUSED) {
		h->err = e == HPE_HEADER_OVERFLOW ? H1_E_HEAD_TOO_LARGE : H1_E_SYNTAX;
		h->errstr = http_errno_description(e);
		return H1_ERR;
	}
	if (bad && h->ev == H1_MORE && got == lim) {
		/* It took everything up to the offending byte without reaching an event: that byte is next. */
		h->err = H1_E_SYNTAX;
		h->errstr = bad;
		return H1_ERR;
	}
	if (in_head && !h->head_done && h->head_bytes > h->max_head) {
		h->err = H1_E_HEAD_TOO_LARGE;
		h->errstr = "head too large";
		return H1_ERR;
	}
	if (h->ev == H1_HEAD && h->request && !h->any_host && h->host_count == 0 && h->http_minor >= 1 &&
	    h->p.http_major == 1) {
		h->err = H1_E_HOST;
		h->errstr = "missing Host header";
		return H1_ERR;
	}
	return (h1_ev)h->ev;
}

h1_ev h1_eof(h1 *h)
{
	enum http_errno e;
	if (h->done)
		return H1_DONE;
	if (h->err)
		return H1_ERR;
	h->ev = H1_MORE;
	http_parser_pause(&h->p, 0);
	http_parser_execute(&h->p, &settings, NULL, 0);
	e = HTTP_PARSER_ERRNO(&h->p);
	if (h->ev == H1_DONE)
		return H1_DONE;
	if (e != HPE_OK && e != HPE_PAUSED) {
		h->err = H1_E_TRUNCATED;
		h->errstr = "stream ended inside a message";
		return H1_ERR;
	}
	if (h1_started(h)) {
		h->err = H1_E_TRUNCATED;
		h->errstr = "stream ended inside a message";
		return H1_ERR;
	}
	return H1_MORE;
}
