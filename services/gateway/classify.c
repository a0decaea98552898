/*
 * classify.c - the inference endpoints: POST /v1/classify (an image in,
 * top-k labels out) and the KServe v2 / Open Inference Protocol subset
 * (health, model metadata, JSON tensor infer), all answered from the one
 * loaded model through the fleet.
 *
 * Every input is untrusted: query arguments are range-checked, bodies are
 * complete and capped before a handler runs (http_server.h), images are
 * size-checked from their header before decoding (image.h), JSON is
 * unpacked naming the bad field. An inference leases a runner from the
 * scheduler for its whole run; what ran (coverage, devices that failed)
 * comes back with the answer, and below --min-coverage the answer is a 503
 * instead of a guess.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway.h"
#include "scores.h"
#include "image.h"
#include "log.h"

#ifndef DICEFLEET_VERSION
#define DICEFLEET_VERSION "0"
#endif

#define V2_MAX_NESTING 8

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* What one inference through the fleet produced. */
typedef struct inference {
	tensor *logits;            /* owned */
	runner_result rr;
	int64_t version;
	http_stage_stats wire;
	json_t *failed;            /* array of device ids (owned) */
	char request_id[24];
} inference;

static void inference_clear(inference *inf)
{
	tensor_destroy(inf->logits);
	json_decref(inf->failed);
	memset(inf, 0, sizeof *inf);
}

/* Runs x through the fleet. On DF_OK *inf holds the logits and what ran;
 * coverage below the minimum is not an error here (callers decide). */
static df_err infer(gateway *gw, const tensor *x, inference *inf)
{
	sched_lease lease = {0};
	int64_t t0 = http_client_now_ms();
	uint64_t rid = atomic_fetch_add(&gw->next_request_id, 1);
	snprintf(inf->request_id, sizeof inf->request_id, "%016" PRIx64, rid);
	df_err err = sched_acquire(gw->sched, gw->request_timeout_ms, &lease);
	if (err)
		return err;
	http_stage_target target = {
		.map = lease.map,
		.model = gw->model_name,
		.urls = lease.urls,
		.g = gw->mdl->g,
		.plan = gw->mdl->plan,
		.request_id = rid,
		.deadline_ms = t0 + gw->request_timeout_ms,
	};
	http_client_begin(lease.http, &target);
	runner_backend be = http_client_backend(lease.http);
	uint64_t down = health_down_mask(gw->health, lease.map);
	err = runner_infer(lease.run, x, down, &be, &inf->logits, &inf->rr);
	inf->wire = http_client_stats(lease.http);
	inf->version = lease.map->version;
	inf->failed = json_array();
	if (!inf->failed && !err)
		err = DF_ENOMEM;
	for (int d = 0; !err && d < lease.map->n_devices && d < 64; d++)
		if ((inf->rr.failed_devices >> d) & 1)
			if (json_array_append_new(inf->failed,
						  json_string(lease.map->devices[d])))
				err = DF_ENOMEM;
	sched_release(gw->sched, &lease);
	if (!err)
		metrics_inference(gw->metrics, inf->rr.coverage,
				  inf->rr.neurons_imputed, &inf->wire);
	if (err) {
		log_warn("request %s: inference failed: %s", inf->request_id,
			 df_err_msg());
		inference_clear(inf);
	}
	return err;
}

/* 503 when too little of the network ran. */
static df_err coverage_reply(gateway *gw, const inference *inf,
			     http_response *res, bool *rejected)
{
	*rejected = inf->rr.coverage < gw->min_coverage;
	if (!*rejected)
		return DF_OK;
	char *ids = json_dumps(inf->failed, JSON_COMPACT);
	char msg[512];
	snprintf(msg, sizeof msg,
		 "only %.3f of the network could be computed (minimum %.3f); failed devices: %s",
		 inf->rr.coverage, gw->min_coverage, ids ? ids : "?");
	free(ids);
	return http_reply_error_status(res, 503, "insufficient_coverage", msg);
}

