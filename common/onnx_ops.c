/*
 * onnx_ops.c - one handler per supported ONNX op and the table that maps
 * op_type to its handler, its input/output counts and the attributes it
 * has at each opset (onnx_ops_find).
 *
 * A handler runs once the node's inputs are resolved and counted and its
 * attributes checked against the table (import_node in onnx_import.c); it
 * reads attributes, validates what the op needs, and adds its result with
 * onnx_emit*() or maps the output name to an existing value. Ops whose
 * inputs are statically known (Shape, Gather, Cast, Constant, ...) are
 * evaluated here into constants; everything else becomes a graph node.
 */
#include "onnx_internal.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------ */

static graph_node new_node(graph_op op, int n, const int *in)
{
	graph_node nd;
	memset(&nd, 0, sizeof nd);
	nd.op = op;
	nd.n_inputs = n;
	for (int i = 0; i < GRAPH_MAX_INPUTS; i++)
		nd.inputs[i] = i < n ? in[i] : -1;
	return nd;
}

/* Constant input `slot` as an i64 vector (must be 1-D, or 0-D when
 * allow_scalar); ENOTSUP naming it if it is computed. */
static df_err const_i64(const onnx_imp *im, int v, const char *what,
                        bool allow_scalar, const tensor **out)
{
	const tensor *t = onnx_value(im, v)->constant;
	if (!t)
		return onnx_node_err(
		    im, DF_ENOTSUP,
		    "%s '%s' is computed at run time; only constant (or "
		    "statically known) values are supported",
		    what, onnx_value(im, v)->name);
	if (t->dtype != TENSOR_I64 || t->ndim > 1 ||
	    (t->ndim == 0 && !allow_scalar))
		return onnx_node_err(im, DF_EINVAL,
		                     "%s '%s' must be a 1-D int64 tensor", what,
		                     onnx_value(im, v)->name);
	*out = t;
	return DF_OK;
}

/* ---- op handlers -------------------------------------------------------- */

static df_err op_conv(onnx_imp *im, const int *in, int n_in)
{
	const graph_value *wv = onnx_value(im, in[1]);
	if (onnx_value(im, in[0])->ndim == 4 && wv->ndim != 4)
		return onnx_node_err(im, DF_EINVAL,
		                     "weight '%s' has rank %d, expected 4",
		                     wv->name, wv->ndim);
	onnx_window w;
	int64_t kdef[2] = {wv->ndim == 4 ? wv->dims[2] : 0,
	                   wv->ndim == 4 ? wv->dims[3] : 0};
	df_err err = onnx_attr_window(im, in[0], kdef, true, &w);
	int64_t group = 1;
	if (!err)
		err = onnx_attr_int(im, "group", 1, &group);
	if (err)
		return err;
	if (group < 1 || group > ONNX_WIN_LIMIT)
		return onnx_node_err(im, DF_EINVAL,
		                     "group %lld is out of range",
		                     (long long)group);
	graph_node nd =
	    new_node(GRAPH_OP_CONV, n_in > 2 && in[2] >= 0 ? 3 : 2, in);
	graph_conv_attr *a = &nd.attr.conv;
	memcpy(a->kernel, w.kernel, sizeof a->kernel);
	memcpy(a->strides, w.strides, sizeof a->strides);
	memcpy(a->dilations, w.dilations, sizeof a->dilations);
	memcpy(a->pads, w.pads, sizeof a->pads);
	a->group = group;
	return onnx_emit(im, &nd);
}

