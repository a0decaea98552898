/*
 * http_client_internal.h - what the files of the HTTP client share:
 * http_client.c (the client: handles, call slots, the curl multi loop of a
 * round, answers, control calls) and http_client_body.c (the body of a
 * stage call: encoding into parts around the round's shared frame 0, and
 * libcurl's read and seek callbacks over them). The client and call-slot
 * structs and the body functions the client calls.
 * Nothing outside common/http_client*.c includes this header; the public
 * API is http_client.h.
 */
#ifndef DF_HTTP_CLIENT_INTERNAL_H
#define DF_HTTP_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>

#include "err.h"
#include "http_client.h"
#include "runner.h"
#include "wire.h"

/* One contiguous piece of a request body (borrowed). */
typedef struct body_part {
	const unsigned char *data;
	size_t len;
} body_part;

#define HTTP_CLIENT_MAX_PARTS 3 /* envelope, shared frame 0, frames 1.. */

typedef struct call_slot {
	CURL *easy;
	wire_buf req;                /* envelope (or the whole request) */
	wire_buf tail;               /* frames 1.. when frame 0 is shared */
	body_part parts[HTTP_CLIENT_MAX_PARTS]; /* the body, in order */
	int n_parts;
	size_t body_len;             /* sum of the parts' lengths */
	int read_part;               /* read callback position: part, */
	size_t read_off;             /* and offset in it */
	unsigned char *resp;         /* response body */
	size_t resp_len, resp_cap;
	size_t resp_limit;
	bool overflow;               /* response crossed resp_limit */
	runner_call *call;           /* the call served; NULL when idle */
	double t0_ms;                /* sent at (http_client_now_msf) */
	long timeout_ms;             /* the call's deadline */
	bool clamped;                /* cut short by the request deadline */
	char errbuf[CURL_ERROR_SIZE];
} call_slot;

struct http_client {
	CURLM *multi;
	call_slot *slots;
	size_t n_slots;
	CURL *ctl;                   /* control calls */
	struct curl_slist *stage_headers;
	struct curl_slist *json_headers;
	http_client_options opt;
	char *token;                 /* owned copy of opt.cluster_token */
	http_stage_target target;
	http_stage_stats stats;
	/* Frame 0 encoded once per round (see http_client_body.c): the
	 * tensor and dtype it encodes (NULL: none this round) and how many
	 * calls of the round borrow it (it is not re-encoded while > 0). */
	wire_buf shared;
	const tensor *shared_t;
	wire_dtype shared_dtype;
	size_t shared_users;
};

/* ---- http_client_body.c -------------------------------------------------- */

/* Encodes call's request into slot s as body parts (s->parts, s->n_parts,
 * s->body_len); frame 0 is borrowed from c->shared, which the round's first
 * call encodes. */
df_err http_client_body_encode(http_client *c, call_slot *s,
			       const runner_call *call);

/* libcurl's CURLOPT_READFUNCTION over slot ud's body parts. */
size_t http_client_body_read(char *buf, size_t size, size_t nitems, void *ud);

/* libcurl's CURLOPT_SEEKFUNCTION: repositions slot ud's body read. */
int http_client_body_seek(void *ud, curl_off_t offset, int origin);

#endif
