"""Decoding speed of the LM with and without the KV cache, for 10 s and 30 s of speech at 75 codes/s.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_decode.py                 # tiny and 26m, on the CPU
    PYTHONPATH=. .venv/bin/python benchmarks/bench_decode.py --threads 1     # steadier on a shared machine
    PYTHONPATH=. .venv/bin/python benchmarks/bench_decode.py --presets 26m --device cuda --exact

With the cache the real `generate` runs (sampling, RAS and all) with EOS held off until the target length.
Without it every step re-reads the whole sequence, so a 30 s utterance takes hours on a CPU: by default
its time is the sum over all steps of a full forward pass, timed at a few evenly spaced lengths and
interpolated (it leaves out the per-step sampling, which favours the uncached side a little).
`--exact` runs the uncached `generate` instead. Weights are random: speed does not depend on them.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from stages.config.model import GenerationConfig, load_model_config
from stages.lm.generate import Request, generate
from stages.lm.model import MiniMindTTS
from stages.lm.size import count_parameters
from stages.lm.vocab import Vocab

PRESETS = Path(__file__).resolve().parents[1] / "configs" / "model"
CODES_PER_SECOND = 75
TEXT_TOKENS_PER_SECOND = 4   # about what a few-thousand-piece sentencepiece gives for read English


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed_generate(model: MiniMindTTS, vocab: Vocab, request: Request, n_codes: int, use_cache: bool,
                   device: torch.device) -> float:
    ratio = n_codes / len(request.text)   # min = max: exactly n_codes codes, whatever the weights say
    config = GenerationConfig(min_len_ratio=ratio, max_len_ratio=ratio)
    synchronize(device)
    start = time.perf_counter()
    result = generate(model, vocab, [request], config, use_cache=use_cache)[0]
    synchronize(device)
    assert len(result.codes) == n_codes, (len(result.codes), n_codes)
    return time.perf_counter() - start


def estimated_uncached(model: MiniMindTTS, vocab: Vocab, request: Request, n_codes: int, device: torch.device,
                       points: int = 6) -> float:
    """Seconds to decode n_codes without a cache: full forwards at `points` lengths, integrated over steps."""
    prefix = len(vocab.prompt(request.text))
    lengths = np.linspace(prefix, prefix + n_codes - 1, points).round().astype(int)
    seconds = []
    with torch.no_grad():
        for length in lengths:
            ids = torch.randint(vocab.speech_offset, vocab.size, (1, int(length)), device=device)
            model(ids)  # warm the allocator for this shape
            synchronize(device)
            start = time.perf_counter()
            model(ids)
            synchronize(device)
            seconds.append(time.perf_counter() - start)
    every_step = np.interp(np.arange(prefix, prefix + n_codes), lengths, seconds)
    return float(every_step.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["tiny", "26m"])
    parser.add_argument("--seconds", nargs="+", type=float, default=[10, 30])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-text", type=int, default=2000, help="sentencepiece vocabulary size assumed")
    parser.add_argument("--exact", action="store_true", help="run the uncached decoder instead of estimating it")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads; 1 is steadier when other jobs share the cores (no spinning "
                             "OpenMP threads waiting for a descheduled sibling)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    vocab = Vocab(n_text=args.n_text)

    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"device {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f"; load average {os.getloadavg()[0]:.1f} (other work on the machine slows every figure)")
    print(f"{'preset':<7} {'params':>8} {'speech':>7} {'codes':>6} {'cached tok/s':>13} "
          f"{'uncached tok/s':>15} {'speed-up':>9} {'LM RTF':>7}")
    for preset in args.presets:
        torch.manual_seed(0)
        model = MiniMindTTS(load_model_config(PRESETS / f"{preset}.yaml"), vocab.size).to(device).eval()
        timed_generate(model, vocab, Request(tuple(range(8))), 20, True, device)   # warm-up
        for seconds in args.seconds:
            n_codes = int(seconds * CODES_PER_SECOND)
            request = Request(tuple(range(int(seconds * TEXT_TOKENS_PER_SECOND))))
            cached = timed_generate(model, vocab, request, n_codes, True, device)
            if args.exact:
                uncached, note = timed_generate(model, vocab, request, n_codes, False, device), ""
            else:
                uncached, note = estimated_uncached(model, vocab, request, n_codes, device), " (est.)"
            print(f"{preset:<7} {count_parameters(model) / 1e6:>7.1f}M {seconds:>6.0f}s {n_codes:>6} "
                  f"{n_codes / cached:>13.1f} {n_codes / uncached:>9.1f}{note:<6} {uncached / cached:>8.1f}x "
                  f"{cached / seconds:>7.3f}")
    print("speed-up = uncached time / cached time; LM RTF = cached decoding time / speech duration "
          "(codec decoding not included)")


if __name__ == "__main__":
    main()
