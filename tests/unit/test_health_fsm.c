/*
 * Unit tests for services/gateway/health_fsm.c, the gateway's per-device
 * health state machine: every transition of UNKNOWN/UP/SUSPECT/DOWN, the
 * hysteresis (one answer clears SUSPECT, up_after probes in a row clear
 * DOWN, a probe does not clear a stage call's suspicion), forced DOWN,
 * since_ms, failures counted in causal order, the latency estimates (EWMA per stage, censored samples of
 * late calls) and the deadline clamp.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "health_fsm.h"

static const health_fsm_params P = {
	.down_after = 2,
	.up_after = 2,
	.alpha = 0.5,
	.multiplier = 4,
	.floor_ms = 100,
	.cap_ms = 1500,
};

/* One step at time t; returns the new state. */
static dev_state step(health_fsm *f, health_fsm_input in, int64_t t)
{
	return health_fsm_step(f, &P, in, 0, 10, t);
}

/* The same with other parameters. */
static dev_state pstep(health_fsm *f, const health_fsm_params *p,
		       health_fsm_input in, int64_t t)
{
	return health_fsm_step(f, p, in, 0, 1, t);
}

/* A device in state s (reached through real steps), failures as left. */
static void reach(health_fsm *f, dev_state s)
{
	health_fsm_init(f, DEV_UNKNOWN, 0);
	switch (s) {
	case DEV_UNKNOWN:
		break;
	case DEV_UP:
		step(f, HEALTH_FSM_PROBE_OK, 1);
		break;
	case DEV_SUSPECT:
		step(f, HEALTH_FSM_PROBE_OK, 1);
		step(f, HEALTH_FSM_PROBE_FAIL, 2);
		break;
	case DEV_DOWN:
		step(f, HEALTH_FSM_PREPARE_FAIL, 1);
		break;
	default:
		fail();
	}
	assert_int_equal(f->state, s);
}

static void test_names(void **state)
{
	(void)state;
	assert_string_equal(dev_state_name(DEV_UNKNOWN), "UNKNOWN");
	assert_string_equal(dev_state_name(DEV_UP), "UP");
	assert_string_equal(dev_state_name(DEV_SUSPECT), "SUSPECT");
	assert_string_equal(dev_state_name(DEV_DOWN), "DOWN");
	assert_string_equal(dev_state_name(DEV_STATE_COUNT), "?");
	assert_string_equal(dev_state_name((dev_state)-1), "?");
	for (int i = 0; i < HEALTH_FSM_INPUT_COUNT; i++)
		assert_string_not_equal(
			health_fsm_input_name((health_fsm_input)i), "?");
	assert_string_equal(health_fsm_input_name(HEALTH_FSM_INPUT_COUNT), "?");
}

static void test_init(void **state)
{
	(void)state;
	health_fsm f;
	memset(&f, 0x5a, sizeof f);
	health_fsm_init(&f, DEV_UNKNOWN, 1234);
	assert_int_equal(f.state, DEV_UNKNOWN);
	assert_int_equal(f.since_ms, 1234);
	assert_int_equal(f.failures, 0);
	assert_int_equal(f.probe_oks, 0);
	assert_false(f.call_suspect);
	assert_true(f.probe_ms == 0 && f.call_ms == 0);
	for (int s = 0; s < HEALTH_FSM_STAGE_SLOTS; s++) {
		assert_true(health_fsm_stage_estimate(&f, s) == 0);
		assert_int_equal(health_fsm_deadline(&f, &P, s), P.cap_ms);
	}
}

static void test_unknown(void **state)
{
	(void)state;
	health_fsm f;
	/* Any answer: UP at once (first contact needs no hysteresis). */
	reach(&f, DEV_UNKNOWN);
	assert_int_equal(step(&f, HEALTH_FSM_PROBE_OK, 5), DEV_UP);
	assert_int_equal(f.since_ms, 5);
	reach(&f, DEV_UNKNOWN);
	assert_int_equal(step(&f, HEALTH_FSM_CALL_OK, 5), DEV_UP);
	/* A failure: SUSPECT, then DOWN at down_after. */
	reach(&f, DEV_UNKNOWN);
	assert_int_equal(step(&f, HEALTH_FSM_PROBE_FAIL, 5), DEV_SUSPECT);
	assert_int_equal(step(&f, HEALTH_FSM_PROBE_FAIL, 6), DEV_DOWN);
	assert_int_equal(f.since_ms, 6);
	reach(&f, DEV_UNKNOWN);
	assert_int_equal(step(&f, HEALTH_FSM_PREPARE_FAIL, 5), DEV_DOWN);
}

