"""The shipped reference codec (assets/codec/): weights only, its recorded id, intelligible held-out resynthesis."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch

from conftest import REPO
from stages.common.audio import condition, read_audio
from stages.codec import codec_id, load_codec
from stages.metrics import signal
from stages.config.audio import AudioConfig
from stages.config import load_config

ASSET = REPO / "assets" / "codec" / "demo-75hz"
RECORD = json.loads(ASSET.with_suffix(".json").read_text())
# A held-out Proverb (split eval in data/demo/kjv_verses.tsv): the codec never heard it.
HELD_OUT = "A soft answer turneth away wrath: but grievous words stir up anger."
STOI_FLOOR = 0.80  # measured on this clip: awb 0.906, rms 0.913, slt 0.830, kal16 0.868 (assets/codec/README.md)


@pytest.fixture(scope="module")
def codec():
    torch.set_num_threads(1)
    return load_codec(ASSET.with_suffix(".yaml"), ASSET.with_suffix(".ckpt"))


def test_the_asset_is_weights_only_and_small():
    ckpt = ASSET.with_suffix(".ckpt")
    assert ckpt.stat().st_size <= 32 * 2**20
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)  # a checkpoint never runs code
    assert saved["optimizer_states"] == [] and saved["lr_schedulers"] == []
    prefixes = {k.split(".")[0] for k in saved["state_dict"]}
    assert prefixes == {"feature_extractor", "backbone", "head"}  # the generator only: no critics
    assert {v.dtype for v in saved["state_dict"].values() if v.is_floating_point()} == {torch.float16}


def test_the_asset_has_its_recorded_id_and_is_what_the_demo_uses(codec):
    assert codec_id(codec) == RECORD["codec_id"]
    assert (codec.frame_rate, codec.sample_rate) == (75, 24000)
    demo = load_config(REPO / "configs" / "demo.yaml")
    assert demo.codec.source == "pretrained"
    assert (REPO / demo.codec.checkpoint).resolve() == ASSET.with_suffix(".ckpt").resolve()


@pytest.mark.parametrize("voice", ["awb", "rms", "slt", "kal16"])
def test_held_out_speech_resynthesises_above_the_stoi_floor(codec, voice, tmp_path):
    wav = tmp_path / "held_out.wav"
    subprocess.run(["flite", "-voice", voice, "-t", HELD_OUT, "-o", str(wav)], check=True)
    samples, rate = read_audio(str(wav))
    clip = condition(samples, rate, AudioConfig()).samples  # as the resample stage prepares corpus audio
    with torch.inference_mode():
        codes, _ = codec.encode(torch.from_numpy(clip)[None])
        resynthesis = codec.decode(codes)[0, : len(clip)].numpy()
    assert codes.shape[1] == pytest.approx(len(clip) / 320, abs=1)
    assert signal.stoi(clip, resynthesis, codec.sample_rate) >= STOI_FLOOR
    assert np.isfinite(resynthesis).all()
