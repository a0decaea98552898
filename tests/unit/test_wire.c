/*
 * Unit tests for wire.c: the exact byte layout promised in wire.h, round
 * trips of frames and messages, and rejection of every kind of malformed
 * input (truncations, bit flips, hand-made headers with valid checksums so
 * that the field checks themselves are exercised, bad ids, trailing bytes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"
#include "wire.h"

static uint32_t rng_state = 0x9E3779B9u;

static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 17;
	rng_state ^= rng_state << 5;
	return rng_state;
}

static tensor *make_tensor(int ndim, const int64_t *dims)
{
	tensor *t = NULL;
	assert_int_equal(tensor_create(TENSOR_F32, ndim, dims, &t), DF_OK);
	for (size_t i = 0; i < t->numel; i++)
		tensor_f32(t)[i] = (float)((int32_t)rnd() % 100000) / 64.0f;
	return t;
}

/* A shuffled permutation of [0, total); its first n entries are n distinct
 * ids. free() it. */
static int32_t *pick_ids(uint32_t total)
{
	int32_t *all = malloc((total ? total : 1) * sizeof *all);
	assert_non_null(all);
	for (uint32_t i = 0; i < total; i++)
		all[i] = (int32_t)i;
	for (uint32_t i = total; i > 1; i--) {
		uint32_t j = rnd() % i;
		int32_t tmp = all[i - 1];
		all[i - 1] = all[j];
		all[j] = tmp;
	}
	return all;
}

static void assert_frames_equal(const wire_frame *a, const wire_frame *b)
{
	assert_true(tensor_same_shape(a->t, b->t));
	assert_int_equal(a->dtype, b->dtype);
	assert_int_equal(a->channel_axis, b->channel_axis);
	assert_int_equal(a->channels_total, b->channels_total);
	assert_int_equal(a->n_ids, b->n_ids);
	if (a->n_ids)
		assert_memory_equal(a->ids, b->ids, a->n_ids * sizeof *a->ids);
	const float *x = tensor_f32(a->t), *y = tensor_f32(b->t);
	for (size_t i = 0; i < a->t->numel; i++) {
		float want = x[i];
		if (a->dtype == WIRE_F16)
			want = wire_f16_to_f32(wire_f32_to_f16(x[i]));
		if (memcmp(&want, &y[i], sizeof want) != 0)
			fail_msg("element %zu: sent %g, expected %g, got %g", i,
				 (double)x[i], (double)want, (double)y[i]);
	}
}

/* ---- f16 ------------------------------------------------------------- */

static uint32_t fbits(float f)
{
	uint32_t x;
	memcpy(&x, &f, sizeof x);
	return x;
}

static float bitsf(uint32_t x)
{
	float f;
	memcpy(&f, &x, sizeof f);
	return f;
}

static void f16_every_half_round_trips(void **state)
{
	(void)state;
	for (uint32_t h = 0; h < 65536; h++) {
		float f = wire_f16_to_f32((uint16_t)h);
		uint16_t back = wire_f32_to_f16(f);
		int is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
		if (is_nan) {
			assert_true(isnan(f));
			assert_true((back & 0x7c00) == 0x7c00 && (back & 0x3ff));
			assert_int_equal(back & 0x8000, h & 0x8000);
		} else if (back != h) {
			fail_msg("half 0x%04x -> %g -> 0x%04x", h, (double)f, back);
		}
	}
}

