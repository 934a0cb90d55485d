/* The audit: mapping of a config (see auditlog.h and docs/proxy.md, "Audit log"): parsing with file:line
 * errors, the preflight of `postern check`, and the syslog severity of a record. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy/auditlog_int.h"

static const struct { const char *name; int code; } facilities[] = {
	{ "kern", 0 },	   { "user", 1 },	{ "mail", 2 },	   { "daemon", 3 },	 { "auth", 4 },
	{ "syslog", 5 },   { "lpr", 6 },	{ "news", 7 },	   { "uucp", 8 },	 { "cron", 9 },
	{ "authpriv", 10 }, { "ftp", 11 },	{ "ntp", 12 },	   { "security", 13 },	 { "console", 14 },
	{ "local0", 16 },  { "local1", 17 },	{ "local2", 18 },  { "local3", 19 },	 { "local4", 20 },
	{ "local5", 21 },  { "local6", 22 },	{ "local7", 23 },
};

static const char *const audit_keys[] = { "file",	    "rotate_bytes",	"keep",
					  "fsync",	    "stdout",		"syslog",
					  "syslog_ca_file", "syslog_facility",	"syslog_hostname",
					  "syslog_udp_max_bytes", "queue",	"queue_bytes",
					  "log_arguments",  "redact_keys",	"redact_values",
					  "max_argument_bytes", NULL };

/* tcp://host:port, udp://host:port, tls://host:port (ports default to 514, 514 and 6514). */
static int parse_syslog_url(cfg_doc *d, cfg_node *a, alog_config *c)
{
	const char *u = c->syslog, *hp;
	if (!strncmp(u, "tcp://", 6))
		c->proto = ALOGI_TCP;
	else if (!strncmp(u, "udp://", 6))
		c->proto = ALOGI_UDP;
	else if (!strncmp(u, "tls://", 6))
		c->proto = ALOGI_TLS;
	else
		return cfg_fail(d, a, "syslog", "'%s': must be tcp://host:port, udp://host:port or tls://host:port", u);
	hp = u + 6;
	if (na_split_hostport(hp, false, c->host, sizeof c->host, &c->port) == 0)
		goto check;
	/* no port: the standard one */
	if (strchr(hp, ':') && hp[0] != '[')
		return cfg_fail(d, a, "syslog", "'%s': the port must be 1..65535", u);
	if (hp[0] == '[' && hp[strlen(hp) - 1] != ']')
		return cfg_fail(d, a, "syslog", "'%s': the port must be 1..65535", u);
	if (strlen(hp) >= sizeof c->host)
		return cfg_fail(d, a, "syslog", "'%s': host name too long", u);
	snprintf(c->host, sizeof c->host, "%.*s", (int)(hp[0] == '[' ? strlen(hp) - 2 : strlen(hp)),
		 hp[0] == '[' ? hp + 1 : hp);
	c->port = c->proto == ALOGI_TLS ? 6514 : 514;
check:
	if (!c->host[0] || strpbrk(c->host, "/?#@ "))
		return cfg_fail(d, a, "syslog", "'%s': no host, or a path, user or query (tcp://host:port only)", u);
	return 0;
}

