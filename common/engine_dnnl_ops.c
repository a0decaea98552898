/*
 * engine_dnnl_ops.c - the oneDNN engine's per-op builders and their
 * dispatch, dn_build_node(): each builder turns one graph node into
 * primitives (steps) through the helpers of engine_dnnl_internal.h.
 * Element-wise ops, BatchNorm, pooling, Add/Mul, Concat, Reshape/Flatten
 * and Softmax are built here; Conv, Gemm and MatMul, with their fused
 * post-ops, in engine_dnnl_conv.c. Invariant: an op writes in place
 * (dn_inplace_dst) only into a storage no later node reads. The layout,
 * memory and threading rules are described at the top of engine_dnnl.c
 * and engine_dnnl_mem.c.
 */
#include <stdbool.h>
#include <stdint.h>

#include <oneapi/dnnl/dnnl.h>

#include "engine_dnnl_internal.h"

/* Primitive descriptor for op_desc with attr or, when attr is NULL, with
 * an attr that only asks for the user-managed scratchpad all steps use. */
df_err dn_pd_new(dn_engine *E, const_dnnl_op_desc_t op_desc,
		 const_dnnl_primitive_attr_t attr,
		 dnnl_primitive_desc_t *out)
{
	df_err err = DF_OK;
	dnnl_primitive_attr_t own = NULL;
	if (!attr) {
		DN_CHECK(dn_attr_new(E, &own));
		attr = own;
	}
	DN_TRY(dnnl_primitive_desc_create(out, op_desc, attr, E->eng, NULL));
out:
	if (own)
		dnnl_primitive_attr_destroy(own);
	return err;
}

/* ------------------------------------------------------------------ nodes */

/* dst for an op whose output has the layout of its input mem src: src's
 * storage itself (in place) when nothing later reads it, else fresh. */
static df_err dn_inplace_dst(dn_engine *E, int n, int src,
			     const dnnl_memory_desc_t *dst_md, int avoid,
			     int *out)
{
	int s = E->mems[src].storage;
	if (dnnl_memory_desc_equal(&E->mems[src].md, dst_md) &&
	    (avoid < 0 || E->mems[avoid].storage != s) &&
	    dn_dead_after(E, s, n))
		return dn_mem_new(E, dst_md, s, NULL, out);
	return dn_mem_fresh(E, dst_md, out);
}

static df_err dn_check_same_dims(const dn_engine *E, const graph_value *x,
				 const graph_value *y)
{
	bool same = x->ndim == y->ndim;
	for (int i = 0; same && i < x->ndim; i++)
		same = x->dims[i] == y->dims[i];
	if (!same)
		return dn_node_err(E, DF_EINVAL, "%s",
				   "output shape differs from the input shape");
	return DF_OK;
}

static df_err dn_build_eltwise(dn_engine *E, int n, graph_act act, float a0,
			       float b0)
{
	df_err err = DF_OK;
	const graph *g = E->base.g;
	const graph_node *nd = &g->nodes[n];
	dnnl_primitive_desc_t pd = NULL;
	dnnl_eltwise_desc_t ed;
	dnnl_alg_kind_t alg = dnnl_alg_kind_undef;
	float alpha = 0.0f, beta = 0.0f;
	int xm, ym;
	dn_arg args[DN_MAX_ARGS];
	DN_CHECK(dn_check_same_dims(E, &g->values[nd->inputs[0]],
				    &g->values[nd->output]));
	DN_CHECK(dn_act(E, act, a0, b0, &alg, &alpha, &beta));
	DN_CHECK(dn_value(E, nd->inputs[0], &xm));
	DN_TRY(dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_inference, alg,
					      &E->mems[xm].md, alpha, beta));
	DN_CHECK(dn_pd_new(E, &ed, NULL, &pd));
	DN_CHECK(dn_inplace_dst(E, n, xm,
				dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0),
				-1, &ym));
	args[0] = (dn_arg){DNNL_ARG_SRC, xm};
	args[1] = (dn_arg){DNNL_ARG_DST, ym};
	DN_CHECK(dn_emit(E, pd, args, 2));
	dn_set_value(E, nd->output, ym);
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	return err;
}

