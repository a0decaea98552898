/*
 * main.c - dicefleet-gateway: reads the configuration (flags and
 * DICEFLEET_* environment), opens the SQLite store, registers workers,
 * loads the model (and calibrates imputation), starts the scheduler that
 * deploys a partition to the workers, serves the HTTP API, and shuts
 * everything down on SIGINT/SIGTERM.
 *
 * Start-up order matters: signals are blocked before any thread starts so
 * that only main() receives them (sigwait); the HTTP server starts before
 * the workers are reached so /v2/health/live answers at once, while
 * /v2/health/ready says 503 until a partition is committed.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fmnist.h"
#include "gateway.h"
#include "log.h"
#include "runtime.h"
#include "robustness.h"

static const config_opt gw_opts[] = {
	{"port", "DICEFLEET_PORT", CONFIG_INT, "8080", 0, 65535,
	 "TCP port to listen on (0 = ephemeral, see --port-file)"},
	{"bind", "DICEFLEET_BIND", CONFIG_STRING, "0.0.0.0", 0, -1,
	 "numeric address to listen on"},
	{"port-file", "DICEFLEET_PORT_FILE", CONFIG_STRING, NULL, 0, -1,
	 "write the bound port to this file once listening"},
	{"db", "DICEFLEET_DB", CONFIG_STRING, "dicefleet.db", 0, -1,
	 "SQLite database (devices, health, partitions, settings)"},
	{"models", "DICEFLEET_MODELS", CONFIG_STRING, "./models", 0, -1,
	 "directory holding models/<name>/model.json"},
	{"model", "DICEFLEET_MODEL", CONFIG_STRING, "fmnist-vgg", 0, -1,
	 "model to serve"},
	{"skip-verify", "DICEFLEET_SKIP_VERIFY", CONFIG_BOOL, "false", 0, -1,
	 "do not check model.onnx against model.json's sha256"},
	{"worker", "DICEFLEET_WORKER", CONFIG_LIST, NULL, 0, -1,
	 "ID=URL of a worker, stored in the database"},
	{"method", "DICEFLEET_METHOD", CONFIG_STRING, "robustdice", 0, -1,
	 "partition method: sequential, random, layerwise, full, robustdice"},
	{"ratio", "DICEFLEET_RATIO", CONFIG_DOUBLE, "0.25", 0, 1,
	 "fraction of each stage's neurons that get replicas"},
	{"copies", "DICEFLEET_COPIES", CONFIG_INT, "2", 1, PARTITION_MAX_COPIES,
	 "holders per replicated neuron (2 = one replica)"},
	{"replica-mode", "DICEFLEET_REPLICA_MODE", CONFIG_STRING, "standby", 0,
	 -1, "standby (replicas on demand) or active (first answer wins)"},
	{"impute", "DICEFLEET_IMPUTE", CONFIG_STRING, "mean", 0, -1,
	 "fill for neurons nobody computed: zero, mean or recon"},
	{"calib-images", "DICEFLEET_CALIB_IMAGES", CONFIG_INT, "256", 1, 60000,
	 "training images used to calibrate mean/recon imputation"},
	{"data-dir", "DICEFLEET_DATA_DIR", CONFIG_STRING, FMNIST_DEFAULT_DIR, 0,
	 -1, "Fashion-MNIST directory (calibration)"},
	{"stage-timeout-ms", "DICEFLEET_STAGE_TIMEOUT_MS", CONFIG_INT, "2000", 1,
	 600000,
	 "longest deadline of one stage call to a worker (the cap; used until "
	 "the device has a latency estimate for the stage); every deadline is "
	 "also cut to what is left of --request-timeout-ms"},
	{"stage-timeout-floor-ms", "DICEFLEET_STAGE_TIMEOUT_FLOOR_MS",
	 CONFIG_INT, "500", 1, 600000,
	 "shortest deadline of one stage call (at most --stage-timeout-ms)"},
	{"stage-timeout-multiplier", "DICEFLEET_STAGE_TIMEOUT_MULTIPLIER",
	 CONFIG_DOUBLE, "4", 1, 1000,
	 "stage call deadline = this x the device's latency estimate for the "
	 "stage (EWMA of its answered calls), within the floor and the cap"},
	{"request-timeout-ms", "DICEFLEET_REQUEST_TIMEOUT_MS", CONFIG_INT,
	 "10000", 1, 3600000,
	 "deadline of one inference (waiting for a runner included)"},
	{"connect-timeout-ms", "DICEFLEET_CONNECT_TIMEOUT_MS", CONFIG_INT,
	 "1000", 1, 600000, "TCP connect deadline to a worker"},
	{"control-timeout-ms", "DICEFLEET_CONTROL_TIMEOUT_MS", CONFIG_INT,
	 "60000", 1, 3600000,
	 "deadline of a partition prepare/commit/drop call"},
	{"startup-wait-ms", "DICEFLEET_STARTUP_WAIT_MS", CONFIG_INT, "30000", 0,
	 3600000,
	 "how long a new partition waits for workers that are not up yet"},
	{"health-interval-ms", "DICEFLEET_HEALTH_INTERVAL_MS", CONFIG_INT,
	 "2000", 50, 3600000, "interval between health probes of the workers"},
	{"health-timeout-ms", "DICEFLEET_HEALTH_TIMEOUT_MS", CONFIG_INT, "1000",
	 1, 600000, "deadline of one health probe"},
	{"repartition-after-ms", "DICEFLEET_REPARTITION_AFTER_MS", CONFIG_INT,
	 "10000", 0, 86400000,
	 "repartition over the live devices once a device of the partition "
	 "has been DOWN this long, or a device outside it UP this long; 0 = off"},
	{"down-after", "DICEFLEET_DOWN_AFTER", CONFIG_INT, "2", 1, 1000,
	 "failed contacts (probes, stage calls) in a row after which a device "
	 "is DOWN; one failure makes an UP device SUSPECT (still called)"},
	{"up-after", "DICEFLEET_UP_AFTER", CONFIG_INT, "2", 1, 1000,
	 "answered health probes in a row that bring a DOWN device back UP"},
	{"min-coverage", "DICEFLEET_MIN_COVERAGE", CONFIG_DOUBLE, "0.5", 0, 1,
	 "answer 503 when less than this fraction of neurons was computed"},
	{"max-body", "DICEFLEET_MAX_BODY", CONFIG_INT, "8388608", 1024,
	 1073741824, "largest request body in bytes (413 above)"},
	{"max-pixels", "DICEFLEET_MAX_PIXELS", CONFIG_INT, "16777216", 1,
	 1073741824, "largest image in pixels, width x height (413 above)"},
	{"threads", "DICEFLEET_THREADS", CONFIG_INT, "1", 0, 4096,
	 "engine threads for stages run on the gateway (0 = library default)"},
	{"http-threads", "DICEFLEET_HTTP_THREADS", CONFIG_INT, "8", 1, 1024,
	 "inferences run concurrently (one runner and HTTP client each)"},
	{"max-connections", "DICEFLEET_MAX_CONNECTIONS", CONFIG_INT, "256", 1,
	 65535, "concurrent client connections (one thread each)"},
	{"engine", "DICEFLEET_ENGINE", CONFIG_STRING, "dnnl", 0, -1,
	 "engine for stages run on the gateway: dnnl or ref"},
	{"wire-dtype", "DICEFLEET_WIRE_DTYPE", CONFIG_STRING, "f32", 0, -1,
	 "tensor encoding to workers: f32 (exact) or f16 (half the bytes)"},
	{"cluster-token", "DICEFLEET_CLUSTER_TOKEN", CONFIG_STRING, NULL, 0, -1,
	 "bearer token for worker calls (prefer the environment variable)"},
	{"log-level", "DICEFLEET_LOG_LEVEL", CONFIG_STRING, "info", 0, -1,
	 "debug, info, warn, error or off"},
	{"help", NULL, CONFIG_BOOL, "false", 0, -1, "show this help"},
};

static void usage(const config *c, FILE *f)
{
	fprintf(f,
		"usage: dicefleet-gateway [options]\n"
		"\n"
		"Serves one CNN split by neurons across dicefleet-worker services:\n"
		"POST /v1/classify (image/png, image/jpeg, multipart/form-data\n"
		"field \"image\"), KServe v2 /v2/health/{live,ready},\n"
		"/v2/models/{name}[/infer], GET /metrics; admin API under /admin\n"
		"(Authorization: Bearer $DICEFLEET_ADMIN_TOKEN; 403 when unset).\n"
		"\n"
		"Every option can also be set with the environment variable shown.\n"
		"\n"
		"options:\n");
	config_print_help(c, f);
}

/* The text a setting is stored as: the option's value in canonical form,
 * so "0.250" and "0.25" given at two starts compare equal. */
