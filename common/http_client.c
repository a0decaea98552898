/*
 * http_client.c - see http_client.h. The client: its curl handles, call
 * slots, the parallel round of stage calls over curl multi (deadlines,
 * answers, the observer, cancelling), and control calls. What a stage
 * call's body holds and how it is streamed is in http_client_body.c.
 *
 * Each client owns one curl multi handle (its connection cache keeps
 * keep-alive connections to the workers between rounds and requests) and a
 * growing array of call slots; slot i serves call i of a round and keeps
 * its easy handle and buffers between rounds, so the steady state
 * allocates nothing but the tensors. Invariant: between execute() calls no
 * easy handle is attached to the multi handle.
 */
#include "http_client.h"
#include "http_client_internal.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

/* Read and write chunk of stage calls: tensors are 10 KB..4 MB, so large
 * chunks mean few syscalls and callbacks (libcurl's defaults are 16/64 KB). */
#define HTTP_CLIENT_IO_BUFFER (512L * 1024)

int64_t http_client_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double http_client_now_msf(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

df_err http_client_global_init(void)
{
	CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
	if (rc != CURLE_OK)
		return df_errf(DF_EINTERNAL, "curl_global_init: %s",
			       curl_easy_strerror(rc));
	return DF_OK;
}

/* ---- buffers and headers ------------------------------------------------ */

static size_t sink_append(unsigned char **buf, size_t *len, size_t *cap,
			  size_t limit, bool *overflow, const char *data,
			  size_t n)
{
	if (n > limit || *len > limit - n) {
		*overflow = true;
		return 0; /* makes curl fail the transfer (CURLE_WRITE_ERROR) */
	}
	if (*len + n + 1 > *cap) {
		size_t want = *cap ? *cap : 4096;
		while (want < *len + n + 1)
			want = want > SIZE_MAX / 2 ? *len + n + 1 : want * 2;
		unsigned char *p = realloc(*buf, want);
		if (!p)
			return 0;
		*buf = p;
		*cap = want;
	}
	memcpy(*buf + *len, data, n);
	*len += n;
	(*buf)[*len] = '\0';
	return n;
}

static size_t slot_write(char *data, size_t size, size_t nmemb, void *ud)
{
	call_slot *s = ud;
	if (nmemb && size > SIZE_MAX / nmemb) {
		s->overflow = true;
		return 0;
	}
	return sink_append(&s->resp, &s->resp_len, &s->resp_cap, s->resp_limit,
			   &s->overflow, data, size * nmemb);
}

static struct curl_slist *make_headers(const char *content_type,
				       const char *token)
{
	struct curl_slist *h = NULL, *t;
	char line[64];
	snprintf(line, sizeof line, "Content-Type: %s", content_type);
	if (!(t = curl_slist_append(h, line)))
		goto fail;
	h = t;
	/* No "Expect: 100-continue" round trip before bodies. */
	if (!(t = curl_slist_append(h, "Expect:")))
		goto fail;
	h = t;
	if (token && *token) {
		size_t len = strlen(token) + 32;
		char *auth = malloc(len);
		if (!auth)
			goto fail;
		snprintf(auth, len, "Authorization: Bearer %s", token);
		t = curl_slist_append(h, auth);
		free(auth);
		if (!t)
			goto fail;
		h = t;
	}
	return h;
fail:
	curl_slist_free_all(h);
	return NULL;
}

/* ---- create / destroy --------------------------------------------------- */

void http_client_destroy(http_client *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n_slots; i++) {
		call_slot *s = &c->slots[i];
		if (s->easy)
			curl_easy_cleanup(s->easy);
		wire_buf_free(&s->req);
		wire_buf_free(&s->tail);
		free(s->resp);
	}
	free(c->slots);
	wire_buf_free(&c->shared);
	if (c->ctl)
		curl_easy_cleanup(c->ctl);
	if (c->multi)
		curl_multi_cleanup(c->multi);
	curl_slist_free_all(c->stage_headers);
	curl_slist_free_all(c->json_headers);
	free(c->token);
	free(c);
}

