/*
 * routes.c - the gateway's static route table and the request parsing
 * its handlers share: JSON errors, integer query arguments, and a
 * multipart/form-data reader.
 *
 * The multipart reader works on the complete, size-capped body
 * (http_server.h) and trusts nothing in it: the boundary comes from the
 * Content-Type header and is checked against RFC 2046 (1..70 characters
 * of the allowed set), part headers are bounded, every search stays
 * inside the body, and a body that ends before its closing delimiter is
 * an error. It returns a view into the body, never a copy.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "gateway.h"

#define MULTIPART_MAX_BOUNDARY 70
#define MULTIPART_MAX_HEADERS 16384 /* bytes of one part's header block */
#define MULTIPART_MAX_PARTS 256

static const http_route routes[] = {
	{"POST", "/v1/classify", classify_handle_v1, 0},
	{"GET", "/v2", classify_handle_v2_server, 0},
	{"GET", "/v2/health/live", classify_handle_live, 0},
	{"GET", "/v2/health/ready", classify_handle_ready, 0},
	{"GET", "/v2/models/{name}", classify_handle_v2_model, 0},
	{"GET", "/v2/models/{name}/ready", classify_handle_v2_model_ready, 0},
	{"POST", "/v2/models/{name}/infer", classify_handle_v2_infer, 0},
	{"GET", "/metrics", metrics_handle, 0},
	{"GET", "/admin/devices", admin_handle_devices, 0},
	{"POST", "/admin/devices", admin_handle_device_add, 65536},
	{"DELETE", "/admin/devices/{id}", admin_handle_device_delete, 0},
	{"GET", "/admin/partition", admin_handle_partition, 0},
	{"GET", "/admin/events", admin_handle_events, 0},
	{"PUT", "/admin/replication", admin_handle_replication, 65536},
};

const http_route *routes_table(size_t *n)
{
	*n = sizeof routes / sizeof routes[0];
	return routes;
}

df_err routes_error(http_response *res, int status, df_err err,
		    const char *msg)
{
	return http_reply_error_status(res, status, df_err_code(err),
				       msg ? msg : df_err_msg());
}

df_err routes_query_int(const http_request *req, const char *name,
			long long def, long long lo, long long hi,
			long long *out)
{
	const char *s = http_request_query(req, name);
	if (!s) {
		*out = def;
		return DF_OK;
	}
	errno = 0;
	char *end = NULL;
	long long v = strtoll(s, &end, 10);
	bool digits = *s == '-' ? isdigit((unsigned char)s[1])
				: isdigit((unsigned char)s[0]);
	if (!digits || *end != '\0')
		return df_errf(DF_EINVAL, "%s: '%.40s' is not an integer", name, s);
	if (errno == ERANGE || v < lo || v > hi)
		return df_errf(DF_EINVAL, "%s: %.40s is outside %lld..%lld", name, s,
			       lo, hi);
	*out = v;
	return DF_OK;
}

/* ---- multipart/form-data ------------------------------------------------ */

/* First occurrence of needle[0..nlen) in hay[0..len), or NULL (memmem is
 * a GNU extension). */
static const char *find_bytes(const void *hay, size_t len, const void *needle,
			      size_t nlen)
{
	const char *h = hay;
	if (nlen == 0 || nlen > len)
		return NULL;
	const char first = *(const char *)needle;
	for (size_t i = 0; i + nlen <= len; i++) {
		const char *p = memchr(h + i, first, len - nlen + 1 - i);
		if (!p)
			return NULL;
		i = (size_t)(p - h);
		if (memcmp(p, needle, nlen) == 0)
			return p;
	}
	return NULL;
}

static bool boundary_char(char c)
{
	return isalnum((unsigned char)c) || strchr("'()+_,-./:=? ", c) != NULL;
}

/* Reads parameter `key` of a header value like `form-data; name="x"` or
 * `multipart/form-data; boundary=abc` into out. */
static df_err header_param(const char *v, size_t vlen, const char *key,
			   char *out, size_t out_len, bool *found)
{
	*found = false;
	size_t klen = strlen(key);
	size_t i = 0;
	/* Skip the leading value (up to the first ';'). */
	while (i < vlen && v[i] != ';')
		i++;
	while (i < vlen) {
		i++; /* ';' */
		while (i < vlen && (v[i] == ' ' || v[i] == '\t'))
			i++;
		size_t k0 = i;
		while (i < vlen && v[i] != '=' && v[i] != ';')
			i++;
		size_t k1 = i;
		while (k1 > k0 && (v[k1 - 1] == ' ' || v[k1 - 1] == '\t'))
			k1--;
		bool match = k1 - k0 == klen && strncasecmp(v + k0, key, klen) == 0;
		if (i >= vlen || v[i] == ';')
			continue; /* parameter without a value */
		i++; /* '=' */
		while (i < vlen && (v[i] == ' ' || v[i] == '\t'))
			i++;
		size_t n = 0;
		if (i < vlen && v[i] == '"') {
			i++;
			bool closed = false;
			while (i < vlen) {
				char c = v[i++];
				if (c == '"') {
					closed = true;
					break;
				}
				if (c == '\\' && i < vlen)
					c = v[i++];
				if (match) {
					if (n + 1 >= out_len)
						return df_errf(DF_EINVAL, "multipart: parameter %s is too long",
							       key);
					out[n++] = c;
				}
			}
			if (!closed)
				return df_errf(DF_EINVAL, "multipart: unterminated quoted %s",
					       match ? key : "parameter");
			while (i < vlen && v[i] != ';')
				i++;
		} else {
			while (i < vlen && v[i] != ';' && v[i] != ' ' && v[i] != '\t') {
				if (match) {
					if (n + 1 >= out_len)
						return df_errf(DF_EINVAL, "multipart: parameter %s is too long",
							       key);
					out[n++] = v[i];
				}
				i++;
			}
			while (i < vlen && v[i] != ';')
				i++;
		}
		if (match) {
			out[n] = '\0';
			*found = true;
			return DF_OK;
		}
	}
	return DF_OK;
}

