/*
 * store.c - the gateway's SQLite database behind a mutex: the schema and its
 * migrations, the prepared statements and the helpers that run them, opening
 * and closing, and settings. Devices, events and partitions are in
 * store_devices.c, store_events.c and store_partitions.c; store_internal.h
 * is what the four files share.
 *
 * Invariants (of the whole store module):
 *  - every public function holds s->mu for its whole run; the prepared
 *    statements in s->st are created once by store_open() and are reset
 *    and unbound before the mutex is released;
 *  - every write of more than one row runs inside BEGIN IMMEDIATE ..
 *    COMMIT, and is rolled back on any error;
 *  - the schema is migrations[0..n) applied in order and user_version = n.
 *    To change the schema append a migration; never edit a shipped one;
 *  - at most one partition per model is active (a partial unique index
 *    enforces it even against bugs here);
 *  - values reach SQL only through sqlite3_bind_*.
 */
#include "store.h"
#include "store_internal.h"

#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

/* ---- schema ------------------------------------------------------------- */

static const char *const migrations[] = {
	/* v1: the initial schema. */
	"CREATE TABLE devices ("
	"  id TEXT PRIMARY KEY NOT NULL,"
	"  url TEXT NOT NULL,"
	"  state TEXT NOT NULL,"
	"  last_seen INTEGER NOT NULL DEFAULT 0,"
	"  consecutive_failures INTEGER NOT NULL DEFAULT 0,"
	"  latency_ms_estimate REAL NOT NULL DEFAULT 0,"
	"  registered_at INTEGER NOT NULL,"
	"  updated_at INTEGER NOT NULL);"
	/* Events outlive their device, so device_id is not a foreign key.
	 * AUTOINCREMENT keeps ids (page cursors) unique after pruning. */
	"CREATE TABLE events ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  ts INTEGER NOT NULL,"
	"  device_id TEXT,"
	"  kind TEXT NOT NULL,"
	"  from_state TEXT,"
	"  to_state TEXT,"
	"  cause TEXT,"
	"  detail TEXT);"
	"CREATE INDEX events_by_device ON events (device_id, id);"
	"CREATE INDEX events_by_ts ON events (ts);"
	"CREATE TABLE partitions ("
	"  version INTEGER PRIMARY KEY,"
	"  model TEXT NOT NULL,"
	"  method TEXT NOT NULL,"
	"  ratio REAL NOT NULL CHECK (ratio >= 0 AND ratio <= 1),"
	"  copies INTEGER NOT NULL CHECK (copies >= 1),"
	"  replica_mode TEXT NOT NULL,"
	"  json TEXT NOT NULL,"
	"  created_at INTEGER NOT NULL,"
	"  state TEXT NOT NULL"
	"    CHECK (state IN ('prepared', 'active', 'retired')));"
	"CREATE UNIQUE INDEX partitions_one_active ON partitions (model)"
	"  WHERE state = 'active';"
	"CREATE TABLE settings ("
	"  key TEXT PRIMARY KEY NOT NULL,"
	"  value TEXT NOT NULL);",
};
#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

/* ---- statements --------------------------------------------------------- */

#define DEV_COLS                                                               \
	"id, url, state, last_seen, consecutive_failures, "                    \
	"latency_ms_estimate, registered_at, updated_at"
#define EV_COLS "id, ts, device_id, kind, from_state, to_state, cause, detail"
#define PART_COLS                                                              \
	"version, model, method, ratio, copies, replica_mode, json, "          \
	"created_at, state"
#define PART_COLS_NO_JSON                                                      \
	"version, model, method, ratio, copies, replica_mode, NULL, "          \
	"created_at, state"

