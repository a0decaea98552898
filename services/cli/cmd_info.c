/*
 * cmd_info.c - `dicefleet info MODEL.onnx`: imports and finalizes a model
 * and describes it: inputs and outputs with shapes, the opset, every node
 * after folding and fusion (op, name, output shape, post-ops, cost), and
 * totals (parameters, MACs, FLOPs, weight bytes). Text on stdout, or one
 * JSON document with --json.
 *
 * The report is a table of sections, each with a text printer and a JSON
 * builder over the same finalized graph; a new section (e.g. the stage
 * planner's per-stage neurons) is one more row in `sections`.
 */
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "config.h"
#include "graph.h"
#include "onnx_import.h"
#include "stage.h"
#include "tensor.h"

int cmd_info_main(int argc, char **argv);

static const config_opt info_opts[] = {
    {"json", NULL, CONFIG_BOOL, "false", 0, 0,
     "print one JSON document instead of text"},
    {"help", NULL, CONFIG_BOOL, "false", 0, 0, "show this help"},
};

static void info_usage(const config *c, FILE *f)
{
	fprintf(
	    f,
	    "usage: dicefleet info MODEL.onnx [--json]\n"
	    "\n"
	    "Imports MODEL.onnx as dicefleet runs it (constants folded,\n"
	    "BatchNorm folded into Conv/Gemm, activations and residual Adds\n"
	    "fused as post-ops) and prints its inputs, outputs, opset, nodes\n"
	    "and totals: parameters, MACs, FLOPs (2 per MAC plus element-wise\n"
	    "work) and weight bytes.\n"
	    "\n"
	    "options:\n");
	config_print_help(c, f);
	fprintf(f, "\n"
	           "exit status: 0 ok; 1 the model cannot be read or is not\n"
	           "supported (the reason is printed); 2 usage error.\n");
}

/* What every section sees. */
typedef struct info_ctx {
	const char *path;
	const graph *g;
	const stage_plan *plan;
} info_ctx;

typedef struct info_section {
	const char *key; /* JSON member */
	void (*text)(const info_ctx *ctx, FILE *f);
	json_t *(*json)(const info_ctx *ctx); /* new reference or NULL */
} info_section;

/* ---- helpers ------------------------------------------------------------ */

static json_t *shape_json(const graph_value *v)
{
	json_t *a = json_array();
	for (int i = 0; a && i < v->ndim; i++)
		json_array_append_new(a, json_integer(v->dims[i]));
	return a;
}

static const char *shape_text(const graph_value *v, char *buf, size_t len)
{
	tensor_shape_str(v->ndim, v->dims, buf, len);
	return buf;
}

/* A bound for JSON: null when infinite (JSON has no infinity). */
static json_t *bound_json(float x)
{
	return isfinite(x) ? json_real(x) : json_null();
}

static void postops_text(const graph *g, const graph_node *nd, char *buf,
                         size_t len)
{
	size_t used = 0;
	buf[0] = '\0';
	for (int i = 0; i < nd->n_postops && used < len; i++) {
		const graph_postop *p = &nd->postops[i];
		const char *sep = i ? "+" : "";
		int n;
		if (p->kind == GRAPH_POSTOP_ADD)
			n = snprintf(buf + used, len - used, "%sAdd(%s)", sep,
			             g->values[p->operand].name);
		else if (p->act == GRAPH_ACT_CLIP)
			n = snprintf(buf + used, len - used, "%sClip(%g,%g)",
			             sep, (double)p->alpha, (double)p->beta);
		else if (p->act == GRAPH_ACT_LEAKYRELU)
			n = snprintf(buf + used, len - used, "%sLeakyRelu(%g)",
			             sep, (double)p->alpha);
		else
			n = snprintf(buf + used, len - used, "%s%s", sep,
			             graph_act_name(p->act));
		if (n < 0)
			break;
		used += (size_t)n;
	}
	if (used == 0 && len > 1)
		snprintf(buf, len, "-");
}

