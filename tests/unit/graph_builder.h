/*
 * graph_builder.h - small model-shaped graphs for unit tests, built through
 * the graph.h API with seeded random weights: a ResNet-style and a
 * MobileNetV2-style network (odd channel counts on purpose), and helpers to
 * add layers. Aborts the test (cmocka fail) on any build error.
 */
#ifndef DF_TEST_GRAPH_BUILDER_H
#define DF_TEST_GRAPH_BUILDER_H

#include <stdint.h>

#include "graph.h"

typedef struct gb {
	graph *g;
	uint64_t rng;
	int counter;  /* for unique names */
} gb;

/* Starts a graph with one input [1, c, h, w]; returns the input value. */
int gb_begin(gb *b, uint64_t seed, int64_t c, int64_t h, int64_t w);

int gb_conv(gb *b, int x, int64_t cin, int64_t cout, int64_t k,
	    int64_t stride, int64_t pad, int64_t group);
int gb_bn(gb *b, int x, int64_t c);
int gb_relu(gb *b, int x);
int gb_relu6(gb *b, int x);
int gb_add(gb *b, int x, int y);
int gb_maxpool(gb *b, int x, int64_t k, int64_t stride);
int gb_gap(gb *b, int x);
int gb_flatten(gb *b, int x);
int gb_gemm(gb *b, int x, int64_t k, int64_t n);

/* Marks y as the output and finalizes; returns the graph (caller owns). */
graph *gb_end(gb *b, int y);

/* ResNet-style: stem, one identity block, one strided block with a 1x1
 * downsample, GAP, FC to 10. Input [1,3,12,12]. */
graph *gb_resnet(uint64_t seed);

/* MobileNetV2-style: stem conv+ReLU6, a t=1 block (depthwise + project),
 * a t=3 inverted residual with add, GAP, FC to 10. Input [1,3,12,12]. */
graph *gb_mobilenet(uint64_t seed);

/* VGG-style: two conv+BN+ReLU, max-pool, conv, max-pool, flatten, two FC.
 * Input [1,1,12,12]. */
graph *gb_vgg(uint64_t seed);

/* New f32 tensor of the given shape with seeded values in [-1, 1). */
tensor *gb_random_tensor(uint64_t seed, int ndim, const int64_t *dims);

/* Turns stage s of map m (placed on the gateway, e.g. the logits stage)
 * into a distributed stage without replicas, neurons dealt sequentially
 * over the map's devices. For tests of single-stage graphs, whose only
 * stage is the logits stage the planner keeps on the gateway. */
struct partition_map;
void gb_distribute_stage(struct partition_map *m, int s);

#endif
