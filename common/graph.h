/*
 * graph.h - the model graph IR every engine, the stage planner and the
 * partitioner work on.
 *
 * A graph is a list of values (tensors: graph inputs, constants, node
 * outputs) and a list of nodes in topological order. Values are referred to
 * by index into g->values; a node input of -1 means "optional, absent".
 *
 * Invariants after graph_finalize() (which onnx_import calls):
 *  - every value has a static shape (batch included; symbolic dims resolve
 *    to 1), stored in ndim/dims;
 *  - constants (initializers, Constant nodes, folded subgraphs) are values
 *    with a non-NULL `constant`; no node produces a constant;
 *  - nodes are in topological order, counting a GRAPH_POSTOP_ADD operand
 *    as an input of its node; each non-constant value is produced by
 *    exactly one node or is a graph input;
 *  - Identity and Dropout nodes are removed (their consumers rewired);
 *  - BatchNormalization that follows a Conv/Gemm whose output has no other
 *    consumer is folded into that node's weights and bias; the rest stay as
 *    GRAPH_OP_BATCHNORM;
 *  - CONV: inputs = {x [N,C,H,W], W [M,C/group,kH,kW] constant,
 *    bias [M] constant} (bias zeros when the model had none);
 *  - GEMM is canonical: inputs = {A, W [N,K] constant, bias [N] constant},
 *    alpha and beta folded into W and bias, trans_b = true; trans_a may be
 *    true (A is then [K,M]). ONNX Gemm with a computed B, or a C that is not
 *    broadcastable along rows, becomes MATMUL + ADD. MatMul with a constant
 *    2-D right side becomes GEMM too;
 *  - MATMUL: numpy matmul semantics on two computed-or-constant inputs;
 *  - BATCHNORM (unfolded): inputs = {x, scale [C], shift [C]} with
 *    y = x * scale + shift per channel (epsilon already applied);
 *  - CLIP: inputs = {x}; attr.clip.lo/hi hold the bounds (-/+INFINITY when
 *    absent), whether the model gave them as attributes (opset < 11) or as
 *    constant inputs (opset >= 11);
 *  - RESHAPE/FLATTEN: inputs = {x}; the output value's dims say the shape
 *    (data is copied unchanged, row-major);
 *  - SOFTMAX: attr.axis.axis normalized >= 0; attr.axis.legacy is true for
 *    opset < 13, where the input is coerced to 2-D
 *    [prod(dims[:axis]), prod(dims[axis:])] and softmax runs over the second
 *    dim; false means softmax along `axis` only;
 *  - ADD/MUL: numpy (multidirectional) broadcasting of two inputs;
 *  - pooling and conv pads are explicit (auto_pad resolved at import);
 *  - a Relu/Clip/LeakyRelu/Sigmoid, or an Add with a second full-size
 *    operand, that is the only consumer of a Conv/Gemm output may be fused
 *    into that node as post-ops (see graph_postop); the fused node then
 *    writes the post-op result into its own output value.
 *
 * Further guarantees after graph_finalize() (additions to the above):
 *  - every graph output is produced by a node (never a constant or a graph
 *    input), and every node contributes to some graph output (dead nodes
 *    are removed); every value is referenced by something (unused values
 *    are dropped, so value indices change during finalize);
 *  - non-constant values are f32; constants are f32 or i64 (i64 only as
 *    shape arithmetic, which is folded away before any node sees it);
 *  - MatMul becomes GEMM only when A is 2-D and B is a constant 2-D f32;
 *  - GEMM has alpha = beta = 1 and trans_b = true. An ONNX Gemm with a
 *    constant B and a C that is not a row vector becomes GEMM (zero bias)
 *    + ADD; with a computed B it becomes MATMUL [+ MUL by scalar alpha]
 *    [+ ADD C] (transA/transB with a computed B is DF_ENOTSUP);
 *  - a post-op ADD operand may be a constant (e.g. such a Gemm C);
 *  - pooling with ceil_mode: the output value's dims already include the
 *    ceil rounding, with the PyTorch/ONNX Runtime rule that a last window
 *    starting inside the end padding is dropped; engines take the output
 *    size from the value, not from the formula;
 *  - SOFTMAX legacy is only true when it differs from plain softmax along
 *    `axis` (i.e. axis is not the last dim);
 *  - graph_finalize() is idempotent: a finalized graph (or its clone)
 *    passes through unchanged; graph_check() verifies all of the above.
 *
 * Building a graph by hand (tests, the stage planner): add values with
 * graph_add_value() (node outputs may have ndim 0; finalize infers their
 * shapes and overwrites whatever was there, except the 1-input RESHAPE
 * form, whose output dims are the target shape), nodes with
 * graph_add_node() in any order, then graph_add_input()/graph_add_output()
 * and graph_finalize(). Before finalize these forms are also accepted:
 *  - CONV: inputs {x, W} or {x, W, -1} (zero bias added); attr fields left
 *    0 take defaults: kernel from W, strides/dilations 1, group 1;
 *  - GEMM: ONNX form {A, B, C?} with any alpha/beta/trans_a/trans_b;
 *    alpha or beta left 0 mean 1 (so a zeroed attr is a plain Gemm; the
 *    importer maps an ONNX beta of 0 to "no C");
 *  - BATCHNORM: ONNX form {x, gamma, beta, mean, var} with attr.bn.epsilon;
 *  - RESHAPE: {x, shape} with shape a constant i64 vector (ONNX Reshape,
 *    0 = copy the input dim, -1 = inferred); or {x} with the output value's
 *    dims set to the target shape;
 *  - MAXPOOL/AVGPOOL: strides/dilations left 0 mean 1;
 *  - CONCAT/FLATTEN/SOFTMAX: axis may be negative (counts from the end).
 *
 * A graph owns all its names, values, constants and nodes; free it with
 * graph_destroy().
 */
