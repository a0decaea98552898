/*
 * Unit tests for model_dir.c. Fixture model directories live in
 * tests/unit/data/models (their model.onnx is a stand-in file; the sha256
 * in model.json is `sha256sum model.onnx`). Malformed model.json variants
 * are made here by editing the fixture's JSON one field at a time; each
 * must fail with a message naming that field. The shipped models under
 * models/ are loaded and verified too when they exist.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "model_dir.h"

static char data_dir[1024];
static char tmpdir[64];

static int setup(void **state)
{
	(void)state;
	const char *src = getenv("DF_SOURCE_DIR");
	snprintf(data_dir, sizeof data_dir, "%s/tests/unit/data/models",
		 src ? src : ".");
	snprintf(tmpdir, sizeof tmpdir, "/tmp/df_model_dir_XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static const char *fixture(const char *name)
{
	static char p[1200];
	snprintf(p, sizeof p, "%s/%s", data_dir, name);
	return p;
}

static void copy_file(const char *from, const char *to)
{
	FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
	assert_non_null(a);
	assert_non_null(b);
	char buf[4096];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, a)) > 0)
		assert_int_equal(fwrite(buf, 1, n, b), n);
	fclose(a);
	fclose(b);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void loads_a_grayscale_model(void **state)
{
	(void)state;
	model_dir *m = NULL;
	assert_int_equal(model_dir_load(fixture("tiny-gray"), &m), DF_OK);
	assert_string_equal(m->name, "tiny-gray");
	assert_string_equal(m->input_name, "input");
	assert_string_equal(m->output_name, "logits");
	assert_int_equal(m->input.color, IMAGE_COLOR_GRAY);
	assert_int_equal(m->input.height, 28);
	assert_int_equal(m->input.width, 28);
	assert_int_equal(m->input_shape[1], 1);
	assert_true(m->input.mean[0] == 0.2860f);
	assert_true(m->input.std[0] == 0.3530f);
	assert_int_equal(m->n_labels, 10);
	assert_string_equal(m->labels[0], "T-shirt/top");
	assert_string_equal(m->labels[9], "Ankle boot");
	assert_string_equal(m->dataset, "fashion-mnist");
	assert_true(m->test_accuracy == 0.9234);
	assert_int_equal(m->test_images, 10000);
	assert_int_equal(m->n_per_class, 10);
	assert_true(m->per_class_accuracy[6] == 0.75);
	assert_int_equal(m->params, 123456);
	assert_int_equal(m->macs, 7890123);
	assert_int_equal(m->opset, 13);
	assert_non_null(strstr(m->onnx_path, "tiny-gray/model.onnx"));
	assert_int_equal(model_dir_verify(m), DF_OK);
	model_dir_destroy(m);
	model_dir_destroy(NULL);
}

static void loads_an_rgb_model_with_broadcast_std(void **state)
{
	(void)state;
	model_dir *m = NULL;
	assert_int_equal(model_dir_load(fixture("tiny-rgb"), &m), DF_OK);
	assert_int_equal(m->input.color, IMAGE_COLOR_RGB);
	assert_int_equal(model_input_channels(&m->input), 3);
	assert_int_equal(m->input.height, 32);
	assert_int_equal(m->input.width, 24);
	assert_true(m->input.mean[1] == 0.456f);
	assert_true(m->input.std[0] == 0.25f && m->input.std[2] == 0.25f);
	assert_int_equal(m->n_labels, 3);
	assert_null(m->dataset);
	assert_true(m->test_accuracy < 0);
	assert_null(m->per_class_accuracy);
	assert_int_equal(model_dir_verify(m), DF_OK);
	model_dir_destroy(m);
}

/* Copies tiny-gray into tmpdir/name and returns its path. */
static const char *copy_model(const char *name)
{
	static char dir[256];
	char a[1100], b[300];
	snprintf(dir, sizeof dir, "%s/%s", tmpdir, name);
	mkdir(dir, 0755);
	static const char *const files[] = {"model.json", "model.onnx",
					    "labels.txt"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(a, sizeof a, "%s/tiny-gray/%s", data_dir, files[i]);
		snprintf(b, sizeof b, "%s/%s", dir, files[i]);
		copy_file(a, b);
	}
	return dir;
}

