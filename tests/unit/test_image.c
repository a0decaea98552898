/*
 * Unit tests for image.c. Fixtures in tests/unit/data/img were made by
 * make_fixtures.py there: PNGs from its own encoder (every colour type, bit
 * depth, filter and Adam7), JPEGs and reference decodings from Pillow, and
 * reference model inputs from Pillow + torchvision (pre_*.npy). Decoding and
 * preprocessing must match them exactly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "image.h"
#include "npy.h"

static char path_buf[1024];

static const char *fixture(const char *name)
{
	const char *src = getenv("DF_SOURCE_DIR");
	snprintf(path_buf, sizeof path_buf, "%s/tests/unit/data/img/%s",
		 src ? src : ".", name);
	return path_buf;
}

static unsigned char *slurp(const char *name, size_t *len)
{
	FILE *f = fopen(fixture(name), "rb");
	if (!f)
		fail_msg("cannot open fixture %s", path_buf);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	rewind(f);
	unsigned char *b = malloc((size_t)n + 1);
	assert_non_null(b);
	assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return b;
}

/* Reads a binary PGM (P5) or PPM (P6) with maxval 255. */
static image *read_pnm(const char *name)
{
	size_t len = 0;
	unsigned char *b = slurp(name, &len);
	char magic[3] = {0};
	int w = 0, h = 0, maxv = 0, off = 0;
	b[len] = 0;
	assert_int_equal(sscanf((char *)b, "%2s %d %d %d%n", magic, &w, &h,
				&maxv, &off),
			 4);
	assert_int_equal(maxv, 255);
	int ch = strcmp(magic, "P6") == 0 ? 3 : 1;
	image *img = NULL;
	assert_int_equal(image_create(w, h, ch, &img), DF_OK);
	off++; /* the single whitespace after maxval */
	assert_int_equal(len - (size_t)off, (size_t)w * h * ch);
	memcpy(img->pixels, b + off, (size_t)w * h * ch);
	free(b);
	return img;
}

static image *decode_fixture(const char *name)
{
	size_t len = 0;
	unsigned char *b = slurp(name, &len);
	image *img = NULL;
	df_err err = image_decode(b, len, 0, &img);
	if (err)
		fail_msg("%s: %s: %s", name, df_err_str(err), df_err_msg());
	free(b);
	return img;
}

