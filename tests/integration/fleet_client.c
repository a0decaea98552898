/*
 * fleet_client.c - test client for the fleet integration tests. It talks
 * to a running dicefleet-gateway and holds its answers against the same
 * model run in this process on one engine (what `dicefleet run` does).
 *
 *   fleet_client inputs   --models D --model M --samples DIR --out DIR
 *       writes DIR/<png name>.npy: each sample PNG preprocessed as the
 *       gateway does (input for `dicefleet run`).
 *   fleet_client compare  --url U --models D --model M [--samples DIR]
 *                         [--ref-dir DIR] [--test-images N] [--tol T]
 *       for each sample PNG and the first N Fashion-MNIST test images:
 *       reference logits in process; if --ref-dir, checks them against
 *       DIR/<png name>/<output>.npy written by `dicefleet run`; POSTs the
 *       tensor to /v2/models/M/infer and requires relative error <= T
 *       (max |fleet - ref| / max(max |ref|, 1e-6)); POSTs each PNG to
 *       /v1/classify and requires the reference's top-1, and the one
 *       listed in --expect-top1 (e.g. from `dicefleet classify`).
 *   fleet_client accuracy --url U --models D --model M --limit N
 *       top-1 accuracy of the fleet (v2 infer with preprocessed tensors) on
 *       the first N test images.
 *   fleet_client validate-map --models D --model M FILE
 *       parses FILE as a partition map and validates it against M's plan.
 *   fleet_client latency --url U --model M --image FILE [--repeat N]
 *       times N POST /v1/classify of FILE (after 3 warm-ups) on one
 *       keep-alive connection: min, median, p90, p99, max, mean in ms (benchmarks).
 *   fleet_client load     --url U --model M --image FILE --clients N
 *                         (--duration-s S | --requests K) [--out FILE.jsonl]
 *       closed-loop load: N threads, each with its own keep-alive
 *       connection, POST FILE to /v1/classify back to back until S seconds
 *       have passed since the start or K requests (all clients together)
 *       were sent, whichever comes first (SIGINT/SIGTERM end it early, after
 *       the requests in flight, with the same output). With --out, one JSON line per
 *       request in completion order: t_ms (its start, ms since the load
 *       started, monotonic clock), latency_ms, status (HTTP status; 0 =
 *       transport error), client, and from a 2xx answer coverage,
 *       degraded, failed_devices, partition_version (null otherwise),
 *       else error (the answer's error code or the transport error).
 *       Summary line: requests, ok, non_2xx (includes transport_errors),
 *       p50/p99/max latency, min_coverage, degraded, versions seen, and
 *       start_unix_ms (wall clock at t_ms = 0, to line t_ms up with
 *       gateway event times). Exit 1 if any request was not 2xx.
 *   fleet_client staged --models D --model M --image FILE [--repeat N]
 *                       [--threads T]
 *       times N in-process inferences of FILE's tensor through the runner
 *       and the simulator with ONE device (the fleet's stage split and
 *       per-stage engines, no network): the staging cost on its own.
 *
 * One JSON line on stdout per command; failures on stderr; exit 0 on
 * success, 1 on a failed check, 2 on usage errors.
 */
#include <curl/curl.h>
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "engine.h"
#include "fmnist.h"
#include "image.h"
#include "model.h"
#include "npy.h"
#include "partition.h"
#include "runner.h"

static const config_opt opts[] = {
	{"url", NULL, CONFIG_STRING, NULL, 0, -1, "gateway base URL"},
	{"models", NULL, CONFIG_STRING, "models", 0, -1, "models directory"},
	{"model", NULL, CONFIG_STRING, "fmnist-vgg", 0, -1, "model name"},
	{"samples", NULL, CONFIG_STRING, NULL, 0, -1, "directory of PNGs"},
	{"ref-dir", NULL, CONFIG_STRING, NULL, 0, -1, "dicefleet run outputs"},
	{"out", NULL, CONFIG_STRING, NULL, 0, -1,
	 "output directory (inputs) or JSONL file (load)"},
	{"test-images", NULL, CONFIG_INT, "0", 0, 10000, "test images"},
	{"limit", NULL, CONFIG_INT, "1000", 1, 10000, "test images"},
	{"data-dir", "DICEFLEET_DATA_DIR", CONFIG_STRING, NULL, 0, -1,
	 "Fashion-MNIST directory"},
	{"tol", NULL, CONFIG_DOUBLE, "1e-5", 0, 1, "relative tolerance"},
	{"image", NULL, CONFIG_STRING, NULL, 0, -1, "image file"},
	{"repeat", NULL, CONFIG_INT, "50", 1, 1000000, "timed requests"},
	{"threads", NULL, CONFIG_INT, "1", 0, 4096, "engine threads (staged)"},
	{"clients", NULL, CONFIG_INT, "8", 1, 1024, "concurrent clients (load)"},
	{"duration-s", NULL, CONFIG_DOUBLE, "0", 0, 86400,
	 "load duration; 0 = --requests"},
	{"requests", NULL, CONFIG_INT, "0", 0, 100000000,
	 "requests in all (load); 0 = --duration-s"},
	{"expect-top1", NULL, CONFIG_STRING, NULL, 0, -1,
	 "file of 'NAME.png INDEX' lines: /v1/classify top-1 expected"},
};