/* Unfolded BatchNorm: y = x * scale[c] + shift[c], one binary mul with a
 * binary-add post-op, both operands broadcast as [1,C,1,..]. */
static df_err dn_build_batchnorm(dn_engine *E, int n)
{
	df_err err = DF_OK;
	const graph *g = E->base.g;
	const graph_node *nd = &g->nodes[n];
	dnnl_primitive_attr_t attr = NULL;
	dnnl_post_ops_t po = NULL;
	dnnl_primitive_desc_t pd = NULL;
	dn_arg args[DN_MAX_ARGS];
	if (nd->n_inputs < 3 || nd->inputs[0] < 0 || nd->inputs[1] < 0 ||
	    nd->inputs[2] < 0)
		return dn_node_err(E, DF_EINVAL, "%s",
				   "expected inputs {x, scale, shift}");
	const graph_value *xv = &g->values[nd->inputs[0]];
	if (xv->ndim < 2)
		return dn_node_err(E, DF_ENOTSUP, "%s", "input rank below 2");
	DN_CHECK(dn_check_same_dims(E, xv, &g->values[nd->output]));
	dnnl_dims_t cd;
	for (int i = 0; i < xv->ndim; i++)
		cd[i] = i == 1 ? xv->dims[1] : 1;
	int xm, sm, hm, ym;
	dnnl_binary_desc_t bd;
	DN_CHECK(dn_value(E, nd->inputs[0], &xm));
	DN_CHECK(dn_const_view(E, nd->inputs[1], xv->ndim, cd, &sm));
	DN_CHECK(dn_const_view(E, nd->inputs[2], xv->ndim, cd, &hm));
	DN_CHECK(dn_attr_new(E, &attr));
	DN_TRY(dnnl_post_ops_create(&po));
	DN_TRY(dnnl_post_ops_append_binary(po, dnnl_binary_add,
					   &E->mems[hm].md));
	DN_TRY(dnnl_primitive_attr_set_post_ops(attr, po));
	DN_TRY(dnnl_binary_desc_init(&bd, dnnl_binary_mul, &E->mems[xm].md,
				     &E->mems[sm].md, &E->mems[xm].md));
	DN_CHECK(dn_pd_new(E, &bd, attr, &pd));
	DN_CHECK(dn_inplace_dst(E, n, xm,
				dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0),
				-1, &ym));
	args[0] = (dn_arg){DNNL_ARG_SRC_0, xm};
	args[1] = (dn_arg){DNNL_ARG_SRC_1, sm};
	args[2] = (dn_arg){DNNL_ARG_DST, ym};
	args[3] = (dn_arg){DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1,
			   hm};
	DN_CHECK(dn_emit(E, pd, args, 4));
	dn_set_value(E, nd->output, ym);
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (po)
		dnnl_post_ops_destroy(po);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return err;
}

/* Taps start + t*d (t < k) of a window that fall inside [lo, hi). */
static int64_t dn_taps(int64_t start, int64_t k, int64_t d, int64_t lo,
		       int64_t hi)
{
	int64_t c = 0;
	for (int64_t t = 0; t < k; t++)
		c += start + t * d >= lo && start + t * d < hi;
	return c;
}

/*
 * MaxPool, AveragePool, GlobalAveragePool via pooling_v2. The output size
 * comes from the value (ceil_mode already applied by the graph); the end
 * padding given to oneDNN is stretched to produce it. oneDNN's
 * include-padding average divides by the full kernel size, ONNX by the taps
 * inside input + declared padding; where the stretch makes those differ, a
 * binary-mul post-op rescales the border outputs.
 */