static const char *const stmt_sql[] = {
	[STORE_ST_BEGIN] = "BEGIN IMMEDIATE",
	[STORE_ST_COMMIT] = "COMMIT",
	[STORE_ST_ROLLBACK] = "ROLLBACK",
	[STORE_ST_DEV_EXISTS] = "SELECT 1 FROM devices WHERE id = ?1",
	[STORE_ST_DEV_UPSERT] =
		"INSERT INTO devices (" DEV_COLS ")"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)"
		" ON CONFLICT (id) DO UPDATE SET url = excluded.url,"
		" state = excluded.state, last_seen = excluded.last_seen,"
		" consecutive_failures = excluded.consecutive_failures,"
		" latency_ms_estimate = excluded.latency_ms_estimate,"
		" updated_at = excluded.updated_at",
	[STORE_ST_DEV_GET] = "SELECT " DEV_COLS " FROM devices WHERE id = ?1",
	[STORE_ST_DEV_LIST] = "SELECT " DEV_COLS " FROM devices ORDER BY id",
	[STORE_ST_DEV_DELETE] = "DELETE FROM devices WHERE id = ?1",
	[STORE_ST_DEV_HEALTH] =
		"UPDATE devices SET state = ?2, last_seen = ?3,"
		" consecutive_failures = ?4, latency_ms_estimate = ?5,"
		" updated_at = ?6 WHERE id = ?1",
	[STORE_ST_EV_INSERT] =
		"INSERT INTO events (ts, device_id, kind, from_state, to_state,"
		" cause, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	[STORE_ST_EV_ASC] =
		"SELECT " EV_COLS " FROM events"
		" WHERE id > ?1 AND ts >= ?2 ORDER BY id LIMIT ?3",
	[STORE_ST_EV_ASC_DEV] =
		"SELECT " EV_COLS " FROM events WHERE device_id = ?4"
		" AND id > ?1 AND ts >= ?2 ORDER BY id LIMIT ?3",
	[STORE_ST_EV_DESC] =
		"SELECT " EV_COLS " FROM events"
		" WHERE id < ?1 AND ts >= ?2 ORDER BY id DESC LIMIT ?3",
	[STORE_ST_EV_DESC_DEV] =
		"SELECT " EV_COLS " FROM events WHERE device_id = ?4"
		" AND id < ?1 AND ts >= ?2 ORDER BY id DESC LIMIT ?3",
	[STORE_ST_EV_PRUNE] = "DELETE FROM events WHERE ts < ?1",
	[STORE_ST_PART_INSERT] =
		"INSERT INTO partitions (" PART_COLS ")"
		" SELECT COALESCE(MAX(version), 0) + 1, ?1, ?2, ?3, ?4, ?5, ?6,"
		" ?7, 'prepared' FROM partitions",
	[STORE_ST_PART_GET] =
		"SELECT " PART_COLS " FROM partitions WHERE version = ?1",
	[STORE_ST_PART_ACTIVE] =
		"SELECT " PART_COLS " FROM partitions"
		" WHERE state = 'active' AND model = ?1",
	[STORE_ST_PART_ACTIVE_ANY] =
		"SELECT " PART_COLS " FROM partitions"
		" WHERE state = 'active'"
		" ORDER BY version DESC LIMIT 1",
	[STORE_ST_PART_RETIRE_OTHERS] =
		"UPDATE partitions SET state = 'retired'"
		" WHERE model = ?1 AND state = 'active' AND version <> ?2",
	[STORE_ST_PART_SET_STATE] =
		"UPDATE partitions SET state = ?2 WHERE version = ?1",
	[STORE_ST_PART_LIST] =
		"SELECT " PART_COLS_NO_JSON " FROM partitions"
		" ORDER BY version DESC",
	[STORE_ST_PART_LIST_MODEL] =
		"SELECT " PART_COLS_NO_JSON " FROM partitions"
		" WHERE model = ?1 ORDER BY version DESC",
	[STORE_ST_SET_GET] = "SELECT value FROM settings WHERE key = ?1",
	[STORE_ST_SET_PUT] =
		"INSERT INTO settings (key, value) VALUES (?1, ?2)"
		" ON CONFLICT (key) DO UPDATE SET value = excluded.value",
	[STORE_ST_SET_DELETE] = "DELETE FROM settings WHERE key = ?1",
};
_Static_assert(sizeof stmt_sql / sizeof stmt_sql[0] == STORE_ST_COUNT,
               "one SQL text per statement id");

/* ---- helpers ------------------------------------------------------------ */

