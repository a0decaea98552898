/*
 * partition.c - the partitioning methods and the map validator (the JSON
 * form of a map is in partition_json.c).
 *
 * Balance bound: every method but layerwise gives each device
 * floor(N/D) or ceil(N/D) primary neurons of every stage of N neurons, and
 * since all neurons of a stage cost the same (stage.h), per-device primary
 * MACs and weight bytes differ by at most one neuron per stage. Replicas
 * (robustdice, random) go to the device holding the fewest replicas of the
 * stage so far, then a repair pass moves replicas from the fullest to the
 * emptiest device until per-stage replica counts differ by at most one, or
 * no move is legal (a replica never sits on its primary's device: with 2
 * devices every replica must go to the other one, so counts follow the
 * primaries of the replicated neurons). Sequential, layerwise and full put
 * replicas on the next device(s) in ring order (the classic neighbour
 * backup), so their replica counts follow the replicated neurons'
 * primaries: within 2 per stage for sequential and full. Layerwise is the
 * pipeline baseline: whole stages per device, balanced only as well as
 * contiguous runs of stages allow.
 */
#include "partition.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const method_names[] = {"sequential", "random", "layerwise",
					   "full", "robustdice"};
_Static_assert(sizeof method_names / sizeof method_names[0] ==
		       PARTITION_METHOD_COUNT,
	       "one name per partition method");
static const char *const score_names[] = {"l1", "act", "var"};
_Static_assert(sizeof score_names / sizeof score_names[0] ==
		       PARTITION_SCORE_COUNT,
	       "one name per score");

const char *partition_method_name(partition_method m)
{
	return (unsigned)m < PARTITION_METHOD_COUNT ? method_names[m] : "?";
}

df_err partition_method_parse(const char *s, partition_method *out)
{
	for (int i = 0; i < PARTITION_METHOD_COUNT; i++)
		if (s && strcmp(s, method_names[i]) == 0) {
			*out = (partition_method)i;
			return DF_OK;
		}
	return df_errf(DF_EINVAL,
		       "unknown method '%s' (sequential, random, layerwise, full, robustdice)",
		       s ? s : "");
}

const char *partition_score_name(partition_score s)
{
	return (unsigned)s < PARTITION_SCORE_COUNT ? score_names[s] : "?";
}

df_err partition_score_parse(const char *s, partition_score *out)
{
	for (int i = 0; i < PARTITION_SCORE_COUNT; i++)
		if (s && strcmp(s, score_names[i]) == 0) {
			*out = (partition_score)i;
			return DF_OK;
		}
	return df_errf(DF_EINVAL, "unknown score '%s' (l1, act, var)", s ? s : "");
}

void partition_params_default(partition_params *p)
{
	memset(p, 0, sizeof *p);
	p->method = PARTITION_ROBUSTDICE;
	p->ratio = 0.25;
	p->copies = 2;
	p->score = PARTITION_SCORE_L1;
	p->n_devices = 1;
	p->gateway_last = true;
}

/* splitmix64: small, seedable, good enough to shuffle neuron ids. */
static uint64_t rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void shuffle(int32_t *a, int64_t n, uint64_t *rng)
{
	for (int64_t i = n - 1; i > 0; i--) {
		int64_t j = (int64_t)(rng_next(rng) % (uint64_t)(i + 1));
		int32_t t = a[i];
		a[i] = a[j];
		a[j] = t;
	}
}

void partition_destroy(partition_map *m)
{
	if (!m)
		return;
	for (int s = 0; s < m->n_stages; s++) {
		free(m->stages[s].primary);
		free(m->stages[s].replicas);
	}
	free(m->stages);
	for (int d = 0; d < m->n_devices; d++)
		free(m->devices[d]);
	free(m->devices);
	free(m->model);
	free(m);
}

/* Neuron order for robustdice: descending score, ties by id. */
typedef struct scored {
	float score;
	int32_t id;
} scored;

static int cmp_scored(const void *a, const void *b)
{
	const scored *x = a, *y = b;
	bool xn = isnan(x->score), yn = isnan(y->score);
	if (xn != yn)
		return xn ? 1 : -1; /* NaN scores (broken weights) last */
	if (!xn && x->score != y->score)
		return x->score < y->score ? 1 : -1;
	return (x->id > y->id) - (x->id < y->id);
}

