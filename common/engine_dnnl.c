/*
 * engine_dnnl.c - the oneDNN engine: runs a finalized graph with oneDNN 2.x
 * (C API) primitives that are all built once, in engine_dnnl_create().
 *
 * Build: the nodes are walked in order and each becomes one or more steps
 * (a primitive and its argument list):
 *  - Conv lets oneDNN pick activation and weight layouts (format_tag_any:
 *    with oneDNN 2.6 on AVX-512 the brgconv kernels pick channels-last
 *    nhwc, Winograd nChw16c, AVX2 kernels nChw8c); weights and bias are
 *    reordered once, at create, into the chosen layout. Post-ops map
 *    to eltwise post-ops (relu, clip, leaky relu as relu with alpha,
 *    logistic) and a fused residual ADD to a sum post-op. Canonical Gemm
 *    is an inner product (trans_a: a matmul reading A through strides),
 *    MatMul a matmul, unfolded BatchNorm a binary mul with a binary-add
 *    post-op, Add/Mul binary ops with numpy broadcasting, pools pooling_v2,
 *    Softmax softmax_v2, Concat concat.
 *  - Activations keep the layout their producer chose: element-wise ops,
 *    pooling, binary ops and concat accept any layout, so data stays
 *    blocked (or nhwc) from conv to conv. A reorder step is inserted only
 *    where a consumer needs another layout (plain for Gemm/MatMul/Softmax/
 *    Reshape/Flatten, or a conv that prefers another format) and for the
 *    graph outputs. Each value is converted at most once per layout and
 *    the copy is shared by all its consumers.
 *  - A fused ADD: the conv/gemm writes its result in place into the
 *    operand's buffer when the operand is dead afterwards and already has
 *    the output layout (the usual ResNet / MobileNetV2 shortcut); otherwise
 *    the operand is first copied (reordered) into the output buffer. Either
 *    way the sum post-op then adds the product to it.
 *
 * Memory: every value lives in a storage, a byte range of one arena.
 * Flatten/Reshape of plain data and in-place ops (eltwise, binary, sum)
 * share their input's storage. Once all steps exist, a storage's lifetime
 * is the range of steps touching it; storages with disjoint lifetimes share
 * arena bytes (greedy, largest first). Every primitive uses a user-managed
 * scratchpad in one shared buffer of the largest size (steps run one at a
 * time). Invariant: a step never writes a storage that any later step
 * reads as another value (in-place only when every value in the storage is
 * dead after the node).
 *
 * Run: inputs are copied into their storages, the steps execute on one
 * in-order stream, and outputs are reordered (or copied) into new plain
 * tensors.
 *
 * Threads: this oneDNN uses OpenMP, and its kernels size their work split
 * by omp_get_max_threads() both when a primitive is created and when it
 * runs. Create and run therefore set omp_set_num_threads() on the calling
 * thread and restore the previous value before returning, so the engine's
 * count does not leak into the caller's other OpenMP code. threads == 0
 * means omp_get_max_threads() (OMP_NUM_THREADS or the cores). Each step
 * gets either all the threads or one: a step too small to repay waking
 * the pool (and waiting at its barrier for every thread, which on a loaded
 * machine means waiting for the scheduler) runs on the calling thread
 * alone. "Too small" is below DN_PAR_MACS multiply-adds (or DN_PAR_ELEMS
 * output elements for element-wise and pooling ops); both are 8x higher
 * when OMP_WAIT_POLICY is PASSIVE, where every parallel step pays a futex
 * wake-up instead of a spinning hand-off.
 *
 * OpenMP wait policy: libgomp lets an idle pool thread spin 300000
 * iterations (~3.5 ms here) before it sleeps. On a machine whose cores are
 * shared with other processes, or under a cgroup CPU quota, that spinning
 * takes the CPU from the very thread the spinner waits for: ResNet-18 at 2
 * threads measured 4-13x slower (median) on our shared 2-core box than
 * with OMP_WAIT_POLICY=PASSIVE, and no faster in the best case. libgomp
 * reads the policy once, before main(), so it cannot be changed from here:
 * launchers of dicefleet processes on shared machines should set
 * OMP_WAIT_POLICY=PASSIVE (or GOMP_SPINCOUNT to a few thousand).
 *
 * Convolution algorithm: direct, except 3x3 stride-1 undilated ungrouped
 * convs with >= 64 input and output channels and an output of at least
 * 14x14, which ask for Winograd F(2x2,3x3) (falling back to direct where
 * oneDNN offers no such kernel, or only the less accurate F(4x4,3x3)).
 * Measured on AVX-512 with ResNet-18 shapes: 0.60-0.85x the direct time at
 * 56x56..14x14, slower at 7x7; the logits stay within 1e-6 relative of the
 * direct result.
 */
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include "engine_impl.h"
#include "log.h"

#define DN_MAX_ARGS 16      /* per step: concat of 8 + dst + scratchpad */
#define DN_PAR_MACS (1 << 20)     /* see "Threads" above */
#define DN_PAR_ELEMS (200 * 1000)
#define DN_PAR_PASSIVE 8          /* threshold factor under a passive wait */
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

/* ---------------------------------------------------------------- errors */

static const char *dn_node_name(const graph_node *n)
{
	return n->name ? n->name : "?";
}

