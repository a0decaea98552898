/*
 * admin.c - the gateway's admin API (DESIGN §7):
 *   GET /admin/devices      registered devices with their health
 *   GET /admin/partition    the active partition: settings, per-device
 *                           loads, replication coverage per stage
 *   GET /admin/events       the event log, paged (limit, after/before
 *                           cursor, device, since)
 *   PUT /admin/replication  {"ratio": r, "method"?, "replica_mode"?,
 *                           "copies"?}: a new partition version pushed
 *                           with the zero-downtime protocol; answers
 *                           once it serves (sched_repartition())
 *
 * Auth: "Authorization: Bearer <token>" with the token from
 * DICEFLEET_ADMIN_TOKEN (read once at start-up into gw->admin_token).
 * No token configured: 403 for every admin request. Missing or wrong
 * bearer (a token in any other header or in the query counts as
 * missing): 401. The comparison is http_request_bearer_is()'s constant-
 * time one.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"

/* True when the request may proceed; otherwise res holds the 401/403. */
static bool admin_authorized(const gateway *gw, const http_request *req,
			     http_response *res)
{
	if (!gw->admin_token || !*gw->admin_token) {
		http_reply_error_status(res, 403, "forbidden",
					"admin API disabled: no DICEFLEET_ADMIN_TOKEN configured");
		return false;
	}
	if (!http_request_bearer_is(req, gw->admin_token)) {
		http_reply_error_status(res, 401, "unauthorized",
					"missing or wrong bearer token");
		http_response_header(res, "WWW-Authenticate", "Bearer");
		return false;
	}
	return true;
}

/* ---- GET /admin/devices ------------------------------------------------- */

df_err admin_handle_devices(const http_request *req, http_response *res,
			    void *ctx)
{
	gateway *gw = ctx;
	if (!admin_authorized(gw, req, res))
		return DF_OK;
	dev_info *devs = NULL;
	size_t n = 0;
	df_err err = health_list(gw->health, &devs, &n);
	if (err)
		return err;
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < n; i++) {
		json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:f, s:f, s:I, s:I}",
				      "id", devs[i].id, "url", devs[i].url,
				      "state", dev_state_name(devs[i].state),
				      "version", (json_int_t)devs[i].version,
				      "latency_ms", devs[i].latency_ms,
				      "call_latency_ms", devs[i].call_latency_ms,
				      "consecutive_failures",
				      (json_int_t)devs[i].failures, "since_ms",
				      (json_int_t)devs[i].since_ms);
		if (!o || json_array_append_new(arr, o)) {
			json_decref(arr);
			arr = NULL;
		}
	}
	free(devs);
	if (!arr)
		return DF_ENOMEM;
	return http_reply_json(res, 200,
			       json_pack("{s:o, s:I}", "devices", arr,
					 "active_version",
					 (json_int_t)sched_active_version(gw->sched)));
}

/* ---- GET /admin/partition ----------------------------------------------- */

