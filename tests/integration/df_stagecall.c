/*
 * df_stagecall - test client for dicefleet-worker.
 *
 *   df_stagecall map   --model DIR --devices N [--method M] [--ratio R]
 *                      [--copies C] [--seed S] [--version V]
 *                      [--gateway-last BOOL] --out MAP.json
 *       writes a partition map (partition_create) for the model in DIR,
 *       devices named d0..dN-1.
 *   df_stagecall infer --model DIR --map MAP.json --version V
 *                      --worker ID=URL ... [--input X.npy] [--out Y.npy]
 *                      [--dtype f32|f16] [--tol T]
 *       runs one inference through the workers (runner.h with an HTTP
 *       backend: every distributed stage is a POST /v1/stage), and the
 *       whole model in-process with oneDNN; prints one JSON line with the
 *       largest difference and the coverage, exits 1 when a call failed or
 *       the difference exceeds T (relative to max(1, max|reference|)).
 *   df_stagecall call  --url URL --model DIR --map MAP.json --version V
 *                      --device ID --stage S [--ids LIST|primaries|held]
 *                      [--model-name NAME] [--frames K] [--bad-shape]
 *                      [--truncate N] [--dump FILE] [--out Y.npy]
 *       sends one stage request (zero inputs of the stage's shapes; the
 *       options make it wrong on purpose) and prints "HTTP <status>" on
 *       stdout, the body on stderr if it is not a frame; exit 0 when an
 *       HTTP answer came back, 3 when the connection failed or dropped.
 *   df_stagecall bench --url URL --model DIR --map MAP.json --version V
 *                      --device ID --stage S --clients C --calls N
 *       C threads each send N calls (the device's primaries); prints one
 *       JSON line with throughput and latency percentiles.
 *
 * Every subcommand takes --token T (default: $DICEFLEET_CLUSTER_TOKEN).
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "config.h"
#include "engine.h"
#include "log.h"
#include "model.h"
#include "npy.h"
#include "partition.h"
#include "runner.h"
#include "wire.h"

#define FRAME_TYPE "application/x-dicefleet-frame"
#define MAX_WORKERS PARTITION_MAX_DEVICES

static const config_opt opts[] = {
	{"model", NULL, CONFIG_STRING, NULL, 1, 0, "model directory"},
	{"map", NULL, CONFIG_STRING, NULL, 1, 0, "partition map JSON file"},
	{"out", NULL, CONFIG_STRING, NULL, 1, 0, "output file"},
	{"devices", NULL, CONFIG_INT, "1", 1, PARTITION_MAX_DEVICES, "devices"},
	{"method", NULL, CONFIG_STRING, "sequential", 1, 0, "partition method"},
	{"ratio", NULL, CONFIG_DOUBLE, "0", 0, 1, "replication ratio"},
	{"copies", NULL, CONFIG_INT, "2", 1, PARTITION_MAX_COPIES, "copies"},
	{"seed", NULL, CONFIG_INT, "0", 0, 1e15, "seed"},
	{"gateway-last", NULL, CONFIG_BOOL, "true", 1, 0, "logits on the gateway"},
	{"version", NULL, CONFIG_INT, "1", 0, 1e15, "partition version"},
	{"worker", NULL, CONFIG_LIST, NULL, 1, 0, "ID=URL of a worker"},
	{"input", NULL, CONFIG_STRING, NULL, 1, 0, "input .npy"},
	{"dtype", NULL, CONFIG_STRING, "f32", 1, 0, "wire dtype f32|f16"},
	{"tol", NULL, CONFIG_DOUBLE, "1e-3", 0, 1e9, "tolerance"},
	{"url", NULL, CONFIG_STRING, NULL, 1, 0, "worker base URL"},
	{"device", NULL, CONFIG_STRING, "d0", 1, 0, "device id"},
	{"stage", NULL, CONFIG_INT, "-1", -1, 1e9, "stage index (-1 = first held)"},
	{"ids", NULL, CONFIG_STRING, "primaries", 1, 0, "neuron ids"},
	{"model-name", NULL, CONFIG_STRING, NULL, 1, 0, "model name sent"},
	{"frames", NULL, CONFIG_INT, "-1", -1, 64, "frames sent"},
	{"bad-shape", NULL, CONFIG_BOOL, "false", 1, 0, "wrong input shape"},
	{"truncate", NULL, CONFIG_INT, "-1", -1, 1e12, "send only N bytes"},
	{"dump", NULL, CONFIG_STRING, NULL, 1, 0, "write the request here"},
	{"clients", NULL, CONFIG_INT, "1", 1, 256, "concurrent clients"},
	{"calls", NULL, CONFIG_INT, "10", 1, 1e9, "calls per client"},
	{"token", "DICEFLEET_CLUSTER_TOKEN", CONFIG_STRING, NULL, 1, 0, "token"},
};

static const char *token;

static int die(const char *what, df_err err)
{
	fprintf(stderr, "df_stagecall: %s: %s\n", what,
		df_err_msg()[0] ? df_err_msg() : df_err_str(err));
	return 1;
}

/* ---- HTTP --------------------------------------------------------------- */

