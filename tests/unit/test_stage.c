/*
 * Unit tests for stage.c: the plan of ResNet-, MobileNetV2- and VGG-style
 * graphs, and the central invariant: for every NEURON stage, the outputs of
 * disjoint neuron subsets that cover the stage, scattered together, equal
 * the full stage output; and running all stages in plan order reproduces
 * the whole graph's output. Checked on both engines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "graph_builder.h"
#include "stage.h"

static tensor *run_graph(graph *g, engine_kind kind, const tensor *const *in)
{
	engine *e = NULL;
	df_err err = engine_create(g, kind, 1, &e);
	if (err)
		fail_msg("engine_create: %s", df_err_msg());
	tensor *outs[4] = {NULL};
	err = engine_run(e, in, outs);
	if (err)
		fail_msg("engine_run: %s", df_err_msg());
	engine_destroy(e);
	for (int i = 1; i < g->n_outputs; i++)
		tensor_destroy(outs[i]);
	return outs[0];
}

/* Splits 0..n-1 into `parts` disjoint random subsets (some may be empty). */
static int split(uint64_t *rng, int64_t n, int parts, int32_t *ids,
		 size_t *len)
{
	for (int p = 0; p < parts; p++)
		len[p] = 0;
	int32_t *tmp = malloc((size_t)n * sizeof *tmp);
	for (int64_t i = 0; i < n; i++)
		tmp[i] = (int32_t)i;
	for (int64_t i = n - 1; i > 0; i--) {
		*rng = *rng * 6364136223846793005ULL + 1;
		int64_t j = (int64_t)((*rng >> 33) % (uint64_t)(i + 1));
		int32_t t = tmp[i];
		tmp[i] = tmp[j];
		tmp[j] = t;
	}
	/* part p gets a contiguous run of the shuffled ids */
	int64_t at = 0;
	for (int p = 0; p < parts; p++) {
		int64_t take = (n - at) / (parts - p);
		memcpy(ids + at, tmp + at, (size_t)take * sizeof *ids);
		len[p] = (size_t)take;
		at += take;
	}
	free(tmp);
	return parts;
}

/*
 * Runs g stage by stage with each NEURON stage split into `parts` random
 * subsets, checks each assembled stage output against the full-stage
 * subgraph, and returns the final output.
 */
static tensor *run_staged(graph *g, const stage_plan *p, engine_kind kind,
			  const tensor *input, int parts, uint64_t seed)
{
	tensor **vals = calloc((size_t)g->n_values, sizeof *vals);
	assert_int_equal(tensor_clone(input, &vals[g->inputs[0]]), DF_OK);
	uint64_t rng = seed;
	for (int s = 0; s < p->n_stages; s++) {
		const stage *st = &p->stages[s];
		const tensor *ins[GRAPH_MAX_INPUTS * 2] = {NULL};
		for (int i = 0; i < st->n_inputs; i++) {
			assert_non_null(vals[st->inputs[i]]);
			ins[i] = vals[st->inputs[i]];
		}
		graph *sg = NULL;
		if (st->kind == STAGE_LOCAL) {
			assert_int_equal(stage_subgraph(g, p, s, NULL, 0, &sg), DF_OK);
			engine *e = NULL;
			assert_int_equal(engine_create(sg, kind, 1, &e), DF_OK);
			tensor *outs[8] = {NULL};
			assert_int_equal(engine_run(e, ins, outs), DF_OK);
			for (int i = 0; i < st->n_outputs; i++)
				vals[st->outputs[i]] = outs[i];
			engine_destroy(e);
			graph_destroy(sg);
			continue;
		}
		/* full stage */
		int32_t *all = malloc((size_t)st->n_neurons * sizeof *all);
		for (int64_t i = 0; i < st->n_neurons; i++)
			all[i] = (int32_t)i;
		assert_int_equal(stage_subgraph(g, p, s, all, (size_t)st->n_neurons, &sg),
				 DF_OK);
		tensor *full = run_graph(sg, kind, ins);
		graph_destroy(sg);
		/* subsets */
		tensor *assembled = NULL;
		assert_int_equal(tensor_create(TENSOR_F32, full->ndim, full->dims,
					       &assembled), DF_OK);
		size_t len[8];
		int32_t *ids = malloc((size_t)st->n_neurons * sizeof *ids);
		split(&rng, st->n_neurons, parts, ids, len);
		size_t at = 0;
		for (int part = 0; part < parts; part++) {
			if (len[part] == 0)
				continue;
			const int32_t *sub = ids + at;
			at += len[part];
			const tensor *sins[GRAPH_MAX_INPUTS * 2] = {ins[0]};
			tensor *slices[GRAPH_MAX_INPUTS * 2] = {NULL};
			for (int i = 1; i < st->n_inputs; i++) {
				assert_int_equal(tensor_gather(ins[i], 1, sub, len[part],
							       &slices[i]), DF_OK);
				sins[i] = slices[i];
			}
			assert_int_equal(stage_subgraph(g, p, s, sub, len[part], &sg), DF_OK);
			tensor *o = run_graph(sg, kind, sins);
			assert_int_equal(o->dims[1], (int64_t)len[part]);
			assert_int_equal(tensor_scatter(assembled, 1, sub, len[part], o),
					 DF_OK);
			tensor_destroy(o);
			graph_destroy(sg);
			for (int i = 1; i < st->n_inputs; i++)
				tensor_destroy(slices[i]);
		}
		double ma = 0, mr = 0;
		assert_int_equal(tensor_max_error(assembled, full, 1e-3f, &ma, &mr), DF_OK);
		if (mr > 1e-5)
			fail_msg("stage %d (%s): subsets differ from full by %g", s,
				 st->name, mr);
		vals[st->outputs[0]] = assembled;
		tensor_destroy(full);
		free(ids);
		free(all);
	}
	tensor *out = vals[g->outputs[0]];
	vals[g->outputs[0]] = NULL;
	for (int i = 0; i < g->n_values; i++)
		tensor_destroy(vals[i]);
	free(vals);
	return out;
}

