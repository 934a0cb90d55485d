/* Sandbox engine: one isolated, warm sandbox per agent session.
 *
 * Model
 *   sbx_new() clones a persistent init (pid 1 of a fresh pid namespace) in new user, mount, pid, net,
 *   ipc, uts and cgroup namespaces. The init builds the root (read-only bind view of `image`, fresh
 *   /proc, minimal /dev, tmpfs /tmp, writable workspace at `mount_point`, protected paths re-bound
 *   read-only, hidden paths masked), pivot_roots into it, drops every capability, sets no_new_privs
 *   and then serves commands over a SOCK_SEQPACKET socketpair. Each command is one fork of the init:
 *   the child calls setsid() (own process group, no controlling tty), keeps only fds 0-2, gets the
 *   scrubbed environment, loads the seccomp allowlist and execs. The init reaps every process of the
 *   sandbox (orphaned daemons included) and reports exit codes and signals.
 *
 *   Output never passes through the init: the caller creates the pipes and hands their ends to the
 *   init with SCM_RIGHTS, so stdout+stderr (merged) are read directly by the caller.
 *
 * Identity / uid
 *   Started by an unprivileged user: processes run as that user (the single uid_map line maps the
 *   caller's euid to the same number, like bubblewrap). Started as root: processes run as an
 *   unprivileged host uid/gid (`run_uid`/`run_gid`, default 65534), seen inside as the workspace's
 *   owner, and the workspace is an idmapped mount, so files written there land on disk owned by the
 *   workspace's owner while the sandbox cannot use root's access to the rest of the host. A session
 *   never runs as host uid 0: when the workspace's filesystem cannot be idmapped, sbx_new() fails with
 *   a reason, unless the workspace is owned by run_uid/run_gid already (then it is bound as it is).
 *   Host paths holding credentials (`hide_paths`) are masked in the image view.
 *
 * File tools (sbx_cmd.exec_fd)
 *   The file tools run in a process of the sandbox like any command: sbx_spawn() with exec_fd runs the
 *   executable of that host fd (the static worker in a sealed memfd, passed to the init with the command,
 *   so the image need not hold it, nor a loader or libc for it). The host holds no fd into the sandbox's
 *   file system.
 *
 * Limits (sbx_limits_describe)
 *   memory, pids, cpu: cgroup v2 (a delegated `cgroup_parent`, or our own cgroup's subtree when the
 *   controllers are enabled there) else cgroup v1 controllers (memory, pids, cpu) when writable (root),
 *   else rlimits (RLIMIT_AS for memory, RLIMIT_NPROC per user namespace for pids, none for cpu).
 *   disk: a scratch workspace is a disk of the cap (an ext4 image as root, else a tmpfs within the memory
 *   limit); a shared one has a btrfs qgroup or project quota where there is one (root), else a per-file cap
 *   only, and sbx_new() refuses it when the cap was asked for (disk_bytes set, not WS_QUOTA_NONE); no
 *   workspace: the shared tmpfs cap (ws_quota.h).
 *   Detected at sbx_new(), logged once, reported by sbx_limits_describe().
 *
 * Network
 *   The sandbox's net namespace has only `lo` (up). No route leaves it. For an egress proxy, call
 *   sbx_netns_listen() right after sbx_new(): it returns a listening TCP socket bound INSIDE the
 *   namespace (created by the init, passed back over the control socket); the caller accept()s on it
 *   from the host side and set HTTP(S)_PROXY for commands via `env_set`.
 *
 * Threads: an sbx (and its sbx_proc) is used by one thread at a time. Every call that waits has a
 * timeout. Errors are negative errno values; sbx_new() returns NULL with a message in err. */
#ifndef POSTERN_SANDBOX_H
#define POSTERN_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct sbx sbx;
typedef struct sbx_proc sbx_proc;

#define SBX_DEFAULT_MEMORY (2ull << 30)
#define SBX_DEFAULT_PIDS 1024u
#define SBX_DEFAULT_TMP (1ull << 30)
#define SBX_DEFAULT_TIMEOUT_MS 120000u
#define SBX_DEFAULT_OUTPUT_CAP (100u * 1024u)
#define SBX_MAX_ARGS 4096
#define SBX_MAX_ENV 512
/* Per-session caps on per-user kernel budgets (host defaults: 128 inotify instances per user) of a root
 * caller's sessions (each charged to an owner id of its own); unprivileged, a share of the caller's budget
 * (nsbudget.h). */