static df_err dn_build_pool(dn_engine *E, int n)
{
	df_err err = DF_OK;
	const graph *g = E->base.g;
	const graph_node *nd = &g->nodes[n];
	dnnl_primitive_attr_t attr = NULL;
	dnnl_post_ops_t po = NULL;
	dnnl_primitive_desc_t pd = NULL;
	dn_arg args[DN_MAX_ARGS];
	int nargs = 2;
	const graph_value *xv = &g->values[nd->inputs[0]];
	const graph_value *yv = &g->values[nd->output];
	bool global = nd->op == GRAPH_OP_GLOBALAVGPOOL;
	int sp = xv->ndim - 2;
	if (global ? (xv->ndim < 3 || xv->ndim > 5) : xv->ndim != 4)
		return dn_node_err(E, DF_ENOTSUP, "input rank %d", xv->ndim);
	if (yv->ndim != xv->ndim)
		return dn_node_err(E, DF_EINVAL, "%s", "output rank differs");
	dnnl_dims_t kernel, strides, dil, pl, pr, yd;
	dn_dims(yv, yd);
	dnnl_alg_kind_t alg = dnnl_pooling_avg_exclude_padding;
	bool rescale = false;
	for (int i = 0; i < sp; i++) {
		int64_t in = xv->dims[2 + i], o = yv->dims[2 + i];
		if (global) {
			kernel[i] = in, strides[i] = 1, dil[i] = 0;
			pl[i] = 0, pr[i] = 0;
			continue;
		}
		const graph_pool_attr *a = &nd->attr.pool;
		kernel[i] = a->kernel[i];
		strides[i] = a->strides[i];
		dil[i] = a->dilations[i] - 1;
		pl[i] = a->pads[i];
		pr[i] = a->pads[2 + i];
		if (kernel[i] < 1 || strides[i] < 1 || dil[i] < 0 || pl[i] < 0 ||
		    pr[i] < 0 || o < 1)
			return dn_node_err(E, DF_EINVAL, "%s",
					   "bad kernel/stride/dilation/pads");
		int64_t ext = (kernel[i] - 1) * (dil[i] + 1) + 1;
		int64_t need = (o - 1) * strides[i] + ext - in - pl[i];
		if (need > pr[i]) {
			pr[i] = need;
			rescale = true;
		}
	}
	if (nd->op == GRAPH_OP_MAXPOOL)
		alg = dnnl_pooling_max;
	else if (nd->op == GRAPH_OP_AVGPOOL && nd->attr.pool.count_include_pad)
		alg = dnnl_pooling_avg_include_padding;
	rescale = rescale && alg == dnnl_pooling_avg_include_padding;
	int xm, ym, fm = -1;
	dnnl_memory_desc_t dst_md;
	dnnl_pooling_v2_desc_t pdsc;
	DN_CHECK(dn_value(E, nd->inputs[0], &xm));
	DN_TRY(dn_md_any(&dst_md, xv->ndim, yd));
	DN_TRY(dnnl_pooling_v2_forward_desc_init(&pdsc, dnnl_forward_inference,
						 alg, &E->mems[xm].md, &dst_md,
						 strides, kernel, dil, pl, pr));
	DN_CHECK(dn_attr_new(E, &attr));
	if (rescale) {
		/* factor[oh][ow] = kH*kW / (taps inside the declared padded
		 * extent), a [1,1,OH,OW] operand. */
		const graph_pool_attr *a = &nd->attr.pool;
		int64_t OH = yd[2], OW = yd[3];
		dnnl_dims_t fd = {1, 1, OH, OW};
		dnnl_memory_desc_t fmd;
		float *f;
		DN_TRY(dn_md_plain(&fmd, 4, fd));
		DN_CHECK(dn_owned_alloc(E, (size_t)(OH * OW) * sizeof *f,
					(void **)&f));
		for (int64_t oh = 0; oh < OH; oh++) {
			int64_t th = dn_taps(oh * a->strides[0] - a->pads[0],
					     a->kernel[0], a->dilations[0],
					     -a->pads[0],
					     xv->dims[2] + a->pads[2]);
			for (int64_t ow = 0; ow < OW; ow++) {
				int64_t tw = dn_taps(ow * a->strides[1] - a->pads[1],
						     a->kernel[1], a->dilations[1],
						     -a->pads[1],
						     xv->dims[3] + a->pads[3]);
				f[oh * OW + ow] = th * tw > 0
					? (float)(a->kernel[0] * a->kernel[1]) /
						  (float)(th * tw)
					: 0.0f;
			}
		}
		DN_CHECK(dn_mem_new(E, &fmd, DN_EXTERNAL, f, &fm));
		DN_TRY(dnnl_post_ops_create(&po));
		DN_TRY(dnnl_post_ops_append_binary(po, dnnl_binary_mul, &fmd));
		DN_TRY(dnnl_primitive_attr_set_post_ops(attr, po));
		args[nargs++] = (dn_arg){
			DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, fm};
	}
	DN_CHECK(dn_pd_new(E, &pdsc, attr, &pd));
	dst_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
	DN_CHECK(dn_mem_fresh(E, &dst_md, &ym));
	args[0] = (dn_arg){DNNL_ARG_SRC, xm};
	args[1] = (dn_arg){DNNL_ARG_DST, ym};
	DN_CHECK(dn_emit(E, pd, args, nargs));
	dn_set_value(E, nd->output, ym);
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (po)
		dnnl_post_ops_destroy(po);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return err;
}

