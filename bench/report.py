#!/usr/bin/env python3
"""Turn the raw outputs of bench/compare into one markdown table, ratios and target verdicts.

Standard library only. Reads RAW/ (written by bench/compare):
  meta.txt                    key=value run parameters
  h1-T.txt                    wrk -c64 output (saturation, HTTP/1.1 keep-alive)
  h2c-T.txt | h2c-T.skip      h2load -c16 -m16 output, or why h2c was skipped
  rate-T-rN.txt/.log/.cpu     h2load --h1 --rps output, per-request log, "ticks_before ticks_after"
T is one of direct, weir, weir-cb (weir with a circuit breaker, outlier detection and retries
configured but never firing), weir-trace0/1/100 (tracing on, 0/1/100 % of requests sampled and
exported), nginx, haproxy.
  rss-T.txt, hwm-T.txt        wrk -c256 output, summed VmHWM in kB
  died-T.txt                  present when the proxy process died during the run
The report never calls a run good while a target is missed: in full mode every target is listed
as met, NOT MET or not measured, and the last line counts them; --quick judges none and says so.
Exit status: 1 a target failed to serve requests; 3 with --enforce (full mode) when a performance
target is not met or could not be measured; 0 otherwise.
"""

import argparse
import os
import re
import statistics
import sys

TARGETS = ["direct", "weir", "weir-cb", "weir-trace0", "weir-trace1", "weir-trace100", "nginx", "haproxy"]
LABEL = {"direct": "direct", "weir": "weir", "weir-cb": "weir+cb", "weir-trace0": "weir+trace 0 %",
         "weir-trace1": "weir+trace 1 %", "weir-trace100": "weir+trace 100 %", "nginx": "nginx",
         "haproxy": "HAProxy"}
RATE_TOLERANCE = 0.95  # achieved rate below 95 % of the asked rate is flagged (and not judged)
# The targets weir is held to (bench/README.md):
CPU_VS_HAPROXY = 0.90  # CPU per request @5k ≤ 0.90x HAProxy (median of per-round ratios)
SATURATION_VS_HAPROXY = 1.0  # h1 and h2c saturation ≥ 1.0x HAProxy
P99_VS_HAPROXY = 1.0  # p99 @5k ≤ 1.0x HAProxy (median of per-round ratios)
RSS_LIMIT_KB = 12 * 1024  # peak RSS (VmHWM) after 256 keep-alive connections < 12 MiB
# weir with a feature on, CPU per request vs weir (None: reported, not judged): the
# resilience features configured but idle; tracing at 0, 1 and 100 % sampling.
VARIANT_CPU = {"weir-cb": 1.05, "weir-trace0": None, "weir-trace1": 1.03, "weir-trace100": 1.15}


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return None


def parse_meta(raw):
    meta = {}
    for line in (read(os.path.join(raw, "meta.txt")) or "").splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            meta[k.strip()] = v.strip()
    return meta


