/*
 * health.c - the device registry and its health: which workers exist,
 * where they are, whether requests should call them, and how long a stage
 * call to each may take.
 *
 * Each device runs the state machine of health_fsm.h (UNKNOWN, UP,
 * SUSPECT, DOWN with hysteresis) fed by three sources: the probe loop
 * (GET /healthz every --health-interval-ms), partition pushes (prepare /
 * commit; a failure forces DOWN) and request-path stage calls
 * (health_report_call, scheduler.c's observer). DOWN devices are skipped by
 * requests (health_down_mask) and come back only through probes: the
 * probe loop also pushes the active partition to a worker that answers
 * /healthz without holding it (restarted, or down while the version was
 * deployed). SUSPECT devices are still called. The deadline of each stage
 * call comes from the device's per-stage latency estimate
 * (health_call_timeout: clamp(--stage-timeout-multiplier x estimate,
 * --stage-timeout-floor-ms, --stage-timeout-ms)).
 *
 * Persistence: every transition is written to the devices table together
 * with a "health" event naming the cause (one transaction); probes also
 * refresh last_seen, failures and the latency estimate (the probe round
 * trip EWMA). Request-path reports touch SQLite only on transitions, so
 * the hot path does not write per call. Writes are queued under h->lock in
 * the order the transitions happened and drained in that order under
 * h->persist, so the events table and the devices row never disagree with
 * the order of the machine's steps, even with concurrent requests.
 *
 * Locks: h->lock guards the entries and the write queue; it is never held
 * across network or SQLite calls. h->persist serializes the SQLite writes
 * of health (taken before h->lock, never the other way round).
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gateway.h"
#include "log.h"

/* One device: its public view and its state machine. */
typedef struct entry {
	dev_info info;            /* state, failures, since, latencies mirror
				     fsm (sync_info) */
	health_fsm fsm;
	int64_t last_seen_ms;     /* wall clock of the last answer; 0 = never */
} entry;

/* One queued SQLite write (a transition, or a probe's refresh). */
typedef struct pending_write {
	struct pending_write *next;
	char id[STORE_ID_MAX];
	dev_state from, to;
	int64_t last_seen_ms;
	int64_t failures;
	double latency_ms;
	char cause[256];
} pending_write;