df_err http_client_create(const http_client_options *opt, http_client **out)
{
	http_client *c = calloc(1, sizeof *c);
	if (!c)
		return DF_ENOMEM;
	c->opt = *opt;
	if (c->opt.connect_timeout_ms <= 0)
		c->opt.connect_timeout_ms = HTTP_CLIENT_DEFAULT_CONNECT_TIMEOUT_MS;
	if (c->opt.stage_timeout_ms <= 0)
		c->opt.stage_timeout_ms = HTTP_CLIENT_DEFAULT_STAGE_TIMEOUT_MS;
	df_err err = DF_OK;
	if (opt->cluster_token && *opt->cluster_token) {
		c->token = strdup(opt->cluster_token);
		if (!c->token) {
			err = DF_ENOMEM;
			goto out;
		}
	}
	c->opt.cluster_token = c->token;
	c->multi = curl_multi_init();
	c->ctl = curl_easy_init();
	c->stage_headers = make_headers(HTTP_CLIENT_FRAME_TYPE, c->token);
	c->json_headers = make_headers("application/json", c->token);
	if (!c->multi || !c->ctl || !c->stage_headers || !c->json_headers) {
		err = df_errf(DF_ENOMEM, "cannot set up libcurl handles");
		goto out;
	}
	/* A handful of workers: a few connections each is plenty. */
	if (curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, 64L) != CURLM_OK) {
		err = df_errf(DF_EINTERNAL, "curl_multi_setopt failed");
		goto out;
	}
out:
	if (err) {
		http_client_destroy(c);
		return err;
	}
	*out = c;
	return DF_OK;
}

void http_client_begin(http_client *c, const http_stage_target *t)
{
	c->target = *t;
	memset(&c->stats, 0, sizeof c->stats);
}

http_stage_stats http_client_stats(const http_client *c)
{
	return c->stats;
}

/* ---- stage calls -------------------------------------------------------- */

static df_err ensure_slots(http_client *c, size_t n)
{
	if (n <= c->n_slots)
		return DF_OK;
	if (n > SIZE_MAX / sizeof *c->slots)
		return DF_ENOMEM;
	call_slot *s = realloc(c->slots, n * sizeof *s);
	if (!s)
		return DF_ENOMEM;
	memset(s + c->n_slots, 0, (n - c->n_slots) * sizeof *s);
	c->slots = s;
	for (size_t i = c->n_slots; i < n; i++) {
		s[i].easy = curl_easy_init();
		if (!s[i].easy) {
			c->n_slots = i;
			return DF_ENOMEM;
		}
	}
	c->n_slots = n;
	return DF_OK;
}

/* The largest answer a call can legitimately have: one frame of the stage
 * output with n channels (the envelope may echo the neurons). */
static size_t response_limit(const http_client *c, const runner_call *call)
{
	const http_stage_target *t = &c->target;
	if (!t->g || !t->plan || call->stage < 0 ||
	    call->stage >= t->plan->n_stages)
		return HTTP_CLIENT_DEFAULT_MAX_STAGE_RESPONSE;
	const stage *st = &t->plan->stages[call->stage];
	const graph_value *v = &t->g->values[st->outputs[0]];
	size_t per = 1;
	for (int i = 0; i < v->ndim; i++)
		if (i != 1) {
			if (v->dims[i] <= 0)
				return 4096;
			if (per > TENSOR_MAX_BYTES / (size_t)v->dims[i])
				return HTTP_CLIENT_DEFAULT_MAX_STAGE_RESPONSE;
			per *= (size_t)v->dims[i];
		}
	size_t n = call->n;
	if (n && per > TENSOR_MAX_BYTES / 4 / n)
		return HTTP_CLIENT_DEFAULT_MAX_STAGE_RESPONSE;
	size_t payload = per * n * 4;
	size_t header = WIRE_MSG_HEADER + WIRE_MAX_MODEL_NAME + 4 +
			WIRE_FRAME_HEADER + 8 * TENSOR_MAX_DIMS + 12;
	return payload + header + 8 * n + 1024;
}

/* The call's own deadline (call_timeout hook, else the fixed one), cut to
 * what is left of the request's deadline (*clamped then). */
static long call_timeout(http_client *c, const runner_call *call, int64_t now,
			 bool *clamped)
{
	long t = c->opt.call_timeout
		? c->opt.call_timeout(c->opt.call_timeout_ctx, call->device,
				      call->stage)
		: c->opt.stage_timeout_ms;
	if (t <= 0)
		t = c->opt.stage_timeout_ms;
	*clamped = false;
	if (c->target.deadline_ms > 0) {
		int64_t left = c->target.deadline_ms - now;
		if (left < t) {
			t = (long)(left > 0 ? left : 0);
			*clamped = true;
		}
	}
	return t;
}

