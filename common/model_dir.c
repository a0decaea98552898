/*
 * model_dir.c - model.json is unpacked one field at a time with
 * json_vunpack_ex(), so every message names the field that is missing or
 * has the wrong type (Jansson's own text does not). Optional fields are
 * still type-checked when present. File names from model.json are
 * confined to the model's directory.
 */
#include "model_dir.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#define MODEL_JSON "model.json"
#define MODEL_JSON_MAX_BYTES ((size_t)1 << 20)
#define LABELS_MAX_BYTES ((size_t)4 << 20)

/* Reads a whole (small) file, NUL-terminated. */
static df_err read_text(const char *path, size_t max, char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return df_errf(errno == ENOENT ? DF_ENOENT : DF_EIO, "%s: %s",
			       path, strerror(errno));
	df_err err = DF_OK;
	char *buf = malloc(max + 1);
	if (!buf) {
		err = DF_ENOMEM;
		goto out;
	}
	size_t n = fread(buf, 1, max + 1, f);
	if (ferror(f)) {
		err = df_errf(DF_EIO, "%s: read error", path);
		goto out;
	}
	if (n > max) {
		err = df_errf(DF_ETOOBIG, "%s: larger than %zu bytes", path, max);
		goto out;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	buf = NULL;
out:
	free(buf);
	fclose(f);
	return err;
}

static char *path_join(const char *dir, const char *name)
{
	size_t a = strlen(dir), b = strlen(name);
	char *p = malloc(a + b + 2);
	if (!p)
		return NULL;
	memcpy(p, dir, a);
	p[a] = '/';
	memcpy(p + a + 1, name, b + 1);
	return p;
}

/* ---- field access ------------------------------------------------------- */

typedef struct jctx {
	const char *file; /* for messages: "models/x/model.json" */
} jctx;

/* Looks up key in obj ("parent.key" in messages). A missing required
 * field is DF_EINVAL; a missing optional one sets *val = NULL. */
static df_err jget(const jctx *cx, json_t *obj, const char *path, bool optional,
		   json_t **val)
{
	const char *key = strrchr(path, '.');
	key = key ? key + 1 : path;
	json_t *v = json_object_get(obj, key);
	if (!v && !optional)
		return df_errf(DF_EINVAL, "%s: field %s is missing", cx->file,
			       path);
	*val = v;
	return DF_OK;
}

/* json_vunpack_ex on one value, the message naming path. */
static df_err jun(const jctx *cx, const char *path, json_t *val,
		  const char *fmt, ...)
{
	json_error_t e;
	va_list ap;
	va_start(ap, fmt);
	int r = json_vunpack_ex(val, &e, 0, fmt, ap);
	va_end(ap);
	if (r != 0)
		return df_errf(DF_EINVAL, "%s: field %s: %s", cx->file, path,
			       e.text);
	return DF_OK;
}

/* Required or optional string field, copied into *out (NULL if absent). */
static df_err jstr(const jctx *cx, json_t *obj, const char *path,
		   bool optional, char **out)
{
	json_t *v = NULL;
	const char *s = NULL;
	df_err err = jget(cx, obj, path, optional, &v);
	if (err || !v)
		return err;
	if ((err = jun(cx, path, v, "s", &s)))
		return err;
	if (!*s)
		return df_errf(DF_EINVAL, "%s: field %s is empty", cx->file,
			       path);
	char *c = strdup(s);
	if (!c)
		return DF_ENOMEM;
	*out = c;
	return DF_OK;
}

static df_err jint(const jctx *cx, json_t *obj, const char *path,
		   bool optional, int64_t min, int64_t *out)
{
	json_t *v = NULL;
	json_int_t i = 0;
	df_err err = jget(cx, obj, path, optional, &v);
	if (err || !v)
		return err;
	if ((err = jun(cx, path, v, "I", &i)))
		return err;
	if (i < min)
		return df_errf(DF_EINVAL, "%s: field %s is %lld, below %lld",
			       cx->file, path, (long long)i, (long long)min);
	*out = i;
	return DF_OK;
}

static df_err jnum(const jctx *cx, json_t *obj, const char *path,
		   bool optional, double *out)
{
	json_t *v = NULL;
	double d = 0;
	df_err err = jget(cx, obj, path, optional, &v);
	if (err || !v)
		return err;
	if ((err = jun(cx, path, v, "F", &d)))
		return err;
	*out = d;
	return DF_OK;
}

/* An array field with between min_n and max_n elements. */
static df_err jarr(const jctx *cx, json_t *obj, const char *path,
		   bool optional, size_t min_n, size_t max_n, json_t **out)
{
	json_t *v = NULL;
	df_err err = jget(cx, obj, path, optional, &v);
	if (err || !v)
		return err;
	if ((err = jun(cx, path, v, "o", &v)))
		return err;
	if (!json_is_array(v))
		return df_errf(DF_EINVAL, "%s: field %s: Expected array",
			       cx->file, path);
	size_t n = json_array_size(v);
	if (n < min_n || n > max_n)
		return df_errf(DF_EINVAL,
			       "%s: field %s has %zu elements, expected %zu..%zu",
			       cx->file, path, n, min_n, max_n);
	*out = v;
	return DF_OK;
}

static df_err jobj(const jctx *cx, json_t *obj, const char *path,
		   bool optional, json_t **out)
{
	json_t *v = NULL;
	df_err err = jget(cx, obj, path, optional, &v);
	if (err || !v)
		return err;
	if ((err = jun(cx, path, v, "o", &v)))
		return err;
	if (!json_is_object(v))
		return df_errf(DF_EINVAL, "%s: field %s: Expected object",
			       cx->file, path);
	*out = v;
	return DF_OK;
}

/* Element i of an array of numbers (or integers when as_int). */
static df_err jelem_num(const jctx *cx, json_t *arr, const char *path,
			size_t i, double *out)
{
	char p[128];
	snprintf(p, sizeof p, "%s[%zu]", path, i);
	return jun(cx, p, json_array_get(arr, i), "F", out);
}

static df_err jelem_int(const jctx *cx, json_t *arr, const char *path,
			size_t i, int64_t *out)
{
	char p[128];
	json_int_t v = 0;
	snprintf(p, sizeof p, "%s[%zu]", path, i);
	df_err err = jun(cx, p, json_array_get(arr, i), "I", &v);
	if (!err)
		*out = v;
	return err;
}

/* A file name inside the model directory: relative, no "..". */
static df_err check_rel_path(const jctx *cx, const char *field, const char *s)
{
	if (s[0] == '/')
		return df_errf(DF_EINVAL, "%s: field %s: '%s' is an absolute path",
			       cx->file, field, s);
	const char *p = s;
	while (*p) {
		const char *e = strchr(p, '/');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return df_errf(DF_EINVAL,
				       "%s: field %s: '%s' leaves the model "
				       "directory",
				       cx->file, field, s);
		p += n;
		if (*p == '/')
			p++;
	}
	return DF_OK;
}

/* ---- parts -------------------------------------------------------------- */

static df_err parse_labels(const char *path, model_dir *m)
{
	char *text = NULL;
	size_t len = 0;
	df_err err = read_text(path, LABELS_MAX_BYTES, &text, &len);
	if (err)
		return err;
	if (strlen(text) != len) {
		err = df_errf(DF_EINVAL, "%s: contains a NUL byte", path);
		goto out;
	}
	size_t lines = 0;
	for (size_t i = 0; i < len; i++)
		if (text[i] == '\n')
			lines++;
	if (len && text[len - 1] != '\n')
		lines++;
	if (lines == 0) {
		err = df_errf(DF_EINVAL, "%s: no labels", path);
		goto out;
	}
	if (lines > MODEL_DIR_MAX_LABELS) {
		err = df_errf(DF_ETOOBIG, "%s: more than %d labels", path,
			      MODEL_DIR_MAX_LABELS);
		goto out;
	}
	m->labels = calloc(lines, sizeof *m->labels);
	if (!m->labels) {
		err = DF_ENOMEM;
		goto out;
	}
	char *p = text;
	for (size_t i = 0; i < lines; i++) {
		char *e = strchr(p, '\n');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		if (n && p[n - 1] == '\r')
			n--;
		if (n == 0) {
			err = df_errf(DF_EINVAL, "%s: line %zu is empty", path,
				      i + 1);
			goto out;
		}
		m->labels[i] = strndup(p, n);
		if (!m->labels[i]) {
			err = DF_ENOMEM;
			goto out;
		}
		m->n_labels = i + 1;
		p = e ? e + 1 : p + n;
	}
out:
	free(text);
	return err;
}

static df_err parse_input(const jctx *cx, json_t *root, model_dir *m)
{
	json_t *in = NULL, *a = NULL;
	char *color = NULL;
	df_err err = jobj(cx, root, "input", false, &in);
	if (err)
		return err;
	if ((err = jstr(cx, in, "input.name", false, &m->input_name)))
		goto out;
	if ((err = jstr(cx, in, "input.color", false, &color)))
		goto out;
	if ((err = image_color_parse(color, &m->input.color))) {
		err = df_errf(DF_EINVAL,
			      "%s: field input.color: '%s' is not 'grayscale' "
			      "or 'rgb'",
			      cx->file, color);
		goto out;
	}
	int ch = model_input_channels(&m->input);

	if ((err = jarr(cx, in, "input.shape", false, 4, 4, &a)))
		goto out;
	for (size_t i = 0; i < 4; i++)
		if ((err = jelem_int(cx, a, "input.shape", i,
				     &m->input_shape[i])))
			goto out;
	if (m->input_shape[0] != 1 || m->input_shape[1] != ch ||
	    m->input_shape[2] < 1 || m->input_shape[2] > IMAGE_MAX_INPUT_SIDE ||
	    m->input_shape[3] < 1 || m->input_shape[3] > IMAGE_MAX_INPUT_SIDE) {
		err = df_errf(DF_EINVAL,
			      "%s: field input.shape: [%lld,%lld,%lld,%lld] is "
			      "not [1,%d,H,W] with H, W in 1..%d for color %s",
			      cx->file, (long long)m->input_shape[0],
			      (long long)m->input_shape[1],
			      (long long)m->input_shape[2],
			      (long long)m->input_shape[3], ch,
			      IMAGE_MAX_INPUT_SIDE, color);
		goto out;
	}
	m->input.height = (int)m->input_shape[2];
	m->input.width = (int)m->input_shape[3];

	if ((err = jarr(cx, in, "input.resize", false, 2, 2, &a)))
		goto out;
	for (size_t i = 0; i < 2; i++) {
		int64_t v = 0;
		if ((err = jelem_int(cx, a, "input.resize", i, &v)))
			goto out;
		if (v != m->input_shape[2 + i]) {
			err = df_errf(DF_EINVAL,
				      "%s: field input.resize[%zu] is %lld, "
				      "but input.shape says %lld",
				      cx->file, i, (long long)v,
				      (long long)m->input_shape[2 + i]);
			goto out;
		}
	}

	static const char *const stats[2] = {"input.mean", "input.std"};
	for (int s = 0; s < 2; s++) {
		float *dst = s == 0 ? m->input.mean : m->input.std;
		if ((err = jarr(cx, in, stats[s], false, 1, (size_t)ch, &a)))
			goto out;
		size_t n = json_array_size(a);
		if (n != 1 && n != (size_t)ch) {
			err = df_errf(DF_EINVAL,
				      "%s: field %s has %zu values, expected 1 "
				      "or %d",
				      cx->file, stats[s], n, ch);
			goto out;
		}
		for (int c = 0; c < ch; c++) {
			double v = 0;
			size_t i = n == 1 ? 0 : (size_t)c;
			if ((err = jelem_num(cx, a, stats[s], i, &v)))
				goto out;
			if (!isfinite(v) || fabs(v) > 1e6 ||
			    (s == 1 && !(v > 0))) {
				err = df_errf(DF_EINVAL,
					      "%s: field %s[%zu] = %g is out of "
					      "range",
					      cx->file, stats[s], i, v);
				goto out;
			}
			dst[c] = (float)v;
		}
	}
out:
	free(color);
	return err;
}

df_err model_dir_parse(const char *dir, const char *json_text,
		       model_dir **out)
{
	df_err err = DF_OK;
	char file[1024];
	snprintf(file, sizeof file, "%s/%s", dir, MODEL_JSON);
	jctx cx = {.file = file};
	json_error_t je;
	char *onnx = NULL, *labels = NULL, *sha = NULL, *labels_path = NULL;
	json_t *root = json_loads(json_text, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return df_errf(DF_EINVAL, "%s:%d:%d: %s", file, je.line,
			       je.column, je.text);
	model_dir *m = calloc(1, sizeof *m);
	if (!m) {
		err = DF_ENOMEM;
		goto out;
	}
	m->test_accuracy = -1;
	if (!json_is_object(root)) {
		err = df_errf(DF_EINVAL, "%s: top level is not an object", file);
		goto out;
	}
	if (!(m->dir = strdup(dir))) {
		err = DF_ENOMEM;
		goto out;
	}
	if ((err = jstr(&cx, root, "name", false, &m->name)))
		goto out;
	if ((err = jstr(&cx, root, "onnx", false, &onnx)))
		goto out;
	if ((err = check_rel_path(&cx, "onnx", onnx)))
		goto out;
	if ((err = jstr(&cx, root, "sha256", false, &sha)))
		goto out;
	if (strlen(sha) != SHA256_HEX_LEN) {
		err = df_errf(DF_EINVAL, "%s: field sha256 has %zu characters, "
			      "expected %d hex digits",
			      file, strlen(sha), SHA256_HEX_LEN);
		goto out;
	}
	for (int i = 0; i < SHA256_HEX_LEN; i++) {
		if (!isxdigit((unsigned char)sha[i])) {
			err = df_errf(DF_EINVAL,
				      "%s: field sha256: '%c' is not a hex "
				      "digit",
				      file, sha[i]);
			goto out;
		}
		m->sha256[i] = (char)tolower((unsigned char)sha[i]);
	}
	m->sha256[SHA256_HEX_LEN] = '\0';
	if ((err = parse_input(&cx, root, m)))
		goto out;

	json_t *o = NULL, *a = NULL;
	if ((err = jobj(&cx, root, "output", false, &o)))
		goto out;
	if ((err = jstr(&cx, o, "output.name", false, &m->output_name)))
		goto out;
	if ((err = jstr(&cx, root, "labels", false, &labels)))
		goto out;
	if ((err = check_rel_path(&cx, "labels", labels)))
		goto out;
	if ((err = jstr(&cx, root, "dataset", true, &m->dataset)))
		goto out;

	o = NULL;
	if ((err = jobj(&cx, root, "accuracy", true, &o)))
		goto out;
	if (o) {
		if ((err = jnum(&cx, o, "accuracy.test", false,
				&m->test_accuracy)))
			goto out;
		if (!(m->test_accuracy >= 0 && m->test_accuracy <= 1)) {
			err = df_errf(DF_EINVAL,
				      "%s: field accuracy.test = %g is not in "
				      "0..1",
				      file, m->test_accuracy);
			goto out;
		}
		if ((err = jint(&cx, o, "accuracy.images", true, 0,
				&m->test_images)))
			goto out;
	}
	if ((err = jarr(&cx, root, "per_class_accuracy", true, 0,
			MODEL_DIR_MAX_LABELS, &a)))
		goto out;
	if (a && json_array_size(a)) {
		m->n_per_class = json_array_size(a);
		m->per_class_accuracy =
			calloc(m->n_per_class, sizeof *m->per_class_accuracy);
		if (!m->per_class_accuracy) {
			err = DF_ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < m->n_per_class; i++)
			if ((err = jelem_num(&cx, a, "per_class_accuracy", i,
					     &m->per_class_accuracy[i])))
				goto out;
	}
	int64_t seed = 0;
	double secs = 0;
	if ((err = jint(&cx, root, "params", true, 0, &m->params)) ||
	    (err = jint(&cx, root, "macs", true, 0, &m->macs)) ||
	    (err = jint(&cx, root, "opset", true, 1, &m->opset)) ||
	    (err = jint(&cx, root, "seed", true, INT64_MIN, &seed)) ||
	    (err = jnum(&cx, root, "training_seconds", true, &secs)))
		goto out;

	if (!(m->onnx_path = path_join(dir, onnx)) ||
	    !(labels_path = path_join(dir, labels))) {
		err = DF_ENOMEM;
		goto out;
	}
	if ((err = parse_labels(labels_path, m)))
		goto out;
	*out = m;
	m = NULL;
out:
	model_dir_destroy(m);
	free(onnx);
	free(labels);
	free(sha);
	free(labels_path);
	json_decref(root);
	return err;
}

df_err model_dir_load(const char *dir, model_dir **out)
{
	char *path = path_join(dir, MODEL_JSON);
	char *text = NULL;
	size_t len = 0;
	if (!path)
		return DF_ENOMEM;
	df_err err = read_text(path, MODEL_JSON_MAX_BYTES, &text, &len);
	if (!err)
		err = model_dir_parse(dir, text, out);
	free(text);
	free(path);
	return err;
}

df_err model_dir_verify(const model_dir *m)
{
	char hex[SHA256_HEX_LEN + 1];
	df_err err = sha256_file(m->onnx_path, hex);
	if (err)
		return err;
	if (strcmp(hex, m->sha256) != 0)
		return df_errf(DF_ECORRUPT,
			       "%s: sha256 is %s, but model.json says %s",
			       m->onnx_path, hex, m->sha256);
	return DF_OK;
}

void model_dir_destroy(model_dir *m)
{
	if (!m)
		return;
	free(m->dir);
	free(m->name);
	free(m->onnx_path);
	free(m->input_name);
	free(m->output_name);
	for (size_t i = 0; i < m->n_labels; i++)
		free(m->labels[i]);
	free(m->labels);
	free(m->dataset);
	free(m->per_class_accuracy);
	free(m);
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void model_dir_names_free(char **names, size_t n)
{
	if (!names)
		return;
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

df_err model_dir_list(const char *models_dir, char ***names, size_t *n)
{
	DIR *d = opendir(models_dir);
	if (!d)
		return df_errf(errno == ENOENT ? DF_ENOENT : DF_EIO, "%s: %s",
			       models_dir, strerror(errno));
	df_err err = DF_OK;
	char **list = NULL;
	size_t count = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char *sub = path_join(models_dir, e->d_name);
		char *json = sub ? path_join(sub, MODEL_JSON) : NULL;
		free(sub);
		if (!json) {
			err = DF_ENOMEM;
			goto out;
		}
		struct stat st;
		int found = stat(json, &st) == 0 && S_ISREG(st.st_mode);
		free(json);
		if (!found)
			continue;
		if (count == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			char **nl = realloc(list, ncap * sizeof *nl);
			if (!nl) {
				err = DF_ENOMEM;
				goto out;
			}
			list = nl;
			cap = ncap;
		}
		if (!(list[count] = strdup(e->d_name))) {
			err = DF_ENOMEM;
			goto out;
		}
		count++;
	}
	if (count)
		qsort(list, count, sizeof *list, cmp_names);
	*names = list;
	*n = count;
	list = NULL;
out:
	model_dir_names_free(list, count);
	closedir(d);
	return err;
}
