/*
 * graph.c - the graph IR: building, shape inference, constant folding,
 * canonical forms (Conv bias, Gemm, BatchNorm), BatchNorm folding, post-op
 * fusion, topological order, the invariant check and cost counts.
 *
 * Passes mark nodes dead in a keep-mask and compact g->nodes afterwards
 * (nodes_compact() also recomputes every value's producer), and unreferenced
 * values are dropped at the end (values_gc()), so indices held across
 * graph_finalize() are invalid afterwards. Every pass leaves g consistent
 * enough for graph_destroy() if it fails half-way; a graph whose finalize
 * failed must not be used otherwise.
 *
 * Shapes come from untrusted files: every attribute is range-checked before
 * it enters arithmetic, and every inferred shape is checked against
 * TENSOR_MAX_BYTES.
 */
#include "graph.h"

#include <assert.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest kernel, stride, dilation or pad accepted. Far above any CNN, and
 * small enough that no sum or product of two of them overflows int64. */
#define ATTR_MAX ((int64_t)1 << 24)

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
static const struct {
	int min, max;
} op_arity[] = {
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
static_assert(sizeof op_arity / sizeof op_arity[0] == GRAPH_OP_COUNT,
              "op_arity must have one entry per graph_op");

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
static df_err node_err(const graph_node *nd, df_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static df_err node_err(const graph_node *nd, df_err err, const char *fmt, ...)
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
static char *str_fmt(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static char *str_fmt(const char *fmt, ...)
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

static int64_t sat_add(int64_t a, int64_t b)
{
	int64_t r;
	return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
}

static int64_t sat_mul(int64_t a, int64_t b)
{
	int64_t r;
	return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
}

static int64_t dims_numel(int ndim, const int64_t *dims)
{
	int64_t n = 1;
	for (int i = 0; i < ndim; i++)
		n = sat_mul(n, dims[i]);
	return n;
}

static bool dims_equal(int na, const int64_t *a, int nb, const int64_t *b)
{
	if (na != nb)
		return false;
	for (int i = 0; i < na; i++)
		if (a[i] != b[i])
			return false;
	return true;
}

static void shape_str(const graph_value *v, char *buf, size_t len)
{
	tensor_shape_str(v->ndim, v->dims, buf, len);
}

static const char *vname(const graph *g, int v)
{
	if (v < 0 || v >= g->n_values || !g->values[v].name)
		return "?";
	return g->values[v].name;
}

static bool is_const(const graph *g, int v)
{
	return v >= 0 && g->values[v].constant != NULL;
}

static tensor_dtype vdtype(const graph *g, int v)
{
	const tensor *c = g->values[v].constant;
	return c ? c->dtype : TENSOR_F32;
}

/* Grows *arr (of *cap elements of size elem) to hold at least need. */
static df_err grow(void **arr, int *cap, int need, size_t elem)
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

df_err graph_add_value(graph *g, const char *name, int ndim,
                       const int64_t *dims, tensor *constant, int *index)
{
	if (constant) {
		if ((unsigned)constant->dtype >= TENSOR_DTYPE_COUNT ||
		    constant->ndim < 0 || constant->ndim > TENSOR_MAX_DIMS)
			return df_errf(DF_EINVAL,
			               "value '%s': bad constant tensor",
			               name ? name : "?");
		if (dims &&
		    !dims_equal(ndim, dims, constant->ndim, constant->dims))
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
	df_err err = grow((void **)&g->values, &g->values_cap, g->n_values + 1,
	                  sizeof *g->values);
	if (err)
		return err;
	char *copy = name ? strdup(name) : str_fmt("value_%d", g->n_values);
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
static df_err add_value_fmt(graph *g, int ndim, const int64_t *dims,
                            tensor *constant, int *index, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
static df_err add_value_fmt(graph *g, int ndim, const int64_t *dims,
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

static bool value_ok(const graph *g, int v)
{
	return v >= 0 && v < g->n_values;
}

df_err graph_add_node(graph *g, const graph_node *node, const char *name,
                      int *index)
{
	const char *shown = name ? name : "?";
	if ((unsigned)node->op >= GRAPH_OP_COUNT)
		return df_errf(DF_EINVAL, "node '%s': unknown op %d", shown,
		               (int)node->op);
	const char *opn = graph_op_name(node->op);
	if (node->n_inputs < op_arity[node->op].min ||
	    node->n_inputs > op_arity[node->op].max)
		return df_errf(DF_EINVAL,
		               "node '%s' (%s): %d inputs, expected %d..%d",
		               shown, opn, node->n_inputs,
		               op_arity[node->op].min, op_arity[node->op].max);
	for (int i = 0; i < node->n_inputs; i++)
		if (node->inputs[i] < -1 || node->inputs[i] >= g->n_values)
			return df_errf(
			    DF_EINVAL,
			    "node '%s' (%s): input %d is not a value", shown,
			    opn, i);
	if (!value_ok(g, node->output))
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
		        ? !value_ok(g, p->operand)
		        : (p->kind != GRAPH_POSTOP_ACT ||
		           (unsigned)p->act >= GRAPH_ACT_COUNT))
			return df_errf(DF_EINVAL,
			               "node '%s' (%s): bad post-op %d", shown,
			               opn, i);
	}
	df_err err = grow((void **)&g->nodes, &g->nodes_cap, g->n_nodes + 1,
	                  sizeof *g->nodes);
	if (err)
		return err;
	char *copy =
	    name ? strdup(name)
	         : str_fmt("%s_%d", graph_op_name(node->op), g->n_nodes);
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
	if (!value_ok(g, v))
		return df_errf(DF_EINVAL, "graph input %d is not a value", v);
	if (g->values[v].constant || g->values[v].producer >= 0)
		return df_errf(
		    DF_EINVAL,
		    "graph input '%s' is a constant or produced by a node",
		    vname(g, v));
	for (int i = 0; i < g->n_inputs; i++)
		if (g->inputs[i] == v)
			return df_errf(DF_EINVAL,
			               "graph input '%s' listed twice",
			               vname(g, v));
	return int_append(&g->inputs, &g->n_inputs, v)
	           ? df_errf(DF_ENOMEM, "graph inputs")
	           : DF_OK;
}

df_err graph_add_output(graph *g, int v)
{
	if (!value_ok(g, v))
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

enum {
	ROLE_IN = 1,   /* a graph input */
	ROLE_OUT = 2,  /* a graph output */
	ROLE_READ = 4, /* read by some node (graph_check) */
	ROLE_SEEN = 8, /* seen in the inputs list (graph_check) */
};

/* Per value: ROLE_IN if it is a graph input, ROLE_OUT if a graph output,
 * with `extra` zeroed slots for values added later. New array (free()), or
 * NULL when out of memory. Passes use it instead of scanning the lists, so
 * that hostile models with many inputs or outputs cost linear time. */
static uint8_t *value_roles(const graph *g, size_t extra)
{
	uint8_t *r = calloc((size_t)g->n_values + extra + 1, 1);
	if (!r)
		return NULL;
	for (int i = 0; i < g->n_inputs; i++)
		if (g->inputs[i] >= 0 && g->inputs[i] < g->n_values)
			r[g->inputs[i]] |= ROLE_IN;
	for (int i = 0; i < g->n_outputs; i++)
		if (g->outputs[i] >= 0 && g->outputs[i] < g->n_values)
			r[g->outputs[i]] |= ROLE_OUT;
	return r;
}

/* Per value: number of node input slots and post-op operands reading it.
 * New array of n_values ints (free()), or NULL when out of memory. */
static int *slot_refs(const graph *g)
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

/* ---- shape inference ---------------------------------------------------- */

static df_err check_attr(const graph_node *nd, const char *what, int64_t v,
                         int64_t lo)
{
	if (v < lo || v > ATTR_MAX)
		return node_err(nd, DF_EINVAL, "%s %lld outside %lld..%lld",
		                what, (long long)v, (long long)lo,
		                (long long)ATTR_MAX);
	return DF_OK;
}

/* Output size of one spatial dim of a window op. ceil_mode follows PyTorch
 * and ONNX Runtime: a last window that would start in the end padding is
 * dropped. */
static df_err window_out(const graph_node *nd, int64_t in, int64_t k, int64_t s,
                         int64_t d, int64_t pb, int64_t pe, bool ceil_mode,
                         int64_t *out)
{
	int64_t eff = d * (k - 1) + 1;
	int64_t span = in + pb + pe - eff;
	if (span < 0)
		return node_err(
		    nd, DF_EINVAL,
		    "window of %lld (kernel %lld, dilation %lld) exceeds the "
		    "padded input size %lld",
		    (long long)eff, (long long)k, (long long)d,
		    (long long)(in + pb + pe));
	int64_t o = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
	if (ceil_mode && (o - 1) * s >= in + pb)
		o--;
	*out = o;
	return DF_OK;
}

/* Multidirectional (numpy) broadcast of a and b into out. */
static bool broadcast(int na, const int64_t *a, int nb, const int64_t *b,
                      int *nout, int64_t *out)
{
	int n = na > nb ? na : nb;
	for (int i = 0; i < n; i++) {
		int64_t da = i < n - na ? 1 : a[i - (n - na)];
		int64_t db = i < n - nb ? 1 : b[i - (n - nb)];
		if (da != db && da != 1 && db != 1)
			return false;
		out[i] = da == 1 ? db : da;
	}
	*nout = n;
	return true;
}

static df_err normalize_axis(const graph_node *nd, int64_t *axis, int64_t lo,
                             int64_t hi, int64_t add)
{
	int64_t a = *axis;
	if (a < lo || a > hi)
		return node_err(nd, DF_EINVAL, "axis %lld outside %lld..%lld",
		                (long long)a, (long long)lo, (long long)hi);
	if (a < 0)
		a += add;
	*axis = a;
	return DF_OK;
}

static df_err infer_conv(const graph *g, graph_node *nd, int *ondim,
                         int64_t *od)
{
	const graph_value *x = &g->values[nd->inputs[0]];
	const graph_value *w = &g->values[nd->inputs[1]];
	graph_conv_attr *a = &nd->attr.conv;
	char xs[96], ws[96];
	shape_str(x, xs, sizeof xs);
	shape_str(w, ws, sizeof ws);
	if (x->ndim != 4)
		return node_err(
		    nd, DF_ENOTSUP,
		    "only 2-D convolution is supported: input '%s' is %s, "
		    "expected [N,C,H,W]",
		    x->name, xs);
	if (w->ndim != 4)
		return node_err(nd, DF_EINVAL,
		                "weight '%s' is %s, expected rank 4", w->name,
		                ws);
	if (a->group == 0)
		a->group = 1;
	for (int i = 0; i < 2; i++) {
		if (a->kernel[i] == 0)
			a->kernel[i] = w->dims[2 + i];
		if (a->strides[i] == 0)
			a->strides[i] = 1;
		if (a->dilations[i] == 0)
			a->dilations[i] = 1;
	}
	df_err err = check_attr(nd, "group", a->group, 1);
	for (int i = 0; !err && i < 2; i++) {
		err = check_attr(nd, "kernel_shape", a->kernel[i], 1);
		if (!err)
			err = check_attr(nd, "stride", a->strides[i], 1);
		if (!err)
			err = check_attr(nd, "dilation", a->dilations[i], 1);
	}
	for (int i = 0; !err && i < 4; i++)
		err = check_attr(nd, "pad", a->pads[i], 0);
	if (err)
		return err;
	if (a->kernel[0] != w->dims[2] || a->kernel[1] != w->dims[3])
		return node_err(
		    nd, DF_EINVAL,
		    "kernel_shape [%lld,%lld] does not match weight '%s' %s",
		    (long long)a->kernel[0], (long long)a->kernel[1], w->name,
		    ws);
	int64_t c = x->dims[1], m = w->dims[0];
	if (c % a->group || m % a->group || w->dims[1] * a->group != c)
		return node_err(
		    nd, DF_EINVAL,
		    "weight '%s' %s does not fit input '%s' %s with group %lld "
		    "(needs W[1] * group == C and group dividing W[0])",
		    w->name, ws, x->name, xs, (long long)a->group);
	if (nd->n_inputs > 2 && nd->inputs[2] >= 0) {
		const graph_value *b = &g->values[nd->inputs[2]];
		if (b->ndim != 1 || b->dims[0] != m)
			return node_err(nd, DF_EINVAL,
			                "bias '%s' must be [%lld]", b->name,
			                (long long)m);
	}
	od[0] = x->dims[0];
	od[1] = m;
	for (int i = 0; i < 2; i++) {
		err = window_out(nd, x->dims[2 + i], a->kernel[i],
		                 a->strides[i], a->dilations[i], a->pads[i],
		                 a->pads[2 + i], false, &od[2 + i]);
		if (err)
			return err;
	}
	*ondim = 4;
	return DF_OK;
}

static df_err infer_pool(const graph *g, graph_node *nd, int *ondim,
                         int64_t *od)
{
	const graph_value *x = &g->values[nd->inputs[0]];
	graph_pool_attr *a = &nd->attr.pool;
	char xs[96];
	shape_str(x, xs, sizeof xs);
	if (x->ndim != 4)
		return node_err(
		    nd, DF_ENOTSUP,
		    "only 2-D pooling is supported: input '%s' is %s, "
		    "expected [N,C,H,W]",
		    x->name, xs);
	df_err err = DF_OK;
	for (int i = 0; i < 2; i++) {
		if (a->strides[i] == 0)
			a->strides[i] = 1;
		if (a->dilations[i] == 0)
			a->dilations[i] = 1;
	}
	if (nd->op != GRAPH_OP_MAXPOOL &&
	    (a->dilations[0] != 1 || a->dilations[1] != 1))
		return node_err(nd, DF_EINVAL,
		                "dilations are only valid for MaxPool");
	for (int i = 0; !err && i < 2; i++) {
		err = check_attr(nd, "kernel_shape", a->kernel[i], 1);
		if (!err)
			err = check_attr(nd, "stride", a->strides[i], 1);
		if (!err)
			err = check_attr(nd, "dilation", a->dilations[i], 1);
	}
	for (int i = 0; !err && i < 4; i++)
		err = check_attr(nd, "pad", a->pads[i], 0);
	if (err)
		return err;
	od[0] = x->dims[0];
	od[1] = x->dims[1];
	for (int i = 0; i < 2; i++) {
		err = window_out(nd, x->dims[2 + i], a->kernel[i],
		                 a->strides[i], a->dilations[i], a->pads[i],
		                 a->pads[2 + i], a->ceil_mode, &od[2 + i]);
		if (err)
			return err;
	}
	*ondim = 4;
	return DF_OK;
}

static df_err infer_gemm(const graph *g, graph_node *nd, int *ondim,
                         int64_t *od)
{
	const graph_value *a = &g->values[nd->inputs[0]];
	const graph_value *b = &g->values[nd->inputs[1]];
	graph_gemm_attr *at = &nd->attr.gemm;
	char as[96], bs[96];
	shape_str(a, as, sizeof as);
	shape_str(b, bs, sizeof bs);
	if (at->alpha == 0.0f)
		at->alpha = 1.0f;
	if (at->beta == 0.0f)
		at->beta = 1.0f;
	if (!isfinite(at->alpha) || !isfinite(at->beta))
		return node_err(nd, DF_EINVAL, "alpha and beta must be finite");
	if (a->ndim != 2 || b->ndim != 2)
		return node_err(nd, DF_EINVAL,
		                "A '%s' %s and B '%s' %s must be 2-D", a->name,
		                as, b->name, bs);
	int64_t m = at->trans_a ? a->dims[1] : a->dims[0];
	int64_t k = at->trans_a ? a->dims[0] : a->dims[1];
	int64_t kb = at->trans_b ? b->dims[1] : b->dims[0];
	int64_t n = at->trans_b ? b->dims[0] : b->dims[1];
	if (k != kb)
		return node_err(
		    nd, DF_EINVAL,
		    "A '%s' %s and B '%s' %s (transA=%d, transB=%d) disagree "
		    "on K: %lld vs %lld",
		    a->name, as, b->name, bs, at->trans_a, at->trans_b,
		    (long long)k, (long long)kb);
	od[0] = m;
	od[1] = n;
	if (nd->n_inputs > 2 && nd->inputs[2] >= 0) {
		const graph_value *c = &g->values[nd->inputs[2]];
		bool ok = c->ndim <= 2;
		for (int i = 0; ok && i < c->ndim; i++) {
			int64_t want = od[2 - c->ndim + i];
			ok = c->dims[i] == want || c->dims[i] == 1;
		}
		if (!ok) {
			char cs[96];
			shape_str(c, cs, sizeof cs);
			return node_err(
			    nd, DF_EINVAL,
			    "C '%s' %s does not broadcast to [%lld,%lld]",
			    c->name, cs, (long long)m, (long long)n);
		}
	}
	*ondim = 2;
	return DF_OK;
}

static df_err infer_matmul(const graph *g, graph_node *nd, int *ondim,
                           int64_t *od)
{
	const graph_value *a = &g->values[nd->inputs[0]];
	const graph_value *b = &g->values[nd->inputs[1]];
	char as[96], bs[96];
	shape_str(a, as, sizeof as);
	shape_str(b, bs, sizeof bs);
	if (a->ndim < 1 || b->ndim < 1)
		return node_err(nd, DF_EINVAL, "inputs must have rank >= 1");
	int64_t ka = a->dims[a->ndim - 1];
	int64_t kb = b->ndim == 1 ? b->dims[0] : b->dims[b->ndim - 2];
	if (ka != kb)
		return node_err(
		    nd, DF_EINVAL,
		    "A '%s' %s and B '%s' %s disagree on K: %lld vs %lld",
		    a->name, as, b->name, bs, (long long)ka, (long long)kb);
	int nba = a->ndim > 2 ? a->ndim - 2 : 0;
	int nbb = b->ndim > 2 ? b->ndim - 2 : 0;
	int nb = 0;
	if (!broadcast(nba, a->dims, nbb, b->dims, &nb, od))
		return node_err(
		    nd, DF_EINVAL,
		    "batch dims of A '%s' %s and B '%s' %s do not broadcast",
		    a->name, as, b->name, bs);
	int n = nb;
	if (a->ndim >= 2)
		od[n++] = a->dims[a->ndim - 2];
	if (b->ndim >= 2)
		od[n++] = b->dims[b->ndim - 1];
	*ondim = n;
	return DF_OK;
}

static df_err infer_batchnorm(const graph *g, graph_node *nd, int *ondim,
                              int64_t *od)
{
	const graph_value *x = &g->values[nd->inputs[0]];
	if (nd->n_inputs != 3 && nd->n_inputs != 5)
		return node_err(nd, DF_EINVAL, "%d inputs, expected 3 or 5",
		                nd->n_inputs);
	if (x->ndim < 2)
		return node_err(nd, DF_EINVAL,
		                "input '%s' has rank %d, expected >= 2",
		                x->name, x->ndim);
	for (int i = 1; i < nd->n_inputs; i++) {
		const graph_value *p = &g->values[nd->inputs[i]];
		if (p->ndim != 1 || p->dims[0] != x->dims[1]) {
			char ps[96];
			shape_str(p, ps, sizeof ps);
			return node_err(
			    nd, DF_EINVAL,
			    "parameter '%s' is %s, expected [%lld] (channels)",
			    p->name, ps, (long long)x->dims[1]);
		}
	}
	if (!isfinite(nd->attr.bn.epsilon) || nd->attr.bn.epsilon < 0)
		return node_err(nd, DF_EINVAL,
		                "epsilon must be finite and >= 0");
	*ondim = x->ndim;
	memcpy(od, x->dims, sizeof x->dims);
	return DF_OK;
}

static df_err infer_concat(const graph *g, graph_node *nd, int *ondim,
                           int64_t *od)
{
	const graph_value *x0 = &g->values[nd->inputs[0]];
	int r = x0->ndim;
	if (r < 1)
		return node_err(nd, DF_EINVAL, "inputs must have rank >= 1");
	df_err err = normalize_axis(nd, &nd->attr.axis.axis, -r, r - 1, r);
	if (err)
		return err;
	int ax = (int)nd->attr.axis.axis;
	memcpy(od, x0->dims, sizeof x0->dims);
	od[ax] = 0;
	for (int i = 0; i < nd->n_inputs; i++) {
		const graph_value *x = &g->values[nd->inputs[i]];
		bool ok = x->ndim == r &&
		          vdtype(g, nd->inputs[i]) == vdtype(g, nd->inputs[0]);
		for (int d = 0; ok && d < r; d++)
			ok = d == ax || x->dims[d] == x0->dims[d];
		if (!ok) {
			char s0[96], s1[96];
			shape_str(x0, s0, sizeof s0);
			shape_str(x, s1, sizeof s1);
			return node_err(nd, DF_EINVAL,
			                "input '%s' %s does not match '%s' %s "
			                "outside axis %d",
			                x->name, s1, x0->name, s0, ax);
		}
		od[ax] = sat_add(od[ax], x->dims[ax]);
	}
	*ondim = r;
	return DF_OK;
}

static df_err infer_reshape(const graph *g, graph_node *nd, int *ondim,
                            int64_t *od)
{
	const graph_value *x = &g->values[nd->inputs[0]];
	const graph_value *o = &g->values[nd->output];
	int64_t in_numel = dims_numel(x->ndim, x->dims);
	char xs[96];
	shape_str(x, xs, sizeof xs);
	if (nd->n_inputs == 1) {
		/* canonical form: the output value holds the target shape */
		if (dims_numel(o->ndim, o->dims) != in_numel) {
			char os[96];
			shape_str(o, os, sizeof os);
			return node_err(nd, DF_EINVAL,
			                "cannot reshape '%s' %s into %s",
			                x->name, xs, os);
		}
		*ondim = o->ndim;
		memcpy(od, o->dims, sizeof o->dims);
		return DF_OK;
	}
	const graph_value *s = &g->values[nd->inputs[1]];
	const tensor *st = s->constant;
	if (!st)
		return node_err(
		    nd, DF_ENOTSUP,
		    "shape '%s' is computed at run time; only constant "
		    "(or statically known) shapes are supported",
		    s->name);
	if (st->dtype != TENSOR_I64 || st->ndim != 1)
		return node_err(nd, DF_EINVAL,
		                "shape '%s' must be a 1-D int64 tensor",
		                s->name);
	if (st->numel > TENSOR_MAX_DIMS)
		return node_err(nd, DF_ENOTSUP, "target rank %zu exceeds %d",
		                st->numel, TENSOR_MAX_DIMS);
	const int64_t *sd = tensor_i64(st);
	int infer_at = -1;
	int64_t known = 1;
	for (size_t i = 0; i < st->numel; i++) {
		int64_t d = sd[i];
		if (d == 0) {
			if ((int)i >= x->ndim)
				return node_err(nd, DF_EINVAL,
				                "shape[%zu] = 0 copies a dim "
				                "the input %s does not have",
				                i, xs);
			d = x->dims[i];
		} else if (d == -1) {
			if (infer_at >= 0)
				return node_err(nd, DF_EINVAL,
				                "shape has more than one -1");
			infer_at = (int)i;
			continue;
		} else if (d < -1) {
			return node_err(nd, DF_EINVAL,
			                "shape[%zu] = %lld is negative", i,
			                (long long)d);
		}
		od[i] = d;
		known = sat_mul(known, d);
	}
	if (infer_at >= 0) {
		if (known == 0 || in_numel % known)
			return node_err(nd, DF_EINVAL,
			                "cannot infer the -1 dim: %lld "
			                "elements of '%s' %s are "
			                "not a multiple of %lld",
			                (long long)in_numel, x->name, xs,
			                (long long)known);
		od[infer_at] = in_numel / known;
		known = in_numel;
	}
	if (known != in_numel)
		return node_err(
		    nd, DF_EINVAL,
		    "shape has %lld elements, input '%s' %s has %lld",
		    (long long)known, x->name, xs, (long long)in_numel);
	*ondim = (int)st->numel;
	return DF_OK;
}

/* Infers nd's output shape on g (nd may be a copy of a node of g) and
 * normalizes nd's attributes. */
static df_err infer(const graph *g, graph_node *nd, int *ondim, int64_t *od)
{
	if ((unsigned)nd->op >= GRAPH_OP_COUNT)
		return df_errf(DF_EINVAL, "node '%s': unknown op %d", nd->name,
		               (int)nd->op);
	if (nd->n_inputs < op_arity[nd->op].min ||
	    nd->n_inputs > op_arity[nd->op].max)
		return node_err(nd, DF_EINVAL, "%d inputs, expected %d..%d",
		                nd->n_inputs, op_arity[nd->op].min,
		                op_arity[nd->op].max);
	for (int i = 0; i < nd->n_inputs; i++) {
		int v = nd->inputs[i];
		bool optional =
		    (nd->op == GRAPH_OP_CONV || nd->op == GRAPH_OP_GEMM) &&
		    i == 2;
		if (v < -1 || v >= g->n_values || (v == -1 && !optional))
			return node_err(nd, DF_EINVAL,
			                "input %d is missing or invalid", i);
		if (v < 0)
			continue;
		bool any_dtype =
		    nd->op == GRAPH_OP_ADD || nd->op == GRAPH_OP_MUL ||
		    nd->op == GRAPH_OP_CONCAT || nd->op == GRAPH_OP_FLATTEN ||
		    nd->op == GRAPH_OP_RESHAPE;
		if (!any_dtype && vdtype(g, v) != TENSOR_F32)
			return node_err(
			    nd, DF_EINVAL, "input '%s' is %s, expected f32",
			    vname(g, v), tensor_dtype_name(vdtype(g, v)));
	}
	const graph_value *x = &g->values[nd->inputs[0]];
	int64_t d[TENSOR_MAX_DIMS] = {0};
	int n = 0;
	df_err err = DF_OK;

	switch (nd->op) {
	case GRAPH_OP_CONV:
		err = infer_conv(g, nd, &n, d);
		break;
	case GRAPH_OP_MAXPOOL:
	case GRAPH_OP_AVGPOOL:
		err = infer_pool(g, nd, &n, d);
		break;
	case GRAPH_OP_GLOBALAVGPOOL:
		if (x->ndim != 4)
			return node_err(nd, DF_ENOTSUP,
			                "only 4-D [N,C,H,W] input is "
			                "supported, '%s' has rank %d",
			                x->name, x->ndim);
		n = 4;
		d[0] = x->dims[0];
		d[1] = x->dims[1];
		d[2] = d[3] = 1;
		break;
	case GRAPH_OP_GEMM:
		err = infer_gemm(g, nd, &n, d);
		break;
	case GRAPH_OP_MATMUL:
		err = infer_matmul(g, nd, &n, d);
		break;
	case GRAPH_OP_BATCHNORM:
		err = infer_batchnorm(g, nd, &n, d);
		break;
	case GRAPH_OP_CLIP:
		if (isnan(nd->attr.clip.lo) || isnan(nd->attr.clip.hi))
			return node_err(nd, DF_EINVAL, "clip bounds are NaN");
		/* fall through */
	case GRAPH_OP_RELU:
	case GRAPH_OP_LEAKYRELU:
	case GRAPH_OP_SIGMOID:
		n = x->ndim;
		memcpy(d, x->dims, sizeof d);
		break;
	case GRAPH_OP_ADD:
	case GRAPH_OP_MUL: {
		const graph_value *y = &g->values[nd->inputs[1]];
		char xs[96], ys[96];
		shape_str(x, xs, sizeof xs);
		shape_str(y, ys, sizeof ys);
		if (vdtype(g, nd->inputs[0]) != vdtype(g, nd->inputs[1]))
			return node_err(nd, DF_EINVAL,
			                "inputs '%s' and '%s' differ in dtype",
			                x->name, y->name);
		if (!broadcast(x->ndim, x->dims, y->ndim, y->dims, &n, d))
			return node_err(
			    nd, DF_EINVAL,
			    "shapes of '%s' %s and '%s' %s do not broadcast",
			    x->name, xs, y->name, ys);
		break;
	}
	case GRAPH_OP_CONCAT:
		err = infer_concat(g, nd, &n, d);
		break;
	case GRAPH_OP_FLATTEN: {
		int r = x->ndim;
		err = normalize_axis(nd, &nd->attr.axis.axis, -r, r, r);
		if (err)
			return err;
		int ax = (int)nd->attr.axis.axis;
		n = 2;
		d[0] = dims_numel(ax, x->dims);
		d[1] = dims_numel(r - ax, x->dims + ax);
		break;
	}
	case GRAPH_OP_RESHAPE:
		err = infer_reshape(g, nd, &n, d);
		break;
	case GRAPH_OP_SOFTMAX: {
		int r = x->ndim;
		if (r < 1)
			return node_err(nd, DF_EINVAL,
			                "input must have rank >= 1");
		err = normalize_axis(nd, &nd->attr.axis.axis, -r, r - 1, r);
		if (err)
			return err;
		if (nd->attr.axis.axis == r - 1)
			nd->attr.axis.legacy = false;
		n = r;
		memcpy(d, x->dims, sizeof d);
		break;
	}
	default:
		return node_err(nd, DF_EINTERNAL, "no shape rule");
	}
	if (err)
		return err;
	size_t numel = 0;
	err = tensor_shape_numel(n, d, TENSOR_F32, &numel);
	if (err) {
		char os[160];
		tensor_shape_str(n, d, os, sizeof os);
		return node_err(nd, err, "output shape %s is too large", os);
	}
	*ondim = n;
	memcpy(od, d, sizeof d);
	return DF_OK;
}

df_err graph_infer_node(graph *g, int n)
{
	if (n < 0 || n >= g->n_nodes)
		return df_errf(DF_EINVAL, "node %d does not exist", n);
	graph_node *nd = &g->nodes[n];
	int ndim = 0;
	int64_t dims[TENSOR_MAX_DIMS];
	df_err err = infer(g, nd, &ndim, dims);
	if (err)
		return err;
	graph_value *o = &g->values[nd->output];
	o->ndim = ndim;
	memset(o->dims, 0, sizeof o->dims);
	memcpy(o->dims, dims, (size_t)ndim * sizeof dims[0]);
	return DF_OK;
}

/* ---- constant evaluation ------------------------------------------------ */

/* Element strides of a value of shape (n, dims) broadcast into an output of
 * rank on: 0 along broadcast dims. */
static void bcast_strides(int n, const int64_t *dims, int on, int64_t *st)
{
	int64_t s = 1;
	for (int i = on - 1; i >= 0; i--) {
		int j = i - (on - n);
		if (j < 0 || dims[j] == 1) {
			st[i] = 0;
		} else {
			st[i] = s;
		}
		if (j >= 0)
			s *= dims[j];
	}
}

static void eval_binary(const tensor *a, const tensor *b, tensor *o, bool mul)
{
	int64_t sa[TENSOR_MAX_DIMS], sb[TENSOR_MAX_DIMS],
	    idx[TENSOR_MAX_DIMS] = {0};
	bcast_strides(a->ndim, a->dims, o->ndim, sa);
	bcast_strides(b->ndim, b->dims, o->ndim, sb);
	int64_t oa = 0, ob = 0;
	for (size_t i = 0; i < o->numel; i++) {
		if (o->dtype == TENSOR_F32) {
			float x = tensor_f32(a)[oa], y = tensor_f32(b)[ob];
			tensor_f32(o)[i] = mul ? x * y : x + y;
		} else {
			/* shape arithmetic; wrap instead of trapping on
			 * overflow */
			uint64_t x = (uint64_t)tensor_i64(a)[oa],
			         y = (uint64_t)tensor_i64(b)[ob];
			tensor_i64(o)[i] = (int64_t)(mul ? x * y : x + y);
		}
		for (int d = o->ndim - 1; d >= 0; d--) {
			oa += sa[d];
			ob += sb[d];
			if (++idx[d] < o->dims[d])
				break;
			oa -= sa[d] * o->dims[d];
			ob -= sb[d] * o->dims[d];
			idx[d] = 0;
		}
	}
}

static float act_apply(graph_act act, float alpha, float beta, float x)
{
	switch (act) {
	case GRAPH_ACT_RELU:
		return x > 0 ? x : 0;
	case GRAPH_ACT_CLIP:
		return fminf(fmaxf(x, alpha), beta);
	case GRAPH_ACT_LEAKYRELU:
		return x >= 0 ? x : alpha * x;
	case GRAPH_ACT_SIGMOID:
		return 1.0f / (1.0f + expf(-x));
	default:
		return x;
	}
}

/* Evaluates nd (all inputs constant, output shape inferred) into a new
 * tensor; *t stays NULL when the op is not evaluated at build time. */
static df_err eval_node(const graph *g, const graph_node *nd, tensor **t)
{
	const graph_value *ov = &g->values[nd->output];
	const tensor *x = g->values[nd->inputs[0]].constant;
	tensor *o = NULL;
	graph_act act = GRAPH_ACT_RELU;
	float alpha = 0, beta = 0;

	switch (nd->op) {
	case GRAPH_OP_ADD:
	case GRAPH_OP_MUL:
	case GRAPH_OP_CONCAT:
	case GRAPH_OP_RESHAPE:
	case GRAPH_OP_FLATTEN:
	case GRAPH_OP_BATCHNORM:
		break;
	case GRAPH_OP_RELU:
		break;
	case GRAPH_OP_CLIP:
		act = GRAPH_ACT_CLIP;
		alpha = nd->attr.clip.lo;
		beta = nd->attr.clip.hi;
		break;
	case GRAPH_OP_LEAKYRELU:
		act = GRAPH_ACT_LEAKYRELU;
		alpha = nd->attr.leaky.alpha;
		break;
	case GRAPH_OP_SIGMOID:
		act = GRAPH_ACT_SIGMOID;
		break;
	default:
		return DF_OK;
	}
	if (nd->op == GRAPH_OP_BATCHNORM && nd->n_inputs != 3)
		return DF_OK; /* folded once canonical */
	df_err err = tensor_create(x->dtype, ov->ndim, ov->dims, &o);
	if (err)
		return node_err(nd, err, "cannot allocate folded constant");
	switch (nd->op) {
	case GRAPH_OP_ADD:
	case GRAPH_OP_MUL:
		eval_binary(x, g->values[nd->inputs[1]].constant, o,
		            nd->op == GRAPH_OP_MUL);
		break;
	case GRAPH_OP_RESHAPE:
	case GRAPH_OP_FLATTEN:
		memcpy(o->data, x->data, tensor_nbytes(o));
		break;
	case GRAPH_OP_CONCAT: {
		int ax = (int)nd->attr.axis.axis;
		size_t es = tensor_dtype_size(o->dtype);
		size_t outer = (size_t)dims_numel(ax, o->dims);
		size_t inner =
		    (size_t)dims_numel(o->ndim - ax - 1, o->dims + ax + 1);
		char *dst = o->data;
		for (size_t r = 0; r < outer; r++) {
			for (int i = 0; i < nd->n_inputs; i++) {
				const tensor *in =
				    g->values[nd->inputs[i]].constant;
				size_t chunk =
				    (size_t)in->dims[ax] * inner * es;
				memcpy(dst, (const char *)in->data + r * chunk,
				       chunk);
				dst += chunk;
			}
		}
		break;
	}
	case GRAPH_OP_BATCHNORM: {
		const float *sc = tensor_f32(g->values[nd->inputs[1]].constant);
		const float *sh = tensor_f32(g->values[nd->inputs[2]].constant);
		size_t c = (size_t)x->dims[1];
		size_t inner = (size_t)dims_numel(x->ndim - 2, x->dims + 2);
		for (size_t i = 0; i < o->numel; i++) {
			size_t ch = inner ? (i / inner) % c : 0;
			tensor_f32(o)[i] = tensor_f32(x)[i] * sc[ch] + sh[ch];
		}
		break;
	}
	default:
		for (size_t i = 0; i < o->numel; i++)
			tensor_f32(o)[i] =
			    act_apply(act, alpha, beta, tensor_f32(x)[i]);
		break;
	}
	*t = o;
	return DF_OK;
}

static bool all_inputs_const(const graph *g, const graph_node *nd)
{
	for (int i = 0; i < nd->n_inputs; i++)
		if (nd->inputs[i] >= 0 && !is_const(g, nd->inputs[i]))
			return false;
	return nd->n_inputs > 0;
}

/* Removes the nodes whose keep[] is false and recomputes all producers. */
static void nodes_compact(graph *g, const bool *keep)
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

/* Evaluates node n if it can be; on success its output value holds the
 * constant and has no producer, and *folded is set (the node itself is
 * left for the caller to remove). */
static df_err fold_one(graph *g, int n, bool *folded)
{
	graph_node *nd = &g->nodes[n];
	*folded = false;
	if (nd->n_postops || !all_inputs_const(g, nd))
		return DF_OK;
	tensor *t = NULL;
	df_err err = eval_node(g, nd, &t);
	if (err || !t)
		return err;
	graph_value *ov = &g->values[nd->output];
	ov->constant = t;
	ov->producer = -1;
	*folded = true;
	return DF_OK;
}

df_err graph_fold_node(graph *g, int n, bool *folded)
{
	if (n < 0 || n >= g->n_nodes)
		return df_errf(DF_EINVAL, "node %d does not exist", n);
	bool f = false;
	df_err err = fold_one(g, n, &f);
	if (err)
		return err;
	if (f && n == g->n_nodes - 1) {
		/* the importer's case: constant time, nothing moves */
		free(g->nodes[n].name);
		g->n_nodes--;
	} else if (f) {
		bool *keep = malloc((size_t)g->n_nodes * sizeof *keep);
		if (!keep) {
			/* undo, so that g stays consistent */
			graph_value *ov = &g->values[g->nodes[n].output];
			tensor_destroy(ov->constant);
			ov->constant = NULL;
			ov->producer = n;
			return df_errf(DF_ENOMEM, "cannot fold node");
		}
		for (int i = 0; i < g->n_nodes; i++)
			keep[i] = i != n;
		nodes_compact(g, keep);
		free(keep);
	}
	*folded = f;
	return DF_OK;
}

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

/* Value indices node nd depends on (inputs and post-op operands). */
static int node_deps(const graph_node *nd, int *deps)
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
		int k = node_deps(&g->nodes[n], deps);
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
		int k = node_deps(&g->nodes[n], deps);
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
				err = node_err(
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
		if (nd->n_inputs < op_arity[nd->op].min ||
		    nd->n_inputs > op_arity[nd->op].max)
			return node_err(nd, DF_EINVAL,
			                "%d inputs, expected %d..%d",
			                nd->n_inputs, op_arity[nd->op].min,
			                op_arity[nd->op].max);
		for (int i = 0; i < nd->n_inputs; i++)
			if (nd->inputs[i] < -1 || nd->inputs[i] >= g->n_values)
				return node_err(nd, DF_EINVAL,
				                "input %d is not a value", i);
		if (nd->n_postops < 0 || nd->n_postops > GRAPH_MAX_POSTOPS)
			return node_err(nd, DF_EINVAL, "%d post-ops",
			                nd->n_postops);
		for (int i = 0; i < nd->n_postops; i++)
			if (nd->postops[i].kind == GRAPH_POSTOP_ADD &&
			    !value_ok(g, nd->postops[i].operand))
				return node_err(
				    nd, DF_EINVAL,
				    "post-op %d operand is not a value", i);
		if (!value_ok(g, nd->output) || g->values[nd->output].constant)
			return node_err(nd, DF_EINVAL,
			                "output is not a computed value");
		graph_value *o = &g->values[nd->output];
		if (o->producer >= 0)
			return node_err(nd, DF_EINVAL,
			                "output '%s' is also produced by '%s'",
			                o->name, g->nodes[o->producer].name);
		o->producer = n;
	}
	for (int i = 0; i < g->n_inputs; i++) {
		int v = g->inputs[i];
		if (!value_ok(g, v) || g->values[v].constant ||
		    g->values[v].producer >= 0)
			return df_errf(
			    DF_EINVAL,
			    "graph input %d ('%s') is not an unproduced, "
			    "non-constant value",
			    i, value_ok(g, v) ? vname(g, v) : "?");
		size_t numel = 0;
		df_err err = tensor_shape_numel(
		    g->values[v].ndim, g->values[v].dims, TENSOR_F32, &numel);
		if (err)
			return df_errf(err, "graph input '%s': shape too large",
			               vname(g, v));
	}
	for (int i = 0; i < g->n_outputs; i++)
		if (!value_ok(g, g->outputs[i]))
			return df_errf(DF_EINVAL,
			               "graph output %d is not a value", i);
	/* every non-constant input must come from somewhere */
	uint8_t *role = value_roles(g, 0);
	if (!role)
		return df_errf(DF_ENOMEM, "graph check");
	df_err err = DF_OK;
	for (int n = 0; n < g->n_nodes && !err; n++) {
		const graph_node *nd = &g->nodes[n];
		int deps[GRAPH_MAX_INPUTS + GRAPH_MAX_POSTOPS];
		int k = node_deps(nd, deps);
		for (int i = 0; i < k && !err; i++) {
			int v = deps[i];
			if (!g->values[v].constant &&
			    g->values[v].producer < 0 && !(role[v] & ROLE_IN))
				err = node_err(
				    nd, DF_EINVAL,
				    "input '%s' is neither a graph "
				    "input, a constant nor produced by "
				    "a node",
				    vname(g, v));
		}
	}
	free(role);
	return err;
}

/* Infers every node's shape in order and folds the nodes that can be
 * evaluated now. Nodes must be in topological order. */
static df_err infer_fold_all(graph *g)
{
	bool *keep = malloc(((size_t)g->n_nodes + 1) * sizeof *keep);
	if (!keep)
		return df_errf(DF_ENOMEM, "shape inference");
	df_err err = DF_OK;
	bool any = false;
	for (int n = 0; n < g->n_nodes && !err; n++) {
		bool folded = false;
		err = graph_infer_node(g, n);
		if (!err)
			err = fold_one(g, n, &folded);
		keep[n] = !folded;
		any |= folded;
	}
	if (any) {
		/* on error, keep[] stops short: drop exactly the folded nodes
		 */
		for (int n = 0; n < g->n_nodes; n++)
			keep[n] = !g->values[g->nodes[n].output].constant;
		nodes_compact(g, keep);
	}
	free(keep);
	return err;
}

/* New constant value (f32, zero-filled) named "<node>.<what>". */
static df_err new_const(graph *g, const graph_node *nd, const char *what,
                        int ndim, const int64_t *dims, int *index, float **data)
{
	tensor *t = NULL;
	df_err err = tensor_create(TENSOR_F32, ndim, dims, &t);
	if (err)
		return node_err(nd, err, "cannot allocate %s", what);
	err = add_value_fmt(g, 0, NULL, t, index, "%s.%s", nd->name, what);
	if (err) {
		tensor_destroy(t);
		return err;
	}
	*data = tensor_f32(t);
	return DF_OK;
}

static df_err require_const_f32(const graph *g, const graph_node *nd, int slot,
                                const char *what)
{
	int v = nd->inputs[slot];
	if (!is_const(g, v))
		return node_err(
		    nd, DF_ENOTSUP,
		    "%s '%s' must be a constant (initializer); computed "
		    "%s is not supported",
		    what, vname(g, v), what);
	if (vdtype(g, v) != TENSOR_F32)
		return node_err(nd, DF_EINVAL, "%s '%s' must be f32", what,
		                vname(g, v));
	return DF_OK;
}

/* Node list under construction during canonicalize(). */
typedef struct node_list {
	graph_node *v;
	int n, cap;
	char **owned; /* names made for derived nodes */
	int n_owned, cap_owned;
} node_list;

static df_err node_list_push(node_list *l, const graph_node *nd)
{
	df_err err = grow((void **)&l->v, &l->cap, l->n + 1, sizeof *l->v);
	if (err)
		return err;
	l->v[l->n++] = *nd;
	return DF_OK;
}

/* Appends a node derived from `from` (op, inputs, output) named
 * "<from>/<suffix>", or carrying from's own name when suffix is NULL (each
 * original name must end up on exactly one node). */
static df_err push_derived(node_list *l, const graph_node *from, graph_op op,
                           int n_inputs, const int *inputs, int output,
                           const char *suffix)
{
	graph_node nd;
	memset(&nd, 0, sizeof nd);
	nd.op = op;
	nd.n_inputs = n_inputs;
	for (int i = 0; i < GRAPH_MAX_INPUTS; i++)
		nd.inputs[i] = i < n_inputs ? inputs[i] : -1;
	nd.output = output;
	if (!suffix) {
		nd.name = from->name;
		return node_list_push(l, &nd);
	}
	df_err err = grow((void **)&l->owned, &l->cap_owned, l->n_owned + 1,
	                  sizeof *l->owned);
	if (err)
		return err;
	nd.name = str_fmt("%s/%s", from->name, suffix);
	if (!nd.name)
		return df_errf(DF_ENOMEM, "node name");
	l->owned[l->n_owned++] = nd.name;
	return node_list_push(l, &nd);
}

/* New intermediate value with the shape of `like`, named "<node>.<what>". */
static df_err new_temp(graph *g, const graph_node *nd, int like,
                       const char *what, int *index)
{
	graph_value *v = &g->values[like];
	int64_t dims[TENSOR_MAX_DIMS];
	memcpy(dims, v->dims, sizeof dims);
	return add_value_fmt(g, v->ndim, dims, NULL, index, "%s.%s", nd->name,
	                     what);
}

static df_err canon_conv(graph *g, graph_node *nd)
{
	df_err err = require_const_f32(g, nd, 1, "weight");
	if (err)
		return err;
	if (nd->n_inputs < 3 || nd->inputs[2] < 0) {
		int64_t m = g->values[nd->inputs[1]].dims[0];
		float *b = NULL;
		int bv = -1;
		err = new_const(g, nd, "bias", 1, &m, &bv, &b);
		if (err)
			return err;
		nd->inputs[2] = bv;
		nd->n_inputs = 3;
	}
	return require_const_f32(g, nd, 2, "bias");
}

static df_err canon_batchnorm(graph *g, graph_node *nd)
{
	if (nd->n_inputs == 3) {
		df_err err = require_const_f32(g, nd, 1, "scale");
		return err ? err : require_const_f32(g, nd, 2, "shift");
	}
	static const char *const what[] = {"", "scale (gamma)", "B (beta)",
	                                   "mean", "var"};
	for (int i = 1; i < 5; i++) {
		df_err err = require_const_f32(g, nd, i, what[i]);
		if (err)
			return err;
	}
	int64_t c = g->values[nd->inputs[1]].dims[0];
	const float *gamma = tensor_f32(g->values[nd->inputs[1]].constant);
	const float *beta = tensor_f32(g->values[nd->inputs[2]].constant);
	const float *mean = tensor_f32(g->values[nd->inputs[3]].constant);
	const float *var = tensor_f32(g->values[nd->inputs[4]].constant);
	for (int64_t i = 0; i < c; i++)
		if (!((double)var[i] + nd->attr.bn.epsilon > 0))
			return node_err(
			    nd, DF_EINVAL,
			    "var[%lld] + epsilon = %g is not positive",
			    (long long)i, (double)var[i] + nd->attr.bn.epsilon);
	float *sc = NULL, *sh = NULL;
	int vs = -1, vh = -1;
	df_err err = new_const(g, nd, "scale", 1, &c, &vs, &sc);
	if (!err)
		err = new_const(g, nd, "shift", 1, &c, &vh, &sh);
	if (err)
		return err;
	for (int64_t i = 0; i < c; i++) {
		double s =
		    gamma[i] / sqrt((double)var[i] + nd->attr.bn.epsilon);
		sc[i] = (float)s;
		sh[i] = (float)(beta[i] - mean[i] * s);
	}
	nd->inputs[1] = vs;
	nd->inputs[2] = vh;
	nd->inputs[3] = nd->inputs[4] = -1;
	nd->n_inputs = 3;
	return DF_OK;
}

/* W [N,K] = alpha * (trans_b ? B : B^T) as a new constant. */
static df_err gemm_weight(graph *g, const graph_node *nd, int b, bool trans_b,
                          float alpha, int *wv)
{
	const tensor *bt = g->values[b].constant;
	int64_t r = bt->dims[0], c = bt->dims[1];
	int64_t wd[2] = {trans_b ? r : c, trans_b ? c : r};
	float *w = NULL;
	df_err err = new_const(g, nd, "weight", 2, wd, wv, &w);
	if (err)
		return err;
	const float *src = tensor_f32(bt);
	for (int64_t i = 0; i < r; i++)
		for (int64_t j = 0; j < c; j++) {
			float x = alpha * src[i * c + j];
			if (trans_b)
				w[i * c + j] = x;
			else
				w[j * r + i] = x;
		}
	return DF_OK;
}

/* True if constant-or-computed C of shape (nd, dims) broadcasts along rows
 * of an [M,N] result, i.e. is one value per column or a single value. */
static bool row_broadcast(const graph_value *c, int64_t n)
{
	if (c->ndim == 0)
		return true;
	if (c->ndim == 2 && c->dims[0] != 1)
		return false;
	int64_t last = c->dims[c->ndim - 1];
	return last == n || last == 1;
}

/* Appends the nodes that add beta * C to `cur` and write `out`. */
static df_err gemm_add_c(graph *g, const graph_node *nd, node_list *l, int cur,
                         int c, float beta, int out)
{
	int operand = c;
	if (is_const(g, c)) {
		const tensor *ct = g->values[c].constant;
		float *d = NULL;
		df_err err =
		    new_const(g, nd, "C", ct->ndim, ct->dims, &operand, &d);
		if (err)
			return err;
		for (size_t i = 0; i < ct->numel; i++)
			d[i] = beta * tensor_f32(g->values[c].constant)[i];
	} else if (beta != 1.0f) {
		float *d = NULL;
		int bv = -1;
		df_err err = new_const(g, nd, "beta", 0, NULL, &bv, &d);
		if (!err)
			err = new_temp(g, nd, c, "beta_C", &operand);
		if (err)
			return err;
		d[0] = beta;
		int in[2] = {c, bv};
		err = push_derived(l, nd, GRAPH_OP_MUL, 2, in, operand,
		                   "mul_beta");
		if (err)
			return err;
	}
	int in[2] = {cur, operand};
	return push_derived(l, nd, GRAPH_OP_ADD, 2, in, out, "add_C");
}

static df_err canon_gemm(graph *g, graph_node *nd, node_list *l)
{
	graph_gemm_attr at = nd->attr.gemm;
	int a = nd->inputs[0], b = nd->inputs[1];
	int c = nd->n_inputs > 2 ? nd->inputs[2] : -1;
	int out = nd->output;
	int64_t n = g->values[out].dims[1];
	df_err err;

	if (is_const(g, b)) {
		const graph_value *cv = c >= 0 ? &g->values[c] : NULL;
		if (at.trans_b && at.alpha == 1.0f && at.beta == 1.0f && cv &&
		    cv->constant && cv->ndim == 1 && cv->dims[0] == n)
			return node_list_push(l, nd); /* already canonical */
		bool c_in_bias =
		    c < 0 || (cv->constant && row_broadcast(cv, n));
		int wv = -1, bv = -1;
		float *bias = NULL;
		err = gemm_weight(g, nd, b, at.trans_b, at.alpha, &wv);
		if (!err)
			err = new_const(g, nd, "bias", 1, &n, &bv, &bias);
		if (err)
			return err;
		if (c >= 0 && c_in_bias) {
			const tensor *ct = g->values[c].constant;
			bool per_col = ct->ndim > 0 &&
			               ct->dims[ct->ndim - 1] == n && n != 1;
			for (int64_t j = 0; j < n; j++)
				bias[j] =
				    at.beta * tensor_f32(ct)[per_col ? j : 0];
		}
		int gemm_out = out;
		if (!c_in_bias) {
			err = new_temp(g, nd, out, "gemm", &gemm_out);
			if (err)
				return err;
		}
		graph_node gn = *nd;
		gn.n_inputs = 3;
		gn.inputs[0] = a;
		gn.inputs[1] = wv;
		gn.inputs[2] = bv;
		gn.output = gemm_out;
		gn.attr.gemm = (graph_gemm_attr){1.0f, 1.0f, at.trans_a, true};
		err = node_list_push(l, &gn);
		if (err)
			return err;
		return c_in_bias
		           ? DF_OK
		           : gemm_add_c(g, nd, l, gemm_out, c, at.beta, out);
	}
	/* computed B: MatMul, then alpha, then C */
	if (at.trans_a || at.trans_b)
		return node_err(
		    nd, DF_ENOTSUP,
		    "transA/transB with a computed B '%s' are not supported",
		    vname(g, b));
	bool has_alpha = at.alpha != 1.0f;
	int cur = -1;
	err = (has_alpha || c >= 0) ? new_temp(g, nd, out, "matmul", &cur)
	                            : DF_OK;
	if (err)
		return err;
	int in[2] = {a, b};
	err = push_derived(l, nd, GRAPH_OP_MATMUL, 2, in, cur >= 0 ? cur : out,
	                   NULL);
	if (err || cur < 0)
		return err;
	if (has_alpha) {
		float *d = NULL;
		int av = -1, next = out;
		err = new_const(g, nd, "alpha", 0, NULL, &av, &d);
		if (!err && c >= 0)
			err = new_temp(g, nd, out, "alpha_AB", &next);
		if (err)
			return err;
		d[0] = at.alpha;
		int min[2] = {cur, av};
		err = push_derived(l, nd, GRAPH_OP_MUL, 2, min, next,
		                   "mul_alpha");
		if (err || c < 0)
			return err;
		cur = next;
	}
	return gemm_add_c(g, nd, l, cur, c, at.beta, out);
}

static df_err canon_matmul(graph *g, graph_node *nd, node_list *l)
{
	int a = nd->inputs[0], b = nd->inputs[1];
	const graph_value *bv = &g->values[b];
	if (g->values[a].ndim != 2 || bv->ndim != 2 || !bv->constant)
		return node_list_push(l, nd);
	int wv = -1, biasv = -1;
	float *bias = NULL;
	int64_t n = bv->dims[1];
	df_err err = gemm_weight(g, nd, b, false, 1.0f, &wv);
	if (!err)
		err = new_const(g, nd, "bias", 1, &n, &biasv, &bias);
	if (err)
		return err;
	graph_node gn = *nd;
	gn.op = GRAPH_OP_GEMM;
	gn.n_inputs = 3;
	gn.inputs[1] = wv;
	gn.inputs[2] = biasv;
	gn.attr.gemm = (graph_gemm_attr){1.0f, 1.0f, false, true};
	return node_list_push(l, &gn);
}

/*
 * Brings every node into the canonical form of graph.h: Conv bias present,
 * BatchNorm as scale/shift, Gemm as {A, W[N,K], bias[N]} (or MatMul + Mul +
 * Add), MatMul with a constant 2-D B as Gemm, Reshape with one input.
 * Shapes must be inferred. New intermediate values get their shapes here;
 * the caller re-runs inference afterwards.
 */
static df_err canonicalize(graph *g)
{
	node_list l = {0};
	df_err err = DF_OK;
	int done = 0;
	for (; done < g->n_nodes && !err; done++) {
		graph_node nd = g->nodes[done];
		switch (nd.op) {
		case GRAPH_OP_CONV:
			err = canon_conv(g, &nd);
			if (!err)
				err = node_list_push(&l, &nd);
			break;
		case GRAPH_OP_BATCHNORM:
			err = canon_batchnorm(g, &nd);
			if (!err)
				err = node_list_push(&l, &nd);
			break;
		case GRAPH_OP_GEMM:
			err = canon_gemm(g, &nd, &l);
			break;
		case GRAPH_OP_MATMUL:
			err = canon_matmul(g, &nd, &l);
			break;
		case GRAPH_OP_RESHAPE:
			nd.n_inputs = 1;
			nd.inputs[1] = -1;
			err = node_list_push(&l, &nd);
			break;
		default:
			err = node_list_push(&l, &nd);
			break;
		}
		if (err)
			break;
	}
	if (err) {
		/* keep g intact: drop the derived nodes, keep the originals */
		for (int i = 0; i < l.n_owned; i++)
			free(l.owned[i]);
		free(l.owned);
		free(l.v);
		for (int v = 0; v < g->n_values; v++)
			g->values[v].producer = -1;
		for (int n = 0; n < g->n_nodes; n++)
			g->values[g->nodes[n].output].producer = n;
		return err;
	}
	free(l.owned);
	free(g->nodes);
	g->nodes = l.v;
	g->n_nodes = l.n;
	g->nodes_cap = l.cap;
	for (int v = 0; v < g->n_values; v++)
		g->values[v].producer = -1;
	for (int n = 0; n < g->n_nodes; n++)
		g->values[g->nodes[n].output].producer = n;
	return DF_OK;
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
	err =
	    add_value_fmt(g, 0, NULL, t, &nv, "%s.%d", g->values[v].name, slot);
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
	int *refs = slot_refs(g);
	bool *keep = malloc(((size_t)g->n_nodes + 1) * sizeof *keep);
	uint8_t *role = value_roles(g, 0);
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
		if (p < 0 || refs[x] != 1 || (role[x] & ROLE_OUT))
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
	nodes_compact(g, keep);
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
	int *refs = slot_refs(g);
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
				    !dims_equal(xv->ndim, xv->dims, o->ndim,
				                o->dims) ||
				    !dims_equal(yv->ndim, yv->dims, o->ndim,
				                o->dims))
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
	nodes_compact(g, keep);
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
		int k = node_deps(nd, deps);
		for (int i = 0; i < k; i++)
			need[deps[i]] = true;
	}
	nodes_compact(g, keep);
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
		int k = node_deps(nd, deps);
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

/* ---- invariants --------------------------------------------------------- */

static df_err check_const_shape(const graph *g, const graph_node *nd, int slot,
                                int ndim, const int64_t *dims, const char *what)
{
	int v = nd->inputs[slot];
	if (!is_const(g, v) || vdtype(g, v) != TENSOR_F32)
		return node_err(nd, DF_EINVAL, "%s '%s' is not an f32 constant",
		                what, vname(g, v));
	if (dims &&
	    !dims_equal(g->values[v].ndim, g->values[v].dims, ndim, dims))
		return node_err(nd, DF_EINVAL, "%s '%s' has the wrong shape",
		                what, vname(g, v));
	return DF_OK;
}

/* True if the attributes that op of a and b uses are equal (field by
 * field: the union's padding is not compared). */
static bool attr_equal(const graph_node *a, const graph_node *b)
{
	const graph_conv_attr *ca = &a->attr.conv, *cb = &b->attr.conv;
	const graph_pool_attr *pa = &a->attr.pool, *pb = &b->attr.pool;
	switch (a->op) {
	case GRAPH_OP_CONV:
		return !memcmp(ca->kernel, cb->kernel, sizeof ca->kernel) &&
		       !memcmp(ca->strides, cb->strides, sizeof ca->strides) &&
		       !memcmp(ca->dilations, cb->dilations,
		               sizeof ca->dilations) &&
		       !memcmp(ca->pads, cb->pads, sizeof ca->pads) &&
		       ca->group == cb->group;
	case GRAPH_OP_MAXPOOL:
	case GRAPH_OP_AVGPOOL:
		return !memcmp(pa->kernel, pb->kernel, sizeof pa->kernel) &&
		       !memcmp(pa->strides, pb->strides, sizeof pa->strides) &&
		       !memcmp(pa->dilations, pb->dilations,
		               sizeof pa->dilations) &&
		       !memcmp(pa->pads, pb->pads, sizeof pa->pads) &&
		       pa->ceil_mode == pb->ceil_mode &&
		       pa->count_include_pad == pb->count_include_pad;
	case GRAPH_OP_GEMM:
		return a->attr.gemm.alpha == b->attr.gemm.alpha &&
		       a->attr.gemm.beta == b->attr.gemm.beta &&
		       a->attr.gemm.trans_a == b->attr.gemm.trans_a &&
		       a->attr.gemm.trans_b == b->attr.gemm.trans_b;
	case GRAPH_OP_CONCAT:
	case GRAPH_OP_FLATTEN:
	case GRAPH_OP_SOFTMAX:
		return a->attr.axis.axis == b->attr.axis.axis &&
		       a->attr.axis.legacy == b->attr.axis.legacy;
	default:
		return true;
	}
}

static df_err check_node(const graph *g, int n, const uint8_t *role)
{
	const graph_node *nd = &g->nodes[n];
	if ((unsigned)nd->op >= GRAPH_OP_COUNT || !nd->name)
		return df_errf(DF_EINVAL, "node %d: unknown op or no name", n);
	static const int canon_arity[GRAPH_OP_COUNT] = {
	    [GRAPH_OP_CONV] = 3,    [GRAPH_OP_GEMM] = 3,
	    [GRAPH_OP_MATMUL] = 2,  [GRAPH_OP_BATCHNORM] = 3,
	    [GRAPH_OP_ADD] = 2,     [GRAPH_OP_MUL] = 2,
	    [GRAPH_OP_CONCAT] = -1,
	};
	int want = canon_arity[nd->op] ? canon_arity[nd->op] : 1;
	if (want > 0 ? nd->n_inputs != want
	             : (nd->n_inputs < 1 || nd->n_inputs > GRAPH_MAX_INPUTS))
		return node_err(nd, DF_EINVAL, "%d inputs in canonical form",
		                nd->n_inputs);
	int deps[GRAPH_MAX_INPUTS + GRAPH_MAX_POSTOPS];
	for (int i = 0; i < nd->n_inputs; i++)
		if (!value_ok(g, nd->inputs[i]))
			return node_err(nd, DF_EINVAL,
			                "input %d is absent or invalid", i);
	if (nd->n_postops < 0 || nd->n_postops > GRAPH_MAX_POSTOPS ||
	    (nd->n_postops && nd->op != GRAPH_OP_CONV &&
	     nd->op != GRAPH_OP_GEMM))
		return node_err(nd, DF_EINVAL,
		                "post-ops on a node that cannot have them");
	if (!value_ok(g, nd->output))
		return node_err(nd, DF_EINVAL, "output is not a value");
	const graph_value *o = &g->values[nd->output];
	if (o->constant || o->producer != n)
		return node_err(nd, DF_EINVAL,
		                "output '%s' is constant or has producer %d",
		                o->name, o->producer);
	if (!(role[nd->output] & (ROLE_READ | ROLE_OUT)))
		return node_err(nd, DF_EINVAL,
		                "output '%s' is never used (dead node)",
		                o->name);
	for (int i = 0; i < nd->n_postops; i++) {
		const graph_postop *p = &nd->postops[i];
		if (p->kind == GRAPH_POSTOP_ACT) {
			if ((unsigned)p->act >= GRAPH_ACT_COUNT)
				return node_err(nd, DF_EINVAL,
				                "post-op %d: bad activation",
				                i);
		} else if (p->kind == GRAPH_POSTOP_ADD) {
			if (!value_ok(g, p->operand) ||
			    p->operand == nd->output ||
			    !dims_equal(g->values[p->operand].ndim,
			                g->values[p->operand].dims, o->ndim,
			                o->dims) ||
			    vdtype(g, p->operand) != TENSOR_F32)
				return node_err(nd, DF_EINVAL,
				                "post-op %d: Add operand is "
				                "not an f32 value "
				                "of the output's shape",
				                i);
		} else {
			return node_err(nd, DF_EINVAL, "post-op %d: bad kind",
			                i);
		}
	}
	int k = node_deps(nd, deps);
	for (int i = 0; i < k; i++) {
		const graph_value *v = &g->values[deps[i]];
		if (!v->constant && !(role[deps[i]] & ROLE_IN) &&
		    (v->producer < 0 || v->producer >= n))
			return node_err(
			    nd, DF_EINVAL,
			    "input '%s' is not produced before this node",
			    v->name);
	}
	/* shapes agree with inference, attributes are normalized */
	graph_node copy = *nd;
	int ndim = 0;
	int64_t dims[TENSOR_MAX_DIMS];
	df_err err = infer(g, &copy, &ndim, dims);
	if (err)
		return err;
	if (!dims_equal(ndim, dims, o->ndim, o->dims) || !attr_equal(&copy, nd))
		return node_err(
		    nd, DF_EINVAL,
		    "output shape or attributes disagree with inference");
	switch (nd->op) {
	case GRAPH_OP_CONV: {
		int64_t m = g->values[nd->inputs[1]].dims[0];
		err = check_const_shape(g, nd, 1, 0, NULL, "weight");
		if (!err)
			err = check_const_shape(g, nd, 2, 1, &m, "bias");
		break;
	}
	case GRAPH_OP_GEMM: {
		const graph_gemm_attr *a = &nd->attr.gemm;
		if (!a->trans_b || a->alpha != 1.0f || a->beta != 1.0f)
			return node_err(nd, DF_EINVAL,
			                "not canonical (trans_b, alpha, beta)");
		int64_t nn = o->dims[1];
		err = check_const_shape(g, nd, 1, 0, NULL, "weight");
		if (!err)
			err = check_const_shape(g, nd, 2, 1, &nn, "bias");
		break;
	}
	case GRAPH_OP_BATCHNORM: {
		int64_t c = o->dims[1];
		err = check_const_shape(g, nd, 1, 1, &c, "scale");
		if (!err)
			err = check_const_shape(g, nd, 2, 1, &c, "shift");
		break;
	}
	default:
		break;
	}
	return err;
}

df_err graph_check(const graph *g)
{
	if (!g || g->n_values < 0 || g->n_nodes < 0 || g->n_inputs < 0 ||
	    g->n_outputs < 0 || (g->n_values && !g->values) ||
	    (g->n_nodes && !g->nodes) || (g->n_inputs && !g->inputs) ||
	    (g->n_outputs && !g->outputs))
		return df_errf(DF_EINVAL, "graph arrays are inconsistent");
	df_err err = DF_OK;
	uint8_t *role = value_roles(g, 0);
	if (!role)
		return df_errf(DF_ENOMEM, "graph check");
	for (int n = 0; n < g->n_nodes; n++) {
		const graph_node *nd = &g->nodes[n];
		if (nd->n_inputs < 0 || nd->n_inputs > GRAPH_MAX_INPUTS ||
		    nd->n_postops < 0 || nd->n_postops > GRAPH_MAX_POSTOPS) {
			err = df_errf(DF_EINVAL,
			              "node %d: bad input or post-op count", n);
			goto out;
		}
		int deps[GRAPH_MAX_INPUTS + GRAPH_MAX_POSTOPS];
		int k = node_deps(nd, deps);
		for (int i = 0; i < k; i++)
			if (value_ok(g, deps[i]))
				role[deps[i]] |= ROLE_READ;
	}
	for (int i = 0; i < g->n_inputs; i++) {
		int v = g->inputs[i];
		if (!value_ok(g, v) || g->values[v].constant ||
		    g->values[v].producer >= 0) {
			err = df_errf(
			    DF_EINVAL,
			    "graph input %d is not a free computed value", i);
			goto out;
		}
		if (role[v] & ROLE_SEEN) {
			err =
			    df_errf(DF_EINVAL, "graph input '%s' listed twice",
			            vname(g, v));
			goto out;
		}
		role[v] |= ROLE_SEEN;
	}
	for (int i = 0; i < g->n_outputs; i++) {
		int v = g->outputs[i];
		if (!value_ok(g, v) || g->values[v].producer < 0) {
			err = df_errf(
			    DF_ENOTSUP,
			    "graph output '%s' is not computed by any node (a "
			    "constant or a graph input)",
			    value_ok(g, v) ? vname(g, v) : "?");
			goto out;
		}
	}
	for (int v = 0; v < g->n_values; v++) {
		const graph_value *val = &g->values[v];
		if (!val->name || val->ndim < 0 ||
		    val->ndim > TENSOR_MAX_DIMS) {
			err = df_errf(DF_EINVAL,
			              "value %d: no name or bad rank", v);
			goto out;
		}
		for (int i = 0; i < val->ndim; i++)
			if (val->dims[i] < 0) {
				err = df_errf(DF_EINVAL,
				              "value '%s': negative dim",
				              val->name);
				goto out;
			}
		if (val->constant) {
			if (val->producer != -1 ||
			    !dims_equal(val->ndim, val->dims,
			                val->constant->ndim,
			                val->constant->dims)) {
				err = df_errf(DF_EINVAL,
				              "constant '%s': has a producer "
				              "or a shape unlike its tensor",
				              val->name);
				goto out;
			}
		} else if (val->producer < 0 || val->producer >= g->n_nodes ||
		           g->nodes[val->producer].output != v) {
			if (val->producer >= 0 || !(role[v] & ROLE_IN)) {
				err = df_errf(DF_EINVAL,
				              "value '%s' is neither a "
				              "constant, a graph input "
				              "nor produced by a node",
				              val->name);
				goto out;
			}
		}
		if (!val->constant && !role[v]) {
			err = df_errf(DF_EINVAL, "value '%s' is unused",
			              val->name);
			goto out;
		}
	}
	for (int n = 0; n < g->n_nodes && !err; n++)
		err = check_node(g, n, role);
out:
	free(role);
	return err;
}

/* ---- finalize ----------------------------------------------------------- */

df_err graph_finalize(graph *g)
{
	df_err err = check_structure(g);
	if (!err)
		err = toposort(g);
	if (!err)
		err = infer_fold_all(g);
	if (!err)
		err = canonicalize(g);
	if (!err) /* shapes of values made by canonicalize; folds new chances */
		err = infer_fold_all(g);
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

/* ---- clone -------------------------------------------------------------- */

df_err graph_clone(const graph *g, graph **out)
{
	graph *c = NULL;
	df_err err = graph_create(&c);
	if (err)
		return err;
	c->opset = g->opset;
	err = grow((void **)&c->values, &c->values_cap, g->n_values,
	           sizeof *c->values);
	if (!err)
		err = grow((void **)&c->nodes, &c->nodes_cap, g->n_nodes,
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
	return dims_numel(o->ndim, o->dims);
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
		return sat_mul(
		    out_numel(g, nd),
		    sat_mul(w->dims[1], sat_mul(w->dims[2], w->dims[3])));
	case GRAPH_OP_GEMM:
		/* canonical: W is [N,K]; before finalize K depends on trans_b
		 */
		if (w->ndim != 2)
			return 0;
		return sat_mul(out_numel(g, nd),
		               nd->attr.gemm.trans_b ? w->dims[1] : w->dims[0]);
	case GRAPH_OP_MATMUL:
		if (x->ndim < 1)
			return 0;
		return sat_mul(out_numel(g, nd), x->dims[x->ndim - 1]);
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
	int k = node_deps(nd, deps);
	for (int i = 0; i < k; i++)
		if (is_const(g, deps[i]))
			b = sat_add(b, (int64_t)tensor_nbytes(
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
	int k = node_deps(nd, deps);
	for (int i = 0; i < k; i++)
		if (is_const(g, deps[i]))
			p = sat_add(
			    p, (int64_t)g->values[deps[i]].constant->numel);
	return p;
}

int64_t graph_node_flops(const graph *g, int n)
{
	if (!node_ok(g, n))
		return 0;
	const graph_node *nd = &g->nodes[n];
	int64_t on = out_numel(g, nd);
	int64_t f = sat_mul(2, graph_node_macs(g, n));
	switch (nd->op) {
	case GRAPH_OP_CONV:
	case GRAPH_OP_GEMM:
		f = sat_add(f, sat_mul(on, 1 + nd->n_postops));
		break;
	case GRAPH_OP_BATCHNORM:
		f = sat_mul(on, 2);
		break;
	case GRAPH_OP_MAXPOOL:
	case GRAPH_OP_AVGPOOL:
		f = sat_mul(on, sat_mul(nd->attr.pool.kernel[0],
		                        nd->attr.pool.kernel[1]));
		break;
	case GRAPH_OP_GLOBALAVGPOOL: {
		const graph_value *x = &g->values[nd->inputs[0]];
		f = dims_numel(x->ndim, x->dims);
		break;
	}
	case GRAPH_OP_SOFTMAX:
		f = sat_mul(on, 3);
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
		t = sat_add(t, graph_node_macs(g, n));
	return t;
}

int64_t graph_total_flops(const graph *g)
{
	int64_t t = 0;
	for (int n = 0; n < g->n_nodes; n++)
		t = sat_add(t, graph_node_flops(g, n));
	return t;
}

/* Sum over distinct constants read by nodes, of elements or bytes. */
static int64_t const_total(const graph *g, bool bytes)
{
	bool *seen = calloc((size_t)g->n_values + 1, sizeof *seen);
	int64_t t = 0;
	for (int n = 0; n < g->n_nodes; n++) {
		int deps[GRAPH_MAX_INPUTS + GRAPH_MAX_POSTOPS];
		int k = node_deps(&g->nodes[n], deps);
		for (int i = 0; i < k; i++) {
			int v = deps[i];
			if (!is_const(g, v) || (seen && seen[v]))
				continue;
			if (seen)
				seen[v] = true;
			const tensor *c = g->values[v].constant;
			t = sat_add(t, bytes ? (int64_t)tensor_nbytes(c)
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