static void f16_known_values_and_ties_to_even(void **state)
{
	(void)state;
	assert_int_equal(wire_f32_to_f16(1.0f), 0x3c00);
	assert_int_equal(wire_f32_to_f16(-2.0f), 0xc000);
	assert_int_equal(wire_f32_to_f16(0.0f), 0x0000);
	assert_int_equal(wire_f32_to_f16(-0.0f), 0x8000);
	assert_int_equal(wire_f32_to_f16(65504.0f), 0x7bff);
	assert_int_equal(wire_f32_to_f16(65519.99f), 0x7bff);
	assert_int_equal(wire_f32_to_f16(65520.0f), 0x7c00); /* tie -> even = inf */
	assert_int_equal(wire_f32_to_f16(1e10f), 0x7c00);
	assert_int_equal(wire_f32_to_f16(-INFINITY), 0xfc00);
	assert_true((wire_f32_to_f16(NAN) & 0x7fff) > 0x7c00);
	/* 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1). */
	assert_int_equal(wire_f32_to_f16(1.0f + 0x1p-11f), 0x3c00);
	/* 1 + 3*2^-11 is halfway between 1+2^-10 and 1+2^-9: even is 1+2^-9. */
	assert_int_equal(wire_f32_to_f16(1.0f + 3 * 0x1p-11f), 0x3c02);
	assert_int_equal(wire_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
	/* Subnormals: 2^-24 is the smallest; 2^-25 ties to 0; above rounds up. */
	assert_int_equal(wire_f32_to_f16(0x1p-24f), 0x0001);
	assert_int_equal(wire_f32_to_f16(0x1p-25f), 0x0000);
	assert_int_equal(wire_f32_to_f16(0x1.8p-25f), 0x0001);
	assert_int_equal(wire_f32_to_f16(3 * 0x1p-25f), 0x0002); /* 1.5 units: tie -> 2 */
	assert_int_equal(wire_f32_to_f16(0x1p-14f), 0x0400);       /* smallest normal */
	assert_int_equal(wire_f32_to_f16(0x1p-14f - 0x1p-26f), 0x0400); /* rounds up into it */
	assert_int_equal(wire_f32_to_f16(1e-30f), 0x0000);
	assert_int_equal(wire_f32_to_f16(bitsf(0x00000001u)), 0x0000); /* f32 subnormal */
	assert_true(wire_f16_to_f32(0x0001) == 0x1p-24f);
	assert_true(wire_f16_to_f32(0x7bff) == 65504.0f);
	assert_true(wire_f16_to_f32(0xfc00) == -INFINITY);
	assert_int_equal(fbits(wire_f16_to_f32(0x8000)), 0x80000000u);
}

static void f16_matches_compiler_conversion(void **state)
{
	(void)state;
#ifdef __FLT16_MAX__
	for (int i = 0; i < 2000000; i++) {
		uint32_t x = rnd();
		if (i & 1) /* bias towards the f16 range */
			x = (x & 0x807fffffu) | ((uint32_t)(100 + rnd() % 60) << 23);
		float f = bitsf(x);
		if (isnan(f))
			continue;
		_Float16 ref = (_Float16)f;
		uint16_t rb;
		memcpy(&rb, &ref, sizeof rb);
		if (wire_f32_to_f16(f) != rb)
			fail_msg("f32 0x%08x: got 0x%04x, compiler 0x%04x", x,
				 wire_f32_to_f16(f), rb);
	}
#else
	skip();
#endif
}

/* ---- exact layout ---------------------------------------------------- */

static void frame_layout_is_the_documented_one(void **state)
{
	(void)state;
	int64_t dims[] = {1, 2};
	tensor *t = NULL;
	assert_int_equal(tensor_create(TENSOR_F32, 2, dims, &t), DF_OK);
	tensor_f32(t)[0] = 1.0f;  /* 0x3f800000 */
	tensor_f32(t)[1] = -2.0f; /* 0xc0000000 */
	int32_t ids[] = {4, 1};
	wire_frame f = {t, WIRE_F32, 1, 5, ids, 2};
	wire_buf b = {0};
	assert_int_equal(wire_frame_encode(&b, &f), DF_OK);
	static const unsigned char want[] = {
		'D', 'F', 'W', '1', 1, 0, /* version */ 0, 0, /* dtype f32 */
		0, 0, /* flags */ 2, 0, /* ndim */ 1, 0, /* axis */ 0, 0,
		5, 0, 0, 0, /* channels_total */ 2, 0, 0, 0, /* n_channels */
		1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, /* dims */
		4, 0, 0, 0, 1, 0, 0, 0, /* ids */
		8, 0, 0, 0, 0, 0, 0, 0, /* payload_len */
		0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0, /* payload */
	};
	assert_int_equal(b.len, sizeof want + 4);
	assert_memory_equal(b.data, want, sizeof want);
	uint32_t crc = crc32c(want, sizeof want);
	unsigned char crc_le[4] = {(unsigned char)crc, (unsigned char)(crc >> 8),
				   (unsigned char)(crc >> 16),
				   (unsigned char)(crc >> 24)};
	assert_memory_equal(b.data + sizeof want, crc_le, 4);

	/* The same as f16: dtype 1, payload 3c00 c000. */
	b.len = 0;
	f.dtype = WIRE_F16;
	assert_int_equal(wire_frame_encode(&b, &f), DF_OK);
	assert_int_equal(b.len, sizeof want - 4 + 4);
	assert_int_equal(b.data[6], 1);
	assert_int_equal(b.data[48], 4); /* payload_len */
	static const unsigned char half[] = {0x00, 0x3c, 0x00, 0xc0};
	assert_memory_equal(b.data + 56, half, 4);

	/* A whole tensor: axis 0xFFFF, no ids. */
	b.len = 0;
	wire_frame whole = {t, WIRE_F32, WIRE_WHOLE, 0, NULL, 0};
	assert_int_equal(wire_frame_encode(&b, &whole), DF_OK);
	assert_int_equal(b.len, 24 + 16 + 8 + 8 + 4);
	assert_int_equal(b.data[12], 0xff);
	assert_int_equal(b.data[13], 0xff);
	wire_buf_free(&b);
	wire_buf_free(&b);
	wire_buf_free(NULL);
	tensor_destroy(t);
}

static void msg_layout_is_the_documented_one(void **state)
{
	(void)state;
	int32_t neurons[] = {7, 3};
	wire_msg m = {WIRE_MSG_REQUEST, 0x0102030405060708ull, 42, 5,
		      "vgg", neurons, 2, NULL, 0};
	wire_buf b = {0};
	assert_int_equal(wire_msg_encode(&b, &m), DF_OK);
	static const unsigned char want[] = {
		'D', 'F', 'M', '1', 1, 0, 1, 0,
		8, 7, 6, 5, 4, 3, 2, 1,   /* request_id */
		42, 0, 0, 0, 0, 0, 0, 0,  /* partition_version */
		5, 0, 0, 0,               /* stage */
		0, 0, 0, 0,               /* n_frames */
		2, 0, 0, 0,               /* n_neurons */
		3, 0, 0, 0,               /* model_len, reserved */
		'v', 'g', 'g', 7, 0, 0, 0, 3, 0, 0, 0,
	};
	assert_int_equal(b.len, sizeof want + 4);
	assert_memory_equal(b.data, want, sizeof want);
	uint32_t crc = crc32c(want, sizeof want);
	assert_int_equal(b.data[sizeof want], crc & 0xff);
	assert_int_equal(b.data[sizeof want + 3], crc >> 24);
	wire_buf_free(&b);
}

/* ---- round trips ------------------------------------------------------ */

static void frames_round_trip_every_rank(void **state)
{
	(void)state;
	wire_buf b = {0};
	for (int rank = 1; rank <= TENSOR_MAX_DIMS; rank++) {
		for (int rep = 0; rep < 12; rep++) {
			int64_t dims[TENSOR_MAX_DIMS];
			for (int i = 0; i < rank; i++)
				dims[i] = 1 + rnd() % (rank > 4 ? 3 : 7);
			int axis = (int)(rnd() % (uint32_t)rank);
			if (rep == 0)
				dims[axis] = 0; /* a slice of 0 channels */
			tensor *t = make_tensor(rank, dims);
			uint32_t total = (uint32_t)dims[axis] + rnd() % 9;
			int32_t *ids = pick_ids(total);
			for (int dt = 0; dt < WIRE_DTYPE_COUNT; dt++) {
				wire_frame f = {t, (wire_dtype)dt, axis, total,
						ids, (size_t)dims[axis]};
				if (rep == 1) {
					f.channel_axis = WIRE_WHOLE;
					f.channels_total = 0;
					f.ids = NULL;
					f.n_ids = 0;
				}
				b.len = 0;
				assert_int_equal(wire_frame_encode(&b, &f), DF_OK);
				wire_frame g = {0};
				size_t used = 0;
				assert_int_equal(wire_frame_parse(b.data, b.len, &used, &g),
						 DF_OK);
				assert_int_equal(used, b.len);
				assert_frames_equal(&f, &g);
				wire_frame_free(&g);
				assert_null(g.t);
				assert_int_equal(wire_frame_parse(b.data, b.len, NULL, &g),
						 DF_OK);
				assert_frames_equal(&f, &g);
				wire_frame_free(&g);
			}
			free(ids);
			tensor_destroy(t);
		}
	}
	wire_frame_free(NULL);
	wire_buf_free(&b);
}

static void scalar_and_special_values_round_trip(void **state)
{
	(void)state;
	wire_buf b = {0};
	tensor *t = NULL;
	assert_int_equal(tensor_create(TENSOR_F32, 0, NULL, &t), DF_OK);
	tensor_f32(t)[0] = -0.0f;
	wire_frame f = {t, WIRE_F32, WIRE_WHOLE, 0, NULL, 0};
	assert_int_equal(wire_frame_encode(&b, &f), DF_OK);
	wire_frame g = {0};
	assert_int_equal(wire_frame_parse(b.data, b.len, NULL, &g), DF_OK);
	assert_int_equal(g.t->ndim, 0);
	assert_int_equal(fbits(tensor_f32(g.t)[0]), 0x80000000u);
	wire_frame_free(&g);
	tensor_destroy(t);

	/* Zero-size tensor with a zero dim away from the channel axis. */
	int64_t dims[] = {0, 3, 2};
	t = make_tensor(3, dims);
	int32_t ids[] = {2, 0, 5};
	f = (wire_frame){t, WIRE_F16, 1, 6, ids, 3};
	b.len = 0;
	assert_int_equal(wire_frame_encode(&b, &f), DF_OK);
	assert_int_equal(wire_frame_parse(b.data, b.len, NULL, &g), DF_OK);
	assert_frames_equal(&f, &g);
	wire_frame_free(&g);
	tensor_destroy(t);

	/* Infinities, NaN, denormals survive f32 bit-exactly. */
	int64_t d1[] = {4};
	t = make_tensor(1, d1);
	tensor_f32(t)[0] = INFINITY;
	tensor_f32(t)[1] = bitsf(0x7fc01234u);
	tensor_f32(t)[2] = bitsf(0x00000003u);
	tensor_f32(t)[3] = -FLT_MAX;
	f = (wire_frame){t, WIRE_F32, WIRE_WHOLE, 0, NULL, 0};
	b.len = 0;
	assert_int_equal(wire_frame_encode(&b, &f), DF_OK);
	assert_int_equal(wire_frame_parse(b.data, b.len, NULL, &g), DF_OK);
	assert_memory_equal(t->data, g.t->data, 16);
	wire_frame_free(&g);
	tensor_destroy(t);
	wire_buf_free(&b);
}

static void big_frame_round_trips(void **state)
{
	(void)state;
	int64_t dims[] = {1, 64, 56, 56};
	tensor *t = make_tensor(4, dims);
	int32_t *ids = pick_ids(256);
	wire_frame f = {t, WIRE_F32, 1, 256, ids, 64};
	wire_buf b = {0};
	assert_int_equal(wire_frame_encode(&b, &f), DF_OK);
	assert_int_equal(b.len, 24 + 32 + 256 + 8 + 64 * 56 * 56 * 4 + 4);
	wire_frame g = {0};
	assert_int_equal(wire_frame_parse(b.data, b.len, NULL, &g), DF_OK);
	assert_frames_equal(&f, &g);
	wire_frame_free(&g);
	free(ids);
	tensor_destroy(t);
	wire_buf_free(&b);
}

/* A request: stage input (whole), two side inputs, neuron list. */
static void build_request(wire_buf *b, tensor **keep, int32_t **keep_ids)
{
	int64_t d_in[] = {1, 3, 5, 5}, d_side[] = {1, 4, 5, 5};
	keep[0] = make_tensor(4, d_in);
	keep[1] = make_tensor(4, d_side);
	keep[2] = make_tensor(4, d_side);
	*keep_ids = pick_ids(16);
	wire_frame frames[3] = {
		{keep[0], WIRE_F32, WIRE_WHOLE, 0, NULL, 0},
		{keep[1], WIRE_F32, 1, 16, *keep_ids, 4},
		{keep[2], WIRE_F16, 1, 16, *keep_ids, 4},
	};
	wire_msg m = {WIRE_MSG_REQUEST, 77, 3, 2, "resnet-fm", *keep_ids, 4,
		      frames, 3};
	assert_int_equal(wire_msg_encode(b, &m), DF_OK);
}

static void messages_round_trip(void **state)
{
	(void)state;
	wire_buf b = {0};
	tensor *ts[3];
	int32_t *ids = NULL;
	build_request(&b, ts, &ids);
	wire_msg m = {0};
	assert_int_equal(wire_msg_parse(b.data, b.len, &m), DF_OK);
	assert_int_equal(m.kind, WIRE_MSG_REQUEST);
	assert_true(m.request_id == 77);
	assert_true(m.partition_version == 3);
	assert_int_equal(m.stage, 2);
	assert_string_equal(m.model, "resnet-fm");
	assert_int_equal(m.n_neurons, 4);
	assert_memory_equal(m.neurons, ids, 4 * sizeof *ids);
	assert_int_equal(m.n_frames, 3);
	wire_frame want[3] = {
		{ts[0], WIRE_F32, WIRE_WHOLE, 0, NULL, 0},
		{ts[1], WIRE_F32, 1, 16, ids, 4},
		{ts[2], WIRE_F16, 1, 16, ids, 4},
	};
	for (int i = 0; i < 3; i++)
		assert_frames_equal(&want[i], &m.frames[i]);
	wire_msg_free(&m);
	assert_null(m.frames);
	wire_msg_free(NULL);

	/* Response with no frames, no neurons; maximal model name. */
	char name[WIRE_MAX_MODEL_NAME + 2];
	memset(name, 'n', sizeof name);
	name[WIRE_MAX_MODEL_NAME] = '\0';
	wire_msg r = {WIRE_MSG_RESPONSE, UINT64_MAX, UINT64_MAX, UINT32_MAX,
		      name, NULL, 0, NULL, 0};
	b.len = 0;
	assert_int_equal(wire_msg_encode(&b, &r), DF_OK);
	assert_int_equal(wire_msg_parse(b.data, b.len, &m), DF_OK);
	assert_int_equal(m.kind, WIRE_MSG_RESPONSE);
	assert_true(m.request_id == UINT64_MAX);
	assert_int_equal(m.stage, UINT32_MAX);
	assert_string_equal(m.model, name);
	assert_null(m.frames);
	assert_null(m.neurons);
	wire_msg_free(&m);

	/* WIRE_MAX_FRAMES frames are fine, one more is refused. */
	wire_frame many[WIRE_MAX_FRAMES + 1];
	for (int i = 0; i <= WIRE_MAX_FRAMES; i++)
		many[i] = (wire_frame){ts[0], WIRE_F16, WIRE_WHOLE, 0, NULL, 0};
	r.frames = many;
	r.n_frames = WIRE_MAX_FRAMES;
	b.len = 0;
	assert_int_equal(wire_msg_encode(&b, &r), DF_OK);
	assert_int_equal(wire_msg_parse(b.data, b.len, &m), DF_OK);
	assert_int_equal(m.n_frames, WIRE_MAX_FRAMES);
	wire_msg_free(&m);
	r.n_frames = WIRE_MAX_FRAMES + 1;
	size_t before = b.len;
	assert_int_equal(wire_msg_encode(&b, &r), DF_ETOOBIG);
	assert_int_equal(b.len, before);

	for (int i = 0; i < 3; i++)
		tensor_destroy(ts[i]);
	free(ids);
	wire_buf_free(&b);
}

/* Whether t's data lies inside b's bytes. */
static bool data_in(const tensor *t, const wire_buf *b)
{
	uintptr_t p = (uintptr_t)t->data, lo = (uintptr_t)b->data;
	return p >= lo && p < lo + b->len;
}

/* wire_msg_parse_borrow(): same message as wire_msg_parse(); f32 frames
 * with a float-aligned payload are views into the buffer, other frames
 * (f16, or misaligned by the model name's length) are copies. */
static void borrowing_parse_views_aligned_f32_payloads(void **state)
{
	(void)state;
	int64_t d_in[] = {1, 64, 40, 40}, d_side[] = {1, 4, 5, 5};
	tensor *ts[3] = {make_tensor(4, d_in), make_tensor(4, d_side),
			 make_tensor(4, d_side)};
	int32_t ids[] = {1, 5, 8, 11};
	wire_frame frames[3] = {
		{ts[0], WIRE_F32, WIRE_WHOLE, 0, NULL, 0},
		{ts[1], WIRE_F32, 1, 16, ids, 4},
		{ts[2], WIRE_F16, 1, 16, ids, 4},
	};
	/* "resnet18" keeps the envelope (40 + 8 + 16 + 4 bytes) and thus
	 * every payload 4-byte aligned; "resnet-fm" shifts them by one. */
	const char *names[] = {"resnet18", "resnet-fm"};
	for (int k = 0; k < 2; k++) {
		char name[16];
		snprintf(name, sizeof name, "%s", names[k]);
		wire_msg m = {WIRE_MSG_REQUEST, 5, 2, 1, name, ids, 4, frames, 3};
		wire_buf b = {0};
		assert_int_equal(wire_msg_encode(&b, &m), DF_OK);
		wire_msg copy = {0}, view = {0};
		assert_int_equal(wire_msg_parse(b.data, b.len, &copy), DF_OK);
		assert_int_equal(wire_msg_parse_borrow(b.data, b.len, &view), DF_OK);
		assert_string_equal(view.model, names[k]);
		assert_int_equal(view.n_frames, 3);
		assert_memory_equal(view.neurons, ids, sizeof ids);
		for (int i = 0; i < 3; i++) {
			assert_frames_equal(&frames[i], &view.frames[i]);
			assert_frames_equal(&copy.frames[i], &view.frames[i]);
			assert_false(data_in(copy.frames[i].t, &b));
		}
		bool aligned = k == 0;
		assert_true(data_in(view.frames[0].t, &b) == aligned);
		assert_true(data_in(view.frames[1].t, &b) == aligned);
		assert_false(data_in(view.frames[2].t, &b)); /* f16: converted */
		wire_msg_free(&view); /* must not free b's bytes */
		wire_msg_free(&copy);

		/* A flip deep in frame 0's payload (past the first 64 KB,
		 * where parsing copies and checksums block by block) is a
		 * checksum error both ways. */
		size_t env = WIRE_MSG_HEADER + strlen(names[k]) + 16 + 4;
		size_t at = env + 24 + 32 + 8 + 300000;
		b.data[at] ^= 0x04;
		assert_int_equal(wire_msg_parse(b.data, b.len, &copy), DF_ECORRUPT);
		assert_non_null(strstr(df_err_msg(), "frame 0"));
		assert_null(copy.model);
		assert_int_equal(wire_msg_parse_borrow(b.data, b.len, &view),
				 DF_ECORRUPT);
		assert_non_null(strstr(df_err_msg(), "checksum"));
		assert_null(view.model);
		wire_buf_free(&b);
	}
	for (int i = 0; i < 3; i++)
		tensor_destroy(ts[i]);
}

/* ---- rejection -------------------------------------------------------- */

static const wire_frame sentinel_frame = {(tensor *)0x1, WIRE_F16, 99, 99,
					  (int32_t *)0x2, 99};

static void assert_frame_untouched(const wire_frame *f)
{
	assert_ptr_equal(f->t, sentinel_frame.t);
	assert_int_equal(f->dtype, sentinel_frame.dtype);
	assert_int_equal(f->channel_axis, sentinel_frame.channel_axis);
	assert_int_equal(f->channels_total, sentinel_frame.channels_total);
	assert_ptr_equal(f->ids, sentinel_frame.ids);
	assert_int_equal(f->n_ids, sentinel_frame.n_ids);
}

static void every_frame_truncation_is_rejected(void **state)
{
	(void)state;
	int64_t dims[] = {2, 3, 2};
	tensor *t = make_tensor(3, dims);
	int32_t ids[] = {1, 0, 8};
	wire_frame f = {t, WIRE_F32, 1, 9, ids, 3};
	wire_buf b = {0};
	assert_int_equal(wire_frame_encode(&b, &f), DF_OK);
	for (size_t cut = 0; cut < b.len; cut++) {
		wire_frame g = sentinel_frame;
		size_t used = 12345;
		df_err err = wire_frame_parse(b.data, cut, &used, &g);
		if (err == DF_OK)
			fail_msg("frame cut to %zu of %zu bytes accepted", cut,
				 b.len);
		assert_frame_untouched(&g);
		assert_int_equal(used, 12345);
		assert_int_not_equal(wire_frame_parse(b.data, cut, NULL, &g), DF_OK);
		assert_frame_untouched(&g);
	}
	/* A truncated header says so and names the field. */
	wire_frame g = sentinel_frame;
	assert_int_equal(wire_frame_parse(b.data, 30, NULL, &g), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "truncated"));
	assert_non_null(strstr(df_err_msg(), "dims"));
	tensor_destroy(t);
	wire_buf_free(&b);
}

