/*
 * image.c - PNG (libpng) and JPEG (libjpeg-turbo) decoding from memory, and
 * the Pillow/torchvision-compatible preprocessing of image.h.
 *
 * Both libraries report fatal errors by calling an error function that must
 * not return; ours record the message and longjmp back to the decoder, which
 * frees everything and returns DF_EINVAL. Objects changed between setjmp()
 * and a possible longjmp() are volatile-qualified or live in memory the
 * jump does not touch. Warnings never reach stderr.
 */
#include "image.h"

#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

/* Ancillary chunks larger than this are refused by libpng (text, ICC). */
#define PNG_MAX_CHUNK_BYTES ((png_alloc_size_t)8 << 20)
/* Ancillary chunks kept at most (sPLT, tEXt, unknown), against chunk floods. */
#define PNG_MAX_CACHED_CHUNKS 1000
/* Progressive JPEG scans allowed; real encoders use about ten. A crafted
 * file with thousands of tiny scans would otherwise burn CPU. */
#define JPEG_MAX_SCANS 500

static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a,
				     '\n'};

image_format image_sniff(const void *buf, size_t len)
{
	const uint8_t *b = buf;
	if (!buf)
		return IMAGE_FORMAT_UNKNOWN;
	if (len >= sizeof png_magic && memcmp(b, png_magic, sizeof png_magic) == 0)
		return IMAGE_FORMAT_PNG;
	if (len >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
		return IMAGE_FORMAT_JPEG;
	return IMAGE_FORMAT_UNKNOWN;
}

const char *image_format_name(image_format fmt)
{
	switch (fmt) {
	case IMAGE_FORMAT_PNG:
		return "png";
	case IMAGE_FORMAT_JPEG:
		return "jpeg";
	default:
		return "unknown";
	}
}

df_err image_create(int width, int height, int channels, image **out)
{
	if (width < 1 || height < 1 || (channels != 1 && channels != 3))
		return df_errf(DF_EINVAL, "image: bad size %dx%dx%d", width,
			       height, channels);
	size_t n = (size_t)width * (size_t)height;
	if (n > SIZE_MAX / 3)
		return df_errf(DF_ETOOBIG, "image: %dx%d is too large", width,
			       height);
	n *= (size_t)channels;
	image *img = malloc(sizeof *img);
	if (!img)
		return DF_ENOMEM;
	img->pixels = calloc(n, 1);
	if (!img->pixels) {
		free(img);
		return DF_ENOMEM;
	}
	img->width = width;
	img->height = height;
	img->channels = channels;
	*out = img;
	return DF_OK;
}

void image_destroy(image *img)
{
	if (!img)
		return;
	free(img->pixels);
	free(img);
}

static df_err check_pixels(const char *fmt, uint64_t w, uint64_t h,
			   size_t max_pixels)
{
	if (w == 0 || h == 0)
		return df_errf(DF_EINVAL, "%s: image has zero width or height",
			       fmt);
	if (w > INT_MAX || h > INT_MAX || w * h > max_pixels ||
	    w * h > SIZE_MAX / 8)
		return df_errf(DF_ETOOBIG,
			       "%s: %llux%llu image is above the limit of %zu "
			       "pixels",
			       fmt, (unsigned long long)w,
			       (unsigned long long)h, max_pixels);
	return DF_OK;
}

/* ---- PNG ---------------------------------------------------------------- */

typedef struct png_job {
	const uint8_t *data;
	size_t len, pos;
	df_err code; /* DF_OK = report DF_EINVAL */
	char msg[200];
} png_job;

static void png_read_cb(png_structp png, png_bytep dst, size_t n)
{
	png_job *job = png_get_io_ptr(png);
	if (n > job->len - job->pos)
		png_error(png, "truncated PNG data");
	memcpy(dst, job->data + job->pos, n);
	job->pos += n;
}

static void png_error_cb(png_structp png, png_const_charp msg)
{
	png_job *job = png_get_error_ptr(png);
	snprintf(job->msg, sizeof job->msg, "%s", msg ? msg : "error");
	png_longjmp(png, 1);
}

/* Warnings are dropped, except libpng's "benign" size-limit error, which
 * by default is only a warning followed by the allocation it warns about:
 * that one becomes fatal. */
static void png_warning_cb(png_structp png, png_const_charp msg)
{
	if (msg && strstr(msg, "too large")) {
		png_job *job = png_get_error_ptr(png);
		job->code = DF_ETOOBIG;
		png_error(png, msg);
	}
}

/* Ancillary chunks we never use: discarded unread (no buffer is allocated
 * for them), so their size and content cannot matter. */
static const png_byte png_unused_chunks[] = {
	'b', 'K', 'G', 'D', '\0', 'c', 'H', 'R', 'M', '\0',
	'e', 'X', 'I', 'f', '\0', 'g', 'A', 'M', 'A', '\0',
	'h', 'I', 'S', 'T', '\0', 'i', 'C', 'C', 'P', '\0',
	'i', 'T', 'X', 't', '\0', 'o', 'F', 'F', 's', '\0',
	'p', 'C', 'A', 'L', '\0', 'p', 'H', 'Y', 's', '\0',
	's', 'B', 'I', 'T', '\0', 's', 'C', 'A', 'L', '\0',
	's', 'P', 'L', 'T', '\0', 's', 'R', 'G', 'B', '\0',
	't', 'E', 'X', 't', '\0', 't', 'I', 'M', 'E', '\0',
	'z', 'T', 'X', 't', '\0',
};

/* Reads width and height from the IHDR chunk that must follow the
 * signature, without libpng, so oversized images are refused at once. */
static df_err png_peek_size(const uint8_t *b, size_t len, size_t max_pixels)
{
	if (len < 24 || memcmp(b + 12, "IHDR", 4) != 0)
		return DF_OK; /* libpng reports the precise problem */
	uint32_t w = (uint32_t)b[16] << 24 | (uint32_t)b[17] << 16 |
		     (uint32_t)b[18] << 8 | b[19];
	uint32_t h = (uint32_t)b[20] << 24 | (uint32_t)b[21] << 16 |
		     (uint32_t)b[22] << 8 | b[23];
	if (w == 0 || h == 0)
		return DF_OK;
	return check_pixels("PNG", w, h, max_pixels);
}

/* Drops the last channel (alpha) of each pixel in place: n pixels of
 * channels+1 bytes become n pixels of `channels` bytes. */
static void drop_alpha(uint8_t *p, size_t n, int channels)
{
	size_t src = 0, dst = 0;
	for (size_t i = 0; i < n; i++) {
		for (int c = 0; c < channels; c++)
			p[dst++] = p[src++];
		src++;
	}
}

static df_err decode_png(const uint8_t *data, size_t len, size_t max_pixels,
			 image **out)
{
	df_err err = png_peek_size(data, len, max_pixels);
	if (err)
		return err;
	png_job job = {.data = data, .len = len, .pos = 0, .code = DF_OK,
		       .msg = ""};
	png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &job,
						 png_error_cb, png_warning_cb);
	if (!png)
		return DF_ENOMEM;
	png_infop info = png_create_info_struct(png);
	if (!info) {
		png_destroy_read_struct(&png, NULL, NULL);
		return DF_ENOMEM;
	}
	image *volatile img = NULL;
	png_bytep *volatile rows = NULL;
	volatile df_err verr = DF_OK;

	if (setjmp(png_jmpbuf(png))) {
		if (verr == DF_OK)
			verr = job.code ? df_errf(job.code, "PNG: %s", job.msg)
					: df_errf(DF_EINVAL, "corrupt PNG: %s",
						  job.msg);
		goto out;
	}
	png_uint_32 lim = max_pixels > 0x7fffffffu ? 0x7fffffffu
						   : (png_uint_32)max_pixels;
	png_set_user_limits(png, lim, lim);
	png_set_chunk_malloc_max(png, PNG_MAX_CHUNK_BYTES);
	png_set_chunk_cache_max(png, PNG_MAX_CACHED_CHUNKS);
	png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, 0);
	png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER,
				    png_unused_chunks,
				    (int)(sizeof png_unused_chunks / 5));
	png_set_read_fn(png, &job, png_read_cb);
	png_read_info(png, info);

	png_uint_32 w = 0, h = 0;
	int depth = 0, ctype = 0;
	png_get_IHDR(png, info, &w, &h, &depth, &ctype, NULL, NULL, NULL);
	verr = check_pixels("PNG", w, h, max_pixels);
	if (verr)
		goto out;
	png_set_expand(png); /* palette -> RGB, gray 1/2/4 -> 8, tRNS -> alpha */
	if (depth == 16)
		png_set_scale_16(png);
	png_set_interlace_handling(png);
	png_read_update_info(png, info);

	int pch = png_get_channels(png, info);
	int ch = (pch == 1 || pch == 2) ? 1 : 3;
	if (pch < 1 || pch > 4 || png_get_bit_depth(png, info) != 8 ||
	    png_get_rowbytes(png, info) != (size_t)w * (size_t)pch) {
		verr = df_errf(DF_ENOTSUP, "PNG: unexpected decoded layout "
				"(%d channels)", pch);
		goto out;
	}
	/* Decode with libpng's channel count; alpha is dropped afterwards
	 * in place, so allocate for the larger layout. */
	image *im = malloc(sizeof *im);
	if (!im) {
		verr = DF_ENOMEM;
		goto out;
	}
	im->width = (int)w;
	im->height = (int)h;
	im->channels = ch;
	im->pixels = malloc((size_t)w * h * (size_t)pch);
	if (!im->pixels) {
		free(im);
		verr = DF_ENOMEM;
		goto out;
	}
	img = im;
	png_bytep *r = malloc((size_t)h * sizeof *r);
	if (!r) {
		verr = DF_ENOMEM;
		goto out;
	}
	rows = r;
	for (png_uint_32 y = 0; y < h; y++)
		r[y] = img->pixels + (size_t)y * w * (size_t)pch;
	png_read_image(png, r);
	png_read_end(png, NULL);
	if (pch == 2 || pch == 4)
		drop_alpha(img->pixels, (size_t)w * h, ch);
