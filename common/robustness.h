/*
 * robustness.h - accuracy of a partitioned model under device failures,
 * measured on a labelled image set through the same runner the gateway
 * uses (runner.h), with simulated devices (sim).
 *
 * Calibration (impute means, recon maps, `act` scores) uses images from the
 * training split only; accuracy uses the test split.
 */
#ifndef DF_ROBUSTNESS_H
#define DF_ROBUSTNESS_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "err.h"
#include "fmnist.h"
#include "graph.h"
#include "image.h"
#include "impute.h"
#include "partition.h"
#include "runner.h"
#include "stage.h"

/* Called every few images: done of total. */
typedef void (*robust_progress)(void *ctx, size_t done, size_t total);

/* Fills t ([1,C,H,W] f32) with image i of d, preprocessed per spec. */
df_err robust_dataset_input(const fmnist *d, size_t i,
			    const model_input_spec *spec, tensor *t);

/* Runs the unpartitioned model (stage by stage, on one simulated device)
 * over the first n images of calib and returns finished statistics. */
df_err robust_calibrate(const graph *g, const stage_plan *p,
			const model_input_spec *spec, const fmnist *calib,
			size_t n, engine_kind kind, int threads,
			impute_stats **out);

typedef struct robust_run {
	size_t images;
	size_t correct;
	double accuracy;
	double coverage_mean;     /* mean runner coverage per image */
	int64_t recon_fallbacks;
} robust_run;

/*
 * Top-1 accuracy of map m over the first `limit` images of data (0 = all)
 * with the devices in down_mask failed. sims[0..n_sims) must have been made
 * for m (sim_create()); they are reused across calls so engines stay
 * built. With n_sims > 1 the images are split over n_sims threads, thread
 * k taking images k, k + n_sims, ... on sims[k] (engines and runners are
 * not thread-safe); the counts do not depend on n_sims. Progress is
 * reported from the calling thread.
 */
df_err robust_accuracy(const graph *g, const stage_plan *p,
		       const partition_map *m, sim *const *sims, int n_sims,
		       const runner_options *opt,
		       const model_input_spec *spec, const fmnist *data,
		       size_t limit, uint64_t down_mask,
		       robust_progress progress, void *progress_ctx,
		       robust_run *out);

/*
 * The failure sets of k devices out of n to evaluate: all C(n, k) of them
 * when that is at most max_combos, else a seeded sample of max_combos
 * distinct sets. *masks is new (free()).
 */
df_err robust_failure_sets(int n, int k, size_t max_combos, uint64_t seed,
			   uint64_t **masks, size_t *count);

#endif

/*
 * Sensitivity of each distributed stage: the mean accuracy lost over the
 * first n images of `val` when only that stage is split over `base`'s
 * devices without replicas and one device fails (averaged over devices),
 * with `opt`'s imputation. sens has p->n_stages entries (0 for stages that
 * are not distributed). Used to spread a replication budget by measured
 * sensitivity instead of a flat per-stage ratio.
 */
df_err robust_stage_sensitivity(const graph *g, const stage_plan *p,
				const partition_params *base,
				const runner_options *opt,
				const model_input_spec *spec, const fmnist *val,
				size_t n, engine_kind kind, int threads,
				double *sens);

/*
 * Per-stage replication ratios proportional to sens (capped at 1, the
 * excess redistributed) whose replicated weight bytes equal a flat `ratio`
 * over the distributed stages of map-shape `base`: same memory, different
 * spread. stage_ratio has p->n_stages entries.
 */
df_err robust_allocate_budget(const stage_plan *p, const double *sens,
			      double ratio, double *stage_ratio);
