/*
 * store_events.c - the events log: appending (alone, or from
 * store_device_set_health() inside its transaction), paging through it by
 * id cursor in either direction, optionally for one device, and pruning by
 * age.
 *
 * Event ids come from AUTOINCREMENT, so a cursor stays valid after pruning.
 * A page is a new array the caller frees with store_events_free(); nothing
 * is returned on error. Text fields are bounded (STORE_*_MAX) on the way
 * in. Locking, statements and transactions follow the module's invariants
 * (store.c).
 */
#include "store.h"
#include "store_internal.h"

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- events --------------------------------------------------------------- */

df_err store_event_check(const store_event *ev)
{
	if (!ev)
		return df_errf(DF_EINVAL, "store: no event");
	df_err err =
	    store_check_text(ev->kind, "event kind", STORE_NAME_MAX, true);
	if (!err)
		err = store_check_text(ev->device_id, "event device_id",
		                       STORE_ID_MAX, false);
	if (!err)
		err = store_check_text(ev->from_state, "event from_state",
		                       STORE_STATE_MAX, false);
	if (!err)
		err = store_check_text(ev->to_state, "event to_state",
		                       STORE_STATE_MAX, false);
	if (!err)
		err = store_check_text(ev->cause, "event cause", STORE_TEXT_MAX,
		                       false);
	if (!err)
		err = store_check_text(ev->detail, "event detail",
		                       STORE_TEXT_MAX, false);
	if (!err && ev->ts_ms < 0)
		err = df_errf(DF_EINVAL, "store: event ts %lld is negative",
			      (long long)ev->ts_ms);
	return err;
}

/* Inserts ev; the caller holds the lock. */
df_err store_event_insert(store *s, const store_event *ev, int64_t *id)
{
	df_err err = store_exec_st(
	    s, STORE_ST_EV_INSERT, "append event", NULL, "itttttt",
	    ev->ts_ms ? (int64_t)ev->ts_ms : store_now_ms(), ev->device_id,
	    ev->kind, ev->from_state, ev->to_state, ev->cause, ev->detail);
	if (!err)
		*id = sqlite3_last_insert_rowid(s->db);
	return err;
}

df_err store_event_append(store *s, const store_event *ev, int64_t *id)
{
	df_err err = store_event_check(ev);
	if (err)
		return err;
	int64_t eid = 0;
	store_lock(s);
	err = store_event_insert(s, ev, &eid);
	store_unlock(s);
	if (!err && id)
		*id = eid;
	return err;
}

static void event_free_fields(store_event *e)
{
	free(e->device_id);
	free(e->kind);
	free(e->from_state);
	free(e->to_state);
	free(e->cause);
	free(e->detail);
	memset(e, 0, sizeof *e);
}

void store_events_free(store_event *ev, size_t n)
{
	if (!ev)
		return;
	for (size_t i = 0; i < n; i++)
		event_free_fields(&ev[i]);
	free(ev);
}

static df_err read_event(sqlite3_stmt *st, store_event *e)
{
	memset(e, 0, sizeof *e);
	e->id = sqlite3_column_int64(st, 0);
	e->ts_ms = sqlite3_column_int64(st, 1);
	df_err err = store_col_dup(st, 2, "event device_id", &e->device_id);
	if (!err)
		err = store_col_dup(st, 3, "event kind", &e->kind);
	if (!err && !e->kind)
		err = df_errf(DF_ECORRUPT, "store: event %lld has no kind",
			      (long long)e->id);
	if (!err)
		err = store_col_dup(st, 4, "event from_state", &e->from_state);
	if (!err)
		err = store_col_dup(st, 5, "event to_state", &e->to_state);
	if (!err)
		err = store_col_dup(st, 6, "event cause", &e->cause);
	if (!err)
		err = store_col_dup(st, 7, "event detail", &e->detail);
	if (err)
		event_free_fields(e);
	return err;
}

df_err store_event_list(store *s, const store_event_query *q,
			store_event **out, size_t *n)
{
	static const store_event_query all = {0};
	if (!q)
		q = &all;
	size_t limit = q->limit ? q->limit : STORE_EVENT_PAGE_DEFAULT;
	if (limit > STORE_EVENT_PAGE_MAX)
		return df_errf(DF_ERANGE, "store: event page limit %zu exceeds %d",
			       limit, STORE_EVENT_PAGE_MAX);
	if (q->cursor < 0)
		return df_errf(DF_EINVAL, "store: event cursor %lld is negative",
			       (long long)q->cursor);
	df_err err = store_check_text(q->device_id, "event device_id",
	                              STORE_ID_MAX, false);
	if (err)
		return err;

	int id;
	int64_t cursor = q->cursor;
	if (q->newest_first) {
		id = q->device_id ? STORE_ST_EV_DESC_DEV : STORE_ST_EV_DESC;
		if (cursor == 0)
			cursor = INT64_MAX;
	} else {
		id = q->device_id ? STORE_ST_EV_ASC_DEV : STORE_ST_EV_ASC;
	}
	store_event *arr = NULL;
	size_t cnt = 0, cap = 0;
	bool row = false;
	store_lock(s);
	if (q->device_id)
		err = store_query_st(s, id, "list events", &row, "iiit", cursor,
		                     (int64_t)q->since_ms, (int64_t)limit,
		                     q->device_id);
	else
		err = store_query_st(s, id, "list events", &row, "iii", cursor,
		                     (int64_t)q->since_ms, (int64_t)limit);
	while (!err && row) {
		err = store_grow((void **)&arr, &cap, cnt, sizeof *arr);
		if (!err)
			err = read_event(s->st[id], &arr[cnt]);
		if (err) {
			store_st_reset(s->st[id]);
			break;
		}
		cnt++;
		err = store_next_row(s, id, "list events", &row);
	}
	if (!err)
		store_st_reset(s->st[id]);
	store_unlock(s);
	if (err) {
		store_events_free(arr, cnt);
		return err;
	}
	*out = arr;
	*n = cnt;
	return DF_OK;
}

df_err store_event_prune(store *s, int64_t before_ms, int64_t *deleted)
{
	int changes = 0;
	store_lock(s);
	df_err err = store_exec_st(s, STORE_ST_EV_PRUNE, "prune events",
	                           &changes, "i", (int64_t)before_ms);
	store_unlock(s);
	if (!err && deleted)
		*deleted = changes;
	return err;
}