int64_t store_now_ms(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
		return 0;
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static df_err map_rc(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return DF_EUNAVAIL;
	case SQLITE_NOMEM:
		return DF_ENOMEM;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return DF_ECORRUPT;
	case SQLITE_CONSTRAINT:
		return DF_ECONFLICT;
	case SQLITE_TOOBIG:
		return DF_ETOOBIG;
	case SQLITE_IOERR:
	case SQLITE_FULL:
	case SQLITE_CANTOPEN:
	case SQLITE_READONLY:
	case SQLITE_PERM:
		return DF_EIO;
	default:
		return DF_EINTERNAL;
	}
}

/* Records a failed SQLite call; call before anything else touches db. */
df_err store_sql_fail(const store *s, int rc, const char *what)
{
	return df_errf(map_rc(rc), "store: %s: %s", what,
		       s && s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
}

void store_st_reset(sqlite3_stmt *st)
{
	/* sqlite3_reset() returns the error of the last step again, which
	 * the caller has already handled; clear_bindings cannot fail. */
	(void)sqlite3_reset(st);
	(void)sqlite3_clear_bindings(st);
}

/*
 * Binds ?1, ?2, ... in order: 't' const char * (NULL binds NULL), 'i'
 * int64_t, 'd' double. Texts are SQLITE_STATIC: they must live until the
 * statement is reset, which every caller does before returning.
 */
int store_bind_v(sqlite3_stmt *st, const char *types, va_list ap)
{
	int rc = SQLITE_OK;
	if ((int)strlen(types) != sqlite3_bind_parameter_count(st))
		return SQLITE_MISUSE; /* a bug here: caught by every test */
	for (int i = 0; types[i] && rc == SQLITE_OK; i++) {
		switch (types[i]) {
		case 't': {
			const char *v = va_arg(ap, const char *);
			rc = v ? sqlite3_bind_text(st, i + 1, v, -1, SQLITE_STATIC)
			       : sqlite3_bind_null(st, i + 1);
			break;
		}
		case 'i':
			rc = sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
			break;
		case 'd':
			rc = sqlite3_bind_double(st, i + 1, va_arg(ap, double));
			break;
		default:
			rc = SQLITE_MISUSE;
		}
	}
	return rc;
}

/* Binds and runs statement id to completion (no rows expected), then
 * resets it. *changes (may be NULL) receives sqlite3_changes(). */
df_err store_exec_st(store *s, int id, const char *what, int *changes,
                     const char *types, ...)
{
	sqlite3_stmt *st = s->st[id];
	va_list ap;
	va_start(ap, types);
	int rc = store_bind_v(st, types, ap);
	va_end(ap);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_DONE)
			rc = SQLITE_OK;
		else if (rc == SQLITE_ROW)
			rc = SQLITE_MISUSE;
	}
	df_err err = rc == SQLITE_OK ? DF_OK : store_sql_fail(s, rc, what);
	if (!err && changes)
		*changes = sqlite3_changes(s->db);
	store_st_reset(st);
	return err;
}

/* Binds statement id and steps once. On DF_OK, *row says whether a row is
 * ready to be read; the caller reads it and calls store_st_reset(). On error
 * the statement is already reset. */
df_err store_query_st(store *s, int id, const char *what, bool *row,
                      const char *types, ...)
{
	sqlite3_stmt *st = s->st[id];
	va_list ap;
	va_start(ap, types);
	int rc = store_bind_v(st, types, ap);
	va_end(ap);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
		*row = rc == SQLITE_ROW;
		return DF_OK;
	}
	df_err err = store_sql_fail(s, rc, what);
	store_st_reset(st);
	return err;
}

/* Steps a statement that store_query_st() started: *row as above. */
df_err store_next_row(store *s, int id, const char *what, bool *row)
{
	int rc = sqlite3_step(s->st[id]);
	if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
		*row = rc == SQLITE_ROW;
		return DF_OK;
	}
	df_err err = store_sql_fail(s, rc, what);
	store_st_reset(s->st[id]);
	return err;
}

df_err store_tx_begin(store *s)
{
	return store_exec_st(s, STORE_ST_BEGIN, "begin transaction", NULL, "");
}

