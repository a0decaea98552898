/*
 * Unit tests for runner.c and impute.c: the partitioned request path
 * reproduces the whole model without failures for every method and device
 * count; `full` survives any single failure exactly; a detected failure
 * (down mask) and an undetected one (calls fail) give the same answer;
 * missing neurons are filled as the impute mode says; recon maps recover
 * channels that are linear in the others.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph_builder.h"
#include "runner.h"

static engine_kind kind = ENGINE_REF;

static tensor *whole(graph *g, const tensor *x)
{
	engine *e = NULL;
	assert_int_equal(engine_create(g, kind, 1, &e), DF_OK);
	tensor *out[1] = {NULL};
	const tensor *in[] = {x};
	assert_int_equal(engine_run(e, in, out), DF_OK);
	engine_destroy(e);
	return out[0];
}

static partition_map *make(graph *g, stage_plan *p, partition_method m,
			   int devices, double ratio, int copies)
{
	partition_params pp;
	partition_params_default(&pp);
	pp.method = m;
	pp.n_devices = devices;
	pp.ratio = ratio;
	pp.copies = copies;
	partition_map *map = NULL;
	assert_int_equal(partition_create(g, p, &pp, &map), DF_OK);
	return map;
}

/* Runs x through a fresh runner + simulator. */
static tensor *fleet(graph *g, stage_plan *p, partition_map *m,
		     const runner_options *opt, const tensor *x,
		     uint64_t down, uint64_t failing, runner_result *res)
{
	sim *s = NULL;
	runner *r = NULL;
	assert_int_equal(sim_create(g, p, m, kind, 1, &s), DF_OK);
	sim_set_failing(s, failing);
	df_err err = runner_create(g, p, m, opt, &r);
	if (err)
		fail_msg("runner_create: %s", df_err_msg());
	runner_backend be = sim_backend(s);
	tensor *y = NULL;
	err = runner_infer(r, x, down, &be, &y, res);
	if (err)
		fail_msg("runner_infer: %s", df_err_msg());
	runner_destroy(r);
	sim_destroy(s);
	return y;
}

static double rel_err(const tensor *a, const tensor *b)
{
	double ma = 0, mr = 0;
	assert_int_equal(tensor_max_error(a, b, 1e-3f, &ma, &mr), DF_OK);
	return mr;
}

static void no_failure_equals_whole_model(void **state)
{
	(void)state;
	graph *graphs[] = {gb_resnet(11), gb_mobilenet(12), gb_vgg(13)};
	runner_options opt = {.impute = IMPUTE_ZERO, .kind = kind, .threads = 1};
	for (int gi = 0; gi < 3; gi++) {
		graph *g = graphs[gi];
		stage_plan *p = NULL;
		assert_int_equal(stage_plan_create(g, &p), DF_OK);
		tensor *x = gb_random_tensor(7, g->values[g->inputs[0]].ndim,
					     g->values[g->inputs[0]].dims);
		tensor *want = whole(g, x);
		static const int devs[] = {1, 2, 4};
		for (int m = 0; m < PARTITION_METHOD_COUNT; m++)
			for (int di = 0; di < 3; di++) {
				partition_map *map = make(g, p, (partition_method)m, devs[di],
							  0.25, 2);
				runner_result res;
				for (int mode = 0; mode < REPLICA_MODE_COUNT; mode++) {
					opt.replicas = (replica_mode)mode;
					tensor *y = fleet(g, p, map, &opt, x, 0, 0, &res);
					if (rel_err(y, want) > 1e-5)
						fail_msg("graph %d %s %d devices: error %g", gi,
							 partition_method_name((partition_method)m),
							 devs[di], rel_err(y, want));
					assert_true(res.coverage == 1.0);
					assert_int_equal(res.neurons_imputed, 0);
					assert_int_equal(res.failed_devices, 0);
					tensor_destroy(y);
				}
				partition_destroy(map);
			}
		tensor_destroy(x);
		tensor_destroy(want);
		stage_plan_destroy(p);
		graph_destroy(g);
	}
}

