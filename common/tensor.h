/*
 * tensor.h - dense, row-major (C order) tensors of f32 or i64.
 *
 * A tensor is a plain value type: callers may read dims and data directly.
 * Tensors made by tensor_create() and friends own their data; free them with
 * tensor_destroy(). Every size computation is checked for overflow before
 * allocating, because shapes come from untrusted files and frames.
 *
 * Channel helpers work on any axis ("channel" = one index along that axis):
 * tensor_gather() copies a chosen list of channels out, tensor_scatter()
 * writes them back. They are how stage outputs are split among devices and
 * reassembled at the gateway.
 */
#ifndef DF_TENSOR_H
#define DF_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define TENSOR_MAX_DIMS 8

/* Largest tensor accepted anywhere (bytes): far above any model we run,
 * far below what would exhaust the host. */
#define TENSOR_MAX_BYTES ((size_t)1 << 32)

typedef enum tensor_dtype {
	TENSOR_F32 = 0,
	TENSOR_I64,
	TENSOR_DTYPE_COUNT
} tensor_dtype;

typedef struct tensor {
	tensor_dtype dtype;
	int ndim;                       /* 0 (scalar) .. TENSOR_MAX_DIMS */
	int64_t dims[TENSOR_MAX_DIMS];  /* each >= 0; unused entries 0 */
	size_t numel;                   /* product of dims (1 for a scalar) */
	void *data;                     /* numel * element size bytes, owned
					   unless borrowed */
	bool borrowed;                  /* data is the caller's (a view made
					   by tensor_create_view()) */
} tensor;

/* Bytes per element of dtype (4 or 8). */
size_t tensor_dtype_size(tensor_dtype dtype);

/* Name of dtype ("f32", "i64"). */
const char *tensor_dtype_name(tensor_dtype dtype);

/* Number of elements of a shape, checking ndim, negative dims and overflow
 * of numel * element size against TENSOR_MAX_BYTES. *numel untouched on
 * failure. */
df_err tensor_shape_numel(int ndim, const int64_t *dims, tensor_dtype dtype,
			  size_t *numel);

/* New zero-filled tensor of the given shape. Free with tensor_destroy(). */
df_err tensor_create(tensor_dtype dtype, int ndim, const int64_t *dims,
		     tensor **out);

/* Same as tensor_create() but the data is left uninitialised: for callers
 * that overwrite every element at once (a decoder, a copy), which saves
 * zeroing a buffer that is about to be written anyway. */
df_err tensor_create_uninit(tensor_dtype dtype, int ndim, const int64_t *dims,
			    tensor **out);

/* New tensor of the given shape over data, which is not copied: the caller
 * keeps it alive and unchanged while the view lives, and tensor_destroy()
 * frees only the view. data must be aligned for dtype and hold the shape's
 * bytes. */
df_err tensor_create_view(tensor_dtype dtype, int ndim, const int64_t *dims,
			  void *data, tensor **out);

/* New deep copy of t. */
df_err tensor_clone(const tensor *t, tensor **out);

/* Frees t and its data. tensor_destroy(NULL) is a no-op. */
void tensor_destroy(tensor *t);

/* Size in bytes of t's data. */
size_t tensor_nbytes(const tensor *t);

/* Typed data pointers (NULL when the dtype does not match). Borrowed. */
float *tensor_f32(const tensor *t);
int64_t *tensor_i64(const tensor *t);

/* True if a and b have the same dtype and shape. */
int tensor_same_shape(const tensor *a, const tensor *b);

/* Writes "[1,3,224,224]" into buf (always NUL-terminated). */
void tensor_shape_str(int ndim, const int64_t *dims, char *buf, size_t len);

/*
 * New tensor holding channels ids[0..n) of src along axis, in that order
 * (its dims[axis] = n). Ids must be in range; repeats are allowed.
 */
df_err tensor_gather(const tensor *src, int axis, const int32_t *ids,
		     size_t n, tensor **out);

/*
 * Writes channel i of src into channel ids[i] of dst along axis. src and dst
 * must agree on every dim except axis, where src has n channels.
 */
df_err tensor_scatter(tensor *dst, int axis, const int32_t *ids, size_t n,
		      const tensor *src);

/* Largest |a-b| and largest |a-b| / max(|b|, floor) over two f32 tensors of
 * the same shape. */
df_err tensor_max_error(const tensor *a, const tensor *b, float floor,
			double *max_abs, double *max_rel);

#endif
