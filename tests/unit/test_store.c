/*
 * Unit tests for store.c, on real database files in a temporary directory:
 * migration, restart, concurrency (shared store and separate connections),
 * paging, partition activation, hostile strings, and files that must be
 * refused (newer schema, not SQLite).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <time.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "store.h"

typedef struct tmpdb {
	char dir[64];
	char path[128];
} tmpdb;

static int tmp_setup(void **state)
{
	tmpdb *t = calloc(1, sizeof *t);
	if (!t)
		return -1;
	snprintf(t->dir, sizeof t->dir, "/tmp/df_store_XXXXXX");
	if (!mkdtemp(t->dir)) {
		free(t);
		return -1;
	}
	snprintf(t->path, sizeof t->path, "%s/gw.db", t->dir);
	*state = t;
	return 0;
}

static int tmp_teardown(void **state)
{
	tmpdb *t = *state;
	DIR *d = opendir(t->dir);
	if (d) {
		struct dirent *e;
		while ((e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			char p[512];
			snprintf(p, sizeof p, "%s/%s", t->dir, e->d_name);
			unlink(p);
		}
		closedir(d);
	}
	rmdir(t->dir);
	free(t);
	return 0;
}

static store *open_ok(const char *path)
{
	store *s = NULL;
	df_err err = store_open(path, &s);
	if (err)
		fail_msg("store_open(%s): %s", path, df_err_msg());
	return s;
}

/* Runs sql on a raw connection and returns column 0 of row 0 as int. */
static long long raw_int(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	long long v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

static void raw_exec(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	char *msg = NULL;
	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
		fail_msg("%s: %s", sql, msg);
	sqlite3_close(db);
}

static store_device dev(const char *id, const char *url, const char *state)
{
	store_device d;
	memset(&d, 0, sizeof d);
	snprintf(d.id, sizeof d.id, "%s", id);
	snprintf(d.url, sizeof d.url, "%s", url);
	snprintf(d.state, sizeof d.state, "%s", state);
	return d;
}

static int64_t add_partition(store *s, const char *model, const char *json)
{
	store_partition p = {0};
	p.model = (char *)model;
	p.method = "robustdice";
	p.ratio = 0.25;
	p.copies = 2;
	p.replica_mode = "standby";
	p.json = (char *)json;
	int64_t v = 0;
	df_err err = store_partition_insert(s, &p, &v);
	if (err)
		fail_msg("partition insert: %s", df_err_msg());
	return v;
}

/* ---- tests ---------------------------------------------------------------- */

static void migrates_from_empty(void **state)
{
	tmpdb *t = *state;
	store *s = open_ok(t->path);
	store_close(s);
	assert_int_equal(raw_int(t->path, "PRAGMA user_version"),
			 store_schema_version());
	assert_int_equal(raw_int(t->path,
				 "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
				 " AND name IN ('devices', 'events', 'partitions', 'settings')"),
			 4);
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_open(t->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL),
			 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
	sqlite3_finalize(st);
	sqlite3_close(db);

	/* A second open migrates nothing and fails on nothing. */
	s = open_ok(t->path);
	store_close(s);
	store_close(NULL);
}

static void migrates_a_foreign_empty_database(void **state)
{
	tmpdb *t = *state;
	/* A SQLite file at version 0 that already holds an unrelated table. */
	raw_exec(t->path, "CREATE TABLE notes (x TEXT); INSERT INTO notes VALUES ('keep');");
	store *s = open_ok(t->path);
	assert_int_equal(store_setting_set(s, "k", "v"), DF_OK);
	store_close(s);
	assert_int_equal(raw_int(t->path, "SELECT count(*) FROM notes"), 1);
	assert_int_equal(raw_int(t->path, "PRAGMA user_version"),
			 store_schema_version());
}

static void devices_crud_and_health(void **state)
{
	tmpdb *t = *state;
	store *s = open_ok(t->path);
	store_device d = dev("w2", "http://127.0.0.1:9002", "UP");
	bool created = false;
	assert_int_equal(store_device_upsert(s, &d, &created), DF_OK);
	assert_true(created);
	d = dev("w1", "http://127.0.0.1:9001", "UP");
	d.latency_ms_estimate = 3.5;
	d.last_seen_ms = 1700000000000;
	assert_int_equal(store_device_upsert(s, &d, NULL), DF_OK);

	store_device g;
	assert_int_equal(store_device_get(s, "w1", &g), DF_OK);
	assert_string_equal(g.url, "http://127.0.0.1:9001");
	assert_string_equal(g.state, "UP");
	assert_true(g.latency_ms_estimate == 3.5);
	assert_true(g.last_seen_ms == 1700000000000);
	assert_true(g.registered_at_ms > 0);
	int64_t registered = g.registered_at_ms;

	/* Upsert of an existing id replaces fields, keeps registered_at. */
	usleep(2000);
	d = dev("w1", "http://10.0.0.1:9001", "SUSPECT");
	assert_int_equal(store_device_upsert(s, &d, &created), DF_OK);
	assert_false(created);
	assert_int_equal(store_device_get(s, "w1", &g), DF_OK);
	assert_string_equal(g.url, "http://10.0.0.1:9001");
	assert_string_equal(g.state, "SUSPECT");
	assert_true(g.registered_at_ms == registered);
	assert_true(g.updated_at_ms > registered);

	store_device *list = NULL;
	size_t n = 0;
	assert_int_equal(store_device_list(s, &list, &n), DF_OK);
	assert_int_equal(n, 2);
	assert_string_equal(list[0].id, "w1");
	assert_string_equal(list[1].id, "w2");
	free(list);

	/* Health with an event: both written. */
	store_health h = {"DOWN", 1700000001000, 3, 12.25};
	store_event ev = {0, 0, "w1", "health", "SUSPECT", "DOWN", "probe",
			  "3 consecutive failures"};
	int64_t eid = 0;
	assert_int_equal(store_device_set_health(s, "w1", &h, &ev, &eid), DF_OK);
	assert_true(eid > 0);
	assert_int_equal(store_device_get(s, "w1", &g), DF_OK);
	assert_string_equal(g.state, "DOWN");
	assert_true(g.consecutive_failures == 3);
	assert_true(g.latency_ms_estimate == 12.25);
	assert_true(g.last_seen_ms == 1700000001000);
	store_event *evs = NULL;
	assert_int_equal(store_event_list(s, NULL, &evs, &n), DF_OK);
	assert_int_equal(n, 1);
	assert_true(evs[0].id == eid);
	assert_string_equal(evs[0].device_id, "w1");
	assert_string_equal(evs[0].to_state, "DOWN");
	assert_true(evs[0].ts_ms > 0);
	store_events_free(evs, n);

	/* Unknown device: ENOENT and the event is not written either. */
	assert_int_equal(store_device_set_health(s, "nope", &h, &ev, &eid),
			 DF_ENOENT);
	assert_non_null(strstr(df_err_msg(), "nope"));
	assert_int_equal(store_event_list(s, NULL, &evs, &n), DF_OK);
	assert_int_equal(n, 1);
	store_events_free(evs, n);
	/* Without an event. */
	h.state = "UP";
	assert_int_equal(store_device_set_health(s, "w1", &h, NULL, NULL), DF_OK);

	/* Bad input names the field and changes nothing. */
	store_health bad = h;
	bad.consecutive_failures = -1;
	assert_int_equal(store_device_set_health(s, "w1", &bad, NULL, NULL), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "consecutive_failures"));
	bad = h;
	bad.latency_ms_estimate = NAN;
	assert_int_equal(store_device_set_health(s, "w1", &bad, NULL, NULL), DF_EINVAL);
	bad = h;
	bad.state = "";
	assert_int_equal(store_device_set_health(s, "w1", &bad, NULL, NULL), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "state"));
	d = dev("", "http://x", "UP");
	assert_int_equal(store_device_upsert(s, &d, NULL), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "device id"));
	memset(d.id, 'a', sizeof d.id); /* not NUL-terminated within the array */
	assert_int_equal(store_device_upsert(s, &d, NULL), DF_EINVAL);
	d = dev("w3", "", "UP");
	assert_int_equal(store_device_upsert(s, &d, NULL), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "url"));
	assert_int_equal(store_device_get(s, "w1", &g), DF_OK);
	assert_string_equal(g.state, "UP");

	assert_int_equal(store_device_delete(s, "w2"), DF_OK);
	assert_int_equal(store_device_delete(s, "w2"), DF_ENOENT);
	memset(&g, 0x5a, sizeof g);
	assert_int_equal(store_device_get(s, "w2", &g), DF_ENOENT);
	assert_int_equal((unsigned char)g.id[0], 0x5a); /* untouched */
	assert_int_equal(store_device_list(s, &list, &n), DF_OK);
	assert_int_equal(n, 1);
	free(list);
	/* Deleting a device keeps its events. */
	assert_int_equal(store_device_delete(s, "w1"), DF_OK);
	assert_int_equal(store_event_list(s, NULL, &evs, &n), DF_OK);
	assert_int_equal(n, 1);
	store_events_free(evs, n);
	assert_int_equal(store_device_list(s, &list, &n), DF_OK);
	assert_int_equal(n, 0);
	assert_null(list);
	store_close(s);
}

