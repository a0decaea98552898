/*
 * engine_ref.c - the plain-C reference engine: every graph_op with the ONNX
 * semantics that graph.h normalizes to, in simple loops that accumulate in
 * double. It is the yardstick the oneDNN engine is tested against, so it
 * favours obviously-right code over speed (but stays usable on models of a
 * few GFLOP: inner loops run over contiguous memory without branches).
 *
 * engine_ref_create() checks every node once: input counts, dtypes, ranks,
 * attributes, and that the output value's dims are exactly what the op
 * produces from its inputs. After that the kernels index without further
 * checks. engine_ref_run() allocates each intermediate buffer when its
 * producer runs and frees it after its last reader (inputs and post-op
 * operands both count), so peak memory is the live set, not the whole graph.
 *
 * Semantics worth stating:
 *  - Conv/pool output size: floor((in + pad_begin + pad_end - ext) / stride)
 *    + 1 with ext = dilation * (kernel - 1) + 1; with ceil_mode the division
 *    rounds up, and a last window that would start inside the end padding is
 *    dropped (ONNX reference and PyTorch).
 *  - MaxPool never selects padding; a window must cover at least one input
 *    element (DF_ENOTSUP otherwise, checked at create).
 *  - AveragePool with count_include_pad divides by the number of taps that
 *    fall inside input + padding (windows clipped to the padded extent);
 *    without it, by the number of taps inside the input.
 *  - GEMM is canonical (graph.h): W is [N,K], bias [N], alpha/beta already
 *    folded, so attr alpha/beta are ignored; trans_b must be true.
 *    A may have rank >= 1 without trans_a (rows = all but the last dim, as
 *    for a MatMul with a constant right side), exactly 2 with trans_a.
 */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_impl.h"

/* Bound for attribute values (kernel, stride, pad, dilation): keeps every
 * size expression below far from int64 overflow. */
#define ATTR_MAX ((int64_t)1 << 24)

typedef struct ref_engine {
	engine base;        /* must be first */
	size_t *numel;      /* per value: element count */
	int *last_use;      /* per value: last node reading it, INT_MAX for
			     * graph outputs, -1 if never read */
	size_t scratch_len; /* doubles of scratch the largest kernel needs */
} ref_engine;

/* ---------------------------------------------------------------- helpers */

static const char *node_name(const graph_node *n)
{
	return n->name ? n->name : "?";
}

static const char *value_name(const graph *g, int v)
{
	return g->values[v].name ? g->values[v].name : "?";
}

#define NODE_ERR(err, n, fmt, ...)                                           \
	df_errf((err), "node %s (%s): " fmt, node_name(n),                   \
		graph_op_name((n)->op), __VA_ARGS__)

static const graph_value *val(const graph *g, const graph_node *n, int k)
{
	return &g->values[n->inputs[k]];
}

static int64_t prod(const int64_t *dims, int from, int to)
{
	int64_t p = 1;
	for (int i = from; i < to; i++)
		p *= dims[i];
	return p;
}

/* The op's expected output shape, filled by the per-op checks. */
typedef struct shape {
	int ndim;
	int64_t dims[TENSOR_MAX_DIMS];
} shape;

static void shape_copy(shape *s, const graph_value *v)
{
	s->ndim = v->ndim;
	memcpy(s->dims, v->dims, sizeof s->dims);
}

static df_err check_attr(const graph_node *n, const char *what,
			 const int64_t *a, int count, int64_t lo)
{
	for (int i = 0; i < count; i++)
		if (a[i] < lo || a[i] > ATTR_MAX)
			return NODE_ERR(DF_EINVAL, n,
					"%s[%d] = %lld outside %lld..%lld", what,
					i, (long long)a[i], (long long)lo,
					(long long)ATTR_MAX);
	return DF_OK;
}

/* Output length of a sliding window over `in` (see the file comment). Fails
 * when the window does not fit at all. */
static df_err window_out(const graph_node *n, int axis, int64_t in,
			 int64_t k, int64_t s, int64_t d, int64_t pb,
			 int64_t pe, bool ceil_mode, int64_t *out)
{
	int64_t ext = d * (k - 1) + 1;
	int64_t span = in + pb + pe - ext;
	if (span < 0)
		return NODE_ERR(DF_EINVAL, n,
				"window of extent %lld does not fit input dim %d "
				"of size %lld with pads %lld+%lld",
				(long long)ext, axis, (long long)in,
				(long long)pb, (long long)pe);
	int64_t o;
	if (ceil_mode) {
		o = (span + s - 1) / s + 1;
		if ((o - 1) * s >= in + pb)
			o--;
	} else {
		o = span / s + 1;
	}
	*out = o;
	return DF_OK;
}

/* Taps of a window starting at `start` (in input coordinates) that fall
 * inside [lo, hi). */
static int64_t taps_inside(int64_t start, int64_t k, int64_t d, int64_t lo,
			   int64_t hi)
{
	int64_t c = 0;
	for (int64_t t = 0; t < k; t++) {
		int64_t p = start + t * d;
		if (p >= lo && p < hi)
			c++;
	}
	return c;
}

/* numpy broadcast of dims ad[0..na) against bd[0..nb) into s. */
static df_err broadcast_shape(const graph_node *n, int na, int nb,
			      const int64_t *ad, const int64_t *bd, shape *s)
{
	int r = na > nb ? na : nb;
	s->ndim = r;
	for (int i = 0; i < r; i++) {
		int ia = i - (r - na), ib = i - (r - nb);
		int64_t x = ia >= 0 ? ad[ia] : 1;
		int64_t y = ib >= 0 ? bd[ib] : 1;
		if (x != y && x != 1 && y != 1)
			return NODE_ERR(DF_EINVAL, n,
					"cannot broadcast dim %lld against %lld",
					(long long)x, (long long)y);
		s->dims[i] = x == 1 ? y : x;
	}
	return DF_OK;
}

/* ----------------------------------------------------------- node checks */

