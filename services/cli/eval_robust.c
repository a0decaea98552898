/*
 * eval_robust.c - `dicefleet eval MODEL_DIR --devices N ...`: accuracy of a
 * partitioned model with every combination (or a seeded sample) of --fail
 * K failed devices, through the same runner the gateway uses.
 *
 * Calibration (impute means, recon Gram matrices, `act` scores) runs on the
 * first --calib-images images of the training split; the sensitivity budget
 * on --sens-images images of the validation part of the training split
 * (the last 5,000, which training held out); accuracy on the test split.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <omp.h>

#include "cli.h"
#include "eval_robust.h"
#include "robustness.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Everything one evaluation needs, freed in one place. */
typedef struct eval_ctx {
	const model *m;
	const config *c;
	fmnist *train;
	impute_stats *stats;
	impute_recon *recon;
	partition_map *map;
	sim **sims;
	int n_sims;
	double *sens;
	double *stage_ratio;
	const float **scores;
	uint64_t *masks;
	size_t n_masks;
	double calib_s, fit_s;
} eval_ctx;

static void ctx_free(eval_ctx *e)
{
	fmnist_destroy(e->train);
	impute_stats_destroy(e->stats);
	impute_recon_destroy(e->recon);
	partition_destroy(e->map);
	for (int k = 0; k < e->n_sims; k++)
		sim_destroy(e->sims[k]);
	free(e->sims);
	free(e->sens);
	free(e->stage_ratio);
	free(e->scores);
	free(e->masks);
}

static df_err parse_params(const config *c, partition_params *pp,
			   runner_options *opt, engine_kind *kind)
{
	partition_params_default(pp);
	memset(opt, 0, sizeof *opt);
	df_err err = partition_method_parse(config_str(c, "method"), &pp->method);
	if (!err)
		err = partition_score_parse(config_str(c, "score"), &pp->score);
	if (!err)
		err = impute_mode_parse(config_str(c, "impute"), &opt->impute);
	if (!err)
		err = replica_mode_parse(config_str(c, "replica-mode"), &opt->replicas);
	if (!err)
		err = engine_kind_parse(config_str(c, "engine"), kind);
	if (err)
		return err;
	const char *budget = config_str(c, "budget");
	if (strcmp(budget, "flat") != 0 && strcmp(budget, "sensitivity") != 0)
		return df_errf(DF_EINVAL, "--budget must be flat or sensitivity, not '%s'",
			       budget);
	pp->n_devices = (int)config_int(c, "devices");
	pp->ratio = config_double(c, "ratio");
	pp->copies = (int)config_int(c, "copies");
	pp->seed = (uint64_t)config_int(c, "seed");
	opt->kind = *kind;
	/* --threads is the number of images in flight, each on single-threaded
	 * engines: tiny layers split over OpenMP threads run far slower. */
	opt->threads = 1;
	if (config_int(c, "fail") > pp->n_devices)
		return df_errf(DF_EINVAL, "--fail %lld is more than --devices %d",
			       (long long)config_int(c, "fail"), pp->n_devices);
	return DF_OK;
}

