/* Unit tests for scores.c: argmax ties and NaN, softmax ranking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "scores.h"

static void argmax_takes_the_first_maximum_and_skips_nan(void **state)
{
	(void)state;
	const float a[] = {0.5f, 2.0f, -1.0f, 2.0f};
	assert_int_equal(scores_argmax(a, 4), 1);
	const float b[] = {NAN, -3.0f, -2.0f};
	assert_int_equal(scores_argmax(b, 3), 2);
	const float c[] = {7.0f};
	assert_int_equal(scores_argmax(c, 1), 0);
}

static void rank_is_softmax_best_first(void **state)
{
	(void)state;
	const float logits[] = {1.0f, 3.0f, 1.0f, -2.0f};
	score_entry *r = NULL;
	assert_int_equal(scores_rank(logits, 4, false, &r), DF_OK);
	double z = exp(1.0) * 2 + exp(3.0) + exp(-2.0), sum = 0;
	assert_int_equal(r[0].index, 1);
	assert_float_equal(r[0].score, exp(3.0) / z, 1e-12);
	/* ties keep index order */
	assert_int_equal(r[1].index, 0);
	assert_int_equal(r[2].index, 2);
	assert_int_equal(r[3].index, 3);
	for (int i = 0; i < 4; i++)
		sum += r[i].score;
	assert_float_equal(sum, 1.0, 1e-12);
	free(r);
	/* large logits do not overflow */
	const float big[] = {1000.0f, 999.0f};
	assert_int_equal(scores_rank(big, 2, false, &r), DF_OK);
	assert_float_equal(r[0].score, 1.0 / (1.0 + exp(-1.0)), 1e-9);
	free(r);
	/* probabilities are ranked as given */
	const float p[] = {0.1f, 0.7f, 0.2f};
	assert_int_equal(scores_rank(p, 3, true, &r), DF_OK);
	assert_int_equal(r[0].index, 1);
	assert_float_equal(r[0].score, 0.7, 1e-6);
	free(r);
	r = NULL;
	assert_int_equal(scores_rank(p, 0, true, &r), DF_EINVAL);
	assert_null(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(argmax_takes_the_first_maximum_and_skips_nan),
		cmocka_unit_test(rank_is_softmax_best_first),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
