/*
 * engine_dnnl_conv.c - the oneDNN engine's builders for the ops that
 * multiply and accumulate: Conv, Gemm (an inner product, or a matmul when
 * trans_a) and MatMul, with the post-ops fused into them (activations as
 * eltwise post-ops, the first ADD as a sum post-op into the dst, later
 * ADDs as binary-add post-ops). dn_build_node() in engine_dnnl_ops.c
 * dispatches to them. Invariant: the sum post-op's dst holds the ADD
 * operand when the primitive starts, and is the operand's own storage
 * only when nothing after the node reads that storage and the primitive
 * reads it through no other argument (dn_fused_dst).
 *
 * Convolution algorithm: direct, except 3x3 stride-1 undilated ungrouped
 * convs with >= 64 input and output channels and an output of at least
 * 14x14, which ask for Winograd F(2x2,3x3) (falling back to direct where
 * oneDNN offers no such kernel, or only the less accurate F(4x4,3x3)).
 * Measured on AVX-512 with ResNet-18 shapes: 0.60-0.85x the direct time at
 * 56x56..14x14, slower at 7x7; the logits stay within 1e-6 relative of the
 * direct result.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

#include "engine_dnnl_internal.h"

/* -------------------------------------------------------------- post-ops */

df_err dn_act(const dn_engine *E, graph_act act, float a, float b,
	      dnnl_alg_kind_t *alg, float *alpha, float *beta)
{
	*alpha = 0.0f;
	*beta = 0.0f;
	switch (act) {
	case GRAPH_ACT_RELU:
		*alg = dnnl_eltwise_relu;
		return DF_OK;
	case GRAPH_ACT_CLIP:
		*alg = dnnl_eltwise_clip;
		/* ONNX: min(max(x, lo), hi), which is hi everywhere when
		 * lo > hi; oneDNN would return lo below lo. */
		*alpha = a > b ? b : a;
		*beta = b;
		return DF_OK;
	case GRAPH_ACT_LEAKYRELU:
		*alg = dnnl_eltwise_relu;
		*alpha = a;
		return DF_OK;
	case GRAPH_ACT_SIGMOID:
		*alg = dnnl_eltwise_logistic;
		return DF_OK;
	default:
		return dn_node_err(E, DF_ENOTSUP, "activation %d", (int)act);
	}
}

/* Index of node n's first ADD post-op, or -1. It becomes a sum post-op;
 * later ADDs become binary-add post-ops reading a plain operand. */
static int dn_first_add(const graph_node *nd)
{
	for (int p = 0; p < nd->n_postops; p++)
		if (nd->postops[p].kind == GRAPH_POSTOP_ADD)
			return p;
	return -1;
}

/* Attr with a user scratchpad and node n's post-ops for a primitive whose
 * dst has dims (nd, dims). Binary post-op operands are appended to args. */
static df_err dn_postops_attr(dn_engine *E, const graph_node *nd, int ndims,
			      const dnnl_dim_t *dims, dnnl_primitive_attr_t *out,
			      dn_arg *args, int *nargs)
{
	df_err err = DF_OK;
	dnnl_primitive_attr_t attr = NULL;
	dnnl_post_ops_t po = NULL;
	int first_add = dn_first_add(nd);
	DN_CHECK(dn_attr_new(E, &attr));
	if (nd->n_postops > 0) {
		DN_TRY(dnnl_post_ops_create(&po));
		for (int p = 0; p < nd->n_postops; p++) {
			const graph_postop *op = &nd->postops[p];
			if (op->kind == GRAPH_POSTOP_ACT) {
				dnnl_alg_kind_t alg = dnnl_alg_kind_undef;
				float a = 0.0f, b = 0.0f;
				DN_CHECK(dn_act(E, op->act, op->alpha, op->beta,
						&alg, &a, &b));
				DN_TRY(dnnl_post_ops_append_eltwise(po, 1.0f, alg,
								    a, b));
			} else if (p == first_add) {
				DN_TRY(dnnl_post_ops_append_sum(po, 1.0f));
			} else {
				int pm, vm;
				dnnl_memory_desc_t md;
				DN_CHECK(dn_plain(E, op->operand, &pm));
				DN_CHECK(dn_view(E, pm, ndims, dims, &vm));
				DN_TRY(dn_md_plain(&md, ndims, dims));
				DN_TRY(dnnl_post_ops_append_binary(
					po, dnnl_binary_add, &md));
				args[(*nargs)++] = (dn_arg){
					DNNL_ARG_ATTR_MULTIPLE_POST_OP(p) |
						DNNL_ARG_SRC_1,
					vm};
			}
		}
		DN_TRY(dnnl_primitive_attr_set_post_ops(attr, po));
	}
	*out = attr;
	attr = NULL;
out:
	if (po)
		dnnl_post_ops_destroy(po);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return err;
}

