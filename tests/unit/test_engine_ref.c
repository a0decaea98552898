/*
 * Unit tests for engine.c and engine_ref.c. Every op is checked against
 * values computed by hand (written out below, or as the closed form the
 * case was built around), on small graphs built through graph.h's API and
 * finalized like an imported model. Cases pick inputs that tell apart the
 * usual mistakes: flipped kernels, pad order, pooling divisors at borders,
 * ceil_mode windows, softmax axis handling, broadcast strides, post-op order.
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

#include "engine.h"
#include "graph.h"
#include "tensor.h"

/* D(1,2,3) expands to "3, (const int64_t[]){1,2,3}": a rank and its dims. */
#define D(...)                                                            \
	(int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)),        \
		(const int64_t[]){__VA_ARGS__}

static tensor *mk(int ndim, const int64_t *dims, const float *data)
{
	tensor *t = NULL;
	assert_int_equal(tensor_create(TENSOR_F32, ndim, dims, &t), DF_OK);
	if (data)
		memcpy(t->data, data, t->numel * sizeof(float));
	return t;
}

/* Tensor holding 0, 1, 2, ... scaled by step and shifted by base. */
static tensor *ramp(int ndim, const int64_t *dims, float base, float step)
{
	tensor *t = mk(ndim, dims, NULL);
	for (size_t i = 0; i < t->numel; i++)
		tensor_f32(t)[i] = base + step * (float)i;
	return t;
}

static int add_input(graph *g, const char *name, int ndim,
		     const int64_t *dims)
{
	int v = -1;
	assert_int_equal(graph_add_value(g, name, ndim, dims, NULL, &v), DF_OK);
	assert_int_equal(graph_add_input(g, v), DF_OK);
	return v;
}

static int add_const(graph *g, const char *name, int ndim,
		     const int64_t *dims, const float *data)
{
	int v = -1;
	tensor *t = mk(ndim, dims, data);
	assert_int_equal(graph_add_value(g, name, ndim, dims, t, &v), DF_OK);
	return v;
}

/* Adds node n with a fresh output value called `name` (shape left to
 * finalize) and returns the output's index. */
static int add_node(graph *g, graph_node n, const char *name)
{
	int v = -1;
	assert_int_equal(graph_add_value(g, name, 0, NULL, NULL, &v), DF_OK);
	n.output = v;
	assert_int_equal(graph_add_node(g, &n, name, NULL), DF_OK);
	return v;
}

static graph *new_graph(void)
{
	graph *g = NULL;
	assert_int_equal(graph_create(&g), DF_OK);
	return g;
}

/* Finalizes g (output: value v), runs it on the reference engine and
 * returns the single output. Frees g and the inputs. */
static tensor *run_ref(graph *g, int v, int n_in, tensor **ins)
{
	assert_int_equal(graph_add_output(g, v), DF_OK);
	df_err err = graph_finalize(g);
	if (err)
		fail_msg("graph_finalize: %s", df_err_msg());
	engine *e = NULL;
	err = engine_create(g, ENGINE_REF, 1, &e);
	if (err)
		fail_msg("engine_create: %s", df_err_msg());
	assert_int_equal(g->n_inputs, n_in);
	tensor *out = NULL;
	err = engine_run(e, (const tensor *const *)ins, &out);
	if (err)
		fail_msg("engine_run: %s", df_err_msg());
	engine_destroy(e);
	graph_destroy(g);
	for (int i = 0; i < n_in; i++)
		tensor_destroy(ins[i]);
	return out;
}

static void expect_shape(const tensor *t, int ndim, const int64_t *dims)
{
	char got[128], want[128];
	tensor_shape_str(t->ndim, t->dims, got, sizeof got);
	tensor_shape_str(ndim, dims, want, sizeof want);
	if (strcmp(got, want) != 0)
		fail_msg("shape %s, expected %s", got, want);
}

static void expect_values(const tensor *t, const float *want, size_t n,
			  double tol)
{
	assert_int_equal(t->numel, n);
	for (size_t i = 0; i < n; i++) {
		double got = tensor_f32(t)[i];
		if (!(fabs(got - want[i]) <= tol * (1.0 + fabs(want[i]))))
			fail_msg("element %zu: got %.7g, expected %.7g", i, got,
				 (double)want[i]);
	}
}

#define EXPECT(t, tol, ...)                                                 \
	expect_values((t), (const float[]){__VA_ARGS__},                     \
		      sizeof((float[]){__VA_ARGS__}) / sizeof(float), (tol))

/* ------------------------------------------------------------------ conv */

/* The ONNX backend test conv_with_strides_padding: x = 0..24 on 5x5, 3x3
 * ones, pads 1, strides 2. */
