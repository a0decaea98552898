/*
 * graph.c - the graph IR itself: creating and destroying graphs, adding
 * values, nodes, inputs and outputs, lookups, deep copies and the cost
 * counts (MACs, FLOPs, parameters, weight bytes); plus the helpers the other
 * graph_*.c files share through graph_internal.h.
 *
 * The rest of the module: graph_infer.c (shape inference), graph_fold.c
 * (constant evaluation and folding), graph_canon.c (canonical node forms),
 * graph_passes.c (graph_finalize() and its passes) and graph_check.c (the
 * invariant check).
 *
 * g->values and g->nodes hold n_values/n_nodes live entries out of
 * values_cap/nodes_cap allocated ones; every name is an owned string, and
 * graph_add_node() keeps the producer of each value current. The builders
 * check their arguments (they come from untrusted files); the cost counts
 * accept any node index and return 0 for a bad one.
 */
#include "graph.h"
#include "graph_internal.h"

#include <assert.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[] = {
    [GRAPH_OP_CONV] = "Conv",
    [GRAPH_OP_GEMM] = "Gemm",
    [GRAPH_OP_MATMUL] = "MatMul",
    [GRAPH_OP_BATCHNORM] = "BatchNormalization",
    [GRAPH_OP_RELU] = "Relu",
    [GRAPH_OP_CLIP] = "Clip",
    [GRAPH_OP_LEAKYRELU] = "LeakyRelu",
    [GRAPH_OP_SIGMOID] = "Sigmoid",
    [GRAPH_OP_MAXPOOL] = "MaxPool",
    [GRAPH_OP_AVGPOOL] = "AveragePool",
    [GRAPH_OP_GLOBALAVGPOOL] = "GlobalAveragePool",
    [GRAPH_OP_ADD] = "Add",
    [GRAPH_OP_MUL] = "Mul",
    [GRAPH_OP_CONCAT] = "Concat",
    [GRAPH_OP_FLATTEN] = "Flatten",
    [GRAPH_OP_RESHAPE] = "Reshape",
    [GRAPH_OP_SOFTMAX] = "Softmax",
};
static_assert(sizeof op_names / sizeof op_names[0] == GRAPH_OP_COUNT,
              "op_names must have one entry per graph_op");

static const char *const act_names[] = {
    [GRAPH_ACT_RELU] = "Relu",
    [GRAPH_ACT_CLIP] = "Clip",
    [GRAPH_ACT_LEAKYRELU] = "LeakyRelu",
    [GRAPH_ACT_SIGMOID] = "Sigmoid",
};
static_assert(sizeof act_names / sizeof act_names[0] == GRAPH_ACT_COUNT,
              "act_names must have one entry per graph_act");

/* Inputs accepted per op before finalize: {min, max}. */
const graph_arity graph_op_arity[] = {
    [GRAPH_OP_CONV] = {2, 3},
    [GRAPH_OP_GEMM] = {2, 3},
    [GRAPH_OP_MATMUL] = {2, 2},
    [GRAPH_OP_BATCHNORM] = {3, 5},
    [GRAPH_OP_RELU] = {1, 1},
    [GRAPH_OP_CLIP] = {1, 1},
    [GRAPH_OP_LEAKYRELU] = {1, 1},
    [GRAPH_OP_SIGMOID] = {1, 1},
    [GRAPH_OP_MAXPOOL] = {1, 1},
    [GRAPH_OP_AVGPOOL] = {1, 1},
    [GRAPH_OP_GLOBALAVGPOOL] = {1, 1},
    [GRAPH_OP_ADD] = {2, 2},
    [GRAPH_OP_MUL] = {2, 2},
    [GRAPH_OP_CONCAT] = {1, GRAPH_MAX_INPUTS},
    [GRAPH_OP_FLATTEN] = {1, 1},
    [GRAPH_OP_RESHAPE] = {1, 2},
    [GRAPH_OP_SOFTMAX] = {1, 1},
};
static_assert(sizeof graph_op_arity / sizeof graph_op_arity[0] ==
                  GRAPH_OP_COUNT,
              "graph_op_arity must have one entry per graph_op");

