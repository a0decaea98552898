/*
 * http_server.c - see http_server.h.
 *
 * Per-request state (req_state) lives in MHD's *req_cls from the first call
 * of the access handler to the completion callback, which frees it. The
 * first call matches the route and decides the early answers (404, 405,
 * 413 by Content-Length); later calls append body bytes; the final call
 * (no more upload data) runs the handler and queues its reply.
 * Invariant: st->len <= st->limit and st->body[st->len] == '\0' whenever
 * st->body is non-NULL.
 */
#include "http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "log.h"
#include "sha256.h"

#define METHODS_MAX 128 /* bytes of an Allow header value */
/* Body bytes read and dropped past the cap before giving up on a clean 413
 * and closing the connection instead. */
#define DISCARD_MAX ((size_t)4 << 20)

struct http_server {
	struct MHD_Daemon *d;
	const http_route *routes;
	size_t n_routes;
	void *ctx;
	size_t max_body;
	int port;
	char name[32];         /* "tag: " for log lines, or "" */
};

typedef struct req_state {
	http_server *srv;
	const http_route *route;
	unsigned char *body;  /* NULL until the first byte arrives */
	size_t len, cap;
	size_t limit;         /* body cap for this request */
	bool replied;         /* a response was queued already */
	char *path;           /* copy of the URL path */
	char *scratch;        /* path parameters and their names */
	http_request req;
	char remote[INET6_ADDRSTRLEN];
	struct timespec t0;
	int status;           /* for the log line */
	int over_status;      /* 413/503 once the body could not be kept */
	size_t discarded;     /* body bytes dropped since then */
} req_state;

/* ---- request accessors -------------------------------------------------- */

const char *http_request_param(const http_request *req, const char *name)
{
	for (int i = 0; i < req->n_params; i++)
		if (strcmp(req->param_names[i], name) == 0)
			return req->param_values[i];
	return NULL;
}

const char *http_request_query(const http_request *req, const char *name)
{
	if (!req->conn)
		return NULL;
	const char *v = MHD_lookup_connection_value(req->conn,
						    MHD_GET_ARGUMENT_KIND, name);
	if (v)
		return v;
	/* "?flag" without '=': MHD records the key with a NULL value. */
	if (MHD_lookup_connection_value_n(req->conn, MHD_GET_ARGUMENT_KIND, name,
					  strlen(name), NULL, NULL) == MHD_YES)
		return "";
	return NULL;
}

