/*
 * graph_passes.c - graph_finalize() and the passes it runs, in order: the
 * structure check, topological sort, shape inference and folding
 * (graph_infer.c, graph_fold.c), canonical forms (graph_canon.c), dead node removal,
 * BatchNorm folding, post-op fusion and value compaction; graph_check()
 * (graph_check.c) then verifies the result.
 *
 * Passes mark nodes dead in a keep-mask and compact g->nodes afterwards
 * (graph_nodes_compact() also recomputes every value's producer), and
 * unreferenced values are dropped at the end (values_gc()), so indices held
 * across graph_finalize() are invalid afterwards. Every pass leaves g
 * consistent enough for graph_destroy() if it fails half-way; a graph whose
 * finalize failed must not be used otherwise.
 */
#include "graph.h"
#include "graph_internal.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- topological order -------------------------------------------------- */

static void heap_push(int *h, int *n, int v)
{
	int i = (*n)++;
	h[i] = v;
	while (i > 0 && h[(i - 1) / 2] > h[i]) {
		int p = (i - 1) / 2, t = h[p];
		h[p] = h[i];
		h[i] = t;
		i = p;
	}
}

static int heap_pop(int *h, int *n)
{
	int top = h[0];
	h[0] = h[--(*n)];
	for (int i = 0;;) {
		int l = 2 * i + 1, r = l + 1, m = i;
		if (l < *n && h[l] < h[m])
			m = l;
		if (r < *n && h[r] < h[m])
			m = r;
		if (m == i)
			break;
		int t = h[m];
		h[m] = h[i];
		h[i] = t;
		i = m;
	}
	return top;
}

/*
 * Sorts g->nodes topologically (inputs and post-op ADD operands first),
 * keeping the current order wherever it is already valid. Producers must be
 * current. DF_EINVAL naming a node on a cycle.
 */
static df_err toposort(graph *g)
{
	int nn = g->n_nodes;
	df_err err = DF_OK;
	int *indeg = calloc((size_t)nn + 1, sizeof *indeg);
	int *start = calloc((size_t)nn + 2, sizeof *start);
	int *edges = NULL, *heap = NULL, *order = NULL, *fill = NULL;
	graph_node *sorted = NULL;
	if (!indeg || !start) {
		err = df_errf(DF_ENOMEM, "topological sort");
		goto out;
	}
	/* edges producer -> consumer, in CSR form */
	int deps[GRAPH_MAX_INPUTS + GRAPH_MAX_POSTOPS];
	size_t n_edges = 0;
	for (int n = 0; n < nn; n++) {
		int k = graph_node_deps(&g->nodes[n], deps);
		for (int i = 0; i < k; i++) {
			int p = g->values[deps[i]].producer;
			if (p >= 0) {
				start[p + 1]++;
				indeg[n]++;
				n_edges++;
			}
		}
	}
	for (int n = 0; n < nn; n++)
		start[n + 1] += start[n];
	edges = malloc((n_edges + 1) * sizeof *edges);
	fill = calloc((size_t)nn + 1, sizeof *fill);
	heap = malloc(((size_t)nn + 1) * sizeof *heap);
	order = malloc(((size_t)nn + 1) * sizeof *order);
	sorted = malloc(((size_t)nn + 1) * sizeof *sorted);
	if (!edges || !fill || !heap || !order || !sorted) {
		err = df_errf(DF_ENOMEM, "topological sort");
		goto out;
	}
	for (int n = 0; n < nn; n++) {
		int k = graph_node_deps(&g->nodes[n], deps);
		for (int i = 0; i < k; i++) {
			int p = g->values[deps[i]].producer;
			if (p >= 0)
				edges[start[p] + fill[p]++] = n;
		}
	}
	int hn = 0, done = 0;
	for (int n = 0; n < nn; n++)
		if (indeg[n] == 0)
			heap_push(heap, &hn, n);
	while (hn > 0) {
		int n = heap_pop(heap, &hn);
		order[done++] = n;
		for (int e = start[n]; e < start[n + 1]; e++)
			if (--indeg[edges[e]] == 0)
				heap_push(heap, &hn, edges[e]);
	}
	if (done < nn) {
		for (int n = 0; n < nn; n++)
			if (indeg[n] > 0) {
				err = graph_node_err(
				    &g->nodes[n], DF_EINVAL,
				    "the graph has a cycle through this node");
				goto out;
			}
	}
	for (int i = 0; i < nn; i++)
		sorted[i] = g->nodes[order[i]];
	if (nn)
		memcpy(g->nodes, sorted, (size_t)nn * sizeof *sorted);
	for (int n = 0; n < nn; n++)
		g->values[g->nodes[n].output].producer = n;
out:
	free(indeg);
	free(start);
	free(edges);
	free(fill);
	free(heap);
	free(order);
	free(sorted);
	return err;
}