static void verify_detects_a_changed_onnx_file(void **state)
{
	(void)state;
	const char *dir = copy_model("changed");
	model_dir *m = NULL;
	assert_int_equal(model_dir_load(dir, &m), DF_OK);
	char p[300];
	snprintf(p, sizeof p, "%s/model.onnx", dir);
	FILE *f = fopen(p, "ab");
	fputc('!', f);
	fclose(f);
	assert_int_equal(model_dir_verify(m), DF_ECORRUPT);
	assert_non_null(strstr(df_err_msg(), "changed/model.onnx"));
	assert_non_null(strstr(df_err_msg(), m->sha256));
	unlink(p);
	assert_int_equal(model_dir_verify(m), DF_ENOENT);
	model_dir_destroy(m);
}

typedef struct mutation {
	const char *parent; /* "" for the top level, else an object key */
	const char *key;
	const char *value;  /* JSON text, or NULL to delete the key */
	df_err want;
	const char *msg;    /* substring of the error message */
} mutation;

static void apply(json_t *root, const mutation *mu)
{
	json_t *obj = *mu->parent ? json_object_get(root, mu->parent) : root;
	assert_non_null(obj);
	if (!mu->value) {
		json_object_del(obj, mu->key);
		return;
	}
	json_error_t e;
	json_t *v = json_loads(mu->value, JSON_DECODE_ANY, &e);
	if (!v)
		fail_msg("bad test value %s", mu->value);
	json_object_set_new(obj, mu->key, v);
}

