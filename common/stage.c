/*
 * stage.c - stage planning and neuron-subset subgraphs.
 *
 * Planning walks the nodes in order. A head (Conv group 1, Gemm) opens a
 * NEURON stage and pulls in its channel-local successors while the current
 * value has exactly one use; every other node becomes a one-node LOCAL
 * stage. Stages are then ordered by their last node (a valid topological
 * order: a stage's inputs are produced by nodes before the node reading
 * them), and runs of adjacent LOCAL stages are merged.
 *
 * A subset subgraph copies the stage's nodes, slicing every per-channel
 * constant (head filter rows, biases, depthwise filters, BatchNorm
 * scale/shift, per-channel Add/Mul operands) to the chosen neurons, and
 * turns the stage's side inputs into graph inputs of n channels.
 */
#include "stage.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {"neuron", "local"};
_Static_assert(sizeof kind_names / sizeof kind_names[0] == STAGE_KIND_COUNT,
	       "one name per stage kind");

const char *stage_kind_name(stage_kind kind)
{
	return (unsigned)kind < STAGE_KIND_COUNT ? kind_names[kind] : "?";
}

/* Uses of value v: node inputs, post-op operands, graph outputs. */
static int value_uses(const graph *g, int v)
{
	int uses = 0;
	for (int n = 0; n < g->n_nodes; n++) {
		const graph_node *nd = &g->nodes[n];
		for (int i = 0; i < nd->n_inputs; i++)
			uses += nd->inputs[i] == v;
		for (int k = 0; k < nd->n_postops; k++)
			uses += nd->postops[k].kind == GRAPH_POSTOP_ADD &&
				nd->postops[k].operand == v;
	}
	for (int i = 0; i < g->n_outputs; i++)
		uses += g->outputs[i] == v;
	return uses;
}

static bool is_const(const graph *g, int v)
{
	return v >= 0 && g->values[v].constant != NULL;
}

static bool same_dims(const graph_value *a, const graph_value *b)
{
	if (a->ndim != b->ndim)
		return false;
	for (int i = 0; i < a->ndim; i++)
		if (a->dims[i] != b->dims[i])
			return false;
	return true;
}

static bool is_head(const graph *g, const graph_node *nd)
{
	const graph_value *out = &g->values[nd->output];
	/* The main input must be computed (stage.h promises inputs[0] is the
	 * head's input) and the stage must have neurons. */
	if (out->ndim < 2 || out->dims[1] < 1 || nd->n_inputs < 1 ||
	    nd->inputs[0] < 0 || is_const(g, nd->inputs[0]))
		return false;
	if (nd->op == GRAPH_OP_CONV)
		return nd->attr.conv.group == 1 && out->ndim == 4;
	if (nd->op == GRAPH_OP_GEMM)
		return !nd->attr.gemm.trans_a && out->ndim == 2;
	return false;
}

static bool is_depthwise(const graph *g, const graph_node *nd)
{
	if (nd->op != GRAPH_OP_CONV)
		return false;
	const graph_value *x = &g->values[nd->inputs[0]];
	const graph_value *y = &g->values[nd->output];
	return x->ndim == 4 && nd->attr.conv.group == x->dims[1] &&
	       y->dims[1] == x->dims[1];
}

/*
 * How an operand u of an element-wise op combines with the stage tensor
 * (dims `t`): 1 = constant with C channels (slice it), 2 = constant that
 * broadcasts over channels (keep), 3 = computed full-size tensor (side
 * input), 0 = not channel-local.
 */
enum { OPERAND_NO = 0, OPERAND_CONST_SLICE, OPERAND_CONST_KEEP,
       OPERAND_SIDE };