typedef struct http_reply {
	long status;
	unsigned char *body;
	size_t len;
	CURLcode rc;
} http_reply;

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
	http_reply *r = ud;
	size_t add = sz * n;
	unsigned char *b = realloc(r->body, r->len + add + 1);
	if (!b)
		return 0;
	memcpy(b + r->len, p, add);
	r->body = b;
	r->len += add;
	b[r->len] = 0;
	return add;
}

/* POSTs len bytes to url + "/v1/stage" on handle c (reused: keep-alive). */
static http_reply post_stage(CURL *c, const char *url, const void *body,
			     size_t len)
{
	http_reply r = {0};
	char full[512], auth[512];
	snprintf(full, sizeof full, "%s/v1/stage", url);
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: " FRAME_TYPE);
	h = curl_slist_append(h, "Expect:");
	if (token) {
		snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
		h = curl_slist_append(h, auth);
	}
	curl_easy_setopt(c, CURLOPT_URL, full);
	curl_easy_setopt(c, CURLOPT_POST, 1L);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	r.rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
	curl_slist_free_all(h);
	return r;
}

/* ---- stage requests ----------------------------------------------------- */

/* Encodes a request for stage s with the given inputs (frame 0 whole,
 * side inputs sliced to ids). */
static df_err encode_request(wire_buf *b, uint64_t version, const char *name,
			     int s, int64_t stage_neurons, const int32_t *ids,
			     size_t n, const tensor *const *inputs, int n_inputs,
			     wire_dtype dtype, uint64_t request_id)
{
	wire_frame frames[WIRE_MAX_FRAMES];
	if (n_inputs > WIRE_MAX_FRAMES)
		return df_errf(DF_ERANGE, "too many inputs");
	for (int k = 0; k < n_inputs; k++) {
		bool whole = k == 0;
		frames[k] = (wire_frame){.t = (tensor *)inputs[k],
					 .dtype = dtype,
					 .channel_axis = whole ? WIRE_WHOLE : 1,
					 .channels_total = whole ? 0 : (uint32_t)stage_neurons,
					 .ids = whole ? NULL : (int32_t *)ids,
					 .n_ids = whole ? 0 : n};
	}
	wire_msg m = {.kind = WIRE_MSG_REQUEST,
		      .request_id = request_id,
		      .partition_version = version,
		      .stage = (uint32_t)s,
		      .model = (char *)name,
		      .neurons = (int32_t *)ids,
		      .n_neurons = n,
		      .frames = frames,
		      .n_frames = (size_t)n_inputs};
	return wire_msg_encode(b, &m);
}

