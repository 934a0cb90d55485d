/* The control plane's store: one interface, two stores (ctl_sqlite: SQLite in WAL mode in state_dir, the
 * embedded default; ctl_redis: Redis, the work queue as a Stream with a consumer group, the event log as a
 * Stream per session). The HTTP API (capi) speaks only to this interface, so both stores pass the same
 * protocol tests. Calls are synchronous and return 0 or a negative errno with err (errlen bytes):
 *   -ENOENT    no such environment, work item, session or key
 *   -EEXIST    a name or id already taken
 *   -ESTALE    a heartbeat whose expected_last_heartbeat does not match (the API answers 412, with the
 *              lease's current state in *lease)
 *   -EALREADY  the work item is already stopped (409)
 *   -EINVAL    a bad argument (a state change that does not apply, a bad cursor)
 *   -EIO       the store itself failed (disk, connection); the API answers 503 and logs err
 * A call that returns an error has changed nothing. Every write a call reports as done is durable (SQLite:
 * synchronous=FULL in WAL mode; Redis: as durable as the server's appendfsync says, documented).
 *
 * Objects cross the seam as jansson objects in the API's own JSON shapes (the shapes of Anthropic's
 * environments, work and sessions API), so a store keeps them as JSON text plus the few columns it indexes.
 * Returned json_t are new references the caller frees. Timestamps are RFC 3339 UTC with microseconds, made
 * by ctl_now() so both stores and every replica write the same format. Ids are "<prefix>_<26 base32>"
 * (env_, work_, sesn_, sevt_, key_) from a CSPRNG.
 *
 * Secrets: environment and API keys are stored as SHA-256 hashes only (the key is shown once, at create);
 * a work item's `secret` is stored (it is handed out only by poll) and never logged. */
#ifndef POSTERN_CTL_STORE_H
#define POSTERN_CTL_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

typedef struct ctl_store ctl_store;

/* The lease state a heartbeat reports (and a 412 carries as error.details.current_state). */
typedef struct ctl_lease {
	char state[16];		 /* queued|starting|active|stopping|stopped */
	char last_heartbeat[40]; /* RFC 3339, "" before the first beat */
	unsigned ttl_seconds;
	bool lease_extended;
} ctl_lease;

/* A page of a list: items (a JSON array, new reference), next_page (malloc'd cursor or NULL at the end). */
typedef struct ctl_page {
	json_t *data;
	char *next_page;
} ctl_page;
void ctl_page_free(ctl_page *p);
/* For walking every page: frees p; true with cursor (cap bytes) set to its next_page when there is one. */
bool ctl_page_next(ctl_page *p, char *cursor, size_t cap);
/* Merges patch into obj: a key set to null is removed, any other value set ({k: v|null}, metadata patches). */
void ctl_merge_patch(json_t *obj, json_t *patch);

/* The sessions token a delivery hands out (work_poll): minted by the API for each poll request, bound by the
 * store to the item it delivers. A token is the holder's: every delivery of an item (the first, a missed
 * ack's re-offer, the one after a lease ran out) gets a new one and ends the one before. */
typedef struct ctl_token {
	const char *secret; /* the item's `secret` as the poll answers it (base64url JSON with the token) */
	const char *key_id; /* "key_…": the id of the token's key */
	uint8_t hash[32];   /* sha256 of the sessions token */
} ctl_token;

/* Queue statistics for GET …/work/stats. */
typedef struct ctl_stats {
	uint64_t depth;		  /* items not yet acknowledged (queued, delivered or not) */
	uint64_t pending;	  /* delivered to a worker, not yet acknowledged */
	char oldest_queued_at[40]; /* "" when the queue is empty */
	uint64_t workers_polling; /* distinct worker ids that polled in the last 30 s */
} ctl_stats;

struct ctl_store_ops {
	const char *name; /* "sqlite", "redis" */
	void (*close)(ctl_store *s);

