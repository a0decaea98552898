/*
 * store.h - the gateway's SQLite database: devices and their health, an
 * event log, versioned partition maps, and settings.
 *
 * Threads: a store is one SQLite connection behind a mutex held by every
 * call, so any thread may use a shared store and calls are serialized
 * (none of them is slow: single rows or one page). store_close() must not
 * race with other calls. Several stores - other threads, the CLI next to
 * a running gateway, another process - may open the same file: WAL mode
 * lets readers run beside the writer; writers queue for up to
 * busy_timeout_ms (every write transaction is BEGIN IMMEDIATE, so a
 * waiting writer never deadlocks), after which the call fails with
 * DF_EUNAVAIL.
 *
 * Durability: journal_mode=WAL, synchronous=NORMAL: a committed change
 * survives a crash of the process; a power cut may lose the last few
 * commits but never corrupts the file. foreign_keys is on.
 *
 * Schema: versioned with PRAGMA user_version. store_open() applies the
 * missing migrations in one transaction; it refuses a database written by
 * a newer dicefleet (DF_ENOTSUP) and a file that is not SQLite
 * (DF_ECORRUPT). Strings are always bound as SQL parameters, never pasted
 * into SQL, and come back byte for byte. Times are Unix milliseconds.
 *
 * Errors: DF_EINVAL (bad argument, naming the field), DF_ENOENT (no such
 * row), DF_ECONFLICT (state conflict), DF_EUNAVAIL (database busy),
 * DF_EIO / DF_ECORRUPT / DF_ENOMEM / DF_EINTERNAL from SQLite, with
 * SQLite's message in df_err_msg(). Out-parameters are untouched on
 * failure.
 */
#ifndef DF_STORE_H
#define DF_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct store store;
typedef struct store_event store_event;

#define STORE_DEFAULT_BUSY_TIMEOUT_MS 5000
#define STORE_ID_MAX                  128     /* device id: 1..127 bytes */
#define STORE_URL_MAX                 1024    /* device url: 1..1023 bytes */
#define STORE_STATE_MAX               32      /* device state: 1..31 bytes */
#define STORE_NAME_MAX                256     /* model, method, kind, key: < 256 */
#define STORE_TEXT_MAX                65536   /* cause, detail, setting value */
#define STORE_EVENT_PAGE_DEFAULT      100
#define STORE_EVENT_PAGE_MAX          1000

typedef struct store_options {
	int busy_timeout_ms; /* how long a writer waits for another (>= 0) */
} store_options;

/* Opens (creating if needed) the database at path with default options.
 * *out is new; close with store_close(). */
df_err store_open(const char *path, store **out);

/* Same, with options (NULL = defaults). */
df_err store_open_opts(const char *path, const store_options *opts,
		       store **out);

/* Closes the database. NULL is a no-op. */
void store_close(store *s);

/* The schema version this build creates and understands. */
int store_schema_version(void);

/* ---- devices ------------------------------------------------------------ */

typedef struct store_device {
	char id[STORE_ID_MAX];
	char url[STORE_URL_MAX];        /* e.g. "http://10.0.0.7:9001" */
	char state[STORE_STATE_MAX];    /* "UP", "SUSPECT", "DOWN", ... */
	int64_t last_seen_ms;           /* last successful contact, 0 = never */
	int64_t consecutive_failures;   /* >= 0 */
	double latency_ms_estimate;     /* >= 0 */
	int64_t registered_at_ms;       /* set by the store on first insert */
	int64_t updated_at_ms;          /* set by the store on every write */
} store_device;

/* Health fields written by the health loop and the request path. */
typedef struct store_health {
	const char *state;              /* borrowed, 1..31 bytes */
	int64_t last_seen_ms;
	int64_t consecutive_failures;
	double latency_ms_estimate;
} store_health;

/* Inserts d, or replaces every field of the device with d->id but
 * registered_at. *created (may be NULL) tells which happened. */
df_err store_device_upsert(store *s, const store_device *d, bool *created);

/* Reads the device id into *out; DF_ENOENT if there is none. */
df_err store_device_get(store *s, const char *id, store_device *out);

/* All devices ordered by id. *out is new (free()), NULL when *n is 0. */
df_err store_device_list(store *s, store_device **out, size_t *n);

/* Deletes the device (its events stay); DF_ENOENT if there is none. */
df_err store_device_delete(store *s, const char *id);

/*
 * Writes the health fields of device id and, when ev is non-NULL, appends
 * ev in the same transaction (both or neither). DF_ENOENT if the device
 * does not exist. *event_id (may be NULL) receives the new event's id.
 */
df_err store_device_set_health(store *s, const char *id, const store_health *h,
			       const store_event *ev, int64_t *event_id);