/* The form field name of a part from its header block hdr[0..len). */
static df_err part_name(const char *hdr, size_t len, char *name,
			size_t name_len, bool *found)
{
	*found = false;
	size_t i = 0;
	while (i < len) {
		const char *eol = find_bytes(hdr + i, len - i, "\r\n", 2);
		size_t line_end = eol ? (size_t)(eol - hdr) : len;
		const char *line = hdr + i;
		size_t ll = line_end - i;
		static const char cd[] = "Content-Disposition:";
		if (ll >= sizeof cd - 1 && strncasecmp(line, cd, sizeof cd - 1) == 0) {
			const char *v = line + sizeof cd - 1;
			size_t vl = ll - (sizeof cd - 1);
			while (vl && (*v == ' ' || *v == '\t')) {
				v++;
				vl--;
			}
			if (vl < 9 || strncasecmp(v, "form-data", 9) != 0)
				return df_errf(DF_EINVAL, "multipart: a part's Content-Disposition is not form-data");
			return header_param(v, vl, "name", name, name_len, found);
		}
		i = line_end + 2;
	}
	return DF_OK;
}

df_err routes_multipart_field(const char *ctype, const unsigned char *body,
			      size_t body_len, const char *field,
			      const unsigned char **data, size_t *len)
{
	char boundary[MULTIPART_MAX_BOUNDARY + 2];
	bool found = false;
	if (!ctype)
		return df_errf(DF_EINVAL, "multipart: no Content-Type");
	df_err err = header_param(ctype, strlen(ctype), "boundary", boundary,
				  sizeof boundary, &found);
	if (err)
		return err;
	size_t blen = found ? strlen(boundary) : 0;
	if (!found || blen == 0 || blen > MULTIPART_MAX_BOUNDARY ||
	    boundary[blen - 1] == ' ')
		return df_errf(DF_EINVAL, "multipart/form-data needs a boundary parameter of 1..%d characters",
			       MULTIPART_MAX_BOUNDARY);
	for (size_t i = 0; i < blen; i++)
		if (!boundary_char(boundary[i]))
			return df_errf(DF_EINVAL, "multipart: boundary has a character RFC 2046 does not allow");
	char delim[MULTIPART_MAX_BOUNDARY + 5];
	size_t dlen = (size_t)snprintf(delim, sizeof delim, "\r\n--%s", boundary);
	const char *b = (const char *)body;
	/* The first delimiter may start the body (no preamble, no CRLF). */
	size_t pos;
	if (body_len >= dlen - 2 && memcmp(b, delim + 2, dlen - 2) == 0) {
		pos = dlen - 2;
	} else {
		const char *p = find_bytes(b, body_len, delim, dlen);
		if (!p)
			return df_errf(DF_EINVAL, "multipart: the boundary never appears in the body");
		pos = (size_t)(p - b) + dlen;
	}
	for (int part = 0; part < MULTIPART_MAX_PARTS; part++) {
		/* After a delimiter: "--" closes, else transport padding and
		 * CRLF start a part. */
		if (body_len - pos >= 2 && b[pos] == '-' && b[pos + 1] == '-')
			return df_errf(DF_ENOENT, "multipart: no part named '%s'", field);
		while (pos < body_len && (b[pos] == ' ' || b[pos] == '\t'))
			pos++;
		if (body_len - pos < 2 || b[pos] != '\r' || b[pos + 1] != '\n')
			return df_errf(DF_EINVAL, "multipart: malformed delimiter line");
		pos += 2;
		size_t hmax = body_len - pos < MULTIPART_MAX_HEADERS
			? body_len - pos : MULTIPART_MAX_HEADERS;
		size_t hlen;
		if (hmax >= 2 && b[pos] == '\r' && b[pos + 1] == '\n') {
			hlen = 0; /* no headers */
		} else {
			const char *hend = find_bytes(b + pos, hmax, "\r\n\r\n", 4);
			if (!hend)
				return df_errf(DF_EINVAL, "multipart: part headers missing or longer than %d bytes",
					       MULTIPART_MAX_HEADERS);
			hlen = (size_t)(hend - (b + pos)) + 2;
		}
		char name[256];
		bool named = false;
		err = part_name(b + pos, hlen, name, sizeof name, &named);
		if (err)
			return err;
		size_t start = pos + hlen + 2;
		if (start > body_len)
			return df_errf(DF_EINVAL, "multipart: truncated part");
		const char *end = find_bytes(b + start, body_len - start, delim, dlen);
		if (!end)
			return df_errf(DF_EINVAL, "multipart: the body ends before the closing boundary");
		if (named && strcmp(name, field) == 0) {
			*data = body + start;
			*len = (size_t)(end - (b + start));
			return DF_OK;
		}
		pos = (size_t)(end - b) + dlen;
	}
	return df_errf(DF_EINVAL, "multipart: more than %d parts", MULTIPART_MAX_PARTS);
}
