/*
 * Unit tests for partition.c: the map invariants for every method over
 * many (devices, ratio, copies, seed) combinations and edge cases, the
 * balance bound, importance-aware replication, JSON round trips, and the
 * validator's rejections.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "graph_builder.h"
#include "partition.h"

typedef struct fixture {
	graph *g;
	stage_plan *p;
} fixture;

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof *f);
	f->g = gb_resnet(5);
	if (stage_plan_create(f->g, &f->p))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;
	stage_plan_destroy(f->p);
	graph_destroy(f->g);
	free(f);
	return 0;
}

static partition_map *make(fixture *f, partition_method m, int devices,
			   double ratio, int copies, uint64_t seed)
{
	partition_params pp;
	partition_params_default(&pp);
	pp.method = m;
	pp.n_devices = devices;
	pp.ratio = ratio;
	pp.copies = copies;
	pp.seed = seed;
	partition_map *map = NULL;
	df_err err = partition_create(f->g, f->p, &pp, &map);
	if (err)
		fail_msg("partition_create(%s, %d dev, r=%g, c=%d): %s",
			 partition_method_name(m), devices, ratio, copies, df_err_msg());
	return map;
}

/* Number of neurons of stage s with at least one replica. */
static int64_t replicated(const partition_map *m, int s)
{
	const partition_stage *ps = &m->stages[s];
	int64_t k = 0;
	for (int64_t i = 0; i < ps->n_neurons && m->copies > 1; i++)
		k += ps->replicas[i * (m->copies - 1)] >= 0;
	return k;
}

static void invariants_hold_for_every_method(void **state)
{
	fixture *f = *state;
	static const int devs[] = {1, 2, 3, 4, 5, 8, 13, 40};
	static const double ratios[] = {0, 0.1, 0.25, 0.5, 1};
	for (int m = 0; m < PARTITION_METHOD_COUNT; m++)
		for (size_t di = 0; di < sizeof devs / sizeof devs[0]; di++)
			for (size_t ri = 0; ri < sizeof ratios / sizeof ratios[0]; ri++)
				for (int copies = 1; copies <= 3; copies++)
					for (uint64_t seed = 0; seed < 3; seed++) {
		partition_map *map = make(f, (partition_method)m, devs[di],
					  ratios[ri], copies, seed);
		assert_int_equal(partition_validate(map, f->p), DF_OK);
		int want_copies = m == PARTITION_FULL && copies < 2 ? 2 : copies;
		if (want_copies > devs[di])
			want_copies = devs[di];
		assert_int_equal(map->copies, want_copies);
		for (int s = 0; s < map->n_stages; s++) {
			const partition_stage *ps = &map->stages[s];
			if (ps->on_gateway)
				continue;
			/* replication budget honoured */
			int64_t k = replicated(map, s);
			if (map->copies == 1)
				assert_int_equal(k, 0);
			else if (m == PARTITION_FULL)
				assert_int_equal(k, ps->n_neurons);
			else
				assert_int_equal(k, llround(ratios[ri] * (double)ps->n_neurons));
			/* balance: primaries per device differ by <= 1 */
			if (m != PARTITION_LAYERWISE) {
				int64_t lo = INT64_MAX, hi = 0;
				for (int d = 0; d < devs[di]; d++) {
					int64_t c = 0;
					for (int64_t i = 0; i < ps->n_neurons; i++)
						c += ps->primary[i] == d;
					lo = c < lo ? c : lo;
					hi = c > hi ? c : hi;
				}
				assert_true(hi - lo <= 1);
			}
		}
		partition_destroy(map);
	}
}

static void logits_stage_runs_on_the_gateway(void **state)
{
	fixture *f = *state;
	partition_map *map = make(f, PARTITION_SEQUENTIAL, 4, 0, 2, 0);
	int last = -1;
	for (int s = 0; s < f->p->n_stages; s++)
		if (f->p->stages[s].kind == STAGE_NEURON)
			last = s;
	assert_true(map->stages[last].on_gateway);
	assert_null(map->stages[last].primary);
	/* every other neuron stage is distributed */
	for (int s = 0; s < f->p->n_stages; s++)
		if (s != last && f->p->stages[s].kind == STAGE_NEURON)
			assert_false(map->stages[s].on_gateway);
	partition_destroy(map);
}

