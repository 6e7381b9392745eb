#!/usr/bin/python3
"""JSON plumbing and the result tables of bench/compare (standard library only).

Subcommands:
  pgbench-json  turn a pgbench run (stdout and its -l per-transaction logs) into
                pgmux-bench's --json shape; the stand-in used while pgmux-bench
                is not built
  annotate      add what bench/compare measured around a run (pooler CPU from
                /proc/PID/stat, RSS samples from /proc/PID/status) to its JSON
  report        read every run of a results directory and print the tables of
                medians, the ratios and the issue's targets; exit status 3 if
                pgmux showed an error in the incident scenario
"""

import argparse
import glob
import json
import math
import os
import re
import statistics
import sys

TARGETS = ("direct", "pgmux", "pgbouncer", "baseline")  # baseline: --baseline, an earlier pgmux
CHURN_AUTHS = ("trust", "scram", "scram-tls")  # the churn part's client authentication settings


# ---------------------------------------------------------------- pgbench-json


def percentile(sorted_values, q):
    if not sorted_values:
        return 0
    k = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


def cmd_pgbench_json(a):
    text = open(a.stdout, encoding="utf-8", errors="replace").read()
    latencies = []
    per_second = {}
    start = None
    for path in glob.glob(a.log_prefix + ".*"):
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                # client_id transaction_no time script_no time_epoch time_us
                if len(parts) < 6 or not parts[2].isdigit():
                    continue
                lat = int(parts[2])
                t = int(parts[4]) + int(parts[5]) / 1e6
                latencies.append(lat)
                start = t if start is None else min(start, t)
                per_second.setdefault(int(t), []).append(lat)
    latencies.sort()
    m = re.search(r"number of transactions actually processed: (\d+)", text)
    transactions = int(m.group(1)) if m else len(latencies)
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", text)
    tps = float(m.group(1)) if m else transactions / a.duration
    m = re.search(r"number of failed transactions: (\d+)", text)
    errors = int(m.group(1)) if m else 0
    aborted = len(re.findall(r"client \d+ aborted", text))
    errors_by_kind = []
    for msg in sorted(set(re.findall(r"(FATAL|ERROR):\s+(.*)", text))):
        errors_by_kind.append({"sqlstate": "", "message": " ".join(msg), "count": 1})
    timeline = []
    if start is not None:
        t0 = int(start)
        for sec in sorted(per_second):
            v = sorted(per_second[sec])
            timeline.append({"t": sec - t0, "tps": len(v), "p99_us": percentile(v, 0.99), "errors": 0})
    out = {
        "scenario": a.scenario,
        "clients": a.clients,
        "duration_s": a.duration,
        "transactions": transactions,
        "tps": tps,
        "errors": errors + aborted,
        "capacity_errors": 0,
        "errors_by_kind": errors_by_kind,
        "connected": a.clients - aborted,
        "connect_failures": 0,
        "latency_us": {
            "mean": statistics.fmean(latencies) if latencies else 0,
            "p50": percentile(latencies, 0.50),
            "p90": percentile(latencies, 0.90),
            "p99": percentile(latencies, 0.99),
            "p999": percentile(latencies, 0.999),
            "max": latencies[-1] if latencies else 0,
        },
        "connect_us": {"p50": 0, "p99": 0},
        "timeline": timeline,
        "harness": "pgbench (stand-in)",
    }
    json.dump(out, sys.stdout)
    print()


# -------------------------------------------------------------------- annotate


