"""The `codec` section: which WavTokenizer turns audio into codes, and how stage train_codec trains one.

    python -c "from stages.config.codec import CodecTrainConfig; print(CodecTrainConfig().arch())"

`CodecArch` is the codec's shape; its sizes come from a preset file, configs/codec/<codec.train.preset>.yaml.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import yaml

from stages.config.base import ConfigError, from_dict, setting, to_dict
from stages.config.presets import PRESET_NAME, preset_path, read_preset


@dataclass(frozen=True)
class CodecArch:
    """WavTokenizer sizes; defaults are the published 40 codes/s model (hop 600)."""

    sample_rate: int = setting(24000, "WavTokenizer's published models work at 24 kHz.", minimum=8000)
    downsamples: tuple[int, ...] = setting(
        [6, 5, 5, 4], "SEANet strides in decoder order (applied reversed); their product is the hop: 600 = 40 codes/s, "
        "[8, 5, 4, 2] gives 320 = 75 codes/s.")
    seanet_n_filters: int = setting(32, "SEANet base width (official: 32); doubles after each stride.", minimum=1)
    seanet_dimension: int = setting(512, "latent and codebook dimension (official: 512).", minimum=1)
    codebook_size: int = setting(4096, "codes in the single codebook (official: 4096).", minimum=2)
    num_quantizers: int = setting(1, "codebooks in the checkpoint; WavTokenizer encodes with the first only.", minimum=1)
    kmeans_iters: int = setting(200, "k-means iterations for the codebook's initialisation (official: 200).", minimum=1)
    bandwidths: tuple[float, ...] = setting(
        [6.6, 6.6, 6.6, 6.6], "official bookkeeping kept for the YAML round trip; one entry per AdaLN row.")
    latent_norm: Literal["none", "l2"] = setting(
        "none", "normalisation of the encoder output before the VQ. none: the official model. l2: each frame scaled "
        "to unit length (our extension for codecs trained here, not loadable by the official code): the "
        "codebook then lives on a fixed sphere that a fast-moving encoder cannot leave, which keeps thousands "
        "of codes in use at CPU-demo learning rates.")
    backbone_dim: int = setting(768, "Vocos backbone width (official: 768).", minimum=32)
    backbone_intermediate_dim: int = setting(2304, "ConvNeXt hidden width, 3x the backbone width (official).",
                                             minimum=1)
    backbone_layers: int = setting(12, "ConvNeXt blocks (official: 12).", minimum=1)
    layer_scale_init_value: Optional[float] = setting(None, "ConvNeXt layer-scale init; null means 1 / layers.")
    adanorm_num_embeddings: Optional[int] = setting(
        4, "AdaLayerNorm rows (official: 4); decoding uses row 0 (bandwidth id 0). null: plain LayerNorm.", minimum=1)
    n_fft: int = setting(2400, "ISTFT size, 4x the hop (official: 2400 at 40/s, 1280 at 75/s).", minimum=2)
    hop_length: int = setting(600, "ISTFT hop; must equal the product of `downsamples`.", minimum=1)

    def validate(self, where: str) -> None:
        if math.prod(self.downsamples) != self.hop_length:
            raise ConfigError(f"{where}.hop_length: {self.hop_length} differs from the product of downsamples "
                              f"{list(self.downsamples)} = {math.prod(self.downsamples)}; codes and audio would not align")
        if self.backbone_dim % 32:
            raise ConfigError(f"{where}.backbone_dim: {self.backbone_dim} must be a multiple of 32 (GroupNorm groups)")
        if self.n_fft % 2 or self.n_fft < self.hop_length or (self.n_fft - self.hop_length) % 2:
            raise ConfigError(f"{where}.n_fft: {self.n_fft} must be even, at least hop_length {self.hop_length}, "
                              "and differ from it by an even number ('same' padding)")


FRAME_RATES = {40: {"downsamples": (6, 5, 5, 4), "hop_length": 600, "n_fft": 2400},
               75: {"downsamples": (8, 5, 4, 2), "hop_length": 320, "n_fft": 1280}}


@dataclass(frozen=True)
class CodecTrainConfig:
    """How the pipeline's own codec is trained (stage train_codec)."""

    preset: str = setting(
        "demo", "model size, configs/codec/<name>.yaml: demo trains on 2 CPU cores within the demo's budget; full "
        "is the published size (GPU); tiny is for tests.", pattern=PRESET_NAME)
    frame_rate: Literal[40, 75] = setting(
        75, "codes per second; 75/s resynthesises more intelligibly (published WER 3.98 vs 11.2 at 40/s).")
    codebook_size: int = setting(4096, "codes in the single codebook; the LM's speech vocabulary.", minimum=16)
    steps: int = setting(900, "optimiser steps; ~1 step/s for demo on 2 CPU cores.", minimum=1)
    batch_size: int = setting(16, "random crops per step.", minimum=1)
    segment_seconds: float = setting(1.0, "crop length; 1 s covers the critics' largest window many times.",
                                     exclusiveMinimum=0.0)
    learning_rate: float = setting(2e-4, "AdamW peak learning rate of the official recipe.", exclusiveMinimum=0.0)
    warmup_steps: int = setting(50, "linear learning-rate warm-up before the cosine decay.", minimum=0)
    mel_loss_coeff: float = setting(45.0, "weight of the log-mel L1 loss (official: 45).", minimum=0.0)
    commit_loss_coeff: float = setting(1000.0, "weight of the VQ commitment MSE (official: 1000).", minimum=0.0)
    mrd_loss_coeff: float = setting(1.0, "weight of the multi-resolution critic's terms (official: 1).", minimum=0.0)
    gan_start_step: int = setting(
        10**9, "first step with critics; the default (never) suits the CPU demo, where critics cost more than they "
        "give in 15 minutes. Official: 0.", minimum=0)
    critic_width: float = setting(1.0, "critic channel multiplier; below 1 makes the GAN affordable on a CPU.",
                                  exclusiveMinimum=0.0, maximum=1.0)
    critics: tuple[Literal["mpd", "mrd", "dac"], ...] = setting(
        ["mpd", "mrd"], "the GAN's critics: mpd (HiFi-GAN multi-period), mrd (UnivNet multi-resolution magnitude) and "
        "dac (DAC's discriminator: its own multi-period critics and the complex multi-band STFT one). The official "
        "recipe trains with all three (configs/scale/*.yaml do); dac roughly doubles the critics' cost, so the "
        "default keeps the two the CPU demo was tuned with.")
    dac_loss_coeff: float = setting(1.0, "weight of the dac critic's terms, least-squares GAN and feature matching "
                                         "(official: 1).", minimum=0.0)
    precision: Literal["auto", "fp32", "bf16"] = setting(
        "auto", "auto: bf16 autocast on a GPU with native bf16 (about twice the steps/s), fp32 elsewhere (the CPU: "
        "bf16 convolutions are slow on most CPUs). The quantizer, losses, STFTs and LSTM run in fp32 either way.")
    vq_warmup_steps: int = setting(100, "steps with the quantizer bypassed before k-means initialises the codebook.",
                                   minimum=0)
    kmeans_frames: int = setting(20000, "latent frames sampled for the k-means initialisation.", minimum=16)
    dead_code_usage: float = setting(
        0.1, "a code whose EMA usage falls below this share of a uniform code's usage (frames per step / codes) "
        "restarts on a fresh latent. The official absolute threshold (2 frames/step) suits its 9,000-frame GPU "
        "batches; at 1,200 frames/step it would declare most of 4,096 codes dead every step.", minimum=0.0)
    checkpoint_every: int = setting(200, "steps between resumable checkpoints (state.pt).", minimum=1)
    snapshot_every: int = setting(
        0, "steps between weights-only snapshots (snapshots/step-NNNNNN.ckpt + .yaml, official layout) kept for a "
        "quality-against-training-time curve; 0 keeps none.", minimum=0)
    log_every: int = setting(10, "steps between TensorBoard points.", minimum=1)
    valid_clips: int = setting(32, "held-out clips scored at the end (mel L1, codebook use).", minimum=0)
    seed: int = setting(0, "seeds weights, crops and codebook restarts.")

    def validate(self, where: str) -> None:
        if self.vq_warmup_steps >= self.steps:
            raise ConfigError(f"{where}.vq_warmup_steps: {self.vq_warmup_steps} must be below steps {self.steps}, "
                              "or the codebook is never initialised")
        if len(set(self.critics)) != len(self.critics):
            raise ConfigError(f"{where}.critics: {list(self.critics)} names a critic twice")
        if not self.critics:
            raise ConfigError(f"{where}.critics: name at least one critic (mpd, mrd, dac); gan_start_step decides "
                              "whether they are used at all")
        self.arch(where)  # the preset file's keys, checked when the DAG is built

    @property
    def preset_file(self) -> Path:
        return preset_path("codec", self.preset)

    def arch(self, where: str = "codec.train") -> CodecArch:
        """The shape to train: the preset's sizes, with the frame rate and codebook size of this config."""
        values = {**to_dict(CodecArch()), **read_preset("codec", self.preset, f"{where}.preset"),
                  **FRAME_RATES[self.frame_rate], "codebook_size": self.codebook_size}
        return from_dict(CodecArch, values, f"{where}.preset ({self.preset_file})")