struct health {
	gateway *gw;
	pthread_mutex_t lock;
	pthread_mutex_t persist;  /* serializes SQLite writes (see above) */
	pthread_cond_t wake;
	entry *devs;              /* sorted by id */
	size_t n, cap;
	pending_write *queue, *queue_tail; /* under lock, in step order */
	health_fsm_params params;
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

/* The machines run on the monotonic clock (the stage-call durations fed to
 * them are monotonic too): a wall-clock step must not stretch or shrink a
 * state's age. Wall time is only for what is shown and stored. */
static void flush(health *h);

static int64_t mono_ms(void)
{
	return http_client_now_ms();
}

/* Index of id, or -1; under lock. */
static int find(const health *h, const char *id)
{
	size_t lo = 0, hi = h->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = strcmp(h->devs[mid].info.id, id);
		if (c == 0)
			return (int)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* e's view for a caller: since_ms converted to the wall clock now. */
static dev_info info_out(const entry *e)
{
	dev_info d = e->info;
	d.since_ms = wall_ms() - (mono_ms() - d.since_mono_ms);
	return d;
}

/* Copies the machine's view into e->info; under lock. */
static void sync_info(entry *e)
{
	e->info.state = e->fsm.state;
	e->info.failures = e->fsm.failures;
	e->info.since_mono_ms = e->fsm.since_ms;
	e->info.latency_ms = e->fsm.probe_ms;
	e->info.call_latency_ms = e->fsm.call_ms;
}

/* Inserts a new UNKNOWN device (id, url, probe latency estimate) in id
 * order; under lock. */
static df_err insert(health *h, const char *id, const char *url,
		     double latency_ms, int64_t last_seen_ms)
{
	if (h->n == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 8;
		entry *p = realloc(h->devs, cap * sizeof *p);
		if (!p)
			return DF_ENOMEM;
		h->devs = p;
		h->cap = cap;
	}
	size_t at = 0;
	while (at < h->n && strcmp(h->devs[at].info.id, id) < 0)
		at++;
	memmove(&h->devs[at + 1], &h->devs[at], (h->n - at) * sizeof *h->devs);
	entry *e = &h->devs[at];
	memset(e, 0, sizeof *e);
	snprintf(e->info.id, sizeof e->info.id, "%s", id);
	snprintf(e->info.url, sizeof e->info.url, "%s", url);
	health_fsm_init(&e->fsm, DEV_UNKNOWN, mono_ms());
	e->fsm.probe_ms = latency_ms > 0 ? latency_ms : 0;
	e->last_seen_ms = last_seen_ms;
	sync_info(e);
	h->n++;
	return DF_OK;
}

df_err health_create(gateway *gw, health **out)
{
	health *h = calloc(1, sizeof *h);
	if (!h)
		return DF_ENOMEM;
	h->gw = gw;
	h->params = (health_fsm_params){
		.down_after = (int)config_int(gw->cfg, "down-after"),
		.up_after = (int)config_int(gw->cfg, "up-after"),
		.alpha = HEALTH_FSM_DEFAULT_ALPHA,
		.multiplier = config_double(gw->cfg, "stage-timeout-multiplier"),
		.floor_ms = (long)config_int(gw->cfg, "stage-timeout-floor-ms"),
		.cap_ms = gw->stage_timeout_ms,
	};
	h->repartition_after_ms = (long)config_int(gw->cfg, "repartition-after-ms");
	h->interval_ms = (long)config_int(gw->cfg, "health-interval-ms");
	h->timeout_ms = (long)config_int(gw->cfg, "health-timeout-ms");
	pthread_mutex_init(&h->lock, NULL);
	pthread_mutex_init(&h->persist, NULL);
	pthread_cond_init(&h->wake, NULL);
	if (h->params.floor_ms >= h->params.cap_ms)
		log_info("--stage-timeout-floor-ms %ld >= --stage-timeout-ms %ld: every stage call gets %ld ms",
			 h->params.floor_ms, h->params.cap_ms, h->params.cap_ms);
	store_device *list = NULL;
	size_t n = 0;
	df_err err = store_device_list(gw->db, &list, &n);
	for (size_t i = 0; !err && i < n; i++) {
		err = insert(h, list[i].id, list[i].url,
			     list[i].latency_ms_estimate, list[i].last_seen_ms);
		if (!err)
			log_info("restored device %s at %s (was %s)", list[i].id,
				 list[i].url, list[i].state);
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
	while (h->queue) {
		pending_write *w = h->queue;
		h->queue = w->next;
		free(w);
	}
	pthread_cond_destroy(&h->wake);
	pthread_mutex_destroy(&h->persist);
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
	if (i >= 0)
		snprintf(h->devs[i].info.url, sizeof h->devs[i].info.url, "%s",
			 clean);
	else
		err = insert(h, id, clean, d.latency_ms_estimate,
			     d.last_seen_ms);
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
	/* Writes queued for the device before its removal go first (none
	 * can be queued now: mark() finds no entry). */
	flush(h);
	pthread_mutex_lock(&h->persist);
	err = store_device_delete(h->gw->db, id);
	pthread_mutex_unlock(&h->persist);
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
		for (size_t i = 0; i < h->n; i++)
			copy[i] = info_out(&h->devs[i]);
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
		*out = info_out(&h->devs[i]);
	pthread_mutex_unlock(&h->lock);
	return i >= 0 ? DF_OK : df_errf(DF_ENOENT, "no device %s", id);
}

/* Writes the queued health rows and events in queue order. */
static void flush(health *h)
{
	pthread_mutex_lock(&h->persist);
	pthread_mutex_lock(&h->lock);
	pending_write *w = h->queue;
	h->queue = h->queue_tail = NULL;
	pthread_mutex_unlock(&h->lock);
	while (w) {
		pending_write *next = w->next;
		bool changed = w->from != w->to;
		store_health sh = {.state = dev_state_name(w->to),
				   .last_seen_ms = w->last_seen_ms,
				   .consecutive_failures = w->failures,
				   .latency_ms_estimate = w->latency_ms};
		store_event ev = {.device_id = w->id, .kind = "health",
				  .from_state = (char *)dev_state_name(w->from),
				  .to_state = (char *)dev_state_name(w->to),
				  .cause = w->cause};
		df_err err = store_device_set_health(
			h->gw->db, w->id, &sh, changed ? &ev : NULL, NULL);
		/* A device removed meanwhile has no row left to update. */
		if (err && err != DF_ENOENT)
			log_warn("device %s: storing health: %s", w->id, df_err_msg());
		free(w);
		w = next;
	}
	pthread_mutex_unlock(&h->persist);
}

/* Feeds one observation to device id's machine; queues and writes the
 * change to SQLite on a transition, or always when persist. */
static void mark(health *h, const char *id, health_fsm_input in,
		 int stage_index, double ms, int64_t version, const char *cause,
		 bool persist)
{
	const int64_t now = mono_ms(), wall = wall_ms();
	pthread_mutex_lock(&h->lock);
	int i = find(h, id);
	if (i < 0) {
		pthread_mutex_unlock(&h->lock);
		return;
	}
	entry *e = &h->devs[i];
	dev_state from = e->fsm.state;
	dev_state to = health_fsm_step(&e->fsm, &h->params, in, stage_index, ms,
				       now);
	if (in == HEALTH_FSM_PROBE_OK || in == HEALTH_FSM_CALL_OK) {
		e->last_seen_ms = wall;
		if (version > 0)
			e->info.version = version;
	}
	sync_info(e);
	bool changed = from != to;
	pending_write *w = NULL;
	if (changed || persist) {
		w = calloc(1, sizeof *w);
		if (w) {
			snprintf(w->id, sizeof w->id, "%s", id);
			w->from = from;
			w->to = to;
			w->last_seen_ms = e->last_seen_ms;
			w->failures = e->fsm.failures;
			w->latency_ms = e->fsm.probe_ms;
			if (from == DEV_DOWN && to == DEV_UP)
				snprintf(w->cause, sizeof w->cause,
					 "%s (%" PRId64 " in a row)",
					 cause ? cause : "", e->fsm.probe_oks);
			else
				snprintf(w->cause, sizeof w->cause, "%s",
					 cause ? cause : "");
			if (h->queue_tail)
				h->queue_tail->next = w;
			else
				h->queue = w;
			h->queue_tail = w;
		}
	}
	pthread_mutex_unlock(&h->lock);
	if (changed)
		log_info("device %s: %s -> %s (%s)", id, dev_state_name(from),
			 dev_state_name(to), cause ? cause : "");
	if (!w) {
		if (changed)
			log_warn("device %s: out of memory; the transition to %s is not stored",
				 id, dev_state_name(to));
		return;
	}
	flush(h);
}

void health_mark(health *h, const char *id, bool ok, bool force_down,
		 int64_t version, double latency_ms, const char *cause)
{
	health_fsm_input in = ok ? HEALTH_FSM_PROBE_OK
			      : force_down ? HEALTH_FSM_PREPARE_FAIL
					   : HEALTH_FSM_PROBE_FAIL;
	mark(h, id, in, -1, latency_ms, version, cause, true);
}

uint64_t health_down_mask(health *h, const partition_map *m)
{
	uint64_t mask = 0;
	pthread_mutex_lock(&h->lock);
	for (int d = 0; d < m->n_devices && d < 64; d++) {
		int i = find(h, m->devices[d]);
		if (i < 0 || h->devs[i].fsm.state == DEV_DOWN)
			mask |= 1ULL << d;
	}
	pthread_mutex_unlock(&h->lock);
	return mask;
}

void health_report_call(health *h, const partition_map *m, int device,
			int stage_index, df_err status, double ms)
{
	if (device < 0 || device >= m->n_devices)
		return;
	char cause[160];
	health_fsm_input in;
	if (status == DF_OK) {
		in = HEALTH_FSM_CALL_OK;
		snprintf(cause, sizeof cause, "stage %d call answered in %.0f ms",
			 stage_index, ms);
	} else if (status == DF_ETIMEDOUT) {
		in = HEALTH_FSM_CALL_TIMEOUT;
		snprintf(cause, sizeof cause, "stage %d call late: no answer in %.0f ms",
			 stage_index, ms);
	} else {
		in = HEALTH_FSM_CALL_FAIL;
		snprintf(cause, sizeof cause, "stage %d call failed: %s", stage_index,
			 df_err_str(status));
	}
	mark(h, m->devices[device], in, stage_index, ms, 0, cause, false);
}

long health_call_timeout(health *h, const partition_map *m, int device,
			 int stage_index)
{
	long t = h->params.cap_ms;
	if (device < 0 || device >= m->n_devices)
		return t;
	pthread_mutex_lock(&h->lock);
	int i = find(h, m->devices[device]);
	if (i >= 0)
		t = health_fsm_deadline(&h->devs[i].fsm, &h->params,
					stage_index);
	pthread_mutex_unlock(&h->lock);
	return t;
}

/* ---- probing ------------------------------------------------------------ */

static void probe_one(health *h, http_client *hc, const dev_info *d)
{
	char url[STORE_URL_MAX + 16];
	snprintf(url, sizeof url, "%s/healthz", d->url);
	long status = 0;
	json_t *resp = NULL;
	double t0 = http_client_now_msf();
	df_err err = http_client_json(hc, "GET", url, NULL, h->timeout_ms, &status,
				      &resp);
	double ms = http_client_now_msf() - t0;
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
		mark(h, d->id, HEALTH_FSM_PROBE_FAIL, -1, 0, 0, cause, true);
		return;
	}
	int64_t active = sched_active_version(h->gw->sched);
	if (active > 0 && version != active) {
		err = sched_push_device(h->gw->sched, hc, d->id, d->url);
		if (err == DF_ENOENT) {
			/* Not part of the active map: reachable, nothing to hold. */
			mark(h, d->id, HEALTH_FSM_PROBE_OK, -1, ms, version,
			     "probe answered", true);
			return;
		}
		if (err) {
			snprintf(cause, sizeof cause, "push of version %" PRId64 ": %s",
				 active, df_err_msg());
			mark(h, d->id, HEALTH_FSM_PREPARE_FAIL, -1, 0, 0, cause,
			     true);
			return;
		}
		version = active;
	}
	mark(h, d->id, HEALTH_FSM_PROBE_OK, -1, ms, version, "probe answered",
	     true);
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
	const int64_t now = mono_ms();
	char cause[160] = "";
	for (size_t i = 0; i < n && !cause[0]; i++) {
		const dev_info *d = &devs[i];
		bool in_map = sched_active_has(gw->sched, d->id);
		bool settled = now - d->since_mono_ms >= h->repartition_after_ms;
		if (d->state == DEV_DOWN && in_map && settled)
			snprintf(cause, sizeof cause,
				 "self-heal: %.64s down for %lld ms", d->id,
				 (long long)(now - d->since_mono_ms));
		else if (d->state == DEV_UP && !in_map && settled)
			snprintf(cause, sizeof cause,
				 "self-heal: %.64s back and up for %lld ms", d->id,
				 (long long)(now - d->since_mono_ms));
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
		const struct timespec until = sched_wait_until(h->interval_ms);
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
