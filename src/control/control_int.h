/* Shared by control.c (config, daemon) and control_cli.c (the admin commands). */
#ifndef POSTERN_CONTROL_INT_H
#define POSTERN_CONTROL_INT_H

#include "control/control.h"

/* `postern control env|apikey|key|session ...`: the exit status. */
int cti_cli(int argc, char **argv);
/* Whether argv[1] names an admin command (else the daemon runs). */
bool cti_is_cli(int argc, char **argv);

#endif
