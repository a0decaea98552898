/*
 * scheduler_push.c - choosing the partition version to serve and getting
 * it onto the workers.
 *
 * At start-up the active version in SQLite is restored when it still fits
 * the model, the registered devices and the settings; else a new version
 * is stored. sched_repartition() stores a new one over the devices not
 * known DOWN.
 *
 * Pushing a version (DESIGN §6 zero-downtime protocol): prepare on every
 * device of the map (retrying workers that are not up yet until
 * --startup-wait-ms), commit on every device that prepared, mark the
 * version active in SQLite, switch new requests to it, wait for the
 * requests in flight on the replaced deployment, then drop the previous
 * version on the workers. Devices that never prepared are marked DOWN; the
 * health loop pushes the version to them when they come back
 * (sched_push_device). With no device reachable at all the deployer keeps
 * retrying and the gateway stays not ready.
 *
 * Locks: s->change serializes sched_repartition(); s->lock (see
 * scheduler.c) is taken only briefly and never held across network calls.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "scheduler_internal.h"

/* ---- choosing the partition --------------------------------------------- */

/* Device ids of the registered devices, sorted (health_list order). */
static df_err device_ids(gateway *gw, char ***ids, int *n)
{
	dev_info *devs = NULL;
	size_t nd = 0;
	df_err err = health_list(gw->health, &devs, &nd);
	if (err)
		return err;
	if (nd > PARTITION_MAX_DEVICES) {
		free(devs);
		return df_errf(DF_ERANGE, "%zu devices registered; a partition takes at most %d",
			       nd, PARTITION_MAX_DEVICES);
	}
	char **out = calloc(nd + 1, sizeof *out);
	for (size_t i = 0; out && i < nd; i++) {
		out[i] = strdup(devs[i].id);
		if (!out[i]) {
			for (size_t k = 0; k < i; k++)
				free(out[k]);
			free(out);
			out = NULL;
		}
	}
	free(devs);
	if (!out)
		return DF_ENOMEM;
	*ids = out;
	*n = (int)nd;
	return DF_OK;
}

static void free_ids(char **ids, int n)
{
	for (int i = 0; ids && i < n; i++)
		free(ids[i]);
	free(ids);
}

/* Does the stored map still describe what we would build now? */
static bool map_fits(gateway *gw, const partition_map *m,
		     const store_partition *sp, char **ids, int n)
{
	const gw_settings *st = &gw->settings;
	if (partition_validate(m, gw->mdl->plan)) {
		log_info("stored version %" PRId64 " does not fit the model: %s",
			 sp->version, df_err_msg());
		return false;
	}
	if (m->n_devices != n)
		return false;
	for (int i = 0; i < n; i++)
		if (strcmp(m->devices[i], ids[i]) != 0)
			return false;
	if (strcmp(sp->model, gw->model_name) != 0 || m->method != st->method ||
	    (st->method != PARTITION_FULL && m->ratio != st->ratio) ||
	    m->copies != (st->copies <= n ? st->copies : n) ||
	    strcmp(sp->replica_mode, replica_mode_name(st->replicas)) != 0)
		return false;
	return true;
}

/* Restores the active version from SQLite when it fits; *out NULL if not. */
static df_err restore_active(scheduler *s, char **ids, int n,
			     partition_map **out, char **json)
{
	gateway *gw = s->gw;
	store_partition sp = {0};
	*out = NULL;
	df_err err = store_partition_get_active(gw->db, gw->model_name, &sp);
	if (err == DF_ENOENT)
		return DF_OK;
	if (err)
		return err;
	s->previous = sp.version;
	partition_map *m = NULL;
	if (partition_from_json(sp.json, strlen(sp.json), &m)) {
		log_warn("stored version %" PRId64 " does not parse: %s", sp.version,
			 df_err_msg());
	} else if (m->version != sp.version) {
		log_warn("stored version %" PRId64 " holds a map of version %" PRId64,
			 sp.version, m->version);
	} else if (map_fits(gw, m, &sp, ids, n)) {
		*out = m;
		*json = sp.json;
		sp.json = NULL;
		m = NULL;
		log_info("restored active partition version %" PRId64 " (%s, ratio %g, %d devices)",
			 sp.version, sp.method, sp.ratio, n);
	} else {
		log_info("stored version %" PRId64 " no longer matches the devices or settings; making a new one",
			 sp.version);
	}
	partition_destroy(m);
	store_partition_clear(&sp);
	return DF_OK;
}

