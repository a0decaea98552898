/*
 * Unit tests for fmnist.c: IDX files crafted here (gzip and plain, sound
 * and damaged in every way the reader checks), plus the real Debian
 * dataset-fashion-mnist test split when it is installed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "fmnist.h"
#include "image.h"

static char tmpdir[64];
static char path_a[256], path_b[256];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof tmpdir, "/tmp/df_fmnist_XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static const char *tmp(char *buf, const char *name)
{
	snprintf(buf, 256, "%s/%s", tmpdir, name);
	return buf;
}

/* Builds an IDX byte image: header (magic type/rank, dims) + data. */
static unsigned char *idx_bytes(int type, int ndim, const uint32_t *dims,
				size_t data_len, size_t *len)
{
	size_t hl = 4 + 4 * (size_t)ndim;
	unsigned char *b = calloc(1, hl + data_len + 1);
	b[2] = (unsigned char)type;
	b[3] = (unsigned char)ndim;
	for (int i = 0; i < ndim; i++) {
		b[4 + 4 * i] = (unsigned char)(dims[i] >> 24);
		b[5 + 4 * i] = (unsigned char)(dims[i] >> 16);
		b[6 + 4 * i] = (unsigned char)(dims[i] >> 8);
		b[7 + 4 * i] = (unsigned char)dims[i];
	}
	for (size_t i = 0; i < data_len; i++)
		b[hl + i] = (unsigned char)((i * 7 + i / 784) % 10 * 25);
	*len = hl + data_len;
	return b;
}

static void write_plain(const char *path, const void *b, size_t len)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(b, 1, len, f), len);
	fclose(f);
}

static void write_gz(const char *path, const void *b, size_t len)
{
	gzFile g = gzopen(path, "wb");
	assert_non_null(g);
	if (len)
		assert_int_equal(gzwrite(g, b, (unsigned)len), (int)len);
	assert_int_equal(gzclose(g), Z_OK);
}

static unsigned char *read_back(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	*len = (size_t)ftell(f);
	rewind(f);
	unsigned char *b = malloc(*len);
	assert_int_equal(fread(b, 1, *len, f), *len);
	fclose(f);
	return b;
}

/* Writes a 5-image set (labels 3 1 4 1 5) as gz or plain files. */
static void write_set(const char *images, const char *labels, int gz,
		      uint32_t n_images, uint32_t n_labels)
{
	uint32_t idims[3] = {n_images, 28, 28}, ldims[1] = {n_labels};
	size_t il = 0, ll = 0;
	unsigned char *ib = idx_bytes(8, 3, idims, (size_t)n_images * 784, &il);
	unsigned char *lb = idx_bytes(8, 1, ldims, n_labels, &ll);
	static const unsigned char lab[] = {3, 1, 4, 1, 5, 9, 2, 6};
	for (uint32_t i = 0; i < n_labels; i++)
		lb[8 + i] = lab[i % 8];
	(gz ? write_gz : write_plain)(images, ib, il);
	(gz ? write_gz : write_plain)(labels, lb, ll);
	free(ib);
	free(lb);
}

static void reads_gzip_and_plain_files(void **state)
{
	(void)state;
	for (int gz = 0; gz < 2; gz++) {
		write_set(tmp(path_a, "i"), tmp(path_b, "l"), gz, 5, 5);
		fmnist *d = NULL;
		assert_int_equal(fmnist_load_files(path_a, path_b, 0, &d), DF_OK);
		assert_int_equal(d->count, 5);
		assert_int_equal(d->rows, 28);
		assert_int_equal(d->cols, 28);
		assert_int_equal(fmnist_label(d, 0), 3);
		assert_int_equal(fmnist_label(d, 4), 5);
		assert_int_equal(fmnist_label(d, 5), -1);
		const uint8_t *im = fmnist_image(d, 2);
		assert_non_null(im);
		for (size_t i = 0; i < 784; i++) {
			size_t k = 2 * 784 + i;
			assert_int_equal(im[i], (k * 7 + k / 784) % 10 * 25);
		}
		assert_null(fmnist_image(d, 5));
		fmnist_destroy(d);

		/* limit loads a prefix only */
		assert_int_equal(fmnist_load_files(path_a, path_b, 2, &d), DF_OK);
		assert_int_equal(d->count, 2);
		assert_int_equal(fmnist_label(d, 1), 1);
		fmnist_destroy(d);
		assert_int_equal(fmnist_load_files(path_a, path_b, 99, &d), DF_OK);
		assert_int_equal(d->count, 5);
		fmnist_destroy(d);
	}
	fmnist_destroy(NULL);
}