static void test_up_to_suspect(void **state)
{
	(void)state;
	const health_fsm_input fails[] = {HEALTH_FSM_PROBE_FAIL,
					  HEALTH_FSM_CALL_FAIL,
					  HEALTH_FSM_CALL_TIMEOUT};
	for (size_t i = 0; i < sizeof fails / sizeof fails[0]; i++) {
		health_fsm f;
		reach(&f, DEV_UP);
		assert_int_equal(step(&f, fails[i], 50), DEV_SUSPECT);
		assert_int_equal(f.failures, 1);
		assert_int_equal(f.since_ms, 50);
		assert_int_equal(f.call_suspect,
				 fails[i] != HEALTH_FSM_PROBE_FAIL);
		/* The second failure in a row: DOWN. */
		assert_int_equal(step(&f, fails[i], 60), DEV_DOWN);
		assert_int_equal(f.failures, 2);
		assert_int_equal(f.since_ms, 60);
	}
	/* Successes keep UP and leave since_ms alone. */
	health_fsm f;
	reach(&f, DEV_UP);
	assert_int_equal(step(&f, HEALTH_FSM_PROBE_OK, 70), DEV_UP);
	assert_int_equal(step(&f, HEALTH_FSM_CALL_OK, 80), DEV_UP);
	assert_int_equal(f.since_ms, 1);
}

static void test_down_after(void **state)
{
	(void)state;
	health_fsm_params p = P;
	health_fsm f;
	/* down_after 3: SUSPECT holds through two failures. */
	p.down_after = 3;
	reach(&f, DEV_UP);
	assert_int_equal(pstep(&f, &p, HEALTH_FSM_CALL_FAIL, 10),
			 DEV_SUSPECT);
	assert_int_equal(pstep(&f, &p, HEALTH_FSM_PROBE_FAIL, 20),
			 DEV_SUSPECT);
	assert_int_equal(f.since_ms, 10);
	assert_int_equal(pstep(&f, &p, HEALTH_FSM_CALL_TIMEOUT, 30),
			 DEV_DOWN);
	/* down_after 1 (and a bad 0, read as 1): straight to DOWN. */
	for (int da = 0; da <= 1; da++) {
		p.down_after = da;
		reach(&f, DEV_UP);
		assert_int_equal(pstep(&f, &p, HEALTH_FSM_CALL_FAIL, 10),
				 DEV_DOWN);
	}
}

static void test_suspect_recovery(void **state)
{
	(void)state;
	health_fsm f;
	/* One stage call answered clears any suspicion. */
	reach(&f, DEV_SUSPECT);
	assert_int_equal(step(&f, HEALTH_FSM_CALL_OK, 10), DEV_UP);
	assert_int_equal(f.failures, 0);
	assert_int_equal(f.since_ms, 10);
	reach(&f, DEV_UP);
	step(&f, HEALTH_FSM_CALL_TIMEOUT, 5);
	assert_int_equal(step(&f, HEALTH_FSM_CALL_OK, 10), DEV_UP);
	assert_false(f.call_suspect);
	/* A probe answer clears a probe's suspicion... */
	reach(&f, DEV_SUSPECT);
	assert_false(f.call_suspect);
	assert_int_equal(step(&f, HEALTH_FSM_PROBE_OK, 10), DEV_UP);
	assert_int_equal(f.failures, 0);
	/* ...but not a stage call's, nor does it break the row of failures. */
	reach(&f, DEV_UP);
	assert_int_equal(step(&f, HEALTH_FSM_CALL_TIMEOUT, 5), DEV_SUSPECT);
	assert_int_equal(step(&f, HEALTH_FSM_PROBE_OK, 6), DEV_SUSPECT);
	assert_int_equal(f.failures, 1);
	assert_int_equal(f.since_ms, 5);
	/* (a 10 ms call issued after the failure at 5) */
	assert_int_equal(step(&f, HEALTH_FSM_CALL_FAIL, 20), DEV_DOWN);
	/* A probe failure after a call failure keeps the call's suspicion. */
	reach(&f, DEV_UP);
	health_fsm_params p = P;
	p.down_after = 5;
	pstep(&f, &p, HEALTH_FSM_CALL_FAIL, 5);
	pstep(&f, &p, HEALTH_FSM_PROBE_FAIL, 6);
	assert_int_equal(pstep(&f, &p, HEALTH_FSM_PROBE_OK, 7),
			 DEV_SUSPECT);
}

