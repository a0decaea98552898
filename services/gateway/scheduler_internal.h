/*
 * scheduler_internal.h - what the scheduler's two files share: scheduler.c
 * (deployments, the slot pool and leases, readiness, settings) and
 * scheduler_push.c (choosing a partition version and pushing it to the
 * workers). The scheduler and deployment structs and a deployment's
 * create/free pair. Nothing outside services/gateway/scheduler*.c includes
 * this header; the public API is gateway.h's scheduler section.
 */
#ifndef DF_SCHEDULER_INTERNAL_H
#define DF_SCHEDULER_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "gateway.h"

typedef struct pool_slot {
	runner *run;
	http_client *http;
	bool busy;
} pool_slot;

struct deployment {
	gateway *gw;
	partition_map *map;
	char *json;              /* the map as stored */
	json_t *map_obj;         /* the map as pushed */
	char **urls;             /* [map->n_devices] */
	impute_recon *recon;
	pool_slot *slots;
	int n_slots;
	int refs;                /* under scheduler lock */
};

struct scheduler {
	gateway *gw;
	pthread_mutex_t lock;
	pthread_mutex_t change;   /* serializes sched_repartition() */
	pthread_cond_t freed;     /* a slot was released / state changed */
	pthread_cond_t wake;      /* deployer sleep */
	deployment *active;
	deployment *pending;      /* being pushed by the deployer */
	int64_t previous;         /* version active before this start */
	bool stop;
	bool thread_started;
	pthread_t thread;
	char reason[512];
};

/* ---- scheduler.c --------------------------------------------------------- */

/* Builds a deployment around map (taken over, like json: both are freed on
 * failure) with its JSON text: the device URLs, the recon maps and
 * gw->pool_size slots. Returns new with refs 0; free with
 * deployment_free(). */
df_err deployment_create(gateway *gw, const gw_settings *st,
			 partition_map *map, char *json, deployment **out);

/* Frees d and all it owns, once no lease holds it; NULL is a no-op. */
void deployment_free(deployment *d);

/* Drops a reference taken under s->lock (d->refs++), wakes the waiters on
 * s->freed, and frees d if that was the last one. Takes s->lock. */
void deployment_unref(scheduler *s, deployment *d);

#endif