def parse_wrk(text):
    """wrk summary -> dict(rps, requests, non2xx, socket_errors) or None."""
    if not text:
        return None
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not m:
        return None
    out = {"rps": float(m.group(1)), "requests": 0, "non2xx": 0, "socket_errors": 0}
    m = re.search(r"(\d+) requests in", text)
    if m:
        out["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        out["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["socket_errors"] = sum(int(x) for x in m.groups())
    return out


def parse_h2load(text):
    """h2load summary -> dict(rps, done, succeeded, failed, errored, timeout, s2xx, non2xx)."""
    if not text:
        return None
    m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", text)
    r = re.search(
        r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
        r"(\d+) failed, (\d+) errored, (\d+) timeout",
        text,
    )
    s = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if not (m and r and s):
        return None
    total, _started, done, ok, failed, errored, timeout = (int(x) for x in r.groups())
    s2, s3, s4, s5 = (int(x) for x in s.groups())
    return {
        "elapsed": float(m.group(1)),
        "rps": float(m.group(2)),
        "total": total,
        "done": done,
        "succeeded": ok,
        "failed": failed,
        "errored": errored,
        "timeout": timeout,
        "s2xx": s2,
        "non2xx": s3 + s4 + s5,
    }


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def parse_rate_log(text):
    """h2load --log-file: start_us <tab> status <tab> duration_us per request."""
    starts, lat, ok, bad = [], [], 0, 0
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        try:
            start, status, dur = int(parts[0]), int(parts[1]), int(parts[2])
        except ValueError:
            continue
        starts.append(start)
        if 200 <= status < 300:
            ok += 1
            lat.append(dur)
        else:
            bad += 1
    if not starts:
        return None
    lat.sort()
    span = (max(starts) - min(starts)) / 1e6
    rate = (len(starts) - 1) / span if span > 0 else 0.0
    return {
        "n": len(starts),
        "ok": ok,
        "bad": bad,
        "rate": rate,
        "p50": percentile(lat, 50),
        "p99": percentile(lat, 99),
    }


def parse_busy(text, clk_tck):
    """"ticks0 ticks1 ns0 ns1" -> share of one CPU the proxy used during the run (0..1)."""
    try:
        c0, c1, t0, t1 = (int(x) for x in text.split())
    except (AttributeError, ValueError):
        return None
    wall = (t1 - t0) / 1e9
    return (c1 - c0) / clk_tck / wall if wall > 0 else None


def fmt_rps(v, busy):
    if v is None:
        return "n/a"
    return f"{v:,.0f}" if busy is None else f"{v:,.0f} ({busy * 100:.0f} %)"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_int(v):
    return "n/a" if v is None else f"{v:,.0f}"


def fmt_us(v):
    if v is None:
        return "n/a"
    return f"{v:,.0f} µs" if v >= 100 else f"{v:.1f} µs"


def fmt_mb(kb):
    return "n/a" if kb is None else f"{kb / 1024:.1f} MiB"


def fmt_ratio(v):
    return "n/a" if v is None else f"{v:.2f}×"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--raw", required=True)
    ap.add_argument("--out")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--enforce", action="store_true")
    args = ap.parse_args()
    raw = args.raw
    meta = parse_meta(raw)
    targets = [t for t in meta.get("targets", ",".join(TARGETS)).split(",") if t]
    rounds = int(meta.get("rounds", "1"))
    clk_tck = int(meta.get("clk_tck", "100"))
    asked_rate = int(meta.get("rate", "5000"))
    p = lambda name: os.path.join(raw, name)  # noqa: E731

    failures = []  # (target, what) — a target that did not serve requests cleanly
    notes = []
    busy = int(meta.get("preflight_busy", "0") or 0)
    if busy > 10:
        notes.append(
            f"the machine was {busy} % busy (all CPUs) just before the run; other work skews every figure"
        )
    res = {t: {} for t in targets}

    for t in targets:
        r = res[t]
        died = read(p(f"died-{t}.txt"))
        if died:
            failures.append((t, "process died during the run: " + died.strip().splitlines()[0]))

        # 1. HTTP/1.1 saturation
        w = parse_wrk(read(p(f"h1-{t}.txt")))
        if w is None:
            failures.append((t, "h1 saturation: no wrk result (see raw/h1-%s.txt)" % t))
        else:
            r["h1"] = w["rps"]
            if w["requests"] == 0:
                failures.append((t, "h1 saturation: no completed requests"))
            if w["non2xx"]:
                failures.append((t, f"h1 saturation: {w['non2xx']} non-2xx responses"))
            if w["socket_errors"] > max(10, w["requests"] // 1000):
                failures.append((t, f"h1 saturation: {w['socket_errors']} socket errors"))

        r["h1_busy"] = parse_busy(read(p(f"h1-{t}.busy")), clk_tck) if t != "direct" else None

        # 2. h2c saturation
        skip = read(p(f"h2c-{t}.skip"))
        if skip is not None:
            r["h2c_skip"] = skip.strip()
            notes.append(f"{LABEL[t]}: h2c skipped — {skip.strip()}")
        else:
            h = parse_h2load(read(p(f"h2c-{t}.txt")))
            if h is None:
                failures.append((t, "h2c saturation: no h2load result (see raw/h2c-%s.txt)" % t))
            else:
                r["h2c"] = h["rps"]
                r["h2c_busy"] = parse_busy(read(p(f"h2c-{t}.busy")), clk_tck) if t != "direct" else None
                if h["succeeded"] == 0:
                    failures.append((t, "h2c saturation: no successful requests"))
                if h["non2xx"]:
                    failures.append((t, f"h2c saturation: {h['non2xx']} non-2xx responses"))
                errs = h["failed"] + h["errored"] + h["timeout"]
                if errs > max(10, h["total"] // 1000):
                    failures.append((t, f"h2c saturation: {errs} failed/errored requests"))

        # 3. fixed rate: CPU per request and latency, per round
        r["rounds"] = []
        for n in range(1, rounds + 1):
            base = p(f"rate-{t}-r{n}")
            summary = parse_h2load(read(base + ".txt"))
            lg = parse_rate_log(read(base + ".log"))
            if summary is None or lg is None:
                failures.append((t, f"round {n} @{asked_rate}/s: no h2load result (see {base}.txt, .log)"))
                r["rounds"].append(None)
                continue
            if lg["bad"] or summary["non2xx"]:
                failures.append((t, f"round {n} @{asked_rate}/s: {max(lg['bad'], summary['non2xx'])} non-2xx responses"))
            errs = summary["failed"] + summary["errored"] + summary["timeout"]
            if errs > max(10, summary["total"] // 1000):
                failures.append((t, f"round {n} @{asked_rate}/s: {errs} failed/errored requests"))
            cpu_us = None
            cpu = read(base + ".cpu")
            if cpu and lg["n"]:
                before, after = (int(x) for x in cpu.split())
                cpu_us = (after - before) * 1e6 / clk_tck / lg["n"]
            r["rounds"].append({"cpu": cpu_us, "p50": lg["p50"], "p99": lg["p99"], "rate": lg["rate"]})
        ok_rounds = [x for x in r["rounds"] if x]
        r["cpu"] = median([x["cpu"] for x in ok_rounds])
        r["p50"] = median([x["p50"] for x in ok_rounds])
        r["p99"] = median([x["p99"] for x in ok_rounds])
        r["rate"] = median([x["rate"] for x in ok_rounds])

        # 4. peak RSS
        if t != "direct":
            w = parse_wrk(read(p(f"rss-{t}.txt")))
            if w is None or w["requests"] == 0:
                failures.append((t, f"{256}-connection run: no completed requests"))
            elif w["non2xx"]:
                failures.append((t, f"{256}-connection run: {w['non2xx']} non-2xx responses"))
            hwm = read(p(f"hwm-{t}.txt"))
            r["rss"] = int(hwm.strip()) if hwm and hwm.strip().isdigit() and int(hwm) > 0 else None

    # ---- table -------------------------------------------------------------------------------
    lines = []
    mode = "quick (smoke test, targets not judged)" if args.quick else "full"
    lines.append(f"## weir bench — {meta.get('date', '')}")
    lines.append("")
    lines.append(
        f"mode {mode}; {meta.get('duration', '?')} s per measurement; {rounds} round(s) @ {asked_rate:,} req/s; "
        f"git {meta.get('git', '?')}; {meta.get('ncpu', '?')} CPUs ({meta.get('cpu_model', '?')}); "
        "proxy on CPU 0, load generator + upstream on CPU 1"
    )
    vers = [meta.get(k) for k in ("version_weir", "version_nginx", "version_haproxy", "versions_tools")]
    lines.append("versions: " + "; ".join(v for v in vers if v))
    lines.append("")
    lines.append(
        f"| target | h1 req/s (wrk, 64 conn) | h2c req/s (h2load, 16×16) | CPU µs/req @{asked_rate // 1000}k "
        f"| p50 @{asked_rate // 1000}k | p99 @{asked_rate // 1000}k | peak RSS (VmHWM, 256 conn) |"
    )
    lines.append("|---|--:|--:|--:|--:|--:|--:|")
    for t in targets:
        r = res[t]
        h2c = "skipped (no h2c)" if "h2c_skip" in r else fmt_rps(r.get("h2c"), r.get("h2c_busy"))
        cpu = "n/a" if t == "direct" else fmt_us(r.get("cpu"))
        flag = ""
        if r.get("rate") is not None and r["rate"] < RATE_TOLERANCE * asked_rate:
            flag = f" (only {r['rate']:,.0f}/s)"
            notes.append(f"{LABEL[t]}: achieved {r['rate']:,.0f} req/s of the asked {asked_rate:,}")
        rss = "n/a" if t == "direct" else fmt_mb(r.get("rss"))
        lines.append(
            f"| {LABEL[t]} | {fmt_rps(r.get('h1'), r.get('h1_busy'))} | {h2c} | {cpu}{flag} | {fmt_us(r.get('p50'))} "
            f"| {fmt_us(r.get('p99'))} | {rss} |"
        )
    lines.append("")
    lines.append(
        "(%) after a saturation figure = the proxy's CPU use during that run, as a share of its one core; "
        "well below 100 % means the load generator + upstream core, not the proxy, was the limit."
    )
    lines.append("")

    # ---- ratios (same run; @5k figures are medians of per-round ratios) ----------------------
    def round_ratio(key, other, this="weir"):
        a, b = res[this]["rounds"], res[other]["rounds"]
        per = [ratio(x[key], y[key]) for x, y in zip(a, b) if x and y]
        per = [v for v in per if v is not None]
        return (statistics.median(per) if per else None), per

    # verdicts: (name, value, passes(value), format, why not judged or None)
    verdicts = []
    def compare(this, other):
        """The `- this / other:` line of ratios, and the median CPU/request ratio."""
        a, b = res[this], res[other]
        cpu_r, cpu_per = round_ratio("cpu", other, this=this)
        p50_r, _ = round_ratio("p50", other, this=this)
        p99_r, _ = round_ratio("p99", other, this=this)
        per_txt = ""
        if len(cpu_per) > 1:
            per_txt = " (rounds: " + ", ".join(f"{v:.2f}" for v in cpu_per) + ")"
        lines.append(
            f"- {LABEL[this]} / {LABEL[other]}: h1 req/s {fmt_ratio(ratio(a.get('h1'), b.get('h1')))}, "
            f"h2c req/s {fmt_ratio(ratio(a.get('h2c'), b.get('h2c')))}, "
            f"CPU/req {fmt_ratio(cpu_r)}{per_txt}, p50 {fmt_ratio(p50_r)}, p99 {fmt_ratio(p99_r)}, "
            f"peak RSS {fmt_ratio(ratio(a.get('rss'), b.get('rss')))}"
        )
        return cpu_r

    if "weir" in targets:
        for other in ("haproxy", "nginx"):
            if other in targets:
                compare("weir", other)

        def short_of_rate(*names):
            """Why a figure @5k is not judged: a target that did not reach the asked rate."""
            slow = [t for t in names if t in targets and res[t].get("rate") is not None
                    and res[t]["rate"] < RATE_TOLERANCE * asked_rate]
            return "; ".join(f"{LABEL[t]} reached only {res[t]['rate']:,.0f} req/s" for t in slow) or None

        w, h = res["weir"], res.get("haproxy", {})
        no_haproxy = None if "haproxy" in targets else "HAProxy not among --targets"
        cpu_r = round_ratio("cpu", "haproxy")[0] if "haproxy" in targets else None
        p99_r = round_ratio("p99", "haproxy")[0] if "haproxy" in targets else None
        at_rate = no_haproxy or short_of_rate("weir", "haproxy")
        verdicts += [
            (f"CPU/request @{asked_rate // 1000}k ≤ {CPU_VS_HAPROXY:.2f}× HAProxy (median of per-round ratios)",
             cpu_r, lambda v: v <= CPU_VS_HAPROXY, fmt_ratio, at_rate),
            (f"h1 saturation ≥ {SATURATION_VS_HAPROXY:.2f}× HAProxy", ratio(w.get("h1"), h.get("h1")),
             lambda v: v >= SATURATION_VS_HAPROXY, fmt_ratio, no_haproxy),
            (f"h2c saturation ≥ {SATURATION_VS_HAPROXY:.2f}× HAProxy", ratio(w.get("h2c"), h.get("h2c")),
             lambda v: v >= SATURATION_VS_HAPROXY, fmt_ratio, no_haproxy),
            (f"p99 @{asked_rate // 1000}k ≤ {P99_VS_HAPROXY:.2f}× HAProxy (median of per-round ratios)",
             p99_r, lambda v: v <= P99_VS_HAPROXY, fmt_ratio, at_rate),
            (f"weir peak RSS (256 keep-alive connections) < {RSS_LIMIT_KB // 1024} MiB", w.get("rss"),
             lambda v: v < RSS_LIMIT_KB, fmt_mb, None),
        ]
        # weir with a feature on (resilience idle, tracing at a sampling rate) against weir:
        # same run, same rounds. A limit of None is shown, not judged.
        for variant, limit in VARIANT_CPU.items():
            cpu_r = compare(variant, "weir") if variant in targets else None
            if limit is not None:
                why = short_of_rate("weir", variant) if variant in targets else f"{variant} not among --targets"
                verdicts.append(
                    (f"{LABEL[variant]} CPU/request ≤ {limit:.2f}× weir (median of per-round ratios)", cpu_r,
                     lambda v, limit=limit: v <= limit, fmt_ratio, why)
                )

    unmet, unmeasured = [], []
    lines.append("")
    if not verdicts:
        lines.append("targets: none judged — weir was not among --targets")
    elif args.quick:
        lines.append("targets: quick mode: targets not judged")
        for name, value, _ok, fmt, _why in verdicts:
            lines.append(f"- {name}: {fmt(value)} (not judged)")
    else:
        lines.append("targets:")
        for name, value, ok, fmt, why in verdicts:
            if why is not None or value is None:
                state = "not measured" + (f" ({why})" if why else "")
                unmeasured.append(name)
            elif ok(value):
                state = "met"
            else:
                state = "NOT MET"
                unmet.append(name)
            lines.append(f"- {name}: {fmt(value)} — {state}")
    lines.append("")

    for n in notes:
        lines.append(f"- note: {n}")
    for t, what in failures:
        lines.append(f"- FAIL: {LABEL[t]}: {what}")
    if notes or failures:
        lines.append("")
    shown = os.path.abspath(raw)
    if shown.startswith(os.getcwd() + os.sep):
        shown = os.path.relpath(shown)
    lines.append(f"raw outputs: {shown}")

    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)

    if failures:
        sys.stdout.write(f"bench/compare: FAILED — {len(failures)} problem(s) serving requests (see FAIL lines)\n")
        return 1
    if args.quick or not verdicts:
        why = "quick mode: targets not judged" if verdicts else "no weir target: nothing judged"
        sys.stdout.write(f"bench/compare: every target served its requests ({why})\n")
        return 0
    if unmet or unmeasured:
        said = [f"{len(unmet)} of {len(verdicts)} targets NOT MET"] if unmet else []
        said += [f"{len(unmeasured)} not measured"] if unmeasured else []
        sys.stdout.write("bench/compare: " + "; ".join(said) + "\n")
        return 3 if args.enforce else 0
    sys.stdout.write(f"bench/compare: all {len(verdicts)} targets met\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