out:
	png_destroy_read_struct(&png, &info, NULL);
	free(rows);
	if (verr) {
		image_destroy(img);
		return verr;
	}
	*out = img;
	return DF_OK;
}

/* ---- JPEG --------------------------------------------------------------- */

typedef struct jpeg_job {
	struct jpeg_error_mgr pub; /* first: cinfo->err points here */
	jmp_buf jmp;
	df_err code;               /* error to report after the jump */
	char msg[JMSG_LENGTH_MAX];
} jpeg_job;

static void jpeg_fail(j_common_ptr cinfo, df_err code)
{
	jpeg_job *job = (jpeg_job *)cinfo->err;
	job->code = code;
	(*cinfo->err->format_message)(cinfo, job->msg);
	longjmp(job->jmp, 1);
}

static void jpeg_error_exit_cb(j_common_ptr cinfo)
{
	jpeg_fail(cinfo, DF_EINVAL);
}

/* Warnings that only mean "unusual but intact"; every other warning means
 * damaged or truncated data and is fatal. */
static int jpeg_benign_warning(int code)
{
	return code == JWRN_EXTRANEOUS_DATA || code == JWRN_ADOBE_XFORM ||
	       code == JWRN_JFIF_MAJOR || code == JWRN_BOGUS_ICC;
}