static void conv_3x3_pad1_stride2_ones(void **state)
{
	(void)state;
	graph *g = new_graph();
	float ones[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
	int x = add_input(g, "x", D(1, 1, 5, 5));
	int w = add_const(g, "w", D(1, 1, 3, 3), ones);
	graph_node n = {.op = GRAPH_OP_CONV, .n_inputs = 2, .inputs = {x, w}};
	n.attr.conv = (graph_conv_attr){.kernel = {3, 3}, .strides = {2, 2},
					.dilations = {1, 1},
					.pads = {1, 1, 1, 1}, .group = 1};
	int y = add_node(g, n, "y");
	tensor *in[] = {ramp(D(1, 1, 5, 5), 0, 1)};
	tensor *out = run_ref(g, y, 1, in);
	expect_shape(out, D(1, 1, 3, 3));
	EXPECT(out, 0, 12, 27, 24, 63, 108, 81, 72, 117, 84);
	tensor_destroy(out);
}

/* An asymmetric kernel (w[0][0] = 1, w[2][1] = 10) and a bias catch
 * flipped or transposed kernels: y = x[2oh-1][2ow-1] + 10 x[2oh+1][2ow]
 * + 0.5 with x[i][j] = 5i + j. */
static void conv_asymmetric_kernel_with_bias(void **state)
{
	(void)state;
	graph *g = new_graph();
	float k[9] = {1, 0, 0, 0, 0, 0, 0, 10, 0};
	float b[1] = {0.5f};
	int x = add_input(g, "x", D(1, 1, 5, 5));
	int w = add_const(g, "w", D(1, 1, 3, 3), k);
	int bias = add_const(g, "b", D(1), b);
	graph_node n = {.op = GRAPH_OP_CONV, .n_inputs = 3,
			.inputs = {x, w, bias}};
	n.attr.conv = (graph_conv_attr){.kernel = {3, 3}, .strides = {2, 2},
					.dilations = {1, 1},
					.pads = {1, 1, 1, 1}, .group = 1};
	int y = add_node(g, n, "y");
	tensor *in[] = {ramp(D(1, 1, 5, 5), 0, 1)};
	tensor *out = run_ref(g, y, 1, in);
	EXPECT(out, 0, 50.5f, 70.5f, 90.5f, 150.5f, 176.5f, 198.5f, 0.5f,
	       16.5f, 18.5f);
	tensor_destroy(out);
}

/* Pads are top, left, bottom, right: a 1x1 identity conv with pads
 * {1, 0, 0, 2} shows the padded input. */
static void conv_asymmetric_pads(void **state)
{
	(void)state;
	graph *g = new_graph();
	float one[1] = {1};
	int x = add_input(g, "x", D(1, 1, 3, 3));
	int w = add_const(g, "w", D(1, 1, 1, 1), one);
	graph_node n = {.op = GRAPH_OP_CONV, .n_inputs = 2, .inputs = {x, w}};
	n.attr.conv = (graph_conv_attr){.kernel = {1, 1}, .strides = {1, 1},
					.dilations = {1, 1},
					.pads = {1, 0, 0, 2}, .group = 1};
	int y = add_node(g, n, "y");
	tensor *in[] = {ramp(D(1, 1, 3, 3), 1, 1)};
	tensor *out = run_ref(g, y, 1, in);
	expect_shape(out, D(1, 1, 4, 5));
	EXPECT(out, 0,
	       0, 0, 0, 0, 0,
	       1, 2, 3, 0, 0,
	       4, 5, 6, 0, 0,
	       7, 8, 9, 0, 0);
	tensor_destroy(out);
}

/* Depthwise (group = C = 2): channel 0 = 1..9 with kernel [[1,0],[0,2]],
 * channel 1 = 10..18 with ones and bias 1. Mixing channels would show. */
static void conv_depthwise(void **state)
{
	(void)state;
	graph *g = new_graph();
	float k[8] = {1, 0, 0, 2, 1, 1, 1, 1};
	float b[2] = {0, 1};
	int x = add_input(g, "x", D(1, 2, 3, 3));
	int w = add_const(g, "w", D(2, 1, 2, 2), k);
	int bias = add_const(g, "b", D(2), b);
	graph_node n = {.op = GRAPH_OP_CONV, .n_inputs = 3,
			.inputs = {x, w, bias}};
	n.attr.conv = (graph_conv_attr){.kernel = {2, 2}, .strides = {1, 1},
					.dilations = {1, 1}, .group = 2};
	int y = add_node(g, n, "y");
	tensor *in[] = {mk(D(1, 2, 3, 3), (const float[]){
		1, 2, 3, 4, 5, 6, 7, 8, 9,
		10, 11, 12, 13, 14, 15, 16, 17, 18})};
	tensor *out = run_ref(g, y, 1, in);
	expect_shape(out, D(1, 2, 2, 2));
	EXPECT(out, 0, 11, 14, 20, 23, 49, 53, 61, 65);
	tensor_destroy(out);
}

/* group = 2 with 2 channels per group and 2 outputs per group: output m
 * reads only its group's channels. x channel c is constant c+1. */
static void conv_grouped(void **state)
{
	(void)state;
	graph *g = new_graph();
	/* W [4, 2, 1, 1]: out0 = c0 + 10 c1, out1 = c1, out2 = c2 + 10 c3,
	 * out3 = 100 c2. */
	float k[8] = {1, 10, 0, 1, 1, 10, 100, 0};
	int x = add_input(g, "x", D(1, 4, 1, 2));
	int w = add_const(g, "w", D(4, 2, 1, 1), k);
	graph_node n = {.op = GRAPH_OP_CONV, .n_inputs = 2, .inputs = {x, w}};
	n.attr.conv = (graph_conv_attr){.kernel = {1, 1}, .strides = {1, 1},
					.dilations = {1, 1}, .group = 2};
	int y = add_node(g, n, "y");
	tensor *in[] = {mk(D(1, 4, 1, 2), (const float[]){1, 1, 2, 2, 3, 3, 4, 4})};
	tensor *out = run_ref(g, y, 1, in);
	EXPECT(out, 0, 21, 21, 2, 2, 43, 43, 300, 300);
	tensor_destroy(out);
}

/* Dilation 2, 2x2 ones on x[i][j] = 5i + j: y = 4 (5i + j) + 24. */
static void conv_dilation(void **state)
{
	(void)state;
	graph *g = new_graph();
	float ones[4] = {1, 1, 1, 1};
	int x = add_input(g, "x", D(1, 1, 5, 5));
	int w = add_const(g, "w", D(1, 1, 2, 2), ones);
	graph_node n = {.op = GRAPH_OP_CONV, .n_inputs = 2, .inputs = {x, w}};
	n.attr.conv = (graph_conv_attr){.kernel = {2, 2}, .strides = {1, 1},
					.dilations = {2, 2}, .group = 1};
	int y = add_node(g, n, "y");
	tensor *in[] = {ramp(D(1, 1, 5, 5), 0, 1)};
	tensor *out = run_ref(g, y, 1, in);
	expect_shape(out, D(1, 1, 3, 3));
	EXPECT(out, 0, 24, 28, 32, 44, 48, 52, 64, 68, 72);
	tensor_destroy(out);
}

/* --------------------------------------------------------------- pooling */

static graph_pool_attr pool_attr(int64_t k, int64_t s, int64_t pad,
				 bool ceil_mode, bool include_pad)
{
	return (graph_pool_attr){.kernel = {k, k}, .strides = {s, s},
				 .pads = {pad, pad, pad, pad},
				 .dilations = {1, 1}, .ceil_mode = ceil_mode,
				 .count_include_pad = include_pad};
}

static tensor *pool(graph_op op, graph_pool_attr a, tensor *x)
{
	graph *g = new_graph();
	int xv = add_input(g, "x", x->ndim, x->dims);
	graph_node n = {.op = op, .n_inputs = 1, .inputs = {xv}};
	n.attr.pool = a;
	int y = add_node(g, n, "y");
	tensor *in[] = {x};
	return run_ref(g, y, 1, in);
}

/* 3x3 window, stride 2, pads 1 on 1..9: the divisor is 9 with
 * count_include_pad and the number of real elements (4) without. */
static void avgpool_count_include_pad(void **state)
{
	(void)state;
	tensor *out = pool(GRAPH_OP_AVGPOOL, pool_attr(3, 2, 1, false, true),
			   ramp(D(1, 1, 3, 3), 1, 1));
	expect_shape(out, D(1, 1, 2, 2));
	EXPECT(out, 1e-6, 12.0f / 9, 16.0f / 9, 24.0f / 9, 28.0f / 9);
	tensor_destroy(out);
	out = pool(GRAPH_OP_AVGPOOL, pool_attr(3, 2, 1, false, false),
		   ramp(D(1, 1, 3, 3), 1, 1));
	EXPECT(out, 1e-6, 3, 4, 6, 7);
	tensor_destroy(out);
}

/* ceil_mode on 4x4 (1..16), 3x3 window, stride 2, pads 1: three windows
 * per dim start at -1, 1, 3. The last reaches 5, past input + pad (4+1):
 * with count_include_pad its divisor counts only the taps inside the
 * padded extent (2 per dim), without it only the real elements. */
static void avgpool_ceil_mode_clips_windows(void **state)
{
	(void)state;
	tensor *out = pool(GRAPH_OP_AVGPOOL, pool_attr(3, 2, 1, true, true),
			   ramp(D(1, 1, 4, 4), 1, 1));
	expect_shape(out, D(1, 1, 3, 3));
	/* (0,0): 1+2+5+6 over 9; (0,2): 4+8 over 3x2; (2,2): 16 over 2x2;
	 * (1,1): 6+7+8+10+11+12+14+15+16 over 9; (2,0): 13+14 over 2x3. */
	float *y = tensor_f32(out);
	assert_float_equal(y[0], 14.0f / 9, 1e-6);
	assert_float_equal(y[2], 12.0f / 6, 1e-6);
	assert_float_equal(y[4], 99.0f / 9, 1e-6);
	assert_float_equal(y[6], 27.0f / 6, 1e-6);
	assert_float_equal(y[8], 16.0f / 4, 1e-6);
	tensor_destroy(out);
	out = pool(GRAPH_OP_AVGPOOL, pool_attr(3, 2, 1, true, false),
		   ramp(D(1, 1, 4, 4), 1, 1));
	y = tensor_f32(out);
	assert_float_equal(y[0], 14.0f / 4, 1e-6);
	assert_float_equal(y[2], 12.0f / 2, 1e-6);
	assert_float_equal(y[4], 99.0f / 9, 1e-6);
	assert_float_equal(y[6], 27.0f / 2, 1e-6);
	assert_float_equal(y[8], 16.0f, 1e-6);
	tensor_destroy(out);
}

/* 2x2 stride 2 on 5x5 (x = 5i + j): floor mode gives 2x2, ceil_mode 3x3
 * with partial windows on the right and bottom. A window that would start
 * in the end padding is dropped. */
static void maxpool_ceil_mode(void **state)
{
	(void)state;
	tensor *out = pool(GRAPH_OP_MAXPOOL, pool_attr(2, 2, 0, false, false),
			   ramp(D(1, 1, 5, 5), 0, 1));
	expect_shape(out, D(1, 1, 2, 2));
	EXPECT(out, 0, 6, 8, 16, 18);
	tensor_destroy(out);
	out = pool(GRAPH_OP_MAXPOOL, pool_attr(2, 2, 0, true, false),
		   ramp(D(1, 1, 5, 5), 0, 1));
	expect_shape(out, D(1, 1, 3, 3));
	EXPECT(out, 0, 6, 8, 9, 16, 18, 19, 21, 23, 24);
	tensor_destroy(out);
	/* 3x3 with pads 1: ceil gives 3 windows per dim, but the third would
	 * start at 3, inside the end padding, and is dropped. */
	out = pool(GRAPH_OP_MAXPOOL, pool_attr(2, 2, 1, true, false),
		   ramp(D(1, 1, 3, 3), 1, 1));
	expect_shape(out, D(1, 1, 2, 2));
	EXPECT(out, 0, 1, 3, 7, 9);
	tensor_destroy(out);
}

/* Padding is never the maximum: all-negative input, pads 1. */
static void maxpool_never_selects_padding(void **state)
{
	(void)state;
	tensor *out = pool(GRAPH_OP_MAXPOOL, pool_attr(2, 1, 1, false, false),
			   mk(D(1, 1, 2, 2), (const float[]){-1, -2, -3, -4}));
	expect_shape(out, D(1, 1, 3, 3));
	EXPECT(out, 0, -1, -1, -2, -1, -1, -2, -3, -3, -4);
	tensor_destroy(out);
}

/* Dilation 2: window (i,j) reads x[i][j], x[i][j+2], x[i+2][j],
 * x[i+2][j+2]. */
static void maxpool_dilation(void **state)
{
	(void)state;
	graph_pool_attr a = pool_attr(2, 1, 0, false, false);
	a.dilations[0] = a.dilations[1] = 2;
	tensor *out = pool(GRAPH_OP_MAXPOOL, a, mk(D(1, 1, 4, 4), (const float[]){
		100, 0, 0, 0,
		0, 0, 0, -5,
		0, 0, 1, 2,
		0, 0, 3, 0}));
	expect_shape(out, D(1, 1, 2, 2));
	EXPECT(out, 0, 100, 2, 3, 0);
	tensor_destroy(out);
}

static void global_avgpool(void **state)
{
	(void)state;
	graph *g = new_graph();
	int x = add_input(g, "x", D(1, 2, 2, 3));
	graph_node n = {.op = GRAPH_OP_GLOBALAVGPOOL, .n_inputs = 1,
			.inputs = {x}};
	int y = add_node(g, n, "y");
	tensor *in[] = {ramp(D(1, 2, 2, 3), 0, 1)};
	tensor *out = run_ref(g, y, 1, in);
	expect_shape(out, D(1, 2, 1, 1));
	EXPECT(out, 1e-6, 2.5f, 8.5f);
	tensor_destroy(out);
}

/* ------------------------------------------------------- gemm and matmul */

/* A is [K=2, M=3] with trans_a; B [K, N] = [[1,1],[0,-1]] (ONNX form,
 * canonicalized to W [N,K] by finalize); C = [10, 20]. */
static void gemm_trans_a(void **state)
{
	(void)state;
	graph *g = new_graph();
	int a = add_input(g, "a", D(2, 3));
	int b = add_const(g, "b", D(2, 2), (const float[]){1, 1, 0, -1});
	int c = add_const(g, "c", D(2), (const float[]){10, 20});
	graph_node n = {.op = GRAPH_OP_GEMM, .n_inputs = 3, .inputs = {a, b, c}};
	n.attr.gemm = (graph_gemm_attr){.alpha = 1, .beta = 1, .trans_a = true};
	int y = add_node(g, n, "y");
	tensor *in[] = {mk(D(2, 3), (const float[]){1, 2, 3, 4, 5, 6})};
	tensor *out = run_ref(g, y, 1, in);
	expect_shape(out, D(3, 2));
	EXPECT(out, 0, 11, 17, 12, 17, 13, 17);
	tensor_destroy(out);
}

/* Plain Gemm with alpha 2, beta 0.5, trans_b: y = 2 A B^T + 0.5 C. */
static void gemm_alpha_beta_trans_b(void **state)
{
	(void)state;
	graph *g = new_graph();
	int a = add_input(g, "a", D(1, 3));
	int b = add_const(g, "b", D(2, 3), (const float[]){1, 0, 0, 1, 1, 1});
	int c = add_const(g, "c", D(2), (const float[]){2, 4});
	graph_node n = {.op = GRAPH_OP_GEMM, .n_inputs = 3, .inputs = {a, b, c}};
	n.attr.gemm = (graph_gemm_attr){.alpha = 2, .beta = 0.5f,
					.trans_b = true};
	int y = add_node(g, n, "y");
	tensor *in[] = {mk(D(1, 3), (const float[]){3, 4, 5})};
	tensor *out = run_ref(g, y, 1, in);
	EXPECT(out, 0, 7, 26);
	tensor_destroy(out);
}

/* Batch broadcasting: A [2,1,2,2] @ B [3,2,2] -> [2,3,2,2], with
 * y[i][j] = A[i][0] @ B[j]. */
static void matmul_batch_broadcast(void **state)
{
	(void)state;
	graph *g = new_graph();
	int a = add_input(g, "a", D(2, 1, 2, 2));
	int b = add_input(g, "b", D(3, 2, 2));
	graph_node n = {.op = GRAPH_OP_MATMUL, .n_inputs = 2, .inputs = {a, b}};
	int y = add_node(g, n, "y");
	tensor *in[] = {ramp(D(2, 1, 2, 2), 1, 1), ramp(D(3, 2, 2), -2, 0.5f)};
	float A[2][4], B[3][4];
	memcpy(A, tensor_f32(in[0]), sizeof A);
	memcpy(B, tensor_f32(in[1]), sizeof B);
	tensor *out = run_ref(g, y, 2, in);
	expect_shape(out, D(2, 3, 2, 2));
	float *o = tensor_f32(out);
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 3; j++)
			for (int r = 0; r < 2; r++)
				for (int c = 0; c < 2; c++) {
					float want = A[i][r * 2] * B[j][c] +
						     A[i][r * 2 + 1] * B[j][2 + c];
					assert_float_equal(
						o[((i * 3 + j) * 2 + r) * 2 + c],
						want, 1e-5);
				}
	tensor_destroy(out);
}

