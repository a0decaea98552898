/*
 * cli.h - the subcommands of the `dicefleet` command. Each lives in its own
 * cmd_<name>.c, parses its own flags with a config table, and returns the
 * process exit status (0 ok, 1 failure, 2 usage error).
 */
#ifndef DF_CLI_H
#define DF_CLI_H

#include <stddef.h>
#include <stdio.h>

#include "config.h"

typedef struct cli_command {
	const char *name;
	const char *summary;  /* one line for `dicefleet --help` */
	int (*main)(int argc, char **argv); /* argv[0] is the subcommand name */
} cli_command;

/* Exit statuses shared by all subcommands. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

/*
 * Builds the config for subcommand cmd from opts (which must have a "help"
 * bool), the environment and argv[1..]. Returns -1 with *out set when the
 * command should go on; otherwise the exit status to return (usage printed
 * for --help, an error for bad flags).
 */
int cli_parse(const char *cmd, const config_opt *opts, size_t n_opts,
	      void (*usage)(const config *c, FILE *f), int argc, char **argv,
	      config **out);

/* Prints "dicefleet CMD: WHAT: <detail message>" to stderr. */
void cli_fail(const char *cmd, const char *what);

/* Progress output for long runs: a bar on a terminal, else a line per
 * 10%. Pass a cli_progress_state as ctx; label is borrowed. */
typedef struct cli_progress_state {
	const char *label;
	int tty;            /* stderr is a terminal */
	size_t last_decile;
} cli_progress_state;

void cli_progress(void *ctx, size_t done, size_t total);

int cmd_partition_main(int argc, char **argv);

#endif