const char *http_request_header(const http_request *req, const char *name)
{
	if (!req->conn)
		return NULL;
	return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

bool http_request_content_type_is(const http_request *req, const char *type)
{
	const char *ct = http_request_header(req, MHD_HTTP_HEADER_CONTENT_TYPE);
	if (!ct)
		return false;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	size_t n = strcspn(ct, ";");
	while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'))
		n--;
	return n == strlen(type) && strncasecmp(ct, type, n) == 0;
}

bool http_request_bearer_is(const http_request *req, const char *token)
{
	const char *h = http_request_header(req, MHD_HTTP_HEADER_AUTHORIZATION);
	if (!h || strncasecmp(h, "Bearer ", 7) != 0)
		return false;
	const char *given = h + 7;
	while (*given == ' ')
		given++;
	if (!*token)
		return false;
	/* Compare digests, so that neither the position of the first
	 * difference nor the lengths show in the time taken. */
	uint8_t a[SHA256_DIGEST_LEN], b[SHA256_DIGEST_LEN];
	sha256_buf(given, strlen(given), a);
	sha256_buf(token, strlen(token), b);
	unsigned char diff = 0;
	for (size_t i = 0; i < SHA256_DIGEST_LEN; i++)
		diff |= (unsigned char)(a[i] ^ b[i]);
	return diff == 0;
}

bool http_request_client_gone(const http_request *req)
{
	if (!req->conn)
		return false;
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
		req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (!ci || ci->connect_fd == MHD_INVALID_SOCKET)
		return false;
	/* The request body has been read, so readable now means the peer
	 * closed (recv returns 0), the connection failed (an error), or a
	 * pipelined next request (data: the client is still there). */
	struct pollfd pfd = {.fd = ci->connect_fd, .events = POLLIN};
	if (poll(&pfd, 1, 0) != 1)
		return false;
	if (pfd.revents & (POLLERR | POLLNVAL))
		return true;
	char c;
	ssize_t n = recv(ci->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
			  errno != EINTR);
}

/* ---- replies ------------------------------------------------------------ */

static void response_clear(http_response *res)
{
	free(res->content_type);
	if (!res->body_static)
		free(res->body);
	for (int i = 0; i < res->n_headers; i++) {
		free(res->header_names[i]);
		free(res->header_values[i]);
	}
	memset(res, 0, sizeof *res);
}

/* Replaces the body and status, keeping extra headers. */
static df_err response_set(http_response *res, int status, const char *ctype,
			   void *data, size_t len, bool take)
{
	char *ct = strdup(ctype);
	if (!ct) {
		if (take)
			free(data);
		return DF_ENOMEM;
	}
	free(res->content_type);
	if (!res->body_static)
		free(res->body);
	res->status = status;
	res->content_type = ct;
	res->body = data;
	res->body_len = len;
	res->body_static = !take;
	res->drop = false;
	return DF_OK;
}

df_err http_reply_bytes(http_response *res, int status,
			const char *content_type, void *data, size_t len,
			bool take)
{
	return response_set(res, status, content_type, data, len, take);
}

df_err http_reply_json(http_response *res, int status, json_t *body)
{
	if (!body)
		return df_errf(DF_ENOMEM, "building the JSON reply failed");
	char *text = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (!text)
		return df_errf(DF_ENOMEM, "serializing the JSON reply failed");
	return response_set(res, status, "application/json", text, strlen(text),
			    true);
}

df_err http_reply_error_status(http_response *res, int status,
			       const char *code, const char *message)
{
	json_t *j = json_pack("{s:{s:s, s:s}}", "error", "code", code, "message",
			      message ? message : "");
	return http_reply_json(res, status, j);
}

df_err http_reply_error(http_response *res, df_err err, const char *message)
{
	if (!message || !*message)
		message = df_err_str(err);
	return http_reply_error_status(res, df_err_http_status(err),
				       df_err_code(err), message);
}

df_err http_response_header(http_response *res, const char *name,
			    const char *value)
{
	if (res->n_headers >= HTTP_MAX_HEADERS)
		return df_errf(DF_ERANGE, "response header %s: more than %d headers",
			       name, HTTP_MAX_HEADERS);
	char *n = strdup(name), *v = strdup(value);
	if (!n || !v) {
		free(n);
		free(v);
		return DF_ENOMEM;
	}
	res->header_names[res->n_headers] = n;
	res->header_values[res->n_headers] = v;
	res->n_headers++;
	return DF_OK;
}

void http_response_drop(http_response *res)
{
	res->drop = true;
}

/* Queues res on conn. Takes over res's body (cleared afterwards). */
static enum MHD_Result queue(struct MHD_Connection *conn, req_state *st,
			     http_response *res)
{
	struct MHD_Response *r;
	if (res->body_static)
		r = MHD_create_response_from_buffer(res->body_len, res->body,
						    MHD_RESPMEM_PERSISTENT);
	else
		r = MHD_create_response_from_buffer(res->body_len, res->body,
						    MHD_RESPMEM_MUST_FREE);
	if (!r) {
		response_clear(res);
		return MHD_NO;
	}
	/* The response owns the body now. */
	res->body = NULL;
	res->body_len = 0;
	res->body_static = false;
	bool ok = true;
	if (res->content_type)
		ok = MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
					     res->content_type) == MHD_YES;
	for (int i = 0; ok && i < res->n_headers; i++)
		ok = MHD_add_response_header(r, res->header_names[i],
					     res->header_values[i]) == MHD_YES;
	enum MHD_Result ret = MHD_NO;
	if (ok)
		ret = MHD_queue_response(conn, (unsigned)res->status, r);
	MHD_destroy_response(r);
	st->status = res->status;
	st->replied = ret == MHD_YES;
	response_clear(res);
	return ret;
}

