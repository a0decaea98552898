/*
 * engine_ref.c - the plain-C reference engine: every graph_op with the ONNX
 * semantics that graph.h normalizes to, in simple loops that accumulate in
 * double. It is the yardstick the oneDNN engine is tested against, so it
 * favours obviously-right code over speed (but stays usable on models of a
 * few GFLOP: inner loops run over contiguous memory without branches).
 * This file is the engine (create, run, destroy) and the per-node checks;
 * the op kernels are in engine_ref_ops.c.
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
#include "engine_ref_internal.h"

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

static void shape_copy(engine_ref_shape *s, const graph_value *v)
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

/* numpy broadcast of dims ad[0..na) against bd[0..nb) into s. */
static df_err broadcast_shape(const graph_node *n, int na, int nb,
                              const int64_t *ad, const int64_t *bd,
                              engine_ref_shape *s)
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

static df_err check_conv(const graph *g, const graph_node *n,
                         engine_ref_shape *s, size_t *scratch)
{
	const graph_conv_attr *a = &n->attr.conv;
	const graph_value *x = engine_ref_val(g, n, 0),
	                  *w = engine_ref_val(g, n, 1);
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
	    engine_ref_prod(engine_ref_val(g, n, 2)->dims, 0,
	                    engine_ref_val(g, n, 2)->ndim) != w->dims[0])
		return NODE_ERR(
		    DF_EINVAL, n, "bias has %lld values, expected %lld",
		    (long long)engine_ref_prod(engine_ref_val(g, n, 2)->dims, 0,
		                               engine_ref_val(g, n, 2)->ndim),
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

static df_err check_pool(const graph *g, const graph_node *n,
                         engine_ref_shape *s)
{
	const graph_pool_attr *a = &n->attr.pool;
	const graph_value *x = engine_ref_val(g, n, 0);
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
			if (engine_ref_taps_inside(i * st - pb, k, d, 0, in) ==
			    0)
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

static df_err check_gemm(const graph *g, const graph_node *n,
                         engine_ref_shape *s)
{
	const graph_value *x = engine_ref_val(g, n, 0),
	                  *w = engine_ref_val(g, n, 1);
	if (!n->attr.gemm.trans_b)
		return NODE_ERR(DF_EINVAL, n, "%s",
				"not canonical (trans_b must be set, W [N,K])");
	if (w->ndim != 2)
		return NODE_ERR(DF_EINVAL, n, "weight has rank %d, expected 2",
				w->ndim);
	int64_t nn = w->dims[0], k = w->dims[1];
	if (n->n_inputs > 2 && n->inputs[2] >= 0 &&
	    engine_ref_prod(engine_ref_val(g, n, 2)->dims, 0,
	                    engine_ref_val(g, n, 2)->ndim) != nn)
		return NODE_ERR(
		    DF_EINVAL, n, "bias has %lld values, expected %lld",
		    (long long)engine_ref_prod(engine_ref_val(g, n, 2)->dims, 0,
		                               engine_ref_val(g, n, 2)->ndim),
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

df_err engine_ref_mm_plan(const graph_node *n, const graph_value *a,
                          const graph_value *b, engine_ref_mm_geom *mg,
                          engine_ref_shape *s)
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
	engine_ref_shape bs;
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

static df_err check_concat(const graph *g, const graph_node *n,
                           engine_ref_shape *s)
{
	const graph_value *x = engine_ref_val(g, n, 0);
	int64_t axis = n->attr.axis.axis;
	if (axis < 0 || axis >= x->ndim)
		return NODE_ERR(DF_EINVAL, n, "axis %lld outside 0..%d",
				(long long)axis, x->ndim - 1);
	shape_copy(s, x);
	for (int i = 1; i < n->n_inputs; i++) {
		const graph_value *y = engine_ref_val(g, n, i);
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
static df_err check_op(const graph *g, const graph_node *n, engine_ref_shape *s,
                       size_t *scratch)
{
	const graph_value *x = engine_ref_val(g, n, 0);
	*scratch = 0;
	switch (n->op) {
	case GRAPH_OP_CONV:
		return check_conv(g, n, s, scratch);
	case GRAPH_OP_GEMM:
		return check_gemm(g, n, s);
	case GRAPH_OP_MATMUL: {
		engine_ref_mm_geom mg;
		df_err err =
		    engine_ref_mm_plan(n, x, engine_ref_val(g, n, 1), &mg, s);
		if (!err)
			*scratch = (size_t)mg.n;
		return err;
	}
	case GRAPH_OP_BATCHNORM: {
		if (x->ndim < 2)
			return NODE_ERR(DF_EINVAL, n, "input has rank %d, expected >= 2",
					x->ndim);
		for (int k = 1; k < 3; k++) {
			const graph_value *p = engine_ref_val(g, n, k);
			if (engine_ref_prod(p->dims, 0, p->ndim) != x->dims[1])
				return NODE_ERR(
				    DF_EINVAL, n,
				    "'%s' has %lld values, expected %lld",
				    value_name(g, n->inputs[k]),
				    (long long)engine_ref_prod(p->dims, 0,
				                               p->ndim),
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
		const graph_value *y = engine_ref_val(g, n, 1);
		df_err err = broadcast_shape(n, x->ndim, y->ndim, x->dims, y->dims,
					     s);
		return err;
	}
	case GRAPH_OP_CONCAT:
		return check_concat(g, n, s);
	case GRAPH_OP_FLATTEN:
	case GRAPH_OP_RESHAPE: {
		const graph_value *o = &g->values[n->output];
		if (engine_ref_prod(o->dims, 0, o->ndim) !=
		    engine_ref_prod(x->dims, 0, x->ndim))
			return NODE_ERR(
			    DF_EINVAL, n,
			    "output has %lld elements, input %lld",
			    (long long)engine_ref_prod(o->dims, 0, o->ndim),
			    (long long)engine_ref_prod(x->dims, 0, x->ndim));
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
	engine_ref_shape s;
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
		engine_ref_ops_run(g, n, buf, y, ny, scratch);
		engine_ref_ops_postops_run(n, buf, y, ny);
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
