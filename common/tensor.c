/*
 * tensor.c - allocation with overflow checks, and channel gather/scatter.
 *
 * Gather and scatter view a tensor as [outer, channels, inner] around the
 * chosen axis and copy contiguous `inner` runs, so they cost one memcpy per
 * (outer, channel) pair.
 */
#include "tensor.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t tensor_dtype_size(tensor_dtype dtype)
{
	return dtype == TENSOR_I64 ? 8 : 4;
}

const char *tensor_dtype_name(tensor_dtype dtype)
{
	switch (dtype) {
	case TENSOR_F32:
		return "f32";
	case TENSOR_I64:
		return "i64";
	default:
		return "?";
	}
}

df_err tensor_shape_numel(int ndim, const int64_t *dims, tensor_dtype dtype,
			  size_t *numel)
{
	if (ndim < 0 || ndim > TENSOR_MAX_DIMS)
		return df_errf(DF_EINVAL, "tensor rank %d outside 0..%d", ndim,
			       TENSOR_MAX_DIMS);
	if ((unsigned)dtype >= TENSOR_DTYPE_COUNT)
		return df_errf(DF_EINVAL, "unknown tensor dtype %d", (int)dtype);
	size_t limit = TENSOR_MAX_BYTES / tensor_dtype_size(dtype);
	size_t n = 1;
	for (int i = 0; i < ndim; i++) {
		if (dims[i] < 0)
			return df_errf(DF_EINVAL, "tensor dim %d is negative (%lld)",
				       i, (long long)dims[i]);
		if (dims[i] == 0) {
			n = 0;
			continue;
		}
		if ((uint64_t)dims[i] > limit || (n != 0 && n > limit / (size_t)dims[i]))
			return df_errf(DF_ETOOBIG,
				       "tensor of shape with dim %d = %lld exceeds %zu bytes",
				       i, (long long)dims[i], (size_t)TENSOR_MAX_BYTES);
		n *= (size_t)dims[i];
	}
	*numel = n;
	return DF_OK;
}

/* A tensor header for a checked shape; data is set by the caller. */
static df_err header(tensor_dtype dtype, int ndim, const int64_t *dims,
		     tensor **out)
{
	size_t numel = 0;
	df_err err = tensor_shape_numel(ndim, dims, dtype, &numel);
	if (err)
		return err;
	tensor *t = calloc(1, sizeof *t);
	if (!t)
		return DF_ENOMEM;
	t->dtype = dtype;
	t->ndim = ndim;
	for (int i = 0; i < ndim; i++)
		t->dims[i] = dims[i];
	t->numel = numel;
	*out = t;
	return DF_OK;
}

static df_err create(tensor_dtype dtype, int ndim, const int64_t *dims,
		     bool zero, tensor **out)
{
	tensor *t = NULL;
	df_err err = header(dtype, ndim, dims, &t);
	if (err)
		return err;
	/* calloc(0) may return NULL; always allocate at least one element. */
	size_t n = t->numel ? t->numel : 1;
	t->data = zero ? calloc(n, tensor_dtype_size(dtype))
		       : malloc(n * tensor_dtype_size(dtype)); /* checked above */
	if (!t->data) {
		free(t);
		return df_errf(DF_ENOMEM, "cannot allocate tensor of %zu elements",
			       n);
	}
	*out = t;
	return DF_OK;
}

df_err tensor_create(tensor_dtype dtype, int ndim, const int64_t *dims,
		     tensor **out)
{
	return create(dtype, ndim, dims, true, out);
}

df_err tensor_create_uninit(tensor_dtype dtype, int ndim, const int64_t *dims,
			    tensor **out)
{
	return create(dtype, ndim, dims, false, out);
}

df_err tensor_create_view(tensor_dtype dtype, int ndim, const int64_t *dims,
			  void *data, tensor **out)
{
	tensor *t = NULL;
	df_err err = header(dtype, ndim, dims, &t);
	if (err)
		return err;
	if (!data) {
		free(t);
		return df_errf(DF_EINVAL, "tensor view: no data");
	}
	t->data = data;
	t->borrowed = true;
	*out = t;
	return DF_OK;
}

df_err tensor_clone(const tensor *t, tensor **out)
{
	tensor *c = NULL;
	df_err err = tensor_create_uninit(t->dtype, t->ndim, t->dims, &c);
	if (err)
		return err;
	memcpy(c->data, t->data, tensor_nbytes(t));
	*out = c;
	return DF_OK;
}

void tensor_destroy(tensor *t)
{
	if (!t)
		return;
	if (!t->borrowed)
		free(t->data);
	free(t);
}

size_t tensor_nbytes(const tensor *t)
{
	return t->numel * tensor_dtype_size(t->dtype);
}

float *tensor_f32(const tensor *t)
{
	return t->dtype == TENSOR_F32 ? (float *)t->data : NULL;
}

int64_t *tensor_i64(const tensor *t)
{
	return t->dtype == TENSOR_I64 ? (int64_t *)t->data : NULL;
}

