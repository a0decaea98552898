/*
 * exec.c - the worker's partition versions, its executor thread and the
 * stage call path (see worker.h for the version rules and thread plan).
 *
 * Invariants: a version is in w->versions[] from the end of its prepare to
 * the start of its drop; w->committed is 0 or the number of a held
 * version; only the executor thread calls shard_run() once a version is
 * published (prepare's warm-up also goes through it), so a shard never sees
 * two callers.
 */
#include <ctype.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "model.h"
#include "model_dir.h"
#include "partition.h"
#include "worker.h"

/* ---- small helpers ------------------------------------------------------ */

double worker_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t worker_rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	if (!f)
		return -1;
	long long size = 0, resident = 0;
	int n = fscanf(f, "%lld %lld", &size, &resident);
	fclose(f);
	long page = sysconf(_SC_PAGESIZE);
	if (n != 2 || page <= 0 || resident < 0)
		return -1;
	return (int64_t)resident * page;
}

/* ---- executor ----------------------------------------------------------- */

typedef struct exec_job {
	shard *sh;
	int stage;
	const int32_t *ids;
	size_t n;
	const tensor *const *inputs;
	int n_inputs;
	const worker_caller *caller; /* NULL: always run */
	tensor *out;              /* result */
	df_err err;
	char msg[512];            /* df_err_msg() of the executor thread */
	bool done;
	pthread_cond_t cond;      /* signalled when done */
	struct exec_job *next;
} exec_job;

struct worker_exec {
	pthread_mutex_t lock;
	pthread_cond_t work;
	exec_job *head, *tail;
	bool stop;
	pthread_t thread;
	bool started;
};

static void *exec_main(void *arg)
{
	worker_exec *x = arg;
	pthread_mutex_lock(&x->lock);
	while (1) {
		while (!x->head && !x->stop)
			pthread_cond_wait(&x->work, &x->lock);
		exec_job *j = x->head;
		if (!j)
			break; /* stopping and drained */
		x->head = j->next;
		if (!x->head)
			x->tail = NULL;
		pthread_mutex_unlock(&x->lock);
		df_err_clear();
		if (j->caller && j->caller->gone && j->caller->gone(j->caller->ctx)) {
			j->err = DF_ETIMEDOUT;
			snprintf(j->msg, sizeof j->msg,
				 "stage %d: skipped, the caller has gone", j->stage);
		} else {
			j->err = shard_run(j->sh, j->stage, j->ids, j->n, j->inputs,
					   j->n_inputs, &j->out);
			if (j->err)
				snprintf(j->msg, sizeof j->msg, "%s", df_err_msg());
		}
		pthread_mutex_lock(&x->lock);
		j->done = true;
		pthread_cond_signal(&j->cond);
	}
	pthread_mutex_unlock(&x->lock);
	return NULL;
}

static df_err exec_create(worker_exec **out)
{
	worker_exec *x = calloc(1, sizeof *x);
	if (!x)
		return DF_ENOMEM;
	pthread_mutex_init(&x->lock, NULL);
	pthread_cond_init(&x->work, NULL);
	if (pthread_create(&x->thread, NULL, exec_main, x) != 0) {
		pthread_cond_destroy(&x->work);
		pthread_mutex_destroy(&x->lock);
		free(x);
		return df_errf(DF_EINTERNAL, "cannot start the executor thread");
	}
	x->started = true;
	*out = x;
	return DF_OK;
}

/* Runs the queued jobs, then stops the thread. */
static void exec_destroy(worker_exec *x)
{
	if (!x)
		return;
	pthread_mutex_lock(&x->lock);
	x->stop = true;
	pthread_cond_signal(&x->work);
	pthread_mutex_unlock(&x->lock);
	if (x->started)
		pthread_join(x->thread, NULL);
	pthread_cond_destroy(&x->work);
	pthread_mutex_destroy(&x->lock);
	free(x);
}

/* Computes neurons ids of stage st on the executor; waits for the result.
 * *out is new on success. */
