/*
 * Unit tests for onnx_import.c. The fixtures in tests/unit/data/onnx were
 * written by make_fixtures.py with the onnx package's own helpers (valid
 * ones pass onnx.checker) and by torch.onnx.export; expected.json holds the
 * output shapes ONNX shape inference (or torch) gives for the valid ones.
 * Expected weights are read back from the files with protobuf-c, not
 * through the importer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "graph.h"
#include "npy.h"
#include "onnx.pb-c.h"
#include "onnx_import.h"

static const char *fixture(const char *name)
{
	static char path[1024];
	const char *src = getenv("DF_SOURCE_DIR");
	snprintf(path, sizeof path, "%s/tests/unit/data/onnx/%s",
	         src ? src : ".", name);
	return path;
}

static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	rewind(f);
	unsigned char *b = malloc((size_t)n + 1);
	assert_non_null(b);
	assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	*len = (size_t)n;
	return b;
}

/* Imports fixture `name` (".onnx" appended), failing the test on error. */
static graph *load(const char *name)
{
	char file[256];
	snprintf(file, sizeof file, "%s.onnx", name);
	graph *g = NULL;
	df_err err = onnx_import_file(fixture(file), &g);
	if (err)
		fail_msg("%s: %s (%s)", name, df_err_str(err), df_err_msg());
	assert_int_equal(graph_check(g), DF_OK);
	return g;
}

static int count_op(const graph *g, graph_op op)
{
	int c = 0;
	for (int n = 0; n < g->n_nodes; n++)
		c += g->nodes[n].op == op;
	return c;
}

static const graph_node *node_named(const graph *g, const char *name)
{
	for (int n = 0; n < g->n_nodes; n++)
		if (strcmp(g->nodes[n].name, name) == 0)
			return &g->nodes[n];
	fail_msg("no node '%s'", name);
	return NULL;
}

static const float *cf32(const graph *g, int v)
{
	assert_non_null(g->values[v].constant);
	return tensor_f32(g->values[v].constant);
}

static void expect_shape(const graph *g, int v, int ndim, const int64_t *dims)
{
	char got[128], want[128];
	tensor_shape_str(g->values[v].ndim, g->values[v].dims, got, sizeof got);
	tensor_shape_str(ndim, dims, want, sizeof want);
	if (strcmp(got, want) != 0)
		fail_msg("'%s' is %s, expected %s", g->values[v].name, got,
		         want);
}

/* Float values of initializer `init` of fixture `name`, read with protobuf-c
 * directly (raw_data or float_data). Returns a malloc'd array of *n. */
static float *initializer(const char *name, const char *init, size_t *n)
{
	char file[256];
	size_t len = 0;
	snprintf(file, sizeof file, "%s.onnx", name);
	unsigned char *buf = slurp(fixture(file), &len);
	Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
	assert_non_null(m);
	float *out = NULL;
	for (size_t i = 0; i < m->graph->n_initializer; i++) {
		const Onnx__TensorProto *t = m->graph->initializer[i];
		if (strcmp(t->name, init) != 0)
			continue;
		*n = t->has_raw_data ? t->raw_data.len / 4 : t->n_float_data;
		out = malloc(*n * sizeof *out + 1);
		assert_non_null(out);
		if (t->has_raw_data)
			memcpy(out, t->raw_data.data, *n * 4);
		else
			memcpy(out, t->float_data, *n * 4);
	}
	onnx__model_proto__free_unpacked(m, NULL);
	free(buf);
	if (!out)
		fail_msg("%s has no initializer %s", name, init);
	return out;
}

static void expect_err(const char *name, df_err want, const char *needle)
{
	char file[256];
	snprintf(file, sizeof file, "%s.onnx", name);
	graph *g = NULL;
	df_err err = onnx_import_file(fixture(file), &g);
	if (err != want)
		fail_msg("%s: got %s (%s), expected %s", name, df_err_str(err),
		         df_err_msg(), df_err_str(want));
	assert_null(g);
	if (needle && !strstr(df_err_msg(), needle))
		fail_msg("%s: message '%s' lacks '%s'", name, df_err_msg(),
		         needle);
}

/* ---- valid models ------------------------------------------------------- */