static df_err op_pool(onnx_imp *im, const int *in, int n_in)
{
	(void)n_in;
	bool max = strcmp(im->op, "MaxPool") == 0;
	if (max && im->np->n_output > 1 && im->opset < 8)
		return onnx_node_err(im, DF_EINVAL,
		                     "MaxPool has one output before opset 8");
	onnx_window w;
	df_err err = onnx_attr_window(im, in[0], NULL, max, &w);
	bool ceil_mode = false, include_pad = false;
	if (!err)
		err = onnx_attr_bool(im, "ceil_mode", &ceil_mode);
	if (!err && !max)
		err = onnx_attr_bool(im, "count_include_pad", &include_pad);
	if (!err && max) {
		int64_t so = 0;
		err = onnx_attr_int(im, "storage_order", 0,
		                    &so); /* only affects Indices */
	}
	if (err)
		return err;
	graph_node nd =
	    new_node(max ? GRAPH_OP_MAXPOOL : GRAPH_OP_AVGPOOL, 1, in);
	graph_pool_attr *a = &nd.attr.pool;
	memcpy(a->kernel, w.kernel, sizeof a->kernel);
	memcpy(a->strides, w.strides, sizeof a->strides);
	memcpy(a->dilations, w.dilations, sizeof a->dilations);
	memcpy(a->pads, w.pads, sizeof a->pads);
	a->ceil_mode = ceil_mode;
	a->count_include_pad = include_pad;
	return onnx_emit(im, &nd);
}

static df_err op_gemm(onnx_imp *im, const int *in, int n_in)
{
	int c = n_in > 2 ? in[2] : -1;
	if (c < 0 && im->opset < 11)
		return onnx_node_err(im, DF_EINVAL,
		                     "input C is required before opset 11");
	graph_gemm_attr a = {1.0f, 1.0f, false, false};
	df_err err = onnx_attr_float(im, "alpha", 1.0f, &a.alpha);
	if (!err)
		err = onnx_attr_float(im, "beta", 1.0f, &a.beta);
	if (!err)
		err = onnx_attr_bool(im, "transA", &a.trans_a);
	if (!err)
		err = onnx_attr_bool(im, "transB", &a.trans_b);
	if (err)
		return err;
	if (a.alpha == 0.0f)
		return onnx_node_err(im, DF_ENOTSUP,
		                     "alpha = 0 (a Gemm that ignores A and B)");
	if (a.beta == 0.0f) { /* C does not contribute */
		c = -1;
		a.beta = 1.0f;
	}
	int ins[3] = {in[0], in[1], c};
	graph_node nd = new_node(GRAPH_OP_GEMM, c >= 0 ? 3 : 2, ins);
	nd.attr.gemm = a;
	return onnx_emit(im, &nd);
}

static df_err op_simple(onnx_imp *im, const int *in, int n_in)
{
	static const struct {
		const char *name;
		graph_op op;
	} map[] = {
	    {"MatMul", GRAPH_OP_MATMUL},
	    {"Relu", GRAPH_OP_RELU},
	    {"Sigmoid", GRAPH_OP_SIGMOID},
	    {"GlobalAveragePool", GRAPH_OP_GLOBALAVGPOOL},
	    {"Add", GRAPH_OP_ADD},
	    {"Mul", GRAPH_OP_MUL},
	};
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
		if (strcmp(im->op, map[i].name) == 0) {
			graph_node nd = new_node(map[i].op, n_in, in);
			return onnx_emit(im, &nd);
		}
	return onnx_node_err(im, DF_EINTERNAL, "no handler");
}

static df_err op_leakyrelu(onnx_imp *im, const int *in, int n_in)
{
	graph_node nd = new_node(GRAPH_OP_LEAKYRELU, n_in, in);
	df_err err = onnx_attr_float(im, "alpha", 0.01f, &nd.attr.leaky.alpha);
	return err ? err : onnx_emit(im, &nd);
}

