/*
 * npy.c - the .npy header is a Python dict literal such as
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 * padded with spaces to a multiple of 64 bytes and ended by '\n'. We parse
 * exactly the three keys NumPy writes, in any order, and nothing else.
 */
#include "npy.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char npy_magic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};

/* Largest header we accept; NumPy's own limit for v2 is far larger, but
 * no real header for a rank <= 8 array is longer than a few hundred bytes. */
#define NPY_MAX_HEADER 65536

typedef struct hdr_parser {
	const char *p, *end;
} hdr_parser;

static void skip_ws(hdr_parser *h)
{
	while (h->p < h->end && isspace((unsigned char)*h->p))
		h->p++;
}

static int accept_char(hdr_parser *h, char c)
{
	skip_ws(h);
	if (h->p < h->end && *h->p == c) {
		h->p++;
		return 1;
	}
	return 0;
}

/* Reads a quoted string ('...' or "...") into out (NUL-terminated). */
static int read_str(hdr_parser *h, char *out, size_t cap)
{
	skip_ws(h);
	if (h->p >= h->end || (*h->p != '\'' && *h->p != '"'))
		return 0;
	char q = *h->p++;
	size_t n = 0;
	while (h->p < h->end && *h->p != q) {
		if (n + 1 >= cap)
			return 0;
		out[n++] = *h->p++;
	}
	if (h->p >= h->end)
		return 0;
	h->p++;
	out[n] = '\0';
	return 1;
}

static int read_word(hdr_parser *h, const char *word)
{
	skip_ws(h);
	size_t n = strlen(word);
	if ((size_t)(h->end - h->p) >= n && memcmp(h->p, word, n) == 0) {
		h->p += n;
		return 1;
	}
	return 0;
}

static df_err parse_shape(hdr_parser *h, int *ndim, int64_t *dims)
{
	if (!accept_char(h, '('))
		return df_errf(DF_EINVAL, "npy header: 'shape' is not a tuple");
	int n = 0;
	for (;;) {
		if (accept_char(h, ')'))
			break;
		skip_ws(h);
		if (h->p >= h->end || !isdigit((unsigned char)*h->p))
			return df_errf(DF_EINVAL, "npy header: bad shape entry");
		if (n >= TENSOR_MAX_DIMS)
			return df_errf(DF_ENOTSUP, "npy header: rank above %d",
				       TENSOR_MAX_DIMS);
		int64_t v = 0;
		while (h->p < h->end && isdigit((unsigned char)*h->p)) {
			if (v > (INT64_MAX - 9) / 10)
				return df_errf(DF_ETOOBIG, "npy header: dimension too large");
			v = v * 10 + (*h->p++ - '0');
		}
		/* Python 2 wrote longs as "3L". */
		if (h->p < h->end && *h->p == 'L')
			h->p++;
		dims[n++] = v;
		if (accept_char(h, ','))
			continue;
		if (!accept_char(h, ')'))
			return df_errf(DF_EINVAL, "npy header: shape tuple not closed");
		break;
	}
	*ndim = n;
	return DF_OK;
}