static void assert_same_image(const image *got, const image *want,
			      const char *name)
{
	if (got->width != want->width || got->height != want->height ||
	    got->channels != want->channels)
		fail_msg("%s: decoded %dx%dx%d, expected %dx%dx%d", name,
			 got->width, got->height, got->channels, want->width,
			 want->height, want->channels);
	size_t n = (size_t)want->width * want->height * want->channels;
	for (size_t i = 0; i < n; i++)
		if (got->pixels[i] != want->pixels[i])
			fail_msg("%s: byte %zu is %u, expected %u", name, i,
				 got->pixels[i], want->pixels[i]);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sniffs_by_magic(void **state)
{
	(void)state;
	static const unsigned char png[] = {0x89, 'P', 'N', 'G', '\r', '\n',
					    0x1a, '\n', 0};
	static const unsigned char jpg[] = {0xff, 0xd8, 0xff, 0xe0};
	assert_int_equal(image_sniff(png, 8), IMAGE_FORMAT_PNG);
	assert_int_equal(image_sniff(png, 7), IMAGE_FORMAT_UNKNOWN);
	assert_int_equal(image_sniff(jpg, 4), IMAGE_FORMAT_JPEG);
	assert_int_equal(image_sniff(jpg, 2), IMAGE_FORMAT_UNKNOWN);
	assert_int_equal(image_sniff("GIF89a", 6), IMAGE_FORMAT_UNKNOWN);
	assert_int_equal(image_sniff(NULL, 0), IMAGE_FORMAT_UNKNOWN);
	assert_string_equal(image_format_name(IMAGE_FORMAT_PNG), "png");
	assert_string_equal(image_format_name(IMAGE_FORMAT_JPEG), "jpeg");
}

static void decodes_every_png_variant(void **state)
{
	(void)state;
	static const char *const cases[][2] = {
		{"gray8.png", "gray8.pgm"},
		{"gray8_adam7.png", "gray8_adam7.pgm"},
		{"gray1.png", "gray1.pgm"},
		{"gray2.png", "gray2.pgm"},
		{"gray4.png", "gray4.pgm"},
		{"gray16.png", "gray16.pgm"},
		{"gray16_adam7.png", "gray16_adam7.pgm"},
		{"gray8_trns.png", "gray8_trns.pgm"},
		{"gray_alpha8.png", "gray_alpha8.pgm"},
		{"gray_alpha16.png", "gray_alpha16.pgm"},
		{"rgb8.png", "rgb8.ppm"},
		{"rgb8_adam7.png", "rgb8_adam7.ppm"},
		{"rgb16.png", "rgb16.ppm"},
		{"rgba8.png", "rgba8.ppm"},
		{"rgba8_adam7.png", "rgba8_adam7.ppm"},
		{"rgba16.png", "rgba16.ppm"},
		{"palette4.png", "palette4.ppm"},
		{"palette8_trns.png", "palette8_trns.ppm"},
		{"palette2_adam7.png", "palette2_adam7.ppm"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		image *got = decode_fixture(cases[i][0]);
		image *want = read_pnm(cases[i][1]);
		assert_same_image(got, want, cases[i][0]);
		image_destroy(got);
		image_destroy(want);
	}
}

static void decodes_jpeg_like_pillow(void **state)
{
	(void)state;
	static const char *const cases[][2] = {
		{"rgb_q90.jpg", "rgb_q90.ppm"},
		{"rgb_444.jpg", "rgb_444.ppm"},
		{"rgb_progressive.jpg", "rgb_progressive.ppm"},
		{"gray_q90.jpg", "gray_q90.pgm"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		image *got = decode_fixture(cases[i][0]);
		image *want = read_pnm(cases[i][1]);
		assert_same_image(got, want, cases[i][0]);
		image_destroy(got);
		image_destroy(want);
	}
}

static void rejects_cmyk_jpeg(void **state)
{
	(void)state;
	size_t len = 0;
	unsigned char *b = slurp("cmyk.jpg", &len);
	image *img = NULL;
	assert_int_equal(image_decode(b, len, 0, &img), DF_ENOTSUP);
	assert_non_null(strstr(df_err_msg(), "CMYK"));
	assert_null(img);
	free(b);
}

static void rejects_garbage(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"", "hello", "GIF89a\x01\x00\x01\x00", "<html></html>",
		"\x89PNX\r\n\x1a\n", "\xff\xd8",
	};
	image *img = NULL;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(image_decode(bad[i], strlen(bad[i]), 0, &img),
				 DF_EINVAL);
		assert_string_equal(df_err_msg(), "not a PNG or JPEG image");
		assert_null(img);
	}
	assert_int_equal(image_decode(NULL, 0, 0, &img), DF_EINVAL);
	/* Right magic, garbage after it. */
	unsigned char junk[64];
	for (size_t i = 0; i < sizeof junk; i++)
		junk[i] = (unsigned char)(i * 37 + 11);
	memcpy(junk, "\x89PNG\r\n\x1a\n", 8);
	assert_int_equal(image_decode(junk, sizeof junk, 0, &img), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "PNG"));
	memcpy(junk, "\xff\xd8\xff", 3);
	assert_int_equal(image_decode(junk, sizeof junk, 0, &img), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "JPEG"));
	assert_null(img);
}

static void check_every_truncation(const char *name)
{
	size_t len = 0;
	unsigned char *b = slurp(name, &len);
	for (size_t cut = 0; cut < len; cut++) {
		/* exact-size copy so ASan sees any read past the end */
		unsigned char *c = malloc(cut ? cut : 1);
		memcpy(c, b, cut);
		image *img = NULL;
		df_err err = image_decode(c, cut, 0, &img);
		if (err == DF_OK)
			fail_msg("%s cut to %zu of %zu bytes was accepted", name,
				 cut, len);
		assert_null(img);
		free(c);
	}
	free(b);
}

