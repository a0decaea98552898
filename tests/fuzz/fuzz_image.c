/*
 * fuzz_image.c - libFuzzer harness for image decoding and preprocessing:
 * whatever bytes arrive, image_decode() must return an error or a valid
 * image, and a valid image must preprocess into a gray and an RGB model
 * input. A 1-megapixel limit keeps each run fast; ASan/UBSan catch the
 * rest.
 */
#include <stddef.h>
#include <stdint.h>

#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const model_input_spec gray = {
		.color = IMAGE_COLOR_GRAY, .height = 28, .width = 28,
		.mean = {0.2860f}, .std = {0.3530f},
	};
	static const model_input_spec rgb = {
		.color = IMAGE_COLOR_RGB, .height = 17, .width = 40,
		.mean = {0.485f, 0.456f, 0.406f}, .std = {0.229f, 0.224f, 0.225f},
	};
	image *img = NULL;
	if (image_decode(data, size, (size_t)1 << 20, &img) != DF_OK)
		return 0;
	if (img->width < 1 || img->height < 1 ||
	    (img->channels != 1 && img->channels != 3))
		__builtin_trap();
	tensor *t = NULL;
	if (image_to_tensor(img, &gray, &t) != DF_OK)
		__builtin_trap();
	tensor_destroy(t);
	t = NULL;
	if (image_to_tensor(img, &rgb, &t) != DF_OK)
		__builtin_trap();
	tensor_destroy(t);
	image_destroy(img);
	return 0;
}
