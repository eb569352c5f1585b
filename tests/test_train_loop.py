"""Tests of the DeepSpeed trainer: learning, SIGKILL + exact resume, export, ZeRO stages, SFT from pretrained weights.

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_train_loop.py -q          # add -m slow for 2 processes

Everything runs on the CPU with a tiny model; most runs share this process's one-process gloo group.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from stages.config import ConfigError, from_dict
from stages.lm.export import load_model
from stages.text.tokenizer import TextTokenizer
from stages.train import checkpoint
from stages.config.pretrain import TrainConfig
from stages.train.loop import Trainer
from stages.train_lm import train_lm
from train_corpus import METADATA, fit_tiny_tokenizer, utterances, write_shards

REPO = Path(__file__).resolve().parents[1]
BASE = {"max_steps": 12, "batch_tokens": 1000, "warmup_steps": 2, "checkpoint_every": 4, "validate_every": 4,
        "log_every": 1, "shuffle_buffer": 64, "sort_buffer": 32, "lr": 3e-3, "min_lr": 3e-4}


def config(**overrides) -> TrainConfig:
    return from_dict(TrainConfig, {**BASE, **overrides}, "train")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return write_shards(root / "codes", utterances(150, frames=(1, 2))), fit_tiny_tokenizer(root)


@pytest.fixture(scope="module", autouse=True)
def nothing_compiled():
    """No run of this module may JIT-compile a DeepSpeed op (each costs 60-100 s on 2 cores)."""
    extensions = Path(os.environ.get("TORCH_EXTENSIONS_DIR", Path.home() / ".cache" / "torch_extensions"))
    before = set(extensions.rglob("*")) if extensions.exists() else set()
    yield
    after = set(extensions.rglob("*")) if extensions.exists() else set()
    assert after == before, f"DeepSpeed compiled into {extensions}: {sorted(map(str, after - before))[:5]}"


@pytest.fixture(autouse=True)
def one_thread():
    """Runs use one thread (bitwise-comparable with the CLI's --threads 1); restore the suite's setting after."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def fit(corpus, root: Path, cfg: TrainConfig, init_from=None) -> Trainer:
    codes, tokenizer = corpus
    trainer = Trainer(codes, tokenizer, root / "checkpoints", cfg, init_from=init_from, threads=1, progress=False)
    trainer.fit()
    trainer.export(root / "model")
    trainer.close()
    return trainer


def metrics(checkpoint_dir: Path, kind: str = "train") -> list[dict]:
    lines = [json.loads(line) for line in (checkpoint_dir / "metrics.jsonl").read_text().splitlines()]
    return [m for m in lines if m["kind"] == kind]


@pytest.fixture(scope="module")
def pretrained(corpus, tmp_path_factory) -> tuple[Trainer, Path]:
    root = tmp_path_factory.mktemp("pretrain")
    return fit(corpus, root, config()), root


def test_a_few_steps_lower_train_and_validation_loss(pretrained):
    _, root = pretrained
    train, val = metrics(root / "checkpoints"), metrics(root / "checkpoints", "val")
    assert [m["step"] for m in train] == list(range(1, 13))
    assert sum(m["loss"] for m in train[-3:]) < sum(m["loss"] for m in train[:3]) - 1.5
    assert [m["step"] for m in val] == [4, 8, 12] and val[-1]["loss"] < val[0]["loss"]
    assert all(0.0 < m["nonpad_share"] <= 1.0 and m["tokens_per_s"] > 0 and m["grad_norm"] > 0 for m in train)
    assert train[0]["lr"] == pytest.approx(3e-3 / 2) and train[-1]["lr"] < train[2]["lr"]  # warm-up, then decay
    assert list((root / "checkpoints" / "tensorboard").glob("events.out.tfevents.*"))
    assert [tag for _, tag in checkpoint.tags(root / "checkpoints")] == ["step00000008", "step00000012"]  # keep 2


def test_a_save_killed_before_latest_moved_is_removed_on_restart(tmp_path):
    for step in (4, 8, 12):
        (tmp_path / checkpoint.tag_of(step)).mkdir()
    checkpoint.write_latest(tmp_path, "step00000008")
    assert checkpoint.remove_unfinished(tmp_path) == ["step00000012"]
    assert checkpoint.prune(tmp_path, keep=1) == ["step00000004"]
    assert [tag for _, tag in checkpoint.tags(tmp_path)] == ["step00000008"]
    (tmp_path / "latest").write_text("step00000099")
    with pytest.raises(FileNotFoundError, match="delete"):
        checkpoint.latest_tag(tmp_path)


def test_consolidated_model_loads_without_deepspeed_and_matches_the_engine(pretrained, corpus):
    trainer, root = pretrained
    loaded = load_model(root / "model")
    assert loaded.vocab == trainer.vocab and loaded.model.config == trainer.model_config
    batch = next(iter(trainer.data))
    trainer.engine.eval()
    with torch.no_grad():
        expected = trainer.engine(batch.input_ids).logits
        got = loaded.model(batch.input_ids).logits
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    # the length ratios were fitted on this data, not left at their defaults
    assert loaded.generation.min_len_ratio != 6.0 and loaded.generation.max_len_ratio != 60.0
    # the folder carries what synthesis needs: the tokenizer as fitted, the codec it was trained on
    _, tokenizer_dir = corpus
    text = "a wise man will hear"
    assert TextTokenizer.load(root / "model").encode(text, "en") == TextTokenizer.load(tokenizer_dir).encode(text, "en")
    assert json.loads((root / "model" / "codec.json").read_text()) == METADATA
    resolved = json.loads((root / "model" / "train_config.json").read_text())
    assert resolved["train"]["max_steps"] == 12 and resolved["precision"] == "fp32"


def test_sigkill_and_rerun_gives_the_losses_of_an_uninterrupted_run(pretrained, corpus, tmp_path):
    codes, tokenizer = corpus
    uninterrupted, whole = pretrained  # the same settings, never interrupted

    extensions = tmp_path / "torch_extensions"  # anything DeepSpeed JIT-compiled would land here
    # the in-process runs left nothing behind that would make the CLI join this process's group
    assert not {"RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"} & set(os.environ)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TORCH_EXTENSIONS_DIR": str(extensions)}
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "stages.train_lm", "--codes", *map(str, codes), "--tokenizer", str(tokenizer),
               "--out-dir", str(killed / "model"), "--checkpoint-dir", str(killed / "checkpoints"),
               "--config-json", json.dumps(BASE), "--threads", "1", "--no-progress"]
    killed.mkdir()
    stderr = open(killed / "stderr.log", "w")  # a file, not a pipe, which a chatty child could fill and block on
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 120
    log = killed / "checkpoints" / "metrics.jsonl"
    # kill it mid-step, after its first checkpoint (step 4) and a little beyond
    while not (log.exists() and any(json.loads(line)["step"] >= 5 for line in log.read_text().splitlines()
                                    if line.endswith("}"))):
        assert child.poll() is None, f"the run ended before it could be killed:\n{(killed / 'stderr.log').read_text()}"
        assert time.monotonic() < deadline, "no checkpoint within 2 minutes"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    stderr.close()
    assert child.returncode == -signal.SIGKILL
    assert not (killed / "model").exists()
    assert checkpoint.latest_tag(killed / "checkpoints") is not None

    fit(corpus, killed, config())  # the rerun resumes from the killed run's checkpoint
    for kind in ("train", "val"):
        expected = [(m["step"], m["loss"], m["accuracy"]) for m in metrics(uninterrupted.checkpoint_dir, kind)]
        assert [(m["step"], m["loss"], m["accuracy"]) for m in metrics(killed / "checkpoints", kind)] == expected
    assert ((killed / "model" / "model.safetensors").read_bytes()
            == (whole / "model" / "model.safetensors").read_bytes())
    assert not extensions.exists() or not any(extensions.iterdir()), "DeepSpeed JIT-compiled an op"