/* Parses a response: one frame with ids[0..n) on axis 1. *out is new. */
static df_err decode_response(const http_reply *r, int s, const int32_t *ids,
			      size_t n, tensor **out)
{
	if (r->rc != CURLE_OK)
		return df_errf(DF_EUNAVAIL, "stage %d: %s", s, curl_easy_strerror(r->rc));
	if (r->status != 200)
		return df_errf(DF_EUNAVAIL, "stage %d: HTTP %ld: %.300s", s, r->status,
			       r->body ? (const char *)r->body : "");
	wire_msg m = {0};
	df_err err = wire_msg_parse(r->body, r->len, &m);
	if (err)
		return err;
	if (m.kind != WIRE_MSG_RESPONSE || m.n_frames != 1 || (int)m.stage != s ||
	    m.frames[0].channel_axis != 1 || m.frames[0].n_ids != n ||
	    memcmp(m.frames[0].ids, ids, n * sizeof *ids) != 0)
		err = df_errf(DF_EINVAL, "stage %d: response does not match the request", s);
	if (!err) {
		*out = m.frames[0].t;
		m.frames[0].t = NULL;
	}
	wire_msg_free(&m);
	return err;
}

/* ---- shared setup ------------------------------------------------------- */

typedef struct setup {
	model *m;
	partition_map *map;
	char *name;       /* model name (the directory's basename) */
} setup;

static df_err read_file(const char *path, char **text, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return df_errf(DF_ENOENT, "%s: cannot open", path);
	char *buf = NULL;
	size_t n = 0, cap = 0;
	df_err err = DF_OK;
	while (1) {
		if (n + 4096 + 1 > cap) {
			cap = (n + 4096 + 1) * 2;
			char *b = realloc(buf, cap);
			if (!b) {
				err = DF_ENOMEM;
				break;
			}
			buf = b;
		}
		size_t got = fread(buf + n, 1, 4096, f);
		n += got;
		if (got < 4096)
			break;
	}
	fclose(f);
	if (err) {
		free(buf);
		return err;
	}
	buf[n] = 0;
	*text = buf;
	*len = n;
	return DF_OK;
}

static df_err setup_load(const config *c, bool need_map, setup *s)
{
	const char *dir = config_str(c, "model");
	if (!dir)
		return df_errf(DF_EINVAL, "--model is required");
	df_err err = model_load(dir, NULL, false, &s->m);
	if (err)
		return err;
	const char *slash = strrchr(dir, '/');
	s->name = strdup(slash && slash[1] ? slash + 1 : dir);
	if (!s->name)
		return DF_ENOMEM;
	size_t l = strlen(s->name);
	while (l > 1 && s->name[l - 1] == '/')
		s->name[--l] = 0;
	if (!need_map)
		return DF_OK;
	const char *path = config_str(c, "map");
	if (!path)
		return df_errf(DF_EINVAL, "--map is required");
	char *text = NULL;
	size_t len = 0;
	err = read_file(path, &text, &len);
	if (!err)
		err = partition_from_json(text, len, &s->map);
	free(text);
	if (!err)
		err = partition_validate(s->map, s->m->plan);
	return err;
}

static void setup_free(setup *s)
{
	partition_destroy(s->map);
	model_destroy(s->m);
	free(s->name);
}

/* Zero tensors shaped like stage s's inputs, side inputs with n channels. */
static df_err zero_inputs(const setup *su, int s, size_t n, bool bad_shape,
			  tensor **inputs)
{
	const stage *st = &su->m->plan->stages[s];
	for (int k = 0; k < st->n_inputs; k++) {
		const graph_value *v = &su->m->g->values[st->inputs[k]];
		int64_t dims[TENSOR_MAX_DIMS];
		memcpy(dims, v->dims, sizeof dims);
		if (k > 0)
			dims[1] = (int64_t)n;
		if (k == 0 && bad_shape)
			dims[v->ndim - 1] += 1;
		df_err err = tensor_create(TENSOR_F32, v->ndim, dims, &inputs[k]);
		if (err)
			return err;
	}
	return DF_OK;
}

/* Neuron list: "primaries", "held", or "1,2,3". *ids new. */
static df_err pick_ids(const setup *su, int s, int d, const char *spec,
		       int32_t **ids, size_t *n)
{
	if (strcmp(spec, "held") == 0)
		return partition_held(su->map, s, d, ids, n);
	const partition_stage *ps = &su->map->stages[s];
	int32_t *out = malloc(((size_t)ps->n_neurons + 64) * sizeof *out);
	if (!out)
		return DF_ENOMEM;
	size_t k = 0;
	if (strcmp(spec, "primaries") == 0) {
		for (int64_t i = 0; ps->primary && i < ps->n_neurons; i++)
			if (ps->primary[i] == d)
				out[k++] = (int32_t)i;
	} else {
		const char *p = spec;
		while (*p && k < (size_t)ps->n_neurons + 64) {
			char *end = NULL;
			long v = strtol(p, &end, 10);
			if (end == p) {
				free(out);
				return df_errf(DF_EINVAL, "--ids: bad list '%s'", spec);
			}
			out[k++] = (int32_t)v;
			p = *end == ',' ? end + 1 : end;
		}
	}
	*ids = out;
	*n = k;
	return DF_OK;
}