static void setting_text(const gateway *gw, const char *key, char *buf,
			 size_t len)
{
	if (strcmp(key, "ratio") == 0)
		snprintf(buf, len, "%.17g", config_double(gw->cfg, key));
	else if (strcmp(key, "copies") == 0)
		snprintf(buf, len, "%lld", (long long)config_int(gw->cfg, key));
	else
		snprintf(buf, len, "%s", config_str(gw->cfg, key));
}

/*
 * Settings: the newest intent wins. The database holds the settings in
 * force (the admin API changes them there) and, under "flag:<key>", the
 * value a flag or environment variable had at the last start. A flag
 * whose value differs from that record (new, or edited in the deployment)
 * wins; a flag unchanged since the last start yields to the stored value,
 * so `PUT /admin/replication` survives restarts of a deployment that
 * always passes --ratio (run-local.sh, docker-compose). Without a flag the
 * stored value, else the default, applies. The result is saved back.
 */
static df_err settings_resolve(gateway *gw)
{
	static const char *const keys[] = {"method", "ratio", "copies",
					   "replica-mode", "impute"};
	df_err err = DF_OK;
	for (size_t i = 0; i < sizeof keys / sizeof keys[0] && !err; i++) {
		char boot_key[32], given[64];
		snprintf(boot_key, sizeof boot_key, "flag:%s", keys[i]);
		bool set = config_is_set(gw->cfg, keys[i]);
		char *boot = NULL;
		if (set) {
			setting_text(gw, keys[i], given, sizeof given);
			err = store_setting_get(gw->db, boot_key, &boot);
			if (err == DF_ENOENT)
				err = DF_OK;
			bool changed = !boot || strcmp(boot, given) != 0;
			free(boot);
			if (!err)
				err = store_setting_set(gw->db, boot_key, given);
			if (err || changed) {
				if (!err)
					log_info("setting %s=%s from the command line or environment",
						 keys[i], given);
				continue;
			}
		} else {
			err = store_setting_delete(gw->db, boot_key);
			if (err == DF_ENOENT)
				err = DF_OK;
			if (err)
				return err;
		}
		char *v = NULL;
		df_err e = store_setting_get(gw->db, keys[i], &v);
		if (e == DF_ENOENT)
			continue;
		if (e)
			return e;
		err = config_set(gw->cfg, keys[i], v);
		if (err)
			log_warn("ignoring stored setting %s='%s': %s", keys[i], v,
				 df_err_msg());
		else if (set && strcmp(v, given) != 0)
			log_info("restored setting %s=%s (the %s given is unchanged since the last start; the stored value was set later)",
				 keys[i], v, given);
		else
			log_info("restored setting %s=%s", keys[i], v);
		err = DF_OK;
		free(v);
	}
	if (err)
		return err;
	gw_settings *s = &gw->settings;
	err = partition_method_parse(config_str(gw->cfg, "method"), &s->method);
	if (!err)
		err = replica_mode_parse(config_str(gw->cfg, "replica-mode"),
					 &s->replicas);
	if (!err)
		err = impute_mode_parse(config_str(gw->cfg, "impute"), &s->impute);
	if (err)
		return err;
	s->ratio = config_double(gw->cfg, "ratio");
	s->copies = (int)config_int(gw->cfg, "copies");
	char buf[64];
	err = store_setting_set(gw->db, "method", partition_method_name(s->method));
	snprintf(buf, sizeof buf, "%.17g", s->ratio);
	if (!err)
		err = store_setting_set(gw->db, "ratio", buf);
	snprintf(buf, sizeof buf, "%d", s->copies);
	if (!err)
		err = store_setting_set(gw->db, "copies", buf);
	if (!err)
		err = store_setting_set(gw->db, "replica-mode",
					replica_mode_name(s->replicas));
	if (!err)
		err = store_setting_set(gw->db, "impute", impute_mode_name(s->impute));
	return err;
}

