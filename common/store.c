/*
 * store.c - the gateway's SQLite database behind a mutex.
 *
 * Invariants:
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

enum {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_DEV_EXISTS,
	ST_DEV_UPSERT,
	ST_DEV_GET,
	ST_DEV_LIST,
	ST_DEV_DELETE,
	ST_DEV_HEALTH,
	ST_EV_INSERT,
	ST_EV_ASC,
	ST_EV_ASC_DEV,
	ST_EV_DESC,
	ST_EV_DESC_DEV,
	ST_EV_PRUNE,
	ST_PART_INSERT,
	ST_PART_GET,
	ST_PART_ACTIVE,
	ST_PART_ACTIVE_ANY,
	ST_PART_RETIRE_OTHERS,
	ST_PART_SET_STATE,
	ST_PART_LIST,
	ST_PART_LIST_MODEL,
	ST_SET_GET,
	ST_SET_PUT,
	ST_SET_DELETE,
	ST_COUNT
};

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
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_DEV_EXISTS] = "SELECT 1 FROM devices WHERE id = ?1",
	[ST_DEV_UPSERT] =
		"INSERT INTO devices (" DEV_COLS ")"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)"
		" ON CONFLICT (id) DO UPDATE SET url = excluded.url,"
		" state = excluded.state, last_seen = excluded.last_seen,"
		" consecutive_failures = excluded.consecutive_failures,"
		" latency_ms_estimate = excluded.latency_ms_estimate,"
		" updated_at = excluded.updated_at",
	[ST_DEV_GET] = "SELECT " DEV_COLS " FROM devices WHERE id = ?1",
	[ST_DEV_LIST] = "SELECT " DEV_COLS " FROM devices ORDER BY id",
	[ST_DEV_DELETE] = "DELETE FROM devices WHERE id = ?1",
	[ST_DEV_HEALTH] =
		"UPDATE devices SET state = ?2, last_seen = ?3,"
		" consecutive_failures = ?4, latency_ms_estimate = ?5,"
		" updated_at = ?6 WHERE id = ?1",
	[ST_EV_INSERT] =
		"INSERT INTO events (ts, device_id, kind, from_state, to_state,"
		" cause, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	[ST_EV_ASC] = "SELECT " EV_COLS " FROM events"
		      " WHERE id > ?1 AND ts >= ?2 ORDER BY id LIMIT ?3",
	[ST_EV_ASC_DEV] = "SELECT " EV_COLS " FROM events WHERE device_id = ?4"
			  " AND id > ?1 AND ts >= ?2 ORDER BY id LIMIT ?3",
	[ST_EV_DESC] = "SELECT " EV_COLS " FROM events"
		       " WHERE id < ?1 AND ts >= ?2 ORDER BY id DESC LIMIT ?3",
	[ST_EV_DESC_DEV] = "SELECT " EV_COLS " FROM events WHERE device_id = ?4"
			   " AND id < ?1 AND ts >= ?2 ORDER BY id DESC LIMIT ?3",
	[ST_EV_PRUNE] = "DELETE FROM events WHERE ts < ?1",
	[ST_PART_INSERT] =
		"INSERT INTO partitions (" PART_COLS ")"
		" SELECT COALESCE(MAX(version), 0) + 1, ?1, ?2, ?3, ?4, ?5, ?6,"
		" ?7, 'prepared' FROM partitions",
	[ST_PART_GET] = "SELECT " PART_COLS " FROM partitions WHERE version = ?1",
	[ST_PART_ACTIVE] = "SELECT " PART_COLS " FROM partitions"
			   " WHERE state = 'active' AND model = ?1",
	[ST_PART_ACTIVE_ANY] = "SELECT " PART_COLS " FROM partitions"
			       " WHERE state = 'active'"
			       " ORDER BY version DESC LIMIT 1",
	[ST_PART_RETIRE_OTHERS] =
		"UPDATE partitions SET state = 'retired'"
		" WHERE model = ?1 AND state = 'active' AND version <> ?2",
	[ST_PART_SET_STATE] = "UPDATE partitions SET state = ?2 WHERE version = ?1",
	[ST_PART_LIST] = "SELECT " PART_COLS_NO_JSON " FROM partitions"
			 " ORDER BY version DESC",
	[ST_PART_LIST_MODEL] = "SELECT " PART_COLS_NO_JSON " FROM partitions"
			       " WHERE model = ?1 ORDER BY version DESC",
	[ST_SET_GET] = "SELECT value FROM settings WHERE key = ?1",
	[ST_SET_PUT] = "INSERT INTO settings (key, value) VALUES (?1, ?2)"
		       " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
	[ST_SET_DELETE] = "DELETE FROM settings WHERE key = ?1",
};
_Static_assert(sizeof stmt_sql / sizeof stmt_sql[0] == ST_COUNT,
	       "one SQL text per statement id");

static const char *const partition_state_names[] = {"prepared", "active",
						    "retired"};
_Static_assert(sizeof partition_state_names /
			       sizeof partition_state_names[0] ==
		       STORE_PARTITION_STATE_COUNT,
	       "one name per partition state");

struct store {
	sqlite3 *db;
	pthread_mutex_t mu;
	sqlite3_stmt *st[ST_COUNT];
};

/* ---- helpers ------------------------------------------------------------ */

