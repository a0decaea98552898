/*
 * Unit tests for engine_dnnl.c: every graph op, and the fused forms
 * graph_finalize() produces, run by the oneDNN engine and by the reference
 * engine (engine_ref.c) on the same random inputs. Shapes are chosen to be
 * awkward for blocked layouts (channels 3, 13, 37, not multiples of 8/16),
 * with stride 2, asymmetric pads, groups, dilations, ceil_mode pools and
 * broadcasting. Agreement: max |dnnl - ref| / max(|ref|, floor) <= 1e-4,
 * with floor = 1e-2 * max|ref|: an output that cancels to nearly zero is
 * judged against 1% of its tensor's scale, not against its own tiny value
 * (the reference accumulates in double, oneDNN in float, so a sum of a few
 * hundred terms differs by ~1e-6 of the tensor's scale wherever it lands).
 *
 * Every comparison also runs the oneDNN engine a second time on the same
 * inputs and requires bit-identical outputs: buffers are shared and
 * written in place, so a planning bug that clobbers a value still needed
 * (or a graph input) shows up as a second run that differs. The engine
 * runs with 2 threads, so both its one-thread and its parallel steps are
 * exercised. A test corrupts finalized graphs and checks that create
 * fails cleanly, naming the node. The last one checks
 * engine_create_release(): the graph's constant data is gone and the
 * engine still gives the same bits as one that borrows the constants.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "graph.h"
#include "tensor.h"

#define TOL 1e-4
#define FLOOR_FRAC 1e-2

/* ------------------------------------------------------------- building */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

/* Uniform in [-1, 1), reproducible. */
static float frand(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (float)((double)(rng_state >> 11) / (double)(1ull << 52)) - 1.0f;
}

static int name_seq;

static const char *next_name(char *buf, size_t len)
{
	snprintf(buf, len, "v%d", name_seq++);
	return buf;
}

static int add_input(graph *g, int nd, const int64_t *dims)
{
	char nm[32];
	int v = -1;
	assert_int_equal(graph_add_value(g, next_name(nm, sizeof nm), nd, dims,
					 NULL, &v), DF_OK);
	assert_int_equal(graph_add_input(g, v), DF_OK);
	return v;
}

/* A random f32 constant with entries in [-scale, scale). */
static int add_const(graph *g, int nd, const int64_t *dims, float scale)
{
	char nm[32];
	tensor *t = NULL;
	int v = -1;
	assert_int_equal(tensor_create(TENSOR_F32, nd, dims, &t), DF_OK);
	for (size_t i = 0; i < t->numel; i++)
		tensor_f32(t)[i] = scale * frand();
	assert_int_equal(graph_add_value(g, next_name(nm, sizeof nm), nd, dims,
					 t, &v), DF_OK);
	return v;
}

/* A positive constant (BatchNorm variance). */
static int add_const_pos(graph *g, int64_t n)
{
	char nm[32];
	tensor *t = NULL;
	int v = -1;
	assert_int_equal(tensor_create(TENSOR_F32, 1, &n, &t), DF_OK);
	for (size_t i = 0; i < t->numel; i++)
		tensor_f32(t)[i] = 0.5f + 0.5f * (frand() + 1.0f);
	assert_int_equal(graph_add_value(g, next_name(nm, sizeof nm), 1, &n, t,
					 &v), DF_OK);
	return v;
}

/* Adds node nd (inputs and attributes set by the caller) with a fresh
 * output value, infers its shape, and returns the output value. */
static int add_node(graph *g, graph_node *nd)
{
	char nm[32];
	int v = -1, n = -1;
	assert_int_equal(graph_add_value(g, next_name(nm, sizeof nm), 0, NULL,
					 NULL, &v), DF_OK);
	nd->output = v;
	assert_int_equal(graph_add_node(g, nd, nm, &n), DF_OK);
	df_err err = graph_infer_node(g, n);
	if (err)
		fail_msg("infer %s: %s", graph_op_name(nd->op), df_err_msg());
	return v;
}

static graph_node node_of(graph_op op, int n_in, const int *in)
{
	graph_node nd;
	memset(&nd, 0, sizeof nd);
	nd.op = op;
	nd.n_inputs = n_in;
	for (int i = 0; i < n_in; i++)
		nd.inputs[i] = in[i];
	return nd;
}

static int op1(graph *g, graph_op op, int x)
{
	graph_node nd = node_of(op, 1, (int[]){x});
	return add_node(g, &nd);
}

static int op2(graph *g, graph_op op, int a, int b)
{
	graph_node nd = node_of(op, 2, (int[]){a, b});
	return add_node(g, &nd);
}

static int clip(graph *g, int x, float lo, float hi)
{
	graph_node nd = node_of(GRAPH_OP_CLIP, 1, (int[]){x});
	nd.attr.clip.lo = lo;
	nd.attr.clip.hi = hi;
	return add_node(g, &nd);
}

static int leaky(graph *g, int x, float alpha)
{
	graph_node nd = node_of(GRAPH_OP_LEAKYRELU, 1, (int[]){x});
	nd.attr.leaky.alpha = alpha;
	return add_node(g, &nd);
}

typedef struct conv_spec {
	int64_t m, kh, kw, sh, sw, dh, dw;
	int64_t pads[4]; /* top, left, bottom, right */
	int64_t group;
} conv_spec;

/* Conv with random weights ~ 1/sqrt(fan_in) and bias, plus `n_post`
 * explicit post-ops (already in finalized form). */
static int conv_post(graph *g, int x, const conv_spec *s,
		     const graph_postop *post, int n_post)
{
	int64_t c = g->values[x].dims[1];
	int64_t wd[4] = {s->m, c / s->group, s->kh, s->kw};
	float scale = 1.0f / sqrtf((float)(wd[1] * s->kh * s->kw));
	int w = add_const(g, 4, wd, scale);
	int b = add_const(g, 1, &s->m, 0.5f);
	graph_node nd = node_of(GRAPH_OP_CONV, 3, (int[]){x, w, b});
	graph_conv_attr *a = &nd.attr.conv;
	a->kernel[0] = s->kh, a->kernel[1] = s->kw;
	a->strides[0] = s->sh, a->strides[1] = s->sw;
	a->dilations[0] = s->dh, a->dilations[1] = s->dw;
	memcpy(a->pads, s->pads, sizeof a->pads);
	a->group = s->group;
	nd.n_postops = n_post;
	for (int i = 0; i < n_post; i++)
		nd.postops[i] = post[i];
	return add_node(g, &nd);
}