@pytest.mark.parametrize("stage", [1, 3])  # 2 is the default, which the other tests use
def test_zero_stage_trains_and_exports(corpus, tmp_path, stage):
    trainer = fit(corpus, tmp_path, config(zero_stage=stage, max_steps=3, checkpoint_every=2, validate_every=3,
                                           grad_accum=2))
    assert trainer.engine.zero_optimization_stage() == stage
    losses = [m["loss"] for m in metrics(tmp_path / "checkpoints")]
    assert len(losses) == 3 and losses[-1] < losses[0]
    batch = next(iter(trainer.data))
    trainer.engine.eval()
    with torch.no_grad():
        expected = trainer.engine(batch.input_ids).logits
    torch.testing.assert_close(load_model(tmp_path / "model").model(batch.input_ids).logits, expected,
                               rtol=0, atol=1e-6)


def test_sft_starts_from_the_pretrained_weights_on_its_subset(pretrained, corpus, tmp_path):
    _, pretrain_root = pretrained
    codes, tokenizer = corpus
    start = load_model(pretrain_root / "model")
    sft = Trainer(codes, tokenizer, tmp_path / "checkpoints", config(speakers=["awb"], lr=5e-4, min_lr=5e-5,
                                                                      max_steps=3, dropout=0.1),
                  init_from=pretrain_root / "model", threads=1, progress=False)
    for name, tensor in start.model.state_dict().items():
        assert torch.equal(sft.engine.module.state_dict()[name], tensor), name
    assert set(sft.train_index.speakers) == {"awb"} and sft.vocab == start.vocab
    assert sft.model_config.dropout == 0.1
    sft.fit()
    sft.export(tmp_path / "model")
    sft.close()
    tuned = load_model(tmp_path / "model")
    assert tuned.vocab == start.vocab
    assert not torch.equal(tuned.model.embed.weight, start.model.embed.weight)
    first_sft_loss = metrics(tmp_path / "checkpoints")[0]["loss"]
    first_pretrain_loss = metrics(pretrain_root / "checkpoints")[0]["loss"]
    assert first_sft_loss < first_pretrain_loss - 1.0  # it did not start from scratch


