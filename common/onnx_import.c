/*
 * onnx_import.c - ONNX ModelProto to graph.
 *
 * The bytes are first walked as protobuf wire format with the generated
 * descriptors, bounding message nesting (protobuf-c recurses without a
 * limit), then unpacked with protobuf-c. Nodes are imported in file order:
 * ONNX requires topological order, and a name used before it is defined is
 * reported as unknown. Each node's output shape is inferred as soon as it
 * is added (graph_infer_node), so that shape-only ops (Shape, Gather,
 * Unsqueeze, ...) are evaluated on the spot, and nodes whose inputs are all
 * constant are folded at once (graph_fold_node). Identity, Dropout and
 * float Casts become no node at all: their output name maps to their input
 * value. Outputs dicefleet never computes (BatchNorm training statistics,
 * the Dropout mask, MaxPool Indices) are registered as unusable so that a
 * model reading them gets a clear error instead of "unknown input".
 *
 * Names map to value indices through an open-addressing hash table whose
 * keys are borrowed from the unpacked model, which outlives the import.
 */
#include "onnx_import.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "onnx.pb-c.h"

#define MAX_DEPTH    32        /* protobuf message nesting */
#define MAX_COUNT    (1 << 20) /* nodes, initializers, graph inputs */
#define MAX_NODE_IO  4096      /* inputs or outputs of one node */
#define MAX_GRAPH_IO 4096      /* graph inputs (not initializers) and outputs */
#define WIN_LIMIT    ((int64_t)1 << 24) /* kernel, stride, dilation, pad */

enum { NAME_UNUSABLE = -2 };

typedef struct name_entry {
	const char *key; /* borrowed from the model; NULL = empty slot */
	int value;       /* value index, or NAME_UNUSABLE */
	int node;        /* for NAME_UNUSABLE: index of the producing node */
} name_entry;

typedef struct imp {
	graph *g;
	int64_t opset;
	const Onnx__GraphProto *gp;
	name_entry *tab;
	size_t cap, count;
	/* the node being imported */
	const Onnx__NodeProto *np;
	const char *op;
	char name[160];
} imp;

typedef df_err (*op_fn)(imp *im, const int *in, int n_in);

typedef struct attr_spec {
	const char *name;
	int since, until; /* opsets where it exists: since <= opset < until (0 =
	                     open) */
} attr_spec;

typedef struct op_spec {
	const char *op_type;
	op_fn fn;
	int min_in, max_in; /* over all opsets; handlers refine per opset */
	int max_out;        /* outputs beyond the first are never computed */
	attr_spec attrs[9];
} op_spec;

/* ---- errors and names --------------------------------------------------- */

static df_err node_err(const imp *im, df_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static df_err node_err(const imp *im, df_err err, const char *fmt, ...)
{
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return df_errf(err, "node '%s' (%s): %s", im->name, im->op, msg);
}

static const char *str_or_empty(const char *s)
{
	return s ? s : "";
}

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static name_entry *map_slot(const imp *im, const char *key)
{
	size_t mask = im->cap - 1;
	for (size_t i = hash_str(key) & mask;; i = (i + 1) & mask)
		if (!im->tab[i].key || strcmp(im->tab[i].key, key) == 0)
			return &im->tab[i];
}

static const name_entry *map_get(const imp *im, const char *key)
{
	if (!im->cap)
		return NULL;
	const name_entry *e = map_slot(im, key);
	return e->key ? e : NULL;
}

/* Adds key -> value; the key must be new. */
static df_err map_put(imp *im, const char *key, int value, int node)
{
	if ((im->count + 1) * 2 > im->cap) {
		size_t ncap = im->cap ? im->cap * 2 : 256;
		name_entry *old = im->tab;
		size_t ocap = im->cap;
		im->tab = calloc(ncap, sizeof *im->tab);
		if (!im->tab) {
			im->tab = old;
			return df_errf(DF_ENOMEM, "name table");
		}
		im->cap = ncap;
		for (size_t i = 0; i < ocap; i++)
			if (old[i].key)
				*map_slot(im, old[i].key) = old[i];
		free(old);
	}
	name_entry *e = map_slot(im, key);
	if (e->key)
		return df_errf(DF_EINVAL, "name '%s' is defined twice", key);
	e->key = key;
	e->value = value;
	e->node = node;
	im->count++;
	return DF_OK;
}

static const graph_value *V(const imp *im, int v)
{
	return &im->g->values[v];
}

static const char *out_name(const imp *im)
{
	return im->np->output[0];
}

/* ---- protobuf wire pre-scan --------------------------------------------- */

static bool read_varint(const uint8_t *p, size_t len, size_t *pos,
                        uint64_t *out)
{
	uint64_t v = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		if (*pos >= len)
			return false;
		uint8_t b = p[(*pos)++];
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*out = v;
			return true;
		}
	}
	return false;
}

/* Checks that p[0..len) is well-formed wire format for desc, with messages
 * nested at most MAX_DEPTH deep. */
static df_err wire_scan(const uint8_t *p, size_t len,
                        const ProtobufCMessageDescriptor *desc, int depth)
{
	if (depth > MAX_DEPTH)
		return df_errf(DF_EINVAL,
		               "not a valid ONNX model: protobuf messages "
		               "nested deeper than %d",
		               MAX_DEPTH);
	size_t pos = 0;
	while (pos < len) {
		uint64_t tag = 0, n = 0;
		if (!read_varint(p, len, &pos, &tag) || (tag >> 3) == 0 ||
		    (tag >> 3) > 0x1fffffff)
			goto bad;
		switch (tag & 7) {
		case 0:
			if (!read_varint(p, len, &pos, &n))
				goto bad;
			break;
		case 1:
			if (len - pos < 8)
				goto bad;
			pos += 8;
			break;
		case 5:
			if (len - pos < 4)
				goto bad;
			pos += 4;
			break;
		case 2: {
			if (!read_varint(p, len, &pos, &n) || n > len - pos)
				goto bad;
			const ProtobufCFieldDescriptor *fd =
			    desc ? protobuf_c_message_descriptor_get_field(
			               desc, (unsigned)(tag >> 3))
			         : NULL;
			if (fd && fd->type == PROTOBUF_C_TYPE_MESSAGE) {
				df_err err =
				    wire_scan(p + pos, (size_t)n,
				              fd->descriptor, depth + 1);
				if (err)
					return err;
			}
			pos += (size_t)n;
			break;
		}
		default:
			goto bad;
		}
	}
	return DF_OK;
bad:
	return df_errf(DF_EINVAL,
	               "not a valid ONNX model: truncated or malformed "
	               "protobuf (at byte %zu of a %s message)",
	               pos, desc ? desc->short_name : "?");
}

/* ---- tensors ------------------------------------------------------------ */

static const char *onnx_dtype_name(int32_t t)
{
	static const char *const names[] = {
	    "UNDEFINED",  "FLOAT",    "UINT8",  "INT8",   "UINT16",
	    "INT16",      "INT32",    "INT64",  "STRING", "BOOL",
	    "FLOAT16",    "DOUBLE",   "UINT32", "UINT64", "COMPLEX64",
	    "COMPLEX128", "BFLOAT16",
	};
	return t >= 0 && t < (int32_t)(sizeof names / sizeof names[0])
	           ? names[t]
	           : "unknown";
}

