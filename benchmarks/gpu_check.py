"""The GPU check (issue 13): the pipeline's throughput figures on one GPU, as JSON and a log, in one command.

    python3 benchmarks/gpu_check.py --out results/gpu_check        # one H100/H200: sized for 3-5 minutes (< 8)
    .venv/bin/python benchmarks/gpu_check.py --smoke --out /tmp/gc  # the CPU, tiny presets, seconds (tests/test_gpu_check.py)

Writes gpu_check.json (every figure, and each section's error if it failed; rewritten after each section,
so a run stopped early keeps what it measured) and gpu_check.log. Goals are printed beside the figures.
- codec_training: stage train_codec's own step (CodecTrainer.train_step) per second, in bf16, for the demo
  preset as configs/demo_from_scratch.yaml trains it and the full preset as configs/scale/1gpu.yaml does
  (GAN from step 0 with the mpd, mrd and dac critics); full also in fp32, for the speed-up.
- extraction: stage extract_codes' encode_clips in x real time, length-bucketed batches against one clip at a
  time, on clips cut from the ARCTIC fixture sentences, for the shipped demo codec and the full-size codec
  the section above trained; whether the codes are equal batched against single and GPU against CPU.
- pretrain: the 104m LM under DeepSpeed ZeRO-2 in bf16 through the stage's build_engine and train_step, on
  bench_train's demo-like batches of 32k tokens: real tokens/s and MFU, model FLOPs over the GPU's peak
  dense bf16 FLOP/s looked up by its name (--peak-tflops to give it). Model FLOPs: 6 N a real token (N the
  active parameters, the tied output head counted once) plus causal attention's 6 L d n^2 a sequence of n
  tokens (L layers, d the query width). Without DeepSpeed, bench_train's plain PyTorch loop, labelled so.
- generation: the Synthesizer on random-weight 26m and 104m LMs (sentence lengths forced, so every run
  decodes the same number of codes) with the full-size codec: LM codes/s for one sentence and a batch of 8,
  the RTF of say() and the latency of say_streaming()'s first audio.

On a machine with torch but not this project's other packages (the lent GPU machine has Python 3.12 and
torch 2.11, no deepspeed, soundfile, num2words or cn2an), carry them as wheels:
    .venv/bin/python benchmarks/gpu_check.py --fetch-wheels .whl   # here: downloads them, builds deepspeed's
    echo /.whl/ >> .git/info/exclude                               # then name .whl in the run's `carry`
and there:
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl && export PYTHONPATH=/tmp/site && PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py --out $OUT
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import wave
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from machine import describe  # noqa: E402

log = logging.getLogger("gpu_check")
GOALS = {"pretrain_mfu": 0.40, "extraction_x_realtime": 3000.0, "first_chunk_ms": 150.0}   # issue 13
# Dense bf16 tensor-core peaks (no sparsity), TFLOP/s, by a piece of torch.cuda.get_device_name(); first match wins.
# None: not known here, so MFU is left out unless --peak-tflops gives it.
PEAK_BF16_TFLOPS = [("H200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H800", 989.0),
                    ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L40", 181.0),
                    ("A10G", None), ("A10", 125.0), ("L4", 121.0)]
# What the lent GPU machine lacks (packages beside torch that the stages import), pinned to this checkout's versions.
WHEELS = ["soundfile", "cffi", "pycparser", "num2words", "cn2an", "proces", "deepspeed", "hjson", "pydantic",
          "pydantic-core", "annotated-types", "typing-inspection"]
SOURCE_ONLY = {"deepspeed"}   # an sdist on PyPI: built into a pure-Python wheel (its ops compile when first used)
ARCTIC = ROOT / "tests" / "fixtures" / "arctic"
DEMO_CODEC = ROOT / "assets" / "codec" / "demo-75hz.yaml", ROOT / "assets" / "codec" / "demo-75hz.ckpt"


def fetch_wheels(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    platforms = [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64",
                                             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")]
    for name in WHEELS:
        spec = f"{name}=={metadata.version(name)}"
        if name in SOURCE_ONLY:
            command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(folder), spec]
        else:
            command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                       "--python-version=3.12", "--implementation=cp", *platforms, "-d", str(folder), spec]
        print("+", " ".join(command), flush=True)
        subprocess.run(command, check=True, env={**os.environ, "DS_BUILD_OPS": "0"})


# ---- shared pieces ----

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def speech_tape(sample_rate: int) -> np.ndarray:
    """The two ARCTIC sentences of the test fixtures (7 s of real speech), resampled and put back to back."""
    import torchaudio

    pieces = []
    for path in sorted(ARCTIC.glob("*.wav")):
        with wave.open(str(path)) as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
            rate = w.getframerate()
        pieces.append(torchaudio.functional.resample(torch.from_numpy(pcm), rate, sample_rate).numpy())
    return np.concatenate(pieces)


def cut_clips(tape: np.ndarray, count: int, seconds: tuple[float, float], sample_rate: int,
              seed: int = 0) -> list[np.ndarray]:
    """`count` clips of random lengths, offsets and gains cut from the tape repeated."""
    rng = np.random.default_rng(seed)
    tiled = np.tile(tape, math.ceil(seconds[1] * sample_rate / len(tape)) + 1)
    clips = []
    for _ in range(count):
        n = int(rng.uniform(*seconds) * sample_rate)
        start = int(rng.integers(0, len(tiled) - n))
        clips.append((tiled[start: start + n] * rng.uniform(0.3, 1.0)).astype(np.float32))
    return clips


def timed(device: torch.device, fn, reps: int) -> tuple[float, object]:
    """Median seconds of `reps` calls of fn() (the GPU synchronised around each), and the last result."""
    times, result = [], None
    for _ in range(reps):
        sync(device)
        start = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


# ---- the sections ----

def codec_training(device: torch.device, smoke: bool, work: Path) -> dict:
    from stages.codec.trainer import CodecTrainer
    from stages.config import from_dict
    from stages.config.codec import CodecTrainConfig

    bench = {"vq_warmup_steps": 2, "checkpoint_every": 10**6}   # k-means at step 2, within the untimed steps
    if smoke:
        bench.update(preset="tiny", batch_size=2, segment_seconds=0.4, codebook_size=64, kmeans_frames=64,
                     critic_width=1 / 16)
    runs = {"demo": (ROOT / "configs/demo_from_scratch.yaml", ["bf16"]), "full": (ROOT / "configs/scale/1gpu.yaml",
                                                                                  ["bf16", "fp32"])}
    clips = cut_clips(speech_tape(24000), 8 if smoke else 64, (1.0, 2.0) if smoke else (4.0, 10.0), 24000, seed=1)
    figures = {}
    for name, (source, precisions) in runs.items():
        section = yaml.safe_load(source.read_text())["codec"]["train"]
        for precision in precisions:
            config = from_dict(CodecTrainConfig, {**section, **bench, "precision": precision}, f"{source.name} codec.train")
            trainer = CodecTrainer(config, device)
            warmup, steps = config.vq_warmup_steps + 2, (2 if smoke else {"demo": 40, "full": 15}[name])
            if precision == "fp32":
                steps = 2 if smoke else 6
            for _ in range(warmup):   # LSUV, the quantizer bypassed, k-means, the first step with codes
                trainer.train_step(clips)
            seconds, logs = timed(device, lambda: [trainer.train_step(clips) for _ in range(steps)][-1], 1)
            run = {"preset": config.preset, "precision": trainer.precision, "steps_per_s": steps / seconds,
                   "timed_steps": steps, "batch_size": config.batch_size, "segment_seconds": config.segment_seconds,
                   "critics": list(config.critics), "gan": config.gan_start_step <= warmup,
                   "peak_memory_gib": peak_gib(device), "mel_l1": logs["generator/mel_l1"]}
            log.info("train_codec %s in %s: %.2f steps/s (%s)", name, trainer.precision, run["steps_per_s"], run)
            if precision == "bf16":
                figures[name] = run
                if name == "full":
                    trainer.export(work / "codec_full.ckpt", work / "codec_full.yaml")   # for the sections below
            else:
                figures[name]["fp32_steps_per_s"] = run["steps_per_s"]
                figures[name]["bf16_speedup"] = figures[name]["steps_per_s"] / run["steps_per_s"]
            del trainer
            free(device)
    return figures


def extraction(device: torch.device, smoke: bool, work: Path) -> dict:
    from stages.codec import load_codec
    from stages.extract_codes import encode_clips

    codecs = {"demo": DEMO_CODEC, "full": (work / "codec_full.yaml", work / "codec_full.ckpt")}
    clips = cut_clips(speech_tape(24000), 12 if smoke else 600, (1.0, 3.0) if smoke else (2.0, 10.0), 24000)
    n_cpu = 4 if smoke else 30     # the CPU encodes a share only: it is ~100x slower
    audio_seconds = sum(map(len, clips)) / 24000
    cpu = torch.device("cpu")
    figures = {}
    for name, (codec_yaml, codec_ckpt) in codecs.items():
        if not codec_ckpt.exists():
            figures[name] = {"skipped": f"no {codec_ckpt.name}: the codec_training section did not run"}
            continue
        codec = load_codec(codec_yaml, codec_ckpt, device=device)
        encode_clips(codec, clips[:8], 60.0, device, progress=False)   # warm-up: kernels, allocator
        batched_s, batched = timed(device, lambda: encode_clips(codec, clips, 60.0, device, progress=False),
                                   1 if smoke else 3)
        # one call a clip: a tiny batch_seconds would still group clips short enough to fit the longest one
        single_s, single = timed(device, lambda: [encode_clips(codec, [clip], 0.0, device, progress=False)[0]
                                                  for clip in clips], 1)
        on_cpu = encode_clips(load_codec(codec_yaml, codec_ckpt, device=cpu), clips[:n_cpu], 60.0, cpu, progress=False)
        agree = lambda a, b: float(np.mean(np.concatenate([x == y for x, y in zip(a, b)])))  # noqa: E731
        figures[name] = {
            "clips": len(clips), "audio_seconds": audio_seconds, "frame_rate": codec.frame_rate,
            "batched_x_realtime": audio_seconds / batched_s, "single_x_realtime": audio_seconds / single_s,
            "batched_over_single": single_s / batched_s,
            "codes_equal_batched_vs_single": all(np.array_equal(a, b) for a, b in zip(batched, single)),
            "code_agreement_batched_vs_single": agree(batched, single),
            "devices_compared": f"{device.type} vs cpu", "cpu_clips": n_cpu,
            "codes_equal_device_vs_cpu": all(np.array_equal(a, b) for a, b in zip(batched, on_cpu)),
            "code_agreement_device_vs_cpu": agree(batched[:n_cpu], on_cpu)}
        log.info("extract_codes %s: %s", name, figures[name])
        del codec
        free(device)
    return figures


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    if given or device.type != "cuda":
        return given
    name = torch.cuda.get_device_name(device)
    return next((tflops for piece, tflops in PEAK_BF16_TFLOPS if piece in name), None)


def pretrain(device: torch.device, smoke: bool, given_peak: float | None) -> dict:
    from bench_train import SPEAKERS, demo_like_batches
    from stages.config import from_dict
    from stages.config.model import load_model_config
    from stages.config.pretrain import TrainConfig
    from stages.lm.model import MiniMindTTS
    from stages.lm.size import parameter_count
    from stages.lm.vocab import Vocab
    from stages.train.engine import build_engine, optimizer_and_schedule, resolve_precision, train_step

    preset, batch_tokens, utterances = ("tiny", 1500, 40) if smoke else ("104m", 32000, 1200)
    config = from_dict(TrainConfig, {"model": preset, "zero_stage": 2, "batch_tokens": batch_tokens, "warmup_steps": 2,
                                     "precision": "bf16" if device.type == "cuda" else "auto"}, "gpu_check.pretrain")
    vocab = Vocab(n_text=1000, n_speech=4096, speakers=SPEAKERS)
    model_config = load_model_config(config.model_preset)
    batches, _ = demo_like_batches(vocab, utterances, batch_tokens)
    warmup, steps = (1, 2) if smoke else (3, 20)
    try:
        import deepspeed
        from stages.train.distributed import init_distributed

        device = init_distributed().device
        engine_name = f"DeepSpeed {deepspeed.__version__} ZeRO-2"
    except ImportError as e:
        log.warning("DeepSpeed cannot be imported (%s): timing bench_train's plain PyTorch loop instead, NOT the "
                    "stage's step; carry the wheels (see this file's header) to time the stage", e)
        engine_name = "plain PyTorch (DeepSpeed missing)"
    precision = resolve_precision(config.precision, device)
    torch.manual_seed(0)
    model = MiniMindTTS(model_config, vocab.size).to(device)
    total = warmup + steps
    # each step returns its loss unread, as the training loop leaves it between log steps: no per-step sync
    if engine_name.startswith("DeepSpeed"):
        engine = build_engine(model, config, 1, precision, total)
        step = lambda batch: train_step(engine, [batch], device)  # noqa: E731
        read = lambda sums: sums.loss  # noqa: E731
    else:
        model.to(torch.bfloat16 if precision == "bf16" else torch.float32)
        optimizer, schedule = optimizer_and_schedule(model, config, total)
        read = lambda loss: float(loss)  # noqa: E731

        def step(batch) -> torch.Tensor:
            output = model(batch.input_ids.to(device), targets=batch.targets.to(device))
            output.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            return output.ce_loss.detach()
    for k in range(warmup):
        read(step(batches[k % len(batches)]))
    timed_batches = [batches[(warmup + k) % len(batches)] for k in range(steps)]
    seconds, last = timed(device, lambda: [step(b) for b in timed_batches][-1], 1)
    loss = read(last)
    active = parameter_count(model_config, vocab.size)["active"]
    attention_width = model_config.n_heads * model_config.head_dim
    tokens = sum(b.real_tokens for b in timed_batches)
    flops = sum(6 * active * b.real_tokens + 12 * model_config.n_layers * attention_width * sum(n * n / 2 for n in b.lengths)
                for b in timed_batches)
    peak = peak_tflops(device, given_peak)
    figures = {"preset": preset, "engine": engine_name, "precision": precision, "parameters_active": active,
               "batch_tokens": batch_tokens, "timed_steps": steps, "tokens_per_s": tokens / seconds,
               "model_tflops_per_s": flops / seconds / 1e12, "peak_tflops": peak,
               "mfu": flops / seconds / (peak * 1e12) if peak else None, "loss": loss, "peak_memory_gib": peak_gib(device)}
    log.info("pretrain %s: %s", preset, figures)
    return figures


def random_models(folder: Path, presets: dict[str, str], codec_yaml: Path, codec_ckpt: Path,
                  seconds_per_word: float) -> dict[str, Path]:
    """Random-weight LMs saved as training saves them, a tokenizer fitted on the sentences, lengths forced."""
    from bench_synthesis import BATCH, DEMO_TEXT_PIECES, TEN_WORDS
    from stages.codec import codec_id, load_codec
    from stages.common.tables import MANIFEST, write_table
    from stages.config.model import GenerationConfig, load_model_config
    from stages.config.tokenizer import TokenizerConfig
    from stages.fit_tokenizer import fit_tokenizer
    from stages.lm.export import save_model
    from stages.lm.model import MiniMindTTS
    from stages.lm.vocab import Vocab
    from stages.text.tokenizer import TextTokenizer

    rows = [{"utt_id": f"u{i}", "speaker": "a", "language": "en", "text": t, "split": "train", "source": "x.wav",
             "duration": 1.0, "source_sample_rate": 24000, "channels": 1} for i, t in enumerate([TEN_WORDS, *BATCH])]
    write_table(rows, MANIFEST, folder / "manifest.parquet")
    fit_tokenizer(folder / "manifest.parquet", folder / "tokenizer", TokenizerConfig(input="text", vocab_size=120))
    tokenizer = TextTokenizer.load(folder / "tokenizer")
    codec = load_codec(codec_yaml, codec_ckpt)
    ratio = len(TEN_WORDS.split()) * seconds_per_word * codec.frame_rate / len(tokenizer.encode(TEN_WORDS, "en"))
    generation = GenerationConfig(min_len_ratio=ratio, max_len_ratio=ratio)
    vocab = Vocab(n_text=max(DEMO_TEXT_PIECES, tokenizer.vocab_size), n_speech=codec.arch.codebook_size)
    dirs = {}
    for slot, preset in presets.items():
        torch.manual_seed(0)
        model = MiniMindTTS(load_model_config(ROOT / "configs" / "model" / f"{preset}.yaml"), vocab.size)
        dirs[slot] = save_model(model, vocab, generation, folder / slot,
                                extra_files=sorted((folder / "tokenizer").iterdir()))
        (dirs[slot] / "codec.json").write_text(json.dumps({"codec_id": codec_id(codec)}))
    return dirs


def generation(device: torch.device, smoke: bool, work: Path) -> dict:
    from bench_synthesis import BATCH, SECONDS_PER_WORD, TEN_WORDS
    from stages.lm.generate import generate
    from stages.runtime import Synthesizer

    codec_yaml, codec_ckpt = work / "codec_full.yaml", work / "codec_full.ckpt"
    codec_name = "the one codec_training trained with the full config (the tiny preset under --smoke)"
    if not codec_ckpt.exists():
        (codec_yaml, codec_ckpt), codec_name = DEMO_CODEC, "demo (codec_training did not run)"
    presets = {"26m": "tiny", "104m": "tiny"} if smoke else {"26m": "26m", "104m": "104m"}
    reps = 1 if smoke else 3
    figures = {"codec": codec_name}
    dirs = random_models(work, presets, codec_yaml, codec_ckpt, 0.05 if smoke else SECONDS_PER_WORD)
    for slot, model_dir in dirs.items():
        tts = Synthesizer(model_dir, codec_yaml, codec_ckpt, device=device.type)
        tts.say("Warm up.")
        one, eight = [tts.request(TEN_WORDS)], [tts.request(text) for text in BATCH]

        @torch.inference_mode()   # as Synthesizer.speak runs it
        def lm(requests: list) -> list:
            return generate(tts.model, tts.vocab, requests, tts.generation)

        lm_s, generated = timed(device, lambda: lm(one), reps)
        batch_s, batch = timed(device, lambda: lm(eight), reps)
        say_s, speech = timed(device, lambda: tts.say(TEN_WORDS), reps)

        def first_chunk() -> int:
            chunks = tts.say_streaming(TEN_WORDS)
            samples = len(next(chunk for chunk in chunks if len(chunk)))
            chunks.close()
            return samples

        first_s, _ = timed(device, first_chunk, reps)
        figures[slot] = {"preset": presets[slot], "dtype": str(next(tts.model.parameters()).dtype),
                         "codes_per_sentence": len(generated[0].codes),
                         "tokens_per_s": len(generated[0].codes) / lm_s,
                         "batch8_tokens_per_s": sum(len(g.codes) for g in batch) / batch_s,
                         "rtf": say_s / (len(speech.audio) / tts.sample_rate), "first_chunk_ms": 1000 * first_s}
        log.info("generation %s: %s", slot, figures[slot])
        del tts
        free(device)
    return figures


# ---- the report ----

def goal_lines(results: dict) -> list[tuple[str, object, str, object]]:
    """(figure, value, goal, met) for each goal the results can be held against."""
    get = lambda *keys: _dig(results, keys)  # noqa: E731
    lines = [("pretrain 104m MFU", get("pretrain", "mfu"), f">= {GOALS['pretrain_mfu']:.0%}",
              _meets(get("pretrain", "mfu"), GOALS["pretrain_mfu"], above=True))]
    for codec in ("demo", "full"):
        value = get("extraction", codec, "batched_x_realtime")
        lines.append((f"extract_codes {codec} codec, batched (x real time)", value,
                      f">= {GOALS['extraction_x_realtime']:,.0f}", _meets(value, GOALS["extraction_x_realtime"], True)))
    for slot in ("26m", "104m"):
        value = get("generation", slot, "first_chunk_ms")
        lines.append((f"first streamed chunk {slot} (ms)", value, f"<= {GOALS['first_chunk_ms']:.0f}",
                      _meets(value, GOALS["first_chunk_ms"], above=False)))
    return lines


def _dig(tree: dict, keys: tuple) -> object:
    for key in keys:
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def _meets(value: object, goal: float, above: bool) -> bool | None:
    if not isinstance(value, (int, float)):
        return None
    return value >= goal if above else value <= goal


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "gpu_check", help="folder for the JSON and log")
    parser.add_argument("--smoke", action="store_true", help="tiny presets, a few steps, on the CPU: the code paths in seconds")
    parser.add_argument("--device", default=None, help="cuda (default when usable; the CPU with --smoke), cpu, cuda:1")
    parser.add_argument("--sections", nargs="+", default=["codec_training", "extraction", "pretrain", "generation"],
                        choices=["codec_training", "extraction", "pretrain", "generation"])
    parser.add_argument("--peak-tflops", type=float, default=None, help="the GPU's dense bf16 peak, if not in the table")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    parser.add_argument("--fetch-wheels", type=Path, metavar="DIR", help="download the wheels a bare torch machine lacks")
    args = parser.parse_args(argv)
    if args.fetch_wheels:
        fetch_wheels(args.fetch_wheels)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", force=True,
                        handlers=[logging.StreamHandler(sys.stdout), logging.FileHandler(args.out / "gpu_check.log", "w")])
    log.setLevel(logging.INFO)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.smoke else "cpu"))
    from stages.common.devices import nvidia_driver

    versions = {name: _version(name) for name in ("torch", "torchaudio", "deepspeed", "numpy")}
    results = {"mode": "smoke" if args.smoke else "full", "machine": describe(), "device": str(device),
               "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "driver": nvidia_driver() if device.type == "cuda" else None, "versions": versions,
               "goals": dict(GOALS), "errors": {}}
    log.info("gpu_check (%s) on %s: %s; %s", results["mode"], device, results["machine"], versions)
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="gpu_check-"))   # the trained codec and the LMs: too big to bring back
    sections = {"codec_training": lambda: codec_training(device, args.smoke, work),
                "extraction": lambda: extraction(device, args.smoke, work),
                "pretrain": lambda: pretrain(device, args.smoke, args.peak_tflops),
                "generation": lambda: generation(device, args.smoke, work)}
    for name in args.sections:
        begun = time.perf_counter()
        try:
            results[name] = sections[name]()
        except Exception:  # a failed section must not cost the others' figures on a scarce GPU
            results["errors"][name] = traceback.format_exc()
            log.error("section %s failed:\n%s", name, results["errors"][name])
        results.setdefault("section_seconds", {})[name] = time.perf_counter() - begun
        results["seconds"] = time.perf_counter() - started
        (args.out / "gpu_check.json").write_text(json.dumps(results, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    results["goals_met"] = {figure: met for figure, _, _, met in goal_lines(results)}
    (args.out / "gpu_check.json").write_text(json.dumps(results, indent=2) + "\n")
    log.info("%-52s %14s  %-10s %s", "figure", "value", "goal", "met")
    for figure, value, goal, met in goal_lines(results):
        shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
        log.info("%-52s %14s  %-10s %s", figure, shown, goal, {True: "yes", False: "NO", None: "-"}[met])
    log.info("done in %.0f s; %s", results["seconds"], args.out / "gpu_check.json")
    return 1 if results["errors"] else 0


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