static df_err dn_node_err(const dn_engine *E, df_err err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static df_err dn_node_err(const dn_engine *E, df_err err, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (E->cur_node < 0)
		return df_errf(err, "dnnl engine: %s", msg);
	const graph_node *n = &E->base.g->nodes[E->cur_node];
	return df_errf(err, "node %s (%s): %s", dn_node_name(n),
		       graph_op_name(n->op), msg);
}

/* Maps a failed oneDNN call to a df_err naming the node and the function. */
static df_err dn_fail(const dn_engine *E, dnnl_status_t st, const char *call)
{
	/* Descriptors are built from the graph, so oneDNN rejecting one as
	 * invalid means the graph is inconsistent. */
	df_err err = st == dnnl_out_of_memory	     ? DF_ENOMEM
		     : st == dnnl_unimplemented      ? DF_ENOTSUP
		     : st == dnnl_invalid_arguments ? DF_EINVAL
						     : DF_EINTERNAL;
	int len = (int)strcspn(call, "(");
	return dn_node_err(E, err, "oneDNN %.*s failed: %s", len, call,
			   dnnl_status2str(st));
}

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

/* ------------------------------------------------------------- bookkeeping */

/* Makes room for `need` elements of size elem in *arr (capacity *cap).
 * Returns the (possibly moved) array, or NULL with *arr and *cap intact. */
static void *dn_grow(void *arr, int *cap, int need, size_t elem)
{
	if (need <= *cap)
		return arr;
	int nc = *cap ? *cap : 16;
	while (nc < need) {
		if (nc > INT_MAX / 2)
			return NULL;
		nc *= 2;
	}
	void *p = realloc(arr, (size_t)nc * elem);
	if (p)
		*cap = nc;
	return p;
}

static df_err dn_oom(const dn_engine *E)
{
	return dn_node_err(E, DF_ENOMEM, "%s", "out of memory");
}

static void *dn_alloc(size_t size)
{
	void *p = NULL;
	if (posix_memalign(&p, DN_ALIGN, size ? size : DN_ALIGN))
		return NULL;
	return p;
}

/* Allocates size bytes kept until the engine is destroyed. */
static df_err dn_owned_alloc(dn_engine *E, size_t size, void **out)
{
	void **o = dn_grow(E->owned, &E->cap_owned, E->n_owned + 1,
			   sizeof *E->owned);
	if (!o)
		return dn_oom(E);
	E->owned = o;
	void *p = dn_alloc(size);
	if (!p)
		return dn_oom(E);
	memset(p, 0, size ? size : DN_ALIGN);
	E->owned[E->n_owned++] = p;
	*out = p;
	return DF_OK;
}

/* ---------------------------------------------------------- memory descs */

/* Dims of a graph value for oneDNN: a scalar becomes [1]. */
static int dn_dims(const graph_value *v, dnnl_dims_t d)
{
	if (v->ndim == 0) {
		d[0] = 1;
		return 1;
	}
	for (int i = 0; i < v->ndim; i++)
		d[i] = v->dims[i];
	return v->ndim;
}

static int64_t dn_prod(const dnnl_dim_t *d, int from, int to)
{
	int64_t p = 1;
	for (int i = from; i < to; i++)
		p *= d[i];
	return p;
}

/* Dense row-major f32 descriptor. */
static dnnl_status_t dn_md_plain(dnnl_memory_desc_t *md, int nd,
				 const dnnl_dim_t *dims)
{
	dnnl_dims_t d, s;
	int64_t stride = 1;
	for (int i = nd - 1; i >= 0; i--) {
		d[i] = dims[i];
		s[i] = stride;
		stride *= dims[i];
	}
	return dnnl_memory_desc_init_by_strides(md, nd, d, dnnl_f32, s);
}

static dnnl_status_t dn_md_any(dnnl_memory_desc_t *md, int nd,
			       const dnnl_dim_t *dims)
{
	return dnnl_memory_desc_init_by_tag(md, nd, dims, dnnl_f32,
					    dnnl_format_tag_any);
}

static bool dn_md_is_plain(const dnnl_memory_desc_t *md)
{
	dnnl_memory_desc_t p;
	if (dn_md_plain(&p, md->ndims, md->dims) != dnnl_success)
		return false;
	return dnnl_memory_desc_equal(&p, md);
}

static bool dn_md_same_dims(const dnnl_memory_desc_t *a,
			    const dnnl_memory_desc_t *b)
{
	if (a->ndims != b->ndims)
		return false;
	for (int i = 0; i < a->ndims; i++)
		if (a->dims[i] != b->dims[i])
			return false;
	return true;
}

/* ------------------------------------------------------ storages and mems */

static df_err dn_storage_new(dn_engine *E, const dnnl_memory_desc_t *md,
			     int *out)
{
	size_t size = dnnl_memory_desc_get_size(md);
	if (size == 0 || size > TENSOR_MAX_BYTES)
		return dn_node_err(E, DF_ERANGE, "buffer of %zu bytes", size);
	dn_storage *s = dn_grow(E->stor, &E->cap_stor, E->n_stor + 1,
				sizeof *E->stor);
	if (!s)
		return dn_oom(E);
	E->stor = s;
	E->stor[E->n_stor] = (dn_storage){
		.size = (size + DN_ALIGN - 1) / DN_ALIGN * DN_ALIGN,
		.first = INT_MAX,
		.last = INT_MIN,
	};
	*out = E->n_stor++;
	return DF_OK;
}

/* New memory object for md in `storage` (handle set after planning) or,
 * for DN_EXTERNAL, over the borrowed handle ext. */
static df_err dn_mem_new(dn_engine *E, const dnnl_memory_desc_t *md,
			 int storage, void *ext, int *out)
{
	df_err err = DF_OK;
	dnnl_memory_t m = NULL;
	dn_mem *ms = dn_grow(E->mems, &E->cap_mems, E->n_mems + 1,
			     sizeof *E->mems);
	if (!ms)
		return dn_oom(E);
	E->mems = ms;
	DN_TRY(dnnl_memory_create(&m, md, E->eng,
				  storage == DN_EXTERNAL ? ext : DNNL_MEMORY_NONE));
	E->mems[E->n_mems] = (dn_mem){
		.mem = m, .md = *md, .storage = storage,
		.ext = storage == DN_EXTERNAL ? ext : NULL,
	};
	*out = E->n_mems++;
out:
	return err;
}

/* New storage sized for md and a memory object over it. */
static df_err dn_mem_fresh(dn_engine *E, const dnnl_memory_desc_t *md, int *out)
{
	int s = -1;
	df_err err = dn_storage_new(E, md, &s);
	if (err)
		return err;
	return dn_mem_new(E, md, s, NULL, out);
}

/* A plain view of plain mem m with other dims (same element count). */
static df_err dn_view(dn_engine *E, int m, int nd, const dnnl_dim_t *dims,
		      int *out)
{
	df_err err = DF_OK;
	dnnl_memory_desc_t md;
	if (dn_prod(dims, 0, nd) != dn_prod(E->mems[m].md.dims, 0,
					    E->mems[m].md.ndims))
		return dn_node_err(E, DF_EINVAL, "%s",
				   "reshaped view changes the element count");
	DN_TRY(dn_md_plain(&md, nd, dims));
	err = dn_mem_new(E, &md, E->mems[m].storage, E->mems[m].ext, out);
out:
	return err;
}

static void dn_set_value(dn_engine *E, int v, int m)
{
	E->val_mem[v] = m;
	E->val_storage[v] = E->mems[m].storage;
}

/* True when nothing after node n reads storage s: every value living in s
 * (or whose plain copy lives there) is dead after n. */
static bool dn_dead_after(const dn_engine *E, int s, int n)
{
	if (s < 0)
		return false;
	const graph *g = E->base.g;
	for (int v = 0; v < g->n_values; v++) {
		if (E->last_use[v] <= n)
			continue;
		if (E->val_storage[v] == s ||
		    (E->val_plain[v] >= 0 &&
		     E->mems[E->val_plain[v]].storage == s) ||
		    (E->val_alt[v] >= 0 && E->mems[E->val_alt[v]].storage == s))
			return false;
	}
	return true;
}

/* ----------------------------------------------------------------- steps */

/* Appends a step; takes ownership of prim (destroyed on failure). */
static df_err dn_step_add(dn_engine *E, dnnl_primitive_t prim,
			  const dn_arg *args, int nargs)
{
	dn_step *st = dn_grow(E->steps, &E->cap_steps, E->n_steps + 1,
			      sizeof *E->steps);
	if (!st) {
		dnnl_primitive_destroy(prim);
		return dn_oom(E);
	}
	E->steps = st;
	int idx = E->n_steps++;
	dn_step *s = &E->steps[idx];
	memset(s, 0, sizeof *s);
	s->prim = prim;
	s->node = E->cur_node;
	s->nthr = E->cur_nthr;
	s->nargs = nargs;
	memcpy(s->args, args, (size_t)nargs * sizeof *args);
	for (int i = 0; i < nargs; i++) {
		int sto = E->mems[args[i].mem].storage;
		if (sto < 0)
			continue;
		if (idx < E->stor[sto].first)
			E->stor[sto].first = idx;
		if (idx > E->stor[sto].last)
			E->stor[sto].last = idx;
	}
	return DF_OK;
}

/* Scratchpad mem for pd (or -1 when it needs none). */
static df_err dn_scratch_mem(dn_engine *E, const_dnnl_primitive_desc_t pd,
			     int *out)
{
	const dnnl_memory_desc_t *smd =
		dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
	size_t size = smd ? dnnl_memory_desc_get_size(smd) : 0;
	*out = -1;
	if (size == 0)
		return DF_OK;
	if (size > E->scratch_size)
		E->scratch_size = size;
	return dn_mem_new(E, smd, DN_SCRATCH, NULL, out);
}

/* Creates the primitive of pd and appends it as a step with args plus its
 * scratchpad. args must have room for one more entry. */
static df_err dn_emit(dn_engine *E, const_dnnl_primitive_desc_t pd,
		      dn_arg *args, int nargs)
{
	df_err err = DF_OK;
	dnnl_primitive_t prim = NULL;
	int sm;
	DN_TRY(dnnl_primitive_create(&prim, pd));
	DN_CHECK(dn_scratch_mem(E, pd, &sm));
	if (sm >= 0)
		args[nargs++] = (dn_arg){DNNL_ARG_SCRATCHPAD, sm};
	err = dn_step_add(E, prim, args, nargs);
	prim = NULL;
out:
	if (prim)
		dnnl_primitive_destroy(prim);
	return err;
}

/* New attr with a user-managed scratchpad. */
static df_err dn_attr_new(dn_engine *E, dnnl_primitive_attr_t *out)
{
	df_err err = DF_OK;
	dnnl_primitive_attr_t attr = NULL;
	DN_TRY(dnnl_primitive_attr_create(&attr));
	DN_TRY(dnnl_primitive_attr_set_scratchpad_mode(attr,
						       dnnl_scratchpad_mode_user));
	*out = attr;
	attr = NULL;
out:
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return err;
}

/* Appends a reorder step src -> dst (same dims, any layouts). */
static df_err dn_reorder(dn_engine *E, int src, int dst)
{
	df_err err = DF_OK;
	dnnl_primitive_attr_t attr = NULL;
	dnnl_primitive_desc_t pd = NULL;
	dn_arg args[DN_MAX_ARGS] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
	DN_CHECK(dn_attr_new(E, &attr));
	DN_TRY(dnnl_reorder_primitive_desc_create(&pd, &E->mems[src].md, E->eng,
						  &E->mems[dst].md, E->eng,
						  attr));
	DN_CHECK(dn_emit(E, pd, args, 2));
	E->n_reorders++;
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return err;
}

/* New storage in layout md filled from mem src by a reorder step. */
static df_err dn_convert(dn_engine *E, int src, const dnnl_memory_desc_t *md,
			 int *out)
{
	int m;
	df_err err = dn_mem_fresh(E, md, &m);
	if (!err)
		err = dn_reorder(E, src, m);
	if (!err)
		*out = m;
	return err;
}

/* ----------------------------------------------------------------- values */

/* The mem of value v in its own layout; constants get a plain mem over
 * their data on first use. */
static df_err dn_value(dn_engine *E, int v, int *out)
{
	df_err err = DF_OK;
	const graph *g = E->base.g;
	if (v < 0 || v >= g->n_values)
		return dn_node_err(E, DF_EINVAL, "input value %d out of range", v);
	if (E->val_mem[v] >= 0) {
		*out = E->val_mem[v];
		return DF_OK;
	}
	const graph_value *gv = &g->values[v];
	const char *name = gv->name ? gv->name : "?";
	if (!gv->constant)
		return dn_node_err(E, DF_EINTERNAL,
				   "value '%s' is read before it is computed",
				   name);
	if (gv->constant->dtype != TENSOR_F32)
		return dn_node_err(E, DF_ENOTSUP,
				   "constant '%s' is %s; only f32 data is supported",
				   name, tensor_dtype_name(gv->constant->dtype));
	dnnl_dims_t d;
	dnnl_memory_desc_t md;
	int nd = dn_dims(gv, d);
	if ((size_t)dn_prod(d, 0, nd) != gv->constant->numel)
		return dn_node_err(E, DF_EINVAL,
				   "constant '%s' has %zu elements, its shape says %lld",
				   name, gv->constant->numel,
				   (long long)dn_prod(d, 0, nd));
	DN_TRY(dn_md_plain(&md, nd, d));
	int m;
	DN_CHECK(dn_mem_new(E, &md, DN_EXTERNAL, gv->constant->data, &m));
	dn_set_value(E, v, m);
	*out = m;
out:
	return err;
}

/* Value v in plain row-major layout (a shared conversion if needed). */
static df_err dn_plain(dn_engine *E, int v, int *out)
{
	int m;
	df_err err = dn_value(E, v, &m);
	if (err)
		return err;
	if (dn_md_is_plain(&E->mems[m].md)) {
		*out = m;
		return DF_OK;
	}
	if (E->val_plain[v] < 0) {
		dnnl_memory_desc_t md;
		if (dn_md_plain(&md, E->mems[m].md.ndims, E->mems[m].md.dims) !=
		    dnnl_success)
			return dn_node_err(E, DF_EINTERNAL, "%s",
					   "cannot describe a plain layout");
		if ((err = dn_convert(E, m, &md, &E->val_plain[v])))
			return err;
	}
	*out = E->val_plain[v];
	return DF_OK;
}

/* Value v in layout md (same dims as the value). */
static df_err dn_in_layout(dn_engine *E, int v, const dnnl_memory_desc_t *md,
			   int *out)
{
	int m;
	df_err err = dn_value(E, v, &m);
	if (err)
		return err;
	if (dnnl_memory_desc_equal(&E->mems[m].md, md)) {
		*out = m;
		return DF_OK;
	}
	if (dn_md_is_plain(md)) {
		if ((err = dn_plain(E, v, &m)))
			return err;
		if (dnnl_memory_desc_equal(&E->mems[m].md, md)) {
			*out = m;
			return DF_OK;
		}
	}
	int a = E->val_alt[v];
	if (a >= 0 && dnnl_memory_desc_equal(&E->mems[a].md, md)) {
		*out = a;
		return DF_OK;
	}
	if ((err = dn_convert(E, m, md, &a)))
		return err;
	E->val_alt[v] = a;
	*out = a;
	return DF_OK;
}

/* Weights/bias constant c described by user_md, in layout want: the
 * constant itself when the layouts agree, else a reordered copy made now. */
static df_err dn_const(dn_engine *E, const graph_value *cv,
		       const dnnl_memory_desc_t *user_md,
		       const dnnl_memory_desc_t *want, int *out)
{
	df_err err = DF_OK;
	dnnl_memory_t um = NULL, wm = NULL;
	dnnl_primitive_desc_t pd = NULL;
	dnnl_primitive_t prim = NULL;
	const tensor *c = cv->constant;
	const char *name = cv->name ? cv->name : "?";
	if (!c)
		return dn_node_err(E, DF_ENOTSUP,
				   "'%s' must be a constant", name);
	if (c->dtype != TENSOR_F32)
		return dn_node_err(E, DF_ENOTSUP, "constant '%s' is %s, not f32",
				   name, tensor_dtype_name(c->dtype));
	if ((size_t)dn_prod(user_md->dims, 0, user_md->ndims) != c->numel)
		return dn_node_err(E, DF_EINVAL,
				   "constant '%s' has %zu elements, expected %lld",
				   name, c->numel,
				   (long long)dn_prod(user_md->dims, 0,
						      user_md->ndims));
	if (dnnl_memory_desc_equal(user_md, want))
		return dn_mem_new(E, want, DN_EXTERNAL, c->data, out);
	void *buf;
	DN_CHECK(dn_owned_alloc(E, dnnl_memory_desc_get_size(want), &buf));
	DN_TRY(dnnl_memory_create(&um, user_md, E->eng, c->data));
	DN_TRY(dnnl_memory_create(&wm, want, E->eng, buf));
	DN_TRY(dnnl_reorder_primitive_desc_create(&pd, user_md, E->eng, want,
						  E->eng, NULL));
	DN_TRY(dnnl_primitive_create(&prim, pd));
	dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, um}, {DNNL_ARG_TO, wm}};
	DN_TRY(dnnl_primitive_execute(prim, E->stream, 2, args));
	DN_TRY(dnnl_stream_wait(E->stream));
	err = dn_mem_new(E, want, DN_EXTERNAL, buf, out);
