"""Turns robustness.jsonl (from robustness_report.sh) into robustness.md and
PNG plots. Every number comes from a `dicefleet eval` run in the file."""
import glob
import json
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(outdir):
    rows = []
    for path in sorted(glob.glob(f"{outdir}/robustness-*.jsonl")):
        rows += load_file(path)
    return rows


def load_file(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            res = rec.get("result")
            if isinstance(res, dict) and "accuracy_mean" in res:
                res["sweep"] = rec["sweep"]
                rows.append(res)
    return rows


def pct(x):
    return f"{100 * x:.1f}"


def headline(rows, out):
    out.append("## Headline: 4 devices, 1 failed (mean over the 4 choices)\n")
    out.append("Retained = mean accuracy with the failure / accuracy without it.\n")
    by_model = defaultdict(list)
    for r in rows:
        if r["sweep"] == "headline":
            by_model[r["model"]].append(r)
    for model, rs in sorted(by_model.items()):
        nofail = rs[0]["accuracy_nofail"]
        out.append(f"\n### {model} (no-failure accuracy {pct(nofail)}% on the first {rs[0]['images']} test images)\n")
        out.append("| method | ratio | score | memory overhead | retained zero | retained mean | retained recon | min acc (mean) |")
        out.append("|---|---|---|---|---|---|---|---|")
        keyed = defaultdict(dict)
        for r in rs:
            keyed[(r["method"], r["ratio"], r["score"], r["memory_overhead"])][r["impute"]] = r
        for (meth, ratio, score, mem), d in sorted(keyed.items(), key=lambda k: (k[0][1], k[0][0])):
            def cell(imp):
                return pct(d[imp]["retained"]) + "%" if imp in d else "-"
            mn = pct(d["mean"]["accuracy_min"]) + "%" if "mean" in d else "-"
            out.append(f"| {meth} | {ratio:g} | {score} | {100 * mem:+.0f}% | {cell('zero')} | {cell('mean')} | {cell('recon')} | {mn} |")


def sweep_plots(rows, outdir, out):
    sw = [r for r in rows if r["sweep"] == "sweep"]
    if not sw:
        return
    models = sorted({r["model"] for r in sw})
    methods = ["sequential", "random", "layerwise", "robustdice"]
    for devices, fail in [(4, 1), (4, 2), (8, 1)]:
        fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4), squeeze=False)
        for ax, model in zip(axes[0], models):
            for meth in methods:
                for imp, style in [("zero", "--"), ("mean", "-")]:
                    pts = sorted((r["ratio"], r["accuracy_mean"]) for r in sw
                                 if r["model"] == model and r["method"] == meth and r["impute"] == imp
                                 and r["devices"] == devices and r["fail"] == fail)
                    if pts:
                        ax.plot([p[0] for p in pts], [100 * p[1] for p in pts], style, marker="o",
                                label=f"{meth} ({imp})")
            full = [r for r in sw if r["model"] == model and r["method"] == "full"
                    and r["devices"] == devices and r["fail"] == fail]
            if full:
                ax.axhline(100 * full[0]["accuracy_mean"], color="k", lw=0.8, label="full (zero)")
                ax.axhline(100 * full[0]["accuracy_nofail"], color="g", lw=0.8, ls=":", label="no failure")
            ax.set_title(f"{model}: {fail} of {devices} failed")
            ax.set_xlabel("replication ratio")
            ax.set_ylabel("accuracy (%)")
            ax.grid(alpha=0.3)
        axes[0][-1].legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        name = f"accuracy_vs_ratio_{fail}of{devices}.png"
        fig.savefig(f"{outdir}/{name}", dpi=90)
        plt.close(fig)
        out.append(f"\n![accuracy vs ratio, {fail} of {devices} failed]({name})\n")
    # accuracy vs failures (4 devices, ratio 0.25, mean)
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        for meth in methods:
            pts = {0: None}
            for r in sw:
                if r["model"] == model and r["method"] == meth and r["impute"] == "mean" \
                        and r["devices"] == 4 and abs(r["ratio"] - 0.25) < 1e-9:
                    pts[r["fail"]] = r["accuracy_mean"]
                    pts[0] = r["accuracy_nofail"]
            xs = sorted(k for k, v in pts.items() if v is not None)
            if len(xs) > 1:
                ax.plot(xs, [100 * pts[x] for x in xs], marker="o", label=meth)
        ax.set_title(f"{model}: 4 devices, ratio 0.25, mean")
        ax.set_xlabel("failed devices")
        ax.set_ylabel("accuracy (%)")
        ax.set_xticks([0, 1, 2])
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(f"{outdir}/accuracy_vs_failures.png", dpi=90)
    plt.close(fig)
    out.append("\n![accuracy vs failures](accuracy_vs_failures.png)\n")
    # memory per device vs ratio
    fig, ax = plt.subplots(figsize=(6, 4))
    for model in models:
        pts = sorted((r["ratio"], r["max_device_weight_bytes"]) for r in sw
                     if r["model"] == model and r["method"] == "robustdice" and r["impute"] == "mean"
                     and r["devices"] == 4 and r["fail"] == 1)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] / 1024 for p in pts], marker="o", label=model)
    ax.set_xlabel("replication ratio")
    ax.set_ylabel("largest device's weights (KiB)")
    ax.set_title("memory per device, robustdice, 4 devices")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(f"{outdir}/memory_vs_ratio.png", dpi=90)
    plt.close(fig)
    out.append("\n![memory per device vs ratio](memory_vs_ratio.png)\n")
    # table of the 4/1 and 4/2 sweeps with mean imputation
    for devices, fail in [(4, 1), (4, 2), (8, 1)]:
        out.append(f"\n### Accuracy (%), {fail} of {devices} failed, mean imputation\n")
        out.append("| model | method | " + " | ".join(f"r={x:g}" for x in [0, 0.1, 0.25, 0.5, 1]) + " |")
        out.append("|---|---|" + "---|" * 5)
        for model in models:
            for meth in methods:
                vals = {r["ratio"]: r["accuracy_mean"] for r in sw if r["model"] == model
                        and r["method"] == meth and r["impute"] == "mean"
                        and r["devices"] == devices and r["fail"] == fail}
                if vals:
                    cells = [pct(vals[x]) if x in vals else "-" for x in [0, 0.1, 0.25, 0.5, 1]]
                    out.append(f"| {model} | {meth} | " + " | ".join(cells) + " |")


