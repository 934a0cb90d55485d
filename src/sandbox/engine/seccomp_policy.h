/* The sandbox's seccomp policy: a default-deny allowlist (libseccomp), compiled once to classic BPF so
 * that each command only pays one seccomp(2) call before execve. Native x86_64 only: i386 (int 0x80,
 * hence socketcall) and x32 system calls all fail with EPERM, so 32-bit binaries do not run. */
#ifndef POSTERN_SECCOMP_POLICY_H
#define POSTERN_SECCOMP_POLICY_H

#include <stdbool.h>
#include <stddef.h>

struct sock_fprog;

/* Names of the system calls allowed (unconditionally or with argument checks), NULL-terminated. */
const char *const *secpol_allowed(void);
/* System calls that must never be allowed (checked by the unit test against the allowlist). */
const char *const *secpol_forbidden(void);

/* The compiled program: the one libseccomp produced at build time (build/<flavour>/gen/secpol_bpf.inc),
 * else compiled now (once per process; thread-safe). NULL on failure. Static storage. */
const struct sock_fprog *secpol_program(char *err, size_t errlen);
/* Always compiled now with libseccomp (the unit test checks that it equals the build-time one). */
const struct sock_fprog *secpol_program_runtime(char *err, size_t errlen);
bool secpol_prebuilt(void);
/* A second, stacked filter for kernels without Landlock: mknod/mknodat of a FIFO or a socket node fail
 * with EPERM. Static storage. */
const struct sock_fprog *secpol_mknod_program(void);
/* Installs prog in the calling thread (no_new_privs must already be set). 0 or -errno. Async-signal-safe. */
int secpol_install(const struct sock_fprog *prog);

#endif