static void rejects_every_truncation(void **state)
{
	(void)state;
	check_every_truncation("gray8.png");
	check_every_truncation("rgba8_adam7.png");
	check_every_truncation("gray_q90.jpg");
	check_every_truncation("rgb_q90.jpg");
	check_every_truncation("rgb_progressive.jpg");
}

/* Flipping any single byte must give a clean error or a sane image. PNG
 * CRCs catch every flip outside the one ancillary (tEXt) chunk, whose
 * damage libpng may ignore; JPEG has no checksum. */
static void survives_every_single_byte_corruption(void **state)
{
	(void)state;
	static const char *const names[] = {"palette4.png", "rgb_q90.jpg",
					    "rgb_progressive.jpg"};
	for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
		size_t len = 0;
		unsigned char *b = slurp(names[k], &len);
		int is_png = strstr(names[k], ".png") != NULL;
		size_t text_lo = 0, text_hi = 0; /* tEXt type .. CRC */
		for (size_t i = 8; is_png && i + 4 <= len; i++)
			if (memcmp(b + i, "tEXt", 4) == 0) {
				text_lo = i;
				text_hi = i + 4 + ((size_t)b[i - 1] |
						   (size_t)b[i - 2] << 8) + 4;
				break;
			}
		int failures = 0;
		for (size_t i = 0; i < len; i++) {
			unsigned char *c = malloc(len);
			memcpy(c, b, len);
			c[i] ^= (unsigned char)((0x55 + i) | 1);
			image *img = NULL;
			df_err err = image_decode(c, len, 0, &img);
			if (err == DF_OK) {
				assert_true(img->width >= 1 && img->height >= 1);
				assert_true(img->channels == 1 ||
					    img->channels == 3);
				image_destroy(img);
				if (is_png && (i < text_lo || i >= text_hi))
					fail_msg("%s: flip at %zu accepted",
						 names[k], i);
			} else {
				assert_null(img);
				failures++;
			}
			free(c);
		}
		assert_true(failures > 0);
		free(b);
	}
}

static void put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

/* A PNG with a valid IHDR claiming w x h and nothing else but IEND. */
static size_t make_png_header(unsigned char *b, uint32_t w, uint32_t h,
			      int depth, int ctype)
{
	memcpy(b, "\x89PNG\r\n\x1a\n", 8);
	put_be32(b + 8, 13);
	memcpy(b + 12, "IHDR", 4);
	put_be32(b + 16, w);
	put_be32(b + 20, h);
	b[24] = (unsigned char)depth;
	b[25] = (unsigned char)ctype;
	b[26] = b[27] = b[28] = 0;
	put_be32(b + 29, (uint32_t)crc32(0, b + 12, 17));
	put_be32(b + 33, 0);
	memcpy(b + 37, "IEND", 4);
	put_be32(b + 41, (uint32_t)crc32(0, b + 37, 4));
	return 45;
}

static void rejects_huge_dimensions_from_header(void **state)
{
	(void)state;
	unsigned char b[64];
	image *img = NULL;
	double t0 = now_s();
	size_t n = make_png_header(b, 100000, 100000, 8, 0);
	assert_int_equal(image_decode(b, n, 0, &img), DF_ETOOBIG);
	assert_non_null(strstr(df_err_msg(), "100000x100000"));
	n = make_png_header(b, 70000, 70000, 16, 6);
	assert_int_equal(image_decode(b, n, 0, &img), DF_ETOOBIG);
	n = make_png_header(b, 0x7fffffff, 1, 8, 2);
	assert_int_equal(image_decode(b, n, 0, &img), DF_ETOOBIG);
	n = make_png_header(b, 5000, 5000, 8, 0);
	assert_int_equal(image_decode(b, n, 0, &img), DF_ETOOBIG);
	/* Within the limit, the missing IDAT is what fails. */
	n = make_png_header(b, 4000, 4000, 8, 0);
	assert_int_equal(image_decode(b, n, 0, &img), DF_EINVAL);

	/* JPEG: patch the SOF0 frame size of a real file to 65000 x 65000. */
	size_t len = 0;
	unsigned char *j = slurp("rgb_q90.jpg", &len);
	size_t sof = 0;
	for (size_t i = 2; i + 9 < len; i++)
		if (j[i] == 0xff && j[i + 1] == 0xc0) {
			sof = i;
			break;
		}
	assert_true(sof > 0);
	j[sof + 5] = 0xfd; /* height 65000 = 0xfde8 */
	j[sof + 6] = 0xe8;
	j[sof + 7] = 0xfd;
	j[sof + 8] = 0xe8;
	assert_int_equal(image_decode(j, len, 0, &img), DF_ETOOBIG);
	assert_non_null(strstr(df_err_msg(), "65000x65000"));
	double dt = now_s() - t0;
	if (dt > 0.5)
		fail_msg("rejecting oversized headers took %.3f s", dt);
	assert_null(img);
	free(j);
}

