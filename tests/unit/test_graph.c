/*
 * Unit tests for graph.c: graphs built with the API, then finalized.
 * Numerical checks (BatchNorm folding, Gemm canonicalization) compare
 * against plain loops written here, independent of graph.c and the engines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"

/* ---- builders ----------------------------------------------------------- */

static uint32_t rng_state = 12345;

static float frand(void)
{
	rng_state = rng_state * 1664525u + 1013904223u;
	return (float)((rng_state >> 8) & 0xffff) / 65536.0f * 2.0f - 1.0f;
}

/* Non-constant value (a graph input when `input`). */
static int val(graph *g, const char *name, int ndim, const int64_t *dims,
               bool input)
{
	int v = -1;
	assert_int_equal(graph_add_value(g, name, ndim, dims, NULL, &v), DF_OK);
	if (input)
		assert_int_equal(graph_add_input(g, v), DF_OK);
	return v;
}

/* Unshaped intermediate value. */
static int tmp(graph *g, const char *name)
{
	return val(g, name, 0, NULL, false);
}

/* f32 constant filled with random values (or data when non-NULL). */
static int cst(graph *g, const char *name, int ndim, const int64_t *dims,
               const float *data)
{
	tensor *t = NULL;
	assert_int_equal(tensor_create(TENSOR_F32, ndim, dims, &t), DF_OK);
	for (size_t i = 0; i < t->numel; i++)
		tensor_f32(t)[i] = data ? data[i] : frand();
	int v = -1;
	assert_int_equal(graph_add_value(g, name, 0, NULL, t, &v), DF_OK);
	return v;
}

static int cst_i64(graph *g, const char *name, int n, const int64_t *data)
{
	tensor *t = NULL;
	int64_t d = n;
	assert_int_equal(tensor_create(TENSOR_I64, 1, &d, &t), DF_OK);
	memcpy(t->data, data, (size_t)n * sizeof *data);
	int v = -1;
	assert_int_equal(graph_add_value(g, name, 1, &d, t, &v), DF_OK);
	return v;
}

static graph_node mk(graph_op op, int n_inputs, const int *inputs, int output)
{
	graph_node nd;
	memset(&nd, 0, sizeof nd);
	nd.op = op;
	nd.n_inputs = n_inputs;
	for (int i = 0; i < GRAPH_MAX_INPUTS; i++)
		nd.inputs[i] = i < n_inputs ? inputs[i] : -1;
	nd.output = output;
	return nd;
}

static void add(graph *g, graph_node nd, const char *name)
{
	assert_int_equal(graph_add_node(g, &nd, name, NULL), DF_OK);
}

static int conv(graph *g, const char *name, int x, int64_t m, int64_t cin_g,
                int64_t k, int64_t stride, int64_t pad, int64_t group)
{
	char wn[64], on[64];
	snprintf(wn, sizeof wn, "%s.W", name);
	snprintf(on, sizeof on, "%s.out", name);
	int64_t wd[4] = {m, cin_g, k, k};
	int w = cst(g, wn, 4, wd, NULL);
	int o = tmp(g, on);
	int in[2] = {x, w};
	graph_node nd = mk(GRAPH_OP_CONV, 2, in, o);
	nd.attr.conv.strides[0] = nd.attr.conv.strides[1] = stride;
	for (int i = 0; i < 4; i++)
		nd.attr.conv.pads[i] = pad;
	nd.attr.conv.group = group;
	add(g, nd, name);
	return o;
}

static int unary(graph *g, graph_op op, const char *name, int x)
{
	char on[64];
	snprintf(on, sizeof on, "%s.out", name);
	int o = tmp(g, on);
	int in[1] = {x};
	graph_node nd = mk(op, 1, in, o);
	if (op == GRAPH_OP_CLIP) {
		nd.attr.clip.lo = 0;
		nd.attr.clip.hi = 6;
	}
	if (op == GRAPH_OP_LEAKYRELU)
		nd.attr.leaky.alpha = 0.1f;
	add(g, nd, name);
	return o;
}

static int binary(graph *g, graph_op op, const char *name, int a, int b)
{
	char on[64];
	snprintf(on, sizeof on, "%s.out", name);
	int o = tmp(g, on);
	int in[2] = {a, b};
	add(g, mk(op, 2, in, o), name);
	return o;
}

/* ONNX-form BatchNorm with random parameters (var > 0). */
static int batchnorm(graph *g, const char *name, int x, int64_t c)
{
	char buf[64];
	int p[5] = {x};
	static const char *const what[] = {"gamma", "beta", "mean", "var"};
	for (int i = 0; i < 4; i++) {
		snprintf(buf, sizeof buf, "%s.%s", name, what[i]);
		float d[64];
		for (int64_t j = 0; j < c; j++)
			d[j] = i == 3 ? 0.5f + fabsf(frand()) : frand();
		p[1 + i] = cst(g, buf, 1, &c, d);
	}
	snprintf(buf, sizeof buf, "%s.out", name);
	int o = tmp(g, buf);
	graph_node nd = mk(GRAPH_OP_BATCHNORM, 5, p, o);
	nd.attr.bn.epsilon = 1e-5f;
	add(g, nd, name);
	return o;
}

static void expect_dims(const graph *g, int v, int ndim, const int64_t *dims)
{
	char got[128], want[128];
	tensor_shape_str(g->values[v].ndim, g->values[v].dims, got, sizeof got);
	tensor_shape_str(ndim, dims, want, sizeof want);
	if (strcmp(got, want) != 0)
		fail_msg("value '%s' is %s, expected %s", g->values[v].name,
		         got, want);
}

static int find_node(const graph *g, const char *name)
{
	for (int n = 0; n < g->n_nodes; n++)
		if (strcmp(g->nodes[n].name, name) == 0)
			return n;
	return -1;
}

static int count_op(const graph *g, graph_op op)
{
	int c = 0;
	for (int n = 0; n < g->n_nodes; n++)
		c += g->nodes[n].op == op;
	return c;
}

static void expect_fail(graph *g, df_err want, const char *needle)
{
	df_err err = graph_finalize(g);
	if (err != want)
		fail_msg("finalize gave %d (%s), expected %d", err,
		         df_err_msg(), want);
	if (needle && !strstr(df_err_msg(), needle))
		fail_msg("message '%s' lacks '%s'", df_err_msg(), needle);
	graph_destroy(g);
}

/* ---- reference loops ---------------------------------------------------- */

/* Plain NCHW convolution, N = 1. */
static void ref_conv(const float *x, const int64_t *xd, const float *w,
                     const int64_t *wd, const float *b,
                     const graph_conv_attr *a, float *y, const int64_t *yd)
{
	int64_t cg = wd[1], mg = wd[0] / a->group;
	for (int64_t m = 0; m < yd[1]; m++)
		for (int64_t oh = 0; oh < yd[2]; oh++)
			for (int64_t ow = 0; ow < yd[3]; ow++) {
				double s = b ? b[m] : 0;
				int64_t grp = m / mg;
				for (int64_t c = 0; c < cg; c++)
					for (int64_t kh = 0; kh < wd[2]; kh++)
						for (int64_t kw = 0; kw < wd[3];
						     kw++) {
							int64_t ih =
							    oh * a->strides[0] -
							    a->pads[0] +
							    kh *
							        a->dilations[0];
							int64_t iw =
							    ow * a->strides[1] -
							    a->pads[1] +
							    kw *
							        a->dilations[1];
							if (ih < 0 || iw < 0 ||
							    ih >= xd[2] ||
							    iw >= xd[3])
								continue;
							int64_t ci =
							    grp * cg + c;
							s += (double)
							         x[(ci * xd[2] +
							            ih) *
							               xd[3] +
							           iw] *
							     w[((m * cg + c) *
							            wd[2] +
							        kh) *
							           wd[3] +
							       kw];
						}
				y[(m * yd[2] + oh) * yd[3] + ow] = (float)s;
			}
}