/* Sets up slot s for call; returns the call's failure status, or DF_OK
 * when the transfer is ready to be added. */
static df_err prepare_call(http_client *c, call_slot *s, runner_call *call)
{
	/* Now, not when the round began: encoding the earlier calls of a
	 * round takes time that is no longer left of the request deadline. */
	const int64_t now = http_client_now_ms();
	const http_stage_target *t = &c->target;
	s->call = call;
	s->t0_ms = http_client_now_msf();
	s->resp_len = 0;
	s->overflow = false;
	s->errbuf[0] = '\0';
	if (call->device < 0 || call->device >= t->map->n_devices || !t->urls ||
	    !t->urls[call->device])
		return df_errf(DF_EUNAVAIL, "device %d has no URL", call->device);
	long timeout = call_timeout(c, call, now, &s->clamped);
	s->timeout_ms = timeout;
	if (timeout <= 0)
		return df_errf(DF_ETIMEDOUT, "request deadline passed before stage %d",
			       call->stage);
	df_err err = http_client_body_encode(c, s, call);
	if (err)
		return err;
	char url[1200];
	int len = snprintf(url, sizeof url, "%s/v1/stage", t->urls[call->device]);
	if (len < 0 || (size_t)len >= sizeof url)
		return df_errf(DF_EINVAL, "device %d: URL too long", call->device);
	s->resp_limit = response_limit(c, call);
	long connect = c->opt.connect_timeout_ms < timeout
		? c->opt.connect_timeout_ms : timeout;
	CURL *e = s->easy;
	curl_easy_reset(e);
	if (curl_easy_setopt(e, CURLOPT_URL, url) ||
	    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) ||
	    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") ||
	    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->stage_headers) ||
	    curl_easy_setopt(e, CURLOPT_POST, 1L) ||
	    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
			     (curl_off_t)s->body_len) ||
	    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, slot_write) ||
	    curl_easy_setopt(e, CURLOPT_WRITEDATA, s) ||
	    curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
			     (curl_off_t)s->resp_limit) ||
	    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout) ||
	    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect) ||
	    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L) ||
	    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, HTTP_CLIENT_IO_BUFFER) ||
	    curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, HTTP_CLIENT_IO_BUFFER) ||
	    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, s->errbuf) ||
	    curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)s))
		return df_errf(DF_EINTERNAL, "curl_easy_setopt failed");
	CURLcode rc;
	if (s->n_parts == 1) {
		rc = curl_easy_setopt(e, CURLOPT_POSTFIELDS, (char *)s->parts[0].data);
	} else {
		s->read_part = 0;
		s->read_off = 0;
		rc = curl_easy_setopt(e, CURLOPT_READFUNCTION,
				      http_client_body_read);
		if (!rc)
			rc = curl_easy_setopt(e, CURLOPT_READDATA, (void *)s);
		if (!rc)
			rc = curl_easy_setopt(e, CURLOPT_SEEKFUNCTION,
					      http_client_body_seek);
		if (!rc)
			rc = curl_easy_setopt(e, CURLOPT_SEEKDATA, (void *)s);
	}
	if (rc)
		return df_errf(DF_EINTERNAL, "curl_easy_setopt failed");
	return DF_OK;
}

static df_err status_from_http(long code)
{
	if (code == 200)
		return DF_OK;
	if (code == 409 || code == 404)
		return DF_ECONFLICT; /* version (or stage) not held there */
	if (code == 401 || code == 403)
		return DF_EAUTH;
	if (code == 413)
		return DF_ETOOBIG;
	if (code >= 400 && code < 500)
		return DF_EINVAL;
	return DF_EUNAVAIL;
}

/* Parses and checks slot s's answer; on success moves the output tensor
 * into the call. */
