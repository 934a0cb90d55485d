/* Seccomp allowlist for sandboxed commands. Built for what shells, coreutils, compilers, git, python
 * and node need; everything else fails with EPERM (clone3 with ENOSYS so libc falls back to clone,
 * whose namespace flags we can check). Argument checks compare full 64-bit values where the kernel
 * reads a 64-bit value, and mask to 32 bits where the kernel truncates (ioctl's request). */
#include "sandbox/engine/seccomp_policy.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>
#include <unistd.h>

static const char *const allowed[] = {
	/* files and descriptors */
	"read", "write", "close", "close_range", "stat", "fstat", "lstat",
	"newfstatat", "statx", "statfs", "fstatfs", "lseek", "pread64", "pwrite64", "readv", "writev", "preadv",
	"pwritev", "preadv2", "pwritev2", "access", "faccessat", "faccessat2", "pipe", "pipe2", "dup", "dup2",
	"dup3", "fcntl", "flock", "fsync", "fdatasync", "syncfs", "sync", "sync_file_range", "truncate",
	"ftruncate", "fallocate", "fadvise64", "readahead", "getdents", "getdents64", "getcwd", "chdir", "fchdir",
	"rename", "renameat", "renameat2", "mkdir", "mkdirat", "rmdir", "link", "linkat", "unlink", "unlinkat",
	"symlink", "symlinkat", "readlink", "readlinkat", "chown",
	"fchown", "lchown", "fchownat", "umask", "utime", "utimes", "utimensat", "futimesat",
	"sendfile", "splice", "tee", "vmsplice", "copy_file_range", "setxattr", "lsetxattr", "fsetxattr",
	"getxattr", "lgetxattr", "fgetxattr", "listxattr", "llistxattr", "flistxattr", "removexattr",
	"lremovexattr", "fremovexattr", "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
	"memfd_create", "cachestat",
	/* polling, events, timers */
	"poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait",
	"epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2", "signalfd", "signalfd4", "timerfd_create",
	"timerfd_settime", "timerfd_gettime", "nanosleep", "clock_nanosleep", "clock_gettime", "clock_getres",
	"gettimeofday", "time", "getitimer", "setitimer", "alarm", "timer_create", "timer_settime",
	"timer_gettime", "timer_getoverrun", "timer_delete", "pause", "io_setup", "io_destroy", "io_getevents",
	"io_pgetevents", "io_submit", "io_cancel",
	/* memory */
	"mmap", "mprotect", "munmap", "brk", "mremap", "msync", "mincore", "madvise", "mlock", "mlock2",
	"munlock", "mlockall", "munlockall", "remap_file_pages", "pkey_mprotect", "pkey_alloc", "pkey_free",
	"get_mempolicy", "set_mempolicy", "mbind", "membarrier", "process_madvise", "map_shadow_stack", "mseal",
	/* processes, signals, threads */
	"fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid", "kill", "tkill", "tgkill",
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigtimedwait", "rt_sigqueueinfo",
	"rt_tgsigqueueinfo", "rt_sigsuspend", "sigaltstack", "restart_syscall", "pidfd_open", "pidfd_send_signal",
	"futex", "futex_waitv", "set_robust_list", "get_robust_list", "set_tid_address", "arch_prctl", "prctl",
	"rseq", "sched_yield", "sched_setaffinity", "sched_getaffinity", "sched_setparam", "sched_getparam",
	"sched_setscheduler", "sched_getscheduler", "sched_get_priority_max", "sched_get_priority_min",
	"sched_rr_get_interval", "sched_setattr", "sched_getattr", "getcpu", "getpriority", "setpriority",
	"ioprio_get", "ioprio_set", "personality", "seccomp", "getrandom", "set_thread_area", "get_thread_area",
	/* identity and limits (no capabilities: these can only lower privileges) */
	"getpid", "getppid", "gettid", "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid",
	"getgroups", "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid", "setfsgid",
	"setgroups", "capget", "capset", "setpgid", "getpgid", "getpgrp", "setsid", "getsid", "getrlimit",
	"setrlimit", "prlimit64", "getrusage", "times", "sysinfo", "uname", "landlock_create_ruleset",
	"landlock_add_rule", "landlock_restrict_self",
	/* System V and POSIX IPC (private to the sandbox's ipc namespace) */
	"shmget", "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semctl", "msgget", "msgsnd",
	"msgrcv", "msgctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify",
	"mq_getsetattr",
	/* sockets (socket, socketpair: argument-checked below) */
	"connect", "accept", "accept4", "bind", "listen", "shutdown", "getsockname", "getpeername", "setsockopt",
	"getsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg",
	/* argument-checked: */
	"ioctl", "socket", "socketpair", "clone", "chmod", "fchmod", "fchmodat", "fchmodat2", "open", "openat",
	"creat", "mknod", "mknodat",
	NULL,
};

