/*
 * health_fsm.h - one device's health state machine and latency estimates
 * (DESIGN §5-6), as plain values: no I/O, no locks, no clock. The caller
 * (health.c) owns one health_fsm per device, serializes the calls and
 * passes the time in.
 *
 * States: UNKNOWN (registered, never contacted), UP, SUSPECT (failed
 * lately, still called by requests), DOWN (skipped by requests; only
 * probes bring it back).
 *
 *   UNKNOWN --any success--------------------------------------> UP
 *   UNKNOWN, UP --failure (n < down_after in a row)------------> SUSPECT
 *   UNKNOWN, UP, SUSPECT --down_after failures in a row--------> DOWN
 *   SUSPECT --stage call answered------------------------------> UP
 *   SUSPECT --probe answered, if the suspicion came from probes-> UP
 *   DOWN --up_after successful probes in a row-----------------> UP
 *   any --prepare/commit of a partition failed-----------------> DOWN
 *
 * A failure is a failed probe, a failed or late stage call. Hysteresis:
 * one answer clears a SUSPECT device, but a DOWN one needs up_after probe
 * answers in a row (a stage call answered while DOWN comes from a request
 * that started before the transition: it updates the estimates, not the
 * state). A probe answer does not clear a suspicion raised by a stage
 * call: /healthz answering says the process lives, not that it computes
 * stages in time; the next call (SUSPECT devices are still called)
 * decides. With down_after = 1 a failure goes straight to DOWN. Failures
 * in a row are counted in causal order: a stage call that failed but was
 * already in flight when the last counted failure was seen adds no
 * evidence (concurrent requests hit by the same stall all fail together)
 * and does not count, so a healthy device that stalls once is SUSPECT,
 * not DOWN; only a call issued after that failure, or a probe, counts.
 *
 * Deadlines: the deadline of a stage call is
 * clamp(multiplier x estimate, floor, cap), where the estimate is an EWMA
 * of that (device, stage)'s answered call latencies; with no estimate yet
 * it is the cap. A late call counts as a sample of the time waited (a
 * censored observation), so a device that became slower earns a longer
 * deadline within a few calls instead of flapping forever. SUSPECT devices
 * get the same deadline as UP ones: it already tracks their usual latency,
 * and a shorter one would turn one hiccup of a loaded machine into DOWN.
 * Memory per device is fixed: HEALTH_FSM_STAGE_SLOTS estimates, stage s
 * in slot s % HEALTH_FSM_STAGE_SLOTS (larger plans share slots).
 */
#ifndef DF_HEALTH_FSM_H
#define DF_HEALTH_FSM_H

#include <stdbool.h>
#include <stdint.h>

typedef enum dev_state {
	DEV_UNKNOWN = 0,  /* registered, not contacted yet */
	DEV_UP,
	DEV_SUSPECT,      /* failed lately; still called */
	DEV_DOWN,         /* skipped by requests */
	DEV_STATE_COUNT
} dev_state;

/* "UNKNOWN", "UP", "SUSPECT", "DOWN" ("?" out of range); static. */
const char *dev_state_name(dev_state s);

typedef enum health_fsm_input {
	HEALTH_FSM_PROBE_OK = 0,   /* /healthz (or a partition push) answered */
	HEALTH_FSM_PROBE_FAIL,
	HEALTH_FSM_CALL_OK,        /* a stage call answered */
	HEALTH_FSM_CALL_FAIL,      /* a stage call failed (not late) */
	HEALTH_FSM_CALL_TIMEOUT,   /* a stage call missed its deadline */
	HEALTH_FSM_PREPARE_FAIL,   /* a partition prepare/commit failed */
	HEALTH_FSM_INPUT_COUNT
} health_fsm_input;

/* "probe ok", "probe failed", ... (static). */
const char *health_fsm_input_name(health_fsm_input in);

typedef struct health_fsm_params {
	int down_after;        /* failures in a row -> DOWN (>= 1) */
	int up_after;          /* probe answers in a row: DOWN -> UP (>= 1) */
	double alpha;          /* EWMA weight of a new sample, (0, 1] */
	double multiplier;     /* deadline = multiplier x estimate (> 0) */
	long floor_ms;         /* shortest deadline (>= 1) */
	long cap_ms;           /* longest deadline, used with no estimate
				  (>= 1; a floor above it is lowered to it) */
} health_fsm_params;

/* Defaults of the tuning values (flags override them in the gateway). */
#define HEALTH_FSM_DEFAULT_ALPHA 0.2

#define HEALTH_FSM_STAGE_SLOTS 64

typedef struct health_fsm {
	dev_state state;
	int64_t since_ms;      /* when state was entered (caller's clock) */
	int64_t failures;      /* failures in a row */
	int64_t probe_oks;     /* probe answers in a row */
	bool call_suspect;     /* the current failures include a stage call */
	int64_t last_fail_ms;  /* when the last counted failure was seen */
	double probe_ms;       /* EWMA of probe round trips; 0 = none */
	double call_ms;        /* EWMA of answered calls, any stage; 0 = none */
	float stage_ms[HEALTH_FSM_STAGE_SLOTS]; /* EWMA per stage; 0 = none */
} health_fsm;

/* Starts f in state at now_ms, with no failures and no estimates. */
void health_fsm_init(health_fsm *f, dev_state state, int64_t now_ms);

/*
 * Feeds one observation: in, for calls the stage index (ignored for
 * probes; < 0 = none), the latency in ms (answered calls and probes; for
 * a failed or late call the time it took, so its start is now_ms - ms),
 * at now_ms. Returns the new state (f->since_ms = now_ms when it
 * changed).
 */
dev_state health_fsm_step(health_fsm *f, const health_fsm_params *p,
			  health_fsm_input in, int stage_index, double ms,
			  int64_t now_ms);

/* clamp(multiplier x estimate_ms, floor, cap); the cap when estimate_ms
 * <= 0 (no estimate). Always in [1, cap]. */
long health_fsm_clamp(const health_fsm_params *p, double estimate_ms);

/* Deadline in ms of a stage call to f's device (health_fsm_clamp of the
 * stage's estimate). */
long health_fsm_deadline(const health_fsm *f, const health_fsm_params *p,
			 int stage_index);

/* The stage's latency estimate in ms (0 = none). */
double health_fsm_stage_estimate(const health_fsm *f, int stage_index);

#endif
