/*
 * robustness.c - see robustness.h. The per-image work is runner_infer() on
 * the simulator; this file only feeds images, counts, and enumerates
 * failure sets.
 */
#include "robustness.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "scores.h"

df_err robust_dataset_input(const fmnist *d, size_t i,
			    const model_input_spec *spec, tensor *t)
{
	const uint8_t *px = fmnist_image(d, i);
	if (!px)
		return df_errf(DF_EINVAL, "image %zu outside the %zu loaded", i,
			       d->count);
	image img = {.width = d->cols, .height = d->rows, .channels = 1,
		     .pixels = (uint8_t *)px};
	return image_fill_tensor(&img, spec, t);
}

static df_err observe_stats(void *ctx, int s, const tensor *t)
{
	return impute_stats_observe(ctx, s, t);
}

static df_err input_tensor(const graph *g, tensor **t)
{
	const graph_value *v = &g->values[g->inputs[0]];
	return tensor_create(TENSOR_F32, v->ndim, v->dims, t);
}

df_err robust_calibrate(const graph *g, const stage_plan *p,
			const model_input_spec *spec, const fmnist *calib,
			size_t n, engine_kind kind, int threads,
			impute_stats **out)
{
	if (n == 0 || n > calib->count)
		return df_errf(DF_EINVAL, "calibration needs 1..%zu images, asked %zu",
			       calib->count, n);
	partition_params pp;
	partition_params_default(&pp);
	pp.method = PARTITION_SEQUENTIAL;
	pp.n_devices = 1;
	pp.ratio = 0;
	pp.copies = 1;
	partition_map *one = NULL;
	impute_stats *st = NULL;
	sim *s = NULL;
	runner *r = NULL;
	tensor *x = NULL;
	runner_options opt = {.impute = IMPUTE_ZERO, .kind = kind,
			      .threads = threads};
	df_err err = partition_create(g, p, &pp, &one);
	if (!err)
		err = impute_stats_create(g, p, &st);
	if (!err)
		err = sim_create(g, p, one, kind, threads, &s);
	if (!err)
		err = runner_create(g, p, one, &opt, &r);
	if (!err)
		err = input_tensor(g, &x);
	if (err)
		goto out;
	runner_set_observer(r, observe_stats, st);
	runner_backend be = sim_backend(s);
	for (size_t i = 0; i < n && !err; i++) {
		tensor *y = NULL;
		err = robust_dataset_input(calib, i, spec, x);
		if (!err)
			err = runner_infer(r, x, 0, &be, &y, NULL);
		tensor_destroy(y);
	}
	if (!err)
		err = impute_stats_finish(st);
out:
	tensor_destroy(x);
	runner_destroy(r);
	sim_destroy(s);
	partition_destroy(one);
	if (err) {
		impute_stats_destroy(st);
		return err;
	}
	*out = st;
	return DF_OK;
}


/* One thread's share of robust_accuracy(). */
typedef struct acc_worker {
	const graph *g;
	const stage_plan *p;
	const partition_map *m;
	sim *s;
	const runner_options *opt;
	const model_input_spec *spec;
	const fmnist *data;
	size_t n, first, stride;
	uint64_t down;
	atomic_size_t *done;
	atomic_int *stop;
	size_t correct;
	double coverage;
	int64_t fallbacks;
	df_err err;
	char msg[512];
	pthread_t tid;
	bool started;
} acc_worker;

static void *acc_run(void *arg)
{
	acc_worker *w = arg;
	runner *r = NULL;
	tensor *x = NULL;
	df_err err = runner_create(w->g, w->p, w->m, w->opt, &r);
	if (!err)
		err = input_tensor(w->g, &x);
	runner_backend be = sim_backend(w->s);
	for (size_t i = w->first; i < w->n && !err && !atomic_load(w->stop);
	     i += w->stride) {
		tensor *y = NULL;
		runner_result res;
		err = robust_dataset_input(w->data, i, w->spec, x);
		if (!err)
			err = runner_infer(r, x, w->down, &be, &y, &res);
		if (err)
			break;
		w->correct += (int)scores_argmax(tensor_f32(y), y->numel) == fmnist_label(w->data, i);
		w->coverage += res.coverage;
		w->fallbacks += res.recon_fallbacks;
		tensor_destroy(y);
		atomic_fetch_add(w->done, 1);
	}
	if (err) {
		snprintf(w->msg, sizeof w->msg, "%s", df_err_msg());
		atomic_store(w->stop, 1);
	}
	w->err = err;
	tensor_destroy(x);
	runner_destroy(r);
	return NULL;
}