static int64_t now_ms(void)
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
static df_err sql_fail(const store *s, int rc, const char *what)
{
	return df_errf(map_rc(rc), "store: %s: %s", what,
		       s && s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
}

static void st_reset(sqlite3_stmt *st)
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
static int bind_v(sqlite3_stmt *st, const char *types, va_list ap)
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
static df_err exec_st(store *s, int id, const char *what, int *changes,
		      const char *types, ...)
{
	sqlite3_stmt *st = s->st[id];
	va_list ap;
	va_start(ap, types);
	int rc = bind_v(st, types, ap);
	va_end(ap);
	if (rc == SQLITE_OK) {
		rc = sqlite3_step(st);
		if (rc == SQLITE_DONE)
			rc = SQLITE_OK;
		else if (rc == SQLITE_ROW)
			rc = SQLITE_MISUSE;
	}
	df_err err = rc == SQLITE_OK ? DF_OK : sql_fail(s, rc, what);
	if (!err && changes)
		*changes = sqlite3_changes(s->db);
	st_reset(st);
	return err;
}

/* Binds statement id and steps once. On DF_OK, *row says whether a row is
 * ready to be read; the caller reads it and calls st_reset(). On error the
 * statement is already reset. */
static df_err query_st(store *s, int id, const char *what, bool *row,
		       const char *types, ...)
{
	sqlite3_stmt *st = s->st[id];
	va_list ap;
	va_start(ap, types);
	int rc = bind_v(st, types, ap);
	va_end(ap);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
		*row = rc == SQLITE_ROW;
		return DF_OK;
	}
	df_err err = sql_fail(s, rc, what);
	st_reset(st);
	return err;
}

/* Steps a statement that query_st() started: *row as above. */
static df_err next_row(store *s, int id, const char *what, bool *row)
{
	int rc = sqlite3_step(s->st[id]);
	if (rc == SQLITE_ROW || rc == SQLITE_DONE) {
		*row = rc == SQLITE_ROW;
		return DF_OK;
	}
	df_err err = sql_fail(s, rc, what);
	st_reset(s->st[id]);
	return err;
}

static df_err tx_begin(store *s)
{
	return exec_st(s, ST_BEGIN, "begin transaction", NULL, "");
}

static void tx_rollback(store *s)
{
	/* Some errors (SQLITE_FULL, IOERR, ...) roll back by themselves. */
	if (sqlite3_get_autocommit(s->db))
		return;
	int rc = sqlite3_step(s->st[ST_ROLLBACK]);
	if (rc != SQLITE_DONE)
		log_warn("store: rollback failed: %s", sqlite3_errmsg(s->db));
	st_reset(s->st[ST_ROLLBACK]);
}

