/*
 * config.c - option values live in one array parallel to the borrowed
 * config_opt table. Lookups by name are linear: tables are a few dozen rows
 * and read at start-up, never on a hot path.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct config_val {
	bool set;           /* from env or flag */
	bool has;           /* holds a value (default or set) */
	int64_t i;
	double d;
	bool b;
	char *s;            /* owned */
	char **list;        /* owned */
	size_t n_list;
} config_val;

struct config {
	const config_opt *opts;
	size_t n_opts;
	config_val *vals;
	char **pos;         /* owned copies */
	size_t n_pos;
};

static df_err parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = {"1", "true", "yes", "on"};
	static const char *const no[] = {"0", "false", "no", "off"};
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return DF_OK;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return DF_OK;
		}
	}
	return DF_EINVAL;
}

static int find_opt(const config *c, const char *name, size_t len)
{
	for (size_t i = 0; i < c->n_opts; i++)
		if (strlen(c->opts[i].name) == len &&
		    strncmp(c->opts[i].name, name, len) == 0)
			return (int)i;
	return -1;
}

static bool bounded(const config_opt *o)
{
	return o->min <= o->max;
}

static df_err list_append(config_val *v, const char *s)
{
	char **l = realloc(v->list, (v->n_list + 1) * sizeof *l);
	if (!l)
		return DF_ENOMEM;
	v->list = l;
	l[v->n_list] = strdup(s);
	if (!l[v->n_list])
		return DF_ENOMEM;
	v->n_list++;
	return DF_OK;
}

/* Parses text into option i. `from` names the source for messages. */
static df_err set_value(config *c, size_t i, const char *text, const char *from)
{
	const config_opt *o = &c->opts[i];
	config_val *v = &c->vals[i];
	char *end = NULL;

	switch (o->type) {
	case CONFIG_INT: {
		errno = 0;
		long long x = strtoll(text, &end, 10);
		if (errno || end == text || *end)
			return df_errf(DF_EINVAL, "%s: '%s' is not an integer", from, text);
		if (bounded(o) && (x < o->min || x > o->max))
			return df_errf(DF_ERANGE, "%s: %lld is outside %.0f..%.0f", from,
				       x, o->min, o->max);
		v->i = x;
		break;
	}
	case CONFIG_DOUBLE: {
		errno = 0;
		double x = strtod(text, &end);
		if (errno || end == text || *end || !isfinite(x))
			return df_errf(DF_EINVAL, "%s: '%s' is not a number", from, text);
		if (bounded(o) && (x < o->min || x > o->max))
			return df_errf(DF_ERANGE, "%s: %g is outside %g..%g", from, x,
				       o->min, o->max);
		v->d = x;
		break;
	}
	case CONFIG_BOOL:
		if (parse_bool(text, &v->b))
			return df_errf(DF_EINVAL, "%s: '%s' is not true or false", from,
				       text);
		break;
	case CONFIG_STRING: {
		char *s = strdup(text);
		if (!s)
			return DF_ENOMEM;
		free(v->s);
		v->s = s;
		break;
	}
	case CONFIG_LIST:
		if (list_append(v, text))
			return DF_ENOMEM;
		break;
	default:
		return df_errf(DF_EINTERNAL, "option %s has a bad type", o->name);
	}
	v->has = true;
	return DF_OK;
}

df_err config_create(const config_opt *opts, size_t n_opts, config **out)
{
	config *c = calloc(1, sizeof *c);
	if (!c)
		return DF_ENOMEM;
	c->opts = opts;
	c->n_opts = n_opts;
	c->vals = calloc(n_opts ? n_opts : 1, sizeof *c->vals);
	if (!c->vals) {
		free(c);
		return DF_ENOMEM;
	}
	for (size_t i = 0; i < n_opts; i++) {
		if (!opts[i].def)
			continue;
		char from[96];
		snprintf(from, sizeof from, "default of --%s", opts[i].name);
		df_err err = set_value(c, i, opts[i].def, from);
		if (err) {
			config_destroy(c);
			return err;
		}
	}
	*out = c;
	return DF_OK;
}

static void clear_list(config_val *v)
{
	for (size_t j = 0; j < v->n_list; j++)
		free(v->list[j]);
	free(v->list);
	v->list = NULL;
	v->n_list = 0;
}

void config_destroy(config *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_opts; i++) {
		free(c->vals[i].s);
		clear_list(&c->vals[i]);
	}
	for (size_t i = 0; i < c->n_pos; i++)
		free(c->pos[i]);
	free(c->pos);
	free(c->vals);
	free(c);
}

/* The first explicit value of a list replaces its default. */
static void drop_default_list(config *c, size_t i)
{
	if (c->opts[i].type == CONFIG_LIST && !c->vals[i].set)
		clear_list(&c->vals[i]);
}

