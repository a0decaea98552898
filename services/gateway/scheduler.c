/*
 * scheduler.c - which deployment requests run on.
 *
 * A deployment is one partition version ready to serve: the map, the base
 * URL of each of its devices, the recon maps fitted for it, and a pool of
 * slots, each a runner (not thread-safe) with its own HTTP client (curl
 * handles are per thread). A request leases one free slot for its whole
 * inference; leases hold a reference on the deployment, so a deployment
 * replaced while requests run on it is freed only after the last lease
 * returns (requests in flight finish on the old version, DESIGN §6).
 * Ready means a deployment is active and not every one of its workers is
 * DOWN. Choosing a version and pushing it to the workers is
 * scheduler_push.c.
 *
 * Locks: s->lock guards active/pending, the slots' busy flags, reference
 * counts, the readiness text and gw->settings after start-up. It is never
 * held across network calls.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "scheduler_internal.h"

/* ---- deployments -------------------------------------------------------- */

void deployment_free(deployment *d)
{
	if (!d)
		return;
	for (int i = 0; d->slots && i < d->n_slots; i++) {
		runner_destroy(d->slots[i].run);
		http_client_destroy(d->slots[i].http);
	}
	free(d->slots);
	if (d->urls && d->map)
		for (int i = 0; i < d->map->n_devices; i++)
			free(d->urls[i]);
	free(d->urls);
	impute_recon_destroy(d->recon);
	json_decref(d->map_obj);
	free(d->json);
	partition_destroy(d->map);
	free(d);
}

/* Every stage call outcome: metrics, and the health state machine (which
 * also learns the call's latency). */
static void call_observer(void *ctx, int device, int st, df_err status,
			  double ms)
{
	deployment *d = ctx;
	metrics_stage_call(d->gw->metrics, status);
	health_report_call(d->gw->health, d->map, device, st, status, ms);
}

/* Deadline of each stage call: from the device's latency for that stage. */
static long call_deadline(void *ctx, int device, int st)
{
	deployment *d = ctx;
	return health_call_timeout(d->gw->health, d->map, device, st);
}

/* Builds a deployment around map (taken over) with its JSON text. */
df_err deployment_create(gateway *gw, const gw_settings *st,
				partition_map *map, char *json, deployment **out)
{
	deployment *d = calloc(1, sizeof *d);
	if (!d) {
		partition_destroy(map);
		free(json);
		return DF_ENOMEM;
	}
	d->gw = gw;
	d->map = map;
	d->json = json;
	df_err err = DF_OK;
	json_error_t je;
	d->map_obj = json_loads(json, 0, &je);
	if (!d->map_obj) {
		err = df_errf(DF_EINTERNAL, "partition JSON does not parse: %s", je.text);
		goto out;
	}
	d->urls = calloc((size_t)map->n_devices + 1, sizeof *d->urls);
	if (!d->urls) {
		err = DF_ENOMEM;
		goto out;
	}
	for (int i = 0; i < map->n_devices; i++) {
		dev_info info;
		if (health_get(gw->health, map->devices[i], &info) == DF_OK) {
			d->urls[i] = strdup(info.url);
			if (!d->urls[i]) {
				err = DF_ENOMEM;
				goto out;
			}
		}
	}
	if (st->impute == IMPUTE_RECON && gw->stats) {
		err = impute_recon_fit(gw->stats, gw->mdl->plan, map, 1, &d->recon);
		if (err)
			goto out;
		log_info("version %" PRId64 ": %zu recon maps (%zu bytes)",
			 map->version, impute_recon_count(d->recon),
			 impute_recon_bytes(d->recon));
	}
	runner_options ro = {
		.impute = st->impute,
		.replicas = st->replicas,
		.stats = gw->stats,
		.recon = d->recon,
		.kind = gw->engine,
		.threads = gw->engine_threads,
	};
	http_client_options ho = {
		.cluster_token = gw->cluster_token,
		.connect_timeout_ms = (long)config_int(gw->cfg, "connect-timeout-ms"),
		.stage_timeout_ms = gw->stage_timeout_ms,
		.call_timeout = call_deadline,
		.call_timeout_ctx = d,
		.observer = call_observer,
		.observer_ctx = d,
		.dtype = strcmp(config_str(gw->cfg, "wire-dtype"), "f16") == 0
			? WIRE_F16 : WIRE_F32,
	};
	d->n_slots = gw->pool_size;
	d->slots = calloc((size_t)d->n_slots, sizeof *d->slots);
	if (!d->slots) {
		err = DF_ENOMEM;
		goto out;
	}
	for (int i = 0; i < d->n_slots && !err; i++) {
		err = runner_create(gw->mdl->g, gw->mdl->plan, map, &ro,
				    &d->slots[i].run);
		if (!err)
			err = http_client_create(&ho, &d->slots[i].http);
	}
out:
	if (err) {
		deployment_free(d);
		return err;
	}
	*out = d;
	return DF_OK;
}

