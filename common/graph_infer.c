/*
 * graph_infer.c - shape inference for the graph IR: graph_infer_node()
 * (one node's output shape, attributes normalized) and graph_infer_shape().
 * Constant evaluation and the finalize pass that runs both over the graph
 * are in graph_fold.c.
 *
 * Shapes come from untrusted files: every attribute is range-checked before
 * it enters arithmetic, and every inferred shape is checked against
 * TENSOR_MAX_BYTES. graph_infer_shape() only reads the graph and writes the
 * node it is given, which may be a copy (graph_check() relies on that).
 */
#include "graph.h"
#include "graph_internal.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Largest kernel, stride, dilation or pad accepted. Far above any CNN, and
 * small enough that no sum or product of two of them overflows int64. */
#define ATTR_MAX ((int64_t)1 << 24)

static void shape_str(const graph_value *v, char *buf, size_t len)
{
	tensor_shape_str(v->ndim, v->dims, buf, len);
}

/* ---- shape inference ---------------------------------------------------- */

static df_err check_attr(const graph_node *nd, const char *what, int64_t v,
                         int64_t lo)
{
	if (v < lo || v > ATTR_MAX)
		return graph_node_err(
		    nd, DF_EINVAL, "%s %lld outside %lld..%lld", what,
		    (long long)v, (long long)lo, (long long)ATTR_MAX);
	return DF_OK;
}

/* Output size of one spatial dim of a window op. ceil_mode follows PyTorch
 * and ONNX Runtime: a last window that would start in the end padding is
 * dropped. */
static df_err window_out(const graph_node *nd, int64_t in, int64_t k, int64_t s,
                         int64_t d, int64_t pb, int64_t pe, bool ceil_mode,
                         int64_t *out)
{
	int64_t eff = d * (k - 1) + 1;
	int64_t span = in + pb + pe - eff;
	if (span < 0)
		return graph_node_err(
		    nd, DF_EINVAL,
		    "window of %lld (kernel %lld, dilation %lld) exceeds the "
		    "padded input size %lld",
		    (long long)eff, (long long)k, (long long)d,
		    (long long)(in + pb + pe));
	int64_t o = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
	if (ceil_mode && (o - 1) * s >= in + pb)
		o--;
	*out = o;
	return DF_OK;
}

/* Multidirectional (numpy) broadcast of a and b into out. */
static bool broadcast(int na, const int64_t *a, int nb, const int64_t *b,
                      int *nout, int64_t *out)
{
	int n = na > nb ? na : nb;
	for (int i = 0; i < n; i++) {
		int64_t da = i < n - na ? 1 : a[i - (n - na)];
		int64_t db = i < n - nb ? 1 : b[i - (n - nb)];
		if (da != db && da != 1 && db != 1)
			return false;
		out[i] = da == 1 ? db : da;
	}
	*nout = n;
	return true;
}

static df_err normalize_axis(const graph_node *nd, int64_t *axis, int64_t lo,
                             int64_t hi, int64_t add)
{
	int64_t a = *axis;
	if (a < lo || a > hi)
		return graph_node_err(
		    nd, DF_EINVAL, "axis %lld outside %lld..%lld", (long long)a,
		    (long long)lo, (long long)hi);
	if (a < 0)
		a += add;
	*axis = a;
	return DF_OK;
}

