/*
 * runner.h - drives one inference through the stages of a partitioned
 * model: the request path shared by the gateway (backend = HTTP calls to
 * workers) and the in-process simulator (backend = shards in memory), so
 * that simulated failures and real ones take exactly the same code.
 *
 * For each stage in plan order:
 *  - LOCAL stages and stages the map places on the gateway run locally;
 *  - a distributed stage sends one call per live device listing the
 *    neurons it must compute (round 1: primaries, and the neurons of
 *    primaries already known dead from their first live replica holder;
 *    in ACTIVE replica mode also every replica it holds, first answer
 *    wins), with the full stage input and the device's slices of the side
 *    inputs;
 *  - neurons still missing (call failed or late) are asked of live
 *    replica holders in one bounded extra round;
 *  - what is still missing is imputed (impute.h) and counted.
 *
 * Devices known DOWN are skipped up front (down_mask). A device whose call
 * fails during a request is treated as failed for the rest of that request.
 */
#ifndef DF_RUNNER_H
#define DF_RUNNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "err.h"
#include "graph.h"
#include "impute.h"
#include "partition.h"
#include "stage.h"
#include "tensor.h"

typedef enum replica_mode {
	REPLICA_STANDBY = 0,  /* replicas computed only for missing primaries */
	REPLICA_ACTIVE,       /* replicas always computed; first answer wins */
	REPLICA_MODE_COUNT
} replica_mode;

const char *replica_mode_name(replica_mode m);
df_err replica_mode_parse(const char *s, replica_mode *out);

/* One call of a stage on one device. The backend fills output and status. */
typedef struct runner_call {
	int device;
	int stage;
	int round;                      /* 1 or 2 */
	const int32_t *ids;             /* neurons to compute, ascending */
	size_t n;
	const tensor *const *inputs;    /* main (full) input, side slices */
	int n_inputs;
	tensor *output;                 /* new, n channels; NULL on failure */
	df_err status;
	bool cancelled;                 /* not waited for: no longer needed
					   (not a failure of the device) */
} runner_call;

/*
 * Called by a backend as each call finishes, with its status and output
 * set; the runner assembles the answer right away (first answer wins, in
 * arrival order). Returns true once the stage needs no more answers: the
 * backend should then stop waiting for the other calls, mark them
 * `cancelled` and return.
 */
typedef bool (*runner_call_done)(void *done_ctx, runner_call *call);

typedef struct runner_backend {
	void *ctx;
	/* Executes the calls (concurrently if it can) and sets status and
	 * output of each. Must not fail as a whole: a transport problem is a
	 * per-call status. */
	void (*execute)(void *ctx, runner_call *calls, size_t n);
	/* Optional, preferred when set: the same, reporting each finished
	 * call through done() and stopping early when done() says so. This
	 * is what makes ACTIVE replica mode a real hedge against a slow
	 * device. */
	void (*execute_until)(void *ctx, runner_call *calls, size_t n,
			      runner_call_done done, void *done_ctx);
} runner_backend;

/* Called after each stage with its assembled output(s) (borrowed). */
typedef df_err (*runner_observer)(void *ctx, int stage, const tensor *out);

typedef struct runner_options {
	impute_mode impute;
	replica_mode replicas;
	const impute_stats *stats;    /* needed for MEAN and RECON */
	const impute_recon *recon;    /* needed for RECON */
	engine_kind kind;             /* engine for local stages */
	int threads;
} runner_options;

typedef struct runner_result {
	int64_t neurons_total;      /* neurons of all NEURON stages */
	int64_t neurons_computed;   /* by a device or the gateway */
	int64_t neurons_replica;    /* computed by a replica holder */
	int64_t neurons_imputed;
	int64_t recon_fallbacks;    /* stages where recon had no map */
	double coverage;            /* computed / total */
	uint64_t failed_devices;    /* bitmask: down or failed this request */
	int calls;                  /* device calls issued */
} runner_result;

typedef struct runner runner;

/* New runner. g, p, m and the option pointers are borrowed and must outlive
 * it. Builds engines for every stage run locally. */
df_err runner_create(const graph *g, const stage_plan *p,
		     const partition_map *m, const runner_options *opt,
		     runner **out);

void runner_destroy(runner *r);

/* Observes every stage output (calibration); NULL to stop. */
void runner_set_observer(runner *r, runner_observer fn, void *ctx);

/*
 * Runs one inference. input binds the graph's single input; *out is the
 * new graph output; res (may be NULL) says what ran. DF_EUNAVAIL if a
 * stage could not be assembled at all (never happens with imputation; kept
 * for callers that enforce a minimum coverage themselves).
 * Not thread-safe: one runner per concurrent request.
 */
df_err runner_infer(runner *r, const tensor *input, uint64_t down_mask,
		    const runner_backend *be, tensor **out,
		    runner_result *res);

/* ---- in-process simulator ------------------------------------------- */

typedef struct sim sim;

/* One shard per device of m, with engines of `kind`. Free with
 * sim_destroy(). */
df_err sim_create(const graph *g, const stage_plan *p, const partition_map *m,
		  engine_kind kind, int threads, sim **out);

void sim_destroy(sim *s);

/* Devices whose calls fail with DF_EUNAVAIL (a crash the gateway has not
 * detected yet). */
void sim_set_failing(sim *s, uint64_t mask);

/* The backend executing calls on the simulated devices (borrowed view). */
runner_backend sim_backend(sim *s);

/* Weight bytes held by device d. */
int64_t sim_weight_bytes(const sim *s, int d);

#endif