/* 1-D operands: [3] @ [2,3,2] -> [2,2]; [3] @ [3] -> scalar. */
static void matmul_vectors(void **state)
{
	(void)state;
	graph *g = new_graph();
	int a = add_input(g, "a", D(3));
	int b = add_input(g, "b", D(2, 3, 2));
	graph_node n = {.op = GRAPH_OP_MATMUL, .n_inputs = 2, .inputs = {a, b}};
	int y = add_node(g, n, "y");
	tensor *in[] = {mk(D(3), (const float[]){1, 2, 3}),
			ramp(D(2, 3, 2), 0, 1)};
	tensor *out = run_ref(g, y, 2, in);
	/* B[0] = [[0,1],[2,3],[4,5]], B[1] = [[6,7],[8,9],[10,11]]. */
	expect_shape(out, D(2, 2));
	EXPECT(out, 0, 16, 22, 52, 58);
	tensor_destroy(out);

	g = new_graph();
	a = add_input(g, "a", D(3));
	b = add_input(g, "b", D(3));
	n = (graph_node){.op = GRAPH_OP_MATMUL, .n_inputs = 2,
			 .inputs = {a, b}};
	y = add_node(g, n, "y");
	tensor *in2[] = {mk(D(3), (const float[]){1, 2, 3}),
			 mk(D(3), (const float[]){4, 5, 6})};
	out = run_ref(g, y, 2, in2);
	assert_int_equal(out->ndim, 0);
	EXPECT(out, 0, 32);
	tensor_destroy(out);
}