/* ---- passes ------------------------------------------------------------- */

/* Checks node references before anything reads through them, and sets the
 * producers from scratch. */
static df_err check_structure(graph *g)
{
	for (int v = 0; v < g->n_values; v++)
		g->values[v].producer = -1;
	for (int n = 0; n < g->n_nodes; n++) {
		graph_node *nd = &g->nodes[n];
		if ((unsigned)nd->op >= GRAPH_OP_COUNT)
			return df_errf(DF_EINVAL, "node '%s': unknown op %d",
			               nd->name, (int)nd->op);
		if (nd->n_inputs < graph_op_arity[nd->op].min ||
		    nd->n_inputs > graph_op_arity[nd->op].max)
			return graph_node_err(
			    nd, DF_EINVAL, "%d inputs, expected %d..%d",
			    nd->n_inputs, graph_op_arity[nd->op].min,
			    graph_op_arity[nd->op].max);
		for (int i = 0; i < nd->n_inputs; i++)
			if (nd->inputs[i] < -1 || nd->inputs[i] >= g->n_values)
				return graph_node_err(nd, DF_EINVAL,
				                      "input %d is not a value",
				                      i);
		if (nd->n_postops < 0 || nd->n_postops > GRAPH_MAX_POSTOPS)
			return graph_node_err(nd, DF_EINVAL, "%d post-ops",
			                      nd->n_postops);
		for (int i = 0; i < nd->n_postops; i++)
			if (nd->postops[i].kind == GRAPH_POSTOP_ADD &&
			    !graph_value_ok(g, nd->postops[i].operand))
				return graph_node_err(
				    nd, DF_EINVAL,
				    "post-op %d operand is not a value", i);
		if (!graph_value_ok(g, nd->output) ||
		    g->values[nd->output].constant)
			return graph_node_err(nd, DF_EINVAL,
			                      "output is not a computed value");
		graph_value *o = &g->values[nd->output];
		if (o->producer >= 0)
			return graph_node_err(
			    nd, DF_EINVAL,
			    "output '%s' is also produced by '%s'", o->name,
			    g->nodes[o->producer].name);
		o->producer = n;
	}
	for (int i = 0; i < g->n_inputs; i++) {
		int v = g->inputs[i];
		if (!graph_value_ok(g, v) || g->values[v].constant ||
		    g->values[v].producer >= 0)
			return df_errf(
			    DF_EINVAL,
			    "graph input %d ('%s') is not an unproduced, "
			    "non-constant value",
			    i, graph_value_ok(g, v) ? graph_vname(g, v) : "?");
		size_t numel = 0;
		df_err err = tensor_shape_numel(
		    g->values[v].ndim, g->values[v].dims, TENSOR_F32, &numel);
		if (err)
			return df_errf(err, "graph input '%s': shape too large",
			               graph_vname(g, v));
	}
	for (int i = 0; i < g->n_outputs; i++)
		if (!graph_value_ok(g, g->outputs[i]))
			return df_errf(DF_EINVAL,
			               "graph output %d is not a value", i);
	/* every non-constant input must come from somewhere */
	uint8_t *role = graph_value_roles(g, 0);
	if (!role)
		return df_errf(DF_ENOMEM, "graph check");
	df_err err = DF_OK;
	for (int n = 0; n < g->n_nodes && !err; n++) {
		const graph_node *nd = &g->nodes[n];
		int deps[GRAPH_MAX_INPUTS + GRAPH_MAX_POSTOPS];
		int k = graph_node_deps(nd, deps);
		for (int i = 0; i < k && !err; i++) {
			int v = deps[i];
			if (!g->values[v].constant &&
			    g->values[v].producer < 0 &&
			    !(role[v] & GRAPH_ROLE_IN))
				err = graph_node_err(
				    nd, DF_EINVAL,
				    "input '%s' is neither a graph "
				    "input, a constant nor produced by "
				    "a node",
				    graph_vname(g, v));
		}
	}
	free(role);
	return err;
}

