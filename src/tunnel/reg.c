#include "tunnel/reg.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "core/err.h"

ssize_t reg_line_feed(reg_linebuf *lb, const uint8_t *p, size_t n)
{
	size_t i;
	if (lb->done)
		return 0;
	for (i = 0; i < n; i++) {
		if (p[i] == '\n') {
			if (lb->len && lb->buf[lb->len - 1] == '\r')
				lb->len--;
			lb->buf[lb->len] = 0;
			lb->done = true;
			return (ssize_t)(i + 1);
		}
		if (lb->len >= REG_MAX_LINE)
			return -E2BIG;
		lb->buf[lb->len++] = (char)p[i];
	}
	return (ssize_t)n;
}

static int dump(json_t *o, char *out, size_t outlen)
{
	/* JSON_COMPACT and no embedded newlines: the object must stay on one line. */
	size_t n = json_dumpb(o, out, outlen, JSON_COMPACT);
	if (n == 0 || n + 2 > outlen || n > REG_MAX_LINE)
		return -ENOSPC;
	out[n] = '\n';
	out[n + 1] = 0;
	return (int)(n + 1);
}

int reg_request_encode(const reg_request *r, char *out, size_t outlen)
{
	json_t *o = json_pack("{s:i,s:s,s:s,s:I,s:s}", "v", r->v ? r->v : REG_PROTO_VERSION, "token", r->token,
			      "connector_id", r->connector_id, "slot", (json_int_t)r->slot, "version", r->version);
	int rc;
	if (!o)
		return -EINVAL;
	rc = dump(o, out, outlen);
	json_decref(o);
	return rc;
}

int reg_response_encode(const reg_response *r, char *out, size_t outlen)
{
	json_t *o = r->ok ? json_pack("{s:b,s:s,s:s,s:s}", "ok", 1, "tunnel_id", r->tunnel_id, "domain", r->domain,
				      "edge_id", r->edge_id)
			  : json_pack("{s:b,s:s}", "ok", 0, "error", r->error);
	int rc;
	if (!o)
		return -EINVAL;
	rc = dump(o, out, outlen);
	json_decref(o);
	return rc;
}

static int copy_str(json_t *o, const char *key, bool required, char *dst, size_t len, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, key);
	if (!v) {
		if (!required)
			return 0;
		return err_set(err, errlen, -EINVAL, "missing \"%s\"", key);
	}
	if (!json_is_string(v) || json_string_length(v) >= len || strlen(json_string_value(v)) != json_string_length(v))
		return err_set(err, errlen, -EINVAL, "\"%s\" must be a string of at most %zu bytes", key, len - 1);
	memcpy(dst, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

static bool ident_ok(const char *s)
{
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr("._:-", *s))
			return false;
	return true;
}

/* line as one JSON object, handed to fields with out cleared first. 0, or -EINVAL with err set. */
typedef int fields_fn(json_t *o, void *out, char *err, size_t errlen);
static int parse(const char *line, void *out, size_t outlen, fields_fn *fields, char *err, size_t errlen)
{
	json_error_t je;
	json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &je);
	int rc;
	memset(out, 0, outlen);
	/* je.text may quote the input, which holds a token: report the position only. */
	if (!o)
		return err_set(err, errlen, -EINVAL, "not JSON (column %d)", je.column);
	rc = json_is_object(o) ? fields(o, out, err, errlen) : err_set(err, errlen, -EINVAL, "not a JSON object");
	json_decref(o);
	return rc;
}

static int request_fields(json_t *o, void *p, char *err, size_t errlen)
{
	reg_request *out = p;
	json_t *v = json_object_get(o, "v");
	if (!json_is_integer(v))
		return err_set(err, errlen, -EINVAL, "missing protocol version \"v\"");
	if (json_integer_value(v) != REG_PROTO_VERSION)
		return err_set(err, errlen, -EINVAL, "unsupported protocol version %lld", (long long)json_integer_value(v));
	out->v = REG_PROTO_VERSION;
	if (copy_str(o, "token", true, out->token, sizeof out->token, err, errlen) < 0 ||
	    copy_str(o, "connector_id", true, out->connector_id, sizeof out->connector_id, err, errlen) < 0 ||
	    copy_str(o, "version", false, out->version, sizeof out->version, err, errlen) < 0)
		return -EINVAL;
	if (!out->token[0] || !out->connector_id[0])
		return err_set(err, errlen, -EINVAL, "empty \"%s\"", !out->token[0] ? "token" : "connector_id");
	/* Both are logged before the token is checked: a peer must not be able to forge key=value fields. */
	if (!ident_ok(out->connector_id) || !ident_ok(out->version))
		return err_set(err, errlen, -EINVAL, "connector_id and version may hold only letters, digits and . _ : -");
	v = json_object_get(o, "slot");
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1023)
		return err_set(err, errlen, -EINVAL, "\"slot\" must be an integer in [0, 1023]");
	out->slot = (uint32_t)json_integer_value(v);
	return 0;
}

int reg_request_parse(const char *line, reg_request *out, char *err, size_t errlen)
{
	int rc = parse(line, out, sizeof *out, request_fields, err, errlen);
	if (rc < 0)
		reg_request_wipe(out);
	return rc;
}

static int response_fields(json_t *o, void *p, char *err, size_t errlen)
{
	reg_response *out = p;
	json_t *v = json_object_get(o, "ok");
	if (!json_is_boolean(v))
		return err_set(err, errlen, -EINVAL, "missing \"ok\"");
	out->ok = json_is_true(v);
	if (!out->ok) {
		/* A reason longer than our buffer is cut, not refused: it is only shown. */
		v = json_object_get(o, "error");
		snprintf(out->error, sizeof out->error, "%s", json_is_string(v) ? json_string_value(v) : "no reason given");
		return 0;
	}
	if (copy_str(o, "tunnel_id", false, out->tunnel_id, sizeof out->tunnel_id, err, errlen) < 0 ||
	    copy_str(o, "domain", false, out->domain, sizeof out->domain, err, errlen) < 0 ||
	    copy_str(o, "edge_id", false, out->edge_id, sizeof out->edge_id, err, errlen) < 0)
		return -EINVAL;
	return 0;
}

int reg_response_parse(const char *line, reg_response *out, char *err, size_t errlen)
{
	return parse(line, out, sizeof *out, response_fields, err, errlen);
}

void reg_request_wipe(reg_request *r) { OPENSSL_cleanse(r, sizeof *r); }