def copies_table(rows, out):
    cp = [r for r in rows if r["sweep"] == "copies"]
    if not cp:
        return
    out.append("\n## 2 of 4 failed: ratio and copies (robustdice, mean imputation)\n")
    out.append("| model | copies | ratio | memory overhead | accuracy mean | retained | min |")
    out.append("|---|---|---|---|---|---|---|")
    for r in sorted(cp, key=lambda r: (r["model"], r["copies"], r["ratio"])):
        out.append(f"| {r['model']} | {r['copies']} | {r['ratio']:g} | {100 * r['memory_overhead']:+.0f}% | "
                   f"{pct(r['accuracy_mean'])} | {pct(r['retained'])}% | {pct(r['accuracy_min'])} |")


def budget_table(rows, out):
    b = [r for r in rows if r["sweep"] == "budget"]
    if not b:
        return
    out.append("\n## Replication budget by measured stage sensitivity vs flat (4 devices, 1 failed, mean)\n")
    out.append("| model | ratio | budget | memory overhead | accuracy mean | retained |")
    out.append("|---|---|---|---|---|---|")
    for r in sorted(b, key=lambda r: (r["model"], r["ratio"], r["budget"])):
        out.append(f"| {r['model']} | {r['ratio']:g} | {r['budget']} | {100 * r['memory_overhead']:+.1f}% | "
                   f"{pct(r['accuracy_mean'])} | {pct(r['retained'])}% |")


def main():
    outdir = sys.argv[1]
    rows = load(outdir)
    out = ["# Robustness report", "",
           f"Generated by tests/bench/robustness_report.sh from {len(rows)} `dicefleet eval` runs "
           "(in-process simulation through the gateway's request path; Fashion-MNIST test set; "
           "calibration on training images only).", ""]
    headline(rows, out)
    sweep_plots(rows, outdir, out)
    copies_table(rows, out)
    budget_table(rows, out)
    with open(f"{outdir}/robustness.md", "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"wrote {outdir}/robustness.md", file=sys.stderr)


if __name__ == "__main__":
    main()