static void jpeg_emit_message_cb(j_common_ptr cinfo, int level)
{
	if (level < 0 && !jpeg_benign_warning(cinfo->err->msg_code))
		jpeg_fail(cinfo, DF_EINVAL);
}

static void jpeg_output_message_cb(j_common_ptr cinfo)
{
	(void)cinfo;
}

static void jpeg_progress_cb(j_common_ptr cinfo)
{
	if (!cinfo->is_decompressor)
		return;
	j_decompress_ptr d = (j_decompress_ptr)cinfo;
	if (d->input_scan_number > JPEG_MAX_SCANS) {
		jpeg_job *job = (jpeg_job *)cinfo->err;
		job->code = DF_ETOOBIG;
		snprintf(job->msg, sizeof job->msg,
			 "more than %d progressive scans", JPEG_MAX_SCANS);
		longjmp(job->jmp, 1);
	}
}

static df_err decode_jpeg(const uint8_t *data, size_t len, size_t max_pixels,
			  image **out)
{
	struct jpeg_decompress_struct cinfo;
	struct jpeg_progress_mgr progress;
	jpeg_job job;
	image *volatile img = NULL;
	volatile df_err verr = DF_OK;

	memset(&cinfo, 0, sizeof cinfo);
	memset(&job, 0, sizeof job);
	cinfo.err = jpeg_std_error(&job.pub);
	job.pub.error_exit = jpeg_error_exit_cb;
	job.pub.emit_message = jpeg_emit_message_cb;
	job.pub.output_message = jpeg_output_message_cb;
	if (setjmp(job.jmp)) {
		if (verr == DF_OK)
			verr = df_errf(job.code ? job.code : DF_EINVAL,
				       "corrupt JPEG: %s", job.msg);
		goto out;
	}
	jpeg_create_decompress(&cinfo);
	memset(&progress, 0, sizeof progress);
	progress.progress_monitor = jpeg_progress_cb;
	cinfo.progress = &progress;
	jpeg_mem_src(&cinfo, data, (unsigned long)len);
	jpeg_read_header(&cinfo, TRUE);
	verr = check_pixels("JPEG", cinfo.image_width, cinfo.image_height,
			    max_pixels);
	if (verr)
		goto out;
	switch (cinfo.jpeg_color_space) {
	case JCS_GRAYSCALE:
		cinfo.out_color_space = JCS_GRAYSCALE;
		break;
	case JCS_YCbCr:
	case JCS_RGB:
		cinfo.out_color_space = JCS_RGB;
		break;
	default:
		verr = df_errf(DF_ENOTSUP,
			       "JPEG: colour space %d (CMYK/YCCK) is not "
			       "supported",
			       (int)cinfo.jpeg_color_space);
		goto out;
	}
	jpeg_start_decompress(&cinfo);
	int ch = cinfo.output_components;
	if ((ch != 1 && ch != 3) || cinfo.output_width != cinfo.image_width ||
	    cinfo.output_height != cinfo.image_height) {
		verr = df_errf(DF_ENOTSUP, "JPEG: unexpected output layout");
		goto out;
	}
	image *im = NULL;
	verr = image_create((int)cinfo.output_width, (int)cinfo.output_height,
			    ch, &im);
	if (verr)
		goto out;
	img = im;
	size_t stride = (size_t)cinfo.output_width * (size_t)ch;
	while (cinfo.output_scanline < cinfo.output_height) {
		JSAMPROW row = img->pixels + stride * cinfo.output_scanline;
		if (jpeg_read_scanlines(&cinfo, &row, 1) != 1) {
			verr = df_errf(DF_EINVAL, "corrupt JPEG: no progress "
				       "reading row %u",
				       cinfo.output_scanline);
			goto out;
		}
	}
	jpeg_finish_decompress(&cinfo);
out:
	jpeg_destroy_decompress(&cinfo);
	if (verr) {
		image_destroy(img);
		return verr;
	}
	*out = img;
	return DF_OK;
}