static void imports_every_valid_fixture_with_onnx_shapes(void **state)
{
	(void)state;
	json_error_t jerr;
	json_t *exp = json_load_file(fixture("expected.json"), 0, &jerr);
	if (!exp)
		fail_msg("expected.json: %s", jerr.text);
	const char *name;
	json_t *e;
	int checked = 0;
	json_object_foreach(exp, name, e)
	{
		graph *g = load(name);
		json_t *outs = json_object_get(e, "outputs");
		assert_int_equal(
		    g->opset, json_integer_value(json_object_get(e, "opset")));
		if ((size_t)g->n_outputs != json_array_size(outs))
			fail_msg("%s: %d outputs, expected %zu", name,
			         g->n_outputs, json_array_size(outs));
		for (int i = 0; i < g->n_outputs; i++) {
			json_t *shape = json_array_get(outs, (size_t)i);
			int64_t dims[TENSOR_MAX_DIMS];
			for (size_t d = 0; d < json_array_size(shape); d++)
				dims[d] = json_integer_value(
				    json_array_get(shape, d));
			expect_shape(g, g->outputs[i],
			             (int)json_array_size(shape), dims);
		}
		graph_destroy(g);
		checked++;
	}
	json_decref(exp);
	assert_true(checked >= 50);
}

static void reads_raw_and_typed_weights_alike(void **state)
{
	(void)state;
	graph *a = load("ok_conv_raw"), *b = load("ok_conv_float_data");
	size_t n = 0;
	float *w = initializer("ok_conv_raw", "W", &n);
	assert_int_equal(n, 4 * 3 * 3 * 3);
	const graph_node *ca = node_named(a, "conv1"),
	                 *cb = node_named(b, "conv1");
	assert_memory_equal(cf32(a, ca->inputs[1]), w, n * 4);
	assert_memory_equal(cf32(b, cb->inputs[1]), w, n * 4);
	assert_memory_equal(cf32(a, ca->inputs[2]), cf32(b, cb->inputs[2]),
	                    4 * 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(ca->attr.conv.pads[i], 1);
	free(w);
	graph_destroy(a);
	graph_destroy(b);
}

static void resolves_auto_pad_and_conv_attributes(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		int64_t pads[4];
	} cases[] = {
	    {"ok_conv_same_upper", {0, 0, 1, 1}},
	    {"ok_conv_same_lower", {1, 1, 0, 0}},
	    {"ok_conv_valid", {0, 0, 0, 0}},
	};
	for (size_t i = 0; i < 3; i++) {
		graph *g = load(cases[i].name);
		const graph_node *c = node_named(g, "dw");
		assert_int_equal(c->attr.conv.group, 4);
		assert_int_equal(c->attr.conv.strides[0], 2);
		assert_int_equal(c->attr.conv.strides[1], 1);
		for (int p = 0; p < 4; p++)
			if (c->attr.conv.pads[p] != cases[i].pads[p])
				fail_msg("%s: pad %d is %lld", cases[i].name, p,
				         (long long)c->attr.conv.pads[p]);
		/* kernel_shape absent: taken from W; bias absent: zeros */
		assert_int_equal(c->attr.conv.kernel[0],
		                 g->values[c->inputs[1]].dims[2]);
		assert_true(cf32(g, c->inputs[2])[3] == 0.0f);
		graph_destroy(g);
	}
	graph *g = load("ok_conv_dilated_group");
	const graph_node *c = node_named(g, "c");
	assert_int_equal(c->attr.conv.dilations[0], 2);
	assert_int_equal(c->attr.conv.group, 2);
	assert_int_equal(c->attr.conv.pads[1], 1);
	assert_int_equal(c->attr.conv.pads[2], 2);
	graph_destroy(g);
	g = load("ok_symbolic_batch");
	int64_t in[4] = {1, 3, 5, 5};
	expect_shape(g, g->inputs[0], 4, in);
	graph_destroy(g);
	g = load("ok_init_as_input");
	assert_int_equal(g->n_inputs, 1);
	assert_string_equal(g->values[g->inputs[0]].name, "x");
	graph_destroy(g);
}

