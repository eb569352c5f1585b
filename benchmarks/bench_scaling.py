"""Benchmark: how the sharded stages scale with cores, and what a no-op rerun of the whole demo DAG costs.

    .venv/bin/python benchmarks/bench_scaling.py [--cores 1 2] [--shards 8] [--skip-noop]

Runs the real Snakemake rules, not the stage functions: `resample` and `extract_codes` of the demo
corpus under a run of their own (`bench-scaling`, so the demo's results are never touched), forced to
rerun at each core count (one job per shard, one thread per job, as the rules declare). The codec is the
demo run's (`codec.source: pretrained` pointing at results/demo/codec), so run `make demo` first. Prints,
per stage and core count, wall time, audio seconds per wall second and parallel efficiency
(speed-up / cores); then the wall time of `snakemake --cores all` on a finished DAG (`--noop-config`,
default the demo's), which only checks that nothing needs to run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RUN = "bench-scaling"


def snakemake(*args: str, config: Path | None = None) -> tuple[float, str]:
    """Wall seconds and output of one Snakemake invocation in the repository (raises with its log if it fails)."""
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(REPO)]
    if config is not None:
        command += ["--configfile", str(config)]
    started = time.monotonic()  # --forcerun takes any number of values: callers put it after the targets
    result = subprocess.run([*command, *args], capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return elapsed, result.stdout + result.stderr


def relative(paths: list[Path]) -> list[str]:
    """Targets as the rules name them: relative to the working directory, the repository."""
    return [str(p.relative_to(REPO)) for p in paths]


def audio_seconds(shards: list[Path]) -> float:
    total = 0.0
    for shard in shards:
        table = pq.read_table(shard, columns=["num_samples", "sample_rate"]).to_pydict()
        total += sum(n / rate for n, rate in zip(table["num_samples"], table["sample_rate"]))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}))
    parser.add_argument("--shards", type=int, default=8, help="shards of the benchmark run (jobs per stage)")
    parser.add_argument("--skip-noop", action="store_true", help="skip the no-op rerun of a finished DAG")
    parser.add_argument("--noop-config", type=Path, default=REPO / "configs" / "demo.yaml",
                        help="config of the finished run whose no-op rerun is timed")
    args = parser.parse_args()

    demo = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    codec = REPO / "results" / demo["run"] / "codec"
    if not (codec / "codec.ckpt").exists():
        raise SystemExit(f"{codec}/codec.ckpt is missing: run the demo first (make demo)")
    config = REPO / "results" / RUN / "config.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(yaml.safe_dump({**demo, "run": RUN, "shards": args.shards, "codec": {
        "source": "pretrained", "config": str(codec / "codec.yaml"), "checkpoint": str(codec / "codec.ckpt")}}))
    names = [f"{i:05d}" for i in range(args.shards)]
    stages = {"resample": [REPO / "results" / RUN / "audio" / f"shard-{n}.parquet" for n in names],
              "extract_codes": [REPO / "results" / RUN / "codes" / f"shard-{n}.parquet" for n in names]}
    snakemake("--cores", str(max(args.cores)), *relative(stages["extract_codes"]), config=config)  # inputs ready
    seconds = audio_seconds(stages["resample"])

    print(f"machine: {describe()}")
    print(f"demo corpus: {seconds / 3600:.2f} h of audio in {args.shards} shards")
    for stage, targets in stages.items():
        walls = {}
        for cores in args.cores:
            walls[cores], _ = snakemake("--cores", str(cores), *relative(targets), "--forcerun", stage, config=config)
            speedup = walls[args.cores[0]] / walls[cores] * args.cores[0]
            print(f"{stage:14s} {cores:3d} core(s): {walls[cores]:7.1f} s wall, {seconds / walls[cores]:6.1f}x real "
                  f"time, speed-up {speedup:.2f}x over 1 core, efficiency {speedup / cores:.0%}")
    if not args.skip_noop:
        _, plan = snakemake("--dry-run", config=args.noop_config)
        if "Nothing to be done" not in plan:
            print(f"no-op rerun: skipped, the DAG of {args.noop_config.name} has work left (run it to the end first)")
        else:
            wall, _ = snakemake("--cores", "all", config=args.noop_config)
            print(f"no-op rerun of the finished DAG of {args.noop_config.name} (snakemake --cores all, "
                  f"nothing to do): {wall:.1f} s wall")


if __name__ == "__main__":
    main()