static df_err tx_commit(store *s)
{
	df_err err = exec_st(s, ST_COMMIT, "commit", NULL, "");
	if (err)
		tx_rollback(s);
	return err;
}

/* Checks an input string: present (unless optional), non-empty when
 * present and required, shorter than max bytes. */
static df_err check_text(const char *v, const char *field, size_t max,
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
static df_err col_dup(sqlite3_stmt *st, int col, const char *field,
		      char **out)
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

/* Grows *arr (of *cap elements of size elem) to hold at least n + 1. */
static df_err grow(void **arr, size_t *cap, size_t n, size_t elem)
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

static void lock(store *s)
{
	pthread_mutex_lock(&s->mu);
}

static void unlock(store *s)
{
	pthread_mutex_unlock(&s->mu);
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
		err = sql_fail(s, rc, "busy_timeout");
		goto out;
	}
	rc = sqlite3_extended_result_codes(s->db, 1);
	if (rc != SQLITE_OK) {
		err = sql_fail(s, rc, "extended_result_codes");
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
	for (int i = 0; i < ST_COUNT; i++) {
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
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(s->st[i]); /* returns the last step's error */
	if (s->db) {
		int rc = sqlite3_close(s->db);
		if (rc != SQLITE_OK)
			log_warn("store: close failed: %s", sqlite3_errstr(rc));
	}
	pthread_mutex_destroy(&s->mu);
	free(s);
}

/* ---- devices ------------------------------------------------------------ */

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
	df_err err = check_text(state, "device state", STORE_STATE_MAX, true);
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
	df_err err = check_text(d->id, "device id", STORE_ID_MAX, true);
	if (!err)
		err = check_text(d->url, "device url", STORE_URL_MAX, true);
	if (!err)
		err = check_health(d->state, d->last_seen_ms,
				   d->consecutive_failures, d->latency_ms_estimate);
	if (err)
		return err;

	bool exists = false, in_tx = false;
	lock(s);
	err = tx_begin(s);
	if (err)
		goto out;
	in_tx = true;
	err = query_st(s, ST_DEV_EXISTS, "look up device", &exists, "t", d->id);
	if (err)
		goto out;
	st_reset(s->st[ST_DEV_EXISTS]);
	err = exec_st(s, ST_DEV_UPSERT, "write device", NULL, "tttiidi", d->id,
		      d->url, d->state, (int64_t)d->last_seen_ms,
		      (int64_t)d->consecutive_failures,
		      (double)d->latency_ms_estimate, now_ms());
	if (err)
		goto out;
	in_tx = false;
	err = tx_commit(s);
out:
	if (in_tx)
		tx_rollback(s);
	unlock(s);
	if (!err && created)
		*created = !exists;
	return err;
}

df_err store_device_get(store *s, const char *id, store_device *out)
{
	df_err err = check_text(id, "device id", STORE_ID_MAX, true);
	if (err)
		return err;
	store_device d;
	bool row = false;
	lock(s);
	err = query_st(s, ST_DEV_GET, "read device", &row, "t", id);
	if (err)
		goto out;
	if (row)
		err = read_device(s->st[ST_DEV_GET], &d);
	else
		err = df_errf(DF_ENOENT, "store: no device '%s'", id);
	st_reset(s->st[ST_DEV_GET]);
out:
	unlock(s);
	if (!err)
		*out = d;
	return err;
}

df_err store_device_list(store *s, store_device **out, size_t *n)
{
	store_device *arr = NULL;
	size_t cnt = 0, cap = 0;
	bool row = false;
	lock(s);
	df_err err = query_st(s, ST_DEV_LIST, "list devices", &row, "");
	while (!err && row) {
		err = grow((void **)&arr, &cap, cnt, sizeof *arr);
		if (!err)
			err = read_device(s->st[ST_DEV_LIST], &arr[cnt]);
		if (err) {
			st_reset(s->st[ST_DEV_LIST]);
			break;
		}
		cnt++;
		err = next_row(s, ST_DEV_LIST, "list devices", &row);
	}
	if (!err)
		st_reset(s->st[ST_DEV_LIST]);
	unlock(s);
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
	df_err err = check_text(id, "device id", STORE_ID_MAX, true);
	if (err)
		return err;
	int changes = 0;
	lock(s);
	err = exec_st(s, ST_DEV_DELETE, "delete device", &changes, "t", id);
	unlock(s);
	if (!err && changes == 0)
		err = df_errf(DF_ENOENT, "store: no device '%s'", id);
	return err;
}

static df_err check_event(const store_event *ev)
{
	if (!ev)
		return df_errf(DF_EINVAL, "store: no event");
	df_err err = check_text(ev->kind, "event kind", STORE_NAME_MAX, true);
	if (!err)
		err = check_text(ev->device_id, "event device_id", STORE_ID_MAX,
				 false);
	if (!err)
		err = check_text(ev->from_state, "event from_state",
				 STORE_STATE_MAX, false);
	if (!err)
		err = check_text(ev->to_state, "event to_state", STORE_STATE_MAX,
				 false);
	if (!err)
		err = check_text(ev->cause, "event cause", STORE_TEXT_MAX, false);
	if (!err)
		err = check_text(ev->detail, "event detail", STORE_TEXT_MAX, false);
	if (!err && ev->ts_ms < 0)
		err = df_errf(DF_EINVAL, "store: event ts %lld is negative",
			      (long long)ev->ts_ms);
	return err;
}

/* Inserts ev; the caller holds the lock. */
static df_err insert_event(store *s, const store_event *ev, int64_t *id)
{
	df_err err = exec_st(s, ST_EV_INSERT, "append event", NULL, "itttttt",
			     ev->ts_ms ? (int64_t)ev->ts_ms : now_ms(),
			     ev->device_id, ev->kind, ev->from_state,
			     ev->to_state, ev->cause, ev->detail);
	if (!err)
		*id = sqlite3_last_insert_rowid(s->db);
	return err;
}

df_err store_device_set_health(store *s, const char *id, const store_health *h,
			       const store_event *ev, int64_t *event_id)
{
	df_err err = check_text(id, "device id", STORE_ID_MAX, true);
	if (!err && !h)
		err = df_errf(DF_EINVAL, "store: no health fields");
	if (!err)
		err = check_health(h->state, h->last_seen_ms,
				   h->consecutive_failures, h->latency_ms_estimate);
	if (!err && ev)
		err = check_event(ev);
	if (err)
		return err;

	int changes = 0;
	int64_t eid = 0;
	bool in_tx = false;
	lock(s);
	if (ev) {
		err = tx_begin(s);
		if (err)
			goto out;
		in_tx = true;
	}
	err = exec_st(s, ST_DEV_HEALTH, "write device health", &changes, "ttiidi",
		      id, h->state, (int64_t)h->last_seen_ms,
		      (int64_t)h->consecutive_failures,
		      (double)h->latency_ms_estimate, now_ms());
	if (err)
		goto out;
	if (changes == 0) {
		err = df_errf(DF_ENOENT, "store: no device '%s'", id);
		goto out;
	}
	if (ev) {
		err = insert_event(s, ev, &eid);
		if (err)
			goto out;
		in_tx = false;
		err = tx_commit(s);
	}
out:
	if (in_tx)
		tx_rollback(s);
	unlock(s);
	if (!err && event_id)
		*event_id = eid;
	return err;
}

/* ---- events --------------------------------------------------------------- */

df_err store_event_append(store *s, const store_event *ev, int64_t *id)
{
	df_err err = check_event(ev);
	if (err)
		return err;
	int64_t eid = 0;
	lock(s);
	err = insert_event(s, ev, &eid);
	unlock(s);
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
	df_err err = col_dup(st, 2, "event device_id", &e->device_id);
	if (!err)
		err = col_dup(st, 3, "event kind", &e->kind);
	if (!err && !e->kind)
		err = df_errf(DF_ECORRUPT, "store: event %lld has no kind",
			      (long long)e->id);
	if (!err)
		err = col_dup(st, 4, "event from_state", &e->from_state);
	if (!err)
		err = col_dup(st, 5, "event to_state", &e->to_state);
	if (!err)
		err = col_dup(st, 6, "event cause", &e->cause);
	if (!err)
		err = col_dup(st, 7, "event detail", &e->detail);
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
	df_err err = check_text(q->device_id, "event device_id", STORE_ID_MAX,
				false);
	if (err)
		return err;

	int id;
	int64_t cursor = q->cursor;
	if (q->newest_first) {
		id = q->device_id ? ST_EV_DESC_DEV : ST_EV_DESC;
		if (cursor == 0)
			cursor = INT64_MAX;
	} else {
		id = q->device_id ? ST_EV_ASC_DEV : ST_EV_ASC;
	}
	store_event *arr = NULL;
	size_t cnt = 0, cap = 0;
	bool row = false;
	lock(s);
	if (q->device_id)
		err = query_st(s, id, "list events", &row, "iiit", cursor,
			       (int64_t)q->since_ms, (int64_t)limit, q->device_id);
	else
		err = query_st(s, id, "list events", &row, "iii", cursor,
			       (int64_t)q->since_ms, (int64_t)limit);
	while (!err && row) {
		err = grow((void **)&arr, &cap, cnt, sizeof *arr);
		if (!err)
			err = read_event(s->st[id], &arr[cnt]);
		if (err) {
			st_reset(s->st[id]);
			break;
		}
		cnt++;
		err = next_row(s, id, "list events", &row);
	}
	if (!err)
		st_reset(s->st[id]);
	unlock(s);
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
	lock(s);
	df_err err = exec_st(s, ST_EV_PRUNE, "prune events", &changes, "i",
			     (int64_t)before_ms);
	unlock(s);
	if (!err && deleted)
		*deleted = changes;
	return err;
}

/* ---- partitions ------------------------------------------------------------ */

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
	df_err err = col_dup(st, 1, "partition model", &p->model);
	if (!err)
		err = col_dup(st, 2, "partition method", &p->method);
	if (!err)
		err = col_dup(st, 5, "partition replica_mode", &p->replica_mode);
	if (!err)
		err = col_dup(st, 6, "partition json", &p->json);
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
	df_err err = check_text(p->model, "partition model", STORE_NAME_MAX, true);
	if (!err)
		err = check_text(p->method, "partition method", STORE_NAME_MAX, true);
	if (!err)
		err = check_text(p->replica_mode, "partition replica_mode",
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
	lock(s);
	/* One statement computes max + 1 and inserts it: atomic. */
	err = exec_st(s, ST_PART_INSERT, "insert partition", NULL, "ttditti",
		      p->model, p->method, (double)p->ratio,
		      (int64_t)p->copies, p->replica_mode, p->json, now_ms());
	if (!err)
		v = sqlite3_last_insert_rowid(s->db);
	unlock(s);
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
	int rc = bind_v(st, types, ap);
	va_end(ap);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	df_err err = DF_OK;
	if (rc == SQLITE_ROW || rc == SQLITE_DONE)
		row = rc == SQLITE_ROW;
	else
		err = sql_fail(s, rc, "read partition");
	if (!err && row)
		err = read_partition(st, &p);
	else if (!err)
		err = df_errf(DF_ENOENT, "store: %s", missing);
	st_reset(st);
	if (!err)
		*out = p;
	return err;
}

df_err store_partition_get(store *s, int64_t version, store_partition *out)
{
	char missing[64];
	snprintf(missing, sizeof missing, "no partition version %lld",
		 (long long)version);
	lock(s);
	df_err err = get_partition(s, ST_PART_GET, out, missing, "i",
				   (int64_t)version);
	unlock(s);
	return err;
}

df_err store_partition_get_active(store *s, const char *model,
				  store_partition *out)
{
	df_err err = check_text(model, "partition model", STORE_NAME_MAX, false);
	if (err)
		return err;
	lock(s);
	if (model)
		err = get_partition(s, ST_PART_ACTIVE, out,
				    "no active partition for this model", "t",
				    model);
	else
		err = get_partition(s, ST_PART_ACTIVE_ANY, out,
				    "no active partition", "");
	unlock(s);
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
	lock(s);
	df_err err = tx_begin(s);
	if (err)
		goto out;
	in_tx = true;
	err = get_partition(s, ST_PART_GET, &cur, missing, "i", (int64_t)version);
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
		err = exec_st(s, ST_PART_RETIRE_OTHERS, "retire active partition",
			      NULL, "ti", cur.model, (int64_t)version);
		if (err)
			goto out;
	}
	err = exec_st(s, ST_PART_SET_STATE, "set partition state", NULL, "it",
		      (int64_t)version, partition_state_names[to]);
	if (err)
		goto out;
commit:
	in_tx = false;
	err = tx_commit(s);
out:
	if (in_tx)
		tx_rollback(s);
	unlock(s);
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
	df_err err = check_text(model, "partition model", STORE_NAME_MAX, false);
	if (err)
		return err;
	int id = model ? ST_PART_LIST_MODEL : ST_PART_LIST;
	store_partition *arr = NULL;
	size_t cnt = 0, cap = 0;
	bool row = false;
	lock(s);
	if (model)
		err = query_st(s, id, "list partitions", &row, "t", model);
	else
		err = query_st(s, id, "list partitions", &row, "");
	while (!err && row) {
		err = grow((void **)&arr, &cap, cnt, sizeof *arr);
		if (!err)
			err = read_partition(s->st[id], &arr[cnt]);
		if (err) {
			st_reset(s->st[id]);
			break;
		}
		cnt++;
		err = next_row(s, id, "list partitions", &row);
	}
	if (!err)
		st_reset(s->st[id]);
	unlock(s);
	if (err) {
		store_partitions_free(arr, cnt);
		return err;
	}
	*out = arr;
	*n = cnt;
	return DF_OK;
}