df_err image_decode(const void *buf, size_t len, size_t max_pixels,
		    image **out)
{
	if (max_pixels == 0)
		max_pixels = IMAGE_DEFAULT_MAX_PIXELS;
	switch (image_sniff(buf, len)) {
	case IMAGE_FORMAT_PNG:
		return decode_png(buf, len, max_pixels, out);
	case IMAGE_FORMAT_JPEG:
		return decode_jpeg(buf, len, max_pixels, out);
	default:
		return df_errf(DF_EINVAL, "not a PNG or JPEG image");
	}
}

/* ---- preprocessing ------------------------------------------------------ */

df_err image_color_parse(const char *s, image_color *out)
{
	if (s && (strcmp(s, "grayscale") == 0 || strcmp(s, "gray") == 0)) {
		*out = IMAGE_COLOR_GRAY;
		return DF_OK;
	}
	if (s && strcmp(s, "rgb") == 0) {
		*out = IMAGE_COLOR_RGB;
		return DF_OK;
	}
	return df_errf(DF_EINVAL, "color '%s' is not 'grayscale' or 'rgb'",
		       s ? s : "(null)");
}

const char *image_color_name(image_color color)
{
	return color == IMAGE_COLOR_RGB ? "rgb" : "grayscale";
}

int model_input_channels(const model_input_spec *spec)
{
	return spec->color == IMAGE_COLOR_RGB ? 3 : 1;
}