static void every_message_truncation_is_rejected(void **state)
{
	(void)state;
	wire_buf b = {0};
	tensor *ts[3];
	int32_t *ids = NULL;
	build_request(&b, ts, &ids);
	for (size_t cut = 0; cut < b.len; cut++) {
		wire_msg m = {0};
		m.stage = 4242;
		if (wire_msg_parse(b.data, cut, &m) == DF_OK)
			fail_msg("message cut to %zu of %zu bytes accepted", cut,
				 b.len);
		assert_int_equal(m.stage, 4242);
		assert_null(m.model);
	}
	for (int i = 0; i < 3; i++)
		tensor_destroy(ts[i]);
	free(ids);
	wire_buf_free(&b);
}

static void every_bit_flip_is_detected(void **state)
{
	(void)state;
	int64_t dims[] = {1, 2, 3};
	tensor *t = make_tensor(3, dims);
	int32_t ids[] = {5, 2};
	wire_buf b = {0};
	for (int dt = 0; dt < WIRE_DTYPE_COUNT; dt++) {
		wire_frame f = {t, (wire_dtype)dt, 1, 6, ids, 2};
		b.len = 0;
		assert_int_equal(wire_frame_encode(&b, &f), DF_OK);
		for (size_t bit = 0; bit < b.len * 8; bit++) {
			b.data[bit / 8] ^= (unsigned char)(1u << (bit % 8));
			wire_frame g = sentinel_frame;
			size_t used = 0;
			if (wire_frame_parse(b.data, b.len, &used, &g) == DF_OK)
				fail_msg("dtype %d: flip of bit %zu undetected", dt, bit);
			assert_frame_untouched(&g);
			b.data[bit / 8] ^= (unsigned char)(1u << (bit % 8));
		}
	}
	tensor_destroy(t);

	/* Messages: flips in the envelope and in the frames. */
	tensor *ts[3];
	int32_t *rids = NULL;
	b.len = 0;
	build_request(&b, ts, &rids);
	for (size_t bit = 0; bit < b.len * 8; bit += (bit < 2000 ? 1 : 7)) {
		b.data[bit / 8] ^= (unsigned char)(1u << (bit % 8));
		wire_msg m = {0};
		if (wire_msg_parse(b.data, b.len, &m) == DF_OK)
			fail_msg("message: flip of bit %zu undetected", bit);
		assert_null(m.model);
		b.data[bit / 8] ^= (unsigned char)(1u << (bit % 8));
	}
	/* A flip in frame 1's payload is reported as that frame's checksum. */
	wire_msg m = {0};
	size_t env = WIRE_MSG_HEADER + strlen("resnet-fm") + 16 + 4;
	size_t frame0 = 24 + 32 + 8 + 75 * 4 + 4;
	size_t at = env + frame0 + 24 + 32 + 16 + 8 + 10;
	b.data[at] ^= 0x10;
	assert_int_equal(wire_msg_parse(b.data, b.len, &m), DF_ECORRUPT);
	assert_non_null(strstr(df_err_msg(), "frame 1"));
	assert_non_null(strstr(df_err_msg(), "checksum"));
	b.data[at] ^= 0x10;
	b.data[10] ^= 0x01; /* request_id */
	assert_int_equal(wire_msg_parse(b.data, b.len, &m), DF_ECORRUPT);
	assert_non_null(strstr(df_err_msg(), "envelope checksum"));
	b.data[10] ^= 0x01;
	assert_int_equal(wire_msg_parse(b.data, b.len, &m), DF_OK);
	wire_msg_free(&m);
	for (int i = 0; i < 3; i++)
		tensor_destroy(ts[i]);
	free(rids);
	wire_buf_free(&b);
}