static void canonicalizes_gemm_variants(void **state)
{
	(void)state;
	size_t nb = 0, nc = 0;
	float *b = initializer("ok_gemm_transb", "B", &nb);
	float *c = initializer("ok_gemm_transb", "C", &nc);
	graph *g = load("ok_gemm_transb");
	assert_int_equal(g->n_nodes, 1);
	const graph_node *fc = node_named(g, "fc");
	assert_int_equal(fc->op, GRAPH_OP_GEMM);
	assert_true(fc->attr.gemm.trans_b);
	for (size_t i = 0; i < nb; i++) /* alpha 0.5, B already [N,K] */
		assert_true(cf32(g, fc->inputs[1])[i] == 0.5f * b[i]);
	for (size_t i = 0; i < nc; i++) /* beta 2 */
		assert_true(cf32(g, fc->inputs[2])[i] == 2.0f * c[i]);
	free(b);
	free(c);
	graph_destroy(g);

	b = initializer("ok_gemm_transa_row_c", "B", &nb); /* [6,4] */
	g = load("ok_gemm_transa_row_c");
	fc = node_named(g, "fc");
	assert_true(fc->attr.gemm.trans_a);
	const float *w = cf32(g, fc->inputs[1]); /* [4,6] = B^T */
	for (int k = 0; k < 6; k++)
		for (int n = 0; n < 4; n++)
			assert_true(w[n * 6 + k] == b[k * 4 + n]);
	free(b);
	graph_destroy(g);

	g = load("ok_gemm_full_c"); /* C [2,4] is no bias: fused Add */
	assert_int_equal(g->n_nodes, 1);
	assert_int_equal(g->nodes[0].n_postops, 1);
	assert_int_equal(g->nodes[0].postops[0].kind, GRAPH_POSTOP_ADD);
	graph_destroy(g);

	g = load("ok_gemm_no_c");
	assert_true(cf32(g, g->nodes[0].inputs[2])[2] == 0.0f);
	graph_destroy(g);

	g = load("ok_gemm_computed_b");
	assert_int_equal(g->n_nodes, 3);
	assert_int_equal(g->nodes[0].op, GRAPH_OP_MATMUL);
	assert_int_equal(g->nodes[1].op, GRAPH_OP_MUL);
	assert_int_equal(g->nodes[2].op, GRAPH_OP_ADD);
	graph_destroy(g);

	g = load("ok_matmul");
	assert_int_equal(node_named(g, "mm2d")->op, GRAPH_OP_GEMM);
	assert_int_equal(node_named(g, "mm3d")->op, GRAPH_OP_MATMUL);
	assert_int_equal(node_named(g, "mmc")->op, GRAPH_OP_MATMUL);
	graph_destroy(g);
}

static void folds_batchnorm_for_opsets_9_and_15(void **state)
{
	(void)state;
	static const char *const names[] = {"ok_conv_bn_o9", "ok_conv_bn_o15"};
	for (int i = 0; i < 2; i++) {
		size_t n = 0, c = 0;
		float *w = initializer(names[i], "W", &n);
		float *gam = initializer(names[i], "scale", &c);
		float *bet = initializer(names[i], "bias", &c);
		float *mean = initializer(names[i], "mean", &c);
		float *var = initializer(names[i], "var", &c);
		graph *g = load(names[i]);
		assert_int_equal(g->n_nodes, 1);
		const graph_node *cv = node_named(g, "conv");
		const float *fw = cf32(g, cv->inputs[1]),
		            *fb = cf32(g, cv->inputs[2]);
		size_t per = n / c;
		for (size_t m = 0; m < c; m++) {
			double s = gam[m] / sqrt((double)var[m] + 1e-3);
			for (size_t k = 0; k < per; k++)
				assert_float_equal(fw[m * per + k],
				                   w[m * per + k] * s, 1e-5);
			assert_float_equal(fb[m], bet[m] - mean[m] * s, 1e-5);
		}
		free(w);
		free(gam);
		free(bet);
		free(mean);
		free(var);
		graph_destroy(g);
	}
	static const char *const alone[] = {"ok_bn_alone_o9", "ok_bn_alone_o15",
	                                    "ok_bn_spatial_o7"};
	for (int i = 0; i < 3; i++) {
		size_t c = 0;
		float *gam = initializer(alone[i], "scale", &c);
		float *var = initializer(alone[i], "var", &c);
		graph *g = load(alone[i]);
		const graph_node *bn = node_named(g, "bn");
		assert_int_equal(bn->op, GRAPH_OP_BATCHNORM);
		assert_int_equal(bn->n_inputs, 3);
		for (size_t m = 0; m < c; m++)
			assert_float_equal(cf32(g, bn->inputs[1])[m],
			                   gam[m] / sqrt((double)var[m] + 1e-5),
			                   1e-5);
		free(gam);
		free(var);
		graph_destroy(g);
	}
}

