/*
 * engine_dnnl_mem.c - the oneDNN engine's values and memory: memory
 * descriptors, storages and the memory objects over them, steps (a
 * primitive and its arguments) and the layout conversions between values,
 * graph constants (used in place, copied or reordered into owned buffers,
 * and released from the graph), and the arena plan that gives every memory
 * object its bytes once all steps exist. engine_dnnl.c drives it (create,
 * run, destroy); the builders in engine_dnnl_ops.c and engine_dnnl_conv.c
 * call it through engine_dnnl_internal.h.
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
 * Constants: weights that need another layout are reordered once into
 * buffers the engine owns; the rest are used in place from the graph,
 * unless engine_create_release() asked for the graph's constant data to be
 * freed. Then every constant is copied (or reordered) into an owned buffer
 * and released from the graph right after its last reading node is built,
 * so the weights exist about once during the build, not twice.
 *
 * Bookkeeping: mems, storages, steps and owned buffers live in arrays
 * that grow by realloc, so callers hold indices into them, never pointers,
 * across anything that may append. A failed call leaves the arrays
 * consistent, so engine_dnnl.c's destroy frees whatever was made.
 */
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

#include "engine_dnnl_internal.h"

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

df_err dn_oom(const dn_engine *E)
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
df_err dn_owned_alloc(dn_engine *E, size_t size, void **out)
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

/* An owned copy of the size bytes at src. */
static df_err dn_owned_copy(dn_engine *E, const void *src, size_t size,
			    void **out)
{
	void *p;
	df_err err = dn_owned_alloc(E, size, &p);
	if (err)
		return err;
	if (size)
		memcpy(p, src, size);
	*out = p;
	return DF_OK;
}

/* The data of constant cv, checked to be present (f32, numel elements). */
static df_err dn_const_data(const dn_engine *E, const graph_value *cv,
			    void **out)
{
	const tensor *c = cv->constant;
	if (!c->data && c->numel > 0)
		return dn_node_err(E, DF_EINVAL,
				   "constant '%s' has no data (released?)",
				   cv->name ? cv->name : "?");
	*out = c->data;
	return DF_OK;
}

/* ---------------------------------------------------------- memory descs */

/* Dims of a graph value for oneDNN: a scalar becomes [1]. */
int dn_dims(const graph_value *v, dnnl_dims_t d)
{
	if (v->ndim == 0) {
		d[0] = 1;
		return 1;
	}
	for (int i = 0; i < v->ndim; i++)
		d[i] = v->dims[i];
	return v->ndim;
}

int64_t dn_prod(const dnnl_dim_t *d, int from, int to)
{
	int64_t p = 1;
	for (int i = from; i < to; i++)
		p *= d[i];
	return p;
}

/* Dense row-major f32 descriptor. */
dnnl_status_t dn_md_plain(dnnl_memory_desc_t *md, int nd,
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

dnnl_status_t dn_md_any(dnnl_memory_desc_t *md, int nd,
			const dnnl_dim_t *dims)
{
	return dnnl_memory_desc_init_by_tag(md, nd, dims, dnnl_f32,
					    dnnl_format_tag_any);
}

bool dn_md_is_plain(const dnnl_memory_desc_t *md)
{
	dnnl_memory_desc_t p;
	if (dn_md_plain(&p, md->ndims, md->dims) != dnnl_success)
		return false;
	return dnnl_memory_desc_equal(&p, md);
}

bool dn_md_same_dims(const dnnl_memory_desc_t *a,
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
df_err dn_mem_new(dn_engine *E, const dnnl_memory_desc_t *md,
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
df_err dn_mem_fresh(dn_engine *E, const dnnl_memory_desc_t *md, int *out)
{
	int s = -1;
	df_err err = dn_storage_new(E, md, &s);
	if (err)
		return err;
	return dn_mem_new(E, md, s, NULL, out);
}

/* A plain view of plain mem m with other dims (same element count). */
df_err dn_view(dn_engine *E, int m, int nd, const dnnl_dim_t *dims,
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

void dn_set_value(dn_engine *E, int v, int m)
{
	E->val_mem[v] = m;
	E->val_storage[v] = E->mems[m].storage;
}

/* True when nothing after node n reads storage s: every value living in s
 * (or whose plain copy lives there) is dead after n. */
bool dn_dead_after(const dn_engine *E, int s, int n)
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
df_err dn_emit(dn_engine *E, const_dnnl_primitive_desc_t pd,
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
df_err dn_attr_new(dn_engine *E, dnnl_primitive_attr_t *out)
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
df_err dn_reorder(dn_engine *E, int src, int dst)
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
df_err dn_convert(dn_engine *E, int src, const dnnl_memory_desc_t *md,
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
 * their data (an owned copy when E->release) on first use. */
df_err dn_value(dn_engine *E, int v, int *out)
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
	void *data = NULL;
	DN_CHECK(dn_const_data(E, gv, &data));
	if (E->release)
		DN_CHECK(dn_owned_copy(E, data, tensor_nbytes(gv->constant),
				       &data));
	int m;
	DN_CHECK(dn_mem_new(E, &md, DN_EXTERNAL, data, &m));
	dn_set_value(E, v, m);
	*out = m;
out:
	return err;
}

/* Value v in plain row-major layout (a shared conversion if needed). */
df_err dn_plain(dn_engine *E, int v, int *out)
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
df_err dn_in_layout(dn_engine *E, int v, const dnnl_memory_desc_t *md,
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
 * constant itself when the layouts agree (a copy when E->release), else a
 * reordered copy made now. */
df_err dn_const(dn_engine *E, const graph_value *cv,
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
	void *data = NULL, *buf;
	DN_CHECK(dn_const_data(E, cv, &data));
	if (dnnl_memory_desc_equal(user_md, want)) {
		if (E->release)
			DN_CHECK(dn_owned_copy(E, data, tensor_nbytes(c),
					       &data));
		return dn_mem_new(E, want, DN_EXTERNAL, data, out);
	}
	DN_CHECK(dn_owned_alloc(E, dnnl_memory_desc_get_size(want), &buf));
	DN_TRY(dnnl_memory_create(&um, user_md, E->eng, data));
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
df_err dn_const_view(dn_engine *E, int v, int nd, const dnnl_dim_t *d,
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

/* With E->release: frees the graph's data of each constant that node n
 * reads for the last time (the engine holds its own copy by now). */
void dn_release_consts(dn_engine *E, int n)
{
	const graph *g = E->base.g;
	const graph_node *nd = &g->nodes[n];
	int vals[GRAPH_MAX_INPUTS + GRAPH_MAX_POSTOPS], nv = 0;
	for (int k = 0; k < nd->n_inputs; k++)
		vals[nv++] = nd->inputs[k];
	for (int p = 0; p < nd->n_postops; p++)
		if (nd->postops[p].kind == GRAPH_POSTOP_ADD)
			vals[nv++] = nd->postops[p].operand;
	for (int i = 0; i < nv; i++) {
		int v = vals[i];
		if (v >= 0 && v < g->n_values && g->values[v].constant &&
		    E->last_use[v] <= n)
			graph_release_constant(E->release, v);
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
df_err dn_plan(dn_engine *E)
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
df_err dn_bind(dn_engine *E)
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
df_err dn_bind_io(dn_engine *E)
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
