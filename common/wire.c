/*
 * wire.c - encoder and strict parser for the frames and messages described
 * in wire.h.
 *
 * The parser reads through a bounds-checked cursor and never allocates for
 * a count it has not first seen backed by bytes in the input, so memory use
 * is bounded by the input size (twice the payload for f16, which widens).
 * It validates every header field, then the checksum, then the ids, and
 * only then allocates and decodes. Anything the encoder emits parses back;
 * the encoder refuses anything the parser would refuse.
 */
#include "wire.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crc32c.h"

static const unsigned char frame_magic[4] = {'D', 'F', 'W', '1'};
static const unsigned char msg_magic[4] = {'D', 'F', 'M', '1'};

#define WIRE_AXIS_WHOLE_CODE 0xFFFFu
#define WIRE_ID_LIMIT        ((uint64_t)INT32_MAX + 1)

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define WIRE_HOST_LE 1
#else
#define WIRE_HOST_LE 0
#endif

/* ---- f16 ---------------------------------------------------------------- */

uint16_t wire_f32_to_f16(float f)
{
	uint32_t x;
	memcpy(&x, &f, sizeof x);
	uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
	uint32_t exp = (x >> 23) & 0xffu;
	uint32_t mant = x & 0x7fffffu;

	if (exp == 0xff) /* infinity, or NaN kept quiet with its top bits */
		return (uint16_t)(sign | (mant ? 0x7e00u | (mant >> 13) : 0x7c00u));
	int32_t e = (int32_t)exp - 127 + 15;
	if (e >= 31)
		return (uint16_t)(sign | 0x7c00u);
	if (e <= 0) {
		/* f16 subnormal (units of 2^-24) or zero. Below 2^-25 everything
		 * rounds to zero, including f32 subnormals. */
		if (e < -10)
			return sign;
		mant |= 0x800000u;
		uint32_t shift = (uint32_t)(14 - e); /* 14..24 */
		uint32_t h = mant >> shift;
		uint32_t rem = mant & ((1u << shift) - 1);
		uint32_t half = 1u << (shift - 1);
		if (rem > half || (rem == half && (h & 1)))
			h++; /* may carry into the smallest normal: still right */
		return (uint16_t)(sign | h);
	}
	uint32_t h = ((uint32_t)e << 10) | (mant >> 13);
	uint32_t rem = mant & 0x1fffu;
	if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
		h++; /* a carry may reach 0x7c00, which is infinity: right */
	return (uint16_t)(sign | h);
}

float wire_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu;
	uint32_t mant = h & 0x3ffu;
	uint32_t x;
	float f;

	if (exp == 0x1f) {
		x = sign | 0x7f800000u | (mant << 13);
	} else if (exp == 0) {
		f = (float)mant * 0x1p-24f; /* exact */
		memcpy(&x, &f, sizeof x);
		x |= sign;
	} else {
		x = sign | ((exp + 112) << 23) | (mant << 13);
	}
	memcpy(&f, &x, sizeof f);
	return f;
}

/* ---- buffer and little-endian helpers ----------------------------------- */

df_err wire_buf_reserve(wire_buf *b, size_t extra)
{
	if (extra <= b->cap - b->len)
		return DF_OK;
	if (extra > SIZE_MAX / 2 - b->len)
		return df_errf(DF_ETOOBIG, "wire buffer: %zu more bytes overflow",
			       extra);
	size_t need = b->len + extra;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap *= 2;
	unsigned char *d = realloc(b->data, cap);
	if (!d)
		return df_errf(DF_ENOMEM, "wire buffer: cannot grow to %zu bytes",
			       cap);
	b->data = d;
	b->cap = cap;
	return DF_OK;
}