/* ---- events ------------------------------------------------------------- */

/* One event. Strings are borrowed for append; owned in list results
 * (free with store_events_free()). */
struct store_event {
	int64_t id;        /* assigned by the store, ascending, never reused */
	int64_t ts_ms;     /* on append, 0 means now */
	char *device_id;   /* NULL: not about one device */
	char *kind;        /* required: "health", "partition", "admin", ... */
	char *from_state;  /* optional (NULL) */
	char *to_state;    /* optional */
	char *cause;       /* optional */
	char *detail;      /* optional */
};

/* Appends ev (ev->id is ignored). *id (may be NULL) receives its id. */
df_err store_event_append(store *s, const store_event *ev, int64_t *id);

typedef struct store_event_query {
	const char *device_id; /* only this device's events; NULL: all */
	int64_t since_ms;      /* only events with ts_ms >= since_ms */
	int64_t cursor;        /* 0: first page; else the id of the last
				* event of the previous page */
	size_t limit;          /* page size, 0 = STORE_EVENT_PAGE_DEFAULT,
				* at most STORE_EVENT_PAGE_MAX */
	bool newest_first;     /* descending ids instead of ascending */
} store_event_query;

/* One page of events matching q. *out is new (store_events_free()), NULL
 * when *n is 0. A page shorter than the limit is the last one. */
df_err store_event_list(store *s, const store_event_query *q,
			store_event **out, size_t *n);

/* Frees n events from store_event_list(). */
void store_events_free(store_event *ev, size_t n);

/* Deletes events older than before_ms; *deleted (may be NULL) counts them. */
df_err store_event_prune(store *s, int64_t before_ms, int64_t *deleted);

/* ---- partitions ---------------------------------------------------------- */

typedef enum store_partition_state {
	STORE_PARTITION_PREPARED = 0, /* written, workers loading it */
	STORE_PARTITION_ACTIVE,       /* serving; at most one per model */
	STORE_PARTITION_RETIRED,      /* replaced or abandoned */
	STORE_PARTITION_STATE_COUNT
} store_partition_state;

/* "prepared", "active", "retired". */
const char *store_partition_state_name(store_partition_state st);

/* A partition map. Strings are borrowed for insert, owned in results
 * (free with store_partition_clear() / store_partitions_free()). */
typedef struct store_partition {
	int64_t version;             /* assigned by insert: max + 1 */
	char *model;
	char *method;                /* "robustdice", "sequential", ... */
	double ratio;                /* replication ratio, 0..1 */
	int64_t copies;              /* >= 1 */
	char *replica_mode;          /* "standby" or "active" */
	char *json;                  /* the map; NULL in list results */
	int64_t created_at_ms;       /* set by insert */
	store_partition_state state; /* insert always writes PREPARED */
} store_partition;

/* Inserts p as the next version (atomically max + 1) in state PREPARED.
 * *version receives it. */
df_err store_partition_insert(store *s, const store_partition *p,
			      int64_t *version);

/* Reads a version; DF_ENOENT if absent. */
df_err store_partition_get(store *s, int64_t version, store_partition *out);

/* Reads the active partition of model (NULL: the newest active one of any
 * model); DF_ENOENT if none is active. */
df_err store_partition_get_active(store *s, const char *model,
				  store_partition *out);

/*
 * Makes version the active partition of its model; in the same
 * transaction the previously active one becomes RETIRED. DF_ENOENT if the
 * version does not exist, DF_ECONFLICT if it is retired. Already active:
 * no change.
 */
df_err store_partition_set_active(store *s, int64_t version);

/* Retires a prepared version (e.g. workers failed to load it). DF_ENOENT
 * if absent, DF_ECONFLICT if it is the active one; retired stays retired. */
df_err store_partition_retire(store *s, int64_t version);

/* All partitions of model (NULL: all), newest first, without json. *out
 * is new (store_partitions_free()), NULL when *n is 0. */
df_err store_partition_list(store *s, const char *model,
			    store_partition **out, size_t *n);

/* Frees what p owns and zeroes it. NULL is a no-op. */
void store_partition_clear(store_partition *p);

/* Frees n partitions from store_partition_list(). */
void store_partitions_free(store_partition *p, size_t n);

/* ---- settings ------------------------------------------------------------ */

/* Keys are 1..STORE_NAME_MAX-1 bytes, values < STORE_TEXT_MAX bytes. */

/* Reads a setting: *value is new (free()); DF_ENOENT if unset. */
df_err store_setting_get(store *s, const char *key, char **value);

/* Writes (inserts or replaces) a setting. */
df_err store_setting_set(store *s, const char *key, const char *value);

/* Removes a setting; DF_ENOENT if unset. */
df_err store_setting_delete(store *s, const char *key);

#endif