/* Raw frame builder: writes exactly the given fields and a valid CRC, so
 * the parser's field checks are what must reject it. */
typedef struct raw_frame {
	const char *magic;
	uint16_t version, dtype, flags, ndim, axis, reserved;
	uint32_t total, n_ch;
	int n_dims_written;
	uint64_t dims[10];
	int n_ids_written;
	uint32_t ids[8];
	uint64_t payload_len;
	size_t payload_written;
} raw_frame;

static void raw_put(wire_buf *b, uint64_t v, int n)
{
	assert_int_equal(wire_buf_reserve(b, (size_t)n), DF_OK);
	for (int i = 0; i < n; i++)
		b->data[b->len++] = (unsigned char)(v >> (8 * i));
}

static void raw_build(wire_buf *b, const raw_frame *r)
{
	b->len = 0;
	for (int i = 0; i < 4; i++)
		raw_put(b, (unsigned char)r->magic[i], 1);
	raw_put(b, r->version, 2);
	raw_put(b, r->dtype, 2);
	raw_put(b, r->flags, 2);
	raw_put(b, r->ndim, 2);
	raw_put(b, r->axis, 2);
	raw_put(b, r->reserved, 2);
	raw_put(b, r->total, 4);
	raw_put(b, r->n_ch, 4);
	for (int i = 0; i < r->n_dims_written; i++)
		raw_put(b, r->dims[i], 8);
	for (int i = 0; i < r->n_ids_written; i++)
		raw_put(b, r->ids[i], 4);
	raw_put(b, r->payload_len, 8);
	for (size_t i = 0; i < r->payload_written; i++)
		raw_put(b, 0x3f, 1);
	raw_put(b, crc32c(b->data, b->len), 4);
}

