"""The pipeline's configuration tree: one frozen dataclass per top-level key of `configs/*.yaml`.

    python -c "from stages.pipeline_config import load_config; print(load_config('configs/demo.yaml'))"

`workflow/schemas/config.schema.json` is generated from these classes (`python -m stages.config schema`),
so the descriptions below are what users see in the schema and in errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

import yaml

from stages.config import ConfigError, from_dict, setting
from stages.codec_config import CodecTrainConfig
from stages.eval_config import EvalConfig
from stages.text.tokenizer import TokenizerConfig
from stages.train.config import TrainConfig

CorpusFormat = Literal["demo", "ljspeech", "libritts", "vctk", "aishell3", "csv", "jsonl"]


@dataclass(frozen=True)
class DemoCorpusConfig:
    """The offline demo corpus: synthetic speech of shipped public-domain text (data/demo/)."""

    english_voices: tuple[str, ...] = setting(
        ["awb", "rms", "slt", "kal16"],
        "flite voices for English; all four are built from real CMU ARCTIC speakers, so speaker similarity means something.")
    english_train_sentences: int = setting(
        2000, "distinct KJV verses (6-13 words, from every book but the reserved Psalms, Ecclesiastes and James) "
        "for training; 2,000 read once each is about 2 h of audio.", minimum=1)
    english_readers_per_sentence: int = setting(
        1, "English voices that read each training verse, in rotation over `english_voices`; held-out verses "
        "are read by every voice.", minimum=1)
    english_eval_sentences: int = setting(
        40, "held-out Proverbs (all words in the ASR dictionary) spoken by every English voice.", minimum=0, maximum=40)
    mandarin_voices: tuple[str, ...] = setting(
        ["cmn-latn-pinyin+m3", "cmn-latn-pinyin+f3"],
        "espeak-ng Mandarin voice variants (voice+variant), a male and a female voice. Use the cmn-latn-pinyin "
        "voices: espeak-ng 1.51's plain `cmn` reads many characters as pinyin and says the tone digits in English.")
    mandarin_train_sentences: int = setting(
        200, "Tang-poem couplets spoken by every Mandarin voice for training.", minimum=0)
    mandarin_eval_sentences: int = setting(
        20, "held-out couplets spoken by every Mandarin voice.", minimum=0, maximum=20)


@dataclass(frozen=True)
class CorpusConfig:
    """Which corpus to read and how to split it."""

    format: CorpusFormat = setting(
        "demo", "corpus layout; 'demo' builds the offline demo corpus, the others import a corpus found at `path`.")
    path: Optional[str] = setting(
        None, "corpus root folder (ljspeech, libritts, vctk, aishell3) or table file (csv, jsonl); unused for demo.")
    language: Optional[str] = setting(
        None, "language code for formats that do not record one; null takes the importer's own (en, or zh for aishell3).")
    vctk_mic: Literal["mic1", "mic2"] = setting(
        "mic1", "VCTK microphone to use; mic1 (omni) is the one most recipes train on.")
    eval_fraction: float = setting(
        0.01, "share of distinct sentences held out for evaluation (never trained on); demo uses its fixed split.",
        minimum=0.0, maximum=0.5)
    valid_fraction: float = setting(
        0.02, "share of distinct training sentences used for validation loss.", minimum=0.0, maximum=0.5)
    demo: DemoCorpusConfig = setting(DemoCorpusConfig(), "settings of the demo corpus (format: demo).")

    def validate(self, where: str) -> None:
        if self.format != "demo" and not self.path:
            raise ConfigError(f"{where}.path: required when {where}.format is {self.format!r}")
        if self.format != "demo" and not Path(self.path).exists():
            raise ConfigError(f"{where}.path: {self.path!r} does not exist")


@dataclass(frozen=True)
class AudioConfig:
    """How source audio becomes the codec's input: 24 kHz mono, level-matched, silence-trimmed."""

    sample_rate: int = setting(24000, "WavTokenizer works at 24 kHz.", minimum=8000)
    loudness_lufs: float = setting(
        -23.0, "target integrated loudness (ITU-R BS.1770); -23 LUFS (EBU R128) leaves headroom for loud voices.",
        maximum=0.0)
    peak_limit: float = setting(
        0.95, "after loudness matching, scale down any clip whose peak exceeds this, so FLAC never clips.",
        exclusiveMinimum=0.0, maximum=1.0)
    silence_lufs: float = setting(
        -70.0, "clips quieter than this are all-silent and quarantined; -70 LUFS is BS.1770's absolute gate.",
        maximum=0.0)
    trim_top_db: float = setting(
        40.0, "leading/trailing frames this far below the clip's loudest frame count as silence and are cut.",
        exclusiveMinimum=0.0)
    trim_margin_seconds: float = setting(
        0.1, "silence kept before the first and after the last voiced frame, so onsets are not clipped.", minimum=0.0)
    min_seconds: float = setting(0.5, "shorter clips (after trimming) are quarantined: too little to learn from.",
                                 minimum=0.0)
    max_seconds: float = setting(
        20.0, "longer clips (after trimming) are quarantined: 20 s is 1,500 codes at 75/s, the LM's context budget.",
        exclusiveMinimum=0.0)

    def validate(self, where: str) -> None:
        if self.min_seconds >= self.max_seconds:
            raise ConfigError(f"{where}.min_seconds: {self.min_seconds} must be below max_seconds {self.max_seconds}")


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
    sft: TrainConfig = setting(
        TrainConfig(), "supervised fine-tuning from the pretrained model on a subset (stage sft): set its lower lr, "
        "fewer steps and the speakers/languages it trains on.")
    eval: EvalConfig = setting(EvalConfig(), "evaluation samples and offline scores (stages synthesize, evaluate).")


def load_config(path: str | Path, overrides: dict | None = None) -> PipelineConfig:
    """Read a YAML config (plus optional top-level overrides) into a validated PipelineConfig."""
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    data.update(overrides or {})
    return from_dict(PipelineConfig, data)
