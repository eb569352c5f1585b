"""The pipeline's configuration tree: the sections of `configs/*.yaml`, each defined in its own module here.

    python -c "from stages.config import load_config; print(load_config('configs/demo.yaml'))"

`workflow/schemas/config.schema.json` is generated from these classes (`python -m stages.config schema`),
so the descriptions are what users see in the schema and in errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stages.config.audio import AudioConfig
from stages.config.base import ConfigError, setting
from stages.config.codec import CodecConfig
from stages.config.corpus import CorpusConfig
from stages.config.eval import EvalConfig
from stages.config.presets import load_yaml_as
from stages.config.pretrain import TrainConfig
from stages.config.sft import SftConfig
from stages.config.tokenizer import TokenizerConfig


@dataclass(frozen=True)
class PipelineConfig:
    """MiniMind-TTS pipeline configuration (configs/demo.yaml is the default)."""

    run: str = setting("demo", "name of this run: every output goes under results/<run>/.", pattern=r"^[A-Za-z0-9_.-]+$")
    corpus: CorpusConfig = setting(CorpusConfig(), "the speech corpus to train on.")
    audio: AudioConfig = setting(AudioConfig(), "audio preprocessing (stage resample).")
    shards: int = setting(
        2, "number of audio/code shards; shards run as parallel jobs, so use at least the number of cores or nodes.",
        minimum=1)
    codec: CodecConfig = setting(CodecConfig(), "the speech codec (stages train_codec and extract_codes).")
    tokenizer: TokenizerConfig = setting(TokenizerConfig(), "text normaliser and sentencepiece model (stage fit_tokenizer).")
    pretrain: TrainConfig = setting(TrainConfig(), "LM pretraining on every training utterance (stage pretrain).")
    sft: SftConfig = setting(
        SftConfig(), "supervised fine-tuning from the pretrained model on a subset (stage sft): set its lower lr, "
        "fewer steps and the speakers/languages it trains on.")
    eval: EvalConfig = setting(EvalConfig(), "evaluation samples and offline scores (stages synthesize, evaluate).")

    def validate(self, where: str) -> None:
        codec_rate = self.codec.sample_rate()
        if codec_rate != self.audio.sample_rate:
            what = (f"preset {self.codec.train.preset!r}" if self.codec.source == "train"
                    else f"its YAML {self.codec.config}")
            raise ConfigError(f"{where}.audio.sample_rate: {self.audio.sample_rate} Hz, but the codec works at "
                              f"{codec_rate} Hz ({what}); the shards must be at the codec's rate")


def load_config(path: str | Path, overrides: dict | None = None) -> PipelineConfig:
    """Read a YAML config (plus optional top-level overrides) into a validated PipelineConfig."""
    return load_yaml_as(PipelineConfig, path, overrides, "config")
