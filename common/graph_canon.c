/*
 * graph_canon.c - graph_canonicalize(), the finalize pass that brings every
 * node into the canonical form graph.h describes: Conv with a constant
 * bias, BatchNorm as per-channel scale/shift, Gemm as {A, W[N,K], bias[N]}
 * (or MatMul [+ Mul] [+ Add] for a computed B), MatMul with a constant 2-D
 * B as Gemm, Reshape with one input.
 *
 * New weights and intermediate values are appended to g->values with
 * "<node>.<what>" names; derived nodes are named "<node>/<suffix>", and each
 * original node name ends up on exactly one node. On failure g keeps its
 * original nodes and producers (values already appended stay).
 */
#include "graph.h"
#include "graph_internal.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* New constant value (f32, zero-filled) named "<node>.<what>". */
static df_err new_const(graph *g, const graph_node *nd, const char *what,
                        int ndim, const int64_t *dims, int *index, float **data)
{
	tensor *t = NULL;
	df_err err = tensor_create(TENSOR_F32, ndim, dims, &t);
	if (err)
		return graph_node_err(nd, err, "cannot allocate %s", what);
	err =
	    graph_add_value_fmt(g, 0, NULL, t, index, "%s.%s", nd->name, what);
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
	if (!graph_is_const(g, v))
		return graph_node_err(
		    nd, DF_ENOTSUP,
		    "%s '%s' must be a constant (initializer); computed "
		    "%s is not supported",
		    what, graph_vname(g, v), what);
	if (graph_vdtype(g, v) != TENSOR_F32)
		return graph_node_err(nd, DF_EINVAL, "%s '%s' must be f32",
		                      what, graph_vname(g, v));
	return DF_OK;
}

/* Node list under construction during graph_canonicalize(). */
typedef struct node_list {
	graph_node *v;
	int n, cap;
	char **owned; /* names made for derived nodes */
	int n_owned, cap_owned;
} node_list;

static df_err node_list_push(node_list *l, const graph_node *nd)
{
	df_err err =
	    graph_grow((void **)&l->v, &l->cap, l->n + 1, sizeof *l->v);
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
	df_err err = graph_grow((void **)&l->owned, &l->cap_owned,
	                        l->n_owned + 1, sizeof *l->owned);
	if (err)
		return err;
	nd.name = graph_str_fmt("%s/%s", from->name, suffix);
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
	return graph_add_value_fmt(g, v->ndim, dims, NULL, index, "%s.%s",
	                           nd->name, what);
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
			return graph_node_err(
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
	if (graph_is_const(g, c)) {
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

	if (graph_is_const(g, b)) {
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
		return graph_node_err(
		    nd, DF_ENOTSUP,
		    "transA/transB with a computed B '%s' are not supported",
		    graph_vname(g, b));
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
df_err graph_canonicalize(graph *g)
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