/* First stage device d holds, or -1. */
static int first_held(const setup *su, int d)
{
	for (int s = 0; s < su->map->n_stages; s++) {
		int32_t *ids = NULL;
		size_t n = 0;
		if (partition_held(su->map, s, d, &ids, &n) == DF_OK) {
			free(ids);
			if (n > 0)
				return s;
		}
	}
	return -1;
}

/* ---- map ---------------------------------------------------------------- */

static int cmd_map(const config *c)
{
	setup su = {0};
	partition_map *map = NULL;
	char *json = NULL;
	int rc = 1;
	df_err err = setup_load(c, false, &su);
	if (err) {
		rc = die("loading the model", err);
		goto out;
	}
	partition_params p;
	partition_params_default(&p);
	err = partition_method_parse(config_str(c, "method"), &p.method);
	if (err) {
		rc = die("--method", err);
		goto out;
	}
	p.ratio = config_double(c, "ratio");
	p.copies = (int)config_int(c, "copies");
	p.seed = (uint64_t)config_int(c, "seed");
	p.n_devices = (int)config_int(c, "devices");
	p.gateway_last = config_bool(c, "gateway-last");
	err = partition_create(su.m->g, su.m->plan, &p, &map);
	if (!err) {
		map->version = config_int(c, "version");
		free(map->model);
		map->model = strdup(su.name);
		if (!map->model)
			err = DF_ENOMEM;
	}
	if (!err)
		err = partition_to_json(map, &json);
	if (err) {
		rc = die("partitioning", err);
		goto out;
	}
	const char *out = config_str(c, "out");
	FILE *f = out ? fopen(out, "w") : stdout;
	if (!f || fputs(json, f) < 0 || (out && fclose(f) != 0)) {
		fprintf(stderr, "df_stagecall: cannot write %s\n", out ? out : "stdout");
		goto out;
	}
	rc = 0;
out:
	free(json);
	partition_destroy(map);
	setup_free(&su);
	return rc;
}

/* ---- infer -------------------------------------------------------------- */

typedef struct http_backend {
	const setup *su;
	const char *urls[MAX_WORKERS];  /* by device index */
	CURL *curl;
	uint64_t version;
	wire_dtype dtype;
	int failures;
} http_backend;

static void be_execute(void *ctx, runner_call *calls, size_t n)
{
	http_backend *b = ctx;
	for (size_t i = 0; i < n; i++) {
		runner_call *call = &calls[i];
		call->output = NULL;
		const char *url = b->urls[call->device];
		if (!url) {
			call->status = df_errf(DF_EUNAVAIL, "no URL for device %d", call->device);
			b->failures++;
			continue;
		}
		wire_buf buf = {0};
		df_err err = encode_request(&buf, b->version, b->su->name, call->stage,
					    b->su->m->plan->stages[call->stage].n_neurons,
					    call->ids, call->n, call->inputs, call->n_inputs,
					    b->dtype, i + 1);
		http_reply r = {0};
		if (!err) {
			r = post_stage(b->curl, url, buf.data, buf.len);
			err = decode_response(&r, call->stage, call->ids, call->n,
					      &call->output);
		}
		if (err) {
			fprintf(stderr, "df_stagecall: device %s stage %d: %s\n",
				b->su->map->devices[call->device], call->stage, df_err_msg());
			b->failures++;
		}
		call->status = err;
		free(r.body);
		wire_buf_free(&buf);
	}
}

