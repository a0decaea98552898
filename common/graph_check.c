/*
 * graph_check.c - graph_check(): verifies every invariant graph.h lists for
 * a finalized graph and names the first violation (DF_EINVAL, or
 * DF_ENOTSUP for a graph output that no node computes).
 *
 * It only reads the graph and validates counts, indices and pointers before
 * following them, so it is safe on hand-built or corrupted graphs. Shapes
 * and attributes are re-derived with graph_infer_shape() on a copy of each
 * node and compared field by field.
 */
#include "graph.h"
#include "graph_internal.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- invariants --------------------------------------------------------- */

static df_err check_const_shape(const graph *g, const graph_node *nd, int slot,
                                int ndim, const int64_t *dims, const char *what)
{
	int v = nd->inputs[slot];
	if (!graph_is_const(g, v) || graph_vdtype(g, v) != TENSOR_F32)
		return graph_node_err(nd, DF_EINVAL,
		                      "%s '%s' is not an f32 constant", what,
		                      graph_vname(g, v));
	if (dims &&
	    !graph_dims_equal(g->values[v].ndim, g->values[v].dims, ndim, dims))
		return graph_node_err(nd, DF_EINVAL,
		                      "%s '%s' has the wrong shape", what,
		                      graph_vname(g, v));
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
		return graph_node_err(
		    nd, DF_EINVAL, "%d inputs in canonical form", nd->n_inputs);
	int deps[GRAPH_MAX_INPUTS + GRAPH_MAX_POSTOPS];
	for (int i = 0; i < nd->n_inputs; i++)
		if (!graph_value_ok(g, nd->inputs[i]))
			return graph_node_err(
			    nd, DF_EINVAL, "input %d is absent or invalid", i);
	if (nd->n_postops < 0 || nd->n_postops > GRAPH_MAX_POSTOPS ||
	    (nd->n_postops && nd->op != GRAPH_OP_CONV &&
	     nd->op != GRAPH_OP_GEMM))
		return graph_node_err(
		    nd, DF_EINVAL, "post-ops on a node that cannot have them");
	if (!graph_value_ok(g, nd->output))
		return graph_node_err(nd, DF_EINVAL, "output is not a value");
	const graph_value *o = &g->values[nd->output];
	if (o->constant || o->producer != n)
		return graph_node_err(
		    nd, DF_EINVAL, "output '%s' is constant or has producer %d",
		    o->name, o->producer);
	if (!(role[nd->output] & (GRAPH_ROLE_READ | GRAPH_ROLE_OUT)))
		return graph_node_err(nd, DF_EINVAL,
		                      "output '%s' is never used (dead node)",
		                      o->name);
	for (int i = 0; i < nd->n_postops; i++) {
		const graph_postop *p = &nd->postops[i];
		if (p->kind == GRAPH_POSTOP_ACT) {
			if ((unsigned)p->act >= GRAPH_ACT_COUNT)
				return graph_node_err(
				    nd, DF_EINVAL, "post-op %d: bad activation",
				    i);
		} else if (p->kind == GRAPH_POSTOP_ADD) {
			if (!graph_value_ok(g, p->operand) ||
			    p->operand == nd->output ||
			    !graph_dims_equal(g->values[p->operand].ndim,
			                      g->values[p->operand].dims,
			                      o->ndim, o->dims) ||
			    graph_vdtype(g, p->operand) != TENSOR_F32)
				return graph_node_err(
				    nd, DF_EINVAL,
				    "post-op %d: Add operand is "
				    "not an f32 value "
				    "of the output's shape",
				    i);
		} else {
			return graph_node_err(nd, DF_EINVAL,
			                      "post-op %d: bad kind", i);
		}
	}
	int k = graph_node_deps(nd, deps);
	for (int i = 0; i < k; i++) {
		const graph_value *v = &g->values[deps[i]];
		if (!v->constant && !(role[deps[i]] & GRAPH_ROLE_IN) &&
		    (v->producer < 0 || v->producer >= n))
			return graph_node_err(
			    nd, DF_EINVAL,
			    "input '%s' is not produced before this node",
			    v->name);
	}
	/* shapes agree with inference, attributes are normalized */
	graph_node copy = *nd;
	int ndim = 0;
	int64_t dims[TENSOR_MAX_DIMS];
	df_err err = graph_infer_shape(g, &copy, &ndim, dims);
	if (err)
		return err;
	if (!graph_dims_equal(ndim, dims, o->ndim, o->dims) ||
	    !attr_equal(&copy, nd))
		return graph_node_err(
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
			return graph_node_err(
			    nd, DF_EINVAL,
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
	uint8_t *role = graph_value_roles(g, 0);
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
		int k = graph_node_deps(nd, deps);
		for (int i = 0; i < k; i++)
			if (graph_value_ok(g, deps[i]))
				role[deps[i]] |= GRAPH_ROLE_READ;
	}
	for (int i = 0; i < g->n_inputs; i++) {
		int v = g->inputs[i];
		if (!graph_value_ok(g, v) || g->values[v].constant ||
		    g->values[v].producer >= 0) {
			err = df_errf(
			    DF_EINVAL,
			    "graph input %d is not a free computed value", i);
			goto out;
		}
		if (role[v] & GRAPH_ROLE_SEEN) {
			err =
			    df_errf(DF_EINVAL, "graph input '%s' listed twice",
			            graph_vname(g, v));
			goto out;
		}
		role[v] |= GRAPH_ROLE_SEEN;
	}
	for (int i = 0; i < g->n_outputs; i++) {
		int v = g->outputs[i];
		if (!graph_value_ok(g, v) || g->values[v].producer < 0) {
			err = df_errf(
			    DF_ENOTSUP,
			    "graph output '%s' is not computed by any node (a "
			    "constant or a graph input)",
			    graph_value_ok(g, v) ? graph_vname(g, v) : "?");
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
			    !graph_dims_equal(val->ndim, val->dims,
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
			if (val->producer >= 0 || !(role[v] & GRAPH_ROLE_IN)) {
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