/* Queues a JSON error; on failure to build it, closes the connection. */
static enum MHD_Result queue_error(struct MHD_Connection *conn, req_state *st,
				   int status, const char *code,
				   const char *message)
{
	http_response res = {0};
	if (http_reply_error_status(&res, status, code, message) != DF_OK) {
		response_clear(&res);
		return MHD_NO;
	}
	return queue(conn, st, &res);
}

/* ---- routing ------------------------------------------------------------ */

/* Checks a pattern when the server starts. */
static df_err pattern_check(const char *pat)
{
	if (!pat || pat[0] != '/')
		return df_errf(DF_EINVAL, "route pattern '%s' must start with '/'",
			       pat ? pat : "(null)");
	int params = 0;
	const char *seg = pat + 1;
	while (1) {
		size_t n = strcspn(seg, "/");
		bool last = seg[n] == '\0';
		if (n == 1 && seg[0] == '*' && !last)
			return df_errf(DF_EINVAL, "route pattern '%s': '*' must be the last segment",
				       pat);
		if (n >= 2 && seg[0] == '{') {
			if (seg[n - 1] != '}' || n == 2)
				return df_errf(DF_EINVAL, "route pattern '%s': bad parameter segment",
					       pat);
			if (++params > HTTP_MAX_PARAMS)
				return df_errf(DF_EINVAL, "route pattern '%s': more than %d parameters",
					       pat, HTTP_MAX_PARAMS);
		}
		if (last)
			break;
		seg += n + 1;
	}
	return DF_OK;
}

/*
 * Matches path against pat. On a match with req non-NULL, binds the
 * parameters into req, pointing into buf (a scratch copy of path of at
 * least strlen(path)+1 bytes that the caller keeps alive).
 */
static bool pattern_match(const char *pat, const char *path, char *buf,
			  http_request *req)
{
	if (path[0] != '/')
		return false;
	const char *p = pat + 1, *u = path + 1;
	int n_params = 0;
	const char *names[HTTP_MAX_PARAMS];
	size_t name_lens[HTTP_MAX_PARAMS];
	size_t offs[HTTP_MAX_PARAMS], lens[HTTP_MAX_PARAMS];
	const char *rest = NULL;
	while (1) {
		size_t pn = strcspn(p, "/");
		size_t un = strcspn(u, "/");
		if (pn == 1 && p[0] == '*') {
			rest = u;
			break;
		}
		if (pn >= 2 && p[0] == '{') {
			if (un == 0 || n_params >= HTTP_MAX_PARAMS)
				return false;
			names[n_params] = p + 1;
			name_lens[n_params] = pn - 2;
			offs[n_params] = (size_t)(u - path);
			lens[n_params] = un;
			n_params++;
		} else if (pn != un || memcmp(p, u, pn) != 0) {
			return false;
		}
		bool p_end = p[pn] == '\0', u_end = u[un] == '\0';
		if (p_end || u_end) {
			if (p_end && u_end)
				break;
			/* A trailing star also matches nothing: "/a" (rest ""). */
			if (u_end && strcmp(p + pn, "/*") == 0) {
				rest = u + un;
				break;
			}
			return false;
		}
		p += pn + 1;
		u += un + 1;
	}
	if (!req)
		return true;
	/* Layout in buf: the path copy with each param NUL-terminated in
	 * place, then the names after it. */
	size_t plen = strlen(path);
	memcpy(buf, path, plen + 1);
	char *names_at = buf + plen + 1;
	for (int i = 0; i < n_params; i++) {
		buf[offs[i] + lens[i]] = '\0';
		req->param_values[i] = buf + offs[i];
		memcpy(names_at, names[i], name_lens[i]);
		names_at[name_lens[i]] = '\0';
		req->param_names[i] = names_at;
		names_at += name_lens[i] + 1;
	}
	req->n_params = n_params;
	req->rest = rest ? buf + (rest - path) : NULL;
	return true;
}

/* Route for method+path, or NULL; *path_matched says whether some route
 * matched the path with another method. */
static const http_route *route_find(const http_server *s, const char *method,
				    const char *path, bool *path_matched)
{
	*path_matched = false;
	for (size_t i = 0; i < s->n_routes; i++) {
		const http_route *r = &s->routes[i];
		if (!pattern_match(r->pattern, path, NULL, NULL))
			continue;
		if (strcmp(r->method, method) == 0)
			return r;
		*path_matched = true;
	}
	return NULL;
}

