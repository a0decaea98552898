/* cli.c - option parsing and error printing shared by the subcommands. */
#include "cli.h"

#include <stdio.h>

#include "err.h"

int cli_parse(const char *cmd, const config_opt *opts, size_t n_opts,
	      void (*usage)(const config *c, FILE *f), int argc, char **argv,
	      config **out)
{
	config *c = NULL;
	if (config_create(opts, n_opts, &c)) {
		cli_fail(cmd, "options");
		return CLI_FAIL;
	}
	if (config_load_env(c) || config_parse_args(c, argc, argv, 1)) {
		cli_fail(cmd, "usage");
		fprintf(stderr, "(see dicefleet %s --help)\n", cmd);
		config_destroy(c);
		return CLI_USAGE;
	}
	if (config_bool(c, "help")) {
		usage(c, stdout);
		config_destroy(c);
		return CLI_OK;
	}
	*out = c;
	return -1;
}

void cli_fail(const char *cmd, const char *what)
{
	const char *msg = df_err_msg();
	if (msg[0])
		fprintf(stderr, "dicefleet %s: %s: %s\n", cmd, what, msg);
	else
		fprintf(stderr, "dicefleet %s: %s\n", cmd, what);
	df_err_clear();
}

void cli_progress(void *ctx, size_t done, size_t total)
{
	cli_progress_state *p = ctx;
	if (!p || total == 0)
		return;
	if (p->tty) {
		int width = 30, fill = (int)(done * (size_t)width / total);
		fprintf(stderr, "\r%-28.28s [%.*s%*s] %3zu%% %zu/%zu", p->label, fill,
			"##############################", width - fill, "",
			done * 100 / total, done, total);
		if (done == total)
			fputc('\n', stderr);
		fflush(stderr);
		return;
	}
	/* not a terminal: one line per 10% */
	size_t decile = done * 10 / total;
	if (decile > p->last_decile || done == total) {
		p->last_decile = decile;
		fprintf(stderr, "%s: %zu/%zu (%zu%%)\n", p->label, done, total,
			done * 100 / total);
	}
}
