/*
 * Unit tests for http_client.c against an in-process fake worker
 * (http_server.c on an ephemeral port): the request a stage call sends
 * (envelope, frames, token, content type), parallel calls, and the status
 * of every kind of bad answer - wrong channel ids or envelope, garbage,
 * HTTP errors, a late answer (deadline), a refused connection, a missing
 * URL, a request deadline already passed, per-call deadlines from the
 * call_timeout hook - plus the JSON control calls.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_client.h"
#include "http_server.h"
#include "wire.h"

typedef enum fake_mode {
	FAKE_OK = 0,
	FAKE_WRONG_IDS,
	FAKE_WRONG_REQUEST_ID,
	FAKE_WRONG_VERSION,
	FAKE_TWO_FRAMES,
	FAKE_GARBAGE,
	FAKE_404,
	FAKE_500,
	FAKE_SLOW,
} fake_mode;

#define TOKEN "s3cret"
#define NEURONS 4

typedef struct fake {
	_Atomic int mode;
	atomic_int calls;
	atomic_int bad_requests;  /* requests that broke the contract */
	atomic_int in_flight, max_in_flight;
} fake;

static fake F;
static http_server *srv;

/* Copies of the request bodies the fake worker received, while on. */
#define CAPTURE_MAX 8
static struct {
	pthread_mutex_t mu;
	bool on;
	int n;
	unsigned char *body[CAPTURE_MAX];
	size_t len[CAPTURE_MAX];
} cap = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void capture(const http_request *req)
{
	pthread_mutex_lock(&cap.mu);
	if (cap.on && cap.n < CAPTURE_MAX) {
		unsigned char *b = malloc(req->body_len ? req->body_len : 1);
		if (b) {
			if (req->body_len)
				memcpy(b, req->body, req->body_len);
			cap.body[cap.n] = b;
			cap.len[cap.n++] = req->body_len;
		}
	}
	pthread_mutex_unlock(&cap.mu);
}

static void capture_reset(bool on)
{
	pthread_mutex_lock(&cap.mu);
	for (int i = 0; i < cap.n; i++)
		free(cap.body[i]);
	cap.n = 0;
	cap.on = on;
	pthread_mutex_unlock(&cap.mu);
}
static char url[64];

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Checks the request as the worker would, answers per F.mode. */
static df_err h_stage(const http_request *req, http_response *res, void *ctx)
{
	(void)ctx;
	capture(req);
	atomic_fetch_add(&F.calls, 1);
	int now = atomic_fetch_add(&F.in_flight, 1) + 1;
	int seen = atomic_load(&F.max_in_flight);
	while (now > seen && !atomic_compare_exchange_weak(&F.max_in_flight, &seen, now))
		;
	wire_msg msg = {0};
	wire_buf out = {0};
	tensor *t = NULL;
	df_err err = DF_OK;
	if (!http_request_bearer_is(req, TOKEN) ||
	    !http_request_content_type_is(req, HTTP_CLIENT_FRAME_TYPE) ||
	    wire_msg_parse(req->body, req->body_len, &msg) ||
	    msg.kind != WIRE_MSG_REQUEST || msg.n_frames != 2 ||
	    msg.frames[0].channel_axis != WIRE_WHOLE ||
	    msg.frames[1].channel_axis != 1 ||
	    msg.frames[1].channels_total != NEURONS ||
	    msg.frames[1].n_ids != msg.n_neurons ||
	    strcmp(msg.model, "m") != 0 || msg.partition_version != 7) {
		atomic_fetch_add(&F.bad_requests, 1);
		err = http_reply_error(res, DF_EINVAL, "bad request");
		goto out;
	}
	fake_mode mode = (fake_mode)atomic_load(&F.mode);
	if (mode == FAKE_SLOW)
		sleep_ms(600);
	if (mode == FAKE_404 || mode == FAKE_500) {
		err = http_reply_error(res, mode == FAKE_404 ? DF_ENOENT : DF_EINTERNAL,
				       "no");
		goto out;
	}
	if (mode == FAKE_GARBAGE) {
		err = http_reply_bytes(res, 200, HTTP_CLIENT_FRAME_TYPE, "DFM1garbage",
				       11, false);
		goto out;
	}
	int64_t dims[4] = {1, (int64_t)msg.n_neurons, 2, 2};
	tensor_create(TENSOR_F32, 4, dims, &t);
	for (size_t i = 0; i < t->numel; i++)
		tensor_f32(t)[i] = (float)msg.neurons[i / (t->numel / msg.n_neurons)];
	int32_t ids[NEURONS];
	memcpy(ids, msg.neurons, msg.n_neurons * sizeof *ids);
	if (mode == FAKE_WRONG_IDS && msg.n_neurons >= 2) {
		/* The right channels in the wrong order. */
		ids[0] = msg.neurons[1];
		ids[1] = msg.neurons[0];
	}
	wire_frame fr[2] = {
		{.t = t, .channel_axis = 1, .channels_total = NEURONS, .ids = ids,
		 .n_ids = msg.n_neurons},
		{.t = t, .channel_axis = 1, .channels_total = NEURONS, .ids = ids,
		 .n_ids = msg.n_neurons},
	};
	wire_msg reply = {.kind = WIRE_MSG_RESPONSE,
			  .request_id = msg.request_id +
					(mode == FAKE_WRONG_REQUEST_ID),
			  .partition_version = msg.partition_version +
					       (mode == FAKE_WRONG_VERSION),
			  .stage = msg.stage, .model = msg.model, .frames = fr,
			  .n_frames = mode == FAKE_TWO_FRAMES ? 2 : 1};
	if (wire_msg_encode(&out, &reply)) {
		err = DF_ENOMEM;
		goto out;
	}
	err = http_reply_bytes(res, 200, HTTP_CLIENT_FRAME_TYPE, out.data, out.len,
			       true);
	out.data = NULL;
out:
	atomic_fetch_sub(&F.in_flight, 1);
	tensor_destroy(t);
	wire_buf_free(&out);
	wire_msg_free(&msg);
	return err;
}