/* One binary primitive dst = src0 (alg) src1, dst in src0's layout. When
 * inplace_ok, dst may take src0's storage. */
static df_err dn_binary_step(dn_engine *E, int n, dnnl_alg_kind_t alg,
			     int s0, int s1, bool inplace_ok, int *out)
{
	df_err err = DF_OK;
	dnnl_primitive_desc_t pd = NULL;
	dnnl_binary_desc_t bd;
	dn_arg args[DN_MAX_ARGS];
	int ym;
	DN_TRY(dnnl_binary_desc_init(&bd, alg, &E->mems[s0].md, &E->mems[s1].md,
				     &E->mems[s0].md));
	DN_CHECK(dn_pd_new(E, &bd, NULL, &pd));
	const dnnl_memory_desc_t *dmd =
		dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
	if (inplace_ok)
		DN_CHECK(dn_inplace_dst(E, n, s0, dmd, s1, &ym));
	else
		DN_CHECK(dn_mem_fresh(E, dmd, &ym));
	args[0] = (dn_arg){DNNL_ARG_SRC_0, s0};
	args[1] = (dn_arg){DNNL_ARG_SRC_1, s1};
	args[2] = (dn_arg){DNNL_ARG_DST, ym};
	DN_CHECK(dn_emit(E, pd, args, 3));
	*out = ym;
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	return err;
}

/*
 * Add/Mul with numpy broadcasting. oneDNN broadcasts src1 only, so the
 * full-size operand goes first (both ops commute). When neither operand
 * has the output's shape, src0 is first expanded by adding it to zeros.
 */
static df_err dn_build_binary(dn_engine *E, int n)
{
	df_err err = DF_OK;
	const graph *g = E->base.g;
	const graph_node *nd = &g->nodes[n];
	if (nd->n_inputs < 2 || nd->inputs[0] < 0 || nd->inputs[1] < 0)
		return dn_node_err(E, DF_EINVAL, "%s", "expected two inputs");
	dnnl_alg_kind_t alg =
		nd->op == GRAPH_OP_ADD ? dnnl_binary_add : dnnl_binary_mul;
	int va = nd->inputs[0], vb = nd->inputs[1];
	const graph_value *yv = &g->values[nd->output];
	dnnl_dims_t yd, ad, bd;
	int R = dn_dims(yv, yd);
	const graph_value *xs[2] = {&g->values[va], &g->values[vb]};
	dnnl_dim_t *xd[2] = {ad, bd};
	bool full[2];
	for (int k = 0; k < 2; k++) {
		const graph_value *x = xs[k];
		if (x->ndim > R)
			return dn_node_err(E, DF_EINVAL, "%s",
					   "input rank above output rank");
		full[k] = true;
		for (int i = 0; i < R; i++) {
			int j = i - (R - x->ndim);
			xd[k][i] = j >= 0 ? x->dims[j] : 1;
			if (xd[k][i] != yd[i] && xd[k][i] != 1)
				return dn_node_err(E, DF_EINVAL,
						   "cannot broadcast dim %lld to %lld",
						   (long long)xd[k][i],
						   (long long)yd[i]);
			full[k] = full[k] && xd[k][i] == yd[i];
		}
		full[k] = full[k] && x->ndim == R;
	}
	if (!full[0] && full[1]) {
		int t = va;
		va = vb;
		vb = t;
		dnnl_dim_t *tp = xd[0];
		xd[0] = xd[1];
		xd[1] = tp;
		full[0] = true;
		full[1] = false;
	}
	int m0, m1, p, ym;
	if (full[0]) {
		DN_CHECK(dn_value(E, va, &m0));
		if (full[1]) {
			DN_CHECK(dn_in_layout(E, vb, &E->mems[m0].md, &m1));
		} else {
			DN_CHECK(dn_plain(E, vb, &p));
			DN_CHECK(dn_view(E, p, R, xd[1], &m1));
		}
		DN_CHECK(dn_binary_step(E, n, alg, m0, m1, true, &ym));
	} else {
		/* tmp = zeros + a (expanded), then tmp (op) b in place. */
		dnnl_memory_desc_t zmd;
		void *z;
		int zm, tm;
		DN_TRY(dn_md_plain(&zmd, R, yd));
		DN_CHECK(dn_owned_alloc(E, dnnl_memory_desc_get_size(&zmd), &z));
		DN_CHECK(dn_mem_new(E, &zmd, DN_EXTERNAL, z, &zm));
		DN_CHECK(dn_plain(E, va, &p));
		DN_CHECK(dn_view(E, p, R, xd[0], &m0));
		DN_CHECK(dn_binary_step(E, n, dnnl_binary_add, zm, m0, false, &tm));
		DN_CHECK(dn_plain(E, vb, &p));
		DN_CHECK(dn_view(E, p, R, xd[1], &m1));
		DN_CHECK(dn_binary_step(E, n, alg, tm, m1, true, &ym));
	}
	dn_set_value(E, nd->output, ym);
out:
	return err;
}

