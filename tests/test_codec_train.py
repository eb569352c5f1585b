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


def test_the_dac_critic_trains_beside_the_others_and_is_exported(tmp_path, clips):
    config = tiny(steps=7, gan_start_step=4, critics=("mpd", "mrd", "dac"))
    trainer = CodecTrainer(config, torch.device("cpu"))
    logs = [trainer.train_step(clips) for _ in range(6)][-1]
    for name in ("mp", "mrd", "dac"):
        assert np.isfinite(logs[f"generator/gan_{name}"]) and logs[f"generator/fm_{name}"] > 0
    trainer.export(tmp_path / "codec.ckpt", tmp_path / "codec.yaml")
    saved = torch.load(tmp_path / "codec.ckpt", weights_only=True)["state_dict"]
    assert any(k.startswith("dac.discriminators.7.band_convs.") for k in saved)
    load_codec(tmp_path / "codec.yaml", tmp_path / "codec.ckpt")


def test_precision_auto_is_fp32_on_the_cpu_and_bf16_autocast_trains(clips):
    assert CodecTrainer(tiny(), torch.device("cpu")).precision == "fp32"
    trainer = CodecTrainer(tiny(precision="bf16", critics=("mpd", "mrd", "dac")), torch.device("cpu"))
    logs = [trainer.train_step(clips) for _ in range(6)][-1]   # past the codebook's k-means and into the GAN
    assert trainer.precision == "bf16" and all(np.isfinite(v) for v in logs.values()), logs
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())   # autocast, not bf16 weights
    assert trainer.state()["precision"] == "bf16"


def test_bf16_on_a_gpu_that_only_emulates_it_is_refused_before_any_work(monkeypatch):
    from stages.config import ConfigError

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-32GB")
    with pytest.raises(ConfigError, match="codec.train.precision: bf16 is only emulated on Tesla V100"):
        CodecTrainer(tiny(precision="bf16"), torch.device("cuda"))


def test_a_resumed_run_continues_the_random_streams_exactly(tmp_path, clips):
    trainer = CodecTrainer(tiny(), torch.device("cpu"))
    for _ in range(4):
        trainer.train_step(clips)
    trainer.save(tmp_path / "state.pt")
    expected = torch.get_rng_state(), trainer.data_rng.get_state()
    torch.manual_seed(99)   # whatever ran in between
    resumed = CodecTrainer(tiny(), torch.device("cpu"))
    resumed.resume(tmp_path / "state.pt")
    assert torch.equal(torch.get_rng_state(), expected[0]) and torch.equal(resumed.data_rng.get_state(), expected[1])


def test_the_cuda_random_state_is_saved_and_restored_for_the_device_trained_on(monkeypatch, tmp_path, caplog):
    from stages.codec import trainer as trainer_module

    saved_state, restored = torch.arange(16, dtype=torch.uint8), []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": saved_state.clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": restored.append((state, device)))
    cuda = torch.device("cuda", 1)
    states = trainer_module.rng_states(cuda)
    assert torch.equal(states["cuda_rng"], saved_state) and "torch_rng" in states
    assert "cuda_rng" not in trainer_module.rng_states(torch.device("cpu"))
    trainer_module.restore_rng_states(states, cuda, tmp_path / "state.pt")
    assert len(restored) == 1 and torch.equal(restored[0][0], saved_state) and restored[0][1] == cuda
    trainer_module.restore_rng_states({"torch_rng": states["torch_rng"]}, cuda, tmp_path / "state.pt")
    assert len(restored) == 1 and "holds no CUDA random state" in caplog.text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_on_a_gpu_training_allows_tf32_runs_in_bf16_and_resumes_the_cuda_stream(tmp_path, clips):
    trainer = CodecTrainer(tiny(), torch.device("cuda"))
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    assert trainer.precision == ("bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp32")
    for _ in range(4):
        trainer.train_step(clips)
    trainer.save(tmp_path / "state.pt")
    expected = torch.cuda.get_rng_state()
    torch.cuda.manual_seed(99)
    CodecTrainer(tiny(), torch.device("cuda")).resume(tmp_path / "state.pt")
    assert torch.equal(torch.cuda.get_rng_state(), expected)


def test_a_checkpoint_from_before_precision_and_critics_existed_still_resumes(tmp_path, clips):
    trainer = CodecTrainer(tiny(), torch.device("cpu"))
    trainer.train_step(clips)
    old = trainer.state()
    config = json.loads(old.pop("config"))
    for key in ("precision", "critics", "dac_loss_coeff"):
        del config[key]
    del old["precision"]
    torch.save({**old, "config": json.dumps(config, sort_keys=True)}, tmp_path / "state.pt")
    resumed = CodecTrainer(tiny(), torch.device("cpu"))
    resumed.resume(tmp_path / "state.pt")
    assert resumed.step == 1
    with pytest.raises(ValueError, match="critics differ"):
        CodecTrainer(tiny(critics=("mpd", "mrd", "dac")), torch.device("cpu")).resume(tmp_path / "state.pt")


def test_a_run_trained_in_bf16_is_not_continued_in_fp32(tmp_path, clips):
    trainer = CodecTrainer(tiny(precision="bf16"), torch.device("cpu"))
    trainer.save(tmp_path / "state.pt")
    with pytest.raises(ValueError, match="trained in bf16, but this run would train in fp32.*precision: bf16"):
        CodecTrainer(tiny(precision="fp32"), torch.device("cpu")).resume(tmp_path / "state.pt")


def test_encoding_is_true_fp32_whatever_a_trainer_allowed(monkeypatch, clips):
    codec = CodecTrainer(tiny(), torch.device("cpu"))
    codec.init_codebook(clips)
    seen = []
    real_encode = type(codec.model.quantizer.codebook).encode

    def spy(self, x):
        seen.append((torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
                     torch.is_autocast_enabled("cpu")))
        return real_encode(self, x)

    monkeypatch.setattr(type(codec.model.quantizer.codebook), "encode", spy)
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True   # as CodecTrainer leaves it on a GPU
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            codec.model.eval().encode(torch.from_numpy(clips[0])[None])
        assert seen == [(False, False, False)] and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


@pytest.mark.parametrize("critics, message", [(("mpd", "mpd"), "names a critic twice"), ((), "at least one critic"),
                                              (("mpd", "msd"), "'msd' is not one of")])
def test_critics_are_validated(critics, message):
    with pytest.raises(ValueError, match=message):
        tiny(critics=list(critics))


def test_precision_must_be_one_of_auto_fp32_bf16():
    with pytest.raises(ValueError, match="'fp16' is not one of"):
        tiny(precision="fp16")
