/*
 * engine_impl.h - private contract between the engine dispatcher (engine.c)
 * and the engine implementations (engine_ref.c, engine_dnnl.c). Nothing
 * outside common/engine*.c includes this header.
 *
 * An implementation defines its own state struct whose FIRST member is a
 * `struct engine`, e.g.
 *
 *   typedef struct dnnl_engine {
 *       engine base;    // must be first: engine* <-> dnnl_engine* casts
 *       dnnl_engine_t eng;
 *       ...
 *   } dnnl_engine;
 *
 * and a constructor `engine_<kind>_create(g, threads, &e)` that allocates
 * that struct, fills base.ops, base.g, base.kind and base.threads, and
 * returns &state->base in *out (untouched on failure, with everything it
 * allocated freed). engine.c calls the constructor, and from then on only
 * goes through base.ops.
 *
 * Division of work:
 *  - engine.c validates the engine_run() arguments once for every
 *    implementation: e non-NULL, inputs non-NULL, each inputs[i] non-NULL,
 *    dtype TENSOR_F32, ndim and dims equal to g->values[g->inputs[i]]; and
 *    outputs non-NULL. ops->run may therefore assume valid inputs.
 *  - ops->run receives an outputs array of g->n_outputs entries, all NULL.
 *    On success it has stored one new tensor (TENSOR_F32, the graph output
 *    value's shape) in every entry. On failure it returns the error (with
 *    df_errf() detail naming the node); any entries it left non-NULL are
 *    destroyed by engine.c, which never exposes partial results to its
 *    caller.
 *  - ops->destroy frees the whole implementation struct (including base);
 *    it is never called with NULL.
 *
 * Threads: constructors receive threads > 0 (a requested count) or 0 (use
 * the implementation's default, e.g. OpenMP's max threads). engine.c maps
 * every threads <= 0 to 0. An implementation stores the count it actually
 * uses in base.threads (>= 1).
 *
 * The graph is borrowed (it must be finalized and outlive the engine);
 * implementations may keep pointers into its constants, except when
 * engine_create_release() asks the oneDNN engine to copy them and free the
 * graph's (see engine_dnnl_create()).
 */
#ifndef DF_ENGINE_IMPL_H
#define DF_ENGINE_IMPL_H

#include "engine.h"
#include "err.h"
#include "graph.h"
#include "tensor.h"

struct engine_ops {
	/* Executes the graph; see the contract above. */
	df_err (*run)(engine *e, const tensor *const *inputs,
		      tensor **outputs);
	/* Frees the engine and everything it owns. */
	void (*destroy)(engine *e);
};

struct engine {
	const struct engine_ops *ops; /* the implementation's table */
	const graph *g;               /* borrowed, finalized */
	engine_kind kind;             /* which implementation */
	int threads;                  /* threads actually used, >= 1 */
};

/* Reference engine (engine_ref.c): plain C, every op of graph_op. It runs
 * on one thread whatever threads asks (base.threads = 1). */
df_err engine_ref_create(const graph *g, int threads, engine **out);

/* oneDNN engine (engine_dnnl.c). release is NULL, or g itself (not const)
 * for engine_create_release(): the engine then copies every constant it
 * reads and releases each of g's constants once its last reader is built. */
df_err engine_dnnl_create(const graph *g, int threads, graph *release,
			  engine **out);

#endif
