/*
 * graph_internal.h - private declarations shared by the files of the graph
 * module (graph.c, graph_infer.c, graph_fold.c, graph_canon.c,
 * graph_passes.c, graph_check.c). Nothing outside them includes it; the public API is
 * graph.h.
 *
 * Helpers that take a value or node index expect one the caller has
 * already validated, except graph_vname() and graph_value_ok() (any index)
 * and graph_is_const() (also -1, "absent").
 */
#ifndef DF_GRAPH_INTERNAL_H
#define DF_GRAPH_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "graph.h"
#include "tensor.h"

/* Inputs accepted per op before finalize: {min, max} (graph.c). */
typedef struct graph_arity {
	int min, max;
} graph_arity;
extern const graph_arity graph_op_arity[GRAPH_OP_COUNT];

/* Bits of graph_value_roles(). */
enum {
	GRAPH_ROLE_IN = 1,   /* a graph input */
	GRAPH_ROLE_OUT = 2,  /* a graph output */
	GRAPH_ROLE_READ = 4, /* read by some node (graph_check) */
	GRAPH_ROLE_SEEN = 8, /* seen in the inputs list (graph_check) */
};

/* ---- graph.c ------------------------------------------------------------ */

/* df_errf() prefixed with "node 'name' (Op): ". */
df_err graph_node_err(const graph_node *nd, df_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* New string from a printf format; NULL when out of memory. */
char *graph_str_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Grows *arr (of *cap elements of size elem) to hold at least need. */
df_err graph_grow(void **arr, int *cap, int need, size_t elem);

/* graph_add_value() with a formatted name. */
df_err graph_add_value_fmt(graph *g, int ndim, const int64_t *dims,
                           tensor *constant, int *index, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Per value: GRAPH_ROLE_IN if it is a graph input, GRAPH_ROLE_OUT if a
 * graph output, with `extra` zeroed slots for values added later. New array
 * (free()), or NULL when out of memory. */
uint8_t *graph_value_roles(const graph *g, size_t extra);

/* Per value: number of node input slots and post-op operands reading it.
 * New array of n_values ints (free()), or NULL when out of memory. */
int *graph_slot_refs(const graph *g);

/* Value indices node nd depends on (inputs and post-op operands), stored in
 * deps (room for GRAPH_MAX_INPUTS + GRAPH_MAX_POSTOPS); returns the count. */
int graph_node_deps(const graph_node *nd, int *deps);

/* Removes the nodes whose keep[] is false and recomputes all producers. */
void graph_nodes_compact(graph *g, const bool *keep);

/* ---- graph_infer.c ------------------------------------------------------ */

/* Infers nd's output shape on g (nd may be a copy of a node of g) and
 * normalizes nd's attributes. */
df_err graph_infer_shape(const graph *g, graph_node *nd, int *ondim,
                         int64_t *od);

/* ---- graph_fold.c ------------------------------------------------------- */

/* Infers every node's shape in order and folds the nodes that can be
 * evaluated now. Nodes must be in topological order. */
df_err graph_infer_fold_all(graph *g);

/* ---- graph_canon.c ------------------------------------------------------ */

/* Brings every node into the canonical form of graph.h (see graph_canon.c).
 * Shapes must be inferred; the caller re-runs inference afterwards. */
df_err graph_canonicalize(graph *g);

/* ---- small inline helpers ----------------------------------------------- */

static inline int64_t graph_sat_add(int64_t a, int64_t b)
{
	int64_t r;
	return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

static inline int64_t graph_sat_mul(int64_t a, int64_t b)
{
	int64_t r;
	return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}

static inline int64_t graph_dims_numel(int ndim, const int64_t *dims)
{
	int64_t n = 1;
	for (int i = 0; i < ndim; i++)
		n = graph_sat_mul(n, dims[i]);
	return n;
}

static inline bool graph_dims_equal(int na, const int64_t *a, int nb,
                                    const int64_t *b)
{
	if (na != nb)
		return false;
	for (int i = 0; i < na; i++)
		if (a[i] != b[i])
			return false;
	return true;
}

static inline const char *graph_vname(const graph *g, int v)
{
	if (v < 0 || v >= g->n_values || !g->values[v].name)
		return "?";
	return g->values[v].name;
}

static inline bool graph_is_const(const graph *g, int v)
{
	return v >= 0 && g->values[v].constant != NULL;
}

static inline tensor_dtype graph_vdtype(const graph *g, int v)
{
	const tensor *c = g->values[v].constant;
	return c ? c->dtype : TENSOR_F32;
}

static inline bool graph_value_ok(const graph *g, int v)
{
	return v >= 0 && v < g->n_values;
}

#endif
