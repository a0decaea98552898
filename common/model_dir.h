/*
 * model_dir.h - a shipped model's directory, models/<name>/:
 *   model.json  description (schema below), written by models/train.py
 *   model.onnx  the network (checked against model.json's sha256)
 *   labels.txt  one class name per line, in output order
 *
 * model.json (fields not listed are ignored; "?" marks optional ones):
 *   {"name": "fmnist-vgg", "onnx": "model.onnx", "sha256": "<64 hex>",
 *    "input": {"name": "input", "shape": [1, C, H, W],
 *              "color": "grayscale" | "rgb", "resize": [H, W],
 *              "mean": [m...], "std": [s...]},
 *    "output": {"name": "logits"}, "labels": "labels.txt",
 *    "dataset"?: "fashion-mnist",
 *    "accuracy"?: {"test": 0.9234, "images": 10000},
 *    "per_class_accuracy"?: [...], "params"?: N, "macs"?: N,
 *    "training_seconds"?: S, "seed"?: N, "opset"?: N}
 * C must be 1 for grayscale and 3 for rgb; resize must equal [H, W]; mean
 * and std hold C values (or one value used for every channel). File names
 * are relative to the directory and may not leave it.
 */
#ifndef DF_MODEL_DIR_H
#define DF_MODEL_DIR_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "image.h"
#include "sha256.h"

#define MODEL_DIR_MAX_LABELS 100000

typedef struct model_dir {
	char *dir;               /* the directory as given */
	char *name;              /* "fmnist-vgg" */
	char *onnx_path;         /* dir/onnx */
	char sha256[SHA256_HEX_LEN + 1]; /* expected digest, lowercase hex */
	char *input_name;        /* ONNX input tensor name */
	int64_t input_shape[4];  /* [1, C, H, W] */
	model_input_spec input;  /* colour, size, mean, std */
	char *output_name;       /* ONNX output tensor name */
	char **labels;           /* n_labels class names */
	size_t n_labels;
	char *dataset;           /* "fashion-mnist", or NULL */
	double test_accuracy;    /* accuracy.test, or -1 when absent */
	int64_t test_images;     /* accuracy.images, or 0 */
	double *per_class_accuracy; /* n_per_class values, or NULL */
	size_t n_per_class;
	int64_t params, macs;    /* 0 when absent */
	int64_t opset;           /* 0 when absent */
} model_dir;

/*
 * Loads dir/model.json and the labels file. Errors name the file and the
 * field ("model.json: input.mean[0]: Expected real, got string"). Does not
 * read the ONNX file (see model_dir_verify()). *out is new
 * (model_dir_destroy()).
 */
df_err model_dir_load(const char *dir, model_dir **out);

/* Parses model.json text as model_dir_load() does, with labels file and
 * paths resolved against dir (labels are read from disk). */
df_err model_dir_parse(const char *dir, const char *json_text,
		       model_dir **out);

/* Hashes the ONNX file and compares with the expected sha256:
 * DF_ECORRUPT naming the file and both digests on mismatch. */
df_err model_dir_verify(const model_dir *m);

void model_dir_destroy(model_dir *m);

/*
 * Names of the subdirectories of models_dir that hold a model.json, sorted.
 * *names is a new array of *n new strings (model_dir_names_free()).
 */
df_err model_dir_list(const char *models_dir, char ***names, size_t *n);

void model_dir_names_free(char **names, size_t n);

#endif