/* Highest version in the store (0 if none). */
static df_err max_version(store *db, int64_t *v)
{
	store_partition *list = NULL;
	size_t n = 0;
	df_err err = store_partition_list(db, NULL, &list, &n);
	if (err)
		return err;
	*v = n ? list[0].version : 0;
	for (size_t i = 1; i < n; i++)
		if (list[i].version > *v)
			*v = list[i].version;
	store_partitions_free(list, n);
	return DF_OK;
}

/* Builds a new map over ids and stores it as the next version. */
static df_err create_version(scheduler *s, const gw_settings *st, char **ids,
			     int n, partition_map **out, char **json_out)
{
	gateway *gw = s->gw;
	partition_params pp;
	partition_params_default(&pp);
	pp.method = st->method;
	pp.ratio = st->ratio;
	pp.copies = st->copies <= n ? st->copies : n;
	pp.n_devices = n;
	pp.device_ids = (const char *const *)ids;
	if (pp.copies < st->copies)
		log_warn("copies %d > %d devices: using %d", st->copies, n, pp.copies);
	partition_map *m = NULL;
	char *json = NULL;
	df_err err = partition_create(gw->mdl->g, gw->mdl->plan, &pp, &m);
	if (!err) {
		free(m->model);
		m->model = strdup(gw->model_name);
		if (!m->model)
			err = DF_ENOMEM;
	}
	/* The store assigns max + 1; the JSON must carry the same number.
	 * The gateway is the only writer of partitions, so a mismatch means
	 * a concurrent writer: retire that row and try again. */
	for (int attempt = 0; !err && attempt < 5; attempt++) {
		int64_t top = 0, got = 0;
		err = max_version(gw->db, &top);
		if (err)
			break;
		m->version = top + 1;
		free(json);
		json = NULL;
		err = partition_to_json(m, &json);
		if (err)
			break;
		store_partition sp = {
			.model = (char *)gw->model_name,
			.method = (char *)partition_method_name(m->method),
			.ratio = m->ratio,
			.copies = m->copies,
			.replica_mode = (char *)replica_mode_name(st->replicas),
			.json = json,
		};
		err = store_partition_insert(gw->db, &sp, &got);
		if (err)
			break;
		if (got == m->version) {
			log_info("new partition version %" PRId64 ": %s, ratio %g, copies %d, %d devices",
				 got, partition_method_name(m->method), m->ratio,
				 m->copies, n);
			*out = m;
			*json_out = json;
			return DF_OK;
		}
		log_warn("version %" PRId64 " was taken concurrently; retrying", got);
		store_partition_retire(gw->db, got);
	}
	if (!err)
		err = df_errf(DF_ECONFLICT, "could not store a new partition version");
	partition_destroy(m);
	free(json);
	return err;
}

/* ---- pushing to workers ------------------------------------------------- */

static df_err control_call(gateway *gw, http_client *hc, const char *method,
			   const char *url, const char *id, int64_t version,
			   const char *verb, const json_t *body)
{
	char full[STORE_URL_MAX + 96];
	if (strcmp(verb, "drop") == 0)
		snprintf(full, sizeof full, "%s/v1/partitions/%" PRId64, url, version);
	else
		snprintf(full, sizeof full, "%s/v1/partitions/%" PRId64 "/%s", url,
			 version, verb);
	long status = 0;
	json_t *resp = NULL;
	df_err err = http_client_json(hc, method, full, body, gw->control_timeout_ms,
				      &status, &resp);
	if (err)
		return err;
	if (status != 200) {
		const char *msg = NULL;
		json_t *e = json_object_get(json_object_get(resp, "error"), "message");
		msg = json_is_string(e) ? json_string_value(e) : "";
		err = df_errf(status == 401 || status == 403 ? DF_EAUTH
			      : status >= 500 ? DF_EUNAVAIL : DF_ECONFLICT,
			      "%s %s on %s: HTTP %ld %s", verb, full, id, status, msg);
	}
	json_decref(resp);
	return err;
}

static df_err prepare_one(deployment *d, http_client *hc, int i)
{
	gateway *gw = d->gw;
	if (!d->urls[i])
		return df_errf(DF_ENOENT, "device %s is not registered",
			       d->map->devices[i]);
	json_t *body = json_pack("{s:s, s:s, s:s, s:O}", "model", gw->model_name,
				 "sha256", gw->mdl->dir->sha256, "device",
				 d->map->devices[i], "map", d->map_obj);
	if (!body)
		return DF_ENOMEM;
	df_err err = control_call(gw, hc, "POST", d->urls[i], d->map->devices[i],
				  d->map->version, "prepare", body);
	json_decref(body);
	return err;
}

