/* The byte-stream seam between a transport that carries one client's bytes (a tunnel stream of the
 * connector, a TCP socket of a listener) and a backend that consumes them (the proxy). core owns the types
 * so that neither side includes the other: the gateway wires a connector to a proxy, a test wires either to
 * a fake. See docs/internals.md, "Stream seam". */
#ifndef POSTERN_CORE_STREAM_H
#define POSTERN_CORE_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One client connection inside a backend; opaque to the transport. */
typedef struct stream_conn stream_conn;

/* How the backend talks back to the transport that owns the connection. ctx is the transport's pointer. */
typedef struct stream_ops {
	/* Bytes for the client. <0 is fatal for the connection (the backend then closes it). */
	int (*write)(void *ctx, const uint8_t *p, size_t n);
	/* No more writes: half-close toward the client once queued bytes are out (END_STREAM, TCP FIN). */
	int (*shutdown)(void *ctx);
	/* The connection is finished and freed right after this returns; never call it again. If shutdown was
	 * called before, this is a graceful end (let queued bytes flush); otherwise an abort (RST_STREAM). */
	void (*close)(void *ctx);
	/* n more fed bytes have been processed: the transport may accept n more (HTTP/2: return window). */
	void (*consumed)(void *ctx, size_t n);
	/* True while the transport's outgoing queue is above its high-water mark: the backend stops reading
	 * its own source (the upstream) until drained. */
	bool (*over_high_water)(void *ctx);
} stream_ops;

/* How the transport talks to the backend. */
typedef struct stream_backend {
	/* A new client connection; client_addr ("ip:port", may be NULL) is only for logs; ops must outlive it.
	 * NULL refuses it (draining, no memory): the transport answers that (503, close). No ops call happens
	 * inside open. */
	stream_conn *(*open)(void *ud, const stream_ops *ops, void *ctx, const char *client_addr);
	/* Bytes from the client. The backend holds what it cannot process yet and reports it through consumed
	 * once processed: a transport that stops feeding at its window bounds memory. */
	void (*feed)(stream_conn *c, const uint8_t *p, size_t n);
	/* The client half-closed its sending side (END_STREAM, FIN). */
	void (*eof)(stream_conn *c);
	/* The transport's outgoing queue fell below its low-water mark after over_high_water was true. */
	void (*drained)(stream_conn *c);
	/* The transport is going away (stream reset, socket closed): the connection is freed and no ops call
	 * happens once this returns. May be called from inside an ops callback. */
	void (*abort)(stream_conn *c);
	void *ud;
} stream_backend;

/* ops->close is never called from inside feed/eof/drained/abort: it always comes from the loop, so a
 * transport may keep using its own state after those calls return. */

#endif
