#!/usr/bin/env python3
"""Formats bench/run.sh results as Markdown tables, prints them and (with --write) replaces each
scenario's table in BENCHMARKS.md with the latest run. Tables live between markers
`<!-- bench:BACKEND:SCENARIO:start/end -->`; everything outside the markers (findings, history)
is left untouched."""

import argparse
import datetime
import os
import re

SCENARIOS = [
    ("noop", "noop: `GET /v1.0/health` (ceiling of this machine and HTTP stack)"),
    ("omaha", "omaha-check, {machines} machines"),
    ("omaha100k", "omaha-check, {machines_large} machines"),
    ("rollout", "omaha-rollout: {machines_large} new machines from their first check (every request writes)"),
    ("rest", "rest: group page JSON with stats"),
    ("webhook", "webhook: Docker Hub + generic signed webhooks, each creating a package"),
    ("webhook_few", "webhook, a few senders: the same deliveries, writer not saturated"),
]


def parse(path):
    results = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            name, rest = line.split(" ", 1)
            if rest.startswith("MISSING"):
                results[name] = {"missing": rest[len("MISSING "):]}
                continue
            fields = dict(kv.split("=", 1) for kv in rest.split() if "=" in kv)
            results[name] = fields
    return results


def cpu_description():
    model, cores = "unknown CPU", 0
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model == "unknown CPU":
                    model = line.split(":", 1)[1].strip()
                if line.startswith("processor"):
                    cores += 1
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            mem = f", {kb / 1024 / 1024:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{model}, {cores} CPU{'s' if cores != 1 else ''}{mem}, Linux {os.uname().release}"


def ms(us):
    return f"{int(us) / 1000:.2f} ms"


def table(name, r, args, noop_rps):
    if "missing" in r:
        return f"Not measured: {r['missing']} (the endpoint is not on this build).\n"
    rps = float(r["rps"])
    head = "| req/s | p50 | p90 | p99 | max | non-2xx | socket errors | server RSS (peak) | server CPU/req | CPU stolen |"
    sep = "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    row = (f"| {rps:,.0f} | {ms(r['p50_us'])} | {ms(r['p90_us'])} | {ms(r['p99_us'])} | {ms(r['max_us'])} "
           f"| {r['non2xx']} | {r['socket_errors']} | {int(r['rss_kb']) / 1024:.0f} MiB ({int(r['hwm_kb']) / 1024:.0f} MiB) "
           f"| {r.get('cpu_us_per_req', '?')} µs | {r.get('steal_pct', '?')}% |")
    if name in ("omaha", "omaha100k"):
        ratio = f"{100 * rps / noop_rps:.0f}%" if noop_rps else "n/a (noop not run)"
        head += " omaha/noop |"
        sep += "---:|"
        row += f" {ratio} |"
    if name == "rest":
        head += " instances |"
        sep += "---:|"
        row += f" {r.get('instances', '?')} |"
    return "\n".join([head, sep, row]) + "\n"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--results", required=True)
    p.add_argument("--label", required=True)
    p.add_argument("--quick", default="0")
    p.add_argument("--duration")
    p.add_argument("--warmup")
    p.add_argument("--connections")
    p.add_argument("--machines")
    p.add_argument("--machines-large")
    p.add_argument("--grant-check", default="")
    p.add_argument("--server-cpus")
    p.add_argument("--wrk-cpus")
    p.add_argument("--commit", default="unknown")
    p.add_argument("--write")
    args = p.parse_args()

    results = parse(args.results)
    noop = results.get("noop")
    noop_rps = float(noop["rps"]) if noop and "rps" in noop else None
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    mode = "quick" if args.quick == "1" else "full"
    blocks = {}
    for name, title in SCENARIOS:
        if name not in results:
            continue
        title = title.format(machines=f"{int(args.machines):,}", machines_large=f"{int(args.machines_large):,}")
        r = results[name]
        if name == "rollout":
            warmup = "no warm-up"
        elif "lifecycle_s" in r:
            warmup = (f"life-cycle warm-up excluded (every machine's first 5 checks, {r['lifecycle_s']} s), then "
                      f"{args.warmup} s warm-up excluded")
        else:
            warmup = f"{args.warmup} s warm-up excluded"
        meta = (f"_{now}, commit `{args.commit}`, {mode} run ({warmup}, {args.duration} s "
                f"measured), wrk 1 thread × {r.get('connections', args.connections)} connections on CPU {args.wrk_cpus}, server on CPU "
                f"{args.server_cpus}; {cpu_description()}._")
        body = f"#### {args.label}: {title}\n\n{meta}\n\n{table(name, results[name], args, noop_rps)}"
        if name in ("omaha", "omaha100k", "rollout") and args.grant_check:
            body += f"\nGrants at the end of the run: {args.grant_check}.\n"
        blocks[name] = body
        print(body)

    if not args.write:
        return
    path = args.write
    text = open(path).read() if os.path.exists(path) else (
        "# Benchmarks\n\nProduced by `bench/run.sh` (see bench/README.md). Each scenario's table is replaced "
        "by its latest run.\n\n## Latest results\n\n<!-- bench:results -->\n")
    for name, body in blocks.items():
        start = f"<!-- bench:{args.label}:{name}:start -->"
        end = f"<!-- bench:{args.label}:{name}:end -->"
        block = f"{start}\n{body}{end}"
        pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
        if pattern.search(text):
            text = pattern.sub(lambda _m: block, text)
        elif "<!-- bench:results -->" in text:
            text = text.replace("<!-- bench:results -->", f"{block}\n\n<!-- bench:results -->", 1)
        else:
            text += f"\n{block}\n"
    with open(path, "w") as f:
        f.write(text)
    print(f"(written to {path})")


if __name__ == "__main__":
    main()
