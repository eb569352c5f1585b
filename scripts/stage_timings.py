"""Per-stage wall-clock timings of a Snakemake run, read from its log.

    python scripts/stage_timings.py .snakemake/log/2026-11-25T204400.123456.snakemake.log

Each job's start ("[date]" then "rule NAME:") and end ("Finished jobid: N") are paired by job id; jobs
of one rule (shards) are summed as CPU-side job time and spanned as wall time.
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")
RULE = re.compile(r"^(?:local)?rule (\w+):$")
JOB = re.compile(r"^\s+jobid: (\d+)$")
FINISHED = re.compile(r"^Finished jobid: (\d+)")


def timings(log: Path) -> list[tuple[str, int, float, float]]:
    """(rule, jobs, summed job seconds, wall seconds from first start to last end) in order of first start."""
    now, rule, starts, ends, rules = None, None, {}, {}, {}
    for line in log.read_text().splitlines():
        if m := STAMP.match(line):
            now = datetime.strptime(m[1], "%a %b %d %H:%M:%S %Y")
        elif m := RULE.match(line):
            rule = m[1]
        elif (m := JOB.match(line)) and rule:
            starts[m[1]], rules[m[1]] = now, rule
            rule = None
        elif m := FINISHED.match(line):
            ends[m[1]] = now
    per_rule = defaultdict(list)
    for job, rule in rules.items():
        if job in ends:
            per_rule[rule].append((starts[job], ends[job]))
    rows = []
    for rule, spans in per_rule.items():
        total = sum((e - s).total_seconds() for s, e in spans)
        wall = (max(e for _, e in spans) - min(s for s, _ in spans)).total_seconds()
        rows.append((min(s for s, _ in spans), rule, len(spans), total, wall))
    return [(rule, n, total, wall) for _, rule, n, total, wall in sorted(rows)]


def main() -> None:
    log = Path(sys.argv[1])
    rows = timings(log)
    print(f"{'stage':<16}{'jobs':>5}{'job time':>12}{'wall':>10}")
    for rule, n, total, wall in rows:
        print(f"{rule:<16}{n:>5}{total / 60:>10.1f} m{wall / 60:>8.1f} m")
    lines = log.read_text().splitlines()
    stamps = [datetime.strptime(m[1], "%a %b %d %H:%M:%S %Y") for line in lines if (m := STAMP.match(line))]
    if stamps:
        print(f"{'whole run':<16}{'':>5}{'':>12}{(stamps[-1] - stamps[0]).total_seconds() / 60:>8.1f} m")


if __name__ == "__main__":
    main()
