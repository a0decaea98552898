/*
 * shard.c - held subgraphs per stage and a small LRU of subset engines.
 *
 * The held subgraph of a stage computes the held neurons H (ascending). A
 * subset R of H is built from the held subgraph itself: its one NEURON stage
 * is sliced to R's positions within H, so a shard never needs the full
 * model after creation.
 */
#include "shard.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef struct subset_entry {
	int32_t *ids;     /* neuron ids (ascending); NULL = free slot */
	size_t n;
	graph *g;         /* NULL when ids equal the held set (uses held) */
	engine *e;
	uint64_t used;    /* LRU clock */
} subset_entry;

typedef struct shard_stage {
	int32_t *held;        /* ascending */
	size_t n_held;
	int32_t *pos;         /* neuron id -> index in held, or -1 */
	int64_t n_neurons;
	int n_inputs;
	graph *g;             /* held subgraph */
	stage_plan *plan;     /* its plan: one NEURON stage */
	subset_entry cache[SHARD_CACHE];
} shard_stage;

struct shard {
	int n_stages;
	shard_stage *stages;
	engine_kind kind;
	int threads;
	uint64_t clock;
	int64_t weight_bytes;
};

static int cmp_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	return (x > y) - (x < y);
}

static void entry_clear(subset_entry *e)
{
	engine_destroy(e->e);
	graph_destroy(e->g);
	free(e->ids);
	memset(e, 0, sizeof *e);
}

void shard_destroy(shard *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->n_stages; i++) {
		shard_stage *ss = &s->stages[i];
		for (int c = 0; c < SHARD_CACHE; c++)
			entry_clear(&ss->cache[c]);
		stage_plan_destroy(ss->plan);
		graph_destroy(ss->g);
		free(ss->held);
		free(ss->pos);
	}
	free(s->stages);
	free(s);
}

static df_err stage_init(shard *s, const graph *g, const stage_plan *p,
			 const partition_map *m, int device, int st)
{
	shard_stage *ss = &s->stages[st];
	df_err err = partition_held(m, st, device, &ss->held, &ss->n_held);
	if (err || ss->n_held == 0)
		return err;
	qsort(ss->held, ss->n_held, sizeof *ss->held, cmp_i32);
	ss->n_neurons = p->stages[st].n_neurons;
	ss->n_inputs = p->stages[st].n_inputs;
	ss->pos = malloc((size_t)ss->n_neurons * sizeof *ss->pos);
	if (!ss->pos)
		return DF_ENOMEM;
	for (int64_t i = 0; i < ss->n_neurons; i++)
		ss->pos[i] = -1;
	for (size_t i = 0; i < ss->n_held; i++)
		ss->pos[ss->held[i]] = (int32_t)i;
	err = stage_subgraph(g, p, st, ss->held, ss->n_held, &ss->g);
	if (!err)
		err = stage_plan_create(ss->g, &ss->plan);
	if (!err && (ss->plan->n_stages != 1 ||
		     ss->plan->stages[0].kind != STAGE_NEURON))
		err = df_errf(DF_EINTERNAL, "stage %s: held subgraph is not one stage",
			      p->stages[st].name);
	if (!err)
		s->weight_bytes += graph_total_weight_bytes(ss->g);
	return err;
}

df_err shard_create(const graph *g, const stage_plan *p,
		    const partition_map *m, int device, engine_kind kind,
		    int threads, shard **out)
{
	if (device < 0 || device >= m->n_devices)
		return df_errf(DF_EINVAL, "device %d not in the map", device);
	df_err err = partition_validate(m, p);
	if (err)
		return err;
	shard *s = calloc(1, sizeof *s);
	if (!s)
		return DF_ENOMEM;
	s->n_stages = p->n_stages;
	s->kind = kind;
	s->threads = threads;
	s->stages = calloc((size_t)p->n_stages + 1, sizeof *s->stages);
	if (!s->stages)
		err = DF_ENOMEM;
	for (int st = 0; st < p->n_stages && !err; st++)
		err = stage_init(s, g, p, m, device, st);
	if (err) {
		shard_destroy(s);
		return err;
	}
	*out = s;
	return DF_OK;
}