static void logits_off_the_gateway_is_fully_replicated(void **state)
{
	fixture *f = *state;
	partition_params pp;
	partition_params_default(&pp);
	pp.n_devices = 3;
	pp.ratio = 0;
	pp.gateway_last = false;
	pp.copies = 1;
	partition_map *m = NULL;
	assert_int_equal(partition_create(f->g, f->p, &pp, &m), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "logits"));
	pp.copies = 2;
	assert_int_equal(partition_create(f->g, f->p, &pp, &m), DF_OK);
	int last = -1;
	for (int s = 0; s < f->p->n_stages; s++)
		if (f->p->stages[s].kind == STAGE_NEURON)
			last = s;
	assert_false(m->stages[last].on_gateway);
	assert_int_equal(replicated(m, last), m->stages[last].n_neurons);
	/* other stages keep the requested ratio 0 */
	assert_int_equal(replicated(m, 0), 0);
	partition_destroy(m);
}

static void robustdice_replicates_the_most_important(void **state)
{
	fixture *f = *state;
	partition_map *map = make(f, PARTITION_ROBUSTDICE, 4, 0.25, 2, 0);
	for (int s = 0; s < map->n_stages; s++) {
		const partition_stage *ps = &map->stages[s];
		if (ps->on_gateway)
			continue;
		float *sc = malloc((size_t)ps->n_neurons * sizeof *sc);
		assert_int_equal(stage_neuron_l1(f->g, f->p, s, sc), DF_OK);
		/* every replicated neuron scores >= every unreplicated one */
		float min_rep = 1e30f, max_plain = -1;
		for (int64_t i = 0; i < ps->n_neurons; i++) {
			if (ps->replicas[i] >= 0)
				min_rep = sc[i] < min_rep ? sc[i] : min_rep;
			else
				max_plain = sc[i] > max_plain ? sc[i] : max_plain;
		}
		assert_true(min_rep >= max_plain);
		/* snake dealing: each device gets one of the top-4 neurons */
		int seen[4] = {0};
		int64_t top[4];
		for (int t = 0; t < 4; t++) {
			int64_t best = -1;
			for (int64_t i = 0; i < ps->n_neurons; i++) {
				bool used = false;
				for (int u = 0; u < t; u++)
					used |= top[u] == i;
				if (!used && (best < 0 || sc[i] > sc[best]))
					best = i;
			}
			top[t] = best;
			seen[ps->primary[best]]++;
		}
		for (int d = 0; d < 4; d++)
			assert_int_equal(seen[d], 1);
		free(sc);
	}
	partition_destroy(map);
}

static void seeds_change_random_but_not_sequential(void **state)
{
	fixture *f = *state;
	partition_map *a = make(f, PARTITION_RANDOM, 3, 0.5, 2, 1);
	partition_map *b = make(f, PARTITION_RANDOM, 3, 0.5, 2, 2);
	partition_map *c = make(f, PARTITION_RANDOM, 3, 0.5, 2, 1);
	partition_map *d = make(f, PARTITION_SEQUENTIAL, 3, 0.5, 2, 7);
	partition_map *e = make(f, PARTITION_SEQUENTIAL, 3, 0.5, 2, 8);
	bool differ = false;
	for (int s = 0; s < a->n_stages; s++) {
		if (a->stages[s].on_gateway)
			continue;
		size_t n = (size_t)a->stages[s].n_neurons;
		differ |= memcmp(a->stages[s].primary, b->stages[s].primary, n * 4) != 0;
		assert_memory_equal(a->stages[s].primary, c->stages[s].primary, n * 4);
		assert_memory_equal(d->stages[s].primary, e->stages[s].primary, n * 4);
	}
	assert_true(differ);
	partition_destroy(a);
	partition_destroy(b);
	partition_destroy(c);
	partition_destroy(d);
	partition_destroy(e);
}

static void loads_add_up(void **state)
{
	fixture *f = *state;
	partition_map *map = make(f, PARTITION_ROBUSTDICE, 4, 0.5, 3, 0);
	partition_load loads[4], whole;
	assert_int_equal(partition_loads(map, f->p, loads, &whole), DF_OK);
	int64_t prim = 0, macs = 0, bytes = 0, reps = 0;
	for (int d = 0; d < 4; d++) {
		prim += loads[d].primary_neurons;
		macs += loads[d].macs;
		bytes += loads[d].weight_bytes;
		reps += loads[d].replica_neurons;
	}
	assert_int_equal(prim, whole.primary_neurons);
	assert_int_equal(macs, whole.macs);
	assert_true(bytes > whole.weight_bytes);
	/* ratio 0.5 with copies 3: two replicas for half the neurons */
	int64_t want = 0;
	for (int s = 0; s < map->n_stages; s++)
		if (!map->stages[s].on_gateway)
			want += 2 * llround(0.5 * (double)map->stages[s].n_neurons);
	assert_int_equal(reps, want);
	/* held = primaries then replicas */
	int32_t *ids = NULL;
	size_t n = 0;
	assert_int_equal(partition_held(map, 0, 1, &ids, &n), DF_OK);
	assert_true(n > 0);
	free(ids);
	partition_destroy(map);
}