static json_t *partition_json(gateway *gw, const store_partition *sp,
			      const partition_map *m)
{
	partition_load *loads = calloc((size_t)m->n_devices + 1, sizeof *loads);
	partition_load whole = {0};
	if (!loads)
		return NULL;
	if (partition_loads(m, gw->mdl->plan, loads, &whole)) {
		free(loads);
		return NULL;
	}
	json_t *devs = json_array();
	for (int d = 0; devs && d < m->n_devices; d++) {
		json_t *o = json_pack(
			"{s:s, s:I, s:I, s:I, s:I, s:I}", "id", m->devices[d],
			"primary_neurons", (json_int_t)loads[d].primary_neurons,
			"replica_neurons", (json_int_t)loads[d].replica_neurons,
			"neurons",
			(json_int_t)(loads[d].primary_neurons + loads[d].replica_neurons),
			"weight_bytes", (json_int_t)loads[d].weight_bytes, "flops",
			(json_int_t)(2 * loads[d].macs));
		if (!o || json_array_append_new(devs, o)) {
			json_decref(devs);
			devs = NULL;
		}
	}
	free(loads);
	json_t *stages = json_array();
	for (int s = 0; stages && s < m->n_stages; s++) {
		const partition_stage *ps = &m->stages[s];
		int64_t replicated = 0;
		if (ps->primary && ps->replicas && m->copies > 1) {
			for (int64_t k = 0; k < ps->n_neurons; k++)
				if (ps->replicas[k * (m->copies - 1)] >= 0)
					replicated++;
		}
		bool distributed = ps->primary != NULL;
		double cov = !distributed || ps->n_neurons == 0
			? 1.0 : (double)replicated / (double)ps->n_neurons;
		json_t *o = json_pack("{s:i, s:I, s:b, s:b, s:I, s:f}", "stage", s,
				      "neurons", (json_int_t)ps->n_neurons,
				      "on_gateway", ps->on_gateway, "distributed",
				      distributed, "replicated_neurons",
				      (json_int_t)replicated, "replica_coverage", cov);
		if (!o || json_array_append_new(stages, o)) {
			json_decref(stages);
			stages = NULL;
		}
	}
	if (!devs || !stages) {
		json_decref(devs);
		json_decref(stages);
		return NULL;
	}
	return json_pack("{s:I, s:s, s:s, s:f, s:s, s:I, s:s, s:I, s:o, s:o, s:{s:I, s:I}}",
			 "version", (json_int_t)sp->version, "state",
			 store_partition_state_name(sp->state), "model", sp->model,
			 "ratio", sp->ratio, "method", sp->method, "copies",
			 (json_int_t)sp->copies, "replica_mode", sp->replica_mode,
			 "created_at_ms", (json_int_t)sp->created_at_ms, "devices",
			 devs, "stages", stages, "whole", "weight_bytes",
			 (json_int_t)whole.weight_bytes, "flops",
			 (json_int_t)(2 * whole.macs));
}

df_err admin_handle_partition(const http_request *req, http_response *res,
			      void *ctx)
{
	gateway *gw = ctx;
	if (!admin_authorized(gw, req, res))
		return DF_OK;
	store_partition sp = {0};
	df_err err = store_partition_get_active(gw->db, gw->model_name, &sp);
	if (err == DF_ENOENT)
		return routes_error(res, 404, DF_ENOENT, "no active partition yet");
	if (err)
		return err;
	partition_map *m = NULL;
	err = partition_from_json(sp.json, strlen(sp.json), &m);
	if (!err) {
		json_t *body = partition_json(gw, &sp, m);
		err = body ? http_reply_json(res, 200, body) : DF_ENOMEM;
	}
	partition_destroy(m);
	store_partition_clear(&sp);
	return err;
}

/* ---- GET /admin/events --------------------------------------------------- */

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

df_err admin_handle_events(const http_request *req, http_response *res,
			   void *ctx)
{
	gateway *gw = ctx;
	if (!admin_authorized(gw, req, res))
		return DF_OK;
	long long limit = 0, after = 0, before = 0, since = 0;
	df_err err = routes_query_int(req, "limit", STORE_EVENT_PAGE_DEFAULT, 1,
				      STORE_EVENT_PAGE_MAX, &limit);
	if (!err)
		err = routes_query_int(req, "after", 0, 0, INT64_MAX, &after);
	if (!err)
		err = routes_query_int(req, "before", 0, 0, INT64_MAX, &before);
	if (!err)
		err = routes_query_int(req, "since", 0, 0, INT64_MAX, &since);
	if (err)
		return routes_error(res, 400, err, NULL);
	if (after && before)
		return routes_error(res, 400, DF_EINVAL,
				    "after and before: give at most one cursor");
	const char *device = http_request_query(req, "device");
	if (device && (!*device || strlen(device) >= STORE_ID_MAX))
		return routes_error(res, 400, DF_EINVAL,
				    "device: expected 1..127 bytes");
	store_event_query q = {
		.device_id = device,
		.since_ms = since,
		.cursor = before ? before : after,
		.limit = (size_t)limit,
		.newest_first = before != 0,
	};
	store_event *ev = NULL;
	size_t n = 0;
	err = store_event_list(gw->db, &q, &ev, &n);
	if (err)
		return err;
	json_t *arr = json_array();
	for (size_t i = 0; arr && i < n; i++) {
		json_t *o = json_pack("{s:I, s:I, s:o, s:s, s:o, s:o, s:o, s:o}", "id",
				      (json_int_t)ev[i].id, "ts_ms",
				      (json_int_t)ev[i].ts_ms, "device_id",
				      str_or_null(ev[i].device_id), "kind",
				      ev[i].kind ? ev[i].kind : "", "from_state",
				      str_or_null(ev[i].from_state), "to_state",
				      str_or_null(ev[i].to_state), "cause",
				      str_or_null(ev[i].cause), "detail",
				      str_or_null(ev[i].detail));
		if (!o || json_array_append_new(arr, o)) {
			json_decref(arr);
			arr = NULL;
		}
	}
	json_t *next = json_null();
	if (n == (size_t)limit && n > 0)
		next = json_integer((json_int_t)ev[n - 1].id);
	store_events_free(ev, n);
	if (!arr) {
		json_decref(next);
		return DF_ENOMEM;
	}
	return http_reply_json(res, 200,
			       json_pack("{s:o, s:I, s:o, s:s}", "events", arr,
					 "count", (json_int_t)n, "next_cursor", next,
					 "order", before ? "newest_first" : "oldest_first"));
}

