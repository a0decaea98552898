/*
 * runtime.h - process-level settings every dicefleet program applies at
 * start-up, before anything else runs.
 */
#ifndef DF_RUNTIME_H
#define DF_RUNTIME_H

/*
 * OpenMP threads that spin while idle (libgomp's default) hold a core the
 * working thread needs whenever anything else runs on a small machine:
 * measured 2.3-2.6x slower oneDNN inference at 2 threads under load
 * (tests/bench/results/engine_vs_ort.md) and up to 20x slower worker stage
 * calls (services/worker/worker.h). libgomp reads OMP_WAIT_POLICY when it
 * is loaded, before main(), so when the operator has not chosen a policy
 * this sets "passive" and re-executes the program once (argv as given).
 * If the re-exec fails the program carries on with the default. Call it
 * first thing in main().
 */
void runtime_omp_passive(char **argv);

#endif