/* ------------------------------------------------------------ elementwise */

static tensor *unary(graph_node n, tensor *x)
{
	graph *g = new_graph();
	int xv = add_input(g, "x", x->ndim, x->dims);
	n.n_inputs = 1;
	n.inputs[0] = xv;
	int y = add_node(g, n, "y");
	tensor *in[] = {x};
	return run_ref(g, y, 1, in);
}

static void activations(void **state)
{
	(void)state;
	const float v[] = {-2, -0.5f, 0, 0.5f, 2, 7};
	tensor *out = unary((graph_node){.op = GRAPH_OP_RELU}, mk(D(6), v));
	EXPECT(out, 0, 0, 0, 0, 0.5f, 2, 7);
	tensor_destroy(out);

	graph_node clip = {.op = GRAPH_OP_CLIP};
	clip.attr.clip.lo = 0;
	clip.attr.clip.hi = 6;
	out = unary(clip, mk(D(6), v));
	EXPECT(out, 0, 0, 0, 0, 0.5f, 2, 6);
	tensor_destroy(out);

	graph_node leaky = {.op = GRAPH_OP_LEAKYRELU};
	leaky.attr.leaky.alpha = 0.1f;
	out = unary(leaky, mk(D(6), v));
	EXPECT(out, 1e-6, -0.2f, -0.05f, 0, 0.5f, 2, 7);
	tensor_destroy(out);

	out = unary((graph_node){.op = GRAPH_OP_SIGMOID},
		    mk(D(4), (const float[]){0, 2, -2, -200}));
	/* 1 / (1 + e^-2) = 0.880797; -200 must not overflow to NaN. */
	EXPECT(out, 1e-6, 0.5f, 0.8807971f, 0.1192029f, 0);
	tensor_destroy(out);
}