static df_err check_conv(const graph *g, const graph_node *n, shape *s,
			 size_t *scratch)
{
	const graph_conv_attr *a = &n->attr.conv;
	const graph_value *x = val(g, n, 0), *w = val(g, n, 1);
	df_err err;
	if ((err = check_attr(n, "kernel_shape", a->kernel, 2, 1)) ||
	    (err = check_attr(n, "strides", a->strides, 2, 1)) ||
	    (err = check_attr(n, "dilations", a->dilations, 2, 1)) ||
	    (err = check_attr(n, "pads", a->pads, 4, 0)))
		return err;
	if (x->ndim != 4)
		return NODE_ERR(DF_ENOTSUP, n, "input has rank %d, expected 4",
				x->ndim);
	if (w->ndim != 4)
		return NODE_ERR(DF_EINVAL, n, "weight has rank %d, expected 4",
				w->ndim);
	if (a->group < 1 || a->group > x->dims[1] || x->dims[1] % a->group ||
	    w->dims[0] % a->group)
		return NODE_ERR(DF_EINVAL, n,
				"group %lld does not divide %lld input and %lld "
				"output channels",
				(long long)a->group, (long long)x->dims[1],
				(long long)w->dims[0]);
	if (w->dims[1] != x->dims[1] / a->group || w->dims[2] != a->kernel[0] ||
	    w->dims[3] != a->kernel[1])
		return NODE_ERR(DF_EINVAL, n,
				"weight [%lld,%lld,%lld,%lld] does not fit %lld "
				"input channels, group %lld, kernel %lldx%lld",
				(long long)w->dims[0], (long long)w->dims[1],
				(long long)w->dims[2], (long long)w->dims[3],
				(long long)x->dims[1], (long long)a->group,
				(long long)a->kernel[0], (long long)a->kernel[1]);
	if (n->n_inputs > 2 && n->inputs[2] >= 0 &&
	    prod(val(g, n, 2)->dims, 0, val(g, n, 2)->ndim) != w->dims[0])
		return NODE_ERR(DF_EINVAL, n, "bias has %lld values, expected %lld",
				(long long)prod(val(g, n, 2)->dims, 0,
						val(g, n, 2)->ndim),
				(long long)w->dims[0]);
	int64_t oh, ow;
	if ((err = window_out(n, 2, x->dims[2], a->kernel[0], a->strides[0],
			      a->dilations[0], a->pads[0], a->pads[2], false,
			      &oh)) ||
	    (err = window_out(n, 3, x->dims[3], a->kernel[1], a->strides[1],
			      a->dilations[1], a->pads[1], a->pads[3], false,
			      &ow)))
		return err;
	s->ndim = 4;
	s->dims[0] = x->dims[0];
	s->dims[1] = w->dims[0];
	s->dims[2] = oh;
	s->dims[3] = ow;
	*scratch = (size_t)(oh * ow);
	return DF_OK;
}

static df_err check_pool(const graph *g, const graph_node *n, shape *s)
{
	const graph_pool_attr *a = &n->attr.pool;
	const graph_value *x = val(g, n, 0);
	df_err err;
	if ((err = check_attr(n, "kernel_shape", a->kernel, 2, 1)) ||
	    (err = check_attr(n, "strides", a->strides, 2, 1)) ||
	    (err = check_attr(n, "dilations", a->dilations, 2, 1)) ||
	    (err = check_attr(n, "pads", a->pads, 4, 0)))
		return err;
	if (x->ndim != 4)
		return NODE_ERR(DF_ENOTSUP, n, "input has rank %d, expected 4",
				x->ndim);
	int64_t o[2];
	for (int ax = 0; ax < 2; ax++) {
		int64_t in = x->dims[2 + ax], k = a->kernel[ax];
		int64_t st = a->strides[ax], d = a->dilations[ax];
		int64_t pb = a->pads[ax], pe = a->pads[2 + ax];
		if ((err = window_out(n, 2 + ax, in, k, st, d, pb, pe,
				      a->ceil_mode, &o[ax])))
			return err;
		for (int64_t i = 0; i < o[ax]; i++)
			if (taps_inside(i * st - pb, k, d, 0, in) == 0)
				return NODE_ERR(DF_ENOTSUP, n,
						"window %lld along dim %d covers "
						"only padding",
						(long long)i, 2 + ax);
	}
	s->ndim = 4;
	s->dims[0] = x->dims[0];
	s->dims[1] = x->dims[1];
	s->dims[2] = o[0];
	s->dims[3] = o[1];
	return DF_OK;
}

static df_err check_gemm(const graph *g, const graph_node *n, shape *s)
{
	const graph_value *x = val(g, n, 0), *w = val(g, n, 1);
	if (!n->attr.gemm.trans_b)
		return NODE_ERR(DF_EINVAL, n, "%s",
				"not canonical (trans_b must be set, W [N,K])");
	if (w->ndim != 2)
		return NODE_ERR(DF_EINVAL, n, "weight has rank %d, expected 2",
				w->ndim);
	int64_t nn = w->dims[0], k = w->dims[1];
	if (n->n_inputs > 2 && n->inputs[2] >= 0 &&
	    prod(val(g, n, 2)->dims, 0, val(g, n, 2)->ndim) != nn)
		return NODE_ERR(DF_EINVAL, n, "bias has %lld values, expected %lld",
				(long long)prod(val(g, n, 2)->dims, 0,
						val(g, n, 2)->ndim),
				(long long)nn);
	if (n->attr.gemm.trans_a) {
		if (x->ndim != 2 || x->dims[0] != k)
			return NODE_ERR(DF_EINVAL, n,
					"with trans_a, A must be [%lld,M]",
					(long long)k);
		s->ndim = 2;
		s->dims[0] = x->dims[1];
		s->dims[1] = nn;
		return DF_OK;
	}
	if (x->ndim < 1 || x->dims[x->ndim - 1] != k)
		return NODE_ERR(DF_EINVAL, n,
				"A's last dim must be K = %lld (rank %d)",
				(long long)k, x->ndim);
	shape_copy(s, x);
	s->dims[x->ndim - 1] = nn;
	return DF_OK;
}