	/* Keys. kind "env" (bearer of one environment's workers), "api" (the platform side) or "session" (a work
	 * item's sessions token: name is the work id, env_id carries the session id).
	 * key_add stores sha256(secret) under id; key_check finds the key by hash (constant-time compare of the
	 * hash) and gives its id, its env_id (the environment of an "env" key, the session of a "session" one) and
	 * its name (the work item of a "session" key; name may be NULL). key_revoke makes it fail from now on. */
	int (*key_add)(ctl_store *s, const char *kind, const char *id, const char *name, const char *env_id,
		       const uint8_t hash[32], char *err, size_t errlen);
	int (*key_check)(ctl_store *s, const char *kind, const uint8_t hash[32], char *id, size_t idlen,
			 char *env_id, size_t envlen, char *name, size_t namelen);
	int (*key_revoke)(ctl_store *s, const char *id, char *err, size_t errlen);

	/* Environments: the API object ({"id","type":"environment","name",...}). */
	int (*env_put)(ctl_store *s, const char *id, json_t *obj, char *err, size_t errlen); /* create or replace */
	int (*env_get)(ctl_store *s, const char *id, json_t **obj, char *err, size_t errlen);
	int (*env_list)(ctl_store *s, const char *after, unsigned limit, ctl_page *out, char *err, size_t errlen);

	/* Work queue of one environment. work_enqueue stores the work object (state "queued") and makes it
	 * claimable. work_poll claims for worker_id the oldest item never delivered, or one delivered but not
	 * acknowledged for reclaim_older_than_ms (the re-offer), and returns it with its secret; *work NULL when
	 * there is none. Nothing here blocks or waits: the API's long poll and SSE streams ask again on a short
	 * timer (and at once after a write of their own process), which also sees other replicas' writes. Each poll also records
	 * worker_id as polling now (for stats). work_ack moves a delivered item to "starting" and out of the
	 * queue (-EINVAL when it is not delivered/queued).
	 * The work object's secret is not kept by enqueue: poll gives the item it delivers the token tok in the same
	 * step (its secret becomes tok->secret, the "session" key tok->hash is added under tok->key_id with the work
	 * id as name and the session as env_id) and revokes the key of the item's previous delivery, so a re-offer
	 * ends the token the first taker got. tok NULL: the item is handed out with secret null (the old key is
	 * revoked all the same). */
	int (*work_enqueue)(ctl_store *s, const char *env_id, json_t *work, char *err, size_t errlen);
	int (*work_poll)(ctl_store *s, const char *env_id, const char *worker_id, uint64_t reclaim_older_than_ms,
			 const ctl_token *tok, json_t **work, char *err, size_t errlen);
	int (*work_ack)(ctl_store *s, const char *env_id, const char *work_id, char *err, size_t errlen);
	/* The lease. expected is "NO_HEARTBEAT" for the first beat, else the last_heartbeat the worker was
	 * given; a mismatch is -ESTALE with *lease the current state. On success the lease runs ttl_seconds
	 * from now, state becomes "active" (from "starting"; "stopping" stays), *lease is the new state
	 * (lease_extended false when the item is stopping or stopped). */
	int (*work_heartbeat)(ctl_store *s, const char *env_id, const char *work_id, const char *expected,
			      unsigned ttl_seconds, ctl_lease *lease, char *err, size_t errlen);
	/* force: "stopped" at once; else "stopping" (the worker sees it on its next beat). -EALREADY when it
	 * is stopped already. */
	int (*work_stop)(ctl_store *s, const char *env_id, const char *work_id, bool force, char *err,
			 size_t errlen);
	/* Items whose lease ran out (active/starting/stopping, latest heartbeat older than its TTL, or a
	 * "starting" item never beaten for lease_ttl) go back to "queued" and claimable, so another worker takes
	 * the session, with their token revoked and their secret cleared (the holder that lost the lease is 401
	 * from then on; the next poll mints a new one); returns how many (>= 0) or -errno. Called by every
	 * replica's timer; safe to race. */
	int (*work_expire)(ctl_store *s, unsigned lease_ttl_seconds, char *err, size_t errlen);
	int (*work_get)(ctl_store *s, const char *env_id, const char *work_id, json_t **work, char *err,
			size_t errlen); /* secret is null here */
	int (*work_update_metadata)(ctl_store *s, const char *env_id, const char *work_id, json_t *patch,
				    json_t **work, char *err, size_t errlen); /* {k: v|null} merge */
	int (*work_list)(ctl_store *s, const char *env_id, const char *after, unsigned limit, ctl_page *out,
			 char *err, size_t errlen);
	int (*work_stats)(ctl_store *s, const char *env_id, ctl_stats *st, char *err, size_t errlen);

