/* The Redis store's work queue and leases. An environment's queue is the Stream postern:q:<env> with the
 * consumer group "workers": enqueue XADDs an entry {w: work id, at: queued_at}, poll XAUTOCLAIMs an entry
 * delivered but not acknowledged for reclaim_older_than_ms (the re-offer) or else XREADGROUPs a new one with
 * the worker id as consumer, ack XACKs and XDELs it (so the stream holds exactly the unacknowledged items:
 * its length is the depth, its pending list the delivered ones). The work item is the hash postern:work:<id>;
 * an entry whose item moved on (acknowledged, stopped, queued again under a new entry) is dropped when met.
 * An entry's "at" is its item's created_at (oldest_queued_at), also when an expired lease queues it again.
 * Leases: postern:leases scores an item by its lease expiry (ms), postern:acked a "starting" item by its ack
 * time; work_expire walks both in one script, so replicas racing it requeue an item once. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/ctl_redis_int.h"
#include "core/err.h"
#include "core/log.h"

#define P CTL_REDIS_PREFIX

/* The hash fields a work object is built from, in the order the scripts return them. */
#define CRW_FIELDS                                                                                             \
	"'env', 'obj', 'state', 'secret', 'metadata', 'acknowledged_at', 'latest_heartbeat_at', 'started_at', " \
	"'stop_requested_at', 'stopped_at'"
enum { W_ENV, W_OBJ, W_STATE, W_SECRET, W_META, W_ACK, W_HB, W_START, W_STOPREQ, W_STOPPED, W_N };
static const char *const crw_times[] = {
	[W_ACK] = "acknowledged_at", [W_HB] = "latest_heartbeat_at", [W_START] = "started_at",
	[W_STOPREQ] = "stop_requested_at", [W_STOPPED] = "stopped_at",
};

/* The work object out of the W_N fields at rep->element[off..]. */
static int crw_build(const ctl_redis *r, const redisReply *rep, size_t off, bool with_secret, json_t **out,
		     char *err, size_t errlen)
{
	const char *f[W_N];
	*out = NULL;
	for (int i = 0; i < W_N; i++)
		f[i] = ctl_redis_str(rep, off + (size_t)i);
	json_t *o = f[W_OBJ] ? json_loads(f[W_OBJ], 0, NULL) : NULL;
	json_t *m = f[W_META] ? json_loads(f[W_META], 0, NULL) : json_object();
	if (!json_is_object(o) || !json_is_object(m) || !f[W_STATE]) {
		json_decref(o);
		json_decref(m);
		return err_set(err, errlen, -EIO, "redis %s: a work item that is not a work object", r->addr);
	}
	json_object_set_new(o, "state", json_string(f[W_STATE]));
	json_object_set_new(o, "metadata", m);
	for (int i = W_ACK; i <= W_STOPPED; i++)
		json_object_set_new(o, crw_times[i], f[i] && f[i][0] ? json_string(f[i]) : json_null());
	json_object_set_new(o, "secret",
			    with_secret && f[W_SECRET] && f[W_SECRET][0] ? json_string(f[W_SECRET]) : json_null());
	*out = o;
	return 0;
}

static int crw_run(ctl_redis *r, ctl_redis_script *sc, int nkeys, int argc, const char **argv,
		   const char *what, redisReply **rep, char *err, size_t errlen)
{
	int rc = ctl_redis_eval(r, sc, nkeys, argc, argv, NULL, rep, err, errlen);
	if (rc)
		return rc;
	rc = ctl_redis_status(*rep, what, err, errlen);
	if (rc && -rc != ESTALE) {
		freeReplyObject(*rep);
		*rep = NULL;
	}
	return rc;
}

/* A change whose answer is its status only. */
static int crw_change(ctl_redis *r, ctl_redis_script *sc, int nkeys, int argc, const char **argv, const char *what,
		      char *err, size_t errlen)
{
	redisReply *rep = NULL;
	int rc = crw_run(r, sc, nkeys, argc, argv, what, &rep, err, errlen);
	if (rep)
		freeReplyObject(rep);
	return rc;
}

/* ---- enqueue, poll, ack ------------------------------------------------------------------------------------ */