static void reads_clip_bounds_for_every_opset(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		float lo, hi;
	} cases[] = {
	    {"ok_clip_attr_o10", 0, 6},
	    {"ok_clip_inputs_o11", 0, 6},
	    {"ok_clip_max_only_o13", -INFINITY, 1.5f},
	};
	for (int i = 0; i < 3; i++) {
		graph *g = load(cases[i].name);
		const graph_node *c = node_named(g, "clip");
		assert_int_equal(c->op, GRAPH_OP_CLIP);
		assert_int_equal(c->n_inputs, 1);
		assert_true(c->attr.clip.lo == cases[i].lo);
		assert_true(c->attr.clip.hi == cases[i].hi);
		graph_destroy(g);
	}
	graph *g = load("ok_conv_relu6_o13");
	assert_int_equal(g->n_nodes, 1);
	assert_int_equal(g->nodes[0].n_postops, 1);
	assert_int_equal(g->nodes[0].postops[0].act, GRAPH_ACT_CLIP);
	assert_true(g->nodes[0].postops[0].alpha == 0.0f);
	assert_true(g->nodes[0].postops[0].beta == 6.0f);
	graph_destroy(g);
	g = load("ok_activations");
	assert_int_equal(g->n_nodes, 3);
	assert_true(node_named(g, "leaky")->attr.leaky.alpha == 0.2f);
	graph_destroy(g);
}

static void reads_pooling_attributes(void **state)
{
	(void)state;
	graph *g = load("ok_maxpool_ceil_o10");
	const graph_node *p = node_named(g, "pool");
	assert_true(p->attr.pool.ceil_mode);
	assert_int_equal(p->attr.pool.kernel[0], 3);
	graph_destroy(g);
	g = load("ok_maxpool_pads_dilations_o12"); /* unused Indices output */
	p = node_named(g, "pool");
	assert_int_equal(p->attr.pool.dilations[1], 2);
	assert_int_equal(p->attr.pool.pads[3], 1);
	graph_destroy(g);
	g = load("ok_avgpool_ceil_pads_o11");
	p = node_named(g, "pool");
	assert_int_equal(p->op, GRAPH_OP_AVGPOOL);
	assert_true(p->attr.pool.count_include_pad);
	assert_true(p->attr.pool.ceil_mode);
	graph_destroy(g);
	g = load("ok_avgpool_same_upper_o7"); /* 6x5, k3 s2: pads 0,0 / 1,1 */
	p = node_named(g, "pool");
	assert_int_equal(p->attr.pool.pads[0], 0);
	assert_int_equal(p->attr.pool.pads[2], 1);
	assert_int_equal(p->attr.pool.pads[1], 1);
	assert_int_equal(p->attr.pool.pads[3], 1);
	assert_false(p->attr.pool.count_include_pad);
	graph_destroy(g);
}

static void follows_softmax_semantics_per_opset(void **state)
{
	(void)state;
	graph *g =
	    load("ok_softmax_3d_o11"); /* default axis 1, coerced to 2-D */
	const graph_node *s = node_named(g, "sm");
	assert_int_equal(s->attr.axis.axis, 1);
	assert_true(s->attr.axis.legacy);
	graph_destroy(g);
	g = load("ok_softmax_3d_o13"); /* default axis -1, single axis */
	s = node_named(g, "sm");
	assert_int_equal(s->attr.axis.axis, 2);
	assert_false(s->attr.axis.legacy);
	graph_destroy(g);
	g = load("ok_softmax_axis1_o11"); /* axis 2 = last: same either way */
	s = node_named(g, "sm");
	assert_int_equal(s->attr.axis.axis, 2);
	assert_false(s->attr.axis.legacy);
	graph_destroy(g);
}

static void removes_identity_and_dropout(void **state)
{
	(void)state;
	static const char *const names[] = {"ok_dropout_o10", "ok_dropout_o13"};
	for (int i = 0; i < 2; i++) {
		graph *g = load(names[i]);
		assert_int_equal(g->n_nodes, 1);
		assert_int_equal(g->nodes[0].op, GRAPH_OP_RELU);
		assert_int_equal(g->nodes[0].inputs[0], g->inputs[0]);
		graph_destroy(g);
	}
	graph *g = load("ok_identity");
	assert_int_equal(g->n_nodes, 1);
	assert_int_equal(g->nodes[0].op, GRAPH_OP_GEMM);
	graph_destroy(g);
}