/* Unfolded BatchNorm (its input is a graph input, so nothing to fold
 * into): y = x * scale[c] + shift[c], scale = gamma / sqrt(var + eps),
 * shift = beta - mean * scale. gamma {2, 1}, beta {1, 0}, mean {0, 4},
 * var {3, 0} with eps 1 gives scale {1, 1}, shift {1, -4}. */
static void batchnorm_unfolded(void **state)
{
	(void)state;
	graph *g = new_graph();
	int x = add_input(g, "x", D(1, 2, 3));
	int gamma = add_const(g, "gamma", D(2), (const float[]){2, 1});
	int beta = add_const(g, "beta", D(2), (const float[]){1, 0});
	int mean = add_const(g, "mean", D(2), (const float[]){0, 4});
	int var = add_const(g, "var", D(2), (const float[]){3, 0});
	graph_node n = {.op = GRAPH_OP_BATCHNORM, .n_inputs = 5,
			.inputs = {x, gamma, beta, mean, var}};
	n.attr.bn.epsilon = 1;
	int y = add_node(g, n, "y");
	tensor *in[] = {ramp(D(1, 2, 3), 0, 1)};
	tensor *out = run_ref(g, y, 1, in);
	EXPECT(out, 1e-6, 1, 2, 3, -1, 0, 1);
	tensor_destroy(out);
}

/* Add [2,3,1] + [3,4] -> [2,3,4]: y[i][j][k] = a[i][j] + b[j][k]. */
static void add_broadcast(void **state)
{
	(void)state;
	graph *g = new_graph();
	int a = add_input(g, "a", D(2, 3, 1));
	int b = add_input(g, "b", D(3, 4));
	graph_node n = {.op = GRAPH_OP_ADD, .n_inputs = 2, .inputs = {a, b}};
	int y = add_node(g, n, "y");
	tensor *in[] = {mk(D(2, 3, 1), (const float[]){0, 10, 20, 100, 110, 120}),
			ramp(D(3, 4), 0, 1)};
	tensor *out = run_ref(g, y, 2, in);
	expect_shape(out, D(2, 3, 4));
	float *o = tensor_f32(out);
	for (int i = 0; i < 2; i++)
		for (int j = 0; j < 3; j++)
			for (int k = 0; k < 4; k++)
				assert_float_equal(o[(i * 3 + j) * 4 + k],
						   100 * i + 10 * j + (4 * j + k),
						   0);
	tensor_destroy(out);
}

/* Mul broadcasting both ways: [2,1] * [1,3] -> [2,3]; and by a scalar
 * constant. */
static void mul_broadcast(void **state)
{
	(void)state;
	graph *g = new_graph();
	int a = add_input(g, "a", D(2, 1));
	int b = add_input(g, "b", D(1, 3));
	graph_node n = {.op = GRAPH_OP_MUL, .n_inputs = 2, .inputs = {a, b}};
	int y = add_node(g, n, "y");
	tensor *in[] = {mk(D(2, 1), (const float[]){2, -1}),
			mk(D(1, 3), (const float[]){1, 2, 3})};
	tensor *out = run_ref(g, y, 2, in);
	expect_shape(out, D(2, 3));
	EXPECT(out, 0, 2, 4, 6, -1, -2, -3);
	tensor_destroy(out);

	g = new_graph();
	a = add_input(g, "a", D(2, 2));
	int s = add_const(g, "s", 0, (const int64_t[]){0},
			  (const float[]){0.5f});
	n = (graph_node){.op = GRAPH_OP_MUL, .n_inputs = 2, .inputs = {a, s}};
	y = add_node(g, n, "y");
	tensor *in2[] = {mk(D(2, 2), (const float[]){2, 4, 6, 8})};
	out = run_ref(g, y, 1, in2);
	EXPECT(out, 0, 1, 2, 3, 4);
	tensor_destroy(out);
}

static tensor *concat(int64_t axis, tensor *a, tensor *b)
{
	graph *g = new_graph();
	int av = add_input(g, "a", a->ndim, a->dims);
	int bv = add_input(g, "b", b->ndim, b->dims);
	graph_node n = {.op = GRAPH_OP_CONCAT, .n_inputs = 2, .inputs = {av, bv}};
	n.attr.axis.axis = axis;
	int y = add_node(g, n, "y");
	tensor *in[] = {a, b};
	return run_ref(g, y, 2, in);
}