df_err config_load_env(config *c)
{
	for (size_t i = 0; i < c->n_opts; i++) {
		const config_opt *o = &c->opts[i];
		const char *s = o->env ? getenv(o->env) : NULL;
		if (!s)
			continue;
		df_err err;
		if (o->type == CONFIG_LIST) {
			drop_default_list(c, i);
			char *copy = strdup(s), *save = NULL;
			if (!copy)
				return DF_ENOMEM;
			err = DF_OK;
			for (char *tok = strtok_r(copy, ",", &save); tok && !err;
			     tok = strtok_r(NULL, ",", &save))
				if (*tok)
					err = set_value(c, i, tok, o->env);
			free(copy);
		} else {
			err = set_value(c, i, s, o->env);
		}
		if (err)
			return err;
		c->vals[i].set = true;
	}
	return DF_OK;
}

static df_err add_positional(config *c, const char *s)
{
	char **p = realloc(c->pos, (c->n_pos + 1) * sizeof *p);
	if (!p)
		return DF_ENOMEM;
	c->pos = p;
	p[c->n_pos] = strdup(s);
	if (!p[c->n_pos])
		return DF_ENOMEM;
	c->n_pos++;
	return DF_OK;
}

df_err config_parse_args(config *c, int argc, char **argv, int first)
{
	bool only_pos = false;

	for (int a = first; a < argc; a++) {
		const char *arg = argv[a];
		df_err err;
		if (only_pos || arg[0] != '-' || arg[1] == '\0' ||
		    (arg[1] != '-' && strcmp(arg, "-h") != 0)) {
			err = add_positional(c, arg);
			if (err)
				return err;
			continue;
		}
		if (strcmp(arg, "--") == 0) {
			only_pos = true;
			continue;
		}
		const char *name = strcmp(arg, "-h") == 0 ? "help" : arg + 2;
		const char *eq = strchr(name, '=');
		size_t len = eq ? (size_t)(eq - name) : strlen(name);
		int i = find_opt(c, name, len);
		if (i < 0)
			return df_errf(DF_EINVAL, "unknown option --%.*s (see --help)",
				       (int)len, name);
		const config_opt *o = &c->opts[i];
		const char *value = eq ? eq + 1 : NULL;
		if (!value && o->type == CONFIG_BOOL) {
			value = "true";
		} else if (!value) {
			if (a + 1 >= argc)
				return df_errf(DF_EINVAL, "--%s needs a value", o->name);
			value = argv[++a];
		}
		char from[96];
		snprintf(from, sizeof from, "--%s", o->name);
		drop_default_list(c, (size_t)i);
		err = set_value(c, (size_t)i, value, from);
		if (err)
			return err;
		c->vals[i].set = true;
	}
	return DF_OK;
}

df_err config_set(config *c, const char *name, const char *value)
{
	int i = find_opt(c, name, strlen(name));
	if (i < 0)
		return df_errf(DF_EINVAL, "unknown option %s", name);
	char from[96];
	snprintf(from, sizeof from, "--%s", name);
	drop_default_list(c, (size_t)i);
	df_err err = set_value(c, (size_t)i, value, from);
	if (!err)
		c->vals[i].set = true;
	return err;
}

/* Looks up a value; an unknown name is a programming error, answered with a
 * zero value so that library code never aborts. */
static const config_val *lookup(const config *c, const char *name)
{
	static const config_val none;
	int i = find_opt(c, name, strlen(name));
	return i < 0 ? &none : &c->vals[i];
}

int64_t config_int(const config *c, const char *name)
{
	return lookup(c, name)->i;
}

double config_double(const config *c, const char *name)
{
	return lookup(c, name)->d;
}

const char *config_str(const config *c, const char *name)
{
	return lookup(c, name)->s;
}

bool config_bool(const config *c, const char *name)
{
	return lookup(c, name)->b;
}

const char *const *config_list(const config *c, const char *name, size_t *n)
{
	const config_val *v = lookup(c, name);
	*n = v->n_list;
	return (const char *const *)v->list;
}

bool config_is_set(const config *c, const char *name)
{
	return lookup(c, name)->set;
}

size_t config_positional_count(const config *c)
{
	return c->n_pos;
}

const char *config_positional(const config *c, size_t i)
{
	return i < c->n_pos ? c->pos[i] : NULL;
}

void config_print_help(const config *c, FILE *f)
{
	static const char *const metavar[] = {"N", "X", "S", "", "S"};
	_Static_assert(sizeof metavar / sizeof metavar[0] == CONFIG_TYPE_COUNT,
		       "one metavar per config type");
	for (size_t i = 0; i < c->n_opts; i++) {
		const config_opt *o = &c->opts[i];
		char flag[64];
		snprintf(flag, sizeof flag, "--%s %s", o->name, metavar[o->type]);
		fprintf(f, "  %-24s %s", flag, o->help ? o->help : "");
		if (o->type == CONFIG_LIST)
			fprintf(f, " (repeatable)");
		if (o->env || o->def) {
			fprintf(f, " [");
			if (o->env)
				fprintf(f, "env %s%s", o->env, o->def ? ", " : "");
			if (o->def)
				fprintf(f, "default %s", o->def);
			fprintf(f, "]");
		}
		fputc('\n', f);
	}
}
