/*
 * routes.c - the worker's HTTP endpoints (openapi/worker.yaml): health,
 * partition version prepare/commit/drop, stage calls, and the test-only
 * fault injection switch.
 *
 * Every endpoint but GET /healthz requires "Authorization: Bearer <token>"
 * when DICEFLEET_CLUSTER_TOKEN is set (compared in constant time). Bodies
 * are complete and within --max-body before a handler runs
 * (http_server.h); JSON bodies are unpacked naming the bad field.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "worker.h"

/* ---- helpers ------------------------------------------------------------ */

/* 401 with a WWW-Authenticate challenge unless the cluster token matches. */
static bool authorized(const worker *w, const http_request *req,
		       http_response *res, df_err *err)
{
	if (!w->set.token || http_request_bearer_is(req, w->set.token))
		return true;
	*err = http_reply_error(res, DF_EAUTH,
				http_request_header(req, "Authorization")
					? "wrong cluster token"
					: "missing Authorization: Bearer <cluster token>");
	if (!*err)
		*err = http_response_header(res, "WWW-Authenticate",
					    "Bearer realm=\"dicefleet-worker\"");
	return false;
}

/* The {version} path parameter: a decimal integer >= 1. */
static df_err path_version(const http_request *req, int64_t *out)
{
	const char *s = http_request_param(req, "version");
	if (!s)
		return df_errf(DF_EINTERNAL, "route has no {version}");
	errno = 0;
	char *end = NULL;
	long long v = strtoll(s, &end, 10);
	if (end == s || *end != '\0' || errno == ERANGE || v < 1 || s[0] == '+' ||
	    s[0] == ' ')
		return df_errf(DF_EINVAL, "version: '%.32s' is not a positive integer", s);
	*out = v;
	return DF_OK;
}

/* Parses a JSON object body (Content-Type application/json). New ref. */
static df_err json_body(const http_request *req, json_t **out)
{
	if (!http_request_content_type_is(req, "application/json"))
		return df_errf(DF_ENOTSUP, "Content-Type must be application/json");
	json_error_t e;
	json_t *j = json_loadb((const char *)req->body, req->body_len, 0, &e);
	if (!j)
		return df_errf(DF_EINVAL, "body: invalid JSON at line %d column %d: %s",
			       e.line, e.column, e.text);
	if (!json_is_object(j)) {
		json_decref(j);
		return df_errf(DF_EINVAL, "body: expected a JSON object");
	}
	*out = j;
	return DF_OK;
}