/* The model name in a path or query must be the loaded one. */
static df_err check_model(gateway *gw, const char *name)
{
	if (name && strcmp(name, gw->model_name) != 0)
		return df_errf(DF_ENOENT, "unknown model '%.100s' (this gateway serves %s)",
			       name, gw->model_name);
	return DF_OK;
}

/* Replies err (from a handler's inner part) so the status is known for
 * metrics, then counts the request. */
static df_err finish(gateway *gw, metrics_endpoint ep, http_response *res,
		     df_err err, double t0)
{
	if (err) {
		const char *msg = df_err_msg();
		err = http_reply_error(res, err, msg[0] ? msg : NULL);
	}
	metrics_request(gw->metrics, ep, err ? 500 : res->status, now_s() - t0);
	return err;
}

/* ---- POST /v1/classify --------------------------------------------------- */

/* The image bytes of the request: the body itself or the multipart field. */
static df_err image_bytes(const http_request *req, const unsigned char **data,
			  size_t *len)
{
	if (http_request_content_type_is(req, "image/png") ||
	    http_request_content_type_is(req, "image/jpeg") ||
	    http_request_content_type_is(req, "image/jpg")) {
		*data = req->body;
		*len = req->body_len;
	} else if (http_request_content_type_is(req, "multipart/form-data")) {
		if (req->body_len == 0)
			return df_errf(DF_EINVAL, "empty body: send a form with a field \"image\"");
		df_err err = routes_multipart_field(
			http_request_header(req, "Content-Type"), req->body,
			req->body_len, "image", data, len);
		if (err == DF_ENOENT)
			return df_errf(DF_EINVAL, "multipart/form-data body has no field \"image\"");
		if (err)
			return err;
	} else {
		const char *ct = http_request_header(req, "Content-Type");
		if (!ct && req->body_len == 0)
			return df_errf(DF_EINVAL, "empty body: send a PNG or JPEG image");
		return df_errf(DF_ENOTSUP, "unsupported Content-Type '%.80s': use image/png, image/jpeg or multipart/form-data",
			       ct ? ct : "(none)");
	}
	if (*len == 0)
		return df_errf(DF_EINVAL, "empty image: send a PNG or JPEG image");
	return DF_OK;
}

static df_err v1_inner(gateway *gw, const http_request *req,
		       http_response *res)
{
	const model_dir *md = gw->mdl->dir;
	double t0 = now_s();
	long long top_k = 0;
	df_err err = check_model(gw, http_request_query(req, "model"));
	if (!err)
		err = routes_query_int(req, "top_k", 5, 1, (long long)md->n_labels,
				       &top_k);
	const unsigned char *data = NULL;
	size_t len = 0;
	if (!err)
		err = image_bytes(req, &data, &len);
	if (err)
		return err;
	image *img = NULL;
	tensor *x = NULL;
	inference inf = {0};
	score_entry *sc = NULL;
	json_t *preds = NULL;
	err = image_decode(data, len, gw->max_pixels, &img);
	if (err) {
		if (err != DF_ETOOBIG && err != DF_ENOTSUP && err != DF_ENOMEM)
			err = DF_EINVAL;
		goto out; /* image.h's messages name the format and the problem */
	}
	err = image_to_tensor(img, &md->input, &x);
	if (err) {
		char why[256];
		snprintf(why, sizeof why, "%s", df_err_msg());
		err = df_errf(err == DF_ENOMEM ? DF_ENOMEM : DF_EINVAL,
			      "image: cannot convert it to the model input: %s", why);
		goto out;
	}
	err = infer(gw, x, &inf);
	if (err)
		goto out;
	bool rejected = false;
	err = coverage_reply(gw, &inf, res, &rejected);
	if (err || rejected)
		goto out;
	const float *logit = tensor_f32(inf.logits);
	size_t n = inf.logits->numel;
	if (!logit || n != md->n_labels) {
		err = df_errf(DF_EINTERNAL, "the model gave %zu scores for %zu labels", n,
			      md->n_labels);
		goto out;
	}
	preds = json_array();
	if (!preds) {
		err = DF_ENOMEM;
		goto out;
	}
	err = scores_rank(logit, n, scores_graph_is_softmax(gw->mdl->g), &sc);
	if (err)
		goto out;
	for (long long k = 0; k < top_k; k++)
		if (json_array_append_new(preds,
					  json_pack("{s:I, s:s, s:f}", "index",
						    (json_int_t)sc[k].index,
						    "label", md->labels[sc[k].index],
						    "score", sc[k].score))) {
			err = DF_ENOMEM;
			goto out;
		}
	json_t *body = json_pack(
		"{s:s, s:s, s:I, s:O, s:f, s:b, s:O, s:f, s:I, s:I}", "request_id",
		inf.request_id, "model", gw->model_name, "partition_version",
		(json_int_t)inf.version, "predictions", preds, "coverage",
		inf.rr.coverage, "degraded", inf.rr.coverage < 1.0, "failed_devices",
		inf.failed, "latency_ms", (now_s() - t0) * 1000.0,
		"imputed_neurons", (json_int_t)inf.rr.neurons_imputed, "wire_bytes",
		(json_int_t)(inf.wire.bytes_sent + inf.wire.bytes_received));
	err = http_reply_json(res, 200, body);
out:
	json_decref(preds);
	free(sc);
	inference_clear(&inf);
	tensor_destroy(x);
	image_destroy(img);
	return err;
}

