/*
 * partition.h - partition maps: which device computes each neuron of each
 * stage as primary, and which devices hold replicas of it.
 *
 * Invariants (partition_validate() checks them; every method keeps them):
 *  - the map has one entry per stage of the plan; LOCAL stages and stages
 *    placed on the gateway have no device assignment;
 *  - every neuron of a distributed stage has exactly one primary device and
 *    0..copies-1 replica devices, all distinct and all known;
 *  - copies <= n_devices.
 *
 * Methods (DESIGN.md §4): sequential, random, layerwise, full, robustdice.
 * The `ratio` (fraction of each stage's neurons that get replicas) applies
 * to every method but `full` (always 1); sequential, random and layerwise
 * choose the replicated neurons without looking at importance, robustdice
 * replicates the most important ones.
 *
 * The planner places the last NEURON stage before the graph output (the
 * logits layer) on the gateway when `gateway_last` is set (the default): it
 * is tiny (10 x 128 weights for the shipped models) and a lost logit
 * corrupts the answer itself rather than a feature, so it must never go
 * unprotected; computing it where the answer is assembled protects it at no
 * network cost.
 *
 * The JSON form (partition_to_json) is what the gateway stores in SQLite and
 * pushes to workers.
 */
#ifndef DF_PARTITION_H
#define DF_PARTITION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "graph.h"
#include "stage.h"

typedef enum partition_method {
	PARTITION_SEQUENTIAL = 0,
	PARTITION_RANDOM,
	PARTITION_LAYERWISE,
	PARTITION_FULL,
	PARTITION_ROBUSTDICE,
	PARTITION_METHOD_COUNT
} partition_method;

typedef enum partition_score {
	PARTITION_SCORE_L1 = 0,  /* L1 norm of the BN-folded filter */
	PARTITION_SCORE_ACT,     /* mean |activation| on calibration data */
	PARTITION_SCORE_VAR,     /* activation variance on calibration data:
				    the expected squared error of filling
				    the neuron with its mean (impute mean) */
	PARTITION_SCORE_COUNT
} partition_score;

const char *partition_method_name(partition_method m);
df_err partition_method_parse(const char *s, partition_method *out);
const char *partition_score_name(partition_score s);
df_err partition_score_parse(const char *s, partition_score *out);

#define PARTITION_MAX_DEVICES 64
#define PARTITION_MAX_COPIES 4

typedef struct partition_stage {
	int64_t n_neurons;    /* 0 for LOCAL stages */
	bool on_gateway;      /* computed by the gateway (LOCAL, or placed) */
	int32_t *primary;     /* [n_neurons] device index; NULL if not
				 distributed */
	int32_t *replicas;    /* [n_neurons * (copies - 1)] device index or
				 -1; NULL when copies == 1 */
} partition_stage;

typedef struct partition_map {
	int64_t version;          /* assigned by the store; 0 before */
	char *model;              /* model name, may be NULL */
	partition_method method;
	double ratio;             /* replicated fraction per stage */
	int copies;               /* max holders per neuron (1 = none) */
	partition_score score;
	uint64_t seed;
	int n_devices;
	char **devices;           /* [n_devices] device ids */
	int n_stages;
	partition_stage *stages;  /* [n_stages], parallel to the plan */
} partition_map;

typedef struct partition_params {
	partition_method method;
	double ratio;             /* 0..1 */
	int copies;               /* 1..PARTITION_MAX_COPIES; 2 = one replica */
	partition_score score;
	uint64_t seed;
	int n_devices;            /* 1..PARTITION_MAX_DEVICES */
	const char *const *device_ids; /* [n_devices], or NULL for "d0".. */
	bool gateway_last;        /* place the logits stage on the gateway */
	/* Per-stage neuron scores for robustdice (length n_stages; entries
	 * for LOCAL stages ignored). NULL: L1 scores computed from g. */
	const float *const *scores;
	/* Optional per-stage replication ratio overriding `ratio` (length
	 * n_stages); used by the sensitivity-based budget allocation. */
	const double *stage_ratio;
} partition_params;

/* Defaults: robustdice, ratio 0.25, copies 2, l1, seed 0, gateway_last. */
void partition_params_default(partition_params *p);

/* New map for g split by p. Free with partition_destroy(). */
df_err partition_create(const graph *g, const stage_plan *plan,
			const partition_params *params, partition_map **out);

void partition_destroy(partition_map *m);

/* Checks the invariants above, and, when plan is non-NULL, that the map
 * fits it (stage count and sizes). Errors say which stage and neuron. */
df_err partition_validate(const partition_map *m, const stage_plan *plan);

/* Serializes m as JSON. *out is new (free()). */
df_err partition_to_json(const partition_map *m, char **out);

/* Parses and validates (without a plan) a JSON map. */
df_err partition_from_json(const char *json, size_t len, partition_map **out);

/* Device index of id, or -1. */
int partition_device_index(const partition_map *m, const char *id);

typedef struct partition_load {
	int64_t primary_neurons;  /* over all distributed stages */
	int64_t replica_neurons;
	int64_t macs;             /* MACs of primaries (standby work) */
	int64_t weight_bytes;     /* bytes of all held neurons */
} partition_load;

/* Per-device loads (loads has n_devices entries), plus the totals of an
 * unpartitioned copy in *whole (may be NULL): weight bytes and MACs of the
 * distributed stages. */
df_err partition_loads(const partition_map *m, const stage_plan *plan,
		       partition_load *loads, partition_load *whole);

/*
 * Neurons device d holds for stage s (primaries then replicas, ascending
 * within each group). *ids is new (free()), *n its length (0 allowed).
 */
df_err partition_held(const partition_map *m, int s, int d, int32_t **ids,
		      size_t *n);

/*
 * Sets of k devices out of n (bitmasks): all C(n, k) of them in
 * lexicographic order when that is at most max_sets, else a seeded sample
 * of max_sets distinct sets. *masks is new (free()).
 */
df_err partition_device_sets(int n, int k, size_t max_sets, uint64_t seed,
			     uint64_t **masks, size_t *count);

#endif