static df_err infer_conv(const graph *g, graph_node *nd, int *ondim,
                         int64_t *od)
{
	const graph_value *x = &g->values[nd->inputs[0]];
	const graph_value *w = &g->values[nd->inputs[1]];
	graph_conv_attr *a = &nd->attr.conv;
	char xs[96], ws[96];
	shape_str(x, xs, sizeof xs);
	shape_str(w, ws, sizeof ws);
	if (x->ndim != 4)
		return graph_node_err(
		    nd, DF_ENOTSUP,
		    "only 2-D convolution is supported: input '%s' is %s, "
		    "expected [N,C,H,W]",
		    x->name, xs);
	if (w->ndim != 4)
		return graph_node_err(nd, DF_EINVAL,
		                      "weight '%s' is %s, expected rank 4",
		                      w->name, ws);
	if (a->group == 0)
		a->group = 1;
	for (int i = 0; i < 2; i++) {
		if (a->kernel[i] == 0)
			a->kernel[i] = w->dims[2 + i];
		if (a->strides[i] == 0)
			a->strides[i] = 1;
		if (a->dilations[i] == 0)
			a->dilations[i] = 1;
	}
	df_err err = check_attr(nd, "group", a->group, 1);
	for (int i = 0; !err && i < 2; i++) {
		err = check_attr(nd, "kernel_shape", a->kernel[i], 1);
		if (!err)
			err = check_attr(nd, "stride", a->strides[i], 1);
		if (!err)
			err = check_attr(nd, "dilation", a->dilations[i], 1);
	}
	for (int i = 0; !err && i < 4; i++)
		err = check_attr(nd, "pad", a->pads[i], 0);
	if (err)
		return err;
	if (a->kernel[0] != w->dims[2] || a->kernel[1] != w->dims[3])
		return graph_node_err(
		    nd, DF_EINVAL,
		    "kernel_shape [%lld,%lld] does not match weight '%s' %s",
		    (long long)a->kernel[0], (long long)a->kernel[1], w->name,
		    ws);
	int64_t c = x->dims[1], m = w->dims[0];
	if (c % a->group || m % a->group || w->dims[1] * a->group != c)
		return graph_node_err(
		    nd, DF_EINVAL,
		    "weight '%s' %s does not fit input '%s' %s with group %lld "
		    "(needs W[1] * group == C and group dividing W[0])",
		    w->name, ws, x->name, xs, (long long)a->group);
	if (nd->n_inputs > 2 && nd->inputs[2] >= 0) {
		const graph_value *b = &g->values[nd->inputs[2]];
		if (b->ndim != 1 || b->dims[0] != m)
			return graph_node_err(nd, DF_EINVAL,
			                      "bias '%s' must be [%lld]",
			                      b->name, (long long)m);
	}
	od[0] = x->dims[0];
	od[1] = m;
	for (int i = 0; i < 2; i++) {
		err = window_out(nd, x->dims[2 + i], a->kernel[i],
		                 a->strides[i], a->dilations[i], a->pads[i],
		                 a->pads[2 + i], false, &od[2 + i]);
		if (err)
			return err;
	}
	*ondim = 4;
	return DF_OK;
}

static df_err infer_pool(const graph *g, graph_node *nd, int *ondim,
                         int64_t *od)
{
	const graph_value *x = &g->values[nd->inputs[0]];
	graph_pool_attr *a = &nd->attr.pool;
	char xs[96];
	shape_str(x, xs, sizeof xs);
	if (x->ndim != 4)
		return graph_node_err(
		    nd, DF_ENOTSUP,
		    "only 2-D pooling is supported: input '%s' is %s, "
		    "expected [N,C,H,W]",
		    x->name, xs);
	df_err err = DF_OK;
	for (int i = 0; i < 2; i++) {
		if (a->strides[i] == 0)
			a->strides[i] = 1;
		if (a->dilations[i] == 0)
			a->dilations[i] = 1;
	}
	if (nd->op != GRAPH_OP_MAXPOOL &&
	    (a->dilations[0] != 1 || a->dilations[1] != 1))
		return graph_node_err(nd, DF_EINVAL,
		                      "dilations are only valid for MaxPool");
	for (int i = 0; !err && i < 2; i++) {
		err = check_attr(nd, "kernel_shape", a->kernel[i], 1);
		if (!err)
			err = check_attr(nd, "stride", a->strides[i], 1);
		if (!err)
			err = check_attr(nd, "dilation", a->dilations[i], 1);
	}
	for (int i = 0; !err && i < 4; i++)
		err = check_attr(nd, "pad", a->pads[i], 0);
	if (err)
		return err;
	od[0] = x->dims[0];
	od[1] = x->dims[1];
	for (int i = 0; i < 2; i++) {
		err = window_out(nd, x->dims[2 + i], a->kernel[i],
		                 a->strides[i], a->dilations[i], a->pads[i],
		                 a->pads[2 + i], a->ceil_mode, &od[2 + i]);
		if (err)
			return err;
	}
	*ondim = 4;
	return DF_OK;
}