out:
	if (prim)
		dnnl_primitive_destroy(prim);
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (um)
		dnnl_memory_destroy(um);
	if (wm)
		dnnl_memory_destroy(wm);
	return err;
}

/* Plain mem over constant value v's data with dims d (same count). */
static df_err dn_const_view(dn_engine *E, int v, int nd, const dnnl_dim_t *d,
			    int *out)
{
	df_err err = DF_OK;
	const graph_value *cv = &E->base.g->values[v];
	dnnl_memory_desc_t md;
	DN_TRY(dn_md_plain(&md, nd, d));
	err = dn_const(E, cv, &md, &md, out);
out:
	return err;
}

/* -------------------------------------------------------------- post-ops */

static df_err dn_act(const dn_engine *E, graph_act act, float a, float b,
		     dnnl_alg_kind_t *alg, float *alpha, float *beta)
{
	*alpha = 0.0f;
	*beta = 0.0f;
	switch (act) {
	case GRAPH_ACT_RELU:
		*alg = dnnl_eltwise_relu;
		return DF_OK;
	case GRAPH_ACT_CLIP:
		*alg = dnnl_eltwise_clip;
		/* ONNX: min(max(x, lo), hi), which is hi everywhere when
		 * lo > hi; oneDNN would return lo below lo. */
		*alpha = a > b ? b : a;
		*beta = b;
		return DF_OK;
	case GRAPH_ACT_LEAKYRELU:
		*alg = dnnl_eltwise_relu;
		*alpha = a;
		return DF_OK;
	case GRAPH_ACT_SIGMOID:
		*alg = dnnl_eltwise_logistic;
		return DF_OK;
	default:
		return dn_node_err(E, DF_ENOTSUP, "activation %d", (int)act);
	}
}

/* Index of node n's first ADD post-op, or -1. It becomes a sum post-op;
 * later ADDs become binary-add post-ops reading a plain operand. */
static int dn_first_add(const graph_node *nd)
{
	for (int p = 0; p < nd->n_postops; p++)
		if (nd->postops[p].kind == GRAPH_POSTOP_ADD)
			return p;
	return -1;
}

/* Attr with a user scratchpad and node n's post-ops for a primitive whose
 * dst has dims (nd, dims). Binary post-op operands are appended to args. */
static df_err dn_postops_attr(dn_engine *E, const graph_node *nd, int ndims,
			      const dnnl_dim_t *dims, dnnl_primitive_attr_t *out,
			      dn_arg *args, int *nargs)
{
	df_err err = DF_OK;
	dnnl_primitive_attr_t attr = NULL;
	dnnl_post_ops_t po = NULL;
	int first_add = dn_first_add(nd);
	DN_CHECK(dn_attr_new(E, &attr));
	if (nd->n_postops > 0) {
		DN_TRY(dnnl_post_ops_create(&po));
		for (int p = 0; p < nd->n_postops; p++) {
			const graph_postop *op = &nd->postops[p];
			if (op->kind == GRAPH_POSTOP_ACT) {
				dnnl_alg_kind_t alg = dnnl_alg_kind_undef;
				float a = 0.0f, b = 0.0f;
				DN_CHECK(dn_act(E, op->act, op->alpha, op->beta,
						&alg, &a, &b));
				DN_TRY(dnnl_post_ops_append_eltwise(po, 1.0f, alg,
								    a, b));
			} else if (p == first_add) {
				DN_TRY(dnnl_post_ops_append_sum(po, 1.0f));
			} else {
				int pm, vm;
				dnnl_memory_desc_t md;
				DN_CHECK(dn_plain(E, op->operand, &pm));
				DN_CHECK(dn_view(E, pm, ndims, dims, &vm));
				DN_TRY(dn_md_plain(&md, ndims, dims));
				DN_TRY(dnnl_post_ops_append_binary(
					po, dnnl_binary_add, &md));
				args[(*nargs)++] = (dn_arg){
					DNNL_ARG_ATTR_MULTIPLE_POST_OP(p) |
						DNNL_ARG_SRC_1,
					vm};
			}
		}
		DN_TRY(dnnl_primitive_attr_set_post_ops(attr, po));
	}
	*out = attr;
	attr = NULL;
out:
	if (po)
		dnnl_post_ops_destroy(po);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return err;
}

/* True when mem m's storage is that of one of the n args (mem -1 skipped):
 * the primitive reads it. */
static bool dn_reads_storage(const dn_engine *E, int m, const dn_arg *args,
			     int n)
{
	for (int i = 0; i < n; i++)
		if (args[i].mem >= 0 &&
		    E->mems[args[i].mem].storage == E->mems[m].storage)
			return true;
	return false;
}

/*
 * The dst mem of node n's primitive (layout dst_md) holding the operand of
 * its first ADD post-op, if any, when the primitive starts: the operand's
 * own storage when it is dead afterwards, has this layout and is not read
 * by the primitive through any of its other arguments (args[0..n_args)),
 * else a new storage the operand is copied into. Without ADD, a new
 * storage.
 */
static df_err dn_fused_dst(dn_engine *E, int n,
			   const dnnl_memory_desc_t *dst_md, const dn_arg *args,
			   int n_args, int *out)
{
	const graph_node *nd = &E->base.g->nodes[n];
	int p = dn_first_add(nd);
	if (p < 0)
		return dn_mem_fresh(E, dst_md, out);
	int om, dm;
	int operand = nd->postops[p].operand;
	df_err err = dn_value(E, operand, &om);
	if (err)
		return err;
	const dn_mem *o = &E->mems[om];
	bool fits = dnnl_memory_desc_equal(&o->md, dst_md) ||
		    (dn_md_is_plain(&o->md) && dn_md_is_plain(dst_md) &&
		     dn_prod(o->md.dims, 0, o->md.ndims) ==
			     dn_prod(dst_md->dims, 0, dst_md->ndims));
	if (fits && !dn_reads_storage(E, om, args, n_args) &&
	    dn_dead_after(E, o->storage, n))
		return dn_mem_new(E, dst_md, o->storage, NULL, out);
	if ((err = dn_mem_fresh(E, dst_md, &dm)))
		return err;
	if (!dn_md_same_dims(&o->md, dst_md)) {
		int pm;
		if ((err = dn_plain(E, operand, &pm)) ||
		    (err = dn_view(E, pm, dst_md->ndims, dst_md->dims, &om)))
			return err;
	}
	if ((err = dn_reorder(E, om, dm)))
		return err;
	*out = dm;
	return DF_OK;
}

/* ------------------------------------------------------------------ nodes */

/* True when pd runs Winograd F(2x2,3x3). oneDNN may also offer F(4x4,3x3)
 * (jit_wino_4x3), whose error is several times larger (measured 2e-6 vs
 * 4e-7 absolute on unit-scale data); we take only the 2x3 kernel. */
static bool dn_is_wino_2x3(const_dnnl_primitive_desc_t pd)
{
	const char *impl = NULL;
	if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) !=
		    dnnl_success ||
	    !impl)
		return false;
	return strstr(impl, "wino_2x3") != NULL;
}

