/*
 * graph_fold.c - constant evaluation for the graph IR: graph_fold_node()
 * (evaluates a node whose inputs are all constants, turning its output
 * value into a constant and removing the node) and graph_infer_fold_all(),
 * the finalize pass that infers every node's shape (graph_infer.c) and
 * folds what it can, in order.
 */
#include "graph.h"
#include "graph_internal.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

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
		return graph_node_err(nd, err,
		                      "cannot allocate folded constant");
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
		size_t outer = (size_t)graph_dims_numel(ax, o->dims);
		size_t inner = (size_t)graph_dims_numel(o->ndim - ax - 1,
		                                        o->dims + ax + 1);
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
		size_t inner =
		    (size_t)graph_dims_numel(x->ndim - 2, x->dims + 2);
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
		if (nd->inputs[i] >= 0 && !graph_is_const(g, nd->inputs[i]))
			return false;
	return nd->n_inputs > 0;
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
		graph_nodes_compact(g, keep);
		free(keep);
	}
	*folded = f;
	return DF_OK;
}

/* Infers every node's shape in order and folds the nodes that can be
 * evaluated now. Nodes must be in topological order. */
df_err graph_infer_fold_all(graph *g)
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
		graph_nodes_compact(g, keep);
	}
	free(keep);
	return err;
}