static void settings_round_trip(void **state)
{
	tmpdb *t = *state;
	store *s = open_ok(t->path);
	char *v = (char *)0x1;
	assert_int_equal(store_setting_get(s, "ratio", &v), DF_ENOENT);
	assert_ptr_equal(v, (char *)0x1);
	assert_int_equal(store_setting_set(s, "ratio", "0.25"), DF_OK);
	assert_int_equal(store_setting_set(s, "ratio", "0.5"), DF_OK);
	assert_int_equal(store_setting_get(s, "ratio", &v), DF_OK);
	assert_string_equal(v, "0.5");
	free(v);
	assert_int_equal(store_setting_set(s, "empty", ""), DF_OK);
	assert_int_equal(store_setting_get(s, "empty", &v), DF_OK);
	assert_string_equal(v, "");
	free(v);
	assert_int_equal(store_setting_set(s, "", "x"), DF_EINVAL);
	assert_int_equal(store_setting_set(s, "k", NULL), DF_EINVAL);
	assert_int_equal(store_setting_delete(s, "ratio"), DF_OK);
	assert_int_equal(store_setting_delete(s, "ratio"), DF_ENOENT);
	assert_int_equal(store_setting_get(s, "ratio", &v), DF_ENOENT);
	store_close(s);
}

static void reopen_restores_everything(void **state)
{
	tmpdb *t = *state;
	store *s = open_ok(t->path);
	store_device d = dev("edge-1", "http://10.1.1.1:9001", "UP");
	d.consecutive_failures = 2;
	d.latency_ms_estimate = 7.75;
	d.last_seen_ms = 123456;
	assert_int_equal(store_device_upsert(s, &d, NULL), DF_OK);
	store_event ev = {0, 5000, "edge-1", "health", "UP", "SUSPECT",
			  "timeout", NULL};
	int64_t eid = 0;
	assert_int_equal(store_event_append(s, &ev, &eid), DF_OK);
	int64_t v1 = add_partition(s, "vgg", "{\"v\":1}");
	int64_t v2 = add_partition(s, "vgg", "{\"v\":2}");
	assert_int_equal(store_partition_set_active(s, v1), DF_OK);
	assert_int_equal(store_partition_set_active(s, v2), DF_OK);
	assert_int_equal(store_setting_set(s, "replication.ratio", "0.3"), DF_OK);
	store_close(s);

	/* "Restart". */
	s = open_ok(t->path);
	store_device g;
	assert_int_equal(store_device_get(s, "edge-1", &g), DF_OK);
	assert_string_equal(g.url, "http://10.1.1.1:9001");
	assert_string_equal(g.state, "UP");
	assert_true(g.consecutive_failures == 2);
	assert_true(g.latency_ms_estimate == 7.75);
	assert_true(g.last_seen_ms == 123456);
	store_event *evs = NULL;
	size_t n = 0;
	assert_int_equal(store_event_list(s, NULL, &evs, &n), DF_OK);
	assert_int_equal(n, 1);
	assert_true(evs[0].id == eid);
	assert_true(evs[0].ts_ms == 5000);
	assert_string_equal(evs[0].cause, "timeout");
	assert_null(evs[0].detail);
	store_events_free(evs, n);
	store_partition p = {0};
	assert_int_equal(store_partition_get_active(s, "vgg", &p), DF_OK);
	assert_true(p.version == v2);
	assert_string_equal(p.json, "{\"v\":2}");
	assert_string_equal(p.method, "robustdice");
	assert_string_equal(p.replica_mode, "standby");
	assert_true(p.ratio == 0.25);
	assert_true(p.copies == 2);
	assert_int_equal(p.state, STORE_PARTITION_ACTIVE);
	store_partition_clear(&p);
	assert_int_equal(store_partition_get(s, v1, &p), DF_OK);
	assert_int_equal(p.state, STORE_PARTITION_RETIRED);
	store_partition_clear(&p);
	char *v = NULL;
	assert_int_equal(store_setting_get(s, "replication.ratio", &v), DF_OK);
	assert_string_equal(v, "0.3");
	free(v);
	/* Versions keep counting after a restart. */
	assert_true(add_partition(s, "vgg", "{}") == v2 + 1);
	store_close(s);
}