static void concat_axes(void **state)
{
	(void)state;
	tensor *out = concat(1, ramp(D(1, 2, 2), 0, 1),
			     mk(D(1, 1, 2), (const float[]){9, 9}));
	expect_shape(out, D(1, 3, 2));
	EXPECT(out, 0, 0, 1, 2, 3, 9, 9);
	tensor_destroy(out);
	out = concat(2, ramp(D(2, 2, 1), 0, 1),
		     mk(D(2, 2, 2), (const float[]){10, 11, 12, 13, 14, 15, 16, 17}));
	expect_shape(out, D(2, 2, 3));
	EXPECT(out, 0, 0, 10, 11, 1, 12, 13, 2, 14, 15, 3, 16, 17);
	tensor_destroy(out);
	/* Negative axis (-2 = 0) is normalized by finalize. */
	out = concat(-2, ramp(D(1, 2), 0, 1), ramp(D(2, 2), 5, 1));
	expect_shape(out, D(3, 2));
	EXPECT(out, 0, 0, 1, 5, 6, 7, 8);
	tensor_destroy(out);
}

static void flatten_and_reshape_copy(void **state)
{
	(void)state;
	graph *g = new_graph();
	int x = add_input(g, "x", D(1, 2, 3));
	graph_node n = {.op = GRAPH_OP_FLATTEN, .n_inputs = 1, .inputs = {x}};
	n.attr.axis.axis = 1;
	int f = add_node(g, n, "f");
	/* {x} form of Reshape: the output value's dims are the target. */
	int r = -1;
	assert_int_equal(graph_add_value(g, "r", D(3, 2), NULL, &r), DF_OK);
	graph_node rn = {.op = GRAPH_OP_RESHAPE, .n_inputs = 1, .inputs = {f},
			 .output = r};
	assert_int_equal(graph_add_node(g, &rn, "r", NULL), DF_OK);
	tensor *in[] = {ramp(D(1, 2, 3), 0, 1)};
	tensor *out = run_ref(g, r, 1, in);
	expect_shape(out, D(3, 2));
	EXPECT(out, 0, 0, 1, 2, 3, 4, 5);
	tensor_destroy(out);
}

/* ---------------------------------------------------------------- softmax */

static tensor *softmax(int64_t axis, bool legacy, tensor *x)
{
	graph *g = new_graph();
	int xv = add_input(g, "x", x->ndim, x->dims);
	graph_node n = {.op = GRAPH_OP_SOFTMAX, .n_inputs = 1, .inputs = {xv}};
	n.attr.axis.axis = axis;
	n.attr.axis.legacy = legacy;
	int y = add_node(g, n, "y");
	tensor *in[] = {x};
	return run_ref(g, y, 1, in);
}

/* x [2,2,2] = {0,1,2,3, 0,0,0,0}, axis 1. Legacy coerces to [2,4]:
 * softmax of 0..3 over the whole row (e^k / 31.19287). Axis mode pairs
 * x[o][0][i] with x[o][1][i]: (0,2) and (1,3) -> 0.1192, 0.8808. */
static void softmax_legacy_vs_axis(void **state)
{
	(void)state;
	const float x[] = {0, 1, 2, 3, 0, 0, 0, 0};
	tensor *out = softmax(1, true, mk(D(2, 2, 2), x));
	EXPECT(out, 1e-5, 0.0320586f, 0.0871443f, 0.2368828f, 0.6439143f,
	       0.25f, 0.25f, 0.25f, 0.25f);
	tensor_destroy(out);
	out = softmax(1, false, mk(D(2, 2, 2), x));
	EXPECT(out, 1e-5, 0.1192029f, 0.1192029f, 0.8807971f, 0.8807971f, 0.5f,
	       0.5f, 0.5f, 0.5f);
	tensor_destroy(out);
}

/* Subtracting the max keeps large logits finite. */
static void softmax_is_stable(void **state)
{
	(void)state;
	tensor *out = softmax(1, false, mk(D(1, 3), (const float[]){1000, 1001, -1000}));
	EXPECT(out, 1e-6, 0.2689414f, 0.7310586f, 0);
	tensor_destroy(out);
}

/* --------------------------------------------------------------- post-ops */

/* Conv (1x1, weight 1) on x = [-1, 2] with residual r = [0.5, -3]:
 * relu(conv + r) = [0, 0] but relu(conv) + r = [0.5, -1]. Both orders are
 * built as separate nodes; finalize fuses them into the conv as post-ops
 * (checked), and the result must keep the order. */
static tensor *postop_case(bool add_first, int *n_postops, graph_postop *ops)
{
	graph *g = new_graph();
	int x = add_input(g, "x", D(1, 1, 1, 2));
	int r = add_input(g, "r", D(1, 1, 1, 2));
	int w = add_const(g, "w", D(1, 1, 1, 1), (const float[]){1});
	graph_node c = {.op = GRAPH_OP_CONV, .n_inputs = 2, .inputs = {x, w}};
	int cv = add_node(g, c, "c");
	graph_node add = {.op = GRAPH_OP_ADD, .n_inputs = 2};
	graph_node relu = {.op = GRAPH_OP_RELU, .n_inputs = 1};
	int y;
	if (add_first) {
		add.inputs[0] = cv;
		add.inputs[1] = r;
		int av = add_node(g, add, "a");
		relu.inputs[0] = av;
		y = add_node(g, relu, "y");
	} else {
		relu.inputs[0] = cv;
		int rv = add_node(g, relu, "rl");
		add.inputs[0] = rv;
		add.inputs[1] = r;
		y = add_node(g, add, "y");
	}
	assert_int_equal(graph_add_output(g, y), DF_OK);
	assert_int_equal(graph_finalize(g), DF_OK);
	*n_postops = 0;
	for (int i = 0; i < g->n_nodes; i++)
		if (g->nodes[i].op == GRAPH_OP_CONV) {
			*n_postops = g->nodes[i].n_postops;
			memcpy(ops, g->nodes[i].postops,
			       sizeof(graph_postop) * GRAPH_MAX_POSTOPS);
		}
	engine *e = NULL;
	assert_int_equal(engine_create(g, ENGINE_REF, 0, &e), DF_OK);
	tensor *in[2] = {mk(D(1, 1, 1, 2), (const float[]){-1, 2}),
			 mk(D(1, 1, 1, 2), (const float[]){0.5f, -3})};
	/* finalize keeps the order inputs were added in */
	tensor *out = NULL;
	assert_int_equal(engine_run(e, (const tensor *const *)in, &out), DF_OK);
	engine_destroy(e);
	graph_destroy(g);
	tensor_destroy(in[0]);
	tensor_destroy(in[1]);
	return out;
}