static df_err commit_one(deployment *d, http_client *hc, int i)
{
	return control_call(d->gw, hc, "POST", d->urls[i], d->map->devices[i],
			    d->map->version, "commit", NULL);
}

static void set_reason(scheduler *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void set_reason(scheduler *s, const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&s->lock);
	va_start(ap, fmt);
	vsnprintf(s->reason, sizeof s->reason, fmt, ap);
	va_end(ap);
	pthread_mutex_unlock(&s->lock);
}

/* Sleeps up to ms unless stopping; false when stopping. */
static bool nap(scheduler *s, long ms)
{
	const struct timespec until = sched_wait_until(ms);
	pthread_mutex_lock(&s->lock);
	if (!s->stop)
		pthread_cond_timedwait(&s->wake, &s->lock, &until);
	bool go = !s->stop;
	pthread_mutex_unlock(&s->lock);
	return go;
}

/* Makes d the active deployment (the old one is freed when its last
 * lease returns). */
static void switch_to(scheduler *s, deployment *d)
{
	deployment *old;
	pthread_mutex_lock(&s->lock);
	old = s->active;
	s->active = d;
	d->refs++;
	if (s->pending == d)
		s->pending = NULL;
	bool free_old = old && --old->refs == 0;
	pthread_cond_broadcast(&s->freed);
	pthread_mutex_unlock(&s->lock);
	if (free_old)
		deployment_free(old);
}

/* Prepare all -> commit all -> active in SQLite -> switch -> wait for the
 * requests in flight on the replaced deployment -> drop version `old` on
 * the workers. Workers that do not prepare within wait_ms are marked
 * DOWN. When no worker commits: with `once` returns false at once, else
 * retries until one does. Returns false when stopped before the version
 * could be activated. */
static bool push_version(scheduler *s, deployment *d, http_client *hc,
			 long wait_ms, bool once, int64_t old)
{
	gateway *gw = s->gw;
	const partition_map *m = d->map;
	const int n = m->n_devices;
	bool prepared[PARTITION_MAX_DEVICES] = {false};
	char last[200] = "";
	for (;;) {
		int64_t deadline = http_client_now_ms() + wait_ms;
		int n_prepared = 0;
		for (;;) {
			n_prepared = 0;
			for (int i = 0; i < n; i++) {
				if (!prepared[i]) {
					df_err err = prepare_one(d, hc, i);
					if (err) {
						snprintf(last, sizeof last, "%s", df_err_msg());
						log_debug("prepare: %s", last);
					} else {
						prepared[i] = true;
					}
				}
				n_prepared += prepared[i];
			}
			if (n_prepared == n || http_client_now_ms() >= deadline)
				break;
			set_reason(s, "deploying partition version %" PRId64 ": %d of %d workers prepared; last error: %s",
				   m->version, n_prepared, n, last);
			if (!nap(s, 500))
				return false;
		}
		int n_committed = 0;
		for (int i = 0; i < n; i++) {
			if (!prepared[i]) {
				health_mark(gw->health, m->devices[i], false, true, 0, 0,
					    "did not prepare the partition in time");
				continue;
			}
			df_err err = commit_one(d, hc, i);
			if (err) {
				log_warn("%s", df_err_msg());
				prepared[i] = false;
				health_mark(gw->health, m->devices[i], false, true, 0, 0,
					    "commit failed");
				continue;
			}
			health_mark(gw->health, m->devices[i], true, false, m->version,
				    0, "holds the active partition");
			n_committed++;
		}
		if (n_committed > 0) {
			log_info("partition version %" PRId64 " committed on %d of %d workers",
				 m->version, n_committed, n);
			break;
		}
		if (once) {
			log_warn("no worker took partition version %" PRId64 " (%s)",
				 m->version, last);
			/* Free the workers' slot for the next attempt. */
			for (int i = 0; i < n; i++)
				if (d->urls[i] &&
				    control_call(gw, hc, "DELETE", d->urls[i], m->devices[i],
						 m->version, "drop", NULL))
					log_debug("drop of version %" PRId64 ": %s",
						  m->version, df_err_msg());
			return false;
		}
		set_reason(s, "no worker took partition version %" PRId64 "; last error: %s",
			   m->version, last);
		log_warn("no worker took partition version %" PRId64 " (%s); retrying",
			 m->version, last);
		if (!nap(s, 1000))
			return false;
	}
	df_err err = store_partition_set_active(gw->db, m->version);
	if (err)
		log_error("marking version %" PRId64 " active: %s", m->version,
			  df_err_msg());
	/* Hold the replaced deployment so that its leases can be waited for:
	 * workers drop the old version only after requests on it finished. */
	pthread_mutex_lock(&s->lock);
	deployment *prev = s->active;
	if (prev)
		prev->refs++;
	pthread_mutex_unlock(&s->lock);
	switch_to(s, d);
	if (prev) {
		const struct timespec until =
			sched_wait_until(gw->request_timeout_ms + 1000);
		pthread_mutex_lock(&s->lock);
		while (prev->refs > 1 && !s->stop)
			if (pthread_cond_timedwait(&s->freed, &s->lock, &until) == ETIMEDOUT)
				break;
		bool gone = --prev->refs == 0;
		pthread_mutex_unlock(&s->lock);
		if (gone)
			deployment_free(prev);
	}
	if (old > 0 && old != m->version) {
		for (int i = 0; i < n; i++) {
			if (!prepared[i])
				continue;
			err = control_call(gw, hc, "DELETE", d->urls[i], m->devices[i],
					   old, "drop", NULL);
			if (err)
				log_debug("drop of version %" PRId64 ": %s", old,
					  df_err_msg());
		}
	}
	return true;
}