/* ---- concurrency ---------------------------------------------------------- */

enum { N_THREADS = 4, N_OPS = 150, N_PARTS = 10 };

typedef struct worker_arg {
	store *shared;     /* NULL: open an own store on path */
	const char *path;
	int index;
	df_err err;        /* first error */
	char msg[256];
} worker_arg;

static void *writer(void *p)
{
	worker_arg *a = p;
	store *s = a->shared;
	df_err err = DF_OK;
	char id[32], key[32], val[32];
	snprintf(id, sizeof id, "dev-%d", a->index);
	if (!s) {
		store_options o = {20000};
		err = store_open_opts(a->path, &o, &s);
		if (err)
			goto out;
	}
	store_device d = dev(id, "http://127.0.0.1:1", "UP");
	err = store_device_upsert(s, &d, NULL);
	for (int i = 0; !err && i < N_OPS; i++) {
		store_event ev = {0, 0, id, "test", NULL, NULL, NULL, NULL};
		err = store_event_append(s, &ev, NULL);
		if (!err) {
			store_health h = {i % 2 ? "SUSPECT" : "UP", 1, i, 1.0};
			store_event hev = {0, 0, id, "health", NULL, (char *)h.state, NULL, NULL};
			err = store_device_set_health(s, id, &h, &hev, NULL);
		}
		if (!err) {
			snprintf(key, sizeof key, "k%d", a->index);
			snprintf(val, sizeof val, "%d", i);
			err = store_setting_set(s, key, val);
		}
		if (!err && i % (N_OPS / N_PARTS) == 0) {
			store_partition part = {0, "m", "random", 0.5, 2, "active",
						"{}", 0, 0};
			int64_t v = 0;
			err = store_partition_insert(s, &part, &v);
		}
	}
out:
	if (err) {
		a->err = err;
		snprintf(a->msg, sizeof a->msg, "%s", df_err_msg());
	}
	if (!a->shared)
		store_close(s);
	return NULL;
}