/* A valid [2, 3] f32 slice with ids {0, 4, 2} of 5 on axis 1. */
static raw_frame raw_valid(void)
{
	raw_frame r = {"DFW1", 1, 0, 0, 2, 1, 0, 5, 3, 2, {2, 3}, 3,
		       {0, 4, 2}, 24, 24};
	return r;
}

static void expect_raw(const raw_frame *r, df_err want, const char *words)
{
	wire_buf b = {0};
	raw_build(&b, r);
	wire_frame g = sentinel_frame;
	df_err err = wire_frame_parse(b.data, b.len, NULL, &g);
	if (err != want)
		fail_msg("expected error %d (%s), got %d: %s", want, words, err,
			 df_err_msg());
	if (want != DF_OK) {
		assert_frame_untouched(&g);
		if (!strstr(df_err_msg(), words))
			fail_msg("message '%s' does not mention '%s'",
				 df_err_msg(), words);
	} else {
		wire_frame_free(&g);
	}
	wire_buf_free(&b);
}

static void malformed_headers_are_rejected_by_field(void **state)
{
	(void)state;
	raw_frame r = raw_valid();
	expect_raw(&r, DF_OK, "");

	r = raw_valid();
	r.magic = "DFW2";
	expect_raw(&r, DF_EINVAL, "magic");
	r = raw_valid();
	r.version = 2;
	expect_raw(&r, DF_ENOTSUP, "version 2");
	r = raw_valid();
	r.dtype = 2;
	expect_raw(&r, DF_ENOTSUP, "dtype 2");
	r = raw_valid();
	r.flags = 0x0100;
	expect_raw(&r, DF_ENOTSUP, "flags");
	r = raw_valid();
	r.reserved = 1;
	expect_raw(&r, DF_EINVAL, "reserved");
	r = raw_valid();
	r.axis = 2;
	expect_raw(&r, DF_EINVAL, "channel_axis 2");
	r = raw_valid();
	r.ndim = 9;
	r.n_dims_written = 9;
	for (int i = 0; i < 9; i++)
		r.dims[i] = 1;
	expect_raw(&r, DF_ETOOBIG, "ndim 9");
	r = raw_valid();
	r.ndim = 0xffff;
	expect_raw(&r, DF_ETOOBIG, "ndim 65535");
	/* Whole tensor must not carry channel counts. */
	r = raw_valid();
	r.axis = 0xffff;
	r.n_ids_written = 0;
	expect_raw(&r, DF_EINVAL, "whole tensor");
	r.total = 0;
	r.n_ch = 0;
	expect_raw(&r, DF_OK, "");
	/* payload_len must match the shape exactly. */
	r = raw_valid();
	r.payload_len = 20;
	r.payload_written = 20;
	expect_raw(&r, DF_EINVAL, "payload_len 20");
	r = raw_valid();
	r.payload_len = UINT64_MAX;
	expect_raw(&r, DF_EINVAL, "payload_len");
	r = raw_valid();
	r.dtype = 1; /* f16 needs 12 bytes, not 24 */
	expect_raw(&r, DF_EINVAL, "needs 12");
	r.payload_len = 12;
	r.payload_written = 12;
	expect_raw(&r, DF_OK, "");
}

