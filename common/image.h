/*
 * image.h - decoding PNG and JPEG images from memory, and turning a decoded
 * image into a model's NCHW f32 input tensor.
 *
 * Image bytes come from the network: every decoder error (corrupt or
 * truncated data, unsupported variants) is returned, never printed and
 * never fatal. The size limit is checked from the header, before any pixel
 * buffer is allocated.
 *
 * Decoded images are 8-bit, either gray (1 channel) or RGB (3 channels,
 * interleaved). Normalization of the many PNG variants:
 *  - palette -> RGB; gray of 1/2/4 bits -> 8 bits (scaled to 0..255);
 *  - 16-bit samples -> 8 bits, rounded (v * 255 / 65535, libpng's
 *    png_set_scale_16);
 *  - alpha channels and tRNS transparency are dropped, not composited
 *    (what Pillow's convert("L") / convert("RGB") do);
 *  - Adam7 interlacing is undone; gamma and colour profiles are ignored.
 * JPEG: grayscale JPEGs decode to gray, YCbCr to RGB (libjpeg's default
 * islow IDCT and fancy upsampling, as Pillow uses); CMYK/YCCK are rejected
 * (DF_ENOTSUP). Any libjpeg warning that means damaged data, including
 * "premature end of JPEG file", is an error.
 */
#ifndef DF_IMAGE_H
#define DF_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "tensor.h"

/* Default for the max_pixels argument of image_decode(): 16 megapixels. */
#define IMAGE_DEFAULT_MAX_PIXELS ((size_t)16 * 1024 * 1024)

/* Largest side of a model input accepted by the preprocessing. */
#define IMAGE_MAX_INPUT_SIDE 4096

typedef enum image_format {
	IMAGE_FORMAT_UNKNOWN = 0,
	IMAGE_FORMAT_PNG,
	IMAGE_FORMAT_JPEG,
	IMAGE_FORMAT_COUNT
} image_format;

typedef struct image {
	int width, height;  /* >= 1 */
	int channels;       /* 1 (gray) or 3 (RGB) */
	uint8_t *pixels;    /* height rows of width * channels bytes */
} image;

/* The format announced by the first bytes (magic numbers), whatever any
 * content type claims. */
image_format image_sniff(const void *buf, size_t len);

/* "png", "jpeg", "unknown". */
const char *image_format_name(image_format fmt);

/*
 * Decodes a PNG or JPEG image held in buf[0..len). Images with more than
 * max_pixels pixels (width * height; 0 means IMAGE_DEFAULT_MAX_PIXELS) are
 * rejected with DF_ETOOBIG before any pixel memory is allocated. Data that
 * is neither PNG nor JPEG gives DF_EINVAL "not a PNG or JPEG image"; corrupt
 * or truncated data DF_EINVAL naming the format and libpng's/libjpeg's
 * reason. *out is new (image_destroy()); untouched on failure.
 */
df_err image_decode(const void *buf, size_t len, size_t max_pixels,
		    image **out);

/* New zero-filled image (channels 1 or 3). Free with image_destroy(). */
df_err image_create(int width, int height, int channels, image **out);

/* Frees img and its pixels. image_destroy(NULL) is a no-op. */
void image_destroy(image *img);

typedef enum image_color {
	IMAGE_COLOR_GRAY = 0,  /* 1 input channel */
	IMAGE_COLOR_RGB,       /* 3 input channels, R G B order */
	IMAGE_COLOR_COUNT
} image_color;

/* Parses "grayscale"/"gray" and "rgb"; DF_EINVAL otherwise. */
df_err image_color_parse(const char *s, image_color *out);

/* "grayscale" / "rgb". */
const char *image_color_name(image_color color);

/* What a model expects as input, and how to get there from an image. */
typedef struct model_input_spec {
	image_color color;
	int height, width;     /* resize target = the input's H and W */
	float mean[3], std[3]; /* per channel, applied after x/255 */
} model_input_spec;

/* Channels of spec's input tensor: 1 for gray, 3 for RGB. */
int model_input_channels(const model_input_spec *spec);

/*
 * Preprocesses img into the model input, as torchvision would do with
 * Pillow: convert("L") or convert("RGB"), resize((W, H), BILINEAR), then
 * ToTensor() and Normalize(mean, std).
 *  - RGB -> gray is ITU-R BT.601 luma, 0.299 R + 0.587 G + 0.114 B, in
 *    Pillow's 16-bit fixed point: (19595 R + 38470 G + 7471 B + 32768) >> 16,
 *    so values match Pillow's convert("L") exactly. Gray -> RGB replicates
 *    the channel.
 *  - Resizing is Pillow's BILINEAR resampling (triangle filter, half-pixel
 *    centres, widened when shrinking so every source pixel counts; 8-bit
 *    results rounded after each of the horizontal and vertical passes), with
 *    Pillow's fixed-point arithmetic, so it matches Pillow pixel for pixel.
 *    An image already of the target size is not resampled at all.
 *  - Each 8-bit value v becomes ((float)v / 255.0f - mean[c]) / std[c],
 *    in float, exactly as PyTorch computes x.float().div(255).sub(mean)
 *    .div(std): a 28x28 gray Fashion-MNIST image gives the same bits as the
 *    training script.
 * *out is a new [1, C, H, W] f32 tensor (tensor_destroy()).
 */
df_err image_to_tensor(const image *img, const model_input_spec *spec,
		       tensor **out);

/* Same as image_to_tensor(), writing into dst, which must be an f32
 * tensor of shape [1, C, H, W] (or [C, H, W]) matching spec. dst is left
 * unchanged on failure. */
df_err image_fill_tensor(const image *img, const model_input_spec *spec,
			 tensor *dst);

/* Converts img to gray or RGB and resizes it to width x height as
 * image_to_tensor() does, stopping before the float conversion. *out is
 * new (image_destroy()). */
df_err image_convert_resize(const image *img, image_color color, int width,
			    int height, image **out);

#endif