static df_err exec_run(worker_exec *x, shard *sh, int st, const int32_t *ids,
		       size_t n, const tensor *const *inputs, int n_inputs,
		       const worker_caller *caller, tensor **out)
{
	exec_job j = {.sh = sh, .stage = st, .ids = ids, .n = n,
		      .inputs = inputs, .n_inputs = n_inputs, .caller = caller};
	pthread_cond_init(&j.cond, NULL);
	pthread_mutex_lock(&x->lock);
	if (x->stop) {
		pthread_mutex_unlock(&x->lock);
		pthread_cond_destroy(&j.cond);
		return df_errf(DF_EUNAVAIL, "the worker is shutting down");
	}
	if (x->tail)
		x->tail->next = &j;
	else
		x->head = &j;
	x->tail = &j;
	pthread_cond_signal(&x->work);
	while (!j.done)
		pthread_cond_wait(&j.cond, &x->lock);
	pthread_mutex_unlock(&x->lock);
	pthread_cond_destroy(&j.cond);
	if (j.err)
		return df_errf(j.err, "%s", j.msg[0] ? j.msg : df_err_str(j.err));
	*out = j.out;
	return DF_OK;
}

/* ---- versions ----------------------------------------------------------- */

static void version_destroy(worker_version *v)
{
	if (!v)
		return;
	shard_destroy(v->sh);
	if (v->io)
		for (int s = 0; s < v->n_stages; s++)
			free(v->io[s].dims);
	free(v->io);
	free(v->model);
	free(v);
}

df_err worker_create(const worker_settings *s, worker **out)
{
	worker *w = calloc(1, sizeof *w);
	if (!w)
		return DF_ENOMEM;
	w->set = *s;
	w->fault = s->fault;
	w->rng = s->fault_seed ? s->fault_seed : 0x9e3779b97f4a7c15ull;
	w->started = worker_now();
	pthread_mutex_init(&w->prepare_lock, NULL);
	pthread_mutex_init(&w->lock, NULL);
	pthread_mutex_init(&w->fault_lock, NULL);
	pthread_cond_init(&w->released, NULL);
	atomic_init(&w->stage_calls, 0);
	atomic_init(&w->stage_errors, 0);
	atomic_init(&w->faults, 0);
	atomic_init(&w->stage_abandoned, 0);
	df_err err = exec_create(&w->exec);
	if (err) {
		worker_destroy(w);
		return err;
	}
	*out = w;
	return DF_OK;
}

void worker_destroy(worker *w)
{
	if (!w)
		return;
	exec_destroy(w->exec);
	for (int i = 0; i < WORKER_MAX_VERSIONS; i++)
		version_destroy(w->versions[i]);
	pthread_cond_destroy(&w->released);
	pthread_mutex_destroy(&w->fault_lock);
	pthread_mutex_destroy(&w->lock);
	pthread_mutex_destroy(&w->prepare_lock);
	free(w);
}

/* Slot of version (under lock), or -1. */
static int find_slot(const worker *w, int64_t version)
{
	for (int i = 0; i < WORKER_MAX_VERSIONS; i++)
		if (w->versions[i] && w->versions[i]->version == version)
			return i;
	return -1;
}

/* "3, 4" (held version numbers) for messages; under lock. */
static void held_list(const worker *w, char *buf, size_t len)
{
	size_t used = 0;
	buf[0] = '\0';
	for (int i = 0; i < WORKER_MAX_VERSIONS; i++) {
		if (!w->versions[i])
			continue;
		int k = snprintf(buf + used, len - used, "%s%lld", used ? ", " : "",
				 (long long)w->versions[i]->version);
		if (k < 0 || (size_t)k >= len - used)
			break;
		used += (size_t)k;
	}
	if (!used)
		snprintf(buf, len, "none");
}

/* Unlinks slot i and waits (under lock) for its calls in flight; returns
 * the version for the caller to destroy outside the lock. */