/* Calibration statistics, `act` scores and the sensitivity budget. */
static df_err prepare(eval_ctx *e, partition_params *pp, runner_options *opt,
		      engine_kind kind)
{
	const config *c = e->c;
	const model *m = e->m;
	const int n_st = m->plan->n_stages;
	bool need_stats = opt->impute != IMPUTE_ZERO ||
			  pp->score != PARTITION_SCORE_L1;
	bool sens_budget = strcmp(config_str(c, "budget"), "sensitivity") == 0;
	df_err err = DF_OK;
	if (need_stats || sens_budget)
		err = fmnist_load(config_str(c, "data-dir"), FMNIST_TRAIN, 0, &e->train);
	if (!err && need_stats) {
		size_t n = (size_t)config_int(c, "calib-images");
		double t0 = now_s();
		fprintf(stderr, "calibrating on %zu training images...\n", n);
		err = robust_calibrate(m->g, m->plan, &m->dir->input, e->train,
				       n < e->train->count ? n : e->train->count,
				       kind, opt->threads, &e->stats);
		e->calib_s = now_s() - t0;
		opt->stats = e->stats;
	}
	if (!err && pp->score != PARTITION_SCORE_L1) {
		e->scores = calloc((size_t)n_st + 1, sizeof *e->scores);
		if (!e->scores)
			return DF_ENOMEM;
		for (int s = 0; s < n_st; s++)
			e->scores[s] = impute_stats_score(e->stats, s, (int)pp->score);
		pp->scores = e->scores;
	}
	if (!err && sens_budget) {
		/* validation images: the last 5,000 of the training split */
		size_t n = (size_t)config_int(c, "sens-images");
		const size_t val0 = e->train->count > 5000 ? e->train->count - 5000 : 0;
		fmnist val = *e->train;
		val.count = e->train->count - val0;
		val.images += val0 * (size_t)val.rows * (size_t)val.cols;
		val.labels += val0;
		e->sens = calloc((size_t)n_st + 1, sizeof *e->sens);
		e->stage_ratio = calloc((size_t)n_st + 1, sizeof *e->stage_ratio);
		if (!e->sens || !e->stage_ratio)
			return DF_ENOMEM;
		fprintf(stderr, "measuring stage sensitivity on %zu validation images...\n",
			n);
		runner_options sopt = *opt;
		if (sopt.impute == IMPUTE_RECON)
			sopt.impute = IMPUTE_MEAN; /* no maps for single-stage maps */
		err = robust_stage_sensitivity(m->g, m->plan, pp, &sopt,
					       &m->dir->input, &val, n, kind,
					       opt->threads, e->sens);
		if (!err)
			err = robust_allocate_budget(m->plan, e->sens, pp->ratio,
						     e->stage_ratio);
		pp->stage_ratio = e->stage_ratio;
	}
	return err;
}

static json_t *mask_ids(const partition_map *map, uint64_t mask)
{
	json_t *a = json_array();
	for (int d = 0; d < map->n_devices; d++)
		if ((mask >> d) & 1)
			json_array_append_new(a, json_string(map->devices[d]));
	return a;
}

static json_t *float_array(const double *v, int n)
{
	json_t *a = json_array();
	for (int i = 0; i < n; i++)
		json_array_append_new(a, json_real(v[i]));
	return a;
}

