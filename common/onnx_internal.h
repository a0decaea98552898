/*
 * onnx_internal.h - private declarations shared by the ONNX importer's
 * files: onnx_import.c (loading, names, initializers, emitting nodes, graph
 * assembly), onnx_attr.c (node attributes) and onnx_ops.c (the op handlers
 * and their table). Nothing else includes it; the public API is
 * onnx_import.h.
 *
 * Everything here works on the node being imported (im->np, im->op,
 * im->name) and reports errors with onnx_node_err(), which names that node
 * and op. Pointers into the unpacked ModelProto are borrowed; it outlives
 * the import.
 */
#ifndef DF_ONNX_INTERNAL_H
#define DF_ONNX_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "graph.h"
#include "tensor.h"

#include "onnx.pb-c.h"

#define ONNX_MAX_NODE_IO 4096               /* inputs or outputs of one node */
#define ONNX_WIN_LIMIT   ((int64_t)1 << 24) /* kernel, stride, dilation, pad */

struct onnx_name_entry; /* a slot of the name table (onnx_import.c) */

typedef struct onnx_imp {
	graph *g;
	int64_t opset;
	const Onnx__GraphProto *gp;
	struct onnx_name_entry *tab; /* name table (onnx_import.c) */
	size_t cap, count;
	/* the node being imported */
	const Onnx__NodeProto *np;
	const char *op;
	char name[160];
} onnx_imp;

typedef df_err (*onnx_op_fn)(onnx_imp *im, const int *in, int n_in);

typedef struct onnx_attr_spec {
	const char *name;
	int since, until; /* opsets where it exists: since <= opset < until (0 =
	                     open) */
} onnx_attr_spec;

typedef struct onnx_op_spec {
	const char *op_type;
	onnx_op_fn fn;
	int min_in, max_in; /* over all opsets; handlers refine per opset */
	int max_out;        /* outputs beyond the first are never computed */
	onnx_attr_spec attrs[9];
} onnx_op_spec;

/* ---- onnx_import.c ------------------------------------------------------ */

/* df_errf() prefixed with "node 'name' (Op): " for the current node. */
df_err onnx_node_err(const onnx_imp *im, df_err err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Adds key -> value index (or the unusable marker with its producing node);
 * the key (borrowed) must be new. */
df_err onnx_map_put(onnx_imp *im, const char *key, int value, int node);

/* Name of an ONNX TensorProto data type ("FLOAT"), or "unknown". */
const char *onnx_dtype_name(int32_t t);

/* New tensor from a TensorProto; `what` names it in messages. */
df_err onnx_tensor_from_proto(const Onnx__TensorProto *tp, const char *what,
                              tensor **out);

/* Adds nd as a graph node writing a new value called `name` (inferring its
 * shape and folding it when its inputs are constant); *v gets the value. */
df_err onnx_emit_named(onnx_imp *im, graph_node *nd, const char *name, int *v);

/* onnx_emit_named() for the node's output, registered under its ONNX name. */
df_err onnx_emit(onnx_imp *im, graph_node *nd);

/* The node's output is the constant t (taken over, also on failure). */
df_err onnx_emit_const(onnx_imp *im, tensor *t);

/* The node's output is value x reshaped to (ndim, dims): a constant when x
 * is one, else a one-input Reshape node. */
df_err onnx_emit_reshape(onnx_imp *im, int x, int ndim, const int64_t *dims);

/* ---- onnx_attr.c -------------------------------------------------------- */

/* Name of an AttributeProto type ("INTS"). */
const char *onnx_attr_type_name(int t);

/* The attribute called name, or NULL; DF_EINVAL if it has another type. */
df_err onnx_attr_get(const onnx_imp *im, const char *name, int type,
                     const Onnx__AttributeProto **out);

/* INT / 0-or-1 / non-NaN FLOAT attribute, def when absent. */
df_err onnx_attr_int(const onnx_imp *im, const char *name, int64_t def,
                     int64_t *out);
df_err onnx_attr_bool(const onnx_imp *im, const char *name, bool *out);
df_err onnx_attr_float(const onnx_imp *im, const char *name, float def,
                       float *out);

/* INTS attribute with exactly `want` values into out; *present says
 * whether it was given (out untouched otherwise). */
df_err onnx_attr_ints(const onnx_imp *im, const char *name, size_t want,
                      int64_t *out, bool *present);

/* Checks every attribute of the node against the op's list for the
 * model's opset, and that none is given twice. */
df_err onnx_attr_check(const onnx_imp *im, const onnx_op_spec *spec);

/* Window attributes of Conv, MaxPool and AveragePool, pads explicit. */
typedef struct onnx_window {
	int64_t kernel[2], strides[2], dilations[2], pads[4];
} onnx_window;

/* Reads kernel_shape (kernel_def when absent; required when NULL), strides,
 * dilations (when has_dilations), pads and auto_pad, and resolves auto_pad
 * against x's spatial dims. */
df_err onnx_attr_window(const onnx_imp *im, int x, const int64_t *kernel_def,
                        bool has_dilations, onnx_window *w);

/* ---- onnx_ops.c --------------------------------------------------------- */

/* The table entry for op_type, or NULL when the op is not supported. */
const onnx_op_spec *onnx_ops_find(const char *op_type);

/* ---- small inline helpers ----------------------------------------------- */

static inline const char *onnx_str_or_empty(const char *s)
{
	return s ? s : "";
}

static inline const graph_value *onnx_value(const onnx_imp *im, int v)
{
	return &im->g->values[v];
}

static inline const char *onnx_out_name(const onnx_imp *im)
{
	return im->np->output[0];
}

#endif