static worker_version *unlink_wait(worker *w, int i)
{
	worker_version *v = w->versions[i];
	w->versions[i] = NULL;
	if (w->committed == v->version)
		w->committed = 0;
	while (v->refs > 0)
		pthread_cond_wait(&w->released, &w->lock);
	return v;
}

static worker_version *acquire(worker *w, int64_t version)
{
	pthread_mutex_lock(&w->lock);
	int i = find_slot(w, version);
	worker_version *v = i >= 0 ? w->versions[i] : NULL;
	if (v)
		v->refs++;
	pthread_mutex_unlock(&w->lock);
	return v;
}

static void release(worker *w, worker_version *v)
{
	pthread_mutex_lock(&w->lock);
	if (--v->refs == 0)
		pthread_cond_broadcast(&w->released);
	pthread_mutex_unlock(&w->lock);
}

df_err worker_commit(worker *w, int64_t version)
{
	pthread_mutex_lock(&w->lock);
	int i = find_slot(w, version);
	df_err err = DF_OK;
	if (i < 0) {
		char held[64];
		held_list(w, held, sizeof held);
		err = df_errf(DF_ENOENT, "partition version %lld is not prepared (held: %s)",
			      (long long)version, held);
	} else {
		if (w->committed != version)
			log_info("committed partition version %lld (was %lld)",
				 (long long)version, (long long)w->committed);
		w->committed = version;
	}
	pthread_mutex_unlock(&w->lock);
	return err;
}

df_err worker_drop(worker *w, int64_t version)
{
	pthread_mutex_lock(&w->lock);
	int i = find_slot(w, version);
	if (i < 0) {
		char held[64];
		held_list(w, held, sizeof held);
		pthread_mutex_unlock(&w->lock);
		return df_errf(DF_ENOENT, "partition version %lld is not held (held: %s)",
			       (long long)version, held);
	}
	worker_version *v = unlink_wait(w, i);
	pthread_mutex_unlock(&w->lock);
	int64_t bytes = v->weight_bytes;
	version_destroy(v);
	malloc_trim(0);
	log_info("dropped partition version %lld (%lld weight bytes freed)",
		 (long long)version, (long long)bytes);
	return DF_OK;
}

/* ---- prepare ------------------------------------------------------------ */

static bool is_hex64(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if (!isxdigit((unsigned char)s[n]))
			return false;
	return n == SHA256_HEX_LEN;
}

/* Fills v->io from the full graph and plan for the stages the shard holds. */
static df_err build_io(worker_version *v, const model *m)
{
	const stage_plan *p = m->plan;
	v->n_stages = p->n_stages;
	v->io = calloc((size_t)p->n_stages + 1, sizeof *v->io);
	if (!v->io)
		return DF_ENOMEM;
	for (int s = 0; s < p->n_stages; s++) {
		if (shard_stage_inputs(v->sh, s) == 0)
			continue;
		const stage *st = &p->stages[s];
		if (st->n_inputs < 1 || st->n_inputs > WIRE_MAX_FRAMES)
			return df_errf(DF_ENOTSUP, "stage %d (%s) has %d inputs; a stage call carries 1..%d",
				       s, st->name, st->n_inputs, WIRE_MAX_FRAMES);
		worker_stage_io *io = &v->io[s];
		io->dims = calloc((size_t)st->n_inputs, sizeof *io->dims);
		if (!io->dims)
			return DF_ENOMEM;
		io->n_inputs = st->n_inputs;
		io->n_neurons = st->n_neurons;
		for (int k = 0; k < st->n_inputs; k++) {
			const graph_value *gv = &m->g->values[st->inputs[k]];
			if (k > 0 && (gv->ndim < 2 || gv->dims[1] != st->n_neurons))
				return df_errf(DF_ENOTSUP, "stage %d (%s): side input %s is not sliceable along axis 1",
					       s, st->name, gv->name);
			io->ndim[k] = gv->ndim;
			memcpy(io->dims[k], gv->dims, sizeof io->dims[k]);
		}
		size_t n = 0;
		shard_held(v->sh, s, &n);
		v->held_neurons += (int64_t)n;
	}
	return DF_OK;
}

