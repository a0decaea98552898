/* model.c - see model.h. */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx_import.h"

void model_destroy(model *m)
{
	if (!m)
		return;
	stage_plan_destroy(m->plan);
	graph_destroy(m->g);
	model_dir_destroy(m->dir);
	free(m);
}

/* The graph must take model.json's input and give one score per label. */
static df_err check_io(const model *m)
{
	const graph *g = m->g;
	const model_dir *d = m->dir;
	if (g->n_inputs != 1 || g->n_outputs != 1)
		return df_errf(DF_ENOTSUP, "%s: the model has %d inputs and %d outputs; one of each is supported",
			       d->onnx_path, g->n_inputs, g->n_outputs);
	const graph_value *in = &g->values[g->inputs[0]];
	bool same = in->ndim == 4;
	for (int i = 0; same && i < 4; i++)
		same = in->dims[i] == d->input_shape[i];
	if (!same) {
		char a[64], b[64];
		tensor_shape_str(in->ndim, in->dims, a, sizeof a);
		tensor_shape_str(4, d->input_shape, b, sizeof b);
		return df_errf(DF_EINVAL, "%s: the ONNX input is %s but model.json says %s",
			       d->onnx_path, a, b);
	}
	const graph_value *out = &g->values[g->outputs[0]];
	size_t n = 1;
	for (int i = 0; i < out->ndim; i++)
		n *= (size_t)out->dims[i];
	if (n != d->n_labels)
		return df_errf(DF_EINVAL, "%s: the model gives %zu scores but there are %zu labels",
			       d->onnx_path, n, d->n_labels);
	return DF_OK;
}

df_err model_load(const char *path, const char *name, bool skip_verify,
		  model **out)
{
	char *dir = NULL;
	if (name) {
		if (!*name || strchr(name, '/') || strcmp(name, ".") == 0 ||
		    strcmp(name, "..") == 0)
			return df_errf(DF_EINVAL, "bad model name '%s'", name);
		size_t len = strlen(path) + strlen(name) + 2;
		dir = malloc(len);
		if (!dir)
			return DF_ENOMEM;
		snprintf(dir, len, "%s/%s", path, name);
	}
	model *m = calloc(1, sizeof *m);
	df_err err = m ? DF_OK : DF_ENOMEM;
	if (!err)
		err = model_dir_load(dir ? dir : path, &m->dir);
	if (!err && !skip_verify)
		err = model_dir_verify(m->dir);
	if (!err)
		err = onnx_import_file(m->dir->onnx_path, &m->g);
	if (!err)
		err = check_io(m);
	if (!err)
		err = stage_plan_create(m->g, &m->plan);
	free(dir);
	if (err) {
		model_destroy(m);
		return err;
	}
	*out = m;
	return DF_OK;
}
