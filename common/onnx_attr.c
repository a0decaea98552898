/*
 * onnx_attr.c - reading the attributes of the ONNX node being imported:
 * typed getters with defaults (onnx_attr_int, _bool, _float, _ints), the
 * check of a node's attributes against its op's list for the model's opset,
 * and the window attributes of Conv and pooling (kernel_shape, strides,
 * dilations, pads, auto_pad) resolved to explicit pads.
 *
 * Attributes come from untrusted models: a wrong type, a NaN, a value out of
 * range or an attribute the op does not have at that opset is an error
 * naming the node, never a silent default. Values are copied out; nothing
 * keeps pointers into the node except onnx_attr_get(), whose result is
 * borrowed from the unpacked model.
 */
#include "onnx_internal.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* ---- attributes --------------------------------------------------------- */

static const Onnx__AttributeProto *find_attr(const onnx_imp *im,
                                             const char *name)
{
	for (size_t i = 0; i < im->np->n_attribute; i++)
		if (strcmp(onnx_str_or_empty(im->np->attribute[i]->name),
		           name) == 0)
			return im->np->attribute[i];
	return NULL;
}

const char *onnx_attr_type_name(int t)
{
	switch (t) {
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT:
		return "FLOAT";
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT:
		return "INT";
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING:
		return "STRING";
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR:
		return "TENSOR";
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH:
		return "GRAPH";
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS:
		return "FLOATS";
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS:
		return "INTS";
	case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS:
		return "STRINGS";
	default:
		return "another type";
	}
}

/* The attribute called name, or NULL; DF_EINVAL if it has another type. */
df_err onnx_attr_get(const onnx_imp *im, const char *name, int type,
                     const Onnx__AttributeProto **out)
{
	const Onnx__AttributeProto *a = find_attr(im, name);
	if (a && (int)a->type != type)
		return onnx_node_err(im, DF_EINVAL,
		                     "attribute '%s' must be %s, got %s", name,
		                     onnx_attr_type_name(type),
		                     onnx_attr_type_name((int)a->type));
	*out = a;
	return DF_OK;
}

df_err onnx_attr_int(const onnx_imp *im, const char *name, int64_t def,
                     int64_t *out)
{
	const Onnx__AttributeProto *a = NULL;
	df_err err = onnx_attr_get(
	    im, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT, &a);
	if (!err)
		*out = a ? a->i : def;
	return err;
}

df_err onnx_attr_bool(const onnx_imp *im, const char *name, bool *out)
{
	int64_t v = 0;
	df_err err = onnx_attr_int(im, name, 0, &v);
	if (!err && v != 0 && v != 1)
		return onnx_node_err(im, DF_EINVAL,
		                     "attribute '%s' must be 0 or 1, got %lld",
		                     name, (long long)v);
	if (!err)
		*out = v != 0;
	return err;
}

df_err onnx_attr_float(const onnx_imp *im, const char *name, float def,
                       float *out)
{
	const Onnx__AttributeProto *a = NULL;
	df_err err = onnx_attr_get(
	    im, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT, &a);
	if (err)
		return err;
	float v = a ? a->f : def;
	if (isnan(v))
		return onnx_node_err(im, DF_EINVAL, "attribute '%s' is NaN",
		                     name);
	*out = v;
	return DF_OK;
}

/* INTS attribute with exactly `want` values into out; *present says
 * whether it was given (out untouched otherwise). */
df_err onnx_attr_ints(const onnx_imp *im, const char *name, size_t want,
                      int64_t *out, bool *present)
{
	const Onnx__AttributeProto *a = NULL;
	df_err err = onnx_attr_get(
	    im, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS, &a);
	if (err)
		return err;
	*present = a != NULL;
	if (!a)
		return DF_OK;
	if (a->n_ints != want)
		return onnx_node_err(im, DF_EINVAL,
		                     "%s has %zu values, expected %zu", name,
		                     a->n_ints, want);
	memcpy(out, a->ints, want * sizeof *out);
	return DF_OK;
}

/* Checks every attribute of the node against the op's list for the
 * model's opset, and that none is given twice. */
df_err onnx_attr_check(const onnx_imp *im, const onnx_op_spec *spec)
{
	for (size_t i = 0; i < im->np->n_attribute; i++) {
		const char *n = onnx_str_or_empty(im->np->attribute[i]->name);
		bool known = false;
		for (const onnx_attr_spec *a = spec->attrs; a->name && !known;
		     a++)
			known = strcmp(a->name, n) == 0 &&
			        im->opset >= a->since &&
			        (a->until == 0 || im->opset < a->until);
		if (!known)
			return onnx_node_err(
			    im, DF_ENOTSUP,
			    "attribute '%s' is not part of %s at opset %lld", n,
			    im->op, (long long)im->opset);
		for (size_t j = 0; j < i; j++)
			if (strcmp(
			        onnx_str_or_empty(im->np->attribute[j]->name),
			        n) == 0)
				return onnx_node_err(
				    im, DF_EINVAL, "attribute '%s' given twice",
				    n);
	}
	return DF_OK;
}