int alog_config_from_cfg(cfg_doc *d, cfg_node *a, alog_config **out)
{
	alog_config *c;
	char **keys = NULL, **vals = NULL, *fac = NULL, err[384];
	uint64_t u = 0;
	int64_t i = 0;
	size_t n;
	int rc;

	*out = NULL;
	if (!a)
		return 0;
	if (!(c = calloc(1, sizeof *c)))
		return -ENOMEM;
	c->rotate_bytes = ALOG_ROTATE_DEFAULT;
	c->keep = ALOG_KEEP_DEFAULT;
	c->log_arguments = true;
	c->facility = 16;
	c->udp_max = ALOG_UDP_MAX_DEFAULT;
	c->queue = ALOG_QUEUE_DEFAULT;
	c->queue_bytes = ALOG_QUEUE_BYTES_DEFAULT;
	if ((rc = cfg_check_keys(d, a, "audit", audit_keys)) < 0)
		goto fail;
	if ((rc = cfg_get_str(d, a, "file", &c->file)) < 0)
		goto fail;
	if (c->file && c->file[0] != '/') {
		rc = cfg_fail(d, a, "file", "must be an absolute path (e.g. /var/log/postern/audit.jsonl)");
		goto fail;
	}
	if (c->file && (c->file[strlen(c->file) - 1] == '/' || strlen(c->file) > 4000)) {
		rc = cfg_fail(d, a, "file", "must name a file, not a directory");
		goto fail;
	}
	c->line_file = cfg_key_line(a, "file");
	if ((rc = cfg_get_size(d, a, "rotate_bytes", &u)) < 0)
		goto fail;
	if (rc == 0) {
		if (u && u < 1024) {
			rc = cfg_fail(d, a, "rotate_bytes", "must be 0 (never rotate) or at least 1K");
			goto fail;
		}
		c->rotate_bytes = u;
	}
	if ((rc = cfg_get_int(d, a, "keep", 1, ALOG_KEEP_MAX, &i)) < 0)
		goto fail;
	if (rc == 0)
		c->keep = (unsigned)i;
	if ((rc = cfg_get_bool(d, a, "fsync", &c->fsync)) < 0 || (rc = cfg_get_bool(d, a, "stdout", &c->to_stdout)) < 0 ||
	    (rc = cfg_get_bool(d, a, "log_arguments", &c->log_arguments)) < 0)
		goto fail;
	if ((rc = cfg_get_str(d, a, "syslog", &c->syslog)) < 0 || (c->syslog && (rc = parse_syslog_url(d, a, c)) < 0))
		goto fail;
	if ((rc = cfg_get_str(d, a, "syslog_ca_file", &c->ca_file)) < 0)
		goto fail;
	c->line_ca = cfg_key_line(a, "syslog_ca_file");
	if (c->ca_file && c->proto != ALOGI_TLS) {
		rc = cfg_fail(d, a, "syslog_ca_file", "is only for syslog: tls://host:port");
		goto fail;
	}
	if ((rc = cfg_get_str(d, a, "syslog_facility", &fac)) < 0)
		goto fail;
	if (fac) {
		size_t k;
		for (k = 0; k < sizeof facilities / sizeof facilities[0]; k++)
			if (!strcmp(fac, facilities[k].name))
				break;
		if (k == sizeof facilities / sizeof facilities[0]) {
			rc = cfg_fail(d, a, "syslog_facility", "'%s': not a facility (local0..local7, auth, authpriv, "
				      "daemon, user, ...)", fac);
			goto fail;
		}
		c->facility = facilities[k].code;
	}
	if ((rc = cfg_get_str(d, a, "syslog_hostname", &c->hostname)) < 0)
		goto fail;
	if (c->hostname) {
		bool ok = c->hostname[0] && strlen(c->hostname) <= 255;
		for (const char *p = c->hostname; ok && *p; p++)
			ok = *p > 32 && *p < 127;
		if (!ok) {
			rc = cfg_fail(d, a, "syslog_hostname", "must be 1..255 printable ASCII characters, no spaces");
			goto fail;
		}
	}
	if ((rc = cfg_get_int(d, a, "syslog_udp_max_bytes", ALOG_UDP_MIN, 65507, &i)) < 0)
		goto fail;
	if (rc == 0)
		c->udp_max = (size_t)i;
	if ((rc = cfg_get_int(d, a, "queue", 1, ALOG_QUEUE_MAX, &i)) < 0)
		goto fail;
	if (rc == 0)
		c->queue = (size_t)i;
	if ((rc = cfg_get_size(d, a, "queue_bytes", &u)) < 0)
		goto fail;
	if (rc == 0) {
		if (u < AUD_MAX_LINE || u > (4ull << 30)) {
			rc = cfg_fail(d, a, "queue_bytes", "must be between 1M (one longest line) and 4G");
			goto fail;
		}
		c->queue_bytes = u;
	}
	if (!c->file && !c->to_stdout && !c->syslog) {
		rc = cfg_fail(d, a, NULL, "audit: no sink: set file, stdout: true or syslog");
		goto fail;
	}
	/* redaction */
	if ((rc = cfg_get_strlist(d, a, "redact_keys", &keys, &n)) < 0)
		goto fail;
	if ((rc = cfg_get_size(d, a, "max_argument_bytes", &u)) < 0)
		goto fail;
	if (rc == 1)
		u = 0;
	else if (u < REDACT_MIN_BYTES || u > AUD_MAX_LINE / 2) {
		rc = cfg_fail(d, a, "max_argument_bytes", "must be between %u and %u bytes", REDACT_MIN_BYTES,
			      AUD_MAX_LINE / 2);
		goto fail;
	}
	if ((rc = redact_new((const char *const *)keys, (size_t)u, &c->red, err, sizeof err)) < 0) {
		rc = rc == -ENOMEM ? rc : cfg_fail(d, a, keys ? "redact_keys" : "max_argument_bytes", "%s", err);
		goto fail;
	}
	if ((rc = cfg_get_strlist(d, a, "redact_values", &vals, &n)) < 0)
		goto fail;
	for (size_t k = 0; vals && vals[k]; k++)
		if ((rc = redact_add_value_pattern(c->red, vals[k], err, sizeof err)) < 0) {
			rc = cfg_fail(d, a, "redact_values", "pattern %zu ('%s'): %s", k + 1, vals[k], err);
			goto fail;
		}
	rc = 0;
	*out = c;
	c = NULL;
fail:
	cfg_strv_free(keys);
	cfg_strv_free(vals);
	free(fac);
	alog_config_free(c);
	return rc;
}