static df_err infer_gemm(const graph *g, graph_node *nd, int *ondim,
                         int64_t *od)
{
	const graph_value *a = &g->values[nd->inputs[0]];
	const graph_value *b = &g->values[nd->inputs[1]];
	graph_gemm_attr *at = &nd->attr.gemm;
	char as[96], bs[96];
	shape_str(a, as, sizeof as);
	shape_str(b, bs, sizeof bs);
	if (at->alpha == 0.0f)
		at->alpha = 1.0f;
	if (at->beta == 0.0f)
		at->beta = 1.0f;
	if (!isfinite(at->alpha) || !isfinite(at->beta))
		return graph_node_err(nd, DF_EINVAL,
		                      "alpha and beta must be finite");
	if (a->ndim != 2 || b->ndim != 2)
		return graph_node_err(nd, DF_EINVAL,
		                      "A '%s' %s and B '%s' %s must be 2-D",
		                      a->name, as, b->name, bs);
	int64_t m = at->trans_a ? a->dims[1] : a->dims[0];
	int64_t k = at->trans_a ? a->dims[0] : a->dims[1];
	int64_t kb = at->trans_b ? b->dims[1] : b->dims[0];
	int64_t n = at->trans_b ? b->dims[0] : b->dims[1];
	if (k != kb)
		return graph_node_err(
		    nd, DF_EINVAL,
		    "A '%s' %s and B '%s' %s (transA=%d, transB=%d) disagree "
		    "on K: %lld vs %lld",
		    a->name, as, b->name, bs, at->trans_a, at->trans_b,
		    (long long)k, (long long)kb);
	od[0] = m;
	od[1] = n;
	if (nd->n_inputs > 2 && nd->inputs[2] >= 0) {
		const graph_value *c = &g->values[nd->inputs[2]];
		bool ok = c->ndim <= 2;
		for (int i = 0; ok && i < c->ndim; i++) {
			int64_t want = od[2 - c->ndim + i];
			ok = c->dims[i] == want || c->dims[i] == 1;
		}
		if (!ok) {
			char cs[96];
			shape_str(c, cs, sizeof cs);
			return graph_node_err(
			    nd, DF_EINVAL,
			    "C '%s' %s does not broadcast to [%lld,%lld]",
			    c->name, cs, (long long)m, (long long)n);
		}
	}
	*ondim = 2;
	return DF_OK;
}

static df_err infer_matmul(const graph *g, graph_node *nd, int *ondim,
                           int64_t *od)
{
	const graph_value *a = &g->values[nd->inputs[0]];
	const graph_value *b = &g->values[nd->inputs[1]];
	char as[96], bs[96];
	shape_str(a, as, sizeof as);
	shape_str(b, bs, sizeof bs);
	if (a->ndim < 1 || b->ndim < 1)
		return graph_node_err(nd, DF_EINVAL,
		                      "inputs must have rank >= 1");
	int64_t ka = a->dims[a->ndim - 1];
	int64_t kb = b->ndim == 1 ? b->dims[0] : b->dims[b->ndim - 2];
	if (ka != kb)
		return graph_node_err(
		    nd, DF_EINVAL,
		    "A '%s' %s and B '%s' %s disagree on K: %lld vs %lld",
		    a->name, as, b->name, bs, (long long)ka, (long long)kb);
	int nba = a->ndim > 2 ? a->ndim - 2 : 0;
	int nbb = b->ndim > 2 ? b->ndim - 2 : 0;
	int nb = 0;
	if (!broadcast(nba, a->dims, nbb, b->dims, &nb, od))
		return graph_node_err(
		    nd, DF_EINVAL,
		    "batch dims of A '%s' %s and B '%s' %s do not broadcast",
		    a->name, as, b->name, bs);
	int n = nb;
	if (a->ndim >= 2)
		od[n++] = a->dims[a->ndim - 2];
	if (b->ndim >= 2)
		od[n++] = b->dims[b->ndim - 1];
	*ondim = n;
	return DF_OK;
}

