/*
 * health.c - the device registry and its health: which workers exist,
 * where they are, and whether requests should call them.
 *
 * States (this issue): UNKNOWN (registered, not contacted yet), UP, DOWN.
 * A successful contact (probe, partition push, stage call) makes a device
 * UP; --down-after failed contacts in a row (or one failed push) make it
 * DOWN. DOWN devices are skipped by requests (health_down_mask) and come
 * back only through the probe loop, which also pushes the active partition
 * to a worker that answers /healthz without holding it (restarted, or down
 * while the version was deployed). The full UP/SUSPECT/DOWN machine with
 * hysteresis and self-healing (DESIGN §6) is meant to replace mark() and
 * the probe round behind the same functions.
 *
 * Persistence: every transition is written to the devices table together
 * with a "health" event (one transaction); probes also refresh last_seen,
 * failures and the latency estimate. Request-path reports touch SQLite only
 * on transitions, so the hot path does not write per call.
 *
 * Locks: h->lock guards the entries; it is never held across network or
 * SQLite calls.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway.h"
#include "log.h"

static const char *const state_names[] = {"UNKNOWN", "UP", "DOWN"};
_Static_assert(sizeof state_names / sizeof state_names[0] == DEV_STATE_COUNT,
	       "one name per device state");

const char *dev_state_name(dev_state s)
{
	return (unsigned)s < DEV_STATE_COUNT ? state_names[s] : "?";
}

struct health {
	gateway *gw;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	dev_info *devs;           /* sorted by id */
	size_t n, cap;
	int down_after;
	long repartition_after_ms; /* self-healing delay; 0 = off */
	long interval_ms;
	long timeout_ms;
	bool stop;
	bool started;
	pthread_t thread;
};

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Index of id, or -1; under lock. */
static int find(const health *h, const char *id)
{
	size_t lo = 0, hi = h->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(h->devs[mid].id, id);
		if (c == 0)
			return (int)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* Inserts a copy of d in id order; under lock. */
static df_err insert(health *h, const dev_info *d)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 8;
		dev_info *p = realloc(h->devs, cap * sizeof *p);
		if (!p)
			return DF_ENOMEM;
		h->devs = p;
		h->cap = cap;
	}
	size_t at = 0;
	while (at < h->n && strcmp(h->devs[at].id, d->id) < 0)
		at++;
	memmove(&h->devs[at + 1], &h->devs[at], (h->n - at) * sizeof *h->devs);
	h->devs[at] = *d;
	h->devs[at].since_ms = wall_ms();
	h->n++;
	return DF_OK;
}

df_err health_create(gateway *gw, health **out)
{
	health *h = calloc(1, sizeof *h);
	if (!h)
		return DF_ENOMEM;
	h->gw = gw;
	h->down_after = (int)config_int(gw->cfg, "down-after");
	h->repartition_after_ms = (long)config_int(gw->cfg, "repartition-after-ms");
	h->interval_ms = (long)config_int(gw->cfg, "health-interval-ms");
	h->timeout_ms = (long)config_int(gw->cfg, "health-timeout-ms");
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->wake, NULL);
	store_device *list = NULL;
	size_t n = 0;
	df_err err = store_device_list(gw->db, &list, &n);
	for (size_t i = 0; !err && i < n; i++) {
		dev_info d = {.state = DEV_UNKNOWN};
		snprintf(d.id, sizeof d.id, "%s", list[i].id);
		snprintf(d.url, sizeof d.url, "%s", list[i].url);
		d.latency_ms = list[i].latency_ms_estimate;
		err = insert(h, &d);
		if (!err)
			log_info("restored device %s at %s (was %s)", d.id, d.url,
				 list[i].state);
	}
	free(list);
	if (err) {
		health_destroy(h);
		return err;
	}
	*out = h;
	return DF_OK;
}

void health_destroy(health *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&h->lock);
	h->stop = true;
	pthread_cond_broadcast(&h->wake);
	pthread_mutex_unlock(&h->lock);
	if (h->started)
		pthread_join(h->thread, NULL);
	pthread_cond_destroy(&h->wake);
	pthread_mutex_destroy(&h->lock);
	free(h->devs);
	free(h);
}