#define SBX_NS_INOTIFY_INSTANCES 32u
#define SBX_NS_INOTIFY_WATCHES 65536ull
#define SBX_NS_MQUEUE_BYTES (256u * 1024u)
/* Started as root: the session's user namespace is owned by SBX_OWNER_UID_BASE + (0..65535), a host uid no
 * account has, so per-user budgets are charged to it rather than to root. */
#define SBX_OWNER_UID_BASE 2147418112u

/* sbx_config.flags */
enum {
	SBX_F_NO_CGROUP = 1u << 0, /* do not use cgroups even when available (rlimits only) */
	SBX_F_QUIET = 1u << 1,     /* do not log the "limits in force" line */
	SBX_F_SCRATCH = 1u << 2,   /* the workspace directory is the session's own and discarded after it: it
				    * may hold the session's capped disk instead (ws_quota.h) */
};

typedef struct sbx_config {
	const char *image;       /* root of the read-only view; default "/" */
	const char *workspace;   /* host directory mounted read-write; NULL = an empty tmpfs workspace */
	const char *mount_point; /* where the workspace appears, also the cwd; default "/workspace" */
	const char *hostname;    /* default "sandbox" */
	uint64_t memory_bytes;   /* 0 = SBX_DEFAULT_MEMORY */
	unsigned pids;           /* 0 = SBX_DEFAULT_PIDS */
	uint64_t tmp_bytes;      /* size cap of the /tmp tmpfs; 0 = SBX_DEFAULT_TMP */
	uint64_t disk_bytes;     /* workspace disk cap (ws_quota.h says how it holds); 0 = WS_QUOTA_DEFAULT_BYTES
				  * not asked for; WS_QUOTA_NONE = no total cap wanted (the default's size) */
	unsigned cpu_millis;     /* CPU quota in 1/1000 CPU (1500 = 1.5 CPUs); 0 = no quota */
	unsigned timeout_ms;     /* default per-command wall clock timeout; 0 = SBX_DEFAULT_TIMEOUT_MS */
	/* NULL-terminated lists; NULL selects the default shown. */
	const char *const *env_allow; /* host variable names passed through: PATH LANG LC_* TERM TZ */
	const char *const *env_set;   /* "K=V" set for every command (HTTP_PROXY=..., HOME=...); wins over allow */
	/* Doors (ws_doors.h), relative to the workspace: those that exist are kept read-only, those the
	 * session makes are moved aside when it ends; nothing is created. A trailing '/' marks a directory.
	 * Must outlive the sbx. Default: ws_doors_default (git's config, hooks, commondir..., shell rc files). */
	const char *const *protected_paths;
	/* Absolute paths in the image masked (empty tmpfs over a directory, /dev/null over a file).
	 * Default: /root /home /etc/shadow /etc/gshadow /etc/sudoers /etc/sudoers.d /etc/ssh
	 * /run/secrets /var/run/secrets /var/lib/postern, plus the caller's $HOME. */
	const char *const *hide_paths;
	const char *cgroup_parent; /* delegated cgroup v2 directory to create the session's cgroup in */
	/* Started unprivileged: how many concurrent sessions the caller's inotify budget is shared among
	 * (nsbudget.h); 0 = NSB_DEFAULT_SESSIONS (32, as --max-sandboxes). */
	unsigned budget_sessions;
	uid_t run_uid;             /* started as root: host uid of the sandbox's processes; 0 = 65534 */
	gid_t run_gid;             /* started as root: host gid; 0 = 65534 */
	unsigned flags;            /* SBX_F_* */
} sbx_config;

/* Fills defaults (all zero/NULL = defaults). */
void sbx_config_init(sbx_config *c);

/* Starts the sandbox and its init (~1 ms). NULL on failure with a reason in err. */
sbx *sbx_new(const sbx_config *c, char *err, size_t errlen);
/* Session kill: SIGKILLs the init (the kernel then kills every process of the pid namespace,
 * double-forked daemons included), waits for it, removes the cgroups. Leaves no process, mount,
 * cgroup or temporary directory behind. NULL is fine. */
void sbx_free(sbx *s);