/* Number of neurons of a stage of n that get replicas at ratio r. */
static int64_t replica_budget(double r, int64_t n)
{
	int64_t k = (int64_t)llround(r * (double)n);
	return k < 0 ? 0 : k > n ? n : k;
}

/* Places the replicas of neuron i (primary p) on the devices with the
 * fewest replicas in this stage, skipping p and earlier copies. */
static void place_least_loaded(partition_stage *ps, int copies, int n_dev,
			       int64_t i, int64_t *stage_replicas)
{
	int32_t *rep = &ps->replicas[i * (copies - 1)];
	for (int c = 0; c < copies - 1; c++) {
		int best = -1;
		for (int d = 0; d < n_dev; d++) {
			if (d == ps->primary[i])
				continue;
			bool used = false;
			for (int k = 0; k < c; k++)
				used |= rep[k] == d;
			if (used)
				continue;
			if (best < 0 || stage_replicas[d] < stage_replicas[best])
				best = d;
		}
		rep[c] = best;
		if (best >= 0)
			stage_replicas[best]++;
	}
}

/* Moves replicas of a stage from its fullest to its emptiest devices
 * until the counts differ by at most one or no move is legal. */
static void rebalance_replicas(partition_stage *ps, int copies, int n_dev,
			       int64_t *count)
{
	const int reps = copies - 1;
	const int64_t n = ps->n_neurons;
	for (int64_t guard = 0; guard < n * reps + 1; guard++) {
		bool moved = false;
		for (int hi = 0; hi < n_dev && !moved; hi++) {
			for (int lo = 0; lo < n_dev && !moved; lo++) {
				if (count[hi] - count[lo] <= 1)
					continue;
				for (int64_t i = 0; i < n && !moved; i++) {
					int32_t *rep = &ps->replicas[i * reps];
					if (ps->primary[i] == lo)
						continue;
					int slot = -1;
					bool has_lo = false;
					for (int c = 0; c < reps; c++) {
						if (rep[c] == hi)
							slot = c;
						has_lo |= rep[c] == lo;
					}
					if (slot < 0 || has_lo)
						continue;
					rep[slot] = lo;
					count[hi]--;
					count[lo]++;
					moved = true;
				}
			}
		}
		if (!moved)
			return;
	}
}

/* Places replicas of neuron i on the next devices in ring order. */
static void place_ring(partition_stage *ps, int copies, int n_dev, int64_t i)
{
	int32_t *rep = &ps->replicas[i * (copies - 1)];
	for (int c = 0; c < copies - 1; c++)
		rep[c] = (ps->primary[i] + 1 + c) % n_dev;
}

/* Chooses which neurons of a stage of n get replicas, without importance:
 * k ids evenly spread over 0..n-1 (sequential, layerwise) or a seeded
 * random sample (random). */
static void pick_blind(bool *chosen, int64_t n, int64_t k, bool random,
		       uint64_t *rng, int32_t *scratch)
{
	if (n <= 0)
		return;
	memset(chosen, 0, (size_t)n * sizeof *chosen);
	if (random) {
		for (int64_t i = 0; i < n; i++)
			scratch[i] = (int32_t)i;
		shuffle(scratch, n, rng);
		for (int64_t j = 0; j < k; j++)
			chosen[scratch[j]] = true;
		return;
	}
	for (int64_t j = 0; j < k; j++)
		chosen[(j * n) / k] = true;
}

/* Index of the stage whose output ends up as the graph's answer: the last
 * NEURON stage, provided only LOCAL stages follow it. */
static int logits_stage(const stage_plan *plan)
{
	for (int s = plan->n_stages - 1; s >= 0; s--)
		if (plan->stages[s].kind == STAGE_NEURON)
			return s;
	return -1;
}

/* Layerwise: device of each stage by cumulative MACs (contiguous runs). */
static void layerwise_devices(const stage_plan *plan, const bool *dist,
			      int n_dev, int *dev)
{
	double total = 0, acc = 0;
	for (int s = 0; s < plan->n_stages; s++)
		if (dist[s])
			total += (double)plan->stages[s].macs;
	for (int s = 0; s < plan->n_stages; s++) {
		dev[s] = -1;
		if (!dist[s])
			continue;
		double mid = acc + (double)plan->stages[s].macs / 2;
		int d = total > 0 ? (int)(mid * n_dev / total) : 0;
		dev[s] = d >= n_dev ? n_dev - 1 : d;
		acc += (double)plan->stages[s].macs;
	}
}