static const char *const forbidden[] = {
	"ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp", "mount", "umount2",
	"pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsconfig", "fsmount", "fspick",
	"mount_setattr", "unshare", "setns", "clone3", "keyctl", "add_key", "request_key", "bpf",
	"perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
	"open_by_handle_at", "name_to_handle_at", "kexec_load", "kexec_file_load", "init_module",
	"finit_module", "delete_module", "create_module", "query_module", "get_kernel_syms", "reboot",
	"swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "settimeofday", "clock_settime",
	"clock_adjtime", "adjtimex", "syslog", "vhangup", "iopl", "ioperm", "modify_ldt", "uselib", "ustat",
	"sysfs", "_sysctl", "lookup_dcookie", "sethostname", "setdomainname", "fanotify_init",
	"fanotify_mark", "memfd_secret", "migrate_pages", "move_pages", "nfsservctl", "socketcall",
	NULL,
};

const char *const *secpol_allowed(void)
{
	return allowed;
}

const char *const *secpol_forbidden(void)
{
	return forbidden;
}

#define NS_CLONE_FLAGS                                                                                   \
	((scmp_datum_t)(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |       \
			CLONE_NEWNET | CLONE_NEWCGROUP))

/* SCMP_A0() leaves datum_b implicit, which clang flags. */
#define ARG(n, cmp, a, b) ((struct scmp_arg_cmp){ .arg = (n), .op = (cmp), .datum_a = (a), .datum_b = (b) })

/* Calls that take a file mode: allowed only without set-user-ID/set-group-ID bits, so that no file the
 * session creates or changes carries them on the host disk (nosuid holds only inside). mkdir is not
 * here: the kernel ignores those bits in mkdir's mode. open and openat read the mode only with O_CREAT
 * or O_TMPFILE, so a call without either passes whatever its mode register holds. */
static const struct {
	const char *name;
	unsigned mode_arg;
	int flags_arg; /* -1: none */
} mode_calls[] = {
	{ "chmod", 1, -1 },  { "fchmod", 1, -1 }, { "fchmodat", 2, -1 }, { "fchmodat2", 2, -1 },
	{ "creat", 1, -1 },  { "open", 2, 1 },    { "openat", 3, 2 },
};

/* O_TMPFILE without the O_DIRECTORY bit glibc folds into it. */
#define TMPFILE_BIT 020000000
#define SETID_BITS ((scmp_datum_t)(S_ISUID | S_ISGID))

static bool checked(const char *name)
{
	static const char *const others[] = { "ioctl", "socket", "socketpair", "clone", "mknod", "mknodat", NULL };
	for (size_t i = 0; i < sizeof mode_calls / sizeof mode_calls[0]; i++)
		if (!strcmp(name, mode_calls[i].name))
			return true;
	for (const char *const *o = others; *o; o++)
		if (!strcmp(name, *o))
			return true;
	return false;
}

static int add_mode_rules(scmp_filter_ctx ctx, char *err, size_t errlen)
{
	int rc = 0;
	for (size_t i = 0; i < sizeof mode_calls / sizeof mode_calls[0]; i++) {
		int nr = seccomp_syscall_resolve_name(mode_calls[i].name);
		if (nr == __NR_SCMP_ERROR)
			continue; /* unknown to this libseccomp (fchmodat2 before 2.5.5): stays denied */
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
				      ARG(mode_calls[i].mode_arg, SCMP_CMP_MASKED_EQ, SETID_BITS, 0));
		if (rc == 0 && mode_calls[i].flags_arg >= 0)
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
					      ARG((unsigned)mode_calls[i].flags_arg, SCMP_CMP_MASKED_EQ,
						  (scmp_datum_t)(O_CREAT | TMPFILE_BIT), 0));
		if (rc < 0) {
			snprintf(err, errlen, "seccomp rule %s: %s", mode_calls[i].name, strerror(-rc));
			return rc;
		}
	}
	/* mknod: regular files, FIFOs and sockets only (devices need CAP_MKNOD anyway), never set-id bits.
	 * Where FIFOs and socket files may appear is Landlock's job (sbxroot.c). */
	static const scmp_datum_t types[] = { 0, S_IFREG, S_IFIFO, S_IFSOCK };
	for (size_t i = 0; i < sizeof types / sizeof types[0] && rc == 0; i++) {
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mknod), 1,
				      ARG(1, SCMP_CMP_MASKED_EQ, S_IFMT | SETID_BITS, types[i]));
		if (rc == 0)
			rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mknodat), 1,
					      ARG(2, SCMP_CMP_MASKED_EQ, S_IFMT | SETID_BITS, types[i]));
	}
	if (rc < 0)
		snprintf(err, errlen, "seccomp mknod rules: %s", strerror(-rc));
	return rc;
}

