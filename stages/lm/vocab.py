"""The unified token space of the LM and the one-stream sequence layout it is trained on.

    python -c "from stages.lm.vocab import Vocab; print(Vocab(n_text=2000).layout())"

Ids, in order: the specials PAD, SOS, EOS, TASK; one token per speaker (if speaker conditioning is on);
the sentencepiece pieces (piece p -> text_offset + p, whatever the piece is); the codec codes
(code c -> speech_offset + c). The layout is stored as JSON next to the weights, so a model is never
paired with a tokenizer or codec of another size.

A training example is aligned here, not in the model:

    input    [SOS] (SPK)  t1 .. tT  [TASK]  s1  ..  sS-1  sS
    target    -    (-)    -  ..  -   s1     s2  ..  sS    EOS        (- = IGNORE_INDEX)

so the model compares logits and targets position by position, with no shift of its own: the [TASK]
position predicts the first code and the last code predicts EOS. Loss falls only on codes and EOS.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Optional, Sequence

import torch

IGNORE_INDEX = -100  # torch.nn.functional.cross_entropy's default ignore_index

PAD, SOS, EOS, TASK = 0, 1, 2, 3
N_SPECIALS = 4


@dataclass(frozen=True)
class Vocab:
    """Id layout of specials, speakers, text pieces and speech codes."""

    n_text: int                      # sentencepiece vocabulary size
    n_speech: int = 4096             # codec codebook size (WavTokenizer: 4096)
    speakers: tuple[str, ...] = ()   # speaker tokens, empty when speaker conditioning is off

    pad: ClassVar[int] = PAD
    sos: ClassVar[int] = SOS
    eos: ClassVar[int] = EOS
    task: ClassVar[int] = TASK

    def __post_init__(self) -> None:
        if self.n_text < 1 or self.n_speech < 1:
            raise ValueError(f"vocabulary needs text and speech tokens, got n_text={self.n_text}, "
                             f"n_speech={self.n_speech}")
        object.__setattr__(self, "speakers", tuple(self.speakers))
        if len(set(self.speakers)) != len(self.speakers):
            raise ValueError("speaker names must be unique")

    @property
    def speaker_offset(self) -> int:
        return N_SPECIALS

    @property
    def text_offset(self) -> int:
        return N_SPECIALS + len(self.speakers)

    @property
    def speech_offset(self) -> int:
        return self.text_offset + self.n_text

    @property
    def size(self) -> int:
        return self.speech_offset + self.n_speech

    def layout(self) -> dict:
        """First id of each block, for logs and the exported model's README."""
        return {"specials": {"pad": self.pad, "sos": self.sos, "eos": self.eos, "task": self.task},
                "speaker_offset": self.speaker_offset, "text_offset": self.text_offset,
                "speech_offset": self.speech_offset, "size": self.size}

    # --- mapping between ids and the tokenizer's / codec's own numbers -------------------------------

    def speaker_id(self, name: str) -> int:
        try:
            return self.speaker_offset + self.speakers.index(name)
        except ValueError:
            raise KeyError(f"unknown speaker {name!r}; this model knows {list(self.speakers)}") from None

    def text_ids(self, pieces: Sequence[int]) -> list[int]:
        bad = [p for p in pieces if not 0 <= p < self.n_text]
        if bad:
            raise ValueError(f"text piece ids {bad[:5]} outside the tokenizer's 0..{self.n_text - 1}")
        return [self.text_offset + int(p) for p in pieces]

    def speech_ids(self, codes: Sequence[int]) -> list[int]:
        bad = [c for c in codes if not 0 <= c < self.n_speech]
        if bad:
            raise ValueError(f"speech codes {bad[:5]} outside the codebook 0..{self.n_speech - 1}")
        return [self.speech_offset + int(c) for c in codes]

    def codes(self, ids: Sequence[int]) -> list[int]:
        """Codec codes of speech ids (raises on any non-speech id)."""
        out = [int(i) - self.speech_offset for i in ids]
        if any(not 0 <= c < self.n_speech for c in out):
            raise ValueError("ids outside the speech block cannot be turned into codes")
        return out

    # --- the sequence layout ------------------------------------------------------------------------

    def prompt(self, text: Sequence[int], speaker: Optional[str] = None, prompt_text: Sequence[int] = (),
               prompt_codes: Sequence[int] = ()) -> list[int]:
        """What generation starts from: `[SOS] (SPK) prompt_text+text [TASK] prompt_codes`.

        `text` and `prompt_text` are sentencepiece ids, `prompt_codes` codec codes. A voice prompt is
        plain continuation: the model sees the prompt's transcript and speech and goes on speaking.
        """
        head = [self.sos] + ([self.speaker_id(speaker)] if speaker is not None else [])
        return head + self.text_ids(list(prompt_text) + list(text)) + [self.task] + self.speech_ids(prompt_codes)

    def example(self, text: Sequence[int], codes: Sequence[int],
                speaker: Optional[str] = None) -> tuple[list[int], list[int]]:
        """Aligned (input_ids, targets) of one utterance; targets are IGNORE_INDEX except codes and EOS."""
        if not codes:
            raise ValueError("an utterance needs at least one speech code")
        prefix = self.prompt(text, speaker)
        speech = self.speech_ids(codes)
        input_ids = prefix + speech
        targets = [IGNORE_INDEX] * (len(prefix) - 1) + speech + [self.eos]
        return input_ids, targets

    # --- serialisation ------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {**asdict(self), "speakers": list(self.speakers), "layout": self.layout()}

    @classmethod
    def from_dict(cls, data: dict) -> "Vocab":
        data = {k: v for k, v in data.items() if k != "layout"}  # derived, written for readers only
        return cls(**{**data, "speakers": tuple(data.get("speakers", ()))})

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Vocab":
        return cls.from_dict(json.loads(Path(path).read_text()))


def collate(examples: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int = PAD) -> dict[str, torch.Tensor]:
    """Right-pad (input_ids, targets) pairs into a batch: PAD inputs, IGNORE_INDEX targets.

    Right padding keeps every real token at its own position 0..n-1, so with causal attention the
    padding can never reach a real token and needs no mask; `attention_mask` is returned for callers
    that want it (True = real token).
    """
    if not examples:
        raise ValueError("cannot collate an empty batch")
    length = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    targets = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), length), dtype=torch.bool)
    for row, (ids, tgt) in enumerate(examples):
        if len(ids) != len(tgt):
            raise ValueError(f"example {row}: {len(ids)} inputs but {len(tgt)} targets")
        input_ids[row, :len(ids)] = torch.as_tensor(ids, dtype=torch.long)
        targets[row, :len(tgt)] = torch.as_tensor(tgt, dtype=torch.long)
        attention_mask[row, :len(ids)] = True
    return {"input_ids": input_ids, "targets": targets, "attention_mask": attention_mask}
