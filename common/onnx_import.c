/*
 * onnx_import.c - ONNX ModelProto to graph: loading the protobuf, the name
 * table, initializers and graph inputs, the primitives op handlers use to
 * add their results (onnx_emit*), and assembling the graph node by node.
 * Node attributes are read in onnx_attr.c, the ops themselves are
 * onnx_ops.c; onnx_internal.h is what the three share.
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
#include "onnx_internal.h"

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
#define MAX_GRAPH_IO 4096      /* graph inputs (not initializers) and outputs */

enum { NAME_UNUSABLE = -2 };

typedef struct onnx_name_entry {
	const char *key; /* borrowed from the model; NULL = empty slot */
	int value;       /* value index, or NAME_UNUSABLE */
	int node;        /* for NAME_UNUSABLE: index of the producing node */
} onnx_name_entry;

/* ---- errors and names --------------------------------------------------- */

df_err onnx_node_err(const onnx_imp *im, df_err err, const char *fmt, ...)
{
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	return df_errf(err, "node '%s' (%s): %s", im->name, im->op, msg);
}

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static onnx_name_entry *map_slot(const onnx_imp *im, const char *key)
{
	size_t mask = im->cap - 1;
	for (size_t i = hash_str(key) & mask;; i = (i + 1) & mask)
		if (!im->tab[i].key || strcmp(im->tab[i].key, key) == 0)
			return &im->tab[i];
}

static const onnx_name_entry *map_get(const onnx_imp *im, const char *key)
{
	if (!im->cap)
		return NULL;
	const onnx_name_entry *e = map_slot(im, key);
	return e->key ? e : NULL;
}

