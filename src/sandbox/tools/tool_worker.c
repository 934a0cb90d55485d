/* The file tool worker inside the sandbox (see tool_worker.h). */
#include "sandbox/tools/tool_worker.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <jansson.h>

#include "sandbox/tools/tool_files.h"
#include "sandbox/tools/tool_wire.h"
#include "sandbox/tools/tools.h"

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -EPIPE;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

static int reply(int fd, bool is_error, const char *text, size_t len)
{
	uint8_t h[TWIRE_HDR];
	twire_header(h, is_error ? TWIRE_F_ERROR : 0, (uint32_t)len);
	int rc = write_all(fd, h, sizeof h);
	return rc < 0 ? rc : write_all(fd, text, len);
}

/* One request: {"tool", "cwd", "timeout_ms", "args"}. */
static int handle(int out_fd, const char *payload, size_t len)
{
	json_error_t je;
	json_t *req = json_loadb(payload, len, 0, &je);
	const char *tool = json_string_value(json_object_get(req, "tool"));
	const char *cwd = json_string_value(json_object_get(req, "cwd"));
	json_t *to = json_object_get(req, "timeout_ms");
	char *out = NULL, msg[300];
	size_t olen = 0;
	bool is_error = true;
	const struct tool_def *d;
	int rc;

	if (!tool || !json_is_object(json_object_get(req, "args"))) {
		snprintf(msg, sizeof msg, "internal error: the tool worker got a malformed request (%s)",
			 req ? "no tool or args" : je.text);
		rc = reply(out_fd, true, msg, strlen(msg));
		goto out;
	}
	d = tool_find(tool);
	rc = d && d->worker ? tfile_run(d->name, d->worker, json_object_get(req, "args"), cwd,
					json_is_integer(to) ? (unsigned)json_integer_value(to) : 0, &out, &olen, &is_error)
			    : -ENOENT;
	if (rc < 0) {
		snprintf(msg, sizeof msg, "%s", rc == -ENOENT ? "internal error: not a file tool" : "out of memory");
		rc = reply(out_fd, true, msg, strlen(msg));
		goto out;
	}
	rc = reply(out_fd, is_error, out, olen);
out:
	free(out);
	json_decref(req);
	return rc;
}

int tworker_serve(int in_fd, int out_fd)
{
	struct twire_dec d;
	char buf[65536];
	int rc = 0;

	twire_dec_init(&d, TWIRE_REQ_CAP);
	for (;;) {
		ssize_t n = read(in_fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			break;
		}
		if (n == 0) {
			rc = d.hlen ? -EPIPE : 0; /* EOF inside a frame: the host went away mid-request */
			break;
		}
		for (size_t off = 0; off < (size_t)n;) {
			size_t used;
			rc = twire_dec_feed(&d, buf + off, (size_t)n - off, &used);
			off += used;
			if (rc < 0)
				goto out;
			if (rc == 1) {
				rc = handle(out_fd, d.payload, d.len);
				twire_dec_reset(&d);
				if (rc < 0)
					goto out;
			}
		}
	}
out:
	twire_dec_reset(&d);
	return rc;
}

int tworker_main(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	/* Other processes of the session run as our uid: keep them out of our /proc fds and memory, so a
	 * reply stream is ours alone (the host checks every byte of it all the same). */
	(void)prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGXFSZ, SIG_IGN); /* past the disk cap a write fails with EFBIG, reported to the caller */
	return tworker_serve(0, 1) < 0 ? 1 : 0;
}

#ifdef TWORKER_STATIC_MAIN
/* The static program embedded in postern (Makefile: build/<flavour>/tw/postern-tool-worker). */
int main(int argc, char **argv)
{
	return tworker_main(argc, argv);
}
#endif
