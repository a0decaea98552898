#!/usr/bin/python3
"""Summarizes a bench_ort.sh run into results/engine_vs_ort.{md,json}.

usage: bench_report.py WORK_DIR RESULTS_DIR COMMAND_LINE

Reads WORK_DIR/raw.jsonl (one JSON line per timed process: the fields
printed by `dicefleet run --repeat` or ort_run.js, plus "tool", "round",
"model"), WORK_DIR/rss.jsonl (peak RSS per model), and the outputs
WORK_DIR/out_df_<model>/logits.npy, WORK_DIR/out_ort_<model>.npy,
WORK_DIR/<model>.torch.npy.

Latency: each process reports the median of its R timed runs. For a model
and thread count, the table gives the median over rounds of those medians
for each tool, and the ratio dicefleet/ORT as the median over rounds of the
per-round ratio (the two tools ran back to back in each round, in
alternating order, so a round's ratio compares like with like on a machine
whose load drifts). The spread column is the min..max of per-round ratios.

Accuracy: max |a - b| and the same divided by max |b| ("rel"), against ORT
and against PyTorch, plus whether the top-1 class agrees.
"""
import datetime
import json
import os
import platform
import statistics
import sys

import numpy as np


def load_jsonl(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    return rows


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def compare(a, b):
    d = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
    scale = float(np.max(np.abs(b)))
    return {"max_abs": d, "rel": d / scale if scale > 0 else float("inf"),
            "top1_same": int(np.argmax(a)) == int(np.argmax(b)),
            "top1": int(np.argmax(a))}


def main():
    work, results, cmdline = sys.argv[1], sys.argv[2], sys.argv[3]
    raw = load_jsonl(os.path.join(work, "raw.jsonl"))
    rss = {r["model"]: r for r in load_jsonl(os.path.join(work, "rss.jsonl"))}
    models = sorted({r["model"] for r in raw},
                    key=lambda m: ["resnet18", "mobilenet_v2",
                                   "squeezenet1_1"].index(m)
                    if m in ("resnet18", "mobilenet_v2", "squeezenet1_1")
                    else 9)
    threads = sorted({r["threads_asked"] for r in raw})
    # (label, dicefleet config, ORT config): both as shipped (dicefleet's
    # pool sleeps, ORT's spins), then like against like.
    pairings = [("as shipped", "default", "default"),
                ("neither spinning", "default", "nospin"),
                ("both spinning", "spin", "default")]
    rows = []
    for m, t, (label, cd, co) in ((m, t, p) for m in models
                                  for t in threads for p in pairings):
        if True:
            sel = [r for r in raw if r["model"] == m and r["threads_asked"] == t]
            rounds = sorted({r["round"] for r in sel})
            df = {r["round"]: r for r in sel
                  if r["tool"] == "dicefleet" and r["config"] == cd}
            ort = {r["round"]: r for r in sel
                   if r["tool"] == "onnxruntime" and r["config"] == co}
            paired = [k for k in rounds if k in df and k in ort]
            if not paired:
                continue
            ratios = [df[k]["median_ms"] / ort[k]["median_ms"] for k in paired]
            rows.append({
                "model": m, "threads": t, "config": label,
                "dicefleet_config": cd, "ort_config": co, "rounds": len(paired),
                "repeat": df[paired[0]]["repeat"],
                "dicefleet_median_ms": statistics.median(df[k]["median_ms"] for k in paired),
                "dicefleet_min_ms": min(df[k]["min_ms"] for k in paired),
                "dicefleet_p90_ms": statistics.median(df[k]["p90_ms"] for k in paired),
                "ort_median_ms": statistics.median(ort[k]["median_ms"] for k in paired),
                "ort_min_ms": min(ort[k]["min_ms"] for k in paired),
                "ort_p90_ms": statistics.median(ort[k]["p90_ms"] for k in paired),
                "ratio_median": statistics.median(ratios),
                "ratio_min": min(ratios), "ratio_max": max(ratios),
                "ratio_of_min": min(df[k]["min_ms"] for k in paired) /
                                min(ort[k]["min_ms"] for k in paired),
                "per_round_dicefleet_median_ms": [df[k]["median_ms"] for k in paired],
                "per_round_ort_median_ms": [ort[k]["median_ms"] for k in paired],
            })
    acc = []
    for m in models:
        d = np.load(os.path.join(work, f"out_df_{m}", "logits.npy"))
        o = np.load(os.path.join(work, f"out_ort_{m}.npy"))
        entry = {"model": m, "vs_ort": compare(d, o)}
        tp = os.path.join(work, f"{m}.torch.npy")
        if os.path.exists(tp):
            tt = np.load(tp)
            entry["vs_torch"] = compare(d, tt)
            entry["ort_vs_torch"] = compare(o, tt)
        r = rss.get(m)
        if r:
            entry.update({k: r[k] for k in r if k != "model"})
        acc.append(entry)

    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    ort_version = next((r.get("version") for r in raw if r["tool"] == "onnxruntime"), "?")
    machine = (f"{cpu_name()}, {os.cpu_count()} cores shared with other "
               f"jobs (load average at start: {rss.get('_load', {}).get('load', '?')})")
    summary = {"date": date, "command": cmdline, "machine": machine,
               "onnxruntime_node": ort_version, "latency": rows,
               "accuracy_and_memory": acc}
    os.makedirs(results, exist_ok=True)
    with open(os.path.join(results, "engine_vs_ort.json"), "w") as f:
        json.dump(summary, f, indent=2)

    L = []
    L.append("# dicefleet (oneDNN engine) vs ONNX Runtime")
    L.append("")
    L.append(f"* date: {date}")
    L.append(f"* machine: {machine}")
    L.append(f"* ONNX Runtime: onnxruntime-node {ort_version}, CPU EP, "
             "graphOptimizationLevel all, interOpNumThreads 1")
    L.append("* models: torchvision (random weights, seed 0), opset 13, "
             "input [1,3,224,224]")
    L.append(f"* command: `{cmdline}`")
    L.append("")
    L.append("Each round runs both tools back to back (order alternating) as "
             "separate processes; each process does 1 warm-up and R timed "
             "runs and reports their median. Table: median over rounds of "
             "those medians; ratio = median over rounds of the per-round "
             "ratio dicefleet/ORT (range in brackets); below 1.0 means "
             "dicefleet is faster.")
    L.append("")
    L.append("Configurations (2 threads): `as shipped` runs both tools "
             "unchanged (dicefleet sets `OMP_WAIT_POLICY=passive` for "
             "itself, so its idle pool threads sleep; ORT's spin); "
             "`neither spinning` pairs that dicefleet run with ORT "
             "`session.intra_op.allow_spinning=0`; `both spinning` pairs "
             "dicefleet with `OMP_WAIT_POLICY=ACTIVE` with ORT as shipped. "
             "With 1 thread there is no pool and only `as shipped` runs.")
    L.append("")
    L.append("| model | threads | config | rounds x R | dicefleet median (min) ms | "
             "ORT median (min) ms | ratio dicefleet/ORT [range] |")
    L.append("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        L.append(f"| {r['model']} | {r['threads']} | {r['config']} | {r['rounds']} x {r['repeat']} | "
                 f"{r['dicefleet_median_ms']:.2f} ({r['dicefleet_min_ms']:.2f}) | "
                 f"{r['ort_median_ms']:.2f} ({r['ort_min_ms']:.2f}) | "
                 f"**{r['ratio_median']:.3f}** [{r['ratio_min']:.2f}..{r['ratio_max']:.2f}] |")
    L.append("")
    L.append("Accuracy (logits; rel = max abs difference / max |reference logit|) "
             "and memory (peak RSS of one `dicefleet run --threads 1`, "
             "from /usr/bin/time -v):")
    L.append("")
    L.append("| model | vs ORT: max abs / rel / same top-1 | vs PyTorch: "
             "max abs / rel / same top-1 | ORT vs PyTorch rel | model file MB | "
             "dicefleet peak RSS MB |")
    L.append("| --- | --- | --- | --- | --- | --- |")
    for a in acc:
        v, t, ot = a["vs_ort"], a.get("vs_torch"), a.get("ort_vs_torch")
        tcol = f"{t['max_abs']:.2e} / {t['rel']:.2e} / {'yes' if t['top1_same'] else 'NO'}" if t else "-"
        otcol = f"{ot['rel']:.2e}" if ot else "-"
        L.append(f"| {a['model']} | {v['max_abs']:.2e} / {v['rel']:.2e} / "
                 f"{'yes' if v['top1_same'] else 'NO'} | {tcol} | {otcol} | "
                 f"{a.get('model_mb', 0):.1f} | {a.get('peak_rss_mb', 0):.1f} |")
    L.append("")
    with open(os.path.join(results, "engine_vs_ort.md"), "w") as f:
        f.write("\n".join(L))
    print("\n".join(L))


if __name__ == "__main__":
    main()
