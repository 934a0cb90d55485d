/* A cap on concurrent sandboxes across processes: N slot files in a directory, a session holds one with
 * an exclusive flock() for its lifetime. The kernel drops the lock when the holder exits, so a crashed
 * session never leaks a slot. Works the same within one process (each slot is its own open file). */
#ifndef POSTERN_SLOT_H
#define POSTERN_SLOT_H

#include <stddef.h>

#define SLOT_DEFAULT_MAX 32
#define SLOT_MAX 4096

/* Takes a free slot in dir (created 0700 if missing; must be owned by us and not group/world
 * writable). Returns the slot's fd (>= 0; close it to release), -EBUSY when all max are taken,
 * or another -errno (with a reason in err). */
int slot_acquire(const char *dir, unsigned max, char *err, size_t errlen);
void slot_release(int fd);
/* Default directory: $XDG_RUNTIME_DIR/postern-sandboxes, else /tmp/postern-sandboxes-<uid>. */
const char *slot_default_dir(char *buf, size_t len);

#endif
