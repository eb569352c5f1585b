"""Where the LM's speech positions look in their text: teacher-forced on held-out speech and when decoding freely.

    python scripts/alignment_trace.py --model results/quality/pretrain/model --codes results/quality/codes/shard-*.parquet

For the first `--utterances` English utterances of the valid split, the attention of every speech query (the
TASK token and each code) over the text keys is recorded in every layer and head, once teacher-forced on the
utterance's own codes and once while `generate` decodes the same text with the model's own generation config.
Per layer and head: the share of attention that goes to the text, and how far the attention-weighted text
position (as a fraction of the text) lies from the diagonal (t + 0.5) / T of the T speech queries, as the mean
absolute distance (0 = reads in order at an even pace; about 0.33 = no relation to time). A head that reads
its text in order teacher-forced but not when decoding shows an alignment that training alone holds up; one
far from the diagonal in both, a model that does not read its text in order at all.

Per layer also the head mean of each head's attention renormalised over the text, which is what the CTC
alignment loss scores: its centroid's and its argmax's distance from the diagonal, the share of speech steps
whose argmax does not move back, and its mean peak probability. A path that is monotonic and peaked but far
from the diagonal is the position shortcut: it holds the first token, races through the text, holds the last.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pyarrow.parquet as pq
import torch
from torch import Tensor

import stages.lm.model as lm_model
from stages.lm.export import load_model
from stages.lm.generate import Request, generate
from stages.text.tokenizer import TextTokenizer


class AttentionRecorder:
    """Wraps `stages.lm.model.attend`: keeps each call's attention probabilities (B, H, Lq, Lk) per layer."""

    def __init__(self) -> None:
        self.calls: list[Tensor] = []
        self._attend = lm_model.attend

    def __enter__(self) -> "AttentionRecorder":
        def recording_attend(q, k, v, mask, causal, dropout):
            self.calls.append(probabilities(q, k, mask, causal))
            return self._attend(q, k, v, mask, causal, dropout)
        lm_model.attend = recording_attend
        return self

    def __exit__(self, *exc) -> None:
        lm_model.attend = self._attend


def probabilities(q: Tensor, k: Tensor, mask: Tensor | None, causal: bool) -> Tensor:
    groups = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(groups, dim=1).float()
    scores = q.float() @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if causal:
        lq, lk = scores.shape[-2:]
        scores = scores.masked_fill(~torch.ones(lq, lk, dtype=torch.bool).tril(lk - lq), float("-inf"))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    return scores.softmax(dim=-1)


def trace(speech_rows: list[Tensor], text_keys: Tensor) -> dict:
    """From each layer's (H, T, Lk) attention of the T speech queries: text share and diagonal distance per head."""
    per_layer = []
    for probs in speech_rows:
        text = probs[:, :, text_keys]                                   # (H, T, S)
        share = text.sum(dim=-1)                                        # (H, T)
        over_text = text / share.clamp(min=1e-9).unsqueeze(-1)          # each head renormalised over the text
        n_query = text.shape[1]
        diagonal = (torch.arange(n_query) + 0.5) / n_query
        per_layer.append({"text_share": share.mean(dim=-1).tolist(),
                          "distance": diagonal_distance(over_text, diagonal).tolist(),
                          **head_mean_path(over_text, diagonal)})
    return {"layers": per_layer}


def diagonal_distance(over_text: Tensor, diagonal: Tensor) -> Tensor:
    """Mean over the T queries of |attention-weighted text position (a fraction of the text) - diagonal|."""
    last = max(over_text.shape[-1] - 1, 1)
    centre = (over_text * torch.arange(over_text.shape[-1])).sum(dim=-1) / last
    return (centre - diagonal).abs().mean(dim=-1)


def head_mean_path(over_text: Tensor, diagonal: Tensor) -> dict:
    """The (H, T, S) attention renormalised over the text, averaged over heads: how it walks the text."""
    path = over_text.mean(dim=0)                                        # (T, S)
    last = max(path.shape[-1] - 1, 1)
    argmax = path.argmax(dim=-1)
    forward = (argmax.diff() >= 0).float().mean().item() if len(argmax) > 1 else 1.0
    return {"path_distance": diagonal_distance(path, diagonal).item(),
            "path_argmax_distance": (argmax.float() / last - diagonal).abs().mean().item(),
            "path_forward": forward, "path_peak": path.max(dim=-1).values.mean().item()}


@torch.no_grad()
def teacher_forced(loaded, ids: list[int], n_prefix: int) -> list[Tensor]:
    with AttentionRecorder() as recorder:
        loaded.model(torch.tensor([ids]))
    return [probs[0, :, n_prefix - 1:] for probs in recorder.calls]    # queries: TASK, then every code