static df_err infer_batchnorm(const graph *g, graph_node *nd, int *ondim,
                              int64_t *od)
{
	const graph_value *x = &g->values[nd->inputs[0]];
	if (nd->n_inputs != 3 && nd->n_inputs != 5)
		return graph_node_err(
		    nd, DF_EINVAL, "%d inputs, expected 3 or 5", nd->n_inputs);
	if (x->ndim < 2)
		return graph_node_err(nd, DF_EINVAL,
		                      "input '%s' has rank %d, expected >= 2",
		                      x->name, x->ndim);
	for (int i = 1; i < nd->n_inputs; i++) {
		const graph_value *p = &g->values[nd->inputs[i]];
		if (p->ndim != 1 || p->dims[0] != x->dims[1]) {
			char ps[96];
			shape_str(p, ps, sizeof ps);
			return graph_node_err(
			    nd, DF_EINVAL,
			    "parameter '%s' is %s, expected [%lld] (channels)",
			    p->name, ps, (long long)x->dims[1]);
		}
	}
	if (!isfinite(nd->attr.bn.epsilon) || nd->attr.bn.epsilon < 0)
		return graph_node_err(nd, DF_EINVAL,
		                      "epsilon must be finite and >= 0");
	*ondim = x->ndim;
	memcpy(od, x->dims, sizeof x->dims);
	return DF_OK;
}

static df_err infer_concat(const graph *g, graph_node *nd, int *ondim,
                           int64_t *od)
{
	const graph_value *x0 = &g->values[nd->inputs[0]];
	int r = x0->ndim;
	if (r < 1)
		return graph_node_err(nd, DF_EINVAL,
		                      "inputs must have rank >= 1");
	df_err err = normalize_axis(nd, &nd->attr.axis.axis, -r, r - 1, r);
	if (err)
		return err;
	int ax = (int)nd->attr.axis.axis;
	memcpy(od, x0->dims, sizeof x0->dims);
	od[ax] = 0;
	for (int i = 0; i < nd->n_inputs; i++) {
		const graph_value *x = &g->values[nd->inputs[i]];
		bool ok = x->ndim == r && graph_vdtype(g, nd->inputs[i]) ==
		                              graph_vdtype(g, nd->inputs[0]);
		for (int d = 0; ok && d < r; d++)
			ok = d == ax || x->dims[d] == x0->dims[d];
		if (!ok) {
			char s0[96], s1[96];
			shape_str(x0, s0, sizeof s0);
			shape_str(x, s1, sizeof s1);
			return graph_node_err(
			    nd, DF_EINVAL,
			    "input '%s' %s does not match '%s' %s "
			    "outside axis %d",
			    x->name, s1, x0->name, s0, ax);
		}
		od[ax] = graph_sat_add(od[ax], x->dims[ax]);
	}
	*ondim = r;
	return DF_OK;
}

