/*
 * metrics.c - the gateway's counters and GET /metrics in the Prometheus
 * text exposition format (version 0.0.4).
 *
 * Every counter is an atomic updated on the request path without locks;
 * histograms are fixed bucket arrays (cumulative only when rendered).
 * Sums of seconds and coverage are kept in integer micro-units so they
 * can be atomic too. Device states and the partition version are read
 * from health and the scheduler at render time.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

#define STATUS_MIN 100
#define STATUS_MAX 599
#define N_STATUS (STATUS_MAX - STATUS_MIN + 1)

static const double latency_buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025,
					 0.05,  0.1,    0.25,  0.5,  1,
					 2.5,   5,      10};
#define N_LAT (sizeof latency_buckets / sizeof latency_buckets[0])

static const double coverage_buckets[] = {0.25, 0.5, 0.75, 0.9, 0.95, 0.99,
					  1.0};
#define N_COV (sizeof coverage_buckets / sizeof coverage_buckets[0])

static const char *const endpoint_names[] = {"classify", "infer", "other"};
_Static_assert(sizeof endpoint_names / sizeof endpoint_names[0] ==
		       METRICS_ENDPOINT_COUNT,
	       "one name per endpoint");

typedef struct histogram {
	atomic_uint_fast64_t le[16];   /* per bucket (not cumulative) */
	atomic_uint_fast64_t count;
	atomic_uint_fast64_t sum_micro;
} histogram;

struct metrics {
	atomic_uint_fast64_t requests[METRICS_ENDPOINT_COUNT][N_STATUS];
	histogram latency[METRICS_ENDPOINT_COUNT];
	histogram coverage;
	atomic_uint_fast64_t inferences;
	atomic_uint_fast64_t degraded;
	atomic_uint_fast64_t imputed_neurons;
	atomic_uint_fast64_t bytes_sent;
	atomic_uint_fast64_t bytes_received;
	atomic_uint_fast64_t stage_calls[DF_ERR_COUNT];
};

df_err metrics_create(metrics **out)
{
	metrics *m = calloc(1, sizeof *m);
	if (!m)
		return DF_ENOMEM;
	*out = m;
	return DF_OK;
}

void metrics_destroy(metrics *m)
{
	free(m);
}

static void observe(histogram *h, const double *bounds, size_t n, double v)
{
	size_t i = 0;
	while (i < n && v > bounds[i])
		i++;
	if (i < n)
		atomic_fetch_add(&h->le[i], 1);
	atomic_fetch_add(&h->count, 1);
	atomic_fetch_add(&h->sum_micro, (uint_fast64_t)(v > 0 ? v * 1e6 : 0));
}

void metrics_request(metrics *m, metrics_endpoint ep, int status,
		     double seconds)
{
	if ((unsigned)ep >= METRICS_ENDPOINT_COUNT)
		ep = METRICS_OTHER;
	if (status >= STATUS_MIN && status <= STATUS_MAX)
		atomic_fetch_add(&m->requests[ep][status - STATUS_MIN], 1);
	observe(&m->latency[ep], latency_buckets, N_LAT, seconds);
}

void metrics_inference(metrics *m, double coverage, int64_t imputed,
		       const http_stage_stats *st)
{
	atomic_fetch_add(&m->inferences, 1);
	if (coverage < 1.0)
		atomic_fetch_add(&m->degraded, 1);
	if (imputed > 0)
		atomic_fetch_add(&m->imputed_neurons, (uint_fast64_t)imputed);
	observe(&m->coverage, coverage_buckets, N_COV, coverage);
	if (st) {
		atomic_fetch_add(&m->bytes_sent, st->bytes_sent);
		atomic_fetch_add(&m->bytes_received, st->bytes_received);
	}
}

void metrics_stage_call(metrics *m, df_err status)
{
	if ((unsigned)status >= DF_ERR_COUNT)
		status = DF_EINTERNAL;
	atomic_fetch_add(&m->stage_calls[status], 1);
}

/* ---- rendering ---------------------------------------------------------- */