static df_err make_input(const setup *su, const config *c, tensor **out)
{
	const char *path = config_str(c, "input");
	if (path)
		return npy_read_file(path, out);
	const graph_value *v = &su->m->g->values[su->m->g->inputs[0]];
	df_err err = tensor_create(TENSOR_F32, v->ndim, v->dims, out);
	if (err)
		return err;
	float *x = tensor_f32(*out);
	uint32_t st = 12345;
	for (size_t i = 0; i < (*out)->numel; i++) {
		st = st * 1664525u + 1013904223u;
		x[i] = (float)((st >> 8) & 0xffff) / 65536.0f * 2.0f - 1.0f;
	}
	return DF_OK;
}

static int cmd_infer(const config *c)
{
	setup su = {0};
	http_backend hb = {0};
	runner *r = NULL;
	engine *e = NULL;
	tensor *x = NULL, *y = NULL, *ref = NULL;
	int rc = 1;
	df_err err = setup_load(c, true, &su);
	if (err) {
		rc = die("loading", err);
		goto out;
	}
	hb.su = &su;
	hb.version = (uint64_t)config_int(c, "version");
	hb.dtype = strcmp(config_str(c, "dtype"), "f16") == 0 ? WIRE_F16 : WIRE_F32;
	size_t nw = 0;
	const char *const *ws = config_list(c, "worker", &nw);
	for (size_t i = 0; i < nw; i++) {
		const char *eq = strchr(ws[i], '=');
		if (!eq) {
			fprintf(stderr, "df_stagecall: --worker %s: expected ID=URL\n", ws[i]);
			goto out;
		}
		for (int d = 0; d < su.map->n_devices; d++)
			if (strlen(su.map->devices[d]) == (size_t)(eq - ws[i]) &&
			    strncmp(su.map->devices[d], ws[i], (size_t)(eq - ws[i])) == 0)
				hb.urls[d] = eq + 1;
	}
	hb.curl = curl_easy_init();
	if (!hb.curl)
		goto out;
	err = make_input(&su, c, &x);
	if (err) {
		rc = die("input", err);
		goto out;
	}
	runner_options ro = {.impute = IMPUTE_ZERO, .replicas = REPLICA_STANDBY,
			     .kind = ENGINE_DNNL};
	runner_result res = {0};
	runner_backend be = {.ctx = &hb, .execute = be_execute};
	err = runner_create(su.m->g, su.m->plan, su.map, &ro, &r);
	if (!err)
		err = runner_infer(r, x, 0, &be, &y, &res);
	if (err) {
		rc = die("inference through the workers", err);
		goto out;
	}
	err = engine_create(su.m->g, ENGINE_DNNL, 0, &e);
	const tensor *ins[1] = {x};
	tensor *outs[1] = {NULL};
	if (!err)
		err = engine_run(e, ins, outs);
	if (err) {
		rc = die("in-process reference", err);
		goto out;
	}
	ref = outs[0];
	double max_abs = 0, max_rel = 0, peak = 0;
	err = tensor_max_error(y, ref, 1e-3f, &max_abs, &max_rel);
	if (err) {
		rc = die("comparing", err);
		goto out;
	}
	for (size_t i = 0; i < ref->numel; i++)
		peak = fmax(peak, fabs((double)tensor_f32(ref)[i]));
	const char *outp = config_str(c, "out");
	if (outp && (err = npy_write_file(outp, y)) != DF_OK) {
		rc = die("--out", err);
		goto out;
	}
	double tol = config_double(c, "tol") * fmax(1.0, peak);
	printf("{\"max_abs\": %.6g, \"max_rel\": %.6g, \"peak\": %.6g, \"coverage\": %.6g, "
	       "\"calls\": %d, \"failures\": %d}\n",
	       max_abs, max_rel, peak, res.coverage, res.calls, hb.failures);
	rc = (hb.failures == 0 && res.coverage >= 1.0 && max_abs <= tol) ? 0 : 1;
out:
	tensor_destroy(x);
	tensor_destroy(y);
	tensor_destroy(ref);
	engine_destroy(e);
	runner_destroy(r);
	if (hb.curl)
		curl_easy_cleanup(hb.curl);
	setup_free(&su);
	return rc;
}

/* ---- call --------------------------------------------------------------- */