#define SOCK_TYPE_MASK ((scmp_datum_t)(0xffffffffu & ~(unsigned)(SOCK_NONBLOCK | SOCK_CLOEXEC)))

static int add_rules(scmp_filter_ctx ctx, char *err, size_t errlen)
{
	int rc = 0;
	for (const char *const *n = allowed; *n; n++) {
		int nr = seccomp_syscall_resolve_name(*n);
		if (nr == __NR_SCMP_ERROR)
			continue; /* unknown to this libseccomp: stays denied */
		if (checked(*n))
			continue;
		rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
		if (rc < 0) {
			snprintf(err, errlen, "seccomp rule %s: %s", *n, strerror(-rc));
			return rc;
		}
	}
	/* Only IP sockets: no new AF_UNIX (host sockets bound into the image), AF_NETLINK, AF_PACKET... */
	if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, ARG(0, SCMP_CMP_EQ, AF_INET, 0))) ||
	    (rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, ARG(0, SCMP_CMP_EQ, AF_INET6, 0))) ||
	    /* A connected stream or seqpacket pair reaches nothing outside (connect and sendto's address
	     * fail with EISCONN, even after the peer closed); libuv and friends need it for child stdio.
	     * A datagram pair is refused: sendto() and connect() take any path, a host socket included.
	     * The kernel reads the type as int: the mask leaves the high word out. */
	    (rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socketpair), 2, ARG(0, SCMP_CMP_EQ, AF_UNIX, 0),
				   ARG(1, SCMP_CMP_MASKED_EQ, SOCK_TYPE_MASK, SOCK_STREAM))) ||
	    (rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socketpair), 2, ARG(0, SCMP_CMP_EQ, AF_UNIX, 0),
				   ARG(1, SCMP_CMP_MASKED_EQ, SOCK_TYPE_MASK, SOCK_SEQPACKET))) ||
	    /* openat2's mode sits in a struct seccomp cannot read: ENOSYS makes callers use openat. */
	    (rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(openat2), 0)) ||
	    (rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
				   ARG(0, SCMP_CMP_MASKED_EQ, NS_CLONE_FLAGS, 0))) ||
	    (rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0)) ||
	    /* ioctl is allowed here; TIOCSTI/TIOCLINUX are refused by the prefix in build() (libseccomp cannot
	     * express "allow except these values" next to an allow rule). */
	    (rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 0))) {
		snprintf(err, errlen, "seccomp argument rules: %s", strerror(-rc));
		return rc;
	}
	return add_mode_rules(ctx, err, errlen);
}

/* Hand-written prefix: the kernel reads ioctl's request as 32 bits, so compare the low word only
 * (CVE-2019-10063); TIOCSTI and TIOCLINUX inject input into a terminal. Falls through to libseccomp's
 * program otherwise. BPF jumps are relative to the next instruction. */
static const struct sock_filter ioctl_prefix[] = {
	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 4),                       /* 0: arch */
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0xc000003eu, 0, 5),     /* 1: AUDIT_ARCH_X86_64 else ->7 */
	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0),                       /* 2: nr */
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, 3),      /* 3: else ->7 */
	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 24),                      /* 4: low word of args[1] */
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCSTI, 2, 0),         /* 5: ->8 */
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TIOCLINUX, 1, 0),       /* 6: ->8 */
	BPF_STMT(BPF_JMP | BPF_JA, 1),                               /* 7: ->9 (libseccomp) */
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),        /* 8 */
};

#define PREFIX_LEN (sizeof ioctl_prefix / sizeof ioctl_prefix[0])

/* The fallback filter: the file type in mknod's mode (arg 1) or mknodat's (arg 2), low word: only a
 * regular file (type 0 or S_IFREG) passes. Jumps are relative to the next instruction. */