static df_err dn_build_conv(dn_engine *E, int n)
{
	df_err err = DF_OK;
	const graph *g = E->base.g;
	const graph_node *nd = &g->nodes[n];
	const graph_conv_attr *a = &nd->attr.conv;
	dnnl_primitive_attr_t attr = NULL;
	dnnl_primitive_desc_t pd = NULL;
	dn_arg args[DN_MAX_ARGS];
	int nargs = 4;
	if (nd->n_inputs < 3 || nd->inputs[0] < 0 || nd->inputs[1] < 0 ||
	    nd->inputs[2] < 0)
		return dn_node_err(E, DF_EINVAL, "%s",
				   "expected inputs {x, W, bias}");
	const graph_value *xv = &g->values[nd->inputs[0]];
	const graph_value *wv = &g->values[nd->inputs[1]];
	const graph_value *bv = &g->values[nd->inputs[2]];
	const graph_value *yv = &g->values[nd->output];
	if (xv->ndim != 4 || wv->ndim != 4 || yv->ndim != 4)
		return dn_node_err(E, DF_ENOTSUP, "%s",
				   "only 2-D convolution (rank-4 tensors)");
	int64_t G = a->group, M = wv->dims[0], IC = xv->dims[1];
	if (G < 1 || M % G || IC % G || wv->dims[1] != IC / G)
		return dn_node_err(E, DF_EINVAL,
				   "group %lld does not fit %lld input / %lld "
				   "output channels", (long long)G,
				   (long long)IC, (long long)M);
	dnnl_dims_t xd, yd, wd, bd = {M};
	int wnd = G == 1 ? 4 : 5;
	dn_dims(xv, xd);
	dn_dims(yv, yd);
	if (G == 1) {
		wd[0] = M, wd[1] = IC, wd[2] = wv->dims[2], wd[3] = wv->dims[3];
	} else {
		wd[0] = G, wd[1] = M / G, wd[2] = IC / G;
		wd[3] = wv->dims[2], wd[4] = wv->dims[3];
	}
	dnnl_dims_t strides = {a->strides[0], a->strides[1]};
	dnnl_dims_t dil = {a->dilations[0] - 1, a->dilations[1] - 1};
	dnnl_dims_t pl = {a->pads[0], a->pads[1]};
	dnnl_dims_t pr = {a->pads[2], a->pads[3]};
	dnnl_memory_desc_t src_md, w_md, b_md, dst_md, w_user;
	DN_TRY(dn_md_any(&src_md, 4, xd));
	DN_TRY(dn_md_any(&w_md, wnd, wd));
	DN_TRY(dn_md_plain(&b_md, 1, bd));
	DN_TRY(dn_md_any(&dst_md, 4, yd));
	DN_TRY(dn_md_plain(&w_user, wnd, wd));
	dnnl_convolution_desc_t cd;
	DN_CHECK(dn_postops_attr(E, nd, 4, yd, &attr, args, &nargs));
	if (G == 1 && wd[2] == 3 && wd[3] == 3 && strides[0] == 1 &&
	    strides[1] == 1 && dil[0] == 0 && dil[1] == 0 && IC >= 64 &&
	    M >= 64 && yd[2] >= 14 && yd[3] >= 14 &&
	    dnnl_dilated_convolution_forward_desc_init(
		    &cd, dnnl_forward_inference, dnnl_convolution_winograd,
		    &src_md, &w_md, &b_md, &dst_md, strides, dil, pl,
		    pr) == dnnl_success &&
	    dnnl_primitive_desc_create(&pd, &cd, attr, E->eng, NULL) ==
		    dnnl_success &&
	    dn_is_wino_2x3(pd)) {
		/* pd is the Winograd one */
	} else {
		if (pd)
			dnnl_primitive_desc_destroy(pd);
		pd = NULL;
		DN_TRY(dnnl_dilated_convolution_forward_desc_init(
			&cd, dnnl_forward_inference, dnnl_convolution_direct,
			&src_md, &w_md, &b_md, &dst_md, strides, dil, pl, pr));
		DN_TRY(dnnl_primitive_desc_create(&pd, &cd, attr, E->eng, NULL));
	}
	src_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
	w_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
	dnnl_memory_desc_t b_want =
		*dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1);
	dst_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
	int xm, wm, bm, ym;
	DN_CHECK(dn_in_layout(E, nd->inputs[0], &src_md, &xm));
	DN_CHECK(dn_const(E, wv, &w_user, &w_md, &wm));
	DN_CHECK(dn_const(E, bv, &b_md, &b_want, &bm));
	args[0] = (dn_arg){DNNL_ARG_SRC, xm};
	args[1] = (dn_arg){DNNL_ARG_WEIGHTS, wm};
	args[2] = (dn_arg){DNNL_ARG_BIAS, bm};
	args[3] = (dn_arg){DNNL_ARG_DST, -1};
	DN_CHECK(dn_fused_dst(E, n, &dst_md, args, nargs, &ym));
	args[3].mem = ym;
	DN_CHECK(dn_emit(E, pd, args, nargs));
	dn_set_value(E, nd->output, ym);
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return err;
}

/* Canonical Gemm: Y[M,N] = A[M,K] * W[N,K]^T + bias (graph.h). Inner
 * product, or a matmul over a strided view of A when trans_a. */
static df_err dn_build_gemm(dn_engine *E, int n)
{
	df_err err = DF_OK;
	const graph *g = E->base.g;
	const graph_node *nd = &g->nodes[n];
	dnnl_primitive_attr_t attr = NULL;
	dnnl_primitive_desc_t pd = NULL;
	dn_arg args[DN_MAX_ARGS];
	int nargs = 4;
	if (nd->n_inputs < 3 || nd->inputs[0] < 0 || nd->inputs[1] < 0 ||
	    nd->inputs[2] < 0)
		return dn_node_err(E, DF_EINVAL, "%s",
				   "expected inputs {A, W, bias}");
	const graph_value *av = &g->values[nd->inputs[0]];
	const graph_value *wv = &g->values[nd->inputs[1]];
	const graph_value *bv = &g->values[nd->inputs[2]];
	const graph_value *yv = &g->values[nd->output];
	bool ta = nd->attr.gemm.trans_a;
	if (wv->ndim != 2 || !nd->attr.gemm.trans_b)
		return dn_node_err(E, DF_EINVAL, "%s",
				   "Gemm is not canonical (W [N,K], trans_b)");
	int64_t N = wv->dims[0], K = wv->dims[1];
	dnnl_dims_t ad = {0};
	int an = dn_dims(av, ad);
	if (ta ? (an != 2 || ad[0] != K) : ad[an - 1] != K)
		return dn_node_err(E, DF_EINVAL,
				   "A does not have K = %lld columns",
				   (long long)K);
	int64_t M = ta ? ad[1] : dn_prod(ad, 0, an) / K;
	dnnl_dims_t sd = {M, K}, dd = {M, N}, wd = {N, K}, bd = {N};
	dnnl_memory_desc_t src_md, w_md, b_md, dst_md, w_user;
	int am, xm, wm, bm, ym, vm;
	DN_CHECK(dn_plain(E, nd->inputs[0], &am));
	DN_TRY(dn_md_plain(&dst_md, 2, dd));
	DN_CHECK(dn_postops_attr(E, nd, 2, dd, &attr, args, &nargs));
	if (!ta) {
		dnnl_inner_product_desc_t ipd;
		DN_CHECK(dn_view(E, am, 2, sd, &xm));
		DN_TRY(dn_md_any(&w_md, 2, wd));
		DN_TRY(dn_md_plain(&b_md, 1, bd));
		DN_TRY(dn_md_plain(&w_user, 2, wd));
		DN_TRY(dnnl_inner_product_forward_desc_init(
			&ipd, dnnl_forward_inference, &E->mems[xm].md, &w_md,
			&b_md, &dst_md));
		DN_TRY(dnnl_primitive_desc_create(&pd, &ipd, attr, E->eng, NULL));
		w_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
		dnnl_memory_desc_t b_want =
			*dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1);
		src_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
		if (!dnnl_memory_desc_equal(&src_md, &E->mems[xm].md)) {
			int cm;
			DN_CHECK(dn_convert(E, xm, &src_md, &cm));
			xm = cm;
		}
		DN_CHECK(dn_const(E, wv, &w_user, &w_md, &wm));
		DN_CHECK(dn_const(E, bv, &b_md, &b_want, &bm));
	} else {
		/* A is [K,M] row-major: as [M,K] its strides are {1, M}. W is
		 * [N,K] row-major: as matmul weights [K,N], strides {1, K}. */
		dnnl_matmul_desc_t mmd;
		dnnl_dims_t ss = {1, M}, ws = {1, K}, wk = {K, N}, b2 = {1, N};
		DN_TRY(dnnl_memory_desc_init_by_strides(&src_md, 2, sd, dnnl_f32,
							ss));
		DN_TRY(dnnl_memory_desc_init_by_strides(&w_md, 2, wk, dnnl_f32,
							ws));
		DN_TRY(dn_md_plain(&b_md, 2, b2));
		DN_CHECK(dn_mem_new(E, &src_md, E->mems[am].storage,
				    E->mems[am].ext, &xm));
		DN_CHECK(dn_const(E, wv, &w_md, &w_md, &wm));
		DN_CHECK(dn_const(E, bv, &b_md, &b_md, &bm));
		DN_TRY(dnnl_matmul_desc_init(&mmd, &src_md, &w_md, &b_md,
					     &dst_md));
		DN_TRY(dnnl_primitive_desc_create(&pd, &mmd, attr, E->eng, NULL));
	}
	args[0] = (dn_arg){DNNL_ARG_SRC, xm};
	args[1] = (dn_arg){DNNL_ARG_WEIGHTS, wm};
	args[2] = (dn_arg){DNNL_ARG_BIAS, bm};
	args[3] = (dn_arg){DNNL_ARG_DST, -1};
	DN_CHECK(dn_fused_dst(E, n, &dst_md, args, nargs, &ym));
	args[3].mem = ym;
	DN_CHECK(dn_emit(E, pd, args, nargs));
	dnnl_dims_t yd;
	int ynd = dn_dims(yv, yd);
	DN_CHECK(dn_view(E, ym, ynd, yd, &vm));
	dn_set_value(E, nd->output, vm);
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return err;
}

/* numpy matmul: 1-D operands are promoted ([K] -> [1,K] / [K,1]), batch
 * dims broadcast; the dst [batch.., M, N] is viewed as the output value. */
static df_err dn_build_matmul(dn_engine *E, int n)
{
	df_err err = DF_OK;
	const graph *g = E->base.g;
	const graph_node *nd = &g->nodes[n];
	dnnl_primitive_attr_t attr = NULL;
	dnnl_primitive_desc_t pd = NULL;
	dn_arg args[DN_MAX_ARGS];
	int nargs = 3;
	if (nd->n_inputs < 2 || nd->inputs[0] < 0 || nd->inputs[1] < 0)
		return dn_node_err(E, DF_EINVAL, "%s", "expected inputs {A, B}");
	const graph_value *av = &g->values[nd->inputs[0]];
	const graph_value *bv = &g->values[nd->inputs[1]];
	const graph_value *yv = &g->values[nd->output];
	if (av->ndim < 1 || bv->ndim < 1)
		return dn_node_err(E, DF_EINVAL, "%s", "MatMul of a scalar");
	dnnl_dims_t a2, b2, ad = {0}, bd = {0}, dd;
	int ra = av->ndim, rb = bv->ndim;
	if (ra == 1) {
		a2[0] = 1, a2[1] = av->dims[0];
		ra = 2;
	} else {
		for (int i = 0; i < ra; i++)
			a2[i] = av->dims[i];
	}
	if (rb == 1) {
		b2[0] = bv->dims[0], b2[1] = 1;
		rb = 2;
	} else {
		for (int i = 0; i < rb; i++)
			b2[i] = bv->dims[i];
	}
	int R = ra > rb ? ra : rb;
	if (R > DNNL_MAX_NDIMS)
		return dn_node_err(E, DF_ENOTSUP, "rank %d", R);
	for (int i = 0; i < R; i++) {
		ad[i] = i < R - ra ? 1 : a2[i - (R - ra)];
		bd[i] = i < R - rb ? 1 : b2[i - (R - rb)];
		dd[i] = ad[i] == 1 ? bd[i] : ad[i];
		if (i < R - 2 && ad[i] != bd[i] && ad[i] != 1 && bd[i] != 1)
			return dn_node_err(E, DF_EINVAL,
					   "batch dim %d: %lld vs %lld", i,
					   (long long)ad[i], (long long)bd[i]);
	}
	dd[R - 2] = ad[R - 2];
	dd[R - 1] = bd[R - 1];
	if (ad[R - 1] != bd[R - 2])
		return dn_node_err(E, DF_EINVAL, "inner dims differ (%lld vs %lld)",
				   (long long)ad[R - 1], (long long)bd[R - 2]);
	int ap, bp, am, bm, ym, vm;
	dnnl_memory_desc_t dst_md;
	dnnl_matmul_desc_t mmd;
	DN_CHECK(dn_plain(E, nd->inputs[0], &ap));
	DN_CHECK(dn_view(E, ap, R, ad, &am));
	DN_CHECK(dn_plain(E, nd->inputs[1], &bp));
	DN_CHECK(dn_view(E, bp, R, bd, &bm));
	DN_TRY(dn_md_plain(&dst_md, R, dd));
	DN_CHECK(dn_postops_attr(E, nd, R, dd, &attr, args, &nargs));
	DN_TRY(dnnl_matmul_desc_init(&mmd, &E->mems[am].md, &E->mems[bm].md,
				     NULL, &dst_md));
	DN_TRY(dnnl_primitive_desc_create(&pd, &mmd, attr, E->eng, NULL));
	args[0] = (dn_arg){DNNL_ARG_SRC, am};
	args[1] = (dn_arg){DNNL_ARG_WEIGHTS, bm};
	args[2] = (dn_arg){DNNL_ARG_DST, -1};
	DN_CHECK(dn_fused_dst(E, n, &dst_md, args, nargs, &ym));
	args[2].mem = ym;
	DN_CHECK(dn_emit(E, pd, args, nargs));
	dnnl_dims_t yd;
	int ynd = dn_dims(yv, yd);
	DN_CHECK(dn_view(E, ym, ynd, yd, &vm));
	dn_set_value(E, nd->output, vm);
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return err;
}

