/*
 * runner.c - the stage-by-stage request path and the in-process simulator.
 *
 * Per request the runner keeps one tensor per graph value that crosses a
 * stage boundary (stage inputs and outputs), frees each when no later
 * stage needs it, and assembles distributed stage outputs with
 * tensor_scatter(). Call lists are built in device order and neuron ids
 * ascend within a call, so a device sees the same subset for the same
 * failure pattern, which keeps the shard engine caches warm.
 */
#include "runner.h"

#include <stdlib.h>
#include <string.h>

#include "shard.h"

static const char *const replica_names[] = {"standby", "active"};
_Static_assert(sizeof replica_names / sizeof replica_names[0] ==
		       REPLICA_MODE_COUNT,
	       "one name per replica mode");

const char *replica_mode_name(replica_mode m)
{
	return (unsigned)m < REPLICA_MODE_COUNT ? replica_names[m] : "?";
}

df_err replica_mode_parse(const char *s, replica_mode *out)
{
	for (int i = 0; i < REPLICA_MODE_COUNT; i++)
		if (s && strcmp(s, replica_names[i]) == 0) {
			*out = (replica_mode)i;
			return DF_OK;
		}
	return df_errf(DF_EINVAL, "unknown replica mode '%s' (standby, active)",
		       s ? s : "");
}

typedef struct local_stage {
	graph *g;     /* subgraph run at the gateway; NULL if distributed */
	engine *e;
} local_stage;

struct runner {
	const graph *g;
	const stage_plan *p;
	const partition_map *m;
	runner_options opt;
	local_stage *local;   /* [n_stages] */
	int *last_use;        /* [n_values] last stage reading the value */
	runner_observer observe;
	void *observe_ctx;
	int64_t neurons_total;
};

void runner_destroy(runner *r)
{
	if (!r)
		return;
	for (int s = 0; r->local && s < r->p->n_stages; s++) {
		engine_destroy(r->local[s].e);
		graph_destroy(r->local[s].g);
	}
	free(r->local);
	free(r->last_use);
	free(r);
}

df_err runner_create(const graph *g, const stage_plan *p,
		     const partition_map *m, const runner_options *opt,
		     runner **out)
{
	if (g->n_inputs != 1 || g->n_outputs != 1)
		return df_errf(DF_ENOTSUP, "the runner needs a model with one input and one output (this one has %d and %d)",
			       g->n_inputs, g->n_outputs);
	df_err err = partition_validate(m, p);
	if (err)
		return err;
	if (opt->impute != IMPUTE_ZERO && !opt->stats)
		return df_errf(DF_EINVAL, "impute %s needs calibration statistics",
			       impute_mode_name(opt->impute));
	runner *r = calloc(1, sizeof *r);
	if (!r)
		return DF_ENOMEM;
	r->g = g;
	r->p = p;
	r->m = m;
	r->opt = *opt;
	r->local = calloc((size_t)p->n_stages + 1, sizeof *r->local);
	r->last_use = malloc(((size_t)g->n_values + 1) * sizeof *r->last_use);
	if (!r->local || !r->last_use) {
		err = DF_ENOMEM;
		goto out;
	}
	for (int v = 0; v < g->n_values; v++)
		r->last_use[v] = -1;
	for (int s = 0; s < p->n_stages; s++) {
		const stage *st = &p->stages[s];
		for (int i = 0; i < st->n_inputs; i++)
			r->last_use[st->inputs[i]] = s;
		if (st->kind == STAGE_NEURON)
			r->neurons_total += st->n_neurons;
	}
	for (int i = 0; i < g->n_outputs; i++)
		r->last_use[g->outputs[i]] = p->n_stages;
	for (int s = 0; s < p->n_stages && !err; s++) {
		const stage *st = &p->stages[s];
		if (!m->stages[s].on_gateway)
			continue;
		if (st->kind == STAGE_LOCAL) {
			err = stage_subgraph(g, p, s, NULL, 0, &r->local[s].g);
		} else {
			int32_t *all = malloc((size_t)st->n_neurons * sizeof *all);
			if (!all) {
				err = DF_ENOMEM;
				break;
			}
			for (int64_t i = 0; i < st->n_neurons; i++)
				all[i] = (int32_t)i;
			err = stage_subgraph(g, p, s, all, (size_t)st->n_neurons,
					     &r->local[s].g);
			free(all);
		}
		if (!err)
			err = engine_create(r->local[s].g, opt->kind, opt->threads,
					    &r->local[s].e);
	}
out:
	if (err) {
		runner_destroy(r);
		return err;
	}
	*out = r;
	return DF_OK;
}

