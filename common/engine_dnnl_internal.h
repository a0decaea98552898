/*
 * engine_dnnl_internal.h - what the oneDNN engine's files share:
 * engine_dnnl.c (create, the node-build loop, run, destroy; the design is
 * described there), engine_dnnl_mem.c (values, storages, steps, constants
 * and arena planning), engine_dnnl_ops.c (the per-op builders and their
 * dispatch) and engine_dnnl_conv.c (Conv, Gemm and MatMul builders).
 * The state struct, the error macros and the helpers a builder uses to get
 * its inputs in a layout, describe its output and append its steps.
 * Nothing outside common/engine_dnnl*.c includes this header.
 */
#ifndef DF_ENGINE_DNNL_INTERNAL_H
#define DF_ENGINE_DNNL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <oneapi/dnnl/dnnl.h>

#include "engine_impl.h"
#include "graph.h"

#define DN_MAX_ARGS 16      /* per step: concat of 8 + dst + scratchpad */
#define DN_ALIGN 64         /* arena offsets and buffers */
#define DN_EXTERNAL (-1)    /* storage: a handle fixed at creation */
#define DN_SCRATCH (-2)     /* storage: the shared scratchpad */

typedef struct dn_mem {
	dnnl_memory_t mem;
	dnnl_memory_desc_t md;
	int storage;  /* arena storage index, DN_EXTERNAL or DN_SCRATCH */
	void *ext;    /* the handle when storage == DN_EXTERNAL (borrowed) */
} dn_mem;

typedef struct dn_storage {
	size_t size;   /* bytes, a multiple of DN_ALIGN */
	int first;     /* first step touching it; -1 = written before step 0 */
	int last;      /* last step touching it; n_steps = read after the end */
	size_t offset; /* in the arena, set by the planner */
} dn_storage;

typedef struct dn_arg {
	int arg;  /* DNNL_ARG_* */
	int mem;  /* index into mems */
} dn_arg;

typedef struct dn_step {
	dnnl_primitive_t prim;  /* owned */
	int node;               /* graph node it implements (error messages) */
	int nthr;               /* OpenMP threads it was created for */
	int nargs;
	dn_arg args[DN_MAX_ARGS];
	dnnl_exec_arg_t exec[DN_MAX_ARGS]; /* args resolved at the end */
} dn_step;

typedef struct dn_out {
	int src;                /* mem holding the output value */
	dnnl_primitive_t prim;  /* reorder to plain, or NULL: plain copy */
	dnnl_memory_t dst;      /* plain md; handle set on every run */
	int scratch;            /* scratchpad mem of prim, or -1 */
} dn_out;

typedef struct dn_engine {
	engine base;            /* must be first */
	dnnl_engine_t eng;
	dnnl_stream_t stream;
	dn_mem *mems;
	int n_mems, cap_mems;
	dn_storage *stor;
	int n_stor, cap_stor;
	dn_step *steps;
	int n_steps, cap_steps;
	void **owned;           /* reordered weights, constant buffers */
	graph *release;         /* base.g when its constants are copied and
				 * released (engine_create_release), or NULL */
	int n_owned, cap_owned;
	int *val_mem;     /* per value: mem in its own layout, or -1 */
	int *val_plain;   /* per value: mem with a plain copy, or -1 */
	int *val_alt;     /* per value: mem with a copy in another layout */
	int *val_storage; /* per value: storage of val_mem (or DN_EXTERNAL) */
	int *last_use;    /* per value: last node reading it, INT_MAX: output */
	int *in_mem;      /* per graph input: the mem inputs are copied into */
	dn_out *outs;     /* per graph output */
	size_t scratch_size;
	size_t arena_size;
	void *arena;
	void *scratch;
	int n_reorders;   /* layout conversions inserted (for the log) */
	int n_serial;     /* steps run on one thread (for the log) */
	int cur_node;     /* node being built, for messages; -1 = none */
	int cur_nthr;     /* threads of the steps being built */
} dn_engine;

