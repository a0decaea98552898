/* graph_builder.c - see graph_builder.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph_builder.h"
#include "partition.h"

static float rnd(uint64_t *s)
{
	*s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
	return (float)((*s >> 40) & 0xffffff) / (float)(1 << 23) - 1.0f;
}

tensor *gb_random_tensor(uint64_t seed, int ndim, const int64_t *dims)
{
	tensor *t = NULL;
	uint64_t s = seed * 2654435761ULL + 1;
	assert_int_equal(tensor_create(TENSOR_F32, ndim, dims, &t), DF_OK);
	for (size_t i = 0; i < t->numel; i++)
		tensor_f32(t)[i] = rnd(&s);
	return t;
}

static int value(gb *b, const char *prefix)
{
	char name[64];
	int v = -1;
	snprintf(name, sizeof name, "%s_%d", prefix, b->counter++);
	assert_int_equal(graph_add_value(b->g, name, 0, NULL, NULL, &v), DF_OK);
	return v;
}

static int constant(gb *b, int ndim, const int64_t *dims, float scale,
		    float offset)
{
	char name[64];
	int v = -1;
	tensor *t = NULL;
	assert_int_equal(tensor_create(TENSOR_F32, ndim, dims, &t), DF_OK);
	for (size_t i = 0; i < t->numel; i++)
		tensor_f32(t)[i] = rnd(&b->rng) * scale + offset;
	snprintf(name, sizeof name, "w_%d", b->counter++);
	assert_int_equal(graph_add_value(b->g, name, ndim, dims, t, &v), DF_OK);
	return v;
}

static int node(gb *b, graph_node *n, const char *prefix)
{
	char name[64];
	n->output = value(b, prefix);
	snprintf(name, sizeof name, "%s_n%d", prefix, b->counter++);
	assert_int_equal(graph_add_node(b->g, n, name, NULL), DF_OK);
	return n->output;
}

int gb_begin(gb *b, uint64_t seed, int64_t c, int64_t h, int64_t w)
{
	memset(b, 0, sizeof *b);
	b->rng = seed * 0x9e3779b97f4a7c15ULL + 7;
	assert_int_equal(graph_create(&b->g), DF_OK);
	int64_t dims[] = {1, c, h, w};
	int x = -1;
	assert_int_equal(graph_add_value(b->g, "input", 4, dims, NULL, &x), DF_OK);
	assert_int_equal(graph_add_input(b->g, x), DF_OK);
	return x;
}

int gb_conv(gb *b, int x, int64_t cin, int64_t cout, int64_t k,
	    int64_t stride, int64_t pad, int64_t group)
{
	int64_t wd[] = {cout, cin / group, k, k};
	int64_t bd[] = {cout};
	graph_node n = {.op = GRAPH_OP_CONV, .n_inputs = 3};
	n.inputs[0] = x;
	n.inputs[1] = constant(b, 4, wd, 0.6f, 0);
	n.inputs[2] = constant(b, 1, bd, 0.1f, 0);
	n.attr.conv = (graph_conv_attr){.kernel = {k, k}, .strides = {stride, stride},
					.dilations = {1, 1},
					.pads = {pad, pad, pad, pad}, .group = group};
	return node(b, &n, "conv");
}

int gb_bn(gb *b, int x, int64_t c)
{
	int64_t d[] = {c};
	graph_node n = {.op = GRAPH_OP_BATCHNORM, .n_inputs = 5};
	n.inputs[0] = x;
	n.inputs[1] = constant(b, 1, d, 0.4f, 1.0f);  /* gamma */
	n.inputs[2] = constant(b, 1, d, 0.2f, 0.0f);  /* beta */
	n.inputs[3] = constant(b, 1, d, 0.2f, 0.0f);  /* mean */
	n.inputs[4] = constant(b, 1, d, 0.4f, 1.0f);  /* var > 0 */
	n.attr.bn.epsilon = 1e-5f;
	return node(b, &n, "bn");
}

static int unary(gb *b, int x, graph_op op, const char *prefix)
{
	graph_node n = {.op = op, .n_inputs = 1};
	n.inputs[0] = x;
	if (op == GRAPH_OP_CLIP) {
		n.attr.clip.lo = 0;
		n.attr.clip.hi = 6;
	}
	return node(b, &n, prefix);
}

int gb_relu(gb *b, int x)
{
	return unary(b, x, GRAPH_OP_RELU, "relu");
}

int gb_relu6(gb *b, int x)
{
	return unary(b, x, GRAPH_OP_CLIP, "relu6");
}

int gb_gap(gb *b, int x)
{
	return unary(b, x, GRAPH_OP_GLOBALAVGPOOL, "gap");
}

int gb_flatten(gb *b, int x)
{
	graph_node n = {.op = GRAPH_OP_FLATTEN, .n_inputs = 1};
	n.inputs[0] = x;
	n.attr.axis.axis = 1;
	return node(b, &n, "flatten");
}

int gb_add(gb *b, int x, int y)
{
	graph_node n = {.op = GRAPH_OP_ADD, .n_inputs = 2};
	n.inputs[0] = x;
	n.inputs[1] = y;
	return node(b, &n, "add");
}