static void check_model(graph *g, int parts, engine_kind kind)
{
	stage_plan *p = NULL;
	assert_int_equal(stage_plan_create(g, &p), DF_OK);
	const graph_value *iv = &g->values[g->inputs[0]];
	tensor *x = gb_random_tensor(42, iv->ndim, iv->dims);
	const tensor *in[] = {x};
	tensor *want = run_graph(g, kind, in);
	tensor *got = run_staged(g, p, kind, x, parts, 1234 + (uint64_t)parts);
	double ma = 0, mr = 0;
	assert_int_equal(tensor_max_error(got, want, 1e-3f, &ma, &mr), DF_OK);
	if (mr > 1e-5)
		fail_msg("staged run differs from whole graph by %g (parts %d)", mr,
			 parts);
	tensor_destroy(x);
	tensor_destroy(want);
	tensor_destroy(got);
	stage_plan_destroy(p);
}

static void subsets_cover_resnet(void **state)
{
	(void)state;
	graph *g = gb_resnet(1);
	for (int parts = 1; parts <= 5; parts += 2) {
		check_model(g, parts, ENGINE_REF);
		check_model(g, parts, ENGINE_DNNL);
	}
	graph_destroy(g);
}

static void subsets_cover_mobilenet(void **state)
{
	(void)state;
	graph *g = gb_mobilenet(2);
	for (int parts = 1; parts <= 5; parts += 2) {
		check_model(g, parts, ENGINE_REF);
		check_model(g, parts, ENGINE_DNNL);
	}
	graph_destroy(g);
}

static void subsets_cover_vgg(void **state)
{
	(void)state;
	graph *g = gb_vgg(3);
	check_model(g, 4, ENGINE_REF);
	check_model(g, 4, ENGINE_DNNL);
	graph_destroy(g);
}

static int count_kind(const stage_plan *p, stage_kind k)
{
	int n = 0;
	for (int s = 0; s < p->n_stages; s++)
		n += p->stages[s].kind == k;
	return n;
}

static void resnet_plan_shape(void **state)
{
	(void)state;
	graph *g = gb_resnet(1);
	stage_plan *p = NULL;
	assert_int_equal(stage_plan_create(g, &p), DF_OK);
	/* stem, 2 convs of block 1, downsample, 2 convs of block 2, FC */
	assert_int_equal(count_kind(p, STAGE_NEURON), 7);
	/* the identity block's second conv has the shortcut as side input */
	int with_side = 0;
	for (int s = 0; s < p->n_stages; s++)
		if (p->stages[s].kind == STAGE_NEURON && p->stages[s].n_inputs == 2)
			with_side++;
	assert_int_equal(with_side, 2);
	/* every stage input is available when the stage runs */
	for (int s = 0; s < p->n_stages; s++)
		for (int i = 0; i < p->stages[s].n_inputs; i++) {
			int v = p->stages[s].inputs[i];
			int prod = stage_plan_producer(p, v);
			assert_true(prod < s);
			if (prod < 0)
				assert_int_equal(v, g->inputs[0]);
		}
	/* costs are per neuron times neurons */
	for (int s = 0; s < p->n_stages; s++) {
		const stage *st = &p->stages[s];
		if (st->kind != STAGE_NEURON)
			continue;
		assert_true(st->macs_per_neuron > 0);
		assert_int_equal(st->macs_per_neuron * st->n_neurons, st->macs);
		assert_int_equal(st->weight_bytes_per_neuron * st->n_neurons,
				 st->weight_bytes);
	}
	stage_plan_destroy(p);
	graph_destroy(g);
}