/* MatMul geometry shared by the check and the kernel. */
typedef struct mm_geom {
	int64_t m, k, n;
	int nb;                          /* batch rank of the output */
	int64_t bdims[TENSOR_MAX_DIMS];  /* output batch dims */
	int64_t astr[TENSOR_MAX_DIMS];   /* A matrix stride per batch dim */
	int64_t bstr[TENSOR_MAX_DIMS];   /* B matrix stride per batch dim */
} mm_geom;

static df_err mm_plan(const graph_node *n, const graph_value *a,
		      const graph_value *b, mm_geom *mg, shape *s)
{
	if (a->ndim < 1 || b->ndim < 1)
		return NODE_ERR(DF_EINVAL, n, "%s", "MatMul of a scalar");
	int ra = a->ndim, rb = b->ndim;
	mg->m = ra >= 2 ? a->dims[ra - 2] : 1;
	mg->k = a->dims[ra - 1];
	int64_t k2 = rb >= 2 ? b->dims[rb - 2] : b->dims[0];
	mg->n = rb >= 2 ? b->dims[rb - 1] : 1;
	if (k2 != mg->k)
		return NODE_ERR(DF_EINVAL, n, "inner dims differ (%lld vs %lld)",
				(long long)mg->k, (long long)k2);
	int na = ra > 2 ? ra - 2 : 0, nbb = rb > 2 ? rb - 2 : 0;
	shape bs;
	df_err err = broadcast_shape(n, na, nbb, a->dims, b->dims, &bs);
	if (err)
		return err;
	mg->nb = bs.ndim;
	int64_t sa = 1, sb = 1;
	for (int i = bs.ndim - 1; i >= 0; i--) {
		int ia = i - (bs.ndim - na), ib = i - (bs.ndim - nbb);
		int64_t da = ia >= 0 ? a->dims[ia] : 1;
		int64_t db = ib >= 0 ? b->dims[ib] : 1;
		mg->bdims[i] = bs.dims[i];
		mg->astr[i] = da == 1 ? 0 : sa;
		mg->bstr[i] = db == 1 ? 0 : sb;
		sa *= da;
		sb *= db;
	}
	s->ndim = bs.ndim;
	memcpy(s->dims, bs.dims, sizeof bs.dims);
	if (ra >= 2)
		s->dims[s->ndim++] = mg->m;
	if (rb >= 2)
		s->dims[s->ndim++] = mg->n;
	return DF_OK;
}

static df_err check_concat(const graph *g, const graph_node *n, shape *s)
{
	const graph_value *x = val(g, n, 0);
	int64_t axis = n->attr.axis.axis;
	if (axis < 0 || axis >= x->ndim)
		return NODE_ERR(DF_EINVAL, n, "axis %lld outside 0..%d",
				(long long)axis, x->ndim - 1);
	shape_copy(s, x);
	for (int i = 1; i < n->n_inputs; i++) {
		const graph_value *y = val(g, n, i);
		bool ok = y->ndim == x->ndim;
		for (int d = 0; ok && d < x->ndim; d++)
			ok = d == axis || y->dims[d] == x->dims[d];
		if (!ok)
			return NODE_ERR(DF_EINVAL, n,
					"input '%s' does not match input '%s' "
					"outside axis %lld",
					value_name(g, n->inputs[i]),
					value_name(g, n->inputs[0]),
					(long long)axis);
		s->dims[axis] += y->dims[axis];
	}
	return DF_OK;
}

/* Number of inputs each op takes: [min, max]. */
static void input_range(graph_op op, int *lo, int *hi)
{
	switch (op) {
	case GRAPH_OP_CONV:
	case GRAPH_OP_GEMM:
		*lo = 2;
		*hi = 3;
		return;
	case GRAPH_OP_MATMUL:
	case GRAPH_OP_ADD:
	case GRAPH_OP_MUL:
		*lo = *hi = 2;
		return;
	case GRAPH_OP_BATCHNORM:
		*lo = *hi = 3;
		return;
	case GRAPH_OP_CONCAT:
		*lo = 1;
		*hi = GRAPH_MAX_INPUTS;
		return;
	default:
		*lo = *hi = 1;
		return;
	}
}

/* Computes the output shape of n into s and checks everything the kernel
 * relies on. */