static void folds_constants_and_shape_arithmetic(void **state)
{
	(void)state;
	static const char *const chains[] = {
	    "ok_shape_chain_o11", "ok_shape_chain_o13",
	    "ok_shape_start_end_o15", "ok_int32_initializer"};
	for (int i = 0; i < 4; i++) {
		graph *g = load(chains[i]);
		assert_int_equal(g->n_nodes, 1);
		assert_int_equal(g->nodes[0].op, GRAPH_OP_RESHAPE);
		assert_int_equal(g->nodes[0].n_inputs, 1);
		graph_destroy(g);
	}
	graph *g = load("ok_constant_scalars_o12");
	assert_int_equal(g->n_nodes, 3);
	const graph_node *m = node_named(g, "mul");
	assert_true(cf32(g, m->inputs[1])[0] == 2.5f);
	assert_int_equal(g->values[m->inputs[1]].ndim, 0);
	graph_destroy(g);
	g = load("ok_constant_value_o9");
	assert_int_equal(g->n_nodes, 1);
	assert_non_null(g->values[g->nodes[0].inputs[1]].constant);
	graph_destroy(g);
	g = load("ok_squeeze_unsqueeze_computed_o13");
	assert_int_equal(count_op(g, GRAPH_OP_RESHAPE), 2);
	int64_t mid[2] = {1, 4};
	expect_shape(g, node_named(g, "squeeze")->output, 2, mid);
	graph_destroy(g);
	g = load("ok_concat_flatten_o11");
	assert_int_equal(node_named(g, "cat")->attr.axis.axis, 1);
	assert_int_equal(node_named(g, "flat")->attr.axis.axis, 3);
	graph_destroy(g);
}

/* Checks the fused structure every torch export of ResNetS must have. */
static void check_resnet(const char *name)
{
	graph *g = load(name);
	/* stem conv, maxpool, 2 + 3 block convs, GAP, Flatten, Gemm */
	assert_int_equal(g->n_nodes, 10);
	assert_int_equal(count_op(g, GRAPH_OP_CONV), 6);
	assert_int_equal(count_op(g, GRAPH_OP_BATCHNORM), 0);
	assert_int_equal(count_op(g, GRAPH_OP_RELU), 0);
	assert_int_equal(count_op(g, GRAPH_OP_ADD), 0);
	assert_int_equal(count_op(g, GRAPH_OP_MAXPOOL), 1);
	assert_int_equal(g->n_inputs, 1);
	int64_t in[4] = {1, 1, 28, 28}, out[2] = {1, 10};
	expect_shape(g, g->inputs[0], 4, in);
	expect_shape(g, g->outputs[0], 2, out);
	int add_relu = 0, relu = 0;
	for (int n = 0; n < g->n_nodes; n++) {
		const graph_node *nd = &g->nodes[n];
		if (nd->n_postops == 2 &&
		    nd->postops[0].kind == GRAPH_POSTOP_ADD &&
		    nd->postops[1].act == GRAPH_ACT_RELU)
			add_relu++;
		else if (nd->n_postops == 1 &&
		         nd->postops[0].act == GRAPH_ACT_RELU)
			relu++;
	}
	assert_int_equal(add_relu, 2); /* each block's second conv */
	assert_int_equal(relu, 3);     /* stem and each block's first conv */
	/* 3x3 convs: stem 1*8*9, block1 2*8*8*9, block2 8*16*9 + 16*16*9, down
	 * 8*16, plus biases, plus fc 16*10 + 10 */
	int64_t params = 72 + 8 + 2 * (576 + 8) + (1152 + 16) + (2304 + 16) +
	                 (128 + 16) + 170;
	assert_int_equal(graph_total_params(g), params);
	assert_true(graph_total_macs(g) > 0);
	graph_destroy(g);
}

static void imports_torch_resnet(void **state)
{
	(void)state;
	check_resnet("torch_resnet_o11"); /* initializers listed as inputs */
	check_resnet("torch_resnet_o13"); /* symbolic batch dim */
}

static void imports_torch_mobilenetv2(void **state)
{
	(void)state;
	static const char *const names[] = {"torch_mbv2_o11", "torch_mbv2_o13"};
	for (int i = 0; i < 2; i++) {
		graph *g = load(names[i]);
		/* 11 convs, GAP, Reshape (from the folded view()), Gemm */
		assert_int_equal(g->n_nodes, 14);
		assert_int_equal(count_op(g, GRAPH_OP_CONV), 11);
		assert_int_equal(count_op(g, GRAPH_OP_RESHAPE), 1);
		assert_int_equal(count_op(g, GRAPH_OP_CLIP) +
		                     count_op(g, GRAPH_OP_ADD) +
		                     count_op(g, GRAPH_OP_BATCHNORM),
		                 0);
		int clip = 0, res = 0, dw = 0;
		for (int n = 0; n < g->n_nodes; n++) {
			const graph_node *nd = &g->nodes[n];
			for (int p = 0; p < nd->n_postops; p++) {
				clip +=
				    nd->postops[p].kind == GRAPH_POSTOP_ACT &&
				    nd->postops[p].act == GRAPH_ACT_CLIP &&
				    nd->postops[p].alpha == 0.0f &&
				    nd->postops[p].beta == 6.0f;
				res += nd->postops[p].kind == GRAPH_POSTOP_ADD;
			}
			dw +=
			    nd->op == GRAPH_OP_CONV && nd->attr.conv.group > 1;
		}
		assert_int_equal(clip, 8);
		assert_int_equal(res, 2);
		assert_int_equal(dw, 3);
		int64_t out[2] = {1, 10};
		expect_shape(g, g->outputs[0], 2, out);
		graph_destroy(g);
	}
}

