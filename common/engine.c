/*
 * engine.c - the engine dispatcher behind engine.h: picks an implementation
 * (engine_impl.h) at create time, validates engine_run() inputs once for all
 * of them, and guarantees that callers see either every output or none.
 */
#include "engine.h"

#include <stdlib.h>
#include <string.h>

#include "engine_impl.h"

static const char *const kind_names[] = {
	[ENGINE_DNNL] = "dnnl",
	[ENGINE_REF] = "ref",
};
_Static_assert(sizeof kind_names / sizeof kind_names[0] == ENGINE_KIND_COUNT,
	       "kind_names must name every engine_kind");

const char *engine_kind_name(engine_kind kind)
{
	if ((unsigned)kind >= ENGINE_KIND_COUNT)
		return "?";
	return kind_names[kind];
}

df_err engine_kind_parse(const char *s, engine_kind *out)
{
	if (!s || !out)
		return df_errf(DF_EINVAL, "engine kind: NULL argument");
	for (int k = 0; k < ENGINE_KIND_COUNT; k++) {
		if (strcmp(s, kind_names[k]) == 0) {
			*out = (engine_kind)k;
			return DF_OK;
		}
	}
	return df_errf(DF_EINVAL, "unknown engine '%s' (expected dnnl or ref)", s);
}

/* engine_create() and engine_create_release(): release is NULL or g. */
static df_err create(const graph *g, engine_kind kind, int threads,
		     graph *release, engine **out)
{
	if (!g || !out)
		return df_errf(DF_EINVAL, "engine_create: NULL argument");
	if (g->constants_released)
		return df_errf(DF_EINVAL, "engine_create: the graph's constant "
					  "data was released");
	if (threads < 0)
		threads = 0;
	engine *e = NULL;
	df_err err;
	switch (kind) {
	case ENGINE_REF:
		err = engine_ref_create(g, threads, &e);
		break;
	case ENGINE_DNNL:
		err = engine_dnnl_create(g, threads, release, &e);
		break;
	default:
		return df_errf(DF_EINVAL, "unknown engine kind %d", (int)kind);
	}
	if (err)
		return err;
	*out = e;
	return DF_OK;
}

df_err engine_create(const graph *g, engine_kind kind, int threads,
		     engine **out)
{
	return create(g, kind, threads, NULL, out);
}

df_err engine_create_release(graph *g, engine_kind kind, int threads,
			     engine **out)
{
	return create(g, kind, threads, g, out);
}

/* Checks inputs[i] against graph input i: present, f32, same shape. */
static df_err check_input(const graph *g, int i, const tensor *t)
{
	const graph_value *v = &g->values[g->inputs[i]];
	const char *name = v->name ? v->name : "?";
	if (!t)
		return df_errf(DF_EINVAL, "input '%s' (#%d) is missing", name, i);
	if (t->dtype != TENSOR_F32)
		return df_errf(DF_EINVAL,
			       "input '%s': dtype %s, the model expects f32",
			       name, tensor_dtype_name(t->dtype));
	bool same = t->ndim == v->ndim;
	for (int d = 0; same && d < v->ndim; d++)
		same = t->dims[d] == v->dims[d];
	if (!same) {
		char got[160], want[160];
		tensor_shape_str(t->ndim, t->dims, got, sizeof got);
		tensor_shape_str(v->ndim, v->dims, want, sizeof want);
		return df_errf(DF_EINVAL,
			       "input '%s': shape %s does not match the model's %s",
			       name, got, want);
	}
	if (!t->data && t->numel > 0)
		return df_errf(DF_EINVAL, "input '%s' has no data", name);
	return DF_OK;
}

df_err engine_run(engine *e, const tensor *const *inputs, tensor **outputs)
{
	if (!e || !outputs || (!inputs && e->g->n_inputs > 0))
		return df_errf(DF_EINVAL, "engine_run: NULL argument");
	const graph *g = e->g;
	for (int i = 0; i < g->n_inputs; i++) {
		df_err err = check_input(g, i, inputs[i]);
		if (err)
			return err;
	}
	size_t n_out = g->n_outputs > 0 ? (size_t)g->n_outputs : 1;
	tensor **tmp = calloc(n_out, sizeof *tmp);
	if (!tmp)
		return df_errf(DF_ENOMEM, "engine_run: out of memory");
	df_err err = e->ops->run(e, inputs, tmp);
	if (err) {
		for (int i = 0; i < g->n_outputs; i++)
			tensor_destroy(tmp[i]);
		goto out;
	}
	for (int i = 0; i < g->n_outputs; i++) {
		if (!tmp[i]) {
			err = df_errf(DF_EINTERNAL,
				      "%s engine produced no tensor for output #%d",
				      engine_kind_name(e->kind), i);
			for (int j = 0; j < g->n_outputs; j++)
				tensor_destroy(tmp[j]);
			goto out;
		}
	}
	if (g->n_outputs > 0)
		memcpy(outputs, tmp, (size_t)g->n_outputs * sizeof *tmp);
out:
	free(tmp);
	return err;
}

void engine_destroy(engine *e)
{
	if (!e)
		return;
	e->ops->destroy(e);
}
