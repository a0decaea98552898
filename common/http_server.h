/*
 * http_server.h - a small HTTP/1.1 server over libmicrohttpd with a static
 * route table, used by the gateway and the worker.
 *
 * Requests are matched against the route table in order. A pattern is a
 * path of '/'-separated segments; a segment "{name}" matches one non-empty
 * segment and binds it as path parameter `name`; a final segment "*"
 * matches the rest of the path (zero or more segments, readable as
 * req->rest). No pattern matches -> 404; a pattern matches but not the
 * method -> 405 with an Allow header listing the methods that would have
 * matched. Every error reply is JSON {"error": {"code", "message"}}.
 *
 * Bodies: the whole body is read into memory before the handler runs (so
 * a handler always sees complete input). A body above the cap (the route's
 * max_body, or the server's) never reaches the handler and is not
 * buffered: with a Content-Length above the cap the 413 goes out at once,
 * before any body byte is read, and the connection is closed after it. A
 * streamed (chunked) body is dropped from the moment it crosses the cap;
 * libmicrohttpd cannot reply in the middle of a body, so the 413 is sent
 * when the body ends, or the connection is closed without a reply if more
 * than 4 MiB past the cap arrive. Malformed requests (bad request line or
 * headers) are answered 400 by libmicrohttpd itself, with its own body.
 *
 * Threads: with cfg.threads == 0 each connection gets its own thread
 * (handlers may block: a gateway request waiting for workers, a worker
 * computing a stage); cfg.max_connections bounds the threads. With
 * cfg.threads > 0 a pool of that many epoll threads serves all connections;
 * a blocking handler then stalls the other connections of its thread, so
 * use it only for handlers that do not block. Handlers run concurrently
 * and must be thread-safe with respect to ctx.
 *
 * Ownership: the route table and ctx are borrowed and must outlive the
 * server. Everything in an http_request is borrowed for the duration of the
 * handler call. What a handler puts in an http_response is owned by the
 * response (see each http_reply_* function) and freed by the server.
 */
#ifndef DF_HTTP_SERVER_H
#define DF_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"

#define HTTP_MAX_PARAMS 8                  /* {name} segments per pattern */
#define HTTP_MAX_HEADERS 8                 /* extra response headers */
#define HTTP_DEFAULT_MAX_BODY (1u << 20)   /* when cfg.max_body is 0 */
#define HTTP_DEFAULT_MAX_CONNECTIONS 256
#define HTTP_DEFAULT_TIMEOUT_S 60
/* libmicrohttpd's memory pool per connection (its default is 32 KB). It
 * holds the headers and the read buffer, whose size is what one recv()
 * takes of a request body: 32 KB meant 16 KB reads, i.e. one poll, one
 * recv and one upload callback per 16 KB of a multi-megabyte stage call.
 * 128 KB gives 64 KB reads. Not more: libmicrohttpd zeroes the whole pool
 * between the requests of a keep-alive connection (with 512 KB that memset
 * alone was about 1% of a resnet18 worker's CPU). */
#define HTTP_CONNECTION_MEMORY (128u * 1024)

typedef struct http_server http_server;

typedef struct http_server_config {
	const char *bind;          /* numeric IPv4/IPv6 address to listen on;
				      NULL = "0.0.0.0" (all IPv4) */
	int port;                  /* 0 = ephemeral (see http_server_port()) */
	size_t max_body;           /* request body cap in bytes; 0 = default */
	int threads;               /* 0 = thread per connection, >0 = pool */
	unsigned max_connections;  /* concurrent connections; 0 = default */
	unsigned timeout_s;        /* idle connection timeout; 0 = default */
	const char *name;          /* tag before log lines, or NULL */
} http_server_config;

/* A request as a handler sees it. All borrowed. */
typedef struct http_request {
	const char *method;        /* "GET", "POST", ... */
	const char *path;          /* decoded path, without the query */
	const unsigned char *body; /* body_len bytes, followed by a NUL byte
				      (never NULL; "" when there is no body) */
	size_t body_len;
	int n_params;              /* bound {name} segments */
	const char *param_names[HTTP_MAX_PARAMS];
	const char *param_values[HTTP_MAX_PARAMS];
	const char *rest;          /* what a trailing "*" matched ("" if
				      nothing; NULL if the pattern has none) */
	const char *remote;        /* peer address as text ("127.0.0.1") */
	void *conn;                /* internal (the MHD connection) */
} http_request;

/* Value of path parameter `name` ("{name}" in the pattern), or NULL. */
const char *http_request_param(const http_request *req, const char *name);