/* One command. */
typedef struct sbx_cmd {
	const char *const *argv; /* NULL-terminated; argv[0] is looked up in PATH inside the sandbox */
	const char *const *env;  /* extra "K=V" for this command (override the session's); may be NULL */
	const char *cwd;         /* sandbox path; default mount_point */
	unsigned timeout_ms;     /* 0 = the session default; for sbx_spawn 0 = none */
	size_t output_cap;       /* sbx_run: bytes of output kept (the TAIL); 0 = SBX_DEFAULT_OUTPUT_CAP */
	bool stdin_pipe;         /* sbx_spawn: give the caller a pipe to stdin (else /dev/null) */
	int exec_fd;             /* > 2: run the executable this host fd holds (a sealed memfd of a static
				  * program: the file tools' worker) instead of looking argv[0] up in the
				  * image; argv[0] is then only its name. 0: none */
	bool last;               /* sbx_run: the session's last command (a one-shot run): the init ends as
				  * soon as it has reported the exit, ahead of sbx_free; nothing else may follow */
} sbx_cmd;

typedef struct sbx_result {
	int exit_code;          /* exit status when exited normally, else -1 */
	int signal;             /* terminating signal, else 0 */
	bool timed_out;         /* killed (whole process group) by the wall clock timeout */
	bool oom_killed;        /* the memory limit was hit while the command ran (cgroup accounting) */
	bool pids_limited;      /* the pids limit refused a fork while the command ran */
	char *output;           /* malloc'd, NUL-terminated: the last output_len bytes of merged stdout+stderr */
	size_t output_len;
	uint64_t output_total;  /* bytes the command wrote in all */
	bool truncated;         /* output_total > output_len */
	uint64_t duration_us;
} sbx_result;

/* Runs a command to completion (or its timeout). On timeout the command's process group is SIGKILLed;
 * processes that left the group (setsid daemons) survive until sbx_kill_all() or sbx_free().
 * Returns 0 when the command ran (see r), -errno when it could not be started. */
int sbx_run(sbx *s, const sbx_cmd *cmd, sbx_result *r);
void sbx_result_free(sbx_result *r);
/* The shell convention: exit code, 124 on timeout, 128+N on signal N. */
int sbx_result_status(const sbx_result *r);

/* A long-lived process (the persistent bash). The caller reads output_fd (merged stdout+stderr,
 * O_NONBLOCK) and writes stdin_fd (when cmd->stdin_pipe; else -1). Both are owned by the proc. */
int sbx_spawn(sbx *s, const sbx_cmd *cmd, sbx_proc **out);
int sbx_proc_output_fd(const sbx_proc *p);
int sbx_proc_stdin_fd(const sbx_proc *p);
void sbx_proc_close_stdin(sbx_proc *p);
pid_t sbx_proc_pid(const sbx_proc *p); /* pid inside the sandbox */
/* Signals the process's whole process group. */
int sbx_proc_kill(sbx_proc *p, int sig);
/* Waits up to timeout_ms (0 = just check) for the process to end: 1 and *wstatus (waitpid style) when it
 * has, 0 while it runs, -errno on error. */
int sbx_proc_wait(sbx_proc *p, int timeout_ms, int *wstatus);
/* SIGKILLs the process group if still running, closes the fds, frees. NULL is fine. */
void sbx_proc_free(sbx_proc *p);

/* SIGKILLs every process of the sandbox except its init (kill(-1) from pid 1) and waits until they are
 * reaped (bounded). The sandbox stays usable: the "restart" of a session's shell. */
int sbx_kill_all(sbx *s);

/* For event loops: the control socket is readable when the init has news; sbx_pump() handles it
 * (records exits) without blocking. */
int sbx_ctl_fd(const sbx *s);
int sbx_pump(sbx *s);

/* Creates a listening TCP socket inside the sandbox's net namespace, bound to addr:port (e.g.
 * "127.0.0.1", 3128). *fd_out (O_CLOEXEC|O_NONBLOCK) belongs to the caller. */
int sbx_netns_listen(sbx *s, const char *addr, int port, int *fd_out);

const char *sbx_mount_point(const sbx *s);
pid_t sbx_init_pid(const sbx *s); /* host pid of the init (for /proc/PID/ns/net and friends) */
unsigned sbx_default_timeout_ms(const sbx *s);

/* Which limits are in force, e.g.
 * "memory=cgroup-v1:2147483648 pids=cgroup-v1:1024 cpu=none tmp=tmpfs:1073741824 seccomp=on". */
const char *sbx_limits_describe(const sbx *s);

/* Number of processes currently in the sandbox besides its init (from the init's view). */
int sbx_nprocs(sbx *s);

#endif
