/* Unit tests for err.c: tables, HTTP statuses, thread-local detail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <string.h>

#include "err.h"

static void every_error_has_text_and_status(void **state)
{
	(void)state;
	for (int e = 0; e < DF_ERR_COUNT; e++) {
		assert_non_null(df_err_str((df_err)e));
		assert_true(strlen(df_err_code((df_err)e)) > 0);
		int s = df_err_http_status((df_err)e);
		assert_true(s >= 200 && s < 600);
		if (e != DF_OK)
			assert_true(s >= 400);
	}
}

static void statuses_fit_the_error(void **state)
{
	(void)state;
	assert_int_equal(df_err_http_status(DF_EINVAL), 400);
	assert_int_equal(df_err_http_status(DF_ENOENT), 404);
	assert_int_equal(df_err_http_status(DF_ETOOBIG), 413);
	assert_int_equal(df_err_http_status(DF_ENOTSUP), 415);
	assert_int_equal(df_err_http_status(DF_EAUTH), 401);
	assert_int_equal(df_err_http_status(DF_EFORBIDDEN), 403);
	assert_int_equal(df_err_http_status(DF_EUNAVAIL), 503);
	assert_string_equal(df_err_code(DF_EINVAL), "invalid_argument");
}

static void out_of_range_values_are_safe(void **state)
{
	(void)state;
	assert_string_equal(df_err_str((df_err)9999), "unknown error");
	assert_string_equal(df_err_str((df_err)-1), "unknown error");
	assert_int_equal(df_err_http_status((df_err)9999), 500);
}

static void errf_returns_code_and_records_detail(void **state)
{
	(void)state;
	df_err_clear();
	assert_string_equal(df_err_msg(), "");
	assert_int_equal(df_errf(DF_EINVAL, "node %s: bad %d", "conv1", 3), DF_EINVAL);
	assert_string_equal(df_err_msg(), "node conv1: bad 3");
	df_err_clear();
	assert_string_equal(df_err_msg(), "");
}

static void *other_thread(void *arg)
{
	df_errf(DF_EIO, "from thread");
	strcpy(arg, df_err_msg());
	return NULL;
}

static void detail_is_per_thread(void **state)
{
	(void)state;
	char seen[64] = "";
	pthread_t t;
	df_errf(DF_EINVAL, "from main");
	assert_int_equal(pthread_create(&t, NULL, other_thread, seen), 0);
	pthread_join(t, NULL);
	assert_string_equal(seen, "from thread");
	assert_string_equal(df_err_msg(), "from main");
}

static void long_detail_is_truncated_not_overflowed(void **state)
{
	(void)state;
	char big[2000];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	df_errf(DF_EINVAL, "%s", big);
	assert_true(strlen(df_err_msg()) < sizeof big - 1);
	assert_true(strlen(df_err_msg()) > 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_error_has_text_and_status),
		cmocka_unit_test(statuses_fit_the_error),
		cmocka_unit_test(out_of_range_values_are_safe),
		cmocka_unit_test(errf_returns_code_and_records_detail),
		cmocka_unit_test(detail_is_per_thread),
		cmocka_unit_test(long_detail_is_truncated_not_overflowed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