/* Found by fuzz_image: a tEXt chunk claiming 1.8 GB made libpng allocate
 * that much (its size check is only a warning by default). Ancillary
 * chunks over the limit must fail before any allocation. */
static void rejects_oversized_chunks(void **state)
{
	(void)state;
	static const char *const types[] = {"tEXt", "zTXt", "iCCP", "sPLT",
					    "prVt"};
	size_t len = 0;
	unsigned char *b = slurp("gray8.png", &len);
	for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
		/* signature + IHDR (33 bytes), then the bogus chunk */
		unsigned char *c = malloc(len + 20);
		memcpy(c, b, 33);
		put_be32(c + 33, 0x6f6d6d65);
		memcpy(c + 37, types[t], 4);
		memset(c + 41, 'x', 12);
		memcpy(c + 53, b + 33, len - 33);
		image *img = NULL;
		df_err err = image_decode(c, len + 20, 0, &img);
		if (err != DF_ETOOBIG)
			fail_msg("%s chunk of 1.8 GB: %s (%s)", types[t],
				 df_err_str(err), df_err_msg());
		assert_null(img);
		free(c);
	}
	free(b);
}

static void honours_max_pixels(void **state)
{
	(void)state;
	size_t len = 0;
	image *img = NULL;
	unsigned char *b = slurp("gray8_adam7.png", &len); /* 13 x 7 = 91 */
	assert_int_equal(image_decode(b, len, 90, &img), DF_ETOOBIG);
	assert_null(img);
	assert_int_equal(image_decode(b, len, 91, &img), DF_OK);
	image_destroy(img);
	free(b);
	img = NULL;
	b = slurp("rgb_progressive.jpg", &len); /* 40 x 30 = 1200 */
	assert_int_equal(image_decode(b, len, 1199, &img), DF_ETOOBIG);
	assert_null(img);
	assert_int_equal(image_decode(b, len, 1200, &img), DF_OK);
	assert_int_equal(img->width, 40);
	assert_int_equal(img->height, 30);
	image_destroy(img);
	free(b);
}

static const model_input_spec fmnist_spec = {
	.color = IMAGE_COLOR_GRAY,
	.height = 28,
	.width = 28,
	.mean = {0.2860f},
	.std = {0.3530f},
};

static void assert_tensor_bits(const tensor *got, const char *npy)
{
	tensor *want = NULL;
	char path[1024];
	snprintf(path, sizeof path, "%s", fixture(npy));
	assert_int_equal(npy_read_file(path, &want), DF_OK);
	if (!tensor_same_shape(got, want))
		fail_msg("%s: shape differs", npy);
	const float *g = tensor_f32(got), *w = tensor_f32(want);
	for (size_t i = 0; i < want->numel; i++)
		if (memcmp(&g[i], &w[i], sizeof(float)) != 0)
			fail_msg("%s: element %zu is %.9g, expected %.9g", npy, i,
				 (double)g[i], (double)w[i]);
	tensor_destroy(want);
}