static void check_after_writers(store *s)
{
	store_event *evs = NULL;
	size_t n = 0, total = 0;
	store_event_query q = {0};
	q.limit = STORE_EVENT_PAGE_MAX;
	int64_t last = 0;
	for (;;) {
		assert_int_equal(store_event_list(s, &q, &evs, &n), DF_OK);
		for (size_t i = 0; i < n; i++) {
			assert_true(evs[i].id > last);
			last = evs[i].id;
		}
		total += n;
		store_events_free(evs, n);
		if (n < q.limit)
			break;
		q.cursor = last;
	}
	assert_int_equal(total, N_THREADS * N_OPS * 2);
	store_partition *ps = NULL;
	assert_int_equal(store_partition_list(s, "m", &ps, &n), DF_OK);
	assert_int_equal(n, N_THREADS * N_PARTS);
	for (size_t i = 0; i < n; i++) {
		assert_true(ps[i].version == (int64_t)(n - i)); /* dense, newest first */
		assert_null(ps[i].json);
	}
	store_partitions_free(ps, n);
	for (int i = 0; i < N_THREADS; i++) {
		char key[32], *v = NULL;
		snprintf(key, sizeof key, "k%d", i);
		assert_int_equal(store_setting_get(s, key, &v), DF_OK);
		assert_int_equal(atoi(v), N_OPS - 1);
		free(v);
		store_device d;
		snprintf(key, sizeof key, "dev-%d", i);
		assert_int_equal(store_device_get(s, key, &d), DF_OK);
		assert_true(d.consecutive_failures == N_OPS - 1);
	}
}

static void run_writers(const char *path, store *shared)
{
	pthread_t th[N_THREADS];
	worker_arg args[N_THREADS];
	memset(args, 0, sizeof args);
	for (int i = 0; i < N_THREADS; i++) {
		args[i].shared = shared;
		args[i].path = path;
		args[i].index = i;
		assert_int_equal(pthread_create(&th[i], NULL, writer, &args[i]), 0);
	}
	for (int i = 0; i < N_THREADS; i++) {
		pthread_join(th[i], NULL);
		if (args[i].err)
			fail_msg("writer %d: error %d: %s", i, args[i].err, args[i].msg);
	}
}

static void concurrent_writers_on_one_store(void **state)
{
	tmpdb *t = *state;
	store *s = open_ok(t->path);
	run_writers(t->path, s);
	check_after_writers(s);
	store_close(s);
}

static void concurrent_writers_on_own_connections(void **state)
{
	tmpdb *t = *state;
	/* Every thread opens the fresh file itself: the first opens race on
	 * the migration too. */
	run_writers(t->path, NULL);
	store *s = open_ok(t->path);
	check_after_writers(s);
	store_close(s);
}

static void busy_database_fails_cleanly_after_timeout(void **state)
{
	tmpdb *t = *state;
	store *s = NULL;
	store_options o = {100};
	assert_int_equal(store_open_opts(t->path, &o, &s), DF_OK);
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(t->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL),
			 SQLITE_OK);
	assert_int_equal(store_setting_set(s, "k", "v"), DF_EUNAVAIL);
	store_device d = dev("x", "http://x", "UP");
	assert_int_equal(store_device_upsert(s, &d, NULL), DF_EUNAVAIL);
	/* Readers are not blocked by the writer (WAL). */
	char *v = NULL;
	assert_int_equal(store_setting_get(s, "k", &v), DF_ENOENT);
	assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(store_setting_set(s, "k", "v"), DF_OK);
	assert_int_equal(store_device_upsert(s, &d, NULL), DF_OK);
	store_close(s);
	o.busy_timeout_ms = -1;
	assert_int_equal(store_open_opts(t->path, &o, &s), DF_EINVAL);
}

