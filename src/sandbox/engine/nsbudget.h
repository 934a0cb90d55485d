/* The inotify budget an unprivileged caller's sessions share (docs/sandbox-engine.md, "Per-user kernel
 * budgets"). The host charges inotify instances and watches to the owner of a session's user namespace.
 * Root's sessions each have an owner of their own (sandbox.c); an unprivileged caller owns all of its
 * sessions' namespaces, so their caps add up against the caller's own limits (fs.inotify.max_user_instances,
 * 128 by default, and max_user_watches). So the sum is bounded across every process of the caller: a reserve
 * (a quarter of each limit, at least 8 instances) stays the caller's, and the rest is cut into tokens, one
 * flock()ed file each in a directory of the caller's. A session holds its share of tokens for its life (the
 * kernel drops the locks when the holder dies, so nothing leaks) and its namespace is capped at that share.
 * A session that cannot have its share is refused; the tokens never exceed the budget. */
#ifndef POSTERN_NSBUDGET_H
#define POSTERN_NSBUDGET_H

#include <stddef.h>

#define NSB_MAX_SHARE 32u           /* inotify instances of one session at most */
#define NSB_MAX_WATCHES 65536ull    /* inotify watches of one session at most */
#define NSB_DEFAULT_SESSIONS 32u    /* sessions the budget is sized for (as --max-sandboxes) */

/* What a session may use, from the caller's limits, sized for `sessions` concurrent sessions (no I/O). */
struct nsb_size {
	unsigned long long limit, reserve, tokens; /* instances: the caller's limit, kept back, shared out */
	unsigned long long wlimit, wreserve;       /* watches: the same */
	unsigned share;                            /* instances per session (tokens it holds) */
	unsigned long long watches;                /* watches per session */
};
void nsb_sizes(unsigned long long limit, unsigned long long wlimit, unsigned sessions, struct nsb_size *z);

typedef struct nsb_share {
	int fds[NSB_MAX_SHARE];
	unsigned n;
	struct nsb_size z;
} nsb_share;

/* Reads the caller's limits (/proc/sys/user/max_inotify_*), sizes the share and takes it from dir (NULL:
 * nsb_default_dir). 0; -EDQUOT when the budget is spent (err names what is held and what to do); another
 * -errno with err. On failure nothing is held. */
int nsb_take(const char *dir, unsigned sessions, nsb_share *sh, char *err, size_t errlen);
void nsb_release(nsb_share *sh);
/* /tmp/postern-budget-<uid>: one place for all of the caller's processes, whatever their environment. */
const char *nsb_default_dir(char *buf, size_t len);

#endif