static void fmnist_png_matches_pytorch_bit_for_bit(void **state)
{
	(void)state;
	image *img = decode_fixture("fmnist_t10k_0.png");
	assert_int_equal(img->channels, 1);
	tensor *t = NULL;
	assert_int_equal(image_to_tensor(img, &fmnist_spec, &t), DF_OK);
	assert_int_equal(t->ndim, 4);
	assert_int_equal(t->dims[1], 1);
	assert_tensor_bits(t, "pre_fmnist_t10k_0.npy");
	tensor_destroy(t);
	image_destroy(img);

	/* All 256 gray levels, against PyTorch's own arithmetic. */
	assert_int_equal(image_create(16, 16, 1, &img), DF_OK);
	for (int v = 0; v < 256; v++)
		img->pixels[v] = (uint8_t)v;
	model_input_spec s = fmnist_spec;
	s.height = s.width = 16;
	assert_int_equal(image_to_tensor(img, &s, &t), DF_OK);
	tensor *lut = NULL;
	char path[1024];
	snprintf(path, sizeof path, "%s", fixture("pre_fmnist_lut.npy"));
	assert_int_equal(npy_read_file(path, &lut), DF_OK);
	assert_int_equal(lut->numel, 256);
	assert_memory_equal(tensor_f32(t), tensor_f32(lut), 256 * sizeof(float));
	tensor_destroy(lut);
	tensor_destroy(t);
	image_destroy(img);
}

static void resizes_and_converts_like_pillow_torchvision(void **state)
{
	(void)state;
	static const struct {
		const char *src, *ref;
		image_color color;
		int h, w;
		float mean[3], std[3];
	} cases[] = {
		{"photo_45x37.png", "pre_photo_gray28.npy", IMAGE_COLOR_GRAY, 28,
		 28, {0.2860f}, {0.3530f}},
		{"photo_45x37.png", "pre_photo_rgb24x32.npy", IMAGE_COLOR_RGB, 24,
		 32, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}},
		{"wide_100x20.png", "pre_wide_gray28.npy", IMAGE_COLOR_GRAY, 28,
		 28, {0.2860f}, {0.3530f}},
		{"gray8.png", "pre_gray8_gray28.npy", IMAGE_COLOR_GRAY, 28, 28,
		 {0.2860f}, {0.3530f}},
		{"gray8.png", "pre_gray8_rgb9x5.npy", IMAGE_COLOR_RGB, 9, 5,
		 {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}},
		{"palette4.png", "pre_palette4_gray4x20.npy", IMAGE_COLOR_GRAY, 4,
		 20, {0.5f}, {0.25f}},
		{"rgb_q90.jpg", "pre_rgb_q90_gray28.npy", IMAGE_COLOR_GRAY, 28,
		 28, {0.2860f}, {0.3530f}},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		model_input_spec s = {.color = cases[i].color,
				      .height = cases[i].h,
				      .width = cases[i].w};
		memcpy(s.mean, cases[i].mean, sizeof s.mean);
		memcpy(s.std, cases[i].std, sizeof s.std);
		image *img = decode_fixture(cases[i].src);
		tensor *t = NULL;
		assert_int_equal(image_to_tensor(img, &s, &t), DF_OK);
		assert_tensor_bits(t, cases[i].ref);
		tensor_destroy(t);
		image_destroy(img);
	}
}

static void converts_colours_as_documented(void **state)
{
	(void)state;
	image *img = NULL, *out = NULL;
	assert_int_equal(image_create(4, 1, 3, &img), DF_OK);
	static const uint8_t rgb[12] = {255, 0, 0, 0, 255, 0,
					0, 0, 255, 255, 255, 255};
	memcpy(img->pixels, rgb, sizeof rgb);
	assert_int_equal(image_convert_resize(img, IMAGE_COLOR_GRAY, 4, 1, &out),
			 DF_OK);
	/* round(0.299 * 255), round(0.587 * 255), round(0.114 * 255), 255 */
	assert_int_equal(out->pixels[0], 76);
	assert_int_equal(out->pixels[1], 150);
	assert_int_equal(out->pixels[2], 29);
	assert_int_equal(out->pixels[3], 255);
	image_destroy(out);
	image_destroy(img);

	assert_int_equal(image_create(2, 1, 1, &img), DF_OK);
	img->pixels[0] = 7;
	img->pixels[1] = 200;
	assert_int_equal(image_convert_resize(img, IMAGE_COLOR_RGB, 2, 1, &out),
			 DF_OK);
	static const uint8_t want[6] = {7, 7, 7, 200, 200, 200};
	assert_memory_equal(out->pixels, want, sizeof want);
	image_destroy(out);

	/* A constant image stays constant through any resize. */
	img->pixels[0] = img->pixels[1] = 93;
	assert_int_equal(image_convert_resize(img, IMAGE_COLOR_GRAY, 37, 3, &out),
			 DF_OK);
	for (int i = 0; i < 37 * 3; i++)
		assert_int_equal(out->pixels[i], 93);
	image_destroy(out);
	image_destroy(img);
}

