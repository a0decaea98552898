/*
 * engine_ref_internal.h - private declarations shared by the reference
 * engine's files: engine_ref.c (create, run, destroy and the per-node
 * checks) and engine_ref_ops.c (the op kernels). Nothing else includes it;
 * the engine is reached through engine.h and engine_impl.h.
 *
 * A node handed to engine_ref_ops_run() has passed the checks of
 * engine_ref_create(); buf[v] points to value v's data (f32, row-major,
 * engine_ref_prod(dims) elements) for every value the node reads.
 */
#ifndef DF_ENGINE_REF_INTERNAL_H
#define DF_ENGINE_REF_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "graph.h"
#include "tensor.h"

/* The op's expected output shape, filled by the per-op checks. */
typedef struct engine_ref_shape {
	int ndim;
	int64_t dims[TENSOR_MAX_DIMS];
} engine_ref_shape;

/* MatMul geometry shared by the check and the kernel. */
typedef struct engine_ref_mm_geom {
	int64_t m, k, n;
	int nb;                         /* batch rank of the output */
	int64_t bdims[TENSOR_MAX_DIMS]; /* output batch dims */
	int64_t astr[TENSOR_MAX_DIMS];  /* A matrix stride per batch dim */
	int64_t bstr[TENSOR_MAX_DIMS];  /* B matrix stride per batch dim */
} engine_ref_mm_geom;

/* Plans a MatMul of a by b: fills mg and the output shape s; DF_EINVAL
 * naming node n when the shapes do not multiply (engine_ref.c). */
df_err engine_ref_mm_plan(const graph_node *n, const graph_value *a,
                          const graph_value *b, engine_ref_mm_geom *mg,
                          engine_ref_shape *s);

/* Runs node n's op (not its post-ops) into y, which has ny elements;
 * scratch holds the doubles the check asked for (engine_ref_ops.c). */
void engine_ref_ops_run(const graph *g, const graph_node *n, float *const *buf,
                        float *y, size_t ny, double *scratch);

/* Applies n's post-ops to its output y in place (engine_ref_ops.c). */
void engine_ref_ops_postops_run(const graph_node *n, float *const *buf,
                                float *y, size_t ny);

/* ---- small inline helpers ----------------------------------------------- */

static inline const graph_value *engine_ref_val(const graph *g,
                                                const graph_node *n, int k)
{
	return &g->values[n->inputs[k]];
}

static inline int64_t engine_ref_prod(const int64_t *dims, int from, int to)
{
	int64_t p = 1;
	for (int i = from; i < to; i++)
		p *= dims[i];
	return p;
}

/* Taps of a window starting at `start` (in input coordinates) that fall
 * inside [lo, hi). */
static inline int64_t engine_ref_taps_inside(int64_t start, int64_t k,
                                             int64_t d, int64_t lo, int64_t hi)
{
	int64_t c = 0;
	for (int64_t t = 0; t < k; t++) {
		int64_t p = start + t * d;
		if (p >= lo && p < hi)
			c++;
	}
	return c;
}

#endif
