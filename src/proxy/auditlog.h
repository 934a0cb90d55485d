/* The audit log's writer and sinks (docs/proxy.md, "Audit log"): the hash-chained lines of guard/audit go to
 * a file (synchronously, before the caller releases the answer), to stdout and to syslog (RFC 5424 over TCP,
 * UDP or TLS) through bounded queues that never block the loop.
 *
 * File: opened (created 0600, its directory made like mkdir -p) and locked (flock: one writer per chain);
 * the chain resumes from its tail (a torn last line, cut by a crash, is truncated; an empty or missing file
 * resumes from FILE.1, so a restart right after a rotation continues the chain). When a line would take the
 * file past rotate_bytes: FILE.(keep-1) -> FILE.keep ... FILE -> FILE.1 (each an atomic rename, the oldest
 * replaced), then a new FILE; seq and prev carry on, so `postern audit verify FILE.keep ... FILE.1 FILE`
 * (oldest first; --partial once the first ones were deleted) checks the whole set.
 * Durability: a line is write(2)-ten whole before alog_write returns, so it survives a kill -9 of the
 * process (the page cache is the kernel's); fsync: true adds fdatasync per line for power loss.
 * Async sinks: per sink a queue capped at `queue` records and `queue_bytes`; a record that finds it full is
 * dropped for that sink, counted (postern_audit_dropped_total{sink=...}) and named in a warn line (at most one
 * a second per sink, with the count and the seq range, so every drop is accounted for).
 * Single-threaded: every call from the loop's thread. */
#ifndef POSTERN_PROXY_AUDITLOG_H
#define POSTERN_PROXY_AUDITLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/cfg.h"
#include "guard/audit.h"
#include "guard/redact.h"

#define ALOG_ROTATE_DEFAULT   (100ull << 20)
#define ALOG_KEEP_DEFAULT     10
#define ALOG_KEEP_MAX         1000
#define ALOG_QUEUE_DEFAULT    10000
#define ALOG_QUEUE_MAX        1000000
#define ALOG_QUEUE_BYTES_DEFAULT (64ull << 20)
#define ALOG_UDP_MAX_DEFAULT  65000 /* a datagram's payload; longer messages are cut (counted) */
#define ALOG_UDP_MIN          480   /* RFC 5426: every receiver takes this much */
#define ALOG_FLUSH_MS         2000  /* alog_free: time given to the queues */

typedef struct alog_config alog_config;

/* The audit: mapping (audit NULL: *out NULL, no audit, 0). 0, or -EINVAL with "FILE:LINE: key: why" in
 * cfg_error(d), or -ENOMEM. Keys: docs/proxy.md. No I/O. */
int alog_config_from_cfg(cfg_doc *d, cfg_node *audit, alog_config **out);
void alog_config_free(alog_config *c);
bool alog_config_log_arguments(const alog_config *c);
/* The redaction of arguments (redact_keys, redact_values, max_argument_bytes); owned by c. */
const redact *alog_config_redact(const alog_config *c);
/* `postern check`: the file's directory is writable or creatable, the file (when there) is writable, the CA
 * file is readable. 0, or -EINVAL with the error in cfg_error(d) at the key. */
int alog_config_preflight(const alog_config *c, cfg_doc *d);

typedef struct alog alog;

/* Opens the file (see above) and starts the syslog connection (asynchronously: its failures are logged and
 * retried with jittered backoff, records wait in the queue). NULL with err on failure. */
alog *alog_new(uv_loop_t *loop, const alog_config *c, char *err, size_t errlen);
/* Builds the line and writes it to the file, whole, before returning (then the caller may release the
 * answer); queues it for stdout and syslog. 0, or a negative errno when the line could not be built
 * (-EMSGSIZE, -EINVAL: a bad id) or the file write failed (counted, logged; the file is cut back to the
 * last whole line and the chain stays at it, so the record is in no sink). A queue drop is not an error. */
int alog_write(alog *l, const aud_rec *r);
/* Calls cb once every queue is empty (sent, or dropped and counted) or after timeout_ms; at most one
 * pending at a time (a second call replaces the first). For a clean exit: drain, then alog_free. */
void alog_drain(alog *l, uint32_t timeout_ms, void (*cb)(alog *l, void *ud), void *ud);
/* Closes the file now; the async sinks get up to ALOG_FLUSH_MS to send what is queued (what is left is
 * dropped and counted), then their handles close and the memory goes as the loop runs. NULL is a no-op. */
void alog_free(alog *l);

typedef struct alog_stats {
	uint64_t written;        /* lines in the file (or built, without a file) */
	uint64_t file_errors;
	uint64_t rotations;
	uint64_t syslog_sent;    /* handed to the socket */
	uint64_t syslog_dropped; /* queue full, or left at shutdown */
	uint64_t syslog_truncated; /* UDP messages cut to syslog_udp_max_bytes */
	uint64_t syslog_connects;
	uint64_t syslog_queued;  /* waiting in the queue now */
	uint64_t stdout_written;
	uint64_t stdout_dropped;
	uint64_t stdout_queued;
	uint64_t next_seq;       /* the seq the next line gets */
} alog_stats;

void alog_get_stats(const alog *l, alog_stats *st);

/* `postern audit emit`: a test and operations tool that writes synthetic records through the sinks of an
 * audit: config (registered in main.c as the audit command's emit subcommand). */
int alog_emit_main(int argc, char **argv);

#endif
