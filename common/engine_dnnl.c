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
 * Memory and constants (storages, the arena plan, owned weight copies
 * and releasing the graph's constants) are described and implemented in
 * engine_dnnl_mem.c.
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
 * Per-op builders are in engine_dnnl_ops.c, those of Conv, Gemm and
 * MatMul (and the convolution algorithm choice) in engine_dnnl_conv.c;
 * values, storages, steps, constants and planning in engine_dnnl_mem.c;
 * engine_dnnl_internal.h is what the files share.
 */
#include <limits.h>
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

#include "engine_dnnl_internal.h"
#include "log.h"

#define DN_PAR_MACS (1 << 20)     /* see "Threads" above */
#define DN_PAR_ELEMS (200 * 1000)
#define DN_PAR_PASSIVE 8          /* threshold factor under a passive wait */

/* ---------------------------------------------------------------- errors */

static const char *dn_node_name(const graph_node *n)
{
	return n->name ? n->name : "?";
}

df_err dn_node_err(const dn_engine *E, df_err err, const char *fmt, ...)
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
df_err dn_fail(const dn_engine *E, dnnl_status_t st, const char *call)
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

/* --------------------------------------------------------------- threads */

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
		/* fully written below (reorder into it, or memcpy) */
		DN_CHECK(tensor_create_uninit(TENSOR_F32, yv->ndim, yv->dims,
					      &outputs[i]));
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

df_err engine_dnnl_create(const graph *g, int threads, graph *release,
			  engine **out)
{
	if (!g || !out || (release && release != g))
		return df_errf(DF_EINVAL, "engine_dnnl_create: bad argument");
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
	E->release = release;
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
		if (E->release)
			dn_release_consts(E, n);
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