static void test_down_hysteresis(void **state)
{
	(void)state;
	health_fsm f;
	reach(&f, DEV_DOWN);
	/* up_after (2) probe answers in a row. */
	assert_int_equal(step(&f, HEALTH_FSM_PROBE_OK, 10), DEV_DOWN);
	assert_int_equal(f.since_ms, 1);
	assert_int_equal(step(&f, HEALTH_FSM_PROBE_OK, 20), DEV_UP);
	assert_int_equal(f.since_ms, 20);
	assert_int_equal(f.failures, 0);
	assert_false(f.call_suspect);
	/* A failure in between starts the row again. */
	reach(&f, DEV_DOWN);
	step(&f, HEALTH_FSM_PROBE_OK, 10);
	assert_int_equal(step(&f, HEALTH_FSM_PROBE_FAIL, 15), DEV_DOWN);
	assert_int_equal(step(&f, HEALTH_FSM_PROBE_OK, 20), DEV_DOWN);
	assert_int_equal(step(&f, HEALTH_FSM_PROBE_OK, 30), DEV_UP);
	reach(&f, DEV_DOWN);
	step(&f, HEALTH_FSM_PROBE_OK, 10);
	assert_int_equal(step(&f, HEALTH_FSM_CALL_TIMEOUT, 15), DEV_DOWN);
	assert_int_equal(step(&f, HEALTH_FSM_PROBE_OK, 20), DEV_DOWN);
	/* Stage call answers while DOWN (stale requests) do not count. */
	reach(&f, DEV_DOWN);
	for (int i = 0; i < 5; i++)
		assert_int_equal(step(&f, HEALTH_FSM_CALL_OK, 10 + i),
				 DEV_DOWN);
	assert_int_equal(step(&f, HEALTH_FSM_PROBE_OK, 20), DEV_DOWN);
	assert_int_equal(step(&f, HEALTH_FSM_PROBE_OK, 21), DEV_UP);
	/* up_after 3 and 1. */
	health_fsm_params p = P;
	p.up_after = 3;
	reach(&f, DEV_DOWN);
	assert_int_equal(pstep(&f, &p, HEALTH_FSM_PROBE_OK, 10), DEV_DOWN);
	assert_int_equal(pstep(&f, &p, HEALTH_FSM_PROBE_OK, 11), DEV_DOWN);
	assert_int_equal(pstep(&f, &p, HEALTH_FSM_PROBE_OK, 12), DEV_UP);
	p.up_after = 1;
	reach(&f, DEV_DOWN);
	assert_int_equal(pstep(&f, &p, HEALTH_FSM_PROBE_OK, 10), DEV_UP);
	/* Probe answers from before the fall do not count towards recovery. */
	reach(&f, DEV_UP);
	for (int i = 0; i < 5; i++)
		step(&f, HEALTH_FSM_PROBE_OK, 2 + i);
	step(&f, HEALTH_FSM_PREPARE_FAIL, 10);
	assert_int_equal(step(&f, HEALTH_FSM_PROBE_OK, 11), DEV_DOWN);
}

static void test_prepare_fail(void **state)
{
	(void)state;
	const dev_state from[] = {DEV_UNKNOWN, DEV_UP, DEV_SUSPECT, DEV_DOWN};
	for (size_t i = 0; i < sizeof from / sizeof from[0]; i++) {
		health_fsm f;
		reach(&f, from[i]);
		int64_t since = f.since_ms;
		assert_int_equal(step(&f, HEALTH_FSM_PREPARE_FAIL, 99),
				 DEV_DOWN);
		assert_int_equal(f.since_ms, from[i] == DEV_DOWN ? since : 99);
		assert_int_equal(f.probe_oks, 0);
	}
}

