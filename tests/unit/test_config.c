/* Unit tests for config.c: defaults, environment, flags, bounds, lists. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "config.h"

static const config_opt opts[] = {
	{"port", "DFT_PORT", CONFIG_INT, "8080", 1, 65535, "port"},
	{"ratio", "DFT_RATIO", CONFIG_DOUBLE, "0.25", 0, 1, "ratio"},
	{"model", "DFT_MODEL", CONFIG_STRING, "fmnist-vgg", 0, -1, "model"},
	{"verbose", NULL, CONFIG_BOOL, "false", 0, -1, "verbose"},
	{"worker", "DFT_WORKERS", CONFIG_LIST, NULL, 0, -1, "worker"},
	{"db", NULL, CONFIG_STRING, NULL, 0, -1, "db"},
};
#define N_OPTS (sizeof opts / sizeof opts[0])

static int setup(void **state)
{
	config *c = NULL;
	unsetenv("DFT_PORT");
	unsetenv("DFT_RATIO");
	unsetenv("DFT_MODEL");
	unsetenv("DFT_WORKERS");
	if (config_create(opts, N_OPTS, &c))
		return -1;
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	config_destroy(*state);
	return 0;
}

static void defaults_apply(void **state)
{
	config *c = *state;
	assert_int_equal(config_int(c, "port"), 8080);
	assert_true(config_double(c, "ratio") == 0.25);
	assert_string_equal(config_str(c, "model"), "fmnist-vgg");
	assert_false(config_bool(c, "verbose"));
	assert_null(config_str(c, "db"));
	assert_false(config_is_set(c, "port"));
	size_t n = 99;
	config_list(c, "worker", &n);
	assert_int_equal(n, 0);
}

static void flags_override_env_override_defaults(void **state)
{
	config *c = *state;
	setenv("DFT_PORT", "9000", 1);
	setenv("DFT_MODEL", "fmnist-resnet", 1);
	assert_int_equal(config_load_env(c), DF_OK);
	assert_int_equal(config_int(c, "port"), 9000);
	char *argv[] = {"x", "--port", "9100", "--model=fmnist-mobilenet", "pos1",
			"--verbose", "--", "--port"};
	assert_int_equal(config_parse_args(c, 8, argv, 1), DF_OK);
	assert_int_equal(config_int(c, "port"), 9100);
	assert_string_equal(config_str(c, "model"), "fmnist-mobilenet");
	assert_true(config_bool(c, "verbose"));
	assert_true(config_is_set(c, "port"));
	assert_int_equal(config_positional_count(c), 2);
	assert_string_equal(config_positional(c, 0), "pos1");
	assert_string_equal(config_positional(c, 1), "--port");
	assert_null(config_positional(c, 2));
}

static void bad_values_are_rejected_and_named(void **state)
{
	config *c = *state;
	char *a1[] = {"x", "--port", "70000"};
	assert_int_equal(config_parse_args(c, 3, a1, 1), DF_ERANGE);
	assert_non_null(strstr(df_err_msg(), "--port"));
	assert_int_equal(config_int(c, "port"), 8080);
	char *a2[] = {"x", "--port", "12ab"};
	assert_int_equal(config_parse_args(c, 3, a2, 1), DF_EINVAL);
	char *a3[] = {"x", "--ratio", "1.5"};
	assert_int_equal(config_parse_args(c, 3, a3, 1), DF_ERANGE);
	char *a4[] = {"x", "--ratio", "nan"};
	assert_int_equal(config_parse_args(c, 3, a4, 1), DF_EINVAL);
	char *a5[] = {"x", "--prot", "1"};
	assert_int_equal(config_parse_args(c, 3, a5, 1), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "unknown option --prot"));
	char *a6[] = {"x", "--model"};
	assert_int_equal(config_parse_args(c, 2, a6, 1), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "needs a value"));
	char *a7[] = {"x", "--verbose=maybe"};
	assert_int_equal(config_parse_args(c, 2, a7, 1), DF_EINVAL);
	setenv("DFT_RATIO", "-0.5", 1);
	assert_int_equal(config_load_env(c), DF_ERANGE);
	assert_non_null(strstr(df_err_msg(), "DFT_RATIO"));
	unsetenv("DFT_RATIO");
}

static void lists_repeat_and_env_splits_on_commas(void **state)
{
	config *c = *state;
	setenv("DFT_WORKERS", "a=http://x,,b=http://y", 1);
	assert_int_equal(config_load_env(c), DF_OK);
	size_t n = 0;
	const char *const *l = config_list(c, "worker", &n);
	assert_int_equal(n, 2);
	assert_string_equal(l[1], "b=http://y");
	/* flags given after the environment add to the list */
	char *argv[] = {"x", "--worker", "c=http://z", "--worker=d=http://w"};
	assert_int_equal(config_parse_args(c, 4, argv, 1), DF_OK);
	l = config_list(c, "worker", &n);
	assert_int_equal(n, 4);
	assert_string_equal(l[3], "d=http://w");
}

static void help_lists_every_option(void **state)
{
	config *c = *state;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	config_print_help(c, f);
	fclose(f);
	for (size_t i = 0; i < N_OPTS; i++)
		assert_non_null(strstr(buf, opts[i].name));
	assert_non_null(strstr(buf, "DFT_PORT"));
	assert_non_null(strstr(buf, "default 8080"));
	free(buf);
}

static void bad_default_fails_create(void **state)
{
	(void)state;
	static const config_opt bad[] = {
		{"n", NULL, CONFIG_INT, "ten", 0, 100, "n"},
	};
	config *c = NULL;
	assert_int_equal(config_create(bad, 1, &c), DF_EINVAL);
	assert_null(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(defaults_apply, setup, teardown),
		cmocka_unit_test_setup_teardown(flags_override_env_override_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(bad_values_are_rejected_and_named, setup, teardown),
		cmocka_unit_test_setup_teardown(lists_repeat_and_env_splits_on_commas, setup, teardown),
		cmocka_unit_test_setup_teardown(help_lists_every_option, setup, teardown),
		cmocka_unit_test(bad_default_fails_create),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