df_err classify_handle_v1(const http_request *req, http_response *res,
			  void *ctx)
{
	gateway *gw = ctx;
	double t0 = now_s();
	df_err_clear();
	return finish(gw, METRICS_CLASSIFY, res, v1_inner(gw, req, res), t0);
}

/* ---- KServe v2 ------------------------------------------------------------ */

/* Appends the numbers of a (possibly nested) array into dst[*k..cap). */
static df_err flatten(const json_t *a, int depth, float *dst, size_t cap,
		      size_t *k)
{
	if (depth > V2_MAX_NESTING)
		return df_errf(DF_EINVAL, "inputs[0].data: nested deeper than %d",
			       V2_MAX_NESTING);
	size_t i;
	const json_t *v;
	json_array_foreach(a, i, v) {
		if (json_is_array(v)) {
			df_err err = flatten(v, depth + 1, dst, cap, k);
			if (err)
				return err;
			continue;
		}
		if (!json_is_number(v))
			return df_errf(DF_EINVAL, "inputs[0].data[%zu]: expected a number",
				       *k);
		if (*k >= cap)
			return df_errf(DF_EINVAL, "inputs[0].data: more than the %zu values of the input shape",
				       cap);
		double d = json_number_value(v);
		if (!(fabs(d) <= 3.4028234663852886e38))
			return df_errf(DF_ERANGE, "inputs[0].data[%zu]: %g does not fit FP32",
				       *k, d);
		dst[(*k)++] = (float)d;
	}
	return DF_OK;
}

static json_t *shape_json(int ndim, const int64_t *dims)
{
	json_t *a = json_array();
	for (int i = 0; a && i < ndim; i++)
		if (json_array_append_new(a, json_integer((json_int_t)dims[i]))) {
			json_decref(a);
			return NULL;
		}
	return a;
}

/* Reads the request's single FP32 input tensor into x (model input
 * shape). */
