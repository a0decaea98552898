/*
 * cmd_eval.c - `dicefleet eval`: top-1 accuracy of an unpartitioned model on
 * its data set's test split, run on one engine in this process.
 *
 * The model directory is loaded and its ONNX file checked against the
 * sha256 in model.json before import. Every image goes through exactly the
 * preprocessing a PNG sent to the gateway gets (image_fill_tensor()), so the
 * number measured here is the accuracy the service can deliver. stdout gets
 * one JSON line and nothing else; progress goes to stderr.
 *
 * Images are independent, so --threads N runs N workers, each with its own
 * single-threaded engine (engines are not thread-safe) on every N-th
 * image. For small inputs this beats one engine splitting each tiny layer
 * over N OpenMP threads by far, and it does not collapse when the machine
 * is busy. The count of correct answers does not depend on N.
 */
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "config.h"
#include "engine.h"
#include "fmnist.h"
#include "graph.h"
#include "image.h"
#include "model_dir.h"
#include "eval_robust.h"
#include "model.h"
#include "partition.h"
#include "scores.h"
#include "tensor.h"

int cmd_eval_main(int argc, char **argv);

static const config_opt eval_opts[] = {
	{"dataset", NULL, CONFIG_STRING, "fashion-mnist", 0, 0,
	 "data set to evaluate on (fashion-mnist)"},
	{"data-dir", "DICEFLEET_DATA_DIR", CONFIG_STRING, FMNIST_DEFAULT_DIR, 0,
	 0, "directory holding the data set's IDX files"},
	{"split", NULL, CONFIG_STRING, "test", 0, 0, "test or train"},
	{"limit", NULL, CONFIG_INT, "0", 0, 100000000,
	 "evaluate the first N images only; 0 = all"},
	{"engine", "DICEFLEET_ENGINE", CONFIG_STRING, "dnnl", 0, 0,
	 "engine: dnnl or ref"},
	{"threads", NULL, CONFIG_INT, "0", 0, 256,
	 "images evaluated in parallel, one single-threaded engine each; "
	 "0 = OpenMP's default (OMP_NUM_THREADS or the cores)"},
	{"devices", NULL, CONFIG_INT, "0", 0, PARTITION_MAX_DEVICES,
	 "partition over N simulated devices (0 = unpartitioned)"},
	{"method", NULL, CONFIG_STRING, "robustdice", 0, 0,
	 "partitioning: sequential, random, layerwise, full, robustdice"},
	{"ratio", NULL, CONFIG_DOUBLE, "0.25", 0, 1,
	 "fraction of each stage's neurons that get replicas"},
	{"copies", NULL, CONFIG_INT, "2", 1, PARTITION_MAX_COPIES,
	 "holders per replicated neuron (2 = one replica)"},
	{"score", NULL, CONFIG_STRING, "l1", 0, 0,
	 "neuron importance for robustdice: l1, act or var"},
	{"seed", NULL, CONFIG_INT, "0", 0, 1e15,
	 "seed for random partitions and sampled failure sets"},
	{"fail", NULL, CONFIG_INT, "0", 0, PARTITION_MAX_DEVICES,
	 "failed devices: every combination of K (or --max-combos of them)"},
	{"max-combos", NULL, CONFIG_INT, "64", 1, 100000,
	 "evaluate at most this many failure sets (seeded sample)"},
	{"impute", NULL, CONFIG_STRING, "zero", 0, 0,
	 "missing neurons: zero, mean or recon"},
	{"replica-mode", NULL, CONFIG_STRING, "standby", 0, 0,
	 "standby or active"},
	{"budget", NULL, CONFIG_STRING, "flat", 0, 0,
	 "replication budget per stage: flat or sensitivity"},
	{"calib-images", NULL, CONFIG_INT, "512", 1, 60000,
	 "training images for means, recon maps and act scores"},
	{"sens-images", NULL, CONFIG_INT, "500", 1, 5000,
	 "validation images for --budget sensitivity"},
	{"help", NULL, CONFIG_BOOL, "false", 0, 0, "show this help"},
};