void runner_set_observer(runner *r, runner_observer fn, void *ctx)
{
	r->observe = fn;
	r->observe_ctx = ctx;
}

/* Per-request scratch for one distributed stage. */
typedef struct stage_job {
	const stage *st;
	const partition_stage *ps;
	int reps;
	const tensor *const *inputs;   /* full stage inputs */
	tensor *out;                   /* assembled output */
	bool *done;                    /* [n_neurons] */
	int64_t n_done;
	bool *collected;               /* per call of the current round */
	int32_t *ids;                  /* scratch: ids per call, packed */
	runner_call *calls;
	tensor **slices;               /* side-input slices per call */
	const tensor **call_inputs;    /* per call: n_inputs pointers */
	size_t n_calls;
} stage_job;

static bool holds(const stage_job *j, int64_t i, int d, bool replicas_only)
{
	if (!replicas_only && j->ps->primary[i] == d)
		return true;
	for (int c = 0; c < j->reps; c++)
		if (j->ps->replicas[i * j->reps + c] == d)
			return true;
	return false;
}

/* Adds a call for device d computing ids[0..n) (already in j->ids at
 * offset). */
static df_err add_call(stage_job *j, int s, int d, int round, int32_t *ids,
		       size_t n)
{
	runner_call *c = &j->calls[j->n_calls];
	const int ni = j->st->n_inputs;
	if (ni < 1)
		return df_errf(DF_EINTERNAL, "stage %s has no main input", j->st->name);
	const tensor **ins = j->call_inputs + j->n_calls * (size_t)ni;
	tensor **sl = j->slices + j->n_calls * (size_t)ni;
	ins[0] = j->inputs[0];
	for (int i = 1; i < ni; i++) {
		df_err err = tensor_gather(j->inputs[i], 1, ids, n, &sl[i]);
		if (err)
			return err;
		ins[i] = sl[i];
	}
	*c = (runner_call){.device = d, .stage = s, .round = round, .ids = ids,
			   .n = n, .inputs = ins, .n_inputs = ni,
			   .status = DF_EUNAVAIL};
	j->n_calls++;
	return DF_OK;
}

/* Does a device's answer have the shape of n channels of the stage output?
 * Anything else is treated as that device failing, never trusted. */
static bool shape_fits(const tensor *t, const tensor *out, size_t n)
{
	if (!t || t->dtype != TENSOR_F32 || t->ndim != out->ndim)
		return false;
	for (int i = 0; i < t->ndim; i++)
		if (t->dims[i] != (i == 1 ? (int64_t)n : out->dims[i]))
			return false;
	return true;
}

/* Assembles one finished call into the stage output. A failed call (or
 * an answer of the wrong shape) marks its device failed for the request;
 * a cancelled one is simply dropped. */
static df_err collect_one(stage_job *j, runner_call *c, uint64_t *failed,
			  runner_result *res, bool replica_round)
{
	df_err err = DF_OK;
	size_t k = (size_t)(c - j->calls);
	const int ni = j->st->n_inputs;
	for (int i = 1; i < ni; i++) {
		tensor_destroy(j->slices[k * (size_t)ni + (size_t)i]);
		j->slices[k * (size_t)ni + (size_t)i] = NULL;
	}
	if (j->collected[k])
		return DF_OK;
	j->collected[k] = true;
	if (c->cancelled) {
		tensor_destroy(c->output);
		c->output = NULL;
		return DF_OK;
	}
	if (c->status != DF_OK || !shape_fits(c->output, j->out, c->n)) {
		*failed |= 1ULL << c->device;
		tensor_destroy(c->output);
		c->output = NULL;
		return DF_OK;
	}
	/* First answer wins: skip neurons already assembled. */
	size_t fresh = 0;
	for (size_t i = 0; i < c->n; i++)
		fresh += !j->done[c->ids[i]];
	if (fresh == c->n) {
		err = tensor_scatter(j->out, 1, c->ids, c->n, c->output);
	} else if (fresh > 0) {
		for (size_t i = 0; i < c->n && !err; i++) {
			if (j->done[c->ids[i]])
				continue;
			tensor *one = NULL;
			int32_t at = (int32_t)i;
			err = tensor_gather(c->output, 1, &at, 1, &one);
			if (!err)
				err = tensor_scatter(j->out, 1, &c->ids[i], 1, one);
			tensor_destroy(one);
		}
	}
	for (size_t i = 0; i < c->n && !err; i++) {
		int32_t id = c->ids[i];
		if (j->done[id])
			continue;
		j->done[id] = true;
		j->n_done++;
		res->neurons_computed++;
		if (replica_round || j->ps->primary[id] != c->device)
			res->neurons_replica++;
	}
	tensor_destroy(c->output);
	c->output = NULL;
	return err;
}