/* ---- PUT /admin/replication ---------------------------------------------- */

df_err admin_handle_replication(const http_request *req, http_response *res,
				void *ctx)
{
	gateway *gw = ctx;
	if (!admin_authorized(gw, req, res))
		return DF_OK;
	json_error_t je;
	json_t *body = json_loadb((const char *)req->body, req->body_len, 0, &je);
	if (!body)
		return routes_error(res, 400, DF_EINVAL, "body: not JSON");
	df_err err = DF_OK;
	char msg[256] = "";
	json_t *ratio = NULL, *method = NULL, *mode = NULL, *copies = NULL;
	if (!json_is_object(body)) {
		snprintf(msg, sizeof msg, "body: expected a JSON object");
	} else if (json_unpack_ex(body, &je, JSON_STRICT, "{s:o, s?:o, s?:o, s?:o}",
				  "ratio", &ratio, "method", &method,
				  "replica_mode", &mode, "copies", &copies) != 0) {
		snprintf(msg, sizeof msg, "body: %s (fields: ratio, method?, replica_mode?, copies?)",
			 je.text);
	}
	gw_settings st;
	sched_settings(gw->sched, &st);
	if (!*msg) {
		double r = json_is_number(ratio) ? json_number_value(ratio) : -1;
		if (!json_is_number(ratio))
			snprintf(msg, sizeof msg, "ratio: expected a number");
		else if (!(r >= 0.0 && r <= 1.0))
			snprintf(msg, sizeof msg, "ratio: %g is outside [0, 1]", r);
		else
			st.ratio = r;
	}
	if (!*msg && method) {
		if (!json_is_string(method))
			snprintf(msg, sizeof msg, "method: expected a string");
		else if (partition_method_parse(json_string_value(method), &st.method))
			snprintf(msg, sizeof msg,
				 "method: '%.60s' is not sequential, random, layerwise, full or robustdice",
				 json_string_value(method));
	}
	if (!*msg && mode) {
		if (!json_is_string(mode))
			snprintf(msg, sizeof msg, "replica_mode: expected a string");
		else if (replica_mode_parse(json_string_value(mode), &st.replicas))
			snprintf(msg, sizeof msg,
				 "replica_mode: '%.60s' is not standby or active",
				 json_string_value(mode));
	}
	if (!*msg && copies) {
		if (!json_is_integer(copies))
			snprintf(msg, sizeof msg, "copies: expected an integer");
		else if (json_integer_value(copies) < 1 ||
			 json_integer_value(copies) > PARTITION_MAX_COPIES)
			snprintf(msg, sizeof msg, "copies: %" JSON_INTEGER_FORMAT " is outside 1..%d",
				 json_integer_value(copies), PARTITION_MAX_COPIES);
		else
			st.copies = (int)json_integer_value(copies);
	}
	json_decref(body);
	if (*msg)
		return routes_error(res, 400, DF_EINVAL, msg);
	int64_t old = 0, version = 0;
	err = sched_repartition(gw->sched, &st, "admin: PUT /admin/replication",
				&old, &version);
	if (err == DF_ECONFLICT)
		return routes_error(res, 409, err, NULL);
	if (err == DF_EUNAVAIL)
		return routes_error(res, 503, err, NULL);
	if (err)
		return err;
	return http_reply_json(res, 200,
			       json_pack("{s:I, s:I, s:s, s:f, s:i, s:s}", "version",
					 (json_int_t)version, "previous_version",
					 (json_int_t)old, "method",
					 partition_method_name(st.method), "ratio",
					 st.ratio, "copies", st.copies, "replica_mode",
					 replica_mode_name(st.replicas)));
}