static void full_survives_any_single_failure(void **state)
{
	(void)state;
	graph *g = gb_resnet(21);
	stage_plan *p = NULL;
	assert_int_equal(stage_plan_create(g, &p), DF_OK);
	tensor *x = gb_random_tensor(8, 4, g->values[g->inputs[0]].dims);
	tensor *want = whole(g, x);
	partition_map *map = make(g, p, PARTITION_FULL, 4, 1, 2);
	runner_options opt = {.impute = IMPUTE_ZERO, .kind = kind, .threads = 1};
	for (int d = 0; d < 4; d++) {
		runner_result res;
		tensor *y = fleet(g, p, map, &opt, x, 1ULL << d, 0, &res);
		assert_true(rel_err(y, want) <= 1e-5);
		assert_true(res.coverage == 1.0);
		assert_true(res.neurons_replica > 0);
		assert_int_equal(res.failed_devices, 1ULL << d);
		tensor_destroy(y);
		/* undetected: the calls fail, the replica round recovers */
		y = fleet(g, p, map, &opt, x, 0, 1ULL << d, &res);
		assert_true(rel_err(y, want) <= 1e-5);
		assert_true(res.coverage == 1.0);
		assert_int_equal(res.failed_devices, 1ULL << d);
		tensor_destroy(y);
	}
	partition_destroy(map);
	tensor_destroy(x);
	tensor_destroy(want);
	stage_plan_destroy(p);
	graph_destroy(g);
}

/* A backend over the simulator that counts the calls of round 2 and the
 * distinct stages they were for. */
typedef struct round_spy {
	runner_backend inner;
	int round2_calls;
	int round2_stages;
	int last_stage;
} round_spy;

static void spy_execute(void *ctx, runner_call *calls, size_t n)
{
	round_spy *spy = ctx;
	for (size_t i = 0; i < n; i++)
		if (calls[i].round == 2) {
			spy->round2_calls++;
			if (calls[i].stage != spy->last_stage)
				spy->round2_stages++;
			spy->last_stage = calls[i].stage;
		}
	spy->inner.execute(spy->inner.ctx, calls, n);
}

/* A failure known before the stage (down mask, or a call that failed at an
 * earlier stage of the same request) is served by the replica holders in
 * the first round: no second round trip. */
static void known_failures_need_no_second_round(void **state)
{
	(void)state;
	graph *g = gb_resnet(41);
	stage_plan *p = NULL;
	assert_int_equal(stage_plan_create(g, &p), DF_OK);
	tensor *x = gb_random_tensor(11, 4, g->values[g->inputs[0]].dims);
	tensor *want = whole(g, x);
	partition_map *map = make(g, p, PARTITION_FULL, 4, 1, 2);
	runner_options opt = {.impute = IMPUTE_ZERO, .kind = kind, .threads = 1};
	for (int d = 0; d < 4; d++)
		for (int detected = 0; detected < 2; detected++) {
			sim *sm = NULL;
			runner *r = NULL;
			assert_int_equal(sim_create(g, p, map, kind, 1, &sm), DF_OK);
			sim_set_failing(sm, 1ULL << d);
			assert_int_equal(runner_create(g, p, map, &opt, &r), DF_OK);
			round_spy spy = {.inner = sim_backend(sm), .last_stage = -1};
			runner_backend be = {.ctx = &spy, .execute = spy_execute};
			tensor *y = NULL;
			runner_result res;
			assert_int_equal(runner_infer(r, x, detected ? 1ULL << d : 0,
						      &be, &y, &res), DF_OK);
			assert_true(rel_err(y, want) <= 1e-5);
			assert_true(res.coverage == 1.0);
			if (detected)
				assert_int_equal(spy.round2_calls, 0);
			else /* only the stage where the failure shows */
				assert_int_equal(spy.round2_stages, 1);
			tensor_destroy(y);
			runner_destroy(r);
			sim_destroy(sm);
		}
	partition_destroy(map);
	tensor_destroy(x);
	tensor_destroy(want);
	stage_plan_destroy(p);
	graph_destroy(g);
}