/* ---- tests -------------------------------------------------------------- */

static void infers_conv_shapes(void **state)
{
	(void)state;
	static const struct {
		int64_t x[4], m, cin_g, k, stride, pad, group, dil, out_h,
		    out_w;
	} cases[] = {
	    {{1, 3, 7, 9}, 8, 3, 3, 2, 1, 1, 1, 4, 5},  /* stride 2, pad 1 */
	    {{2, 3, 5, 5}, 4, 3, 1, 1, 0, 1, 1, 5, 5},  /* 1x1, batch 2 */
	    {{1, 6, 5, 5}, 6, 1, 3, 1, 0, 6, 1, 3, 3},  /* depthwise */
	    {{1, 4, 6, 6}, 8, 2, 3, 1, 1, 2, 1, 6, 6},  /* 2 groups */
	    {{1, 1, 7, 7}, 2, 1, 3, 1, 0, 1, 2, 3, 3},  /* dilation 2 */
	    {{1, 2, 1, 13}, 3, 2, 1, 3, 0, 1, 1, 1, 5}, /* odd, stride 3 */
	    {{1, 3, 224, 224}, 32, 3, 3, 2, 1, 1, 1, 112, 112},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		graph *g = NULL;
		assert_int_equal(graph_create(&g), DF_OK);
		int x = val(g, "x", 4, cases[i].x, true);
		int64_t wd[4] = {cases[i].m, cases[i].cin_g, cases[i].k,
		                 cases[i].k};
		int w = cst(g, "W", 4, wd, NULL);
		int o = tmp(g, "y");
		int in[2] = {x, w};
		graph_node nd = mk(GRAPH_OP_CONV, 2, in, o);
		nd.attr.conv.strides[0] = nd.attr.conv.strides[1] =
		    cases[i].stride;
		nd.attr.conv.dilations[0] = nd.attr.conv.dilations[1] =
		    cases[i].dil;
		for (int p = 0; p < 4; p++)
			nd.attr.conv.pads[p] = cases[i].pad;
		nd.attr.conv.group = cases[i].group;
		add(g, nd, "conv");
		assert_int_equal(graph_add_output(g, o), DF_OK);
		df_err err = graph_finalize(g);
		if (err)
			fail_msg("case %zu: %s", i, df_err_msg());
		int64_t want[4] = {cases[i].x[0], cases[i].m, cases[i].out_h,
		                   cases[i].out_w};
		expect_dims(g, g->outputs[0], 4, want);
		/* canonical: bias of zeros added, kernel from W */
		assert_int_equal(g->nodes[0].n_inputs, 3);
		const tensor *b = g->values[g->nodes[0].inputs[2]].constant;
		assert_non_null(b);
		assert_int_equal(b->numel, cases[i].m);
		assert_true(tensor_f32(b)[0] == 0.0f);
		assert_int_equal(g->nodes[0].attr.conv.kernel[0], cases[i].k);
		graph_destroy(g);
	}
}

static int64_t pool_out_h(graph_op op, int64_t h, int64_t k, int64_t s,
                          int64_t pad, bool ceil_mode)
{
	graph *g = NULL;
	assert_int_equal(graph_create(&g), DF_OK);
	int64_t xd[4] = {1, 2, h, h};
	int x = val(g, "x", 4, xd, true);
	int o = tmp(g, "y");
	graph_node nd = mk(op, 1, &x, o);
	nd.attr.pool.kernel[0] = nd.attr.pool.kernel[1] = k;
	nd.attr.pool.strides[0] = nd.attr.pool.strides[1] = s;
	for (int i = 0; i < 4; i++)
		nd.attr.pool.pads[i] = pad;
	nd.attr.pool.ceil_mode = ceil_mode;
	add(g, nd, "pool");
	assert_int_equal(graph_add_output(g, o), DF_OK);
	df_err err = graph_finalize(g);
	if (err)
		fail_msg("%s", df_err_msg());
	int64_t r = g->values[g->outputs[0]].dims[2];
	assert_int_equal(g->values[g->outputs[0]].dims[1], 2);
	graph_destroy(g);
	return r;
}

static void infers_pool_shapes_with_ceil_mode(void **state)
{
	(void)state;
	/* values match torch.nn.MaxPool2d / AvgPool2d */
	assert_int_equal(pool_out_h(GRAPH_OP_MAXPOOL, 6, 3, 2, 0, false), 2);
	assert_int_equal(pool_out_h(GRAPH_OP_MAXPOOL, 6, 3, 2, 0, true), 3);
	assert_int_equal(pool_out_h(GRAPH_OP_MAXPOOL, 7, 3, 2, 0, true), 3);
	assert_int_equal(pool_out_h(GRAPH_OP_MAXPOOL, 112, 3, 2, 1, false), 56);
	/* the last window would start in the padding: dropped */
	assert_int_equal(pool_out_h(GRAPH_OP_MAXPOOL, 5, 2, 2, 1, true), 3);
	assert_int_equal(pool_out_h(GRAPH_OP_AVGPOOL, 5, 2, 2, 1, false), 3);
	assert_int_equal(pool_out_h(GRAPH_OP_AVGPOOL, 13, 3, 2, 0, true), 6);
	assert_int_equal(pool_out_h(GRAPH_OP_AVGPOOL, 14, 3, 2, 0, true), 7);
	assert_int_equal(pool_out_h(GRAPH_OP_AVGPOOL, 14, 3, 2, 0, false), 6);
}