static int classify_operand(const graph *g, int u, const graph_value *t)
{
	const graph_value *uv = &g->values[u];
	if (!is_const(g, u))
		return same_dims(uv, t) ? OPERAND_SIDE : OPERAND_NO;
	if (uv->ndim > t->ndim)
		return OPERAND_NO;
	int off = t->ndim - uv->ndim;
	for (int i = 0; i < uv->ndim; i++)
		if (uv->dims[i] != 1 && uv->dims[i] != t->dims[i + off])
			return OPERAND_NO;
	int ca = 1 - off; /* u's axis aligned with channel axis 1 */
	if (ca >= 0 && uv->dims[ca] == t->dims[1] && t->dims[1] != 1)
		return OPERAND_CONST_SLICE;
	return OPERAND_CONST_KEEP;
}

/* Post-op operands must be channel-local, and must not be the stage's main
 * input (which travels whole, while a side input travels sliced). */
static bool postops_ok(const graph *g, const graph_node *nd, int main_in)
{
	const graph_value *t = &g->values[nd->output];
	for (int k = 0; k < nd->n_postops; k++) {
		int u = nd->postops[k].operand;
		if (nd->postops[k].kind == GRAPH_POSTOP_ADD &&
		    (u == main_in || classify_operand(g, u, t) == OPERAND_NO))
			return false;
	}
	return true;
}

/* Can node nd extend a NEURON stage whose current value is cur and whose
 * main input is main_in? */
static bool is_tail(const graph *g, const graph_node *nd, int cur, int main_in)
{
	const graph_value *t = &g->values[cur];
	if (!same_dims(&g->values[nd->output], t) &&
	    nd->op != GRAPH_OP_MAXPOOL && nd->op != GRAPH_OP_AVGPOOL &&
	    nd->op != GRAPH_OP_GLOBALAVGPOOL && nd->op != GRAPH_OP_CONV)
		return false;
	switch (nd->op) {
	case GRAPH_OP_RELU:
	case GRAPH_OP_CLIP:
	case GRAPH_OP_LEAKYRELU:
	case GRAPH_OP_SIGMOID:
		return nd->inputs[0] == cur;
	case GRAPH_OP_BATCHNORM:
		return nd->inputs[0] == cur && is_const(g, nd->inputs[1]) &&
		       is_const(g, nd->inputs[2]);
	case GRAPH_OP_MAXPOOL:
	case GRAPH_OP_AVGPOOL:
	case GRAPH_OP_GLOBALAVGPOOL:
		return nd->inputs[0] == cur && t->ndim == 4;
	case GRAPH_OP_CONV:
		return nd->inputs[0] == cur && is_depthwise(g, nd) &&
		       postops_ok(g, nd, main_in);
	case GRAPH_OP_ADD:
	case GRAPH_OP_MUL: {
		if (nd->n_inputs != 2)
			return false;
		int other = nd->inputs[0] == cur ? nd->inputs[1] : nd->inputs[0];
		if (nd->inputs[0] != cur && nd->inputs[1] != cur)
			return false;
		if (other == cur || other == main_in)
			return false;
		return classify_operand(g, other, t) != OPERAND_NO &&
		       postops_ok(g, nd, main_in);
	}
	default:
		return false;
	}
}

static df_err int_push(int **arr, int *n, int v)
{
	int *a = realloc(*arr, (size_t)(*n + 1) * sizeof *a);
	if (!a)
		return DF_ENOMEM;
	a[(*n)++] = v;
	*arr = a;
	return DF_OK;
}

static bool int_has(const int *arr, int n, int v)
{
	for (int i = 0; i < n; i++)
		if (arr[i] == v)
			return true;
	return false;
}

static void stage_free(stage *s)
{
	free(s->nodes);
	free(s->inputs);
	free(s->outputs);
	free(s->name);
}

void stage_plan_destroy(stage_plan *p)
{
	if (!p)
		return;
	for (int i = 0; i < p->n_stages; i++)
		stage_free(&p->stages[i]);
	free(p->stages);
	free(p);
}

/* Adds every value a node reads that is computed outside `s` to its inputs
 * (constants excluded). */