/* Builds the engines of each stage's primaries (the usual request) by
 * computing them once on zeros. */
static df_err warm_up(worker *w, worker_version *v, const partition_map *map,
		      int device)
{
	df_err err = DF_OK;
	int32_t *ids = NULL;
	tensor *inputs[WIRE_MAX_FRAMES] = {0};
	for (int s = 0; s < v->n_stages && !err; s++) {
		const worker_stage_io *io = &v->io[s];
		const partition_stage *ps = &map->stages[s];
		if (!io->n_inputs || ps->on_gateway || !ps->primary)
			continue;
		free(ids);
		ids = malloc(((size_t)ps->n_neurons + 1) * sizeof *ids);
		if (!ids) {
			err = DF_ENOMEM;
			break;
		}
		size_t n = 0;
		for (int64_t i = 0; i < ps->n_neurons; i++)
			if (ps->primary[i] == device)
				ids[n++] = (int32_t)i;
		if (n == 0)
			continue;
		for (int k = 0; k < io->n_inputs && !err; k++) {
			int64_t dims[TENSOR_MAX_DIMS];
			memcpy(dims, io->dims[k], sizeof dims);
			if (k > 0)
				dims[1] = (int64_t)n;
			err = tensor_create(TENSOR_F32, io->ndim[k], dims, &inputs[k]);
		}
		tensor *out = NULL;
		if (!err)
			err = exec_run(w->exec, v->sh, s, ids, n,
				       (const tensor *const *)inputs, io->n_inputs,
				       NULL, &out);
		tensor_destroy(out);
		for (int k = 0; k < WIRE_MAX_FRAMES; k++) {
			tensor_destroy(inputs[k]);
			inputs[k] = NULL;
		}
	}
	free(ids);
	return err;
}

/* Frees a slot for a new version (under prepare_lock, not lock): drops
 * the oldest version that is not the committed one when all are taken. */
static void make_room(worker *w)
{
	pthread_mutex_lock(&w->lock);
	int victim = -1;
	for (int i = 0; i < WORKER_MAX_VERSIONS; i++) {
		if (!w->versions[i]) {
			pthread_mutex_unlock(&w->lock);
			return;
		}
		if (w->versions[i]->version == w->committed)
			continue;
		if (victim < 0 || w->versions[i]->seq < w->versions[victim]->seq)
			victim = i;
	}
	if (victim < 0) {
		pthread_mutex_unlock(&w->lock);
		return;
	}
	worker_version *v = unlink_wait(w, victim);
	pthread_mutex_unlock(&w->lock);
	log_info("dropping partition version %lld to make room",
		 (long long)v->version);
	version_destroy(v);
	malloc_trim(0);
}

static void fill_prepared(const worker_version *v, bool existed,
			  worker_prepared *out)
{
	out->weight_bytes = v->weight_bytes;
	out->held_neurons = v->held_neurons;
	out->prepare_ms = v->prepare_ms;
	out->rss_before = v->rss_before;
	out->rss_loaded = v->rss_loaded;
	out->rss_after = v->rss_after;
	out->existed = existed;
}