static df_err fill_stage(const graph *g, const stage_plan *plan, int s,
			 const partition_params *pp, int copies, int layer_dev,
			 bool logits, partition_stage *ps, uint64_t *rng)
{
	const int n_dev = pp->n_devices;
	const int64_t n = ps->n_neurons;
	df_err err = DF_OK;
	scored *order = NULL;
	bool *chosen = calloc((size_t)n, sizeof *chosen);
	int32_t *perm = calloc((size_t)n, sizeof *perm);
	int64_t *stage_replicas = calloc((size_t)n_dev, sizeof *stage_replicas);
	float *l1 = NULL;
	ps->primary = calloc((size_t)n, sizeof *ps->primary);
	if (copies > 1)
		ps->replicas = malloc((size_t)n * (size_t)(copies - 1) *
				      sizeof *ps->replicas);
	if (!chosen || !perm || !stage_replicas || !ps->primary ||
	    (copies > 1 && !ps->replicas)) {
		err = DF_ENOMEM;
		goto out;
	}
	for (int64_t i = 0; i < n * (copies - 1); i++)
		ps->replicas[i] = -1;

	double ratio = pp->method == PARTITION_FULL || logits ? 1.0
		     : pp->stage_ratio ? pp->stage_ratio[s] : pp->ratio;
	int64_t k = copies > 1 ? replica_budget(ratio, n) : 0;

	switch (pp->method) {
	case PARTITION_SEQUENTIAL:
	case PARTITION_FULL:
		for (int64_t i = 0; i < n; i++)
			ps->primary[i] = (int32_t)((i * n_dev) / n);
		break;
	case PARTITION_LAYERWISE:
		for (int64_t i = 0; i < n; i++)
			ps->primary[i] = layer_dev;
		break;
	case PARTITION_RANDOM:
		for (int64_t i = 0; i < n; i++)
			perm[i] = (int32_t)i;
		shuffle(perm, n, rng);
		for (int64_t j = 0; j < n; j++)
			ps->primary[perm[j]] = (int32_t)((j * n_dev) / n);
		break;
	case PARTITION_ROBUSTDICE: {
		order = malloc((size_t)n * sizeof *order);
		if (!order) {
			err = DF_ENOMEM;
			goto out;
		}
		const float *sc = pp->scores ? pp->scores[s] : NULL;
		if (!sc) {
			l1 = malloc((size_t)n * sizeof *l1);
			if (!l1) {
				err = DF_ENOMEM;
				goto out;
			}
			err = stage_neuron_l1(g, plan, s, l1);
			if (err)
				goto out;
			sc = l1;
		}
		for (int64_t i = 0; i < n; i++)
			order[i] = (scored){sc[i], (int32_t)i};
		qsort(order, (size_t)n, sizeof *order, cmp_scored);
		/* Snake dealing: every device gets an equal share of every
		 * importance tier. */
		for (int64_t j = 0; j < n; j++) {
			int64_t round = j / n_dev, pos = j % n_dev;
			ps->primary[order[j].id] =
				(int32_t)(round % 2 == 0 ? pos : n_dev - 1 - pos);
		}
		for (int64_t j = 0; j < k; j++)
			chosen[order[j].id] = true;
		break;
	}
	default:
		err = df_errf(DF_EINVAL, "unknown method %d", (int)pp->method);
		goto out;
	}
	if (pp->method != PARTITION_ROBUSTDICE)
		pick_blind(chosen, n, k, pp->method == PARTITION_RANDOM, rng, perm);

	bool least = pp->method == PARTITION_RANDOM ||
		     pp->method == PARTITION_ROBUSTDICE;
	for (int64_t i = 0; i < n; i++) {
		if (!chosen[i])
			continue;
		if (least)
			place_least_loaded(ps, copies, n_dev, i, stage_replicas);
		else
			place_ring(ps, copies, n_dev, i);
	}
	if (least && copies > 1)
		rebalance_replicas(ps, copies, n_dev, stage_replicas);
out:
	free(order);
	free(chosen);
	free(perm);
	free(stage_replicas);
	free(l1);
	return err;
}

