/*
 * stage.h - splits a finalized graph into stages, and builds the graph that
 * computes an arbitrary subset of one stage's neurons.
 *
 * A NEURON stage starts at a channel-mixing node (Conv with group = 1, or
 * canonical Gemm with trans_a = false) and goes on through the channel-local
 * nodes that follow it (BatchNorm, activations, pooling, depthwise Conv,
 * Add/Mul whose other operand is per-channel or a full-size tensor the
 * gateway can slice), as long as each intermediate value has no other
 * consumer. Its neurons are the head's output channels (axis 1). A worker
 * that owns neuron set S computes the channels S of the stage output from
 * the full stage input plus the S-slices of any side inputs, so one stage
 * costs one round trip.
 *
 * Every other node belongs to a LOCAL stage (Flatten, Concat, Softmax,
 * grouped Conv, Add of two stage outputs, ...), run where the full tensors
 * are (the gateway).
 *
 * Stages are listed in an order in which they can run: every input of a
 * stage is a graph input, a constant, or the output of an earlier stage.
 *
 * Invariant tested in tests/unit/test_stage.c: for every NEURON stage and
 * any partition of 0..n_neurons-1 into disjoint subsets, scattering the
 * subset outputs into one tensor equals the full stage output.
 */
#ifndef DF_STAGE_H
#define DF_STAGE_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "graph.h"

typedef enum stage_kind {
	STAGE_NEURON = 0,
	STAGE_LOCAL,
	STAGE_KIND_COUNT
} stage_kind;

typedef struct stage {
	stage_kind kind;
	int n_nodes;
	int *nodes;          /* node indices into the graph, in run order */
	int n_inputs;
	int *inputs;         /* value indices read from outside the stage;
				for NEURON, inputs[0] is the main (full) input
				and the rest are side inputs sliced by neuron */
	int n_outputs;
	int *outputs;        /* values used outside the stage (NEURON: one) */
	int64_t n_neurons;   /* NEURON: output channels; LOCAL: 0 */
	int64_t macs_per_neuron;         /* NEURON: MACs of one channel */
	int64_t weight_bytes_per_neuron; /* NEURON: bytes of one channel */
	int64_t macs;        /* whole stage */
	int64_t weight_bytes;
	char *name;          /* head node's name, or the first node's */
} stage;

typedef struct stage_plan {
	int n_stages;
	stage *stages;
} stage_plan;

/* Stage name ("neuron"/"local"). */
const char *stage_kind_name(stage_kind kind);

/* Plans the stages of g (borrowed; the plan refers to its indices). Free
 * with stage_plan_destroy(). */
df_err stage_plan_create(const graph *g, stage_plan **out);

void stage_plan_destroy(stage_plan *p);

/* The stage that produces value v, or -1 (graph input / constant). */
int stage_plan_producer(const stage_plan *p, int v);

/*
 * New graph computing neurons ids[0..n) of NEURON stage s, in that order.
 * Its inputs are: the stage's main input (full shape), then each side input
 * with n channels on axis 1 (the slices ids of the original); its single
 * output has n channels on axis 1. It holds only the selected neurons'
 * weights. ids must be distinct and in range (DF_EINVAL otherwise).
 * For a LOCAL stage ids must be NULL and n 0: the result runs the stage's
 * nodes on full tensors, with inputs and outputs as in stage->inputs and
 * stage->outputs. Free with graph_destroy().
 */
df_err stage_subgraph(const graph *g, const stage_plan *p, int s,
		      const int32_t *ids, size_t n, graph **out);

/*
 * Importance of each neuron of NEURON stage s by L1 norm of its (BN-folded)
 * head filter row: out[i] = sum |W[i, ...]|. out has n_neurons entries.
 */
df_err stage_neuron_l1(const graph *g, const stage_plan *p, int s,
		       float *out);

#endif