/* Runs g on both engines with inputs in[] and holds output k against
 * want[k]. */
static void run_and_compare(const char *name, const graph *g,
                            const tensor *const *in, tensor *const *want)
{
	for (int k = 0; k < ENGINE_KIND_COUNT; k++) {
		engine *e = NULL;
		tensor *y[4] = {NULL};
		assert_true(g->n_outputs <= 4);
		df_err err = engine_create(g, (engine_kind)k, 1, &e);
		if (!err)
			err = engine_run(e, in, y);
		if (err)
			fail_msg("%s on %s: %s", name,
			         engine_kind_name((engine_kind)k),
			         df_err_msg());
		for (int o = 0; o < g->n_outputs; o++) {
			double abs_err = 0, rel_err = 0;
			if (tensor_max_error(y[o], want[o], 1.0f, &abs_err,
			                     &rel_err) != DF_OK)
				fail_msg("%s output %d: shape differs from the "
				         "reference",
				         name, o);
			if (rel_err > 1e-4)
				fail_msg("%s on %s, output %d: error %g", name,
				         engine_kind_name((engine_kind)k), o,
				         rel_err);
			tensor_destroy(y[o]);
		}
		engine_destroy(e);
	}
}

/* Every fixture with a reference computed by numpy/torch from the same
 * weights (make_fixtures.py REFS) gives the same outputs once imported:
 * attributes (pads, auto_pad, ceil_mode, count_include_pad, alpha/beta,
 * transA/B, axes, legacy Softmax) are read the way ONNX means them. */
static void ops_match_independent_references(void **state)
{
	(void)state;
	json_error_t jerr;
	json_t *exp = json_load_file(fixture("expected.json"), 0, &jerr);
	assert_non_null(exp);
	const char *name;
	json_t *e;
	int checked = 0;
	json_object_foreach(exp, name, e)
	{
		if (!json_is_true(json_object_get(e, "ref")))
			continue;
		graph *g = load(name);
		tensor *in[8] = {NULL}, *want[4] = {NULL};
		char file[256];
		assert_true(g->n_inputs <= 8 && g->n_outputs <= 4);
		for (int i = 0; i < g->n_inputs; i++) {
			snprintf(file, sizeof file, "ref/%s.in%d.npy", name, i);
			assert_int_equal(npy_read_file(fixture(file), &in[i]),
			                 DF_OK);
		}
		for (int o = 0; o < g->n_outputs; o++) {
			snprintf(file, sizeof file, "ref/%s.out%d.npy", name,
			         o);
			assert_int_equal(npy_read_file(fixture(file), &want[o]),
			                 DF_OK);
		}
		run_and_compare(name, g, (const tensor *const *)in, want);
		for (int i = 0; i < 8; i++)
			tensor_destroy(in[i]);
		for (int o = 0; o < 4; o++)
			tensor_destroy(want[o]);
		graph_destroy(g);
		checked++;
	}
	json_decref(exp);
	assert_true(checked >= 30);
}

/* The imported (folded, fused) torch models reproduce torch's own logits
 * on both engines: BatchNorm folding, fusion and the folded view() shape
 * arithmetic are numerically right, not just well-formed. */
static void torch_models_match_torch_outputs(void **state)
{
	(void)state;
	static const char *const names[] = {"torch_resnet_o11",
	                                    "torch_resnet_o13",
	                                    "torch_mbv2_o11", "torch_mbv2_o13"};
	for (int i = 0; i < 4; i++) {
		char file[256];
		tensor *x = NULL, *want = NULL;
		snprintf(file, sizeof file, "%s_input.npy", names[i]);
		assert_int_equal(npy_read_file(fixture(file), &x), DF_OK);
		snprintf(file, sizeof file, "%s_output.npy", names[i]);
		assert_int_equal(npy_read_file(fixture(file), &want), DF_OK);
		graph *g = load(names[i]);
		const tensor *in[1] = {x};
		run_and_compare(names[i], g, in, &want);
		graph_destroy(g);
		tensor_destroy(x);
		tensor_destroy(want);
	}
}

