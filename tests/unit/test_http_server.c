/*
 * test_http_server.c - the HTTP server wrapper driven by libcurl over
 * 127.0.0.1 on an ephemeral port: routing, parameters, query, headers,
 * error statuses (404/405/413/handler errors), large bodies, concurrent
 * clients, and shutdown while clients are busy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_server.h"

/* ---- handlers ----------------------------------------------------------- */

static atomic_int handled;

static df_err h_hello(const http_request *req, http_response *res, void *ctx)
{
	(void)ctx;
	atomic_fetch_add(&handled, 1);
	const char *who = http_request_query(req, "who");
	const char *flag = http_request_query(req, "flag");
	const char *hdr = http_request_header(req, "x-test");
	return http_reply_json(res, 200,
			       json_pack("{s:s, s:s*, s:b, s:s*}", "path", req->path,
					 "who", who, "flag", flag != NULL, "hdr",
					 hdr));
}

static df_err h_item(const http_request *req, http_response *res, void *ctx)
{
	(void)ctx;
	return http_reply_json(res, 200,
			       json_pack("{s:s, s:s, s:i}", "id",
					 http_request_param(req, "id"), "sub",
					 http_request_param(req, "sub"), "n",
					 req->n_params));
}

static df_err h_files(const http_request *req, http_response *res, void *ctx)
{
	(void)ctx;
	return http_reply_json(res, 200, json_pack("{s:s}", "rest", req->rest));
}

/* Echoes the body back with its length in a header. */
static df_err h_echo(const http_request *req, http_response *res, void *ctx)
{
	(void)ctx;
	atomic_fetch_add(&handled, 1);
	if (req->body[req->body_len] != '\0')
		return df_errf(DF_EINTERNAL, "body is not NUL-terminated");
	void *copy = malloc(req->body_len ? req->body_len : 1);
	if (!copy)
		return DF_ENOMEM;
	memcpy(copy, req->body, req->body_len);
	char len[32];
	snprintf(len, sizeof len, "%zu", req->body_len);
	df_err err = http_reply_bytes(res, 200, "application/octet-stream", copy,
				      req->body_len, true);
	if (!err)
		err = http_response_header(res, "X-Body-Len", len);
	return err;
}

static df_err h_fail(const http_request *req, http_response *res, void *ctx)
{
	(void)ctx;
	(void)req;
	/* A partial reply must be discarded when an error is returned. */
	http_reply_bytes(res, 200, "text/plain", "partial", 7, false);
	return df_errf(DF_ECONFLICT, "version %s is busy", "7");
}

static df_err h_noreply(const http_request *req, http_response *res, void *ctx)
{
	(void)req;
	(void)res;
	(void)ctx;
	return DF_OK;
}

static df_err h_drop(const http_request *req, http_response *res, void *ctx)
{
	(void)req;
	(void)ctx;
	http_response_drop(res);
	return DF_OK;
}

static df_err h_auth(const http_request *req, http_response *res, void *ctx)
{
	(void)ctx;
	if (!http_request_bearer_is(req, "s3cret"))
		return df_errf(DF_EAUTH, "bad token");
	if (!http_request_content_type_is(req, "application/json"))
		return df_errf(DF_ENOTSUP, "want application/json");
	return http_reply_bytes(res, 204, "text/plain", "", 0, false);
}

/* Sleeps a little so that shutdown finds requests in progress. */
static df_err h_slow(const http_request *req, http_response *res, void *ctx)
{
	(void)req;
	(void)ctx;
	struct timespec ts = {0, 20 * 1000 * 1000};
	nanosleep(&ts, NULL);
	return http_reply_bytes(res, 200, "text/plain", "slow", 4, false);
}

/* Waits up to 3 s for the client to go away; reports what it saw in
 * gone_seen (1 gone, 0 still there) and answers either way. */
static atomic_int gone_seen = -1;

static df_err h_wait_gone(const http_request *req, http_response *res, void *ctx)
{
	(void)ctx;
	int gone = 0;
	for (int i = 0; i < 600 && !gone; i++) {
		gone = http_request_client_gone(req);
		struct timespec ts = {0, 5 * 1000 * 1000};
		if (!gone)
			nanosleep(&ts, NULL);
	}
	atomic_store(&gone_seen, gone);
	return http_reply_bytes(res, 200, "text/plain", gone ? "gone" : "here", 4,
				false);
}

