"""Decoding speech codes from the LM: KV cache, sampling, length limits, batching and streaming.

    python -m stages.lm.generate results/demo/sft/model requests.jsonl codes.jsonl --batch-size 8

`requests.jsonl` holds one request per line: {"id": .., "text": [sentencepiece ids], "speaker": null,
"prompt_text": [], "prompt_codes": []}; each output line gives the id, the codes and why decoding stopped.

Every step only speech codes and EOS may be chosen. EOS is forbidden until min_len codes and forced at
max_len, both ratios of the number of text tokens, so decoding always ends and always says why. Each
request samples from its own torch.Generator seeded with `config.seed`, and batched prompts are left-padded
with per-row positions and a padding mask, so a request gives the same codes alone or in any batch.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Literal, Optional, Sequence

import torch
from torch import Tensor

from stages.config.model import GenerationConfig
from stages.lm.model import KVCache, MiniMindTTS
from stages.lm.vocab import Vocab

if TYPE_CHECKING:
    from stages.lm.decode_graph import CompiledDecodeStep

StopReason = Literal["eos", "max_length"]


@dataclass(frozen=True)
class Request:
    """What to say (sentencepiece ids), optionally as whom: a speaker token or a voice prompt to continue."""

    text: tuple[int, ...]
    speaker: Optional[str] = None
    prompt_text: tuple[int, ...] = ()    # transcript of the voice prompt, in sentencepiece ids
    prompt_codes: tuple[int, ...] = ()   # codec codes of the voice prompt


@dataclass(frozen=True)
class Generated:
    codes: list[int]          # codec codes of the new speech (the prompt's codes are not repeated)
    stop_reason: StopReason   # "eos": the model ended the utterance; "max_length": it was cut at max_len
    min_len: int              # the length limits this request ran under
    max_len: int


@dataclass(frozen=True)
class CodeChunk:
    codes: list[int]
    stop_reason: Optional[StopReason] = None   # set on the last chunk only (whose codes may be empty)


def length_bounds(n_text: int, prefix_len: int, config: GenerationConfig, max_seq_len: int) -> tuple[int, int]:
    """(min_len, max_len) in codes for a text of n_text tokens; max_len also fits the model's context."""
    if n_text < 1:
        raise ValueError("nothing to say: the request has no text tokens")
    room = max_seq_len - prefix_len
    if room < 1:
        raise ValueError(f"prompt of {prefix_len} tokens leaves no room in max_seq_len {max_seq_len}; "
                         "split the text into sentences")
    min_len = max(1, int(config.min_len_ratio * n_text))
    max_len = min(max(min_len, math.ceil(config.max_len_ratio * n_text)), room)
    return min(min_len, max_len), max_len


def fit_length_ratios(text_lengths: Sequence[int], code_lengths: Sequence[int], low_quantile: float = 0.01,
                      high_quantile: float = 0.99, margin: float = 1.5) -> tuple[float, float]:
    """(min_len_ratio, max_len_ratio) from a corpus: codes per text token at the outer quantiles, widened.

    The ratio depends on the codec's frame rate and the tokenizer, so it is measured, not assumed;
    dividing and multiplying by `margin` keeps slow and fast speakers clear of both limits.
    """
    ratios = torch.tensor(code_lengths, dtype=torch.float64) / torch.tensor(text_lengths, dtype=torch.float64)
    low, high = torch.quantile(ratios, torch.tensor([low_quantile, high_quantile], dtype=torch.float64)).tolist()
    return low / margin, high * margin


def nucleus(logits: Tensor, p: float, k: int) -> tuple[Tensor, Tensor]:
    """What top-p then top-k keep of logits (..., V): (their probabilities renormalised, their token ids), most
    likely first, padded with zero-probability tokens to the same width in every row.

    Top-p keeps the most likely tokens until their probability (over all V) reaches p, the most likely one always;
    top-k then caps them at k, so both are read off the k largest logits instead of a sort of all V, and the
    draw is among k tokens instead of V (the two were a decode step's largest costs outside the model).
    k <= 0 or >= V keeps top-p alone; p >= 1 top-k alone. Exact ties at the k-th logit keep k tokens.
    """
    width = logits.shape[-1]
    if 0 < k < width:
        values, tokens = logits.topk(k, dim=-1)
    else:
        values, tokens = logits.sort(dim=-1, descending=True)
    if p < 1.0:
        probs = (values - logits.logsumexp(dim=-1, keepdim=True)).exp()
        values = values.masked_fill(probs.cumsum(dim=-1) - probs >= p, float("-inf"))
    return values.softmax(dim=-1), tokens