static df_err collect_node_inputs(const graph *g, stage *s, const bool *inside,
				  const graph_node *nd)
{
	int refs[GRAPH_MAX_INPUTS + GRAPH_MAX_POSTOPS];
	int n = 0;
	for (int i = 0; i < nd->n_inputs; i++)
		refs[n++] = nd->inputs[i];
	for (int k = 0; k < nd->n_postops; k++)
		if (nd->postops[k].kind == GRAPH_POSTOP_ADD)
			refs[n++] = nd->postops[k].operand;
	for (int i = 0; i < n; i++) {
		int v = refs[i];
		if (v < 0 || is_const(g, v) || inside[v] ||
		    int_has(s->inputs, s->n_inputs, v))
			continue;
		df_err err = int_push(&s->inputs, &s->n_inputs, v);
		if (err)
			return err;
	}
	return DF_OK;
}

/* Fills inputs, outputs and costs of s from its node list. */
static df_err stage_finish(const graph *g, stage *s, bool *inside)
{
	df_err err = DF_OK;
	for (int i = 0; i < s->n_nodes; i++)
		inside[g->nodes[s->nodes[i]].output] = true;
	free(s->inputs);
	s->inputs = NULL;
	s->n_inputs = 0;
	for (int i = 0; i < s->n_nodes && !err; i++)
		err = collect_node_inputs(g, s, inside, &g->nodes[s->nodes[i]]);
	for (int i = 0; i < s->n_nodes && !err; i++) {
		int v = g->nodes[s->nodes[i]].output;
		/* uses from inside the stage */
		int inner = 0;
		for (int j = 0; j < s->n_nodes; j++) {
			const graph_node *nd = &g->nodes[s->nodes[j]];
			for (int k = 0; k < nd->n_inputs; k++)
				inner += nd->inputs[k] == v;
			for (int k = 0; k < nd->n_postops; k++)
				inner += nd->postops[k].kind == GRAPH_POSTOP_ADD &&
					 nd->postops[k].operand == v;
		}
		if (value_uses(g, v) > inner)
			err = int_push(&s->outputs, &s->n_outputs, v);
	}
	for (int i = 0; i < s->n_nodes; i++) {
		inside[g->nodes[s->nodes[i]].output] = false;
		s->macs += graph_node_macs(g, s->nodes[i]);
		s->weight_bytes += graph_node_weight_bytes(g, s->nodes[i]);
	}
	if (!err && s->kind == STAGE_NEURON && s->n_neurons < 1)
		err = df_errf(DF_EINVAL, "stage %s has no neurons", s->name);
	if (!err && s->kind == STAGE_NEURON) {
		s->macs_per_neuron = s->macs / s->n_neurons;
		s->weight_bytes_per_neuron = s->weight_bytes / s->n_neurons;
		if (s->n_outputs != 1)
			err = df_errf(DF_EINTERNAL, "stage %s has %d outputs", s->name,
				      s->n_outputs);
	}
	if (!err && !s->name) {
		s->name = strdup(g->nodes[s->nodes[0]].name);
		if (!s->name)
			err = DF_ENOMEM;
	}
	return err;
}

static int stage_last_node(const stage *s)
{
	int m = -1;
	for (int i = 0; i < s->n_nodes; i++)
		if (s->nodes[i] > m)
			m = s->nodes[i];
	return m;
}

static int cmp_last_node(const void *a, const void *b)
{
	int x = stage_last_node(a), y = stage_last_node(b);
	return (x > y) - (x < y);
}