void alog_config_free(alog_config *c)
{
	if (!c)
		return;
	free(c->file);
	free(c->syslog);
	free(c->ca_file);
	free(c->hostname);
	redact_free(c->red);
	free(c);
}

bool alog_config_log_arguments(const alog_config *c) { return c && c->log_arguments; }
const redact *alog_config_redact(const alog_config *c) { return c ? c->red : NULL; }

int alog_config_preflight(const alog_config *c, cfg_doc *d)
{
	char dir[4096];
	struct stat sb;
	FILE *f;

	if (!c)
		return 0;
	if (c->file) {
		if (access(c->file, F_OK) == 0 && access(c->file, W_OK) < 0)
			return cfg_fail_line(d, c->line_file, "audit.file: %s: not writable: %s", c->file, strerror(errno));
		/* the nearest existing ancestor must be a directory we may create in */
		snprintf(dir, sizeof dir, "%s", c->file);
		for (;;) {
			char *slash = strrchr(dir, '/');
			if (!slash)
				break;
			*slash = 0;
			if (!dir[0])
				snprintf(dir, sizeof dir, "/");
			if (stat(dir, &sb) == 0) {
				if (!S_ISDIR(sb.st_mode))
					return cfg_fail_line(d, c->line_file, "audit.file: %s: not a directory", dir);
				if (access(dir, W_OK | X_OK) < 0)
					return cfg_fail_line(d, c->line_file, "audit.file: cannot create files in %s: %s", dir,
							     strerror(errno));
				break;
			}
			if (!strcmp(dir, "/"))
				break;
		}
	}
	if (c->ca_file) {
		if (!(f = fopen(c->ca_file, "re")))
			return cfg_fail_line(d, c->line_ca, "audit.syslog_ca_file: %s: %s", c->ca_file, strerror(errno));
		fclose(f);
	}
	return 0;
}

int alogi_severity(const aud_rec *r)
{
	const char *dec = r->decision ? r->decision : "", *stt = r->status ? r->status : "";
	const char *ap = r->approval ? r->approval : "";
	if (!strcmp(dec, "deny") || strstr(stt, "denied") || strstr(stt, "pin"))
		return 4; /* warning */
	if (!strcmp(stt, "error") || !strcmp(ap, "denied") || !strcmp(ap, "timed_out"))
		return 5; /* notice */
	return 6;         /* info */
}

