/* Unit tests for tensor.c: shape checks, overflow, gather/scatter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "tensor.h"

static void create_zeroes_and_counts(void **state)
{
	(void)state;
	int64_t dims[] = {2, 3, 5};
	tensor *t = NULL;
	assert_int_equal(tensor_create(TENSOR_F32, 3, dims, &t), DF_OK);
	assert_int_equal(t->numel, 30);
	assert_int_equal(tensor_nbytes(t), 120);
	for (size_t i = 0; i < t->numel; i++)
		assert_true(tensor_f32(t)[i] == 0.0f);
	assert_null(tensor_i64(t));
	tensor_destroy(t);
	tensor_destroy(NULL);
}

static void scalar_and_empty_shapes(void **state)
{
	(void)state;
	tensor *t = NULL;
	assert_int_equal(tensor_create(TENSOR_I64, 0, NULL, &t), DF_OK);
	assert_int_equal(t->numel, 1);
	tensor_destroy(t);
	int64_t dims[] = {4, 0, 7};
	assert_int_equal(tensor_create(TENSOR_F32, 3, dims, &t), DF_OK);
	assert_int_equal(t->numel, 0);
	tensor_destroy(t);
}

static void bad_and_overflowing_shapes_are_rejected(void **state)
{
	(void)state;
	tensor *t = NULL;
	int64_t neg[] = {2, -1};
	assert_int_equal(tensor_create(TENSOR_F32, 2, neg, &t), DF_EINVAL);
	int64_t huge[] = {INT64_MAX, 2};
	assert_int_equal(tensor_create(TENSOR_F32, 2, huge, &t), DF_ETOOBIG);
	/* each dim fine, product wraps 64 bits */
	int64_t wrap[] = {1LL << 32, 1LL << 32, 16};
	assert_int_equal(tensor_create(TENSOR_F32, 3, wrap, &t), DF_ETOOBIG);
	/* just above the byte cap for f32 */
	int64_t cap[] = {(int64_t)(TENSOR_MAX_BYTES / 4) + 1};
	assert_int_equal(tensor_create(TENSOR_F32, 1, cap, &t), DF_ETOOBIG);
	int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
	assert_int_equal(tensor_create(TENSOR_F32, 9, nine, &t), DF_EINVAL);
	assert_int_equal(tensor_create(TENSOR_F32, -1, nine, &t), DF_EINVAL);
	assert_null(t);
	/* every dim is bounded on its own, even next to a zero dim */
	size_t n = 7;
	int64_t zero[] = {0, INT64_MAX / 2};
	assert_int_equal(tensor_shape_numel(2, zero, TENSOR_F32, &n), DF_ETOOBIG);
}

static tensor *iota(int ndim, const int64_t *dims)
{
	tensor *t = NULL;
	assert_int_equal(tensor_create(TENSOR_F32, ndim, dims, &t), DF_OK);
	for (size_t i = 0; i < t->numel; i++)
		tensor_f32(t)[i] = (float)i;
	return t;
}

static void gather_picks_channels_in_order(void **state)
{
	(void)state;
	int64_t dims[] = {2, 5, 3};   /* N=2, C=5, inner 3 */
	tensor *t = iota(3, dims), *g = NULL;
	int32_t ids[] = {4, 0, 4};
	assert_int_equal(tensor_gather(t, 1, ids, 3, &g), DF_OK);
	assert_int_equal(g->dims[1], 3);
	assert_int_equal(g->numel, 18);
	float *p = tensor_f32(g);
	/* n=0, channel 4 -> elements 12,13,14 */
	assert_true(p[0] == 12 && p[2] == 14);
	assert_true(p[3] == 0);
	/* n=1, first gathered = channel 4 -> 15 + 12 */
	assert_true(p[9] == 27);
	tensor_destroy(g);
	tensor_destroy(t);
}

static void gather_rejects_bad_ids_and_axes(void **state)
{
	(void)state;
	int64_t dims[] = {1, 4};
	tensor *t = iota(2, dims), *g = NULL;
	int32_t bad[] = {1, 4};
	assert_int_equal(tensor_gather(t, 1, bad, 2, &g), DF_ERANGE);
	int32_t neg[] = {-1};
	assert_int_equal(tensor_gather(t, 1, neg, 1, &g), DF_ERANGE);
	int32_t ok[] = {0};
	assert_int_equal(tensor_gather(t, 2, ok, 1, &g), DF_EINVAL);
	assert_int_equal(tensor_gather(t, -1, ok, 1, &g), DF_EINVAL);
	assert_null(g);
	tensor_destroy(t);
}

static void disjoint_gathers_scatter_back_to_original(void **state)
{
	(void)state;
	/* odd sizes on purpose: 3 x 7 x 5 x 3 split on axis 1 into 3 parts */
	int64_t dims[] = {3, 7, 5, 3};
	tensor *t = iota(4, dims), *r = NULL;
	assert_int_equal(tensor_create(TENSOR_F32, 4, dims, &r), DF_OK);
	int32_t a[] = {6, 1, 3}, b[] = {0, 5}, c[] = {2, 4};
	const int32_t *parts[] = {a, b, c};
	size_t lens[] = {3, 2, 2};
	for (int p = 0; p < 3; p++) {
		tensor *g = NULL;
		assert_int_equal(tensor_gather(t, 1, parts[p], lens[p], &g), DF_OK);
		assert_int_equal(tensor_scatter(r, 1, parts[p], lens[p], g), DF_OK);
		tensor_destroy(g);
	}
	assert_memory_equal(r->data, t->data, tensor_nbytes(t));
	tensor_destroy(r);
	tensor_destroy(t);
}