static json_t *postops_json(const graph *g, const graph_node *nd)
{
	json_t *a = json_array();
	for (int i = 0; a && i < nd->n_postops; i++) {
		const graph_postop *p = &nd->postops[i];
		json_t *o;
		if (p->kind == GRAPH_POSTOP_ADD) {
			o = json_pack("{s:s, s:s}", "kind", "add", "operand",
			              g->values[p->operand].name);
		} else {
			o = json_pack("{s:s, s:s}", "kind", "act", "act",
			              graph_act_name(p->act));
			if (o && p->act == GRAPH_ACT_CLIP) {
				json_object_set_new(o, "min",
				                    bound_json(p->alpha));
				json_object_set_new(o, "max",
				                    bound_json(p->beta));
			} else if (o && p->act == GRAPH_ACT_LEAKYRELU) {
				json_object_set_new(o, "alpha",
				                    json_real(p->alpha));
			}
		}
		json_array_append_new(a, o);
	}
	return a;
}

/* Human-readable count: "1234567 (1.23 M)". */
static void count_text(int64_t n, const char *unit_k, char *buf, size_t len)
{
	static const char *const si[] = {"", " k", " M", " G", " T"};
	double x = (double)n;
	int i = 0;
	while (x >= 1000.0 && i < 4) {
		x /= 1000.0;
		i++;
	}
	if (i == 0)
		snprintf(buf, len, "%lld", (long long)n);
	else
		snprintf(buf, len, "%lld (%.3g%s%s)", (long long)n, x, si[i],
		         unit_k);
}

/* ---- sections ----------------------------------------------------------- */

static void model_text(const info_ctx *ctx, FILE *f)
{
	fprintf(f, "model:   %s\nopset:   %lld\n", ctx->path,
	        (long long)ctx->g->opset);
}

static json_t *model_json(const info_ctx *ctx)
{
	return json_pack("{s:s, s:I}", "path", ctx->path, "opset",
	                 (json_int_t)ctx->g->opset);
}

static void io_text(FILE *f, const graph *g, const char *title, int n,
                    const int *vals)
{
	char s[160];
	fprintf(f, "%s:\n", title);
	for (int i = 0; i < n; i++)
		fprintf(f, "  %-32s %s\n", g->values[vals[i]].name,
		        shape_text(&g->values[vals[i]], s, sizeof s));
}

static json_t *io_json(const graph *g, int n, const int *vals)
{
	json_t *a = json_array();
	for (int i = 0; a && i < n; i++)
		json_array_append_new(
		    a, json_pack("{s:s, s:o}", "name", g->values[vals[i]].name,
		                 "shape", shape_json(&g->values[vals[i]])));
	return a;
}

static void inputs_text(const info_ctx *ctx, FILE *f)
{
	io_text(f, ctx->g, "inputs", ctx->g->n_inputs, ctx->g->inputs);
}

static json_t *inputs_json(const info_ctx *ctx)
{
	return io_json(ctx->g, ctx->g->n_inputs, ctx->g->inputs);
}

static void outputs_text(const info_ctx *ctx, FILE *f)
{
	io_text(f, ctx->g, "outputs", ctx->g->n_outputs, ctx->g->outputs);
}

static json_t *outputs_json(const info_ctx *ctx)
{
	return io_json(ctx->g, ctx->g->n_outputs, ctx->g->outputs);
}

static void nodes_text(const info_ctx *ctx, FILE *f)
{
	const graph *g = ctx->g;
	fprintf(f, "nodes (%d, after folding and fusion):\n", g->n_nodes);
	fprintf(f, "  %4s  %-18s %-36s %-16s %12s  %s\n", "#", "op", "name",
	        "output shape", "MACs", "post-ops");
	for (int n = 0; n < g->n_nodes; n++) {
		const graph_node *nd = &g->nodes[n];
		char s[160], p[256];
		postops_text(g, nd, p, sizeof p);
		fprintf(f, "  %4d  %-18s %-36s %-16s %12lld  %s\n", n,
		        graph_op_name(nd->op), nd->name,
		        shape_text(&g->values[nd->output], s, sizeof s),
		        (long long)graph_node_macs(g, n), p);
	}
}

static json_t *ints_json(const int64_t *v, int n)
{
	json_t *a = json_array();
	for (int i = 0; a && i < n; i++)
		json_array_append_new(a, json_integer(v[i]));
	return a;
}

