/* Newline-framed messages over a libuv stream (a child's stdin and stdout: the stdio MCP bridge's children
 * and the worker's sandbox children). The writer puts one message and its newline in one allocation handed to
 * uv_write (freed when written); the reader's buffer is one static block, since libuv calls the read callback
 * right after the allocation, on the one loop thread, and both users copy what they keep. */
#ifndef POSTERN_CORE_LINEIO_H
#define POSTERN_CORE_LINEIO_H

#include <stddef.h>
#include <uv.h>

/* Writes p[0..n) and a newline to s. 0, -ENOMEM, or uv_write's error. */
int lio_write_line(uv_stream_t *s, const char *p, size_t n);
/* A uv_alloc_cb for uv_read_start: the shared 64 KiB read block. */
void lio_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);

#endif
