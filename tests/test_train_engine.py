"""One optimizer step weighs every target the same, however its micro-batches are cut."""

from __future__ import annotations

import copy

import torch

from stages.config.model import ModelConfig
from stages.config.pretrain import TrainConfig
from stages.lm.model import MiniMindTTS
from stages.lm.vocab import IGNORE_INDEX, PAD
from stages.train.data import Batch
from stages.train.distributed import init_distributed
from stages.train.engine import build_engine, global_counts, train_step

VOCAB_SIZE = 80


def batch(rows: list[tuple[int, int]], length: int, seed: int) -> Batch:
    """Rows of (real tokens, supervised targets at their end), right-padded to `length`."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((len(rows), length), PAD)
    targets = torch.full((len(rows), length), IGNORE_INDEX)
    for r, (real, supervised) in enumerate(rows):
        ids[r, :real] = torch.randint(4, VOCAB_SIZE, (real,), generator=g)
        targets[r, real - supervised:real] = torch.randint(4, VOCAB_SIZE, (supervised,), generator=g)
    return Batch(ids, targets, [f"u{seed}-{r}" for r in range(len(rows))], [real for real, _ in rows])


def merged(a: Batch, b: Batch) -> Batch:
    length = max(a.input_ids.shape[1], b.input_ids.shape[1])

    def pad(t: torch.Tensor, value: int) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, length - t.shape[1]), value=value)

    return Batch(torch.cat([pad(a.input_ids, PAD), pad(b.input_ids, PAD)]),
                 torch.cat([pad(a.targets, IGNORE_INDEX), pad(b.targets, IGNORE_INDEX)]),
                 a.utt_ids + b.utt_ids, a.lengths + b.lengths)


def summed_gradients(model: MiniMindTTS, batches: list[Batch]) -> dict[str, torch.Tensor]:
    """The gradients one train_step feeds the optimizer, summed over its micro-batches (as DeepSpeed does)."""
    dist = init_distributed()
    config = TrainConfig(grad_accum=len(batches), warmup_steps=0, grad_clip=0.0, max_steps=10)
    engine = build_engine(model, config, world_size=1, precision="fp32", total_steps=10)
    seen: dict[str, torch.Tensor] = {}
    for name, p in engine.module.named_parameters():
        p.register_hook(lambda g, name=name: seen.__setitem__(name, seen.get(name, 0) + g.detach().clone()))
    train_step(engine, batches, dist.device, dist)
    return seen


def test_micro_batches_of_unequal_size_give_the_gradient_of_one_batch():
    torch.manual_seed(0)
    model = MiniMindTTS(ModelConfig(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=64, max_seq_len=64),
                        VOCAB_SIZE)
    small = batch([(6, 3)], 6, seed=1)                          # 3 targets
    large = batch([(12, 9), (10, 8), (11, 9), (9, 6)], 12, seed=2)  # 32 targets
    assert global_counts([small, large], None)[0] == 35
    split = summed_gradients(copy.deepcopy(model), [small, large])
    whole = summed_gradients(copy.deepcopy(model), [merged(small, large)])
    assert split.keys() == whole.keys()
    for name in whole:
        torch.testing.assert_close(split[name], whole[name], rtol=1e-4, atol=1e-6, msg=name)
    # The weighting this replaced, each micro-batch's own mean averaged over micro-batches, gives the small
    # batch's 3 targets half the step: the test tells it apart from the step over one batch.
    alone = [summed_gradients(copy.deepcopy(model), [b]) for b in (small, large)]
    per_batch_means = {name: (alone[0][name] + alone[1][name]) / 2 for name in whole}
    gap = max(float((per_batch_means[n] - whole[n]).norm() / whole[n].norm()) for n in whole if whole[n].norm() > 0)
    assert gap > 0.1