/* ---- events paging -------------------------------------------------------- */

enum { N_EVENTS = 250 };

static const char *const ev_devs[] = {"a", "b", NULL};

/* Event i: ts 1000 + i, device ev_devs[i % 3]. */
static void fill_events(store *s, int64_t *ids)
{
	for (int i = 0; i < N_EVENTS; i++) {
		store_event ev = {0, 1000 + i, (char *)ev_devs[i % 3], "k", NULL,
				  NULL, NULL, NULL};
		assert_int_equal(store_event_append(s, &ev, &ids[i]), DF_OK);
	}
}

/* Pages through q and checks the concatenation equals the events i of
 * fill_events() with match(i), in order. */
static void check_pages(store *s, store_event_query q, const int64_t *ids,
			int (*match)(int i, const store_event_query *q))
{
	int expect[N_EVENTS], n_expect = 0;
	for (int k = 0; k < N_EVENTS; k++) {
		int i = q.newest_first ? N_EVENTS - 1 - k : k;
		if (match(i, &q))
			expect[n_expect++] = i;
	}
	int got = 0, pages = 0;
	size_t limit = q.limit ? q.limit : STORE_EVENT_PAGE_DEFAULT;
	for (;;) {
		store_event *evs = NULL;
		size_t n = 0;
		assert_int_equal(store_event_list(s, &q, &evs, &n), DF_OK);
		assert_true(n <= limit);
		for (size_t j = 0; j < n; j++) {
			if (got >= n_expect)
				fail_msg("extra event %lld", (long long)evs[j].id);
			int i = expect[got++];
			assert_true(evs[j].id == ids[i]);
			assert_true(evs[j].ts_ms == 1000 + i);
			if (ev_devs[i % 3])
				assert_string_equal(evs[j].device_id, ev_devs[i % 3]);
			else
				assert_null(evs[j].device_id);
		}
		pages++;
		if (n > 0)
			q.cursor = evs[n - 1].id;
		store_events_free(evs, n);
		if (n < limit)
			break;
	}
	assert_int_equal(got, n_expect);
	assert_int_equal(pages, n_expect / (int)limit + 1);
}

static int match_all(int i, const store_event_query *q)
{
	return 1000 + i >= q->since_ms;
}

static int match_dev(int i, const store_event_query *q)
{
	return match_all(i, q) && ev_devs[i % 3] &&
	       strcmp(ev_devs[i % 3], q->device_id) == 0;
}

static void events_page_correctly(void **state)
{
	tmpdb *t = *state;
	store *s = open_ok(t->path);
	int64_t ids[N_EVENTS];
	fill_events(s, ids);
	for (int desc = 0; desc < 2; desc++) {
		store_event_query q = {0};
		q.newest_first = desc;
		q.limit = 7;
		check_pages(s, q, ids, match_all);
		q.limit = 0; /* default page */
		check_pages(s, q, ids, match_all);
		q.limit = 10; /* divides the matching count: a last empty page */
		check_pages(s, q, ids, match_all);
		q.limit = 1;
		q.since_ms = 1200;
		check_pages(s, q, ids, match_all);
		q.limit = 9;
		q.device_id = "b";
		check_pages(s, q, ids, match_dev);
		q.since_ms = 0;
		q.device_id = "a";
		check_pages(s, q, ids, match_dev);
		q.device_id = "zz";
		check_pages(s, q, ids, match_dev);
	}
	store_event_query bad = {0};
	store_event *evs = (store_event *)0x1;
	size_t n = 77;
	bad.limit = STORE_EVENT_PAGE_MAX + 1;
	assert_int_equal(store_event_list(s, &bad, &evs, &n), DF_ERANGE);
	bad.limit = 1;
	bad.cursor = -5;
	assert_int_equal(store_event_list(s, &bad, &evs, &n), DF_EINVAL);
	assert_ptr_equal(evs, (store_event *)0x1);
	assert_int_equal(n, 77);

	/* Pruning removes by time and never reuses ids. */
	int64_t deleted = 0;
	assert_int_equal(store_event_prune(s, 1100, &deleted), DF_OK);
	assert_int_equal(deleted, 100);
	store_event_query all = {0};
	all.limit = STORE_EVENT_PAGE_MAX;
	assert_int_equal(store_event_list(s, &all, &evs, &n), DF_OK);
	assert_int_equal(n, N_EVENTS - 100);
	assert_true(evs[0].id == ids[100]);
	store_events_free(evs, n);
	assert_int_equal(store_event_prune(s, INT64_MAX, NULL), DF_OK);
	store_event ev = {0, 0, NULL, "k", NULL, NULL, NULL, NULL};
	int64_t id = 0;
	assert_int_equal(store_event_append(s, &ev, &id), DF_OK);
	assert_true(id > ids[N_EVENTS - 1]);
	ev.kind = NULL;
	assert_int_equal(store_event_append(s, &ev, &id), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "kind"));
	store_close(s);
}

