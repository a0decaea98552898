/*
 * fmnist.c - IDX reading through zlib's gz* interface, which reads gzip and
 * plain files alike. For plain files the header is checked against the
 * file size before allocating; for gzip files (whose size says nothing)
 * the buffer grows with the data actually inflated, so a lying header
 * costs no more memory than the file really holds.
 */
#include "fmnist.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define IDX_TYPE_UBYTE 0x08
#define FMNIST_MAX_SIDE 4096
#define GZ_CHUNK ((size_t)1 << 20)

/* Reads up to n bytes; *got says how many came. A zlib error (corrupt or
 * truncated stream, bad CRC) is DF_ECORRUPT. */
static df_err gz_read_up_to(gzFile gz, const char *path, uint8_t *buf,
			    size_t n, size_t *got)
{
	size_t done = 0;
	while (done < n) {
		size_t want = n - done;
		if (want > GZ_CHUNK)
			want = GZ_CHUNK;
		int r = gzread(gz, buf + done, (unsigned)want);
		if (r < 0) {
			int zerr = 0;
			const char *msg = gzerror(gz, &zerr);
			if (zerr == Z_ERRNO)
				return df_errf(DF_EIO, "%s: read error: %s", path,
					       strerror(errno));
			return df_errf(DF_ECORRUPT, "%s: %s", path,
				       msg ? msg : "gzip error");
		}
		if (r == 0)
			break;
		done += (size_t)r;
	}
	if (done < n) {
		/* zlib reports a stream cut short (even inside the trailer)
		 * as a short read with Z_BUF_ERROR pending, not as -1. */
		int zerr = 0;
		gzerror(gz, &zerr);
		if (zerr == Z_BUF_ERROR)
			return df_errf(DF_ECORRUPT,
				       "%s: truncated gzip stream", path);
	}
	*got = done;
	return DF_OK;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

void idx_array_destroy(idx_array *a)
{
	if (!a)
		return;
	free(a->data);
	free(a);
}

df_err idx_array_read(const char *path, size_t limit, idx_array **out)
{
	df_err err = DF_OK;
	gzFile gz = NULL;
	uint8_t *data = NULL;
	idx_array *a = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return df_errf(errno == ENOENT ? DF_ENOENT : DF_EIO, "%s: %s",
			       path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return df_errf(DF_EIO, "%s: not a regular file", path);
	}
	gz = gzdopen(fd, "rb");
	if (!gz) {
		close(fd);
		return df_errf(DF_ENOMEM, "%s: cannot open gzip stream", path);
	}

	uint8_t hdr[4 + 4 * IDX_MAX_DIMS];
	size_t got = 0;
	if ((err = gz_read_up_to(gz, path, hdr, 4, &got)))
		goto out;
	if (got < 4 || hdr[0] != 0 || hdr[1] != 0) {
		err = df_errf(DF_ECORRUPT, "%s: not an IDX file (bad magic)",
			      path);
		goto out;
	}
	if (hdr[2] != IDX_TYPE_UBYTE) {
		err = df_errf(DF_ENOTSUP,
			      "%s: IDX element type 0x%02x is not unsigned "
			      "byte (0x08)",
			      path, hdr[2]);
		goto out;
	}
	int ndim = hdr[3];
	if (ndim < 1 || ndim > IDX_MAX_DIMS) {
		err = df_errf(DF_ECORRUPT, "%s: IDX rank %d is outside 1..%d",
			      path, ndim, IDX_MAX_DIMS);
		goto out;
	}
	if ((err = gz_read_up_to(gz, path, hdr + 4, 4 * (size_t)ndim, &got)))
		goto out;
	if (got < 4 * (size_t)ndim) {
		err = df_errf(DF_ECORRUPT, "%s: truncated IDX header", path);
		goto out;
	}
	uint32_t dims[IDX_MAX_DIMS] = {0};
	size_t item = 1;
	for (int i = 0; i < ndim; i++) {
		dims[i] = be32(hdr + 4 + 4 * i);
		if (dims[i] > IDX_MAX_DIM) {
			err = df_errf(DF_ETOOBIG,
				      "%s: IDX dimension %d is %u, above %u",
				      path, i, dims[i], IDX_MAX_DIM);
			goto out;
		}
		if (i > 0) {
			if (dims[i] != 0 && item > IDX_MAX_BYTES / dims[i]) {
				err = df_errf(DF_ETOOBIG,
					      "%s: IDX item size is above %zu "
					      "bytes",
					      path, IDX_MAX_BYTES);
				goto out;
			}
			item *= dims[i];
		}
	}
	if (item != 0 && dims[0] > IDX_MAX_BYTES / item) {
		err = df_errf(DF_ETOOBIG, "%s: IDX data is above %zu bytes",
			      path, IDX_MAX_BYTES);
		goto out;
	}
	size_t count = dims[0];
	size_t n = (limit && limit < count) ? limit : count;
	size_t need = n * item;
	size_t hdr_len = 4 + 4 * (size_t)ndim;

	if (gzdirect(gz)) {
		/* Plain file: its size must agree with the header. */
		size_t have = (size_t)st.st_size >= hdr_len
				      ? (size_t)st.st_size - hdr_len
				      : 0;
		if (have < need) {
			err = df_errf(DF_ECORRUPT,
				      "%s: truncated: IDX data is %zu bytes, "
				      "header says %zu",
				      path, have, count * item);
			goto out;
		}
		if (n == count && have != need) {
			err = df_errf(DF_ECORRUPT,
				      "%s: data continues after the %zu items "
				      "the header announces (%zu bytes, header "
				      "says %zu)",
				      path, count, have, need);
			goto out;
		}
	}
	size_t cap = 0, len = 0;
	while (len < need) {
		if (len == cap) {
			size_t ncap = cap ? cap * 2 : GZ_CHUNK;
			if (ncap > need)
				ncap = need;
			uint8_t *nd = realloc(data, ncap);
			if (!nd) {
				err = DF_ENOMEM;
				goto out;
			}
			data = nd;
			cap = ncap;
		}
		if ((err = gz_read_up_to(gz, path, data + len, cap - len, &got)))
			goto out;
		len += got;
		if (len < cap)
			break;
	}
	if (len < need) {
		err = df_errf(DF_ECORRUPT,
			      "%s: truncated: header says %zu items of %zu "
			      "bytes, data holds %zu bytes",
			      path, count, item, len);
		goto out;
	}
	if (n == count) {
		uint8_t extra;
		if ((err = gz_read_up_to(gz, path, &extra, 1, &got)))
			goto out;
		if (got) {
			err = df_errf(DF_ECORRUPT,
				      "%s: data continues after the %zu items "
				      "the header announces",
				      path, count);
			goto out;
		}
	}
	a = calloc(1, sizeof *a);
	if (!a) {
		err = DF_ENOMEM;
		goto out;
	}
	if (!data && !(data = malloc(1))) {
		err = DF_ENOMEM;
		goto out;
	}
	a->ndim = ndim;
	memcpy(a->dims, dims, sizeof dims);
	a->dims[0] = (uint32_t)n;
	a->total = (uint32_t)count;
	a->data = data;
	data = NULL;
	*out = a;
	a = NULL;
out:
	gzclose(gz);
	free(data);
	free(a);
	return err;
}

df_err fmnist_split_parse(const char *s, fmnist_split *out)
{
	if (s && (strcmp(s, "test") == 0 || strcmp(s, "t10k") == 0)) {
		*out = FMNIST_TEST;
		return DF_OK;
	}
	if (s && strcmp(s, "train") == 0) {
		*out = FMNIST_TRAIN;
		return DF_OK;
	}
	return df_errf(DF_EINVAL, "split '%s' is not 'test' or 'train'",
		       s ? s : "(null)");
}

void fmnist_destroy(fmnist *d)
{
	if (!d)
		return;
	free(d->images);
	free(d->labels);
	free(d);
}

df_err fmnist_load_files(const char *images_path, const char *labels_path,
			 size_t limit, fmnist **out)
{
	idx_array *im = NULL, *lb = NULL;
	fmnist *d = NULL;
	df_err err = idx_array_read(images_path, limit, &im);
	if (err)
		goto out;
	if ((err = idx_array_read(labels_path, limit, &lb)))
		goto out;
	if (im->ndim != 3) {
		err = df_errf(DF_ECORRUPT,
			      "%s: images file has rank %d, expected 3 "
			      "(magic 0x00000803)",
			      images_path, im->ndim);
		goto out;
	}
	if (lb->ndim != 1) {
		err = df_errf(DF_ECORRUPT,
			      "%s: labels file has rank %d, expected 1 "
			      "(magic 0x00000801)",
			      labels_path, lb->ndim);
		goto out;
	}
	if (im->total != lb->total) {
		err = df_errf(DF_ECORRUPT,
			      "%s holds %u images but %s holds %u labels",
			      images_path, im->total, labels_path, lb->total);
		goto out;
	}
	if (im->total == 0) {
		err = df_errf(DF_ECORRUPT, "%s: no images", images_path);
		goto out;
	}
	if (im->dims[1] < 1 || im->dims[1] > FMNIST_MAX_SIDE ||
	    im->dims[2] < 1 || im->dims[2] > FMNIST_MAX_SIDE) {
		err = df_errf(DF_ECORRUPT,
			      "%s: image size %ux%u is outside 1..%d",
			      images_path, im->dims[1], im->dims[2],
			      FMNIST_MAX_SIDE);
		goto out;
	}
	for (uint32_t i = 0; i < lb->dims[0]; i++) {
		if (lb->data[i] >= FMNIST_CLASSES) {
			err = df_errf(DF_ECORRUPT,
				      "%s: label %u of item %u is not below "
				      "%d",
				      labels_path, lb->data[i], i,
				      FMNIST_CLASSES);
			goto out;
		}
	}
	d = calloc(1, sizeof *d);
	if (!d) {
		err = DF_ENOMEM;
		goto out;
	}
	d->count = im->dims[0];
	d->rows = (int)im->dims[1];
	d->cols = (int)im->dims[2];
	d->images = im->data;
	im->data = NULL;
	d->labels = lb->data;
	lb->data = NULL;
	*out = d;
out:
	idx_array_destroy(im);
	idx_array_destroy(lb);
	return err;
}

/* dir/name.gz if it exists, else dir/name, into buf. */
static df_err pick_path(const char *dir, const char *name, char *buf,
			size_t cap)
{
	int n = snprintf(buf, cap, "%s/%s", dir, name);
	if (n < 0 || (size_t)n + 4 > cap)
		return df_errf(DF_EINVAL, "data dir path is too long");
	memcpy(buf + n, ".gz", 4);
	if (access(buf, F_OK) == 0)
		return DF_OK;
	buf[n] = '\0';
	if (access(buf, F_OK) == 0)
		return DF_OK;
	return df_errf(DF_ENOENT, "%s/%s.gz: no such file (is "
		       "dataset-fashion-mnist installed, or --data-dir set?)",
		       dir, name);
}

df_err fmnist_load(const char *dir, fmnist_split split, size_t limit,
		   fmnist **out)
{
	const char *prefix = split == FMNIST_TRAIN ? "train" : "t10k";
	char ipath[4096], lpath[4096], name[64];
	if (split != FMNIST_TEST && split != FMNIST_TRAIN)
		return df_errf(DF_EINVAL, "bad split %d", (int)split);
	if (!dir)
		dir = FMNIST_DEFAULT_DIR;
	snprintf(name, sizeof name, "%s-images-idx3-ubyte", prefix);
	df_err err = pick_path(dir, name, ipath, sizeof ipath);
	if (err)
		return err;
	snprintf(name, sizeof name, "%s-labels-idx1-ubyte", prefix);
	if ((err = pick_path(dir, name, lpath, sizeof lpath)))
		return err;
	return fmnist_load_files(ipath, lpath, limit, out);
}

const uint8_t *fmnist_image(const fmnist *d, size_t i)
{
	if (!d || i >= d->count)
		return NULL;
	return d->images + i * (size_t)d->rows * (size_t)d->cols;
}

int fmnist_label(const fmnist *d, size_t i)
{
	if (!d || i >= d->count)
		return -1;
	return d->labels[i];
}
