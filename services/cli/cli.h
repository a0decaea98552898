/*
 * cli.h - the subcommands of the `dicefleet` command. Each lives in its own
 * cmd_<name>.c, parses its own flags with a config table, and returns the
 * process exit status (0 ok, 1 failure, 2 usage error).
 */
#ifndef DF_CLI_H
#define DF_CLI_H

typedef struct cli_command {
	const char *name;
	const char *summary;  /* one line for `dicefleet --help` */
	int (*main)(int argc, char **argv); /* argv[0] is the subcommand name */
} cli_command;

/* Exit statuses shared by all subcommands. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

#endif
