/*
 * cmd_classify.c - `dicefleet classify`: decodes PNG/JPEG files, preprocesses
 * them exactly as the gateway does (image_to_tensor()), runs the
 * unpartitioned model on one engine and prints the top-k classes of each
 * image as one JSON line. A file that cannot be read or decoded gets an
 * error line instead, and the exit status says some image failed.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "scores.h"
#include "config.h"
#include "engine.h"
#include "graph.h"
#include "image.h"
#include "model_dir.h"
#include "onnx_import.h"
#include "tensor.h"

int cmd_classify_main(int argc, char **argv);

/* Largest image file read. */
#define CLASSIFY_MAX_FILE_BYTES ((size_t)64 << 20)

static const config_opt classify_opts[] = {
	{"top-k", NULL, CONFIG_INT, "5", 1, 100000,
	 "classes listed per image, best first"},
	{"engine", "DICEFLEET_ENGINE", CONFIG_STRING, "dnnl", 0, 0,
	 "engine: dnnl or ref"},
	{"threads", NULL, CONFIG_INT, "0", 0, 4096,
	 "threads for the engine; 0 = library default"},
	{"max-pixels", NULL, CONFIG_INT, "16777216", 1, 1e9,
	 "largest image accepted, in pixels (width x height)"},
	{"help", NULL, CONFIG_BOOL, "false", 0, 0, "show this help"},
};

static void classify_usage(const config *c, FILE *f)
{
	fprintf(f,
		"usage: dicefleet classify MODEL_DIR IMAGE... [options]\n"
		"\n"
		"Classifies PNG or JPEG files (format sniffed from the bytes)\n"
		"with the model in MODEL_DIR (model.onnx checked against\n"
		"model.json's sha256), preprocessed as the gateway does: colour\n"
		"conversion, bilinear resize to the model input, x/255,\n"
		"(x-mean)/std. One JSON line per image on stdout, in order:\n"
		"  {\"image\":PATH,\"model\":...,\"width\":W,\"height\":H,"
		"\"top1\":i,\n"
		"   \"predictions\":[{\"index\":i,\"label\":...,\"score\":p},"
		"...]}\n"
		"scores are softmax probabilities (taken as they are when the\n"
		"model ends in Softmax). An image that cannot be read or decoded\n"
		"gets {\"image\":PATH,\"error\":{\"code\":...,\"message\":...}}.\n"
		"\n"
		"options:\n");
	config_print_help(c, f);
	fprintf(f,
		"\n"
		"exit status: 0 every image classified; 1 the model failed to\n"
		"load or some image failed; 2 usage error.\n");
}

static df_err read_file(const char *path, void **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return df_errf(errno == ENOENT ? DF_ENOENT : DF_EIO, "%s: %s",
			       path, strerror(errno));
	df_err err = DF_OK;
	unsigned char *b = malloc(CLASSIFY_MAX_FILE_BYTES + 1);
	if (!b) {
		err = DF_ENOMEM;
		goto out;
	}
	size_t n = fread(b, 1, CLASSIFY_MAX_FILE_BYTES + 1, f);
	if (ferror(f)) {
		err = df_errf(DF_EIO, "%s: read error", path);
		goto out;
	}
	if (n > CLASSIFY_MAX_FILE_BYTES) {
		err = df_errf(DF_ETOOBIG, "%s: larger than %zu bytes", path,
			      CLASSIFY_MAX_FILE_BYTES);
		goto out;
	}
	*buf = b;
	*len = n;
	b = NULL;
out:
	free(b);
	fclose(f);
	return err;
}


static void print_json(json_t *j)
{
	char *line = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6))
		       : NULL;
	if (line)
		printf("%s\n", line);
	else
		printf("{\"error\":{\"code\":\"internal\",\"message\":"
		       "\"cannot format the result\"}}\n");
	fflush(stdout);
	free(line);
	json_decref(j);
}

static void print_error(const char *path, df_err err)
{
	print_json(json_pack("{s:s, s:{s:s, s:s}}", "image", path, "error",
			     "code", df_err_code(err), "message",
			     df_err_msg()[0] ? df_err_msg() : df_err_str(err)));
	df_err_clear();
}