static df_err op_batchnorm(onnx_imp *im, const int *in, int n_in)
{
	if (im->np->n_output > (im->opset < 14 ? 5u : 3u))
		return onnx_node_err(im, DF_EINVAL, "%zu outputs",
		                     im->np->n_output);
	int64_t spatial = 1, training = 0;
	df_err err = onnx_attr_int(im, "spatial", 1, &spatial);
	if (!err)
		err = onnx_attr_int(im, "training_mode", 0, &training);
	if (err)
		return err;
	if (spatial != 1)
		return onnx_node_err(
		    im, DF_ENOTSUP,
		    "spatial = %lld (per-activation statistics)",
		    (long long)spatial);
	if (training != 0)
		return onnx_node_err(im, DF_ENOTSUP,
		                     "training_mode = %lld; only inference is "
		                     "supported",
		                     (long long)training);
	float momentum = 0.9f;
	graph_node nd = new_node(GRAPH_OP_BATCHNORM, n_in, in);
	err = onnx_attr_float(im, "epsilon", 1e-5f, &nd.attr.bn.epsilon);
	if (!err)
		err = onnx_attr_float(im, "momentum", 0.9f, &momentum);
	return err ? err : onnx_emit(im, &nd);
}

/* Optional scalar f32 constant input (Clip bounds). */
static df_err const_scalar_f32(const onnx_imp *im, int v, const char *what,
                               float *out)
{
	if (v < 0)
		return DF_OK;
	const tensor *t = onnx_value(im, v)->constant;
	if (!t)
		return onnx_node_err(im, DF_ENOTSUP,
		                     "%s '%s' is computed; only constant "
		                     "bounds are supported",
		                     what, onnx_value(im, v)->name);
	if (t->dtype != TENSOR_F32 || t->numel != 1 || t->ndim > 1)
		return onnx_node_err(im, DF_EINVAL,
		                     "%s '%s' must be a float scalar", what,
		                     onnx_value(im, v)->name);
	if (isnan(tensor_f32(t)[0]))
		return onnx_node_err(im, DF_EINVAL, "%s is NaN", what);
	*out = tensor_f32(t)[0];
	return DF_OK;
}

static df_err op_clip(onnx_imp *im, const int *in, int n_in)
{
	float lo = -INFINITY, hi = INFINITY;
	df_err err;
	if (im->opset < 11) {
		if (n_in > 1)
			return onnx_node_err(
			    im, DF_EINVAL,
			    "Clip has one input before opset 11");
		err = onnx_attr_float(im, "min", -INFINITY, &lo);
		if (!err)
			err = onnx_attr_float(im, "max", INFINITY, &hi);
	} else {
		err = const_scalar_f32(im, n_in > 1 ? in[1] : -1, "min", &lo);
		if (!err)
			err = const_scalar_f32(im, n_in > 2 ? in[2] : -1, "max",
			                       &hi);
	}
	if (err)
		return err;
	graph_node nd = new_node(GRAPH_OP_CLIP, 1, in);
	nd.attr.clip.lo = lo;
	nd.attr.clip.hi = hi;
	return onnx_emit(im, &nd);
}

static df_err op_concat(onnx_imp *im, const int *in, int n_in)
{
	const Onnx__AttributeProto *a = NULL;
	df_err err = onnx_attr_get(
	    im, "axis", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT, &a);
	if (err)
		return err;
	if (!a)
		return onnx_node_err(im, DF_EINVAL,
		                     "attribute 'axis' is required");
	if (a->i < 0 && im->opset < 11)
		return onnx_node_err(im, DF_EINVAL,
		                     "negative axis before opset 11");
	for (int i = 0; i < n_in; i++)
		if (in[i] < 0)
			return onnx_node_err(im, DF_EINVAL, "input %d is empty",
			                     i);
	if (n_in <= GRAPH_MAX_INPUTS) {
		graph_node nd = new_node(GRAPH_OP_CONCAT, n_in, in);
		nd.attr.axis.axis = a->i;
		return onnx_emit(im, &nd);
	}
	/* more inputs than a node holds: only for constants (shape arithmetic),
	 * folded in chunks */
	for (int i = 0; i < n_in; i++)
		if (!onnx_value(im, in[i])->constant)
			return onnx_node_err(
			    im, DF_ENOTSUP,
			    "%d inputs; at most %d are supported", n_in,
			    GRAPH_MAX_INPUTS);
	int cur = in[0], done = 1, part = 0;
	while (done < n_in) {
		int ins[GRAPH_MAX_INPUTS] = {cur};
		int k = 1;
		while (k < GRAPH_MAX_INPUTS && done < n_in)
			ins[k++] = in[done++];
		graph_node nd = new_node(GRAPH_OP_CONCAT, k, ins);
		nd.attr.axis.axis = a->i;
		char name[200];
		snprintf(name, sizeof name, "%s#part%d", onnx_out_name(im),
		         part++);
		err = onnx_emit_named(im, &nd, name, &cur);
		if (err)
			return err;
	}
	tensor *t = NULL;
	err = tensor_clone(onnx_value(im, cur)->constant, &t);
	return err ? err : onnx_emit_const(im, t);
}