/* Answers whether the client looks gone right now. */
static df_err h_check_gone(const http_request *req, http_response *res, void *ctx)
{
	(void)ctx;
	bool gone = http_request_client_gone(req);
	return http_reply_bytes(res, 200, "text/plain", gone ? "gone" : "here", 4,
				false);
}

static const http_route routes[] = {
	{"GET", "/wait-gone", h_wait_gone, 0},
	{"POST", "/check-gone", h_check_gone, 0},
	{"GET", "/hello", h_hello, 0},
	{"GET", "/items/{id}/parts/{sub}", h_item, 0},
	{"DELETE", "/items/{id}/parts/{sub}", h_item, 0},
	{"GET", "/files/*", h_files, 0},
	{"POST", "/echo", h_echo, 0},
	{"PUT", "/echo", h_echo, 0},
	{"POST", "/small", h_echo, 16},
	{"GET", "/fail", h_fail, 0},
	{"GET", "/noreply", h_noreply, 0},
	{"GET", "/drop", h_drop, 0},
	{"POST", "/auth", h_auth, 0},
	{"GET", "/slow", h_slow, 0},
};
#define N_ROUTES (sizeof routes / sizeof routes[0])
#define MAX_BODY (8u << 20)

/* ---- client ------------------------------------------------------------- */

typedef struct reply {
	long status;
	char *body;
	size_t len;
	char allow[128];
	char body_len[32];
	CURLcode rc;
} reply;

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
	reply *r = ud;
	size_t add = sz * n;
	char *b = realloc(r->body, r->len + add + 1);
	if (!b)
		return 0;
	memcpy(b + r->len, p, add);
	r->body = b;
	r->len += add;
	b[r->len] = '\0';
	return add;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
	reply *r = ud;
	size_t len = sz * n;
	char line[256];
	size_t c = len < sizeof line - 1 ? len : sizeof line - 1;
	memcpy(line, p, c);
	line[c] = '\0';
	line[strcspn(line, "\r\n")] = '\0';
	if (strncasecmp(line, "Allow: ", 7) == 0)
		snprintf(r->allow, sizeof r->allow, "%.100s", line + 7);
	if (strncasecmp(line, "X-Body-Len: ", 12) == 0)
		snprintf(r->body_len, sizeof r->body_len, "%.20s", line + 12);
	return len;
}

typedef struct chunk_src {
	size_t left;
} chunk_src;

static size_t on_read(char *buf, size_t sz, size_t n, void *ud)
{
	chunk_src *c = ud;
	size_t want = sz * n;
	if (want > c->left)
		want = c->left;
	memset(buf, 'z', want);
	c->left -= want;
	return want;
}

/*
 * One request. body NULL: no body. chunked_len > 0: a chunked body of that
 * many bytes (no Content-Length). headers: NULL-terminated list.
 */
static reply request(int port, const char *method, const char *path,
		     const void *body, size_t len, size_t chunked_len,
		     const char *const *headers)
{
	reply r = {0};
	CURL *c = curl_easy_init();
	char url[512];
	snprintf(url, sizeof url, "http://127.0.0.1:%d%s", port, path);
	struct curl_slist *hl = NULL;
	for (size_t i = 0; headers && headers[i]; i++)
		hl = curl_slist_append(hl, headers[i]);
	chunk_src src = {chunked_len};
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	} else if (chunked_len) {
		curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(c, CURLOPT_READDATA, &src);
		hl = curl_slist_append(hl, "Transfer-Encoding: chunked");
	}
	if (hl)
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	if (strcmp(method, "HEAD") == 0)
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	r.rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
	return r;
}

static json_t *reply_json(const reply *r)
{
	json_error_t e;
	json_t *j = r->body ? json_loads(r->body, 0, &e) : NULL;
	assert_non_null(j);
	return j;
}

/* The error code of a JSON error reply. */
static void assert_error(const reply *r, long status, const char *code)
{
	assert_int_equal(r->rc, CURLE_OK);
	assert_int_equal(r->status, status);
	json_t *j = reply_json(r);
	const char *got = NULL, *msg = NULL;
	assert_int_equal(json_unpack(j, "{s:{s:s, s:s}}", "error", "code", &got,
				     "message", &msg),
			 0);
	assert_string_equal(got, code);
	assert_true(strlen(msg) > 0);
	json_decref(j);
}

