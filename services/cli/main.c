/*
 * main.c - `dicefleet`: dispatches to a subcommand from the table below.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "log.h"

int cmd_info_main(int argc, char **argv);
int cmd_run_main(int argc, char **argv);
int cmd_eval_main(int argc, char **argv);
int cmd_classify_main(int argc, char **argv);

static const cli_command commands[] = {
	{"info", "describe a model: inputs, outputs, nodes, parameters, MACs",
	 cmd_info_main},
	{"run", "run a model on one machine (.npy in, .npy out, timing)",
	 cmd_run_main},
	{"eval", "accuracy of a model on its data set's test split",
	 cmd_eval_main},
	{"classify", "classify PNG/JPEG files with a model (JSON top-k)",
	 cmd_classify_main},
	{"partition", "split a model's neurons across devices; print loads",
	 cmd_partition_main},
	{NULL, NULL, NULL},
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: dicefleet <command> [options]\n"
		"\n"
		"Distributed, failure-tolerant CNN inference on edge devices.\n"
		"\n"
		"commands:\n");
	for (const cli_command *c = commands; c->name; c++)
		fprintf(f, "  %-12s %s\n", c->name, c->summary);
	fprintf(f,
		"\n"
		"Run `dicefleet <command> --help` for a command's options.\n"
		"Services: dicefleet-gateway, dicefleet-worker (each has --help).\n");
}

int main(int argc, char **argv)
{
	if (log_init_from_env()) {
		fprintf(stderr, "dicefleet: %s\n", df_err_msg());
		return CLI_USAGE;
	}
	log_set_component("dicefleet");
	if (argc < 2) {
		usage(stderr);
		return CLI_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return CLI_OK;
	}
	if (strcmp(argv[1], "--version") == 0) {
		printf("dicefleet %s\n", DICEFLEET_VERSION);
		return CLI_OK;
	}
	for (const cli_command *c = commands; c->name; c++)
		if (strcmp(argv[1], c->name) == 0)
			return c->main(argc - 1, argv + 1);
	fprintf(stderr, "dicefleet: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return CLI_USAGE;
}
