/* The frames between the host side of the file tools (tools.c) and the tool worker inside the sandbox
 * (tool_worker.c). No I/O: bytes in, frames out.
 *
 * A frame is "PTW1", one flags byte and a big-endian u32 payload length, then the payload. Requests carry
 * a JSON object {"tool", "cwd", "timeout_ms", "args"}; replies carry the result text with
 * TWIRE_F_ERROR set when it is an error. The host treats every reply byte as hostile: the worker runs
 * with the session's rights, so a session can take it over and answer anything. */
#ifndef POSTERN_TOOL_WIRE_H
#define POSTERN_TOOL_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define TWIRE_HDR 9u
#define TWIRE_F_ERROR 1u
#define TWIRE_REQ_CAP (112u << 20)	       /* a 16 MiB write, JSON-escaped at worst */
#define TWIRE_REPLY_CAP ((2u << 20) + 4096u) /* the 2 MiB result cap and some slack */

struct twire_dec {
	size_t cap;	  /* largest payload accepted */
	uint8_t hdr[TWIRE_HDR];
	size_t hlen;	  /* header bytes seen */
	uint8_t flags;
	uint32_t len;	  /* payload length, once the header is complete */
	char *payload;	  /* malloc'd, NUL-terminated once complete; the caller may take it */
	size_t have;
};

void twire_dec_init(struct twire_dec *d, size_t cap);
/* Frees the payload and readies d for the next frame. */
void twire_dec_reset(struct twire_dec *d);
/* Consumes bytes from p[0..n) (*used says how many). 1 = a frame is complete (flags, payload, len);
 * 0 = more bytes are needed; -EBADMSG = not a frame (bad magic or unknown flags), -EMSGSIZE = the
 * payload is over cap, -ENOMEM. After an error the stream is unusable. */
int twire_dec_feed(struct twire_dec *d, const char *p, size_t n, size_t *used);

/* Writes the 9-byte header of a frame. */
void twire_header(uint8_t out[TWIRE_HDR], uint8_t flags, uint32_t len);

#endif