def test_a_subset_without_utterances_names_what_the_shards_hold(corpus, tmp_path):
    with pytest.raises(ValueError, match=r"speakers \['nobody'\] \(the shards have \['awb', 'rms', 'slt'\]\)"):
        Trainer(*corpus, tmp_path / "checkpoints", config(speakers=["nobody"]), progress=False)


def test_sft_refuses_a_model_of_another_codec(pretrained, corpus, tmp_path):
    _, pretrain_root = pretrained
    other = tmp_path / "other"
    shutil.copytree(pretrain_root / "model", other)
    (other / "codec.json").write_text(json.dumps({**METADATA, "frame_rate": "40.0"}))
    with pytest.raises(ValueError, match="another codec.*frame_rate '40.0' vs '75.0'"):
        Trainer(*corpus, tmp_path / "checkpoints", config(), init_from=other, progress=False)


def test_a_run_may_train_longer_but_checkpoints_of_other_settings_are_set_aside(pretrained, corpus, tmp_path, caplog):
    _, pretrain_root = pretrained
    shutil.copytree(pretrain_root / "checkpoints", tmp_path / "checkpoints")
    longer = fit(corpus, tmp_path, config(max_steps=14))  # the budget may grow: resumes at step 12
    assert longer.step == 14 and [m["step"] for m in metrics(tmp_path / "checkpoints")] == list(range(1, 15))
    other = Trainer(*corpus, tmp_path / "checkpoints", config(lr=1e-3, max_steps=14), progress=False)
    assert other.step == 0 and "differs: config.lr" in caplog.text
    assert (tmp_path / "checkpoints.stale" / "latest").read_text() == "step00000014"
    other.close()


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="train.splits: \\['eval'\\]"):
        config(splits=["train", "eval"])
    with pytest.raises(ValueError, match="train.model: no preset 'huge'"):
        config(model="huge")
    with pytest.raises(ValueError, match="train.max_steps: set max_steps or token_budget"):
        config(max_steps=None)
    with pytest.raises(ValueError, match="unknown key\\(s\\) max_tokens"):
        config(max_tokens=5)


def test_the_command_line_names_the_section_of_a_setting_error(tmp_path, monkeypatch):
    from stages.train_lm import main

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # main installs the one-line error hook
    paths = ["--codes", str(tmp_path / "shard-00000.parquet"), "--tokenizer", str(tmp_path / "tokenizer"),
             "--out-dir", str(tmp_path / "model"), "--checkpoint-dir", str(tmp_path / "checkpoints")]
    with pytest.raises(ConfigError, match=r"^sft: unknown key\(s\) max_tokens;"):
        main([*paths, "--section", "sft", "--config-json", json.dumps({"max_tokens": 5})])
    with pytest.raises(ConfigError, match=r"^sft\.min_lr: "):
        main([*paths, "--section", "sft", "--config-json", json.dumps({"lr": 1e-4, "min_lr": 1e-3})])
    with pytest.raises(ConfigError, match=r"^pretrain\.max_steps: "):
        main([*paths, "--section", "pretrain", "--config-json", json.dumps({"max_steps": None})])
    assert not (tmp_path / "checkpoints").exists()  # refused before any work


def test_an_sft_input_error_names_the_sft_section(pretrained, corpus, tmp_path):
    _, pretrain_root = pretrained
    with pytest.raises(ConfigError, match=r"^sft\.speaker_tokens: .* was trained with speaker tokens"):
        Trainer(*corpus, tmp_path / "checkpoints", config(speaker_tokens=False), init_from=pretrain_root / "model",
                progress=False, section="sft")


@pytest.mark.slow
def test_two_processes_with_torchrun(corpus, tmp_path):
    codes, tokenizer = corpus
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
         "stages.train_lm", "--codes", *map(str, codes), "--tokenizer", str(tokenizer), "--out-dir",
         str(tmp_path / "model"), "--checkpoint-dir", str(tmp_path / "checkpoints"), "--config-json",
         json.dumps({**BASE, "max_steps": 4}), "--no-progress"], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert load_model(tmp_path / "model").model is not None
    resolved = json.loads((tmp_path / "model" / "train_config.json").read_text())
    assert resolved["world_size"] == 2