/* Inside a function with `df_err err` and an `out:` label, using E. */
#define DN_TRY(call)                                                         \
	do {                                                                 \
		dnnl_status_t st_ = (call);                                  \
		if (st_ != dnnl_success) {                                   \
			err = dn_fail(E, st_, #call);                        \
			goto out;                                            \
		}                                                            \
	} while (0)

#define DN_CHECK(expr)                                                       \
	do {                                                                 \
		if ((err = (expr)))                                          \
			goto out;                                            \
	} while (0)

/* A df_err whose message names the node being built (E->cur_node). */
df_err dn_node_err(const dn_engine *E, df_err err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Maps a failed oneDNN call to a df_err naming the node and the function. */
df_err dn_fail(const dn_engine *E, dnnl_status_t st, const char *call);

/* Allocates size bytes kept until the engine is destroyed. */
df_err dn_owned_alloc(dn_engine *E, size_t size, void **out);

/* Dims of a graph value for oneDNN: a scalar becomes [1]. */
int dn_dims(const graph_value *v, dnnl_dims_t d);

/* Product of d[from..to). */
int64_t dn_prod(const dnnl_dim_t *d, int from, int to);

/* Dense row-major f32 descriptor. */
dnnl_status_t dn_md_plain(dnnl_memory_desc_t *md, int nd,
			  const dnnl_dim_t *dims);

/* f32 descriptor with format_tag_any (the primitive picks). */
dnnl_status_t dn_md_any(dnnl_memory_desc_t *md, int nd,
			const dnnl_dim_t *dims);

/* True when md is dense row-major. */
bool dn_md_is_plain(const dnnl_memory_desc_t *md);

/* True when a and b have the same dims. */
bool dn_md_same_dims(const dnnl_memory_desc_t *a,
		     const dnnl_memory_desc_t *b);

/* New memory object for md in `storage` (handle set after planning) or,
 * for DN_EXTERNAL, over the borrowed handle ext. */
df_err dn_mem_new(dn_engine *E, const dnnl_memory_desc_t *md,
		  int storage, void *ext, int *out);

/* New storage sized for md and a memory object over it. */
df_err dn_mem_fresh(dn_engine *E, const dnnl_memory_desc_t *md, int *out);

/* A plain view of plain mem m with other dims (same element count). */
df_err dn_view(dn_engine *E, int m, int nd, const dnnl_dim_t *dims,
	       int *out);

/* Records mem m (and its storage) as value v's. */
void dn_set_value(dn_engine *E, int v, int m);

/* True when nothing after node n reads storage s: every value living in s
 * (or whose plain copy lives there) is dead after n. */
bool dn_dead_after(const dn_engine *E, int s, int n);

/* Creates the primitive of pd and appends it as a step with args plus its
 * scratchpad. args must have room for one more entry. */
df_err dn_emit(dn_engine *E, const_dnnl_primitive_desc_t pd,
	       dn_arg *args, int nargs);

/* New attr with a user-managed scratchpad. */
df_err dn_attr_new(dn_engine *E, dnnl_primitive_attr_t *out);

/* Appends a reorder step src -> dst (same dims, any layouts). */
df_err dn_reorder(dn_engine *E, int src, int dst);

/* New storage in layout md filled from mem src by a reorder step. */
df_err dn_convert(dn_engine *E, int src, const dnnl_memory_desc_t *md,
		  int *out);

/* The mem of value v in its own layout; constants get a plain mem over
 * their data (an owned copy when E->release) on first use. */
df_err dn_value(dn_engine *E, int v, int *out);

/* Value v in plain row-major layout (a shared conversion if needed). */
df_err dn_plain(dn_engine *E, int v, int *out);

/* Value v in layout md (same dims as the value). */
df_err dn_in_layout(dn_engine *E, int v, const dnnl_memory_desc_t *md,
		    int *out);

/* Weights/bias constant c described by user_md, in layout want: the
 * constant itself when the layouts agree (a copy when E->release), else a
 * reordered copy made now. */
df_err dn_const(dn_engine *E, const graph_value *cv,
		const dnnl_memory_desc_t *user_md,
		const dnnl_memory_desc_t *want, int *out);

/* Plain mem over constant value v's data with dims d (same count). */
df_err dn_const_view(dn_engine *E, int v, int nd, const dnnl_dim_t *d,
		     int *out);

/* Out-of-memory error naming the node being built. */
df_err dn_oom(const dn_engine *E);

/* With E->release: frees the graph's data of each constant that node n
 * reads for the last time (the engine holds its own copy by now). */
void dn_release_consts(dn_engine *E, int n);

/* Pins graph inputs before step 0 and outputs after the last step, and
 * creates each blocked output's reorder to plain. After the node loop. */
df_err dn_bind_io(dn_engine *E);

/* Assigns arena offsets to the storages (after dn_bind_io). */
df_err dn_plan(dn_engine *E);

/* Allocates the arena and scratchpad, points every mem at its bytes and
 * resolves the steps' argument lists (after dn_plan). */
df_err dn_bind(dn_engine *E);

/* Builds node n (engine_dnnl_ops.c): appends its steps and records the
 * mem of its output value. Errors name the node (E->cur_node). */
df_err dn_build_node(dn_engine *E, int n);

/* Primitive descriptor for op_desc with attr or, when attr is NULL, with
 * an attr that only asks for the user-managed scratchpad all steps use
 * (engine_dnnl_ops.c). */
df_err dn_pd_new(dn_engine *E, const_dnnl_op_desc_t op_desc,
		 const_dnnl_primitive_attr_t attr,
		 dnnl_primitive_desc_t *out);

/* oneDNN eltwise algorithm and alpha/beta for activation act with ONNX
 * parameters a, b (engine_dnnl_conv.c). */
df_err dn_act(const dn_engine *E, graph_act act, float a, float b,
	      dnnl_alg_kind_t *alg, float *alpha, float *beta);

/* Builders of Conv, Gemm and MatMul nodes with their fused post-ops
 * (engine_dnnl_conv.c), called by dn_build_node(). */
df_err dn_build_conv(dn_engine *E, int n);
df_err dn_build_gemm(dn_engine *E, int n);
df_err dn_build_matmul(dn_engine *E, int n);

#endif