/* Builds the raw stage list: NEURON stages and one-node LOCAL stages. */
static df_err plan_raw(const graph *g, stage_plan *p)
{
	bool *taken = calloc((size_t)g->n_nodes + 1, sizeof *taken);
	if (!taken)
		return DF_ENOMEM;
	p->stages = calloc((size_t)g->n_nodes + 1, sizeof *p->stages);
	if (!p->stages) {
		free(taken);
		return DF_ENOMEM;
	}
	df_err err = DF_OK;
	for (int n = 0; n < g->n_nodes && !err; n++) {
		if (taken[n])
			continue;
		stage *s = &p->stages[p->n_stages++];
		taken[n] = true;
		err = int_push(&s->nodes, &s->n_nodes, n);
		const graph_node *nd = &g->nodes[n];
		if (err || !is_head(g, nd) || !postops_ok(g, nd, nd->inputs[0])) {
			s->kind = STAGE_LOCAL;
			continue;
		}
		s->kind = STAGE_NEURON;
		s->n_neurons = g->values[nd->output].dims[1];
		s->name = strdup(nd->name);
		if (!s->name) {
			err = DF_ENOMEM;
			break;
		}
		int cur = nd->output;
		/* Follow the single-use chain. */
		while (!err && value_uses(g, cur) == 1) {
			int next = -1;
			for (int m = n + 1; m < g->n_nodes && next < 0; m++) {
				const graph_node *c = &g->nodes[m];
				for (int i = 0; i < c->n_inputs; i++)
					if (c->inputs[i] == cur)
						next = m;
			}
			if (next < 0 || taken[next] ||
			    !is_tail(g, &g->nodes[next], cur, nd->inputs[0]))
				break;
			taken[next] = true;
			err = int_push(&s->nodes, &s->n_nodes, next);
			cur = g->nodes[next].output;
		}
	}
	free(taken);
	return err;
}

df_err stage_plan_create(const graph *g, stage_plan **out)
{
	stage_plan *p = calloc(1, sizeof *p);
	bool *inside = calloc((size_t)g->n_values + 1, sizeof *inside);
	df_err err = DF_OK;
	if (!p || !inside) {
		err = DF_ENOMEM;
		goto out;
	}
	err = plan_raw(g, p);
	if (err)
		goto out;
	qsort(p->stages, (size_t)p->n_stages, sizeof *p->stages, cmp_last_node);
	/* Merge adjacent LOCAL stages. */
	int w = 0;
	for (int r = 0; r < p->n_stages && !err; r++) {
		stage *s = &p->stages[r];
		if (w > 0 && s->kind == STAGE_LOCAL &&
		    p->stages[w - 1].kind == STAGE_LOCAL) {
			stage *d = &p->stages[w - 1];
			for (int i = 0; i < s->n_nodes && !err; i++)
				err = int_push(&d->nodes, &d->n_nodes, s->nodes[i]);
			stage_free(s);
			memset(s, 0, sizeof *s);
			continue;
		}
		if (w != r) {
			p->stages[w] = *s;
			memset(s, 0, sizeof *s);
		}
		w++;
	}
	p->n_stages = w;
	for (int i = 0; i < p->n_stages && !err; i++)
		err = stage_finish(g, &p->stages[i], inside);
out:
	free(inside);
	if (err) {
		stage_plan_destroy(p);
		return err;
	}
	*out = p;
	return DF_OK;
}

int stage_plan_producer(const stage_plan *p, int v)
{
	for (int s = 0; s < p->n_stages; s++)
		if (int_has(p->stages[s].outputs, p->stages[s].n_outputs, v))
			return s;
	return -1;
}

static df_err check_ids(const stage *st, const int32_t *ids, size_t n)
{
	if (n == 0 || (int64_t)n > st->n_neurons)
		return df_errf(DF_EINVAL, "stage %s: %zu neurons requested, it has %lld",
			       st->name, n, (long long)st->n_neurons);
	bool *seen = calloc((size_t)st->n_neurons, sizeof *seen);
	if (!seen)
		return DF_ENOMEM;
	df_err err = DF_OK;
	for (size_t i = 0; i < n && !err; i++) {
		if (ids[i] < 0 || ids[i] >= st->n_neurons)
			err = df_errf(DF_EINVAL, "stage %s: neuron %d outside 0..%lld",
				      st->name, ids[i], (long long)st->n_neurons - 1);
		else if (seen[ids[i]])
			err = df_errf(DF_EINVAL, "stage %s: neuron %d listed twice",
				      st->name, ids[i]);
		else
			seen[ids[i]] = true;
	}
	free(seen);
	return err;
}