def sample(logits: Tensor, history: Sequence[int], config: GenerationConfig, generator: torch.Generator) -> int:
    """One token from 1-D logits: greedy at temperature 0, else top-p then top-k, then CosyVoice RAS.

    Top-p is measured on the full distribution and then capped at k tokens, as CosyVoice does. RAS: if
    the sampled token already occurs at least window*tau times among the last `window` tokens, draw again
    from the whole (temperature-scaled) distribution.
    """
    if config.temperature == 0:
        return int(logits.argmax())
    scaled = logits / config.temperature
    probs, tokens = nucleus(scaled, config.top_p, config.top_k)
    choice = int(tokens[torch.multinomial(probs, 1, generator=generator)])
    if config.ras_window > 0:
        repeats = list(history[-config.ras_window:]).count(choice)
        if repeats >= config.ras_window * config.ras_tau:
            choice = int(torch.multinomial(scaled.softmax(dim=-1), 1, generator=generator))
    return choice


def sample_rows(logits: Tensor, recent: Tensor, config: GenerationConfig,
                generators: Sequence[torch.Generator]) -> Tensor:
    """`sample` for a batch: one token per row of logits (B, V), row for row the token `sample` draws.

    The filters and softmaxes run once for the whole batch; only the draws stay per row, since each row
    keeps its own random stream (what makes a request's codes independent of the batch it is decoded in).
    recent (B, <= ras_window) holds each row's latest codes, for the RAS check.
    """
    if config.temperature == 0:
        return logits.argmax(dim=-1)
    scaled = logits / config.temperature
    probs, tokens = nucleus(scaled, config.top_p, config.top_k)
    picks = torch.cat([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, generators)])
    choice = tokens.gather(-1, picks[:, None]).squeeze(-1)
    if config.ras_window > 0:
        repeats = ((recent == choice[:, None]).sum(dim=-1) >= config.ras_window * config.ras_tau).tolist()
        for row in (row for row, repeated in enumerate(repeats) if repeated):
            choice[row] = torch.multinomial(scaled[row].softmax(dim=-1), 1, generator=generators[row])
    return choice


def _plan(model: MiniMindTTS, vocab: Vocab, requests: Sequence[Request],
          config: GenerationConfig) -> tuple[list[list[int]], list[tuple[int, int]]]:
    prefixes = [vocab.prompt(r.text, r.speaker, r.prompt_text, r.prompt_codes) for r in requests]
    bounds = [length_bounds(len(r.text), len(p), config, model.config.max_seq_len)
              for r, p in zip(requests, prefixes)]
    return prefixes, bounds


def _steps(model: MiniMindTTS, vocab: Vocab, prefixes: list[list[int]], bounds: list[tuple[int, int]],
           config: GenerationConfig, use_cache: bool, decode_step: Optional[CompiledDecodeStep] = None
           ) -> Iterator[list[Optional[tuple[Optional[int], Optional[StopReason]]]]]:
    """After each decoding step yield, per request, None if it had already stopped, else (new code or
    None, stop reason or None). Ends when every request has stopped. decode_step, when given, runs every
    step after the prompt's (decode_graph.py); the prompt goes through the model."""
    device = model.embed.weight.device
    batch, width = len(prefixes), max(len(p) for p in prefixes)
    # left padding: all prompts end in the same column, so each step appends one column to every row
    ids = torch.full((batch, width), vocab.pad, dtype=torch.long, device=device)
    valid = torch.zeros((batch, width), dtype=torch.bool, device=device)
    for row, prefix in enumerate(prefixes):
        ids[row, width - len(prefix):] = torch.tensor(prefix, device=device)
        valid[row, width - len(prefix):] = True
    positions = (valid.long().cumsum(dim=1) - 1).clamp(min=0)
    cache = None
    if use_cache:
        cache = KVCache(model.config, batch, width + max(hi for _, hi in bounds), device, model.embed.weight.dtype)
    generators = [torch.Generator(device=device).manual_seed(config.seed) for _ in prefixes]
    codes: list[list[int]] = [[] for _ in prefixes]
    history = torch.zeros((batch, max(hi for _, hi in bounds)), dtype=torch.long, device=device)  # codes, as a tensor
    stopped: list[Optional[StopReason]] = [None] * batch
    eos_column = vocab.n_speech  # in the restricted logits: the codes, then EOS
    step_ids, step_valid, step_positions = ids, valid, positions  # what the next forward reads

    was_training = model.training
    model.eval()
    try:
        while True:
            with torch.no_grad():
                if use_cache and decode_step is not None and cache.length:
                    logits = decode_step(step_ids, step_positions, cache)
                elif use_cache:  # the prompt first, then one new token per row
                    logits = model(step_ids, attention_mask=step_valid, positions=step_positions, cache=cache).logits
                else:  # the whole sequence again, every step
                    logits = model(ids, attention_mask=valid, positions=positions).logits
            last = logits[:, -1].float()
            allowed = torch.cat([last[:, vocab.speech_offset:vocab.speech_offset + vocab.n_speech],
                                 last[:, vocab.eos:vocab.eos + 1]], dim=-1)
            # every row still decoding has made one code a step, so all of them hold `made` codes
            active = [row for row in range(batch) if not stopped[row]]
            rows = slice(None) if len(active) == batch else active  # a plain slice copies nothing
            made = len(codes[active[0]])
            for row in active:
                if made < bounds[row][0]:
                    allowed[row, eos_column] = float("-inf")
            recent = history[rows, max(0, made - config.ras_window):made]
            choice = sample_rows(allowed[rows], recent, config, [generators[row] for row in active])
            history[rows, made] = choice
            choices = choice.tolist()
            events: list[Optional[tuple[Optional[int], Optional[StopReason]]]] = [None] * batch
            for row, choice in zip(active, choices):
                if choice == eos_column:
                    stopped[row] = "eos"
                    events[row] = (None, "eos")
                    continue
                codes[row].append(choice)
                if len(codes[row]) >= bounds[row][1]:
                    stopped[row] = "max_length"
                events[row] = (choice, stopped[row])
            yield events
            if all(stopped):
                return
            # a stopped row keeps being fed EOS so the batch stays rectangular; its outputs are ignored
            step_ids = torch.tensor([[vocab.speech_offset + c[-1] if c and not s else vocab.eos]
                                     for c, s in zip(codes, stopped)], device=device)
            step_valid, step_positions = None, step_positions[:, -1:] + 1
            if not use_cache:
                ids, positions = torch.cat([ids, step_ids], dim=1), torch.cat([positions, step_positions], dim=1)
                valid = torch.cat([valid, torch.ones_like(step_ids, dtype=torch.bool)], dim=1)
    finally:
        model.train(was_training)