def cmd_annotate(a):
    try:
        with open(a.run, encoding="utf-8") as f:
            run = json.load(f)
    except (OSError, ValueError) as e:
        run = {"harness_failed": str(e), "transactions": 0, "tps": 0, "errors": 0}
    meta = run.get("compare", {})
    for k, v in (("target", a.target), ("round", a.round), ("harness_exit", a.exit)):
        if v is not None:
            meta[k] = v
    if a.ticks_before is not None and a.ticks_after is not None:
        cpu_s = (a.ticks_after - a.ticks_before) / a.clk_tck
        meta["pooler_cpu_s"] = cpu_s
        txns = run.get("transactions") or 0
        meta["pooler_cpu_us_per_txn"] = cpu_s * 1e6 / txns if txns else None
    if a.rss_file:
        samples = []
        try:
            with open(a.rss_file, encoding="utf-8") as f:
                samples = [int(x) for x in f.read().split() if x.isdigit()]
        except OSError:
            pass
        if samples:
            meta["pooler_rss_kb_max"] = max(samples)
            meta["pooler_rss_kb_median"] = statistics.median(samples)
    for kv in a.set or []:
        k, _, v = kv.partition("=")
        try:
            meta[k] = json.loads(v)
        except ValueError:
            meta[k] = v
    if meta.get("perf_syscalls") and run.get("tps"):
        # perf watched the pooler for the run's duration; compare with the
        # transactions completed in that time.
        meta["perf_syscalls_per_txn"] = meta["perf_syscalls"] / (run["tps"] * (run.get("duration_s") or 1))
    run["compare"] = meta
    with open(a.run, "w", encoding="utf-8") as f:
        json.dump(run, f, indent=1)
        f.write("\n")


# ---------------------------------------------------------------------- report


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(x, y):
    if x is None or y is None or y == 0:
        return None
    return x / y


def fnum(v, digits=0):
    if v is None:
        return "-"
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def fms(us):
    return "-" if us is None else f"{us / 1000:.3f}"


def fratio(v):
    return "-" if v is None else f"{v:.2f}x"


def table(headers, rows, out):
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    left = [i == 0 or h in ("target", "pooler", "wanted", "verdict", "most frequent error", "auth", "how")
            for i, h in enumerate(headers)]

    def fmt(cells):
        return "  ".join(c.ljust(w) if lf else c.rjust(w)
                         for c, w, lf in zip(cells, widths, left)).rstrip()

    out.append(fmt(headers))
    out.append("  ".join("-" * w for w in widths))
    for r in rows:
        out.append(fmt(r))


def dipped(run):
    """True if some whole interval of the run fell below half its median TPS."""
    tl = [e.get("tps", 0) for e in run.get("timeline") or []][:-1]  # the last may be partial
    if len(tl) < 3:
        return False
    m = statistics.median(tl)
    return m > 0 and min(tl) < m / 2


def added_latency(med_by, runs, sc):
    """What a pooler adds to one client's latency, by mean and by p50.

    "medians": pooler median - direct median over the rounds. "paired": pooler -
    direct within each round (the targets ran back to back), then the median of
    those differences, which cancels drift between rounds. The baseline (--baseline)
    is included when it ran."""
    poolers = ["pgmux", "pgbouncer"]
    if runs.get((sc, 1, "baseline")):
        poolers.append("baseline")
    res = {}
    for stat in ("mean", "p50"):
        k = f"{stat}_us"
        g = lambda t: (med_by.get((sc, 1, t)) or {}).get(k)  # noqa: E731
        d = g("direct")
        x = {"direct": d}
        for t in poolers:
            x[t] = None if d is None or g(t) is None else g(t) - d
        res.setdefault("medians", {})[stat] = x
        by_round = {}
        for t in ["direct"] + poolers:
            for r in runs.get((sc, 1, t)) or []:
                v = r.get("latency_us", {}).get(stat)
                if v is not None:
                    by_round.setdefault(r["compare"].get("round"), {})[t] = v
        full = [v for v in by_round.values() if all(t in v for t in ["direct"] + poolers)]
        y = {"direct": med([v["direct"] for v in full]), "rounds": len(full)}
        for t in poolers:
            y[t] = med([v[t] - v["direct"] for v in full])
        res.setdefault("paired", {})[stat] = y
    for how in res.values():
        for x in how.values():
            b = x["pgbouncer"]
            x["ratio"] = ratio(x["pgmux"], b) if b and b > 0 else None
            if "baseline" in x:
                x["baseline_ratio"] = ratio(x["baseline"], b) if b and b > 0 else None
    return res