df_err partition_create(const graph *g, const stage_plan *plan,
			const partition_params *pp, partition_map **out)
{
	if (pp->n_devices < 1 || pp->n_devices > PARTITION_MAX_DEVICES)
		return df_errf(DF_EINVAL, "devices must be 1..%d, got %d",
			       PARTITION_MAX_DEVICES, pp->n_devices);
	if (!(pp->ratio >= 0 && pp->ratio <= 1))
		return df_errf(DF_EINVAL, "ratio must be in [0,1], got %g", pp->ratio);
	if (pp->copies < 1 || pp->copies > PARTITION_MAX_COPIES)
		return df_errf(DF_EINVAL, "copies must be 1..%d, got %d",
			       PARTITION_MAX_COPIES, pp->copies);
	if ((unsigned)pp->method >= PARTITION_METHOD_COUNT)
		return df_errf(DF_EINVAL, "unknown method %d", (int)pp->method);
	if (pp->method == PARTITION_ROBUSTDICE &&
	    pp->score != PARTITION_SCORE_L1 && !pp->scores)
		return df_errf(DF_EINVAL,
			       "score '%s' needs activation statistics from calibration images",
			       partition_score_name(pp->score));

	df_err err = DF_OK;
	int *layer_dev = NULL;
	bool *dist = NULL;
	partition_map *m = calloc(1, sizeof *m);
	if (!m)
		return DF_ENOMEM;
	m->method = pp->method;
	m->ratio = pp->method == PARTITION_FULL ? 1.0 : pp->ratio;
	/* A neuron cannot have more distinct holders than there are devices;
	 * `full` means two holders at least. */
	int copies = pp->copies;
	if (pp->method == PARTITION_FULL && copies < 2)
		copies = 2;
	if (copies > pp->n_devices)
		copies = pp->n_devices;
	m->copies = copies;
	m->score = pp->score;
	m->seed = pp->seed;
	m->n_devices = pp->n_devices;
	m->n_stages = plan->n_stages;
	m->devices = calloc((size_t)pp->n_devices, sizeof *m->devices);
	m->stages = calloc((size_t)plan->n_stages + 1, sizeof *m->stages);
	layer_dev = calloc((size_t)plan->n_stages + 1, sizeof *layer_dev);
	dist = calloc((size_t)plan->n_stages + 1, sizeof *dist);
	if (!m->devices || !m->stages || !layer_dev || !dist) {
		err = DF_ENOMEM;
		goto out;
	}
	for (int d = 0; d < pp->n_devices; d++) {
		char name[32];
		const char *id = name;
		if (pp->device_ids)
			id = pp->device_ids[d];
		else
			snprintf(name, sizeof name, "d%d", d);
		if (!id || !*id) {
			err = df_errf(DF_EINVAL, "device %d has no id", d);
			goto out;
		}
		m->devices[d] = strdup(id);
		if (!m->devices[d]) {
			err = DF_ENOMEM;
			goto out;
		}
	}
	/* The logits stage is never left unprotected: on the gateway, or
	 * (gateway_last off) every neuron replicated. */
	int logits = logits_stage(plan);
	if (!pp->gateway_last && logits >= 0 && copies < 2) {
		err = df_errf(DF_EINVAL,
			      "the logits stage must run on the gateway or have every neuron replicated (needs copies >= 2 and 2 devices)");
		goto out;
	}
	int last = pp->gateway_last ? logits : -1;
	for (int s = 0; s < plan->n_stages; s++) {
		const stage *st = &plan->stages[s];
		m->stages[s].n_neurons = st->kind == STAGE_NEURON ? st->n_neurons : 0;
		dist[s] = st->kind == STAGE_NEURON && s != last;
		m->stages[s].on_gateway = !dist[s];
		if (pp->stage_ratio && dist[s] &&
		    !(pp->stage_ratio[s] >= 0 && pp->stage_ratio[s] <= 1)) {
			err = df_errf(DF_EINVAL, "stage %d: ratio %g outside [0,1]", s,
				      pp->stage_ratio[s]);
			goto out;
		}
	}
	layerwise_devices(plan, dist, pp->n_devices, layer_dev);
	uint64_t rng = pp->seed ^ 0x64696365666c6565ULL; /* "diceflee" */
	for (int s = 0; s < plan->n_stages && !err; s++)
		if (dist[s])
			err = fill_stage(g, plan, s, pp, copies, layer_dev[s],
					 s == logits, &m->stages[s], &rng);
	if (!err)
		err = partition_validate(m, plan);
out:
	free(layer_dev);
	free(dist);
	if (err) {
		partition_destroy(m);
		return err;
	}
	*out = m;
	return DF_OK;
}