static df_err check_answer(http_client *c, call_slot *s)
{
	const http_stage_target *t = &c->target;
	runner_call *call = s->call;
	wire_msg msg = {0};
	df_err err = wire_msg_parse(s->resp, s->resp_len, &msg);
	if (err) {
		char why[256];
		snprintf(why, sizeof why, "%s", df_err_msg());
		return df_errf(DF_ECORRUPT, "device %d stage %d: bad answer: %s",
			       call->device, call->stage, why);
	}
	const int64_t total = t->map->stages[call->stage].n_neurons;
	if (msg.kind != WIRE_MSG_RESPONSE || msg.request_id != t->request_id ||
	    msg.partition_version != (uint64_t)t->map->version ||
	    msg.stage != (uint32_t)call->stage || strcmp(msg.model, t->model) != 0) {
		err = df_errf(DF_ECORRUPT, "device %d stage %d: answer envelope does not match the request",
			      call->device, call->stage);
		goto out;
	}
	if (msg.n_frames != 1) {
		err = df_errf(DF_ECORRUPT, "device %d stage %d: answer has %zu frames, expected 1",
			      call->device, call->stage, msg.n_frames);
		goto out;
	}
	wire_frame *f = &msg.frames[0];
	if (f->channel_axis != 1 || f->n_ids != call->n ||
	    (int64_t)f->channels_total != total ||
	    (call->n && memcmp(f->ids, call->ids, call->n * sizeof *f->ids))) {
		err = df_errf(DF_ECORRUPT, "device %d stage %d: answer channels are not the %zu asked for",
			      call->device, call->stage, call->n);
		goto out;
	}
	if (t->g && t->plan) {
		const stage *st = &t->plan->stages[call->stage];
		const graph_value *v = &t->g->values[st->outputs[0]];
		bool same = f->t->ndim == v->ndim;
		for (int i = 0; same && i < v->ndim; i++)
			same = f->t->dims[i] ==
			       (i == 1 ? (int64_t)call->n : v->dims[i]);
		if (!same) {
			char got[96], want[96];
			tensor_shape_str(f->t->ndim, f->t->dims, got, sizeof got);
			tensor_shape_str(v->ndim, v->dims, want, sizeof want);
			err = df_errf(DF_ECORRUPT, "device %d stage %d: answer shape %s does not fit %s with %zu channels",
				      call->device, call->stage, got, want, call->n);
			goto out;
		}
	}
	call->output = f->t;
	f->t = NULL;
out:
	wire_msg_free(&msg);
	return err;
}

static void finish_call(http_client *c, call_slot *s, CURLcode rc)
{
	runner_call *call = s->call;
	df_err st = DF_OK;
	long code = 0;
	curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &code);
	long req_hdr = 0, resp_hdr = 0;
	curl_easy_getinfo(s->easy, CURLINFO_REQUEST_SIZE, &req_hdr);
	curl_easy_getinfo(s->easy, CURLINFO_HEADER_SIZE, &resp_hdr);
	/* libcurl counts a POSTFIELDS body it sent with the headers (below
	 * 64 KB) in the request size: then that already holds the body. (A
	 * libcurl that does not, with a body smaller than the headers, would
	 * be undercounted by that body: a few hundred bytes at most.) */
	uint64_t sent = (uint64_t)(req_hdr > 0 ? req_hdr : 0);
	if (!(s->n_parts == 1 && sent > s->body_len))
		sent += s->body_len;
	c->stats.bytes_sent += sent;
	c->stats.bytes_received += (uint64_t)(resp_hdr > 0 ? resp_hdr : 0) +
				   s->resp_len;
	/* Cut short by the request deadline only if the whole (shortened)
	 * deadline ran out: a connect timeout, which is shorter, says
	 * something about the device. */
	const double took = http_client_now_msf() - s->t0_ms;
	const bool cut = s->clamped && took >= 0.9 * (double)s->timeout_ms;
	if (rc == CURLE_OPERATION_TIMEDOUT)
		st = df_errf(DF_ETIMEDOUT, "device %d stage %d: no answer within %.0f ms%s",
			     call->device, call->stage, took,
			     cut ? " (the rest of the request deadline)" : "");
	else if (s->overflow || rc == CURLE_FILESIZE_EXCEEDED)
		st = df_errf(DF_ETOOBIG, "device %d stage %d: answer above %zu bytes",
			     call->device, call->stage, s->resp_limit);
	else if (rc != CURLE_OK)
		st = df_errf(DF_EUNAVAIL, "device %d stage %d: %s", call->device,
			     call->stage, s->errbuf[0] ? s->errbuf
						       : curl_easy_strerror(rc));
	else if ((st = status_from_http(code)) != DF_OK)
		df_errf(st, "device %d stage %d: HTTP %ld: %.200s", call->device,
			call->stage, code, s->resp ? (const char *)s->resp : "");
	else
		st = check_answer(c, s);
	call->status = st;
	if (st) {
		c->stats.calls_failed++;
		log_debug("stage call failed: %s", df_err_msg());
	}
	/* A call late only because the request ran out of time says nothing
	 * about its device: the observer does not hear of it (as in
	 * fail_call()). */
	if (c->opt.observer && !(st == DF_ETIMEDOUT && cut))
		c->opt.observer(c->opt.observer_ctx, call->device, call->stage, st,
				took);
	s->call = NULL;
}

