/*
 * worker.h - dicefleet-worker: holds one device's share of a partitioned
 * model (shard.h) per partition version and computes stage calls for the
 * gateway (DESIGN.md §3, §5-7).
 *
 * Files: main.c (flags, signals, lifecycle), routes.c (HTTP endpoints,
 * auth, health, fault injection), exec.c (versions, the executor, stage
 * calls).
 *
 * Versions. At most WORKER_MAX_VERSIONS (2: the serving one and the next)
 * are held. prepare loads models/<name> (sha256 checked), validates the
 * map against the stage plan, builds this device's shard, warms the
 * engines of its primary subsets, then frees the full graph: only the held
 * neurons' weights stay. Preparing a version that is already held is a
 * no-op answering the same figures; preparing a new one while two are held
 * first drops the oldest one that is not the committed one (the memory of
 * an edge device is the constraint, so it is dropped before the new model
 * is loaded, not after). commit marks a held version as the one reported
 * committed; the previous one keeps serving until dropped. A version is
 * reference counted: every stage call holds a reference from lookup to
 * reply, drop unlinks the version at once (new calls get 404) and waits
 * until the calls in flight have finished before freeing it.
 *
 * Thread plan. HTTP runs one thread per connection (http_server.h,
 * threads = 0): requests are parsed, validated and their replies encoded
 * in parallel. All shard computation goes through ONE executor thread,
 * which runs jobs in arrival order, each with --threads OpenMP threads:
 *  - shards and oneDNN engines are not thread-safe (shard.h, engine.h);
 *  - edge devices have 1-4 cores: two stage calls computing at once would
 *    each start --threads OpenMP threads and oversubscribe the cores,
 *    making both slower than running them one after the other;
 *  - one long-lived executor keeps one OpenMP team warm, instead of a new
 *    team per connection thread.
 * Stage calls waiting for the executor keep their version referenced, so
 * a drop waits for them too. OpenMP threads wait passively
 * (OMP_WAIT_POLICY=passive unless the operator set a policy; main.c
 * re-executes itself to apply it, as libgomp reads it before main()).
 *
 * Measured (resnet18 split over 2 devices, this device's half of stage 1:
 * 32 of 64 3x3 convs at 56x56; 2-core host under a load average of 6-7 from
 * other jobs; df_stagecall bench, 48 calls):
 *   --threads 1, libgomp default:  1 client 410-510 calls/s (p50 1.6 ms),
 *                                  4 clients 210-560 calls/s (p50 6-15 ms)
 *   --threads 2, spinning waits:   1 client 16-107 calls/s (p50 2-64 ms),
 *                                  4 clients 29-94 calls/s (p50 19-153 ms)
 *   --threads 2, passive waits:    1 client 240-570 calls/s (p50 1.5-1.9 ms),
 *                                  4 clients 370-670 calls/s (p50 3.6-7.7 ms)
 * So: spinning OpenMP waits are the one thing that hurts (20x); with
 * passive waits, 4 concurrent clients get the same throughput as one (the
 * cores are saturated by one computation) and queue in the executor, which
 * is what a gateway deadline should see, rather than thrashing.
 * Memory for the same shard: RSS 10.7 MB idle, 71 MB with the full model
 * loaded, 33 MB after freeing it (22.3 MB of held weights), 84 MB once the
 * engines of the primaries are built (oneDNN's reordered weight copies and
 * buffers; --warmup=false defers that to the first call of each stage).
 *
 * Locks (never taken in the other order): prepare_lock (one prepare at a
 * time) -> lock (versions, refs, committed) ; executor queue lock (leaf) ;
 * fault lock (leaf). Counters are atomics.
 */
#ifndef DF_WORKER_H
#define DF_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"
#include "http_server.h"
#include "shard.h"
#include "tensor.h"
#include "wire.h"

#define WORKER_MAX_VERSIONS 2
#define WORKER_FRAME_TYPE "application/x-dicefleet-frame"

/* Expected inputs of one held stage. */
typedef struct worker_stage_io {
	int n_inputs;                 /* 0 when the stage is not held */
	int64_t n_neurons;            /* the stage's output channels */
	int ndim[WIRE_MAX_FRAMES];    /* per input */
	int64_t (*dims)[TENSOR_MAX_DIMS]; /* [n_inputs]; side inputs' dims[1]
					     is the full channel count */
} worker_stage_io;

/* One prepared partition version. */
typedef struct worker_version {
	int64_t version;
	char *model;                  /* model name */
	char sha256[65];
	shard *sh;
	int n_stages;
	worker_stage_io *io;          /* [n_stages] */
	int64_t weight_bytes;
	int64_t held_neurons;
	double prepare_ms;
	int64_t rss_before, rss_loaded, rss_after; /* bytes, at prepare */
	int refs;                     /* stage calls in flight (under lock) */
	uint64_t seq;                 /* prepare order (age) */
} worker_version;