static df_err check_id(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n >= STORE_ID_MAX)
		return df_errf(DF_EINVAL, "device id must have 1..%d characters",
			       STORE_ID_MAX - 1);
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)id[i]) && !strchr("._-", id[i]))
			return df_errf(DF_EINVAL, "device id '%s': only letters, digits, '.', '_' and '-' are allowed",
				       id);
	return DF_OK;
}

static df_err check_url(const char *url, char *clean, size_t len)
{
	if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
		return df_errf(DF_EINVAL, "device URL '%s' must start with http:// or https://",
			       url);
	size_t n = strlen(url);
	while (n > 8 && url[n - 1] == '/')
		n--;
	if (n >= len)
		return df_errf(DF_EINVAL, "device URL longer than %zu bytes", len - 1);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)url[i] <= ' ' || url[i] == 0x7f)
			return df_errf(DF_EINVAL, "device URL '%s' contains a blank or control character",
				       url);
	memcpy(clean, url, n);
	clean[n] = '\0';
	return DF_OK;
}

df_err health_register(health *h, const char *id, const char *url)
{
	char clean[STORE_URL_MAX];
	df_err err = check_id(id);
	if (!err)
		err = check_url(url, clean, sizeof clean);
	if (err)
		return err;
	store_device d = {0};
	err = store_device_get(h->gw->db, id, &d);
	if (err == DF_ENOENT) {
		snprintf(d.id, sizeof d.id, "%s", id);
		snprintf(d.state, sizeof d.state, "%s", dev_state_name(DEV_UNKNOWN));
		err = DF_OK;
	}
	if (err)
		return err;
	snprintf(d.url, sizeof d.url, "%s", clean);
	bool created = false;
	err = store_device_upsert(h->gw->db, &d, &created);
	if (err)
		return err;
	if (created) {
		store_event ev = {.device_id = (char *)id, .kind = "admin",
				  .to_state = (char *)dev_state_name(DEV_UNKNOWN),
				  .cause = "registered", .detail = clean};
		store_event_append(h->gw->db, &ev, NULL);
	}
	pthread_mutex_lock(&h->lock);
	int i = find(h, id);
	if (i >= 0) {
		snprintf(h->devs[i].url, sizeof h->devs[i].url, "%s", clean);
	} else {
		dev_info info = {.state = DEV_UNKNOWN};
		snprintf(info.id, sizeof info.id, "%s", id);
		snprintf(info.url, sizeof info.url, "%s", clean);
		err = insert(h, &info);
	}
	pthread_mutex_unlock(&h->lock);
	if (!err)
		log_info("device %s at %s %s", id, clean,
			 created ? "registered" : "updated");
	return err;
}

df_err health_unregister(health *h, const char *id, const char *cause)
{
	df_err err = check_id(id);
	if (err)
		return err;
	pthread_mutex_lock(&h->lock);
	int i = find(h, id);
	if (i >= 0) {
		memmove(&h->devs[i], &h->devs[i + 1],
			(h->n - (size_t)i - 1) * sizeof *h->devs);
		h->n--;
	}
	pthread_mutex_unlock(&h->lock);
	err = store_device_delete(h->gw->db, id);
	if (err == DF_ENOENT && i >= 0)
		err = DF_OK;
	if (err)
		return err;
	store_event ev = {.device_id = (char *)id, .kind = "admin",
			  .to_state = "REMOVED", .cause = (char *)cause};
	store_event_append(h->gw->db, &ev, NULL);
	log_info("device %s removed (%s)", id, cause);
	return DF_OK;
}

df_err health_list(health *h, dev_info **out, size_t *n)
{
	pthread_mutex_lock(&h->lock);
	dev_info *copy = malloc((h->n + 1) * sizeof *copy);
	if (copy) {
		if (h->n)
			memcpy(copy, h->devs, h->n * sizeof *copy);
		*n = h->n;
	}
	pthread_mutex_unlock(&h->lock);
	if (!copy)
		return DF_ENOMEM;
	*out = copy;
	return DF_OK;
}

df_err health_get(health *h, const char *id, dev_info *out)
{
	pthread_mutex_lock(&h->lock);
	int i = find(h, id);
	if (i >= 0)
		*out = h->devs[i];
	pthread_mutex_unlock(&h->lock);
	return i >= 0 ? DF_OK : df_errf(DF_ENOENT, "no device %s", id);
}