typedef struct buf {
	char *p;
	size_t len;
} buf;

static size_t sink(char *d, size_t sz, size_t n, void *ud)
{
	buf *b = ud;
	char *p = realloc(b->p, b->len + sz * n + 1);
	if (!p)
		return 0;
	memcpy(p + b->len, d, sz * n);
	b->p = p;
	b->len += sz * n;
	b->p[b->len] = '\0';
	return sz * n;
}

/* POSTs body; *resp new (free()); returns the HTTP status or -1. */
static long post(CURL *c, const char *url, const char *ctype, const void *body,
		 size_t len, char **resp)
{
	buf b = {0};
	struct curl_slist *h = NULL;
	char line[128];
	snprintf(line, sizeof line, "Content-Type: %s", ctype);
	h = curl_slist_append(h, line);
	h = curl_slist_append(h, "Expect:");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	CURLcode rc = curl_easy_perform(c);
	curl_slist_free_all(h);
	long status = -1;
	if (rc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	else
		fprintf(stderr, "POST %s: %s\n", url, curl_easy_strerror(rc));
	*resp = b.p;
	return status;
}

/* Fleet logits for x via KServe v2 infer; *out new. */
static int v2_infer(CURL *c, const char *url, const model *m, const tensor *x,
		    tensor **out)
{
	size_t cap = x->numel * 18 + 256, len = 0;
	char *body = malloc(cap);
	if (!body)
		return -1;
	len += (size_t)snprintf(body, cap,
				"{\"inputs\":[{\"name\":\"%s\",\"shape\":[",
				m->dir->input_name);
	for (int i = 0; i < x->ndim; i++)
		len += (size_t)snprintf(body + len, cap - len, "%s%lld", i ? "," : "",
					(long long)x->dims[i]);
	len += (size_t)snprintf(body + len, cap - len,
				"],\"datatype\":\"FP32\",\"data\":[");
	const float *v = tensor_f32(x);
	for (size_t i = 0; i < x->numel; i++)
		len += (size_t)snprintf(body + len, cap - len, "%s%.9g", i ? "," : "",
					(double)v[i]);
	len += (size_t)snprintf(body + len, cap - len, "]}]}");
	char full[512];
	snprintf(full, sizeof full, "%s/v2/models/%s/infer", url, m->dir->name);
	char *resp = NULL;
	long st = post(c, full, "application/json", body, len, &resp);
	free(body);
	int rc = -1;
	json_t *j = resp ? json_loads(resp, 0, NULL) : NULL;
	json_t *data = json_object_get(
		json_array_get(json_object_get(j, "outputs"), 0), "data");
	if (st != 200 || !json_is_array(data)) {
		fprintf(stderr, "v2 infer: HTTP %ld: %.300s\n", st, resp ? resp : "");
		goto out;
	}
	int64_t dims[2] = {1, (int64_t)json_array_size(data)};
	if (tensor_create(TENSOR_F32, 2, dims, out))
		goto out;
	for (size_t i = 0; i < json_array_size(data); i++)
		tensor_f32(*out)[i] = (float)json_number_value(json_array_get(data, i));
	rc = 0;
out:
	json_decref(j);
	free(resp);
	return rc;
}

/* /v1/classify top-1 index of a PNG file, or -1. */
static int v1_top1(CURL *c, const char *url, const char *model_name,
		   const void *png, size_t len)
{
	char full[512];
	snprintf(full, sizeof full, "%s/v1/classify?top_k=1&model=%s", url,
		 model_name);
	char *resp = NULL;
	long st = post(c, full, "image/png", png, len, &resp);
	json_t *j = resp ? json_loads(resp, 0, NULL) : NULL;
	json_t *idx = json_object_get(
		json_array_get(json_object_get(j, "predictions"), 0), "index");
	int top = st == 200 && json_is_integer(idx) ? (int)json_integer_value(idx)
						    : -1;
	if (top < 0)
		fprintf(stderr, "classify: HTTP %ld: %.300s\n", st, resp ? resp : "");
	json_decref(j);
	free(resp);
	return top;
}

static double rel_error(const tensor *a, const tensor *ref)
{
	if (a->numel != ref->numel)
		return INFINITY;
	const float *x = tensor_f32(a), *y = tensor_f32(ref);
	double diff = 0, scale = 1e-6;
	for (size_t i = 0; i < a->numel; i++) {
		double d = fabs((double)x[i] - (double)y[i]);
		if (!(d <= diff))
			diff = isnan(d) ? INFINITY : d > diff ? d : diff;
		if (fabs((double)y[i]) > scale)
			scale = fabs((double)y[i]);
	}
	return diff / scale;
}

static int argmax(const tensor *t)
{
	const float *v = tensor_f32(t);
	int best = 0;
	for (size_t i = 1; i < t->numel; i++)
		if (v[i] > v[best])
			best = (int)i;
	return best;
}

static void *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	void *p = n >= 0 ? malloc((size_t)n + 1) : NULL;
	if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
		free(p);
		p = NULL;
	}
	fclose(f);
	*len = (size_t)n;
	return p;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted PNG file names in dir; returns the count (names new). */
