/*
 * gateway.h - dicefleet-gateway's shared state and the interfaces between
 * its files:
 *   main.c       configuration, start-up order, shutdown
 *   routes.c     the static route table, JSON error helpers, request
 *                parsing shared by handlers (query numbers, multipart)
 *   classify.c   POST /v1/classify and the KServe v2 endpoints
 *   scheduler.c  deployments (a partition version with its runner pool),
 *                leases, readiness; scheduler_push.c chooses the version
 *                and runs the partition push protocol to workers
 *   health.c     device registry, health probing and the per-device state
 *                machine (health_fsm.c: UP/SUSPECT/DOWN), down masks,
 *                per-call deadlines
 *   metrics.c    counters and the Prometheus text at GET /metrics
 *
 * Request path: classify.c leases a runner + HTTP client (scheduler.c),
 * points the client at the deployment's map and URLs with a request
 * deadline, takes the DOWN devices from health.c as the runner's
 * down_mask, and runs runner_infer(). Every stage call outcome goes to
 * health_report_call() and metrics_stage_call() (scheduler.c's observer).
 * Per-call deadlines come from health_call_timeout() (the device's
 * per-stage latency estimate with a floor and a cap), plugged in as
 * http_client_options.call_timeout when the deployment's clients are
 * created; the client keeps each within the request deadline.
 *
 * Ownership: main() owns the gateway struct and everything it points to;
 * handlers borrow it. Fields below marked "immutable" are set before the
 * HTTP server starts and never written again, so handlers read them
 * without locks.
 */
#ifndef DF_GATEWAY_H
#define DF_GATEWAY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "config.h"
#include "health_fsm.h"
#include "engine.h"
#include "err.h"
#include "http_client.h"
#include "http_server.h"
#include "impute.h"
#include "model.h"
#include "partition.h"
#include "runner.h"
#include "store.h"

typedef struct health health;
typedef struct metrics metrics;
typedef struct scheduler scheduler;

/* Settings that define a partition (restored from and saved to SQLite). */
typedef struct gw_settings {
	partition_method method;
	double ratio;
	int copies;
	replica_mode replicas;
	impute_mode impute;
} gw_settings;

typedef struct gateway {
	config *cfg;                  /* immutable */
	store *db;                    /* thread-safe (store.h) */
	model *mdl;                   /* immutable after start-up */
	const char *model_name;       /* = mdl->dir->name */
	const char *models_dir;
	impute_stats *stats;          /* calibration (mean/recon), or NULL */
	gw_settings settings;         /* written only by sched_repartition() */
	const char *cluster_token;    /* NULL or "" = none */
	const char *admin_token;      /* DICEFLEET_ADMIN_TOKEN; NULL = admin off */
	long stage_timeout_ms;
	long request_timeout_ms;
	long control_timeout_ms;      /* prepare/commit/drop/healthz */
	double min_coverage;
	size_t max_pixels;
	size_t max_body;
	int engine_threads;           /* gateway-local stages */
	int pool_size;                /* concurrent inferences */
	engine_kind engine;
	health *health;
	metrics *metrics;
	scheduler *sched;
	atomic_uint_fast64_t next_request_id;
	atomic_bool stopping;
} gateway;

/* ---- routes.c ------------------------------------------------------------ */

/* The route table (static) and its size. */
const http_route *routes_table(size_t *n);

/* Replies err with message msg (or df_err_msg() when msg is NULL) as the
 * JSON error of DESIGN §7, with an explicit status. */
df_err routes_error(http_response *res, int status, df_err err,
		    const char *msg);

/* Parses an optional integer query argument: absent -> def; not an
 * integer or outside [lo, hi] -> DF_EINVAL naming it. */
df_err routes_query_int(const http_request *req, const char *name,
			long long def, long long lo, long long hi,
			long long *out);

/*
 * Finds the part named `field` in a multipart/form-data body whose
 * Content-Type header is ctype. *data / *len point into body (borrowed).
 * DF_EINVAL for a malformed body or missing boundary, DF_ENOENT when no
 * part has that name.
 */
df_err routes_multipart_field(const char *ctype, const unsigned char *body,
			      size_t body_len, const char *field,
			      const unsigned char **data, size_t *len);