static df_err check_op(const graph *g, const graph_node *n, shape *s,
		       size_t *scratch)
{
	const graph_value *x = val(g, n, 0);
	*scratch = 0;
	switch (n->op) {
	case GRAPH_OP_CONV:
		return check_conv(g, n, s, scratch);
	case GRAPH_OP_GEMM:
		return check_gemm(g, n, s);
	case GRAPH_OP_MATMUL: {
		mm_geom mg;
		df_err err = mm_plan(n, x, val(g, n, 1), &mg, s);
		if (!err)
			*scratch = (size_t)mg.n;
		return err;
	}
	case GRAPH_OP_BATCHNORM: {
		if (x->ndim < 2)
			return NODE_ERR(DF_EINVAL, n, "input has rank %d, expected >= 2",
					x->ndim);
		for (int k = 1; k < 3; k++) {
			const graph_value *p = val(g, n, k);
			if (prod(p->dims, 0, p->ndim) != x->dims[1])
				return NODE_ERR(DF_EINVAL, n,
						"'%s' has %lld values, expected %lld",
						value_name(g, n->inputs[k]),
						(long long)prod(p->dims, 0, p->ndim),
						(long long)x->dims[1]);
		}
		shape_copy(s, x);
		return DF_OK;
	}
	case GRAPH_OP_RELU:
	case GRAPH_OP_CLIP:
	case GRAPH_OP_LEAKYRELU:
	case GRAPH_OP_SIGMOID:
		shape_copy(s, x);
		return DF_OK;
	case GRAPH_OP_MAXPOOL:
	case GRAPH_OP_AVGPOOL:
		return check_pool(g, n, s);
	case GRAPH_OP_GLOBALAVGPOOL:
		if (x->ndim < 3)
			return NODE_ERR(DF_EINVAL, n, "input has rank %d, expected >= 3",
					x->ndim);
		shape_copy(s, x);
		for (int d = 2; d < s->ndim; d++)
			s->dims[d] = 1;
		return DF_OK;
	case GRAPH_OP_ADD:
	case GRAPH_OP_MUL: {
		const graph_value *y = val(g, n, 1);
		df_err err = broadcast_shape(n, x->ndim, y->ndim, x->dims, y->dims,
					     s);
		return err;
	}
	case GRAPH_OP_CONCAT:
		return check_concat(g, n, s);
	case GRAPH_OP_FLATTEN:
	case GRAPH_OP_RESHAPE: {
		const graph_value *o = &g->values[n->output];
		if (prod(o->dims, 0, o->ndim) != prod(x->dims, 0, x->ndim))
			return NODE_ERR(DF_EINVAL, n,
					"output has %lld elements, input %lld",
					(long long)prod(o->dims, 0, o->ndim),
					(long long)prod(x->dims, 0, x->ndim));
		shape_copy(s, o);
		return DF_OK;
	}
	case GRAPH_OP_SOFTMAX:
		if (n->attr.axis.axis < 0 || n->attr.axis.axis >= x->ndim)
			return NODE_ERR(DF_EINVAL, n, "axis %lld outside 0..%d",
					(long long)n->attr.axis.axis, x->ndim - 1);
		shape_copy(s, x);
		return DF_OK;
	default:
		return df_errf(DF_ENOTSUP, "node %s: unknown op %d", node_name(n),
			       (int)n->op);
	}
}

/* Is value v available (graph input, constant, or produced) before node i? */
static bool available(const graph *g, const bool *is_input, int v, int i)
{
	const graph_value *gv = &g->values[v];
	if (gv->constant || is_input[v])
		return true;
	return gv->producer >= 0 && gv->producer < i &&
	       g->nodes[gv->producer].output == v;
}

static df_err check_value_use(const graph *g, const graph_node *n,
			      const bool *is_input, int v, int i)
{
	if (v < 0 || v >= g->n_values)
		return NODE_ERR(DF_EINVAL, n, "input value %d out of range", v);
	if (!available(g, is_input, v, i))
		return NODE_ERR(DF_EINVAL, n,
				"input '%s' is not computed before this node",
				value_name(g, v));
	const tensor *c = g->values[v].constant;
	if (c && c->dtype != TENSOR_F32)
		return NODE_ERR(DF_ENOTSUP, n, "constant '%s' is %s, expected f32",
				value_name(g, v), tensor_dtype_name(c->dtype));
	return DF_OK;
}

static df_err check_node(const graph *g, const bool *is_input, int i,
			 size_t *scratch)
{
	const graph_node *n = &g->nodes[i];
	if ((unsigned)n->op >= GRAPH_OP_COUNT)
		return df_errf(DF_ENOTSUP, "node %s: unknown op %d", node_name(n),
			       (int)n->op);
	int lo, hi;
	input_range(n->op, &lo, &hi);
	if (n->n_inputs < lo || n->n_inputs > hi)
		return NODE_ERR(DF_EINVAL, n, "has %d inputs, expected %d..%d",
				n->n_inputs, lo, hi);
	for (int k = 0; k < n->n_inputs; k++) {
		int v = n->inputs[k];
		if (v == -1 && k >= lo)
			continue; /* optional bias */
		if (v == -1)
			return NODE_ERR(DF_EINVAL, n, "required input %d is absent",
					k);
		df_err err = check_value_use(g, n, is_input, v, i);
		if (err)
			return err;
	}
	if (n->op == GRAPH_OP_CONV || n->op == GRAPH_OP_GEMM)
		if (!g->values[n->inputs[1]].constant)
			return NODE_ERR(DF_EINVAL, n, "%s", "weight is not a constant");
	int o = n->output;
	if (o < 0 || o >= g->n_values)
		return NODE_ERR(DF_EINVAL, n, "output value %d out of range", o);
	if (g->values[o].constant || is_input[o] || g->values[o].producer != i)
		return NODE_ERR(DF_EINVAL, n,
				"output '%s' is a constant, a graph input or "
				"produced elsewhere",
				value_name(g, o));
	shape s;
	df_err err = check_op(g, n, &s, scratch);
	if (err)
		return err;
	const graph_value *ov = &g->values[o];
	bool same = ov->ndim == s.ndim;
	for (int d = 0; same && d < s.ndim; d++)
		same = ov->dims[d] == s.dims[d];
	if (!same) {
		char got[160], want[160];
		tensor_shape_str(ov->ndim, ov->dims, got, sizeof got);
		tensor_shape_str(s.ndim, s.dims, want, sizeof want);
		return NODE_ERR(DF_EINVAL, n, "output '%s' has shape %s, the op gives %s",
				value_name(g, o), got, want);
	}
	if (n->n_postops < 0 || n->n_postops > GRAPH_MAX_POSTOPS)
		return NODE_ERR(DF_EINVAL, n, "has %d post-ops", n->n_postops);
	for (int p = 0; p < n->n_postops; p++) {
		const graph_postop *po = &n->postops[p];
		if (po->kind == GRAPH_POSTOP_ACT) {
			if ((unsigned)po->act >= GRAPH_ACT_COUNT)
				return NODE_ERR(DF_EINVAL, n,
						"post-op %d: unknown activation %d",
						p, (int)po->act);
			continue;
		}
		if (po->kind != GRAPH_POSTOP_ADD)
			return NODE_ERR(DF_EINVAL, n, "post-op %d: unknown kind %d", p,
					(int)po->kind);
		if ((err = check_value_use(g, n, is_input, po->operand, i)))
			return err;
		const graph_value *pv = &g->values[po->operand];
		bool fits = pv->ndim == ov->ndim;
		for (int d = 0; fits && d < ov->ndim; d++)
			fits = pv->dims[d] == ov->dims[d];
		if (!fits)
			return NODE_ERR(DF_EINVAL, n,
					"post-op %d: operand '%s' does not have "
					"the output's shape",
					p, value_name(g, po->operand));
	}
	return DF_OK;
}