static size_t list_pngs(const char *dir, char ***names)
{
	DIR *d = opendir(dir);
	size_t n = 0;
	*names = NULL;
	if (!d)
		return 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);
		if (l > 4 && strcmp(e->d_name + l - 4, ".png") == 0) {
			*names = realloc(*names, (n + 1) * sizeof **names);
			(*names)[n++] = strdup(e->d_name);
		}
	}
	closedir(d);
	qsort(*names, n, sizeof **names, cmp_str);
	return n;
}

static int preprocess_png(const model *m, const void *png, size_t len,
			  tensor **x)
{
	image *img = NULL;
	int rc = image_decode(png, len, 0, &img) || image_to_tensor(img, &m->dir->input, x);
	image_destroy(img);
	return rc;
}

static int reference(engine *e, const tensor *x, tensor **y)
{
	const tensor *in[1] = {x};
	return engine_run(e, in, y) ? -1 : 0;
}

static int cmd_inputs(config *c, const model *m)
{
	const char *samples = config_str(c, "samples"), *out = config_str(c, "out");
	if (!samples || !out)
		return 2;
	char **names = NULL;
	size_t n = list_pngs(samples, &names);
	int bad = n == 0;
	for (size_t i = 0; i < n; i++) {
		char path[4096];
		size_t len = 0;
		snprintf(path, sizeof path, "%s/%s", samples, names[i]);
		void *png = read_file(path, &len);
		tensor *x = NULL;
		if (!png || preprocess_png(m, png, len, &x)) {
			fprintf(stderr, "%s: %s\n", path, df_err_msg());
			bad = 1;
		} else {
			snprintf(path, sizeof path, "%s/%s.npy", out, names[i]);
			if (npy_write_file(path, x)) {
				fprintf(stderr, "%s: %s\n", path, df_err_msg());
				bad = 1;
			}
		}
		tensor_destroy(x);
		free(png);
		free(names[i]);
	}
	free(names);
	printf("{\"inputs\":%zu}\n", n);
	return bad;
}

/* Expected top-1 of name from a "NAME INDEX" file, or -1. */
static int expected_top1(const char *file, const char *name)
{
	FILE *f = file ? fopen(file, "r") : NULL;
	char n[1024];
	int idx, found = -1;
	while (f && fscanf(f, "%1023s %d", n, &idx) == 2)
		if (strcmp(n, name) == 0)
			found = idx;
	if (f)
		fclose(f);
	return found;
}

