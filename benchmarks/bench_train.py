"""Benchmark: the training stage's DeepSpeed step vs a plain PyTorch loop (same model, batches, dtype, optimizer).

    .venv/bin/python benchmarks/bench_train.py [--preset tiny] [--steps 20] [--zero-stage 2] \
        [--batch-tokens 6000] [--threads 2] [--device cpu|cuda] [--peak-tflops 989]

Builds demo-like batches once (2-8 s utterances at 75 codes/s with 10-40 text tokens, bucketed the way the
stage does), then trains two copies of one initial model on the same batches:
(a) a plain loop: forward, backward, clip_grad_norm_, torch AdamW + the stage's warm-up/cosine schedule;
(b) the stage's own `train_step` on a DeepSpeed ZeRO engine built by `build_engine`, in a one-process group.
The two alternate step by step on the same batch, so a busy shared machine slows both alike. Prints real
(non-padding) tokens per second of each, their ratio (goal >= 0.95), and how far their losses drift apart
(they do the same arithmetic, so little). With --peak-tflops (the device's dense peak), also MFU.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from machine import describe  # noqa: E402

from stages.config import from_dict  # noqa: E402
from stages.config.model import load_model_config  # noqa: E402
from stages.lm.model import MiniMindTTS  # noqa: E402
from stages.lm.size import parameter_count  # noqa: E402
from stages.lm.vocab import Vocab, collate  # noqa: E402
from stages.config.pretrain import TrainConfig  # noqa: E402
from stages.train.batching import nonpad_share, plan_epoch  # noqa: E402
from stages.train.data import Batch  # noqa: E402
from stages.train.distributed import init_distributed  # noqa: E402
from stages.train.engine import build_engine, optimizer_and_schedule, resolve_precision, train_step  # noqa: E402

SPEAKERS = ("awb", "rms", "slt", "kal16", "cmn_m3", "cmn_f3")   # the demo corpus's voices


def demo_like_batches(vocab: Vocab, utterances: int, batch_tokens: int, seed: int = 0) -> tuple[list[Batch], float]:
    """Batches of random text/codes with demo-like lengths, planned as the stage plans them; and their non-pad share."""
    rng = np.random.default_rng(seed)
    codes = (np.clip(rng.lognormal(np.log(4.0), 0.35, utterances), 1.5, 9.0) * 75).astype(int)
    texts = rng.integers(10, 40, utterances)
    lengths = codes + texts + 3
    units = [np.arange(i, min(i + 256, utterances)) for i in range(0, utterances, 256)]
    plan = plan_epoch(units, lengths, 0, seed, 1000, 500, batch_tokens)
    batches = []
    for members in plan:
        examples = [vocab.example(rng.integers(0, vocab.n_text, texts[i]).tolist(),
                                  rng.integers(0, vocab.n_speech, codes[i]).tolist(), SPEAKERS[i % len(SPEAKERS)])
                    for i in members]
        tensors = collate(examples)
        batches.append(Batch(tensors["input_ids"], tensors["targets"], [str(i) for i in members],
                             [len(ids) for ids, _ in examples]))
    return batches, nonpad_share(plan, lengths)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", help="configs/model/<preset>.yaml")
    parser.add_argument("--steps", type=int, default=20, help="timed steps of each method")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps of each method first")
    parser.add_argument("--zero-stage", type=int, default=2, choices=(1, 2, 3))
    parser.add_argument("--batch-tokens", type=int, default=6000)
    parser.add_argument("--utterances", type=int, default=1200)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak for MFU (H100 bf16 dense: 989)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    dist = init_distributed()
    device = dist.device
    config = from_dict(TrainConfig, {"model": args.preset, "zero_stage": args.zero_stage, "precision": args.precision,
                                     "batch_tokens": args.batch_tokens, "warmup_steps": 5}, "bench")
    precision = resolve_precision(config.precision, device)
    vocab = Vocab(n_text=1000, n_speech=4096, speakers=SPEAKERS)
    model_config = load_model_config(config.model_preset)
    batches, share = demo_like_batches(vocab, args.utterances, args.batch_tokens)
    total_steps = args.warmup + args.steps

    torch.manual_seed(0)
    plain = MiniMindTTS(model_config, vocab.size).to(device)
    staged = copy.deepcopy(plain)
    optimizer, schedule = optimizer_and_schedule(plain, config, total_steps)
    engine = build_engine(staged, config, dist.world_size, precision, total_steps)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    plain.to(dtype)  # DeepSpeed casts its copy to bf16 the same way (keeping fp32 master weights in the optimizer)

    def plain_step(batch: Batch) -> float:
        out = plain(batch.input_ids.to(device), targets=batch.targets.to(device))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(plain.parameters(), config.grad_clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        return out.ce_loss.item()

    def staged_step(batch: Batch) -> float:
        return train_step(engine, [batch], device).loss

    methods = {"plain PyTorch": plain_step, f"DeepSpeed ZeRO-{args.zero_stage} stage": staged_step}
    losses: dict[str, list[float]] = {name: [] for name in methods}
    seconds: dict[str, list[float]] = {name: [] for name in methods}

    def timed(name: str, batch: Batch) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        losses[name].append(methods[name](batch))
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    # step by step, alternating which method goes first: on a shared machine both see the same load
    for k in range(args.warmup + args.steps):
        batch = batches[k % len(batches)]
        order = list(methods) if k % 2 == 0 else list(reversed(methods))
        for name in order:
            elapsed = timed(name, batch)
            if k >= args.warmup:
                seconds[name].append(elapsed)
    timed_tokens = [batches[k % len(batches)].real_tokens for k in range(args.warmup, args.warmup + args.steps)]

    print(describe())
    n_params = parameter_count(model_config, vocab.size)
    print(f"model {args.preset} ({n_params['total'] / 1e6:.2f}M parameters), vocab {vocab.size}, {precision} on "
          f"{device}; {len(batches)} batches of <= {args.batch_tokens} padded tokens, non-padding share {share:.3f}; "
          f"{args.steps} timed steps of each after {args.warmup} warm-up steps, alternating step by step")
    rates = {name: sum(timed_tokens) / sum(t) for name, t in seconds.items()}
    for name, rate in rates.items():
        line = f"  {name:<28} {rate:10.0f} tokens/s"
        if args.peak_tflops:
            # 6 x parameters per token for the matmuls, plus attention's 12 x layers x dim x mean context
            mean_len = float(np.mean([max(b.lengths) for b in batches]))
            flops = 6 * n_params["active"] + 12 * model_config.n_layers * model_config.dim * mean_len / 2
            line += f"   MFU {rate * flops / (args.peak_tflops * 1e12):.1%}"
        print(line)
    plain_name, staged_name = list(methods)
    paired = statistics.median(p / d for p, d in zip(seconds[plain_name], seconds[staged_name]))
    print(f"  ratio DeepSpeed / plain: {rates[staged_name] / rates[plain_name]:.3f} overall, {paired:.3f} median of "
          "the per-step ratios   (goal >= 0.95)")
    drift = max(abs(a - b) for a, b in zip(losses[plain_name], losses[staged_name]))
    print(f"  losses: plain {losses[plain_name][0]:.4f} -> {losses[plain_name][-1]:.4f}, DeepSpeed "
          f"{losses[staged_name][0]:.4f} -> {losses[staged_name][-1]:.4f}; largest difference at one step {drift:.2e}")


if __name__ == "__main__":
    main()