static df_err infer_reshape(const graph *g, graph_node *nd, int *ondim,
                            int64_t *od)
{
	const graph_value *x = &g->values[nd->inputs[0]];
	const graph_value *o = &g->values[nd->output];
	int64_t in_numel = graph_dims_numel(x->ndim, x->dims);
	char xs[96];
	shape_str(x, xs, sizeof xs);
	if (nd->n_inputs == 1) {
		/* canonical form: the output value holds the target shape */
		if (graph_dims_numel(o->ndim, o->dims) != in_numel) {
			char os[96];
			shape_str(o, os, sizeof os);
			return graph_node_err(nd, DF_EINVAL,
			                      "cannot reshape '%s' %s into %s",
			                      x->name, xs, os);
		}
		*ondim = o->ndim;
		memcpy(od, o->dims, sizeof o->dims);
		return DF_OK;
	}
	const graph_value *s = &g->values[nd->inputs[1]];
	const tensor *st = s->constant;
	if (!st)
		return graph_node_err(
		    nd, DF_ENOTSUP,
		    "shape '%s' is computed at run time; only constant "
		    "(or statically known) shapes are supported",
		    s->name);
	if (st->dtype != TENSOR_I64 || st->ndim != 1)
		return graph_node_err(nd, DF_EINVAL,
		                      "shape '%s' must be a 1-D int64 tensor",
		                      s->name);
	if (st->numel > TENSOR_MAX_DIMS)
		return graph_node_err(nd, DF_ENOTSUP,
		                      "target rank %zu exceeds %d", st->numel,
		                      TENSOR_MAX_DIMS);
	const int64_t *sd = tensor_i64(st);
	int infer_at = -1;
	int64_t known = 1;
	for (size_t i = 0; i < st->numel; i++) {
		int64_t d = sd[i];
		if (d == 0) {
			if ((int)i >= x->ndim)
				return graph_node_err(
				    nd, DF_EINVAL,
				    "shape[%zu] = 0 copies a dim "
				    "the input %s does not have",
				    i, xs);
			d = x->dims[i];
		} else if (d == -1) {
			if (infer_at >= 0)
				return graph_node_err(
				    nd, DF_EINVAL,
				    "shape has more than one -1");
			infer_at = (int)i;
			continue;
		} else if (d < -1) {
			return graph_node_err(nd, DF_EINVAL,
			                      "shape[%zu] = %lld is negative",
			                      i, (long long)d);
		}
		od[i] = d;
		known = graph_sat_mul(known, d);
	}
	if (infer_at >= 0) {
		if (known == 0 || in_numel % known)
			return graph_node_err(nd, DF_EINVAL,
			                      "cannot infer the -1 dim: %lld "
			                      "elements of '%s' %s are "
			                      "not a multiple of %lld",
			                      (long long)in_numel, x->name, xs,
			                      (long long)known);
		od[infer_at] = in_numel / known;
		known = in_numel;
	}
	if (known != in_numel)
		return graph_node_err(
		    nd, DF_EINVAL,
		    "shape has %lld elements, input '%s' %s has %lld",
		    (long long)known, x->name, xs, (long long)in_numel);
	*ondim = (int)st->numel;
	return DF_OK;
}

/* Infers nd's output shape on g (nd may be a copy of a node of g) and
 * normalizes nd's attributes. */
