"""The config is data: generated schema in sync, every shipped config valid, errors name the key."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, snakemake
from stages.config import ConfigError, from_dict, json_schema, to_dict
from stages.config import PipelineConfig

SHIPPED = sorted((REPO / "configs").glob("*.yaml")) + sorted((REPO / "configs" / "scale").glob("*.yaml"))
CORPORA = REPO / "tests" / "fixtures" / "corpora"


def test_committed_schema_is_generated_from_the_dataclasses():
    committed = json.loads((REPO / "workflow" / "schemas" / "config.schema.json").read_text())
    assert {k: v for k, v in committed.items() if k != "$schema"} == json_schema(PipelineConfig), (
        "regenerate: python -m stages.config schema > workflow/schemas/config.schema.json")


def _all_properties(schema, path="config"):
    for name, prop in schema.get("properties", {}).items():
        yield f"{path}.{name}", prop
        yield from _all_properties(prop, f"{path}.{name}")


def test_every_key_has_a_description_and_a_default():
    for key, prop in _all_properties(json_schema(PipelineConfig)):
        assert prop.get("description"), f"{key} has no description"
        assert "default" in prop, f"{key} has no default"


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_every_shipped_config_loads(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("#"), f"{path.name} must open with a comment saying how it is used"
    data = yaml.safe_load(path.read_text())
    fmt = data.get("corpus", {}).get("format", "demo")
    if fmt != "demo":  # a real-corpus config names a path only the user has: point it at that layout's fixture
        assert data["corpus"]["path"].startswith("/data/"), "the corpus path is the one thing a user sets"
        data["corpus"]["path"] = str(CORPORA / fmt)
    assert isinstance(from_dict(PipelineConfig, data), PipelineConfig)


@pytest.mark.parametrize("corpus", ["ljspeech", "libritts", "vctk", "aishell3"])
@pytest.mark.parametrize("scale", ["1gpu", "8gpu"])
def test_real_corpus_configs_plan_the_whole_dag(tmp_path, corpus, scale):
    data = yaml.safe_load((REPO / "configs" / f"{corpus}.yaml").read_text())
    data["corpus"]["path"] = str(CORPORA / corpus)
    override = tmp_path / "corpus.yaml"
    override.write_text(yaml.safe_dump(data))
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(tmp_path),
               "--configfile", str(override), str(REPO / "configs" / "scale" / f"{scale}.yaml"), "--dry-run"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"results/{corpus}/report/samples.html" in out.stdout and "demo_corpus" not in out.stdout


def test_defaults_round_trip():
    cfg = from_dict(PipelineConfig, {})
    assert from_dict(PipelineConfig, to_dict(cfg)) == cfg


@pytest.mark.parametrize("data, key", [
    ({"audio": {"sampl_rate": 16000}}, "config.audio: unknown key(s) sampl_rate"),
    ({"audio": {"sample_rate": "fast"}}, "config.audio.sample_rate: expected an integer"),
    ({"shards": 0}, "config.shards: 0 is below the minimum 1"),
    ({"corpus": {"format": "ljspeech"}}, "config.corpus.path: required"),
    ({"corpus": {"format": "ljspeech", "path": "/no/such/corpus"}}, "config.corpus.path: '/no/such/corpus' does not exist"),
    ({"corpus": {"format": "mp3dir"}}, "config.corpus.format: 'mp3dir' is not one of"),
    ({"audio": {"min_seconds": 30.0}}, "config.audio.min_seconds: 30.0 must be below max_seconds"),
    ({"run": "my run/1"}, "config.run: 'my run/1' does not match"),
])
def test_config_errors_name_the_key(data, key):
    with pytest.raises(ConfigError) as error:
        from_dict(PipelineConfig, data)
    assert key in str(error.value)


@pytest.mark.parametrize("override, needle", [
    ({"audio": {"sampl_rate": 16000}}, "sampl_rate"),
    ({"shards": "many"}, "shards"),
    ({"corpus": {"format": "ljspeech", "path": None}}, "corpus.path"),
])
def test_snakemake_rejects_bad_config_before_any_job(tmp_path, override, needle):
    result = snakemake(tmp_path, "--cores", "1", config=override, check=False)
    assert result.returncode != 0
    assert needle in result.stderr + result.stdout
    assert not (tmp_path / "results").exists(), "no job may run on an invalid config"


def test_the_quality_run_is_the_demo_corpus_with_more_sentences():
    """configs/quality.yaml: the demo's voices, audio and shipped codec, only more distinct English sentences,
    so its figures sit beside the demo's ground truth and codec ones."""
    demo, quality = (from_dict(PipelineConfig, yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text()), name)
                     for name in ("demo", "quality"))
    assert quality.shards == demo.shards
    for section in ("audio", "codec"):
        assert to_dict(getattr(quality, section)) == to_dict(getattr(demo, section)), section
    corpus, demo_corpus = to_dict(quality.corpus), to_dict(demo.corpus)
    assert corpus["demo"].pop("english_train_sentences") > demo_corpus["demo"].pop("english_train_sentences")
    assert corpus == demo_corpus


def test_the_codec_rate_and_the_audio_rate_are_checked_when_the_config_is_built(tmp_path):
    with pytest.raises(ConfigError, match=r"audio.sample_rate: 16000 Hz, but the codec works at 24000 Hz"):
        from_dict(PipelineConfig, {"audio": {"sample_rate": 16000}})
    codec_yaml = tmp_path / "codec.yaml"
    codec_yaml.write_text(yaml.safe_dump({"model": {"init_args": {"sample_rate": 16000}}}))
    (tmp_path / "codec.ckpt").write_bytes(b"")
    pretrained = {"source": "pretrained", "config": str(codec_yaml), "checkpoint": str(tmp_path / "codec.ckpt")}
    with pytest.raises(ConfigError, match=r"24000 Hz, but the codec works at 16000 Hz \(its YAML"):
        from_dict(PipelineConfig, {"codec": pretrained})
    assert from_dict(PipelineConfig, {"codec": pretrained, "audio": {"sample_rate": 16000}}).codec.sample_rate() == 16000


def test_preset_files_are_read_when_the_config_is_built(tmp_path, monkeypatch):
    from stages.config import presets

    with pytest.raises(ConfigError, match=r"codec.train.preset: no preset 'huge' in .*known: \['demo', 'full', 'tiny'\]"):
        from_dict(PipelineConfig, {"codec": {"train": {"preset": "huge"}}})
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "tiny.yaml").write_text("dim: 64\nn_layerz: 2\n")
    monkeypatch.setitem(presets.PRESET_FOLDERS, "model", tmp_path / "model")
    with pytest.raises(ConfigError, match=r"pretrain.model .*unknown key\(s\) n_layerz"):
        from_dict(PipelineConfig, {"pretrain": {"model": "tiny"}})


@pytest.mark.parametrize("name", ["1gpu", "8gpu"])
def test_scale_runs_are_sized_by_tokens_and_export_the_best_validated_model(name):
    data = yaml.safe_load((REPO / "configs" / "scale" / f"{name}.yaml").read_text())
    cfg = from_dict(PipelineConfig, data)
    assert cfg.pretrain.max_steps is None and cfg.pretrain.token_budget >= 100_000_000
    assert cfg.pretrain.export == cfg.sft.export == "best" and cfg.pretrain.dropout > 0