static void mobilenet_depthwise_joins_the_stage(void **state)
{
	(void)state;
	graph *g = gb_mobilenet(2);
	stage_plan *p = NULL;
	assert_int_equal(stage_plan_create(g, &p), DF_OK);
	/* stem(+dw), project, expand(+dw), project(+add), last 1x1, FC */
	assert_int_equal(count_kind(p, STAGE_NEURON), 6);
	int with_dw = 0;
	for (int s = 0; s < p->n_stages; s++) {
		const stage *st = &p->stages[s];
		for (int i = 1; i < st->n_nodes; i++)
			with_dw += g->nodes[st->nodes[i]].op == GRAPH_OP_CONV;
	}
	assert_int_equal(with_dw, 2);
	stage_plan_destroy(p);
	graph_destroy(g);
}

static void subset_holds_only_its_weights(void **state)
{
	(void)state;
	graph *g = gb_vgg(3);
	stage_plan *p = NULL;
	assert_int_equal(stage_plan_create(g, &p), DF_OK);
	int s = 0;
	while (p->stages[s].kind != STAGE_NEURON)
		s++;
	const stage *st = &p->stages[s];
	int32_t ids[] = {3, 0, 7};
	graph *sg = NULL;
	assert_int_equal(stage_subgraph(g, p, s, ids, 3, &sg), DF_OK);
	assert_int_equal(graph_total_weight_bytes(sg), 3 * st->weight_bytes_per_neuron);
	assert_int_equal(sg->values[sg->outputs[0]].dims[1], 3);
	/* the sliced filter rows are the original rows, in request order */
	const tensor *w0 = g->values[g->nodes[st->nodes[0]].inputs[1]].constant;
	const tensor *w1 = sg->values[sg->nodes[0].inputs[1]].constant;
	size_t row = w0->numel / (size_t)w0->dims[0];
	assert_memory_equal(tensor_f32(w1), tensor_f32(w0) + 3 * row, row * 4);
	assert_memory_equal(tensor_f32(w1) + row, tensor_f32(w0), row * 4);
	graph_destroy(sg);
	stage_plan_destroy(p);
	graph_destroy(g);
}

static void bad_subsets_are_rejected(void **state)
{
	(void)state;
	graph *g = gb_vgg(3);
	stage_plan *p = NULL;
	graph *sg = NULL;
	assert_int_equal(stage_plan_create(g, &p), DF_OK);
	int s = 0;
	while (p->stages[s].kind != STAGE_NEURON)
		s++;
	int32_t dup[] = {1, 1};
	assert_int_equal(stage_subgraph(g, p, s, dup, 2, &sg), DF_EINVAL);
	int32_t big[] = {1000};
	assert_int_equal(stage_subgraph(g, p, s, big, 1, &sg), DF_EINVAL);
	int32_t neg[] = {-1};
	assert_int_equal(stage_subgraph(g, p, s, neg, 1, &sg), DF_EINVAL);
	assert_int_equal(stage_subgraph(g, p, s, dup, 0, &sg), DF_EINVAL);
	assert_int_equal(stage_subgraph(g, p, p->n_stages, dup, 1, &sg), DF_EINVAL);
	assert_int_equal(stage_subgraph(g, p, -1, dup, 1, &sg), DF_EINVAL);
	assert_null(sg);
	stage_plan_destroy(p);
	graph_destroy(g);
}

static void l1_scores_match_filter_norms(void **state)
{
	(void)state;
	graph *g = gb_vgg(3);
	stage_plan *p = NULL;
	assert_int_equal(stage_plan_create(g, &p), DF_OK);
	for (int s = 0; s < p->n_stages; s++) {
		const stage *st = &p->stages[s];
		if (st->kind != STAGE_NEURON)
			continue;
		float *sc = malloc((size_t)st->n_neurons * sizeof *sc);
		assert_int_equal(stage_neuron_l1(g, p, s, sc), DF_OK);
		const tensor *w = g->values[g->nodes[st->nodes[0]].inputs[1]].constant;
		size_t row = w->numel / (size_t)st->n_neurons;
		double want = 0;
		for (size_t j = 0; j < row; j++) {
			float v = tensor_f32(w)[row + j];
			want += v < 0 ? -v : v;
		}
		assert_float_equal(sc[1], want, 1e-3);
		free(sc);
	}
	stage_plan_destroy(p);
	graph_destroy(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(resnet_plan_shape),
		cmocka_unit_test(mobilenet_depthwise_joins_the_stage),
		cmocka_unit_test(subset_holds_only_its_weights),
		cmocka_unit_test(bad_subsets_are_rejected),
		cmocka_unit_test(l1_scores_match_filter_norms),
		cmocka_unit_test(subsets_cover_resnet),
		cmocka_unit_test(subsets_cover_mobilenet),
		cmocka_unit_test(subsets_cover_vgg),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