static int conv(graph *g, int x, const conv_spec *s)
{
	return conv_post(g, x, s, NULL, 0);
}

/* k x k conv, stride st, "same" padding, m outputs, group grp. */
static int conv_k(graph *g, int x, int64_t m, int64_t k, int64_t st,
		  int64_t grp)
{
	int64_t p = k / 2;
	conv_spec s = {m, k, k, st, st, 1, 1, {p, p, p, p}, grp};
	return conv(g, x, &s);
}

/* ONNX-form BatchNormalization {x, gamma, beta, mean, var}. */
static int batchnorm(graph *g, int x)
{
	int64_t c = g->values[x].dims[1];
	int ga = add_const(g, 1, &c, 1.0f);
	int be = add_const(g, 1, &c, 0.5f);
	int mu = add_const(g, 1, &c, 0.5f);
	int va = add_const_pos(g, c);
	graph_node nd = node_of(GRAPH_OP_BATCHNORM, 5, (int[]){x, ga, be, mu, va});
	nd.attr.bn.epsilon = 1e-5f;
	return add_node(g, &nd);
}

static int pool(graph *g, graph_op op, int x, int64_t k, int64_t st,
		const int64_t pads[4], int64_t dil, bool ceil_mode,
		bool include_pad)
{
	graph_node nd = node_of(op, 1, (int[]){x});
	graph_pool_attr *a = &nd.attr.pool;
	a->kernel[0] = a->kernel[1] = k;
	a->strides[0] = a->strides[1] = st;
	a->dilations[0] = a->dilations[1] = dil;
	memcpy(a->pads, pads, sizeof a->pads);
	a->ceil_mode = ceil_mode;
	a->count_include_pad = include_pad;
	return add_node(g, &nd);
}

static graph *new_graph(void)
{
	graph *g = NULL;
	assert_int_equal(graph_create(&g), DF_OK);
	g->opset = 13;
	return g;
}

/* ----------------------------------------------------------- comparing */

static void random_fill(tensor *t)
{
	for (size_t i = 0; i < t->numel; i++)
		tensor_f32(t)[i] = frand();
}

/*
 * Finalizes g (with outputs already added), runs both engines on random
 * inputs and checks every output against the tolerance; runs the oneDNN
 * engine again and requires the same bits; checks the inputs are not
 * modified. Frees g.
 */
static void compare_engines(graph *g, const char *what)
{
	df_err err = graph_finalize(g);
	if (err)
		fail_msg("%s: finalize: %s", what, df_err_msg());
	engine *ref = NULL, *dn = NULL;
	if (engine_create(g, ENGINE_REF, 1, &ref))
		fail_msg("%s: ref engine: %s", what, df_err_msg());
	if (engine_create(g, ENGINE_DNNL, 2, &dn))
		fail_msg("%s: dnnl engine: %s", what, df_err_msg());
	int ni = g->n_inputs, no = g->n_outputs;
	tensor **in = calloc((size_t)ni + 1, sizeof *in);
	tensor **copy = calloc((size_t)ni + 1, sizeof *copy);
	tensor **yr = calloc((size_t)no, sizeof *yr);
	tensor **yd = calloc((size_t)no, sizeof *yd);
	tensor **yd2 = calloc((size_t)no, sizeof *yd2);
	assert_true(in && copy && yr && yd && yd2);
	for (int i = 0; i < ni; i++) {
		const graph_value *v = &g->values[g->inputs[i]];
		assert_int_equal(tensor_create(TENSOR_F32, v->ndim, v->dims, &in[i]),
				 DF_OK);
		random_fill(in[i]);
		assert_int_equal(tensor_clone(in[i], &copy[i]), DF_OK);
	}
	if (engine_run(ref, (const tensor *const *)in, yr))
		fail_msg("%s: ref run: %s", what, df_err_msg());
	if (engine_run(dn, (const tensor *const *)in, yd))
		fail_msg("%s: dnnl run: %s", what, df_err_msg());
	if (engine_run(dn, (const tensor *const *)in, yd2))
		fail_msg("%s: dnnl second run: %s", what, df_err_msg());
	for (int i = 0; i < ni; i++)
		if (memcmp(in[i]->data, copy[i]->data, tensor_nbytes(in[i])))
			fail_msg("%s: input %d was modified", what, i);
	for (int o = 0; o < no; o++) {
		double mx = 0, ma, mr;
		for (size_t i = 0; i < yr[o]->numel; i++)
			if (fabs(tensor_f32(yr[o])[i]) > mx)
				mx = fabs(tensor_f32(yr[o])[i]);
		float floor = (float)(FLOOR_FRAC * (mx > 1e-6 ? mx : 1e-6));
		assert_int_equal(tensor_max_error(yd[o], yr[o], floor, &ma, &mr),
				 DF_OK);
		if (!(mr <= TOL))
			fail_msg("%s: output %d: max rel error %.3g (abs %.3g, "
				 "max|ref| %.3g)", what, o, mr, ma, mx);
		if (memcmp(yd[o]->data, yd2[o]->data, tensor_nbytes(yd[o])))
			fail_msg("%s: output %d differs between two runs", what, o);
		tensor_destroy(yr[o]);
		tensor_destroy(yd[o]);
		tensor_destroy(yd2[o]);
	}
	for (int i = 0; i < ni; i++) {
		tensor_destroy(in[i]);
		tensor_destroy(copy[i]);
	}
	free(in);
	free(copy);
	free(yr);
	free(yd);
	free(yd2);
	engine_destroy(ref);
	engine_destroy(dn);
	graph_destroy(g);
}

static void out(graph *g, int v)
{
	assert_int_equal(graph_add_output(g, v), DF_OK);
}

/* ----------------------------------------------------------------- tests */