const char *graph_op_name(graph_op op)
{
	return (unsigned)op < GRAPH_OP_COUNT ? op_names[op] : "?";
}

const char *graph_act_name(graph_act act)
{
	return (unsigned)act < GRAPH_ACT_COUNT ? act_names[act] : "?";
}

/* ---- small helpers ------------------------------------------------------ */

/* df_errf() prefixed with "node 'name' (Op): ". */
df_err graph_node_err(const graph_node *nd, df_err err, const char *fmt, ...)
{
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return df_errf(err, "node '%s' (%s): %s", nd->name ? nd->name : "?",
	               graph_op_name(nd->op), msg);
}

/* New string from a printf format; NULL when out of memory. */
char *graph_str_fmt(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return NULL;
	char *s = malloc((size_t)n + 1);
	if (!s)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}

/* Grows *arr (of *cap elements of size elem) to hold at least need. */
df_err graph_grow(void **arr, int *cap, int need, size_t elem)
{
	if (need <= *cap)
		return DF_OK;
	if (need > INT_MAX / 2)
		return df_errf(DF_ETOOBIG, "graph has too many entries (%d)",
		               need);
	int ncap = *cap ? *cap : 16;
	while (ncap < need)
		ncap *= 2;
	void *p = realloc(*arr, (size_t)ncap * elem);
	if (!p)
		return df_errf(DF_ENOMEM, "cannot grow graph to %d entries",
		               ncap);
	*arr = p;
	*cap = ncap;
	return DF_OK;
}

static df_err int_append(int **arr, int *n, int v)
{
	int *p = realloc(*arr, ((size_t)*n + 1) * sizeof *p);
	if (!p)
		return DF_ENOMEM;
	p[*n] = v;
	*arr = p;
	(*n)++;
	return DF_OK;
}

/* ---- building ----------------------------------------------------------- */

df_err graph_create(graph **out)
{
	graph *g = calloc(1, sizeof *g);
	if (!g)
		return df_errf(DF_ENOMEM, "cannot allocate graph");
	*out = g;
	return DF_OK;
}

void graph_destroy(graph *g)
{
	if (!g)
		return;
	for (int i = 0; i < g->n_values; i++) {
		free(g->values[i].name);
		tensor_destroy(g->values[i].constant);
	}
	for (int i = 0; i < g->n_nodes; i++)
		free(g->nodes[i].name);
	free(g->values);
	free(g->nodes);
	free(g->inputs);
	free(g->outputs);
	free(g);
}

void graph_release_constant(graph *g, int v)
{
	if (!g || v < 0 || v >= g->n_values || !g->values[v].constant)
		return;
	tensor *t = g->values[v].constant;
	if (!t->data)
		return;
	free(t->data);
	t->data = NULL;
	g->constants_released = true;
}

df_err graph_add_value(graph *g, const char *name, int ndim,
                       const int64_t *dims, tensor *constant, int *index)
{
	if (constant) {
		if ((unsigned)constant->dtype >= TENSOR_DTYPE_COUNT ||
		    constant->ndim < 0 || constant->ndim > TENSOR_MAX_DIMS)
			return df_errf(DF_EINVAL,
			               "value '%s': bad constant tensor",
			               name ? name : "?");
		if (dims && !graph_dims_equal(ndim, dims, constant->ndim,
		                              constant->dims))
			return df_errf(
			    DF_EINVAL,
			    "value '%s': shape differs from its constant's",
			    name ? name : "?");
		ndim = constant->ndim;
		dims = constant->dims;
	}
	if (ndim < 0 || ndim > TENSOR_MAX_DIMS || (ndim > 0 && !dims))
		return df_errf(DF_EINVAL, "value '%s': rank %d outside 0..%d",
		               name ? name : "?", ndim, TENSOR_MAX_DIMS);
	for (int i = 0; i < ndim; i++)
		if (dims[i] < 0)
			return df_errf(DF_EINVAL,
			               "value '%s': dim %d is negative",
			               name ? name : "?", i);
	df_err err = graph_grow((void **)&g->values, &g->values_cap,
	                        g->n_values + 1, sizeof *g->values);
	if (err)
		return err;
	char *copy =
	    name ? strdup(name) : graph_str_fmt("value_%d", g->n_values);
	if (!copy)
		return df_errf(DF_ENOMEM, "cannot copy value name");
	graph_value *v = &g->values[g->n_values];
	memset(v, 0, sizeof *v);
	v->name = copy;
	v->ndim = ndim;
	for (int i = 0; i < ndim; i++)
		v->dims[i] = dims[i];
	v->constant = constant;
	v->producer = -1;
	if (index)
		*index = g->n_values;
	g->n_values++;
	return DF_OK;
}

