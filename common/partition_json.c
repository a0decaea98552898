/*
 * partition_json.c - a partition map as JSON (format 1): what the gateway
 * stores in SQLite, pushes to workers and shows in GET /admin/partition.
 * Parsing checks shapes and index ranges only; partition_validate() checks
 * a parsed map against the model's stage plan.
 */
#include "partition.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static json_t *int_array(const int32_t *a, int64_t n, int stride, int off)
{
	json_t *arr = json_array();
	for (int64_t i = 0; arr && i < n; i++)
		if (json_array_append_new(arr, json_integer(a[i * stride + off]))) {
			json_decref(arr);
			return NULL;
		}
	return arr;
}

df_err partition_to_json(const partition_map *m, char **out)
{
	df_err err = DF_OK;
	json_t *root = json_pack("{s:i, s:I, s:s?, s:s, s:f, s:i, s:s, s:I, s:[]}",
				 "format", 1, "version", (json_int_t)m->version,
				 "model", m->model, "method",
				 partition_method_name(m->method), "ratio",
				 m->ratio, "copies", m->copies, "score",
				 partition_score_name(m->score), "seed",
				 (json_int_t)m->seed, "devices");
	json_t *stages = json_array();
	if (!root || !stages) {
		err = DF_ENOMEM;
		goto out;
	}
	json_t *devs = json_object_get(root, "devices");
	for (int d = 0; d < m->n_devices && !err; d++)
		if (json_array_append_new(devs, json_string(m->devices[d])))
			err = DF_ENOMEM;
	const int reps = m->copies - 1;
	for (int s = 0; s < m->n_stages && !err; s++) {
		const partition_stage *ps = &m->stages[s];
		json_t *js = json_pack("{s:I, s:b}", "neurons",
				       (json_int_t)ps->n_neurons, "gateway",
				       ps->on_gateway);
		if (!js || json_array_append_new(stages, js)) {
			err = DF_ENOMEM;
			break;
		}
		if (ps->on_gateway)
			continue;
		json_t *prim = int_array(ps->primary, ps->n_neurons, 1, 0);
		json_t *rep = json_array();
		if (!prim || !rep || json_object_set_new(js, "primary", prim) ||
		    json_object_set_new(js, "replicas", rep)) {
			err = DF_ENOMEM;
			break;
		}
		for (int c = 0; c < reps && !err; c++)
			if (json_array_append_new(rep, int_array(ps->replicas,
								 ps->n_neurons,
								 reps, c)))
				err = DF_ENOMEM;
	}
	if (!err && json_object_set(root, "stages", stages))
		err = DF_ENOMEM;
	if (!err) {
		*out = json_dumps(root, JSON_COMPACT);
		if (!*out)
			err = DF_ENOMEM;
	}
out:
	json_decref(stages);
	json_decref(root);
	return err;
}

/* Reads an array of n device indices (-1 allowed if allow_none) into dst
 * with the given stride. */
static df_err read_indices(json_t *arr, int64_t n, int32_t *dst, int stride,
			   int s, const char *what)
{
	if (!json_is_array(arr) || (int64_t)json_array_size(arr) != n)
		return df_errf(DF_EINVAL,
			       "stage %d: '%s' must be an array of %lld device indices",
			       s, what, (long long)n);
	for (int64_t i = 0; i < n; i++) {
		json_t *v = json_array_get(arr, (size_t)i);
		if (!json_is_integer(v) || json_integer_value(v) < -1 ||
		    json_integer_value(v) >= PARTITION_MAX_DEVICES)
			return df_errf(DF_EINVAL, "stage %d: '%s'[%lld] is not a device index",
				       s, what, (long long)i);
		dst[i * stride] = (int32_t)json_integer_value(v);
	}
	return DF_OK;
}