static df_err op_flatten(onnx_imp *im, const int *in, int n_in)
{
	graph_node nd = new_node(GRAPH_OP_FLATTEN, n_in, in);
	df_err err = onnx_attr_int(im, "axis", 1, &nd.attr.axis.axis);
	if (err)
		return err;
	if (nd.attr.axis.axis < 0 && im->opset < 11)
		return onnx_node_err(im, DF_EINVAL,
		                     "negative axis before opset 11");
	return onnx_emit(im, &nd);
}

static df_err op_reshape(onnx_imp *im, const int *in, int n_in)
{
	int64_t allowzero = 0;
	const tensor *shape = NULL;
	df_err err = onnx_attr_int(im, "allowzero", 0, &allowzero);
	if (!err)
		err = const_i64(im, in[1], "shape", false, &shape);
	if (err)
		return err;
	if (allowzero) {
		for (size_t i = 0; i < shape->numel; i++)
			if (tensor_i64(shape)[i] == 0)
				return onnx_node_err(
				    im, DF_ENOTSUP,
				    "allowzero = 1 with a 0 in the "
				    "shape (a zero-size "
				    "dim) is not supported");
	}
	graph_node nd = new_node(GRAPH_OP_RESHAPE, n_in, in);
	return onnx_emit(im, &nd);
}

static df_err op_identity(onnx_imp *im, const int *in, int n_in)
{
	(void)n_in;
	return onnx_map_put(im, onnx_out_name(im), in[0], -1);
}

static df_err op_dropout(onnx_imp *im, const int *in, int n_in)
{
	if (im->opset < 12 && n_in > 1)
		return onnx_node_err(im, DF_EINVAL,
		                     "Dropout has one input before opset 12");
	if (n_in > 2 && in[2] >= 0) {
		const tensor *t = onnx_value(im, in[2])->constant;
		if (!t)
			return onnx_node_err(
			    im, DF_ENOTSUP,
			    "training_mode is computed at run time");
		if (t->numel != 1)
			return onnx_node_err(im, DF_EINVAL,
			                     "training_mode must be a scalar");
		bool on = t->dtype == TENSOR_I64 ? tensor_i64(t)[0] != 0
		                                 : tensor_f32(t)[0] != 0;
		if (on)
			return onnx_node_err(im, DF_ENOTSUP,
			                     "training_mode is true; only "
			                     "inference is supported");
	}
	float ratio = 0;
	df_err err = onnx_attr_float(im, "ratio", 0.5f, &ratio);
	return err ? err : onnx_map_put(im, onnx_out_name(im), in[0], -1);
}

static df_err op_softmax(onnx_imp *im, const int *in, int n_in)
{
	graph_node nd = new_node(GRAPH_OP_SOFTMAX, n_in, in);
	bool legacy = im->opset < 13;
	df_err err =
	    onnx_attr_int(im, "axis", legacy ? 1 : -1, &nd.attr.axis.axis);
	if (err)
		return err;
	nd.attr.axis.legacy = legacy;
	return onnx_emit(im, &nd);
}