/* dst for an op whose output has the layout of its input mem src: src's
 * storage itself (in place) when nothing later reads it, else fresh. */
static df_err dn_inplace_dst(dn_engine *E, int n, int src,
			     const dnnl_memory_desc_t *dst_md, int avoid,
			     int *out)
{
	int s = E->mems[src].storage;
	if (dnnl_memory_desc_equal(&E->mems[src].md, dst_md) &&
	    (avoid < 0 || E->mems[avoid].storage != s) &&
	    dn_dead_after(E, s, n))
		return dn_mem_new(E, dst_md, s, NULL, out);
	return dn_mem_fresh(E, dst_md, out);
}

static df_err dn_check_same_dims(const dn_engine *E, const graph_value *x,
				 const graph_value *y)
{
	bool same = x->ndim == y->ndim;
	for (int i = 0; same && i < x->ndim; i++)
		same = x->dims[i] == y->dims[i];
	if (!same)
		return dn_node_err(E, DF_EINVAL, "%s",
				   "output shape differs from the input shape");
	return DF_OK;
}

static df_err dn_build_eltwise(dn_engine *E, int n, graph_act act, float a0,
			       float b0)
{
	df_err err = DF_OK;
	const graph *g = E->base.g;
	const graph_node *nd = &g->nodes[n];
	dnnl_primitive_attr_t attr = NULL;
	dnnl_primitive_desc_t pd = NULL;
	dnnl_eltwise_desc_t ed;
	dnnl_alg_kind_t alg = dnnl_alg_kind_undef;
	float alpha = 0.0f, beta = 0.0f;
	int xm, ym;
	dn_arg args[DN_MAX_ARGS];
	DN_CHECK(dn_check_same_dims(E, &g->values[nd->inputs[0]],
				    &g->values[nd->output]));
	DN_CHECK(dn_act(E, act, a0, b0, &alg, &alpha, &beta));
	DN_CHECK(dn_value(E, nd->inputs[0], &xm));
	DN_TRY(dnnl_eltwise_forward_desc_init(&ed, dnnl_forward_inference, alg,
					      &E->mems[xm].md, alpha, beta));
	DN_CHECK(dn_attr_new(E, &attr));
	DN_TRY(dnnl_primitive_desc_create(&pd, &ed, attr, E->eng, NULL));
	DN_CHECK(dn_inplace_dst(E, n, xm,
				dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0),
				-1, &ym));
	args[0] = (dn_arg){DNNL_ARG_SRC, xm};
	args[1] = (dn_arg){DNNL_ARG_DST, ym};
	DN_CHECK(dn_emit(E, pd, args, 2));
	dn_set_value(E, nd->output, ym);
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return err;
}

/* Unfolded BatchNorm: y = x * scale[c] + shift[c], one binary mul with a
 * binary-add post-op, both operands broadcast as [1,C,1,..]. */
static df_err dn_build_batchnorm(dn_engine *E, int n)
{
	df_err err = DF_OK;
	const graph *g = E->base.g;
	const graph_node *nd = &g->nodes[n];
	dnnl_primitive_attr_t attr = NULL;
	dnnl_post_ops_t po = NULL;
	dnnl_primitive_desc_t pd = NULL;
	dn_arg args[DN_MAX_ARGS];
	if (nd->n_inputs < 3 || nd->inputs[0] < 0 || nd->inputs[1] < 0 ||
	    nd->inputs[2] < 0)
		return dn_node_err(E, DF_EINVAL, "%s",
				   "expected inputs {x, scale, shift}");
	const graph_value *xv = &g->values[nd->inputs[0]];
	if (xv->ndim < 2)
		return dn_node_err(E, DF_ENOTSUP, "%s", "input rank below 2");
	DN_CHECK(dn_check_same_dims(E, xv, &g->values[nd->output]));
	dnnl_dims_t cd;
	for (int i = 0; i < xv->ndim; i++)
		cd[i] = i == 1 ? xv->dims[1] : 1;
	int xm, sm, hm, ym;
	dnnl_binary_desc_t bd;
	DN_CHECK(dn_value(E, nd->inputs[0], &xm));
	DN_CHECK(dn_const_view(E, nd->inputs[1], xv->ndim, cd, &sm));
	DN_CHECK(dn_const_view(E, nd->inputs[2], xv->ndim, cd, &hm));
	DN_CHECK(dn_attr_new(E, &attr));
	DN_TRY(dnnl_post_ops_create(&po));
	DN_TRY(dnnl_post_ops_append_binary(po, dnnl_binary_add,
					   &E->mems[hm].md));
	DN_TRY(dnnl_primitive_attr_set_post_ops(attr, po));
	DN_TRY(dnnl_binary_desc_init(&bd, dnnl_binary_mul, &E->mems[xm].md,
				     &E->mems[sm].md, &E->mems[xm].md));
	DN_TRY(dnnl_primitive_desc_create(&pd, &bd, attr, E->eng, NULL));
	DN_CHECK(dn_inplace_dst(E, n, xm,
				dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0),
				-1, &ym));
	args[0] = (dn_arg){DNNL_ARG_SRC_0, xm};
	args[1] = (dn_arg){DNNL_ARG_SRC_1, sm};
	args[2] = (dn_arg){DNNL_ARG_DST, ym};
	args[3] = (dn_arg){DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1,
			   hm};
	DN_CHECK(dn_emit(E, pd, args, 4));
	dn_set_value(E, nd->output, ym);
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (po)
		dnnl_post_ops_destroy(po);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return err;
}

/* Taps start + t*d (t < k) of a window that fall inside [lo, hi). */
static int64_t dn_taps(int64_t start, int64_t k, int64_t d, int64_t lo,
		       int64_t hi)
{
	int64_t c = 0;
	for (int64_t t = 0; t < k; t++)
		c += start + t * d >= lo && start + t * d < hi;
	return c;
}

/*
 * MaxPool, AveragePool, GlobalAveragePool via pooling_v2. The output size
 * comes from the value (ceil_mode already applied by the graph); the end
 * padding given to oneDNN is stretched to produce it. oneDNN's
 * include-padding average divides by the full kernel size, ONNX by the taps
 * inside input + declared padding; where the stretch makes those differ, a
 * binary-mul post-op rescales the border outputs.
 */
static df_err dn_build_pool(dn_engine *E, int n)
{
	df_err err = DF_OK;
	const graph *g = E->base.g;
	const graph_node *nd = &g->nodes[n];
	dnnl_primitive_attr_t attr = NULL;
	dnnl_post_ops_t po = NULL;
	dnnl_primitive_desc_t pd = NULL;
	dn_arg args[DN_MAX_ARGS];
	int nargs = 2;
	const graph_value *xv = &g->values[nd->inputs[0]];
	const graph_value *yv = &g->values[nd->output];
	bool global = nd->op == GRAPH_OP_GLOBALAVGPOOL;
	int sp = xv->ndim - 2;
	if (global ? (xv->ndim < 3 || xv->ndim > 5) : xv->ndim != 4)
		return dn_node_err(E, DF_ENOTSUP, "input rank %d", xv->ndim);
	if (yv->ndim != xv->ndim)
		return dn_node_err(E, DF_EINVAL, "%s", "output rank differs");
	dnnl_dims_t kernel, strides, dil, pl, pr, yd;
	dn_dims(yv, yd);
	dnnl_alg_kind_t alg = dnnl_pooling_avg_exclude_padding;
	bool rescale = false;
	for (int i = 0; i < sp; i++) {
		int64_t in = xv->dims[2 + i], o = yv->dims[2 + i];
		if (global) {
			kernel[i] = in, strides[i] = 1, dil[i] = 0;
			pl[i] = 0, pr[i] = 0;
			continue;
		}
		const graph_pool_attr *a = &nd->attr.pool;
		kernel[i] = a->kernel[i];
		strides[i] = a->strides[i];
		dil[i] = a->dilations[i] - 1;
		pl[i] = a->pads[i];
		pr[i] = a->pads[2 + i];
		if (kernel[i] < 1 || strides[i] < 1 || dil[i] < 0 || pl[i] < 0 ||
		    pr[i] < 0 || o < 1)
			return dn_node_err(E, DF_EINVAL, "%s",
					   "bad kernel/stride/dilation/pads");
		int64_t ext = (kernel[i] - 1) * (dil[i] + 1) + 1;
		int64_t need = (o - 1) * strides[i] + ext - in - pl[i];
		if (need > pr[i]) {
			pr[i] = need;
			rescale = true;
		}
	}
	if (nd->op == GRAPH_OP_MAXPOOL)
		alg = dnnl_pooling_max;
	else if (nd->op == GRAPH_OP_AVGPOOL && nd->attr.pool.count_include_pad)
		alg = dnnl_pooling_avg_include_padding;
	rescale = rescale && alg == dnnl_pooling_avg_include_padding;
	int xm, ym, fm = -1;
	dnnl_memory_desc_t dst_md;
	dnnl_pooling_v2_desc_t pdsc;
	DN_CHECK(dn_value(E, nd->inputs[0], &xm));
	DN_TRY(dn_md_any(&dst_md, xv->ndim, yd));
	DN_TRY(dnnl_pooling_v2_forward_desc_init(&pdsc, dnnl_forward_inference,
						 alg, &E->mems[xm].md, &dst_md,
						 strides, kernel, dil, pl, pr));
	DN_CHECK(dn_attr_new(E, &attr));
	if (rescale) {
		/* factor[oh][ow] = kH*kW / (taps inside the declared padded
		 * extent), a [1,1,OH,OW] operand. */
		const graph_pool_attr *a = &nd->attr.pool;
		int64_t OH = yd[2], OW = yd[3];
		dnnl_dims_t fd = {1, 1, OH, OW};
		dnnl_memory_desc_t fmd;
		float *f;
		DN_TRY(dn_md_plain(&fmd, 4, fd));
		DN_CHECK(dn_owned_alloc(E, (size_t)(OH * OW) * sizeof *f,
					(void **)&f));
		for (int64_t oh = 0; oh < OH; oh++) {
			int64_t th = dn_taps(oh * a->strides[0] - a->pads[0],
					     a->kernel[0], a->dilations[0],
					     -a->pads[0],
					     xv->dims[2] + a->pads[2]);
			for (int64_t ow = 0; ow < OW; ow++) {
				int64_t tw = dn_taps(ow * a->strides[1] - a->pads[1],
						     a->kernel[1], a->dilations[1],
						     -a->pads[1],
						     xv->dims[3] + a->pads[3]);
				f[oh * OW + ow] = th * tw > 0
					? (float)(a->kernel[0] * a->kernel[1]) /
						  (float)(th * tw)
					: 0.0f;
			}
		}
		DN_CHECK(dn_mem_new(E, &fmd, DN_EXTERNAL, f, &fm));
		DN_TRY(dnnl_post_ops_create(&po));
		DN_TRY(dnnl_post_ops_append_binary(po, dnnl_binary_mul, &fmd));
		DN_TRY(dnnl_primitive_attr_set_post_ops(attr, po));
		args[nargs++] = (dn_arg){
			DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, fm};
	}
	DN_TRY(dnnl_primitive_desc_create(&pd, &pdsc, attr, E->eng, NULL));
	dst_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
	DN_CHECK(dn_mem_fresh(E, &dst_md, &ym));
	args[0] = (dn_arg){DNNL_ARG_SRC, xm};
	args[1] = (dn_arg){DNNL_ARG_DST, ym};
	DN_CHECK(dn_emit(E, pd, args, nargs));
	dn_set_value(E, nd->output, ym);
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (po)
		dnnl_post_ops_destroy(po);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return err;
}

