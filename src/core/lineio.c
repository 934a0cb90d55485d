/* Newline-framed messages over a libuv stream (see lineio.h). */
#include "core/lineio.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void write_done(uv_write_t *w, int status)
{
	(void)status;
	free(w);
}

int lio_write_line(uv_stream_t *s, const char *p, size_t n)
{
	uv_write_t *w = malloc(sizeof *w + n + 1);
	uv_buf_t buf;
	int r;
	if (!w)
		return -ENOMEM;
	memcpy(w + 1, p, n);
	((char *)(w + 1))[n] = '\n';
	buf = uv_buf_init((char *)(w + 1), (unsigned)(n + 1));
	r = uv_write(w, s, &buf, 1, write_done);
	if (r < 0)
		free(w);
	return r;
}

void lio_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	static char rbuf[64 * 1024];
	(void)h;
	(void)hint;
	buf->base = rbuf;
	buf->len = sizeof rbuf;
}