static void conv_odd_shapes(void **state)
{
	(void)state;
	static const struct {
		int64_t n, c, h, w;
		conv_spec s;
	} cases[] = {
		{1, 3, 11, 13, {13, 3, 3, 1, 1, 1, 1, {1, 1, 1, 1}, 1}},
		{1, 13, 10, 9, {37, 3, 3, 2, 2, 1, 1, {0, 1, 1, 0}, 1}},
		{2, 37, 9, 8, {16, 1, 1, 1, 1, 1, 1, {0, 0, 0, 0}, 1}},
		{1, 39, 8, 8, {21, 3, 3, 1, 1, 1, 1, {1, 1, 1, 1}, 3}},
		{1, 37, 12, 11, {37, 3, 3, 2, 2, 1, 1, {1, 1, 1, 1}, 37}},
		{1, 13, 9, 9, {26, 3, 3, 1, 1, 1, 1, {1, 0, 2, 1}, 13}},
		{1, 16, 13, 13, {24, 3, 3, 1, 1, 2, 2, {2, 2, 2, 2}, 1}},
		{1, 13, 12, 12, {13, 3, 3, 2, 1, 2, 3, {1, 3, 2, 0}, 13}},
		{1, 64, 14, 14, {64, 3, 3, 1, 1, 1, 1, {1, 1, 1, 1}, 1}},
		{1, 32, 15, 17, {48, 5, 3, 2, 1, 1, 1, {2, 1, 2, 1}, 1}},
		{1, 32, 16, 16, {32, 3, 3, 1, 1, 1, 1, {1, 1, 1, 1}, 32}},
		{1, 96, 7, 7, {24, 1, 1, 1, 1, 1, 1, {0, 0, 0, 0}, 1}},
		{1, 7, 1, 1, {5, 1, 1, 1, 1, 1, 1, {0, 0, 0, 0}, 1}},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char what[64];
		graph *g = new_graph();
		int64_t xd[4] = {cases[i].n, cases[i].c, cases[i].h, cases[i].w};
		int x = add_input(g, 4, xd);
		out(g, conv(g, x, &cases[i].s));
		snprintf(what, sizeof what, "conv case %zu", i);
		compare_engines(g, what);
	}
}

/* Shapes where the engine asks for Winograd (3x3, stride 1, >= 64
 * channels, output >= 14x14), with odd sizes, asymmetric pads and a fused
 * residual add; each is big enough to run on several threads. */
static void conv_winograd_shapes(void **state)
{
	(void)state;
	static const graph_postop relu = {GRAPH_POSTOP_ACT, GRAPH_ACT_RELU, 0, 0, -1};
	static const struct {
		int64_t c, h, w;
		conv_spec s;
		bool add;
	} cases[] = {
		{64, 28, 28, {64, 3, 3, 1, 1, 1, 1, {1, 1, 1, 1}, 1}, false},
		{128, 15, 17, {96, 3, 3, 1, 1, 1, 1, {1, 1, 1, 1}, 1}, true},
		{80, 16, 14, {144, 3, 3, 1, 1, 1, 1, {0, 1, 2, 1}, 1}, false},
		{64, 18, 18, {64, 3, 3, 1, 1, 1, 1, {0, 0, 0, 0}, 1}, true},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char what[64];
		graph *g = new_graph();
		int x = add_input(g, 4, (int64_t[]){1, cases[i].c, cases[i].h,
						    cases[i].w});
		int y;
		if (cases[i].add) {
			int64_t oh = cases[i].h + cases[i].s.pads[0] +
				     cases[i].s.pads[2] - 2;
			int64_t ow = cases[i].w + cases[i].s.pads[1] +
				     cases[i].s.pads[3] - 2;
			int r = add_input(g, 4, (int64_t[]){1, cases[i].s.m, oh, ow});
			graph_postop po[2] = {{GRAPH_POSTOP_ADD, 0, 0, 0, r}, relu};
			y = conv_post(g, x, &cases[i].s, po, 2);
		} else {
			y = conv_post(g, x, &cases[i].s, &relu, 1);
		}
		out(g, y);
		snprintf(what, sizeof what, "winograd case %zu", i);
		compare_engines(g, what);
	}
}

/* Convs in a chain: blocked outputs feed blocked inputs of the next conv,
 * across channel counts that need padding inside the blocks. */
static void conv_chain_blocked(void **state)
{
	(void)state;
	graph *g = new_graph();
	int x = add_input(g, 4, (int64_t[]){1, 3, 19, 17});
	int y = conv_k(g, x, 13, 3, 2, 1);
	y = conv_k(g, y, 37, 3, 1, 1);
	y = conv_k(g, y, 37, 3, 1, 37);
	y = conv_k(g, y, 24, 1, 1, 1);
	y = conv_k(g, y, 48, 3, 2, 3);
	out(g, y);
	compare_engines(g, "conv chain");
}

/* Post-op chains set explicitly in finalized form. */
static void conv_postop_chains(void **state)
{
	(void)state;
	static const graph_postop relu = {GRAPH_POSTOP_ACT, GRAPH_ACT_RELU, 0, 0, -1};
	static const graph_postop relu6 = {GRAPH_POSTOP_ACT, GRAPH_ACT_CLIP, 0, 6, -1};
	static const graph_postop leak = {GRAPH_POSTOP_ACT, GRAPH_ACT_LEAKYRELU,
					  0.1f, 0, -1};
	static const graph_postop sig = {GRAPH_POSTOP_ACT, GRAPH_ACT_SIGMOID, 0, 0, -1};
	static const graph_postop clip_lo = {GRAPH_POSTOP_ACT, GRAPH_ACT_CLIP,
					     -0.25f, INFINITY, -1};
	conv_spec s = {37, 3, 3, 2, 2, 1, 1, {1, 0, 1, 1}, 1};
	struct {
		const char *what;
		graph_postop po[GRAPH_MAX_POSTOPS];
		int n;
	} cases[] = {
		{"relu", {relu}, 1},
		{"relu6", {relu6}, 1},
		{"leaky", {leak}, 1},
		{"sigmoid", {sig}, 1},
		{"clip lo only", {clip_lo}, 1},
		{"add+relu", {{GRAPH_POSTOP_ADD, 0, 0, 0, -2}, relu}, 2},
		{"relu+add", {relu, {GRAPH_POSTOP_ADD, 0, 0, 0, -2}}, 2},
		{"add+relu6", {{GRAPH_POSTOP_ADD, 0, 0, 0, -2}, relu6}, 2},
		{"leaky+add+sigmoid",
		 {leak, {GRAPH_POSTOP_ADD, 0, 0, 0, -2}, sig}, 3},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		graph *g = new_graph();
		int x = add_input(g, 4, (int64_t[]){1, 13, 12, 11});
		/* the Add operand: a graph input (plain layout) */
		int r = add_input(g, 4, (int64_t[]){1, 37, 6, 5});
		for (int p = 0; p < cases[i].n; p++)
			if (cases[i].po[p].kind == GRAPH_POSTOP_ADD)
				cases[i].po[p].operand = r;
		out(g, conv_post(g, x, &s, cases[i].po, cases[i].n));
		compare_engines(g, cases[i].what);
	}
}

