/*
 * engine.h - runs a finalized graph. Two implementations behind one
 * interface: oneDNN (engine_dnnl.c) and a plain-C reference (engine_ref.c)
 * that tests hold the oneDNN engine against.
 *
 * engine_create() does all the expensive work once (primitive creation,
 * weight reorders, buffer planning); engine_run() only executes. An engine
 * is not thread-safe: one engine per thread, or serialize calls.
 */
#ifndef DF_ENGINE_H
#define DF_ENGINE_H

#include "err.h"
#include "graph.h"
#include "tensor.h"

typedef enum engine_kind {
	ENGINE_DNNL = 0,
	ENGINE_REF,
	ENGINE_KIND_COUNT
} engine_kind;

typedef struct engine engine;

/* "dnnl" / "ref". */
const char *engine_kind_name(engine_kind kind);

/* Parses "dnnl" / "ref"; DF_EINVAL otherwise. */
df_err engine_kind_parse(const char *s, engine_kind *out);

/*
 * New engine for g (borrowed: g must outlive the engine). threads <= 0 means
 * the library default. Free with engine_destroy(). DF_EINVAL when g's
 * constants were released (g->constants_released).
 */
df_err engine_create(const graph *g, engine_kind kind, int threads,
		     engine **out);

/*
 * engine_create() for a caller that needs none of g's constant data once
 * the engine exists (`dicefleet run`), so that the weights are not held
 * twice. The oneDNN engine then keeps its own copy of every constant it
 * reads and frees each of g's constants (graph_release_constant()) as soon
 * as the last node reading it is built: the peak holds the weights about
 * once, not in both the graph's and oneDNN's layouts. g stays valid as
 * metadata (names, shapes, nodes) for engine_run() and the caller, but may
 * not be given to another engine, cloned or finalized again. The reference
 * engine reads constants while it runs and leaves g untouched. On failure
 * some constants may already be released.
 */
df_err engine_create_release(graph *g, engine_kind kind, int threads,
			     engine **out);

/*
 * Runs the graph. inputs[i] binds g->inputs[i] and must match its dtype and
 * shape (DF_EINVAL naming the input otherwise). On success outputs[i] is a
 * new tensor for g->outputs[i] (free each with tensor_destroy()).
 */
df_err engine_run(engine *e, const tensor *const *inputs, tensor **outputs);

/* Frees e. engine_destroy(NULL) is a no-op. */
void engine_destroy(engine *e);

#endif
