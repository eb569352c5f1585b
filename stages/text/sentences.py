"""Split long text into sentences the LM can speak one at a time (its context is a few seconds of codes).

    python -c "from stages.text.sentences import split_sentences; print(split_sentences('One. Two! 三。四？'))"
"""

from __future__ import annotations

import re

# End of sentence: ASCII .!? followed by space/end, or a CJK full stop / question / exclamation mark.
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|(?<=[。！？；])")
_CLAUSE_END = re.compile(r"(?<=[,:])\s+|(?<=[，：、])")


def split_sentences(text: str, max_chars: int = 200) -> list[str]:
    """Sentences of `text`; one longer than `max_chars` is split further at clause boundaries, then words."""
    out = []
    for sentence in _SENTENCE_END.split(text.strip()):
        sentence = sentence.strip()
        if not sentence:
            continue
        if len(sentence) <= max_chars:
            out.append(sentence)
            continue
        out.extend(_pack(_CLAUSE_END.split(sentence), max_chars))
    return out


def _pack(parts: list[str], max_chars: int) -> list[str]:
    """Greedily join clauses up to max_chars; a clause that alone is too long is cut at spaces (or hard)."""
    out, current = [], ""
    for part in (p.strip() for p in parts):
        while len(part) > max_chars:
            cut = part.rfind(" ", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            if current:
                out.append(current)
                current = ""
            out.append(part[:cut].strip())
            part = part[cut:].strip()
        joined = f"{current} {part}".strip() if current and part.isascii() else current + part
        if current and len(joined) > max_chars:
            out.append(current)
            current = part
        else:
            current = joined
    if current:
        out.append(current)
    return [p for p in out if p]