static int cmd_compare(config *c, const model *m)
{
	const char *url = config_str(c, "url");
	const char *samples = config_str(c, "samples");
	const char *ref_dir = config_str(c, "ref-dir");
	size_t n_test = (size_t)config_int(c, "test-images");
	double tol = config_double(c, "tol");
	if (!url)
		return 2;
	engine *e = NULL;
	if (engine_create(m->g, ENGINE_DNNL, 1, &e)) {
		fprintf(stderr, "engine: %s\n", df_err_msg());
		return 1;
	}
	CURL *curl = curl_easy_init();
	int failures = 0;
	size_t checked = 0;
	double worst = 0, worst_run = 0;
	char **names = NULL;
	size_t n = samples ? list_pngs(samples, &names) : 0;
	if (samples && n == 0) {
		fprintf(stderr, "no PNG in %s\n", samples);
		failures++;
	}
	for (size_t i = 0; i < n; i++) {
		char path[4096];
		size_t len = 0;
		snprintf(path, sizeof path, "%s/%s", samples, names[i]);
		void *png = read_file(path, &len);
		tensor *x = NULL, *ref = NULL, *fleet = NULL, *run = NULL;
		if (!png || preprocess_png(m, png, len, &x) || reference(e, x, &ref)) {
			fprintf(stderr, "%s: %s\n", path, df_err_msg());
			failures++;
			goto next;
		}
		if (ref_dir) {
			snprintf(path, sizeof path, "%s/%s/%s.npy", ref_dir, names[i],
				 m->dir->output_name);
			double r = 0;
			if (npy_read_file(path, &run) || (r = rel_error(ref, run)) > tol) {
				fprintf(stderr, "%s: dicefleet run logits differ from the in-process reference (rel %g): %s\n",
					names[i], r, df_err_msg());
				failures++;
			}
			if (r > worst_run)
				worst_run = r;
		}
		if (v2_infer(curl, url, m, x, &fleet)) {
			failures++;
			goto next;
		}
		double r = rel_error(fleet, ref);
		if (r > worst)
			worst = r;
		if (!(r <= tol)) {
			fprintf(stderr, "%s: fleet logits differ (relative error %g > %g)\n",
				names[i], r, tol);
			failures++;
		}
		int top = v1_top1(curl, url, m->dir->name, png, len);
		if (top != argmax(ref)) {
			fprintf(stderr, "%s: /v1/classify top-1 %d, reference %d\n",
				names[i], top, argmax(ref));
			failures++;
		}
		const char *expect = config_str(c, "expect-top1");
		if (expect && top != expected_top1(expect, names[i])) {
			fprintf(stderr, "%s: /v1/classify top-1 %d, %s says %d\n",
				names[i], top, expect, expected_top1(expect, names[i]));
			failures++;
		}
		checked++;
next:
		tensor_destroy(x);
		tensor_destroy(ref);
		tensor_destroy(fleet);
		tensor_destroy(run);
		free(png);
		free(names[i]);
	}
	free(names);
	fmnist *data = NULL;
	if (n_test && fmnist_load(config_str(c, "data-dir"), FMNIST_TEST, n_test,
				  &data)) {
		fprintf(stderr, "test images: %s\n", df_err_msg());
		failures++;
		n_test = 0;
	}
	const graph_value *iv = &m->g->values[m->g->inputs[0]];
	tensor *x = NULL;
	if (n_test && tensor_create(TENSOR_F32, iv->ndim, iv->dims, &x))
		failures++;
	for (size_t i = 0; x && i < n_test && failures < 10; i++) {
		tensor *ref = NULL, *fleet = NULL;
		image img = {.width = data->cols, .height = data->rows, .channels = 1,
			     .pixels = (uint8_t *)fmnist_image(data, i)};
		if (image_fill_tensor(&img, &m->dir->input, x) || reference(e, x, &ref) ||
		    v2_infer(curl, url, m, x, &fleet)) {
			fprintf(stderr, "test image %zu failed: %s\n", i, df_err_msg());
			failures++;
		} else {
			double r = rel_error(fleet, ref);
			if (r > worst)
				worst = r;
			if (!(r <= tol)) {
				fprintf(stderr, "test image %zu: relative error %g > %g\n", i,
					r, tol);
				failures++;
			}
			checked++;
		}
		tensor_destroy(ref);
		tensor_destroy(fleet);
	}
	tensor_destroy(x);
	fmnist_destroy(data);
	curl_easy_cleanup(curl);
	engine_destroy(e);
	printf("{\"checked\":%zu,\"max_rel_error\":%g,\"max_rel_error_run\":%g,\"failures\":%d}\n",
	       checked, worst, worst_run, failures);
	return failures ? 1 : 0;
}