void store_tx_rollback(store *s)
{
	/* Some errors (SQLITE_FULL, IOERR, ...) roll back by themselves. */
	if (sqlite3_get_autocommit(s->db))
		return;
	int rc = sqlite3_step(s->st[STORE_ST_ROLLBACK]);
	if (rc != SQLITE_DONE)
		log_warn("store: rollback failed: %s", sqlite3_errmsg(s->db));
	store_st_reset(s->st[STORE_ST_ROLLBACK]);
}

df_err store_tx_commit(store *s)
{
	df_err err = store_exec_st(s, STORE_ST_COMMIT, "commit", NULL, "");
	if (err)
		store_tx_rollback(s);
	return err;
}

/* Checks an input string: present (unless optional), non-empty when
 * present and required, shorter than max bytes. */
df_err store_check_text(const char *v, const char *field, size_t max,
                        bool required)
{
	if (!v)
		return required ? df_errf(DF_EINVAL, "store: %s is missing", field)
				: DF_OK;
	size_t n = strnlen(v, max);
	if (required && n == 0)
		return df_errf(DF_EINVAL, "store: %s is empty", field);
	if (n >= max)
		return df_errf(DF_EINVAL, "store: %s is %zu bytes or longer (limit %zu)",
			       field, max, max - 1);
	return DF_OK;
}

/* Reads text column col: *out is a new string, or NULL for SQL NULL. */
df_err store_col_dup(sqlite3_stmt *st, int col, const char *field, char **out)
{
	if (sqlite3_column_type(st, col) == SQLITE_NULL) {
		*out = NULL;
		return DF_OK;
	}
	const unsigned char *v = sqlite3_column_text(st, col);
	if (!v)
		return df_errf(DF_ENOMEM, "store: reading %s", field);
	size_t n = (size_t)sqlite3_column_bytes(st, col);
	if (memchr(v, 0, n))
		return df_errf(DF_ECORRUPT, "store: stored %s contains a NUL byte",
			       field);
	char *c = malloc(n + 1);
	if (!c)
		return df_errf(DF_ENOMEM, "store: reading %s (%zu bytes)", field, n);
	memcpy(c, v, n);
	c[n] = '\0';
	*out = c;
	return DF_OK;
}

/* Grows *arr (of *cap elements of size elem) to hold at least n + 1. */
df_err store_grow(void **arr, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return DF_OK;
	size_t nc = *cap ? *cap * 2 : 16;
	if (nc > SIZE_MAX / elem)
		return df_errf(DF_ENOMEM, "store: result too large");
	void *p = realloc(*arr, nc * elem);
	if (!p)
		return df_errf(DF_ENOMEM, "store: cannot grow result to %zu rows",
			       nc);
	*arr = p;
	*cap = nc;
	return DF_OK;
}

/* ---- open / close --------------------------------------------------------- */

int store_schema_version(void)
{
	return SCHEMA_VERSION;
}

/* Runs one statement during open and reads column 0 of its first row (if
 * any) as text into buf. Maps "not a database" to a clear message. */
static df_err open_query(store *s, const char *path, const char *sql,
			 char *buf, size_t cap)
{
	sqlite3_stmt *st = NULL;
	df_err err = DF_OK;
	int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			const unsigned char *v = sqlite3_column_text(st, 0);
			snprintf(buf, cap, "%s", v ? (const char *)v : "");
			rc = SQLITE_OK;
		} else if (rc == SQLITE_DONE) {
			if (cap)
				buf[0] = '\0';
			rc = SQLITE_OK;
		}
	}
	if (rc != SQLITE_OK) {
		if ((rc & 0xff) == SQLITE_NOTADB)
			err = df_errf(DF_ECORRUPT, "store: %s is not a SQLite database (%s)",
				      path, sqlite3_errmsg(s->db));
		else
			err = df_errf(map_rc(rc), "store: %s: %s: %s", path, sql,
				      sqlite3_errmsg(s->db));
	}
	sqlite3_finalize(st);
	return err;
}

static df_err open_exec(store *s, const char *path, const char *sql)
{
	char ignored[8];
	return open_query(s, path, sql, ignored, sizeof ignored);
}

