/* The Redis store: connection (timeouts, reconnect on the next call), Lua scripts (EVALSHA, EVAL when the
 * server lost them), keys, environments, sessions. The work queue is in ctl_redis_work.c, the event logs in
 * ctl_redis_events.c.
 * Every change that touches more than one key is one Lua script, so two control replicas never see half of
 * it. The key layout is in docs/control.md, "Redis store". */
#include "control/ctl_redis.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "control/ctl_redis_int.h"
#include "core/err.h"
#include "core/log.h"

#define CRD_TIMEOUT_MS 2000
#define P CTL_REDIS_PREFIX

/* ---- connection ---------------------------------------------------------------------------------------- */

static int crd_connect(ctl_redis *r, char *err, size_t errlen)
{
	struct timeval tv = {CRD_TIMEOUT_MS / 1000, (CRD_TIMEOUT_MS % 1000) * 1000};
	redisContext *c = redisConnectWithTimeout(r->host, r->port, tv);
	if (!c)
		return err_set(err, errlen, -EIO, "redis %s: out of memory connecting", r->addr);
	if (c->err) {
		int rc = err_set(err, errlen, -EIO, "redis %s: cannot connect: %s (is redis-server running there?)",
				 r->addr, c->errstr);
		redisFree(c);
		return rc;
	}
	if (redisSetTimeout(c, tv) != REDIS_OK) {
		redisFree(c);
		return err_set(err, errlen, -EIO, "redis %s: cannot set the command timeout", r->addr);
	}
	if (r->password) {
		const char *av[] = {"AUTH", r->user, r->password};
		int ac = r->user[0] ? 3 : 2;
		if (!r->user[0])
			av[1] = r->password;
		redisReply *rep = redisCommandArgv(c, ac, av, NULL);
		bool ok = rep && rep->type == REDIS_REPLY_STATUS;
		/* the server's text (WRONGPASS ..., ERR AUTH <password> called without any password configured) never
		 * holds the password */
		int rc = ok ? 0
			    : err_set(err, errlen, -EIO, "redis %s: AUTH%s%s refused: %s", r->addr, r->user[0] ? " as " : "",
				      r->user, rep && rep->type == REDIS_REPLY_ERROR ? rep->str : c->errstr);
		if (rep)
			freeReplyObject(rep);
		if (rc) {
			redisFree(c);
			return rc;
		}
	}
	if (r->db) {
		redisReply *rep = redisCommand(c, "SELECT %u", r->db);
		bool ok = rep && rep->type == REDIS_REPLY_STATUS;
		int rc = ok ? 0
			    : err_set(err, errlen, -EIO, "redis %s: SELECT %u failed: %s", r->addr, r->db,
				      rep && rep->type == REDIS_REPLY_ERROR ? rep->str : c->errstr);
		if (rep)
			freeReplyObject(rep);
		if (rc) {
			redisFree(c);
			return rc;
		}
	}
	r->c = c;
	return 0;
}

/* A command that got no answer leaves the connection in an unknown state: drop it, connect on the next call. */
static int crd_lost(ctl_redis *r, char *err, size_t errlen)
{
	const char *why = r->c->errstr;
	if (r->c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK))
		why = "no answer within the 2 s timeout";
	else if (r->c->err == REDIS_ERR_EOF)
		why = "the server closed the connection";
	int rc = err_set(err, errlen, -EIO, "redis %s: %s", r->addr, why);
	redisFree(r->c);
	r->c = NULL;
	return rc;
}

/* The reply, error replies included (the caller tells NOSCRIPT from the rest). */
static int crd_raw(ctl_redis *r, int argc, const char **argv, const size_t *lens, redisReply **reply, char *err,
		   size_t errlen)
{
	*reply = NULL;
	if (!r->c) {
		int rc = crd_connect(r, err, errlen);
		if (rc)
			return rc;
	}
	redisReply *rep = redisCommandArgv(r->c, argc, argv, lens);
	if (!rep)
		return crd_lost(r, err, errlen);
	*reply = rep;
	return 0;
}