static void detected_and_undetected_failures_agree(void **state)
{
	(void)state;
	graph *g = gb_mobilenet(31);
	stage_plan *p = NULL;
	assert_int_equal(stage_plan_create(g, &p), DF_OK);
	tensor *x = gb_random_tensor(9, 4, g->values[g->inputs[0]].dims);
	partition_map *map = make(g, p, PARTITION_ROBUSTDICE, 4, 0.25, 2);
	runner_options opt = {.impute = IMPUTE_ZERO, .kind = kind, .threads = 1};
	for (uint64_t mask = 1; mask < 16; mask++) {
		runner_result a, b;
		tensor *ya = fleet(g, p, map, &opt, x, mask, 0, &a);
		tensor *yb = fleet(g, p, map, &opt, x, 0, mask, &b);
		assert_true(rel_err(ya, yb) == 0.0);
		assert_true(a.coverage == b.coverage);
		assert_true(a.coverage < 1.0);
		assert_int_equal(a.neurons_imputed, b.neurons_imputed);
		assert_int_equal(a.neurons_computed + a.neurons_imputed, a.neurons_total);
		tensor_destroy(ya);
		tensor_destroy(yb);
	}
	partition_destroy(map);
	tensor_destroy(x);
	stage_plan_destroy(p);
	graph_destroy(g);
}

static void active_mode_agrees_with_standby_under_failures(void **state)
{
	(void)state;
	graph *g = gb_resnet(61);
	stage_plan *p = NULL;
	assert_int_equal(stage_plan_create(g, &p), DF_OK);
	tensor *x = gb_random_tensor(10, 4, g->values[g->inputs[0]].dims);
	partition_map *map = make(g, p, PARTITION_ROBUSTDICE, 4, 0.5, 3);
	for (uint64_t mask = 0; mask < 16; mask++) {
		runner_result a, b;
		runner_options opt = {.impute = IMPUTE_ZERO, .kind = kind, .threads = 1};
		opt.replicas = REPLICA_STANDBY;
		tensor *ya = fleet(g, p, map, &opt, x, 0, mask, &a);
		opt.replicas = REPLICA_ACTIVE;
		tensor *yb = fleet(g, p, map, &opt, x, 0, mask, &b);
		assert_true(rel_err(ya, yb) <= 1e-6);
		assert_true(a.coverage == b.coverage);
		assert_int_equal(a.neurons_imputed, b.neurons_imputed);
		/* a cancelled (unneeded) call is not a failure */
		assert_int_equal(a.failed_devices, mask);
		assert_int_equal(b.failed_devices & ~mask, 0);
		tensor_destroy(ya);
		tensor_destroy(yb);
	}
	partition_destroy(map);
	tensor_destroy(x);
	stage_plan_destroy(p);
	graph_destroy(g);
}

/* Observer that checks imputed channels hold the expected value. */
typedef struct probe {
	const partition_map *m;
	uint64_t dead;
	const impute_stats *stats;
	impute_mode mode;
	int checked;
} probe;

static df_err check_imputed(void *ctx, int s, const tensor *t)
{
	probe *pr = ctx;
	const partition_stage *ps = &pr->m->stages[s];
	if (ps->on_gateway)
		return DF_OK;
	size_t hw = t->numel / (size_t)t->dims[1];
	for (int64_t i = 0; i < ps->n_neurons; i++) {
		if (!((pr->dead >> ps->primary[i]) & 1))
			continue;
		float want = pr->mode == IMPUTE_MEAN ? impute_stats_mean(pr->stats, s)[i] : 0;
		for (size_t k = 0; k < hw; k++)
			assert_true(tensor_f32(t)[(size_t)i * hw + k] == want);
		pr->checked++;
	}
	return DF_OK;
}

