/*
 * cmd_run.c - `dicefleet run`: imports an ONNX model, binds .npy files to
 * its inputs, runs it on one engine and writes every graph output to
 * DIR/<output name>.npy. With --repeat N it also times N runs after one
 * warm-up and prints one JSON line of latency statistics on stdout (the
 * only thing this command prints on stdout; progress goes to stderr).
 * The engine is made with engine_create_release(): the graph's weights are
 * freed as the engine copies them, so they are never held twice.
 *
 * Input binding: `--input NAME=FILE` binds graph input NAME; a bare
 * `--input FILE` binds the first graph input not bound by name, in graph
 * order. A FILE whose path contains '=' must therefore be given as
 * NAME=FILE.
 */
#include <errno.h>
#include <jansson.h>
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "config.h"
#include "engine.h"
#include "graph.h"
#include "npy.h"
#include "onnx_import.h"
#include "tensor.h"

int cmd_run_main(int argc, char **argv);

static const config_opt run_opts[] = {
	{"input", NULL, CONFIG_LIST, NULL, 0, 0,
	 "[NAME=]FILE.npy bound to a graph input (by name, or in order)"},
	{"output-dir", NULL, CONFIG_STRING, ".", 0, 0,
	 "directory for <output name>.npy files (created if missing)"},
	{"engine", "DICEFLEET_ENGINE", CONFIG_STRING, "dnnl", 0, 0,
	 "engine: dnnl or ref"},
	{"threads", NULL, CONFIG_INT, "0", 0, 4096,
	 "threads for the engine; 0 = library default"},
	{"repeat", NULL, CONFIG_INT, "0", 0, 1000000,
	 "time N runs after one warm-up; print JSON stats on stdout"},
	{"help", NULL, CONFIG_BOOL, "false", 0, 0, "show this help"},
};

static void run_usage(const config *c, FILE *f)
{
	fprintf(f,
		"usage: dicefleet run MODEL.onnx --input [NAME=]FILE.npy ... "
		"[options]\n"
		"\n"
		"Runs MODEL.onnx once on one machine and writes each graph output\n"
		"to DIR/<output name>.npy (characters outside [A-Za-z0-9._-]\n"
		"replaced by '_').\n"
		"\n"
		"Inputs are .npy files (little-endian f32, C order) whose shape must\n"
		"equal the model input's. --input NAME=FILE binds the graph input\n"
		"NAME; a bare --input FILE binds the next graph input not bound by\n"
		"name, in the model's order (a path containing '=' needs NAME=).\n"
		"\n"
		"With --repeat N the model runs once as warm-up (its outputs are\n"
		"the ones written), then N timed times, and one JSON line goes to\n"
		"stdout:\n"
		"  {\"model\":...,\"engine\":...,\"threads\":...,\"repeat\":N,"
		"\"min_ms\":...,\n"
		"   \"median_ms\":...,\"p90_ms\":...,\"mean_ms\":...}\n"
		"threads reports the count in effect (1 for ref; for dnnl the\n"
		"OpenMP default when --threads is 0).\n"
		"\n"
		"options:\n");
	config_print_help(c, f);
	fprintf(f,
		"\n"
		"exit status: 0 ok; 1 the model, an input file or the run failed\n"
		"(including a wrong input shape or dtype); 2 usage error (bad flag,\n"
		"unknown engine, unknown or missing input name, too many inputs).\n");
}

static void fail(const char *what)
{
	cli_fail("run", what);
}

/* Binds the --input specs to graph inputs. On success inputs[i] holds the
 * new tensor for g->inputs[i]. Returns CLI_OK, CLI_USAGE or CLI_FAIL (after
 * printing why); on failure the caller frees whatever inputs[] holds. */