void wire_buf_free(wire_buf *b)
{
	if (!b)
		return;
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* Callers reserve first; these never fail. */
static void put_u16(wire_buf *b, uint16_t v)
{
	unsigned char *p = b->data + b->len;
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	b->len += 2;
}

static void put_u32(wire_buf *b, uint32_t v)
{
	unsigned char *p = b->data + b->len;
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
	b->len += 4;
}

static void put_u64(wire_buf *b, uint64_t v)
{
	unsigned char *p = b->data + b->len;
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
	b->len += 8;
}

static void put_bytes(wire_buf *b, const void *src, size_t n)
{
	if (n)
		memcpy(b->data + b->len, src, n);
	b->len += n;
}

/* Copies n bytes from src to dst and returns crc advanced over them
 * (crc32c_update semantics), in blocks that stay in cache between the copy
 * and the CRC: one pass over a tensor-sized buffer instead of two. */
#define WIRE_COPY_BLOCK (64 * 1024)
static uint32_t copy_crc(unsigned char *dst, const unsigned char *src,
			 size_t n, uint32_t crc)
{
	for (size_t off = 0; off < n; off += WIRE_COPY_BLOCK) {
		size_t k = n - off < WIRE_COPY_BLOCK ? n - off : WIRE_COPY_BLOCK;
		memcpy(dst + off, src + off, k);
		crc = crc32c_update(crc, dst + off, k);
	}
	return crc;
}

static uint16_t get_u16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const unsigned char *p)
{
	return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* A bounds-checked reader over untrusted bytes. */
typedef struct cursor {
	const unsigned char *p;
	size_t len;
	size_t off;
	const char *what; /* "wire frame" or "wire message", for messages */
} cursor;

/* Makes sure n more bytes are there for field; returns their start. */
static df_err cur_take(cursor *c, size_t n, const char *field,
		       const unsigned char **at)
{
	if (n > c->len - c->off)
		return df_errf(DF_EINVAL,
			       "%s: truncated in %s (offset %zu needs %zu bytes, %zu left)",
			       c->what, field, c->off, n, c->len - c->off);
	*at = c->p + c->off;
	c->off += n;
	return DF_OK;
}

/* Re-records the current detail message behind "wire message: frame i
 * (offset off): ". */
static df_err frame_err(df_err err, size_t index, size_t off)
{
	char saved[400];
	snprintf(saved, sizeof saved, "%s", df_err_msg());
	return df_errf(err, "wire message: frame %zu (offset %zu): %s", index,
		       off, saved);
}

static int cmp_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	return (x > y) - (x < y);
}

/* Checks ids are in [0, limit) and pairwise distinct. what names the list
 * in messages. */
static df_err check_ids(const int32_t *ids, size_t n, uint64_t limit,
			const char *what)
{
	df_err err = DF_OK;
	int32_t *sorted = NULL;

	for (size_t i = 0; i < n; i++)
		if (ids[i] < 0 || (uint64_t)ids[i] >= limit)
			return df_errf(DF_ERANGE,
				       "%s: id %lld at index %zu is outside 0..%lld",
				       what, (long long)ids[i], i,
				       (long long)limit - 1);
	if (n < 2)
		return DF_OK;
	sorted = malloc(n * sizeof *sorted);
	if (!sorted)
		return df_errf(DF_ENOMEM, "%s: cannot check %zu ids", what, n);
	memcpy(sorted, ids, n * sizeof *sorted);
	qsort(sorted, n, sizeof *sorted, cmp_i32);
	for (size_t i = 1; i < n; i++)
		if (sorted[i] == sorted[i - 1]) {
			err = df_errf(DF_ERANGE, "%s: id %d appears twice", what,
				      (int)sorted[i]);
			goto out;
		}
out:
	free(sorted);
	return err;
}

/* ---- frames ------------------------------------------------------------- */