static void test_estimates(void **state)
{
	(void)state;
	health_fsm f;
	reach(&f, DEV_UP);
	/* The first sample starts an estimate; then EWMA with alpha 0.5. */
	health_fsm_step(&f, &P, HEALTH_FSM_CALL_OK, 3, 40, 10);
	assert_true(health_fsm_stage_estimate(&f, 3) == 40);
	health_fsm_step(&f, &P, HEALTH_FSM_CALL_OK, 3, 20, 11);
	assert_true(health_fsm_stage_estimate(&f, 3) == 30);
	/* Per stage: stage 4 has none, and the device-wide one saw both. */
	assert_true(health_fsm_stage_estimate(&f, 4) == 0);
	assert_true(f.call_ms == 30);
	health_fsm_step(&f, &P, HEALTH_FSM_CALL_OK, 4, 200, 12);
	assert_true(health_fsm_stage_estimate(&f, 4) == 200);
	assert_true(health_fsm_stage_estimate(&f, 3) == 30);
	assert_true(f.call_ms == 115);
	/* Bounded memory: stage 3 + SLOTS shares stage 3's slot. */
	assert_true(health_fsm_stage_estimate(&f, 3 + HEALTH_FSM_STAGE_SLOTS) ==
		    30);
	/* No stage (< 0): only the device-wide estimate. */
	health_fsm_step(&f, &P, HEALTH_FSM_CALL_OK, -1, 15, 13);
	assert_true(f.call_ms == 65);
	assert_true(health_fsm_stage_estimate(&f, -1) == 0);
	assert_int_equal(health_fsm_deadline(&f, &P, -1), P.cap_ms);
	/* Probes have their own estimate; failures and 0 ms add nothing. */
	assert_true(f.probe_ms == 10); /* reach()'s probe */
	health_fsm_step(&f, &P, HEALTH_FSM_PROBE_OK, 0, 8, 14);
	health_fsm_step(&f, &P, HEALTH_FSM_PROBE_OK, 0, 4, 15);
	assert_true(f.probe_ms == 6.5);
	assert_true(f.call_ms == 65);
	health_fsm_step(&f, &P, HEALTH_FSM_PROBE_OK, 0, 0, 16);
	health_fsm_step(&f, &P, HEALTH_FSM_PROBE_FAIL, 0, 900, 17);
	health_fsm_step(&f, &P, HEALTH_FSM_CALL_FAIL, 3, 900, 18);
	assert_true(f.probe_ms == 6.5);
	assert_true(health_fsm_stage_estimate(&f, 3) == 30);
	assert_true(f.call_ms == 65);
	/* Answers while DOWN still teach the estimate. */
	reach(&f, DEV_DOWN);
	health_fsm_step(&f, &P, HEALTH_FSM_CALL_OK, 2, 12, 20);
	assert_true(health_fsm_stage_estimate(&f, 2) == 12);
	/* A bad alpha falls back to the default. */
	health_fsm_params p = P;
	p.alpha = 0;
	reach(&f, DEV_UP);
	health_fsm_step(&f, &p, HEALTH_FSM_CALL_OK, 0, 100, 2);
	health_fsm_step(&f, &p, HEALTH_FSM_CALL_OK, 0, 200, 3);
	assert_true(fabs(health_fsm_stage_estimate(&f, 0) -
			 (100 + HEALTH_FSM_DEFAULT_ALPHA * 100)) < 1e-3);
}