/* Builder state for one subgraph. */
typedef struct sub_builder {
	const graph *g;
	graph *ng;
	int *map;              /* old value -> new value, -1 if not yet */
	const int32_t *ids;    /* NULL for LOCAL stages */
	size_t n;
	int64_t channels;      /* stage channels (NEURON) */
} sub_builder;

static df_err add_sliced_const(sub_builder *b, int v, int axis, int *idx)
{
	const graph_value *val = &b->g->values[v];
	tensor *t = NULL;
	df_err err = axis >= 0
		? tensor_gather(val->constant, axis, b->ids, b->n, &t)
		: tensor_clone(val->constant, &t);
	if (err)
		return err;
	err = graph_add_value(b->ng, val->name, t->ndim, t->dims, t, idx);
	if (err)
		tensor_destroy(t);
	return err;
}

/*
 * Maps operand v of a node into the new graph. slice_axis >= 0 slices a
 * constant along that axis; OPERAND_* rules decide for element-wise ops.
 */
static df_err map_value(sub_builder *b, int v, int slice_axis, int *out)
{
	if (v < 0) {
		*out = -1;
		return DF_OK;
	}
	if (!is_const(b->g, v) || slice_axis < 0) {
		if (b->map[v] >= 0) {
			*out = b->map[v];
			return DF_OK;
		}
		if (!is_const(b->g, v))
			return df_errf(DF_EINTERNAL, "value %s not available in stage",
				       b->g->values[v].name);
	}
	/* Constants are copied per use: a shared per-channel constant may be
	 * sliced in one place and kept whole in another. */
	return add_sliced_const(b, v, slice_axis, out);
}

/* Axis of constant operand u to slice for an element-wise op on stage
 * tensor t, or -1 to keep it whole. */
static int elementwise_slice_axis(const graph *g, int u, const graph_value *t)
{
	if (classify_operand(g, u, t) != OPERAND_CONST_SLICE)
		return -1;
	return 1 - (t->ndim - g->values[u].ndim);
}

static df_err add_node_output(sub_builder *b, const graph_node *nd,
			      graph_node *copy)
{
	const graph_value *ov = &b->g->values[nd->output];
	int64_t dims[TENSOR_MAX_DIMS];
	memcpy(dims, ov->dims, sizeof dims);
	if (b->ids)
		dims[1] = (int64_t)b->n;
	int idx = -1;
	df_err err = graph_add_value(b->ng, ov->name, ov->ndim, dims, NULL, &idx);
	if (err)
		return err;
	b->map[nd->output] = idx;
	copy->output = idx;
	return graph_add_node(b->ng, copy, nd->name, NULL);
}

static df_err copy_node(sub_builder *b, const graph_node *nd, bool head)
{
	graph_node c = *nd;
	df_err err = DF_OK;
	const graph_value *t = &b->g->values[nd->output];
	bool neuron = b->ids != NULL;

	for (int i = 0; i < nd->n_inputs && !err; i++) {
		int axis = -1;
		int v = nd->inputs[i];
		if (neuron && is_const(b->g, v)) {
			if (nd->op == GRAPH_OP_CONV || nd->op == GRAPH_OP_GEMM ||
			    nd->op == GRAPH_OP_BATCHNORM)
				axis = i > 0 ? 0 : -1;
			else if (nd->op == GRAPH_OP_ADD || nd->op == GRAPH_OP_MUL)
				axis = elementwise_slice_axis(b->g, v, t);
		}
		err = map_value(b, v, axis, &c.inputs[i]);
	}
	for (int k = 0; k < nd->n_postops && !err; k++) {
		if (nd->postops[k].kind != GRAPH_POSTOP_ADD)
			continue;
		int v = nd->postops[k].operand;
		int axis = neuron ? elementwise_slice_axis(b->g, v, t) : -1;
		err = map_value(b, v, axis, &c.postops[k].operand);
	}
	if (err)
		return err;
	if (neuron && !head && nd->op == GRAPH_OP_CONV)
		c.attr.conv.group = (int64_t)b->n; /* depthwise on the subset */
	return add_node_output(b, nd, &c);
}

