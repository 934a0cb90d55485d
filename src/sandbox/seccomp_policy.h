/* The sandbox's seccomp policy: a default-deny allowlist (libseccomp), compiled once to classic BPF so
 * that each command only pays one seccomp(2) call before execve. Native x86_64 only: i386 (int 0x80,
 * hence socketcall) and x32 system calls all fail with EPERM, so 32-bit binaries do not run. */
#ifndef POSTERN_SECCOMP_POLICY_H
#define POSTERN_SECCOMP_POLICY_H

#include <stddef.h>

struct sock_fprog;

/* Names of the system calls allowed (unconditionally or with argument checks), NULL-terminated. */
const char *const *sbxsc_allowed(void);
/* System calls that must never be allowed (checked by the unit test against the allowlist). */
const char *const *sbxsc_forbidden(void);

/* Builds (once per process; thread-safe) and returns the compiled program; NULL on failure.
 * The storage is static and lives until exit. */
const struct sock_fprog *sbxsc_program(char *err, size_t errlen);
/* Installs prog in the calling thread (no_new_privs must already be set). 0 or -errno. Async-signal-safe. */
int sbxsc_install(const struct sock_fprog *prog);

#endif