/* One binary primitive dst = src0 (alg) src1, dst in src0's layout. When
 * inplace_ok, dst may take src0's storage. */
static df_err dn_binary_step(dn_engine *E, int n, dnnl_alg_kind_t alg,
			     int s0, int s1, bool inplace_ok, int *out)
{
	df_err err = DF_OK;
	dnnl_primitive_attr_t attr = NULL;
	dnnl_primitive_desc_t pd = NULL;
	dnnl_binary_desc_t bd;
	dn_arg args[DN_MAX_ARGS];
	int ym;
	DN_CHECK(dn_attr_new(E, &attr));
	DN_TRY(dnnl_binary_desc_init(&bd, alg, &E->mems[s0].md, &E->mems[s1].md,
				     &E->mems[s0].md));
	DN_TRY(dnnl_primitive_desc_create(&pd, &bd, attr, E->eng, NULL));
	const dnnl_memory_desc_t *dmd =
		dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
	if (inplace_ok)
		DN_CHECK(dn_inplace_dst(E, n, s0, dmd, s1, &ym));
	else
		DN_CHECK(dn_mem_fresh(E, dmd, &ym));
	args[0] = (dn_arg){DNNL_ARG_SRC_0, s0};
	args[1] = (dn_arg){DNNL_ARG_SRC_1, s1};
	args[2] = (dn_arg){DNNL_ARG_DST, ym};
	DN_CHECK(dn_emit(E, pd, args, 3));
	*out = ym;
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return err;
}

/*
 * Add/Mul with numpy broadcasting. oneDNN broadcasts src1 only, so the
 * full-size operand goes first (both ops commute). When neither operand
 * has the output's shape, src0 is first expanded by adding it to zeros.
 */
static df_err dn_build_binary(dn_engine *E, int n)
{
	df_err err = DF_OK;
	const graph *g = E->base.g;
	const graph_node *nd = &g->nodes[n];
	if (nd->n_inputs < 2 || nd->inputs[0] < 0 || nd->inputs[1] < 0)
		return dn_node_err(E, DF_EINVAL, "%s", "expected two inputs");
	dnnl_alg_kind_t alg =
		nd->op == GRAPH_OP_ADD ? dnnl_binary_add : dnnl_binary_mul;
	int va = nd->inputs[0], vb = nd->inputs[1];
	const graph_value *yv = &g->values[nd->output];
	dnnl_dims_t yd, ad, bd;
	int R = dn_dims(yv, yd);
	const graph_value *xs[2] = {&g->values[va], &g->values[vb]};
	dnnl_dim_t *xd[2] = {ad, bd};
	bool full[2];
	for (int k = 0; k < 2; k++) {
		const graph_value *x = xs[k];
		if (x->ndim > R)
			return dn_node_err(E, DF_EINVAL, "%s",
					   "input rank above output rank");
		full[k] = true;
		for (int i = 0; i < R; i++) {
			int j = i - (R - x->ndim);
			xd[k][i] = j >= 0 ? x->dims[j] : 1;
			if (xd[k][i] != yd[i] && xd[k][i] != 1)
				return dn_node_err(E, DF_EINVAL,
						   "cannot broadcast dim %lld to %lld",
						   (long long)xd[k][i],
						   (long long)yd[i]);
			full[k] = full[k] && xd[k][i] == yd[i];
		}
		full[k] = full[k] && x->ndim == R;
	}
	if (!full[0] && full[1]) {
		int t = va;
		va = vb;
		vb = t;
		dnnl_dim_t *tp = xd[0];
		xd[0] = xd[1];
		xd[1] = tp;
		full[0] = true;
		full[1] = false;
	}
	int m0, m1, p, ym;
	if (full[0]) {
		DN_CHECK(dn_value(E, va, &m0));
		if (full[1]) {
			DN_CHECK(dn_in_layout(E, vb, &E->mems[m0].md, &m1));
		} else {
			DN_CHECK(dn_plain(E, vb, &p));
			DN_CHECK(dn_view(E, p, R, xd[1], &m1));
		}
		DN_CHECK(dn_binary_step(E, n, alg, m0, m1, true, &ym));
	} else {
		/* tmp = zeros + a (expanded), then tmp (op) b in place. */
		dnnl_memory_desc_t zmd;
		void *z;
		int zm, tm;
		DN_TRY(dn_md_plain(&zmd, R, yd));
		DN_CHECK(dn_owned_alloc(E, dnnl_memory_desc_get_size(&zmd), &z));
		DN_CHECK(dn_mem_new(E, &zmd, DN_EXTERNAL, z, &zm));
		DN_CHECK(dn_plain(E, va, &p));
		DN_CHECK(dn_view(E, p, R, xd[0], &m0));
		DN_CHECK(dn_binary_step(E, n, dnnl_binary_add, zm, m0, false, &tm));
		DN_CHECK(dn_plain(E, vb, &p));
		DN_CHECK(dn_view(E, p, R, xd[1], &m1));
		DN_CHECK(dn_binary_step(E, n, alg, tm, m1, true, &ym));
	}
	dn_set_value(E, nd->output, ym);
out:
	return err;
}

static df_err dn_build_concat(dn_engine *E, int n)
{
	df_err err = DF_OK;
	const graph *g = E->base.g;
	const graph_node *nd = &g->nodes[n];
	dnnl_primitive_attr_t attr = NULL;
	dnnl_primitive_desc_t pd = NULL;
	dn_arg args[DN_MAX_ARGS];
	dnnl_memory_desc_t mds[GRAPH_MAX_INPUTS], dst_md;
	const graph_value *yv = &g->values[nd->output];
	int k = nd->n_inputs, ym;
	if (k < 1 || k > GRAPH_MAX_INPUTS || yv->ndim < 1 ||
	    nd->attr.axis.axis < 0 || nd->attr.axis.axis >= yv->ndim)
		return dn_node_err(E, DF_EINVAL, "%s", "bad inputs or axis");
	for (int i = 0; i < k; i++) {
		int m;
		if (g->values[nd->inputs[i]].ndim != yv->ndim)
			return dn_node_err(E, DF_EINVAL, "input %d rank differs", i);
		DN_CHECK(dn_value(E, nd->inputs[i], &m));
		mds[i] = E->mems[m].md;
		args[i] = (dn_arg){DNNL_ARG_MULTIPLE_SRC + i, m};
	}
	dnnl_dims_t yd;
	dn_dims(yv, yd);
	DN_TRY(dn_md_any(&dst_md, yv->ndim, yd));
	DN_CHECK(dn_attr_new(E, &attr));
	DN_TRY(dnnl_concat_primitive_desc_create(&pd, &dst_md, k,
						 (int)nd->attr.axis.axis, mds,
						 attr, E->eng));
	dst_md = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
	DN_CHECK(dn_mem_fresh(E, &dst_md, &ym));
	args[k] = (dn_arg){DNNL_ARG_DST, ym};
	DN_CHECK(dn_emit(E, pd, args, k + 1));
	dn_set_value(E, nd->output, ym);
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return err;
}

/* Flatten/Reshape: a plain view of the input (no step unless the input
 * is blocked, then one reorder shared with other plain consumers). */
static df_err dn_build_reshape(dn_engine *E, int n)
{
	const graph *g = E->base.g;
	const graph_node *nd = &g->nodes[n];
	const graph_value *yv = &g->values[nd->output];
	dnnl_dims_t yd;
	int yn = dn_dims(yv, yd), p, m;
	df_err err = dn_plain(E, nd->inputs[0], &p);
	if (!err)
		err = dn_view(E, p, yn, yd, &m);
	if (!err)
		dn_set_value(E, nd->output, m);
	return err;
}