/* State the done() callback needs. */
typedef struct collect_ctx {
	stage_job *j;
	uint64_t *failed;
	runner_result *res;
	bool replica_round;
	df_err err;
} collect_ctx;

static bool on_call_done(void *ctx, runner_call *c)
{
	collect_ctx *cc = ctx;
	if (c < cc->j->calls || c >= cc->j->calls + cc->j->n_calls)
		return false; /* not one of ours: ignore */
	df_err err = collect_one(cc->j, c, cc->failed, cc->res, cc->replica_round);
	if (err && !cc->err)
		cc->err = err;
	return cc->err != DF_OK || cc->j->n_done == cc->j->ps->n_neurons;
}

/* Issues the planned calls and assembles their answers. */
static df_err execute_round(stage_job *j, const runner_backend *be,
			    uint64_t *failed, runner_result *res,
			    bool replica_round)
{
	collect_ctx cc = {j, failed, res, replica_round, DF_OK};
	memset(j->collected, 0, j->n_calls * sizeof *j->collected);
	if (j->n_calls) {
		res->calls += (int)j->n_calls;
		if (be->execute_until)
			be->execute_until(be->ctx, j->calls, j->n_calls, on_call_done,
					  &cc);
		else
			be->execute(be->ctx, j->calls, j->n_calls);
	}
	/* whatever the backend did not report (plain execute) */
	for (size_t k = 0; k < j->n_calls; k++) {
		df_err err = collect_one(j, &j->calls[k], failed, res, replica_round);
		if (err && !cc.err)
			cc.err = err;
	}
	j->n_calls = 0;
	return cc.err;
}

/* The first replica holder of neuron i not in dead, or -1. */
static int first_live_replica(const stage_job *j, int64_t i, uint64_t dead)
{
	for (int c = 0; c < j->reps; c++) {
		int d = j->ps->replicas[i * j->reps + c];
		if (d >= 0 && d < 64 && !((dead >> d) & 1))
			return d;
	}
	return -1;
}

/*
 * Round 1: each device's primaries; in ACTIVE mode also every replica it
 * holds; in STANDBY mode, for a primary already known dead (down mask, or
 * failed earlier in this request), its first live replica holder, so a
 * known failure costs no extra round trip. Round 2: the first live holder
 * of each neuron still missing.
 */
static df_err plan_round(stage_job *j, int s, int n_dev, uint64_t dead,
			 int round, bool active)
{
	int32_t *cursor = j->ids;
	const int64_t n = j->ps->n_neurons;
	bool *claimed = NULL;
	if (round == 2) {
		claimed = calloc((size_t)n, sizeof *claimed);
		if (!claimed)
			return DF_ENOMEM;
	}
	df_err err = DF_OK;
	for (int d = 0; d < n_dev && !err; d++) {
		if ((dead >> d) & 1)
			continue;
		size_t k = 0;
		for (int64_t i = 0; i < n; i++) {
			bool take;
			int p = j->ps->primary[i];
			if (round == 1)
				take = p == d || (active && holds(j, i, d, true)) ||
				       (!active && p >= 0 && p < 64 &&
					((dead >> p) & 1) &&
					first_live_replica(j, i, dead) == d);
			else
				take = !j->done[i] && !claimed[i] &&
				       holds(j, i, d, true);
			if (take) {
				cursor[k++] = (int32_t)i;
				if (claimed)
					claimed[i] = true;
			}
		}
		if (k == 0)
			continue;
		err = add_call(j, s, d, round, cursor, k);
		cursor += k;
	}
	free(claimed);
	return err;
}