static int cmd_accuracy(config *c, const model *m)
{
	const char *url = config_str(c, "url");
	size_t limit = (size_t)config_int(c, "limit");
	if (!url)
		return 2;
	fmnist *data = NULL;
	if (fmnist_load(config_str(c, "data-dir"), FMNIST_TEST, limit, &data)) {
		fprintf(stderr, "%s\n", df_err_msg());
		return 1;
	}
	const graph_value *iv = &m->g->values[m->g->inputs[0]];
	tensor *x = NULL;
	CURL *curl = curl_easy_init();
	size_t correct = 0, done = 0;
	int rc = tensor_create(TENSOR_F32, iv->ndim, iv->dims, &x) ? 1 : 0;
	for (size_t i = 0; !rc && i < data->count; i++) {
		tensor *y = NULL;
		image img = {.width = data->cols, .height = data->rows, .channels = 1,
			     .pixels = (uint8_t *)fmnist_image(data, i)};
		if (image_fill_tensor(&img, &m->dir->input, x) ||
		    v2_infer(curl, url, m, x, &y)) {
			fprintf(stderr, "image %zu failed\n", i);
			rc = 1;
			break;
		}
		correct += argmax(y) == fmnist_label(data, i);
		done++;
		tensor_destroy(y);
	}
	printf("{\"images\":%zu,\"correct\":%zu,\"accuracy\":%.6f}\n", done, correct,
	       done ? (double)correct / (double)done : 0.0);
	tensor_destroy(x);
	curl_easy_cleanup(curl);
	fmnist_destroy(data);
	return rc;
}