static http_server *start(int threads)
{
	http_server_config cfg = {.bind = "127.0.0.1",
				  .port = 0,
				  .max_body = MAX_BODY,
				  .threads = threads,
				  .name = "test"};
	http_server *s = NULL;
	assert_int_equal(http_server_create(&cfg, routes, N_ROUTES, NULL, &s), DF_OK);
	assert_true(http_server_port(s) > 0);
	return s;
}

/* ---- tests -------------------------------------------------------------- */

static void test_routes_params_query(void **state)
{
	(void)state;
	http_server *s = start(0);
	int port = http_server_port(s);

	const char *hdrs[] = {"X-Test: yes", NULL};
	reply r = request(port, "GET", "/hello?who=a%20b&flag", NULL, 0, 0, hdrs);
	assert_int_equal(r.status, 200);
	json_t *j = reply_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "path")), "/hello");
	assert_string_equal(json_string_value(json_object_get(j, "who")), "a b");
	assert_true(json_is_true(json_object_get(j, "flag")));
	assert_string_equal(json_string_value(json_object_get(j, "hdr")), "yes");
	json_decref(j);
	free(r.body);

	r = request(port, "GET", "/hello", NULL, 0, 0, NULL);
	j = reply_json(&r);
	assert_null(json_object_get(j, "who"));
	assert_true(json_is_false(json_object_get(j, "flag")));
	json_decref(j);
	free(r.body);

	r = request(port, "DELETE", "/items/42/parts/x7", NULL, 0, 0, NULL);
	assert_int_equal(r.status, 200);
	j = reply_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "id")), "42");
	assert_string_equal(json_string_value(json_object_get(j, "sub")), "x7");
	assert_int_equal(json_integer_value(json_object_get(j, "n")), 2);
	json_decref(j);
	free(r.body);

	r = request(port, "GET", "/files/a/b/c.txt", NULL, 0, 0, NULL);
	j = reply_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "rest")), "a/b/c.txt");
	json_decref(j);
	free(r.body);
	r = request(port, "GET", "/files", NULL, 0, 0, NULL);
	assert_int_equal(r.status, 200);
	j = reply_json(&r);
	assert_string_equal(json_string_value(json_object_get(j, "rest")), "");
	json_decref(j);
	free(r.body);

	/* Empty parameter segments and extra segments do not match. */
	r = request(port, "GET", "/items//parts/x", NULL, 0, 0, NULL);
	assert_error(&r, 404, "not_found");
	free(r.body);
	r = request(port, "GET", "/items/1/parts/2/3", NULL, 0, 0, NULL);
	assert_error(&r, 404, "not_found");
	free(r.body);
	r = request(port, "GET", "/hello/", NULL, 0, 0, NULL);
	assert_error(&r, 404, "not_found");
	free(r.body);
	http_server_destroy(s);
}

static void test_404_405(void **state)
{
	(void)state;
	http_server *s = start(0);
	int port = http_server_port(s);
	reply r = request(port, "GET", "/nope", NULL, 0, 0, NULL);
	assert_error(&r, 404, "not_found");
	free(r.body);

	r = request(port, "POST", "/items/1/parts/2", "x", 1, 0, NULL);
	assert_error(&r, 405, "method_not_allowed");
	assert_string_equal(r.allow, "GET, DELETE");
	free(r.body);

	r = request(port, "GET", "/echo", NULL, 0, 0, NULL);
	assert_error(&r, 405, "method_not_allowed");
	assert_string_equal(r.allow, "POST, PUT");
	free(r.body);
	/* The server still serves afterwards. */
	r = request(port, "GET", "/hello", NULL, 0, 0, NULL);
	assert_int_equal(r.status, 200);
	free(r.body);
	http_server_destroy(s);
}