def generate(model: MiniMindTTS, vocab: Vocab, requests: Sequence[Request],
             config: GenerationConfig = GenerationConfig(), *, use_cache: bool = True,
             decode_step: Optional[CompiledDecodeStep] = None) -> list[Generated]:
    """Codes for each request, decoded together as one batch; `use_cache=False` recomputes every step
    from scratch (for benchmarks and tests; same result, much slower); `decode_step` (decode_graph.py) runs
    every step after the prompt's as one compiled graph."""
    if not requests:
        return []
    prefixes, bounds = _plan(model, vocab, requests, config)
    codes: list[list[int]] = [[] for _ in requests]
    reasons: list[Optional[StopReason]] = [None] * len(requests)
    for events in _steps(model, vocab, prefixes, bounds, config, use_cache, decode_step):
        for row, event in enumerate(events):
            if event is not None:
                code, reason = event
                if code is not None:
                    codes[row].append(code)
                reasons[row] = reason
    return [Generated(c, r, lo, hi) for c, r, (lo, hi) in zip(codes, reasons, bounds)]


def stream(model: MiniMindTTS, vocab: Vocab, request: Request, config: GenerationConfig = GenerationConfig(),
           *, chunk_size: Optional[int] = None, first_chunk_size: Optional[int] = None,
           decode_step: Optional[CompiledDecodeStep] = None) -> Iterator[CodeChunk]:
    """Yield the codes of one request as they are decoded: a first chunk of `first_chunk_size` codes, then
    chunks of `chunk_size` (the config's by default); the last chunk carries the stop reason.
    Concatenated, they equal `generate`'s codes."""
    size = first_chunk_size or config.first_chunk_size
    prefixes, bounds = _plan(model, vocab, [request], config)
    buffer: list[int] = []
    for (event,) in _steps(model, vocab, prefixes, bounds, config, True, decode_step):
        code, reason = event
        if code is not None:
            buffer.append(code)
        if reason is not None:
            yield CodeChunk(buffer, reason)
            return
        if len(buffer) == size:
            yield CodeChunk(buffer)
            buffer, size = [], chunk_size or config.chunk_size


def main(argv: Optional[list[str]] = None) -> None:
    from stages.common.atomic import atomic_output
    from stages.lm.export import load_model

    parser = argparse.ArgumentParser(description="Generate speech codes for requests in a JSONL file.")
    parser.add_argument("model_dir", type=Path, help="folder with model.safetensors + config.json")
    parser.add_argument("requests", type=Path, help="JSONL: id, text (sentencepiece ids), speaker, prompt_text, prompt_codes")
    parser.add_argument("output", type=Path, help="JSONL written: id, codes, stop_reason")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=None, help="override the stored generation seed")
    parser.add_argument("--temperature", type=float, default=None, help="override the stored temperature (0 = greedy)")
    args = parser.parse_args(argv)

    loaded = load_model(args.model_dir, fuse=True)
    config = loaded.generation
    if args.seed is not None:
        config = replace(config, seed=args.seed)
    if args.temperature is not None:
        config = replace(config, temperature=args.temperature)
    rows = [json.loads(line) for line in args.requests.read_text().splitlines() if line.strip()]
    requests = [Request(tuple(r["text"]), r.get("speaker"), tuple(r.get("prompt_text", ())),
                        tuple(r.get("prompt_codes", ()))) for r in rows]
    lines = []
    for start in range(0, len(requests), args.batch_size):
        batch = requests[start:start + args.batch_size]
        for row, out in zip(rows[start:], generate(loaded.model, loaded.vocab, batch, config)):
            lines.append(json.dumps({"id": row.get("id"), "codes": out.codes, "stop_reason": out.stop_reason}))
    with atomic_output(args.output) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print(f"{len(lines)} requests -> {args.output}")


if __name__ == "__main__":
    main()