/* ---- partitions ----------------------------------------------------------- */

static void partition_lifecycle(void **state)
{
	tmpdb *t = *state;
	store *s = open_ok(t->path);
	store_partition p = {0};
	assert_int_equal(store_partition_get_active(s, "vgg", &p), DF_ENOENT);
	assert_int_equal(store_partition_get_active(s, NULL, &p), DF_ENOENT);
	int64_t v1 = add_partition(s, "vgg", "{\"a\":1}");
	int64_t v2 = add_partition(s, "vgg", "{\"a\":2}");
	int64_t r1 = add_partition(s, "resnet", "{\"r\":1}");
	int64_t v4 = add_partition(s, "vgg", "{\"a\":4}");
	assert_true(v1 == 1 && v2 == 2 && r1 == 3 && v4 == 4);
	assert_int_equal(store_partition_get(s, v1, &p), DF_OK);
	assert_int_equal(p.state, STORE_PARTITION_PREPARED);
	assert_true(p.created_at_ms > 0);
	store_partition_clear(&p);
	store_partition_clear(NULL);

	assert_int_equal(store_partition_set_active(s, v1), DF_OK);
	assert_int_equal(store_partition_set_active(s, r1), DF_OK);
	assert_int_equal(store_partition_set_active(s, v2), DF_OK);
	assert_int_equal(store_partition_set_active(s, v2), DF_OK); /* no-op */
	assert_int_equal(store_partition_get_active(s, "vgg", &p), DF_OK);
	assert_true(p.version == v2);
	store_partition_clear(&p);
	assert_int_equal(store_partition_get_active(s, "resnet", &p), DF_OK);
	assert_true(p.version == r1); /* other models are not touched */
	store_partition_clear(&p);
	assert_int_equal(store_partition_get_active(s, NULL, &p), DF_OK);
	assert_true(p.version == r1); /* newest active of any model */
	store_partition_clear(&p);
	assert_int_equal(store_partition_get(s, v1, &p), DF_OK);
	assert_int_equal(p.state, STORE_PARTITION_RETIRED);
	store_partition_clear(&p);

	assert_int_equal(store_partition_set_active(s, v1), DF_ECONFLICT);
	assert_non_null(strstr(df_err_msg(), "retired"));
	assert_int_equal(store_partition_retire(s, v2), DF_ECONFLICT);
	assert_int_equal(store_partition_retire(s, v4), DF_OK);
	assert_int_equal(store_partition_retire(s, v4), DF_OK);
	assert_int_equal(store_partition_set_active(s, v4), DF_ECONFLICT);
	assert_int_equal(store_partition_set_active(s, 99), DF_ENOENT);
	assert_int_equal(store_partition_retire(s, 99), DF_ENOENT);
	memset(&p, 0, sizeof p);
	assert_int_equal(store_partition_get(s, 99, &p), DF_ENOENT);
	assert_null(p.model);
	assert_int_equal(store_partition_get_active(s, "vgg", &p), DF_OK);
	assert_true(p.version == v2); /* failed calls changed nothing */
	store_partition_clear(&p);

	store_partition *ps = NULL;
	size_t n = 0;
	assert_int_equal(store_partition_list(s, NULL, &ps, &n), DF_OK);
	assert_int_equal(n, 4);
	assert_true(ps[0].version == v4);
	assert_string_equal(store_partition_state_name(ps[0].state), "retired");
	assert_string_equal(store_partition_state_name(ps[1].state), "active");
	assert_string_equal(ps[1].model, "resnet");
	store_partitions_free(ps, n);
	assert_int_equal(store_partition_list(s, "resnet", &ps, &n), DF_OK);
	assert_int_equal(n, 1);
	store_partitions_free(ps, n);

	/* Validation. */
	store_partition bad = {0, "vgg", "robustdice", 1.5, 2, "standby", "{}", 0, 0};
	int64_t v = -7;
	assert_int_equal(store_partition_insert(s, &bad, &v), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "ratio"));
	bad.ratio = NAN;
	assert_int_equal(store_partition_insert(s, &bad, &v), DF_EINVAL);
	bad.ratio = 1;
	bad.copies = 0;
	assert_int_equal(store_partition_insert(s, &bad, &v), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "copies"));
	bad.copies = 1;
	bad.json = "";
	assert_int_equal(store_partition_insert(s, &bad, &v), DF_EINVAL);
	bad.json = "{}";
	bad.model = NULL;
	assert_int_equal(store_partition_insert(s, &bad, &v), DF_EINVAL);
	assert_true(v == -7);
	store_close(s);
}