/* Updates device id; writes SQLite on a transition or when persist. */
static void mark(health *h, const char *id, bool ok, bool force_down,
		 int64_t version, double latency_ms, const char *cause,
		 bool persist)
{
	pthread_mutex_lock(&h->lock);
	int i = find(h, id);
	if (i < 0) {
		pthread_mutex_unlock(&h->lock);
		return;
	}
	dev_info *d = &h->devs[i];
	dev_state from = d->state, to = from;
	if (ok) {
		d->failures = 0;
		to = DEV_UP;
		if (version > 0)
			d->version = version;
		if (latency_ms > 0)
			d->latency_ms = latency_ms;
	} else {
		d->failures++;
		if (force_down || d->failures >= h->down_after)
			to = DEV_DOWN;
	}
	d->state = to;
	if (to != from)
		d->since_ms = wall_ms();
	dev_info snap = *d;
	pthread_mutex_unlock(&h->lock);
	bool changed = from != to;
	if (!changed && !persist)
		return;
	store_health sh = {.state = dev_state_name(to),
			   .last_seen_ms = ok ? wall_ms() : 0,
			   .consecutive_failures = snap.failures,
			   .latency_ms_estimate = snap.latency_ms};
	if (!ok) {
		/* Keep the last successful contact time. */
		store_device prev;
		if (store_device_get(h->gw->db, id, &prev) == DF_OK)
			sh.last_seen_ms = prev.last_seen_ms;
	}
	store_event ev = {.device_id = (char *)id, .kind = "health",
			  .from_state = (char *)dev_state_name(from),
			  .to_state = (char *)dev_state_name(to),
			  .cause = (char *)(cause ? cause : "")};
	df_err err = store_device_set_health(h->gw->db, id, &sh,
					     changed ? &ev : NULL, NULL);
	if (err)
		log_warn("device %s: storing health: %s", id, df_err_msg());
	if (changed)
		log_info("device %s: %s -> %s (%s)", id, dev_state_name(from),
			 dev_state_name(to), cause ? cause : "");
}

void health_mark(health *h, const char *id, bool ok, bool force_down,
		 int64_t version, double latency_ms, const char *cause)
{
	mark(h, id, ok, force_down, version, latency_ms, cause, true);
}

uint64_t health_down_mask(health *h, const partition_map *m)
{
	uint64_t mask = 0;
	pthread_mutex_lock(&h->lock);
	for (int d = 0; d < m->n_devices && d < 64; d++) {
		int i = find(h, m->devices[d]);
		if (i < 0 || h->devs[i].state == DEV_DOWN)
			mask |= 1ULL << d;
	}
	pthread_mutex_unlock(&h->lock);
	return mask;
}

void health_report_call(health *h, const partition_map *m, int device,
			df_err status, double ms)
{
	if (device < 0 || device >= m->n_devices)
		return;
	char cause[160];
	if (status)
		snprintf(cause, sizeof cause, "stage call failed: %s",
			 df_err_str(status));
	mark(h, m->devices[device], status == DF_OK, false, 0,
	     status == DF_OK ? 0 : ms, status ? cause : "stage call answered",
	     false);
}

/* ---- probing ------------------------------------------------------------ */

static void probe_one(health *h, http_client *hc, const dev_info *d)
{
	char url[STORE_URL_MAX + 16];
	snprintf(url, sizeof url, "%s/healthz", d->url);
	long status = 0;
	json_t *resp = NULL;
	int64_t t0 = http_client_now_ms();
	df_err err = http_client_json(hc, "GET", url, NULL, h->timeout_ms, &status,
				      &resp);
	double ms = (double)(http_client_now_ms() - t0);
	char cause[256];
	if (!err && status != 200)
		err = df_errf(DF_EUNAVAIL, "/healthz answered HTTP %ld", status);
	int64_t version = 0;
	if (!err) {
		json_t *v = json_object_get(resp, "version");
		json_t *id = json_object_get(resp, "id");
		if (json_is_integer(v))
			version = json_integer_value(v);
		if (json_is_string(id) && strcmp(json_string_value(id), d->id) != 0)
			err = df_errf(DF_ECONFLICT, "the worker at %s says it is device %.64s",
				      d->url, json_string_value(id));
	}
	json_decref(resp);
	if (err) {
		snprintf(cause, sizeof cause, "probe: %s", df_err_msg());
		mark(h, d->id, false, false, 0, 0, cause, true);
		return;
	}
	int64_t active = sched_active_version(h->gw->sched);
	if (active > 0 && version != active) {
		err = sched_push_device(h->gw->sched, hc, d->id, d->url);
		if (err == DF_ENOENT) {
			/* Not part of the active map: reachable, nothing to hold. */
			mark(h, d->id, true, false, version, ms, "probe answered", true);
			return;
		}
		if (err) {
			snprintf(cause, sizeof cause, "push of version %" PRId64 ": %s",
				 active, df_err_msg());
			mark(h, d->id, false, true, 0, 0, cause, true);
			return;
		}
		version = active;
	}
	mark(h, d->id, true, false, version, ms, "probe answered", true);
}