static void test_late_calls(void **state)
{
	(void)state;
	health_fsm f;
	health_fsm_params p = P;
	p.down_after = 100;
	reach(&f, DEV_UP);
	/* No estimate: a late call does not start one (the cap stays). */
	health_fsm_step(&f, &p, HEALTH_FSM_CALL_TIMEOUT, 1, 1500, 10);
	assert_true(health_fsm_stage_estimate(&f, 1) == 0);
	assert_int_equal(health_fsm_deadline(&f, &p, 1), p.cap_ms);
	/* With one, the time waited is a sample of at least that much. */
	health_fsm_step(&f, &p, HEALTH_FSM_CALL_OK, 1, 10, 11);
	assert_int_equal(health_fsm_deadline(&f, &p, 1), 100); /* floor */
	/* (each late call below was sent after the previous one failed) */
	health_fsm_step(&f, &p, HEALTH_FSM_CALL_TIMEOUT, 1, 100, 1000);
	assert_true(health_fsm_stage_estimate(&f, 1) == 55);
	assert_int_equal(health_fsm_deadline(&f, &p, 1), 220);
	health_fsm_step(&f, &p, HEALTH_FSM_CALL_TIMEOUT, 1, 220, 1300);
	assert_true(health_fsm_stage_estimate(&f, 1) == 137.5);
	assert_int_equal(health_fsm_deadline(&f, &p, 1), 550);
	/* The device-wide estimate is of answers only. */
	assert_true(f.call_ms == 10);
	/* A late call never lowers an estimate. */
	health_fsm_step(&f, &p, HEALTH_FSM_CALL_TIMEOUT, 1, 50, 1400);
	assert_true(health_fsm_stage_estimate(&f, 1) == 137.5);
	/* Answers bring it back down. */
	for (int i = 0; i < 20; i++)
		health_fsm_step(&f, &p, HEALTH_FSM_CALL_OK, 1, 10, 1500 + i);
	assert_int_equal(health_fsm_deadline(&f, &p, 1), 100);
}

static void test_clamp(void **state)
{
	(void)state;
	health_fsm_params p = P;
	assert_int_equal(health_fsm_clamp(&p, 0), 1500);    /* no estimate */
	assert_int_equal(health_fsm_clamp(&p, -3), 1500);
	assert_int_equal(health_fsm_clamp(&p, NAN), 1500);
	assert_int_equal(health_fsm_clamp(&p, 1), 100);     /* floor */
	assert_int_equal(health_fsm_clamp(&p, 25), 100);
	assert_int_equal(health_fsm_clamp(&p, 25.25), 101); /* rounded up */
	assert_int_equal(health_fsm_clamp(&p, 50), 200);
	assert_int_equal(health_fsm_clamp(&p, 374.9), 1500);
	assert_int_equal(health_fsm_clamp(&p, 375), 1500);  /* cap */
	assert_int_equal(health_fsm_clamp(&p, 1e9), 1500);
	assert_int_equal(health_fsm_clamp(&p, INFINITY), 1500);
	p.multiplier = 2.5;
	assert_int_equal(health_fsm_clamp(&p, 100), 250);
	/* A floor above the cap is lowered to it. */
	p.floor_ms = 30000;
	assert_int_equal(health_fsm_clamp(&p, 1), 1500);
	assert_int_equal(health_fsm_clamp(&p, 0), 1500);
	/* Nonsense bounds still give a positive deadline. */
	p = (health_fsm_params){.multiplier = 4};
	assert_int_equal(health_fsm_clamp(&p, 0), 1);
	assert_int_equal(health_fsm_clamp(&p, 100), 1);
	p = P;
	p.multiplier = NAN;
	assert_int_equal(health_fsm_clamp(&p, 100), 100);
	/* Per stage deadline = clamp of that stage's estimate. */
	health_fsm f;
	reach(&f, DEV_UP);
	health_fsm_step(&f, &P, HEALTH_FSM_CALL_OK, 0, 5, 2);
	health_fsm_step(&f, &P, HEALTH_FSM_CALL_OK, 1, 60, 2);
	health_fsm_step(&f, &P, HEALTH_FSM_CALL_OK, 2, 900, 2);
	assert_int_equal(health_fsm_deadline(&f, &P, 0), 100);
	assert_int_equal(health_fsm_deadline(&f, &P, 1), 240);
	assert_int_equal(health_fsm_deadline(&f, &P, 2), 1500);
	assert_int_equal(health_fsm_deadline(&f, &P, 3), 1500);
}

