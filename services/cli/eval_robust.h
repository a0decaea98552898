/*
 * eval_robust.h - the partitioned form of `dicefleet eval` (with
 * --devices): accuracy under every (or a sample of) --fail K device
 * failures. The options it reads must be in cmd_eval.c's table:
 * devices, method, ratio, copies, score, seed, fail, max-combos, impute,
 * replica-mode, budget, calib-images, sens-images, data-dir, limit,
 * threads, engine.
 */
#ifndef DF_EVAL_ROBUST_H
#define DF_EVAL_ROBUST_H

#include "config.h"
#include "fmnist.h"
#include "model.h"

/* Prints progress on stderr and one JSON line on stdout; returns the exit
 * status. */
int eval_robust(const config *c, const model *m, const fmnist *test);

#endif