/* Adds key -> value; the key must be new. */
df_err onnx_map_put(onnx_imp *im, const char *key, int value, int node)
{
	if ((im->count + 1) * 2 > im->cap) {
		size_t ncap = im->cap ? im->cap * 2 : 256;
		onnx_name_entry *old = im->tab;
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
	onnx_name_entry *e = map_slot(im, key);
	if (e->key)
		return df_errf(DF_EINVAL, "name '%s' is defined twice", key);
	e->key = key;
	e->value = value;
	e->node = node;
	im->count++;
	return DF_OK;
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

const char *onnx_dtype_name(int32_t t)
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
df_err onnx_tensor_from_proto(const Onnx__TensorProto *tp, const char *what,
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

/* ---- emitting ----------------------------------------------------------- */

/* Adds nd as a graph node writing a new value called `name` (inferring its
 * shape and folding it when its inputs are constant); *v gets the value. */
df_err onnx_emit_named(onnx_imp *im, graph_node *nd, const char *name, int *v)
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

/* onnx_emit_named() for the node's output, registered under its ONNX name. */
df_err onnx_emit(onnx_imp *im, graph_node *nd)
{
	int v = -1;
	df_err err = onnx_emit_named(im, nd, onnx_out_name(im), &v);
	return err ? err : onnx_map_put(im, onnx_out_name(im), v, -1);
}

/* The node's output is the constant t (taken over, also on failure). */
df_err onnx_emit_const(onnx_imp *im, tensor *t)
{
	int v = -1;
	df_err err = graph_add_value(im->g, onnx_out_name(im), 0, NULL, t, &v);
	if (err) {
		tensor_destroy(t);
		return err;
	}
	return onnx_map_put(im, onnx_out_name(im), v, -1);
}

/* The node's output is value x reshaped to (ndim, dims): a constant when x
 * is one, else a one-input Reshape node. */
df_err onnx_emit_reshape(onnx_imp *im, int x, int ndim, const int64_t *dims)
{
	const tensor *c = onnx_value(im, x)->constant;
	if (c) {
		tensor *t = NULL;
		df_err err = tensor_create(c->dtype, ndim, dims, &t);
		if (err)
			return onnx_node_err(im, err,
			                     "cannot reshape constant");
		if (t->numel != c->numel) {
			tensor_destroy(t);
			return onnx_node_err(
			    im, DF_EINVAL, "reshape changes the element count");
		}
		memcpy(t->data, c->data, tensor_nbytes(t));
		return onnx_emit_const(im, t);
	}
	int v = -1, idx = -1;
	df_err err =
	    graph_add_value(im->g, onnx_out_name(im), ndim, dims, NULL, &v);
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
	return err ? err : onnx_map_put(im, onnx_out_name(im), v, -1);
}

/* ---- model -------------------------------------------------------------- */

static df_err import_node(onnx_imp *im, int idx, int *in)
{
	const Onnx__NodeProto *np = im->gp->node[idx];
	im->np = np;
	im->op = onnx_str_or_empty(np->op_type);
	if (np->name && *np->name)
		snprintf(im->name, sizeof im->name, "%s", np->name);
	else
		snprintf(im->name, sizeof im->name, "%.60s_%d", im->op, idx);
	if (!*im->op)
		return onnx_node_err(im, DF_EINVAL, "node #%d has no op_type",
		                     idx);
	const char *domain = onnx_str_or_empty(np->domain);
	if (*domain && strcmp(domain, "ai.onnx") != 0)
		return onnx_node_err(im, DF_ENOTSUP,
		                     "domain '%.80s' is not supported", domain);
	const onnx_op_spec *spec = onnx_ops_find(im->op);
	if (!spec)
		return onnx_node_err(im, DF_ENOTSUP, "unsupported op '%.80s'",
		                     im->op);
	df_err err = onnx_attr_check(im, spec);
	if (err)
		return err;
	if (np->n_input < (size_t)spec->min_in ||
	    np->n_input > (size_t)spec->max_in)
		return onnx_node_err(im, DF_EINVAL,
		                     "%zu inputs, expected %d..%d", np->n_input,
		                     spec->min_in, spec->max_in);
	if (np->n_output < 1 || np->n_output > (size_t)spec->max_out)
		return onnx_node_err(im, DF_EINVAL,
		                     "%zu outputs, expected 1..%d",
		                     np->n_output, spec->max_out);
	for (size_t i = 0; i < np->n_input; i++) {
		const char *n = onnx_str_or_empty(np->input[i]);
		if (!*n) {
			in[i] = -1;
			continue;
		}
		const onnx_name_entry *e = map_get(im, n);
		if (!e)
			return onnx_node_err(
			    im, DF_EINVAL,
			    "input '%.100s' is not defined (no initializer, "
			    "graph input or earlier node output has that name)",
			    n);
		if (e->value == NAME_UNUSABLE) {
			const Onnx__NodeProto *p = im->gp->node[e->node];
			return onnx_node_err(
			    im, DF_ENOTSUP,
			    "input '%.100s' is an extra output of "
			    "%s node '%.60s' (training statistics, "
			    "Dropout mask or MaxPool Indices), which "
			    "is not computed",
			    n, onnx_str_or_empty(p->op_type),
			    onnx_str_or_empty(p->name));
		}
		in[i] = e->value;
	}
	/* required inputs (all but Conv bias, Gemm C, Clip bounds, Dropout's
	 * and Squeeze's optional ones) must be present */
	for (int i = 0; i < spec->min_in; i++)
		if (in[i] < 0)
			return onnx_node_err(im, DF_EINVAL,
			                     "required input %d is empty", i);
	for (size_t i = 0; i < np->n_output; i++) {
		const char *n = onnx_str_or_empty(np->output[i]);
		if (i == 0 && !*n)
			return onnx_node_err(im, DF_EINVAL,
			                     "output 0 has no name");
		if (*n && map_get(im, n))
			return onnx_node_err(
			    im, DF_EINVAL, "output '%.100s' is already defined",
			    n);
		for (size_t j = 0; j < i; j++)
			if (*n &&
			    strcmp(onnx_str_or_empty(np->output[j]), n) == 0)
				return onnx_node_err(
				    im, DF_EINVAL,
				    "output '%.100s' listed twice", n);
	}
	err = spec->fn(im, in, (int)np->n_input);
	for (size_t i = 1; i < np->n_output && !err; i++)
		if (*onnx_str_or_empty(np->output[i]))
			err =
			    onnx_map_put(im, np->output[i], NAME_UNUSABLE, idx);
	return err;
}

static df_err import_inputs(onnx_imp *im)
{
	const Onnx__GraphProto *gp = im->gp;
	for (size_t i = 0; i < gp->n_input; i++) {
		const Onnx__ValueInfoProto *vi = gp->input[i];
		const char *n = onnx_str_or_empty(vi->name);
		if (!*n)
			return df_errf(DF_EINVAL,
			               "graph input #%zu has no name", i);
		const onnx_name_entry *e = map_get(im, n);
		if (e && onnx_value(im, e->value)->constant)
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
			err = onnx_map_put(im, n, v, -1);
		if (err)
			return err;
	}
	return DF_OK;
}

static df_err import_graph(onnx_imp *im)
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
		const char *n = onnx_str_or_empty(tp->name);
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
		err = onnx_tensor_from_proto(tp, what, &t);
		if (err)
			return err;
		/* The tensor holds its own copy: free the unpacked bytes now
		 * (protobuf-c allocated them with malloc and skips NULL), so
		 * that the unpacked model and the graph do not both hold every
		 * weight until the import ends. */
		free(gp->initializer[i]->raw_data.data);
		gp->initializer[i]->raw_data.data = NULL;
		gp->initializer[i]->raw_data.len = 0;
		err = graph_add_value(im->g, n, 0, NULL, t, &v);
		if (err)
			tensor_destroy(t);
		else
			err = onnx_map_put(im, n, v, -1);
	}
	if (!err)
		err = import_inputs(im);
	if (err)
		return err;
	size_t max_in = 1;
	for (size_t i = 0; i < gp->n_node; i++)
		if (gp->node[i]->n_input > max_in)
			max_in = gp->node[i]->n_input;
	if (max_in > ONNX_MAX_NODE_IO)
		max_in = ONNX_MAX_NODE_IO;
	int *in = malloc(max_in * sizeof *in);
	if (!in)
		return df_errf(DF_ENOMEM, "node inputs");
	for (size_t i = 0; i < gp->n_node && !err; i++)
		err = import_node(im, (int)i, in);
	free(in);
	for (size_t i = 0; i < gp->n_output && !err; i++) {
		const char *n = onnx_str_or_empty(gp->output[i]->name);
		const onnx_name_entry *e = map_get(im, n);
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
	onnx_imp im;
	memset(&im, 0, sizeof im);
	im.opset = -1;
	for (size_t i = 0; i < m->n_opset_import; i++) {
		const char *d = onnx_str_or_empty(m->opset_import[i]->domain);
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

/* Checks and unpacks a serialized ModelProto. *m is new
 * (onnx__model_proto__free_unpacked()). */
static df_err unpack_model(const void *buf, size_t len, Onnx__ModelProto **m)
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
	*m = onnx__model_proto__unpack(NULL, len, buf);
	if (!*m)
		return df_errf(DF_EINVAL,
		               "not a valid ONNX model: protobuf does not "
		               "parse as ModelProto");
	return DF_OK;
}

df_err onnx_import_mem(const void *buf, size_t len, graph **out)
{
	Onnx__ModelProto *m = NULL;
	df_err err = unpack_model(buf, len, &m);
	if (err)
		return err;
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
	/* The file bytes are not needed once unpacked: free them before the
	 * graph copies the weights, so the peak holds two copies, not three
	 * (peak RSS of `dicefleet run` on resnet18: 140 MB before). */
	Onnx__ModelProto *m = NULL;
	err = unpack_model(buf, len, &m);
	free(buf);
	buf = NULL;
	if (!err) {
		err = import_model(m, out);
		onnx__model_proto__free_unpacked(m, NULL);
	}
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
