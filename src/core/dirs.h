/* Directories a command is asked to use: made when missing, like `mkdir -p`, with a stated mode. */
#ifndef POSTERN_CORE_DIRS_H
#define POSTERN_CORE_DIRS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Makes path a directory: missing parents with mode 0755 (they are traversed by other users' daemons, e.g.
 * /etc/postern), the last component with mode (0700 for anything holding keys or workspaces). An existing
 * directory is left as it is. *made (may be NULL) is set when anything was created. 0, or a negative errno
 * with "PATH: reason" in err (the component that failed). */
int dirs_make(const char *path, mode_t mode, bool *made, char *err, size_t errlen);

/* Removes path and everything below it, best effort (a session's workspace at its end): symbolic links are
 * removed, never followed, and the walk stays on path's file system. NULL is fine. */
void dirs_remove_tree(const char *path);

#endif