/* ---- classify.c --------------------------------------------------------- */

df_err classify_handle_v1(const http_request *req, http_response *res,
			  void *ctx);
df_err classify_handle_v2_infer(const http_request *req, http_response *res,
				void *ctx);
df_err classify_handle_v2_model(const http_request *req, http_response *res,
				void *ctx);
df_err classify_handle_v2_model_ready(const http_request *req,
				      http_response *res, void *ctx);
df_err classify_handle_v2_server(const http_request *req, http_response *res,
				 void *ctx);
df_err classify_handle_live(const http_request *req, http_response *res,
			    void *ctx);
df_err classify_handle_ready(const http_request *req, http_response *res,
			     void *ctx);

/* ---- scheduler.c, scheduler_push.c --------------------------------------- */

/* A partition version ready to serve: the map, its device URLs and a pool
 * of runners. Reference-counted; leases keep it alive. */
typedef struct deployment deployment;

/* A runner and an HTTP client borrowed for one request. */
typedef struct sched_lease {
	deployment *dep;
	runner *run;
	http_client *http;
	const partition_map *map;
	const char *const *urls;
	int slot;
} sched_lease;

/* The CLOCK_REALTIME time ms from now: the deadline argument of
 * pthread_cond_timedwait() (default condition variables use that clock). */
struct timespec sched_wait_until(long ms);

df_err sched_create(gateway *gw, scheduler **out);

/* Stops the background deployer (joins it). Safe to call twice. */
void sched_stop(scheduler *s);

/* Stops the deployer and frees everything. Call once no request can hold
 * a lease (the HTTP server is gone). */
void sched_destroy(scheduler *s);

/*
 * Chooses the partition to serve: the active one in SQLite when it still
 * fits the model, the registered devices and the settings; else a new
 * version (stored PREPARED). Then starts the background deployer that
 * pushes it to the workers (prepare on all, commit on all, retrying
 * workers that are not up yet), marks it active in SQLite, drops older
 * versions on the workers and switches requests to it.
 */
df_err sched_start(scheduler *s);

/* Borrows a runner of the active deployment, waiting up to timeout_ms for
 * one to be free. DF_EUNAVAIL when nothing is deployed or none freed up. */
df_err sched_acquire(scheduler *s, long timeout_ms, sched_lease *out);

void sched_release(scheduler *s, sched_lease *lease);

/* Active version (0 = none) and whether the gateway can serve; *reason
 * (when not ready) is a borrowed static-lifetime string or a buffer
 * copy. */
int64_t sched_active_version(scheduler *s);
bool sched_ready(scheduler *s, char *reason, size_t len);

/*
 * Pushes the active version to one device (prepare + commit), for a worker
 * that came back or restarted. DF_OK when the worker now holds it.
 */
df_err sched_push_device(scheduler *s, http_client *hc, const char *id,
			 const char *url);

/*
 * Builds a new partition version with settings st (method, ratio, copies,
 * replicas; impute stays) over the registered devices not known DOWN and
 * pushes it with the zero-downtime protocol: prepare on every worker while
 * the old version serves, commit, mark active in SQLite, switch requests,
 * wait for requests on the old version, drop it on the workers. Saves the
 * settings in SQLite and logs a "partition" event. Returns once the new
 * version serves. DF_ECONFLICT while another change runs, DF_EUNAVAIL
 * when nothing is deployed yet or no worker took the new version (then it
 * is retired and the old one keeps serving).
 */
df_err sched_repartition(scheduler *s, const gw_settings *st, const char *cause,
			 int64_t *old_version, int64_t *new_version);

/* Whether device id is in the active partition version. */
bool sched_active_has(scheduler *s, const char *id);

/* Copy of the current settings (they change with sched_repartition()). */
void sched_settings(scheduler *s, gw_settings *out);

/* ---- health.c ------------------------------------------------------------ */

/* One registered device as health sees it (a copy). */
typedef struct dev_info {
	char id[STORE_ID_MAX];
	char url[STORE_URL_MAX];
	dev_state state;          /* health_fsm.h */
	int64_t version;          /* partition version the worker reported */
	double latency_ms;        /* probe round trip estimate (EWMA; 0 = none) */
	double call_latency_ms;   /* answered stage calls, any stage (EWMA;
				     0 = none) */
	int64_t failures;         /* failed contacts in a row */
	int64_t since_ms;         /* wall-clock ms of the last state change
				     (or of registration), for display;
				     filled by health_list/health_get */
	int64_t since_mono_ms;    /* the same on the monotonic clock
				     (http_client_now_ms), for durations */
} dev_info;