static df_err check_image(const image *img)
{
	if (!img || !img->pixels || img->width < 1 || img->height < 1 ||
	    (img->channels != 1 && img->channels != 3))
		return df_errf(DF_EINVAL, "image: not a valid gray or RGB image");
	return DF_OK;
}

/* Pillow's fixed-point precision for 8-bit resampling. */
#define RS_PRECISION_BITS (32 - 8 - 2)

/* Coefficients of one resampling axis, as Pillow's precompute_coeffs() and
 * normalize_coeffs_8bpc() compute them, but packed: output i reads source
 * samples start[i] .. start[i] + count[i] - 1 with weights
 * k[off[i] .. off[i] + count[i]). */
typedef struct rs_axis {
	int *start, *count;
	size_t *off;
	int32_t *k;
} rs_axis;

static void rs_axis_free(rs_axis *a)
{
	free(a->start);
	free(a->count);
	free(a->off);
	free(a->k);
}

static double rs_bilinear(double x)
{
	if (x < 0.0)
		x = -x;
	return x < 1.0 ? 1.0 - x : 0.0;
}

static df_err rs_axis_init(int in_size, int out_size, rs_axis *a)
{
	df_err err = DF_OK;
	memset(a, 0, sizeof *a);
	double scale = (double)(float)in_size / out_size;
	double filterscale = scale < 1.0 ? 1.0 : scale;
	double support = 1.0 * filterscale;
	double ss = 1.0 / filterscale;
	a->start = malloc((size_t)out_size * sizeof *a->start);
	a->count = malloc((size_t)out_size * sizeof *a->count);
	a->off = malloc((size_t)out_size * sizeof *a->off);
	if (!a->start || !a->count || !a->off) {
		err = DF_ENOMEM;
		goto out;
	}
	size_t total = 0;
	for (int i = 0; i < out_size; i++) {
		double center = (i + 0.5) * scale;
		int xmin = (int)(center - support + 0.5);
		if (xmin < 0)
			xmin = 0;
		int xmax = (int)(center + support + 0.5);
		if (xmax > in_size)
			xmax = in_size;
		a->start[i] = xmin;
		a->count[i] = xmax > xmin ? xmax - xmin : 0;
		a->off[i] = total;
		total += (size_t)a->count[i];
	}
	a->k = malloc((total ? total : 1) * sizeof *a->k);
	if (!a->k) {
		err = DF_ENOMEM;
		goto out;
	}
	for (int i = 0; i < out_size; i++) {
		double center = (i + 0.5) * scale;
		double ww = 0.0;
		for (int x = 0; x < a->count[i]; x++)
			ww += rs_bilinear((x + a->start[i] - center + 0.5) * ss);
		for (int x = 0; x < a->count[i]; x++) {
			double w = rs_bilinear((x + a->start[i] - center + 0.5) *
					       ss);
			if (ww != 0.0)
				w /= ww;
			double f = w * (1 << RS_PRECISION_BITS);
			a->k[a->off[i] + (size_t)x] =
				(int32_t)(f < 0 ? -0.5 + f : 0.5 + f);
		}
	}
out:
	if (err)
		rs_axis_free(a);
	return err;
}