/* The residual Add operand in every situation the in-place decision sees:
 * blocked and dead afterwards (in place), still needed later (copy), the
 * conv's own input (must not be overwritten while read). */
static void conv_residual_operands(void **state)
{
	(void)state;
	{
		/* ResNet shortcut: y = relu(conv(conv(a)) + a), the second
		 * conv writes into a's buffer */
		graph *g = new_graph();
		int x = add_input(g, 4, (int64_t[]){1, 13, 9, 9});
		int a = conv_k(g, x, 37, 3, 1, 1);
		int b = conv_k(g, conv_k(g, a, 37, 3, 1, 1), 37, 3, 1, 1);
		out(g, op1(g, GRAPH_OP_RELU, op2(g, GRAPH_OP_ADD, b, a)));
		compare_engines(g, "shortcut in place");
	}
	{
		/* a is also read after the Add: must be copied, not reused */
		graph *g = new_graph();
		int x = add_input(g, 4, (int64_t[]){1, 13, 9, 9});
		int a = conv_k(g, x, 37, 3, 1, 1);
		int b = conv_k(g, a, 37, 3, 1, 1);
		int s = op2(g, GRAPH_OP_ADD, b, a);
		int t = conv_k(g, a, 37, 1, 1, 1);
		out(g, op2(g, GRAPH_OP_MUL, s, t));
		compare_engines(g, "shortcut still live");
	}
	{
		/* y = conv(a) + a where a is the conv's own input */
		graph *g = new_graph();
		int x = add_input(g, 4, (int64_t[]){1, 16, 8, 8});
		int a = conv_k(g, x, 16, 3, 1, 1);
		int b = conv_k(g, a, 16, 3, 1, 1);
		out(g, op2(g, GRAPH_OP_ADD, a, b));
		compare_engines(g, "operand is conv input");
	}
	{
		/* operand is a graph output too */
		graph *g = new_graph();
		int x = add_input(g, 4, (int64_t[]){1, 13, 9, 9});
		int a = conv_k(g, x, 37, 3, 1, 1);
		int b = conv_k(g, a, 37, 3, 2, 1);
		int c = conv_k(g, b, 37, 3, 1, 1);
		out(g, b);
		out(g, op2(g, GRAPH_OP_ADD, c, b));
		compare_engines(g, "operand is graph output");
	}
}

static void gemm_and_matmul(void **state)
{
	(void)state;
	static const struct {
		bool ta, tb;
		float alpha, beta;
		bool bias;
	} gc[] = {
		{false, true, 1, 1, true},
		{false, false, 0.5f, 2.0f, true},
		{true, false, 1, 1, true},
		{true, true, 1.5f, 0.25f, true},
		{false, true, 1, 1, false},
	};
	for (size_t i = 0; i < sizeof gc / sizeof gc[0]; i++) {
		char what[64];
		int64_t M = 3, K = 37, N = 13;
		graph *g = new_graph();
		int a = add_input(g, 2, gc[i].ta ? (int64_t[]){K, M}
						  : (int64_t[]){M, K});
		int b = add_const(g, 2, gc[i].tb ? (int64_t[]){N, K}
						 : (int64_t[]){K, N}, 0.3f);
		int c = add_const(g, 1, &N, 1.0f);
		graph_node nd = node_of(GRAPH_OP_GEMM, gc[i].bias ? 3 : 2,
					(int[]){a, b, c});
		nd.attr.gemm.alpha = gc[i].alpha;
		nd.attr.gemm.beta = gc[i].beta;
		nd.attr.gemm.trans_a = gc[i].ta;
		nd.attr.gemm.trans_b = gc[i].tb;
		int y = add_node(g, &nd);
		out(g, op1(g, GRAPH_OP_RELU, y));
		snprintf(what, sizeof what, "gemm case %zu", i);
		compare_engines(g, what);
	}
	{
		/* Gemm with a fused residual add and a computed MatMul */
		graph *g = new_graph();
		int a = add_input(g, 2, (int64_t[]){5, 37});
		int r = add_input(g, 2, (int64_t[]){5, 13});
		int w = add_const(g, 2, (int64_t[]){37, 13}, 0.3f);
		int y = op2(g, GRAPH_OP_MATMUL, a, w);
		out(g, op1(g, GRAPH_OP_RELU, op2(g, GRAPH_OP_ADD, r, y)));
		compare_engines(g, "matmul->gemm + add + relu");
	}
	static const struct {
		int na, nb;
		int64_t ad[4], bd[4];
	} mc[] = {
		{2, 2, {5, 7}, {7, 4}},
		{4, 2, {2, 3, 5, 7}, {7, 4}},
		{4, 4, {1, 3, 5, 7}, {2, 1, 7, 4}},
		{1, 3, {7}, {2, 7, 4}},
		{3, 1, {2, 5, 7}, {7}},
		{3, 3, {3, 1, 13}, {3, 13, 37}},
	};
	for (size_t i = 0; i < sizeof mc / sizeof mc[0]; i++) {
		char what[64];
		graph *g = new_graph();
		int a = add_input(g, mc[i].na, mc[i].ad);
		int b = add_input(g, mc[i].nb, mc[i].bd);
		out(g, op2(g, GRAPH_OP_MATMUL, a, b));
		snprintf(what, sizeof what, "matmul case %zu", i);
		compare_engines(g, what);
	}
}