static df_err op_constant(onnx_imp *im, const int *in, int n_in)
{
	(void)in;
	(void)n_in;
	if (im->np->n_attribute != 1)
		return onnx_node_err(
		    im, DF_EINVAL, "needs exactly one value attribute, has %zu",
		    im->np->n_attribute);
	const Onnx__AttributeProto *a = im->np->attribute[0];
	const char *n = onnx_str_or_empty(a->name);
	tensor *t = NULL;
	df_err err = DF_OK;
	int64_t len;
	if (strcmp(n, "value") == 0) {
		if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR ||
		    !a->t)
			return onnx_node_err(
			    im, DF_EINVAL, "attribute 'value' must be TENSOR");
		char what[240];
		snprintf(what, sizeof what, "node '%s' (Constant): value",
		         im->name);
		return (err = onnx_tensor_from_proto(a->t, what, &t))
		           ? err
		           : onnx_emit_const(im, t);
	}
	if (strcmp(n, "value_float") == 0 || strcmp(n, "value_int") == 0) {
		bool fl = n[6] == 'f';
		int type = fl ? ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT
		              : ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
		if ((int)a->type != type)
			return onnx_node_err(im, DF_EINVAL,
			                     "attribute '%s' must be %s", n,
			                     onnx_attr_type_name(type));
		err = tensor_create(fl ? TENSOR_F32 : TENSOR_I64, 0, NULL, &t);
		if (err)
			return err;
		if (fl)
			tensor_f32(t)[0] = a->f;
		else
			tensor_i64(t)[0] = a->i;
		return onnx_emit_const(im, t);
	}
	if (strcmp(n, "value_floats") == 0 || strcmp(n, "value_ints") == 0) {
		bool fl = n[6] == 'f';
		int type = fl ? ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS
		              : ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
		if ((int)a->type != type)
			return onnx_node_err(im, DF_EINVAL,
			                     "attribute '%s' must be %s", n,
			                     onnx_attr_type_name(type));
		len = (int64_t)(fl ? a->n_floats : a->n_ints);
		err = tensor_create(fl ? TENSOR_F32 : TENSOR_I64, 1, &len, &t);
		if (err)
			return err;
		if (len)
			memcpy(t->data,
			       fl ? (void *)a->floats : (void *)a->ints,
			       tensor_nbytes(t));
		return onnx_emit_const(im, t);
	}
	return onnx_node_err(im, DF_ENOTSUP,
	                     "constant given as '%s' (only value, "
	                     "value_float(s) and value_int(s) are supported)",
	                     n);
}

static df_err op_shape(onnx_imp *im, const int *in, int n_in)
{
	(void)n_in;
	const graph_value *x = onnx_value(im, in[0]);
	int64_t r = x->ndim, start = 0, end = r;
	df_err err = onnx_attr_int(im, "start", 0, &start);
	if (!err)
		err = onnx_attr_int(im, "end", r, &end);
	if (err)
		return err;
	start = start < 0 ? start + r : start;
	end = end < 0 ? end + r : end;
	start = start < 0 ? 0 : start > r ? r : start;
	end = end < 0 ? 0 : end > r ? r : end;
	int64_t n = end > start ? end - start : 0;
	tensor *t = NULL;
	err = tensor_create(TENSOR_I64, 1, &n, &t);
	if (err)
		return err;
	for (int64_t i = 0; i < n; i++)
		tensor_i64(t)[i] = x->dims[start + i];
	return onnx_emit_const(im, t);
}