#ifndef DF_GRAPH_H
#define DF_GRAPH_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "tensor.h"

#define GRAPH_MAX_INPUTS 8  /* per node; Concat beyond this is rejected */
#define GRAPH_MAX_POSTOPS 4

typedef enum graph_op {
	GRAPH_OP_CONV = 0,
	GRAPH_OP_GEMM,          /* also MatMul with a constant 2-D right side */
	GRAPH_OP_MATMUL,        /* general MatMul (both sides computed) */
	GRAPH_OP_BATCHNORM,
	GRAPH_OP_RELU,
	GRAPH_OP_CLIP,
	GRAPH_OP_LEAKYRELU,
	GRAPH_OP_SIGMOID,
	GRAPH_OP_MAXPOOL,
	GRAPH_OP_AVGPOOL,
	GRAPH_OP_GLOBALAVGPOOL,
	GRAPH_OP_ADD,
	GRAPH_OP_MUL,
	GRAPH_OP_CONCAT,
	GRAPH_OP_FLATTEN,
	GRAPH_OP_RESHAPE,
	GRAPH_OP_SOFTMAX,
	GRAPH_OP_COUNT
} graph_op;

/* ONNX-style name of op ("Conv"). */
const char *graph_op_name(graph_op op);

typedef enum graph_act {
	GRAPH_ACT_RELU = 0,
	GRAPH_ACT_CLIP,       /* min(max(x, lo), hi); ReLU6 is lo=0, hi=6 */
	GRAPH_ACT_LEAKYRELU,  /* x >= 0 ? x : alpha * x */
	GRAPH_ACT_SIGMOID,
	GRAPH_ACT_COUNT
} graph_act;

typedef enum graph_postop_kind {
	GRAPH_POSTOP_ACT = 0, /* apply an activation */
	GRAPH_POSTOP_ADD,     /* add value `operand` (same shape as output) */
} graph_postop_kind;

typedef struct graph_postop {
	graph_postop_kind kind;
	graph_act act;       /* for GRAPH_POSTOP_ACT */
	float alpha, beta;   /* CLIP: lo, hi; LEAKYRELU: alpha */
	int operand;         /* for GRAPH_POSTOP_ADD: value index */
} graph_postop;

typedef struct graph_conv_attr {
	int64_t kernel[2];    /* kH, kW */
	int64_t strides[2];
	int64_t dilations[2];
	int64_t pads[4];      /* top, left, bottom, right (auto_pad resolved) */
	int64_t group;
} graph_conv_attr;

typedef struct graph_pool_attr {
	int64_t kernel[2];
	int64_t strides[2];
	int64_t pads[4];          /* top, left, bottom, right */
	int64_t dilations[2];     /* MaxPool only; 1 otherwise */
	bool ceil_mode;
	bool count_include_pad;   /* AveragePool only */
} graph_pool_attr;

typedef struct graph_gemm_attr {
	float alpha, beta;
	bool trans_a, trans_b;
} graph_gemm_attr;

typedef struct graph_node {
	graph_op op;
	char *name;                      /* ONNX node name, or "<op>_<index>" */
	int n_inputs;
	int inputs[GRAPH_MAX_INPUTS];    /* value indices; -1 = absent */
	int output;                      /* value index (single-output ops) */
	union {
		graph_conv_attr conv;        /* CONV */
		graph_pool_attr pool;        /* MAXPOOL, AVGPOOL */
		graph_gemm_attr gemm;        /* GEMM */
		struct { float epsilon; } bn;          /* BATCHNORM */
		struct { float lo, hi; } clip;         /* CLIP */
		struct { float alpha; } leaky;         /* LEAKYRELU */
		struct {
			int64_t axis;  /* normalized >= 0 */
			bool legacy;   /* SOFTMAX opset < 13 (see above) */
		} axis;                               /* CONCAT, FLATTEN, SOFTMAX */
	} attr;
	int n_postops;
	graph_postop postops[GRAPH_MAX_POSTOPS]; /* applied in order */
} graph_node;