static void postops_keep_their_order(void **state)
{
	(void)state;
	int np;
	graph_postop ops[GRAPH_MAX_POSTOPS];
	tensor *out = postop_case(true, &np, ops);
	EXPECT(out, 0, 0, 0);
	tensor_destroy(out);
	if (np == 2) {
		assert_int_equal(ops[0].kind, GRAPH_POSTOP_ADD);
		assert_int_equal(ops[1].kind, GRAPH_POSTOP_ACT);
	}
	out = postop_case(false, &np, ops);
	EXPECT(out, 0, 0.5f, -1);
	tensor_destroy(out);
	if (np == 2) {
		assert_int_equal(ops[0].kind, GRAPH_POSTOP_ACT);
		assert_int_equal(ops[1].kind, GRAPH_POSTOP_ADD);
	}
}

/* Post-ops set by hand on a finalized graph run in the order listed,
 * including a Clip and a LeakyRelu with their parameters. */
static void postops_by_hand(void **state)
{
	(void)state;
	graph *g = new_graph();
	int x = add_input(g, "x", D(1, 1, 1, 4));
	int r = add_input(g, "r", D(1, 1, 1, 4));
	int w = add_const(g, "w", D(1, 1, 1, 1), (const float[]){2});
	graph_node c = {.op = GRAPH_OP_CONV, .n_inputs = 2, .inputs = {x, w}};
	int cv = add_node(g, c, "c");
	graph_node add = {.op = GRAPH_OP_ADD, .n_inputs = 2, .inputs = {cv, r}};
	int y = add_node(g, add, "y");
	assert_int_equal(graph_add_output(g, y), DF_OK);
	assert_int_equal(graph_finalize(g), DF_OK);
	/* Whether or not finalize fused the Add, put all post-ops on the
	 * node that writes y: LeakyRelu(0.5), Clip(-1, 3), then the Add. */
	int yv = g->outputs[0];
	graph_node *n = &g->nodes[g->values[yv].producer];
	if (n->op != GRAPH_OP_CONV)
		skip(); /* finalize did not fuse; nothing to hang post-ops on */
	int rv = g->inputs[1];
	n->n_postops = 3;
	n->postops[0] = (graph_postop){.kind = GRAPH_POSTOP_ACT,
				       .act = GRAPH_ACT_LEAKYRELU, .alpha = 0.5f};
	n->postops[1] = (graph_postop){.kind = GRAPH_POSTOP_ACT,
				       .act = GRAPH_ACT_CLIP, .alpha = -1,
				       .beta = 3};
	n->postops[2] = (graph_postop){.kind = GRAPH_POSTOP_ADD, .operand = rv};
	engine *e = NULL;
	assert_int_equal(engine_create(g, ENGINE_REF, 0, &e), DF_OK);
	tensor *in[2] = {mk(D(1, 1, 1, 4), (const float[]){-4, -1, 1, 4}),
			 mk(D(1, 1, 1, 4), (const float[]){10, 10, 10, 10})};
	tensor *out = NULL;
	assert_int_equal(engine_run(e, (const tensor *const *)in, &out), DF_OK);
	/* conv: -8 -2 2 8; leaky: -4 -1 2 8; clip: -1 -1 2 3; +10. */
	EXPECT(out, 0, 9, 9, 12, 13);
	tensor_destroy(out);
	engine_destroy(e);
	graph_destroy(g);
	tensor_destroy(in[0]);
	tensor_destroy(in[1]);
}

/* ------------------------------------------------- graph-level behaviour */

/* A value read by several later nodes (x used three times) and three graph
 * outputs, one of them (r) also read by later nodes: intermediates are
 * freed only after their last reader and graph outputs never (ASan would
 * see a use after free otherwise). */
static void multi_output_and_reuse(void **state)
{
	(void)state;
	graph *g = new_graph();
	int x = add_input(g, "x", D(4));
	graph_node r = {.op = GRAPH_OP_RELU, .n_inputs = 1, .inputs = {x}};
	int rv = add_node(g, r, "r");
	graph_node s = {.op = GRAPH_OP_SIGMOID, .n_inputs = 1, .inputs = {x}};
	int sv = add_node(g, s, "s");
	graph_node a = {.op = GRAPH_OP_ADD, .n_inputs = 2, .inputs = {rv, x}};
	int av = add_node(g, a, "a");
	graph_node m = {.op = GRAPH_OP_MUL, .n_inputs = 2, .inputs = {av, rv}};
	int mv = add_node(g, m, "m");
	assert_int_equal(graph_add_output(g, mv), DF_OK);
	assert_int_equal(graph_add_output(g, sv), DF_OK);
	assert_int_equal(graph_add_output(g, rv), DF_OK);
	assert_int_equal(graph_finalize(g), DF_OK);
	engine *e = NULL;
	assert_int_equal(engine_create(g, ENGINE_REF, 0, &e), DF_OK);
	tensor *in[1] = {mk(D(4), (const float[]){-1, 0, 1, 2})};
	tensor *out[3] = {NULL, NULL, NULL};
	for (int rep = 0; rep < 2; rep++) {
		assert_int_equal(engine_run(e, (const tensor *const *)in, out),
				 DF_OK);
		/* (relu(x) + x) * relu(x) */
		EXPECT(out[0], 0, 0, 0, 2, 8);
		EXPECT(out[1], 1e-6, 0.2689414f, 0.5f, 0.7310586f, 0.8807971f);
		EXPECT(out[2], 0, 0, 0, 1, 2);
		for (int i = 0; i < 3; i++)
			tensor_destroy(out[i]);
	}
	engine_destroy(e);
	graph_destroy(g);
	tensor_destroy(in[0]);
}