/* Makes the constant in slot `slot` of node n private to that node (a copy
 * when anything else reads it), so that it can be modified in place. refs
 * (slot references per value) must have room for the new value. */
static df_err own_constant(graph *g, int n, int slot, int *refs)
{
	int v = g->nodes[n].inputs[slot];
	if (refs[v] <= 1)
		return DF_OK;
	tensor *t = NULL;
	df_err err = tensor_clone(g->values[v].constant, &t);
	if (err)
		return err;
	int nv = -1;
	err = graph_add_value_fmt(g, 0, NULL, t, &nv, "%s.%d",
	                          g->values[v].name, slot);
	if (err) {
		tensor_destroy(t);
		return err;
	}
	g->nodes[n].inputs[slot] = nv;
	refs[v]--;
	refs[nv] = 1;
	return DF_OK;
}

/* Folds canonical BatchNorm nodes into the Conv/Gemm that produces their
 * input when that output feeds nothing else. */
static df_err fold_batchnorm(graph *g)
{
	int *refs = graph_slot_refs(g);
	bool *keep = malloc(((size_t)g->n_nodes + 1) * sizeof *keep);
	uint8_t *role = graph_value_roles(g, 0);
	df_err err = DF_OK;
	/* room for the two private copies each fold may add */
	int *nr = refs ? realloc(refs, ((size_t)g->n_values +
	                                2 * (size_t)g->n_nodes + 1) *
	                                   sizeof *refs)
	               : NULL;
	if (nr)
		refs = nr;
	if (!refs || !nr || !keep || !role) {
		err = df_errf(DF_ENOMEM, "BatchNorm folding");
		goto out;
	}
	for (int n = 0; n < g->n_nodes; n++)
		keep[n] = true;
	for (int n = 0; n < g->n_nodes; n++) {
		graph_node *bn = &g->nodes[n];
		if (bn->op != GRAPH_OP_BATCHNORM)
			continue;
		int x = bn->inputs[0];
		int p = g->values[x].producer;
		if (p < 0 || refs[x] != 1 || (role[x] & GRAPH_ROLE_OUT))
			continue;
		graph_node *pn = &g->nodes[p];
		if ((pn->op != GRAPH_OP_CONV && pn->op != GRAPH_OP_GEMM) ||
		    pn->n_postops)
			continue;
		err = own_constant(g, p, 1, refs);
		if (!err)
			err = own_constant(g, p, 2, refs);
		if (err)
			break; /* what was folded so far stays folded */
		const float *sc = tensor_f32(g->values[bn->inputs[1]].constant);
		const float *sh = tensor_f32(g->values[bn->inputs[2]].constant);
		tensor *w = g->values[pn->inputs[1]].constant;
		float *b = tensor_f32(g->values[pn->inputs[2]].constant);
		int64_t m = w->dims[0];
		size_t per = w->numel / (size_t)(m ? m : 1);
		for (int64_t o = 0; o < m; o++) {
			for (size_t i = 0; i < per; i++)
				tensor_f32(w)[(size_t)o * per + i] *= sc[o];
			b[o] = b[o] * sc[o] + sh[o];
		}
		pn->output = bn->output;
		g->values[bn->output].producer = p;
		g->values[x].producer = -1;
		keep[n] = false;
		refs[x]--;
		refs[bn->inputs[1]]--;
		refs[bn->inputs[2]]--;
	}
	graph_nodes_compact(g, keep);
out:
	free(refs);
	free(keep);
	free(role);
	return err;
}