typedef struct graph_value {
	char *name;
	int ndim;
	int64_t dims[TENSOR_MAX_DIMS];
	tensor *constant;  /* owned; NULL unless a constant */
	int producer;      /* node index, or -1 (graph input / constant) */
} graph_value;

typedef struct graph {
	int n_values;
	graph_value *values;
	int n_nodes;
	graph_node *nodes;
	int n_inputs;
	int *inputs;       /* value indices of graph inputs (non-constant) */
	int n_outputs;
	int *outputs;      /* value indices of graph outputs */
	int64_t opset;     /* default-domain opset the model was imported at */
	bool constants_released; /* graph_release_constant() freed some
	                          * constant data: names and shapes only */
	int values_cap;    /* allocated slots of values (internal) */
	int nodes_cap;     /* allocated slots of nodes (internal) */
} graph;

/* New empty graph. */
df_err graph_create(graph **out);

/* Frees g and everything it owns. graph_destroy(NULL) is a no-op. */
void graph_destroy(graph *g);

/* Appends a value (name copied; constant taken over, may be NULL) and
 * returns its index in *index. */
df_err graph_add_value(graph *g, const char *name, int ndim,
		       const int64_t *dims, tensor *constant, int *index);

/* Index of the value called name, or -1. */
int graph_find_value(const graph *g, const char *name);

/* Appends a node (name copied; node->name ignored) and sets the producer of
 * its output. Returns its index in *index (may be NULL). */
df_err graph_add_node(graph *g, const graph_node *node, const char *name,
		      int *index);

/*
 * Shape inference, constant folding, Identity/Dropout removal, BatchNorm
 * folding and post-op fusion, in that order; then checks the invariants
 * above. Errors name the offending node and op.
 */
df_err graph_finalize(graph *g);

/* Nodes reading value v (excluding the graph outputs list). */
int graph_value_consumers(const graph *g, int v);

/* Multiply-accumulate count of node n (0 for cheap element-wise ops). */
int64_t graph_node_macs(const graph *g, int n);

/* Bytes of constant inputs (weights, biases) of node n. */
int64_t graph_node_weight_bytes(const graph *g, int n);

/* ---- additions ---------------------------------------------------------- */

/* Appends value index v to g->inputs (a graph input: not a constant, not
 * produced by a node) / to g->outputs. */
df_err graph_add_input(graph *g, int v);
df_err graph_add_output(graph *g, int v);

/* New deep copy of g (values, constants, nodes, names). Free with
 * graph_destroy(). DF_EINVAL when g->constants_released. */
df_err graph_clone(const graph *g, graph **out);

/*
 * Infers the output shape of node n from its inputs' shapes and attributes,
 * stores it in the output value and normalizes the node's attributes
 * (negative axes, zero strides/dilations/group/kernel). Inputs must already
 * have shapes. Used by importers that need shapes while building (e.g. to
 * resolve auto_pad or fold Shape); graph_finalize() runs it on every node.
 * Errors name the node and op.
 */
df_err graph_infer_node(graph *g, int n);

/*
 * If every input of node n is a constant and the op can be evaluated at
 * build time (ADD, MUL, CONCAT, RESHAPE, FLATTEN, RELU, CLIP, LEAKYRELU,
 * SIGMOID, unfolded BATCHNORM), evaluates it: its output value becomes a
 * constant and node n is removed (later nodes move down by one index).
 * *folded says whether that happened. graph_infer_node() must have run on
 * n.
 */
df_err graph_fold_node(graph *g, int n, bool *folded);

/* Checks every invariant listed at the top of this file; DF_EINVAL naming
 * the first violation. graph_finalize() ends with it. */
df_err graph_check(const graph *g);

/* Element count of all constant inputs of node n (its parameters). */
int64_t graph_node_params(const graph *g, int n);

/* Floating-point operations of node n: 2 per MAC, plus one per output
 * element for bias, each post-op and element-wise op, and one per window
 * element for pooling. An estimate for cost models, not an exact count. */
int64_t graph_node_flops(const graph *g, int n);

/* Sums of the per-node counts over all nodes. A constant read by several
 * nodes counts once for params and weight bytes. */
int64_t graph_total_macs(const graph *g);
int64_t graph_total_flops(const graph *g);
int64_t graph_total_params(const graph *g);
int64_t graph_total_weight_bytes(const graph *g);

/*
 * Frees the data of constant value v for a caller that holds its own copy
 * (an engine made by engine_create_release()): the tensor keeps its dtype,
 * dims and numel (so parameter and byte counts still work), its data
 * becomes NULL, and g->constants_released is set. From then on g serves
 * only as metadata (names, shapes, nodes): graph_clone(), graph_finalize()
 * and engine_create() refuse it. A no-op when v is out of range, not a
 * constant, or already released.
 */
void graph_release_constant(graph *g, int v);

/* Name of a post-op activation ("Relu", "Clip", "LeakyRelu", "Sigmoid"). */
const char *graph_act_name(graph_act act);

#endif