static df_err op_gather(onnx_imp *im, const int *in, int n_in)
{
	(void)n_in;
	const tensor *data = onnx_value(im, in[0])->constant, *idx = NULL;
	if (!data)
		return onnx_node_err(
		    im, DF_ENOTSUP,
		    "Gather on computed data '%s' is not supported (only on "
		    "constants and shapes)",
		    onnx_value(im, in[0])->name);
	df_err err = const_i64(im, in[1], "indices", true, &idx);
	int64_t axis = 0;
	if (!err)
		err = onnx_attr_int(im, "axis", 0, &axis);
	if (err)
		return err;
	int r = data->ndim;
	if (r < 1 || axis < -r || axis >= r)
		return onnx_node_err(
		    im, DF_EINVAL, "axis %lld outside the rank %d of '%s'",
		    (long long)axis, r, onnx_value(im, in[0])->name);
	if (axis < 0)
		axis += r;
	int orank = r - 1 + idx->ndim;
	if (orank > TENSOR_MAX_DIMS)
		return onnx_node_err(im, DF_ENOTSUP, "output rank %d", orank);
	int64_t od[TENSOR_MAX_DIMS];
	int k = 0;
	for (int i = 0; i < axis; i++)
		od[k++] = data->dims[i];
	for (int i = 0; i < idx->ndim; i++)
		od[k++] = idx->dims[i];
	for (int i = (int)axis + 1; i < r; i++)
		od[k++] = data->dims[i];
	int64_t s = data->dims[axis];
	for (size_t j = 0; j < idx->numel; j++) {
		int64_t ix = tensor_i64(idx)[j];
		if (ix < -s || ix >= s)
			return onnx_node_err(
			    im, DF_EINVAL, "index %lld outside -%lld..%lld",
			    (long long)ix, (long long)s, (long long)(s - 1));
	}
	tensor *t = NULL;
	err = tensor_create(data->dtype, orank, od, &t);
	if (err)
		return onnx_node_err(im, err, "cannot allocate the result");
	size_t es = tensor_dtype_size(data->dtype), outer = 1, inner = 1;
	for (int i = 0; i < axis; i++)
		outer *= (size_t)data->dims[i];
	for (int i = (int)axis + 1; i < r; i++)
		inner *= (size_t)data->dims[i];
	char *dst = t->data;
	for (size_t o = 0; o < outer; o++)
		for (size_t j = 0; j < idx->numel; j++) {
			int64_t ix = tensor_i64(idx)[j];
			ix = ix < 0 ? ix + s : ix;
			memcpy(dst,
			       (const char *)data->data +
			           ((o * (size_t)s + (size_t)ix) * inner) * es,
			       inner * es);
			dst += inner * es;
		}
	return onnx_emit_const(im, t);
}

/* Axes of Unsqueeze/Squeeze: the attribute before opset 13, the optional
 * second input from 13. *n = -1 when absent. */
static df_err get_axes(const onnx_imp *im, const int *in, int n_in,
                       int64_t *axes, int *n)
{
	*n = -1;
	if (im->opset < 13) {
		if (n_in > 1)
			return onnx_node_err(
			    im, DF_EINVAL,
			    "axes is an attribute before opset 13");
		const Onnx__AttributeProto *a = NULL;
		df_err err = onnx_attr_get(
		    im, "axes", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS,
		    &a);
		if (err || !a)
			return err;
		if (a->n_ints > TENSOR_MAX_DIMS)
			return onnx_node_err(im, DF_EINVAL, "%zu axes",
			                     a->n_ints);
		if (a->n_ints)
			memcpy(axes, a->ints, a->n_ints * sizeof *axes);
		*n = (int)a->n_ints;
		return DF_OK;
	}
	if (n_in < 2 || in[1] < 0)
		return DF_OK;
	const tensor *t = NULL;
	df_err err = const_i64(im, in[1], "axes", false, &t);
	if (err)
		return err;
	if (t->numel > TENSOR_MAX_DIMS)
		return onnx_node_err(im, DF_EINVAL, "%zu axes", t->numel);
	memcpy(axes, t->data, t->numel * sizeof *axes);
	*n = (int)t->numel;
	return DF_OK;
}