df_err wire_frame_encode(wire_buf *b, const wire_frame *f)
{
	if (!b || !f || !f->t)
		return df_errf(DF_EINVAL, "wire frame: no tensor to encode");
	const tensor *t = f->t;
	if (t->dtype != TENSOR_F32)
		return df_errf(DF_ENOTSUP, "wire frame: tensor dtype %s, only f32 travels",
			       tensor_dtype_name(t->dtype));
	if ((unsigned)f->dtype >= WIRE_DTYPE_COUNT)
		return df_errf(DF_ENOTSUP, "wire frame: unknown wire dtype %d",
			       (int)f->dtype);
	if (t->ndim < 0 || t->ndim > TENSOR_MAX_DIMS)
		return df_errf(DF_EINVAL, "wire frame: rank %d outside 0..%d",
			       t->ndim, TENSOR_MAX_DIMS);
	size_t numel = 0;
	df_err err = tensor_shape_numel(t->ndim, t->dims, TENSOR_F32, &numel);
	if (err)
		return err;
	if (numel != t->numel)
		return df_errf(DF_EINVAL, "wire frame: tensor numel %zu does not match its shape (%zu)",
			       t->numel, numel);
	if (f->channel_axis == WIRE_WHOLE) {
		if (f->n_ids != 0 || f->channels_total != 0)
			return df_errf(DF_EINVAL, "wire frame: a whole tensor carries no channel ids");
	} else {
		if (f->channel_axis < 0 || f->channel_axis >= t->ndim)
			return df_errf(DF_EINVAL, "wire frame: channel_axis %d outside 0..%d",
				       f->channel_axis, t->ndim - 1);
		if ((int64_t)f->n_ids != t->dims[f->channel_axis])
			return df_errf(DF_EINVAL, "wire frame: %zu channel ids for %lld channels on axis %d",
				       f->n_ids, (long long)t->dims[f->channel_axis],
				       f->channel_axis);
		if (f->n_ids && !f->ids)
			return df_errf(DF_EINVAL, "wire frame: channel ids missing");
		uint64_t limit = f->channels_total < WIRE_ID_LIMIT ?
					 f->channels_total : WIRE_ID_LIMIT;
		err = check_ids(f->ids, f->n_ids, limit, "wire frame channel ids");
		if (err)
			return err;
	}

	/* numel * 4 <= TENSOR_MAX_BYTES and n_ids <= numel (or 0), so none of
	 * this can overflow a 64-bit size_t; check anyway for 32-bit hosts. */
	size_t esize = f->dtype == WIRE_F16 ? 2 : 4;
	size_t payload = numel * esize;
	size_t fixed = WIRE_FRAME_HEADER + 8 * (size_t)t->ndim + 8 + 4;
	if (f->n_ids > (SIZE_MAX - fixed) / 4 ||
	    payload > SIZE_MAX - fixed - 4 * f->n_ids)
		return df_errf(DF_ETOOBIG, "wire frame: frame size overflows");
	size_t total = fixed + 4 * f->n_ids + payload;
	err = wire_buf_reserve(b, total);
	if (err)
		return err;

	size_t start = b->len;
	put_bytes(b, frame_magic, 4);
	put_u16(b, WIRE_VERSION);
	put_u16(b, (uint16_t)f->dtype);
	put_u16(b, 0);
	put_u16(b, (uint16_t)t->ndim);
	put_u16(b, f->channel_axis == WIRE_WHOLE ? WIRE_AXIS_WHOLE_CODE
						 : (uint16_t)f->channel_axis);
	put_u16(b, 0);
	put_u32(b, f->channels_total);
	put_u32(b, (uint32_t)f->n_ids);
	for (int i = 0; i < t->ndim; i++)
		put_u64(b, (uint64_t)t->dims[i]);
	for (size_t i = 0; i < f->n_ids; i++)
		put_u32(b, (uint32_t)f->ids[i]);
	put_u64(b, (uint64_t)payload);
	const float *src = t->data;
	if (f->dtype != WIRE_F16 && WIRE_HOST_LE) {
		/* The common case: copy the payload and checksum it in one pass. */
		uint32_t crc = crc32c(b->data + start, b->len - start);
		crc = copy_crc(b->data + b->len, (const unsigned char *)src,
			       payload, crc);
		b->len += payload;
		put_u32(b, crc);
		return DF_OK;
	}
	if (f->dtype == WIRE_F16) {
		for (size_t i = 0; i < numel; i++)
			put_u16(b, wire_f32_to_f16(src[i]));
	} else {
		for (size_t i = 0; i < numel; i++) {
			uint32_t v;
			memcpy(&v, &src[i], sizeof v);
			put_u32(b, v);
		}
	}
	put_u32(b, crc32c(b->data + start, b->len - start));
	return DF_OK;
}

/* wire_frame_parse(); with borrow, an f32 payload aligned for float in
 * memory becomes a view into buf instead of a copy. */