df_err robust_accuracy(const graph *g, const stage_plan *p,
		       const partition_map *m, sim *const *sims, int n_sims,
		       const runner_options *opt,
		       const model_input_spec *spec, const fmnist *data,
		       size_t limit, uint64_t down_mask,
		       robust_progress progress, void *progress_ctx,
		       robust_run *out)
{
	if (n_sims < 1)
		return df_errf(DF_EINVAL, "robust_accuracy needs at least one simulator");
	size_t n = limit && limit < data->count ? limit : data->count;
	atomic_size_t done = 0;
	atomic_int stop = 0;
	df_err err = DF_OK;
	acc_worker *w = calloc((size_t)n_sims, sizeof *w);
	if (!w)
		return DF_ENOMEM;
	for (int k = 0; k < n_sims; k++) {
		w[k] = (acc_worker){.g = g, .p = p, .m = m, .s = sims[k], .opt = opt,
				    .spec = spec, .data = data, .n = n,
				    .first = (size_t)k, .stride = (size_t)n_sims,
				    .down = down_mask, .done = &done, .stop = &stop};
		if (pthread_create(&w[k].tid, NULL, acc_run, &w[k]) != 0) {
			err = df_errf(DF_EINTERNAL, "cannot start thread %d", k);
			atomic_store(&stop, 1);
			break;
		}
		w[k].started = true;
	}
	size_t shown = 0;
	while (!err && !atomic_load(&stop)) {
		size_t d = atomic_load(&done);
		if (progress && d != shown && (d - shown >= 100 || d == n)) {
			progress(progress_ctx, d, n);
			shown = d;
		}
		if (d == n)
			break;
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	robust_run run = {.images = n};
	double coverage = 0;
	for (int k = 0; k < n_sims; k++) {
		if (!w[k].started)
			continue;
		pthread_join(w[k].tid, NULL);
		run.correct += w[k].correct;
		coverage += w[k].coverage;
		run.recon_fallbacks += w[k].fallbacks;
		if (w[k].err && !err)
			err = df_errf(w[k].err, "%s", w[k].msg);
	}
	free(w);
	if (err)
		return err;
	run.accuracy = n ? (double)run.correct / (double)n : 0;
	run.coverage_mean = n ? coverage / (double)n : 0;
	*out = run;
	return DF_OK;
}

df_err robust_failure_sets(int n, int k, size_t max_combos, uint64_t seed,
			   uint64_t **masks, size_t *count)
{
	return partition_device_sets(n, k, max_combos, seed, masks, count);
}

df_err robust_stage_sensitivity(const graph *g, const stage_plan *p,
				const partition_params *base,
				const runner_options *opt,
				const model_input_spec *spec, const fmnist *val,
				size_t n, engine_kind kind, int threads,
				double *sens)
{
	partition_params pp = *base;
	pp.ratio = 0;
	pp.copies = 1;
	pp.stage_ratio = NULL;
	partition_map *full = NULL, *one = NULL;
	sim *s = NULL;
	df_err err = partition_create(g, p, &pp, &full);
	if (err)
		return err;
	/* baseline: nothing split, nothing failed */
	robust_run clean;
	err = partition_create(g, p, &pp, &one);
	/* `one` runs everything on the gateway; stages are switched to full's
	 * primaries one at a time below. No replicas anywhere (`full` forces
	 * two copies, so drop its tables). */
	for (int st = 0; !err && st < p->n_stages; st++) {
		one->stages[st].on_gateway = true;
		free(one->stages[st].primary);
		free(one->stages[st].replicas);
		one->stages[st].primary = NULL;
		one->stages[st].replicas = NULL;
	}
	if (!err)
		one->copies = 1;
	if (!err)
		err = sim_create(g, p, one, kind, threads, &s);
	if (!err)
		err = robust_accuracy(g, p, one, &s, 1, opt, spec, val, n, 0, NULL,
				      NULL, &clean);
	sim_destroy(s);
	s = NULL;
	for (int st = 0; !err && st < p->n_stages; st++) {
		sens[st] = -1; /* not distributed: outside any budget */
		if (full->stages[st].on_gateway)
			continue;
		/* one's stage st becomes full's stage st */
		one->stages[st].on_gateway = false;
		one->stages[st].primary = full->stages[st].primary;
		err = sim_create(g, p, one, kind, threads, &s);
		double lost = 0;
		for (int d = 0; !err && d < one->n_devices; d++) {
			robust_run r;
			err = robust_accuracy(g, p, one, &s, 1, opt, spec, val, n,
					      1ULL << d, NULL, NULL, &r);
			lost += clean.accuracy - r.accuracy;
		}
		sens[st] = lost / one->n_devices;
		sim_destroy(s);
		s = NULL;
		one->stages[st].primary = NULL;
		one->stages[st].on_gateway = true;
	}
	partition_destroy(one);
	partition_destroy(full);
	return err;
}

df_err robust_allocate_budget(const stage_plan *p, const double *sens,
			      double ratio, double *stage_ratio)
{
	if (!(ratio >= 0 && ratio <= 1))
		return df_errf(DF_EINVAL, "ratio must be in [0,1]");
	double budget = 0;
	bool *capped = calloc((size_t)p->n_stages + 1, sizeof *capped);
	if (!capped)
		return DF_ENOMEM;
	/* Stages with sens < 0 are not distributed: no budget, no replicas. */
	for (int s = 0; s < p->n_stages; s++) {
		stage_ratio[s] = 0;
		if (p->stages[s].kind == STAGE_NEURON && sens[s] >= 0)
			budget += ratio * (double)p->stages[s].weight_bytes;
	}
	/*
	 * Water-filling: ratio_s = k * sens_s, capped at 1; repeat with the
	 * remaining budget over uncapped stages until nothing new caps. What
	 * is left once every sensitive stage is capped (or when no stage
	 * measured any sensitivity) is spread as one flat ratio over the
	 * remaining stages, so the memory used always equals the flat
	 * budget.
	 */
	double left = budget;
	for (int iter = 0; iter < p->n_stages + 1; iter++) {
		double denom = 0, rest = 0;
		left = budget;
		for (int s = 0; s < p->n_stages; s++) {
			if (p->stages[s].kind != STAGE_NEURON || sens[s] < 0)
				continue;
			double wb = (double)p->stages[s].weight_bytes;
			if (capped[s])
				left -= wb;
			else if (sens[s] > 0)
				denom += sens[s] * wb;
			else
				rest += wb;
		}
		double k = denom > 0 && left > 0 ? left / denom : 0;
		bool changed = false;
		double spent = 0;
		for (int s = 0; s < p->n_stages; s++) {
			if (p->stages[s].kind != STAGE_NEURON || sens[s] < 0)
				continue;
			if (capped[s]) {
				stage_ratio[s] = 1;
				continue;
			}
			double r = sens[s] > 0 ? k * sens[s] : 0;
			if (r >= 1) {
				capped[s] = true;
				changed = true;
				r = 1;
			}
			stage_ratio[s] = r;
			spent += r * (double)p->stages[s].weight_bytes;
		}
		if (changed)
			continue;
		/* leftover after capping: flat over the zero-sensitivity stages */
		double leftover = left - spent;
		if (leftover > 1e-9 && rest > 0) {
			double flat = leftover / rest;
			if (flat > 1)
				flat = 1;
			for (int s = 0; s < p->n_stages; s++)
				if (p->stages[s].kind == STAGE_NEURON && sens[s] == 0 &&
				    !capped[s])
					stage_ratio[s] = flat;
		}
		break;
	}
	free(capped);
	return DF_OK;
}