df_err stage_subgraph(const graph *g, const stage_plan *p, int s,
		      const int32_t *ids, size_t n, graph **out)
{
	if (s < 0 || s >= p->n_stages)
		return df_errf(DF_EINVAL, "stage %d outside 0..%d", s,
			       p->n_stages - 1);
	const stage *st = &p->stages[s];
	df_err err = DF_OK;
	if (st->kind == STAGE_NEURON) {
		err = check_ids(st, ids, n);
	} else if (ids || n) {
		err = df_errf(DF_EINVAL, "stage %s is local: it has no neurons to select",
			      st->name);
	}
	if (err)
		return err;

	sub_builder b = {.g = g, .ids = st->kind == STAGE_NEURON ? ids : NULL,
			 .n = n, .channels = st->n_neurons};
	int *in_idx = calloc((size_t)st->n_inputs + 1, sizeof *in_idx);
	b.map = malloc(sizeof *b.map * (size_t)(g->n_values + 1));
	if (!in_idx || !b.map) {
		err = DF_ENOMEM;
		goto out;
	}
	for (int i = 0; i < g->n_values; i++)
		b.map[i] = -1;
	err = graph_create(&b.ng);
	if (err)
		goto out;
	b.ng->opset = g->opset;
	for (int i = 0; i < st->n_inputs && !err; i++) {
		const graph_value *v = &g->values[st->inputs[i]];
		int64_t dims[TENSOR_MAX_DIMS];
		memcpy(dims, v->dims, sizeof dims);
		if (b.ids && i > 0)
			dims[1] = (int64_t)n; /* side inputs arrive sliced */
		err = graph_add_value(b.ng, v->name, v->ndim, dims, NULL, &in_idx[i]);
		if (!err)
			b.map[st->inputs[i]] = in_idx[i];
	}
	for (int i = 0; i < st->n_nodes && !err; i++)
		err = copy_node(&b, &g->nodes[st->nodes[i]],
				st->kind == STAGE_NEURON && i == 0);
	for (int i = 0; i < st->n_inputs && !err; i++)
		err = graph_add_input(b.ng, in_idx[i]);
	for (int i = 0; i < st->n_outputs && !err; i++)
		err = graph_add_output(b.ng, b.map[st->outputs[i]]);
	if (!err)
		err = graph_check(b.ng);
out:
	free(in_idx);
	free(b.map);
	if (err) {
		graph_destroy(b.ng);
		return err;
	}
	*out = b.ng;
	return DF_OK;
}

df_err stage_neuron_l1(const graph *g, const stage_plan *p, int s, float *out)
{
	if (s < 0 || s >= p->n_stages || p->stages[s].kind != STAGE_NEURON)
		return df_errf(DF_EINVAL, "stage %d is not a neuron stage", s);
	const stage *st = &p->stages[s];
	const graph_node *head = &g->nodes[st->nodes[0]];
	const tensor *w = g->values[head->inputs[1]].constant;
	if (!w || w->dtype != TENSOR_F32 || w->dims[0] != st->n_neurons)
		return df_errf(DF_EINTERNAL, "stage %s: head weights missing",
			       st->name);
	size_t row = w->numel / (size_t)st->n_neurons;
	const float *wd = tensor_f32(w);
	for (int64_t i = 0; i < st->n_neurons; i++) {
		double sum = 0;
		for (size_t j = 0; j < row; j++)
			sum += fabs(wd[(size_t)i * row + j]);
		out[i] = (float)sum;
	}
	return DF_OK;
}