static df_err parse_frame(const void *buf, size_t len, size_t *consumed,
			  bool borrow, wire_frame *out)
{
	cursor c = {buf, len, 0, "wire frame"};
	const unsigned char *h = NULL, *at = NULL;
	int64_t dims[TENSOR_MAX_DIMS] = {0};
	int32_t *ids = NULL;
	tensor *t = NULL;
	df_err err = DF_OK;

	if (!buf && len)
		return df_errf(DF_EINVAL, "wire frame: no buffer");
	if (len >= 4 && memcmp(buf, frame_magic, 4) != 0)
		return df_errf(DF_EINVAL, "wire frame: bad magic (expected \"DFW1\")");
	err = cur_take(&c, WIRE_FRAME_HEADER, "header", &h);
	if (err)
		return err;
	uint16_t version = get_u16(h + 4);
	uint16_t dtype = get_u16(h + 6);
	uint16_t flags = get_u16(h + 8);
	uint16_t ndim = get_u16(h + 10);
	uint16_t axis = get_u16(h + 12);
	uint16_t reserved = get_u16(h + 14);
	uint32_t total_ch = get_u32(h + 16);
	uint32_t n_ch = get_u32(h + 20);
	if (version != WIRE_VERSION)
		return df_errf(DF_ENOTSUP, "wire frame: version %u not supported (expected %d)",
			       version, WIRE_VERSION);
	if (dtype >= WIRE_DTYPE_COUNT)
		return df_errf(DF_ENOTSUP, "wire frame: unknown dtype %u", dtype);
	if (flags != 0)
		return df_errf(DF_ENOTSUP, "wire frame: unknown flags 0x%04x", flags);
	if (ndim > TENSOR_MAX_DIMS)
		return df_errf(DF_ETOOBIG, "wire frame: ndim %u exceeds %d", ndim,
			       TENSOR_MAX_DIMS);
	if (reserved != 0)
		return df_errf(DF_EINVAL, "wire frame: reserved field is 0x%04x, not 0",
			       reserved);
	if (axis == WIRE_AXIS_WHOLE_CODE) {
		if (total_ch != 0 || n_ch != 0)
			return df_errf(DF_EINVAL, "wire frame: whole tensor with channels_total %u, n_channels %u (both must be 0)",
				       total_ch, n_ch);
	} else if (axis >= ndim) {
		return df_errf(DF_EINVAL, "wire frame: channel_axis %u outside 0..%d",
			       axis, (int)ndim - 1);
	}

	err = cur_take(&c, 8 * (size_t)ndim, "dims", &at);
	if (err)
		return err;
	for (int i = 0; i < ndim; i++) {
		uint64_t d = get_u64(at + 8 * i);
		if (d > (uint64_t)INT64_MAX)
			return df_errf(DF_ETOOBIG, "wire frame: dims[%d] = %llu too large",
				       i, (unsigned long long)d);
		dims[i] = (int64_t)d;
	}
	size_t numel = 0;
	err = tensor_shape_numel(ndim, dims, TENSOR_F32, &numel);
	if (err) {
		char saved[400];
		snprintf(saved, sizeof saved, "%s", df_err_msg());
		return df_errf(err, "wire frame: dims: %s", saved);
	}
	if (axis != WIRE_AXIS_WHOLE_CODE && (int64_t)n_ch != dims[axis])
		return df_errf(DF_EINVAL, "wire frame: n_channels %u but dims[%u] = %lld",
			       n_ch, axis, (long long)dims[axis]);

#if SIZE_MAX / 4 < UINT32_MAX
	if (n_ch > SIZE_MAX / 4)
		return df_errf(DF_ETOOBIG, "wire frame: %u channel ids", n_ch);
#endif
	const unsigned char *id_bytes = NULL;
	err = cur_take(&c, 4 * (size_t)n_ch, "channel ids", &id_bytes);
	if (err)
		return err;
	err = cur_take(&c, 8, "payload_len", &at);
	if (err)
		return err;
	uint64_t payload_len = get_u64(at);
	size_t esize = dtype == WIRE_F16 ? 2 : 4;
	size_t expect = numel * esize; /* numel * 4 fits TENSOR_MAX_BYTES */
	if (payload_len != (uint64_t)expect)
		return df_errf(DF_EINVAL, "wire frame: payload_len %llu, shape needs %zu",
			       (unsigned long long)payload_len, expect);
	const unsigned char *payload = NULL;
	err = cur_take(&c, expect, "payload", &payload);
	if (err)
		return err;
	err = cur_take(&c, 4, "crc32c", &at);
	if (err)
		return err;
	if (!consumed && c.off != len)
		return df_errf(DF_EINVAL, "wire frame: %zu trailing bytes after the frame",
			       len - c.off);
	uint32_t want = get_u32(at);
	/* The tensor is allocated before the checksum is known so that the
	 * common case (f32 on a little-endian host) copies and checksums the
	 * payload in one pass; cur_take() bounded it by len. Every element is
	 * written below, so it needs no zeroing. */
	bool fused = dtype != WIRE_F16 && WIRE_HOST_LE;
	bool view = fused && borrow &&
		    (uintptr_t)payload % _Alignof(float) == 0;
	if (view) /* the payload is read-only through a const tensor anyway */
		err = tensor_create_view(TENSOR_F32, ndim, dims,
					 (void *)(uintptr_t)payload, &t);
	else
		err = tensor_create_uninit(TENSOR_F32, ndim, dims, &t);
	if (err)
		goto out;
	uint32_t got;
	if (fused && !view) {
		got = crc32c(buf, (size_t)(payload - (const unsigned char *)buf));
		got = copy_crc(t->data, payload, expect, got);
	} else {
		got = crc32c(buf, c.off - 4);
	}
	if (want != got) {
		err = df_errf(DF_ECORRUPT, "wire frame: checksum mismatch (frame says %08x, data gives %08x)",
			      want, got);
		goto out;
	}

	if (n_ch) {
		ids = malloc((size_t)n_ch * sizeof *ids);
		if (!ids) {
			err = df_errf(DF_ENOMEM, "wire frame: %u channel ids", n_ch);
			goto out;
		}
		for (uint32_t i = 0; i < n_ch; i++) {
			uint32_t v = get_u32(id_bytes + 4 * (size_t)i);
			if (v >= total_ch || v >= WIRE_ID_LIMIT) {
				err = df_errf(DF_ERANGE, "wire frame: channel id %u at index %u is outside 0..%lld",
					      v, i,
					      (long long)(total_ch < WIRE_ID_LIMIT ? total_ch : WIRE_ID_LIMIT) - 1);
				goto out;
			}
			ids[i] = (int32_t)v;
		}
		err = check_ids(ids, n_ch, WIRE_ID_LIMIT, "wire frame channel ids");
		if (err)
			goto out;
	}
	float *dst = t->data;
	if (dtype == WIRE_F16) {
		for (size_t i = 0; i < numel; i++)
			dst[i] = wire_f16_to_f32(get_u16(payload + 2 * i));
	} else if (fused) {
		/* copied with the checksum, or a view */
	} else {
		for (size_t i = 0; i < numel; i++) {
			uint32_t v = get_u32(payload + 4 * i);
			memcpy(&dst[i], &v, sizeof v);
		}
	}

	out->t = t;
	out->dtype = (wire_dtype)dtype;
	out->channel_axis = axis == WIRE_AXIS_WHOLE_CODE ? WIRE_WHOLE : (int)axis;
	out->channels_total = total_ch;
	out->ids = ids;
	out->n_ids = n_ch;
	if (consumed)
		*consumed = c.off;
	t = NULL;
	ids = NULL;
out:
	tensor_destroy(t);
	free(ids);
	return err;
}

