/*
 * health_fsm.c - see health_fsm.h. Invariants kept by health_fsm_step():
 * UP implies failures == 0 and !call_suspect; SUSPECT implies
 * 0 < failures < down_after; estimates are 0 (none) or > 0.
 */
#include "health_fsm.h"

#include <stddef.h>

static const char *const state_names[] = {"UNKNOWN", "UP", "SUSPECT", "DOWN"};
_Static_assert(sizeof state_names / sizeof state_names[0] == DEV_STATE_COUNT,
	       "one name per device state");

static const char *const input_names[] = {
	"probe ok", "probe failed", "stage call ok", "stage call failed",
	"stage call late", "partition push failed"};
_Static_assert(sizeof input_names / sizeof input_names[0] ==
		       HEALTH_FSM_INPUT_COUNT,
	       "one name per input");

const char *dev_state_name(dev_state s)
{
	return (unsigned)s < DEV_STATE_COUNT ? state_names[s] : "?";
}

const char *health_fsm_input_name(health_fsm_input in)
{
	return (unsigned)in < HEALTH_FSM_INPUT_COUNT ? input_names[in] : "?";
}

void health_fsm_init(health_fsm *f, dev_state state, int64_t now_ms)
{
	*f = (health_fsm){.state = state, .since_ms = now_ms};
}

static int slot(int stage_index)
{
	return stage_index < 0 ? -1 : stage_index % HEALTH_FSM_STAGE_SLOTS;
}

/* EWMA update of *est (0 = none: the sample starts it). */
static double ewma(double est, double sample, double alpha)
{
	if (!(alpha > 0) || alpha > 1)
		alpha = HEALTH_FSM_DEFAULT_ALPHA;
	return est > 0 ? est + alpha * (sample - est) : sample;
}

static void note_call(health_fsm *f, const health_fsm_params *p,
		      int stage_index, double ms, bool late)
{
	if (!(ms > 0))
		return;
	int k = slot(stage_index);
	if (late) {
		/* At least ms: raises an existing estimate, never starts one
		 * (with no estimate the deadline is the cap already). */
		if (k >= 0 && f->stage_ms[k] > 0 && ms > f->stage_ms[k])
			f->stage_ms[k] =
				(float)ewma(f->stage_ms[k], ms, p->alpha);
		return;
	}
	if (k >= 0)
		f->stage_ms[k] = (float)ewma(f->stage_ms[k], ms, p->alpha);
	f->call_ms = ewma(f->call_ms, ms, p->alpha);
}

dev_state health_fsm_step(health_fsm *f, const health_fsm_params *p,
			  health_fsm_input in, int stage_index, double ms,
			  int64_t now_ms)
{
	const int64_t down_after = p->down_after >= 1 ? p->down_after : 1;
	const int64_t up_after = p->up_after >= 1 ? p->up_after : 1;
	const dev_state from = f->state;
	dev_state to = from;
	switch (in) {
	case HEALTH_FSM_PROBE_OK:
		if (ms > 0)
			f->probe_ms = ewma(f->probe_ms, ms, p->alpha);
		f->probe_oks++;
		if (from == DEV_DOWN ? f->probe_oks >= up_after
				     : from != DEV_SUSPECT || !f->call_suspect)
			to = DEV_UP;
		break;
	case HEALTH_FSM_CALL_OK:
		note_call(f, p, stage_index, ms, false);
		if (from != DEV_DOWN)
			to = DEV_UP;
		break;
	case HEALTH_FSM_PROBE_FAIL:
	case HEALTH_FSM_CALL_FAIL:
	case HEALTH_FSM_CALL_TIMEOUT:
		if (in != HEALTH_FSM_PROBE_FAIL)
			f->call_suspect = true;
		f->probe_oks = 0;
		/* A call in flight at the last counted failure adds no
		 * evidence: neither a failure nor a latency sample (a stall
		 * seen by many concurrent calls would otherwise push the
		 * deadline toward the cap). */
		if (in != HEALTH_FSM_PROBE_FAIL && f->failures > 0 &&
		    (double)now_ms - (ms > 0 ? ms : 0) < (double)f->last_fail_ms)
			break;
		if (in == HEALTH_FSM_CALL_TIMEOUT)
			note_call(f, p, stage_index, ms, true);
		f->failures++;
		f->last_fail_ms = now_ms;
		if (from != DEV_DOWN)
			to = f->failures >= down_after ? DEV_DOWN : DEV_SUSPECT;
		break;
	case HEALTH_FSM_PREPARE_FAIL:
		f->probe_oks = 0;
		f->failures++;
		to = DEV_DOWN;
		break;
	default:
		break;
	}
	if (to == DEV_UP) {
		f->failures = 0;
		f->call_suspect = false;
	}
	if (to != from) {
		f->state = to;
		f->since_ms = now_ms;
	}
	return to;
}

long health_fsm_clamp(const health_fsm_params *p, double estimate_ms)
{
	long cap = p->cap_ms >= 1 ? p->cap_ms : 1;
	long lo = p->floor_ms >= 1 ? p->floor_ms : 1;
	if (lo > cap)
		lo = cap;
	if (!(estimate_ms > 0))
		return cap;
	double t = p->multiplier * estimate_ms;
	if (!(t > (double)lo)) /* also NaN and a bad multiplier */
		return lo;
	if (t >= (double)cap)
		return cap;
	long whole = (long)t;
	return whole + ((double)whole < t);
}

double health_fsm_stage_estimate(const health_fsm *f, int stage_index)
{
	int k = slot(stage_index);
	return k >= 0 ? (double)f->stage_ms[k] : 0.0;
}

long health_fsm_deadline(const health_fsm *f, const health_fsm_params *p,
			 int stage_index)
{
	return health_fsm_clamp(p, health_fsm_stage_estimate(f, stage_index));
}