/* Value of query argument `name` (decoded), or NULL when absent. An
 * argument without a value ("?flag") gives "". */
const char *http_request_query(const http_request *req, const char *name);

/* Value of request header `name` (case-insensitive), or NULL. */
const char *http_request_header(const http_request *req, const char *name);

/*
 * The media type of the request's Content-Type, without parameters and
 * surrounding blanks, compared case-insensitively with `type`:
 * true for "application/json; charset=utf-8" and type "application/json".
 */
bool http_request_content_type_is(const http_request *req, const char *type);

/*
 * "Authorization: Bearer <token>" holds exactly `token` (constant-time
 * comparison, independent of where the first difference is).
 */
bool http_request_bearer_is(const http_request *req, const char *token);

/*
 * The client has closed its end of the connection (or it failed): nobody
 * will read the reply. Does not block. Only valid while the handler runs.
 * Lets a handler skip work whose caller gave up (a hedged call the
 * gateway abandoned, a request past its deadline).
 */
bool http_request_client_gone(const http_request *req);

/* The reply a handler fills. Opaque fields; use the functions below. A
 * later http_reply_* replaces an earlier one. */
typedef struct http_response {
	int status;                /* 0 = nothing set yet */
	char *content_type;        /* owned */
	void *body;                /* owned unless body_static */
	size_t body_len;
	bool body_static;
	bool drop;                 /* close the connection without replying */
	int n_headers;
	char *header_names[HTTP_MAX_HEADERS];  /* owned */
	char *header_values[HTTP_MAX_HEADERS]; /* owned */
} http_response;

/*
 * A route handler. Returns DF_OK after filling res. Returning an error
 * instead discards anything put in res and answers http_reply_error(err,
 * df_err_msg()) (so `return df_errf(DF_ENOENT, "no version %s", v);`
 * replies 404 with that message). A handler that returns DF_OK without
 * setting a status gets a 500.
 */
typedef df_err (*http_handler)(const http_request *req, http_response *res,
			       void *ctx);

typedef struct http_route {
	const char *method;        /* "GET", "POST", "PUT", "DELETE", ... */
	const char *pattern;       /* "/v1/partitions/{version}/prepare" */
	http_handler handler;
	size_t max_body;           /* cap for this route; 0 = server's */
} http_route;

/*
 * Starts listening and serving. routes[0..n_routes) and ctx are borrowed.
 * Errors: DF_EINVAL for a bad bind address or pattern (more than
 * HTTP_MAX_PARAMS params, "*" not last), DF_EUNAVAIL when the port cannot
 * be bound (message names address and port). Free with
 * http_server_destroy().
 */
df_err http_server_create(const http_server_config *cfg,
			  const http_route *routes, size_t n_routes, void *ctx,
			  http_server **out);

/* The port actually bound (the ephemeral one when cfg.port was 0). */
int http_server_port(const http_server *s);

/*
 * Stops accepting, waits for handlers in progress to finish and their
 * replies to be sent or abandoned, closes every connection and frees s.
 * NULL is a no-op.
 */
void http_server_destroy(http_server *s);

/* ---- replies ------------------------------------------------------------ */

/* Replies `status` with body json serialized compactly (application/json).
 * Takes the caller's reference to body (json_decref()ed even on failure);
 * body NULL means an allocation failed upstream: DF_ENOMEM. */
df_err http_reply_json(http_response *res, int status, json_t *body);

/* Replies df_err_http_status(err) with {"error": {"code": df_err_code(err),
 * "message": message}} (message may be NULL: df_err_str(err)). */
df_err http_reply_error(http_response *res, df_err err, const char *message);

/* Same with an explicit status and code, for statuses without a df_err
 * (405 "method_not_allowed", ...). */
df_err http_reply_error_status(http_response *res, int status,
			       const char *code, const char *message);

/*
 * Replies `status` with len bytes of content_type. With take set, data
 * (from malloc) becomes the response's and is free()d by the server, even
 * on failure; otherwise data is borrowed and must stay valid until the
 * server is destroyed (static bytes).
 */
df_err http_reply_bytes(http_response *res, int status,
			const char *content_type, void *data, size_t len,
			bool take);

/* Adds a response header (both strings copied). At most HTTP_MAX_HEADERS
 * (DF_ERANGE beyond). */
df_err http_response_header(http_response *res, const char *name,
			    const char *value);

/* Closes the connection without any reply (fault injection, abuse). */
void http_response_drop(http_response *res);

#endif