static void rejects_bad_fields_naming_them(void **state)
{
	(void)state;
	static const mutation cases[] = {
		{"", "name", NULL, DF_EINVAL, "field name is missing"},
		{"", "name", "5", DF_EINVAL, "field name: Expected string"},
		{"", "name", "\"\"", DF_EINVAL, "field name is empty"},
		{"", "onnx", NULL, DF_EINVAL, "field onnx is missing"},
		{"", "onnx", "\"../x.onnx\"", DF_EINVAL, "leaves the model"},
		{"", "onnx", "\"a/../../x\"", DF_EINVAL, "leaves the model"},
		{"", "onnx", "\"/etc/passwd\"", DF_EINVAL, "absolute path"},
		{"", "sha256", NULL, DF_EINVAL, "field sha256 is missing"},
		{"", "sha256", "\"abc\"", DF_EINVAL, "sha256 has 3 characters"},
		{"", "sha256",
		 "\"g000000000000000000000000000000000000000000000000000000000000000\"",
		 DF_EINVAL, "'g' is not a hex digit"},
		{"", "input", NULL, DF_EINVAL, "field input is missing"},
		{"", "input", "[]", DF_EINVAL, "field input: Expected object"},
		{"input", "name", "null", DF_EINVAL, "input.name: Expected string"},
		{"input", "shape", "[1,1,28]", DF_EINVAL,
		 "input.shape has 3 elements"},
		{"input", "shape", "[1,\"1\",28,28]", DF_EINVAL,
		 "input.shape[1]: Expected integer"},
		{"input", "shape", "[1,3,28,28]", DF_EINVAL,
		 "field input.shape: [1,3,28,28]"},
		{"input", "shape", "[2,1,28,28]", DF_EINVAL, "input.shape"},
		{"input", "shape", "[1,1,0,28]", DF_EINVAL, "input.shape"},
		{"input", "shape", "{}", DF_EINVAL, "input.shape: Expected array"},
		{"input", "color", "\"cmyk\"", DF_EINVAL, "input.color: 'cmyk'"},
		{"input", "color", "7", DF_EINVAL,
		 "input.color: Expected string"},
		{"input", "color", NULL, DF_EINVAL, "input.color is missing"},
		{"input", "resize", "[28,27]", DF_EINVAL, "input.resize[1] is 27"},
		{"input", "resize", "[28]", DF_EINVAL, "input.resize has 1"},
		{"input", "mean", "[\"x\"]", DF_EINVAL,
		 "input.mean[0]: Expected real"},
		{"input", "mean", "[]", DF_EINVAL, "input.mean has 0 elements"},
		{"input", "mean", "[0.1, 0.2]", DF_EINVAL,
		 "input.mean has 2 elements"},
		{"input", "std", "[0]", DF_EINVAL, "input.std[0] = 0"},
		{"input", "std", "[-0.5]", DF_EINVAL, "input.std[0]"},
		{"input", "std", NULL, DF_EINVAL, "input.std is missing"},
		{"", "output", "{}", DF_EINVAL, "field output.name is missing"},
		{"", "output", NULL, DF_EINVAL, "field output is missing"},
		{"", "labels", "3", DF_EINVAL, "field labels: Expected string"},
		{"", "labels", "\"missing.txt\"", DF_ENOENT, "missing.txt"},
		{"", "dataset", "[]", DF_EINVAL, "field dataset: Expected string"},
		{"", "accuracy", "0.9", DF_EINVAL, "accuracy: Expected object"},
		{"accuracy", "test", "\"high\"", DF_EINVAL,
		 "accuracy.test: Expected real"},
		{"accuracy", "test", "1.5", DF_EINVAL, "accuracy.test = 1.5"},
		{"accuracy", "test", NULL, DF_EINVAL, "accuracy.test is missing"},
		{"accuracy", "images", "1.5", DF_EINVAL,
		 "accuracy.images: Expected integer"},
		{"accuracy", "images", "-1", DF_EINVAL, "accuracy.images is -1"},
		{"", "per_class_accuracy", "[0.9, \"x\"]", DF_EINVAL,
		 "per_class_accuracy[1]: Expected real"},
		{"", "params", "\"many\"", DF_EINVAL,
		 "field params: Expected integer"},
		{"", "macs", "-3", DF_EINVAL, "field macs is -3"},
		{"", "opset", "0", DF_EINVAL, "field opset is 0"},
		{"", "seed", "0.5", DF_EINVAL, "field seed: Expected integer"},
		{"", "training_seconds", "\"long\"", DF_EINVAL,
		 "training_seconds: Expected real"},
	};
	const char *dir = copy_model("mut");
	char jpath[300];
	snprintf(jpath, sizeof jpath, "%s/model.json", dir);
	json_error_t e;
	json_t *base = json_load_file(fixture("tiny-gray/model.json"), 0, &e);
	assert_non_null(base);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		json_t *root = json_deep_copy(base);
		apply(root, &cases[i]);
		assert_int_equal(json_dump_file(root, jpath, 0), 0);
		json_decref(root);
		model_dir *m = NULL;
		df_err err = model_dir_load(dir, &m);
		if (err != cases[i].want || !strstr(df_err_msg(), cases[i].msg))
			fail_msg("%s.%s = %s: got %s '%s', expected '%s'",
				 cases[i].parent, cases[i].key,
				 cases[i].value ? cases[i].value : "(deleted)",
				 df_err_str(err), df_err_msg(), cases[i].msg);
		assert_null(m);
	}
	/* Unknown fields are ignored (forward compatibility). */
	json_t *root = json_deep_copy(base);
	json_object_set_new(root, "future_field", json_true());
	assert_int_equal(json_dump_file(root, jpath, 0), 0);
	json_decref(root);
	model_dir *m = NULL;
	assert_int_equal(model_dir_load(dir, &m), DF_OK);
	model_dir_destroy(m);
	json_decref(base);
}

