"""Text -> LM -> codec -> audio on the CPU, before and after issue 14's speed work, in one run.

    .venv/bin/python benchmarks/bench_synthesis.py                    # 26m and tiny, demo codec, 2 threads
    .venv/bin/python benchmarks/bench_synthesis.py --threads 1 --reps 2

Times the real `Synthesizer` (stages/runtime/synthesizer.py) three ways: the ten-word sentence's RTF with
`say` (wall time over seconds of audio, tokenizer to waveform), the time to the first non-empty chunk of
`say_streaming`, and a batch of 8 sentences through `speak` (seconds of audio made per second).

"before" is the code of `--before` (the commit preceding the decoding changes), extracted with `git archive`
and run in its own worker process; "after" is this checkout, in fp32, with `quantize="int8"` and with
`dtype=torch.bfloat16` (the whole LM in bf16; oneDNN's bf16 kernels, AMX where the CPU has it). The
workers take turns one measurement at a time (ABAB...), and each figure is the median over `--reps`, so
load from other jobs falls on every variant alike. The LMs are the 26m and tiny presets with random weights
(speed does not depend on them) and the demo codec's real weights; every sentence's length is forced by
setting min_len_ratio = max_len_ratio, so all variants decode the same number of codes.

"fp32 compiled" and "int8 compiled" add `compile=True`: every decode step after the prompt's runs as one
torch.compile graph (stages/lm/decode_graph.py; compiled when the Synthesizer loads, which is not timed). An
earlier attempt (86b5d15, removed after it) compiled `model.forward` itself: it ran as several graphs with a
recompile per layer and per cache length, and gained 1.02x; the graph step fuses the few hundred small ops of
a step around the matmuls, the cost that bounds the eager int8 path.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "ad70770^"   # the commit before "Issue 14 speed, decoding" (git log --grep "Issue 14 speed")
CODEC_YAML, CODEC_CKPT = ROOT / "assets/codec/demo-75hz.yaml", ROOT / "assets/codec/demo-75hz.ckpt"
PRESETS = {"26m": ROOT / "configs/model/26m.yaml", "tiny": ROOT / "configs/model/tiny.yaml"}
DEMO_TEXT_PIECES = 1000        # the demo tokenizer's size (TokenizerConfig.vocab_size): it sizes the output head
SECONDS_PER_WORD = 0.35        # read English at ~170 words a minute sets each sentence's forced length
GOAL_RTF, GOAL_FIRST_AUDIO_S = 0.3, 0.3   # issue 14, for 26m on 2 CPU cores
TEN_WORDS = "The wise in heart will receive commandments, but fools fall."
BATCH = ["A soft answer turneth away wrath.", "Pride goeth before destruction.",
         "Wisdom is better than rubies.",
         "A merry heart doeth good like a medicine.", "Go to the ant, thou sluggard; consider her ways, and be wise.",
         "The fear of the Lord is the beginning of knowledge.", "Hope deferred maketh the heart sick.",
         "Iron sharpeneth iron; so a man sharpeneth the countenance of his friend."]
# Synthesizer options per variant; a dtype is named as in torch (JSON carries no torch.dtype)
# generation keys added after --before: dropped from the copies of the model folders its worker reads (the
# before code refuses keys it does not know); it streams with its own fixed chunk of 25 codes
KEYS_AFTER_BEFORE = ("first_chunk_size",)
VARIANTS = {"before": {}, "after fp32": {}, "after int8": {"quantize": "int8"}, "after bf16": {"dtype": "bfloat16"},
            "fp32 compiled": {"compile": True}, "int8 compiled": {"quantize": "int8", "compile": True}}


# ---- the worker: one process per code version, answering one measurement per line on stdin ----

def use_stages_from(root: str) -> None:
    """Import `stages` from `root` instead of this checkout, to which the editable install maps the name."""
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
    sys.path.insert(0, root)


def worker(stages_root: str, threads: int) -> None:
    use_stages_from(stages_root)
    import numpy as np
    import torch

    from stages.runtime import Synthesizer

    torch.set_num_threads(threads)
    loaded: dict[tuple, object] = {}
    for line in sys.stdin:
        job = json.loads(line)
        key = (job["model_dir"], json.dumps(job["options"], sort_keys=True))
        if key not in loaded:
            options = dict(job["options"])
            if "dtype" in options:
                options["dtype"] = getattr(torch, options["dtype"])
            loaded[key] = Synthesizer(job["model_dir"], CODEC_YAML, CODEC_CKPT, **options)
            loaded[key].say("Warm up.")  # and a batch, whose first call sizes buffers of its own
            loaded[key].speak([loaded[key].request(text) for text in BATCH[:2]])
        tts = loaded[key]
        start = time.perf_counter()
        if job["measure"] == "rtf":
            audio_seconds = len(tts.say(TEN_WORDS).audio) / tts.sample_rate
        elif job["measure"] == "first_audio":
            chunks = tts.say_streaming(TEN_WORDS)
            audio_seconds = len(next(chunk for chunk in chunks if len(chunk))) / tts.sample_rate
            chunks.close()
        else:
            spoken = tts.speak([tts.request(text) for text in BATCH])
            audio_seconds = sum(len(s.audio) for s in spoken) / tts.sample_rate
            assert np.all([np.isfinite(s.audio).all() for s in spoken])
        print(json.dumps({"seconds": time.perf_counter() - start, "audio_seconds": audio_seconds}), flush=True)


# ---- the driver ----

def extract_stages(ref: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "stages"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def build_models(folder: Path) -> dict[str, Path]:
    """Random-weight 26m and tiny models saved as training saves them, with a tokenizer fitted on the sentences."""
    import torch

    from stages.codec import codec_id, load_codec
    from stages.common.tables import MANIFEST, write_table
    from stages.config.model import GenerationConfig, load_model_config
    from stages.config.tokenizer import TokenizerConfig
    from stages.fit_tokenizer import fit_tokenizer
    from stages.lm.export import save_model
    from stages.lm.model import MiniMindTTS
    from stages.lm.vocab import Vocab
    from stages.text.tokenizer import TextTokenizer

    texts = [TEN_WORDS, *BATCH]
    rows = [{"utt_id": f"u{i}", "speaker": "a", "language": "en", "text": t, "split": "train", "source": "x.wav",
             "duration": 1.0, "source_sample_rate": 24000, "channels": 1} for i, t in enumerate(texts)]
    write_table(rows, MANIFEST, folder / "manifest.parquet")
    fit_tokenizer(folder / "manifest.parquet", folder / "tokenizer", TokenizerConfig(input="text", vocab_size=120))
    tokenizer = TextTokenizer.load(folder / "tokenizer")
    ten_word_tokens = len(tokenizer.encode(TEN_WORDS, "en"))
    codes_per_token = len(TEN_WORDS.split()) * SECONDS_PER_WORD * 75 / ten_word_tokens
    # min = max: EOS is forbidden until, and forced at, the same length; int() of the ratio product could
    # round one code short, which is the same for every variant
    generation = GenerationConfig(min_len_ratio=codes_per_token, max_len_ratio=codes_per_token)
    codec_record = json.dumps({"codec_id": codec_id(load_codec(CODEC_YAML, CODEC_CKPT))})
    vocab = Vocab(n_text=max(DEMO_TEXT_PIECES, tokenizer.vocab_size), n_speech=4096)
    dirs = {}
    for name, preset in PRESETS.items():
        torch.manual_seed(0)
        model = MiniMindTTS(load_model_config(preset), vocab.size)
        dirs[name] = save_model(model, vocab, generation, folder / name,
                                extra_files=sorted((folder / "tokenizer").iterdir()))
        (dirs[name] / "codec.json").write_text(codec_record)
    return dirs


def for_before(model_dir: Path) -> Path:
    """A copy of a model folder without the generation keys the --before code does not know."""
    copy = model_dir.with_name(model_dir.name + "-before")
    shutil.copytree(model_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    for key in KEYS_AFTER_BEFORE:
        config["generation"].pop(key, None)
    (copy / "config.json").write_text(json.dumps(config, indent=2))
    return copy


class Worker:
    def __init__(self, stages_root: Path, threads: int):
        self.process = subprocess.Popen([sys.executable, __file__, "--worker", str(stages_root), "--threads", str(threads)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def measure(self, **job) -> dict:
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the worker for {job} died (its error is above)")
        return json.loads(line)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads per worker (the goals are for 2)")
    parser.add_argument("--reps", type=int, default=3, help="measurements per figure; the median is printed")
    parser.add_argument("--models", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--before", default=BEFORE, help="git revision whose stages/ is timed as 'before'")
    parser.add_argument("--worker", metavar="STAGES_ROOT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.threads)

    sys.path.insert(0, str(ROOT))
    import torch

    import machine

    torch.set_num_threads(args.threads)
    print(f"machine: {machine.describe()}; load average {os.getloadavg()[0]:.1f} "
          "(other work on the machine slows every figure)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dirs = build_models(tmp)
        before_dirs = {name: for_before(path) for name, path in dirs.items()}
        before = extract_stages(args.before, tmp / "before")
        workers = {"before": Worker(before, args.threads), "after": Worker(ROOT, args.threads)}
        results: dict[tuple, list[dict]] = {}
        try:
            for _ in range(args.reps):
                for model in args.models:
                    for measure in ("rtf", "first_audio", "batch"):
                        for variant, options in VARIANTS.items():
                            side = workers["before" if variant == "before" else "after"]
                            model_dir = before_dirs[model] if variant == "before" else dirs[model]
                            results.setdefault((model, variant, measure), []).append(
                                side.measure(model_dir=str(model_dir), options=options, measure=measure))
        finally:
            for w in workers.values():
                w.close()
    print(f"before = {args.before}, after = this checkout; {args.threads} threads; median of {args.reps}; "
          f"forced lengths: the ten-word sentence {results[(args.models[0], 'before', 'rtf')][0]['audio_seconds']:.2f} s, "
          f"the batch of {len(BATCH)} {results[(args.models[0], 'before', 'batch')][0]['audio_seconds']:.1f} s of audio")
    print(f"{'model':<6} {'variant':<14} {'RTF':>6} {'first audio':>12} {'batch of 8':>12} "
          f"{'RTF ratio':>10} {'first ratio':>12} {'batch ratio':>12}")
    for model in args.models:
        def median(variant: str, measure: str, per_audio_second: bool) -> float:
            runs = results[(model, variant, measure)]
            return statistics.median(r["seconds"] / r["audio_seconds"] if per_audio_second else r["seconds"]
                                     for r in runs)
        base = {m: median("before", m, m != "first_audio") for m in ("rtf", "first_audio", "batch")}
        for variant in VARIANTS:
            rtf, first, batch = (median(variant, m, m != "first_audio") for m in ("rtf", "first_audio", "batch"))
            print(f"{model:<6} {variant:<14} {rtf:>6.3f} {first * 1000:>9.0f} ms {1 / batch:>10.1f}x "
                  f"{base['rtf'] / rtf:>9.2f}x {base['first_audio'] / first:>11.2f}x {base['batch'] / batch:>11.2f}x")
    print(f"RTF = wall time of say() over the audio's duration (text, LM and codec); first audio = say_streaming "
          f"until its first non-empty chunk; batch of 8 = seconds of audio per second of speak() over 8 sentences; "
          f"ratios = before / variant (above 1 is faster)")
    print(f"goals (issue 14, 26m on 2 CPU cores): RTF <= {GOAL_RTF}, first audio <= {GOAL_FIRST_AUDIO_S * 1000:.0f} ms")


if __name__ == "__main__":
    main()