/* --worker ID=URL entries: registered (and stored) before anything else. */
static df_err register_workers(gateway *gw)
{
	size_t n = 0;
	const char *const *list = config_list(gw->cfg, "worker", &n);
	for (size_t i = 0; i < n; i++) {
		const char *eq = strchr(list[i], '=');
		if (!eq || eq == list[i] || !eq[1])
			return df_errf(DF_EINVAL, "--worker '%s': expected ID=URL",
				       list[i]);
		char id[STORE_ID_MAX];
		size_t len = (size_t)(eq - list[i]);
		if (len >= sizeof id)
			return df_errf(DF_EINVAL, "--worker '%s': id longer than %d bytes",
				       list[i], STORE_ID_MAX - 1);
		memcpy(id, list[i], len);
		id[len] = '\0';
		df_err err = health_register(gw->health, id, eq + 1);
		if (err)
			return err;
	}
	return DF_OK;
}

/* mean/recon need calibration statistics from the training split. */
static df_err calibrate(gateway *gw)
{
	if (gw->settings.impute == IMPUTE_ZERO)
		return DF_OK;
	fmnist *train = NULL;
	size_t n = (size_t)config_int(gw->cfg, "calib-images");
	df_err err = fmnist_load(config_str(gw->cfg, "data-dir"), FMNIST_TRAIN, n,
				 &train);
	if (err) {
		log_warn("impute %s needs the Fashion-MNIST training split (%s); using zero instead",
			 impute_mode_name(gw->settings.impute), df_err_msg());
		gw->settings.impute = IMPUTE_ZERO;
		return DF_OK;
	}
	if (n > train->count)
		n = train->count;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	err = robust_calibrate(gw->mdl->g, gw->mdl->plan, &gw->mdl->dir->input,
			       train, n, gw->engine, gw->engine_threads, &gw->stats);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	fmnist_destroy(train);
	if (err)
		return err;
	log_info("calibrated %s imputation on %zu training images in %.1f s",
		 impute_mode_name(gw->settings.impute), n,
		 (double)(t1.tv_sec - t0.tv_sec) +
			 (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	return DF_OK;
}

static df_err write_port_file(const char *path, int port)
{
	char tmp[4096];
	int len = snprintf(tmp, sizeof tmp, "%s.tmp", path);
	if (len < 0 || (size_t)len >= sizeof tmp)
		return df_errf(DF_EINVAL, "--port-file path too long");
	FILE *f = fopen(tmp, "w");
	if (!f)
		return df_errf(DF_EIO, "%s: %s", tmp, strerror(errno));
	int ok = fprintf(f, "%d\n", port) > 0;
	ok &= fclose(f) == 0;
	if (!ok || rename(tmp, path) != 0)
		return df_errf(DF_EIO, "%s: %s", path, strerror(errno));
	return DF_OK;
}

static df_err read_options(gateway *gw)
{
	config *c = gw->cfg;
	gw->stage_timeout_ms = (long)config_int(c, "stage-timeout-ms");
	gw->request_timeout_ms = (long)config_int(c, "request-timeout-ms");
	gw->control_timeout_ms = (long)config_int(c, "control-timeout-ms");
	gw->min_coverage = config_double(c, "min-coverage");
	gw->max_body = (size_t)config_int(c, "max-body");
	gw->max_pixels = (size_t)config_int(c, "max-pixels");
	gw->engine_threads = (int)config_int(c, "threads");
	gw->pool_size = (int)config_int(c, "http-threads");
	gw->models_dir = config_str(c, "models");
	const char *tok = config_str(c, "cluster-token");
	gw->cluster_token = tok && *tok ? tok : NULL;
	const char *admin = getenv("DICEFLEET_ADMIN_TOKEN");
	gw->admin_token = admin && *admin ? admin : NULL;
	df_err err = engine_kind_parse(config_str(c, "engine"), &gw->engine);
	if (err)
		return err;
	const char *wd = config_str(c, "wire-dtype");
	if (strcmp(wd, "f32") != 0 && strcmp(wd, "f16") != 0)
		return df_errf(DF_EINVAL, "--wire-dtype: '%s' is not f32 or f16", wd);
	log_level lvl;
	err = log_level_parse(config_str(c, "log-level"), &lvl);
	if (err)
		return df_errf(DF_EINVAL, "--log-level: '%s' is not debug, info, warn, error or off",
			       config_str(c, "log-level"));
	log_set_level(lvl);
	return DF_OK;
}

int main(int argc, char **argv)
{
	gateway gw = {0};
	http_server *srv = NULL;
	int rc = 1;
	df_err err;
	runtime_omp_passive(argv); /* see runtime.h */
	log_set_component("gateway");
	if (config_create(gw_opts, sizeof gw_opts / sizeof gw_opts[0], &gw.cfg)) {
		fprintf(stderr, "dicefleet-gateway: %s\n", df_err_msg());
		return 2;
	}
	if (config_load_env(gw.cfg) ||
	    config_parse_args(gw.cfg, argc, argv, 1)) {
		fprintf(stderr, "dicefleet-gateway: %s\n", df_err_msg());
		config_destroy(gw.cfg);
		return 2;
	}
	if (config_bool(gw.cfg, "help")) {
		usage(gw.cfg, stdout);
		config_destroy(gw.cfg);
		return 0;
	}
	if (config_positional_count(gw.cfg) > 0) {
		fprintf(stderr, "dicefleet-gateway: unexpected argument '%s' (see --help)\n",
			config_positional(gw.cfg, 0));
		config_destroy(gw.cfg);
		return 2;
	}
	if (read_options(&gw)) {
		fprintf(stderr, "dicefleet-gateway: %s\n", df_err_msg());
		config_destroy(gw.cfg);
		return 2;
	}

	/* Only main() takes SIGINT/SIGTERM; threads inherit this mask. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	atomic_init(&gw.next_request_id,
		    ((uint64_t)now.tv_sec << 20) ^ (uint64_t)now.tv_nsec);
	atomic_init(&gw.stopping, false);

	err = http_client_global_init();
	if (!err)
		err = store_open(config_str(gw.cfg, "db"), &gw.db);
	if (err) {
		log_error("database %s: %s", config_str(gw.cfg, "db"), df_err_msg());
		goto out;
	}
	err = metrics_create(&gw.metrics);
	if (!err)
		err = health_create(&gw, &gw.health);
	if (!err)
		err = register_workers(&gw);
	if (!err)
		err = settings_resolve(&gw);
	if (err) {
		log_error("start-up: %s", df_err_msg());
		goto out;
	}
	err = model_load(gw.models_dir, config_str(gw.cfg, "model"),
			 config_bool(gw.cfg, "skip-verify"), &gw.mdl);
	if (err) {
		log_error("model %s in %s: %s", config_str(gw.cfg, "model"),
			  gw.models_dir, df_err_msg());
		goto out;
	}
	gw.model_name = gw.mdl->dir->name;
	log_info("model %s: %d stages, %zu labels", gw.model_name,
		 gw.mdl->plan->n_stages, gw.mdl->dir->n_labels);
	err = calibrate(&gw);
	if (err) {
		log_error("calibration: %s", df_err_msg());
		goto out;
	}
	err = sched_create(&gw, &gw.sched);
	if (!err)
		err = sched_start(gw.sched);
	if (err) {
		log_error("partition: %s", df_err_msg());
		goto out;
	}
	size_t n_routes = 0;
	const http_route *routes = routes_table(&n_routes);
	http_server_config hc = {
		.bind = config_str(gw.cfg, "bind"),
		.port = (int)config_int(gw.cfg, "port"),
		.max_body = gw.max_body,
		.threads = 0,
		.max_connections = (unsigned)config_int(gw.cfg, "max-connections"),
		.name = "gateway",
	};
	err = http_server_create(&hc, routes, n_routes, &gw, &srv);
	if (err) {
		log_error("HTTP server: %s", df_err_msg());
		goto out;
	}
	int port = http_server_port(srv);
	log_info("listening on %s:%d", hc.bind, port);
	const char *pf = config_str(gw.cfg, "port-file");
	if (pf && write_port_file(pf, port)) {
		log_error("%s", df_err_msg());
		goto out;
	}
	int sig = 0;
	sigwait(&sigs, &sig);
	log_info("signal %d: shutting down", sig);
	rc = 0;
out:
	atomic_store(&gw.stopping, true);
	http_server_destroy(srv);
	sched_stop(gw.sched);
	health_destroy(gw.health);
	sched_destroy(gw.sched);
	metrics_destroy(gw.metrics);
	impute_stats_destroy(gw.stats);
	model_destroy(gw.mdl);
	store_close(gw.db);
	config_destroy(gw.cfg);
	return rc;
}
