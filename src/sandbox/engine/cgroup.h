/* Per-session cgroups for the sandbox: memory, pids and cpu limits on cgroup v2 (a delegated parent,
 * or the v2 root) or on cgroup v1 controllers, whichever is present and writable. Detection reads
 * /proc/self/mountinfo and /proc/self/cgroup; the parsers are pure for unit tests. A controller that
 * cannot be used is reported as not handled so the caller falls back to rlimits. */
#ifndef POSTERN_CGROUP_H
#define POSTERN_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum cgr_ctrl { CGR_MEMORY = 0, CGR_PIDS, CGR_CPU, CGR_NCTRL };
enum cgr_kind { CGR_NONE = 0, CGR_V1, CGR_V2 };

#define CGR_PATH_MAX 512

/* Where the hierarchies are mounted and where this process sits in each. */
struct cgr_mounts {
	char v2_mount[CGR_PATH_MAX];           /* "" when no cgroup2 mount */
	char v2_path[CGR_PATH_MAX];            /* our cgroup in v2 ("0::/path") */
	char v1_mount[CGR_NCTRL][CGR_PATH_MAX]; /* "" when that v1 controller is not mounted */
	char v1_path[CGR_NCTRL][CGR_PATH_MAX];
	char v2_root[CGR_PATH_MAX]; /* mount roots, to translate /proc/self/cgroup paths */
	char v1_root[CGR_NCTRL][CGR_PATH_MAX];
};

/* Pure: fill m from the text of /proc/self/mountinfo (clears m first), then of /proc/self/cgroup. */
int cgr_parse_mountinfo(const char *text, struct cgr_mounts *m);
int cgr_parse_proc_cgroup(const char *text, struct cgr_mounts *m);
/* Pure: the controller names listed in a cgroup.controllers text, as a bit mask of 1u << cgr_ctrl. */
unsigned cgr_parse_controllers(const char *text);
/* Pure: the value of `key` in a flat keyed file ("oom_kill 3\n..."), 0 when absent. */
uint64_t cgr_parse_keyed(const char *text, const char *key);
const char *cgr_ctrl_name(enum cgr_ctrl c);

struct cgr_limits {
	uint64_t memory_bytes;
	unsigned pids;
	unsigned cpu_millis; /* 0 = no quota */
};

typedef struct cgr cgr;

/* Creates the session's cgroup(s) named `name` and writes the limits. parent, when set, is one or more
 * ':'-separated directories delegated to us: a cgroup v2 directory, or a cgroup v1 controller's directory.
 * Without one, our own v2 cgroup is used when it is delegated to us. Never fails for lack of cgroups:
 * see cgr_kind_of() and cgr_why(). NULL only on ENOMEM. */
cgr *cgr_new(const char *parent, const char *name, const struct cgr_limits *l, bool disable);
/* How a controller is handled (CGR_NONE: not limited by cgroups). */
enum cgr_kind cgr_kind_of(const cgr *g, enum cgr_ctrl c);
/* Why controller c is not limited by a cgroup ("" when it is), written into buf. */
const char *cgr_why(const cgr *g, enum cgr_ctrl c, char *buf, size_t len);
/* Moves pid into the v2 cgroup, if one was created. 0 or -errno. The v1 cgroups are joined by the
 * process itself: see cgr_join_fds(). */
int cgr_attach(cgr *g, pid_t pid);
/* The v1 cgroups' `tasks` files, opened for writing with our credentials (v1 checks the opener's), for a
 * single-threaded process to join by writing "0" to each. Moving the writing thread itself skips the
 * kernel's global threadgroup lock, whose first writer waits for an RCU grace period (5-18 ms on a
 * 2-core VM, 30-50 us the other way); writing a pid to cgroup.procs takes it. fds[0..n) for the bits of *ctrls
 * (1u << cgr_ctrl, in controller order); returns n. A file that cannot be opened leaves its controller
 * unused (rlimits stand in). */
int cgr_join_fds(cgr *g, int fds[CGR_NCTRL], unsigned *ctrls);
/* The joins of ctrls failed with err (errno): those controllers are not limited by a cgroup. */
void cgr_join_failed(cgr *g, unsigned ctrls, int err);
/* Counters: OOM kills and refused forks so far. */
void cgr_events(const cgr *g, uint64_t *oom_kills, uint64_t *pids_max_hits);
/* Kills what is left (cgroup.kill, or signalling cgroup.procs) and removes the cgroups (bounded wait). */
void cgr_free(cgr *g);

#endif