int tensor_same_shape(const tensor *a, const tensor *b)
{
	if (a->dtype != b->dtype || a->ndim != b->ndim)
		return 0;
	for (int i = 0; i < a->ndim; i++)
		if (a->dims[i] != b->dims[i])
			return 0;
	return 1;
}

void tensor_shape_str(int ndim, const int64_t *dims, char *buf, size_t len)
{
	size_t used = 0;

	if (len == 0)
		return;
	buf[0] = '\0';
	used += (size_t)snprintf(buf, len, "[");
	for (int i = 0; i < ndim && used < len; i++)
		used += (size_t)snprintf(buf + used, len - used, "%s%lld",
					 i ? "," : "", (long long)dims[i]);
	if (used < len)
		snprintf(buf + used, len - used, "]");
}

/* Splits t's shape around axis into outer * channels * inner. */
static df_err split_axis(const tensor *t, int axis, size_t *outer,
			 size_t *inner)
{
	if (axis < 0 || axis >= t->ndim)
		return df_errf(DF_EINVAL, "axis %d out of range for rank %d", axis,
			       t->ndim);
	size_t o = 1, in = 1;
	for (int i = 0; i < axis; i++)
		o *= (size_t)t->dims[i];
	for (int i = axis + 1; i < t->ndim; i++)
		in *= (size_t)t->dims[i];
	*outer = o;
	*inner = in;
	return DF_OK;
}

static df_err check_ids(const int32_t *ids, size_t n, int64_t channels)
{
	for (size_t i = 0; i < n; i++)
		if (ids[i] < 0 || ids[i] >= channels)
			return df_errf(DF_ERANGE, "channel id %d outside 0..%lld",
				       ids[i], (long long)channels - 1);
	return DF_OK;
}

df_err tensor_gather(const tensor *src, int axis, const int32_t *ids,
		     size_t n, tensor **out)
{
	size_t outer = 0, inner = 0;
	df_err err = split_axis(src, axis, &outer, &inner);
	if (err)
		return err;
	err = check_ids(ids, n, src->dims[axis]);
	if (err)
		return err;
	int64_t dims[TENSOR_MAX_DIMS];
	memcpy(dims, src->dims, sizeof dims);
	dims[axis] = (int64_t)n;
	tensor *t = NULL;
	err = tensor_create(src->dtype, src->ndim, dims, &t);
	if (err)
		return err;
	size_t es = tensor_dtype_size(src->dtype);
	size_t run = inner * es;
	size_t c_src = (size_t)src->dims[axis];
	const char *s = src->data;
	char *d = t->data;
	for (size_t o = 0; o < outer; o++)
		for (size_t i = 0; i < n; i++)
			memcpy(d + (o * n + i) * run,
			       s + (o * c_src + (size_t)ids[i]) * run, run);
	*out = t;
	return DF_OK;
}

df_err tensor_scatter(tensor *dst, int axis, const int32_t *ids, size_t n,
		      const tensor *src)
{
	size_t outer = 0, inner = 0;
	df_err err = split_axis(dst, axis, &outer, &inner);
	if (err)
		return err;
	if (src->dtype != dst->dtype || src->ndim != dst->ndim ||
	    src->dims[axis] != (int64_t)n)
		return df_errf(DF_EINVAL, "scatter source does not match %zu channels",
			       n);
	for (int i = 0; i < dst->ndim; i++)
		if (i != axis && src->dims[i] != dst->dims[i])
			return df_errf(DF_EINVAL, "scatter source dim %d is %lld, expected %lld",
				       i, (long long)src->dims[i], (long long)dst->dims[i]);
	err = check_ids(ids, n, dst->dims[axis]);
	if (err)
		return err;
	size_t es = tensor_dtype_size(dst->dtype);
	size_t run = inner * es;
	size_t c_dst = (size_t)dst->dims[axis];
	const char *s = src->data;
	char *d = dst->data;
	for (size_t o = 0; o < outer; o++)
		for (size_t i = 0; i < n; i++)
			memcpy(d + (o * c_dst + (size_t)ids[i]) * run,
			       s + (o * n + i) * run, run);
	return DF_OK;
}

df_err tensor_max_error(const tensor *a, const tensor *b, float floor,
			double *max_abs, double *max_rel)
{
	if (a->dtype != TENSOR_F32 || !tensor_same_shape(a, b))
		return df_errf(DF_EINVAL, "compared tensors differ in dtype or shape");
	const float *pa = a->data, *pb = b->data;
	double ma = 0, mr = 0;
	for (size_t i = 0; i < a->numel; i++) {
		double d = fabs((double)pa[i] - (double)pb[i]);
		double ref = fabs((double)pb[i]);
		if (ref < floor)
			ref = floor;
		if (isnan(d))
			d = INFINITY;
		if (d > ma)
			ma = d;
		if (d / ref > mr)
			mr = d / ref;
	}
	*max_abs = ma;
	*max_rel = mr;
	return DF_OK;
}
