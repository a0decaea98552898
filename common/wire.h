/*
 * wire.h - the binary format in which tensors travel between the gateway
 * and the workers (never JSON). This comment is the contract between the
 * services; change it only together with WIRE_VERSION / WIRE_MSG_VERSION.
 *
 * All integers are unsigned little-endian; offsets are in bytes. Nothing is
 * padded or aligned. Every byte is checked on parse: the input is untrusted.
 *
 * FRAME - one tensor, or one channel slice of a tensor
 *
 *   offset            size          field
 *   0                 4             magic "DFW1" (0x44 0x46 0x57 0x31)
 *   4                 2             version = 1 (WIRE_VERSION)
 *   6                 2             dtype: 0 = f32 (IEEE 754 binary32),
 *                                          1 = f16 (IEEE 754 binary16)
 *   8                 2             flags = 0 (every bit reserved)
 *   10                2             ndim: 0..8 (TENSOR_MAX_DIMS)
 *   12                2             channel_axis: 0..ndim-1, or 0xFFFF for
 *                                   a whole tensor
 *   14                2             reserved = 0
 *   16                4             channels_total: size of the full tensor
 *                                   along channel_axis (0 for whole)
 *   20                4             n_channels = dims[channel_axis]
 *                                   (0 for whole)
 *   24                8*ndim        dims[ndim], each <= 2^63-1
 *   D = 24+8*ndim     4*n_channels  ids[n_channels]: the slice's channel
 *                                   ids in order, each < channels_total
 *                                   and < 2^31, pairwise distinct
 *   P = D+4*n_channels 8            payload_len = product(dims) * 4 (f32)
 *                                   or * 2 (f16)
 *   P+8               payload_len   payload: elements in row-major (C)
 *                                   order, each little-endian
 *   C = P+8+payload_len 4           crc32c: CRC-32C of bytes [0, C)
 *   frame size = C + 4
 *
 *   Slice i along channel_axis of the payload is channel ids[i] of the full
 *   tensor, whose shape is dims with dims[channel_axis] = channels_total.
 *   The decoded tensor must fit TENSOR_MAX_BYTES as f32. A whole tensor
 *   (channel_axis 0xFFFF) has channels_total = n_channels = 0; a scalar
 *   (ndim 0) is always whole. f16 values are rounded to nearest, ties to
 *   even, on encode (overflow gives infinity; NaN stays NaN, made quiet)
 *   and widened exactly on decode, so a parsed frame always holds an f32
 *   tensor.
 *
 * MESSAGE - a stage call or its answer: an envelope, then frames
 *
 *   offset            size          field
 *   0                 4             magic "DFM1" (0x44 0x46 0x4D 0x31)
 *   4                 2             version = 1 (WIRE_MSG_VERSION)
 *   6                 2             kind: 1 = stage request,
 *                                         2 = stage response
 *   8                 8             request_id
 *   16                8             partition_version
 *   24                4             stage: stage index in the model
 *   28                4             n_frames: 0..64 (WIRE_MAX_FRAMES)
 *   32                4             n_neurons
 *   36                2             model_len: 1..255 (WIRE_MAX_MODEL_NAME)
 *   38                2             reserved = 0
 *   40                model_len     model name, no NUL byte
 *   M = 40+model_len  4*n_neurons   neurons[n_neurons]: neuron ids (output
 *                                   channels of the stage), each < 2^31,
 *                                   pairwise distinct. Request: the
 *                                   neurons the worker must compute, in
 *                                   the order of its output slice.
 *                                   Response: empty by convention (the
 *                                   output frames' ids say what was
 *                                   computed).
 *   E = M+4*n_neurons 4             crc32c: CRC-32C of bytes [0, E)
 *   E+4               ...           n_frames FRAMEs back to back; the
 *                                   message ends exactly after the last
 *
 *   Frame order is the stage's input order: in a request, frame 0 is the
 *   stage input (whole) and frames 1.. the side inputs sliced to the
 *   worker's neurons; in a response, the stage output slice(s).
 *
 * Parse errors: DF_EINVAL for malformed structure (bad magic, truncation,
 * nonzero reserved fields, length mismatches, trailing bytes), DF_ENOTSUP
 * for an unknown version, dtype, flag or kind, DF_ETOOBIG for shapes beyond
 * TENSOR_MAX_BYTES or counts beyond the limits above, DF_ERANGE for bad
 * channel or neuron ids, DF_ECORRUPT for a checksum mismatch. The detail
 * message (df_err_msg()) names the field and, where useful, its offset.
 */
#ifndef DF_WIRE_H
#define DF_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "tensor.h"

#define WIRE_VERSION        1
#define WIRE_MSG_VERSION    1
#define WIRE_WHOLE          (-1) /* channel_axis of a whole tensor */
#define WIRE_MAX_FRAMES     64
#define WIRE_MAX_MODEL_NAME 255
#define WIRE_FRAME_HEADER   24 /* fixed part of a frame, before dims */
#define WIRE_MSG_HEADER     40 /* fixed part of an envelope */