static void batchnorm_unfolded(void **state)
{
	(void)state;
	{
		graph *g = new_graph();
		int x = add_input(g, 4, (int64_t[]){2, 13, 5, 7});
		out(g, batchnorm(g, x));
		compare_engines(g, "bn plain 4-D");
	}
	{
		graph *g = new_graph();
		int x = add_input(g, 2, (int64_t[]){3, 37});
		out(g, batchnorm(g, x));
		compare_engines(g, "bn 2-D");
	}
	{
		/* BN on a blocked conv output that is also read elsewhere, so
		 * it cannot be folded into the conv */
		graph *g = new_graph();
		int x = add_input(g, 4, (int64_t[]){1, 13, 8, 9});
		int a = conv_k(g, x, 37, 3, 1, 1);
		out(g, a);
		out(g, batchnorm(g, a));
		compare_engines(g, "bn blocked");
	}
}

static void eltwise_ops(void **state)
{
	(void)state;
	for (int k = 0; k < 6; k++) {
		for (int blocked = 0; blocked < 2; blocked++) {
			graph *g = new_graph();
			int x = add_input(g, 4, (int64_t[]){1, 13, 5, 7});
			int y = x;
			if (blocked) {
				/* conv output read twice: the activation stays a
				 * separate op on a blocked layout */
				int a = conv_k(g, x, 37, 3, 1, 1);
				out(g, a);
				y = a;
			}
			switch (k) {
			case 0: y = op1(g, GRAPH_OP_RELU, y); break;
			case 1: y = clip(g, y, 0.0f, 6.0f); break;
			case 2: y = clip(g, y, -INFINITY, 0.25f); break;
			case 3: y = leaky(g, y, 0.1f); break;
			case 4: y = op1(g, GRAPH_OP_SIGMOID, y); break;
			default: y = clip(g, y, 0.5f, -0.5f); break;
			}
			out(g, y);
			char what[64];
			snprintf(what, sizeof what, "eltwise %d blocked %d", k,
				 blocked);
			compare_engines(g, what);
		}
	}
}

static void pools(void **state)
{
	(void)state;
	static const struct {
		graph_op op;
		int64_t k, st, pads[4], dil;
		bool ceil, incl;
		int64_t h, w;
	} pc[] = {
		{GRAPH_OP_MAXPOOL, 3, 2, {1, 1, 1, 1}, 1, false, false, 11, 12},
		{GRAPH_OP_MAXPOOL, 3, 2, {0, 0, 0, 0}, 1, true, false, 13, 10},
		{GRAPH_OP_MAXPOOL, 2, 2, {0, 1, 1, 0}, 1, true, false, 9, 9},
		{GRAPH_OP_MAXPOOL, 3, 1, {2, 2, 2, 2}, 2, false, false, 9, 8},
		{GRAPH_OP_AVGPOOL, 3, 2, {1, 0, 0, 1}, 1, false, false, 11, 12},
		{GRAPH_OP_AVGPOOL, 3, 2, {1, 0, 0, 1}, 1, false, true, 11, 12},
		{GRAPH_OP_AVGPOOL, 3, 2, {1, 1, 1, 1}, 1, true, false, 10, 12},
		{GRAPH_OP_AVGPOOL, 3, 2, {1, 1, 1, 1}, 1, true, true, 10, 12},
		{GRAPH_OP_AVGPOOL, 2, 2, {0, 0, 0, 0}, 1, true, true, 7, 9},
	};
	for (size_t i = 0; i < sizeof pc / sizeof pc[0]; i++) {
		for (int blocked = 0; blocked < 2; blocked++) {
			char what[64];
			graph *g = new_graph();
			int x = add_input(g, 4, (int64_t[]){1, 13, pc[i].h, pc[i].w});
			if (blocked)
				x = conv_k(g, x, 37, 3, 1, 1);
			out(g, pool(g, pc[i].op, x, pc[i].k, pc[i].st, pc[i].pads,
				    pc[i].dil, pc[i].ceil, pc[i].incl));
			snprintf(what, sizeof what, "pool case %zu blocked %d", i,
				 blocked);
			compare_engines(g, what);
		}
	}
	for (int blocked = 0; blocked < 2; blocked++) {
		graph *g = new_graph();
		int x = add_input(g, 4, (int64_t[]){2, 37, 7, 5});
		if (blocked)
			x = conv_k(g, x, 37, 3, 1, 1);
		out(g, op1(g, GRAPH_OP_GLOBALAVGPOOL, x));
		compare_engines(g, blocked ? "gap blocked" : "gap plain");
	}
}

static void binary_broadcast(void **state)
{
	(void)state;
	static const struct {
		graph_op op;
		int na, nb;
		int64_t ad[4], bd[4];
		bool b_const;
	} bc[] = {
		{GRAPH_OP_ADD, 4, 4, {1, 13, 5, 7}, {1, 13, 5, 7}, false},
		{GRAPH_OP_ADD, 4, 4, {1, 13, 5, 7}, {1, 13, 1, 1}, true},
		{GRAPH_OP_MUL, 4, 0, {1, 13, 5, 7}, {0}, true},
		{GRAPH_OP_ADD, 4, 4, {1, 3, 1, 5}, {1, 1, 4, 1}, false},
		{GRAPH_OP_MUL, 1, 4, {5}, {2, 3, 4, 5}, false},
		{GRAPH_OP_MUL, 4, 4, {2, 1, 4, 5}, {2, 3, 4, 5}, false},
		{GRAPH_OP_ADD, 2, 1, {3, 37}, {37}, true},
	};
	for (size_t i = 0; i < sizeof bc / sizeof bc[0]; i++) {
		char what[64];
		graph *g = new_graph();
		int a = add_input(g, bc[i].na, bc[i].ad);
		int b = bc[i].b_const ? add_const(g, bc[i].nb, bc[i].bd, 1.0f)
				      : add_input(g, bc[i].nb, bc[i].bd);
		out(g, op2(g, bc[i].op, a, b));
		snprintf(what, sizeof what, "binary case %zu", i);
		compare_engines(g, what);
	}
	{
		/* x + x, and a blocked conv output plus a plain input (the
		 * plain side is converted to the blocked layout) */
		graph *g = new_graph();
		int x = add_input(g, 4, (int64_t[]){1, 13, 6, 6});
		int r = add_input(g, 4, (int64_t[]){1, 37, 6, 6});
		int a = conv_k(g, x, 37, 3, 1, 1);
		out(g, a);
		int s = op2(g, GRAPH_OP_ADD, r, a);
		out(g, op2(g, GRAPH_OP_MUL, s, s));
		compare_engines(g, "binary blocked + plain, x*x");
	}
}