/* True when mem m's storage is that of one of the n args (mem -1 skipped):
 * the primitive reads it. */
static bool dn_reads_storage(const dn_engine *E, int m, const dn_arg *args,
			     int n)
{
	for (int i = 0; i < n; i++)
		if (args[i].mem >= 0 &&
		    E->mems[args[i].mem].storage == E->mems[m].storage)
			return true;
	return false;
}

/*
 * The dst mem of node n's primitive (layout dst_md) holding the operand of
 * its first ADD post-op, if any, when the primitive starts: the operand's
 * own storage when it is dead afterwards, has this layout and is not read
 * by the primitive through any of its other arguments (args[0..n_args)),
 * else a new storage the operand is copied into. Without ADD, a new
 * storage.
 */
static df_err dn_fused_dst(dn_engine *E, int n,
			   const dnnl_memory_desc_t *dst_md, const dn_arg *args,
			   int n_args, int *out)
{
	const graph_node *nd = &E->base.g->nodes[n];
	int p = dn_first_add(nd);
	if (p < 0)
		return dn_mem_fresh(E, dst_md, out);
	int om, dm;
	int operand = nd->postops[p].operand;
	df_err err = dn_value(E, operand, &om);
	if (err)
		return err;
	const dn_mem *o = &E->mems[om];
	bool fits = dnnl_memory_desc_equal(&o->md, dst_md) ||
		    (dn_md_is_plain(&o->md) && dn_md_is_plain(dst_md) &&
		     dn_prod(o->md.dims, 0, o->md.ndims) ==
			     dn_prod(dst_md->dims, 0, dst_md->ndims));
	if (fits && !dn_reads_storage(E, om, args, n_args) &&
	    dn_dead_after(E, o->storage, n))
		return dn_mem_new(E, dst_md, o->storage, NULL, out);
	if ((err = dn_mem_fresh(E, dst_md, &dm)))
		return err;
	if (!dn_md_same_dims(&o->md, dst_md)) {
		int pm;
		if ((err = dn_plain(E, operand, &pm)) ||
		    (err = dn_view(E, pm, dst_md->ndims, dst_md->dims, &om)))
			return err;
	}
	if ((err = dn_reorder(E, om, dm)))
		return err;
	*out = dm;
	return DF_OK;
}

/* ------------------------------------------------------------------ nodes */

/* True when pd runs Winograd F(2x2,3x3). oneDNN may also offer F(4x4,3x3)
 * (jit_wino_4x3), whose error is several times larger (measured 2e-6 vs
 * 4e-7 absolute on unit-scale data); we take only the 2x3 kernel. */
static bool dn_is_wino_2x3(const_dnnl_primitive_desc_t pd)
{
	const char *impl = NULL;
	if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) !=
		    dnnl_success ||
	    !impl)
		return false;
	return strstr(impl, "wino_2x3") != NULL;
}