/* ---------------------------------------------------------------- kernels */

static float act_apply(graph_act act, float alpha, float beta, float v)
{
	switch (act) {
	case GRAPH_ACT_RELU:
		return v < 0.0f ? 0.0f : v; /* NaN stays NaN */
	case GRAPH_ACT_CLIP:
		/* fmaxf/fminf would drop NaN; ONNX Clip propagates it. */
		if (v < alpha)
			v = alpha;
		if (v > beta)
			v = beta;
		return v;
	case GRAPH_ACT_LEAKYRELU:
		return v >= 0.0f ? v : alpha * v;
	case GRAPH_ACT_SIGMOID:
		if (v >= 0.0f)
			return (float)(1.0 / (1.0 + exp(-(double)v)));
		else {
			double e = exp((double)v);
			return (float)(e / (1.0 + e));
		}
	default:
		return v;
	}
}

static void act_run(graph_act act, float alpha, float beta, const float *x,
		    float *y, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] = act_apply(act, alpha, beta, x[i]);
}

static void conv_run(const graph *g, const graph_node *n, float *const *buf,
		     float *y, double *acc)
{
	const graph_conv_attr *a = &n->attr.conv;
	const graph_value *xv = val(g, n, 0), *wv = val(g, n, 1);
	const float *x = buf[n->inputs[0]], *w = buf[n->inputs[1]];
	const float *bias = n->n_inputs > 2 && n->inputs[2] >= 0
				    ? buf[n->inputs[2]]
				    : NULL;
	const graph_value *yv = &g->values[n->output];
	int64_t N = xv->dims[0], C = xv->dims[1], H = xv->dims[2],
		W = xv->dims[3];
	int64_t M = wv->dims[0], KH = a->kernel[0], KW = a->kernel[1];
	int64_t OH = yv->dims[2], OW = yv->dims[3];
	int64_t sh = a->strides[0], sw = a->strides[1];
	int64_t dh = a->dilations[0], dw = a->dilations[1];
	int64_t pt = a->pads[0], pl = a->pads[1];
	int64_t cg = C / a->group, mg = M / a->group;

	for (int64_t b = 0; b < N; b++) {
		for (int64_t m = 0; m < M; m++) {
			int64_t grp = m / mg;
			double b0 = bias ? bias[m] : 0.0;
			for (int64_t i = 0; i < OH * OW; i++)
				acc[i] = b0;
			for (int64_t c = 0; c < cg; c++) {
				const float *xp =
					x + ((b * C + grp * cg + c) * H) * W;
				const float *wp = w + ((m * cg + c) * KH) * KW;
				for (int64_t kh = 0; kh < KH; kh++) {
					for (int64_t kw = 0; kw < KW; kw++) {
						double wt = wp[kh * KW + kw];
						/* ow range whose iw = ow*sw - pl
						 * + kw*dw lies in [0, W). */
						int64_t off = kw * dw - pl;
						int64_t ow0 = off >= 0
							? 0 : (-off + sw - 1) / sw;
						int64_t ow1 = W - off <= 0
							? 0 : (W - off + sw - 1) / sw;
						if (ow1 > OW)
							ow1 = OW;
						for (int64_t oh = 0; oh < OH; oh++) {
							int64_t ih = oh * sh - pt + kh * dh;
							if (ih < 0 || ih >= H)
								continue;
							const float *row = xp + ih * W;
							double *ar = acc + oh * OW;
							for (int64_t ow = ow0; ow < ow1; ow++)
								ar[ow] += wt * row[ow * sw + off];
						}
					}
				}
			}
			float *yp = y + (b * M + m) * OH * OW;
			for (int64_t i = 0; i < OH * OW; i++)
				yp[i] = (float)acc[i];
		}
	}
}

static void gemm_run(const graph *g, const graph_node *n, float *const *buf,
		     float *y)
{
	const graph_value *xv = val(g, n, 0), *wv = val(g, n, 1);
	const float *x = buf[n->inputs[0]], *w = buf[n->inputs[1]];
	const float *bias = n->n_inputs > 2 && n->inputs[2] >= 0
				    ? buf[n->inputs[2]]
				    : NULL;
	int64_t N = wv->dims[0], K = wv->dims[1];
	bool ta = n->attr.gemm.trans_a;
	int64_t M = ta ? xv->dims[1] : prod(xv->dims, 0, xv->ndim - 1);
	for (int64_t i = 0; i < M; i++) {
		for (int64_t j = 0; j < N; j++) {
			const float *wr = w + j * K;
			double s = bias ? bias[j] : 0.0;
			if (ta)
				for (int64_t k = 0; k < K; k++)
					s += (double)x[k * M + i] * wr[k];
			else
				for (int64_t k = 0; k < K; k++)
					s += (double)x[i * K + k] * wr[k];
			y[i * N + j] = (float)s;
		}
	}
}

