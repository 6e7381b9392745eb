#!/usr/bin/python3
"""The report of bench/shared-budget (standard library only).

Usage: budget_report.py OUT_DIR

Reads OUT_DIR/CONFIG/SCENARIO/ (scenario.json, runs.tsv, the harness JSON of each
run, timeline.csv and the scenario's slice of the PostgreSQL log), prints a
Markdown table on stdout and writes OUT_DIR/summary.md, OUT_DIR/summary.json and
OUT_DIR/shares.svg (each instance's upstream connections over time).
"""

import csv
import json
import os
import re
import sys
from html import escape

CONFIGS = ("pgmux", "pgbouncer", "static")
SCENARIOS = ("even", "skewed", "moving")
INSTANCES = (1, 2, 3)
COLORS = {1: "#1f77b4", 2: "#d62728", 3: "#2ca02c"}
REBALANCE_SHARE = 0.8  # instance 2 must hold 80 % of the budget ...
REBALANCE_HOLD_S = 1.0  # ... for at least this long
REFUSAL = 'too many connections for role "app"'


# ---------------------------------------------------------------- loading


def load_scenario(d):
    with open(os.path.join(d, "scenario.json"), encoding="utf-8") as f:
        s = json.load(f)
    runs = []
    with open(os.path.join(d, "runs.tsv"), encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 6:
                continue
            inst, phase, clients, start, dur, name = parts[:6]
            run = {"instance": int(inst), "phase": int(phase), "clients": int(clients),
                   "start_s": float(start), "duration_s": float(dur), "file": name, "result": None}
            try:
                with open(os.path.join(d, name), encoding="utf-8") as jf:
                    run["result"] = json.load(jf)
            except (OSError, ValueError):
                pass  # the run died without its JSON: counted as missing below
            runs.append(run)
    s["runs"] = runs
    timeline = {i: [] for i in INSTANCES}
    path = os.path.join(d, "timeline.csv")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for row in csv.DictReader(f):
                i = int(row["instance"])
                if i in timeline:
                    timeline[i].append((float(row["t"]), int(row["connections"])))
    for v in timeline.values():
        v.sort()
    s["timeline"] = timeline
    s["refusal_times"] = []
    path = os.path.join(d, "postgres.log")
    if os.path.exists(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if REFUSAL in line:
                    m = re.match(r"(\d+\.\d+) ", line)
                    if m:
                        s["refusal_times"].append(float(m.group(1)) - s["t0_epoch"])
    return s


def load(out):
    data = {}
    for c in os.listdir(out):
        if not os.path.isdir(os.path.join(out, c)):
            continue
        for sc in os.listdir(os.path.join(out, c)):
            d = os.path.join(out, c, sc)
            if os.path.exists(os.path.join(d, "scenario.json")):
                data[(c, sc)] = load_scenario(d)
    return data


# ---------------------------------------------------------------- measures


def measured(run):
    """(start, end) of a run's measured time in seconds since t0 (the harness
    connects all its clients before its clock starts)."""
    r = run["result"]
    a = run["start_s"] + r.get("connect_s", 0)
    return a, a + r.get("duration_s", run["duration_s"])


def load_window(s):
    """(start, end) in seconds since t0 of the time when every run that belongs
    there was measuring: from the last first-half (or whole-run) run to start its
    clock to the first second-half (or whole-run) run to stop (when a run stops,
    it closes its clients and abandons their open transactions)."""
    runs = [r for r in s["runs"] if r["result"]]
    if not runs:
        return 0.0, float(s["duration_s"])
    starts = [measured(r)[0] for r in runs if r["phase"] in (0, 1)]
    ends = [measured(r)[1] for r in runs if r["phase"] in (0, 2)]
    return max(starts or [0.0]), min(ends or [float(s["duration_s"])])


def shift_time(s):
    """When the heavy load arrives on instance 2 (moving): its run's clock start."""
    for r in s["runs"]:
        if r["phase"] == 2 and r["result"]:
            return measured(r)[0]
    return float(s.get("half_s", float(s["duration_s"]) / 2))


def transactions_between(run, a, b):
    """Transactions a run completed between a and b (seconds since t0), from its
    timeline buckets (each bucket's share of the overlap, pro rata)."""
    r = run["result"]
    if not r or b <= a:
        return 0.0
    m0, _ = measured(run)
    total, prev = 0.0, 0.0
    for iv in r.get("timeline") or []:
        t = iv.get("t", 0.0)
        lo, hi = m0 + prev, m0 + t
        if hi > lo:
            n = iv.get("transactions", iv.get("tps", 0) * (t - prev))
            overlap = max(0.0, min(hi, b) - max(lo, a))
            total += n * overlap / (hi - lo)
        prev = t
    return total


def mean_between(samples, a, b):
    v = [c for t, c in samples if a <= t <= b]
    return sum(v) / len(v) if v else None


def rebalance_time(s):
    """Seconds from the shift until instance 2 holds at least 80 % of the budget
    and keeps it for REBALANCE_HOLD_S; None for never."""
    need = REBALANCE_SHARE * s.get("budget", 15)
    shift = shift_time(s)
    _, end = load_window(s)
    samples = [(t, c) for t, c in s["timeline"][2] if t >= shift]
    for k, (t, c) in enumerate(samples):
        if c < need:
            continue
        if t + REBALANCE_HOLD_S > end:
            break
        ok = True
        for t2, c2 in samples[k:]:
            if t2 > t + REBALANCE_HOLD_S:
                break
            if c2 < need:
                ok = False
                break
        if ok:
            return t - shift
    return None


def first_reach_time(s):
    """Seconds from the shift until instance 2 first holds 80 % of the budget."""
    need = REBALANCE_SHARE * s.get("budget", 15)
    shift = shift_time(s)
    for t, c in s["timeline"][2]:
        if t >= shift and c >= need:
            return t - shift
    return None


def settled_share(s):
    """Instance 2's mean connections from 3 s after the shift to the end of the
    window, and the same for the other two together."""
    shift = shift_time(s)
    _, end = load_window(s)
    def mean(i):
        cs = [c for t, c in s["timeline"][i] if shift + 3 <= t <= end]
        return sum(cs) / len(cs) if cs else None
    two = mean(2)
    others = [m for m in (mean(1), mean(3)) if m is not None]
    return two, (sum(others) if others else None)


def measures(s):
    runs = s["runs"]
    res = [r["result"] for r in runs if r["result"]]
    m = {"config": s["config"], "scenario": s["scenario"], "duration_s": s["duration_s"],
         "missing_runs": [r["file"] for r in runs if not r["result"]]}
    start, end = load_window(s)
    m["window_s"] = [start, end]
    span = end - start
    txns = sum(transactions_between(r, start, end) for r in runs)
    m["transactions_in_window"] = txns
    # Transactions of all instances over the time they were all measuring.
    m["tps"] = txns / span if span > 0 else 0.0
    m["errors"] = sum(r.get("errors", 0) for r in res)
    kinds = {}
    for r in res:
        for k in r.get("errors_by_kind") or []:
            key = f"{k.get('sqlstate', '')} {k.get('message', '')}".strip()
            kinds[key] = kinds.get(key, 0) + k.get("count", 0)
    m["errors_by_kind"] = dict(sorted(kinds.items(), key=lambda kv: -kv[1]))
    m["p99_worst_ms"] = max((r.get("latency_us", {}).get("p99", 0) for r in res), default=0) / 1000
    all_txns = sum(r.get("transactions", 0) for r in res)
    m["latency_mean_ms"] = (sum(r.get("latency_us", {}).get("mean", 0) * r.get("transactions", 0) for r in res)
                            / all_txns / 1000) if all_txns else 0.0
    # Per instance: over the whole window, or (moving) before and after the shift.
    cuts = [start, end]
    if s["scenario"] == "moving":
        m["shift_s"] = shift_time(s)
        cuts = [start, m["shift_s"], end]
    m["tps_by_instance"] = {}
    for i in INSTANCES:
        mine = [r for r in runs if r["instance"] == i]
        m["tps_by_instance"][i] = [
            sum(transactions_between(r, a, b) for r in mine) / (b - a) if b > a else 0.0
            for a, b in zip(cuts, cuts[1:])]
    m["refusals_total"] = s.get("refusals_upstream", len(s["refusal_times"]))
    # From the harness launch to the first run's stop (not the poolers' start-up,
    # nor the refills after the harness closes its clients).
    m["refusals_during_load"] = sum(1 for t in s["refusal_times"] if 0 <= t <= end)
    if s["scenario"] == "even":
        # Steady state: the second half of the window.
        half = (start + end) / 2
        means = {i: mean_between(s["timeline"][i], half, end) for i in INSTANCES}
        m["mean_connections_2nd_half"] = means
        fair = s.get("budget", 15) / 3
        devs = [abs(v - fair) for v in means.values() if v is not None]
        m["fair_share"] = fair
        m["max_deviation"] = max(devs) if devs else None
    if s["scenario"] == "moving":
        m["rebalance_s"] = rebalance_time(s)
        m["first_reach_s"] = first_reach_time(s)
        m["settled"] = settled_share(s)
    return m


# ---------------------------------------------------------------- table


def fmt(v, spec=".0f", none="-"):
    return none if v is None else format(v, spec)


def table_md(ms, configs, scenarios):
    head = ["config", "scenario", "TPS (total)", "errors to clients", "refused logins upstream (load / all)",
            "p99 worst instance (ms)", "mean latency (ms)", "fairness (even)", "rebalance (moving)",
            "TPS / static"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in configs:
        for sc in scenarios:
            m = ms.get((c, sc))
            if not m:
                continue
            fair = ""
            if sc == "even" and m.get("max_deviation") is not None:
                means = m["mean_connections_2nd_half"]
                fair = ("/".join(fmt(means[i], ".1f") for i in INSTANCES)
                        + f" (max dev {m['max_deviation']:.1f})")
            reb = ""
            if sc == "moving":
                reb = "never" if m["rebalance_s"] is None else f"{m['rebalance_s']:.1f} s"
                first = m.get("first_reach_s")
                reb += "; first at " + ("never" if first is None else f"{first:.1f} s")
                two, others = m.get("settled") or (None, None)
                if two is not None:
                    reb += f"; then {two:.1f} held, {others:.1f} by the others"
            ratio = ""
            st = ms.get(("static", sc))
            if sc in ("skewed", "moving") and st and st["tps"] > 0:
                ratio = f"{m['tps'] / st['tps']:.2f}x"
            errs = str(m["errors"])
            if m["missing_runs"]:
                errs += f" ({len(m['missing_runs'])} runs without JSON)"
            lines.append("| " + " | ".join([
                c, sc, f"{m['tps']:.0f}", errs,
                f"{m['refusals_during_load']} / {m['refusals_total']}",
                f"{m['p99_worst_ms']:.0f}", f"{m['latency_mean_ms']:.0f}", fair, reb, ratio]) + " |")
    return lines


def per_instance_md(ms, configs, scenarios):
    lines = ["| config | scenario | inst1 TPS | inst2 TPS | inst3 TPS |", "|---|---|---|---|---|"]
    for c in configs:
        for sc in scenarios:
            m = ms.get((c, sc))
            if not m:
                continue
            cells = [" → ".join(f"{v:.0f}" for v in m["tps_by_instance"][i]) or "-" for i in INSTANCES]
            lines.append(f"| {c} | {sc} | " + " | ".join(cells) + " |")
    return lines


def errors_md(ms, configs, scenarios):
    lines = []
    for c in configs:
        for sc in scenarios:
            m = ms.get((c, sc))
            if m and m["errors_by_kind"]:
                kinds = "; ".join(f"{n} × {k[:100]}" for k, n in m["errors_by_kind"].items())
                lines.append(f"- {c} / {sc}: {kinds}")
    return lines or ["- none"]


# ---------------------------------------------------------------- SVG


def svg_shares(data, configs, scenarios, path):
    pw, ph = 270, 170  # plot area of one panel
    ml, mr, mt, mb = 90, 14, 70, 44  # figure margins (left holds the row labels)
    gx, gy = 56, 52  # gaps between panels (room for the next panel's y axis)
    width = max(ml + len(scenarios) * pw + (len(scenarios) - 1) * gx + mr, 820)  # 820: the legend
    height = mt + len(configs) * ph + (len(configs) - 1) * gy + mb
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
         f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
         f'<rect width="{width}" height="{height}" fill="white"/>',
         f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">'
         'Upstream connections per instance (role budget 15)</text>']
    # Legend.
    lx, ly = ml, 38
    items = [(f"instance {i}", COLORS[i], "") for i in INSTANCES]
    items += [("all three", "#999999", ""), ("budget (15)", "#444444", "6,4"), ("load moves to 2", "#7f3fbf", "2,3")]
    for label, col, dash in items:
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        o.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 24}" y2="{ly}" stroke="{col}" stroke-width="2"{dash_attr}/>')
        o.append(f'<text x="{lx + 29}" y="{ly + 4}">{escape(label)}</text>')
        lx += 34 + 7 * len(label) + 14
    for ci, c in enumerate(configs):
        for si, sc in enumerate(scenarios):
            x0 = ml + si * (pw + gx)
            y0 = mt + ci * (ph + gy)
            if ci == 0:
                o.append(f'<text x="{x0 + pw / 2}" y="{y0 - 10}" text-anchor="middle" font-size="13" '
                         f'font-weight="bold">{escape(sc)}</text>')
            if si == 0:
                o.append(f'<text x="{x0 - 62}" y="{y0 + ph / 2}" text-anchor="middle" font-size="13" '
                         f'font-weight="bold" transform="rotate(-90 {x0 - 62} {y0 + ph / 2})">{escape(c)}</text>')
            s = data.get((c, sc))
            o.append(f'<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="#fbfbfb" stroke="#888"/>')
            if not s:
                o.append(f'<text x="{x0 + pw / 2}" y="{y0 + ph / 2}" text-anchor="middle" fill="#888">not run</text>')
                continue
            _, end = load_window(s)
            tmax = max(float(s["duration_s"]), end)
            all_t = [t for v in s["timeline"].values() for t, _ in v]
            if all_t:
                tmax = max(tmax, min(max(all_t), tmax + 2))
            cmax = max([16] + [cnt for v in s["timeline"].values() for _, cnt in v])
            total = {}
            for v in s["timeline"].values():
                for t, cnt in v:
                    total[t] = total.get(t, 0) + cnt
            cmax = max(cmax, max(total.values(), default=0))
            ymax = 5 * ((cmax + 4) // 5)

            def X(t, x0=x0, tmax=tmax):
                return x0 + max(0.0, min(t, tmax)) / tmax * pw

            def Y(v, y0=y0, ymax=ymax):
                return y0 + ph - v / ymax * ph

            # Grid and ticks.
            step = 2 if tmax <= 12 else 5 if tmax <= 40 else 10
            t = 0
            while t <= tmax + 1e-9:
                o.append(f'<line x1="{X(t):.1f}" y1="{y0 + ph}" x2="{X(t):.1f}" y2="{y0 + ph + 4}" stroke="#555"/>')
                o.append(f'<text x="{X(t):.1f}" y="{y0 + ph + 15}" text-anchor="middle">{t}</text>')
                t += step
            for v in range(0, ymax + 1, 5):
                o.append(f'<line x1="{x0}" y1="{Y(v):.1f}" x2="{x0 + pw}" y2="{Y(v):.1f}" stroke="#e4e4e4"/>')
                o.append(f'<text x="{x0 - 5}" y="{Y(v) + 4:.1f}" text-anchor="end">{v}</text>')
            o.append(f'<text x="{x0 + pw / 2}" y="{y0 + ph + 31}" text-anchor="middle" fill="#333">seconds</text>')
            o.append(f'<text x="{x0 - 26}" y="{y0 + ph / 2}" text-anchor="middle" fill="#333" '
                     f'transform="rotate(-90 {x0 - 26} {y0 + ph / 2})">connections</text>')
            if sc == "moving":
                xs = X(shift_time(s))
                o.append(f'<line x1="{xs:.1f}" y1="{y0}" x2="{xs:.1f}" y2="{y0 + ph}" stroke="#7f3fbf" '
                         'stroke-width="1.5" stroke-dasharray="2,3"/>')

            def step_path(samples):
                pts = [(t, v) for t, v in samples if 0 <= t <= tmax]
                if not pts:
                    return ""
                d = f"M{X(pts[0][0]):.1f},{Y(pts[0][1]):.1f}"
                for t, v in pts[1:]:
                    d += f"H{X(t):.1f}V{Y(v):.1f}"
                return d

            d = step_path(sorted(total.items()))
            if d:
                o.append(f'<path d="{d}" fill="none" stroke="#999999" stroke-width="1"/>')
            # Instances drawn 3, 2, 1 so that 1 (the first heavy one) is on top, each
            # nudged by 1.6 px (one line's width) so equal counts stay visible side by side.
            for i in reversed(INSTANCES):
                d = step_path([(t, v - (i - 2) * 1.6 * ymax / ph) for t, v in s["timeline"][i]])
                if d:
                    o.append(f'<path d="{d}" fill="none" stroke="{COLORS[i]}" stroke-width="1.6"/>')
            budget = s.get("budget", 15)
            o.append(f'<line x1="{x0}" y1="{Y(budget):.1f}" x2="{x0 + pw}" y2="{Y(budget):.1f}" stroke="#444" '
                     'stroke-dasharray="6,4"/>')
    o.append("</svg>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(o) + "\n")


# ---------------------------------------------------------------- main


def main():
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if len(sys.argv) == 2 else 2
    out = sys.argv[1]
    data = load(out)
    if not data:
        print(f"budget_report.py: no scenario results under {out}", file=sys.stderr)
        return 1
    meta = {}
    if os.path.exists(os.path.join(out, "meta.json")):
        with open(os.path.join(out, "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
    configs = [c for c in CONFIGS if any(k[0] == c for k in data)]
    scenarios = [s for s in SCENARIOS if any(k[1] == s for k in data)]
    ms = {k: measures(s) for k, s in data.items()}
    any_s = next(iter(data.values()))
    heavy, light = any_s.get("clients_heavy", 300), any_s.get("clients_light", 10)
    light_rate = any_s.get("light_rate", 0)
    md = ["# Shared budget: 3 poolers, one role with CONNECTION LIMIT 15", ""]
    if meta:
        md += [f"`{meta.get('command', '')}`, {meta.get('started', '')}; {meta.get('machine', '')}; "
               f"{meta.get('postgresql', '')}; {meta.get('pgbouncer', '')}; pgmux {meta.get('pgmux', '')}; "
               f"static sets budget_sharing = \"off\": {'yes' if meta.get('budget_sharing_key') else 'no (key unknown to this pgmux)'}.",
               ""]
    md += [f"Load: pgmux-bench -s hold --hold-ms 50 (at most 300 TPS through 15 connections), "
           f"{any_s['duration_s']} s per scenario; even {heavy // 3} clients per instance, "
           f"skewed {heavy} clients on instance 1 and {light} on each of the others"
           + (f" ({light_rate} transactions per second each, in all)" if light_rate else "")
           + f"; moving {heavy} on instance 1, then on instance 2, instance 3 idle.", ""]
    md += table_md(ms, configs, scenarios)
    md += ["",
           "TPS: transactions of all instances per second over the window in which every run of the "
           "scenario was measuring (each harness run connects all its clients before its clock starts; "
           "300 SCRAM logins take a second or two). Errors: what the harness clients got (sum of "
           "`errors`, whole runs). Refused logins: PostgreSQL's `too many connections for role \"app\"` "
           "lines from the harness launch to the end of the window / in all (also the poolers' start-up "
           "and the refills after the harness closes its clients, abandoning open transactions). p99: "
           "the worst run's p99; mean latency: over all transactions (both whole runs). Fairness: each "
           "instance's mean upstream connections over the second half of the `even` window (fair share "
           "5) and the largest deviation from 5. Rebalance: seconds from the shift (when the heavy "
           "clients on instance 2 start sending) until instance 2 holds at least 12 of the 15 "
           "connections for at least 1 s in the sampled timeline; then when it first holds 12; "
           "then its mean connections from 3 s after the shift to the end, and the other two's. "
           "TPS / static: TPS divided by "
           "`static`'s in the same scenario.",
           "", "Per-instance TPS over the same window (moving: before the shift → after it):", ""]
    md += per_instance_md(ms, configs, scenarios)
    md += ["", "Errors by kind:", ""]
    md += errors_md(ms, configs, scenarios)
    md += ["", "Connections over time: shares.svg."]
    text = "\n".join(md) + "\n"
    sys.stdout.write(text)
    with open(os.path.join(out, "summary.md"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump({f"{k[0]}/{k[1]}": v for k, v in ms.items()}, f, indent=1)
    svg_shares(data, configs, scenarios, os.path.join(out, "shares.svg"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
