"""Writes one `make bench` section into BENCHMARKS.md, between its markers.

    python3 deploy/bench-report.py intake|pipeline|timers RESULTS.jsonl [BENCHMARKS.md]

RESULTS.jsonl holds one `minyi bench …` JSON result per line; the section's table replaces
what stands between `<!-- bench:SECTION:start -->` and `<!-- bench:SECTION:end -->`.
"""
import datetime
import json
import os
import subprocess
import sys


def machine():
    cpu = subprocess.run("lscpu | sed -n 's/^Model name: *//p'", shell=True,
                         capture_output=True, text=True).stdout.strip()
    now = datetime.datetime.now(datetime.timezone.utc)
    return f"Measured {now:%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores ({cpu}), release build, "


def intake(rows):
    return [
        machine() + "client and server on the same machine; `make bench` (deploy/bench.sh), "
        f"{rows[0]['duration_s']:.0f} s per run after 2 s warm-up.", "",
        "| run | clients | offered/s | submits/s | p50 ms | p99 ms | max ms | errors |",
        "|---|---|---|---|---|---|---|---|"] + [
        f"| {r['label']} | {r['clients']} | {r['offered_per_s'] or 'closed loop'} | {r['submits_per_s']:.0f} | "
        f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.1f} | {r['errors']} |" for r in rows]


def pipeline(rows):
    return [
        machine() + "load generator and every process on the same machine; `make bench` (deploy/bench.sh), "
        f"{rows[0]['duration_s']:.0f} s of submits per run at the offered rate.", "",
        "| run | offered/s | submitted | auto-dispatched | to dispatcher | duplicates | undecided | decided/s | decide p50 / p99 / max ms | dispatch p50 / p99 / max ms |",
        "|---|---|---|---|---|---|---|---|---|---|"] + [
        f"| {r['label']} | {r['offered_per_s']} | {r['submitted']} | {r['dispatched']} | {r['to_dispatcher']} | {r['duplicates']} | {r['undecided']} | {r['decided_per_s']:.0f} | "
        f"{r['decide_p50_ms']:.1f} / {r['decide_p99_ms']:.1f} / {r['decide_max_ms']:.0f} | "
        f"{r['dispatch_p50_ms']:.1f} / {r['dispatch_p99_ms']:.1f} / {r['dispatch_max_ms']:.0f} |" for r in rows]


def timers(rows):
    redis = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2][2:]
    return [
        machine() + f"Redis {redis} on the same machine; `make bench` (deploy/bench.sh).", "",
        "| run | timers | workers | scheduled/s | peak pending | fired | fired twice | lost | fired/s | lateness p50 / p99 / max ms |",
        "|---|---|---|---|---|---|---|---|---|---|"] + [
        f"| {r['label']} | {r['count']} | {r['workers']} | {r['scheduled_per_s']:.0f} | {r['peak_pending']} | {r['fired']} | "
        f"{r['fired_twice']} | {r['lost']} | {r['fired_per_s']:.0f} | "
        f"{r['late_p50_ms']:.0f} / {r['late_p99_ms']:.0f} / {r['late_max_ms']:.0f} |" for r in rows]


def main():
    section, results = sys.argv[1], sys.argv[2]
    path = sys.argv[3] if len(sys.argv) > 3 else "BENCHMARKS.md"
    rows = [json.loads(line) for line in open(results) if line.strip()]
    block = "\n".join({"intake": intake, "pipeline": pipeline, "timers": timers}[section](rows))
    text = open(path).read()
    start, end = f"<!-- bench:{section}:start -->", f"<!-- bench:{section}:end -->"
    a, b = text.index(start) + len(start), text.index(end)
    open(path, "w").write(text[:a] + "\n" + block + "\n" + text[b:])
    print(block)


if __name__ == "__main__":
    main()
