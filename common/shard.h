/*
 * shard.h - one device's share of a partitioned model: for every stage the
 * partition map gives it neurons of (as primary or replica), the weights of
 * exactly those neurons, and engines for the neuron subsets it is asked to
 * compute. The worker serves stage calls from a shard; the in-process
 * simulator holds one shard per simulated device, so both run the same
 * code.
 *
 * A shard owns copies of its neurons' weights (stage_subgraph()): the full
 * graph may be destroyed once the shard exists.
 *
 * Subsets: the common request is "all my primaries" (standby mode) or "all
 * I hold" (active mode); after a failure the runner's second round asks for
 * "the failed device's neurons I hold replicas of". Each distinct subset
 * gets its own engine (oneDNN primitives are shape-specific) built from a
 * slice of the held weights, kept in a small per-stage cache (SHARD_CACHE
 * entries, least recently used out). Memory: the held weights, plus one
 * sliced copy per cached subset (and oneDNN's reordered copy of each):
 * in standby mode without failures about twice the held weights. The
 * reported weight bytes count the held weights once.
 *
 * Not thread-safe: one caller at a time (the worker runs every stage call
 * on one executor thread; see services/worker/worker.h).
 */
#ifndef DF_SHARD_H
#define DF_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "err.h"
#include "graph.h"
#include "partition.h"
#include "stage.h"
#include "tensor.h"

#define SHARD_CACHE 6

typedef struct shard shard;

/* New shard of device `device` under map m for graph g and its plan (both
 * borrowed only during the call). Free with shard_destroy(). */
df_err shard_create(const graph *g, const stage_plan *p,
		    const partition_map *m, int device, engine_kind kind,
		    int threads, shard **out);

void shard_destroy(shard *s);

/* Bytes of weights the shard holds. */
int64_t shard_weight_bytes(const shard *s);

/* Neurons held for stage st (ascending), borrowed; *n = 0 if none. */
const int32_t *shard_held(const shard *s, int st, size_t *n);

/* Number of main+side inputs stage st takes (0 if not held). */
int shard_stage_inputs(const shard *s, int st);

/*
 * Computes neurons ids[0..n) (strictly ascending, all held) of stage st.
 * inputs[0] is the full stage input, inputs[1..] the side inputs sliced to
 * ids. *out is new, with n channels on axis 1.
 */
df_err shard_run(shard *s, int st, const int32_t *ids, size_t n,
		 const tensor *const *inputs, int n_inputs, tensor **out);

#endif