/* Parses the dict; sets dtype, fortran flag and shape. */
static df_err parse_header(const char *text, size_t len, tensor_dtype *dtype,
			   int *ndim, int64_t *dims)
{
	hdr_parser h = {text, text + len};
	int have_descr = 0, have_order = 0, have_shape = 0;

	if (!accept_char(&h, '{'))
		return df_errf(DF_EINVAL, "npy header is not a dict");
	while (!accept_char(&h, '}')) {
		char key[32], val[32];
		if (!read_str(&h, key, sizeof key) || !accept_char(&h, ':'))
			return df_errf(DF_EINVAL, "npy header: malformed dict entry");
		if (strcmp(key, "descr") == 0) {
			if (!read_str(&h, val, sizeof val))
				return df_errf(DF_EINVAL, "npy header: 'descr' is not a string");
			if (strcmp(val, "<f4") == 0) {
				*dtype = TENSOR_F32;
			} else if (strcmp(val, "<i8") == 0) {
				*dtype = TENSOR_I64;
			} else if (val[0] == '>') {
				return df_errf(DF_ENOTSUP,
					       "npy dtype '%s' is big-endian; only little-endian <f4 and <i8 are supported",
					       val);
			} else {
				return df_errf(DF_ENOTSUP,
					       "npy dtype '%s' not supported (only <f4 float32 and <i8 int64)",
					       val);
			}
			have_descr = 1;
		} else if (strcmp(key, "fortran_order") == 0) {
			if (read_word(&h, "True"))
				return df_errf(DF_ENOTSUP,
					       "npy array is in Fortran order; save it C-contiguous");
			if (!read_word(&h, "False"))
				return df_errf(DF_EINVAL, "npy header: bad 'fortran_order'");
			have_order = 1;
		} else if (strcmp(key, "shape") == 0) {
			df_err err = parse_shape(&h, ndim, dims);
			if (err)
				return err;
			have_shape = 1;
		} else {
			return df_errf(DF_EINVAL, "npy header: unexpected key '%s'", key);
		}
		if (!accept_char(&h, ',')) {
			if (!accept_char(&h, '}'))
				return df_errf(DF_EINVAL, "npy header: dict not closed");
			break;
		}
	}
	if (!have_descr || !have_order || !have_shape)
		return df_errf(DF_EINVAL,
			       "npy header lacks %s", !have_descr ? "'descr'"
			       : !have_order ? "'fortran_order'" : "'shape'");
	return DF_OK;
}

df_err npy_read_mem(const void *buf, size_t len, tensor **out)
{
	const unsigned char *b = buf;

	if (len < 10 || memcmp(b, npy_magic, sizeof npy_magic) != 0)
		return df_errf(DF_EINVAL, "not a .npy file (bad magic)");
	unsigned major = b[6], minor = b[7];
	size_t hlen, start;
	if (major == 1) {
		hlen = (size_t)b[8] | (size_t)b[9] << 8;
		start = 10;
	} else if (major == 2) {
		if (len < 12)
			return df_errf(DF_EINVAL, "npy file truncated in its preamble");
		hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 |
		       (size_t)b[11] << 24;
		start = 12;
	} else {
		return df_errf(DF_ENOTSUP, "npy format version %u.%u not supported (1.0 and 2.0 are)",
			       major, minor);
	}
	if (hlen > NPY_MAX_HEADER)
		return df_errf(DF_ETOOBIG, "npy header of %zu bytes is too long", hlen);
	if (len - start < hlen)
		return df_errf(DF_EINVAL, "npy file truncated in its header");

	tensor_dtype dtype = TENSOR_F32;
	int ndim = 0;
	int64_t dims[TENSOR_MAX_DIMS] = {0};
	df_err err = parse_header((const char *)b + start, hlen, &dtype, &ndim, dims);
	if (err)
		return err;
	size_t numel = 0;
	err = tensor_shape_numel(ndim, dims, dtype, &numel);
	if (err)
		return err;
	size_t want = numel * tensor_dtype_size(dtype);
	size_t have = len - start - hlen;
	if (have < want)
		return df_errf(DF_EINVAL, "npy data truncated: %zu bytes, shape needs %zu",
			       have, want);
	if (have > want)
		return df_errf(DF_EINVAL, "npy file has %zu bytes after the data",
			       have - want);
	tensor *t = NULL;
	err = tensor_create(dtype, ndim, dims, &t);
	if (err)
		return err;
	memcpy(t->data, b + start + hlen, want);
	*out = t;
	return DF_OK;
}

/* Reads a whole file, refusing files larger than max. */
static df_err read_all(const char *path, size_t max, void **buf, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return df_errf(errno == ENOENT ? DF_ENOENT : DF_EIO, "%s: %s", path,
			       strerror(errno));
	df_err err = DF_OK;
	char *data = NULL;
	if (fseek(f, 0, SEEK_END) != 0) {
		err = df_errf(DF_EIO, "%s: cannot seek", path);
		goto out;
	}
	long size = ftell(f);
	if (size < 0) {
		err = df_errf(DF_EIO, "%s: cannot tell size", path);
		goto out;
	}
	if ((unsigned long)size > max) {
		err = df_errf(DF_ETOOBIG, "%s: %ld bytes is above the %zu limit", path,
			      size, max);
		goto out;
	}
	rewind(f);
	data = malloc((size_t)size ? (size_t)size : 1);
	if (!data) {
		err = DF_ENOMEM;
		goto out;
	}
	if (fread(data, 1, (size_t)size, f) != (size_t)size) {
		err = df_errf(DF_EIO, "%s: short read", path);
		goto out;
	}
	*buf = data;
	*len = (size_t)size;
	data = NULL;
out:
	free(data);
	fclose(f);
	return err;
}