typedef enum wire_dtype {
	WIRE_F32 = 0,
	WIRE_F16 = 1,
	WIRE_DTYPE_COUNT
} wire_dtype;

typedef enum wire_msg_kind {
	WIRE_MSG_REQUEST = 1,
	WIRE_MSG_RESPONSE = 2
} wire_msg_kind;

/* A growable byte buffer. Start it zeroed ({0}) and free with
 * wire_buf_free(). Encoders append; on failure they leave len as it was. */
typedef struct wire_buf {
	unsigned char *data; /* owned, len bytes used of cap */
	size_t len;
	size_t cap;
} wire_buf;

/* Makes room for `extra` more bytes. DF_ENOMEM / DF_ETOOBIG on failure. */
df_err wire_buf_reserve(wire_buf *b, size_t extra);

/* Frees the data and zeroes the buffer. NULL is a no-op. */
void wire_buf_free(wire_buf *b);

/*
 * One frame. For wire_frame_encode() every pointer is borrowed; a frame
 * filled by wire_frame_parse() owns t and ids (free with wire_frame_free()).
 */
typedef struct wire_frame {
	tensor *t;               /* f32 tensor (the slice, or the whole tensor) */
	wire_dtype dtype;        /* encoding on the wire */
	int channel_axis;        /* 0..t->ndim-1, or WIRE_WHOLE */
	uint32_t channels_total; /* full tensor's size along channel_axis */
	int32_t *ids;            /* n_ids channel ids (NULL when n_ids is 0) */
	size_t n_ids;            /* = t->dims[channel_axis]; 0 when whole */
} wire_frame;

/*
 * Appends f as one frame to b. f->t must be f32 (DF_ENOTSUP otherwise); the
 * ids must satisfy the rules of the layout above (DF_EINVAL / DF_ERANGE
 * naming the problem), so everything encoded parses back.
 */
df_err wire_frame_encode(wire_buf *b, const wire_frame *f);

/*
 * Parses one frame at the start of buf[0..len). With consumed non-NULL,
 * bytes after the frame are allowed and *consumed receives the frame's
 * size; with consumed NULL the frame must fill buf exactly. On success *out
 * owns a new tensor and ids; on failure *out and *consumed are untouched.
 */
df_err wire_frame_parse(const void *buf, size_t len, size_t *consumed,
			wire_frame *out);

/* Frees what a parsed frame owns and zeroes it. NULL is a no-op. */
void wire_frame_free(wire_frame *f);

/*
 * A message. For wire_msg_encode() everything is borrowed; one filled by
 * wire_msg_parse() owns model, neurons, frames and what they hold (free
 * with wire_msg_free()).
 */
typedef struct wire_msg {
	wire_msg_kind kind;
	uint64_t request_id;
	uint64_t partition_version;
	uint32_t stage;
	char *model;        /* NUL-terminated, 1..WIRE_MAX_MODEL_NAME bytes */
	int32_t *neurons;   /* n_neurons ids (NULL when 0) */
	size_t n_neurons;
	wire_frame *frames; /* n_frames frames (NULL when 0) */
	size_t n_frames;
} wire_msg;

/* Appends m (envelope and frames) to b. */
df_err wire_msg_encode(wire_buf *b, const wire_msg *m);

/*
 * Appends only m's envelope (header, model name, neurons, checksum),
 * announcing m->n_frames frames; m->frames is not read. The message is
 * complete once the n_frames frames follow it, each as wire_frame_encode()
 * writes it. Each checksum covers only its own envelope or frame, so a
 * frame's bytes do not depend on the message around them: a frame encoded
 * once (e.g. the stage input every call of a round carries) can be sent
 * after any number of envelopes, and the concatenation is byte for byte
 * what wire_msg_encode() gives for the same message.
 */
df_err wire_msg_encode_envelope(wire_buf *b, const wire_msg *m);

/* Parses buf[0..len) as exactly one message. On success *out owns
 * everything; on failure it is untouched. */
df_err wire_msg_parse(const void *buf, size_t len, wire_msg *out);

/* Same as wire_msg_parse() (same checks, same errors), except that the
 * tensor of an f32 frame whose payload is aligned for float in memory is a
 * view into buf (tensor_create_view()) instead of a copy: buf must stay
 * alive and unchanged until wire_msg_free(). For a receiver that is done
 * with the message before it frees the bytes (the worker's stage calls). */
df_err wire_msg_parse_borrow(const void *buf, size_t len, wire_msg *out);

/* Frees what a parsed message owns and zeroes it. NULL is a no-op. */
void wire_msg_free(wire_msg *m);

/* IEEE 754 binary16 conversions used for WIRE_F16: round to nearest, ties
 * to even; overflow to infinity; NaN stays NaN (quiet). Widening is exact. */
uint16_t wire_f32_to_f16(float f);
float wire_f16_to_f32(uint16_t h);

#endif