static void sleep_ms(int64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static bool caller_gone(void *ctx)
{
	return http_request_client_gone(ctx);
}

/* Sleeps ms in 10 ms steps; false as soon as the caller has gone. */
static bool sleep_for_caller(int64_t ms, const worker_caller *caller)
{
	for (int64_t left = ms; left > 0; left -= 10) {
		if (caller->gone(caller->ctx))
			return false;
		sleep_ms(left < 10 ? left : 10);
	}
	return true;
}

/* xorshift64*: uniform in [0, 1). Under fault_lock. */
static double rng_uniform(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

void worker_fault_roll(worker *w, int64_t *delay_ms, bool *fail, bool *drop)
{
	pthread_mutex_lock(&w->fault_lock);
	*delay_ms = w->fault.delay_ms;
	*fail = w->fault.fail_rate > 0 && rng_uniform(&w->rng) < w->fault.fail_rate;
	*drop = w->fault.drop;
	pthread_mutex_unlock(&w->fault_lock);
}

static json_t *fault_json(worker *w)
{
	pthread_mutex_lock(&w->fault_lock);
	worker_fault f = w->fault;
	pthread_mutex_unlock(&w->fault_lock);
	return json_pack("{s:I, s:f, s:s, s:b}", "delay_ms", (json_int_t)f.delay_ms,
			 "fail_rate", f.fail_rate, "fail_mode",
			 f.drop ? "drop" : "status", "enabled", w->set.fault_runtime);
}

/* ---- health ------------------------------------------------------------- */

json_t *worker_health(worker *w)
{
	json_t *versions = json_array();
	json_t *root = NULL;
	int64_t bytes = 0;
	char model_name[WIRE_MAX_MODEL_NAME + 1] = "";
	uint64_t newest = 0;
	pthread_mutex_lock(&w->lock);
	int order[WORKER_MAX_VERSIONS], n = 0;
	for (int i = 0; i < WORKER_MAX_VERSIONS; i++)
		if (w->versions[i])
			order[n++] = i;
	/* Ascending version numbers. */
	for (int a = 1; a < n; a++)
		for (int b = a; b > 0 && w->versions[order[b]]->version <
					      w->versions[order[b - 1]]->version; b--) {
			int t = order[b];
			order[b] = order[b - 1];
			order[b - 1] = t;
		}
	for (int k = 0; versions && k < n; k++) {
		const worker_version *v = w->versions[order[k]];
		bool committed = v->version == w->committed;
		bytes += v->weight_bytes;
		if (committed || (!w->committed && v->seq > newest)) {
			snprintf(model_name, sizeof model_name, "%s", v->model);
			newest = committed ? UINT64_MAX : v->seq;
		}
		if (json_array_append_new(versions,
					  json_pack("{s:I, s:s, s:s, s:I, s:I, s:f}",
						    "version", (json_int_t)v->version,
						    "state", committed ? "committed" : "prepared",
						    "model", v->model,
						    "weight_bytes", (json_int_t)v->weight_bytes,
						    "held_neurons", (json_int_t)v->held_neurons,
						    "prepare_ms", v->prepare_ms)) != 0) {
			json_decref(versions);
			versions = NULL;
		}
	}
	int64_t committed = w->committed;
	pthread_mutex_unlock(&w->lock);
	if (!versions)
		return NULL;
	root = json_pack("{s:s, s:s, s:s?, s:o, s:o, s:I, s:I, s:i, s:f, s:I, s:I, s:I, s:I}",
			 "id", w->set.id,
			 "state", n ? "ready" : "idle",
			 "model", model_name[0] ? model_name : NULL,
			 "version", committed ? json_integer(committed) : json_null(),
			 "versions", versions,
			 "weight_bytes", (json_int_t)bytes,
			 "rss_bytes", (json_int_t)worker_rss_bytes(),
			 "threads", w->set.threads,
			 "uptime_s", worker_now() - w->started,
			 "stage_calls", (json_int_t)atomic_load(&w->stage_calls),
			 "stage_errors", (json_int_t)atomic_load(&w->stage_errors),
			 "faults_injected", (json_int_t)atomic_load(&w->faults),
			 "stage_abandoned", (json_int_t)atomic_load(&w->stage_abandoned));
	return root;
}

/* ---- handlers ----------------------------------------------------------- */

static df_err h_healthz(const http_request *req, http_response *res, void *ctx)
{
	(void)req;
	worker *w = ctx;
	json_t *j = worker_health(w);
	pthread_mutex_lock(&w->fault_lock);
	bool faulty = w->fault.delay_ms > 0 || w->fault.fail_rate > 0;
	pthread_mutex_unlock(&w->fault_lock);
	if (j && (w->set.fault_runtime || faulty) &&
	    json_object_set_new(j, "fault", fault_json(w)) != 0) {
		json_decref(j);
		j = NULL;
	}
	return http_reply_json(res, 200, j);
}

static df_err h_prepare(const http_request *req, http_response *res, void *ctx)
{
	worker *w = ctx;
	df_err err = DF_OK;
	if (!authorized(w, req, res, &err))
		return err;
	int64_t version = 0;
	json_t *body = NULL;
	char *map_text = NULL;
	err = path_version(req, &version);
	if (!err)
		err = json_body(req, &body);
	if (err)
		goto out;
	const char *model = NULL, *sha = NULL, *device = NULL;
	json_t *map = NULL;
	json_error_t e;
	if (json_unpack_ex(body, &e, 0, "{s:s, s:s, s:s, s:o}", "model", &model,
			   "sha256", &sha, "device", &device, "map", &map)) {
		err = df_errf(DF_EINVAL, "body: %s", e.text);
		goto out;
	}
	if (!json_is_object(map)) {
		err = df_errf(DF_EINVAL, "map: expected a partition map object");
		goto out;
	}
	map_text = json_dumps(map, JSON_COMPACT);
	if (!map_text) {
		err = DF_ENOMEM;
		goto out;
	}
	worker_prepared p = {0};
	err = worker_prepare(w, version, model, sha, device, map_text,
			     strlen(map_text), &p);
	if (err) {
		log_warn("prepare %lld failed: %s", (long long)version,
			 df_err_msg()[0] ? df_err_msg() : df_err_str(err));
		goto out;
	}
	err = http_reply_json(res, 200,
			      json_pack("{s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:b}",
					"version", (json_int_t)version,
					"weight_bytes", (json_int_t)p.weight_bytes,
					"held_neurons", (json_int_t)p.held_neurons,
					"prepare_ms", p.prepare_ms,
					"rss_before", (json_int_t)p.rss_before,
					"rss_loaded", (json_int_t)p.rss_loaded,
					"rss_after", (json_int_t)p.rss_after,
					"already_prepared", p.existed));
out:
	free(map_text);
	json_decref(body);
	return err;
}

static df_err h_commit(const http_request *req, http_response *res, void *ctx)
{
	worker *w = ctx;
	df_err err = DF_OK;
	if (!authorized(w, req, res, &err))
		return err;
	int64_t version = 0;
	err = path_version(req, &version);
	if (!err)
		err = worker_commit(w, version);
	if (err)
		return err;
	return http_reply_json(res, 200, json_pack("{s:I, s:s}", "version",
						   (json_int_t)version, "state",
						   "committed"));
}

static df_err h_drop(const http_request *req, http_response *res, void *ctx)
{
	worker *w = ctx;
	df_err err = DF_OK;
	if (!authorized(w, req, res, &err))
		return err;
	int64_t version = 0;
	err = path_version(req, &version);
	if (!err)
		err = worker_drop(w, version);
	if (err)
		return err;
	return http_reply_json(res, 200, json_pack("{s:I, s:b}", "version",
						   (json_int_t)version, "dropped", 1));
}

static df_err h_stage(const http_request *req, http_response *res, void *ctx)
{
	worker *w = ctx;
	df_err err = DF_OK;
	if (!authorized(w, req, res, &err))
		return err;
	if (!http_request_content_type_is(req, WORKER_FRAME_TYPE))
		return df_errf(DF_ENOTSUP, "Content-Type must be " WORKER_FRAME_TYPE);
	atomic_fetch_add(&w->stage_calls, 1);
	int64_t delay = 0;
	bool fail = false, drop = false;
	worker_fault_roll(w, &delay, &fail, &drop);
	worker_caller caller = {caller_gone, (void *)req};
	if (delay > 0) {
		log_debug("fault: delaying a stage call by %" PRId64 " ms", delay);
		if (!sleep_for_caller(delay, &caller)) {
			atomic_fetch_add(&w->stage_abandoned, 1);
			http_response_drop(res);
			return DF_OK;
		}
	}
	if (fail) {
		atomic_fetch_add(&w->faults, 1);
		atomic_fetch_add(&w->stage_errors, 1);
		log_debug("fault: failing a stage call (%s)",
			  drop ? "dropping the connection" : "500");
		if (drop) {
			http_response_drop(res);
			return DF_OK;
		}
		return df_errf(DF_EINTERNAL, "injected fault");
	}
	wire_buf out = {0};
	err = worker_stage(w, req->body, req->body_len, &caller, &out);
	if (err) {
		if (err != DF_ETIMEDOUT) /* skipped for a caller gone: not an error */
			atomic_fetch_add(&w->stage_errors, 1);
		wire_buf_free(&out);
		return err;
	}
	return http_reply_bytes(res, 200, WORKER_FRAME_TYPE, out.data, out.len, true);
}

static df_err h_fault(const http_request *req, http_response *res, void *ctx)
{
	worker *w = ctx;
	df_err err = DF_OK;
	if (!authorized(w, req, res, &err))
		return err;
	if (!w->set.fault_runtime)
		return df_errf(DF_EFORBIDDEN, "fault injection is disabled (start the worker with --enable-fault-injection)");
	json_t *body = NULL;
	err = json_body(req, &body);
	if (err)
		return err;
	json_int_t delay = -1;
	double rate = -1;
	const char *mode = NULL;
	json_error_t e;
	if (json_unpack_ex(body, &e, JSON_STRICT, "{s?I, s?F, s?s}", "delay_ms",
			   &delay, "fail_rate", &rate, "fail_mode", &mode)) {
		err = df_errf(DF_EINVAL, "body: %s", e.text);
		goto out;
	}
	if (json_object_get(body, "delay_ms") && (delay < 0 || delay > 600000)) {
		err = df_errf(DF_ERANGE, "delay_ms: %lld is outside 0..600000",
			      (long long)delay);
		goto out;
	}
	if (json_object_get(body, "fail_rate") && !(rate >= 0 && rate <= 1)) {
		err = df_errf(DF_ERANGE, "fail_rate: %g is outside 0..1", rate);
		goto out;
	}
	if (mode && strcmp(mode, "status") != 0 && strcmp(mode, "drop") != 0) {
		err = df_errf(DF_EINVAL, "fail_mode: '%.32s' is not status or drop", mode);
		goto out;
	}
	pthread_mutex_lock(&w->fault_lock);
	if (json_object_get(body, "delay_ms"))
		w->fault.delay_ms = delay;
	if (json_object_get(body, "fail_rate"))
		w->fault.fail_rate = rate;
	if (mode)
		w->fault.drop = strcmp(mode, "drop") == 0;
	worker_fault now = w->fault;
	pthread_mutex_unlock(&w->fault_lock);
	log_info("fault injection set: delay %lld ms, fail rate %g (%s)",
		 (long long)now.delay_ms, now.fail_rate, now.drop ? "drop" : "status");
	err = http_reply_json(res, 200, fault_json(w));
out:
	json_decref(body);
	return err;
}

/* A partition map is a few bytes per neuron (a ResNet-18 map is well under
 * 1 MiB); JSON that large can still expand many times inside Jansson, so
 * the control routes get small caps of their own. Stage calls carry
 * tensors and use the server's --max-body. */
#define PREPARE_MAX_BODY (8u * 1024 * 1024)

static const http_route routes[] = {
	{"GET", "/healthz", h_healthz, 0},
	{"POST", "/v1/partitions/{version}/prepare", h_prepare, PREPARE_MAX_BODY},
	{"POST", "/v1/partitions/{version}/commit", h_commit, 0},
	{"DELETE", "/v1/partitions/{version}", h_drop, 0},
	{"POST", "/v1/stage", h_stage, 0},
	{"POST", "/v1/fault", h_fault, 64 * 1024},
};

const http_route *worker_routes(size_t *n)
{
	*n = sizeof routes / sizeof routes[0];
	return routes;
}