static df_err feed_stats(void *ctx, int s, const tensor *t)
{
	return impute_stats_observe(ctx, s, t);
}

static impute_stats *calibrate(graph *g, stage_plan *p, int n)
{
	impute_stats *st = NULL;
	assert_int_equal(impute_stats_create(g, p, &st), DF_OK);
	partition_map *one = make(g, p, PARTITION_SEQUENTIAL, 1, 0, 1);
	runner_options opt = {.impute = IMPUTE_ZERO, .kind = kind, .threads = 1};
	sim *s = NULL;
	runner *r = NULL;
	assert_int_equal(sim_create(g, p, one, kind, 1, &s), DF_OK);
	assert_int_equal(runner_create(g, p, one, &opt, &r), DF_OK);
	runner_set_observer(r, feed_stats, st);
	runner_backend be = sim_backend(s);
	for (int i = 0; i < n; i++) {
		tensor *x = gb_random_tensor(1000 + (uint64_t)i, 4,
					     g->values[g->inputs[0]].dims);
		tensor *y = NULL;
		assert_int_equal(runner_infer(r, x, 0, &be, &y, NULL), DF_OK);
		tensor_destroy(x);
		tensor_destroy(y);
	}
	assert_int_equal(impute_stats_finish(st), DF_OK);
	assert_int_equal(impute_stats_images(st), n);
	runner_destroy(r);
	sim_destroy(s);
	partition_destroy(one);
	return st;
}

static void zero_and_mean_fill_missing_channels(void **state)
{
	(void)state;
	graph *g = gb_vgg(41);
	stage_plan *p = NULL;
	assert_int_equal(stage_plan_create(g, &p), DF_OK);
	impute_stats *st = calibrate(g, p, 8);
	partition_map *map = make(g, p, PARTITION_SEQUENTIAL, 3, 0, 1);
	tensor *x = gb_random_tensor(5, 4, g->values[g->inputs[0]].dims);
	for (int mode = IMPUTE_ZERO; mode <= IMPUTE_MEAN; mode++) {
		runner_options opt = {.impute = (impute_mode)mode, .stats = st,
				      .kind = kind, .threads = 1};
		sim *s = NULL;
		runner *r = NULL;
		assert_int_equal(sim_create(g, p, map, kind, 1, &s), DF_OK);
		assert_int_equal(runner_create(g, p, map, &opt, &r), DF_OK);
		probe pr = {.m = map, .dead = 2, .stats = st, .mode = (impute_mode)mode};
		runner_set_observer(r, check_imputed, &pr);
		runner_backend be = sim_backend(s);
		tensor *y = NULL;
		runner_result res;
		assert_int_equal(runner_infer(r, x, 2, &be, &y, &res), DF_OK);
		assert_true(pr.checked > 0);
		assert_int_equal(res.neurons_imputed, pr.checked);
		tensor_destroy(y);
		runner_destroy(r);
		sim_destroy(s);
	}
	tensor_destroy(x);
	partition_destroy(map);
	impute_stats_destroy(st);
	stage_plan_destroy(p);
	graph_destroy(g);
}