static void rejects_bad_specs_and_tensors(void **state)
{
	(void)state;
	image *img = NULL;
	tensor *t = NULL;
	assert_int_equal(image_create(28, 28, 1, &img), DF_OK);
	model_input_spec s = fmnist_spec;
	s.std[0] = 0;
	assert_int_equal(image_to_tensor(img, &s, &t), DF_EINVAL);
	assert_null(t);
	s = fmnist_spec;
	s.width = 0;
	assert_int_equal(image_to_tensor(img, &s, &t), DF_EINVAL);
	s.width = IMAGE_MAX_INPUT_SIDE + 1;
	assert_int_equal(image_to_tensor(img, &s, &t), DF_EINVAL);
	s = fmnist_spec;
	s.color = (image_color)7;
	assert_int_equal(image_to_tensor(img, &s, &t), DF_EINVAL);
	assert_null(t);

	/* Wrong destination shape: left untouched. */
	int64_t dims[4] = {1, 3, 28, 28};
	assert_int_equal(tensor_create(TENSOR_F32, 4, dims, &t), DF_OK);
	tensor_f32(t)[0] = 42.0f;
	assert_int_equal(image_fill_tensor(img, &fmnist_spec, t), DF_EINVAL);
	assert_true(tensor_f32(t)[0] == 42.0f);
	tensor_destroy(t);
	dims[1] = 1;
	assert_int_equal(tensor_create(TENSOR_F32, 3, dims + 1, &t), DF_OK);
	assert_int_equal(image_fill_tensor(img, &fmnist_spec, t), DF_OK);
	assert_true(tensor_f32(t)[0] == (0.0f - 0.2860f) / 0.3530f);
	tensor_destroy(t);

	image bad = {.width = 0, .height = 5, .channels = 1,
		     .pixels = img->pixels};
	t = NULL;
	assert_int_equal(image_to_tensor(&bad, &fmnist_spec, &t), DF_EINVAL);
	bad.width = 5;
	bad.channels = 2;
	assert_int_equal(image_to_tensor(&bad, &fmnist_spec, &t), DF_EINVAL);
	assert_null(t);
	image_destroy(img);

	assert_int_equal(image_create(0, 1, 1, &img), DF_EINVAL);
	assert_int_equal(image_create(1, 1, 4, &img), DF_EINVAL);
	image_destroy(NULL);

	image_color c;
	assert_int_equal(image_color_parse("grayscale", &c), DF_OK);
	assert_int_equal(c, IMAGE_COLOR_GRAY);
	assert_int_equal(image_color_parse("rgb", &c), DF_OK);
	assert_int_equal(c, IMAGE_COLOR_RGB);
	assert_int_equal(image_color_parse("RGBA", &c), DF_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sniffs_by_magic),
		cmocka_unit_test(decodes_every_png_variant),
		cmocka_unit_test(decodes_jpeg_like_pillow),
		cmocka_unit_test(rejects_cmyk_jpeg),
		cmocka_unit_test(rejects_garbage),
		cmocka_unit_test(rejects_every_truncation),
		cmocka_unit_test(survives_every_single_byte_corruption),
		cmocka_unit_test(rejects_huge_dimensions_from_header),
		cmocka_unit_test(rejects_oversized_chunks),
		cmocka_unit_test(honours_max_pixels),
		cmocka_unit_test(fmnist_png_matches_pytorch_bit_for_bit),
		cmocka_unit_test(resizes_and_converts_like_pillow_torchvision),
		cmocka_unit_test(converts_colours_as_documented),
		cmocka_unit_test(rejects_bad_specs_and_tensors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