/* ---- settings ------------------------------------------------------------- */

df_err store_setting_get(store *s, const char *key, char **value)
{
	df_err err = check_text(key, "setting key", STORE_NAME_MAX, true);
	if (err)
		return err;
	char *v = NULL;
	bool row = false;
	lock(s);
	err = query_st(s, ST_SET_GET, "read setting", &row, "t", key);
	if (err)
		goto out;
	if (row)
		err = col_dup(s->st[ST_SET_GET], 0, "setting value", &v);
	if (!err && !v)
		err = df_errf(DF_ENOENT, "store: setting '%s' is not set", key);
	st_reset(s->st[ST_SET_GET]);
out:
	unlock(s);
	if (!err)
		*value = v;
	return err;
}

df_err store_setting_set(store *s, const char *key, const char *value)
{
	df_err err = check_text(key, "setting key", STORE_NAME_MAX, true);
	if (!err)
		err = check_text(value, "setting value", STORE_TEXT_MAX, false);
	if (!err && !value)
		err = df_errf(DF_EINVAL, "store: setting '%s' has no value", key);
	if (err)
		return err;
	lock(s);
	err = exec_st(s, ST_SET_PUT, "write setting", NULL, "tt", key, value);
	unlock(s);
	return err;
}

df_err store_setting_delete(store *s, const char *key)
{
	df_err err = check_text(key, "setting key", STORE_NAME_MAX, true);
	if (err)
		return err;
	int changes = 0;
	lock(s);
	err = exec_st(s, ST_SET_DELETE, "delete setting", &changes, "t", key);
	unlock(s);
	if (!err && changes == 0)
		err = df_errf(DF_ENOENT, "store: setting '%s' is not set", key);
	return err;
}