static void recon_beats_zero_and_mean(void **state)
{
	(void)state;
	graph *g = gb_vgg(51);
	stage_plan *p = NULL;
	assert_int_equal(stage_plan_create(g, &p), DF_OK);
	impute_stats *st = calibrate(g, p, 64);
	partition_map *map = make(g, p, PARTITION_SEQUENTIAL, 4, 0, 1);
	impute_recon *rc = NULL;
	assert_int_equal(impute_recon_fit(st, p, map, 1, &rc), DF_OK);
	assert_true(impute_recon_count(rc) > 0);
	assert_true(impute_recon_bytes(rc) > 0);
	/* mean squared error of the logits vs the whole model over inputs
	 * the calibration never saw, one failed device */
	double mse[IMPUTE_MODE_COUNT] = {0};
	for (int i = 0; i < 16; i++) {
		tensor *x = gb_random_tensor(5000 + (uint64_t)i, 4,
					     g->values[g->inputs[0]].dims);
		tensor *want = whole(g, x);
		for (int mode = 0; mode < IMPUTE_MODE_COUNT; mode++) {
			runner_options opt = {.impute = (impute_mode)mode, .stats = st,
					      .recon = rc, .kind = kind, .threads = 1};
			runner_result res;
			tensor *y = fleet(g, p, map, &opt, x, 1ULL << (i % 4), 0, &res);
			if (mode == IMPUTE_RECON)
				assert_int_equal(res.recon_fallbacks, 0);
			for (size_t k = 0; k < y->numel; k++) {
				double d = tensor_f32(y)[k] - tensor_f32(want)[k];
				mse[mode] += d * d;
			}
			tensor_destroy(y);
		}
		tensor_destroy(want);
		tensor_destroy(x);
	}
	assert_true(mse[IMPUTE_RECON] < mse[IMPUTE_MEAN]);
	assert_true(mse[IMPUTE_RECON] < mse[IMPUTE_ZERO]);
	/* two failures were not fitted: recon falls back to mean, and says so */
	runner_options opt = {.impute = IMPUTE_RECON, .stats = st, .recon = rc,
			      .kind = kind, .threads = 1};
	tensor *x = gb_random_tensor(77, 4, g->values[g->inputs[0]].dims);
	runner_result res;
	tensor *y = fleet(g, p, map, &opt, x, 3, 0, &res);
	assert_true(res.recon_fallbacks > 0);
	tensor_destroy(y);
	tensor_destroy(x);
	impute_recon_destroy(rc);
	partition_destroy(map);
	impute_stats_destroy(st);
	stage_plan_destroy(p);
	graph_destroy(g);
}

static void recon_recovers_linear_channels_exactly(void **state)
{
	(void)state;
	/* A stage whose channel 2 = 2*ch0 - ch1 + 0.5 everywhere: the fitted
	 * map must predict it from channels 0 and 1. Built by hand: a 1x1 conv
	 * with the third filter row a combination of the first two. */
	gb b;
	int x = gb_begin(&b, 3, 4, 5, 5);
	int y = gb_conv(&b, x, 4, 3, 1, 1, 0, 1);
	graph *g = gb_end(&b, y);
	graph_node *c = &g->nodes[0];
	float *w = tensor_f32(g->values[c->inputs[1]].constant);
	float *bias = tensor_f32(g->values[c->inputs[2]].constant);
	for (int k = 0; k < 4; k++)
		w[8 + k] = 2 * w[k] - w[4 + k];
	bias[2] = 2 * bias[0] - bias[1] + 0.5f;
	stage_plan *p = NULL;
	assert_int_equal(stage_plan_create(g, &p), DF_OK);
	impute_stats *st = NULL;
	assert_int_equal(impute_stats_create(g, p, &st), DF_OK);
	for (int i = 0; i < 4; i++) {
		tensor *in = gb_random_tensor(300 + (uint64_t)i, 4,
					      g->values[g->inputs[0]].dims);
		tensor *out = whole(g, in);
		assert_int_equal(impute_stats_observe(st, 0, out), DF_OK);
		tensor_destroy(in);
		tensor_destroy(out);
	}
	assert_int_equal(impute_stats_finish(st), DF_OK);
	/* map: 2 devices, channel 2 alone on device 1 */
	partition_params pp;
	partition_params_default(&pp);
	pp.method = PARTITION_SEQUENTIAL;
	pp.n_devices = 2;
	pp.ratio = 0;
	pp.copies = 1;
	partition_map *m = NULL;
	assert_int_equal(partition_create(g, p, &pp, &m), DF_OK);
	gb_distribute_stage(m, 0);
	m->stages[0].primary[0] = 0;
	m->stages[0].primary[1] = 0;
	m->stages[0].primary[2] = 1;
	impute_recon *rc = NULL;
	assert_int_equal(impute_recon_fit(st, p, m, 1, &rc), DF_OK);
	tensor *in = gb_random_tensor(999, 4, g->values[g->inputs[0]].dims);
	tensor *want = whole(g, in);
	tensor *t = NULL;
	assert_int_equal(tensor_clone(want, &t), DF_OK);
	bool missing[3] = {false, false, true};
	bool fell = true;
	assert_int_equal(impute_apply(IMPUTE_RECON, st, rc, 0, t, missing, &fell), DF_OK);
	assert_false(fell);
	if (rel_err(t, want) > 1e-3)
		fail_msg("recon error %g", rel_err(t, want));
	tensor_destroy(t);
	tensor_destroy(want);
	tensor_destroy(in);
	impute_recon_destroy(rc);
	partition_destroy(m);
	impute_stats_destroy(st);
	stage_plan_destroy(p);
	graph_destroy(g);
}

