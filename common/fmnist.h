/*
 * fmnist.h - the Fashion-MNIST data set in its IDX files (gzip-compressed
 * or plain), as Debian's dataset-fashion-mnist installs them:
 *   t10k-images-idx3-ubyte.gz  (magic 0x00000803: count x rows x cols u8)
 *   t10k-labels-idx1-ubyte.gz  (magic 0x00000801: count u8)
 *   train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz
 *
 * IDX headers are big-endian: two zero bytes, a type byte (0x08 = unsigned
 * byte, the only type read here), the number of dimensions, then one u32
 * per dimension. Files are treated as untrusted: dimensions are capped,
 * the data must be exactly as long as the header says (except when only a
 * prefix is asked for), and memory grows only with data actually read.
 */
#ifndef DF_FMNIST_H
#define DF_FMNIST_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define FMNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
#define FMNIST_CLASSES 10

#define IDX_MAX_DIMS 4
#define IDX_MAX_DIM 100000000u /* largest single dimension accepted */
#define IDX_MAX_BYTES ((size_t)1 << 31) /* largest data part accepted */

/* One IDX array of unsigned bytes. */
typedef struct idx_array {
	int ndim;                    /* 1 .. IDX_MAX_DIMS */
	uint32_t dims[IDX_MAX_DIMS]; /* dims[0] = items actually loaded */
	uint32_t total;              /* items the file holds (header's dims[0]) */
	uint8_t *data;               /* row-major, owned */
} idx_array;

/*
 * Reads an IDX file of unsigned bytes (gzip or plain). Loads the first
 * min(limit, count) items along the first dimension (limit 0 = all); when
 * all are loaded, data after them is an error. *out is new
 * (idx_array_destroy()). Errors name the path: DF_ENOENT, DF_EIO,
 * DF_ENOTSUP (other element types), DF_ECORRUPT (bad magic, short data,
 * trailing data, gzip errors), DF_ETOOBIG (dimensions above the caps).
 */
df_err idx_array_read(const char *path, size_t limit, idx_array **out);

void idx_array_destroy(idx_array *a);

typedef enum fmnist_split {
	FMNIST_TEST = 0, /* t10k-*: 10,000 images */
	FMNIST_TRAIN,    /* train-*: 60,000 images */
	FMNIST_SPLIT_COUNT
} fmnist_split;

/* Parses "test"/"t10k" and "train". */
df_err fmnist_split_parse(const char *s, fmnist_split *out);

typedef struct fmnist {
	size_t count;     /* images (and labels) loaded */
	int rows, cols;   /* 28 x 28 for Fashion-MNIST */
	uint8_t *images;  /* count * rows * cols, owned */
	uint8_t *labels;  /* count, each < FMNIST_CLASSES, owned */
} fmnist;

/*
 * Loads the first `limit` images and labels (0 = all) of a split from dir
 * (NULL = FMNIST_DEFAULT_DIR), "<prefix>-images-idx3-ubyte.gz" and
 * "<prefix>-labels-idx1-ubyte.gz"; the uncompressed names without ".gz"
 * are used when the .gz file is absent. Image and label counts must agree,
 * rows and cols be 1..4096, and labels below FMNIST_CLASSES. *out is new
 * (fmnist_destroy()).
 */
df_err fmnist_load(const char *dir, fmnist_split split, size_t limit,
		   fmnist **out);

/* Same from explicit file paths. */
df_err fmnist_load_files(const char *images_path, const char *labels_path,
			 size_t limit, fmnist **out);

/* Image i (rows * cols bytes, borrowed), or NULL when i >= count. */
const uint8_t *fmnist_image(const fmnist *d, size_t i);

/* Label of image i, or -1 when i >= count. */
int fmnist_label(const fmnist *d, size_t i);

void fmnist_destroy(fmnist *d);

#endif