static uint64_t rd_le(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/*
 * New tensor from a TensorProto. `what` names it in messages ("initializer
 * 'w'"). Sizes are checked against the data actually present before
 * anything is allocated, so huge declared shapes cost nothing.
 */
static df_err tensor_from_proto(const Onnx__TensorProto *tp, const char *what,
                                tensor **out)
{
	if ((tp->has_data_location &&
	     tp->data_location ==
	         ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL) ||
	    tp->n_external_data)
		return df_errf(
		    DF_ENOTSUP,
		    "%s stores its data in an external file, which is not "
		    "supported (re-save the model with the weights inside)",
		    what);
	if (tp->segment)
		return df_errf(DF_ENOTSUP, "%s is a segment of a larger tensor",
		               what);
	if (tp->n_dims > TENSOR_MAX_DIMS)
		return df_errf(DF_ENOTSUP,
		               "%s has rank %zu, at most %d is supported", what,
		               tp->n_dims, TENSOR_MAX_DIMS);
	int64_t dims[TENSOR_MAX_DIMS] = {0};
	for (size_t i = 0; i < tp->n_dims; i++) {
		if (tp->dims[i] < 0)
			return df_errf(DF_EINVAL,
			               "%s has a negative dim (%lld)", what,
			               (long long)tp->dims[i]);
		dims[i] = tp->dims[i];
	}
	int32_t dt = tp->has_data_type ? tp->data_type : 0;
	size_t src_size;
	tensor_dtype dst;
	size_t n_typed;
	switch (dt) {
	case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT:
		src_size = 4, dst = TENSOR_F32, n_typed = tp->n_float_data;
		break;
	case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
		src_size = 8, dst = TENSOR_I64, n_typed = tp->n_int64_data;
		break;
	case ONNX__TENSOR_PROTO__DATA_TYPE__INT32:
		src_size = 4, dst = TENSOR_I64, n_typed = tp->n_int32_data;
		break;
	case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL:
		src_size = 1, dst = TENSOR_I64, n_typed = tp->n_int32_data;
		break;
	default:
		return df_errf(
		    DF_ENOTSUP,
		    "%s has data type %s; only FLOAT, INT64, INT32 and BOOL "
		    "tensors are supported",
		    what, onnx_dtype_name(dt));
	}
	size_t numel = 0;
	df_err err = tensor_shape_numel((int)tp->n_dims, dims, dst, &numel);
	if (err) {
		char s[160];
		tensor_shape_str((int)tp->n_dims, dims, s, sizeof s);
		return df_errf(err, "%s: shape %s is too large", what, s);
	}
	bool raw = tp->has_raw_data && tp->raw_data.len > 0;
	if (raw && n_typed)
		return df_errf(DF_EINVAL, "%s has both raw_data and typed data",
		               what);
	if (raw && tp->raw_data.len != numel * src_size)
		return df_errf(
		    DF_EINVAL,
		    "%s: raw_data has %zu bytes, its shape needs %zu x %zu",
		    what, tp->raw_data.len, numel, src_size);
	if (!raw && n_typed != numel)
		return df_errf(DF_EINVAL,
		               "%s: %s has %zu values, its shape needs %zu",
		               what, numel && !n_typed ? "data" : "typed data",
		               n_typed, numel);
	tensor *t = NULL;
	err = tensor_create(dst, (int)tp->n_dims, dims, &t);
	if (err)
		return err;
	for (size_t i = 0; i < numel; i++) {
		if (raw) {
			uint64_t bits =
			    rd_le(tp->raw_data.data + i * src_size, src_size);
			if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
				uint32_t u = (uint32_t)bits;
				memcpy(&tensor_f32(t)[i], &u, 4);
			} else if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT64) {
				tensor_i64(t)[i] = (int64_t)bits;
			} else if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT32) {
				tensor_i64(t)[i] = (int32_t)(uint32_t)bits;
			} else {
				tensor_i64(t)[i] = bits != 0;
			}
		} else if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
			tensor_f32(t)[i] = tp->float_data[i];
		} else if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT64) {
			tensor_i64(t)[i] = tp->int64_data[i];
		} else if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT32) {
			tensor_i64(t)[i] = tp->int32_data[i];
		} else {
			tensor_i64(t)[i] = tp->int32_data[i] != 0;
		}
	}
	*out = t;
	return DF_OK;
}

/* ---- attributes --------------------------------------------------------- */

static const Onnx__AttributeProto *find_attr(const imp *im, const char *name)
{
	for (size_t i = 0; i < im->np->n_attribute; i++)
		if (strcmp(str_or_empty(im->np->attribute[i]->name), name) == 0)
			return im->np->attribute[i];
	return NULL;
}

static const char *attr_type_name(int t)
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
static df_err get_attr(const imp *im, const char *name, int type,
                       const Onnx__AttributeProto **out)
{
	const Onnx__AttributeProto *a = find_attr(im, name);
	if (a && (int)a->type != type)
		return node_err(
		    im, DF_EINVAL, "attribute '%s' must be %s, got %s", name,
		    attr_type_name(type), attr_type_name((int)a->type));
	*out = a;
	return DF_OK;
}

static df_err attr_int(const imp *im, const char *name, int64_t def,
                       int64_t *out)
{
	const Onnx__AttributeProto *a = NULL;
	df_err err =
	    get_attr(im, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT, &a);
	if (!err)
		*out = a ? a->i : def;
	return err;
}

static df_err attr_bool(const imp *im, const char *name, bool *out)
{
	int64_t v = 0;
	df_err err = attr_int(im, name, 0, &v);
	if (!err && v != 0 && v != 1)
		return node_err(im, DF_EINVAL,
		                "attribute '%s' must be 0 or 1, got %lld", name,
		                (long long)v);
	if (!err)
		*out = v != 0;
	return err;
}

static df_err attr_float(const imp *im, const char *name, float def, float *out)
{
	const Onnx__AttributeProto *a = NULL;
	df_err err = get_attr(im, name,
	                      ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT, &a);
	if (err)
		return err;
	float v = a ? a->f : def;
	if (isnan(v))
		return node_err(im, DF_EINVAL, "attribute '%s' is NaN", name);
	*out = v;
	return DF_OK;
}

/* INTS attribute with exactly `want` values into out; *present says
 * whether it was given (out untouched otherwise). */
static df_err attr_ints(const imp *im, const char *name, size_t want,
                        int64_t *out, bool *present)
{
	const Onnx__AttributeProto *a = NULL;
	df_err err =
	    get_attr(im, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS, &a);
	if (err)
		return err;
	*present = a != NULL;
	if (!a)
		return DF_OK;
	if (a->n_ints != want)
		return node_err(im, DF_EINVAL,
		                "%s has %zu values, expected %zu", name,
		                a->n_ints, want);
	memcpy(out, a->ints, want * sizeof *out);
	return DF_OK;
}

/* Checks every attribute of the node against the op's list for the
 * model's opset, and that none is given twice. */
static df_err check_attrs(const imp *im, const op_spec *spec)
{
	for (size_t i = 0; i < im->np->n_attribute; i++) {
		const char *n = str_or_empty(im->np->attribute[i]->name);
		bool known = false;
		for (const attr_spec *a = spec->attrs; a->name && !known; a++)
			known = strcmp(a->name, n) == 0 &&
			        im->opset >= a->since &&
			        (a->until == 0 || im->opset < a->until);
		if (!known)
			return node_err(
			    im, DF_ENOTSUP,
			    "attribute '%s' is not part of %s at opset %lld", n,
			    im->op, (long long)im->opset);
		for (size_t j = 0; j < i; j++)
			if (strcmp(str_or_empty(im->np->attribute[j]->name),
			           n) == 0)
				return node_err(im, DF_EINVAL,
				                "attribute '%s' given twice",
				                n);
	}
	return DF_OK;
}

/* ---- emitting ----------------------------------------------------------- */

/* Adds nd as a graph node writing a new value called `name` (inferring its
 * shape and folding it when its inputs are constant); *v gets the value. */
static df_err emit_named(imp *im, graph_node *nd, const char *name, int *v)
{
	int idx = -1;
	df_err err = graph_add_value(im->g, name, 0, NULL, NULL, &nd->output);
	if (!err)
		err = graph_add_node(im->g, nd, im->name, &idx);
	if (!err)
		err = graph_infer_node(im->g, idx);
	bool folded = false;
	if (!err)
		err = graph_fold_node(im->g, idx, &folded);
	if (!err)
		*v = nd->output;
	return err;
}