static int cmd_validate_map(config *c, const model *m)
{
	if (config_positional_count(c) < 2)
		return 2;
	size_t len = 0;
	char *text = read_file(config_positional(c, 1), &len);
	partition_map *map = NULL;
	if (!text || partition_from_json(text, len, &map) ||
	    partition_validate(map, m->plan)) {
		fprintf(stderr, "map: %s\n", text ? df_err_msg() : "cannot read");
		free(text);
		return 1;
	}
	printf("{\"version\":%lld,\"devices\":%d,\"stages\":%d,\"method\":\"%s\"}\n",
	       (long long)map->version, map->n_devices, map->n_stages,
	       partition_method_name(map->method));
	partition_destroy(map);
	free(text);
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void print_times(double *ms, size_t n);

static int cmd_latency(config *c)
{
	const char *url = config_str(c, "url"), *path = config_str(c, "image");
	size_t n = (size_t)config_int(c, "repeat");
	if (!url || !path)
		return 2;
	size_t len = 0;
	void *img = read_file(path, &len);
	if (!img) {
		fprintf(stderr, "%s: cannot read\n", path);
		return 1;
	}
	size_t plen = strlen(path);
	const char *ctype = plen > 4 && strcmp(path + plen - 4, ".png") == 0
		? "image/png" : "image/jpeg";
	char full[512];
	snprintf(full, sizeof full, "%s/v1/classify?top_k=1&model=%s", url,
		 config_str(c, "model"));
	CURL *curl = curl_easy_init();
	double *ms = malloc(n * sizeof *ms);
	int rc = ms ? 0 : 1;
	for (size_t i = 0; !rc && i < n + 3; i++) {
		struct timespec t0, t1;
		char *resp = NULL;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		long st = post(curl, full, ctype, img, len, &resp);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if (st != 200) {
			fprintf(stderr, "HTTP %ld: %.300s\n", st, resp ? resp : "");
			rc = 1;
		} else if (i >= 3) {
			ms[i - 3] = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
				    (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
		}
		free(resp);
	}
	if (!rc)
		print_times(ms, n);
	free(ms);
	free(img);
	curl_easy_cleanup(curl);
	return rc;
}

static void print_times(double *ms, size_t n)
{
	double sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += ms[i];
	qsort(ms, n, sizeof *ms, cmp_double);
	printf("{\"repeat\":%zu,\"min_ms\":%.4f,\"median_ms\":%.4f,\"p90_ms\":%.4f,\"p99_ms\":%.4f,\"max_ms\":%.4f,\"mean_ms\":%.4f}\n",
	       n, ms[0], ms[n / 2], ms[(n * 9) / 10 < n ? (n * 9) / 10 : n - 1],
	       ms[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1], ms[n - 1],
	       sum / (double)n);
}

/* ---- load ------------------------------------------------------------------ */

typedef struct load_ctx {
	const char *url;        /* full /v1/classify URL */
	const char *ctype;
	const void *img;
	size_t img_len;
	double duration_ms;     /* 0 = no time limit */
	long max_requests;      /* 0 = no count limit */
	atomic_long issued;
	struct timespec t0;
	FILE *out;              /* NULL = no per-request lines */
	pthread_mutex_t lock;   /* guards out */
} load_ctx;

typedef struct load_client {
	load_ctx *ctx;
	int id;
	double *lat_ms;         /* every request's latency; owned */
	size_t n, cap;
	size_t non_2xx, transport, degraded;
	double min_cov;         /* over 2xx answers; 2 = none yet */
	int64_t v_min, v_max;   /* partition versions seen (0 = none) */
	bool oom;
} load_client;

static volatile sig_atomic_t load_stop; /* set by SIGINT/SIGTERM */

static void load_on_signal(int sig)
{
	(void)sig;
	load_stop = 1;
}

static double since_ms(const struct timespec *t0, const struct timespec *t)
{
	return (double)(t->tv_sec - t0->tv_sec) * 1e3 +
	       (double)(t->tv_nsec - t0->tv_nsec) / 1e6;
}

/* JSON text of v (compact), or "null"; new, free(). */
static char *json_text(const json_t *v)
{
	char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	return s ? s : strdup("null");
}

/* One request's line and its part of the summary. */
static void load_record(load_client *cl, double t_ms, double lat, long status,
			const char *resp, const char *transport_err)
{
	json_t *j = resp ? json_loads(resp, 0, NULL) : NULL;
	bool ok = status >= 200 && status < 300;
	json_t *cov = ok ? json_object_get(j, "coverage") : NULL;
	json_t *deg = ok ? json_object_get(j, "degraded") : NULL;
	json_t *ver = ok ? json_object_get(j, "partition_version") : NULL;
	json_t *failed = ok ? json_object_get(j, "failed_devices") : NULL;
	json_t *err = NULL;
	if (!ok && status > 0)
		err = json_object_get(json_object_get(j, "error"), "code");
	json_t *terr = transport_err ? json_string(transport_err) : NULL;
	if (cl->n == cl->cap) {
		size_t cap = cl->cap ? cl->cap * 2 : 1024;
		double *p = realloc(cl->lat_ms, cap * sizeof *p);
		if (p) {
			cl->lat_ms = p;
			cl->cap = cap;
		}
	}
	if (cl->n < cl->cap)
		cl->lat_ms[cl->n++] = lat;
	else
		cl->oom = true;
	if (!ok) {
		cl->non_2xx++;
		cl->transport += status <= 0;
	} else {
		double cv = json_is_number(cov) ? json_number_value(cov) : -1;
		if (cv < cl->min_cov)
			cl->min_cov = cv;
		cl->degraded += json_is_true(deg);
		int64_t v = json_is_integer(ver) ? (int64_t)json_integer_value(ver) : 0;
		if (v && (!cl->v_min || v < cl->v_min))
			cl->v_min = v;
		if (v > cl->v_max)
			cl->v_max = v;
	}
	if (cl->ctx->out) {
		char *cov_s = json_text(cov), *deg_s = json_text(deg);
		char *ver_s = json_text(ver), *failed_s = json_text(failed);
		char *err_s = json_text(terr ? terr : err);
		pthread_mutex_lock(&cl->ctx->lock);
		fprintf(cl->ctx->out,
			"{\"t_ms\":%.3f,\"latency_ms\":%.3f,\"status\":%ld,\"client\":%d,"
			"\"coverage\":%s,\"degraded\":%s,\"failed_devices\":%s,"
			"\"partition_version\":%s,\"error\":%s}\n",
			t_ms, lat, status > 0 ? status : 0, cl->id, cov_s, deg_s, failed_s,
			ver_s, err_s);
		pthread_mutex_unlock(&cl->ctx->lock);
		free(cov_s);
		free(deg_s);
		free(ver_s);
		free(failed_s);
		free(err_s);
	}
	json_decref(terr);
	json_decref(j);
}

static void *load_thread(void *arg)
{
	load_client *cl = arg;
	load_ctx *ctx = cl->ctx;
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL;
	char line[128];
	snprintf(line, sizeof line, "Content-Type: %s", ctx->ctype);
	h = curl_slist_append(h, line);
	h = curl_slist_append(h, "Expect:");
	if (!c || !h) {
		fprintf(stderr, "load client %d: curl setup failed\n", cl->id);
		cl->oom = true;
		goto out;
	}
	char errbuf[CURL_ERROR_SIZE];
	curl_easy_setopt(c, CURLOPT_URL, ctx->url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, ctx->img);
	curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)ctx->img_len);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	for (;;) {
		struct timespec t_start, t_end;
		clock_gettime(CLOCK_MONOTONIC, &t_start);
		if (load_stop)
			break;
		if (ctx->duration_ms > 0 && since_ms(&ctx->t0, &t_start) >= ctx->duration_ms)
			break;
		if (ctx->max_requests > 0 &&
		    atomic_fetch_add(&ctx->issued, 1) >= ctx->max_requests)
			break;
		buf b = {0};
		errbuf[0] = '\0';
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
		CURLcode rc = curl_easy_perform(c);
		clock_gettime(CLOCK_MONOTONIC, &t_end);
		long status = 0;
		if (rc == CURLE_OK)
			curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		load_record(cl, since_ms(&ctx->t0, &t_start), since_ms(&t_start, &t_end),
			    status, b.p,
			    rc == CURLE_OK ? NULL : *errbuf ? errbuf : curl_easy_strerror(rc));
		free(b.p);
	}
out:
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return NULL;
}

