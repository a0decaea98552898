/*
 * main.c - dicefleet-worker: flags and environment, signals, and the
 * lifecycle (worker, then HTTP server; on SIGTERM/SIGINT the server first,
 * so in-flight calls finish, then the worker).
 *
 * The first log line at info says where it listens ("listening on
 * 127.0.0.1:40123"); --port-file writes the bound port (useful with
 * --port 0) once the server accepts connections.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "runtime.h"
#include "worker.h"

#ifndef DICEFLEET_VERSION
#define DICEFLEET_VERSION "0"
#endif

static const config_opt opts[] = {
	{"port", "DICEFLEET_WORKER_PORT", CONFIG_INT, "9001", 0, 65535,
	 "TCP port to listen on (0 = any free port; see --port-file)"},
	{"bind", "DICEFLEET_WORKER_BIND", CONFIG_STRING, "0.0.0.0", 1, 0,
	 "numeric IPv4/IPv6 address to listen on"},
	{"id", "DICEFLEET_WORKER_ID", CONFIG_STRING, NULL, 1, 0,
	 "device id of this worker, as in partition maps (required)"},
	{"models", "DICEFLEET_MODELS", CONFIG_STRING, "./models", 1, 0,
	 "directory holding models/<name>/"},
	{"threads", "DICEFLEET_WORKER_THREADS", CONFIG_INT, "0", 0, 1024,
	 "oneDNN/OpenMP threads per stage computation (0 = online cores)"},
	{"max-body", "DICEFLEET_WORKER_MAX_BODY", CONFIG_INT, "67108864", 1024,
	 4294967296.0, "largest request body in bytes (413 above)"},
	{"http-threads", "DICEFLEET_WORKER_HTTP_THREADS", CONFIG_INT, "0", 0, 256,
	 "HTTP threads (0 = one per connection)"},
	{"max-connections", "DICEFLEET_WORKER_MAX_CONNECTIONS", CONFIG_INT, "128", 1,
	 65536, "concurrent HTTP connections"},
	{"timeout", "DICEFLEET_WORKER_TIMEOUT", CONFIG_INT, "60", 1, 86400,
	 "idle HTTP connection timeout in seconds"},
	{"port-file", "DICEFLEET_WORKER_PORT_FILE", CONFIG_STRING, NULL, 1, 0,
	 "write the bound port to this file once listening"},
	{"warmup", "DICEFLEET_WORKER_WARMUP", CONFIG_BOOL, "true", 1, 0,
	 "build the primaries' engines while preparing a version"},
	{"log-level", "DICEFLEET_LOG_LEVEL", CONFIG_STRING, "info", 1, 0,
	 "debug, info, warn, error or off"},
	{"enable-fault-injection", "DICEFLEET_WORKER_FAULT_INJECTION", CONFIG_BOOL,
	 "false", 1, 0, "allow POST /v1/fault (tests only)"},
	{"fault-delay-ms", "DICEFLEET_WORKER_FAULT_DELAY_MS", CONFIG_INT, "0", 0,
	 600000, "delay every stage call (tests only)"},
	{"fault-fail-rate", "DICEFLEET_WORKER_FAULT_FAIL_RATE", CONFIG_DOUBLE, "0", 0,
	 1, "fraction of stage calls failed (tests only)"},
	{"fault-fail-mode", "DICEFLEET_WORKER_FAULT_FAIL_MODE", CONFIG_STRING,
	 "status", 1, 0, "how failed calls fail: status (500) or drop (tests only)"},
	{"fault-seed", "DICEFLEET_WORKER_FAULT_SEED", CONFIG_INT, "1", 0,
	 9007199254740992.0, "seed of the fault dice (tests only)"},
	{"help", NULL, CONFIG_BOOL, "false", 1, 0, "print this help and exit"},
};

static void usage(const config *c, FILE *f)
{
	fprintf(f,
		"usage: dicefleet-worker --id ID [options]\n"
		"\n"
		"Holds this device's neurons of a partitioned model and computes stage\n"
		"calls for the dicefleet gateway. Endpoints: GET /healthz, POST\n"
		"/v1/partitions/{version}/prepare|commit, DELETE /v1/partitions/{version},\n"
		"POST /v1/stage (see openapi/worker.yaml). When DICEFLEET_CLUSTER_TOKEN is\n"
		"set, every endpoint but /healthz requires 'Authorization: Bearer TOKEN'.\n"
		"\n"
		"options (each also from the environment variable shown):\n");
	config_print_help(c, f);
}

/* Writes the port to path atomically (temp file, then rename). */
static int write_port_file(const char *path, int port)
{
	size_t n = strlen(path) + 8;
	char *tmp = malloc(n);
	if (!tmp)
		return -1;
	snprintf(tmp, n, "%s.tmp", path);
	FILE *f = fopen(tmp, "w");
	int rc = -1;
	if (f) {
		bool ok = fprintf(f, "%d\n", port) > 0;
		ok = fclose(f) == 0 && ok;
		if (ok && rename(tmp, path) == 0)
			rc = 0;
		else
			unlink(tmp);
	}
	free(tmp);
	return rc;
}

