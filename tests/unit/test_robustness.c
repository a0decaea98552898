/* Unit tests for robustness.c: failure-set enumeration and sampling, and
 * accuracy counting on a tiny synthetic dataset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "robustness.h"

static void check_sets(int n, int k, size_t max, size_t want)
{
	uint64_t *m = NULL;
	size_t c = 0;
	assert_int_equal(robust_failure_sets(n, k, max, 7, &m, &c), DF_OK);
	assert_int_equal(c, want);
	for (size_t i = 0; i < c; i++) {
		assert_int_equal(__builtin_popcountll(m[i]), k);
		assert_true(m[i] >> n == 0);
		for (size_t j = 0; j < i; j++)
			assert_true(m[i] != m[j]);
	}
	free(m);
}

static void failure_sets_enumerate_or_sample(void **state)
{
	(void)state;
	check_sets(4, 1, 100, 4);
	check_sets(4, 2, 100, 6);
	check_sets(8, 1, 100, 8);
	check_sets(8, 3, 100, 56);
	check_sets(8, 3, 10, 10);
	check_sets(40, 1, 100, 40);
	check_sets(40, 2, 50, 50);
	check_sets(5, 0, 10, 1);
	check_sets(5, 5, 10, 1);
	uint64_t *m = NULL;
	size_t c = 0;
	assert_int_equal(robust_failure_sets(4, 5, 10, 0, &m, &c), DF_EINVAL);
	assert_int_equal(robust_failure_sets(0, 0, 10, 0, &m, &c), DF_EINVAL);
	assert_int_equal(robust_failure_sets(4, 1, 0, 0, &m, &c), DF_EINVAL);
	assert_null(m);
	/* the same seed samples the same sets */
	uint64_t *a = NULL, *b = NULL;
	size_t ca = 0, cb = 0;
	assert_int_equal(robust_failure_sets(20, 3, 12, 99, &a, &ca), DF_OK);
	assert_int_equal(robust_failure_sets(20, 3, 12, 99, &b, &cb), DF_OK);
	assert_memory_equal(a, b, ca * sizeof *a);
	free(a);
	free(b);
}

static void budget_keeps_memory_and_follows_sensitivity(void **state)
{
	(void)state;
	stage st[4] = {
		{.kind = STAGE_NEURON, .weight_bytes = 1000},
		{.kind = STAGE_NEURON, .weight_bytes = 4000},
		{.kind = STAGE_LOCAL},
		{.kind = STAGE_NEURON, .weight_bytes = 500},
	};
	stage_plan p = {.n_stages = 4, .stages = st};
	double sens[4] = {0.3, 0.01, 0, 0.1}, r[4];
	assert_int_equal(robust_allocate_budget(&p, sens, 0.25, r), DF_OK);
	double used = 0;
	for (int s = 0; s < 4; s++) {
		assert_true(r[s] >= 0 && r[s] <= 1);
		used += r[s] * (double)st[s].weight_bytes;
	}
	assert_float_equal(used, 0.25 * 5500, 1e-6);
	/* the most sensitive stage is fully replicated (capped), the least
	 * sensitive gets the least */
	assert_float_equal(r[0], 1.0, 1e-12);
	assert_true(r[1] < r[3]);
	assert_float_equal(r[2], 0, 0);
	/* ratio 1 replicates everything, ratio 0 nothing */
	assert_int_equal(robust_allocate_budget(&p, sens, 1.0, r), DF_OK);
	assert_float_equal(r[0] + r[1] + r[3], 3.0, 1e-9);
	assert_int_equal(robust_allocate_budget(&p, sens, 0.0, r), DF_OK);
	assert_float_equal(r[0] + r[1] + r[3], 0.0, 0);
	assert_int_equal(robust_allocate_budget(&p, sens, 1.5, r), DF_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(failure_sets_enumerate_or_sample),
		cmocka_unit_test(budget_keeps_memory_and_follows_sensitivity),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