/* The SIGSTOP story of tests/integration/test_fleet_sigstop.sh. */
static void test_stopped_worker(void **state)
{
	(void)state;
	health_fsm f;
	health_fsm_init(&f, DEV_UNKNOWN, 0);
	assert_int_equal(step(&f, HEALTH_FSM_PROBE_OK, 100), DEV_UP);
	for (int i = 0; i < 10; i++)
		health_fsm_step(&f, &P, HEALTH_FSM_CALL_OK, 0, 5, 200 + i);
	long d = health_fsm_deadline(&f, &P, 0);
	assert_int_equal(d, P.floor_ms);
	assert_int_equal(health_fsm_step(&f, &P, HEALTH_FSM_CALL_TIMEOUT, 0,
					 (double)d, 1000),
			 DEV_SUSPECT);
	/* still called, with a deadline still well under the cap */
	d = health_fsm_deadline(&f, &P, 0);
	assert_true(d >= P.floor_ms && d < P.cap_ms);
	assert_int_equal(step(&f, HEALTH_FSM_PROBE_FAIL, 1500), DEV_DOWN);
	assert_int_equal(f.since_ms, 1500);
	/* SIGCONT */
	assert_int_equal(step(&f, HEALTH_FSM_PROBE_OK, 2000), DEV_DOWN);
	assert_int_equal(step(&f, HEALTH_FSM_PROBE_OK, 2500), DEV_UP);
	assert_int_equal(f.since_ms, 2500);
}

/* Calls of concurrent requests that fail together count once: only a call
 * issued after the counted failure, or a probe, takes the device DOWN. */
static void test_concurrent_failures(void **state)
{
	(void)state;
	const health_fsm_input fails[] = {HEALTH_FSM_CALL_FAIL,
					  HEALTH_FSM_CALL_TIMEOUT};
	for (size_t i = 0; i < 2; i++) {
		health_fsm f;
		reach(&f, DEV_UP);
		/* three calls in flight since ~500 ms miss at 1000..1002 */
		for (int k = 0; k < 3; k++) {
			assert_int_equal(health_fsm_step(&f, &P, fails[i], 0, 500,
							 1000 + k),
					 DEV_SUSPECT);
			assert_int_equal(f.failures, 1);
		}
		assert_int_equal(f.since_ms, 1000);
		/* a call issued at 1100, after the first failure, counts */
		assert_int_equal(health_fsm_step(&f, &P, fails[i], 0, 500, 1600),
				 DEV_DOWN);
		/* a probe failure counts whenever it comes */
		reach(&f, DEV_UP);
		assert_int_equal(health_fsm_step(&f, &P, fails[i], 0, 500, 1000),
				 DEV_SUSPECT);
		assert_int_equal(step(&f, HEALTH_FSM_PROBE_FAIL, 1001), DEV_DOWN);
	}
}

/* Late calls that were in flight together in one stall are one sample:
 * the deadline does not climb toward the cap with every one of them. */
static void test_concurrent_late_calls_one_sample(void **state)
{
	(void)state;
	health_fsm f;
	reach(&f, DEV_UP);
	for (int i = 0; i < 5; i++)
		health_fsm_step(&f, &P, HEALTH_FSM_CALL_OK, 0, 10, 100 + i);
	assert_int_equal(health_fsm_deadline(&f, &P, 0), P.floor_ms);
	/* 16 calls sent at ~1000 all miss their 100 ms deadline */
	assert_int_equal(health_fsm_step(&f, &P, HEALTH_FSM_CALL_TIMEOUT, 0, 100,
					 1100),
			 DEV_SUSPECT);
	long after_first = health_fsm_deadline(&f, &P, 0);
	assert_true(after_first > P.floor_ms); /* the counted one is a sample */
	for (int k = 1; k < 16; k++)
		assert_int_equal(health_fsm_step(&f, &P, HEALTH_FSM_CALL_TIMEOUT,
						 0, 100 + k, 1100 + k),
				 DEV_SUSPECT);
	assert_int_equal(health_fsm_deadline(&f, &P, 0), after_first);
	assert_int_equal(f.failures, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_init),
		cmocka_unit_test(test_unknown),
		cmocka_unit_test(test_up_to_suspect),
		cmocka_unit_test(test_down_after),
		cmocka_unit_test(test_suspect_recovery),
		cmocka_unit_test(test_down_hysteresis),
		cmocka_unit_test(test_prepare_fail),
		cmocka_unit_test(test_estimates),
		cmocka_unit_test(test_late_calls),
		cmocka_unit_test(test_clamp),
		cmocka_unit_test(test_stopped_worker),
		cmocka_unit_test(test_concurrent_failures),
		cmocka_unit_test(test_concurrent_late_calls_one_sample),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