/* The attributes an op uses, as found after finalize. */
static json_t *attrs_json(const graph_node *nd)
{
	const graph_conv_attr *c = &nd->attr.conv;
	const graph_pool_attr *p = &nd->attr.pool;
	switch (nd->op) {
	case GRAPH_OP_CONV:
		return json_pack("{s:o, s:o, s:o, s:o, s:I}", "kernel",
		                 ints_json(c->kernel, 2), "strides",
		                 ints_json(c->strides, 2), "dilations",
		                 ints_json(c->dilations, 2), "pads",
		                 ints_json(c->pads, 4), "group",
		                 (json_int_t)c->group);
	case GRAPH_OP_MAXPOOL:
	case GRAPH_OP_AVGPOOL:
		return json_pack("{s:o, s:o, s:o, s:o, s:b, s:b}", "kernel",
		                 ints_json(p->kernel, 2), "strides",
		                 ints_json(p->strides, 2), "dilations",
		                 ints_json(p->dilations, 2), "pads",
		                 ints_json(p->pads, 4), "ceil_mode",
		                 p->ceil_mode, "count_include_pad",
		                 p->count_include_pad);
	case GRAPH_OP_GEMM:
		return json_pack("{s:b}", "trans_a", nd->attr.gemm.trans_a);
	case GRAPH_OP_CLIP:
		return json_pack("{s:o, s:o}", "min",
		                 bound_json(nd->attr.clip.lo), "max",
		                 bound_json(nd->attr.clip.hi));
	case GRAPH_OP_LEAKYRELU:
		return json_pack("{s:f}", "alpha",
		                 (double)nd->attr.leaky.alpha);
	case GRAPH_OP_CONCAT:
	case GRAPH_OP_FLATTEN:
		return json_pack("{s:I}", "axis",
		                 (json_int_t)nd->attr.axis.axis);
	case GRAPH_OP_SOFTMAX:
		return json_pack("{s:I, s:b}", "axis",
		                 (json_int_t)nd->attr.axis.axis, "legacy_2d",
		                 nd->attr.axis.legacy);
	default:
		return json_object();
	}
}

static json_t *nodes_json(const info_ctx *ctx)
{
	const graph *g = ctx->g;
	json_t *a = json_array();
	for (int n = 0; a && n < g->n_nodes; n++) {
		const graph_node *nd = &g->nodes[n];
		const graph_value *o = &g->values[nd->output];
		json_array_append_new(
		    a, json_pack("{s:i, s:s, s:s, s:s, s:o, s:o, s:o, s:I, "
		                 "s:I, s:I, s:I}",
		                 "index", n, "op", graph_op_name(nd->op),
		                 "name", nd->name, "output", o->name, "shape",
		                 shape_json(o), "attrs", attrs_json(nd),
		                 "postops", postops_json(g, nd), "macs",
		                 (json_int_t)graph_node_macs(g, n), "flops",
		                 (json_int_t)graph_node_flops(g, n), "params",
		                 (json_int_t)graph_node_params(g, n),
		                 "weight_bytes",
		                 (json_int_t)graph_node_weight_bytes(g, n)));
	}
	return a;
}

static void totals_text(const info_ctx *ctx, FILE *f)
{
	const graph *g = ctx->g;
	char p[64], m[64], fl[64], b[64];
	count_text(graph_total_params(g), "", p, sizeof p);
	count_text(graph_total_macs(g), "", m, sizeof m);
	count_text(graph_total_flops(g), "", fl, sizeof fl);
	count_text(graph_total_weight_bytes(g), "B", b, sizeof b);
	fprintf(f,
	        "totals:\n"
	        "  parameters     %s\n"
	        "  MACs           %s\n"
	        "  FLOPs          %s\n"
	        "  weight bytes   %s\n",
	        p, m, fl, b);
}

static json_t *totals_json(const info_ctx *ctx)
{
	const graph *g = ctx->g;
	return json_pack("{s:i, s:I, s:I, s:I, s:I}", "nodes", g->n_nodes,
	                 "parameters", (json_int_t)graph_total_params(g),
	                 "macs", (json_int_t)graph_total_macs(g), "flops",
	                 (json_int_t)graph_total_flops(g), "weight_bytes",
	                 (json_int_t)graph_total_weight_bytes(g));
}