static void infers_gemm_matmul_broadcast_concat_flatten_reshape(void **state)
{
	(void)state;
	graph *g = NULL;
	assert_int_equal(graph_create(&g), DF_OK);
	int64_t xd[4] = {1, 4, 3, 5};
	int x = val(g, "x", 4, xd, true);
	/* Concat along channels with itself scaled */
	int64_t sd[3] = {4, 1, 1};
	int s = cst(g, "s", 3, sd, NULL);
	int xs = binary(g, GRAPH_OP_MUL, "scale", x, s);
	int cat = tmp(g, "cat");
	int cin[2] = {x, xs};
	graph_node cn = mk(GRAPH_OP_CONCAT, 2, cin, cat);
	cn.attr.axis.axis = -3;
	add(g, cn, "concat");
	/* Reshape with 0 and -1: [1,8,3,5] -> [1,8,15] */
	int64_t shp[3] = {0, 0, -1};
	int sh = cst_i64(g, "shape", 3, shp);
	int r = tmp(g, "r");
	int rin[2] = {cat, sh};
	add(g, mk(GRAPH_OP_RESHAPE, 2, rin, r), "reshape");
	/* MatMul [1,8,15] x [15,6] stays MatMul (A is 3-D) */
	int64_t bd[2] = {15, 6};
	int b = cst(g, "B", 2, bd, NULL);
	int mm = binary(g, GRAPH_OP_MATMUL, "matmul", r, b);
	/* Flatten axis 1 -> [1,48], Gemm to 7 */
	int fl = tmp(g, "flat");
	graph_node fn = mk(GRAPH_OP_FLATTEN, 1, &mm, fl);
	fn.attr.axis.axis = 1;
	add(g, fn, "flatten");
	int64_t wd[2] = {7, 48};
	int w = cst(g, "W", 2, wd, NULL);
	int y = tmp(g, "y");
	int gin[2] = {fl, w};
	graph_node gn = mk(GRAPH_OP_GEMM, 2, gin, y);
	gn.attr.gemm.trans_b = true;
	add(g, gn, "fc");
	int sm = tmp(g, "prob");
	graph_node smn = mk(GRAPH_OP_SOFTMAX, 1, &y, sm);
	smn.attr.axis.axis = -1;
	smn.attr.axis.legacy = true;
	add(g, smn, "softmax");
	assert_int_equal(graph_add_output(g, sm), DF_OK);
	df_err err = graph_finalize(g);
	if (err)
		fail_msg("%s", df_err_msg());
	int64_t want_cat[4] = {1, 8, 3, 5}, want_r[3] = {1, 8, 15},
	        want_mm[3] = {1, 8, 6};
	int64_t want_fl[2] = {1, 48}, want_y[2] = {1, 7};
	expect_dims(g, graph_find_value(g, "cat"), 4, want_cat);
	expect_dims(g, graph_find_value(g, "r"), 3, want_r);
	expect_dims(g, graph_find_value(g, "matmul.out"), 3, want_mm);
	expect_dims(g, graph_find_value(g, "flat"), 2, want_fl);
	expect_dims(g, g->outputs[0], 2, want_y);
	int c = find_node(g, "concat");
	assert_int_equal(g->nodes[c].attr.axis.axis, 1);
	int rn = find_node(g, "reshape");
	assert_int_equal(g->nodes[rn].n_inputs, 1);
	assert_int_equal(g->nodes[find_node(g, "matmul")].op, GRAPH_OP_MATMUL);
	int sn = find_node(g, "softmax");
	assert_int_equal(g->nodes[sn].attr.axis.axis, 1);
	assert_false(g->nodes[sn].attr.axis.legacy); /* last axis: same thing */
	/* finalize again: nothing changes */
	int nodes = g->n_nodes, values = g->n_values;
	assert_int_equal(graph_finalize(g), DF_OK);
	assert_int_equal(g->n_nodes, nodes);
	assert_int_equal(g->n_values, values);
	graph_destroy(g);
}

static void canonicalizes_gemm(void **state)
{
	(void)state;
	/* Y = 2 * A * B + 0.5 * C, B given as [K,N] (transB = 0), C [N] */
	graph *g = NULL;
	assert_int_equal(graph_create(&g), DF_OK);
	int64_t ad[2] = {1, 3}, bd[2] = {3, 2}, cd[1] = {2};
	float bv[6] = {1, 2, 3, 4, 5, 6}, cv[2] = {10, 20};
	int a = val(g, "A", 2, ad, true);
	int b = cst(g, "B", 2, bd, bv);
	int c = cst(g, "C", 1, cd, cv);
	int y = tmp(g, "Y");
	int in[3] = {a, b, c};
	graph_node nd = mk(GRAPH_OP_GEMM, 3, in, y);
	nd.attr.gemm = (graph_gemm_attr){2.0f, 0.5f, false, false};
	add(g, nd, "gemm");
	assert_int_equal(graph_add_output(g, y), DF_OK);
	assert_int_equal(graph_finalize(g), DF_OK);
	assert_int_equal(g->n_nodes, 1);
	const graph_node *gn = &g->nodes[0];
	assert_int_equal(gn->op, GRAPH_OP_GEMM);
	assert_true(gn->attr.gemm.trans_b);
	assert_true(gn->attr.gemm.alpha == 1.0f && gn->attr.gemm.beta == 1.0f);
	const tensor *w = g->values[gn->inputs[1]].constant;
	assert_int_equal(w->dims[0], 2);
	assert_int_equal(w->dims[1], 3);
	/* W[n][k] = 2 * B[k][n] */
	static const float want_w[6] = {2, 6, 10, 4, 8, 12};
	for (int i = 0; i < 6; i++)
		assert_true(tensor_f32(w)[i] == want_w[i]);
	const tensor *bias = g->values[gn->inputs[2]].constant;
	assert_true(tensor_f32(bias)[0] == 5.0f &&
	            tensor_f32(bias)[1] == 10.0f);
	graph_destroy(g);

	/* C of shape [M,N] with M > 1 is not a bias: Gemm + Add (then fused) */
	assert_int_equal(graph_create(&g), DF_OK);
	int64_t ad2[2] = {2, 3}, cd2[2] = {2, 2};
	a = val(g, "A", 2, ad2, true);
	b = cst(g, "B", 2, bd, bv);
	c = cst(g, "C", 2, cd2, NULL);
	y = tmp(g, "Y");
	int in2[3] = {a, b, c};
	nd = mk(GRAPH_OP_GEMM, 3, in2, y);
	add(g, nd, "gemm");
	assert_int_equal(graph_add_output(g, y), DF_OK);
	assert_int_equal(graph_finalize(g), DF_OK);
	assert_int_equal(g->n_nodes, 1);
	assert_int_equal(g->nodes[0].n_postops, 1);
	assert_int_equal(g->nodes[0].postops[0].kind, GRAPH_POSTOP_ADD);
	assert_non_null(g->values[g->nodes[0].postops[0].operand].constant);
	graph_destroy(g);

	/* computed B: MatMul, Mul by alpha, Add C */
	assert_int_equal(graph_create(&g), DF_OK);
	int64_t bd3[2] = {3, 4};
	a = val(g, "A", 2, ad2, true);
	b = val(g, "B", 2, bd3, true);
	int64_t cd3[1] = {4};
	c = cst(g, "C", 1, cd3, NULL);
	y = tmp(g, "Y");
	int in3[3] = {a, b, c};
	nd = mk(GRAPH_OP_GEMM, 3, in3, y);
	nd.attr.gemm.alpha = 3.0f;
	add(g, nd, "gemm");
	assert_int_equal(graph_add_output(g, y), DF_OK);
	assert_int_equal(graph_finalize(g), DF_OK);
	assert_int_equal(g->n_nodes, 3);
	assert_int_equal(g->nodes[0].op, GRAPH_OP_MATMUL);
	assert_int_equal(g->nodes[1].op, GRAPH_OP_MUL);
	assert_int_equal(g->nodes[2].op, GRAPH_OP_ADD);
	assert_int_equal(g->nodes[2].output, g->outputs[0]);
	int64_t want[2] = {2, 4};
	expect_dims(g, g->outputs[0], 2, want);
	graph_destroy(g);

	/* transB with a computed B has no canonical form */
	assert_int_equal(graph_create(&g), DF_OK);
	a = val(g, "A", 2, ad2, true);
	int64_t bd4[2] = {4, 3};
	b = val(g, "B", 2, bd4, true);
	y = tmp(g, "Y");
	int in4[2] = {a, b};
	nd = mk(GRAPH_OP_GEMM, 2, in4, y);
	nd.attr.gemm.trans_b = true;
	add(g, nd, "gemm_tb");
	assert_int_equal(graph_add_output(g, y), DF_OK);
	expect_fail(g, DF_ENOTSUP, "gemm_tb");
}