int gb_maxpool(gb *b, int x, int64_t k, int64_t stride)
{
	graph_node n = {.op = GRAPH_OP_MAXPOOL, .n_inputs = 1};
	n.inputs[0] = x;
	n.attr.pool.kernel[0] = n.attr.pool.kernel[1] = k;
	n.attr.pool.strides[0] = n.attr.pool.strides[1] = stride;
	n.attr.pool.dilations[0] = n.attr.pool.dilations[1] = 1;
	return node(b, &n, "maxpool");
}

int gb_gemm(gb *b, int x, int64_t k, int64_t nout)
{
	int64_t wd[] = {nout, k};
	int64_t bd[] = {nout};
	graph_node n = {.op = GRAPH_OP_GEMM, .n_inputs = 3};
	n.inputs[0] = x;
	n.inputs[1] = constant(b, 2, wd, 0.3f, 0);
	n.inputs[2] = constant(b, 1, bd, 0.1f, 0);
	n.attr.gemm = (graph_gemm_attr){.alpha = 1, .beta = 1, .trans_b = true};
	return node(b, &n, "gemm");
}

graph *gb_end(gb *b, int y)
{
	assert_int_equal(graph_add_output(b->g, y), DF_OK);
	df_err err = graph_finalize(b->g);
	if (err)
		fail_msg("graph_finalize: %s", df_err_msg());
	return b->g;
}

/* conv + BN (+ ReLU). */
static int cbr(gb *b, int x, int64_t cin, int64_t cout, int64_t k, int64_t s,
	       int relu)
{
	int y = gb_bn(b, gb_conv(b, x, cin, cout, k, s, k / 2, 1), cout);
	return relu ? gb_relu(b, y) : y;
}

graph *gb_resnet(uint64_t seed)
{
	gb b;
	int x = gb_begin(&b, seed, 3, 12, 12);
	int a = cbr(&b, x, 3, 13, 3, 1, 1);
	/* identity block */
	int h = cbr(&b, a, 13, 13, 3, 1, 1);
	h = cbr(&b, h, 13, 13, 3, 1, 0);
	a = gb_relu(&b, gb_add(&b, h, a));
	/* strided block with downsample */
	int ds = cbr(&b, a, 13, 21, 1, 2, 0);
	h = cbr(&b, a, 13, 21, 3, 2, 1);
	h = cbr(&b, h, 21, 21, 3, 1, 0);
	a = gb_relu(&b, gb_add(&b, h, ds));
	int f = gb_flatten(&b, gb_gap(&b, a));
	return gb_end(&b, gb_gemm(&b, f, 21, 10));
}

/* conv + BN + ReLU6 with groups. */
static int cbr6(gb *b, int x, int64_t cin, int64_t cout, int64_t k, int64_t s,
		int64_t group, int act)
{
	int y = gb_bn(b, gb_conv(b, x, cin, cout, k, s, k / 2, group), cout);
	return act ? gb_relu6(b, y) : y;
}

graph *gb_mobilenet(uint64_t seed)
{
	gb b;
	int x = gb_begin(&b, seed, 3, 12, 12);
	int a = cbr6(&b, x, 3, 11, 3, 2, 1, 1);
	/* t = 1: depthwise then project */
	int h = cbr6(&b, a, 11, 11, 3, 1, 11, 1);
	int p = cbr6(&b, h, 11, 9, 1, 1, 1, 0);
	/* t = 3 with residual */
	h = cbr6(&b, p, 9, 27, 1, 1, 1, 1);
	h = cbr6(&b, h, 27, 27, 3, 1, 27, 1);
	h = cbr6(&b, h, 27, 9, 1, 1, 1, 0);
	a = gb_add(&b, h, p);
	a = cbr6(&b, a, 9, 33, 1, 1, 1, 1);
	int f = gb_flatten(&b, gb_gap(&b, a));
	return gb_end(&b, gb_gemm(&b, f, 33, 10));
}

graph *gb_vgg(uint64_t seed)
{
	gb b;
	int x = gb_begin(&b, seed, 1, 12, 12);
	int a = cbr(&b, x, 1, 15, 3, 1, 1);
	a = cbr(&b, a, 15, 17, 3, 1, 1);
	a = gb_maxpool(&b, a, 2, 2);
	a = cbr(&b, a, 17, 19, 3, 1, 1);
	a = gb_maxpool(&b, a, 2, 2);
	int f = gb_flatten(&b, a);
	int hdn = gb_relu(&b, gb_gemm(&b, f, 19 * 3 * 3, 23));
	return gb_end(&b, gb_gemm(&b, hdn, 23, 10));
}

void gb_distribute_stage(partition_map *m, int s)
{
	partition_stage *ps = &m->stages[s];
	assert_true(ps->on_gateway && ps->n_neurons > 0);
	ps->on_gateway = false;
	ps->primary = calloc((size_t)ps->n_neurons, sizeof *ps->primary);
	assert_non_null(ps->primary);
	for (int64_t i = 0; i < ps->n_neurons; i++)
		ps->primary[i] = (int32_t)((i * m->n_devices) / ps->n_neurons);
	if (m->copies > 1) {
		size_t n = (size_t)ps->n_neurons * (size_t)(m->copies - 1);
		ps->replicas = malloc(n * sizeof *ps->replicas);
		assert_non_null(ps->replicas);
		for (size_t i = 0; i < n; i++)
			ps->replicas[i] = -1;
	}
	assert_int_equal(partition_validate(m, NULL), DF_OK);
}
