/*
 * model.h - a shipped model ready to run: its directory (model.json,
 * labels), its graph imported from model.onnx after the sha256 check, and
 * its stage plan. What the CLI, the worker and the gateway all load.
 */
#ifndef DF_MODEL_H
#define DF_MODEL_H

#include <stdbool.h>

#include "err.h"
#include "graph.h"
#include "model_dir.h"
#include "stage.h"

typedef struct model {
	model_dir *dir;     /* owned */
	graph *g;           /* owned, finalized */
	stage_plan *plan;   /* owned */
} model;

/*
 * Loads models_dir/name (or the directory `path` itself when name is NULL):
 * model.json, labels, the ONNX file (its sha256 verified unless
 * skip_verify), the graph and its stages; checks that the graph has one
 * input of model.json's shape and one output with one score per label.
 * Free with model_destroy().
 */
df_err model_load(const char *path, const char *name, bool skip_verify,
		  model **out);

void model_destroy(model *m);

#endif