static void stats_match_a_direct_computation(void **state)
{
	(void)state;
	gb b;
	int x = gb_begin(&b, 5, 3, 4, 4);
	graph *g = gb_end(&b, gb_conv(&b, x, 3, 6, 3, 1, 1, 1));
	stage_plan *p = NULL;
	assert_int_equal(stage_plan_create(g, &p), DF_OK);
	impute_stats *st = NULL;
	assert_int_equal(impute_stats_create(g, p, &st), DF_OK);
	double sum[6] = {0}, sq[6] = {0}, ab[6] = {0};
	size_t px = 0;
	for (int i = 0; i < 3; i++) {
		tensor *t = gb_random_tensor(40 + (uint64_t)i, 4, g->values[g->outputs[0]].dims);
		size_t hw = t->numel / 6;
		for (size_t c = 0; c < 6; c++)
			for (size_t k = 0; k < hw; k++) {
				double v = tensor_f32(t)[c * hw + k];
				sum[c] += v;
				sq[c] += v * v;
				ab[c] += v < 0 ? -v : v;
			}
		px += hw;
		assert_int_equal(impute_stats_observe(st, 0, t), DF_OK);
		tensor_destroy(t);
	}
	assert_null(impute_stats_var(st, 0)); /* not finished yet */
	assert_int_equal(impute_stats_finish(st), DF_OK);
	for (int c = 0; c < 6; c++) {
		double m = sum[c] / (double)px;
		assert_float_equal(impute_stats_mean(st, 0)[c], m, 1e-5);
		assert_float_equal(impute_stats_act(st, 0)[c], ab[c] / (double)px, 1e-5);
		assert_float_equal(impute_stats_var(st, 0)[c], sq[c] / (double)px - m * m, 1e-5);
	}
	assert_ptr_equal(impute_stats_score(st, 0, PARTITION_SCORE_VAR), impute_stats_var(st, 0));
	assert_null(impute_stats_score(st, 0, PARTITION_SCORE_L1));
	/* observing after finish is refused */
	tensor *late = gb_random_tensor(99, 4, g->values[g->outputs[0]].dims);
	assert_int_equal(impute_stats_observe(st, 0, late), DF_EINVAL);
	tensor_destroy(late);
	impute_stats_destroy(st);
	stage_plan_destroy(p);
	graph_destroy(g);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--dnnl") == 0)
		kind = ENGINE_DNNL;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(no_failure_equals_whole_model),
		cmocka_unit_test(full_survives_any_single_failure),
		cmocka_unit_test(known_failures_need_no_second_round),
		cmocka_unit_test(detected_and_undetected_failures_agree),
		cmocka_unit_test(active_mode_agrees_with_standby_under_failures),
		cmocka_unit_test(zero_and_mean_fill_missing_channels),
		cmocka_unit_test(recon_beats_zero_and_mean),
		cmocka_unit_test(recon_recovers_linear_channels_exactly),
		cmocka_unit_test(stats_match_a_direct_computation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
