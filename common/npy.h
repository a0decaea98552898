/*
 * npy.h - NumPy .npy files (format versions 1.0 and 2.0) to and from tensors.
 *
 * Accepted: little-endian f32 ('<f4') and i64 ('<i8'), C order, any rank up
 * to TENSOR_MAX_DIMS. Anything else (big-endian, other dtypes, Fortran
 * order, format 3.0, malformed header, data shorter or longer than the
 * shape says, shapes whose size overflows) is rejected with a message that
 * says what was wrong. The input is untrusted.
 */
#ifndef DF_NPY_H
#define DF_NPY_H

#include <stddef.h>

#include "err.h"
#include "tensor.h"

/* Parses a whole .npy image in memory. *out is new (tensor_destroy()). */
df_err npy_read_mem(const void *buf, size_t len, tensor **out);

/* Reads a .npy file. Errors name the path. */
df_err npy_read_file(const char *path, tensor **out);

/* Serializes t (version 1.0 when the header fits, else 2.0). *buf is new
 * (free()), *len its size. */
df_err npy_write_mem(const tensor *t, void **buf, size_t *len);

/* Writes t to path (replaced atomically via a temporary file). */
df_err npy_write_file(const char *path, const tensor *t);

#endif