df_err worker_prepare(worker *w, int64_t version, const char *model_name,
		      const char *sha256, const char *device,
		      const char *map_json, size_t map_len,
		      worker_prepared *out)
{
	if (version <= 0)
		return df_errf(DF_EINVAL, "version: %lld is not a positive integer",
			       (long long)version);
	if (!*model_name || strlen(model_name) > WIRE_MAX_MODEL_NAME ||
	    strchr(model_name, '/') || strcmp(model_name, ".") == 0 ||
	    strcmp(model_name, "..") == 0)
		return df_errf(DF_EINVAL, "model: '%.64s' is not a model name", model_name);
	if (!is_hex64(sha256))
		return df_errf(DF_EINVAL, "sha256: expected 64 hex digits");
	if (strcmp(device, w->set.id) != 0)
		return df_errf(DF_ECONFLICT, "device: this worker is '%s', not '%.64s'",
			       w->set.id, device);

	double t0 = worker_now();
	df_err err = DF_OK;
	partition_map *map = NULL;
	model_dir *md = NULL;
	model *m = NULL;
	worker_version *v = NULL;
	char *dir = NULL;

	pthread_mutex_lock(&w->prepare_lock);
	pthread_mutex_lock(&w->lock);
	int i = find_slot(w, version);
	if (i >= 0) {
		worker_version *have = w->versions[i];
		if (strcmp(have->model, model_name) != 0 ||
		    strcasecmp(have->sha256, sha256) != 0)
			err = df_errf(DF_ECONFLICT, "version %lld is already held for model %s (sha256 %.12s...)",
				      (long long)version, have->model, have->sha256);
		else
			fill_prepared(have, true, out);
		pthread_mutex_unlock(&w->lock);
		goto out;
	}
	pthread_mutex_unlock(&w->lock);

	err = partition_from_json(map_json, map_len, &map);
	if (err)
		goto out;
	if (map->model && strcmp(map->model, model_name) != 0) {
		err = df_errf(DF_ECONFLICT, "map: the map is for model %s, not %s",
			      map->model, model_name);
		goto out;
	}
	if (map->version != 0 && map->version != version) {
		err = df_errf(DF_ECONFLICT, "map: the map is version %lld, not %lld",
			      (long long)map->version, (long long)version);
		goto out;
	}
	int d = partition_device_index(map, device);
	if (d < 0) {
		err = df_errf(DF_ECONFLICT, "map: device '%s' is not in the map", device);
		goto out;
	}
	size_t dlen = strlen(w->set.models_dir) + strlen(model_name) + 2;
	dir = malloc(dlen);
	if (!dir) {
		err = DF_ENOMEM;
		goto out;
	}
	snprintf(dir, dlen, "%s/%s", w->set.models_dir, model_name);
	err = model_dir_load(dir, &md);
	if (err)
		goto out;
	if (strcasecmp(md->sha256, sha256) != 0) {
		err = df_errf(DF_ECONFLICT, "sha256: model %s here is %.12s..., the gateway has %.12s...",
			      model_name, md->sha256, sha256);
		goto out;
	}

	make_room(w);
	v = calloc(1, sizeof *v);
	if (!v || !(v->model = strdup(model_name))) {
		err = DF_ENOMEM;
		goto out;
	}
	v->version = version;
	snprintf(v->sha256, sizeof v->sha256, "%s", md->sha256);
	v->rss_before = worker_rss_bytes();
	err = model_load(w->set.models_dir, model_name, false, &m);
	if (err)
		goto out;
	v->rss_loaded = worker_rss_bytes();
	err = partition_validate(map, m->plan);
	if (!err)
		err = shard_create(m->g, m->plan, map, d, ENGINE_DNNL, w->set.threads,
				   &v->sh);
	if (!err)
		err = build_io(v, m);
	if (err)
		goto out;
	v->weight_bytes = shard_weight_bytes(v->sh);
	model_destroy(m);
	m = NULL;
	malloc_trim(0);
	if (w->set.warmup) {
		err = warm_up(w, v, map, d);
		if (err)
			goto out;
	}
	v->rss_after = worker_rss_bytes();
	v->prepare_ms = (worker_now() - t0) * 1e3;
	log_info("prepared version %lld of %s: %lld neurons, %lld weight bytes, "
		 "rss %lld -> %lld (loaded) -> %lld bytes, %.0f ms",
		 (long long)version, model_name, (long long)v->held_neurons,
		 (long long)v->weight_bytes, (long long)v->rss_before,
		 (long long)v->rss_loaded, (long long)v->rss_after, v->prepare_ms);

	pthread_mutex_lock(&w->lock);
	for (i = 0; i < WORKER_MAX_VERSIONS && w->versions[i]; i++)
		;
	if (i == WORKER_MAX_VERSIONS) {
		/* Cannot happen: prepares are serialized and make_room freed
		 * a slot; commit and drop never add one. */
		pthread_mutex_unlock(&w->lock);
		err = df_errf(DF_EINTERNAL, "no free version slot");
		goto out;
	}
	v->seq = ++w->seq;
	w->versions[i] = v;
	fill_prepared(v, false, out);
	pthread_mutex_unlock(&w->lock);
	v = NULL;
out:
	pthread_mutex_unlock(&w->prepare_lock);
	version_destroy(v);
	model_destroy(m);
	model_dir_destroy(md);
	partition_destroy(map);
	free(dir);
	return err;
}

