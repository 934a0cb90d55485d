/* The subcommand table: one line per command. Add yours here, keeping the order of `postern --help`. */
#ifndef POSTERN_COMMANDS_H
#define POSTERN_COMMANDS_H

int check_main(int argc, char **argv);
int certs_main(int argc, char **argv);
int sandbox_main(int argc, char **argv);
int tunnel_main(int argc, char **argv);

#define POSTERN_COMMANDS \
	{ "check", check_main, "validate a config file without starting (-c FILE)" }, \
	{ "certs", certs_main, "customer CA and server certificate: init, renew" }, \
	{ "sandbox", sandbox_main, "isolated command execution: run, serve (MCP tools)" }, \
	{ "tunnel", tunnel_main, "tunnel records and tokens on the edge: create, rotate, list, delete" },

#endif