static void finds_files_by_split_name(void **state)
{
	(void)state;
	char dir[256];
	snprintf(dir, sizeof dir, "%s/ds", tmpdir);
	assert_int_equal(mkdir(dir, 0755), 0);
	char ip[300], lp[300];
	snprintf(ip, sizeof ip, "%s/t10k-images-idx3-ubyte.gz", dir);
	snprintf(lp, sizeof lp, "%s/t10k-labels-idx1-ubyte.gz", dir);
	write_set(ip, lp, 1, 3, 3);
	snprintf(ip, sizeof ip, "%s/train-images-idx3-ubyte", dir);
	snprintf(lp, sizeof lp, "%s/train-labels-idx1-ubyte", dir);
	write_set(ip, lp, 0, 4, 4);
	fmnist *d = NULL;
	assert_int_equal(fmnist_load(dir, FMNIST_TEST, 0, &d), DF_OK);
	assert_int_equal(d->count, 3);
	fmnist_destroy(d);
	assert_int_equal(fmnist_load(dir, FMNIST_TRAIN, 0, &d), DF_OK);
	assert_int_equal(d->count, 4);
	fmnist_destroy(d);
	d = NULL;
	assert_int_equal(fmnist_load(tmpdir, FMNIST_TEST, 0, &d), DF_ENOENT);
	assert_non_null(strstr(df_err_msg(), "t10k-images-idx3-ubyte.gz"));
	assert_null(d);

	fmnist_split s;
	assert_int_equal(fmnist_split_parse("test", &s), DF_OK);
	assert_int_equal(s, FMNIST_TEST);
	assert_int_equal(fmnist_split_parse("train", &s), DF_OK);
	assert_int_equal(s, FMNIST_TRAIN);
	assert_int_equal(fmnist_split_parse("valid", &s), DF_EINVAL);
}

/* Writes b as the images file (gz or plain) with a matching 5-label file,
 * and expects loading to fail with want and a message containing what. */
static void expect_images_fail(const unsigned char *b, size_t len, int gz,
			       df_err want, const char *what)
{
	uint32_t ldims[1] = {5};
	size_t ll = 0;
	unsigned char *lb = idx_bytes(8, 1, ldims, 5, &ll);
	memset(lb + 8, 1, 5);
	write_plain(tmp(path_b, "l"), lb, ll);
	free(lb);
	(gz ? write_gz : write_plain)(tmp(path_a, "i"), b, len);
	fmnist *d = NULL;
	df_err err = fmnist_load_files(path_a, path_b, 0, &d);
	if (err != want || !strstr(df_err_msg(), what))
		fail_msg("%s (gz=%d): got %s '%s', expected %s with '%s'", what,
			 gz, df_err_str(err), df_err_msg(), df_err_str(want),
			 what);
	assert_null(d);
}