/* Registry of devices, restored from SQLite, plus --worker flags. */
df_err health_create(gateway *gw, health **out);

/* Stops the probe thread (if started) and frees h. */
void health_destroy(health *h);

/* Registers (or updates the URL of) a device and stores it. */
df_err health_register(health *h, const char *id, const char *url);

/* Removes a device from the registry and SQLite (its events stay) and
 * logs an "admin" event with cause. DF_ENOENT if unknown. */
df_err health_unregister(health *h, const char *id, const char *cause);

/* Copies of all devices, sorted by id. *out is new (free()). */
df_err health_list(health *h, dev_info **out, size_t *n);

/* Looks one device up by id; DF_ENOENT if unknown. */
df_err health_get(health *h, const char *id, dev_info *out);

/* Records the outcome of a gateway-initiated contact (probe, partition
 * push) with device id: ok = an answer (latency_ms its round trip, 0 =
 * unknown; version > 0 the version it holds), else a failure, which
 * force_down turns into DOWN at once (a failed prepare/commit). Runs the
 * state machine of health_fsm.h, persists the device row and logs an event
 * on each transition. */
void health_mark(health *h, const char *id, bool ok, bool force_down,
		 int64_t version, double latency_ms, const char *cause);

/* Bitmask over m's device indices of devices known DOWN (SUSPECT ones
 * are still called). */
uint64_t health_down_mask(health *h, const partition_map *m);

/* Starts the probe loop (every interval; pushes the active partition to
 * workers that lack it). */
df_err health_start(health *h);

/* Runs one probe round now (also used at start-up). */
void health_probe_round(health *h, http_client *hc);

/* Request-path feedback: a stage call of `stage` to device index `device`
 * of the map answered (DF_OK, ms = its latency), missed its deadline
 * (DF_ETIMEDOUT, ms = the time waited) or failed otherwise (runs on
 * request threads; touches SQLite only on a transition). */
void health_report_call(health *h, const partition_map *m, int device,
			int stage, df_err status, double ms);

/* Deadline in ms of a stage call of `stage` to device index `device` of
 * m: clamp(--stage-timeout-multiplier x the (device, stage) latency
 * estimate, --stage-timeout-floor-ms, --stage-timeout-ms); the latter
 * before any estimate. The HTTP client also keeps it within the request's
 * deadline. Runs on request threads. */
long health_call_timeout(health *h, const partition_map *m, int device,
			 int stage);

/* ---- admin.c (DESIGN §7 admin API; Bearer gw->admin_token) ------------ */

df_err admin_handle_devices(const http_request *req, http_response *res,
			    void *ctx);
df_err admin_handle_partition(const http_request *req, http_response *res,
			      void *ctx);
df_err admin_handle_events(const http_request *req, http_response *res,
			   void *ctx);
df_err admin_handle_device_add(const http_request *req, http_response *res,
			      void *ctx);
df_err admin_handle_device_delete(const http_request *req,
				 http_response *res, void *ctx);
df_err admin_handle_replication(const http_request *req, http_response *res,
				void *ctx);

/* ---- metrics.c ------------------------------------------------------------ */

typedef enum metrics_endpoint {
	METRICS_CLASSIFY = 0,
	METRICS_INFER,
	METRICS_OTHER,
	METRICS_ENDPOINT_COUNT
} metrics_endpoint;

df_err metrics_create(metrics **out);
void metrics_destroy(metrics *m);

/* One finished request to ep with HTTP status. */
void metrics_request(metrics *m, metrics_endpoint ep, int status,
		     double seconds);

/* One inference that ran: coverage, degraded, bytes on the wire. */
void metrics_inference(metrics *m, double coverage, int64_t imputed,
		       const http_stage_stats *st);

/* One stage call outcome. */
void metrics_stage_call(metrics *m, df_err status);

df_err metrics_handle(const http_request *req, http_response *res, void *ctx);

#endif
