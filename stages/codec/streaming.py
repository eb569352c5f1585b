"""Decode codes to audio as they arrive, with overlapping windows so chunk seams are inaudible.

    decoder = StreamingDecoder(codec)
    for chunk in code_chunks:            # lists of codes, e.g. from stages.lm.generate.stream
        play(decoder.push(chunk))
    play(decoder.finish())

WavTokenizer's decoder looks at the whole sequence (ConvNeXt context, GroupNorm over time and an
attention block), so decoding chunks independently leaves clicks at every seam, and no chunked decoder
can equal the whole-utterance decode exactly. Each push re-decodes the new codes with `context` codes
of left context, holds back the last `hold` codes' audio until their right context has arrived, and
cross-fades `crossfade` codes of audio where the previous window and the new one overlap: seams stay
continuous, and the error against the whole decode is less than half that of independent chunks
(tests/test_tts.py measures both).
"""

from __future__ import annotations

import numpy as np
import torch

from stages.codec.model import WavTokenizer


class StreamingDecoder:
    def __init__(self, codec: WavTokenizer, context: int = 16, hold: int = 8, crossfade: int = 4):
        if not 0 < crossfade <= hold:
            raise ValueError(f"need 0 < crossfade ({crossfade}) <= hold ({hold})")
        self.codec, self.context, self.hold, self.crossfade = codec, context, hold, crossfade
        self.device = next(codec.parameters()).device   # codes go where the codec is (a GPU's, not the CPU)
        self.codes: list[int] = []
        self.emitted = 0                    # codes whose audio has been returned
        self.tail = np.zeros(0, np.float32)  # previous window's audio of the first `crossfade` pending codes

    @torch.inference_mode()
    def _decode(self, start: int) -> np.ndarray:
        codes = torch.tensor([self.codes[start:]], dtype=torch.long, device=self.device)
        return self.codec.decode(codes)[0].float().cpu().numpy()

    def _emit(self, end: int) -> np.ndarray:
        if end <= self.emitted:
            return np.zeros(0, np.float32)
        hop = self.codec.hop_length
        start = max(0, self.emitted - self.context)
        audio = self._decode(start)
        offset = lambda code: (code - start) * hop  # noqa: E731 - a position in this window's audio
        out = audio[offset(self.emitted):offset(end)].copy()
        if len(self.tail):
            n = min(len(self.tail), len(out))
            fade = np.linspace(0.0, 1.0, n, endpoint=False, dtype=np.float32)
            out[:n] = (1 - fade) * self.tail[:n] + fade * out[:n]
        self.tail = audio[offset(end):offset(min(end + self.crossfade, len(self.codes)))].copy()
        self.emitted = end
        return out

    def push(self, codes: list[int]) -> np.ndarray:
        """Audio that is final now (may be empty); the newest `hold` codes wait for their right context."""
        self.codes.extend(int(c) for c in codes)
        return self._emit(len(self.codes) - self.hold)

    def finish(self) -> np.ndarray:
        """The remaining audio, once no more codes will come."""
        return self._emit(len(self.codes))