def cmd_report(a):
    d = a.out
    out = []
    summary = {"throughput": {}, "idle": {}, "incident": {}, "churn": {}, "targets": []}
    meta = load(os.path.join(d, "meta.json")) or {}
    if meta:
        out.append(f"bench/compare  {meta.get('started', '')}")
        for k in ("machine", "os", "postgresql", "pgbouncer", "pgmux", "baseline", "harness", "command"):
            if meta.get(k):
                out.append(f"  {k}: {meta[k]}")
        out.append("")

    # ---- throughput rounds
    runs = {}
    for path in sorted(glob.glob(os.path.join(d, "runs", "*.json"))):
        r = load(path)
        if not r or "compare" not in r:
            continue
        key = (r.get("scenario", "?"), int(r.get("clients", 0)), r["compare"]["target"])
        runs.setdefault(key, []).append(r)
    med_by = {}
    if runs:
        scenarios = sorted({k[0] for k in runs})
        for sc in scenarios:
            counts = sorted({k[1] for k in runs if k[0] == sc})
            rounds = max(len(v) for k, v in runs.items() if k[0] == sc)
            out.append(f"Scenario {sc}: medians over {rounds} interleaved round(s) "
                       "(direct, pgmux, pgbouncer, direct, ...)")
            rows = []
            for c in counts:
                for t in TARGETS:
                    rs = runs.get((sc, c, t))
                    if not rs:
                        continue
                    m = {
                        "tps": med([r.get("tps") for r in rs]),
                        "mean_us": med([r.get("latency_us", {}).get("mean") for r in rs]),
                        "p50_us": med([r.get("latency_us", {}).get("p50") for r in rs]),
                        "p99_us": med([r.get("latency_us", {}).get("p99") for r in rs]),
                        "errors": med([r.get("errors") for r in rs]),
                        "cpu_us_per_txn": med([r["compare"].get("pooler_cpu_us_per_txn") for r in rs]),
                        "rss_kb": med([r["compare"].get("pooler_rss_kb_max") for r in rs]),
                        "rounds": len(rs),
                    }
                    med_by[(sc, c, t)] = m
                    summary["throughput"].setdefault(sc, {}).setdefault(str(c), {})[t] = m
                    rows.append([
                        str(c), t, fnum(m["tps"]), fms(m["mean_us"]), fms(m["p50_us"]), fms(m["p99_us"]),
                        fnum(m["errors"]),
                        fnum(m["cpu_us_per_txn"], 1) if t != "direct" else "",
                        fnum(m["rss_kb"] / 1024, 1) if t != "direct" and m["rss_kb"] else "",
                    ])
            table(["clients", "target", "TPS", "mean ms", "p50 ms", "p99 ms", "errors",
                   "pooler CPU us/txn", "pooler RSS MB"], rows, out)
            dips = []
            for t in TARGETS:
                rs = [r for (s_, c_, t_), v in runs.items() if s_ == sc and t_ == t for r in v]
                n = sum(1 for r in rs if dipped(r))
                dips.append(f"{t} {n}/{len(rs)}")
            out.append("Disturbed runs (a second below half the run's median TPS, e.g. other work on the "
                       "machine): " + ", ".join(dips))
            out.append("")

            out.append("Ratios (of the medians)")
            rows = []
            for c in counts:
                g = lambda t, k: (med_by.get((sc, c, t)) or {}).get(k)  # noqa: E731
                rows.append([
                    str(c),
                    fratio(ratio(g("pgmux", "tps"), g("pgbouncer", "tps"))),
                    fratio(ratio(g("pgmux", "cpu_us_per_txn"), g("pgbouncer", "cpu_us_per_txn"))),
                    fratio(ratio(g("pgmux", "p50_us"), g("pgbouncer", "p50_us"))),
                    fratio(ratio(g("pgmux", "p99_us"), g("pgbouncer", "p99_us"))),
                    fratio(ratio(g("pgmux", "tps"), g("direct", "tps"))),
                    fratio(ratio(g("pgbouncer", "tps"), g("direct", "tps"))),
                    fratio(ratio(g("pgmux", "p50_us"), g("direct", "p50_us"))),
                    fratio(ratio(g("pgbouncer", "p50_us"), g("direct", "p50_us"))),
                ])
            table(["clients", "TPS mux/pgb", "CPU mux/pgb", "p50 mux/pgb", "p99 mux/pgb",
                   "TPS mux/dir", "TPS pgb/dir", "p50 mux/dir", "p50 pgb/dir"], rows, out)
            out.append("")
            if any((sc, c, "baseline") in med_by for c in counts):
                out.append("pgmux against the baseline build (--baseline), ratios of the medians")
                rows = []
                for c in counts:
                    g = lambda t, k: (med_by.get((sc, c, t)) or {}).get(k)  # noqa: E731
                    rows.append([
                        str(c),
                        fratio(ratio(g("pgmux", "tps"), g("baseline", "tps"))),
                        fratio(ratio(g("pgmux", "cpu_us_per_txn"), g("baseline", "cpu_us_per_txn"))),
                        fratio(ratio(g("pgmux", "mean_us"), g("baseline", "mean_us"))),
                        fratio(ratio(g("pgmux", "p50_us"), g("baseline", "p50_us"))),
                        fratio(ratio(g("pgmux", "p99_us"), g("baseline", "p99_us"))),
                    ])
                table(["clients", "TPS mux/base", "CPU mux/base", "mean mux/base", "p50 mux/base",
                       "p99 mux/base"], rows, out)
                out.append("")

            if 1 in counts:
                added = added_latency(med_by, runs, sc)
                out.append("Added latency at 1 client (pooler - direct), us")
                rows = []
                with_base = "baseline" in added["medians"]["mean"]
                for stat in ("mean", "p50"):
                    for how in ("medians", "paired"):
                        x = added[how][stat]
                        row = [stat, "median of each" if how == "medians" else "per round, median",
                               fnum(x["direct"], 1), fnum(x["pgmux"], 1), fnum(x["pgbouncer"], 1),
                               fratio(x["ratio"])]
                        if with_base:
                            row += [fnum(x["baseline"], 1), fratio(x["baseline_ratio"])]
                        rows.append(row)
                headers = ["latency", "how", "direct", "pgmux added", "pgbouncer added", "mux-added/pgb-added"]
                if with_base:
                    headers += ["baseline added", "base-added/pgb-added"]
                table(headers, rows, out)
                out.append(f"  'median of each': pooler median - direct median over {rounds} round(s); 'per round': "
                           "pooler - direct of the same round, then the median of those")
                summary["throughput"][sc]["added_latency_us"] = {
                    "pgmux": added["medians"]["p50"]["pgmux"], "pgbouncer": added["medians"]["p50"]["pgbouncer"]}
                summary["throughput"][sc]["added_latency"] = added
                out.append("")

    # ---- profile (--perf)
    prof = []
    for (sc, c, t), rs in sorted(runs.items()):
        for r in rs:
            x = r["compare"].get("perf_syscalls_per_txn")
            if x:
                prof.append([sc, str(c), t, f"{x:.1f}", fnum(r["compare"].get("pooler_cpu_us_per_txn"), 1)])
    if prof:
        out.append("Profiled runs (--perf, round 1): pooler system calls per transaction")
        table(["scenario", "clients", "target", "syscalls/txn", "CPU us/txn"], prof, out)
        out.append("")

    # ---- idle memory
    idle = {}
    for t in ("pgmux", "pgbouncer"):
        r = load(os.path.join(d, "idle", f"{t}.json"))
        if r and "compare" in r:
            idle[t] = r
    if idle:
        out.append("Idle clients: pooler RSS before and with the clients connected")
        rows = []
        for t, r in idle.items():
            c = r["compare"]
            # The harness's count of connected clients; else the pooler's new descriptors.
            n = r.get("connected") or c.get("held") or 0
            c["bytes_per_client"] = ((c.get("rss_with_kb") or 0) - (c.get("rss_before_kb") or 0)) * 1024 / n \
                if n else None
            rows.append([t, fnum(c.get("requested")), fnum(r.get("connected")),
                         fnum(r.get("connect_failures")), fnum(c.get("held")),
                         fnum((c.get("rss_before_kb") or 0) / 1024, 1),
                         fnum((c.get("rss_with_kb") or 0) / 1024, 1),
                         fnum(c.get("bytes_per_client"))])
            summary["idle"][t] = c | {"connected": r.get("connected"),
                                      "connect_failures": r.get("connect_failures")}
        table(["pooler", "requested", "connected", "failed", "held (fds)", "RSS before MB",
               "RSS with MB", "bytes/client"], rows, out)
        bm = ratio(idle.get("pgmux", {}).get("compare", {}).get("bytes_per_client"),
                   idle.get("pgbouncer", {}).get("compare", {}).get("bytes_per_client"))
        out.append(f"  bytes per idle client, pgmux/pgbouncer = {fratio(bm)}")
        notes = {r["compare"].get("note") for r in idle.values() if r["compare"].get("note")}
        for n in sorted(notes):
            out.append(f"  note: {n}")
        out.append("")

    # ---- incident
    inc = {}
    for t in TARGETS:
        r = load(os.path.join(d, "incident", f"{t}.json"))
        if r and "compare" in r:
            inc[t] = r
    incident_fail = False
    if inc:
        any_r = next(iter(inc.values()))
        out.append(f"Incident: upstream capped at {any_r['compare'].get('usable_connections', '?')} usable "
                   f"connections, {any_r.get('clients')} clients of {any_r.get('scenario')} "
                   f"for {fnum(any_r.get('duration_s'))} s each")
        rows = []
        for t, r in inc.items():
            kinds = sorted(r.get("errors_by_kind") or [], key=lambda k: -k.get("count", 0))
            top = ""
            if kinds:
                top = f"{kinds[0].get('sqlstate', '')} {kinds[0].get('message', '')}".strip()[:70]
            rows.append([t, fnum(r.get("transactions")), fnum(r.get("tps")), fnum(r.get("errors")),
                         fnum(r.get("capacity_errors")), fnum(r.get("connected")),
                         fnum(r.get("connect_failures")), top])
            summary["incident"][t] = {k: r.get(k) for k in ("transactions", "tps", "errors", "capacity_errors",
                                                           "connected", "connect_failures", "errors_by_kind")}
        table(["target", "txns", "TPS", "errors", "capacity errors", "connected", "connect failures",
               "most frequent error"], rows, out)
        m = inc.get("pgmux")
        dr = inc.get("direct")
        if dr is not None:
            out.append(f"  direct:    {fnum(dr.get('errors'))} errors, of them {fnum(dr.get('capacity_errors'))} "
                       f"capacity errors; {fnum(dr.get('connect_failures'))} failed connection attempts")
        if m is not None:
            bad = max(m.get("errors") or 0, m.get("capacity_errors") or 0, m.get("connect_failures") or 0)
            broken = m["compare"].get("harness_exit") not in (0, None) or "harness_failed" in m
            incident_fail = bad > 0 or broken
            out.append(f"  pgmux:     {fnum(m.get('errors'))} errors, {fnum(m.get('capacity_errors'))} capacity errors, "
                       f"{fnum(m.get('connect_failures'))} failed connection attempts"
                       + ("; the harness failed" if broken else "")
                       + f" -> {'FAIL' if incident_fail else 'ok (zero errors)'}")
        out.append("")

    # ---- churn
    churn = {}
    for path in sorted(glob.glob(os.path.join(d, "churn", "*.json"))):
        r = load(path)
        if r and "compare" in r and r["compare"].get("auth"):
            churn.setdefault((r["compare"]["auth"], r["compare"]["target"]), []).append(r)
    churn_med = {}
    if churn:
        any_r = next(iter(churn.values()))[0]
        rounds = max(len(v) for v in churn.values())
        auths = [x for x in CHURN_AUTHS if any(k[0] == x for k in churn)]
        auths += sorted({k[0] for k in churn} - set(auths))
        out.append(f"Churn: {any_r.get('clients')} clients each looping connect, SELECT 1, disconnect for "
                   f"{fnum(any_r.get('duration_s'))} s; medians over {rounds} interleaved round(s)")
        rows = []
        for au in auths:
            for t in TARGETS:
                rs = churn.get((au, t))
                if not rs:
                    continue
                m = {
                    "conn_per_s": med([r.get("tps") for r in rs]),
                    "connect_p50_us": med([r.get("connect_us", {}).get("p50") for r in rs]),
                    "connect_p99_us": med([r.get("connect_us", {}).get("p99") for r in rs]),
                    "mean_us": med([r.get("latency_us", {}).get("mean") for r in rs]),
                    "p50_us": med([r.get("latency_us", {}).get("p50") for r in rs]),
                    "errors": med([r.get("errors") for r in rs]),
                    "cpu_us_per_login": med([r["compare"].get("pooler_cpu_us_per_txn") for r in rs]),
                    "rss_kb": med([r["compare"].get("pooler_rss_kb_max") for r in rs]),
                    "rounds": len(rs),
                }
                churn_med[(au, t)] = m
                summary["churn"].setdefault(au, {})[t] = m
                rows.append([au, t, fnum(m["conn_per_s"]), fms(m["connect_p50_us"]), fms(m["connect_p99_us"]),
                             fms(m["mean_us"]), fms(m["p50_us"]), fnum(m["errors"]),
                             fnum(m["cpu_us_per_login"], 1) if t != "direct" else "",
                             fnum(m["rss_kb"] / 1024, 1) if t != "direct" and m["rss_kb"] else ""])
        table(["auth", "target", "conn/s", "connect p50 ms", "connect p99 ms", "mean ms", "p50 ms", "errors",
               "pooler CPU us/login", "pooler RSS MB"], rows, out)
        dips = []
        for t in TARGETS:
            rs = [r for (_, t_), v in churn.items() if t_ == t for r in v]
            if rs:
                dips.append(f"{t} {sum(1 for r in rs if dipped(r))}/{len(rs)}")
        out.append("Disturbed runs (a second below half the run's median conn/s): " + ", ".join(dips))
        out.append("  conn/s: whole logins per second; connect: the handshake (TCP, TLS, auth) to ready; "
                   "mean/p50: connect + SELECT 1 + disconnect")
        out.append("")
        out.append("Churn ratios (of the medians)")
        rows = []
        for au in auths:
            g = lambda t, k: (churn_med.get((au, t)) or {}).get(k)  # noqa: E731
            rt = {
                "conn_per_s_mux_pgb": ratio(g("pgmux", "conn_per_s"), g("pgbouncer", "conn_per_s")),
                "cpu_per_login_mux_pgb": ratio(g("pgmux", "cpu_us_per_login"), g("pgbouncer", "cpu_us_per_login")),
                "connect_p50_mux_pgb": ratio(g("pgmux", "connect_p50_us"), g("pgbouncer", "connect_p50_us")),
                "connect_p99_mux_pgb": ratio(g("pgmux", "connect_p99_us"), g("pgbouncer", "connect_p99_us")),
                "conn_per_s_mux_dir": ratio(g("pgmux", "conn_per_s"), g("direct", "conn_per_s")),
                "conn_per_s_pgb_dir": ratio(g("pgbouncer", "conn_per_s"), g("direct", "conn_per_s")),
            }
            summary["churn"].setdefault(au, {})["ratios"] = rt
            rows.append([au] + [fratio(v) for v in rt.values()])
        table(["auth", "conn/s mux/pgb", "CPU/login mux/pgb", "connect p50 mux/pgb", "connect p99 mux/pgb",
               "conn/s mux/dir", "conn/s pgb/dir"], rows, out)
        out.append("")

    # ---- targets
    tg = []
    sel = {k[1:]: v for k, v in med_by.items() if k[0] == "select"}

    def verdict(name, value, limit, better):
        if value is None:
            tg.append([name, "-", f"{better} {limit:.2f}x", "not measured"])
            return
        ok = value <= limit if better == "<=" else value >= limit
        tg.append([name, f"{value:.2f}x", f"{better} {limit:.2f}x", "met" if ok else "MISSED"])
        summary["targets"].append({"target": name, "ratio": value, "limit": limit, "met": ok})

    for c in (100, 500):
        verdict(f"pooler CPU/txn, select, {c} clients, pgmux/pgb",
                ratio((sel.get((c, "pgmux")) or {}).get("cpu_us_per_txn"),
                      (sel.get((c, "pgbouncer")) or {}).get("cpu_us_per_txn")), 0.7, "<=")
    for c in (100, 500, 1000):
        verdict(f"TPS, select, {c} clients, pgmux/pgb",
                ratio((sel.get((c, "pgmux")) or {}).get("tps"), (sel.get((c, "pgbouncer")) or {}).get("tps")),
                1.1, ">=")
    verdict("RSS per idle client, pgmux/pgb",
            ratio(idle.get("pgmux", {}).get("compare", {}).get("bytes_per_client"),
                  idle.get("pgbouncer", {}).get("compare", {}).get("bytes_per_client")), 0.75, "<=")
    mi = idle.get("pgmux")
    if mi is not None:
        held = mi.get("connected") or mi["compare"].get("held") or 0
        requested = mi["compare"].get("requested") or 0
        if requested >= 50000:
            ok = held >= 50000 and not mi.get("connect_failures")
            tg.append(["50,000 idle clients held by pgmux", f"{held:,}", ">= 50,000", "met" if ok else "MISSED"])
            summary["targets"].append({"target": "50000 idle held", "held": held, "met": ok})
        else:
            why = mi["compare"].get("capped_from")
            why = f" (asked {why:,}; capped by the open-file limit)" if why else f" (ran {requested:,})"
            tg.append(["50,000 idle clients held by pgmux", f"{held:,}", ">= 50,000", "not measured" + why])
    added = summary["throughput"].get("select", {}).get("added_latency", {}).get("medians", {})
    for stat in ("mean", "p50"):
        verdict(f"added latency at 1 client ({stat}), pgmux/pgb", (added.get(stat) or {}).get("ratio"), 0.7, "<=")
    for au in CHURN_AUTHS:
        g = lambda t, k: (churn_med.get((au, t)) or {}).get(k)  # noqa: E731
        verdict(f"churn conn/s, {au}, pgmux/pgb", ratio(g("pgmux", "conn_per_s"), g("pgbouncer", "conn_per_s")),
                1.3, ">=")
        verdict(f"pooler CPU/login, churn {au}, pgmux/pgb",
                ratio(g("pgmux", "cpu_us_per_login"), g("pgbouncer", "cpu_us_per_login")), 0.7, "<=")
    out.append("Targets")
    table(["target", "measured", "wanted", "verdict"], tg, out)

    text = "\n".join(out) + "\n"
    sys.stdout.write(text)
    with open(os.path.join(d, "summary.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    with open(os.path.join(d, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
        f.write("\n")
    return 3 if incident_fail else 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("pgbench-json")
    s.add_argument("--scenario", required=True)
    s.add_argument("--clients", type=int, required=True)
    s.add_argument("--duration", type=float, required=True)
    s.add_argument("--stdout", required=True)
    s.add_argument("--log-prefix", required=True)
    s = sub.add_parser("annotate")
    s.add_argument("run")
    s.add_argument("--target")
    s.add_argument("--round", type=int)
    s.add_argument("--exit", type=int)
    s.add_argument("--ticks-before", type=int)
    s.add_argument("--ticks-after", type=int)
    s.add_argument("--clk-tck", type=int, default=100)
    s.add_argument("--rss-file")
    s.add_argument("--set", action="append", help="KEY=JSON value to add")
    s = sub.add_parser("report")
    s.add_argument("out")
    a = p.parse_args()
    if a.cmd == "pgbench-json":
        cmd_pgbench_json(a)
    elif a.cmd == "annotate":
        cmd_annotate(a)
    else:
        sys.exit(cmd_report(a))


if __name__ == "__main__":
    main()