static int bind_inputs(const graph *g, const char *const *specs,
		       size_t n_specs, tensor **inputs)
{
	int rc = CLI_OK;
	const char **path = calloc(g->n_inputs > 0 ? (size_t)g->n_inputs : 1,
				   sizeof *path);
	if (!path) {
		fprintf(stderr, "dicefleet run: out of memory\n");
		return CLI_FAIL;
	}
	/* Named bindings first, so that bare files fill the rest in order. */
	for (size_t s = 0; s < n_specs; s++) {
		const char *eq = strchr(specs[s], '=');
		if (!eq)
			continue;
		size_t len = (size_t)(eq - specs[s]);
		int found = -1;
		for (int i = 0; i < g->n_inputs; i++) {
			const char *name = g->values[g->inputs[i]].name;
			if (name && strlen(name) == len &&
			    strncmp(name, specs[s], len) == 0)
				found = i;
		}
		if (found < 0) {
			fprintf(stderr,
				"dicefleet run: --input %s: the model has no "
				"input named '%.*s' (inputs:",
				specs[s], (int)len, specs[s]);
			for (int i = 0; i < g->n_inputs; i++)
				fprintf(stderr, " '%s'",
					g->values[g->inputs[i]].name);
			fprintf(stderr, ")\n");
			rc = CLI_USAGE;
			goto out;
		}
		if (path[found]) {
			fprintf(stderr,
				"dicefleet run: input '%s' is bound twice\n",
				g->values[g->inputs[found]].name);
			rc = CLI_USAGE;
			goto out;
		}
		path[found] = eq + 1;
	}
	int next = 0;
	for (size_t s = 0; s < n_specs; s++) {
		if (strchr(specs[s], '='))
			continue;
		while (next < g->n_inputs && path[next])
			next++;
		if (next >= g->n_inputs) {
			fprintf(stderr,
				"dicefleet run: --input %s: more input files "
				"than the model has inputs (%d)\n",
				specs[s], g->n_inputs);
			rc = CLI_USAGE;
			goto out;
		}
		path[next] = specs[s];
	}
	for (int i = 0; i < g->n_inputs; i++) {
		if (!path[i]) {
			fprintf(stderr,
				"dicefleet run: input '%s' is not given "
				"(--input %s=FILE.npy)\n",
				g->values[g->inputs[i]].name,
				g->values[g->inputs[i]].name);
			rc = CLI_USAGE;
			goto out;
		}
	}
	for (int i = 0; i < g->n_inputs; i++) {
		if (npy_read_file(path[i], &inputs[i])) {
			char what[512];
			snprintf(what, sizeof what, "input '%s'",
				 g->values[g->inputs[i]].name);
			fail(what);
			rc = CLI_FAIL;
			goto out;
		}
	}
out:
	free(path);
	return rc;
}

/* Creates dir and its missing parents (like mkdir -p). */
static df_err make_dirs(const char *dir)
{
	df_err err = DF_OK;
	if (!dir[0])
		return df_errf(DF_EINVAL, "the output directory name is empty");
	char *p = strdup(dir);
	if (!p)
		return df_errf(DF_ENOMEM, "out of memory");
	for (char *s = p + 1;; s++) {
		bool end = *s == '\0';
		if (*s == '/' || end) {
			*s = '\0';
			if (mkdir(p, 0777) != 0 && errno != EEXIST) {
				err = df_errf(DF_EIO, "cannot create directory %s: %s",
					      p, strerror(errno));
				goto out;
			}
			if (end)
				break;
			*s = '/';
		}
	}
	struct stat st;
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		err = df_errf(DF_EIO, "%s is not a directory", dir);
out:
	free(p);
	return err;
}

/* New file name "<sanitized name>.npy" for output i. */
static char *output_file_name(const char *name, int i)
{
	char fallback[32];
	if (!name || !name[0]) {
		snprintf(fallback, sizeof fallback, "output_%d", i);
		name = fallback;
	}
	size_t len = strlen(name);
	char *f = malloc(len + 5);
	if (!f)
		return NULL;
	for (size_t k = 0; k < len; k++) {
		char c = name[k];
		bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' ||
			  c == '-';
		f[k] = ok ? c : '_';
	}
	memcpy(f + len, ".npy", 5);
	return f;
}

static int write_outputs(const graph *g, const char *dir, tensor **outputs)
{
	int rc = CLI_OK;
	int n = g->n_outputs;
	char **files = calloc(n > 0 ? (size_t)n : 1, sizeof *files);
	char *path = NULL;
	if (!files)
		goto oom;
	for (int i = 0; i < n; i++) {
		files[i] = output_file_name(g->values[g->outputs[i]].name, i);
		if (!files[i])
			goto oom;
		for (int j = 0; j < i; j++) {
			if (strcmp(files[i], files[j]) == 0) {
				fprintf(stderr,
					"dicefleet run: outputs '%s' and '%s' "
					"would both be written to %s\n",
					g->values[g->outputs[j]].name,
					g->values[g->outputs[i]].name, files[i]);
				rc = CLI_FAIL;
				goto out;
			}
		}
	}
	if (make_dirs(dir)) {
		fail("--output-dir");
		rc = CLI_FAIL;
		goto out;
	}
	for (int i = 0; i < n; i++) {
		size_t len = strlen(dir) + strlen(files[i]) + 2;
		free(path);
		path = malloc(len);
		if (!path)
			goto oom;
		snprintf(path, len, "%s/%s", dir, files[i]);
		if (npy_write_file(path, outputs[i])) {
			fail("writing output");
			rc = CLI_FAIL;
			goto out;
		}
		char shp[160];
		tensor_shape_str(outputs[i]->ndim, outputs[i]->dims, shp,
				 sizeof shp);
		fprintf(stderr, "dicefleet run: output '%s' %s -> %s\n",
			g->values[g->outputs[i]].name, shp, path);
	}
	goto out;
oom:
	fprintf(stderr, "dicefleet run: out of memory\n");
	rc = CLI_FAIL;
out:
	free(path);
	if (files)
		for (int i = 0; i < n; i++)
			free(files[i]);
	free(files);
	return rc;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void free_outputs(const graph *g, tensor **outputs)
{
	for (int i = 0; i < g->n_outputs; i++) {
		tensor_destroy(outputs[i]);
		outputs[i] = NULL;
	}
}

/* Times `repeat` runs (outputs discarded) and prints the JSON line. */
static int time_runs(engine *e, const graph *g, const tensor *const *inputs,
		     tensor **scratch_out, const char *model, engine_kind kind,
		     int threads, int repeat)
{
	int rc = CLI_OK;
	double *ms = malloc((size_t)repeat * sizeof *ms);
	json_t *j = NULL;
	char *line = NULL;
	if (!ms) {
		fprintf(stderr, "dicefleet run: out of memory\n");
		return CLI_FAIL;
	}
	double sum = 0.0;
	for (int r = 0; r < repeat; r++) {
		double t0 = now_ms();
		df_err err = engine_run(e, inputs, scratch_out);
		double t1 = now_ms();
		if (err) {
			fail("running the model");
			rc = CLI_FAIL;
			goto out;
		}
		free_outputs(g, scratch_out);
		ms[r] = t1 - t0;
		sum += ms[r];
	}
	qsort(ms, (size_t)repeat, sizeof *ms, cmp_double);
	double median = repeat % 2 ? ms[repeat / 2]
				   : (ms[repeat / 2 - 1] + ms[repeat / 2]) / 2;
	/* Nearest-rank 90th percentile. */
	int rank = (repeat * 9 + 9) / 10; /* ceil(0.9 * repeat) */
	double p90 = ms[rank - 1];
	int eff_threads = kind == ENGINE_REF ? 1
			  : threads > 0      ? threads
					     : omp_get_max_threads();
	j = json_pack("{s:s, s:s, s:i, s:i, s:f, s:f, s:f, s:f}", "model",
		      model, "engine", engine_kind_name(kind), "threads",
		      eff_threads, "repeat", repeat, "min_ms", ms[0], "median_ms",
		      median, "p90_ms", p90, "mean_ms", sum / repeat);
	line = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6)) : NULL;
	if (!line) {
		fprintf(stderr, "dicefleet run: cannot format the JSON result "
				"(is the model path valid UTF-8?)\n");
		rc = CLI_FAIL;
		goto out;
	}
	printf("%s\n", line);
	fflush(stdout);
