/*
 * Unit tests for npy.c. Fixtures in tests/unit/data were written by NumPy's
 * own numpy.lib.format.write_array, so these tests check compatibility with
 * the real format, not with our reading of it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "npy.h"

static char path_buf[1024];

static const char *fixture(const char *name)
{
	const char *src = getenv("DF_SOURCE_DIR");
	snprintf(path_buf, sizeof path_buf, "%s/tests/unit/data/%s",
		 src ? src : ".", name);
	return path_buf;
}

static void *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	rewind(f);
	void *b = malloc((size_t)n);
	assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return b;
}

static void reads_numpy_v1_f32(void **state)
{
	(void)state;
	tensor *t = NULL;
	assert_int_equal(npy_read_file(fixture("f32_2x3_v1.npy"), &t), DF_OK);
	assert_int_equal(t->dtype, TENSOR_F32);
	assert_int_equal(t->ndim, 2);
	assert_int_equal(t->dims[0], 2);
	assert_int_equal(t->dims[1], 3);
	for (int i = 0; i < 6; i++)
		assert_true(tensor_f32(t)[i] == (float)i * 0.5f - 1.0f);
	tensor_destroy(t);
}

static void reads_numpy_v1_i64_and_scalar(void **state)
{
	(void)state;
	tensor *t = NULL;
	assert_int_equal(npy_read_file(fixture("i64_5_v1.npy"), &t), DF_OK);
	assert_int_equal(t->dtype, TENSOR_I64);
	assert_int_equal(t->ndim, 1);
	assert_int_equal(t->dims[0], 5);
	assert_true(tensor_i64(t)[3] == (int64_t)1 << 40);
	assert_true(tensor_i64(t)[4] == -((int64_t)1 << 62));
	tensor_destroy(t);
	assert_int_equal(npy_read_file(fixture("f32_scalar_v1.npy"), &t), DF_OK);
	assert_int_equal(t->ndim, 0);
	assert_int_equal(t->numel, 1);
	assert_true(tensor_f32(t)[0] == 3.25f);
	tensor_destroy(t);
}

static void reads_numpy_v2(void **state)
{
	(void)state;
	tensor *t = NULL;
	assert_int_equal(npy_read_file(fixture("f32_1x3x1x7_v2.npy"), &t), DF_OK);
	assert_int_equal(t->ndim, 4);
	assert_int_equal(t->dims[1], 3);
	assert_int_equal(t->dims[3], 7);
	assert_true(tensor_f32(t)[20] == 20.0f);
	tensor_destroy(t);
}

static void writes_byte_identical_to_numpy(void **state)
{
	(void)state;
	tensor *t = NULL;
	size_t ref_len = 0, len = 0;
	void *buf = NULL;
	assert_int_equal(npy_read_file(fixture("f32_2x3_v1.npy"), &t), DF_OK);
	void *ref = slurp(fixture("f32_2x3_v1.npy"), &ref_len);
	assert_int_equal(npy_write_mem(t, &buf, &len), DF_OK);
	assert_int_equal(len, ref_len);
	assert_memory_equal(buf, ref, len);
	free(buf);
	free(ref);
	tensor_destroy(t);
	assert_int_equal(npy_read_file(fixture("i64_5_v1.npy"), &t), DF_OK);
	ref = slurp(fixture("i64_5_v1.npy"), &ref_len);
	assert_int_equal(npy_write_mem(t, &buf, &len), DF_OK);
	assert_int_equal(len, ref_len);
	assert_memory_equal(buf, ref, len);
	free(buf);
	free(ref);
	tensor_destroy(t);
}

static void round_trips_odd_shapes(void **state)
{
	(void)state;
	static const int64_t shapes[][TENSOR_MAX_DIMS] = {
		{1}, {7}, {3, 1}, {1, 13, 1}, {2, 3, 5, 7}, {0, 4}, {1, 1, 1, 1, 1, 1, 1, 3},
	};
	static const int ranks[] = {1, 1, 2, 3, 4, 2, 8};
	char tmpl[] = "/tmp/df_npy_XXXXXX";
	int fd = mkstemp(tmpl);
	assert_true(fd >= 0);
	close(fd);
	for (size_t s = 0; s < sizeof ranks / sizeof ranks[0]; s++) {
		for (int dt = 0; dt < TENSOR_DTYPE_COUNT; dt++) {
			tensor *t = NULL, *r = NULL;
			assert_int_equal(tensor_create((tensor_dtype)dt, ranks[s], shapes[s], &t), DF_OK);
			for (size_t i = 0; i < t->numel; i++) {
				if (dt == TENSOR_F32)
					tensor_f32(t)[i] = (float)i * -1.5f + 0.125f;
				else
					tensor_i64(t)[i] = (int64_t)i * 1000003 - 7;
			}
			assert_int_equal(npy_write_file(tmpl, t), DF_OK);
			assert_int_equal(npy_read_file(tmpl, &r), DF_OK);
			assert_true(tensor_same_shape(t, r));
			assert_memory_equal(t->data, r->data, tensor_nbytes(t) ? tensor_nbytes(t) : 1);
			tensor_destroy(t);
			tensor_destroy(r);
		}
	}
	unlink(tmpl);
}

static void rejects_unsupported_arrays_with_reason(void **state)
{
	(void)state;
	tensor *t = NULL;
	assert_int_equal(npy_read_file(fixture("f32_be.npy"), &t), DF_ENOTSUP);
	assert_non_null(strstr(df_err_msg(), "big-endian"));
	assert_int_equal(npy_read_file(fixture("f64.npy"), &t), DF_ENOTSUP);
	assert_non_null(strstr(df_err_msg(), "<f8"));
	assert_int_equal(npy_read_file(fixture("f32_fortran.npy"), &t), DF_ENOTSUP);
	assert_non_null(strstr(df_err_msg(), "Fortran"));
	assert_int_equal(npy_read_file(fixture("f32_v3.npy"), &t), DF_ENOTSUP);
	assert_non_null(strstr(df_err_msg(), "version 3.0"));
	assert_int_equal(npy_read_file("/nonexistent/x.npy", &t), DF_ENOENT);
	assert_null(t);
}

static void rejects_every_truncation(void **state)
{
	(void)state;
	size_t len = 0;
	unsigned char *b = slurp(fixture("f32_2x3_v1.npy"), &len);
	tensor *t = NULL;
	for (size_t cut = 0; cut < len; cut++) {
		df_err err = npy_read_mem(b, cut, &t);
		assert_int_not_equal(err, DF_OK);
		assert_null(t);
	}
	/* and trailing garbage */
	unsigned char *longer = malloc(len + 1);
	memcpy(longer, b, len);
	longer[len] = 0;
	assert_int_equal(npy_read_mem(longer, len + 1, &t), DF_EINVAL);
	free(longer);
	free(b);
}

