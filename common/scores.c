/* scores.c - see scores.h. */
#include "scores.h"

#include <math.h>
#include <stdlib.h>

size_t scores_argmax(const float *v, size_t n)
{
	size_t best = 0;
	for (size_t i = 1; i < n; i++)
		if (v[i] > v[best] || (isnan(v[best]) && !isnan(v[i])))
			best = i;
	return best;
}

bool scores_graph_is_softmax(const graph *g)
{
	if (g->n_outputs != 1)
		return false;
	int producer = g->values[g->outputs[0]].producer;
	return producer >= 0 && g->nodes[producer].op == GRAPH_OP_SOFTMAX;
}

static int by_score_desc(const void *a, const void *b)
{
	const score_entry *x = a, *y = b;
	bool xn = isnan(x->score), yn = isnan(y->score);
	if (xn != yn)
		return xn ? 1 : -1;
	if (!xn && x->score != y->score)
		return x->score > y->score ? -1 : 1;
	return (x->index > y->index) - (x->index < y->index);
}

df_err scores_rank(const float *v, size_t n, bool probabilities,
		   score_entry **out)
{
	if (n == 0)
		return df_errf(DF_EINVAL, "no scores to rank");
	score_entry *s = malloc(n * sizeof *s);
	if (!s)
		return DF_ENOMEM;
	double mx = -INFINITY, sum = 0;
	for (size_t i = 0; i < n; i++)
		if (v[i] > mx)
			mx = v[i];
	for (size_t i = 0; i < n; i++) {
		s[i].index = i;
		s[i].score = probabilities ? (double)v[i] : exp((double)v[i] - mx);
		sum += s[i].score;
	}
	if (!probabilities)
		for (size_t i = 0; i < n; i++)
			s[i].score = sum > 0 ? s[i].score / sum : 0.0;
	qsort(s, n, sizeof *s, by_score_desc);
	*out = s;
	return DF_OK;
}