/* "GET, POST" for the routes matching path. */
static void allowed_methods(const http_server *s, const char *path, char *buf,
			    size_t len)
{
	buf[0] = '\0';
	size_t used = 0;
	for (size_t i = 0; i < s->n_routes; i++) {
		const http_route *r = &s->routes[i];
		if (!pattern_match(r->pattern, path, NULL, NULL))
			continue;
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen = strcmp(s->routes[j].method, r->method) == 0 &&
			       pattern_match(s->routes[j].pattern, path, NULL, NULL);
		if (seen)
			continue;
		int w = snprintf(buf + used, len - used, "%s%s", used ? ", " : "",
				 r->method);
		if (w < 0 || (size_t)w >= len - used)
			return;
		used += (size_t)w;
	}
}

/* ---- MHD callbacks ------------------------------------------------------ */

static double ms_since(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 +
	       (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

static void on_completed(void *cls, struct MHD_Connection *conn,
			 void **req_cls, enum MHD_RequestTerminationCode toe)
{
	(void)conn;
	http_server *s = cls;
	req_state *st = *req_cls;
	if (!st)
		return;
	if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK)
		log_debug("%s%s %s -> %d (%.1f ms)", s->name, st->req.method,
			  st->req.path ? st->req.path : "?", st->status,
			  ms_since(&st->t0));
	else
		log_debug("%s%s %s terminated early (code %d, status %d, %.1f ms)",
			  s->name, st->req.method,
			  st->req.path ? st->req.path : "?", (int)toe, st->status,
			  ms_since(&st->t0));
	free(st->body);
	free(st->path);
	free(st->scratch);
	free(st);
	*req_cls = NULL;
}

/* First call for a request: route it and decide the early answers. */
static enum MHD_Result begin(http_server *s, struct MHD_Connection *conn,
			     const char *url, const char *method,
			     void **req_cls)
{
	req_state *st = calloc(1, sizeof *st);
	if (!st)
		return MHD_NO;
	*req_cls = st;
	st->srv = s;
	clock_gettime(CLOCK_MONOTONIC, &st->t0);
	st->req.method = method;
	st->req.conn = conn;
	st->req.remote = st->remote;
	st->req.body = (const unsigned char *)"";
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci && ci->client_addr) {
		const struct sockaddr *sa = ci->client_addr;
		if (sa->sa_family == AF_INET)
			inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
				  st->remote, sizeof st->remote);
		else if (sa->sa_family == AF_INET6)
			inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
				  st->remote, sizeof st->remote);
	}
	st->path = strdup(url);
	if (!st->path)
		return MHD_NO;
	st->req.path = st->path;
	bool other_method = false;
	st->route = route_find(s, method, url, &other_method);
	if (!st->route) {
		char msg[320];
		if (!other_method) {
			snprintf(msg, sizeof msg, "no route for %.100s", url);
			return queue_error(conn, st, 404, "not_found", msg);
		}
		char allow[METHODS_MAX];
		allowed_methods(s, url, allow, sizeof allow);
		snprintf(msg, sizeof msg, "%.16s is not allowed on %.80s (allowed: %s)",
			 method, url, allow);
		http_response res = {0};
		if (http_reply_error_status(&res, 405, "method_not_allowed", msg) ||
		    http_response_header(&res, MHD_HTTP_HEADER_ALLOW, allow)) {
			response_clear(&res);
			return MHD_NO;
		}
		return queue(conn, st, &res);
	}
	/* Scratch for the parameters: a copy of the path with each value
	 * NUL-terminated in place, then the names (shorter than the pattern). */
	size_t plen = strlen(url), patlen = strlen(st->route->pattern);
	st->scratch = malloc(plen + patlen + 2);
	if (!st->scratch)
		return MHD_NO;
	pattern_match(st->route->pattern, url, st->scratch, &st->req);
	st->limit = st->route->max_body ? st->route->max_body : s->max_body;
	const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						     MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl) {
		errno = 0;
		char *end = NULL;
		unsigned long long v = strtoull(cl, &end, 10);
		if (end == cl || *end != '\0' || cl[0] == '-')
			return queue_error(conn, st, 400, "bad_request",
					   "Content-Length is not a number");
		if (errno == ERANGE || v > st->limit) {
			char msg[128];
			snprintf(msg, sizeof msg, "request body is larger than %zu bytes",
				 st->limit);
			return queue_error(conn, st, 413, "too_large", msg);
		}
		if (v > 0) {
			st->body = malloc((size_t)v + 1);
			if (!st->body)
				return queue_error(conn, st, 503, "out_of_memory",
						   "no memory for the request body");
			st->cap = (size_t)v;
			st->body[0] = '\0';
		}
	}
	return MHD_YES;
}