/* ---- public ------------------------------------------------------------- */

df_err sched_create(gateway *gw, scheduler **out)
{
	scheduler *s = calloc(1, sizeof *s);
	if (!s)
		return DF_ENOMEM;
	s->gw = gw;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->change, NULL);
	pthread_cond_init(&s->freed, NULL);
	pthread_cond_init(&s->wake, NULL);
	snprintf(s->reason, sizeof s->reason, "starting");
	*out = s;
	return DF_OK;
}

void sched_stop(scheduler *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stop = true;
	pthread_cond_broadcast(&s->wake);
	pthread_cond_broadcast(&s->freed);
	pthread_mutex_unlock(&s->lock);
	if (s->thread_started) {
		pthread_join(s->thread, NULL);
		s->thread_started = false;
	}
}

void sched_destroy(scheduler *s)
{
	if (!s)
		return;
	sched_stop(s);
	/* The HTTP server is gone: no lease is outstanding. */
	deployment_free(s->pending);
	deployment_free(s->active);
	pthread_cond_destroy(&s->freed);
	pthread_cond_destroy(&s->wake);
	pthread_mutex_destroy(&s->change);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

struct timespec sched_wait_until(long ms)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

df_err sched_acquire(scheduler *s, long timeout_ms, sched_lease *out)
{
	const struct timespec until = sched_wait_until(timeout_ms);
	df_err err = DF_OK;
	pthread_mutex_lock(&s->lock);
	for (;;) {
		deployment *d = s->active;
		if (!d || s->stop) {
			err = df_errf(DF_EUNAVAIL, "not ready: %s",
				      s->stop ? "shutting down" : s->reason);
			break;
		}
		int k = -1;
		for (int i = 0; i < d->n_slots && k < 0; i++)
			if (!d->slots[i].busy)
				k = i;
		if (k >= 0) {
			d->slots[k].busy = true;
			d->refs++;
			*out = (sched_lease){.dep = d, .run = d->slots[k].run,
					     .http = d->slots[k].http, .map = d->map,
					     .urls = (const char *const *)d->urls,
					     .slot = k};
			break;
		}
		if (pthread_cond_timedwait(&s->freed, &s->lock, &until) == ETIMEDOUT) {
			err = df_errf(DF_EUNAVAIL, "all %d runners stayed busy for %ld ms",
				      d->n_slots, timeout_ms);
			break;
		}
	}
	pthread_mutex_unlock(&s->lock);
	return err;
}

void deployment_unref(scheduler *s, deployment *d)
{
	pthread_mutex_lock(&s->lock);
	bool last = --d->refs == 0;
	pthread_cond_broadcast(&s->freed);
	pthread_mutex_unlock(&s->lock);
	if (last)
		deployment_free(d);
}

void sched_release(scheduler *s, sched_lease *lease)
{
	deployment *d = lease->dep;
	if (!d)
		return;
	pthread_mutex_lock(&s->lock);
	d->slots[lease->slot].busy = false;
	bool last = --d->refs == 0;
	pthread_cond_broadcast(&s->freed);
	pthread_mutex_unlock(&s->lock);
	if (last)
		deployment_free(d);
	memset(lease, 0, sizeof *lease);
}

int64_t sched_active_version(scheduler *s)
{
	pthread_mutex_lock(&s->lock);
	int64_t v = s->active ? s->active->map->version : 0;
	pthread_mutex_unlock(&s->lock);
	return v;
}

bool sched_ready(scheduler *s, char *reason, size_t len)
{
	pthread_mutex_lock(&s->lock);
	deployment *d = s->active;
	bool ready = d != NULL;
	partition_map *m = d ? d->map : NULL;
	if (!ready)
		snprintf(reason, len, "%s", s->reason);
	if (d)
		d->refs++;
	pthread_mutex_unlock(&s->lock);
	if (ready) {
		uint64_t down = health_down_mask(s->gw->health, m);
		uint64_t all = m->n_devices >= 64 ? UINT64_MAX
						  : ((1ULL << m->n_devices) - 1);
		if ((down & all) == all) {
			ready = false;
			snprintf(reason, len, "every worker of partition version %" PRId64 " is down",
				 m->version);
		}
		deployment_unref(s, d);
	}
	return ready;
}

void sched_settings(scheduler *s, gw_settings *out)
{
	pthread_mutex_lock(&s->lock);
	*out = s->gw->settings;
	pthread_mutex_unlock(&s->lock);
}

bool sched_active_has(scheduler *s, const char *id)
{
	pthread_mutex_lock(&s->lock);
	bool has = s->active && partition_device_index(s->active->map, id) >= 0;
	pthread_mutex_unlock(&s->lock);
	return has;
}