/* The post-op that node nd (an activation) stands for. */
static graph_postop act_postop(const graph_node *nd)
{
	graph_postop p = {GRAPH_POSTOP_ACT, GRAPH_ACT_RELU, 0, 0, -1};
	switch (nd->op) {
	case GRAPH_OP_CLIP:
		p.act = GRAPH_ACT_CLIP;
		p.alpha = nd->attr.clip.lo;
		p.beta = nd->attr.clip.hi;
		break;
	case GRAPH_OP_LEAKYRELU:
		p.act = GRAPH_ACT_LEAKYRELU;
		p.alpha = nd->attr.leaky.alpha;
		break;
	case GRAPH_OP_SIGMOID:
		p.act = GRAPH_ACT_SIGMOID;
		break;
	default:
		break;
	}
	return p;
}

/* Node that x could take post-ops from: a Conv/Gemm whose output x feeds
 * only one slot and is not a graph output (refs counts graph outputs as
 * references); -1 if none. */
static int fusable_producer(const graph *g, int x, const int *refs,
                            const bool *keep)
{
	int p = x >= 0 ? g->values[x].producer : -1;
	if (p < 0 || !keep[p] || refs[x] != 1)
		return -1;
	const graph_node *pn = &g->nodes[p];
	if (pn->op != GRAPH_OP_CONV && pn->op != GRAPH_OP_GEMM)
		return -1;
	return pn->n_postops < GRAPH_MAX_POSTOPS ? p : -1;
}

/* Fuses activations and full-size Adds into the Conv/Gemm they follow.
 * Nodes must be in topological order; the result may not be (a fused Add
 * operand can be produced after the node). */
static df_err fuse_postops(graph *g)
{
	int *refs = graph_slot_refs(g);
	bool *keep = malloc(((size_t)g->n_nodes + 1) * sizeof *keep);
	if (!refs || !keep) {
		free(refs);
		free(keep);
		return df_errf(DF_ENOMEM, "post-op fusion");
	}
	for (int i = 0; i < g->n_outputs; i++)
		refs[g->outputs[i]]++; /* a graph output must stay visible */
	for (int n = 0; n < g->n_nodes; n++)
		keep[n] = true;
	for (int n = 0; n < g->n_nodes; n++) {
		graph_node *nd = &g->nodes[n];
		int p = -1;
		graph_postop po;
		switch (nd->op) {
		case GRAPH_OP_RELU:
		case GRAPH_OP_CLIP:
		case GRAPH_OP_LEAKYRELU:
		case GRAPH_OP_SIGMOID:
			p = fusable_producer(g, nd->inputs[0], refs, keep);
			po = act_postop(nd);
			break;
		case GRAPH_OP_ADD: {
			const graph_value *o = &g->values[nd->output];
			for (int slot = 0; slot < 2 && p < 0; slot++) {
				int x = nd->inputs[slot],
				    y = nd->inputs[1 - slot];
				const graph_value *xv = &g->values[x],
				                  *yv = &g->values[y];
				if (x == y ||
				    !graph_dims_equal(xv->ndim, xv->dims,
				                      o->ndim, o->dims) ||
				    !graph_dims_equal(yv->ndim, yv->dims,
				                      o->ndim, o->dims))
					continue;
				p = fusable_producer(g, x, refs, keep);
				po = (graph_postop){GRAPH_POSTOP_ADD,
				                    GRAPH_ACT_RELU, 0, 0, y};
			}
			break;
		}
		default:
			break;
		}
		if (p < 0)
			continue;
		graph_node *pn = &g->nodes[p];
		int x = pn->output;
		pn->postops[pn->n_postops++] = po;
		pn->output = nd->output;
		g->values[nd->output].producer = p;
		g->values[x].producer = -1;
		refs[x]--;
		keep[n] = false;
	}
	graph_nodes_compact(g, keep);
	free(refs);
	free(keep);
	return DF_OK;
}