/* Builds the request `call` and `bench` send. */
static df_err build_call(const config *c, const setup *su, int *stage_out,
			 wire_buf *b)
{
	int d = partition_device_index(su->map, config_str(c, "device"));
	if (d < 0)
		return df_errf(DF_EINVAL, "--device %s is not in the map",
			       config_str(c, "device"));
	int s = (int)config_int(c, "stage");
	if (s < 0)
		s = first_held(su, d);
	if (s < 0 || s >= su->m->plan->n_stages)
		return df_errf(DF_EINVAL, "--stage %d: no such stage", s);
	int32_t *ids = NULL;
	size_t n = 0;
	tensor *inputs[WIRE_MAX_FRAMES] = {0};
	const stage *st = &su->m->plan->stages[s];
	df_err err = DF_OK;
	if (st->kind != STAGE_NEURON) {
		/* Still send something shaped like a call, so that the worker's
		 * answer to a LOCAL stage can be tested. */
		ids = calloc(1, sizeof *ids);
		n = 1;
		if (!ids)
			err = DF_ENOMEM;
	} else {
		err = pick_ids(su, s, d, config_str(c, "ids"), &ids, &n);
	}
	if (!err && st->n_inputs > WIRE_MAX_FRAMES)
		err = df_errf(DF_ERANGE, "stage has too many inputs");
	if (!err)
		err = zero_inputs(su, s, n, config_bool(c, "bad-shape"), inputs);
	int frames = (int)config_int(c, "frames");
	if (frames < 0 || frames > st->n_inputs)
		frames = st->n_inputs;
	const char *name = config_str(c, "model-name");
	if (!err)
		err = encode_request(b, (uint64_t)config_int(c, "version"),
				     name ? name : su->name, s, st->n_neurons, ids, n,
				     (const tensor *const *)inputs, frames,
				     strcmp(config_str(c, "dtype"), "f16") == 0 ? WIRE_F16
										  : WIRE_F32,
				     7);
	for (int k = 0; k < WIRE_MAX_FRAMES; k++)
		tensor_destroy(inputs[k]);
	free(ids);
	*stage_out = s;
	return err;
}

static int cmd_call(const config *c)
{
	setup su = {0};
	wire_buf b = {0};
	CURL *curl = NULL;
	http_reply r = {0};
	int rc = 1, s = -1;
	const char *url = config_str(c, "url");
	df_err err = setup_load(c, true, &su);
	if (!err)
		err = build_call(c, &su, &s, &b);
	if (err) {
		rc = die("building the request", err);
		goto out;
	}
	int64_t trunc = config_int(c, "truncate");
	size_t len = trunc >= 0 && (size_t)trunc < b.len ? (size_t)trunc : b.len;
	const char *dump = config_str(c, "dump");
	if (dump) {
		FILE *f = fopen(dump, "wb");
		if (!f || fwrite(b.data, 1, len, f) != len || fclose(f) != 0) {
			fprintf(stderr, "df_stagecall: cannot write %s\n", dump);
			goto out;
		}
	}
	if (!url) {
		rc = dump ? 0 : die("--url", df_errf(DF_EINVAL, "required"));
		goto out;
	}
	curl = curl_easy_init();
	if (!curl)
		goto out;
	r = post_stage(curl, url, b.data, len);
	if (r.rc != CURLE_OK) {
		printf("HTTP 0\n");
		fprintf(stderr, "df_stagecall: %s\n", curl_easy_strerror(r.rc));
		rc = 3;
		goto out;
	}
	printf("HTTP %ld\n", r.status);
	if (r.status != 200) {
		fprintf(stderr, "%s\n", r.body ? (const char *)r.body : "");
		rc = 0;
		goto out;
	}
	wire_msg m = {0};
	err = wire_msg_parse(r.body, r.len, &m);
	if (err) {
		rc = die("parsing the response", err);
		goto out;
	}
	const char *outp = config_str(c, "out");
	if (m.n_frames == 1 && outp)
		err = npy_write_file(outp, m.frames[0].t);
	if (m.n_frames == 1)
		fprintf(stderr, "frame: %zu channels of %u, stage %u\n", m.frames[0].n_ids,
			m.frames[0].channels_total, m.stage);
	wire_msg_free(&m);
	rc = err ? die("--out", err) : 0;
out:
	free(r.body);
	if (curl)
		curl_easy_cleanup(curl);
	wire_buf_free(&b);
	setup_free(&su);
	return rc;
}