static void matmul_run(const graph *g, const graph_node *n, float *const *buf,
		       float *y, double *acc)
{
	mm_geom mg;
	shape s;
	(void)mm_plan(n, val(g, n, 0), val(g, n, 1), &mg, &s); /* checked */
	const float *a = buf[n->inputs[0]], *b = buf[n->inputs[1]];
	int64_t M = mg.m, K = mg.k, N = mg.n;
	int64_t batches = prod(mg.bdims, 0, mg.nb);
	int64_t idx[TENSOR_MAX_DIMS] = {0};
	for (int64_t bt = 0; bt < batches; bt++) {
		int64_t ao = 0, bo = 0;
		for (int d = 0; d < mg.nb; d++) {
			ao += idx[d] * mg.astr[d];
			bo += idx[d] * mg.bstr[d];
		}
		const float *ap = a + ao * M * K, *bp = b + bo * K * N;
		float *yp = y + bt * M * N;
		for (int64_t i = 0; i < M; i++) {
			for (int64_t j = 0; j < N; j++)
				acc[j] = 0.0;
			for (int64_t k = 0; k < K; k++) {
				double av = ap[i * K + k];
				const float *br = bp + k * N;
				for (int64_t j = 0; j < N; j++)
					acc[j] += av * br[j];
			}
			for (int64_t j = 0; j < N; j++)
				yp[i * N + j] = (float)acc[j];
		}
		for (int d = mg.nb - 1; d >= 0; d--) {
			if (++idx[d] < mg.bdims[d])
				break;
			idx[d] = 0;
		}
	}
}

static void batchnorm_run(const graph *g, const graph_node *n,
			  float *const *buf, float *y)
{
	const graph_value *xv = val(g, n, 0);
	const float *x = buf[n->inputs[0]];
	const float *sc = buf[n->inputs[1]], *sh = buf[n->inputs[2]];
	int64_t N = xv->dims[0], C = xv->dims[1];
	int64_t inner = prod(xv->dims, 2, xv->ndim);
	for (int64_t b = 0; b < N; b++)
		for (int64_t c = 0; c < C; c++) {
			size_t base = (size_t)((b * C + c) * inner);
			for (int64_t i = 0; i < inner; i++)
				y[base + i] = x[base + i] * sc[c] + sh[c];
		}
}

static void pool_run(const graph *g, const graph_node *n, float *const *buf,
		     float *y)
{
	const graph_pool_attr *a = &n->attr.pool;
	const graph_value *xv = val(g, n, 0), *yv = &g->values[n->output];
	const float *x = buf[n->inputs[0]];
	bool is_max = n->op == GRAPH_OP_MAXPOOL;
	int64_t NC = xv->dims[0] * xv->dims[1], H = xv->dims[2],
		W = xv->dims[3];
	int64_t OH = yv->dims[2], OW = yv->dims[3];
	int64_t KH = a->kernel[0], KW = a->kernel[1];
	int64_t sh = a->strides[0], sw = a->strides[1];
	int64_t dh = a->dilations[0], dw = a->dilations[1];
	int64_t pt = a->pads[0], pl = a->pads[1], pb = a->pads[2],
		pr = a->pads[3];
	for (int64_t p = 0; p < NC; p++) {
		const float *xp = x + p * H * W;
		float *yp = y + p * OH * OW;
		for (int64_t oh = 0; oh < OH; oh++) {
			int64_t h0 = oh * sh - pt;
			for (int64_t ow = 0; ow < OW; ow++) {
				int64_t w0 = ow * sw - pl;
				double sum = 0.0;
				float mx = -INFINITY;
				for (int64_t kh = 0; kh < KH; kh++) {
					int64_t ih = h0 + kh * dh;
					if (ih < 0 || ih >= H)
						continue;
					for (int64_t kw = 0; kw < KW; kw++) {
						int64_t iw = w0 + kw * dw;
						if (iw < 0 || iw >= W)
							continue;
						float v = xp[ih * W + iw];
						sum += v;
						if (v > mx || isnan(v))
							mx = isnan(mx) ? mx : v;
					}
				}
				if (is_max) {
					yp[oh * OW + ow] = mx;
					continue;
				}
				int64_t cnt;
				if (a->count_include_pad)
					cnt = taps_inside(h0, KH, dh, -pt, H + pb) *
					      taps_inside(w0, KW, dw, -pl, W + pr);
				else
					cnt = taps_inside(h0, KH, dh, 0, H) *
					      taps_inside(w0, KW, dw, 0, W);
				yp[oh * OW + ow] = (float)(sum / (double)cnt);
			}
		}
	}
}

static void gap_run(const graph *g, const graph_node *n, float *const *buf,
		    float *y)
{
	const graph_value *xv = val(g, n, 0);
	const float *x = buf[n->inputs[0]];
	int64_t NC = xv->dims[0] * xv->dims[1];
	int64_t inner = prod(xv->dims, 2, xv->ndim);
	for (int64_t p = 0; p < NC; p++) {
		double s = 0.0;
		for (int64_t i = 0; i < inner; i++)
			s += x[p * inner + i];
		y[p] = inner > 0 ? (float)(s / (double)inner) : NAN;
	}
}

static void binary_run(const graph *g, const graph_node *n, float *const *buf,
		       float *y)
{
	const graph_value *av = val(g, n, 0), *bv = val(g, n, 1);
	const graph_value *yv = &g->values[n->output];
	const float *a = buf[n->inputs[0]], *b = buf[n->inputs[1]];
	bool mul = n->op == GRAPH_OP_MUL;
	int r = yv->ndim;
	int64_t od[TENSOR_MAX_DIMS], as[TENSOR_MAX_DIMS], bs[TENSOR_MAX_DIMS];
	int64_t sa = 1, sb = 1;
	for (int i = r - 1; i >= 0; i--) {
		int ia = i - (r - av->ndim), ib = i - (r - bv->ndim);
		int64_t da = ia >= 0 ? av->dims[ia] : 1;
		int64_t db = ib >= 0 ? bv->dims[ib] : 1;
		od[i] = yv->dims[i];
		as[i] = da == 1 ? 0 : sa;
		bs[i] = db == 1 ? 0 : sb;
		sa *= da;
		sb *= db;
	}
	size_t total = (size_t)prod(yv->dims, 0, r);
	if (total == 0)
		return;
	if (r == 0) {
		y[0] = mul ? a[0] * b[0] : a[0] + b[0];
		return;
	}
	/* Walk the output row by row (last dim inner), with per-input offsets
	 * advanced by an odometer over the outer dims. */
	int64_t last = od[r - 1], ia = as[r - 1], ib = bs[r - 1];
	int64_t idx[TENSOR_MAX_DIMS] = {0};
	size_t rows = total / (size_t)last;
	for (size_t row = 0; row < rows; row++) {
		int64_t ao = 0, bo = 0;
		for (int d = 0; d < r - 1; d++) {
			ao += idx[d] * as[d];
			bo += idx[d] * bs[d];
		}
		float *yr = y + row * (size_t)last;
		if (mul)
			for (int64_t j = 0; j < last; j++)
				yr[j] = a[ao + j * ia] * b[bo + j * ib];
		else
			for (int64_t j = 0; j < last; j++)
				yr[j] = a[ao + j * ia] + b[bo + j * ib];
		for (int d = r - 2; d >= 0; d--) {
			if (++idx[d] < od[d])
				break;
			idx[d] = 0;
		}
	}
}