static df_err op_unsqueeze(onnx_imp *im, const int *in, int n_in)
{
	int64_t axes[TENSOR_MAX_DIMS];
	int n = -1;
	df_err err = get_axes(im, in, n_in, axes, &n);
	if (err)
		return err;
	if (n < 0)
		return onnx_node_err(im, DF_EINVAL, "axes are required");
	const graph_value *x = onnx_value(im, in[0]);
	int orank = x->ndim + n;
	if (orank > TENSOR_MAX_DIMS)
		return onnx_node_err(im, DF_ENOTSUP,
		                     "output rank %d exceeds %d", orank,
		                     TENSOR_MAX_DIMS);
	bool is_new[TENSOR_MAX_DIMS] = {false};
	for (int i = 0; i < n; i++) {
		int64_t a = axes[i];
		if (a < -orank || a >= orank || (a < 0 && im->opset < 11))
			return onnx_node_err(im, DF_EINVAL,
			                     "axis %lld outside 0..%d",
			                     (long long)a, orank - 1);
		a = a < 0 ? a + orank : a;
		if (is_new[a])
			return onnx_node_err(
			    im, DF_EINVAL, "axis %lld repeated", (long long)a);
		is_new[a] = true;
	}
	int64_t od[TENSOR_MAX_DIMS];
	for (int i = 0, k = 0; i < orank; i++)
		od[i] = is_new[i] ? 1 : x->dims[k++];
	return onnx_emit_reshape(im, in[0], orank, od);
}

static df_err op_squeeze(onnx_imp *im, const int *in, int n_in)
{
	int64_t axes[TENSOR_MAX_DIMS];
	int n = -1;
	df_err err = get_axes(im, in, n_in, axes, &n);
	if (err)
		return err;
	const graph_value *x = onnx_value(im, in[0]);
	int r = x->ndim;
	bool drop[TENSOR_MAX_DIMS] = {false};
	if (n < 0) {
		for (int i = 0; i < r; i++)
			drop[i] = x->dims[i] == 1;
	}
	for (int i = 0; i < n; i++) {
		int64_t a = axes[i];
		if (a < -r || a >= r || (a < 0 && im->opset < 11))
			return onnx_node_err(im, DF_EINVAL,
			                     "axis %lld outside 0..%d",
			                     (long long)a, r - 1);
		a = a < 0 ? a + r : a;
		if (x->dims[a] != 1)
			return onnx_node_err(
			    im, DF_EINVAL, "dim %lld of '%s' is %lld, not 1",
			    (long long)a, x->name, (long long)x->dims[a]);
		drop[a] = true;
	}
	int64_t od[TENSOR_MAX_DIMS];
	int k = 0;
	for (int i = 0; i < r; i++)
		if (!drop[i])
			od[k++] = x->dims[i];
	return onnx_emit_reshape(im, in[0], k, od);
}

static df_err op_cast(onnx_imp *im, const int *in, int n_in)
{
	(void)n_in;
	const Onnx__AttributeProto *a = NULL;
	df_err err = onnx_attr_get(
	    im, "to", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT, &a);
	if (err)
		return err;
	if (!a)
		return onnx_node_err(im, DF_EINVAL,
		                     "attribute 'to' is required");
	bool to_float = a->i == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
	bool to_int = a->i == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ||
	              a->i == ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
	if (!to_float && !to_int)
		return onnx_node_err(im, DF_ENOTSUP,
		                     "cast to %s (only FLOAT, INT64, INT32)",
		                     onnx_dtype_name((int32_t)a->i));
	const tensor *c = onnx_value(im, in[0])->constant;
	if (!c) {
		if (to_float) /* computed values are float already */
			return onnx_map_put(im, onnx_out_name(im), in[0], -1);
		return onnx_node_err(im, DF_ENOTSUP,
		                     "cast of computed '%s' to an integer type",
		                     onnx_value(im, in[0])->name);
	}
	tensor *t = NULL;
	err = tensor_create(to_float ? TENSOR_F32 : TENSOR_I64, c->ndim,
	                    c->dims, &t);
	if (err)
		return err;
	bool i32 = a->i == ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
	for (size_t i = 0; i < c->numel; i++) {
		if (to_float) {
			tensor_f32(t)[i] = c->dtype == TENSOR_F32
			                       ? tensor_f32(c)[i]
			                       : (float)tensor_i64(c)[i];
			continue;
		}
		int64_t v;
		if (c->dtype == TENSOR_F32) {
			float f = tensor_f32(c)[i];
			if (!(f > -9.2e18f && f < 9.2e18f)) {
				tensor_destroy(t);
				return onnx_node_err(
				    im, DF_EINVAL,
				    "value %g does not fit an integer",
				    (double)f);
			}
			v = (int64_t)f;
		} else {
			v = tensor_i64(c)[i];
		}
		tensor_i64(t)[i] =
		    i32 ? (int64_t)(int32_t)(uint32_t)(uint64_t)v : v;
	}
	return onnx_emit_const(im, t);
}