/* ---- bench -------------------------------------------------------------- */

typedef struct bench_arg {
	const char *url;
	const wire_buf *req;
	int calls;
	double *lat_ms;   /* [calls] */
	int errors;
} bench_arg;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *bench_thread(void *p)
{
	bench_arg *a = p;
	CURL *curl = curl_easy_init();
	for (int i = 0; curl && i < a->calls; i++) {
		double t0 = now_s();
		http_reply r = post_stage(curl, a->url, a->req->data, a->req->len);
		a->lat_ms[i] = (now_s() - t0) * 1e3;
		if (r.rc != CURLE_OK || r.status != 200)
			a->errors++;
		free(r.body);
	}
	if (curl)
		curl_easy_cleanup(curl);
	else
		a->errors = a->calls;
	return NULL;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static int cmd_bench(const config *c)
{
	setup su = {0};
	wire_buf b = {0};
	int rc = 1, s = -1;
	const char *url = config_str(c, "url");
	int clients = (int)config_int(c, "clients");
	int calls = (int)config_int(c, "calls");
	bench_arg args[256];
	pthread_t th[256];
	double *lat = NULL;
	df_err err = setup_load(c, true, &su);
	if (!err)
		err = build_call(c, &su, &s, &b);
	if (err || !url) {
		rc = die("building the request", err ? err : DF_EINVAL);
		goto out;
	}
	lat = calloc((size_t)clients * (size_t)calls, sizeof *lat);
	if (!lat)
		goto out;
	double t0 = now_s();
	int started = 0;
	for (int i = 0; i < clients; i++) {
		args[i] = (bench_arg){.url = url, .req = &b, .calls = calls,
				      .lat_ms = lat + (size_t)i * (size_t)calls};
		if (pthread_create(&th[i], NULL, bench_thread, &args[i]) != 0)
			break;
		started++;
	}
	int errors = 0;
	for (int i = 0; i < started; i++) {
		pthread_join(th[i], NULL);
		errors += args[i].errors;
	}
	double secs = now_s() - t0;
	size_t total = (size_t)started * (size_t)calls;
	qsort(lat, total, sizeof *lat, cmp_double);
	printf("{\"stage\": %d, \"clients\": %d, \"calls\": %zu, \"errors\": %d, "
	       "\"seconds\": %.3f, \"calls_per_s\": %.1f, \"p50_ms\": %.3f, "
	       "\"p95_ms\": %.3f, \"max_ms\": %.3f}\n",
	       s, started, total, errors, secs, (double)total / secs,
	       lat[total / 2], lat[(size_t)((double)total * 0.95)], lat[total - 1]);
	rc = errors ? 1 : 0;
out:
	free(lat);
	wire_buf_free(&b);
	setup_free(&su);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: df_stagecall map|infer|call|bench [options]\n");
		return 2;
	}
	log_set_level(LOG_WARN);
	config *c = NULL;
	df_err err = config_create(opts, sizeof opts / sizeof opts[0], &c);
	if (!err)
		err = config_load_env(c);
	if (!err)
		err = config_parse_args(c, argc, argv, 2);
	if (err) {
		fprintf(stderr, "df_stagecall: %s\n", df_err_msg());
		config_destroy(c);
		return 2;
	}
	token = config_str(c, "token");
	if (token && !*token)
		token = NULL;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int rc = 2;
	if (strcmp(argv[1], "map") == 0)
		rc = cmd_map(c);
	else if (strcmp(argv[1], "infer") == 0)
		rc = cmd_infer(c);
	else if (strcmp(argv[1], "call") == 0)
		rc = cmd_call(c);
	else if (strcmp(argv[1], "bench") == 0)
		rc = cmd_bench(c);
	else
		fprintf(stderr, "df_stagecall: unknown command '%s'\n", argv[1]);
	curl_global_cleanup();
	config_destroy(c);
	return rc;
}