df_err graph_infer_shape(const graph *g, graph_node *nd, int *ondim,
                         int64_t *od)
{
	if ((unsigned)nd->op >= GRAPH_OP_COUNT)
		return df_errf(DF_EINVAL, "node '%s': unknown op %d", nd->name,
		               (int)nd->op);
	if (nd->n_inputs < graph_op_arity[nd->op].min ||
	    nd->n_inputs > graph_op_arity[nd->op].max)
		return graph_node_err(
		    nd, DF_EINVAL, "%d inputs, expected %d..%d", nd->n_inputs,
		    graph_op_arity[nd->op].min, graph_op_arity[nd->op].max);
	for (int i = 0; i < nd->n_inputs; i++) {
		int v = nd->inputs[i];
		bool optional =
		    (nd->op == GRAPH_OP_CONV || nd->op == GRAPH_OP_GEMM) &&
		    i == 2;
		if (v < -1 || v >= g->n_values || (v == -1 && !optional))
			return graph_node_err(
			    nd, DF_EINVAL, "input %d is missing or invalid", i);
		if (v < 0)
			continue;
		bool any_dtype =
		    nd->op == GRAPH_OP_ADD || nd->op == GRAPH_OP_MUL ||
		    nd->op == GRAPH_OP_CONCAT || nd->op == GRAPH_OP_FLATTEN ||
		    nd->op == GRAPH_OP_RESHAPE;
		if (!any_dtype && graph_vdtype(g, v) != TENSOR_F32)
			return graph_node_err(
			    nd, DF_EINVAL, "input '%s' is %s, expected f32",
			    graph_vname(g, v),
			    tensor_dtype_name(graph_vdtype(g, v)));
	}
	const graph_value *x = &g->values[nd->inputs[0]];
	int64_t d[TENSOR_MAX_DIMS] = {0};
	int n = 0;
	df_err err = DF_OK;

	switch (nd->op) {
	case GRAPH_OP_CONV:
		err = infer_conv(g, nd, &n, d);
		break;
	case GRAPH_OP_MAXPOOL:
	case GRAPH_OP_AVGPOOL:
		err = infer_pool(g, nd, &n, d);
		break;
	case GRAPH_OP_GLOBALAVGPOOL:
		if (x->ndim != 4)
			return graph_node_err(nd, DF_ENOTSUP,
			                      "only 4-D [N,C,H,W] input is "
			                      "supported, '%s' has rank %d",
			                      x->name, x->ndim);
		n = 4;
		d[0] = x->dims[0];
		d[1] = x->dims[1];
		d[2] = d[3] = 1;
		break;
	case GRAPH_OP_GEMM:
		err = infer_gemm(g, nd, &n, d);
		break;
	case GRAPH_OP_MATMUL:
		err = infer_matmul(g, nd, &n, d);
		break;
	case GRAPH_OP_BATCHNORM:
		err = infer_batchnorm(g, nd, &n, d);
		break;
	case GRAPH_OP_CLIP:
		if (isnan(nd->attr.clip.lo) || isnan(nd->attr.clip.hi))
			return graph_node_err(nd, DF_EINVAL,
			                      "clip bounds are NaN");
		/* fall through */
	case GRAPH_OP_RELU:
	case GRAPH_OP_LEAKYRELU:
	case GRAPH_OP_SIGMOID:
		n = x->ndim;
		memcpy(d, x->dims, sizeof d);
		break;
	case GRAPH_OP_ADD:
	case GRAPH_OP_MUL: {
		const graph_value *y = &g->values[nd->inputs[1]];
		char xs[96], ys[96];
		shape_str(x, xs, sizeof xs);
		shape_str(y, ys, sizeof ys);
		if (graph_vdtype(g, nd->inputs[0]) !=
		    graph_vdtype(g, nd->inputs[1]))
			return graph_node_err(
			    nd, DF_EINVAL,
			    "inputs '%s' and '%s' differ in dtype", x->name,
			    y->name);
		if (!broadcast(x->ndim, x->dims, y->ndim, y->dims, &n, d))
			return graph_node_err(
			    nd, DF_EINVAL,
			    "shapes of '%s' %s and '%s' %s do not broadcast",
			    x->name, xs, y->name, ys);
		break;
	}
	case GRAPH_OP_CONCAT:
		err = infer_concat(g, nd, &n, d);
		break;
	case GRAPH_OP_FLATTEN: {
		int r = x->ndim;
		err = normalize_axis(nd, &nd->attr.axis.axis, -r, r, r);
		if (err)
			return err;
		int ax = (int)nd->attr.axis.axis;
		n = 2;
		d[0] = graph_dims_numel(ax, x->dims);
		d[1] = graph_dims_numel(r - ax, x->dims + ax);
		break;
	}
	case GRAPH_OP_RESHAPE:
		err = infer_reshape(g, nd, &n, d);
		break;
	case GRAPH_OP_SOFTMAX: {
		int r = x->ndim;
		if (r < 1)
			return graph_node_err(nd, DF_EINVAL,
			                      "input must have rank >= 1");
		err = normalize_axis(nd, &nd->attr.axis.axis, -r, r - 1, r);
		if (err)
			return err;
		if (nd->attr.axis.axis == r - 1)
			nd->attr.axis.legacy = false;
		n = r;
		memcpy(d, x->dims, sizeof d);
		break;
	}
	default:
		return graph_node_err(nd, DF_EINTERNAL, "no shape rule");
	}
	if (err)
		return err;
	size_t numel = 0;
	err = tensor_shape_numel(n, d, TENSOR_F32, &numel);
	if (err) {
		char os[160];
		tensor_shape_str(n, d, os, sizeof os);
		return graph_node_err(nd, err, "output shape %s is too large",
		                      os);
	}
	*ondim = n;
	memcpy(od, d, sizeof d);
	return DF_OK;
}

df_err graph_infer_node(graph *g, int n)
{
	if (n < 0 || n >= g->n_nodes)
		return df_errf(DF_EINVAL, "node %d does not exist", n);
	graph_node *nd = &g->nodes[n];
	int ndim = 0;
	int64_t dims[TENSOR_MAX_DIMS];
	df_err err = graph_infer_shape(g, nd, &ndim, dims);
	if (err)
		return err;
	graph_value *o = &g->values[nd->output];
	o->ndim = ndim;
	memset(o->dims, 0, sizeof o->dims);
	memcpy(o->dims, dims, (size_t)ndim * sizeof dims[0]);
	return DF_OK;
}