df_err dn_build_conv(dn_engine *E, int n)
{
	df_err err = DF_OK;
	const graph *g = E->base.g;
	const graph_node *nd = &g->nodes[n];
	const graph_conv_attr *a = &nd->attr.conv;
	dnnl_primitive_attr_t attr = NULL;
	dnnl_primitive_desc_t pd = NULL;
	dn_arg args[DN_MAX_ARGS];
	int nargs = 4;
	if (nd->n_inputs < 3 || nd->inputs[0] < 0 || nd->inputs[1] < 0 ||
	    nd->inputs[2] < 0)
		return dn_node_err(E, DF_EINVAL, "%s",
				   "expected inputs {x, W, bias}");
	const graph_value *xv = &g->values[nd->inputs[0]];
	const graph_value *wv = &g->values[nd->inputs[1]];
	const graph_value *bv = &g->values[nd->inputs[2]];
	const graph_value *yv = &g->values[nd->output];
	if (xv->ndim != 4 || wv->ndim != 4 || yv->ndim != 4)
		return dn_node_err(E, DF_ENOTSUP, "%s",
				   "only 2-D convolution (rank-4 tensors)");
	int64_t G = a->group, M = wv->dims[0], IC = xv->dims[1];
	if (G < 1 || M % G || IC % G || wv->dims[1] != IC / G)
		return dn_node_err(E, DF_EINVAL,
				   "group %lld does not fit %lld input / %lld "
				   "output channels", (long long)G,
				   (long long)IC, (long long)M);
	dnnl_dims_t xd, yd, wd, bd = {M};
	int wnd = G == 1 ? 4 : 5;
	dn_dims(xv, xd);
	dn_dims(yv, yd);
	if (G == 1) {
		wd[0] = M, wd[1] = IC, wd[2] = wv->dims[2], wd[3] = wv->dims[3];
	} else {
		wd[0] = G, wd[1] = M / G, wd[2] = IC / G;
		wd[3] = wv->dims[2], wd[4] = wv->dims[3];
	}
	dnnl_dims_t strides = {a->strides[0], a->strides[1]};
	dnnl_dims_t dil = {a->dilations[0] - 1, a->dilations[1] - 1};
	dnnl_dims_t pl = {a->pads[0], a->pads[1]};
	dnnl_dims_t pr = {a->pads[2], a->pads[3]};
	dnnl_memory_desc_t src_md, w_md, b_md, dst_md, w_user;
	DN_TRY(dn_md_any(&src_md, 4, xd));
	DN_TRY(dn_md_any(&w_md, wnd, wd));
	DN_TRY(dn_md_plain(&b_md, 1, bd));
	DN_TRY(dn_md_any(&dst_md, 4, yd));
	DN_TRY(dn_md_plain(&w_user, wnd, wd));
	dnnl_convolution_desc_t cd;
	DN_CHECK(dn_postops_attr(E, nd, 4, yd, &attr, args, &nargs));
	if (G == 1 && wd[2] == 3 && wd[3] == 3 && strides[0] == 1 &&
	    strides[1] == 1 && dil[0] == 0 && dil[1] == 0 && IC >= 64 &&
	    M >= 64 && yd[2] >= 14 && yd[3] >= 14 &&
	    dnnl_dilated_convolution_forward_desc_init(
		    &cd, dnnl_forward_inference, dnnl_convolution_winograd,
		    &src_md, &w_md, &b_md, &dst_md, strides, dil, pl,
		    pr) == dnnl_success &&
	    dnnl_primitive_desc_create(&pd, &cd, attr, E->eng, NULL) ==
		    dnnl_success &&
	    dn_is_wino_2x3(pd)) {
		/* pd is the Winograd one */
	} else {
		if (pd)
			dnnl_primitive_desc_destroy(pd);
		pd = NULL;
		DN_TRY(dnnl_dilated_convolution_forward_desc_init(
			&cd, dnnl_forward_inference, dnnl_convolution_direct,
			&src_md, &w_md, &b_md, &dst_md, strides, dil, pl, pr));
		DN_CHECK(dn_pd_new(E, &cd, attr, &pd));
	}
	src_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
	w_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
	dnnl_memory_desc_t b_want =
		*dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1);
	dst_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
	int xm, wm, bm, ym;
	DN_CHECK(dn_in_layout(E, nd->inputs[0], &src_md, &xm));
	DN_CHECK(dn_const(E, wv, &w_user, &w_md, &wm));
	DN_CHECK(dn_const(E, bv, &b_md, &b_want, &bm));
	args[0] = (dn_arg){DNNL_ARG_SRC, xm};
	args[1] = (dn_arg){DNNL_ARG_WEIGHTS, wm};
	args[2] = (dn_arg){DNNL_ARG_BIAS, bm};
	args[3] = (dn_arg){DNNL_ARG_DST, -1};
	DN_CHECK(dn_fused_dst(E, n, &dst_md, args, nargs, &ym));
	args[3].mem = ym;
	DN_CHECK(dn_emit(E, pd, args, nargs));
	dn_set_value(E, nd->output, ym);
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return err;
}

/* Canonical Gemm: Y[M,N] = A[M,K] * W[N,K]^T + bias (graph.h). Inner
 * product, or a matmul over a strided view of A when trans_a. */