df_err partition_validate(const partition_map *m, const stage_plan *plan)
{
	if (m->n_devices < 1 || m->n_devices > PARTITION_MAX_DEVICES)
		return df_errf(DF_EINVAL, "map has %d devices (1..%d allowed)",
			       m->n_devices, PARTITION_MAX_DEVICES);
	if (m->copies < 1 || m->copies > m->n_devices ||
	    m->copies > PARTITION_MAX_COPIES)
		return df_errf(DF_EINVAL, "map copies %d not in 1..%d", m->copies,
			       m->n_devices < PARTITION_MAX_COPIES
				       ? m->n_devices : PARTITION_MAX_COPIES);
	for (int a = 0; a < m->n_devices; a++) {
		if (!m->devices[a] || !m->devices[a][0])
			return df_errf(DF_EINVAL, "device %d has no id", a);
		for (int b = 0; b < a; b++)
			if (strcmp(m->devices[a], m->devices[b]) == 0)
				return df_errf(DF_EINVAL, "device id '%s' listed twice",
					       m->devices[a]);
	}
	if (plan && plan->n_stages != m->n_stages)
		return df_errf(DF_EINVAL, "map has %d stages, the model has %d",
			       m->n_stages, plan->n_stages);
	const int reps = m->copies - 1;
	for (int s = 0; s < m->n_stages; s++) {
		const partition_stage *ps = &m->stages[s];
		if (plan) {
			const stage *st = &plan->stages[s];
			int64_t want = st->kind == STAGE_NEURON ? st->n_neurons : 0;
			if (ps->n_neurons != want)
				return df_errf(DF_EINVAL,
					       "stage %d (%s): map has %lld neurons, the model %lld",
					       s, st->name, (long long)ps->n_neurons,
					       (long long)want);
			if (st->kind == STAGE_LOCAL && !ps->on_gateway)
				return df_errf(DF_EINVAL,
					       "stage %d (%s) is local but assigned to devices",
					       s, st->name);
		}
		if (ps->n_neurons < 0)
			return df_errf(DF_EINVAL, "stage %d: negative neuron count", s);
		if (ps->on_gateway) {
			if (ps->primary || ps->replicas)
				return df_errf(DF_EINVAL,
					       "stage %d runs on the gateway but has devices", s);
			continue;
		}
		if (!ps->primary || ps->n_neurons == 0)
			return df_errf(DF_EINVAL, "stage %d: neurons without primaries", s);
		if (reps > 0 && !ps->replicas)
			return df_errf(DF_EINVAL, "stage %d: replica table missing", s);
		for (int64_t i = 0; i < ps->n_neurons; i++) {
			int32_t p = ps->primary[i];
			if (p < 0 || p >= m->n_devices)
				return df_errf(DF_EINVAL,
					       "stage %d neuron %lld: unknown primary device %d",
					       s, (long long)i, p);
			bool ended = false;
			for (int c = 0; c < reps; c++) {
				int32_t r = ps->replicas[i * reps + c];
				if (r == -1) {
					ended = true;
					continue;
				}
				if (ended || r < 0 || r >= m->n_devices)
					return df_errf(DF_EINVAL,
						       "stage %d neuron %lld: bad replica device %d",
						       s, (long long)i, r);
				if (r == p)
					return df_errf(DF_EINVAL,
						       "stage %d neuron %lld: replica on its primary's device %s",
						       s, (long long)i, m->devices[p]);
				for (int k = 0; k < c; k++)
					if (ps->replicas[i * reps + k] == r)
						return df_errf(DF_EINVAL,
							       "stage %d neuron %lld: two replicas on device %s",
							       s, (long long)i, m->devices[r]);
			}
		}
	}
	return DF_OK;
}