/* Brings the schema to SCHEMA_VERSION in one write transaction. Reading
 * user_version inside the transaction makes concurrent first opens safe. */
static df_err migrate(store *s, const char *path)
{
	char buf[32];
	df_err err = open_exec(s, path, "BEGIN IMMEDIATE");
	if (err)
		return err;
	err = open_query(s, path, "PRAGMA user_version", buf, sizeof buf);
	if (err)
		goto out;
	long v = strtol(buf, NULL, 10);
	if (v < 0 || v > SCHEMA_VERSION) {
		err = df_errf(DF_ENOTSUP,
			      "store: %s has schema version %ld but this build knows versions up to %d; "
			      "refusing to open it (was it written by a newer dicefleet?)",
			      path, v, SCHEMA_VERSION);
		goto out;
	}
	for (int i = (int)v; i < SCHEMA_VERSION; i++) {
		char *msg = NULL;
		int rc = sqlite3_exec(s->db, migrations[i], NULL, NULL, &msg);
		if (rc != SQLITE_OK) {
			err = df_errf(map_rc(rc), "store: %s: migration to schema v%d failed: %s",
				      path, i + 1, msg ? msg : sqlite3_errstr(rc));
			sqlite3_free(msg);
			goto out;
		}
	}
	if (v < SCHEMA_VERSION) {
		char sql[64];
		/* PRAGMA takes no parameters; this is our own integer. */
		snprintf(sql, sizeof sql, "PRAGMA user_version = %d", SCHEMA_VERSION);
		err = open_exec(s, path, sql);
		if (err)
			goto out;
	}
	err = open_exec(s, path, "COMMIT");
	if (!err && v < SCHEMA_VERSION)
		log_info("store: %s: schema migrated from v%ld to v%d", path, v,
			 SCHEMA_VERSION);
out:
	if (err && !sqlite3_get_autocommit(s->db)) {
		char *msg = NULL;
		if (sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, &msg) != SQLITE_OK)
			log_warn("store: %s: rollback of migration failed: %s", path,
				 msg ? msg : "?");
		sqlite3_free(msg);
	}
	return err;
}

/*
 * Switches to WAL. Changing the journal mode needs an exclusive lock and
 * SQLite reports SQLITE_BUSY for it without calling the busy handler, so
 * when several connections open a fresh file at once we retry here, for
 * as long as the busy timeout allows.
 */
static df_err enable_wal(store *s, const char *path, int timeout_ms)
{
	char mode[32];
	struct timespec pause = {0, 5 * 1000 * 1000};
	df_err err;
	for (int waited = 0;; waited += 5) {
		err = open_query(s, path, "PRAGMA journal_mode = WAL", mode,
				 sizeof mode);
		if (err != DF_EUNAVAIL || waited >= timeout_ms)
			break;
		nanosleep(&pause, NULL);
	}
	if (err)
		return err;
	if (strcmp(mode, "wal") != 0 && strcmp(mode, "memory") != 0)
		return df_errf(DF_EIO, "store: %s: cannot use WAL (journal_mode is '%s')",
			       path, mode);
	return DF_OK;
}

df_err store_open(const char *path, store **out)
{
	return store_open_opts(path, NULL, out);
}