static void rejects_malformed_headers_and_sizes(void **state)
{
	(void)state;
	uint32_t dims[4] = {5, 28, 28, 1};
	size_t len = 0;
	for (int gz = 0; gz < 2; gz++) {
		unsigned char *b = idx_bytes(8, 3, dims, 5 * 784, &len);
		b[0] = 1;
		expect_images_fail(b, len, gz, DF_ECORRUPT, "bad magic");
		b[0] = 0;
		b[2] = 0x0d; /* float */
		expect_images_fail(b, len, gz, DF_ENOTSUP, "0x0d");
		b[2] = 8;
		b[3] = 0;
		expect_images_fail(b, len, gz, DF_ECORRUPT, "rank 0");
		b[3] = 5;
		expect_images_fail(b, len, gz, DF_ECORRUPT, "rank 5");
		b[3] = 3;
		expect_images_fail(b, 10, gz, DF_ECORRUPT, "truncated IDX header");
		expect_images_fail(b, 2, gz, DF_ECORRUPT, "bad magic");
		expect_images_fail(b, len - 1, gz, DF_ECORRUPT, "truncated");
		expect_images_fail(b, len - 784, gz, DF_ECORRUPT, "truncated");
		free(b);
		b = idx_bytes(8, 3, dims, 5 * 784 + 1, &len);
		expect_images_fail(b, len, gz, DF_ECORRUPT, "continues after");
		free(b);
		b = idx_bytes(8, 1, dims, 5, &len);
		expect_images_fail(b, len, gz, DF_ECORRUPT, "rank 1, expected 3");
		free(b);
		uint32_t zero[3] = {5, 0, 28};
		b = idx_bytes(8, 3, zero, 0, &len);
		expect_images_fail(b, len, gz, DF_ECORRUPT, "0x28");
		free(b);
		uint32_t big[3] = {0xffffffffu, 28, 28};
		b = idx_bytes(8, 3, big, 784, &len);
		expect_images_fail(b, len, gz, DF_ETOOBIG, "dimension 0");
		free(b);
		uint32_t wide[4] = {1, 100000, 100000, 1000};
		b = idx_bytes(8, 4, wide, 16, &len);
		expect_images_fail(b, len, gz, DF_ETOOBIG, "above");
		free(b);
	}
}

static void lying_gzip_header_costs_no_memory(void **state)
{
	(void)state;
	/* Claims 2.5 million images (1.96 GB, under the cap) but holds one:
	 * must fail as truncated, quickly, without a 2 GB allocation. */
	uint32_t dims[3] = {2500000, 28, 28};
	size_t len = 0;
	unsigned char *b = idx_bytes(8, 3, dims, 784, &len);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	write_gz(tmp(path_a, "big"), b, len);
	idx_array *a = NULL;
	assert_int_equal(idx_array_read(path_a, 0, &a), DF_ECORRUPT);
	assert_non_null(strstr(df_err_msg(), "truncated"));
	assert_null(a);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double dt = (double)(t1.tv_sec - t0.tv_sec) +
		    (t1.tv_nsec - t0.tv_nsec) * 1e-9;
	if (dt > 0.5)
		fail_msg("took %.3f s", dt);
	/* The same as a plain file is caught from the file size. */
	write_plain(path_a, b, len);
	assert_int_equal(idx_array_read(path_a, 0, &a), DF_ECORRUPT);
	assert_non_null(strstr(df_err_msg(), "truncated"));
	/* Asking for a prefix that is there works. */
	assert_int_equal(idx_array_read(path_a, 1, &a), DF_OK);
	assert_int_equal(a->dims[0], 1);
	assert_int_equal(a->total, 2500000);
	idx_array_destroy(a);
	free(b);
}

static void rejects_damaged_gzip_streams(void **state)
{
	(void)state;
	uint32_t dims[3] = {5, 28, 28};
	size_t len = 0, glen = 0;
	unsigned char *b = idx_bytes(8, 3, dims, 5 * 784, &len);
	write_gz(tmp(path_a, "g"), b, len);
	unsigned char *g = read_back(path_a, &glen);
	idx_array *a = NULL;

	/* wrong CRC-32 in the trailer */
	unsigned char *c = malloc(glen);
	memcpy(c, g, glen);
	c[glen - 8] ^= 0xff;
	write_plain(path_a, c, glen);
	assert_int_equal(idx_array_read(path_a, 0, &a), DF_ECORRUPT);
	/* truncated stream, at several points */
	for (size_t cut = glen - 1; cut > 20; cut -= 7) {
		write_plain(path_a, g, cut);
		df_err err = idx_array_read(path_a, 0, &a);
		if (err != DF_ECORRUPT)
			fail_msg("gzip cut to %zu/%zu: %s", cut, glen,
				 df_err_str(err));
	}
	/* garbage in the deflate data */
	memcpy(c, g, glen);
	for (size_t i = 12; i < 30 && i < glen; i++)
		c[i] = 0xff;
	write_plain(path_a, c, glen);
	assert_int_equal(idx_array_read(path_a, 0, &a), DF_ECORRUPT);
	assert_null(a);
	free(c);
	free(g);
	free(b);
	assert_int_equal(idx_array_read("/nonexistent/x.gz", 0, &a), DF_ENOENT);
	assert_int_equal(idx_array_read("/tmp", 0, &a), DF_EIO);
}