/* ---- the op table ------------------------------------------------------- */

/* clang-format off */
#define WINDOW_ATTRS {"auto_pad", 1, 0}, {"kernel_shape", 1, 0}, {"pads", 1, 0}, \
		     {"strides", 1, 0}

static const onnx_op_spec ops[] = {
	{"Conv", op_conv, 2, 3, 1, {WINDOW_ATTRS, {"dilations", 1, 0}, {"group", 1, 0}}},
	{"Gemm", op_gemm, 2, 3, 1,
	 {{"alpha", 1, 0}, {"beta", 1, 0}, {"transA", 1, 0}, {"transB", 1, 0}}},
	{"MatMul", op_simple, 2, 2, 1, {{0}}},
	{"BatchNormalization", op_batchnorm, 5, 5, 5,
	 {{"epsilon", 1, 0}, {"momentum", 1, 0}, {"spatial", 1, 9},
	  {"training_mode", 14, 0}}},
	{"Relu", op_simple, 1, 1, 1, {{0}}},
	{"Sigmoid", op_simple, 1, 1, 1, {{0}}},
	{"LeakyRelu", op_leakyrelu, 1, 1, 1, {{"alpha", 1, 0}}},
	{"Clip", op_clip, 1, 3, 1, {{"min", 1, 11}, {"max", 1, 11}}},
	{"MaxPool", op_pool, 1, 1, 2,
	 {WINDOW_ATTRS, {"ceil_mode", 10, 0}, {"dilations", 10, 0},
	  {"storage_order", 8, 0}}},
	{"AveragePool", op_pool, 1, 1, 1,
	 {WINDOW_ATTRS, {"ceil_mode", 10, 0}, {"count_include_pad", 7, 0}}},
	{"GlobalAveragePool", op_simple, 1, 1, 1, {{0}}},
	{"Add", op_simple, 2, 2, 1, {{0}}},
	{"Mul", op_simple, 2, 2, 1, {{0}}},
	{"Concat", op_concat, 1, ONNX_MAX_NODE_IO, 1, {{"axis", 1, 0}}},
	{"Flatten", op_flatten, 1, 1, 1, {{"axis", 1, 0}}},
	{"Reshape", op_reshape, 2, 2, 1, {{"allowzero", 14, 0}}},
	{"Identity", op_identity, 1, 1, 1, {{0}}},
	{"Dropout", op_dropout, 1, 3, 2, {{"ratio", 1, 12}, {"seed", 12, 0}}},
	{"Softmax", op_softmax, 1, 1, 1, {{"axis", 1, 0}}},
	{"Constant", op_constant, 0, 0, 1,
	 {{"value", 1, 0}, {"sparse_value", 11, 0}, {"value_float", 12, 0},
	  {"value_floats", 12, 0}, {"value_int", 12, 0}, {"value_ints", 12, 0},
	  {"value_string", 12, 0}, {"value_strings", 12, 0}}},
	{"Shape", op_shape, 1, 1, 1, {{"start", 15, 0}, {"end", 15, 0}}},
	{"Gather", op_gather, 2, 2, 1, {{"axis", 1, 0}}},
	{"Unsqueeze", op_unsqueeze, 1, 2, 1, {{"axes", 1, 13}}},
	{"Squeeze", op_squeeze, 1, 2, 1, {{"axes", 1, 13}}},
	{"Cast", op_cast, 1, 1, 1, {{"to", 1, 0}}},
};
/* clang-format on */

const onnx_op_spec *onnx_ops_find(const char *op_type)
{
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
		if (strcmp(ops[i].op_type, op_type) == 0)
			return &ops[i];
	return NULL;
}