static void turns_matmul_with_constant_into_gemm(void **state)
{
	(void)state;
	graph *g = NULL;
	assert_int_equal(graph_create(&g), DF_OK);
	int64_t ad[2] = {1, 3}, bd[2] = {3, 2};
	float bv[6] = {1, 2, 3, 4, 5, 6};
	int a = val(g, "A", 2, ad, true);
	int b = cst(g, "B", 2, bd, bv);
	int y = binary(g, GRAPH_OP_MATMUL, "mm", a, b);
	assert_int_equal(graph_add_output(g, y), DF_OK);
	assert_int_equal(graph_finalize(g), DF_OK);
	assert_int_equal(g->nodes[0].op, GRAPH_OP_GEMM);
	const tensor *w = g->values[g->nodes[0].inputs[1]].constant;
	static const float want_w[6] = {1, 3, 5, 2, 4, 6};
	for (int i = 0; i < 6; i++)
		assert_true(tensor_f32(w)[i] == want_w[i]);
	assert_int_equal(graph_node_macs(g, 0), 6);
	graph_destroy(g);
}

static void folds_batchnorm_into_conv_numerically(void **state)
{
	(void)state;
	static const struct {
		int64_t c, m, k, stride, pad, group, h, w;
	} cases[] = {
	    {3, 4, 3, 1, 1, 1, 6, 5},
	    {4, 4, 3, 2, 1, 4, 7, 7}, /* depthwise, stride 2 */
	    {4, 6, 1, 1, 0, 2, 3, 4}, /* grouped 1x1 */
	};
	for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
		graph *g = NULL;
		assert_int_equal(graph_create(&g), DF_OK);
		int64_t xd[4] = {1, cases[ci].c, cases[ci].h, cases[ci].w};
		int x = val(g, "x", 4, xd, true);
		int c = conv(g, "conv", x, cases[ci].m,
		             cases[ci].c / cases[ci].group, cases[ci].k,
		             cases[ci].stride, cases[ci].pad, cases[ci].group);
		int bn = batchnorm(g, "bn", c, cases[ci].m);
		assert_int_equal(graph_add_output(g, bn), DF_OK);
		/* keep the unfolded parameters for the reference */
		graph *orig = NULL;
		assert_int_equal(graph_clone(g, &orig), DF_OK);
		assert_int_equal(graph_finalize(g), DF_OK);
		assert_int_equal(g->n_nodes, 1);
		assert_int_equal(g->nodes[0].op, GRAPH_OP_CONV);
		assert_int_equal(g->nodes[0].n_postops, 0);
		assert_int_equal(g->nodes[0].output, g->outputs[0]);

		tensor *xt = NULL;
		assert_int_equal(tensor_create(TENSOR_F32, 4, xd, &xt), DF_OK);
		for (size_t i = 0; i < xt->numel; i++)
			tensor_f32(xt)[i] = frand();
		const graph_value *yv = &g->values[g->outputs[0]];
		size_t yn = (size_t)(yv->dims[1] * yv->dims[2] * yv->dims[3]);
		float *want = calloc(yn, sizeof *want),
		      *got = calloc(yn, sizeof *got);
		assert_non_null(want);
		assert_non_null(got);
		/* reference: conv (no bias) then BN, from the original graph */
		const graph_node *cn = &orig->nodes[0], *bnn = &orig->nodes[1];
		graph_conv_attr a = cn->attr.conv;
		a.dilations[0] = a.dilations[1] = 1;
		const tensor *w0 = orig->values[cn->inputs[1]].constant;
		ref_conv(tensor_f32(xt), xd, tensor_f32(w0), w0->dims, NULL, &a,
		         want, yv->dims);
		const float *gam =
		    tensor_f32(orig->values[bnn->inputs[1]].constant);
		const float *bet =
		    tensor_f32(orig->values[bnn->inputs[2]].constant);
		const float *mea =
		    tensor_f32(orig->values[bnn->inputs[3]].constant);
		const float *var =
		    tensor_f32(orig->values[bnn->inputs[4]].constant);
		size_t hw = (size_t)(yv->dims[2] * yv->dims[3]);
		for (size_t i = 0; i < yn; i++) {
			size_t m = i / hw;
			want[i] = (want[i] - mea[m]) / sqrtf(var[m] + 1e-5f) *
			              gam[m] +
			          bet[m];
		}
		/* folded conv */
		const graph_node *fn = &g->nodes[0];
		const tensor *w1 = g->values[fn->inputs[1]].constant;
		ref_conv(tensor_f32(xt), xd, tensor_f32(w1), w1->dims,
		         tensor_f32(g->values[fn->inputs[2]].constant),
		         &fn->attr.conv, got, yv->dims);
		for (size_t i = 0; i < yn; i++)
			if (fabsf(got[i] - want[i]) >
			    1e-4f * (1 + fabsf(want[i])))
				fail_msg(
				    "case %zu elem %zu: folded %g, conv+bn %g",
				    ci, i, got[i], want[i]);
		free(want);
		free(got);
		tensor_destroy(xt);
		graph_destroy(orig);
		graph_destroy(g);
	}
}

static void folds_batchnorm_into_gemm_numerically(void **state)
{
	(void)state;
	graph *g = NULL, *orig = NULL;
	assert_int_equal(graph_create(&g), DF_OK);
	int64_t ad[2] = {2, 3}, wd[2] = {3, 4}, bd[1] = {4};
	int a = val(g, "A", 2, ad, true);
	int y = tmp(g, "fc.out");
	int in[3] = {a, cst(g, "B", 2, wd, NULL), cst(g, "C", 1, bd, NULL)};
	graph_node nd = mk(GRAPH_OP_GEMM, 3, in, y); /* B as [K,N], alpha 2 */
	nd.attr.gemm.alpha = 2.0f;
	add(g, nd, "fc");
	int bn = batchnorm(g, "bn1d", y, 4);
	assert_int_equal(graph_add_output(g, bn), DF_OK);
	assert_int_equal(graph_clone(g, &orig), DF_OK);
	assert_int_equal(graph_finalize(g), DF_OK);
	assert_int_equal(g->n_nodes, 1);
	const graph_node *fn = &g->nodes[0];
	assert_int_equal(fn->op, GRAPH_OP_GEMM);
	float av[6];
	for (int i = 0; i < 6; i++)
		av[i] = frand();
	const float *b =
	    tensor_f32(orig->values[orig->nodes[0].inputs[1]].constant);
	const float *c =
	    tensor_f32(orig->values[orig->nodes[0].inputs[2]].constant);
	const graph_node *bnn = &orig->nodes[1];
	const float *gam = tensor_f32(orig->values[bnn->inputs[1]].constant);
	const float *bet = tensor_f32(orig->values[bnn->inputs[2]].constant);
	const float *mea = tensor_f32(orig->values[bnn->inputs[3]].constant);
	const float *var = tensor_f32(orig->values[bnn->inputs[4]].constant);
	const float *w =
	    tensor_f32(g->values[fn->inputs[1]].constant); /* [4,3] */
	const float *fb = tensor_f32(g->values[fn->inputs[2]].constant);
	for (int m = 0; m < 2; m++)
		for (int n = 0; n < 4; n++) {
			double ref = c[n], got = fb[n];
			for (int k = 0; k < 3; k++) {
				ref += 2.0 * av[m * 3 + k] * b[k * 4 + n];
				got += (double)av[m * 3 + k] * w[n * 3 + k];
			}
			ref = (ref - mea[n]) / sqrt(var[n] + 1e-5) * gam[n] +
			      bet[n];
			assert_float_equal(got, ref, 1e-4 * (1 + fabs(ref)));
		}
	graph_destroy(orig);
	graph_destroy(g);
}