static uint8_t rs_clip8(int64_t v)
{
	if (v >= (int64_t)1 << RS_PRECISION_BITS << 8)
		return 255;
	if (v <= 0)
		return 0;
	return (uint8_t)(v >> RS_PRECISION_BITS);
}

/* Pillow's ImagingResample for 8-bit gray/RGB with the BILINEAR filter:
 * horizontal pass over the source rows the vertical pass needs, then the
 * vertical pass; each pass is skipped when its size does not change. */
static df_err resample(const uint8_t *src, int w, int h, int ch, int ow,
		       int oh, uint8_t *dst)
{
	df_err err = DF_OK;
	rs_axis ax = {0}, ay = {0};
	uint8_t *tmp = NULL;
	const uint8_t *vin = src;
	int need_h = ow != w, need_v = oh != h;
	int y_first = 0, rows = h;

	if (need_h && (err = rs_axis_init(w, ow, &ax)))
		goto out;
	if (need_v) {
		if ((err = rs_axis_init(h, oh, &ay)))
			goto out;
		y_first = ay.start[0];
		rows = ay.start[oh - 1] + ay.count[oh - 1] - y_first;
		if (rows < 1)
			rows = 1;
	}
	if (need_h) {
		uint8_t *hout = dst;
		if (need_v) {
			tmp = malloc((size_t)ow * (size_t)rows * (size_t)ch);
			if (!tmp) {
				err = DF_ENOMEM;
				goto out;
			}
			hout = tmp;
		}
		for (int y = 0; y < rows; y++) {
			const uint8_t *in = src + (size_t)(y + y_first) * w * ch;
			uint8_t *o = hout + (size_t)y * ow * ch;
			for (int x = 0; x < ow; x++) {
				const int32_t *k = ax.k + ax.off[x];
				for (int c = 0; c < ch; c++) {
					int64_t s = 1 << (RS_PRECISION_BITS - 1);
					const uint8_t *p =
						in + (size_t)ax.start[x] * ch + c;
					for (int i = 0; i < ax.count[x]; i++)
						s += (int64_t)p[(size_t)i * ch] *
						     k[i];
					o[(size_t)x * ch + c] = rs_clip8(s);
				}
			}
		}
		vin = tmp;
	} else if (need_v) {
		vin = src + (size_t)y_first * w * ch;
	}
	if (need_v) {
		size_t stride = (size_t)ow * ch;
		for (int y = 0; y < oh; y++) {
			const int32_t *k = ay.k + ay.off[y];
			int y0 = ay.start[y] - y_first;
			for (size_t xc = 0; xc < stride; xc++) {
				int64_t s = 1 << (RS_PRECISION_BITS - 1);
				for (int i = 0; i < ay.count[y]; i++)
					s += (int64_t)vin[(size_t)(y0 + i) * stride +
							  xc] *
					     k[i];
				dst[(size_t)y * stride + xc] = rs_clip8(s);
			}
		}
	}
	if (!need_h && !need_v)
		memcpy(dst, src, (size_t)w * h * ch);
out:
	free(tmp);
	rs_axis_free(&ax);
	rs_axis_free(&ay);
	return err;
}

static df_err check_target(image_color color, int width, int height)
{
	if (color != IMAGE_COLOR_GRAY && color != IMAGE_COLOR_RGB)
		return df_errf(DF_EINVAL, "input spec: bad color %d", (int)color);
	if (width < 1 || height < 1 || width > IMAGE_MAX_INPUT_SIDE ||
	    height > IMAGE_MAX_INPUT_SIDE)
		return df_errf(DF_EINVAL,
			       "input spec: size %dx%d is outside 1..%d", width,
			       height, IMAGE_MAX_INPUT_SIDE);
	return DF_OK;
}