typedef struct flip_arg {
	const char *path;
	atomic_int stop;
	atomic_int observed; /* list snapshots seen */
	int bad;           /* snapshots with != 1 active */
	df_err err;
	char msg[256];
} flip_arg;

static void *active_reader(void *p)
{
	flip_arg *a = p;
	store *s = NULL;
	store_options o = {20000};
	a->err = store_open_opts(a->path, &o, &s);
	while (!a->err && !atomic_load(&a->stop)) {
		store_partition *ps = NULL;
		size_t n = 0;
		a->err = store_partition_list(s, "m", &ps, &n);
		if (a->err)
			break;
		int active = 0;
		for (size_t i = 0; i < n; i++)
			active += ps[i].state == STORE_PARTITION_ACTIVE;
		store_partitions_free(ps, n);
		atomic_fetch_add(&a->observed, 1);
		if (active != 1)
			a->bad++;
		store_partition g = {0};
		a->err = store_partition_get_active(s, "m", &g);
		store_partition_clear(&g);
	}
	if (a->err)
		snprintf(a->msg, sizeof a->msg, "%s", df_err_msg());
	store_close(s);
	return NULL;
}

static void set_active_is_atomic(void **state)
{
	tmpdb *t = *state;
	store *s = open_ok(t->path);
	int64_t v = add_partition(s, "m", "{}");
	assert_int_equal(store_partition_set_active(s, v), DF_OK);
	flip_arg a = {t->path, 0, 0, 0, DF_OK, ""};
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, active_reader, &a), 0);
	/* Let the reader open the file and look once before flipping: a
	 * writer that never pauses can starve its open (the busy handler
	 * sleeps, the writer takes the lock again) on a loaded machine. */
	struct timespec ms1 = {0, 1000 * 1000}, t0, now;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (atomic_load(&a.observed) < 1 && !a.err) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec > 60)
			fail_msg("reader did not start");
		nanosleep(&ms1, NULL);
	}
	/* Flip until the reader has looked often enough; bounded in time, not
	 * in flips, so that a slow machine is not mistaken for a hang. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 300 || atomic_load(&a.observed) < 200; i++) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec > 60)
			fail_msg("reader made no progress in 60 s");
		v = add_partition(s, "m", "{}");
		assert_int_equal(store_partition_set_active(s, v), DF_OK);
	}
	atomic_store(&a.stop, 1);
	pthread_join(th, NULL);
	if (a.err)
		fail_msg("reader: %s", a.msg);
	assert_true(atomic_load(&a.observed) >= 200);
	assert_int_equal(a.bad, 0);
	/* The unique index would refuse a second active row even if code
	 * tried to write one directly. */
	store_close(s);
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open(t->path, &db), SQLITE_OK);
	assert_int_not_equal(sqlite3_exec(db,
					  "UPDATE partitions SET state = 'active' WHERE version = 1",
					  NULL, NULL, NULL),
			     SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(raw_int(t->path,
				 "SELECT count(*) FROM partitions WHERE state = 'active'"),
			 1);
}

/* ---- hostile input -------------------------------------------------------- */