static void *deployer_main(void *arg)
{
	scheduler *s = arg;
	gateway *gw = s->gw;
	http_client *hc = NULL;
	http_client_options ho = {
		.cluster_token = gw->cluster_token,
		.connect_timeout_ms = (long)config_int(gw->cfg, "connect-timeout-ms"),
		.stage_timeout_ms = gw->control_timeout_ms,
		.abort = &gw->stopping,
	};
	if (http_client_create(&ho, &hc)) {
		log_error("deployer: %s", df_err_msg());
		return NULL;
	}
	pthread_mutex_lock(&s->lock);
	deployment *d = s->pending;
	pthread_mutex_unlock(&s->lock);
	if (d && push_version(s, d, hc,
			      (long)config_int(gw->cfg, "startup-wait-ms"), false,
			      s->previous)) {
		if (health_start(gw->health))
			log_error("health loop: %s", df_err_msg());
	}
	http_client_destroy(hc);
	return NULL;
}

/* ---- public ------------------------------------------------------------- */

df_err sched_start(scheduler *s)
{
	gateway *gw = s->gw;
	char **ids = NULL;
	int n = 0;
	partition_map *m = NULL;
	char *json = NULL;
	df_err err = device_ids(gw, &ids, &n);
	if (err)
		return err;
	if (n == 0) {
		free_ids(ids, n);
		set_reason(s, "no workers registered (start with --worker ID=URL)");
		log_warn("no workers registered: not ready until one is added");
		return DF_OK;
	}
	err = restore_active(s, ids, n, &m, &json);
	if (!err && !m)
		err = create_version(s, &gw->settings, ids, n, &m, &json);
	free_ids(ids, n);
	if (err)
		return err;
	deployment *d = NULL;
	err = deployment_create(gw, &gw->settings, m, json, &d);
	if (err)
		return err;
	pthread_mutex_lock(&s->lock);
	s->pending = d;
	snprintf(s->reason, sizeof s->reason,
		 "deploying partition version %" PRId64, m->version);
	pthread_mutex_unlock(&s->lock);
	if (pthread_create(&s->thread, NULL, deployer_main, s) != 0)
		return df_errf(DF_EINTERNAL, "cannot start the deployer thread");
	s->thread_started = true;
	return DF_OK;
}

df_err sched_push_device(scheduler *s, http_client *hc, const char *id,
			 const char *url)
{
	pthread_mutex_lock(&s->lock);
	deployment *d = s->active;
	if (d)
		d->refs++;
	pthread_mutex_unlock(&s->lock);
	if (!d)
		return df_errf(DF_EUNAVAIL, "no active partition");
	df_err err = DF_OK;
	int i = partition_device_index(d->map, id);
	if (i < 0) {
		err = df_errf(DF_ENOENT, "device %s is not in version %" PRId64, id,
			      d->map->version);
		goto out;
	}
	/* The device may have a new URL since the deployment was built. */
	if (!d->urls[i] || strcmp(d->urls[i], url) != 0) {
		err = df_errf(DF_ECONFLICT, "device %s moved to %s; a new partition is needed",
			      id, url);
		goto out;
	}
	err = prepare_one(d, hc, i);
	if (!err)
		err = commit_one(d, hc, i);
	if (!err)
		log_info("pushed partition version %" PRId64 " to %s", d->map->version,
			 id);
out:
	deployment_unref(s, d);
	return err;
}

