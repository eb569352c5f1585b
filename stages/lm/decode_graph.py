"""The one-token decode step as one torch.compile graph, for CPU serving (issue 14).

    step = CompiledDecodeStep(model)               # a fused model, fp32, bf16 or dynamic int8
    generate(model, vocab, requests, config, decode_step=step)

Eagerly, a 26m decode step is a few hundred small ops, and their dispatch costs as much as the matmuls.
Compiled, inductor fuses the norms, RoPE, SwiGLU and the mask into a few C++ kernels around the matmuls and
attention. Three things keep it one graph that never recompiles while a request decodes:
- the step calls `MiniMindTTS.run_layers`, not `forward`, whose host-side position check reads a tensor
  (a graph break); `__call__` runs that check before the graph;
- shapes are dynamic, so the cache's length is a symbol, not a constant that changes every step, and the
  attention reads only the keys written so far; the KV cache keeps one tensor per layer, written in place;
- dynamo cannot trace the packed weights (a TorchScript object) of torch.ao's dynamic int8 Linear, so each
  one is swapped for `Int8GraphLinear`, which calls the same kernel through the op `minimind::int8_linear`,
  opaque to the compiler. Inductor's fused arithmetic moves the logits slightly (1e-6 in fp32; int8 then rounds
  some activations the other way), and greedy codes equal eager decoding's on the trained test model.
A batch of one and a batch of more are graphs of their own, each compiled on first use (about 30 s for 26m on
2 CPU cores, seconds when inductor's on-disk cache has it); the prompt is decoded eagerly, as its length changes
with every request. The model must not be changed after the step is made (its modules are not guarded).
"""

from __future__ import annotations

import types
import weakref

import torch
from torch import Tensor, nn

from stages.lm.model import KVCache, MiniMindTTS, build_attention_mask, rope

_PACKED_WEIGHTS: dict[int, torch.ScriptObject] = {}   # slot -> packed int8 weights of one Int8GraphLinear
_LIBRARY = torch.library.Library("minimind", "DEF")
_LIBRARY.define("int8_linear(Tensor x, int slot, int out_features) -> Tensor")


def _int8_linear(x: Tensor, slot: int, out_features: int) -> Tensor:
    # reduce_range=True: what torch.ao's dynamic Linear (version 4) passes, so the codes stay the eager int8 model's
    return torch.ops.quantized.linear_dynamic(x, _PACKED_WEIGHTS[slot], True)


_LIBRARY.impl("int8_linear", _int8_linear, "CPU")


@torch.library.register_fake("minimind::int8_linear")
def _int8_linear_shape(x: Tensor, slot: int, out_features: int) -> Tensor:
    return x.new_empty(*x.shape[:-1], out_features)


class Int8GraphLinear(nn.Module):
    """A torch.ao dynamic int8 Linear whose kernel a compiled graph can call (see the module docstring)."""

    _next_slot = 0

    def __init__(self, quantized: nn.Module):
        super().__init__()
        self.in_features, self.out_features = quantized.in_features, quantized.out_features
        self.slot = Int8GraphLinear._next_slot
        Int8GraphLinear._next_slot += 1
        _PACKED_WEIGHTS[self.slot] = quantized._packed_params._packed_params
        weakref.finalize(self, _PACKED_WEIGHTS.pop, self.slot, None)

    def forward(self, x: Tensor) -> Tensor:
        return torch.ops.minimind.int8_linear(x, self.slot, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, slot={self.slot}"


def make_int8_traceable(module: nn.Module) -> int:
    """Swap every torch.ao dynamic int8 Linear under `module` for an Int8GraphLinear, in place; how many."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicInt8Linear

    swapped = 0
    for name, child in module.named_children():
        if isinstance(child, DynamicInt8Linear):
            setattr(module, name, Int8GraphLinear(child))
            swapped += 1
        else:
            swapped += make_int8_traceable(child)
    return swapped


class CompiledDecodeStep:
    """`model(ids, positions=..., cache=cache).logits` for one new token per row, as one compiled graph.

    backend: torch.compile's ("inductor"; tests pass "eager" to check the graph capture alone). The model is
    changed in place when it holds dynamic int8 linears (see `make_int8_traceable`); its outputs do not change.
    """

    def __init__(self, model: MiniMindTTS, backend: str = "inductor"):
        if model.config.is_moe:
            raise ValueError("compile: MoE models are not supported (expert routing is data-dependent, so the "
                             "step is not one graph); decode them eagerly")
        make_int8_traceable(model)
        self.model = model
        # dynamo keeps graphs, guards and its recompile limit (8) per code object: a copy of _logits' code per
        # instance keeps each model's graphs apart; the guards skip the model's modules (0.2 ms a step to check)
        logits = types.FunctionType(CompiledDecodeStep._logits.__code__.replace(), globals(), "_logits")
        self._step = torch.compile(types.MethodType(logits, self), backend=backend, fullgraph=True, dynamic=True,
                                   options={"guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe})

    def _logits(self, ids: Tensor, positions: Tensor, cache: KVCache) -> Tensor:
        # always the padding mask (all True when nothing is padded): one graph for padded and unpadded batches
        mask, causal = build_attention_mask(cache.valid[:, :cache.length + 1], cache.length, 1, ids.device)
        cos, sin = rope(positions, self.model.config.head_dim, self.model.config.rope_theta)
        logits, _, _ = self.model.run_layers(ids, cos, sin, mask, causal, cache)
        return logits

    def __call__(self, ids: Tensor, positions: Tensor, cache: KVCache) -> Tensor:
        """Logits (B, 1, V) of ids (B, 1) at positions (B, 1) after what `cache` holds, which it then also holds."""
        if ids.shape[1] != 1:
            raise ValueError(f"the compiled step decodes one token per row, not {ids.shape[1]}; run the prompt "
                             "through the model itself")
        self.model._check_positions(cache.length + 1, positions)   # outside the graph, where it reads a tensor
        logits = self._step(ids, positions, cache)
        cache.length += 1
        return logits
