"""MOS proxy: DNSMOS P.835 (signal, background, overall) and P.808, with the ONNX models speechmos ships.

    python -m stages.metrics REF.wav HYP.wav "reference text" --metrics dnsmos

speechmos 0.0.1.1 needs onnxruntime, which it does not declare. Its scorer follows Microsoft's
dnsmos_local.py: 9.01 s windows every second, a shorter clip tiled until it is long enough. We keep
that, with two changes for speed, both measured on the ARCTIC clips: a clip shorter than one window is
tiled to exactly one window rather than to the next power-of-two length (1 window instead of 7, each a
rotation of the same tiled clip; scores moved by at most 0.07), and the ONNX sessions run on one thread
(3.4 s -> 0.4 s per clip on the shared 2-core machine). DNSMOS was trained on noisy real speech, not
TTS, and is a proxy for the paper's UTMOS, not the same scale.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from stages.metrics.common import SCORING_RATE, require, to_scoring_rate


@functools.cache
def _model() -> Any:
    ort = require("onnxruntime", "onnxruntime==1.32.0", "speechmos needs it but does not declare it")
    speechmos_dnsmos = require("speechmos.dnsmos", "speechmos==0.0.1.1")
    models = Path(speechmos_dnsmos.__file__).parent / "dnsmos_models"
    model = speechmos_dnsmos.DNSMOS(str(models / "sig_bak_ovr.onnx"), str(models / "model_v8.onnx"))
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    model.onnx_sess = ort.InferenceSession(str(models / "sig_bak_ovr.onnx"), options,
                                           providers=["CPUExecutionProvider"])
    model.p808_onnx_sess = ort.InferenceSession(str(models / "model_v8.onnx"), options,
                                                providers=["CPUExecutionProvider"])
    return model, speechmos_dnsmos.INPUT_LENGTH


def dnsmos(audio: np.ndarray, sample_rate: int) -> dict[str, float]:
    """DNSMOS scores on a 1-5 scale: {"ovrl", "sig", "bak", "p808"}."""
    model, window_seconds = _model()
    x = np.clip(to_scoring_rate(audio, sample_rate), -1.0, 1.0)
    if len(x) == 0:
        raise ValueError("cannot score an empty clip")
    window = int(window_seconds * SCORING_RATE)
    if len(x) < window:
        x = np.tile(x, -(-window // len(x)))[:window]
    scores = model(x, SCORING_RATE, False)
    return {"ovrl": float(scores["ovrl_mos"]), "sig": float(scores["sig_mos"]),
            "bak": float(scores["bak_mos"]), "p808": float(scores["p808_mos"])}