int64_t shard_weight_bytes(const shard *s)
{
	return s->weight_bytes;
}

const int32_t *shard_held(const shard *s, int st, size_t *n)
{
	if (st < 0 || st >= s->n_stages) {
		*n = 0;
		return NULL;
	}
	*n = s->stages[st].n_held;
	return s->stages[st].held;
}

int shard_stage_inputs(const shard *s, int st)
{
	if (st < 0 || st >= s->n_stages || !s->stages[st].n_held)
		return 0;
	return s->stages[st].n_inputs;
}

/* Finds or builds the engine for subset ids of stage ss. */
static df_err subset_engine(shard *s, shard_stage *ss, const int32_t *ids,
			    size_t n, engine **out)
{
	subset_entry *victim = &ss->cache[0];
	for (int c = 0; c < SHARD_CACHE; c++) {
		subset_entry *e = &ss->cache[c];
		if (e->ids && e->n == n &&
		    memcmp(e->ids, ids, n * sizeof *ids) == 0) {
			e->used = ++s->clock;
			*out = e->e;
			return DF_OK;
		}
		if (!e->ids || (victim->ids && e->used < victim->used))
			victim = e;
	}
	subset_entry fresh = {0};
	df_err err = DF_OK;
	fresh.ids = malloc(n * sizeof *fresh.ids);
	int32_t *local = malloc(n * sizeof *local);
	if (!fresh.ids || !local) {
		err = DF_ENOMEM;
		goto out;
	}
	memcpy(fresh.ids, ids, n * sizeof *ids);
	fresh.n = n;
	const graph *run_g = ss->g;
	if (n != ss->n_held) {
		for (size_t i = 0; i < n; i++)
			local[i] = ss->pos[ids[i]];
		err = stage_subgraph(ss->g, ss->plan, 0, local, n, &fresh.g);
		if (err)
			goto out;
		run_g = fresh.g;
	}
	/* A subset's subgraph belongs to this entry alone: the engine may
	 * free its weights once it has its own copy (the held subgraph
	 * serves every other subset, so it is only borrowed). */
	err = fresh.g ? engine_create_release(fresh.g, s->kind, s->threads, &fresh.e)
		      : engine_create(run_g, s->kind, s->threads, &fresh.e);
	if (err)
		goto out;
	entry_clear(victim);
	fresh.used = ++s->clock;
	*victim = fresh;
	memset(&fresh, 0, sizeof fresh);
	*out = victim->e;
out:
	free(local);
	entry_clear(&fresh);
	return err;
}

df_err shard_run(shard *s, int st, const int32_t *ids, size_t n,
		 const tensor *const *inputs, int n_inputs, tensor **out)
{
	if (st < 0 || st >= s->n_stages || s->stages[st].n_held == 0)
		return df_errf(DF_ENOENT, "stage %d is not held by this device", st);
	shard_stage *ss = &s->stages[st];
	if (n == 0 || n > ss->n_held)
		return df_errf(DF_EINVAL, "stage %d: %zu neurons requested, %zu held",
			       st, n, ss->n_held);
	if (n_inputs != ss->n_inputs)
		return df_errf(DF_EINVAL, "stage %d takes %d inputs, got %d", st,
			       ss->n_inputs, n_inputs);
	for (size_t i = 0; i < n; i++) {
		if (ids[i] < 0 || ids[i] >= ss->n_neurons || ss->pos[ids[i]] < 0)
			return df_errf(DF_ENOENT, "stage %d: neuron %d is not held here",
				       st, ids[i]);
		if (i > 0 && ids[i] <= ids[i - 1])
			return df_errf(DF_EINVAL, "stage %d: neuron ids must ascend", st);
	}
	engine *e = NULL;
	df_err err = subset_engine(s, ss, ids, n, &e);
	if (err)
		return err;
	tensor *outs[1] = {NULL};
	err = engine_run(e, inputs, outs);
	if (err)
		return err;
	*out = outs[0];
	return DF_OK;
}