static df_err dn_build_concat(dn_engine *E, int n)
{
	df_err err = DF_OK;
	const graph *g = E->base.g;
	const graph_node *nd = &g->nodes[n];
	dnnl_primitive_attr_t attr = NULL;
	dnnl_primitive_desc_t pd = NULL;
	dn_arg args[DN_MAX_ARGS];
	dnnl_memory_desc_t mds[GRAPH_MAX_INPUTS], dst_md;
	const graph_value *yv = &g->values[nd->output];
	int k = nd->n_inputs, ym;
	if (k < 1 || k > GRAPH_MAX_INPUTS || yv->ndim < 1 ||
	    nd->attr.axis.axis < 0 || nd->attr.axis.axis >= yv->ndim)
		return dn_node_err(E, DF_EINVAL, "%s", "bad inputs or axis");
	for (int i = 0; i < k; i++) {
		int m;
		if (g->values[nd->inputs[i]].ndim != yv->ndim)
			return dn_node_err(E, DF_EINVAL, "input %d rank differs", i);
		DN_CHECK(dn_value(E, nd->inputs[i], &m));
		mds[i] = E->mems[m].md;
		args[i] = (dn_arg){DNNL_ARG_MULTIPLE_SRC + i, m};
	}
	dnnl_dims_t yd;
	dn_dims(yv, yd);
	DN_TRY(dn_md_any(&dst_md, yv->ndim, yd));
	DN_CHECK(dn_attr_new(E, &attr));
	DN_TRY(dnnl_concat_primitive_desc_create(&pd, &dst_md, k,
						 (int)nd->attr.axis.axis, mds,
						 attr, E->eng));
	dst_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
	DN_CHECK(dn_mem_fresh(E, &dst_md, &ym));
	args[k] = (dn_arg){DNNL_ARG_DST, ym};
	DN_CHECK(dn_emit(E, pd, args, k + 1));
	dn_set_value(E, nd->output, ym);
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return err;
}

/* Flatten/Reshape: a plain view of the input (no step unless the input
 * is blocked, then one reorder shared with other plain consumers). */
static df_err dn_build_reshape(dn_engine *E, int n)
{
	const graph *g = E->base.g;
	const graph_node *nd = &g->nodes[n];
	const graph_value *yv = &g->values[nd->output];
	dnnl_dims_t yd;
	int yn = dn_dims(yv, yd), p, m;
	df_err err = dn_plain(E, nd->inputs[0], &p);
	if (!err)
		err = dn_view(E, p, yn, yd, &m);
	if (!err)
		dn_set_value(E, nd->output, m);
	return err;
}