df_err image_convert_resize(const image *img, image_color color, int width,
			    int height, image **out)
{
	df_err err = check_image(img);
	if (err)
		return err;
	if ((err = check_target(color, width, height)))
		return err;
	int ch = color == IMAGE_COLOR_RGB ? 3 : 1;
	image *res = NULL;
	uint8_t *conv = NULL;
	const uint8_t *src = img->pixels;
	size_t n = (size_t)img->width * (size_t)img->height;

	if (img->channels != ch) {
		conv = malloc(n * (size_t)ch);
		if (!conv) {
			err = DF_ENOMEM;
			goto out;
		}
		const uint8_t *p = img->pixels;
		if (ch == 1) {
			for (size_t i = 0; i < n; i++, p += 3)
				conv[i] = (uint8_t)((p[0] * 19595u +
						     p[1] * 38470u +
						     p[2] * 7471u + 0x8000u) >>
						    16);
		} else {
			for (size_t i = 0; i < n; i++)
				conv[3 * i] = conv[3 * i + 1] =
					conv[3 * i + 2] = p[i];
		}
		src = conv;
	}
	if ((err = image_create(width, height, ch, &res)))
		goto out;
	if ((err = resample(src, img->width, img->height, ch, width, height,
			    res->pixels)))
		goto out;
	*out = res;
	res = NULL;
out:
	free(conv);
	image_destroy(res);
	return err;
}

df_err image_fill_tensor(const image *img, const model_input_spec *spec,
			 tensor *dst)
{
	df_err err = check_target(spec->color, spec->width, spec->height);
	if (err)
		return err;
	int ch = model_input_channels(spec);
	int64_t want[4] = {1, ch, spec->height, spec->width};
	int off = dst && dst->ndim == 3 ? 1 : 0;
	if (!dst || dst->dtype != TENSOR_F32 || (dst->ndim != 4 && dst->ndim != 3) ||
	    memcmp(dst->dims, want + off, (size_t)dst->ndim * sizeof want[0]) != 0)
		return df_errf(DF_EINVAL,
			       "input tensor is not f32 [1,%d,%d,%d]", ch,
			       spec->height, spec->width);
	float lut[3][256];
	for (int c = 0; c < ch; c++) {
		if (!(spec->std[c] != 0.0f) || !isfinite(spec->std[c]) ||
		    !isfinite(spec->mean[c]))
			return df_errf(DF_EINVAL,
				       "input spec: mean/std of channel %d "
				       "must be finite with std != 0",
				       c);
		for (int v = 0; v < 256; v++) {
			float x = (float)v / 255.0f;
			lut[c][v] = (x - spec->mean[c]) / spec->std[c];
		}
	}
	image *res = NULL;
	if ((err = image_convert_resize(img, spec->color, spec->width,
					spec->height, &res)))
		return err;
	float *o = tensor_f32(dst);
	size_t plane = (size_t)spec->width * (size_t)spec->height;
	for (int c = 0; c < ch; c++)
		for (size_t i = 0; i < plane; i++)
			o[(size_t)c * plane + i] =
				lut[c][res->pixels[i * (size_t)ch + (size_t)c]];
	image_destroy(res);
	return DF_OK;
}

df_err image_to_tensor(const image *img, const model_input_spec *spec,
		       tensor **out)
{
	df_err err = check_target(spec->color, spec->width, spec->height);
	if (err)
		return err;
	int64_t dims[4] = {1, model_input_channels(spec), spec->height,
			   spec->width};
	tensor *t = NULL;
	if ((err = tensor_create(TENSOR_F32, 4, dims, &t)))
		return err;
	if ((err = image_fill_tensor(img, spec, t))) {
		tensor_destroy(t);
		return err;
	}
	*out = t;
	return DF_OK;
}