static void concat_ops(void **state)
{
	(void)state;
	{
		/* SqueezeNet fire: two conv branches (13 and 37 channels,
		 * blocked) and a plain input, concatenated on channels */
		graph *g = new_graph();
		int x = add_input(g, 4, (int64_t[]){1, 13, 7, 9});
		int p = add_input(g, 4, (int64_t[]){1, 5, 7, 9});
		int a = conv_k(g, x, 13, 1, 1, 1);
		int b = conv_k(g, x, 37, 3, 1, 1);
		graph_node nd = node_of(GRAPH_OP_CONCAT, 3, (int[]){a, p, b});
		nd.attr.axis.axis = 1;
		int c = add_node(g, &nd);
		out(g, conv_k(g, c, 16, 1, 1, 1));
		out(g, c);
		compare_engines(g, "concat channels");
	}
	{
		graph *g = new_graph();
		int a = add_input(g, 3, (int64_t[]){2, 3, 5});
		int b = add_input(g, 3, (int64_t[]){2, 4, 5});
		graph_node nd = node_of(GRAPH_OP_CONCAT, 2, (int[]){a, b});
		nd.attr.axis.axis = -2;
		out(g, add_node(g, &nd));
		compare_engines(g, "concat axis -2");
	}
}

static void softmax_ops(void **state)
{
	(void)state;
	static const struct {
		int nd;
		int64_t dims[4];
		int64_t axis;
		int64_t opset;
	} sc[] = {
		{2, {2, 13}, 1, 13},
		{3, {2, 3, 4}, 1, 13},
		{3, {2, 3, 4}, 1, 11},
		{4, {2, 3, 4, 5}, 0, 11},
		{4, {1, 37, 2, 3}, -1, 13},
	};
	for (size_t i = 0; i < sizeof sc / sizeof sc[0]; i++) {
		char what[64];
		graph *g = new_graph();
		g->opset = sc[i].opset;
		int x = add_input(g, sc[i].nd, sc[i].dims);
		graph_node nd = node_of(GRAPH_OP_SOFTMAX, 1, (int[]){x});
		nd.attr.axis.axis = sc[i].axis;
		nd.attr.axis.legacy = sc[i].opset < 13;
		out(g, add_node(g, &nd));
		snprintf(what, sizeof what, "softmax case %zu", i);
		compare_engines(g, what);
	}
}

static void reshape_flatten(void **state)
{
	(void)state;
	{
		/* blocked conv output -> flatten -> gemm -> softmax */
		graph *g = new_graph();
		int x = add_input(g, 4, (int64_t[]){1, 3, 8, 8});
		int a = conv_k(g, x, 13, 3, 2, 1);
		graph_node fl = node_of(GRAPH_OP_FLATTEN, 1, (int[]){a});
		fl.attr.axis.axis = 1;
		int f = add_node(g, &fl);
		int64_t K = g->values[f].dims[1], N = 10;
		int w = add_const(g, 2, (int64_t[]){N, K}, 0.1f);
		int b = add_const(g, 1, &N, 0.1f);
		graph_node gm = node_of(GRAPH_OP_GEMM, 3, (int[]){f, w, b});
		gm.attr.gemm.trans_b = true;
		int y = add_node(g, &gm);
		graph_node sm = node_of(GRAPH_OP_SOFTMAX, 1, (int[]){y});
		sm.attr.axis.axis = 1;
		out(g, add_node(g, &sm));
		compare_engines(g, "conv flatten gemm softmax");
	}
	{
		/* ONNX Reshape with a shape constant (0 and -1), then a conv
		 * on the reshaped (plain) data, and the reshape itself as an
		 * output */
		graph *g = new_graph();
		int x = add_input(g, 3, (int64_t[]){1, 13, 42});
		tensor *t = NULL;
		int64_t n4 = 4;
		assert_int_equal(tensor_create(TENSOR_I64, 1, &n4, &t), DF_OK);
		int64_t *sh = tensor_i64(t);
		sh[0] = 0, sh[1] = 13, sh[2] = 6, sh[3] = -1;
		int s = -1;
		assert_int_equal(graph_add_value(g, "shape", 1, &n4, t, &s), DF_OK);
		int r = op2(g, GRAPH_OP_RESHAPE, x, s);
		out(g, r);
		out(g, conv_k(g, r, 37, 3, 1, 1));
		compare_engines(g, "reshape");
	}
}

/* ResNet basic blocks (identity and downsampling shortcut) in ONNX form:
 * finalize folds the BNs and fuses Add+Relu into the second conv. */
static void resnet_block(void **state)
{
	(void)state;
	graph *g = new_graph();
	int x = add_input(g, 4, (int64_t[]){1, 3, 32, 30});
	conv_spec stem = {24, 7, 7, 2, 2, 1, 1, {3, 3, 3, 3}, 1};
	int y = op1(g, GRAPH_OP_RELU, batchnorm(g, conv(g, x, &stem)));
	y = pool(g, GRAPH_OP_MAXPOOL, y, 3, 2, (int64_t[]){1, 1, 1, 1}, 1,
		 false, false);
	/* identity block */
	int a = op1(g, GRAPH_OP_RELU, batchnorm(g, conv_k(g, y, 24, 3, 1, 1)));
	int b = batchnorm(g, conv_k(g, a, 24, 3, 1, 1));
	y = op1(g, GRAPH_OP_RELU, op2(g, GRAPH_OP_ADD, b, y));
	/* downsampling block: 1x1 stride-2 projection on the shortcut */
	a = op1(g, GRAPH_OP_RELU, batchnorm(g, conv_k(g, y, 40, 3, 2, 1)));
	b = batchnorm(g, conv_k(g, a, 40, 3, 1, 1));
	int sc = batchnorm(g, conv_k(g, y, 40, 1, 2, 1));
	y = op1(g, GRAPH_OP_RELU, op2(g, GRAPH_OP_ADD, sc, b));
	y = op1(g, GRAPH_OP_GLOBALAVGPOOL, y);
	graph_node fl = node_of(GRAPH_OP_FLATTEN, 1, (int[]){y});
	fl.attr.axis.axis = 1;
	y = add_node(g, &fl);
	int64_t N = 10;
	int w = add_const(g, 2, (int64_t[]){N, 40}, 0.2f);
	int bias = add_const(g, 1, &N, 0.1f);
	graph_node gm = node_of(GRAPH_OP_GEMM, 3, (int[]){y, w, bias});
	gm.attr.gemm.trans_b = true;
	out(g, add_node(g, &gm));
	compare_engines(g, "resnet block");
}