static void overflowing_dims_are_rejected(void **state)
{
	(void)state;
	static const uint64_t bad[][3] = {
		{UINT64_MAX, 1, 1},
		{(uint64_t)INT64_MAX + 1, 1, 1},
		{(uint64_t)1 << 32, (uint64_t)1 << 32, 1},
		{(uint64_t)1 << 31, 1, 1}, /* 8 GiB as f32: beyond TENSOR_MAX_BYTES */
		{1000000, 1000000, 1000000},
		{(uint64_t)1 << 62, 4, 1},
		{(uint64_t)1 << 62, 0, 1}, /* zero elsewhere does not excuse it */
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		raw_frame r = raw_valid();
		r.ndim = 3;
		r.axis = 2;
		r.total = 1;
		r.n_ch = 1;
		r.n_dims_written = 3;
		memcpy(r.dims, bad[i], sizeof bad[i]);
		r.n_ids_written = 1;
		r.ids[0] = 0;
		r.payload_len = 16; /* a small lie: must not be trusted */
		r.payload_written = 16;
		wire_buf b = {0};
		raw_build(&b, &r);
		wire_frame g = sentinel_frame;
		df_err err = wire_frame_parse(b.data, b.len, NULL, &g);
		if (err != DF_ETOOBIG && err != DF_EINVAL)
			fail_msg("dims %zu: got %d (%s)", i, err, df_err_msg());
		assert_frame_untouched(&g);
		wire_buf_free(&b);
	}
	/* Just at the limit the shape itself is fine, and it is the
	 * missing payload that stops it, before any allocation. */
	raw_frame r = raw_valid();
	r.ndim = 1;
	r.axis = 0;
	r.n_dims_written = 1;
	r.dims[0] = 1 << 30; /* 4 GiB as f32 = TENSOR_MAX_BYTES */
	r.total = 1 << 30;
	r.n_ch = 1 << 30;
	r.n_ids_written = 0;
	r.payload_len = (uint64_t)1 << 32;
	r.payload_written = 0;
	expect_raw(&r, DF_EINVAL, "truncated in channel ids");
}

static void bad_channel_ids_are_rejected(void **state)
{
	(void)state;
	raw_frame r = raw_valid();
	r.ids[1] = 5; /* == total */
	expect_raw(&r, DF_ERANGE, "channel id 5");
	r = raw_valid();
	r.ids[2] = 0; /* duplicate */
	expect_raw(&r, DF_ERANGE, "appears twice");
	r = raw_valid();
	r.total = UINT32_MAX;
	r.ids[0] = 0x80000000u; /* does not fit int32 */
	expect_raw(&r, DF_ERANGE, "2147483648");
	r = raw_valid();
	r.n_ch = 2; /* disagrees with dims[1] = 3 */
	r.n_ids_written = 2;
	expect_raw(&r, DF_EINVAL, "n_channels 2");
	r = raw_valid();
	r.total = 0;
	expect_raw(&r, DF_ERANGE, "channel id");

	/* The encoder refuses the same things and leaves the buffer alone. */
	int64_t dims[] = {2, 3};
	tensor *t = make_tensor(2, dims);
	wire_buf b = {0};
	raw_put(&b, 0xabcd, 2);
	int32_t dup[] = {1, 2, 1}, neg[] = {0, -1, 2}, big[] = {0, 1, 7};
	wire_frame f = {t, WIRE_F32, 1, 5, dup, 3};
	assert_int_equal(wire_frame_encode(&b, &f), DF_ERANGE);
	f.ids = neg;
	assert_int_equal(wire_frame_encode(&b, &f), DF_ERANGE);
	f.ids = big;
	assert_int_equal(wire_frame_encode(&b, &f), DF_ERANGE);
	f.channels_total = 8;
	f.n_ids = 2;
	assert_int_equal(wire_frame_encode(&b, &f), DF_EINVAL);
	f.n_ids = 3;
	f.channel_axis = 2;
	assert_int_equal(wire_frame_encode(&b, &f), DF_EINVAL);
	f.channel_axis = WIRE_WHOLE;
	assert_int_equal(wire_frame_encode(&b, &f), DF_EINVAL);
	f.channel_axis = 1;
	f.dtype = (wire_dtype)7;
	assert_int_equal(wire_frame_encode(&b, &f), DF_ENOTSUP);
	assert_int_equal(b.len, 2);
	f.dtype = WIRE_F32;
	assert_int_equal(wire_frame_encode(&b, &f), DF_OK);
	tensor_destroy(t);

	tensor *i64 = NULL;
	assert_int_equal(tensor_create(TENSOR_I64, 2, dims, &i64), DF_OK);
	wire_frame fi = {i64, WIRE_F32, WIRE_WHOLE, 0, NULL, 0};
	size_t before = b.len;
	assert_int_equal(wire_frame_encode(&b, &fi), DF_ENOTSUP);
	assert_int_equal(b.len, before);
	tensor_destroy(i64);
	wire_buf_free(&b);
}

