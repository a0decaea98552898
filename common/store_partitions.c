/*
 * store_partitions.c - the partitions table: versioned partition plans per
 * model, each prepared, active or retired. Versions are assigned by the
 * insert itself (max + 1, atomically); activating one retires the model's
 * active version in the same transaction, and a retired version cannot be
 * activated again.
 *
 * At most one partition per model is active (a partial unique index backs
 * this up). Lists leave out the JSON plan; store_partition_get() and
 * store_partition_get_active() return it. Locking, statements and
 * transactions follow the module's invariants (store.c).
 */
#include "store.h"
#include "store_internal.h"

#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- partitions ------------------------------------------------------------ */

static const char *const partition_state_names[] = {"prepared", "active",
						    "retired"};
_Static_assert(sizeof partition_state_names /
			       sizeof partition_state_names[0] ==
		       STORE_PARTITION_STATE_COUNT,
	       "one name per partition state");

const char *store_partition_state_name(store_partition_state st)
{
	return (unsigned)st < STORE_PARTITION_STATE_COUNT ?
		       partition_state_names[st] : "?";
}

void store_partition_clear(store_partition *p)
{
	if (!p)
		return;
	free(p->model);
	free(p->method);
	free(p->replica_mode);
	free(p->json);
	memset(p, 0, sizeof *p);
}

void store_partitions_free(store_partition *p, size_t n)
{
	if (!p)
		return;
	for (size_t i = 0; i < n; i++)
		store_partition_clear(&p[i]);
	free(p);
}

static df_err read_partition(sqlite3_stmt *st, store_partition *p)
{
	memset(p, 0, sizeof *p);
	p->version = sqlite3_column_int64(st, 0);
	df_err err = store_col_dup(st, 1, "partition model", &p->model);
	if (!err)
		err = store_col_dup(st, 2, "partition method", &p->method);
	if (!err)
		err = store_col_dup(st, 5, "partition replica_mode",
		                    &p->replica_mode);
	if (!err)
		err = store_col_dup(st, 6, "partition json", &p->json);
	if (!err && (!p->model || !p->method || !p->replica_mode))
		err = df_errf(DF_ECORRUPT, "store: partition %lld has NULL fields",
			      (long long)p->version);
	if (err) {
		store_partition_clear(p);
		return err;
	}
	p->ratio = sqlite3_column_double(st, 3);
	p->copies = sqlite3_column_int64(st, 4);
	p->created_at_ms = sqlite3_column_int64(st, 7);
	const unsigned char *state = sqlite3_column_text(st, 8);
	int k = 0;
	while (k < STORE_PARTITION_STATE_COUNT &&
	       !(state && strcmp((const char *)state, partition_state_names[k]) == 0))
		k++;
	if (k == STORE_PARTITION_STATE_COUNT) {
		int64_t v = p->version;
		store_partition_clear(p);
		return df_errf(DF_ECORRUPT, "store: partition %lld has an unknown state",
			       (long long)v);
	}
	p->state = (store_partition_state)k;
	return DF_OK;
}

df_err store_partition_insert(store *s, const store_partition *p,
			      int64_t *version)
{
	if (!p)
		return df_errf(DF_EINVAL, "store: no partition");
	df_err err =
	    store_check_text(p->model, "partition model", STORE_NAME_MAX, true);
	if (!err)
		err = store_check_text(p->method, "partition method",
		                       STORE_NAME_MAX, true);
	if (!err)
		err =
		    store_check_text(p->replica_mode, "partition replica_mode",
		                     STORE_NAME_MAX, true);
	if (!err && (!p->json || !*p->json))
		err = df_errf(DF_EINVAL, "store: partition json is empty");
	if (!err && !(p->ratio >= 0 && p->ratio <= 1))
		err = df_errf(DF_EINVAL, "store: partition ratio %g outside 0..1",
			      p->ratio);
	if (!err && p->copies < 1)
		err = df_errf(DF_EINVAL, "store: partition copies %lld below 1",
			      (long long)p->copies);
	if (err)
		return err;
	int64_t v = 0;
	store_lock(s);
	/* One statement computes max + 1 and inserts it: atomic. */
	err = store_exec_st(s, STORE_ST_PART_INSERT, "insert partition", NULL,
	                    "ttditti", p->model, p->method, (double)p->ratio,
	                    (int64_t)p->copies, p->replica_mode, p->json,
	                    store_now_ms());
	if (!err)
		v = sqlite3_last_insert_rowid(s->db);
	store_unlock(s);
	if (!err)
		*version = v;
	return err;
}