	/* Sessions: the API object ({"id","type":"session","status",...}). */
	int (*session_put)(ctl_store *s, const char *id, json_t *obj, char *err, size_t errlen);
	int (*session_get)(ctl_store *s, const char *id, json_t **obj, char *err, size_t errlen);
	int (*session_list)(ctl_store *s, const char *after, unsigned limit, ctl_page *out, char *err,
			    size_t errlen);
	int (*session_delete)(ctl_store *s, const char *id, char *err, size_t errlen);

	/* The event log of a session, in order. event_append gives each event its id ("sevt_…"),
	 * processed_at and a per-session sequence number (> 0, strictly increasing: the SSE id, so
	 * Last-Event-ID resumes exactly after it) and stores the batch atomically (all or none). *seq_out (may be
	 * NULL) is the last one given; the store sets id and processed_at in the given objects. One result per call:
	 * a user.tool_result (user.custom_tool_result) for a tool use the log already has a result of is -EEXIST
	 * (nothing stored, err naming events[i] and the id), checked in the same atomic step as the append, so two
	 * replicas racing two results store one. event_read returns the
	 * events with sequence > after_seq, at most limit, oldest first, each carrying its sequence number as the
	 * integer member "_seq" (the SSE id of that event; the API takes it off before answering), and *last_seq the
	 * sequence of the last one returned (after_seq when none). */
	int (*event_append)(ctl_store *s, const char *session_id, json_t *events, uint64_t *seq_out, char *err,
			    size_t errlen);
	int (*event_read)(ctl_store *s, const char *session_id, uint64_t after_seq, unsigned limit, json_t **events,
			  uint64_t *last_seq, char *err, size_t errlen);
	/* Tool call use_id of the session's log, found through an index both stores keep at append (one lookup, not a
	 * scan): *use the event whose id is use_id (NULL when none), *result the first user.tool_result (custom:
	 * user.custom_tool_result) whose tool_use_id (custom_tool_use_id) is use_id (NULL when none). New references,
	 * without "_seq". 0 or -errno. */
	int (*event_tool)(ctl_store *s, const char *session_id, const char *use_id, bool custom, json_t **use,
			  json_t **result, char *err, size_t errlen);
	/* The sequence of the log's last event (0 when it is empty) without reading the log: where a stream opened
	 * without Last-Event-ID starts. */
	int (*event_last)(ctl_store *s, const char *session_id, uint64_t *seq, char *err, size_t errlen);
};

struct ctl_store {
	const struct ctl_store_ops *ops;
};

/* Opens the store a config names: "sqlite" (file state_dir/control.db, made 0600) or
 * "redis://[user@]host:port[/db]" (redis_password, may be NULL: its AUTH password). 0 with *out, or -errno with err
 * naming the store and the reason. */
int ctl_store_open(const char *spec, const char *state_dir, const char *redis_password, ctl_store **out, char *err,
		   size_t errlen);
void ctl_store_close(ctl_store *s);
/* The stores ctl_store_open picks from (ctl_sqlite.c, ctl_redis.c; their headers declare them too), here so
 * that the seam does not include the stores that include it. */
int ctl_sqlite_open(const char *state_dir, ctl_store **out, char *err, size_t errlen);
int ctl_redis_open(const char *spec, const char *password, ctl_store **out, char *err, size_t errlen);

/* RFC 3339 UTC with microseconds, e.g. "2026-12-07T15:04:05.123456Z"; buf at least 40 bytes. */
const char *ctl_now(char *buf, size_t len);
/* "<prefix>_" + 26 characters of Crockford base32 from the CSPRNG; buf at least 40 bytes. 0 or -errno. */
int ctl_new_id(const char *prefix, char *buf, size_t len);

#endif
