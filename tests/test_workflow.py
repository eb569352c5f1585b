"""The real Snakemake DAG on configs/tiny.yaml: outputs, no-op reruns, and what a change reruns."""

from __future__ import annotations

import re
import shutil

import pyarrow.parquet as pq

from conftest import REPO, snakemake
from stages.common.tables import AUDIO_SHARD, MANIFEST


def scheduled(workdir, config=None) -> dict[str, int]:
    """Jobs per rule that a dry run would execute now."""
    out = snakemake(workdir, "--dry-run", "--cores", "2", config=config).stdout
    if "Nothing to be done" in out:
        return {}
    stats = out.split("Job stats:")[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.MULTILINE)
            if m.group(1) != "total"}


def test_tiny_dag_produces_manifest_and_shards(tiny_dag):
    results = tiny_dag / "results" / "tiny"
    manifest = pq.read_table(results / "manifest.parquet")
    assert manifest.schema.names == MANIFEST.names
    # tiny.yaml: 12 train verses read once + 4 eval verses x 2 English voices + (6 + 2) x 1 Mandarin voice
    assert manifest.num_rows == 12 + 4 * 2 + 8
    splits = manifest.column("split").to_pylist()
    assert splits.count("eval") == 4 * 2 + 2 and "train" in splits
    shard_ids = []
    for shard in ("00000", "00001"):
        table = pq.read_table(results / "audio" / f"shard-{shard}.parquet")
        assert table.schema.names == AUDIO_SHARD.names
        assert pq.read_schema(results / "audio" / f"shard-{shard}.parquet").metadata[b"sample_rate"] == b"24000"
        shard_ids += table.column("utt_id").to_pylist()
        assert (results / "audio" / f"quarantine-{shard}.parquet").exists()
    assert sorted(shard_ids) == sorted(manifest.column("utt_id").to_pylist())
    assert (results / "logs" / "prepare.log").stat().st_size > 0


def test_tiny_dag_trains_a_codec_and_extracts_codes_of_every_clip(tiny_dag):
    from stages.codec import codec_id, load_codec
    from stages.common.tables import CODES, file_metadata

    results = tiny_dag / "results" / "tiny"
    codec = load_codec(results / "codec" / "codec.yaml", results / "codec" / "codec.ckpt")
    audio_ids, code_ids = [], []
    for shard in ("00000", "00001"):
        audio_ids += pq.read_table(results / "audio" / f"shard-{shard}.parquet").column("utt_id").to_pylist()
        path = results / "codes" / f"shard-{shard}.parquet"
        table = pq.read_table(path)
        assert table.schema.names == CODES.names
        assert file_metadata(path)["codec_id"] == codec_id(codec)
        code_ids += table.column("utt_id").to_pylist()
    assert sorted(code_ids) == sorted(audio_ids)


def test_tiny_dag_fits_the_tokenizer_on_training_text(tiny_dag):
    import json

    summary = json.loads((tiny_dag / "results" / "tiny" / "tokenizer" / "tokenizer.json").read_text())
    assert summary["vocab_size"] > 0
    assert (tiny_dag / "results" / "tiny" / "tokenizer" / "spm.model").stat().st_size > 0


def test_tiny_dag_trains_both_models_and_reports_measured_samples(tiny_dag):
    import json

    from stages.lm.export import load_model

    results = tiny_dag / "results" / "tiny"
    for stage in ("pretrain", "sft"):
        loaded = load_model(results / stage / "model")
        assert loaded.vocab.speakers and (results / stage / "model" / "spm.model").exists()
        assert list((results / stage / "checkpoints").iterdir()), "resumable checkpoints stay beside the model"
    samples = pq.read_table(results / "samples" / "sft" / "samples.parquet").to_pylist()
    assert samples and {s["mode"] for s in samples} == {"speaker", "prompt"}
    assert all((results / "samples" / "sft" / s["path"]).stat().st_size > 44 for s in samples)
    metrics = json.loads((results / "eval" / "metrics.json").read_text())
    assert {"ground_truth", "codec", "pretrain", "sft", "sft_zero_shot", "silence", "noise"} <= set(metrics["systems"])
    assert metrics["systems"]["silence"]["en"]["wer"] == 1.0 and metrics["systems"]["noise"]["en"]["wer"] == 1.0
    assert "not the paper metrics" in metrics["note"]
    truth = metrics["systems"]["ground_truth"]["en"]
    assert truth["wer_n"] > 0 and truth["ps_wer_n"] == truth["wer_n"]  # Whisper, with pocketsphinx beside it
    page = (results / "report" / "samples.html").read_text()
    players = page.count("<audio controls")
    shown = pq.read_table(results / "eval" / "utterances.parquet").to_pylist()
    pretrain_samples = pq.read_table(results / "samples" / "pretrain" / "samples.parquet").num_rows
    assert players == 2 * len([r for r in shown if r["system"] == "ground_truth"]) + len(samples) + pretrain_samples
    assert "<img" in (results / "report" / "curves.html").read_text()
    transcripts = (results / "report" / "transcripts.html").read_text()
    assert "ps_transcript" in transcripts and transcripts.count("<tr>") > 1  # a header and transcribed clips


def test_no_op_rerun_schedules_nothing(tiny_dag):
    assert scheduled(tiny_dag) == {}


def test_changing_an_audio_param_reruns_resample_but_not_prepare(tiny_dag):
    jobs = scheduled(tiny_dag, config={"audio": {"loudness_lufs": -20.0}})
    assert jobs.get("resample") == 2 and jobs.get("train_codec") == 1 and jobs.get("extract_codes") == 2
    assert "prepare" not in jobs and "demo_corpus" not in jobs


def test_changing_a_codec_param_reruns_codec_and_codes_only(tiny_dag):
    jobs = scheduled(tiny_dag, config={"codec": {"train": {"steps": 25}}})
    assert jobs.get("train_codec") == 1 and jobs.get("extract_codes") == 2
    assert not {"resample", "prepare", "fit_tokenizer"} & set(jobs)


def test_changing_a_corpus_param_reruns_the_corpus_and_everything_after(tiny_dag):
    jobs = scheduled(tiny_dag, config={"corpus": {"demo": {"english_train_sentences": 13}}})
    assert jobs.get("demo_corpus") == 1 and jobs.get("prepare") == 1 and jobs.get("resample") == 2


def test_editing_stage_code_reruns_that_stage(tmp_path):
    # A private copy of the workflow, so editing its stage code cannot disturb the repository or other tests;
    # Snakemake ignores a touch that leaves the content unchanged, so the edit is real.
    copy = tmp_path / "repo"
    copy.mkdir()
    for part in ("Snakefile", "workflow", "stages", "configs", "data"):
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, copy / part)
    work = tmp_path / "work"
    targets = [f"results/tiny/audio/shard-{s}.parquet" for s in ("00000", "00001")]
    snakemake(work, "--cores", "2", *targets, snakefile=copy / "Snakefile")
    with (copy / "stages" / "common" / "audio.py").open("a") as f:
        f.write("\n# an edit\n")
    out = snakemake(work, "--dry-run", "--cores", "2", *targets, snakefile=copy / "Snakefile").stdout
    assert re.search(r"^resample\s+2$", out, re.MULTILINE) and not re.search(r"^prepare\s", out, re.MULTILINE)