/* Removes nodes that contribute to no graph output. Nodes must be in
 * topological order. */
static df_err prune_dead(graph *g)
{
	bool *need = calloc((size_t)g->n_values + 1, sizeof *need);
	bool *keep = malloc(((size_t)g->n_nodes + 1) * sizeof *keep);
	if (!need || !keep) {
		free(need);
		free(keep);
		return df_errf(DF_ENOMEM, "dead node removal");
	}
	for (int i = 0; i < g->n_outputs; i++)
		need[g->outputs[i]] = true;
	for (int n = g->n_nodes - 1; n >= 0; n--) {
		const graph_node *nd = &g->nodes[n];
		keep[n] = need[nd->output];
		if (!keep[n])
			continue;
		int deps[GRAPH_MAX_INPUTS + GRAPH_MAX_POSTOPS];
		int k = graph_node_deps(nd, deps);
		for (int i = 0; i < k; i++)
			need[deps[i]] = true;
	}
	graph_nodes_compact(g, keep);
	free(need);
	free(keep);
	return DF_OK;
}

/* Drops values nothing refers to and renumbers the rest. */
static df_err values_gc(graph *g)
{
	int *map = malloc(((size_t)g->n_values + 1) * sizeof *map);
	if (!map)
		return df_errf(DF_ENOMEM, "value compaction");
	for (int v = 0; v < g->n_values; v++)
		map[v] = -1;
	for (int i = 0; i < g->n_inputs; i++)
		map[g->inputs[i]] = 0;
	for (int i = 0; i < g->n_outputs; i++)
		map[g->outputs[i]] = 0;
	for (int n = 0; n < g->n_nodes; n++) {
		const graph_node *nd = &g->nodes[n];
		int deps[GRAPH_MAX_INPUTS + GRAPH_MAX_POSTOPS];
		int k = graph_node_deps(nd, deps);
		for (int i = 0; i < k; i++)
			map[deps[i]] = 0;
		map[nd->output] = 0;
	}
	int w = 0;
	for (int v = 0; v < g->n_values; v++) {
		if (map[v] < 0) {
			free(g->values[v].name);
			tensor_destroy(g->values[v].constant);
			continue;
		}
		map[v] = w;
		g->values[w++] = g->values[v];
	}
	g->n_values = w;
	for (int i = 0; i < g->n_inputs; i++)
		g->inputs[i] = map[g->inputs[i]];
	for (int i = 0; i < g->n_outputs; i++)
		g->outputs[i] = map[g->outputs[i]];
	for (int n = 0; n < g->n_nodes; n++) {
		graph_node *nd = &g->nodes[n];
		for (int i = 0; i < nd->n_inputs; i++)
			if (nd->inputs[i] >= 0)
				nd->inputs[i] = map[nd->inputs[i]];
		for (int i = 0; i < nd->n_postops; i++)
			if (nd->postops[i].kind == GRAPH_POSTOP_ADD)
				nd->postops[i].operand =
				    map[nd->postops[i].operand];
		nd->output = map[nd->output];
	}
	free(map);
	return DF_OK;
}

/* ---- finalize ----------------------------------------------------------- */

df_err graph_finalize(graph *g)
{
	if (g->constants_released)
		return df_errf(DF_EINVAL, "graph finalize: the graph's constant "
		                          "data was released");
	df_err err = check_structure(g);
	if (!err)
		err = toposort(g);
	if (!err)
		err = graph_infer_fold_all(g);
	if (!err)
		err = graph_canonicalize(g);
	if (!err) /* shapes of values made by canonicalize; folds new chances */
		err = graph_infer_fold_all(g);
	if (!err)
		err = prune_dead(g);
	if (!err)
		err = fold_batchnorm(g);
	if (!err)
		err = fuse_postops(g);
	if (!err)
		err = toposort(g);
	if (!err)
		err = prune_dead(g);
	if (!err)
		err = values_gc(g);
	if (!err)
		err = graph_check(g);
	return err;
}