df_err wire_frame_parse(const void *buf, size_t len, size_t *consumed,
			wire_frame *out)
{
	return parse_frame(buf, len, consumed, false, out);
}

void wire_frame_free(wire_frame *f)
{
	if (!f)
		return;
	tensor_destroy(f->t);
	free(f->ids);
	memset(f, 0, sizeof *f);
}

/* ---- messages ----------------------------------------------------------- */

/* The envelope of m; with frames set, m->frames must be there too. */
static df_err encode_envelope(wire_buf *b, const wire_msg *m, bool frames)
{
	if (!b || !m)
		return df_errf(DF_EINVAL, "wire message: nothing to encode");
	if (m->kind != WIRE_MSG_REQUEST && m->kind != WIRE_MSG_RESPONSE)
		return df_errf(DF_EINVAL, "wire message: unknown kind %d",
			       (int)m->kind);
	size_t model_len = m->model ? strlen(m->model) : 0;
	if (model_len == 0 || model_len > WIRE_MAX_MODEL_NAME)
		return df_errf(DF_EINVAL, "wire message: model name of %zu bytes (need 1..%d)",
			       model_len, WIRE_MAX_MODEL_NAME);
	if (m->n_frames > WIRE_MAX_FRAMES)
		return df_errf(DF_ETOOBIG, "wire message: %zu frames (at most %d)",
			       m->n_frames, WIRE_MAX_FRAMES);
	if (frames && m->n_frames && !m->frames)
		return df_errf(DF_EINVAL, "wire message: frames missing");
	if (m->n_neurons && !m->neurons)
		return df_errf(DF_EINVAL, "wire message: neuron ids missing");
	if (m->n_neurons > UINT32_MAX ||
	    m->n_neurons > (SIZE_MAX - WIRE_MSG_HEADER - WIRE_MAX_MODEL_NAME - 4) / 4)
		return df_errf(DF_ETOOBIG, "wire message: %zu neuron ids",
			       m->n_neurons);
	df_err err = check_ids(m->neurons, m->n_neurons, WIRE_ID_LIMIT,
			       "wire message neuron ids");
	if (err)
		return err;

	size_t start = b->len;
	err = wire_buf_reserve(b, WIRE_MSG_HEADER + model_len +
					  4 * m->n_neurons + 4);
	if (err)
		return err;
	put_bytes(b, msg_magic, 4);
	put_u16(b, WIRE_MSG_VERSION);
	put_u16(b, (uint16_t)m->kind);
	put_u64(b, m->request_id);
	put_u64(b, m->partition_version);
	put_u32(b, m->stage);
	put_u32(b, (uint32_t)m->n_frames);
	put_u32(b, (uint32_t)m->n_neurons);
	put_u16(b, (uint16_t)model_len);
	put_u16(b, 0);
	put_bytes(b, m->model, model_len);
	for (size_t i = 0; i < m->n_neurons; i++)
		put_u32(b, (uint32_t)m->neurons[i]);
	put_u32(b, crc32c(b->data + start, b->len - start));
	return DF_OK;
}