/* ---- POST /admin/devices, DELETE /admin/devices/{id} -------------------- */

df_err admin_handle_device_add(const http_request *req, http_response *res,
			       void *ctx)
{
	gateway *gw = ctx;
	if (!admin_authorized(gw, req, res))
		return DF_OK;
	json_error_t je;
	json_t *body = json_loadb((const char *)req->body, req->body_len, 0, &je);
	if (!body)
		return routes_error(res, 400, DF_EINVAL, "body: not JSON");
	const char *id = NULL, *url = NULL;
	char msg[256] = "";
	if (json_unpack_ex(body, &je, JSON_STRICT, "{s:s, s:s}", "id", &id, "url",
			   &url) != 0)
		snprintf(msg, sizeof msg,
			 "body: %s (expected {\"id\": string, \"url\": string})",
			 je.text);
	df_err err = DF_OK;
	bool existed = false;
	dev_info old = {0}, info = {0};
	if (!*msg) {
		existed = health_get(gw->health, id, &old) == DF_OK;
		err = health_register(gw->health, id, url);
		if (!err)
			err = health_get(gw->health, id, &info);
	}
	json_decref(body); /* id, url point into it */
	if (*msg)
		return routes_error(res, 400, DF_EINVAL, msg);
	if (err == DF_EINVAL)
		return routes_error(res, 400, err, NULL);
	if (err)
		return err;
	bool in_map = sched_active_has(gw->sched, info.id);
	int64_t version = 0;
	if (existed && in_map && strcmp(old.url, info.url) != 0) {
		/* The active deployment calls the old URL: a new version over
		 * the new one. On failure the device keeps its old URL. */
		gw_settings st;
		sched_settings(gw->sched, &st);
		int64_t prev = 0;
		err = sched_repartition(gw->sched, &st, "admin: device URL changed",
					&prev, &version);
		if (err) {
			char why[300];
			snprintf(why, sizeof why, "%s", df_err_msg());
			health_register(gw->health, old.id, old.url);
			return routes_error(res, err == DF_ECONFLICT ? 409 : 503, err, why);
		}
	}
	json_t *reply = json_pack("{s:s, s:s, s:s, s:b}", "id", info.id, "url",
				  info.url, "state", dev_state_name(info.state),
				  "in_partition", in_map);
	if (reply && version)
		json_object_set_new(reply, "version", json_integer((json_int_t)version));
	return http_reply_json(res, existed ? 200 : 201, reply);
}

df_err admin_handle_device_delete(const http_request *req,
				  http_response *res, void *ctx)
{
	gateway *gw = ctx;
	if (!admin_authorized(gw, req, res))
		return DF_OK;
	const char *id = http_request_param(req, "id");
	dev_info info;
	if (!id || health_get(gw->health, id, &info) != DF_OK)
		return routes_error(res, 404, DF_ENOENT, "no such device");
	bool in_map = sched_active_has(gw->sched, id);
	df_err err = health_unregister(gw->health, id, "admin: DELETE /admin/devices");
	if (err)
		return err;
	json_t *reply = json_pack("{s:s, s:b}", "id", id, "removed", 1);
	if (in_map && reply) {
		/* Serve without it: a new version over the remaining devices. */
		gw_settings st;
		sched_settings(gw->sched, &st);
		int64_t old = 0, version = 0;
		err = sched_repartition(gw->sched, &st, "admin: device removed", &old,
					&version);
		if (err) {
			/* Keep serving as before: the device stays registered. */
			char why[300];
			snprintf(why, sizeof why, "%s", df_err_msg());
			json_decref(reply);
			health_register(gw->health, info.id, info.url);
			return routes_error(res, err == DF_ECONFLICT ? 409 : 503, err, why);
		}
		json_object_set_new(reply, "version", json_integer((json_int_t)version));
	}
	return http_reply_json(res, 200, reply);
}
