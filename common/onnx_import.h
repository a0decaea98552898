/*
 * onnx_import.h - ONNX models (protobuf ModelProto) to a finalized graph.
 *
 * The input is untrusted (files today, network later): every field that is
 * used is validated, sizes are capped, and anything not understood is an
 * error naming the node and op (DF_EINVAL for malformed models, DF_ENOTSUP
 * for valid ONNX that dicefleet does not run, DF_ETOOBIG for size limits),
 * never a crash.
 *
 * Accepted: default-domain opsets ONNX_OPSET_MIN..ONNX_OPSET_MAX, each op
 * following the ONNX spec of the model's opset: Conv, Gemm, MatMul,
 * BatchNormalization (inference), Relu, Clip, LeakyRelu, Sigmoid, MaxPool,
 * AveragePool, GlobalAveragePool, Add, Mul, Concat, Flatten, Reshape,
 * Identity, Dropout (inference no-op), Softmax, Constant; and, folded at
 * import when their inputs are statically known, Shape, Gather, Unsqueeze,
 * Squeeze and Cast (Unsqueeze/Squeeze of a computed tensor become Reshape).
 * Conv and pooling are 2-D only (4-D NCHW input).
 *
 * Tensors: float, int64, int32 and bool (the last two stored as int64),
 * from raw_data or the typed fields; external data is not supported.
 * Graph inputs must be float; symbolic or unknown dims resolve to 1.
 * Initializers that are also listed as graph inputs are constants.
 */
#ifndef DF_ONNX_IMPORT_H
#define DF_ONNX_IMPORT_H

#include <stddef.h>

#include "err.h"
#include "graph.h"

#define ONNX_OPSET_MIN 7
#define ONNX_OPSET_MAX 17

/* Largest model accepted, in bytes. */
#define ONNX_MAX_MODEL_BYTES ((size_t)1 << 30)

/*
 * Parses a serialized ModelProto and returns the finalized graph (see
 * graph.h) in *out: new, free with graph_destroy(). g->opset is the model's
 * default-domain opset. *out untouched on failure; df_err_msg() says why.
 */
df_err onnx_import_mem(const void *buf, size_t len, graph **out);

/* Reads and imports an .onnx file. Errors are prefixed with the path. */
df_err onnx_import_file(const char *path, graph **out);

#endif
