"""Shared test helpers: repository paths, a Snakemake runner for DAG tests, and a tiny TTS model with its codec.

    .venv/bin/python -m pytest            # the default suite (slow tests excluded)
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
import torch
import yaml

# Tests run tiny models: one intra-op thread avoids two threads stalling on each other on a busy 2-core
# machine (measured 5-30x slower), and subprocess DAG runs get the cores instead.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
ARCTIC = FIXTURES / "arctic"
CORPORA = FIXTURES / "corpora"
CODEC_YAML = FIXTURES / "wavtokenizer" / "wavtokenizer_fixture_frame40_tiny.yaml"
CODEC_CKPT = FIXTURES / "wavtokenizer" / "wavtokenizer_fixture_frame40_tiny.ckpt"
TTS_TEXTS = ["my son hear the instruction of thy father", "a soft answer turneth away wrath",
             "pride goeth before destruction", "白日依山尽，黄河入海流。"]
TTS_SPEAKERS = ("awb", "rms")


def snakemake_command(workdir: Path, *args: str, snakefile: Path = REPO / "Snakefile") -> list[str]:
    """The command line that runs the Snakefile in `workdir` on configs/tiny.yaml, for callers that need a Popen."""
    return [sys.executable, "-m", "snakemake", "-s", str(snakefile), "--directory", str(workdir),
            "--configfile", str(snakefile.parent / "configs" / "tiny.yaml"), *args]


def snakemake(workdir: Path, *args: str, config: dict | None = None, check: bool = True,
              timeout: float = 600, snakefile: Path = REPO / "Snakefile", output_cache: Path | None = None
              ) -> subprocess.CompletedProcess:
    """Run the repository's Snakefile in `workdir` (outputs land in workdir/results) on configs/tiny.yaml.

    `output_cache`: the between-workflow cache folder, passed with `--cache` (every rule marked `cache:`).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    command = snakemake_command(workdir, snakefile=snakefile)
    if config is not None:
        override = workdir / "override.yaml"
        override.write_text(yaml.safe_dump(config))
        command.append(str(override))
    env = dict(os.environ)
    if output_cache is not None:
        output_cache.mkdir(parents=True, exist_ok=True)
        env["SNAKEMAKE_OUTPUT_CACHE"] = str(output_cache)
        args = (*args, "--cache")
    result = subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}")
    return result


def overfit(model, batch: dict, steps: int, lr: float = 1e-2, stop_loss: float = 0.01):
    """Train `model` on one fixed batch with AdamW until its loss drops below `stop_loss`; the last output."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    for _ in range(steps):
        out = model(batch["input_ids"], batch["targets"])
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        if out.loss.item() < stop_loss:
            break
    return out


def memorise(vocab, config, n_utterances: int = 3):
    """A model of `config` trained until it recites n_utterances random ones of 5 text tokens and 24 codes
    (greedy decoding then has the margins of a trained model): (model in eval mode, their requests, their codes)."""
    import random

    from stages.lm.generate import Request
    from stages.lm.model import MiniMindTTS
    from stages.lm.vocab import collate

    rng = random.Random(0)
    texts = [[rng.randrange(vocab.n_text) for _ in range(5)] for _ in range(n_utterances)]
    codes = [[rng.randrange(vocab.n_speech) for _ in range(24)] for _ in range(n_utterances)]
    torch.manual_seed(0)
    model = MiniMindTTS(config, vocab.size)
    overfit(model, collate([vocab.example(t, c) for t, c in zip(texts, codes)]), steps=300)
    return model.eval(), [Request(tuple(t)) for t in texts], codes


@pytest.fixture(scope="session")
def tiny_dag(tmp_path_factory) -> Path:
    """A work folder in which the tiny DAG has run once, shared by the tests that inspect its outputs."""
    workdir = tmp_path_factory.mktemp("tiny_dag")
    snakemake(workdir, "--cores", "2", output_cache=workdir / "output-cache")
    return workdir


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A random tiny LM with speakers awb and rms, saved the way training saves it: weights, configs and the
    tokenizer files; it pairs with the CODEC_YAML/CODEC_CKPT codec (tests/test_tts.py, tests/test_serve*.py)."""
    from stages.common.tables import MANIFEST, write_table
    from stages.config.model import GenerationConfig, ModelConfig
    from stages.config.tokenizer import TokenizerConfig
    from stages.fit_tokenizer import fit_tokenizer
    from stages.lm.export import save_model
    from stages.lm.model import MiniMindTTS
    from stages.lm.vocab import Vocab
    from stages.text.tokenizer import TextTokenizer

    root = tmp_path_factory.mktemp("tts")
    rows = [{"utt_id": f"u{i}", "speaker": TTS_SPEAKERS[i % 2], "language": "zh" if "，" in t else "en", "text": t,
             "split": "train", "source": "x.wav", "duration": 1.0, "source_sample_rate": 16000, "channels": 1}
            for i, t in enumerate(TTS_TEXTS)]
    write_table(rows, MANIFEST, root / "manifest.parquet")
    fit_tokenizer(root / "manifest.parquet", root / "tokenizer", TokenizerConfig(vocab_size=60, character_coverage=1.0))
    vocab = Vocab(n_text=TextTokenizer.load(root / "tokenizer").vocab_size, n_speech=4096, speakers=TTS_SPEAKERS)
    torch.manual_seed(0)
    model = MiniMindTTS(ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64, max_seq_len=512),
                        vocab.size)
    generation = GenerationConfig(min_len_ratio=1.0, max_len_ratio=2.0)
    save_model(model, vocab, generation, root / "model", extra_files=sorted((root / "tokenizer").iterdir()))
    return root / "model"


@dataclasses.dataclass(frozen=True)
class Served:
    url: str            # http://127.0.0.1:PORT
    process: subprocess.Popen
    log: Path           # the server's stdout and stderr


SERVE_LIMITS = {"concurrency": 2, "queue_size": 2, "max_text_chars": 1000, "max_prompt_seconds": 2.0}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def served(model_dir, tmp_path_factory) -> Iterator[Served]:
    """`minimind-tts serve` of the tiny model in its own process on a free loopback port, with SERVE_LIMITS."""
    import httpx

    port = _free_port()
    limits = [item for name, value in SERVE_LIMITS.items() for item in (f"--{name.replace('_', '-')}", str(value))]
    log = tmp_path_factory.mktemp("serve") / "server.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "stages.tts", "serve", "--model", str(model_dir), "--codec-config",
             str(CODEC_YAML), "--codec-checkpoint", str(CODEC_CKPT), "--device", "cpu", "--seed", "0",
             "--port", str(port), "--threads", "1", *limits], cwd=REPO, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the server did not answer /health in 120 s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield Served(url, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