/* ---- malformed and unsupported models ----------------------------------- */

static void rejects_bad_models_naming_the_cause(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		df_err err;
		const char *needle;
	} cases[] = {
	    {"bad_unknown_op", DF_ENOTSUP, "node 'foo1' (Foo): unsupported op"},
	    {"bad_missing_initializer", DF_EINVAL, "input 'W' is not defined"},
	    {"bad_channel_mismatch", DF_EINVAL, "node 'conv1' (Conv)"},
	    {"bad_attr_type", DF_EINVAL,
	     "attribute 'group' must be INT, got FLOAT"},
	    {"bad_kernel_shape_3", DF_EINVAL,
	     "kernel_shape has 3 values, expected 2"},
	    {"bad_conv1d", DF_ENOTSUP,
	     "node 'conv1' (Conv): only 2-D convolution"},
	    {"bad_init_size", DF_EINVAL, "raw_data has 212 bytes"},
	    {"bad_huge_dims", DF_ETOOBIG, "initializer 'W'"},
	    {"bad_huge_dims2", DF_EINVAL, "initializer 'W'"},
	    {"bad_huge_input", DF_ETOOBIG, "graph input 'x'"},
	    {"bad_external_data", DF_ENOTSUP, "external file"},
	    {"bad_int8_weight", DF_ENOTSUP, "INT8"},
	    {"bad_domain", DF_ENOTSUP, "com.microsoft"},
	    {"bad_opset6", DF_ENOTSUP, "opset 6"},
	    {"bad_opset18", DF_ENOTSUP, "opset 18"},
	    {"bad_no_opset", DF_EINVAL, "opset_import"},
	    {"bad_duplicate_output", DF_EINVAL, "'y' is already defined"},
	    {"bad_int_input", DF_ENOTSUP, "graph input 'x' is INT64"},
	    {"bad_clip_attr_o11", DF_ENOTSUP,
	     "is not part of Clip at opset 11"},
	    {"bad_maxpool_indices_used", DF_ENOTSUP, "MaxPool node 'pool'"},
	    {"bad_dropout_mask_used", DF_ENOTSUP, "Dropout node 'drop'"},
	    {"bad_dropout_training", DF_ENOTSUP, "training_mode is true"},
	    {"bad_bn_training_o15", DF_ENOTSUP, "training_mode = 1"},
	    {"bad_reshape_allowzero", DF_ENOTSUP, "allowzero"},
	    {"bad_reshape_computed_shape", DF_ENOTSUP,
	     "node 'reshape' (Reshape): shape 's'"},
	    {"bad_flatten_negative_o9", DF_EINVAL,
	     "negative axis before opset 11"},
	    {"bad_gemm_no_c_o9", DF_EINVAL, "input C is required"},
	    {"bad_unknown_attr", DF_ENOTSUP, "attribute 'foo'"},
	    {"bad_no_shape_input", DF_EINVAL, "has no shape"},
	    {"bad_undefined_output", DF_EINVAL, "graph output 'z'"},
	    {"bad_identity_only", DF_ENOTSUP,
	     "graph output 'x' is not computed"},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		expect_err(cases[i].name, cases[i].err, cases[i].needle);
	/* file-level errors name the path */
	graph *g = NULL;
	assert_int_equal(onnx_import_file("/nonexistent/m.onnx", &g),
	                 DF_ENOENT);
	assert_non_null(strstr(df_err_msg(), "/nonexistent/m.onnx"));
	assert_int_equal(onnx_import_file(fixture(""), &g), DF_EIO);
	assert_null(g);
}

static void rejects_every_truncation(void **state)
{
	(void)state;
	size_t len = 0;
	unsigned char *buf = slurp(fixture("ok_conv_raw.onnx"), &len);
	graph *g = NULL;
	assert_int_equal(onnx_import_mem(buf, len, &g), DF_OK);
	graph_destroy(g);
	g = NULL;
	for (size_t cut = 0; cut < len; cut++) {
		df_err err = onnx_import_mem(buf, cut, &g);
		if (err == DF_OK)
			fail_msg("prefix of %zu/%zu bytes was accepted", cut,
			         len);
		assert_null(g);
	}
	free(buf);
}

static uint32_t lcg = 99;

static uint32_t next_rand(void)
{
	lcg = lcg * 1664525u + 1013904223u;
	return lcg >> 8;
}