static void json_round_trips(void **state)
{
	fixture *f = *state;
	for (int m = 0; m < PARTITION_METHOD_COUNT; m++) {
		partition_map *map = make(f, (partition_method)m, 3, 0.25, 3, 4);
		map->version = 17;
		map->model = strdup("fmnist-test");
		char *js = NULL;
		assert_int_equal(partition_to_json(map, &js), DF_OK);
		partition_map *back = NULL;
		df_err err = partition_from_json(js, strlen(js), &back);
		if (err)
			fail_msg("parse: %s", df_err_msg());
		assert_int_equal(partition_validate(back, f->p), DF_OK);
		assert_int_equal(back->version, 17);
		assert_string_equal(back->model, "fmnist-test");
		assert_int_equal(back->method, map->method);
		assert_int_equal(back->copies, map->copies);
		for (int s = 0; s < map->n_stages; s++) {
			const partition_stage *a = &map->stages[s], *b = &back->stages[s];
			assert_int_equal(a->on_gateway, b->on_gateway);
			if (a->on_gateway)
				continue;
			assert_memory_equal(a->primary, b->primary, (size_t)a->n_neurons * 4);
			assert_memory_equal(a->replicas, b->replicas,
					    (size_t)a->n_neurons * (size_t)(map->copies - 1) * 4);
		}
		char *js2 = NULL;
		assert_int_equal(partition_to_json(back, &js2), DF_OK);
		assert_string_equal(js, js2);
		free(js);
		free(js2);
		partition_destroy(map);
		partition_destroy(back);
	}
}