typedef struct text {
	char *buf;
	size_t len, cap;
	bool failed;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(text *t, const char *fmt, ...)
{
	if (t->failed)
		return;
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		size_t room = t->cap - t->len;
		int n = vsnprintf(t->buf ? t->buf + t->len : NULL, t->buf ? room : 0,
				  fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->failed = true;
			return;
		}
		if (t->buf && (size_t)n < room) {
			t->len += (size_t)n;
			return;
		}
		size_t cap = t->cap ? t->cap * 2 : 8192;
		while (cap < t->len + (size_t)n + 1)
			cap *= 2;
		char *p = realloc(t->buf, cap);
		if (!p) {
			t->failed = true;
			return;
		}
		t->buf = p;
		t->cap = cap;
	}
}

static void put_histogram(text *t, const char *name, const char *labels,
			  const histogram *h, const double *bounds, size_t n)
{
	uint64_t cum = 0;
	const char *sep = labels[0] ? "," : "";
	for (size_t i = 0; i < n; i++) {
		cum += atomic_load(&h->le[i]);
		put(t, "%s_bucket{%s%sle=\"%g\"} %" PRIu64 "\n", name, labels, sep,
		    bounds[i], cum);
	}
	uint64_t count = atomic_load(&h->count);
	put(t, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, sep, count);
	const char *open = labels[0] ? "{" : "", *close = labels[0] ? "}" : "";
	put(t, "%s_sum%s%s%s %.6f\n", name, open, labels, close,
	    (double)atomic_load(&h->sum_micro) / 1e6);
	put(t, "%s_count%s%s%s %" PRIu64 "\n", name, open, labels, close, count);
}

/* Label value escaping: backslash, double quote and newline. */
static void escape_label(const char *in, char *out, size_t len)
{
	size_t k = 0;
	for (; *in && k + 3 < len; in++) {
		if (*in == '\\' || *in == '"') {
			out[k++] = '\\';
			out[k++] = *in;
		} else if (*in == '\n') {
			out[k++] = '\\';
			out[k++] = 'n';
		} else {
			out[k++] = *in;
		}
	}
	out[k] = '\0';
}

