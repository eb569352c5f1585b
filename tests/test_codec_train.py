"""Codec training: the loss falls, the checkpoint loads back through the official-layout loader, resume is exact.

    PYTHONPATH=. .venv/bin/python -m pytest tests/test_codec_train.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from stages.codec import codec_id, load_codec
from stages.codec.trainer import CodecTrainer
from stages.config.codec import CodecTrainConfig
from stages.config import from_dict, to_dict
from stages.train_codec import train_codec

ARCTIC = Path(__file__).parent / "fixtures" / "arctic"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from threads, and on a loaded 2-core machine OpenMP spin-waits make them crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    """Two real ARCTIC sentences (16 kHz) cut to 0.4 s pieces: enough for a few 24 kHz-style steps."""
    audio = [sf.read(ARCTIC / f"arctic_a000{i}.wav", dtype="float32")[0] for i in (7, 9)]
    return [a[s: s + 9600] for a in audio for s in range(4000, len(a) - 9600, 9600)][:6]


def tiny(**overrides) -> CodecTrainConfig:
    values = dict(preset="tiny", codebook_size=64, steps=8, batch_size=2, segment_seconds=0.4, learning_rate=1e-3,
                  warmup_steps=0, vq_warmup_steps=3, kmeans_frames=64, gan_start_step=5, critic_width=0.0625,
                  checkpoint_every=2, log_every=1, valid_clips=2)
    return from_dict(CodecTrainConfig, {**values, **overrides})


def outputs(folder: Path) -> tuple[Path, Path, Path]:
    """The checkpoint, YAML and metrics paths train_codec gets, named as the rule names them."""
    return folder / "codec.ckpt", folder / "codec.yaml", folder / "codec.metrics.json"


def test_a_few_steps_lower_the_mel_loss(clips):
    torch.manual_seed(0)
    trainer = CodecTrainer(tiny(steps=200, vq_warmup_steps=100, gan_start_step=100), torch.device("cpu"))
    losses = [trainer.train_step(clips[:1])["generator/mel_l1"] for _ in range(14)]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.05, losses


def test_codebook_is_kmeans_initialised_after_warmup_and_codes_stay_in_use(clips):
    trainer = CodecTrainer(tiny(), torch.device("cpu"))
    for _ in range(3):
        trainer.train_step(clips)
        assert not trainer.model.quantizer.codebook.is_initialised
    logs = trainer.train_step(clips)
    assert trainer.model.quantizer.codebook.is_initialised
    assert logs["generator/commit"] > 0 and logs["codebook/codes_in_batch"] > 8


def test_training_writes_an_official_checkpoint_that_loads(tmp_path, clips):
    metrics = train_codec(clips[:4], clips[4:], *outputs(tmp_path), tiny(), progress=False)
    assert metrics["steps"] == 8 and metrics["valid/codes_used"] >= 1
    codec = load_codec(tmp_path / "codec.yaml", tmp_path / "codec.ckpt")
    saved = torch.load(tmp_path / "codec.ckpt", weights_only=True)
    assert any(k.startswith("multiperioddisc.discriminators.0.") for k in saved["state_dict"])
    codes, lengths = codec.encode(torch.from_numpy(clips[0])[None])
    assert lengths.item() == codes.shape[1] == 9600 // 320 and codes.max() < 64
    audio = codec.decode(codes)
    assert audio.shape == (1, 9600) and torch.isfinite(audio).all()
    assert (tmp_path / "codec.metrics.json").exists() and any((tmp_path / "tensorboard").iterdir())


def test_a_killed_run_resumes_to_the_same_weights(tmp_path, clips, monkeypatch):
    straight = tmp_path / "straight"
    train_codec(clips[:4], clips[4:], *outputs(straight), tiny(), progress=False)

    resumed = tmp_path / "resumed"
    real_step = CodecTrainer.train_step

    def dies_at_step_5(self, data):
        if self.step == 5:
            raise KeyboardInterrupt("simulated kill")
        return real_step(self, data)

    monkeypatch.setattr(CodecTrainer, "train_step", dies_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        train_codec(clips[:4], clips[4:], *outputs(resumed), tiny(), progress=False)
    assert torch.load(resumed / "state.pt", weights_only=True)["step"] == 4
    assert not (resumed / "codec.ckpt").exists()
    monkeypatch.setattr(CodecTrainer, "train_step", real_step)
    train_codec(clips[:4], clips[4:], *outputs(resumed), tiny(), progress=False)

    a = load_codec(straight / "codec.yaml", straight / "codec.ckpt")
    b = load_codec(resumed / "codec.yaml", resumed / "codec.ckpt")
    assert codec_id(a) == codec_id(b)


def test_resuming_with_another_config_is_refused(tmp_path, clips):
    train_codec(clips[:4], clips[4:], *outputs(tmp_path), tiny(steps=4), progress=False)
    with pytest.raises(ValueError, match="another codec training config"):
        train_codec(clips[:4], clips[4:], *outputs(tmp_path), tiny(steps=4, learning_rate=5e-4),
                    progress=False)


def test_outputs_go_where_the_caller_names_them_and_the_state_beside_the_checkpoint(tmp_path, clips):
    checkpoint, codec_yaml, metrics = tmp_path / "w" / "a.ckpt", tmp_path / "b.yaml", tmp_path / "c.json"
    train_codec(clips[:4], clips[4:], checkpoint, codec_yaml, metrics, tiny(steps=2, vq_warmup_steps=1),
                progress=False)
    load_codec(codec_yaml, checkpoint)
    assert json.loads(metrics.read_text())["steps"] == 2
    assert (tmp_path / "w" / "state.pt").exists() and (tmp_path / "w" / "tensorboard").is_dir()


def test_a_codebook_that_would_never_be_initialised_is_a_config_error():
    with pytest.raises(ValueError, match="vq_warmup_steps"):
        tiny(steps=3, vq_warmup_steps=3)


def test_command_line_trains_from_audio_shards(tmp_path, clips):
    import io

    from stages.train_codec import main
    from stages.common.tables import AUDIO_SHARD, write_table

    def flac(clip: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        sf.write(buffer, clip, 24000, format="FLAC")
        return buffer.getvalue()

    rows = [{"utt_id": f"u{i}", "speaker": "s", "language": "en", "text": "t", "split": split, "source": "x",
             "num_samples": len(clip), "sample_rate": 24000, "source_loudness_lufs": -23.0, "audio": flac(clip)}
            for i, (clip, split) in enumerate(zip(clips, ["train"] * 4 + ["valid", "eval"]))]
    shard = tmp_path / "shard-00000.parquet"
    write_table(rows, AUDIO_SHARD, shard)
    config = to_dict(tiny(steps=4))
    checkpoint, codec_yaml, metrics = outputs(tmp_path / "codec")
    main([str(shard), "--out-checkpoint", str(checkpoint), "--out-config", str(codec_yaml), "--out-metrics",
          str(metrics), "--config-json", json.dumps(config), "--threads", "1"])
    assert json.loads((tmp_path / "codec" / "codec.metrics.json").read_text())["steps"] == 4
    load_codec(tmp_path / "codec" / "codec.yaml", tmp_path / "codec" / "codec.ckpt")