static void survives_garbage_and_bit_flips(void **state)
{
	(void)state;
	graph *g = NULL;
	unsigned char junk[512];
	for (int i = 0; i < 3000; i++) {
		size_t n = next_rand() % sizeof junk;
		for (size_t k = 0; k < n; k++)
			junk[k] = (unsigned char)next_rand();
		if (onnx_import_mem(junk, n, &g) == DF_OK)
			fail_msg("random buffer %d accepted", i);
		assert_null(g);
	}
	assert_int_equal(onnx_import_mem(NULL, 0, &g), DF_EINVAL);
	/* mutated real models: any result but a crash; what passes is valid */
	static const char *const files[] = {"ok_conv_raw.onnx",
	                                    "torch_mbv2_o13.onnx",
	                                    "ok_shape_chain_o13.onnx"};
	int accepted = 0;
	for (int f = 0; f < 3; f++) {
		size_t len = 0;
		unsigned char *orig = slurp(fixture(files[f]), &len);
		unsigned char *buf = malloc(len);
		assert_non_null(buf);
		for (int i = 0; i < 400; i++) {
			memcpy(buf, orig, len);
			int flips = 1 + (int)(next_rand() % 4);
			for (int k = 0; k < flips; k++)
				buf[next_rand() % len] ^=
				    (unsigned char)(1u << (next_rand() % 8));
			if (onnx_import_mem(buf, len, &g) == DF_OK) {
				assert_int_equal(graph_check(g), DF_OK);
				graph_destroy(g);
				g = NULL;
				accepted++;
			}
			assert_null(g);
		}
		free(buf);
		free(orig);
	}
	/* flips inside weight bytes keep a model valid: some must pass */
	assert_true(accepted > 0);
}

/* Appends a varint. */
static size_t put_varint(unsigned char *p, uint64_t v)
{
	size_t n = 0;
	do {
		p[n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	return n;
}

static void rejects_deep_nesting(void **state)
{
	(void)state;
	/* Graph -> Node.attribute -> Attribute.g -> Graph ... nested 200 deep,
	 * wrapped in ModelProto.graph: must fail cleanly, not overflow */
	size_t cap = 1 << 16, len = 0;
	unsigned char *buf = calloc(cap, 1), *tmp = calloc(cap, 1);
	assert_non_null(buf);
	assert_non_null(tmp);
	/* innermost: an empty GraphProto */
	static const uint8_t fields[3] = {(6 << 3) | 2, (5 << 3) | 2,
	                                  (1 << 3) | 2};
	for (int level = 0; level < 200 * 3; level++) {
		size_t n = 0;
		tmp[n++] =
		    fields[level %
		           3]; /* Attribute.g, Node.attribute, Graph.node */
		n += put_varint(tmp + n, len);
		assert_true(n + len < cap);
		memcpy(tmp + n, buf, len);
		memcpy(buf, tmp, n + len);
		len += n;
	}
	size_t n = 0;
	tmp[n++] = (7 << 3) | 2; /* ModelProto.graph */
	n += put_varint(tmp + n, len);
	memcpy(tmp + n, buf, len);
	graph *g = NULL;
	assert_int_equal(onnx_import_mem(tmp, n + len, &g), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "nested"));
	assert_null(g);
	free(buf);
	free(tmp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(imports_every_valid_fixture_with_onnx_shapes),
	    cmocka_unit_test(reads_raw_and_typed_weights_alike),
	    cmocka_unit_test(resolves_auto_pad_and_conv_attributes),
	    cmocka_unit_test(canonicalizes_gemm_variants),
	    cmocka_unit_test(folds_batchnorm_for_opsets_9_and_15),
	    cmocka_unit_test(reads_clip_bounds_for_every_opset),
	    cmocka_unit_test(reads_pooling_attributes),
	    cmocka_unit_test(follows_softmax_semantics_per_opset),
	    cmocka_unit_test(removes_identity_and_dropout),
	    cmocka_unit_test(folds_constants_and_shape_arithmetic),
	    cmocka_unit_test(imports_torch_resnet),
	    cmocka_unit_test(imports_torch_mobilenetv2),
	    cmocka_unit_test(torch_models_match_torch_outputs),
	    cmocka_unit_test(ops_match_independent_references),
	    cmocka_unit_test(rejects_bad_models_naming_the_cause),
	    cmocka_unit_test(rejects_every_truncation),
	    cmocka_unit_test(survives_garbage_and_bit_flips),
	    cmocka_unit_test(rejects_deep_nesting),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