df_err dn_build_gemm(dn_engine *E, int n)
{
	df_err err = DF_OK;
	const graph *g = E->base.g;
	const graph_node *nd = &g->nodes[n];
	dnnl_primitive_attr_t attr = NULL;
	dnnl_primitive_desc_t pd = NULL;
	dn_arg args[DN_MAX_ARGS];
	int nargs = 4;
	if (nd->n_inputs < 3 || nd->inputs[0] < 0 || nd->inputs[1] < 0 ||
	    nd->inputs[2] < 0)
		return dn_node_err(E, DF_EINVAL, "%s",
				   "expected inputs {A, W, bias}");
	const graph_value *av = &g->values[nd->inputs[0]];
	const graph_value *wv = &g->values[nd->inputs[1]];
	const graph_value *bv = &g->values[nd->inputs[2]];
	const graph_value *yv = &g->values[nd->output];
	bool ta = nd->attr.gemm.trans_a;
	if (wv->ndim != 2 || !nd->attr.gemm.trans_b)
		return dn_node_err(E, DF_EINVAL, "%s",
				   "Gemm is not canonical (W [N,K], trans_b)");
	int64_t N = wv->dims[0], K = wv->dims[1];
	dnnl_dims_t ad = {0};
	int an = dn_dims(av, ad);
	if (ta ? (an != 2 || ad[0] != K) : ad[an - 1] != K)
		return dn_node_err(E, DF_EINVAL,
				   "A does not have K = %lld columns",
				   (long long)K);
	int64_t M = ta ? ad[1] : dn_prod(ad, 0, an) / K;
	dnnl_dims_t sd = {M, K}, dd = {M, N}, wd = {N, K}, bd = {N};
	dnnl_memory_desc_t src_md, w_md, b_md, dst_md, w_user;
	int am, xm, wm, bm, ym, vm;
	DN_CHECK(dn_plain(E, nd->inputs[0], &am));
	DN_TRY(dn_md_plain(&dst_md, 2, dd));
	DN_CHECK(dn_postops_attr(E, nd, 2, dd, &attr, args, &nargs));
	if (!ta) {
		dnnl_inner_product_desc_t ipd;
		DN_CHECK(dn_view(E, am, 2, sd, &xm));
		DN_TRY(dn_md_any(&w_md, 2, wd));
		DN_TRY(dn_md_plain(&b_md, 1, bd));
		DN_TRY(dn_md_plain(&w_user, 2, wd));
		DN_TRY(dnnl_inner_product_forward_desc_init(
			&ipd, dnnl_forward_inference, &E->mems[xm].md, &w_md,
			&b_md, &dst_md));
		DN_CHECK(dn_pd_new(E, &ipd, attr, &pd));
		w_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
		dnnl_memory_desc_t b_want =
			*dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1);
		src_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
		if (!dnnl_memory_desc_equal(&src_md, &E->mems[xm].md)) {
			int cm;
			DN_CHECK(dn_convert(E, xm, &src_md, &cm));
			xm = cm;
		}
		DN_CHECK(dn_const(E, wv, &w_user, &w_md, &wm));
		DN_CHECK(dn_const(E, bv, &b_md, &b_want, &bm));
	} else {
		/* A is [K,M] row-major: as [M,K] its strides are {1, M}. W is
		 * [N,K] row-major: as matmul weights [K,N], strides {1, K}. */
		dnnl_matmul_desc_t mmd;
		dnnl_dims_t ss = {1, M}, ws = {1, K}, wk = {K, N}, b2 = {1, N};
		DN_TRY(dnnl_memory_desc_init_by_strides(&src_md, 2, sd, dnnl_f32,
							ss));
		DN_TRY(dnnl_memory_desc_init_by_strides(&w_md, 2, wk, dnnl_f32,
							ws));
		DN_TRY(dn_md_plain(&b_md, 2, b2));
		DN_CHECK(dn_mem_new(E, &src_md, E->mems[am].storage,
				    E->mems[am].ext, &xm));
		DN_CHECK(dn_const(E, wv, &w_md, &w_md, &wm));
		DN_CHECK(dn_const(E, bv, &b_md, &b_md, &bm));
		DN_TRY(dnnl_matmul_desc_init(&mmd, &src_md, &w_md, &b_md,
					     &dst_md));
		DN_CHECK(dn_pd_new(E, &mmd, attr, &pd));
	}
	args[0] = (dn_arg){DNNL_ARG_SRC, xm};
	args[1] = (dn_arg){DNNL_ARG_WEIGHTS, wm};
	args[2] = (dn_arg){DNNL_ARG_BIAS, bm};
	args[3] = (dn_arg){DNNL_ARG_DST, -1};
	DN_CHECK(dn_fused_dst(E, n, &dst_md, args, nargs, &ym));
	args[3].mem = ym;
	DN_CHECK(dn_emit(E, pd, args, nargs));
	dnnl_dims_t yd;
	int ynd = dn_dims(yv, yd);
	DN_CHECK(dn_view(E, ym, ynd, yd, &vm));
	dn_set_value(E, nd->output, vm);
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return err;
}

