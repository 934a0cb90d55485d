/* Shared between the parts of proxy/auditlog: auditlog.c (file, queues, lifecycle), auditlog_config.c (the
 * audit: keys), auditlog_sink.c
 * (the stdout writer thread and the syslog connection), auditlog_emit.c (`postern audit emit`). */
#ifndef POSTERN_PROXY_AUDITLOG_INT_H
#define POSTERN_PROXY_AUDITLOG_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/admin.h"
#include "core/netaddr.h"
#include "proxy/auditlog.h"

enum alogi_proto { ALOGI_NONE = 0, ALOGI_TCP, ALOGI_UDP, ALOGI_TLS };

struct alog_config {
	char *file;
	uint64_t rotate_bytes;
	unsigned keep;
	bool fsync, to_stdout, log_arguments;
	char *syslog; /* the URL as written */
	enum alogi_proto proto;
	char host[NA_HOST_MAX];
	uint16_t port;
	char *ca_file;
	int facility;
	char *hostname; /* HOSTNAME field; NULL: gethostname() */
	size_t udp_max;
	size_t queue;
	uint64_t queue_bytes;
	redact *red;
	int line_file, line_ca; /* for preflight messages */
};

/* One built line, shared by the queues (refcounted; single-threaded but for the stdout thread, which takes
 * lines under its mutex and hands them back to be released on the loop). */
typedef struct alogi_line {
	unsigned refs;
	uint64_t seq;
	int64_t ts_us;
	int sev;      /* syslog severity */
	size_t len;   /* with the "\n" */
	char data[];
} alogi_line;

void alogi_line_unref(alogi_line *ln);

/* A bounded FIFO of lines (a ring that grows by doubling up to max records). */
typedef struct alogi_q {
	alogi_line **v;
	size_t head, n, cap, max;
	uint64_t bytes, max_bytes;
} alogi_q;

void alogi_q_init(alogi_q *q, size_t max, uint64_t max_bytes);
bool alogi_q_fits(const alogi_q *q, const alogi_line *ln);
/* Takes a reference. 0 or -ENOBUFS (full) or -ENOMEM. */
int alogi_q_push(alogi_q *q, alogi_line *ln);
alogi_line *alogi_q_peek(const alogi_q *q);
alogi_line *alogi_q_pop(alogi_q *q); /* the caller owns the reference */
void alogi_q_free(alogi_q *q);       /* unrefs what is left */

/* Drop accounting of one sink: a counter and coalesced warn lines (one a second at most). */
typedef struct alogi_drops {
	const char *sink;
	uint64_t total;
	uint64_t pend_n, pend_first, pend_last;
	const char *reason;
	uint64_t last_log_ms;
	uv_timer_t timer;
	bool timer_on;
	adm_metric *m;
	alog *l;
} alogi_drops;

void alogi_drops_init(alogi_drops *d, alog *l, const char *sink);
void alogi_drop(alogi_drops *d, uint64_t seq, const char *reason);
/* Logs what is pending now and closes the timer (counted in the alog's open handles). */
void alogi_drops_close(alogi_drops *d);

uv_loop_t *alogi_loop(alog *l);
/* A handle of a sink was closed (its close callback); the alog is freed once none is left after alog_free. */
void alogi_handle_closed(alog *l);
void alogi_handle_opened(alog *l);
/* A sink made progress (sent or dropped): completes a pending alog_drain or the close. */
void alogi_progress(alog *l);

/* ---- sinks (auditlog_sink.c) ---- */
typedef struct alogi_stdout alogi_stdout;
typedef struct alogi_syslog alogi_syslog;

alogi_stdout *alogi_stdout_new(alog *l, const alog_config *c, int fd, char *err, size_t errlen);
void alogi_stdout_push(alogi_stdout *s, alogi_line *ln);
bool alogi_stdout_idle(const alogi_stdout *s);
void alogi_stdout_stats(const alogi_stdout *s, alog_stats *st);
/* Stops: sends what it can until deadline (now), then drops the rest; closes its handles. */
void alogi_stdout_close(alogi_stdout *s, bool deadline);
void alogi_stdout_free(alogi_stdout *s); /* after its handles closed */

alogi_syslog *alogi_syslog_new(alog *l, const alog_config *c, char *err, size_t errlen);
void alogi_syslog_push(alogi_syslog *s, alogi_line *ln);
bool alogi_syslog_idle(const alogi_syslog *s);
void alogi_syslog_stats(const alogi_syslog *s, alog_stats *st);
void alogi_syslog_close(alogi_syslog *s, bool deadline);
void alogi_syslog_free(alogi_syslog *s);

/* The severity of a record for syslog: warning for a deny or a changed pin, notice for an error or a
 * denied or timed-out approval, info otherwise. */
int alogi_severity(const aud_rec *r);

#endif