static df_err v2_input(gateway *gw, const http_request *req, tensor **out,
		       json_t **id)
{
	const model_dir *md = gw->mdl->dir;
	if (http_request_header(req, "Content-Type") &&
	    !http_request_content_type_is(req, "application/json"))
		return df_errf(DF_ENOTSUP, "Content-Type must be application/json");
	if (req->body_len == 0)
		return df_errf(DF_EINVAL, "empty body: send {\"inputs\": [...]}");
	json_error_t je;
	json_t *root = json_loadb((const char *)req->body, req->body_len, 0, &je);
	if (!root)
		return df_errf(DF_EINVAL, "body: invalid JSON at line %d column %d: %s",
			       je.line, je.column, je.text);
	tensor *x = NULL;
	df_err err = DF_OK;
	json_t *inputs = NULL, *shape = NULL, *data = NULL, *rid = NULL;
	const char *name = NULL, *dtype = NULL;
	if (json_unpack_ex(root, &je, 0, "{s:o, s?o}", "inputs", &inputs, "id",
			   &rid)) {
		err = df_errf(DF_EINVAL, "body: %s", je.text);
		goto out;
	}
	if (!json_is_array(inputs) || json_array_size(inputs) != 1) {
		err = df_errf(DF_EINVAL, "inputs: expected an array with one tensor (the model has one input, %s)",
			      md->input_name);
		goto out;
	}
	if (json_unpack_ex(json_array_get(inputs, 0), &je, 0,
			   "{s:s, s:o, s:s, s:o}", "name", &name, "shape", &shape,
			   "datatype", &dtype, "data", &data)) {
		err = df_errf(DF_EINVAL, "inputs[0]: %s", je.text);
		goto out;
	}
	if (strcmp(name, md->input_name) != 0) {
		err = df_errf(DF_EINVAL, "inputs[0].name: '%.64s' is not the model's input '%s'",
			      name, md->input_name);
		goto out;
	}
	if (strcmp(dtype, "FP32") != 0) {
		err = df_errf(DF_ENOTSUP, "inputs[0].datatype: '%.16s' is not supported (FP32 only)",
			      dtype);
		goto out;
	}
	const graph_value *iv = &gw->mdl->g->values[gw->mdl->g->inputs[0]];
	bool same = json_is_array(shape) && json_array_size(shape) == (size_t)iv->ndim;
	for (int i = 0; same && i < iv->ndim; i++) {
		json_t *d = json_array_get(shape, (size_t)i);
		same = json_is_integer(d) && json_integer_value(d) == iv->dims[i];
	}
	if (!same) {
		char want[96];
		tensor_shape_str(iv->ndim, iv->dims, want, sizeof want);
		err = df_errf(DF_EINVAL, "inputs[0].shape: expected %s", want);
		goto out;
	}
	if (!json_is_array(data)) {
		err = df_errf(DF_EINVAL, "inputs[0].data: expected an array of numbers");
		goto out;
	}
	err = tensor_create(TENSOR_F32, iv->ndim, iv->dims, &x);
	if (err)
		goto out;
	size_t k = 0;
	err = flatten(data, 0, tensor_f32(x), x->numel, &k);
	if (!err && k != x->numel)
		err = df_errf(DF_EINVAL, "inputs[0].data: %zu values, the shape needs %zu",
			      k, x->numel);
	if (!err) {
		*out = x;
		x = NULL;
		*id = json_incref(rid);
	}
out:
	tensor_destroy(x);
	json_decref(root);
	return err;
}

static df_err v2_infer_inner(gateway *gw, const http_request *req,
			     http_response *res)
{
	df_err err = check_model(gw, http_request_param(req, "name"));
	if (err)
		return err;
	tensor *x = NULL;
	json_t *id = NULL;
	inference inf = {0};
	double t0 = now_s();
	err = v2_input(gw, req, &x, &id);
	if (!err)
		err = infer(gw, x, &inf);
	if (err)
		goto out;
	bool rejected = false;
	err = coverage_reply(gw, &inf, res, &rejected);
	if (err || rejected)
		goto out;
	json_t *data = json_array();
	const float *y = tensor_f32(inf.logits);
	for (size_t i = 0; data && y && i < inf.logits->numel; i++)
		if (json_array_append_new(data, json_real((double)y[i]))) {
			json_decref(data);
			data = NULL;
		}
	char version[32];
	snprintf(version, sizeof version, "%" PRId64, inf.version);
	json_t *body = json_pack(
		"{s:s, s:s, s:O?, s:[{s:s, s:o, s:s, s:o}], s:{s:f, s:b, s:O, s:I, s:f, s:s}}",
		"model_name", gw->model_name, "model_version", version, "id", id,
		"outputs", "name", gw->mdl->dir->output_name, "shape",
		shape_json(inf.logits->ndim, inf.logits->dims), "datatype", "FP32",
		"data", data, "parameters", "coverage", inf.rr.coverage, "degraded",
		inf.rr.coverage < 1.0, "failed_devices", inf.failed,
		"partition_version", (json_int_t)inf.version, "latency_ms",
		(now_s() - t0) * 1000.0, "request_id", inf.request_id);
	if (body && !id)
		json_object_set_new(body, "id", json_string(inf.request_id));
	err = http_reply_json(res, 200, body);
out:
	json_decref(id);
	inference_clear(&inf);
	tensor_destroy(x);
	return err;
}