static void rejects_bad_json_and_labels(void **state)
{
	(void)state;
	const char *dir = copy_model("text");
	char jpath[300], lpath[300];
	snprintf(jpath, sizeof jpath, "%s/model.json", dir);
	snprintf(lpath, sizeof lpath, "%s/labels.txt", dir);
	model_dir *m = NULL;

	write_text(jpath, "{\"name\": \"x\",\n  oops}");
	assert_int_equal(model_dir_load(dir, &m), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "model.json:2:"));
	write_text(jpath, "[1, 2]");
	assert_int_equal(model_dir_load(dir, &m), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "top level is not an object"));
	write_text(jpath, "{\"name\": \"a\", \"name\": \"b\"}");
	assert_int_equal(model_dir_load(dir, &m), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "duplicate"));
	unlink(jpath);
	assert_int_equal(model_dir_load(dir, &m), DF_ENOENT);

	char good[1100];
	snprintf(good, sizeof good, "%s/tiny-gray/model.json", data_dir);
	copy_file(good, jpath);
	write_text(lpath, "");
	assert_int_equal(model_dir_load(dir, &m), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "no labels"));
	write_text(lpath, "a\n\nc\n");
	assert_int_equal(model_dir_load(dir, &m), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "line 2 is empty"));
	assert_null(m);
	/* CRLF and a missing final newline are fine. */
	write_text(lpath, "alpha\r\nbeta\r\ngamma");
	assert_int_equal(model_dir_load(dir, &m), DF_OK);
	assert_int_equal(m->n_labels, 3);
	assert_string_equal(m->labels[1], "beta");
	assert_string_equal(m->labels[2], "gamma");
	model_dir_destroy(m);
}

static void lists_model_directories(void **state)
{
	(void)state;
	char **names = NULL;
	size_t n = 0;
	assert_int_equal(model_dir_list(data_dir, &names, &n), DF_OK);
	assert_int_equal(n, 2);
	assert_string_equal(names[0], "tiny-gray");
	assert_string_equal(names[1], "tiny-rgb");
	model_dir_names_free(names, n);
	char empty[300];
	snprintf(empty, sizeof empty, "%s/empty", tmpdir);
	mkdir(empty, 0755);
	names = NULL;
	assert_int_equal(model_dir_list(empty, &names, &n), DF_OK);
	assert_int_equal(n, 0);
	model_dir_names_free(names, n);
	assert_int_equal(model_dir_list("/nonexistent/models", &names, &n),
			 DF_ENOENT);
}

/* The shipped models, once trained: each must load and match its hash. */
static void shipped_models_load_and_verify(void **state)
{
	(void)state;
	char models[1100];
	const char *src = getenv("DF_SOURCE_DIR");
	snprintf(models, sizeof models, "%s/models", src ? src : ".");
	char **names = NULL;
	size_t n = 0;
	if (model_dir_list(models, &names, &n) != DF_OK || n == 0) {
		model_dir_names_free(names, n);
		skip();
	}
	for (size_t i = 0; i < n; i++) {
		char dir[1400];
		snprintf(dir, sizeof dir, "%s/%s", models, names[i]);
		model_dir *m = NULL;
		df_err err = model_dir_load(dir, &m);
		if (err)
			fail_msg("%s: %s", names[i], df_err_msg());
		if ((err = model_dir_verify(m)))
			fail_msg("%s: %s", names[i], df_err_msg());
		assert_string_equal(m->name, names[i]);
		assert_true(m->n_labels >= 2);
		model_dir_destroy(m);
	}
	model_dir_names_free(names, n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(loads_a_grayscale_model),
		cmocka_unit_test(loads_an_rgb_model_with_broadcast_std),
		cmocka_unit_test(verify_detects_a_changed_onnx_file),
		cmocka_unit_test(rejects_bad_fields_naming_them),
		cmocka_unit_test(rejects_bad_json_and_labels),
		cmocka_unit_test(lists_model_directories),
		cmocka_unit_test(shipped_models_load_and_verify),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