static df_err h_json(const http_request *req, http_response *res, void *ctx)
{
	(void)ctx;
	return http_reply_json(res, 201, json_pack("{s:s, s:b}", "method",
						   req->method,
						   "auth", http_request_bearer_is(req, TOKEN)));
}

static const http_route routes[] = {
	{"POST", "/v1/stage", h_stage, 0},
	{"GET", "/healthz", h_json, 0},
	{"DELETE", "/v1/partitions/{v}", h_json, 0},
};

static int setup(void **state)
{
	(void)state;
	http_server_config cfg = {.bind = "127.0.0.1", .port = 0};
	if (http_client_global_init() ||
	    http_server_create(&cfg, routes, 3, NULL, &srv))
		return -1;
	snprintf(url, sizeof url, "http://127.0.0.1:%d", http_server_port(srv));
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	http_server_destroy(srv);
	return 0;
}

/* One stage of NEURONS neurons; two devices at the same fake worker. */
typedef struct fixture {
	partition_stage st;
	partition_map map;
	char *devices[2];
	const char *urls[2];
	tensor *in, *side_a, *side_b;
	const tensor *ins_a[2], *ins_b[2];
	int32_t ids_a[2], ids_b[2];
	runner_call calls[2];
	http_client *hc;
} fixture;

static void fixture_init(fixture *f, long stage_timeout_ms, const char *token)
{
	memset(f, 0, sizeof *f);
	f->st.n_neurons = NEURONS;
	f->devices[0] = "a";
	f->devices[1] = "b";
	f->map = (partition_map){.version = 7, .n_devices = 2, .devices = f->devices,
				 .n_stages = 1, .stages = &f->st, .copies = 1};
	f->urls[0] = url;
	f->urls[1] = url;
	int64_t dims[4] = {1, 3, 2, 2}, sd[4] = {1, 2, 2, 2};
	assert_int_equal(tensor_create(TENSOR_F32, 4, dims, &f->in), DF_OK);
	assert_int_equal(tensor_create(TENSOR_F32, 4, sd, &f->side_a), DF_OK);
	assert_int_equal(tensor_create(TENSOR_F32, 4, sd, &f->side_b), DF_OK);
	f->ids_a[0] = 0;
	f->ids_a[1] = 2;
	f->ids_b[0] = 1;
	f->ids_b[1] = 3;
	f->ins_a[0] = f->in;
	f->ins_a[1] = f->side_a;
	f->ins_b[0] = f->in;
	f->ins_b[1] = f->side_b;
	f->calls[0] = (runner_call){.device = 0, .stage = 0, .round = 1,
				    .ids = f->ids_a, .n = 2, .inputs = f->ins_a,
				    .n_inputs = 2};
	f->calls[1] = (runner_call){.device = 1, .stage = 0, .round = 1,
				    .ids = f->ids_b, .n = 2, .inputs = f->ins_b,
				    .n_inputs = 2};
	http_client_options o = {.cluster_token = token,
				 .stage_timeout_ms = stage_timeout_ms};
	assert_int_equal(http_client_create(&o, &f->hc), DF_OK);
	http_stage_target t = {.map = &f->map, .model = "m",
			       .urls = (const char *const *)f->urls,
			       .request_id = 42};
	http_client_begin(f->hc, &t);
}

