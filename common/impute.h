/*
 * impute.h - what the gateway puts in place of neurons no live device
 * computed.
 *
 *  - zero:  0 (the RobustDiCE paper's setting);
 *  - mean:  the channel's mean activation over calibration images;
 *  - recon: the missing channels predicted from the surviving channels of
 *           the same stage output, pixel by pixel, with a linear map
 *           (plus bias) fitted by ridge-regularized least squares on
 *           calibration activations; one map per stage and failure set,
 *           clamped to the range of the stage's final activation.
 *
 * Calibration statistics (impute_stats) come from running the whole model
 * on calibration images (never test images). Recon maps (impute_recon) are
 * fitted once per partition map, for every set of up to `max_fail` failed
 * devices, and looked up by the exact set of missing neurons at request
 * time. A missing set with no fitted map (more failures than fitted, or a
 * failure pattern the map did not predict, e.g. a replica holder that was
 * also late) falls back to `mean`, and the result counts it.
 */
#ifndef DF_IMPUTE_H
#define DF_IMPUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "graph.h"
#include "partition.h"
#include "stage.h"
#include "tensor.h"

typedef enum impute_mode {
	IMPUTE_ZERO = 0,
	IMPUTE_MEAN,
	IMPUTE_RECON,
	IMPUTE_MODE_COUNT
} impute_mode;

const char *impute_mode_name(impute_mode m);
df_err impute_mode_parse(const char *s, impute_mode *out);

typedef struct impute_stats impute_stats;

/*
 * New, empty statistics for the NEURON stages of plan p over graph g (the
 * graph is read here only, for each stage's final activation range). Feed
 * it every stage output of the calibration run with impute_stats_observe()
 * (runner.h does this), then call impute_stats_finish(). It records, for
 * every NEURON stage: per-channel mean, per-channel mean |activation|, and
 * the Gram matrix of [channels, 1] over every pixel of every image (in
 * double), from which any recon map is a small linear solve.
 */
df_err impute_stats_create(const graph *g, const stage_plan *p,
			   impute_stats **out);

/* Adds one image's output t of stage st (batch 1). LOCAL stages ignored. */
df_err impute_stats_observe(impute_stats *s, int st, const tensor *t);

/* Turns the sums into means. Observing after this is an error. */
df_err impute_stats_finish(impute_stats *s);

/* Number of images observed (stage 0's count). */
size_t impute_stats_images(const impute_stats *s);

void impute_stats_destroy(impute_stats *s);

/* Per-channel mean / mean |activation| of stage st (NULL for LOCAL). */
const float *impute_stats_mean(const impute_stats *s, int st);
const float *impute_stats_act(const impute_stats *s, int st);
/* Per-channel variance over calibration pixels (NULL for LOCAL). */
const float *impute_stats_var(const impute_stats *s, int st);

/* The per-neuron score partition_score `score` asks for (act or var) of
 * stage st, or NULL (LOCAL stage, or l1, which needs no statistics). */
const float *impute_stats_score(const impute_stats *s, int st, int score);

typedef struct impute_recon impute_recon;

/*
 * Fits recon maps for map m: for each distributed stage and each set of
 * 1..max_fail failed devices, the neurons that lose every holder are
 * predicted from the rest.
 */
df_err impute_recon_fit(const impute_stats *s, const stage_plan *p,
			const partition_map *m, int max_fail,
			impute_recon **out);

void impute_recon_destroy(impute_recon *r);

/* Total bytes of fitted maps, and their count. */
size_t impute_recon_bytes(const impute_recon *r);
size_t impute_recon_count(const impute_recon *r);

/*
 * Fills the channels of stage output t (NCHW or NC) marked in missing[]
 * (length dims[1]) according to mode. For RECON without a map for this
 * missing set, uses MEAN and sets *fell_back (may be NULL). stats may be
 * NULL only for ZERO.
 */
df_err impute_apply(impute_mode mode, const impute_stats *s,
		    const impute_recon *r, int st, tensor *t,
		    const bool *missing, bool *fell_back);

#endif