static void eval_usage(const config *c, FILE *f)
{
	fprintf(f,
		"usage: dicefleet eval MODEL_DIR [options]\n"
		"\n"
		"Top-1 accuracy of the model in MODEL_DIR (model.json, model.onnx,\n"
		"labels.txt; model.onnx must match model.json's sha256) on the\n"
		"test split of its data set, unpartitioned, on one engine. Each\n"
		"image is preprocessed as the gateway preprocesses an uploaded\n"
		"one (colour conversion, resize, x/255, (x-mean)/std).\n"
		"\n"
		"Progress goes to stderr (a bar on a terminal, else a line every\n"
		"10%%); stdout gets one JSON line:\n"
		"  {\"model\":...,\"dataset\":...,\"split\":...,\"images\":N,"
		"\"correct\":N,\n"
		"   \"accuracy\":x,\"expected_accuracy\":x|null,\"seconds\":s,\n"
		"   \"images_per_second\":r,\"engine\":...,\"threads\":n}\n"
		"expected_accuracy is model.json's accuracy.test (null if absent);\n"
		"seconds covers preprocessing and inference, not loading; threads\n"
		"is the number of parallel workers.\n"
		"\n"
		"With --devices N the model is partitioned over N simulated\n"
		"devices (--method, --ratio, --copies, --score) and run through\n"
		"the gateway's request path (stages, replica rounds, imputation);\n"
		"with --fail K every combination of K failed devices (at most\n"
		"--max-combos, a seeded sample beyond) is evaluated, and stdout\n"
		"gets one JSON line with accuracy_nofail, accuracy_mean,\n"
		"accuracy_min, retained (= mean / nofail), memory_overhead and\n"
		"per_combo details. Means, recon maps and act scores come from\n"
		"the first --calib-images training images; recon maps are fitted\n"
		"for every set of up to K failed devices (falls back to mean, and\n"
		"says so in recon_fallbacks, for failure patterns it has no map\n"
		"for).\n"
		"\n"
		"options:\n");
	config_print_help(c, f);
	fprintf(f,
		"\n"
		"exit status: 0 ok; 1 the model, the data set or a run failed;\n"
		"2 usage error.\n");
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}


static int print_result(const model_dir *m, const char *dataset,
			const char *split, size_t images, size_t correct,
			double seconds, engine_kind kind, int threads)
{
	json_t *j = json_object();
	char *line = NULL;
	int rc = CLI_FAIL;
	double acc = images ? (double)correct / (double)images : 0.0;
	if (!j)
		goto out;
	int bad = json_object_set_new(j, "model", json_string(m->name)) ||
		  json_object_set_new(j, "dataset", json_string(dataset)) ||
		  json_object_set_new(j, "split", json_string(split)) ||
		  json_object_set_new(j, "images", json_integer((json_int_t)images)) ||
		  json_object_set_new(j, "correct", json_integer((json_int_t)correct)) ||
		  json_object_set_new(j, "accuracy", json_real(acc)) ||
		  json_object_set_new(j, "expected_accuracy",
				      m->test_accuracy >= 0
					      ? json_real(m->test_accuracy)
					      : json_null()) ||
		  json_object_set_new(j, "seconds", json_real(seconds)) ||
		  json_object_set_new(j, "images_per_second",
				      json_real(seconds > 0 ? images / seconds
							    : 0.0)) ||
		  json_object_set_new(j, "engine",
				      json_string(engine_kind_name(kind))) ||
		  json_object_set_new(j, "threads", json_integer(threads));
	if (bad)
		goto out;
	line = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(8));
	if (!line)
		goto out;
	printf("%s\n", line);
	fflush(stdout);
	rc = CLI_OK;
out:
	if (rc)
		fprintf(stderr, "dicefleet eval: cannot format the JSON result\n");
	free(line);
	json_decref(j);
	return rc;
}

/* One worker: images first, first + stride, ... with its own engine. */
typedef struct eval_worker {
	const graph *g;
	const model_dir *m;
	const fmnist *data;
	engine_kind kind;
	size_t first, stride;
	atomic_size_t *done;   /* images finished, all workers */
	atomic_int *stop;      /* set by a worker that failed */
	size_t correct;
	df_err err;
	char msg[600];         /* df_err_msg() of the failure (thread-local) */
	pthread_t tid;
	int started;
} eval_worker;

static void *eval_worker_run(void *arg)
{
	eval_worker *w = arg;
	engine *e = NULL;
	tensor *input = NULL;
	tensor **outputs = NULL;
	size_t i = w->first;
	int64_t dims[4] = {1, model_input_channels(&w->m->input),
			   w->m->input.height, w->m->input.width};
	df_err err = engine_create(w->g, w->kind, 1, &e);
	if (err) {
		snprintf(w->msg, sizeof w->msg, "engine: %s", df_err_msg());
		goto out;
	}
	outputs = calloc((size_t)w->g->n_outputs, sizeof *outputs);
	if (!outputs || (err = tensor_create(TENSOR_F32, 4, dims, &input))) {
		err = DF_ENOMEM;
		snprintf(w->msg, sizeof w->msg, "out of memory");
		goto out;
	}
	for (; i < w->data->count && !atomic_load(w->stop); i += w->stride) {
		image img = {.width = w->data->cols,
			     .height = w->data->rows,
			     .channels = 1,
			     .pixels = (uint8_t *)fmnist_image(w->data, i)};
		const tensor *in[1] = {input};
		if ((err = image_fill_tensor(&img, &w->m->input, input)) ||
		    (err = engine_run(e, in, outputs))) {
			snprintf(w->msg, sizeof w->msg, "image %zu: %s", i,
				 df_err_msg());
			goto out;
		}
		size_t top = scores_argmax(tensor_f32(outputs[0]), outputs[0]->numel);
		w->correct += top == (size_t)fmnist_label(w->data, i);
		for (int k = 0; k < w->g->n_outputs; k++) {
			tensor_destroy(outputs[k]);
			outputs[k] = NULL;
		}
		atomic_fetch_add(w->done, 1);
	}
out:
	w->err = err;
	if (err)
		atomic_store(w->stop, 1);
	if (outputs)
		for (int k = 0; k < w->g->n_outputs; k++)
			tensor_destroy(outputs[k]);
	free(outputs);
	tensor_destroy(input);
	engine_destroy(e);
	return NULL;
}