static void scatter_checks_shapes(void **state)
{
	(void)state;
	int64_t dd[] = {2, 4, 3}, sd[] = {2, 2, 4};
	tensor *d = iota(3, dd), *s = iota(3, sd);
	int32_t ids[] = {0, 1};
	assert_int_equal(tensor_scatter(d, 1, ids, 2, s), DF_EINVAL);
	int64_t sd2[] = {2, 3, 3};
	tensor *s2 = iota(3, sd2);
	assert_int_equal(tensor_scatter(d, 1, ids, 2, s2), DF_EINVAL);
	tensor_destroy(d);
	tensor_destroy(s);
	tensor_destroy(s2);
}

static void max_error_measures_abs_and_rel(void **state)
{
	(void)state;
	int64_t dims[] = {3};
	tensor *a = iota(1, dims), *b = iota(1, dims);
	double ma = -1, mr = -1;
	assert_int_equal(tensor_max_error(a, b, 1e-6f, &ma, &mr), DF_OK);
	assert_true(ma == 0 && mr == 0);
	tensor_f32(a)[2] = 2.5f;   /* b = 2 */
	assert_int_equal(tensor_max_error(a, b, 1e-6f, &ma, &mr), DF_OK);
	assert_true(fabs(ma - 0.5) < 1e-9 && fabs(mr - 0.25) < 1e-9);
	tensor_f32(a)[0] = NAN;
	assert_int_equal(tensor_max_error(a, b, 1e-6f, &ma, &mr), DF_OK);
	assert_true(isinf(ma));
	tensor_destroy(a);
	tensor_destroy(b);
}

static void shape_str_formats_and_truncates(void **state)
{
	(void)state;
	int64_t dims[] = {1, 3, 224, 224};
	char buf[64], small[6];
	tensor_shape_str(4, dims, buf, sizeof buf);
	assert_string_equal(buf, "[1,3,224,224]");
	tensor_shape_str(4, dims, small, sizeof small);
	assert_int_equal(strlen(small), 5);
	tensor_shape_str(0, NULL, buf, sizeof buf);
	assert_string_equal(buf, "[]");
}

static void uninit_and_view_tensors(void **state)
{
	(void)state;
	int64_t dims[] = {2, 3};
	tensor *t = NULL;
	assert_int_equal(tensor_create_uninit(TENSOR_F32, 2, dims, &t), DF_OK);
	assert_int_equal(t->numel, 6);
	assert_non_null(t->data);
	assert_false(t->borrowed);
	for (int i = 0; i < 6; i++)
		tensor_f32(t)[i] = (float)i;
	tensor *c = NULL;
	assert_int_equal(tensor_clone(t, &c), DF_OK);
	assert_memory_equal(c->data, t->data, 6 * sizeof(float));
	tensor_destroy(c);
	tensor_destroy(t);

	/* A view over stack memory: the data is the caller's, destroying the
	 * view must not free it (free() of a stack address would abort). */
	float data[6] = {1, 2, 3, 4, 5, 6};
	assert_int_equal(tensor_create_view(TENSOR_F32, 2, dims, data, &t), DF_OK);
	assert_ptr_equal(t->data, data);
	assert_true(t->borrowed);
	assert_int_equal(t->numel, 6);
	assert_true(tensor_f32(t)[5] == 6.0f);
	assert_int_equal(tensor_clone(t, &c), DF_OK);
	assert_false(c->borrowed);
	assert_ptr_not_equal(c->data, data);
	assert_memory_equal(c->data, data, sizeof data);
	tensor_destroy(c);
	tensor_destroy(t);
	assert_true(data[0] == 1.0f);

	int64_t bad[] = {2, -1};
	assert_int_equal(tensor_create_view(TENSOR_F32, 2, bad, data, &t), DF_EINVAL);
	assert_int_equal(tensor_create_view(TENSOR_F32, 2, dims, NULL, &t), DF_EINVAL);
	assert_int_equal(tensor_create_uninit(TENSOR_F32, 2, bad, &t), DF_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(create_zeroes_and_counts),
		cmocka_unit_test(scalar_and_empty_shapes),
		cmocka_unit_test(bad_and_overflowing_shapes_are_rejected),
		cmocka_unit_test(gather_picks_channels_in_order),
		cmocka_unit_test(gather_rejects_bad_ids_and_axes),
		cmocka_unit_test(disjoint_gathers_scatter_back_to_original),
		cmocka_unit_test(scatter_checks_shapes),
		cmocka_unit_test(max_error_measures_abs_and_rel),
		cmocka_unit_test(shape_str_formats_and_truncates),
		cmocka_unit_test(uninit_and_view_tensors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