/* numpy matmul: 1-D operands are promoted ([K] -> [1,K] / [K,1]), batch
 * dims broadcast; the dst [batch.., M, N] is viewed as the output value. */
df_err dn_build_matmul(dn_engine *E, int n)
{
	df_err err = DF_OK;
	const graph *g = E->base.g;
	const graph_node *nd = &g->nodes[n];
	dnnl_primitive_attr_t attr = NULL;
	dnnl_primitive_desc_t pd = NULL;
	dn_arg args[DN_MAX_ARGS];
	int nargs = 3;
	if (nd->n_inputs < 2 || nd->inputs[0] < 0 || nd->inputs[1] < 0)
		return dn_node_err(E, DF_EINVAL, "%s", "expected inputs {A, B}");
	const graph_value *av = &g->values[nd->inputs[0]];
	const graph_value *bv = &g->values[nd->inputs[1]];
	const graph_value *yv = &g->values[nd->output];
	if (av->ndim < 1 || bv->ndim < 1)
		return dn_node_err(E, DF_EINVAL, "%s", "MatMul of a scalar");
	dnnl_dims_t a2, b2, ad = {0}, bd = {0}, dd;
	int ra = av->ndim, rb = bv->ndim;
	if (ra == 1) {
		a2[0] = 1, a2[1] = av->dims[0];
		ra = 2;
	} else {
		for (int i = 0; i < ra; i++)
			a2[i] = av->dims[i];
	}
	if (rb == 1) {
		b2[0] = bv->dims[0], b2[1] = 1;
		rb = 2;
	} else {
		for (int i = 0; i < rb; i++)
			b2[i] = bv->dims[i];
	}
	int R = ra > rb ? ra : rb;
	if (R > DNNL_MAX_NDIMS)
		return dn_node_err(E, DF_ENOTSUP, "rank %d", R);
	for (int i = 0; i < R; i++) {
		ad[i] = i < R - ra ? 1 : a2[i - (R - ra)];
		bd[i] = i < R - rb ? 1 : b2[i - (R - rb)];
		dd[i] = ad[i] == 1 ? bd[i] : ad[i];
		if (i < R - 2 && ad[i] != bd[i] && ad[i] != 1 && bd[i] != 1)
			return dn_node_err(E, DF_EINVAL,
					   "batch dim %d: %lld vs %lld", i,
					   (long long)ad[i], (long long)bd[i]);
	}
	dd[R - 2] = ad[R - 2];
	dd[R - 1] = bd[R - 1];
	if (ad[R - 1] != bd[R - 2])
		return dn_node_err(E, DF_EINVAL, "inner dims differ (%lld vs %lld)",
				   (long long)ad[R - 1], (long long)bd[R - 2]);
	int ap, bp, am, bm, ym, vm;
	dnnl_memory_desc_t dst_md;
	dnnl_matmul_desc_t mmd;
	DN_CHECK(dn_plain(E, nd->inputs[0], &ap));
	DN_CHECK(dn_view(E, ap, R, ad, &am));
	DN_CHECK(dn_plain(E, nd->inputs[1], &bp));
	DN_CHECK(dn_view(E, bp, R, bd, &bm));
	DN_TRY(dn_md_plain(&dst_md, R, dd));
	DN_CHECK(dn_postops_attr(E, nd, R, dd, &attr, args, &nargs));
	DN_TRY(dnnl_matmul_desc_init(&mmd, &E->mems[am].md, &E->mems[bm].md,
				     NULL, &dst_md));
	DN_CHECK(dn_pd_new(E, &mmd, attr, &pd));
	args[0] = (dn_arg){DNNL_ARG_SRC, am};
	args[1] = (dn_arg){DNNL_ARG_WEIGHTS, bm};
	args[2] = (dn_arg){DNNL_ARG_DST, -1};
	DN_CHECK(dn_fused_dst(E, n, &dst_md, args, nargs, &ym));
	args[2].mem = ym;
	DN_CHECK(dn_emit(E, pd, args, nargs));
	dnnl_dims_t yd;
	int ynd = dn_dims(yv, yd);
	DN_CHECK(dn_view(E, ym, ynd, yd, &vm));
	dn_set_value(E, nd->output, vm);
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return err;
}