static const struct sock_filter mknod_filter[] = {
	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 4),                   /* 0: arch */
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0xc000003eu, 0, 9), /* 1: not x86_64 ->11 (the main filter refuses) */
	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0),                   /* 2: nr */
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mknod, 0, 2),  /* 3: else ->6 */
	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 24),                  /* 4: low word of args[1] */
	BPF_STMT(BPF_JMP | BPF_JA, 2),                           /* 5: ->8 */
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_mknodat, 0, 4),/* 6: else ->11 */
	BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 32),                  /* 7: low word of args[2] */
	BPF_STMT(BPF_ALU | BPF_AND | BPF_K, S_IFMT),             /* 8 */
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0),           /* 9: ->11 */
	BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, S_IFREG, 0, 1),     /* 10: ->11 else ->12 */
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),            /* 11 */
	BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),    /* 12 */
};

const struct sock_fprog *secpol_mknod_program(void)
{
	static const struct sock_fprog p = { .len = sizeof mknod_filter / sizeof mknod_filter[0],
					     .filter = (struct sock_filter *)mknod_filter };
	return &p;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static struct sock_fprog prog;
static char build_err[256];

/* Compiles the policy with libseccomp into prog (or a message into build_err). */
static void build(void)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
	int fd = -1, rc;
	struct sock_filter *insns = NULL;
	struct stat st;

	if (!ctx) {
		snprintf(build_err, sizeof build_err, "seccomp_init failed");
		return;
	}
	/* i386 and x32 are not added: their calls hit the bad-arch action. EPERM rather than a kill so that a
	 * probe can observe the refusal; 32-bit programs simply cannot run. */
	if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_ERRNO(EPERM))) < 0 ||
	    (rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)) < 0 ||
	    /* A binary tree of syscall numbers: each call costs a few comparisons, not a walk of the list. */
	    (rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)) < 0) {
		snprintf(build_err, sizeof build_err, "seccomp attributes: %s", strerror(-rc));
		goto out;
	}
	if (add_rules(ctx, build_err, sizeof build_err) < 0)
		goto out;
	fd = memfd_create("postern-seccomp", MFD_CLOEXEC);
	if (fd < 0 || (rc = seccomp_export_bpf(ctx, fd)) < 0 || fstat(fd, &st) < 0 || st.st_size <= 0 ||
	    st.st_size % sizeof(struct sock_filter) || st.st_size > 65536) {
		snprintf(build_err, sizeof build_err, "seccomp export failed");
		goto out;
	}
	size_t n = (size_t)st.st_size / sizeof(struct sock_filter);
	insns = calloc(n + PREFIX_LEN, sizeof *insns);
	if (!insns || pread(fd, insns + PREFIX_LEN, (size_t)st.st_size, 0) != st.st_size) {
		snprintf(build_err, sizeof build_err, "seccomp export read failed");
		free(insns);
		goto out;
	}
	memcpy(insns, ioctl_prefix, sizeof ioctl_prefix);
	prog.len = (unsigned short)(n + PREFIX_LEN);
	prog.filter = insns;
out:
	if (fd >= 0)
		close(fd);
	seccomp_release(ctx);
}

#if defined(SECPOL_GENERATOR)
/* Build-time generator (see the Makefile): prints the compiled program as C initialisers, so that a
 * cold start does not spend ~1.5 ms in libseccomp. */
int main(void)
{
	build();
	if (!prog.filter) {
		fprintf(stderr, "secpol_gen: %s\n", build_err);
		return 1;
	}
	printf("/* generated by the sandbox seccomp generator from src/sandbox/seccomp_policy.c: do not edit */\n");
	for (unsigned i = 0; i < prog.len; i++)
		printf("{ 0x%04x, %u, %u, 0x%08x },\n", prog.filter[i].code, prog.filter[i].jt, prog.filter[i].jf,
		       prog.filter[i].k);
	return 0;
}
#elif __has_include("secpol_bpf.inc")
#define SECPOL_PREBUILT 1
static const struct sock_filter prebuilt[] = {
#include "secpol_bpf.inc"
};
#endif

const struct sock_fprog *secpol_program_runtime(char *err, size_t errlen)
{
	pthread_once(&once, build);
	if (!prog.filter) {
		snprintf(err, errlen, "%s", build_err);
		return NULL;
	}
	return &prog;
}

const struct sock_fprog *secpol_program(char *err, size_t errlen)
{
#ifdef SECPOL_PREBUILT
	static const struct sock_fprog pre = { .len = sizeof prebuilt / sizeof prebuilt[0],
					       .filter = (struct sock_filter *)prebuilt };
	(void)err;
	(void)errlen;
	return &pre;
#else
	return secpol_program_runtime(err, errlen);
#endif
}

bool secpol_prebuilt(void)
{
#ifdef SECPOL_PREBUILT
	return true;
#else
	return false;
#endif
}

int secpol_install(const struct sock_fprog *p)
{
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, p) < 0)
		return -errno;
	return 0;
}
