"""Stage `fit_tokenizer`: fit the text tokenizer on the normalised transcripts of the training split.

    python -m stages.fit_tokenizer --manifest results/demo/manifest.parquet --out-dir results/demo/tokenizer \
        --config-json '{"vocab_size": 1000, "model_type": "unigram"}'

Only rows with split == "train" are fitted on, so no evaluation sentence shapes the vocabulary. With
`input: phonemes` every normalised text is first converted by espeak-ng (stages.text.phonemes) and the
pieces are fitted on the phoneme strings. Writes `spm.model`, `spm.vocab`, `normalizer.json` (settings,
input kind, versions of the libraries the normaliser relies on), `phonemes.json` (phonemes only: the
lexicon of every manifest text) and `tokenizer.json` (config, vocabulary size, row counts, text length in tokens per language, and
the <unk> rate on held-out text) into a temporary folder that is renamed into place when complete.
The same manifest and config give byte-identical files: sorted unique texts, one thread, fixed seed.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
from pathlib import Path

import numpy as np
import sentencepiece as spm

from stages.common.atomic import atomic_output
from stages.common.cli import config_section, start
from stages.common.tables import MANIFEST, SPLITS, read_table
from stages.config.base import to_dict
from stages.config.tokenizer import TokenizerConfig
from stages.text.normalize import LANGUAGES, library_versions, normalize
from stages.text.phonemes import LEXICON_FILE, Phonemizer, espeak_version
from stages.text.tokenizer import MODEL_FILE, NORMALIZER_FILE, SUMMARY_FILE, UNK_ID, VOCAB_FILE, TextTokenizer

COLUMNS = ["utt_id", "language", "text", "split"]


def read_transcripts(manifest: Path) -> list[dict]:
    """utt_id, language, text and split of every manifest row; a language the normaliser lacks is an error."""
    rows = read_table(manifest, MANIFEST, columns=COLUMNS).to_pylist()
    for row in rows:
        if row["split"] not in SPLITS:
            raise ValueError(f"{manifest}: utt_id {row['utt_id']!r} has split {row['split']!r}; "
                             f"expected one of {', '.join(SPLITS)}")
        if row["language"] not in LANGUAGES:
            raise ValueError(f"{manifest}: utt_id {row['utt_id']!r} has language {row['language']!r}; "
                             f"the text normaliser knows {', '.join(LANGUAGES)}")
    return rows


def train_sentencepiece(texts: list[str], cfg: TokenizerConfig) -> bytes:
    """The serialised sentencepiece model fitted on `texts` (already normalised)."""
    spm.set_random_generator_seed(0)  # unigram seeding draws from it; fixed so refits are byte-identical
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=model,  # no file names: they would be baked into the model
            model_type=cfg.model_type, vocab_size=cfg.vocab_size, character_coverage=cfg.character_coverage,
            hard_vocab_limit=False,  # a small corpus may not support vocab_size pieces: keep what it supports
            unk_id=UNK_ID, bos_id=-1, eos_id=-1, pad_id=-1,  # the LM adds its own SOS/TASK/EOS/PAD
            normalization_rule_name="identity",  # stages.text.normalize already did NFKC and more
            input_sentence_size=0, shuffle_input_sentence=False, num_threads=1, minloglevel=2)
    except RuntimeError as error:
        needed = re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(error))
        if needed:
            raise ValueError(f"vocab_size {cfg.vocab_size} is too small: the training text has {needed[1]} characters "
                             f"(with <unk>) to keep at character_coverage {cfg.character_coverage}; set vocab_size "
                             f"to at least {needed[1]} (more leaves room for multi-character pieces) or lower "
                             "character_coverage") from error
        raise
    return model.getvalue()


def _length_stats(lengths: list[int]) -> dict | None:
    if not lengths:
        return None
    values = np.asarray(lengths)
    return {"min": int(values.min()), "mean": round(float(values.mean()), 3), "median": float(np.median(values)),
            "p95": round(float(np.percentile(values, 95)), 3), "max": int(values.max())}


def _unk_rate(tokenizer: TextTokenizer, texts: list[str]) -> float | None:
    ids = [i for text in texts for i in tokenizer.processor.encode(text, out_type=int)]
    return round(ids.count(UNK_ID) / len(ids), 6) if ids else None


def summarize(rows: list[dict], spoken: dict[tuple[str, str], str], tokenizer: TextTokenizer,
              cfg: TokenizerConfig, model_bytes: bytes) -> dict:
    """Contents of tokenizer.json: what was fitted on what, how long texts are in tokens, how much is <unk>."""
    languages = {}
    for lang in sorted({r["language"] for r in rows}):
        train = [spoken[(r["text"], lang)] for r in rows if r["language"] == lang and r["split"] == "train"]
        heldout = sorted({spoken[(r["text"], lang)] for r in rows if r["language"] == lang and r["split"] != "train"})
        languages[lang] = {
            "train_rows": len(train),
            "train_texts": len(set(train)),
            # per utterance, not per unique text: this is what the LM's batches and length ratios see
            "tokens_per_utterance": _length_stats([len(tokenizer.processor.encode(text)) for text in train]),
            "unk_rate_train": _unk_rate(tokenizer, sorted(set(train))),
            # valid/eval text may hold characters training never saw; the model cannot say those
            "unk_rate_heldout": _unk_rate(tokenizer, heldout),
        }
    return {
        "config": to_dict(cfg),
        "vocab_size": tokenizer.vocab_size,
        "special_ids": {"unk": UNK_ID, "bos": None, "eos": None, "pad": None},
        "spm_model_sha256": hashlib.sha256(model_bytes).hexdigest(),
        "rows_per_split": {split: sum(r["split"] == split for r in rows) for split in SPLITS},
        "languages": languages,
    }


def _vocab_lines(processor: spm.SentencePieceProcessor) -> str:
    # The layout sentencepiece itself writes: piece, tab, score with six significant digits.
    return "".join(f"{processor.id_to_piece(i)}\t{processor.get_score(i):g}\n"
                   for i in range(processor.get_piece_size()))


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False, ) + "\n", encoding="utf-8")


def fit_tokenizer(manifest: Path, out_dir: Path, cfg: TokenizerConfig) -> None:
    """Fit sentencepiece on the normalised, deduplicated train-split transcripts of `manifest` into `out_dir`."""
    manifest, out_dir = Path(manifest), Path(out_dir)
    rows = read_transcripts(manifest)
    spoken = {key: normalize(key[0], key[1], cfg.normalizer) for key in {(r["text"], r["language"]) for r in rows}}
    phonemizer = Phonemizer() if cfg.input == "phonemes" else None
    if phonemizer:
        for language in sorted({lang for _, lang in spoken}):
            keys = sorted(k for k in spoken if k[1] == language and spoken[k])
            for key, phonemes in zip(keys, phonemizer([spoken[k] for k in keys], language)):
                spoken[key] = phonemes
    # Sorted unique texts: neither duplicates (one sentence read by four voices) nor row order change the model.
    train_texts = sorted({spoken[(r["text"], r["language"])] for r in rows if r["split"] == "train"} - {""})
    if not train_texts:
        splits = {split: sum(r["split"] == split for r in rows) for split in SPLITS}
        raise ValueError(f"{manifest}: no training text to fit the tokenizer on (rows per split: {splits}); "
                         "the tokenizer is fitted on split == 'train' only")
    model_bytes = train_sentencepiece(train_texts, cfg)
    tokenizer = TextTokenizer(spm.SentencePieceProcessor(model_proto=model_bytes), cfg.normalizer, phonemizer)

    with atomic_output(out_dir) as tmp:
        tmp.mkdir()
        (tmp / MODEL_FILE).write_bytes(model_bytes)
        (tmp / VOCAB_FILE).write_text(_vocab_lines(tokenizer.processor), encoding="utf-8")
        saved = {"settings": to_dict(cfg.normalizer), "libraries": library_versions(), "input": cfg.input}
        if phonemizer:
            saved["espeak_ng"] = espeak_version()
            phonemizer.save(tmp / LEXICON_FILE)
        _write_json(tmp / NORMALIZER_FILE, saved)
        _write_json(tmp / SUMMARY_FILE, summarize(rows, spoken, tokenizer, cfg, model_bytes))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True, help="manifest.parquet (utt_id, language, text, split)")
    parser.add_argument("--out-dir", type=Path, required=True, help="tokenizer folder to create or replace")
    parser.add_argument("--config-json", default="{}", help="TokenizerConfig as JSON; unset keys take defaults")
    args = parser.parse_args(argv)
    start()
    cfg = config_section(TokenizerConfig, args.config_json, "tokenizer")
    fit_tokenizer(args.manifest, args.out_dir, cfg)
    summary = json.loads((args.out_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    print(f"fit_tokenizer: {summary['vocab_size']} pieces from {summary['rows_per_split']['train']} training rows "
          f"-> {args.out_dir}")


if __name__ == "__main__":
    main()
