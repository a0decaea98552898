/*
 * fuzz_wire.c - libFuzzer harness for the wire parser: any bytes must
 * parse into a frame/message that satisfies the layout's rules, or fail
 * cleanly. What parses must encode back to the very same bytes (f32
 * payloads) or, for f16 payloads whose NaNs may be quieted, to bytes that
 * are stable under another parse/encode round. ASan/UBSan catch the rest.
 *
 * Random bytes almost never carry a valid CRC-32C, which would hide all
 * checks behind the checksum; so each input is also tried as a frame
 * with its correct checksum appended.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_frame(const wire_frame *f)
{
	const tensor *t = f->t;
	if (!t || t->dtype != TENSOR_F32 || t->ndim < 0 ||
	    t->ndim > TENSOR_MAX_DIMS || (unsigned)f->dtype >= WIRE_DTYPE_COUNT)
		__builtin_trap();
	if (f->channel_axis == WIRE_WHOLE) {
		if (f->n_ids || f->channels_total || f->ids)
			__builtin_trap();
		return;
	}
	if (f->channel_axis < 0 || f->channel_axis >= t->ndim ||
	    (int64_t)f->n_ids != t->dims[f->channel_axis])
		__builtin_trap();
	for (size_t i = 0; i < f->n_ids; i++) {
		if (f->ids[i] < 0 || (uint32_t)f->ids[i] >= f->channels_total)
			__builtin_trap();
		for (size_t j = 0; j < i && f->n_ids <= 256; j++)
			if (f->ids[i] == f->ids[j])
				__builtin_trap();
	}
}

/* Encoding what was parsed must give the input back (f32) or a fixed
 * point after one more round (f16). */
static void check_frame_reencodes(const wire_frame *f, const uint8_t *orig,
				  size_t len)
{
	wire_buf b = {0};
	if (wire_frame_encode(&b, f) != DF_OK)
		__builtin_trap();
	if (f->dtype == WIRE_F32) {
		if (b.len != len || memcmp(b.data, orig, len) != 0)
			__builtin_trap();
	} else {
		wire_frame g = {0};
		wire_buf b2 = {0};
		if (b.len != len || wire_frame_parse(b.data, b.len, NULL, &g) != DF_OK ||
		    wire_frame_encode(&b2, &g) != DF_OK || b2.len != b.len ||
		    memcmp(b2.data, b.data, b.len) != 0)
			__builtin_trap();
		wire_frame_free(&g);
		wire_buf_free(&b2);
	}
	wire_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	wire_frame f = {0};
	size_t used = 0;
	df_err err = wire_frame_parse(data, size, &used, &f);
	wire_frame exact = {0};
	df_err err_exact = wire_frame_parse(data, size, NULL, &exact);
	if (err == DF_OK) {
		if (used == 0 || used > size)
			__builtin_trap();
		check_frame(&f);
		check_frame_reencodes(&f, data, used);
		/* The exact parse agrees: it succeeds iff nothing trails. */
		if ((err_exact == DF_OK) != (used == size))
			__builtin_trap();
		wire_frame_free(&f);
	} else if (err_exact == DF_OK) {
		__builtin_trap();
	}
	wire_frame_free(&exact);

	if (size <= ((size_t)1 << 20)) {
		uint8_t *sealed = malloc(size + 4);
		if (!sealed)
			return 0;
		if (size)
			memcpy(sealed, data, size);
		uint32_t crc = crc32c(data, size);
		for (int i = 0; i < 4; i++)
			sealed[size + (size_t)i] = (uint8_t)(crc >> (8 * i));
		if (wire_frame_parse(sealed, size + 4, NULL, &f) == DF_OK) {
			check_frame(&f);
			check_frame_reencodes(&f, sealed, size + 4);
			wire_frame_free(&f);
		}
		free(sealed);
	}

	wire_msg m = {0};
	if (wire_msg_parse(data, size, &m) == DF_OK) {
		int all_f32 = 1;
		if (!m.model || !*m.model || strlen(m.model) > WIRE_MAX_MODEL_NAME ||
		    m.n_frames > WIRE_MAX_FRAMES)
			__builtin_trap();
		for (size_t i = 0; i < m.n_frames; i++) {
			check_frame(&m.frames[i]);
			all_f32 &= m.frames[i].dtype == WIRE_F32;
		}
		wire_buf b = {0};
		if (wire_msg_encode(&b, &m) != DF_OK || b.len != size)
			__builtin_trap();
		if (all_f32 && memcmp(b.data, data, size) != 0)
			__builtin_trap();
		wire_buf_free(&b);
		wire_msg_free(&m);
	}
	return 0;
}