/* Classifies one file; prints its line. */
static df_err classify_one(const model_dir *m, const graph *g, engine *e,
			   const char *path, size_t top_k, size_t max_pixels)
{
	void *buf = NULL;
	size_t len = 0, n = 0;
	image *img = NULL;
	tensor *input = NULL;
	tensor **outputs = NULL;
	score_entry *ranked = NULL;
	json_t *preds = NULL;
	df_err err = read_file(path, &buf, &len);
	if (err)
		goto out;
	if ((err = image_decode(buf, len, max_pixels, &img)))
		goto out;
	if ((err = image_to_tensor(img, &m->input, &input)))
		goto out;
	outputs = calloc((size_t)g->n_outputs, sizeof *outputs);
	if (!outputs) {
		err = DF_ENOMEM;
		goto out;
	}
	const tensor *in[1] = {input};
	if ((err = engine_run(e, in, outputs)))
		goto out;
	n = outputs[0]->numel;
	preds = json_array();
	if (!preds) {
		err = DF_ENOMEM;
		goto out;
	}
	err = scores_rank(tensor_f32(outputs[0]), n, scores_graph_is_softmax(g),
			  &ranked);
	if (err)
		goto out;
	for (size_t k = 0; k < n && k < top_k; k++) {
		size_t i = ranked[k].index;
		json_t *o = json_pack("{s:I, s:s, s:f}", "index", (json_int_t)i,
				      "label", m->labels[i], "score", ranked[k].score);
		if (!o || json_array_append_new(preds, o)) {
			err = DF_ENOMEM;
			goto out;
		}
	}
	json_t *j = json_pack("{s:s, s:s, s:i, s:i, s:I, s:O}", "image", path,
			      "model", m->name, "width", img->width, "height",
			      img->height, "top1", (json_int_t)ranked[0].index,
			      "predictions", preds);
	if (!j) {
		err = df_errf(DF_EINVAL, "cannot format the result (is the "
				"path valid UTF-8?)");
		goto out;
	}
	print_json(j);
out:
	if (err)
		print_error(path, err);
	if (outputs)
		for (int k = 0; k < g->n_outputs; k++)
			tensor_destroy(outputs[k]);
	free(outputs);
	json_decref(preds);
	free(ranked);
	tensor_destroy(input);
	image_destroy(img);
	free(buf);
	return err;
}

int cmd_classify_main(int argc, char **argv)
{
	int rc = CLI_FAIL;
	config *c = NULL;
	model_dir *m = NULL;
	graph *g = NULL;
	engine *e = NULL;
	engine_kind kind;

	int prc = cli_parse("classify", classify_opts,
			    sizeof classify_opts / sizeof classify_opts[0],
			    classify_usage, argc, argv, &c);
	if (prc >= 0)
		return prc;
	if (config_positional_count(c) < 2) {
		fprintf(stderr, "dicefleet classify: expected MODEL_DIR and at "
				"least one IMAGE (see --help)\n");
		rc = CLI_USAGE;
		goto out;
	}
	if (engine_kind_parse(config_str(c, "engine"), &kind)) {
		cli_fail("classify", "--engine");
		rc = CLI_USAGE;
		goto out;
	}
	if (model_dir_load(config_positional(c, 0), &m) ||
	    model_dir_verify(m) || onnx_import_file(m->onnx_path, &g)) {
		cli_fail("classify", "model");
		goto out;
	}
	const graph_value *gin = g->n_inputs == 1 ? &g->values[g->inputs[0]]
						  : NULL;
	int same = gin && gin->ndim == 4;
	for (int i = 0; same && i < 4; i++)
		same = gin->dims[i] == m->input_shape[i];
	int64_t nout = 1;
	for (int i = 0; g->n_outputs > 0 &&
			i < g->values[g->outputs[0]].ndim;
	     i++)
		nout *= g->values[g->outputs[0]].dims[i];
	if (!same || g->n_outputs < 1 || nout != (int64_t)m->n_labels) {
		fprintf(stderr,
			"dicefleet classify: model: %s does not take one input "
			"of model.json's shape and give one score per label\n",
			m->onnx_path);
		goto out;
	}
	if (engine_create(g, kind, (int)config_int(c, "threads"), &e)) {
		cli_fail("classify", "engine");
		goto out;
	}
	rc = CLI_OK;
	size_t top_k = (size_t)config_int(c, "top-k");
	size_t max_pixels = (size_t)config_int(c, "max-pixels");
	for (size_t i = 1; i < config_positional_count(c); i++)
		if (classify_one(m, g, e, config_positional(c, i), top_k,
				 max_pixels))
			rc = CLI_FAIL;
out:
	engine_destroy(e);
	graph_destroy(g);
	model_dir_destroy(m);
	config_destroy(c);
	return rc;
}