static void validator_rejects_inconsistent_maps(void **state)
{
	fixture *f = *state;
	int s = 0;
	partition_map *map = make(f, PARTITION_ROBUSTDICE, 3, 1, 2, 0);
	while (map->stages[s].on_gateway)
		s++;
	partition_stage *ps = &map->stages[s];
	int32_t keep = ps->primary[0];
	ps->primary[0] = 3; /* unknown device */
	assert_int_equal(partition_validate(map, f->p), DF_EINVAL);
	ps->primary[0] = keep;
	int32_t rk = ps->replicas[0];
	ps->replicas[0] = keep; /* replica on its primary's device */
	assert_int_equal(partition_validate(map, f->p), DF_EINVAL);
	assert_non_null(strstr(df_err_msg(), "primary"));
	ps->replicas[0] = rk;
	assert_int_equal(partition_validate(map, f->p), DF_OK);
	ps->n_neurons++; /* wrong stage size */
	assert_int_equal(partition_validate(map, f->p), DF_EINVAL);
	ps->n_neurons--;
	free(map->devices[1]);
	map->devices[1] = strdup(map->devices[0]); /* duplicate device id */
	assert_int_equal(partition_validate(map, f->p), DF_EINVAL);
	partition_destroy(map);

	static const char *const bad[] = {
		"",
		"{}",
		"[1,2]",
		"{\"format\":2,\"version\":1,\"method\":\"full\",\"ratio\":1,\"copies\":2,\"score\":\"l1\",\"seed\":0,\"devices\":[\"a\",\"b\"],\"stages\":[]}",
		"{\"format\":1,\"version\":1,\"method\":\"magic\",\"ratio\":1,\"copies\":2,\"score\":\"l1\",\"seed\":0,\"devices\":[\"a\",\"b\"],\"stages\":[]}",
		"{\"format\":1,\"version\":1,\"method\":\"full\",\"ratio\":1.5,\"copies\":2,\"score\":\"l1\",\"seed\":0,\"devices\":[\"a\",\"b\"],\"stages\":[]}",
		"{\"format\":1,\"version\":1,\"method\":\"full\",\"ratio\":1,\"copies\":3,\"score\":\"l1\",\"seed\":0,\"devices\":[\"a\",\"b\"],\"stages\":[]}",
		"{\"format\":1,\"version\":1,\"method\":\"full\",\"ratio\":1,\"copies\":2,\"score\":\"l1\",\"seed\":0,\"devices\":[\"a\",\"b\"],\"stages\":[{\"neurons\":2,\"gateway\":false,\"primary\":[0,1],\"replicas\":[[1,1]]}]}",
		"{\"format\":1,\"version\":1,\"method\":\"full\",\"ratio\":1,\"copies\":2,\"score\":\"l1\",\"seed\":0,\"devices\":[\"a\",\"b\"],\"stages\":[{\"neurons\":2,\"gateway\":false,\"primary\":[0,2],\"replicas\":[[1,0]]}]}",
		"{\"format\":1,\"version\":1,\"method\":\"full\",\"ratio\":1,\"copies\":2,\"score\":\"l1\",\"seed\":0,\"devices\":[\"a\",\"b\"],\"stages\":[{\"neurons\":3,\"gateway\":false,\"primary\":[0,1],\"replicas\":[[1,0]]}]}",
		"{\"format\":1,\"version\":1,\"method\":\"full\",\"ratio\":1,\"copies\":2,\"score\":\"l1\",\"seed\":0,\"devices\":[\"a\",\"b\"],\"stages\":[{\"neurons\":2,\"gateway\":true,\"primary\":[0,1]}]}",
		"{\"format\":1,\"version\":1,\"method\":\"full\",\"ratio\":1,\"copies\":2,\"score\":\"l1\",\"seed\":0,\"devices\":[\"a\",\"a\"],\"stages\":[]}",
		"{\"format\":1,\"version\":1,\"method\":\"full\",\"ratio\":1,\"copies\":2,\"score\":\"l1\",\"seed\":0,\"devices\":[\"a\",\"b\"],\"stages\":[],\"extra\":1}",
		"{\"format\":1,\"version\":1,\"method\":\"full\",\"ratio\":\"1\",\"copies\":2,\"score\":\"l1\",\"seed\":0,\"devices\":[\"a\",\"b\"],\"stages\":[]}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		partition_map *m = NULL;
		if (partition_from_json(bad[i], strlen(bad[i]), &m) == DF_OK)
			fail_msg("accepted bad map #%zu: %s", i, bad[i]);
		assert_null(m);
	}
	/* a good hand-written one is accepted */
	const char *good = "{\"format\":1,\"version\":1,\"method\":\"full\",\"ratio\":1,\"copies\":2,\"score\":\"l1\",\"seed\":0,\"devices\":[\"a\",\"b\"],\"stages\":[{\"neurons\":2,\"gateway\":false,\"primary\":[0,1],\"replicas\":[[1,0]]},{\"neurons\":0,\"gateway\":true}]}";
	partition_map *m = NULL;
	assert_int_equal(partition_from_json(good, strlen(good), &m), DF_OK);
	partition_destroy(m);
}

static void bad_params_are_rejected(void **state)
{
	fixture *f = *state;
	partition_params pp;
	partition_map *m = NULL;
	partition_params_default(&pp);
	pp.n_devices = 0;
	assert_int_equal(partition_create(f->g, f->p, &pp, &m), DF_EINVAL);
	pp.n_devices = PARTITION_MAX_DEVICES + 1;
	assert_int_equal(partition_create(f->g, f->p, &pp, &m), DF_EINVAL);
	pp.n_devices = 2;
	pp.ratio = -0.1;
	assert_int_equal(partition_create(f->g, f->p, &pp, &m), DF_EINVAL);
	pp.ratio = 0.5;
	pp.copies = 0;
	assert_int_equal(partition_create(f->g, f->p, &pp, &m), DF_EINVAL);
	assert_null(m);
	partition_method pm;
	assert_int_equal(partition_method_parse("robustdice", &pm), DF_OK);
	assert_int_equal(pm, PARTITION_ROBUSTDICE);
	assert_int_equal(partition_method_parse("dice", &pm), DF_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(invariants_hold_for_every_method, setup, teardown),
		cmocka_unit_test_setup_teardown(logits_stage_runs_on_the_gateway, setup, teardown),
		cmocka_unit_test_setup_teardown(logits_off_the_gateway_is_fully_replicated, setup, teardown),
		cmocka_unit_test_setup_teardown(robustdice_replicates_the_most_important, setup, teardown),
		cmocka_unit_test_setup_teardown(seeds_change_random_but_not_sequential, setup, teardown),
		cmocka_unit_test_setup_teardown(loads_add_up, setup, teardown),
		cmocka_unit_test_setup_teardown(json_round_trips, setup, teardown),
		cmocka_unit_test_setup_teardown(validator_rejects_inconsistent_maps, setup, teardown),
		cmocka_unit_test_setup_teardown(bad_params_are_rejected, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