static df_err run_distributed(runner *r, int s, const tensor *const *inputs,
			      uint64_t *dead, const runner_backend *be,
			      tensor **out, runner_result *res)
{
	const stage *st = &r->p->stages[s];
	const partition_stage *ps = &r->m->stages[s];
	const int n_dev = r->m->n_devices;
	const int ni = st->n_inputs;
	const size_t max_calls = (size_t)n_dev * 2;
	stage_job j = {.st = st, .ps = ps, .reps = r->m->copies - 1,
		       .inputs = inputs};
	df_err err = DF_OK;
	bool *missing = NULL;
	const graph_value *ov = &r->g->values[st->outputs[0]];
	/* every channel is written: by an answer, or by impute_apply() */
	err = tensor_create_uninit(TENSOR_F32, ov->ndim, ov->dims, &j.out);
	if (err)
		return err;
	/* ids: round 1 uses at most n (+ replicas in active mode) entries */
	size_t id_cap = (size_t)ps->n_neurons * (size_t)(j.reps + 1) + 1;
	j.done = calloc((size_t)ps->n_neurons, sizeof *j.done);
	j.ids = malloc(id_cap * sizeof *j.ids);
	j.calls = calloc(max_calls, sizeof *j.calls);
	j.slices = calloc(max_calls * (size_t)ni, sizeof *j.slices);
	j.call_inputs = calloc(max_calls * (size_t)ni, sizeof *j.call_inputs);
	j.collected = calloc(max_calls, sizeof *j.collected);
	missing = calloc((size_t)ps->n_neurons, sizeof *missing);
	if (!j.done || !j.ids || !j.calls || !j.slices || !j.call_inputs ||
	    !j.collected || !missing) {
		err = DF_ENOMEM;
		goto out;
	}
	bool active = r->opt.replicas == REPLICA_ACTIVE;
	err = plan_round(&j, s, n_dev, *dead, 1, active);
	if (err)
		goto out;
	err = execute_round(&j, be, dead, res, false);
	if (err)
		goto out;
	/* One bounded extra round for what is missing, if anyone can help. */
	bool any_missing = false;
	for (int64_t i = 0; i < ps->n_neurons; i++)
		any_missing |= !j.done[i];
	if (any_missing && j.reps > 0) {
		err = plan_round(&j, s, n_dev, *dead, 2, active);
		if (err)
			goto out;
		err = execute_round(&j, be, dead, res, true);
		if (err)
			goto out;
	}
	int64_t n_missing = 0;
	for (int64_t i = 0; i < ps->n_neurons; i++) {
		missing[i] = !j.done[i];
		n_missing += missing[i];
	}
	if (n_missing) {
		bool fell_back = false;
		err = impute_apply(r->opt.impute, r->opt.stats, r->opt.recon, s,
				   j.out, missing, &fell_back);
		res->neurons_imputed += n_missing;
		res->recon_fallbacks += fell_back;
	}
out:
	if (j.calls)
		for (size_t k = 0; k < max_calls; k++)
			tensor_destroy(j.calls[k].output);
	if (j.slices)
		for (size_t k = 0; k < max_calls * (size_t)ni; k++)
			tensor_destroy(j.slices[k]);
	free(j.done);
	free(j.ids);
	free(j.calls);
	free(j.slices);
	free(j.call_inputs);
	free(j.collected);
	free(missing);
	if (err) {
		tensor_destroy(j.out);
		return err;
	}
	*out = j.out;
	return DF_OK;
}