static void concat_run(const graph *g, const graph_node *n, float *const *buf,
		       float *y)
{
	const graph_value *yv = &g->values[n->output];
	int64_t axis = n->attr.axis.axis;
	int64_t outer = prod(yv->dims, 0, (int)axis);
	int64_t ychunk = prod(yv->dims, (int)axis, yv->ndim);
	int64_t off = 0;
	for (int i = 0; i < n->n_inputs; i++) {
		const graph_value *xv = val(g, n, i);
		const float *x = buf[n->inputs[i]];
		int64_t chunk = prod(xv->dims, (int)axis, xv->ndim);
		if (chunk > 0)
			for (int64_t o = 0; o < outer; o++)
				memcpy(y + o * ychunk + off, x + o * chunk,
				       (size_t)chunk * sizeof *y);
		off += chunk;
	}
}

static void softmax_run(const graph *g, const graph_node *n, float *const *buf,
			float *y)
{
	const graph_value *xv = val(g, n, 0);
	const float *x = buf[n->inputs[0]];
	int ax = (int)n->attr.axis.axis;
	int64_t outer = prod(xv->dims, 0, ax);
	int64_t len, inner;
	if (n->attr.axis.legacy) {
		len = prod(xv->dims, ax, xv->ndim);
		inner = 1;
	} else {
		len = xv->dims[ax];
		inner = prod(xv->dims, ax + 1, xv->ndim);
	}
	for (int64_t o = 0; o < outer; o++) {
		for (int64_t i = 0; i < inner; i++) {
			const float *xp = x + o * len * inner + i;
			float *yp = y + o * len * inner + i;
			float mx = -INFINITY;
			for (int64_t k = 0; k < len; k++)
				if (xp[k * inner] > mx)
					mx = xp[k * inner];
			double s = 0.0;
			for (int64_t k = 0; k < len; k++)
				s += exp((double)xp[k * inner] - mx);
			for (int64_t k = 0; k < len; k++)
				yp[k * inner] =
					(float)(exp((double)xp[k * inner] - mx) / s);
		}
	}
}

/* Runs node n's op (not its post-ops) into y. */
static void op_run(const graph *g, const graph_node *n, float *const *buf,
		   float *y, size_t ny, double *scratch)
{
	const float *x = buf[n->inputs[0]];
	switch (n->op) {
	case GRAPH_OP_CONV:
		conv_run(g, n, buf, y, scratch);
		return;
	case GRAPH_OP_GEMM:
		gemm_run(g, n, buf, y);
		return;
	case GRAPH_OP_MATMUL:
		matmul_run(g, n, buf, y, scratch);
		return;
	case GRAPH_OP_BATCHNORM:
		batchnorm_run(g, n, buf, y);
		return;
	case GRAPH_OP_RELU:
		act_run(GRAPH_ACT_RELU, 0, 0, x, y, ny);
		return;
	case GRAPH_OP_CLIP:
		act_run(GRAPH_ACT_CLIP, n->attr.clip.lo, n->attr.clip.hi, x, y,
			ny);
		return;
	case GRAPH_OP_LEAKYRELU:
		act_run(GRAPH_ACT_LEAKYRELU, n->attr.leaky.alpha, 0, x, y, ny);
		return;
	case GRAPH_OP_SIGMOID:
		act_run(GRAPH_ACT_SIGMOID, 0, 0, x, y, ny);
		return;
	case GRAPH_OP_MAXPOOL:
	case GRAPH_OP_AVGPOOL:
		pool_run(g, n, buf, y);
		return;
	case GRAPH_OP_GLOBALAVGPOOL:
		gap_run(g, n, buf, y);
		return;
	case GRAPH_OP_ADD:
	case GRAPH_OP_MUL:
		binary_run(g, n, buf, y);
		return;
	case GRAPH_OP_CONCAT:
		concat_run(g, n, buf, y);
		return;
	case GRAPH_OP_FLATTEN:
	case GRAPH_OP_RESHAPE:
		if (ny > 0)
			memcpy(y, x, ny * sizeof *y);
		return;
	case GRAPH_OP_SOFTMAX:
		softmax_run(g, n, buf, y);
		return;
	default:
		return; /* rejected by check_node */
	}
}

static void postops_run(const graph_node *n, float *const *buf, float *y,
			size_t ny)
{
	for (int p = 0; p < n->n_postops; p++) {
		const graph_postop *po = &n->postops[p];
		if (po->kind == GRAPH_POSTOP_ACT) {
			act_run(po->act, po->alpha, po->beta, y, y, ny);
		} else {
			const float *o = buf[po->operand];
			for (size_t i = 0; i < ny; i++)
				y[i] += o[i];
		}
	}
}

/* ------------------------------------------------------------ the engine */

static void *alloc_floats(size_t n)
{
	return malloc(n ? n * sizeof(float) : 1);
}