/* Wrong shape, dtype or a missing input: DF_EINVAL naming the input, and
 * outputs untouched. */
static void run_validates_inputs(void **state)
{
	(void)state;
	graph *g = new_graph();
	int x = add_input(g, "input", D(1, 1, 28, 28));
	graph_node n = {.op = GRAPH_OP_RELU, .n_inputs = 1, .inputs = {x}};
	int y = add_node(g, n, "y");
	assert_int_equal(graph_add_output(g, y), DF_OK);
	assert_int_equal(graph_finalize(g), DF_OK);
	engine *e = NULL;
	assert_int_equal(engine_create(g, ENGINE_REF, 0, &e), DF_OK);
	tensor *sentinel = (tensor *)(uintptr_t)0x1234;
	tensor *out = sentinel;

	tensor *bad = mk(D(1, 3, 28, 28), NULL);
	const tensor *in[1] = {bad};
	assert_int_equal(engine_run(e, in, &out), DF_EINVAL);
	assert_string_equal(df_err_msg(),
			    "input 'input': shape [1,3,28,28] does not match "
			    "the model's [1,1,28,28]");
	assert_ptr_equal(out, sentinel);
	tensor_destroy(bad);

	bad = mk(D(1, 1, 28), NULL);
	in[0] = bad;
	assert_int_equal(engine_run(e, in, &out), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "input 'input'"));
	tensor_destroy(bad);

	tensor *i64 = NULL;
	assert_int_equal(tensor_create(TENSOR_I64, D(1, 1, 28, 28), &i64), DF_OK);
	in[0] = i64;
	assert_int_equal(engine_run(e, in, &out), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "input 'input': dtype i64"));
	tensor_destroy(i64);

	in[0] = NULL;
	assert_int_equal(engine_run(e, in, &out), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "'input'"));
	assert_ptr_equal(out, sentinel);
	assert_int_equal(engine_run(e, NULL, &out), DF_EINVAL);
	assert_int_equal(engine_run(NULL, in, &out), DF_EINVAL);

	engine_destroy(e);
	graph_destroy(g);
}

/* A graph whose recorded output shape disagrees with the op is refused at
 * create time with a message naming the node. */
static void create_checks_shapes(void **state)
{
	(void)state;
	graph *g = new_graph();
	int x = add_input(g, "x", D(1, 1, 4, 4));
	graph_node n = {.op = GRAPH_OP_MAXPOOL, .n_inputs = 1, .inputs = {x}};
	n.attr.pool = pool_attr(2, 2, 0, false, false);
	int y = add_node(g, n, "y");
	assert_int_equal(graph_add_output(g, y), DF_OK);
	assert_int_equal(graph_finalize(g), DF_OK);
	g->values[g->outputs[0]].dims[3] = 3;
	engine *e = (engine *)(uintptr_t)0x1234;
	assert_int_equal(engine_create(g, ENGINE_REF, 0, &e), DF_EINVAL);
	assert_ptr_equal(e, (engine *)(uintptr_t)0x1234);
	assert_non_null(strstr(df_err_msg(), "node y (MaxPool)"));
	assert_non_null(strstr(df_err_msg(), "[1,1,2,2]"));
	graph_destroy(g);
}

static void kind_names_and_parse(void **state)
{
	(void)state;
	engine_kind k;
	assert_string_equal(engine_kind_name(ENGINE_DNNL), "dnnl");
	assert_string_equal(engine_kind_name(ENGINE_REF), "ref");
	assert_int_equal(engine_kind_parse("ref", &k), DF_OK);
	assert_int_equal(k, ENGINE_REF);
	assert_int_equal(engine_kind_parse("dnnl", &k), DF_OK);
	assert_int_equal(k, ENGINE_DNNL);
	k = ENGINE_REF;
	assert_int_equal(engine_kind_parse("cuda", &k), DF_EINVAL);
	assert_int_equal(k, ENGINE_REF);
	assert_non_null(strstr(df_err_msg(), "cuda"));
	engine_destroy(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(conv_3x3_pad1_stride2_ones),
		cmocka_unit_test(conv_asymmetric_kernel_with_bias),
		cmocka_unit_test(conv_asymmetric_pads),
		cmocka_unit_test(conv_depthwise),
		cmocka_unit_test(conv_grouped),
		cmocka_unit_test(conv_dilation),
		cmocka_unit_test(avgpool_count_include_pad),
		cmocka_unit_test(avgpool_ceil_mode_clips_windows),
		cmocka_unit_test(maxpool_ceil_mode),
		cmocka_unit_test(maxpool_never_selects_padding),
		cmocka_unit_test(maxpool_dilation),
		cmocka_unit_test(global_avgpool),
		cmocka_unit_test(gemm_trans_a),
		cmocka_unit_test(gemm_alpha_beta_trans_b),
		cmocka_unit_test(matmul_batch_broadcast),
		cmocka_unit_test(matmul_vectors),
		cmocka_unit_test(activations),
		cmocka_unit_test(batchnorm_unfolded),
		cmocka_unit_test(add_broadcast),
		cmocka_unit_test(mul_broadcast),
		cmocka_unit_test(concat_axes),
		cmocka_unit_test(flatten_and_reshape_copy),
		cmocka_unit_test(softmax_legacy_vs_axis),
		cmocka_unit_test(softmax_is_stable),
		cmocka_unit_test(postops_keep_their_order),
		cmocka_unit_test(postops_by_hand),
		cmocka_unit_test(multi_output_and_reuse),
		cmocka_unit_test(run_validates_inputs),
		cmocka_unit_test(create_checks_shapes),
		cmocka_unit_test(kind_names_and_parse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
