/*
 * http_client_body.c - the body of a stage call (layout in http_client.h),
 * encoded into its call slot for http_client.c to send.
 *
 * Every call of a round carries the same stage input as frame 0, and a
 * frame's bytes do not depend on the message around it (wire.h: each
 * checksum covers its own envelope or frame). So the client encodes that
 * frame once per round (copy, f16 conversion, checksum) into `shared`, and
 * each call's body is a list of parts: its own envelope, the borrowed
 * shared frame, its own side-input frames. Large bodies go to libcurl
 * through a read callback over the parts (libcurl copies them into its
 * upload buffer, as it would POSTFIELDS); small ones are joined into the
 * slot's buffer and sent as POSTFIELDS, which libcurl sends in one write
 * with the headers. Invariant: every body is byte for byte what
 * wire_msg_encode() gives for the call; `shared` is not re-encoded while
 * calls of the round borrow it (http_client.c clears it as a round begins).
 */
#include "http_client.h"
#include "http_client_internal.h"

#include <stdio.h>
#include <string.h>

/* Bodies below this size are joined and sent as POSTFIELDS: libcurl then
 * sends them in the same write as the headers (it does so below 64 KB),
 * saving a syscall, a packet and a wake-up of the worker per call. */
#define HTTP_CLIENT_INLINE_BODY ((size_t)64 * 1024)

/* Frame i of call's request. */
static wire_frame call_frame(const http_client *c, const runner_call *call,
			     int i, int64_t total)
{
	if (i == 0)
		return (wire_frame){.t = (tensor *)call->inputs[0],
				    .dtype = c->opt.dtype,
				    .channel_axis = WIRE_WHOLE};
	return (wire_frame){.t = (tensor *)call->inputs[i],
			    .dtype = c->opt.dtype,
			    .channel_axis = 1,
			    .channels_total = (uint32_t)total,
			    .ids = (int32_t *)call->ids,
			    .n_ids = call->n};
}

static void add_part(call_slot *s, const unsigned char *data, size_t len)
{
	if (!len)
		return;
	s->parts[s->n_parts++] = (body_part){data, len};
	s->body_len += len;
}

/* Encodes call's request into slot s as body parts: the envelope and the
 * side-input frames in the slot's buffers, frame 0 borrowed from the
 * round's shared encoding (encoded here by the round's first call). When
 * the shared frame holds another tensor that earlier calls of the round
 * still borrow (calls of a round with different stage inputs, which the
 * runner does not make), the whole request goes into the slot's buffer. */
df_err http_client_body_encode(http_client *c, call_slot *s,
			       const runner_call *call)
{
	const http_stage_target *t = &c->target;
	const partition_map *m = t->map;
	s->n_parts = 0;
	s->body_len = 0;
	s->req.len = 0;
	s->tail.len = 0;
	if (call->stage < 0 || call->stage >= m->n_stages)
		return df_errf(DF_EINTERNAL, "call for stage %d of %d", call->stage,
			       m->n_stages);
	if (call->n_inputs < 1 || call->n_inputs > WIRE_MAX_FRAMES)
		return df_errf(DF_ENOTSUP, "stage %d has %d inputs", call->stage,
			       call->n_inputs);
	int64_t total = m->stages[call->stage].n_neurons;
	if (total <= 0 || total > INT32_MAX)
		return df_errf(DF_EINTERNAL, "stage %d has %lld neurons", call->stage,
			       (long long)total);
	wire_msg msg = {.kind = WIRE_MSG_REQUEST,
			.request_id = t->request_id,
			.partition_version = (uint64_t)m->version,
			.stage = (uint32_t)call->stage,
			.model = (char *)t->model,
			.neurons = (int32_t *)call->ids,
			.n_neurons = call->n,
			.n_frames = (size_t)call->n_inputs};
	if (!call->inputs || !call->inputs[0])
		return df_errf(DF_EINVAL, "stage %d call without its input",
			       call->stage);
	bool reuse = c->shared_t == call->inputs[0] &&
		     c->shared_dtype == c->opt.dtype;
	if (!reuse && c->shared_users > 0) {
		wire_frame frames[WIRE_MAX_FRAMES];
		for (int i = 0; i < call->n_inputs; i++)
			frames[i] = call_frame(c, call, i, total);
		msg.frames = frames;
		df_err err = wire_msg_encode(&s->req, &msg);
		if (!err)
			add_part(s, s->req.data, s->req.len);
		return err;
	}
	df_err err = wire_msg_encode_envelope(&s->req, &msg);
	if (err)
		return err;
	if (!reuse) {
		wire_frame f0 = call_frame(c, call, 0, total);
		c->shared.len = 0;
		c->shared_t = NULL;
		err = wire_frame_encode(&c->shared, &f0);
		if (err) {
			char why[400];
			snprintf(why, sizeof why, "%s", df_err_msg());
			return df_errf(err, "wire message: frame 0: %s", why);
		}
		c->shared_t = call->inputs[0];
		c->shared_dtype = c->opt.dtype;
	}
	for (int i = 1; i < call->n_inputs; i++) {
		wire_frame f = call_frame(c, call, i, total);
		err = wire_frame_encode(&s->tail, &f);
		if (err) {
			char why[400];
			snprintf(why, sizeof why, "%s", df_err_msg());
			return df_errf(err, "wire message: frame %d: %s", i, why);
		}
	}
	c->shared_users++;
	size_t len = s->req.len + c->shared.len + s->tail.len;
	if (len < HTTP_CLIENT_INLINE_BODY) {
		/* Small: one contiguous body (a cheap copy of frame 0). */
		err = wire_buf_reserve(&s->req, c->shared.len + s->tail.len);
		if (err)
			return err;
		memcpy(s->req.data + s->req.len, c->shared.data, c->shared.len);
		s->req.len += c->shared.len;
		if (s->tail.len)
			memcpy(s->req.data + s->req.len, s->tail.data, s->tail.len);
		s->req.len += s->tail.len;
		add_part(s, s->req.data, s->req.len);
		return DF_OK;
	}
	add_part(s, s->req.data, s->req.len);
	add_part(s, c->shared.data, c->shared.len);
	add_part(s, s->tail.data, s->tail.len);
	return DF_OK;
}

/* libcurl's read callback of a stage call: the next bytes of the body. */
size_t http_client_body_read(char *buf, size_t size, size_t nitems, void *ud)
{
	call_slot *s = ud;
	size_t room = size * nitems, n = 0;
	while (room > 0 && s->read_part < s->n_parts) {
		const body_part *p = &s->parts[s->read_part];
		size_t k = p->len - s->read_off;
		if (k > room)
			k = room;
		memcpy(buf + n, p->data + s->read_off, k);
		n += k;
		room -= k;
		s->read_off += k;
		if (s->read_off == p->len) {
			s->read_part++;
			s->read_off = 0;
		}
	}
	return n;
}

/* libcurl's seek callback: rewinds the body when a request has to be sent
 * again (e.g. on a kept-alive connection the worker had closed). */
int http_client_body_seek(void *ud, curl_off_t offset, int origin)
{
	call_slot *s = ud;
	if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > s->body_len)
		return CURL_SEEKFUNC_CANTSEEK;
	size_t off = (size_t)offset;
	s->read_part = 0;
	while (s->read_part < s->n_parts && off >= s->parts[s->read_part].len) {
		off -= s->parts[s->read_part].len;
		s->read_part++;
	}
	s->read_off = off;
	return CURL_SEEKFUNC_OK;
}