/* Runs n_workers workers over data, reporting progress on stderr until
 * all are done. Returns the first worker error (its message printed). */
static df_err evaluate(const graph *g, const model_dir *m, const fmnist *data,
		       engine_kind kind, int n_workers, size_t *correct)
{
	df_err err = DF_OK;
	atomic_size_t done = 0;
	atomic_int stop = 0;
	eval_worker *w = calloc((size_t)n_workers, sizeof *w);
	if (!w)
		return df_errf(DF_ENOMEM, "out of memory");
	for (int k = 0; k < n_workers; k++) {
		w[k] = (eval_worker){.g = g, .m = m, .data = data, .kind = kind,
				     .first = (size_t)k,
				     .stride = (size_t)n_workers,
				     .done = &done, .stop = &stop};
		if (pthread_create(&w[k].tid, NULL, eval_worker_run, &w[k]) != 0) {
			err = df_errf(DF_EINTERNAL, "cannot start worker thread %d",
				      k);
			atomic_store(&stop, 1);
			break;
		}
		w[k].started = 1;
	}
	char label[160];
	snprintf(label, sizeof label, "eval %s", m->name);
	cli_progress_state prog = {.label = label, .tty = isatty(2)};
	size_t shown = 0;
	while (!atomic_load(&stop)) {
		size_t d = atomic_load(&done);
		if (d != shown) {
			cli_progress(&prog, d, data->count);
			shown = d;
		}
		if (d == data->count)
			break;
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	*correct = 0;
	for (int k = 0; k < n_workers; k++) {
		if (!w[k].started)
			continue;
		pthread_join(w[k].tid, NULL);
		*correct += w[k].correct;
		if (w[k].err && !err) {
			err = w[k].err;
			df_errf(err, "%s", w[k].msg);
		}
	}
	free(w);
	return err;
}

int cmd_eval_main(int argc, char **argv)
{
	int rc = CLI_FAIL;
	config *c = NULL;
	model *mod = NULL;
	fmnist *data = NULL;
	engine_kind kind;
	fmnist_split split;

	int prc = cli_parse("eval", eval_opts,
			    sizeof eval_opts / sizeof eval_opts[0], eval_usage,
			    argc, argv, &c);
	if (prc >= 0)
		return prc;
	if (config_positional_count(c) != 1) {
		fprintf(stderr,
			"dicefleet eval: expected one MODEL_DIR, got %zu "
			"positional arguments (see --help)\n",
			config_positional_count(c));
		rc = CLI_USAGE;
		goto out;
	}
	const char *dataset = config_str(c, "dataset");
	if (strcmp(dataset, "fashion-mnist") != 0) {
		fprintf(stderr,
			"dicefleet eval: --dataset %s: only fashion-mnist is "
			"supported\n",
			dataset);
		rc = CLI_USAGE;
		goto out;
	}
	if (engine_kind_parse(config_str(c, "engine"), &kind)) {
		cli_fail("eval", "--engine");
		rc = CLI_USAGE;
		goto out;
	}
	if (fmnist_split_parse(config_str(c, "split"), &split)) {
		cli_fail("eval", "--split");
		rc = CLI_USAGE;
		goto out;
	}
	int workers = (int)config_int(c, "threads");
	if (workers <= 0)
		workers = omp_get_max_threads();
	size_t limit = (size_t)config_int(c, "limit");

	const char *dir = config_positional(c, 0);
	if (model_load(dir, NULL, false, &mod)) {
		cli_fail("eval", "model");
		goto out;
	}
	const model_dir *m = mod->dir;
	const graph *g = mod->g;
	if (m->dataset && strcmp(m->dataset, dataset) != 0)
		fprintf(stderr,
			"dicefleet eval: warning: %s was trained on %s, "
			"evaluating on %s\n",
			m->name, m->dataset, dataset);
	if (fmnist_load(config_str(c, "data-dir"), split, limit, &data)) {
		cli_fail("eval", "data set");
		goto out;
	}
	if (config_int(c, "devices") > 0) {
		rc = eval_robust(c, mod, data);
		goto out;
	}
	if (config_is_set(c, "fail")) {
		fprintf(stderr, "dicefleet eval: --fail needs --devices\n");
		rc = CLI_USAGE;
		goto out;
	}
	if ((size_t)workers > data->count)
		workers = (int)data->count;
	size_t correct = 0;
	double t0 = now_s();
	if (evaluate(g, m, data, kind, workers, &correct)) {
		cli_fail("eval", "run");
		goto out;
	}
	double secs = now_s() - t0;
	rc = print_result(m, dataset, split == FMNIST_TRAIN ? "train" : "test",
			  data->count, correct, secs, kind, workers);
out:
	fmnist_destroy(data);
	model_destroy(mod);
	config_destroy(c);
	return rc;
}
