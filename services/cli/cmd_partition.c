/*
 * cmd_partition.c - `dicefleet partition MODEL_DIR --devices N --method M
 * ...`: builds a partition map, prints per-device load, optionally writes
 * the map's JSON (the form the gateway stores and pushes to workers).
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "fmnist.h"
#include "model.h"
#include "partition.h"
#include "robustness.h"

static const config_opt part_opts[] = {
	{"devices", NULL, CONFIG_INT, "4", 1, PARTITION_MAX_DEVICES,
	 "number of devices"},
	{"method", NULL, CONFIG_STRING, "robustdice", 0, -1,
	 "sequential, random, layerwise, full or robustdice"},
	{"ratio", NULL, CONFIG_DOUBLE, "0.25", 0, 1,
	 "fraction of each stage's neurons that get replicas"},
	{"copies", NULL, CONFIG_INT, "2", 1, PARTITION_MAX_COPIES,
	 "holders per replicated neuron (2 = one replica)"},
	{"score", NULL, CONFIG_STRING, "l1", 0, -1,
	 "neuron importance for robustdice: l1, act or var"},
	{"seed", NULL, CONFIG_INT, "0", 0, 1e15, "seed for random"},
	{"calib-images", NULL, CONFIG_INT, "256", 1, 60000,
	 "training images used for --score act"},
	{"data-dir", "DICEFLEET_DATA_DIR", CONFIG_STRING, NULL, 0, -1,
	 "Fashion-MNIST directory (default /usr/share/datasets/fashion-mnist)"},
	{"out", NULL, CONFIG_STRING, NULL, 0, -1, "write the map's JSON here"},
	{"json", NULL, CONFIG_BOOL, "false", 0, -1,
	 "print one JSON summary line instead of the table"},
	{"skip-verify", NULL, CONFIG_BOOL, "false", 0, -1,
	 "do not check model.onnx against model.json's sha256"},
	{"help", NULL, CONFIG_BOOL, "false", 0, -1, "show this help"},
};

static void part_usage(const config *c, FILE *f)
{
	fprintf(f,
		"usage: dicefleet partition MODEL_DIR --devices N --method M "
		"[options]\n"
		"\n"
		"Splits every stage of the model by neurons across N devices and\n"
		"prints each device's primary and replica neurons, MACs (primary\n"
		"work, computed on every request) and weight bytes (everything it\n"
		"holds), and the replication overhead: weight bytes held by all\n"
		"devices over those of the distributed stages, minus one. The\n"
		"logits stage runs on the gateway and is not counted.\n"
		"\n"
		"options:\n");
	config_print_help(c, f);
}

static df_err act_scores(const model *m, const config *c, impute_stats **st)
{
	fmnist *train = NULL;
	size_t n = (size_t)config_int(c, "calib-images");
	df_err err = fmnist_load(config_str(c, "data-dir"), FMNIST_TRAIN, n, &train);
	if (!err)
		err = robust_calibrate(m->g, m->plan, &m->dir->input, train,
				       train->count, ENGINE_DNNL, 0, st);
	fmnist_destroy(train);
	return err;
}

static df_err build_map(const model *m, const config *c, partition_map **out)
{
	partition_params pp;
	partition_params_default(&pp);
	df_err err = partition_method_parse(config_str(c, "method"), &pp.method);
	if (!err)
		err = partition_score_parse(config_str(c, "score"), &pp.score);
	if (err)
		return err;
	pp.n_devices = (int)config_int(c, "devices");
	pp.ratio = config_double(c, "ratio");
	pp.copies = (int)config_int(c, "copies");
	pp.seed = (uint64_t)config_int(c, "seed");
	impute_stats *st = NULL;
	const float **scores = NULL;
	if (pp.score != PARTITION_SCORE_L1) {
		err = act_scores(m, c, &st);
		scores = calloc((size_t)m->plan->n_stages + 1, sizeof *scores);
		if (!err && !scores)
			err = DF_ENOMEM;
		for (int s = 0; !err && s < m->plan->n_stages; s++)
			scores[s] = impute_stats_score(st, s, (int)pp.score);
		pp.scores = scores;
	}
	if (!err)
		err = partition_create(m->g, m->plan, &pp, out);
	if (!err)
		err = ((*out)->model = strdup(m->dir->name)) ? DF_OK : DF_ENOMEM;
	free(scores);
	impute_stats_destroy(st);
	return err;
}

static df_err write_map(const partition_map *map, const char *path)
{
	char *js = NULL;
	df_err err = partition_to_json(map, &js);
	if (err)
		return err;
	FILE *f = fopen(path, "w");
	if (!f) {
		free(js);
		return df_errf(DF_EIO, "cannot write %s", path);
	}
	int bad = fputs(js, f) < 0 || fputc('\n', f) < 0;
	bad |= fclose(f) != 0;
	free(js);
	return bad ? df_errf(DF_EIO, "writing %s failed", path) : DF_OK;
}

static void print_report(const model *m, const partition_map *map,
			 const partition_load *loads, const partition_load *whole,
			 bool as_json)
{
	int64_t held = 0, max_macs = 0, sum_macs = 0;
	for (int d = 0; d < map->n_devices; d++) {
		held += loads[d].weight_bytes;
		sum_macs += loads[d].macs;
		if (loads[d].macs > max_macs)
			max_macs = loads[d].macs;
	}
	double overhead = whole->weight_bytes
		? (double)held / (double)whole->weight_bytes - 1 : 0;
	double imbalance = sum_macs
		? (double)max_macs * map->n_devices / (double)sum_macs : 1;
	int dist = 0, gw = 0;
	for (int s = 0; s < map->n_stages; s++) {
		if (m->plan->stages[s].kind != STAGE_NEURON)
			continue;
		if (map->stages[s].on_gateway)
			gw++;
		else
			dist++;
	}
	if (as_json) {
		json_t *devs = json_array();
		for (int d = 0; d < map->n_devices; d++)
			json_array_append_new(devs, json_pack(
				"{s:s, s:I, s:I, s:I, s:I}", "id", map->devices[d],
				"primary_neurons", (json_int_t)loads[d].primary_neurons,
				"replica_neurons", (json_int_t)loads[d].replica_neurons,
				"macs", (json_int_t)loads[d].macs,
				"weight_bytes", (json_int_t)loads[d].weight_bytes));
		json_t *o = json_pack(
			"{s:s, s:s, s:f, s:i, s:s, s:i, s:i, s:I, s:I, s:f, s:f, s:o}",
			"model", m->dir->name, "method", partition_method_name(map->method),
			"ratio", map->ratio, "copies", map->copies, "score",
			partition_score_name(map->score), "distributed_stages", dist,
			"gateway_stages", gw, "unpartitioned_macs",
			(json_int_t)whole->macs, "unpartitioned_weight_bytes",
			(json_int_t)whole->weight_bytes, "memory_overhead", overhead,
			"macs_imbalance", imbalance, "devices", devs);
		char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
		if (s)
			puts(s);
		free(s);
		json_decref(o);
		return;
	}
	printf("model %s: %d distributed stages, %d on the gateway; %d devices; "
	       "method %s, ratio %.3g, copies %d, score %s\n",
	       m->dir->name, dist, gw, map->n_devices,
	       partition_method_name(map->method), map->ratio, map->copies,
	       partition_score_name(map->score));
	printf("%-10s %10s %10s %14s %14s\n", "device", "primary", "replica",
	       "MACs", "weight bytes");
	for (int d = 0; d < map->n_devices; d++)
		printf("%-10s %10lld %10lld %14lld %14lld\n", map->devices[d],
		       (long long)loads[d].primary_neurons,
		       (long long)loads[d].replica_neurons,
		       (long long)loads[d].macs, (long long)loads[d].weight_bytes);
	printf("%-10s %10lld %10s %14lld %14lld\n", "unsplit",
	       (long long)whole->primary_neurons, "-", (long long)whole->macs,
	       (long long)whole->weight_bytes);
	printf("replication overhead: %+.1f%% weight bytes; MACs imbalance "
	       "(max/mean): %.3f\n", overhead * 100, imbalance);
}

int cmd_partition_main(int argc, char **argv)
{
	config *c = NULL;
	int rc = cli_parse("partition", part_opts,
			   sizeof part_opts / sizeof part_opts[0], part_usage,
			   argc, argv, &c);
	if (rc >= 0)
		return rc;
	model *m = NULL;
	partition_map *map = NULL;
	partition_load *loads = NULL;
	partition_load whole;
	rc = CLI_FAIL;
	if (config_positional_count(c) != 1) {
		fprintf(stderr, "dicefleet partition: expected one MODEL_DIR (see --help)\n");
		rc = CLI_USAGE;
		goto out;
	}
	if (model_load(config_positional(c, 0), NULL, config_bool(c, "skip-verify"),
		       &m)) {
		cli_fail("partition", config_positional(c, 0));
		goto out;
	}
	df_err err = build_map(m, c, &map);
	if (err) {
		cli_fail("partition", "building the map");
		rc = err == DF_EINVAL ? CLI_USAGE : CLI_FAIL;
		goto out;
	}
	loads = calloc((size_t)map->n_devices, sizeof *loads);
	if (!loads || partition_loads(map, m->plan, loads, &whole)) {
		cli_fail("partition", "loads");
		goto out;
	}
	if (config_str(c, "out") && write_map(map, config_str(c, "out"))) {
		cli_fail("partition", "--out");
		goto out;
	}
	print_report(m, map, loads, &whole, config_bool(c, "json"));
	rc = CLI_OK;
out:
	free(loads);
	partition_destroy(map);
	model_destroy(m);
	config_destroy(c);
	return rc;
}