int eval_robust(const config *c, const model *m, const fmnist *test)
{
	eval_ctx e = {.m = m, .c = c};
	partition_params pp;
	runner_options opt;
	engine_kind kind;
	int rc = CLI_FAIL;
	json_t *combos = NULL, *out = NULL;
	double t0 = now_s();
	df_err err = parse_params(c, &pp, &opt, &kind);
	if (err) {
		cli_fail("eval", "options");
		return CLI_USAGE;
	}
	const int fail = (int)config_int(c, "fail");
	const size_t limit = (size_t)config_int(c, "limit");
	if ((err = prepare(&e, &pp, &opt, kind))) {
		cli_fail("eval", "calibration");
		goto out;
	}
	if ((err = partition_create(m->g, m->plan, &pp, &e.map))) {
		cli_fail("eval", "partition");
		goto out;
	}
	if (opt.impute == IMPUTE_RECON) {
		double t1 = now_s();
		err = impute_recon_fit(e.stats, m->plan, e.map, fail > 0 ? fail : 1,
				       &e.recon);
		e.fit_s = now_s() - t1;
		if (err) {
			cli_fail("eval", "fitting recon maps");
			goto out;
		}
		opt.recon = e.recon;
	}
	int workers = (int)config_int(c, "threads");
	if (workers <= 0)
		workers = omp_get_max_threads();
	e.sims = calloc((size_t)workers, sizeof *e.sims);
	if (!e.sims) {
		cli_fail("eval", "out of memory");
		goto out;
	}
	for (; e.n_sims < workers; e.n_sims++) {
		if ((err = sim_create(m->g, m->plan, e.map, kind, opt.threads,
				      &e.sims[e.n_sims]))) {
			cli_fail("eval", "building the simulated devices");
			goto out;
		}
	}
	if ((err = robust_failure_sets(pp.n_devices, fail,
				       (size_t)config_int(c, "max-combos"),
				       pp.seed, &e.masks, &e.n_masks))) {
		cli_fail("eval", "--fail");
		goto out;
	}
	cli_progress_state prog = {.tty = isatty(2)};
	char label[64];
	robust_run nofail;
	prog.label = "no failure";
	if ((err = robust_accuracy(m->g, m->plan, e.map, e.sims, e.n_sims, &opt,
				   &m->dir->input, test, limit, 0, cli_progress,
				   &prog, &nofail))) {
		cli_fail("eval", "accuracy");
		goto out;
	}
	double sum = 0, lo = 1, hi = 0, cov = 0;
	combos = json_array();
	int64_t fallbacks = 0;
	for (size_t k = 0; k < e.n_masks; k++) {
		robust_run r;
		snprintf(label, sizeof label, "failure set %zu/%zu", k + 1, e.n_masks);
		prog = (cli_progress_state){.label = label, .tty = isatty(2)};
		if ((err = robust_accuracy(m->g, m->plan, e.map, e.sims, e.n_sims, &opt,
					   &m->dir->input, test, limit, e.masks[k],
					   cli_progress, &prog, &r))) {
			cli_fail("eval", "accuracy");
			goto out;
		}
		sum += r.accuracy;
		cov += r.coverage_mean;
		lo = r.accuracy < lo ? r.accuracy : lo;
		hi = r.accuracy > hi ? r.accuracy : hi;
		fallbacks += r.recon_fallbacks;
		json_array_append_new(combos, json_pack("{s:o, s:f, s:f}", "failed",
							mask_ids(e.map, e.masks[k]),
							"accuracy", r.accuracy,
							"coverage", r.coverage_mean));
	}
	double mean = sum / (double)e.n_masks;
	partition_load *loads = calloc((size_t)e.map->n_devices, sizeof *loads);
	partition_load whole;
	if (!loads || partition_loads(e.map, m->plan, loads, &whole)) {
		free(loads);
		cli_fail("eval", "loads");
		goto out;
	}
	int64_t held = 0, max_dev = 0;
	for (int d = 0; d < e.map->n_devices; d++) {
		held += loads[d].weight_bytes;
		max_dev = loads[d].weight_bytes > max_dev ? loads[d].weight_bytes : max_dev;
	}
	free(loads);
	out = json_pack("{s:s, s:s, s:i, s:f, s:i, s:s, s:s, s:s, s:s, s:i, s:I,"
			" s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:I, s:I}",
			"model", m->dir->name, "method", partition_method_name(pp.method),
			"devices", pp.n_devices, "ratio", e.map->ratio,
			"copies", e.map->copies, "score", partition_score_name(pp.score),
			"impute", impute_mode_name(opt.impute),
			"replica_mode", replica_mode_name(opt.replicas),
			"budget", config_str(c, "budget"),
			"fail", fail, "combos", (json_int_t)e.n_masks,
			"images", (json_int_t)nofail.images,
			"accuracy_nofail", nofail.accuracy, "accuracy_mean", mean,
			"accuracy_min", lo, "accuracy_max", hi,
			"retained", nofail.accuracy > 0 ? mean / nofail.accuracy : 0,
			"coverage_mean", cov / (double)e.n_masks,
			"memory_overhead", whole.weight_bytes
				? (double)held / (double)whole.weight_bytes - 1 : 0,
			"max_device_weight_bytes", (json_int_t)max_dev,
			"unpartitioned_weight_bytes", (json_int_t)whole.weight_bytes,
			"recon_fallbacks", (json_int_t)fallbacks);
	if (!out) {
		cli_fail("eval", "out of memory");
		goto out;
	}
	json_object_set_new(out, "per_combo", combos);
	combos = NULL;
	if (e.stats) {
		json_object_set_new(out, "calib_images",
				    json_integer((json_int_t)impute_stats_images(e.stats)));
		json_object_set_new(out, "calib_seconds", json_real(e.calib_s));
	}
	if (e.recon) {
		json_object_set_new(out, "recon_maps",
				    json_integer((json_int_t)impute_recon_count(e.recon)));
		json_object_set_new(out, "recon_bytes",
				    json_integer((json_int_t)impute_recon_bytes(e.recon)));
		json_object_set_new(out, "recon_fit_seconds", json_real(e.fit_s));
	}
	if (e.stage_ratio) {
		json_object_set_new(out, "stage_sensitivity",
				    float_array(e.sens, m->plan->n_stages));
		json_object_set_new(out, "stage_ratio",
				    float_array(e.stage_ratio, m->plan->n_stages));
	}
	json_object_set_new(out, "seconds", json_real(now_s() - t0));
	char *s = json_dumps(out, JSON_COMPACT);
	if (s) {
		puts(s);
		free(s);
		rc = CLI_OK;
	}
out:
	json_decref(combos);
	json_decref(out);
	ctx_free(&e);
	return rc;
}