@dataclass(frozen=True)
class CodecConfig:
    """Which WavTokenizer codec turns audio into codes: one the pipeline trains, or official weights."""

    source: Literal["train", "pretrained"] = setting(
        "train", "train: stage train_codec makes one from the corpus (no weights can be downloaded offline); "
        "pretrained: use the official checkpoint + YAML named below.")
    checkpoint: Optional[str] = setting(None, "official WavTokenizer Lightning .ckpt (source: pretrained).")
    config: Optional[str] = setting(None, "the YAML the checkpoint was trained with (source: pretrained).")
    train: CodecTrainConfig = setting(CodecTrainConfig(), "how stage train_codec trains the codec (source: train).")
    batch_seconds: float = setting(
        60.0, "extract_codes: padded audio seconds per batch; length bucketing keeps padding small.",
        exclusiveMinimum=0.0)

    def validate(self, where: str) -> None:
        if self.source == "pretrained":
            for key in ("checkpoint", "config"):
                value = getattr(self, key)
                if not value:
                    raise ConfigError(f"{where}.{key}: required when {where}.source is 'pretrained'")
                if not Path(value).is_file():
                    raise ConfigError(f"{where}.{key}: {value!r} is not a file")

    def sample_rate(self) -> int:
        """The rate the codec works at: its preset's (source: train), or the one its YAML records (pretrained)."""
        if self.source == "train":
            return self.train.arch().sample_rate
        tree = yaml.safe_load(Path(self.config).read_text(encoding="utf-8")) or {}
        return int(((tree.get("model") or {}).get("init_args") or {}).get("sample_rate", 24000))