static void checks_labels_against_images(void **state)
{
	(void)state;
	fmnist *d = NULL;
	write_set(tmp(path_a, "i"), tmp(path_b, "l"), 1, 5, 4);
	assert_int_equal(fmnist_load_files(path_a, path_b, 0, &d), DF_ECORRUPT);
	assert_non_null(strstr(df_err_msg(), "5 images"));
	assert_non_null(strstr(df_err_msg(), "4 labels"));
	/* also when only a prefix is loaded */
	assert_int_equal(fmnist_load_files(path_a, path_b, 2, &d), DF_ECORRUPT);

	uint32_t ldims[1] = {5};
	size_t ll = 0;
	unsigned char *lb = idx_bytes(8, 1, ldims, 5, &ll);
	memset(lb + 8, 2, 5);
	lb[8 + 3] = 10;
	write_gz(path_b, lb, ll);
	write_set(path_a, tmp(path_b, "unused"), 1, 5, 5);
	tmp(path_b, "l");
	assert_int_equal(fmnist_load_files(path_a, path_b, 0, &d), DF_ECORRUPT);
	assert_non_null(strstr(df_err_msg(), "label 10 of item 3"));
	/* labels file given as images */
	assert_int_equal(fmnist_load_files(path_b, path_b, 0, &d), DF_ECORRUPT);
	assert_null(d);
	free(lb);
}

static void reads_the_real_test_split(void **state)
{
	(void)state;
	if (access(FMNIST_DEFAULT_DIR "/t10k-images-idx3-ubyte.gz", R_OK) != 0)
		skip();
	fmnist *d = NULL;
	assert_int_equal(fmnist_load(NULL, FMNIST_TEST, 0, &d), DF_OK);
	assert_int_equal(d->count, 10000);
	assert_int_equal(d->rows, 28);
	assert_int_equal(d->cols, 28);
	int hist[FMNIST_CLASSES] = {0};
	for (size_t i = 0; i < d->count; i++)
		hist[fmnist_label(d, i)]++;
	for (int c = 0; c < FMNIST_CLASSES; c++)
		assert_int_equal(hist[c], 1000);
	assert_int_equal(fmnist_label(d, 0), 9); /* ankle boot */

	/* Image 0 is the PNG fixture the image tests use. */
	char p[1024];
	const char *src = getenv("DF_SOURCE_DIR");
	snprintf(p, sizeof p, "%s/tests/unit/data/img/fmnist_t10k_0.png",
		 src ? src : ".");
	size_t len = 0;
	unsigned char *b = read_back(p, &len);
	image *img = NULL;
	assert_int_equal(image_decode(b, len, 0, &img), DF_OK);
	assert_memory_equal(img->pixels, fmnist_image(d, 0), 784);
	image_destroy(img);
	free(b);
	fmnist_destroy(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(reads_gzip_and_plain_files),
		cmocka_unit_test(finds_files_by_split_name),
		cmocka_unit_test(rejects_malformed_headers_and_sizes),
		cmocka_unit_test(lying_gzip_header_costs_no_memory),
		cmocka_unit_test(rejects_damaged_gzip_streams),
		cmocka_unit_test(checks_labels_against_images),
		cmocka_unit_test(reads_the_real_test_split),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
