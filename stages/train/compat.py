"""Do the inputs of an LM run fit together: codes shards, tokenizer, an initial model (SFT) and the vocabulary.

    python -m stages.train_lm ... --init-from results/demo/pretrain/model    # SFT, the run most of these guard

Checked before any costly work, each with an error naming both sides: an initial model must have been
trained with this tokenizer (piece count and sentencepiece model), on codes of this codec and with speaker
tokens exactly when this run uses them; the vocabulary must match the codebook and know every speaker.
Errors about a setting name it as `<section>.<key>`: `sft.speaker_tokens`, not a generic `train.`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional, Sequence

from stages.config import ConfigError
from stages.lm.export import WEIGHTS, LoadedModel, load_model
from stages.lm.vocab import Vocab
from stages.text.tokenizer import MODEL_FILE, TextTokenizer
from stages.lm.export import CODEC_FILE


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def initial_model(init_from: Path, tokenizer: TextTokenizer, tokenizer_dir: Path, codec: dict[str, str],
                  speaker_tokens: bool, section: str = "train") -> LoadedModel:
    """The pretrained model SFT starts from, after checking it was made with this tokenizer and codec."""
    if not (init_from / WEIGHTS).exists():
        raise FileNotFoundError(f"{init_from}: no {WEIGHTS}; --init-from needs a model folder written by "
                                "the pretrain stage")
    initial = load_model(init_from, dtype=None)  # the saved fp32 weights: training sets its own precision
    if initial.vocab.n_text != tokenizer.vocab_size:
        raise ValueError(f"{init_from} was trained with {initial.vocab.n_text} text pieces but the tokenizer "
                         f"{tokenizer_dir} has {tokenizer.vocab_size}")
    own_spm = init_from / MODEL_FILE
    if own_spm.exists() and file_digest(own_spm) != file_digest(tokenizer_dir / MODEL_FILE):
        raise ValueError(f"{init_from} was trained with another tokenizer than {tokenizer_dir} "
                         f"({MODEL_FILE} differs)")
    codec_file = init_from / CODEC_FILE
    if codec_file.exists():
        trained = json.loads(codec_file.read_text())
        diff = [f"{k} {trained.get(k)!r} vs {v!r}" for k, v in codec.items() if trained.get(k) != v]
        if diff:
            raise ValueError(f"{init_from} was trained on codes of another codec than these shards: "
                             f"{'; '.join(diff)}")
    if bool(initial.vocab.speakers) != speaker_tokens:
        raise ConfigError(f"{section}.speaker_tokens: {init_from} was trained "
                          f"{'with' if initial.vocab.speakers else 'without'} speaker tokens; set "
                          f"speaker_tokens: {str(bool(initial.vocab.speakers)).lower()}")
    return initial


def check_vocab(vocab: Vocab, codec: dict[str, str], speakers: Sequence[str], speaker_tokens: bool,
                init_from: Optional[Path], section: str = "train") -> None:
    """The vocabulary has one speech token per code of the codebook, and a token for every speaker trained on."""
    if vocab.n_speech != int(codec["codebook_size"]):
        raise ValueError(f"the model has {vocab.n_speech} speech tokens but the codes come from a codebook of "
                         f"{codec['codebook_size']}")
    if speaker_tokens:
        unknown = sorted(set(speakers) - set(vocab.speakers))
        if unknown:
            raise ValueError(f"speaker(s) {unknown} have no token in {init_from}, which knows "
                             f"{list(vocab.speakers)}; filter them out with {section}.speakers")