/* ---- window attributes (Conv, MaxPool, AveragePool) --------------------- */

static df_err check_win(const onnx_imp *im, const char *what, const int64_t *v,
                        int n, int64_t lo)
{
	for (int i = 0; i < n; i++)
		if (v[i] < lo || v[i] > ONNX_WIN_LIMIT)
			return onnx_node_err(
			    im, DF_EINVAL, "%s[%d] = %lld outside %lld..%lld",
			    what, i, (long long)v[i], (long long)lo,
			    (long long)ONNX_WIN_LIMIT);
	return DF_OK;
}

/*
 * Reads kernel_shape (kernel_def when absent; required when NULL), strides,
 * dilations (when has_dilations), pads and auto_pad, and resolves auto_pad
 * against x's spatial dims.
 */
df_err onnx_attr_window(const onnx_imp *im, int x, const int64_t *kernel_def,
                        bool has_dilations, onnx_window *w)
{
	const graph_value *xv = onnx_value(im, x);
	if (xv->ndim != 4)
		return onnx_node_err(
		    im, DF_ENOTSUP,
		    "only 2-D %s is supported (4-D NCHW input); input '%s' "
		    "has rank %d",
		    strcmp(im->op, "Conv") ? "pooling" : "convolution",
		    xv->name, xv->ndim);
	bool present = false;
	df_err err = onnx_attr_ints(im, "kernel_shape", 2, w->kernel, &present);
	if (err)
		return err;
	if (!present) {
		if (!kernel_def)
			return onnx_node_err(
			    im, DF_EINVAL,
			    "attribute 'kernel_shape' is required");
		w->kernel[0] = kernel_def[0];
		w->kernel[1] = kernel_def[1];
	}
	w->strides[0] = w->strides[1] = 1;
	w->dilations[0] = w->dilations[1] = 1;
	memset(w->pads, 0, sizeof w->pads);
	err = onnx_attr_ints(im, "strides", 2, w->strides, &present);
	if (!err && has_dilations)
		err =
		    onnx_attr_ints(im, "dilations", 2, w->dilations, &present);
	bool has_pads = false;
	if (!err)
		err = onnx_attr_ints(im, "pads", 4, w->pads, &has_pads);
	if (!err)
		err = check_win(im, "kernel_shape", w->kernel, 2, 1);
	if (!err)
		err = check_win(im, "strides", w->strides, 2, 1);
	if (!err)
		err = check_win(im, "dilations", w->dilations, 2, 1);
	if (!err)
		err = check_win(im, "pads", w->pads, 4, 0);
	if (err)
		return err;
	const Onnx__AttributeProto *ap = NULL;
	err = onnx_attr_get(im, "auto_pad",
	                    ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING, &ap);
	if (err || !ap)
		return err;
	char mode[16] = "";
	size_t ml = ap->s.len < sizeof mode - 1 ? ap->s.len : sizeof mode - 1;
	for (size_t i = 0; i < ml;
	     i++) /* printable copy, for matching and messages */
		mode[i] = ap->s.data[i] >= 0x20 && ap->s.data[i] < 0x7f
		              ? (char)ap->s.data[i]
		              : '?';
	mode[ml] = '\0';
	if (ap->s.len == 0 || strcmp(mode, "NOTSET") == 0)
		return DF_OK;
	bool exact = ap->s.len == ml;
	bool upper = exact && strcmp(mode, "SAME_UPPER") == 0;
	bool lower = exact && strcmp(mode, "SAME_LOWER") == 0;
	bool valid = exact && strcmp(mode, "VALID") == 0;
	if (!upper && !lower && !valid)
		return onnx_node_err(
		    im, DF_EINVAL,
		    "auto_pad '%s%s' is not NOTSET, SAME_UPPER, "
		    "SAME_LOWER or VALID",
		    mode, exact ? "" : "...");
	for (int i = 0; i < 4; i++)
		if (has_pads && w->pads[i])
			return onnx_node_err(
			    im, DF_EINVAL,
			    "pads and auto_pad %s are both given", mode);
	if (valid)
		return DF_OK;
	for (int i = 0; i < 2; i++) {
		int64_t in = xv->dims[2 + i], s = w->strides[i];
		int64_t out = (in + s - 1) / s;
		int64_t eff = (w->kernel[i] - 1) * w->dilations[i] + 1;
		int64_t total = (out - 1) * s + eff - in;
		if (total < 0)
			total = 0;
		int64_t small = total / 2, big = total - small;
		w->pads[i] = upper ? small : big;
		w->pads[2 + i] = upper ? big : small;
	}
	return DF_OK;
}
