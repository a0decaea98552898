/*
 * store_devices.c - the devices table: registering (upsert), reading,
 * listing and deleting workers, and recording their health, optionally with
 * the event that explains the change in the same transaction.
 *
 * Input is validated before s->mu is taken: ids, urls and states are
 * bounded by STORE_ID_MAX, STORE_URL_MAX and STORE_STATE_MAX, and health
 * numbers must be finite and >= 0. Rows read back are copied into the
 * caller's fixed-size fields and must fit them (DF_ECORRUPT otherwise).
 * Locking, statements and transactions follow the module's invariants
 * (store.c).
 */
#include "store.h"
#include "store_internal.h"

#include <math.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- devices ------------------------------------------------------------ */

/* Reads a non-NULL text column into a fixed buffer of cap bytes. */
static df_err col_copy(sqlite3_stmt *st, int col, const char *field,
		       char *dst, size_t cap)
{
	if (sqlite3_column_type(st, col) == SQLITE_NULL)
		return df_errf(DF_ECORRUPT, "store: stored %s is NULL", field);
	const unsigned char *v = sqlite3_column_text(st, col);
	if (!v)
		return df_errf(DF_ENOMEM, "store: reading %s", field);
	size_t n = (size_t)sqlite3_column_bytes(st, col);
	if (n >= cap || memchr(v, 0, n))
		return df_errf(DF_ECORRUPT, "store: stored %s is not a string of < %zu bytes",
			       field, cap);
	memcpy(dst, v, n);
	dst[n] = '\0';
	return DF_OK;
}

static df_err read_device(sqlite3_stmt *st, store_device *d)
{
	df_err err = col_copy(st, 0, "device id", d->id, sizeof d->id);
	if (!err)
		err = col_copy(st, 1, "device url", d->url, sizeof d->url);
	if (!err)
		err = col_copy(st, 2, "device state", d->state, sizeof d->state);
	if (err)
		return err;
	d->last_seen_ms = sqlite3_column_int64(st, 3);
	d->consecutive_failures = sqlite3_column_int64(st, 4);
	d->latency_ms_estimate = sqlite3_column_double(st, 5);
	d->registered_at_ms = sqlite3_column_int64(st, 6);
	d->updated_at_ms = sqlite3_column_int64(st, 7);
	return DF_OK;
}

static df_err check_health(const char *state, int64_t last_seen,
			   int64_t failures, double latency)
{
	df_err err =
	    store_check_text(state, "device state", STORE_STATE_MAX, true);
	if (err)
		return err;
	if (last_seen < 0)
		return df_errf(DF_EINVAL, "store: device last_seen %lld is negative",
			       (long long)last_seen);
	if (failures < 0)
		return df_errf(DF_EINVAL, "store: device consecutive_failures %lld is negative",
			       (long long)failures);
	if (!(latency >= 0) || isinf(latency))
		return df_errf(DF_EINVAL, "store: device latency_ms_estimate %g is not a finite value >= 0",
			       latency);
	return DF_OK;
}

df_err store_device_upsert(store *s, const store_device *d, bool *created)
{
	if (!d)
		return df_errf(DF_EINVAL, "store: no device");
	df_err err = store_check_text(d->id, "device id", STORE_ID_MAX, true);
	if (!err)
		err =
		    store_check_text(d->url, "device url", STORE_URL_MAX, true);
	if (!err)
		err = check_health(d->state, d->last_seen_ms,
				   d->consecutive_failures, d->latency_ms_estimate);
	if (err)
		return err;

	bool exists = false, in_tx = false;
	store_lock(s);
	err = store_tx_begin(s);
	if (err)
		goto out;
	in_tx = true;
	err = store_query_st(s, STORE_ST_DEV_EXISTS, "look up device", &exists,
	                     "t", d->id);
	if (err)
		goto out;
	store_st_reset(s->st[STORE_ST_DEV_EXISTS]);
	err = store_exec_st(s, STORE_ST_DEV_UPSERT, "write device", NULL,
	                    "tttiidi", d->id, d->url, d->state,
	                    (int64_t)d->last_seen_ms,
	                    (int64_t)d->consecutive_failures,
	                    (double)d->latency_ms_estimate, store_now_ms());
	if (err)
		goto out;
	in_tx = false;
	err = store_tx_commit(s);
out:
	if (in_tx)
		store_tx_rollback(s);
	store_unlock(s);
	if (!err && created)
		*created = !exists;
	return err;
}