df_err runner_infer(runner *r, const tensor *input, uint64_t down_mask,
		    const runner_backend *be, tensor **out,
		    runner_result *res_out)
{
	const graph *g = r->g;
	const stage_plan *p = r->p;
	runner_result res = {0};
	uint64_t dead = down_mask;
	df_err err = DF_OK;
	tensor **vals = calloc((size_t)g->n_values + 1, sizeof *vals);
	if (!vals)
		return DF_ENOMEM;
	err = tensor_clone(input, &vals[g->inputs[0]]);
	for (int s = 0; s < p->n_stages && !err; s++) {
		const stage *st = &p->stages[s];
		const tensor *ins[GRAPH_MAX_INPUTS * 4];
		if (st->n_inputs > (int)(sizeof ins / sizeof ins[0])) {
			err = df_errf(DF_ENOTSUP, "stage %s has too many inputs", st->name);
			break;
		}
		for (int i = 0; i < st->n_inputs; i++) {
			ins[i] = vals[st->inputs[i]];
			if (!ins[i])
				err = df_errf(DF_EINTERNAL, "stage %s: input %s not computed",
					      st->name, g->values[st->inputs[i]].name);
		}
		if (err)
			break;
		tensor *outs[GRAPH_MAX_INPUTS * 4] = {NULL};
		if (st->n_outputs > (int)(sizeof outs / sizeof outs[0])) {
			err = df_errf(DF_ENOTSUP, "stage %s has too many outputs", st->name);
			break;
		}
		if (r->local[s].e) {
			err = engine_run(r->local[s].e, ins, outs);
			if (!err && st->kind == STAGE_NEURON)
				res.neurons_computed += st->n_neurons;
		} else {
			err = run_distributed(r, s, ins, &dead, be, &outs[0], &res);
		}
		for (int i = 0; i < st->n_outputs; i++) {
			if (!err && r->observe && st->kind == STAGE_NEURON)
				err = r->observe(r->observe_ctx, s, outs[i]);
			vals[st->outputs[i]] = outs[i];
		}
		/* Free what no later stage reads. */
		for (int i = 0; i < st->n_inputs; i++) {
			int v = st->inputs[i];
			if (r->last_use[v] == s) {
				tensor_destroy(vals[v]);
				vals[v] = NULL;
			}
		}
	}
	if (!err) {
		*out = vals[g->outputs[0]];
		vals[g->outputs[0]] = NULL;
	}
	for (int v = 0; v < g->n_values; v++)
		tensor_destroy(vals[v]);
	free(vals);
	if (!err && res_out) {
		res.neurons_total = r->neurons_total;
		res.coverage = r->neurons_total
			? (double)res.neurons_computed / (double)r->neurons_total
			: 1.0;
		res.failed_devices = dead;
		*res_out = res;
	}
	return err;
}

/* ---- simulator ------------------------------------------------------- */

struct sim {
	int n_devices;
	shard **shards;
	uint64_t failing;
};

void sim_destroy(sim *s)
{
	if (!s)
		return;
	for (int d = 0; d < s->n_devices; d++)
		shard_destroy(s->shards[d]);
	free(s->shards);
	free(s);
}

df_err sim_create(const graph *g, const stage_plan *p, const partition_map *m,
		  engine_kind kind, int threads, sim **out)
{
	sim *s = calloc(1, sizeof *s);
	if (!s)
		return DF_ENOMEM;
	s->n_devices = m->n_devices;
	s->shards = calloc((size_t)m->n_devices, sizeof *s->shards);
	df_err err = s->shards ? DF_OK : DF_ENOMEM;
	for (int d = 0; d < m->n_devices && !err; d++)
		err = shard_create(g, p, m, d, kind, threads, &s->shards[d]);
	if (err) {
		sim_destroy(s);
		return err;
	}
	*out = s;
	return DF_OK;
}

void sim_set_failing(sim *s, uint64_t mask)
{
	s->failing = mask;
}

static void sim_execute_until(void *ctx, runner_call *calls, size_t n,
			      runner_call_done done, void *done_ctx)
{
	sim *s = ctx;
	for (size_t i = 0; i < n; i++) {
		runner_call *c = &calls[i];
		c->output = NULL;
		if (c->device < 0 || c->device >= s->n_devices ||
		    ((s->failing >> c->device) & 1)) {
			c->status = DF_EUNAVAIL;
			continue;
		}
		c->status = shard_run(s->shards[c->device], c->stage, c->ids, c->n,
				      c->inputs, c->n_inputs, &c->output);
		if (done && done(done_ctx, c)) {
			/* the rest is not needed: the stage is complete */
			for (size_t k = i + 1; k < n; k++)
				calls[k].cancelled = true;
			return;
		}
	}
}

static void sim_execute(void *ctx, runner_call *calls, size_t n)
{
	sim_execute_until(ctx, calls, n, NULL, NULL);
}

runner_backend sim_backend(sim *s)
{
	return (runner_backend){.ctx = s, .execute = sim_execute,
				.execute_until = sim_execute_until};
}

int64_t sim_weight_bytes(const sim *s, int d)
{
	return d >= 0 && d < s->n_devices ? shard_weight_bytes(s->shards[d]) : 0;
}
