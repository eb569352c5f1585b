"""benchmarks/gpu_check.py: its --smoke run goes through every section on the CPU and reports every figure.

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_gpu_check.py -q
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
CODEC_RUN = ["preset", "precision", "steps_per_s", "timed_steps", "batch_size", "segment_seconds", "mel_l1"]
EXTRACTION = ["audio_seconds", "batched_x_realtime", "single_x_realtime", "batched_over_single",
              "code_agreement_batched_vs_single", "code_agreement_device_vs_cpu"]
GENERATION = ["codes_per_sentence", "tokens_per_s", "batch8_tokens_per_s", "rtf", "first_chunk_ms"]
FIGURES = {("codec_training", "demo"): CODEC_RUN, ("codec_training", "full"): CODEC_RUN + ["fp32_steps_per_s", "bf16_speedup"],
           ("extraction", "demo"): EXTRACTION, ("extraction", "full"): EXTRACTION,
           ("pretrain",): ["tokens_per_s", "model_tflops_per_s", "parameters_active", "loss"],
           ("generation", "26m"): GENERATION, ("generation", "104m"): GENERATION}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[subprocess.CompletedProcess, dict, Path]:
    out = tmp_path_factory.mktemp("gpu_check")
    run = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out), "--threads", "1"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    return run, json.loads((out / "gpu_check.json").read_text()), out


def test_the_smoke_run_passes_every_section_without_an_error(smoke):
    run, results, out = smoke
    assert run.returncode == 0 and results["errors"] == {}, run.stdout[-4000:] + run.stderr[-4000:]
    assert results["mode"] == "smoke" and results["device"] == "cpu"
    assert "done in" in (out / "gpu_check.log").read_text()


def test_the_smoke_run_reports_every_figure(smoke):
    _, results, _ = smoke
    for path, names in FIGURES.items():
        section = results
        for key in path:
            section = section[key]
        for name in names:
            value = section[name]
            assert isinstance(value, str) or math.isfinite(value), (path, name, value)
    assert results["codec_training"]["full"]["critics"] == ["mpd", "mrd", "dac"] and results["codec_training"]["full"]["gan"]
    assert results["codec_training"]["demo"]["precision"] == results["codec_training"]["full"]["precision"] == "bf16"
    for codec in ("demo", "full"):
        extraction = results["extraction"][codec]
        assert extraction["codes_equal_batched_vs_single"] is True and extraction["codes_equal_device_vs_cpu"] is True
    assert results["pretrain"]["engine"].startswith("DeepSpeed") and results["pretrain"]["mfu"] is None  # no peak on a CPU
    assert set(results["goals_met"]) == {"pretrain 104m MFU", "extract_codes demo codec, batched (x real time)",
                                         "extract_codes full codec, batched (x real time)",
                                         "first streamed chunk 26m (ms)", "first streamed chunk 104m (ms)"}


def test_the_peak_that_mfu_divides_by_is_looked_up_by_the_gpu_name(monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    cuda = torch.device("cuda")
    for name, peak in [("NVIDIA H200", 989.0), ("NVIDIA H100 80GB HBM3", 989.0), ("NVIDIA H100 PCIe", 756.0),
                       ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA A10G", None), ("Tesla V100-SXM2-32GB", None)]:
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None, name=name: name)
        assert gpu_check.peak_tflops(cuda, None) == peak, name
    assert gpu_check.peak_tflops(cuda, 500.0) == 500.0 and gpu_check.peak_tflops(torch.device("cpu"), None) is None
