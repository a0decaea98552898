/*
 * http_client.h - the gateway's side of the gateway <-> worker protocol,
 * over libcurl:
 *  - a runner_backend (runner.h) that turns each runner_call into one
 *    binary stage request (wire.h) POSTed to <device url>/v1/stage, sends
 *    all calls of a round in parallel (curl multi) with a deadline per
 *    call, and checks every answer before trusting it;
 *  - JSON control calls to workers (GET /healthz, prepare/commit/drop of
 *    partition versions) with a timeout.
 *
 * One http_client per thread (curl handles are not thread-safe); its curl
 * multi handle keeps connections to the workers alive across calls and
 * requests. Call http_client_global_init() once in main() before any
 * thread starts.
 *
 * Stage request layout (wire.h): envelope kind REQUEST with request_id,
 * partition_version = map->version, stage index, model name, neurons =
 * the call's ids; frame 0 = the whole stage input (channel_axis whole);
 * frames 1.. = the side inputs sliced to the call's ids (channel_axis 1,
 * channel ids = the call's ids, channels_total = the stage's neurons).
 * Frame 0 is the same for every call of a round: it is encoded (copied,
 * converted, checksummed) once per round and its bytes are sent in every
 * call, each body byte for byte what wire_msg_encode() gives.
 * Both directions use Content-Type HTTP_CLIENT_FRAME_TYPE.
 * Expected answer: HTTP 200, one RESPONSE
 * message with the same request_id, partition_version, stage and model,
 * holding exactly one frame: channel_axis 1, channels_total = the stage's
 * neurons, channel ids = the call's ids in order, and (when the target
 * gives the graph) the shape of the stage output with n channels. Anything
 * else fails the call: the worker's answer is untrusted input.
 *
 * Per-call status: DF_OK; DF_ETIMEDOUT (call deadline or request deadline
 * passed); DF_EUNAVAIL (no URL, connection refused/reset, HTTP 5xx other
 * than a version conflict); DF_ECONFLICT (HTTP 404/409: the worker does
 * not hold that partition version or stage, or holds another model); DF_EAUTH (401/403); DF_ECORRUPT (answer
 * not parseable, or not what was asked); DF_ETOOBIG (answer above the
 * size it can have); DF_EINVAL (other 4xx: the request was refused).
 */
#ifndef DF_HTTP_CLIENT_H
#define DF_HTTP_CLIENT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"
#include "graph.h"
#include "partition.h"
#include "runner.h"
#include "stage.h"
#include "wire.h"

#define HTTP_CLIENT_FRAME_TYPE "application/x-dicefleet-frame"
#define HTTP_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS 1000
#define HTTP_CLIENT_DEFAULT_STAGE_TIMEOUT_MS 2000
#define HTTP_CLIENT_MAX_JSON_RESPONSE (1u << 20) /* control call answers */
/* Answer cap when the target has no graph to size it from. */
#define HTTP_CLIENT_DEFAULT_MAX_STAGE_RESPONSE ((size_t)256 << 20)

/* Deadline of one stage call in ms (> 0; else stage_timeout_ms is used),
 * e.g. from the device's latency estimate with a floor and a cap. Called
 * on the client's thread as each call is sent; the client cuts it to what
 * is left of the request's deadline (http_stage_target.deadline_ms). */
typedef long (*http_call_timeout_fn)(void *ctx, int device, int stage);

/* Told the outcome of every stage call (ms = wall time of the call),
 * except calls not needed any more (cancelled) and calls that failed only
 * because the request's deadline passed (not sent, or late with a
 * deadline cut short by it): those say nothing about the device. */
typedef void (*http_call_observer_fn)(void *ctx, int device, int stage,
				      df_err status, double ms);

typedef struct http_client_options {
	const char *cluster_token;   /* "Authorization: Bearer"; NULL or "" =
					none; copied */
	long connect_timeout_ms;     /* 0 = default */
	long stage_timeout_ms;       /* fixed per-call deadline; 0 = default */
	http_call_timeout_fn call_timeout; /* overrides stage_timeout_ms */
	void *call_timeout_ctx;
	http_call_observer_fn observer;    /* may be NULL */
	void *observer_ctx;
	wire_dtype dtype;            /* encoding of request frames */
	const atomic_bool *abort;    /* when it becomes true, control calls
					in progress give up (DF_EUNAVAIL);
					may be NULL; borrowed */
} http_client_options;

typedef struct http_client http_client;

/* curl_global_init(); call once before any thread starts. */
df_err http_client_global_init(void);

/* New client (options copied). Free with http_client_destroy(). */
df_err http_client_create(const http_client_options *opt, http_client **out);

/* Frees c and closes its connections. NULL is a no-op. */
void http_client_destroy(http_client *c);

/* What the stage calls of one inference run against. All borrowed for
 * the duration of the request. */
typedef struct http_stage_target {
	const partition_map *map;    /* version, device count, neurons */
	const char *model;           /* model name sent in the envelope */
	const char *const *urls;     /* [map->n_devices] base URLs
					("http://127.0.0.1:9001"); NULL entry =
					device unreachable */
	const graph *g;              /* with plan: checks answer shapes and
					bounds answer sizes; may be NULL */
	const stage_plan *plan;
	uint64_t request_id;
	int64_t deadline_ms;         /* absolute, http_client_now_ms() clock;
					0 = none */
} http_stage_target;

/* Bytes and calls of the current request (since http_client_begin()). */
typedef struct http_stage_stats {
	uint64_t bytes_sent;         /* request headers + bodies */
	uint64_t bytes_received;     /* response headers + bodies */
	uint64_t calls;
	uint64_t calls_failed;
} http_stage_stats;

/* Starts a request: the target (borrowed until the next begin) and zeroed
 * stats. */
void http_client_begin(http_client *c, const http_stage_target *t);

/* The runner backend executing calls against the current target. */
runner_backend http_client_backend(http_client *c);

/* Stats of the current request. */
http_stage_stats http_client_stats(const http_client *c);

/* Monotonic clock in ms (CLOCK_MONOTONIC). */
int64_t http_client_now_ms(void);

/* The same with sub-millisecond resolution, for latencies: a loopback
 * call often takes less than 1 ms. */
double http_client_now_msf(void);

/*
 * One JSON control call: method ("GET", "POST", "DELETE") on url with body
 * (NULL: no body; borrowed) and the cluster token. *status receives the
 * HTTP status (0 when no answer arrived); *resp (may be NULL) a new JSON
 * value when the answer parsed as JSON (else NULL). Transport problems
 * return DF_EUNAVAIL / DF_ETIMEDOUT with the reason in df_err_msg(); an
 * HTTP error status is not a failure of this call.
 */
df_err http_client_json(http_client *c, const char *method, const char *url,
			const json_t *body, long timeout_ms, long *status,
			json_t **resp);

#endif