/* MobileNetV2 inverted residuals in ONNX form: 1x1 expand + BN + ReLU6,
 * 3x3 depthwise + BN + ReLU6, 1x1 project + BN (+ residual Add). */
static int inverted_residual(graph *g, int x, int64_t out_c, int64_t stride,
			     int64_t expand)
{
	int64_t c = g->values[x].dims[1], hid = c * expand;
	int y = clip(g, batchnorm(g, conv_k(g, x, hid, 1, 1, 1)), 0.0f, 6.0f);
	y = clip(g, batchnorm(g, conv_k(g, y, hid, 3, stride, hid)), 0.0f, 6.0f);
	y = batchnorm(g, conv_k(g, y, out_c, 1, 1, 1));
	if (stride == 1 && out_c == c)
		y = op2(g, GRAPH_OP_ADD, x, y);
	return y;
}

static void mobilenetv2_block(void **state)
{
	(void)state;
	graph *g = new_graph();
	int x = add_input(g, 4, (int64_t[]){1, 3, 29, 31});
	int y = clip(g, batchnorm(g, conv_k(g, x, 16, 3, 2, 1)), 0.0f, 6.0f);
	y = inverted_residual(g, y, 24, 2, 6);
	y = inverted_residual(g, y, 24, 1, 6);
	y = inverted_residual(g, y, 24, 1, 6);
	y = inverted_residual(g, y, 40, 2, 6);
	y = clip(g, batchnorm(g, conv_k(g, y, 64, 1, 1, 1)), 0.0f, 6.0f);
	y = op1(g, GRAPH_OP_GLOBALAVGPOOL, y);
	graph_node fl = node_of(GRAPH_OP_FLATTEN, 1, (int[]){y});
	fl.attr.axis.axis = 1;
	y = add_node(g, &fl);
	int64_t N = 10;
	int w = add_const(g, 2, (int64_t[]){N, 64}, 0.2f);
	int bias = add_const(g, 1, &N, 0.1f);
	graph_node gm = node_of(GRAPH_OP_GEMM, 3, (int[]){y, w, bias});
	gm.attr.gemm.trans_b = true;
	out(g, add_node(g, &gm));
	compare_engines(g, "mobilenetv2 block");
}

/* The engine uses the requested thread count and leaves the caller's
 * OpenMP setting as it was; results agree across thread counts. */
static void threads_restored(void **state)
{
	(void)state;
	graph *g = new_graph();
	int x = add_input(g, 4, (int64_t[]){1, 16, 20, 20});
	out(g, conv_k(g, conv_k(g, x, 32, 3, 1, 1), 32, 3, 2, 1));
	assert_int_equal(graph_finalize(g), DF_OK);
	omp_set_num_threads(2);
	engine *e1 = NULL, *e2 = NULL;
	assert_int_equal(engine_create(g, ENGINE_DNNL, 1, &e1), DF_OK);
	assert_int_equal(omp_get_max_threads(), 2);
	assert_int_equal(engine_create(g, ENGINE_DNNL, 0, &e2), DF_OK);
	tensor *in = NULL, *y1 = NULL, *y2 = NULL;
	const graph_value *iv = &g->values[g->inputs[0]];
	assert_int_equal(tensor_create(TENSOR_F32, iv->ndim, iv->dims, &in), DF_OK);
	random_fill(in);
	assert_int_equal(engine_run(e1, (const tensor *const *)&in, &y1), DF_OK);
	assert_int_equal(omp_get_max_threads(), 2);
	assert_int_equal(engine_run(e2, (const tensor *const *)&in, &y2), DF_OK);
	double ma, mr;
	assert_int_equal(tensor_max_error(y1, y2, 1e-3f, &ma, &mr), DF_OK);
	assert_true(mr <= TOL);
	tensor_destroy(in);
	tensor_destroy(y1);
	tensor_destroy(y2);
	engine_destroy(e1);
	engine_destroy(e2);
	graph_destroy(g);
}

/* A graph that breaks the engine's assumptions after finalize (as a buggy
 * planner could hand it) fails at create with an error naming the node,
 * leaves the out-parameter alone and frees what it built (ASan checks). */
static void create_rejects_broken_nodes(void **state)
{
	(void)state;
	for (int which = 0; which < 3; which++) {
		graph *g = new_graph();
		int x = add_input(g, 4, (int64_t[]){1, 13, 9, 9});
		int a = conv_k(g, x, 37, 3, 1, 1);
		int b = pool(g, GRAPH_OP_MAXPOOL, a, 3, 2,
			     (int64_t[]){1, 1, 1, 1}, 1, false, false);
		out(g, conv_k(g, b, 16, 3, 1, 1));
		assert_int_equal(graph_finalize(g), DF_OK);
		assert_int_equal(g->n_nodes, 3);
		graph_node *bad = &g->nodes[which];
		if (which == 0)
			bad->attr.conv.group = 5;
		else if (which == 1)
			bad->attr.pool.strides[0] = 0;
		else
			bad->attr.conv.strides[1] = 3;
		engine *e = (engine *)&which;
		df_err err = engine_create(g, ENGINE_DNNL, 2, &e);
		if (err != DF_EINVAL)
			fail_msg("broken node %d: got %s (%s)", which,
				 df_err_str(err), df_err_msg());
		assert_ptr_equal(e, (engine *)&which);
		if (!strstr(df_err_msg(), bad->name))
			fail_msg("error does not name node %s: %s", bad->name,
				 df_err_msg());
		graph_destroy(g);
	}
}

/* Runs e on in and returns its only output. */
static tensor *run1(engine *e, tensor *in)
{
	tensor *y = NULL;
	if (engine_run(e, (const tensor *const *)&in, &y))
		fail_msg("run: %s", df_err_msg());
	return y;
}