static void keeps_batchnorm_when_conv_output_is_shared(void **state)
{
	(void)state;
	graph *g = NULL;
	assert_int_equal(graph_create(&g), DF_OK);
	int64_t xd[4] = {1, 2, 4, 4};
	int x = val(g, "x", 4, xd, true);
	int c = conv(g, "conv", x, 3, 2, 3, 1, 1, 1);
	int bn = batchnorm(g, "bn", c, 3);
	int r = unary(g, GRAPH_OP_RELU, "relu", c); /* second consumer */
	int s = binary(g, GRAPH_OP_ADD, "add", bn, r);
	assert_int_equal(graph_add_output(g, s), DF_OK);
	assert_int_equal(graph_finalize(g), DF_OK);
	int b = find_node(g, "bn");
	assert_true(b >= 0);
	assert_int_equal(g->nodes[b].op, GRAPH_OP_BATCHNORM);
	assert_int_equal(g->nodes[b].n_inputs, 3); /* scale/shift form */
	assert_int_equal(g->nodes[find_node(g, "conv")].n_postops, 0);
	assert_int_equal(count_op(g, GRAPH_OP_RELU), 1);
	graph_destroy(g);
}

static void folds_batchnorm_without_touching_shared_weights(void **state)
{
	(void)state;
	graph *g = NULL;
	assert_int_equal(graph_create(&g), DF_OK);
	int64_t xd[4] = {1, 2, 4, 4}, wd[4] = {2, 2, 1, 1};
	float wv[4] = {1, 2, 3, 4};
	int x = val(g, "x", 4, xd, true);
	int w = cst(g, "W", 4, wd, wv);
	int o1 = tmp(g, "o1"), o2 = tmp(g, "o2");
	int in[2] = {x, w};
	add(g, mk(GRAPH_OP_CONV, 2, in, o1), "c1");
	add(g, mk(GRAPH_OP_CONV, 2, in, o2), "c2");
	int bn = batchnorm(g, "bn", o1, 2);
	int s = binary(g, GRAPH_OP_ADD, "add", bn, o2);
	assert_int_equal(graph_add_output(g, s), DF_OK);
	assert_int_equal(graph_finalize(g), DF_OK);
	assert_int_equal(count_op(g, GRAPH_OP_BATCHNORM), 0);
	int c2 = find_node(g, "c2");
	const float *w2 =
	    tensor_f32(g->values[g->nodes[c2].inputs[1]].constant);
	for (int i = 0; i < 4; i++)
		assert_true(w2[i] == wv[i]);
	graph_destroy(g);
}

static void fuses_resnet_and_mobilenet_chains(void **state)
{
	(void)state;
	graph *g = NULL;
	assert_int_equal(graph_create(&g), DF_OK);
	int64_t xd[4] = {1, 8, 6, 6};
	int x = val(g, "x", 4, xd, true);
	/* ResNet basic block: conv-bn-relu, conv-bn, + x, relu */
	int a = conv(g, "r.conv1", x, 8, 8, 3, 1, 1, 1);
	a = unary(g, GRAPH_OP_RELU, "r.relu1", batchnorm(g, "r.bn1", a, 8));
	int b =
	    batchnorm(g, "r.bn2", conv(g, "r.conv2", a, 8, 8, 3, 1, 1, 1), 8);
	int s = unary(g, GRAPH_OP_RELU, "r.relu2",
	              binary(g, GRAPH_OP_ADD, "r.add", b, x));
	/* MobileNetV2 inverted residual: expand-bn-relu6, dw-bn-relu6, proj-bn,
	 * + s */
	int e = unary(g, GRAPH_OP_CLIP, "m.clip1",
	              batchnorm(g, "m.bn1",
	                        conv(g, "m.expand", s, 16, 8, 1, 1, 0, 1), 16));
	int d = unary(
	    g, GRAPH_OP_CLIP, "m.clip2",
	    batchnorm(g, "m.bn2", conv(g, "m.dw", e, 16, 1, 3, 1, 1, 16), 16));
	int p =
	    batchnorm(g, "m.bn3", conv(g, "m.proj", d, 8, 16, 1, 1, 0, 1), 8);
	int y = binary(g, GRAPH_OP_ADD, "m.add", s, p); /* residual first */
	assert_int_equal(graph_add_output(g, y), DF_OK);
	assert_int_equal(graph_finalize(g), DF_OK);
	assert_int_equal(g->n_nodes, 5);
	assert_int_equal(count_op(g, GRAPH_OP_CONV), 5);
	const graph_node *n1 = &g->nodes[find_node(g, "r.conv1")];
	assert_int_equal(n1->n_postops, 1);
	assert_int_equal(n1->postops[0].act, GRAPH_ACT_RELU);
	const graph_node *n2 = &g->nodes[find_node(g, "r.conv2")];
	assert_int_equal(n2->n_postops, 2);
	assert_int_equal(n2->postops[0].kind, GRAPH_POSTOP_ADD);
	assert_int_equal(n2->postops[0].operand, g->inputs[0]);
	assert_int_equal(n2->postops[1].kind, GRAPH_POSTOP_ACT);
	assert_int_equal(n2->postops[1].act, GRAPH_ACT_RELU);
	const graph_node *dw = &g->nodes[find_node(g, "m.dw")];
	assert_int_equal(dw->n_postops, 1);
	assert_int_equal(dw->postops[0].act, GRAPH_ACT_CLIP);
	assert_true(dw->postops[0].alpha == 0.0f &&
	            dw->postops[0].beta == 6.0f);
	assert_int_equal(dw->attr.conv.group, 16);
	const graph_node *pr = &g->nodes[find_node(g, "m.proj")];
	assert_int_equal(pr->n_postops, 1);
	assert_int_equal(pr->postops[0].kind, GRAPH_POSTOP_ADD);
	assert_int_equal(pr->postops[0].operand, n2->output);
	assert_int_equal(pr->output, g->outputs[0]);
	graph_destroy(g);
}

static void limits_postops_and_respects_other_consumers(void **state)
{
	(void)state;
	graph *g = NULL;
	assert_int_equal(graph_create(&g), DF_OK);
	int64_t xd[4] = {1, 2, 3, 3};
	int x = val(g, "x", 4, xd, true);
	int c = conv(g, "conv", x, 2, 2, 1, 1, 0, 1);
	for (int i = 0; i < GRAPH_MAX_POSTOPS + 2; i++) {
		char name[16];
		snprintf(name, sizeof name, "act%d", i);
		c = unary(g, i % 2 ? GRAPH_OP_SIGMOID : GRAPH_OP_LEAKYRELU,
		          name, c);
	}
	/* a second conv whose output is also a graph output: no fusion */
	int c2 = conv(g, "conv2", c, 2, 2, 1, 1, 0, 1);
	int r = unary(g, GRAPH_OP_RELU, "relu", c2);
	assert_int_equal(graph_add_output(g, r), DF_OK);
	assert_int_equal(graph_add_output(g, c2), DF_OK);
	assert_int_equal(graph_finalize(g), DF_OK);
	const graph_node *n = &g->nodes[find_node(g, "conv")];
	assert_int_equal(n->n_postops, GRAPH_MAX_POSTOPS);
	assert_int_equal(n->postops[0].act, GRAPH_ACT_LEAKYRELU);
	assert_true(n->postops[0].alpha == 0.1f);
	assert_int_equal(n->postops[1].act, GRAPH_ACT_SIGMOID);
	assert_int_equal(
	    count_op(g, GRAPH_OP_LEAKYRELU) + count_op(g, GRAPH_OP_SIGMOID), 2);
	assert_int_equal(g->nodes[find_node(g, "conv2")].n_postops, 0);
	assert_int_equal(count_op(g, GRAPH_OP_RELU), 1);
	graph_destroy(g);
}

