/* Internal to the engine's host side: sandbox.c (preparing, starting and ending a session) and
 * sandbox_proc.c (the control socket, commands and their processes) share the session's state. Names of
 * its own start with sbxh_ / SBXH_. Nothing outside those two files includes it. */
#ifndef POSTERN_SANDBOX_INT_H
#define POSTERN_SANDBOX_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "sandbox/engine/cgroup.h"
#include "sandbox/engine/nsbudget.h"
#include "sandbox/engine/sandbox.h"
#include "sandbox/engine/ws_doors.h"
#include "sandbox/engine/ws_quota.h"

#define SBXH_MAX_RECS 256
#define SBXH_KILL_GRACE_MS 5000

struct sbxh_rec {
	uint32_t id;
	bool used, started, exited, failed;
	pid_t pid;
	int wstatus, err;
};

struct sbx {
	int ctl;
	pid_t init_pid;
	int pidfd;
	cgr *cg;
	char *mount_point;
	unsigned timeout_ms;
	uint32_t next_id;
	char limits[440];
	enum ws_quota_kind disk;    /* how the workspace's disk is capped (ws_quota.h) */
	struct ws_quota_undo quota; /* a shared workspace's quota limit, put back at the end */
	struct sbxh_rec recs[SBXH_MAX_RECS];
	/* replies to synchronous requests */
	bool got_listen, got_killall, got_nprocs;
	int listen_rc, listen_fd, killall_n, nprocs_n;
	char *buf; /* SBXP_MAX_PAYLOAD + 1 */
	int ws_fd; /* O_PATH of the host workspace, for the doors at the end; -1 without one */
	char *ws_name;
	const char *const *doors;
	uint64_t doors_before;
	struct timespec doors_t0; /* CLOCK_REALTIME_COARSE before the init: what changed after is the session's */
	ws_doors_keeper keeper;   /* moves the doors at the end, even when this process is killed */
	nsb_share budget; /* unprivileged: the session's share of the caller's inotify budget */
};

struct sbx_proc {
	sbx *s;
	uint32_t id;
	pid_t pid;
	int in_fd, out_fd;
	bool exited;
	int wstatus;
};

#endif