static df_err parse_stage(json_t *js, int s, int reps, partition_stage *ps)
{
	json_int_t neurons = 0;
	int gw = 0;
	json_t *prim = NULL, *rep = NULL;
	json_error_t jerr;
	if (json_unpack_ex(js, &jerr, JSON_STRICT, "{s:I, s:b, s?o, s?o}",
			   "neurons", &neurons, "gateway", &gw, "primary", &prim,
			   "replicas", &rep))
		return df_errf(DF_EINVAL, "stage %d: %s", s, jerr.text);
	if (neurons < 0 || neurons > (1 << 24))
		return df_errf(DF_EINVAL, "stage %d: neurons %lld out of range", s,
			       (long long)neurons);
	ps->n_neurons = neurons;
	ps->on_gateway = gw;
	if (gw) {
		if (prim || rep)
			return df_errf(DF_EINVAL,
				       "stage %d runs on the gateway but lists devices", s);
		return DF_OK;
	}
	if (!prim)
		return df_errf(DF_EINVAL, "stage %d: 'primary' missing", s);
	ps->primary = calloc((size_t)neurons + 1, sizeof *ps->primary);
	if (!ps->primary)
		return DF_ENOMEM;
	df_err err = read_indices(prim, neurons, ps->primary, 1, s, "primary");
	if (err)
		return err;
	if (reps == 0)
		return rep && (!json_is_array(rep) || json_array_size(rep) != 0)
			? df_errf(DF_EINVAL, "stage %d: replicas with copies 1", s)
			: DF_OK;
	if (!json_is_array(rep) || (int)json_array_size(rep) != reps)
		return df_errf(DF_EINVAL, "stage %d: 'replicas' must hold %d arrays", s,
			       reps);
	ps->replicas = malloc(((size_t)neurons * (size_t)reps + 1) *
			      sizeof *ps->replicas);
	if (!ps->replicas)
		return DF_ENOMEM;
	for (int c = 0; c < reps && !err; c++)
		err = read_indices(json_array_get(rep, (size_t)c), neurons,
				   ps->replicas + c, reps, s, "replicas");
	return err;
}

df_err partition_from_json(const char *text, size_t len, partition_map **out)
{
	json_error_t jerr;
	json_t *root = json_loadb(text, len, 0, &jerr);
	if (!root)
		return df_errf(DF_EINVAL, "partition map: invalid JSON at line %d: %s",
			       jerr.line, jerr.text);
	df_err err = DF_OK;
	partition_map *m = calloc(1, sizeof *m);
	json_int_t version = 0, seed = 0, format = 0, copies = 0;
	const char *model = NULL, *method = NULL, *score = NULL;
	double ratio = 0;
	json_t *devs = NULL, *stages = NULL;
	if (!m) {
		err = DF_ENOMEM;
		goto out;
	}
	if (json_unpack_ex(root, &jerr, JSON_STRICT,
			   "{s:I, s:I, s?s, s:s, s:F, s:I, s:s, s:I, s:o, s:o}",
			   "format", &format, "version", &version, "model", &model,
			   "method", &method, "ratio", &ratio, "copies", &copies,
			   "score", &score, "seed", &seed, "devices", &devs,
			   "stages", &stages)) {
		err = df_errf(DF_EINVAL, "partition map: %s", jerr.text);
		goto out;
	}
	if (format != 1) {
		err = df_errf(DF_ENOTSUP, "partition map format %lld (only 1)",
			      (long long)format);
		goto out;
	}
	if ((err = partition_method_parse(method, &m->method)) ||
	    (err = partition_score_parse(score, &m->score)))
		goto out;
	if (!(ratio >= 0 && ratio <= 1) || copies < 1 ||
	    copies > PARTITION_MAX_COPIES || version < 0) {
		err = df_errf(DF_EINVAL, "partition map: ratio, copies or version out of range");
		goto out;
	}
	m->version = version;
	m->ratio = ratio;
	m->copies = (int)copies;
	m->seed = (uint64_t)seed;
	if (model && !(m->model = strdup(model))) {
		err = DF_ENOMEM;
		goto out;
	}
	if (!json_is_array(devs) || json_array_size(devs) < 1 ||
	    json_array_size(devs) > PARTITION_MAX_DEVICES) {
		err = df_errf(DF_EINVAL, "partition map: 'devices' must list 1..%d ids",
			      PARTITION_MAX_DEVICES);
		goto out;
	}
	m->devices = calloc(json_array_size(devs), sizeof *m->devices);
	if (!m->devices) {
		err = DF_ENOMEM;
		goto out;
	}
	for (size_t d = 0; d < json_array_size(devs); d++) {
		const char *id = json_string_value(json_array_get(devs, d));
		if (!id) {
			err = df_errf(DF_EINVAL, "partition map: device %zu is not a string", d);
			goto out;
		}
		if (!(m->devices[d] = strdup(id))) {
			err = DF_ENOMEM;
			goto out;
		}
		m->n_devices++;
	}
	if (!json_is_array(stages) || json_array_size(stages) > 100000) {
		err = df_errf(DF_EINVAL, "partition map: 'stages' must be an array");
		goto out;
	}
	m->stages = calloc(json_array_size(stages) + 1, sizeof *m->stages);
	if (!m->stages) {
		err = DF_ENOMEM;
		goto out;
	}
	m->n_stages = (int)json_array_size(stages);
	for (int s = 0; s < m->n_stages && !err; s++)
		err = parse_stage(json_array_get(stages, (size_t)s), s,
				  (int)copies - 1, &m->stages[s]);
	if (!err)
		err = partition_validate(m, NULL);
out:
	json_decref(root);
	if (err) {
		partition_destroy(m);
		return err;
	}
	*out = m;
	return DF_OK;
}
