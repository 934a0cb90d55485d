/* Internal: the control protocol between the host side (sandbox.c, sandbox_proc.c) and the in-sandbox init
 * (sbxinit.c). One SOCK_SEQPACKET message = one header + payload; fds travel with SCM_RIGHTS (sbx_proto.c). */
#ifndef POSTERN_SBX_PROTO_H
#define POSTERN_SBX_PROTO_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define SBXP_MAX_PAYLOAD (64 * 1024)

enum sbxp_type {
	/* host -> init */
	SBXP_GO = 1,    /* cgroups made; a = SBXP_GO_* flags; b = SBXP_JOIN_* bits, one fd each in that order:
			 * a cgroup v1 `tasks` file to join (write "0"); payload: the seccomp BPF program */
	SBXP_MAPS,      /* (root caller) the host wrote our id maps; fd: the idmapped workspace tree, if any */
	SBXP_EXEC,      /* id; a = flags (SBXP_EXEC_STDIN, _FD); payload: argc, envc (u32), cwd, args, env (NUL-sep);
			 * fds: output, stdin (with _STDIN), the executable (with _FD) */
	SBXP_KILL,      /* id; a = signal: the command's process group */
	SBXP_KILLALL,   /* every process but the init */
	SBXP_LISTEN,    /* a = port; payload: address text */
	SBXP_NPROCS,
	/* init -> host */
	SBXP_READY = 100, /* a = SBXP_READY_* flags; b = SBXP_JOIN_* bits that failed | errno << 8 */
	SBXP_FAIL,      /* a = errno; payload: text (setup failed; the init exits) */
	SBXP_STARTED,   /* id; a = pid */
	SBXP_EXEC_ERR,  /* id; a = errno */
	SBXP_EXITED,    /* id; a = wait status; b = pid */
	SBXP_LISTEN_R,  /* a = 0 or -errno; fd */
	SBXP_KILLALL_R, /* a = processes killed */
	SBXP_NPROCS_R,  /* a = count */
};

#define SBXP_EXEC_STDIN 1
#define SBXP_EXEC_FD 2 /* the last fd is the executable (argv[0] is only its name) */
#define SBXP_EXEC_NOSTART 4 /* no SBXP_STARTED (sbx_run waits for SBXP_EXITED only: one wake-up less) */
#define SBXP_EXEC_LAST 8    /* the session's last command: the init exits once it has reported its exit */
#define SBXP_GO_RLIMIT_AS 1    /* no memory cgroup: RLIMIT_AS = memory_bytes in commands */
#define SBXP_GO_RLIMIT_NPROC 2 /* no pids cgroup: RLIMIT_NPROC = pids in commands */
#define SBXP_JOIN_MEMORY 1     /* = 1u << CGR_MEMORY (cgroup.h): the init falls back to RLIMIT_AS if it fails */
#define SBXP_JOIN_PIDS 2       /* = 1u << CGR_PIDS: RLIMIT_NPROC if it fails */
#define SBXP_JOIN_CPU 4        /* = 1u << CGR_CPU */
#define SBXP_MAX_FDS 4         /* per message */
#define SBXP_READY_SYS_EMPTY 1 /* the kernel refused a sysfs of our own: /sys is an empty tmpfs */
#define SBXP_READY_LANDLOCK 2  /* special files are confined by Landlock (else by the mknod filter) */

#define SBXP_MAPS_TMPFS 1 /* SBXP_MAPS a: the workspace is a tmpfs of ws_tmpfs_bytes (the disk image failed) */

struct sbxp_hdr {
	uint32_t type;
	uint32_t id;
	int32_t a;
	int32_t b;
	uint32_t len;
};

/* What the init needs, prepared by the host before the clone (the init inherits a copy). */
struct sbxi_params {
	int ctl;         /* control socket end */
	const char *image;     /* opened by the init inside its mount namespace (mounts opened before the */
	const char *workspace; /* clone belong to the host's namespace and cannot be cloned from); or NULL */
	uid_t uid;       /* ids inside: the caller's own (self-mapped), or with host_maps the workspace owner's */
	gid_t gid;
	bool host_maps;  /* the host writes the maps and sends SBXP_MAPS (a root caller running us as nobody) */
	const char *mount_point;
	const char *hostname;
	uint64_t tmp_bytes;
	const char *const *hide;       /* absolute sandbox paths */
	const char *const *protect;    /* relative to the workspace; trailing '/' = directory */
	char *const *env;              /* session environment */
	uint64_t memory_bytes;
	bool ws_tmpfs;           /* the workspace is a tmpfs the init makes (an unprivileged scratch one) */
	uint64_t ws_tmpfs_bytes; /* its size */
	mode_t ws_mode;          /* the mode of its root: the workspace directory's */
	uint64_t fsize_bytes; /* RLIMIT_FSIZE of every command (the disk cap: no one file outgrows the disk) */
	unsigned pids;
	unsigned inotify_instances;     /* caps of our own namespace (per-user budgets, nsbudget.h) */
	unsigned long long inotify_watches;
	bool no_landlock; /* POSTERN_SANDBOX_NO_LANDLOCK set: take the mknod-filter fallback (tests) */
};

/* Runs in the cloned child: builds the sandbox (while the host sets up cgroups and compiles the seccomp
 * program in parallel), waits for SBXP_GO, then serves. Never returns. Uses no malloc and no stdio:
 * the host may be multithreaded and the clone copies whatever locks other threads held. */
void sbxi_main(const struct sbxi_params *p) __attribute__((noreturn));

/* Sends one message (with up to SBXP_MAX_FDS fds). 0 or -errno (-EINVAL: more fds). */
int sbxp_send(int sock, uint32_t type, uint32_t id, int32_t a, int32_t b, const void *payload, uint32_t len,
	      const int *fds, int nfds);
/* Receives one message into buf (cap SBXP_MAX_PAYLOAD); fds received (O_CLOEXEC) in fds[0..*nfds).
 * Returns 1, 0 on EOF, -errno (-EAGAIN when flags has MSG_DONTWAIT and nothing is there). */
int sbxp_recv(int sock, struct sbxp_hdr *h, void *buf, int *fds, int *nfds, int flags);

#endif
