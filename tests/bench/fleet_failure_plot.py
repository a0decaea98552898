"""Report for fleet_failure.sh: reads RUN/load.jsonl (one line per request,
from `fleet_client load`), RUN/load.json (its summary, with start_unix_ms),
RUN/events.json (GET /admin/events) and RUN/marks.json (kill and restart
times), writes OUT.md and OUT.png and prints a one-line JSON summary.

Times are seconds since the load started. An answer's time is when it
completed (start + latency) unless said otherwise. Every figure comes from
the run's files; nothing is assumed about the gateway's settings.

usage: /usr/bin/python3 fleet_failure_plot.py RUN_DIR OUT_PREFIX
"""
import json
import os
import re
import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def pct(values, q):
    """Nearest-rank percentile (as fleet_client), None for no values."""
    if not values:
        return None
    v = sorted(values)
    i = min(len(v) - 1, int(len(v) * q / 100))
    return v[i]


def fmt(x, unit="", digits=1):
    return "n/a" if x is None else f"{x:.{digits}f}{unit}"


def main(run, out):
    rows = [json.loads(line) for line in open(os.path.join(run, "load.jsonl")) if line.strip()]
    summary = json.load(open(os.path.join(run, "load.json")))
    marks = json.load(open(os.path.join(run, "marks.json")))
    events = json.load(open(os.path.join(run, "events.json"))).get("events", [])
    before_map = json.load(open(os.path.join(run, "partition.before.json")))
    start = summary["start_unix_ms"]
    victim = marks["victim"]

    def rel(unix_ms):
        return None if unix_ms is None else (unix_ms - start) / 1e3

    for r in rows:
        r["t_end"] = (r["t_ms"] + r["latency_ms"]) / 1e3
        r["t_start"] = r["t_ms"] / 1e3
        r["ok"] = 200 <= r["status"] < 300
    rows.sort(key=lambda r: r["t_end"])
    v0 = before_map.get("version")
    t_kill = rel(marks["kill_unix_ms"])
    t_restart = rel(marks["restart_unix_ms"])

    def first_event(pred, after):
        for e in events:
            if e["ts_ms"] >= after and pred(e):
                return e
        return None

    down = first_event(lambda e: e["kind"] == "health" and e["device_id"] == victim
                       and e["to_state"] == "DOWN", marks["kill_unix_ms"])
    suspect = first_event(lambda e: e["kind"] == "health" and e["device_id"] == victim
                          and e["to_state"] == "SUSPECT", marks["kill_unix_ms"])
    repart = first_event(lambda e: e["kind"] == "partition", marks["kill_unix_ms"])
    up = first_event(lambda e: e["kind"] == "health" and e["device_id"] == victim
                     and e["to_state"] == "UP", marks["restart_unix_ms"])
    rejoin = first_event(lambda e: e["kind"] == "partition", marks["restart_unix_ms"])

    def version_to(e):
        m = re.search(r"-> (\d+)", (e or {}).get("detail") or "")
        return int(m.group(1)) if m else None

    v_heal, v_rejoin = version_to(repart), version_to(rejoin)
    if rejoin is not None and repart is not None and rejoin["id"] == repart["id"]:
        v_rejoin, rejoin = None, None  # the heal itself came after the restart
    ok = [r for r in rows if r["ok"]]
    healed = next((r for r in ok if r["t_start"] > t_kill and r["partition_version"] != v0
                   and r["coverage"] == 1), None)
    rejoined = next((r for r in ok if v_rejoin is not None
                     and r["partition_version"] == v_rejoin), None)
    first_degraded = next((r for r in ok if r["t_end"] > t_kill and r["coverage"] < 1), None)
    t = {
        "kill": t_kill,
        "suspect": rel(suspect["ts_ms"]) if suspect else None,
        "down": rel(down["ts_ms"]) if down else None,
        "repartition": rel(repart["ts_ms"]) if repart else None,
        "healed": healed["t_end"] if healed else None,
        "restart": t_restart,
        "up": rel(up["ts_ms"]) if up else None,
        "rejoin": rel(rejoin["ts_ms"]) if rejoin else None,
        "rejoined": rejoined["t_end"] if rejoined else None,
    }

    def diff(a, b):
        return None if t[a] is None or t[b] is None else 1e3 * (t[b] - t[a])

    figures = {
        "detection_ms": diff("kill", "down"),
        "kill_to_repartition_ms": diff("kill", "repartition"),
        "full_coverage_ms": diff("kill", "healed"),
        "restart_to_up_ms": diff("restart", "up"),
        "restart_to_rejoin_ms": diff("restart", "rejoined"),
    }
    # Phases by an answer's completion time.
    end = max((r["t_end"] for r in rows), default=0)
    bounds = [("before the kill", 0, t_kill),
              ("kill -> full coverage", t_kill, t["healed"] or t_restart),
              ("healed (without the victim)", t["healed"] or t_restart, t_restart),
              ("restart -> rejoined", t_restart, t["rejoined"] or end),
              ("after the rejoin", t["rejoined"] or end, end + 1)]
    phases = []
    for name, a, b in bounds:
        sel = [r for r in rows if a <= r["t_end"] < b]
        lat = [r["latency_ms"] for r in sel]
        cov = [r["coverage"] for r in sel if r["ok"]]
        span = (b if b <= end else end) - a
        phases.append({
            "phase": name, "from_s": a, "to_s": min(b, end), "requests": len(sel),
            # a phase the run did not reach (or an instant) has no rate
            "rps": len(sel) / span if span >= 0.5 else None, "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
            "max_ms": max(lat) if lat else None,
            "failed": sum(1 for r in sel if not r["ok"]),
            "degraded": sum(1 for r in sel if r["ok"] and r["coverage"] < 1),
            "min_coverage": min(cov) if cov else None,
        })
    failed = [r for r in rows if not r["ok"]]
    others_down = sorted({e["device_id"] for e in events if e["kind"] == "health"
                          and e["ts_ms"] >= start and e["to_state"] == "DOWN"
                          and e["device_id"] != victim})

    # ---- plot -----------------------------------------------------------
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, sharex=True, figsize=(11, 8.5),
                                        gridspec_kw={"height_ratios": [3, 1.4, 1.4]})
    good = [r for r in rows if r["ok"] and r["coverage"] == 1]
    deg = [r for r in rows if r["ok"] and r["coverage"] < 1]
    ax1.scatter([r["t_end"] for r in good], [r["latency_ms"] for r in good], s=2,
                color="tab:blue", label="coverage 1.0", rasterized=True)
    ax1.scatter([r["t_end"] for r in deg], [r["latency_ms"] for r in deg], s=2,
                color="tab:orange", label="degraded (coverage < 1)", rasterized=True)
    if failed:
        ax1.scatter([r["t_end"] for r in failed], [max(r["latency_ms"], 0.1) for r in failed],
                    s=12, marker="x", color="red", label="failed (non-2xx)")
    ax1.set_yscale("log")
    ax1.set_ylabel("latency (ms, log)")
    ax1.legend(loc="upper right", fontsize=8, markerscale=4)
    ax2.scatter([r["t_end"] for r in rows if r["ok"]], [r["coverage"] for r in rows if r["ok"]],
                s=2, color="tab:green", rasterized=True)
    ax2.set_ylabel("coverage")
    ax2.set_ylim(min([r["coverage"] for r in ok] + [0.75]) - 0.03, 1.02)
    nbins = max(int(end), 1)  # whole seconds only: the last one is partial
    counts = [0] * nbins
    for r in rows:
        if int(r["t_end"]) < nbins:
            counts[int(r["t_end"])] += 1
    ax3.step(range(nbins + 1), counts + counts[-1:], where="post", color="tab:gray")
    ax3.set_ylabel("answers / s")
    ax3.set_xlabel("seconds since the load started")
    markers = [("kill", "kill", "red", "-"), ("down", "DOWN", "darkred", "--"),
               ("repartition", "repartition", "purple", "-."),
               ("restart", "restart", "green", "-"), ("up", "UP", "olive", ":"),
               ("rejoin", "rejoin", "darkgreen", "-.")]
    labels = []  # [x, text, color]: markers closer than 3% of the run share one
    for key, label, color, style in markers:
        if t[key] is None:
            continue
        for ax in (ax1, ax2, ax3):
            ax.axvline(t[key], color=color, linestyle=style, linewidth=1)
        if labels and t[key] - labels[-1][0] < 0.03 * max(end, 1):
            labels[-1][1] += f" + {label} ({1e3 * (t[key] - labels[-1][0]):.0f} ms)"
        else:
            labels.append([t[key], label, color])
    for x, label, color in labels:
        ax1.text(x, 1.01, label, transform=ax1.get_xaxis_transform(), rotation=30,
                 fontsize=8, color=color, ha="left", va="bottom")
    fig.suptitle(f"{marks['model']}, {marks['workers']} workers, {marks['clients']} clients: "
                 f"{victim} killed and restarted")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(out + ".png", dpi=110)

    # ---- report ---------------------------------------------------------
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "?")
    flags = marks["gateway_flags"] or "none (gateway defaults)"
    md = [
        "# A worker failure under load",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(start / 1e3))} on "
        f"{os.cpu_count()} cores ({cpu}) with `{marks['cmdline'].strip()}`:",
        f"{marks['clients']} closed-loop clients (`fleet_client load`, one keep-alive connection each)",
        f"POST `models/samples/0000-ankle-boot.png` to `/v1/classify` for {marks['duration_s']} s;",
        f"gateway and {marks['workers']} workers (`--threads 1`) of {marks['model']} on loopback, "
        f"partition {before_map.get('method')} ratio {before_map.get('ratio')} "
        f"{before_map.get('replica_mode')} (version {v0}); extra gateway flags: {flags}.",
        f"{victim} is SIGKILLed at {fmt(t_kill, ' s')} and started again on a new port at "
        f"{fmt(t_restart, ' s')} (re-registered with POST /admin/devices: HTTP {marks['register_status']}).",
        "Everything shares the same cores; timings are noisy.",
        "",
        "| | time |",
        "| --- | ---: |",
        f"| detection (kill -> DOWN event) | {fmt(figures['detection_ms'], ' ms', 0)} |",
        f"| kill -> repartition event (version {v_heal}) | {fmt(figures['kill_to_repartition_ms'], ' ms', 0)} |",
        f"| time to full coverage (kill -> first answer with coverage 1.0 on a new version) | "
        f"{fmt(figures['full_coverage_ms'], ' ms', 0)} |",
        f"| restart -> UP event | {fmt(figures['restart_to_up_ms'], ' ms', 0)} |",
        f"| time to rejoin (restart -> first answer on version {v_rejoin}, which holds {victim}) | "
        f"{fmt(figures['restart_to_rejoin_ms'], ' ms', 0)} |",
        "",
        f"First degraded answer: {fmt(first_degraded['t_end'] - t_kill if first_degraded else None, ' s', 3)} "
        f"after the kill. Requests: {len(rows)}, failed (non-2xx or transport error): {len(failed)}, "
        f"degraded answers: {sum(1 for r in ok if r['coverage'] < 1)}, min coverage "
        f"{fmt(summary.get('min_coverage'), '', 4)}.",
        "",
        *([f"Other devices that went DOWN during the run: {', '.join(others_down)} "
            "(see the events below); their degraded answers count in the phase they fell in.", ""]
          if others_down else []),
        "| phase (by completion time) | from s | to s | requests | answers/s | p50 ms | p99 ms | max ms | failed | degraded | min coverage |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in phases:
        md.append(f"| {p['phase']} | {fmt(p['from_s'])} | {fmt(p['to_s'])} | {p['requests']} | "
                  f"{fmt(p['rps'])} | {fmt(p['p50_ms'], '', 2)} | {fmt(p['p99_ms'], '', 2)} | "
                  f"{fmt(p['max_ms'], '', 2)} | {p['failed']} | {p['degraded']} | "
                  f"{fmt(p['min_coverage'], '', 4)} |")
    md += [
        "",
        f"![latency, coverage and throughput over time]({os.path.basename(out)}.png)",
        "",
        "Gateway events during the run (every device's health transitions and the partition changes):",
        "",
        "| t (s) | kind | device | transition | cause / detail |",
        "| ---: | --- | --- | --- | --- |",
    ]
    for e in events:
        if e["ts_ms"] < start or e["kind"] not in ("health", "partition", "admin"):
            continue
        trans = f"{e['from_state']} -> {e['to_state']}" if e["to_state"] else ""
        text = " / ".join(x for x in (e.get("cause"), e.get("detail")) if x)
        md.append(f"| {rel(e['ts_ms']):.3f} | {e['kind']} | {e['device_id'] or ''} | {trans} | "
                  f"{text.replace('|', '/')[:140]} |")
    md.append("")
    open(out + ".md", "w").write("\n".join(md))
    print(json.dumps({"requests": len(rows), "failed": len(failed), **figures,
                      "others_down": others_down,
                      "phases": [{k: (round(v, 2) if isinstance(v, float) else v)
                                  for k, v in p.items()} for p in phases]}))
    return 1 if failed or marks["load_exit"] not in (0, 1) else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