int main(int argc, char **argv)
{
	int rc = 1;
	config *c = NULL;
	worker *w = NULL;
	http_server *srv = NULL;
	runtime_omp_passive(argv); /* see runtime.h */
	log_set_component("worker");

	df_err err = config_create(opts, sizeof opts / sizeof opts[0], &c);
	if (!err)
		err = config_load_env(c);
	if (!err)
		err = config_parse_args(c, argc, argv, 1);
	if (err) {
		fprintf(stderr, "dicefleet-worker: %s\n",
			df_err_msg()[0] ? df_err_msg() : df_err_str(err));
		if (c)
			usage(c, stderr);
		rc = 2;
		goto out;
	}
	if (config_bool(c, "help")) {
		usage(c, stdout);
		rc = 0;
		goto out;
	}
	if (config_positional_count(c) > 0) {
		fprintf(stderr, "dicefleet-worker: unexpected argument '%s'\n",
			config_positional(c, 0));
		rc = 2;
		goto out;
	}
	const char *id = config_str(c, "id");
	if (!id || !*id) {
		fprintf(stderr, "dicefleet-worker: --id is required (the device id)\n");
		rc = 2;
		goto out;
	}
	log_level level;
	if (log_level_parse(config_str(c, "log-level"), &level) != DF_OK) {
		fprintf(stderr, "dicefleet-worker: --log-level: '%s' is not debug, info, warn, error or off\n",
			config_str(c, "log-level"));
		rc = 2;
		goto out;
	}
	log_set_level(level);
	const char *mode = config_str(c, "fault-fail-mode");
	if (strcmp(mode, "status") != 0 && strcmp(mode, "drop") != 0) {
		fprintf(stderr, "dicefleet-worker: --fault-fail-mode: '%s' is not status or drop\n",
			mode);
		rc = 2;
		goto out;
	}

	int threads = (int)config_int(c, "threads");
	if (threads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		threads = n > 0 ? (int)n : 1;
	}
	const char *token = getenv("DICEFLEET_CLUSTER_TOKEN");
	worker_settings set = {
		.id = id,
		.models_dir = config_str(c, "models"),
		.threads = threads,
		.token = token && *token ? token : NULL,
		.fault_runtime = config_bool(c, "enable-fault-injection"),
		.fault = {.delay_ms = config_int(c, "fault-delay-ms"),
			  .fail_rate = config_double(c, "fault-fail-rate"),
			  .drop = strcmp(mode, "drop") == 0},
		.fault_seed = (uint64_t)config_int(c, "fault-seed"),
		.warmup = config_bool(c, "warmup"),
	};

	/* SIGINT/SIGTERM are taken by sigwait() below: block them before
	 * any thread starts so that every thread inherits the mask. */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	err = worker_create(&set, &w);
	if (err) {
		log_error("cannot start: %s", df_err_msg()[0] ? df_err_msg() : df_err_str(err));
		goto out;
	}
	size_t n_routes = 0;
	const http_route *routes = worker_routes(&n_routes);
	http_server_config hc = {
		.bind = config_str(c, "bind"),
		.port = (int)config_int(c, "port"),
		.max_body = (size_t)config_int(c, "max-body"),
		.threads = (int)config_int(c, "http-threads"),
		.max_connections = (unsigned)config_int(c, "max-connections"),
		.timeout_s = (unsigned)config_int(c, "timeout"),
	};
	err = http_server_create(&hc, routes, n_routes, w, &srv);
	if (err) {
		log_error("cannot start: %s", df_err_msg()[0] ? df_err_msg() : df_err_str(err));
		goto out;
	}
	int port = http_server_port(srv);
	log_info("dicefleet-worker %s (device %s) listening on %s:%d", DICEFLEET_VERSION,
		 id, hc.bind, port);
	log_info("models %s, %d compute thread(s), max body %zu bytes, cluster token %s%s",
		 set.models_dir, threads, hc.max_body, set.token ? "required" : "not set",
		 set.fault_runtime || set.fault.delay_ms || set.fault.fail_rate > 0
			 ? ", FAULT INJECTION ON"
			 : "");
	const char *port_file = config_str(c, "port-file");
	if (port_file && write_port_file(port_file, port) != 0) {
		log_error("cannot write --port-file %s", port_file);
		goto out;
	}

	int sig = 0;
	sigwait(&sigs, &sig);
	log_info("signal %d: shutting down", sig);
	rc = 0;
out:
	http_server_destroy(srv);
	worker_destroy(w);
	config_destroy(c);
	if (srv)
		log_info("stopped");
	return rc;
}