/* Reads one partition with statement id (bound by types/args). */
static df_err get_partition(store *s, int id, store_partition *out,
			    const char *missing, const char *types, ...)
{
	store_partition p;
	bool row = false;
	sqlite3_stmt *st = s->st[id];
	va_list ap;
	va_start(ap, types);
	int rc = store_bind_v(st, types, ap);
	va_end(ap);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	df_err err = DF_OK;
	if (rc == SQLITE_ROW || rc == SQLITE_DONE)
		row = rc == SQLITE_ROW;
	else
		err = store_sql_fail(s, rc, "read partition");
	if (!err && row)
		err = read_partition(st, &p);
	else if (!err)
		err = df_errf(DF_ENOENT, "store: %s", missing);
	store_st_reset(st);
	if (!err)
		*out = p;
	return err;
}

df_err store_partition_get(store *s, int64_t version, store_partition *out)
{
	char missing[64];
	snprintf(missing, sizeof missing, "no partition version %lld",
		 (long long)version);
	store_lock(s);
	df_err err = get_partition(s, STORE_ST_PART_GET, out, missing, "i",
	                           (int64_t)version);
	store_unlock(s);
	return err;
}

df_err store_partition_get_active(store *s, const char *model,
				  store_partition *out)
{
	df_err err =
	    store_check_text(model, "partition model", STORE_NAME_MAX, false);
	if (err)
		return err;
	store_lock(s);
	if (model)
		err = get_partition(s, STORE_ST_PART_ACTIVE, out,
		                    "no active partition for this model", "t",
		                    model);
	else
		err = get_partition(s, STORE_ST_PART_ACTIVE_ANY, out,
		                    "no active partition", "");
	store_unlock(s);
	return err;
}

/* Sets version's state to `to` inside a transaction after checking its
 * current state; activating also retires the model's other active one. */
static df_err change_state(store *s, int64_t version, store_partition_state to)
{
	store_partition cur = {0};
	char missing[64];
	bool in_tx = false;
	snprintf(missing, sizeof missing, "no partition version %lld",
		 (long long)version);
	store_lock(s);
	df_err err = store_tx_begin(s);
	if (err)
		goto out;
	in_tx = true;
	err = get_partition(s, STORE_ST_PART_GET, &cur, missing, "i",
	                    (int64_t)version);
	if (err)
		goto out;
	if (cur.state == to)
		goto commit;
	if (to == STORE_PARTITION_ACTIVE && cur.state == STORE_PARTITION_RETIRED) {
		err = df_errf(DF_ECONFLICT, "store: partition %lld is retired and cannot be activated",
			      (long long)version);
		goto out;
	}
	if (to == STORE_PARTITION_RETIRED && cur.state == STORE_PARTITION_ACTIVE) {
		err = df_errf(DF_ECONFLICT, "store: partition %lld is active; activate another version instead",
			      (long long)version);
		goto out;
	}
	if (to == STORE_PARTITION_ACTIVE) {
		err = store_exec_st(s, STORE_ST_PART_RETIRE_OTHERS,
		                    "retire active partition", NULL, "ti",
		                    cur.model, (int64_t)version);
		if (err)
			goto out;
	}
	err = store_exec_st(s, STORE_ST_PART_SET_STATE, "set partition state",
	                    NULL, "it", (int64_t)version,
	                    partition_state_names[to]);
	if (err)
		goto out;
commit:
	in_tx = false;
	err = store_tx_commit(s);
out:
	if (in_tx)
		store_tx_rollback(s);
	store_unlock(s);
	store_partition_clear(&cur);
	return err;
}

df_err store_partition_set_active(store *s, int64_t version)
{
	return change_state(s, version, STORE_PARTITION_ACTIVE);
}

df_err store_partition_retire(store *s, int64_t version)
{
	return change_state(s, version, STORE_PARTITION_RETIRED);
}

df_err store_partition_list(store *s, const char *model,
			    store_partition **out, size_t *n)
{
	df_err err =
	    store_check_text(model, "partition model", STORE_NAME_MAX, false);
	if (err)
		return err;
	int id = model ? STORE_ST_PART_LIST_MODEL : STORE_ST_PART_LIST;
	store_partition *arr = NULL;
	size_t cnt = 0, cap = 0;
	bool row = false;
	store_lock(s);
	if (model)
		err =
		    store_query_st(s, id, "list partitions", &row, "t", model);
	else
		err = store_query_st(s, id, "list partitions", &row, "");
	while (!err && row) {
		err = store_grow((void **)&arr, &cap, cnt, sizeof *arr);
		if (!err)
			err = read_partition(s->st[id], &arr[cnt]);
		if (err) {
			store_st_reset(s->st[id]);
			break;
		}
		cnt++;
		err = store_next_row(s, id, "list partitions", &row);
	}
	if (!err)
		store_st_reset(s->st[id]);
	store_unlock(s);
	if (err) {
		store_partitions_free(arr, cnt);
		return err;
	}
	*out = arr;
	*n = cnt;
	return DF_OK;
}