/* Builds a v1 file with the given header dict and n data bytes. */
static unsigned char *make_npy(const char *dict, size_t data, size_t *len)
{
	size_t dl = strlen(dict);
	size_t hl = dl + 1;
	unsigned char *b = calloc(1, 10 + hl + data);
	memcpy(b, "\x93NUMPY\x01\x00", 8);
	b[8] = (unsigned char)(hl & 0xff);
	b[9] = (unsigned char)(hl >> 8);
	memcpy(b + 10, dict, dl);
	b[10 + dl] = '\n';
	*len = 10 + hl + data;
	return b;
}

static void rejects_malformed_headers(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"",
		"[1, 2]",
		"{'descr': '<f4', 'fortran_order': False}",
		"{'descr': '<f4', 'shape': (2,), }",
		"{'fortran_order': False, 'shape': (2,), }",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}",
		"{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2,), }",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (2,",
		"{'descr': '<f4, 'fortran_order': False, 'shape': (2,), }",
		"{'descr': <f4, 'fortran_order': False, 'shape': (2,), }",
		"{'descr': '<f4' 'fortran_order': False, 'shape': (2,), }",
		"{'descr': '<f4', 'fortran_order': False, 'shape': [2], }",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		size_t len = 0;
		unsigned char *b = make_npy(bad[i], 8, &len);
		tensor *t = NULL;
		df_err err = npy_read_mem(b, len, &t);
		if (err == DF_OK)
			fail_msg("header accepted: %s", bad[i]);
		assert_null(t);
		free(b);
	}
}

static void rejects_overflowing_shapes(void **state)
{
	(void)state;
	static const char *const huge[] = {
		"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
		"{'descr': '<i8', 'fortran_order': False, 'shape': (1000000, 1000000, 1000000), }",
		"{'descr': '<f4', 'fortran_order': False, 'shape': (2000000000,), }",
	};
	for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
		size_t len = 0;
		unsigned char *b = make_npy(huge[i], 16, &len);
		tensor *t = NULL;
		df_err err = npy_read_mem(b, len, &t);
		if (err != DF_ETOOBIG && err != DF_EINVAL)
			fail_msg("shape %s gave %d", huge[i], err);
		assert_null(t);
		free(b);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(reads_numpy_v1_f32),
		cmocka_unit_test(reads_numpy_v1_i64_and_scalar),
		cmocka_unit_test(reads_numpy_v2),
		cmocka_unit_test(writes_byte_identical_to_numpy),
		cmocka_unit_test(round_trips_odd_shapes),
		cmocka_unit_test(rejects_unsupported_arrays_with_reason),
		cmocka_unit_test(rejects_every_truncation),
		cmocka_unit_test(rejects_malformed_headers),
		cmocka_unit_test(rejects_overflowing_shapes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