static void folds_constants(void **state)
{
	(void)state;
	graph *g = NULL;
	assert_int_equal(graph_create(&g), DF_OK);
	int64_t xd[2] = {2, 3};
	int x = val(g, "x", 2, xd, true);
	/* ((k1 + k2) * k3) reshaped, then relu'd: all constant */
	float k1[3] = {1, -2, 3}, k2[1] = {1}, k3[3] = {2, 2, -1};
	int64_t d3 = 3, d1 = 1;
	int a = binary(g, GRAPH_OP_ADD, "kadd", cst(g, "k1", 1, &d3, k1),
	               cst(g, "k2", 1, &d1, k2));
	int m = binary(g, GRAPH_OP_MUL, "kmul", a, cst(g, "k3", 1, &d3, k3));
	int rl = unary(g, GRAPH_OP_RELU, "krelu", m);
	/* shape arithmetic: Concat([2], [3]) -> Reshape target */
	int64_t s0 = 2, s1 = 3;
	int sc = tmp(g, "shape");
	int sin[2] = {cst_i64(g, "s0", 1, &s0), cst_i64(g, "s1", 1, &s1)};
	add(g, mk(GRAPH_OP_CONCAT, 2, sin, sc), "shape_concat");
	int64_t one3[2] = {1, 3};
	int kr = tmp(g, "kr");
	int64_t krs[2] = {1, 3};
	int rin[2] = {rl, cst_i64(g, "krs", 2, krs)};
	add(g, mk(GRAPH_OP_RESHAPE, 2, rin, kr), "kreshape");
	int y = binary(g, GRAPH_OP_ADD, "add", x, kr);
	int yr = tmp(g, "yr");
	int yin[2] = {y, sc};
	add(g, mk(GRAPH_OP_RESHAPE, 2, yin, yr), "reshape");
	assert_int_equal(graph_add_output(g, yr), DF_OK);
	assert_int_equal(graph_finalize(g), DF_OK);
	assert_int_equal(g->n_nodes, 2);
	assert_int_equal(g->nodes[0].op, GRAPH_OP_ADD);
	assert_int_equal(g->nodes[1].op, GRAPH_OP_RESHAPE);
	int kv = g->nodes[0].inputs[1];
	const tensor *k = g->values[kv].constant;
	assert_non_null(k);
	expect_dims(g, kv, 2, one3);
	/* relu((k1 + 1) * k3) = relu([4, -2, -4]) */
	assert_true(tensor_f32(k)[0] == 4.0f);
	assert_true(tensor_f32(k)[1] == 0.0f);
	assert_true(tensor_f32(k)[2] == 0.0f);
	expect_dims(g, g->outputs[0], 2, xd);
	graph_destroy(g);
}

static void fold_node_evaluates_one_node(void **state)
{
	(void)state;
	graph *g = NULL;
	assert_int_equal(graph_create(&g), DF_OK);
	int64_t a[2] = {4, 5}, b[1] = {6};
	int o = tmp(g, "cat");
	int in[2] = {cst_i64(g, "a", 2, a), cst_i64(g, "b", 1, b)};
	graph_node nd = mk(GRAPH_OP_CONCAT, 2, in, o);
	int idx = -1;
	assert_int_equal(graph_add_node(g, &nd, "cat", &idx), DF_OK);
	assert_int_equal(graph_infer_node(g, idx), DF_OK);
	bool folded = false;
	assert_int_equal(graph_fold_node(g, idx, &folded), DF_OK);
	assert_true(folded);
	assert_int_equal(g->n_nodes, 0);
	const tensor *t = g->values[o].constant;
	assert_non_null(t);
	assert_int_equal(t->dtype, TENSOR_I64);
	assert_int_equal(t->numel, 3);
	assert_true(tensor_i64(t)[2] == 6);
	assert_int_equal(g->values[o].producer, -1);
	graph_destroy(g);
}

static void sorts_nodes_added_out_of_order(void **state)
{
	(void)state;
	graph *g = NULL;
	assert_int_equal(graph_create(&g), DF_OK);
	int64_t xd[4] = {1, 2, 5, 5};
	int x = val(g, "x", 4, xd, true);
	int r = tmp(g, "r"), c2o = tmp(g, "c2o"), c1o = tmp(g, "c1o"),
	    s = tmp(g, "s");
	int64_t wd[4] = {2, 2, 3, 3};
	int w1 = cst(g, "w1", 4, wd, NULL), w2 = cst(g, "w2", 4, wd, NULL);
	/* added backwards: relu(s), s = c1o + c2o, c2 = conv(x), c1 = conv(x)
	 */
	add(g, mk(GRAPH_OP_RELU, 1, &s, r), "relu");
	int ain[2] = {c1o, c2o};
	add(g, mk(GRAPH_OP_ADD, 2, ain, s), "add");
	graph_node c2 = mk(GRAPH_OP_CONV, 2, (int[]){x, w2}, c2o);
	c2.attr.conv.pads[0] = c2.attr.conv.pads[1] = c2.attr.conv.pads[2] =
	    c2.attr.conv.pads[3] = 1;
	add(g, c2, "c2");
	graph_node c1 = c2;
	c1.inputs[1] = w1;
	c1.output = c1o;
	add(g, c1, "c1");
	assert_int_equal(graph_add_output(g, r), DF_OK);
	assert_int_equal(graph_finalize(g), DF_OK);
	/* Add fused into c1 (its first operand), Relu after it; c2 must come
	 * first because c1 reads c2's output as its post-op operand */
	assert_int_equal(g->n_nodes, 2);
	assert_string_equal(g->nodes[0].name, "c2");
	assert_string_equal(g->nodes[1].name, "c1");
	assert_int_equal(g->nodes[1].n_postops, 2);
	assert_int_equal(g->nodes[1].postops[0].operand, g->nodes[0].output);
	assert_int_equal(graph_check(g), DF_OK);
	graph_destroy(g);
}