typedef struct worker_fault {
	int64_t delay_ms;             /* every stage call sleeps this long */
	double fail_rate;             /* fraction of calls failed */
	bool drop;                    /* failures drop the connection instead
					 of answering 500 */
} worker_fault;

typedef struct worker_settings {
	const char *id;               /* device id (borrowed) */
	const char *models_dir;       /* borrowed */
	int threads;                  /* OpenMP threads per computation */
	const char *token;            /* cluster token, or NULL (borrowed) */
	bool fault_runtime;           /* POST /v1/fault allowed */
	worker_fault fault;           /* initial fault settings */
	uint64_t fault_seed;
	bool warmup;                  /* build primary engines at prepare */
} worker_settings;

typedef struct worker_exec worker_exec;

typedef struct worker {
	worker_settings set;
	pthread_mutex_t prepare_lock;
	pthread_mutex_t lock;
	pthread_cond_t released;      /* a version's refs dropped */
	worker_version *versions[WORKER_MAX_VERSIONS]; /* NULL = free */
	int64_t committed;            /* 0 = none */
	uint64_t seq;
	worker_exec *exec;
	pthread_mutex_t fault_lock;
	worker_fault fault;
	uint64_t rng;                 /* xorshift64 state */
	atomic_uint_fast64_t stage_calls;
	atomic_uint_fast64_t stage_errors;
	atomic_uint_fast64_t faults;
	atomic_uint_fast64_t stage_abandoned; /* skipped: caller gone */
	double started;               /* monotonic seconds */
} worker;

/* ---- exec.c ------------------------------------------------------------- */

/* New worker with settings s (strings borrowed), executor started.
 * Free with worker_destroy(). */
df_err worker_create(const worker_settings *s, worker **out);

/* Stops the executor (after its queued jobs) and frees every version.
 * Call after the HTTP server is gone. NULL is a no-op. */
void worker_destroy(worker *w);

/* Result of a prepare. */
typedef struct worker_prepared {
	int64_t weight_bytes;
	int64_t held_neurons;
	double prepare_ms;
	int64_t rss_before, rss_loaded, rss_after;
	bool existed;                 /* the version was already held */
} worker_prepared;

/*
 * Prepares `version` of model `model` (whose ONNX must hash to sha256)
 * for device `device` under the partition map map_json. Errors:
 * DF_EINVAL bad map or arguments, DF_ECONFLICT device/model/sha256
 * mismatch or the version held with another model, DF_ENOENT no such
 * model, DF_ECORRUPT the ONNX file fails its check.
 */
df_err worker_prepare(worker *w, int64_t version, const char *model,
		      const char *sha256, const char *device,
		      const char *map_json, size_t map_len,
		      worker_prepared *out);

/* Marks a held version committed (DF_ENOENT if not held). */
df_err worker_commit(worker *w, int64_t version);

/* Unlinks version and frees it once its calls in flight are done
 * (DF_ENOENT if not held). */
df_err worker_drop(worker *w, int64_t version);

/*
 * Serves one stage call: body is a wire request message. On success *out
 * holds the encoded response message. Errors (with df_errf detail):
 * DF_EINVAL/DF_ERANGE/DF_ECORRUPT malformed, DF_ENOENT unknown version or
 * stage or neuron not held, DF_ECONFLICT model mismatch, DF_ENOTSUP
 * unknown wire version, DF_ETOOBIG beyond wire limits.
 */
/* Asks whether the caller of a stage call has gone away (its reply would
 * be thrown away); fn may be NULL. */
typedef struct worker_caller {
	bool (*gone)(void *ctx);
	void *ctx;
} worker_caller;

/* Serves one stage call as above. A call whose caller is gone by the time
 * the executor reaches it is skipped: DF_ETIMEDOUT, counted in
 * stage_abandoned (a hedged call the gateway no longer waits for must not
 * delay the calls queued behind it). caller may be NULL. */
df_err worker_stage(worker *w, const void *body, size_t len,
		    const worker_caller *caller, wire_buf *out);


/* Resident set size of this process in bytes (/proc/self/statm), or -1. */
int64_t worker_rss_bytes(void);

/* Monotonic clock in seconds. */
double worker_now(void);

/* ---- routes.c ----------------------------------------------------------- */

/* The /healthz document (new reference, NULL when out of memory). */
json_t *worker_health(worker *w);

/* The route table (static) and its length. ctx is the worker. */
const http_route *worker_routes(size_t *n);

/*
 * Decides the fate of one stage call under the current fault settings:
 * *delay_ms to sleep first, *fail true to fail it, *drop whether failing
 * drops the connection.
 */
void worker_fault_roll(worker *w, int64_t *delay_ms, bool *fail, bool *drop);

#endif