df_err wire_msg_encode_envelope(wire_buf *b, const wire_msg *m)
{
	return encode_envelope(b, m, false);
}

df_err wire_msg_encode(wire_buf *b, const wire_msg *m)
{
	size_t start = b ? b->len : 0;
	df_err err = encode_envelope(b, m, true);
	if (err)
		return err;
	for (size_t i = 0; i < m->n_frames; i++) {
		err = wire_frame_encode(b, &m->frames[i]);
		if (err) {
			err = frame_err(err, i, b->len - start);
			b->len = start;
			return err;
		}
	}
	return DF_OK;
}

static df_err parse_msg(const void *buf, size_t len, bool borrow,
			wire_msg *out)
{
	cursor c = {buf, len, 0, "wire message"};
	const unsigned char *h = NULL, *at = NULL;
	char *model = NULL;
	int32_t *neurons = NULL;
	wire_frame *frames = NULL;
	size_t n_parsed = 0;
	df_err err = DF_OK;

	if (!buf && len)
		return df_errf(DF_EINVAL, "wire message: no buffer");
	if (len >= 4 && memcmp(buf, msg_magic, 4) != 0)
		return df_errf(DF_EINVAL, "wire message: bad magic (expected \"DFM1\")");
	err = cur_take(&c, WIRE_MSG_HEADER, "header", &h);
	if (err)
		return err;
	uint16_t version = get_u16(h + 4);
	uint16_t kind = get_u16(h + 6);
	uint64_t request_id = get_u64(h + 8);
	uint64_t pversion = get_u64(h + 16);
	uint32_t stage = get_u32(h + 24);
	uint32_t n_frames = get_u32(h + 28);
	uint32_t n_neurons = get_u32(h + 32);
	uint16_t model_len = get_u16(h + 36);
	uint16_t reserved = get_u16(h + 38);
	if (version != WIRE_MSG_VERSION)
		return df_errf(DF_ENOTSUP, "wire message: version %u not supported (expected %d)",
			       version, WIRE_MSG_VERSION);
	if (kind != WIRE_MSG_REQUEST && kind != WIRE_MSG_RESPONSE)
		return df_errf(DF_ENOTSUP, "wire message: unknown kind %u", kind);
	if (n_frames > WIRE_MAX_FRAMES)
		return df_errf(DF_ETOOBIG, "wire message: n_frames %u exceeds %d",
			       n_frames, WIRE_MAX_FRAMES);
	if (model_len == 0 || model_len > WIRE_MAX_MODEL_NAME)
		return df_errf(DF_EINVAL, "wire message: model_len %u outside 1..%d",
			       model_len, WIRE_MAX_MODEL_NAME);
	if (reserved != 0)
		return df_errf(DF_EINVAL, "wire message: reserved field is 0x%04x, not 0",
			       reserved);
	const unsigned char *name = NULL;
	err = cur_take(&c, model_len, "model", &name);
	if (err)
		return err;
	if (memchr(name, 0, model_len))
		return df_errf(DF_EINVAL, "wire message: model name contains a NUL byte");
#if SIZE_MAX / 4 < UINT32_MAX
	if (n_neurons > SIZE_MAX / 4)
		return df_errf(DF_ETOOBIG, "wire message: %u neuron ids", n_neurons);
#endif
	const unsigned char *nb = NULL;
	err = cur_take(&c, 4 * (size_t)n_neurons, "neurons", &nb);
	if (err)
		return err;
	err = cur_take(&c, 4, "crc32c", &at);
	if (err)
		return err;
	uint32_t want = get_u32(at);
	uint32_t got = crc32c(buf, c.off - 4);
	if (want != got)
		return df_errf(DF_ECORRUPT, "wire message: envelope checksum mismatch (message says %08x, data gives %08x)",
			       want, got);

	model = malloc((size_t)model_len + 1);
	if (!model) {
		err = df_errf(DF_ENOMEM, "wire message: model name");
		goto out;
	}
	memcpy(model, name, model_len);
	model[model_len] = '\0';
	if (n_neurons) {
		neurons = malloc((size_t)n_neurons * sizeof *neurons);
		if (!neurons) {
			err = df_errf(DF_ENOMEM, "wire message: %u neuron ids",
				      n_neurons);
			goto out;
		}
		for (uint32_t i = 0; i < n_neurons; i++) {
			uint32_t v = get_u32(nb + 4 * (size_t)i);
			if (v >= WIRE_ID_LIMIT) {
				err = df_errf(DF_ERANGE, "wire message: neuron id %u at index %u exceeds %d",
					      v, i, INT32_MAX);
				goto out;
			}
			neurons[i] = (int32_t)v;
		}
		err = check_ids(neurons, n_neurons, WIRE_ID_LIMIT,
				"wire message neuron ids");
		if (err)
			goto out;
	}
	if (n_frames) {
		frames = calloc(n_frames, sizeof *frames);
		if (!frames) {
			err = df_errf(DF_ENOMEM, "wire message: %u frames", n_frames);
			goto out;
		}
	}
	for (; n_parsed < n_frames; n_parsed++) {
		size_t used = 0;
		err = parse_frame(c.p + c.off, len - c.off, &used, borrow,
				  &frames[n_parsed]);
		if (err) {
			err = frame_err(err, n_parsed, c.off);
			goto out;
		}
		c.off += used;
	}
	if (c.off != len) {
		err = df_errf(DF_EINVAL, "wire message: %zu trailing bytes after %u frames",
			      len - c.off, n_frames);
		goto out;
	}

	out->kind = (wire_msg_kind)kind;
	out->request_id = request_id;
	out->partition_version = pversion;
	out->stage = stage;
	out->model = model;
	out->neurons = neurons;
	out->n_neurons = n_neurons;
	out->frames = frames;
	out->n_frames = n_frames;
	model = NULL;
	neurons = NULL;
	frames = NULL;
	n_parsed = 0;
out:
	for (size_t i = 0; i < n_parsed; i++)
		wire_frame_free(&frames[i]);
	free(frames);
	free(neurons);
	free(model);
	return err;
}

df_err wire_msg_parse(const void *buf, size_t len, wire_msg *out)
{
	return parse_msg(buf, len, false, out);
}

df_err wire_msg_parse_borrow(const void *buf, size_t len, wire_msg *out)
{
	return parse_msg(buf, len, true, out);
}

void wire_msg_free(wire_msg *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->n_frames; i++)
		wire_frame_free(&m->frames[i]);
	free(m->frames);
	free(m->neurons);
	free(m->model);
	memset(m, 0, sizeof *m);
}