static void test_bodies(void **state)
{
	(void)state;
	http_server *s = start(0);
	int port = http_server_port(s);
	/* Empty body. */
	reply r = request(port, "POST", "/echo", "", 0, 0, NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.len, 0);
	assert_string_equal(r.body_len, "0");
	free(r.body);

	/* A large body just under the cap arrives whole and intact. */
	size_t n = MAX_BODY;
	unsigned char *big = malloc(n);
	assert_non_null(big);
	for (size_t i = 0; i < n; i++)
		big[i] = (unsigned char)(i * 31 + (i >> 13));
	r = request(port, "PUT", "/echo", big, n, 0, NULL);
	assert_int_equal(r.rc, CURLE_OK);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.len, n);
	assert_memory_equal(r.body, big, n);
	free(r.body);

	/* One byte over: 413 from Content-Length, before the body is read. */
	unsigned char *over = malloc(n + 1);
	assert_non_null(over);
	memset(over, 'y', n + 1);
	int before = atomic_load(&handled);
	r = request(port, "POST", "/echo", over, n + 1, 0, NULL);
	assert_error(&r, 413, "too_large");
	assert_int_equal(atomic_load(&handled), before);
	free(r.body);

	/* A chunked body of 3 MiB is fine; one a little over the cap is 413
	 * once it ends, without reaching the handler; one far over the cap
	 * gets the connection closed (MHD cannot reply mid-body). */
	r = request(port, "POST", "/echo", NULL, 0, 3u << 20, NULL);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.len, 3u << 20);
	free(r.body);
	r = request(port, "POST", "/echo", NULL, 0, (size_t)MAX_BODY + 100000, NULL);
	assert_error(&r, 413, "too_large");
	free(r.body);
	r = request(port, "POST", "/echo", NULL, 0, (size_t)MAX_BODY * 4, NULL);
	assert_int_not_equal(r.rc, CURLE_OK);
	assert_int_not_equal(r.status, 200);
	free(r.body);
	r = request(port, "POST", "/small", NULL, 0, 100, NULL);
	assert_error(&r, 413, "too_large");
	free(r.body);
	assert_int_equal(atomic_load(&handled), before + 1);

	/* Per-route cap. */
	r = request(port, "POST", "/small", "0123456789abcdef", 16, 0, NULL);
	assert_int_equal(r.status, 200);
	free(r.body);
	r = request(port, "POST", "/small", "0123456789abcdefg", 17, 0, NULL);
	assert_error(&r, 413, "too_large");
	free(r.body);

	/* Still serving. */
	r = request(port, "POST", "/echo", "abc", 3, 0, NULL);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "abc");
	free(r.body);
	free(big);
	free(over);
	http_server_destroy(s);
}

static void test_handler_errors(void **state)
{
	(void)state;
	http_server *s = start(0);
	int port = http_server_port(s);
	reply r = request(port, "GET", "/fail", NULL, 0, 0, NULL);
	assert_error(&r, 409, "conflict");
	assert_non_null(strstr(r.body, "version 7 is busy"));
	free(r.body);

	r = request(port, "GET", "/noreply", NULL, 0, 0, NULL);
	assert_error(&r, 500, "internal");
	free(r.body);

	r = request(port, "GET", "/drop", NULL, 0, 0, NULL);
	assert_int_equal(r.rc, CURLE_GOT_NOTHING);
	free(r.body);

	const char *none[] = {"Content-Type: application/json", NULL};
	r = request(port, "POST", "/auth", "{}", 2, 0, none);
	assert_error(&r, 401, "unauthorized");
	free(r.body);
	const char *wrong[] = {"Authorization: Bearer s3cres", "Content-Type: application/json", NULL};
	r = request(port, "POST", "/auth", "{}", 2, 0, wrong);
	assert_error(&r, 401, "unauthorized");
	free(r.body);
	const char *longer[] = {"Authorization: Bearer s3cret2", "Content-Type: application/json", NULL};
	r = request(port, "POST", "/auth", "{}", 2, 0, longer);
	assert_error(&r, 401, "unauthorized");
	free(r.body);
	const char *good_ct[] = {"Authorization: Bearer s3cret",
				 "Content-Type:  Application/JSON ; charset=utf-8", NULL};
	r = request(port, "POST", "/auth", "{}", 2, 0, good_ct);
	assert_int_equal(r.status, 204);
	free(r.body);
	const char *bad_ct[] = {"Authorization: Bearer s3cret",
				"Content-Type: application/jsonx", NULL};
	r = request(port, "POST", "/auth", "{}", 2, 0, bad_ct);
	assert_error(&r, 415, "not_supported");
	free(r.body);
	http_server_destroy(s);
}