static void hostile_strings_are_stored_verbatim(void **state)
{
	tmpdb *t = *state;
	store *s = open_ok(t->path);
	static const char *const evil[] = {
		"x'); DROP TABLE devices; --",
		"\"; DELETE FROM events WHERE 1=1; --",
		"' OR '1'='1",
		"%s%s%n%x %d",
		"back\\slash \t tab \n newline \r",
		"\xce\xa9 \xe2\x98\x83 \xf0\x9f\x94\xa5", /* UTF-8 */
		"\xff\xfe not utf-8 \x80",
		"?1 ?2 :name @x $y",
		"Robert'); DROP TABLE partitions;--",
	};
	size_t n_evil = sizeof evil / sizeof evil[0];
	for (size_t i = 0; i < n_evil; i++) {
		store_device d = dev(evil[i], evil[i], "UP");
		assert_int_equal(store_device_upsert(s, &d, NULL), DF_OK);
		store_device g;
		assert_int_equal(store_device_get(s, evil[i], &g), DF_OK);
		assert_string_equal(g.id, evil[i]);
		assert_string_equal(g.url, evil[i]);

		store_event ev = {0, 0, (char *)evil[i], (char *)evil[i],
				  (char *)evil[i], (char *)evil[i],
				  (char *)evil[i], (char *)evil[i]};
		if (strlen(evil[i]) >= STORE_STATE_MAX) {
			ev.from_state = "UP";
			ev.to_state = "DOWN";
		}
		int64_t id = 0;
		assert_int_equal(store_event_append(s, &ev, &id), DF_OK);
		store_event_query q = {0};
		q.device_id = evil[i];
		store_event *evs = NULL;
		size_t n = 0;
		assert_int_equal(store_event_list(s, &q, &evs, &n), DF_OK);
		assert_int_equal(n, 1);
		assert_true(evs[0].id == id);
		assert_string_equal(evs[0].kind, evil[i]);
		assert_string_equal(evs[0].detail, evil[i]);
		assert_string_equal(evs[0].cause, evil[i]);
		store_events_free(evs, n);

		assert_int_equal(store_setting_set(s, evil[i], evil[i]), DF_OK);
		char *v = NULL;
		assert_int_equal(store_setting_get(s, evil[i], &v), DF_OK);
		assert_string_equal(v, evil[i]);
		free(v);

		store_partition p = {0, (char *)evil[i], (char *)evil[i], 0.5, 2,
				     (char *)evil[i], (char *)evil[i], 0, 0};
		int64_t ver = 0;
		assert_int_equal(store_partition_insert(s, &p, &ver), DF_OK);
		store_partition g2 = {0};
		assert_int_equal(store_partition_get(s, ver, &g2), DF_OK);
		assert_string_equal(g2.model, evil[i]);
		assert_string_equal(g2.json, evil[i]);
		store_partition_clear(&g2);
	}
	/* Every table is intact and holds exactly what was written. */
	store_device *list = NULL;
	size_t n = 0;
	assert_int_equal(store_device_list(s, &list, &n), DF_OK);
	assert_int_equal(n, n_evil);
	free(list);
	store_partition *ps = NULL;
	assert_int_equal(store_partition_list(s, NULL, &ps, &n), DF_OK);
	assert_int_equal(n, n_evil);
	store_partitions_free(ps, n);
	store_event *evs = NULL;
	assert_int_equal(store_event_list(s, NULL, &evs, &n), DF_OK);
	assert_int_equal(n, n_evil);
	store_events_free(evs, n);
	store_close(s);
	assert_int_equal(raw_int(t->path, "SELECT count(*) FROM settings"), n_evil);
}

/* ---- refused files -------------------------------------------------------- */

static void future_schema_is_refused(void **state)
{
	tmpdb *t = *state;
	char sql[64];
	int future = store_schema_version() + 1;
	snprintf(sql, sizeof sql, "PRAGMA user_version = %d", future);
	raw_exec(t->path, sql);
	store *s = (store *)0x1;
	assert_int_equal(store_open(t->path, &s), DF_ENOTSUP);
	assert_ptr_equal(s, (store *)0x1);
	assert_non_null(strstr(df_err_msg(), "newer dicefleet"));
	assert_non_null(strstr(df_err_msg(), t->path));
	/* Refusing left the file as it was. */
	assert_int_equal(raw_int(t->path, "PRAGMA user_version"), future);
	assert_int_equal(raw_int(t->path,
				 "SELECT count(*) FROM sqlite_master WHERE type = 'table'"),
			 0);
}

static void non_sqlite_files_are_refused(void **state)
{
	tmpdb *t = *state;
	FILE *f = fopen(t->path, "wb");
	assert_non_null(f);
	for (int i = 0; i < 64; i++)
		fputs("this is not a database, only some text\n", f);
	fclose(f);
	store *s = (store *)0x1;
	assert_int_equal(store_open(t->path, &s), DF_ECORRUPT);
	assert_non_null(strstr(df_err_msg(), "not a SQLite database"));
	assert_ptr_equal(s, (store *)0x1);

	char bad[256];
	snprintf(bad, sizeof bad, "%s/no/such/dir/x.db", t->dir);
	assert_int_equal(store_open(bad, &s), DF_EIO);
	assert_non_null(strstr(df_err_msg(), "no/such/dir"));
	assert_int_equal(store_open("", &s), DF_EINVAL);
	assert_int_equal(store_open(NULL, &s), DF_EINVAL);
	assert_ptr_equal(s, (store *)0x1);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, tmp_setup, tmp_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(migrates_from_empty),
		T(migrates_a_foreign_empty_database),
		T(devices_crud_and_health),
		T(settings_round_trip),
		T(reopen_restores_everything),
		T(concurrent_writers_on_one_store),
		T(concurrent_writers_on_own_connections),
		T(busy_database_fails_cleanly_after_timeout),
		T(events_page_correctly),
		T(partition_lifecycle),
		T(set_active_is_atomic),
		T(hostile_strings_are_stored_verbatim),
		T(future_schema_is_refused),
		T(non_sqlite_files_are_refused),
	};
	log_set_level(LOG_WARN); /* migrations log at info */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
