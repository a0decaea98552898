/*
 * store_internal.h - private declarations shared by the files of the store
 * module (store.c, store_devices.c, store_events.c, store_partitions.c).
 * Nothing else includes it; the public API is store.h.
 *
 * The statement helpers expect s->mu held (store_lock()). A statement that
 * store_query_st() started is read and then reset with store_st_reset()
 * before the lock is released. Errors are recorded with df_errf() as
 * "store: ...", SQLite result codes mapped to df_err.
 */
#ifndef DF_STORE_INTERNAL_H
#define DF_STORE_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

/* Prepared statements: index into s->st; the SQL is in store.c. */
enum {
	STORE_ST_BEGIN,
	STORE_ST_COMMIT,
	STORE_ST_ROLLBACK,
	STORE_ST_DEV_EXISTS,
	STORE_ST_DEV_UPSERT,
	STORE_ST_DEV_GET,
	STORE_ST_DEV_LIST,
	STORE_ST_DEV_DELETE,
	STORE_ST_DEV_HEALTH,
	STORE_ST_EV_INSERT,
	STORE_ST_EV_ASC,
	STORE_ST_EV_ASC_DEV,
	STORE_ST_EV_DESC,
	STORE_ST_EV_DESC_DEV,
	STORE_ST_EV_PRUNE,
	STORE_ST_PART_INSERT,
	STORE_ST_PART_GET,
	STORE_ST_PART_ACTIVE,
	STORE_ST_PART_ACTIVE_ANY,
	STORE_ST_PART_RETIRE_OTHERS,
	STORE_ST_PART_SET_STATE,
	STORE_ST_PART_LIST,
	STORE_ST_PART_LIST_MODEL,
	STORE_ST_SET_GET,
	STORE_ST_SET_PUT,
	STORE_ST_SET_DELETE,
	STORE_ST_COUNT
};

struct store {
	sqlite3 *db;
	pthread_mutex_t mu;
	sqlite3_stmt *st[STORE_ST_COUNT];
};

/* ---- store.c ------------------------------------------------------------ */

/* Wall-clock time in ms since the epoch (0 if the clock fails). */
int64_t store_now_ms(void);

/* Records a failed SQLite call; call before anything else touches db. */
df_err store_sql_fail(const store *s, int rc, const char *what);

/* Resets statement st and clears its bindings. */
void store_st_reset(sqlite3_stmt *st);

/* Binds ?1, ?2, ... in order: 't' const char * (NULL binds NULL), 'i'
 * int64_t, 'd' double. Texts are SQLITE_STATIC: they must live until the
 * statement is reset. Returns a SQLite result code. */
int store_bind_v(sqlite3_stmt *st, const char *types, va_list ap);

/* Binds and runs statement id to completion (no rows expected), then
 * resets it. *changes (may be NULL) receives sqlite3_changes(). */
df_err store_exec_st(store *s, int id, const char *what, int *changes,
                     const char *types, ...);

/* Binds statement id and steps once. On DF_OK, *row says whether a row is
 * ready to be read; the caller reads it and calls store_st_reset(). On
 * error the statement is already reset. */
df_err store_query_st(store *s, int id, const char *what, bool *row,
                      const char *types, ...);

/* Steps a statement that store_query_st() started: *row as above. */
df_err store_next_row(store *s, int id, const char *what, bool *row);

/* BEGIN IMMEDIATE / ROLLBACK (if a transaction is open) / COMMIT (rolled
 * back when it fails). */
df_err store_tx_begin(store *s);
void store_tx_rollback(store *s);
df_err store_tx_commit(store *s);

/* Checks an input string: present (unless optional), non-empty when
 * present and required, shorter than max bytes. */
df_err store_check_text(const char *v, const char *field, size_t max,
                        bool required);

/* Reads text column col: *out is a new string, or NULL for SQL NULL. */
df_err store_col_dup(sqlite3_stmt *st, int col, const char *field, char **out);

/* Grows *arr (of *cap elements of size elem) to hold at least n + 1. */
df_err store_grow(void **arr, size_t *cap, size_t n, size_t elem);

/* ---- store_events.c ----------------------------------------------------- */

/* Validates an event before it is written. */
df_err store_event_check(const store_event *ev);

/* Inserts ev (a checked event; ts 0 means now) and returns its id; the
 * caller holds the lock. */
df_err store_event_insert(store *s, const store_event *ev, int64_t *id);

/* ---- locking ------------------------------------------------------------ */

static inline void store_lock(store *s)
{
	pthread_mutex_lock(&s->mu);
}

static inline void store_unlock(store *s)
{
	pthread_mutex_unlock(&s->mu);
}

#endif