static ctl_redis_script crw_enqueue_lua = {
	.src = "if redis.call('EXISTS', KEYS[5]) == 0 then return {'ENOENT'} end\n"
	       "if redis.call('EXISTS', KEYS[1]) == 1 then return {'EEXIST'} end\n"
	       "redis.pcall('XGROUP', 'CREATE', KEYS[3], 'workers', '0', 'MKSTREAM')\n"
	       "local sid = redis.call('XADD', KEYS[3], '*', 'w', ARGV[1], 'at', ARGV[6])\n"
	       "redis.call('HSET', KEYS[1], 'env', ARGV[2], 'obj', ARGV[3], 'state', 'queued', 'secret', ARGV[4],\n"
	       "  'metadata', ARGV[5], 'sid', sid, 'created_at', ARGV[6])\n"
	       "redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), ARGV[1])\n"
	       "return {'OK'}\n"};

int ctl_redis_work_enqueue(ctl_store *s, const char *env_id, json_t *work, char *err, size_t errlen)
{
	ctl_redis *r = (ctl_redis *)s;
	char kw[256], kz[256], kq[256], ke[256];
	char *obj = NULL, *meta = NULL;
	json_t *o = NULL;
	const char *wid = json_string_value(json_object_get(work, "id"));
	const char *created = json_string_value(json_object_get(work, "created_at"));
	json_t *m = json_object_get(work, "metadata");
	int rc = 0;
	if (!wid || !*wid || !created)
		return err_set(err, errlen, -EINVAL, "work item without id or created_at");
	if (m && !json_is_object(m) && !json_is_null(m))
		return err_set(err, errlen, -EINVAL, "work %s: metadata must be an object", wid);
	/* the object without what the store keeps in fields of its own */
	if (!(o = json_copy(work))) {
		rc = err_set(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	json_object_del(o, "secret");
	json_object_del(o, "metadata");
	json_object_set_new(o, "state", json_string("queued"));
	obj = json_dumps(o, JSON_COMPACT);
	meta = json_is_object(m) ? json_dumps(m, JSON_COMPACT) : strdup("{}");
	if (!obj || !meta) {
		rc = err_set(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	snprintf(kw, sizeof kw, P "work:%s", wid);
	snprintf(kz, sizeof kz, P "works:%s", env_id);
	snprintf(kq, sizeof kq, P "q:%s", env_id);
	snprintf(ke, sizeof ke, P "env:%s", env_id);
	/* no secret yet: each delivery mints its own (the poll script) */
	const char *a[] = {kw, kz, kq, P "seq", ke, wid, env_id, obj, "", meta, created};
	rc = crw_change(r, &crw_enqueue_lua, 5, 11, a, wid, err, errlen);
	if (rc == -ENOENT)
		rc = err_set(err, errlen, -ENOENT, "environment %s: not found", env_id);
out:
	json_decref(o);
	free(obj);
	free(meta);
	return rc;
}

static ctl_redis_script crw_poll_lua = {
	.src = "local q, g, me = KEYS[1], 'workers', ARGV[1]\n"
	       "local now = tonumber(ARGV[3])\n"
	       /* a worker seen in the last 5 s is not written again: an empty poll then changes nothing, so it costs
	        * no AOF write (nor its fsync); the stats count 30 s */
	       "if ARGV[5] == '1' then\n"
	       "  local last = tonumber(redis.call('ZSCORE', KEYS[2], me) or '0')\n"
	       "  if now - last >= 5000 then redis.call('ZADD', KEYS[2], now, me) end\n"
	       "end\n"
	       "redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. string.format('%d', now - 30000))\n"
	       "if redis.call('EXISTS', q) == 0 then return {'NONE'} end\n"
	       /* a delivery is the item's new holder: the previous delivery's key (kh) is revoked and the token
	        * minted for this poll (ARGV[7..9]: secret, key id, key hash) becomes the item's one live key */
	       "local P = ARGV[6]\n"
	       "local function rekey(k, wid)\n"
	       "  local h = redis.call('HMGET', k, 'kh', 'obj')\n"
	       "  if h[1] and h[1] ~= '' then redis.call('HSET', P .. 'key:' .. h[1], 'revoked', '1') end\n"
	       "  if ARGV[9] == '' then redis.call('HSET', k, 'secret', '', 'kh', ''); return end\n"
	       "  local ok, o = pcall(cjson.decode, h[2] or '')\n"
	       "  local sess = ''\n"
	       "  if ok and type(o) == 'table' and type(o.data) == 'table' and type(o.data.id) == 'string' then sess = o.data.id end\n"
	       "  redis.call('HSET', P .. 'key:' .. ARGV[9], 'id', ARGV[8], 'kind', 'session', 'name', wid, 'env', sess,\n"
	       "    'hash', ARGV[9], 'revoked', '0')\n"
	       "  redis.call('SET', P .. 'keyid:' .. ARGV[8], ARGV[9])\n"
	       "  redis.call('HSET', k, 'secret', ARGV[7], 'kh', ARGV[9])\n"
	       "end\n"
	       "local function take(id, f)\n"
	       "  local wid\n"
	       "  if type(f) == 'table' then for i = 1, #f, 2 do if f[i] == 'w' then wid = f[i + 1] end end end\n"
	       "  if wid then\n"
	       "    local k = ARGV[4] .. wid\n"
	       "    local h = redis.call('HMGET', k, 'sid', 'state')\n"
	       "    if h[1] == id and h[2] == 'queued' then\n"
	       "      rekey(k, wid)\n"
	       "      return {'OK', wid, unpack(redis.call('HMGET', k, " CRW_FIELDS "))}\n"
	       "    end\n"
	       "  end\n"
	       /* an entry whose item moved on: out of the pending list and the stream */
	       "  redis.call('XACK', q, g, id)\n"
	       "  redis.call('XDEL', q, id)\n"
	       "  return nil\n"
	       "end\n"
	       "local cur = '0-0'\n"
	       "for i = 1, 32 do\n"
	       "  local c = redis.call('XAUTOCLAIM', q, g, me, ARGV[2], cur, 'COUNT', 1)\n"
	       "  for _, e in ipairs(c[2]) do\n"
	       "    if type(e) == 'table' then local t = take(e[1], e[2]); if t then return t end end\n"
	       "  end\n"
	       "  cur = c[1]\n"
	       "  if cur == '0-0' then break end\n"
	       "end\n"
	       "for i = 1, 32 do\n"
	       "  local rd = redis.call('XREADGROUP', 'GROUP', g, me, 'COUNT', 1, 'STREAMS', q, '>')\n"
	       "  if not rd then break end\n"
	       "  local e = rd[1][2][1]\n"
	       "  local t = take(e[1], e[2]); if t then return t end\n"
	       "end\n"
	       "return {'NONE'}\n"};

int ctl_redis_work_poll(ctl_store *s, const char *env_id, const char *worker_id, uint64_t reclaim_older_than_ms,
			const ctl_token *tok, json_t **work, char *err, size_t errlen)
{
	ctl_redis *r = (ctl_redis *)s;
	char kq[256], kp[256], reclaim[24], now[24], hex[65] = "";
	redisReply *rep = NULL;
	bool named = worker_id && *worker_id;
	*work = NULL;
	snprintf(kq, sizeof kq, P "q:%s", env_id);
	snprintf(kp, sizeof kp, P "polling:%s", env_id);
	snprintf(reclaim, sizeof reclaim, "%llu", (unsigned long long)reclaim_older_than_ms);
	snprintf(now, sizeof now, "%llu", (unsigned long long)ctl_redis_now(NULL, 0));
	/* a poll without a worker id is the consumer "-" and counts for no worker in the stats */
	if (tok)
		for (int i = 0; i < 32; i++)
			snprintf(hex + 2 * i, 3, "%02x", tok->hash[i]);
	const char *a[] = {kq, kp, named ? worker_id : "-", reclaim, now, P "work:", named ? "1" : "0", P,
			   tok ? tok->secret : "", tok ? tok->key_id : "", hex};
	int rc = ctl_redis_eval(r, &crw_poll_lua, 2, 11, a, NULL, &rep, err, errlen);
	if (rc)
		return rc;
	const char *st = ctl_redis_str(rep, 0);
	if (st && !strcmp(st, "OK"))
		rc = crw_build(r, rep, 2, true, work, err, errlen);
	else if (!st || strcmp(st, "NONE"))
		rc = err_set(err, errlen, -EIO, "redis %s: poll gave an answer of the wrong shape", r->addr);
	freeReplyObject(rep);
	return rc;
}

static ctl_redis_script crw_ack_lua = {
	.src = "local h = redis.call('HMGET', KEYS[1], 'env', 'state', 'sid')\n"
	       "if not h[1] or h[1] ~= ARGV[1] then return {'ENOENT'} end\n"
	       "if h[2] ~= 'queued' then return {'EINVAL', 'is ' .. h[2] .. ', not queued: nothing to acknowledge'} end\n"
	       "if h[3] and h[3] ~= '' then\n"
	       "  redis.call('XACK', KEYS[2], 'workers', h[3])\n"
	       "  redis.call('XDEL', KEYS[2], h[3])\n"
	       "end\n"
	       "redis.call('HSET', KEYS[1], 'state', 'starting', 'acknowledged_at', ARGV[2], 'sid', '', 'ack_ms', ARGV[3])\n"
	       "redis.call('ZADD', KEYS[3], ARGV[3], ARGV[4])\n"
	       "return {'OK'}\n"};

int ctl_redis_work_ack(ctl_store *s, const char *env_id, const char *work_id, char *err, size_t errlen)
{
	ctl_redis *r = (ctl_redis *)s;
	char kw[256], kq[256], ts[40], ms[24];
	snprintf(kw, sizeof kw, P "work:%s", work_id);
	snprintf(kq, sizeof kq, P "q:%s", env_id);
	snprintf(ms, sizeof ms, "%llu", (unsigned long long)ctl_redis_now(ts, sizeof ts));
	const char *a[] = {kw, kq, P "acked", env_id, ts, ms, work_id};
	return crw_change(r, &crw_ack_lua, 3, 7, a, work_id, err, errlen);
}

/* ---- the lease ------------------------------------------------------------------------------------------- */

/* Returns {status, state, last_heartbeat, ttl, extended}. The compare and the update are one script, so of two
 * beats with the same expected value (two replicas, one worker retrying) exactly one wins. Stopping and
 * stopped are not compared (as the SDK documents: the worker only needs to learn the state) and report
 * lease_extended false. */
static ctl_redis_script crw_heartbeat_lua = {
	.src = "local h = redis.call('HMGET', KEYS[1], 'env', 'state', 'latest_heartbeat_at', 'ttl', 'started_at')\n"
	       "if not h[1] or h[1] ~= ARGV[1] then return {'ENOENT'} end\n"
	       "local st, hb, ttl = h[2], h[3] or '', h[4] or '0'\n"
	       "if st == 'stopped' then return {'OK', st, hb, ttl, '0'} end\n"
	       "if st ~= 'stopping' then\n"
	       "  local match\n"
	       "  if ARGV[2] == 'NO_HEARTBEAT' then match = (hb == '') else match = (hb == ARGV[2]) end\n"
	       "  if st == 'queued' or not match then return {'ESTALE', st, hb, ttl, '0'} end\n"
	       "end\n"
	       /* a beat in the same microsecond as the last must still differ from it (the next compare) */
	       "local now = ARGV[4]\n"
	       "if now == hb then\n"
	       "  local d = now:sub(-2, -2)\n"
	       "  if d == '9' then d = '8' else d = string.char(d:byte() + 1) end\n"
	       "  now = now:sub(1, -3) .. d .. now:sub(-1)\n"
	       "end\n"
	       "local exp = tonumber(ARGV[5]) + tonumber(ARGV[3]) * 1000\n"
	       "redis.call('HSET', KEYS[1], 'latest_heartbeat_at', now, 'ttl', ARGV[3], 'exp', string.format('%d', exp))\n"
	       "redis.call('ZADD', KEYS[2], exp, ARGV[6])\n"
	       "redis.call('ZREM', KEYS[3], ARGV[6])\n"
	       /* stopping: the beat keeps the worker's lease while it shuts down, but extends nothing it may use */
	       "if st == 'stopping' then return {'OK', st, now, ARGV[3], '0'} end\n"
	       "redis.call('HSET', KEYS[1], 'state', 'active')\n"
	       "if not h[5] or h[5] == '' then redis.call('HSET', KEYS[1], 'started_at', now) end\n"
	       "return {'OK', 'active', now, ARGV[3], '1'}\n"};

int ctl_redis_work_heartbeat(ctl_store *s, const char *env_id, const char *work_id, const char *expected,
			     unsigned ttl_seconds, ctl_lease *lease, char *err, size_t errlen)
{
	ctl_redis *r = (ctl_redis *)s;
	char kw[256], ts[40], ms[24], ttl[16];
	redisReply *rep = NULL;
	memset(lease, 0, sizeof *lease);
	snprintf(kw, sizeof kw, P "work:%s", work_id);
	snprintf(ms, sizeof ms, "%llu", (unsigned long long)ctl_redis_now(ts, sizeof ts));
	snprintf(ttl, sizeof ttl, "%u", ttl_seconds);
	const char *a[] = {kw, P "leases", P "acked", env_id, expected ? expected : "NO_HEARTBEAT", ttl, ts, ms,
			   work_id};
	int rc = crw_run(r, &crw_heartbeat_lua, 3, 9, a, work_id, &rep, err, errlen);
	if (rc == 0 || rc == -ESTALE) {
		const char *st = ctl_redis_str(rep, 1), *hb = ctl_redis_str(rep, 2), *t = ctl_redis_str(rep, 3);
		const char *ext = ctl_redis_str(rep, 4);
		snprintf(lease->state, sizeof lease->state, "%s", st ? st : "");
		snprintf(lease->last_heartbeat, sizeof lease->last_heartbeat, "%s", hb ? hb : "");
		lease->ttl_seconds = t ? (unsigned)strtoul(t, NULL, 10) : 0;
		lease->lease_extended = ext && !strcmp(ext, "1");
	}
	if (rep)
		freeReplyObject(rep);
	return rc;
}

static ctl_redis_script crw_stop_lua = {
	.src = "local h = redis.call('HMGET', KEYS[1], 'env', 'state', 'sid', 'stop_requested_at')\n"
	       "if not h[1] or h[1] ~= ARGV[1] then return {'ENOENT'} end\n"
	       "local st = h[2]\n"
	       "if st == 'stopped' then return {'EALREADY'} end\n"
	       "if h[3] and h[3] ~= '' then\n"
	       "  redis.call('XACK', KEYS[2], 'workers', h[3])\n"
	       "  redis.call('XDEL', KEYS[2], h[3])\n"
	       "  redis.call('HSET', KEYS[1], 'sid', '')\n"
	       "end\n"
	       "if not h[4] or h[4] == '' then redis.call('HSET', KEYS[1], 'stop_requested_at', ARGV[3]) end\n"
	       /* nobody holds a queued item: stopping it gracefully has no one to wait for */
	       "if ARGV[2] == '1' or st == 'queued' then\n"
	       "  redis.call('HSET', KEYS[1], 'state', 'stopped', 'stopped_at', ARGV[3], 'exp', '0')\n"
	       "  redis.call('ZREM', KEYS[3], ARGV[4])\n"
	       "  redis.call('ZREM', KEYS[4], ARGV[4])\n"
	       "elseif st ~= 'stopping' then\n"
	       "  redis.call('HSET', KEYS[1], 'state', 'stopping')\n"
	       "end\n"
	       "return {'OK'}\n"};

int ctl_redis_work_stop(ctl_store *s, const char *env_id, const char *work_id, bool force, char *err,
			size_t errlen)
{
	ctl_redis *r = (ctl_redis *)s;
	char kw[256], kq[256], ts[40];
	snprintf(kw, sizeof kw, P "work:%s", work_id);
	snprintf(kq, sizeof kq, P "q:%s", env_id);
	ctl_redis_now(ts, sizeof ts);
	const char *a[] = {kw, kq, P "leases", P "acked", env_id, force ? "1" : "0", ts, work_id};
	return crw_change(r, &crw_stop_lua, 4, 8, a, work_id, err, errlen);
}

/* At most 100 of each kind per call (the timer comes back); an item is re-checked under the script, so one a
 * heartbeat just extended, or one another replica requeued a moment ago, is left alone. */
static ctl_redis_script crw_expire_lua = {
	.src = "local now, lt, P = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[4]\n"
	       "local n = 0\n"
	       "local function requeue(wid)\n"
	       "  local k = P .. 'work:' .. wid\n"
	       "  local h = redis.call('HMGET', k, 'env', 'state', 'exp', 'ack_ms', 'created_at')\n"
	       "  local st = h[2]\n"
	       "  if not h[1] or (st ~= 'active' and st ~= 'starting' and st ~= 'stopping') then\n"
	       "    redis.call('ZREM', KEYS[1], wid); redis.call('ZREM', KEYS[2], wid); return\n"
	       "  end\n"
	       "  local exp, ack = tonumber(h[3] or '0') or 0, tonumber(h[4] or '0') or 0\n"
	       "  if not ((exp > 0 and exp <= now) or (exp == 0 and ack > 0 and ack + lt <= now)) then return end\n"
	       "  if st == 'stopping' then\n"
	       /* asked to stop and gone: stopped, not handed to another worker */
	       "    redis.call('HSET', k, 'state', 'stopped', 'stopped_at', ARGV[3], 'exp', '0', 'ack_ms', '0')\n"
	       "    redis.call('ZREM', KEYS[1], wid); redis.call('ZREM', KEYS[2], wid)\n"
	       "    n = n + 1\n"
	       "    return\n"
	       "  end\n"
	       "  local q = P .. 'q:' .. h[1]\n"
	       "  redis.pcall('XGROUP', 'CREATE', q, 'workers', '0', 'MKSTREAM')\n"
	       "  local sid = redis.call('XADD', q, '*', 'w', wid, 'at', h[5] or ARGV[3])\n"
	       /* the holder that lost the lease is 401 from now on; the next delivery mints a new token */
	       "  local kh = redis.call('HGET', k, 'kh')\n"
	       "  if kh and kh ~= '' then redis.call('HSET', P .. 'key:' .. kh, 'revoked', '1') end\n"
	       "  redis.call('HSET', k, 'state', 'queued', 'sid', sid, 'exp', '0', 'ack_ms', '0', 'secret', '', 'kh', '')\n"
	       "  redis.call('HDEL', k, 'latest_heartbeat_at', 'acknowledged_at', 'started_at')\n"
	       "  redis.call('ZREM', KEYS[1], wid); redis.call('ZREM', KEYS[2], wid)\n"
	       "  n = n + 1\n"
	       "end\n"
	       "for _, w in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)) do\n"
	       "  requeue(w)\n"
	       "end\n"
	       "local old = string.format('%d', now - lt)\n"
	       "for _, w in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', old, 'LIMIT', 0, 100)) do\n"
	       "  requeue(w)\n"
	       "end\n"
	       "return n\n"};

/* Consumers of the queues' group whose worker is gone: XINFO CONSUMERS of up to 100 environments' queues per
 * call (a cursor in postern:csweep walks postern:envs), XGROUP DELCONSUMER of each with nothing pending and idle
 * (no read, no claim) for more than ARGV[2] ms. One with nothing pending owns nothing: a worker that comes back
 * is a consumer again on its next poll. Returns how many went. */
static ctl_redis_script crw_sweep_lua = {
	.src = "local P, bound = ARGV[1], tonumber(ARGV[2])\n"
	       "local from = tonumber(redis.call('GET', KEYS[2]) or '0') or 0\n"
	       "local envs = redis.call('ZRANGE', KEYS[1], from, from + 99)\n"
	       "if #envs < 100 then redis.call('SET', KEYS[2], '0') else redis.call('SET', KEYS[2], tostring(from + 100)) end\n"
	       "local n = 0\n"
	       "for _, env in ipairs(envs) do\n"
	       "  local q = P .. 'q:' .. env\n"
	       "  local cs = redis.pcall('XINFO', 'CONSUMERS', q, 'workers')\n"
	       "  if type(cs) == 'table' and not cs.err then\n"
	       "    for _, c in ipairs(cs) do\n"
	       "      local f = {}\n"
	       "      for i = 1, #c, 2 do f[c[i]] = c[i + 1] end\n"
	       "      if f['name'] and tonumber(f['pending']) == 0 and tonumber(f['idle']) > bound then\n"
	       "        redis.call('XGROUP', 'DELCONSUMER', q, 'workers', f['name'])\n"
	       "        n = n + 1\n"
	       "      end\n"
	       "    end\n"
	       "  end\n"
	       "end\n"
	       "return n\n"};

/* At most once a lease_ttl per process (the timer calls work_expire every lease_ttl/4); consumers idle for
 * five lease TTLs go (a live worker polls every few seconds, or beats within a TTL and polls again after). */
static void crw_sweep(ctl_redis *r, unsigned lease_ttl_seconds, uint64_t now)
{
	uint64_t every = lease_ttl_seconds ? (uint64_t)lease_ttl_seconds * 1000u : 1000u;
	char bound[24], err[256], q[300];
	redisReply *rep = NULL;
	if (r->swept_ms && now - r->swept_ms < every)
		return;
	r->swept_ms = now;
	snprintf(bound, sizeof bound, "%llu", (unsigned long long)every * 5u);
	const char *a[] = {P "envs", P "csweep", P, bound};
	if (ctl_redis_eval(r, &crw_sweep_lua, 2, 4, a, NULL, &rep, err, sizeof err) < 0) {
		log_warn("msg=\"sweeping idle consumers failed\" err=%s", log_quote(err, q, sizeof q));
		return;
	}
	if (rep->type == REDIS_REPLY_INTEGER && rep->integer > 0)
		log_info("msg=\"idle consumers removed\" count=%lld idle_over_ms=%s", (long long)rep->integer, bound);
	freeReplyObject(rep);
}

int ctl_redis_work_expire(ctl_store *s, unsigned lease_ttl_seconds, char *err, size_t errlen)
{
	ctl_redis *r = (ctl_redis *)s;
	char ts[40], ms[24], lt[24];
	redisReply *rep = NULL;
	snprintf(ms, sizeof ms, "%llu", (unsigned long long)ctl_redis_now(ts, sizeof ts));
	snprintf(lt, sizeof lt, "%llu", (unsigned long long)lease_ttl_seconds * 1000u);
	const char *a[] = {P "leases", P "acked", ms, lt, ts, P};
	int rc = ctl_redis_eval(r, &crw_expire_lua, 2, 6, a, NULL, &rep, err, errlen);
	if (rc)
		return rc;
	crw_sweep(r, lease_ttl_seconds, strtoull(ms, NULL, 10));
	if (rep->type == REDIS_REPLY_INTEGER)
		rc = (int)rep->integer;
	else
		rc = err_set(err, errlen, -EIO, "redis %s: expire gave an answer of the wrong shape", r->addr);
	freeReplyObject(rep);
	return rc;
}

/* ---- reading and metadata ------------------------------------------------------------------------------------ */

static ctl_redis_script crw_get_lua = {
	.src = "local h = redis.call('HMGET', KEYS[1], " CRW_FIELDS ")\n"
	       "if not h[1] or h[1] ~= ARGV[1] then return {'ENOENT'} end\n"
	       "return {'OK', unpack(h)}\n"};

int ctl_redis_work_get(ctl_store *s, const char *env_id, const char *work_id, json_t **work, char *err,
		       size_t errlen)
{
	ctl_redis *r = (ctl_redis *)s;
	char kw[256];
	redisReply *rep = NULL;
	*work = NULL;
	snprintf(kw, sizeof kw, P "work:%s", work_id);
	const char *a[] = {kw, env_id};
	int rc = crw_run(r, &crw_get_lua, 1, 2, a, work_id, &rep, err, errlen);
	if (!rc)
		rc = crw_build(r, rep, 1, false, work, err, errlen);
	if (rep)
		freeReplyObject(rep);
	return rc;
}

/* cjson keeps string values as they are; an empty table encodes as {} (metadata is a map of strings). */
static ctl_redis_script crw_meta_lua = {
	.src = "local h = redis.call('HMGET', KEYS[1], 'env', 'metadata')\n"
	       "if not h[1] or h[1] ~= ARGV[1] then return {'ENOENT'} end\n"
	       "local m = cjson.decode(h[2] or '{}')\n"
	       "for k, v in pairs(cjson.decode(ARGV[2])) do\n"
	       "  if v == cjson.null then m[k] = nil else m[k] = v end\n"
	       "end\n"
	       "local out = '{}'\n"
	       "if next(m) ~= nil then out = cjson.encode(m) end\n"
	       "redis.call('HSET', KEYS[1], 'metadata', out)\n"
	       "return {'OK', unpack(redis.call('HMGET', KEYS[1], " CRW_FIELDS "))}\n"};

int ctl_redis_work_update_metadata(ctl_store *s, const char *env_id, const char *work_id, json_t *patch,
				   json_t **work, char *err, size_t errlen)
{
	ctl_redis *r = (ctl_redis *)s;
	char kw[256];
	redisReply *rep = NULL;
	const char *k;
	json_t *v;
	*work = NULL;
	if (!json_is_object(patch))
		return err_set(err, errlen, -EINVAL, "metadata: expected an object of strings or nulls");
	json_object_foreach(patch, k, v) {
		if (!json_is_string(v) && !json_is_null(v))
			return err_set(err, errlen, -EINVAL, "metadata.%s: expected a string or null", k);
	}
	char *txt = json_dumps(patch, JSON_COMPACT);
	if (!txt)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	snprintf(kw, sizeof kw, P "work:%s", work_id);
	const char *a[] = {kw, env_id, txt};
	int rc = crw_run(r, &crw_meta_lua, 1, 3, a, work_id, &rep, err, errlen);
	if (!rc && work)
		rc = crw_build(r, rep, 1, false, work, err, errlen);
	if (rep)
		freeReplyObject(rep);
	free(txt);
	return rc;
}

/* {'OK', id1, fields1..., id2, fields2...} for the page after ARGV[1]; limit + 1 asked, to know of a next page. */
static ctl_redis_script crw_list_lua = {
	.src = "local min = '-inf'\n"
	       "if ARGV[1] ~= '' then\n"
	       "  local sc = redis.call('ZSCORE', KEYS[1], ARGV[1])\n"
	       "  if not sc then return {'EINVAL', 'page cursor ' .. ARGV[1] .. ' names no work item here'} end\n"
	       "  min = '(' .. sc\n"
	       "end\n"
	       "local out = {'OK'}\n"
	       "for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], min, '+inf', 'LIMIT', 0, tonumber(ARGV[2]))) do\n"
	       "  local h = redis.call('HMGET', ARGV[3] .. id, " CRW_FIELDS ")\n"
	       "  if h[1] then\n"
	       "    out[#out + 1] = id\n"
	       "    for i = 1, #h do out[#out + 1] = h[i] end\n"
	       "  end\n"
	       "end\n"
	       "return out\n"};

int ctl_redis_work_list(ctl_store *s, const char *env_id, const char *after, unsigned limit, ctl_page *out,
			char *err, size_t errlen)
{
	ctl_redis *r = (ctl_redis *)s;
	char kz[256], n[16];
	redisReply *rep = NULL;
	out->data = NULL, out->next_page = NULL;
	if (limit == 0)
		limit = 1;
	snprintf(kz, sizeof kz, P "works:%s", env_id);
	snprintf(n, sizeof n, "%u", limit + 1);
	const char *a[] = {kz, after ? after : "", n, P "work:"};
	int rc = crw_run(r, &crw_list_lua, 1, 4, a, "work list", &rep, err, errlen);
	if (rc)
		return rc;
	json_t *arr = json_array();
	size_t per = 1 + W_N, items = (rep->elements - 1) / per;
	for (size_t i = 0; arr && i < items && i < limit; i++) {
		json_t *w = NULL;
		rc = crw_build(r, rep, 1 + i * per + 1, false, &w, err, errlen);
		if (rc)
			goto out;
		json_array_append_new(arr, w);
	}
	if (!arr) {
		rc = err_set(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	if (items > limit && !(out->next_page = strdup(ctl_redis_str(rep, 1 + (limit - 1) * per)))) {
		rc = err_set(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	out->data = arr;
	arr = NULL;
out:
	json_decref(arr);
	freeReplyObject(rep);
	return rc;
}

/* depth = the stream's length (it holds exactly the unacknowledged items), pending = XPENDING's count,
 * oldest_queued_at = the first entry's "at", workers_polling = ids in the polling set seen in the last 30 s. */
static ctl_redis_script crw_stats_lua = {
	.src = "local q, now = KEYS[1], tonumber(ARGV[1])\n"
	       "local depth, pending, oldest = 0, 0, ''\n"
	       "if redis.call('EXISTS', q) == 1 then\n"
	       "  depth = redis.call('XLEN', q)\n"
	       "  local p = redis.pcall('XPENDING', q, 'workers')\n"
	       "  if type(p) == 'table' and type(p[1]) == 'number' then pending = p[1] end\n"
	       "  local f = redis.call('XRANGE', q, '-', '+', 'COUNT', 1)\n"
	       "  if f[1] then\n"
	       "    for i = 1, #f[1][2], 2 do if f[1][2][i] == 'at' then oldest = f[1][2][i + 1] end end\n"
	       "  end\n"
	       "end\n"
	       "local wp = redis.call('ZCOUNT', KEYS[2], string.format('%d', now - 30000), '+inf')\n"
	       "return {'OK', tostring(depth), tostring(pending), oldest, tostring(wp)}\n"};

int ctl_redis_work_stats(ctl_store *s, const char *env_id, ctl_stats *st, char *err, size_t errlen)
{
	ctl_redis *r = (ctl_redis *)s;
	char kq[256], kp[256], now[24];
	redisReply *rep = NULL;
	memset(st, 0, sizeof *st);
	snprintf(kq, sizeof kq, P "q:%s", env_id);
	snprintf(kp, sizeof kp, P "polling:%s", env_id);
	snprintf(now, sizeof now, "%llu", (unsigned long long)ctl_redis_now(NULL, 0));
	const char *a[] = {kq, kp, now};
	int rc = crw_run(r, &crw_stats_lua, 2, 3, a, "work stats", &rep, err, errlen);
	if (rc)
		return rc;
	const char *d = ctl_redis_str(rep, 1), *p = ctl_redis_str(rep, 2), *o = ctl_redis_str(rep, 3);
	const char *w = ctl_redis_str(rep, 4);
	st->depth = d ? strtoull(d, NULL, 10) : 0;
	st->pending = p ? strtoull(p, NULL, 10) : 0;
	snprintf(st->oldest_queued_at, sizeof st->oldest_queued_at, "%s", o ? o : "");
	st->workers_polling = w ? strtoull(w, NULL, 10) : 0;
	freeReplyObject(rep);
	return 0;
}