static void clones_deeply(void **state)
{
	(void)state;
	graph *g = NULL, *c = NULL;
	assert_int_equal(graph_create(&g), DF_OK);
	int64_t xd[4] = {1, 3, 8, 8};
	int x = val(g, "x", 4, xd, true);
	int a =
	    unary(g, GRAPH_OP_RELU, "relu",
	          batchnorm(g, "bn", conv(g, "conv", x, 4, 3, 3, 2, 1, 1), 4));
	int64_t fcd[2] = {5, 64};
	int fl = tmp(g, "flat");
	graph_node fn = mk(GRAPH_OP_FLATTEN, 1, &a, fl);
	fn.attr.axis.axis = 1;
	add(g, fn, "flatten");
	int y = tmp(g, "y");
	graph_node gn =
	    mk(GRAPH_OP_GEMM, 2, (int[]){fl, cst(g, "fcW", 2, fcd, NULL)}, y);
	gn.attr.gemm.trans_b = true;
	add(g, gn, "fc");
	assert_int_equal(graph_add_output(g, y), DF_OK);
	assert_int_equal(graph_finalize(g), DF_OK);
	g->opset = 13;
	assert_int_equal(graph_clone(g, &c), DF_OK);
	assert_int_equal(c->n_nodes, g->n_nodes);
	assert_int_equal(c->n_values, g->n_values);
	assert_int_equal(c->opset, 13);
	for (int v = 0; v < g->n_values; v++) {
		assert_string_equal(c->values[v].name, g->values[v].name);
		assert_ptr_not_equal(c->values[v].name, g->values[v].name);
		if (g->values[v].constant) {
			assert_ptr_not_equal(c->values[v].constant,
			                     g->values[v].constant);
			assert_memory_equal(
			    c->values[v].constant->data,
			    g->values[v].constant->data,
			    tensor_nbytes(g->values[v].constant));
		}
	}
	int64_t macs = graph_total_macs(g);
	graph_destroy(g);
	assert_int_equal(graph_check(c), DF_OK);
	assert_int_equal(graph_total_macs(c), macs);
	/* finalize is idempotent on the clone */
	int nodes = c->n_nodes;
	assert_int_equal(graph_finalize(c), DF_OK);
	assert_int_equal(c->n_nodes, nodes);
	assert_int_equal(c->nodes[0].n_postops, 1);
	graph_destroy(c);
}

static void counts_macs_params_and_bytes(void **state)
{
	(void)state;
	graph *g = NULL;
	assert_int_equal(graph_create(&g), DF_OK);
	int64_t xd[4] = {1, 3, 8, 8};
	int x = val(g, "x", 4, xd, true);
	int c = conv(g, "conv", x, 4, 3, 3, 2, 1, 1); /* -> [1,4,4,4] */
	int p = tmp(g, "pool");
	graph_node pn = mk(GRAPH_OP_GLOBALAVGPOOL, 1, &c, p);
	add(g, pn, "gap");
	assert_int_equal(graph_add_output(g, p), DF_OK);
	assert_int_equal(graph_finalize(g), DF_OK);
	int cn = find_node(g, "conv");
	/* 64 outputs * (3*3*3) */
	assert_int_equal(graph_node_macs(g, cn), 64 * 27);
	assert_int_equal(graph_node_params(g, cn), 4 * 27 + 4);
	assert_int_equal(graph_node_weight_bytes(g, cn), (4 * 27 + 4) * 4);
	assert_int_equal(graph_node_flops(g, cn), 2 * 64 * 27 + 64);
	assert_int_equal(graph_node_macs(g, find_node(g, "gap")), 0);
	assert_int_equal(graph_total_params(g), 4 * 27 + 4);
	assert_int_equal(graph_total_weight_bytes(g), (4 * 27 + 4) * 4);
	assert_int_equal(graph_total_macs(g), 64 * 27);
	assert_int_equal(graph_node_macs(g, 99), 0);
	graph_destroy(g);
}

static void removes_dead_nodes_and_values(void **state)
{
	(void)state;
	graph *g = NULL;
	assert_int_equal(graph_create(&g), DF_OK);
	int64_t xd[2] = {1, 4};
	int x = val(g, "x", 2, xd, true);
	int r = unary(g, GRAPH_OP_RELU, "relu", x);
	unary(g, GRAPH_OP_SIGMOID, "unused", x);
	int64_t d = 4;
	cst(g, "orphan", 1, &d, NULL);
	assert_int_equal(graph_add_output(g, r), DF_OK);
	assert_int_equal(graph_finalize(g), DF_OK);
	assert_int_equal(g->n_nodes, 1);
	assert_int_equal(g->n_values, 2);
	assert_int_equal(graph_find_value(g, "orphan"), -1);
	graph_destroy(g);
}

static void rejects_inconsistent_graphs(void **state)
{
	(void)state;
	graph *g = NULL;
	int64_t xd[4] = {1, 3, 8, 8};

	/* Conv weight has 4 input channels, input has 3 */
	assert_int_equal(graph_create(&g), DF_OK);
	int x = val(g, "x", 4, xd, true);
	assert_int_equal(
	    graph_add_output(g, conv(g, "convbad", x, 2, 4, 3, 1, 0, 1)),
	    DF_OK);
	expect_fail(g, DF_EINVAL, "node 'convbad' (Conv)");

	/* groups not dividing channels */
	assert_int_equal(graph_create(&g), DF_OK);
	x = val(g, "x", 4, xd, true);
	assert_int_equal(
	    graph_add_output(g, conv(g, "cg", x, 4, 1, 3, 1, 0, 2)), DF_OK);
	expect_fail(g, DF_EINVAL, "group");

	/* kernel larger than the padded input */
	assert_int_equal(graph_create(&g), DF_OK);
	x = val(g, "x", 4, xd, true);
	assert_int_equal(
	    graph_add_output(g, conv(g, "big", x, 2, 3, 11, 1, 1, 1)), DF_OK);
	expect_fail(g, DF_EINVAL, "exceeds");

	/* 1-D convolution */
	assert_int_equal(graph_create(&g), DF_OK);
	int64_t x3[3] = {1, 3, 8};
	x = val(g, "x", 3, x3, true);
	int64_t w3[3] = {2, 3, 3};
	int o = tmp(g, "y");
	add(g, mk(GRAPH_OP_CONV, 2, (int[]){x, cst(g, "w", 3, w3, NULL)}, o),
	    "conv1d");
	assert_int_equal(graph_add_output(g, o), DF_OK);
	expect_fail(g, DF_ENOTSUP, "conv1d");

	/* Add that does not broadcast */
	assert_int_equal(graph_create(&g), DF_OK);
	int64_t ad[2] = {2, 3}, bd[2] = {3, 2};
	o = binary(g, GRAPH_OP_ADD, "addbad", val(g, "a", 2, ad, true),
	           val(g, "b", 2, bd, true));
	assert_int_equal(graph_add_output(g, o), DF_OK);
	expect_fail(g, DF_EINVAL, "broadcast");

	/* Reshape to a different element count */
	assert_int_equal(graph_create(&g), DF_OK);
	int64_t shp[2] = {4, -1};
	o = tmp(g, "r");
	add(g,
	    mk(GRAPH_OP_RESHAPE, 2,
	       (int[]){val(g, "a", 2, ad, true), cst_i64(g, "s", 2, shp)}, o),
	    "reshapebad");
	assert_int_equal(graph_add_output(g, o), DF_OK);
	expect_fail(g, DF_EINVAL, "reshapebad");

	/* Gemm with disagreeing K */
	assert_int_equal(graph_create(&g), DF_OK);
	o = tmp(g, "y");
	graph_node gn =
	    mk(GRAPH_OP_GEMM, 2,
	       (int[]){val(g, "a", 2, ad, true), cst(g, "w", 2, ad, NULL)}, o);
	add(g, gn, "gemmbad");
	assert_int_equal(graph_add_output(g, o), DF_OK);
	expect_fail(g, DF_EINVAL, "disagree on K");

	/* Concat of mismatched shapes */
	assert_int_equal(graph_create(&g), DF_OK);
	o = tmp(g, "y");
	graph_node cn =
	    mk(GRAPH_OP_CONCAT, 2,
	       (int[]){val(g, "a", 2, ad, true), val(g, "b", 2, bd, true)}, o);
	add(g, cn, "catbad");
	assert_int_equal(graph_add_output(g, o), DF_OK);
	expect_fail(g, DF_EINVAL, "catbad");

	/* a cycle */
	assert_int_equal(graph_create(&g), DF_OK);
	x = val(g, "x", 2, ad, true);
	int p = tmp(g, "p"), q = tmp(g, "q");
	add(g, mk(GRAPH_OP_ADD, 2, (int[]){x, q}, p), "p");
	add(g, mk(GRAPH_OP_RELU, 1, &p, q), "q");
	assert_int_equal(graph_add_output(g, q), DF_OK);
	expect_fail(g, DF_EINVAL, "cycle");

	/* an output that is a constant */
	assert_int_equal(graph_create(&g), DF_OK);
	x = val(g, "x", 2, ad, true);
	o = unary(g, GRAPH_OP_RELU, "crelu", cst(g, "k", 2, ad, NULL));
	assert_int_equal(graph_add_output(g, o), DF_OK);
	expect_fail(g, DF_ENOTSUP, "not computed");

	/* a value that comes from nowhere */
	assert_int_equal(graph_create(&g), DF_OK);
	x = val(g, "x", 2, ad, false); /* not declared an input */
	assert_int_equal(
	    graph_add_output(g, unary(g, GRAPH_OP_RELU, "orphan", x)), DF_OK);
	expect_fail(g, DF_EINVAL, "orphan");

	/* a huge inferred shape */
	assert_int_equal(graph_create(&g), DF_OK);
	int64_t hd[2] = {1, 1 << 20};
	int64_t hb[2] = {1 << 20, 1};
	o = binary(g, GRAPH_OP_MUL, "huge", val(g, "a", 2, hd, true),
	           val(g, "b", 2, hb, true));
	assert_int_equal(graph_add_output(g, o), DF_OK);
	expect_fail(g, DF_ETOOBIG, "huge");

	/* BatchNorm with a negative variance */
	assert_int_equal(graph_create(&g), DF_OK);
	x = val(g, "x", 2, ad, true);
	int64_t c3 = 3;
	int bin[5] = {x, cst(g, "g", 1, &c3, NULL), cst(g, "b", 1, &c3, NULL),
	              cst(g, "m", 1, &c3, NULL),
	              cst(g, "v", 1, &c3, (float[]){1, -1, 1})};
	o = tmp(g, "y");
	add(g, mk(GRAPH_OP_BATCHNORM, 5, bin, o), "bnneg");
	assert_int_equal(graph_add_output(g, o), DF_OK);
	expect_fail(g, DF_EINVAL, "bnneg");
}