/* A call that was never sent (or abandoned). The observer hears of it
 * unless the request's own deadline is to blame, not the device. */
static void fail_call(http_client *c, runner_call *call, df_err st)
{
	call->status = st;
	c->stats.calls_failed++;
	log_debug("stage call not sent: %s", df_err_msg());
	if (c->opt.observer && st != DF_ETIMEDOUT)
		c->opt.observer(c->opt.observer_ctx, call->device, call->stage, st,
				0.0);
}

/* Abandons every call still in flight: not needed any more (cancelled),
 * which is not a failure of its device. */
static void cancel_rest(http_client *c, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		call_slot *s = &c->slots[i];
		if (!s->call)
			continue;
		curl_multi_remove_handle(c->multi, s->easy);
		s->call->cancelled = true;
		s->call->status = DF_EUNAVAIL;
		s->call = NULL;
	}
}

/* Executes the calls in parallel; with done set, reports each finished
 * call and stops early (cancelling the rest) once done() says the stage
 * needs nothing more: ACTIVE replica mode answers on the first replies. */
static void http_execute_until(void *ctx, runner_call *calls, size_t n,
			       runner_call_done done, void *done_ctx)
{
	http_client *c = ctx;
	for (size_t i = 0; i < n; i++) {
		calls[i].output = NULL;
		calls[i].status = DF_EUNAVAIL;
	}
	c->stats.calls += n;
	if (!c->target.map) {
		for (size_t i = 0; i < n; i++)
			fail_call(c, &calls[i],
				  df_errf(DF_EINTERNAL, "no stage target set"));
		return;
	}
	if (ensure_slots(c, n)) {
		for (size_t i = 0; i < n; i++)
			fail_call(c, &calls[i], DF_ENOMEM);
		return;
	}
	size_t added = 0;
	c->shared_t = NULL; /* the round's tensors are new: encode afresh */
	c->shared_users = 0;
	for (size_t i = 0; i < n; i++) {
		call_slot *s = &c->slots[i];
		df_err err = prepare_call(c, s, &calls[i]);
		if (!err && curl_multi_add_handle(c->multi, s->easy) != CURLM_OK)
			err = df_errf(DF_EINTERNAL, "curl_multi_add_handle failed");
		if (err) {
			s->call = NULL;
			fail_call(c, &calls[i], err);
			continue;
		}
		added++;
	}
	int running = 0;
	size_t finished = 0;
	while (finished < added) {
		CURLMcode mc = curl_multi_perform(c->multi, &running);
		CURLMsg *m;
		int left;
		bool progress = false;
		while ((m = curl_multi_info_read(c->multi, &left))) {
			if (m->msg != CURLMSG_DONE)
				continue;
			char *priv = NULL;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv);
			call_slot *s = (call_slot *)(void *)priv;
			CURLcode rc = m->data.result;
			CURL *e = m->easy_handle;
			bool enough = false;
			if (s && s->call) {
				runner_call *call = s->call;
				finish_call(c, s, rc);
				finished++;
				progress = true;
				enough = done && done(done_ctx, call);
			}
			curl_multi_remove_handle(c->multi, e);
			if (enough) {
				cancel_rest(c, n);
				return;
			}
		}
		if (finished >= added)
			break;
		if (mc != CURLM_OK) {
			log_error("curl_multi_perform: %s", curl_multi_strerror(mc));
			break;
		}
		if (running == 0 && !progress) {
			log_error("libcurl reports no transfer running, %zu of %zu unfinished",
				  added - finished, added);
			break;
		}
		if (running > 0 &&
		    curl_multi_poll(c->multi, NULL, 0, 100, NULL) != CURLM_OK) {
			log_error("curl_multi_poll failed");
			break;
		}
	}
	/* Only on a libcurl failure: fail what did not finish and detach. */
	for (size_t i = 0; i < n; i++) {
		call_slot *s = &c->slots[i];
		if (s->call) {
			curl_multi_remove_handle(c->multi, s->easy);
			fail_call(c, s->call,
				  df_errf(DF_EUNAVAIL, "transfer abandoned"));
			s->call = NULL;
		}
	}
}