out:
	free(line);
	json_decref(j);
	free(ms);
	return rc;
}

int cmd_run_main(int argc, char **argv)
{
	config *c = NULL;
	graph *g = NULL;
	engine *e = NULL;
	tensor **inputs = NULL, **outputs = NULL;
	engine_kind kind;

	int rc = cli_parse("run", run_opts, sizeof run_opts / sizeof run_opts[0],
			   run_usage, argc, argv, &c);
	if (rc >= 0)
		return rc;
	rc = CLI_FAIL;
	if (config_positional_count(c) != 1) {
		fprintf(stderr, "dicefleet run: expected one MODEL.onnx, got %zu "
				"positional arguments (see --help)\n",
			config_positional_count(c));
		rc = CLI_USAGE;
		goto out;
	}
	if (engine_kind_parse(config_str(c, "engine"), &kind)) {
		fail("--engine");
		rc = CLI_USAGE;
		goto out;
	}
	const char *model = config_positional(c, 0);
	int threads = (int)config_int(c, "threads");
	int repeat = (int)config_int(c, "repeat");

	if (onnx_import_file(model, &g)) {
		fail(model);
		goto out;
	}
	size_t n_in = g->n_inputs > 0 ? (size_t)g->n_inputs : 1;
	size_t n_out = g->n_outputs > 0 ? (size_t)g->n_outputs : 1;
	inputs = calloc(n_in, sizeof *inputs);
	outputs = calloc(n_out, sizeof *outputs);
	if (!inputs || !outputs) {
		fprintf(stderr, "dicefleet run: out of memory\n");
		goto out;
	}
	size_t n_specs;
	const char *const *specs = config_list(c, "input", &n_specs);
	rc = bind_inputs(g, specs, n_specs, inputs);
	if (rc != CLI_OK)
		goto out;
	rc = CLI_FAIL;

	if (engine_create_release(g, kind, threads, &e)) {
		fail("creating the engine");
		goto out;
	}
	if (engine_run(e, (const tensor *const *)inputs, outputs)) {
		fail("running the model");
		goto out;
	}
	rc = write_outputs(g, config_str(c, "output-dir"), outputs);
	if (rc != CLI_OK)
		goto out;
	if (repeat > 0) {
		tensor **scratch = calloc(n_out, sizeof *scratch);
		if (!scratch) {
			fprintf(stderr, "dicefleet run: out of memory\n");
			rc = CLI_FAIL;
			goto out;
		}
		rc = time_runs(e, g, (const tensor *const *)inputs, scratch,
			       model, kind, threads, repeat);
		free_outputs(g, scratch);
		free(scratch);
	}
out:
	if (g) {
		if (inputs)
			for (int i = 0; i < g->n_inputs; i++)
				tensor_destroy(inputs[i]);
		if (outputs)
			free_outputs(g, outputs);
	}
	free(inputs);
	free(outputs);
	engine_destroy(e);
	graph_destroy(g);
	config_destroy(c);
	return rc;
}