df_err metrics_handle(const http_request *req, http_response *res, void *ctx)
{
	(void)req;
	gateway *gw = ctx;
	metrics *m = gw->metrics;
	text t = {0};
	put(&t, "# HELP dicefleet_requests_total HTTP requests by endpoint and status.\n"
		"# TYPE dicefleet_requests_total counter\n");
	for (int e = 0; e < METRICS_ENDPOINT_COUNT; e++)
		for (int s = 0; s < N_STATUS; s++) {
			uint64_t v = atomic_load(&m->requests[e][s]);
			if (v)
				put(&t, "dicefleet_requests_total{endpoint=\"%s\",code=\"%d\"} %" PRIu64 "\n",
				    endpoint_names[e], s + STATUS_MIN, v);
		}
	put(&t, "# HELP dicefleet_request_duration_seconds Time to answer a request.\n"
		"# TYPE dicefleet_request_duration_seconds histogram\n");
	for (int e = 0; e < METRICS_ENDPOINT_COUNT; e++) {
		char labels[64];
		snprintf(labels, sizeof labels, "endpoint=\"%s\"", endpoint_names[e]);
		put_histogram(&t, "dicefleet_request_duration_seconds", labels,
			      &m->latency[e], latency_buckets, N_LAT);
	}
	put(&t, "# HELP dicefleet_coverage Fraction of neurons computed per inference.\n"
		"# TYPE dicefleet_coverage histogram\n");
	put_histogram(&t, "dicefleet_coverage", "", &m->coverage, coverage_buckets,
		      N_COV);
	put(&t, "# HELP dicefleet_inferences_total Inferences run through the fleet.\n"
		"# TYPE dicefleet_inferences_total counter\n"
		"dicefleet_inferences_total %" PRIu64 "\n"
		"# HELP dicefleet_degraded_total Inferences with coverage below 1.\n"
		"# TYPE dicefleet_degraded_total counter\n"
		"dicefleet_degraded_total %" PRIu64 "\n"
		"# HELP dicefleet_imputed_neurons_total Neurons filled by imputation.\n"
		"# TYPE dicefleet_imputed_neurons_total counter\n"
		"dicefleet_imputed_neurons_total %" PRIu64 "\n",
	    atomic_load(&m->inferences), atomic_load(&m->degraded),
	    atomic_load(&m->imputed_neurons));
	put(&t, "# HELP dicefleet_wire_bytes_total Bytes of stage calls to workers (HTTP headers and bodies).\n"
		"# TYPE dicefleet_wire_bytes_total counter\n"
		"dicefleet_wire_bytes_total{direction=\"sent\"} %" PRIu64 "\n"
		"dicefleet_wire_bytes_total{direction=\"received\"} %" PRIu64 "\n",
	    atomic_load(&m->bytes_sent), atomic_load(&m->bytes_received));
	put(&t, "# HELP dicefleet_stage_calls_total Stage calls to workers by outcome.\n"
		"# TYPE dicefleet_stage_calls_total counter\n");
	for (int e = 0; e < DF_ERR_COUNT; e++) {
		uint64_t v = atomic_load(&m->stage_calls[e]);
		if (v || e == DF_OK)
			put(&t, "dicefleet_stage_calls_total{result=\"%s\"} %" PRIu64 "\n",
			    df_err_code((df_err)e), v);
	}
	put(&t, "# HELP dicefleet_device_up Device state (1 = UP, 0.5 = SUSPECT, 0 = DOWN, -1 = not contacted yet).\n"
		"# TYPE dicefleet_device_up gauge\n");
	dev_info *devs = NULL;
	size_t nd = 0;
	if (health_list(gw->health, &devs, &nd) == DF_OK) {
		for (size_t i = 0; i < nd; i++)
			put(&t, "dicefleet_device_up{device=\"%s\"} %g\n", devs[i].id,
			    devs[i].state == DEV_UP ? 1.0
			    : devs[i].state == DEV_SUSPECT ? 0.5
			    : devs[i].state == DEV_DOWN ? 0.0 : -1.0);
		put(&t, "# HELP dicefleet_device_state Device health state (1 for the current one).\n"
			"# TYPE dicefleet_device_state gauge\n");
		for (size_t i = 0; i < nd; i++)
			for (int st = 0; st < DEV_STATE_COUNT; st++)
				put(&t, "dicefleet_device_state{device=\"%s\",state=\"%s\"} %d\n",
				    devs[i].id, dev_state_name((dev_state)st),
				    devs[i].state == (dev_state)st);
		put(&t, "# HELP dicefleet_device_probe_latency_ms Health probe round trip estimate (EWMA).\n"
			"# TYPE dicefleet_device_probe_latency_ms gauge\n");
		for (size_t i = 0; i < nd; i++)
			put(&t, "dicefleet_device_probe_latency_ms{device=\"%s\"} %g\n",
			    devs[i].id, devs[i].latency_ms);
		put(&t, "# HELP dicefleet_device_call_latency_ms Answered stage call latency estimate, all stages (EWMA).\n"
			"# TYPE dicefleet_device_call_latency_ms gauge\n");
		for (size_t i = 0; i < nd; i++)
			put(&t, "dicefleet_device_call_latency_ms{device=\"%s\"} %g\n",
			    devs[i].id, devs[i].call_latency_ms);
		free(devs);
	}
	char model_label[512];
	escape_label(gw->model_name, model_label, sizeof model_label);
	char reason[512];
	bool ready = sched_ready(gw->sched, reason, sizeof reason);
	put(&t, "# HELP dicefleet_partition_version Active partition version (0 = none).\n"
		"# TYPE dicefleet_partition_version gauge\n"
		"dicefleet_partition_version{model=\"%s\"} %" PRId64 "\n"
		"# HELP dicefleet_ready Whether the gateway can serve (1) or not (0).\n"
		"# TYPE dicefleet_ready gauge\n"
		"dicefleet_ready %d\n",
	    model_label, sched_active_version(gw->sched), ready ? 1 : 0);
	if (t.failed) {
		free(t.buf);
		return DF_ENOMEM;
	}
	return http_reply_bytes(res, 200, "text/plain; version=0.0.4; charset=utf-8",
				t.buf, t.len, true);
}