static void fixture_run(fixture *f)
{
	for (int i = 0; i < 2; i++) {
		tensor_destroy(f->calls[i].output);
		f->calls[i].output = NULL;
	}
	runner_backend be = http_client_backend(f->hc);
	be.execute(be.ctx, f->calls, 2);
}

static void fixture_free(fixture *f)
{
	for (int i = 0; i < 2; i++)
		tensor_destroy(f->calls[i].output);
	tensor_destroy(f->in);
	tensor_destroy(f->side_a);
	tensor_destroy(f->side_b);
	http_client_destroy(f->hc);
}

static void test_ok_parallel(void **state)
{
	(void)state;
	fixture f;
	fixture_init(&f, 2000, TOKEN);
	atomic_store(&F.mode, FAKE_SLOW); /* both calls must overlap */
	atomic_store(&F.max_in_flight, 0);
	fixture_run(&f);
	assert_int_equal(atomic_load(&F.max_in_flight), 2);
	atomic_store(&F.mode, FAKE_OK);
	int before = atomic_load(&F.bad_requests);
	fixture_run(&f); /* the same client and connections again */
	assert_int_equal(atomic_load(&F.bad_requests), before);
	for (int c = 0; c < 2; c++) {
		assert_int_equal(f.calls[c].status, DF_OK);
		const tensor *t = f.calls[c].output;
		assert_non_null(t);
		assert_int_equal(t->dims[1], 2);
		assert_true(tensor_f32(t)[0] == (float)f.calls[c].ids[0]);
		assert_true(tensor_f32(t)[t->numel - 1] == (float)f.calls[c].ids[1]);
	}
	http_stage_stats st = http_client_stats(f.hc);
	assert_int_equal(st.calls, 4);
	assert_int_equal(st.calls_failed, 0);
	assert_true(st.bytes_sent > 4 * (WIRE_MSG_HEADER + 48));
	assert_true(st.bytes_received > 4 * WIRE_MSG_HEADER);
	fixture_free(&f);
}

