"""Issue-4 check on real data: overfit a small LM on a few demo utterances, regenerate them greedily,
decode with the codec and let pocketsphinx judge whether the regenerated speech is recognisable.

    .venv/bin/python scripts/overfit_check.py --run results/demo [--utterances 4] [--voice rms] [--out /tmp/overfit]

Prints, per utterance: whether greedy decoding gave back exactly the training codes, and the pocketsphinx
WER of (a) the codec resynthesis of the original codes and (b) the regenerated codes. Writes both WAVs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow.parquet as pq
import soundfile as sf
import torch

from stages.codec import load_codec
from stages.config.model import GenerationConfig, ModelConfig
from stages.lm.generate import Request, generate
from stages.lm.model import MiniMindTTS
from stages.lm.vocab import Vocab, collate
from stages.metrics import Sample, score
from stages.text.tokenizer import TextTokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("results/demo"))
    parser.add_argument("--utterances", type=int, default=4)
    parser.add_argument("--voice", default="rms")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--out", type=Path, default=Path("/tmp/overfit"))
    args = parser.parse_args()
    torch.manual_seed(0)
    tokenizer = TextTokenizer.load(args.run / "tokenizer")
    codec = load_codec(args.run / "codec" / "codec.yaml", args.run / "codec" / "codec.ckpt")
    rows = [r for shard in sorted((args.run / "codes").glob("shard-*.parquet"))
            for r in pq.read_table(shard).to_pylist() if r["speaker"] == args.voice and r["split"] == "train"]
    rows = sorted(rows, key=lambda r: r["utt_id"])[:args.utterances]
    vocab = Vocab(n_text=tokenizer.vocab_size, n_speech=codec.arch.codebook_size)
    texts = [tokenizer.encode(r["text"], r["language"]) for r in rows]
    batch = collate([vocab.example(t, r["codes"]) for t, r in zip(texts, rows)])
    config = ModelConfig(dim=128, n_layers=4, n_heads=4, n_kv_heads=2, ffn_dim=384, max_seq_len=2048)
    model = MiniMindTTS(config, vocab.size).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    for step in range(args.steps):
        out = model(batch["input_ids"], batch["targets"])
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        if out.accuracy.item() == 1.0 and out.loss.item() < 0.01:
            break
    print(f"{len(rows)} utterances of {args.voice}, {sum(len(r['codes']) for r in rows)} codes; "
          f"step {step}: loss {out.loss.item():.4f}, speech-token accuracy {out.accuracy.item():.3f}")
    model.eval()
    greedy = GenerationConfig(temperature=0.0, min_len_ratio=0.0, max_len_ratio=100.0)
    results = generate(model, vocab, [Request(tuple(t)) for t in texts], greedy)
    args.out.mkdir(parents=True, exist_ok=True)
    for row, result in zip(rows, results):
        with torch.inference_mode():
            original = codec.decode(torch.tensor([row["codes"]]))[0].numpy()
            regenerated = codec.decode(torch.tensor([result.codes]))[0].numpy()
        sf.write(args.out / f"{row['utt_id']}.codec.wav", original, codec.sample_rate)
        sf.write(args.out / f"{row['utt_id']}.regenerated.wav", regenerated, codec.sample_rate)
        wer = {name: score(Sample.make(audio, codec.sample_rate, row["text"], "en"), ["asr"])
               for name, audio in (("codec", original), ("regenerated", regenerated))}
        print(f"{row['utt_id']}: exact codes {result.codes == row['codes']}, stop {result.stop_reason}; "
              f"WER codec resynthesis {wer['codec']['wer']:.2f} ({wer['codec']['transcript']!r}), "
              f"regenerated {wer['regenerated']['wer']:.2f} ({wer['regenerated']['transcript']!r}); "
              f"text {row['text']!r}")


if __name__ == "__main__":
    main()