static void trailing_bytes_are_rejected(void **state)
{
	(void)state;
	raw_frame r = raw_valid();
	wire_buf b = {0};
	raw_build(&b, &r);
	size_t flen = b.len;
	raw_put(&b, 0, 1);
	wire_frame g = sentinel_frame;
	assert_int_equal(wire_frame_parse(b.data, b.len, NULL, &g), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "1 trailing byte"));
	assert_frame_untouched(&g);
	size_t used = 0;
	assert_int_equal(wire_frame_parse(b.data, b.len, &used, &g), DF_OK);
	assert_int_equal(used, flen);
	wire_frame_free(&g);

	tensor *ts[3];
	int32_t *ids = NULL;
	b.len = 0;
	build_request(&b, ts, &ids);
	raw_put(&b, 0x44, 1);
	wire_msg m = {0};
	assert_int_equal(wire_msg_parse(b.data, b.len, &m), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "trailing"));
	assert_null(m.model);
	for (int i = 0; i < 3; i++)
		tensor_destroy(ts[i]);
	free(ids);
	wire_buf_free(&b);
}

/* Envelope builder with a valid CRC and no frames. */
static void raw_msg(wire_buf *b, uint16_t version, uint16_t kind,
		    uint32_t n_frames, uint32_t n_neurons, uint16_t model_len,
		    const char *model, const uint32_t *neurons)
{
	b->len = 0;
	for (int i = 0; i < 4; i++)
		raw_put(b, (unsigned char)"DFM1"[i], 1);
	raw_put(b, version, 2);
	raw_put(b, kind, 2);
	raw_put(b, 1, 8);
	raw_put(b, 1, 8);
	raw_put(b, 0, 4);
	raw_put(b, n_frames, 4);
	raw_put(b, n_neurons, 4);
	raw_put(b, model_len, 2);
	raw_put(b, 0, 2);
	for (uint16_t i = 0; i < model_len; i++)
		raw_put(b, (unsigned char)model[i], 1);
	for (uint32_t i = 0; i < n_neurons; i++)
		raw_put(b, neurons[i], 4);
	raw_put(b, crc32c(b->data, b->len), 4);
}

static void malformed_messages_are_rejected(void **state)
{
	(void)state;
	wire_buf b = {0};
	wire_msg m = {0};
	uint32_t ok_ids[] = {3, 1}, dup[] = {3, 3}, big[] = {0x80000000u};

	raw_msg(&b, 1, 2, 0, 2, 2, "m1", ok_ids);
	assert_int_equal(wire_msg_parse(b.data, b.len, &m), DF_OK);
	wire_msg_free(&m);
	raw_msg(&b, 3, 2, 0, 2, 2, "m1", ok_ids);
	assert_int_equal(wire_msg_parse(b.data, b.len, &m), DF_ENOTSUP);
	assert_non_null(strstr(df_err_msg(), "version 3"));
	raw_msg(&b, 1, 9, 0, 2, 2, "m1", ok_ids);
	assert_int_equal(wire_msg_parse(b.data, b.len, &m), DF_ENOTSUP);
	assert_non_null(strstr(df_err_msg(), "kind 9"));
	raw_msg(&b, 1, 1, WIRE_MAX_FRAMES + 1, 2, 2, "m1", ok_ids);
	assert_int_equal(wire_msg_parse(b.data, b.len, &m), DF_ETOOBIG);
	raw_msg(&b, 1, 1, 0, 2, 0, "", ok_ids);
	assert_int_equal(wire_msg_parse(b.data, b.len, &m), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "model_len 0"));
	raw_msg(&b, 1, 1, 0, 2, 2, "a\0", ok_ids);
	assert_int_equal(wire_msg_parse(b.data, b.len, &m), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "NUL"));
	raw_msg(&b, 1, 1, 0, 2, 2, "m1", dup);
	assert_int_equal(wire_msg_parse(b.data, b.len, &m), DF_ERANGE);
	raw_msg(&b, 1, 1, 0, 1, 2, "m1", big);
	assert_int_equal(wire_msg_parse(b.data, b.len, &m), DF_ERANGE);
	/* Promises frames it does not have. */
	raw_msg(&b, 1, 1, 2, 2, 2, "m1", ok_ids);
	assert_int_equal(wire_msg_parse(b.data, b.len, &m), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "frame 0"));
	/* Claims 2^32-1 neurons it does not have: no allocation, clean error. */
	raw_msg(&b, 1, 1, 0, 0, 2, "m1", NULL);
	b.data[32] = b.data[33] = b.data[34] = b.data[35] = 0xff;
	assert_int_equal(wire_msg_parse(b.data, b.len, &m), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "truncated in neurons"));
	assert_null(m.model);

	/* Encoder side. */
	wire_msg e = {WIRE_MSG_REQUEST, 1, 1, 0, "", NULL, 0, NULL, 0};
	b.len = 0;
	assert_int_equal(wire_msg_encode(&b, &e), DF_EINVAL);
	e.model = NULL;
	assert_int_equal(wire_msg_encode(&b, &e), DF_EINVAL);
	char longname[WIRE_MAX_MODEL_NAME + 2];
	memset(longname, 'x', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	e.model = longname;
	assert_int_equal(wire_msg_encode(&b, &e), DF_EINVAL);
	e.model = "ok";
	int32_t edup[] = {4, 4};
	e.neurons = edup;
	e.n_neurons = 2;
	assert_int_equal(wire_msg_encode(&b, &e), DF_ERANGE);
	e.n_neurons = 0;
	e.kind = (wire_msg_kind)0;
	assert_int_equal(wire_msg_encode(&b, &e), DF_EINVAL);
	assert_int_equal(b.len, 0);
	/* A bad frame in the middle undoes the whole message. */
	e.kind = WIRE_MSG_REQUEST;
	int64_t d[] = {3};
	tensor *t = make_tensor(1, d);
	int32_t bad_ids[] = {0, 1, 9};
	wire_frame fr[2] = {{t, WIRE_F32, WIRE_WHOLE, 0, NULL, 0},
			    {t, WIRE_F32, 0, 4, bad_ids, 3}};
	e.frames = fr;
	e.n_frames = 2;
	raw_put(&b, 0x77, 1);
	assert_int_equal(wire_msg_encode(&b, &e), DF_ERANGE);
	assert_non_null(strstr(df_err_msg(), "frame 1"));
	assert_int_equal(b.len, 1);
	tensor_destroy(t);
	wire_buf_free(&b);
}