static void rejects_bad_building_calls(void **state)
{
	(void)state;
	graph *g = NULL;
	assert_int_equal(graph_create(&g), DF_OK);
	int64_t d[2] = {2, 2};
	int x = val(g, "x", 2, d, true);
	int y = tmp(g, "y");
	graph_node nd = mk(GRAPH_OP_RELU, 1, &x, y);
	assert_int_equal(graph_add_node(g, &nd, "r", NULL), DF_OK);
	/* the same output twice */
	assert_int_equal(graph_add_node(g, &nd, "r2", NULL), DF_EINVAL);
	/* an input index out of range */
	nd.inputs[0] = 99;
	nd.output = tmp(g, "z");
	assert_int_equal(graph_add_node(g, &nd, "r3", NULL), DF_EINVAL);
	/* too many inputs for the op */
	nd = mk(GRAPH_OP_RELU, 2, (int[]){x, x}, nd.output);
	assert_int_equal(graph_add_node(g, &nd, "r4", NULL), DF_EINVAL);
	/* a constant as graph input; a value with a negative dim */
	int64_t bad[2] = {2, -1};
	assert_int_equal(graph_add_value(g, "neg", 2, bad, NULL, NULL),
	                 DF_EINVAL);
	int k = cst(g, "k", 2, d, NULL);
	assert_int_equal(graph_add_input(g, k), DF_EINVAL);
	assert_int_equal(graph_add_input(g, x), DF_EINVAL); /* twice */
	assert_int_equal(graph_add_output(g, 1000), DF_EINVAL);
	/* an unnamed node gets "<op>_<index>" */
	nd = mk(GRAPH_OP_SIGMOID, 1, &x, tmp(g, "s"));
	int idx = -1;
	assert_int_equal(graph_add_node(g, &nd, NULL, &idx), DF_OK);
	assert_string_equal(g->nodes[idx].name, "Sigmoid_1");
	graph_destroy(g);
	graph_destroy(NULL);
}

static void check_catches_broken_invariants(void **state)
{
	(void)state;
	graph *g = NULL;
	assert_int_equal(graph_create(&g), DF_OK);
	int64_t ad[2] = {1, 3}, wd[2] = {2, 3};
	int a = val(g, "A", 2, ad, true);
	int y = tmp(g, "Y");
	graph_node gn =
	    mk(GRAPH_OP_GEMM, 2, (int[]){a, cst(g, "W", 2, wd, NULL)}, y);
	gn.attr.gemm.trans_b = true;
	add(g, gn, "fc");
	assert_int_equal(graph_add_output(g, y), DF_OK);
	assert_int_equal(graph_finalize(g), DF_OK);
	assert_int_equal(graph_check(g), DF_OK);
	y = g->outputs[0];
	g->nodes[0].attr.gemm.trans_b = false;
	assert_int_equal(graph_check(g), DF_EINVAL);
	g->nodes[0].attr.gemm.trans_b = true;
	g->values[y].dims[1] = 3;
	assert_int_equal(graph_check(g), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "fc"));
	g->values[y].dims[1] = 2;
	g->nodes[0].n_postops = 1;
	g->nodes[0].postops[0] =
	    (graph_postop){GRAPH_POSTOP_ADD, GRAPH_ACT_RELU, 0, 0, y};
	assert_int_equal(graph_check(g), DF_EINVAL);
	g->nodes[0].n_postops = 0;
	assert_int_equal(graph_check(g), DF_OK);
	graph_destroy(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(infers_conv_shapes),
	    cmocka_unit_test(infers_pool_shapes_with_ceil_mode),
	    cmocka_unit_test(
	        infers_gemm_matmul_broadcast_concat_flatten_reshape),
	    cmocka_unit_test(canonicalizes_gemm),
	    cmocka_unit_test(turns_matmul_with_constant_into_gemm),
	    cmocka_unit_test(folds_batchnorm_into_conv_numerically),
	    cmocka_unit_test(folds_batchnorm_into_gemm_numerically),
	    cmocka_unit_test(keeps_batchnorm_when_conv_output_is_shared),
	    cmocka_unit_test(folds_batchnorm_without_touching_shared_weights),
	    cmocka_unit_test(fuses_resnet_and_mobilenet_chains),
	    cmocka_unit_test(limits_postops_and_respects_other_consumers),
	    cmocka_unit_test(folds_constants),
	    cmocka_unit_test(fold_node_evaluates_one_node),
	    cmocka_unit_test(sorts_nodes_added_out_of_order),
	    cmocka_unit_test(clones_deeply),
	    cmocka_unit_test(counts_macs_params_and_bytes),
	    cmocka_unit_test(removes_dead_nodes_and_values),
	    cmocka_unit_test(rejects_inconsistent_graphs),
	    cmocka_unit_test(rejects_bad_building_calls),
	    cmocka_unit_test(check_catches_broken_invariants),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