/* emit_named() for the node's output, registered under its ONNX name. */
static df_err emit(imp *im, graph_node *nd)
{
	int v = -1;
	df_err err = emit_named(im, nd, out_name(im), &v);
	return err ? err : map_put(im, out_name(im), v, -1);
}

/* The node's output is the constant t (taken over, also on failure). */
static df_err emit_const(imp *im, tensor *t)
{
	int v = -1;
	df_err err = graph_add_value(im->g, out_name(im), 0, NULL, t, &v);
	if (err) {
		tensor_destroy(t);
		return err;
	}
	return map_put(im, out_name(im), v, -1);
}

/* The node's output is value x reshaped to (ndim, dims): a constant when x
 * is one, else a one-input Reshape node. */
static df_err emit_reshape(imp *im, int x, int ndim, const int64_t *dims)
{
	const tensor *c = V(im, x)->constant;
	if (c) {
		tensor *t = NULL;
		df_err err = tensor_create(c->dtype, ndim, dims, &t);
		if (err)
			return node_err(im, err, "cannot reshape constant");
		if (t->numel != c->numel) {
			tensor_destroy(t);
			return node_err(im, DF_EINVAL,
			                "reshape changes the element count");
		}
		memcpy(t->data, c->data, tensor_nbytes(t));
		return emit_const(im, t);
	}
	int v = -1, idx = -1;
	df_err err = graph_add_value(im->g, out_name(im), ndim, dims, NULL, &v);
	if (err)
		return err;
	graph_node nd;
	memset(&nd, 0, sizeof nd);
	nd.op = GRAPH_OP_RESHAPE;
	nd.n_inputs = 1;
	nd.inputs[0] = x;
	for (int i = 1; i < GRAPH_MAX_INPUTS; i++)
		nd.inputs[i] = -1;
	nd.output = v;
	err = graph_add_node(im->g, &nd, im->name, &idx);
	if (!err)
		err = graph_infer_node(im->g, idx);
	return err ? err : map_put(im, out_name(im), v, -1);
}

static graph_node new_node(graph_op op, int n, const int *in)
{
	graph_node nd;
	memset(&nd, 0, sizeof nd);
	nd.op = op;
	nd.n_inputs = n;
	for (int i = 0; i < GRAPH_MAX_INPUTS; i++)
		nd.inputs[i] = i < n ? in[i] : -1;
	return nd;
}

/* Constant input `slot` as an i64 vector (must be 1-D, or 0-D when
 * allow_scalar); ENOTSUP naming it if it is computed. */
static df_err const_i64(const imp *im, int v, const char *what,
                        bool allow_scalar, const tensor **out)
{
	const tensor *t = V(im, v)->constant;
	if (!t)
		return node_err(
		    im, DF_ENOTSUP,
		    "%s '%s' is computed at run time; only constant (or "
		    "statically known) values are supported",
		    what, V(im, v)->name);
	if (t->dtype != TENSOR_I64 || t->ndim > 1 ||
	    (t->ndim == 0 && !allow_scalar))
		return node_err(im, DF_EINVAL,
		                "%s '%s' must be a 1-D int64 tensor", what,
		                V(im, v)->name);
	*out = t;
	return DF_OK;
}

/* ---- window attributes (Conv, MaxPool, AveragePool) --------------------- */

typedef struct window {
	int64_t kernel[2], strides[2], dilations[2], pads[4];
} window;

static df_err check_win(const imp *im, const char *what, const int64_t *v,
                        int n, int64_t lo)
{
	for (int i = 0; i < n; i++)
		if (v[i] < lo || v[i] > WIN_LIMIT)
			return node_err(im, DF_EINVAL,
			                "%s[%d] = %lld outside %lld..%lld",
			                what, i, (long long)v[i], (long long)lo,
			                (long long)WIN_LIMIT);
	return DF_OK;
}

/*
 * Reads kernel_shape (kernel_def when absent; required when NULL), strides,
 * dilations (when has_dilations), pads and auto_pad, and resolves auto_pad
 * against x's spatial dims.
 */