/* ---- stage calls -------------------------------------------------------- */

/* Whether id is in the ascending held list. */
static bool is_held(const int32_t *held, size_t n, int32_t id)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (held[mid] == id)
			return true;
		if (held[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

static df_err check_shape(const char *what, unsigned s, const tensor *t,
			  int ndim, const int64_t *dims)
{
	bool same = t->ndim == ndim;
	for (int k = 0; same && k < ndim; k++)
		same = t->dims[k] == dims[k];
	if (same)
		return DF_OK;
	char got[96], want[96];
	tensor_shape_str(t->ndim, t->dims, got, sizeof got);
	tensor_shape_str(ndim, dims, want, sizeof want);
	return df_errf(DF_EINVAL, "stage %u: %s has shape %s, expected %s", s, what,
		       got, want);
}

/* Checks the frames of msg against stage io (ids already checked). */
static df_err check_frames(const wire_msg *msg, const worker_stage_io *io)
{
	unsigned s = msg->stage;
	if (msg->n_frames != (size_t)io->n_inputs)
		return df_errf(DF_EINVAL, "stage %u takes %d input frame(s), got %zu", s,
			       io->n_inputs, msg->n_frames);
	const wire_frame *f0 = &msg->frames[0];
	if (f0->channel_axis != WIRE_WHOLE) {
		/* A sliced frame is accepted only if it holds every channel in
		 * order, which is the whole tensor after all. */
		bool identity = f0->n_ids == f0->channels_total;
		for (size_t i = 0; identity && i < f0->n_ids; i++)
			identity = f0->ids[i] == (int32_t)i;
		if (!identity)
			return df_errf(DF_EINVAL, "stage %u: frame 0 (the stage input) must be a whole tensor",
				       s);
	}
	df_err err = check_shape("frame 0 (stage input)", s, f0->t, io->ndim[0],
				 io->dims[0]);
	if (err)
		return err;
	for (size_t k = 1; k < msg->n_frames; k++) {
		const wire_frame *f = &msg->frames[k];
		char what[48];
		snprintf(what, sizeof what, "frame %zu (side input)", k);
		if (f->channel_axis != 1 || f->n_ids != msg->n_neurons)
			return df_errf(DF_EINVAL, "stage %u: %s must be sliced on axis 1 to the %zu requested neurons",
				       s, what, msg->n_neurons);
		if (f->channels_total != (uint32_t)io->n_neurons)
			return df_errf(DF_EINVAL, "stage %u: %s says %u channels in total, the stage has %lld",
				       s, what, f->channels_total, (long long)io->n_neurons);
		if (memcmp(f->ids, msg->neurons, msg->n_neurons * sizeof *f->ids) != 0)
			return df_errf(DF_EINVAL, "stage %u: %s channel ids differ from the requested neurons",
				       s, what);
		int64_t dims[TENSOR_MAX_DIMS];
		memcpy(dims, io->dims[k], sizeof dims);
		dims[1] = (int64_t)msg->n_neurons;
		err = check_shape(what, s, f->t, io->ndim[k], dims);
		if (err)
			return err;
	}
	return DF_OK;
}

df_err worker_stage(worker *w, const void *body, size_t len,
		    const worker_caller *caller, wire_buf *out)
{
	wire_msg msg = {0};
	worker_version *v = NULL;
	tensor *result = NULL;
	const tensor **inputs = NULL;
	/* The frames' tensors may point into body, which outlives msg. */
	df_err err = wire_msg_parse_borrow(body, len, &msg);
	if (err)
		goto out;
	if (msg.kind != WIRE_MSG_REQUEST) {
		err = df_errf(DF_EINVAL, "kind: %d is not a stage request", (int)msg.kind);
		goto out;
	}
	if (msg.partition_version > INT64_MAX ||
	    !(v = acquire(w, (int64_t)msg.partition_version))) {
		pthread_mutex_lock(&w->lock);
		char held[64];
		held_list(w, held, sizeof held);
		pthread_mutex_unlock(&w->lock);
		err = df_errf(DF_ENOENT, "partition_version %llu is not held (held: %s)",
			      (unsigned long long)msg.partition_version, held);
		goto out;
	}
	if (strcmp(msg.model, v->model) != 0) {
		err = df_errf(DF_ECONFLICT, "model: version %lld is model %s, not %.64s",
			      (long long)v->version, v->model, msg.model);
		goto out;
	}
	if (msg.stage >= (uint32_t)v->n_stages || v->io[msg.stage].n_inputs == 0) {
		err = df_errf(DF_ENOENT, "stage %u is not held by device %s in version %lld",
			      msg.stage, w->set.id, (long long)v->version);
		goto out;
	}
	const worker_stage_io *io = &v->io[msg.stage];
	if (msg.n_neurons == 0) {
		err = df_errf(DF_EINVAL, "neurons: the request lists none");
		goto out;
	}
	size_t n_held = 0;
	const int32_t *held = shard_held(v->sh, (int)msg.stage, &n_held);
	for (size_t i = 0; i < msg.n_neurons; i++) {
		int32_t id = msg.neurons[i];
		if (id >= io->n_neurons) {
			err = df_errf(DF_ERANGE, "neurons[%zu]: %d is outside stage %u's 0..%lld",
				      i, id, msg.stage, (long long)io->n_neurons - 1);
			goto out;
		}
		if (i > 0 && id <= msg.neurons[i - 1]) {
			err = df_errf(DF_EINVAL, "neurons[%zu]: ids must be strictly ascending",
				      i);
			goto out;
		}
		if (!is_held(held, n_held, id)) {
			err = df_errf(DF_ENOENT, "neurons[%zu]: neuron %d of stage %u is not held by device %s",
				      i, id, msg.stage, w->set.id);
			goto out;
		}
	}
	err = check_frames(&msg, io);
	if (err)
		goto out;
	inputs = malloc(msg.n_frames * sizeof *inputs);
	if (!inputs) {
		err = DF_ENOMEM;
		goto out;
	}
	for (size_t k = 0; k < msg.n_frames; k++)
		inputs[k] = msg.frames[k].t;
	err = exec_run(w->exec, v->sh, (int)msg.stage, msg.neurons, msg.n_neurons,
		       inputs, (int)msg.n_frames, caller, &result);
	if (err == DF_ETIMEDOUT)
		atomic_fetch_add(&w->stage_abandoned, 1);
	if (err)
		goto out;
	if (result->ndim < 2 || result->dims[1] != (int64_t)msg.n_neurons) {
		err = df_errf(DF_EINTERNAL, "stage %u: output has the wrong channel count",
			      msg.stage);
		goto out;
	}
	wire_frame f = {.t = result,
			.dtype = msg.frames[0].dtype,
			.channel_axis = 1,
			.channels_total = (uint32_t)io->n_neurons,
			.ids = msg.neurons,
			.n_ids = msg.n_neurons};
	wire_msg reply = {.kind = WIRE_MSG_RESPONSE,
			  .request_id = msg.request_id,
			  .partition_version = msg.partition_version,
			  .stage = msg.stage,
			  .model = msg.model,
			  .frames = &f,
			  .n_frames = 1};
	err = wire_msg_encode(out, &reply);
out:
	if (v)
		release(w, v);
	free(inputs);
	tensor_destroy(result);
	wire_msg_free(&msg);
	return err;
}
