/* `postern audit` (the command audit_main of commands.h): verify here; emit writes through the proxy's
 * audit sinks, which this layer may not reach, so main.c hands it in. */
#ifndef POSTERN_GUARD_AUDITCMD_H
#define POSTERN_GUARD_AUDITCMD_H

/* The `postern audit emit` subcommand (proxy/auditlog.h alog_emit_main). */
void auditcmd_set_emit(int (*fn)(int argc, char **argv));

#endif