def test_the_stage_function_writes_the_model_folder(corpus, tmp_path):
    codes, tokenizer = corpus
    out = train_lm(codes, tokenizer, tmp_path / "model", tmp_path / "checkpoints", config(max_steps=2),
                   threads=1, progress=False)
    assert sorted(p.name for p in out.iterdir()) == sorted([
        "model.safetensors", "config.json", "spm.model", "spm.vocab", "normalizer.json", "tokenizer.json",
        "codec.json", "train_config.json", "metrics.jsonl"])


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_zero_configs_accumulate_and_reduce_gradients_in_fp32(stage):
    from stages.train.engine import deepspeed_config

    ds = deepspeed_config(TrainConfig(zero_stage=stage), world_size=8, precision="bf16")
    assert ds["data_types"] == {"grad_accum_dtype": "fp32"} and ds["communication_data_type"] == "fp32"
    assert ds["bf16"] == {"enabled": True} and not any(k.startswith("_") for k in ds)


def test_pruning_spares_the_best_validated_checkpoint_and_export_best_picks_it(tmp_path):
    from stages.train.consolidate import export_tag

    for step in (4, 8, 12):
        (tmp_path / checkpoint.tag_of(step)).mkdir()
    checkpoint.write_latest(tmp_path, "step00000012")
    assert export_tag(tmp_path, "best") == "step00000012"  # nothing marked: the latest, with a warning
    checkpoint.write_best(tmp_path, "step00000004", 2.5)
    assert checkpoint.prune(tmp_path, keep=1) == ["step00000008"]
    assert [tag for _, tag in checkpoint.tags(tmp_path)] == ["step00000004", "step00000012"]
    assert export_tag(tmp_path, "best") == "step00000004" and export_tag(tmp_path, "last") == "step00000012"


def test_export_best_writes_the_weights_of_the_lowest_validation_loss(corpus, tmp_path):
    from safetensors.torch import load_file

    trainer = fit(corpus, tmp_path, config(export="best", validate_every=2, checkpoint_every=5, keep_checkpoints=1))
    val = metrics(tmp_path / "checkpoints", "val")
    best_step = min(val, key=lambda m: m["loss"])["step"]
    marked = checkpoint.best(tmp_path / "checkpoints")
    assert marked == {"tag": checkpoint.tag_of(best_step), "loss": min(m["loss"] for m in val)}
    state = checkpoint.consolidated_state_dict(tmp_path / "checkpoints", marked["tag"])
    exported = load_file(str(tmp_path / "model" / "model.safetensors"))
    assert all(torch.equal(exported[name], state[name]) for name in exported)
    assert trainer.step == 12


def test_a_token_budget_run_stops_on_its_budget_and_decays_by_the_share_spent(corpus, tmp_path):
    budget = 6_000
    trainer = fit(corpus, tmp_path, config(max_steps=None, token_budget=budget, checkpoint_every=100,
                                           validate_every=100))
    steps = metrics(tmp_path / "checkpoints")
    assert steps[-2]["tokens"] < budget <= steps[-1]["tokens"] == trainer.tokens
    # the lr logged at step s is the one step s trained with: set by the tokens before it
    for before, logged in zip(steps, steps[1:]):
        if logged["step"] > BASE["warmup_steps"]:
            share = min(1.0, before["tokens"] / budget)
            expected = BASE["min_lr"] + (BASE["lr"] - BASE["min_lr"]) * 0.5 * (1 + math.cos(math.pi * share))
            assert logged["lr"] == pytest.approx(expected), logged["step"]


def test_the_alignment_prior_is_applied_while_its_weight_lasts(pretrained, corpus, tmp_path):
    _, plain_root = pretrained
    fit(corpus, tmp_path, config(alignment_prior_steps=8))
    train, plain = metrics(tmp_path / "checkpoints"), metrics(plain_root / "checkpoints")
    assert [m["alignment_prior"] for m in train] == [1, 1, 1, 1, 1, 0.75, 0.5, 0.25, 0, 0, 0, 0]
    assert train[0]["loss"] != pytest.approx(plain[0]["loss"], abs=1e-6)  # the same first batch, biased attention
    assert all(math.isfinite(m["loss"]) for m in train)
    assert "alignment_prior" not in plain[0]


def test_the_alignment_loss_is_trained_and_logged(pretrained, corpus, tmp_path):
    _, plain_root = pretrained
    fit(corpus, tmp_path, config(alignment_loss_weight=0.5))
    train, plain = metrics(tmp_path / "checkpoints"), metrics(plain_root / "checkpoints")
    assert all(math.isfinite(m["alignment_loss"]) and m["alignment_loss"] > 0 for m in train)
    assert train[0]["loss"] == pytest.approx(plain[0]["loss"], abs=1e-6)   # the same first forward: CE alone
    assert train[-1]["loss"] != pytest.approx(plain[-1]["loss"], abs=1e-6)  # its gradients changed the weights
    assert "alignment_loss" not in plain[0]