/* Appends upload data; false when the cap is crossed or memory is out. */
static bool append(req_state *st, const char *data, size_t n, int *status)
{
	if (n > st->limit - st->len) {
		*status = 413;
		return false;
	}
	if (st->len + n > st->cap) {
		size_t want = st->cap ? st->cap : 64 * 1024;
		while (want < st->len + n)
			want = want > st->limit / 2 ? st->limit : want * 2;
		if (want > st->limit)
			want = st->limit; /* still >= len + n, which is <= limit */
		unsigned char *b = realloc(st->body, want + 1);
		if (!b) {
			*status = 503;
			return false;
		}
		st->body = b;
		st->cap = want;
	}
	memcpy(st->body + st->len, data, n);
	st->len += n;
	st->body[st->len] = '\0';
	return true;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn,
				 const char *url, const char *method,
				 const char *version, const char *upload_data,
				 size_t *upload_data_size, void **req_cls)
{
	(void)version;
	http_server *s = cls;
	if (!*req_cls)
		return begin(s, conn, url, method, req_cls);
	req_state *st = *req_cls;
	if (st->replied) {
		/* An early answer is queued; discard whatever body arrives. */
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;
		*upload_data_size = 0;
		if (st->over_status) {
			/* Over the cap: count and drop the bytes. MHD cannot
			 * answer in the middle of a body, so the reply waits
			 * for its end, unless the rest is too long to wait. */
			st->discarded += n;
			if (st->discarded > DISCARD_MAX) {
				log_debug("%s%s %s: body over %zu bytes, closing", s->name,
					  method, url, st->limit);
				return MHD_NO;
			}
			return MHD_YES;
		}
		if (!append(st, upload_data, n, &st->over_status)) {
			free(st->body);
			st->body = NULL;
			st->len = st->cap = 0;
			st->discarded = n;
		}
		return MHD_YES;
	}
	if (st->over_status) {
		char msg[128];
		if (st->over_status == 413)
			snprintf(msg, sizeof msg, "request body is larger than %zu bytes",
				 st->limit);
		else
			snprintf(msg, sizeof msg, "no memory for the request body");
		return queue_error(conn, st, st->over_status,
				   st->over_status == 413 ? "too_large" : "out_of_memory",
				   msg);
	}
	/* The whole request is here: run the handler. */
	if (st->body) {
		st->req.body = st->body;
		st->req.body_len = st->len;
	}
	http_response res = {0};
	df_err_clear();
	df_err err = st->route->handler(&st->req, &res, s->ctx);
	if (res.drop && !err) {
		response_clear(&res);
		st->status = 0;
		log_debug("%s%s %s: dropping the connection", s->name, method, url);
		return MHD_NO;
	}
	if (!err && res.status == 0)
		err = df_errf(DF_EINTERNAL, "handler for %s %s set no reply", method,
			      st->route->pattern);
	if (err) {
		char msg[512];
		snprintf(msg, sizeof msg, "%s", df_err_msg());
		response_clear(&res);
		if (http_reply_error(&res, err, msg) != DF_OK) {
			response_clear(&res);
			return MHD_NO;
		}
		if (res.status >= 500)
			log_warn("%s%s %s -> %d: %s", s->name, method, url, res.status,
				 msg[0] ? msg : df_err_str(err));
	}
	return queue(conn, st, &res);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	http_server *s = cls;
	char buf[512];
	vsnprintf(buf, sizeof buf, fmt, ap);
	size_t n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	log_warn("%slibmicrohttpd: %s", s->name, buf);
}

/* ---- lifecycle ---------------------------------------------------------- */