df_err store_open_opts(const char *path, const store_options *opts,
		       store **out)
{
	int timeout = opts ? opts->busy_timeout_ms : STORE_DEFAULT_BUSY_TIMEOUT_MS;
	char buf[32];
	df_err err = DF_OK;

	if (!path || !*path)
		return df_errf(DF_EINVAL, "store: database path is empty");
	if (timeout < 0)
		return df_errf(DF_EINVAL, "store: busy_timeout_ms %d is negative",
			       timeout);
	store *s = calloc(1, sizeof *s);
	if (!s)
		return df_errf(DF_ENOMEM, "store: out of memory");
	if (pthread_mutex_init(&s->mu, NULL) != 0) {
		free(s);
		return df_errf(DF_EINTERNAL, "store: cannot create mutex");
	}
	/* Our mutex serializes use of the connection (NOMUTEX). */
	int rc = sqlite3_open_v2(path, &s->db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
					 SQLITE_OPEN_NOMUTEX,
				 NULL);
	if (rc != SQLITE_OK) {
		err = df_errf(map_rc(rc), "store: cannot open %s: %s", path,
			      s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
		goto out;
	}
	rc = sqlite3_busy_timeout(s->db, timeout);
	if (rc != SQLITE_OK) {
		err = store_sql_fail(s, rc, "busy_timeout");
		goto out;
	}
	rc = sqlite3_extended_result_codes(s->db, 1);
	if (rc != SQLITE_OK) {
		err = store_sql_fail(s, rc, "extended_result_codes");
		goto out;
	}
	err = enable_wal(s, path, timeout);
	if (err)
		goto out;
	err = open_exec(s, path, "PRAGMA synchronous = NORMAL");
	if (err)
		goto out;
	err = open_exec(s, path, "PRAGMA foreign_keys = ON");
	if (err)
		goto out;
	err = open_query(s, path, "PRAGMA foreign_keys", buf, sizeof buf);
	if (err)
		goto out;
	if (strcmp(buf, "1") != 0) {
		err = df_errf(DF_EINTERNAL, "store: %s: foreign keys cannot be enabled",
			      path);
		goto out;
	}
	err = migrate(s, path);
	if (err)
		goto out;
	for (int i = 0; i < STORE_ST_COUNT; i++) {
		rc = sqlite3_prepare_v3(s->db, stmt_sql[i], -1,
					SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL);
		if (rc != SQLITE_OK) {
			err = df_errf(DF_EINTERNAL, "store: %s: cannot prepare statement %d: %s",
				      path, i, sqlite3_errmsg(s->db));
			goto out;
		}
	}
	*out = s;
	s = NULL;
out:
	store_close(s);
	return err;
}

void store_close(store *s)
{
	if (!s)
		return;
	for (int i = 0; i < STORE_ST_COUNT; i++)
		sqlite3_finalize(s->st[i]); /* returns the last step's error */
	if (s->db) {
		int rc = sqlite3_close(s->db);
		if (rc != SQLITE_OK)
			log_warn("store: close failed: %s", sqlite3_errstr(rc));
	}
	pthread_mutex_destroy(&s->mu);
	free(s);
}

/* ---- settings ------------------------------------------------------------- */

df_err store_setting_get(store *s, const char *key, char **value)
{
	df_err err = store_check_text(key, "setting key", STORE_NAME_MAX, true);
	if (err)
		return err;
	char *v = NULL;
	bool row = false;
	store_lock(s);
	err =
	    store_query_st(s, STORE_ST_SET_GET, "read setting", &row, "t", key);
	if (err)
		goto out;
	if (row)
		err = store_col_dup(s->st[STORE_ST_SET_GET], 0, "setting value",
		                    &v);
	if (!err && !v)
		err = df_errf(DF_ENOENT, "store: setting '%s' is not set", key);
	store_st_reset(s->st[STORE_ST_SET_GET]);
out:
	store_unlock(s);
	if (!err)
		*value = v;
	return err;
}

df_err store_setting_set(store *s, const char *key, const char *value)
{
	df_err err = store_check_text(key, "setting key", STORE_NAME_MAX, true);
	if (!err)
		err = store_check_text(value, "setting value", STORE_TEXT_MAX,
		                       false);
	if (!err && !value)
		err = df_errf(DF_EINVAL, "store: setting '%s' has no value", key);
	if (err)
		return err;
	store_lock(s);
	err = store_exec_st(s, STORE_ST_SET_PUT, "write setting", NULL, "tt",
	                    key, value);
	store_unlock(s);
	return err;
}

df_err store_setting_delete(store *s, const char *key)
{
	df_err err = store_check_text(key, "setting key", STORE_NAME_MAX, true);
	if (err)
		return err;
	int changes = 0;
	store_lock(s);
	err = store_exec_st(s, STORE_ST_SET_DELETE, "delete setting", &changes,
	                    "t", key);
	store_unlock(s);
	if (!err && changes == 0)
		err = df_errf(DF_ENOENT, "store: setting '%s' is not set", key);
	return err;
}