static df_err ref_run(engine *e, const tensor *const *inputs,
		      tensor **outputs)
{
	ref_engine *re = (ref_engine *)e;
	const graph *g = e->g;
	size_t nv = (size_t)g->n_values;
	float **buf = calloc(nv ? nv : 1, sizeof *buf);
	bool *owned = calloc(nv ? nv : 1, sizeof *owned);
	double *scratch = malloc((re->scratch_len ? re->scratch_len : 1) *
				 sizeof *scratch);
	df_err err = DF_OK;
	if (!buf || !owned || !scratch) {
		err = df_errf(DF_ENOMEM, "ref engine: out of memory");
		goto out;
	}
	for (int v = 0; v < g->n_values; v++)
		if (g->values[v].constant)
			buf[v] = tensor_f32(g->values[v].constant);
	for (int i = 0; i < g->n_inputs; i++)
		buf[g->inputs[i]] = tensor_f32(inputs[i]);

	for (int i = 0; i < g->n_nodes; i++) {
		const graph_node *n = &g->nodes[i];
		size_t ny = re->numel[n->output];
		float *y = alloc_floats(ny);
		if (!y) {
			err = NODE_ERR(DF_ENOMEM, n, "%s", "out of memory for output");
			goto out;
		}
		buf[n->output] = y;
		owned[n->output] = true;
		op_run(g, n, buf, y, ny, scratch);
		postops_run(n, buf, y, ny);
		/* Free what no later node reads. */
		for (int k = 0; k < n->n_inputs + n->n_postops; k++) {
			int v = k < n->n_inputs
					? n->inputs[k]
					: (n->postops[k - n->n_inputs].kind ==
							   GRAPH_POSTOP_ADD
						   ? n->postops[k - n->n_inputs].operand
						   : -1);
			if (v >= 0 && owned[v] && re->last_use[v] == i) {
				free(buf[v]);
				buf[v] = NULL;
				owned[v] = false;
			}
		}
	}

	for (int i = 0; i < g->n_outputs; i++) {
		int v = g->outputs[i];
		const graph_value *gv = &g->values[v];
		err = tensor_create(TENSOR_F32, gv->ndim, gv->dims, &outputs[i]);
		if (err)
			goto out;
		if (re->numel[v] > 0)
			memcpy(outputs[i]->data, buf[v], re->numel[v] * sizeof(float));
	}
out:
	if (owned)
		for (size_t v = 0; v < nv; v++)
			if (owned[v])
				free(buf[v]);
	free(buf);
	free(owned);
	free(scratch);
	return err;
}

static void ref_destroy(engine *e)
{
	ref_engine *re = (ref_engine *)e;
	free(re->numel);
	free(re->last_use);
	free(re);
}

static const struct engine_ops ref_ops = {
	.run = ref_run,
	.destroy = ref_destroy,
};

df_err engine_ref_create(const graph *g, int threads, engine **out)
{
	(void)threads;
	if (!g || !out)
		return df_errf(DF_EINVAL, "engine_ref_create: NULL argument");
	if (g->n_values < 0 || g->n_nodes < 0 || g->n_inputs < 0 ||
	    g->n_outputs < 0)
		return df_errf(DF_EINVAL, "graph has negative counts");
	df_err err = DF_OK;
	size_t nv = g->n_values ? (size_t)g->n_values : 1;
	bool *is_input = calloc(nv, sizeof *is_input);
	ref_engine *re = calloc(1, sizeof *re);
	if (!is_input || !re) {
		err = df_errf(DF_ENOMEM, "ref engine: out of memory");
		goto out;
	}
	re->numel = calloc(nv, sizeof *re->numel);
	re->last_use = malloc(nv * sizeof *re->last_use);
	if (!re->numel || !re->last_use) {
		err = df_errf(DF_ENOMEM, "ref engine: out of memory");
		goto out;
	}
	for (int v = 0; v < g->n_values; v++) {
		const graph_value *gv = &g->values[v];
		re->last_use[v] = -1;
		if ((err = tensor_shape_numel(gv->ndim, gv->dims, TENSOR_F32,
					      &re->numel[v]))) {
			char why[256];
			snprintf(why, sizeof why, "%s", df_err_msg());
			err = df_errf(err, "value '%s': %s", value_name(g, v), why);
			goto out;
		}
		if (gv->constant && gv->constant->numel != re->numel[v]) {
			err = df_errf(DF_EINVAL,
				      "constant '%s' has %zu elements, its shape "
				      "says %zu",
				      value_name(g, v), gv->constant->numel,
				      re->numel[v]);
			goto out;
		}
	}
	for (int i = 0; i < g->n_inputs; i++) {
		int v = g->inputs[i];
		if (v < 0 || v >= g->n_values || g->values[v].constant ||
		    is_input[v]) {
			err = df_errf(DF_EINVAL,
				      "graph input #%d is out of range, a constant "
				      "or listed twice",
				      i);
			goto out;
		}
		is_input[v] = true;
	}
	for (int i = 0; i < g->n_nodes; i++) {
		size_t need = 0;
		if ((err = check_node(g, is_input, i, &need)))
			goto out;
		if (need > re->scratch_len)
			re->scratch_len = need;
		const graph_node *n = &g->nodes[i];
		for (int k = 0; k < n->n_inputs; k++)
			if (n->inputs[k] >= 0)
				re->last_use[n->inputs[k]] = i;
		for (int p = 0; p < n->n_postops; p++)
			if (n->postops[p].kind == GRAPH_POSTOP_ADD)
				re->last_use[n->postops[p].operand] = i;
	}
	for (int i = 0; i < g->n_outputs; i++) {
		int v = g->outputs[i];
		if (v < 0 || v >= g->n_values ||
		    !available(g, is_input, v, g->n_nodes) ||
		    (g->values[v].constant &&
		     g->values[v].constant->dtype != TENSOR_F32)) {
			err = df_errf(DF_EINVAL,
				      "graph output #%d is out of range, never "
				      "computed or not f32",
				      i);
			goto out;
		}
		re->last_use[v] = INT_MAX;
	}
	re->base.ops = &ref_ops;
	re->base.g = g;
	re->base.kind = ENGINE_REF;
	re->base.threads = 1;
	*out = &re->base;
	re = NULL;
out:
	if (re)
		ref_destroy(&re->base);
	free(is_input);
	return err;
}