df_err http_server_create(const http_server_config *cfg,
			  const http_route *routes, size_t n_routes, void *ctx,
			  http_server **out)
{
	if (cfg->port < 0 || cfg->port > 65535)
		return df_errf(DF_EINVAL, "port %d is outside 0..65535", cfg->port);
	if (cfg->threads < 0 || cfg->threads > 1024)
		return df_errf(DF_EINVAL, "http threads %d is outside 0..1024",
			       cfg->threads);
	for (size_t i = 0; i < n_routes; i++) {
		if (!routes[i].method || !routes[i].handler)
			return df_errf(DF_EINVAL, "route %zu has no method or handler", i);
		df_err err = pattern_check(routes[i].pattern);
		if (err)
			return err;
	}
	const char *bind = cfg->bind && *cfg->bind ? cfg->bind : "0.0.0.0";
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	memset(&sin, 0, sizeof sin);
	memset(&sin6, 0, sizeof sin6);
	const struct sockaddr *sa;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	if (inet_pton(AF_INET, bind, &sin.sin_addr) == 1) {
		sin.sin_family = AF_INET;
		sin.sin_port = htons((uint16_t)cfg->port);
		sa = (const struct sockaddr *)&sin;
	} else if (inet_pton(AF_INET6, bind, &sin6.sin6_addr) == 1) {
		sin6.sin6_family = AF_INET6;
		sin6.sin6_port = htons((uint16_t)cfg->port);
		sa = (const struct sockaddr *)&sin6;
		flags |= MHD_USE_IPv6;
	} else {
		return df_errf(DF_EINVAL, "bind address '%s' is not a numeric IPv4 or IPv6 address",
			       bind);
	}
	http_server *s = calloc(1, sizeof *s);
	if (!s)
		return DF_ENOMEM;
	s->routes = routes;
	s->n_routes = n_routes;
	s->ctx = ctx;
	s->max_body = cfg->max_body ? cfg->max_body : HTTP_DEFAULT_MAX_BODY;
	if (cfg->name && *cfg->name)
		snprintf(s->name, sizeof s->name, "%.29s: ", cfg->name);
	unsigned conns = cfg->max_connections ? cfg->max_connections
					      : HTTP_DEFAULT_MAX_CONNECTIONS;
	unsigned timeout = cfg->timeout_s ? cfg->timeout_s : HTTP_DEFAULT_TIMEOUT_S;
	unsigned pool = 0;
	if (cfg->threads == 0)
		flags |= MHD_USE_THREAD_PER_CONNECTION;
	else {
		flags |= MHD_USE_EPOLL;
		pool = (unsigned)cfg->threads;
	}
	struct MHD_OptionItem opts[] = {
		{MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)on_mhd_log, s},
		{MHD_OPTION_SOCK_ADDR, 0, (void *)(uintptr_t)sa},
		{MHD_OPTION_CONNECTION_LIMIT, (intptr_t)conns, NULL},
		{MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)timeout, NULL},
		{MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		 (intptr_t)HTTP_CONNECTION_MEMORY, NULL},
		{MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, s},
		/* Strict HTTP parsing (e.g. HTTP/1.1 without Host is 400):
		 * every client of ours is libcurl or a browser. */
		{MHD_OPTION_STRICT_FOR_CLIENT, 1, NULL},
		{pool ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END,
		 (intptr_t)pool, NULL},
		{MHD_OPTION_END, 0, NULL},
	};
	s->d = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_access,
				s, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
	if (!s->d) {
		free(s);
		return df_errf(DF_EUNAVAIL, "cannot listen on %s port %d (in use, or not a local address?)",
			       bind, cfg->port);
	}
	const union MHD_DaemonInfo *di =
		MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
	s->port = di ? (int)di->port : cfg->port;
	if (s->port == 0) {
		MHD_stop_daemon(s->d);
		free(s);
		return df_errf(DF_EINTERNAL, "libmicrohttpd did not report the bound port");
	}
	*out = s;
	return DF_OK;
}

int http_server_port(const http_server *s)
{
	return s->port;
}

void http_server_destroy(http_server *s)
{
	if (!s)
		return;
	MHD_stop_daemon(s->d);
	free(s);
}