df_err classify_handle_v2_infer(const http_request *req, http_response *res,
				void *ctx)
{
	gateway *gw = ctx;
	double t0 = now_s();
	df_err_clear();
	return finish(gw, METRICS_INFER, res, v2_infer_inner(gw, req, res), t0);
}

df_err classify_handle_v2_model(const http_request *req, http_response *res,
				void *ctx)
{
	gateway *gw = ctx;
	df_err err = check_model(gw, http_request_param(req, "name"));
	if (err)
		return err;
	const graph *g = gw->mdl->g;
	const graph_value *iv = &g->values[g->inputs[0]];
	const graph_value *ov = &g->values[g->outputs[0]];
	const model_dir *md = gw->mdl->dir;
	char version[32];
	snprintf(version, sizeof version, "%" PRId64,
		 sched_active_version(gw->sched));
	json_t *labels = json_array();
	for (size_t i = 0; labels && i < md->n_labels; i++)
		if (json_array_append_new(labels, json_string(md->labels[i]))) {
			json_decref(labels);
			labels = NULL;
		}
	return http_reply_json(
		res, 200,
		json_pack("{s:s, s:[s], s:s, s:[{s:s, s:s, s:o}], s:[{s:s, s:s, s:o}], s:{s:o, s:s, s:s, s:f}}",
			  "name", gw->model_name, "versions", version, "platform",
			  "dicefleet", "inputs", "name", md->input_name, "datatype",
			  "FP32", "shape", shape_json(iv->ndim, iv->dims), "outputs",
			  "name", md->output_name, "datatype", "FP32", "shape",
			  shape_json(ov->ndim, ov->dims), "parameters", "labels",
			  labels, "color", image_color_name(md->input.color),
			  "sha256", md->sha256, "min_coverage", gw->min_coverage));
}

df_err classify_handle_v2_model_ready(const http_request *req,
				      http_response *res, void *ctx)
{
	gateway *gw = ctx;
	df_err err = check_model(gw, http_request_param(req, "name"));
	if (err)
		return err;
	char reason[512];
	if (!sched_ready(gw->sched, reason, sizeof reason))
		return http_reply_error_status(res, 503, df_err_code(DF_EUNAVAIL),
					       reason);
	return http_reply_json(res, 200, json_pack("{s:s, s:b}", "name",
						   gw->model_name, "ready", 1));
}

df_err classify_handle_v2_server(const http_request *req, http_response *res,
				 void *ctx)
{
	(void)req;
	(void)ctx;
	return http_reply_json(res, 200,
			       json_pack("{s:s, s:s, s:[]}", "name", "dicefleet",
					 "version", DICEFLEET_VERSION, "extensions"));
}

df_err classify_handle_live(const http_request *req, http_response *res,
			    void *ctx)
{
	(void)req;
	(void)ctx;
	return http_reply_json(res, 200, json_pack("{s:b}", "live", 1));
}

df_err classify_handle_ready(const http_request *req, http_response *res,
			     void *ctx)
{
	(void)req;
	gateway *gw = ctx;
	char reason[512];
	if (!sched_ready(gw->sched, reason, sizeof reason))
		return http_reply_error_status(res, 503, df_err_code(DF_EUNAVAIL),
					       reason);
	return http_reply_json(res, 200,
			       json_pack("{s:b, s:s, s:I}", "ready", 1, "model",
					 gw->model_name, "partition_version",
					 (json_int_t)sched_active_version(gw->sched)));
}
