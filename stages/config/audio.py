"""The `audio` section: how source audio becomes the codec's input (stage resample)."""

from __future__ import annotations

from dataclasses import dataclass

from stages.config.base import ConfigError, setting


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