static df_err dn_build_softmax(dn_engine *E, int n)
{
	df_err err = DF_OK;
	const graph *g = E->base.g;
	const graph_node *nd = &g->nodes[n];
	dnnl_primitive_attr_t attr = NULL;
	dnnl_primitive_desc_t pd = NULL;
	dn_arg args[DN_MAX_ARGS];
	const graph_value *xv = &g->values[nd->inputs[0]];
	const graph_value *yv = &g->values[nd->output];
	dnnl_dims_t xd, yd;
	int xn = dn_dims(xv, xd), yn = dn_dims(yv, yd);
	int axis = (int)nd->attr.axis.axis;
	DN_CHECK(dn_check_same_dims(E, xv, yv));
	if (axis < 0 || axis >= xn)
		return dn_node_err(E, DF_EINVAL, "axis %d", axis);
	int p, xm, ym, vm;
	DN_CHECK(dn_plain(E, nd->inputs[0], &p));
	if (nd->attr.axis.legacy) {
		dnnl_dims_t d2 = {dn_prod(xd, 0, axis), dn_prod(xd, axis, xn)};
		DN_CHECK(dn_view(E, p, 2, d2, &xm));
		axis = 1;
	} else {
		xm = p;
	}
	dnnl_softmax_v2_desc_t sd;
	DN_TRY(dnnl_softmax_v2_forward_desc_init(&sd, dnnl_forward_inference,
						 dnnl_softmax_accurate,
						 &E->mems[xm].md,
						 &E->mems[xm].md, axis));
	DN_CHECK(dn_attr_new(E, &attr));
	DN_TRY(dnnl_primitive_desc_create(&pd, &sd, attr, E->eng, NULL));
	DN_CHECK(dn_mem_fresh(E, &E->mems[xm].md, &ym));
	args[0] = (dn_arg){DNNL_ARG_SRC, xm};
	args[1] = (dn_arg){DNNL_ARG_DST, ym};
	DN_CHECK(dn_emit(E, pd, args, 2));
	DN_CHECK(dn_view(E, ym, yn, yd, &vm));
	dn_set_value(E, nd->output, vm);
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return err;
}

/* Threads for node n's steps: all of them, or 1 when the node is too
 * small to repay a parallel region (see "Threads" above). */
static int dn_node_threads(const dn_engine *E, int n, bool passive)
{
	const graph *g = E->base.g;
	const graph_node *nd = &g->nodes[n];
	int64_t f = passive ? DN_PAR_PASSIVE : 1;
	if (E->base.threads <= 1)
		return 1;
	int64_t macs = graph_node_macs(g, n);
	if (macs > 0)
		return macs >= DN_PAR_MACS * f ? E->base.threads : 1;
	const graph_value *yv = &g->values[nd->output];
	int64_t elems = 1;
	for (int i = 0; i < yv->ndim; i++)
		elems *= yv->dims[i];
	if (nd->op == GRAPH_OP_MAXPOOL || nd->op == GRAPH_OP_AVGPOOL)
		elems *= nd->attr.pool.kernel[0] * nd->attr.pool.kernel[1];
	else if (nd->op == GRAPH_OP_GLOBALAVGPOOL) {
		const graph_value *xv = &g->values[nd->inputs[0]];
		elems = 1;
		for (int i = 0; i < xv->ndim; i++)
			elems *= xv->dims[i];
	}
	return elems >= DN_PAR_ELEMS * f ? E->base.threads : 1;
}

/* True when libgomp was told not to spin (OMP_WAIT_POLICY=PASSIVE). */
static bool dn_passive_wait(void)
{
	const char *p = getenv("OMP_WAIT_POLICY");
	return p && strcasecmp(p, "passive") == 0;
}

static df_err dn_build_node(dn_engine *E, int n)
{
	const graph_node *nd = &E->base.g->nodes[n];
	if (nd->n_inputs < 1 || nd->inputs[0] < 0 || nd->output < 0 ||
	    nd->output >= E->base.g->n_values)
		return dn_node_err(E, DF_EINVAL, "%s", "missing input or output");
	if (nd->n_postops > 0 && nd->op != GRAPH_OP_CONV &&
	    nd->op != GRAPH_OP_GEMM && nd->op != GRAPH_OP_MATMUL)
		return dn_node_err(E, DF_ENOTSUP, "%s",
				   "post-ops on this op are not supported");
	switch (nd->op) {
	case GRAPH_OP_CONV:
		return dn_build_conv(E, n);
	case GRAPH_OP_GEMM:
		return dn_build_gemm(E, n);
	case GRAPH_OP_MATMUL:
		return dn_build_matmul(E, n);
	case GRAPH_OP_BATCHNORM:
		return dn_build_batchnorm(E, n);
	case GRAPH_OP_RELU:
		return dn_build_eltwise(E, n, GRAPH_ACT_RELU, 0, 0);
	case GRAPH_OP_CLIP:
		return dn_build_eltwise(E, n, GRAPH_ACT_CLIP, nd->attr.clip.lo,
					nd->attr.clip.hi);
	case GRAPH_OP_LEAKYRELU:
		return dn_build_eltwise(E, n, GRAPH_ACT_LEAKYRELU,
					nd->attr.leaky.alpha, 0);
	case GRAPH_OP_SIGMOID:
		return dn_build_eltwise(E, n, GRAPH_ACT_SIGMOID, 0, 0);
	case GRAPH_OP_MAXPOOL:
	case GRAPH_OP_AVGPOOL:
	case GRAPH_OP_GLOBALAVGPOOL:
		return dn_build_pool(E, n);
	case GRAPH_OP_ADD:
	case GRAPH_OP_MUL:
		return dn_build_binary(E, n);
	case GRAPH_OP_CONCAT:
		return dn_build_concat(E, n);
	case GRAPH_OP_FLATTEN:
	case GRAPH_OP_RESHAPE:
		return dn_build_reshape(E, n);
	case GRAPH_OP_SOFTMAX:
		return dn_build_softmax(E, n);
	default:
		return dn_node_err(E, DF_ENOTSUP, "op %d", (int)nd->op);
	}
}

/* --------------------------------------------------------------- planning */

/* A byte range [lo, hi); for sorting storages, lo = size, hi = index. */
typedef struct dn_span {
	size_t lo, hi;
} dn_span;

static int dn_cmp_span(const void *a, const void *b)
{
	const dn_span *x = a, *y = b;
	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	return x->hi < y->hi ? -1 : x->hi > y->hi;
}

/* Assigns arena offsets: largest storage first, each at the lowest offset
 * clear of every placed storage whose lifetime overlaps its own. */
static df_err dn_plan(dn_engine *E)
{
	df_err err = DF_OK;
	int n = E->n_stor;
	dn_span *order = malloc((size_t)(n ? n : 1) * sizeof *order);
	bool *placed = calloc((size_t)(n ? n : 1), sizeof *placed);
	dn_span *busy = malloc((size_t)(n ? n : 1) * sizeof *busy);
	if (!order || !placed || !busy) {
		err = dn_oom(E);
		goto out;
	}
	for (int i = 0; i < n; i++) {
		/* descending size: sort by (SIZE_MAX - size, index) */
		order[i] = (dn_span){SIZE_MAX - E->stor[i].size, (size_t)i};
		if (E->stor[i].first > E->stor[i].last) {
			E->stor[i].first = -1;
			E->stor[i].last = E->n_steps;
		}
	}
	qsort(order, (size_t)n, sizeof *order, dn_cmp_span);
	size_t total = 0;
	for (int i = 0; i < n; i++) {
		int si = (int)order[i].hi;
		dn_storage *s = &E->stor[si];
		int nb = 0;
		for (int j = 0; j < n; j++) {
			const dn_storage *t = &E->stor[j];
			if (!placed[j] || t->last < s->first || s->last < t->first)
				continue;
			busy[nb++] = (dn_span){t->offset, t->offset + t->size};
		}
		qsort(busy, (size_t)nb, sizeof *busy, dn_cmp_span);
		size_t off = 0;
		for (int j = 0; j < nb; j++) {
			if (off + s->size <= busy[j].lo)
				break;
			if (busy[j].hi > off)
				off = busy[j].hi;
		}
		s->offset = off;
		placed[si] = true;
		if (off + s->size > total)
			total = off + s->size;
	}
	E->arena_size = total;
out:
	free(order);
	free(placed);
	free(busy);
	return err;
}

/* Allocates the arena and scratchpad and points every mem at its bytes;
 * resolves the steps' argument lists. */
static df_err dn_bind(dn_engine *E)
{
	df_err err = DF_OK;
	E->arena = dn_alloc(E->arena_size);
	E->scratch = dn_alloc(E->scratch_size);
	if (!E->arena || !E->scratch)
		return dn_oom(E);
	for (int i = 0; i < E->n_mems; i++) {
		dn_mem *m = &E->mems[i];
		void *p;
		if (m->storage == DN_EXTERNAL)
			continue;
		p = m->storage == DN_SCRATCH
			    ? E->scratch
			    : (char *)E->arena + E->stor[m->storage].offset;
		DN_TRY(dnnl_memory_set_data_handle(m->mem, p));
	}
	for (int i = 0; i < E->n_steps; i++) {
		dn_step *s = &E->steps[i];
		for (int a = 0; a < s->nargs; a++)
			s->exec[a] = (dnnl_exec_arg_t){
				s->args[a].arg, E->mems[s->args[a].mem].mem};
	}
out:
	return err;
}

/* Inputs: pinned from before step 0. Outputs: pinned after the last step,
 * with a reorder to plain when their layout is blocked. */
static df_err dn_bind_io(dn_engine *E)
{
	df_err err = DF_OK;
	const graph *g = E->base.g;
	dnnl_primitive_attr_t attr = NULL;
	dnnl_primitive_desc_t pd = NULL;
	for (int i = 0; i < g->n_inputs; i++) {
		int s = E->mems[E->in_mem[i]].storage;
		if (s >= 0 && E->stor[s].first > -1)
			E->stor[s].first = -1;
		if (s >= 0 && E->stor[s].last < -1)
			E->stor[s].last = -1;
	}
	for (int i = 0; i < g->n_outputs; i++) {
		int v = g->outputs[i];
		int m;
		dn_out *o = &E->outs[i];
		DN_CHECK(dn_value(E, v, &m));
		o->src = m;
		int s = E->mems[m].storage;
		if (s >= 0) {
			if (E->stor[s].last < E->n_steps)
				E->stor[s].last = E->n_steps;
			if (E->stor[s].first > E->n_steps)
				E->stor[s].first = E->n_steps;
		}
		if (dn_md_is_plain(&E->mems[m].md))
			continue;
		dnnl_memory_desc_t md;
		DN_TRY(dn_md_plain(&md, E->mems[m].md.ndims, E->mems[m].md.dims));
		DN_TRY(dnnl_memory_create(&o->dst, &md, E->eng, DNNL_MEMORY_NONE));
		DN_CHECK(dn_attr_new(E, &attr));
		DN_TRY(dnnl_reorder_primitive_desc_create(&pd, &E->mems[m].md,
							  E->eng, &md, E->eng,
							  attr));
		DN_TRY(dnnl_primitive_create(&o->prim, pd));
		DN_CHECK(dn_scratch_mem(E, pd, &o->scratch));
		dnnl_primitive_desc_destroy(pd);
		pd = NULL;
		dnnl_primitive_attr_destroy(attr);
		attr = NULL;
	}
out:
	if (pd)
		dnnl_primitive_desc_destroy(pd);
	if (attr)
		dnnl_primitive_attr_destroy(attr);
	return err;
}