/* What the gateway sends each call of a round: the shared frame 0 encoded
 * once, then per call its envelope + that frame + its side-input frames.
 * Must be byte for byte wire_msg_encode() of the same message, for random
 * shapes, ids, dtypes and request fields. */
static void envelope_plus_shared_frame_is_wire_msg_encode(void **state)
{
	(void)state;
	for (int rep = 0; rep < 200; rep++) {
		wire_dtype dt = (rep & 1) ? WIRE_F16 : WIRE_F32;
		int ndim = 2 + (int)(rnd() % 3);
		int64_t dims[4];
		for (int i = 0; i < ndim; i++)
			dims[i] = 1 + (int64_t)(rnd() % 6);
		uint32_t total = 1 + rnd() % 40;
		tensor *in = make_tensor(ndim, dims);
		/* Some special values, which f16 rounds or saturates. */
		float *x = tensor_f32(in);
		x[0] = (rep % 3 == 0) ? 1e6f : (rep % 3 == 1) ? NAN : 1.0f + 0x1p-11f;
		if (in->numel > 1)
			x[in->numel - 1] = -0.0f;
		int n_side = (int)(rnd() % 3);
		int32_t *perm[4] = {0};
		tensor *side[4][2] = {{0}};
		wire_buf shared = {0}, full = {0}, mine = {0};
		wire_frame f0 = {in, dt, WIRE_WHOLE, 0, NULL, 0};
		assert_int_equal(wire_frame_encode(&shared, &f0), DF_OK);
		for (int call = 0; call < 4; call++) {
			perm[call] = pick_ids(total);
			size_t n = 1 + rnd() % total;
			wire_frame frames[3] = {f0};
			for (int k = 0; k < n_side; k++) {
				int64_t sd[4] = {1 + (int64_t)(rnd() % 2), (int64_t)n,
						 1 + (int64_t)(rnd() % 4), 2};
				side[call][k] = make_tensor(4, sd);
				frames[1 + k] = (wire_frame){side[call][k], dt, 1, total,
							     perm[call], n};
			}
			wire_msg m = {WIRE_MSG_REQUEST, ((uint64_t)rnd() << 32) | rnd(),
				      rnd(), rnd() % 100, "model-x", perm[call], n,
				      frames, (size_t)(1 + n_side)};
			full.len = 0;
			assert_int_equal(wire_msg_encode(&full, &m), DF_OK);
			mine.len = 0;
			wire_msg env = m;
			env.frames = NULL; /* not read */
			assert_int_equal(wire_msg_encode_envelope(&mine, &env), DF_OK);
			assert_int_equal(wire_buf_reserve(&mine, shared.len), DF_OK);
			memcpy(mine.data + mine.len, shared.data, shared.len);
			mine.len += shared.len;
			for (int k = 0; k < n_side; k++)
				assert_int_equal(wire_frame_encode(&mine, &frames[1 + k]),
						 DF_OK);
			assert_int_equal(mine.len, full.len);
			assert_memory_equal(mine.data, full.data, full.len);
			wire_msg back = {0};
			assert_int_equal(wire_msg_parse(mine.data, mine.len, &back), DF_OK);
			assert_int_equal(back.n_frames, 1 + n_side);
			assert_frames_equal(&f0, &back.frames[0]);
			wire_msg_free(&back);
		}
		for (int call = 0; call < 4; call++) {
			free(perm[call]);
			for (int k = 0; k < 2; k++)
				tensor_destroy(side[call][k]);
		}
		tensor_destroy(in);
		wire_buf_free(&shared);
		wire_buf_free(&full);
		wire_buf_free(&mine);
	}
	/* The envelope alone: checked like wire_msg_encode's, nothing
	 * appended on failure, frames never read. */
	wire_buf b = {0};
	wire_msg e = {WIRE_MSG_RESPONSE, 1, 2, 3, "m", NULL, 0,
		      (wire_frame *)0x1, 5};
	assert_int_equal(wire_msg_encode_envelope(&b, &e), DF_OK);
	assert_int_equal(b.len, WIRE_MSG_HEADER + 1 + 4);
	size_t len = b.len;
	e.n_frames = WIRE_MAX_FRAMES + 1;
	assert_int_equal(wire_msg_encode_envelope(&b, &e), DF_ETOOBIG);
	e.n_frames = 0;
	int32_t dup[] = {3, 3};
	e.neurons = dup;
	e.n_neurons = 2;
	assert_int_equal(wire_msg_encode_envelope(&b, &e), DF_ERANGE);
	assert_int_equal(b.len, len);
	wire_buf_free(&b);
}

static void garbage_never_parses(void **state)
{
	(void)state;
	unsigned char buf[512];
	for (int rep = 0; rep < 20000; rep++) {
		size_t len = rnd() % sizeof buf;
		for (size_t i = 0; i < len; i++)
			buf[i] = (unsigned char)rnd();
		if (len >= 4 && (rep & 1))
			memcpy(buf, (rep & 2) ? "DFW1" : "DFM1", 4);
		wire_frame g = sentinel_frame;
		size_t used = 0;
		if (wire_frame_parse(buf, len, &used, &g) == DF_OK)
			fail_msg("random %zu bytes parsed as a frame", len);
		wire_msg m = {0};
		if (wire_msg_parse(buf, len, &m) == DF_OK)
			fail_msg("random %zu bytes parsed as a message", len);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(f16_every_half_round_trips),
		cmocka_unit_test(f16_known_values_and_ties_to_even),
		cmocka_unit_test(f16_matches_compiler_conversion),
		cmocka_unit_test(frame_layout_is_the_documented_one),
		cmocka_unit_test(msg_layout_is_the_documented_one),
		cmocka_unit_test(frames_round_trip_every_rank),
		cmocka_unit_test(scalar_and_special_values_round_trip),
		cmocka_unit_test(big_frame_round_trips),
		cmocka_unit_test(messages_round_trip),
		cmocka_unit_test(borrowing_parse_views_aligned_f32_payloads),
		cmocka_unit_test(every_frame_truncation_is_rejected),
		cmocka_unit_test(every_message_truncation_is_rejected),
		cmocka_unit_test(every_bit_flip_is_detected),
		cmocka_unit_test(malformed_headers_are_rejected_by_field),
		cmocka_unit_test(overflowing_dims_are_rejected),
		cmocka_unit_test(bad_channel_ids_are_rejected),
		cmocka_unit_test(trailing_bytes_are_rejected),
		cmocka_unit_test(malformed_messages_are_rejected),
		cmocka_unit_test(envelope_plus_shared_frame_is_wire_msg_encode),
		cmocka_unit_test(garbage_never_parses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