/* Each bad answer gives the status promised in http_client.h. */
static void test_bad_answers(void **state)
{
	(void)state;
	static const struct {
		fake_mode mode;
		df_err want;
	} cases[] = {
		{FAKE_WRONG_IDS, DF_ECORRUPT},
		{FAKE_WRONG_REQUEST_ID, DF_ECORRUPT},
		{FAKE_WRONG_VERSION, DF_ECORRUPT},
		{FAKE_TWO_FRAMES, DF_ECORRUPT},
		{FAKE_GARBAGE, DF_ECORRUPT},
		{FAKE_404, DF_ECONFLICT},
		{FAKE_500, DF_EUNAVAIL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		fixture f;
		fixture_init(&f, 2000, TOKEN);
		atomic_store(&F.mode, cases[i].mode);
		fixture_run(&f);
		for (int c = 0; c < 2; c++) {
			if (f.calls[c].status != cases[i].want)
				fail_msg("mode %d call %d: status %d, expected %d",
					 (int)cases[i].mode, c, (int)f.calls[c].status,
					 (int)cases[i].want);
			assert_null(f.calls[c].output);
		}
		assert_int_equal(http_client_stats(f.hc).calls_failed, 2);
		fixture_free(&f);
	}
	atomic_store(&F.mode, FAKE_OK);
}

/* The fake worker refuses a wrong cluster token like the real one. */
static void test_wrong_token(void **state)
{
	(void)state;
	fixture f;
	fixture_init(&f, 2000, "wrong");
	atomic_store(&F.mode, FAKE_OK);
	int before = atomic_load(&F.bad_requests);
	fixture_run(&f);
	assert_int_equal(f.calls[0].status, DF_EINVAL); /* fake answers 400 */
	assert_int_equal(atomic_load(&F.bad_requests), before + 2);
	fixture_free(&f);
}

static void test_deadline(void **state)
{
	(void)state;
	fixture f;
	fixture_init(&f, 150, TOKEN);
	atomic_store(&F.mode, FAKE_SLOW);
	int64_t t0 = http_client_now_ms();
	fixture_run(&f);
	int64_t ms = http_client_now_ms() - t0;
	assert_int_equal(f.calls[0].status, DF_ETIMEDOUT);
	assert_int_equal(f.calls[1].status, DF_ETIMEDOUT);
	assert_true(ms < 500);
	atomic_store(&F.mode, FAKE_OK);
	/* The request deadline already passed: nothing is sent. */
	http_stage_target t = {.map = &f.map, .model = "m",
			       .urls = (const char *const *)f.urls, .request_id = 1,
			       .deadline_ms = http_client_now_ms() - 1};
	http_client_begin(f.hc, &t);
	int calls = atomic_load(&F.calls);
	fixture_run(&f);
	assert_int_equal(f.calls[0].status, DF_ETIMEDOUT);
	assert_int_equal(atomic_load(&F.calls), calls);
	fixture_free(&f);
	sleep_ms(600); /* let the slow handlers finish before later tests */
}

/* call_timeout hook: device 0 gets 150 ms, device 1 the default. */
static long hook_timeout(void *ctx, int device, int st)
{
	atomic_fetch_add((atomic_int *)ctx, 1);
	return st == 0 && device == 0 ? 150 : 0;
}

typedef struct observed {
	int n;
	df_err status[2];
	double ms[2];
} observed;

static void observe_call(void *ctx, int device, int st, df_err status,
			 double ms)
{
	(void)st;
	observed *o = ctx;
	o->n++;
	o->status[device] = status;
	o->ms[device] = ms;
}

/* Per-call deadlines from the call_timeout hook; a call late only because
 * the request deadline cut its own short is not reported to the
 * observer (it says nothing about the device). */
static void test_call_timeout_hook(void **state)
{
	(void)state;
	fixture f;
	fixture_init(&f, 2000, TOKEN);
	http_client_destroy(f.hc);
	atomic_int hooked = 0;
	observed seen = {0};
	http_client_options o = {.cluster_token = TOKEN, .stage_timeout_ms = 2000,
				 .call_timeout = hook_timeout,
				 .call_timeout_ctx = &hooked,
				 .observer = observe_call, .observer_ctx = &seen};
	assert_int_equal(http_client_create(&o, &f.hc), DF_OK);
	http_stage_target t = {.map = &f.map, .model = "m",
			       .urls = (const char *const *)f.urls,
			       .request_id = 42};
	http_client_begin(f.hc, &t);
	atomic_store(&F.mode, FAKE_SLOW);
	fixture_run(&f);
	assert_int_equal(atomic_load(&hooked), 2);
	assert_int_equal(f.calls[0].status, DF_ETIMEDOUT);
	assert_int_equal(f.calls[1].status, DF_OK);
	assert_int_equal(seen.n, 2);
	assert_int_equal(seen.status[0], DF_ETIMEDOUT);
	assert_true(seen.ms[0] >= 140 && seen.ms[0] < 550);
	assert_int_equal(seen.status[1], DF_OK);
	/* The request deadline (450 ms) is shorter than device 1's 2000 and
	 * than the 600 ms the fake takes, and leaves 300 ms of margin over
	 * device 0's own 150 ms for a loaded machine. */
	seen = (observed){0};
	t.deadline_ms = http_client_now_ms() + 450;
	http_client_begin(f.hc, &t);
	fixture_run(&f);
	assert_int_equal(f.calls[0].status, DF_ETIMEDOUT);
	assert_int_equal(f.calls[1].status, DF_ETIMEDOUT);
	assert_int_equal(seen.n, 1); /* device 0's own 150 ms deadline */
	assert_int_equal(seen.status[0], DF_ETIMEDOUT);
	atomic_store(&F.mode, FAKE_OK);
	fixture_free(&f);
	sleep_ms(600); /* let the slow handlers finish before later tests */
}

/* Every call of a round carries the same stage input as frame 0, which
 * the client encodes once and shares: what each worker receives must still
 * be byte for byte wire_msg_encode() of its request, for small bodies
 * (joined and sent as POSTFIELDS) and large ones (sent in parts through
 * the read callback), f32 and f16, and when a round mixes two stage inputs
 * (the second one is then encoded per call). */
static void test_shared_input_bytes(void **state)
{
	(void)state;
	uint32_t seed = 12345;
	for (int big = 0; big < 2; big++)
		for (int dt = 0; dt < 2; dt++) {
			int64_t dims[4] = {1, big ? 16 : 3, big ? 64 : 4, big ? 64 : 4};
			tensor *in[2];
			for (int k = 0; k < 2; k++) {
				assert_int_equal(tensor_create(TENSOR_F32, 4, dims, &in[k]),
						 DF_OK);
				for (size_t i = 0; i < in[k]->numel; i++) {
					seed = seed * 1664525u + 1013904223u;
					tensor_f32(in[k])[i] = (float)(int32_t)seed / 1e5f;
				}
			}
			static int32_t ids[3][2] = {{0, 2}, {1, 0}, {3, 0}};
			static const size_t n[3] = {2, 1, 1};
			partition_stage st = {.n_neurons = NEURONS};
			char *devices[3] = {"a", "b", "c"};
			partition_map map = {.version = 7, .n_devices = 3,
					     .devices = devices, .n_stages = 1,
					     .stages = &st, .copies = 1};
			const char *urls[3] = {url, url, url};
			tensor *side[3];
			const tensor *ins[3][2];
			runner_call calls[3];
			for (int c = 0; c < 3; c++) {
				int64_t sd[4] = {1, (int64_t)n[c], 2, 2};
				assert_int_equal(tensor_create(TENSOR_F32, 4, sd, &side[c]),
						 DF_OK);
				for (size_t i = 0; i < side[c]->numel; i++)
					tensor_f32(side[c])[i] = (float)(c * 100 + (int)i) + 0.3f;
			}
			http_client *hc = NULL;
			http_client_options o = {.cluster_token = TOKEN,
						 .stage_timeout_ms = 5000,
						 .dtype = dt ? WIRE_F16 : WIRE_F32};
			assert_int_equal(http_client_create(&o, &hc), DF_OK);
			/* Round 1: all calls share in[0]; round 2: calls 0 and 2
			 * send in[1], call 1 sends in[0]. */
			for (int round = 0; round < 2; round++) {
				for (int c = 0; c < 3; c++) {
					ins[c][0] = in[round == 1 && c != 1];
					ins[c][1] = side[c];
					calls[c] = (runner_call){.device = c, .stage = 0,
								 .round = 1, .ids = ids[c],
								 .n = n[c], .inputs = ins[c],
								 .n_inputs = 2};
				}
				http_stage_target t = {.map = &map, .model = "m",
						       .urls = urls,
						       .request_id = 100 + (uint64_t)round};
				http_client_begin(hc, &t);
				atomic_store(&F.mode, FAKE_OK);
				capture_reset(true);
				runner_backend be = http_client_backend(hc);
				be.execute(be.ctx, calls, 3);
				pthread_mutex_lock(&cap.mu);
				cap.on = false;
				pthread_mutex_unlock(&cap.mu);
				assert_int_equal(cap.n, 3);
				bool matched[CAPTURE_MAX] = {false};
				uint64_t body_bytes = 0;
				for (int c = 0; c < 3; c++) {
					assert_int_equal(calls[c].status, DF_OK);
					tensor_destroy(calls[c].output);
					wire_frame fr[2] = {
						{.t = (tensor *)ins[c][0], .dtype = o.dtype,
						 .channel_axis = WIRE_WHOLE},
						{.t = side[c], .dtype = o.dtype, .channel_axis = 1,
						 .channels_total = NEURONS, .ids = ids[c],
						 .n_ids = n[c]}};
					wire_msg m = {.kind = WIRE_MSG_REQUEST,
						      .request_id = t.request_id,
						      .partition_version = 7, .stage = 0,
						      .model = "m", .neurons = ids[c],
						      .n_neurons = n[c], .frames = fr,
						      .n_frames = 2};
					wire_buf want = {0};
					assert_int_equal(wire_msg_encode(&want, &m), DF_OK);
					if (big)
						assert_true(want.len > 64 * 1024);
					else
						assert_true(want.len < 4096);
					body_bytes += want.len;
					int hit = -1;
					for (int k = 0; k < cap.n; k++)
						if (!matched[k] && cap.len[k] == want.len &&
						    memcmp(cap.body[k], want.data, want.len) == 0)
							hit = k;
					if (hit < 0)
						fail_msg("big %d f16 %d round %d: call %d was not sent byte for byte",
							 big, dt, round, c);
					matched[hit] = true;
					wire_buf_free(&want);
				}
				/* Bodies once each, plus HTTP headers of about
				 * 150-250 bytes per call. */
				http_stage_stats stats = http_client_stats(hc);
				if (stats.bytes_sent < body_bytes + 3 * 60 ||
				    stats.bytes_sent > body_bytes + 3 * 400)
					fail_msg("big %d f16 %d round %d: %llu bytes sent for %llu bytes of bodies",
						 big, dt, round,
						 (unsigned long long)stats.bytes_sent,
						 (unsigned long long)body_bytes);
				capture_reset(false);
			}
			http_client_destroy(hc);
			for (int c = 0; c < 3; c++)
				tensor_destroy(side[c]);
			tensor_destroy(in[0]);
			tensor_destroy(in[1]);
		}
}

static void test_unreachable(void **state)
{
	(void)state;
	fixture f;
	fixture_init(&f, 1000, TOKEN);
	f.urls[0] = "http://127.0.0.1:1"; /* nothing listens on port 1 */
	f.urls[1] = NULL;
	fixture_run(&f);
	assert_int_equal(f.calls[0].status, DF_EUNAVAIL);
	assert_int_equal(f.calls[1].status, DF_EUNAVAIL);
	fixture_free(&f);
}

static void test_json_calls(void **state)
{
	(void)state;
	http_client *hc = NULL;
	http_client_options o = {.cluster_token = TOKEN};
	assert_int_equal(http_client_create(&o, &hc), DF_OK);
	char u[128];
	long status = 0;
	json_t *resp = NULL;
	snprintf(u, sizeof u, "%s/healthz", url);
	assert_int_equal(http_client_json(hc, "GET", u, NULL, 1000, &status, &resp),
			 DF_OK);
	assert_int_equal(status, 201);
	assert_string_equal(json_string_value(json_object_get(resp, "method")), "GET");
	assert_true(json_is_true(json_object_get(resp, "auth")));
	json_decref(resp);
	snprintf(u, sizeof u, "%s/v1/partitions/3", url);
	assert_int_equal(http_client_json(hc, "DELETE", u, NULL, 1000, &status, &resp),
			 DF_OK);
	assert_string_equal(json_string_value(json_object_get(resp, "method")),
			    "DELETE");
	json_decref(resp);
	snprintf(u, sizeof u, "%s/nothing", url);
	assert_int_equal(http_client_json(hc, "GET", u, NULL, 1000, &status, &resp),
			 DF_OK);
	assert_int_equal(status, 404);
	json_decref(resp);
	assert_int_equal(http_client_json(hc, "GET", "http://127.0.0.1:1/healthz",
					  NULL, 1000, &status, &resp),
			 DF_EUNAVAIL);
	assert_int_equal(status, 0);
	assert_null(resp);
	http_client_destroy(hc);
}

/* A call without its stage input fails; it never goes out carrying the
 * previous round's input (the shared frame is reused by pointer). */
static void test_missing_input_is_refused(void **state)
{
	(void)state;
	fixture f;
	fixture_init(&f, 2000, TOKEN);
	fixture_run(&f);
	assert_int_equal(f.calls[0].status, DF_OK);
	assert_int_equal(f.calls[1].status, DF_OK);
	f.ins_a[0] = NULL;
	f.ins_b[0] = NULL;
	fixture_run(&f);
	assert_int_equal(f.calls[0].status, DF_EINVAL);
	assert_int_equal(f.calls[1].status, DF_EINVAL);
	assert_null(f.calls[0].output);
	fixture_free(&f);
}

/* A listening socket whose accept queue is full (backlog 0, one connection
 * made and never accepted): a further connect hangs, as to a device whose
 * link is cut. Returns its port; *fds the two sockets to close. */
static int hanging_port(int fds[2])
{
	fds[0] = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fds[0] >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	assert_int_equal(bind(fds[0], (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(listen(fds[0], 0), 0);
	assert_int_equal(getsockname(fds[0], (struct sockaddr *)&a, &len), 0);
	fds[1] = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(fds[1], (struct sockaddr *)&a, sizeof a), 0);
	return ntohs(a.sin_port);
}

/* A connect timeout inside a call that the request deadline shortened is
 * the device's fault (its link), not the request's: the observer hears of
 * it. Only a call that used up the whole shortened deadline is excused. */
static void test_connect_timeout_under_request_deadline(void **state)
{
	(void)state;
	int fds[2];
	char hang[64];
	snprintf(hang, sizeof hang, "http://127.0.0.1:%d", hanging_port(fds));
	fixture f;
	fixture_init(&f, 2000, TOKEN);
	http_client_destroy(f.hc);
	observed seen = {0};
	http_client_options o = {.cluster_token = TOKEN, .stage_timeout_ms = 2000,
				 .connect_timeout_ms = 100,
				 .observer = observe_call, .observer_ctx = &seen};
	assert_int_equal(http_client_create(&o, &f.hc), DF_OK);
	f.urls[0] = hang;
	http_stage_target t = {.map = &f.map, .model = "m",
			       .urls = (const char *const *)f.urls,
			       .request_id = 43,
			       .deadline_ms = http_client_now_ms() + 1500};
	http_client_begin(f.hc, &t);
	fixture_run(&f);
	assert_int_equal(f.calls[0].status, DF_ETIMEDOUT);
	assert_int_equal(f.calls[1].status, DF_OK);
	assert_int_equal(seen.n, 2);
	assert_int_equal(seen.status[0], DF_ETIMEDOUT);
	assert_true(seen.ms[0] >= 90 && seen.ms[0] < 1000);
	fixture_free(&f);
	close(fds[1]);
	close(fds[0]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ok_parallel),
		cmocka_unit_test(test_bad_answers),
		cmocka_unit_test(test_wrong_token),
		cmocka_unit_test(test_deadline),
		cmocka_unit_test(test_call_timeout_hook),
		cmocka_unit_test(test_connect_timeout_under_request_deadline),
		cmocka_unit_test(test_missing_input_is_refused),
		cmocka_unit_test(test_shared_input_bytes),
		cmocka_unit_test(test_unreachable),
		cmocka_unit_test(test_json_calls),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
