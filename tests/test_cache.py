"""The between-workflow cache: a run that changes only LM settings reuses another run's codec and codes."""

from __future__ import annotations

import pyarrow.parquet as pq

from conftest import snakemake

SHARDS = ("00000", "00001")


def test_a_run_with_other_lm_settings_takes_codec_and_codes_from_the_cache(tiny_dag):
    # tiny_dag ran run `tiny` with --cache; this run differs in its name and its LM settings only.
    other = {"run": "tiny_lm", "pretrain": {"lr": 5.0e-4}}
    targets = [f"results/tiny_lm/codes/shard-{s}.parquet" for s in SHARDS]
    out = snakemake(tiny_dag, "--cores", "2", *targets, config=other, output_cache=tiny_dag / "output-cache")
    log = out.stderr
    results, reused = tiny_dag / "results" / "tiny", tiny_dag / "results" / "tiny_lm"
    assert (reused / "manifest.parquet").exists(), "the cheap stages before the codec run again in the new run"
    cache = (tiny_dag / "output-cache").resolve()
    served = [reused / "codec" / f"codec.{ext}" for ext in ("ckpt", "yaml", "metrics.json")]
    served += [reused / "codes" / f"shard-{shard}.parquet" for shard in SHARDS]
    for path in served:  # links into the cache, not files of a job that ran here
        assert path.is_symlink() and path.resolve().parent == cache, log[-3000:]
    for path in [reused / "logs" / "train_codec.log", *(reused / "logs" / "extract_codes").glob("*.log")]:
        assert path.stat().st_size == 0, f"{path} shows a job that ran"
    for name in ("codec.ckpt", "codec.yaml", "codec.metrics.json"):
        assert (reused / "codec" / name).read_bytes() == (results / "codec" / name).read_bytes()
    for shard in SHARDS:  # each shard got its own entry, not another shard's (wildcards are no part of the key)
        assert pq.read_table(reused / "codes" / f"shard-{shard}.parquet").equals(
            pq.read_table(results / "codes" / f"shard-{shard}.parquet"))


def test_a_codec_setting_change_misses_the_cache(tiny_dag):
    other = {"run": "tiny_codec", "codec": {"train": {"steps": 20}}}
    out = snakemake(tiny_dag, "--dry-run", "--cores", "2", "results/tiny_codec/codes/shard-00000.parquet",
                    config=other, output_cache=tiny_dag / "output-cache")
    assert "train_codec" in out.stdout.split("Job stats:")[1]
