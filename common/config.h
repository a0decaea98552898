/*
 * config.h - a table of options filled from defaults, then the environment,
 * then command-line flags (later wins).
 *
 * Each program declares a static config_opt table:
 *
 *   static const config_opt opts[] = {
 *       {"port", "DICEFLEET_PORT", CONFIG_INT, "8080", 1, 65535,
 *        "TCP port to listen on"},
 *       ...
 *   };
 *
 * Flags are "--name value" or "--name=value"; booleans also accept a bare
 * "--name". CONFIG_LIST options may repeat and collect every value (the
 * environment form splits on commas). Arguments that are not flags, and
 * everything after "--", are positionals. Nothing is compiled in but the
 * defaults in the table.
 */
#ifndef DF_CONFIG_H
#define DF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "err.h"

typedef enum config_type {
	CONFIG_INT = 0,   /* int64, checked against [min, max] */
	CONFIG_DOUBLE,    /* double, checked against [min, max] */
	CONFIG_STRING,
	CONFIG_BOOL,      /* true/false/1/0/yes/no/on/off */
	CONFIG_LIST,      /* repeatable string */
	CONFIG_TYPE_COUNT
} config_type;

typedef struct config_opt {
	const char *name;  /* flag name without "--" */
	const char *env;   /* environment variable, or NULL */
	config_type type;
	const char *def;   /* default as text, or NULL for none */
	double min, max;   /* bounds for INT and DOUBLE (ignored if min > max) */
	const char *help;  /* one line for --help */
} config_opt;

typedef struct config config;

/* New config over opts (borrowed: the table must outlive the config), with
 * defaults applied. Fails if a default does not parse (a programming error
 * reported, not asserted). Free with config_destroy(). */
df_err config_create(const config_opt *opts, size_t n_opts, config **out);

void config_destroy(config *c);

/* Applies each option's environment variable that is set (getenv). */
df_err config_load_env(config *c);

/*
 * Applies flags from argv[first..argc). Positional arguments are collected
 * and can be read with config_positional(). Errors name the flag:
 * "unknown option --prot", "--port: 'abc' is not an integer",
 * "--port: 70000 is outside 1..65535", "--model needs a value".
 */
df_err config_parse_args(config *c, int argc, char **argv, int first);

int64_t config_int(const config *c, const char *name);
double config_double(const config *c, const char *name);
/* Borrowed; NULL when unset and without default. */
const char *config_str(const config *c, const char *name);
bool config_bool(const config *c, const char *name);
/* Borrowed array of *n values. */
const char *const *config_list(const config *c, const char *name, size_t *n);
/* True if the option came from the environment or a flag. */
bool config_is_set(const config *c, const char *name);

/* Sets an option from text, as a flag would. */
df_err config_set(config *c, const char *name, const char *value);

size_t config_positional_count(const config *c);
const char *config_positional(const config *c, size_t i);

/* Prints one line per option: "  --port N   TCP port ... (env DICEFLEET_PORT,
 * default 8080)". */
void config_print_help(const config *c, FILE *f);

#endif