int ctl_redis_cmd(ctl_redis *r, int argc, const char **argv, const size_t *lens, redisReply **reply, char *err,
		  size_t errlen)
{
	int rc = crd_raw(r, argc, argv, lens, reply, err, errlen);
	if (rc)
		return rc;
	if ((*reply)->type == REDIS_REPLY_ERROR) {
		rc = err_set(err, errlen, -EIO, "redis %s: %s: %s", r->addr, argv[0], (*reply)->str);
		freeReplyObject(*reply);
		*reply = NULL;
	}
	return rc;
}

int ctl_redis_eval(ctl_redis *r, ctl_redis_script *sc, int nkeys, int argc, const char **argv,
		   const size_t *lens, redisReply **reply, char *err, size_t errlen)
{
	char nk[16];
	*reply = NULL;
	const char **v = calloc((size_t)argc + 3, sizeof *v);
	size_t *l = calloc((size_t)argc + 3, sizeof *l);
	int rc = 0;
	if (!v || !l) {
		rc = err_set(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	if (!sc->sha[0]) {
		unsigned char md[SHA_DIGEST_LENGTH];
		SHA1((const unsigned char *)sc->src, strlen(sc->src), md);
		for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
			snprintf(sc->sha + 2 * i, 3, "%02x", md[i]);
	}
	snprintf(nk, sizeof nk, "%d", nkeys);
	v[0] = "EVALSHA", v[1] = sc->sha, v[2] = nk;
	l[0] = 7, l[1] = 40, l[2] = strlen(nk);
	for (int i = 0; i < argc; i++) {
		v[i + 3] = argv[i];
		l[i + 3] = lens ? lens[i] : strlen(argv[i]);
	}
	if ((rc = crd_raw(r, argc + 3, v, l, reply, err, errlen)))
		goto out;
	if ((*reply)->type == REDIS_REPLY_ERROR && !strncmp((*reply)->str, "NOSCRIPT", 8)) {
		/* a restarted or flushed server: EVAL sends the text and caches it again */
		freeReplyObject(*reply);
		v[0] = "EVAL", v[1] = sc->src;
		l[0] = 4, l[1] = strlen(sc->src);
		if ((rc = crd_raw(r, argc + 3, v, l, reply, err, errlen)))
			goto out;
	}
	if ((*reply)->type == REDIS_REPLY_ERROR) {
		rc = err_set(err, errlen, -EIO, "redis %s: script failed: %s", r->addr, (*reply)->str);
		freeReplyObject(*reply);
		*reply = NULL;
	}
out:
	free(v);
	free(l);
	return rc;
}

const char *ctl_redis_str(const redisReply *rep, size_t i)
{
	if (!rep || rep->type != REDIS_REPLY_ARRAY || i >= rep->elements)
		return NULL;
	const redisReply *e = rep->element[i];
	return e->type == REDIS_REPLY_STRING || e->type == REDIS_REPLY_STATUS ? e->str : NULL;
}

int ctl_redis_status(const redisReply *rep, const char *what, char *err, size_t errlen)
{
	const char *st = ctl_redis_str(rep, 0);
	if (!st)
		return err_set(err, errlen, -EIO, "redis: a script gave an answer of the wrong shape for %s", what);
	if (!strcmp(st, "OK"))
		return 0;
	if (!strcmp(st, "ENOENT"))
		return err_set(err, errlen, -ENOENT, "%s: not found", what);
	if (!strcmp(st, "EEXIST"))
		return err_set(err, errlen, -EEXIST, "%s: already exists", what);
	if (!strcmp(st, "ESTALE"))
		return err_set(err, errlen, -ESTALE, "%s: expected_last_heartbeat does not match the lease", what);
	if (!strcmp(st, "EALREADY"))
		return err_set(err, errlen, -EALREADY, "%s: already stopped", what);
	if (!strcmp(st, "EINVAL")) {
		const char *why = ctl_redis_str(rep, 1);
		return err_set(err, errlen, -EINVAL, "%s: %s", what, why ? why : "not in a state that allows this");
	}
	return err_set(err, errlen, -EIO, "redis: unknown script status %s for %s", st, what);
}

uint64_t ctl_redis_now(char *ts, size_t tslen)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	if (ts)
		ctl_now(ts, tslen);
	return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* ---- lists: a sorted set per listing, scored by a global counter (creation order), cursor = last id -------- */

static ctl_redis_script crd_put_lua = {
	.src = "redis.call('SET', KEYS[1], ARGV[2])\n"
	       "if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then\n"
	       "  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[1])\n"
	       "end\n"
	       "return {'OK'}\n"};

static ctl_redis_script crd_page_lua = {
	.src = "local min = '-inf'\n"
	       "if ARGV[1] ~= '' then\n"
	       "  local sc = redis.call('ZSCORE', KEYS[1], ARGV[1])\n"
	       "  if not sc then return {'EINVAL', 'page cursor ' .. ARGV[1] .. ' names no item of this list'} end\n"
	       "  min = '(' .. sc\n"
	       "end\n"
	       "local ids = redis.call('ZRANGEBYSCORE', KEYS[1], min, '+inf', 'LIMIT', 0, tonumber(ARGV[2]))\n"
	       "table.insert(ids, 1, 'OK')\n"
	       "return ids\n"};

int ctl_redis_page_ids(ctl_redis *r, const char *zset, const char *after, unsigned limit, redisReply **ids,
		       bool *more, char *err, size_t errlen)
{
	char n[16];
	if (limit == 0)
		limit = 1;
	snprintf(n, sizeof n, "%u", limit + 1);
	const char *a[] = {zset, after ? after : "", n};
	int rc = ctl_redis_eval(r, &crd_page_lua, 1, 3, a, NULL, ids, err, errlen);
	if (rc)
		return rc;
	rc = ctl_redis_status(*ids, "list", err, errlen);
	if (rc) {
		freeReplyObject(*ids);
		*ids = NULL;
		return rc;
	}
	*more = (*ids)->elements - 1 > limit;
	return 0;
}

/* Fills out from the JSON strings at objpfx + id for the ids of a page. */
static int crd_page_json(ctl_redis *r, const char *zset, const char *objpfx, const char *after, unsigned limit,
			 ctl_page *out, char *err, size_t errlen)
{
	redisReply *ids = NULL, *vals = NULL;
	bool more = false;
	char **keys = NULL;
	out->data = NULL, out->next_page = NULL;
	int rc = ctl_redis_page_ids(r, zset, after, limit, &ids, &more, err, errlen);
	if (rc)
		return rc;
	size_t n = ids->elements - 1;
	if (more)
		n = limit ? limit : 1;
	json_t *arr = json_array();
	if (!arr) {
		rc = err_set(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	if (n) {
		keys = calloc(n + 1, sizeof *keys);
		if (!keys) {
			rc = err_set(err, errlen, -ENOMEM, "out of memory");
			goto out;
		}
		keys[0] = (char *)"MGET";
		for (size_t i = 0; i < n; i++) {
			const char *id = ctl_redis_str(ids, i + 1);
			if (!id || asprintf(&keys[i + 1], "%s%s", objpfx, id) < 0) {
				keys[i + 1] = NULL;
				rc = err_set(err, errlen, -ENOMEM, "out of memory");
				goto out;
			}
		}
		rc = ctl_redis_cmd(r, (int)n + 1, (const char **)keys, NULL, &vals, err, errlen);
		if (rc)
			goto out;
		for (size_t i = 0; i < vals->elements; i++) {
			if (vals->element[i]->type != REDIS_REPLY_STRING)
				continue; /* deleted between the two calls */
			json_t *o = json_loads(vals->element[i]->str, 0, NULL);
			if (!o) {
				rc = err_set(err, errlen, -EIO, "redis %s: %s holds no JSON", r->addr, keys[i + 1]);
				goto out;
			}
			json_array_append_new(arr, o);
		}
	}
	if (more && n) {
		out->next_page = strdup(ctl_redis_str(ids, n));
		if (!out->next_page) {
			rc = err_set(err, errlen, -ENOMEM, "out of memory");
			goto out;
		}
	}
	out->data = arr;
	arr = NULL;
out:
	if (keys)
		for (size_t i = 1; i <= n; i++)
			free(keys[i]);
	free(keys);
	json_decref(arr);
	if (ids)
		freeReplyObject(ids);
	if (vals)
		freeReplyObject(vals);
	return rc;
}

static int crd_put_json(ctl_redis *r, const char *objpfx, const char *zset, const char *id, json_t *obj,
			char *err, size_t errlen)
{
	char key[256];
	redisReply *rep = NULL;
	char *txt = json_dumps(obj, JSON_COMPACT);
	if (!txt)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	snprintf(key, sizeof key, "%s%s", objpfx, id);
	const char *a[] = {key, zset, P "seq", id, txt};
	int rc = ctl_redis_eval(r, &crd_put_lua, 3, 5, a, NULL, &rep, err, errlen);
	if (!rc)
		rc = ctl_redis_status(rep, id, err, errlen);
	if (rep)
		freeReplyObject(rep);
	free(txt);
	return rc;
}

int ctl_redis_get_json(ctl_redis *r, const char *objpfx, const char *id, json_t **obj, char *err, size_t errlen)
{
	char key[256];
	redisReply *rep = NULL;
	*obj = NULL;
	snprintf(key, sizeof key, "%s%s", objpfx, id);
	const char *a[] = {"GET", key};
	int rc = ctl_redis_cmd(r, 2, a, NULL, &rep, err, errlen);
	if (rc)
		return rc;
	if (rep->type != REDIS_REPLY_STRING)
		rc = err_set(err, errlen, -ENOENT, "%s: not found", id);
	else if (!(*obj = json_loads(rep->str, 0, NULL)))
		rc = err_set(err, errlen, -EIO, "redis %s: %s holds no JSON", r->addr, key);
	freeReplyObject(rep);
	return rc;
}

/* ---- keys: postern:key:<hex sha256> a hash {id, kind, name, env, hash, revoked}; postern:keyid:<id> its hash */

static ctl_redis_script crd_key_add_lua = {
	.src = "if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return {'EEXIST'} end\n"
	       "redis.call('HSET', KEYS[1], 'id', ARGV[1], 'kind', ARGV[2], 'name', ARGV[3], 'env', ARGV[4],\n"
	       "  'hash', ARGV[5], 'revoked', '0')\n"
	       "redis.call('SET', KEYS[2], ARGV[5])\n"
	       "return {'OK'}\n"};

static ctl_redis_script crd_key_revoke_lua = {
	.src = "local h = redis.call('GET', KEYS[1])\n"
	       "if not h then return {'ENOENT'} end\n"
	       "redis.call('HSET', ARGV[1] .. h, 'revoked', '1')\n"
	       "return {'OK'}\n"};

static void crd_hex(const uint8_t hash[32], char out[65])
{
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", hash[i]);
}

static int crd_key_add(ctl_store *s, const char *kind, const char *id, const char *name, const char *env_id,
		       const uint8_t hash[32], char *err, size_t errlen)
{
	ctl_redis *r = (ctl_redis *)s;
	char hex[65], k1[128], k2[256];
	redisReply *rep = NULL;
	crd_hex(hash, hex);
	snprintf(k1, sizeof k1, P "key:%s", hex);
	snprintf(k2, sizeof k2, P "keyid:%s", id);
	const char *a[] = {k1, k2, id, kind, name ? name : "", env_id ? env_id : "", hex};
	int rc = ctl_redis_eval(r, &crd_key_add_lua, 2, 7, a, NULL, &rep, err, errlen);
	if (!rc)
		rc = ctl_redis_status(rep, id, err, errlen);
	if (rep)
		freeReplyObject(rep);
	return rc;
}

static int crd_key_check(ctl_store *s, const char *kind, const uint8_t hash[32], char *id, size_t idlen,
			 char *env_id, size_t envlen, char *name, size_t namelen)
{
	ctl_redis *r = (ctl_redis *)s;
	char hex[65], k[128], err[256];
	redisReply *rep = NULL;
	crd_hex(hash, hex);
	snprintf(k, sizeof k, P "key:%s", hex);
	const char *a[] = {"HMGET", k, "id", "kind", "env", "hash", "revoked", "name"};
	int rc = ctl_redis_cmd(r, 8, a, NULL, &rep, err, sizeof err);
	if (rc) {
		log_warn("msg=\"key check failed\" err=\"%s\"", err);
		return rc;
	}
	const char *kid = ctl_redis_str(rep, 0), *kk = ctl_redis_str(rep, 1), *ke = ctl_redis_str(rep, 2);
	const char *kh = ctl_redis_str(rep, 3), *kr = ctl_redis_str(rep, 4);
	rc = -ENOENT;
	/* the lookup is by hash already; the compare keeps a torn or foreign entry from passing */
	if (kid && kk && kh && kr && strlen(kh) == 64 && CRYPTO_memcmp(kh, hex, 64) == 0 && !strcmp(kk, kind)) {
		if (id && idlen)
			snprintf(id, idlen, "%s", kid);
		if (env_id && envlen)
			snprintf(env_id, envlen, "%s", ke ? ke : "");
		if (name && namelen) {
			const char *kn = ctl_redis_str(rep, 5);
			snprintf(name, namelen, "%s", kn ? kn : "");
		}
		/* a revoked key is told apart (the API says so), as the SQLite store does */
		rc = strcmp(kr, "0") ? -EKEYREVOKED : 0;
	}
	freeReplyObject(rep);
	return rc;
}

static int crd_key_revoke(ctl_store *s, const char *id, char *err, size_t errlen)
{
	ctl_redis *r = (ctl_redis *)s;
	char k[256];
	redisReply *rep = NULL;
	snprintf(k, sizeof k, P "keyid:%s", id);
	const char *a[] = {k, P "key:"};
	int rc = ctl_redis_eval(r, &crd_key_revoke_lua, 1, 2, a, NULL, &rep, err, errlen);
	if (!rc)
		rc = ctl_redis_status(rep, id, err, errlen);
	if (rc == -ENOENT)
		rc = err_set(err, errlen, -ENOENT, "no key %s", id);
	if (rep)
		freeReplyObject(rep);
	return rc;
}

/* ---- environments and sessions: JSON strings, listed by a sorted set ------------------------------------ */

static int crd_env_put(ctl_store *s, const char *id, json_t *obj, char *err, size_t errlen)
{
	return crd_put_json((ctl_redis *)s, P "env:", P "envs", id, obj, err, errlen);
}

static int crd_env_get(ctl_store *s, const char *id, json_t **obj, char *err, size_t errlen)
{
	return ctl_redis_get_json((ctl_redis *)s, P "env:", id, obj, err, errlen);
}

static int crd_env_list(ctl_store *s, const char *after, unsigned limit, ctl_page *out, char *err, size_t errlen)
{
	return crd_page_json((ctl_redis *)s, P "envs", P "env:", after, limit, out, err, errlen);
}

static int crd_session_put(ctl_store *s, const char *id, json_t *obj, char *err, size_t errlen)
{
	return crd_put_json((ctl_redis *)s, P "sesn:", P "sessions", id, obj, err, errlen);
}

static int crd_session_get(ctl_store *s, const char *id, json_t **obj, char *err, size_t errlen)
{
	return ctl_redis_get_json((ctl_redis *)s, P "sesn:", id, obj, err, errlen);
}

static int crd_session_list(ctl_store *s, const char *after, unsigned limit, ctl_page *out, char *err,
			    size_t errlen)
{
	return crd_page_json((ctl_redis *)s, P "sessions", P "sesn:", after, limit, out, err, errlen);
}

static ctl_redis_script crd_session_delete_lua = {
	.src = "if redis.call('EXISTS', KEYS[1]) == 0 then return {'ENOENT'} end\n"
	       "redis.call('DEL', KEYS[1], KEYS[3], KEYS[4], KEYS[5])\n"
	       "redis.call('ZREM', KEYS[2], ARGV[1])\n"
	       "return {'OK'}\n"};

static int crd_session_delete(ctl_store *s, const char *id, char *err, size_t errlen)
{
	ctl_redis *r = (ctl_redis *)s;
	char k1[256], k3[256], k4[256], k5[256];
	redisReply *rep = NULL;
	snprintf(k1, sizeof k1, P "sesn:%s", id);
	snprintf(k3, sizeof k3, P "ev:%s", id);
	snprintf(k4, sizeof k4, P "evseq:%s", id);
	snprintf(k5, sizeof k5, P "tool:%s", id);
	const char *a[] = {k1, P "sessions", k3, k4, k5, id};
	int rc = ctl_redis_eval(r, &crd_session_delete_lua, 5, 6, a, NULL, &rep, err, errlen);
	if (!rc)
		rc = ctl_redis_status(rep, id, err, errlen);
	if (rep)
		freeReplyObject(rep);
	return rc;
}

/* ---- open, close ----------------------------------------------------------------------------------------- */

static void crd_close(ctl_store *s)
{
	ctl_redis *r = (ctl_redis *)s;
	if (!r)
		return;
	if (r->c)
		redisFree(r->c);
	if (r->password) {
		OPENSSL_cleanse(r->password, strlen(r->password));
		free(r->password);
	}
	free(r);
}

static const struct ctl_store_ops crd_ops = {
	.name = "redis",
	.close = crd_close,
	.key_add = crd_key_add,
	.key_check = crd_key_check,
	.key_revoke = crd_key_revoke,
	.env_put = crd_env_put,
	.env_get = crd_env_get,
	.env_list = crd_env_list,
	.work_enqueue = ctl_redis_work_enqueue,
	.work_poll = ctl_redis_work_poll,
	.work_ack = ctl_redis_work_ack,
	.work_heartbeat = ctl_redis_work_heartbeat,
	.work_stop = ctl_redis_work_stop,
	.work_expire = ctl_redis_work_expire,
	.work_get = ctl_redis_work_get,
	.work_update_metadata = ctl_redis_work_update_metadata,
	.work_list = ctl_redis_work_list,
	.work_stats = ctl_redis_work_stats,
	.session_put = crd_session_put,
	.session_get = crd_session_get,
	.session_list = crd_session_list,
	.session_delete = crd_session_delete,
	.event_append = ctl_redis_event_append,
	.event_read = ctl_redis_event_read,
	.event_tool = ctl_redis_event_tool,
	.event_last = ctl_redis_event_last,
};

/* "redis://host:port[/db]" into r. */
static int crd_parse_url(ctl_redis *r, const char *url, char *err, size_t errlen)
{
	const char *p = url, *h, *he;
	if (strncmp(p, "redis://", 8))
		return err_set(err, errlen, -EINVAL, "store %s: expected redis://host:port[/db]", url);
	p += 8;
	const char *at = strchr(p, '@');
	if (at && (size_t)(at - p) < strcspn(p, "/")) {
		size_t ul = (size_t)(at - p);
		/* a password in the URL would sit in the config and in every message naming the store */
		if (memchr(p, ':', ul))
			return err_set(err, errlen, -EINVAL, "store: a password in the URL is refused: put it in "
				       "redis_password_file (mode 0600) and write redis://user@host:port[/db]");
		if (!ul || ul >= sizeof r->user || strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") < ul)
			return err_set(err, errlen, -EINVAL, "store %s: the user before @ must be 1 to 127 of [A-Za-z0-9_.-]", url);
		memcpy(r->user, p, ul);
		r->user[ul] = 0;
		p = at + 1;
	}
	if (strpbrk(p, "@?#"))
		return err_set(err, errlen, -EINVAL, "store %s: options in the URL are not supported (redis://[user@]host:port[/db])",
			       url);
	if (*p == '[') {
		h = p + 1;
		if (!(he = strchr(h, ']')))
			return err_set(err, errlen, -EINVAL, "store %s: an IPv6 address without its closing ]", url);
		p = he + 1;
	} else {
		h = p;
		he = p + strcspn(p, ":/");
		p = he;
	}
	if (he == h || (size_t)(he - h) >= sizeof r->host)
		return err_set(err, errlen, -EINVAL, "store %s: no host (redis://host:port[/db])", url);
	memcpy(r->host, h, (size_t)(he - h));
	r->host[he - h] = 0;
	r->port = 6379;
	if (*p == ':') {
		char *end;
		long v = strtol(p + 1, &end, 10);
		if (end == p + 1 || v < 1 || v > 65535 || (*end && *end != '/'))
			return err_set(err, errlen, -EINVAL, "store %s: the port must be 1-65535", url);
		r->port = (int)v;
		p = end;
	}
	r->db = 0;
	if (*p == '/' && p[1]) {
		char *end;
		unsigned long v = strtoul(p + 1, &end, 10);
		if (end == p + 1 || *end || v > 10000)
			return err_set(err, errlen, -EINVAL, "store %s: the database after / must be a number", url);
		r->db = (unsigned)v;
	} else if (*p && strcmp(p, "/"))
		return err_set(err, errlen, -EINVAL, "store %s: unexpected %s (redis://host:port[/db])", url, p);
	snprintf(r->addr, sizeof r->addr, "%s%s%s:%d/%u", strchr(r->host, ':') ? "[" : "", r->host,
		 strchr(r->host, ':') ? "]" : "", r->port, r->db);
	return 0;
}

/* Redis >= 6.2 (XAUTOCLAIM, exclusive XRANGE ids), not a cluster (scripts touch keys they compute). */
static int crd_check_server(ctl_redis *r, char *err, size_t errlen)
{
	redisReply *rep = NULL;
	const char *a[] = {"INFO", "server"};
	int rc = ctl_redis_cmd(r, 2, a, NULL, &rep, err, errlen);
	if (rc)
		return rc;
	const char *v = rep->type == REDIS_REPLY_STRING ? strstr(rep->str, "redis_version:") : NULL;
	const char *mode = rep->type == REDIS_REPLY_STRING ? strstr(rep->str, "redis_mode:") : NULL;
	unsigned maj = 0, min = 0;
	if (!v || sscanf(v, "redis_version:%u.%u", &maj, &min) != 2)
		rc = err_set(err, errlen, -EIO, "redis %s: INFO names no redis_version", r->addr);
	else if (maj < 6 || (maj == 6 && min < 2))
		rc = err_set(err, errlen, -EIO, "redis %s: server %u.%u is too old: the store needs Redis 6.2 or newer "
						"(XAUTOCLAIM)", r->addr, maj, min);
	else if (mode && !strncmp(mode, "redis_mode:cluster", 18))
		rc = err_set(err, errlen, -EIO, "redis %s: Redis Cluster is not supported (use one primary)", r->addr);
	freeReplyObject(rep);
	if (rc)
		return rc;
	/* the durability an acknowledged write has is the server's appendfsync: say so when there is none */
	const char *b[] = {"CONFIG", "GET", "appendonly"};
	if (ctl_redis_cmd(r, 3, b, NULL, &rep, err, errlen) == 0) {
		const char *on = ctl_redis_str(rep, 1);
		if (on && !strcmp(on, "no"))
			log_warn("msg=\"redis store without appendonly: a Redis restart loses what it had not saved\" "
				 "addr=%s fix=\"appendonly yes, appendfsync always (docs/control.md)\"",
				 r->addr);
		freeReplyObject(rep);
	}
	if (errlen)
		err[0] = 0;
	return 0;
}

int ctl_redis_open(const char *url, const char *password, ctl_store **out, char *err, size_t errlen)
{
	*out = NULL;
	ctl_redis *r = calloc(1, sizeof *r);
	if (!r)
		return err_set(err, errlen, -ENOMEM, "out of memory");
	r->base.ops = &crd_ops;
	if (password && !(r->password = strdup(password))) {
		free(r);
		return err_set(err, errlen, -ENOMEM, "out of memory");
	}
	int rc = crd_parse_url(r, url, err, errlen);
	if (!rc && r->user[0] && !r->password)
		rc = err_set(err, errlen, -EINVAL, "store %s: a user without a password: give redis_password_file", r->addr);
	if (!rc)
		rc = crd_connect(r, err, errlen);
	if (!rc)
		rc = crd_check_server(r, err, errlen);
	if (rc) {
		crd_close(&r->base);
		return rc;
	}
	*out = &r->base;
	return 0;
}
