/* The tool worker's program, embedded (see tool_worker.h). The worker is linked statically (static-pie,
 * build/<flavour>/tw/postern-tool-worker) and its bytes are included here at build time, so it runs in any
 * image: with no dynamic loader and no libc of the image's, whatever --image holds. */
#include "sandbox/tools/tool_worker.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef TWORKER_IMAGE
#error "TWORKER_IMAGE (the static worker's path) comes from the Makefile"
#endif
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U /* Linux 6.3: executable even where vm.memfd_noexec asks for the opposite */
#endif

__asm__(".pushsection .rodata.postern_tool_worker,\"a\",@progbits\n"
	".balign 64\n"
	".hidden tworker_image_start\n"
	".globl tworker_image_start\n"
	"tworker_image_start:\n"
	".incbin \"" TWORKER_IMAGE "\"\n"
	".hidden tworker_image_end\n"
	".globl tworker_image_end\n"
	"tworker_image_end:\n"
	".popsection\n");
extern const unsigned char tworker_image_start[] __attribute__((visibility("hidden")));
extern const unsigned char tworker_image_end[] __attribute__((visibility("hidden")));

static pthread_mutex_t image_mu = PTHREAD_MUTEX_INITIALIZER;
static int image_fd = -1;

static int make_image(char *err, size_t errlen)
{
	const unsigned char *p = tworker_image_start;
	size_t n = (size_t)(tworker_image_end - tworker_image_start);
	int rc = 0, ro = -1;
	int m = memfd_create("postern-tool-worker", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_EXEC);
	if (m < 0 && errno == EINVAL)
		m = memfd_create("postern-tool-worker", MFD_CLOEXEC | MFD_ALLOW_SEALING); /* before Linux 6.3 */
	if (m < 0) {
		rc = -errno;
		snprintf(err, errlen, "memfd for the tool worker: %s", strerror(errno));
		goto out;
	}
	while (n) {
		ssize_t w = write(m, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			rc = w < 0 ? -errno : -EIO;
			snprintf(err, errlen, "write the tool worker: %s", strerror(-rc));
			goto out;
		}
		p += w;
		n -= (size_t)w;
	}
	/* Sealed: no process, the session's least of all, can change what the next worker runs. */
	if (fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) < 0) {
		rc = -errno;
		snprintf(err, errlen, "seal the tool worker: %s", strerror(errno));
		goto out;
	}
	/* Kept read-only, above 2 (sbx_cmd.exec_fd). */
	char path[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", m);
	int o = open(path, O_RDONLY | O_CLOEXEC);
	if (o < 0 || (ro = fcntl(o, F_DUPFD_CLOEXEC, 3)) < 0) {
		rc = -errno;
		snprintf(err, errlen, "reopen the tool worker: %s", strerror(errno));
	}
	if (o >= 0)
		close(o);
	/* Execute-only (after the read-only reopen above): the kernel then makes every worker non-dumpable
	 * from its exec on, where its own prctl comes a few instructions late; in that window a process of
	 * the session (same uid) could open its /proc mem or fds. */
	if (rc == 0 && fchmod(m, 0111) < 0) {
		rc = -errno;
		snprintf(err, errlen, "make the tool worker execute-only: %s", strerror(errno));
	}
	if (rc == 0)
		image_fd = ro;
	else if (ro >= 0)
		close(ro);
out:
	if (m >= 0)
		close(m);
	return rc;
}

int tworker_image_fd(char *err, size_t errlen)
{
	int rc = 0;
	pthread_mutex_lock(&image_mu);
	if (image_fd < 0)
		rc = make_image(err, errlen);
	pthread_mutex_unlock(&image_mu);
	return rc < 0 ? rc : image_fd;
}

size_t tworker_image_size(void)
{
	return (size_t)(tworker_image_end - tworker_image_start);
}