static df_err dn_build_softmax(dn_engine *E, int n)
{
	df_err err = DF_OK;
	const graph *g = E->base.g;
	const graph_node *nd = &g->nodes[n];
	dnnl_primitive_desc_t pd = NULL;
	dn_arg args[DN_MAX_ARGS];
	const graph_value *xv = &g->values[nd->inputs[0]];
	const graph_value *yv = &g->values[nd->output];
	dnnl_dims_t xd, yd;
	int xn = dn_dims(xv, xd), yn = dn_dims(yv, yd);
	int axis = (int)nd->attr.axis.axis;
	DN_CHECK(dn_check_same_dims(E, xv, yv));
	if (axis < 0 || axis >= xn)
		return dn_node_err(E, DF_EINVAL, "axis %d", axis);
	int p, xm, ym, vm;
	DN_CHECK(dn_plain(E, nd->inputs[0], &p));
	if (nd->attr.axis.legacy) {
		dnnl_dims_t d2 = {dn_prod(xd, 0, axis), dn_prod(xd, axis, xn)};
		DN_CHECK(dn_view(E, p, 2, d2, &xm));
		axis = 1;
	} else {
		xm = p;
	}
	dnnl_softmax_v2_desc_t sd;
	DN_TRY(dnnl_softmax_v2_forward_desc_init(&sd, dnnl_forward_inference,
						 dnnl_softmax_accurate,
						 &E->mems[xm].md,
						 &E->mems[xm].md, axis));
	DN_CHECK(dn_pd_new(E, &sd, NULL, &pd));
	DN_CHECK(dn_mem_fresh(E, &E->mems[xm].md, &ym));
	args[0] = (dn_arg){DNNL_ARG_SRC, xm};
	args[1] = (dn_arg){DNNL_ARG_DST, ym};
	DN_CHECK(dn_emit(E, pd, args, 2));
	DN_CHECK(dn_view(E, ym, yn, yd, &vm));
	dn_set_value(E, nd->output, vm);
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	return err;
}

df_err dn_build_node(dn_engine *E, int n)
{
	const graph_node *nd = &E->base.g->nodes[n];
	if (nd->n_inputs < 1 || nd->inputs[0] < 0 || nd->output < 0 ||
	    nd->output >= E->base.g->n_values)
		return dn_node_err(E, DF_EINVAL, "%s", "missing input or output");
	if (nd->n_postops > 0 && nd->op != GRAPH_OP_CONV &&
	    nd->op != GRAPH_OP_GEMM && nd->op != GRAPH_OP_MATMUL)
		return dn_node_err(E, DF_ENOTSUP, "%s",
				   "post-ops on this op are not supported");
	switch (nd->op) {
	case GRAPH_OP_CONV:
		return dn_build_conv(E, n);
	case GRAPH_OP_GEMM:
		return dn_build_gemm(E, n);
	case GRAPH_OP_MATMUL:
		return dn_build_matmul(E, n);
	case GRAPH_OP_BATCHNORM:
		return dn_build_batchnorm(E, n);
	case GRAPH_OP_RELU:
		return dn_build_eltwise(E, n, GRAPH_ACT_RELU, 0, 0);
	case GRAPH_OP_CLIP:
		return dn_build_eltwise(E, n, GRAPH_ACT_CLIP, nd->attr.clip.lo,
					nd->attr.clip.hi);
	case GRAPH_OP_LEAKYRELU:
		return dn_build_eltwise(E, n, GRAPH_ACT_LEAKYRELU,
					nd->attr.leaky.alpha, 0);
	case GRAPH_OP_SIGMOID:
		return dn_build_eltwise(E, n, GRAPH_ACT_SIGMOID, 0, 0);
	case GRAPH_OP_MAXPOOL:
	case GRAPH_OP_AVGPOOL:
	case GRAPH_OP_GLOBALAVGPOOL:
		return dn_build_pool(E, n);
	case GRAPH_OP_ADD:
	case GRAPH_OP_MUL:
		return dn_build_binary(E, n);
	case GRAPH_OP_CONCAT:
		return dn_build_concat(E, n);
	case GRAPH_OP_FLATTEN:
	case GRAPH_OP_RESHAPE:
		return dn_build_reshape(E, n);
	case GRAPH_OP_SOFTMAX:
		return dn_build_softmax(E, n);
	default:
		return dn_node_err(E, DF_ENOTSUP, "op %d", (int)nd->op);
	}
}