/* graph_add_value() with a formatted name. */
df_err graph_add_value_fmt(graph *g, int ndim, const int64_t *dims,
                           tensor *constant, int *index, const char *fmt, ...)
{
	char name[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(name, sizeof name, fmt, ap);
	va_end(ap);
	return graph_add_value(g, name, ndim, dims, constant, index);
}

int graph_find_value(const graph *g, const char *name)
{
	for (int i = 0; i < g->n_values; i++)
		if (g->values[i].name && strcmp(g->values[i].name, name) == 0)
			return i;
	return -1;
}

df_err graph_add_node(graph *g, const graph_node *node, const char *name,
                      int *index)
{
	const char *shown = name ? name : "?";
	if ((unsigned)node->op >= GRAPH_OP_COUNT)
		return df_errf(DF_EINVAL, "node '%s': unknown op %d", shown,
		               (int)node->op);
	const char *opn = graph_op_name(node->op);
	if (node->n_inputs < graph_op_arity[node->op].min ||
	    node->n_inputs > graph_op_arity[node->op].max)
		return df_errf(
		    DF_EINVAL, "node '%s' (%s): %d inputs, expected %d..%d",
		    shown, opn, node->n_inputs, graph_op_arity[node->op].min,
		    graph_op_arity[node->op].max);
	for (int i = 0; i < node->n_inputs; i++)
		if (node->inputs[i] < -1 || node->inputs[i] >= g->n_values)
			return df_errf(
			    DF_EINVAL,
			    "node '%s' (%s): input %d is not a value", shown,
			    opn, i);
	if (!graph_value_ok(g, node->output))
		return df_errf(DF_EINVAL,
		               "node '%s' (%s): output is not a value", shown,
		               opn);
	const graph_value *ov = &g->values[node->output];
	if (ov->constant)
		return df_errf(DF_EINVAL,
		               "node '%s' (%s): output '%s' is a constant",
		               shown, opn, ov->name);
	if (ov->producer >= 0)
		return df_errf(DF_EINVAL,
		               "node '%s' (%s): output '%s' is already "
		               "produced by node '%s'",
		               shown, opn, ov->name,
		               g->nodes[ov->producer].name);
	if (node->n_postops < 0 || node->n_postops > GRAPH_MAX_POSTOPS)
		return df_errf(DF_EINVAL,
		               "node '%s' (%s): %d post-ops, at most %d", shown,
		               opn, node->n_postops, GRAPH_MAX_POSTOPS);
	for (int i = 0; i < node->n_postops; i++) {
		const graph_postop *p = &node->postops[i];
		if (p->kind == GRAPH_POSTOP_ADD
		        ? !graph_value_ok(g, p->operand)
		        : (p->kind != GRAPH_POSTOP_ACT ||
		           (unsigned)p->act >= GRAPH_ACT_COUNT))
			return df_errf(DF_EINVAL,
			               "node '%s' (%s): bad post-op %d", shown,
			               opn, i);
	}
	df_err err = graph_grow((void **)&g->nodes, &g->nodes_cap,
	                        g->n_nodes + 1, sizeof *g->nodes);
	if (err)
		return err;
	char *copy =
	    name ? strdup(name)
	         : graph_str_fmt("%s_%d", graph_op_name(node->op), g->n_nodes);
	if (!copy)
		return df_errf(DF_ENOMEM, "cannot copy node name");
	graph_node *nd = &g->nodes[g->n_nodes];
	*nd = *node;
	nd->name = copy;
	for (int i = nd->n_inputs; i < GRAPH_MAX_INPUTS; i++)
		nd->inputs[i] = -1;
	g->values[node->output].producer = g->n_nodes;
	if (index)
		*index = g->n_nodes;
	g->n_nodes++;
	return DF_OK;
}

df_err graph_add_input(graph *g, int v)
{
	if (!graph_value_ok(g, v))
		return df_errf(DF_EINVAL, "graph input %d is not a value", v);
	if (g->values[v].constant || g->values[v].producer >= 0)
		return df_errf(
		    DF_EINVAL,
		    "graph input '%s' is a constant or produced by a node",
		    graph_vname(g, v));
	for (int i = 0; i < g->n_inputs; i++)
		if (g->inputs[i] == v)
			return df_errf(DF_EINVAL,
			               "graph input '%s' listed twice",
			               graph_vname(g, v));
	return int_append(&g->inputs, &g->n_inputs, v)
	           ? df_errf(DF_ENOMEM, "graph inputs")
	           : DF_OK;
}

df_err graph_add_output(graph *g, int v)
{
	if (!graph_value_ok(g, v))
		return df_errf(DF_EINVAL, "graph output %d is not a value", v);
	return int_append(&g->outputs, &g->n_outputs, v)
	           ? df_errf(DF_ENOMEM, "graph outputs")
	           : DF_OK;
}

int graph_value_consumers(const graph *g, int v)
{
	int count = 0;
	for (int n = 0; n < g->n_nodes; n++) {
		const graph_node *nd = &g->nodes[n];
		bool reads = false;
		for (int i = 0; i < nd->n_inputs; i++)
			reads |= nd->inputs[i] == v;
		for (int i = 0; i < nd->n_postops; i++)
			reads |= nd->postops[i].kind == GRAPH_POSTOP_ADD &&
			         nd->postops[i].operand == v;
		count += reads;
	}
	return count;
}

/* ---- shared with the other graph_*.c files (graph_internal.h) ---------- */

/* Per value: GRAPH_ROLE_IN if it is a graph input, GRAPH_ROLE_OUT if a graph
 * output, with `extra` zeroed slots for values added later. New array (free()),
 * or NULL when out of memory. Passes use it instead of scanning the lists, so
 * that hostile models with many inputs or outputs cost linear time. */
uint8_t *graph_value_roles(const graph *g, size_t extra)
{
	uint8_t *r = calloc((size_t)g->n_values + extra + 1, 1);
	if (!r)
		return NULL;
	for (int i = 0; i < g->n_inputs; i++)
		if (g->inputs[i] >= 0 && g->inputs[i] < g->n_values)
			r[g->inputs[i]] |= GRAPH_ROLE_IN;
	for (int i = 0; i < g->n_outputs; i++)
		if (g->outputs[i] >= 0 && g->outputs[i] < g->n_values)
			r[g->outputs[i]] |= GRAPH_ROLE_OUT;
	return r;
}

/* Per value: number of node input slots and post-op operands reading it.
 * New array of n_values ints (free()), or NULL when out of memory. */
int *graph_slot_refs(const graph *g)
{
	int *refs = calloc((size_t)g->n_values + 1, sizeof *refs);
	if (!refs)
		return NULL;
	for (int n = 0; n < g->n_nodes; n++) {
		const graph_node *nd = &g->nodes[n];
		for (int i = 0; i < nd->n_inputs; i++)
			if (nd->inputs[i] >= 0)
				refs[nd->inputs[i]]++;
		for (int i = 0; i < nd->n_postops; i++)
			if (nd->postops[i].kind == GRAPH_POSTOP_ADD)
				refs[nd->postops[i].operand]++;
	}
	return refs;
}

/* Value indices node nd depends on (inputs and post-op operands). */
int graph_node_deps(const graph_node *nd, int *deps)
{
	int k = 0;
	for (int i = 0; i < nd->n_inputs; i++)
		if (nd->inputs[i] >= 0)
			deps[k++] = nd->inputs[i];
	for (int i = 0; i < nd->n_postops; i++)
		if (nd->postops[i].kind == GRAPH_POSTOP_ADD)
			deps[k++] = nd->postops[i].operand;
	return k;
}

/* Removes the nodes whose keep[] is false and recomputes all producers. */
void graph_nodes_compact(graph *g, const bool *keep)
{
	int w = 0;
	for (int n = 0; n < g->n_nodes; n++) {
		if (keep[n])
			g->nodes[w++] = g->nodes[n];
		else
			free(g->nodes[n].name);
	}
	g->n_nodes = w;
	for (int v = 0; v < g->n_values; v++)
		g->values[v].producer = -1;
	for (int n = 0; n < g->n_nodes; n++)
		g->values[g->nodes[n].output].producer = n;
}

/* ---- clone -------------------------------------------------------------- */

df_err graph_clone(const graph *g, graph **out)
{
	graph *c = NULL;
	if (g->constants_released)
		return df_errf(DF_EINVAL, "graph clone: the graph's constant "
		                          "data was released");
	df_err err = graph_create(&c);
	if (err)
		return err;
	c->opset = g->opset;
	err = graph_grow((void **)&c->values, &c->values_cap, g->n_values,
	                 sizeof *c->values);
	if (!err)
		err = graph_grow((void **)&c->nodes, &c->nodes_cap, g->n_nodes,
		                 sizeof *c->nodes);
	if (err)
		goto out;
	for (int v = 0; v < g->n_values; v++) {
		graph_value *dst = &c->values[v];
		*dst = g->values[v];
		dst->name = NULL;
		dst->constant = NULL;
		c->n_values = v + 1;
		dst->name = strdup(g->values[v].name ? g->values[v].name : "");
		if (!dst->name) {
			err = df_errf(DF_ENOMEM, "graph clone");
			goto out;
		}
		if (g->values[v].constant) {
			err =
			    tensor_clone(g->values[v].constant, &dst->constant);
			if (err)
				goto out;
		}
	}
	for (int n = 0; n < g->n_nodes; n++) {
		c->nodes[n] = g->nodes[n];
		c->nodes[n].name = NULL;
		c->n_nodes = n + 1;
		c->nodes[n].name =
		    strdup(g->nodes[n].name ? g->nodes[n].name : "");
		if (!c->nodes[n].name) {
			err = df_errf(DF_ENOMEM, "graph clone");
			goto out;
		}
	}
	for (int i = 0; i < g->n_inputs && !err; i++)
		err = int_append(&c->inputs, &c->n_inputs, g->inputs[i]);
	for (int i = 0; i < g->n_outputs && !err; i++)
		err = int_append(&c->outputs, &c->n_outputs, g->outputs[i]);
	if (err)
		err = df_errf(DF_ENOMEM, "graph clone");
out:
	if (err) {
		graph_destroy(c);
		return err;
	}
	*out = c;
	return DF_OK;
}

/* ---- costs -------------------------------------------------------------- */

static int64_t out_numel(const graph *g, const graph_node *nd)
{
	const graph_value *o = &g->values[nd->output];
	return graph_dims_numel(o->ndim, o->dims);
}

static bool node_ok(const graph *g, int n)
{
	return g && n >= 0 && n < g->n_nodes;
}

int64_t graph_node_macs(const graph *g, int n)
{
	if (!node_ok(g, n))
		return 0;
	const graph_node *nd = &g->nodes[n];
	const graph_value *x = nd->n_inputs > 0 && nd->inputs[0] >= 0
	                           ? &g->values[nd->inputs[0]]
	                           : NULL;
	const graph_value *w = nd->n_inputs > 1 && nd->inputs[1] >= 0
	                           ? &g->values[nd->inputs[1]]
	                           : NULL;
	if (!x || !w)
		return 0;
	switch (nd->op) {
	case GRAPH_OP_CONV:
		if (w->ndim != 4)
			return 0;
		return graph_sat_mul(
		    out_numel(g, nd),
		    graph_sat_mul(w->dims[1],
		                  graph_sat_mul(w->dims[2], w->dims[3])));
	case GRAPH_OP_GEMM:
		/* canonical: W is [N,K]; before finalize K depends on trans_b
		 */
		if (w->ndim != 2)
			return 0;
		return graph_sat_mul(out_numel(g, nd), nd->attr.gemm.trans_b
		                                           ? w->dims[1]
		                                           : w->dims[0]);
	case GRAPH_OP_MATMUL:
		if (x->ndim < 1)
			return 0;
		return graph_sat_mul(out_numel(g, nd), x->dims[x->ndim - 1]);
	default:
		return 0;
	}
}

int64_t graph_node_weight_bytes(const graph *g, int n)
{
	if (!node_ok(g, n))
		return 0;
	const graph_node *nd = &g->nodes[n];
	int64_t b = 0;
	int deps[GRAPH_MAX_INPUTS + GRAPH_MAX_POSTOPS];
	int k = graph_node_deps(nd, deps);
	for (int i = 0; i < k; i++)
		if (graph_is_const(g, deps[i]))
			b = graph_sat_add(b, (int64_t)tensor_nbytes(
			                         g->values[deps[i]].constant));
	return b;
}

int64_t graph_node_params(const graph *g, int n)
{
	if (!node_ok(g, n))
		return 0;
	const graph_node *nd = &g->nodes[n];
	int64_t p = 0;
	int deps[GRAPH_MAX_INPUTS + GRAPH_MAX_POSTOPS];
	int k = graph_node_deps(nd, deps);
	for (int i = 0; i < k; i++)
		if (graph_is_const(g, deps[i]))
			p = graph_sat_add(
			    p, (int64_t)g->values[deps[i]].constant->numel);
	return p;
}

int64_t graph_node_flops(const graph *g, int n)
{
	if (!node_ok(g, n))
		return 0;
	const graph_node *nd = &g->nodes[n];
	int64_t on = out_numel(g, nd);
	int64_t f = graph_sat_mul(2, graph_node_macs(g, n));
	switch (nd->op) {
	case GRAPH_OP_CONV:
	case GRAPH_OP_GEMM:
		f = graph_sat_add(f, graph_sat_mul(on, 1 + nd->n_postops));
		break;
	case GRAPH_OP_BATCHNORM:
		f = graph_sat_mul(on, 2);
		break;
	case GRAPH_OP_MAXPOOL:
	case GRAPH_OP_AVGPOOL:
		f = graph_sat_mul(on, graph_sat_mul(nd->attr.pool.kernel[0],
		                                    nd->attr.pool.kernel[1]));
		break;
	case GRAPH_OP_GLOBALAVGPOOL: {
		const graph_value *x = &g->values[nd->inputs[0]];
		f = graph_dims_numel(x->ndim, x->dims);
		break;
	}
	case GRAPH_OP_SOFTMAX:
		f = graph_sat_mul(on, 3);
		break;
	case GRAPH_OP_RELU:
	case GRAPH_OP_CLIP:
	case GRAPH_OP_LEAKYRELU:
	case GRAPH_OP_SIGMOID:
	case GRAPH_OP_ADD:
	case GRAPH_OP_MUL:
		f = on;
		break;
	default:
		break;
	}
	return f;
}

int64_t graph_total_macs(const graph *g)
{
	int64_t t = 0;
	for (int n = 0; n < g->n_nodes; n++)
		t = graph_sat_add(t, graph_node_macs(g, n));
	return t;
}

int64_t graph_total_flops(const graph *g)
{
	int64_t t = 0;
	for (int n = 0; n < g->n_nodes; n++)
		t = graph_sat_add(t, graph_node_flops(g, n));
	return t;
}

/* Sum over distinct constants read by nodes, of elements or bytes. */
static int64_t const_total(const graph *g, bool bytes)
{
	bool *seen = calloc((size_t)g->n_values + 1, sizeof *seen);
	int64_t t = 0;
	for (int n = 0; n < g->n_nodes; n++) {
		int deps[GRAPH_MAX_INPUTS + GRAPH_MAX_POSTOPS];
		int k = graph_node_deps(&g->nodes[n], deps);
		for (int i = 0; i < k; i++) {
			int v = deps[i];
			if (!graph_is_const(g, v) || (seen && seen[v]))
				continue;
			if (seen)
				seen[v] = true;
			const tensor *c = g->values[v].constant;
			t = graph_sat_add(t, bytes ? (int64_t)tensor_nbytes(c)
			                           : (int64_t)c->numel);
		}
	}
	free(seen);
	return t;
}

int64_t graph_total_params(const graph *g)
{
	return const_total(g, false);
}

int64_t graph_total_weight_bytes(const graph *g)
{
	return const_total(g, true);
}