static void http_execute(void *ctx, runner_call *calls, size_t n)
{
	http_execute_until(ctx, calls, n, NULL, NULL);
}

runner_backend http_client_backend(http_client *c)
{
	return (runner_backend){.ctx = c, .execute = http_execute,
				.execute_until = http_execute_until};
}

/* ---- control calls ------------------------------------------------------ */

typedef struct json_sink {
	unsigned char *buf;
	size_t len, cap;
	bool overflow;
} json_sink;

static size_t json_write(char *data, size_t size, size_t nmemb, void *ud)
{
	json_sink *s = ud;
	if (nmemb && size > SIZE_MAX / nmemb) {
		s->overflow = true;
		return 0;
	}
	return sink_append(&s->buf, &s->len, &s->cap,
			   HTTP_CLIENT_MAX_JSON_RESPONSE, &s->overflow, data,
			   size * nmemb);
}

/* Progress callback of control calls: non-zero aborts the transfer. */
static int json_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut,
			 curl_off_t un)
{
	(void)dt;
	(void)dn;
	(void)ut;
	(void)un;
	const atomic_bool *abort_flag = ud;
	return atomic_load(abort_flag) ? 1 : 0;
}

df_err http_client_json(http_client *c, const char *method, const char *url,
			const json_t *body, long timeout_ms, long *status,
			json_t **resp)
{
	char *text = NULL;
	json_sink sink = {0};
	char errbuf[CURL_ERROR_SIZE] = "";
	df_err err = DF_OK;
	*status = 0;
	if (resp)
		*resp = NULL;
	if (body) {
		text = json_dumps(body, JSON_COMPACT);
		if (!text)
			return DF_ENOMEM;
	}
	if (timeout_ms <= 0)
		timeout_ms = c->opt.stage_timeout_ms;
	long connect = c->opt.connect_timeout_ms < timeout_ms
		? c->opt.connect_timeout_ms : timeout_ms;
	CURL *e = c->ctl;
	curl_easy_reset(e);
	CURLcode rc = CURLE_OK;
	if (curl_easy_setopt(e, CURLOPT_URL, url) ||
	    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) ||
	    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") ||
	    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->json_headers) ||
	    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, json_write) ||
	    curl_easy_setopt(e, CURLOPT_WRITEDATA, &sink) ||
	    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms) ||
	    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, connect) ||
	    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf)) {
		err = df_errf(DF_EINTERNAL, "curl_easy_setopt failed");
		goto out;
	}
	if (c->opt.abort &&
	    (curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L) ||
	     curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, json_progress) ||
	     curl_easy_setopt(e, CURLOPT_XFERINFODATA, (void *)c->opt.abort))) {
		err = df_errf(DF_EINTERNAL, "curl_easy_setopt failed");
		goto out;
	}
	if (strcmp(method, "GET") == 0) {
		rc = curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
	} else {
		rc = curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
		if (!rc && text)
			rc = curl_easy_setopt(e, CURLOPT_POSTFIELDS, text);
		else if (!rc && strcmp(method, "POST") == 0)
			rc = curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
	}
	if (rc) {
		err = df_errf(DF_EINTERNAL, "curl_easy_setopt failed");
		goto out;
	}
	rc = curl_easy_perform(e);
	if (rc == CURLE_OPERATION_TIMEDOUT) {
		err = df_errf(DF_ETIMEDOUT, "%s %s: no answer within %ld ms", method,
			      url, timeout_ms);
		goto out;
	}
	if (rc == CURLE_ABORTED_BY_CALLBACK) {
		err = df_errf(DF_EUNAVAIL, "%s %s: abandoned (shutting down)", method,
			      url);
		goto out;
	}
	if (rc != CURLE_OK) {
		err = df_errf(sink.overflow ? DF_ETOOBIG : DF_EUNAVAIL, "%s %s: %s",
			      method, url, errbuf[0] ? errbuf : curl_easy_strerror(rc));
		goto out;
	}
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, status);
	if (resp && sink.len)
		*resp = json_loadb((const char *)sink.buf, sink.len, 0, NULL);
out:
	free(text);
	free(sink.buf);
	return err;
}
