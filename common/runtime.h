/*
 * runtime.h - process-level settings every dicefleet program applies at
 * start-up, before anything else runs.
 */
#ifndef DF_RUNTIME_H
#define DF_RUNTIME_H

/*
 * For the services (dicefleet-worker, dicefleet-gateway): OpenMP threads
 * that spin while idle (libgomp's default) hold a core that the service's
 * own HTTP threads and the other processes of a fleet need: measured up to
 * 20x slower worker stage calls at --threads 2 under load
 * (services/worker/worker.h). libgomp reads OMP_WAIT_POLICY when it is
 * loaded, before main(), so when the operator has not chosen a policy this
 * sets "passive" and re-executes the program once (argv as given). If the
 * re-exec fails the program carries on with the default. Call it first
 * thing in main().
 *
 * The `dicefleet` CLI does not call it: one inference at a time and
 * nothing else in the process, where libgomp's default (spin a while,
 * then sleep; fewer spins when oversubscribed) is what pays. Measured at 2
 * threads on an idle 2-core machine, median ms passive / default:
 * mobilenet_v2 6.6 / 3.3, resnet18 12.6 / 9.5, squeezenet1_1 4.6 / 3.0; and
 * with two busy loops on the same 2 cores 11.5 / 7.7 and 35.3 / 22.2
 * (tests/bench/results/engine_vs_ort.md has the comparison with ORT).
 */
void runtime_omp_passive(char **argv);

#endif