df_err store_device_get(store *s, const char *id, store_device *out)
{
	df_err err = store_check_text(id, "device id", STORE_ID_MAX, true);
	if (err)
		return err;
	store_device d;
	bool row = false;
	store_lock(s);
	err = store_query_st(s, STORE_ST_DEV_GET, "read device", &row, "t", id);
	if (err)
		goto out;
	if (row)
		err = read_device(s->st[STORE_ST_DEV_GET], &d);
	else
		err = df_errf(DF_ENOENT, "store: no device '%s'", id);
	store_st_reset(s->st[STORE_ST_DEV_GET]);
out:
	store_unlock(s);
	if (!err)
		*out = d;
	return err;
}

df_err store_device_list(store *s, store_device **out, size_t *n)
{
	store_device *arr = NULL;
	size_t cnt = 0, cap = 0;
	bool row = false;
	store_lock(s);
	df_err err =
	    store_query_st(s, STORE_ST_DEV_LIST, "list devices", &row, "");
	while (!err && row) {
		err = store_grow((void **)&arr, &cap, cnt, sizeof *arr);
		if (!err)
			err = read_device(s->st[STORE_ST_DEV_LIST], &arr[cnt]);
		if (err) {
			store_st_reset(s->st[STORE_ST_DEV_LIST]);
			break;
		}
		cnt++;
		err =
		    store_next_row(s, STORE_ST_DEV_LIST, "list devices", &row);
	}
	if (!err)
		store_st_reset(s->st[STORE_ST_DEV_LIST]);
	store_unlock(s);
	if (err) {
		free(arr);
		return err;
	}
	*out = arr;
	*n = cnt;
	return DF_OK;
}

df_err store_device_delete(store *s, const char *id)
{
	df_err err = store_check_text(id, "device id", STORE_ID_MAX, true);
	if (err)
		return err;
	int changes = 0;
	store_lock(s);
	err = store_exec_st(s, STORE_ST_DEV_DELETE, "delete device", &changes,
	                    "t", id);
	store_unlock(s);
	if (!err && changes == 0)
		err = df_errf(DF_ENOENT, "store: no device '%s'", id);
	return err;
}

df_err store_device_set_health(store *s, const char *id, const store_health *h,
			       const store_event *ev, int64_t *event_id)
{
	df_err err = store_check_text(id, "device id", STORE_ID_MAX, true);
	if (!err && !h)
		err = df_errf(DF_EINVAL, "store: no health fields");
	if (!err)
		err = check_health(h->state, h->last_seen_ms,
				   h->consecutive_failures, h->latency_ms_estimate);
	if (!err && ev)
		err = store_event_check(ev);
	if (err)
		return err;

	int changes = 0;
	int64_t eid = 0;
	bool in_tx = false;
	store_lock(s);
	if (ev) {
		err = store_tx_begin(s);
		if (err)
			goto out;
		in_tx = true;
	}
	err = store_exec_st(s, STORE_ST_DEV_HEALTH, "write device health",
	                    &changes, "ttiidi", id, h->state,
	                    (int64_t)h->last_seen_ms,
	                    (int64_t)h->consecutive_failures,
	                    (double)h->latency_ms_estimate, store_now_ms());
	if (err)
		goto out;
	if (changes == 0) {
		err = df_errf(DF_ENOENT, "store: no device '%s'", id);
		goto out;
	}
	if (ev) {
		err = store_event_insert(s, ev, &eid);
		if (err)
			goto out;
		in_tx = false;
		err = store_tx_commit(s);
	}
out:
	if (in_tx)
		store_tx_rollback(s);
	store_unlock(s);
	if (!err && event_id)
		*event_id = eid;
	return err;
}