static int cmd_load(config *c)
{
	const char *url = config_str(c, "url"), *path = config_str(c, "image");
	const char *out_path = config_str(c, "out");
	int n_clients = (int)config_int(c, "clients");
	load_ctx ctx = {.duration_ms = config_double(c, "duration-s") * 1e3,
			.max_requests = (long)config_int(c, "requests")};
	if (!url || !path || (ctx.duration_ms <= 0 && ctx.max_requests <= 0)) {
		fprintf(stderr, "load: needs --url, --image and --duration-s or --requests\n");
		return 2;
	}
	ctx.img = read_file(path, &ctx.img_len);
	if (!ctx.img) {
		fprintf(stderr, "%s: cannot read\n", path);
		return 1;
	}
	size_t plen = strlen(path);
	ctx.ctype = plen > 4 && strcmp(path + plen - 4, ".png") == 0 ? "image/png"
								      : "image/jpeg";
	char full[512];
	snprintf(full, sizeof full, "%s/v1/classify?top_k=1&model=%s", url,
		 config_str(c, "model"));
	ctx.url = full;
	if (out_path && !(ctx.out = fopen(out_path, "w"))) {
		fprintf(stderr, "%s: cannot write\n", out_path);
		free((void *)ctx.img);
		return 1;
	}
	pthread_mutex_init(&ctx.lock, NULL);
	atomic_init(&ctx.issued, 0);
	load_client *cl = calloc((size_t)n_clients, sizeof *cl);
	pthread_t *th = calloc((size_t)n_clients, sizeof *th);
	int started = 0, rc = 0;
	struct timespec wall;
	json_object_seed(0); /* before threads parse JSON */
	struct sigaction sa = {.sa_handler = load_on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	clock_gettime(CLOCK_REALTIME, &wall);
	clock_gettime(CLOCK_MONOTONIC, &ctx.t0);
	for (int i = 0; cl && th && i < n_clients; i++) {
		cl[i] = (load_client){.ctx = &ctx, .id = i, .min_cov = 2};
		if (pthread_create(&th[i], NULL, load_thread, &cl[i])) {
			fprintf(stderr, "load: cannot start client %d\n", i);
			break;
		}
		started++;
	}
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	struct timespec t_end;
	clock_gettime(CLOCK_MONOTONIC, &t_end);
	if (started < n_clients)
		rc = 1;
	size_t n = 0, non_2xx = 0, transport = 0, degraded = 0;
	double min_cov = 2;
	int64_t v_min = 0, v_max = 0;
	for (int i = 0; i < started; i++) {
		n += cl[i].n;
		non_2xx += cl[i].non_2xx;
		transport += cl[i].transport;
		degraded += cl[i].degraded;
		if (cl[i].min_cov < min_cov)
			min_cov = cl[i].min_cov;
		if (cl[i].v_min && (!v_min || cl[i].v_min < v_min))
			v_min = cl[i].v_min;
		if (cl[i].v_max > v_max)
			v_max = cl[i].v_max;
		if (cl[i].oom) {
			fprintf(stderr, "load client %d: out of memory or no curl handle\n", i);
			rc = 1;
		}
	}
	double *all = n ? malloc(n * sizeof *all) : NULL;
	size_t k = 0;
	for (int i = 0; all && i < started; i++) {
		memcpy(all + k, cl[i].lat_ms, cl[i].n * sizeof *all);
		k += cl[i].n;
	}
	if (all)
		qsort(all, n, sizeof *all, cmp_double);
	double secs = since_ms(&ctx.t0, &t_end) / 1e3;
	char cov_s[32] = "null";
	if (min_cov <= 1)
		snprintf(cov_s, sizeof cov_s, "%.6g", min_cov);
	printf("{\"clients\":%d,\"requests\":%zu,\"ok\":%zu,\"non_2xx\":%zu,"
	       "\"transport_errors\":%zu,\"seconds\":%.3f,\"rps\":%.2f,"
	       "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"min_coverage\":%s,"
	       "\"degraded\":%zu,\"min_version\":%lld,\"max_version\":%lld,"
	       "\"start_unix_ms\":%lld}\n",
	       started, n, n - non_2xx, non_2xx, transport, secs,
	       secs > 0 ? (double)n / secs : 0.0, all ? all[n / 2] : 0.0,
	       all ? all[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] : 0.0,
	       all ? all[n - 1] : 0.0, cov_s, degraded, (long long)v_min,
	       (long long)v_max,
	       (long long)wall.tv_sec * 1000 + wall.tv_nsec / 1000000);
	if (n && !all) {
		fprintf(stderr, "load: out of memory for the summary\n");
		rc = 1;
	}
	if (non_2xx || n == 0)
		rc = 1;
	if (ctx.out && fclose(ctx.out)) {
		fprintf(stderr, "%s: write failed\n", out_path);
		rc = 1;
	}
	for (int i = 0; cl && i < n_clients; i++)
		free(cl[i].lat_ms);
	free(all);
	free(cl);
	free(th);
	pthread_mutex_destroy(&ctx.lock);
	free((void *)ctx.img);
	return rc;
}

static int cmd_staged(config *c, const model *m)
{
	const char *path = config_str(c, "image");
	size_t n = (size_t)config_int(c, "repeat");
	int threads = (int)config_int(c, "threads");
	if (!path)
		return 2;
	size_t len = 0;
	void *png = read_file(path, &len);
	tensor *x = NULL;
	partition_map *map = NULL;
	sim *sm = NULL;
	runner *r = NULL;
	double *ms = malloc(n * sizeof *ms);
	partition_params pp;
	partition_params_default(&pp);
	pp.n_devices = 1;
	pp.copies = 1;
	runner_options ro = {.impute = IMPUTE_ZERO, .kind = ENGINE_DNNL,
			     .threads = threads};
	int rc = !ms || !png || preprocess_png(m, png, len, &x) ||
		 partition_create(m->g, m->plan, &pp, &map) ||
		 sim_create(m->g, m->plan, map, ENGINE_DNNL, threads, &sm) ||
		 runner_create(m->g, m->plan, map, &ro, &r);
	if (rc)
		fprintf(stderr, "staged: %s\n", df_err_msg());
	runner_backend be = sm ? sim_backend(sm) : (runner_backend){0};
	for (size_t i = 0; !rc && i < n + 3; i++) {
		struct timespec t0, t1;
		tensor *y = NULL;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		rc = runner_infer(r, x, 0, &be, &y, NULL) ? 1 : 0;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		tensor_destroy(y);
		if (i >= 3)
			ms[i - 3] = (double)(t1.tv_sec - t0.tv_sec) * 1e3 +
				    (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	}
	if (!rc)
		print_times(ms, n);
	runner_destroy(r);
	sim_destroy(sm);
	partition_destroy(map);
	tensor_destroy(x);
	free(png);
	free(ms);
	return rc;
}

int main(int argc, char **argv)
{
	config *c = NULL;
	model *m = NULL;
	if (argc < 2 || config_create(opts, sizeof opts / sizeof opts[0], &c) ||
	    config_load_env(c) || config_parse_args(c, argc, argv, 1)) {
		fprintf(stderr, "usage: fleet_client inputs|compare|accuracy|validate-map|latency|load|staged [options] (%s)\n",
			df_err_msg());
		config_destroy(c);
		return 2;
	}
	const char *cmd = config_positional_count(c) ? config_positional(c, 0) : "";
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (strcmp(cmd, "latency") == 0 || strcmp(cmd, "load") == 0) {
		int rc = strcmp(cmd, "load") == 0 ? cmd_load(c) : cmd_latency(c);
		config_destroy(c);
		curl_global_cleanup();
		return rc;
	}
	if (model_load(config_str(c, "models"), config_str(c, "model"), false, &m)) {
		fprintf(stderr, "model: %s\n", df_err_msg());
		config_destroy(c);
		return 1;
	}
	int rc = 2;
	if (strcmp(cmd, "inputs") == 0)
		rc = cmd_inputs(c, m);
	else if (strcmp(cmd, "compare") == 0)
		rc = cmd_compare(c, m);
	else if (strcmp(cmd, "accuracy") == 0)
		rc = cmd_accuracy(c, m);
	else if (strcmp(cmd, "validate-map") == 0)
		rc = cmd_validate_map(c, m);
	else if (strcmp(cmd, "staged") == 0)
		rc = cmd_staged(c, m);
	if (rc == 2)
		fprintf(stderr, "fleet_client: bad command or missing option\n");
	model_destroy(m);
	config_destroy(c);
	curl_global_cleanup();
	return rc;
}