/* engine_create_release(): with dnnl, every constant's data is freed from
 * the graph (a constant read by two nodes only after the second), the
 * engine's outputs are bit-identical to a borrowing engine's before and
 * after the freed memory is reused, and the graph is refused for another
 * engine or a clone; with ref, the graph keeps its constants. */
static void release_constants(void **state)
{
	(void)state;
	graph *g = new_graph();
	int x = add_input(g, 4, (int64_t[]){1, 13, 12, 11});
	int y = op1(g, GRAPH_OP_RELU, batchnorm(g, conv_k(g, x, 37, 3, 1, 1)));
	y = conv_k(g, y, 37, 3, 2, 37);                 /* depthwise */
	int c = add_const(g, 4, (int64_t[]){1, 37, 1, 1}, 1.0f);
	y = op2(g, GRAPH_OP_MUL, y, c);                 /* c: first reader */
	y = batchnorm(g, y);                            /* unfolded */
	y = op2(g, GRAPH_OP_ADD, op1(g, GRAPH_OP_SIGMOID, y), c); /* last */
	y = op1(g, GRAPH_OP_GLOBALAVGPOOL, conv_k(g, y, 24, 1, 1, 1));
	graph_node fl = node_of(GRAPH_OP_FLATTEN, 1, (int[]){y});
	fl.attr.axis.axis = 1;
	y = add_node(g, &fl);
	int64_t N = 10;
	int w = add_const(g, 2, (int64_t[]){N, 24}, 0.2f);
	int bias = add_const(g, 1, &N, 0.1f);
	graph_node gm = node_of(GRAPH_OP_GEMM, 3, (int[]){y, w, bias});
	gm.attr.gemm.trans_b = true;
	out(g, add_node(g, &gm));
	assert_int_equal(graph_finalize(g), DF_OK);
	graph *gr = NULL, *gref = NULL;
	assert_int_equal(graph_clone(g, &gr), DF_OK);
	assert_int_equal(graph_clone(g, &gref), DF_OK);

	engine *keep = NULL, *rel = NULL, *ref = NULL, *e = NULL;
	assert_int_equal(engine_create(g, ENGINE_DNNL, 2, &keep), DF_OK);
	assert_int_equal(engine_create_release(gr, ENGINE_DNNL, 2, &rel), DF_OK);
	assert_true(gr->constants_released);
	int n_const = 0;
	for (int v = 0; v < gr->n_values; v++) {
		const tensor *t = gr->values[v].constant;
		if (!t)
			continue;
		n_const++;
		if (t->data)
			fail_msg("constant '%s' still has data",
				 gr->values[v].name);
		assert_int_equal(t->numel, g->values[v].constant->numel);
	}
	assert_true(n_const >= 8);
	assert_int_equal(graph_total_params(gr), graph_total_params(g));

	/* Refill the freed bytes with NaNs: an engine still reading the
	 * graph's constants would now compute garbage. */
	void **junk = calloc((size_t)gr->n_values, sizeof *junk);
	assert_non_null(junk);
	for (int v = 0; v < gr->n_values; v++) {
		if (!gr->values[v].constant)
			continue;
		size_t nb = tensor_nbytes(g->values[v].constant);
		junk[v] = malloc(nb ? nb : 1);
		assert_non_null(junk[v]);
		memset(junk[v], 0xff, nb);
	}
	tensor *in = NULL;
	const graph_value *iv = &g->values[g->inputs[0]];
	assert_int_equal(tensor_create(TENSOR_F32, iv->ndim, iv->dims, &in), DF_OK);
	random_fill(in);
	tensor *yk = run1(keep, in), *yr = run1(rel, in), *yr2 = run1(rel, in);
	assert_int_equal(tensor_nbytes(yk), tensor_nbytes(yr));
	if (memcmp(yk->data, yr->data, tensor_nbytes(yk)) ||
	    memcmp(yk->data, yr2->data, tensor_nbytes(yk)))
		fail_msg("%s", "release engine's output differs");

	/* a released graph is metadata only */
	graph *cl = NULL;
	assert_int_equal(engine_create(gr, ENGINE_DNNL, 1, &e), DF_EINVAL);
	assert_int_equal(engine_create(gr, ENGINE_REF, 1, &e), DF_EINVAL);
	assert_null(e);
	assert_int_equal(graph_clone(gr, &cl), DF_EINVAL);
	assert_null(cl);

	/* the reference engine needs its constants and keeps them */
	assert_int_equal(engine_create_release(gref, ENGINE_REF, 1, &ref), DF_OK);
	assert_false(gref->constants_released);
	for (int v = 0; v < gref->n_values; v++)
		if (gref->values[v].constant)
			assert_non_null(gref->values[v].constant->data);
	tensor *yf = run1(ref, in);
	double ma, mr;
	assert_int_equal(tensor_max_error(yr, yf, 1e-3f, &ma, &mr), DF_OK);
	assert_true(mr <= TOL);

	for (int v = 0; v < gr->n_values; v++)
		free(junk[v]);
	free(junk);
	tensor_destroy(in);
	tensor_destroy(yk);
	tensor_destroy(yr);
	tensor_destroy(yr2);
	tensor_destroy(yf);
	engine_destroy(keep);
	engine_destroy(rel);
	engine_destroy(ref);
	graph_destroy(g);
	graph_destroy(gr);
	graph_destroy(gref);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(conv_odd_shapes),
		cmocka_unit_test(conv_winograd_shapes),
		cmocka_unit_test(conv_chain_blocked),
		cmocka_unit_test(conv_postop_chains),
		cmocka_unit_test(conv_residual_operands),
		cmocka_unit_test(gemm_and_matmul),
		cmocka_unit_test(batchnorm_unfolded),
		cmocka_unit_test(eltwise_ops),
		cmocka_unit_test(pools),
		cmocka_unit_test(binary_broadcast),
		cmocka_unit_test(concat_ops),
		cmocka_unit_test(softmax_ops),
		cmocka_unit_test(reshape_flatten),
		cmocka_unit_test(resnet_block),
		cmocka_unit_test(mobilenetv2_block),
		cmocka_unit_test(threads_restored),
		cmocka_unit_test(create_rejects_broken_nodes),
		cmocka_unit_test(release_constants),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