/* Sends raw bytes and returns the status of the first response line, or
 * 0 when the server closed without one. */
static int raw_status(int port, const char *text)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	size_t len = strlen(text);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	shutdown(fd, SHUT_WR);
	char buf[512] = {0};
	size_t got = 0;
	ssize_t n;
	while (got < sizeof buf - 1 && (n = read(fd, buf + got, sizeof buf - 1 - got)) > 0)
		got += (size_t)n;
	close(fd);
	int status = 0;
	if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
		return 0;
	return status;
}

static void test_malformed(void **state)
{
	(void)state;
	http_server *s = start(0);
	int port = http_server_port(s);
	int before = atomic_load(&handled);
	assert_int_equal(raw_status(port, "POST /echo HTTP/1.1\r\nHost: x\r\n"
					  "Content-Length: abc\r\n\r\n"),
			 400);
	assert_int_equal(raw_status(port, "POST /echo HTTP/1.1\r\nHost: x\r\n"
					  "Content-Length: -5\r\n\r\n"),
			 400);
	/* A request line that is not HTTP: libmicrohttpd answers 400 or
	 * just closes; either way nothing is handled. */
	int st = raw_status(port, "GARBAGE\r\n\r\n");
	assert_true(st == 400 || st == 0);
	assert_int_equal(raw_status(port, "GET /hello HTTP/1.1\r\n\r\n"), 400); /* no Host */
	/* A huge Content-Length is 413 before any body byte. */
	assert_int_equal(raw_status(port, "POST /echo HTTP/1.1\r\nHost: x\r\n"
					  "Content-Length: 99999999999999999999999\r\n\r\n"),
			 413);
	/* Body shorter than Content-Length, then EOF: never handled. */
	raw_status(port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
	assert_int_equal(atomic_load(&handled), before);
	assert_int_equal(raw_status(port, "GET /hello HTTP/1.1\r\nHost: x\r\n"
					  "Connection: close\r\n\r\n"),
			 200);
	http_server_destroy(s);
}

static void test_create_errors(void **state)
{
	(void)state;
	http_server *s = NULL;
	http_server_config cfg = {.bind = "localhost", .port = 0};
	assert_int_equal(http_server_create(&cfg, routes, N_ROUTES, NULL, &s), DF_EINVAL);
	assert_null(s);
	cfg.bind = "127.0.0.1";
	cfg.port = 70000;
	assert_int_equal(http_server_create(&cfg, routes, N_ROUTES, NULL, &s), DF_EINVAL);

	static const http_route bad_star[] = {{"GET", "/a/*/b", h_hello, 0}};
	cfg.port = 0;
	assert_int_equal(http_server_create(&cfg, bad_star, 1, NULL, &s), DF_EINVAL);
	static const http_route bad_param[] = {{"GET", "/a/{}", h_hello, 0}};
	assert_int_equal(http_server_create(&cfg, bad_param, 1, NULL, &s), DF_EINVAL);
	static const http_route no_slash[] = {{"GET", "a", h_hello, 0}};
	assert_int_equal(http_server_create(&cfg, no_slash, 1, NULL, &s), DF_EINVAL);

	/* A port in use. */
	http_server *a = start(0);
	cfg.port = http_server_port(a);
	assert_int_equal(http_server_create(&cfg, routes, N_ROUTES, NULL, &s), DF_EUNAVAIL);
	assert_null(s);
	http_server_destroy(a);
	http_server_destroy(NULL);

	/* IPv6 loopback, when the host has it. */
	cfg.bind = "::1";
	cfg.port = 0;
	if (http_server_create(&cfg, routes, N_ROUTES, NULL, &s) == DF_OK) {
		assert_true(http_server_port(s) > 0);
		http_server_destroy(s);
	}
}

typedef struct worker_arg {
	int port;
	int n;
	int ok;
	int failed;
	atomic_bool *stop;
} worker_arg;

static void *client_thread(void *p)
{
	worker_arg *a = p;
	char body[64];
	for (int i = 0; i < a->n && !(a->stop && atomic_load(a->stop)); i++) {
		int len = snprintf(body, sizeof body, "req-%d-%p", i, p);
		reply r = i % 3 == 2 ? request(a->port, "GET", "/slow", NULL, 0, 0, NULL)
				     : request(a->port, "POST", "/echo", body, (size_t)len,
					       0, NULL);
		bool good = r.rc == CURLE_OK && r.status == 200 &&
			    (i % 3 == 2 ? r.len == 4
					: r.len == (size_t)len &&
						  memcmp(r.body, body, (size_t)len) == 0);
		if (good)
			a->ok++;
		else
			a->failed++;
		free(r.body);
	}
	return NULL;
}

static void run_concurrent(int threads)
{
	http_server *s = start(threads);
	enum { N = 8 };
	pthread_t t[N];
	worker_arg a[N];
	for (int i = 0; i < N; i++) {
		a[i] = (worker_arg){.port = http_server_port(s), .n = 30};
		assert_int_equal(pthread_create(&t[i], NULL, client_thread, &a[i]), 0);
	}
	for (int i = 0; i < N; i++) {
		pthread_join(t[i], NULL);
		assert_int_equal(a[i].failed, 0);
		assert_int_equal(a[i].ok, 30);
	}
	http_server_destroy(s);
}

static void test_concurrent_per_connection(void **state)
{
	(void)state;
	run_concurrent(0);
}

static void test_concurrent_pool(void **state)
{
	(void)state;
	run_concurrent(4);
}

/* A handler sees a client that gave up (a hedged call abandoned by the
 * gateway) as gone, and one that waits (with a body sent) as present. */
static void test_client_gone(void **state)
{
	(void)state;
	for (int mode = 0; mode < 2; mode++) {
		http_server *s = start(mode ? 2 : 0);
		int port = http_server_port(s);
		const char body[] = "payload";
		reply r = request(port, "POST", "/check-gone", body, sizeof body - 1, 0,
				  NULL);
		assert_int_equal(r.status, 200);
		assert_string_equal(r.body, "here");
		free(r.body);

		atomic_store(&gone_seen, -1);
		CURL *c = curl_easy_init();
		char url[128];
		snprintf(url, sizeof url, "http://127.0.0.1:%d/wait-gone", port);
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 100L);
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		assert_int_equal(curl_easy_perform(c), CURLE_OPERATION_TIMEDOUT);
		curl_easy_cleanup(c); /* closes the connection */
		for (int i = 0; i < 400 && atomic_load(&gone_seen) < 0; i++) {
			struct timespec ts = {0, 10 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
		assert_int_equal(atomic_load(&gone_seen), 1);
		http_server_destroy(s);
	}
}

/* Destroying the server while clients hammer it neither hangs nor crashes;
 * requests answered before the stop are complete and correct. */
static void test_shutdown_under_load(void **state)
{
	(void)state;
	for (int mode = 0; mode < 2; mode++) {
		http_server *s = start(mode ? 2 : 0);
		enum { N = 6 };
		pthread_t t[N];
		worker_arg a[N];
		atomic_bool stop = false;
		for (int i = 0; i < N; i++) {
			a[i] = (worker_arg){.port = http_server_port(s), .n = 100000,
					    .stop = &stop};
			assert_int_equal(pthread_create(&t[i], NULL, client_thread, &a[i]), 0);
		}
		struct timespec ts = {0, 200 * 1000 * 1000};
		nanosleep(&ts, NULL);
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		http_server_destroy(s);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		atomic_store(&stop, true);
		int ok = 0;
		for (int i = 0; i < N; i++) {
			pthread_join(t[i], NULL);
			ok += a[i].ok;
		}
		assert_true(ok > 0);
		/* Handlers take 20 ms; shutdown waits for them, not longer. */
		double secs = (double)(t1.tv_sec - t0.tv_sec) +
			      (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		assert_true(secs < 5.0);
	}
}

int main(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_routes_params_query),
		cmocka_unit_test(test_404_405),
		cmocka_unit_test(test_bodies),
		cmocka_unit_test(test_handler_errors),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_create_errors),
		cmocka_unit_test(test_concurrent_per_connection),
		cmocka_unit_test(test_concurrent_pool),
		cmocka_unit_test(test_client_gone),
		cmocka_unit_test(test_shutdown_under_load),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return rc;
}