/* ------------------------------------------------------------ the engine */

static void dn_destroy(engine *e)
{
	dn_engine *E = (dn_engine *)e;
	const graph *g = E->base.g;
	for (int i = 0; i < E->n_steps; i++)
		dnnl_primitive_destroy(E->steps[i].prim);
	if (E->outs)
		for (int i = 0; i < g->n_outputs; i++) {
			if (E->outs[i].prim)
				dnnl_primitive_destroy(E->outs[i].prim);
			if (E->outs[i].dst)
				dnnl_memory_destroy(E->outs[i].dst);
		}
	for (int i = 0; i < E->n_mems; i++)
		dnnl_memory_destroy(E->mems[i].mem);
	for (int i = 0; i < E->n_owned; i++)
		free(E->owned[i]);
	if (E->stream)
		dnnl_stream_destroy(E->stream);
	if (E->eng)
		dnnl_engine_destroy(E->eng);
	free(E->steps);
	free(E->outs);
	free(E->mems);
	free(E->stor);
	free(E->owned);
	free(E->val_mem);
	free(E->val_plain);
	free(E->val_alt);
	free(E->val_storage);
	free(E->last_use);
	free(E->in_mem);
	free(E->arena);
	free(E->scratch);
	free(E);
}

static df_err dn_run(engine *e, const tensor *const *inputs, tensor **outputs)
{
	dn_engine *E = (dn_engine *)e;
	const graph *g = e->g;
	df_err err = DF_OK;
	int prev = omp_get_max_threads();
	omp_set_num_threads(e->threads);
	E->cur_node = -1;
	for (int i = 0; i < g->n_inputs; i++) {
		const dn_mem *m = &E->mems[E->in_mem[i]];
		size_t nb = tensor_nbytes(inputs[i]);
		if (nb != dnnl_memory_desc_get_size(&m->md)) {
			err = dn_node_err(E, DF_EINVAL, "input #%d has %zu bytes",
					  i, nb);
			goto out;
		}
		if (nb)
			memcpy((char *)E->arena + E->stor[m->storage].offset,
			       inputs[i]->data, nb);
	}
	int cur = e->threads;
	for (int i = 0; i < E->n_steps; i++) {
		const dn_step *s = &E->steps[i];
		if (s->nthr != cur) {
			omp_set_num_threads(s->nthr);
			cur = s->nthr;
		}
		dnnl_status_t st = dnnl_primitive_execute(s->prim, E->stream,
							  s->nargs, s->exec);
		if (st != dnnl_success) {
			E->cur_node = s->node;
			err = dn_fail(E, st, "dnnl_primitive_execute()");
			E->cur_node = -1;
			goto out;
		}
	}
	omp_set_num_threads(e->threads);
	for (int i = 0; i < g->n_outputs; i++) {
		const graph_value *yv = &g->values[g->outputs[i]];
		const dn_out *o = &E->outs[i];
		const dn_mem *m = &E->mems[o->src];
		DN_CHECK(tensor_create(TENSOR_F32, yv->ndim, yv->dims, &outputs[i]));
		if (!o->prim)
			continue;
		dnnl_exec_arg_t args[3] = {
			{DNNL_ARG_FROM, m->mem},
			{DNNL_ARG_TO, o->dst},
			{DNNL_ARG_SCRATCHPAD,
			 o->scratch >= 0 ? E->mems[o->scratch].mem : NULL},
		};
		DN_TRY(dnnl_memory_set_data_handle(o->dst, outputs[i]->data));
		DN_TRY(dnnl_primitive_execute(o->prim, E->stream,
					      o->scratch >= 0 ? 3 : 2, args));
	}
	DN_TRY(dnnl_stream_wait(E->stream));
	for (int i = 0; i < g->n_outputs; i++) {
		const dn_out *o = &E->outs[i];
		const dn_mem *m = &E->mems[o->src];
		if (o->prim)
			continue;
		const void *src = m->storage == DN_EXTERNAL
					  ? m->ext
					  : (char *)E->arena +
						    E->stor[m->storage].offset;
		memcpy(outputs[i]->data, src, tensor_nbytes(outputs[i]));
	}
out:
	omp_set_num_threads(prev);
	return err;
}

static const struct engine_ops dn_ops = {
	.run = dn_run,
	.destroy = dn_destroy,
};

/* Per-value last reader (node index); graph outputs live to the end. */
static void dn_last_uses(dn_engine *E)
{
	const graph *g = E->base.g;
	for (int v = 0; v < g->n_values; v++)
		E->last_use[v] = -1;
	for (int n = 0; n < g->n_nodes; n++) {
		const graph_node *nd = &g->nodes[n];
		for (int k = 0; k < nd->n_inputs; k++)
			if (nd->inputs[k] >= 0 && nd->inputs[k] < g->n_values)
				E->last_use[nd->inputs[k]] = n;
		for (int p = 0; p < nd->n_postops; p++)
			if (nd->postops[p].kind == GRAPH_POSTOP_ADD &&
			    nd->postops[p].operand >= 0 &&
			    nd->postops[p].operand < g->n_values)
				E->last_use[nd->postops[p].operand] = n;
	}
	for (int i = 0; i < g->n_outputs; i++)
		E->last_use[g->outputs[i]] = INT_MAX;
}

static df_err dn_check_graph(const dn_engine *E)
{
	const graph *g = E->base.g;
	for (int i = 0; i < g->n_inputs; i++)
		if (g->inputs[i] < 0 || g->inputs[i] >= g->n_values ||
		    g->values[g->inputs[i]].constant)
			return dn_node_err(E, DF_EINVAL,
					   "graph input #%d is not a value", i);
	for (int i = 0; i < g->n_outputs; i++)
		if (g->outputs[i] < 0 || g->outputs[i] >= g->n_values)
			return dn_node_err(E, DF_EINVAL,
					   "graph output #%d is not a value", i);
	for (int v = 0; v < g->n_values; v++) {
		const graph_value *gv = &g->values[v];
		size_t numel;
		if (tensor_shape_numel(gv->ndim, gv->dims, TENSOR_F32, &numel))
			return dn_node_err(E, DF_EINVAL, "value '%s': %s",
					   gv->name ? gv->name : "?",
					   df_err_msg());
		if (!gv->constant && numel == 0)
			return dn_node_err(E, DF_ENOTSUP,
					   "value '%s' is empty",
					   gv->name ? gv->name : "?");
	}
	return DF_OK;
}

df_err engine_dnnl_create(const graph *g, int threads, engine **out)
{
	if (!g || !out)
		return df_errf(DF_EINVAL, "engine_dnnl_create: NULL argument");
	df_err err = DF_OK;
	int prev = omp_get_max_threads();
	int nthr = threads > 0 ? threads : prev;
	size_t nv = g->n_values > 0 ? (size_t)g->n_values : 1;
	size_t ni = g->n_inputs > 0 ? (size_t)g->n_inputs : 1;
	size_t no = g->n_outputs > 0 ? (size_t)g->n_outputs : 1;
	dn_engine *E = calloc(1, sizeof *E);
	if (!E)
		return df_errf(DF_ENOMEM, "dnnl engine: out of memory");
	E->base.ops = &dn_ops;
	E->base.g = g;
	E->base.kind = ENGINE_DNNL;
	E->base.threads = nthr;
	E->cur_node = -1;
	E->cur_nthr = nthr;
	omp_set_num_threads(nthr);
	E->val_mem = malloc(nv * sizeof *E->val_mem);
	E->val_plain = malloc(nv * sizeof *E->val_plain);
	E->val_alt = malloc(nv * sizeof *E->val_alt);
	E->val_storage = malloc(nv * sizeof *E->val_storage);
	E->last_use = malloc(nv * sizeof *E->last_use);
	E->in_mem = malloc(ni * sizeof *E->in_mem);
	E->outs = calloc(no, sizeof *E->outs);
	if (!E->val_mem || !E->val_plain || !E->val_alt || !E->val_storage ||
	    !E->last_use || !E->in_mem || !E->outs) {
		err = dn_oom(E);
		goto out;
	}
	for (int v = 0; v < g->n_values; v++) {
		E->val_mem[v] = E->val_plain[v] = E->val_alt[v] = -1;
		E->val_storage[v] = DN_EXTERNAL;
	}
	for (size_t i = 0; i < no; i++)
		E->outs[i].scratch = -1;
	DN_CHECK(dn_check_graph(E));
	dn_last_uses(E);
	DN_TRY(dnnl_engine_create(&E->eng, dnnl_cpu, 0));
	DN_TRY(dnnl_stream_create(&E->stream, E->eng, dnnl_stream_default_flags));
	for (int i = 0; i < g->n_inputs; i++) {
		int v = g->inputs[i];
		dnnl_dims_t d;
		dnnl_memory_desc_t md;
		int nd = dn_dims(&g->values[v], d), m;
		DN_TRY(dn_md_plain(&md, nd, d));
		DN_CHECK(dn_mem_fresh(E, &md, &m));
		dn_set_value(E, v, m);
		E->in_mem[i] = m;
	}
	bool passive = dn_passive_wait();
	for (int n = 0; n < g->n_nodes; n++) {
		E->cur_node = n;
		E->cur_nthr = dn_node_threads(E, n, passive);
		omp_set_num_threads(E->cur_nthr);
		DN_CHECK(dn_build_node(E, n));
	}
	E->cur_node = -1;
	E->cur_nthr = nthr;
	omp_set_num_threads(nthr);
	for (int i = 0; i < E->n_steps; i++)
		E->n_serial += E->steps[i].nthr == 1;
	DN_CHECK(dn_bind_io(E));
	DN_CHECK(dn_plan(E));
	DN_CHECK(dn_bind(E));
	log_debug("dnnl engine: %d nodes -> %d steps (%d layout reorders, %d "
		  "on one thread), arena %zu KiB, scratchpad %zu KiB, %d threads",
		  g->n_nodes, E->n_steps, E->n_reorders, E->n_serial,
		  E->arena_size / 1024, E->scratch_size / 1024, nthr);
	*out = &E->base;
	E = NULL;
out:
	omp_set_num_threads(prev);
	if (E)
		dn_destroy(&E->base);
	return err;
}