void health_probe_round(health *h, http_client *hc)
{
	dev_info *devs = NULL;
	size_t n = 0;
	if (health_list(h, &devs, &n))
		return;
	for (size_t i = 0; i < n && !atomic_load(&h->gw->stopping); i++)
		probe_one(h, hc, &devs[i]);
	free(devs);
}

/*
 * Self-healing: a device of the active partition that has been DOWN for
 * repartition_after_ms, or an UP device outside it that has stayed UP that
 * long (back and stable), triggers a new partition over the live devices
 * (sched_repartition(): prepare on all while the old version serves, then
 * switch, drain, drop). Runs on the probe thread after each round; a
 * change that cannot happen now (another one running, a worker failing to
 * prepare) is retried after the next round.
 */
static void self_heal(health *h)
{
	gateway *gw = h->gw;
	if (h->repartition_after_ms <= 0 || !gw->sched ||
	    sched_active_version(gw->sched) <= 0)
		return;
	dev_info *devs = NULL;
	size_t n = 0;
	if (health_list(h, &devs, &n))
		return;
	const int64_t now = wall_ms();
	char cause[160] = "";
	for (size_t i = 0; i < n && !cause[0]; i++) {
		const dev_info *d = &devs[i];
		bool in_map = sched_active_has(gw->sched, d->id);
		bool settled = now - d->since_ms >= h->repartition_after_ms;
		if (d->state == DEV_DOWN && in_map && settled)
			snprintf(cause, sizeof cause,
				 "self-heal: %.64s down for %lld ms", d->id,
				 (long long)(now - d->since_ms));
		else if (d->state == DEV_UP && !in_map && settled)
			snprintf(cause, sizeof cause,
				 "self-heal: %.64s back and up for %lld ms", d->id,
				 (long long)(now - d->since_ms));
	}
	free(devs);
	if (!cause[0] || atomic_load(&gw->stopping))
		return;
	gw_settings st;
	sched_settings(gw->sched, &st);
	int64_t from = 0, to = 0;
	df_err err = sched_repartition(gw->sched, &st, cause, &from, &to);
	if (err)
		log_warn("%s: repartition failed, retrying after the next round: %s",
			 cause, df_err_msg());
	else
		log_info("%s: partition %lld -> %lld", cause, (long long)from,
			 (long long)to);
}

static void *probe_main(void *arg)
{
	health *h = arg;
	gateway *gw = h->gw;
	http_client *hc = NULL;
	http_client_options ho = {
		.cluster_token = gw->cluster_token,
		.connect_timeout_ms = h->timeout_ms,
		.stage_timeout_ms = gw->control_timeout_ms,
		.abort = &gw->stopping,
	};
	if (http_client_create(&ho, &hc)) {
		log_error("health: %s", df_err_msg());
		return NULL;
	}
	for (;;) {
		struct timespec until;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += h->interval_ms / 1000;
		until.tv_nsec += (h->interval_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&h->lock);
		if (!h->stop)
			pthread_cond_timedwait(&h->wake, &h->lock, &until);
		bool stop = h->stop;
		pthread_mutex_unlock(&h->lock);
		if (stop)
			break;
		health_probe_round(h, hc);
		self_heal(h);
	}
	http_client_destroy(hc);
	return NULL;
}

df_err health_start(health *h)
{
	pthread_mutex_lock(&h->lock);
	bool skip = h->started || h->stop || atomic_load(&h->gw->stopping);
	if (!skip) {
		if (pthread_create(&h->thread, NULL, probe_main, h) != 0) {
			pthread_mutex_unlock(&h->lock);
			return df_errf(DF_EINTERNAL, "cannot start the health thread");
		}
		h->started = true;
	}
	pthread_mutex_unlock(&h->lock);
	return DF_OK;
}
