"""Every registered metric for one pair of clips, for a manual check.

    python -m stages.metrics REF.wav HYP.wav "reference text" [--language en] [--metrics asr,pesq] [--voice A.wav ...]

REF is the ground truth of the sentence, HYP the clip to judge (codec resynthesis or model output); any
sample rates, multi-channel files are averaged to mono. The speaker reference is the mean embedding of
the --voice clips, or REF alone. The reference's own transcript and WER are printed too: a recogniser's
WER means little without the ground truth's.
"""

from __future__ import annotations

import argparse
import time

from stages.common.audio import read_audio, to_mono
from stages.metrics.scoring import SCORERS, Sample, score
from stages.metrics.signal import real_time_factor


def _load(path: str):
    samples, rate = read_audio(path)
    return to_mono(samples), rate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stages.metrics", description=__doc__.splitlines()[0])
    parser.add_argument("reference", help="ground-truth audio file")
    parser.add_argument("hypothesis", help="audio file to judge")
    parser.add_argument("text", help="what both clips say")
    parser.add_argument("--language", default="en", choices=("en", "zh"))
    parser.add_argument("--metrics", default=",".join(SCORERS), help="comma-separated, from: " + ", ".join(SCORERS))
    parser.add_argument("--voice", nargs="*", default=[], help="other clips of the target voice")
    args = parser.parse_args(argv)

    reference, reference_rate = _load(args.reference)
    hypothesis, hypothesis_rate = _load(args.hypothesis)
    voices = [_load(v) for v in args.voice]
    if len({rate for _, rate in voices}) > 1:
        parser.error("all --voice clips must share one sample rate")
    metrics = [m for m in args.metrics.split(",") if m]
    sample = Sample.make(hypothesis, hypothesis_rate, args.text, args.language, reference, reference_rate,
                       [v for v, _ in voices], voices[0][1] if voices else None)
    started = time.perf_counter()
    row = score(sample, metrics)
    elapsed = time.perf_counter() - started
    if "asr" in metrics:
        truth = score(Sample.make(reference, reference_rate, args.text, args.language), ["asr"])
        print(f"{'reference transcript':24s} {truth['transcript']!r}  (WER {truth['wer']:.3f}, CER {truth['cer']:.3f})")
    for column, value in row.items():
        if column.endswith("_note") and not value:
            continue
        print(f"{column:24s} {value:.4f}" if isinstance(value, float) else f"{column:24s} {value!r}")
    print(f"{'scoring real-time factor':24s} {real_time_factor(elapsed, len(sample.audio) / 16000):.3f}")


if __name__ == "__main__":
    main()