df_err npy_read_file(const char *path, tensor **out)
{
	void *buf = NULL;
	size_t len = 0;
	df_err err = read_all(path, TENSOR_MAX_BYTES + NPY_MAX_HEADER + 12, &buf,
			      &len);
	if (err)
		return err;
	err = npy_read_mem(buf, len, out);
	free(buf);
	if (err) {
		char msg[512];
		snprintf(msg, sizeof msg, "%s", df_err_msg());
		df_errf(err, "%s: %s", path, msg);
	}
	return err;
}

df_err npy_write_mem(const tensor *t, void **buf, size_t *len)
{
	char dict[512];
	int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
			 t->dtype == TENSOR_F32 ? "<f4" : "<i8");
	for (int i = 0; i < t->ndim; i++)
		n += snprintf(dict + n, sizeof dict - (size_t)n, "%lld,%s",
			      (long long)t->dims[i], i + 1 < t->ndim ? " " : "");
	/* NumPy writes "(3,)" for rank 1 and "(2, 3)" otherwise. */
	if (t->ndim > 1)
		n--;
	n += snprintf(dict + n, sizeof dict - (size_t)n, "), }");
	size_t dlen = (size_t)n;

	size_t pre = 10;
	size_t total_hdr = pre + dlen + 1;
	size_t padded = (total_hdr + 63) / 64 * 64;
	int major = 1;
	if (padded - pre > 65535) {
		major = 2;
		pre = 12;
		total_hdr = pre + dlen + 1;
		padded = (total_hdr + 63) / 64 * 64;
	}
	size_t hlen = padded - pre;
	size_t data_len = tensor_nbytes(t);
	unsigned char *b = malloc(padded + data_len);
	if (!b)
		return DF_ENOMEM;
	memcpy(b, npy_magic, sizeof npy_magic);
	b[6] = (unsigned char)major;
	b[7] = 0;
	b[8] = (unsigned char)(hlen & 0xff);
	b[9] = (unsigned char)(hlen >> 8 & 0xff);
	if (major == 2) {
		b[10] = (unsigned char)(hlen >> 16 & 0xff);
		b[11] = (unsigned char)(hlen >> 24 & 0xff);
	}
	memcpy(b + pre, dict, dlen);
	memset(b + pre + dlen, ' ', hlen - dlen - 1);
	b[padded - 1] = '\n';
	memcpy(b + padded, t->data, data_len);
	*buf = b;
	*len = padded + data_len;
	return DF_OK;
}

df_err npy_write_file(const char *path, const tensor *t)
{
	void *buf = NULL;
	size_t len = 0;
	df_err err = npy_write_mem(t, &buf, &len);
	if (err)
		return err;
	size_t plen = strlen(path);
	char *tmp = malloc(plen + 16);
	if (!tmp) {
		free(buf);
		return DF_ENOMEM;
	}
	snprintf(tmp, plen + 16, "%s.tmp.%d", path, (int)getpid());
	FILE *f = fopen(tmp, "wb");
	if (!f) {
		err = df_errf(DF_EIO, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	size_t w = fwrite(buf, 1, len, f);
	if (fclose(f) != 0 || w != len) {
		err = df_errf(DF_EIO, "%s: write failed", tmp);
		unlink(tmp);
		goto out;
	}
	if (rename(tmp, path) != 0) {
		err = df_errf(DF_EIO, "%s: %s", path, strerror(errno));
		unlink(tmp);
	}
out:
	free(tmp);
	free(buf);
	return err;
}