/* Saves the partition settings so that a restart keeps them. */
static df_err save_settings(store *db, const gw_settings *st)
{
	char buf[64];
	df_err err = store_setting_set(db, "method", partition_method_name(st->method));
	snprintf(buf, sizeof buf, "%.17g", st->ratio);
	if (!err)
		err = store_setting_set(db, "ratio", buf);
	snprintf(buf, sizeof buf, "%d", st->copies);
	if (!err)
		err = store_setting_set(db, "copies", buf);
	if (!err)
		err = store_setting_set(db, "replica-mode", replica_mode_name(st->replicas));
	return err;
}

df_err sched_repartition(scheduler *s, const gw_settings *st, const char *cause,
			 int64_t *old_version, int64_t *new_version)
{
	gateway *gw = s->gw;
	if (pthread_mutex_trylock(&s->change) != 0)
		return df_errf(DF_ECONFLICT, "another partition change is in progress");
	df_err err = DF_OK;
	char **ids = NULL, **live = NULL;
	int n = 0, n_live = 0;
	partition_map *m = NULL;
	char *json = NULL;
	deployment *d = NULL;
	http_client *hc = NULL;
	pthread_mutex_lock(&s->lock);
	bool busy = s->pending != NULL || s->active == NULL;
	int64_t old = s->active ? s->active->map->version : 0;
	pthread_mutex_unlock(&s->lock);
	if (busy) {
		err = df_errf(DF_EUNAVAIL, "the first partition is still being deployed");
		goto out;
	}
	err = device_ids(gw, &ids, &n);
	if (err)
		goto out;
	/* The live devices: every registered one not known DOWN. */
	live = calloc((size_t)n + 1, sizeof *live);
	if (!live) {
		err = DF_ENOMEM;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		dev_info info;
		if (health_get(gw->health, ids[i], &info) == DF_OK &&
		    info.state != DEV_DOWN)
			live[n_live++] = ids[i];
	}
	if (n_live == 0) {
		err = df_errf(DF_EUNAVAIL, "no live worker to partition over");
		goto out;
	}
	gw_settings next = gw->settings;
	next.method = st->method;
	next.ratio = st->ratio;
	next.copies = st->copies;
	next.replicas = st->replicas;
	err = create_version(s, &next, live, n_live, &m, &json);
	if (err)
		goto out;
	int64_t version = m->version;
	err = deployment_create(gw, &next, m, json, &d);
	m = NULL;
	json = NULL;
	if (err) {
		store_partition_retire(gw->db, version);
		goto out;
	}
	http_client_options ho = {
		.cluster_token = gw->cluster_token,
		.connect_timeout_ms = (long)config_int(gw->cfg, "connect-timeout-ms"),
		.stage_timeout_ms = gw->control_timeout_ms,
		.abort = &gw->stopping,
	};
	err = http_client_create(&ho, &hc);
	if (err) {
		store_partition_retire(gw->db, version);
		goto out;
	}
	if (!push_version(s, d, hc, gw->control_timeout_ms, true, old)) {
		store_partition_retire(gw->db, version);
		err = df_errf(DF_EUNAVAIL, "no worker took partition version %" PRId64,
			      version);
		goto out;
	}
	d = NULL; /* now the active deployment */
	/* Only sched_repartition() writes the settings after start-up (under
	 * s->change and s->lock); others read them with sched_settings(). */
	pthread_mutex_lock(&s->lock);
	gw->settings = next;
	pthread_mutex_unlock(&s->lock);
	if (save_settings(gw->db, &next))
		log_error("saving settings: %s", df_err_msg());
	char detail[256];
	snprintf(detail, sizeof detail,
		 "version %" PRId64 " -> %" PRId64 ": %s, ratio %g, copies %d, %s, %d devices",
		 old, version, partition_method_name(next.method), next.ratio,
		 next.copies, replica_mode_name(next.replicas), n_live);
	store_event ev = {.kind = "partition", .cause = (char *)cause,
			  .detail = detail};
	store_event_append(gw->db, &ev, NULL);
	log_info("repartitioned: %s", detail);
	*old_version = old;
	*new_version = version;
out:
	http_client_destroy(hc);
	deployment_free(d);
	partition_destroy(m);
	free(json);
	free(live);
	free_ids(ids, n);
	pthread_mutex_unlock(&s->change);
	return err;
}