static void stages_text(const info_ctx *ctx, FILE *f)
{
	const stage_plan *p = ctx->plan;
	fprintf(f, "stages (%d; a neuron stage can be split across devices):\n",
		p->n_stages);
	fprintf(f, "  %3s %-7s %-24s %5s %8s %12s %12s\n", "#", "kind", "head",
		"nodes", "neurons", "MACs", "weight B");
	for (int s = 0; s < p->n_stages; s++) {
		const stage *st = &p->stages[s];
		fprintf(f, "  %3d %-7s %-24.24s %5d %8lld %12lld %12lld\n", s,
			stage_kind_name(st->kind), st->name, st->n_nodes,
			(long long)st->n_neurons, (long long)st->macs,
			(long long)st->weight_bytes);
	}
}

static json_t *stages_json(const info_ctx *ctx)
{
	const stage_plan *p = ctx->plan;
	json_t *a = json_array();
	for (int s = 0; a && s < p->n_stages; s++) {
		const stage *st = &p->stages[s];
		if (json_array_append_new(a, json_pack(
			    "{s:i, s:s, s:s, s:i, s:I, s:I, s:I, s:I, s:I, s:i}",
			    "index", s, "kind", stage_kind_name(st->kind), "name",
			    st->name, "nodes", st->n_nodes, "neurons",
			    (json_int_t)st->n_neurons, "macs", (json_int_t)st->macs,
			    "weight_bytes", (json_int_t)st->weight_bytes,
			    "macs_per_neuron", (json_int_t)st->macs_per_neuron,
			    "weight_bytes_per_neuron",
			    (json_int_t)st->weight_bytes_per_neuron, "inputs",
			    st->n_inputs))) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static const info_section sections[] = {
    {"model", model_text, model_json},
    {"inputs", inputs_text, inputs_json},
    {"outputs", outputs_text, outputs_json},
    {"nodes", nodes_text, nodes_json},
    {"stages", stages_text, stages_json},
    {"totals", totals_text, totals_json},
};

/* ---- main --------------------------------------------------------------- */

static int print_json(const info_ctx *ctx)
{
	json_t *doc = json_object();
	bool ok = doc != NULL;
	for (size_t i = 0; ok && i < sizeof sections / sizeof sections[0];
	     i++) {
		json_t *s = sections[i].json(ctx);
		ok = s && json_object_set_new(doc, sections[i].key, s) == 0;
	}
	char *text =
	    ok ? json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(doc);
	if (!text) {
		fprintf(stderr,
		        "dicefleet info: out of memory building JSON\n");
		return CLI_FAIL;
	}
	puts(text);
	free(text);
	return CLI_OK;
}

int cmd_info_main(int argc, char **argv)
{
	config *c = NULL;
	int rc =
	    cli_parse("info", info_opts, sizeof info_opts / sizeof info_opts[0],
	              info_usage, argc, argv, &c);
	if (rc >= 0)
		return rc;
	if (config_positional_count(c) != 1) {
		fprintf(stderr,
		        "dicefleet info: expected one MODEL.onnx, got %zu "
		        "arguments (see dicefleet info --help)\n",
		        config_positional_count(c));
		config_destroy(c);
		return CLI_USAGE;
	}
	info_ctx ctx = {config_positional(c, 0), NULL, NULL};
	graph *g = NULL;
	stage_plan *plan = NULL;
	if (onnx_import_file(ctx.path, &g) || stage_plan_create(g, &plan)) {
		cli_fail("info", "cannot load model");
		graph_destroy(g);
		config_destroy(c);
		return CLI_FAIL;
	}
	ctx.g = g;
	ctx.plan = plan;
	if (config_bool(c, "json")) {
		rc = print_json(&ctx);
	} else {
		for (size_t i = 0; i < sizeof sections / sizeof sections[0];
		     i++)
			sections[i].text(&ctx, stdout);
		rc = CLI_OK;
	}
	if (fflush(stdout) != 0) {
		fprintf(stderr, "dicefleet info: cannot write the report\n");
		rc = CLI_FAIL;
	}
	stage_plan_destroy(plan);
	graph_destroy(g);
	config_destroy(c);
	return rc;
}