int partition_device_index(const partition_map *m, const char *id)
{
	for (int d = 0; d < m->n_devices; d++)
		if (strcmp(m->devices[d], id) == 0)
			return d;
	return -1;
}

df_err partition_loads(const partition_map *m, const stage_plan *plan,
		       partition_load *loads, partition_load *whole)
{
	df_err err = partition_validate(m, plan);
	if (err)
		return err;
	memset(loads, 0, (size_t)m->n_devices * sizeof *loads);
	partition_load w = {0};
	const int reps = m->copies - 1;
	for (int s = 0; s < m->n_stages; s++) {
		const partition_stage *ps = &m->stages[s];
		const stage *st = &plan->stages[s];
		if (ps->on_gateway)
			continue;
		w.primary_neurons += ps->n_neurons;
		w.macs += st->macs;
		w.weight_bytes += st->weight_bytes;
		for (int64_t i = 0; i < ps->n_neurons; i++) {
			partition_load *l = &loads[ps->primary[i]];
			l->primary_neurons++;
			l->macs += st->macs_per_neuron;
			l->weight_bytes += st->weight_bytes_per_neuron;
			for (int c = 0; c < reps; c++) {
				int32_t r = ps->replicas[i * reps + c];
				if (r < 0)
					continue;
				loads[r].replica_neurons++;
				loads[r].weight_bytes += st->weight_bytes_per_neuron;
			}
		}
	}
	if (whole)
		*whole = w;
	return DF_OK;
}

df_err partition_held(const partition_map *m, int s, int d, int32_t **ids,
		      size_t *n)
{
	if (s < 0 || s >= m->n_stages || d < 0 || d >= m->n_devices)
		return df_errf(DF_EINVAL, "stage %d / device %d out of range", s, d);
	const partition_stage *ps = &m->stages[s];
	const int reps = m->copies - 1;
	int32_t *out = malloc(((size_t)ps->n_neurons + 1) * sizeof *out);
	if (!out)
		return DF_ENOMEM;
	size_t k = 0;
	if (!ps->on_gateway) {
		for (int64_t i = 0; i < ps->n_neurons; i++)
			if (ps->primary[i] == d)
				out[k++] = (int32_t)i;
		for (int64_t i = 0; i < ps->n_neurons; i++)
			for (int c = 0; c < reps; c++)
				if (ps->replicas[i * reps + c] == d)
					out[k++] = (int32_t)i;
	}
	*ids = out;
	*n = k;
	return DF_OK;
}

df_err partition_device_sets(int n, int k, size_t max_combos, uint64_t seed,
			   uint64_t **masks, size_t *count)
{
	if (n < 1 || n > 63 || k < 0 || k > n)
		return df_errf(DF_EINVAL, "cannot fail %d of %d devices", k, n);
	if (max_combos == 0)
		return df_errf(DF_EINVAL, "max_combos must be at least 1");
	/* C(n, k), saturating */
	double total = 1;
	for (int i = 0; i < k; i++)
		total = total * (n - i) / (i + 1);
	size_t want = total <= (double)max_combos ? (size_t)(total + 0.5) : max_combos;
	uint64_t *out = malloc((want ? want : 1) * sizeof *out);
	if (!out)
		return DF_ENOMEM;
	size_t c = 0;
	if ((double)want >= total - 0.5) {
		/* enumerate all k-subsets in lexicographic order of indices */
		int idx[64];
		for (int i = 0; i < k; i++)
			idx[i] = i;
		while (c < want) {
			uint64_t m = 0;
			for (int i = 0; i < k; i++)
				m |= 1ULL << idx[i];
			out[c++] = m;
			int i = k - 1;
			while (i >= 0 && idx[i] == n - k + i)
				i--;
			if (i < 0)
				break;
			idx[i]++;
			for (int j = i + 1; j < k; j++)
				idx[j] = idx[j - 1] + 1;
		}
	} else {
		uint64_t rng = seed;
		while (c < want) {
			uint64_t m = 0;
			while (__builtin_popcountll(m) < k)
				m |= 1ULL << (rng_next(&rng) % (uint64_t)n);
			bool dup = false;
			for (size_t i = 0; i < c && !dup; i++)
				dup = out[i] == m;
			if (!dup)
				out[c++] = m;
		}
	}
	*masks = out;
	*count = c;
	return DF_OK;
}