static df_err parse_window(const imp *im, int x, const int64_t *kernel_def,
                           bool has_dilations, window *w)
{
	const graph_value *xv = V(im, x);
	if (xv->ndim != 4)
		return node_err(
		    im, DF_ENOTSUP,
		    "only 2-D %s is supported (4-D NCHW input); input '%s' "
		    "has rank %d",
		    strcmp(im->op, "Conv") ? "pooling" : "convolution",
		    xv->name, xv->ndim);
	bool present = false;
	df_err err = attr_ints(im, "kernel_shape", 2, w->kernel, &present);
	if (err)
		return err;
	if (!present) {
		if (!kernel_def)
			return node_err(im, DF_EINVAL,
			                "attribute 'kernel_shape' is required");
		w->kernel[0] = kernel_def[0];
		w->kernel[1] = kernel_def[1];
	}
	w->strides[0] = w->strides[1] = 1;
	w->dilations[0] = w->dilations[1] = 1;
	memset(w->pads, 0, sizeof w->pads);
	err = attr_ints(im, "strides", 2, w->strides, &present);
	if (!err && has_dilations)
		err = attr_ints(im, "dilations", 2, w->dilations, &present);
	bool has_pads = false;
	if (!err)
		err = attr_ints(im, "pads", 4, w->pads, &has_pads);
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
	err = get_attr(im, "auto_pad",
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
		return node_err(im, DF_EINVAL,
		                "auto_pad '%s%s' is not NOTSET, SAME_UPPER, "
		                "SAME_LOWER or VALID",
		                mode, exact ? "" : "...");
	for (int i = 0; i < 4; i++)
		if (has_pads && w->pads[i])
			return node_err(im, DF_EINVAL,
			                "pads and auto_pad %s are both given",
			                mode);
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

/* ---- op handlers -------------------------------------------------------- */

static df_err op_conv(imp *im, const int *in, int n_in)
{
	const graph_value *wv = V(im, in[1]);
	if (V(im, in[0])->ndim == 4 && wv->ndim != 4)
		return node_err(im, DF_EINVAL,
		                "weight '%s' has rank %d, expected 4", wv->name,
		                wv->ndim);
	window w;
	int64_t kdef[2] = {wv->ndim == 4 ? wv->dims[2] : 0,
	                   wv->ndim == 4 ? wv->dims[3] : 0};
	df_err err = parse_window(im, in[0], kdef, true, &w);
	int64_t group = 1;
	if (!err)
		err = attr_int(im, "group", 1, &group);
	if (err)
		return err;
	if (group < 1 || group > WIN_LIMIT)
		return node_err(im, DF_EINVAL, "group %lld is out of range",
		                (long long)group);
	graph_node nd =
	    new_node(GRAPH_OP_CONV, n_in > 2 && in[2] >= 0 ? 3 : 2, in);
	graph_conv_attr *a = &nd.attr.conv;
	memcpy(a->kernel, w.kernel, sizeof a->kernel);
	memcpy(a->strides, w.strides, sizeof a->strides);
	memcpy(a->dilations, w.dilations, sizeof a->dilations);
	memcpy(a->pads, w.pads, sizeof a->pads);
	a->group = group;
	return emit(im, &nd);
}

static df_err op_pool(imp *im, const int *in, int n_in)
{
	(void)n_in;
	bool max = strcmp(im->op, "MaxPool") == 0;
	if (max && im->np->n_output > 1 && im->opset < 8)
		return node_err(im, DF_EINVAL,
		                "MaxPool has one output before opset 8");
	window w;
	df_err err = parse_window(im, in[0], NULL, max, &w);
	bool ceil_mode = false, include_pad = false;
	if (!err)
		err = attr_bool(im, "ceil_mode", &ceil_mode);
	if (!err && !max)
		err = attr_bool(im, "count_include_pad", &include_pad);
	if (!err && max) {
		int64_t so = 0;
		err = attr_int(im, "storage_order", 0,
		               &so); /* only affects Indices */
	}
	if (err)
		return err;
	graph_node nd =
	    new_node(max ? GRAPH_OP_MAXPOOL : GRAPH_OP_AVGPOOL, 1, in);
	graph_pool_attr *a = &nd.attr.pool;
	memcpy(a->kernel, w.kernel, sizeof a->kernel);
	memcpy(a->strides, w.strides, sizeof a->strides);
	memcpy(a->dilations, w.dilations, sizeof a->dilations);
	memcpy(a->pads, w.pads, sizeof a->pads);
	a->ceil_mode = ceil_mode;
	a->count_include_pad = include_pad;
	return emit(im, &nd);
}

static df_err op_gemm(imp *im, const int *in, int n_in)
{
	int c = n_in > 2 ? in[2] : -1;
	if (c < 0 && im->opset < 11)
		return node_err(im, DF_EINVAL,
		                "input C is required before opset 11");
	graph_gemm_attr a = {1.0f, 1.0f, false, false};
	df_err err = attr_float(im, "alpha", 1.0f, &a.alpha);
	if (!err)
		err = attr_float(im, "beta", 1.0f, &a.beta);
	if (!err)
		err = attr_bool(im, "transA", &a.trans_a);
	if (!err)
		err = attr_bool(im, "transB", &a.trans_b);
	if (err)
		return err;
	if (a.alpha == 0.0f)
		return node_err(im, DF_ENOTSUP,
		                "alpha = 0 (a Gemm that ignores A and B)");
	if (a.beta == 0.0f) { /* C does not contribute */
		c = -1;
		a.beta = 1.0f;
	}
	int ins[3] = {in[0], in[1], c};
	graph_node nd = new_node(GRAPH_OP_GEMM, c >= 0 ? 3 : 2, ins);
	nd.attr.gemm = a;
	return emit(im, &nd);
}

static df_err op_simple(imp *im, const int *in, int n_in)
{
	static const struct {
		const char *name;
		graph_op op;
	} map[] = {
	    {"MatMul", GRAPH_OP_MATMUL},
	    {"Relu", GRAPH_OP_RELU},
	    {"Sigmoid", GRAPH_OP_SIGMOID},
	    {"GlobalAveragePool", GRAPH_OP_GLOBALAVGPOOL},
	    {"Add", GRAPH_OP_ADD},
	    {"Mul", GRAPH_OP_MUL},
	};
	for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
		if (strcmp(im->op, map[i].name) == 0) {
			graph_node nd = new_node(map[i].op, n_in, in);
			return emit(im, &nd);
		}
	return node_err(im, DF_EINTERNAL, "no handler");
}

static df_err op_leakyrelu(imp *im, const int *in, int n_in)
{
	graph_node nd = new_node(GRAPH_OP_LEAKYRELU, n_in, in);
	df_err err = attr_float(im, "alpha", 0.01f, &nd.attr.leaky.alpha);
	return err ? err : emit(im, &nd);
}

static df_err op_batchnorm(imp *im, const int *in, int n_in)
{
	if (im->np->n_output > (im->opset < 14 ? 5u : 3u))
		return node_err(im, DF_EINVAL, "%zu outputs", im->np->n_output);
	int64_t spatial = 1, training = 0;
	df_err err = attr_int(im, "spatial", 1, &spatial);
	if (!err)
		err = attr_int(im, "training_mode", 0, &training);
	if (err)
		return err;
	if (spatial != 1)
		return node_err(im, DF_ENOTSUP,
		                "spatial = %lld (per-activation statistics)",
		                (long long)spatial);
	if (training != 0)
		return node_err(im, DF_ENOTSUP,
		                "training_mode = %lld; only inference is "
		                "supported",
		                (long long)training);
	float momentum = 0.9f;
	graph_node nd = new_node(GRAPH_OP_BATCHNORM, n_in, in);
	err = attr_float(im, "epsilon", 1e-5f, &nd.attr.bn.epsilon);
	if (!err)
		err = attr_float(im, "momentum", 0.9f, &momentum);
	return err ? err : emit(im, &nd);
}

/* Optional scalar f32 constant input (Clip bounds). */
static df_err const_scalar_f32(const imp *im, int v, const char *what,
                               float *out)
{
	if (v < 0)
		return DF_OK;
	const tensor *t = V(im, v)->constant;
	if (!t)
		return node_err(im, DF_ENOTSUP,
		                "%s '%s' is computed; only constant "
		                "bounds are supported",
		                what, V(im, v)->name);
	if (t->dtype != TENSOR_F32 || t->numel != 1 || t->ndim > 1)
		return node_err(im, DF_EINVAL, "%s '%s' must be a float scalar",
		                what, V(im, v)->name);
	if (isnan(tensor_f32(t)[0]))
		return node_err(im, DF_EINVAL, "%s is NaN", what);
	*out = tensor_f32(t)[0];
	return DF_OK;
}

static df_err op_clip(imp *im, const int *in, int n_in)
{
	float lo = -INFINITY, hi = INFINITY;
	df_err err;
	if (im->opset < 11) {
		if (n_in > 1)
			return node_err(im, DF_EINVAL,
			                "Clip has one input before opset 11");
		err = attr_float(im, "min", -INFINITY, &lo);
		if (!err)
			err = attr_float(im, "max", INFINITY, &hi);
	} else {
		err = const_scalar_f32(im, n_in > 1 ? in[1] : -1, "min", &lo);
		if (!err)
			err = const_scalar_f32(im, n_in > 2 ? in[2] : -1, "max",
			                       &hi);
	}
	if (err)
		return err;
	graph_node nd = new_node(GRAPH_OP_CLIP, 1, in);
	nd.attr.clip.lo = lo;
	nd.attr.clip.hi = hi;
	return emit(im, &nd);
}

static df_err op_concat(imp *im, const int *in, int n_in)
{
	const Onnx__AttributeProto *a = NULL;
	df_err err = get_attr(im, "axis",
	                      ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT, &a);
	if (err)
		return err;
	if (!a)
		return node_err(im, DF_EINVAL, "attribute 'axis' is required");
	if (a->i < 0 && im->opset < 11)
		return node_err(im, DF_EINVAL, "negative axis before opset 11");
	for (int i = 0; i < n_in; i++)
		if (in[i] < 0)
			return node_err(im, DF_EINVAL, "input %d is empty", i);
	if (n_in <= GRAPH_MAX_INPUTS) {
		graph_node nd = new_node(GRAPH_OP_CONCAT, n_in, in);
		nd.attr.axis.axis = a->i;
		return emit(im, &nd);
	}
	/* more inputs than a node holds: only for constants (shape arithmetic),
	 * folded in chunks */
	for (int i = 0; i < n_in; i++)
		if (!V(im, in[i])->constant)
			return node_err(im, DF_ENOTSUP,
			                "%d inputs; at most %d are supported",
			                n_in, GRAPH_MAX_INPUTS);
	int cur = in[0], done = 1, part = 0;
	while (done < n_in) {
		int ins[GRAPH_MAX_INPUTS] = {cur};
		int k = 1;
		while (k < GRAPH_MAX_INPUTS && done < n_in)
			ins[k++] = in[done++];
		graph_node nd = new_node(GRAPH_OP_CONCAT, k, ins);
		nd.attr.axis.axis = a->i;
		char name[200];
		snprintf(name, sizeof name, "%s#part%d", out_name(im), part++);
		err = emit_named(im, &nd, name, &cur);
		if (err)
			return err;
	}
	tensor *t = NULL;
	err = tensor_clone(V(im, cur)->constant, &t);
	return err ? err : emit_const(im, t);
}

static df_err op_flatten(imp *im, const int *in, int n_in)
{
	graph_node nd = new_node(GRAPH_OP_FLATTEN, n_in, in);
	df_err err = attr_int(im, "axis", 1, &nd.attr.axis.axis);
	if (err)
		return err;
	if (nd.attr.axis.axis < 0 && im->opset < 11)
		return node_err(im, DF_EINVAL, "negative axis before opset 11");
	return emit(im, &nd);
}

static df_err op_reshape(imp *im, const int *in, int n_in)
{
	int64_t allowzero = 0;
	const tensor *shape = NULL;
	df_err err = attr_int(im, "allowzero", 0, &allowzero);
	if (!err)
		err = const_i64(im, in[1], "shape", false, &shape);
	if (err)
		return err;
	if (allowzero) {
		for (size_t i = 0; i < shape->numel; i++)
			if (tensor_i64(shape)[i] == 0)
				return node_err(im, DF_ENOTSUP,
				                "allowzero = 1 with a 0 in the "
				                "shape (a zero-size "
				                "dim) is not supported");
	}
	graph_node nd = new_node(GRAPH_OP_RESHAPE, n_in, in);
	return emit(im, &nd);
}

static df_err op_identity(imp *im, const int *in, int n_in)
{
	(void)n_in;
	return map_put(im, out_name(im), in[0], -1);
}

static df_err op_dropout(imp *im, const int *in, int n_in)
{
	if (im->opset < 12 && n_in > 1)
		return node_err(im, DF_EINVAL,
		                "Dropout has one input before opset 12");
	if (n_in > 2 && in[2] >= 0) {
		const tensor *t = V(im, in[2])->constant;
		if (!t)
			return node_err(
			    im, DF_ENOTSUP,
			    "training_mode is computed at run time");
		if (t->numel != 1)
			return node_err(im, DF_EINVAL,
			                "training_mode must be a scalar");
		bool on = t->dtype == TENSOR_I64 ? tensor_i64(t)[0] != 0
		                                 : tensor_f32(t)[0] != 0;
		if (on)
			return node_err(im, DF_ENOTSUP,
			                "training_mode is true; only "
			                "inference is supported");
	}
	float ratio = 0;
	df_err err = attr_float(im, "ratio", 0.5f, &ratio);
	return err ? err : map_put(im, out_name(im), in[0], -1);
}

static df_err op_softmax(imp *im, const int *in, int n_in)
{
	graph_node nd = new_node(GRAPH_OP_SOFTMAX, n_in, in);
	bool legacy = im->opset < 13;
	df_err err = attr_int(im, "axis", legacy ? 1 : -1, &nd.attr.axis.axis);
	if (err)
		return err;
	nd.attr.axis.legacy = legacy;
	return emit(im, &nd);
}

static df_err op_constant(imp *im, const int *in, int n_in)
{
	(void)in;
	(void)n_in;
	if (im->np->n_attribute != 1)
		return node_err(im, DF_EINVAL,
		                "needs exactly one value attribute, has %zu",
		                im->np->n_attribute);
	const Onnx__AttributeProto *a = im->np->attribute[0];
	const char *n = str_or_empty(a->name);
	tensor *t = NULL;
	df_err err = DF_OK;
	int64_t len;
	if (strcmp(n, "value") == 0) {
		if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR ||
		    !a->t)
			return node_err(im, DF_EINVAL,
			                "attribute 'value' must be TENSOR");
		char what[240];
		snprintf(what, sizeof what, "node '%s' (Constant): value",
		         im->name);
		return (err = tensor_from_proto(a->t, what, &t))
		           ? err
		           : emit_const(im, t);
	}
	if (strcmp(n, "value_float") == 0 || strcmp(n, "value_int") == 0) {
		bool fl = n[6] == 'f';
		int type = fl ? ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT
		              : ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
		if ((int)a->type != type)
			return node_err(im, DF_EINVAL,
			                "attribute '%s' must be %s", n,
			                attr_type_name(type));
		err = tensor_create(fl ? TENSOR_F32 : TENSOR_I64, 0, NULL, &t);
		if (err)
			return err;
		if (fl)
			tensor_f32(t)[0] = a->f;
		else
			tensor_i64(t)[0] = a->i;
		return emit_const(im, t);
	}
	if (strcmp(n, "value_floats") == 0 || strcmp(n, "value_ints") == 0) {
		bool fl = n[6] == 'f';
		int type = fl ? ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS
		              : ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
		if ((int)a->type != type)
			return node_err(im, DF_EINVAL,
			                "attribute '%s' must be %s", n,
			                attr_type_name(type));
		len = (int64_t)(fl ? a->n_floats : a->n_ints);
		err = tensor_create(fl ? TENSOR_F32 : TENSOR_I64, 1, &len, &t);
		if (err)
			return err;
		if (len)
			memcpy(t->data,
			       fl ? (void *)a->floats : (void *)a->ints,
			       tensor_nbytes(t));
		return emit_const(im, t);
	}
	return node_err(im, DF_ENOTSUP,
	                "constant given as '%s' (only value, "
	                "value_float(s) and value_int(s) are supported)",
	                n);
}

static df_err op_shape(imp *im, const int *in, int n_in)
{
	(void)n_in;
	const graph_value *x = V(im, in[0]);
	int64_t r = x->ndim, start = 0, end = r;
	df_err err = attr_int(im, "start", 0, &start);
	if (!err)
		err = attr_int(im, "end", r, &end);
	if (err)
		return err;
	start = start < 0 ? start + r : start;
	end = end < 0 ? end + r : end;
	start = start < 0 ? 0 : start > r ? r : start;
	end = end < 0 ? 0 : end > r ? r : end;
	int64_t n = end > start ? end - start : 0;
	tensor *t = NULL;
	err = tensor_create(TENSOR_I64, 1, &n, &t);
	if (err)
		return err;
	for (int64_t i = 0; i < n; i++)
		tensor_i64(t)[i] = x->dims[start + i];
	return emit_const(im, t);
}

static df_err op_gather(imp *im, const int *in, int n_in)
{
	(void)n_in;
	const tensor *data = V(im, in[0])->constant, *idx = NULL;
	if (!data)
		return node_err(
		    im, DF_ENOTSUP,
		    "Gather on computed data '%s' is not supported (only on "
		    "constants and shapes)",
		    V(im, in[0])->name);
	df_err err = const_i64(im, in[1], "indices", true, &idx);
	int64_t axis = 0;
	if (!err)
		err = attr_int(im, "axis", 0, &axis);
	if (err)
		return err;
	int r = data->ndim;
	if (r < 1 || axis < -r || axis >= r)
		return node_err(im, DF_EINVAL,
		                "axis %lld outside the rank %d of '%s'",
		                (long long)axis, r, V(im, in[0])->name);
	if (axis < 0)
		axis += r;
	int orank = r - 1 + idx->ndim;
	if (orank > TENSOR_MAX_DIMS)
		return node_err(im, DF_ENOTSUP, "output rank %d", orank);
	int64_t od[TENSOR_MAX_DIMS];
	int k = 0;
	for (int i = 0; i < axis; i++)
		od[k++] = data->dims[i];
	for (int i = 0; i < idx->ndim; i++)
		od[k++] = idx->dims[i];
	for (int i = (int)axis + 1; i < r; i++)
		od[k++] = data->dims[i];
	int64_t s = data->dims[axis];
	for (size_t j = 0; j < idx->numel; j++) {
		int64_t ix = tensor_i64(idx)[j];
		if (ix < -s || ix >= s)
			return node_err(
			    im, DF_EINVAL, "index %lld outside -%lld..%lld",
			    (long long)ix, (long long)s, (long long)(s - 1));
	}
	tensor *t = NULL;
	err = tensor_create(data->dtype, orank, od, &t);
	if (err)
		return node_err(im, err, "cannot allocate the result");
	size_t es = tensor_dtype_size(data->dtype), outer = 1, inner = 1;
	for (int i = 0; i < axis; i++)
		outer *= (size_t)data->dims[i];
	for (int i = (int)axis + 1; i < r; i++)
		inner *= (size_t)data->dims[i];
	char *dst = t->data;
	for (size_t o = 0; o < outer; o++)
		for (size_t j = 0; j < idx->numel; j++) {
			int64_t ix = tensor_i64(idx)[j];
			ix = ix < 0 ? ix + s : ix;
			memcpy(dst,
			       (const char *)data->data +
			           ((o * (size_t)s + (size_t)ix) * inner) * es,
			       inner * es);
			dst += inner * es;
		}
	return emit_const(im, t);
}

/* Axes of Unsqueeze/Squeeze: the attribute before opset 13, the optional
 * second input from 13. *n = -1 when absent. */
static df_err get_axes(const imp *im, const int *in, int n_in, int64_t *axes,
                       int *n)
{
	*n = -1;
	if (im->opset < 13) {
		if (n_in > 1)
			return node_err(im, DF_EINVAL,
			                "axes is an attribute before opset 13");
		const Onnx__AttributeProto *a = NULL;
		df_err err =
		    get_attr(im, "axes",
		             ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS, &a);
		if (err || !a)
			return err;
		if (a->n_ints > TENSOR_MAX_DIMS)
			return node_err(im, DF_EINVAL, "%zu axes", a->n_ints);
		if (a->n_ints)
			memcpy(axes, a->ints, a->n_ints * sizeof *axes);
		*n = (int)a->n_ints;
		return DF_OK;
	}
	if (n_in < 2 || in[1] < 0)
		return DF_OK;
	const tensor *t = NULL;
	df_err err = const_i64(im, in[1], "axes", false, &t);
	if (err)
		return err;
	if (t->numel > TENSOR_MAX_DIMS)
		return node_err(im, DF_EINVAL, "%zu axes", t->numel);
	memcpy(axes, t->data, t->numel * sizeof *axes);
	*n = (int)t->numel;
	return DF_OK;
}

static df_err op_unsqueeze(imp *im, const int *in, int n_in)
{
	int64_t axes[TENSOR_MAX_DIMS];
	int n = -1;
	df_err err = get_axes(im, in, n_in, axes, &n);
	if (err)
		return err;
	if (n < 0)
		return node_err(im, DF_EINVAL, "axes are required");
	const graph_value *x = V(im, in[0]);
	int orank = x->ndim + n;
	if (orank > TENSOR_MAX_DIMS)
		return node_err(im, DF_ENOTSUP, "output rank %d exceeds %d",
		                orank, TENSOR_MAX_DIMS);
	bool is_new[TENSOR_MAX_DIMS] = {false};
	for (int i = 0; i < n; i++) {
		int64_t a = axes[i];
		if (a < -orank || a >= orank || (a < 0 && im->opset < 11))
			return node_err(im, DF_EINVAL,
			                "axis %lld outside 0..%d", (long long)a,
			                orank - 1);
		a = a < 0 ? a + orank : a;
		if (is_new[a])
			return node_err(im, DF_EINVAL, "axis %lld repeated",
			                (long long)a);
		is_new[a] = true;
	}
	int64_t od[TENSOR_MAX_DIMS];
	for (int i = 0, k = 0; i < orank; i++)
		od[i] = is_new[i] ? 1 : x->dims[k++];
	return emit_reshape(im, in[0], orank, od);
}

static df_err op_squeeze(imp *im, const int *in, int n_in)
{
	int64_t axes[TENSOR_MAX_DIMS];
	int n = -1;
	df_err err = get_axes(im, in, n_in, axes, &n);
	if (err)
		return err;
	const graph_value *x = V(im, in[0]);
	int r = x->ndim;
	bool drop[TENSOR_MAX_DIMS] = {false};
	if (n < 0) {
		for (int i = 0; i < r; i++)
			drop[i] = x->dims[i] == 1;
	}
	for (int i = 0; i < n; i++) {
		int64_t a = axes[i];
		if (a < -r || a >= r || (a < 0 && im->opset < 11))
			return node_err(im, DF_EINVAL,
			                "axis %lld outside 0..%d", (long long)a,
			                r - 1);
		a = a < 0 ? a + r : a;
		if (x->dims[a] != 1)
			return node_err(
			    im, DF_EINVAL, "dim %lld of '%s' is %lld, not 1",
			    (long long)a, x->name, (long long)x->dims[a]);
		drop[a] = true;
	}
	int64_t od[TENSOR_MAX_DIMS];
	int k = 0;
	for (int i = 0; i < r; i++)
		if (!drop[i])
			od[k++] = x->dims[i];
	return emit_reshape(im, in[0], k, od);
}

static df_err op_cast(imp *im, const int *in, int n_in)
{
	(void)n_in;
	const Onnx__AttributeProto *a = NULL;
	df_err err =
	    get_attr(im, "to", ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT, &a);
	if (err)
		return err;
	if (!a)
		return node_err(im, DF_EINVAL, "attribute 'to' is required");
	bool to_float = a->i == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
	bool to_int = a->i == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ||
	              a->i == ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
	if (!to_float && !to_int)
		return node_err(im, DF_ENOTSUP,
		                "cast to %s (only FLOAT, INT64, INT32)",
		                onnx_dtype_name((int32_t)a->i));
	const tensor *c = V(im, in[0])->constant;
	if (!c) {
		if (to_float) /* computed values are float already */
			return map_put(im, out_name(im), in[0], -1);
		return node_err(im, DF_ENOTSUP,
		                "cast of computed '%s' to an integer type",
		                V(im, in[0])->name);
	}
	tensor *t = NULL;
	err = tensor_create(to_float ? TENSOR_F32 : TENSOR_I64, c->ndim,
	                    c->dims, &t);
	if (err)
		return err;
	bool i32 = a->i == ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
	for (size_t i = 0; i < c->numel; i++) {
		if (to_float) {
			tensor_f32(t)[i] = c->dtype == TENSOR_F32
			                       ? tensor_f32(c)[i]
			                       : (float)tensor_i64(c)[i];
			continue;
		}
		int64_t v;
		if (c->dtype == TENSOR_F32) {
			float f = tensor_f32(c)[i];
			if (!(f > -9.2e18f && f < 9.2e18f)) {
				tensor_destroy(t);
				return node_err(
				    im, DF_EINVAL,
				    "value %g does not fit an integer",
				    (double)f);
			}
			v = (int64_t)f;
		} else {
			v = tensor_i64(c)[i];
		}
		tensor_i64(t)[i] =
		    i32 ? (int64_t)(int32_t)(uint32_t)(uint64_t)v : v;
	}
	return emit_const(im, t);
}

/* ---- the op table ------------------------------------------------------- */

/* clang-format off */
#define WINDOW_ATTRS {"auto_pad", 1, 0}, {"kernel_shape", 1, 0}, {"pads", 1, 0}, \
		     {"strides", 1, 0}

static const op_spec ops[] = {
	{"Conv", op_conv, 2, 3, 1, {WINDOW_ATTRS, {"dilations", 1, 0}, {"group", 1, 0}}},
	{"Gemm", op_gemm, 2, 3, 1,
	 {{"alpha", 1, 0}, {"beta", 1, 0}, {"transA", 1, 0}, {"transB", 1, 0}}},
	{"MatMul", op_simple, 2, 2, 1, {{0}}},
	{"BatchNormalization", op_batchnorm, 5, 5, 5,
	 {{"epsilon", 1, 0}, {"momentum", 1, 0}, {"spatial", 1, 9},
	  {"training_mode", 14, 0}}},
	{"Relu", op_simple, 1, 1, 1, {{0}}},
	{"Sigmoid", op_simple, 1, 1, 1, {{0}}},
	{"LeakyRelu", op_leakyrelu, 1, 1, 1, {{"alpha", 1, 0}}},
	{"Clip", op_clip, 1, 3, 1, {{"min", 1, 11}, {"max", 1, 11}}},
	{"MaxPool", op_pool, 1, 1, 2,
	 {WINDOW_ATTRS, {"ceil_mode", 10, 0}, {"dilations", 10, 0},
	  {"storage_order", 8, 0}}},
	{"AveragePool", op_pool, 1, 1, 1,
	 {WINDOW_ATTRS, {"ceil_mode", 10, 0}, {"count_include_pad", 7, 0}}},
	{"GlobalAveragePool", op_simple, 1, 1, 1, {{0}}},
	{"Add", op_simple, 2, 2, 1, {{0}}},
	{"Mul", op_simple, 2, 2, 1, {{0}}},
	{"Concat", op_concat, 1, MAX_NODE_IO, 1, {{"axis", 1, 0}}},
	{"Flatten", op_flatten, 1, 1, 1, {{"axis", 1, 0}}},
	{"Reshape", op_reshape, 2, 2, 1, {{"allowzero", 14, 0}}},
	{"Identity", op_identity, 1, 1, 1, {{0}}},
	{"Dropout", op_dropout, 1, 3, 2, {{"ratio", 1, 12}, {"seed", 12, 0}}},
	{"Softmax", op_softmax, 1, 1, 1, {{"axis", 1, 0}}},
	{"Constant", op_constant, 0, 0, 1,
	 {{"value", 1, 0}, {"sparse_value", 11, 0}, {"value_float", 12, 0},
	  {"value_floats", 12, 0}, {"value_int", 12, 0}, {"value_ints", 12, 0},
	  {"value_string", 12, 0}, {"value_strings", 12, 0}}},
	{"Shape", op_shape, 1, 1, 1, {{"start", 15, 0}, {"end", 15, 0}}},
	{"Gather", op_gather, 2, 2, 1, {{"axis", 1, 0}}},
	{"Unsqueeze", op_unsqueeze, 1, 2, 1, {{"axes", 1, 13}}},
	{"Squeeze", op_squeeze, 1, 2, 1, {{"axes", 1, 13}}},
	{"Cast", op_cast, 1, 1, 1, {{"to", 1, 0}}},
};
/* clang-format on */

static const op_spec *find_op(const char *op_type)
{
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
		if (strcmp(ops[i].op_type, op_type) == 0)
			return &ops[i];
	return NULL;
}

/* ---- model -------------------------------------------------------------- */

static df_err import_node(imp *im, int idx, int *in)
{
	const Onnx__NodeProto *np = im->gp->node[idx];
	im->np = np;
	im->op = str_or_empty(np->op_type);
	if (np->name && *np->name)
		snprintf(im->name, sizeof im->name, "%s", np->name);
	else
		snprintf(im->name, sizeof im->name, "%.60s_%d", im->op, idx);
	if (!*im->op)
		return node_err(im, DF_EINVAL, "node #%d has no op_type", idx);
	const char *domain = str_or_empty(np->domain);
	if (*domain && strcmp(domain, "ai.onnx") != 0)
		return node_err(im, DF_ENOTSUP,
		                "domain '%.80s' is not supported", domain);
	const op_spec *spec = find_op(im->op);
	if (!spec)
		return node_err(im, DF_ENOTSUP, "unsupported op '%.80s'",
		                im->op);
	df_err err = check_attrs(im, spec);
	if (err)
		return err;
	if (np->n_input < (size_t)spec->min_in ||
	    np->n_input > (size_t)spec->max_in)
		return node_err(im, DF_EINVAL, "%zu inputs, expected %d..%d",
		                np->n_input, spec->min_in, spec->max_in);
	if (np->n_output < 1 || np->n_output > (size_t)spec->max_out)
		return node_err(im, DF_EINVAL, "%zu outputs, expected 1..%d",
		                np->n_output, spec->max_out);
	for (size_t i = 0; i < np->n_input; i++) {
		const char *n = str_or_empty(np->input[i]);
		if (!*n) {
			in[i] = -1;
			continue;
		}
		const name_entry *e = map_get(im, n);
		if (!e)
			return node_err(
			    im, DF_EINVAL,
			    "input '%.100s' is not defined (no initializer, "
			    "graph input or earlier node output has that name)",
			    n);
		if (e->value == NAME_UNUSABLE) {
			const Onnx__NodeProto *p = im->gp->node[e->node];
			return node_err(
			    im, DF_ENOTSUP,
			    "input '%.100s' is an extra output of "
			    "%s node '%.60s' (training statistics, "
			    "Dropout mask or MaxPool Indices), which "
			    "is not computed",
			    n, str_or_empty(p->op_type), str_or_empty(p->name));
		}
		in[i] = e->value;
	}
	/* required inputs (all but Conv bias, Gemm C, Clip bounds, Dropout's
	 * and Squeeze's optional ones) must be present */
	for (int i = 0; i < spec->min_in; i++)
		if (in[i] < 0)
			return node_err(im, DF_EINVAL,
			                "required input %d is empty", i);
	for (size_t i = 0; i < np->n_output; i++) {
		const char *n = str_or_empty(np->output[i]);
		if (i == 0 && !*n)
			return node_err(im, DF_EINVAL, "output 0 has no name");
		if (*n && map_get(im, n))
			return node_err(im, DF_EINVAL,
			                "output '%.100s' is already defined",
			                n);
		for (size_t j = 0; j < i; j++)
			if (*n && strcmp(str_or_empty(np->output[j]), n) == 0)
				return node_err(im, DF_EINVAL,
				                "output '%.100s' listed twice",
				                n);
	}
	err = spec->fn(im, in, (int)np->n_input);
	for (size_t i = 1; i < np->n_output && !err; i++)
		if (*str_or_empty(np->output[i]))
			err = map_put(im, np->output[i], NAME_UNUSABLE, idx);
	return err;
}

static df_err import_inputs(imp *im)
{
	const Onnx__GraphProto *gp = im->gp;
	for (size_t i = 0; i < gp->n_input; i++) {
		const Onnx__ValueInfoProto *vi = gp->input[i];
		const char *n = str_or_empty(vi->name);
		if (!*n)
			return df_errf(DF_EINVAL,
			               "graph input #%zu has no name", i);
		const name_entry *e = map_get(im, n);
		if (e && V(im, e->value)->constant)
			continue; /* an initializer listed as input (older
			             exporters) */
		if (e)
			return df_errf(DF_EINVAL,
			               "graph input '%.100s' is listed twice",
			               n);
		const Onnx__TypeProto *tp = vi->type;
		if (!tp ||
		    tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE ||
		    !tp->tensor_type)
			return df_errf(DF_ENOTSUP,
			               "graph input '%.100s' is not a tensor",
			               n);
		const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
		int32_t et = tt->has_elem_type ? tt->elem_type : 0;
		if (et != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
			return df_errf(DF_ENOTSUP,
			               "graph input '%.100s' is %s; only FLOAT "
			               "inputs are supported",
			               n, onnx_dtype_name(et));
		if (!tt->shape)
			return df_errf(DF_EINVAL,
			               "graph input '%.100s' has no shape", n);
		if (tt->shape->n_dim > TENSOR_MAX_DIMS)
			return df_errf(DF_ENOTSUP,
			               "graph input '%.100s' has rank %zu", n,
			               tt->shape->n_dim);
		int64_t dims[TENSOR_MAX_DIMS];
		for (size_t d = 0; d < tt->shape->n_dim; d++) {
			const Onnx__TensorShapeProto__Dimension *dim =
			    tt->shape->dim[d];
			if (dim->value_case ==
			    ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE) {
				if (dim->dim_value < 1)
					return df_errf(
					    DF_EINVAL,
					    "graph input '%.100s': dim %zu is "
					    "%lld",
					    n, d, (long long)dim->dim_value);
				dims[d] = dim->dim_value;
			} else {
				dims[d] = 1; /* symbolic (batch) or unknown */
			}
		}
		size_t numel = 0;
		df_err err = tensor_shape_numel((int)tt->shape->n_dim, dims,
		                                TENSOR_F32, &numel);
		if (err)
			return df_errf(
			    err, "graph input '%.100s': shape is too large", n);
		if (im->g->n_inputs >= MAX_GRAPH_IO)
			return df_errf(DF_ETOOBIG,
			               "model has more than %d graph inputs",
			               MAX_GRAPH_IO);
		int v = -1;
		err = graph_add_value(im->g, n, (int)tt->shape->n_dim, dims,
		                      NULL, &v);
		if (!err)
			err = graph_add_input(im->g, v);
		if (!err)
			err = map_put(im, n, v, -1);
		if (err)
			return err;
	}
	return DF_OK;
}

static df_err import_graph(imp *im)
{
	const Onnx__GraphProto *gp = im->gp;
	if (gp->n_node > MAX_COUNT || gp->n_initializer > MAX_COUNT ||
	    gp->n_input > MAX_COUNT)
		return df_errf(DF_ETOOBIG,
		               "model has more than %d nodes, "
		               "initializers or inputs",
		               MAX_COUNT);
	if (gp->n_output > MAX_GRAPH_IO)
		return df_errf(DF_ETOOBIG, "model has more than %d outputs",
		               MAX_GRAPH_IO);
	if (gp->n_sparse_initializer)
		return df_errf(DF_ENOTSUP,
		               "sparse initializers are not supported");
	df_err err = DF_OK;
	for (size_t i = 0; i < gp->n_initializer && !err; i++) {
		const Onnx__TensorProto *tp = gp->initializer[i];
		const char *n = str_or_empty(tp->name);
		char what[160];
		snprintf(what, sizeof what, "initializer '%.100s'", n);
		if (!*n)
			return df_errf(DF_EINVAL,
			               "initializer #%zu has no name", i);
		if (map_get(im, n))
			return df_errf(DF_EINVAL,
			               "initializer '%.100s' is defined twice",
			               n);
		tensor *t = NULL;
		int v = -1;
		err = tensor_from_proto(tp, what, &t);
		if (err)
			return err;
		err = graph_add_value(im->g, n, 0, NULL, t, &v);
		if (err)
			tensor_destroy(t);
		else
			err = map_put(im, n, v, -1);
	}
	if (!err)
		err = import_inputs(im);
	if (err)
		return err;
	size_t max_in = 1;
	for (size_t i = 0; i < gp->n_node; i++)
		if (gp->node[i]->n_input > max_in)
			max_in = gp->node[i]->n_input;
	if (max_in > MAX_NODE_IO)
		max_in = MAX_NODE_IO;
	int *in = malloc(max_in * sizeof *in);
	if (!in)
		return df_errf(DF_ENOMEM, "node inputs");
	for (size_t i = 0; i < gp->n_node && !err; i++)
		err = import_node(im, (int)i, in);
	free(in);
	for (size_t i = 0; i < gp->n_output && !err; i++) {
		const char *n = str_or_empty(gp->output[i]->name);
		const name_entry *e = map_get(im, n);
		if (!e)
			return df_errf(
			    DF_EINVAL,
			    "graph output '%.100s' is not produced by "
			    "any node",
			    n);
		if (e->value == NAME_UNUSABLE)
			return df_errf(
			    DF_ENOTSUP,
			    "graph output '%.100s' is a training-only "
			    "or Indices output, which is not computed",
			    n);
		err = graph_add_output(im->g, e->value);
	}
	if (!err && gp->n_output == 0)
		err = df_errf(DF_EINVAL, "the graph has no outputs");
	return err;
}

static df_err import_model(const Onnx__ModelProto *m, graph **out)
{
	imp im;
	memset(&im, 0, sizeof im);
	im.opset = -1;
	for (size_t i = 0; i < m->n_opset_import; i++) {
		const char *d = str_or_empty(m->opset_import[i]->domain);
		if ((*d == '\0' || strcmp(d, "ai.onnx") == 0) &&
		    m->opset_import[i]->has_version)
			im.opset = m->opset_import[i]->version;
	}
	if (im.opset < 0)
		return df_errf(DF_EINVAL,
		               "model has no opset_import for the default "
		               "ONNX domain");
	if (im.opset < ONNX_OPSET_MIN || im.opset > ONNX_OPSET_MAX)
		return df_errf(
		    DF_ENOTSUP, "model opset %lld is not supported (%d..%d)",
		    (long long)im.opset, ONNX_OPSET_MIN, ONNX_OPSET_MAX);
	if (!m->graph)
		return df_errf(DF_EINVAL, "model has no graph");
	im.gp = m->graph;
	df_err err = graph_create(&im.g);
	if (err)
		return err;
	im.g->opset = im.opset;
	err = import_graph(&im);
	if (!err)
		err = graph_finalize(im.g);
	free(im.tab);
	if (err) {
		graph_destroy(im.g);
		return err;
	}
	*out = im.g;
	return DF_OK;
}

df_err onnx_import_mem(const void *buf, size_t len, graph **out)
{
	if (!buf && len)
		return df_errf(DF_EINVAL, "no model data");
	if (len > ONNX_MAX_MODEL_BYTES)
		return df_errf(DF_ETOOBIG,
		               "model of %zu bytes exceeds the limit of %zu",
		               len, ONNX_MAX_MODEL_BYTES);
	if (len == 0)
		return df_errf(DF_EINVAL, "not a valid ONNX model: empty");
	df_err err = wire_scan(buf, len, &onnx__model_proto__descriptor, 0);
	if (err)
		return err;
	Onnx__ModelProto *m = onnx__model_proto__unpack(NULL, len, buf);
	if (!m)
		return df_errf(DF_EINVAL,
		               "not a valid ONNX model: protobuf does not "
		               "parse as ModelProto");
	err = import_model(m, out);
	onnx__model_proto__free_unpacked(m, NULL);
	return err;
}

df_err onnx_import_file(const char *path, graph **out)
{
	df_err err = DF_OK;
	void *buf = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return df_errf(errno == ENOENT ? DF_ENOENT : DF_EIO, "%s: %s",
		               path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		err = df_errf(DF_EIO, "%s: not a regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size > ONNX_MAX_MODEL_BYTES) {
		err = df_errf(
		    DF_ETOOBIG, "%s: %lld bytes exceeds the model limit of %zu",
		    path, (long long)st.st_size, ONNX_MAX_MODEL_BYTES);
		goto out;
	}
	size_t len = (size_t)st.st_size;
	buf = malloc(len ? len : 1);
	if (!buf) {
		err = df_errf(DF_ENOMEM, "%s: cannot allocate %zu bytes", path,
		              len);
		goto out;
	}
	for (size_t got = 0; got < len;) {
		ssize_t r = read(fd, (char *)buf + got, len - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			err = df_errf(DF_EIO, "%s: read failed: %s", path,
			              r < 0 ? strerror(errno) : "file shrank");
			goto out;
		}
		got += (size_t)r;
	}
	err = onnx_import_mem(buf, len, out);
	if (err) {
		char msg[512];
		snprintf(msg, sizeof msg, "%s", df_err_msg());
		df_errf(err, "%s: %s", path, msg);
	}
out:
	free(buf);
	close(fd);
	return err;
}
