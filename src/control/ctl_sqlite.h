/* The SQLite store (ctl_store.h): one file state_dir/control.db (0600), WAL with synchronous=FULL, a schema
 * version row, every call one transaction. Several processes may open it at once (the daemon and the CLI). */
#ifndef POSTERN_CTL_SQLITE_H
#define POSTERN_CTL_SQLITE_H

#include <stddef.h>

#include "control/ctl_store.h"

int ctl_sqlite_open(const char *state_dir, ctl_store **out, char *err, size_t errlen);

#endif
