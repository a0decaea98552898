/*
 * scores.h - turning a model's output into an answer: the top-1 index, and
 * class scores ranked best first (softmax of logits, or the values as they
 * are when the graph already ends in Softmax). Shared by `dicefleet eval`,
 * `dicefleet classify`, the robustness evaluation and the gateway, so all
 * of them rank the same way (ties go to the lower index; NaN never wins).
 */
#ifndef DF_SCORES_H
#define DF_SCORES_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "graph.h"

typedef struct score_entry {
	size_t index;   /* class index */
	double score;   /* probability */
} score_entry;

/* Index of the largest of v[0..n) (the first on ties; NaN never wins). */
size_t scores_argmax(const float *v, size_t n);

/* True when g's single output is produced by a Softmax node. */
bool scores_graph_is_softmax(const graph *g);

/*
 * All n classes ranked best first: softmax of v, or v itself when
 * probabilities is true. *out is new (free()).
 */
df_err scores_rank(const float *v, size_t n, bool probabilities,
		   score_entry **out);

#endif