@torch.no_grad()
def free_running(loaded, request: Request, n_prefix: int) -> tuple[list[Tensor], int]:
    with AttentionRecorder() as recorder:
        out = generate(loaded.model, loaded.vocab, [request], loaded.generation)
    n_layers = loaded.model.config.n_layers
    steps = [recorder.calls[i:i + n_layers] for i in range(0, len(recorder.calls), n_layers)]
    # step 0 is the prompt (its last query is TASK's); each later step one code's query; pad keys to the last
    rows = []
    for layer in range(n_layers):
        queries = [steps[0][layer][0, :, -1:]] + [s[layer][0] for s in steps[1:]]
        width = queries[-1].shape[-1]
        rows.append(torch.cat([torch.nn.functional.pad(q, (0, width - q.shape[-1])) for q in queries], dim=1))
    return rows, len(out[0].codes)


def summarise(traces: list[dict]) -> list[dict]:
    n_layers = len(traces[0]["layers"])
    table = []
    for layer in range(n_layers):
        share = torch.tensor([t["layers"][layer]["text_share"] for t in traces]).mean(dim=0)
        distance = torch.tensor([t["layers"][layer]["distance"] for t in traces]).mean(dim=0)
        best = int(distance.argmin())
        path = {key: sum(t["layers"][layer][key] for t in traces) / len(traces) for key in PATH_KEYS}
        table.append({"layer": layer, "text_share": share.mean().item(), "best_head": best,
                      "best_head_distance": distance[best].item(), "best_head_text_share": share[best].item(),
                      "mean_distance": distance.mean().item(), **path})
    return table


PATH_KEYS = ("path_distance", "path_argmax_distance", "path_forward", "path_peak")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--codes", type=Path, nargs="+", required=True, help="the run's codes shards")
    parser.add_argument("--utterances", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model, dtype=None)
    tokenizer = TextTokenizer.load(args.model)
    speakers = set(loaded.vocab.speakers)
    rows = [r for shard in args.codes for r in pq.read_table(shard).to_pylist()
            if r["split"] == "valid" and r["language"] == "en"][:args.utterances]
    forced, decoded, lengths = [], [], []
    for row in rows:
        text = tokenizer.encode(row["text"], "en")
        speaker = row["speaker"] if row["speaker"] in speakers else None
        ids, _ = loaded.vocab.example(text, row["codes"], speaker)
        prefix = loaded.vocab.prompt(text, speaker)
        text_keys = torch.tensor([loaded.vocab.text_offset <= i < loaded.vocab.text_offset + loaded.vocab.n_text
                                  for i in ids])
        forced.append(trace(teacher_forced(loaded, ids, len(prefix)), text_keys))
        speech, n_codes = free_running(loaded, Request(tuple(text), speaker), len(prefix))
        prefix_text_keys = text_keys[:len(prefix)]  # the text lies in the prompt; decoded keys are codes
        decoded.append(trace(speech, torch.nn.functional.pad(prefix_text_keys,
                                                             (0, speech[0].shape[-1] - len(prefix)))))
        lengths.append({"truth_codes": len(row["codes"]), "decoded_codes": n_codes})
    result = {"model": str(args.model), "utterances": len(rows), "lengths": lengths,
              "teacher_forced": summarise(forced), "decoded": summarise(decoded)}
    print(f"{args.model}: {len(rows)} valid utterances; codes truth/decoded: "
          + ", ".join(f"{x['truth_codes']}/{x['decoded_codes']}" for x in lengths))
    print(f"{'layer':>5} | {'forced: text share':>18} {'best head':>9} {'distance':>8} | "
          f"{'decoded: text share':>19} {'best head':>9} {'distance':>8}")
    for f, d in zip(result["teacher_forced"], result["decoded"]):
        print(f"{f['layer']:>5} | {f['text_share']:>18.3f} {f['best_head']:>9} {f['best_head_distance']:>8.3f} | "
              f"{d['text_share']:>19.3f} {d['best_head']:>9} {d['best_head_distance']:>8.3f}")
    print("head mean over the text (what the CTC loss scores): centroid / argmax distance, argmax forward, peak")
    for name in ("teacher_forced", "decoded"):
        for row in result[name]:
            print(f"{name:>14} layer {row['layer']}: {row['path_distance']:.3f} / {row['path_argmax_distance']:.3f}"
                  f", {row['path_forward']:.3f}, {row['path_peak']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
